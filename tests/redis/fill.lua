-- sluice fill.lua URL N: adds entries {n = 1..N} to stream "in".
local url, n = arg[1], tonumber(arg[2])
local conn = sluice.redis.connect(url)
for first = 1, n, 10000 do
  local ev = {}
  for i = first, math.min(first + 9999, n) do ev[#ev + 1] = { fields = { n = i } } end
  conn:add("in", ev)
end
print(("filled %d"):format(conn:call("XLEN", "in")))
