-- Probes shared by the GenStage suites (tests/lua/test_stages*.lua): small
-- stages that record what they see, read back through stage:call or
-- through the reason they stop with, so that assertions never depend on
-- timing. Loaded with dofile; returns the table H.
local H = {}

-- The next k integers of a Counter-like state, as an events array.
local function take_next(st, k)
  local events = {}
  for i = 1, k do
    events[i] = st.next
    st.next = st.next + 1
  end
  return events
end

-- Counter: a producer emitting consecutive integers from arg.first (default
-- 0); stops emitting after arg.last (then finishes, as the end of stream).
-- call("demands") -> every handle_demand argument so far, call("log") ->
-- what handle_info and handle_cancel saw.
H.Counter = {
  type = "producer",
  init = function(arg)
    arg = arg or {}
    return {next = arg.first or 0, last = arg.last, demands = {}, log = {}}
  end,
  handle_demand = function(n, st)
    st.demands[#st.demands + 1] = n
    local events = {}
    for i = 1, n do
      if st.last and st.next > st.last then break end
      events[i] = st.next
      st.next = st.next + 1
    end
    if st.last and st.next > st.last then sluice.self():finish() end
    return events, st
  end,
  handle_info = function(msg, st)
    st.log[#st.log + 1] = {"info", msg, sluice.self():buffered()}
    return {}, st
  end,
  handle_cancel = function(reason, from, st)
    st.log[#st.log + 1] = {"cancel", reason}
    return {}, st
  end,
  handle_cast = function(msg, st)
    -- {"emit", k}: emits k events now, whatever the demand
    return take_next(st, msg[2]), st
  end,
  handle_call = function(req, from, st)
    -- {"emit", k}: the cast's events, sent before the reply (synchronous)
    if type(req) == "table" and req[1] == "emit" then
      return true, take_next(st, req[2]), st
    end
    return st[req], {}, st
  end,
}

-- Silent: a producer that never emits on demand; it remembers the demand
-- and emits on {"emit", k} as Counter does.
H.Silent = {
  type = "producer",
  init = function() return {next = 0, demands = {}, log = {}} end,
  handle_demand = function(n, st)
    st.demands[#st.demands + 1] = n
    return {}, st
  end,
  handle_cast = H.Counter.handle_cast,
  handle_info = H.Counter.handle_info,
  handle_cancel = H.Counter.handle_cancel,
  handle_call = H.Counter.handle_call,
}

-- Collector: a consumer that records its events and the size of every
-- handle_events batch. arg (all optional):
--   want = n     stop with {"done", events, batches} once n events came
--   report = true  stop with {"done", events, batches} when the last
--                  producer is gone (handle_cancel with producers == 0)
--   manual = n   manual demand: handle_subscribe asks n (if > 0)
-- call("events"|"batches"|"log"), call({"ask", n [, i]}) asks n on the
-- i-th subscription (manual), call({"cancel", r [, i]}).
H.Collector = {
  type = "consumer",
  init = function(arg)
    arg = arg or {}
    return {want = arg.want, report = arg.report, manual = arg.manual,
            events = {}, batches = {}, log = {}, froms = {}}
  end,
  handle_subscribe = function(kind, opts, from, st)
    st.froms[#st.froms + 1] = from
    st.log[#st.log + 1] = {"subscribe", kind}
    if st.manual then
      if st.manual > 0 then from:ask(st.manual) end
      return "manual", st
    end
    return "automatic", st
  end,
  handle_events = function(events, from, st)
    st.batches[#st.batches + 1] = #events
    for i = 1, #events do st.events[#st.events + 1] = events[i] end
    if st.want and #st.events >= st.want then
      sluice.self():stop({"done", st.events, st.batches})
    end
    return {}, st
  end,
  handle_cancel = function(reason, from, st)
    st.log[#st.log + 1] = {"cancel", reason}
    if st.report and sluice.self():stats().producers == 0 then
      sluice.self():stop({"done", st.events, st.batches})
    end
    return {}, st
  end,
  handle_info = function(msg, st)
    st.log[#st.log + 1] = {"info", msg}
    return {}, st
  end,
  handle_call = function(req, from, st)
    if type(req) == "table" and req[1] == "ask" then
      st.froms[req[3] or 1]:ask(req[2])
      return true, {}, st
    elseif type(req) == "table" and req[1] == "cancel" then
      st.froms[req[3] or 1]:cancel(req[2])
      return true, {}, st
    end
    return st[req], {}, st
  end,
}

-- Observer: a consumer without producers that logs what it is sent;
-- call("log") returns the log. Other stages report to it with :send.
H.Observer = {
  type = "consumer",
  init = function() return {} end,
  handle_events = function(events, from, st) return {}, st end,
  handle_info = function(msg, st)
    st[#st + 1] = msg
    return {}, st
  end,
  handle_call = function(req, from, st) return st, {}, st end,
}

-- A copy of spec with the given fields replaced.
function H.with(spec, fields)
  local t = {}
  for k, v in pairs(spec) do t[k] = v end
  for k, v in pairs(fields) do t[k] = v end
  return t
end

-- The integers first..last as an array.
function H.range(first, last)
  local t = {}
  for i = first, last do t[#t + 1] = i end
  return t
end

-- Waits (pumping the main thread) until fn() is true; raises after ms
-- (default 5000). For conditions reached by asynchronous work only.
function H.wait_until(fn, ms)
  for _ = 1, (ms or 5000) // 2 do
    if fn() then return end
    sluice.sleep(2)
  end
  if not fn() then error("wait_until: condition not reached", 2) end
end

-- The sluice binary running this suite: arg's lowest negative index (the
-- interpreter comes before its options, e.g. `build/sluice -w 2 x.lua`
-- puts the binary at arg[-3]).
function H.binary()
  local i = -1
  while arg[i - 1] ~= nil do i = i - 1 end
  return arg[i]
end

-- Runs a script in a separate sluice process; returns its stdout and
-- stderr together, and its exit status.
function H.run(src, workers)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local p = assert(io.popen(string.format("%s -w %d %s 2>&1", H.binary(), workers or 2, path)))
  local out = p:read("a")
  local _, _, code = p:close()
  os.remove(path)
  return out, code
end

-- The worker to pin a second stage to: 2 when there are two workers.
function H.other_worker()
  return math.min(2, sluice.workers())
end

return H
