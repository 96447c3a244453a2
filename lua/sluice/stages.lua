-- sluice.stages: the parts of the GenStage API written in Lua on top of
-- sluice.start: enumerables (sluice.range, sluice.lines), producers over
-- them (sluice.from_enumerable), main-thread streams (sluice.stream) and
-- the consumer supervisor. Loaded into every state; adds to `sluice`.
local sluice = require("sluice")

local M = {}

local getinfo = debug and debug.getinfo

-- Errors --------------------------------------------------------------------

-- Raises "fn: msg" at the code that called the public function fn, with
-- `level` counted as error()'s from the function that calls raise (2: the
-- caller of that function). Called by one of sluice's own modules (the
-- flow building its sources), the message goes without location and
-- without fn: that module names the function its user called.
local function raise(fn, msg, level)
  level = (level or 1) + 1
  local info = getinfo and getinfo(level, "S")
  if info and info.source:find("^=%[sluice") then error(msg, 0) end
  error(fn .. ": " .. msg, level)
end

-- Re-raises the error e of sluice.start or sluice.subscribe, called (in
-- protected mode) by the public function fn: a message about their
-- arguments names fn instead, with the start of the codec's
-- "(at message...)" paths renamed after fn's own arguments (`paths`: a
-- list of {from, to}), and is raised at `level` as raise does. Any other
-- error goes through as it is.
local function reraise(fn, paths, e, level)
  local msg = type(e) == "string" and (e:match("^sluice%.start: (.*)$") or e:match("^sluice%.subscribe: (.*)$"))
  if not msg then error(e, 0) end
  for _, p in ipairs(paths) do
    local at = msg:find("(at " .. p[1], 1, true)
    if at then msg = msg:sub(1, at + 3) .. p[2] .. msg:sub(at + 4 + #p[1]) end
  end
  raise(fn, msg, level + 1)
end

-- The engine counts a subscription's demand in 32 bits.
local MAX_DEMAND = 2147483647

-- Checks the demand options of a subscription (opts: a table) made for
-- fn; `level` as raise's.
local function check_demand(fn, opts, level)
  local max, min = opts.max_demand, opts.min_demand
  if max ~= nil and not (math.type(max) == "integer" and max >= 1) then
    raise(fn, ("max_demand must be an integer >= 1, got %s"):format(sluice.inspect(max)), level + 1)
  elseif max ~= nil and max > MAX_DEMAND then
    raise(fn, ("max_demand must be at most %d, got %d"):format(MAX_DEMAND, max), level + 1)
  end
  max = max or 1000
  if min ~= nil and not (math.type(min) == "integer" and min >= 0 and min < max) then
    raise(fn, ("min_demand must be an integer from 0 to max_demand - 1 (%d), got %s")
      :format(max - 1, sluice.inspect(min)), level + 1)
  end
end

-- Enumerables ---------------------------------------------------------------

local function check_int(fn, name, v)
  if math.type(v) ~= "integer" then
    raise(fn, ("%s must be an integer, got %s"):format(name, sluice.inspect(v)), 3)
  end
end

--- sluice.range(first, last [, step]): a lazy enumerable of integers;
--- `last` may be math.huge (or -math.huge with a negative step).
function M.range(first, last, step)
  step = step == nil and 1 or step
  check_int("sluice.range", "first", first)
  check_int("sluice.range", "step", step)
  if step == 0 then raise("sluice.range", "step must not be 0", 2) end
  if not (math.type(last) == "integer" or last == math.huge or last == -math.huge) then
    raise("sluice.range", ("last must be an integer or math.huge, got %s"):format(sluice.inspect(last)), 2)
  end
  return { __sluice_enum = "range", first = first, last = last, step = step }
end

-- A file enumerable of the given kind; the file is opened once here, to
-- fail early. (Called as a tail call, so that level 2 is the user's code.)
local function file_enum(kind, path)
  local fn = "sluice." .. kind
  if type(path) ~= "string" then
    raise(fn, ("path must be a string, got %s"):format(sluice.inspect(path)), 2)
  end
  local f, err = io.open(path, "rb")
  if not f then raise(fn, err, 2) end
  f:close()
  return { __sluice_enum = kind, path = path }
end

--- sluice.lines(path): a lazy enumerable of the file's lines (without
--- their newline), read on the worker that consumes it.
function M.lines(path) return file_enum("lines", path) end

--- sluice.words(path): a lazy enumerable of the file's words: the runs
--- of ASCII letters, lowercased (line:lower():gmatch("%a+") in the C
--- locale), cut in C on the worker that consumes it.
function M.words(path) return file_enum("words", path) end

--- sluice.jsonl(path [, opts]): a lazy enumerable of the file's lines
--- decoded as JSON (sluice.jsonl module).
function M.jsonl(path, opts)
  return require("sluice.jsonl").jsonl(path, opts)
end

--- sluice.stats() -> every live stage's counters (sluice.tools).
function M.stats() return require("sluice.tools").stats() end

--- sluice.graph() -> the live stages and subscriptions as Graphviz DOT
--- (sluice.tools).
function M.graph() return require("sluice.tools").graph() end

--- sluice.top([opts]): sluice.stats() as a refreshing table, until a key
--- is pressed (sluice.tools).
function M.top(opts) return require("sluice.tools").top(opts) end

-- An enumerator pulls up to n items into out and says whether it is done.
-- Every kind of enumerable gets one (built in the state that runs it). A
-- file's enumerator also returns a function that says how many of the
-- file's bytes it has read.
local function enumerator(enum)
  local kind = type(enum) == "table" and enum.__sluice_enum
  if type(enum) == "function" then
    local done = false
    return function(n, out)
      local k = #out
      for _ = 1, n do
        local v = enum()
        if v == nil then done = true; break end
        k = k + 1; out[k] = v
      end
      return done
    end
  elseif kind == "range" then
    -- cur is the next item, nil once the range is done. The distance to
    -- last is compared unsigned: it is exact even where last - cur does
    -- not fit in a signed integer, and cur + step is only computed when it
    -- stays within last (so it never wraps around at the integer limits;
    -- an unbounded range ends at math.maxinteger or math.mininteger).
    local cur, last, step = enum.first, enum.last, enum.step
    if last == math.huge then last = math.maxinteger elseif last == -math.huge then last = math.mininteger end
    if (step > 0 and cur > last) or (step < 0 and cur < last) then cur = nil end
    local up = step > 0
    local stride = up and step or -step   -- -math.mininteger wraps to 2^63, right unsigned
    return function(n, out)
      local k = #out
      for _ = 1, n do
        if cur == nil then return true end
        k = k + 1; out[k] = cur
        local left = up and last - cur or cur - last
        if math.ult(left, stride) then cur = nil else cur = cur + step end
      end
      return cur == nil
    end
  elseif kind == "lines" or kind == "words" then
    local reader = sluice._lines(enum.path, 0, math.maxinteger, kind == "words")
    return function(n, out) return reader:read(n, out) end, function() return reader:pos() end
  elseif kind == "jsonl" then
    -- lines decoded as JSON (sluice.jsonl), numbered as they are read
    local reader, decode = sluice._lines(enum.path), require("sluice.jsonl").decode
    local line = 0
    -- (blank and skipped lines give no event: read on until n came out)
    return function(n, out)
      local want, done = #out + n, false
      repeat
        local lines = {}
        done = reader:read(want - #out, lines)
        decode(enum, lines, out, line + 1)
        line = line + #lines
      until done or #out >= want
      return done
    end, function() return reader:pos() end
  elseif type(enum) == "table" then
    local i, len = 0, #enum
    return function(n, out)
      local k = #out
      local stop = i + n
      if stop > len then stop = len end
      for j = i + 1, stop do k = k + 1; out[k] = enum[j] end
      i = stop
      return i >= len
    end
  end
  error(("expected an enumerable (an array, sluice.range, sluice.lines or an iterator function), got %s")
    :format(type(enum)), 0)
end
M._enumerator = enumerator

local function is_enumerable(v)
  return type(v) == "table" or type(v) == "function"
end
M._is_enumerable = is_enumerable

-- The producer that emits an enumerable: exactly `demand` items per
-- handle_demand, then finishes (stops "normal" once dispatched).
-- Its argument: {enum = the enumerable, done = counter, events = counter}
-- (the counters of the progress line, when the size is known: sluice.tools;
-- done counts items, or a file's bytes).
local EnumProducer = {
  type = "producer",
  init = function(arg)
    local next, pos = enumerator(arg.enum)
    return { next = next, pos = pos, done = arg.done, events = arg.events, seen = 0 }
  end,
  handle_demand = function(n, st)
    local out = {}
    local finished = st.next(n, out)
    if st.done then
      if st.pos then
        local at = st.pos()
        sluice._count(st.done, at - st.seen)
        st.seen = at
        sluice._count(st.events, #out)
      else
        sluice._count(st.done, #out)
      end
    end
    if finished then sluice.self():finish() end
    return out, st
  end,
}
M._EnumProducer = EnumProducer

local START_KEYS = { dispatcher = true, demand = true, buffer_size = true, buffer_keep = true,
                     worker = true, name = true }

--- sluice.from_enumerable(enum [, opts]) -> producer stage
function M.from_enumerable(enum, opts)
  local fn = "sluice.from_enumerable"
  if not is_enumerable(enum) then
    raise(fn, ("expected an enumerable, got %s"):format(type(enum)), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then raise(fn, "opts must be a table, got " .. type(opts), 2) end
  local start = {}
  for k, v in pairs(opts) do
    if k == "on_cancel" then
      if v ~= "continue" and v ~= "stop" then
        raise(fn, ("on_cancel must be \"continue\" or \"stop\", got %s"):format(sluice.inspect(v)), 2)
      end
      start._on_cancel = v
    elseif START_KEYS[k] then
      start[k] = v
    else
      raise(fn, ("unknown option %s"):format(sluice.inspect(k)), 2)
    end
  end
  -- an iterator function runs where it was made: on the main thread
  if type(enum) == "function" then start._main = true end
  -- a source that ends by itself may run to its end when the script exits
  if type(enum) == "table" and (enum.__sluice_enum ~= "range" or enum.last ~= math.huge) then start._finite = true end
  -- a known size: counters for the progress line (sluice.tools)
  local tools = require("sluice.tools")
  local total = type(enum) == "table" and tools.enum_size(enum)
  local arg = { enum = enum }
  if total then
    arg.done = sluice._counter()
    arg.events = tools.FILE_ENUMS[enum.__sluice_enum] and sluice._counter() or arg.done
  end
  local ok, stage = pcall(sluice.start, EnumProducer, arg, start)
  if not ok then
    if total then tools.free_counters(arg) end
    reraise(fn, { { "message.arg.enum", "enumerable" }, { "message.arg", "enumerable" }, { "message.opts", "opts" } },
      stage, 2)
  end
  if total then tools.sized(stage, { total = total, done = arg.done, events = arg.events }) end
  return stage
end

-- Streams -------------------------------------------------------------------

function M._is_normal(r)
  return r == "normal" or r == "shutdown" or (type(r) == "table" and r[1] == "shutdown")
end

local function reason_error(fn, reason)
  if type(reason) == "table" and reason[1] == "error" then
    error(("%s: %s\n%s"):format(fn, tostring(reason[2]), tostring(reason[3] or "")), 0)
  end
  error(("%s: a producer ended with %s"):format(fn, sluice.inspect(reason)), 0)
end
M._reason_error = reason_error

--- sluice.stream(subscriptions [, opts]) -> iterator, for use in a generic
--- for; breaking out of the loop cancels the subscriptions.
function M.stream(subscriptions, opts)
  local fn = "sluice.stream"
  if not sluice._is_main() then raise(fn, "only the main thread may start streams", 2) end
  if type(subscriptions) ~= "table" then
    raise(fn, ("expected a list of producers, got %s"):format(type(subscriptions)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then raise(fn, "opts must be a table, got " .. type(opts), 2) end
  opts = opts or {}
  for k, v in pairs(opts) do
    -- (_progress: a Flow's own progress line, or false)
    if k == "progress" then
      if type(v) ~= "boolean" then raise(fn, "progress must be true or false, got " .. sluice.inspect(v), 2) end
    elseif k ~= "_progress" and k ~= "_label" then
      raise(fn, ("unknown option %s"):format(sluice.inspect(k)), 2)
    end
  end
  -- each entry: a producer, or {producer, option = value, ...}; checked
  -- before anything starts
  local entries = {}
  for i, entry in ipairs(subscriptions) do
    local producer, sopts = entry, { cancel = "transient" }
    if type(entry) == "table" then
      producer = entry[1]
      for k, v in pairs(entry) do if k ~= 1 then sopts[k] = v end end
    end
    check_demand(fn, sopts, 2)
    entries[i] = { producer, sopts }
  end
  local queue, head, tail = {}, 1, 0
  local live = #entries
  local temporary = {}   -- subscription id -> true for "temporary" ones
  if live == 0 then return function() return nil end end
  local Collector = {
    type = "consumer",
    handle_events = function(events, _, st)
      for i = 1, #events do tail = tail + 1; queue[tail] = events[i] end
      return {}, st
    end,
    handle_cancel = function(reason, from, st)
      live = live - 1
      -- an abnormal end of a permanent/transient subscription stops the
      -- collector with that reason (the engine does it); otherwise the
      -- stream ends when the last producer has ended
      if live == 0 and (M._is_normal(reason[2]) or temporary[sluice._handle_id(from)]) then
        sluice.self():stop("normal")
      end
      return {}, st
    end,
  }
  local consumer = sluice.start(Collector, nil, { _main = true })
  -- its name in sluice.stats() and sluice.graph() (_label: a Flow's own)
  require("sluice.tools").places[sluice._handle_id(consumer)] = { label = opts._label or "sluice.stream collector" }
  local subs = {}
  local closed = false
  local function close()
    if closed then return end
    closed = true
    if consumer:alive() then
      for _, s in ipairs(subs) do s:cancel("normal") end
      consumer:stop("normal")
    end
  end
  for i, entry in ipairs(entries) do
    local ok, sub = pcall(sluice.subscribe, consumer, entry[1], entry[2])
    if not ok then
      close()
      reraise(fn, { { "message.opts", ("subscriptions[%d]"):format(i) } }, sub, 2)
    end
    subs[i] = sub
    if entry[2].cancel == "temporary" then temporary[sluice._handle_id(sub)] = true end
  end
  -- returns once the subscriptions are on their way to the producers
  consumer:stats()
  -- the progress line over the producers of known size (sluice.tools)
  local prog = opts._progress
  if prog == nil then
    local tools, sources = require("sluice.tools"), {}
    for _, entry in ipairs(entries) do sources[#sources + 1] = tools.size_of(entry[1]) end
    prog = tools.progress(opts.progress, sources)
  end
  if prog then
    local close_subs = close
    close = function() prog:done(); close_subs() end
  end
  local function iter()
    while true do
      if head <= tail then
        local v = queue[head]
        queue[head] = nil
        head = head + 1
        -- (the line also moves when the loop's body is the slow part: one
        -- look at the clock per event, only while the line is drawn)
        if prog then prog:tick() end
        return v
      end
      if closed then return nil end
      if not consumer:alive() then
        if prog then prog:done() end
        local reason = consumer:await()
        closed = true
        if reason ~= "normal" then reason_error(fn, reason) end
        return nil
      end
      if prog then prog:tick() end
      sluice._pump(50)
    end
  end
  return iter, nil, nil, setmetatable({}, { __close = close })
end


-- Consumer supervisor -------------------------------------------------------

local SUP_KEYS = { handler = true, subscribe_to = true, restart = true, max_restarts = true,
                   max_seconds = true, name = true }

-- The supervisor is a main-thread consumer in manual demand mode: each
-- event runs handler(event) as a task on a worker; finished tasks are
-- counted per subscription and asked for again once min_demand of them
-- have finished (GenStage's ConsumerSupervisor accounting).
local Supervisor = {
  type = "consumer",
  init = function(cfg)
    return { cfg = cfg, subs = {}, running = {}, restarts = {}, polling = false }
  end,
  handle_subscribe = function(kind, opts, from, st)
    if kind == "producer" then
      local id = sluice._handle_id(from)
      st.subs[id] = { from = from, max = opts.max_demand, min = opts.min_demand, done = 0 }
      -- asked from handle_info: the subscription reaches the producer first
      sluice.self():send({ "__sup_ask", id })
    end
    return "manual", st
  end,
  handle_events = function(events, from, st)
    local id = sluice._handle_id(from)
    for _, ev in ipairs(events) do
      st.running[#st.running + 1] = { task = sluice.task(st.cfg.handler, ev), event = ev, sub = id }
    end
    if not st.polling then
      st.polling = true
      sluice.self():send_after(1, "__sup_poll")
    end
    return {}, st
  end,
  handle_info = function(msg, st)
    local cfg = st.cfg
    if type(msg) == "table" and msg[1] == "__sup_ask" then
      local s = st.subs[msg[2]]
      if s then s.from:ask(s.max) end
      return {}, st
    end
    if msg ~= "__sup_poll" then return {}, st end
    local still = {}
    for _, r in ipairs(st.running) do
      if r.task:done() then
        local ok, err = pcall(r.task.await, r.task)
        if not ok and cfg.restart == "transient" then
          local now = os.time()
          local recent = {}
          for _, t in ipairs(st.restarts) do
            if now - t < cfg.max_seconds then recent[#recent + 1] = t end
          end
          recent[#recent + 1] = now
          st.restarts = recent
          if #recent > cfg.max_restarts then
            sluice.self():stop({ "error", "consumer_supervisor: too many restarts: " .. tostring(err), "" })
            return {}, st
          end
          still[#still + 1] = { task = sluice.task(cfg.handler, r.event), event = r.event, sub = r.sub }
        else
          if not ok then
            io.stderr:write("sluice: consumer_supervisor: handler failed: " .. tostring(err) .. "\n")
          end
          local s = st.subs[r.sub]
          if s then
            s.done = s.done + 1
            if s.done >= s.min then s.from:ask(s.done); s.done = 0 end
          end
        end
      else
        still[#still + 1] = r
      end
    end
    st.running = still
    if #still > 0 then sluice.self():send_after(1, "__sup_poll") else st.polling = false end
    return {}, st
  end,
  handle_cancel = function(_, from, st)
    st.subs[sluice._handle_id(from)] = nil
    return {}, st
  end,
}

--- sluice.consumer_supervisor{handler = fn, subscribe_to = {...}, restart =
--- "temporary" | "transient", max_restarts = 3, max_seconds = 5} -> stage
function M.consumer_supervisor(opts)
  local fn = "sluice.consumer_supervisor"
  if type(opts) ~= "table" then raise(fn, "expects a table of options, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not SUP_KEYS[k] then raise(fn, ("unknown option %s"):format(sluice.inspect(k)), 2) end
  end
  if type(opts.handler) ~= "function" then
    raise(fn, ("handler must be a function, got %s"):format(type(opts.handler)), 2)
  end
  local restart = opts.restart or "temporary"
  if restart == "permanent" then
    raise(fn, "restart \"permanent\" is not supported (use \"temporary\" or \"transient\")", 2)
  elseif restart ~= "temporary" and restart ~= "transient" then
    raise(fn, ("restart must be \"temporary\" or \"transient\", got %s"):format(sluice.inspect(restart)), 2)
  end
  local max_restarts, max_seconds = opts.max_restarts or 3, opts.max_seconds or 5
  if math.type(max_restarts) ~= "integer" or max_restarts < 0 then
    raise(fn, ("max_restarts must be an integer >= 0, got %s"):format(sluice.inspect(max_restarts)), 2)
  end
  if type(max_seconds) ~= "number" or not (max_seconds > 0) then   -- not NaN either
    raise(fn, ("max_seconds must be a number > 0, got %s"):format(sluice.inspect(max_seconds)), 2)
  end
  if type(opts.subscribe_to) == "table" then
    for _, entry in ipairs(opts.subscribe_to) do
      if type(entry) == "table" then check_demand(fn, entry, 2) end
    end
  end
  local cfg = { handler = opts.handler, restart = restart, max_restarts = max_restarts,
                max_seconds = max_seconds }
  local ok, stage = pcall(sluice.start, Supervisor, cfg,
    { _main = true, subscribe_to = opts.subscribe_to, name = opts.name })
  if not ok then reraise(fn, {}, stage, 2) end
  return stage
end

for k, v in pairs(M) do
  if k:sub(1, 1) ~= "_" then sluice[k] = v end
end
sluice._is_enumerable = is_enumerable
sluice._is_normal = M._is_normal

-- sluice.flow, sluice.window and sluice.redis load on first use.
setmetatable(sluice, {
  __index = function(t, k)
    if k == "flow" or k == "window" or k == "redis" then
      local mod = require("sluice." .. k)
      rawset(t, k, mod)
      return mod
    end
  end,
})

return M
