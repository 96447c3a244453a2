-- Fault injection in flows: flow functions that raise at seeded points,
-- flows stopped mid-run, their stages, sources and consumers failing or
-- stopped from outside, random flows with a random function raising. In
-- every case the terminal raises the error (naming the flow's stage and
-- the operation) or returns, never hangs, and no stage is left behind.
-- The same faults in plain stages: tests/lua/test_faults.lua. The suites
-- keep the class names they had as one file.
local lu = require("luaunit")
local dir = arg[0]:match("^(.*/)") or "./"
local H = dofile(dir .. "stages_helper.lua")
local F = dofile(dir .. "faults_helper.lua")
local SEEDS, first_line, Numbers = F.SEEDS, F.first_line, F.Numbers

-- ---- flow functions that raise ----------------------------------------------

TestRaise = {}

-- Flow functions raising at a seeded element: the terminal raises the
-- error with the flow's label and the operation; a flow run after it works.
function TestRaise:test_flow_functions_raise()
  local cases = {
    {"map", function(f, k) return f:map(function(x) if x == k then error("map boom " .. x, 0) end return x end) end},
    {"flat_map", function(f, k) return f:flat_map(function(x)
      if x == k then error("flat_map boom " .. x, 0) end return {x} end) end},
    {"reduce", function(f, k) return f:reduce(function() return 0 end, function(x, acc)
      if x == k then error("reduce boom " .. x, 0) end return acc + x end) end},
    {"filter", function(f, k) return f:filter(function(x) if x == k then error("filter boom " .. x, 0) end return true end) end},
  }
  for _, case in ipairs(cases) do
    for _, seed in ipairs(SEEDS) do
      math.randomseed(seed)
      local k = math.random(1, 3000)
      local how = ({"to_list", "run", "stream", "await"})[math.random(1, 4)]
      local fl = case[2](sluice.flow.from_enumerable(sluice.range(1, 3000), {stages = math.random(1, 3)}), k)
      local ok, err = pcall(function()
        if how == "to_list" then return fl:to_list()
        elseif how == "run" then return fl:run()
        elseif how == "stream" then for _ in fl:stream() do end
        else return fl:start():await() end
      end)
      lu.assertFalse(ok, case[1] .. " " .. how)
      lu.assertEquals(type(err), "string")
      lu.assertStrMatches(first_line(err), ("sluice%%.flow: flow %%d+ layer 1 stage %%d+ %%(%s%%): %s boom %d")
        :format(case[1]:gsub("_", "%%_"), case[1], k))
    end
  end
  lu.assertEquals(#sluice.flow.from_enumerable(sluice.range(1, 100)):map(function(x) return x end):to_list(), 100)
end

-- ---- flows stopped mid-run ---------------------------------------------

TestFlowStopped = {}

-- A started flow stopped mid-run: stop returns, await returns nothing,
-- no stage of it is left.
function TestFlowStopped:test_started_flow_stopped()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local before = #sluice.stats()
    local running = sluice.flow.from_enumerable(sluice.range(1, math.huge), {stages = math.random(1, 3)})
      :map(function(x) return x * 2 end)
      :partition({stages = math.random(1, 3)})
      :reduce(function() return 0 end, function(x, acc) return acc + 1 end)
      :start()
    sluice.sleep(math.random(0, 5))
    running:stop()
    lu.assertEquals(select("#", running:await()), 0)
    lu.assertEquals(#sluice.stats(), before)
  end
end

-- Breaking out of a flow's stream mid-run stops its stages; the events
-- seen before were each seen once.
function TestFlowStopped:test_stream_left_mid_run()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local before = #sluice.stats()
    local k = math.random(1, 5000)
    local seen, n = {}, 0
    for x in sluice.flow.from_enumerable(sluice.range(1, 10000), {stages = math.random(1, 3)})
        :map(function(x) return x end):stream() do
      lu.assertNil(seen[x])
      seen[x] = true
      n = n + 1
      if n == k then break end
    end
    lu.assertEquals(n, k)
    H.wait_until(function() return #sluice.stats() == before end)
  end
end

-- A flow whose source stage is stopped from outside: the terminal raises
-- or returns; it never hangs.
function TestFlowStopped:test_flow_source_stopped_from_outside()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local src = sluice.start(Numbers, {})
    local running = sluice.flow.from_stages({src}):map(function(x) return x end):start()
    sluice.sleep(math.random(0, 3))
    src:stop(({"normal", "boom"})[seed % 2 + 1])
    local ok, err = pcall(running.await, running)
    if seed % 2 == 1 then
      lu.assertFalse(ok)
      lu.assertEquals(first_line(err), 'sluice.flow: a producer ended with "boom"')
    else
      lu.assertTrue(ok, err)
    end
  end
end

-- ---- flow consumers and shapes ----------------------------------------------

TestMore = {}

-- into_specs consumers raising: the flow's await raises their error.
function TestMore:test_into_specs_consumer_raises()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local k = math.random(1, 2000)
    local running = sluice.flow.from_enumerable(sluice.range(1, 2000), {stages = math.random(1, 2)})
      :into_specs({{{type = "consumer", init = function(k) return k end,
        handle_events = function(e, f, k)
          for _, x in ipairs(e) do if x == k then error("sink boom " .. x, 0) end end
          return {}, k
        end}, k}})
    local ok, err = pcall(running.await, running)
    lu.assertFalse(ok)
    lu.assertStrMatches(first_line(err), "sluice%.flow: flow %d+ consumer 1: stage %d+ on worker %d+ %(handle_events%): sink boom " .. k)
  end
end

-- Flow functions raising a non-string error value.
function TestMore:test_flow_raises_table()
  local ok, err = pcall(function()
    return sluice.flow.from_enumerable({1, 2, 3}):map(function(x) error({code = x}) end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertEquals(type(err), "string")
  lu.assertStrContains(err, "(map)")
end

-- ---- flows around faults ------------------------------------------------------

TestAround = {}

-- A flow's layer stage stopped from outside mid-run with an error-like
-- reason: the running handle's await raises, naming the reason; with
-- "shutdown" the flow ends.
function TestAround:test_flow_stage_stopped_from_outside()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local before = #sluice.stats()
    local running = sluice.flow.from_enumerable(sluice.range(1, math.huge), {stages = math.random(1, 2)})
      :map(function(x) return x end)
      :partition({stages = math.random(1, 3)})
      :map(function(x) return x end)
      :start()
    sluice.sleep(math.random(0, 3))
    local victim
    for _, st in ipairs(sluice.stats()) do
      if st.name:find("^flow %d+ layer %d+ stage %d+$") then victim = st.stage end
    end
    lu.assertNotNil(victim)
    victim:stop({"killed", seed})
    local ok, err = pcall(running.await, running, 5000)
    lu.assertFalse(ok)
    lu.assertEquals(first_line(err), ('sluice.flow: a stage ended with {"killed", %d}'):format(seed))
    H.wait_until(function() return #sluice.stats() == before end)
  end
end

-- A from_specs source raising in handle_demand: the terminal raises
-- with the source's place.
function TestAround:test_flow_source_spec_raises()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local ok, err = pcall(function()
      return sluice.flow.from_specs({{Numbers, {fail_call = math.random(2, 6)}}}):map(function(x) return x end):to_list()
    end)
    lu.assertFalse(ok)
    lu.assertStrMatches(first_line(err),
      "sluice%.flow: flow %d+ source 1: stage %d+ on worker %d+ %(handle_demand%): boom after %d+")
  end
end

-- The consumers given to into_stages failing or stopped mid-run: the
-- flow's output has nowhere to go; await raises (it waited forever).
function TestAround:test_into_stages_consumers_gone()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local before = #sluice.stats()
    local k = math.random(1, 5000)
    local crash = seed % 2 == 1
    local c = sluice.start({type = "consumer", init = function(k) return k end,
      handle_events = function(e, f, k)
        for _, x in ipairs(e) do if x == k then error("sink boom " .. x, 0) end end
        return {}, k
      end}, crash and k or -1)
    local running = sluice.flow.from_enumerable(sluice.range(1, math.huge), {stages = math.random(1, 2)})
      :map(function(x) return x end):into_stages({c})
    if not crash then
      sluice.sleep(math.random(0, 3))
      c:stop({"left", seed})
    end
    local ok, err = pcall(running.await, running)
    lu.assertFalse(ok)
    if crash then
      lu.assertStrMatches(err, "sluice%.flow: every consumer given to into_stages has ended %(consumer 1: " ..
        "stage %d+ on worker %d+ %(handle_events%): sink boom " .. k .. "%), so the flow's output has nowhere to go")
    else
      lu.assertEquals(err, ('sluice.flow: every consumer given to into_stages has ended (consumer 1: {"left", %d}), ' ..
        "so the flow's output has nowhere to go"):format(seed))
    end
    H.wait_until(function() return #sluice.stats() == before end)
  end
end

-- The sink of a started flow, or an into_specs consumer, stopped from
-- outside with "normal" mid-run: await raises rather than wait forever
-- for a flow whose output has nowhere to go.
function TestAround:test_flow_final_consumer_stopped_normally()
  for _, seed in ipairs(SEEDS) do
    math.randomseed(seed)
    local before = #sluice.stats()
    local specs = seed % 2 == 0
    local fl = sluice.flow.from_enumerable(sluice.range(1, math.huge), {stages = math.random(1, 2)})
      :map(function(x) return x end)
    local running = specs and fl:into_specs({{{type = "consumer", handle_events = function(e, f, s) return {}, s end}}})
                          or fl:start()
    sluice.sleep(math.random(0, 3))
    local victim
    for _, st in ipairs(sluice.stats()) do
      if st.name:find(specs and "^flow %d+ consumer 1$" or "^flow %d+ sink$") then victim = st end
    end
    victim.stage:stop()
    local ok, err = pcall(running.await, running)
    lu.assertFalse(ok)
    lu.assertEquals(err, ('sluice.flow: every consumer of the flow\'s output has ended (%s: "normal"), ' ..
      "so the flow's output has nowhere to go"):format(victim.name))
    H.wait_until(function() return #sluice.stats() == before end)
  end
end

-- ---- random flows ------------------------------------------------------------

TestRandomPipelines = {}

-- Random flows (a random source split, maybe a partition) with one of
-- their functions raising on a random event, run by a random terminal:
-- the terminal raises that function's error, naming it; a flow without
-- events raises nothing; no stage is left behind.
function TestRandomPipelines:test_random_flows()
  local flow = sluice.flow
  local ops = {"map", "flat_map", "filter", "reduce", "group_by", "uniq_by", "map_batch", "each", "take_sort",
               "departition", "emit_and_reduce", "frequencies_by", "on_trigger"}
  local function listing() return function() return {} end, function(x, a) a[#a + 1] = x return a end end
  for seed = 1, tonumber(os.getenv("FAULT_SEEDS") or 60) do
    math.randomseed(seed)
    local before = #sluice.stats()
    local n = math.random(0, 3000)
    local k = math.random(1, math.max(1, n))
    local op = ops[math.random(#ops)]
    local function boom(x) if x == k then error("boom " .. op .. " " .. k, 0) end end
    local f = flow.from_enumerable(sluice.range(1, n), {stages = math.random(1, 3), max_demand = math.random(1, 100)})
    if math.random() < 0.5 then f = f:partition({stages = math.random(1, 3)}) end
    if op == "map" then f = f:map(function(x) boom(x) return x end)
    elseif op == "flat_map" then f = f:flat_map(function(x) boom(x) return {x} end)
    elseif op == "filter" then f = f:filter(function(x) boom(x) return true end)
    elseif op == "each" then f = f:each(function(x) boom(x) end)
    elseif op == "uniq_by" then f = f:uniq_by(function(x) boom(x) return x end)
    elseif op == "map_batch" then f = f:map_batch(function(b) for _, x in ipairs(b) do boom(x) end return b end)
    elseif op == "reduce" then f = f:reduce(function() return {} end, function(x, a) boom(x) a[#a + 1] = x return a end)
    elseif op == "group_by" then f = f:group_by(function(x) boom(x) return x % 5 end)
    elseif op == "frequencies_by" then f = f:frequencies_by(function(x) boom(x) return x % 5 end)
    elseif op == "emit_and_reduce" then
      f = f:emit_and_reduce(function() return 0 end, function(x, a) boom(x) return {x}, a + 1 end)
    elseif op == "take_sort" then
      f = f:reduce(listing()):take_sort(10, function(a, b) boom(a) boom(b) return a < b end)
    elseif op == "departition" then
      f = f:partition({stages = 2}):reduce(listing()):departition(function() return 0 end,
        function(x, a) for _, v in ipairs(x) do boom(v) end return a + 1 end, function(a) return a end)
    else
      f = f:reduce(function() return 0 end, function(x, a) return a + x end)
           :on_trigger(function(acc) boom(k) return {acc}, acc end)
    end
    local how = ({"to_list", "run", "stream", "start"})[math.random(1, 4)]
    local ok, err = pcall(function()
      if how == "to_list" then return f:to_list()
      elseif how == "run" then return f:run()
      elseif how == "stream" then for _ in f:stream() do end
      else return f:start():await(10000) end
    end)
    local label = ("seed %d: %s by %s, %d events, boom at %d: %s"):format(seed, op, how, n, k, tostring(err))
    if n > 0 or op == "on_trigger" then
      lu.assertFalse(ok, label)
      lu.assertStrMatches(first_line(err), "sluice%.flow: flow %d+ layer %d+ stage %d+ %(" ..
        (op == "on_trigger" and "on_trigger" or "[%w_ ]+") .. "%): boom " .. op .. " " .. k, nil, nil, label)
    else
      lu.assertTrue(ok, label)
    end
    H.wait_until(function() return #sluice.stats() == before end)
  end
end

os.exit(lu.LuaUnit.run())
