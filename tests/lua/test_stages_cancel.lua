-- GenStage subscriptions ending (lua/README.md §5): cancel modes, handle_cancel
-- on both sides, sub:cancel and from:cancel, subscribing to a stage that
-- is gone, and producer_consumers (back-pressure, order of input, infos
-- and cancellations, finishing).
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")
local Counter, Silent, Collector, Observer = H.Counter, H.Silent, H.Collector, H.Observer

-- A Collector that reports handle_cancel and terminate to an observer.
local function reporting(obs)
  return H.with(Collector, {
    handle_cancel = function(reason, from, st)
      obs:send({"handle_cancel", reason})
      return {}, st
    end,
    terminate = function(reason) obs:send({"terminate", reason}) end,
  })
end

-- ---- cancel modes -----------------------------------------------------------------

TestCancelModes = {}

-- Starts a producer and a consumer subscribed with the mode, stops the
-- producer with reason, and returns the consumer and the observer's log.
local function producer_ends(mode, reason)
  local obs = sluice.start(Observer, nil)
  local p = sluice.start(Silent, nil)
  local c = sluice.start(reporting(obs), {}, {subscribe_to = {{p, cancel = mode}}})
  p:call("demands")            -- the subscription is in place
  p:stop(reason)
  if c:alive() then
    H.wait_until(function() return #obs:call("log") >= 1 end)
    sluice.sleep(10)           -- time to stop, when it wrongly would
  else
    c:await()
  end
  return c, obs:call("log")
end

function TestCancelModes:test_permanent_stops_with_the_raw_reason()
  for _, reason in ipairs({"normal", "boom", {"shutdown", 1}}) do
    local c, log = producer_ends("permanent", reason)
    lu.assertEquals(c:await(), reason)
    lu.assertEquals(log, {{"handle_cancel", {"down", reason}}, {"terminate", reason}})
  end
end

function TestCancelModes:test_transient_stops_unless_normal_or_shutdown()
  for _, reason in ipairs({"normal", "shutdown", {"shutdown", "x"}}) do
    local c, log = producer_ends("transient", reason)
    lu.assertTrue(c:alive())
    lu.assertEquals(log, {{"handle_cancel", {"down", reason}}})
    lu.assertEquals(c:stats().producers, 0)
    c:stop()
  end
  local c, log = producer_ends("transient", "boom")
  lu.assertEquals(c:await(), "boom")
  lu.assertEquals(log, {{"handle_cancel", {"down", "boom"}}, {"terminate", "boom"}})
end

function TestCancelModes:test_temporary_never_stops()
  for _, reason in ipairs({"normal", "boom", {"error", "x", ""}}) do
    local c, log = producer_ends("temporary", reason)
    lu.assertTrue(c:alive())
    lu.assertEquals(log, {{"handle_cancel", {"down", reason}}})
    c:stop()
  end
end

function TestCancelModes:test_default_is_permanent()
  local p = sluice.start(Silent, nil)
  local c = sluice.start(Collector, {}, {subscribe_to = {p}})
  p:call("demands")
  p:stop("gone")
  lu.assertEquals(c:await(), "gone")
end

function TestCancelModes:test_producer_error_reaches_the_consumer()
  local p = sluice.start(H.with(Counter, {handle_demand = function() error("source failed") end}), {})
  local obs = sluice.start(Observer, nil)
  local c = sluice.start(reporting(obs), {}, {subscribe_to = {p}})
  local r = p:await()
  lu.assertEquals(c:await(), r)
  local log = obs:call("log")
  lu.assertEquals(log[1][1], "handle_cancel")
  lu.assertEquals(log[1][2][1], "down")
  lu.assertEquals(log[1][2][2], r)
end

function TestCancelModes:test_one_of_several_producers_ends()
  -- a consumer keeps running while another subscription lives (transient),
  -- and can finish itself when the last producer is gone
  local obs = sluice.start(Observer, nil, {name = "cancel_obs"})
  local p1 = sluice.start(Counter, {first = 0, last = 4})
  local p2 = sluice.start(Counter, {first = 100, last = 109})
  local c = sluice.start(H.with(Collector, {
    handle_cancel = function(reason, from, st)
      st.log[#st.log + 1] = reason
      if sluice.self():stats().producers == 0 then sluice.self():finish() end
      return {}, st
    end,
    terminate = function(reason, st)
      table.sort(st.events)
      sluice.whereis("cancel_obs"):send({reason, st.events, st.log})
    end,
  }), {}, {subscribe_to = {{p1, cancel = "transient", max_demand = 3}, {p2, cancel = "transient", max_demand = 3}}})
  lu.assertEquals(c:await(), "normal")
  local got = obs:call("log")[1]
  lu.assertEquals(got[1], "normal")
  local want = H.range(0, 4)
  for i = 100, 109 do want[#want + 1] = i end
  lu.assertEquals(got[2], want)
  lu.assertEquals(got[3], {{"subscribe", "producer"}, {"subscribe", "producer"}, {"down", "normal"}, {"down", "normal"}})
  obs:stop()
end

-- ---- explicit cancels ---------------------------------------------------------------

TestExplicitCancel = {}

function TestExplicitCancel:test_subscription_cancel()
  local obs = sluice.start(Observer, nil)
  local p = sluice.start(H.with(Silent, {
    handle_cancel = function(reason, from, st)
      obs:send({"producer", reason})
      return {}, st
    end,
  }), nil)
  local c = sluice.start(H.with(Collector, {
    handle_cancel = function(reason, from, st)
      obs:send({"consumer", reason})
      return {}, st
    end,
  }), {})
  local sub = sluice.subscribe(c, p, {cancel = "temporary"})
  lu.assertEquals(p:call("demands"), {1000})
  sub:cancel("enough")
  H.wait_until(function() return #obs:call("log") == 2 end)
  lu.assertEquals(obs:call("log"), {{"producer", {"cancel", "enough"}}, {"consumer", {"cancel", "enough"}}})
  lu.assertTrue(c:alive())
  lu.assertEquals(c:stats().producers, 0)
  lu.assertEquals(p:stats().consumers, 0)
end

function TestExplicitCancel:test_subscription_cancel_permanent_stops_the_consumer()
  local p = sluice.start(Silent, nil)
  local c = sluice.start(Collector, {})
  local sub = sluice.subscribe(c, p)
  sub:cancel()
  lu.assertEquals(c:await(), "normal")
  lu.assertTrue(p:alive())
  local c2 = sluice.start(Collector, {})
  sluice.subscribe(c2, p, {cancel = "transient"}):cancel({"shutdown", "x"})
  sluice.subscribe(c2, p, {cancel = "transient"}):cancel("bad")
  lu.assertEquals(c2:await(), "bad")
end

function TestExplicitCancel:test_from_cancel_in_the_consumer()
  local p = sluice.start(Counter, {})
  local c = sluice.start(H.with(Collector, {
    handle_events = function(events, from, st)
      for _, e in ipairs(events) do st.events[#st.events + 1] = e end
      if #st.events >= 5 then from:cancel("had enough") end
      return {}, st
    end,
  }), {}, {subscribe_to = {{p, max_demand = 5, min_demand = 0, cancel = "temporary"}}})
  H.wait_until(function() return c:stats().producers == 0 end)
  lu.assertEquals(c:call("events"), {0, 1, 2, 3, 4})
  lu.assertEquals(c:call("log")[2], {"cancel", {"cancel", "had enough"}})
  lu.assertEquals(p:call("log"), {{"cancel", {"cancel", "had enough"}}})
end

function TestExplicitCancel:test_from_cancel_in_the_producer()
  local p = sluice.start(H.with(Counter, {
    handle_subscribe = function(kind, opts, from, st)
      if opts.unwanted then from:cancel("not you") end
      return "automatic", st
    end,
  }), {})
  local c1 = sluice.start(Collector, {}, {subscribe_to = {{p, unwanted = true, cancel = "temporary"}}})
  local c2 = sluice.start(Collector, {}, {subscribe_to = {{p, unwanted = true}}})
  lu.assertEquals(c2:await(), "not you")
  H.wait_until(function() return #c1:call("log") == 2 end)
  lu.assertEquals(c1:call("log")[2], {"cancel", {"cancel", "not you"}})
  lu.assertEquals(p:stats().consumers, 0)
  lu.assertEquals(p:call("log"), {{"cancel", {"cancel", "not you"}}, {"cancel", {"cancel", "not you"}}})
end

function TestExplicitCancel:test_consumer_stopping_is_down_for_the_producer()
  local p = sluice.start(Silent, nil)
  local c = sluice.start(Collector, {}, {subscribe_to = {p}})
  p:call("demands")
  c:stop("bye")
  H.wait_until(function() return #p:call("log") == 1 end)
  lu.assertEquals(p:call("log"), {{"cancel", {"down", "bye"}}})
  lu.assertTrue(p:alive())
end

function TestExplicitCancel:test_cancel_after_events_keeps_their_order()
  -- events sent before a cancel arrive before it
  local p = sluice.start(Silent, nil)
  local c = sluice.start(Collector, {report = true}, {subscribe_to = {{p, cancel = "transient"}}})
  p:call({"emit", 3})
  p:stop("normal")
  lu.assertEquals(c:await()[2], {0, 1, 2})
end

function TestExplicitCancel:test_subscribe_inside_a_callback()
  local p = sluice.start(Counter, {})
  local c = sluice.start(H.with(Collector, {
    handle_info = function(producer, st)
      st.sub = sluice.subscribe(sluice.self(), producer, {max_demand = 3, min_demand = 0})
      return {}, st
    end,
  }), {want = 6})
  c:send(p)
  lu.assertEquals(c:await()[2], {0, 1, 2, 3, 4, 5})
  local ok, err = sluice.task(function(q) return pcall(sluice.start, q, nil) end, Collector):await()
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.start: only the main thread may start stages")
end

-- ---- subscribing to a stage that is gone ----------------------------------------------

TestNoproc = {}

function TestNoproc:test_per_mode()
  local p = sluice.start(Silent, nil)
  p:stop()
  for _, mode in ipairs({"permanent", "transient"}) do
    local c = sluice.start(Collector, {}, {subscribe_to = {{p, cancel = mode}}})
    lu.assertEquals(c:await(), "noproc")
  end
  local c = sluice.start(Collector, {}, {subscribe_to = {{p, cancel = "temporary"}}})
  H.wait_until(function() return #c:call("log") == 2 end)
  lu.assertEquals(c:call("log")[2], {"cancel", {"down", "noproc"}})
  lu.assertTrue(c:alive())
  lu.assertEquals(c:stats().producers, 0)
end

function TestNoproc:test_subscribe_later()
  local p = sluice.start(Silent, nil)
  local c = sluice.start(Collector, {})
  p:stop()
  sluice.subscribe(c, p, {cancel = "transient"})
  lu.assertEquals(c:await(), "noproc")
end

function TestNoproc:test_subscribing_to_a_consumer()
  local a = sluice.start(Collector, {})
  lu.assertErrorMsgContains("a subscribe_to entry must be a producer or a producer_consumer, got a consumer",
                            sluice.start, Collector, {}, {subscribe_to = {a}})
end

-- ---- producer_consumer ------------------------------------------------------------------

TestProducerConsumer = {}

local Doubler = {
  type = "producer_consumer",
  init = function() return {infos = {}} end,
  handle_events = function(events, from, st)
    local out = {}
    for i, e in ipairs(events) do out[i] = e * 2 end
    return out, st
  end,
  handle_info = function(msg, st)
    return {msg}, st
  end,
  handle_call = function(req, from, st) return st[req], {}, st end,
}

function TestProducerConsumer:test_pipeline()
  local p = sluice.start(Counter, {first = 1, last = 10})
  local pc = sluice.start(H.with(Doubler, {
    handle_cancel = function(reason, from, st)
      sluice.self():finish()
      return {}, st
    end,
  }), nil, {subscribe_to = {{p, max_demand = 4, cancel = "transient"}}})
  local c = sluice.start(Collector, {report = true}, {subscribe_to = {{pc, max_demand = 3, cancel = "transient"}}})
  lu.assertEquals(c:await()[2], {2, 4, 6, 8, 10, 12, 14, 16, 18, 20})
  lu.assertEquals(pc:await(), "normal")
  lu.assertEquals(p:await(), "normal")
end

function TestProducerConsumer:test_back_pressure_reaches_the_source()
  -- the consumer asks 5 and nothing more: the producer_consumer stops
  -- asking upstream once its input waits for downstream demand
  local p = sluice.start(Counter, {})
  local pc = sluice.start(Doubler, nil, {subscribe_to = {{p, max_demand = 10}}})
  local c = sluice.start(Collector, {manual = 5}, {subscribe_to = {pc}})
  H.wait_until(function() return #c:call("events") == 5 end)
  -- 10 asked first; the 10 received are handled (5 go down, 5 buffered)
  -- and asked again in chunks of 5; those 10 wait as input
  H.wait_until(function() return #p:call("demands") == 3 end)
  sluice.sleep(50)
  lu.assertEquals(p:call("demands"), {10, 5, 5})
  lu.assertEquals(pc:buffered(), 5)
  lu.assertEquals(c:call("events"), {0, 2, 4, 6, 8})
  -- 5 more: served from the buffer, still nothing asked upstream
  c:call({"ask", 5})
  lu.assertEquals(pc:buffered(), 0)
  lu.assertEquals(p:call("demands"), {10, 5, 5})
  -- 5 more: the first queued message (5 events) is handled and asked
  -- again; the second waits
  c:call({"ask", 5})
  H.wait_until(function() return #c:call("events") == 15 end)
  local doubled = {}
  for i = 0, 14 do doubled[#doubled + 1] = 2 * i end
  lu.assertEquals(c:call("events"), doubled)
  H.wait_until(function() return #p:call("demands") == 4 end)
  sluice.sleep(50)
  lu.assertEquals(p:call("demands"), {10, 5, 5, 5})
end

function TestProducerConsumer:test_no_downstream_no_processing()
  local obs = sluice.start(Observer, nil)
  local p = sluice.start(Counter, {})
  local pc = sluice.start(H.with(Doubler, {
    handle_events = function(events, from, st)
      obs:send(#events)
      return events, st
    end,
  }), nil, {subscribe_to = {{p, max_demand = 10}}})
  H.wait_until(function() return #p:call("demands") == 1 end)
  sluice.sleep(30)
  lu.assertEquals(obs:call("log"), {})      -- input waits for a consumer
  lu.assertEquals(p:call("demands"), {10})
  sluice.start(Collector, {manual = 3}, {subscribe_to = {pc}})
  H.wait_until(function() return #obs:call("log") == 2 end)
  lu.assertEquals(obs:call("log"), {5, 5})  -- the whole message, in chunks
end

function TestProducerConsumer:test_info_and_cancel_wait_behind_queued_input()
  local p = sluice.start(Silent, nil)
  local pc = sluice.start(H.with(Doubler, {
    handle_cancel = function(reason, from, st)
      sluice.self():send({"cancelled", reason[2]})
      return {}, st
    end,
  }), nil, {subscribe_to = {{p, max_demand = 10, cancel = "temporary"}}})
  local c = sluice.start(Collector, {manual = 1}, {subscribe_to = {pc}})
  lu.assertEquals(p:call("demands"), {10})
  p:call({"emit", 2})                 -- 0 goes down, 2 is buffered
  p:call({"emit", 2})                 -- queued: no downstream demand
  pc:send("info")
  p:stop("gone")
  H.wait_until(function() return #c:call("events") == 1 end)
  lu.assertEquals(pc:buffered(), 1)
  c:call({"ask", 10})
  H.wait_until(function() return #c:call("events") == 6 end)
  lu.assertEquals(c:call("events"), {0, 2, 4, 6, "info", {"cancelled", "gone"}})
end

function TestProducerConsumer:test_pc_demand_mode_is_for_producers()
  local pc = sluice.start(Doubler, nil)
  lu.assertErrorMsgContains("stage:demand: demand mode is only for producers", pc.demand, pc)
  lu.assertEquals(pc:stats().type, "producer_consumer")
end

function TestProducerConsumer:test_pc_error_stops_both_sides()
  local p = sluice.start(Counter, {})
  local pc = sluice.start(H.with(Doubler, {handle_events = function() error("pc broke") end}), nil,
                          {subscribe_to = {{p, max_demand = 10}}})
  local c = sluice.start(Collector, {}, {subscribe_to = {pc}})
  local r = pc:await()
  lu.assertStrContains(r[2], "pc broke")
  lu.assertEquals(c:await(), r)
  H.wait_until(function() return #p:call("log") == 1 end)
  lu.assertEquals(p:call("log")[1][2][1], "down")
  lu.assertTrue(p:alive())
end

function TestProducerConsumer:test_pc_with_broadcast()
  -- the source waits until both consumers have subscribed
  local p = sluice.start(Counter, {first = 1, last = 6}, {demand = "accumulate"})
  local pc = sluice.start(H.with(Doubler, {
    handle_cancel = function(reason, from, st)
      sluice.self():finish()
      return {}, st
    end,
  }), nil, {subscribe_to = {{p, cancel = "transient"}}, dispatcher = sluice.dispatcher.broadcast{}})
  local c1 = sluice.start(Collector, {report = true}, {subscribe_to = {{pc, cancel = "transient"}}})
  local c2 = sluice.start(Collector, {report = true}, {subscribe_to = {{pc, cancel = "transient"}}})
  p:demand("forward")
  lu.assertEquals(c1:await()[2], {2, 4, 6, 8, 10, 12})
  lu.assertEquals(c2:await()[2], {2, 4, 6, 8, 10, 12})
end

os.exit(lu.LuaUnit.run())
