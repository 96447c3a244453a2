-- Top N with take_sort: the N most frequent words of a text, computed
-- inside the flow. Each partition counts its words and keeps its own N
-- best; one last stage merges those lists into the overall top N.
--   sluice examples/topn.lua [file] [n] [stages]
local path = arg[1] or "examples/data/text.txt"
local n = math.tointeger(tonumber(arg[2])) or 5
local stages = math.tointeger(tonumber(arg[3])) or sluice.workers()
local flow = sluice.flow

-- most frequent first; equal counts in alphabetical order, so that the
-- result does not depend on which partition a word landed in
local function more_frequent(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end

local top = flow.from_enumerable(sluice.lines(path), { stages = stages })
  :flat_map(function(line)
    local words = {}
    for w in line:lower():gmatch("%a+") do
      if #w > 3 then words[#words + 1] = w end
    end
    return words
  end)
  :partition({ stages = stages })
  :reduce(function() return {} end, function(word, acc)
    acc[word] = (acc[word] or 0) + 1
    return acc
  end)
  :take_sort(n, more_frequent)   -- a map accumulator sorts as {word, count} pairs
  :to_list()

-- one window (the global one): one event, the list of the top n
for i, wc in ipairs(top[1]) do
  print(("%d. %-8s %d"):format(i, wc[1], wc[2]))
end
