-- Event-time analytics over an access log: the three most visited pages
-- of every minute, counted by the time each request was made, not by when
-- its record reached the flow.
--   build/sluice examples/access_log.lua [minutes] [seed]
--
-- The log is generated here (seeded, so every run prints the same): records
-- {ts_ms, page, user} from 12:00 on, in arrival order. Most records arrive
-- a moment after their request; some arrive 20-90 s late, after records of
-- the next minute (out of order); a few, from a client that reconnects,
-- carry times from before 12:00.
--
-- The flow partitions the records by page and gives each partition fixed
-- one-minute windows on ts_ms. allowed_lateness keeps a window open after
-- the watermark passes its end, so the delayed records still count: its
-- "watermark" trigger is an early result (skipped here) and its "done"
-- trigger the final one. (The lateness runs on the stage's clock from that
-- trigger; this run ends well within it.) Records older than the first
-- window a partition saw have no window left: they are dropped as late.
local minutes = math.tointeger(tonumber(arg[1])) or 6
local seed = math.tointeger(tonumber(arg[2])) or 7
local flow, window = sluice.flow, sluice.window

-- a small seeded generator (64-bit LCG), the same on every machine
local state = seed
local function rand(lo, hi)
  state = state * 6364136223846793005 + 1442695040888963407
  return lo + ((state >> 33) % (hi - lo + 1))
end

local pages = { "/", "/about", "/blog", "/cart", "/checkout", "/docs", "/login", "/pricing", "/search", "/shop" }
local MINUTE = 60000

-- each minute has its own popularity: a random weight per page
local weights = {}
local function pick_page(minute)
  local w = weights[minute]
  if not w then
    w = { total = 0 }
    for i = 1, #pages do
      w[i] = rand(1, 20) * rand(1, 5)
      w.total = w.total + w[i]
    end
    weights[minute] = w
  end
  local r = rand(1, w.total)
  for i = 1, #pages do
    r = r - w[i]
    if r <= 0 then return pages[i] end
  end
end

-- requests every 0-150 ms from 12:00:03 on; each record arrives after a delay
local recs, t = {}, 3000
while true do
  t = t + rand(0, 150)
  if t >= minutes * MINUTE then break end
  local delay = rand(0, 2000)
  if rand(1, 100) <= 5 and t > 90000 then delay = rand(20000, 90000) end
  local ts = t - delay
  if rand(1, 200) == 1 and t > MINUTE then ts = -rand(1000, 120000) end   -- from before 12:00
  recs[#recs + 1] = { arrival = t, ts, pick_page(ts // MINUTE), ("u%02d"):format(rand(1, 40)) }
end
table.sort(recs, function(a, b)
  if a.arrival ~= b.arrival then return a.arrival < b.arrival end
  return a[1] < b[1]
end)
local log = {}
for i, r in ipairs(recs) do log[i] = { r[1], r[2], r[3] } end

local counts = flow.from_enumerable(log, { stages = 1 })
  :partition({ key = { index = 2 },
               window = window.fixed(1, "minute", { index = 1 }):allowed_lateness(10, "minute") })
  :reduce(function() return {} end, function(rec, acc)
    acc[rec[2]] = (acc[rec[2]] or 0) + 1
    return acc
  end)
  :on_trigger(function(acc, _, w)
    if w.trigger ~= "done" then return {} end   -- early ("watermark") results
    local out = {}
    for page, c in pairs(acc) do out[#out + 1] = { w.id, page, c } end
    return out
  end)
  :to_list()

-- per window, pages by count (ties alphabetically): independent of which
-- partition a page landed in
local by_window, ids, counted = {}, {}, 0
for _, x in ipairs(counts) do
  local id = x[1]
  if not by_window[id] then
    by_window[id] = {}
    ids[#ids + 1] = id
  end
  table.insert(by_window[id], x)
  counted = counted + x[3]
end
table.sort(ids)
local function clock(ms) return ("%02d:%02d"):format(12 + ms // 3600000, ms // MINUTE % 60) end
for _, id in ipairs(ids) do
  local ps = by_window[id]
  table.sort(ps, function(a, b)
    if a[3] ~= b[3] then return a[3] > b[3] end
    return a[2] < b[2]
  end)
  local top = {}
  for i = 1, math.min(3, #ps) do top[i] = ("%-9s %3d"):format(ps[i][2], ps[i][3]) end
  print(("%s-%s  %s"):format(clock(id), clock(id + MINUTE), table.concat(top, "  ")))
end
print(("%d records, %d counted, %d dropped as late"):format(#log, counted, #log - counted))
