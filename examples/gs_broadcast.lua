-- Fan-out with a broadcast dispatcher: every consumer sees every event,
-- at the pace of the slowest; a selector filters what one consumer gets
-- (the demand of the events it rejects is given back, so it never starves).
-- The producer accumulates demand until every consumer has subscribed,
-- then the main thread lets it go.
--   sluice examples/gs_broadcast.lua [last]
local last = tonumber(arg[1]) or 12

-- emits 1..last, then finishes (the end of the stream)
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

-- collects what it gets; when its producer has ended, stops with the
-- events as its exit reason, which the main thread reads with await
local Collect = {
  type = "consumer",
  init = function() return {} end,
  handle_events = function(events, from, got)
    for _, e in ipairs(events) do got[#got + 1] = e end
    return {}, got
  end,
  handle_cancel = function(reason, from, got)
    sluice.self():stop({"done", got})
    return {}, got
  end,
}

local p = sluice.start(Numbers, last, {dispatcher = sluice.dispatcher.broadcast{}, demand = "accumulate"})
local consumers = {
  {"all", sluice.start(Collect, nil, {subscribe_to = {{p, max_demand = 4}}})},
  {"even", sluice.start(Collect, nil, {subscribe_to = {{p, max_demand = 2,
                                                         selector = function(e) return e % 2 == 0 end}}})},
  {"multiples of 3", sluice.start(Collect, nil, {subscribe_to = {{p, max_demand = 3,
                                                                   selector = function(e) return e % 3 == 0 end}}})},
}
p:demand("forward")
for _, c in ipairs(consumers) do
  local reason = c[2]:await()
  print(("%-15s %s"):format(c[1] .. ":", table.concat(reason[2], " ")))
end
print("producer: " .. p:await())
