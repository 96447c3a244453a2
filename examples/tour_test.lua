-- examples/tour_test.lua: testing your own pipeline with luaunit. The flow
-- is a function of its input, so a test feeds it a small array and
-- compares the result exactly (sorted: partitions keep no order).
local lu = require("luaunit")
local flow = sluice.flow

-- the pipeline under test: the words of some lines, counted
local function word_counts(lines, stages)
  local counts = flow.from_enumerable(lines, { stages = stages })
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
    :partition({ stages = stages })
    :frequencies()
    :to_list()
  table.sort(counts, function(a, b) return a[1] < b[1] end)
  return counts
end

TestWordCounts = {}
function TestWordCounts.test_counts_each_word_once()
  lu.assertEquals(word_counts({ "a b", "B a", "c" }, 2), { { "a", 2 }, { "b", 2 }, { "c", 1 } })
end
function TestWordCounts.test_same_result_with_one_stage()
  local text = { "the gate, the wheel", "The river" }
  lu.assertEquals(word_counts(text, 1), word_counts(text, 3))
end
function TestWordCounts.test_no_lines_no_counts()
  lu.assertEquals(word_counts({}, 2), {})
end

os.exit(lu.LuaUnit.run())
