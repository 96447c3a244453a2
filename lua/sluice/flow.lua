-- sluice.flow: Flow (API.md §4). A flow is an immutable description; the
-- planner turns it into layers of GenStage stages when a terminal method
-- runs it.
--
-- A flow record holds
--   src   where its events come from: {kind = "enumerables" | "stages" |
--         "specs" | "flows" | "join" | "departition" | "take_sort" |
--         "through", ...}
--   ops   the per-event operations of its layer, in order
--   batch_fn  the layer's map_batch function or nil
--   red   the layer's reduce (reduce, emit_and_reduce, group_by...) or nil
--   trig  on_trigger function or nil; emit_mode "events" | "state" | "nothing"
--   opts  layer options (stages, max_demand, min_demand, window, ...)
-- Each layer runs as `stages` producer_consumers ("layer stages") whose
-- handle_events is one generated Lua loop over the batch with the user's
-- functions as upvalues (the fused operations).
--
-- Errors: a layer stage that catches an error in a user function stops
-- with {"error", "flow F layer L stage I (op): message", traceback}; the
-- terminal method stops the whole flow and raises
-- "sluice.flow: flow F layer L stage I (op): message" plus the traceback.
local sluice = require("sluice")

local flow = {}
local Flow = {}
Flow.__index = Flow

local inspect = sluice.inspect
local compile = require("sluice.flow_codegen").compile
local LayerStage = require("sluice.flow_layer")
local SourceStage = require("sluice.flow_source")
local MergeStage = require("sluice.flow_merge")
local splittable, split_plan = SourceStage.splittable, SourceStage.split_plan

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
                      buffer_size = true, buffer_keep = true, on_init = true }
local PARTITION_OPTS = { key = true, hash = true }
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
  return out
end

local function new_flow(src, opts)
  return setmetatable({ src = src, ops = {}, opts = opts or {} }, Flow)
end

-- A copy of f with fields replaced (flows are immutable).
local function derive(f, changes)
  local g = {}
  for k, v in pairs(f) do g[k] = v end
  for k, v in pairs(changes) do g[k] = v end
  return setmetatable(g, Flow)
end

local function with_op(f, fn, op)
  if not is_flow(f) then fail(fn, "expected a flow, got " .. type(f), 2) end
  if f.red then
    fail(fn, fn .. " cannot be called after group_by/reduce/emit_and_reduce "
      .. "(use on_trigger to emit events from the accumulator)", 2)
  end
  local ops = table.move(f.ops, 1, #f.ops, 1, {})
  ops[#ops + 1] = op
  return derive(f, { ops = ops })
end

-- Sources ---------------------------------------------------------------------------

function flow.from_enumerables(enums, opts)
  if type(enums) ~= "table" or is_flow(enums) or #enums == 0 then
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

-- A stage list entry is a stage or {stage, subscription options...}.
local function split_entry(entry)
  if type(entry) ~= "table" then return entry, {} end
  local o = {}
  for k, v in pairs(entry) do if k ~= 1 then o[k] = v end end
  return entry[1], o
end

function flow.from_stages(stages, opts)
  if type(stages) ~= "table" or is_flow(stages) or #stages == 0 then
    fail("from_stages", "expected a non-empty list of producer stages, got " .. inspect(stages))
  end
  for i, entry in ipairs(stages) do
    local s, o = split_entry(entry)
    if type(s) ~= "userdata" then
      fail("from_stages", ("item %d must be a stage or {stage, opts}, got %s"):format(i, inspect(entry)))
    end
    check_demand("from_stages", o, ("item %d: "):format(i), 2)
  end
  return new_flow({ kind = "stages", stages = stages }, check_opts("from_stages", opts))
end

function flow.from_specs(specs, opts)
  if type(specs) ~= "table" or is_flow(specs) or #specs == 0 then
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

function Flow:map(f) check_fn("map", "the mapper", f); return (with_op(self, "map", { op = "map", f = f })) end
function Flow:flat_map(f) check_fn("flat_map", "the mapper", f); return (with_op(self, "flat_map", { op = "flat_map", f = f })) end
function Flow:filter(f) check_fn("filter", "the predicate", f); return (with_op(self, "filter", { op = "filter", f = f })) end
function Flow:reject(f) check_fn("reject", "the predicate", f); return (with_op(self, "reject", { op = "reject", f = f })) end
function Flow:map_values(f) check_fn("map_values", "the mapper", f); return (with_op(self, "map_values", { op = "map_values", f = f })) end
function Flow:each(f) check_fn("each", "the function", f); return (with_op(self, "each", { op = "each", f = f })) end
function Flow:uniq() return (with_op(self, "uniq", { op = "uniq" })) end
function Flow:uniq_by(f) check_fn("uniq_by", "the key function", f); return (with_op(self, "uniq_by", { op = "uniq_by", f = f })) end

function Flow:map_batch(f)
  check_fn("map_batch", "the function", f)
  if #self.ops > 0 or self.red or self.batch_fn then
    fail("map_batch", "map_batch can only be called at the beginning of a layer (before any other operation)")
  end
  return derive(self, { batch_fn = f })
end

-- Reducing -----------------------------------------------------------------------------

local function with_reducer(f, fn, red)
  if f.red then
    fail(fn, "cannot call group_by/reduce/emit_and_reduce on a flow after another "
      .. "group_by/reduce/emit_and_reduce (only one per layer; use on_trigger for further work)", 2)
  end
  return derive(f, { red = red })
end

-- opts.merge(partial, acc) -> acc declares the reducer's accumulators
-- mergeable, which lets the layer before the partition reduce too;
-- opts.keyed declares the accumulator a table indexed by the partition key
-- ("Combining" below).
function Flow:reduce(acc_fun, fun, opts)
  check_fn("reduce", "the accumulator", acc_fun)
  check_fn("reduce", "the reducer", fun)
  local merge, keyed
  if opts ~= nil then
    if type(opts) ~= "table" then fail("reduce", "options must be a table, got " .. type(opts)) end
    for k in pairs(opts) do
      if k ~= "merge" and k ~= "keyed" then fail("reduce", "unknown option " .. inspect(k)) end
    end
    merge, keyed = opts.merge, opts.keyed
    if merge ~= nil then check_fn("reduce", "merge", merge) end
    if keyed ~= nil and type(keyed) ~= "boolean" then
      fail("reduce", "keyed must be a boolean, got " .. type(keyed))
    end
    if keyed and not merge then fail("reduce", "keyed needs merge") end
  end
  return (with_reducer(self, "reduce", { kind = "reduce", acc = acc_fun, f = fun, merge = merge,
                                         keyed = keyed or nil }))
end

function Flow:emit_and_reduce(acc_fun, fun)
  check_fn("emit_and_reduce", "the accumulator", acc_fun)
  check_fn("emit_and_reduce", "the reducer", fun)
  return (with_reducer(self, "emit_and_reduce", { kind = "emit_and_reduce", acc = acc_fun, f = fun }))
end

function Flow:group_by(key_fun, value_fun)
  check_fn("group_by", "the key function", key_fun)
  if value_fun ~= nil then check_fn("group_by", "the value function", value_fun) end
  return (with_reducer(self, "group_by", { kind = "group_by", key = key_fun, value = value_fun }))
end

function Flow:group_by_key()
  return (with_reducer(self, "group_by_key", { kind = "group_by_key" }))
end

local function check_reduced(f, fn)
  if not f.red then
    fail(fn, fn .. " must be called after a group_by/reduce/emit_and_reduce operation "
      .. "as it works on the accumulated state", 2)
  end
end

function Flow:on_trigger(fun)
  check_fn("on_trigger", "the trigger function", fun)
  check_reduced(self, "on_trigger")
  if self.trig or self.emit_mode then fail("on_trigger", "on_trigger cannot be called after emit/on_trigger") end
  return derive(self, { trig = fun })
end

function Flow:emit(mode)
  if mode ~= "events" and mode ~= "state" and mode ~= "nothing" then
    fail("emit", "mode must be \"events\", \"state\" or \"nothing\", got " .. inspect(mode))
  end
  check_reduced(self, "emit")
  if self.trig or self.emit_mode then fail("emit", "emit cannot be called after emit/on_trigger") end
  return derive(self, { emit_mode = mode })
end

-- Layers -------------------------------------------------------------------------------

local function check_flows(fn, flows)
  if is_flow(flows) then return { flows } end
  if type(flows) ~= "table" or #flows == 0 then
    fail(fn, "expected a flow or a non-empty list of flows, got " .. inspect(flows), 2)
  end
  for i, f in ipairs(flows) do
    if not is_flow(f) then fail(fn, ("item %d is not a flow (got %s)"):format(i, type(f)), 2) end
  end
  return flows
end

-- flow:partition(opts) / flow.partition({flows}, opts)
function Flow:partition(opts)
  local flows = check_flows("partition", self)
  opts = check_opts("partition", opts, PARTITION_OPTS)
  return new_flow({ kind = "flows", flows = flows, dispatch = "partition", key = opts.key, hash = opts.hash }, opts)
end

function Flow:shuffle(opts)
  local flows = check_flows("shuffle", self)
  opts = check_opts("shuffle", opts)
  return new_flow({ kind = "flows", flows = flows, dispatch = "demand" }, opts)
end

-- (tail calls: an error in the options names the caller's line)
function flow.partition(flows, opts) return Flow.partition(check_flows("partition", flows), opts) end
function flow.shuffle(flows, opts) return Flow.shuffle(check_flows("shuffle", flows), opts) end
function flow.merge(flows, opts)
  flows = check_flows("merge", flows)
  opts = check_opts("merge", opts)
  return new_flow({ kind = "flows", flows = flows, dispatch = "demand" }, opts)
end
function Flow:merge(opts) return flow.merge({ self }, opts) end

function Flow:departition(acc_fun, merge_fun, done_fun)
  check_fn("departition", "the accumulator", acc_fun)
  check_fn("departition", "the merge function", merge_fun)
  check_fn("departition", "the done function", done_fun)
  check_reduced(self, "departition")
  return new_flow({ kind = "departition", flow = self, acc = acc_fun, merge = merge_fun, done = done_fun },
    { stages = 1 })
end

function Flow:take_sort(n, less)
  if math.type(n) ~= "integer" or n < 1 then fail("take_sort", "n must be an integer >= 1, got " .. inspect(n)) end
  if less ~= nil then check_fn("take_sort", "the comparison", less) end
  check_reduced(self, "take_sort")
  return new_flow({ kind = "take_sort", flow = self, n = n, less = less }, { stages = 1 })
end

local JOIN_MODES = { inner = true, left_outer = true, right_outer = true, full_outer = true }

local function join_flow(fn, mode, left, right, window, left_key, right_key, join, opts)
  if not JOIN_MODES[mode] then
    fail(fn, "mode must be \"inner\", \"left_outer\", \"right_outer\" or \"full_outer\", got " .. inspect(mode), 2)
  end
  if not is_flow(left) then fail(fn, "left must be a flow, got " .. type(left), 2) end
  if not is_flow(right) then fail(fn, "right must be a flow, got " .. type(right), 2) end
  check_fn(fn, "left_key", left_key)
  check_fn(fn, "right_key", right_key)
  check_fn(fn, "the join function", join)
  opts = check_opts(fn, opts, nil, 1)
  if window ~= nil then opts.window = window end
  return new_flow({ kind = "join", mode = mode, left = left, right = right, lkey = left_key,
                    rkey = right_key, join = join }, opts)
end

function flow.bounded_join(mode, left, right, left_key, right_key, join, opts)
  return (join_flow("bounded_join", mode, left, right, nil, left_key, right_key, join, opts))
end

function flow.window_join(mode, left, right, window, left_key, right_key, join, opts)
  if type(window) ~= "table" or type(window.type) ~= "string" then
    fail("window_join", "window must come from sluice.window, got " .. inspect(window))
  end
  return (join_flow("window_join", mode, left, right, window, left_key, right_key, join, opts))
end

local function through(f, fn, list, what)
  if not is_flow(f) then fail(fn, "expected a flow, got " .. type(f), 2) end
  if type(list) ~= "table" or #list == 0 then fail(fn, "expected a non-empty list of " .. what, 2) end
  return list
end

function Flow:through_stages(pcs)
  through(self, "through_stages", pcs, "producer_consumers")
  for i, entry in ipairs(pcs) do
    local s, o = split_entry(entry)
    if type(s) ~= "userdata" then
      fail("through_stages", ("item %d must be a stage or {stage, opts}, got %s"):format(i, inspect(entry)))
    end
    check_demand("through_stages", o, ("item %d: "):format(i), 2)
  end
  return new_flow({ kind = "through", flow = self, stages = pcs }, {})
end

function Flow:through_specs(specs)
  through(self, "through_specs", specs, "{spec, arg, opts}")
  for i, s in ipairs(specs) do
    if type(s) ~= "table" or type(s[1]) ~= "table" then
      fail("through_specs", ("item %d must be {spec, arg, opts}, got %s"):format(i, inspect(s)))
    end
    check_spec_opts("through_specs", s[3], i)
  end
  return new_flow({ kind = "through", flow = self, specs = specs }, {})
end

-- A consumer started by into_specs: the user's spec, stopping with
-- "normal" once all its producers have ended (after its own handle_cancel).
local function finishing_spec(spec)
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  local user_cancel = spec.handle_cancel
  s.handle_cancel = function(reason, from, state)
    local events
    if user_cancel then events, state = user_cancel(reason, from, state) end
    local me = sluice.self()
    if me:stats().producers == 0 then me:finish() end
    return events or {}, state
  end
  return s
end

-- The planner -----------------------------------------------------------------------------------

local next_flow_id = 0

-- Running state of one materialisation: every stage it started or uses
-- (with its place in the flow, for errors and stats), the stages it owns
-- (stopped with the flow) and the sources waiting for the go.
local function new_run()
  next_flow_id = next_flow_id + 1
  return { id = next_flow_id, stages = {}, owned = {}, layers = 0, sources = 0, paused = {} }
end

local function track(run, stage, label, layer, partition, owned)
  run.stages[#run.stages + 1] = { stage = stage, label = label, layer = layer, partition = partition,
                                  owned = owned ~= false }
  if owned ~= false then run.owned[#run.owned + 1] = stage end
  return stage
end

local function demand_dispatcher() return sluice.dispatcher.demand({}) end

-- The partition hash of a layer: the user's hash, or the engine's hash of
-- the key into 1..n (nil: hash the whole event in C).
local function partition_hash(src, n)
  if src.hash then return src.hash end
  local key = src.key
  if not key then return nil end
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
  return function(e) return sluice._hash(keyf(e), n) end
end

-- The dispatcher a layer of n stages needs from the stages that feed it.
local function dispatcher_for(src, n)
  if src.dispatch == "partition" and (n > 1 or src.hash) then
    -- a key spec ({index = i} / {field = name}) is read by the engine in C
    if not src.hash and type(src.key) == "table" then
      return sluice.dispatcher.partition({ partitions = n, key = src.key })
    end
    return sluice.dispatcher.partition({ partitions = n, hash = partition_hash(src, n) })
  end
  return demand_dispatcher()
end

-- Subscription options of a layer (max_demand and min_demand go together).
local function sub_opts_of(opts)
  if opts.max_demand == nil and opts.min_demand == nil then return nil end
  return { max_demand = opts.max_demand, min_demand = opts.min_demand }
end

-- Subscription options for a consumer of upstream output `up` ({stage,
-- sub = source subscription options or nil}): the source's options win
-- over the layer's; `extra` (partition, side, user options) over both.
local function sub_options(up, layer_sub, extra)
  local s = { cancel = "transient" }
  for k, v in pairs(up.sub or layer_sub or {}) do s[k] = v end
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

-- The same as a subscribe_to entry: {stage, options...}.
local function subscription(up, layer_sub, extra)
  local s = sub_options(up, layer_sub, extra)
  s[1] = up.stage
  return s
end

-- Starts the stages of a layer (one per cfg), each subscribed to every
-- upstream output. Returns the layer's outputs.
local function start_layer(run, spec, cfgs, ups, dispatcher, layer_sub, partitioned)
  run.layers = run.layers + 1
  local layer = run.layers
  local n = #cfgs
  local outs = {}
  for i = 1, n do
    local subs = {}
    for j, up in ipairs(ups) do
      subs[j] = subscription(up, layer_sub, { partition = partitioned and i or nil, side = up.side })
    end
    local cfg = cfgs[i]
    cfg.producers = #ups
    cfg.index, cfg.total = i, n
    cfg.label = ("flow %d layer %d stage %d"):format(run.id, layer, i)
    local opts = { subscribe_to = #ups > 0 and subs or nil, worker = (i - 1) % sluice.workers() + 1,
                   dispatcher = dispatcher,
                   buffer_size = cfg.buffer_size, buffer_keep = cfg.buffer_keep }
    local s = sluice.start(spec, cfg, opts)
    outs[i] = { stage = track(run, s, cfg.label, layer, i) }
  end
  return outs
end

-- Whether a layer's emitted events, and its group_by groups, leave its
-- stages (compile's copy_out and copy_groups): not for run() (discard),
-- and a layer feeding a departition/take_sort (tag) sends only states.
local function copies(extra)
  if extra == nil then return true, true end
  return not (extra.discard or extra.tag), not extra.discard
end

local function has_work(f)
  return #f.ops > 0 or f.red ~= nil or f.batch_fn ~= nil or f.opts.on_init ~= nil
end

-- The configurations of the n stages of f's layer (the argument of their
-- init); `extra` adds or replaces fields.
-- extra.comb (a combining layer) compiles the next layer's partition,
-- operations and reducer into this one; merging (the layer after a
-- combining one) compiles nothing: its stages merge partial accumulators.
local function layer_cfgs(f, n, extra, merging)
  local comb = extra and extra.comb
  local src, F
  if not merging and (#f.ops > 0 or f.red or comb) then src, F = compile(f.ops, f.red, nil, comb, copies(extra)) end
  local cfgs = {}
  for i = 1, n do
    local cfg = { ops_src = src, F = F, red = f.red, trig = f.trig, emit_mode = f.emit_mode,
                  batch_fn = f.batch_fn, on_init = f.opts.on_init, buffer_size = f.opts.buffer_size,
                  buffer_keep = f.opts.buffer_keep, merging = merging or nil }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    if comb then   -- the stages need only the partition count (and a keyed one, acc_fun)
      cfg.comb, cfg.comb_acc = comb.n, comb.keyed and comb.red.acc or nil
    end
    cfgs[i] = cfg
  end
  return cfgs
end

-- A window other than the default global one needs computation, and this
-- version has only the global window.
local function check_window(f)
  local w = f.opts.window
  if w == nil or w.type == "global" then return end
  if not has_work(f) and f.src.kind ~= "join" then
    error("sluice.flow: a window was set but no computation is happening on this layer", 0)
  end
  error(("sluice.flow: window type %s is not supported by this version (only global)"):format(inspect(w.type)), 0)
end

-- Starts the source producers of f with the given dispatcher; returns
-- them as outputs carrying the source's subscription options.
local function start_sources(run, f, dispatcher)
  local src = f.src
  local sub = sub_opts_of(f.opts)
  local outs = {}
  local function add(s, owned)   -- sources are numbered across the whole flow
    run.sources = run.sources + 1
    return track(run, s, ("flow %d source %d"):format(run.id, run.sources), 0, run.sources, owned)
  end
  if src.kind == "enumerables" then
    for i, e in ipairs(src.enums) do
      local s = sluice.from_enumerable(e, { dispatcher = dispatcher, on_cancel = "stop",
        demand = "accumulate", buffer_size = f.opts.buffer_size, buffer_keep = f.opts.buffer_keep })
      run.paused[#run.paused + 1] = add(s)
      outs[i] = { stage = s, sub = sub }
    end
  elseif src.kind == "specs" then
    for i, entry in ipairs(src.specs) do
      local producer = entry[1].type == "producer"
      local s = sluice.start(entry[1], entry[2], { dispatcher = dispatcher,
        demand = producer and "accumulate" or nil })
      add(s)
      if producer then run.paused[#run.paused + 1] = s end
      outs[i] = { stage = s, sub = sub }
    end
  else
    for i, entry in ipairs(src.stages) do
      local s, o = split_entry(entry)
      local merged = {}
      for k, v in pairs(sub or {}) do merged[k] = v end
      for k, v in pairs(o) do merged[k] = v end
      outs[i] = { stage = add(s, false), sub = next(merged) and merged or nil }
      -- like the flow's own sources, switched to forward once every
      -- consumer has subscribed (a no-op on a producer already forwarding)
      run.paused[#run.paused + 1] = s
    end
  end
  return outs
end

-- Combining -------------------------------------------------------------------------------------
--
-- A reduce given a merge function (reduce(acc_fun, fun, {merge = m})) right
-- after a partition is computed in two steps. Each stage of the layer (or
-- layers) before the partition keeps one accumulator per partition of the
-- next layer: it computes each event's partition as the dispatcher would,
-- runs the next layer's operations and fun on it, and sends nothing until
-- its upstream is done. Then it sends {partition, accumulator} pairs, and
-- each stage of the reducing layer merges them into its own accumulator
-- with m(partial, acc). Only the partial accumulators cross the partition,
-- not every event. The result is the same as reducing every event in its
-- partition when merging two accumulators equals reducing the events of
-- both, which is what passing merge declares.
--
-- With keyed (reduce(acc_fun, fun, {merge = m, keyed = true})) the user
-- also declares the accumulator a table indexed by the partition key, each
-- entry built only from events with that key (a word count's acc[word]).
-- Then the stages before the partition keep one accumulator, computing no
-- partition per event, and cut it by key when their upstream is done.

-- The combining spec for f's layer of n stages, or nil when f's reduce
-- cannot be split so: no merge, not after a partition, a map_batch or an
-- on_init of its own (they run in the reducing stages), uniq (its "seen"
-- must span the whole partition), or an upstream layer with its own reduce.
local function combining(f, n)
  local red, src = f.red, f.src
  if not (red and red.kind == "reduce" and red.merge) or src.dispatch ~= "partition" then return nil end
  if f.batch_fn or f.opts.on_init then return nil end
  for _, op in ipairs(f.ops) do
    if op.op == "uniq" or op.op == "uniq_by" then return nil end
  end
  for _, g in ipairs(src.flows) do
    if g.red then return nil end
  end
  -- keyed: the reducer sees the events the partition keys (no operations
  -- between), and keys come from the key spec, not from a hash function
  local keyed = red.keyed and #f.ops == 0 and not src.hash or nil
  return { n = n, key = src.key, hash = src.hash, ops = f.ops, red = red, keyed = keyed }
end

-- Sends a combining layer's {partition, accumulator} pairs to their partition.
local function combined_dispatcher(n)
  if n == 1 then return demand_dispatcher() end
  return sluice.dispatcher.partition({ partitions = n, hash = function(e) return e[1] end })
end

local materialize

-- Materialises flow f so that its output stages use `dispatcher` (built by
-- the caller for its own layer; nil: demand). `extra` goes into the
-- configuration of f's last layer ({discard = true} for run/start, {tag =
-- ...} for departition and take_sort) and forces that layer to exist.
-- Returns the output stages as {stage = s, sub = opts or nil} entries.
function materialize(run, f, dispatcher, extra)
  check_window(f)
  local src = f.src
  local n = f.opts.stages or sluice.workers()
  local work = has_work(f) or extra ~= nil
  local needs_disp = dispatcher ~= nil and dispatcher.kind ~= "demand"
  local ups, partitioned, layer_sub = nil, false, sub_opts_of(f.opts)
  if src.kind == "enumerables" or src.kind == "specs" or src.kind == "stages" then
    -- stages we did not start keep their dispatcher: they need a layer
    if not work and not (src.kind == "stages" and needs_disp) then
      return start_sources(run, f, dispatcher)
    end
    local whole = work and splittable(f)
    if whole then
      local cfgs = layer_cfgs(f, n, extra)
      local range_src = whole.__sluice_enum == "range"
        and (compile(f.ops, f.red, "range", extra and extra.comb, copies(extra))) or nil
      local plan = split_plan(whole, n)
      for i = 1, n do
        cfgs[i].plan, cfgs[i].range_src = plan, range_src
        -- a layer stage keeps what it made beyond the demand (at most one
        -- chunk's output), as a producer_consumer does
        cfgs[i].buffer_size = cfgs[i].buffer_size or math.huge
      end
      local outs = start_layer(run, SourceStage, cfgs, {}, dispatcher, layer_sub, false)
      -- paused like any source until every consumer has subscribed
      for _, o in ipairs(outs) do
        o.stage:demand("accumulate")
        run.paused[#run.paused + 1] = o.stage
      end
      return outs
    end
    ups = start_sources(run, f, demand_dispatcher())
  elseif src.kind == "flows" then
    local comb = combining(f, n)
    local updisp = comb and combined_dispatcher(n) or dispatcher_for(src, n)
    ups = {}
    for _, g in ipairs(src.flows) do
      for _, s in ipairs(materialize(run, g, updisp, comb and { comb = comb } or nil)) do ups[#ups + 1] = s end
    end
    partitioned = updisp.kind == "partition"
    if comb then
      return start_layer(run, LayerStage, layer_cfgs(f, n, extra, true), ups, dispatcher, layer_sub, partitioned)
    end
  elseif src.kind == "join" then
    -- each side is partitioned by its own key; the join stages tell the
    -- sides apart by the subscription option `side`
    local function side_dispatcher(key_fn)
      if n == 1 then return demand_dispatcher() end
      return sluice.dispatcher.partition({ partitions = n, hash = function(e)
        local k = key_fn(e)
        if type(k) == "number" then k = math.tointeger(k) or k end
        return sluice._hash(k, n)
      end })
    end
    ups = {}
    for _, s in ipairs(materialize(run, src.left, side_dispatcher(src.lkey))) do s.side = 1; ups[#ups + 1] = s end
    for _, s in ipairs(materialize(run, src.right, side_dispatcher(src.rkey))) do s.side = 2; ups[#ups + 1] = s end
    partitioned = n > 1
    local cfgs = layer_cfgs(f, n, extra)
    for i = 1, n do
      cfgs[i].join, cfgs[i].join_mode, cfgs[i].lkey, cfgs[i].rkey = src.join, src.mode, src.lkey, src.rkey
    end
    return start_layer(run, LayerStage, cfgs, ups, dispatcher, layer_sub, partitioned)
  elseif src.kind == "departition" or src.kind == "take_sort" then
    local tag = { tag = src.kind, n = src.n, less = src.less }
    local parts = materialize(run, src.flow, demand_dispatcher(), tag)
    -- the merging stage drops its output itself when nothing follows it
    local alone = not has_work(f) and (extra == nil or (extra.discard and not extra.tag))
    local cfg = { kind = src.kind, acc = src.acc, merge = src.merge, done = src.done, n = src.n,
                  less = src.less, discard = alone and extra ~= nil or nil }
    if alone then return start_layer(run, MergeStage, { cfg }, parts, dispatcher, layer_sub, false) end
    ups = start_layer(run, MergeStage, { cfg }, parts, demand_dispatcher(), layer_sub, false)
  elseif src.kind == "through" then
    local mids = materialize(run, src.flow, demand_dispatcher())
    run.layers = run.layers + 1
    local layer = run.layers
    ups = {}
    for i, entry in ipairs(src.stages or src.specs) do
      local label = ("flow %d layer %d stage %d"):format(run.id, layer, i)
      local s
      if src.stages then
        local pc, o = split_entry(entry)
        for _, up in ipairs(mids) do sluice.subscribe(pc, up.stage, sub_options(up, nil, o)) end
        s = track(run, pc, label, layer, i, false)
      else
        local subs = {}
        for j, up in ipairs(mids) do subs[j] = subscription(up, nil, entry[3]) end
        s = track(run, sluice.start(entry[1], entry[2], { subscribe_to = subs }), label, layer, i)
      end
      ups[i] = { stage = s }
    end
    if not work and not needs_disp then return ups end
  else
    error("sluice.flow: unknown source kind " .. tostring(src.kind), 0)
  end
  return start_layer(run, LayerStage, layer_cfgs(f, n, extra), ups, dispatcher, layer_sub, partitioned)
end

-- Running ----------------------------------------------------------------------------------------

-- Lets the paused sources go, once the final consumers have subscribed:
-- they were started with accumulated demand so that none can finish
-- before every stage has subscribed to it.
local function release(run)
  for _, s in ipairs(run.paused) do s:demand("forward") end
end

local function stop_all(run)
  for i = #run.owned, 1, -1 do
    local s = run.owned[i]
    if s:alive() then pcall(s.stop, s, "shutdown") end
  end
end

local function is_error(reason)
  return type(reason) == "table" and reason[1] == "error"
end

-- Stops the flow and raises its error: that of the first stage (sources
-- first) that ended with an error, else `reason` (what the terminal saw).
local function raise_flow_error(run, reason)
  stop_all(run)
  local where
  for _, entry in ipairs(run.stages) do
    -- a stage tells its consumers that it failed a moment before it is
    -- recorded as ended: give the stages the flow does not own that moment
    local s = entry.stage
    local ok, r = pcall(s.await, s, entry.owned and 0 or 20)
    if ok and is_error(r) then reason, where = r, entry; break end
  end
  local msg
  if is_error(reason) then
    msg = tostring(reason[2])
    -- a flow stage's message names it already; others get their place
    if where and not msg:find(where.label, 1, true) then msg = where.label .. ": " .. msg end
    local tb = reason[3]
    if tb ~= nil and tb ~= "" then msg = msg .. "\n" .. tostring(tb) end
  elseif type(reason) == "string" then
    msg = reason:gsub("^sluice%.stream: ", "", 1)
  else
    msg = "a stage ended with " .. inspect(reason)
  end
  error("sluice.flow: " .. msg, 0)
end

-- The first check of every terminal method.
local function check_self(f, fn)
  if not is_flow(f) then fail(fn, "expected a flow, got " .. type(f), 2) end
end

-- The message of an error raised while starting the flow's stages: a
-- layer stage's init error comes through sluice.start, which adds its
-- prefix and a second traceback.
local function start_error(e)
  local msg = tostring(e)
  if msg:find("^sluice%.flow%.") then return msg end
  local inner = msg:match("sluice%.start: init failed: (.*)$")
  if inner and inner:find("^flow %d+ ") then
    local first = inner:find("\nstack traceback:", 1, true)
    local second = first and inner:find("\nstack traceback:", first + 1, true)
    return second and inner:sub(1, second - 1) or inner
  end
  return (msg:gsub("^sluice%.flow: ", "", 1))
end

-- Materialises f (with `extra` for its last layer); on failure stops what
-- was started and raises a flow error.
local function build(f, extra)
  local run = new_run()
  -- all the flow's stages share one snapshot of the globals
  sluice._pin_globals(true)
  local ok, outs = pcall(materialize, run, f, nil, extra)
  sluice._pin_globals(false)
  if not ok then
    stop_all(run)
    local msg = start_error(outs)   -- "sluice.flow.<fn>: ..." messages pass as they are
    error(msg:find("^sluice%.flow%.") and msg or "sluice.flow: " .. msg, 0)
  end
  return run, outs
end

-- Materialises f with a final main-thread collector; returns an iterator
-- over the flow's output and a closer that stops the flow.
local function open(f, fn, discard)
  local run, outs = build(f, discard and { discard = true } or nil)
  local subs = {}
  for i, up in ipairs(outs) do subs[i] = subscription(up) end
  local ok, it, _, _, closer = pcall(sluice.stream, subs)
  if not ok then
    stop_all(run)
    error("sluice.flow." .. fn .. ": " .. tostring(it), 0)
  end
  release(run)
  local done = false
  local function close()
    if done then return end
    done = true
    getmetatable(closer).__close()
    stop_all(run)
  end
  local function iter()
    if done then return nil end
    local ok, v = pcall(it)
    if not ok then
      done = true
      getmetatable(closer).__close()
      raise_flow_error(run, v)
    end
    if v == nil then close() end
    return v
  end
  return iter, close, run
end

function Flow:to_list()
  check_self(self, "to_list")
  local iter, close = open(self, "to_list", false)
  local out, n = {}, 0
  local ok, err = pcall(function()
    for v in iter do n = n + 1; out[n] = v end
  end)
  close()
  if not ok then error(err, 0) end
  return out
end

function Flow:run()
  check_self(self, "run")
  local iter, close = open(self, "run", true)
  local ok, err = pcall(function() for _ in iter do end end)
  close()
  if not ok then error(err, 0) end
end

function Flow:stream()
  check_self(self, "stream")
  local iter, close = open(self, "stream", false)
  return iter, nil, nil, setmetatable({}, { __close = close })
end

-- The running flow handle of start / into_stages / into_specs.
local Running = {}
Running.__index = Running

--- running:await([timeout_ms]): returns once every stage of the flow has
--- ended; raises the flow's error (or a timeout) otherwise.
function Running:await(timeout)
  if timeout ~= nil and (math.type(timeout) ~= "integer" or timeout < 0) then
    error("sluice.flow: await: timeout must be an integer >= 0, got " .. inspect(timeout), 2)
  end
  local run = self.run
  local left = timeout
  while true do
    local waiting
    for _, entry in ipairs(run.stages) do
      local s = entry.stage
      if s:alive() then
        waiting = waiting or s
      else
        local reason = s:await()
        if not sluice._is_normal(reason) then raise_flow_error(run, reason) end
      end
    end
    if not waiting then return end
    local step = 50
    if left then
      if left <= 0 then error(("sluice.flow: await timed out after %d ms"):format(timeout), 2) end
      step = math.min(step, left)
    end
    local ok, err = pcall(waiting.await, waiting, step)
    if not ok then
      if not tostring(err):find("timed out", 1, true) then   -- Ctrl-C: the flow stops
        stop_all(run)
        error(err, 0)
      end
      if left then left = left - step end
    end
  end
end

--- running:stop(): stops every stage the flow started.
function Running:stop()
  stop_all(self.run)
end

--- running:stats() -> one stage:stats() table per live stage, with its
--- name, layer (0: sources) and partition.
function Running:stats()
  local out = {}
  for _, entry in ipairs(self.run.stages) do
    local s = entry.stage
    local ok, st = pcall(s.stats, s)
    if ok then
      st.name = entry.label
      st.layer, st.partition = entry.layer, entry.partition
      out[#out + 1] = st
    end
  end
  return out
end

-- The consumer of start(): drops what it gets and ends with the flow.
local Sink = {
  type = "consumer",
  handle_events = function(_, _, st) return {}, st end,
  handle_cancel = function(_, _, st)
    local me = sluice.self()
    if me:stats().producers == 0 then me:finish() end
    return {}, st
  end,
}

function Flow:start()
  check_self(self, "start")
  local run, outs = build(self, { discard = true })
  local subs = {}
  for i, up in ipairs(outs) do subs[i] = subscription(up) end
  local ok, sink = pcall(sluice.start, Sink, nil, { subscribe_to = subs })
  if not ok then stop_all(run); error("sluice.flow: " .. tostring(sink), 0) end
  track(run, sink, ("flow %d sink"):format(run.id), run.layers + 1, 1)
  release(run)
  return setmetatable({ run = run }, Running)
end

local function into(f, fn, entries)
  local run, outs = build(f, nil)
  local layer = run.layers + 1
  local subscribed = {}
  local ok, err = pcall(function()
    for i, entry in ipairs(entries) do
      local label = ("flow %d consumer %d"):format(run.id, i)
      if fn == "into_specs" then
        local subs = {}
        for j, up in ipairs(outs) do subs[j] = subscription(up, nil, entry[3]) end
        track(run, sluice.start(finishing_spec(entry[1]), entry[2], { subscribe_to = subs }), label, layer, i)
      else
        local c, o = split_entry(entry)
        for _, up in ipairs(outs) do sluice.subscribe(c, up.stage, sub_options(up, nil, o)) end
        subscribed[#subscribed + 1] = c
      end
    end
  end)
  if not ok then stop_all(run); error("sluice.flow." .. fn .. ": " .. tostring(err), 0) end
  -- a call to each consumer returns once its subscriptions are on their
  -- way to the producers; then the sources may start
  for _, c in ipairs(subscribed) do pcall(c.stats, c) end
  release(run)
  return setmetatable({ run = run }, Running)
end

function Flow:into_stages(consumers)
  check_self(self, "into_stages")
  if type(consumers) ~= "table" or #consumers == 0 then fail("into_stages", "expected a non-empty list of consumers") end
  for i, entry in ipairs(consumers) do
    local s, o = split_entry(entry)
    if type(s) ~= "userdata" then
      fail("into_stages", ("item %d must be a stage or {stage, opts}, got %s"):format(i, inspect(entry)))
    end
    check_demand("into_stages", o, ("item %d: "):format(i), 2)
  end
  return (into(self, "into_stages", consumers))
end

function Flow:into_specs(specs)
  check_self(self, "into_specs")
  if type(specs) ~= "table" or #specs == 0 then fail("into_specs", "expected a non-empty list of {spec, arg, opts}") end
  for i, s in ipairs(specs) do
    if type(s) ~= "table" or type(s[1]) ~= "table" then
      fail("into_specs", ("item %d must be {spec, arg, opts}, got %s"):format(i, inspect(s)))
    end
    check_spec_opts("into_specs", s[3], i)
  end
  return (into(self, "into_specs", specs))
end

flow.Flow = Flow
flow.is_flow = is_flow

return flow
