-- sluice.flow_window: windows in a layer stage (other than the plain
-- global window, which sluice.flow_layer runs without any of this).
--
-- The engine's window state machine (lua/window.c over engine/window.c)
-- decides which window each incoming event belongs to and when windows
-- fire; this module keeps one accumulator per open window and applies the
-- machine's actions in order:
--   {"run", window, events}        the events go through the layer's fused
--                                  loop into that window's accumulator
--   {"fire", window, trigger, ends} on_trigger (or the emit rules) for the
--                                  window; at its end the accumulator goes
--   {"merge", window, other}       session other merges into window (the
--                                  reducer's merge function)
-- so that the output follows arrival order. A custom trigger runs on each
-- "run" (the events of one window), with that window's own trigger state,
-- and fires on that window. Timers the machine asks for
-- (lateness, periodic windows, trigger_periodically) come back to the
-- stage as a stage:send message; so do {"trigger", name} messages.
local sluice = require("sluice")
local E = require("sluice.flow_error")
local trigger = require("sluice.flow_trigger")
local join = require("sluice.flow_join")
local new_out = require("sluice.flow_codegen").new_out

local nilacc = E.nilacc
local math_type = math.type
local trigger_events, TAG = trigger.trigger_events, trigger.TAG

local M = {}

local TIMER = "__sluice_window_timer"

-- Whether a layer with window w needs the window machine.
function M.needed(w)
  return w ~= nil and (w.type ~= "global" or w.every_n ~= nil or w.periodically_ms ~= nil or w.custom ~= nil)
end

-- Sets up the machine of a layer stage (after layer_init).
function M.init(st, cfg)
  local w = cfg.window
  st.win = sluice._window({
    kind = w.type, count = w.count, size_ms = w.size_ms, every_ms = w.every_ms,
    lateness_ms = w.lateness_ms or -1, trigger_every = w.every_n or 0,
    periodically_ms = w.periodically_ms or 0, producers = math.max(cfg.producers, 1),
    -- after a combining layer the events are {partition, window start,
    -- partial, events}: the window start is the time
    by = cfg.merging and { index = 2 } or w.by, key = w.key,
    -- sessions an event bridges merge when the reducer can merge
    -- accumulators (a merge the user or the combiner declared; a plain
    -- count's merge is only for combining: sessions stay as without it)
    merge_sessions = w.type == "session" and cfg.red ~= nil and cfg.red.merge ~= nil and not cfg.red.count
      and not cfg.join,
  })
  st.wtype = w.type
  st.accs = {}     -- window id -> accumulator (sessions: key -> id -> accumulator)
  st.jt = { accs = {} }   -- a window join's tables, kept like the accumulators
  st.pidx = {}     -- subscription id -> producer index (1..)
  st.np = 0
  st.late = 0
  st.late_extra, st.kept = 0, 0   -- after a combining layer: late events beyond one per dropped partial
  st.acc = nil     -- each window has its own
  if w.custom then st.taccs = { accs = {} } end   -- a custom trigger's state per window, kept like st.accs
  -- the machine asks for timers only for these
  st.timed = w.type == "periodic" or w.periodically_ms ~= nil or (w.lateness_ms ~= nil and w.lateness_ms >= 0)
end

-- Whether the layer's events can reach its window still encoded (a raw
-- batch, sluice._raw_events): the window reads their times from their
-- bytes and decodes each run of events as it goes into the loop. For
-- times from an {index} or {field} spec, with no session key, merging,
-- join, map_batch or stream entries to unwrap before the window.
function M.raw_input(cfg)
  local w = cfg.window
  return (w.type == "fixed" or w.type == "sliding" or (w.type == "session" and w.key == nil))
    and type(w.by) == "table" and not (cfg.merging or cfg.join or cfg.batch_fn or cfg.unwrap or cfg.comb)
end

-- Whether such a layer need not decode its events at all: its only work
-- on them is a reduce (no operations, no custom trigger, no combiner's
-- own code) whose function never reads its event (sluice._reads_param:
-- from its instructions) -- a count per window. The loop then calls it
-- with nil for each event.
function M.events_unread(cfg)
  local red = cfg.red
  return M.raw_input(cfg) and red ~= nil and red.kind == "reduce" and red.name == nil and red.fast == nil
    and cfg.nops == 0 and not cfg.window.custom and not sluice._reads_param(red.f, 1)
end

-- A producer subscribed: it gets the next index.
function M.subscribed(st, id)
  st.np = st.np + 1
  st.pidx[id] = st.np
end

-- The accumulators (window id -> accumulator) of session key `key`, or
-- of the stage when key is nil; st may also be a custom trigger's
-- states (st.taccs).
local function slot_of(st, key)
  if key == nil then return st.accs end
  local t = st.accs[key]
  if t == nil then
    t = {}
    st.accs[key] = t
  end
  return t
end

local function slot(st, win)
  return slot_of(st, win.key)
end

local function fresh(st)
  local red = st.cfg.red
  if not red or not red.acc then return {} end
  local acc = red.acc()
  if acc == nil then nilacc("accumulator", "acc_fun") end
  return acc
end

local function window_id(st, win)
  if st.wtype == "global" then return "global" end
  return win.id
end

-- A window join's two tables for window win (sluice.flow_join works on
-- st.lt and st.rt).
local function join_tables(st, win)
  local t = slot(st.jt, win)
  local jt = t[win.id]
  if jt == nil then
    jt = { {}, {} }
    t[win.id] = jt
  end
  st.lt, st.rt = jt[1], jt[2]
  return t
end

-- Rows through the layer's loop into acc (or straight out).
local map_batch

local function reduce_rows(st, rows, run_out, acc, i0, i1)
  -- a run of a split range's numbers (M.source_range): first, last, step
  if math_type(rows) == "integer" then return st.run_range(rows, i0, i1, run_out, acc, st.seen) end
  if st.cfg.join then rows = map_batch(st, rows) end
  if st.run then return st.run(rows, run_out, acc, st.seen, i0, i1) end
  for j = i0 or 1, i1 or #rows do run_out[#run_out + 1] = rows[j] end
  return acc
end

-- A window's accumulator after a trigger fires on it (trigger = its name;
-- ends: the window is over), with its output appended to out.
local function fire(st, win, t, trig, ends, out, run_out)
  local cfg = st.cfg
  local acc = t[win.id]
  if acc == nil then acc = fresh(st) end
  if not cfg.red then   -- a window join without a reducer: its end gives the unmatched rows
    if ends and cfg.join then
      local jt = join_tables(st, win)
      reduce_rows(st, join.join_done(st), run_out, acc)
      jt[win.id] = nil
    end
  else
    if ends and cfg.join then
      local jt = join_tables(st, win)
      acc = reduce_rows(st, join.join_done(st), run_out, acc)
      jt[win.id] = nil
    end
    st.acc = acc
    local events, new_acc = trigger_events(st, { type = st.wtype, id = window_id(st, win), key = win.key,
                                                 trigger = trig })
    for j = 1, #events do out[#out + 1] = events[j] end
    st.acc = nil
    if not ends then
      if new_acc ~= nil then t[win.id] = new_acc else t[win.id] = acc end
      return
    end
  end
  if ends then
    t[win.id] = nil
    if win.key ~= nil and next(t) == nil then st.accs[win.key] = nil end
    if st.taccs then   -- a custom trigger's state goes with its window
      local tt = slot(st.taccs, win)
      tt[win.id] = nil
      if win.key ~= nil and next(tt) == nil then st.taccs.accs[win.key] = nil end
    end
  end
end

-- Session `other` merges into session win (same key): the reducer's
-- merge(partial, acc) folds other's accumulator into win's; a custom
-- trigger's state stays win's.
local function merge_sessions(st, win, t, other)
  local acc, partial = t[win.id], t[other]
  if acc == nil then acc = fresh(st) end
  if partial == nil then partial = fresh(st) end
  local reduce_merge_fn = st.cfg.red.merge
  acc = reduce_merge_fn(partial, acc)
  if acc == nil then nilacc("reduce merge", "the merge function") end
  t[win.id], t[other] = acc, nil
  if st.taccs then slot(st.taccs, win)[other] = nil end
end

-- Events (slice i0..i1 when given) into the accumulator t[id].
local function run_acc(st, id, t, events, i0, i1, run_out)
  local acc = t[id]
  if acc == nil then acc = fresh(st) end
  if st.cfg.merging then   -- partials: each stands for its events (index 4)
    for j = i0 or 1, i1 or #events do st.kept = st.kept + events[j][4] - 1 end
  end
  t[id] = reduce_rows(st, events, run_out, acc, i0, i1)
end

-- Events (slice i0..i1 when given) into window win's accumulator.
local function run_into(st, win, t, events, i0, i1, run_out, side)
  if st.cfg.join then
    if i0 then events, i0, i1 = table.move(events, i0, i1, 1, {}), nil, nil end
    join_tables(st, win)
    events = join.join_events(st, events, side)
  end
  run_acc(st, win.id, t, events, i0, i1, run_out)
end

-- A custom trigger over the events the machine runs into window win:
-- fun(events, tacc) with the window's own trigger state decides what is
-- reduced and when its trigger fires on that window.
local function custom_run(st, win, t, events, i0, i1, out, run_out, side)
  local c = st.cfg.window.custom
  local fun = c.fun
  local tt = slot(st.taccs, win)
  local box = tt[win.id]
  if box == nil then
    box = { c.acc() }   -- the window's first events: its trigger state starts
    tt[win.id] = box
  end
  if i0 then events = table.move(events, i0, i1, 1, {}) end
  local depth = 0
  while events do
    depth = depth + 1
    if depth > 10000 then E.op_error("trigger", "the trigger kept splitting its input (10000 times in one batch)") end
    local r = table.pack(fun(events, box[1]))
    local r1, r2, r3, r4, r5 = r[1], r[2], r[3], r[4], r[5]
    if r1 == "cont" then
      if r.n <= 2 then
        box[1] = r2
      else
        if type(r2) ~= "table" then E.nilerr("trigger", r2) end
        box[1], events = r3, r2
      end
      run_into(st, win, t, events, nil, nil, run_out, side)
      events = nil
    elseif r1 == "trigger" then
      if r2 == nil then E.op_error("trigger", "a \"trigger\" result needs a name") end
      if type(r3) ~= "table" or type(r4) ~= "table" then
        E.op_error("trigger", "a \"trigger\" result is \"trigger\", name, pre, post, tacc with pre and post arrays")
      end
      run_into(st, win, t, r3, nil, nil, run_out, side)
      box[1] = r5
      fire(st, win, t, r2, false, out, run_out)
      events = #r4 > 0 and r4 or nil
    else
      E.op_error("trigger", "the trigger must return \"cont\" or \"trigger\", got " .. tostring(r1))
    end
  end
end

-- Applies the machine's actions (for a batch from side `side` of a join),
-- appending the output to out. The actions come in one flat array, six
-- slots an action (lua/window.c): op (1 run, 2 fire, 3 merge), window id,
-- session key, then a run's events [, i, j], a fire's trigger and ends,
-- or a merge's other session.
local function apply(st, acts, out, side)
  local cfg = st.cfg
  -- a departition/take_sort downstream takes only the triggers' states
  local run_out = cfg.tag and {} or out
  local plain = st.taccs == nil and not cfg.join   -- runs need no window table
  local b = 0
  while true do
    local op = acts[b + 1]
    if op == nil then break end
    local id, key, x, y, z = acts[b + 2], acts[b + 3], acts[b + 4], acts[b + 5], acts[b + 6]
    b = b + 6
    local t = slot_of(st, key)
    if op == 1 and plain then
      run_acc(st, id, t, x, y, z, run_out)
    else
      local win = { id = id, key = key }
      if op == 1 then
        if st.taccs then
          custom_run(st, win, t, x, y, z, out, run_out, side)
        else
          run_into(st, win, t, x, y, z, run_out, side)
        end
      elseif op == 3 then
        merge_sessions(st, win, t, x)
      else
        fire(st, win, t, x, y, out, run_out)
      end
    end
  end
  if cfg.tag then
    -- a departition/take_sort downstream learns how far this stage has
    -- moved past its windows: {TAG, partition index, false, f} says every
    -- window with id < f is over here (sent after that window's states)
    local f = st.win:frontier()
    if f ~= nil and f ~= st.frontier then
      st.frontier = f
      out[#out + 1] = { TAG, cfg.index, false, f }
    end
  end
  local late = st.win:late() + st.late_extra
  if late ~= st.late then
    st.late = late
    sluice._late(late)
  end
end

-- Arms the stage's one timer for the machine's next due time.
local function arm(st)
  if not st.timed then return end   -- no timers for this window
  local d = st.win:next_due()
  if st.timer then
    st.timer:cancel()
    st.timer = nil
  end
  if d then st.timer = sluice.self():send_after(d, { TIMER }) end
end

-- The machine's answer to a call (raised as the window's error).
local function call(st, method, ...)
  local ok, actions = pcall(st.win[method], st.win, ...)
  if not ok then E.op_error("window", tostring(actions)) end
  return actions
end

-- One batch (after map_batch) from subscription id.
function map_batch(st, events)
  local map_batch_fn = st.cfg.batch_fn
  if map_batch_fn and #events > 0 then
    events = map_batch_fn(events)
    if type(events) ~= "table" then E.nilerr("map_batch", events) end
  end
  return events
end

function M.events(st, events, id)
  local out = new_out(st.cfg)
  -- the window (and a custom trigger) sees the batch after map_batch; a
  -- join's map_batch works on the join's rows
  if not st.cfg.join then events = map_batch(st, events) end
  if st.cfg.merging then
    -- partial accumulators: a late one drops all the events it stands for
    local extra = 0
    for i = 1, #events do extra = extra + events[i][4] - 1 end
    st.kept = 0
    st.late_extra = st.late_extra + extra
    apply(st, call(st, "batch", st.pidx[id], events), out)
    st.late_extra = st.late_extra - st.kept
  else
    -- (a Redis source's events come decoded even to a raw stage)
    local raw = st.raw and type(events) == "userdata"
    apply(st, call(st, raw and "batch_raw" or "batch", st.pidx[id], events), out, st.sides and st.sides[id])
  end
  arm(st)
  return out
end

-- A split source's own events (sluice.flow_source): producer 1, after
-- map_batch; the output is appended to out.
function M.source_batch(st, events, out)
  apply(st, call(st, "batch", 1, events), out)
  arm(st)
end

-- Whether the machine's runs of a split range source can go through the
-- layer's loop as ranges of numbers (M.source_range): not when a custom
-- trigger (which sees each run's events) or a join takes them.
function M.takes_ranges(st)
  return st.taccs == nil and not st.cfg.join
end

-- A split range source's numbers first, first + step, ... (k of them),
-- with no table of them: each window's run goes through the layer's loop
-- as a range (st.run_range); the output is appended to out.
function M.source_range(st, first, step, k, out)
  apply(st, call(st, "batch_range", 1, first, step, k), out)
  arm(st)
end

-- A split source has read everything: the windows end (what that emits
-- is appended to out when given).
function M.source_done(st, out)
  out = out or new_out(st.cfg)
  apply(st, call(st, "producer_done", 1), out)
  arm(st)
  return out
end

-- A producer ended normally; returns the output and whether it was the last.
function M.producer_done(st, id)
  local out = new_out(st.cfg)
  apply(st, st.win:producer_done(st.pidx[id]), out)
  arm(st)
  return out
end

-- A stage:send message: the machine's timer, or {"trigger", name}. Returns
-- the output, or nil when the message is not the window's.
function M.info(st, msg)
  if type(msg) ~= "table" then return nil end
  local out = new_out(st.cfg)
  if msg[1] == TIMER then
    st.timer = nil
    apply(st, st.win:timer(), out)
  elseif msg[1] == "trigger" and msg[2] ~= nil then
    apply(st, st.win:message(msg[2]), out)
  else
    return nil
  end
  arm(st)
  return out
end

-- What a stage:send message to a windowed (or global-window) layer stage
-- emits (run protected by the caller).
function M.message_out(st, msg)
  if st.win then return M.info(st, msg) or {} end
  local out = new_out(st.cfg)
  M.global_message(st, msg, out)
  return out
end

-- The layer's global window without the machine: a {"trigger", name}
-- message fires name on it (the accumulator goes on).
function M.global_message(st, msg, out)
  if type(msg) ~= "table" or msg[1] ~= "trigger" or msg[2] == nil or not st.cfg.red then return false end
  local events, new_acc = trigger_events(st, { type = "global", id = "global", trigger = msg[2] })
  for j = 1, #events do out[#out + 1] = events[j] end
  if new_acc ~= nil then st.acc = new_acc end
  return true
end

return M
