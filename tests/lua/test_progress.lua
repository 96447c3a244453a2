-- The progress line's parts: the sizes of enumerables, the counters that
-- sources advance (split sources per chunk, from_enumerable producers per
-- demand, a file's bytes and lines), the line's text, and the option's
-- checks. tests/repl/test_progress.sh checks the line on a terminal.
local lu = require("luaunit")
local flow = sluice.flow
local tools = require("sluice.tools")

TestProgress = {}

local function write_lines(n)
  local path = os.tmpname()
  local f = io.open(path, "w")
  local size = 0
  for i = 1, n do
    local line = ("line %d %s\n"):format(i, ("x"):rep(i % 50))
    f:write(line)
    size = size + #line
  end
  f:close()
  return path, size
end

function TestProgress:test_sizes_of_enumerables()
  lu.assertEquals(tools.enum_size({ 1, 2, 3 }), 3)
  lu.assertEquals(tools.enum_size({}), 0)
  lu.assertEquals(tools.enum_size(sluice.range(1, 10)), 10)
  lu.assertEquals(tools.enum_size(sluice.range(10, 1, -3)), 4)
  lu.assertEquals(tools.enum_size(sluice.range(5, 1)), 0)
  lu.assertNil(tools.enum_size(sluice.range(1, math.huge)))
  lu.assertNil(tools.enum_size(function() end))
  local path, size = write_lines(10)
  lu.assertEquals(tools.enum_size(sluice.lines(path)), size)
  os.remove(path)
end

function TestProgress:test_line_text()
  lu.assertEquals(tools.progress_line(0.5, 1500000, 2000), "sluice:  50% | 750.0k events/s | 2.0s elapsed | ETA 2.0s")
  lu.assertEquals(tools.progress_line(0, 0, 0), "sluice:   0% | 0 events/s | 0.0s elapsed | ETA ?")
  lu.assertEquals(tools.progress_line(0.25, 9000, 90000), "sluice:  25% | 100 events/s | 1:30 elapsed | ETA 4:30")
  lu.assertEquals(tools.progress_line(1, 30000000, 3723000), "sluice: 100% | 8058 events/s | 1:02:03 elapsed | ETA 0.0s")
  lu.assertEquals(tools.progress_line(0.999, 3e9, 1000), "sluice:  99% | 3000.0M events/s | 1.0s elapsed | ETA 0.0s")
end

function TestProgress:test_wanted()
  lu.assertTrue(tools.progress_wanted(true))
  lu.assertFalse(tools.progress_wanted(false))
  -- make test runs with stderr on a file or pipe
  if os.getenv("SLUICE_PROGRESS") == nil then lu.assertEquals(tools.progress_wanted(nil), sluice._isatty(2)) end
  lu.assertNil(tools.progress({}, {}))   -- nothing of known size: no line
end

-- a producer of known size counts what it emitted
function TestProgress:test_from_enumerable_counts()
  local p = sluice.from_enumerable(sluice.range(1, 2500))
  local entry = tools.size_of(p)
  lu.assertEquals(entry.total, 2500)
  lu.assertEquals(entry.done, entry.events)
  local n = 0
  for _ in sluice.stream({ { p, max_demand = 100 } }) do n = n + 1 end
  lu.assertEquals(n, 2500)
  lu.assertEquals(sluice._count(entry.done), 2500)
  lu.assertNil(tools.size_of(sluice.from_enumerable(sluice.range(1, math.huge), { demand = "accumulate" })))
end

function TestProgress:test_from_enumerable_lines_counts_bytes_and_lines()
  local path, size = write_lines(3000)
  local p = sluice.from_enumerable(sluice.lines(path))
  local entry = tools.size_of(p)
  lu.assertEquals(entry.total, size)
  local n = 0
  for _ in sluice.stream({ p }) do n = n + 1 end
  lu.assertEquals(n, 3000)
  lu.assertEquals(sluice._count(entry.done), size)
  lu.assertEquals(sluice._count(entry.events), 3000)
  os.remove(path)
end

-- a split source's stages count each chunk: at the end, the whole size
function TestProgress:test_split_sources_count_everything()
  local path, size = write_lines(30000)   -- about 1 MB: several parts per stage
  for _, stages in ipairs({ 1, 2, 3 }) do
    local r = flow.from_enumerable(sluice.lines(path), { stages = stages }):map(function(l) return #l end):start()
    r:await()
    local entry = r.run.progress[1]
    lu.assertEquals(entry.total, size)
    lu.assertEquals(sluice._count(entry.done), size)
    lu.assertEquals(sluice._count(entry.events), 30000)
    local r2 = flow.from_enumerable(sluice.range(1, 100001), { stages = stages })
      :reduce(function() return 0 end, function(x, a) return a + x end):start()
    r2:await()
    lu.assertEquals(r2.run.progress[1].total, 100001)
    lu.assertEquals(sluice._count(r2.run.progress[1].done), 100001)
  end
  os.remove(path)
end

function TestProgress:test_option_checks()
  lu.assertErrorMsgContains("sluice.flow.from_enumerable: progress must be true or false, got 1",
    flow.from_enumerable, { 1 }, { progress = 1 })
  lu.assertErrorMsgContains("sluice.stream: progress must be true or false, got \"yes\"",
    sluice.stream, {}, { progress = "yes" })
  lu.assertErrorMsgContains("sluice.stream: unknown option \"x\"", sluice.stream, {}, { x = 1 })
  -- accepted on any layer, and the flow runs as without it
  lu.assertEquals(flow.from_enumerable({ 1, 2, 3 }, { stages = 1, progress = false })
    :map(function(x) return x * 2 end):to_list(), { 2, 4, 6 })
  lu.assertEquals(#flow.from_enumerable({ 1, 2, 3 }, { stages = 1 })
    :partition({ stages = 1, progress = false }):to_list(), 3)
end

os.exit(lu.LuaUnit.run())
