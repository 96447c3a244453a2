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

-- A stage id's start order: its low 48 bits count up as stages start (the
-- high bits say where it runs).
-- (also the number a stage's handle, its errors and its name show: <stage 3>)
local function started(id) return id & 0xffffffffffff end

-- Every live stage that answers `ask` (its stats, with or without its
-- consumers), in the order they were started: {id, stage, st, name}.
-- Drops the places of stopped stages.
local function live(ask)
  local out = {}
  for _, h in ipairs(sluice._live()) do
    local ok, st = pcall(ask, h)
    if ok then
      local id = sluice._handle_id(h)
      local place = M.places[id]
      out[#out + 1] = { id = id, stage = h, st = st, name = st.name or (place and place.label) or ("stage " .. started(id)) }
    end
  end
  table.sort(out, function(a, b) return started(a.id) < started(b.id) end)
  local alive = {}
  for _, s in ipairs(out) do alive[s.id] = true end
  for id in pairs(M.places) do
    if not alive[id] then M.places[id] = nil end
  end
  return out
end

local function main_only(fn)
  if not sluice._is_main() then
    error(fn .. ": only the main thread may read other stages' stats (inside a callback, use sluice.self():stats())", 3)
  end
end

--- sluice.stats() -> one table per live stage, in the order they started.
function M.stats()
  main_only("sluice.stats")
  local out = {}
  for i, s in ipairs(live(function(h) return h:stats() end)) do
    local st = s.st
    out[i] = { id = s.id, stage = s.stage, name = s.name, type = st.type, worker = st.worker,
      events_in = st.events_in, events_out = st.events_out, demand = st.demand, buffered = st.buffered,
      late = st.late }
  end
  return out
end

-- Progress ------------------------------------------------------------------------------------
--
-- A source of known size counts what it has read in shared counters
-- (sluice._counter, one add per chunk or demand: no message per event);
-- the main thread, while it waits in a flow's terminal call or a stream,
-- reads them and redraws one line on stderr at most every INTERVAL ms.

local INTERVAL = 250

-- Producers of known size: handle id -> {stage, total, done, events}
-- (sluice.from_enumerable registers them). Entries of stopped stages are
-- dropped, and their counters handed back, every PRUNE registrations.
M.sizes = {}
local registered, PRUNE = 0, 64

--- The enumerables that read a file (their __sluice_enum): cut in byte
--- ranges by a split source, counted in bytes by the progress line.
M.FILE_ENUMS = { lines = true, words = true, jsonl = true }

--- The size of an enumerable when it is known: a finite range's count, an
--- array's length, a file's bytes (FILE_ENUMS); else nil.
function M.enum_size(e)
  if type(e) ~= "table" then return nil end
  local kind = e.__sluice_enum
  if kind == "range" then
    if math.type(e.last) ~= "integer" then return nil end
    local span = e.step > 0 and (e.last + 0.0 - e.first) / e.step or (e.first + 0.0 - e.last) / -e.step
    return span < 0 and 0 or math.floor(span) + 1
  elseif M.FILE_ENUMS[kind] then
    local f = io.open(e.path, "rb")
    if not f then return nil end
    local size = f:seek("end")
    f:close()
    if not size or size == 0 then return nil end   -- a pipe, a /proc file: unknown
    return size
  elseif kind == nil then
    return #e
  end
  return nil
end

local function free_counters(entry)
  sluice._counter_free(entry.done)
  if entry.events ~= entry.done then sluice._counter_free(entry.events) end
end
M.free_counters = free_counters

--- Registers a producer of known size (entry: {total, done, events}).
function M.sized(stage, entry)
  registered = registered + 1
  if registered % PRUNE == 0 then
    for id, e in pairs(M.sizes) do
      if not e.stage:alive() then M.sizes[id] = nil; free_counters(e) end
    end
  end
  entry.stage = stage
  M.sizes[sluice._handle_id(stage)] = entry
end

--- The progress entry of a producer handle, or nil.
function M.size_of(stage)
  return type(stage) == "userdata" and M.sizes[sluice._handle_id(stage)] or nil
end

--- Counters for a split source's plan (sluice.flow_plan): sets plan.done
--- and plan.events and returns the progress entry, or nil when the size
--- is not known.
function M.split_counters(e, plan)
  local total = plan.kind == "lines" and plan.size or (plan.kind == "range" and M.enum_size(e))
  if not total then return nil end
  plan.done = sluice._counter()
  plan.events = plan.kind == "lines" and sluice._counter() or plan.done
  return { total = total, done = plan.done, events = plan.events, owned = true }
end

-- "4.2s", "1:05", "1:02:03"
local function clock(ms)
  if ms < 60000 then return ("%.1fs"):format(ms / 1000) end
  local s = ms // 1000
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s // 60 % 60, s % 60) end
  return ("%d:%02d"):format(s // 60, s % 60)
end

local function rate(r)
  if r >= 1e6 then return ("%.1fM"):format(r / 1e6) end
  if r >= 1e4 then return ("%.1fk"):format(r / 1e3) end
  return ("%d"):format(math.floor(r + 0.5))
end

--- The text of the progress line: fraction done (0..1), events read so
--- far, milliseconds since the start.
function M.progress_line(frac, events, elapsed)
  local eta = frac > 0 and clock(math.floor(elapsed * (1 - frac) / frac + 0.5)) or "?"
  local per_s = elapsed > 0 and events * 1000 / elapsed or 0
  return ("sluice: %3d%% | %s events/s | %s elapsed | ETA %s"):format(math.floor(frac * 100), rate(per_s),
    clock(elapsed), eta)
end

--- Whether a progress line is wanted: opt true forces it, false (or
--- SLUICE_PROGRESS=0) turns it off; otherwise when stderr is a terminal.
function M.progress_wanted(opt)
  if opt ~= nil then return opt end
  if os.getenv("SLUICE_PROGRESS") == "0" then return false end
  return sluice._isatty(2)
end

local Progress = {}
Progress.__index = Progress

--- A progress line over sources ({total, done, events} entries), or nil
--- when it is not wanted or nothing has a known size. `start`: the clock
--- reading the elapsed time counts from (default now).
function M.progress(opt, sources, start)
  if #sources == 0 or not M.progress_wanted(opt) then return nil end
  local now = sluice._now_ms()
  return setmetatable({ sources = sources, start = start or now, next = now + INTERVAL }, Progress)
end

--- Redraws the line when INTERVAL ms have passed since the last time.
function Progress:tick()
  local now = sluice._now_ms()
  if now < self.next then return end
  self.next = now + INTERVAL
  local frac, events = 0, 0
  for _, src in ipairs(self.sources) do
    local done = sluice._count(src.done)
    frac = frac + (src.total > 0 and math.min(1, done / src.total) or 1)
    events = events + sluice._count(src.events)
  end
  frac = frac / #self.sources
  io.stderr:write("\r", M.progress_line(frac, events, now - self.start), "\27[K")
  io.stderr:flush()
  self.drawn = true
end

--- Clears the line (if drawn); later ticks draw nothing.
function Progress:done()
  self.next = math.huge
  if self.drawn then
    io.stderr:write("\r\27[K")
    io.stderr:flush()
    self.drawn = false
  end
end

--- Hands back the counters of the split sources among `sources`.
function M.progress_free(sources)
  for _, src in ipairs(sources) do
    if src.owned and not src.freed then src.freed = true; free_counters(src) end
  end
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

--- sluice.graph() -> the live topology as DOT: a node per live stage (in
--- the order they started), an edge per subscription from producer to
--- consumer, labelled with the producer's dispatcher (and partition).
function M.graph()
  main_only("sluice.graph")
  local stages = live(sluice._consumers)
  local node = {}
  local lines = { "digraph sluice {", "  rankdir=LR;", "  node [shape=box];" }
  for i, s in ipairs(stages) do
    node[s.id] = "n" .. i
    local st = s.st
    local where = st.worker == 0 and "main thread" or ("worker %d"):format(st.worker)
    lines[#lines + 1] = ("  n%d [label=%s];"):format(i, q(("%s\n%s, %s"):format(s.name, st.type, where)))
  end
  for i, s in ipairs(stages) do
    for _, c in ipairs(s.st.consumers_of or {}) do
      local to = node[c.consumer]
      if to then
        local label = c.partition and ("partition %d"):format(c.partition) or s.st.dispatcher or "demand"
        lines[#lines + 1] = ("  n%d -> %s [label=%s];"):format(i, to, q(label))
      end
    end
  end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

-- sluice.top() -------------------------------------------------------------------------------

local COLUMNS = { { "name", "name" }, { "type", "type" }, { "worker", "worker" }, { "in", "events_in" },
                  { "out", "events_out" }, { "demand", "demand" }, { "buffered", "buffered" }, { "late", "late" } }

--- The table sluice.top() shows for rows of sluice.stats(): a header, then
--- one line per stage, columns padded to their widest cell (text left,
--- numbers right).
function M.top_text(rows)
  local cells, widths = {}, {}
  for c, col in ipairs(COLUMNS) do widths[c] = #col[1] end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, col in ipairs(COLUMNS) do
      local v = row[col[2]]
      if col[1] == "worker" then v = v == 0 and "main" or v end
      v = tostring(v)
      cells[r][c] = v
      if #v > widths[c] then widths[c] = #v end
    end
  end
  local function line(values)
    local parts = {}
    for c, v in ipairs(values) do
      local fmt = c <= 2 and "%-" .. widths[c] .. "s" or "%" .. widths[c] .. "s"
      parts[c] = fmt:format(v)
    end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  local names = {}
  for c, col in ipairs(COLUMNS) do names[c] = col[1] end
  local out = { ("sluice.top: %d live stage%s"):format(#rows, #rows == 1 and "" or "s"), line(names) }
  for r = 1, #rows do out[#out + 1] = line(cells[r]) end
  return table.concat(out, "\n") .. "\n"
end

--- sluice.top([opts]): sluice.stats() as a table redrawn every opts.ms
--- (default 500) until a key is pressed or Ctrl-C, or opts.times tables
--- were shown; main thread. Without `times`, stdin must be a terminal.
function M.top(opts)
  main_only("sluice.top")
  if opts ~= nil and type(opts) ~= "table" then
    error("sluice.top: opts must be a table, got " .. sluice.inspect(opts), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "ms" and k ~= "times" then error("sluice.top: unknown option " .. sluice.inspect(k), 2) end
  end
  local ms, times = opts.ms or 500, opts.times
  if math.type(ms) ~= "integer" or ms < 10 then
    error("sluice.top: ms must be an integer >= 10, got " .. sluice.inspect(ms), 2)
  end
  if times ~= nil and (math.type(times) ~= "integer" or times < 1) then
    error("sluice.top: times must be an integer >= 1, got " .. sluice.inspect(times), 2)
  end
  local keys = sluice._term(true)
  if not keys and not times then error("sluice.top: stdin must be a terminal (a key press ends it)", 2) end
  local clear = sluice._isatty(1) and "\27[H\27[2J" or ""
  local ok, err = pcall(function()
    local shown = 0
    while true do
      io.write(clear, M.top_text(M.stats()), keys and "(press a key to stop)\n" or "")
      io.flush()
      shown = shown + 1
      if times and shown >= times then return end
      local until_ms = sluice._now_ms() + ms
      repeat
        if keys and sluice._keypress() then return end
        sluice._pump(math.min(50, math.max(0, until_ms - sluice._now_ms())))
      until sluice._now_ms() >= until_ms
    end
  end)
  if keys then sluice._term(false) end
  -- Ctrl-C ends it like a key
  if not ok and not tostring(err):find("interrupted", 1, true) then error(err, 0) end
end

-- sluice --graph FILE ----------------------------------------------------------------------

-- Set by `sluice --graph`: each flow run keeps the live graph taken when
-- its stages have all subscribed (the last one is written when nothing is
-- live at the end of the script).
M.record = false

--- Called by a flow run once its sources are let go.
function M.flow_started()
  if M.record then M.last_flow_graph = M.graph() end
end

local EMPTY = "digraph sluice {\n  rankdir=LR;\n  node [shape=box];\n}\n"

--- Writes the live topology (else the last flow's, when it started) to
--- path, and path's SVG (path without ".dot", plus ".svg") when Graphviz's
--- dot is on the PATH.
function M.write_graph(path)
  local dot = M.graph()
  if dot == EMPTY and M.last_flow_graph then dot = M.last_flow_graph end
  local f, err = io.open(path, "w")
  if not f then error("--graph: " .. err, 0) end
  f:write(dot)
  f:close()
  if os.execute("command -v dot >/dev/null 2>&1") then
    local function sh(x) return "'" .. x:gsub("'", "'\\''") .. "'" end
    local svg = path:gsub("%.dot$", "") .. ".svg"
    if not os.execute(("dot -Tsvg %s -o %s"):format(sh(path), sh(svg))) then
      error("--graph: dot could not write " .. svg, 0)
    end
  end
end

return M
