-- Shared by the word-count workloads (sluice and plain lua5.4): the
-- checksum line both print, so the runner can compare them.
local M = {}

-- summary(iter, state, init): a generic-for triple yielding word, count:
-- "words=<total> distinct=<n> top=w1:c1,...,w10:c10" (count desc, word asc);
-- the same format gencorpus writes into the corpus's .meta file.
function M.summary(iter, state, init)
  local total, distinct, all = 0, 0, {}
  for w, c in iter, state, init do
    total, distinct = total + c, distinct + 1
    all[distinct] = { w, c }
  end
  table.sort(all, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  local top = {}
  for i = 1, math.min(10, #all) do top[i] = all[i][1] .. ":" .. all[i][2] end
  return ("words=%d distinct=%d top=%s"):format(total, distinct, table.concat(top, ","))
end

-- iterator over an array of {word, count} pairs (what a flow emits)
function M.from_pairs(list)
  local i = 0
  return function()
    i = i + 1
    local p = list[i]
    if p then return p[1], p[2] end
  end
end

return M
