-- Runtime foundation: workers, tasks, values crossing states, globals.
local lu = require("luaunit")

local function roundtrip(v)
  return sluice.task(function(x) return x end, v):await()
end

TestRuntime = {}

function TestRuntime:test_workers_and_version()
  lu.assertEquals(math.type(sluice.workers()), "integer")
  lu.assertTrue(sluice.workers() >= 1)
  lu.assertEquals(type(sluice.version), "string")
  lu.assertStrMatches(sluice.version, "%d+%.%d+%.%d+")
end

function TestRuntime:test_task_returns_all_results()
  local a, b, c = sluice.task(function(x, y) return x + y, x * y, "s" end, 3, 4):await()
  lu.assertEquals({a, b, c}, {7, 12, "s"})
  lu.assertEquals(select("#", sluice.task(function() end):await()), 0)
  lu.assertEquals(select("#", sluice.task(function() return nil, nil end):await()), 2)
end

function TestRuntime:test_task_runs_on_every_worker()
  -- each task reports the worker-local counter it sees; round-robin
  -- placement puts task i on worker (i-1) % n + 1
  local n = sluice.workers()
  local tasks = {}
  for i = 1, 2 * n do
    tasks[i] = sluice.task(function()
      WORKER_TASKS = (rawget(_G, "WORKER_TASKS") or 0) + 1
      return WORKER_TASKS
    end)
  end
  local seen = {}
  for i = 1, 2 * n do seen[i] = tasks[i]:await() end
  local want = {}
  for i = 1, 2 * n do want[i] = i <= n and 1 or 2 end
  lu.assertEquals(seen, want)
end

function TestRuntime:test_task_error_is_reraised_with_traceback()
  local t = sluice.task(function() local x = nil; return x.field end)
  local ok, err = pcall(t.await, t)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "attempt to index a nil value")
  lu.assertStrContains(err, "stack traceback")
  lu.assertStrContains(err, "[task on worker")
end

function TestRuntime:test_task_error_value_table_kept()
  local t = sluice.task(function() error({code = 42}) end)
  local ok, err = pcall(t.await, t)
  lu.assertFalse(ok)
  lu.assertEquals(err, {code = 42})
end

function TestRuntime:test_await_twice_and_timeout()
  local t = sluice.task(function() return 1 end)
  lu.assertEquals(t:await(), 1)
  lu.assertErrorMsgContains("already awaited", t.await, t)
  lu.assertTrue(t:done())   -- still done once its result was taken
  local slow = sluice.task(function() sluice.sleep(300) return "late" end)
  lu.assertErrorMsgContains("timed out after 10 ms", slow.await, slow, 10)
  lu.assertEquals(slow:await(), "late")
end

-- A timeout is nil (no limit) or an integer >= 0; anything else is refused
-- at once instead of waiting for ever.
function TestRuntime:test_await_refuses_bad_timeouts()
  local t = sluice.task(function() return "done" end)
  local function err(timeout)
    local ok, e = pcall(t.await, t, timeout)
    lu.assertFalse(ok)
    return e
  end
  lu.assertEquals(err(-1), "task:await: timeout must be an integer >= 0, got -1")
  lu.assertEquals(err(math.mininteger), "task:await: timeout must be an integer >= 0, got -9223372036854775808")
  lu.assertEquals(err(0 / 0), "task:await: timeout must be an integer >= 0, got 0/0")
  lu.assertEquals(err(1.5), "task:await: timeout must be an integer >= 0, got 1.5")
  lu.assertEquals(err(-math.huge), "task:await: timeout must be an integer >= 0, got -math.huge")
  lu.assertEquals(err("10"), 'task:await: timeout must be an integer >= 0, got "10"')
  lu.assertEquals(err({}), "task:await: timeout must be an integer >= 0, got {}")
  -- located at the caller
  local ok, e = pcall(function() return t:await(-1) end)
  lu.assertFalse(ok)
  lu.assertStrMatches(e, ".*test_runtime%.lua:%d+: task:await: timeout must be an integer >= 0, got %-1")
  -- the task can still be awaited, with an integral float or a timeout
  -- too large for the clock (no limit)
  lu.assertEquals(t:await(1000.0), "done")
  lu.assertEquals(sluice.task(function() return 2 end):await(math.maxinteger), 2)
  local slow = sluice.task(function() sluice.sleep(100) return "late" end)
  lu.assertEquals(select(2, pcall(slow.await, slow, 0)), "task:await: timed out after 0 ms")
  lu.assertEquals(slow:await(), "late")
end

function TestRuntime:test_bad_arguments()
  lu.assertErrorMsgEquals("sluice.task: fn must be a function, got 42", sluice.task, 42)
  lu.assertErrorMsgEquals('sluice.sleep: ms must be an integer >= 0, got "x"', sluice.sleep, "x")
  lu.assertErrorMsgEquals("sluice.sleep: ms must be an integer >= 0, got -1", sluice.sleep, -1)
end

-- Values that cross between states (lua/README.md §2), one test per row
-- A worker's collector is generational, its multipliers set after each
-- message for the heap it holds; a stage that switched it to incremental
-- keeps incremental while the heap grows past those settings.
function TestRuntime:test_a_stage_keeps_the_collector_it_chose()
  local r = sluice.flow.from_enumerable(sluice.range(1, 600000), { stages = 1 })
    :reduce(function() return { n = 0, seen = {}, modes = {}, first = collectgarbage("incremental") } end,
      function(i, acc)
        acc.n = acc.n + 1
        if i <= 150000 then acc.seen[i] = "v" .. i end
        if acc.n % 10000 == 0 then acc.modes[collectgarbage("incremental")] = true end
        return acc
      end)
    :on_trigger(function(acc) return { { acc.n, acc.first, acc.modes.generational or false } } end)
    :to_list()
  lu.assertEquals(r, { { 600000, "generational", false } })
end

TestValues = {}

function TestValues:test_scalars_keep_subtype()
  lu.assertIsNil(roundtrip(nil))
  lu.assertEquals(roundtrip(true), true)
  lu.assertEquals(roundtrip(false), false)
  lu.assertEquals(math.type(roundtrip(3)), "integer")
  lu.assertEquals(math.type(roundtrip(3.0)), "float")
  lu.assertEquals(roundtrip(math.mininteger), math.mininteger)
  lu.assertEquals(roundtrip(math.maxinteger), math.maxinteger)
  lu.assertEquals(roundtrip(math.huge), math.huge)
  lu.assertEquals(roundtrip(-math.huge), -math.huge)
  local nan = roundtrip(0/0)
  lu.assertTrue(nan ~= nan)
  local nz = roundtrip(-0.0)
  lu.assertEquals(1 / nz, -math.huge)
end

function TestValues:test_binary_strings()
  local s = ""
  for i = 0, 255 do s = s .. string.char(i) end
  lu.assertEquals(roundtrip(s), s)
  lu.assertEquals(roundtrip(""), "")
  local big = string.rep("abc\0", 100000)
  lu.assertEquals(roundtrip(big), big)
end

function TestValues:test_tables_shared_and_cycles()
  local shared = {1, 2}
  local t = {a = shared, b = shared, list = {10, 20, 30}, [1.5] = "f", [true] = "t"}
  t.self = t
  local r = roundtrip(t)
  lu.assertEquals(r.list, {10, 20, 30})
  lu.assertIs(r.a, r.b)
  lu.assertIs(r.self, r)
  lu.assertEquals(r[1.5], "f")
  lu.assertEquals(r[true], "t")
  lu.assertNotIs(r, t)
end

function TestValues:test_metatables_dropped()
  local t = setmetatable({x = 1}, {__index = function() return "meta" end})
  local r = roundtrip(t)
  lu.assertEquals(r.x, 1)
  lu.assertIsNil(getmetatable(r))
  lu.assertIsNil(r.y)
end

function TestValues:test_functions_with_upvalues()
  local base = {n = 10}
  local k = 5
  local function add(x) return x + k + base.n end
  local f = roundtrip(add)
  lu.assertEquals(f(1), 16)
  -- recursive local function (its own upvalue)
  local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
  lu.assertEquals(sluice.task(function(g) return g(10) end, fact):await(), 3628800)
end

function TestValues:test_function_env_is_receivers_globals()
  local r = sluice.task(function()
    WORKER_ONLY = "set on the worker"
    return function() return WORKER_ONLY end
  end):await()
  WORKER_ONLY = "main"
  lu.assertEquals(r(), "main")
  WORKER_ONLY = nil
end

function TestValues:test_library_values_by_name()
  local fmt, m, g, ins = table.unpack(roundtrip({string.format, math, _G, table.insert}))
  lu.assertIs(fmt, string.format)
  lu.assertIs(m, math)
  lu.assertIs(g, _G)
  lu.assertIs(ins, table.insert)
  -- and on the worker they resolve to the worker's own
  lu.assertEquals(sluice.task(function(f) return f("%03d", 7) end, string.format):await(), "007")
  lu.assertTrue(sluice.task(function(mm) return mm == math end, math):await())
end

function TestValues:test_handles_by_identity()
  local t = sluice.task(function() return 1 end)
  lu.assertEquals(t:await(), 1)
  local back = roundtrip(t)
  lu.assertEquals(back, t)
  lu.assertEquals(tostring(back), tostring(t))
end

function TestValues:test_rejections_name_the_path()
  local co = coroutine.create(function() end)
  lu.assertErrorMsgContains("cannot send a thread value (at task[2].co)",
    sluice.task, function() end, {co = co})
  lu.assertErrorMsgContains("cannot send a userdata value (at task[2][3].conn)",
    sluice.task, function() end, {1, 2, {conn = io.stdout}})
  lu.assertErrorMsgContains("cannot send a C function value",
    sluice.task, function() end, {f = io.stdout.close})
end

function TestValues:test_deep_nesting_is_an_error()
  local t = {}
  local cur = t
  for _ = 1, 1000 do cur.next = {}; cur = cur.next end
  lu.assertErrorMsgContains("nested deeper than", sluice.task, function() end, t)
end

function TestValues:test_results_that_cannot_cross()
  local t = sluice.task(function() return io.stdout end)
  lu.assertErrorMsgContains("cannot send a userdata value", t.await, t)
end

TestGlobals = {}

function helper_double(x) return 2 * x end   -- luacheck: globals helper_double
CONFIG = {factor = 3}

function TestGlobals:test_globals_snapshot_visible()
  lu.assertEquals(sluice.task(function(x) return helper_double(x) * CONFIG.factor end, 7):await(), 42)
end

function TestGlobals:test_later_changes_not_seen_by_started_work()
  SNAP = "before"
  local t = sluice.task(function() sluice.sleep(100) return SNAP end)
  SNAP = "after"
  lu.assertEquals(t:await(), "before")
  lu.assertEquals(sluice.task(function() return SNAP end):await(), "after")
end

function TestGlobals:test_global_that_cannot_cross()
  BAD_GLOBAL = io.stdout
  local t = sluice.task(function() return BAD_GLOBAL end)
  lu.assertErrorMsgContains("global 'BAD_GLOBAL' holds a value that cannot cross states", t.await, t)
  BAD_GLOBAL = nil
end

function TestGlobals:test_standard_globals_are_the_workers_own()
  lu.assertTrue(sluice.task(function() return type(print) == "function" and string ~= nil end):await())
end

-- The sluice binary running this suite: arg's lowest negative index.
local function sluice_binary()
  local i = -1
  while arg[i - 1] ~= nil do i = i - 1 end
  return arg[i]
end

TestWarn = {}

-- warn() behaves as in the lua5.4 interpreter, on the main state and on
-- workers: off until "@on", one "Lua warning: ..." line per message.
function TestWarn:test_warn_on_main_and_on_a_worker()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write([[
warn("not shown")
warn("@on")
warn("main ", "two", " pieces")
sluice.task(function()
  warn("worker off")
  warn("@on")
  warn("from a worker")
end):await()
warn("@off")
warn("off again")
]])
  f:close()
  local p = assert(io.popen(("%s -w 1 %s 2>&1"):format(sluice_binary(), path)))
  local out = p:read("a")
  p:close()
  os.remove(path)
  lu.assertEquals(out, "Lua warning: main two pieces\nLua warning: from a worker\n")
end

TestCModules = {}

-- BUILD/tests/probe.so (tests/capi/probe_module.c) gets the Lua API from
-- the sluice binary itself.
function TestCModules:test_require_a_c_module_on_main_and_on_a_worker()
  local build = sluice_binary():match("^(.*)/[^/]*$") or "."
  local cpath = build .. "/tests/?.so"
  package.cpath = cpath .. ";" .. package.cpath
  lu.assertEquals(require("probe").add(2, 3), 5)
  lu.assertEquals(sluice.task(function()
    package.cpath = cpath .. ";" .. package.cpath
    return require("probe").add(40, 2)
  end):await(), 42)
end

os.exit(lu.LuaUnit.run())
