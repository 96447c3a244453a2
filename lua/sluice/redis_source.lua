-- sluice.redis_source: the spec of a sluice.redis.source stage, as a
-- module (it crosses to its worker by name). The stage reads a stream
-- through a consumer group, never more entries than its consumers have
-- demanded:
--   1. its own pending entries first (what a consumer of the same name
--      read and did not acknowledge before a restart), read from id 0;
--   2. every min(claim_idle_ms, 1000) ms, entries pending in any consumer
--      of the group for longer than claim_idle_ms (XAUTOCLAIM);
--   3. new entries (">").
-- Reads never block the worker: when the stream has nothing and demand is
-- left, the stage reads again after 1, 2, 4 ... up to poll_ms ms. The
-- stages that receive its events acknowledge them (redis_ack.c). A lost
-- connection is retried (100 ms doubling to 5 s, said once on stderr);
-- afterwards the stage reads its own pending entries again.
local sluice = require("sluice")
local R = sluice._redis

local Source = { type = "producer" }

local POLL, MAX_BACKOFF = "sluice.redis.poll", 5000

local function warn(st, fmt, ...)
  io.stderr:write(("sluice.redis.source %s: " .. fmt .. "\n"):format(st.cfg.stream, ...))
end

-- The group exists (created at the stream's start, with the stream when
-- missing); an error other than a lost connection raises.
local function ensure_group(st)
  local c = st.cfg
  local ok, err, kind = st.conn:call("XGROUP", "CREATE", c.stream, c.group, "0", "MKSTREAM")
  if ok or kind == "busygroup" then return true end
  if kind == "io" or kind == "loading" then return nil, err, kind end
  if kind == "wrongtype" then
    error(("sluice.redis.source: the key '%s' at %s is not a stream (%s)"):format(c.stream, c.url, err), 0)
  end
  error(("sluice.redis.source: %s: %s"):format(c.url, err), 0)
end

-- Entries trimmed from the stream while they were pending: their data is
-- gone; they are acknowledged so that they leave the group, and said.
local function gone_entries(st, ids)
  if #ids == 0 then return end
  warn(st, "%d pending entries were trimmed from the stream before they were processed (first %s); they are lost",
       #ids, ids[1])
  st.conn:_ack(st.cfg.stream, st.cfg.group, ids)
end

-- A partition stream's end markers (sluice.redis_flow): "process stage
-- stages". They are taken out of what was read, acknowledged, and
-- counted: the stream has ended once every stage of each of the
-- cfg.ends processes has sent one.
local EOF = "sluice.eof"
local function take_markers(st, got)
  local kept, ids = {}, {}
  for _, e in ipairs(got) do
    local m = e.fields[EOF]
    if m then
      ids[#ids + 1] = e.id
      local proc, stage, total = m:match("^(%d+) (%d+) (%d+)$")
      local seen = st.ends[tonumber(proc)] or { n = 0, total = tonumber(total) }
      st.ends[tonumber(proc)] = seen
      if not seen[stage] then
        seen[stage] = true
        seen.n = seen.n + 1
      end
    else
      kept[#kept + 1] = e
    end
  end
  if #ids > 0 then st.conn:_ack(st.cfg.stream, st.cfg.group, ids) end
  return kept
end

local function all_ended(st)
  for p = 1, st.cfg.ends do
    local seen = st.ends[p]
    if not seen or seen.n < seen.total then return false end
  end
  return true
end

-- One read of at most n entries (see the top of the file). Returns the
-- entries, or nil, message, kind.
local function read(st, n)
  local c = st.cfg
  if st.history then
    local got, gone, kind = st.conn:_read(c.stream, c.group, c.consumer, n, st.history)
    if not got then return nil, gone, kind end
    gone_entries(st, gone)
    local last = got[#got] and got[#got].id or gone[#gone]
    if last then
      st.history = last
      if #got > 0 then return got end
    else
      st.history = nil
    end
  end
  if sluice._now_ms() >= st.next_claim then
    local got, cursor, gone = st.conn:_autoclaim(c.stream, c.group, c.consumer, c.claim_idle_ms, st.cursor, n)
    if not got then return nil, cursor, gone end
    gone_entries(st, gone)
    st.cursor = cursor
    if cursor == "0-0" then st.next_claim = sluice._now_ms() + math.min(c.claim_idle_ms, 1000) end
    if #got > 0 then
      st.claimed = st.claimed + #got
      return got
    end
  end
  local got, err, kind = st.conn:_read(c.stream, c.group, c.consumer, n, ">")
  if not got then return nil, err, kind end
  return got
end

local function schedule(st, ms)
  if st.timer then return end
  st.timer = true
  sluice.self():send_after(ms, POLL)
end

-- A failed read: a lost connection or a loading Redis is retried later,
-- a missing group is created again, anything else stops the stage.
local function trouble(st, err, kind)
  if kind == "io" or kind == "loading" then
    if not st.down then
      st.down, st.backoff = true, 100
      if kind == "io" then
        warn(st, "%s; retrying", err)
        st.warned = true
      end
    else
      st.backoff = math.min(st.backoff * 2, MAX_BACKOFF)
    end
    schedule(st, st.backoff)
  elseif kind == "nogroup" then
    local ok, e2, k2 = ensure_group(st)
    if not ok then return trouble(st, e2, k2) end
    st.history = "0"
  else
    error(("sluice.redis.source: %s: %s"):format(st.cfg.url, err), 0)
  end
end

-- After a failure: connected again, the group is there, and the stage's
-- own pending entries are read again.
local function recover(st)
  local ok, err, kind = ensure_group(st)
  if not ok then return trouble(st, err, kind) end
  if st.warned then warn(st, "connected again to %s", st.cfg.url) end
  st.warned = false
  st.down, st.history = false, "0"
end

-- With drain: nothing new and nothing pending in the whole group. The
-- stage finishes once that has held for drain_ms (so that consumers that
-- subscribe a moment later, such as a flow's other stages, still find it).
local function drained(st)
  local c = st.cfg
  local p = st.conn:call("XPENDING", c.stream, c.group)
  return type(p) == "table" and p[1] == 0
end

-- Reads up to the demand; schedules the next read when demand is left.
local function fill(st)
  local out, n = {}, 0
  if st.down or st.finished then return out end
  while st.demand > 0 do
    local want = math.min(st.demand, st.cfg.batch)
    local got, err, kind = read(st, want)
    if not got then
      trouble(st, err, kind)
      return out
    end
    local read_n = #got
    if st.ends then got = take_markers(st, got) end
    table.move(got, 1, #got, n + 1, out)
    n = n + #got
    st.demand = st.demand - #got
    if read_n < want and not st.history then break end
  end
  if n > 0 then st.delay, st.idle_since = 1, nil end
  if st.demand > 0 then
    if n == 0 and st.ends and all_ended(st) and drained(st) then
      st.finished = true
      sluice.self():finish()
      return out
    end
    if n == 0 and st.cfg.drain then
      local now = sluice._now_ms()
      if not drained(st) then
        st.idle_since = nil
      elseif not st.idle_since then
        st.idle_since = now
      elseif now - st.idle_since >= st.cfg.drain_ms then
        st.finished = true
        sluice.self():finish()
        return out
      end
    end
    schedule(st, st.delay)
    if n == 0 then st.delay = math.min(st.delay * 2, st.cfg.poll_ms) end
  end
  return out
end

function Source.init(cfg)
  local st = { cfg = cfg, demand = 0, history = "0", cursor = "0-0", next_claim = 0, delay = 1, timer = false,
               down = false, backoff = 100, claimed = 0, ends = cfg.ends and {} or nil }
  st.conn = R.connect(cfg.url, "sluice.redis.source")
  local ok, err = ensure_group(st)
  if not ok then error(("sluice.redis.source: %s"):format(err), 0) end
  R.register_source(sluice.self(), cfg.url, cfg.stream, cfg.group)
  return st
end

function Source.handle_demand(n, st)
  st.demand = st.demand + n
  return fill(st), st
end

function Source.handle_info(msg, st)
  if msg ~= POLL then return {}, st end
  st.timer = false
  if st.down then recover(st) end
  return fill(st), st
end

function Source.handle_call(req, _, st)
  if req == "stats" then
    return { demand = st.demand, claimed = st.claimed, down = st.down, acked = R.acked(sluice.self()) }, {}, st
  end
  return nil, {}, st
end

function Source.terminate(_, st)
  if st.conn then st.conn:close() end
end

return Source
