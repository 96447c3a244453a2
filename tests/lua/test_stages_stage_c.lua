-- Subscription options out of the engine's 32-bit range, negative or
-- non-integer timeouts and replies that cannot be sent are refused with a
-- message naming the function called and the value.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")
local Counter, Collector = H.Counter, H.Collector

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  lu.assertFalse(ok)
  return err
end

-- A producer that answers calls, and stops by itself after ms.
local function answering(ms)
  return sluice.start(H.with(Counter, {
    init = function() sluice.self():send_after(ms, "stop"); return {next = 0, demands = {}, log = {}} end,
    handle_info = function(msg, st)
      if msg == "stop" then sluice.self():stop("normal") end
      return {}, st
    end,
    handle_call = function(req, from, st)
      if req == "thread" then return coroutine.create(print), {}, st end
      return req, {}, st
    end,
  }), nil)
end

TestStageCLimits = {}

function TestStageCLimits:test_max_demand_over_2_31_minus_1()
  local p = sluice.start(Counter, {})
  local c = sluice.start(Collector, {})
  lu.assertEquals(err_of(sluice.subscribe, c, p, {max_demand = 1 << 31}),
                  "sluice.subscribe: max_demand must be at most 2147483647, got 2147483648")
  lu.assertEquals(err_of(sluice.subscribe, c, p, {max_demand = (1 << 32) - 1}),
                  "sluice.subscribe: max_demand must be at most 2147483647, got 4294967295")
  lu.assertEquals(err_of(sluice.start, Collector, {}, {subscribe_to = {{p, max_demand = 1 << 32}}}),
                  "sluice.start: max_demand must be at most 2147483647, got 4294967296")
  -- the largest one reaches handle_demand as it is
  local q = sluice.start(H.Silent, nil)
  sluice.subscribe(c, q, {max_demand = (1 << 31) - 1})
  H.wait_until(function() return #q:call("demands") > 0 end)
  lu.assertEquals(q:call("demands"), {2147483647})
  p:stop()
  q:stop()
  c:stop()
end

function TestStageCLimits:test_partitions_over_2_31_minus_1()
  lu.assertEquals(err_of(sluice.dispatcher.partition, {partitions = (1 << 32) + 1}),
                  "sluice.dispatcher.partition: partitions must be at most 2147483647, got 4294967297")
end

function TestStageCLimits:test_stage_await_refuses_bad_timeouts()
  local s = answering(200)
  lu.assertEquals(err_of(s.await, s, -1), "stage:await: timeout must be an integer >= 0, got -1")
  lu.assertEquals(err_of(s.await, s, 0 / 0),
                  "stage:await: timeout must be an integer >= 0, got 0/0")
  lu.assertEquals(err_of(s.await, s, 2.5), "stage:await: timeout must be an integer >= 0, got 2.5")
  lu.assertEquals(err_of(s.await, s, "10"), 'stage:await: timeout must be an integer >= 0, got "10"')
  lu.assertEquals(err_of(s.await, s, 0), "stage:await: timed out after 0 ms")
  lu.assertEquals(s:await(math.maxinteger), "normal")
end

function TestStageCLimits:test_stage_call_refuses_bad_timeouts()
  local s = answering(5000)
  lu.assertEquals(err_of(s.call, s, "x", -1), "stage:call: timeout must be an integer >= 0, got -1")
  lu.assertEquals(err_of(s.call, s, "x", 0 / 0),
                  "stage:call: timeout must be an integer >= 0, got 0/0")
  lu.assertEquals(s:call("x", 1000.0), "x")
  lu.assertEquals(s:call("y", math.maxinteger), "y")
  s:stop()
end

function TestStageCLimits:test_reply_that_cannot_be_sent()
  local s = answering(5000)
  lu.assertEquals(err_of(s.call, s, "thread"), "stage:call: cannot send a thread value (at reply)")
  lu.assertTrue(s:alive())
  s:stop()
end

os.exit(lu.LuaUnit.run())
