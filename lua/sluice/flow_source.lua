-- sluice.flow_source: split sources. The spec of their stages
-- (SourceStage) is this module, sent by name like sluice.flow_layer; a
-- SourceStage is a layer stage (its state is sluice.flow_layer's
-- layer_init, its end sluice.flow_trigger's layer_done) that reads its
-- events itself. The module also holds splittable and split_plan, which
-- the planner (sluice.flow_plan) calls to find a split source and cut it.
--
-- A flow whose only source is a finite sluice.range or a file (sluice.lines,
-- sluice.words, sluice.jsonl) and
-- whose first layer computes something needs no producer stage in front of
-- that layer: its stages read the source themselves and run the fused loop
-- on what they read, as producers. Nothing is encoded or sent for the
-- source. The source is cut into parts (sub-ranges, or the lines that
-- start in a slice of the file's bytes) that the stages claim one at a
-- time from a shared ticket, so a stage whose CPU is slower or busier just
-- reads fewer parts. With stages = 1 the one stage claims them all, in
-- order.

local sluice = require("sluice")
local E = require("sluice.flow_error")
local codegen = require("sluice.flow_codegen")
local LayerStage = require("sluice.flow_layer")
local trigger = require("sluice.flow_trigger")
local window = require("sluice.flow_window")

local nilerr, on_error, stop_with, protected_init = E.nilerr, E.on_error, E.stop_with, E.protected_init
local load_run, snapshot, new_out = codegen.load_run, codegen.snapshot, codegen.new_out
local layer_init = LayerStage.layer_init
local layer_done, flush_runs = trigger.layer_done, trigger.flush_runs

-- Items read per run of the fused loop. handle_demand reads chunks until
-- the demand is met, so small chunks keep its output close to the demand:
-- less is buffered, and the worker turns sooner to the other stages it
-- runs (with 1000-line chunks a 2-worker word count kept 1.25 cores busy;
-- with 64, 1.9).
local SPLIT_CHUNK = 64

-- Parts per stage, and the smallest part worth claiming on its own.
local PARTS_PER_STAGE = 16
local MIN_PART_BYTES = 256 * 1024
local MIN_PART_ITEMS = 16384

-- a // b with a and b read as unsigned 64-bit integers (b ~= 0).
local function udiv(a, b)
  if b < 0 then return math.ult(a, b) and 0 or 1 end   -- b >= 2^63
  if a >= 0 then return a // b end
  local q = ((a >> 1) // b) << 1
  if not math.ult(a - q * b, b) then q = q + 1 end
  return q
end

-- A range cut into parts. A range may hold up to 2^64 numbers (all the
-- integers), more than an integer counts, so the plan works with the
-- index of its last number (count - 1), read as unsigned: the distance
-- from first to last, which wraps around when it is 2^63 or more, is
-- exact as an unsigned number, and so is first + i * step for any index
-- i of the range. Part j (1..parts) holds q numbers, one more for the
-- first r parts.
local function range_plan(e, n)
  local first, last, step = e.first, e.last, e.step
  if (step > 0 and last < first) or (step < 0 and last > first) then
    return { kind = "range", first = first, step = step, parts = 0, ticket = sluice._ticket() }
  end
  local top   -- count - 1
  if step > 0 then top = udiv(last - first, step) else top = udiv(first - last, -step) end
  local cap = n * PARTS_PER_STAGE
  local parts = cap
  if math.ult(top, cap * MIN_PART_ITEMS) then parts = math.max(1, math.min(cap, (top + 1) // MIN_PART_ITEMS)) end
  -- count // parts and count % parts, from those of top
  local q = udiv(top, parts)
  local r = top - q * parts + 1
  if r == parts then q, r = q + 1, 0 end
  return { kind = "range", first = first, step = step, parts = parts, q = q, r = r, ticket = sluice._ticket() }
end

-- How enumerable e is cut for a layer of n stages. A file whose size is
-- unknown (a pipe) or reads as 0 (a file under /proc, an empty file) is
-- read from start to end by one stage: there are no byte offsets to cut
-- it at.
local function split_plan(e, n)
  if e.__sluice_enum == "range" then return range_plan(e, n) end
  -- a sluice.jsonl source is cut as its lines are; the stages decode them
  local json = e.__sluice_enum == "jsonl" and { __sluice_enum = "jsonl", path = e.path, bad = e.bad,
                                                skip_counter = e.skip_counter } or nil
  local file, err = io.open(e.path, "rb")
  if not file then error("sluice." .. e.__sluice_enum .. ": " .. err, 0) end
  local size = file:seek("end")
  file:close()
  -- a sluice.words source is cut as its lines are; the reader cuts words
  local words = e.__sluice_enum == "words"
  if size == nil or size == 0 then
    return { kind = "lines", path = e.path, parts = 1, ticket = sluice._ticket(), json = json, words = words }
  end
  local parts = math.max(1, math.min(n * PARTS_PER_STAGE, size // MIN_PART_BYTES))
  return { kind = "lines", path = e.path, size = size, parts = parts, ticket = sluice._ticket(), json = json,
           words = words }
end

-- Claims the next part of the stage's plan; false once they are all taken.
local function claim(st)
  local plan = st.plan
  local j = sluice._take(plan.ticket)
  local k = plan.parts
  if j > k then return false end
  if plan.kind == "range" then
    -- the index of the part's first number (unsigned: it may pass 2^63)
    local q, r = plan.q, plan.r
    local from = q * (j - 1) + math.min(j - 1, r)
    st.next, st.left = plan.first + from * plan.step, q + (j <= r and 1 or 0)
  elseif plan.size == nil then
    st.reader = sluice._lines(plan.path, 0, math.maxinteger, plan.words)
    st.part_from, st.part_line = 0, 0
  else
    st.part_from, st.part_line = (plan.size * (j - 1)) // k, 0
    st.part_to = (plan.size * j) // k
    st.part_seen = st.part_from   -- bytes of the part counted for the progress line
    st.reader = sluice._lines(plan.path, st.part_from, st.part_to, plan.words)
  end
  st.cur = true
  return true
end

local SourceStage = { type = "producer" }

local function source_init(cfg)
  local st = layer_init(cfg)
  st.plan = cfg.plan
  -- when nothing it makes goes downstream (run, or a departition/take_sort
  -- taking only the final state) the stage reads on whatever the demand
  st.keep = not (cfg.discard or cfg.tag)
  -- what it makes goes to Redis (sluice.redis_flow): not held to the demand
  st.sinks = (cfg.sink or cfg.repart) and true or false
  if cfg.plan.kind == "range" and cfg.range_src then st.run_range = load_run(cfg, cfg.range_src) end
  if window.needed(cfg.window) then
    -- the stage is its window's one producer: it claims parts in order,
    -- so its event times grow as the source's do
    cfg.producers = 1
    window.init(st, cfg)
  end
  return st
end

SourceStage.init = protected_init(source_init)

-- Chunks one callback reads at most. A stage that emits little (a
-- reducing layer emits nothing until the end) would otherwise read its
-- whole input in one callback; after this many chunks it casts itself a
-- note to go on, so that a stop, or the worker's other stages, get their
-- turn in between.
local CHUNKS_PER_CALL = 32
local GO_ON = "__sluice_source_go_on"

-- Reads the next chunk of the current lines part into events; a
-- sluice.jsonl source's lines are decoded here, numbered from the part's
-- start (counted from the file only when a line is bad).
-- The progress line's counters (plan.done: the part's bytes read, up to
-- its end; plan.events: the lines), once per chunk.
local function count_lines(st, n, done)
  local plan = st.plan
  if not plan.done then return end
  local at = done and st.part_to or math.min(st.reader:pos(), st.part_to)
  sluice._count(plan.done, at - st.part_seen)
  st.part_seen = at
  sluice._count(plan.events, n)
end

local function read_lines(st, events)
  local plan = st.plan
  if not plan.json then
    local done = st.reader:read(SPLIT_CHUNK, events)
    count_lines(st, #events, done)
    return done
  end
  local lines = {}
  local done = st.reader:read(SPLIT_CHUNK, lines)
  count_lines(st, #lines, done)
  local from, before = st.part_from, st.part_line
  local jsonl = require("sluice.jsonl")
  jsonl.decode(plan.json, lines, events, function() return jsonl.lines_before(plan.path, from) + before + 1 end)
  st.part_line = before + #lines
  return done
end

-- Runs the fused loop over the source until `demand` events came out,
-- every part is read (then the layer's "done" follows) or the chunk budget
-- is spent (then more is true).
local function source_events(st, demand)
  local cfg, keep = st.cfg, st.keep
  local out = new_out(cfg)
  local done, chunks = false, 0
  repeat
    chunks = chunks + 1
    if not keep and #out > 0 then out = new_out(cfg) end
    if not st.cur and not claim(st) then
      done = true
    elseif st.win then
      -- windows: the raw events first (the window sees them before the
      -- layer's operations), then each window's run through the loop
      local events = {}
      if st.plan.kind == "range" then
        local k = st.left < 4096 and st.left or 4096
        local first, step = st.next, st.plan.step
        st.next, st.left = first + k * step, st.left - k
        if st.plan.done then sluice._count(st.plan.done, k) end
        if st.left == 0 then st.cur = nil end
        if st.run_range and not cfg.batch_fn and window.takes_ranges(st) then
          -- each window's run of numbers through the loop: no table of them
          window.source_range(st, first, step, k, out)
          events = nil
        else
          events = sluice._range_chunk(first, step, k)
        end
      elseif read_lines(st, events) then
        st.cur, st.reader = nil, nil
      end
      local map_batch_fn = cfg.batch_fn
      if events and map_batch_fn and #events > 0 then
        events = map_batch_fn(events)
        if type(events) ~= "table" then nilerr("map_batch", events) end
      end
      if events then window.source_batch(st, events, out) end
    elseif st.plan.kind == "range" then
      -- as many numbers as the demand still asks for (a reducing layer
      -- emits nothing until the end: large runs)
      local k = (cfg.red or cfg.comb) and 16384 or demand - #out
      if k < SPLIT_CHUNK then k = SPLIT_CHUNK end
      if k > st.left then k = st.left end
      if k > 0 then
        local first, step = st.next, st.plan.step
        local last = first + (k - 1) * step
        st.acc = st.run_range(first, last, step, out, st.acc, st.seen)
        if cfg.comb_win then flush_runs(st, out) end
        st.next, st.left = last + step, st.left - k
        if st.plan.done then sluice._count(st.plan.done, k) end
      end
      if st.left == 0 then st.cur = nil end
    else
      local events = {}
      if read_lines(st, events) then st.cur, st.reader = nil, nil end
      local map_batch_fn = cfg.batch_fn
      if map_batch_fn and #events > 0 then
        events = map_batch_fn(events)
        if type(events) ~= "table" then nilerr("map_batch", events) end
        -- kept past the next chunk's map_batch call, which may change them
        if keep then
          local copy = {}
          for i = 1, #events do
            local v = events[i]
            if type(v) == "table" then v = snapshot(v) end
            copy[i] = v
          end
          events = copy
        end
      end
      if st.run then
        st.acc = st.run(events, out, st.acc, st.seen)
        if cfg.comb_win then flush_runs(st, out) end
      else
        for i = 1, #events do out[#out + 1] = events[i] end
      end
    end
  until done or (keep and not st.sinks and #out >= demand) or chunks >= CHUNKS_PER_CALL
  local last
  if done then
    -- what the end emits follows what came out before it (when kept)
    local into = keep and out or nil
    last = st.win and window.source_done(st, into) or layer_done(st, into)
  end
  return out, done, last, not done and not (keep and not st.sinks and #out >= demand)
end

-- Reads on for the demand not yet met (st.want).
-- A split source that writes to Redis (flow:into_redis, or the layer
-- before a partition({redis = ...})): its output goes there
-- (sluice.redis_flow), and once its input is done, its end markers.
local function to_redis(st, out, done)
  local R = require("sluice.redis_flow")
  R.write(st, out)
  if done then R.ended(st) end
  return {}
end

local function source_step(st)
  local cfg = st.cfg
  if st.finished or (st.want <= 0 and st.keep and not st.sinks) then return {}, st end
  local ok, out, done, last, more = xpcall(source_events, on_error, st, st.want)
  if ok and (cfg.sink or cfg.repart) then ok, out = xpcall(to_redis, on_error, st, out, done) end
  if not ok then
    stop_with(cfg.label, out)
    st.finished = true
    return {}, st
  end
  -- what came out beyond the demand waits in the stage's buffer, which
  -- the engine serves before it asks handle_demand for more
  st.want = math.max(0, st.want - #out)
  if more and not st.going then
    st.going = true
    sluice.self():cast(GO_ON)
  end
  if not done then
    -- a departition/take_sort downstream takes only the triggers' states
    if not st.keep then return {}, st end
    return out, st
  end
  st.finished = true
  sluice.self():finish()
  if cfg.discard then return {}, st end
  if cfg.tag then return last, st end
  return out, st   -- what the end emitted was appended to out
end

function SourceStage.handle_demand(demand, st)
  st.want = (st.want or 0) + demand
  return source_step(st)
end

-- The window's timers and {"trigger", name} messages.
function SourceStage.handle_info(msg, st)
  if st.finished then return {}, st end
  local ok, out = xpcall(window.message_out, on_error, st, msg)
  if ok and (st.cfg.sink or st.cfg.repart) then ok, out = xpcall(to_redis, on_error, st, out, false) end
  if not ok then
    stop_with(st.cfg.label, out)
    st.finished = true
    return {}, st
  end
  if st.cfg.discard then return {}, st end
  return out, st
end

function SourceStage.handle_cast(msg, st)
  if msg ~= GO_ON then return {}, st end
  st.going = false
  return source_step(st)
end

-- The single finite range or file source of f, when it can be split.
local function splittable(f)
  local src = f.src
  if src.kind ~= "enumerables" or #src.enums ~= 1 then return nil end
  local e = src.enums[1]
  if type(e) ~= "table" then return nil end
  if e.__sluice_enum == "range" and math.type(e.last) == "integer" and not f.batch_fn then
    -- windows need a source whose times grow: a range counting up
    if window.needed(f.opts.window) and e.step < 0 then return nil end
    return e
  end
  if require("sluice.tools").FILE_ENUMS[e.__sluice_enum] then return e end
  return nil
end

SourceStage.splittable, SourceStage.split_plan = splittable, split_plan   -- (no callbacks) for the planner

return SourceStage
