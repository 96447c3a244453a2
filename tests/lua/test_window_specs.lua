-- sluice.window constructors and methods: the fields they produce and the
-- errors they raise (each naming the function and the value).
local lu = require("luaunit")
local W = sluice.window

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  lu.assertFalse(ok)
  return e
end

TestWindowSpecs = {}

function TestWindowSpecs:test_fields()
  lu.assertEquals(W.global().type, "global")
  lu.assertEquals(W.count(5).count, 5)
  lu.assertEquals(W.periodic(2, "second").size_ms, 2000)
  local f = W.fixed(1, "minute", {index = 1})
  lu.assertEquals({f.type, f.size_ms, f.by.index}, {"fixed", 60000, 1})
  local s = W.sliding(10, 5, "seconds", {field = "ts"})
  lu.assertEquals({s.size_ms, s.every_ms, s.by.field}, {10000, 5000, "ts"})
  local by = function(e) return e.t end
  local se = W.session(30, "millisecond", by, {field = "user"})
  lu.assertEquals({se.size_ms, se.by, se.key.field}, {30, by, "user"})
  local h = W.fixed(1, "hour", by):allowed_lateness(2, "minute"):trigger_every(10):trigger_periodically(5, "second")
  lu.assertEquals({h.size_ms, h.lateness_ms, h.every_n, h.periodically_ms}, {3600000, 120000, 10, 5000})
  lu.assertNil(f.lateness_ms)   -- methods return a new window
  local acc, fun = function() return 0 end, function() end
  local c = W.count(3):trigger(acc, fun)
  lu.assertEquals({c.custom.acc, c.custom.fun}, {acc, fun})
end

function TestWindowSpecs:test_errors()
  lu.assertEquals(err_of(W.count, 0), "sluice.window.count: n must be an integer >= 1, got 0")
  lu.assertEquals(err_of(W.fixed, 1, "sec", {index = 1}),
    'sluice.window.fixed: unit must be "millisecond", "second", "minute" or "hour", got "sec"')
  lu.assertEquals(err_of(W.fixed, 1, "second", {index = 0}),
    'sluice.window.fixed: by must be a function, {index = i} or {field = "name"}, got {index = 0}')
  lu.assertEquals(err_of(W.sliding, 5, 10, "second", {index = 1}),
    "sluice.window.sliding: every must be at most size, got every 10 and size 5")
  lu.assertEquals(err_of(W.periodic, 1.5, "second"), "sluice.window.periodic: n must be an integer >= 1, got 1.5")
  lu.assertEquals(err_of(W.count(2).allowed_lateness, W.count(2), 1, "second"),
    "sluice.window.allowed_lateness: only fixed, session and sliding windows have lateness, not count windows")
  lu.assertEquals(err_of(function() return W.count(2):trigger_every(2):trigger_every(3) end),
    "sluice.window.trigger_every: a window has at most one trigger_every or trigger")
  lu.assertEquals(err_of(W.global().trigger, W.global(), 1, function() end),
    "sluice.window.trigger: acc_fun must be a function, got number")
  local e = err_of(function() local w = W.fixed(1, "second", "ts"); return w end)
  lu.assertStrMatches(e, '.*test_window_specs.lua:%d+: sluice.window.fixed: by must be a function, {index = i} or {field = "name"}, got "ts"')
end

os.exit(lu.LuaUnit.run())
