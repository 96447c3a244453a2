-- sluice.redis: Redis Streams sources and sinks (reference §13).
-- sluice.redis.source(opts) starts a producer stage that reads a stream
-- through a consumer group (sluice.redis_source), sluice.redis.sink(opts)
-- a consumer stage that adds its events to a stream (sluice.redis_sink);
-- flow:into_redis(opts) (sluice.flow_run) writes a flow's output from its
-- last layer's stages. The options are checked here, on the caller's
-- thread, and the URL is tried once so that a Redis that is not there is
-- an error of the call that names it.
local sluice = require("sluice")
local R = sluice._redis
local inspect = sluice.inspect

local M = {}

-- The checks raise without a location; the public functions raise again
-- at their caller's line.
local function fail(fn, msg)
  error(("%s: %s"):format(fn, msg), 0)
end

local function check_int(fn, opts, k, default, lo, hi)
  local v = opts[k]
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < lo or v > hi then
    fail(fn, ("%s must be an integer from %d to %d, got %s"):format(k, lo, hi, inspect(v)))
  end
  return v
end

local function check_string(fn, opts, k, default)
  local v = opts[k]
  if v == nil and default ~= nil then return default end
  if type(v) ~= "string" or v == "" then
    fail(fn, ("%s must be a non-empty string, got %s"):format(k, inspect(v)))
  end
  return v
end

local function check_keys(fn, opts, keys)
  if type(opts) ~= "table" then fail(fn, "expected a table of options, got " .. inspect(opts)) end
  for k in pairs(opts) do
    if not keys[k] then fail(fn, "unknown option " .. inspect(k)) end
  end
end

-- Connects once and checks that the key is a stream or is not there yet.
local function try_stream(fn, url, stream)
  local conn = R.connect(url, fn)
  local t, err = conn:call("TYPE", stream)
  conn:close()
  if t == nil then fail(fn, ("%s: %s"):format(url, err)) end
  if t ~= "none" and t ~= "stream" then
    fail(fn, ("the key '%s' at %s is not a stream (it is a %s)"):format(stream, url, t))
  end
end

local DEFAULT_URL = "redis://127.0.0.1:6379"

local SOURCE_KEYS = { url = true, stream = true, group = true, consumer = true, batch = true, poll_ms = true,
                      claim_idle_ms = true, drain = true, drain_ms = true,
                      name = true, worker = true, dispatcher = true, buffer_size = true, buffer_keep = true,
                      demand = true, _ends = true }
local SINK_KEYS = { url = true, stream = true, maxlen = true, retry_ms = true,
                    name = true, worker = true, subscribe_to = true }
local STAGE_KEYS = { "name", "worker", "dispatcher", "buffer_size", "buffer_keep", "demand", "subscribe_to" }

local function source_cfg(opts)
  local fn = "sluice.redis.source"
  check_keys(fn, opts, SOURCE_KEYS)
  local cfg = {
    url = check_string(fn, opts, "url", DEFAULT_URL),
    stream = check_string(fn, opts, "stream"),
    group = check_string(fn, opts, "group"),
    consumer = check_string(fn, opts, "consumer", R.whoami()),
    batch = check_int(fn, opts, "batch", 1000, 1, 100000),
    poll_ms = check_int(fn, opts, "poll_ms", 100, 1, 60000),
    claim_idle_ms = check_int(fn, opts, "claim_idle_ms", 30000, 1, math.maxinteger),
    drain = opts.drain,
    drain_ms = check_int(fn, opts, "drain_ms", 1000, 0, math.maxinteger),
    -- a partition stream of partition({redis = ...}): ends once the end
    -- markers of that many processes came (sluice.redis_flow)
    ends = opts._ends,
  }
  if cfg.drain ~= nil and type(cfg.drain) ~= "boolean" then
    fail(fn, "drain must be a boolean, got " .. inspect(cfg.drain))
  end
  try_stream(fn, cfg.url, cfg.stream)
  return cfg
end

-- The checked configuration of a writer (sink or into_redis).
local function writer_cfg(fn, opts, keys)
  check_keys(fn, opts, keys)
  local cfg = {
    url = check_string(fn, opts, "url", DEFAULT_URL),
    stream = check_string(fn, opts, "stream"),
    maxlen = check_int(fn, opts, "maxlen", nil, 1, math.maxinteger),
    retry_ms = check_int(fn, opts, "retry_ms", 60000, 0, math.maxinteger),
  }
  try_stream(fn, cfg.url, cfg.stream)
  return cfg
end

-- Starts the spec module with cfg; an init error is fn's.
local function start(fn, spec, cfg, opts)
  local o = {}
  for _, k in ipairs(STAGE_KEYS) do o[k] = opts[k] end
  local ok, stage = pcall(sluice.start, require(spec), cfg, o)
  if not ok then
    local msg = tostring(stage):gsub("^sluice%.start: init failed: ", ""):gsub("^sluice%.start", fn)
    error(msg, 3)
  end
  return stage
end

-- (start is not tail-called: its error, at level 3, is at the line that
-- called source or sink.)
--- sluice.redis.source(opts) -> stage handle
function M.source(opts)
  local ok, cfg = pcall(source_cfg, opts)
  if not ok then error(cfg, 2) end
  local stage = start("sluice.redis.source", "sluice.redis_source", cfg, opts)
  return stage
end

--- sluice.redis.sink(opts) -> stage handle
function M.sink(opts)
  local ok, cfg = pcall(writer_cfg, "sluice.redis.sink", opts, SINK_KEYS)
  if not ok then error(cfg, 2) end
  local stage = start("sluice.redis.sink", "sluice.redis_sink", cfg, opts)
  return stage
end

-- flow:into_redis's options (sluice.flow_run); raises without a location.
function M._into_cfg(opts)
  return writer_cfg("sluice.flow.into_redis", opts, { url = true, stream = true, maxlen = true, retry_ms = true })
end

--- sluice.redis.acked(source) -> the number of the source's entries that
--- stages of this process have acknowledged so far.
function M.acked(stage)
  local ok, n = pcall(R.acked, stage)
  if not ok then error("sluice.redis.acked: expected a source stage, got " .. inspect(stage), 2) end
  return n
end

--- sluice.redis.encode(v) / decode(s): a field value as sluice writes and
--- reads it (strings as they are, other values encoded).
M.encode, M.decode = R.encode, R.decode

--- sluice.redis.connect(url) -> a connection of this Lua state:
--- conn:call(cmd, ...) returns the reply (or nil, message, kind).
function M.connect(url)
  if type(url) ~= "string" then error("sluice.redis.connect: url must be a string, got " .. inspect(url), 2) end
  local ok, conn = pcall(R.connect, url, "sluice.redis.connect", true)
  if not ok then error(conn, 2) end
  return conn
end

return M
