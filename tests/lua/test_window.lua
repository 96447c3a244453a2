-- Flow windows and triggers: each window type with exact expected output
-- over sluice.range and hand-made event-time data (stages = 1 and an
-- explicit max_demand where batch boundaries matter), session and sliding
-- windows against a brute-force computation on seeded random data, late
-- events in stats().late, and triggers.
local lu = require("luaunit")
local F, W = sluice.flow, sluice.window

local function sum(x, a) return a + x end
local function zero() return 0 end
local function count(_, a) return a + 1 end

-- on_trigger that emits {id, trigger, acc}
local function tagged(acc, _, w) return { { w.id, w.trigger, acc } } end

local function sorted(t, less)
  table.sort(t, less or function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return tostring(a[2]) < tostring(b[2])
  end)
  return t
end

-- A producer that emits what it is cast (and nothing on demand).
local function cast_source()
  return sluice.start({ type = "producer", handle_demand = function(_, s) return {}, s end,
    handle_cast = function(evs, s) return evs, s end }, nil)
end

-- A consumer that keeps every event; sink:call("get") returns them.
local function collecting_sink()
  return sluice.start({ type = "consumer",
    init = function() return {} end,
    handle_events = function(e, _, got) for _, x in ipairs(e) do got[#got + 1] = x end return {}, got end,
    handle_call = function(_, _, got) return got, {}, got end }, nil)
end

TestWindow = {}

-- Flow's examples: 1..100 with count(10) gives ten sums and an empty 11th
-- window; 1..25 gives three windows.
function TestWindow:test_count()
  local r = F.from_enumerable(sluice.range(1, 100), { stages = 1, window = W.count(10) })
    :reduce(zero, sum):to_list()
  lu.assertEquals(r, { 55, 155, 255, 355, 455, 555, 655, 755, 855, 955, 0 })
  local r2 = F.from_enumerable(sluice.range(1, 25), { stages = 1, window = W.count(10), max_demand = 3 })
    :reduce(zero, sum):on_trigger(tagged):to_list()
  lu.assertEquals(r2, { { 1, "done", 55 }, { 2, "done", 155 }, { 3, "done", 115 } })
end

-- Count windows count events as they enter, before the layer's mappers.
function TestWindow:test_count_before_mappers()
  local r = F.from_enumerable(sluice.range(1, 6), { stages = 1, window = W.count(2) })
    :filter(function(x) return x % 2 == 1 end)
    :reduce(zero, count):to_list()
  lu.assertEquals(r, { 1, 1, 1, 0 })
end

-- Fixed windows: gap windows fire with a fresh accumulator, in order.
function TestWindow:test_fixed_gap_windows()
  local ev = { { 0, "a" }, { 500, "b" }, { 3500, "c" }, { 3600, "d" } }
  local r = F.from_enumerable(ev, { stages = 1, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count):on_trigger(tagged):to_list()
  lu.assertEquals(r, { { 0, "done", 2 }, { 1000, "done", 0 }, { 2000, "done", 0 }, { 3000, "done", 2 } })
end

-- The event time may come from a function; windows on a partition.
function TestWindow:test_fixed_on_a_partition()
  local ev = {}
  for i = 0, 99 do ev[#ev + 1] = { ts = i * 100, user = "u" .. (i % 3) } end
  local r = F.from_enumerable(ev, { stages = 2 })
    :partition({ stages = 2, key = { field = "user" }, window = W.fixed(2, "second", function(e) return e.ts end) })
    :reduce(zero, count)
    :on_trigger(function(acc, p, w) return { { w.id, acc } } end)
    :to_list()
  local totals = {}
  for _, x in ipairs(r) do totals[x[1]] = (totals[x[1]] or 0) + x[2] end
  lu.assertEquals(totals, { [0] = 20, [2000] = 20, [4000] = 20, [6000] = 20, [8000] = 20 })
end

-- Windows on the first layer over a split source (a range or a file read
-- by the layer's stages themselves): each stage's windows hold its parts;
-- per window the stages' counts add up, nothing is late.
function TestWindow:test_split_source_windows()
  for _, stages in ipairs({ 1, 2, 3 }) do
    local r = F.from_enumerable(sluice.range(0, 99999), { stages = stages,
                                window = W.fixed(10, "second", function(i) return i end) })
      :reduce(zero, count):on_trigger(function(n, _, w) return { { w.id, n } } end):to_list()
    local per = {}
    for _, x in ipairs(r) do per[x[1]] = (per[x[1]] or 0) + x[2] end
    local want = {}
    for id = 0, 90000, 10000 do want[id] = 10000 end
    lu.assertEquals(per, want, "stages " .. stages)
  end
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  for i = 0, 2999 do f:write(i * 10, " x\n") end
  f:close()
  local r = F.from_enumerable(sluice.lines(path), { stages = 2,
                              window = W.fixed(5, "second", function(l) return math.tointeger(tonumber(l:match("^%d+"))) end) })
    :reduce(zero, count):on_trigger(function(n, _, w) return { { w.id, n } } end):to_list()
  os.remove(path)
  local per = {}
  for _, x in ipairs(r) do per[x[1]] = (per[x[1]] or 0) + x[2] end
  local want = {}
  for id = 0, 25000, 5000 do want[id] = 500 end
  lu.assertEquals(per, want)
end

-- A split sluice.range source with windows: each window's run of numbers
-- goes through the layer's loop as a range, with no table of them. A
-- window's run has gaps where the times interleave (every 4th number's
-- time goes back to window 0); the same flow with map_batch (which sees a
-- table of each chunk) gives the same output; a step other than 1; a bad
-- time names the number.
function TestWindow:test_range_runs()
  local function t(i) return i % 4 == 0 and 0 or i * 100 end
  local function run(src, opts, batch)
    local f = F.from_enumerable(src, opts)
    if batch then f = f:map_batch(function(b) return b end) end
    return f:map(function(i) return i * 2 end)
      :reduce(function() return {} end, function(x, a) a[#a + 1] = x; return a end)
      :on_trigger(function(a, _, w) return { { w.id, table.concat(a, " ") } } end):to_list()
  end
  local want = { { 0, "2 4 6 8 10 12 14 16 18 24 32 40 48 56" }, { 1000, "20 22 26 28 30 34 36 38" },
                 { 2000, "42 44 46 50 52 54 58" }, { 3000, "60" } }
  local opts = { stages = 1, window = W.fixed(1, "second", t) }
  lu.assertEquals(run(sluice.range(1, 30), opts), want)
  lu.assertEquals(run(sluice.range(1, 30), opts, true), want)
  -- counting down by 3: 40, 37, ..., 1 at times (41 - i) * 100
  local down = { stages = 1, window = W.fixed(1, "second", function(i) return (41 - i) * 100 end) }
  lu.assertEquals(run(sluice.range(40, 1, -3), down),
    { { 0, "80 74 68" }, { 1000, "62 56 50 44" }, { 2000, "38 32 26" }, { 3000, "20 14 8" }, { 4000, "2" } })
  -- two and three stages over 1..10000 (chunks of 4096 numbers): each
  -- holds its part of the range; per window the counts add up
  for _, stages in ipairs({ 2, 3 }) do
    local r = F.from_enumerable(sluice.range(1, 10000), { stages = stages,
                                window = W.fixed(1, "second", function(i) return i end) })
      :reduce(zero, count):on_trigger(function(n, _, w) return { { w.id, n } } end):to_list()
    local per = {}
    for _, x in ipairs(r) do per[x[1]] = (per[x[1]] or 0) + x[2] end
    local want = { [0] = 999, [10000] = 1 }
    for id = 1000, 9000, 1000 do want[id] = 1000 end
    lu.assertEquals(per, want, "stages " .. stages)
  end
  local ok, e = pcall(run, sluice.range(1, 3), { stages = 1, window = W.fixed(1, "second", { index = 1 }) })
  lu.assertFalse(ok)
  lu.assertStrContains(e, " (window): the event time (by) must be an integer of ms, got nil for event 1")
end

-- An event whose window has already closed is dropped and counted late.
function TestWindow:test_late_events()
  local ev = { { 5000 }, { 6100 }, { 1000 }, { 6200 } }
  local h = F.from_enumerable(ev, { stages = 1, max_demand = 1, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count):on_trigger(tagged)
  local r = h:to_list()
  lu.assertEquals(r, { { 5000, "done", 1 }, { 6000, "done", 2 } })
  -- through a source that stays open, to read stats().late
  local src = cast_source()
  local run = F.from_stages({ src }, { stages = 1, max_demand = 1, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count):start()
  for _, e in ipairs(ev) do src:cast({ e }) end
  local late
  for _ = 1, 200 do
    for _, x in ipairs(run:stats()) do
      if x.layer == 1 then late = x.late end
    end
    if late == 1 then break end
    sluice.sleep(5)
  end
  lu.assertEquals(late, 1)
  src:stop()
  run:await()
end

-- Lateness: a closed window fires "watermark", takes late events, then "done".
function TestWindow:test_allowed_lateness()
  local ev = { { 100 }, { 1100 }, { 200 }, { 1200 } }
  local r = F.from_enumerable(ev, { stages = 1, max_demand = 1,
                                    window = W.fixed(1, "second", { index = 1 }):allowed_lateness(1, "hour") })
    :reduce(zero, count):on_trigger(tagged):to_list()
  lu.assertEquals(r, { { 0, "watermark", 1 }, { 0, "done", 2 }, { 1000, "done", 2 } })
end

-- trigger_every: within each window, across batches; the accumulator goes on.
function TestWindow:test_trigger_every()
  local r = F.from_enumerable(sluice.range(1, 5), { stages = 1, max_demand = 2, window = W.global():trigger_every(2) })
    :reduce(zero, sum):on_trigger(tagged):to_list()
  lu.assertEquals(r, { { "global", "every", 3 }, { "global", "every", 10 }, { "global", "done", 15 } })
  local r2 = F.from_enumerable(sluice.range(1, 7), { stages = 1, window = W.count(4):trigger_every(3) })
    :reduce(zero, sum):on_trigger(tagged):to_list()
  lu.assertEquals(r2, { { 1, "every", 6 }, { 1, "done", 10 }, { 2, "every", 18 }, { 2, "done", 18 } })
end

-- on_trigger's new accumulator continues the window (a reset).
function TestWindow:test_on_trigger_new_acc()
  local r = F.from_enumerable(sluice.range(1, 6), { stages = 1, window = W.global():trigger_every(2) })
    :reduce(zero, sum)
    :on_trigger(function(acc, _, w) return { { w.trigger, acc } }, 0 end)
    :to_list()
  lu.assertEquals(r, { { "every", 3 }, { "every", 7 }, { "every", 11 }, { "done", 0 } })
end

-- A {"trigger", name} message fires name on every open window.
function TestWindow:test_message_trigger()
  local src = cast_source()
  local run = F.from_stages({ src }, { stages = 1 })
    :reduce(zero, sum):on_trigger(tagged)
  local sink = collecting_sink()
  local h = run:into_stages({ sink })
  src:cast({ 1, 2, 3 })
  sluice.sleep(50)
  h:send({ "trigger", "sample" })
  local got
  for _ = 1, 200 do
    got = sink:call("get")
    if #got > 0 then break end
    sluice.sleep(5)
  end
  lu.assertEquals(got, { { "global", "sample", 6 } })
  src:stop()
  h:stop()
end

-- Periodic windows: processing time; events arrive in two bursts far
-- apart (generous margins), each burst in its own window.
function TestWindow:test_periodic()
  local src = cast_source()
  local sink = collecting_sink()
  local h = F.from_stages({ src }, { stages = 1, window = W.periodic(300, "millisecond") })
    :reduce(zero, sum):on_trigger(function(acc) return { acc } end)
    :into_stages({ sink })
  src:cast({ 1, 2, 3 })
  sluice.sleep(450)
  src:cast({ 10, 20 })
  sluice.sleep(450)
  src:stop()
  h:await()
  local got = sink:call("get")
  local nonzero = {}
  for _, v in ipairs(got) do if v ~= 0 then nonzero[#nonzero + 1] = v end end
  lu.assertEquals(nonzero, { 6, 30 })
end

-- trigger_periodically fires on the open window each period.
function TestWindow:test_trigger_periodically()
  local src = cast_source()
  local sink = collecting_sink()
  local h = F.from_stages({ src }, { stages = 1, window = W.global():trigger_periodically(100, "millisecond") })
    :reduce(zero, sum):on_trigger(tagged):into_stages({ sink })
  src:cast({ 4, 5 })
  sluice.sleep(350)
  src:stop()
  h:await()
  local got = sink:call("get")
  lu.assertTrue(#got >= 3)
  lu.assertEquals(got[1], { "global", "periodically", 9 })
  lu.assertEquals(got[#got], { "global", "done", 9 })
end

-- A custom trigger sees each batch before the layer's operations and
-- decides what is reduced and when it fires (here: every two events).
function TestWindow:test_custom_trigger()
  local two = W.global():trigger(function() return 0 end, function(events, n)
    if n + #events >= 2 then
      local pre, post = {}, {}
      for i = 1, #events do
        if i <= 2 - n then pre[#pre + 1] = events[i] else post[#post + 1] = events[i] end
      end
      return "trigger", "two", pre, post, 0
    end
    return "cont", n + #events
  end)
  for _, md in ipairs({ 1, 3, 5 }) do
    local r = F.from_enumerable(sluice.range(1, 5), { stages = 1, max_demand = md, window = two })
      :map(function(x) return x * 10 end)
      :reduce(zero, sum):on_trigger(function(acc, _, w) return { { w.trigger, acc } } end):to_list()
    lu.assertEquals(r, { { "two", 30 }, { "two", 100 }, { "done", 150 } }, "max_demand " .. md)
  end
  -- "cont", events: only those are reduced
  local odd = W.global():trigger(function() return nil end, function(events)
    local keep = {}
    for _, e in ipairs(events) do if e % 2 == 1 then keep[#keep + 1] = e end end
    return "cont", keep, nil
  end)
  lu.assertEquals(F.from_enumerable(sluice.range(1, 9), { stages = 1, window = odd }):reduce(zero, sum):to_list(), { 25 })
  local bad = W.global():trigger(function() return 0 end, function() return "maybe" end)
  local ok, e = pcall(function()
    return F.from_enumerable({ 1 }, { stages = 1, window = bad }):reduce(zero, sum):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(e, '(trigger): the trigger must return "cont" or "trigger", got maybe')
end

-- A custom trigger keeps one state per window: with sliding windows two
-- windows are open at once, and each fires "two" after each two of its own
-- events (its state from acc_fun when the window starts). Whatever the
-- batches, every window fires after its 2nd and 4th event.
function TestWindow:test_custom_trigger_per_window()
  local two = function(events, n)
    local pre, post = {}, {}
    for i = 1, #events do
      if n + i <= 2 then pre[#pre + 1] = events[i] else post[#post + 1] = events[i] end
    end
    if n + #events >= 2 then return "trigger", "two", pre, post, 0 end
    return "cont", n + #events
  end
  local function run(md)
    local w = W.sliding(2, 1, "second", { index = 1 }):trigger(zero, two)
    return F.from_enumerable({ { 0 }, { 500 }, { 1000 }, { 1500 }, { 2500 } }, { stages = 1, max_demand = md, window = w })
      :reduce(zero, count):on_trigger(tagged):to_list()
  end
  -- one event per batch: the watermark (the latest time) ends a window
  -- once an event 2 s after its start has arrived
  lu.assertEquals(run(1), { { -1000, "two", 2 }, { 0, "two", 2 }, { -1000, "done", 2 }, { 0, "two", 4 },
                            { 1000, "two", 2 }, { 0, "done", 4 }, { 1000, "done", 3 }, { 2000, "done", 1 } })
  -- one batch: the windows' runs in order, then the watermark's ends
  lu.assertEquals(run(10), { { -1000, "two", 2 }, { 0, "two", 2 }, { 0, "two", 4 }, { 1000, "two", 2 },
                            { -1000, "done", 2 }, { 0, "done", 4 }, { 1000, "done", 3 }, { 2000, "done", 1 } })
  -- "cont", events per window: a fixed window with lateness stays open
  -- while the next one fills; each keeps only the first two of its events
  local first2 = W.fixed(1, "second", { index = 1 }):allowed_lateness(1, "hour")
    :trigger(zero, function(events, n)
      local keep = {}
      for i = 1, #events do if n + i <= 2 then keep[#keep + 1] = events[i] end end
      return "cont", keep, n + #events
    end)
  local r = F.from_enumerable({ { 100 }, { 1100 }, { 1200 }, { 200 }, { 300 }, { 1300 }, { 2100 } },
                              { stages = 1, max_demand = 1, window = first2 })
    :reduce(zero, count):on_trigger(tagged):to_list()
  lu.assertEquals(r, { { 0, "watermark", 1 }, { 1000, "watermark", 2 }, { 0, "done", 2 }, { 1000, "done", 2 },
                       { 2000, "done", 1 } })
end

-- window_join: rows match only within one window; an outer join's
-- unmatched rows come out when their window ends.
function TestWindow:test_window_join()
  local left = F.from_enumerable({ { 100, "a", "L1" }, { 200, "b", "L2" }, { 1500, "a", "L3" } }, { stages = 1 })
  local right = F.from_enumerable({ { 150, "a", "R1" }, { 1200, "b", "R2" }, { 1600, "a", "R3" } }, { stages = 1 })
  local want = {
    inner = { "L1+R1", "L3+R3" },
    left_outer = { "L1+R1", "L2+-", "L3+R3" },
    right_outer = { "-+R2", "L1+R1", "L3+R3" },
    full_outer = { "-+R2", "L1+R1", "L2+-", "L3+R3" },
  }
  for mode, rows in pairs(want) do
    local r = F.window_join(mode, left, right, W.fixed(1, "second", { index = 1 }),
      function(e) return e[2] end, function(e) return e[2] end,
      function(l, rr) return (l and l[3] or "-") .. "+" .. (rr and rr[3] or "-") end, { stages = 2 }):to_list()
    table.sort(r)
    lu.assertEquals(r, rows, mode)
  end
  -- with a reducer after it: one count per window
  local counted = F.window_join("full_outer", left, right, W.fixed(1, "second", { index = 1 }),
      function(e) return e[2] end, function(e) return e[2] end,
      function(l, rr) return { l, rr } end, { stages = 1 })
    :reduce(zero, count):on_trigger(function(n, _, w) return { { w.id, n } } end):to_list()
  lu.assertEquals(sorted(counted), { { 0, 2 }, { 1000, 2 } })
end

-- Brute force: the windows each event belongs to, counted.
local function brute_sliding(times, size, every)
  local c = {}
  for _, t in ipairs(times) do
    local s = (t // every) * every
    while s > t - size do
      c[s] = (c[s] or 0) + 1
      s = s - every
    end
  end
  return c
end

-- Sliding windows on ordered event times equal the brute-force counts.
function TestWindow:test_sliding_brute_force()
  for seed = 1, 20 do
    math.randomseed(seed)
    local times, t = {}, math.random(-50, 50)
    for i = 1, 200 do
      t = t + math.random(0, 7)
      times[i] = { t }
    end
    local size, every = math.random(5, 30), nil
    every = math.random(1, size)
    local r = F.from_enumerable(times, { stages = 1, max_demand = math.random(1, 20),
                                         window = W.sliding(size, every, "millisecond", { index = 1 }) })
      :reduce(zero, count):on_trigger(function(acc, _, w) return { { w.id, acc } } end):to_list()
    local got = {}
    for _, x in ipairs(r) do if x[2] > 0 then got[x[1]] = x[2] end end
    local plain = {}
    for i, x in ipairs(times) do plain[i] = x[1] end
    lu.assertEquals(got, brute_sliding(plain, size, every), "seed " .. seed)
  end
end

-- Sessions per key on ordered times equal a brute-force split.
function TestWindow:test_session_brute_force()
  for seed = 1, 20 do
    math.randomseed(seed)
    local ev, t = {}, 0
    for i = 1, 150 do
      t = t + math.random(0, 12)
      ev[i] = { t, "k" .. math.random(1, 3) }
    end
    local gap = math.random(3, 10)
    local r = F.from_enumerable(ev, { stages = 1, max_demand = math.random(1, 30),
                                      window = W.session(gap, "millisecond", { index = 1 }, { index = 2 }) })
      :reduce(zero, count):on_trigger(function(acc, _, w) return { { w.key, w.id, acc } } end):to_list()
    -- brute force: per key, consecutive events at most gap apart share a session
    local exp = {}
    local sessions, open = {}, {}
    for _, e in ipairs(ev) do
      local k, time = e[2], e[1]
      local cur = open[k]
      if cur and time - cur.hi <= gap then
        cur.hi, cur[3] = time, cur[3] + 1
      else
        cur = { k, time, 1, hi = time }
        open[k] = cur
        sessions[#sessions + 1] = cur
      end
    end
    for _, s in ipairs(sessions) do exp[#exp + 1] = { s[1], s[2], s[3] } end
    lu.assertEquals(sorted(r), sorted(exp), "seed " .. seed)
  end
end

-- Sessions an out-of-order event bridges merge when the reducer has a
-- merge function: in one batch (the watermark moves after it), or late
-- within allowed lateness. The merged session keeps the earlier id; its
-- accumulator is merge(later's, earlier's), then the bridging event.
function TestWindow:test_session_merge()
  local ev = { { 0, "a" }, { 15, "a" }, { 7, "a" }, { 40, "a" }, { 9, "b" } }
  local function keyed(acc, _, w) return { { w.key, w.id, w.trigger, acc } } end
  local function run(window, md, opts)
    return F.from_enumerable(ev, { stages = 1, max_demand = md, window = window })
      :reduce(function() return {} end, function(e, l) l[#l + 1] = e[1]; return l end, opts)
      :on_trigger(keyed):to_list()
  end
  local append = { merge = function(p, a) for _, x in ipairs(p) do a[#a + 1] = x end return a end }
  local sw = W.session(10, "millisecond", { index = 1 }, { index = 2 })
  lu.assertEquals(run(sw, 10, append), { { "a", 0, "done", { 0, 15, 7 } }, { "b", 9, "done", { 9 } },
                                         { "a", 40, "done", { 40 } } })
  -- without a merge function they stay apart; 7 joins the earlier one
  lu.assertEquals(run(sw, 10), { { "a", 0, "done", { 0, 7 } }, { "b", 9, "done", { 9 } },
                                 { "a", 15, "done", { 15 } }, { "a", 40, "done", { 40 } } })
  -- one event per batch with lateness: session 0 has fired watermark (at
  -- 15) when 7 bridges it to 15; the merged session [0, 15] fires
  -- watermark again once 40 passes it; 9 of "b" is late by then
  local late = W.session(10, "millisecond", { index = 1 }, { index = 2 }):allowed_lateness(1, "hour")
  lu.assertEquals(run(late, 1, append), { { "a", 0, "watermark", { 0 } }, { "a", 0, "watermark", { 0, 15, 7 } },
                                          { "a", 0, "done", { 0, 15, 7 } }, { "a", 40, "done", { 40 } } })
  -- reduce_by_key merges with its own function
  local r = F.from_enumerable({ { 0, 1 }, { 15, 2 }, { 7, 4 } }, { stages = 1, max_demand = 10,
                              window = W.session(10, "millisecond", function(e) return e[1] end) })
    :map(function(e) return { "sum", e[2] } end)
    :reduce_by_key(function(a, b) return a + b end):on_trigger(function(acc, _, w) return { { w.id, acc.sum } } end)
    :to_list()
  lu.assertEquals(r, { { 0, 7 } })
end

-- In one batch, whatever the order, sessions merged per key are the
-- clusters of its sorted times no more than gap apart.
function TestWindow:test_session_merge_brute_force()
  for seed = 1, 20 do
    math.randomseed(seed)
    local ev = {}
    for i = 1, 120 do ev[i] = { math.random(0, 400), "k" .. math.random(1, 3) } end
    local gap = math.random(2, 9)
    local r = F.from_enumerable(ev, { stages = 1, max_demand = 1000,
                                      window = W.session(gap, "millisecond", { index = 1 }, { index = 2 }) })
      :reduce(function() return { 0, math.maxinteger, math.mininteger } end,
              function(e, a) return { a[1] + 1, math.min(a[2], e[1]), math.max(a[3], e[1]) } end,
              { merge = function(p, a) return { a[1] + p[1], math.min(a[2], p[2]), math.max(a[3], p[3]) } end })
      :on_trigger(function(a, _, w) return { { w.key, a[2], a[3], a[1] } } end):to_list()
    local bykey, exp = {}, {}
    for _, e in ipairs(ev) do
      bykey[e[2]] = bykey[e[2]] or {}
      table.insert(bykey[e[2]], e[1])
    end
    for k, ts in pairs(bykey) do
      table.sort(ts)
      local cur
      for _, t in ipairs(ts) do
        if cur and t - cur[3] <= gap then
          cur[3], cur[4] = t, cur[4] + 1
        else
          cur = { k, t, t, 1 }
          exp[#exp + 1] = cur
        end
      end
    end
    lu.assertEquals(sorted(r), sorted(exp), "seed " .. seed)
  end
end

-- Windows per partition with a departition: one value per window.
function TestWindow:test_departition_per_window()
  local r = F.from_enumerable(sluice.range(0, 5999), { stages = 2 })
    :map(function(x) return { x, x } end)
    :partition({ stages = 3, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, function(e, a) return a + 1 end)
    :departition(zero, function(s, a) return a + s end, function(acc, id) return { id, acc } end)
    :to_list()
  lu.assertEquals(sorted(r), { { 0, 1000 }, { 1000, 1000 }, { 2000, 1000 }, { 3000, 1000 }, { 4000, 1000 },
                               { 5000, 1000 } })
end

-- After a windowed layer, a departition gives a window's value as soon as
-- every partition has ended that window, not only at the end of input.
function TestWindow:test_departition_emits_as_windows_end()
  local src = cast_source()
  local sink = collecting_sink()
  local h = F.from_stages({ src }, { stages = 1 })
    :partition({ stages = 2, key = { index = 2 }, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count)
    :departition(zero, function(s, a) return a + s end, function(acc, id) return { id, acc } end)
    :into_stages({ sink })
  src:cast({ { 100, "a" }, { 200, "b" }, { 300, "c" }, { 1500, "a" }, { 1600, "b" }, { 2500, "a" }, { 2600, "b" } })
  local before
  for _ = 1, 400 do
    before = sink:call("get")
    if #before >= 2 then break end
    sluice.sleep(5)
  end
  lu.assertEquals(sorted(before), { { 0, 3 }, { 1000, 2 } })
  src:stop()
  h:await()
  lu.assertEquals(sorted(sink:call("get")), { { 0, 3 }, { 1000, 2 }, { 2000, 2 } })
end

-- A window some partition never had: partition 2 gets no event of
-- windows 0 and 1000, but once it has ended window 2000 it is past them,
-- so the departition (and take_sort) gives windows 0, 1000 and 2000, in
-- order, while the source is still open; 3000 comes at the end.
function TestWindow:test_departition_past_windows_a_partition_never_had()
  local ev = { { 100, 1 }, { 1100, 1 }, { 2100, 1 }, { 2200, 2 }, { 3100, 1 }, { 3200, 2 } }
  local function layer(src)
    return F.from_stages({ src }, { stages = 1 })
      :partition({ stages = 2, hash = function(e) return e[2] end, window = W.fixed(1, "second", { index = 1 }) })
  end
  local function wait_for(sink, n)
    local got
    for _ = 1, 400 do
      got = sink:call("get")
      if #got >= n then break end
      sluice.sleep(5)
    end
    return got
  end
  local src, sink = cast_source(), collecting_sink()
  local h = layer(src):reduce(zero, count)
    :departition(zero, function(s, a) return a + s end, function(acc, id) return { id, acc } end)
    :into_stages({ sink })
  src:cast(ev)
  lu.assertEquals(wait_for(sink, 3), { { 0, 1 }, { 1000, 1 }, { 2000, 2 } })
  src:stop()
  h:await()
  lu.assertEquals(sink:call("get"), { { 0, 1 }, { 1000, 1 }, { 2000, 2 }, { 3000, 2 } })

  src, sink = cast_source(), collecting_sink()
  h = layer(src):reduce(function() return {} end, function(e, l) l[#l + 1] = e[1]; return l end)
    :take_sort(1, function(a, b) return a > b end):into_stages({ sink })
  src:cast(ev)
  lu.assertEquals(wait_for(sink, 3), { { 100 }, { 1100 }, { 2200 } })
  src:stop()
  h:await()
  lu.assertEquals(sink:call("get"), { { 100 }, { 1100 }, { 2200 }, { 3200 } })
end

-- Build-time errors name the window and the operation.
function TestWindow:test_errors()
  local ok, e = pcall(function()
    return F.from_enumerable({ 1 }, { window = W.count(2) }):map(function(x) return x end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertEquals(e, "sluice.flow: a count window needs a reducing operation in its layer (reduce, "
    .. "emit_and_reduce, group_by, group_by_key, uniq or uniq_by)")
  ok, e = pcall(function()
    return F.from_enumerable({ { "x" } }, { stages = 1, window = W.fixed(1, "second", { index = 1 }) })
      :reduce(zero, count):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(e, 'sluice.flow: flow ')
  lu.assertStrContains(e, ' (window): the event time (by) must be an integer of ms, got x for event 1')
end

os.exit(lu.LuaUnit.run())
