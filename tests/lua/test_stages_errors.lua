-- What the Lua half of the GenStage API (sluice.from_enumerable,
-- sluice.stream, sluice.consumer_supervisor, sluice.range, sluice.lines)
-- says about bad arguments: the message names the function the user
-- called and the value, located at the user's own line, never inside
-- sluice's modules; demand options out of the engine's 32-bit range are
-- refused. Each message is asserted whole.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")
local Counter = H.Counter

local THIS = debug.getinfo(1, "S").short_src

-- The error f raises, checked to be located at a line of this file (the
-- caller of the sluice function), without the location.
local function err_of(f)
  local ok, err = pcall(f)
  lu.assertFalse(ok)
  lu.assertEquals(type(err), "string")
  local at, rest = err:match("^(.-:%d+): (.*)$")
  lu.assertEquals(at and at:match("^(.*):%d+$"), THIS, "located at " .. tostring(at) .. ": " .. err)
  return rest
end

local function drain(subs)
  local out = {}
  for ev in sluice.stream(subs) do out[#out + 1] = ev end
  return out
end

local thread = coroutine.create(print)

-- ---- demand options out of range -------------------------------------------

TestDemandLimits = {}

function TestDemandLimits:test_stream_refuses_max_demand_over_2_31_minus_1()
  local p = sluice.from_enumerable({1, 2, 3})
  lu.assertEquals(err_of(function() drain({{p, max_demand = 1 << 31}}) end),
                  "sluice.stream: max_demand must be at most 2147483647, got 2147483648")
  lu.assertEquals(err_of(function() drain({{p, max_demand = (1 << 32) - 1}}) end),
                  "sluice.stream: max_demand must be at most 2147483647, got 4294967295")
  lu.assertEquals(err_of(function() drain({{p, max_demand = 1 << 32}}) end),
                  "sluice.stream: max_demand must be at most 2147483647, got 4294967296")
  lu.assertEquals(err_of(function() drain({{p, max_demand = math.maxinteger}}) end),
                  "sluice.stream: max_demand must be at most 2147483647, got 9223372036854775807")
  -- nothing was started: p is still there for a valid stream
  lu.assertEquals(drain({{p, max_demand = (1 << 31) - 1}}), {1, 2, 3})
end

function TestDemandLimits:test_stream_checks_every_demand_option()
  local p = sluice.from_enumerable({1})
  lu.assertEquals(err_of(function() drain({{p, max_demand = 0}}) end),
                  "sluice.stream: max_demand must be an integer >= 1, got 0")
  lu.assertEquals(err_of(function() drain({{p, max_demand = "x"}}) end),
                  'sluice.stream: max_demand must be an integer >= 1, got "x"')
  lu.assertEquals(err_of(function() drain({{p, max_demand = 10, min_demand = 10}}) end),
                  "sluice.stream: min_demand must be an integer from 0 to max_demand - 1 (9), got 10")
  lu.assertEquals(err_of(function() drain({{p, min_demand = 1 << 32}}) end),
                  "sluice.stream: min_demand must be an integer from 0 to max_demand - 1 (999), got 4294967296")
  lu.assertEquals(err_of(function() drain({{p, min_demand = -1}}) end),
                  "sluice.stream: min_demand must be an integer from 0 to max_demand - 1 (999), got -1")
  p:stop()
end

function TestDemandLimits:test_largest_demand_is_served()
  lu.assertEquals(drain({{sluice.from_enumerable(sluice.range(1, 5)), max_demand = (1 << 31) - 1,
                          min_demand = (1 << 31) - 2}}), {1, 2, 3, 4, 5})
end

function TestDemandLimits:test_consumer_supervisor_refuses_max_demand_over_2_31_minus_1()
  local p = sluice.from_enumerable({1})
  lu.assertEquals(err_of(function()
    sluice.consumer_supervisor{handler = print, subscribe_to = {{p, max_demand = 1 << 31}}}
  end), "sluice.consumer_supervisor: max_demand must be at most 2147483647, got 2147483648")
  lu.assertEquals(err_of(function()
    sluice.consumer_supervisor{handler = print, subscribe_to = {{p, max_demand = 4, min_demand = 4}}}
  end), "sluice.consumer_supervisor: min_demand must be an integer from 0 to max_demand - 1 (3), got 4")
  p:stop()
end

-- ---- messages name the function called ------------------------------------------

TestMessages = {}

function TestMessages:test_from_enumerable_source_that_cannot_be_sent()
  lu.assertEquals(err_of(function() sluice.from_enumerable({1, thread}) end),
                  "sluice.from_enumerable: cannot send a thread value (at enumerable[2])")
  lu.assertEquals(err_of(function() sluice.from_enumerable({{x = {thread}}}) end),
                  "sluice.from_enumerable: cannot send a thread value (at enumerable[1].x[1])")
end

function TestMessages:test_from_enumerable_options()
  lu.assertEquals(err_of(function() sluice.from_enumerable({1}, {buffer_size = 0}) end),
                  "sluice.from_enumerable: buffer_size must be an integer >= 1 or math.huge, got 0")
  lu.assertEquals(err_of(function() sluice.from_enumerable({1}, {worker = 0}) end),
                  ("sluice.from_enumerable: worker must be an integer from 1 to %d, got 0"):format(sluice.workers()))
  lu.assertEquals(err_of(function() sluice.from_enumerable({1}, {colour = 1}) end),
                  'sluice.from_enumerable: unknown option "colour"')
  lu.assertEquals(err_of(function() sluice.from_enumerable({1}, {on_cancel = "later"}) end),
                  'sluice.from_enumerable: on_cancel must be "continue" or "stop", got "later"')
  lu.assertEquals(err_of(function() sluice.from_enumerable({1}, 5) end),
                  "sluice.from_enumerable: opts must be a table, got number")
  lu.assertEquals(err_of(function() sluice.from_enumerable(5) end),
                  "sluice.from_enumerable: expected an enumerable, got number")
end

function TestMessages:test_flow_source_that_cannot_be_sent()
  local ok, err = pcall(function() return sluice.flow.from_enumerable({thread}):to_list() end)
  lu.assertFalse(ok)
  lu.assertEquals(err, "sluice.flow: cannot send a thread value (at enumerable[1])")
end

function TestMessages:test_stream_subscription_errors()
  local p = sluice.start(Counter, {})
  lu.assertEquals(err_of(function() drain({{p, max_demand = "x"}}) end),
                  'sluice.stream: max_demand must be an integer >= 1, got "x"')
  lu.assertEquals(err_of(function() drain({{p, cancel = "sometimes"}}) end),
                  'sluice.stream: cancel must be "permanent", "transient" or "temporary", got "sometimes"')
  lu.assertEquals(err_of(function() drain({{p, selector = 3}}) end),
                  "sluice.stream: selector must be a function, got number")
  lu.assertEquals(err_of(function() drain({p, {p, tag = thread}}) end),
                  "sluice.stream: cannot send a thread value (at subscriptions[2].tag)")
  lu.assertEquals(err_of(function() drain({42}) end), "sluice.stream: the producer must be a stage, got number")
  lu.assertEquals(err_of(function() drain({"no_such_stage"}) end), "sluice.stream: no stage is named 'no_such_stage'")
  local c = sluice.start(H.Collector, {})
  lu.assertEquals(err_of(function() drain({c}) end),
                  "sluice.stream: the producer must be a producer or a producer_consumer, got a consumer")
  c:stop()
  lu.assertEquals(err_of(function() drain(5) end), "sluice.stream: expected a list of producers, got number")
  lu.assertEquals(err_of(function() sluice.stream({}, 5) end), "sluice.stream: opts must be a table, got number")
  p:stop()
end

function TestMessages:test_failed_stream_leaves_no_subscription_behind()
  local p = sluice.start(Counter, {})
  lu.assertEquals(err_of(function() drain({p, 42}) end), "sluice.stream: the producer must be a stage, got number")
  -- the first subscription, made before the second failed, is cancelled
  H.wait_until(function() return p:stats().consumers == 0 end)
  lu.assertEquals(p:stats().consumers, 0)
  p:stop()
end

function TestMessages:test_consumer_supervisor_errors()
  lu.assertEquals(err_of(function() sluice.consumer_supervisor{handler = print, subscribe_to = {42}} end),
                  "sluice.consumer_supervisor: a subscribe_to entry must be a stage, got number")
  lu.assertEquals(err_of(function() sluice.consumer_supervisor{handler = print, max_seconds = 0 / 0} end),
                  "sluice.consumer_supervisor: max_seconds must be a number > 0, got 0/0")
  lu.assertEquals(err_of(function() sluice.consumer_supervisor{handler = 1} end),
                  "sluice.consumer_supervisor: handler must be a function, got number")
  lu.assertEquals(err_of(function() sluice.consumer_supervisor(1) end),
                  "sluice.consumer_supervisor: expects a table of options, got number")
end

function TestMessages:test_range_and_lines()
  lu.assertEquals(err_of(function() sluice.range(1.5, 3) end), "sluice.range: first must be an integer, got 1.5")
  lu.assertEquals(err_of(function() sluice.range(1, 3, 0) end), "sluice.range: step must not be 0")
  lu.assertEquals(err_of(function() sluice.range(1, 3, "2") end), 'sluice.range: step must be an integer, got "2"')
  lu.assertEquals(err_of(function() sluice.range(1, "x") end), 'sluice.range: last must be an integer or math.huge, got "x"')
  lu.assertEquals(err_of(function() sluice.lines(42) end), "sluice.lines: path must be a string, got 42")
  lu.assertEquals(err_of(function() sluice.lines("/nonexistent/x") end),
                  "sluice.lines: /nonexistent/x: No such file or directory")
end

os.exit(lu.LuaUnit.run())
