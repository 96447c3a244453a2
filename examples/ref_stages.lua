-- examples/ref_stages.lua: tasks, messages, calls and subscriptions by
-- hand (lua/README.md §3 and §5), one use of each.
local t = sluice.task(function(a, b) return a + b, a * b end, 3, 4)
while not t:done() do sluice.sleep(1) end     -- done never waits
print("task:", t:await())                     -- ran on a worker

-- a producer that emits what it is sent (handle_info), with a demand dispatcher
local Queue = { type = "producer",
  handle_demand = function(n, st) return {}, st end,
  handle_info = function(msg, st) return { msg }, st end }
local q = sluice.start(Queue, nil, { name = "queue", dispatcher = sluice.dispatcher.demand{} })
q:send("first")                               -- no consumer yet: it waits in the buffer
print(q:name() .. " buffered:", q:buffered())

-- a consumer that keeps what it gets and answers calls
local Keeper = { type = "consumer",
  init = function() return { got = {} } end,
  handle_subscribe = function(kind, opts, from, st) st.from = from; return "automatic", st end,
  handle_events = function(events, from, st)
    for _, e in ipairs(events) do st.got[#st.got + 1] = e end
    return {}, st
  end,
  handle_cancel = function(reason, from, st) st.cancelled = reason; return {}, st end,
  handle_cast = function(msg, st) st.from:cancel(msg); return {}, st end,   -- leave
  handle_info = function(msg, st) st.waiting:reply(#st.got); return {}, st end,
  handle_call = function(req, from, st)
    if req == "later" then st.waiting = from; return sluice.NOREPLY, {}, st end
    if req == "state" then return st, {}, st end
    return st.got, {}, st
  end }
local k = sluice.start(Keeper, nil, { worker = 1 })
local function until_(ok)                     -- polls k's state (5 s at most)
  for _ = 1, 1000 do
    local st = k:call("state")
    if ok(st) then return st end
    sluice.sleep(5)
  end
  error("timed out")
end
-- "temporary": the end of the subscription does not stop k
local sub = sluice.subscribe(k, "queue", { max_demand = 5, cancel = "temporary" })
q:send("second")
print("got:", sluice.inspect(until_(function(st) return #st.got == 2 end).got))
sub:cancel("enough")
print("cancelled:", sluice.inspect(until_(function(st) return st.cancelled end).cancelled), k:alive())

-- a reply given later: handle_call returns NOREPLY, handle_info replies
k:send_after(20, "answer")
print("later:", k:call("later"))
local timer = k:send_after(60000, "never")
print("timer cancelled:", timer:cancel())

-- the consumer leaves with from:cancel (from k's handle_cast)
sluice.subscribe(k, q, { max_demand = 5, cancel = "temporary" })
k:cast("bye")
local st = until_(function(st) return st.cancelled[2] == "bye" end)
print("cancelled:", sluice.inspect(st.cancelled), k:alive())
k:stop(); q:stop()
