-- examples/wordcount.lua: word count on Flow, words -> partition by word -> counts per
-- partition; the counts come back to the script, which prints the totals
-- and the ten most frequent words. sluice.words reads the file and cuts
-- it into lowercased words in C (what line:lower():gmatch("%a+") gives),
-- each first-layer stage reading its own part of the file, and
-- frequencies counts right after the partition, so each of those stages
-- counts its own words and only the counts cross the partition
-- (print(flow:explain()) shows the plan).
--   sluice examples/wordcount.lua [file] [stages]
local path = arg[1] or "examples/data/text.txt"
local stages = math.tointeger(tonumber(arg[2])) or sluice.workers()
local flow = sluice.flow

local counts = flow.from_enumerable(sluice.words(path), { stages = stages })
  :partition({ stages = stages })
  :frequencies()
  :to_list()   -- each partition emits its {word, count} pairs

local total = 0
for _, wc in ipairs(counts) do total = total + wc[2] end
table.sort(counts, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end)
print(("%d words, %d distinct"):format(total, #counts))
for i = 1, math.min(10, #counts) do
  print(("%-8s %d"):format(counts[i][1], counts[i][2]))
end
