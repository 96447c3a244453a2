-- Flow errors: building errors raised where the method is called (or by
-- the terminal method), and run-time errors that stop the whole flow and
-- are raised by the terminal call with the stage, the operation and the
-- original message; the next flow then runs normally (API.md §4).
local lu = require("luaunit")
local F = sluice.flow

local function sorted(t)
  table.sort(t)
  return t
end

local function ident(x) return x end
local function zero() return 0 end
local function add(x, acc) return acc + x end

-- The message of the error raised by fn(...).
local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  lu.assertFalse(ok, "expected an error")
  return tostring(e)
end

local function assert_starts(s, prefix)
  lu.assertEquals(s:sub(1, #prefix), prefix)
end

-- The flow still works afterwards.
local function assert_healthy()
  lu.assertEquals(sorted(F.from_enumerable(sluice.range(1, 6), { stages = 2 })
    :map(function(x) return x * 2 end):partition({ stages = 2 }):to_list()), { 2, 4, 6, 8, 10, 12 })
end

local THIS = "test_flow_errors.lua:"

TestFlowBuildErrors = {}

function TestFlowBuildErrors:test_two_reduces_in_a_layer()
  local fl = F.from_enumerable({ 1 }):reduce(zero, add)
  local e = err_of(function() local r = fl:reduce(zero, add); return r end)
  assert_starts(e:match("sluice%.flow%..*"), "sluice.flow.reduce: cannot call group_by/reduce/emit_and_reduce on a flow after another group_by/reduce/emit_and_reduce")
  lu.assertStrContains(e, THIS)   -- raised at the caller's line
  lu.assertStrContains(err_of(fl.group_by, fl, ident), "sluice.flow.group_by: cannot call")
  lu.assertStrContains(err_of(fl.group_by_key, fl), "sluice.flow.group_by_key: cannot call")
  lu.assertStrContains(err_of(fl.emit_and_reduce, fl, zero, add), "sluice.flow.emit_and_reduce: cannot call")
  -- a new layer may reduce again
  lu.assertEquals(fl:emit("state"):partition({ stages = 1 }):reduce(zero, add):to_list(), { 1 })
end

function TestFlowBuildErrors:test_per_event_operation_after_a_reduce()
  local fl = F.from_enumerable({ 1 }):group_by_key()
  for _, op in ipairs({ "map", "flat_map", "filter", "reject", "map_values", "each", "uniq_by" }) do
    local e = err_of(fl[op], fl, ident)
    lu.assertStrContains(e, ("sluice.flow.%s: %s cannot be called after group_by/reduce/emit_and_reduce"):format(op, op))
  end
  lu.assertStrContains(err_of(fl.uniq, fl), "sluice.flow.uniq: uniq cannot be called after group_by/reduce/emit_and_reduce")
  lu.assertStrContains(err_of(fl.map_batch, fl, ident), "sluice.flow.map_batch: map_batch can only be called at the beginning of a layer")
end

function TestFlowBuildErrors:test_map_batch_not_first()
  local fl = F.from_enumerable({ 1 }):map(ident)
  local e = err_of(fl.map_batch, fl, ident)
  lu.assertStrContains(e, "sluice.flow.map_batch: map_batch can only be called at the beginning of a layer (before any other operation)")
  local twice = F.from_enumerable({ 1 }):map_batch(ident)
  lu.assertStrContains(err_of(twice.map_batch, twice, ident), "sluice.flow.map_batch: map_batch can only be called at the beginning")
  -- first in the next layer is fine
  lu.assertEquals(fl:partition({ stages = 1 }):map_batch(function(b) return { #b } end):to_list(), { 1 })
end

function TestFlowBuildErrors:test_on_trigger_and_emit_need_a_reduce()
  local fl = F.from_enumerable({ 1 })
  local e = err_of(function() local r = fl:on_trigger(ident); return r end)
  lu.assertStrContains(e, "sluice.flow.on_trigger: on_trigger must be called after a group_by/reduce/emit_and_reduce operation")
  lu.assertStrContains(e, THIS)
  lu.assertStrContains(err_of(fl.emit, fl, "state"), "sluice.flow.emit: emit must be called after a group_by/reduce/emit_and_reduce operation")
  lu.assertStrContains(err_of(fl.departition, fl, zero, add, ident), "sluice.flow.departition: departition must be called after a group_by/reduce/emit_and_reduce operation")
  lu.assertStrContains(err_of(fl.take_sort, fl, 3), "sluice.flow.take_sort: take_sort must be called after a group_by/reduce/emit_and_reduce operation")
  local r = fl:reduce(zero, add)
  local t = r:on_trigger(function(acc) return { acc } end)
  lu.assertStrContains(err_of(t.on_trigger, t, ident), "sluice.flow.on_trigger: on_trigger cannot be called after emit/on_trigger")
  lu.assertStrContains(err_of(t.emit, t, "state"), "sluice.flow.emit: emit cannot be called after emit/on_trigger")
  local s = r:emit("state")
  lu.assertStrContains(err_of(s.on_trigger, s, ident), "sluice.flow.on_trigger: on_trigger cannot be called after emit/on_trigger")
  lu.assertStrContains(err_of(r.emit, r, "all"), 'sluice.flow.emit: mode must be "events", "state" or "nothing", got "all"')
end

-- The message of an error raised by a call made on this file's line
-- (the position is the caller's), without the position.
local function here_err(fn, ...)
  local e = err_of(fn, ...)
  local msg = e:match("^[^:]*" .. THIS:gsub("%p", "%%%0") .. "%d+: (.*)$")
  lu.assertNotNil(msg, "not raised at the caller's line: " .. e)
  return msg
end

function TestFlowBuildErrors:test_stages_below_one()
  -- raised by the method given it, at the caller's line
  lu.assertEquals(here_err(function() local r = F.from_enumerable({ 1 }, { stages = 0 }); return r end),
    "sluice.flow.from_enumerable: stages must be an integer >= 1, got 0")
  local fl = F.from_enumerable({ 1 })
  lu.assertEquals(here_err(function() local r = fl:partition({ stages = -1 }); return r end),
    "sluice.flow.partition: stages must be an integer >= 1, got -1")
  lu.assertEquals(here_err(function() local r = F.partition({ fl }, { stages = 0 }); return r end),
    "sluice.flow.partition: stages must be an integer >= 1, got 0")
  lu.assertEquals(here_err(function() local r = fl:shuffle({ stages = 1.5 }); return r end),
    "sluice.flow.shuffle: stages must be an integer >= 1, got 1.5")
  lu.assertEquals(here_err(function() local r = F.shuffle({ fl }, { stages = 0 }); return r end),
    "sluice.flow.shuffle: stages must be an integer >= 1, got 0")
  lu.assertEquals(here_err(function() local r = F.bounded_join("inner", fl, fl, ident, ident, ident, { stages = "2" }); return r end),
    'sluice.flow.bounded_join: stages must be an integer >= 1, got "2"')
  lu.assertEquals(here_err(function() local r = F.merge({ fl, fl }, { stages = 0 }); return r end),
    "sluice.flow.merge: stages must be an integer >= 1, got 0")
  lu.assertEquals(here_err(function() local r = fl:merge({ stages = -3 }); return r end),
    "sluice.flow.merge: stages must be an integer >= 1, got -3")
  lu.assertEquals(here_err(function() local r = F.from_enumerables({ { 1 } }, { stages = 0 }); return r end),
    "sluice.flow.from_enumerables: stages must be an integer >= 1, got 0")
  lu.assertEquals(here_err(function() local r = F.from_specs({ { {} } }, { stages = {} }); return r end),
    "sluice.flow.from_specs: stages must be an integer >= 1, got {}")
  assert_healthy()
end

function TestFlowBuildErrors:test_demand_options_out_of_range()
  local fl = F.from_enumerable({ 1 })
  local max = "max_demand must be an integer from 1 to 2147483647, got "
  -- demand counts are 32-bit: 2^31 is refused when the method is called
  lu.assertEquals(here_err(function() local r = F.from_enumerable({ 1 }, { max_demand = 1 << 31 }); return r end),
    "sluice.flow.from_enumerable: " .. max .. "2147483648")
  lu.assertEquals(here_err(function() local r = fl:partition({ max_demand = 0 }); return r end),
    "sluice.flow.partition: " .. max .. "0")
  lu.assertEquals(here_err(function() local r = fl:shuffle({ max_demand = 2.5 }); return r end),
    "sluice.flow.shuffle: " .. max .. "2.5")
  lu.assertEquals(here_err(function() local r = F.merge({ fl }, { max_demand = math.maxinteger }); return r end),
    "sluice.flow.merge: " .. max .. "9223372036854775807")
  lu.assertEquals(here_err(function() local r = fl:partition({ max_demand = 10, min_demand = -1 }); return r end),
    "sluice.flow.partition: min_demand must be an integer from 0 to 9, got -1")
  lu.assertEquals(here_err(function() local r = F.from_enumerable({ 1 }, { min_demand = 1000 }); return r end),
    "sluice.flow.from_enumerable: min_demand must be an integer from 0 to 999, got 1000")
  -- the largest max_demand runs
  lu.assertEquals(F.from_enumerable({ 1, 2, 3 }, { stages = 1, max_demand = 0x7fffffff })
    :map(ident):partition({ stages = 1, max_demand = 0x7fffffff, min_demand = 0 }):to_list(), { 1, 2, 3 })
  -- subscription options given with stages ({stage, opts...}) or specs
  -- ({spec, arg, opts}) are checked by the method too
  local p = sluice.from_enumerable({ 1 }, { demand = "accumulate" })
  lu.assertEquals(here_err(function() local r = F.from_stages({ { p, max_demand = 1 << 31 } }); return r end),
    "sluice.flow.from_stages: item 1: " .. max .. "2147483648")
  local PC = { type = "producer_consumer", handle_events = function(e, _, st) return e, st end }
  local C = { type = "consumer", handle_events = function(_, _, st) return {}, st end }
  lu.assertEquals(here_err(function() local r = fl:through_specs({ { PC }, { PC, nil, { max_demand = 0 } } }); return r end),
    "sluice.flow.through_specs: item 2: " .. max .. "0")
  lu.assertEquals(here_err(function() local r = fl:through_specs({ { PC, nil, 5 } }); return r end),
    "sluice.flow.through_specs: item 1: opts must be a table, got 5")
  lu.assertEquals(here_err(function() local r = fl:into_specs({ { C, nil, { min_demand = -1 } } }); return r end),
    "sluice.flow.into_specs: item 1: min_demand must be an integer from 0 to 999, got -1")
  local c = sluice.start(C)
  local pc = sluice.start(PC)
  lu.assertEquals(here_err(function() local r = fl:through_stages({ { pc, max_demand = 1 << 40 } }); return r end),
    "sluice.flow.through_stages: item 1: " .. max .. "1099511627776")
  lu.assertEquals(here_err(function() local r = fl:into_stages({ { c, max_demand = 5, min_demand = 5 } }); return r end),
    "sluice.flow.into_stages: item 1: min_demand must be an integer from 0 to 4, got 5")
  c:stop(); pc:stop(); p:stop()
  assert_healthy()
end

function TestFlowBuildErrors:test_window_on_a_layer_without_computation()
  local other = sluice.window.count(10)
  local fl = F.from_enumerable({ 1, 2 }, { window = other })
  lu.assertEquals(err_of(fl.to_list, fl), "sluice.flow: a window was set but no computation is happening on this layer")
  local p = F.from_enumerable({ 1, 2 }):partition({ stages = 2, window = other })
  lu.assertEquals(err_of(p.run, p), "sluice.flow: a window was set but no computation is happening on this layer")
  local computing = p:map(ident)
  lu.assertEquals(err_of(computing.start, computing),
    "sluice.flow: a count window needs a reducing operation in its layer (reduce, emit_and_reduce, "
    .. "group_by, group_by_key, uniq or uniq_by)")
  -- the global window is fine anywhere
  lu.assertEquals(F.from_enumerable({ 1, 2 }, { stages = 1, window = sluice.window.global() }):to_list(), { 1, 2 })
  assert_healthy()
end

function TestFlowBuildErrors:test_bad_arguments()
  local fl = F.from_enumerable({ 1 })
  lu.assertStrContains(err_of(fl.map, fl, 3), "sluice.flow.map: the mapper must be a function, got number")
  lu.assertStrContains(err_of(fl.reduce, fl, {}, add), "sluice.flow.reduce: the accumulator must be a function, got table")
  lu.assertStrContains(err_of(F.from_enumerable, 42), "sluice.flow.from_enumerable: expected an enumerable, got number")
  lu.assertStrContains(err_of(F.from_enumerable, fl), "sluice.flow.from_enumerable: got a flow; did you mean flow.partition or flow.merge?")
  lu.assertStrContains(err_of(F.from_enumerables, {}), "sluice.flow.from_enumerables: expected a non-empty list of enumerables")
  lu.assertStrContains(err_of(F.from_stages, { 1 }), "sluice.flow.from_stages: item 1 must be a stage or {stage, opts}, got 1")
  lu.assertStrContains(err_of(F.from_specs, { 1 }), "sluice.flow.from_specs: item 1 must be {spec, arg}, got 1")
  lu.assertStrContains(err_of(F.from_enumerable, { 1 }, { stagse = 2 }), 'sluice.flow.from_enumerable: unknown option "stagse"')
  lu.assertStrContains(err_of(F.from_enumerable, { 1 }, { key = ident }), 'sluice.flow.from_enumerable: unknown option "key"')
  lu.assertStrContains(err_of(F.from_enumerable, { 1 }, { max_demand = 0 }),
    "sluice.flow.from_enumerable: max_demand must be an integer from 1 to 2147483647, got 0")
  lu.assertStrContains(err_of(F.from_enumerable, { 1 }, { max_demand = 10, min_demand = 10 }),
    "sluice.flow.from_enumerable: min_demand must be an integer from 0 to 9, got 10")
  lu.assertStrContains(err_of(fl.partition, fl, { key = 3 }),
    "sluice.flow.partition: key must be a function, {index = i} or {field = name}, got 3")
  lu.assertStrContains(err_of(fl.partition, fl, { hash = 3 }), "sluice.flow.partition: hash must be a function, got number")
  lu.assertStrContains(err_of(F.merge, { fl, 3 }), "sluice.flow.merge: item 2 is not a flow (got number)")
  lu.assertStrContains(err_of(F.bounded_join, "outer", fl, fl, ident, ident, ident),
    'sluice.flow.bounded_join: mode must be "inner", "left_outer", "right_outer" or "full_outer", got "outer"')
  lu.assertStrContains(err_of(F.bounded_join, "inner", fl, {}, ident, ident, ident),
    "sluice.flow.bounded_join: right must be a flow, got table")
  local r = fl:reduce(zero, add)
  lu.assertStrContains(err_of(r.take_sort, r, 0), "sluice.flow.take_sort: n must be an integer >= 1, got 0")
  lu.assertStrContains(err_of(fl.into_stages, fl, {}), "sluice.flow.into_stages: expected a non-empty list of consumers")
  lu.assertStrContains(err_of(fl.through_specs, fl, { 3 }), "sluice.flow.through_specs: item 1 must be {spec, arg, opts}, got 3")
  lu.assertStrContains(err_of(F.Flow.to_list, 3), "sluice.flow.to_list: expected a flow, got number")
end

TestFlowRunErrors = {}

-- The message of a flow run's error: "sluice.flow: <where> (<op>): <msg>"
-- and a traceback.
local function run_err(fl, how)
  how = how or "to_list"
  local e
  if how == "stream" then
    e = err_of(function() for _ in fl:stream() do end end)
  elseif how == "start" then
    local h = fl:start()
    e = err_of(h.await, h)
  else
    e = err_of(fl[how], fl)
  end
  lu.assertStrContains(e, "\nstack traceback:\n")
  return e
end

local function assert_flow_error(e, layer, op, msg)
  local pattern = ("^sluice%%.flow: flow %%d+ layer %d stage %%d+ %%(%s%%): "):format(layer, op:gsub("%p", "%%%0"))
  lu.assertNotNil(e:match(pattern), "got: " .. e)
  lu.assertStrContains(e, msg)
end

function TestFlowRunErrors:test_callback_error_in_each_terminal()
  local fl = F.from_enumerable(sluice.range(1, 100), { stages = 2 })
    :map(function(x)
      if x == 50 then error("boom at 50") end
      return x
    end)
  for _, how in ipairs({ "to_list", "run", "stream", "start" }) do
    local e = run_err(fl, how)
    assert_flow_error(e, 1, "map", THIS)
    lu.assertStrContains(e, "boom at 50")
    lu.assertNotStrContains(e, "sluice.stream")
    assert_healthy()
  end
end

-- Events are copied (encoded) as the loop emits them: a nil inside a
-- flat_map's array, and a value that cannot cross, stop the flow with the
-- operation named and no location inside the generated loop.
function TestFlowRunErrors:test_emitted_events_that_cannot_go_out()
  local src = F.from_enumerable(sluice.range(1, 4), { stages = 1 })
  local e = run_err(src:flat_map(function(x) return { x, nil, x } end))
  assert_flow_error(e, 1, "flat_map", "an emitted event is nil")
  lu.assertNil(e:match("^[^\n]*%[flow %d+ layer %d+%]:%d+:"), "got: " .. e)
  e = run_err(src:map(function(x) return { x = x, co = coroutine.create(print) } end))
  lu.assertStrContains(e, "cannot send a thread value (at event.co)")
  lu.assertNil(e:match("^[^\n]*%[flow %d+ layer %d+%]:%d+:"), "got: " .. e)
  assert_healthy()
end

function TestFlowRunErrors:test_errors_name_the_layer_and_operation()
  local base = F.from_enumerable(sluice.range(1, 20), { stages = 2 }):map(ident):partition({ stages = 3 })
  local function bad(x) if x == 7 then error("bad " .. x) end return x end
  assert_flow_error(run_err(base:filter(bad)), 2, "filter", "bad 7")
  assert_flow_error(run_err(base:reject(function(x) bad(x) return false end)), 2, "reject", "bad 7")
  assert_flow_error(run_err(base:flat_map(function(x) return { bad(x) } end)), 2, "flat_map", "bad 7")
  -- an iterator flat_map returned fails while the loop runs it
  local function iter_of(x) return function() bad(x) end end
  assert_flow_error(run_err(base:flat_map(iter_of)), 2, "flat_map", "bad 7")
  -- ... also past the flat_maps written out twice (collected first)
  local deep = base
  for _ = 1, 4 do deep = deep:flat_map(function(x) return { x } end) end
  assert_flow_error(run_err(deep:flat_map(iter_of)), 2, "flat_map", "bad 7")
  -- a generic for inside a reducer is the reducer's
  assert_flow_error(run_err(base:reduce(zero, function(x, a)
    for _ in function() bad(x) end do end
    return a
  end)), 2, "reduce", "bad 7")
  assert_flow_error(run_err(base:each(bad)), 2, "each", "bad 7")
  assert_flow_error(run_err(base:uniq_by(bad)), 2, "uniq_by", "bad 7")
  assert_flow_error(run_err(base:reduce(zero, function(x, a) return a + bad(x) end)), 2, "reduce", "bad 7")
  assert_flow_error(run_err(base:emit_and_reduce(zero, function(x, a) return {}, a + bad(x) end)), 2,
    "emit_and_reduce", "bad 7")
  assert_flow_error(run_err(base:group_by(bad)), 2, "group_by", "bad 7")
  assert_flow_error(run_err(base:group_by(ident, bad)), 2, "group_by", "bad 7")
  assert_flow_error(run_err(base:map(function(x) return { x, x } end):map_values(bad)), 2, "map_values", "bad 7")
  assert_flow_error(run_err(base:map_batch(function(b) error("whole batch") end)), 2, "map_batch", "whole batch")
  assert_flow_error(run_err(base:reduce(zero, add):on_trigger(function() error("trig") end)), 2, "on_trigger", "trig")
  assert_flow_error(run_err(base:reduce(function() error("no acc") end, add)), 2, "accumulator", "no acc")
  assert_flow_error(run_err(base:map(ident):partition({ stages = 1, on_init = function(p)
    error("init " .. p.index)
  end })), 3, "on_init", "init 1")
  assert_healthy()
end

function TestFlowRunErrors:test_nil_and_non_arrays_name_the_operation()
  local base = F.from_enumerable({ 1, 2, 3 }, { stages = 1 })
  assert_flow_error(run_err(base:map(function(x) if x == 2 then return nil end return x end)), 1, "map",
    "map returned nil where an event was expected")
  assert_flow_error(run_err(base:flat_map(function(x) return x end)), 1, "flat_map",
    "flat_map must return an array or an iterator function, got number")
  assert_flow_error(run_err(base:map(function(x) return { x } end):map_values(function() end)), 1, "map_values",
    "map_values returned nil where a value was expected")
  assert_flow_error(run_err(base:emit_and_reduce(zero, function(x, a) return x, a end)), 1, "emit_and_reduce",
    "emit_and_reduce must return an array, got number")
  assert_flow_error(run_err(base:group_by(function() end)), 1, "group_by",
    "group_by returned nil where a key was expected")
  assert_flow_error(run_err(base:map_batch(function() return 5 end)), 1, "map_batch",
    "map_batch must return an array, got number")
  assert_flow_error(run_err(base:reduce(zero, add):on_trigger(function() return "x" end)), 1, "on_trigger",
    "on_trigger must return an array, got string")
  assert_flow_error(run_err(base:uniq_by(function() end)), 1, "uniq_by",
    "uniq_by returned nil where a key was expected")
  assert_healthy()
end

function TestFlowRunErrors:test_nil_accumulators_name_the_operation()
  -- a flow whose reducer returns nil (a forgotten `return acc`) fails
  -- instead of emitting nothing
  local function forgot(x, acc) acc = acc + x end
  local nothing = function() end
  local red_msg = "the reducer returned nil where an accumulator was expected"
  local acc_msg = "acc_fun returned nil where an accumulator was expected"
  local base = F.from_enumerable({ 1, 2, 3 }, { stages = 1 })
  assert_flow_error(run_err(base:reduce(zero, forgot)), 1, "reduce", red_msg)
  assert_flow_error(run_err(base:reduce(zero, forgot):emit("state"), "run"), 1, "reduce", red_msg)
  assert_flow_error(run_err(base:reduce(nothing, add)), 1, "accumulator", acc_msg)
  assert_flow_error(run_err(base:emit_and_reduce(zero, function(x) return { x } end)), 1, "emit_and_reduce", red_msg)
  assert_flow_error(run_err(base:emit_and_reduce(nothing, function(x, a) return { x }, a end)), 1, "accumulator", acc_msg)
  -- after a partition, and over a split range or lines source
  assert_flow_error(run_err(base:map(ident):partition({ stages = 2 }):reduce(zero, forgot), "stream"), 2, "reduce", red_msg)
  assert_flow_error(run_err(F.from_enumerable(sluice.range(1, 100), { stages = 2 }):reduce(zero, forgot)), 1,
    "reduce", red_msg)
  assert_flow_error(run_err(F.from_enumerable(sluice.range(1, 100), { stages = 2 }):map(ident)
    :emit_and_reduce(zero, function() return {} end), "start"), 1, "emit_and_reduce", red_msg)
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write("a\nb\n"); f:close()
  assert_flow_error(run_err(F.from_enumerable(sluice.lines(path), { stages = 2 })
    :reduce(function() return "" end, function() end)), 1, "reduce", red_msg)
  os.remove(path)
  -- a reduce declared mergeable: its reducer runs before the partition,
  -- its merge function after it
  local parted = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):partition({ stages = 2 })
  assert_flow_error(run_err(parted:reduce(zero, forgot, { merge = add })), 1, "reduce", red_msg)
  assert_flow_error(run_err(parted:reduce(zero, add, { merge = forgot })), 2, "reduce merge",
    "the merge function returned nil where an accumulator was expected")
  local e = run_err(parted:reduce(nothing, add, { merge = add }))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer %d stage %d+ %(accumulator%): " .. acc_msg), e)
  local words = F.from_enumerable({ "a", "b", "a" }, { stages = 1 }):partition({ stages = 2 })
  assert_flow_error(run_err(words:reduce(nothing, function(w, acc) acc[w] = 1; return acc end,
    { merge = add, keyed = true })), 1, "accumulator", acc_msg)
  -- departition's accumulator and merge function
  local red = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):partition({ stages = 2 }):reduce(zero, add)
  assert_flow_error(run_err(red:departition(zero, forgot, ident)), 2, "departition merge",
    "the merge function returned nil where an accumulator was expected")
  assert_flow_error(run_err(red:departition(nothing, add, ident)), 2, "accumulator", acc_msg)
  -- false is an accumulator like any other
  lu.assertEquals(base:reduce(function() return false end, function(x, a) return a end):emit("state"):to_list(),
    { false })
  assert_healthy()
end

function TestFlowRunErrors:test_errors_in_joins_departition_and_take_sort()
  local l = F.from_enumerable({ { 1, "a" }, { 2, "b" } }, { stages = 1 })
  local r = F.from_enumerable({ { 1, "x" } }, { stages = 1 })
  local first = function(e) return e[1] end
  assert_flow_error(run_err(F.bounded_join("inner", l, r, first, first, function() error("no join") end, { stages = 1 })),
    1, "bounded_join", "no join")
  assert_flow_error(run_err(F.bounded_join("left_outer", l, r, first, first, function(a, b) if not b then return nil end
    return 1 end, { stages = 1 })), 1, "bounded_join", "the join function returned nil where an event was expected")
  assert_flow_error(run_err(F.bounded_join("inner", l, r, function(e) if e[1] == 2 then error("lk") end return e[1] end,
    first, function() return 1 end, { stages = 1 })), 1, "bounded_join left_key", "lk")
  assert_flow_error(run_err(F.bounded_join("inner", l, r, first, function() return nil end, function() return 1 end,
    { stages = 1 })), 1, "bounded_join right_key", "right_key returned nil where a key was expected")
  local red = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):partition({ stages = 2 }):reduce(zero, add)
  assert_flow_error(run_err(red:departition(zero, function() error("merging") end, ident)), 2,
    "departition merge", "merging")
  assert_flow_error(run_err(red:departition(zero, add, function() error("finishing") end)), 2,
    "departition done", "finishing")
  assert_flow_error(run_err(red:departition(zero, add, function() end)), 2,
    "departition done", "the done function returned nil where an event was expected")
  local lists = F.from_enumerable(sluice.range(1, 10), { stages = 2 }):partition({ stages = 2 })
    :reduce(function() return {} end, function(x, a) a[#a + 1] = x; return a end)
  assert_flow_error(run_err(lists:take_sort(2, function() error("less") end)), 1, "take_sort", "less")
  assert_healthy()
end

function TestFlowRunErrors:test_errors_in_stages_the_flow_uses()
  -- a source spec that fails: named by its place in the flow
  local Failing = {
    type = "producer",
    handle_demand = function() error("source broke") end,
  }
  local e = run_err(F.from_specs({ { Failing } }, { stages = 2 }):map(ident))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ source 1: .*source broke"), e)
  -- a partition hash that fails
  e = run_err(F.from_enumerable({ 1, 2, 3 }, { stages = 1 }):map(ident)
    :partition({ stages = 2, hash = function() error("hashing") end }))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 1 stage 1: .*%(partition hash%).*hashing"), e)
  -- a hand-written producer_consumer placed with through_stages
  local Broken = {
    type = "producer_consumer",
    handle_events = function() error("through broke") end,
  }
  local pc = sluice.start(Broken)
  e = run_err(F.from_enumerable({ 1, 2 }, { stages = 1 }):map(ident):through_stages({ pc }))
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 2 stage 1: .*through broke"), e)
  assert_healthy()
end

function TestFlowRunErrors:test_an_error_stops_every_stage()
  -- an endless producer the flow does not own loses its consumers, and
  -- the flow's own stages are gone
  local Endless = {
    type = "producer",
    init = function() return 1 end,
    handle_demand = function(n, i)
      local out = {}
      for k = 1, n do out[k] = i + k - 1 end
      return out, i + n
    end,
  }
  local user = sluice.start(Endless)
  local h = F.merge({
    F.from_stages({ user }),
    F.from_enumerable(sluice.range(1, math.huge)),
  }, { stages = 2 }):map(function(x) if x == 5000 then error("enough") end return x end):start()
  local e = err_of(h.await, h)
  assert_flow_error(e, 1, "map", "enough")
  local left = h:stats()          -- only the user's producer is left
  lu.assertEquals(#left, 1)
  lu.assertEquals(left[1].layer, 0)
  lu.assertEquals(left[1].type, "producer")
  for _ = 1, 200 do
    if user:stats().consumers == 0 then break end
    sluice.sleep(10)
  end
  lu.assertEquals(user:stats().consumers, 0)
  user:stop()
  assert_healthy()
end

function TestFlowRunErrors:test_init_errors_are_raised_by_the_terminal()
  local fl = F.from_enumerable({ 1 }, { stages = 2, on_init = function() error("cannot start") end })
  local e = err_of(fl.to_list, fl)
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 1 stage 1 %(on_init%): .*cannot start"), e)
  e = err_of(fl.start, fl)
  lu.assertNotNil(e:match("^sluice%.flow: flow %d+ layer 1 stage 1 %(on_init%): .*cannot start"), e)
  assert_healthy()
end

os.exit(lu.LuaUnit.run())
