-- Baseline for chain.lua: the same three stages' callbacks called in one
-- plain lua5.4 loop, MAX_DEMAND events at a time (no engine in between).
--   lua5.4 scripts/bench/chain_plain.lua EVENTS [MAX_DEMAND]
local dir = arg[0]:match("^(.*)/") or "."
local S = dofile(dir .. "/chain_stages.lua")
local n = math.tointeger(tonumber(arg[1])) or 10000000
local max_demand = math.tointeger(tonumber(arg[2])) or 1000

-- the producer ends itself with sluice.self():finish()
local finished = false
local me = { finish = function() finished = true end }
sluice = { self = function() return me end }

local P, PC, C = S.producer, S.producer_consumer, S.consumer
local ps, pcs, cs = P.init(n), nil, C.init()
local events
while not finished do
  events, ps = P.handle_demand(max_demand, ps)
  events, pcs = PC.handle_events(events, nil, pcs)
  local _
  _, cs = C.handle_events(events, nil, cs)
end
C.terminate("normal", cs)
