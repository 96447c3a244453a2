-- Flow: reduce(acc_fun, fun, {merge = m}) after a partition, computed by
-- combining (lua/README.md §8.4): the layer before the partition reduces
-- per partition and only the partial accumulators cross. Every test checks
-- that the result, partition by partition, equals the plain reduce, and
-- counts merges to see which way the flow ran.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect = H.sorted, H.by_inspect
local F = sluice.flow

-- An accumulator that knows how many partials were merged into it:
-- {sum, merges, events}.
local function new_acc() return { sum = 0, merges = 0, events = 0 } end
local function add(e, acc)
  acc.sum, acc.events = acc.sum + e, acc.events + 1
  return acc
end
local function merge(part, acc)
  acc.sum, acc.events = acc.sum + part.sum, acc.events + part.events
  acc.merges = acc.merges + 1 + part.merges
  return acc
end
local MERGE = { merge = merge }

-- {partition index, state} per partition, in partition order.
local function by_partition(fl)
  local out = fl:on_trigger(function(acc, p) return { { p.index, acc } } end):to_list()
  return sorted(out, function(a, b) return a[1] < b[1] end)
end

-- The keys each partition saw, per partition: {index, sorted keys}.
local function keys_by_partition(fl, opts)
  local function keep(e, acc)
    acc[#acc + 1] = sluice.inspect(e)
    return acc
  end
  local function cat(part, acc)
    for _, k in ipairs(part) do acc[#acc + 1] = k end
    return acc
  end
  local out = fl:reduce(function() return {} end, keep, opts)
    :on_trigger(function(acc, p) return { { p.index, sorted(acc) } } end):to_list()
  return sorted(out, function(a, b) return a[1] < b[1] end)
end

-- 1..n as two flows of one stage each (1..n/2 and the rest): two stages
-- before the partition, each with a known half, whichever worker runs them.
local function halves(n)
  local function half(a, b) return F.from_enumerable(sluice.range(a, b), { stages = 1 }):map(function(x) return x end) end
  return { half(1, n // 2), half(n // 2 + 1, n) }
end

-- A count per word and the merge of two counts.
local function count(w, acc)
  acc[w] = (acc[w] or 0) + 1
  return acc
end
local function sum(part, acc)
  for w, n in pairs(part) do acc[w] = (acc[w] or 0) + n end
  return acc
end

TestFlowCombine = {}

function TestFlowCombine:test_partials_are_merged_per_partition()
  -- two stages before the partition, each holding odd and even numbers:
  -- each partition merges one partial from each of them
  local parity = { stages = 2, hash = function(e) return e % 2 + 1 end }
  local fl = F.partition(halves(100), parity)
  lu.assertEquals(by_partition(fl:reduce(new_acc, add, MERGE)), {
    { 1, { sum = 2550, events = 50, merges = 2 } },
    { 2, { sum = 2500, events = 50, merges = 2 } },
  })
  -- without merge every event crosses and nothing is merged
  lu.assertEquals(by_partition(fl:reduce(new_acc, add)), {
    { 1, { sum = 2550, events = 50, merges = 0 } },
    { 2, { sum = 2500, events = 50, merges = 0 } },
  })
end

function TestFlowCombine:test_every_source_kind_combines()
  local function flows()
    local list = {
      F.from_enumerable({ 1, 2, 3, 4, 5, 6 }, { stages = 2 }),                 -- a producer, then a layer
      F.from_enumerable(sluice.range(1, 6), { stages = 3 }):map(function(x) return x end), -- split range
      F.from_enumerable((function()                                            -- iterator on main
        local i = 0
        return function() i = i + 1; if i <= 6 then return i end end
      end)()),
      F.from_stages({ sluice.from_enumerable({ 1, 2, 3, 4, 5, 6 }, { demand = "accumulate" }) }),
    }
    return list
  end
  for i, fl in ipairs(flows()) do
    local out = by_partition(fl:partition({ stages = 1 }):reduce(new_acc, add, MERGE))
    lu.assertEquals(#out, 1, "source " .. i)
    lu.assertEquals(out[1][2].sum, 21, "source " .. i)
    lu.assertEquals(out[1][2].events, 6, "source " .. i)
    lu.assertTrue(out[1][2].merges >= 1, "source " .. i)
  end
  -- a join's layer combines too: its unmatched rows at the end included
  local left = F.from_enumerable({ { 1, 1 }, { 2, 2 }, { 3, 3 } })
  local right = F.from_enumerable({ { 1, 10 }, { 3, 30 }, { 4, 40 } })
  local key = function(e) return e[1] end
  local joined = F.bounded_join("full_outer", left, right, key, key, function(l, r)
    return (l and l[2] or 0) + (r and r[2] or 0)
  end, { stages = 2 })
  lu.assertEquals(by_partition(joined:partition({ stages = 1 }):reduce(new_acc, add, MERGE)),
    { { 1, { sum = 11 + 2 + 33 + 40, events = 4, merges = 2 } } })
  -- several flows into one partition (flow.partition)
  local two = F.partition({ F.from_enumerable({ 1, 2, 3 }), F.from_enumerable({ 10, 20 }) }, { stages = 2,
    hash = function(e) return e < 10 and 1 or 2 end })
  lu.assertEquals(by_partition(two:reduce(new_acc, add, MERGE)), {
    { 1, { sum = 6, events = 3, merges = 1 } },
    { 2, { sum = 30, events = 2, merges = 1 } },
  })
end

function TestFlowCombine:test_partitions_get_the_same_keys_as_without_merge()
  local source = F.from_enumerable(sluice.range(1, 60), { stages = 3 })
  local events = source:map(function(x) return { x % 7, "k" .. x % 5, id = x } end)
  local cases = {
    { "whole event", events:partition({ stages = 3 }) },
    { "index", events:partition({ stages = 3, key = { index = 2 } }) },
    { "field", events:partition({ stages = 4, key = { field = "id" } }) },
    { "key function", events:partition({ stages = 3, key = function(e) return e[1] end }) },
    { "strings", source:map(function(x) return "w" .. x % 11 end):partition({ stages = 2 }) },
    { "floats", source:map(function(x) return x / 4 end):partition({ stages = 3 }) },
  }
  for _, c in ipairs(cases) do
    local name, fl = c[1], c[2]
    local want = keys_by_partition(fl)
    local got = keys_by_partition(fl, { merge = function(part, acc)
      for _, k in ipairs(part) do acc[#acc + 1] = k end
      return acc
    end })
    lu.assertEquals(got, want, name)
    local total = 0
    for _, p in ipairs(got) do total = total + #p[2] end
    lu.assertEquals(total, 60, name)
  end
end

function TestFlowCombine:test_a_hash_may_drop_or_replace_events()
  local fl = F.partition(halves(10), { stages = 2, hash = function(e)
    if e % 5 == 0 then return nil end          -- dropped
    if e == 1 then return 1.0, 1000 end        -- 1.0 is partition 1; the event becomes 1000
    return e % 2 + 1
  end })
  lu.assertEquals(by_partition(fl:reduce(new_acc, add, MERGE)), {
    { 1, { sum = 1000 + 2 + 4 + 6 + 8, events = 5, merges = 2 } },
    { 2, { sum = 3 + 7 + 9, events = 3, merges = 2 } },
  })
  lu.assertEquals(by_partition(fl:reduce(new_acc, add)), {
    { 1, { sum = 1020, events = 5, merges = 0 } },
    { 2, { sum = 19, events = 3, merges = 0 } },
  })
end

function TestFlowCombine:test_operations_after_the_partition_run_before_the_reducer()
  local fl = F.partition(halves(10), { stages = 2, hash = function(e) return e % 2 + 1 end })
    :filter(function(x) return x > 2 end)
    :flat_map(function(x) return { x, 100 } end)
    :map(function(x) return x * 2 end)
  lu.assertEquals(by_partition(fl:reduce(new_acc, add, MERGE)), {
    { 1, { sum = 2 * (4 + 6 + 8 + 10) + 4 * 200, events = 8, merges = 2 } },
    { 2, { sum = 2 * (3 + 5 + 7 + 9) + 4 * 200, events = 8, merges = 2 } },
  })
end

function TestFlowCombine:test_word_count_equals_a_plain_count()
  local text = "examples/data/text.txt"
  local want = H.plain_word_count(text)
  lu.assertTrue(#want > 100)
  for _, stages in ipairs({ 1, 2, 4 }) do
    local got = F.from_enumerable(sluice.lines(text), { stages = stages })
      :flat_map(function(line) return line:lower():gmatch("%a+") end)
      :partition({ stages = stages })
      :reduce(function() return {} end, count, { merge = sum })
      :to_list()
    lu.assertEquals(sorted(got, H.by_word), want, "stages = " .. stages)
  end
end

-- keyed: one accumulator per stage before the partition, cut by key at
-- the end; {key, ids...} per partition must match the plain reduce.
function TestFlowCombine:test_keyed_accumulators_are_cut_by_key()
  local source = F.from_enumerable(sluice.range(1, 60), { stages = 3 })
  local events = source:map(function(x) return { x % 7, "k" .. x % 5, id = x } end)
  local function by_key(key_of)
    local function add_id(e, acc)
      local k = key_of(e)
      local ids = acc[k] or {}
      ids[#ids + 1] = e.id or e
      acc[k] = ids
      return acc
    end
    local function cat(part, acc)
      for k, ids in pairs(part) do
        local mine = acc[k] or {}
        for _, id in ipairs(ids) do mine[#mine + 1] = id end
        acc[k] = mine
      end
      return acc
    end
    return add_id, cat
  end
  -- {partition index, sorted "key:ids" strings}
  local function layout(fl, key_of, opts)
    local add_id, cat = by_key(key_of)
    if opts then opts.merge = cat end
    local out = fl:reduce(function() return {} end, add_id, opts)
      :on_trigger(function(acc, p)
        local rows = {}
        for k, ids in pairs(acc) do
          table.sort(ids)
          rows[#rows + 1] = tostring(k) .. ":" .. table.concat(ids, ",")
        end
        table.sort(rows)
        return { { p.index, rows } }
      end):to_list()
    return sorted(out, function(a, b) return a[1] < b[1] end)
  end
  local cases = {
    { "index", events:partition({ stages = 3, key = { index = 2 } }), function(e) return e[2] end },
    { "field", events:partition({ stages = 4, key = { field = "id" } }), function(e) return e.id end },
    { "key function", events:partition({ stages = 3, key = function(e) return e[1] end }),
      function(e) return e[1] end },
    { "whole event", source:map(function(x) return "w" .. x % 11 end):partition({ stages = 2 }),
      function(e) return e end },
    { "one partition", events:partition({ stages = 1, key = { index = 1 } }), function(e) return e[1] end },
  }
  for _, c in ipairs(cases) do
    local name, fl, key_of = c[1], c[2], c[3]
    local want = layout(fl, key_of)
    lu.assertEquals(layout(fl, key_of, { keyed = true }), want, name)
    lu.assertEquals(layout(fl, key_of, {}), want, name .. " (merge only)")
  end
end

-- A keyed accumulator of scalars is cut and encoded in one pass: each
-- partition gets the keys the engine's hash sends it, as without merge
-- (70 partitions: numbers past 63 take more than one byte).
function TestFlowCombine:test_keyed_scalars_land_where_their_keys_hash()
  local fl = F.from_enumerable(sluice.range(1, 3000), { stages = 3 })
    :map(function(x) return "w" .. x % 500 end):partition({ stages = 70 })
  local function rows(opts)
    local out = fl:reduce(function() return {} end, count, opts)
      :on_trigger(function(acc, p)
        local r = {}
        for k, n in pairs(acc) do r[#r + 1] = k .. "=" .. n end
        table.sort(r)
        return { { p.index, table.concat(r, " ") } }
      end):to_list()
    return sorted(out, function(a, b) return a[1] < b[1] end)
  end
  local plain = rows()
  lu.assertEquals(#plain, 70)
  lu.assertEquals(rows({ merge = sum, keyed = true }), plain)
  local keys = 0
  for _, r in ipairs(plain) do
    for k, n in r[2]:gmatch("(w%d+)=(%d+)") do
      lu.assertEquals(sluice._hash(k, 70), r[1])
      lu.assertEquals(n, "6")
      keys = keys + 1
    end
  end
  lu.assertEquals(keys, 500)
end

function TestFlowCombine:test_keyed_cuts_what_the_accumulator_holds()
  -- an accumulator that breaks the keyed promise shows where it was cut:
  -- its "total" entry lands in one partition only, the one "total" hashes to
  local letters = {}
  for i = 1, 26 do letters[i] = string.char(96 + i) end
  local fl = F.from_enumerable(letters, { stages = 2 }):partition({ stages = 2 })
  local function mark(e, acc)
    acc[e] = true
    acc.total = (acc.total or 0) + 1
    return acc
  end
  local function join(part, acc)
    for k, v in pairs(part) do
      if k == "total" then acc.total = (acc.total or 0) + v else acc[k] = v end
    end
    return acc
  end
  local function totals(opts, flow)
    local out = (flow or fl):reduce(function() return {} end, mark, opts)
      :on_trigger(function(acc, p) return { { p.index, acc.total or 0 } } end):to_list()
    return sorted(out, function(a, b) return a[1] < b[1] end)
  end
  local plain = totals()
  lu.assertEquals(plain[1][2] + plain[2][2], 26)
  lu.assertTrue(plain[1][2] > 0 and plain[2][2] > 0)
  lu.assertEquals(totals({ merge = join }), plain)
  local keyed = totals({ merge = join, keyed = true })
  local home = sluice._hash("total", 2)
  lu.assertEquals(keyed[home][2], 26)
  lu.assertEquals(keyed[3 - home][2], 0)
  -- with an operation between the partition and the reduce it is not cut
  lu.assertEquals(totals({ merge = join, keyed = true }, fl:map(function(e) return e end)), plain)
end

function TestFlowCombine:test_keyed_word_count_and_where_keyed_does_not_apply()
  local text = "examples/data/text.txt"
  local want = H.plain_word_count(text)
  local words = F.from_enumerable(sluice.lines(text), { stages = 2 })
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
  -- (70: partition numbers past 63 take more than one byte where the
  -- accumulator is cut and encoded in one pass)
  for _, stages in ipairs({ 1, 2, 4, 70 }) do
    local got = words:partition({ stages = stages })
      :reduce(function() return {} end, count, { merge = sum, keyed = true }):to_list()
    lu.assertEquals(sorted(got, H.by_word), want, "stages = " .. stages)
  end
  -- operations after the partition, or a hash function: combined per
  -- event instead, with the same result
  local upper = words:partition({ stages = 2 }):map(string.upper)
    :reduce(function() return {} end, count, { merge = sum, keyed = true }):to_list()
  lu.assertEquals(#upper, #want)
  local hashed = words:partition({ stages = 2, hash = function(w) return #w % 2 + 1 end })
    :reduce(function() return {} end, count, { merge = sum, keyed = true }):to_list()
  lu.assertEquals(sorted(hashed, H.by_word), want)
  -- Lua tables hold 2.0 and 2 as one key: keyed counts them together
  local nums = F.from_enumerable({ 2, 2.0, 3, 4.5 }, { stages = 2 }):partition({ stages = 2 })
    :reduce(function() return {} end, count, { merge = sum, keyed = true }):to_list()
  lu.assertEquals(sorted(nums, by_inspect), { { 2, 2 }, { 3, 1 }, { 4.5, 1 } })
end

function TestFlowCombine:test_keyed_errors()
  local fl = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):partition({ stages = 2 })
  local ok, e = pcall(fl.to_list, fl:reduce(function() return 0 end, function(x, a) return a + x end,
    { merge = function(p, a) return a + p end, keyed = true }))
  lu.assertFalse(ok)
  lu.assertNotNil(tostring(e):match("^sluice%.flow: flow %d+ layer 1 stage %d+ %(reduce%): "), tostring(e))
  lu.assertStrContains(tostring(e), "a keyed accumulator must be a table, got number")
  local function err_of(opts)
    local ok2, e2 = pcall(function() local r = fl:reduce(new_acc, add, opts); return r end)
    lu.assertFalse(ok2)
    return e2
  end
  lu.assertStrContains(err_of({ merge = merge, keyed = 1 }), "sluice.flow.reduce: keyed must be a boolean, got number")
  lu.assertStrContains(err_of({ keyed = true }), "sluice.flow.reduce: keyed needs merge")
end

function TestFlowCombine:test_triggers_emit_modes_and_departition_see_the_merged_state()
  local fl = F.from_enumerable(sluice.range(1, 10), { stages = 2 })
    :partition({ stages = 2, hash = function(e) return e % 2 + 1 end })
    :reduce(function() return {} end, function(e, acc)
      acc[#acc + 1] = e
      return acc
    end, { merge = function(part, acc)
      for _, e in ipairs(part) do acc[#acc + 1] = e end
      return acc
    end })
  -- "events": the array's items
  lu.assertEquals(sorted(fl:to_list()), { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 })
  -- "state": one array per partition
  local states = fl:emit("state"):to_list()
  for _, s in ipairs(states) do sorted(s) end
  lu.assertEquals(sorted(states, by_inspect), { { 1, 3, 5, 7, 9 }, { 2, 4, 6, 8, 10 } })
  -- departition merges the partitions' states
  lu.assertEquals(fl:departition(function() return 0 end, function(state, acc) return acc + #state end,
    function(acc) return acc end):to_list(), { 10 })
end

function TestFlowCombine:test_not_combined_where_the_reduce_cannot_be_split()
  local parity = { stages = 2, hash = function(e) return e % 2 + 1 end }
  local base = F.from_enumerable(sluice.range(1, 10), { stages = 2 })
  local function merges(fl)
    local n = 0
    for _, p in ipairs(by_partition(fl)) do n = n + p[2].merges end
    return n
  end
  -- uniq: "seen" must cover the whole partition
  local dup = F.from_enumerable({ 1, 1, 2, 2, 3, 3 }, { stages = 2 }):partition(parity)
  local out = by_partition(dup:uniq():reduce(new_acc, add, MERGE))
  lu.assertEquals(out, { { 1, { sum = 2, events = 1, merges = 0 } }, { 2, { sum = 4, events = 2, merges = 0 } } })
  -- on_init and map_batch run in the reducing stages
  local init = base:partition({ stages = 2, hash = parity.hash, on_init = function() end })
  lu.assertEquals(merges(init:reduce(new_acc, add, MERGE)), 0)
  lu.assertEquals(merges(base:partition(parity):map_batch(function(b) return b end):reduce(new_acc, add, MERGE)), 0)
  -- an upstream layer that reduces on its own
  local reduced = base:reduce(function() return 0 end, function(e, acc) return acc + e end):partition(parity)
  local states = by_partition(reduced:reduce(new_acc, add, MERGE))
  lu.assertEquals(states[1][2].merges + states[2][2].merges, 0)
  lu.assertEquals(states[1][2].sum + states[2][2].sum, 55)
  -- a shuffle is not a partition
  lu.assertEquals(merges(base:shuffle({ stages = 2 }):reduce(new_acc, add, MERGE)), 0)
end

function TestFlowCombine:test_reduce_options_are_checked()
  local fl = F.from_enumerable({ 1 }):partition()
  local function err_of(...)
    local args = table.pack(...)
    local ok, e = pcall(function() local r = fl:reduce(table.unpack(args, 1, args.n)); return r end)
    lu.assertFalse(ok)
    return e
  end
  lu.assertStrContains(err_of(new_acc, add, 5), "sluice.flow.reduce: options must be a table, got number")
  lu.assertStrContains(err_of(new_acc, add, { merg = merge }), 'sluice.flow.reduce: unknown option "merg"')
  lu.assertStrContains(err_of(new_acc, add, { merge = 1 }), "sluice.flow.reduce: merge must be a function, got number")
  -- the error points at the caller
  lu.assertStrContains(err_of(new_acc, add, { merge = 1 }), "test_flow_combine.lua:")
end

function TestFlowCombine:test_errors_name_the_stage_and_operation()
  local function flow_err(fl)
    local ok, e = pcall(fl.to_list, fl)
    lu.assertFalse(ok)
    return tostring(e)
  end
  local base = F.from_enumerable(sluice.range(1, 20), { stages = 2 })
  -- the reducer runs in the layer before the partition
  local e = flow_err(base:partition({ stages = 2 }):reduce(new_acc, function(x, acc)
    if x == 7 then error("bad 7") end
    return add(x, acc)
  end, MERGE))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 1 stage %d+ %(reduce%): "), e)
  lu.assertStrContains(e, "bad 7")
  -- merge runs in the reducing layer
  e = flow_err(base:partition({ stages = 2 }):reduce(new_acc, add, { merge = function() error("no merge") end }))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 2 stage %d+ %(reduce merge%): "), e)
  lu.assertStrContains(e, "no merge")
  -- the partition hash, checked where it runs
  e = flow_err(base:partition({ stages = 2, hash = function() return 3 end }):reduce(new_acc, add, MERGE))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 1 stage %d+ %(partition hash%): "), e)
  lu.assertStrContains(e, "unknown partition 3 computed for an event")
  e = flow_err(base:partition({ stages = 2, hash = function() return "1" end }):reduce(new_acc, add, MERGE))
  lu.assertStrContains(e, 'unknown partition "1" computed for an event')
  e = flow_err(base:partition({ stages = 2, key = function() error("no key") end }):reduce(new_acc, add, MERGE))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 1 stage %d+ %(partition key%): "), e)
  -- the flow system is fine afterwards
  lu.assertEquals(by_partition(F.partition(halves(20), { stages = 1 }):reduce(new_acc, add, MERGE)),
    { { 1, { sum = 210, events = 20, merges = 2 } } })
end

os.exit(lu.LuaUnit.run())
