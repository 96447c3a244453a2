-- sluice.flow_error: errors inside a flow's stages. The stage specs of
-- sluice.flow_layer, sluice.flow_source and sluice.flow_merge call user
-- functions under xpcall with on_error, which finds the operation that
-- failed and keeps the useful part of the traceback; stop_with stops the
-- stage with {"error", "flow F layer L stage I (op): message", traceback},
-- which the terminal method (sluice.flow_run) raises. The fused loop of
-- sluice.flow_codegen reports its own checks through nilerr and nilacc.
-- protected_init and ends_with_upstream build the init and handle_cancel
-- callbacks those specs share.
local sluice = require("sluice")

local M = {}

-- An error raised by the flow's own checks names its operation.
local function op_error(op, msg)
  error({ flow_op = op, msg = msg }, 0)
end

-- The fused loop reports a nil or a non-array where it expected one.
local function nilerr(op, got)
  if got ~= nil then
    op_error(op, ("%s must return an array%s, got %s"):format(op,
      op == "flat_map" and " or an iterator function" or "", type(got)))
  end
  op_error(op, ("%s returned nil where %s was expected"):format(op,
    op == "map_values" and "a value" or ((op == "group_by" or op == "uniq_by") and "a key") or "an event"))
end

-- A reducer (or an accumulator or merge function) returned nil where the
-- layer needs its accumulator.
local function nilacc(op, who)
  op_error(op, ("%s returned nil where an accumulator was expected"):format(who or "the reducer"))
end

-- User functions are called through locals or upvalues whose names say
-- which operation they belong to; the error handler reads them off the
-- stack.
local CALL_NAMES = {
  map_batch_fn = "map_batch", on_trigger_fn = "on_trigger", on_init_fn = "on_init",
  acc_fn = "accumulator", left_key_fn = "bounded_join left_key",
  right_key_fn = "bounded_join right_key", join_fn = "bounded_join",
  merge_fn = "departition merge", done_fn = "departition done", less_fn = "take_sort",
  reduce_merge_fn = "reduce merge", partition_hash_fn = "partition hash", partition_key_fn = "partition key",
  window_by_fn = "window",
  PUTARRAY = "flat_map",
  group_by_key_fun = "group_by", group_by_value_fun = "group_by",
}

local function failing_op()
  for level = 3, 40 do
    local info = debug.getinfo(level, "n")
    if not info then break end
    local name = info.name
    if name then
      local op = CALL_NAMES[name] or name:match("^op%d+_([%w_]+)$") or name:match("^reduce_([%w_]+)$")
      if op then return op end
      -- the fused loop's only generic for runs the iterators flat_map returned
      if name == "for iterator" then
        local caller = debug.getinfo(level + 1, "S")
        if caller and caller.source:match("^=%[flow ") then return "flat_map" end
      end
    end
  end
end

-- The traceback from the error to the stage's protected call, without
-- the frames of the flow's own checks.
-- (a traceback names a function of this module sluice.flow_error.name)
local INTERNAL = { error = true, op_error = true, copy_event = true, COPYEV = true, NILERR = true, nilerr = true, NILACC = true, nilacc = true }

local function internal(line)
  local name = line:match("'([%w_.]+)'$")
  if name == nil then return false end
  return INTERNAL[name:match("^sluice%.flow_error%.([%w_]+)$") or name] or false
end

local function traceback(own)
  local out = {}
  for line in debug.traceback(nil, 3):gmatch("[^\n]+") do
    if line:find("in function 'xpcall'", 1, true) then break end
    if not (own and internal(line)) then out[#out + 1] = line end
  end
  return table.concat(out, "\n")
end

-- xpcall handler: {op, msg, tb} for the stage's error reason.
local function on_error(e)
  if type(e) == "table" and e.flow_op then
    return { op = e.flow_op, msg = e.msg, tb = traceback(true) }
  end
  return { op = failing_op(), msg = tostring(e), tb = traceback(false) }
end

-- Stops the running stage with the flow's error reason for res.
local function stop_with(label, res)
  local msg = res.op and ("%s (%s): %s"):format(label, res.op, res.msg) or ("%s: %s"):format(label, res.msg)
  sluice.self():stop({ "error", msg, res.tb })
end

-- An init that reports errors with the stage's label and operation.
local function protected_init(init_fn)
  return function(cfg)
    local ok, res = xpcall(init_fn, on_error, cfg)
    if not ok then
      error(("%s (%s): %s\n%s"):format(cfg.label, res.op or "init", res.msg, res.tb), 0)
    end
    return res
  end
end

-- The handle_cancel of a stage that ends with its upstream: once its last
-- producer has ended normally it emits done_fn(st) and finishes.
local function ends_with_upstream(done_fn)
  return function(reason, from, st)
    if not st.ups[sluice._handle_id(from)] then return {}, st end   -- a consumer left
    st.left = st.left - 1
    if st.left > 0 or not sluice._is_normal(reason[2]) then return {}, st end
    local ok, out = xpcall(done_fn, on_error, st)
    if not ok then
      stop_with(st.cfg.label, out)
      return {}, st
    end
    sluice.self():finish()
    if st.cfg.discard then return {}, st end
    return out, st
  end
end

-- A consumer that drops what it gets and finishes once its producers are
-- all gone: the sink of flow:start(), and the consumer that gives demand to
-- the stages that write a partition across processes (sluice.redis_flow).
M.Drain = {
  type = "consumer",
  handle_events = function(_, _, st) return {}, st end,
  handle_cancel = function(_, _, st)
    local me = sluice.self()
    if me:stats().producers == 0 then me:finish() end
    return {}, st
  end,
}

-- An event copied as crossing the partition would copy it (a plain
-- count's combining, sluice.flow), and the copy's encoding; one that
-- cannot cross is an error of the partition, as it would be there.
local COPY = sluice._copy
local function copy_event(e)
  local ok, c, bytes = pcall(COPY, e)
  if not ok then op_error("partition", c) end
  return c, bytes
end

M.op_error, M.nilerr, M.nilacc, M.copy_event = op_error, nilerr, nilacc, copy_event
M.on_error, M.stop_with = on_error, stop_with
M.protected_init, M.ends_with_upstream = protected_init, ends_with_upstream

return M
