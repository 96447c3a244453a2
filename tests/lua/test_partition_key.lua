-- The partition dispatcher's key option: the key is read in C from each
-- event and hashed like sluice._hash.
local lu = require("luaunit")

-- A consumer that keeps what it got; "get" returns it.
local Keeper = {
  type = "consumer",
  init = function() return {} end,
  handle_events = function(evs, _, st) for _, e in ipairs(evs) do st[#st + 1] = e end return {}, st end,
  handle_call = function(_, _, st) return st, {}, st end,
}

local function run(key, events, n)
  local p = sluice.start({
    type = "producer",
    init = function(evs) return evs end,
    handle_demand = function(_, evs)
      if evs then sluice.self():finish() end
      return evs or {}, false
    end,
  }, events, {dispatcher = sluice.dispatcher.partition({partitions = n, key = key}), demand = "accumulate"})
  local cs = {}
  for i = 1, n do cs[i] = sluice.start(Keeper, nil, {subscribe_to = {{p, partition = i, cancel = "temporary"}}}) end
  p:demand("forward")
  -- once the producer has ended, every event it dispatched is already in
  -- its consumer's inbox, ahead of the call below
  lu.assertEquals(p:await(5000), "normal")
  local got = {}
  for i = 1, n do got[i] = cs[i]:call("get"); cs[i]:stop() end
  return got
end

TestPartitionKey = {}

function TestPartitionKey:test_index_key_places_by_sluice_hash()
  local events = {}
  for i = 1, 40 do events[i] = {"k" .. (i % 7), i} end
  local got = run({index = 1}, events, 3)
  local total = 0
  for p = 1, 3 do
    for _, e in ipairs(got[p]) do
      lu.assertEquals(sluice._hash(e[1], 3), p)
      total = total + 1
    end
  end
  lu.assertEquals(total, 40)
end

function TestPartitionKey:test_field_key_and_missing_keys()
  local events = {}
  for i = 1, 30 do events[i] = {user = i % 5, n = i} end
  events[31] = "not a table"          -- key nil
  events[32] = {n = 32}               -- key nil
  local got = run({field = "user"}, events, 2)
  local total = 0
  for p = 1, 2 do
    for _, e in ipairs(got[p]) do
      local k = type(e) == "table" and e.user or nil
      lu.assertEquals(sluice._hash(k, 2), p)
      total = total + 1
    end
  end
  lu.assertEquals(total, 32)
end

function TestPartitionKey:test_bad_key_option()
  lu.assertErrorMsgContains("sluice.dispatcher.partition: key must be {index = i} or {field = \"name\"}, got 3",
    sluice.dispatcher.partition, {partitions = 2, key = 3})
  lu.assertErrorMsgContains("key must be {index = i}",
    sluice.dispatcher.partition, {partitions = 2, key = {index = 0}})
end

os.exit(lu.LuaUnit.run())
