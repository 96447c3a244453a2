-- Flow: the combiners reduce_by_key, frequencies and frequencies_by
-- (lua/README.md §8.4), and explain (§8.6). Results are checked against a
-- plain Lua count of the same data, with and without a partition, with
-- 1 and 3 stages and with windows; explain's text is checked exactly.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect = H.sorted, H.by_inspect
local F, W = sluice.flow, sluice.window

local TEXT = "examples/data/text.txt"
local function add(a, b) return a + b end
local function words(line) return line:lower():gmatch("%a+") end

local pairs_of, per_partition = H.pairs_of, H.per_partition

local summed = H.summed

-- 1..n as {x % m, x} pairs, and their sums per key in plain Lua.
local function mod_pairs(n, m) return sluice.range(1, n), function(x) return { x % m, x } end end
local function plain_mod_sums(n, m)
  local t = {}
  for x = 1, n do t[x % m] = (t[x % m] or 0) + x end
  return pairs_of(t)
end


TestFlowCombiners = {}

-- reduce_by_key ---------------------------------------------------------------------

function TestFlowCombiners:test_reduce_by_key_after_a_keyed_partition()
  local range, pair = mod_pairs(20000, 97)
  for _, st in ipairs({ 1, 3 }) do
    local got = F.from_enumerable(range, { stages = st }):map(pair)
      :partition({ stages = st, key = { index = 1 } }):reduce_by_key(add):to_list()
    -- each key once: the partition is by the pair's key
    lu.assertEquals(sorted(got, by_inspect), plain_mod_sums(20000, 97), "stages " .. st)
  end
end

function TestFlowCombiners:test_reduce_by_key_keyed_ends_each_partition_as_without_combining()
  -- the keyed cut sends each key where the dispatcher sends its pairs: the
  -- same partitions as a plain reduce of every pair (no merge, no combining)
  local range, pair = mod_pairs(5000, 31)
  local part = F.from_enumerable(range, { stages = 2 }):map(pair):partition({ stages = 3, key = { index = 1 } })
  local plain = part:reduce(function() return {} end, function(e, acc)
    acc[e[1]] = (acc[e[1]] or 0) + e[2]
    return acc
  end)
  lu.assertEquals(per_partition(part:reduce_by_key(add)), per_partition(plain))
end

function TestFlowCombiners:test_reduce_by_key_after_a_whole_event_partition()
  -- partition() hashes the whole {key, value} pair: a key's values may
  -- land in several partitions, each emitting its own sum
  local range, pair = mod_pairs(3000, 7)
  for _, st in ipairs({ 1, 3 }) do
    local got = F.from_enumerable(range, { stages = 2 }):map(pair):partition({ stages = st })
      :reduce_by_key(add):to_list()
    lu.assertEquals(summed(got), plain_mod_sums(3000, 7), "stages " .. st)
    if st == 1 then lu.assertEquals(#got, 7) else lu.assertTrue(#got > 7) end
  end
end

function TestFlowCombiners:test_reduce_by_key_without_a_partition()
  -- each stage of the first layer emits its own sums
  local range, pair = mod_pairs(3000, 7)
  local one = F.from_enumerable(range, { stages = 1 }):map(pair):reduce_by_key(add):to_list()
  lu.assertEquals(sorted(one, by_inspect), plain_mod_sums(3000, 7))
  local three = F.from_enumerable(range, { stages = 3 }):map(pair):reduce_by_key(add):to_list()
  lu.assertEquals(summed(three), plain_mod_sums(3000, 7))
end

function TestFlowCombiners:test_reduce_by_key_first_value_kept_and_order_of_combining()
  -- one stage all along: values combine in arrival order, the first as is
  local got = F.from_enumerable({ { "a", "x" }, { "b", "y" }, { "a", "z" }, { "a", "w" } }, { stages = 1 })
    :partition({ stages = 1, key = { index = 1 } })
    :reduce_by_key(function(acc, v) return acc .. v end):to_list()
  lu.assertEquals(sorted(got, by_inspect), { { "a", "xzw" }, { "b", "y" } })
end

function TestFlowCombiners:test_reduce_by_key_integer_keys_emit_pairs()
  -- keys 1..n make a sequence, which reduce would emit as its values
  local got = F.from_enumerable({ { 1, 10 }, { 2, 20 }, { 1, 5 } }, { stages = 1 }):reduce_by_key(add):to_list()
  lu.assertEquals(sorted(got, by_inspect), { { 1, 15 }, { 2, 20 } })
end

function TestFlowCombiners:test_reduce_by_key_state_and_on_trigger()
  local base = F.from_enumerable({ { "a", 1 }, { "b", 2 }, { "a", 3 } }, { stages = 1 })
    :partition({ stages = 1, key = { index = 1 } }):reduce_by_key(add)
  lu.assertEquals(base:emit("state"):to_list(), { { a = 4, b = 2 } })
  lu.assertEquals(base:on_trigger(function(acc) return { acc.a * 100 + acc.b } end):to_list(), { 402 })
end

function TestFlowCombiners:test_reduce_by_key_word_count_on_a_text()
  for _, st in ipairs({ 1, 3 }) do
    local got = F.from_enumerable(sluice.lines(TEXT), { stages = st }):flat_map(words)
      :map(function(w) return { w, 1 } end)
      :partition({ stages = st, key = { index = 1 } }):reduce_by_key(add):to_list()
    lu.assertEquals(sorted(got, H.by_word), H.plain_word_count(TEXT), "stages " .. st)
  end
end

-- frequencies, frequencies_by --------------------------------------------------------

function TestFlowCombiners:test_frequencies_of_a_text()
  local plain = H.plain_word_count(TEXT)
  for _, st in ipairs({ 1, 3 }) do
    local got = F.from_enumerable(sluice.lines(TEXT), { stages = st }):flat_map(words)
      :partition({ stages = st }):frequencies():to_list()
    lu.assertEquals(sorted(got, H.by_word), plain, "stages " .. st)
  end
  -- without a partition each stage counts its own words
  local got = F.from_enumerable(sluice.lines(TEXT), { stages = 3 }):flat_map(words):frequencies():to_list()
  lu.assertEquals(summed(got), plain)
  -- the words cut in C (sluice.words): the same counts
  for _, st in ipairs({ 1, 3 }) do
    local w = F.from_enumerable(sluice.words(TEXT), { stages = st }):partition({ stages = st }):frequencies():to_list()
    lu.assertEquals(sorted(w, H.by_word), plain, "sluice.words, stages " .. st)
  end
end

function TestFlowCombiners:test_explain_frequencies_of_words()
  local fl = F.from_enumerable(sluice.words(TEXT), { stages = 2 }):partition({ stages = 3 }):frequencies()
  lu.assertEquals(fl:explain(), table.concat({
    'layer 1: 2 stages',
    '  input: sluice.words("examples/data/text.txt"), read by the stages themselves (split source)',
    '  combining for layer 2: runs its operations and reducer here (keyed)',
    'layer 2: 3 stages',
    '  input: layer 1 through partition by the whole event: only partial accumulators cross',
    '  reducer: frequencies',
    '  combining: keyed: each stage of layer 1 reduces into one accumulator and sends it cut by key',
    '  emit: events',
  }, "\n"))
end

function TestFlowCombiners:test_frequencies_of_numbers_and_mixed_events()
  local got = F.from_enumerable({ 1, 2, 2, 3, "a", true, 2, "a" }, { stages = 1 }):partition({ stages = 2 })
    :frequencies():to_list()
  lu.assertEquals(sorted(got, by_inspect), { { "a", 2 }, { 1, 1 }, { 2, 3 }, { 3, 1 }, { true, 1 } })
  -- a sequence of keys is still emitted as pairs
  lu.assertEquals(F.from_enumerable({ 1, 2, 1 }, { stages = 1 }):frequencies():to_list(), { { 1, 2 }, { 2, 1 } })
end

function TestFlowCombiners:test_frequencies_of_a_range_against_plain_lua()
  local function plain(n, m)
    local t = {}
    for x = 1, n do t[x % m] = (t[x % m] or 0) + 1 end
    return pairs_of(t)
  end
  local function mod13(x) return x % 13 end
  for _, st in ipairs({ 1, 3 }) do
    -- keyed: the partition's key is frequencies_by's function
    local keyed = F.from_enumerable(sluice.range(1, 50000), { stages = st })
      :partition({ stages = st, key = mod13 }):frequencies_by(mod13):to_list()
    lu.assertEquals(sorted(keyed, by_inspect), plain(50000, 13), "keyed, stages " .. st)
    -- another partition: per partition, keys may repeat
    local other = F.from_enumerable(sluice.range(1, 50000), { stages = st })
      :partition({ stages = st }):frequencies_by(mod13):to_list()
    lu.assertEquals(summed(other), plain(50000, 13), "whole event, stages " .. st)
    -- frequencies of the mapped events, after partition()
    local freq = F.from_enumerable(sluice.range(1, 50000), { stages = st }):map(mod13)
      :partition({ stages = st }):frequencies():to_list()
    lu.assertEquals(sorted(freq, by_inspect), plain(50000, 13), "frequencies, stages " .. st)
  end
end

function TestFlowCombiners:test_frequencies_by_keyed_ends_each_partition_as_without_combining()
  local function mod13(x) return x % 13 end
  local part = F.from_enumerable(sluice.range(1, 5000), { stages = 2 }):partition({ stages = 3, key = mod13 })
  local plain = part:reduce(function() return {} end, function(e, acc)
    acc[e % 13] = (acc[e % 13] or 0) + 1
    return acc
  end)
  lu.assertEquals(per_partition(part:frequencies_by(mod13)), per_partition(plain))
  local words = F.from_enumerable(sluice.lines(TEXT), { stages = 2 }):flat_map(words):partition({ stages = 3 })
  local counted = words:reduce(function() return {} end, function(w, acc)
    acc[w] = (acc[w] or 0) + 1
    return acc
  end)
  lu.assertEquals(per_partition(words:frequencies()), per_partition(counted))
end

-- windows: no combining, the same counts per window

-- What windows of `size` events give per partition, in plain Lua: the
-- partition of x is x % 2 + 1 (the hash below), its events come in order.
local function plain_windows(n, size, key)
  local out, seen = {}, { 0, 0 }
  local cur = { {}, {} }
  local function flush(p, id)
    if next(cur[p]) then out[#out + 1] = { p, id, pairs_of(cur[p]) } end
    cur[p] = {}
  end
  for x = 1, n do
    local p = x % 2 + 1
    local k = key(x)
    cur[p][k] = (cur[p][k] or 0) + 1
    seen[p] = seen[p] + 1
    if seen[p] % size == 0 then flush(p, seen[p] // size) end
  end
  for p = 1, 2 do flush(p, seen[p] // size + 1) end
  return sorted(out, by_inspect)
end

local function by_window(fl)
  local out = fl:on_trigger(function(acc, p, w) return { { p.index, w.id, pairs_of(acc) } } end):to_list()
  return sorted(out, by_inspect)
end

function TestFlowCombiners:test_count_windows_on_a_partition()
  local function mod3(x) return x % 3 end
  local part = F.from_enumerable(sluice.range(1, 103), { stages = 1 })
    :partition({ stages = 2, hash = function(e) return e % 2 + 1 end, window = W.count(5) })
  lu.assertEquals(by_window(part:frequencies_by(mod3)), plain_windows(103, 5, mod3))
  lu.assertEquals(by_window(part:map(mod3):frequencies()), plain_windows(103, 5, mod3))
  lu.assertEquals(by_window(part:map(function(x) return { x % 3, 1 } end):reduce_by_key(add)),
    plain_windows(103, 5, mod3))
end

function TestFlowCombiners:test_fixed_windows_on_a_partition()
  -- {x % 2, x} pairs in windows of 10 ms by x: window id 10 * (x // 10);
  -- each parity goes to one partition, which triggers once per window
  local got = F.from_enumerable(sluice.range(1, 45), { stages = 1 }):map(function(x) return { x % 2, x } end)
    :partition({ stages = 2, key = { index = 1 }, window = W.fixed(10, "millisecond", function(e) return e[2] end) })
    :reduce_by_key(add):on_trigger(function(acc, _, w) return { { w.id, pairs_of(acc) } } end):to_list()
  local want = {}
  for id = 0, 40, 10 do
    local t = {}
    for x = math.max(1, id), math.min(45, id + 9) do t[x % 2] = (t[x % 2] or 0) + x end
    for k, v in pairs(t) do want[#want + 1] = { id, { { k, v } } } end
  end
  lu.assertEquals(sorted(got, by_inspect), sorted(want, by_inspect))
end

function TestFlowCombiners:test_window_on_the_first_layer()
  local got = F.from_enumerable(sluice.range(1, 25), { stages = 1, window = W.count(10) })
    :frequencies_by(function(x) return x % 2 end)
    :on_trigger(function(acc, _, w) return { { w.id, pairs_of(acc) } } end):to_list()
  lu.assertEquals(sorted(got, by_inspect), {
    { 1, { { 0, 5 }, { 1, 5 } } }, { 2, { { 0, 5 }, { 1, 5 } } }, { 3, { { 0, 2 }, { 1, 3 } } },
  })
end

-- errors ---------------------------------------------------------------------------

local function run_error(fn)
  local ok, err = pcall(fn)
  lu.assertFalse(ok)
  return (tostring(err):match("^[^\n]*"))
end

function TestFlowCombiners:test_build_errors_name_the_function()
  local fl = F.from_enumerable({ 1 })
  lu.assertErrorMsgContains("sluice.flow.reduce_by_key: fun must be a function, got number",
    function() fl:reduce_by_key(5) end)
  lu.assertErrorMsgContains("sluice.flow.frequencies_by: the key function must be a function, got nil",
    function() fl:frequencies_by() end)
  lu.assertErrorMsgContains("sluice.flow.frequencies: cannot call group_by/reduce/emit_and_reduce on a flow after another",
    function() fl:frequencies():frequencies() end)
  lu.assertErrorMsgContains("sluice.flow.reduce_by_key: cannot call group_by/reduce/emit_and_reduce",
    function() fl:group_by_key():reduce_by_key(add) end)
  lu.assertErrorMsgContains("sluice.flow.map: map cannot be called after group_by/reduce/emit_and_reduce",
    function() fl:frequencies():map(tostring) end)
  lu.assertErrorMsgContains("sluice.flow.explain: expected a flow, got number", function() F.explain(5) end)
end

function TestFlowCombiners:test_run_errors_name_the_operation()
  local function one(events, st) return F.from_enumerable(events, { stages = 1 }):partition({ stages = st or 1 }) end
  lu.assertStrMatches(run_error(function() one({ 5 }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): expected a {key, value} pair, got 5")
  lu.assertStrMatches(run_error(function() one({ { nil, 1 } }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): expected a {key, value} pair, got {%[2%] = 1} %(its key is nil%)")
  lu.assertStrMatches(run_error(function() one({ { "a" } }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): expected a {key, value} pair, got {\"a\"} %(its value is nil%)")
  lu.assertStrMatches(run_error(function()
    one({ { "a", 1 }, { "a", 2 } }):reduce_by_key(function() end):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): the function returned nil where a value was expected")
  lu.assertStrMatches(run_error(function()
    one({ { "a", 1 }, { "a", 2 } }):reduce_by_key(function() error("no sum", 0) end):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): no sum")
  lu.assertStrMatches(run_error(function() one({ { { 1 }, 1 } }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): a key must be a string, a number %(not NaN%) or a "
    .. "boolean, got {1} %(a table would be a key by identity, and every event arrives as a new copy%)")
  lu.assertStrMatches(run_error(function() one({ "a", { 1, 2 } }, 2):frequencies():to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(frequencies%): a key must be a string, a number %(not NaN%) or a "
    .. "boolean, got {1, 2} .*")
  lu.assertStrMatches(run_error(function() one({ 0 / 0 }):frequencies():to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(frequencies%): a key must be a string, a number %(not NaN%) or a boolean, got 0/0 .*")
  lu.assertStrMatches(run_error(function() one({ 1 }):frequencies_by(function() end):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(frequencies_by%): frequencies_by returned nil where a key was expected")
  lu.assertStrMatches(run_error(function()
    one({ 1 }):frequencies_by(function() error("bad key", 0) end):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(frequencies_by%): bad key")
end

-- The loop counts a key it has seen in its own code (no call); what is not a
-- combiner's event there still gets the reducer's error.
function TestFlowCombiners:test_run_errors_on_a_key_already_seen()
  local function one(events) return F.from_enumerable(events, { stages = 1 }):partition({ stages = 1 }) end
  lu.assertStrMatches(run_error(function() one({ { "a", 1 }, { "a" } }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): expected a {key, value} pair, got {\"a\"} %(its value is nil%)")
  lu.assertStrMatches(run_error(function() one({ { "a", 1 }, "a" }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): expected a {key, value} pair, got \"a\"$")
  lu.assertStrMatches(run_error(function() one({ { 1, 1 }, { 0 / 0, 1 } }):reduce_by_key(add):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): a key must be a string, a number %(not NaN%) or a boolean, got 0/0 .*")
  lu.assertStrMatches(run_error(function()
    one({ 1, 2, 3 }):frequencies_by(function(x) if x < 3 then return "k" end end):to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(frequencies_by%): frequencies_by returned nil where a key was expected")
  lu.assertStrMatches(run_error(function() one({ 1, 1, 0 / 0 }):frequencies():to_list() end),
    "sluice%.flow: flow %d+ layer %d+ stage 1 %(frequencies%): a key must be a string, a number %(not NaN%) or a boolean, got 0/0 .*")
  -- the key function runs once per event, also for a key's first event:
  -- here the key is the number of calls so far, on the stage's worker
  local got = one({ "x", "y", "z" }):frequencies_by((function()
    local calls = 0
    return function(x) calls = calls + 1; return x .. calls end
  end)()):to_list()
  lu.assertEquals(sorted(got, by_inspect), { { "x1", 1 }, { "y2", 1 }, { "z3", 1 } })
  -- 1 and 1.0 are one key, as in a Lua table
  got = one({ { 1, 10 }, { 1.0, 5 }, { "1", 1 } }):reduce_by_key(add):to_list()
  lu.assertEquals(sorted(got, by_inspect), { { "1", 1 }, { 1, 15 } })
end

-- A map that is exactly function(x) return {x, K} end before
-- reduce_by_key is fused: no table per event for a key already seen. The
-- results, and the errors, are those of the map and reducer run as
-- written (the same flow with a map that is not such a constructor).
function TestFlowCombiners:test_reduce_by_key_after_a_pair_constructor()
  local T = sluice._tuple_ctor
  local k = 2
  lu.assertEquals({ T(function(w) return { w, 1 } end) }, { "pc", 1 })
  lu.assertEquals({ T(function(w) return { w, -7 } end) }, { "pc", -7 })
  lu.assertEquals({ T(function(w) return { w, true } end) }, { "pc", true })
  lu.assertEquals({ T(function(w) return { w, w } end) }, { "pp" })
  lu.assertEquals({ T(function(w) return { false, w, 2.0 } end) }, { "cpc", false, 2.0 })
  lu.assertEquals(math.type(select(3, T(function(w) return { false, w, 2.0 } end))), "float")
  lu.assertEquals({ T(function(w) return { w, 2.5 } end) }, { false })       -- a constant, not in the instruction
  lu.assertEquals({ T(function(w) return { w, k } end) }, { false })         -- an upvalue
  lu.assertEquals({ T(function(w) return { w, nil } end) }, { false })
  lu.assertEquals({ T(function(w) return { w.x, 1 } end) }, { false })
  lu.assertEquals({ T(function(w) return {} end) }, { false })
  lu.assertEquals({ T(function(w, x) return { w, 1 } end) }, { false })
  lu.assertEquals({ T(function(...) return { ..., 1 } end) }, { false })
  lu.assertEquals({ T(print) }, { false })
  local words = {}
  for i = 1, 20000 do words[i] = ({ "a", "b", "c", 1, 2, 2.0, true, 1.5 })[i % 8 + 1] end
  local function run(map, fun, stages)
    return sorted(F.from_enumerable(words, { stages = stages }):map(map)
      :partition({ stages = 2, key = { index = 1 } }):reduce_by_key(fun):to_list(), by_inspect)
  end
  local one = 1
  for _, stages in ipairs({ 1, 3 }) do
    local fused = run(function(w) return { w, 1 } end, add, stages)
    lu.assertEquals(fused, run(function(w) return { w, one } end, add, stages), "stages " .. stages)
    local want = {}
    for _, w in ipairs(words) do want[w] = (want[w] or 0) + 1 end
    lu.assertEquals(fused, pairs_of(want))
    lu.assertEquals(run(function(w) return { w, true } end, function(a, b) return a and b end, stages),
      run(function(w) local t = true; return { w, t and one == 1 } end, function(a, b) return a and b end, stages))
  end
  -- errors: a key the reducer refuses, and the function's nil
  local function err_of(events, fun)
    return run_error(function()
      F.from_enumerable(events, { stages = 1 }):map(function(w) return { w, 1 } end)
        :partition({ stages = 1, key = { index = 1 } }):reduce_by_key(fun):to_list()
    end)
  end
  lu.assertStrMatches(err_of({ "a", 0 / 0 }, add), "sluice%.flow: flow %d+ layer %d+ stage 1 %(reduce_by_key%): "
    .. "a key must be a string, a number %(not NaN%) or a boolean, got 0/0 .*")
  lu.assertStrMatches(err_of({ "a", {} }, add), ".*%(reduce_by_key%): a key must be a string, a number %(not NaN%) or a boolean, got {} .*")
  lu.assertStrMatches(err_of({ "a", "a" }, function() end),
    ".*%(reduce_by_key%): the function returned nil where a value was expected")
  lu.assertStrMatches(err_of({ "a", "a" }, function() error("no sum", 0) end),
    "sluice%.flow: flow %d+ layer 1 stage 1 %(reduce_by_key%): no sum$")
end

-- A map that is exactly function(x) return {E1, ..., Ek} end (x or
-- literals) whose events leave the layer is encoded from x with no table
-- made; an x that is not a scalar goes through the map. The events that
-- cross are those of the same flow with a map that is not such a
-- constructor, subtypes and all.
function TestFlowCombiners:test_a_tuple_map_before_a_hop()
  local xs = { 1, -5, 0, 2 ^ 40, math.mininteger, math.maxinteger, 2.0, 1.5, -0.0, "", "s", string.rep("L", 300),
               true, false, { 1, 2 }, { a = "t" } }
  local one = 1
  local function crossing(map)
    local got = F.from_enumerable(xs, { stages = 2 }):map(map):partition({ stages = 2 })
      :map(function(t) return sluice.inspect(t) .. " " .. tostring(math.type(t[2])) .. " " .. tostring(math.type(t[3])) end)
      :to_list()
    table.sort(got)
    return got
  end
  lu.assertEquals(crossing(function(x) return { 7, x, x } end), crossing(function(x) return { 7 * one, x, x } end))
  lu.assertEquals(crossing(function(x) return { x, 2.0, true } end), crossing(function(x) return { x, 2.0 * one, true } end))
  lu.assertEquals(#crossing(function(x) return { x, 2.0, true } end), #xs)
  -- the time of a window on a partition, read from the tuple's bytes
  local counts = F.from_enumerable(sluice.range(0, 2999), { stages = 2 }):map(function(i) return { i, i } end)
    :partition({ stages = 2, window = sluice.window.fixed(1, "second", { index = 1 }) })
    :reduce(function() return 0 end, function(_, n) return n + 1 end)
    :on_trigger(function(n, _, w) return { { w.id, n } } end):to_list()
  local per = {}   -- each partition counts its share of a window
  for _, c in ipairs(counts) do per[c[1]] = (per[c[1]] or 0) + c[2] end
  lu.assertEquals(per, { [0] = 1000, [1000] = 1000, [2000] = 1000 })
end

-- merging from bytes --------------------------------------------------------------

-- The merging layer of reduce_by_key, frequencies and frequencies_by adds
-- each partial's pairs into its accumulator straight from their bytes; a
-- partial that is not pairs of scalars is decoded and merged as before.
-- The split range gives each first-layer stage its share, so a key's
-- partials meet in the merge.
function TestFlowCombiners:test_merging_layer_takes_partials_from_their_bytes()
  local long = string.rep("k", 200)
  local keys = { "a", "", long, 7, -3, 0, 2 ^ 40, math.mininteger, 1.5, -0.25, true, false }
  local function key_of(x) return keys[x % #keys + 1] end
  local function value_of(x) return x % 3 == 0 and x + 0.5 or x end
  local plain, plain_n = {}, {}
  for x = 1, 30000 do
    local k = key_of(x)
    plain[k] = (plain[k] or 0) + value_of(x)
    plain_n[k] = (plain_n[k] or 0) + 1
  end
  for _, st in ipairs({ 2, 3 }) do
    local by_key = F.from_enumerable(sluice.range(1, 30000), { stages = st })
      :map(function(x) return { key_of(x), value_of(x) } end)
      :partition({ stages = 2, key = { index = 1 } }):reduce_by_key(add):to_list()
    lu.assertEquals(sorted(by_key, by_inspect), pairs_of(plain), "reduce_by_key, stages " .. st)
    local freq = F.from_enumerable(sluice.range(1, 30000), { stages = st }):map(key_of)
      :partition({ stages = 2 }):frequencies():to_list()
    lu.assertEquals(sorted(freq, by_inspect), pairs_of(plain_n), "frequencies, stages " .. st)
    local freq_by = F.from_enumerable(sluice.range(1, 30000), { stages = st })
      :partition({ stages = 2, key = key_of }):frequencies_by(key_of):to_list()
    lu.assertEquals(sorted(freq_by, by_inspect), pairs_of(plain_n), "frequencies_by, stages " .. st)
  end
  -- table values: the partial is decoded and merged by the same function
  local tables = F.from_enumerable(sluice.range(1, 3000), { stages = 2 })
    :map(function(x) return { x % 5, { x } } end)
    :partition({ stages = 2, key = { index = 1 } })
    :reduce_by_key(function(a, b) return { a[1] + b[1] } end):to_list()
  local want = {}
  for x = 1, 3000 do want[x % 5] = (want[x % 5] or 0) + x end
  local got = {}
  for _, kv in ipairs(tables) do got[kv[1]] = kv[2][1] end
  lu.assertEquals(got, want)
  -- the function's nil in the merge is its error: a partition by letter
  -- gives both stages of the combining layer letters, so their partials
  -- (two letters or more) meet in the merge, where the function fails
  local letters = {}
  for i = 1, 40 do letters[i] = string.char(64 + i) end
  lu.assertStrMatches(run_error(function()
    F.from_enumerable(letters, { stages = 1 }):partition({ stages = 2 })
      :map(function(c) return { "k", c } end)
      :partition({ stages = 2, key = { index = 1 } })
      :reduce_by_key(function(a, b) if #b == 1 then return a .. b end end):to_list()
  end), "sluice%.flow: flow %d+ layer 2 stage %d %(reduce_by_key%): the function returned nil where a value was expected")
  -- and its error is named as the function's
  lu.assertStrMatches(run_error(function()
    F.from_enumerable(letters, { stages = 1 }):partition({ stages = 2 })
      :map(function(c) return { "k", c } end)
      :partition({ stages = 2, key = { index = 1 } })
      :reduce_by_key(function(a, b) if #b > 1 then error("boom", 0) end; return a .. b end):to_list()
  end), "sluice%.flow: flow %d+ layer 2 stage %d %(reduce_by_key%): boom$")
end

-- explain ----------------------------------------------------------------------------

function TestFlowCombiners:test_explain_keyed_reduce_by_key_on_a_split_source()
  local fl = F.from_enumerable(sluice.lines(TEXT), { stages = 2 }):flat_map(words)
    :map(function(w) return { w, 1 } end):partition({ stages = 3, key = { index = 1 } }):reduce_by_key(add)
  lu.assertEquals(fl:explain(), table.concat({
    'layer 1: 2 stages',
    '  input: sluice.lines("examples/data/text.txt"), read by the stages themselves (split source)',
    '  operations: flat_map, map',
    '  combining for layer 2: runs its operations and reducer here (keyed)',
    'layer 2: 3 stages',
    '  input: layer 1 through partition by key {index = 1}: only partial accumulators cross',
    '  reducer: reduce_by_key',
    '  combining: keyed: each stage of layer 1 reduces into one accumulator and sends it cut by key',
    '  emit: events',
  }, "\n"))
  lu.assertEquals(F.explain(fl), fl:explain())
end

function TestFlowCombiners:test_explain_reduce_by_key_after_partition_without_key()
  local fl = F.from_enumerable({ { "a", 1 }, { "b", 2 } }, { stages = 2 }):partition({ stages = 2 })
    :reduce_by_key(add):on_trigger(function(acc) return { acc } end)
  lu.assertEquals(fl:explain(), table.concat({
    'source 1: an array of 2 events (from_enumerable), 1 producer stage',
    'layer 1: 2 stages',
    '  input: source 1 (by demand)',
    '  combining for layer 2: runs its operations and reducer here (per partition)',
    'layer 2: 2 stages',
    '  input: layer 1 through partition by the whole event: only partial accumulators cross',
    '  reducer: reduce_by_key',
    '  combining: per partition: each stage of layer 1 keeps one accumulator per partition and sends them '
      .. '(keyed needs partition({key = {index = 1}}), the pair\'s key)',
    '  emit: on_trigger',
  }, "\n"))
end

function TestFlowCombiners:test_explain_a_reduce_without_merge_and_a_window()
  local fl = F.from_enumerable(sluice.range(1, 100), { stages = 2 }):map(tostring)
    :partition({ stages = 2 })
    :reduce(function() return {} end, function(e, acc) acc[e] = true; return acc end)
    :emit("state")
  lu.assertEquals(fl:explain(), table.concat({
    'layer 1: 2 stages',
    '  input: sluice.range(1, 100), read by the stages themselves (split source)',
    '  operations: map',
    'layer 2: 2 stages',
    '  input: layer 1 through partition by the whole event',
    '  reducer: reduce',
    '  combining: none (the reduce has no merge)',
    '  emit: state',
    'note: layer 2 reduces after a partition without a merge, so every event crosses the partition; '
      .. 'use reduce_by_key, frequencies or frequencies_by, or give the reduce a merge '
      .. '(reduce(acc_fun, fun, {merge = m})) to combine',
  }, "\n"))
  local win = F.from_enumerable(sluice.range(1, 100), { stages = 1 })
    :partition({ stages = 2, window = W.count(5):trigger_every(2) }):frequencies()
    :take_sort(3, function(a, b) return a[1] < b[1] end)
  lu.assertEquals(win:explain(), table.concat({
    'source 1: sluice.range(1, 100) (from_enumerable), 1 producer stage',
    'layer 1: 2 stages',
    '  input: source 1 through partition by the whole event',
    '  window: count of 5 events, trigger every 2 events',
    '  reducer: frequencies',
    '  combining: none (only fixed windows without trigger_every or a custom trigger combine)',
    '  emit: events',
    'layer 2: 1 stage',
    '  input: layer 1, take_sort 3 (each partition keeps its 3 smallest; this stage merges them)',
  }, "\n"))
end

function TestFlowCombiners:test_explain_frequencies_by_and_user_merge()
  local function mod3(x) return x % 3 end
  local keyed = F.from_enumerables({ { 1, 2 }, { 3 } }, { stages = 1 }):partition({ stages = 1, key = mod3 })
    :frequencies_by(mod3)
  lu.assertEquals(keyed:explain(), table.concat({
    'source 1: an array of 2 events (from_enumerable), 1 producer stage',
    'source 2: an array of 1 event (from_enumerable), 1 producer stage',
    'layer 1: 1 stage',
    '  input: sources 1, 2 (by demand)',
    '  combining for layer 2: runs its operations and reducer here (keyed)',
    'layer 2: 1 stage',
    '  input: layer 1 through partition into 1 stage (no hashing): only partial accumulators cross',
    '  reducer: frequencies_by',
    '  combining: keyed: each stage of layer 1 reduces into one accumulator and sends it cut by key',
    '  emit: events',
  }, "\n"))
  local merged = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):partition({ stages = 2, key = mod3 })
    :map(mod3):reduce(function() return 0 end, add, { merge = add, keyed = true })
  lu.assertEquals(merged:explain(), table.concat({
    'layer 1: 2 stages',
    '  input: sluice.range(1, 10), read by the stages themselves (split source)',
    '  combining for layer 2: runs its operations and reducer here (per partition)',
    'layer 2: 2 stages',
    '  input: layer 1 through partition by a key function: only partial accumulators cross',
    '  operations: map (run in the layer before, by combining)',
    '  reducer: reduce (merge, keyed)',
    '  combining: per partition: each stage of layer 1 keeps one accumulator per partition and sends them '
      .. '(keyed needs nothing between the partition and the reduce)',
    '  emit: events',
  }, "\n"))
  local shuffled = F.from_enumerable({ 1 }, { stages = 1 }):map(mod3):shuffle({ stages = 2 })
    :reduce(function() return 0 end, add, { merge = add })
  lu.assertEquals(shuffled:explain(), table.concat({
    'source 1: an array of 1 event (from_enumerable), 1 producer stage',
    'layer 1: 1 stage',
    '  input: source 1 (by demand)',
    '  operations: map',
    'layer 2: 2 stages',
    '  input: layer 1 through shuffle or merge (by demand)',
    '  reducer: reduce (merge)',
    '  combining: none (it follows a shuffle or merge, not a partition)',
    '  emit: events',
  }, "\n"))
end

os.exit(lu.LuaUnit.run())
