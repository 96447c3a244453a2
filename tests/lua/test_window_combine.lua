-- Combining with fixed windows: a reduce with merge after a partition
-- with a fixed window. The stages before the partition send one partial
-- accumulator per run of events of one window; the windowed layer merges
-- them. Results equal those of the same flow without merge (and a
-- brute-force count); a late partial counts all its events as late;
-- explain says where it combines and where it does not.
local lu = require("luaunit")
local F, W = sluice.flow, sluice.window

local function zero() return 0 end
local function count(_, a) return a + 1 end
local function add(a, b) return a + b end
local function identity(x) return x end

-- {partition, window id, trigger, count} rows, sorted
local function rows(flow)
  local r = flow:on_trigger(function(acc, p, w) return { { p.index, w.id, w.trigger, acc } } end):to_list()
  table.sort(r, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  return r
end

-- A producer that emits what it is cast (and nothing on demand).
local function cast_source()
  return sluice.start({ type = "producer", handle_demand = function(_, s) return {}, s end,
    handle_cast = function(evs, s) return evs, s end }, nil)
end

-- Seeded event-time data in time order: {ts, user}.
local function events(seed, n)
  math.randomseed(seed)
  local ev, t = {}, 0
  for i = 1, n do
    t = t + math.random(0, 400)
    ev[i] = { t, "u" .. math.random(1, 7) }
  end
  return ev
end

TestWindowCombine = {}

-- Per partition and window the same counts as without merge, and as a
-- brute-force count, whatever the stages and batch sizes.
function TestWindowCombine:test_same_results_as_without_merge()
  for seed = 1, 6 do
    local ev = events(seed, 300)
    for _, cfg in ipairs({ { 1, 1, 1 }, { 1, 3, 7 }, { 2, 2, 50 }, { 3, 1, 1000 } }) do
      local up, down, md = cfg[1], cfg[2], cfg[3]
      local function flow(opts)
        return F.from_enumerable(ev, { stages = up, max_demand = md })
          :map(identity)
          :partition({ stages = down, key = { index = 2 }, window = W.fixed(1, "second", { index = 1 }) })
          :reduce(zero, count, opts)
      end
      local combined, plain = rows(flow({ merge = add })), rows(flow())
      lu.assertEquals(combined, plain, ("seed %d, cfg %d/%d/%d"):format(seed, up, down, md))
      -- brute force: the partition of each user as the dispatcher computes it
      local want = {}
      for _, e in ipairs(ev) do
        local p = down == 1 and 1 or sluice._hash(e[2], down)
        local id = e[1] // 1000 * 1000
        want[p] = want[p] or {}
        want[p][id] = (want[p][id] or 0) + 1
      end
      local got = {}
      for _, r in ipairs(combined) do
        lu.assertEquals(r[3], "done")
        got[r[1]] = got[r[1]] or {}
        if r[4] > 0 then got[r[1]][r[2]] = r[4] end
      end
      lu.assertEquals(got, want)
    end
  end
end

-- The window's time may come from a function; a split source combines too.
function TestWindowCombine:test_by_function_and_split_source()
  local function flow(opts)
    return F.from_enumerable(sluice.range(0, 49999), { stages = 2 })
      :map(function(i) return { ts = i, k = i % 5 } end)
      :partition({ stages = 3, key = { field = "k" }, window = W.fixed(10, "second", function(e) return e.ts end) })
      :reduce(zero, count, opts)
  end
  local combined = rows(flow({ merge = add }))
  lu.assertEquals(combined, rows(flow()))
  local per = {}
  for _, r in ipairs(combined) do per[r[2]] = (per[r[2]] or 0) + r[4] end
  lu.assertEquals(per, { [0] = 10000, [10000] = 10000, [20000] = 10000, [30000] = 10000, [40000] = 10000 })
end

-- Lateness: "watermark", a late event taken within the lateness, then
-- "done" (gap windows too), as without merge.
function TestWindowCombine:test_lateness_and_triggers()
  local ev = { { 100 }, { 1200 }, { 2500 }, { 300 }, { 2600 }, { 9000 } }
  local function flow(opts)
    return F.from_enumerable(ev, { stages = 1, max_demand = 1 })
      :map(identity)
      :partition({ stages = 1, window = W.fixed(1, "second", { index = 1 }):allowed_lateness(1, "second") })
      :reduce(zero, count, opts)
  end
  local combined = rows(flow({ merge = add }))
  lu.assertEquals(combined, rows(flow()))
  local want = {
    { 1, 0, "done", 2 }, { 1, 0, "watermark", 1 },
    { 1, 1000, "done", 1 }, { 1, 1000, "watermark", 1 },
    { 1, 2000, "done", 2 }, { 1, 2000, "watermark", 2 },
  }
  for id = 3000, 8000, 1000 do   -- the gap windows before 9000
    want[#want + 1] = { 1, id, "done", 0 }
    want[#want + 1] = { 1, id, "watermark", 0 }
  end
  want[#want + 1] = { 1, 9000, "done", 1 }
  lu.assertEquals(combined, want)
end

-- A partial that arrives after its window closed is dropped with all the
-- events it stands for: stats().late counts events, not partials.
function TestWindowCombine:test_late_partials_count_their_events()
  local src = cast_source()
  local run = F.from_stages({ src }, { stages = 1 })
    :map(identity)
    :partition({ stages = 1, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count, { merge = add })
    :on_trigger(function(acc, _, w) return { { w.id, acc } } end)
    :start()
  src:cast({ { 5000 } })
  src:cast({ { 6100 } })
  src:cast({ { 1000 }, { 1100 }, { 1200 } })   -- one batch: one partial of 3 events, late
  src:cast({ { 6200 } })
  local late
  for _ = 1, 400 do
    for _, x in ipairs(run:stats()) do
      if x.layer == 2 then late = x.late end
    end
    if late == 3 then break end
    sluice.sleep(5)
  end
  lu.assertEquals(late, 3)
  src:stop()
  run:await()
end

-- Where it combines, and why not elsewhere.
function TestWindowCombine:test_explain()
  local text = F.from_enumerable(sluice.range(1, 10), { stages = 2 })
    :map(function(i) return { i, i } end)
    :partition({ stages = 2, key = { index = 1 }, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count, { merge = add })
    :explain()
  lu.assertStrContains(text, "combining for layer 2: runs its operations and reducer here (per partition and window)")
  lu.assertStrContains(text, "combining: per partition and window: each stage of layer 1 keeps one accumulator "
    .. "per partition for each run of events of one window and sends them after each batch")
  for _, w in ipairs({ W.fixed(1, "second", { index = 1 }):trigger_every(10), W.count(10),
                       W.session(1, "second", { index = 1 }), W.sliding(2, 1, "second", { index = 1 }) }) do
    local t = F.from_enumerable(sluice.range(1, 10), { stages = 2 })
      :map(function(i) return { i, i } end)
      :partition({ stages = 2, window = w })
      :reduce(zero, count, { merge = add })
      :explain()
    lu.assertStrContains(t, "combining: none (only fixed windows without trigger_every or a custom trigger combine)")
  end
end

-- The combining layer reads the window's time and the partition key in
-- one C call where both are {index}/{field} specs: per partition and
-- window the same counts as without merge, for index and field specs, a
-- key that is the time, negative times (the window's start rounds down),
-- and the values the call leaves to the loop's own code: an integral
-- float time, a table key, a missing key.
function TestWindowCombine:test_time_and_key_specs()
  local ev, want = {}, {}
  for i = 1, 240 do
    local ts = (i - 120) * 37
    local k = ({ "a", 7, 2.5, true })[i % 4 + 1]
    if i % 17 == 0 then k = { i % 3 } end
    if i % 19 == 0 then k = nil end
    local id = ts // 100 * 100
    want[id] = (want[id] or 0) + 1
    if i % 23 == 0 then ts = ts + 0.0 end
    ev[i] = { ts, k, ts = ts, k = k }
  end
  local specs = { { { index = 2 }, { index = 1 } }, { { field = "k" }, { field = "ts" } },
                  { { index = 1 }, { index = 1 } }, { { field = "ts" }, { index = 1 } } }
  for n, sp in ipairs(specs) do
    for _, down in ipairs({ 1, 2, 3 }) do
      local function flow(opts)
        return F.from_enumerable(ev, { stages = 1, max_demand = 9 })
          :map(identity)
          :partition({ stages = down, key = sp[1], window = W.fixed(100, "millisecond", sp[2]) })
          :reduce(zero, count, opts)
      end
      local combined = rows(flow({ merge = add }))
      lu.assertEquals(combined, rows(flow()), ("specs %d, %d stages"):format(n, down))
      local got = {}
      for _, r in ipairs(combined) do
        if r[4] > 0 then got[r[2]] = (got[r[2]] or 0) + r[4] end
      end
      lu.assertEquals(got, want)
    end
  end
end

-- An event time that is not an integer is the window's error, raised
-- where the combining layer reads it; an integral float is its integer.
function TestWindowCombine:test_bad_times()
  for _, key in ipairs({ false, { index = 1 } }) do
    for _, bad in ipairs({ { "x", '"x"' }, { 1.5, "1.5" } }) do
      local ok, err = pcall(function()
        return F.from_enumerable({ { 1 }, { bad[1] } }, { stages = 1 })
          :map(identity)
          :partition({ stages = 2, key = key or nil, window = W.fixed(1, "second", { index = 1 }) })
          :reduce(zero, count, { merge = add })
          :to_list()
      end)
      lu.assertFalse(ok)
      lu.assertStrContains(err, " layer 1 stage 1 (window): the event time (by) must be an integer of ms, got "
        .. bad[2])
    end
  end
  local ok, err = pcall(function()
    return F.from_enumerable({ { 1 }, "x" }, { stages = 1 })
      :map(identity)
      :partition({ stages = 2, key = { index = 1 }, window = W.fixed(1, "second", { index = 1 }) })
      :reduce(zero, count, { merge = add })
      :to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, " layer 1 stage 1 (window): the event time (by) must be an integer of ms, got nil")
  local r = rows(F.from_enumerable({ { 1500.0 }, { 2500 } }, { stages = 1 })
    :map(identity)
    :partition({ stages = 1, window = W.fixed(1, "second", { index = 1 }) })
    :reduce(zero, count, { merge = add }))
  lu.assertEquals(r, { { 1, 1000, "done", 1 }, { 1, 2000, "done", 1 } })
end

os.exit(lu.LuaUnit.run())
