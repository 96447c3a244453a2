-- sluice.redis_flow: the flow stages' side of Redis (reference §13). A
-- layer whose configuration has `sink` (flow:into_redis) or `repart` (the
-- layer before a partition({redis = ...})) writes what it would emit to
-- Redis instead, from inside its callback, so that the Redis source's
-- entries it came from are acknowledged only after the write:
--   sink:   every event to one stream (sluice.redis_sink's write);
--   repart: each event to the stream <stream>:<p>, p = the engine's hash
--           of its partition key into 1..partitions (the same in every
--           process), and once the stage's input has ended, an end marker
--           to every partition stream, which the readers of the
--           partitions count (sluice.redis_source's `ends`).
-- The stages of a flow layer (sluice.flow_layer) and of a split source
-- (sluice.flow_source) call write and, when they end, ended.
local sluice = require("sluice")
local Sink = require("sluice.redis_sink")

local M = {}

M.EOF = "sluice.eof"   -- the field of an end marker

-- The partition (1..n) of event e under the repart spec r.
local function part_of(r, e)
  if r.hash then
    local p = r.hash(e)
    if p == nil then return nil end   -- dropped, as a partition's hash may
    if math.type(p) ~= "integer" or p < 1 or p > r.partitions then
      error(("the partition hash returned %s, not an integer from 1 to %d"):format(sluice.inspect(p), r.partitions), 0)
    end
    return p
  end
  local key = r.key
  local k = e
  if type(key) == "function" then k = key(e)
  elseif type(key) == "table" then k = e[key.index or key.field] end
  return sluice._hash(k, r.partitions)
end

-- Writes the stage's output (an array or a flow's outbox); returns the
-- empty array the callback emits instead.
function M.write(st, out)
  local cfg = st.cfg
  if #out == 0 then return {} end
  if cfg.sink then
    local n = Sink.write(cfg.sink, out, "sluice.flow.into_redis")
    sluice._count(cfg.sink.written, n)
    return {}
  end
  local r = cfg.repart
  local by = {}
  for _, e in ipairs(sluice._redis.events(out)) do
    local p = part_of(r, e)
    if p then
      local list = by[p]
      if not list then
        list = {}
        by[p] = list
      end
      list[#list + 1] = e
    end
  end
  for p = 1, r.partitions do
    if by[p] then Sink.write(r, by[p], "sluice.flow.partition", ("%s:%d"):format(r.stream, p)) end
  end
  return {}
end

-- The stage's input has ended (normally): a repart stage adds its end
-- marker to every partition stream.
function M.ended(st)
  local r = st.cfg.repart
  if not r or st.eof_sent then return end
  st.eof_sent = true
  local marker = { { fields = { [M.EOF] = ("%d %d %d"):format(r.process, st.cfg.index, st.cfg.total) } } }
  r.whole = false   -- the marker is an entry with its own field, not a value
  for p = 1, r.partitions do
    Sink.write(r, marker, "sluice.flow.partition", ("%s:%d"):format(r.stream, p))
  end
  r.whole = true
end

return M
