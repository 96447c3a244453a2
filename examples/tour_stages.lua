-- examples/tour_stages.lua: a pipeline [A] -> [B] -> [C], one stage of each role.
-- A (producer) counts up, B (producer_consumer) doubles, C (consumer) prints.
local A = { type = "producer",
  init = function(first) return first end,             -- the state: the next number
  handle_demand = function(demand, counter)             -- C's demand reaches A through B
    local events = {}
    for i = 1, demand do events[i] = counter + i - 1 end
    return events, counter + demand
  end }
local B = { type = "producer_consumer",
  handle_events = function(events, from, state)
    for i, e in ipairs(events) do events[i] = e * 2 end
    return events, state
  end }
local C = { type = "consumer",
  init = function(limit) return { left = limit } end,
  handle_events = function(events, from, st)
    for _, e in ipairs(events) do
      if st.left > 0 then print("C got " .. e); st.left = st.left - 1 end
    end
    if st.left == 0 then sluice.self():stop() end        -- enough: C ends itself
    return {}, st                                       -- a consumer emits nothing
  end }

local a = sluice.start(A, 0)
local b = sluice.start(B, nil, { subscribe_to = { { a, max_demand = 4 } } })
local c = sluice.start(C, 5, { subscribe_to = { { b, max_demand = 4 } } })
print("C ended: " .. c:await())
b:stop(); a:stop()
print("A alive: " .. tostring(a:alive()))
