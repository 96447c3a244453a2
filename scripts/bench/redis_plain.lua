-- Baseline of the Redis row (run.lua): the loop a Lua program writes with
-- Debian's lua-redis client (lua-socket underneath), one process of it:
--   lua5.4 redis_plain.lua SOCKET NAME
-- Reads "in" through group "g" as NAME, 100 entries per XREADGROUP; for
-- each entry adds {n = 2n} to "out" (one round trip each); acknowledges
-- each batch with one XACK. Ends when a read finds nothing. lua-redis is
-- installed for Lua 5.1-5.3 only; the file works under 5.4 (run.lua sets
-- LUA_PATH), and stream commands are declared here.
local redis = require("redis")
for _, c in ipairs({ "xreadgroup", "xadd", "xack" }) do redis.commands[c] = redis.command(c) end
local sock, name = arg[1], arg[2]
local client = redis.connect({ scheme = "unix", path = sock })
while true do
  local reply = client:xreadgroup("GROUP", "g", name, "COUNT", 100, "STREAMS", "in", ">")
  if not reply or #reply == 0 or #reply[1][2] == 0 then break end
  local ids = {}
  for i, entry in ipairs(reply[1][2]) do
    local fields = entry[2]
    local n
    for k = 1, #fields, 2 do if fields[k] == "n" then n = tonumber(fields[k + 1]) end end
    client:xadd("out", "*", "n", tostring(n * 2))
    ids[i] = entry[1]
  end
  client:xack("in", "g", table.unpack(ids))
end
