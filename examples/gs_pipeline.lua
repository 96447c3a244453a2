-- GenStage's first example, [A] -> [B] -> [C]: a producer counting up, a
-- producer_consumer multiplying by 2, a consumer printing what it gets.
-- Finite and deterministic: C prints the first 10 events, then stops, and
-- the main thread stops the rest.
--   sluice examples/gs_pipeline.lua [count]
local count = tonumber(arg[1]) or 10

-- A: emits counter, counter + 1, ... as demand comes (the state is the
-- next number to emit).
local A = {
  type = "producer",
  init = function(counter) return counter end,
  handle_demand = function(demand, counter)
    local events = {}
    for i = 1, demand do events[i] = counter + i - 1 end
    return events, counter + demand
  end,
}

-- B: multiplies every event by its state.
local B = {
  type = "producer_consumer",
  init = function(multiplier) return multiplier end,
  handle_events = function(events, from, multiplier)
    local out = {}
    for i, e in ipairs(events) do out[i] = e * multiplier end
    return out, multiplier
  end,
}

-- C: prints events until it has printed `limit` of them, then stops.
local C = {
  type = "consumer",
  init = function(limit) return {limit = limit, printed = 0} end,
  handle_events = function(events, from, st)
    for _, e in ipairs(events) do
      if st.printed == st.limit then break end
      print(e)
      st.printed = st.printed + 1
    end
    if st.printed == st.limit then sluice.self():stop("normal") end
    return {}, st
  end,
}

local a = sluice.start(A, 0)
local b = sluice.start(B, 2, {subscribe_to = {{a, max_demand = 10}}})
local c = sluice.start(C, count, {subscribe_to = {{b, max_demand = 4}}})
print("C stopped: " .. c:await())
b:stop()
a:stop()
print("A alive: " .. tostring(a:alive()) .. ", B alive: " .. tostring(b:alive()))
