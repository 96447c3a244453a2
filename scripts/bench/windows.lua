-- Fixed 1-second windows over sluice.range(1, N) mapped to {ts, i}
-- (ts = i ms), counted per window.
--   sluice -w N scripts/bench/windows.lua partition|combine|first EVENTS
-- partition: the window is on a partition after the map (the map's
--            stages split the range): the shape a user writes first;
-- combine:   the same, tuned: the partition keyed by the time and the
--            reduce with a merge, so the map's stages count per window
--            and only the partial counts cross (combining per window);
-- first:     the window is on from_enumerable's layer (by = the raw i).
-- Prints "RESULT windows=<windows with events> count=<events counted>".
local dir = arg[0]:match("^(.*)/") or "."
local F = dofile(dir .. "/windows_fns.lua")
local mode = arg[1] or "partition"
local n = math.tointeger(tonumber(arg[2])) or 10000000
local flow, W = sluice.flow, sluice.window

local function per_window(acc, _, w) return { { w.id, acc } } end
local out
if mode == "partition" then
  out = flow.from_enumerable(sluice.range(1, n))
    :map(F.event)
    :partition({ window = W.fixed(1, "second", { index = 1 }) })
    :reduce(F.zero, F.count)
    :on_trigger(per_window)
    :to_list()
elseif mode == "combine" then
  out = flow.from_enumerable(sluice.range(1, n))
    :map(F.event)
    :partition({ key = { index = 1 }, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(F.zero, F.count, { merge = F.add })
    :on_trigger(per_window)
    :to_list()
elseif mode == "first" then
  out = flow.from_enumerable(sluice.range(1, n), { window = W.fixed(1, "second", F.time) })
    :map(F.event)
    :reduce(F.zero, F.count)
    :on_trigger(per_window)
    :to_list()
else
  error("windows.lua: mode must be partition, combine or first, got " .. tostring(mode))
end

local seen, windows, total = {}, 0, 0
for _, x in ipairs(out) do
  if x[2] > 0 and not seen[x[1]] then
    seen[x[1]] = true
    windows = windows + 1
  end
  total = total + x[2]
end
print(("RESULT windows=%d count=%d"):format(windows, total))
