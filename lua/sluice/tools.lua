-- sluice.tools: looking at a running program. sluice.stats() lists every
-- live stage with its counters; flow:graph() writes the topology a flow
-- would run as Graphviz DOT, from the planner's dry run (the plan
-- flow:explain() shows).
local sluice = require("sluice")

local M = {}

-- Places of the stages started flows track: handle id -> {label, layer,
-- partition, ups = {handle id, ...}, edge = text}. Filled by the planner
-- (sluice.flow_plan's track); entries of stopped stages are dropped when
-- they are read.
M.places = {}

local TYPES = { producer = true, producer_consumer = true, consumer = true }

--- sluice.stats() -> one table per live stage, ordered by stage id.
function M.stats()
  if not sluice._is_main() then
    error("sluice.stats: only the main thread may read other stages' stats (inside a callback, use sluice.self():stats())", 2)
  end
  local out = {}
  for _, h in ipairs(sluice._live()) do
    local ok, st = pcall(h.stats, h)
    if ok then
      local id = sluice._handle_id(h)
      local place = M.places[id]
      out[#out + 1] = { id = id, stage = h, name = st.name or (place and place.label) or ("stage " .. id),
        type = st.type, worker = st.worker, events_in = st.events_in, events_out = st.events_out,
        demand = st.demand, buffered = st.buffered, late = st.late }
    end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  for id in pairs(M.places) do
    local alive = false
    for _, s in ipairs(out) do if s.id == id then alive = true; break end end
    if not alive then M.places[id] = nil end
  end
  return out
end

-- DOT ---------------------------------------------------------------------------------------

local function q(s) return '"' .. tostring(s):gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"' end

-- The DOT text of a flow's dry run (sluice.flow_plan's record).
function M.flow_dot(run)
  local lines = { "digraph sluice {", "  rankdir=LR;", "  node [shape=box];" }
  local ids, edges = {}, {}
  local SourceStage = require("sluice.flow_source")
  for _, entry in ipairs(run.dry) do
    local names = {}
    if entry.what == "source" then
      names[1] = ("source%d"):format(entry.number)
      lines[#lines + 1] = ("  %s [label=%s];"):format(names[1], q(("source %d\nproducer"):format(entry.number)))
    else
      local n = entry.cfgs and #entry.cfgs or entry.n
      local kind = entry.spec == SourceStage and "split source" or entry.what == "through" and "through" or "layer"
      lines[#lines + 1] = ("  subgraph cluster_layer%d {"):format(entry.number)
      lines[#lines + 1] = ("    label=%s;"):format(q(("layer %d (%s)"):format(entry.number, kind)))
      for i = 1, n do
        names[i] = ("layer%d_stage%d"):format(entry.number, i)
        local worker = entry.what == "through" and "" or ("\nworker %d"):format((i - 1) % sluice.workers() + 1)
        lines[#lines + 1] = ("    %s [label=%s];"):format(names[i], q(("layer %d stage %d%s"):format(entry.number, i, worker)))
      end
      lines[#lines + 1] = "  }"
      -- ups: the outputs of the entries before, in order
      local seen = {}
      for _, up in ipairs(entry.ups or {}) do
        local from = up.stage.dry
        seen[from] = (seen[from] or 0) + 1
        local src_name = ids[from][seen[from]]
        local disp = from.dispatcher
        for i = 1, n do
          local label
          if disp and disp.kind == "partition" then label = ("partition %d"):format(i) else label = "demand" end
          if up.side then label = label .. (up.side == 1 and ", left" or ", right") end
          edges[#edges + 1] = ("  %s -> %s [label=%s];"):format(src_name, names[i], q(label))
        end
      end
    end
    ids[entry] = names
  end
  for _, e in ipairs(edges) do lines[#lines + 1] = e end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

return M
