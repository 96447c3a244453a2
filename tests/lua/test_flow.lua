-- Flow: sources, per-event operations, layers and partitioning
-- (API.md §4). Every expectation is exact; outputs whose order Flow does
-- not promise are sorted first. Stage counts are explicit so that results
-- do not depend on the number of workers.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect, Recorder = H.sorted, H.by_inspect, H.Recorder
local F = sluice.flow

local function ident(x) return x end

-- Endless: a producer of 1, 2, 3, ... that records every demand it gets.
local Endless = {
  type = "producer",
  init = function() return { next = 1, demands = {} } end,
  handle_demand = function(n, st)
    st.demands[#st.demands + 1] = n
    local out = {}
    for i = 1, n do out[i] = st.next + i - 1 end
    st.next = st.next + n
    return out, st
  end,
  handle_call = function(req, _, st) return st[req], {}, st end,
}

local function range_list(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = i end
  return t
end

TestFlowSources = {}

function TestFlowSources:test_from_enumerable_array_range_lines_iterator()
  lu.assertEquals(sorted(F.from_enumerable({ 3, 1, 2 }):to_list()), { 1, 2, 3 })
  lu.assertEquals(sorted(F.from_enumerable(sluice.range(1, 100), { stages = 3 }):map(ident):to_list()),
    range_list(1, 100))
  lu.assertEquals(F.from_enumerable({}, { stages = 2 }):map(ident):to_list(), {})
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write("alpha\nbeta\ngamma\n")
  f:close()
  lu.assertEquals(sorted(F.from_enumerable(sluice.lines(path), { stages = 2 }):map(string.upper):to_list()),
    { "ALPHA", "BETA", "GAMMA" })
  os.remove(path)
  local i = 0
  local iter = function()
    i = i + 1
    if i <= 5 then return i * 10 end
  end
  lu.assertEquals(sorted(F.from_enumerable(iter, { stages = 2 }):map(ident):to_list()), { 10, 20, 30, 40, 50 })
end

function TestFlowSources:test_from_enumerables()
  local fl = F.from_enumerables({ { 1, 2, 3 }, sluice.range(4, 6), { 7 } }, { stages = 2 })
  lu.assertEquals(sorted(fl:to_list()), range_list(1, 7))
  lu.assertEquals(sorted(fl:map(function(x) return -x end):to_list()), range_list(-7, -1))
end

function TestFlowSources:test_from_stages_with_options()
  local p = sluice.start(Endless)
  local got = {}
  for v in F.from_stages({ { p, max_demand = 4 } }, { stages = 1 }):map(ident):stream() do
    got[#got + 1] = v
    if #got == 3 then break end
  end
  lu.assertEquals(got, { 1, 2, 3 })
  lu.assertEquals(p:call("demands")[1], 4)
  p:stop()
end

function TestFlowSources:test_from_specs()
  local Counter = {
    type = "producer",
    init = function(arg) return { next = arg[1], last = arg[2] } end,
    handle_demand = function(n, st)
      local out = {}
      while #out < n and st.next <= st.last do
        out[#out + 1] = st.next
        st.next = st.next + 1
      end
      if st.next > st.last then sluice.self():finish() end
      return out, st
    end,
  }
  lu.assertEquals(sorted(F.from_specs({ { Counter, { 1, 5 } }, { Counter, { 11, 13 } } }, { stages = 2 }):to_list()),
    { 1, 2, 3, 4, 5, 11, 12, 13 })
  local want = 0
  for x = 1, 500 do want = want + x % 7 end
  local parts = F.from_specs({ { Counter, { 1, 500 } } }, { stages = 3 })
    :map(function(x) return x % 7 end):reduce(function() return 0 end, function(e, a) return a + e end)
    :emit("state"):to_list()
  lu.assertEquals(#parts, 3)
  lu.assertEquals(parts[1] + parts[2] + parts[3], want)
end

TestFlowOps = {}

function TestFlowOps:test_map_flat_map_filter_reject()
  local fl = F.from_enumerable(sluice.range(1, 10), { stages = 2 })
  lu.assertEquals(sorted(fl:map(function(x) return x * x end):to_list()),
    { 1, 4, 9, 16, 25, 36, 49, 64, 81, 100 })
  lu.assertEquals(sorted(fl:flat_map(function(x) if x <= 3 then return { x, -x } end return {} end):to_list()),
    { -3, -2, -1, 1, 2, 3 })
  lu.assertEquals(sorted(fl:filter(function(x) return x % 3 == 0 end):to_list()), { 3, 6, 9 })
  lu.assertEquals(sorted(fl:reject(function(x) return x % 3 == 0 end):to_list()), { 1, 2, 4, 5, 7, 8, 10 })
  -- several operations fused into one loop, in order
  local out = fl:filter(function(x) return x % 2 == 0 end)
    :flat_map(function(x) return { x, x + 100 } end)
    :map(function(x) return x * 2 end)
    :reject(function(x) return x > 200 end)
    :to_list()
  lu.assertEquals(sorted(out), { 4, 8, 12, 16, 20 })
end

-- An array flat_map returns is read as a loop over it would read it: with
-- a metatable, # and indexing go through __len and __index.
function TestFlowOps:test_flat_map_arrays_with_metatables()
  local proxy = { __len = function() return 3 end, __index = function(_, i) return ("p%d"):format(i) end }
  local function fm(x)
    if x == 1 then return setmetatable({}, proxy) end
    if x == 2 then return setmetatable({ "a", "b" }, {}) end
    return { "c" }
  end
  -- the array is the layer's output (emitted as it is) ...
  lu.assertEquals(F.from_enumerable({ 1, 2, 3 }, { stages = 1 }):flat_map(fm):to_list(),
    { "p1", "p2", "p3", "a", "b", "c" })
  -- ... or goes through more operations
  lu.assertEquals(F.from_enumerable({ 1, 2, 3 }, { stages = 1 }):flat_map(fm)
    :map(function(x) return x .. "!" end):to_list(), { "p1!", "p2!", "p3!", "a!", "b!", "c!" })
  local ok, err = pcall(function()
    return F.from_enumerable({ 1 }, { stages = 1 })
      :flat_map(function() return setmetatable({}, { __len = function() return "x" end }) end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "(flat_map): the length of an emitted array must be an integer")
end

function TestFlowOps:test_flat_map_takes_iterators()
  local words = F.from_enumerable({ "a bb", "", "ccc a" }, { stages = 1 })
  -- a string iterator: its values are the events
  lu.assertEquals(words:flat_map(function(line) return line:gmatch("%a+") end):to_list(),
    { "a", "bb", "ccc", "a" })
  -- the generic-for triple (function, state, control): pairs gives keys
  local keys = F.from_enumerable({ { x = 1, y = 2 }, {} }, { stages = 1 })
    :flat_map(function(t) return pairs(t) end):to_list()
  lu.assertEquals(sorted(keys), { "x", "y" })
  -- a stateful closure, mixed with array results, then more operations
  local out = F.from_enumerable(sluice.range(1, 4), { stages = 2 })
    :flat_map(function(x)
      if x % 2 == 0 then return { x, x } end
      local i = 0
      return function() i = i + 1; if i <= x then return x * 10 + i end end
    end)
    :filter(function(x) return x ~= 32 end)
    :map(function(x) return x + 1 end)
    :to_list()
  lu.assertEquals(sorted(out), { 3, 3, 5, 5, 12, 32, 34 })
  -- nested flat_maps beyond the ones written out twice collect iterators
  local deep = F.from_enumerable({ 1, 2 }, { stages = 1 })
  for _ = 1, 5 do
    deep = deep:flat_map(function(x)
      local n = 0
      if x % 2 == 0 then return { x, x + 1 } end
      return function() n = n + 1; if n <= 2 then return x + n - 1 end end
    end)
  end
  lu.assertEquals(#deep:to_list(), 64)
  lu.assertEquals(sorted(deep:to_list()), sorted((function()
    local t = { 1, 2 }
    for _ = 1, 5 do
      local u = {}
      for _, x in ipairs(t) do u[#u + 1] = x; u[#u + 1] = x + 1 end
      t = u
    end
    return t
  end)()))
end

function TestFlowOps:test_map_values_and_tables_as_events()
  local fl = F.from_enumerable({ { "a", 1 }, { "b", 2 }, { "c", 3 } }, { stages = 2 })
  lu.assertEquals(sorted(fl:map_values(function(v) return v * 10 end):to_list(), by_inspect),
    { { "a", 10 }, { "b", 20 }, { "c", 30 } })
  lu.assertEquals(sorted(fl:map(function(e) return { name = e[1], n = e[2] } end):to_list(), by_inspect),
    { { name = "a", n = 1 }, { name = "b", n = 2 }, { name = "c", n = 3 } })
end

function TestFlowOps:test_each_runs_once_per_event_and_passes_it_on()
  local rec = sluice.start(Recorder)
  local out = F.from_enumerable(sluice.range(1, 6), { stages = 3 })
    :each(function(x) rec:cast(x) end)
    :map(function(x) return x + 1 end)
    :to_list()
  lu.assertEquals(sorted(out), { 2, 3, 4, 5, 6, 7 })
  lu.assertEquals(sorted(rec:call("log")), { 1, 2, 3, 4, 5, 6 })
  rec:stop()
end

function TestFlowOps:test_map_batch_gets_whole_batches()
  -- Flow's own example: two enumerables, one batch each
  local out = F.from_enumerables({ { 1, 2, 3 }, { 4, 5, 6 } }, { stages = 2 })
    :map_batch(function(b)
      local s = 0
      for _, x in ipairs(b) do s = s + x end
      return { s }
    end)
    :to_list()
  lu.assertEquals(sorted(out), { 6, 15 })
  -- the batch may be changed in any way; later operations see the result
  out = F.from_enumerable(sluice.range(1, 10), { stages = 1, max_demand = 4, min_demand = 0 })
    :map_batch(function(b) return { #b } end)
    :map(function(n) return n * 100 end)
    :to_list()
  lu.assertEquals(out, { 400, 400, 200 })
  -- first in a later layer too
  out = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):map(ident)
    :partition({ stages = 1 })
    :map_batch(function(b) return { #b } end)
    :reduce(function() return 0 end, function(n, a) return a + n end)
    :to_list()
  lu.assertEquals(out, { 10 })
end

function TestFlowOps:test_uniq_and_uniq_by()
  local fl = F.from_enumerable({ 3, 1, 3, 2, 1, 3, 4 }, { stages = 1 })
  lu.assertEquals(fl:uniq():to_list(), { 3, 1, 2, 4 })
  lu.assertEquals(fl:uniq_by(function(x) return x % 2 end):to_list(), { 3, 2 })
  -- tables are compared by content
  local t = F.from_enumerable({ { 1, 2 }, { 1, 2 }, { 2, 1 }, { a = 1 }, { a = 1 } }, { stages = 1 })
  lu.assertEquals(t:uniq():to_list(), { { 1, 2 }, { 2, 1 }, { a = 1 } })
  -- per partition: Flow's example with two partitions by parity
  local out = F.from_enumerable(sluice.range(1, 100), { stages = 2 })
    :partition({ stages = 2, hash = function(e) return e % 2 + 1 end })
    :uniq_by(function(x) return x % 2 end)
    :to_list()
  lu.assertEquals(sorted(out), { 1, 2 })
end

function TestFlowOps:test_uniq_emits_first_seen_events_at_once()
  -- an endless input: the unique events must come out before the end
  local got = {}
  for v in F.from_enumerable(sluice.range(0, math.huge), { stages = 1, max_demand = 5 })
      :map(function(x) return x % 4 end):uniq():stream() do
    got[#got + 1] = v
    if #got == 4 then break end
  end
  lu.assertEquals(got, { 0, 1, 2, 3 })
end

function TestFlowOps:test_order_kept_with_one_stage_everywhere()
  local out = F.from_enumerable(sluice.range(1, 200), { stages = 1, max_demand = 3 })
    :map(function(x) return x * 2 end)
    :partition({ stages = 1, max_demand = 7 })
    :filter(function(x) return x % 3 ~= 0 end)
    :shuffle({ stages = 1 })
    :map(function(x) return x + 1 end)
    :to_list()
  local want = {}
  for x = 1, 200 do
    if (2 * x) % 3 ~= 0 then want[#want + 1] = 2 * x + 1 end
  end
  lu.assertEquals(out, want)
end

function TestFlowOps:test_on_init_gets_partition()
  local rec = sluice.start(Recorder)
  F.from_enumerable({ 1, 2, 3 }, { stages = 3, on_init = function(p) rec:cast({ "first", p }) end })
    :partition({ stages = 2, on_init = function(p) rec:cast({ "second", p }) end })
    :run()
  lu.assertEquals(sorted(rec:call("log"), by_inspect), {
    { "first", { index = 1, total = 3 } }, { "first", { index = 2, total = 3 } },
    { "first", { index = 3, total = 3 } },
    { "second", { index = 1, total = 2 } }, { "second", { index = 2, total = 2 } },
  })
  rec:stop()
end

TestFlowPartition = {}

-- What each partition of a layer received: on_trigger reports
-- {index, total, sorted values}; sorted by index.
local function per_partition(fl)
  local out = fl:reduce(function() return {} end, function(e, acc)
      acc[#acc + 1] = e
      return acc
    end)
    :on_trigger(function(acc, p, w)
      table.sort(acc, function(a, b) return sluice.inspect(a) < sluice.inspect(b) end)
      return { { p.index, p.total, acc, w } }
    end)
    :to_list()
  return sorted(out, function(a, b) return a[1] < b[1] end)
end

local DONE = { type = "global", id = "global", trigger = "done" }

function TestFlowPartition:test_hash_places_events()
  local out = per_partition(F.from_enumerable(sluice.range(1, 12), { stages = 2 })
    :partition({ stages = 3, hash = function(e) return e % 3 + 1 end }))
  lu.assertEquals(out, {
    { 1, 3, { 12, 3, 6, 9 }, DONE },
    { 2, 3, { 1, 10, 4, 7 }, DONE },
    { 3, 3, { 11, 2, 5, 8 }, DONE },
  })
end

function TestFlowPartition:test_hash_nil_drops_even_with_one_stage()
  local out = F.from_enumerable(sluice.range(1, 12), { stages = 2 })
    :partition({ stages = 1, hash = function(e) if e % 3 ~= 0 then return 1 end end })
    :to_list()
  lu.assertEquals(sorted(out), { 1, 2, 4, 5, 7, 8, 10, 11 })
  out = per_partition(F.from_enumerable(sluice.range(1, 12), { stages = 1 })
    :partition({ stages = 2, hash = function(e) if e <= 4 then return e % 2 + 1 end end }))
  lu.assertEquals(out, { { 1, 2, { 2, 4 }, DONE }, { 2, 2, { 1, 3 }, DONE } })
end

-- The partition the engine's hash gives key k among n.
local function home(k, n) return sluice._hash(k, n) end

local WORDS = { "ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay" }

local function expected_by_key(events, key, n)
  local want = {}
  for i = 1, n do want[i] = { i, n, {}, DONE } end
  for _, e in ipairs(events) do
    local p = home(key(e), n)
    table.insert(want[p][3], e)
  end
  for i = 1, n do table.sort(want[i][3], by_inspect) end
  return want
end

function TestFlowPartition:test_key_index()
  local events = {}
  for i, w in ipairs(WORDS) do events[#events + 1] = { w, i }; events[#events + 1] = { w, -i } end
  local out = per_partition(F.from_enumerable(events, { stages = 2 }):partition({ stages = 3, key = { index = 1 } }))
  lu.assertEquals(out, expected_by_key(events, function(e) return e[1] end, 3))
end

function TestFlowPartition:test_key_field_and_function()
  local events = {}
  for i, w in ipairs(WORDS) do events[#events + 1] = { name = w, n = i } end
  local want = expected_by_key(events, function(e) return e.name end, 4)
  lu.assertEquals(per_partition(F.from_enumerable(events, { stages = 2 })
    :partition({ stages = 4, key = { field = "name" } })), want)
  lu.assertEquals(per_partition(F.from_enumerable(events, { stages = 1 })
    :partition({ stages = 4, key = function(e) return e.name end })), want)
end

function TestFlowPartition:test_default_hash_keeps_equal_events_together()
  local events = {}
  for r = 1, 3 do for _, w in ipairs(WORDS) do events[#events + 1] = w .. r % 2 end end
  local out = per_partition(F.from_enumerable(events, { stages = 2 }):partition({ stages = 3 }))
  local where = {}
  local total = 0
  for _, part in ipairs(out) do
    for _, w in ipairs(part[3]) do
      lu.assertTrue(where[w] == nil or where[w] == part[1], w .. " in two partitions")
      where[w] = part[1]
      total = total + 1
    end
  end
  lu.assertEquals(total, #events)
end

function TestFlowPartition:test_partition_max_demand()
  -- a layer's max_demand is what it asks of the stages before it ...
  local p = sluice.start(Endless)
  for _ in F.from_stages({ p }):partition({ stages = 1, max_demand = 7 }):stream() do break end
  lu.assertEquals(p:call("demands")[1], 7)
  p:stop()
  -- ... but a source's own max_demand wins for subscriptions to it
  p = sluice.start(Endless)
  for _ in F.from_stages({ p }, { max_demand = 4 }):partition({ stages = 1, max_demand = 7 }):stream() do break end
  lu.assertEquals(p:call("demands")[1], 4)
  p:stop()
end

function TestFlowPartition:test_merge_and_shuffle()
  local a = F.from_enumerable({ 1, 2, 3 }, { stages = 1 }):map(function(x) return x * 10 end)
  local b = F.from_enumerable({ 4, 5 }, { stages = 2 })
  local c = F.from_enumerables({ { 6 }, { 7, 8 } }, { stages = 1 }):filter(function(x) return x ~= 7 end)
  lu.assertEquals(sorted(F.merge({ a, b, c }, { stages = 3 }):map(function(x) return x + 1 end):to_list()),
    { 5, 6, 7, 9, 11, 21, 31 })
  lu.assertEquals(sorted(F.shuffle({ a, b }, { stages = 2 }):to_list()), { 4, 5, 10, 20, 30 })
  lu.assertEquals(sorted(a:shuffle({ stages = 2 }):map(function(x) return x + 1 end):to_list()), { 11, 21, 31 })
  lu.assertEquals(sorted(b:merge({ stages = 1 }):to_list()), { 4, 5 })
  -- flow.partition over several flows
  lu.assertEquals(per_partition(F.partition({ a, b }, { stages = 2, hash = function(e) return e % 2 + 1 end })),
    { { 1, 2, { 10, 20, 30, 4 }, DONE }, { 2, 2, { 5 }, DONE } })
end

function TestFlowPartition:test_results_do_not_depend_on_stage_counts()
  local want = 0
  for x = 1, 5000 do if x % 7 ~= 0 then want = want + x * 3 end end
  for _, s in ipairs({ 1, 2, 3, 8 }) do
    local out = F.from_enumerable(sluice.range(1, 5000), { stages = s, max_demand = 50 })
      :reject(function(x) return x % 7 == 0 end)
      :map(function(x) return x * 3 end)
      :partition({ stages = s })
      :reduce(function() return 0 end, function(x, acc) return acc + x end)
      :emit("state")
      :to_list()
    local total = 0
    for _, v in ipairs(out) do total = total + v end
    lu.assertEquals(#out, s)
    lu.assertEquals(total, want)
  end
end

TestFlowReuse = {}

function TestFlowReuse:test_a_flow_runs_again_and_derived_flows_are_independent()
  local base = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):map(function(x) return x * 2 end)
  local evens = base:filter(function(x) return x % 4 == 0 end)
  local odds = base:reject(function(x) return x % 4 == 0 end)
  lu.assertEquals(sorted(base:to_list()), { 2, 4, 6, 8, 10, 12, 14, 16, 18, 20 })
  lu.assertEquals(sorted(base:to_list()), { 2, 4, 6, 8, 10, 12, 14, 16, 18, 20 })
  lu.assertEquals(sorted(evens:to_list()), { 4, 8, 12, 16, 20 })
  lu.assertEquals(sorted(odds:to_list()), { 2, 6, 10, 14, 18 })
  -- the same flow on both sides of a merge runs twice
  lu.assertEquals(sorted(F.merge({ evens, evens }, { stages = 1 }):to_list()), { 4, 4, 8, 8, 12, 12, 16, 16, 20, 20 })
end

function TestFlowReuse:test_buffer_options()
  local out = F.from_enumerable(sluice.range(1, 300), { stages = 2, buffer_size = 50, buffer_keep = "first",
      max_demand = 20 })
    :map(function(x) return x + 1 end)
    :partition({ stages = 2, buffer_size = 1000, buffer_keep = "last" })
    :to_list()
  lu.assertEquals(sorted(out), range_list(2, 301))
end

os.exit(lu.LuaUnit.run())
