-- Baseline for windows.lua: one lua5.4 loop building the same events and
-- counting them per fixed 1-second window.
--   lua5.4 scripts/bench/windows_plain.lua EVENTS
local dir = arg[0]:match("^(.*)/") or "."
local F = dofile(dir .. "/windows_fns.lua")
local n = math.tointeger(tonumber(arg[1])) or 10000000
local event, count, size = F.event, F.count, F.WINDOW_MS

local counts, windows = {}, 0
for i = 1, n do
  local e = event(i)
  local id = e[1] // size * size
  local c = counts[id]
  if c == nil then
    c = 0
    windows = windows + 1
  end
  counts[id] = count(e, c)
end
local total = 0
for _, c in pairs(counts) do total = total + c end
print(("RESULT windows=%d count=%d"):format(windows, total))
