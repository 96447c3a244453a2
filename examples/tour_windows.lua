-- examples/tour_windows.lua: windows split a reduce's input; triggers say
-- when a window's accumulator is emitted. on_trigger gets the window as
-- {type, id, trigger}. One stage and one event per batch (max_demand = 1)
-- keep the output in one order.
local flow, W = sluice.flow, sluice.window
local function show(rows)
  for _, r in ipairs(rows) do print(table.concat(r, " ")) end
end
local function list(acc, _, w)         -- on_trigger: one row per firing
  return { { w.id, w.trigger, "[" .. table.concat(acc, " ") .. "]" } }
end
local function add(e, acc) acc[#acc + 1] = e[2]; return acc end

-- the global window (the default) with a trigger every 3 events
print("-- global, trigger_every(3)")
show(flow.from_enumerable({ { 0, "a" }, { 0, "b" }, { 0, "c" }, { 0, "d" }, { 0, "e" } },
    { stages = 1, max_demand = 1, window = W.global():trigger_every(3) })
  :reduce(function() return {} end, add):on_trigger(list):to_list())

-- fixed windows of 1 s on each event's own time (ms, field 1). A window ends
-- when the watermark (the latest time seen) passes its end; "late" comes
-- after 3500 ended its window and is dropped
local clicks = { { 0, "a" }, { 500, "b" }, { 1200, "c" }, { 3500, "d" }, { 900, "late" }, { 3600, "e" } }
print("-- fixed(1, second)")
local fixed = W.fixed(1, "second", { index = 1 })
show(flow.from_enumerable(clicks, { stages = 1, max_demand = 1, window = fixed })
  :reduce(function() return {} end, add):on_trigger(list):to_list())

-- allowed_lateness keeps an ended window open: "watermark" fires when the
-- watermark passes it, late events still count, and "done" comes at the end
print("-- fixed(1, second):allowed_lateness(1, minute)")
show(flow.from_enumerable(clicks, { stages = 1, max_demand = 1,
    window = fixed:allowed_lateness(1, "minute") })
  :reduce(function() return {} end, add):on_trigger(list):to_list())

-- a custom trigger: a "|" event fires "flush" on the open window
print("-- trigger(acc_fun, fun)")
local bar = W.global():trigger(function() return 0 end, function(events, n)
  if events[1][2] == "|" then return "trigger", "flush", {}, {}, n + 1 end
  return "cont", n
end)
show(flow.from_enumerable({ { 0, "a" }, { 0, "b" }, { 0, "|" }, { 0, "c" }, { 0, "|" }, { 0, "d" } },
    { stages = 1, max_demand = 1, window = bar })
  :reduce(function() return {} end, add):on_trigger(list):to_list())

-- trigger_periodically fires on a timer: its rows depend on timing, so
-- this prints what does not: it fired, and "done" saw every event
print("-- trigger_periodically(50, millisecond)")
local twenty = {}
for i = 1, 20 do twenty[i] = i end
local rows = flow.from_enumerable(twenty, { stages = 1, max_demand = 1,
    window = W.global():trigger_periodically(50, "millisecond") })
  :map(function(x) sluice.sleep(10); return x end)          -- 20 events, 10 ms each
  :reduce(function() return 0 end, function(_, n) return n + 1 end)
  :on_trigger(function(n, _, w) return { { w.trigger, n } } end)
  :to_list()
local periodic = 0
for _, r in ipairs(rows) do if r[1] == "periodically" then periodic = periodic + 1 end end
print("periodically fired: " .. tostring(periodic >= 1) .. "; " .. table.concat(rows[#rows], " "))
