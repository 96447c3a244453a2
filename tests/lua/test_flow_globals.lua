-- The globals snapshot in flows: every stage of one flow shares one
-- snapshot taken when the flow starts; the next flow sees later changes.
local lu = require("luaunit")
local flow = sluice.flow

function scale(x) return x * FACTOR end   -- luacheck: globals scale FACTOR

TestFlowGlobals = {}

function TestFlowGlobals:test_stages_of_all_layers_see_the_globals()
  FACTOR = 10
  local got = flow.from_enumerable({1, 2, 3}, {stages = 2}):map(scale)
    :partition({stages = 3}):map(function(x) return scale(x) + 1 end):to_list()
  table.sort(got)
  lu.assertEquals(got, {101, 201, 301})
end

function TestFlowGlobals:test_next_flow_sees_later_changes()
  FACTOR = 2
  lu.assertEquals(flow.from_enumerable({5}, {stages = 1}):map(scale):to_list(), {10})
  FACTOR = 3
  lu.assertEquals(flow.from_enumerable({5}, {stages = 1}):map(scale):to_list(), {15})
end

function TestFlowGlobals:test_failed_build_unpins()
  FACTOR = 4
  lu.assertError(function() flow.from_enumerable({1}):map(scale):partition({stages = 0}):to_list() end)
  FACTOR = 5
  lu.assertEquals(flow.from_enumerable({1}, {stages = 1}):map(scale):to_list(), {5})
  lu.assertEquals(sluice.task(function() return scale(1) end):await(), 5)
end

os.exit(lu.LuaUnit.run())
