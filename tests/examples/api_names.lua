-- Lists the public functions of the running library, one "group name" per
-- line: the fields of sluice, sluice.flow, sluice.window, sluice.redis and
-- sluice.dispatcher, and the methods of every handle they return (flows,
-- windows, stages, tasks, started flows, subscriptions, from handles,
-- timers, Redis connections). Names starting with "_" are internal and left out.
-- tests/examples/api_coverage.sh and tests/repl/test_help.sh read it.
local out = {}
local function add(group, t)
  for name, v in pairs(t) do
    if type(name) == "string" and name:sub(1, 1) ~= "_" and type(v) == "function" then
      out[#out + 1] = group .. " " .. name
    end
  end
end
local function methods(v)
  local mt = getmetatable(v)
  local idx = type(mt) == "table" and mt.__index
  assert(type(idx) == "table", "no method table for " .. tostring(v))
  return idx
end

add("sluice", sluice)
add("flow", sluice.flow)
add("window", sluice.window)
add("dispatcher", sluice.dispatcher)
add("flow_method", methods(sluice.flow.from_enumerable({1})))
local json_src = os.tmpname()
add("jsonl_method", methods(sluice.jsonl(json_src)))
os.remove(json_src)
add("window_method", methods(sluice.window.fixed(1, "second", {index = 1})))
add("redis", sluice.redis)
add("redis_conn", debug.getregistry()["sluice.redis.conn"].__index)

local p = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end}, 0)
add("stage_method", methods(p))
local c = sluice.start({
  type = "consumer",
  handle_events = function(e, from, s) return {}, s end,
  handle_call = function(req, from, s)     -- the from handle lives on the worker
    local names = {}
    for name, v in pairs(getmetatable(from).__index) do
      if type(v) == "function" and name:sub(1, 1) ~= "_" then names[#names + 1] = name end
    end
    return names, {}, s
  end,
}, nil)
for _, name in ipairs(c:call("methods")) do out[#out + 1] = "from_method " .. name end
local sub = sluice.subscribe(c, p)
add("sub_method", methods(sub))
local timer = p:send_after(60000, "x")
add("timer_method", methods(timer))
timer:cancel()
local t = sluice.task(function() end)
add("task_method", methods(t))
t:await()
local running = sluice.flow.from_enumerable({1}):map(function(x) return x end):start()
add("running_method", methods(running))
running:await()
c:stop(); p:stop()

table.sort(out)
for _, line in ipairs(out) do print(line) end
