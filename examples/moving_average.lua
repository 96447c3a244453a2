-- A moving average with sliding windows: windows of 10 s starting every
-- 2 s over a sensor's readings, so each reading counts in five windows;
-- prints each window's start and the average of its readings, in order.
--   build/sluice examples/moving_average.lua [seconds] [seed]
--
-- The readings {ts_ms, value} are generated here (seeded, so every run
-- prints the same): one every 300-1500 ms, a random walk in tenths of a
-- degree, with a silent stretch in the middle (the windows that cover no
-- reading print "-"). Windows are named by their start; the first ones
-- start before the first reading, as they cover it too.
local seconds = math.tointeger(tonumber(arg[1])) or 60
local seed = math.tointeger(tonumber(arg[2])) or 3
local flow, window = sluice.flow, sluice.window

-- a small seeded generator (64-bit LCG), the same on every machine
local state = seed
local function rand(lo, hi)
  state = state * 6364136223846793005 + 1442695040888963407
  return lo + ((state >> 33) % (hi - lo + 1))
end

local readings, t, v = {}, rand(0, 999), 200
local quiet_from, quiet_to = seconds * 1000 // 2, seconds * 1000 // 2 + 14000
while t < seconds * 1000 do
  if t < quiet_from or t >= quiet_to then
    readings[#readings + 1] = { t, v }
  end
  t = t + rand(300, 1500)
  v = v + rand(-6, 6)
end

-- one stage: the readings arrive in time order
local avgs = flow.from_enumerable(readings, { stages = 1, window = window.sliding(10, 2, "second", { index = 1 }) })
  :reduce(function() return { sum = 0, n = 0 } end, function(r, acc)
    acc.sum, acc.n = acc.sum + r[2], acc.n + 1
    return acc
  end)
  :on_trigger(function(acc, _, w) return { { w.id, acc.sum, acc.n } } end)
  :to_list()

table.sort(avgs, function(a, b) return a[1] < b[1] end)
print("start   readings  average")
for _, a in ipairs(avgs) do
  local start, sum, n = a[1], a[2], a[3]
  -- tenths of a degree -> degrees, rounded to 0.01 (half up)
  local avg = n > 0 and ("%.2f"):format((sum * 10 // n + ((sum * 10 % n) * 2 >= n and 1 or 0)) / 100) or "-"
  print(("%5.1fs  %8d  %7s"):format(start / 1000, n, avg))
end
print(("%d readings, %d windows"):format(#readings, #avgs))
