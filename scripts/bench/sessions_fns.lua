-- Shared by sessions.lua (sluice) and sessions_plain.lua (lua5.4): a click
-- log computed from the event number i, seeded: click i is at
-- i * 100 + (1..99) ms (times increase with random gaps of 2-198 ms) by
-- one of 100 users; sessions close after a 30 s gap.
local F = {}
F.USERS = 100
F.GAP_MS = 30000
local SEED = 42
local function mix(i)
  local z = (i + SEED) * -7046029254386353131      -- 0x9E3779B97F4A7C15
  z = (z ~ (z >> 31)) * -4658895280553007687       -- 0xBF58476D1CE4E5B9
  return z ~ (z >> 29)
end
function F.time(i) return i * 100 + 1 + (mix(i) >> 1) % 99 end
function F.user(i) return (mix(i) >> 20) % F.USERS end
function F.click(i) return { F.time(i), F.user(i) } end
function F.zero() return 0 end
function F.count(_, acc) return acc + 1 end
return F
