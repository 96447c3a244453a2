-- A partitioned pipeline: a producer with a partition dispatcher sends even
-- numbers to one producer_consumer and odd numbers to another (named
-- partitions, with a hash that also drops the multiples of 5); both feed
-- one consumer. Order is kept within a partition, not across them.
--   sluice examples/gs_partition.lua [last]
local last = tonumber(arg[1]) or 20

local Numbers = {
  type = "producer",
  init = function(last) return {next = 1, last = last} end,
  handle_demand = function(demand, st)
    local events = {}
    while #events < demand and st.next <= st.last do
      events[#events + 1] = st.next
      st.next = st.next + 1
    end
    if st.next > st.last then sluice.self():finish() end
    return events, st
  end,
}

-- squares its partition's numbers, tagged with the partition's name;
-- finishes when its producer has ended
local Square = {
  type = "producer_consumer",
  init = function(name) return name end,
  handle_events = function(events, from, name)
    local out = {}
    for i, e in ipairs(events) do out[i] = {name, e, e * e} end
    return out, name
  end,
  handle_cancel = function(reason, from, name)
    sluice.self():finish()
    return {}, name
  end,
}

-- collects per partition; stops with the result once both are done
local Collect = {
  type = "consumer",
  init = function() return {even = {}, odd = {}} end,
  handle_events = function(events, from, got)
    for _, e in ipairs(events) do
      local t = got[e[1]]
      t[#t + 1] = ("%d^2=%d"):format(e[2], e[3])
    end
    return {}, got
  end,
  handle_cancel = function(reason, from, got)
    if sluice.self():stats().producers == 0 then sluice.self():stop({"done", got}) end
    return {}, got
  end,
}

local numbers = sluice.start(Numbers, last, {
  demand = "accumulate",
  dispatcher = sluice.dispatcher.partition{
    partitions = {"even", "odd"},
    hash = function(n)
      if n % 5 == 0 then return nil end       -- dropped
      return n % 2 == 0 and "even" or "odd"
    end,
  },
})
local even = sluice.start(Square, "even", {subscribe_to = {{numbers, partition = "even", max_demand = 3, cancel = "transient"}}})
local odd = sluice.start(Square, "odd", {subscribe_to = {{numbers, partition = "odd", max_demand = 3, cancel = "transient"}}})
local sink = sluice.start(Collect, nil, {subscribe_to = {{even, cancel = "transient"}, {odd, cancel = "transient"}}})
numbers:demand("forward")
local got = sink:await()[2]
print("even: " .. table.concat(got.even, " "))
print("odd:  " .. table.concat(got.odd, " "))
print(("stopped: %s %s %s"):format(numbers:await(), even:await(), odd:await()))
