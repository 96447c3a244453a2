-- examples/gs_rate_limiter.lua: GenStage's rate limiter, a consumer in manual demand that asks for at
-- most `max_demand` events every `interval` ms (a custom subscription
-- option, handed to handle_subscribe). It asks again only for what it has
-- received since its last ask, so at most max_demand events are in
-- flight per interval.
--   sluice examples/gs_rate_limiter.lua [batches]
local batches = tonumber(arg[1]) or 4

local Counter = {
  type = "producer",
  init = function(first) return first end,
  handle_demand = function(demand, counter)
    local events = {}
    for i = 1, demand do events[i] = counter + i - 1 end
    return events, counter + demand
  end,
}

-- Asks for the events received since the last ask (max_demand at first)
-- and schedules the next ask in interval ms.
local function ask_and_schedule(st)
  if st.pending > 0 then st.from:ask(st.pending) end
  st.pending = 0
  sluice.self():send_after(st.interval, "ask")
  return st
end

local RateLimiter = {
  type = "consumer",
  init = function(batches) return {batches = batches, seen = 0} end,
  handle_subscribe = function(kind, opts, from, st)
    st.from, st.interval, st.pending = from, opts.interval, opts.max_demand
    return "manual", ask_and_schedule(st)
  end,
  handle_events = function(events, from, st)
    st.pending = st.pending + #events
    st.seen = st.seen + 1
    print(("batch %d: %s"):format(st.seen, table.concat(events, " ")))
    if st.seen == st.batches then sluice.self():stop("normal") end
    return {}, st
  end,
  handle_info = function(msg, st)
    return {}, ask_and_schedule(st)
  end,
}

local producer = sluice.start(Counter, 0)
local limiter = sluice.start(RateLimiter, batches,
                             {subscribe_to = {{producer, max_demand = 5, interval = 20}}})
print("limiter stopped: " .. limiter:await())
producer:stop()
