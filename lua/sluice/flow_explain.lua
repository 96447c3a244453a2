-- sluice.flow_explain: flow:explain() and sluice.flow.explain(f), the
-- plan of a flow as text. The planner (sluice.flow_plan) materialises the
-- flow in a dry run, taking every decision it takes for a real one
-- (layers, split sources, combining, dispatchers) but starting nothing,
-- and records what it would start; this module writes that record out.
-- The reasons for combining or not come from the planner's own combining.
local sluice = require("sluice")
local plan = require("sluice.flow_plan")
local SourceStage = require("sluice.flow_source")
local MergeStage = require("sluice.flow_merge")
local window = require("sluice.flow_window")

local inspect = sluice.inspect

local M = {}

local function plural(n, one, many) return ("%d %s"):format(n, n == 1 and one or many) end

-- What an enumerable is, as a source.
local function enum_text(e)
  if type(e) == "function" then return "an iterator function" end
  local kind = type(e) == "table" and e.__sluice_enum
  if kind == "range" then
    local last = e.last == math.huge and "math.huge" or e.last == -math.huge and "-math.huge" or tostring(e.last)
    return ("sluice.range(%d, %s%s)"):format(e.first, last, e.step ~= 1 and (", " .. e.step) or "")
  elseif kind == "lines" or kind == "words" then
    return ("sluice.%s(%q)"):format(kind, e.path)
  elseif kind == "jsonl" then
    return ("sluice.jsonl(%q%s)"):format(e.path, e.bad == "skip" and ', {bad = "skip"}' or "")
  elseif kind then
    return "a " .. tostring(kind)
  end
  return "an array of " .. plural(#e, "event", "events")
end

local function source_text(entry)
  local src = entry.f.src
  if entry.redis then
    return ("the partition stream %s, read through the group %s (partition across processes)")
      :format(entry.redis, src.redis.stream)
  end
  if src.kind == "enumerables" then
    return ("%s (from_enumerable), 1 producer stage"):format(enum_text(src.enums[entry.item]))
  elseif src.kind == "specs" then
    return "a stage the flow starts (from_specs)"
  end
  return "a producer stage you started (from_stages)"
end

-- "source 1", "layers 2, 3": where a layer's events come from.
local function from_text(ups)
  local sources, layers, seen = {}, {}, {}
  for _, up in ipairs(ups) do
    local e = up.stage.dry
    if not seen[e] then
      seen[e] = true
      local list = e.what == "source" and sources or layers
      list[#list + 1] = tostring(e.number)
    end
  end
  local parts = {}
  if #sources > 0 then parts[#parts + 1] = (#sources == 1 and "source " or "sources ") .. table.concat(sources, ", ") end
  if #layers > 0 then parts[#parts + 1] = (#layers == 1 and "layer " or "layers ") .. table.concat(layers, ", ") end
  return table.concat(parts, " and ")
end

local function key_text(key)
  if key == nil then return "the whole event" end
  if type(key) == "function" then return "a key function" end
  if key.index then return ("key {index = %d}"):format(key.index) end
  return ("key {field = %q}"):format(key.field)
end

-- How the events of a layer of n stages reach it from the one(s) before.
local function hop_text(src, n)
  if src.redis then
    local r = src.redis
    return ("a partition across processes by %s: Redis streams %s:1..%d, this process (%d of %d) reads "
      .. "its own"):format(src.hash and "a hash function" or key_text(src.key), r.stream, r.partitions,
                           r.process, r.processes)
  end
  if src.dispatch == "partition" then
    if src.hash then return "partition by a hash function" end
    if n == 1 then return "partition into 1 stage (no hashing)" end
    return "partition by " .. key_text(src.key)
  end
  return "shuffle or merge (by demand)"
end

local function window_text(w)
  local t = w.type
  local s
  if t == "count" then s = ("count of %d events"):format(w.count)
  elseif t == "fixed" then s = ("fixed, %d ms"):format(w.size_ms)
  elseif t == "periodic" then s = ("periodic, every %d ms"):format(w.size_ms)
  elseif t == "session" then s = ("session, gap %d ms"):format(w.size_ms)
  elseif t == "sliding" then s = ("sliding, %d ms every %d ms"):format(w.size_ms, w.every_ms)
  else s = t end
  if w.lateness_ms then s = s .. (", allowed lateness %d ms"):format(w.lateness_ms) end
  if w.every_n then s = s .. (", trigger every %d events"):format(w.every_n) end
  if w.periodically_ms then s = s .. (", trigger every %d ms"):format(w.periodically_ms) end
  if w.custom then s = s .. ", custom trigger" end
  return s
end

local function reducer_name(red)
  if red.name then return red.name end
  if red.count then return "reduce (a count: merges its counts, as frequencies)" end
  if red.kind == "reduce" and red.merge then return red.keyed and "reduce (merge, keyed)" or "reduce (merge)" end
  return red.kind
end

local function ops_text(f)
  local names = {}
  if f.batch_fn then names[1] = "map_batch" end
  for _, op in ipairs(f.ops) do names[#names + 1] = op.op end
  return table.concat(names, ", ")
end

-- The combining decision for the reducing layer of f, of n stages: what
-- the planner's combining returns.
local function combining_text(f, n, comb, why, from)
  if comb then
    if comb.keyed then
      return ("keyed: each stage of %s reduces into one accumulator and sends it cut by key"):format(from)
    end
    if comb.win then
      return ("per partition and window: each stage of %s keeps one accumulator per partition for each "
        .. "run of events of one window and sends them after each batch%s"):format(from, why and (" (" .. why .. ")") or "")
    end
    return ("per partition: each stage of %s keeps one accumulator per partition and sends them%s")
      :format(from, why and (" (" .. why .. ")") or "")
  end
  return "none (" .. why .. ")"
end

-- Whether f's reduce would combine if it had a merge (the note of explain).
local function lacks_merge(f, n)
  local red = f.red
  if not red or red.kind ~= "reduce" or red.merge then return false end
  local g = {}
  for k, v in pairs(f) do g[k] = v end
  g.red = { kind = "reduce", acc = red.acc, f = red.f, merge = red.f }
  return plan.combining(g, n) ~= nil
end

local function layer_lines(out, entry, downstream, notes)
  local cfg, f = entry.cfgs[1], entry.f
  local n = #entry.cfgs
  local function w(s) out[#out + 1] = "  " .. s end
  out[#out + 1] = ("layer %d: %s"):format(entry.number, plural(n, "stage", "stages"))
  local src = f.src
  if entry.spec == SourceStage then
    w(("input: %s, read by the stages themselves (split source)"):format(enum_text(src.enums[1])))
  elseif entry.spec == MergeStage then
    if src.kind == "departition" then
      w(("input: %s, departition (merges the partitions' states)"):format(from_text(entry.ups)))
    else
      w(("input: %s, take_sort %d (each partition keeps its %d smallest; this stage merges them)")
        :format(from_text(entry.ups), src.n, src.n))
    end
  elseif src.kind == "join" then
    local left, right = {}, {}
    for _, up in ipairs(entry.ups) do
      if up.side == 1 then left[#left + 1] = up else right[#right + 1] = up end
    end
    local how = n == 1 and "" or ", partitioned by its key"
    w(("input: %s %q of %s (left%s) and %s (right%s)"):format(src.window and "window_join" or "bounded_join",
      src.mode, from_text(left), how, from_text(right), how))
  elseif src.kind == "flows" then
    local s = ("input: %s through %s"):format(from_text(entry.ups), hop_text(src, n))
    if cfg.merging then s = s .. ": only partial accumulators cross" end
    w(s)
  elseif src.kind == "departition" or src.kind == "take_sort" then
    w(("input: %s (the %s stage)"):format(from_text(entry.ups), src.kind))
  else
    w(("input: %s (by demand)"):format(from_text(entry.ups)))
  end
  if window.needed(cfg.window) then
    w("window: " .. window_text(cfg.window))
    if window.events_unread(cfg) then
      w("events: the window reads their times from their bytes; the reducer reads no event, so they are not decoded")
    elseif window.raw_input(cfg) then
      w("events: the window reads their times from their bytes, then decodes each window's run")
    end
  end
  if entry.spec ~= MergeStage then
    local ops = ops_text(f)
    if ops ~= "" then
      w(("operations: %s%s"):format(ops, cfg.merging and " (run in the layer before, by combining)" or ""))
    end
    if f.opts.on_init then w("on_init: yes") end
  end
  local down = downstream[entry]
  if cfg.comb and down then
    w(("combining for layer %d: runs its operations and reducer here (%s)")
      :format(down.number, cfg.comb_acc and "keyed" or cfg.comb_win and "per partition and window" or "per partition"))
  end
  if f.red and entry.spec ~= MergeStage then
    w("reducer: " .. reducer_name(f.red))
    if f.src.dispatch == "partition" or f.red.kind == "reduce" then
      local comb, why = plan.combining(f, n)
      if comb or why then w("combining: " .. combining_text(f, n, comb, why, from_text(entry.ups))) end
    end
    if lacks_merge(f, n) then notes[#notes + 1] = entry.number end
    if f.trig then w("emit: on_trigger")
    else w("emit: " .. (f.emit_mode or "events")) end
  end
end

-- The plan of flow f, as lines of text (no trailing newline).
function M.explain(f)
  local run = plan.dry_run()
  plan.materialize(run, f, nil)
  -- which entry each one feeds
  local downstream = {}
  for _, entry in ipairs(run.dry) do
    for _, up in ipairs(entry.ups or {}) do downstream[up.stage.dry] = entry end
  end
  local out, notes = {}, {}
  for _, entry in ipairs(run.dry) do
    if entry.what == "source" then
      out[#out + 1] = ("source %d: %s"):format(entry.number, source_text(entry))
    elseif entry.what == "through" then
      local src = entry.f.src
      out[#out + 1] = ("layer %d: %s"):format(entry.number, plural(entry.n, "stage", "stages"))
      out[#out + 1] = ("  input: %s, %s"):format(from_text(entry.ups),
        src.stages and "through_stages (your producer_consumers)" or "through_specs (producer_consumers the flow starts)")
    else
      layer_lines(out, entry, downstream, notes)
    end
  end
  if #notes > 0 then
    local which = #notes == 1 and ("layer %d reduces"):format(notes[1])
      or ("layers %s reduce"):format(table.concat(notes, ", "))
    out[#out + 1] = ("note: %s after a partition without a merge, so every event crosses the partition; "
      .. "use reduce_by_key, frequencies or frequencies_by, or give the reduce a merge "
      .. "(reduce(acc_fun, fun, {merge = m})) to combine"):format(which)
  end
  return table.concat(out, "\n")
end

return M
