-- A private redis-server for the Redis suites: started in a new temporary
-- directory, listening only on a unix socket there (--port 0), without
-- persistence unless asked (aof = true: appendonly with fsync always).
-- Loaded with dofile; returns the table H.
--   H.available()            -> true when redis-server is installed
--   H.start([opts]) -> srv   srv.url, srv.dir; srv:kill() (kill -9),
--                            srv:restart() (same directory), srv:stop(),
--                            srv:restart_later(ms, pause_ms) (in the background)
local H = {}

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

function H.available()
  return sh("command -v redis-server >/dev/null 2>&1")
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local Server = {}
Server.__index = Server

-- Starts redis-server on the directory and waits (5 s at most) until it
-- answers PING.
-- The shell command that starts the server.
function Server:command()
  local args = ("--port 0 --unixsocket %s/r.sock --dir %s --daemonize yes --pidfile %s/pid --logfile %s/log --save ''")
    :format(self.dir, self.dir, self.dir, self.dir)
  args = args .. (self.aof and " --appendonly yes --appendfsync always" or " --appendonly no")
  return "redis-server " .. args .. " >/dev/null 2>&1"
end

-- In the background, after ms milliseconds: kill -9 the server, wait
-- pause_ms, start it again (srv.pid is read again by srv:pid_now()).
function Server:restart_later(ms, pause_ms)
  sh(("(sleep %.3f; kill -9 %d; while kill -0 %d 2>/dev/null; do sleep 0.01; done; rm -f %s/r.sock %s/pid; " ..
      "sleep %.3f; %s) >/dev/null 2>&1 &"):format(ms / 1000, self.pid, self.pid, self.dir, self.dir,
                                                   pause_ms / 1000, self:command()))
end

function Server:pid_now()
  self.pid = tonumber(read(self.dir .. "/pid"))
  return self.pid
end

function Server:launch()
  os.remove(self.dir .. "/pid")
  assert(sh(self:command()), "redis-server did not start")
  for _ = 1, 500 do
    local ok, conn = pcall(sluice.redis.connect, self.url)
    if ok then
      local pong = conn:call("PING")
      conn:close()
      if pong == "PONG" then
        self.pid = tonumber(read(self.dir .. "/pid"))
        if self.pid then return end
      end
    end
    sluice.sleep(10)
  end
  error("redis-server did not answer within 5 s: " .. tostring(read(self.dir .. "/log")))
end

function H.start(opts)
  opts = opts or {}
  local p = io.popen("mktemp -d \"${TMPDIR:-/tmp}/sluice-redis.XXXXXX\"")
  local dir = p:read("l")
  p:close()
  local srv = setmetatable({ dir = dir, url = "unix://" .. dir .. "/r.sock", aof = opts.aof }, Server)
  srv:launch()
  return srv
end

function Server:kill()
  if self.pid then sh(("kill -9 %d 2>/dev/null"):format(self.pid)) end
  -- the socket file stays behind a killed server
  for _ = 1, 200 do
    if not sh(("kill -0 %d 2>/dev/null"):format(self.pid)) then break end
    sluice.sleep(10)
  end
  os.remove(self.dir .. "/r.sock")
  self.pid = nil
end

function Server:restart() self:launch() end

function Server:stop()
  self:kill()
  sh(("rm -rf '%s'"):format(self.dir))
end

return H
