-- sluice.flow: Flow (API.md §4), the builder. A flow is an immutable
-- description; this module holds the functions that make one (sources,
-- partition, merge, joins...) and the methods that derive one from
-- another (per-event operations, reducers, layers). A terminal method
-- (sluice.flow_run) runs it: the planner (sluice.flow_plan) turns it into
-- layers of GenStage stages.
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
-- Each layer runs as `stages` producer_consumers ("layer stages",
-- sluice.flow_layer) whose handle_events is one generated Lua loop over
-- the batch with the user's functions as upvalues (the fused operations,
-- sluice.flow_codegen).
--
-- The other flow_*.lua modules:
--   flow_check    the Flow metatable and the checks of arguments and options
--   flow_run      the terminal methods and the Running handle
--   flow_plan     the planner: flow record -> started stages
--   flow_codegen  snapshots and the generated loop (compile, load_run)
--   flow_layer    LayerStage, the spec of a layer's stages
--   flow_join     bounded/window joins inside a layer
--   flow_trigger  what a trigger emits, and a layer's end ("done")
--   flow_source   split sources (SourceStage)
--   flow_merge    departition and take_sort (MergeStage)
--   flow_error    errors inside stages
--
-- Errors: a layer stage that catches an error in a user function stops
-- with {"error", "flow F layer L stage I (op): message", traceback}; the
-- terminal method stops the whole flow and raises
-- "sluice.flow: flow F layer L stage I (op): message" plus the traceback.
local sluice = require("sluice")
local check = require("sluice.flow_check")

local flow = {}

local inspect = sluice.inspect
local Flow, is_flow, fail, check_fn = check.Flow, check.is_flow, check.fail, check.check_fn
local check_demand, check_spec_opts, check_opts = check.check_demand, check.check_spec_opts, check.check_opts
local PARTITION_OPTS, split_entry = check.PARTITION_OPTS, check.split_entry

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

local counting, is_sum   -- (below, with the combiners)

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
  local count = counting(acc_fun, fun, merge, keyed)
  if count then return (with_reducer(self, "reduce", count)) end
  return (with_reducer(self, "reduce", { kind = "reduce", acc = acc_fun, f = fun, merge = merge,
                                         keyed = keyed or nil }))
end

-- Combiners: reduces whose accumulator is a table {[key] = value} with a
-- merge of their own, so that after a partition they combine like any
-- reduce given a merge (sluice.flow_plan's combining). red.keyed_by says
-- which partition makes them keyed: "pair" (a key spec {index = 1}: the
-- pair's key), "event" (partition() with no key: the whole event) or the
-- key function itself; red.pairs makes the end emit {key, value} pairs
-- even when the keys happen to be 1..n. The functions below run in the
-- layer's stages; the user's function is called through a local named
-- reduce_<operation>, which is how an error in it names the operation.

-- A key that a table keeps by value: tables and functions are keys by
-- identity, and every event arrives as a new copy.
local function check_key(op, k, what)
  local t = type(k)
  if t == "string" or t == "boolean" or (t == "number" and k == k) then return end
  local E = require("sluice.flow_error")
  if k == nil then E.op_error(op, what or "a key is nil") end
  E.op_error(op, ("a key must be a string, a number (not NaN) or a boolean, got %s "
    .. "(a table would be a key by identity, and every event arrives as a new copy)"):format(sluice.inspect(k)))
end

local function by_key_nil()
  require("sluice.flow_error").op_error("reduce_by_key", "the function returned nil where a value was expected")
end

local function by_key_fns(fun)
  local reduce_reduce_by_key = fun
  local function bad_pair(e, why)
    require("sluice.flow_error").op_error("reduce_by_key",
      ("expected a {key, value} pair, got %s%s"):format(sluice.inspect(e), why))
  end
  local function combined(a, v)
    a = reduce_reduce_by_key(a, v)
    if a == nil then by_key_nil() end
    return a
  end
  local function reduce(e, acc)
    if type(e) ~= "table" then bad_pair(e, "") end
    local k, v = e[1], e[2]
    if v == nil then bad_pair(e, " (its value is nil)") end
    local a = acc[k]
    if a == nil then
      if k == nil then bad_pair(e, " (its key is nil)") end
      check_key("reduce_by_key", k)
      acc[k] = v
    else
      acc[k] = combined(a, v)
    end
    return acc
  end
  local function merge(part, acc)
    for k, v in pairs(part) do
      local a = acc[k]
      if a == nil then acc[k] = v else acc[k] = combined(a, v) end
    end
    return acc
  end
  return reduce, merge, combined
end

-- The fused loop's own code for a key already counted (reducer.fast: see
-- sluice.flow_codegen); the first event of a key, and any event that is
-- not what the combiner takes, go through the reducer (reduce_reduce),
-- which checks and names the error. e is the event, acc the accumulator.
local BY_KEY_FAST = [[
local k, v, a
if type(e) == 'table' then
  k, v = e[1], e[2]
  if v ~= nil then a = acc[k] end
end
if a == nil then
  acc = reduce_reduce(e, acc)
else
  a = reduce_reduce_by_key(a, v)
  if a == nil then BYKEY_NIL() end
  acc[k] = a
end
]]

-- The same after a map that is exactly function(x) return {x, K} end
-- (sluice._tuple_ctor reads that from its instructions: {word, 1}): the
-- key is the map's argument and the value K, so no table is made for a
-- key already seen; a new key (or nil, NaN...) goes through the map and
-- the reducer as above, with their checks and errors. MAP is the map's
-- local.
local BY_KEY_PAIR = [[
local a = acc[e]
if a == nil then
  acc = reduce_reduce(MAP(e), acc)
else
  a = reduce_reduce_by_key(a, PAIRK)
  if a == nil then BYKEY_NIL() end
  acc[e] = a
end
]]

local FREQUENCIES_FAST = [[
local c = acc[e]
if c then acc[e] = c + 1 else acc = reduce_reduce(e, acc) end
]]

local FREQUENCIES_BY_FAST = [[
local k = reduce_frequencies_by(e)
local c = acc[k]
if c then acc[k] = c + 1 else acc = FREQ_NEW(k, acc) end
]]

local function add_counts(part, acc)
  for k, n in pairs(part) do acc[k] = (acc[k] or 0) + n end
  return acc
end

local function new_table() return {} end

-- flow:reduce_by_key(fun): {key, value} events; per key the first value,
-- then fun(acc_value, value).
function Flow:reduce_by_key(fun)
  check_fn("reduce_by_key", "fun", fun)
  local reduce, merge, combined = by_key_fns(fun)
  return (with_reducer(self, "reduce_by_key", { kind = "reduce", name = "reduce_by_key", acc = new_table,
    f = reduce, merge = merge, merge_pairs = { fun = combined, nilfn = by_key_nil }, keyed_by = "pair", pairs = true,
    fast = { code = BY_KEY_FAST, pair_code = BY_KEY_PAIR, pair_runs = is_sum(fun),
             fns = { reduce_reduce_by_key = fun, BYKEY_NIL = by_key_nil } } }))
end

-- flow:frequencies(): the count of each distinct event.
function Flow:frequencies()
  local function reduce(e, acc)
    local c = acc[e]
    if c == nil then
      check_key("frequencies", e)
      acc[e] = 1
    else
      acc[e] = c + 1
    end
    return acc
  end
  return (with_reducer(self, "frequencies", { kind = "reduce", name = "frequencies", acc = new_table,
    f = reduce, merge = add_counts, merge_pairs = {}, keyed_by = "event", pairs = true, fast = { code = FREQUENCIES_FAST, runs = true } }))
end

-- flow:frequencies_by(key_fun): the count of each key_fun(event).
function Flow:frequencies_by(key_fun)
  check_fn("frequencies_by", "the key function", key_fun)
  local reduce_frequencies_by = key_fun
  local function new_key(k, acc)
    check_key("frequencies_by", k, "frequencies_by returned nil where a key was expected")
    acc[k] = 1
    return acc
  end
  local function reduce(e, acc)
    local k = reduce_frequencies_by(e)
    local c = acc[k]
    if c == nil then return new_key(k, acc) end
    acc[k] = c + 1
    return acc
  end
  return (with_reducer(self, "frequencies_by", { kind = "reduce", name = "frequencies_by", acc = new_table,
    f = reduce, merge = add_counts, merge_pairs = {}, keyed_by = key_fun, pairs = true,
    fast = { code = FREQUENCIES_BY_FAST, fns = { reduce_frequencies_by = key_fun, FREQ_NEW = new_key } } }))
end

-- A reduce that is a count: its accumulator function exactly
-- function() return {} end and its reducer exactly one of COUNT_SRC
-- (sluice._same_code: the same instructions and constants, no upvalues;
-- names and layout are free). Such a reduce combines as frequencies does
-- (its merge adds the counts, keyed by the event), and the loop counts a
-- key already seen itself; what it returns is the reduce's own: the same
-- accumulator, the same events at the end (an array of counts when the
-- keys are 1..n), errors named (reduce). In the stages before the
-- partition an event that is not a string, number or boolean is counted
-- as a copy (sluice._copy), as the partition would send it: a table is a
-- key by identity, and each one that crosses a partition is a new copy
-- (sluice.flow_codegen copies where the partition is computed; a keyed
-- combining has no such place, and counts through comb_f).
-- A count given a merge of its own keeps it, and the loop's count; when
-- that merge is exactly one of ADD_COUNTS_SRC (its one upvalue the
-- globals, with the real pairs) the reducing stages add each partial
-- from its bytes, as frequencies' do.
local COUNT_SRC = {
  "return function(x, acc) acc[x] = (acc[x] or 0) + 1 return acc end",
  "return function(x, acc) acc[x] = 1 + (acc[x] or 0) return acc end",
  "return function(x, acc) local n = acc[x] or 0 acc[x] = n + 1 return acc end",
  "return function(x, acc) if acc[x] then acc[x] = acc[x] + 1 else acc[x] = 1 end return acc end",
}
local ADD_COUNTS_SRC = {
  "return function(part, acc) for k, n in pairs(part) do acc[k] = (acc[k] or 0) + n end return acc end",
  "return function(part, acc) for k, n in pairs(part) do acc[k] = n + (acc[k] or 0) end return acc end",
}
local NEW_TABLE_SRC = "return function() return {} end"
-- reduce_by_key's function that is an addition (a count in C, see
-- sluice.flow_codegen)
local SUM_SRC = {
  "return function(a, b) return a + b end",
  "return function(a, b) return b + a end",
}
local refs

-- (a key already counted adds 1, as frequencies' own loop code does)
local COUNT_FAST = FREQUENCIES_FAST

local function same_as_one_of(f, list)
  for _, ref in ipairs(list) do
    if sluice._same_code(f, ref) then return true end
  end
  return false
end

local function load_refs()
  if not refs then
    local function compile(list)
      local out = {}
      for i, src in ipairs(list) do out[i] = load(src, "=count", "t")() end
      return out
    end
    refs = { count = compile(COUNT_SRC), add = compile(ADD_COUNTS_SRC), new_table = compile({ NEW_TABLE_SRC })[1],
             sum = compile(SUM_SRC) }
  end
  return refs
end

local function is_count(acc_fun, fun)
  load_refs()
  return sluice._same_code(acc_fun, refs.new_table) and same_as_one_of(fun, refs.count)
end

is_sum = function(fun)
  return same_as_one_of(fun, load_refs().sum)
end

local function adds_counts(merge)
  if not same_as_one_of(merge, refs.add) then return false end
  local name, env = debug.getupvalue(merge, 1)
  return name == "_ENV" and type(env) == "table" and rawget(env, "pairs") == pairs
end

counting = function(acc_fun, fun, merge, keyed)
  if not is_count(acc_fun, fun) then return nil end
  if merge ~= nil then
    return { kind = "reduce", acc = acc_fun, f = fun, merge = merge, keyed = keyed or nil,
             merge_pairs = adds_counts(merge) and {} or nil, fast = { code = COUNT_FAST, runs = true } }
  end
  -- (a keyed combining's reducer: the cut places the copy by the
  -- original's encoding; canonical hashing makes the two agree, except
  -- for a table holding one table twice or a function, which hash as
  -- their bytes, and the copy's may list its fields in another order)
  local reduce_reduce = fun
  local function comb_f(e, acc)
    local t = type(e)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then
      local bytes
      e, bytes = require("sluice.flow_error").copy_event(e)
      require("sluice.flow_trigger").copied[e] = bytes
    end
    local a = reduce_reduce(e, acc)
    return a
  end
  return { kind = "reduce", acc = acc_fun, f = fun, comb_f = comb_f, count = true, merge = add_counts,
           merge_pairs = {}, keyed_by = "event", fast = { code = COUNT_FAST, runs = true } }
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
  return new_flow({ kind = "flows", flows = flows, dispatch = "partition", key = opts.key, hash = opts.hash,
                    redis = opts.redis }, opts)
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
  if type(list) ~= "table" or #list == 0 then fail(fn, "expected a non-empty list of " .. what .. ", got " .. inspect(list), 2) end
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

-- flow:explain() / flow.explain(f): the plan the terminal methods would
-- run, as text (sluice.flow_explain).
function flow.explain(f)
  if not is_flow(f) then fail("explain", "expected a flow, got " .. type(f)) end
  return require("sluice.flow_explain").explain(f)
end
function Flow:explain() return flow.explain(self) end

-- flow:graph() / flow.graph(f): the topology the terminal methods would
-- start, as Graphviz DOT (sluice.tools).
function flow.graph(f)
  if not is_flow(f) then fail("graph", "expected a flow, got " .. type(f)) end
  local plan = require("sluice.flow_plan")
  local run = plan.dry_run()
  plan.materialize(run, f, nil)
  return require("sluice.tools").flow_dot(run)
end
function Flow:graph() return flow.graph(self) end

require("sluice.flow_run")   -- adds the terminal methods to Flow

flow.Flow = Flow
flow.is_flow = is_flow

return flow
