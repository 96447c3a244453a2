-- Interrupting callbacks that do not return: stage:stop(reason, timeout_ms)
-- and a started flow's stop(timeout_ms) interrupt a callback stuck in an
-- endless loop on a worker; without a timeout a stop waits for the
-- callback as before.
local lu = require("luaunit")

local function elapsed(f)
  local t0 = os.time()
  f()
  return os.time() - t0
end

TestInterrupt = {}

local Spinner = {
  type = "consumer",
  handle_events = function(_, _, s) return {}, s end,
  handle_info = function(msg, s)
    if msg == "spin" then while true do end end
    return {}, s
  end,
}

function TestInterrupt:test_stop_with_timeout_interrupts_a_stuck_callback()
  local s = sluice.start(Spinner, 0)
  s:send("spin")
  sluice.sleep(20)
  lu.assertTrue(s:alive())
  -- at most a few seconds even on a loaded machine (os.time has 1 s steps)
  lu.assertTrue(elapsed(function() s:stop("bye", 50) end) <= 2)
  lu.assertFalse(s:alive())
  local r = s:await()
  lu.assertEquals(r[1], "error")
  lu.assertStrMatches(r[2], "stage %d+ on worker %d+ %(handle_info%): interrupted")
  lu.assertStrContains(r[3], "test_interrupt.lua:19: in function")
end

function TestInterrupt:test_stop_with_timeout_of_an_idle_stage_keeps_its_reason()
  local s = sluice.start(Spinner, 0)
  s:stop("bye", 0)
  lu.assertEquals(s:await(), "bye")
end

function TestInterrupt:test_stop_timeout_is_checked()
  local s = sluice.start(Spinner, 0)
  lu.assertErrorMsgContains("stage:stop: timeout must be an integer >= 0, got -1",
    function() s:stop("x", -1) end)
  lu.assertErrorMsgContains("stage:stop: timeout must be an integer >= 0, got 1.5",
    function() s:stop("x", 1.5) end)
  lu.assertTrue(s:alive())
  s:stop()
  lu.assertEquals(s:await(), "normal")
end

function TestInterrupt:test_running_flow_stop_with_timeout()
  local running = sluice.flow.from_enumerable(sluice.range(1, 1000000), { stages = 2 })
    :map(function(x) while true do end end)
    :start()
  sluice.sleep(50)
  lu.assertTrue(elapsed(function() running:stop(20) end) <= 2)
  for _, st in ipairs(running:stats()) do lu.fail("still running: " .. st.name) end
  lu.assertErrorMsgContains("sluice.flow: stop: timeout must be an integer >= 0, got -5",
    function() running:stop(-5) end)
end

function TestInterrupt:test_a_task_keeps_running_after_a_stop()
  -- a stop aims at the stage's own callback: a task busy on the same
  -- worker is not touched
  local t = sluice.task(function() local n = 0 for i = 1, 2e6 do n = n + i end return n end)
  local s = sluice.start(Spinner, 0)
  s:stop("bye", 0)
  lu.assertEquals(t:await(), 2000001000000)
end

os.exit(lu.LuaUnit.run())
