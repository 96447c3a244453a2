-- A partitioned flow as users write it: a range through partition() with
-- STAGES stages, each counting its events.
--   sluice -w N scripts/bench/partition.lua EVENTS STAGES
-- Prints "RESULT count=<events>". Run with EVENTS = 1 it measures the
-- flow's set-up and tear-down alone.
local n = math.tointeger(tonumber(arg[1])) or 1000000
local stages = math.tointeger(tonumber(arg[2])) or 2
local counts = sluice.flow.from_enumerable(sluice.range(1, n))
  :partition({ stages = stages })
  :reduce(function() return 0 end, function(_, acc) return acc + 1 end)
  :to_list()
local total = 0
for _, c in ipairs(counts) do total = total + c end
print(("RESULT count=%d"):format(total))
