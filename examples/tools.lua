-- examples/tools.lua: JSON lines in and out, the live stages' stats, table
-- and topology, and a flow's planned topology as Graphviz DOT (lua/README.md
-- §6, §8.6, §3).
local flow = sluice.flow
local out = os.tmpname()

-- a flow written as JSON lines, then read back (a bad line is skipped and counted)
local n = flow.from_enumerable({ { word = "gate" }, { word = "wheel" }, { word = "gate" } }, { stages = 1 })
  :into_jsonl(out)
print("into_jsonl wrote", n)
local f = io.open(out, "a"); f:write("not json\n"); f:close()
local src = sluice.jsonl(out, { bad = "skip" })
local counts = flow.from_enumerable(src, { stages = 1 })
  :map(function(e) return e.word end):frequencies():to_list()
table.sort(counts, function(a, b) return a[1] < b[1] end)
print("read back:", sluice.inspect(counts), "skipped:", src:skipped())
os.remove(out)

-- the live stages: their stats, as sluice.top draws them (once: no key to
-- wait for), and their subscriptions as Graphviz DOT
local p = sluice.from_enumerable(sluice.range(1, math.huge), { name = "numbers", worker = 1, demand = "accumulate" })
sluice.start({ type = "consumer", handle_events = function(_, _, s) return {}, s end }, nil,
  { name = "sink", worker = 1, subscribe_to = { p } })
repeat sluice.sleep(5) until p:stats().consumers == 1   -- the subscription has arrived
for _, s in ipairs(sluice.stats()) do print("stats:", s.name, s.type, s.events_out, s.buffered, s.late) end
sluice.top({ times = 1 })
io.write(sluice.graph())
p:stop()

-- the topology of a flow, without starting it
local sum = flow.from_enumerable({ 1, 2, 3 }, { stages = 1 }):map(function(x) return x end)
  :partition({ stages = 1 }):reduce(function() return 0 end, function(x, a) return a + x end)
io.write(sum:graph())
print("flow.graph gives the same text:", flow.graph(sum) == sum:graph())
