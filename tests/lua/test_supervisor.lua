-- sluice.consumer_supervisor
local lu = require("luaunit")

-- A consumer that records every message sent to it; call "get" for them.
local Recorder = {
  type = "consumer",
  init = function() return {} end,
  handle_events = function(_, _, st) return {}, st end,
  handle_info = function(msg, st) st[#st + 1] = msg; return {}, st end,
  handle_call = function(_, _, st) return st, {}, st end,
}

local function wait_for(rec, n)
  for _ = 1, 400 do
    local got = rec:call("get")
    if #got >= n then return got end
    sluice.sleep(10)
  end
  return rec:call("get")
end

TestSupervisor = {}

function TestSupervisor:test_every_event_handled()
  local rec = sluice.start(Recorder, nil)
  local p = sluice.from_enumerable(sluice.range(1, 50))
  sluice.consumer_supervisor{
    handler = function(e) rec:send(e * 10) end,
    subscribe_to = {{p, max_demand = 4, min_demand = 2}},
  }
  local got = wait_for(rec, 50)
  table.sort(got)
  local want = {}
  for i = 1, 50 do want[i] = i * 10 end
  lu.assertEquals(got, want)
  rec:stop()
end

function TestSupervisor:test_transient_handler_is_retried()
  local flag = os.tmpname()
  os.remove(flag)
  local rec = sluice.start(Recorder, nil)
  local p = sluice.from_enumerable({1, 2, 3})
  local sup = sluice.consumer_supervisor{
    handler = function(e)
      if e == 2 then
        local f = io.open(flag)
        if not f then
          io.open(flag, "w"):close()
          error("first try fails")
        end
        f:close()
      end
      rec:send(e)
    end,
    restart = "transient",
    subscribe_to = {{p, cancel = "temporary"}},
  }
  local got = wait_for(rec, 3)
  table.sort(got)
  lu.assertEquals(got, {1, 2, 3})
  lu.assertTrue(sup:alive())
  sup:stop()
  rec:stop()
  os.remove(flag)
end

function TestSupervisor:test_too_many_restarts_stop_the_supervisor()
  local p = sluice.from_enumerable({1})
  local sup = sluice.consumer_supervisor{
    handler = function() error("always fails") end,
    restart = "transient", max_restarts = 2, max_seconds = 60,
    subscribe_to = {{p, cancel = "temporary"}},
  }
  local reason = sup:await(5000)
  lu.assertEquals(reason[1], "error")
  lu.assertStrContains(reason[2], "too many restarts")
  lu.assertStrContains(reason[2], "always fails")
end

function TestSupervisor:test_temporary_failure_not_retried()
  local rec = sluice.start(Recorder, nil)
  local p = sluice.from_enumerable({1, 2, 3})
  local sup = sluice.consumer_supervisor{
    handler = function(e) if e == 2 then error("lost") end rec:send(e) end,
    subscribe_to = {{p, cancel = "temporary"}},
  }
  local got = wait_for(rec, 2)
  sluice.sleep(50)
  got = rec:call("get")
  table.sort(got)
  lu.assertEquals(got, {1, 3})
  lu.assertTrue(sup:alive())
  sup:stop()
  rec:stop()
end

function TestSupervisor:test_bad_options()
  lu.assertErrorMsgContains("restart \"permanent\" is not supported",
    sluice.consumer_supervisor, {handler = print, restart = "permanent"})
  lu.assertErrorMsgContains("handler must be a function, got nil", sluice.consumer_supervisor, {})
  lu.assertErrorMsgContains("unknown option \"bogus\"",
    sluice.consumer_supervisor, {handler = print, bogus = 1})
  lu.assertErrorMsgContains("max_restarts must be an integer >= 0",
    sluice.consumer_supervisor, {handler = print, max_restarts = -1})
end

os.exit(lu.LuaUnit.run())
