-- Enumerables, from_enumerable and sluice.stream.
local lu = require("luaunit")

local function collect(subs, limit)
  local out = {}
  for ev in sluice.stream(subs) do
    out[#out + 1] = ev
    if limit and #out == limit then break end
  end
  return out
end

local tmp = os.tmpname()

local function write_tmp(text)
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
end

TestEnumerables = {}

function TestEnumerables:test_array()
  lu.assertEquals(collect({sluice.from_enumerable({1, 2, 3, "x", {y = 1}})}), {1, 2, 3, "x", {y = 1}})
  lu.assertEquals(collect({sluice.from_enumerable({})}), {})
end

function TestEnumerables:test_range()
  lu.assertEquals(collect({sluice.from_enumerable(sluice.range(1, 5))}), {1, 2, 3, 4, 5})
  lu.assertEquals(collect({sluice.from_enumerable(sluice.range(10, 1, -3))}), {10, 7, 4, 1})
  lu.assertEquals(collect({sluice.from_enumerable(sluice.range(5, 1))}), {})
  -- infinite, stopped by breaking out
  lu.assertEquals(collect({sluice.from_enumerable(sluice.range(1, math.huge))}, 4), {1, 2, 3, 4})
  local n = 0
  for _ in sluice.stream({sluice.from_enumerable(sluice.range(1, 100000))}) do n = n + 1 end
  lu.assertEquals(n, 100000)
end

-- A range ends exactly at the integer limits: stepping past
-- math.maxinteger (or math.mininteger) would wrap around.
function TestEnumerables:test_range_at_the_integer_limits()
  local max, min = math.maxinteger, math.mininteger
  local function through(enum) return collect({sluice.from_enumerable(enum)}, 20) end
  lu.assertEquals(through(sluice.range(max - 3, max)), {max - 3, max - 2, max - 1, max})
  lu.assertEquals(through(sluice.range(max - 3, max, 2)), {max - 3, max - 1})
  lu.assertEquals(through(sluice.range(max - 3, max, 3)), {max - 3, max})
  lu.assertEquals(through(sluice.range(max - 3, max, max)), {max - 3})
  lu.assertEquals(through(sluice.range(max - 2, math.huge)), {max - 2, max - 1, max})
  lu.assertEquals(through(sluice.range(min + 3, min, -1)), {min + 3, min + 2, min + 1, min})
  lu.assertEquals(through(sluice.range(min + 3, min, -2)), {min + 3, min + 1})
  lu.assertEquals(through(sluice.range(min + 2, -math.huge, -1)), {min + 2, min + 1, min})
  lu.assertEquals(through(sluice.range(min, max, max)), {min, -1, max - 1})
  lu.assertEquals(through(sluice.range(max, min, min)), {max, -1})
  lu.assertEquals(through(sluice.range(-1, max, max)), {-1, max - 1})
  lu.assertEquals(through(sluice.range(max, max)), {max})
  lu.assertEquals(through(sluice.range(min, min, -1)), {min})
  -- through sluice.stream with a demand that asks past the end at once
  local out = {}
  for v in sluice.stream({{sluice.from_enumerable(sluice.range(max - 3, max)), max_demand = 2}}) do
    out[#out + 1] = v
  end
  lu.assertEquals(out, {max - 3, max - 2, max - 1, max})
  -- an iterator over the enumerator by hand, one item per pull
  local next_items = require("sluice.stages")._enumerator(sluice.range(min + 1, min, -1))
  local items = {}
  lu.assertFalse(next_items(1, items))
  lu.assertTrue(next_items(1, items))
  lu.assertEquals(items, {min + 1, min})
  lu.assertTrue(next_items(1, items))
  lu.assertEquals(items, {min + 1, min})
end

function TestEnumerables:test_range_errors()
  lu.assertErrorMsgContains("sluice.range: first must be an integer, got 1.5", sluice.range, 1.5, 3)
  lu.assertErrorMsgContains("sluice.range: step must not be 0", sluice.range, 1, 3, 0)
  lu.assertErrorMsgContains("sluice.range: last must be an integer or math.huge", sluice.range, 1, "x")
end

function TestEnumerables:test_lines()
  write_tmp("first\nsecond\r\n\nlast")
  lu.assertEquals(collect({sluice.from_enumerable(sluice.lines(tmp))}), {"first", "second", "", "last"})
  lu.assertErrorMsgContains("sluice.lines: /nonexistent/x", sluice.lines, "/nonexistent/x")
  lu.assertErrorMsgContains("sluice.lines: path must be a string", sluice.lines, 42)
end

-- The C reader behind sluice.lines (sluice._lines(path, from, to)): the
-- lines that start in [from, to), in chunks of k; with words, their words.
local function read_all(path, from, to, k, words)
  local r = sluice._lines(path, from, to, words)
  local out = {}
  while not r:read(k or 3, out) do end
  return out
end

function TestEnumerables:test_lines_reader_ranges_cover_each_line_once()
  local text = "a\n\nbc\r\n\rd\r\nlong " .. string.rep("x", 200000) .. "\nlast\r"
  write_tmp(text)
  local whole = { "a", "", "bc", "\rd", "long " .. string.rep("x", 200000), "last\r" }
  lu.assertEquals(read_all(tmp), whole)
  lu.assertEquals(read_all(tmp, 0, math.maxinteger, 1), whole)
  -- any cut into two ranges gives every line exactly once, in order
  for _, cut in ipairs({ 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 100, 200012, 200013, 200014, #text, #text + 5 }) do
    local got = read_all(tmp, 0, cut)
    for _, l in ipairs(read_all(tmp, cut)) do got[#got + 1] = l end
    lu.assertEquals(got, whole, "cut at " .. cut)
  end
  -- a range that starts inside the first line and ends before the second
  lu.assertEquals(read_all(tmp, 1, 2), {})
  lu.assertEquals(read_all(tmp, 2, 3), { "" })
  -- done is sticky; close is allowed twice
  local r = sluice._lines(tmp, 0, 2)
  local out = {}
  lu.assertTrue(r:read(10, out))
  lu.assertTrue(r:read(10, out))
  lu.assertEquals(out, { "a" })
  r:close()
  r:close()
  lu.assertErrorMsgContains("sluice.lines: /nonexistent/x", sluice._lines, "/nonexistent/x")
  lu.assertErrorMsgContains("must be >= 0", sluice._lines, tmp, -1)
  local empty = os.tmpname()
  lu.assertEquals(read_all(empty), {})
  os.remove(empty)
end

-- What sluice.words yields, computed in Lua: the runs of ASCII letters,
-- lowercased (gmatch's %a in the C locale, which lua5.4 and sluice use).
local function lua_words(text)
  local out = {}
  for w in text:lower():gmatch("%a+") do out[#out + 1] = w end
  return out
end

function TestEnumerables:test_words()
  local text = "Hello, World! hello\r\nfoo-bar BAZ42qux\n\n  x\ncaf\xc3\xa9 na\xefve _a_ [z]@`{\nlast"
  write_tmp(text)
  local want = { "hello", "world", "hello", "foo", "bar", "baz", "qux", "x", "caf", "na", "ve", "a", "z", "last" }
  lu.assertEquals(lua_words(text), want)
  lu.assertEquals(collect({sluice.from_enumerable(sluice.words(tmp))}), want)
  -- a split source: the stages read their parts of the file themselves
  lu.assertEquals(sluice.flow.from_enumerable(sluice.words(tmp), { stages = 1 }):to_list(), want)
  lu.assertErrorMsgContains("sluice.words: /nonexistent/x", sluice.words, "/nonexistent/x")
  lu.assertErrorMsgContains("sluice.words: path must be a string, got 42", sluice.words, 42)
  local ok, err = pcall(sluice._lines, "/nonexistent/x", 0, 10, true)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.words: /nonexistent/x")
end

-- The words reader over byte ranges: any cut gives every word once, in
-- order; a chunk ends after the line that reached k words.
function TestEnumerables:test_words_reader_ranges()
  local text = "a bb\n\nCC dd ee\r\n12 ff\n" .. string.rep("x", 100000) .. "Y z\nw"
  write_tmp(text)
  local whole = lua_words(text)
  local function read_words(from, to, k) return read_all(tmp, from or 0, to or math.maxinteger, k, true) end
  lu.assertEquals(read_words(), whole)
  lu.assertEquals(read_words(0, math.maxinteger, 1), whole)
  for _, cut in ipairs({ 1, 2, 3, 4, 5, 6, 10, 17, 18, 19, 22, 100021, 100022, #text, #text + 5 }) do
    local got = read_words(0, cut)
    for _, w in ipairs(read_words(cut)) do got[#got + 1] = w end
    lu.assertEquals(got, whole, "cut at " .. cut)
  end
  local r = sluice._lines(tmp, 0, math.maxinteger, true)
  local out = {}
  lu.assertFalse(r:read(3, out))
  lu.assertEquals(out, { "a", "bb", "cc", "dd", "ee" })   -- whole lines: 2, 0, then 3 words
end

-- A word count over sluice.words equals the count of lua_words, for a
-- file cut into several parts (stages 1, 3 and the default).
function TestEnumerables:test_words_flow_counts()
  local rnd, parts = 7, {}
  local function nxt(n)
    rnd = (rnd * 1103515245 + 12345) % 2147483648
    return rnd % n
  end
  local alphabet = "abcdeABCDE 0,.-\t"
  for i = 1, 300000 do
    local k = nxt(#alphabet) + 1
    parts[i] = nxt(40) == 0 and "\n" or alphabet:sub(k, k)
  end
  local text = table.concat(parts)
  write_tmp(text)
  local want, total = {}, 0
  for _, w in ipairs(lua_words(text)) do
    want[w] = (want[w] or 0) + 1
    total = total + 1
  end
  lu.assertTrue(total > 20000)
  for _, stages in ipairs({ 1, 3, sluice.workers() }) do
    local got, n = {}, 0
    local pairs_out = sluice.flow.from_enumerable(sluice.words(tmp), { stages = stages })
      :partition({ stages = stages })
      :frequencies()
      :to_list()
    for _, p in ipairs(pairs_out) do
      lu.assertNil(got[p[1]], p[1])
      got[p[1]] = p[2]
      n = n + p[2]
    end
    lu.assertEquals(n, total, "stages " .. stages)
    lu.assertEquals(got, want, "stages " .. stages)
  end
end

function TestEnumerables:test_iterator_function_runs_on_main()
  local i = 0
  local calls_on_main = 0
  local function it()
    i = i + 1
    calls_on_main = calls_on_main + 1   -- an upvalue of the main state: not copied
    if i <= 7 then return i * i end
  end
  lu.assertEquals(collect({{sluice.from_enumerable(it), max_demand = 3}}), {1, 4, 9, 16, 25, 36, 49})
  lu.assertEquals(calls_on_main, 8)
end

function TestEnumerables:test_from_enumerable_errors()
  lu.assertErrorMsgContains("sluice.from_enumerable: expected an enumerable, got number",
    sluice.from_enumerable, 42)
  lu.assertErrorMsgContains("sluice.from_enumerable: unknown option \"bogus\"",
    sluice.from_enumerable, {1}, {bogus = 1})
  lu.assertErrorMsgContains("on_cancel must be \"continue\" or \"stop\"",
    sluice.from_enumerable, {1}, {on_cancel = "never"})
end

function TestEnumerables:test_on_cancel_stop()
  local p = sluice.from_enumerable(sluice.range(1, math.huge), {on_cancel = "stop"})
  lu.assertEquals(collect({p}, 3), {1, 2, 3})
  lu.assertEquals(p:await(2000), "normal")
  local q = sluice.from_enumerable(sluice.range(1, math.huge))
  lu.assertEquals(collect({q}, 3), {1, 2, 3})
  sluice.sleep(50)
  lu.assertTrue(q:alive())
  q:stop()
  lu.assertFalse(q:alive())
end

function TestEnumerables:test_stream_two_producers()
  local a = sluice.from_enumerable({1, 2, 3})
  local b = sluice.from_enumerable({10, 20})
  local out = collect({a, b})
  table.sort(out)
  lu.assertEquals(out, {1, 2, 3, 10, 20})
end

function TestEnumerables:test_stream_raises_producer_error()
  local p = sluice.start({type = "producer", handle_demand = function(n, s) error("boom in producer") end}, 0)
  local ok, err = pcall(collect, {p})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "boom in producer")
  -- temporary: the failing producer just ends its part
  local q = sluice.start({type = "producer", handle_demand = function(n, s) error("boom again") end}, 0)
  lu.assertEquals(collect({{q, cancel = "temporary"}, sluice.from_enumerable({5})}), {5})
end

function TestEnumerables:test_stream_bad_arguments()
  lu.assertErrorMsgContains("sluice.stream: expected a list of producers, got number", sluice.stream, 1)
  lu.assertEquals(collect({}), {})
end

os.exit(lu.LuaUnit.run())
