-- Flow: a reduce that is a count (lua/README.md §8.4, "A reduce that
-- counts"). Its reducer and accumulator function are read from their
-- code (sluice._same_code); such a reduce combines as frequencies does,
-- and must end exactly as the same reduce would without combining: the
-- same pairs per partition, the same events (an array of counts when the
-- keys are 1..n), tables counted as the copies a partition sends, floats
-- with integer values with their integers, errors named (reduce).
-- "Without combining" is the same count written with an upvalue, which
-- the reading does not take.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect = H.sorted, H.by_inspect
local F, W = sluice.flow, sluice.window

local TEXT = "examples/data/text.txt"
local function new_table() return {} end
local function count(x, acc) acc[x] = (acc[x] or 0) + 1; return acc end
local ONE = 1
local function count_up(x, acc) acc[x] = (acc[x] or 0) + ONE; return acc end

local function words_of(line)
  local words = {}
  for w in line:lower():gmatch("%a+") do words[#words + 1] = w end
  return words
end

local pairs_of, per_partition = H.pairs_of, H.per_partition


local function reducer_line(fl)
  return fl:explain():match("reducer: ([^\n]*)")
end

TestFlowCount = {}

function TestFlowCount:test_same_code()
  local S = sluice._same_code
  local a = load("return function(w, acc) acc[w] = (acc[w] or 0) + 1; return acc end")()
  local b = load("\n\nreturn function(x, t)\n  t[x] = (t[x] or 0) + 1\n  return t\nend", "=elsewhere")()
  lu.assertTrue(S(a, b))
  lu.assertTrue(S(a, count))
  lu.assertTrue(S(new_table, function() return {} end))
  lu.assertFalse(S(a, function(x, t) t[x] = (t[x] or 0) + 2; return t end))
  lu.assertFalse(S(a, function(x, t) t[x] = (t[x] or 1) + 1; return t end))
  lu.assertFalse(S(a, function(x, t) t[x] = (t[x] or 0) + 1; return t, x end))
  lu.assertFalse(S(a, function(x, t, _) t[x] = (t[x] or 0) + 1; return t end))
  lu.assertFalse(S(a, function(...) local x, t = ...; t[x] = (t[x] or 0) + 1; return t end))
  lu.assertFalse(S(count, count_up))             -- + ONE (an upvalue) is not + 1
  lu.assertFalse(S(new_table, function() return { n = 0 } end))
  lu.assertFalse(S(a, print))
  lu.assertFalse(S(a, 1))
  lu.assertFalse(S(nil, a))
end

function TestFlowCount:test_the_array_per_line_word_count()
  local want = H.plain_word_count(TEXT)
  for _, st in ipairs({ 1, 2, 4 }) do
    local fl = F.from_enumerable(sluice.lines(TEXT), { stages = st }):flat_map(words_of)
      :partition({ stages = st }):reduce(new_table, count)
    lu.assertEquals(sorted(fl:to_list(), H.by_word), want, "stages " .. st)
    lu.assertEquals(reducer_line(fl), "reduce (a count: merges its counts, as frequencies)")
    lu.assertStrContains(fl:explain(), "combining: keyed: each stage of layer 1 reduces into one accumulator")
    lu.assertNotStrContains(fl:explain(), "note:")
  end
end

function TestFlowCount:test_the_forms_of_a_count()
  local forms = {
    count,
    function(w, acc) acc[w] = 1 + (acc[w] or 0) return acc end,
    function(w, acc) local n = acc[w] or 0; acc[w] = n + 1; return acc end,
    function(w, acc) if acc[w] then acc[w] = acc[w] + 1 else acc[w] = 1 end return acc end,
  }
  local want = H.plain_word_count(TEXT)
  for i, f in ipairs(forms) do
    local fl = F.from_enumerable(sluice.lines(TEXT), { stages = 2 })
      :flat_map(function(line) return line:lower():gmatch("%a+") end)
      :partition({ stages = 3 }):reduce(new_table, f)
    lu.assertEquals(reducer_line(fl), "reduce (a count: merges its counts, as frequencies)", "form " .. i)
    lu.assertEquals(sorted(fl:to_list(), H.by_word), want, "form " .. i)
  end
  -- not counts: another step, an upvalue, another accumulator, the user's own merge
  local part = F.from_enumerable(sluice.lines(TEXT), { stages = 2 }):flat_map(words_of):partition({ stages = 2 })
  lu.assertEquals(reducer_line(part:reduce(new_table, function(w, acc) acc[w] = (acc[w] or 0) + 2; return acc end)),
    "reduce")
  lu.assertEquals(reducer_line(part:reduce(new_table, count_up)), "reduce")
  lu.assertEquals(reducer_line(part:reduce(function() return { total = 0 } end, count)), "reduce")
  local function merge(p, acc)
    for k, n in pairs(p) do acc[k] = (acc[k] or 0) + n end
    return acc
  end
  lu.assertEquals(reducer_line(part:reduce(new_table, count, { merge = merge })), "reduce (merge)")
end

function TestFlowCount:test_ends_each_partition_as_without_combining()
  -- integers 1..40, each (x % 13 + 1) times over: each partition's
  -- accumulator and its events are the reduce's own
  local events = {}
  for x = 1, 40 do for _ = 0, x % 13 do events[#events + 1] = x end end
  for _, st in ipairs({ 1, 3 }) do
    local function part() return F.from_enumerable(events, { stages = 2 }):partition({ stages = st }) end
    lu.assertEquals(per_partition(part():reduce(new_table, count)), per_partition(part():reduce(new_table, count_up)))
    lu.assertEquals(sorted(part():reduce(new_table, count):to_list(), by_inspect),
      sorted(part():reduce(new_table, count_up):to_list(), by_inspect))
  end
  -- one partition whose keys are 1..n emits its counts, not pairs
  local got = F.from_enumerable({ 1, 2, 2, 3, 3, 3 }, { stages = 2 }):partition({ stages = 1 })
    :reduce(new_table, count):to_list()
  lu.assertEquals(got, { 1, 2, 3 })
  lu.assertEquals(F.from_enumerable({ "a", "b", "a" }, { stages = 2 }):partition({ stages = 1 })
    :reduce(new_table, count):emit("state"):to_list(), { { a = 2, b = 1 } })
end

function TestFlowCount:test_tables_and_floats_count_as_after_a_partition()
  -- the same table twice from one flat_map: two keys (two copies after a
  -- partition), not one key counted twice
  local function events(i)
    if i == 1 then return { 1, 1.0, 3, 3.0, -0.0, 0, 2.5, "3", true } end
    local t = { 1, x = "y" }
    return { t, t, { 1, x = "y" }, { 2 } }
  end
  for _, st in ipairs({ 2, 3, 5 }) do
    local function part()
      return F.from_enumerable({ 1, 2 }, { stages = 2 }):flat_map(events):partition({ stages = st })
    end
    local got = per_partition(part():reduce(new_table, count))
    lu.assertEquals(got, per_partition(part():reduce(new_table, count_up)), "stages " .. st)
    -- 1 and 1.0 are one key of one partition; each table event its own key
    local all = {}
    for _, p in ipairs(got) do for _, kv in ipairs(p[2]) do all[#all + 1] = kv end end
    lu.assertEquals(sorted(all, by_inspect), sorted({ { 0, 2 }, { 1, 2 }, { 2.5, 1 }, { 3, 2 }, { "3", 1 },
      { true, 1 }, { { 1, x = "y" }, 1 }, { { 1, x = "y" }, 1 }, { { 1, x = "y" }, 1 }, { { 2 }, 1 } }, by_inspect))
  end
end

function TestFlowCount:test_tables_with_fields_go_where_they_would()
  -- tables of two fields: a copy may list its fields in another order
  -- than its original, and still goes to the original's partition (one
  -- first-layer stage: a table's encoding lists its fields in the order
  -- of the state that made it, and states hash strings each their own way)
  local function events(i)
    local t = { k = "a" .. i, v = i }
    local u = {}   -- grown and cut: its copy (made at its size) often lists its fields in another order
    for j = 1, 9 do u["f" .. i * j] = j end
    u["f" .. i * 2], u.x = nil, i
    return { t, t, { k = "a" .. i, v = i }, { v = i, k = "a" .. i, w = true }, u, u }
  end
  for _, st in ipairs({ 2, 3, 5 }) do
    local function part()
      return F.from_enumerable(sluice.range(1, 300), { stages = 1 }):flat_map(events):partition({ stages = st })
    end
    lu.assertEquals(per_partition(part():reduce(new_table, count)), per_partition(part():reduce(new_table, count_up)),
      "stages " .. st)
  end
end

function TestFlowCount:test_operations_after_the_partition()
  -- what a map after the partition returns is counted where the map runs,
  -- as written: a count with operations between does not combine
  local function part()
    local kept = { { "even" }, { "odd" } }
    return F.from_enumerable(sluice.range(1, 100), { stages = 2 }):partition({ stages = 2 })
      :map(function(x) return kept[x % 2 + 1] end)
  end
  local got = part():reduce(new_table, count):to_list()
  lu.assertEquals(sorted(got, by_inspect), sorted(part():reduce(new_table, count_up):to_list(), by_inspect))
  lu.assertEquals(#got, 4)   -- each stage has its own two tables
  lu.assertStrContains(part():reduce(new_table, count):explain(),
    "combining: none (a plain count combines only with nothing between the partition and the reduce)")
end

function TestFlowCount:test_session_windows()
  -- a plain count's merge is only for combining: sessions that an event
  -- bridges stay apart, as without it
  local clicks = {}
  for i = 1, 200 do clicks[i] = { i % 5, (i * 37) % 1000 } end
  local function flow_with(f)
    return F.from_enumerable(clicks, { stages = 1 })
      :partition({ stages = 2, window = W.session(60, "millisecond", { index = 2 }) })
      :map(function(e) return e[1] end)
      :reduce(new_table, f)
      :on_trigger(function(acc, p, w) return { { p.index, w.id, pairs_of(acc) } } end)
  end
  local got = sorted(flow_with(count):to_list(), by_inspect)
  lu.assertEquals(got, sorted(flow_with(count_up):to_list(), by_inspect))
  lu.assertTrue(#got > 2)
end

function TestFlowCount:test_equal_numbers_share_a_partition()
  for n = 2, 7 do
    lu.assertEquals(sluice._hash(3.0, n), sluice._hash(3, n))
    lu.assertEquals(sluice._hash(-0.0, n), sluice._hash(0, n))
    lu.assertEquals(sluice._hash(-2^63, n), sluice._hash(math.mininteger, n))
  end
  -- whole events and key fields: 7 and 7.0 reach one stage
  local function where(fl)
    return sorted(fl:reduce(new_table, function(e, acc) acc[#acc + 1] = e; return acc end)
      :on_trigger(function(acc, p) return #acc > 0 and { { p.index, #acc } } or {} end):to_list(), by_inspect)
  end
  for _, st in ipairs({ 2, 3, 4 }) do
    lu.assertEquals(#where(F.from_enumerable({ 7, 7.0, 7, 7.0 }, { stages = 1 }):partition({ stages = st })), 1)
    lu.assertEquals(#where(F.from_enumerable({ { 7 }, { 7.0 } }, { stages = 1 })
      :partition({ stages = st, key = { index = 1 } })), 1)
    lu.assertEquals(#where(F.from_enumerable({ { k = 7 }, { k = 7.0 } }, { stages = 1 })
      :partition({ stages = st, key = { field = "k" } })), 1)
  end
end

function TestFlowCount:test_errors_are_the_reduce_s()
  for _, f in ipairs({ count, count_up }) do
    local ok, err = pcall(function()
      return F.from_enumerable({ "a", 0 / 0 }, { stages = 1 }):partition({ stages = 2 }):reduce(new_table, f):to_list()
    end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "(reduce): ")
    lu.assertStrContains(err, "table index is NaN")
  end
  -- an event that cannot cross the partition is the partition's error
  -- (keyed, and through a key function)
  for _, opts in ipairs({ { stages = 2 }, { stages = 2, key = function() return 1 end } }) do
    local ok, err = pcall(function()
      return F.from_enumerable({ 1 }, { stages = 1 }):flat_map(function() return { "a", coroutine.create(print) } end)
        :partition(opts):reduce(new_table, count):to_list()
    end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "layer 1 stage 1 (partition): cannot send a thread value (at event)")
    lu.assertNotStrContains(err:match("^[^\n]*"), "[sluice.")
  end
end

-- merges at the top of the file, as users write them
local function add_counts(part, acc)
  for k, n in pairs(part) do acc[k] = (acc[k] or 0) + n end
  return acc
end
local function add_twice(part, acc)
  for k, n in pairs(part) do acc[k] = (acc[k] or 0) + 2 * n end
  return acc
end

function TestFlowCount:test_a_count_with_its_own_merge()
  -- the merge is the user's: a count given add_counts ends as frequencies
  -- (its partials added from their bytes), one given another merge ends
  -- as that merge says
  local want = H.plain_word_count(TEXT)
  local function flow_with(merge, st)
    return F.from_enumerable(sluice.lines(TEXT), { stages = st }):flat_map(words_of)
      :partition({ stages = st }):reduce(new_table, count, { merge = merge, keyed = true })
  end
  for _, st in ipairs({ 1, 2, 4 }) do
    lu.assertEquals(sorted(flow_with(add_counts, st):to_list(), H.by_word), want, "stages " .. st)
    local twice = {}
    for i, wc in ipairs(want) do twice[i] = { wc[1], 2 * wc[2] } end
    lu.assertEquals(sorted(flow_with(add_twice, st):to_list(), H.by_word), twice, "stages " .. st)
    lu.assertEquals(reducer_line(flow_with(add_counts, st)), "reduce (merge, keyed)")
  end
end

function TestFlowCount:test_fixed_windows()
  -- keys k0, k1, ... 50 events each, in order; key k's time is 10 * k:
  -- windows of 100 ms hold ten keys each (one source stage: none is late)
  local function flow_with(f)
    return F.from_enumerable(sluice.range(0, 2999), { stages = 1 }):map(function(i) return "k" .. i // 50 end)
      :partition({ stages = 3, window = W.fixed(100, "millisecond", function(e) return tonumber(e:sub(2)) * 10 end) })
      :reduce(new_table, f)
      :on_trigger(function(acc, _, w) return { { w.id, pairs_of(acc) } } end)
  end
  local got = sorted(flow_with(count):to_list(), by_inspect)
  lu.assertEquals(got, sorted(flow_with(count_up):to_list(), by_inspect))
  local keys, windows = 0, {}
  for _, r in ipairs(got) do
    windows[r[1]] = true
    for _, kv in ipairs(r[2]) do
      keys = keys + 1
      lu.assertEquals(kv[2], 50)
      lu.assertEquals(tonumber(kv[1]:sub(2)) * 10 // 100 * 100, r[1])
    end
  end
  lu.assertEquals(keys, 60)
  lu.assertEquals(windows, { [0] = true, [100] = true, [200] = true, [300] = true, [400] = true, [500] = true })
  lu.assertStrContains(flow_with(count):explain(), "combining: per partition and window")
end

os.exit(lu.LuaUnit.run())
