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
    if f then
      os.execute("kill " .. f:read("n"))
      f:close()
    end
    sluice.sleep(50)
    os.execute(("rm -rf '%s'"):format(dir))
  end
  return srv
end
