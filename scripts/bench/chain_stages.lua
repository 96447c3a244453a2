-- The three stages of the GenStage chain workload, shared by chain.lua
-- (run by the engine) and chain_plain.lua (the same callbacks called in one
-- plain loop, to subtract their own work from the chain's time).
local M = {}

M.producer = {
  type = "producer",
  init = function(total) return { next = 1, total = total } end,
  handle_demand = function(demand, s)
    local first = s.next
    local last = math.min(first + demand - 1, s.total)
    local events, n = {}, 0
    for i = first, last do
      n = n + 1
      events[n] = i
    end
    s.next = last + 1
    if last >= s.total then sluice.self():finish() end
    return events, s
  end,
}

M.producer_consumer = {
  type = "producer_consumer",
  handle_events = function(events, from, s) return events, s end,
}

-- counts events and checks they arrive complete and in order
M.consumer = {
  type = "consumer",
  init = function() return { count = 0, bad = 0 } end,
  handle_events = function(events, from, s)
    local n = s.count + #events
    if events[#events] ~= n then s.bad = s.bad + 1 end
    s.count = n
    return nil, s
  end,
  terminate = function(reason, s)
    print(("RESULT count=%d bad=%d"):format(s.count, s.bad))
  end,
}

M.hops = 2 -- producer -> producer_consumer -> consumer

return M
