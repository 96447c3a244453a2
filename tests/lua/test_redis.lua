-- Redis Streams: sluice.redis.source / sink and flow:into_redis against a
-- private redis-server (tests/lua/redis_helper.lua). What each entry
-- became is read back from Redis: delivered once, acknowledged once the
-- consuming handle_events returned, never more unacknowledged entries
-- than the consumers demanded.
local lu = require("luaunit")
local RH = dofile("tests/lua/redis_helper.lua")
local flow = sluice.flow

local srv, conn

local function setup()
  if not srv then
    srv = RH.start()
    conn = sluice.redis.connect(srv.url)
  end
  conn:call("FLUSHALL")
end

-- Adds entries {n = i} (i = first..last) to stream.
local function fill(stream, first, last)
  local ev = {}
  for i = first, last do ev[#ev + 1] = { fields = { n = i } } end
  return conn:add(stream, ev)
end

local function pending(stream, group) return conn:call("XPENDING", stream, group)[1] end

-- A consumer that counts the n of each event it handles; call("seen")
-- returns {n = times}, call("done") whether its producer is gone (it
-- stays, to be asked: collect).
local Counter = {
  type = "consumer",
  init = function(arg) return { seen = {}, total = 0, sleep = arg and arg.sleep, fail_on = arg and arg.fail_on } end,
  handle_events = function(events, _, st)
    for _, e in ipairs(events) do
      if st.sleep then sluice.sleep(st.sleep) end
      if e.fields.n == st.fail_on then error("entry " .. e.fields.n .. " is bad") end
      st.seen[e.fields.n] = (st.seen[e.fields.n] or 0) + 1
      st.total = st.total + 1
    end
    return {}, st
  end,
  handle_call = function(req, _, st) return st[req], {}, st end,
  handle_cancel = function(_, _, st)
    st.done = true
    return {}, st
  end,
}

-- What a Counter saw, once its producer is gone; stops it.
local function collect(k)
  while not k:call("done") do sluice.sleep(5) end
  local seen = k:call("seen")
  k:stop()
  return seen
end

local function once_each(seen, first, last)
  local missing, twice = 0, 0
  for i = first, last do
    if not seen[i] then missing = missing + 1 elseif seen[i] > 1 then twice = twice + 1 end
  end
  return missing, twice
end

TestRedis = {}

function TestRedis:setUp()
  lu.skipIf(not RH.available(), "redis-server is not installed (the Debian package redis-server)")
  setup()
end

function TestRedis:test_source_delivers_each_entry_once_and_acks_it()
  fill("jobs", 1, 3000)
  local src = sluice.redis.source({ url = srv.url, stream = "jobs", group = "g", consumer = "c1", drain = true })
  local k = sluice.start(Counter, nil, { subscribe_to = { { src, cancel = "transient", max_demand = 100 } } })
  local seen = collect(k)
  lu.assertEquals({ once_each(seen, 1, 3000) }, { 0, 0 })
  lu.assertEquals(pending("jobs", "g"), 0)
  lu.assertEquals(sluice._redis.acked(src), 3000)
end

function TestRedis:test_group_is_created_and_shared_by_two_sources()
  fill("jobs", 1, 2000)
  local s1 = sluice.redis.source({ url = srv.url, stream = "jobs", group = "g", consumer = "a", drain = true, batch = 50 })
  local s2 = sluice.redis.source({ url = srv.url, stream = "jobs", group = "g", consumer = "b", drain = true, batch = 50 })
  local k1 = sluice.start(Counter, nil, { subscribe_to = { { s1, cancel = "transient", max_demand = 50 } } })
  local k2 = sluice.start(Counter, nil, { subscribe_to = { { s2, cancel = "transient", max_demand = 50 } } })
  local a, b = collect(k1), collect(k2)
  local both = {}
  for n, c in pairs(a) do both[n] = c end
  for n, c in pairs(b) do both[n] = (both[n] or 0) + c end
  lu.assertEquals({ once_each(both, 1, 2000) }, { 0, 0 })
  lu.assertEquals(pending("jobs", "g"), 0)
  lu.assertEquals(sluice._redis.acked(s1) + sluice._redis.acked(s2), 2000)
end

function TestRedis:test_values_round_trip()
  local values = { "plain", "", "\0SL1 starts like an encoded value", 42, -7, 2.5, true, false,
                   { 1, "two", { three = 3 } }, { k = "v", n = math.maxinteger } }
  for _, v in ipairs(values) do
    lu.assertEquals(sluice.redis.decode(sluice.redis.encode(v)), v)
  end
  lu.assertEquals(sluice.redis.encode("plain"), "plain")
  local ev = {}
  for i, v in ipairs(values) do ev[i] = { fields = { v = v, i = i } } end
  lu.assertEquals(conn:add("vals", ev), #values)
  local first = conn:call("XRANGE", "vals", "-", "+", "COUNT", 1)[1][2]
  local raw = {}
  for i = 1, #first, 2 do raw[first[i]] = first[i + 1] end
  lu.assertEquals(raw, { v = "plain", i = sluice.redis.encode(1) })
  local src = sluice.redis.source({ url = srv.url, stream = "vals", group = "g", drain = true })
  local got = {}
  for e in sluice.stream({ src }) do got[e.fields.i] = e.fields.v end
  lu.assertEquals(got, values)
end

-- A consumer that takes 10 ms per event with max_demand 10 never has more
-- than 10 entries read and not acknowledged (sampled with XPENDING).
function TestRedis:test_back_pressure_reaches_redis()
  fill("slow", 1, 80)
  local src = sluice.redis.source({ url = srv.url, stream = "slow", group = "g", drain = true })
  local k = sluice.start(Counter, { sleep = 10 }, { subscribe_to = { { src, cancel = "transient", max_demand = 10, min_demand = 5 } } })
  local most, samples = 0, 0
  while sluice._redis.acked(src) < 80 do
    local p = pending("slow", "g")
    if p > most then most = p end
    samples = samples + 1
    sluice.sleep(3)
  end
  lu.assertTrue(samples > 50, "too few samples: " .. samples)
  lu.assertTrue(most <= 10, "entries read and not acknowledged: " .. most)
  lu.assertTrue(most >= 5, "the consumer never held a demand's worth: " .. most)
  lu.assertEquals({ once_each(collect(k), 1, 80) }, { 0, 0 })
  lu.assertEquals(pending("slow", "g"), 0)
end

-- handle_events failed: the entries of that chunk stay pending, and a
-- source that claims idle entries delivers them again.
function TestRedis:test_failed_entries_stay_pending_and_are_claimed()
  fill("jobs", 1, 100)
  local s1 = sluice.redis.source({ url = srv.url, stream = "jobs", group = "g", consumer = "c1" })
  local k1 = sluice.start(Counter, { fail_on = 37 }, { subscribe_to = { { s1, cancel = "transient", max_demand = 10, min_demand = 0 } } })
  local reason = k1:await()
  lu.assertEquals(reason[1], "error")
  lu.assertStrContains(reason[2], "entry 37 is bad")
  s1:stop()
  -- with max_demand 10 and min_demand 0 the source read 1..40 in chunks
  -- of 10; 1..30 were acknowledged, the failed chunk 31..40 is pending
  local p = conn:call("XPENDING", "jobs", "g", "-", "+", 1000)
  lu.assertEquals(#p, 10)
  for _, e in ipairs(p) do lu.assertEquals(e[2], "c1") end
  local s2 = sluice.redis.source({ url = srv.url, stream = "jobs", group = "g", consumer = "c2", claim_idle_ms = 50,
                                   drain = true })
  local k2 = sluice.start(Counter, nil, { subscribe_to = { { s2, cancel = "transient" } } })
  local seen = collect(k2)
  -- c2 claims 31..40 once they are idle and reads 41..100 as new
  lu.assertEquals({ once_each(seen, 31, 100) }, { 0, 0 })
  for i = 1, 30 do lu.assertNil(seen[i], "entry " .. i .. " came again") end
  lu.assertEquals(pending("jobs", "g"), 0)
end

function TestRedis:test_sink_writes_each_event()
  fill("in", 1, 5000)
  local src = sluice.redis.source({ url = srv.url, stream = "in", group = "g", drain = true })
  local double = sluice.start({
    type = "producer_consumer",
    handle_events = function(events, _, st)
      local out = {}
      for i, e in ipairs(events) do out[i] = { fields = { n = e.fields.n, twice = { e.fields.n * 2 } } } end
      return out, st
    end,
  }, nil, { subscribe_to = { src } })
  local sink = sluice.redis.sink({ url = srv.url, stream = "out", subscribe_to = { double } })
  sink:await()
  lu.assertEquals(conn:call("XLEN", "out"), 5000)
  local back = sluice.redis.source({ url = srv.url, stream = "out", group = "check", drain = true })
  local seen, bad = {}, 0
  for e in sluice.stream({ back }) do
    seen[e.fields.n] = (seen[e.fields.n] or 0) + 1
    if e.fields.twice[1] ~= e.fields.n * 2 then bad = bad + 1 end
  end
  lu.assertEquals({ once_each(seen, 1, 5000) }, { 0, 0 })
  lu.assertEquals(bad, 0)
end

function TestRedis:test_sink_maxlen_trims()
  local sink = sluice.redis.sink({ url = srv.url, stream = "capped", maxlen = 3 })
  local p = sluice.start({
    type = "producer",
    init = function() return 0 end,
    handle_demand = function(_, st)
      sluice.self():finish()
      local ev = {}
      for i = 1, 1000 do ev[i] = i end
      return ev, st
    end,
  }, nil)
  sluice.subscribe(sink, p)
  sink:await()
  lu.assertTrue(conn:call("XLEN", "capped") <= 200, "MAXLEN ~ 3 kept " .. conn:call("XLEN", "capped"))
  local last = conn:call("XREVRANGE", "capped", "+", "-", "COUNT", 1)[1][2]
  lu.assertEquals(last, { "v", sluice.redis.encode(1000) })
end

function TestRedis:test_flow_into_redis()
  fill("in", 1, 20000)
  local src = sluice.redis.source({ url = srv.url, stream = "in", group = "g", drain = true })
  local n = flow.from_stages({ src }, { stages = 2 })
    :filter(function(e) return e.fields.n % 2 == 0 end)
    :map(function(e) return e.fields.n end)
    :into_redis({ url = srv.url, stream = "evens" })
  lu.assertEquals(n, 10000)
  lu.assertEquals(conn:call("XLEN", "evens"), 10000)
  lu.assertEquals(pending("in", "g"), 0)
  local sum = 0
  for _, e in ipairs(conn:call("XRANGE", "evens", "-", "+")) do sum = sum + sluice.redis.decode(e[2][2]) end
  lu.assertEquals(sum, 2 * (10000 * 10001 // 2))
end

-- A writer's first connection is retried like a lost one: Redis may be
-- restarting when a stage writes for the first time. Here the map stops
-- the server on the first event (and starts it again 0.5 s later), so
-- the stage's first write finds it gone.
function TestRedis:test_into_redis_first_write_waits_for_a_restarting_server()
  local own = RH.start()
  local restart = ("kill -9 %d; while kill -0 %d 2>/dev/null; do sleep 0.01; done; rm -f %s/r.sock %s/pid; "
    .. "(sleep 0.5; %s) >/dev/null 2>&1 &"):format(own.pid, own.pid, own.dir, own.dir, own:command())
  local n = flow.from_enumerable(sluice.range(1, 100), { stages = 1 })
    :map(function(x) if x == 1 then os.execute(restart) end; return x end)
    :into_redis({ url = own.url, stream = "late", retry_ms = 20000 })
  lu.assertEquals(n, 100)
  own:pid_now()
  local c = sluice.redis.connect(own.url)
  lu.assertEquals(c:call("XLEN", "late"), 100)
  c:close()
  own:stop()
end

function TestRedis:test_flow_reduce_into_redis()
  local ev = {}
  for i = 1, 3000 do ev[i] = { fields = { word = ({ "a", "b", "c" })[i % 3 + 1] } } end
  conn:add("words", ev)
  local src = sluice.redis.source({ url = srv.url, stream = "words", group = "g", drain = true })
  local n = flow.from_stages({ src }):map(function(e) return e.fields.word end)
    :partition({ stages = 2 }):frequencies()
    :into_redis({ url = srv.url, stream = "counts" })
  lu.assertEquals(n, 3)
  local counts = {}
  for _, e in ipairs(conn:call("XRANGE", "counts", "-", "+")) do
    lu.assertEquals(e[2][1], "v")
    local kv = sluice.redis.decode(e[2][2])
    counts[kv[1]] = kv[2]
  end
  lu.assertEquals(counts, { a = 1000, b = 1000, c = 1000 })
end

-- A split source (a range read by the first layer's stages themselves)
-- writes into_redis too.
function TestRedis:test_into_redis_from_a_split_source()
  local n = flow.from_enumerable(sluice.range(1, 50000)):map(function(x) return x * 3 end)
    :into_redis({ url = srv.url, stream = "triples" })
  lu.assertEquals(n, 50000)
  lu.assertEquals(conn:call("XLEN", "triples"), 50000)
end

-- partition({redis = ...}) with one process: every partition stream is
-- this process's; the result is the plain partition's.
function TestRedis:test_partition_across_processes_in_one_process()
  local words = {}
  for i = 1, 3000 do words[i] = ({ "a", "b", "c", "d", "e" })[i % 5 + 1] end
  local got = flow.from_enumerable(words)
    :partition({ redis = { url = srv.url, stream = "w", partitions = 3 } })
    :frequencies()
    :to_list()
  table.sort(got, function(x, y) return x[1] < y[1] end)
  lu.assertEquals(got, { { "a", 600 }, { "b", 600 }, { "c", 600 }, { "d", 600 }, { "e", 600 } })
  -- each partition stream holds its words and an end marker per writing
  -- stage (one layer of sluice.workers() stages); nothing is left pending
  local total = 0
  for p = 1, 3 do
    total = total + conn:call("XLEN", "w:" .. p)
    lu.assertEquals(pending("w:" .. p, "w"), 0)
  end
  lu.assertEquals(total, 3000 + 3 * sluice.workers())
end

-- The same from a split source, keyed by a pair's first element, with
-- operations on both sides.
function TestRedis:test_partition_across_processes_by_key()
  local got = flow.from_enumerable(sluice.range(1, 20000))
    :map(function(x) return { x % 7, x } end)
    :partition({ key = { index = 1 }, stages = 3, redis = { url = srv.url, stream = "mod", partitions = 5 } })
    :map(function(pair) return { pair[1], 1 } end)
    :reduce_by_key(function(a, b) return a + b end)
    :to_list()
  table.sort(got, function(x, y) return x[1] < y[1] end)
  local want = {}
  for r = 0, 6 do want[#want + 1] = { r, 20000 // 7 + ((r >= 1 and r <= 20000 % 7) and 1 or 0) } end
  lu.assertEquals(got, want)
end

-- ---- errors -------------------------------------------------------------------------------

-- The error of f(...), called from this file (so that a message raised
-- at the caller's line points here).
local function err_of(f, ...)
  local args = table.pack(...)
  local ok, e = pcall(function()
    local r = f(table.unpack(args, 1, args.n))   -- not a tail call: the line stays
    return r
  end)
  lu.assertFalse(ok)
  return tostring(e)
end

function TestRedis:test_partition_redis_options()
  local f = flow.from_enumerable({ 1 })
  local cases = {
    { { stream = "s" }, "redis.partitions must be an integer from 1 to 65536, got nil" },
    { { partitions = 2 }, "redis.stream must be a non-empty string, got nil" },
    { { stream = "s", partitions = 2, processes = 3 },
      "redis.processes (3) must not exceed redis.partitions (2): a process would have no partition" },
    { { stream = "s", partitions = 4, processes = 2, process = 3 },
      "redis.process must be an integer from 1 to 2 (redis.processes), got 3" },
    { { stream = "s", partitions = 2, nope = 1 }, 'unknown redis option "nope"' },
    { 5, "redis must be a table, got 5" },
  }
  for _, c in ipairs(cases) do
    local e = err_of(f.partition, f, { redis = c[1] })
    lu.assertEquals(e:gsub("^.-:%d+: ", ""), "sluice.flow.partition: " .. c[2])
  end
end

function TestRedis:test_redis_down_at_start_names_the_url()
  local url = "unix://" .. srv.dir .. "/nothere.sock"
  lu.assertStrMatches(err_of(sluice.redis.source, { url = url, stream = "s", group = "g" }),
    ".*sluice%.redis%.source: cannot connect to unix://.*/nothere%.sock: No such file or directory")
  lu.assertStrMatches(err_of(sluice.redis.sink, { url = url, stream = "s" }),
    ".*sluice%.redis%.sink: cannot connect to unix://.*/nothere%.sock: No such file or directory")
  lu.assertStrMatches(err_of(sluice.redis.source, { url = "redis://127.0.0.1:1", stream = "s", group = "g" }),
    ".*sluice%.redis%.source: cannot connect to redis://127%.0%.0%.1:1: Connection refused")
end

function TestRedis:test_wrong_type_is_an_error()
  conn:call("SET", "str", "x")
  lu.assertStrMatches(err_of(sluice.redis.source, { url = srv.url, stream = "str", group = "g" }),
    ".*sluice%.redis%.source: the key 'str' at unix://.* is not a stream %(it is a string%)")
  lu.assertStrMatches(err_of(flow.from_enumerable({ 1 }).into_redis, flow.from_enumerable({ 1 }),
                             { url = srv.url, stream = "str" }),
    ".*sluice%.flow%.into_redis: the key 'str' at unix://.* is not a stream %(it is a string%)")
end

function TestRedis:test_bad_options()
  local cases = {
    { { stream = "s" }, "sluice.redis.source: group must be a non-empty string, got nil" },
    { { stream = "s", group = "g", batch = 0 }, "sluice.redis.source: batch must be an integer from 1 to 100000, got 0" },
    { { stream = "s", group = "g", poll_ms = 1.5 }, "sluice.redis.source: poll_ms must be an integer from 1 to 60000, got 1.5" },
    { { stream = "s", group = "g", drain = 1 }, "sluice.redis.source: drain must be a boolean, got 1" },
    { { stream = "s", group = "g", nope = 1 }, 'sluice.redis.source: unknown option "nope"' },
    { { url = "http://x", stream = "s", group = "g" },
      "sluice.redis.source: url must be redis://host:port[/db] or unix:///path, got 'http://x'" },
    { 5, "sluice.redis.source: expected a table of options, got 5" },
  }
  for _, c in ipairs(cases) do
    local e = err_of(sluice.redis.source, c[1])
    lu.assertEquals(e:gsub("^.-:%d+: ", ""), c[2])
    lu.assertStrContains(e, "test_redis.lua:")   -- at the caller's line
  end
  lu.assertEquals(err_of(sluice.redis.sink, { url = srv.url, stream = "s", maxlen = 0 }):gsub("^.-:%d+: ", ""),
    "sluice.redis.sink: maxlen must be an integer from 1 to " .. math.maxinteger .. ", got 0")
  lu.assertEquals(err_of(flow.from_enumerable({ 1 }).into_redis, flow.from_enumerable({ 1 }), { url = srv.url })
                    :gsub("^.-:%d+: ", ""), "sluice.flow.into_redis: stream must be a non-empty string, got nil")
end

function TestRedis:test_an_event_that_cannot_be_written_stops_the_sink()
  local sink = sluice.redis.sink({ url = srv.url, stream = "s" })
  local p = sluice.start({ type = "producer", handle_demand = function(_, st)
    sluice.self():finish()
    return { { fields = { [1] = "x" } } }, st
  end }, nil)
  sluice.subscribe(sink, p)
  local reason = sink:await()
  lu.assertEquals(reason[1], "error")
  lu.assertStrContains(reason[2], "(handle_events): sluice.redis.sink: events[1].fields has a key that is not a string (number)")
  lu.assertEquals(conn:call("XLEN", "s"), 0)
end

-- ---- misuse ----------------------------------------------------------------------------------

-- Every public function of sluice.redis and every method of a connection
-- given wrong types, missing arguments and numbers out of range (NaN,
-- math.huge, -1, 2^63, 1.5). Each case: the function's name as the user
-- calls it, the arguments (n: how many), for a method how self is made
-- (self = "closed": a closed connection, "bad": the value bad, "none": no
-- argument at all; otherwise an open connection), the exact message.
-- "$URL" in an options table stands for the private server's URL, "$THREAD"
-- (an argument or an element of one) for a coroutine. In a
-- task, options that pass reach sluice.start, which refuses (in_task).
local function misuse_cases()
  local nan, inf, big, max = 0 / 0, math.huge, 2 ^ 63, math.maxinteger
  local W = sluice.workers()
  local function src(o) o.url, o.stream, o.group = "$URL", o.stream or "s", "g" return o end
  local function snk(o) o.url, o.stream = "$URL", o.stream or "s" return o end
  local int = "must be an integer from %d to %d, got %s"
  local maxlen = "conn:add: maxlen must be an integer from 1 to " .. max .. ", got "
  local self_msg = "expected a Redis connection as self (call it with ':'), got "
  local call_arg = "conn:call: argument %d must be a string or a number other than NaN, got %s"
  local cases = {
    { "sluice.redis.connect", { n = 0 }, "sluice.redis.connect: url must be a string, got nil" },
    { "sluice.redis.connect", { 5, n = 1 }, "sluice.redis.connect: url must be a string, got 5" },
    { "sluice.redis.connect", { nan, n = 1 }, "sluice.redis.connect: url must be a string, got 0/0" },
    { "sluice.redis.connect", { "redis://127.0.0.1:70000", n = 1 },
      "sluice.redis.connect: url must be redis://host:port[/db] or unix:///path, got 'redis://127.0.0.1:70000'" },
    { "sluice.redis.source", { n = 0 }, "sluice.redis.source: expected a table of options, got nil" },
    { "sluice.redis.source", { src({ stream = 5 }), n = 1 },
      "sluice.redis.source: stream must be a non-empty string, got 5" },
    { "sluice.redis.source", { src({ batch = nan }), n = 1 },
      "sluice.redis.source: batch " .. int:format(1, 100000, "0/0") },
    { "sluice.redis.source", { src({ batch = inf }), n = 1 },
      "sluice.redis.source: batch " .. int:format(1, 100000, "math.huge") },
    { "sluice.redis.source", { src({ poll_ms = -1 }), n = 1 },
      "sluice.redis.source: poll_ms " .. int:format(1, 60000, "-1") },
    { "sluice.redis.source", { src({ claim_idle_ms = big }), n = 1 },
      "sluice.redis.source: claim_idle_ms " .. int:format(1, max, "9.223372036854776e+18") },
    { "sluice.redis.source", { src({ drain_ms = 1.5 }), n = 1 },
      "sluice.redis.source: drain_ms " .. int:format(0, max, "1.5") },
    { "sluice.redis.source", { src({ worker = nan }), n = 1 },
      "sluice.redis.source: worker " .. int:format(1, W, "0/0"),
      in_task = "sluice.redis.source: only the main thread may start stages" },
    { "sluice.redis.source", { src({ buffer_size = -1 }), n = 1 },
      "sluice.redis.source: buffer_size must be an integer >= 1 or math.huge, got -1",
      in_task = "sluice.redis.source: only the main thread may start stages" },
    { "sluice.redis.sink", { n = 0 }, "sluice.redis.sink: expected a table of options, got nil" },
    { "sluice.redis.sink", { snk({ maxlen = -1 }), n = 1 }, "sluice.redis.sink: maxlen " .. int:format(1, max, "-1") },
    { "sluice.redis.sink", { snk({ retry_ms = nan }), n = 1 },
      "sluice.redis.sink: retry_ms " .. int:format(0, max, "0/0") },
    { "sluice.redis.sink", { snk({ worker = 1.5 }), n = 1 }, "sluice.redis.sink: worker " .. int:format(1, W, "1.5"),
      in_task = "sluice.redis.sink: only the main thread may start stages" },
    { "sluice.redis.sink", { snk({ subscribe_to = 5 }), n = 1 }, "sluice.redis.sink: subscribe_to must be a list, got number",
      in_task = "sluice.redis.sink: only the main thread may start stages" },
    { "sluice.redis.acked", { n = 0 }, "sluice.redis.acked: expected a source stage, got nil" },
    { "sluice.redis.acked", { "x", n = 1 }, 'sluice.redis.acked: expected a source stage, got "x"' },
    { "sluice.redis.acked", { nan, n = 1 }, "sluice.redis.acked: expected a source stage, got 0/0" },
    { "sluice.redis.encode", { n = 0 }, "sluice.redis.encode: expected a value, got no value" },
    { "sluice.redis.encode", { "$THREAD", n = 1 },
      "sluice.redis.encode: cannot send a thread value (at value)" },
    { "sluice.redis.decode", { n = 0 }, "sluice.redis.decode: expected a string, got no value" },
    { "sluice.redis.decode", { 5, n = 1 }, "sluice.redis.decode: expected a string, got 5" },
    { "sluice.redis.decode", { {}, n = 1 }, "sluice.redis.decode: expected a string, got table" },
    { "conn:call", { n = 0 }, "conn:call: expected a command, got no value" },
    { "conn:call", { {}, n = 1 }, call_arg:format(1, "table") },
    { "conn:call", { "ECHO", nan, n = 2 }, call_arg:format(2, "0/0") },
    { "conn:call", { "ECHO", nil, n = 2 }, call_arg:format(2, "nil") },
    { "conn:call", { "PING", n = 1 }, "conn:call: the connection is closed", self = "closed" },
    { "conn:call", { "PING", n = 1 }, "conn:call: " .. self_msg .. "5", self = "bad", bad = 5 },
    { "conn:call", { n = 0 }, "conn:call: " .. self_msg .. "no value", self = "none" },
    { "conn:add", { n = 0 }, "conn:add: stream must be a string, got no value" },
    { "conn:add", { 5, {}, n = 2 }, "conn:add: stream must be a string, got 5" },
    { "conn:add", { "s", n = 1 }, "conn:add: events must be an array (a table), got nil" },
    { "conn:add", { "s", 5, n = 2 }, "conn:add: events must be an array (a table), got 5" },
    { "conn:add", { "s", { 1 }, -1, n = 3 }, maxlen .. "-1" },
    { "conn:add", { "s", { 1 }, 0, n = 3 }, maxlen .. "0" },
    { "conn:add", { "s", { 1 }, nan, n = 3 }, maxlen .. "0/0" },
    { "conn:add", { "s", { 1 }, inf, n = 3 }, maxlen .. "math.huge" },
    { "conn:add", { "s", { 1 }, big, n = 3 }, maxlen .. "9.2233720368548e+18" },
    { "conn:add", { "s", { 1 }, 1.5, n = 3 }, maxlen .. "1.5" },
    { "conn:add", { "s", { 1 }, "10", n = 3 }, maxlen .. '"10"' },
    { "conn:add", { "s", { { fields = { [1] = "x" } } }, n = 2 },
      "conn:add: events[1].fields has a key that is not a string (number)" },
    { "conn:add", { "s", { { fields = {} } }, n = 2 }, "conn:add: events[1].fields is empty (an entry needs a field)" },
    { "conn:add", { "s", { 1, "$THREAD" }, n = 2 }, "conn:add: cannot send a thread value (at events[2])" },
    { "conn:add", { "s", { 1 }, n = 2 }, "conn:add: the connection is closed", self = "closed" },
    { "conn:add", { "s", { 1 }, n = 2 }, "conn:add: " .. self_msg .. "table", self = "bad", bad = {} },
    { "conn:close", { n = 0 }, "conn:close: " .. self_msg .. '"x"', self = "bad", bad = "x" },
    { "conn:close", { n = 0 }, "conn:close: " .. self_msg .. "no value", self = "none" },
  }
  return cases
end

-- Runs one misuse case in the calling Lua state (the main thread or a
-- task): ok, the error. No upvalues, so that a task can be given it.
local function misuse_call(case, url)
  local name, args = case[1], case[2]
  for i = 1, args.n do
    local a = args[i]
    if a == "$THREAD" then args[i] = coroutine.create(print) end
    if type(a) == "table" then
      if a.url == "$URL" then a.url = url end
      for k, v in pairs(a) do if v == "$THREAD" then a[k] = coroutine.create(print) end end
    end
  end
  local method = name:match("^conn:(.*)$")
  if not method then
    return pcall(sluice.redis[name:match("^sluice%.redis%.(.*)$")], table.unpack(args, 1, args.n))
  end
  local c = sluice.redis.connect(url)
  local f = c[method]
  if case.self == "closed" then c:close() end
  local ok, e
  if case.self == "none" then ok, e = pcall(f)
  elseif case.self == "bad" then ok, e = pcall(f, case.bad, table.unpack(args, 1, args.n))
  else ok, e = pcall(f, c, table.unpack(args, 1, args.n)) end
  c:close()
  return ok, e
end

function TestRedis:test_misuse_raises_naming_the_function()
  local before = #sluice.stats()
  for _, where in ipairs({ "main", "task" }) do
    for i, case in ipairs(misuse_cases()) do
      local ok, e
      if where == "main" then
        ok, e = misuse_call(case, srv.url)
      else
        local sent = { case[1], case[2], case.in_task or case[3], self = case.self, bad = case.bad }
        ok, e = sluice.task(misuse_call, sent, srv.url):await()
      end
      local label = ("%s case %d (%s)"):format(where, i, case[1])
      lu.assertFalse(ok, label)
      lu.assertEquals(type(e), "string", label)
      lu.assertEquals(e, where == "task" and case.in_task or case[3], label)
    end
  end
  -- nothing was written, nothing is left running, the connection works
  lu.assertEquals(conn:call("EXISTS", "s"), 0)
  lu.assertEquals(conn:call("PING"), "PONG")
  lu.assertEquals(#sluice.stats(), before)
  -- closing a closed connection does nothing
  local c = sluice.redis.connect(srv.url)
  c:close()
  lu.assertEquals(select("#", c:close()), 0)
end

-- An error of the stage options of source and sink is at the line that
-- called them, like their other errors (it was at the caller's caller:
-- start was tail-called).
function TestRedis:test_stage_option_errors_at_the_callers_line()
  local e = err_of(sluice.redis.source, { url = srv.url, stream = "s", group = "g", name = 5 })
  lu.assertStrMatches(e, ".*test_redis%.lua:%d+: sluice%.redis%.source: name must be a string, got number")
  e = err_of(sluice.redis.sink, { url = srv.url, stream = "s", worker = 0 })
  lu.assertStrMatches(e, ".*test_redis%.lua:%d+: sluice%.redis%.sink: worker must be an integer from 1 to %d+, got 0")
end

-- Redis goes away and comes back (with AOF: nothing lost): the source
-- says so once, connects again and delivers every entry.
-- The same with a flow writing into_redis: a batch whose write failed is
-- written again whole, before its entries are acknowledged.
function TestRedis:test_into_redis_survives_a_redis_restart()
  local aof = RH.start({ aof = true })
  local c = sluice.redis.connect(aof.url)
  local ev = {}
  for i = 1, 1500 do ev[i] = { fields = { n = i } } end
  c:add("in", ev)
  c:close()
  local src = sluice.redis.source({ url = aof.url, stream = "in", group = "g", consumer = "c1", drain = true,
                                    claim_idle_ms = 200 })
  aof:restart_later(150, 300)
  local n = flow.from_stages({ { src, max_demand = 20 } }, { stages = 1 })
    :map(function(e)
      sluice.sleep(1)
      return { fields = { n = e.fields.n } }
    end)
    :into_redis({ url = aof.url, stream = "out" })
  lu.assertTrue(n >= 1500, "written " .. n)
  aof:pid_now()
  c = sluice.redis.connect(aof.url)
  local seen = {}
  for _, e in ipairs(c:call("XRANGE", "out", "-", "+")) do
    local v = sluice.redis.decode(e[2][2])
    seen[v] = (seen[v] or 0) + 1
  end
  lu.assertEquals((once_each(seen, 1, 1500)), 0)   -- none missing (some may be written twice)
  lu.assertEquals(c:call("XPENDING", "in", "g")[1], 0)
  c:close()
  aof:stop()
end

function TestRedis:test_source_survives_a_redis_restart()
  local aof = RH.start({ aof = true })
  local c = sluice.redis.connect(aof.url)
  local ev = {}
  for i = 1, 400 do ev[i] = { fields = { n = i } } end
  c:add("jobs", ev)
  c:close()
  local src = sluice.redis.source({ url = aof.url, stream = "jobs", group = "g", consumer = "c1", drain = true,
                                    claim_idle_ms = 200 })
  local k = sluice.start(Counter, { sleep = 2 }, { subscribe_to = { { src, cancel = "transient", max_demand = 10 } } })
  sluice.sleep(200)
  aof:kill()
  sluice.sleep(300)
  aof:restart()
  local seen = collect(k)
  local missing = once_each(seen, 1, 400)
  lu.assertEquals(missing, 0)
  c = sluice.redis.connect(aof.url)
  lu.assertEquals(c:call("XPENDING", "jobs", "g")[1], 0)
  c:close()
  aof:stop()
end

local rc = lu.LuaUnit.run()
if srv then srv:stop() end
os.exit(rc)
