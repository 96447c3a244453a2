-- sluice.flow_merge: the stage behind departition and take_sort
-- (MergeStage), as a module sent by name like sluice.flow_layer. One stage
-- subscribes to every stage of the layer before it, which sends only the
-- states its triggers give (sluice.flow_trigger's tagged states
-- {TAG, partition index, window id, state}); it merges them per window
-- (departition's merge function, or take_sort's sorted lists) and emits
-- one value per window: as soon as every partition is past the window
-- (a windowed layer's {TAG, partition index, false, f}: every window with
-- id < f is over in that partition), and the rest once its upstream ended.
local E = require("sluice.flow_error")
local LayerStage = require("sluice.flow_layer")
local trigger = require("sluice.flow_trigger")

local op_error, nilacc, on_error, stop_with = E.op_error, E.nilacc, E.on_error, E.stop_with
local ends_with_upstream = E.ends_with_upstream
local default_less = trigger.default_less

-- Lists: stable merge of two lists sorted by less, cut to n items.
local function merge_sorted(a, b, n, less_fn)
  local out, i, j = {}, 1, 1
  local na, nb = #a, #b
  for k = 1, math.min(n, na + nb) do
    if j > nb or (i <= na and not less_fn(b[j], a[i])) then
      out[k] = a[i]; i = i + 1
    else
      out[k] = b[j]; j = j + 1
    end
  end
  return out
end

local MergeStage = { type = "producer_consumer" }

function MergeStage.init(cfg)
  return { cfg = cfg, left = cfg.producers, ups = {}, windows = {}, frontier = {} }
end

-- The value a window gives once merged.
local function window_value(st, id)
  local cfg = st.cfg
  if cfg.kind == "take_sort" then return st.windows[id] end
  local done_fn = cfg.done
  local v = done_fn(st.windows[id], id)
  if v == nil then op_error("departition done", "the done function returned nil where an event was expected") end
  return v
end

MergeStage.handle_subscribe = LayerStage.handle_subscribe

-- Emits, in ascending order, every window below the partitions' lowest
-- frontier (each partition is past it: it has sent all it will for it).
local function emit_passed(st, out)
  local cfg, fr = st.cfg, st.frontier
  local low
  for p = 1, cfg.producers do
    local f = fr[p]
    if f == nil then return end
    if low == nil or f < low then low = f end
  end
  local ids = {}
  for id in pairs(st.windows) do
    if math.type(id) == "integer" and id < low then ids[#ids + 1] = id end
  end
  table.sort(ids)
  for i = 1, #ids do
    local id = ids[i]
    out[#out + 1] = window_value(st, id)
    st.windows[id] = nil
    st.emitted = true
  end
end

-- Merges the tagged states; a windowed layer's partitions also say how
-- far they are past their windows ({TAG, index, false, f}), and a window
-- every partition is past gives its value at once, into out.
local function merge_events(st, events, out)
  local cfg = st.cfg
  local windows = st.windows
  for i = 1, #events do
    local ev = events[i]
    local id, state = ev[3], ev[4]
    if id == false then
      st.frontier[ev[2]] = state
      emit_passed(st, out)
    elseif cfg.kind == "take_sort" then
      local less_fn = cfg.less or default_less
      windows[id] = merge_sorted(windows[id] or {}, state, cfg.n, less_fn)
    else
      local acc = windows[id]
      if acc == nil then
        local acc_fn = cfg.acc
        acc = acc_fn()
        if acc == nil then nilacc("accumulator", "acc_fun") end
      end
      local merge_fn = cfg.merge
      acc = merge_fn(state, acc)
      if acc == nil then nilacc("departition merge", "the merge function") end
      windows[id] = acc
    end
  end
end

function MergeStage.handle_events(events, _, st)
  local out = {}
  local ok, res = xpcall(merge_events, on_error, st, events, out)
  if not ok then
    stop_with(st.cfg.label, res)
    return {}, st
  end
  return out, st
end

-- Window ids in ascending order (numbers before strings).
local function sorted_ids(windows)
  local ids = {}
  for id in pairs(windows) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) == "number"
  end)
  return ids
end

local function merge_done(st)
  local cfg = st.cfg
  local out = {}
  if next(st.windows) == nil and not st.emitted then   -- an empty flow: the global window's value
    if cfg.kind == "take_sort" then
      st.windows.global = {}
    else
      local acc_fn = cfg.acc
      st.windows.global = acc_fn()
      if st.windows.global == nil then nilacc("accumulator", "acc_fun") end
    end
  end
  for _, id in ipairs(sorted_ids(st.windows)) do out[#out + 1] = window_value(st, id) end
  return out
end

MergeStage.handle_cancel = ends_with_upstream(merge_done)

return MergeStage
