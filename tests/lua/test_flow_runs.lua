-- Flow: a count right after a flat_map that returns a gmatch iterator
-- (frequencies, a plain count, reduce_by_key of {x, K} with an addition)
-- counts the iterator's matches in C (sluice._count_runs) instead of a
-- loop call per match (lua/README.md §8.4). Results are checked against
-- plain Lua counts, with iterators the C path takes and those it leaves
-- to the loop; the generated code is checked to use it where it applies.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect, pairs_of = H.sorted, H.by_inspect, H.pairs_of
local F, W = sluice.flow, sluice.window
local C = require("sluice.flow_codegen")

local TEXT = "examples/data/text.txt"

-- the lines of the text, and their words (lowercased) in plain Lua
local function lines_of(path)
  local t = {}
  for line in io.lines(path) do t[#t + 1] = line end
  return t
end

-- plain Lua: each word of each line, from `skip` + 1 on, counted `by`
local function plain_count(lines, pattern, skip, by)
  local t = {}
  for _, line in ipairs(lines) do
    local i = 0
    for w in line:lower():gmatch(pattern) do
      i = i + 1
      if i > skip then t[w] = (t[w] or 0) + by end
    end
  end
  return pairs_of(t)
end

local summed = H.summed

local function count(w, acc)
  acc[w] = (acc[w] or 0) + 1
  return acc
end

-- the three combiners a flow counts with, after flat_map(fm)
local function counted(lines, fm, how, stages, partition)
  local fl = F.from_enumerable(lines, { stages = stages }):flat_map(fm)
  if partition then fl = fl:partition({ stages = stages }) end
  if how == "frequencies" then
    fl = fl:frequencies()
  elseif how == "count" then
    fl = fl:reduce(function() return {} end, count)
  else
    fl = fl:map(function(w) return { w, 1 } end)
    if partition then fl = fl:partition({ stages = stages, key = { index = 1 } }) end
    fl = fl:reduce_by_key(function(a, b) return a + b end)
  end
  return summed(fl:to_list())
end

TestFlowRuns = {}

function TestFlowRuns:test_counts_equal_plain_lua()
  local lines = lines_of(TEXT)
  local want = plain_count(lines, "%a+", 0, 1)
  local function words(line) return line:lower():gmatch("%a+") end
  for _, how in ipairs({ "frequencies", "count", "reduce_by_key" }) do
    for _, st in ipairs({ 1, 3 }) do
      lu.assertEquals(counted(lines, words, how, st, true), want, how .. ", stages " .. st)
      lu.assertEquals(counted(lines, words, how, st, false), want, how .. " without a partition, stages " .. st)
    end
  end
  -- the source read by the stages themselves (sluice.lines), the README's shape
  local got = F.from_enumerable(sluice.lines(TEXT), { stages = 2 }):flat_map(words):partition({ stages = 2 })
    :frequencies():to_list()
  lu.assertEquals(sorted(got, H.by_word), H.plain_word_count(TEXT))
end

function TestFlowRuns:test_an_iterator_already_advanced_counts_what_it_has_left()
  -- the flat_map takes each line's first two words itself
  local lines = lines_of(TEXT)
  local function rest(line)
    local it = line:lower():gmatch("%a+")
    it()
    it()
    return it
  end
  local want = plain_count(lines, "%a+", 2, 1)
  for _, how in ipairs({ "frequencies", "count", "reduce_by_key" }) do
    lu.assertEquals(counted(lines, rest, how, 2, true), want, how)
  end
  -- an iterator at its end counts nothing; one with init starts there
  lu.assertEquals(counted({ "a b", "c" }, function(line)
    local it = line:gmatch("%a+")
    while it() do end
    return it
  end, "frequencies", 1, true), {})
  lu.assertEquals(counted({ "aa bb aa", "aa" }, function(line) return line:gmatch("%a+", 2) end, "count", 1, true),
    { { "a", 2 }, { "aa", 1 }, { "bb", 1 } })
end

function TestFlowRuns:test_other_iterators_run_in_the_loop()
  local lines = lines_of(TEXT)
  -- Lua's own gmatch (a pattern that is not one class and '+'), a Lua
  -- iterator, and gmatch after another locale was chosen (Lua's own)
  lu.assertEquals(counted(lines, function(line) return line:lower():gmatch("%a%a") end, "frequencies", 2, true),
    plain_count(lines, "%a%a", 0, 1))
  local function pairs_iter(line)
    local ws = {}
    for w in line:lower():gmatch("%a+") do ws[#ws + 1] = w end
    local i = 0
    return function()
      i = i + 1
      return ws[i]
    end
  end
  lu.assertEquals(counted(lines, pairs_iter, "count", 2, true), plain_count(lines, "%a+", 0, 1))
  -- events that are not strings, from a Lua iterator: numbers and booleans
  local got = F.from_enumerable({ 3, 2 }, { stages = 1 }):flat_map(function(n)
    local i = 0
    return function()
      i = i + 1
      if i <= n then return i % 2 == 0 or i end
    end
  end):partition({ stages = 2 }):frequencies():to_list()
  lu.assertEquals(sorted(got, by_inspect), { { 1, 2 }, { 3, 1 }, { true, 2 } })
end

function TestFlowRuns:test_reduce_by_key_sums_and_other_functions()
  local lines = lines_of(TEXT)
  local function run(k, fun)
    return summed(F.from_enumerable(lines, { stages = 2 }):flat_map(function(line) return line:lower():gmatch("%a+") end)
      :map(load("return function(w) return { w, " .. k .. " } end")())
      :partition({ stages = 2, key = { index = 1 } }):reduce_by_key(fun):to_list())
  end
  -- an addition either way round, of an integer K: in C
  lu.assertEquals(run("3", function(a, b) return a + b end), plain_count(lines, "%a+", 0, 3))
  lu.assertEquals(run("-2", function(x, y) return y + x end), plain_count(lines, "%a+", 0, -2))
  -- a float K (LOADF), or another function: the loop, as written
  local twos = run("2.0", function(a, b) return a + b end)
  lu.assertEquals(twos, plain_count(lines, "%a+", 0, 2.0))
  lu.assertEquals(math.type(twos[1][2]), "float")
  local maxes = run("5", function(a, b) return math.max(a, b) end)
  for _, kv in ipairs(maxes) do lu.assertEquals(kv[2], 5) end
  lu.assertEquals(run("1", function(a, b) return a + b + 1 end), summed((function()
    local t = {}
    for _, kv in ipairs(plain_count(lines, "%a+", 0, 1)) do t[#t + 1] = { kv[1], 2 * kv[2] - 1 } end
    return t
  end)()))
  -- a boolean K with an addition: the loop's error, as written
  local ok, err = pcall(run, "true", function(a, b) return a + b end)
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "(reduce_by_key): ")
  lu.assertStrContains(tostring(err), "attempt to perform arithmetic on a boolean value")
end

function TestFlowRuns:test_windows_count_per_window()
  -- one stage all along: lines in order, windows of 3 lines
  local lines = { "a b a", "b", "c a", "a", "d d d", "b", "e" }
  local got = F.from_enumerable(lines, { stages = 1 }):partition({ stages = 1, window = W.count(3) })
    :flat_map(function(line) return line:gmatch("%a+") end):frequencies()
    :on_trigger(function(acc, _, w) return { { w.id, pairs_of(acc) } } end):to_list()
  lu.assertEquals(sorted(got, by_inspect), {
    { 1, { { "a", 3 }, { "b", 2 }, { "c", 1 } } },
    { 2, { { "a", 1 }, { "b", 1 }, { "d", 3 } } },
    { 3, { { "e", 1 } } },
  })
end

-- (run on a worker: loaded as a module into lua5.4, the main state keeps
-- Lua's own gmatch, whose iterators C does not take)
local function count_runs_cases()
  local CR, r = sluice._count_runs, {}
  local function note(...) r[#r + 1] = table.pack(...) end
  local acc = { x = 5 }
  note(CR(("x y x"):gmatch("%a+"), acc, 1), acc.x, acc.y)
  note(CR(("x z"):gmatch("%a+"), acc, -3), acc.x, acc.y, acc.z)
  -- integers wrap as Lua's addition does
  acc = { m = math.maxinteger }
  note(CR(("m"):gmatch("%a+"), acc, 2), acc.m, math.type(acc.m))
  -- a count that is not an integer: it stops before that match, which the
  -- iterator gives next
  acc = { b = 1.5 }
  local it = ("a b c"):gmatch("%a+")
  note(CR(it, acc, 1), acc.a, acc.b, it(), it(), it())
  acc = { b = "2" }
  it = ("b"):gmatch("%a+")
  note(CR(it, acc, 1), acc.b, it())
  -- not such an iterator, not an integer K, not a table: nothing done
  it = ("a b"):gmatch("%a+")
  note(CR(it, {}, 1.0), CR(it, nil, 1), it())
  note(CR(("a b"):gmatch("(%a+)"), {}, 1), CR(function() end, {}, 1), CR(print, {}, 1))
  return r
end

function TestFlowRuns:test_count_runs()
  local r = sluice.task(count_runs_cases):await()
  lu.assertEquals(r, {
    { true, 7, 1, n = 3 },
    { true, 4, 1, -3, n = 4 },
    { true, math.maxinteger + 2, "integer", n = 3 },
    { false, 1, 1.5, "b", "c", n = 5 },
    { false, "2", "b", n = 3 },
    { false, false, "a", n = 3 },
    { false, false, false, n = 3 },
  })
end

function TestFlowRuns:test_the_loop_uses_it_where_it_applies()
  local function words(line) return line:gmatch("%a+") end
  local function src(fl) return (C.compile(fl.ops, fl.red)) end
  local base = F.from_enumerable({ "a" }):flat_map(words)
  lu.assertStrContains(src(base:frequencies()), "if not COUNT_RUNS(xs1, acc, 1) then")
  lu.assertStrContains(src(base:reduce(function() return {} end, count)), "if not COUNT_RUNS(xs1, acc, 1) then")
  local pair = base:map(function(w) return { w, 1 } end)
  lu.assertStrContains(src(pair:reduce_by_key(function(a, b) return a + b end)), "if not COUNT_RUNS(xs1, acc, PAIRK) then")
  lu.assertStrContains(src(pair:reduce_by_key(function(a, b) return b + a end)), "if not COUNT_RUNS(xs1, acc, PAIRK) then")
  -- not: another reducer, a sum that is not exactly an addition, an
  -- operation between the flat_map and the count, frequencies_by
  lu.assertNotStrContains(src(pair:reduce_by_key(function(a, b) return a * b end)), "COUNT_RUNS(")
  lu.assertNotStrContains(src(pair:reduce_by_key(function(a, b) return a + b + 0 end)), "COUNT_RUNS(")
  lu.assertNotStrContains(src(base:reduce(function() return {} end, function(w, acc)
    acc[w] = (acc[w] or 0) + 2
    return acc
  end)), "COUNT_RUNS(")
  lu.assertNotStrContains(src(base:map(string.upper):frequencies()), "COUNT_RUNS(")
  lu.assertNotStrContains(src(base:frequencies_by(string.upper)), "COUNT_RUNS(")
  -- the first layer of a keyed combining (the planner's own combining
  -- spec): one accumulator, counted in C; per partition (a partition by
  -- another key): not
  local P = require("sluice.flow_plan")
  local function comb_src(fl)
    local comb = assert(P.combining(fl, 2))
    local up = fl.src.flows[1]
    return (C.compile(up.ops, up.red, nil, comb)), comb.keyed
  end
  local lines = F.from_enumerable({ "a" }):flat_map(words)
  local merge = function(part, acc)
    for k, n in pairs(part) do acc[k] = (acc[k] or 0) + n end
    return acc
  end
  for name, fl in pairs({
    frequencies = lines:partition():frequencies(),
    count = lines:partition():reduce(function() return {} end, count),
    count_merge = lines:partition():reduce(function() return {} end, count, { merge = merge, keyed = true }),
    reduce_by_key = lines:map(function(w) return { w, 1 } end):partition({ key = { index = 1 } })
      :reduce_by_key(function(a, b) return a + b end),
  }) do
    local s, keyed = comb_src(fl)
    lu.assertTrue(keyed, name)
    lu.assertStrContains(s, "if not COUNT_RUNS(xs1, acc, ", false, name)
  end
  local s, keyed = comb_src(lines:partition({ key = string.upper }):frequencies())
  lu.assertNil(keyed)
  lu.assertNotStrContains(s, "COUNT_RUNS(")
end

os.exit(lu.LuaUnit.run())
