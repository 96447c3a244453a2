-- GenStage chain: producer -> producer_consumer -> consumer.
--   sluice -w N scripts/bench/chain.lua EVENTS [MAX_DEMAND]
-- The consumer prints "RESULT count=<n> bad=0" when it stops.
local dir = arg[0]:match("^(.*)/") or "."
local S = dofile(dir .. "/chain_stages.lua")
local n = math.tointeger(tonumber(arg[1])) or 10000000
local max_demand = math.tointeger(tonumber(arg[2])) or 1000

local p = sluice.start(S.producer, n)
local pc = sluice.start(S.producer_consumer, nil,
  { subscribe_to = { { p, max_demand = max_demand } } })
local c = sluice.start(S.consumer, nil,
  { subscribe_to = { { pc, max_demand = max_demand } } })
local reason = c:await()
if reason ~= "normal" then error("consumer ended with " .. sluice.inspect(reason)) end
