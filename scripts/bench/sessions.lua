-- Session windows (gap 30 s, per user) over a generated click log of
-- EVENTS clicks, counted per session.
--   sluice -w N scripts/bench/sessions.lua EVENTS
-- One stage makes the clicks (so each user's clicks stay in time order);
-- a partition by user keeps the sessions. Prints
-- "RESULT sessions=<sessions> count=<clicks counted>".
local dir = arg[0]:match("^(.*)/") or "."
local F = dofile(dir .. "/sessions_fns.lua")
local n = math.tointeger(tonumber(arg[1])) or 1000000
local flow, W = sluice.flow, sluice.window

local out = flow.from_enumerable(sluice.range(1, n), { stages = 1 })
  :map(F.click)
  :partition({ key = { index = 2 }, window = W.session(30, "second", { index = 1 }, { index = 2 }) })
  :reduce(F.zero, F.count)
  :on_trigger(function(acc) return { acc } end)
  :to_list()

local total = 0
for _, c in ipairs(out) do total = total + c end
print(("RESULT sessions=%d count=%d"):format(#out, total))
