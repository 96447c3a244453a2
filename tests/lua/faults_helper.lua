-- Probes shared by the fault-injection suites (tests/lua/test_faults.lua
-- for stages, tests/lua/test_faults_flow.lua for flows): a producer of
-- consecutive integers that can raise or finish at a given point, a
-- consumer that checks the order of what it gets and can raise or cancel
-- at a given event. Loaded with dofile; returns the table F.
local F = {}

-- The seeds of the seeded cases.
F.SEEDS = {1, 2, 3, 4, 5}

-- The first line of s.
function F.first_line(s)
  return (s:match("^[^\n]*"))
end

-- A producer of consecutive integers from 1; arg.fail_call = k raises in
-- the k-th handle_demand ("boom after m", m = the events emitted before);
-- arg.last = n finishes after n events.
F.Numbers = {
  type = "producer",
  init = function(arg) return {next = 1, calls = 0, fail_call = arg.fail_call, last = arg.last} end,
  handle_demand = function(n, st)
    st.calls = st.calls + 1
    if st.calls == st.fail_call then error("boom after " .. (st.next - 1), 0) end
    local events = {}
    for i = 1, n do
      if st.last and st.next > st.last then break end
      events[i] = st.next
      st.next = st.next + 1
    end
    if st.last and st.next > st.last then sluice.self():finish() end
    return events, st
  end,
}

-- A consumer that checks its events are 1, 2, 3, ... (each once, in
-- order); arg.fail_at = k raises on event k ("boom at k after m");
-- arg.cancel_at = k cancels its subscription with arg.reason on event k.
-- call("seen") -> the number of events so far, or an "out of order" string.
F.Checker = {
  type = "consumer",
  init = function(arg)
    arg = arg or {}
    return {seen = 0, bad = nil, fail_at = arg.fail_at, cancel_at = arg.cancel_at,
            reason = arg.reason, max = arg.max}
  end,
  handle_events = function(events, from, st)
    for _, e in ipairs(events) do
      if st.fail_at == e then error(("boom at %d after %d"):format(e, st.seen), 0) end
      if e ~= st.seen + 1 and not st.bad then st.bad = ("out of order: %s after %d"):format(e, st.seen) end
      st.seen = st.seen + 1
      if st.cancel_at == e then from:cancel(st.reason) end
    end
    return {}, st
  end,
  handle_call = function(req, from, st)
    if req == "seen" then return st.bad or st.seen, {}, st end
    return nil, {}, st
  end,
  terminate = function(reason, st)
    -- an end reason never carries the count; the count goes to the observer
    if st.observer then st.observer:send(st.bad or st.seen) end
  end,
}

return F
