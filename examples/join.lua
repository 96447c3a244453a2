-- examples/join.lua: bounded_join, customers and their orders, joined on the customer id.
-- Matches leave as soon as both sides have arrived; with an outer mode
-- the rows left without a partner come out at the end, with nil on the
-- missing side.
--   sluice examples/join.lua [inner|left_outer|right_outer|full_outer] [stages]
local mode = arg[1] or "full_outer"
local stages = math.tointeger(tonumber(arg[2])) or sluice.workers()
local flow = sluice.flow

local customers = {
  { id = 1, name = "ada" }, { id = 2, name = "bob" }, { id = 3, name = "cy" }, { id = 4, name = "dee" },
}
local orders = {
  { order = 101, customer = 1, amount = 30 }, { order = 102, customer = 2, amount = 12 },
  { order = 103, customer = 1, amount = 8 }, { order = 104, customer = 5, amount = 99 },
  { order = 105, customer = 3, amount = 40 }, { order = 106, customer = 2, amount = 5 },
}

local rows = flow.bounded_join(mode,
    flow.from_enumerable(customers, { stages = 1 }),
    flow.from_enumerable(orders, { stages = 1 }),
    function(c) return c.id end,
    function(o) return o.customer end,
    function(c, o)
      return ("%-4s %-5s %s"):format(c and c.name or "?", o and o.order or "-", o and o.amount or "-")
    end,
    { stages = stages })
  :to_list()

table.sort(rows)
print(("%s join, %d rows"):format(mode, #rows))
for _, r in ipairs(rows) do print(r) end
