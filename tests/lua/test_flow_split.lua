-- Flows over one sluice.range or sluice.lines source whose first layer
-- computes something: the layer's stages claim parts of the source (16
-- per stage at most; a part has at least 16384 numbers or 256 KiB of
-- lines) and read them themselves.
local lu = require("luaunit")
local flow = sluice.flow

local function sorted(t) table.sort(t); return t end

local function range_list(first, last, step)
  local out = {}
  for i = first, last, step do out[#out + 1] = i end
  return out
end

local tmp = os.tmpname()
local function write(text)
  local f = assert(io.open(tmp, "wb")); f:write(text); f:close()
  return tmp
end

TestSplit = {}

function TestSplit:test_range_parts_cover_everything_once()
  for _, c in ipairs({{1, 100, 1}, {1, 7, 1}, {10, -10, -3}, {5, 5, 1}, {5, 4, 1}, {0, 99, 7}}) do
    for _, stages in ipairs({1, 2, 3, 8}) do
      local got = flow.from_enumerable(sluice.range(c[1], c[2], c[3]), {stages = stages})
        :map(function(x) return x end):to_list()
      lu.assertEquals(sorted(got), sorted(range_list(c[1], c[2], c[3])),
        ("range(%d, %d, %d) on %d stages"):format(c[1], c[2], c[3], stages))
    end
  end
end

function TestSplit:test_range_one_stage_keeps_order()
  local got = flow.from_enumerable(sluice.range(1, 3000), {stages = 1})
    :map(function(x) return x * 2 end):filter(function(x) return x % 3 ~= 0 end):to_list()
  local want = {}
  for i = 1, 3000 do if (2 * i) % 3 ~= 0 then want[#want + 1] = 2 * i end end
  lu.assertEquals(got, want)
end

function TestSplit:test_range_reduce_per_stage()
  local got = flow.from_enumerable(sluice.range(1, 10000), {stages = 4})
    :reduce(function() return 0 end, function(x, acc) return acc + x end):to_list()
  lu.assertEquals(#got, 4)
  local total = 0
  for _, v in ipairs(got) do total = total + v end
  lu.assertEquals(total, 50005000)
end

function TestSplit:test_many_range_parts_cover_everything_once_and_keep_order_on_one_stage()
  local function sum_count(fl)
    local got = fl:reduce(function() return {0, 0} end, function(x, acc)
      acc[1], acc[2] = acc[1] + x, acc[2] + 1
      return acc
    end):emit("state"):to_list()
    local s, n = 0, 0
    for _, st in ipairs(got) do s, n = s + st[1], n + st[2] end
    return s, n
  end
  for _, c in ipairs({{1, 1000003, 1}, {1000000, -5, -3}, {-7, 2000000, 13}}) do
    local want_s, want_n = 0, 0
    for i = c[1], c[2], c[3] do want_s, want_n = want_s + i, want_n + 1 end
    for _, stages in ipairs({1, 2, 3}) do
      local s, n = sum_count(flow.from_enumerable(sluice.range(c[1], c[2], c[3]), {stages = stages}))
      lu.assertEquals({s, n}, {want_s, want_n}, ("range(%d, %d, %d) on %d stages"):format(c[1], c[2], c[3], stages))
    end
  end
  -- one stage claims the parts in order
  local got = flow.from_enumerable(sluice.range(1, 200000), {stages = 1}):map(function(x) return x end):to_list()
  lu.assertEquals(#got, 200000)
  local in_order = true
  for i = 1, #got do if got[i] ~= i then in_order = false; break end end
  lu.assertTrue(in_order)
end

function TestSplit:test_parts_go_to_the_stage_that_is_free()
  lu.skipIf(sluice.workers() < 2, "needs two workers")
  -- stage 2 stops for 300 ms on its first number; stage 1 claims the parts
  -- meanwhile (an even split would give each 500000)
  local got = flow.from_enumerable(sluice.range(1, 1000000), {stages = 2,
      on_init = function(p) SPLIT_STAGE = p.index end})
    :reduce(function() return {stage = SPLIT_STAGE, n = 0} end, function(_, acc)
      if acc.stage == 2 and acc.n == 0 then sluice.sleep(300) end
      acc.n = acc.n + 1
      return acc
    end):emit("state"):to_list()
  table.sort(got, function(a, b) return a.stage < b.stage end)
  lu.assertEquals(#got, 2)
  lu.assertEquals(got[1].n + got[2].n, 1000000)
  lu.assertTrue(got[1].n > got[2].n, ("stage 1 read %d, stage 2 read %d"):format(got[1].n, got[2].n))
end

function TestSplit:test_a_reducing_split_source_can_be_stopped()
  -- a trillion numbers: reading them in one callback would never end;
  -- the stages hand their worker back every few chunks, so stop is heard
  local h = flow.from_enumerable(sluice.range(1, 1000000000000), {stages = 2})
    :reduce(function() return 0 end, function(_, acc) return acc + 1 end):start()
  sluice.sleep(50)
  h:stop()
  lu.assertEquals(select("#", h:await(1000)), 0)
  lu.assertEquals(#flow.from_enumerable(sluice.range(1, 10), {stages = 2}):map(function(x) return x end):to_list(), 10)
end

local MAXI, MINI = math.maxinteger, math.mininteger

-- The first n events a flow emits (the flow stops once they came).
local function first_events(fl, n)
  local out = {}
  for v in fl:stream() do
    out[#out + 1] = v
    if #out == n then break end
  end
  return out
end

function TestSplit:test_small_ranges_at_the_integer_limits()
  for _, c in ipairs({{MAXI - 5, MAXI, 1}, {MINI, MINI + 5, 1}, {MAXI, MAXI - 5, -1}, {MINI + 5, MINI, -1},
                      {MAXI - 20, MAXI, 7}, {MINI + 20, MINI, -7}, {MAXI, MINI, MINI}, {MINI, MAXI, MAXI},
                      {MINI, MAXI, 1 << 62}, {MAXI, MINI, -(1 << 62)}, {MAXI, MAXI, 1}, {MINI, MINI, -1}}) do
    for _, stages in ipairs({1, 2, 3}) do
      local got = flow.from_enumerable(sluice.range(c[1], c[2], c[3]), {stages = stages})
        :map(function(x) return x end):to_list()
      lu.assertEquals(sorted(got), sorted(range_list(c[1], c[2], c[3])),
        ("range(%d, %d, %d) on %d stages"):format(c[1], c[2], c[3], stages))
    end
  end
end

function TestSplit:test_ranges_of_many_parts_at_the_integer_limits()
  -- sums wrap around identically in the flow and here
  for _, c in ipairs({{MAXI - 100000, MAXI, 1}, {MINI, MINI + 100000, 1}, {MINI + 300000, MINI, -3},
                      {MAXI, MAXI - 200000, -7}}) do
    local want_s, want_n = 0, 0
    for i = c[1], c[2], c[3] do want_s, want_n = want_s + i, want_n + 1 end
    for _, stages in ipairs({1, 2, 3}) do
      local got = flow.from_enumerable(sluice.range(c[1], c[2], c[3]), {stages = stages})
        :reduce(function() return {0, 0} end, function(x, acc)
          acc[1], acc[2] = acc[1] + x, acc[2] + 1
          return acc
        end):emit("state"):to_list()
      local s, n = 0, 0
      for _, st in ipairs(got) do s, n = s + st[1], n + st[2] end
      lu.assertEquals({s, n}, {want_s, want_n}, ("range(%d, %d, %d) on %d stages"):format(c[1], c[2], c[3], stages))
    end
  end
end

function TestSplit:test_ranges_of_2_to_the_63_numbers_and_more()
  local id = function(x) return x end
  for _, c in ipairs({{0, MAXI, 1}, {-(1 << 62), 1 << 62, 1}, {MINI, MAXI, 1}, {MAXI, MINI, -1},
                      {MINI, MAXI, 3}, {-1, MINI, -2}}) do
    local first, last, step = c[1], c[2], c[3]
    local what = ("range(%d, %d, %d)"):format(first, last, step)
    -- one stage reads the parts in order: the range's first numbers
    lu.assertEquals(first_events(flow.from_enumerable(sluice.range(first, last, step), {stages = 1}):map(id), 5),
      {first, first + step, first + 2 * step, first + 3 * step, first + 4 * step}, what)
    -- several stages start on different parts, each on a number of the range
    local got = first_events(flow.from_enumerable(sluice.range(first, last, step), {stages = 3}):map(id), 50)
    lu.assertEquals(#got, 50, what)
    for _, x in ipairs(got) do
      if step > 0 then lu.assertTrue(x >= first and x <= last, what) else lu.assertTrue(x <= first and x >= last, what) end
      lu.assertEquals((x - first) % step, 0, what)
    end
  end
  -- a reduce over all the integers can be stopped
  local h = flow.from_enumerable(sluice.range(MINI, MAXI), {stages = 2})
    :reduce(function() return 0 end, function(_, acc) return acc + 1 end):start()
  sluice.sleep(50)
  h:stop()
  lu.assertEquals(select("#", h:await(1000)), 0)
end

-- How many lines io.lines reads from path.
local function plain_count(path)
  local n = 0
  for _ in io.lines(path) do n = n + 1 end
  return n
end

function TestSplit:test_files_whose_size_reads_zero_are_read_whole()
  for _, path in ipairs({"/proc/cpuinfo", "/proc/self/status", "/proc/self/maps"}) do
    local f = io.open(path, "rb")
    if f then
      f:close()
      local want = plain_count(path)
      lu.assertTrue(want > 0, path)
      for _, stages in ipairs({1, 2, 3}) do
        local got = flow.from_enumerable(sluice.lines(path), {stages = stages})
          :reduce(function() return 0 end, function(_, n) return n + 1 end):emit("state"):to_list()
        local n = 0
        for _, c in ipairs(got) do n = n + c end
        -- maps gains or loses a few lines as threads come and go
        if path == "/proc/self/maps" then lu.assertTrue(n > want / 2, path) else lu.assertEquals(n, want, path) end
      end
    end
  end
  local got = flow.from_enumerable(sluice.lines("/proc/cpuinfo"), {stages = 2}):map(function(l) return l end):to_list()
  local want = {}
  for l in io.lines("/proc/cpuinfo") do want[#want + 1] = l end
  lu.assertEquals(got, want)
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function TestSplit:test_lines_of_a_fifo()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. shell_quote(dir)))
  local fifo, mark = dir .. "/fifo", dir .. "/reading"
  assert(os.execute("mkfifo " .. shell_quote(fifo)))
  -- the writer holds the fifo open for reading and writing, so that the
  -- lines stay in it while sluice.lines and the flow open and close it,
  -- and ends the input once the flow has read its first line (or after
  -- 10 s)
  local lines = {}
  for i = 1, 300 do lines[i] = "fifo line " .. i end
  local data = dir .. "/data"
  local f = assert(io.open(data, "wb")); f:write(table.concat(lines, "\n"), "\n"); f:close()
  local writer = assert(io.popen(("sh -c %s"):format(shell_quote(
    ("exec 3<>%s; cat %s >&3; i=0; while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exec 3>&-")
      :format(shell_quote(fifo), shell_quote(data), shell_quote(mark)))), "r"))
  local ok, got = pcall(function()
    return flow.from_enumerable(sluice.lines(fifo), {stages = 2})
      :map(function(l)
        local m = io.open(mark, "a"); m:close()
        return l
      end):to_list()
  end)
  if not ok then io.open(mark, "a"):close() end
  writer:close()
  os.execute("rm -rf " .. shell_quote(dir))
  if not ok then error(got, 0) end
  lu.assertEquals(got, lines)
end

-- The sluice binary running this suite: arg's lowest negative index.
local function sluice_binary()
  local i = -1
  while arg[i - 1] ~= nil do i = i - 1 end
  return arg[i]
end

function TestSplit:test_lines_of_stdin_as_a_pipe()
  local script = os.tmpname()
  local f = assert(io.open(script, "wb"))
  f:write([[
local got = sluice.flow.from_enumerable(sluice.lines("/dev/stdin"), {stages = 2})
  :map(function(l) return #l end):reduce(function() return 0 end, function(n, acc) return acc + n end)
  :emit("state"):to_list()
local total = 0
for _, n in ipairs(got) do total = total + n end
print("total " .. total)
]])
  f:close()
  local p = assert(io.popen(("printf 'ab\\ncde\\n\\nf\\n' | %s -w 2 %s 2>&1"):format(sluice_binary(), script)))
  local out = p:read("a")
  p:close()
  os.remove(script)
  lu.assertEquals(out, "total 6\n")
end

function TestSplit:test_many_lines_parts_cover_every_line_once()
  local lines = {}
  for i = 1, 60000 do lines[i] = ("line %d %s"):format(i, string.rep("y", i % 61)) end
  local path = write(table.concat(lines, "\n"))   -- ~2.3 MB, no final newline
  for _, stages in ipairs({1, 2, 3}) do
    local got = flow.from_enumerable(sluice.lines(path), {stages = stages}):map(function(l) return l end):to_list()
    lu.assertEquals(#got, #lines, "stages = " .. stages)
    if stages == 1 then
      lu.assertEquals(got, lines)
    else
      local seen = {}
      for _, l in ipairs(got) do seen[l] = (seen[l] or 0) + 1 end
      local ok = true
      for _, l in ipairs(lines) do if seen[l] ~= 1 then ok = false end end
      lu.assertTrue(ok, "stages = " .. stages)
    end
  end
end

function TestSplit:test_lines_parts_cover_every_line_once()
  local lines = {}
  for i = 1, 500 do lines[i] = ("line %d %s"):format(i, string.rep("x", i % 17)) end
  local path = write(table.concat(lines, "\n") .. "\n")
  for _, stages in ipairs({1, 2, 3, 7}) do
    local got = flow.from_enumerable(sluice.lines(path), {stages = stages})
      :map(function(l) return l end):to_list()
    local want = {}
    for i = 1, 500 do want[i] = lines[i] end
    lu.assertEquals(sorted(got), sorted(want), stages .. " stages")
  end
end

function TestSplit:test_lines_crlf_no_final_newline_and_empty_lines()
  local path = write("a\r\nb\n\nc")
  lu.assertEquals(flow.from_enumerable(sluice.lines(path), {stages = 1}):map(function(l) return l end):to_list(),
    {"a", "b", "", "c"})
  lu.assertEquals(sorted(flow.from_enumerable(sluice.lines(path), {stages = 3})
    :map(function(l) return l end):to_list()), {"", "a", "b", "c"})
  local empty = write("")
  lu.assertEquals(flow.from_enumerable(sluice.lines(empty), {stages = 2}):map(function(l) return l end):to_list(), {})
end

function TestSplit:test_lines_word_count_equals_plain_count()
  local words = {"alpha", "beta", "gamma", "delta", "epsilon"}
  local buf, want = {}, {}
  for i = 1, 2000 do
    local line = {}
    for j = 1, (i % 9) + 1 do
      local w = words[(i * j) % #words + 1]
      line[#line + 1] = w
      want[w] = (want[w] or 0) + 1
    end
    buf[i] = table.concat(line, " ")
  end
  local path = write(table.concat(buf, "\n"))
  for _, stages in ipairs({1, 2, 4}) do
    local got = flow.from_enumerable(sluice.lines(path), {stages = stages})
      :flat_map(function(l) local t = {} for w in l:gmatch("%a+") do t[#t + 1] = w end return t end)
      :partition({stages = stages})
      :reduce(function() return {} end, function(w, acc) acc[w] = (acc[w] or 0) + 1; return acc end)
      :to_list()
    local counts = {}
    for _, kv in ipairs(got) do counts[kv[1]] = kv[2] end
    lu.assertEquals(counts, want, stages .. " stages")
  end
end

function TestSplit:test_run_and_departition_over_split_source()
  flow.from_enumerable(sluice.range(1, 5000), {stages = 2}):map(function(x) return x end):run()
  local got = flow.from_enumerable(sluice.range(1, 100), {stages = 3})
    :reduce(function() return 0 end, function(x, acc) return acc + x end)
    :departition(function() return 0 end, function(s, acc) return acc + s end, function(acc) return acc end)
    :to_list()
  lu.assertEquals(got, {5050})
  local top = flow.from_enumerable(sluice.range(1, 100), {stages = 3})
    :reduce(function() return {} end, function(x, acc) acc[#acc + 1] = x; return acc end)
    :take_sort(3, function(a, b) return a > b end)
    :to_list()
  lu.assertEquals(top, {{100, 99, 98}})
end

function TestSplit:test_error_in_split_source_names_the_operation()
  local ok, err = pcall(function()
    return flow.from_enumerable(sluice.range(1, 100), {stages = 2})
      :map(function(x) if x == 77 then error("seventy-seven") end return x end):to_list()
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "(map)")
  lu.assertStrContains(err, "seventy-seven")
  lu.assertEquals(#flow.from_enumerable(sluice.range(1, 10)):map(function(x) return x end):to_list(), 10)
end

os.exit(lu.LuaUnit.run())
