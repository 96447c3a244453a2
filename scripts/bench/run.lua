-- The sluice benchmark runner (started by scripts/bench.sh, run from the
-- repository root with plain lua5.4).
--
--   lua5.4 scripts/bench/run.lua BUILD_DIR
--
-- Environment: QUICK=1 (5 MB corpus, 1 M events), RUNS=n (runs per
-- workload, default 5), SEED=n (corpus seed, default 42), ONLY=pattern (run
-- the workloads whose name matches the Lua pattern), LUA (default lua5.4).
--
-- Every workload is one entry of WORKLOADS below: a sluice command, a
-- baseline command, what the row measures, and its target.  Each command
-- runs under benchrun (wall time, peak RSS) and prints "RESULT <checksum>";
-- the runner checks the checksums, takes medians and prints the table.
-- Each row runs its command and its baseline alternately (sluice, baseline,
-- sluice, ...), so that both see the same machine: on a shared machine the
-- speed drifts by 10-20 % within a minute, and a baseline measured for an
-- earlier row would skew a later row's ratio. Only a row marked
-- share_base (the memory row, which compares peak RSS, and the Redis rows
-- with 2 and 3 processes) reuses samples of a command that another row
-- already ran.

local BUILD = arg[1] or "build"
local B = arg[0]:match("^(.*)/") or "."        -- scripts/bench
local DATA = "bench-data"
local SLUICE = BUILD .. "/sluice"
local BENCHRUN = BUILD .. "/bench/benchrun"
local GENCORPUS = BUILD .. "/bench/gencorpus"
local LUA = os.getenv("LUA") or "lua5.4"

local function env_flag(name)
  local v = os.getenv(name)
  return v ~= nil and v ~= "" and v ~= "0"
end
local QUICK = env_flag("QUICK")
local RUNS = math.tointeger(tonumber(os.getenv("RUNS") or "")) or 5
local SEED = math.tointeger(tonumber(os.getenv("SEED") or "")) or 42
local ONLY = os.getenv("ONLY")
assert(RUNS >= 1, "RUNS must be >= 1")

-- sizes: QUICK=1 is a smoke run of the same suite
local SMALL_BYTES = QUICK and 5000000 or 50000000
local BIG_BYTES = QUICK and 50000000 or 500000000
local EVENTS = QUICK and 1000000 or 10000000

---------------------------------------------------------------------------
-- small helpers

local log_lines = {}
local function out(fmt, ...)
  local s = select("#", ...) > 0 and fmt:format(...) or fmt
  io.stdout:write(s, "\n")
  io.stdout:flush()
  log_lines[#log_lines + 1] = s
end

local function progress(fmt, ...)
  io.stderr:write(fmt:format(...), "\n")
  io.stderr:flush()
end

local function sh_quote(s)
  s = tostring(s)
  if s:match("^[%w%./_,=:+-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local s = p:read("a")
  p:close()
  return (s:gsub("%s+$", ""))
end

local function now()
  return tonumber(capture("date +%s.%N")) or os.time()
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function median(xs)
  local t = table.move(xs, 1, #xs, 1, {})
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

local function human_bytes(n)
  if n >= 1e9 and n % 1e9 == 0 then return ("%dGB"):format(n // 1e9) end
  if n >= 1e6 and n % 1e6 == 0 then return ("%dMB"):format(n // 1e6) end
  if n >= 1e3 and n % 1e3 == 0 then return ("%dkB"):format(n // 1e3) end
  return tostring(n) .. "B"
end

local function human_count(n)
  if n >= 1e6 and n % 1e6 == 0 then return ("%dM"):format(n // 1e6) end
  return tostring(n)
end

local function si(x)
  if x >= 1e9 then return ("%.2fG"):format(x / 1e9) end
  if x >= 1e6 then return ("%.2fM"):format(x / 1e6) end
  if x >= 1e3 then return ("%.1fk"):format(x / 1e3) end
  return ("%.0f"):format(x)
end

---------------------------------------------------------------------------
-- corpora: generated on first use into bench-data/, reused while the .meta
-- marker matches (generator version, seed, requested size, actual size)

local gen_version = capture(sh_quote(GENCORPUS) .. " --version"):match("gen=(%d+)")
assert(gen_version, "cannot run " .. GENCORPUS .. " (did scripts/bench.sh build it?)")

local function parse_meta(text)
  if not text then return nil end
  local m = {}
  for k, v in text:gmatch("([%w_]+)=([^\n]*)") do m[k] = v end
  return m
end

local corpus_mt = {}
corpus_mt.__index = corpus_mt
local function corpus(bytes, seed)
  local name = ("%s/corpus-%s-seed%d"):format(DATA, human_bytes(bytes), seed)
  return setmetatable({ bytes = bytes, seed = seed, path = name .. ".txt",
                        meta_path = name .. ".meta", label = human_bytes(bytes) }, corpus_mt)
end

function corpus_mt:ensure()
  if self.ready then return self end
  local m = parse_meta(read_file(self.meta_path))
  local size = file_size(self.path)
  local fresh = m and m.gen == gen_version and tonumber(m.seed) == self.seed
    and tonumber(m.requested) == self.bytes and tonumber(m.bytes) == size
  if not fresh then
    os.execute("mkdir -p " .. sh_quote(DATA))
    os.remove(self.meta_path)
    progress("generating %s corpus (seed %d) -> %s", self.label, self.seed, self.path)
    local t0 = now()
    local ok = os.execute(("%s %d %d %s %s"):format(sh_quote(GENCORPUS), self.bytes, self.seed,
                                                    sh_quote(self.path), sh_quote(self.meta_path)))
    assert(ok, "corpus generation failed")
    progress("  done in %.1f s", now() - t0)
    m = parse_meta(read_file(self.meta_path))
    assert(m and tonumber(m.bytes) == file_size(self.path), "corpus generation left a bad .meta")
  end
  self.words = assert(math.tointeger(tonumber(m.result:match("words=(%d+)"))))
  self.result = m.result
  self.ready = true
  return self
end

local function is_corpus(x) return getmetatable(x) == corpus_mt end

-- a value that may be a corpus (its word count / checksum) or a plain value
local function events_of(x) if is_corpus(x) then return x:ensure().words end return x end
local function expect_of(x)
  if is_corpus(x) then return x:ensure().result end
  if type(x) == "function" then return x() end   -- computed on first use
  return x
end

---------------------------------------------------------------------------
-- the workloads

local small = corpus(SMALL_BYTES, SEED)
local big = corpus(BIG_BYTES, SEED)
local N = EVENTS

local function sluice(workers, script, ...)
  return { SLUICE, "-w", workers, B .. "/" .. script, ... }
end
local function plain(script, ...)
  return { LUA, B .. "/" .. script, ... }
end

-- Each entry:
--   name, workers           shown in the table
--   cmd, base               argv arrays (a corpus in an argv becomes its path)
--   events                  events per run (number or corpus: its word count)
--   expect / base_expect    checksum the cmd's / base's RESULT must equal
--                           (string, corpus: its generator checksum, or a
--                           function computing it on first use)
--   same_result             cmd and base must print the same RESULT (default true)
--   measure                 key of MEASURES; target, stretch: its thresholds
--                           (no target: the row is shown for comparison only)
--   hops                    for "hop_ns"
--   share_base              the baseline's samples may come from another row
--   runs, budget_s          runs (default RUNS); stop early once the next run
--                           would take the row past budget_s (>= 1 run)
--   base_desc               what the baseline is, for the legend
-- The word count rows: each shape with -w 2 and -w 1 (scale: the rows
-- whose "-w 1 / -w 2" time ratio is printed under the table; a shape's
-- scaling target has a row of its own, "scaling: ...").
local WORKLOADS = {
  { name = "wordcount " .. small.label, workers = 2, scale = "combined",
    cmd = sluice(2, "wordcount.lua", small), base = plain("wordcount_plain.lua", small),
    events = small, expect = small,
    measure = "time", target = 0.6, stretch = 0.5,
    base_desc = "lua5.4 wordcount_plain.lua: io.lines + gmatch into a table, same corpus; sluice side: "
      .. "flat_map returns the gmatch iterator, reduce with merge and keyed (combining)" },
  { name = "wordcount " .. small.label, workers = 1, scale = "combined",
    cmd = sluice(1, "wordcount.lua", small), base = plain("wordcount_plain.lua", small),
    events = small, expect = small,
    measure = "time", target = 1.15,
    base_desc = "same as above" },
}
-- {shape, what the sluice side does, target with -w 2 (time against the
-- baseline; nil: shown for comparison), target of the scaling (-w 1 time
-- over -w 2 time; nil: none)}
local WORDCOUNT_SHAPES = {
  { "words", "sluice.words (the file cut into lowercased words in C) -> partition() -> frequencies() "
    .. "(keyed combining)", 0.5 },
  { "frequencies", "flat_map iterator -> partition() -> frequencies() (keyed combining)", 0.5 },
  { "reduce_by_key", "flat_map iterator -> map to {word, 1} -> partition({key = {index = 1}}) "
    .. "-> reduce_by_key(+) (keyed combining)", 0.5 },
  { "iter", "flat_map iterator -> partition() -> reduce(new table, count) with no merge (a count: keyed "
    .. "combining)", 0.7 },
  { "events", "flat_map returns an array per line -> partition() -> reduce(new table, count) with no merge "
    .. "(Flow's plain shape, the README's; a count: keyed combining)", 0.8, 1.7 },
  { "hop", "the same with a count that reads an upvalue (+ one), not taken for a count: every word crosses "
    .. "the partition" },
}
for _, shape in ipairs(WORDCOUNT_SHAPES) do
  for _, w in ipairs({ 2, 1 }) do
    local target = w == 2 and shape[3] or nil
    WORKLOADS[#WORKLOADS + 1] = {
      name = ("wordcount %s (%s)"):format(small.label, shape[1]), workers = w, scale = shape[1],
      scale_target = shape[4],
      cmd = sluice(w, "wordcount.lua", small, shape[1]), base = plain("wordcount_plain.lua", small),
      events = small, expect = small, measure = "time", target = target,
      base_desc = "same as above; sluice side: " .. shape[2] .. (target and "" or " (no target)") }
  end
end
-- The scaling targets: -w 2 against -w 1 of the same shape, run
-- alternately, one pair right after the other. Two rows minutes apart
-- (the -w 1 and -w 2 rows above) see the machine at different speeds,
-- and a pair against the single-threaded baseline does not cancel that
-- either: a slow spell weighs more on two threads than on one.
for _, shape in ipairs(WORDCOUNT_SHAPES) do
  if shape[4] then
    WORKLOADS[#WORKLOADS + 1] = {
      name = ("scaling: wordcount %s (%s)"):format(small.label, shape[1]), workers = 2,
      cmd = sluice(2, "wordcount.lua", small, shape[1]), base = sluice(1, "wordcount.lua", small, shape[1]),
      events = small, expect = small, measure = "rate", target = shape[4],
      base_desc = "sluice -w 1 on the same shape, each run right after the -w 2 run: "
        .. "ratio = -w 1 time / -w 2 time" }
  end
end
for _, e in ipairs({
  { name = "map/filter/count " .. human_count(N), workers = 2,
    cmd = sluice(2, "mapfilter.lua", N), base = plain("mapfilter_plain.lua", N),
    events = N, expect = ("count=%d"):format((N + 1) // 2),
    measure = "rate", target = 1.7,
    base_desc = "lua5.4 loop calling the same inc/even/count functions" },
  { name = "chain p->pc->c " .. human_count(N), workers = 2,
    cmd = sluice(2, "chain.lua", N, 1000), base = plain("chain_plain.lua", N, 1000),
    events = N, hops = 2, expect = ("count=%d bad=0"):format(N),
    measure = "hop_ns", target = 25,
    base_desc = "the same three stages' callbacks in one lua5.4 loop, 1000 events a batch; "
      .. "ratio = (chain s - base s) / (events * 2 hops)" },
}) do WORKLOADS[#WORKLOADS + 1] = e end
-- Windows: fixed 1 s windows over N events {ts, i} (ts = i ms), counted per
-- window, on a partition and on the first layer; session windows over a
-- generated click log of N/10 events (no target).
local WN, SN = N, N // 10
local window_expect = ("windows=%d count=%d"):format(WN // 1000 + 1, WN)
local sessions_memo
local function sessions_expect(n)
  -- the sessions of sessions_fns.lua's clicks, counted here as the
  -- baseline does (the checksum of both sides)
  if sessions_memo then return sessions_memo end
  local F = dofile(B .. "/sessions_fns.lua")
  local last, s = {}, 0
  for i = 1, n do
    local t, u = F.time(i), F.user(i)
    if last[u] == nil or t - last[u] > F.GAP_MS then s = s + 1 end
    last[u] = t
  end
  sessions_memo = ("sessions=%d count=%d"):format(s, n)
  return sessions_memo
end
WORKLOADS[#WORKLOADS + 1] =
  { name = "windows on a partition " .. human_count(WN), workers = 2,
    cmd = sluice(2, "windows.lua", "partition", WN), base = plain("windows_plain.lua", WN),
    events = WN, expect = window_expect,
    measure = "rate", target = 1.2,
    base_desc = "lua5.4 loop: the same {ts, i} events counted per ts // 1000 in a table" }
WORKLOADS[#WORKLOADS + 1] =
  { name = "windows on a partition, combined " .. human_count(WN), workers = 2,
    cmd = sluice(2, "windows.lua", "combine", WN), base = plain("windows_plain.lua", WN),
    events = WN, expect = window_expect,
    measure = "rate", target = 1.2,
    base_desc = "same as above; sluice: partition keyed by ts, reduce with merge (combining per window)" }
WORKLOADS[#WORKLOADS + 1] =
  { name = "windows on the first layer " .. human_count(WN), workers = 2,
    cmd = sluice(2, "windows.lua", "first", WN), base = plain("windows_plain.lua", WN),
    events = WN, expect = window_expect,
    measure = "rate", target = 1.6,
    base_desc = "same as above" }
WORKLOADS[#WORKLOADS + 1] =
  { name = "session windows " .. human_count(SN), workers = 2,
    cmd = sluice(2, "sessions.lua", SN), base = plain("sessions_plain.lua", SN),
    events = SN, expect = function() return sessions_expect(SN) end,
    measure = "rate",
    base_desc = "lua5.4 loop over the same clicks: per user the last click time, a new "
      .. "session after a gap of more than 30 s (no target)" }
-- A partitioned flow at 2, 16, 64 and 256 stages: the cost per event
-- (ratio) and the set-up time (the baseline column: the same flow over one
-- event). Reported, no target.
local PN = N // 10
for _, st in ipairs({ 2, 16, 64, 256 }) do
  WORKLOADS[#WORKLOADS + 1] = {
    name = ("partition %s, %d stages"):format(human_count(PN), st), workers = 2,
    cmd = sluice(2, "partition.lua", PN, st), base = sluice(2, "partition.lua", 1, st),
    events = PN, expect = ("count=%d"):format(PN), base_expect = "count=1", same_result = false,
    measure = "ev_ns",
    base_desc = "the same flow over 1 event: its set-up and tear-down; ratio = (sluice s - base s) / events",
  }
end
-- Redis Streams on a redis-server of the row's own (unix socket): N
-- entries read through a consumer group, mapped and added to another
-- stream, by 1, 2 and 3 sluice processes (each -w 2) against one lua5.4
-- process with Debian's lua-redis client. redis.lua times the processing
-- only (ELAPSED): not the server's start or the filling of the stream.
local RN = QUICK and 20000 or 100000
for _, procs in ipairs({ 1, 2, 3 }) do
  WORKLOADS[#WORKLOADS + 1] = {
    name = ("redis source->map->sink %s, %d proc"):format(human_count(RN), procs), workers = 2,
    cmd = { SLUICE, B .. "/redis.lua", "sluice", RN, procs, SLUICE },
    base = { SLUICE, B .. "/redis.lua", "plain", RN, 1, SLUICE },
    events = RN, expect = ("out=%d pending=0 sum=%d"):format(RN, RN * (RN + 1)),
    measure = "rate", target = procs == 1 and 3 or nil, share_base = procs > 1,
    base_desc = "lua5.4 + lua-redis, one process: XREADGROUP COUNT 100, one XADD round trip per entry, "
      .. "one XACK per batch (redis_plain.lua); sluice: flow.from_stages({sluice.redis.source}) "
      .. ":map(f):into_redis (redis_sluice.lua)" .. (procs > 1 and " (no target)" or ""),
  }
end
WORKLOADS[#WORKLOADS + 1] =
  { name = "memory: wordcount " .. big.label, workers = 2,
    cmd = sluice(2, "wordcount.lua", big), base = sluice(2, "wordcount.lua", small),
    events = big, expect = big, base_expect = small, same_result = false, share_base = true,
    measure = "rss", target = 1.1, budget_s = QUICK and 30 or 100,
    base_desc = "sluice -w 2 wordcount on the " .. small.label .. " corpus (the first row's runs); "
      .. "ratio = peak RSS " .. big.label .. " / peak RSS " .. small.label }
-- keyed combining builds a table of the words in every first-layer
-- stage: the peak memory with 2 workers against 1 (no runs of their own:
-- the word count rows' runs)
for _, m in ipairs({ { "", "combined" }, { " (words)", "words" }, { " (README shape)", "events" } }) do
  local shape = m[2] ~= "combined" and m[2] or nil
  WORKLOADS[#WORKLOADS + 1] = {
    name = "memory: keyed combining" .. m[1] .. ", 2 workers / 1", workers = 2,
    cmd = sluice(2, "wordcount.lua", small, shape), base = sluice(1, "wordcount.lua", small, shape),
    events = small, expect = small, share_base = true, measure = "rss", target = 1.3,
    base_desc = ("the %s word count rows (%s shape): ratio = peak RSS -w 2 / peak RSS -w 1"):format(small.label, m[2]) }
end

-- How a row's ratio is computed from the medians s (sluice) and b (baseline)
-- ({wall = seconds, rss = KiB}); cmp says which side of the target passes.
local MEASURES = {
  time = { cmp = "<=", unit = "x time", paired = true,
           value = function(e, s, b) return s.wall / b.wall end },
  rate = { cmp = ">=", unit = "x ev/s", paired = true,
           value = function(e, s, b) return b.wall / s.wall end },
  hop_ns = { cmp = "<=", unit = " ns/ev/hop", fmt = "%.1f",
             value = function(e, s, b) return (s.wall - b.wall) / (events_of(e.events) * e.hops) * 1e9 end },
  ev_ns = { cmp = "<=", unit = " ns/ev", fmt = "%.0f",
            value = function(e, s, b) return (s.wall - b.wall) / events_of(e.events) * 1e9 end },
  rss = { cmp = "<=", unit = "x RSS",
          value = function(e, s, b) return s.rss / b.rss end },
}

---------------------------------------------------------------------------
-- running

local samples = {}   -- command key -> list of {wall, rss, status, result, err}
local STDERR_TMP = DATA .. "/.stderr.tmp"

local function argv_string(argv)
  local t = {}
  for i, a in ipairs(argv) do
    t[i] = sh_quote(is_corpus(a) and a:ensure().path or a)
  end
  return table.concat(t, " ")
end

local function key_of(argv)
  local t = {}
  for i, a in ipairs(argv) do t[i] = is_corpus(a) and a.path or tostring(a) end
  return table.concat(t, " ")
end

local function run_once(argv, label)
  local cmd = argv_string(argv)
  local p = assert(io.popen(sh_quote(BENCHRUN) .. " " .. cmd .. " 2>" .. sh_quote(STDERR_TMP)))
  local text = p:read("a")
  p:close()
  local s = { result = text:match("RESULT ([^\n]*)") }
  local wall, rss, status = text:match("BENCHRUN wall=([%d.]+) maxrss_kb=(%d+) status=(%d+)")
  s.wall, s.rss, s.status = tonumber(wall), tonumber(rss), tonumber(status) or -1
  -- a command that times its own part (the Redis rows) says so
  local own = text:match("ELAPSED ([%d.]+)")
  if own then s.wall = tonumber(own) end
  if s.status ~= 0 then
    s.err = (read_file(STDERR_TMP) or ""):sub(-1500)
  end
  progress("  %-34s %s", label, s.status == 0
    and ("%.3f s  %.1f MB"):format(s.wall, s.rss / 1024) or ("FAILED (status %d)"):format(s.status))
  return s
end

local function sample(argv, i, label, scope)
  local key = (scope and scope .. ": " or "") .. key_of(argv)
  local list = samples[key] or {}
  samples[key] = list
  if #list < i then list[#list + 1] = run_once(argv, label) end
  return list
end

local function ok_samples(list)
  local w, r = {}, {}
  for _, s in ipairs(list) do
    if s.status == 0 then w[#w + 1], r[#r + 1] = s.wall, s.rss end
  end
  if #w == 0 then return nil end
  return { wall = median(w), rss = median(r), n = #w }
end

-- checks: returns "ok" or a short failure word, and detail lines
local function check(e, cl, bl)
  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  local function check_list(list, who, expect)
    local first
    for i, s in ipairs(list) do
      if s.status ~= 0 then
        bad("%s run %d failed with status %d:\n%s", who, i, s.status, s.err or "")
      elseif not s.result then
        bad("%s run %d printed no RESULT line", who, i)
      else
        first = first or s.result
        if s.result ~= first then bad("%s run %d: RESULT %s\n    differs from run 1: %s", who, i, s.result, first) end
        if expect and s.result ~= expect then
          bad("%s run %d: RESULT %s\n    expected:    %s", who, i, s.result, expect)
        end
      end
    end
    return first
  end
  local c1 = check_list(cl, "sluice", expect_of(e.expect))
  local b1 = check_list(bl, "baseline", expect_of(e.base_expect or (e.same_result ~= false and e.expect or nil)))
  if e.same_result ~= false and c1 and b1 and c1 ~= b1 then
    bad("sluice RESULT %s\n    baseline RESULT %s", c1, b1)
  end
  if #problems == 0 then return "ok", problems end
  for _, s in ipairs(cl) do if s.status ~= 0 then return "FAILED", problems end end
  for _, s in ipairs(bl) do if s.status ~= 0 then return "FAILED", problems end end
  return "MISMATCH", problems
end

local function run_entry(e)
  local runs = e.runs or RUNS
  local t0 = now()
  local cl, bl
  local done = 0
  for i = 1, runs do
    local label = ("%s -w %d"):format(e.name, e.workers)
    cl = sample(e.cmd, i, ("%s run %d"):format(label, i))
    bl = sample(e.base, i, ("  baseline run %d"):format(i), not e.share_base and label or nil)
    done = i
    local spent = now() - t0
    if e.budget_s and i < runs and spent / i * (i + 1) > e.budget_s then
      e.note = ("%d of %d runs (next run would pass the row's %d s budget)"):format(i, runs, e.budget_s)
      break
    end
  end
  e.runs_done = done
  e.status, e.problems = check(e, cl, bl)
  e.s, e.b = ok_samples(cl), ok_samples(bl)
  if e.s and e.b then
    local m = MEASURES[e.measure]
    e.value = m.value(e, e.s, e.b)
    -- a cross-check of the ratio on a noisy machine: the median of the
    -- ratios of run i against baseline run i (run one after the other, so
    -- a slow spell of the machine weighs on both sides of a pair)
    if m.paired then
      local r = {}
      for i = 1, math.min(#cl, #bl) do
        if cl[i].status == 0 and bl[i].status == 0 then r[#r + 1] = m.value(e, cl[i], bl[i]) end
      end
      e.paired = #r > 0 and median(r) or nil
    end
    local function pass(t) if m.cmp == "<=" then return e.value <= t end return e.value >= t end
    if e.target then e.met = pass(e.target) end
    if e.stretch then e.stretch_met = pass(e.stretch) end
  end
end

---------------------------------------------------------------------------
-- main

local t_start = now()
local nproc = capture("nproc")
local cpuinfo = read_file("/proc/cpuinfo") or ""
local cpu = cpuinfo:match("model name%s*:%s*([^\n]+)") or capture("uname -m")
local git = capture("git describe --always --dirty")
local sluice_version = capture(sh_quote(SLUICE) .. " -v")
local lua_version = capture(LUA .. " -v"):match("^Lua [%d.]+") or LUA

progress("sluice benchmarks%s: %d runs per workload", QUICK and " (QUICK)" or "", RUNS)
local selected = {}
for _, e in ipairs(WORKLOADS) do
  if not ONLY or e.name:match(ONLY) then selected[#selected + 1] = e end
end
for _, e in ipairs(selected) do run_entry(e) end

local cols = { "workload", "w", "runs", "median s", "events/s", "peak RSS", "base s", "base RSS",
               "ratio", "paired", "target", "met?", "check" }
local rows = {}
for _, e in ipairs(selected) do
  local m = MEASURES[e.measure]
  local ratio, target, met = "-", "-", "-"
  local tfmt = m.fmt or "%.2f"
  if e.target then
    target = ("%s %s%s"):format(m.cmp == "<=" and "<=" or ">=", tfmt:format(e.target), m.unit)
  end
  if e.stretch then target = target .. (" (stretch " .. tfmt .. ")"):format(e.stretch) end
  if e.value then
    ratio = (tfmt .. "%s"):format(e.value, m.unit)
    if e.target then met = e.met and "yes" or "NO" end
    if e.stretch then met = met .. (e.stretch_met and ", stretch yes" or ", stretch no") end
  end
  local ev = events_of(e.events)
  rows[#rows + 1] = {
    e.name, tostring(e.workers), tostring(e.runs_done) .. (e.note and "*" or ""),
    e.s and ("%.3f"):format(e.s.wall) or "-",
    e.s and si(ev / e.s.wall) or "-",
    e.s and ("%.1f MB"):format(e.s.rss / 1024) or "-",
    e.b and ("%.3f"):format(e.b.wall) or "-",
    e.b and ("%.1f MB"):format(e.b.rss / 1024) or "-",
    ratio, e.paired and tfmt:format(e.paired) or "-", target, met, e.status,
  }
end

local width = {}
for i, c in ipairs(cols) do width[i] = #c end
for _, r in ipairs(rows) do
  for i, c in ipairs(r) do width[i] = math.max(width[i], #c) end
end
local function line(cells)
  local t = {}
  for i, c in ipairs(cells) do
    t[i] = (i <= 1) and (c .. (" "):rep(width[i] - #c)) or ((" "):rep(width[i] - #c) .. c)
  end
  return "| " .. table.concat(t, " | ") .. " |"
end
local sep = {}
for i = 1, #cols do sep[i] = ("-"):rep(width[i]) end

out("")
out("sluice benchmarks%s — %s", QUICK and " (QUICK=1)" or "", os.date("%Y-%m-%d %H:%M:%S %Z"))
out("machine: %s cores (nproc), %s", nproc, cpu)
out("sluice %s (%s, git %s), baseline %s", sluice_version:match("[%d.]+[%w.-]*") or sluice_version,
    SLUICE, git ~= "" and git or "?", lua_version)
out("corpus: %s (seed %d)%s; medians of %d runs; ratio from the same run's baseline "
    .. "(paired: the median of run i / baseline run i)",
    small.ready and ("%s, %s words"):format(small.label, si(small.words)) or small.label, SEED,
    big.ready and (", memory row %s, %s words"):format(big.label, si(big.words)) or "", RUNS)
out("")
out(line(cols))
out((line(sep):gsub(" ", "-")))
for _, r in ipairs(rows) do out(line(r)) end
out("")
out("baselines:")
for _, e in ipairs(selected) do
  out("  %-30s %s", e.name .. " -w " .. e.workers .. ":", e.base_desc)
end
for _, e in ipairs(selected) do
  if e.note then out("  * %s: %s", e.name, e.note) end
end

-- scaling: per row run with both -w 1 and -w 2, median s at -w 1 / at -w 2
local scaled, order = {}, {}
for _, e in ipairs(selected) do
  if e.scale then
    local g = scaled[e.scale]
    if not g then
      g = { name = e.name }
      scaled[e.scale] = g
      order[#order + 1] = e.scale
    end
    g[e.workers] = e
  end
end
local scale_lines = {}
for _, key in ipairs(order) do
  local g = scaled[key]
  local one, two = g[1], g[2]
  if one and two and one.s and two.s then
    -- the two rows run minutes apart, and the machine's speed drifts in
    -- between; each row's paired ratio (run i / its baseline run i, the
    -- same program in both rows) takes out some of it (the target is
    -- judged by the scaling row, which alternates -w 2 and -w 1)
    local x = one.s.wall / two.s.wall
    local px = one.paired and two.paired and one.paired / two.paired
    scale_lines[#scale_lines + 1] = ("  %-36s %.3f s / %.3f s = %.2fx%s%s"):format(g.name, one.s.wall, two.s.wall, x,
      px and ("; paired %.2f / %.2f = %.2fx"):format(one.paired, two.paired, px) or "",
      two.scale_target and " (its target: the scaling row above)" or "")
  end
end
if #scale_lines > 0 then
  out("")
  out("scaling (median s with -w 1 / with -w 2; 2.00x would be perfect on 2 cores; paired: the rows'")
  out("paired ratios to the same baseline, -w 1 / -w 2; both drift with the machine between the rows):")
  for _, l in ipairs(scale_lines) do out(l) end
end

local failed = false
for _, e in ipairs(selected) do
  if #e.problems > 0 then
    failed = true
    out("")
    out("!!! %s -w %d: %s", e.name, e.workers, e.status)
    for _, p in ipairs(e.problems) do out("    %s", p) end
  end
end
out("")
out("total time %.0f s", now() - t_start)

local f = io.open(DATA .. "/last-run.txt", "w")
if f then
  f:write(table.concat(log_lines, "\n"), "\n")
  f:close()
end
os.remove(STDERR_TMP)
if failed then
  out("benchmark checks FAILED (see above)")
  os.exit(1)
end
