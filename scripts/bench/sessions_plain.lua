-- Baseline for sessions.lua: one lua5.4 loop over the same clicks, each
-- user's open session counted until a gap of more than 30 s.
--   lua5.4 scripts/bench/sessions_plain.lua EVENTS
local dir = arg[0]:match("^(.*)/") or "."
local F = dofile(dir .. "/sessions_fns.lua")
local n = math.tointeger(tonumber(arg[1])) or 1000000
local click, count, gap = F.click, F.count, F.GAP_MS

local last, acc = {}, {}       -- per user: last click time, open session's count
local sessions, total = 0, 0
for i = 1, n do
  local c = click(i)
  local t, u = c[1], c[2]
  local prev = last[u]
  if prev == nil or t - prev > gap then
    if prev ~= nil then total = total + acc[u] end
    sessions = sessions + 1
    acc[u] = 0
  end
  last[u] = t
  acc[u] = count(c, acc[u])
end
for _, a in pairs(acc) do total = total + a end
print(("RESULT sessions=%d count=%d"):format(sessions, total))
