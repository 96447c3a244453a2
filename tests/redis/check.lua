-- sluice check.lua URL N: reads stream "out" back and prints
--   missing M duplicates D entries E pending P
-- (M: numbers 1..N never written, D: writes beyond the first, P: entries
-- of "in" still pending in group "g").
local url, n = arg[1], tonumber(arg[2])
local conn = sluice.redis.connect(url)
local seen, entries, dup, from = {}, 0, 0, "-"
while true do
  local got = conn:call("XRANGE", "out", from, "+", "COUNT", 10000)
  if #got == 0 then break end
  for _, e in ipairs(got) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == "n" then
        local v = sluice.redis.decode(f[i + 1])
        if seen[v] then dup = dup + 1 end
        seen[v] = true
      end
    end
  end
  entries = entries + #got
  from = "(" .. got[#got][1]
end
local missing = 0
for i = 1, n do if not seen[i] then missing = missing + 1 end end
print(("missing %d duplicates %d entries %d pending %d"):format(missing, dup, entries,
  conn:call("XPENDING", "in", "g")[1]))
