-- GenStage producers (lua/README.md §5): the demand, broadcast and partition
-- dispatchers, the buffer (size, keep first/last, overflow warning),
-- infos behind buffered events, and accumulated demand.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "stages_helper.lua")
local Counter, Silent, Collector = H.Counter, H.Silent, H.Collector

local function evens(t)
  local r = {}
  for _, v in ipairs(t) do if v % 2 == 0 then r[#r + 1] = v end end
  return r
end

-- ---- demand dispatcher --------------------------------------------------------

TestDemandDispatcher = {}

function TestDemandDispatcher:test_highest_demand_first_and_split_batches()
  local p = sluice.start(Silent, nil)
  local c1 = sluice.start(Collector, {manual = 3}, {subscribe_to = {p}})
  local c2 = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {3, 5})
  p:call({"emit", 10})
  lu.assertEquals(p:buffered(), 2)          -- the rest waits in the buffer
  lu.assertEquals(c2:call("events"), {0, 1, 2, 3, 4})
  lu.assertEquals(c1:call("events"), {5, 6, 7})
  c1:call({"ask", 1})
  lu.assertEquals(p:buffered(), 1)
  lu.assertEquals(c1:call("events"), {5, 6, 7, 8})
  lu.assertEquals(p:stats().demand, 0)
end

function TestDemandDispatcher:test_ties_in_subscription_order()
  local p = sluice.start(Silent, nil)
  local c1 = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  local c2 = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  local c3 = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {2, 2, 2})
  p:call({"emit", 5})
  lu.assertEquals(c1:call("events"), {0, 1})
  lu.assertEquals(c2:call("events"), {2, 3})
  lu.assertEquals(c3:call("events"), {4})
end

function TestDemandDispatcher:test_demand_goes_to_handle_demand_once()
  -- two automatic consumers: every ask reaches handle_demand as it comes
  local p = sluice.start(Counter, {}, {demand = "accumulate"})
  local c1 = sluice.start(Collector, {want = 10}, {subscribe_to = {{p, max_demand = 10, min_demand = 0}}})
  local c2 = sluice.start(Collector, {want = 10}, {subscribe_to = {{p, max_demand = 10, min_demand = 0}}})
  p:demand("forward")
  lu.assertEquals(c1:await()[2], H.range(0, 9))
  lu.assertEquals(c2:await()[2], H.range(10, 19))
  lu.assertEquals(p:call("demands"), {10, 10})
end

function TestDemandDispatcher:test_shuffle_demands_on_first_dispatch()
  local p = sluice.start(Silent, nil,
                         {dispatcher = sluice.dispatcher.demand{shuffle_demands_on_first_dispatch = true}})
  local cs = {}
  for i = 1, 4 do cs[i] = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}}) end
  lu.assertEquals(p:call("demands"), {5, 5, 5, 5})
  p:call({"emit", 20})
  local all = {}
  for i = 1, 4 do
    local ev = cs[i]:call("events")
    lu.assertEquals(#ev, 5)
    lu.assertEquals(ev[5] - ev[1], 4)       -- one contiguous slice each
    for _, e in ipairs(ev) do all[#all + 1] = e end
  end
  table.sort(all)
  lu.assertEquals(all, H.range(0, 19))
end

function TestDemandDispatcher:test_cancelled_demand_is_not_asked_twice()
  -- c1's unmet demand stays with the producer when it leaves: a new
  -- consumer's ask is served from it before handle_demand is asked again
  local p = sluice.start(Silent, nil)
  local c1 = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {5})
  c1:stop()
  local c2 = sluice.start(Collector, {manual = 3}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {5})
  c2:call({"ask", 4})
  lu.assertEquals(p:call("demands"), {5, 2})
  p:call({"emit", 7})
  lu.assertEquals(c2:call("events"), H.range(0, 6))
end

-- ---- broadcast dispatcher ----------------------------------------------------------

TestBroadcast = {}

local function broadcast_producer(last)
  return sluice.start(Counter, {last = last}, {demand = "accumulate", dispatcher = sluice.dispatcher.broadcast{}})
end

function TestBroadcast:test_every_consumer_gets_every_event()
  local p = broadcast_producer(49)
  local cs = {}
  for i, max in ipairs({5, 3, 50}) do
    cs[i] = sluice.start(Collector, {report = true}, {subscribe_to = {{p, max_demand = max, cancel = "transient"}}})
  end
  p:demand("forward")
  for i = 1, 3 do lu.assertEquals(cs[i]:await()[2], H.range(0, 49)) end
end

function TestBroadcast:test_demands_follow_the_slowest()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.broadcast{}})
  local c2 = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  local c1 = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {2})   -- c1's 5: no more than c2's 2 was asked
  p:call({"emit", 7})
  lu.assertEquals(p:buffered(), 5)
  lu.assertEquals(c1:call("events"), {0, 1})
  lu.assertEquals(c2:call("events"), {0, 1})
  c2:call({"ask", 4})                        -- now 3 for both: served from the buffer
  lu.assertEquals(p:buffered(), 2)
  lu.assertEquals(p:call("demands"), {2})
  lu.assertEquals(c1:call("events"), {0, 1, 2, 3, 4})
  lu.assertEquals(c2:call("events"), {0, 1, 2, 3, 4})
end

function TestBroadcast:test_selector()
  local p = broadcast_producer(19)
  local all = sluice.start(Collector, {report = true}, {subscribe_to = {{p, max_demand = 4, cancel = "transient"}}})
  local even = sluice.start(Collector, {report = true},
                            {subscribe_to = {{p, max_demand = 4, cancel = "transient",
                                              selector = function(e) return e % 2 == 0 end}}})
  p:demand("forward")
  lu.assertEquals(all:await()[2], H.range(0, 19))
  lu.assertEquals(even:await()[2], evens(H.range(0, 19)))
end

function TestBroadcast:test_a_selective_consumer_never_starves()
  -- the first 40 events are all rejected: their demand comes back, so the
  -- selective consumer keeps asking and the pipeline keeps moving
  local p = broadcast_producer(49)
  local late = sluice.start(Collector, {report = true},
                            {subscribe_to = {{p, max_demand = 3, cancel = "transient",
                                              selector = function(e) return e >= 40 end}}})
  local all = sluice.start(Collector, {report = true}, {subscribe_to = {{p, max_demand = 3, cancel = "transient"}}})
  p:demand("forward")
  lu.assertEquals(late:await()[2], H.range(40, 49))
  lu.assertEquals(all:await()[2], H.range(0, 49))
end

-- A consumer whose selector rejects most events gives their demand back
-- while a slower one asks 3 at a time: events made for demand that then
-- waited for the slower consumer are buffered, and they meet later demand
-- once (counted twice, they left the producer owing an ask it never got:
-- the flow stopped after 50 events).
function TestBroadcast:test_buffered_events_meet_demand_once()
  local p = broadcast_producer(95)
  local thirds = sluice.start(Collector, {report = true},
                              {subscribe_to = {{p, max_demand = 50, min_demand = 5, cancel = "transient",
                                                selector = function(e) return e % 3 == 0 end}}})
  local all = sluice.start(Collector, {report = true},
                           {subscribe_to = {{p, max_demand = 3, min_demand = 0, cancel = "transient",
                                             selector = function() return true end}}})
  sluice.sleep(20)
  p:demand("forward")
  local want = {}
  for i = 0, 95, 3 do want[#want + 1] = i end
  lu.assertEquals(thirds:await(5000)[2], want)
  lu.assertEquals(all:await(5000)[2], H.range(0, 95))
end

function TestBroadcast:test_selector_error_stops_the_consumer()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.broadcast{}})
  local c = sluice.start(Collector, {}, {subscribe_to = {{p, selector = function(e) error("selector broke") end}}})
  p:call({"emit", 1})
  local r = c:await()
  lu.assertEquals(r[1], "error")
  lu.assertStrContains(r[2], "(selector)")
  lu.assertStrContains(r[2], "selector broke")
  lu.assertStrContains(r[3], "stack traceback")
end

function TestBroadcast:test_duplicate_subscription_is_refused_and_the_consumer_keeps_running()
  local p = broadcast_producer(9)
  local c = sluice.start(Collector, {report = true}, {subscribe_to = {{p, cancel = "transient"}, {p, cancel = "permanent"}}})
  p:demand("forward")
  local r = c:await()
  lu.assertEquals(r[2], H.range(0, 9))      -- once each
  lu.assertEquals(r[1], "done")
end

function TestBroadcast:test_duplicate_subscription_handle_cancel()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.broadcast{}})
  local c = sluice.start(Collector, {}, {subscribe_to = {p}})
  sluice.subscribe(c, p)
  H.wait_until(function() return #c:call("log") == 3 end)
  lu.assertEquals(c:call("log")[3], {"cancel", {"cancel", "already_subscribed"}})
  lu.assertTrue(c:alive())
  lu.assertEquals(c:stats().producers, 1)
  lu.assertEquals(p:stats().consumers, 1)
end

function TestBroadcast:test_the_slowest_leaving_releases_demand()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.broadcast{}})
  local fast = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}})
  local slow = sluice.start(Collector, {manual = 0}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {5})   -- fast alone at first
  p:call({"emit", 5})
  fast:call({"ask", 3})
  lu.assertEquals(p:call("demands"), {5})   -- slow has asked nothing
  lu.assertEquals(fast:call("events"), {})  -- broadcast waits for slow
  slow:stop()
  H.wait_until(function() return p:stats().consumers == 1 end)
  -- fast now wants 8: the buffer serves 5, handle_demand is asked for 3
  lu.assertEquals(p:call("demands"), {5, 3})
  lu.assertEquals(fast:call("events"), {0, 1, 2, 3, 4})
end

function TestBroadcast:test_late_subscriber_joins_at_the_next_events()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.broadcast{}})
  local c1 = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {2})
  p:call({"emit", 2})
  local c2 = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  c1:call({"ask", 2})
  lu.assertEquals(p:call("demands"), {2, 2})
  p:call({"emit", 2})
  lu.assertEquals(c1:call("events"), {0, 1, 2, 3})
  lu.assertEquals(c2:call("events"), {2, 3})
end

-- ---- partition dispatcher ------------------------------------------------------------

TestPartition = {}

local function partitioned(arg, disp)
  return sluice.start(Counter, arg, {demand = "accumulate", dispatcher = sluice.dispatcher.partition(disp)})
end

local function partition_consumer(p, part, extra)
  local sub = {p, partition = part, max_demand = 4, cancel = "transient"}
  for k, v in pairs(extra or {}) do sub[k] = v end
  return sluice.start(Collector, {report = true}, {subscribe_to = {sub}})
end

function TestPartition:test_hash_with_drops()
  local p = partitioned({first = 1, last = 20}, {partitions = 2, hash = function(e)
    if e % 5 == 0 then return nil end
    return e % 2 == 0 and 1 or 2
  end})
  local c1, c2 = partition_consumer(p, 1), partition_consumer(p, 2)
  p:demand("forward")
  lu.assertEquals(c1:await()[2], {2, 4, 6, 8, 12, 14, 16, 18})
  lu.assertEquals(c2:await()[2], {1, 3, 7, 9, 11, 13, 17, 19})
end

function TestPartition:test_dropped_events_use_no_demand()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.partition{partitions = 1, hash = function(e)
    if e % 2 == 1 then return nil end
    return 1
  end}})
  local c = sluice.start(Collector, {manual = 3}, {subscribe_to = {{p, partition = 1}}})
  lu.assertEquals(p:call("demands"), {3})
  p:call({"emit", 8})            -- 0..7: 0, 2, 4 go out, 1, 3, 5 dropped, 6, 7 wait
  lu.assertEquals(c:call("events"), {0, 2, 4})
  lu.assertEquals(p:buffered(), 2)
  c:call({"ask", 1})
  lu.assertEquals(p:buffered(), 1)   -- 7, dropped when it is dispatched
  lu.assertEquals(c:call("events"), {0, 2, 4, 6})
end

function TestPartition:test_named_partitions_and_new_events()
  local p = partitioned({first = 1, last = 10}, {partitions = {"even", "odd"}, hash = function(e)
    return e % 2 == 0 and "even" or "odd", e * 10
  end})
  local odd, even = partition_consumer(p, "odd"), partition_consumer(p, "even")
  p:demand("forward")
  lu.assertEquals(even:await()[2], {20, 40, 60, 80, 100})
  lu.assertEquals(odd:await()[2], {10, 30, 50, 70, 90})
end

function TestPartition:test_default_hash_is_stable()
  local Mod = H.with(Counter, {
    handle_demand = function(n, st)
      local events = {}
      for i = 1, n do
        if st.next > 41 then break end
        events[#events + 1] = "k" .. (st.next % 7)
        st.next = st.next + 1
      end
      if st.next > 41 then sluice.self():finish() end
      return events, st
    end,
  })
  local p = sluice.start(Mod, {}, {demand = "accumulate", dispatcher = sluice.dispatcher.partition{partitions = 3}})
  local cs = {}
  for i = 1, 3 do cs[i] = partition_consumer(p, i) end
  p:demand("forward")
  local owner, total = {}, 0
  for i = 1, 3 do
    for _, e in ipairs(cs[i]:await()[2]) do
      lu.assertTrue(owner[e] == nil or owner[e] == i)
      owner[e] = i
      total = total + 1
    end
  end
  lu.assertEquals(total, 42)
  for k = 0, 6 do lu.assertNotNil(owner["k" .. k]) end
end

function TestPartition:test_unknown_partition_stops_the_producer()
  local p = partitioned({}, {partitions = 2, hash = function(e) return 3 end})
  local c1 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 1}}})
  local c2 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 2, cancel = "temporary"}}})
  p:demand("forward")
  local r = p:await()
  lu.assertEquals(r[1], "error")
  lu.assertStrContains(r[2], "unknown partition 3 computed for event 1")
  lu.assertEquals(c1:await(), r)
  lu.assertTrue(c2:alive())
end

function TestPartition:test_hash_error_stops_the_producer()
  local p = partitioned({}, {partitions = 2, hash = function(e) error("hash broke") end})
  partition_consumer(p, 1)
  p:demand("forward")
  local r = p:await()
  lu.assertStrContains(r[2], "hash broke")
  lu.assertStrContains(r[2], "partition hash")
  lu.assertStrContains(r[3], "stack traceback")
end

function TestPartition:test_taken_and_unknown_partitions_are_refused()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.partition{partitions = 2}})
  local c1 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 1}}})
  local c2 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 1}}})
  lu.assertEquals(c2:await(), "the partition 1 is already taken")
  local c3 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 3, cancel = "temporary"}}})
  H.wait_until(function() return #c3:call("log") == 2 end)
  lu.assertEquals(c3:call("log")[2],
                  {"cancel", {"cancel", "partition must be one of the dispatcher's 2 partitions, got 3"}})
  local c4 = sluice.start(Collector, {}, {subscribe_to = {p}})
  lu.assertEquals(c4:await(), "partition must be one of the dispatcher's 2 partitions, got nil")
  lu.assertTrue(c1:alive())
  lu.assertTrue(p:alive())
  lu.assertEquals(p:stats().consumers, 1)
end

function TestPartition:test_partition_freed_by_a_cancel()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.partition{partitions = 1}})
  local c1 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 1}}})
  c1:stop()
  H.wait_until(function() return p:stats().consumers == 0 end)
  local c2 = sluice.start(Collector, {manual = 2}, {subscribe_to = {{p, partition = 1}}})
  p:call({"emit", 2})
  lu.assertEquals(p:stats().consumers, 1)
  lu.assertEquals(c2:call("events"), {0, 1})
end

function TestPartition:test_events_queued_for_a_slow_partition_are_kept_at_finish()
  -- partition 1 has no demand while the producer finishes: its events wait
  -- in the dispatcher and still go out before the producer ends
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.partition{partitions = 2, hash = function(e)
    return e % 2 + 1
  end}})
  local c1 = sluice.start(Collector, {manual = 0, report = true}, {subscribe_to = {{p, partition = 1, cancel = "transient"}}})
  local c2 = sluice.start(Collector, {manual = 10, report = true}, {subscribe_to = {{p, partition = 2, cancel = "transient"}}})
  lu.assertEquals(p:call("demands"), {10})
  p:call({"emit", 6})
  p:finish()
  lu.assertEquals(c2:call("events"), {1, 3, 5})
  lu.assertTrue(p:alive())
  c1:call({"ask", 3})
  lu.assertEquals(c1:await()[2], {0, 2, 4})
  lu.assertEquals(p:await(), "normal")
end

function TestPartition:test_cancel_keeps_the_queue_for_the_next_consumer()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.partition{partitions = 2, hash = function(e)
    return e < 3 and 1 or 2
  end}})
  local c1 = sluice.start(Collector, {manual = 0}, {subscribe_to = {{p, partition = 1}}})
  local c2 = sluice.start(Collector, {manual = 5}, {subscribe_to = {{p, partition = 2}}})
  lu.assertEquals(p:call("demands"), {5})
  p:call({"emit", 5})              -- 0, 1, 2 queue for partition 1; 3, 4 go to c2
  lu.assertEquals(c2:call("events"), {3, 4})
  c1:stop()
  H.wait_until(function() return p:stats().consumers == 1 end)
  lu.assertEquals(p:stats().held, 3)   -- 0, 1, 2 wait for partition 1's next consumer
  p:call({"emit", 5})              -- 5..9: partition 2 takes 3 (its demand left), 2 are buffered
  lu.assertEquals(c2:call("events"), {3, 4, 5, 6, 7})
  local c3 = sluice.start(Collector, {manual = 10}, {subscribe_to = {{p, partition = 1}}})
  H.wait_until(function() return #c3:call("events") == 3 end)
  lu.assertEquals(c3:call("events"), {0, 1, 2})
  lu.assertEquals(p:stats().held, 2)   -- 8 and 9 wait for c2's demand
end

-- While a partition has no consumer its events wait without using the
-- demand of the others: a flow keeps going through the other partitions.
function TestPartition:test_other_partitions_flow_while_one_is_vacant()
  local counter = {type = "producer", handle_demand = function(n, s)
    local out = {}
    for i = 1, n do out[i] = s + i - 1 end
    return out, s + n
  end}
  local p = sluice.start(counter, 1, {dispatcher = sluice.dispatcher.partition{partitions = 2, hash = function(e)
    return e % 2 + 1
  end}})
  local c1 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 1, max_demand = 4}}})
  local c2 = sluice.start(Collector, {}, {subscribe_to = {{p, partition = 2, max_demand = 4, cancel = "temporary"}}})
  H.wait_until(function() return #c2:call("events") >= 4 end)
  c2:stop()
  H.wait_until(function() return #c1:call("events") >= 400 end)
  local got = c1:call("events")
  for i = 1, 400 do lu.assertEquals(got[i], 2 * i) end
  lu.assertTrue(p:stats().held > 0)
  p:stop()
end

function TestPartition:test_info_waits_behind_queued_partition_events()
  local p = sluice.start(Silent, nil, {dispatcher = sluice.dispatcher.partition{partitions = 2, hash = function(e)
    return 1
  end}})
  local c1 = sluice.start(Collector, {manual = 0}, {subscribe_to = {{p, partition = 1}}})
  sluice.start(Collector, {manual = 10}, {subscribe_to = {{p, partition = 2}}})
  lu.assertEquals(p:call("demands"), {10})
  p:call({"emit", 3})
  p:send("after three")
  lu.assertEquals(p:call("log"), {})
  c1:call({"ask", 2})
  lu.assertEquals(p:call("log"), {})
  c1:call({"ask", 1})
  lu.assertEquals(p:call("log"), {{"info", "after three", 0}})
  lu.assertEquals(c1:call("events"), {0, 1, 2})
end

-- ---- buffer ------------------------------------------------------------------------

TestBuffer = {}

function TestBuffer:test_keep_last()
  local p = sluice.start(Silent, nil, {buffer_size = 10})
  p:call({"emit", 15})
  lu.assertEquals(p:buffered(), 10)
  local c = sluice.start(Collector, {manual = 20}, {subscribe_to = {p}})
  H.wait_until(function() return #c:call("events") == 10 end)
  lu.assertEquals(c:call("events"), H.range(5, 14))
  lu.assertEquals(p:buffered(), 0)
end

function TestBuffer:test_keep_first()
  local p = sluice.start(Silent, nil, {buffer_size = 10, buffer_keep = "first"})
  p:call({"emit", 6})
  p:call({"emit", 6})
  lu.assertEquals(p:buffered(), 10)
  local c = sluice.start(Collector, {manual = 20}, {subscribe_to = {p}})
  H.wait_until(function() return #c:call("events") == 10 end)
  lu.assertEquals(c:call("events"), H.range(0, 9))
end

function TestBuffer:test_default_sizes()
  local p = sluice.start(Silent, nil)
  p:call({"emit", 10005})
  lu.assertEquals(p:buffered(), 10000)
  local q = sluice.start(Silent, nil, {buffer_size = math.huge})
  q:call({"emit", 20000})
  lu.assertEquals(q:buffered(), 20000)
  local pc = sluice.start({type = "producer_consumer", handle_events = function(e, f, s) return e, s end,
                           handle_cast = function(n, s)
                             local t = {}
                             for i = 1, n do t[i] = i end
                             return t, s
                           end}, nil)
  pc:cast(20000)
  lu.assertEquals(pc:buffered(), 20000)
end

function TestBuffer:test_overflow_warning()
  local out = H.run([[
    local p = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end,
                            handle_cast = function(k, s)
                              local t = {}
                              for i = 1, k do t[i] = i end
                              return t, s
                            end}, nil, {buffer_size = 4, name = "tiny", worker = 1})
    p:cast(6)
    p:cast(3)
    print("buffered", p:buffered())
    local q = sluice.start({type = "producer", handle_demand = function(n, s) return {}, s end,
                            handle_cast = function(k, s) return {1, 2, 3}, s end},
                           nil, {buffer_size = 2, buffer_keep = "first", worker = 1})
    q:cast(0)
    print("buffered", q:buffered())
  ]], 1)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l:gsub("stage %d+", "stage N") end
  -- at exit the buffered events are dropped, and said so (in either order)
  local at_exit = {lines[6], lines[7]}
  table.sort(at_exit)
  lines[6], lines[7] = at_exit[1], at_exit[2]
  lu.assertEquals(lines, {
    "sluice: stage 'tiny' on worker 1 discarded 2 events from its buffer",
    "sluice: stage 'tiny' on worker 1 discarded 3 events from its buffer",
    "buffered\t4",
    "sluice: stage N on worker 1 discarded 1 events from its buffer",
    "buffered\t2",
    "sluice: stage 'tiny' on worker 1 stopped with 4 events it had not delivered (buffered or queued)",
    "sluice: stage N on worker 1 stopped with 2 events it had not delivered (buffered or queued)",
  })
end

function TestBuffer:test_keep_last_releases_displaced_infos()
  local p = sluice.start(Silent, nil, {buffer_size = 3})
  p:call({"emit", 2})
  p:send("behind two")
  lu.assertEquals(p:call("log"), {})
  p:call({"emit", 3})      -- pushes the first two out: the info is free
  lu.assertEquals(p:call("log"), {{"info", "behind two", 3}})
  lu.assertEquals(p:buffered(), 3)
end

-- ---- infos behind buffered events -----------------------------------------------------

TestInfo = {}

function TestInfo:test_info_is_delivered_after_the_events_buffered_before_it()
  local p = sluice.start(Silent, nil)
  p:call({"emit", 5})
  p:send("a")
  p:send("b")
  lu.assertEquals(p:call("log"), {})
  local c = sluice.start(Collector, {manual = 2}, {subscribe_to = {p}})
  lu.assertEquals(p:call("log"), {})
  c:call({"ask", 3})
  lu.assertEquals(p:call("log"), {{"info", "a", 0}, {"info", "b", 0}})
  lu.assertEquals(c:call("events"), {0, 1, 2, 3, 4})
end

function TestInfo:test_info_between_batches()
  local p = sluice.start(Silent, nil)
  p:call({"emit", 2})
  p:send("one")
  p:call({"emit", 2})
  p:send("two")
  local c = sluice.start(Collector, {manual = 0}, {subscribe_to = {p}})
  c:call({"ask", 2})
  lu.assertEquals(p:call("log"), {{"info", "one", 2}})
  c:call({"ask", 1})
  lu.assertEquals(p:call("log"), {{"info", "one", 2}})
  c:call({"ask", 5})
  lu.assertEquals(p:call("log"), {{"info", "one", 2}, {"info", "two", 0}})
end

function TestInfo:test_info_without_buffered_events_is_immediate()
  local p = sluice.start(Silent, nil)
  p:send("now")
  lu.assertEquals(p:call("log"), {{"info", "now", 0}})
end

function TestInfo:test_info_events_keep_their_place()
  -- events emitted by handle_info go out after the events buffered before it
  local p = sluice.start(H.with(Silent, {handle_info = function(msg, st) return {msg}, st end}), nil)
  p:call({"emit", 3})
  p:send("info")
  p:call({"emit", 2})
  local c = sluice.start(Collector, {want = 6}, {subscribe_to = {p}})
  lu.assertEquals(c:await()[2], {0, 1, 2, "info", 3, 4})
end

-- ---- accumulated demand ------------------------------------------------------------

TestAccumulate = {}

function TestAccumulate:test_demands_are_not_merged()
  local p = sluice.start(Counter, {}, {demand = "accumulate"})
  lu.assertEquals(p:demand(), "accumulate")
  local c = sluice.start(Collector, {manual = 0}, {subscribe_to = {p}})
  c:call({"ask", 2})
  c:call({"ask", 3})
  lu.assertEquals(p:call("demands"), {})
  p:demand("forward")
  lu.assertEquals(p:call("demands"), {2, 3})
  lu.assertEquals(p:demand(), "forward")
  H.wait_until(function() return #c:call("events") == 5 end)
  lu.assertEquals(c:call("batches"), {2, 3})
end

function TestAccumulate:test_events_are_held_back_too()
  local p = sluice.start(Silent, nil, {demand = "accumulate"})
  local c = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}})
  p:call({"emit", 2})
  lu.assertEquals(p:call("demands"), {})
  lu.assertEquals(c:call("events"), {})
  p:demand("forward")
  lu.assertEquals(p:call("demands"), {5})
  lu.assertEquals(c:call("events"), {0, 1})
end

function TestAccumulate:test_info_waits_behind_held_events()
  local p = sluice.start(Silent, nil, {demand = "accumulate"})
  local c = sluice.start(Collector, {manual = 5}, {subscribe_to = {p}})
  p:send("before")                  -- nothing held yet: delivered now
  p:call({"emit", 2})
  p:send("after two")
  lu.assertEquals(p:call("log"), {{"info", "before", 0}})
  p:demand("forward")
  lu.assertEquals(p:call("log"), {{"info", "before", 0}, {"info", "after two", 0}})
  lu.assertEquals(c:call("events"), {0, 1})
end

function TestAccumulate:test_switch_back_to_accumulate()
  local p = sluice.start(Silent, nil)
  lu.assertEquals(p:demand(), "forward")
  p:demand("accumulate")
  lu.assertEquals(p:demand(), "accumulate")
  local c = sluice.start(Collector, {manual = 4}, {subscribe_to = {p}})
  lu.assertEquals(p:call("demands"), {})
  p:demand("forward")
  lu.assertEquals(p:call("demands"), {4})
  lu.assertNotNil(c)
end

function TestAccumulate:test_demand_mode_only_for_producers()
  local c = sluice.start(Collector, {})
  lu.assertErrorMsgContains("stage:demand: demand mode is only for producers", c.demand, c)
end

function TestAccumulate:test_self_demand_inside_a_callback()
  local p = sluice.start(H.with(Silent, {
    handle_cast = function(msg, st)
      sluice.self():demand(msg)
      return {}, st
    end,
    handle_call = function(req, from, st) return {sluice.self():demand(), st.demands}, {}, st end,
  }), nil, {demand = "accumulate"})
  sluice.start(Collector, {manual = 3}, {subscribe_to = {p}})
  lu.assertEquals(p:call("x"), {"accumulate", {}})
  p:cast("forward")   -- takes effect after handle_cast
  H.wait_until(function() return p:call("x")[1] == "forward" end)
  lu.assertEquals(p:call("x"), {"forward", {3}})
end

os.exit(lu.LuaUnit.run())
