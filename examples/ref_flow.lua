-- examples/ref_flow.lua: the Flow functions of lua/README.md §8 and §9
-- that the tour does not show, one use each. Results are sorted where
-- partitions make their order vary.
local flow, W = sluice.flow, sluice.window
local function show(name, list)
  table.sort(list, function(a, b) return sluice.inspect(a) < sluice.inspect(b) end)
  print(name .. ": " .. sluice.inspect(list))
end
local one = { stages = 1 }
local nums = flow.from_enumerable({ 1, 2, 3, 4, 5, 6 }, one)
print("is_flow:", flow.is_flow(nums), flow.is_flow({}))

show("map_batch", nums:map_batch(function(batch) return { #batch } end):to_list())
show("reject", nums:reject(function(x) return x % 3 == 0 end):to_list())
show("map_values", flow.from_enumerable({ { "a", 1 } }, one):map_values(function(v) return v * 10 end):to_list())
flow.from_enumerable({ 1, 2 }, one):each(function(x) print("each " .. x) end):run()   -- run returns nothing
show("uniq", flow.from_enumerable({ 1, 1, 2, 1, 3 }, one):uniq():to_list())
show("uniq_by", flow.from_enumerable({ "ab", "ac", "b" }, one):uniq_by(function(s) return s:sub(1, 1) end):to_list())
show("group_by", nums:group_by(function(x) return x % 2 == 0 and "even" or "odd" end):to_list())
show("group_by_key", flow.from_enumerable({ { "a", 1 }, { "b", 2 }, { "a", 3 } }, one):group_by_key():to_list())
show("frequencies_by", flow.from_enumerable({ "apple", "avocado", "banana" }, one)
  :frequencies_by(function(s) return s:sub(1, 1) end):to_list())
show("emit_and_reduce", nums:emit_and_reduce(function() return 0 end, function(x, acc)
  if x % 2 == 0 then return { "even " .. x }, acc + x end
  return {}, acc + x
end):to_list())

-- several sources, and flows joined into one layer
show("from_enumerables", flow.from_enumerables({ { 1, 2 }, { 3 } }, one):map(function(x) return x * 2 end):to_list())
local letters = flow.from_enumerable({ "x", "y" }, one)
show("flow.merge", flow.merge({ nums, letters }, one):to_list())
show("flow.shuffle", flow.shuffle({ nums, letters }, one):to_list())
show("flow.partition", flow.partition({ nums, letters }, { stages = 2 }):to_list())
show(":shuffle", nums:shuffle({ stages = 2 }):map(function(x) return -x end):to_list())
show(":merge", nums:merge({ stages = 2 }):filter(function(x) return x > 4 end):to_list())

-- count and periodic windows
show("count(4)", nums:partition({ stages = 1, window = W.count(4) })
  :reduce(function() return 0 end, function(x, s) return s + x end)
  :on_trigger(function(s, _, w) return { { w.id, s } } end):to_list())
show("periodic", flow.from_enumerable({ 1, 2, 3 }, { stages = 1, window = W.periodic(1, "hour") })
  :reduce(function() return 0 end, function(x, s) return s + x end)
  :on_trigger(function(s, _, w) return { { w.type, w.id, w.trigger, s } } end):to_list())

-- window_join: rows meet within the same fixed window of their time
local left = flow.from_enumerable({ { 100, "a" }, { 1500, "b" } }, one)
local right = flow.from_enumerable({ { 200, "x" }, { 1900, "y" }, { 2100, "z" } }, one)
show("window_join", flow.window_join("inner", left, right, W.fixed(1, "second", { index = 1 }),
  function(l) return 1 end, function(r) return 1 end,
  function(l, r) return l[2] .. r[2] end, one):to_list())

-- stages you start, and stages a flow starts (specs)
local Doubler = { type = "producer_consumer",
  handle_events = function(evs, _, s) for i, e in ipairs(evs) do evs[i] = e * 2 end return evs, s end,
  handle_cancel = function(r, _, s) if sluice.self():stats().producers == 0 then sluice.self():finish() end return {}, s end }
show("through_specs", nums:through_specs({ { Doubler, nil } }):to_list())
local d = sluice.start(Doubler, nil)
show("through_stages", nums:through_stages({ d }):to_list())
local src = sluice.from_enumerable({ 7, 8 }, { demand = "accumulate" })
show("from_stages", flow.from_stages({ src }, one):to_list())
show("from_specs", flow.from_specs({ { { type = "producer", init = function(n) return n end,
  handle_demand = function(n, left)            -- counts down to 1, then finishes
    local out = {}
    while #out < n and left > 0 do out[#out + 1] = left; left = left - 1 end
    if left == 0 then sluice.self():finish() end
    return out, left
  end }, 3 } }, one):to_list())

-- started flows: a sink of your own (into_stages), or one the flow owns (into_specs)
local Sum = { type = "consumer", init = function() return 0 end,
  handle_events = function(evs, _, s) for _, e in ipairs(evs) do s = s + e end return {}, s end,
  handle_call = function(_, _, s) return s, {}, s end }
local sink = sluice.start(Sum, nil)
nums:map(function(x) return x * 100 end):into_stages({ { sink, cancel = "temporary" } }):await()
print("into_stages:", sink:call("sum"))
sink:stop()
local running = nums:into_specs({ { { type = "consumer",
  handle_events = function(evs, _, s) return {}, s end }, nil } })
running:await()
print("into_specs: awaited")

-- a started flow, a message to its stages, its stats, and a streamed flow
local r = flow.from_enumerable({ 1, 2, 3 }, { stages = 1, max_demand = 1 })
  :map(function(x) sluice.sleep(100); return x end)   -- slow, so the message comes first
  :reduce(function() return 0 end, function(x, s) return s + x end)
  :on_trigger(function(s, _, w)   -- how much "now" has seen depends on timing
    print("trigger " .. w.trigger .. (w.trigger == "done" and ": " .. s or ""))
    return {}
  end)
  :start()
r:send({ "trigger", "now" })                  -- a message trigger on every layer stage
r:await()
local total = 0
for x in nums:stream() do total = total + x end
print("stream:", total)
print(flow.explain(nums:map(function(x) return x end):partition({ stages = 2 }):frequencies()))
print("the method gives the same plan:", nums:explain() == flow.explain(nums))
