-- examples/redis_jobs.lua: a job queue in a Redis stream, worked off by a
-- slow worker; back-pressure reaches Redis (lua/README.md §13).
--   build/sluice examples/redis_jobs.lua [jobs] [redis-url]
-- Without a URL it starts a redis-server of its own. A submitter pipeline
-- adds the jobs to the stream "jobs" (sluice.redis.sink); the worker reads
-- them through the consumer group "workers" and takes 5 ms per job. It
-- asks for 10 jobs at a time, so the source never reads more than that
-- from Redis: the other jobs wait in the stream (the group's lag), not in
-- the worker's memory. A job is acknowledged once handle_events returned
-- for it; run it again with the same URL and nothing is done twice.
local n = tonumber(arg[1] or "100")
local srv = arg[2] and { url = arg[2], stop = function() end } or dofile("examples/private_redis.lua")()
local conn = sluice.redis.connect(srv.url)

-- submit: jobs {id, size} through a sink; each is one entry, its field
-- job holding the table (sluice.redis.encode writes tables so)
local jobs = sluice.from_enumerable(sluice.range(1, n))
local submit = sluice.start({
  type = "producer_consumer",
  handle_events = function(ids, _, st)
    local out = {}
    for i, id in ipairs(ids) do out[i] = { fields = { job = { id = id, size = id % 7 + 1 } } } end
    return out, st
  end,
}, nil, { subscribe_to = { jobs } })
sluice.redis.sink({ url = srv.url, stream = "jobs", subscribe_to = { submit } }):await()
print(("submitted %d jobs; the first is stored as %q"):format(conn:call("XLEN", "jobs"),
  sluice.redis.encode({ id = 1, size = 2 }):sub(1, 4)))

-- work: 5 ms per job, 10 jobs asked for at a time
local queue = sluice.redis.source({ url = srv.url, stream = "jobs", group = "workers", consumer = "worker-1",
                                    drain = true, drain_ms = 100 })
local Worker = {
  type = "consumer",
  init = function() return { units = 0 } end,
  handle_events = function(events, _, st)
    for _, e in ipairs(events) do
      sluice.sleep(5)
      st.units = st.units + e.fields.job.size
    end
    return {}, st
  end,
  handle_call = function(_, _, st) return st.units, {}, st end,
}
local worker = sluice.start(Worker, nil, { subscribe_to = { { queue, max_demand = 10, min_demand = 5 } } })

-- watch: jobs read and not yet acknowledged (XPENDING), jobs still in Redis (lag)
local function lag()
  local info = conn:call("XINFO", "GROUPS", "jobs")[1]
  for i = 1, #info, 2 do if info[i] == "lag" then return info[i + 1] end end
end
local most_pending, most_waiting = 0, 0
while sluice.redis.acked(queue) < n do
  most_pending = math.max(most_pending, conn:call("XPENDING", "jobs", "workers")[1])
  most_waiting = math.max(most_waiting, lag() or 0)
  sluice.sleep(10)
end
print(("%d jobs done, %d units of work"):format(sluice.redis.acked(queue), worker:call("units")))
print(("never more than 10 jobs taken from Redis at once: %s"):format(most_pending <= 10))
print(("jobs waited in Redis while the worker was busy: %s"):format(most_waiting > 10))
print(("left pending: %d"):format(conn:call("XPENDING", "jobs", "workers")[1]))
queue:await()
worker:stop()
conn:close()
srv:stop()
