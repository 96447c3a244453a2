-- Flows over one sluice.range or sluice.lines source whose first layer
-- computes something: each layer stage reads its own part of the source.
local lu = require("luaunit")
local flow = sluice.flow

local function sorted(t) table.sort(t); return t end

local function range_list(first, last, step)
  local out = {}
  for i = first, last, step do out[#out + 1] = i end
  return out
end

local tmp = os.tmpname()
local function write(text)
  local f = assert(io.open(tmp, "wb")); f:write(text); f:close()
  return tmp
end

TestSplit = {}

function TestSplit:test_range_parts_cover_everything_once()
  for _, c in ipairs({{1, 100, 1}, {1, 7, 1}, {10, -10, -3}, {5, 5, 1}, {5, 4, 1}, {0, 99, 7}}) do
    for _, stages in ipairs({1, 2, 3, 8}) do
      local got = flow.from_enumerable(sluice.range(c[1], c[2], c[3]), {stages = stages})
        :map(function(x) return x end):to_list()
      lu.assertEquals(sorted(got), sorted(range_list(c[1], c[2], c[3])),
        ("range(%d, %d, %d) on %d stages"):format(c[1], c[2], c[3], stages))
    end
  end
end

function TestSplit:test_range_one_stage_keeps_order()
  local got = flow.from_enumerable(sluice.range(1, 3000), {stages = 1})
    :map(function(x) return x * 2 end):filter(function(x) return x % 3 ~= 0 end):to_list()
  local want = {}
  for i = 1, 3000 do if (2 * i) % 3 ~= 0 then want[#want + 1] = 2 * i end end
  lu.assertEquals(got, want)
end

function TestSplit:test_range_reduce_per_stage()
  local got = flow.from_enumerable(sluice.range(1, 10000), {stages = 4})
    :reduce(function() return 0 end, function(x, acc) return acc + x end):to_list()
  lu.assertEquals(#got, 4)
  local total = 0
  for _, v in ipairs(got) do total = total + v end
  lu.assertEquals(total, 50005000)
end

function TestSplit:test_lines_parts_cover_every_line_once()
  local lines = {}
  for i = 1, 500 do lines[i] = ("line %d %s"):format(i, string.rep("x", i % 17)) end
  local path = write(table.concat(lines, "\n") .. "\n")
  for _, stages in ipairs({1, 2, 3, 7}) do
    local got = flow.from_enumerable(sluice.lines(path), {stages = stages})
      :map(function(l) return l end):to_list()
    local want = {}
    for i = 1, 500 do want[i] = lines[i] end
    lu.assertEquals(sorted(got), sorted(want), stages .. " stages")
  end
end

function TestSplit:test_lines_crlf_no_final_newline_and_empty_lines()
  local path = write("a\r\nb\n\nc")
  lu.assertEquals(flow.from_enumerable(sluice.lines(path), {stages = 1}):map(function(l) return l end):to_list(),
    {"a", "b", "", "c"})
  lu.assertEquals(sorted(flow.from_enumerable(sluice.lines(path), {stages = 3})
    :map(function(l) return l end):to_list()), {"", "a", "b", "c"})
  local empty = write("")
  lu.assertEquals(flow.from_enumerable(sluice.lines(empty), {stages = 2}):map(function(l) return l end):to_list(), {})
end

function TestSplit:test_lines_word_count_equals_plain_count()
  local words = {"alpha", "beta", "gamma", "delta", "epsilon"}
  local buf, want = {}, {}
  for i = 1, 2000 do
    local line = {}
    for j = 1, (i % 9) + 1 do
      local w = words[(i * j) % #words + 1]
      line[#line + 1] = w
      want[w] = (want[w] or 0) + 1
    end
    buf[i] = table.concat(line, " ")
  end
  local path = write(table.concat(buf, "\n"))
  for _, stages in ipairs({1, 2, 4}) do
    local got = flow.from_enumerable(sluice.lines(path), {stages = stages})
      :flat_map(function(l) local t = {} for w in l:gmatch("%a+") do t[#t + 1] = w end return t end)
      :partition({stages = stages})
      :reduce(function() return {} end, function(w, acc) acc[w] = (acc[w] or 0) + 1; return acc end)
      :to_list()
    local counts = {}
    for _, kv in ipairs(got) do counts[kv[1]] = kv[2] end
    lu.assertEquals(counts, want, stages .. " stages")
  end
end

function TestSplit:test_run_and_departition_over_split_source()
  flow.from_enumerable(sluice.range(1, 5000), {stages = 2}):map(function(x) return x end):run()
  local got = flow.from_enumerable(sluice.range(1, 100), {stages = 3})
    :reduce(function() return 0 end, function(x, acc) return acc + x end)
    :departition(function() return 0 end, function(s, acc) return acc + s end, function(acc) return acc end)
    :to_list()
  lu.assertEquals(got, {5050})
  local top = flow.from_enumerable(sluice.range(1, 100), {stages = 3})
    :reduce(function() return {} end, function(x, acc) acc[#acc + 1] = x; return acc end)
    :take_sort(3, function(a, b) return a > b end)
    :to_list()
  lu.assertEquals(top, {{100, 99, 98}})
end

function TestSplit:test_error_in_split_source_names_the_operation()
  local ok, err = pcall(function()
    return flow.from_enumerable(sluice.range(1, 100), {stages = 2})
      :map(function(x) if x == 77 then error("seventy-seven") end return x end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "(map)")
  lu.assertStrContains(err, "seventy-seven")
  lu.assertEquals(#flow.from_enumerable(sluice.range(1, 10)):map(function(x) return x end):to_list(), 10)
end

os.exit(lu.LuaUnit.run())
