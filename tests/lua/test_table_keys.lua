-- Equal tables are one key (lua/README.md §8.3): partition() sends equal
-- table events to one partition, and uniq, uniq_by and bounded_join
-- treat them as one, however each was built (the order its fields were
-- set, keys set and removed, the worker that made it, 1.0 for 1), and
-- never as a string that has the bytes of their encoding. The
-- tables here are built on the first layer's stages, on whichever
-- workers run them, in an order that depends on the event.
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect = H.sorted, H.by_inspect
local F = sluice.flow

-- The table of key x % 10, 30 fields, built forward when x // 10 is even
-- and backward (after 50 junk fields set and removed) when it is odd;
-- field f1 holds the key (a float for x % 3 == 0).
local function build(x)
  local k, t = x % 10, {}
  local v = x % 3 == 0 and k + 0.0 or k
  if x // 10 % 2 == 0 then
    for i = 1, 30 do t["f" .. i] = i == 1 and v or i * k end
  else
    for i = 1, 50 do t["junk" .. i] = i end
    for i = 30, 1, -1 do t["f" .. i] = i == 1 and v or i * k end
    for i = 1, 50 do t["junk" .. i] = nil end
  end
  return t
end

local function keys_of(list)
  local ks = {}
  for i, t in ipairs(list) do ks[i] = t.f1 end
  table.sort(ks)
  return ks
end

TestTableKeys = {}

function TestTableKeys:test_key_and_hash()
  local a, b, c = build(4), build(14), build(15)
  lu.assertEquals(sluice._key(a), sluice._key(b))
  lu.assertEquals(sluice._key(build(3)), sluice._key(build(13)))   -- 3.0 and 3
  lu.assertNotEquals(sluice._key(a), sluice._key(c))
  for _, n in ipairs({ 2, 7, 1000 }) do
    lu.assertEquals(sluice._hash(a, n), sluice._hash(b, n))
    lu.assertEquals(sluice._hash({ 1, nil, 3 }, n), sluice._hash({ [3] = 3, [1] = 1 }, n))
  end
  -- a table that holds one table twice: by its encoding as sent, which
  -- tells two different such tables apart (X.k2 is {1}, Y.k2 is {2})
  local shared = { 1 }
  lu.assertEquals(sluice._key({ a = shared, b = shared }), sluice._key({ a = shared, b = shared }))
  local X = { k1 = { 1 }, k6 = { 2 } }
  X.k2 = X.k1
  local Y = {}
  Y.k6 = { 2 }
  Y.k2 = { 1 }
  Y.k1 = { 1 }
  Y.k2 = Y.k6
  lu.assertNotEquals(sluice._key(X), sluice._key(Y))
  -- the deepest nesting a key may have (200 tables), built both ways
  local function nest(n, backward)
    local t = { a = 1, b = 2 }
    for _ = 2, n do
      if backward then t = { y = 2, x = t } else t = { x = t }; t.y = 2 end
    end
    return t
  end
  lu.assertEquals(sluice._key(nest(200)), sluice._key(nest(200, true)))
  lu.assertEquals(sluice._hash(nest(200), 1000), sluice._hash(nest(200, true), 1000))
  lu.assertErrorMsgContains("nested deeper than 200 levels", sluice._key, nest(201))
end

function TestTableKeys:test_uniq_across_stages()
  for _, st in ipairs({ 1, 3 }) do
    local got = F.from_enumerable(sluice.range(1, 400), { stages = st }):map(build)
      :partition({ stages = st }):uniq():to_list()
    lu.assertEquals(keys_of(got), { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, "stages " .. st)
    -- uniq_by a table key made in the stage
    local by = F.from_enumerable(sluice.range(1, 400), { stages = st }):partition({ stages = 1 })
      :uniq_by(build):to_list()
    lu.assertEquals(#by, 10, "uniq_by, stages " .. st)
  end
end

function TestTableKeys:test_equal_tables_share_a_partition()
  -- each partition counts the keys it got: no key in two partitions
  local got = F.from_enumerable(sluice.range(1, 400), { stages = 3 }):map(build):partition({ stages = 4 })
    :reduce(function() return {} end, function(t, acc)
      local k = math.tointeger(t.f1)
      acc[k] = (acc[k] or 0) + 1
      return acc
    end)
    :on_trigger(function(acc, p) return { { p.index, acc } } end):to_list()
  local seen, total = {}, 0
  for _, pa in ipairs(got) do
    for k, n in pairs(pa[2]) do
      lu.assertNil(seen[k], "key " .. k .. " in two partitions")
      seen[k] = pa[1]
      total = total + n
    end
  end
  lu.assertEquals(total, 400)
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  lu.assertEquals(n, 10)
end

function TestTableKeys:test_join_on_table_keys()
  -- the left side's keys built one way, the right side's the other
  local left = F.from_enumerable({ 2, 4, 6 }, { stages = 2 }):map(function(x) return { id = x, key = build(x) } end)
  local right = F.from_enumerable({ 13, 15, 16 }, { stages = 2 }):map(function(x) return { id = x, key = build(x) } end)
  local got = F.bounded_join("inner", left, right, function(e) return e.key end, function(e) return e.key end,
    function(l, r) return { l.id, r.id } end, { stages = 3 }):to_list()
  -- build(6) is {f1 = 6.0, ...} built forward, build(16) {f1 = 6, ...}
  -- built backward: equal keys
  lu.assertEquals(sorted(got, by_inspect), { { 6, 16 } })
end

function TestTableKeys:test_a_string_never_meets_a_table()
  -- a string with the bytes of a table's canonical encoding is another key
  local t = { a = 1, b = 2 }
  local s = sluice._key(t)
  local got = F.from_enumerable({ s, t, { b = 2, a = 1.0 }, s }, { stages = 1 }):uniq():to_list()
  lu.assertEquals(got, { s, t })
  local by = F.from_enumerable({ 1, 2, 3 }, { stages = 1 })
    :uniq_by(function(x) return x == 1 and s or { a = 1, b = 2 } end):to_list()
  lu.assertEquals(by, { 1, 2 })
  for _, st in ipairs({ 1, 2 }) do
    local left = F.from_enumerable({ { id = 1, k = s }, { id = 3, k = t } }, { stages = 1 })
    local right = F.from_enumerable({ { id = 2, k = { b = 2, a = 1 } }, { id = 4, k = s } }, { stages = 1 })
    local joined = F.bounded_join("full_outer", left, right, function(e) return e.k end, function(e) return e.k end,
      function(l, r) return { l and l.id or 0, r and r.id or 0 } end, { stages = st }):to_list()
    lu.assertEquals(sorted(joined, by_inspect), { { 1, 4 }, { 3, 2 } }, "stages " .. st)
  end
end

os.exit(lu.LuaUnit.run())
