-- GenStage stages (lua/README.md §5): demand accounting, every callback, calls,
-- timers, errors, option validation, stats, names and the lifecycle.
-- Dispatchers and buffers: test_stages_dispatch.lua; cancellation and
-- producer_consumers: test_stages_cancel.lua.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")
local Counter, Silent, Collector, Observer = H.Counter, H.Silent, H.Collector, H.Observer

-- ---- automatic demand ------------------------------------------------------

TestDemand = {}

function TestDemand:test_max100_min20_trace()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {want = 540}, {subscribe_to = {{p, max_demand = 100, min_demand = 20}}})
  local r = c:await()
  lu.assertEquals(r[1], "done")
  lu.assertEquals(r[2], H.range(0, 539))
  lu.assertEquals(r[3], {80, 20, 80, 80, 20, 80, 80, 20, 80})
  lu.assertEquals(p:call("demands"), {100, 80, 100, 80, 100, 80})
end

function TestDemand:test_defaults_batches_of_500()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {want = 2000}, {subscribe_to = {p}})
  local r = c:await()
  lu.assertEquals(r[3], {500, 500, 500, 500})
  lu.assertEquals(r[2], H.range(0, 1999))
  lu.assertEquals(p:call("demands"), {1000, 500, 500, 500})
end

function TestDemand:test_min_demand_zero_asks_when_all_arrived()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {want = 30}, {subscribe_to = {{p, max_demand = 10, min_demand = 0}}})
  lu.assertEquals(c:await()[3], {10, 10, 10})
  lu.assertEquals(p:call("demands"), {10, 10, 10})
end

function TestDemand:test_chunks_do_not_line_up_with_min()
  -- max 10 / min 7: chunks of 3 counted from the start of each message
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {want = 19}, {subscribe_to = {{p, max_demand = 10, min_demand = 7}}})
  lu.assertEquals(c:await()[3], {3, 3, 3, 1, 3, 3, 3})
  -- three asks of 3 after the first message, then 10 - 6 after the 3 of the next
  lu.assertEquals(p:call("demands"), {10, 3, 3, 3, 4, 3})
end

function TestDemand:test_fewer_events_than_demand_are_remembered_by_the_producer()
  -- handle_demand is not asked again for unmet demand: the producer keeps it
  local Lazy = H.with(Silent, {
    handle_cast = function(msg, st)
      local owed = 0
      for _, d in ipairs(st.demands) do owed = owed + d end
      local events = {}
      for i = 1, math.min(msg[2], owed - st.next) do events[i] = st.next; st.next = st.next + 1 end
      return events, st
    end,
  })
  local p = sluice.start(Lazy, nil)
  -- min_demand 0: the consumer asks again only once all 10 have come
  local c = sluice.start(Collector, {want = 10}, {subscribe_to = {{p, max_demand = 10, min_demand = 0}}})
  lu.assertEquals(p:call("demands"), {10})
  p:cast({"emit", 4})
  p:cast({"emit", 4})
  p:cast({"emit", 4})   -- only 2 of the first 10 are left to emit
  local r = c:await()
  lu.assertEquals(r[2], H.range(0, 9))
  lu.assertEquals(r[3], {4, 4, 2})
  lu.assertEquals(p:call("demands"), {10})
end

function TestDemand:test_excess_events_are_buffered_and_served_first()
  local Double = H.with(Counter, {
    handle_demand = function(n, st)
      st.demands[#st.demands + 1] = n
      local events = {}
      for i = 1, 2 * n do events[i] = st.next; st.next = st.next + 1 end
      return events, st
    end,
  })
  local p = sluice.start(Double, {})
  local c = sluice.start(Collector, {want = 40}, {subscribe_to = {{p, max_demand = 10}}})
  local r = c:await()
  lu.assertEquals(r[2], H.range(0, 39))
  -- 10 asked: 20 made, 10 kept; the next asks of 5 are served by the
  -- buffer before handle_demand runs again
  lu.assertEquals(p:call("demands"), {10, 5, 5, 5})
end

function TestDemand:test_handle_demand_is_never_called_with_zero()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {want = 100}, {subscribe_to = {{p, max_demand = 1, min_demand = 0}}})
  lu.assertEquals(#c:await()[2], 100)
  for _, d in ipairs(p:call("demands")) do lu.assertEquals(d, 1) end
end

-- ---- manual demand -----------------------------------------------------------

TestManual = {}

function TestManual:test_ask_in_handle_subscribe_and_batches_not_cut()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {manual = 3}, {subscribe_to = {{p, max_demand = 4, min_demand = 2}}})
  lu.assertEquals(p:call("demands"), {3})
  lu.assertEquals(c:call("events"), {0, 1, 2})
  lu.assertEquals(c:call("batches"), {3})
  lu.assertTrue(c:call({"ask", 7}))
  lu.assertEquals(p:call("demands"), {3, 7})
  H.wait_until(function() return #c:call("events") == 10 end)
  lu.assertEquals(c:call("batches"), {3, 7})   -- 7 > max - min, still one batch
  lu.assertEquals(c:call("events"), H.range(0, 9))
  lu.assertEquals(c:stats().demand, 0)
end

function TestManual:test_nothing_is_asked_without_ask()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {manual = 0}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {})
  lu.assertEquals(c:call("events"), {})
  lu.assertTrue(c:call({"ask", 0}))   -- asking 0 is a no-op
  lu.assertEquals(p:call("demands"), {})
  c:call({"ask", 2})
  lu.assertEquals(p:call("demands"), {2})
  H.wait_until(function() return #c:call("events") == 2 end)
  lu.assertEquals(c:stats().demand, 0)
end

function TestManual:test_ask_rejects_negative()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {manual = 0}, {subscribe_to = {p}})
  local ok, err = pcall(c.call, c, {"ask", -1})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "from:ask: n must be an integer >= 0, got -1")
end

-- ---- callbacks ---------------------------------------------------------------

TestCallbacks = {}

function TestCallbacks:test_state_defaults_to_arg_without_init()
  local p = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end,
                          handle_call = function(req, from, s) return s, {}, s end}, {x = 1})
  lu.assertEquals(p:call("state"), {x = 1})
end

function TestCallbacks:test_init_runs_on_the_stage_worker()
  local w = H.other_worker()
  local p = sluice.start({type = "producer", init = function(a) return a * 2 end,
                          handle_demand = function(n, s) return {}, s end,
                          handle_call = function(req, from, s) return {s, sluice.self():stats().worker}, {}, s end},
                         21, {worker = w})
  lu.assertEquals(p:call("state"), {42, w})
end

function TestCallbacks:test_handle_info_in_send_order()
  local c = sluice.start(Collector, {})
  for i = 1, 5 do c:send(i) end
  c:send({k = "v"})
  lu.assertEquals(c:call("log"), {{"info", 1}, {"info", 2}, {"info", 3}, {"info", 4}, {"info", 5},
                                  {"info", {k = "v"}}})
end

-- A stage that calls sluice._raw_events() in init (a flow's merging
-- layer does) gets its events still encoded: #events counts them and
-- sluice._raw_get decodes one; kept past its callback, the batch raises
-- an error instead of reading bytes that are gone.
function TestCallbacks:test_raw_events_batch()
  local c = sluice.start({
    type = "consumer",
    init = function(want)
      sluice._raw_events()
      return {want = want, got = {}, sizes = {}}
    end,
    handle_events = function(events, from, st)
      st.kind = type(events)
      st.sizes[#st.sizes + 1] = #events
      for i = 1, #events do st.got[#st.got + 1] = sluice._raw_get(events, i) end
      local ok, err = pcall(sluice._raw_get, events, #events + 1)
      st.range_err = not ok and err or nil
      st.kept = events
      if #st.got >= st.want then sluice.self():send("check") end
      return {}, st
    end,
    handle_info = function(msg, st)
      local ok1, err1 = pcall(sluice._raw_get, st.kept, 1)
      local ok2, err2 = pcall(function() return #st.kept end)
      sluice.self():stop({"done", st.kind, st.got, st.sizes, st.range_err, ok1, err1, ok2, err2})
      return {}, st
    end,
  }, 6, {subscribe_to = {{sluice.start(Counter, {}), max_demand = 4, min_demand = 0}}})
  local r = c:await()
  lu.assertEquals({r[1], r[2], r[3], r[4]}, {"done", "userdata", {0, 1, 2, 3, 4, 5, 6, 7}, {4, 4}})
  lu.assertStrContains(r[5], "event index out of range")
  lu.assertEquals({r[6], r[8]}, {false, false})
  lu.assertStrContains(r[7], "a raw batch is valid only inside the callback it was given to")
  lu.assertStrContains(r[9], "a raw batch is valid only inside the callback it was given to")
end

function TestCallbacks:test_handle_cast()
  local s = sluice.start({type = "consumer", init = function() return {} end,
                          handle_events = function(e, f, st) return {}, st end,
                          handle_cast = function(msg, st) st[#st + 1] = msg; return {}, st end,
                          handle_call = function(r, f, st) return st, {}, st end}, nil)
  s:cast("a")
  s:cast({1, 2})
  lu.assertEquals(s:call("x"), {"a", {1, 2}})
end

function TestCallbacks:test_cast_and_info_events_are_dispatched()
  local p = sluice.start(H.with(Silent, {
    handle_info = function(msg, st) return {msg}, st end,
  }), nil)
  local c = sluice.start(Collector, {want = 3}, {subscribe_to = {p}})
  p:cast({"emit", 2})
  p:send("from info")
  lu.assertEquals(c:await()[2], {0, 1, "from info"})
end

function TestCallbacks:test_call_reply_after_its_events()
  local p = sluice.start(H.with(Silent, {
    handle_call = function(req, from, st) return "reply:" .. req, {req}, st end,
  }), nil)
  local c = sluice.start(Collector, {}, {subscribe_to = {p}})
  lu.assertEquals(p:call("e1"), "reply:e1")
  -- the events went out before the reply, so the consumer has them
  -- before it reads this call
  lu.assertEquals(c:call("events"), {"e1"})
end

function TestCallbacks:test_call_reply_nil_and_tables()
  local s = sluice.start({type = "consumer", handle_events = function(e, f, st) return {}, st end,
                          handle_call = function(req, from, st)
                            if req == "nil" then return nil, {}, st end
                            return {req = req, n = 1.5}, {}, st
                          end}, nil)
  lu.assertNil(s:call("nil"))
  lu.assertEquals(s:call({1}), {req = {1}, n = 1.5})
end

function TestCallbacks:test_noreply_and_later_reply()
  local s = sluice.start({type = "consumer", init = function() return {} end,
                          handle_events = function(e, f, st) return {}, st end,
                          handle_call = function(req, from, st)
                            if req == "now" then
                              from:reply("early")
                              return sluice.NOREPLY, {}, st
                            end
                            st.from = from
                            sluice.self():send("answer")
                            return sluice.NOREPLY, {}, st
                          end,
                          handle_info = function(msg, st)
                            st.from:reply({msg, 42})
                            return {}, st
                          end}, nil)
  lu.assertEquals(s:call("later"), {"answer", 42})
  lu.assertEquals(s:call("now"), "early")
end

function TestCallbacks:test_call_timeout()
  local s = sluice.start({type = "consumer", handle_events = function(e, f, st) return {}, st end,
                          handle_call = function(req, from, st) return sluice.NOREPLY, {}, st end}, nil)
  local ok, err = pcall(s.call, s, "x", 50)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "stage:call: timed out after 50 ms")
  lu.assertTrue(s:alive())
end

function TestCallbacks:test_late_reply_after_a_timeout_is_dropped()
  local s = sluice.start({type = "consumer", init = function() return {} end,
                          handle_events = function(e, f, st) return {}, st end,
                          handle_call = function(req, from, st)
                            if req == "slow" then
                              st.from = from
                              return sluice.NOREPLY, {}, st
                            end
                            if st.from then st.from:reply("late") end
                            return req, {}, st
                          end}, nil)
  lu.assertErrorMsgContains("timed out after 20 ms", s.call, s, "slow", 20)
  lu.assertEquals(s:call("fresh"), "fresh")   -- not the late answer
  lu.assertEquals(s:call("again"), "again")
end

function TestCallbacks:test_call_to_a_stopped_stage()
  local s = sluice.start(Collector, {})
  s:stop()
  local ok, err = pcall(s.call, s, "events")
  lu.assertFalse(ok)
  lu.assertStrContains(err, "stage:call: the stage has stopped")
end

function TestCallbacks:test_call_without_handle_call()
  local s = sluice.start({type = "consumer", handle_events = function(e, f, st) return {}, st end}, nil)
  local ok, err = pcall(s.call, s, "x")
  lu.assertFalse(ok)
  lu.assertStrContains(err, "has no handle_call")
  lu.assertTrue(s:alive())
end

function TestCallbacks:test_call_only_from_main()
  local s = sluice.start(Collector, {})
  local t = sluice.task(function(st) return pcall(st.call, st, "events") end, s)
  local ok, err = t:await()
  lu.assertFalse(ok)
  lu.assertStrContains(err, "only the main thread")
end

function TestCallbacks:test_send_after_and_timer_cancel()
  local c = sluice.start(Collector, {})
  local t1 = c:send_after(30, "cancelled")
  c:send_after(20, "first")
  c:send_after(60, "second")
  lu.assertTrue(t1:cancel())
  lu.assertFalse(t1:cancel())
  H.wait_until(function() return #c:call("log") == 2 end)
  lu.assertEquals(c:call("log"), {{"info", "first"}, {"info", "second"}})
  local t2 = c:send_after(0, "now")
  H.wait_until(function() return #c:call("log") == 3 end)
  lu.assertFalse(t2:cancel())
end

function TestCallbacks:test_send_after_inside_a_callback()
  local s = sluice.start({type = "consumer", init = function() return {} end,
                          handle_events = function(e, f, st) return {}, st end,
                          handle_cast = function(msg, st)
                            sluice.self():send_after(5, msg .. "!")
                            return {}, st
                          end,
                          handle_info = function(msg, st)
                            sluice.self():stop({"got", msg})
                            return {}, st
                          end}, nil)
  s:cast("tick")
  lu.assertEquals(s:await(), {"got", "tick!"})
end

function TestCallbacks:test_handle_subscribe_both_sides_get_the_options()
  local obs = sluice.start(Observer, nil)
  local function spy(kind_of_stage)
    return function(kind, opts, from, st)
      obs:send({kind_of_stage, kind, opts.tag, opts.max_demand, opts.min_demand, opts.cancel})
      return nil, st
    end
  end
  local p = sluice.start(H.with(Counter, {handle_subscribe = spy("p")}), {})
  local c = sluice.start(H.with(Collector, {handle_subscribe = spy("c")}), {want = 5},
                         {subscribe_to = {{p, max_demand = 5, tag = "x", cancel = "temporary"}}})
  lu.assertEquals(c:await()[2], {0, 1, 2, 3, 4})
  local log = obs:call("log")
  table.sort(log, function(a, b) return a[1] < b[1] end)
  lu.assertEquals(log, {{"c", "producer", "x", 5, 2, "temporary"}, {"p", "consumer", "x", 5, 2, "temporary"}})
end

function TestCallbacks:test_handle_subscribe_from_is_the_subscription()
  -- from:cancel in the consumer's handle_subscribe ends that subscription
  local c = sluice.start(H.with(Collector, {
    handle_subscribe = function(kind, opts, from, st)
      from:cancel("changed my mind")
      return "automatic", st
    end,
  }), {}, {subscribe_to = {{sluice.start(Counter, {}), cancel = "temporary"}}})
  H.wait_until(function() return #c:call("log") == 1 end)
  lu.assertEquals(c:call("log"), {{"cancel", {"cancel", "changed my mind"}}})
  lu.assertEquals(c:stats().producers, 0)
end

function TestCallbacks:test_terminate_gets_reason_and_state()
  local obs = sluice.start(Observer, nil)
  local s = sluice.start(H.with(Collector, {
    terminate = function(reason, st) obs:send({"terminate", reason, st.tag}) end,
    init = function(tag) return {tag = tag, events = {}, batches = {}, log = {}, froms = {}} end,
  }), "T")
  s:stop({"custom", 1})
  lu.assertEquals(obs:call("log"), {{"terminate", {"custom", 1}, "T"}})
  lu.assertEquals(s:await(), {"custom", 1})
end

function TestCallbacks:test_self()
  local s = sluice.start(H.with(Collector, {
    handle_call = function(req, from, st) return sluice.self(), {}, st end,
  }), {})
  lu.assertEquals(s:call("me"), s)
  lu.assertErrorMsgContains("sluice.self: not inside a stage callback", sluice.self)
end

-- ---- errors in callbacks -------------------------------------------------------

TestErrors = {}

-- Checks an exit reason {"error", message, traceback}.
local function assert_error_reason(r, text, where)
  lu.assertEquals(type(r), "table")
  lu.assertEquals(r[1], "error")
  lu.assertStrContains(r[2], text)
  if where then lu.assertStrContains(r[2], where) end
  lu.assertEquals(type(r[3]), "string")
  if r[3] ~= "" then lu.assertStrContains(r[3], "stack traceback") end
end

function TestErrors:test_handle_demand_error()
  local p = sluice.start(H.with(Counter, {handle_demand = function() error("boom in demand") end}), {},
                         {name = "bad_producer"})
  local c = sluice.start(Collector, {}, {subscribe_to = {p}})
  local r = p:await()
  assert_error_reason(r, "boom in demand", "stage 'bad_producer'")
  lu.assertStrContains(r[2], "handle_demand")
  lu.assertEquals(c:await(), r)   -- permanent: the consumer exits with the same reason
end

function TestErrors:test_handle_events_error()
  local p = sluice.start(Counter, {})
  local c = sluice.start(H.with(Collector, {handle_events = function(e) error("bad event " .. e[1]) end}), {})
  sluice.subscribe(c, p)
  local r = c:await()
  assert_error_reason(r, "bad event 0", "handle_events")
  lu.assertTrue(p:alive())
end

function TestErrors:test_every_other_callback_kind()
  local cases = {
    handle_info = function(s) s:send(1) end,
    handle_cast = function(s) s:cast(1) end,
  }
  for cb, poke in pairs(cases) do
    local s = sluice.start(H.with(Collector, {[cb] = function() error("oops in " .. cb) end}), {})
    poke(s)
    assert_error_reason(s:await(), "oops in " .. cb, cb)
  end
end

function TestErrors:test_handle_call_error_raises_in_the_caller()
  local s = sluice.start(H.with(Collector, {handle_call = function() error("call failed") end}), {},
                         {name = "caller_target"})
  local ok, err = pcall(s.call, s, "x")
  lu.assertFalse(ok)
  lu.assertStrContains(err, "call failed")
  lu.assertStrContains(err, "caller_target")
  assert_error_reason(s:await(), "call failed", "handle_call")
end

function TestErrors:test_handle_subscribe_error()
  local p = sluice.start(Counter, {})
  local c = sluice.start(H.with(Collector, {handle_subscribe = function() error("no thanks") end}), {},
                         {subscribe_to = {p}})
  assert_error_reason(c:await(), "no thanks", "handle_subscribe")
  H.wait_until(function() return p:stats().consumers == 0 end)
end

function TestErrors:test_producer_handle_subscribe_error()
  local p = sluice.start(H.with(Counter, {handle_subscribe = function() error("producer says no") end}), {})
  local c = sluice.start(Collector, {}, {subscribe_to = {p}})
  assert_error_reason(p:await(), "producer says no", "handle_subscribe")
  assert_error_reason(c:await(), "producer says no")
end

function TestErrors:test_handle_cancel_error()
  local p = sluice.start(Counter, {last = 3})
  local c = sluice.start(H.with(Collector, {handle_cancel = function() error("cancel broke") end}), {},
                         {subscribe_to = {{p, cancel = "temporary"}}})
  assert_error_reason(c:await(), "cancel broke", "handle_cancel")
end

function TestErrors:test_terminate_error_keeps_the_reason()
  local s = sluice.start(H.with(Collector, {terminate = function() error("terminate broke") end}), {})
  s:stop("mine")
  lu.assertEquals(s:await(), "mine")
end

function TestErrors:test_init_error_is_reraised_by_start()
  local ok, err = pcall(sluice.start, H.with(Counter, {init = function() error("init exploded") end}), {})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.start")
  lu.assertStrContains(err, "init exploded")
  -- the name of a stage whose init failed is free again
  local ok2 = pcall(sluice.start, H.with(Counter, {init = function() error("x") end}), {}, {name = "failing_init"})
  lu.assertFalse(ok2)
  local s = sluice.start(Counter, {}, {name = "failing_init"})
  lu.assertEquals(sluice.whereis("failing_init"), s)
  s:stop()
end

function TestErrors:test_consumer_returning_events()
  local p = sluice.start(Counter, {})
  local c = sluice.start(H.with(Collector, {handle_events = function(e, f, st) return e, st end}), {},
                         {subscribe_to = {p}})
  assert_error_reason(c:await(), "a consumer cannot emit events")
end

function TestErrors:test_bad_events_value()
  local p = sluice.start(H.with(Counter, {handle_demand = function(n, st) return 42, st end}), {})
  sluice.start(Collector, {}, {subscribe_to = {p}})
  assert_error_reason(p:await(), "handle_demand must return an array of events, got number")
end

function TestErrors:test_event_that_cannot_cross()
  local p = sluice.start(H.with(Counter, {handle_demand = function(n, st) return {1, io.stdout}, st end}), {})
  sluice.start(Collector, {}, {subscribe_to = {p}})
  assert_error_reason(p:await(), "cannot send a userdata value")
end

function TestErrors:test_bad_handle_subscribe_mode()
  local p = sluice.start(Counter, {})
  local c = sluice.start(H.with(Collector, {handle_subscribe = function(k, o, f, st) return "sometimes", st end}),
                         {}, {subscribe_to = {p}})
  assert_error_reason(c:await(), 'handle_subscribe must return "automatic" or "manual", got "sometimes"')
end

function TestErrors:test_manual_on_the_producer_side()
  local p = sluice.start(H.with(Counter, {handle_subscribe = function(k, o, f, st) return "manual", st end}), {})
  sluice.start(Collector, {}, {subscribe_to = {p}})
  assert_error_reason(p:await(), "a producer cannot use manual demand")
end

function TestErrors:test_the_runtime_stays_usable()
  local p = sluice.start(H.with(Counter, {handle_demand = function() error("x") end}), {})
  sluice.start(Collector, {}, {subscribe_to = {p}})
  p:await()
  local q = sluice.start(Counter, {})
  local c = sluice.start(Collector, {want = 3}, {subscribe_to = {{q, max_demand = 3}}})
  lu.assertEquals(c:await()[2], {0, 1, 2})
end

-- ---- option validation ---------------------------------------------------------

TestOptions = {}

local function start_err(spec, arg, opts)
  local ok, err = pcall(sluice.start, spec, arg, opts)
  lu.assertFalse(ok)
  return err
end

function TestOptions:test_subscription_options()
  local p = sluice.start(Counter, {})
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {{p, max_demand = 0}}}),
                       "sluice.start: max_demand must be an integer >= 1, got 0")
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {{p, max_demand = 1.5}}}),
                       "sluice.start: max_demand must be an integer >= 1, got 1.5")
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {{p, max_demand = 10, min_demand = 10}}}),
                       "sluice.start: min_demand must be an integer from 0 to max_demand - 1 (9), got 10")
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {{p, min_demand = -1}}}),
                       "sluice.start: min_demand must be an integer from 0 to max_demand - 1 (999), got -1")
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {{p, cancel = "sometimes"}}}),
                       'sluice.start: cancel must be "permanent", "transient" or "temporary", got "sometimes"')
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {{p, selector = 3}}}),
                       "sluice.start: selector must be a function, got number")
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {42}}),
                       "sluice.start: a subscribe_to entry must be a stage, got number")
  lu.assertStrContains(start_err(Collector, {}, {subscribe_to = {"no_such_stage"}}),
                       "sluice.start: no stage is named 'no_such_stage'")
  local c = sluice.start(Collector, {})
  lu.assertErrorMsgContains("sluice.subscribe: max_demand must be an integer >= 1, got 0",
                            sluice.subscribe, c, p, {max_demand = 0})
  lu.assertErrorMsgContains("sluice.subscribe: the producer must be a stage, got nil", sluice.subscribe, c, nil)
  lu.assertErrorMsgContains("sluice.subscribe: the consumer must be a consumer or a producer_consumer",
                            sluice.subscribe, p, p)
end

function TestOptions:test_start_options()
  lu.assertStrContains(start_err(Counter, {}, {colour = "red"}), "sluice.start: unknown option colour")
  lu.assertStrContains(start_err(Counter, {}, {buffer_size = 0}),
                       "sluice.start: buffer_size must be an integer >= 1 or math.huge, got 0")
  lu.assertStrContains(start_err(Counter, {}, {buffer_keep = "middle"}),
                       'sluice.start: buffer_keep must be "first" or "last", got "middle"')
  lu.assertStrContains(start_err(Counter, {}, {demand = "later"}),
                       'sluice.start: demand must be "forward" or "accumulate", got "later"')
  lu.assertStrContains(start_err(Collector, {}, {demand = "accumulate"}),
                       "sluice.start: demand is an option for producers only")
  lu.assertStrContains(start_err(Collector, {}, {buffer_size = 5}),
                       "sluice.start: buffer_size is for producers and producer_consumers")
  lu.assertStrContains(start_err(Collector, {}, {dispatcher = sluice.dispatcher.broadcast{}}),
                       "sluice.start: dispatcher is for producers and producer_consumers")
  lu.assertStrContains(start_err(Counter, {}, {dispatcher = "broadcast"}),
                       "sluice.start: dispatcher must come from sluice.dispatcher")
  lu.assertStrContains(start_err(Counter, {}, {subscribe_to = {}}),
                       "sluice.start: subscribe_to is for consumers and producer_consumers")
  lu.assertStrContains(start_err(Counter, {}, {worker = 0}), "sluice.start: worker must be an integer from 1 to")
  lu.assertStrContains(start_err(Counter, {}, {worker = sluice.workers() + 1}), "sluice.start: worker must be")
  lu.assertStrContains(start_err(Counter, {}, {name = 7}), "sluice.start: name must be a string, got number")
end

function TestOptions:test_spec_checks()
  lu.assertStrContains(start_err({type = "sink"}, nil),
                       'sluice.start: spec.type must be "producer", "producer_consumer" or "consumer", got "sink"')
  lu.assertStrContains(start_err({type = "producer"}, nil), "sluice.start: a producer needs a handle_demand function")
  lu.assertStrContains(start_err({type = "consumer"}, nil), "sluice.start: a consumer needs a handle_events function")
  lu.assertStrContains(start_err({type = "producer_consumer", handle_demand = function() end}, nil),
                       "sluice.start: a producer_consumer needs a handle_events function")
  lu.assertStrContains(start_err(H.with(Counter, {handle_info = 5}), nil),
                       "sluice.start: spec.handle_info must be a function, got number")
  lu.assertErrorMsgEquals("sluice.start: spec must be a table, got 5", sluice.start, 5)
end

function TestOptions:test_dispatcher_checks()
  lu.assertErrorMsgContains("sluice.dispatcher.partition: partitions must be an integer >= 1 or a list of names, got 0",
                            sluice.dispatcher.partition, {partitions = 0})
  lu.assertErrorMsgContains("sluice.dispatcher.partition: named partitions need a hash function",
                            sluice.dispatcher.partition, {partitions = {"a", "b"}})
  lu.assertErrorMsgContains("sluice.dispatcher.partition: hash must be a function, got string",
                            sluice.dispatcher.partition, {partitions = 2, hash = "x"})
  lu.assertErrorMsgContains("sluice.dispatcher.partition: expects a table of options",
                            sluice.dispatcher.partition)
end

function TestOptions:test_handle_methods_check_their_arguments()
  local s = sluice.start(Collector, {})
  lu.assertErrorMsgContains('stage:demand: mode must be "forward" or "accumulate", got "sideways"',
                            s.demand, s, "sideways")
  lu.assertErrorMsgEquals("stage:send_after: ms must be an integer >= 0, got -1", s.send_after, s, -1, "x")
  lu.assertErrorMsgContains("stage:send: cannot send a userdata value", s.send, s, io.stdout)
  lu.assertErrorMsgEquals("stage:send: expected a stage as self (call it with ':'), got 42", s.send, 42, "x")
  s:stop()
end

-- ---- stats, names, lifecycle -----------------------------------------------------

TestLifecycle = {}

function TestLifecycle:test_stats_fields()
  local p = sluice.start(Silent, nil, {name = "stats_p"})
  local c = sluice.start(Collector, {want = 5}, {subscribe_to = {{p, max_demand = 10}}})
  p:cast({"emit", 3})
  H.wait_until(function() return #c:call("events") == 3 end)
  local ps, cs = p:stats(), c:stats()
  lu.assertEquals(ps.type, "producer")
  lu.assertEquals(ps.name, "stats_p")
  lu.assertEquals(ps.events_out, 3)
  lu.assertEquals(ps.events_in, 0)
  lu.assertEquals(ps.buffered, 0)
  lu.assertEquals(ps.demand, 7)
  lu.assertEquals(ps.consumers, 1)
  lu.assertEquals(ps.producers, 0)
  lu.assertEquals(ps.late, 0)
  lu.assertEquals(math.type(ps.worker), "integer")
  lu.assertEquals(cs.type, "consumer")
  lu.assertNil(cs.name)
  lu.assertEquals(cs.events_in, 3)
  lu.assertEquals(cs.events_out, 0)
  lu.assertEquals(cs.demand, 7)
  lu.assertEquals(cs.producers, 1)
  lu.assertEquals(cs.consumers, 0)
  p:cast({"emit", 12})           -- 7 go out, 5 wait
  c:await()
  H.wait_until(function() return p:stats().consumers == 0 end)
  lu.assertEquals(p:stats().buffered, 5)
  lu.assertEquals(p:buffered(), 5)
  lu.assertEquals(p:stats().events_out, 10)
  p:stop()
end

function TestLifecycle:test_names_and_whereis()
  local s = sluice.start(Collector, {}, {name = "named_one"})
  lu.assertEquals(s:name(), "named_one")
  lu.assertEquals(sluice.whereis("named_one"), s)
  lu.assertNil(sluice.whereis("nobody"))
  lu.assertStrContains(start_err(Collector, {}, {name = "named_one"}),
                       "sluice.start: a stage named 'named_one' is already running")
  s:stop()
end

function TestLifecycle:test_subscribe_by_name()
  local p = sluice.start(Counter, {}, {name = "named_counter"})
  local c = sluice.start(Collector, {want = 2}, {subscribe_to = {{"named_counter", max_demand = 2, min_demand = 0}}})
  lu.assertEquals(c:await()[2], {0, 1})
  local c2 = sluice.start(Collector, {want = 2})
  sluice.subscribe(c2, "named_counter", {max_demand = 2, min_demand = 0})
  lu.assertEquals(c2:await()[2], {2, 3})
  p:stop()
  lu.assertNil(sluice.whereis("named_counter"))
  lu.assertEquals(p:name(), "named_counter")   -- the handle still knows it
  local q = sluice.start(Counter, {}, {name = "named_counter"})   -- free again
  q:stop()
end

function TestLifecycle:test_unnamed_stage()
  local s = sluice.start(Collector, {})
  lu.assertNil(s:name())
  s:stop()
end

function TestLifecycle:test_stop_from_main()
  local s = sluice.start(Collector, {})
  lu.assertTrue(s:alive())
  s:stop()
  lu.assertFalse(s:alive())   -- stop returns once the stage has stopped
  lu.assertEquals(s:await(), "normal")
  s:stop()                    -- stopping again is a no-op
  local t = sluice.start(Collector, {})
  t:stop({"why", 1})
  lu.assertEquals(t:await(), {"why", 1})
end

function TestLifecycle:test_stop_inside_a_callback_after_it_returns()
  local obs = sluice.start(Observer, nil)
  local s = sluice.start(H.with(Collector, {
    handle_info = function(msg, st)
      sluice.self():stop("from inside")
      obs:send("still running")
      return {}, st
    end,
    terminate = function(r) obs:send({"terminate", r}) end,
  }), {})
  s:send("x")
  lu.assertEquals(s:await(), "from inside")
  lu.assertEquals(obs:call("log"), {"still running", {"terminate", "from inside"}})
end

function TestLifecycle:test_stop_with_events_returned()
  -- a producer that stops itself still dispatches what the callback returned
  local p = sluice.start(H.with(Counter, {
    handle_demand = function(n, st)
      sluice.self():stop("spent")
      return {"last words"}, st
    end,
  }), {})
  local c = sluice.start(Collector, {}, {subscribe_to = {{p, cancel = "temporary"}}})
  lu.assertEquals(p:await(), "spent")
  H.wait_until(function() return #c:call("log") == 2 end)
  lu.assertEquals(c:call("events"), {"last words"})
  lu.assertEquals(c:call("log")[2], {"cancel", {"down", "spent"}})
end

function TestLifecycle:test_stop_from_another_stage()
  local target = sluice.start(Collector, {})
  local killer = sluice.start(H.with(Collector, {
    handle_info = function(msg, st)
      msg:stop("stopped by a peer")
      return {}, st
    end,
  }), {})
  killer:send(target)
  lu.assertEquals(target:await(), "stopped by a peer")
  lu.assertTrue(killer:alive())
end

function TestLifecycle:test_terminate_after_an_error()
  local obs = sluice.start(Observer, nil)
  local s = sluice.start(H.with(Collector, {
    handle_info = function() error("failing") end,
    terminate = function(reason) obs:send(reason) end,
  }), {})
  s:send(1)
  local r = s:await()
  lu.assertEquals(obs:call("log"), {r})
  lu.assertStrContains(r[2], "failing")
end

function TestLifecycle:test_self_send_goes_behind_buffered_events()
  local p = sluice.start(H.with(Silent, {
    handle_call = function(req, from, st)
      if req ~= "go" then return st[req], {}, st end
      sluice.self():send("mine")
      return true, {"a", "b"}, st
    end,
  }), nil)
  p:call("go")
  lu.assertEquals(p:buffered(), 2)
  lu.assertEquals(p:call("log"), {})
  local c = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  H.wait_until(function() return #c:call("events") == 2 end)
  lu.assertEquals(p:call("log"), {{"info", "mine", 0}})
end

function TestLifecycle:test_await_timeout()
  local s = sluice.start(Collector, {})
  local ok, err = pcall(s.await, s, 20)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "stage:await: timed out after 20 ms")
  s:stop()
end

function TestLifecycle:test_finish_after_the_buffer_drains()
  local p = sluice.start(Silent, nil)
  p:cast({"emit", 25})                -- no consumer: all buffered
  lu.assertEquals(p:buffered(), 25)
  p:finish()
  lu.assertTrue(p:alive())            -- still holds events
  local c = sluice.start(Collector, {manual = 10}, {subscribe_to = {p}})
  H.wait_until(function() return #c:call("events") == 10 end)
  lu.assertEquals(c:call("events"), H.range(0, 9))
  lu.assertTrue(p:alive())
  c:call({"ask", 15})
  lu.assertEquals(p:await(), "normal")
  lu.assertEquals(c:await(), "normal")   -- permanent: ends with the producer
end

function TestLifecycle:test_finish_with_nothing_buffered()
  local p = sluice.start(Silent, nil)
  p:finish()
  lu.assertEquals(p:await(), "normal")
  local c = sluice.start(Collector, {})
  c:finish()
  lu.assertEquals(c:await(), "normal")
end

function TestLifecycle:test_finish_from_handle_demand_is_end_of_stream()
  local p = sluice.start(Counter, {last = 24})
  local c = sluice.start(Collector, {report = true}, {subscribe_to = {{p, max_demand = 10, cancel = "transient"}}})
  local r = c:await()
  lu.assertEquals(r[2], H.range(0, 24))
  lu.assertEquals(p:await(), "normal")
end

function TestLifecycle:test_many_stages()
  local cs = {}
  for i = 1, 20 do
    local p = sluice.start(Counter, {first = i * 100, last = i * 100 + 49})
    cs[i] = sluice.start(Collector, {report = true}, {subscribe_to = {{p, max_demand = 7, cancel = "transient"}}})
  end
  for i = 1, 20 do lu.assertEquals(cs[i]:await()[2], H.range(i * 100, i * 100 + 49)) end
end

-- ---- the helper's child processes ---------------------------------------------

TestHelper = {}

-- H.run starts the binary that runs this suite even when the suite was
-- started with options (`build/sluice -w 2 tests/lua/test_stages.lua`
-- puts "2" at arg[-1] and the binary at arg[-3]).
function TestHelper:test_run_finds_the_binary_behind_options()
  local saved = arg
  local bin = H.binary()
  arg = {[-3] = bin, [-2] = "-w", [-1] = "2", [0] = saved[0]}
  local ok, out, code = pcall(H.run, "print(sluice.workers())", 3)
  arg = saved
  lu.assertTrue(ok, out)
  lu.assertEquals(out, "3\n")
  lu.assertEquals(code, 0)
  lu.assertEquals(H.binary(), bin)
end

os.exit(lu.LuaUnit.run())
