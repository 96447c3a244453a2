-- Baseline for mapfilter.lua: one plain lua5.4 loop calling the same functions.
--   lua5.4 scripts/bench/mapfilter_plain.lua EVENTS
local dir = arg[0]:match("^(.*)/") or "."
local F = dofile(dir .. "/mapfilter_fns.lua")
local n = math.tointeger(tonumber(arg[1])) or 10000000
local inc, even, count = F.inc, F.even, F.count

local acc = 0
for i = 1, n do
  local x = inc(i)
  if even(x) then acc = count(x, acc) end
end
print("RESULT count=" .. acc)
