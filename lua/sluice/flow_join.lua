-- sluice.flow_join: the join of bounded_join and window_join, inside the
-- layer stage (sluice.flow_layer). The planner partitions both sides by
-- their keys into the join layer, whose stages tell the sides apart by the
-- subscription option `side` (1: left, 2: right). join_events runs on each
-- batch before the layer's map_batch and fused loop; join_done gives the
-- unmatched rows of an outer join when the join's window ends (called by
-- sluice.flow_trigger's layer_done).
local E = require("sluice.flow_error")
local codegen = require("sluice.flow_codegen")

local op_error, snapshot = E.op_error, codegen.snapshot

local M = {}

local table_key = codegen.table_key

-- A join key as a table key: tables by content (a box per content, in
-- the stage's st.boxes), integral floats as integers.
local function join_key(k, side, st)
  if k == nil then op_error("bounded_join " .. side, side .. " returned nil where a key was expected") end
  if type(k) == "table" then return table_key(k, st.boxes) end
  return math.tointeger(k) or k
end

-- Symmetric hash join: records each row and emits its matches so far.
local function join_events(st, events, side)
  local cfg = st.cfg
  local join_fn = cfg.join
  local out, n = {}, 0
  local mine, other, key_fn
  if side == 1 then mine, other, key_fn = st.lt, st.rt, cfg.lkey else mine, other, key_fn = st.rt, st.lt, cfg.rkey end
  for i = 1, #events do
    local e = events[i]
    local k
    if side == 1 then
      local left_key_fn = key_fn
      k = join_key(left_key_fn(e), "left_key", st)
    else
      local right_key_fn = key_fn
      k = join_key(right_key_fn(e), "right_key", st)
    end
    local list = mine[k]
    if not list then list = {}; mine[k] = list end
    list[#list + 1] = e
    local matches = other[k]
    if matches then
      for j = 1, #matches do
        local v
        if side == 1 then v = join_fn(e, matches[j]) else v = join_fn(matches[j], e) end
        if v == nil then op_error("bounded_join", "the join function returned nil where an event was expected") end
        if type(v) == "table" then v = snapshot(v) end
        n = n + 1; out[n] = v
      end
    end
  end
  return out
end

-- The unmatched rows at the end of the join's window (outer modes).
local function join_done(st)
  local cfg = st.cfg
  local join_fn = cfg.join
  local out = {}
  local function unmatched(mine, other, left)
    for k, list in pairs(mine) do
      if not other[k] then
        for _, e in ipairs(list) do
          local v
          if left then v = join_fn(e, nil) else v = join_fn(nil, e) end
          if v == nil then op_error("bounded_join", "the join function returned nil where an event was expected") end
          if type(v) == "table" then v = snapshot(v) end
          out[#out + 1] = v
        end
      end
    end
  end
  if cfg.join_mode == "left_outer" or cfg.join_mode == "full_outer" then unmatched(st.lt, st.rt, true) end
  if cfg.join_mode == "right_outer" or cfg.join_mode == "full_outer" then unmatched(st.rt, st.lt, false) end
  st.lt, st.rt, st.boxes = {}, {}, {}
  return out
end


M.join_events, M.join_done = join_events, join_done

return M
