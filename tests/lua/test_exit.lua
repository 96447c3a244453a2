-- How stages end when the script does, and what the engine says on
-- stderr: the orderly exit (producers finish, what is in flight drains,
-- terminate runs, anything still dropped is reported) and the one-line
-- crash report of a stage nobody awaits. Each case runs in its own
-- process, with 1, 2 and 4 workers.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

TestExit = {}

-- A consumer writing 200000 events to a file, the script ending without
-- awaiting it: every event is written and terminate closes the file.
function TestExit:test_pipeline_drains_at_exit()
  for _, w in ipairs({1, 2, 4}) do
    local path = os.tmpname()
    local out, code = H.run(([[
      local p = sluice.from_enumerable(sluice.range(1, 200000))
      sluice.start({type = "consumer",
        init = function(path) return {f = assert(io.open(path, "w"))} end,
        handle_events = function(evs, from, st)
          for _, e in ipairs(evs) do st.f:write(e, "\n") end
          return {}, st
        end,
        terminate = function(reason, st) st.f:write("end ", tostring(reason), "\n"); st.f:close() end,
      }, %q, {subscribe_to = {p}})
    ]]):format(path), w)
    lu.assertEquals(out, "")
    lu.assertEquals(code, 0)
    local n, last, ok = 0, nil, true
    for l in io.lines(path) do
      n = n + 1
      if n <= 200000 and tonumber(l) ~= n then ok = false end
      last = l
    end
    os.remove(path)
    lu.assertTrue(ok)
    lu.assertEquals(n, 200001)
    lu.assertEquals(last, "end normal")
  end
end

-- An endless producer is finished at exit: its consumers end, terminate
-- runs in each (the temporary one is stopped with "shutdown").
function TestExit:test_endless_producer_finishes_at_exit()
  for _, w in ipairs({1, 2, 4}) do
    local out, code = H.run([[
      local p = sluice.start({type = "producer", handle_demand = function(n, s)
        local t = {}
        for i = 1, n do t[i] = s + i end
        return t, s + n
      end}, 0)
      local function consumer(tag)
        return {type = "consumer", handle_events = function(e, f, s) return {}, s end,
                terminate = function(r) print(tag, r) end}
      end
      sluice.start(consumer("permanent"), 0, {subscribe_to = {p}})
      sluice.start(consumer("temporary"), 0, {subscribe_to = {{p, cancel = "temporary"}}})
      sluice.sleep(20)
    ]], w)
    local got = lines_of(out)
    table.sort(got)
    lu.assertEquals(got, {"permanent\tnormal", "temporary\tshutdown"})
    lu.assertEquals(code, 0)
  end
end

-- Events a stage holds when it is stopped at exit are reported, with the
-- stage's name.
function TestExit:test_dropped_events_are_reported()
  local out = H.run([[
    local p = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end,
                            handle_cast = function(k, s) return {1, 2, 3}, s end}, nil, {name = "holder"})
    p:cast(0)
    print("buffered", p:buffered())
  ]], 2)
  lu.assertEquals(lines_of(out), {
    "buffered\t3",
    "sluice: stage 'holder' on worker 1 stopped with 3 events it had not delivered (buffered or queued)",
  })
end

-- A stage that fails while nobody awaits it prints one line; the stages it
-- takes down with it print nothing.
function TestExit:test_crash_report()
  for _, w in ipairs({1, 2, 4}) do
    local out = H.run([[
      local p = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end}, nil)
      local c = sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end,
                              handle_info = function(msg) error("kaboom " .. msg) end},
                             nil, {name = "fragile", subscribe_to = {p}, worker = 1})
      c:send("now")
      sluice.sleep(100)
      print("alive", c:alive(), p:alive())
    ]], w)
    local got = lines_of(out)
    lu.assertEquals(#got, 2)
    lu.assertStrMatches(got[1], "sluice: stage 'fragile' on worker 1 crashed in handle_info: .*:%d+: kaboom now")
    lu.assertEquals(got[2], "alive\tfalse\ttrue")
  end
end

-- A flow started and never awaited: its failing stage reports, naming
-- the flow, the layer, the stage and the operation.
function TestExit:test_flow_crash_report()
  local out = H.run([[
    sluice.flow.from_enumerable({1, 2, 3}, {stages = 1})
      :map(function(x) error("bad " .. x) end)
      :start()
    sluice.sleep(100)
  ]], 2)
  lu.assertStrMatches(out, "sluice: flow 1 layer 1 stage 1 crashed in map: .*:%d+: bad 1\n")
end

-- A flow whose result is collected (to_list, run) raises its error there,
-- and prints no crash report. (A started flow is watched from its await
-- on: a stage that fails before it is awaited has already reported.)
function TestExit:test_collected_flow_error_is_not_reported()
  local out = H.run([[
    local ok, err = pcall(function()
      return sluice.flow.from_enumerable({1, 2, 3}, {stages = 1}):map(function(x) error("bad") end):to_list()
    end)
    print(ok, (err:match("^[^\n]*")))
    local ok2, err2 = pcall(function()
      sluice.flow.from_enumerable({1, 2, 3}, {stages = 1}):map(function(x) error("worse") end):run()
    end)
    print(ok2, (err2:match("^[^\n]*")))
  ]], 2)
  local got = lines_of(out)
  lu.assertEquals(#got, 2)
  lu.assertStrMatches(got[1], "false\tsluice.flow: flow 1 layer 1 stage 1 %(map%): .*:%d+: bad")
  lu.assertStrMatches(got[2], "false\tsluice.flow: flow 2 layer 1 stage 1 %(map%): .*:%d+: worse.*")
end

-- An awaited stage reports its error through await only.
function TestExit:test_awaited_crash_is_not_reported()
  local out = H.run([[
    local c = sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end,
                            handle_info = function(msg) error("kaboom") end}, nil)
    c:send_after(100, "later")
    local r = c:await()
    print(r[1], (r[2]:gsub("^.*kaboom", "kaboom")))
  ]], 2)
  lu.assertEquals(out, "error\tkaboom\n")
end

os.exit(lu.LuaUnit.run())
