-- One measurement of the Redis row (run.lua), run with sluice:
--   sluice redis.lua sluice|plain N PROCS SLUICE
-- Starts a redis-server of its own (unix socket, no persistence), adds N
-- entries {n = i} to "in", creates group "g", then times PROCS processes
-- of redis_sluice.lua (sluice) or redis_plain.lua (lua5.4 + lua-redis)
-- working them off into "out". Prints "ELAPSED <s>" (the processing only)
-- and "RESULT out=<XLEN out> pending=<pending in g> sum=<sum of out's n>".
local mode, n, procs, bin = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
local dir = io.popen('mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX"'):read("l")
local sock = dir .. "/r.sock"
local url = "unix://" .. sock
assert(os.execute(("redis-server --port 0 --unixsocket %s --dir %s --daemonize yes --pidfile %s/pid " ..
                   "--logfile %s/log --save '' --appendonly no"):format(sock, dir, dir, dir)))
local conn
for _ = 1, 500 do
  local ok, c = pcall(sluice.redis.connect, url)
  if ok and c:call("PING") == "PONG" then conn = c break end
  sluice.sleep(10)
end
assert(conn, "redis-server did not start")
for first = 1, n, 10000 do
  local ev = {}
  for i = first, math.min(first + 9999, n) do ev[#ev + 1] = { fields = { n = tostring(i) } } end
  conn:add("in", ev)
end
conn:call("XGROUP", "CREATE", "in", "g", "0")
local here = arg[0]:match("^(.*)/") or "."
local t0 = sluice._now_ms()
local running = {}
for i = 1, procs do
  local cmd = mode == "sluice"
    and ("%s -w 2 %s/redis_sluice.lua %s p%d"):format(bin, here, url, i)
    or ("LUA_PATH='/usr/share/lua/5.1/?.lua;;' lua5.4 %s/redis_plain.lua %s p%d"):format(here, sock, i)
  running[i] = io.popen(cmd)
end
for _, p in ipairs(running) do assert(p:close(), "a worker process failed") end
local elapsed = (sluice._now_ms() - t0) / 1000
local sum, from = 0, "-"
while true do
  local got = conn:call("XRANGE", "out", from, "+", "COUNT", 10000)
  if #got == 0 then break end
  for _, e in ipairs(got) do sum = sum + tonumber(e[2][2]) end
  from = "(" .. got[#got][1]
end
print(("ELAPSED %.3f"):format(elapsed))
print(("RESULT out=%d pending=%d sum=%d"):format(conn:call("XLEN", "out"), conn:call("XPENDING", "in", "g")[1], sum))
conn:close()
os.execute(("kill $(cat %s/pid); sleep 0.1; rm -rf '%s'"):format(dir, dir))
