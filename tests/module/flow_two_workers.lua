-- A Flow on two workers, run by the sluice module in the stock lua5.4
-- (tests/module/module.sh: SLUICE_WORKERS=2 lua5.4 -l sluice THIS).
-- Word counts over two partitions, and the workers the map stages ran on.
local F = sluice.flow
local text = {
  "the quick brown fox", "jumps over the lazy dog", "the dog sleeps",
  "a fox and a dog", "over and over",
}
local counts = F.from_enumerable(text, {stages = 2, max_demand = 1})
  :flat_map(function(line)
    local words = {}
    for w in line:gmatch("%a+") do words[#words + 1] = w end
    return words
  end)
  :partition({stages = 2})
  :reduce(function() return {} end, function(w, acc)
    acc[w] = (acc[w] or 0) + 1
    return acc
  end)
  :to_list()
table.sort(counts, function(a, b) return a[1] < b[1] end)
local line = {}
for _, kv in ipairs(counts) do line[#line + 1] = kv[1] .. "=" .. kv[2] end
print("workers", sluice.workers())
print(table.concat(line, " "))
-- each stage of a two-stage layer reports the worker it runs on
local places = F.from_enumerable(sluice.range(1, 64))
  :partition({stages = 2})
  :map(function() return sluice.self():stats().worker end)
  :uniq()
  :partition({stages = 1})
  :uniq()
  :to_list()
table.sort(places)
print("the layer ran on workers", table.concat(places, " "))
