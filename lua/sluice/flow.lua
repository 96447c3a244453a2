-- sluice.flow: Flow (API.md §4). A flow is an immutable description; the
-- planner turns it into layers of GenStage stages when a terminal method
-- runs it.
--
-- A flow record holds
--   src   where its events come from: {kind = "enumerables" | "stages" |
--         "specs" | "flows" | "join" | "departition" | "take_sort" |
--         "through", ...}
--   ops   the per-event operations of its layer, in order
--   red   the layer's reduce (reduce, emit_and_reduce, group_by...) or nil
--   trig  on_trigger function or nil; emit: "events" | "state" | "nothing"
--   opts  layer options (stages, max_demand, min_demand, window, ...)
-- Each layer runs as `stages` producer_consumers ("layer stages") whose
-- handle_events is one generated Lua loop over the batch with the user's
-- functions as upvalues (the fused operations).
local sluice = require("sluice")
local W = require("sluice.window")

local flow = {}
local Flow = {}
Flow.__index = Flow

local inspect = sluice.inspect

local function is_flow(v) return getmetatable(v) == Flow end

local function fail(fn, msg, level)
  error(("sluice.flow.%s: %s"):format(fn, msg), (level or 1) + 2)
end

local function check_fn(fn, name, f)
  if type(f) ~= "function" then
    fail(fn, ("%s must be a function, got %s"):format(name, type(f)), 2)
  end
end

-- Layer options and their checks ------------------------------------------------

local LAYER_OPTS = { stages = true, max_demand = true, min_demand = true, window = true,
                     buffer_size = true, buffer_keep = true, on_init = true, key = true, hash = true }

local function check_opts(fn, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fn, "options must be a table, got " .. type(opts), 2) end
  local out = {}
  for k, v in pairs(opts) do
    if not (allowed or LAYER_OPTS)[k] then fail(fn, "unknown option " .. inspect(k), 2) end
    out[k] = v
  end
  if out.stages ~= nil and (math.type(out.stages) ~= "integer" or out.stages < 1) then
    fail(fn, "stages must be an integer >= 1, got " .. inspect(out.stages), 2)
  end
  if out.max_demand ~= nil and (math.type(out.max_demand) ~= "integer" or out.max_demand < 1) then
    fail(fn, "max_demand must be an integer >= 1, got " .. inspect(out.max_demand), 2)
  end
  if out.min_demand ~= nil then
    local max = out.max_demand or 1000
    if math.type(out.min_demand) ~= "integer" or out.min_demand < 0 or out.min_demand >= max then
      fail(fn, ("min_demand must be an integer from 0 to %d, got %s"):format(max - 1, inspect(out.min_demand)), 2)
    end
  end
  if out.on_init ~= nil then check_fn(fn, "on_init", out.on_init) end
  if out.hash ~= nil then check_fn(fn, "hash", out.hash) end
  if out.key ~= nil then
    local k = out.key
    local ok = type(k) == "function" or (type(k) == "table" and
      ((math.type(k.index) == "integer" and k.index >= 1) or type(k.field) == "string"))
    if not ok then fail(fn, "key must be a function, {index = i} or {field = name}, got " .. inspect(k), 2) end
  end
  if out.window ~= nil and (type(out.window) ~= "table" or type(out.window.type) ~= "string") then
    fail(fn, "window must come from sluice.window, got " .. inspect(out.window), 2)
  end
  return out
end

local function new_flow(src, opts)
  return setmetatable({ src = src, ops = {}, opts = opts or {}, emit_mode = nil }, Flow)
end

-- A copy of f with fields replaced (flows are immutable).
local function derive(f, changes)
  local g = {}
  for k, v in pairs(f) do g[k] = v end
  for k, v in pairs(changes) do g[k] = v end
  return setmetatable(g, Flow)
end

local function with_op(f, fn, op)
  if f.red then fail(fn, ("%s cannot be called after group_by/reduce/emit_and_reduce"):format(fn), 2) end
  local ops = table.move(f.ops, 1, #f.ops, 1, {})
  ops[#ops + 1] = op
  return derive(f, { ops = ops })
end

-- Sources ---------------------------------------------------------------------------

function flow.from_enumerables(enums, opts)
  if type(enums) ~= "table" or #enums == 0 then
    fail("from_enumerables", "expected a non-empty list of enumerables, got " .. inspect(enums))
  end
  for i, e in ipairs(enums) do
    if is_flow(e) then
      fail("from_enumerables", "got a flow; did you mean flow.partition or flow.merge?")
    end
    if not sluice._is_enumerable(e) then
      fail("from_enumerables", ("item %d is not an enumerable (got %s)"):format(i, type(e)))
    end
  end
  return new_flow({ kind = "enumerables", enums = enums }, check_opts("from_enumerables", opts))
end

function flow.from_enumerable(enum, opts)
  if is_flow(enum) then
    fail("from_enumerable", "got a flow; did you mean flow.partition or flow.merge?")
  end
  if not sluice._is_enumerable(enum) then
    fail("from_enumerable", "expected an enumerable, got " .. type(enum))
  end
  return new_flow({ kind = "enumerables", enums = { enum } }, check_opts("from_enumerable", opts))
end

function flow.from_stages(stages, opts)
  if type(stages) ~= "table" or #stages == 0 then
    fail("from_stages", "expected a non-empty list of stages, got " .. inspect(stages))
  end
  return new_flow({ kind = "stages", stages = stages }, check_opts("from_stages", opts))
end

function flow.from_specs(specs, opts)
  if type(specs) ~= "table" or #specs == 0 then
    fail("from_specs", "expected a non-empty list of {spec, arg} pairs, got " .. inspect(specs))
  end
  for i, s in ipairs(specs) do
    if type(s) ~= "table" or type(s[1]) ~= "table" then
      fail("from_specs", ("item %d must be {spec, arg}, got %s"):format(i, inspect(s)))
    end
  end
  return new_flow({ kind = "specs", specs = specs }, check_opts("from_specs", opts))
end

-- Per-event operations -----------------------------------------------------------

function Flow:map(f) check_fn("map", "the mapper", f); return with_op(self, "map", { op = "map", f = f }) end
function Flow:flat_map(f) check_fn("flat_map", "the mapper", f); return with_op(self, "flat_map", { op = "flat_map", f = f }) end
function Flow:filter(f) check_fn("filter", "the predicate", f); return with_op(self, "filter", { op = "filter", f = f }) end
function Flow:reject(f) check_fn("reject", "the predicate", f); return with_op(self, "reject", { op = "reject", f = f }) end
function Flow:map_values(f) check_fn("map_values", "the mapper", f); return with_op(self, "map_values", { op = "map_values", f = f }) end
function Flow:each(f) check_fn("each", "the function", f); return with_op(self, "each", { op = "each", f = f }) end
function Flow:uniq() return with_op(self, "uniq", { op = "uniq" }) end
function Flow:uniq_by(f) check_fn("uniq_by", "the key function", f); return with_op(self, "uniq_by", { op = "uniq_by", f = f }) end

function Flow:map_batch(f)
  check_fn("map_batch", "the function", f)
  if #self.ops > 0 or self.red then
    fail("map_batch", "map_batch can only be called at the beginning of a layer (before any other operation)")
  end
  if self.batch_fn then fail("map_batch", "map_batch can only be called once per layer") end
  return derive(self, { batch_fn = f })
end

-- Reducing -----------------------------------------------------------------------------

local function with_reducer(f, fn, red)
  if f.red then
    fail(fn, "cannot call group_by/reduce/emit_and_reduce on a flow after another group_by/reduce/emit_and_reduce", 2)
  end
  return derive(f, { red = red })
end

function Flow:reduce(acc_fun, fun)
  check_fn("reduce", "the accumulator", acc_fun)
  check_fn("reduce", "the reducer", fun)
  return with_reducer(self, "reduce", { kind = "reduce", acc = acc_fun, f = fun })
end

function Flow:emit_and_reduce(acc_fun, fun)
  check_fn("emit_and_reduce", "the accumulator", acc_fun)
  check_fn("emit_and_reduce", "the reducer", fun)
  return with_reducer(self, "emit_and_reduce", { kind = "emit_and_reduce", acc = acc_fun, f = fun })
end

function Flow:group_by(key_fun, value_fun)
  check_fn("group_by", "the key function", key_fun)
  if value_fun ~= nil then check_fn("group_by", "the value function", value_fun) end
  return with_reducer(self, "group_by", { kind = "group_by", key = key_fun, value = value_fun })
end

function Flow:group_by_key()
  return with_reducer(self, "group_by_key", { kind = "group_by_key" })
end

function Flow:on_trigger(fun)
  check_fn("on_trigger", "the trigger function", fun)
  if not self.red then fail("on_trigger", "on_trigger must be called after a group_by/reduce/emit_and_reduce operation") end
  if self.trig or self.emit_mode then fail("on_trigger", "on_trigger cannot be called after emit/on_trigger") end
  return derive(self, { trig = fun })
end

function Flow:emit(mode)
  if mode ~= "events" and mode ~= "state" and mode ~= "nothing" then
    fail("emit", "mode must be \"events\", \"state\" or \"nothing\", got " .. inspect(mode))
  end
  if not self.red then fail("emit", "emit must be called after a group_by/reduce/emit_and_reduce operation") end
  if self.trig or self.emit_mode then fail("emit", "emit cannot be called after emit/on_trigger") end
  return derive(self, { emit_mode = mode })
end

-- Layers -------------------------------------------------------------------------------

local function check_flows(fn, flows)
  if is_flow(flows) then return { flows } end
  if type(flows) ~= "table" or #flows == 0 then fail(fn, "expected a flow or a non-empty list of flows", 2) end
  for i, f in ipairs(flows) do
    if not is_flow(f) then fail(fn, ("item %d is not a flow (got %s)"):format(i, type(f)), 2) end
  end
  return flows
end

-- flow:partition(opts) / flow.partition({flows}, opts)
function Flow:partition(opts)
  local flows = check_flows("partition", self)
  opts = check_opts("partition", opts)
  return new_flow({ kind = "flows", flows = flows, dispatch = "partition", key = opts.key, hash = opts.hash }, opts)
end

function Flow:shuffle(opts)
  local flows = check_flows("shuffle", self)
  opts = check_opts("shuffle", opts)
  if opts.key or opts.hash then fail("shuffle", "shuffle takes no key or hash (use partition)") end
  return new_flow({ kind = "flows", flows = flows, dispatch = "demand" }, opts)
end

function flow.partition(flows, opts) return Flow.partition(check_flows("partition", flows), opts) end
function flow.shuffle(flows, opts) return Flow.shuffle(check_flows("shuffle", flows), opts) end
function flow.merge(flows, opts)
  flows = check_flows("merge", flows)
  return Flow.shuffle(flows, opts)
end
Flow.merge = function(self, opts) return flow.merge({ self }, opts) end

function Flow:departition(acc_fun, merge_fun, done_fun)
  check_fn("departition", "the accumulator", acc_fun)
  check_fn("departition", "the merge function", merge_fun)
  check_fn("departition", "the done function", done_fun)
  if not self.red then fail("departition", "departition must be called after a group_by/reduce/emit_and_reduce operation") end
  return new_flow({ kind = "departition", flow = self, acc = acc_fun, merge = merge_fun, done = done_fun },
    { stages = 1 })
end

function Flow:take_sort(n, less)
  if math.type(n) ~= "integer" or n < 1 then fail("take_sort", "n must be an integer >= 1, got " .. inspect(n)) end
  if less ~= nil then check_fn("take_sort", "the comparison", less) end
  return new_flow({ kind = "take_sort", flow = self, n = n, less = less }, { stages = 1 })
end

local JOIN_MODES = { inner = true, left_outer = true, right_outer = true, full_outer = true }

function flow.bounded_join(mode, left, right, left_key, right_key, join, opts)
  if not JOIN_MODES[mode] then
    fail("bounded_join", "mode must be \"inner\", \"left_outer\", \"right_outer\" or \"full_outer\", got " .. inspect(mode))
  end
  if not is_flow(left) then fail("bounded_join", "left must be a flow, got " .. type(left)) end
  if not is_flow(right) then fail("bounded_join", "right must be a flow, got " .. type(right)) end
  check_fn("bounded_join", "left_key", left_key)
  check_fn("bounded_join", "right_key", right_key)
  check_fn("bounded_join", "the join function", join)
  opts = check_opts("bounded_join", opts)
  return new_flow({ kind = "join", mode = mode, left = left, right = right, lkey = left_key,
                    rkey = right_key, join = join }, opts)
end

function Flow:through_stages(pcs)
  if type(pcs) ~= "table" or #pcs == 0 then fail("through_stages", "expected a non-empty list of producer_consumers") end
  return new_flow({ kind = "through", flow = self, stages = pcs }, {})
end

function Flow:through_specs(specs)
  if type(specs) ~= "table" or #specs == 0 then fail("through_specs", "expected a non-empty list of {spec, arg, opts}") end
  return new_flow({ kind = "through", flow = self, specs = specs }, {})
end

-- The layer stage ----------------------------------------------------------------------------

-- Generates the fused loop of a layer: one Lua function over a batch that
-- applies the per-event operations and the reducer, with the user's
-- functions as upvalues named after their operation (so an error can name
-- it). Returns run(events, out, acc, seen) -> acc.
local function compile(ops, red)
  local src = {}
  local function w(s) src[#src + 1] = s end
  local F = {}
  w("local F, NILERR, KEY = ...\n")
  for i, op in ipairs(ops) do
    if op.f then w(("local op%d_%s = F[%d]\n"):format(i, op.op, i)) end
  end
  if red then
    if red.f then w("local reduce_" .. red.kind .. " = F.red\n") end
    if red.key then w("local group_by_key_fun = F.key\n") end
    if red.value then w("local group_by_value_fun = F.value\n") end
  end
  w("return function(events, out, acc, seen)\n  local n = #out\n")
  w("  for i = 1, #events do\n    local e = events[i]\n")
  local closers = {}
  local indent = "    "
  for i, op in ipairs(ops) do
    local f = ("op%d_%s"):format(i, op.op)
    if op.op == "map" then
      w(indent .. ("e = %s(e)\n"):format(f))
      w(indent .. ("if e == nil then NILERR(%q) end\n"):format("map"))
    elseif op.op == "map_values" then
      w(indent .. ("e = {e[1], %s(e[2])}\n"):format(f))
    elseif op.op == "each" then
      w(indent .. ("%s(e)\n"):format(f))
    elseif op.op == "filter" then
      w(indent .. ("if %s(e) then\n"):format(f)); closers[#closers + 1] = "end"
      indent = indent .. "  "
    elseif op.op == "reject" then
      w(indent .. ("if not %s(e) then\n"):format(f)); closers[#closers + 1] = "end"
      indent = indent .. "  "
    elseif op.op == "flat_map" then
      w(indent .. ("local xs = %s(e)\n"):format(f))
      w(indent .. ("if type(xs) ~= 'table' then NILERR(%q, xs) end\n"):format("flat_map"))
      w(indent .. "for j = 1, #xs do\n"); closers[#closers + 1] = "end"
      indent = indent .. "  "
      w(indent .. "local e = xs[j]\n")
    elseif op.op == "uniq" or op.op == "uniq_by" then
      local key = op.op == "uniq" and "e" or ("%s(e)"):format(f)
      w(indent .. ("local k = %s\n"):format(key))
      w(indent .. "if type(k) == 'table' then k = KEY(k) end\n")
      w(indent .. "if not seen[k] then\n"); closers[#closers + 1] = "end"
      indent = indent .. "  "
      w(indent .. "seen[k] = true\n")
    end
  end
  if not red then
    w(indent .. "n = n + 1; out[n] = e\n")
  elseif red.kind == "reduce" then
    w(indent .. "acc = reduce_reduce(e, acc)\n")
  elseif red.kind == "emit_and_reduce" then
    w(indent .. "local evs\n")
    w(indent .. "evs, acc = reduce_emit_and_reduce(e, acc)\n")
    w(indent .. "if type(evs) ~= 'table' then NILERR('emit_and_reduce', evs) end\n")
    w(indent .. "for j = 1, #evs do n = n + 1; out[n] = evs[j] end\n")
  elseif red.kind == "group_by" or red.kind == "group_by_key" then
    if red.kind == "group_by" then
      w(indent .. "local key = group_by_key_fun(e)\n")
      w(indent .. (red.value and "local v = group_by_value_fun(e)\n" or "local v = e\n"))
    else
      w(indent .. "local key, v = e[1], e[2]\n")
    end
    w(indent .. "if key == nil then NILERR('group_by key') end\n")
    w(indent .. "local g = acc[key]\n")
    w(indent .. "if g == nil then g = {}; acc[key] = g end\n")
    w(indent .. "g[#g + 1] = v\n")
  end
  for j = #closers, 1, -1 do
    indent = indent:sub(3)
    w(indent .. closers[j] .. "\n")
  end
  w("  end\n  return acc\nend\n")
  for i, op in ipairs(ops) do F[i] = op.f end
  if red then F.red, F.key, F.value = red.f, red.key, red.value end
  return table.concat(src), F
end

local function nilerr(what, got)
  if got ~= nil then
    error(("%s must return an array, got %s"):format(what, type(got)), 0)
  end
  error(("%s returned nil where an event was expected"):format(what), 0)
end

local function encode_key(k) return sluice._key(k) end

-- Finds the operation whose function raised: it was called through an
-- upvalue named op<i>_<name> or reduce_<kind>.
local function failing_op()
  for level = 3, 30 do
    local info = debug.getinfo(level, "n")
    if not info then break end
    local name = info.name
    if name then
      local op = name:match("^op%d+_([%w_]+)$") or name:match("^reduce_([%w_]+)$")
        or (name == "group_by_key_fun" and "group_by") or (name == "group_by_value_fun" and "group_by")
      if op then return op end
    end
  end
end

local function is_sequence(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do
    count = count + 1
    if count > n then return false end
  end
  return count == n
end

-- What a trigger emits from an accumulator (API.md §4 emit rules).
local function acc_events(cfg, acc)
  local mode = cfg.emit_mode or "events"
  if mode == "state" then return { acc } end
  if mode == "nothing" then return {} end
  if type(acc) ~= "table" then return { acc } end
  local out = {}
  if cfg.red.kind ~= "group_by" and cfg.red.kind ~= "group_by_key" and is_sequence(acc) then
    for i = 1, #acc do out[i] = acc[i] end
    return out
  end
  for k, v in pairs(acc) do out[#out + 1] = { k, v } end
  return out
end

local LayerStage = { type = "producer_consumer" }

function LayerStage.init(cfg)
  local st = { cfg = cfg, left = cfg.producers, seen = {}, out_tag = cfg.tag }
  if cfg.ops_src then
    local chunk = assert(load(cfg.ops_src, "=[flow " .. cfg.label .. "]", "t"))
    st.run = chunk(cfg.F, nilerr, encode_key)
  end
  st.partition = { index = cfg.index, total = cfg.total }
  if cfg.on_init then cfg.on_init(st.partition) end
  if cfg.red and cfg.red.acc then st.acc = cfg.red.acc() elseif cfg.red then st.acc = {} end
  if cfg.join then st.lt, st.rt, st.lmatched, st.rmatched = {}, {}, {}, {} end
  return st
end

local function run_protected(st, events, out)
  local ok, res = xpcall(st.run, function(msg)
    local op = failing_op()
    local tb = debug.traceback(nil, 2)
    return { op = op, msg = msg, tb = tb }
  end, events, out, st.acc, st.seen)
  if ok then return res end
  local what = res.op or "operation"
  error(("%s (%s): %s"):format(st.cfg.label, what, tostring(res.msg)) .. "\n" .. tostring(res.tb), 0)
end

local function join_events(st, events, side, out)
  local cfg = st.cfg
  local lt, rt = st.lt, st.rt
  local n = #out
  for i = 1, #events do
    local e = events[i]
    if side == 1 then
      local k = cfg.lkey(e)
      local list = lt[k]; if not list then list = {}; lt[k] = list end
      list[#list + 1] = e
      local rs = rt[k]
      if rs then
        for j = 1, #rs do n = n + 1; out[n] = cfg.join(e, rs[j]) end
        st.lmatched[e] = true
        for j = 1, #rs do st.rmatched[rs[j]] = true end
      end
    else
      local k = cfg.rkey(e)
      local list = rt[k]; if not list then list = {}; rt[k] = list end
      list[#list + 1] = e
      local ls = lt[k]
      if ls then
        for j = 1, #ls do n = n + 1; out[n] = cfg.join(ls[j], e) end
        st.rmatched[e] = true
        for j = 1, #ls do st.lmatched[ls[j]] = true end
      end
    end
  end
end

local function join_done(st)
  local cfg, out = st.cfg, {}
  if cfg.join_mode == "left_outer" or cfg.join_mode == "full_outer" then
    for _, list in pairs(st.lt) do
      for _, e in ipairs(list) do
        if not st.lmatched[e] then out[#out + 1] = cfg.join(e, nil) end
      end
    end
  end
  if cfg.join_mode == "right_outer" or cfg.join_mode == "full_outer" then
    for _, list in pairs(st.rt) do
      for _, e in ipairs(list) do
        if not st.rmatched[e] then out[#out + 1] = cfg.join(nil, e) end
      end
    end
  end
  return out
end

function LayerStage.handle_subscribe(kind, opts, from, st)
  if kind == "producer" and opts.side then
    st.sides = st.sides or {}
    st.sides[sluice._handle_id(from)] = opts.side
  end
  return "automatic", st
end

function LayerStage.handle_events(events, from, st)
  local cfg = st.cfg
  if cfg.batch_fn then
    events = cfg.batch_fn(events)
    if type(events) ~= "table" then error("map_batch must return an array, got " .. type(events), 0) end
  end
  local out = {}
  if cfg.join then
    join_events(st, events, st.sides[sluice._handle_id(from)], out)
  elseif st.run then
    st.acc = run_protected(st, events, out)
  else
    out = events
  end
  if cfg.discard then return {}, st end
  return out, st
end

-- The global window's "done": what the layer emits when its upstream ended.
local function done_events(st)
  local cfg = st.cfg
  if cfg.join then return join_done(st) end
  if not cfg.red then return {} end
  local window = { type = "global", id = "global", trigger = "done" }
  if cfg.tag then   -- departition / take_sort downstream: tagged state
    return { { "__sluice_state", cfg.index, "global", st.acc } }
  end
  if cfg.trig then
    local events = cfg.trig(st.acc, st.partition, window)
    if type(events) ~= "table" then
      error(("%s (on_trigger): on_trigger must return an array of events, got %s")
        :format(cfg.label, type(events)), 0)
    end
    return events
  end
  return acc_events(cfg, st.acc)
end

function LayerStage.handle_cancel(reason, _, st)
  st.left = st.left - 1
  if st.left > 0 or not sluice._is_normal(reason[2]) then return {}, st end
  local events = done_events(st)
  sluice.self():finish()
  if st.cfg.discard then return {}, st end
  return events, st
end

-- Departition and take_sort: one stage over all partitions' states.
local MergeStage = { type = "producer_consumer" }

function MergeStage.init(cfg)
  return { cfg = cfg, left = cfg.producers, windows = {}, done = {} }
end

local function merge_take(cfg, acc, list)
  local less = cfg.less or function(a, b) return a < b end
  for _, e in ipairs(list) do acc[#acc + 1] = e end
  table.sort(acc, less)
  for i = #acc, cfg.n + 1, -1 do acc[i] = nil end
  return acc
end

function MergeStage.handle_events(events, _, st)
  local cfg = st.cfg
  for _, ev in ipairs(events) do
    if cfg.kind == "take_sort" then
      st.acc = st.acc or {}
      -- untagged events: keep the n smallest seen so far
      st.acc[#st.acc + 1] = ev
      if #st.acc >= 2 * cfg.n + 64 then merge_take(cfg, st.acc, {}) end
    else
      local _, _, window, state = ev[1], ev[2], ev[3], ev[4]
      local acc = st.windows[window]
      if acc == nil then acc = cfg.acc() end
      st.windows[window] = cfg.merge(state, acc)
    end
  end
  return {}, st
end

function MergeStage.handle_cancel(reason, _, st)
  st.left = st.left - 1
  if st.left > 0 or not sluice._is_normal(reason[2]) then return {}, st end
  local cfg = st.cfg
  local out = {}
  if cfg.kind == "take_sort" then
    out[1] = merge_take(cfg, st.acc or {}, {})
  else
    local ids = {}
    for id in pairs(st.windows) do ids[#ids + 1] = id end
    table.sort(ids, function(a, b)
      if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
      return tostring(a) < tostring(b)
    end)
    if #ids == 0 then ids[1] = "global"; st.windows.global = cfg.acc() end
    for _, id in ipairs(ids) do out[#out + 1] = cfg.done(st.windows[id], id) end
  end
  sluice.self():finish()
  return out, st
end

-- The planner -----------------------------------------------------------------------------------

local next_flow_id = 0

-- Running state of one materialisation: every stage started, for stop and stats.
local function new_run()
  next_flow_id = next_flow_id + 1
  return { id = next_flow_id, stages = {}, owned = {}, layers = 0, paused = {} }
end

local function track(run, stage, layer, partition, owned)
  run.stages[#run.stages + 1] = { stage = stage, layer = layer, partition = partition }
  if owned ~= false then run.owned[#run.owned + 1] = stage end
  return stage
end

local function workers() return sluice.workers() end

-- The dispatcher a layer needs from the stages that feed it.
local function dispatcher_for(src, n)
  if src.dispatch == "partition" then
    local hash = src.hash
    local key = src.key
    if not hash and key then
      local keyf = key
      if type(key) == "table" then
        if key.index then
          local idx = key.index
          keyf = function(e) return e[idx] end
        else
          local field = key.field
          keyf = function(e) return e[field] end
        end
      end
      hash = function(e) return sluice._hash(keyf(e), n) end
    end
    return sluice.dispatcher.partition({ partitions = n, hash = hash })
  end
  return sluice.dispatcher.demand({})
end

local materialize

-- Starts the n stages of a layer, each subscribed to every upstream stage.
local function start_layer(run, spec, cfgs, ups, dispatcher, sub_opts, partitioned, sides)
  local n = #cfgs
  run.layers = run.layers + 1
  local layer = run.layers
  local out = {}
  for i = 1, n do
    local subs = {}
    for j, up in ipairs(ups) do
      local s = { up, cancel = "transient" }
      for k, v in pairs(sub_opts) do s[k] = v end
      if partitioned then s.partition = i end
      if sides then s.side = sides[j] end
      subs[j] = s
    end
    local cfg = cfgs[i]
    cfg.producers = #ups
    cfg.index, cfg.total = i, n
    cfg.label = ("flow %d layer %d stage %d"):format(run.id, layer, i)
    local opts = { subscribe_to = subs, worker = (i - 1) % workers() + 1, dispatcher = dispatcher,
                   buffer_size = cfg.buffer_size, buffer_keep = cfg.buffer_keep }
    out[i] = track(run, sluice.start(spec, cfg, opts), layer, i)
  end
  return out
end

local function sub_opts_of(opts)
  local s = {}
  if opts.max_demand then s.max_demand = opts.max_demand end
  if opts.min_demand then s.min_demand = opts.min_demand end
  return s
end

local function layer_cfg(f, extra)
  local src, F
  if #f.ops > 0 or f.red then src, F = compile(f.ops, f.red) end
  local cfg = { ops_src = src, F = F, red = f.red, trig = f.trig, emit_mode = f.emit_mode,
                batch_fn = f.batch_fn, on_init = f.opts.on_init, buffer_size = f.opts.buffer_size,
                buffer_keep = f.opts.buffer_keep }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function has_work(f)
  return #f.ops > 0 or f.red ~= nil or f.batch_fn ~= nil
end

local function check_window(f)
  local w = f.opts.window
  if w and w.type ~= "global" and not has_work(f) then
    error("sluice.flow: a window was set but no computation is happening on this layer", 0)
  end
  if w and w.type ~= "global" then
    error(("sluice.flow: window type %q is not supported by this version (only global)"):format(w.type), 0)
  end
end

-- Starts the source producers of f with the given dispatcher; returns them.
local function start_sources(run, f, dispatcher)
  local src = f.src
  local out = {}
  if src.kind == "enumerables" then
    for i, e in ipairs(src.enums) do
      out[i] = track(run, sluice.from_enumerable(e, { dispatcher = dispatcher, on_cancel = "stop",
        demand = "accumulate", buffer_size = f.opts.buffer_size, buffer_keep = f.opts.buffer_keep }), 0, i)
      run.paused[#run.paused + 1] = out[i]
    end
  elseif src.kind == "specs" then
    for i, s in ipairs(src.specs) do
      local producer = s[1].type == "producer"
      out[i] = track(run, sluice.start(s[1], s[2], { dispatcher = dispatcher,
        demand = producer and "accumulate" or nil }), 0, i)
      if producer then run.paused[#run.paused + 1] = out[i] end
    end
  else
    for i, s in ipairs(src.stages) do out[i] = track(run, s, 0, i, false) end
  end
  return out
end

-- Materialises flow f so that its output stages use `dispatcher` (built by
-- the caller for its own layer; nil: demand). `tag` asks the layer to emit
-- its tagged state at triggers (departition). Returns the output stages.
function materialize(run, f, dispatcher, extra)
  check_window(f)
  local src = f.src
  local n = f.opts.stages or workers()
  local sub = sub_opts_of(f.opts)
  if src.kind == "enumerables" or src.kind == "specs" or src.kind == "stages" then
    if not has_work(f) and not extra then
      if src.kind == "stages" and dispatcher and dispatcher.kind ~= "demand" then
        -- stages we did not start keep their dispatcher: add a pass-through layer
        local cfgs = {}
        for i = 1, n do cfgs[i] = layer_cfg(f) end
        return start_layer(run, LayerStage, cfgs, start_sources(run, f, nil), dispatcher, sub, false)
      end
      return start_sources(run, f, dispatcher)
    end
    local ups = start_sources(run, f, sluice.dispatcher.demand({}))
    local cfgs = {}
    for i = 1, n do cfgs[i] = layer_cfg(f, extra) end
    return start_layer(run, LayerStage, cfgs, ups, dispatcher, sub, false)
  elseif src.kind == "flows" then
    local updisp = dispatcher_for(src, n)
    local ups = {}
    for _, g in ipairs(src.flows) do
      for _, s in ipairs(materialize(run, g, updisp)) do ups[#ups + 1] = s end
    end
    local cfgs = {}
    for i = 1, n do cfgs[i] = layer_cfg(f, extra) end
    return start_layer(run, LayerStage, cfgs, ups, dispatcher, sub, src.dispatch == "partition")
  elseif src.kind == "join" then
    -- each side is partitioned by its own key; the join stages tell the
    -- sides apart by the subscription option `side`
    local lkey, rkey = src.lkey, src.rkey
    local ldisp = sluice.dispatcher.partition({ partitions = n, hash = function(e) return sluice._hash(lkey(e), n) end })
    local rdisp = sluice.dispatcher.partition({ partitions = n, hash = function(e) return sluice._hash(rkey(e), n) end })
    local ups, sides = {}, {}
    for _, s in ipairs(materialize(run, src.left, ldisp)) do ups[#ups + 1] = s; sides[#ups] = 1 end
    for _, s in ipairs(materialize(run, src.right, rdisp)) do ups[#ups + 1] = s; sides[#ups] = 2 end
    local cfgs = {}
    for i = 1, n do
      cfgs[i] = layer_cfg(f, { join = src.join, join_mode = src.mode, lkey = lkey, rkey = rkey })
      if extra then for k, v in pairs(extra) do cfgs[i][k] = v end end
    end
    return start_layer(run, LayerStage, cfgs, ups, dispatcher, sub, true, sides)
  elseif src.kind == "departition" or src.kind == "take_sort" then
    local tag = src.kind == "departition" and { tag = true } or nil
    local ups = materialize(run, src.flow, sluice.dispatcher.demand({}), tag)
    local cfg = { kind = src.kind, acc = src.acc, merge = src.merge, done = src.done, n = src.n, less = src.less }
    local merged = start_layer(run, MergeStage, { cfg }, ups, sluice.dispatcher.demand({}), sub, false)
    if has_work(f) or extra then
      local cfgs = {}
      for i = 1, n do cfgs[i] = layer_cfg(f, extra) end
      return start_layer(run, LayerStage, cfgs, merged, dispatcher, sub, false)
    end
    if dispatcher and dispatcher.kind ~= "demand" then
      local cfgs = { layer_cfg(f) }
      return start_layer(run, LayerStage, cfgs, merged, dispatcher, sub, false)
    end
    return merged
  elseif src.kind == "through" then
    local ups = materialize(run, src.flow, sluice.dispatcher.demand({}))
    local mids = {}
    if src.stages then
      for i, entry in ipairs(src.stages) do
        local pc, opts = entry, {}
        if type(entry) == "table" then
          pc = entry[1]
          for k, v in pairs(entry) do if k ~= 1 then opts[k] = v end end
        end
        for _, up in ipairs(ups) do
          local o = { cancel = "transient" }
          for k, v in pairs(opts) do o[k] = v end
          sluice.subscribe(pc, up, o)
        end
        mids[i] = track(run, pc, run.layers + 1, i, false)
      end
    else
      for i, s in ipairs(src.specs) do
        local subs = {}
        for j, up in ipairs(ups) do
          local o = { up, cancel = "transient" }
          for k, v in pairs(s[3] or {}) do o[k] = v end
          subs[j] = o
        end
        mids[i] = track(run, sluice.start(s[1], s[2], { subscribe_to = subs }), run.layers + 1, i)
      end
    end
    run.layers = run.layers + 1
    if has_work(f) or extra or (dispatcher and dispatcher.kind ~= "demand") then
      local cfgs = {}
      for i = 1, n do cfgs[i] = layer_cfg(f, extra) end
      return start_layer(run, LayerStage, cfgs, mids, dispatcher, sub, false)
    end
    return mids
  end
  error("sluice.flow: unknown source kind " .. tostring(src.kind), 0)
end

-- Running ----------------------------------------------------------------------------------------

-- Materialises the whole flow, then lets the sources go: they were
-- started with accumulated demand so that none can finish before every
-- stage has subscribed to it.
local function build(run, f, extra)
  return pcall(materialize, run, f, nil, extra)
end

-- Lets the paused sources go, once the final consumers have subscribed.
local function release(run)
  for _, s in ipairs(run.paused) do s:demand("forward") end
end

local function stop_all(run)
  for i = #run.owned, 1, -1 do
    local s = run.owned[i]
    if s:alive() then pcall(s.stop, s, "shutdown") end
  end
end

-- Materialises f with a final main-thread collector; returns an iterator
-- over the flow's output and a closer that stops the flow.
local function open(f, discard)
  if not is_flow(f) then error("sluice.flow: expected a flow", 3) end
  local run = new_run()
  local ok, outs = build(run, f, discard and { discard = true } or nil)
  if not ok then
    stop_all(run)
    error(outs, 0)
  end
  local subs = {}
  for i, s in ipairs(outs) do subs[i] = s end
  local it, _, _, closer = sluice.stream(subs)
  release(run)
  local function close()
    getmetatable(closer).__close()
    stop_all(run)
  end
  local function iter()
    local okk, v = pcall(it)
    if not okk then
      stop_all(run)
      error(v, 0)
    end
    if v == nil then stop_all(run) end
    return v
  end
  return iter, close, run
end

function Flow:to_list()
  local iter, close = open(self, false)
  local out = {}
  local ok, err = pcall(function()
    for v in iter do out[#out + 1] = v end
  end)
  close()
  if not ok then error(err, 2) end
  return out
end

function Flow:run()
  local iter, close = open(self, true)
  local ok, err = pcall(function() for _ in iter do end end)
  close()
  if not ok then error(err, 2) end
end

function Flow:stream()
  local iter, close = open(self, false)
  return iter, nil, nil, setmetatable({}, { __close = close })
end

local Running = {}
Running.__index = Running

function Running:await(timeout)
  for _, entry in ipairs(self.run.stages) do
    local s = entry.stage
    local reason = s:await(timeout)
    if reason ~= "normal" and reason ~= "shutdown" then
      stop_all(self.run)
      if type(reason) == "table" and reason[1] == "error" then
        error(tostring(reason[2]) .. "\n" .. tostring(reason[3] or ""), 2)
      end
      error("sluice.flow: a stage ended with " .. inspect(reason), 2)
    end
  end
end

function Running:stop()
  stop_all(self.run)
  for _, s in ipairs(self.extra or {}) do if s:alive() then s:stop("shutdown") end end
end

function Running:stats()
  local out = {}
  for _, entry in ipairs(self.run.stages) do
    local s = entry.stage
    local ok, st = pcall(s.stats, s)
    if ok then
      st.layer, st.partition = entry.layer, entry.partition
      st.name = st.name or ("layer %d stage %d"):format(entry.layer, entry.partition)
      out[#out + 1] = st
    end
  end
  return out
end

-- A sink consumer that drops what it gets, pinned next to its producer.
local Sink = {
  type = "consumer",
  init = function(n) return { left = n } end,
  handle_events = function(_, _, st) return {}, st end,
  handle_cancel = function(reason, _, st)
    st.left = st.left - 1
    if st.left == 0 then sluice.self():stop(reason[2]) end
    return {}, st
  end,
}

function Flow:start()
  local run = new_run()
  local ok, outs = build(run, self, { discard = true })
  if not ok then stop_all(run); error(outs, 2) end
  local subs = {}
  for i, s in ipairs(outs) do subs[i] = { s, cancel = "transient" } end
  local sink = sluice.start(Sink, #outs, { subscribe_to = subs })
  track(run, sink, run.layers + 1, 1)
  release(run)
  return setmetatable({ run = run }, Running)
end

local function into(f, consumers, fn)
  local run = new_run()
  local ok, outs = pcall(materialize, run, f, nil)
  if not ok then stop_all(run); error(outs, 3) end
  local extra = {}
  for i, entry in ipairs(consumers) do
    local c, opts = entry, {}
    if type(entry) == "table" and fn == "into_stages" then
      c = entry[1]
      for k, v in pairs(entry) do if k ~= 1 then opts[k] = v end end
    elseif fn == "into_specs" then
      local subs = {}
      for j, s in ipairs(outs) do
        local o = { s, cancel = "transient" }
        for k, v in pairs(entry[3] or {}) do o[k] = v end
        subs[j] = o
      end
      c = sluice.start(entry[1], entry[2], { subscribe_to = subs })
      track(run, c, run.layers + 1, i)
      goto continue
    end
    for _, s in ipairs(outs) do
      local o = { cancel = "transient" }
      for k, v in pairs(opts) do o[k] = v end
      sluice.subscribe(c, s, o)
    end
    extra[#extra + 1] = c
    ::continue::
  end
  -- a call to each consumer returns once its subscriptions are on their
  -- way to the producers; then the sources may start
  for _, c in ipairs(extra) do pcall(c.stats, c) end
  release(run)
  return setmetatable({ run = run }, Running)
end

function Flow:into_stages(consumers)
  if type(consumers) ~= "table" or #consumers == 0 then fail("into_stages", "expected a non-empty list of consumers") end
  return into(self, consumers, "into_stages")
end

function Flow:into_specs(specs)
  if type(specs) ~= "table" or #specs == 0 then fail("into_specs", "expected a non-empty list of {spec, arg, opts}") end
  return into(self, specs, "into_specs")
end

flow.Flow = Flow
flow.is_flow = is_flow
return flow
