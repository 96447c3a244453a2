-- JSON lines: sluice.jsonl (a source, split or through a producer) and
-- flow:into_jsonl; bad lines raise with the file and line number, or are
-- skipped and counted.
local lu = require("luaunit")
local flow = sluice.flow

local tmp = os.tmpname()

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function ids(events)
  local out = {}
  for i, e in ipairs(events) do out[i] = e.id end
  table.sort(out)
  return out
end

-- a file of n lines {"id":i,...} with line `bad` (if any) not JSON;
-- large enough (over 256 KiB) to be cut into parts
local function big(path, n, bad)
  local parts = {}
  for i = 1, n do
    parts[i] = i == bad and "{oops" or ('{"id":%d,"pad":"%s"}'):format(i, ("x"):rep(40))
  end
  write(path, table.concat(parts, "\n") .. "\n")
end

TestJsonl = {}

function TestJsonl:test_decode_through_a_producer()
  write(tmp, '{"a":1,"b":[1,2.5,null],"c":null}\n\n  \n{"x":"y","n":1e3}\r\n[true,false]\n"s"\n')
  local got = {}
  for e in sluice.stream({ sluice.from_enumerable(sluice.jsonl(tmp)) }) do got[#got + 1] = e end
  lu.assertEquals(got, { { a = 1, b = { 1, 2.5 } }, { x = "y", n = 1000 }, { true, false }, "s" })
  lu.assertEquals(math.type(got[1].a), "integer")
  lu.assertEquals(math.type(got[2].n), "integer")
end

function TestJsonl:test_round_trip()
  -- (one key per object: an object's keys come in the table's own order)
  local events = { { id = 1 }, { tags = { "a", "b" } }, { nested = { x = { y = 2.5 } } }, "text", 42, true }
  lu.assertEquals(flow.from_enumerable(events, { stages = 1 }):into_jsonl(tmp), 6)
  lu.assertEquals(read(tmp), '{"id":1}\n{"tags":["a","b"]}\n{"nested":{"x":{"y":2.5}}}\n"text"\n42\ntrue\n')
  local back = flow.from_enumerable(sluice.jsonl(tmp), { stages = 1 }):map(function(e) return e end):to_list()
  lu.assertEquals(back, events)
end

function TestJsonl:test_split_source_round_trip()
  big(tmp, 20000)
  local src = sluice.jsonl(tmp)
  lu.assertStrContains(flow.from_enumerable(src, { stages = 2 }):map(function(e) return e end):explain(),
    ('input: sluice.jsonl(%q), read by the stages themselves (split source)'):format(tmp))
  local out = tmp .. ".out"
  lu.assertEquals(flow.from_enumerable(src, { stages = 3 }):filter(function(e) return e.id % 2 == 0 end):into_jsonl(out), 10000)
  local got = flow.from_enumerable(sluice.jsonl(out), { stages = 2 }):map(function(e) return e.id end):to_list()
  table.sort(got)
  lu.assertEquals(#got, 10000)
  lu.assertEquals(got[1], 2)
  lu.assertEquals(got[10000], 20000)
  os.remove(out)
end

function TestJsonl:test_bad_line_names_file_and_line()
  write(tmp, '{"id":1}\n{"id":2}\n\n{"id":3,}\n')
  local ok, err = pcall(function()
    for _ in sluice.stream({ sluice.from_enumerable(sluice.jsonl(tmp)) }) do end
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ("sluice.jsonl: %s:4: expected object key string but found "):format(tmp))
end

function TestJsonl:test_bad_line_in_a_split_source()
  for _, bad in ipairs({ 1, 7, 12345, 20000 }) do
    big(tmp, 20000, bad)
    local ok, err = pcall(function()
      return flow.from_enumerable(sluice.jsonl(tmp), { stages = 3 }):map(function(e) return e.id end):run()
    end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, ("sluice.jsonl: %s:%d: expected object key string"):format(tmp, bad))
  end
end

function TestJsonl:test_skip_counts_bad_lines()
  big(tmp, 20000, 5000)
  local src = sluice.jsonl(tmp, { bad = "skip" })
  lu.assertEquals(src:skipped(), 0)
  local got = flow.from_enumerable(src, { stages = 2 }):map(function(e) return e end):to_list()
  lu.assertEquals(#got, 19999)
  lu.assertEquals(src:skipped(), 1)
  write(tmp, 'x\n{"id":1}\ny\n')
  local src2 = sluice.jsonl(tmp, { bad = "skip" })
  local plain = {}
  for e in sluice.stream({ sluice.from_enumerable(src2) }) do plain[#plain + 1] = e end
  lu.assertEquals(ids(plain), { 1 })
  lu.assertEquals(src2:skipped(), 2)
end

function TestJsonl:test_argument_errors()
  lu.assertErrorMsgContains("sluice.jsonl: path must be a string, got 5", sluice.jsonl, 5)
  lu.assertErrorMsgContains('sluice.jsonl: bad must be "error" or "skip", got "x"', sluice.jsonl, tmp, { bad = "x" })
  lu.assertErrorMsgContains('sluice.jsonl: unknown option "mode"', sluice.jsonl, tmp, { mode = 1 })
  lu.assertErrorMsgContains("sluice.jsonl: /nonexistent/x: No such file or directory", sluice.jsonl, "/nonexistent/x")
  lu.assertErrorMsgContains("sluice.flow.into_jsonl: path must be a string, got 3",
    function() flow.from_enumerable({ 1 }):into_jsonl(3) end)
  lu.assertErrorMsgContains("sluice.flow.into_jsonl: /nonexistent/x: No such file or directory",
    function() flow.from_enumerable({ 1 }):into_jsonl("/nonexistent/x") end)
  local ok, err = pcall(function() flow.from_enumerable({ { f = print } }, { stages = 1 }):into_jsonl(tmp) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "sluice.flow.into_jsonl: cannot encode event {f = <function>}")
end

function TestJsonl:test_cjson_is_installed()
  -- the tests need lua-cjson (scripts/deps.sh installs it): fail, not skip
  lu.assertEquals(type(require("cjson").decode), "function")
end

os.exit(lu.LuaUnit.run())
