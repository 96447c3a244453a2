-- Windows on a partition whose events reach the window still encoded
-- (lua/README.md §8.5): the window reads each event's time from its bytes
-- ({index} or {field} specs), decodes each window's run for the layer's
-- loop, and decodes nothing when the layer's only work is a reducer that
-- never reads its event (sluice._reads_param, from the function's
-- instructions). Every flow here is checked against the same flow with
-- the time read by a function (the events decoded as before) and against
-- a brute-force count.
local lu = require("luaunit")
local F, W = sluice.flow, sluice.window

local function zero() return 0 end
local function count(_, acc) return acc + 1 end
local function sum2(e, acc) return acc + e[2] end
local function tagged(acc, _, w) return { { w.id, w.trigger, acc } } end

local function sorted(t)
  table.sort(t, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return tostring(a[2]) < tostring(b[2]) end
    return a[3] < b[3]
  end)
  return t
end

-- n events {ts, i} with times that grow by 0 to 4 ms (seeded): no
-- event is late, so every window's count is fixed whatever the batches.
local function events_of(seed, n)
  local x, ts, out = seed, 0, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    ts = ts + (x >> 16) % 5
    out[i] = { ts, i }
  end
  return out
end

-- The flow's {window id, trigger, acc} rows with window w over events:
-- the partition reads the time by spec, or by a function (decoded).
local function rows(events, w, red, by_fn, stages)
  local spec = by_fn and w(function(e) return e[1] end) or w({ index = 1 })
  return sorted(F.from_enumerable(events, { stages = 1, max_demand = 7 })
    :partition({ stages = stages, window = spec, max_demand = 5 })
    :reduce(zero, red):on_trigger(tagged):to_list())
end

TestWindowRaw = {}

function TestWindowRaw:test_reads_param()
  local R = sluice._reads_param
  local cases = {
    { function(_, acc) return acc + 1 end, 1, false },
    { function(e, acc) return acc + 1 end, 1, false },
    { function(e, acc) return acc + 1 end, 2, true },
    { function(e, acc) return acc + e[2] end, 1, true },
    { function(e, acc) return acc + e.n end, 1, true },
    { function(e, acc) local x = e; return acc end, 1, true },
    { function(e, acc) acc[e] = true; return acc end, 1, true },
    { function(e, acc) if e then return acc end; return acc + 1 end, 1, true },
    { function(e, acc) return tostring(e) end, 1, true },
    { function(e, acc) return acc, e end, 1, true },
    { function(e, acc) return { e } end, 1, true },
    { function(e, acc) return function() return acc end end, 1, true },   -- a closure: not walked
    { function(e, acc) acc.n = (acc.n or 0) + 1; return acc end, 1, false },
    { function(e, acc) for i = 1, 3 do acc = acc + i end; return acc end, 1, false },
    { function(e, acc) while acc < 100 do acc = acc * 2 end; return acc end, 1, false },
    { function(e, acc) return #acc > 0 and acc or { 1 } end, 1, false },
    { function(...) return select("#", ...) end, 1, true },               -- vararg
    { function(e) return 1 end, 3, false },                              -- no such parameter
    { print, 1, true },                                                  -- a C function
  }
  for i, c in ipairs(cases) do lu.assertEquals(R(c[1], c[2]), c[3], "case " .. i) end
  lu.assertErrorMsgContains("parameter out of range", R, count, 0)
end

function TestWindowRaw:test_fixed_windows_count_and_sum_as_when_decoded()
  for _, seed in ipairs({ 1, 42 }) do
    local events = events_of(seed, 2000)
    local want = {}   -- brute force: events per 10 ms window
    for _, e in ipairs(events) do want[e[1] // 10 * 10] = (want[e[1] // 10 * 10] or 0) + 1 end
    for _, stages in ipairs({ 1, 3 }) do
      local fixed = function(by) return W.fixed(10, "millisecond", by) end
      local c_raw = rows(events, fixed, count, false, stages)
      lu.assertEquals(c_raw, rows(events, fixed, count, true, stages), ("count, seed %d, stages %d"):format(seed, stages))
      lu.assertEquals(rows(events, fixed, sum2, false, stages), rows(events, fixed, sum2, true, stages),
        ("sum, seed %d, stages %d"):format(seed, stages))
      local got = {}
      for _, r in ipairs(c_raw) do got[r[1]] = (got[r[1]] or 0) + r[3] end
      for id, n in pairs(got) do if n == 0 then got[id] = nil end end
      lu.assertEquals(got, want, ("brute force, seed %d, stages %d"):format(seed, stages))
    end
  end
end

-- A late event is dropped on the bytes path as on the other, and an
-- allowed lateness takes it (one event a batch: the watermark moves with
-- each).
function TestWindowRaw:test_late_events_and_lateness()
  for _, by in ipairs({ { index = 1 }, function(e) return e[1] end }) do
    local function run(ev, w)
      return F.from_enumerable(ev, { stages = 1, max_demand = 1 })
        :partition({ stages = 1, max_demand = 1, window = w })
        :reduce(zero, count):on_trigger(tagged):to_list()
    end
    lu.assertEquals(run({ { 5000 }, { 6100 }, { 1000 }, { 6200 } }, W.fixed(1, "second", by)),
      { { 5000, "done", 1 }, { 6000, "done", 2 } })
    lu.assertEquals(run({ { 100 }, { 1100 }, { 200 }, { 1200 } }, W.fixed(1, "second", by):allowed_lateness(1, "hour")),
      { { 0, "watermark", 1 }, { 0, "done", 2 }, { 1000, "done", 2 } })
  end
end

function TestWindowRaw:test_sliding_and_sessions_as_when_decoded()
  local events = events_of(5, 1500)
  local sliding = function(by) return W.sliding(20, 10, "millisecond", by) end
  lu.assertEquals(rows(events, sliding, count, false, 2), rows(events, sliding, count, true, 2))
  lu.assertEquals(rows(events, sliding, sum2, false, 2), rows(events, sliding, sum2, true, 2))
  local session = function(by) return W.session(3, "millisecond", by) end
  lu.assertEquals(rows(events, session, count, false, 1), rows(events, session, count, true, 1))
end

-- Times the bytes do not give plainly: an integral float, a field by
-- name, and events that are not tables or have no time (their errors).
function TestWindowRaw:test_times_the_bytes_do_not_give()
  local ev = { { 0, 1 }, { 1.0, 2 }, { 1500, 3 }, { 2000.0, 4 } }
  local got = sorted(F.from_enumerable(ev, { stages = 1 })
    :partition({ stages = 1, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count):on_trigger(tagged):to_list())
  lu.assertEquals(got, { { 0, "done", 2 }, { 1000, "done", 1 }, { 2000, "done", 1 } })
  local named = sorted(F.from_enumerable({ { t = 5 }, { t = 1005 }, { t = 7 } }, { stages = 1 })
    :partition({ stages = 1, window = W.fixed(1, "second", { field = "t" }) })
    :reduce(zero, count):on_trigger(tagged):to_list())
  lu.assertEquals(named, { { 0, "done", 2 }, { 1000, "done", 1 } })
  local function err_of(events)
    local ok, err = pcall(function()
      F.from_enumerable(events, { stages = 1 })
        :partition({ stages = 1, window = W.fixed(1, "second", { index = 1 }) })
        :reduce(zero, count):to_list()
    end)
    lu.assertFalse(ok)
    return tostring(err):match("^[^\n]*")
  end
  lu.assertStrContains(err_of({ { 1, 1 }, "str" }), "the event time (by) must be an integer of ms, got nil for event 2")
  lu.assertStrContains(err_of({ { 1.5, 1 } }), "the event time (by) must be an integer of ms, got 1.5 for event 1")
  lu.assertStrContains(err_of({ { "x", 1 } }), "the event time (by) must be an integer of ms, got x for event 1")
  -- the reducer's own error, where nothing is decoded, is named as ever
  local ok, err = pcall(function()
    F.from_enumerable({ { 1, 1 }, { 2, 2 } }, { stages = 1 })
      :partition({ stages = 1, window = W.fixed(1, "second", { index = 1 }) })
      :reduce(zero, function(_, acc) error("bad", 0) end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrMatches(tostring(err):match("^[^\n]*"), "sluice%.flow: flow %d+ layer 1 stage 1 %(reduce%): bad$")
end

function TestWindowRaw:test_explain_says_how_events_reach_the_window()
  local function plan(red)
    return F.from_enumerable(sluice.range(1, 10), { stages = 1 }):map(function(i) return { i, i } end)
      :partition({ stages = 2, window = W.fixed(1, "second", { index = 1 }) })
      :reduce(zero, red):explain()
  end
  lu.assertStrContains(plan(count), "  events: the window reads their times from their bytes; "
    .. "the reducer reads no event, so they are not decoded\n")
  lu.assertStrContains(plan(sum2), "  events: the window reads their times from their bytes, "
    .. "then decodes each window's run\n")
  -- a map after the partition reads the events: they are decoded
  local mapped = F.from_enumerable(sluice.range(1, 10), { stages = 1 }):map(function(i) return { i, i } end)
    :partition({ stages = 2, window = W.fixed(1, "second", { index = 1 }) })
    :map(function(e) return e end):reduce(zero, count):explain()
  lu.assertStrContains(mapped, "then decodes each window's run")
  -- a time function reads decoded events
  local by_fn = F.from_enumerable(sluice.range(1, 10), { stages = 1 })
    :partition({ stages = 2, window = W.fixed(1, "second", function(i) return i end) })
    :reduce(zero, count):explain()
  lu.assertNotStrContains(by_fn, "events: ")
end

os.exit(lu.LuaUnit.run())
