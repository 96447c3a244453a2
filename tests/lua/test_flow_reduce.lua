-- Flow: reducing, triggers and emission, departition, take_sort and a word
-- count checked against a plain Lua count (API.md §4). Outputs whose
-- order is not promised are sorted first; where a result depends on which
-- partition an event lands in, the layer has an explicit hash.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect = H.sorted, H.by_inspect
local F = sluice.flow

local function append(e, acc)
  acc[#acc + 1] = e
  return acc
end

local function new_list() return {} end

local DONE = { type = "global", id = "global", trigger = "done" }

-- 1..n in two partitions by parity (partition 1: even, 2: odd).
local function parity(n, opts)
  local o = { stages = 2, hash = function(e) return e % 2 + 1 end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return F.from_enumerable(sluice.range(1, n), { stages = 2 }):partition(o)
end

TestFlowReduce = {}

function TestFlowReduce:test_reduce_per_partition()
  local out = parity(10):reduce(function() return 0 end, function(e, acc) return acc + e end):to_list()
  lu.assertEquals(sorted(out), { 25, 30 })
  -- acc_fun runs per stage: each gets its own accumulator
  out = parity(6):reduce(new_list, append):on_trigger(function(acc) return { #acc } end):to_list()
  lu.assertEquals(out, { 3, 3 })
end

function TestFlowReduce:test_reduce_with_operations_before_it()
  local out = F.from_enumerable(sluice.range(1, 20), { stages = 3 })
    :filter(function(x) return x % 2 == 0 end)
    :map(function(x) return x * x end)
    :partition({ stages = 1 })
    :flat_map(function(x) return { x, 1 } end)
    :reduce(function() return 0 end, function(x, acc) return acc + x end)
    :to_list()
  lu.assertEquals(out, { 1540 + 10 })
end

function TestFlowReduce:test_emit_and_reduce()
  -- Flow's example: a sliding window of the 3 latest events; the final
  -- accumulator (an array) is emitted as events at the end
  local out = F.from_enumerable(sluice.range(1, 5), { stages = 1 })
    :emit_and_reduce(new_list, function(e, acc)
      table.insert(acc, e)
      if #acc > 3 then table.remove(acc, 1) end
      return { { table.unpack(acc) } }, acc
    end)
    :to_list()
  lu.assertEquals(out, { { 1 }, { 1, 2 }, { 1, 2, 3 }, { 2, 3, 4 }, { 3, 4, 5 }, 3, 4, 5 })
  -- emitted events leave at once, before the end of the input
  local got = {}
  for v in F.from_enumerable(sluice.range(1, math.huge), { stages = 1, max_demand = 4 })
      :emit_and_reduce(function() return 0 end, function(e, acc) return { e * 10 }, acc + e end)
      :stream() do
    got[#got + 1] = v
    if #got == 3 then break end
  end
  lu.assertEquals(got, { 10, 20, 30 })
end

function TestFlowReduce:test_group_by()
  local words = { "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog" }
  local out = F.from_enumerable(words, { stages = 1 }):group_by(string.len):to_list()
  lu.assertEquals(sorted(out, by_inspect), {
    { 3, { "the", "fox", "the", "dog" } }, { 4, { "over", "lazy" } }, { 5, { "quick", "brown", "jumps" } },
  })
  -- value_fun, and integer keys 1..n still emit pairs
  out = F.from_enumerable(sluice.range(1, 9), { stages = 1 })
    :group_by(function(x) return x % 3 + 1 end, function(x) return x * 10 end)
    :to_list()
  lu.assertEquals(sorted(out, by_inspect), { { 1, { 30, 60, 90 } }, { 2, { 10, 40, 70 } }, { 3, { 20, 50, 80 } } })
  -- partitioned by the same key, each group is whole in one partition
  out = F.from_enumerable(words, { stages = 2 })
    :partition({ stages = 3, key = string.len })
    :group_by(string.len)
    :to_list()
  lu.assertEquals(sorted(out, by_inspect), {
    { 3, { "the", "fox", "the", "dog" } }, { 4, { "over", "lazy" } }, { 5, { "quick", "brown", "jumps" } },
  })
end

function TestFlowReduce:test_group_by_key()
  local events = { { "foo", 1 }, { "foo", 2 }, { "bar", 3 }, { "foo", 4 }, { "bar", 5 } }
  local out = F.from_enumerable(events, { stages = 1 }):group_by_key():emit("state"):to_list()
  lu.assertEquals(out, { { foo = { 1, 2, 4 }, bar = { 3, 5 } } })
  out = F.from_enumerable(events, { stages = 1 }):group_by_key():to_list()
  lu.assertEquals(sorted(out, by_inspect), { { "bar", { 3, 5 } }, { "foo", { 1, 2, 4 } } })
end

function TestFlowReduce:test_on_trigger_arguments()
  local out = parity(8)
    :reduce(new_list, append)
    :on_trigger(function(acc, partition, window)
      table.sort(acc)
      return { { partition, window, acc } }, {}
    end)
    :to_list()
  lu.assertEquals(sorted(out, by_inspect), {
    { { index = 1, total = 2 }, DONE, { 2, 4, 6, 8 } },
    { { index = 2, total = 2 }, DONE, { 1, 3, 5, 7 } },
  })
  -- several events, or none
  out = parity(8):reduce(function() return 0 end, function(e, a) return a + e end)
    :on_trigger(function(acc, p) if p.index == 1 then return { acc, -acc } end return {} end)
    :to_list()
  lu.assertEquals(sorted(out), { -20, 20 })
end

-- What "events" emission gives for accumulator acc (one stage).
local function emitted(acc_value, mode)
  local fl = F.from_enumerable({ 1 }, { stages = 1 }):reduce(function() return acc_value end, function(_, a) return a end)
  if mode then fl = fl:emit(mode) end
  return fl:to_list()
end

function TestFlowReduce:test_emit_modes_and_the_array_rule()
  -- a sequence emits its elements, in order
  lu.assertEquals(emitted({ 3, 1, 2 }), { 3, 1, 2 })
  lu.assertEquals(emitted({ 3, 1, 2 }, "events"), { 3, 1, 2 })
  -- an empty table is an empty sequence
  lu.assertEquals(emitted({}), {})
  -- any other table emits {k, v} pairs
  lu.assertEquals(sorted(emitted({ a = 1, b = 2 }), by_inspect), { { "a", 1 }, { "b", 2 } })
  lu.assertEquals(sorted(emitted({ 10, 20, x = 30 }), by_inspect), { { "x", 30 }, { 1, 10 }, { 2, 20 } })
  lu.assertEquals(sorted(emitted({ [2] = "b", [3] = "c" }), by_inspect), { { 2, "b" }, { 3, "c" } })
  -- pairs of scalars go out straight from the table, others as {k, v}
  -- tables: the same events either way
  lu.assertEquals(sorted(emitted({ a = { 1, 2 }, [{ "k" }] = true, b = "x", [1.5] = false, [-7] = 2 ^ 70 }), by_inspect),
    { { "a", { 1, 2 } }, { "b", "x" }, { -7, 2 ^ 70 }, { 1.5, false }, { { "k" }, true } })
  -- an accumulator with __pairs emits what its __pairs gives
  local custom = F.from_enumerable({ 1 }, { stages = 1 })
    :reduce(function()
      return setmetatable({ a = 1 }, { __pairs = function() return next, { z = 26 }, nil end })
    end, function(_, a) return a end)
    :to_list()
  lu.assertEquals(custom, { { "z", 26 } })
  -- a non-table is one event
  lu.assertEquals(emitted(42), { 42 })
  lu.assertEquals(emitted("s"), { "s" })
  -- "state": the accumulator itself; "nothing": nothing
  lu.assertEquals(emitted({ 3, 1, 2 }, "state"), { { 3, 1, 2 } })
  lu.assertEquals(emitted({ a = 1 }, "state"), { { a = 1 } })
  lu.assertEquals(emitted(7, "state"), { 7 })
  lu.assertEquals(emitted({ 3, 1, 2 }, "nothing"), {})
  -- emit_and_reduce with "nothing": only what the reducer emitted
  local out = F.from_enumerable({ 1, 2 }, { stages = 1 })
    :emit_and_reduce(new_list, function(e, acc) return { e }, append(e, acc) end)
    :emit("nothing")
    :to_list()
  lu.assertEquals(out, { 1, 2 })
end

function TestFlowReduce:test_reduce_after_a_reducing_layer()
  -- sum per partition, then the total in a second layer
  local out = parity(100)
    :reduce(function() return 0 end, function(e, acc) return acc + e end)
    :emit("state")
    :partition({ stages = 1 })
    :reduce(function() return 0 end, function(e, acc) return acc + e end)
    :to_list()
  lu.assertEquals(out, { 5050 })
end

TestFlowDepartition = {}

function TestFlowDepartition:test_departition_merges_partition_states()
  -- partition sums: 1 -> multiples of 3, 2 -> x % 3 == 1, 3 -> x % 3 == 2
  local fl = F.from_enumerable(sluice.range(1, 12), { stages = 2 })
    :partition({ stages = 3, hash = function(e) return e % 3 + 1 end })
    :reduce(function() return 0 end, function(e, acc) return acc + e end)
  local out = fl:departition(new_list, append, function(acc, id)
    table.sort(acc)
    return { acc, id }
  end):to_list()
  lu.assertEquals(out, { { { 22, 26, 30 }, "global" } })
  -- with on_trigger, each emitted event is merged
  out = fl:on_trigger(function(acc, p) return { { p.index, acc }, { p.index, -acc } } end)
    :departition(new_list, append, function(acc)
      table.sort(acc, by_inspect)
      return acc
    end)
    :to_list()
  lu.assertEquals(out, { { { 1, -30 }, { 1, 30 }, { 2, -22 }, { 2, 22 }, { 3, -26 }, { 3, 26 } } })
  -- emit("state") merges the accumulator; emit("nothing") nothing
  out = fl:emit("state"):departition(function() return 0 end, function(s, acc) return acc + s end,
    function(acc) return acc end):to_list()
  lu.assertEquals(out, { 78 })
  out = fl:emit("nothing"):departition(function() return 0 end, function(s, acc) return acc + s end,
    function(acc) return { "empty", acc } end):to_list()
  lu.assertEquals(out, { { "empty", 0 } })
end

function TestFlowDepartition:test_departition_of_maps_and_operations_after_it()
  local words = { "a", "b", "a", "c", "b", "a" }
  local out = F.from_enumerable(words, { stages = 2 })
    :partition({ stages = 3 })
    :reduce(function() return {} end, function(w, acc)
      acc[w] = (acc[w] or 0) + 1
      return acc
    end)
    :departition(function() return {} end, function(state, acc)
      for k, v in pairs(state) do acc[k] = (acc[k] or 0) + v end
      return acc
    end, function(acc) return acc end)
    :flat_map(function(acc)
      local t = {}
      for k, v in pairs(acc) do t[#t + 1] = k .. "=" .. v end
      return t
    end)
    :to_list()
  lu.assertEquals(sorted(out), { "a=3", "b=2", "c=1" })
end

function TestFlowDepartition:test_departition_after_emit_and_reduce()
  -- the events emitted while reducing do not reach the departition: it
  -- merges the partitions' accumulators only
  local out = parity(10)
    :emit_and_reduce(function() return 0 end, function(e, acc) return { e }, acc + e end)
    :departition(new_list, append, function(acc)
      table.sort(acc)
      return acc
    end)
    :to_list()
  lu.assertEquals(out, { { 25, 30 } })
end

function TestFlowDepartition:test_departition_feeds_other_layers()
  -- a departitioned flow as a join side and partitioned again
  local d = parity(6)
    :reduce(new_list, append)
    :departition(new_list, function(s, acc)
      for _, e in ipairs(s) do acc[#acc + 1] = e end
      return acc
    end, function(acc) return acc end)
    :flat_map(function(l) return l end)
  local names = F.from_enumerable({ { 1, "one" }, { 4, "four" }, { 9, "nine" } }, { stages = 1 })
  local out = F.bounded_join("left_outer", d, names, function(x) return x end, function(e) return e[1] end,
    function(x, e) return x .. "=" .. (e and e[2] or "?") end, { stages = 2 }):to_list()
  lu.assertEquals(sorted(out), { "1=one", "2=?", "3=?", "4=four", "5=?", "6=?" })
  out = d:partition({ stages = 3 }):reduce(function() return 0 end, function(x, a) return a + x end):emit("state")
    :to_list()
  lu.assertEquals(out[1] + out[2] + out[3], 21)
end

function TestFlowDepartition:test_take_sort()
  local fl = F.from_enumerable(sluice.range(1, 1000), { stages = 3 })
    :map(function(x) return (x * 7919) % 1009 end)
    :partition({ stages = 4 })
    :reduce(new_list, append)
  local all = {}
  for x = 1, 1000 do all[#all + 1] = (x * 7919) % 1009 end
  table.sort(all)
  lu.assertEquals(fl:take_sort(5):to_list(), { { all[1], all[2], all[3], all[4], all[5] } })
  lu.assertEquals(fl:take_sort(3, function(a, b) return a > b end):to_list(), { { all[1000], all[999], all[998] } })
  -- n beyond the number of events: all of them
  lu.assertEquals(F.from_enumerable({ 5, 3, 9 }, { stages = 2 }):partition({ stages = 2 })
    :reduce(new_list, append):take_sort(10):to_list(), { { 3, 5, 9 } })
end

function TestFlowDepartition:test_take_sort_of_map_accumulators()
  -- Flow's example: the most visited URL; a map accumulator sorts as pairs
  local urls = { "foo.com", "bar.com", "foo.com", "foo.com", "baz.com", "bar.com" }
  local fl = F.from_enumerable(urls, { stages = 2 })
    :partition({ stages = 3 })
    :reduce(function() return {} end, function(u, acc)
      acc[u] = (acc[u] or 0) + 1
      return acc
    end)
  local by_count = function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end
  lu.assertEquals(fl:take_sort(1, by_count):to_list(), { { { "foo.com", 3 } } })
  lu.assertEquals(fl:take_sort(3, by_count):to_list(), { { { "foo.com", 3 }, { "bar.com", 2 }, { "baz.com", 1 } } })
  -- with on_trigger, its events are sorted
  lu.assertEquals(fl:on_trigger(function(acc)
      local t = {}
      for u in pairs(acc) do t[#t + 1] = u end
      return t
    end):take_sort(2):to_list(), { { "bar.com", "baz.com" } })
end

function TestFlowDepartition:test_take_sort_of_nothing()
  lu.assertEquals(F.from_enumerable({}, { stages = 2 }):partition({ stages = 2 }):reduce(new_list, append)
    :take_sort(3):to_list(), { {} })
end

TestFlowWordCount = {}

local TEXT = "examples/data/text.txt"


local function flow_count(stages)
  return F.from_enumerable(sluice.lines(TEXT), { stages = stages, max_demand = 4 })
    :flat_map(function(line)
      local words = {}
      for w in line:lower():gmatch("%a+") do words[#words + 1] = w end
      return words
    end)
    :partition({ stages = stages })
    :reduce(function() return {} end, function(w, acc)
      acc[w] = (acc[w] or 0) + 1
      return acc
    end)
    :to_list()
end

function TestFlowWordCount:test_counts_equal_a_plain_count()
  local want = H.plain_word_count(TEXT)
  lu.assertTrue(#want > 100)
  for _, stages in ipairs({ 1, 2, 4 }) do
    local got = sorted(flow_count(stages), H.by_word)
    lu.assertEquals(got, want, "stages = " .. stages)
  end
end

os.exit(lu.LuaUnit.run())
