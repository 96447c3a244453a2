-- Word count on Flow: lines -> words -> partition by word -> counts.
--   sluice -w N scripts/bench/wordcount.lua CORPUS
-- Prints "RESULT <summary>" (see words.lua).
local dir = arg[0]:match("^(.*)/") or "."
local W = dofile(dir .. "/words.lua")
local path = assert(arg[1], "usage: wordcount.lua CORPUS")
local flow = sluice.flow

local counts = flow.from_enumerable(sluice.lines(path))
  :flat_map(function(line)
    local words, n = {}, 0
    for w in line:lower():gmatch("%a+") do
      n = n + 1
      words[n] = w
    end
    return words
  end)
  :partition()
  :reduce(function() return {} end, function(word, acc)
    acc[word] = (acc[word] or 0) + 1
    return acc
  end)
  :to_list()

print("RESULT " .. W.summary(W.from_pairs(counts)))
