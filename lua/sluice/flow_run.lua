-- sluice.flow_run: running a flow. The terminal methods of Flow (to_list,
-- run, stream, start, into_stages, into_specs; added to the metatable of
-- sluice.flow_check) materialise the flow with sluice.flow_plan, add its
-- final consumer, let the sources go (release) and raise the flow's error
-- when a stage fails: "sluice.flow: flow F layer L stage I (op): message"
-- plus the traceback (sluice.flow_error says how a stage stops). start,
-- into_stages and into_specs return a Running handle.
local sluice = require("sluice")
local check = require("sluice.flow_check")
local plan = require("sluice.flow_plan")

local inspect = sluice.inspect
local Flow, is_flow, fail = check.Flow, check.is_flow, check.fail
local check_demand, check_spec_opts, split_entry = check.check_demand, check.check_spec_opts, check.split_entry
local new_run, track, materialize = plan.new_run, plan.track, plan.materialize
local subscription, sub_options = plan.subscription, plan.sub_options

-- A consumer started by into_specs: the user's spec, stopping with
-- "normal" once all its producers have ended (after its own handle_cancel).
local function finishing_spec(spec)
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  local user_cancel = spec.handle_cancel
  s.handle_cancel = function(reason, from, state)
    local events
    if user_cancel then events, state = user_cancel(reason, from, state) end
    local me = sluice.self()
    if me:stats().producers == 0 then me:finish() end
    return events or {}, state
  end
  return s
end

-- Lets the paused sources go, once the final consumers have subscribed:
-- they were started with accumulated demand so that none can finish
-- before every stage has subscribed to it.
local function release(run)
  run.started = sluice._now_ms()
  require("sluice.tools").flow_started()   -- (sluice --graph: before anything can end)
  for _, s in ipairs(run.paused) do s:demand("forward") end
end

-- The flow's `progress` option: the first one set, from the last layer
-- back to the sources (nil: not set).
local function progress_opt(f)
  if f.opts.progress ~= nil then return f.opts.progress end
  for _, v in pairs(f.src) do
    if is_flow(v) then
      local o = progress_opt(v)
      if o ~= nil then return o end
    elseif type(v) == "table" and getmetatable(v) == nil then
      for _, g in ipairs(v) do
        if is_flow(g) then
          local o = progress_opt(g)
          if o ~= nil then return o end
        end
      end
    end
  end
  return nil
end

-- The progress line of a run (sluice.tools): its split sources and its
-- source producers of known size.
local function run_progress(run)
  local tools = require("sluice.tools")
  local sources = {}
  for _, entry in ipairs(run.progress) do sources[#sources + 1] = entry end
  for _, entry in ipairs(run.stages) do
    if entry.layer == 0 then sources[#sources + 1] = tools.size_of(entry.stage) end
  end
  return tools.progress(run.progress_opt, sources, run.started)
end

local function progress_free(run)
  require("sluice.tools").progress_free(run.progress)
end

-- timeout: nil (wait for running callbacks) or ms after which a callback
-- still running is interrupted (stage:stop's).
local function stop_all(run, timeout)
  local list = {}
  for i = #run.owned, 1, -1 do list[#list + 1] = run.owned[i] end
  pcall(sluice._stop_all, list, "shutdown", timeout)
end

local function is_error(reason)
  return type(reason) == "table" and reason[1] == "error"
end

-- Stops the flow and raises its error: that of the first stage (sources
-- first) that ended with an error, else `reason` (what the terminal saw: an
-- error message, or with `exit` set, the exit reason of the stage entry
-- `exit`).
local function raise_flow_error(run, reason, exit)
  stop_all(run)
  local where
  for _, entry in ipairs(run.stages) do
    -- a stage tells its consumers that it failed a moment before it is
    -- recorded as ended: give the stages the flow does not own that moment
    local s = entry.stage
    local ok, r = pcall(s.await, s, entry.owned and 0 or 20)
    if ok and is_error(r) then reason, where = r, entry; break end
  end
  local msg
  if is_error(reason) then
    msg = tostring(reason[2])
    -- a flow stage's message names it already; others get their place
    if where and not msg:find(where.label, 1, true) then msg = where.label .. ": " .. msg end
    local tb = reason[3]
    if tb ~= nil and tb ~= "" then msg = msg .. "\n" .. tostring(tb) end
  elseif type(reason) == "string" and not exit then
    msg = reason:gsub("^sluice%.stream: ", "", 1)
  else
    local what = type(exit) == "table" and exit.layer == 0 and "a producer" or "a stage"
    msg = what .. " ended with " .. inspect(reason)
  end
  error("sluice.flow: " .. msg, 0)
end

-- The first check of every terminal method: they start stages, which
-- only the main thread may do.
local function check_self(f, fn)
  if not is_flow(f) then fail(fn, "expected a flow, got " .. type(f), 2) end
  if not sluice._is_main() then fail(fn, "only the main thread may run flows", 2) end
end

-- The message of an error raised while starting the flow's stages: a
-- layer stage's init error comes through sluice.start, which adds its
-- prefix and a second traceback.
local function start_error(e)
  local msg = tostring(e)
  if msg:find("^sluice%.flow%.") then return msg end
  local inner = msg:match("sluice%.start: init failed: (.*)$")
  if inner and inner:find("^flow %d+ ") then
    local first = inner:find("\nstack traceback:", 1, true)
    local second = first and inner:find("\nstack traceback:", first + 1, true)
    return second and inner:sub(1, second - 1) or inner
  end
  return (msg:gsub("^sluice%.flow: ", "", 1))
end

-- Materialises f (with `extra` for its last layer); on failure stops what
-- was started and raises a flow error.
local function build(f, extra)
  local run = new_run()
  run.progress_opt = progress_opt(f)
  -- all the flow's stages share one snapshot of the globals
  sluice._pin_globals(true)
  local ok, outs = pcall(materialize, run, f, nil, extra)
  sluice._pin_globals(false)
  if not ok then
    stop_all(run)
    local msg = start_error(outs)   -- "sluice.flow.<fn>: ..." messages pass as they are
    error(msg:find("^sluice%.flow%.") and msg or "sluice.flow: " .. msg, 0)
  end
  return run, outs
end

-- Materialises f with a final main-thread collector; returns an iterator
-- over the flow's output and a closer that stops the flow.
-- The flow's errors are the caller's to raise: its stages print no crash
-- report of their own.
local function watch(run)
  for _, entry in ipairs(run.stages) do sluice._watch(entry.stage) end
end

local function open(f, fn, discard, extra)
  local run, outs = build(f, extra or discard and { discard = true } or nil)
  watch(run)
  local subs = {}
  for i, up in ipairs(outs) do subs[i] = subscription(up) end
  -- the stream draws the progress line while it waits
  local prog = run_progress(run)
  local ok, it, _, _, closer = pcall(sluice.stream, subs, { _progress = prog or false,
                                                   _label = ("flow %d collector"):format(run.id) })
  if not ok then
    stop_all(run)
    progress_free(run)
    error("sluice.flow." .. fn .. ": " .. tostring(it), 0)
  end
  release(run)
  local done = false
  local function close()
    if done then return end
    done = true
    if prog then prog:done() end
    getmetatable(closer).__close()
    stop_all(run)
    progress_free(run)
  end
  local function iter()
    if done then return nil end
    local ok, v = pcall(it)
    if not ok then
      done = true
      if prog then prog:done() end
      getmetatable(closer).__close()
      progress_free(run)
      raise_flow_error(run, v)
    end
    if v == nil then close() end
    return v
  end
  return iter, close, run
end

function Flow:to_list()
  check_self(self, "to_list")
  local iter, close = open(self, "to_list", false)
  local out, n = {}, 0
  local ok, err = pcall(function()
    for v in iter do n = n + 1; out[n] = v end
  end)
  close()
  if not ok then error(err, 0) end
  return out
end

function Flow:run()
  check_self(self, "run")
  local iter, close = open(self, "run", true)
  local ok, err = pcall(function() for _ in iter do end end)
  close()
  if not ok then error(err, 0) end
end

function Flow:stream()
  check_self(self, "stream")
  local iter, close = open(self, "stream", false)
  return iter, nil, nil, setmetatable({}, { __close = close })
end

-- The running flow handle of start / into_stages / into_specs.
local Running = {}
Running.__index = Running

-- The first check of every method of a running handle.
local function check_running(r, fn)
  if getmetatable(r) ~= Running then
    error(("sluice.flow: %s: expected a running flow as self (call it with ':'), got %s"):format(fn, inspect(r)), 3)
  end
end

--- running:await([timeout_ms]): returns once every stage of the flow has
--- ended; raises the flow's error (or a timeout) otherwise.
function Running:await(timeout)
  check_running(self, "await")
  if timeout ~= nil and (math.type(timeout) ~= "integer" or timeout < 0) then
    error("sluice.flow: await: timeout must be an integer >= 0, got " .. inspect(timeout), 2)
  end
  local run = self.run
  watch(run)
  local left = timeout
  local prog = run_progress(run)
  local function clear() if prog then prog:done() end end
  local gone_ms = 0
  while true do
    local waiting
    for _, entry in ipairs(run.stages) do
      local s = entry.stage
      if s:alive() then
        waiting = waiting or s
      else
        local reason = s:await()
        if not sluice._is_normal(reason) then clear(); progress_free(run); raise_flow_error(run, reason, entry) end
      end
    end
    if not waiting then clear(); progress_free(run); return end
    -- the consumers of the flow's output (its sink, into_specs or
    -- into_stages consumers, into_jsonl's writer) all gone while the flow
    -- runs: the output has nowhere to go, so the flow could never end
    -- (checked again after a moment, for a flow that is ending anyway)
    if run.outside and gone_ms > 200 then
      clear(); progress_free(run); stop_all(run)
      error(("sluice.flow: every consumer %s has ended (%s), so the flow's output has nowhere to go")
        :format(run.outside.lead, run.outside_why), 0)
    end
    if run.outside then
      local why
      for i, c in ipairs(run.outside) do
        if c:alive() then why = nil; break end
        local r = c:await()
        why = why or ("%s: %s"):format(run.outside.labels[i], is_error(r) and tostring(r[2]) or inspect(r))
      end
      run.outside_why = why
      gone_ms = why and gone_ms + 1 or 0
    end
    local step = 50
    if left then
      if left <= 0 then clear(); error(("sluice.flow: await timed out after %d ms"):format(timeout), 2) end
      step = math.min(step, left)
    end
    if prog then prog:tick() end
    local ok, err = pcall(waiting.await, waiting, step)
    if not ok then
      if not tostring(err):find("timed out", 1, true) then   -- Ctrl-C: the flow stops
        clear()
        stop_all(run)
        error(err, 0)
      end
      if left then left = left - step end
    end
    if gone_ms > 0 then gone_ms = gone_ms + step end
  end
end

--- running:stop([timeout_ms]): stops every stage the flow started; a
--- callback still running after timeout_ms is interrupted.
function Running:stop(timeout)
  check_running(self, "stop")
  if timeout ~= nil and (math.type(timeout) ~= "integer" or timeout < 0) then
    error("sluice.flow: stop: timeout must be an integer >= 0, got " .. inspect(timeout), 2)
  end
  stop_all(self.run, timeout)
end

--- running:send(msg): stage:send(msg) to every live stage of the flow's
--- layers (not its sources or sink); running:send({"trigger", name}) fires
--- the trigger `name` on every open window.
function Running:send(msg)
  check_running(self, "send")
  for _, entry in ipairs(self.run.stages) do
    if entry.layer and entry.layer >= 1 and entry.owned and entry.stage:alive()
      and not entry.label:find(" sink$") then
      entry.stage:send(msg)
    end
  end
end

--- running:stats() -> one stage:stats() table per live stage, with its
--- name, layer (0: sources) and partition.
function Running:stats()
  check_running(self, "stats")
  local out = {}
  for _, entry in ipairs(self.run.stages) do
    local s = entry.stage
    local ok, st = pcall(s.stats, s)
    if ok then
      st.name = entry.label
      st.layer, st.partition = entry.layer, entry.partition
      out[#out + 1] = st
    end
  end
  return out
end

-- The consumer of start(): drops what it gets and ends with the flow.
local Sink = require("sluice.flow_error").Drain

function Flow:start()
  check_self(self, "start")
  local run, outs = build(self, { discard = true })
  local subs = {}
  for i, up in ipairs(outs) do subs[i] = subscription(up) end
  local ok, sink = pcall(sluice.start, Sink, nil, { subscribe_to = subs })
  if not ok then stop_all(run); error("sluice.flow: " .. tostring(sink), 0) end
  track(run, sink, ("flow %d sink"):format(run.id), run.layers + 1, 1)
  run.outside = { sink, lead = "of the flow's output", labels = { ("flow %d sink"):format(run.id) } }
  release(run)
  return setmetatable({ run = run }, Running)
end

--- flow:into_jsonl(path) -> the number of events written: runs the flow
--- to its end, writing each event as one JSON line (a consumer on a
--- worker writes the file; lua-cjson encodes).
function Flow:into_jsonl(path)
  check_self(self, "into_jsonl")
  if type(path) ~= "string" then fail("into_jsonl", "path must be a string, got " .. inspect(path)) end
  local jsonl = require("sluice.jsonl")
  local ok, err = pcall(jsonl.json, "sluice.flow.into_jsonl")
  if not ok then error(err, 2) end
  local file, oerr = io.open(path, "wb")
  if not file then error("sluice.flow.into_jsonl: " .. oerr, 2) end
  file:close()
  local run, outs = build(self, nil)
  local subs = {}
  for i, up in ipairs(outs) do subs[i] = subscription(up) end
  local written = sluice._counter()
  local ok2, writer = pcall(sluice.start, jsonl.Writer, { path = path, written = written }, { subscribe_to = subs })
  if not ok2 then stop_all(run); error("sluice.flow: " .. tostring(writer), 0) end
  track(run, writer, ("flow %d consumer 1"):format(run.id), run.layers + 1, 1)
  run.outside = { writer, lead = "of the flow's output", labels = { ("flow %d consumer 1"):format(run.id) } }
  release(run)
  setmetatable({ run = run }, Running):await()
  return sluice._count(written)
end

--- flow:into_redis(opts) -> the number of entries written: runs the flow
--- to its end; its last layer's stages add their output to a stream
--- (sluice.redis, reference §13).
function Flow:into_redis(opts)
  check_self(self, "into_redis")
  local ok, cfg = pcall(require("sluice.redis")._into_cfg, opts)
  if not ok then error(cfg, 2) end
  cfg.written = sluice._counter()
  local iter, close = open(self, "into_redis", false, { sink = cfg })
  local ok2, err = pcall(function() for _ in iter do end end)
  close()
  local n = sluice._count(cfg.written)
  sluice._counter_free(cfg.written)
  if not ok2 then error(err, 0) end
  return n
end

local function into(f, fn, entries)
  local run, outs = build(f, nil)
  local layer = run.layers + 1
  local subscribed = {}
  local at
  local ok, err = pcall(function()
    for i, entry in ipairs(entries) do
      at = i
      local label = ("flow %d consumer %d"):format(run.id, i)
      if fn == "into_specs" then
        local subs = {}
        for j, up in ipairs(outs) do subs[j] = subscription(up, nil, entry[3]) end
        local c = track(run, sluice.start(finishing_spec(entry[1]), entry[2], { subscribe_to = subs }), label, layer, i)
        subscribed[#subscribed + 1] = c
      else
        local c, o = split_entry(entry)
        if not c:alive() then error("the consumer has stopped", 0) end
        for _, up in ipairs(outs) do sluice.subscribe(c, up.stage, sub_options(up, nil, o)) end
        subscribed[#subscribed + 1] = c
      end
    end
  end)
  if not ok then
    stop_all(run)
    if fn == "into_stages" then   -- sluice.subscribe's complaint about item `at`, without its location
      err = ("item %d: %s"):format(at, (tostring(err):gsub("^%[sluice[%w_.]*%]:%d+: ", ""):gsub("^sluice%.subscribe: ", "")))
    end
    error("sluice.flow." .. fn .. ": " .. tostring(err), 0)
  end
  run.outside = { lead = fn == "into_stages" and "given to into_stages" or "of the flow's output", labels = {} }
  for i, c in ipairs(subscribed) do
    run.outside[i] = c
    run.outside.labels[i] = fn == "into_stages" and ("consumer %d"):format(i) or ("flow %d consumer %d"):format(run.id, i)
  end
  -- a call to each consumer returns once its subscriptions are on their
  -- way to the producers; then the sources may start
  for _, c in ipairs(subscribed) do pcall(c.stats, c) end
  release(run)
  return setmetatable({ run = run }, Running)
end

function Flow:into_stages(consumers)
  check_self(self, "into_stages")
  if type(consumers) ~= "table" or #consumers == 0 then fail("into_stages", "expected a non-empty list of consumers, got " .. inspect(consumers)) end
  for i, entry in ipairs(consumers) do
    local s, o = split_entry(entry)
    if type(s) ~= "userdata" then
      fail("into_stages", ("item %d must be a stage or {stage, opts}, got %s"):format(i, inspect(entry)))
    end
    check_demand("into_stages", o, ("item %d: "):format(i), 2)
  end
  return (into(self, "into_stages", consumers))
end

function Flow:into_specs(specs)
  check_self(self, "into_specs")
  if type(specs) ~= "table" or #specs == 0 then fail("into_specs", "expected a non-empty list of {spec, arg, opts}, got " .. inspect(specs)) end
  for i, s in ipairs(specs) do
    if type(s) ~= "table" or type(s[1]) ~= "table" then
      fail("into_specs", ("item %d must be {spec, arg, opts}, got %s"):format(i, inspect(s)))
    end
    check_spec_opts("into_specs", s[3], i)
  end
  return (into(self, "into_specs", specs))
end

return Running
