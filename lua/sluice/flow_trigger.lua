-- sluice.flow_trigger: what a layer emits when a window's trigger fires.
-- The layer stage (sluice.flow_layer, and the split sources of
-- sluice.flow_source) keeps its accumulator in st.acc and calls
--   trigger_events(st, window)  the events of one trigger: on_trigger's,
--                               or the accumulator's by the emit rules,
--                               tagged for a departition/take_sort stage;
--                               and on_trigger's new accumulator, if any
--   layer_done(st)              all the layer emits once its upstream ended
--                               (the global window's "done")
-- A departition/take_sort stage (sluice.flow_merge) receives the tagged
-- states {TAG, partition index, window id, state}, and from a windowed
-- layer {TAG, partition index, false, f}: that partition is past every
-- window with id < f (sluice.flow_window).
local sluice = require("sluice")
local E = require("sluice.flow_error")
local join = require("sluice.flow_join")
local new_out = require("sluice.flow_codegen").new_out

local op_error, nilerr = E.op_error, E.nilerr
local join_done = join.join_done

local M = {}

-- The tag of a partition's triggered state sent to a departition or
-- take_sort stage: {TAG, partition index, window id, state} (or a
-- windowed layer's {TAG, partition index, false, frontier}).
local TAG = "__sluice_state"

-- Whether t is a sequence: its keys are exactly 1..#t.
local function is_sequence(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do
    count = count + 1
    if count > n then return false end
  end
  return count == n
end

-- What a trigger emits from an accumulator without on_trigger (API.md §4
-- emit rules). With into (an outbox), a table's pairs go straight into
-- it, with no {k, v} table made per pair, and the list returned is empty.
local PUT_PAIRS, PUT_SPLIT = sluice._put_pairs, sluice._put_split
local function acc_events(cfg, acc, into)
  local mode = cfg.emit_mode or "events"
  if mode == "state" then return { acc } end
  if mode == "nothing" then return {} end
  if type(acc) ~= "table" then return { acc } end
  local out = {}
  -- (group_by and the combiners of sluice.flow emit pairs whatever their keys)
  local red = cfg.red
  if not red.pairs and red.kind ~= "group_by" and red.kind ~= "group_by_key" and is_sequence(acc) then
    for i = 1, #acc do out[i] = acc[i] end
    return out
  end
  if into and getmetatable(acc) == nil then
    PUT_PAIRS(into, acc)
    return out
  end
  for k, v in pairs(acc) do out[#out + 1] = { k, v } end
  return out
end

local function default_less(a, b) return a < b end

local GLOBAL_DONE = { type = "global", id = "global", trigger = "done" }

-- What a trigger emits: on_trigger's events or the accumulator's, tagged
-- for a departition/take_sort downstream. into: the outbox the events go
-- to, where the accumulator's pairs may go straight (acc_events).
local function trigger_events(st, window, into)
  local cfg, acc = st.cfg, st.acc
  local on_trigger_fn = cfg.trig
  local events, new_acc
  if on_trigger_fn then
    local w = { type = window.type, id = window.id, trigger = window.trigger, key = window.key }
    events, new_acc = on_trigger_fn(acc, { index = cfg.index, total = cfg.total }, w)
    if type(events) ~= "table" then nilerr("on_trigger", events) end
  elseif cfg.tag == "departition" then
    -- without on_trigger a departition merges the accumulator itself
    if cfg.emit_mode == "nothing" then return {} end
    return { { TAG, cfg.index, window.id, acc } }
  else
    events = acc_events(cfg, acc, not cfg.tag and into or nil)
  end
  if cfg.tag == "departition" then
    local out = {}
    for i = 1, #events do out[i] = { TAG, cfg.index, window.id, events[i] } end
    return out, new_acc
  elseif cfg.tag == "take_sort" then
    local list = {}
    for i = 1, #events do list[i] = events[i] end
    local less_fn = cfg.less or default_less
    table.sort(list, function(a, b) return (less_fn(a, b)) end)   -- not a tail call: names the operation
    -- (cfg.n + 1 would wrap around for n = math.maxinteger)
    for i = #list, #list > cfg.n and cfg.n + 1 or #list + 1, -1 do list[i] = nil end
    return { { TAG, cfg.index, window.id, list } }, new_acc
  end
  return events, new_acc
end

-- Copies of events a plain count's keyed combining counted (flow.lua's
-- comb_f), with the encoding of the event each was copied from.
M.copied = setmetatable({}, { __mode = "k" })

-- A keyed combining layer's accumulator cut into one table per partition:
-- each key goes where the engine's hash of it sends it (as the key of an
-- event would be sent); a copy goes where its original would have.
local function split_by_key(acc, n)
  if type(acc) ~= "table" then
    op_error("reduce", "a keyed accumulator must be a table, got " .. type(acc))
  end
  local parts, hash, copied, hash_encoded = {}, sluice._hash, M.copied, sluice._hash_encoded
  for k, v in pairs(acc) do
    local orig = copied[k]
    local p = n == 1 and 1 or orig and hash_encoded(orig, n) or hash(k, n)
    local part = parts[p]
    if part == nil then part = {}; parts[p] = part end
    part[k] = v
  end
  return parts
end

-- What a combining layer before a windowed partition has reduced so far
-- goes out: per partition, one {partition, window start, partial
-- accumulator, events} for each run of events of one window, in order.
local function flush_runs(st, out)
  local acc = st.acc
  for p = 1, st.cfg.comb do
    local recs = acc[p]
    if recs then
      for i = 1, #recs do
        local r = recs[i]
        out[#out + 1] = { p, r[1], r[2], r[3] }
      end
    end
  end
  st.acc = {}
end

-- A reduce's end drops its accumulator, often the most its worker holds
-- (a word count's vocabulary); the collector runs only as a state
-- allocates, so at the end of a flow, when the worker allocates no more,
-- that memory stayed taken while the main thread built the results. A
-- full collection after the end frees it (the large blocks go back to
-- the system), when the heap has grown by half since the last one (and
-- by 1 MB): a worker with many stages does not collect once per stage
-- for little. The mark follows the heap down (the collector's own cycles
-- shrink it), so a big flow does not keep later ones from collecting.
-- The slabs the collection emptied then go back to the system
-- (sluice._trim_heap), so the worker's memory shrinks while the main
-- thread builds the results.
local collected_kb = 0
local TRIM = sluice._trim_heap
local function collect_after_end()
  local kb = collectgarbage("count")
  if kb < collected_kb then collected_kb = kb end
  if kb - collected_kb > math.max(1024, collected_kb / 2) then
    collectgarbage()
    TRIM()
    collected_kb = collectgarbage("count")
  end
end

-- The global window's "done": what the layer emits once its upstream
-- ended, appended to out when given.
local function layer_done(st, out)
  local cfg = st.cfg
  out = out or new_out(cfg)
  if cfg.join then
    local rows = join_done(st)
    if st.run then st.acc = st.run(rows, out, st.acc, st.seen)
    else for i = 1, #rows do out[#out + 1] = rows[i] end end
  end
  if cfg.comb_win then
    flush_runs(st, out)
  elseif cfg.comb_acc then
    local acc = st.acc
    st.acc = nil
    -- into an outbox, a table of scalars is cut and encoded in one pass
    -- (no table per partition); anything else is cut here
    if not (type(out) == "userdata" and type(acc) == "table" and getmetatable(acc) == nil
            and PUT_SPLIT(out, acc, cfg.comb)) then
      local parts = split_by_key(acc, cfg.comb)
      acc = nil
      for p = 1, cfg.comb do
        if parts[p] then out[#out + 1] = { p, parts[p] } end
        parts[p] = nil
      end
    end
    acc = nil
    collect_after_end()
  elseif cfg.comb then
    local acc = st.acc
    st.acc = nil
    for p = 1, cfg.comb do
      if acc[p] ~= nil then out[#out + 1] = { p, acc[p] } end
      acc[p] = nil
    end
  elseif cfg.red then
    local events = (trigger_events(st, GLOBAL_DONE, type(out) == "userdata" and out or nil))
    st.acc = nil
    for i = 1, #events do
      out[#out + 1] = events[i]
      events[i] = nil
    end
    collect_after_end()
  end
  -- (the accumulators are dropped as they go out: an outbox holds their
  -- bytes, and the collector can free the tables while the end of the
  -- flow, its busiest time for memory, goes on)
  return out
end

M.TAG, M.GLOBAL_DONE, M.default_less = TAG, GLOBAL_DONE, default_less
M.trigger_events, M.layer_done, M.flush_runs = trigger_events, layer_done, flush_runs

return M
