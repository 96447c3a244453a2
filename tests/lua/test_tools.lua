-- sluice.stats() (every live stage's counters) and flow:graph() (a
-- flow's topology as Graphviz DOT, compared exactly).
local lu = require("luaunit")
local flow = sluice.flow

TestTools = {}

function TestTools:test_graph_of_a_partitioned_flow()
  local f = flow.from_enumerable({ 1, 2, 3 }, { stages = 1 }):map(function(x) return x end)
    :partition({ stages = 2 }):reduce(function() return 0 end, function(x, a) return a + x end)
  local w2 = sluice.workers() >= 2 and 2 or 1
  lu.assertEquals(f:graph(), table.concat({
    "digraph sluice {",
    "  rankdir=LR;",
    "  node [shape=box];",
    '  source1 [label="source 1\\nproducer"];',
    "  subgraph cluster_layer1 {",
    '    label="layer 1 (layer)";',
    '    layer1_stage1 [label="layer 1 stage 1\\nworker 1"];',
    "  }",
    "  subgraph cluster_layer2 {",
    '    label="layer 2 (layer)";',
    '    layer2_stage1 [label="layer 2 stage 1\\nworker 1"];',
    ('    layer2_stage2 [label="layer 2 stage 2\\nworker %d"];'):format(w2),
    "  }",
    '  source1 -> layer1_stage1 [label="demand"];',
    '  layer1_stage1 -> layer2_stage1 [label="partition 1"];',
    '  layer1_stage1 -> layer2_stage2 [label="partition 2"];',
    "}", "" }, "\n"))
  lu.assertEquals(flow.graph(f), f:graph())
  lu.assertEquals(#sluice.stats(), 0)   -- a graph starts nothing
end

function TestTools:test_graph_of_a_split_source()
  lu.assertEquals(flow.from_enumerable(sluice.range(1, 10), { stages = 1 }):map(function(x) return x end):graph(),
    table.concat({ "digraph sluice {", "  rankdir=LR;", "  node [shape=box];",
      "  subgraph cluster_layer1 {", '    label="layer 1 (split source)";',
      '    layer1_stage1 [label="layer 1 stage 1\\nworker 1"];', "  }", "}", "" }, "\n"))
  lu.assertErrorMsgContains("sluice.flow.graph: expected a flow, got number", flow.graph, 1)
end

function TestTools:test_stats_lists_live_stages()
  lu.assertEquals(sluice.stats(), {})
  -- a producer held back by accumulated demand: the flow waits, idle
  local p = sluice.from_enumerable(sluice.range(1, math.huge), { name = "numbers", worker = 1, demand = "accumulate" })
  local r = flow.from_stages({ p }, { stages = 1 }):map(function(x) return x end):start()
  p:demand("accumulate")
  sluice.sleep(20)
  local st = sluice.stats()
  local names = {}
  for i, s in ipairs(st) do
    names[i] = s.name
    lu.assertEquals(type(s.events_in), "number")
    lu.assertEquals(type(s.demand), "number")
    lu.assertEquals(s.late, 0)
    -- in the order they started (an id's low 48 bits count up)
    if i > 1 then lu.assertTrue((s.id & 0xffffffffffff) > (st[i - 1].id & 0xffffffffffff)) end
  end
  local fid = names[2]:match("^flow (%d+) layer 1 stage 1$")
  lu.assertNotNil(fid)
  lu.assertEquals(names, { "numbers", ("flow %s layer 1 stage 1"):format(fid), ("flow %s sink"):format(fid) })
  lu.assertEquals(st[1].type, "producer")
  lu.assertEquals(st[1].worker, 1)
  lu.assertEquals(st[1].stage, p)
  lu.assertEquals(st[2].type, "producer_consumer")
  lu.assertEquals(st[3].type, "consumer")
  r:stop()
  p:stop()
  lu.assertEquals(sluice.stats(), {})
end

function TestTools:test_stats_inside_a_callback_raises()
  local ok, err = sluice.task(function() return pcall(sluice.stats) end):await()
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.stats: only the main thread may read other stages' stats")
end

local function edges(dot)
  local n = 0
  for _ in dot:gmatch(" %-> ") do n = n + 1 end
  return n
end

function TestTools:test_graph_of_live_stages()
  lu.assertEquals(sluice.graph(), "digraph sluice {\n  rankdir=LR;\n  node [shape=box];\n}\n")
  local sink = { type = "consumer", handle_events = function(_, _, s) return {}, s end }
  local p = sluice.from_enumerable(sluice.range(1, math.huge), { name = "numbers", worker = 1,
    demand = "accumulate", dispatcher = sluice.dispatcher.partition({ partitions = 2 }) })
  local even = sluice.start(sink, nil, { name = "even", worker = 1, subscribe_to = { { p, partition = 1 } } })
  local odd = sluice.start(sink, nil, { name = "odd", worker = 1, subscribe_to = { { p, partition = 2 } } })
  local b = sluice.from_enumerable(sluice.range(1, math.huge), { name = "ticks", worker = 1,
    demand = "accumulate", dispatcher = sluice.dispatcher.broadcast({}) })
  local log = sluice.start(sink, nil, { name = "log", worker = 1, subscribe_to = { b } })
  local audit = sluice.start(sink, nil, { name = "audit", worker = 1, subscribe_to = { b } })
  local jobs = sluice.from_enumerable(sluice.range(1, math.huge), { name = "jobs", worker = 1, demand = "accumulate" })
  local r = flow.from_stages({ jobs }, { stages = 1 }):map(function(x) return x end):start()
  -- the producers record a subscription when its message reaches them
  local dot
  for _ = 1, 100 do
    dot = sluice.graph()
    if edges(dot) == 6 then break end
    sluice.sleep(20)
  end
  local st = sluice.stats()
  local fid = st[8].name:match("^flow (%d+) layer 1 stage 1$")
  lu.assertNotNil(fid)
  lu.assertEquals(dot, table.concat({
    "digraph sluice {",
    "  rankdir=LR;",
    "  node [shape=box];",
    '  n1 [label="numbers\\nproducer, worker 1"];',
    '  n2 [label="even\\nconsumer, worker 1"];',
    '  n3 [label="odd\\nconsumer, worker 1"];',
    '  n4 [label="ticks\\nproducer, worker 1"];',
    '  n5 [label="log\\nconsumer, worker 1"];',
    '  n6 [label="audit\\nconsumer, worker 1"];',
    '  n7 [label="jobs\\nproducer, worker 1"];',
    ('  n8 [label="flow %s layer 1 stage 1\\nproducer_consumer, worker 1"];'):format(fid),
    ('  n9 [label="flow %s sink\\nconsumer, worker %d"];'):format(fid, st[9].worker),
    '  n1 -> n2 [label="partition 1"];',
    '  n1 -> n3 [label="partition 2"];',
    '  n4 -> n5 [label="broadcast"];',
    '  n4 -> n6 [label="broadcast"];',
    '  n7 -> n8 [label="demand"];',
    '  n8 -> n9 [label="demand"];',
    "}", "" }, "\n"))
  r:stop()
  for _, s in ipairs({ p, b, jobs }) do s:stop() end
  for _, s in ipairs({ even, odd, log, audit }) do s:await(2000) end
  lu.assertEquals(sluice.graph(), "digraph sluice {\n  rankdir=LR;\n  node [shape=box];\n}\n")
  local ok, err = sluice.task(function() return pcall(sluice.graph) end):await()
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.graph: only the main thread may read other stages' stats")
end

function TestTools:test_top_text()
  local tools = require("sluice.tools")
  lu.assertEquals(tools.top_text({
    { name = "numbers", type = "producer", worker = 1, events_in = 0, events_out = 12000, demand = 0, buffered = 3, late = 0 },
    { name = "flow 2 collector", type = "consumer", worker = 0, events_in = 12000, events_out = 0, demand = 10,
      buffered = 0, late = 0 },
  }), table.concat({
    "sluice.top: 2 live stages",
    "name              type      worker     in    out  demand  buffered  late",
    "numbers           producer       1      0  12000       0         3     0",
    "flow 2 collector  consumer    main  12000      0      10         0     0",
    "" }, "\n"))
  lu.assertEquals(tools.top_text({}), "sluice.top: 0 live stages\nname  type  worker  in  out  demand  buffered  late\n")
  lu.assertErrorMsgContains("sluice.top: ms must be an integer >= 10, got 5", sluice.top, { ms = 5 })
  lu.assertErrorMsgContains("sluice.top: times must be an integer >= 1, got 0", sluice.top, { times = 0 })
  lu.assertErrorMsgContains("sluice.top: opts must be a table, got 5", sluice.top, 5)
  lu.assertErrorMsgContains('sluice.top: unknown option "every"', sluice.top, { every = 5 })
  local ok, err = sluice.task(function() return pcall(sluice.top) end):await()
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.top: only the main thread")
end

os.exit(lu.LuaUnit.run())
