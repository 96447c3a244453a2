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
    if i > 1 then lu.assertTrue(s.id > st[i - 1].id) end
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

os.exit(lu.LuaUnit.run())
