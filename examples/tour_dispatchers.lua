-- examples/tour_dispatchers.lua: several consumers on one producer. Each
-- consumer here is a producer_consumer that tags what it gets; the script
-- streams the tags back and prints them sorted. The sources start in
-- demand = "accumulate" and are let go once everything is subscribed.
local function tagger(tag)
  return { type = "producer_consumer",
    handle_events = function(events, from, st)
      for i, e in ipairs(events) do events[i] = tag .. " " .. e end
      return events, st
    end }
end
local function collect(src, stages)
  local it, s, c, close = sluice.stream(stages)      -- subscribes now
  src:demand("forward")                              -- then the events flow
  local got = {}
  for ev in it, s, c, close do got[#got + 1] = ev end
  table.sort(got)
  return got
end

-- demand (the default): each event goes to one consumer, whichever asks
local src = sluice.from_enumerable(sluice.range(1, 6), { demand = "accumulate" })
local x = sluice.start(tagger("x"), nil, { subscribe_to = { { src, max_demand = 2 } } })
local y = sluice.start(tagger("y"), nil, { subscribe_to = { { src, max_demand = 2 } } })
print("demand: " .. #collect(src, { x, y }) .. " events, each to x or to y")

-- broadcast: every consumer gets every event
src = sluice.from_enumerable(sluice.range(1, 3),
  { demand = "accumulate", dispatcher = sluice.dispatcher.broadcast{} })
x = sluice.start(tagger("x"), nil, { subscribe_to = { src } })
y = sluice.start(tagger("y"), nil, { subscribe_to = { src } })
print("broadcast: " .. table.concat(collect(src, { x, y }), ", "))

-- partition: the hash picks the consumer; odd numbers to 1, even to 2
src = sluice.from_enumerable(sluice.range(1, 6), { demand = "accumulate",
  dispatcher = sluice.dispatcher.partition{ partitions = 2,
    hash = function(e) return e % 2 == 1 and 1 or 2 end } })
local odd = sluice.start(tagger("odd"), nil, { subscribe_to = { { src, partition = 1 } } })
local even = sluice.start(tagger("even"), nil, { subscribe_to = { { src, partition = 2 } } })
print("partition: " .. table.concat(collect(src, { odd, even }), ", "))
