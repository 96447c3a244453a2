-- Shared by the Flow suites (loaded with dofile): ordering helpers and a
-- recording consumer.
local H = {}

function H.sorted(t, less)
  table.sort(t, less)
  return t
end

-- Orders any mix of values by their printed form.
function H.by_inspect(a, b) return sluice.inspect(a) < sluice.inspect(b) end

-- A consumer that logs what is cast to it; call it with a field name.
H.Recorder = {
  type = "consumer",
  init = function() return { log = {} } end,
  handle_events = function(_, _, st) return {}, st end,
  handle_cast = function(msg, st)
    st.log[#st.log + 1] = msg
    return {}, st
  end,
  handle_call = function(req, _, st) return st[req], {}, st end,
}

return H
