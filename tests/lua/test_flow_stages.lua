-- Flow and hand-written stages: from_stages/into_stages/through_stages,
-- their *_specs forms, streams stopped early, and running flows
-- (start, await, stop, stats) (API.md §4).
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, Recorder = H.sorted, H.Recorder
local F = sluice.flow

local function range_list(a, b, f)
  local t = {}
  for i = a, b do t[#t + 1] = f and f(i) or i end
  return t
end

-- Waits (up to 2 s) until pred() holds; returns whether it did.
local function eventually(pred)
  for _ = 1, 200 do
    if pred() then return true end
    sluice.sleep(10)
  end
  return pred()
end

-- Counter: emits arg.first..arg.last then finishes; arg.rec (optional)
-- is cast {"terminate", reason} when it ends.
local Counter = {
  type = "producer",
  init = function(arg) return { next = arg.first, last = arg.last, rec = arg.rec } end,
  handle_demand = function(n, st)
    local out = {}
    while #out < n and (st.last == nil or st.next <= st.last) do
      out[#out + 1] = st.next
      st.next = st.next + 1
    end
    if st.last and st.next > st.last then sluice.self():finish() end
    return out, st
  end,
  terminate = function(reason, st)
    if st.rec then st.rec:cast({ "terminate", reason }) end
  end,
}

-- Collector: a consumer keeping every event; it ends with its producers
-- when arg.finish is set; call("events") returns what it got.
local Collector = {
  type = "consumer",
  init = function(arg) return { events = {}, finish = arg and arg.finish, rec = arg and arg.rec } end,
  handle_events = function(events, _, st)
    for _, e in ipairs(events) do st.events[#st.events + 1] = e end
    return {}, st
  end,
  handle_cancel = function(_, _, st)
    if st.finish and sluice.self():stats().producers == 0 then sluice.self():finish() end
    return {}, st
  end,
  handle_call = function(req, _, st) return st[req], {}, st end,
  terminate = function(reason, st)
    if st.rec then st.rec:cast({ "events", st.events }) end
  end,
}

-- Scaler: a producer_consumer multiplying events by arg; finishes itself
-- once its producers have ended, as a through_* stage must.
local Scaler = {
  type = "producer_consumer",
  init = function(k) return { k = k } end,
  handle_events = function(events, _, st)
    local out = {}
    for i, e in ipairs(events) do out[i] = e * st.k end
    return out, st
  end,
  handle_cancel = function(_, _, st)
    if sluice.self():stats().producers == 0 then sluice.self():finish() end
    return {}, st
  end,
}

TestFlowStages = {}

function TestFlowStages:test_from_stages()
  local a = sluice.start(Counter, { first = 1, last = 50 }, { demand = "accumulate" })
  local b = sluice.start(Counter, { first = 101, last = 120 }, { demand = "accumulate" })
  local fl = F.from_stages({ a, b }, { stages = 2 }):map(function(x) return x * 2 end)
  local it = fl:stream()
  a:demand("forward")
  b:demand("forward")
  local out = {}
  for v in it do out[#out + 1] = v end
  local want = range_list(1, 50, function(i) return 2 * i end)
  for i = 101, 120 do want[#want + 1] = 2 * i end
  lu.assertEquals(sorted(out), want)
  lu.assertEquals(a:await(), "normal")
  lu.assertEquals(b:await(), "normal")
end

function TestFlowStages:test_from_stages_partitioned_without_operations()
  -- a stage the flow did not start keeps its dispatcher; the flow adds a
  -- layer to partition its events
  local p = sluice.start(Counter, { first = 1, last = 10 }, { demand = "accumulate" })
  local it = F.from_stages({ p }):partition({ stages = 2, hash = function(e) return e % 2 + 1 end })
    :reduce(function() return 0 end, function(e, acc) return acc + e end):stream()
  p:demand("forward")
  local out = {}
  for v in it do out[#out + 1] = v end
  lu.assertEquals(sorted(out), { 25, 30 })
end

function TestFlowStages:test_from_specs_into_specs()
  local rec = sluice.start(Recorder)
  local h = F.from_specs({ { Counter, { first = 1, last = 30 } }, { Counter, { first = 31, last = 40 } } }, { stages = 2 })
    :map(function(x) return x + 1000 end)
    :into_specs({ { Collector, { rec = rec }, { max_demand = 5 } }, { Collector, { rec = rec }, { max_demand = 5 } } })
  h:await()
  local all = {}
  local log = rec:call("log")
  lu.assertEquals(#log, 2)
  for _, entry in ipairs(log) do
    lu.assertEquals(entry[1], "events")
    for _, e in ipairs(entry[2]) do all[#all + 1] = e end
  end
  lu.assertEquals(sorted(all), range_list(1001, 1040))
  rec:stop()
end

function TestFlowStages:test_into_stages()
  local rec = sluice.start(Recorder)
  local c1 = sluice.start(Collector, { finish = true, rec = rec })
  local c2 = sluice.start(Collector)
  local h = F.from_enumerable(sluice.range(1, 100), { stages = 3 })
    :filter(function(x) return x % 10 == 0 end)
    :into_stages({ { c1, max_demand = 2 }, { c2, max_demand = 2 } })
  h:await()
  lu.assertEquals(c1:await(1000), "normal")          -- it finished itself
  lu.assertTrue(c2:alive())                            -- c2 did not: the flow does not own it
  local all = c2:call("events")
  for _, e in ipairs(rec:call("log")[1][2]) do all[#all + 1] = e end
  lu.assertEquals(sorted(all), range_list(1, 10, function(i) return 10 * i end))
  c2:stop()
  rec:stop()
end

function TestFlowStages:test_into_stages_delivers_everything()
  local c = sluice.start(Collector)
  local h = F.from_enumerable(sluice.range(1, 500), { stages = 2 })
    :map(function(x) return -x end)
    :partition({ stages = 3 })
    :into_stages({ c })
  h:await()
  lu.assertTrue(eventually(function() return #c:call("events") == 500 end))
  lu.assertEquals(sorted(c:call("events")), range_list(-500, -1))
  c:stop()
end

function TestFlowStages:test_through_stages()
  local pc = sluice.start(Scaler, 10)
  local out = F.from_enumerable(sluice.range(1, 20), { stages = 2 })
    :map(function(x) return x + 1 end)
    :through_stages({ pc })
    :map(function(x) return x + 3 end)
    :to_list()
  lu.assertEquals(sorted(out), range_list(2, 21, function(i) return i * 10 + 3 end))
  lu.assertEquals(pc:await(1000), "normal")
  -- two stages side by side; their output goes straight to the caller
  local p1, p2 = sluice.start(Scaler, 2), sluice.start(Scaler, 2)
  out = F.from_enumerable({ 1, 2, 3 }, { stages = 1 }):through_stages({ { p1, max_demand = 1 }, { p2, max_demand = 1 } }):to_list()
  lu.assertEquals(sorted(out), { 2, 4, 6 })
end

function TestFlowStages:test_through_specs()
  local out = F.from_enumerable(sluice.range(1, 10), { stages = 3 })
    :filter(function(x) return x % 2 == 1 end)
    :through_specs({ { Scaler, 3, { max_demand = 2 } }, { Scaler, 3, { max_demand = 2 } } })
    :partition({ stages = 2 })
    :reduce(function() return 0 end, function(x, acc) return acc + x end)
    :to_list()
  lu.assertEquals(#out, 2)
  lu.assertEquals(out[1] + out[2], 75)
end

TestFlowRunning = {}

function TestFlowRunning:test_stream_break_stops_the_flow()
  local rec = sluice.start(Recorder)
  local user = sluice.start(Counter, { first = 1 })     -- endless, not the flow's
  local fl = F.merge({
    F.from_specs({ { Counter, { first = 1, rec = rec } } }, { stages = 2 }),
    F.from_stages({ user }, { stages = 2 }),
  }, { stages = 2 }):map(function(x) return x end)
  local n = 0
  for _ in fl:stream() do
    n = n + 1
    if n == 2000 then break end
  end
  lu.assertEquals(n, 2000)
  -- the flow's stages are gone: the spec producer was stopped, and the
  -- user's producer lost its consumers but runs on
  lu.assertEquals(rec:call("log"), { { "terminate", "shutdown" } })
  lu.assertTrue(eventually(function() return user:stats().consumers == 0 end))
  lu.assertTrue(user:alive())
  user:stop()
  rec:stop()
  -- the next flow runs normally
  lu.assertEquals(F.from_enumerable({ 1, 2 }, { stages = 1 }):map(function(x) return x end):to_list(), { 1, 2 })
end

function TestFlowRunning:test_stream_to_the_end()
  local out = {}
  for v in F.from_enumerable(sluice.range(1, 30), { stages = 1 }):map(function(x) return x * 3 end):stream() do
    out[#out + 1] = v
  end
  lu.assertEquals(out, range_list(1, 30, function(i) return 3 * i end))
end

function TestFlowRunning:test_run_returns_nothing()
  local rec = sluice.start(Recorder)
  local r = table.pack(F.from_enumerable(sluice.range(1, 5), { stages = 2 })
    :each(function(x) rec:cast(x) end)
    :reduce(function() return 0 end, function(x, acc) return acc + x end)
    :run())
  lu.assertEquals(r.n, 0)
  lu.assertEquals(sorted(rec:call("log")), { 1, 2, 3, 4, 5 })
  rec:stop()
end

function TestFlowRunning:test_start_await()
  local rec = sluice.start(Recorder)
  local h = F.from_enumerable(sluice.range(1, 1000), { stages = 2 })
    :partition({ stages = 2 })
    :reduce(function() return 0 end, function(x, acc) return acc + x end)
    :on_trigger(function(acc)
      rec:cast(acc)
      return { acc }
    end)
    :start()
  lu.assertEquals(table.pack(h:await()).n, 0)
  local log = rec:call("log")
  lu.assertEquals(#log, 2)
  lu.assertEquals(log[1] + log[2], 500500)
  lu.assertEquals(h:stats(), {})
  h:await()   -- again: still done
  rec:stop()
end

function TestFlowRunning:test_stats_and_stop()
  local h = F.from_enumerable(sluice.range(1, math.huge), { stages = 2 })
    :map(function(x) return x end)
    :partition({ stages = 3 })
    :filter(function(x) return x % 2 == 0 end)
    :start()
  local stats = h:stats()
  local seen = {}
  for _, s in ipairs(stats) do
    lu.assertEquals(type(s.events_in), "number")
    lu.assertEquals(type(s.name), "string")
    seen[#seen + 1] = { s.layer, s.partition, (s.name:gsub("^flow %d+ ", "")) }
  end
  lu.assertEquals(seen, {
    { 0, 1, "source 1" },
    { 1, 1, "layer 1 stage 1" }, { 1, 2, "layer 1 stage 2" },
    { 2, 1, "layer 2 stage 1" }, { 2, 2, "layer 2 stage 2" }, { 2, 3, "layer 2 stage 3" },
    { 3, 1, "sink" },
  })
  local function stat(i, k) return h:stats()[i][k] end
  lu.assertTrue(eventually(function() return stat(2, "producers") == 1 and stat(2, "consumers") == 3 end))
  lu.assertTrue(eventually(function() return stat(4, "producers") == 2 and stat(4, "consumers") == 1 end))
  lu.assertTrue(eventually(function() return stat(4, "events_in") > 0 end))
  h:stop()
  lu.assertEquals(h:stats(), {})
  h:await()      -- a stopped flow awaits without error
end

function TestFlowRunning:test_await_timeout()
  local h = F.from_enumerable(sluice.range(1, math.huge), { stages = 1 }):map(function(x) return x end):start()
  lu.assertErrorMsgContains("sluice.flow: await timed out after 30 ms", h.await, h, 30)
  lu.assertTrue(#h:stats() > 0)
  h:stop()
end

os.exit(lu.LuaUnit.run())
