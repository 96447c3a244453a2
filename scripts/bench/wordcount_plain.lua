-- Baseline for wordcount.lua: plain lua5.4, line by line, gmatch into a table.
--   lua5.4 scripts/bench/wordcount_plain.lua CORPUS
local dir = arg[0]:match("^(.*)/") or "."
local W = dofile(dir .. "/words.lua")
local path = assert(arg[1], "usage: wordcount_plain.lua CORPUS")

local counts = {}
for line in io.lines(path) do
  for w in line:lower():gmatch("%a+") do
    counts[w] = (counts[w] or 0) + 1
  end
end

print("RESULT " .. W.summary(pairs(counts)))
