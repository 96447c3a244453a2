-- sluice.flow_layer: the spec of a Flow layer's stages (LayerStage), as a
-- module. A module crosses between Lua states by its name, so starting a
-- layer's stages (sluice.flow_plan's start_layer) sends
-- "sluice.flow_layer" instead of the spec's callbacks and everything they
-- reach; a worker loads this module, and the ones it requires, once.
--
-- Each stage gets its configuration (cfg, built by the planner) as the
-- argument of init. On each batch it runs the join (sluice.flow_join),
-- map_batch and its fused loop (sluice.flow_codegen); once its last
-- producer ended it emits what sluice.flow_trigger's layer_done gives and
-- finishes. Errors in user functions stop it as sluice.flow_error says.
-- Besides the callbacks the module holds layer_init, the state of a new
-- stage, which the split sources (sluice.flow_source) build on.
local sluice = require("sluice")
local E = require("sluice.flow_error")
local codegen = require("sluice.flow_codegen")
local join = require("sluice.flow_join")
local trigger = require("sluice.flow_trigger")
local window = require("sluice.flow_window")

local nilerr, nilacc, on_error, stop_with = E.nilerr, E.nilacc, E.on_error, E.stop_with
local protected_init, ends_with_upstream = E.protected_init, E.ends_with_upstream
local load_run, new_out = codegen.load_run, codegen.new_out
local join_events = join.join_events
local layer_done, flush_runs = trigger.layer_done, trigger.flush_runs

local LayerStage = { type = "producer_consumer" }

-- The loop of a layer after a combining one: its events are {partition,
-- partial accumulator} pairs, or with a window {partition, window start,
-- partial accumulator, events} (at = 3; the window's run i0..i1).
local function merge_run(reduce_merge_fn, at)
  return function(events, _, acc, _, i0, i1)
    for i = i0 or 1, i1 or #events do
      acc = reduce_merge_fn(events[i][at], acc)
      if acc == nil then nilacc("reduce merge", "the merge function") end
    end
    return acc
  end
end

-- The same for a reducer whose merge adds a partial's pairs into the
-- accumulator one by one (red.merge_pairs: frequencies, frequencies_by,
-- reduce_by_key): the stage takes its events as a raw batch
-- (sluice._raw_events) and each partial's pairs go into acc straight
-- from their bytes, with no table of the partial; one that is not pairs
-- of scalars is decoded and merged as above.
local function raw_merge_run(red)
  local merge, fun, nilfn = red.merge, red.merge_pairs.fun, red.merge_pairs.nilfn
  local MERGE_RAW, RAW_GET = sluice._merge_raw, sluice._raw_get
  return function(events, _, acc)
    for i = 1, #events do
      if not MERGE_RAW(events, i, acc, fun, nilfn) then
        acc = merge(RAW_GET(events, i)[2], acc)
        if acc == nil then nilacc("reduce merge", "the merge function") end
      end
    end
    return acc
  end
end

local function layer_init(cfg)
  local st = { cfg = cfg, left = cfg.producers, ups = {}, seen = {} }
  if cfg.ops_src then st.run = load_run(cfg, cfg.ops_src) end
  local on_init_fn = cfg.on_init
  if on_init_fn then on_init_fn({ index = cfg.index, total = cfg.total }) end
  local red = cfg.red
  if cfg.comb and not cfg.comb_acc then
    st.acc = {}   -- partition -> partial accumulator
  elseif cfg.comb_acc or red then
    -- a keyed combining layer's one accumulator, or the layer's own
    local acc_fn = cfg.comb_acc or red.acc
    if acc_fn then
      st.acc = acc_fn()
      if st.acc == nil then nilacc("accumulator", "acc_fun") end
    else
      st.acc = {}
    end
  end
  if cfg.merging then
    if red.merge_pairs and not window.needed(cfg.window) and not (cfg.unwrap or cfg.join or cfg.batch_fn) then
      sluice._raw_events()
      st.run = raw_merge_run(red)
    else
      st.run = merge_run(red.merge, window.needed(cfg.window) and 3 or 2)
    end
  end
  if cfg.join then st.lt, st.rt, st.boxes = {}, {}, {} end
  if window.needed(cfg.window) then
    window.init(st, cfg)
    if window.raw_input(cfg) then
      sluice._raw_events()
      st.raw = true
      if window.events_unread(cfg) then st.win:skip_events() end
    end
  end
  return st
end

LayerStage.init = protected_init(layer_init)

function LayerStage.handle_subscribe(kind, opts, from, st)
  if kind == "producer" then
    local id = sluice._handle_id(from)
    st.ups[id] = true
    if st.win then window.subscribed(st, id) end
    if opts.side then
      st.sides = st.sides or {}
      st.sides[id] = opts.side
    end
  end
  return "automatic", st
end


-- One batch through the layer: join, map_batch, then the fused loop.
local function layer_events(st, events, from)
  local cfg = st.cfg
  -- read from a partition stream across processes: the entries' ids were
  -- taken for their acknowledgement; the events are their field v
  if cfg.unwrap then
    for i = 1, #events do events[i] = events[i].fields.v end
  end
  -- a windowed layer joins inside each window (sluice.flow_window)
  if st.win then return window.events(st, events, sluice._handle_id(from)) end
  if cfg.join then events = join_events(st, events, st.sides[sluice._handle_id(from)]) end
  local map_batch_fn = cfg.batch_fn
  if map_batch_fn and #events > 0 then
    events = map_batch_fn(events)
    if type(events) ~= "table" then nilerr("map_batch", events) end
  end
  local run = st.run
  if not run then return events end
  local out = new_out(cfg)
  st.acc = run(events, out, st.acc, st.seen)
  if cfg.comb_win then flush_runs(st, out) end
  return out
end

-- flow:into_redis and partition({redis = ...}): the layer writes what it
-- would emit to Redis (sluice.redis_flow), before its callback returns,
-- so a Redis source's entries are acknowledged after their results are
-- written.
local function to_redis(st, out) return require("sluice.redis_flow").write(st, out) end

function LayerStage.handle_events(events, from, st)
  local ok, out = xpcall(layer_events, on_error, st, events, from)
  if ok and (st.cfg.sink or st.cfg.repart) then ok, out = xpcall(to_redis, on_error, st, out) end
  if not ok then
    stop_with(st.cfg.label, out)
    return {}, st
  end
  -- a departition/take_sort downstream takes only the triggers' states
  if st.cfg.discard or (st.cfg.tag and not st.win) then return {}, st end
  return out, st
end

-- Output that a callback other than handle_events returned: written by
-- a layer that writes to Redis (its errors stop the stage like any
-- other); once its input has ended, its end markers follow.
local function ended(st) require("sluice.redis_flow").ended(st) end

-- cb(a, b, st) -> out, st; for handle_cancel (cancel = true) a is the
-- reason: the input has ended once no producer is left and it was normal.
local function sunk(cb, cancel)
  return function(a, b, st)
    local out
    out, st = cb(a, b, st)
    if not (st.cfg.sink or st.cfg.repart) then return out, st end
    local ok, res = xpcall(to_redis, on_error, st, out)
    if ok and cancel and st.left == 0 and sluice._is_normal(a[2]) then ok, res = xpcall(ended, on_error, st) end
    if not ok then stop_with(st.cfg.label, res) end
    return {}, st
  end
end

local global_cancel = ends_with_upstream(layer_done)

-- A producer left: without windows the global window ends with the last
-- one; with windows the machine hears of each (a producer that is done no
-- longer holds the watermark back) and fires what that ends.
local function layer_cancel(reason, from, st)
  if not st.win then return global_cancel(reason, from, st) end
  local id = sluice._handle_id(from)
  if not st.ups[id] then return {}, st end   -- a consumer left
  st.left = st.left - 1
  if not sluice._is_normal(reason[2]) then return {}, st end
  local ok, out = xpcall(window.producer_done, on_error, st, id)
  if not ok then
    stop_with(st.cfg.label, out)
    return {}, st
  end
  if st.left == 0 then sluice.self():finish() end
  if st.cfg.discard then return {}, st end
  return out, st
end

LayerStage.handle_cancel = sunk(layer_cancel, true)

-- stage:send messages: the window machine's timers and {"trigger", name}.
local function layer_info(msg, _, st)
  local ok, out = xpcall(window.message_out, on_error, st, msg)
  if not ok then
    stop_with(st.cfg.label, out)
    return {}, st
  end
  if st.cfg.discard then return {}, st end
  return out, st
end

local info = sunk(layer_info)
function LayerStage.handle_info(msg, st) return info(msg, nil, st) end

LayerStage.layer_init = layer_init   -- (no callback) for sluice.flow_source

return LayerStage
