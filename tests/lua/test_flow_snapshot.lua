-- An event's value is its value when the function that made it returned
-- it, whatever the batch boundaries, the stage count or the source: a
-- table that a user function returns and changes later (an upvalue it
-- appends to, an accumulator it also emits) is copied as it is emitted.
local lu = require("luaunit")
local F = sluice.flow

local tmp = os.tmpname()
local function write_lines(n)
  local f = assert(io.open(tmp, "wb"))
  for i = 1, n do f:write("line ", i, "\n") end
  f:close()
  return tmp
end

-- {1}, {1, 2}, ..., {1, ..., n}
local function prefixes(n)
  local out = {}
  for i = 1, n do
    out[i] = {}
    for j = 1, i do out[i][j] = j end
  end
  return out
end

-- A mapper that appends each event to one table and returns that table.
local function appender()
  local t = {}
  return function(x)
    t[#t + 1] = x
    return t
  end
end

TestSnapshot = {}

function TestSnapshot:test_map_returning_a_table_it_keeps_changing()
  for _, max_demand in ipairs({ 1, 2, 1000 }) do
    local got = F.from_enumerable({ 1, 2, 3 }, { stages = 1, max_demand = max_demand })
      :map(appender()):to_list()
    lu.assertEquals(got, prefixes(3), "max_demand " .. max_demand)
  end
  -- after a partition, on several stages: each stage has its own table
  local got = F.from_enumerable(sluice.range(1, 40), { stages = 1 }):map(function(x) return x end)
    :partition({ stages = 2, hash = function(x) return x % 2 + 1 end })
    :map(appender()):to_list()
  local odd, even = {}, {}
  for _, t in ipairs(got) do
    if t[1] % 2 == 1 then odd[#odd + 1] = t else even[#even + 1] = t end
  end
  table.sort(odd, function(a, b) return #a < #b end)
  table.sort(even, function(a, b) return #a < #b end)
  lu.assertEquals(#odd, 20)
  lu.assertEquals(#even, 20)
  for i = 1, 20 do
    lu.assertEquals(#odd[i], i)
    lu.assertEquals(odd[i][i], 2 * i - 1)
    lu.assertEquals(#even[i], i)
    lu.assertEquals(even[i][i], 2 * i)
  end
end

function TestSnapshot:test_split_sources()
  -- a range read by the layer's own stage, in chunks of many numbers
  local got = F.from_enumerable(sluice.range(1, 300), { stages = 1 }):map(appender()):to_list()
  lu.assertEquals(#got, 300)
  for i = 1, 300 do
    lu.assertEquals(#got[i], i)
    lu.assertEquals(got[i][i], i)
  end
  -- lines: map_batch returns one table per chunk of lines, and the stage
  -- reads several chunks before it sends what came out
  local path = write_lines(200)
  local seen = { n = 0 }
  got = F.from_enumerable(sluice.lines(path), { stages = 1 })
    :map_batch(function(lines)
      seen.n = seen.n + #lines
      return { seen }
    end):to_list()
  local counts = {}
  for i, t in ipairs(got) do counts[i] = t.n end
  lu.assertEquals(counts[#counts], 200)
  for i = 2, #counts do lu.assertTrue(counts[i] > counts[i - 1], sluice.inspect(counts)) end
end

function TestSnapshot:test_emit_and_reduce_emitting_its_accumulator()
  for _, max_demand in ipairs({ 1, 1000 }) do
    local got = F.from_enumerable({ 1, 2, 3 }, { stages = 1, max_demand = max_demand })
      :emit_and_reduce(function() return {} end, function(x, acc)
        acc[#acc + 1] = x
        return { acc }, acc
      end):to_list()
    -- the three events, then the final accumulator's items
    lu.assertEquals(got, { { 1 }, { 1, 2 }, { 1, 2, 3 }, 1, 2, 3 }, "max_demand " .. max_demand)
  end
  local got = F.from_enumerable(sluice.range(1, 4), { stages = 1 })
    :emit_and_reduce(function() return { n = 0 } end, function(_, acc)
      acc.n = acc.n + 1
      return { acc, acc }, acc
    end):emit("nothing"):to_list()
  lu.assertEquals(got, { { n = 1 }, { n = 1 }, { n = 2 }, { n = 2 }, { n = 3 }, { n = 3 }, { n = 4 }, { n = 4 } })
end

function TestSnapshot:test_flat_map_map_values_group_by_and_join()
  local base = F.from_enumerable({ 1, 2, 3 }, { stages = 1 })
  -- an array holding the changing table, and an iterator yielding it
  lu.assertEquals(base:flat_map(function(x) return { appender()(x) } end):to_list(), { { 1 }, { 2 }, { 3 } })
  local add = appender()
  lu.assertEquals(base:flat_map(function(x) return { add(x) } end):to_list(), prefixes(3))
  local t = {}
  lu.assertEquals(base:flat_map(function(x)
    local k = 0
    return function()
      k = k + 1
      if k > 2 then return nil end
      t[#t + 1] = x * 10 + k
      return t
    end
  end):to_list(), { { 11 }, { 11, 12 }, { 11, 12, 21 }, { 11, 12, 21, 22 },
    { 11, 12, 21, 22, 31 }, { 11, 12, 21, 22, 31, 32 } })
  -- map_values
  add = appender()
  lu.assertEquals(base:map(function(x) return { "k" .. x, x } end):map_values(add):to_list(),
    { { "k1", { 1 } }, { "k2", { 1, 2 } }, { "k3", { 1, 2, 3 } } })
  -- group_by keeps each value as it was made
  add = appender()
  lu.assertEquals(base:group_by(function() return "all" end, add):to_list(), { { "all", prefixes(3) } })
  add = appender()
  lu.assertEquals(base:map(add):group_by(function(t2) return #t2 % 2 end):emit("state"):to_list(),
    { { [0] = { { 1, 2 } }, [1] = { { 1 }, { 1, 2, 3 } } } })
  -- a join function returning a table it changes
  local rows = {}
  local left = F.from_enumerable({ { 1, "a" }, { 1, "b" } }, { stages = 1 })
  local right = F.from_enumerable({ { 1, "x" } }, { stages = 1 })
  local first = function(e) return e[1] end
  local got = F.bounded_join("inner", left, right, first, first, function(l)
    rows[#rows + 1] = l[2]
    return rows
  end, { stages = 1 }):to_list()
  table.sort(got, function(a, b) return #a < #b end)
  lu.assertEquals(#got, 2)
  lu.assertEquals(#got[1], 1)
  lu.assertEquals(#got[2], 2)
end

function TestSnapshot:test_copies_are_made_as_sending_would()
  -- shared and cyclic references survive, a module table is sent by name,
  -- metatables are not sent
  local got = F.from_enumerable({ 1 }, { stages = 1 }):map(function(x)
    local shared = { x }
    local t = { shared, shared, lib = string }
    t.self = t
    return t
  end):to_list()[1]
  lu.assertEquals(got[1], { 1 })
  lu.assertTrue(got[1] == got[2])
  lu.assertTrue(got.self == got)
  lu.assertTrue(got.lib == string)
  got = F.from_enumerable({ 1 }, { stages = 1 }):map(function(x)
    return setmetatable({ x }, { __index = function() return "meta" end })
  end):to_list()[1]
  lu.assertEquals(got, { 1 })
  lu.assertNil(getmetatable(got))
  lu.assertNil(got.other)
  -- a value nested too deep still fails as it is sent
  local ok, err = pcall(function()
    return F.from_enumerable({ 1 }, { stages = 1 }):map(function()
      local t = {}
      for _ = 1, 300 do t = { t } end
      return t
    end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "deeper than 200 levels")
  -- scalars and strings pass as they are
  lu.assertEquals(F.from_enumerable({ 1, 2 }, { stages = 1 }):map(function(x) return ("s"):rep(x) end):to_list(),
    { "s", "ss" })
end

os.exit(lu.LuaUnit.run())
