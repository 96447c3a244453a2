-- Shared by the Flow suites (loaded with dofile): ordering helpers and a
-- recording consumer.
local H = {}

function H.sorted(t, less)
  table.sort(t, less)
  return t
end

-- Orders any mix of values by their printed form.
function H.by_inspect(a, b) return sluice.inspect(a) < sluice.inspect(b) end

-- {key, value} pairs of a table, sorted (by printed form).
local sorted, by_inspect = H.sorted, H.by_inspect
function H.pairs_of(t)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = { k, v } end
  return sorted(out, by_inspect)
end

-- {key, value} pairs that may hold a key more than once, added up per
-- key (a flow whose partitions each emit a key), as sorted pairs.
function H.summed(list)
  local t = {}
  for _, kv in ipairs(list) do t[kv[1]] = (t[kv[1]] or 0) + kv[2] end
  return H.pairs_of(t)
end

-- What each partition of a reducing flow ends with, as {index, sorted
-- pairs of its accumulator}, sorted.
function H.per_partition(fl)
  local pairs_of = H.pairs_of
  local out = fl:on_trigger(function(acc, p) return { { p.index, pairs_of(acc) } } end):to_list()
  return sorted(out, by_inspect)
end

-- A consumer that logs what is cast to it; call it with a field name.
H.Recorder = {
  type = "consumer",
  init = function() return { log = {} } end,
  handle_events = function(_, _, st) return {}, st end,
  handle_cast = function(msg, st)
    st.log[#st.log + 1] = msg
    return {}, st
  end,
  handle_call = function(req, _, st) return st[req], {}, st end,
}

-- The word count of a text file as {word, count} pairs sorted by word,
-- counted by a plain Lua loop (what the flows are checked against).
function H.plain_word_count(path)
  local counts = {}
  for line in io.lines(path) do
    for w in line:lower():gmatch("%a+") do counts[w] = (counts[w] or 0) + 1 end
  end
  local out = {}
  for w, n in pairs(counts) do out[#out + 1] = { w, n } end
  return H.sorted(out, H.by_word)
end

function H.by_word(a, b) return a[1] < b[1] end

return H
