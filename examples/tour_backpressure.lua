-- examples/tour_backpressure.lua: a slow consumer sets the pace. The producer
-- makes events only when asked (handle_demand), so it waits while the
-- consumer works; both run on worker 1, so the log keeps one order.
local Producer = { type = "producer",
  handle_demand = function(n, next)
    print(("producer: asked for %d, makes %d..%d"):format(n, next, next + n - 1))
    local events = {}
    for i = 1, n do events[i] = next + i - 1 end
    return events, next + n
  end }
local Slow = { type = "consumer",
  init = function(limit) return limit end,
  handle_events = function(events, from, limit)
    print(("consumer: works on %d..%d"):format(events[1], events[#events]))
    sluice.sleep(20)                                    -- 20 ms of work per chunk
    if events[#events] >= limit then sluice.self():stop() end
    return {}, limit
  end }

local p = sluice.start(Producer, 1, { worker = 1 })
-- asks for 6 at first; handle_events gets chunks of max - min = 3, and each
-- time 3 are done (outstanding <= min_demand) it asks for 3 more
local c = sluice.start(Slow, 12, { worker = 1,
  subscribe_to = { { p, max_demand = 6, min_demand = 3 } } })
local reason = c:await()
p:stop()                       -- runs after what worker 1 has queued (the last ask)
print("consumer ended: " .. reason)
