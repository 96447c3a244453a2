-- examples/tour_flow.lua: Flow as a parallel Enum. Nothing runs until a
-- terminal method (to_list, run, stream, start) is called.
local flow = sluice.flow
local function sum(e, acc) return acc + e end

-- map / filter / reduce over 1..1000 with 2 stages: the sum of the even squares.
-- Each stage reduces the events it read, so there is one result per stage.
local squares = flow.from_enumerable(sluice.range(1, 1000), { stages = 2 })
  :map(function(x) return x * x end)
  :filter(function(x) return x % 2 == 0 end)
local per_stage = squares:reduce(function() return 0 end, sum):to_list()
print(#per_stage .. " results, one per stage; together " .. per_stage[1] + per_stage[2])

-- one result: departition merges the stages' accumulators into one event
local one = squares:reduce(function() return 0 end, sum)
  :departition(function() return 0 end, sum, function(acc) return acc end)
  :to_list()
print("departition: " .. sluice.inspect(one))

-- a table accumulator emits its items; emit("state") emits the table itself
local state = flow.from_enumerable({ "a", "b", "a" }, { stages = 1 })
  :reduce(function() return {} end, function(w, acc) acc[w] = (acc[w] or 0) + 1; return acc end)
  :emit("state")
  :to_list()
print("emit state: " .. sluice.inspect(state))

-- per-key results need a partition by the key: each key then lives in one stage
local sales = { { "ann", 5 }, { "bob", 1 }, { "ann", 2 }, { "cy", 4 }, { "bob", 3 }, { "ann", 1 } }
local function totals(f)
  local out = {}
  for _, kv in ipairs(f:reduce_by_key(function(a, b) return a + b end):to_list()) do
    out[#out + 1] = kv[1] .. "=" .. kv[2]
  end
  table.sort(out)
  return table.concat(out, " ")
end
local src = flow.from_enumerable(sales, { stages = 1 })
print("partition():              " .. totals(src:partition({ stages = 2 })))
print("partition{key = index 1}: " .. totals(src:partition({ stages = 2, key = { index = 1 } })))

-- a join: names with their totals, matched on the key
local names = flow.from_enumerable({ { "ann", "Ann" }, { "bob", "Bob" } }, { stages = 1 })
local joined = flow.bounded_join("inner", names,
    src:partition({ stages = 2, key = { index = 1 } }):reduce_by_key(function(a, b) return a + b end),
    function(n) return n[1] end, function(t) return t[1] end,
    function(n, t) return n[2] .. " bought " .. t[2] end, { stages = 2 })
  :to_list()
table.sort(joined)
print(table.concat(joined, "; "))
