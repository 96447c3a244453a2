-- Sessions per user over a click log: a user's clicks at most 5 minutes
-- apart form one session (a session window with a gap, keyed by user);
-- prints per user the number of sessions and the longest one.
--   build/sluice examples/sessions.lua [clicks] [seed]
--
-- The log is generated here (seeded, so every run prints the same): clicks
-- {ts_ms, user} in time order over a day, each user active in bursts. The
-- flow partitions the clicks by user, so that all of a user's clicks meet
-- in one stage, in order; each stage keeps one accumulator per open
-- session and fires it once the clicks' time has moved more than the gap
-- past the session's last click.
local n = math.tointeger(tonumber(arg[1])) or 3000
local seed = math.tointeger(tonumber(arg[2])) or 11
local flow, window = sluice.flow, sluice.window

-- a small seeded generator (64-bit LCG), the same on every machine
local state = seed
local function rand(lo, hi)
  state = state * 6364136223846793005 + 1442695040888963407
  return lo + ((state >> 33) % (hi - lo + 1))
end

local users = { "ana", "ben", "cho", "dev", "eli", "fay", "gus", "hal" }
local SECOND, MINUTE = 1000, 60000

-- each user alternates bursts of clicks (1-60 s apart) and pauses (10-120
-- min); the log merges every user's clicks in time order
local clicks = {}
for u, name in ipairs(users) do
  local t = rand(0, 30) * MINUTE
  for _ = 1, n // #users do
    if rand(1, 100) <= 4 + u then t = t + rand(10, 120) * MINUTE
    else t = t + rand(1, 60) * SECOND end
    clicks[#clicks + 1] = { t, name }
  end
end
table.sort(clicks, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)

local sessions = flow.from_enumerable(clicks, { stages = 1 })
  :partition({ key = { index = 2 },
               window = window.session(5, "minute", { index = 1 }, { index = 2 }) })
  :reduce(function() return { clicks = 0 } end, function(click, s)
    s.first = s.first or click[1]
    s.last = click[1]
    s.clicks = s.clicks + 1
    return s
  end)
  -- window.key is the user, window.id the time of the session's first click
  :on_trigger(function(s, _, w) return { { w.key, s.last - s.first, s.clicks } } end)
  :to_list()

local per_user = {}
for _, s in ipairs(sessions) do
  local u = per_user[s[1]] or { sessions = 0, longest = -1, clicks = 0 }
  per_user[s[1]] = u
  u.sessions = u.sessions + 1
  if s[2] > u.longest or (s[2] == u.longest and s[3] > u.clicks) then
    u.longest, u.clicks = s[2], s[3]
  end
end
local names = {}
for name in pairs(per_user) do names[#names + 1] = name end
table.sort(names)
print("user  sessions  longest (min:s, clicks)")
for _, name in ipairs(names) do
  local u = per_user[name]
  print(("%-4s  %8d  %4d:%02d  %d"):format(name, u.sessions, u.longest // MINUTE,
                                           u.longest // SECOND % 60, u.clicks))
end
print(("%d clicks, %d sessions"):format(#clicks, #sessions))
