-- One process of the scale-out tests (tests/redis/scaleout.sh):
--   sluice worker.lua URL CONSUMER [CLAIM_IDLE_MS]
-- reads stream "in" through group "g" as CONSUMER, and writes one entry
-- per event to stream "out" ({n, src = the input entry's id, by =
-- CONSUMER}); ends once the group has nothing left (drain). Prints what
-- it wrote and how many of its entries were acknowledged.
local url, consumer, claim = arg[1], arg[2], tonumber(arg[3] or "30000")
local src = sluice.redis.source({ url = url, stream = "in", group = "g", consumer = consumer, drain = true,
                                  claim_idle_ms = claim })
local wrote = sluice.flow.from_stages({ src })
  :map(function(e) return { fields = { n = e.fields.n, src = e.id, by = consumer } } end)
  :into_redis({ url = url, stream = "out" })
print(("%s wrote %d acked %d"):format(consumer, wrote, sluice.redis.acked(src)))
