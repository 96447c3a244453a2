-- Shared by windows.lua (sluice) and windows_plain.lua (lua5.4): the
-- event, its time and the per-window count, so both sides do the same work.
local F = {}
F.WINDOW_MS = 1000
function F.event(i) return { i, i } end          -- {ts_ms, i}, ts = i
function F.time(i) return i end                  -- the time of a raw event i
function F.zero() return 0 end
function F.count(_, acc) return acc + 1 end
function F.add(a, b) return a + b end           -- merges two counts (combine)
return F
