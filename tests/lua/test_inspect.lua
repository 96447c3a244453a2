-- Tests for sluice.inspect: exact renderings of every kind of value.
-- Run: build/sluice tests/lua/test_inspect.lua -o text
--  or: LUA_PATH="lua/?.lua;;" lua5.4 tests/lua/test_inspect.lua -o text
local lu = require("luaunit")
local inspect = sluice and sluice.inspect or require("sluice.inspect")

local eq = lu.assertEquals

-- Scalars -------------------------------------------------------------------

function test_nil_and_booleans()
  eq(inspect(nil), "nil")
  eq(inspect(true), "true")
  eq(inspect(false), "false")
  eq(inspect(), "nil")
end

function test_integers()
  eq(inspect(0), "0")
  eq(inspect(42), "42")
  eq(inspect(-7), "-7")
  eq(inspect(math.maxinteger), "9223372036854775807")
  eq(inspect(math.mininteger), "-9223372036854775808")
end

function test_floats_look_like_floats()
  eq(inspect(1.0), "1.0")
  eq(inspect(-3.0), "-3.0")
  eq(inspect(0.5), "0.5")
  eq(inspect(-0.0), "-0.0")
  eq(inspect(1e100), "1e+100")
  eq(inspect(1e-7), "1e-07")
  eq(inspect(2^53), "9007199254740992.0")
  eq(inspect(123456789012.5), "123456789012.5")
end

function test_floats_round_trip()
  eq(inspect(0.1), "0.1")
  eq(inspect(0.1 + 0.2), "0.30000000000000004")
  eq(inspect(1 / 3), "0.3333333333333333")
  for _, x in ipairs({ 0.1 + 0.2, 1 / 3, math.pi, 2^-1074, 1.7976931348623157e308 }) do
    eq(load("return " .. inspect(x))(), x)
  end
end

function test_float_specials()
  eq(inspect(0/0), "0/0")
  eq(inspect(math.huge), "math.huge")
  eq(inspect(-math.huge), "-math.huge")
  eq(inspect({ 0/0, math.huge, -math.huge }), "{0/0, math.huge, -math.huge}")
end

function test_integer_and_float_distinguished()
  eq(inspect({ 1, 1.0, 2, 2.5 }), "{1, 1.0, 2, 2.5}")
end

-- Strings -------------------------------------------------------------------

function test_plain_strings()
  eq(inspect(""), '""')
  eq(inspect("hello"), '"hello"')
  eq(inspect("it's"), [["it's"]])
end

function test_string_escapes()
  eq(inspect("a\nb"), [["a\nb"]])
  eq(inspect("tab\there"), [["tab\there"]])
  eq(inspect("cr\r"), [["cr\r"]])
  eq(inspect('say "hi"'), [["say \"hi\""]])
  eq(inspect("back\\slash"), [["back\\slash"]])
  eq(inspect("\a\b\f\v"), [["\a\b\f\v"]])
end

function test_string_control_bytes()
  eq(inspect("\0"), [["\0"]])
  eq(inspect("\0x"), [["\0x"]])
  eq(inspect("\0" .. "1"), [["\0001"]])     -- a digit follows: 3-digit escape
  eq(inspect("\27[0m"), [["\27[0m"]])
  eq(inspect("\1272"), [["\1272"]])         -- DEL then "2"
  eq(inspect("\31"), [["\31"]])
end

function test_string_high_bytes_kept()
  eq(inspect("caf\xc3\xa9"), '"caf\xc3\xa9"')
  eq(inspect("\xff"), '"\xff"')
end

function test_strings_read_back()
  local s = "x\0\1\0012\n\r\t\"\\\127\200z"
  eq(load("return " .. inspect(s))(), s)
end

-- Tables --------------------------------------------------------------------

function test_empty_table()
  eq(inspect({}), "{}")
  eq(inspect({ {} }), "{{}}")
end

function test_arrays()
  eq(inspect({ 1, 2, 3 }), "{1, 2, 3}")
  eq(inspect({ 1, "a" }), '{1, "a"}')
  eq(inspect({ 1, 2, { a = 1 } }), "{1, 2, {a = 1}}")
  eq(inspect({ { 1 }, { { 2 } } }), "{{1}, {{2}}}")
end

function test_array_part_stops_at_first_nil()
  eq(inspect({ 1, 2, nil, 4 }), "{1, 2, [4] = 4}")
  eq(inspect({ [2] = "b", [3] = "c" }), '{[2] = "b", [3] = "c"}')
  eq(inspect({ [0] = "z", "a" }), '{"a", [0] = "z"}')
end

function test_identifier_keys()
  eq(inspect({ a = 1 }), "{a = 1}")
  eq(inspect({ name = "x", _private = true, A1_b = 2 }),
     '{A1_b = 2, _private = true, name = "x"}')
end

function test_other_string_keys_bracketed()
  eq(inspect({ ["k y"] = 1 }), '{["k y"] = 1}')
  eq(inspect({ ["end"] = 1, ["1a"] = 2, [""] = 3, ["a-b"] = 4 }),
     '{[""] = 3, ["1a"] = 2, ["a-b"] = 4, ["end"] = 1}')
  eq(inspect({ ["a\nb"] = 1 }), '{["a\\nb"] = 1}')
end

function test_number_keys()
  eq(inspect({ [1.5] = "x" }), '{[1.5] = "x"}')
  eq(inspect({ [-1] = "m", [0] = "z", [10] = "t" }), '{[-1] = "m", [0] = "z", [10] = "t"}')
  eq(inspect({ [math.huge] = 1, [-math.huge] = 2 }), "{[-math.huge] = 2, [math.huge] = 1}")
  eq(inspect({ [2^63] = 1 }), "{[9.223372036854776e+18] = 1}")
end

function test_keys_sorted_numbers_then_strings_then_type_name()
  local t = { "a", [10] = 1, [2.5] = 2, b = 3, a = 4, ["z z"] = 5, [true] = 6, [false] = 7 }
  eq(inspect(t), '{"a", [2.5] = 2, [10] = 1, a = 4, b = 3, ["z z"] = 5, [false] = 7, [true] = 6}')
end

function test_keys_of_other_types()
  eq(inspect({ [{ 1, 2 }] = "k", [{ 0 }] = "z" }), '{[{0}] = "z", [{1, 2}] = "k"}')
  local f = function() end
  eq(inspect({ [f] = 1, [true] = 2, [{}] = 3 }), "{[true] = 2, [<function>] = 1, [{}] = 3}")
end

function test_key_order_independent_of_insertion()
  local a, b = {}, {}
  local words = {}
  for i = 1, 60 do words[i] = "k" .. i end
  for i = 1, #words do a[words[i]] = i end
  for i = #words, 1, -1 do b[words[i]] = i end
  for i = 100, 1, -7 do a[i + 0.5] = i end
  for i = 2, 100 do if (100 - i) % 7 == 0 then b[i + 0.5] = i end end
  eq(inspect(a), inspect(b))
  eq(inspect(a), inspect(a))
end

function test_nested_mixed()
  eq(inspect({ 1, { x = { 2, 3 }, y = "s" }, flag = false }),
     '{1, {x = {2, 3}, y = "s"}, flag = false}')
end

function test_tables_read_raw()
  local t = setmetatable({ a = 1 }, {
    __index = function() return "from index" end,
    __pairs = function() error("pairs must not be used") end,
    __len = function() return 99 end,
  })
  eq(inspect(t), "{a = 1}")
end

-- Cycles and shared tables --------------------------------------------------

function test_self_cycle()
  local t = { 1 }
  t.self = t
  eq(inspect(t), "<1>{1, self = <table 1>}")
end

function test_shared_subtable()
  local s = { 1 }
  eq(inspect({ s, s, { s } }), "{<1>{1}, <table 1>, {<table 1>}}")
  eq(inspect({ a = s, b = s }), "{a = <1>{1}, b = <table 1>}")
end

function test_labels_numbered_in_output_order()
  local p, q = { "p" }, { "q" }
  eq(inspect({ a = q, b = p, c = p, d = q }),
     '{a = <1>{"q"}, b = <2>{"p"}, c = <table 2>, d = <table 1>}')
end

function test_mutual_cycle()
  local a, b = { name = "a" }, { name = "b" }
  a.peer, b.peer = b, a
  eq(inspect(a), '<1>{name = "a", peer = {name = "b", peer = <table 1>}}')
  eq(inspect({ a, b }), '{<1>{name = "a", peer = <2>{name = "b", peer = <table 1>}}, <table 2>}')
end

function test_cycle_through_key()
  local k = {}
  k[k] = 1
  eq(inspect(k), "<1>{[<table 1>] = 1}")
end

function test_empty_tables_are_not_labelled()
  local e = {}
  eq(inspect({ e, e }), "{{}, {}}")
end

-- Depth ---------------------------------------------------------------------

function test_depth()
  local t = { a = { b = { c = { d = 1 } } }, n = 1 }
  eq(inspect(t), "{a = {b = {c = {d = 1}}}, n = 1}")
  eq(inspect(t, { depth = 3 }), "{a = {b = {c = {...}}}, n = 1}")
  eq(inspect(t, { depth = 2 }), "{a = {b = {...}}, n = 1}")
  eq(inspect(t, { depth = 1 }), "{a = {...}, n = 1}")
  eq(inspect(t, { depth = 0 }), "{...}")
  eq(inspect(t, { depth = math.huge }), "{a = {b = {c = {d = 1}}}, n = 1}")
  eq(inspect(t, {}), "{a = {b = {c = {d = 1}}}, n = 1}")
end

function test_depth_keeps_scalars_and_empty_tables()
  eq(inspect({ 1, "s", {} }, { depth = 1 }), '{1, "s", {}}')
  eq(inspect({ { 1 } }, { depth = 1 }), "{{...}}")
  eq(inspect(5, { depth = 0 }), "5")
  eq(inspect({}, { depth = 0 }), "{}")
end

function test_depth_with_cycle()
  local t = { 1 }
  t.self = t
  eq(inspect(t, { depth = 1 }), "<1>{1, self = <table 1>}")
  eq(inspect({ t }, { depth = 1 }), "{{...}}")
end

function test_bad_options()
  local function msg(...)
    local ok, err = pcall(inspect, ...)
    lu.assertFalse(ok)
    return err
  end
  lu.assertStrContains(msg(1, { depth = -1 }), "sluice.inspect: opts.depth must be an integer >= 0, got -1")
  lu.assertStrContains(msg(1, { depth = 1.5 }), "sluice.inspect: opts.depth must be an integer >= 0, got 1.5")
  lu.assertStrContains(msg(1, { depth = "2" }), 'sluice.inspect: opts.depth must be an integer >= 0, got "2"')
  lu.assertStrContains(msg(1, 3), "sluice.inspect: opts must be a table, got number")
end

-- Functions, userdata, threads, __tostring ----------------------------------

function test_functions_threads_userdata()
  eq(inspect(print), "<function>")
  eq(inspect(function() end), "<function>")
  eq(inspect(coroutine.create(function() end)), "<thread>")
  eq(inspect({ f = print, co = coroutine.running() }), "{co = <thread>, f = <function>}")
  if debug and debug.upvalueid then
    local up = 1
    local light = debug.upvalueid(function() return up end, 1)   -- a light userdata
    eq(inspect(light), "<userdata>")
    eq(inspect({ light }), "{<userdata>}")
  end
end

function test_tostring_metamethod()
  local h = setmetatable({ id = 3 }, { __tostring = function(s) return "#Stage<" .. s.id .. ">" end })
  eq(inspect(h), "#Stage<3>")
  eq(inspect({ h, stage = h }), "{#Stage<3>, stage = #Stage<3>}")
  eq(inspect({ [h] = 1 }), "{[#Stage<3>] = 1}")
  eq(inspect(h, { depth = 0 }), "#Stage<3>")
end

function test_tostring_behind_protected_metatable()
  local h = setmetatable({}, { __tostring = function() return "hidden" end, __metatable = false })
  eq(inspect(h), "hidden")
end

function test_failing_tostring_falls_back()
  local bad = setmetatable({ 1 }, { __tostring = function() error("no") end })
  eq(inspect(bad), "{1}")
  local notstring = setmetatable({ 2 }, { __tostring = function() return {} end })
  eq(inspect(notstring), "{2}")
end

function test_sluice_handle()
  if not sluice or not sluice.task then
    lu.skip("needs the sluice binary")
  end
  local task = sluice.task(function() return 1 end)
  task:await()
  local mt = (debug and debug.getmetatable or getmetatable)(task)
  if mt and mt.__tostring then
    eq(inspect(task), tostring(task))
    eq(inspect({ task }), "{" .. tostring(task) .. "}")
  else
    eq(inspect(task), "<" .. type(task) .. ">")
  end
end

-- Layout --------------------------------------------------------------------

function test_one_line_below_80_columns()
  local s79 = inspect({ string.rep("x", 75) })        -- {"xxx"}: 75 + 4
  eq(#s79, 79)
  eq(s79, '{"' .. string.rep("x", 75) .. '"}')
end

function test_block_at_80_columns()
  eq(inspect({ string.rep("x", 76) }), '{\n  "' .. string.rep("x", 76) .. '"\n}')
end

function test_block_one_entry_per_line()
  local t = { name = "a long name value here", nested = { x = 1, y = 2 },
              items = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta" } }
  eq(inspect(t), table.concat({
    "{",
    '  items = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"},',
    '  name = "a long name value here",',
    "  nested = {x = 1, y = 2}",
    "}",
  }, "\n"))
end

function test_nested_blocks_indent_by_two()
  local long = string.rep("y", 70)
  eq(inspect({ 1, { a = long, b = { long } } }), table.concat({
    "{",
    "  1,",
    "  {",
    '    a = "' .. long .. '",',
    "    b = {",
    '      "' .. long .. '"',
    "    }",
    "  }",
    "}",
  }, "\n"))
end

function test_block_width_counts_indent_key_and_comma()
  -- inner is 73 columns on one line; with "  k = " (6) in front it is 79:
  -- it fits as the last entry, not when a comma follows it.
  local inner = { string.rep("z", 69) }
  lu.assertEquals(#inspect(inner), 73)
  eq(inspect({ k = inner, l = {} }), table.concat({
    "{",
    "  k = {",
    '    "' .. string.rep("z", 69) .. '"',
    "  },",
    "  l = {}",
    "}",
  }, "\n"))
  eq(inspect({ a = 1, k = inner }), table.concat({
    "{",
    "  a = 1,",
    '  k = {"' .. string.rep("z", 69) .. '"}',
    "}",
  }, "\n"))
end

function test_labels_in_blocks()
  local long = string.rep("w", 70)
  local t = { long }
  t.me = t
  eq(inspect(t), table.concat({
    "<1>{",
    '  "' .. long .. '",',
    "  me = <table 1>",
    "}",
  }, "\n"))
end

function test_long_scalar_alone()
  local s = string.rep("q", 200)
  eq(inspect(s), '"' .. s .. '"')
end

os.exit(lu.LuaUnit.run())
