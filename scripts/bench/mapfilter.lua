-- map (+1) -> filter (even) -> count over sluice.range(1, N) on Flow.
--   sluice -w N scripts/bench/mapfilter.lua EVENTS
-- Prints "RESULT count=<n>".
local dir = arg[0]:match("^(.*)/") or "."
local F = dofile(dir .. "/mapfilter_fns.lua")
local n = math.tointeger(tonumber(arg[1])) or 10000000
local flow = sluice.flow

local per_stage = flow.from_enumerable(sluice.range(1, n))
  :map(F.inc)
  :filter(F.even)
  :reduce(function() return 0 end, F.count)
  :emit("state")
  :to_list()

local total = 0
for _, c in ipairs(per_stage) do total = total + c end
print("RESULT count=" .. total)
