-- examples/tour_jobs.lua: a job queue. consumer_supervisor runs each job
-- as a task on a worker, at most max_demand at a time; the jobs report to
-- a collector stage, found by its name.
local Collector = { type = "consumer",
  init = function() return { done = {}, running = 0, most = 0 } end,
  handle_events = function(events, from, st) return {}, st end,
  handle_cast = function(msg, st)
    if msg[1] == "start" then
      st.running = st.running + 1
      st.most = math.max(st.most, st.running)
    else
      st.running = st.running - 1
      st.done[#st.done + 1] = msg[2]
    end
    return {}, st
  end,
  handle_call = function(req, from, st) return st, {}, st end,
}
sluice.start(Collector, nil, { name = "results" })

local jobs = sluice.from_enumerable({ "resize a.png", "resize b.png", "mail ann", "mail bob", "backup" })
sluice.consumer_supervisor{
  subscribe_to = { { jobs, max_demand = 3 } },
  handler = function(job)                        -- runs on a worker, as a task
    local results = sluice.whereis("results")
    results:cast({ "start" })
    sluice.sleep(20)                             -- the work
    results:cast({ "end", job .. ": ok" })
  end,
}
local st = sluice.whereis("results"):call("get")
while #st.done < 5 do                            -- wait for every job
  sluice.sleep(10)
  st = sluice.whereis("results"):call("get")
end
table.sort(st.done)
print(table.concat(st.done, "\n"))
print("at most 3 at a time: " .. tostring(st.most <= 3))
