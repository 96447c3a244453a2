-- sluice.window: window descriptions for flow layers.
--
-- A window is a plain table (it crosses to the workers inside the layer's
-- configuration, where lua/window.c hands it to the engine's window state
-- machine); its methods (allowed_lateness, trigger_every,
-- trigger_periodically, trigger) return a new window and are checked here,
-- on the main thread, when they are called. Fields:
--   type            "global" | "count" | "fixed" | "periodic" | "session" | "sliding"
--   count           count: n
--   size_ms         fixed, sliding: length; periodic: period; session: gap
--   every_ms        sliding: a window starts every every_ms
--   by              fixed, session, sliding: event time in ms, a function
--                   or a key spec {index = i} / {field = "name"}
--   key             session: per-key sessions (function or key spec)
--   lateness_ms     allowed lateness (fixed, session, sliding)
--   every_n         trigger_every(n)
--   periodically_ms trigger_periodically
--   custom          trigger(acc_fun, fun): {acc = acc_fun, fun = fun}
local inspect = require("sluice.inspect")

local W = {}
local Window = {}
Window.__index = Window

local UNITS = { millisecond = 1, second = 1000, minute = 60000, hour = 3600000 }

-- Raises "sluice.window.<fn>: msg" at the caller's line (the first frame
-- outside this file).
local function fail(fn, msg)
  local level = 2
  while true do
    local info = debug.getinfo(level + 1, "S")
    if not info or info.source ~= "=[sluice.window]" then break end
    level = level + 1
  end
  error("sluice.window." .. fn .. ": " .. msg, level + 1)
end

local function check_count(fn, what, n)
  if math.type(n) ~= "integer" or n < 1 then
    fail(fn, ("%s must be an integer >= 1, got %s"):format(what, inspect(n)))
  end
end

-- n units in ms
local function duration(fn, what, n, unit)
  check_count(fn, what, n)
  local key = type(unit) == "string" and unit:gsub("s$", "") or nil
  local ms = key and UNITS[key]
  if not ms then
    fail(fn, ("unit must be \"millisecond\", \"second\", \"minute\" or \"hour\", got %s"):format(inspect(unit)))
  end
  if n > (1 << 61) // ms then fail(fn, ("%s is too large, got %d %s"):format(what, n, unit)) end
  return n * ms
end

local function check_part(fn, what, v)
  if type(v) == "function" then return v end
  if type(v) == "table" then
    local i, f = v.index, v.field
    if (math.type(i) == "integer" and i >= 1 and f == nil) or (i == nil and type(f) == "string") then
      return { index = i, field = f }
    end
  end
  fail(fn, ("%s must be a function, {index = i} or {field = \"name\"}, got %s"):format(what, inspect(v)))
end

local function new(t)
  return setmetatable(t, Window)
end

local function copy(w, changes)
  local t = {}
  for k, v in pairs(w) do t[k] = v end
  for k, v in pairs(changes) do t[k] = v end
  return new(t)
end

--- W.global(): one window, id "global", fired "done" when every upstream
--- producer has finished.
function W.global()
  return new({ type = "global" })
end

--- W.count(n): a window every n events entering the stage; ids 1, 2, ...
function W.count(n)
  check_count("count", "n", n)
  return new({ type = "count", count = n })
end

--- W.periodic(n, unit): processing-time windows of n units; ids 1, 2, ...
function W.periodic(n, unit)
  return new({ type = "periodic", size_ms = duration("periodic", "n", n, unit) })
end

--- W.fixed(n, unit, by): event-time windows of n units; by(event) gives
--- the event's time in ms (or a key spec); id = the window's start in ms.
function W.fixed(n, unit, by)
  local size = duration("fixed", "n", n, unit)
  return new({ type = "fixed", size_ms = size, by = check_part("fixed", "by", by) })
end

--- W.sliding(size, every, unit, by): windows of `size` units starting
--- every `every` units; an event belongs to each window that covers it.
function W.sliding(size, every, unit, by)
  local s = duration("sliding", "size", size, unit)
  local e = duration("sliding", "every", every, unit)
  if e > s then fail("sliding", ("every must be at most size, got every %d and size %d"):format(every, size)) end
  return new({ type = "sliding", size_ms = s, every_ms = e, by = check_part("sliding", "by", by) })
end

--- W.session(gap, unit, by [, key]): event-time sessions: an event at most
--- gap after the previous one joins its session; with key, per key.
function W.session(gap, unit, by, key)
  local g = duration("session", "gap", gap, unit)
  local t = { type = "session", size_ms = g, by = check_part("session", "by", by) }
  if key ~= nil then t.key = check_part("session", "key", key) end
  return new(t)
end

--- w:allowed_lateness(n, unit): a closed window fires "watermark", takes
--- late events for n units more, then fires "done".
function Window:allowed_lateness(n, unit)
  if self.type ~= "fixed" and self.type ~= "session" and self.type ~= "sliding" then
    fail("allowed_lateness", ("only fixed, session and sliding windows have lateness, not %s windows")
      :format(self.type))
  end
  if n == 0 then return copy(self, { lateness_ms = 0 }) end
  return copy(self, { lateness_ms = duration("allowed_lateness", "n", n, unit) })
end

local function one_trigger(w, fn)
  if w.every_n or w.custom then
    fail(fn, "a window has at most one trigger_every or trigger")
  end
end

--- w:trigger_every(n): fires "every" after each n events of a window.
function Window:trigger_every(n)
  one_trigger(self, "trigger_every")
  check_count("trigger_every", "n", n)
  return copy(self, { every_n = n })
end

--- w:trigger_periodically(n, unit): fires "periodically" on every open
--- window each period.
function Window:trigger_periodically(n, unit)
  if self.periodically_ms then fail("trigger_periodically", "a window has at most one trigger_periodically") end
  return copy(self, { periodically_ms = duration("trigger_periodically", "n", n, unit) })
end

--- w:trigger(acc_fun, fun): a custom trigger; fun(events, tacc) sees each
--- batch before the layer's operations and returns "cont", tacc |
--- "cont", events, tacc | "trigger", name, pre, post, tacc.
function Window:trigger(acc_fun, fun)
  one_trigger(self, "trigger")
  if type(acc_fun) ~= "function" then fail("trigger", "acc_fun must be a function, got " .. type(acc_fun)) end
  if type(fun) ~= "function" then fail("trigger", "fun must be a function, got " .. type(fun)) end
  return copy(self, { custom = { acc = acc_fun, fun = fun } })
end

return W
