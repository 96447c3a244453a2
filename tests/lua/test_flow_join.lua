-- Flow joins: bounded_join in its four modes (and window_join with the
-- global window), keys by content, operations after a join, and matches
-- leaving before the end of the input (API.md §4).
local lu = require("luaunit")
local H = dofile((arg[0]:match("^(.*/)") or "./") .. "flow_helper.lua")
local sorted, by_inspect = H.sorted, H.by_inspect
local F = sluice.flow

local LEFT = { { 1, "a" }, { 2, "b" }, { 3, "c" }, { 2, "bb" } }
local RIGHT = { { 1, "x" }, { 1, "y" }, { 4, "z" }, { 2, "w" } }

local function first(e) return e[1] end

-- Joined rows as {left name or "-", right name or "-"}.
local function pair(l, r) return { l and l[2] or "-", r and r[2] or "-" } end

local function join(mode, stages, lstages, rstages)
  local l = F.from_enumerable(LEFT, { stages = lstages or 1 })
  local r = F.from_enumerable(RIGHT, { stages = rstages or 1 })
  return sorted(F.bounded_join(mode, l, r, first, first, pair, { stages = stages }):to_list(), by_inspect)
end

local INNER = { { "a", "x" }, { "a", "y" }, { "b", "w" }, { "bb", "w" } }

local function plus(t, extra)
  local out = {}
  for _, v in ipairs(t) do out[#out + 1] = v end
  for _, v in ipairs(extra) do out[#out + 1] = v end
  return sorted(out, by_inspect)
end

TestFlowJoin = {}

function TestFlowJoin:test_inner()
  for _, stages in ipairs({ 1, 2, 4 }) do
    lu.assertEquals(join("inner", stages), INNER, "stages = " .. stages)
  end
end

function TestFlowJoin:test_left_outer()
  for _, stages in ipairs({ 1, 3 }) do
    lu.assertEquals(join("left_outer", stages), plus(INNER, { { "c", "-" } }), "stages = " .. stages)
  end
end

function TestFlowJoin:test_right_outer()
  for _, stages in ipairs({ 1, 3 }) do
    lu.assertEquals(join("right_outer", stages), plus(INNER, { { "-", "z" } }), "stages = " .. stages)
  end
end

function TestFlowJoin:test_full_outer()
  for _, stages in ipairs({ 1, 2, 5 }) do
    lu.assertEquals(join("full_outer", stages), plus(INNER, { { "c", "-" }, { "-", "z" } }), "stages = " .. stages)
  end
end

function TestFlowJoin:test_sides_with_several_stages_and_operations()
  local l = F.from_enumerable(sluice.range(1, 30), { stages = 3 })
    :map(function(x) return { x % 5, "l" .. x } end)
    :filter(function(e) return e[1] ~= 0 end)
  local r = F.from_enumerables({ { 1, 2 }, { 3, 7 } }, { stages = 2 })
    :map(function(k) return { k, "r" .. k } end)
  local out = F.bounded_join("full_outer", l, r, first, first,
    function(a, b) return (a and a[2] or "-") .. "+" .. (b and b[2] or "-") end, { stages = 3 }):to_list()
  local want = {}
  for x = 1, 30 do
    local k = x % 5
    if k == 4 then want[#want + 1] = "l" .. x .. "+-"
    elseif k ~= 0 then want[#want + 1] = "l" .. x .. "+r" .. k end
  end
  want[#want + 1] = "-+r7"
  lu.assertEquals(sorted(out), sorted(want))
end

function TestFlowJoin:test_operations_after_a_join()
  local l = F.from_enumerable(LEFT, { stages = 1 })
  local r = F.from_enumerable(RIGHT, { stages = 1 })
  local out = F.bounded_join("left_outer", l, r, first, first, pair, { stages = 2 })
    :map(function(p) return p[1] .. p[2] end)
    :reject(function(s) return s == "bbw" end)
    :to_list()
  lu.assertEquals(sorted(out), { "ax", "ay", "bw", "c-" })
  -- a reduce right after the join sees every row, unmatched ones too
  out = F.bounded_join("full_outer", l, r, first, first, pair, { stages = 2 })
    :reduce(function() return 0 end, function(_, n) return n + 1 end)
    :emit("state")
    :to_list()
  lu.assertEquals(out[1] + out[2], 6)
end

function TestFlowJoin:test_map_batch_after_a_join()
  -- map_batch sees the joined rows of each batch (never an empty batch)
  local l = F.from_enumerable({ { 1, "a" } }, { stages = 1 })
  local r = F.from_enumerable({ { 1, "b" }, { 1, "c" } }, { stages = 1 })
  local out = F.bounded_join("inner", l, r, first, first, function(a, b) return a[2] .. b[2] end, { stages = 1 })
    :map_batch(function(b)
      table.sort(b)
      return { table.concat(b, ",") }
    end)
    :to_list()
  lu.assertEquals(out, { "ab,ac" })
end

function TestFlowJoin:test_keys_by_content_and_number_kind()
  -- table keys match by content; 1 and 1.0 are the same key
  local l = F.from_enumerable({ { k = { "a", 1 }, v = 1 }, { k = { "b", 2 }, v = 2 }, { k = 3, v = 3 } }, { stages = 1 })
  local r = F.from_enumerable({ { key = { "a", 1 }, w = 10 }, { key = { "b", 3 }, w = 20 }, { key = 3.0, w = 30 } },
    { stages = 2 })
  for _, stages in ipairs({ 1, 4 }) do
    local out = F.bounded_join("inner", l, r, function(e) return e.k end, function(e) return e.key end,
      function(a, b) return a.v + b.w end, { stages = stages }):to_list()
    lu.assertEquals(sorted(out), { 11, 33 }, "stages = " .. stages)
  end
end

function TestFlowJoin:test_matches_leave_before_the_end()
  -- the right side never ends: matches must still come out
  local l = F.from_enumerable({ { 1, "one" }, { 2, "two" } }, { stages = 1 })
  local r = F.from_enumerable(sluice.range(1, math.huge), { stages = 1, max_demand = 10 })
  local got = {}
  for v in F.bounded_join("inner", l, r, first, function(x) return x end,
      function(a, x) return a[2] .. ":" .. x end, { stages = 2 }):stream() do
    got[#got + 1] = v
    if #got == 2 then break end
  end
  lu.assertEquals(sorted(got), { "one:1", "two:2" })
end

function TestFlowJoin:test_window_join_with_the_global_window()
  local l = F.from_enumerable(LEFT, { stages = 1 })
  local r = F.from_enumerable(RIGHT, { stages = 1 })
  local out = F.window_join("right_outer", l, r, sluice.window.global(), first, first, pair, { stages = 2 }):to_list()
  lu.assertEquals(sorted(out, by_inspect), plus(INNER, { { "-", "z" } }))
end

function TestFlowJoin:test_empty_sides()
  local none = F.from_enumerable({}, { stages = 1 })
  local r = F.from_enumerable(RIGHT, { stages = 1 })
  lu.assertEquals(F.bounded_join("inner", none, r, first, first, pair, { stages = 2 }):to_list(), {})
  lu.assertEquals(F.bounded_join("left_outer", none, r, first, first, pair, { stages = 2 }):to_list(), {})
  lu.assertEquals(sorted(F.bounded_join("right_outer", none, r, first, first, pair, { stages = 2 }):to_list(), by_inspect),
    { { "-", "w" }, { "-", "x" }, { "-", "y" }, { "-", "z" } })
end

os.exit(lu.LuaUnit.run())
