-- sluice.redis_sink: the spec of a sluice.redis.sink stage, as a module
-- (it crosses to its worker by name), and `write`, which the sink and a
-- flow's into_redis share: one pipelined XADD per event of a batch
-- (redis.c's conn:add). A lost connection (or none yet: the first
-- connect), or a Redis loading its data, is retried for up to retry_ms (100 ms doubling to 5 s between tries, said
-- once on stderr); a retry sends the whole batch again, so entries written
-- before the failure may be written twice (at-least-once). handle_events
-- returns only once the batch is written: the events' source entries are
-- acknowledged after that.
local sluice = require("sluice")
local R = sluice._redis

local Sink = { type = "consumer" }

-- Writes events (an array or a flow's outbox) to stream (default
-- cfg.stream) with cfg's maxlen on cfg.conn (opened on first use); label
-- names the writer in messages. Returns the number written; raises when
-- it cannot.
local function write(cfg, events, label, stream)
  stream = stream or cfg.stream
  if #events == 0 then return 0 end
  events = R.events(events)   -- a flow's outbox, taken once: each try writes the same events
  local waited, delay, said = 0, 100, false
  while true do
    local ok, n, err, kind
    if not cfg.conn then
      -- the first connection (a stage's first write) is retried as a lost
      -- one: Redis may be restarting just then
      local c_ok, conn = pcall(R.connect, cfg.url, label)
      if c_ok then
        cfg.conn = conn
      elseif not tostring(conn):find(": cannot connect to ", 1, true) or waited >= cfg.retry_ms then
        error(conn, 0)
      else
        ok, n, err, kind = true, nil, tostring(conn):match(": cannot connect to .-: (.*)$") or tostring(conn), "io"
      end
    end
    if cfg.conn then ok, n, err, kind = pcall(cfg.conn.add, cfg.conn, stream, events, cfg.maxlen, cfg.whole) end
    if not ok then error(("%s: %s"):format(label, tostring(n):gsub("^[^:]*:%d+: ", "")), 0) end
    if n then
      if said then io.stderr:write(("%s %s: connected again to %s\n"):format(label, stream, cfg.url)) end
      return n
    end
    if (kind ~= "io" and kind ~= "loading") or waited >= cfg.retry_ms then
      error(("%s: %s: %s"):format(label, cfg.url, err), 0)
    end
    if kind == "io" and not said then
      io.stderr:write(("%s %s: %s; retrying\n"):format(label, stream, err))
      said = true
    end
    sluice.sleep(delay)
    waited = waited + delay
    delay = math.min(delay * 2, 5000)
  end
end
Sink.write = write

function Sink.init(cfg)
  cfg.conn = R.connect(cfg.url, "sluice.redis.sink")
  return cfg
end

function Sink.handle_events(events, _, cfg)
  write(cfg, events, "sluice.redis.sink")
  return {}, cfg
end

-- Finishes once its last producer ended (like a flow's own consumers).
function Sink.handle_cancel(_, _, cfg)
  local me = sluice.self()
  if me:stats().producers == 0 then me:finish() end
  return {}, cfg
end

function Sink.terminate(_, cfg)
  if cfg.conn then cfg.conn:close() end
end

return Sink
