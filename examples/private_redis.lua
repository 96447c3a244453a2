-- examples/private_redis.lua: a redis-server of the examples' own, for
-- trying the Redis examples on one machine (with a Redis of your own,
-- pass its URL to the examples instead). Loaded with dofile:
--   local srv = dofile("examples/private_redis.lua")()  -- srv.url, srv:stop()
-- The server listens only on a unix socket in a new temporary directory,
-- keeps nothing on disk, and is stopped by srv:stop().
return function()
  assert(os.execute("command -v redis-server >/dev/null"),
         "these examples start a redis-server of their own: install the redis-server package")
  local p = io.popen('mktemp -d "${TMPDIR:-/tmp}/sluice-example.XXXXXX"')
  local dir = p:read("l")
  p:close()
  assert(os.execute(("redis-server --port 0 --unixsocket %s/r.sock --dir %s --daemonize yes --pidfile %s/pid " ..
                     "--logfile %s/log --save '' --appendonly no"):format(dir, dir, dir, dir)))
  local srv = { url = "unix://" .. dir .. "/r.sock" }
  for _ = 1, 500 do   -- up to 5 s for it to answer
    local ok, conn = pcall(sluice.redis.connect, srv.url)
    if ok then
      conn:close()
      break
    end
    sluice.sleep(10)
  end
  function srv:stop()
    local f = io.open(dir .. "/pid")
    local pid = f and f:read("n")
    if f then f:close() end
    if pid then
      os.execute("kill " .. pid)
      -- up to 5 s for it to exit: it writes its log and removes its
      -- socket on the way out, which must not race the rm below
      for _ = 1, 500 do
        if not os.execute(("kill -0 %d 2>/dev/null"):format(pid)) then break end
        sluice.sleep(10)
      end
    end
    os.execute(("rm -rf '%s'"):format(dir))
  end
  return srv
end
