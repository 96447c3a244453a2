-- stress.lua: conservation under random topologies.
--   sluice -w W tests/stress/stress.lua FIRST [LAST]
-- Each seed builds one random topology (math.randomseed(seed) decides
-- everything): a chain of producer_consumers, fan-out/fan-in, broadcast
-- with selectors, partition, consumer_supervisor, a flow with partitions,
-- a join, or a flow with a window (global, count, fixed, sliding,
-- session), with random max_demand/min_demand, buffer sizes, stage counts,
-- and slow (sluice.sleep) and bursty stages. Every event carries a tag
-- ({source, seq}); the sinks check that each expected event arrived
-- exactly once, in order where the API promises it (one producer to one
-- consumer through a chain; per producer within a partition or a
-- broadcast subscription), and windowed results are compared with a
-- brute-force computation over the same events. A failing seed prints
-- the command that replays it. Ends with "N passed, M failed" (seeds).
local W = sluice.window
local flow = sluice.flow
local first = math.tointeger(tonumber(arg[1] or "1"))
local last = math.tointeger(tonumber(arg[2] or tostring(first)))
local workers = sluice.workers()
local bin = arg[0]
do
  local i = -1
  while arg[i] do bin = arg[i]; i = i - 1 end
end
local DEADLINE_MS = 20000

local R = math.random
local function pick(t) return t[R(#t)] end

-- ---- stage specs (they cross to the workers; no upvalues but sluice) ----

-- A producer of n events {src, seq} that emits up to demand + burst at a
-- time (the excess waits in its buffer) and finishes after the last one.
local Src = { type = "producer",
  init = function(a) return { src = a.src, n = a.n, burst = a.burst, i = 0 } end,
  handle_demand = function(d, st)
    local out = {}
    local k = math.min(d + st.burst, st.n - st.i)
    for j = 1, k do out[j] = { st.src, st.i + j } end
    st.i = st.i + k
    if st.i == st.n then sluice.self():finish() end
    return out, st
  end,
}

-- A producer_consumer that passes events on, notes its id in e[3] when no
-- stage before it has, and sleeps now and then.
local Pass = { type = "producer_consumer",
  init = function(a) return a end,
  handle_events = function(evs, _, st)
    for _, e in ipairs(evs) do
      if e[3] == nil then e[3] = st.id end
      if st.slow > 0 and e[2] % st.slow == 0 then sluice.sleep(1) end
    end
    return evs, st
  end,
}

-- A sink: keeps what arrives; "count" and "all" calls read it. Events
-- also come as casts (from consumer_supervisor handlers).
local Sink = { type = "consumer",
  init = function(a) return { got = {}, slow = a.slow } end,
  handle_events = function(evs, _, st)
    for _, e in ipairs(evs) do st.got[#st.got + 1] = e end
    if st.slow > 0 and #st.got % st.slow == 0 then sluice.sleep(1) end
    return {}, st
  end,
  handle_cast = function(e, st) st.got[#st.got + 1] = e; return {}, st end,
  handle_call = function(req, _, st)
    if req == "count" then return #st.got, {}, st end
    return st.got, {}, st
  end,
}

-- ---- helpers ----------------------------------------------------------------

local started = {}
local function start(spec, a, opts)
  local s = sluice.start(spec, a, opts)
  started[#started + 1] = s
  return s
end

local function demand_opts()
  local max = pick({ 1, 2, 3, 5, 8, 13, 50, 1000 })
  return max, R(0, max - 1)
end

local function sub(p, extra)
  local max, min = demand_opts()
  local t = { p, max_demand = max, min_demand = min, cancel = "temporary" }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function key(e) return e[1] .. ":" .. e[2] end

-- Compares what a sink got with the expected events: each exactly once;
-- order(e) (optional) names a group within which seq must increase.
local function check_events(got, expected, what, order)
  local want = {}
  for _, e in ipairs(expected) do want[key(e)] = (want[key(e)] or 0) + 1 end
  local seen, last = {}, {}
  for _, e in ipairs(got) do
    local k = key(e)
    seen[k] = (seen[k] or 0) + 1
    if not want[k] then error(string.format("%s: unexpected event %s", what, k), 0) end
    if seen[k] > want[k] then error(string.format("%s: event %s arrived twice", what, k), 0) end
    if order then
      local g = order(e)
      if last[g] and e[2] <= last[g] then
        error(string.format("%s: event %s after seq %d in group %s", what, k, last[g], g), 0)
      end
      last[g] = e[2]
    end
  end
  for k, n in pairs(want) do
    if (seen[k] or 0) ~= n then error(string.format("%s: event %s missing (got %d of %d events)", what, k, #got, #expected), 0) end
  end
end

-- Waits until every sink has at least its count, then reads them all.
local function collect(sinks)
  local t0 = os.clock()
  local deadline = DEADLINE_MS
  for _, s in ipairs(sinks) do
    local waited = 0
    while s.stage:call("count") < #s.expected do
      if waited > deadline then break end
      sluice.sleep(2)
      waited = waited + 2
    end
  end
  sluice.sleep(5)   -- anything extra (a duplicate) has time to show
  for _, s in ipairs(sinks) do
    check_events(s.stage:call("all"), s.expected, s.what, s.order)
  end
  return os.clock() - t0
end

local function events(src, n)
  local t = {}
  for i = 1, n do t[i] = { src, i } end
  return t
end

local function source(src, n, opts)
  opts = opts or {}
  opts.demand = "accumulate"
  opts.buffer_size = pick({ n + 64, 100000, math.huge })
  return start(Src, { src = src, n = n, burst = pick({ 0, 0, 1, 7, 100 }) }, opts)
end

local function go(...) for _, p in ipairs({ ... }) do p:demand("forward") end end

-- ---- stage topologies ------------------------------------------------------

local T = {}

-- P -> PC x k -> C: one producer to one consumer keeps order.
function T.chain()
  local n = R(1, 400)
  local p = source("p", n)
  local up = p
  for i = 1, R(0, 4) do
    up = start(Pass, { id = i, slow = pick({ 0, 0, 37, 101 }) },
      { subscribe_to = { sub(up, { cancel = "permanent" }) }, buffer_size = pick({ 100000, math.huge }) })
  end
  local c = start(Sink, { slow = pick({ 0, 50 }) }, { subscribe_to = { sub(up) } })
  go(p)
  collect({ { stage = c, expected = events("p", n), what = "chain sink", order = function() return "all" end } })
end

-- producers -> demand dispatcher -> m PCs -> one consumer: order per
-- producer and path.
function T.fan()
  local np, m = R(1, 3), R(1, 4)
  local ps, exp = {}, {}
  for i = 1, np do
    local n = R(0, 300)
    ps[i] = source("p" .. i, n, { dispatcher = sluice.dispatcher.demand({ shuffle_demands_on_first_dispatch = R(2) == 1 }) })
    for _, e in ipairs(events("p" .. i, n)) do exp[#exp + 1] = e end
  end
  -- one max_demand for every subscription to a producer: its demand
  -- dispatcher expects every ask within the first one's maximum
  local fmax, fmin = demand_opts()
  local pcs = {}
  for j = 1, m do
    local subs = {}
    -- transient: a permanent subscription would stop the stage when the
    -- first of its producers ends, and the others' events would be lost
    for i = 1, np do
      subs[i] = { ps[i], max_demand = fmax, min_demand = fmin, cancel = "transient" }
    end
    pcs[j] = start(Pass, { id = j, slow = pick({ 0, 13, 0 }) }, { subscribe_to = subs })
  end
  local subs = {}
  for j = 1, m do subs[j] = sub(pcs[j]) end
  local c = start(Sink, { slow = 0 }, { subscribe_to = subs })
  go(table.unpack(ps))
  collect({ { stage = c, expected = exp, what = "fan-in sink", order = function(e) return e[1] .. "/" .. e[3] end } })
end

-- broadcast with selectors: each consumer gets exactly its selection, in
-- order.
function T.broadcast()
  local n, k = R(1, 300), R(1, 4)
  local p = source("p", n, { dispatcher = sluice.dispatcher.broadcast({}) })
  local sinks = {}
  for i = 1, k do
    local m, r = R(1, 3), 0
    r = R(0, m - 1)
    local sel = function(e) return e[2] % m == r end
    local c = start(Sink, { slow = pick({ 0, 30 }) }, { subscribe_to = { sub(p, { selector = sel }) } })
    local exp = {}
    for _, e in ipairs(events("p", n)) do if sel(e) then exp[#exp + 1] = e end end
    sinks[i] = { stage = c, expected = exp, what = "broadcast sink " .. i, order = function() return "all" end }
  end
  go(p)
  collect(sinks)
end

-- partition: each partition's consumer gets exactly that partition's
-- events, per producer in order.
function T.partition()
  local np, n = R(1, 2), R(1, 300)
  local parts = R(1, 4)
  local how = pick({ "hash", "key", "none" })
  local disp
  if how == "hash" then
    disp = sluice.dispatcher.partition({ partitions = parts, hash = function(e) return e[2] % parts + 1 end })
  elseif how == "key" then
    disp = sluice.dispatcher.partition({ partitions = parts, key = { index = 2 } })
  else
    disp = sluice.dispatcher.partition({ partitions = parts })
  end
  local ps, all = {}, {}
  for i = 1, np do
    ps[i] = source("p" .. i, n, { dispatcher = disp })
    for _, e in ipairs(events("p" .. i, n)) do all[#all + 1] = e end
  end
  local sinks = {}
  for j = 1, parts do
    local subs = {}
    for i = 1, np do subs[i] = sub(ps[i], { partition = j }) end
    local c = start(Sink, { slow = 0 }, { subscribe_to = subs })
    local exp = {}
    for _, e in ipairs(all) do
      local pj = how == "hash" and e[2] % parts + 1 or how == "key" and sluice._hash(e[2], parts) or nil
      if pj == j then exp[#exp + 1] = e end
    end
    sinks[j] = { stage = c, expected = exp, what = "partition " .. j, order = function(e) return e[1] end }
  end
  go(table.unpack(ps))
  if how == "none" then
    -- which partition is the engine's hash of the whole event: check the
    -- union, and that no event is in two partitions
    local t0 = 0
    local total = 0
    while total < #all and t0 < DEADLINE_MS do
      total = 0
      for _, s in ipairs(sinks) do total = total + s.stage:call("count") end
      sluice.sleep(2); t0 = t0 + 2
    end
    sluice.sleep(5)
    local got = {}
    for _, s in ipairs(sinks) do
      local g = s.stage:call("all")
      check_events(g, g, s.what, function(e) return e[1] end)
      for _, e in ipairs(g) do got[#got + 1] = e end
    end
    check_events(got, all, "partitions together")
  else
    collect(sinks)
  end
end

-- consumer_supervisor: each event's handler runs exactly once.
function T.supervisor()
  local n = R(1, 150)
  local name = "stress_sink_" .. math.random(1 << 30)
  local c = start(Sink, { slow = 0 }, { name = name })
  local p = source("p", n)
  local max = R(1, 20)
  local slow = pick({ 0, 7 })
  local sup = sluice.consumer_supervisor({
    subscribe_to = { { p, max_demand = max, min_demand = R(0, max - 1) } },
    handler = function(e)
      if slow > 0 and e[2] % slow == 0 then sluice.sleep(1) end
      sluice.whereis(name):cast(e)
    end,
  })
  started[#started + 1] = sup
  go(p)
  collect({ { stage = c, expected = events("p", n), what = "supervisor sink" } })
end

-- ---- flows -------------------------------------------------------------------

local function lopts(o)
  o = o or {}
  local max, min = demand_opts()
  o.max_demand, o.min_demand = max, min
  o.stages = o.stages or R(1, 4)
  if R(3) == 1 then o.buffer_size = pick({ 100000, math.huge }) end
  return o
end

local function multiset_equal(got, want, what, tostr)
  local a = {}
  for _, e in ipairs(want) do local k = tostr(e); a[k] = (a[k] or 0) + 1 end
  for _, e in ipairs(got) do
    local k = tostr(e)
    if not a[k] then error(string.format("%s: unexpected or extra %s", what, k), 0) end
    a[k] = a[k] - 1
    if a[k] == 0 then a[k] = nil end
  end
  local k = next(a)
  if k then error(string.format("%s: missing %s (got %d of %d)", what, k, #got, #want), 0) end
end

-- map/filter through partitions; with one stage everywhere, in order.
function T.flow_ops()
  local nsrc = R(1, 3)
  local enums, all = {}, {}
  for i = 1, nsrc do
    local n = R(0, 300)
    enums[i] = events("s" .. i, n)
    for _, e in ipairs(enums[i]) do all[#all + 1] = e end
  end
  local ordered = nsrc == 1 and R(2) == 1
  local so = lopts(ordered and { stages = 1 } or nil)
  local f = flow.from_enumerables(enums, so)
  local m = R(1, 5)
  f = f:map(function(e) return { e[1], e[2], e[2] * 3 } end):filter(function(e) return e[2] % m ~= 0 end)
  local layers = R(1, 3)
  for _ = 1, layers do
    f = f:partition(lopts({ stages = ordered and 1 or R(1, 4), key = pick({ { index = 2 }, nil }) }))
      :map(function(e) e[3] = e[3] + 1; return e end)
  end
  local got = f:to_list()
  local want = {}
  for _, e in ipairs(all) do
    if e[2] % m ~= 0 then want[#want + 1] = { e[1], e[2], e[2] * 3 + layers } end
  end
  multiset_equal(got, want, "flow_ops", function(e) return e[1] .. ":" .. e[2] .. ":" .. e[3] end)
  if ordered then check_events(got, want, "flow_ops order", function() return "all" end) end
end

-- reduce_by_key after a partition by key: each key's sum exactly once.
function T.flow_reduce()
  local n, keys = R(1, 500), R(1, 20)
  local ev = {}
  for i = 1, n do ev[i] = { "k" .. (i * 7 % keys), i } end
  local got = flow.from_enumerable(ev, lopts()):partition(lopts({ key = { index = 1 } }))
    :reduce_by_key(function(a, b) return a + b end):to_list()
  local want = {}
  for _, e in ipairs(ev) do want[e[1]] = (want[e[1]] or 0) + e[2] end
  local wl = {}
  for k, v in pairs(want) do wl[#wl + 1] = { k, v } end
  multiset_equal(got, wl, "reduce_by_key", function(e) return e[1] .. "=" .. e[2] end)
end

-- bounded_join: the brute-force join of the two sides.
function T.flow_join()
  local mode = pick({ "inner", "left_outer", "right_outer", "full_outer" })
  local nl, nr, keys = R(0, 60), R(0, 60), R(1, 12)
  local L, Rt = {}, {}
  for i = 1, nl do L[i] = { R(1, keys), "l" .. i } end
  for i = 1, nr do Rt[i] = { R(1, keys), "r" .. i } end
  local got = flow.bounded_join(mode, flow.from_enumerable(L, lopts()), flow.from_enumerable(Rt, lopts()),
    function(e) return e[1] end, function(e) return e[1] end,
    function(l, r) return (l and l[2] or "-") .. "+" .. (r and r[2] or "-") end, { stages = R(1, 4) })
    :to_list()
  local want, lm, rm = {}, {}, {}
  for _, l in ipairs(L) do
    for _, r in ipairs(Rt) do
      if l[1] == r[1] then want[#want + 1] = l[2] .. "+" .. r[2]; lm[l] = true; rm[r] = true end
    end
  end
  if mode == "left_outer" or mode == "full_outer" then
    for _, l in ipairs(L) do if not lm[l] then want[#want + 1] = l[2] .. "+-" end end
  end
  if mode == "right_outer" or mode == "full_outer" then
    for _, r in ipairs(Rt) do if not rm[r] then want[#want + 1] = "-+" .. r[2] end end
  end
  multiset_equal(got, want, "bounded_join " .. mode, tostring)
end

local function fdiv(a, b) return a // b end

-- windows: events {t, key, v} with non-decreasing times from one source;
-- per window the count and sum of its events, against brute force.
function T.flow_window()
  local kind = pick({ "global", "count", "fixed", "sliding", "session" })
  local n = R(1, 300)
  local ev, t = {}, R(-50, 50)
  for i = 1, n do
    t = t + pick({ 0, 1, 2, 3, 5, 10, 40 })
    ev[i] = { t, R(1, 5), i }
  end
  local win, size, every, gap, cnt
  if kind == "global" then win = W.global()
  elseif kind == "count" then cnt = R(1, 20); win = W.count(cnt)
  elseif kind == "fixed" then size = R(1, 60); win = W.fixed(size, "millisecond", { index = 1 })
  elseif kind == "sliding" then
    size = R(2, 60); every = R(1, size)
    win = W.sliding(size, every, "millisecond", { index = 1 })
  else gap = R(1, 30); win = W.session(gap, "millisecond", { index = 1 }, { index = 2 }) end
  -- count windows see arrival order: one stage, one upstream; sessions
  -- need each key's times in order: one upstream per stage
  local stages = kind == "count" and 1 or R(1, 4)
  local f = flow.from_enumerable(ev, lopts({ stages = 1 }))
  if (kind == "fixed" or kind == "sliding" or kind == "global") and R(2) == 1 then
    f = f:map(function(e) return e end):partition(lopts({ stages = R(1, 3), key = { index = 3 } }))
  end
  local popts = lopts({ stages = stages, window = win })
  if kind == "session" then popts.key = { index = 2 } end
  local got = f:partition(popts)
    :reduce(function() return { 0, 0 } end, function(e, a) a[1] = a[1] + 1; a[2] = a[2] + e[3]; return a end)
    :on_trigger(function(a, p, w) return { { p.index, w.id, w.key or 0, w.trigger, a[1], a[2] } } end)
    :to_list()
  -- brute force: window -> {count, sum}
  local want = {}
  local function add(id, k, e)
    local x = want[id .. "/" .. k] or { 0, 0 }
    x[1], x[2] = x[1] + 1, x[2] + e[3]
    want[id .. "/" .. k] = x
  end
  if kind == "global" then
    for _, e in ipairs(ev) do add("global", 0, e) end
  elseif kind == "count" then
    for i, e in ipairs(ev) do add((i - 1) // cnt + 1, 0, e) end
    if n % cnt == 0 then want[(n // cnt + 1) .. "/0"] = { 0, 0 } end
  elseif kind == "fixed" then
    for _, e in ipairs(ev) do add(fdiv(e[1], size) * size, 0, e) end
  elseif kind == "sliding" then
    for _, e in ipairs(ev) do
      local s = fdiv(e[1], every) * every
      while s + size > e[1] do add(s, 0, e); s = s - every end
    end
  else
    local open = {}   -- key -> {id, hi}
    for _, e in ipairs(ev) do
      local o = open[e[2]]
      if not o or e[1] > o.hi + gap then o = { id = e[1], hi = e[1] }; open[e[2]] = o end
      o.hi = e[1]
      add(o.id, e[2], e)
    end
  end
  -- what the flow gave: only "done" fires; a stage fires each window once;
  -- empty fires (gap windows) are left out of the comparison
  local have, fired = {}, {}
  for _, r in ipairs(got) do
    if r[4] ~= "done" then error("flow_window " .. kind .. ": a " .. tostring(r[4]) .. " fire", 0) end
    local fk = r[1] .. "@" .. tostring(r[2]) .. "/" .. tostring(r[3])
    if fired[fk] then error("flow_window " .. kind .. ": window " .. fk .. " fired done twice", 0) end
    fired[fk] = true
    local k = tostring(r[2]) .. "/" .. tostring(r[3])
    if r[5] > 0 or kind == "count" then
      local x = have[k] or { 0, 0 }
      x[1], x[2] = x[1] + r[5], x[2] + r[6]
      have[k] = x
    end
  end
  for k, x in pairs(want) do
    local h = have[k]
    if not h or h[1] ~= x[1] or h[2] ~= x[2] then
      error(string.format("flow_window %s: window %s has %s events (sum %s), brute force %d (sum %d)",
        kind, k, h and h[1] or "no", h and h[2] or "-", x[1], x[2]), 0)
    end
  end
  for k, h in pairs(have) do
    if not want[k] then error(string.format("flow_window %s: window %s (%d events) not in the brute force", kind, k, h[1]), 0) end
  end
end

-- ---- the run -------------------------------------------------------------------

local kinds = { "chain", "fan", "broadcast", "partition", "supervisor",
                "flow_ops", "flow_reduce", "flow_join", "flow_window", "flow_window" }
local passed, failed = 0, 0
for seed = first, last do
  math.randomseed(seed)
  local kind = pick(kinds)
  started = {}
  local ok, err = pcall(T[kind])
  for _, s in ipairs(started) do if s:alive() then s:stop() end end
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    print(string.format("FAIL seed %d (%s, -w %d): %s", seed, kind, workers, tostring(err)))
    print(string.format("  replay: %s -w %d tests/stress/stress.lua %d", bin, workers, seed))
  end
end
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
