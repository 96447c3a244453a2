-- Word count on Flow: lines -> words -> partition by word -> counts.
--   sluice -w N scripts/bench/wordcount.lua CORPUS [shape]
-- shape "combined" (default): flat_map returns the line's gmatch iterator
--   and the reduce declares its merge and a keyed accumulator, so each
--   first-layer stage counts its own words in one table, cuts it by
--   partition at the end, and only the partial counts cross the partition
--   (lua/README.md §8.4, combining).
-- shape "events" (the README's): flat_map returns an array per line and
--   the reduce has no merge; its reducer is a plain count, which combines
--   as frequencies does (lua/README.md §8.4, a reduce that counts).
-- shape "iter": flat_map returns the iterator, the same reduce.
-- shape "hop": as "events" with a count that reads an upvalue, which is
--   not taken for a count: every word crosses the partition as an event.
-- shape "frequencies": the iterator, partition(), frequencies() (keyed
--   combining, with no merge to write).
-- shape "reduce_by_key": the iterator, map to {word, 1},
--   partition({key = {index = 1}}), reduce_by_key(+) (keyed combining).
-- shape "words": sluice.words (the file read and cut into lowercased
--   words in C), partition(), frequencies() (keyed combining).
-- Prints "RESULT <summary>" (see words.lua).
local dir = arg[0]:match("^(.*)/") or "."
local W = dofile(dir .. "/words.lua")
local path = assert(arg[1], "usage: wordcount.lua CORPUS [combined|events|hop|iter|frequencies|reduce_by_key|words]")
local shape = arg[2] or "combined"
local flow = sluice.flow

local function count(word, acc)
  acc[word] = (acc[word] or 0) + 1
  return acc
end

-- the array of a line's words (Flow's own shape)
local function words_array(line)
  local words, n = {}, 0
  for w in line:lower():gmatch("%a+") do
    n = n + 1
    words[n] = w
  end
  return words
end

local counts
if shape == "combined" then
  counts = flow.from_enumerable(sluice.lines(path))
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
    :partition()
    :reduce(function() return {} end, count, { merge = function(part, acc)
      for word, n in pairs(part) do acc[word] = (acc[word] or 0) + n end
      return acc
    end, keyed = true })
    :to_list()
elseif shape == "events" then
  counts = flow.from_enumerable(sluice.lines(path))
    :flat_map(words_array)
    :partition()
    :reduce(function() return {} end, count)
    :to_list()
elseif shape == "hop" then
  local one = 1
  counts = flow.from_enumerable(sluice.lines(path))
    :flat_map(words_array)
    :partition()
    :reduce(function() return {} end, function(word, acc)
      acc[word] = (acc[word] or 0) + one
      return acc
    end)
    :to_list()
elseif shape == "iter" then
  counts = flow.from_enumerable(sluice.lines(path))
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
    :partition()
    :reduce(function() return {} end, count)
    :to_list()
elseif shape == "frequencies" then
  counts = flow.from_enumerable(sluice.lines(path))
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
    :partition()
    :frequencies()
    :to_list()
elseif shape == "words" then
  counts = flow.from_enumerable(sluice.words(path))
    :partition()
    :frequencies()
    :to_list()
elseif shape == "reduce_by_key" then
  counts = flow.from_enumerable(sluice.lines(path))
    :flat_map(function(line) return line:lower():gmatch("%a+") end)
    :map(function(word) return { word, 1 } end)
    :partition({ key = { index = 1 } })
    :reduce_by_key(function(a, b) return a + b end)
    :to_list()
else
  error("unknown shape " .. shape)
end

print("RESULT " .. W.summary(W.from_pairs(counts)))
