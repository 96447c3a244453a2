-- The sluice side of the Redis row (run.lua), one process of it:
--   sluice redis_sluice.lua URL NAME
-- The same work as redis_plain.lua, written as a flow: a source reading
-- "in" through group "g", a map, into_redis "out"; ends once the group is
-- drained.
local url, name = arg[1], arg[2]
local src = sluice.redis.source({ url = url, stream = "in", group = "g", consumer = name, drain = true,
                                  drain_ms = 0 })
sluice.flow.from_stages({ src }, { stages = 1 })
  :map(function(e) return { fields = { n = tostring(tonumber(e.fields.n) * 2) } } end)
  :into_redis({ url = url, stream = "out" })
