-- API misuse sweep: every public function and handle method, called with
-- wrong types, missing arguments, out-of-range numbers and closed or dead
-- handles, from the main thread, from a task and from a stage callback.
-- Each call either works or raises a string that names the function the
-- user called (`sluice.start`, `stage:call`, `sluice.flow.map`, ...), never
-- a location inside sluice's own modules nor a C file; where the bad value
-- is a number or a string, the message shows it. The sweep is one chunk of
-- source (SWEEP) so that tasks and callbacks can load it on their side.
local lu = require("luaunit")

-- The sweep. Called with a table of handles made on the main thread
-- ({live = producer, dead = stopped stage}); returns the list of problems
-- (strings) and the number of calls made.
local SWEEP = [==[
local handles = ...
local problems, calls = {}, 0
local main = pcall(sluice.stats)   -- only the main thread may read stats

local function render(v)
  if v ~= v then return {"0/0"} end
  if v == math.huge then return {"math.huge"} end
  if v == -math.huge then return {"-math.huge"} end
  if v == 2^63 then return {"9.223372036854776e+18", "9.2233720368548e+18"} end
  if type(v) == "string" then return {'"' .. v .. '"'} end
  if type(v) == "number" or type(v) == "boolean" then return {tostring(v)} end
  return {}
end

-- Checks one call: it works, or raises a string naming fn_name (a name or
-- a list of accepted names), at no internal location; when the message
-- says what it got, that is the bad value (as written, or its type), or
-- an argument before it that is missing.
local function check(fn_name, label, f, bad, has_bad)
  calls = calls + 1
  local ok, err = pcall(f)
  if ok then return end
  local function problem(why)
    local shown = type(fn_name) == "table" and fn_name[1] or fn_name
    problems[#problems + 1] = ("%s(%s): %s: %s"):format(shown, label, why, tostring(err))
  end
  if type(err) ~= "string" then return problem("not a string error") end
  if err:find("%[sluice[%.%w_]*%]:%d+:") then return problem("internal location") end
  if err:find("^[%w_/%.%-]+%.c:") then return problem("C location") end
  if err:find("bad argument #", 1, true) then return problem("Lua's wording, no function name") end
  local names = type(fn_name) == "table" and fn_name or {fn_name}
  local named = false
  for _, n in ipairs(names) do
    if err:find(n, 1, true) then named = true end
  end
  if not named then return problem("function not named") end
  local got = err:match(", got (.*)$") or err:match(": got (.*)$")
  if has_bad and got then
    local shown = got:find("^nil") or got:find("^no value") or got:find("^a ")
    local forms = render(bad)
    forms[#forms + 1] = sluice.inspect(bad)
    for _, form in ipairs(forms) do
      if got:find(form, 1, true) == 1 then shown = true end
    end
    local tn = type(bad) == "userdata" and "stage" or type(bad)
    if got:find("^" .. type(bad)) or got:find("^<" .. tn) then shown = true end
    if not shown then return problem("bad value not shown") end
  end
end

local function nop() end
local BAD = {true, "/nonexistent/x", -1, 0/0, math.huge, -math.huge, 2^63, 1.5, {}, nop,
             coroutine.create(print), handles.dead}
local BAD_NAMES = {"true", '"/nonexistent/x"', "-1", "0/0", "math.huge", "-math.huge", "2^63", "1.5", "{}",
                   "function", "thread", "dead stage"}

-- Every entry: {name(s), call(a, b, c), arity}. Each is called with no
-- arguments and with each bad value in each of its first `arity` places
-- (the others nil).
local flow = sluice.flow
local function F() return flow.from_enumerable({1, 2, 3}) end
local W = function() return sluice.window.fixed(1, "second", {index = 1}) end
local p, dead = handles.live, handles.dead
local ENTRIES = {
  {"sluice.consumer_supervisor", sluice.consumer_supervisor, 2},
  {"sluice.from_enumerable", sluice.from_enumerable, 2},
  {"sluice.graph", sluice.graph, 1},
  {"sluice.inspect", sluice.inspect, 2},
  {"sluice.jsonl", sluice.jsonl, 2},
  {"sluice.lines", sluice.lines, 2},
  {"sluice.words", sluice.words, 2},
  {"sluice.range", sluice.range, 3},
  {"sluice.self", sluice.self, 1},
  {"sluice.sleep", sluice.sleep, 1},
  {"sluice.start", sluice.start, 3},
  {"sluice.stats", sluice.stats, 1},
  {"sluice.stream", sluice.stream, 2},
  {"sluice.subscribe", sluice.subscribe, 3},
  {"sluice.task", sluice.task, 2},
  {"sluice.top", sluice.top, 1},
  {"sluice.whereis", sluice.whereis, 1},
  {"sluice.workers", sluice.workers, 1},
  {"sluice.dispatcher.broadcast", sluice.dispatcher.broadcast, 1},
  {"sluice.dispatcher.demand", sluice.dispatcher.demand, 1},
  {"sluice.dispatcher.partition", sluice.dispatcher.partition, 1},
  {"sluice.flow.bounded_join", flow.bounded_join, 3},
  {"sluice.flow.explain", flow.explain, 1},
  {"sluice.flow.from_enumerable", flow.from_enumerable, 2},
  {"sluice.flow.from_enumerables", flow.from_enumerables, 2},
  {"sluice.flow.from_specs", flow.from_specs, 2},
  {"sluice.flow.from_stages", flow.from_stages, 2},
  {"sluice.flow.graph", flow.graph, 1},
  {"sluice.flow.is_flow", flow.is_flow, 1},
  {"sluice.flow.merge", flow.merge, 2},
  {"sluice.flow.partition", flow.partition, 2},
  {"sluice.flow.shuffle", flow.shuffle, 2},
  {"sluice.flow.window_join", flow.window_join, 3},
  {"sluice.window.count", sluice.window.count, 2},
  {"sluice.window.fixed", sluice.window.fixed, 3},
  {"sluice.window.global", sluice.window.global, 1},
  {"sluice.window.periodic", sluice.window.periodic, 3},
  {"sluice.window.session", sluice.window.session, 3},
  {"sluice.window.sliding", sluice.window.sliding, 3},
  -- handle methods, called as methods on a valid handle
  {"stage:alive", function(...) return p:alive(...) end, 1},
  {"stage:await", function(...) return dead:await(...) end, 1},
  {"stage:buffered", function(...) return p:buffered(...) end, 1},
  {"stage:call", function(...) return p:call(...) end, 2},
  {"stage:cast", function(...) return p:cast(...) end, 1},
  {"stage:demand", function(...) return p:demand(...) end, 1},
  {"stage:name", function(...) return p:name(...) end, 1},
  {"stage:send", function(...) return p:send(...) end, 1},
  {"stage:send_after", function(...) return p:send_after(...) end, 2},
  {"stage:stats", function(...) return p:stats(...) end, 1},
  {"stage:stop", function(a, b) return dead:stop(a, b) end, 2},
  -- dead handles
  {"stage:call", function(...) return dead:call(...) end, 2},
  {"stage:stats", function(...) return dead:stats(...) end, 1},
  {"stage:buffered", function(...) return dead:buffered(...) end, 1},
  {"stage:demand", function(...) return dead:demand(...) end, 1},
  {"stage:send_after", function(...) return dead:send_after(...) end, 2},
  {"stage:finish", function(...) return dead:finish(...) end, 1},
  -- methods with a bad self
  {{"stage:send", "'send'"}, function(a, ...) return p.send(a, ...) end, 1},
  {{"stage:call", "'call'"}, function(a, ...) return p.call(a, ...) end, 1},
  {{"stage:stop", "'stop'"}, function(a, ...) return p.stop(a, ...) end, 1},
  {{"stage:await", "'await'"}, function(a, ...) return p.await(a, ...) end, 1},
  {{"stage:stats", "'stats'"}, function(a, ...) return p.stats(a, ...) end, 1},
  -- flows and windows
  {"sluice.flow.map", function(...) return F():map(...) end, 1},
  {"sluice.flow.flat_map", function(...) return F():flat_map(...) end, 1},
  {"sluice.flow.filter", function(...) return F():filter(...) end, 1},
  {"sluice.flow.reject", function(...) return F():reject(...) end, 1},
  {"sluice.flow.map_values", function(...) return F():map_values(...) end, 1},
  {"sluice.flow.map_batch", function(...) return F():map_batch(...) end, 1},
  {"sluice.flow.each", function(...) return F():each(...) end, 1},
  {"sluice.flow.uniq_by", function(...) return F():uniq_by(...) end, 1},
  {"sluice.flow.reduce", function(...) return F():reduce(...) end, 3},
  {"sluice.flow.reduce_by_key", function(...) return F():reduce_by_key(...) end, 1},
  {"sluice.flow.frequencies_by", function(...) return F():frequencies_by(...) end, 1},
  {"sluice.flow.emit_and_reduce", function(...) return F():emit_and_reduce(...) end, 2},
  {"sluice.flow.group_by", function(...) return F():group_by(...) end, 2},
  {"sluice.flow.on_trigger", function(...) return F():reduce(function() return 0 end, function(x, a) return a end):on_trigger(...) end, 1},
  {"sluice.flow.emit", function(...) return F():reduce(function() return 0 end, function(x, a) return a end):emit(...) end, 1},
  {"sluice.flow.partition", function(...) return F():partition(...) end, 1},
  {"sluice.flow.shuffle", function(...) return F():shuffle(...) end, 1},
  {"sluice.flow.merge", function(...) return F():merge(...) end, 1},
  {"sluice.flow.departition", function(...) return F():partition({stages = 2}):departition(...) end, 3},
  {"sluice.flow.take_sort", function(...) return F():take_sort(...) end, 2},
  {"sluice.flow.into_jsonl", function(...) return F():into_jsonl(...) end, 1},
  {"sluice.flow.into_stages", function(...) return F():into_stages(...) end, 1},
  {"sluice.flow.into_specs", function(...) return F():into_specs(...) end, 1},
  {"sluice.flow.through_stages", function(...) return F():through_stages(...) end, 1},
  {"sluice.flow.through_specs", function(...) return F():through_specs(...) end, 1},
  {{"sluice.flow.to_list", "sluice.flow"}, function(...) return flow.from_enumerable({1}).to_list(...) end, 1},
  {{"sluice.flow.run", "sluice.flow"}, function(...) return flow.from_enumerable({1}).run(...) end, 1},
  {{"sluice.flow.stream", "sluice.flow"}, function(...) return flow.from_enumerable({1}).stream(...) end, 1},
  {{"sluice.flow.start", "sluice.flow"}, function(...) return flow.from_enumerable({1}).start(...) end, 1},
  {"sluice.flow.to_list", function(...) return F():to_list(...) end, 1},
  {"sluice.flow.run", function(...) return F():run(...) end, 1},
  {"sluice.flow.stream", function(...) return F():stream(...) end, 1},
  {"sluice.flow.start", function(...) return F():start(...) end, 1},
  {"sluice.flow.explain", function(...) return F():explain(...) end, 1},
  {"sluice.flow.graph", function(...) return F():graph(...) end, 1},
  {"sluice.window.allowed_lateness", function(...) return W():allowed_lateness(...) end, 2},
  {"sluice.window.trigger", function(...) return W():trigger(...) end, 2},
  {"sluice.window.trigger_every", function(...) return W():trigger_every(...) end, 2},
  {"sluice.window.trigger_periodically", function(...) return W():trigger_periodically(...) end, 2},
}
-- handles of the other kinds, when given: a task already awaited, a
-- timer that fired, a cancelled subscription, a flow's running handle
-- after it ended
local more = {
  {"task", {"task:await", "task:done"}, 1},
  {"timer", {"timer:cancel"}, 0},
  {"sub", {"subscription:cancel"}, 1},
  {"running", {"await", "stop", "stats", "send"}, 1},
  {"from", {"from:ask", "from:cancel", "from:reply"}, 1},
  {"call_from", {"from:ask", "from:cancel", "from:reply"}, 1},
}
for _, m in ipairs(more) do
  local h = handles[m[1]]
  if h then
    for _, method in ipairs(m[2]) do
      local short = method:match(":(.*)$") or method
      local name = method:find(":") and method or "sluice.flow"
      ENTRIES[#ENTRIES + 1] = {name, function(...) return h[short](h, ...) end, m[3]}
      ENTRIES[#ENTRIES + 1] = {name, function(a, ...) return h[short](a, ...) end, 1}
    end
  end
end
-- a flow that has run already (flows are descriptions: it runs again)
if handles.ran then
  local ran = handles.ran
  for _, m in ipairs({"map", "filter", "partition", "reduce", "take_sort", "into_stages", "into_specs",
                      "through_stages", "to_list", "run", "start", "into_jsonl"}) do
    ENTRIES[#ENTRIES + 1] = {"sluice.flow." .. m, function(...) return ran[m](ran, ...) end, 2}
  end
end
-- the start options and the subscription options, each given a bad value
local START_OPTS = {"subscribe_to", "dispatcher", "demand", "buffer_size", "buffer_keep", "worker", "name", "nosuch"}
local SUB_OPTS = {"max_demand", "min_demand", "cancel", "partition", "selector"}
local producer = {type = "producer", handle_demand = function(n, s) return {}, s end}
local consumer = {type = "consumer", handle_events = function(e, f, s) return {}, s end}
ENTRIES[#ENTRIES + 1] = {"sluice.start", function(v) return sluice.start(producer, nil, v) end, 1}
if handles.consumer then
  local c = handles.consumer
  ENTRIES[#ENTRIES + 1] = {"sluice.subscribe", function(v) return sluice.subscribe(c, p, v) end, 1}
  for _, k in ipairs(SUB_OPTS) do
    ENTRIES[#ENTRIES + 1] = {"sluice.subscribe", function(v) return sluice.subscribe(c, p, {[k] = v}) end, 1}
  end
end
for _, k in ipairs(START_OPTS) do
  ENTRIES[#ENTRIES + 1] = {"sluice.start", function(v) return sluice.start(producer, nil, {[k] = v}) end, 1}
end
for _, k in ipairs(SUB_OPTS) do
  ENTRIES[#ENTRIES + 1] = {"sluice.start", function(v) return sluice.start(consumer, nil, {subscribe_to = {{p, [k] = v}}}) end, 1}
  ENTRIES[#ENTRIES + 1] = {"sluice.subscribe", function(v) return sluice.subscribe(dead, p, {[k] = v}) end, 1}
  ENTRIES[#ENTRIES + 1] = {"sluice.stream", function(v) return sluice.stream({{dead, [k] = v}}) end, 1}
  ENTRIES[#ENTRIES + 1] = {"sluice.flow.from_stages", function(v) return flow.from_stages({{dead, [k] = v}}) end, 1}
end
for _, cb in ipairs({"init", "handle_demand", "handle_info", "handle_call", "terminate"}) do
  ENTRIES[#ENTRIES + 1] = {"sluice.start", function(v) return sluice.start({type = "producer",
    handle_demand = function() end, [cb] = v}, nil) end, 1}
end
for _, k in ipairs({"partitions", "hash", "key"}) do
  ENTRIES[#ENTRIES + 1] = {"sluice.dispatcher.partition", function(v) return sluice.dispatcher.partition({[k] = v}) end, 1}
end
for _, k in ipairs({"stages", "max_demand", "min_demand", "buffer_size", "buffer_keep", "window", "on_init", "progress", "nosuch"}) do
  ENTRIES[#ENTRIES + 1] = {"sluice.flow.from_enumerable", function(v) return flow.from_enumerable({1}, {[k] = v}) end, 1}
  ENTRIES[#ENTRIES + 1] = {"sluice.flow.partition", function(v) return F():partition({[k] = v}) end, 1}
end

for _, e in ipairs(ENTRIES) do
  local name, f, arity = e[1], e[2], e[3]
  local t0 = os.clock()
  do
    check(name, "", function() return f() end)
    for pos = 1, arity do
      for i, v in ipairs(BAD) do
        local a = {}
        a[pos] = v
        local label = ("#%d = %s"):format(pos, BAD_NAMES[i])
        check(name, label, function() return f(a[1], a[2], a[3]) end, v, true)
      end
    end
  end
  if os.getenv("MISUSE_TIMES") then print(os.clock() - t0, type(name) == "table" and name[1] or name) end
end
return problems, calls
]==]

local function dead_stage()
  local d = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end}, nil)
  d:stop()
  return d
end

local function live_stage()
  return sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end}, nil)
end

-- A consumer without producers, for sluice.subscribe.
local function consumer()
  return sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end}, nil)
end

TestMisuse = {}

-- Stops the stages started since `before` stages were live (the sweep's
-- valid calls start some).
local function stop_new(before)
  local all = sluice.stats()
  for i = before + 1, #all do all[i].stage:stop() end
end

-- The first 20 problems, one a line (an empty string when none).
local function report(problems)
  local out = {}
  for i = 1, math.min(#problems, 20) do out[i] = problems[i] end
  if #problems > 20 then out[#out + 1] = ("... and %d more"):format(#problems - 20) end
  return table.concat(out, "\n")
end

-- A task awaited, a timer fired, a subscription cancelled, a running
-- flow ended.
local function used_handles(p)
  local t = sluice.task(function() return 1 end)
  t:await()
  local timer = p:send_after(0, "x")
  local c = sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end}, nil)
  local sub = sluice.subscribe(c, p, {cancel = "temporary"})
  sub:cancel()
  local running = sluice.flow.from_enumerable({1}):start()
  running:await()
  local ran = sluice.flow.from_enumerable({1, 2}):map(function(x) return x end)
  lu.assertEquals(ran:to_list(), {1, 2})
  sluice.sleep(5)
  c:stop()
  return t, timer, sub, running, ran
end

function TestMisuse:test_from_the_main_thread()
  local p, d, cons = live_stage(), dead_stage(), consumer()
  local t, timer, sub, running, ran = used_handles(p)
  local before = #sluice.stats()
  local problems, calls = load(SWEEP, "=sweep")({live = p, dead = d, consumer = cons, task = t, timer = timer, sub = sub, ran = ran,
                                                 running = running})
  stop_new(before)
  lu.assertEquals(report(problems), "")
  lu.assertTrue(calls > 1000, calls)
  p:stop()
  cons:stop()
end

function TestMisuse:test_from_a_task()
  local p, d, cons = live_stage(), dead_stage(), consumer()
  local problems, calls = sluice.task(function(src, live, dead, cons)
    return load(src, "=sweep")({live = live, dead = dead, consumer = cons})
  end, SWEEP, p, d, cons):await()
  lu.assertEquals(report(problems), "")
  lu.assertTrue(calls > 1000, calls)
  p:stop()
  cons:stop()
end

-- The from handles: a subscription's (live, then ended) and a call's,
-- swept inside handle_call; every from:reply after the first is ignored.
function TestMisuse:test_from_handles_in_a_callback()
  local p, d = live_stage(), dead_stage()
  local c = sluice.start({type = "consumer",
    init = function(arg) return arg end,
    handle_subscribe = function(kind, opts, from, st)
      st.from = from
      return "manual", st
    end,
    handle_events = function(e, f, st) return {}, st end,
    handle_call = function(req, from, st)
      local problems, calls = load(st.src, "=sweep")({live = st.live, dead = st.dead, from = st.from,
                                                      call_from = from})
      st.result = {problems, calls}
      return sluice.NOREPLY, {}, st
    end,
    handle_info = function(msg, st)
      sluice.self():stop({"swept", st.result[1], st.result[2]})
      return {}, st
    end}, {src = SWEEP, live = p, dead = d}, {subscribe_to = {{p, cancel = "temporary"}}})
  -- the sweep's first valid from:reply answers
  lu.assertEquals(c:call("sweep"), true)
  p:stop()
  -- again, the subscription's from now ended
  lu.assertEquals(c:call("sweep"), true)
  c:send("done")
  local r = c:await()
  lu.assertEquals(r[1], "swept")
  lu.assertEquals(report(r[2]), "")
  lu.assertTrue(r[3] > 1000, r[3])
end

function TestMisuse:test_from_a_callback()
  local p, d, cons = live_stage(), dead_stage(), consumer()
  local src = sluice.from_enumerable({1})
  local c = sluice.start({type = "consumer",
    init = function(arg) return arg end,
    handle_events = function(events, from, st)
      local problems, calls = load(st.src, "=sweep")({live = st.live, dead = st.dead, consumer = st.cons})
      sluice.self():stop({"swept", problems, calls})
      return {}, st
    end}, {src = SWEEP, live = p, dead = d, cons = cons}, {subscribe_to = {src}})
  local r = c:await()
  lu.assertEquals(r[1], "swept")
  lu.assertEquals(report(r[2]), "")
  lu.assertTrue(r[3] > 1000, r[3])
  p:stop()
  cons:stop()
end

-- ---- the exact messages of the checks the sweep found wanting ----------------

TestMessages = {}

-- The message of the error f(...) raises, without a location.
local function msg(f, ...)
  local ok, err = pcall(f, ...)
  lu.assertFalse(ok)
  return (tostring(err):gsub("^[^\n]-:%d+: ", "", 1))
end

local function producer()
  return sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end}, nil)
end

-- Lua's "bad argument #1 to 'f'" named whatever the caller's variable
-- was ('f', 'start', '?'); the C checks now name the function.
function TestMessages:test_c_checks_name_the_function_and_value()
  local p = producer()
  local sleep, start, task, whereis = sluice.sleep, sluice.start, sluice.task, sluice.whereis
  lu.assertEquals(msg(function() sleep() end), "sluice.sleep: ms must be an integer >= 0, got no value")
  lu.assertEquals(msg(function() sleep(0/0) end), "sluice.sleep: ms must be an integer >= 0, got 0/0")
  lu.assertEquals(msg(function() sleep(math.huge) end), "sluice.sleep: ms must be an integer >= 0, got math.huge")
  lu.assertEquals(msg(function() sleep(2^63) end), "sluice.sleep: ms must be an integer >= 0, got 9.2233720368548e+18")
  lu.assertEquals(msg(function() start(5) end), "sluice.start: spec must be a table, got 5")
  lu.assertEquals(msg(function() start({type = "producer", handle_demand = print}, nil, 5) end),
                  "sluice.start: opts must be a table, got 5")
  lu.assertEquals(msg(function() task("x") end), 'sluice.task: fn must be a function, got "x"')
  lu.assertEquals(msg(function() whereis() end), "sluice.whereis: name must be a string, got no value")
  lu.assertEquals(msg(function() p:send() end), "stage:send: the message is missing")
  lu.assertEquals(msg(function() p:cast() end), "stage:cast: the message is missing")
  lu.assertEquals(msg(function() p:call() end), "stage:call: the request is missing")
  lu.assertEquals(msg(function() p:send_after(-1, "x") end), "stage:send_after: ms must be an integer >= 0, got -1")
  lu.assertEquals(msg(function() p:send_after(1.5, "x") end), "stage:send_after: ms must be an integer >= 0, got 1.5")
  lu.assertEquals(msg(function() p:send_after(5) end), "stage:send_after: the message is missing")
  lu.assertEquals(msg(function() p:demand(true) end), 'stage:demand: mode must be "forward" or "accumulate", got true')
  lu.assertEquals(msg(function() p:stop(nil, 0/0) end), "stage:stop: timeout must be an integer >= 0, got 0/0")
  lu.assertEquals(msg(function() p:await(-math.huge) end), "stage:await: timeout must be an integer >= 0, got -math.huge")
  lu.assertEquals(msg(p.send, 42, "x"), "stage:send: expected a stage as self (call it with ':'), got 42")
  lu.assertEquals(msg(p.stop), "stage:stop: expected a stage as self (call it with ':'), got no value")
  local t = sluice.task(function() end)
  lu.assertEquals(msg(t.await, p), "task:await: expected a task as self (call it with ':'), got " .. tostring(p))
  lu.assertStrMatches(tostring(p), "<stage %d+>")
  t:await()
  local timer = p:send_after(0, "x")
  lu.assertEquals(msg(timer.cancel, "x"), 'timer:cancel: expected a timer as self (call it with \':\'), got "x"')
  p:stop()
end

-- Values of the wrong type were turned into strings before being shown
-- ("-1" quoted, "-nan"); a dispatcher that is not a table raised Lua's
-- "attempt to index a boolean value".
function TestMessages:test_option_values_shown_as_given()
  local spec = {type = "producer", handle_demand = function(n, s) return {}, s end}
  lu.assertEquals(msg(sluice.start, spec, nil, {demand = -1}),
                  'sluice.start: demand must be "forward" or "accumulate", got -1')
  lu.assertEquals(msg(sluice.start, spec, nil, {buffer_keep = 0/0}),
                  'sluice.start: buffer_keep must be "first" or "last", got 0/0')
  lu.assertEquals(msg(sluice.start, spec, nil, {dispatcher = true}),
                  "sluice.start: dispatcher must come from sluice.dispatcher.demand/broadcast/partition")
  lu.assertEquals(msg(sluice.start, {type = 5}, nil),
                  'sluice.start: spec.type must be "producer", "producer_consumer" or "consumer", got 5')
  local p = producer()
  local c = sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end}, nil)
  lu.assertEquals(msg(sluice.subscribe, c, p, {cancel = 1.5}),
                  'sluice.subscribe: cancel must be "permanent", "transient" or "temporary", got 1.5')
  lu.assertEquals(msg(sluice.dispatcher.partition, {partitions = "x"}),
                  'sluice.dispatcher.partition: partitions must be an integer >= 1 or a list of names, got "x"')
  lu.assertEquals(msg(sluice.dispatcher.partition, {partitions = math.huge}),
                  "sluice.dispatcher.partition: partitions must be an integer >= 1 or a list of names, got math.huge")
  lu.assertEquals(msg(sluice.dispatcher.partition, 7), "sluice.dispatcher.partition: expects a table of options, got 7")
  p:stop(); c:stop()
end

-- From a task, the flow terminals and sluice.stream raised an error
-- located inside sluice's modules, naming sluice.start or
-- sluice._pin_globals (and into_jsonl truncated its file first).
function TestMessages:test_main_thread_only_from_a_task()
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write("kept\n"); f:close()
  local got = sluice.task(function(path)
    local fl = sluice.flow.from_enumerable({1})
    local out = {}
    for _, m in ipairs({"to_list", "run", "stream", "start"}) do out[#out + 1] = select(2, pcall(fl[m], fl)) end
    out[#out + 1] = select(2, pcall(fl.into_jsonl, fl, path))
    out[#out + 1] = select(2, pcall(fl.into_specs, fl, {}))
    out[#out + 1] = select(2, pcall(sluice.stream, {}))
    return out
  end, path):await()
  lu.assertEquals(got, {
    "sluice.flow.to_list: only the main thread may run flows",
    "sluice.flow.run: only the main thread may run flows",
    "sluice.flow.stream: only the main thread may run flows",
    "sluice.flow.start: only the main thread may run flows",
    "sluice.flow.into_jsonl: only the main thread may run flows",
    "sluice.flow.into_specs: only the main thread may run flows",
    "sluice.stream: only the main thread may start streams",
  })
  lu.assertEquals(io.open(path):read("a"), "kept\n")
  os.remove(path)
end

-- A running flow's methods called without their handle raised
-- "attempt to index a number value (local 'self')" inside sluice.flow_run.
function TestMessages:test_running_methods_check_self()
  local r = sluice.flow.from_enumerable({1}):start()
  lu.assertEquals(msg(r.await, 5), "sluice.flow: await: expected a running flow as self (call it with ':'), got 5")
  lu.assertEquals(msg(r.stop), "sluice.flow: stop: expected a running flow as self (call it with ':'), got nil")
  lu.assertEquals(msg(r.stats, {}), "sluice.flow: stats: expected a running flow as self (call it with ':'), got {}")
  lu.assertEquals(msg(r.send, "x"), 'sluice.flow: send: expected a running flow as self (call it with \':\'), got "x"')
  r:await()
end

-- List arguments show what they got.
function TestMessages:test_list_arguments_show_the_value()
  local fl = sluice.flow.from_enumerable({1})
  lu.assertEquals(msg(fl.into_stages, fl, 3), "sluice.flow.into_stages: expected a non-empty list of consumers, got 3")
  lu.assertEquals(msg(fl.into_specs, fl, {}), "sluice.flow.into_specs: expected a non-empty list of {spec, arg, opts}, got {}")
  lu.assertEquals(msg(fl.through_stages, fl, "x"),
                  'sluice.flow.through_stages: expected a non-empty list of producer_consumers, got "x"')
  lu.assertEquals(msg(fl.through_specs, fl), "sluice.flow.through_specs: expected a non-empty list of {spec, arg, opts}, got nil")
end

-- into_stages given a stopped consumer started a flow that could never
-- end; through_stages and into_stages given a stage of the wrong kind
-- raised sluice.subscribe's error with its location inside sluice.
function TestMessages:test_flow_stage_lists_checked()
  local function stage(type)
    return sluice.start({type = type, handle_demand = function(n, s) return {}, s end,
                         handle_events = function(e, f, s) return e, s end}, nil)
  end
  local before = #sluice.stats()
  local fl = sluice.flow.from_enumerable({1, 2, 3})
  local gone = stage("consumer")
  gone:stop()
  local p = stage("producer")
  lu.assertEquals(msg(fl.into_stages, fl, {gone}), "sluice.flow.into_stages: item 1: the consumer has stopped")
  lu.assertEquals(msg(fl.into_stages, fl, {stage("consumer"), p}),
    "sluice.flow.into_stages: item 2: the consumer must be a consumer or a producer_consumer, got a producer")
  lu.assertEquals(msg(function() return fl:through_stages({p}):to_list() end),
    "sluice.flow.through_stages: item 1: the consumer must be a consumer or a producer_consumer, got a producer")
  for i, st in ipairs(sluice.stats()) do if i > before then st.stage:stop() end end
end

-- ---- numbers at the ends of the integer range ---------------------------------

TestRanges = {}

-- take_sort(math.maxinteger) cut its list with a loop down to n + 1,
-- which wrapped around: the flow never ended.
function TestRanges:test_take_sort_of_maxinteger()
  local out = sluice.flow.from_enumerable({3, 1, 2}, {stages = 2})
    :reduce(function() return {} end, function(x, a) a[#a + 1] = x return a end)
    :take_sort(math.maxinteger):to_list()
  lu.assertEquals(out, {{1, 2, 3}})
end

-- send_after(math.maxinteger) added the delay to the clock, which
-- overflowed: the message came at once. Now it never comes due.
function TestRanges:test_send_after_maxinteger_stays_pending()
  local p = sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end,
    init = function() return {} end,
    handle_info = function(m, s) s[#s + 1] = m return {}, s end,
    handle_call = function(r, f, s) return s, {}, s end}, nil)
  local t = p:send_after(math.maxinteger, "late")
  p:send_after(0, "now")
  sluice.sleep(20)
  lu.assertEquals(p:call("log"), {"now"})
  lu.assertTrue(t:cancel())
  lu.assertFalse(t:cancel())
  p:stop()
end

-- sluice.sleep(math.maxinteger) on a worker sleeps (its deadline no
-- longer overflows); the exit still ends it. Run in its own process.
function TestRanges:test_sleep_maxinteger()
  local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")
  -- loaded as a module (tests/module/module.sh) there is no sluice binary
  -- to start; the worker would sleep until the suite ends
  if not H.binary():find("sluice[^/]*$") then return end
  local out, code = H.run([[
    local t = sluice.task(function() sluice.sleep(math.maxinteger) end)
    print(select(2, pcall(t.await, t, 100)))
  ]], 2)
  lu.assertEquals(out, "task:await: timed out after 100 ms\n")
  lu.assertEquals(code, 0)
end

os.exit(lu.LuaUnit.run())
