-- An endless producer and a consumer still running when the script ends
-- (tests/module/module.sh): closing the state ends them in order.
local p = sluice.start({type = "producer", init = function() return 0 end,
  handle_demand = function(n, s)
    local t = {}
    for i = 1, n do t[i] = s + i end
    return t, s + n
  end}, nil)
local c = sluice.start({type = "consumer", init = function() return 0 end,
  handle_events = function(evs, from, s) return nil, s + #evs end,
  terminate = function(reason, s) print("consumer ended:", sluice.inspect(reason), s > 0) end}, nil)
sluice.subscribe(c, p)
sluice.sleep(20)
print("script done")
