-- examples/redis_wordcount.lua: a word count shared by several processes
-- through Redis Streams (lua/README.md §13).
--   build/sluice examples/redis_wordcount.lua [file] [processes]
-- runs it all on this machine: a redis-server of its own, the file's
-- lines added to the stream "lines", the workers started as processes of
-- this same script, and the counts read back. On several machines, with a
-- Redis they all reach, run the parts by hand:
--   sluice redis_wordcount.lua --fill  redis://host:6379 file
--   sluice redis_wordcount.lua --worker redis://host:6379 I N   (process I of N, on each machine)
--   sluice redis_wordcount.lua --print redis://host:6379
-- Each worker reads lines through the consumer group "wc" (each line goes
-- to one worker) and splits them into words; the partition across
-- processes sends each word to the stream words:<p> of its partition (4
-- of them), and process I counts the partitions that are its own, so each
-- word is counted in one place. The counts go to the stream "counts".
local flow = sluice.flow

local function fill(url, path)
  local conn = sluice.redis.connect(url)
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = { fields = { line = line } } end
  conn:add("lines", lines)
  conn:close()
end

local function worker(url, i, n)
  local lines = sluice.redis.source({ url = url, stream = "lines", group = "wc", consumer = "worker" .. i,
                                      drain = true })
  flow.from_stages({ lines })
    :flat_map(function(e) return e.fields.line:lower():gmatch("%a+") end)
    :partition({ redis = { url = url, stream = "words", partitions = 4, process = i, processes = n } })
    :frequencies()
    :into_redis({ url = url, stream = "counts" })
end

local function print_counts(url)
  local conn = sluice.redis.connect(url)
  local counts, words, from = {}, 0, "-"
  while true do
    local got = conn:call("XRANGE", "counts", from, "+", "COUNT", 1000)
    if #got == 0 then break end
    for _, entry in ipairs(got) do
      local wc = sluice.redis.decode(entry[2][2])   -- the field v: {word, count}
      assert(counts[wc[1]] == nil, "a word counted in two places")
      counts[wc[1]] = wc[2]
      words = words + wc[2]
    end
    from = "(" .. got[#got][1]
  end
  conn:close()
  local list = {}
  for w, c in pairs(counts) do list[#list + 1] = { w, c } end
  table.sort(list, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
  print(("%d words, %d distinct"):format(words, #list))
  for i = 1, math.min(10, #list) do print(("%-8s %d"):format(list[i][1], list[i][2])) end
end

if arg[1] == "--fill" then return fill(arg[2], arg[3]) end
if arg[1] == "--worker" then return worker(arg[2], tonumber(arg[3]), tonumber(arg[4])) end
if arg[1] == "--print" then return print_counts(arg[2]) end

-- everything on this machine
local path, processes = arg[1] or "examples/data/text.txt", tonumber(arg[2] or "3")
local srv = dofile("examples/private_redis.lua")()
fill(srv.url, path)
local running = {}
for i = 1, processes do
  running[i] = io.popen(("'%s' '%s' --worker '%s' %d %d"):format(arg[-1], arg[0], srv.url, i, processes))
end
for _, p in ipairs(running) do p:close() end   -- waits for each process
print_counts(srv.url)
srv:stop()
