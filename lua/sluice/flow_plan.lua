-- sluice.flow_plan: the planner. materialize turns a flow record (built by
-- sluice.flow) into running stages, last layer first: each layer's stages
-- are started with the dispatcher that the layer after it needs, and
-- subscribe to the outputs of the layer before. A layer is LayerStage
-- (sluice.flow_layer) stages, SourceStage (sluice.flow_source) stages for
-- a split source, or one MergeStage (sluice.flow_merge) for departition
-- and take_sort; its configuration (cfg) carries the fused loop compiled
-- by sluice.flow_codegen. The run record it fills (new_run, track) is what
-- the terminal methods (sluice.flow_run) start, wait for and stop.
local sluice = require("sluice")
local check = require("sluice.flow_check")
local compile = require("sluice.flow_codegen").compile
local LayerStage = require("sluice.flow_layer")
local SourceStage = require("sluice.flow_source")
local MergeStage = require("sluice.flow_merge")
local window = require("sluice.flow_window")

local inspect = sluice.inspect
local split_entry = check.split_entry
local splittable, split_plan = SourceStage.splittable, SourceStage.split_plan

local M = {}

local next_flow_id = 0

-- Running state of one materialisation: every stage it started or uses
-- (with its place in the flow, for errors and stats), the stages it owns
-- (stopped with the flow) and the sources waiting for the go.
local function new_run()
  next_flow_id = next_flow_id + 1
  return { id = next_flow_id, stages = {}, owned = {}, layers = 0, sources = 0, paused = {}, progress = {} }
end

-- A dry run (sluice.flow_explain): materialize takes every decision it
-- takes for a real run but starts nothing; run.dry records what it would
-- start, in order: {what = "source", number, f, dispatcher} and
-- {what = "layer", number, spec, cfgs, ups, dispatcher, f} entries (a
-- through layer: {what = "through", number, n, ups, f}). The outputs it
-- hands on are {stage = {dry = the entry}}.
local function dry_run()
  return { id = 0, stages = {}, owned = {}, layers = 0, sources = 0, paused = {}, dry = {} }
end

local function record(run, entry)
  run.dry[#run.dry + 1] = entry
  return entry
end

local function track(run, stage, label, layer, partition, owned)
  run.stages[#run.stages + 1] = { stage = stage, label = label, layer = layer, partition = partition,
                                  owned = owned ~= false }
  if owned ~= false then run.owned[#run.owned + 1] = stage end
  -- sluice.stats() names the stage after its place in the flow
  require("sluice.tools").places[sluice._handle_id(stage)] = { label = label, layer = layer, partition = partition }
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
local function start_layer(run, spec, cfgs, ups, dispatcher, layer_sub, partitioned, f)
  run.layers = run.layers + 1
  local layer = run.layers
  local n = #cfgs
  local outs = {}
  if run.dry then
    local entry = record(run, { what = "layer", number = layer, spec = spec, cfgs = cfgs, ups = ups,
                                dispatcher = dispatcher, f = f })
    for i = 1, n do outs[i] = { stage = { dry = entry } } end
    return outs
  end
  for i = 1, n do
    local subs = {}
    -- ups.one_each: stage i reads ups[i] alone (a partition across processes)
    for j, up in ipairs(ups.one_each and { ups[i] } or ups) do
      subs[j] = subscription(up, layer_sub, { partition = partitioned and i or nil, side = up.side })
    end
    local cfg = cfgs[i]
    cfg.producers = #subs
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
    local cfg = { ops_src = src, F = F, red = f.red, trig = f.trig, emit_mode = f.emit_mode, window = f.opts.window,
                  batch_fn = f.batch_fn, on_init = f.opts.on_init, buffer_size = f.opts.buffer_size,
                  buffer_keep = f.opts.buffer_keep, merging = merging or nil, nops = #f.ops }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    if comb then   -- the stages need only the partition count (and a keyed one, acc_fun)
      cfg.comb, cfg.comb_acc = comb.n, comb.keyed and comb.red.acc or nil
      cfg.comb_win = comb.win and true or nil
    end
    cfgs[i] = cfg
  end
  return cfgs
end

-- A window other than the plain global one needs a reducing operation in
-- its layer (or a join: a window join's windows bound its matches).
local function check_window(f)
  local w = f.opts.window
  if w == nil or not window.needed(w) then return end
  if not has_work(f) and f.src.kind ~= "join" then
    error("sluice.flow: a window was set but no computation is happening on this layer", 0)
  end
  if not f.red and f.src.kind ~= "join" then
    error(("sluice.flow: a %s window needs a reducing operation in its layer (reduce, emit_and_reduce, "
      .. "group_by, group_by_key, uniq or uniq_by)"):format(w.type), 0)
  end
end

-- Starts the source producers of f with the given dispatcher; returns
-- them as outputs carrying the source's subscription options.
local function start_sources(run, f, dispatcher)
  local src = f.src
  local sub = sub_opts_of(f.opts)
  local outs = {}
  if run.dry then
    for i = 1, #(src.enums or src.specs or src.stages) do
      run.sources = run.sources + 1
      outs[i] = { stage = { dry = record(run, { what = "source", number = run.sources, f = f, item = i,
                                                dispatcher = dispatcher }) } }
    end
    return outs
  end
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
-- The second result says why (sluice.flow_explain shows it): why there is
-- no combining, or why a combining that is not keyed is not.
local function combining(f, n)
  local red, src = f.red, f.src
  if not red then return nil end
  if src.redis then return nil, "the partition is across processes (redis): each process reduces its partitions" end
  if red.kind ~= "reduce" then return nil, "only a reduce with a merge combines" end
  if not red.merge then return nil, "the reduce has no merge" end
  -- a plain count's events must be what crossed the partition: what an
  -- operation after it returns (a table it keeps, say) is a key by
  -- identity in the stage that runs it
  if red.count and #f.ops > 0 then
    return nil, "a plain count combines only with nothing between the partition and the reduce"
  end
  if src.dispatch ~= "partition" then
    return nil, src.dispatch and "it follows a shuffle or merge, not a partition" or "it does not follow a partition"
  end
  -- fixed windows combine per window: the stages before the partition
  -- send a partial accumulator per run of events of one window
  local w, win = f.opts.window, nil
  if window.needed(w) then
    if w.type ~= "fixed" or w.every_n or w.custom then
      return nil, "only fixed windows without trigger_every or a custom trigger combine"
    end
    win = { size = w.size_ms, by = w.by }
  end
  if f.batch_fn or f.opts.on_init then return nil, "its layer has map_batch or on_init" end
  for _, op in ipairs(f.ops) do
    if op.op == "uniq" or op.op == "uniq_by" then return nil, "its layer has uniq or uniq_by" end
  end
  for _, g in ipairs(src.flows) do
    if g.red then return nil, "a flow feeding the partition has a reduce in its last layer" end
  end
  -- keyed: the reducer sees the events the partition keys (no operations
  -- between), and keys come from the key spec, not from a hash function.
  -- The combiners (reduce_by_key, frequencies...) are keyed when the
  -- partition's key is theirs (red.keyed_by), or there is one partition.
  local keyed, why = red.keyed, nil
  local by = red.keyed_by
  if by ~= nil then
    local k = src.key
    keyed = n == 1 and not src.hash
      or (by == "pair" and type(k) == "table" and k.index == 1)
      or (by == "event" and k == nil)
      or (k ~= nil and k == by)
    if not keyed then
      why = by == "pair" and "keyed needs partition({key = {index = 1}}), the pair's key"
        or by == "event" and "keyed needs partition() with no key: the event is the key"
        or ("keyed needs a partition by the same key function as " .. red.name)
    end
  end
  if keyed and win then keyed, why = false, "keyed does not apply with a window" end
  if keyed and #f.ops > 0 then keyed, why = false, "keyed needs nothing between the partition and the reduce" end
  if keyed and src.hash then keyed, why = false, "keyed needs a partition without a hash function" end
  return { n = n, key = src.key, hash = src.hash, ops = f.ops, red = red, keyed = keyed or nil, win = win }, why
end

-- Sends a combining layer's {partition, accumulator} pairs to their partition.
local function combined_dispatcher(n)
  if n == 1 then return demand_dispatcher() end
  return sluice.dispatcher.partition({ partitions = n, hash = function(e) return e[1] end })
end

local materialize

-- A partition across processes (partition({redis = r}), reference §13.5):
-- the flows before it write each event to the stream <r.stream>:<p>
-- (sluice.redis_flow), and this process's layer has one stage per
-- partition it owns (p with (p - 1) % processes + 1 == process), each
-- reading its partition's stream through a source of its own (group
-- r.stream, consumer "part-<p>", so that a restarted owner gets its
-- pending entries back), which ends once every writer's end marker came.
local function materialize_redis(run, f, dispatcher, extra, layer_sub)
  local src, r = f.src, f.src.redis
  local repart = { url = r.url, stream = r.stream, partitions = r.partitions, process = r.process,
                   processes = r.processes, key = src.key, hash = src.hash, retry_ms = 60000, whole = true }
  local writers = {}
  for _, g in ipairs(src.flows) do
    for _, o in ipairs(materialize(run, g, nil, { repart = repart })) do writers[#writers + 1] = o end
  end
  -- the writers emit nothing, but a producer_consumer takes input only
  -- while it has demand to serve: a consumer of theirs gives it
  if not run.dry then
    local subs = {}
    for i, up in ipairs(writers) do subs[i] = subscription(up) end
    local drain = sluice.start(require("sluice.flow_error").Drain, nil, { subscribe_to = subs })
    track(run, drain, ("flow %d partition writers' consumer"):format(run.id), run.layers, 1)
  end
  local ups = { one_each = true }
  local parts = {}
  for p = r.process, r.partitions, r.processes do parts[#parts + 1] = p end
  for i, p in ipairs(parts) do
    run.sources = run.sources + 1
    if run.dry then
      ups[i] = { stage = { dry = record(run, { what = "source", number = run.sources, f = f, item = i,
                                               redis = ("%s:%d"):format(r.stream, p) }) } }
    else
      local s = require("sluice.redis").source({ url = r.url, stream = ("%s:%d"):format(r.stream, p),
        group = r.stream, consumer = ("part-%d"):format(p), _ends = r.processes, demand = "accumulate" })
      run.paused[#run.paused + 1] = s
      ups[i] = { stage = track(run, s, ("flow %d source %d"):format(run.id, run.sources), 0, run.sources) }
    end
  end
  local cfgs = layer_cfgs(f, #parts, extra)
  for _, cfg in ipairs(cfgs) do cfg.unwrap = true end   -- each event is its entry's field v
  return start_layer(run, LayerStage, cfgs, ups, dispatcher, layer_sub, false, f)
end

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
      -- (with a window, the loop runs over each window's run of numbers)
      local range_src = whole.__sluice_enum == "range"
        and (compile(f.ops, f.red, "range", extra and extra.comb, copies(extra))) or nil
      local plan = split_plan(whole, n)
      if not run.dry then   -- the progress line's counters (sluice.tools)
        local entry = require("sluice.tools").split_counters(whole, plan)
        if entry then run.progress[#run.progress + 1] = entry end
      end
      for i = 1, n do
        cfgs[i].plan, cfgs[i].range_src = plan, range_src
        -- a layer stage keeps what it made beyond the demand (at most one
        -- chunk's output), as a producer_consumer does
        cfgs[i].buffer_size = cfgs[i].buffer_size or math.huge
      end
      local outs = start_layer(run, SourceStage, cfgs, {}, dispatcher, layer_sub, false, f)
      -- paused like any source until every consumer has subscribed
      for _, o in ipairs(run.dry and {} or outs) do
        o.stage:demand("accumulate")
        run.paused[#run.paused + 1] = o.stage
      end
      return outs
    end
    ups = start_sources(run, f, demand_dispatcher())
  elseif src.kind == "flows" and src.redis then
    return materialize_redis(run, f, dispatcher, extra, layer_sub)
  elseif src.kind == "flows" then
    local comb = combining(f, n)
    local updisp = comb and combined_dispatcher(n) or dispatcher_for(src, n)
    ups = {}
    for _, g in ipairs(src.flows) do
      for _, s in ipairs(materialize(run, g, updisp, comb and { comb = comb } or nil)) do ups[#ups + 1] = s end
    end
    partitioned = updisp.kind == "partition"
    if comb then
      return start_layer(run, LayerStage, layer_cfgs(f, n, extra, true), ups, dispatcher, layer_sub, partitioned, f)
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
    return start_layer(run, LayerStage, cfgs, ups, dispatcher, layer_sub, partitioned, f)
  elseif src.kind == "departition" or src.kind == "take_sort" then
    local tag = { tag = src.kind, n = src.n, less = src.less }
    local parts = materialize(run, src.flow, demand_dispatcher(), tag)
    -- the merging stage drops its output itself when nothing follows it
    local alone = not has_work(f) and (extra == nil or (extra.discard and not extra.tag))
    local cfg = { kind = src.kind, acc = src.acc, merge = src.merge, done = src.done, n = src.n,
                  less = src.less, discard = alone and extra ~= nil or nil }
    if alone then return start_layer(run, MergeStage, { cfg }, parts, dispatcher, layer_sub, false, f) end
    ups = start_layer(run, MergeStage, { cfg }, parts, demand_dispatcher(), layer_sub, false, f)
  elseif src.kind == "through" then
    local mids = materialize(run, src.flow, demand_dispatcher())
    run.layers = run.layers + 1
    local layer = run.layers
    ups = {}
    if run.dry then
      local n_through = #(src.stages or src.specs)
      local entry = record(run, { what = "through", number = layer, n = n_through, ups = mids, f = f })
      for i = 1, n_through do ups[i] = { stage = { dry = entry } } end
    end
    for i, entry in ipairs(run.dry and {} or src.stages or src.specs) do
      local label = ("flow %d layer %d stage %d"):format(run.id, layer, i)
      local s
      if src.stages then
        local pc, o = split_entry(entry)
        for _, up in ipairs(mids) do
          local ok, err = pcall(sluice.subscribe, pc, up.stage, sub_options(up, nil, o))
          if not ok then   -- named as the user's call, without sluice.subscribe's location
            error(("sluice.flow.through_stages: item %d: %s"):format(i,
              (tostring(err):gsub("^%[sluice[%w_.]*%]:%d+: ", ""):gsub("^sluice%.subscribe: ", ""))), 0)
          end
        end
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
  return start_layer(run, LayerStage, layer_cfgs(f, n, extra), ups, dispatcher, layer_sub, partitioned, f)
end

M.new_run, M.track, M.materialize = new_run, track, materialize
M.dry_run, M.combining = dry_run, combining
M.subscription, M.sub_options = subscription, sub_options

return M
