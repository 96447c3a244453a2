-- sluice.flow_check: the Flow record and the checks of what users give
-- the Flow functions. Flow is the metatable of every flow: sluice.flow
-- adds the builder methods, sluice.flow_run the terminal ones. The checks
-- raise "sluice.flow.<function>: ..." errors at the caller's line (fail's
-- level counts the frames between the method the user called and fail).
local sluice = require("sluice")

local inspect = sluice.inspect

local M = {}

local Flow = {}
Flow.__index = Flow

local function is_flow(v) return getmetatable(v) == Flow end

local function fail(fn, msg, level)
  error(("sluice.flow.%s: %s"):format(fn, msg), (level or 1) + 2)
end

local function check_fn(fn, name, f)
  if type(f) ~= "function" then
    fail(fn, ("%s must be a function, got %s"):format(name, type(f)), 2)
  end
end

-- Options and their checks --------------------------------------------------------

local SOURCE_OPTS = { stages = true, max_demand = true, min_demand = true, window = true,
                      buffer_size = true, buffer_keep = true, on_init = true, progress = true }
local PARTITION_OPTS = { key = true, hash = true, redis = true }
for k in pairs(SOURCE_OPTS) do PARTITION_OPTS[k] = true end

-- Demand counts are 32-bit in the engine.
local MAX_DEMAND = 0x7fffffff

-- max_demand and min_demand of an options table or a subscription entry
-- (`where` says which item of a list it is).
local function check_demand(fn, o, where, level)
  local max = o.max_demand
  if max ~= nil and (math.type(max) ~= "integer" or max < 1 or max > MAX_DEMAND) then
    fail(fn, ("%smax_demand must be an integer from 1 to %d, got %s"):format(where, MAX_DEMAND, inspect(max)), level)
  end
  if o.min_demand ~= nil then
    max = max or 1000
    if math.type(o.min_demand) ~= "integer" or o.min_demand < 0 or o.min_demand >= max then
      fail(fn, ("%smin_demand must be an integer from 0 to %d, got %s"):format(where, max - 1, inspect(o.min_demand)), level)
    end
  end
end

-- The subscription options of a {spec, arg, opts} entry.
local function check_spec_opts(fn, o, i)
  if o == nil then return end
  if type(o) ~= "table" then fail(fn, ("item %d: opts must be a table, got %s"):format(i, inspect(o)), 2) end
  check_demand(fn, o, ("item %d: "):format(i), 3)
end

-- partition({redis = {...}}): a partition across processes (reference
-- §13.5). Returns the checked copy, url and process filled in.
local REDIS_PART = { url = true, stream = true, partitions = true, process = true, processes = true }
local function check_redis(fn, r, L)
  if type(r) ~= "table" then fail(fn, "redis must be a table, got " .. inspect(r), L) end
  for k in pairs(r) do
    if not REDIS_PART[k] then fail(fn, "unknown redis option " .. inspect(k), L) end
  end
  local out = { url = r.url or "redis://127.0.0.1:6379", stream = r.stream, partitions = r.partitions,
                processes = r.processes or 1, process = r.process or 1 }
  if type(out.url) ~= "string" then fail(fn, "redis.url must be a string, got " .. inspect(r.url), L) end
  if type(out.stream) ~= "string" or out.stream == "" then
    fail(fn, "redis.stream must be a non-empty string, got " .. inspect(r.stream), L)
  end
  for _, k in ipairs({ "partitions", "processes" }) do
    if math.type(out[k]) ~= "integer" or out[k] < 1 or out[k] > 65536 then
      fail(fn, ("redis.%s must be an integer from 1 to 65536, got %s"):format(k, inspect(r[k])), L)
    end
  end
  if math.type(out.process) ~= "integer" or out.process < 1 or out.process > out.processes then
    fail(fn, ("redis.process must be an integer from 1 to %d (redis.processes), got %s")
      :format(out.processes, inspect(r.process)), L)
  end
  if out.processes > out.partitions then
    fail(fn, ("redis.processes (%d) must not exceed redis.partitions (%d): a process would have no partition")
      :format(out.processes, out.partitions), L)
  end
  return out
end

-- The options of method fn, checked when it is called (errors name the
-- caller's line; depth: frames between fn and this call).
local function check_opts(fn, opts, allowed, depth)
  local L = 2 + (depth or 0)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fn, "options must be a table, got " .. type(opts), L) end
  local out = {}
  for k, v in pairs(opts) do
    if not (allowed or SOURCE_OPTS)[k] then fail(fn, "unknown option " .. inspect(k), L) end
    out[k] = v
  end
  if out.stages ~= nil and (math.type(out.stages) ~= "integer" or out.stages < 1) then
    fail(fn, "stages must be an integer >= 1, got " .. inspect(out.stages), L)
  end
  check_demand(fn, out, "", L + 1)
  if out.buffer_size ~= nil and out.buffer_size ~= math.huge
      and (math.type(out.buffer_size) ~= "integer" or out.buffer_size < 1) then
    fail(fn, "buffer_size must be an integer >= 1 or math.huge, got " .. inspect(out.buffer_size), L)
  end
  if out.buffer_keep ~= nil and out.buffer_keep ~= "first" and out.buffer_keep ~= "last" then
    fail(fn, "buffer_keep must be \"first\" or \"last\", got " .. inspect(out.buffer_keep), L)
  end
  if out.progress ~= nil and type(out.progress) ~= "boolean" then
    fail(fn, "progress must be true or false, got " .. inspect(out.progress), L)
  end
  for _, name in ipairs({ "on_init", "hash" }) do
    if out[name] ~= nil and type(out[name]) ~= "function" then
      fail(fn, ("%s must be a function, got %s"):format(name, type(out[name])), L)
    end
  end
  if out.key ~= nil then
    local k = out.key
    local ok = type(k) == "function" or (type(k) == "table" and
      ((math.type(k.index) == "integer" and k.index >= 1) or type(k.field) == "string"))
    if not ok then fail(fn, "key must be a function, {index = i} or {field = name}, got " .. inspect(k), L) end
  end
  if out.window ~= nil and (type(out.window) ~= "table" or type(out.window.type) ~= "string") then
    fail(fn, "window must come from sluice.window, got " .. inspect(out.window), L)
  end
  if out.redis ~= nil then out.redis = check_redis(fn, out.redis, L + 1) end
  return out
end

-- A stage list entry is a stage or {stage, subscription options...}.
local function split_entry(entry)
  if type(entry) ~= "table" then return entry, {} end
  local o = {}
  for k, v in pairs(entry) do if k ~= 1 then o[k] = v end end
  return entry[1], o
end

M.Flow, M.is_flow, M.fail, M.check_fn = Flow, is_flow, fail, check_fn
M.check_demand, M.check_spec_opts, M.check_opts = check_demand, check_spec_opts, check_opts
M.PARTITION_OPTS, M.split_entry = PARTITION_OPTS, split_entry

return M
