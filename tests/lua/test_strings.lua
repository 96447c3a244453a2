-- string.gmatch and string.lower in sluice's states: a pattern of one
-- class and '+' in the "C" locale takes a fast path (lua/strfast.c);
-- every result must be the one Lua's own functions give. The oracle is
-- string.find (Lua's matcher, not replaced): for a pattern that never
-- matches the empty string, gmatch gives find's matches one after another.
local lu = require("luaunit")

local function by_find(s, p, init)
  local out = {}
  init = init or 1
  if init < 0 then init = math.max(#s + init + 1, 1) elseif init == 0 then init = 1 end
  while true do
    local a, b = s:find(p, init)
    if not a then return out end
    out[#out + 1] = s:sub(a, b)
    init = b + 1
  end
end

local function by_gmatch(s, p, init)
  local out = {}
  for w in string.gmatch(s, p, init) do out[#out + 1] = w end
  return out
end

-- patterns the fast path takes, and some next to them that it must not
local PATTERNS = {
  "%a+", "%A+", "%w+", "%W+", "%d+", "%D+", "%s+", "%S+", "%p+", "%P+", "%l+", "%u+", "%x+",
  "%c+", "%g+", "%G+", "%z+", "%Z+", "%.+", "%%+", "%]+", "%-+", ".+", "x+", "7+",
  "[%w_]+", "[^,]+", "[a-f]+", "[^%s%d]+", "[%]]+", "[a-]+", "[%a-]+", "[--/]+", "[^a-z]+",
  "[z-a]+", "[%%x]+", "[.]+", "[+]+", "[a]b]+", "[%a]]+",
  -- not one item and '+': Lua's matcher
  "%a+%d", "%a%a+", "[ab]c+", "%a-x", "x+y+", "a.+", "%d+%.?%d+",
}

local ALPHABET = "abcefxyzABCFXYZ@`{0179 ,.;-/_%]+[^\t\n\v\r" .. "\0\31\127\128\200\233\255"

local function random_string(rand, n)
  local t = {}
  for i = 1, n do
    local k = rand(#ALPHABET)
    t[i] = ALPHABET:sub(k, k)
  end
  return table.concat(t)
end

local function check_patterns(rand, rounds)
  for _ = 1, rounds do
    local s = random_string(rand, rand(0, 40))
    for _, p in ipairs(PATTERNS) do
      -- no init, and one from before the start to past the end
      local init = rand(3) == 1 and rand(-50, 50) or nil
      local got, want = by_gmatch(s, p, init), by_find(s, p, init)
      if #got ~= #want then
        lu.fail(("gmatch(%q, %q, %s): %d matches, find gives %d"):format(s, p, init, #got, #want))
      end
      lu.assertEquals(got, want, ("gmatch(%q, %q, %s)"):format(s, p, init))
    end
  end
end

TestStrings = {}

function TestStrings:test_examples()
  lu.assertEquals(by_gmatch("The quick, brown fox: 42 jumps!", "%a+"),
    { "The", "quick", "brown", "fox", "jumps" })
  lu.assertEquals(by_gmatch("a1,b22,,c333", "[^,]+"), { "a1", "b22", "c333" })
  lu.assertEquals(by_gmatch("x__y z9", "[%w_]+"), { "x__y", "z9" })
  lu.assertEquals(by_gmatch("", "%a+"), {})
  lu.assertEquals(by_gmatch("ab", ""), { "", "", "" })   -- empty matches: Lua's gmatch
  lu.assertEquals(by_gmatch("aab", "a*"), { "aa", "" })
  lu.assertEquals(by_gmatch("   ", "%S+"), {})
  lu.assertEquals(by_gmatch("a\0b c", "[^ ]+"), { "a\0b", "c" })
  lu.assertEquals(by_gmatch("caf\233 na\239ve", "%a+"), { "caf", "na", "ve" })
  -- a number is a subject, as in Lua
  lu.assertEquals(by_gmatch(1234.5, "%d+"), { "1234", "5" })
  -- init: Lua's own gmatch
  lu.assertEquals(by_gmatch("abc def ghi", "%a+", 5), { "def", "ghi" })
  lu.assertEquals(by_gmatch("abc def ghi", "%a+", -3), { "ghi" })
end

function TestStrings:test_random_subjects_and_patterns()
  for seed = 1, 20 do
    math.randomseed(seed)
    check_patterns(math.random, 30)
  end
end

function TestStrings:test_iterator_state()
  -- each iterator keeps its own position; one that ended stays ended
  local a, b = ("one two three"):gmatch("%a+"), ("four five"):gmatch("%a+")
  lu.assertEquals({ a(), b(), a(), b(), a(), b() }, { "one", "four", "two", "five", "three" })
  lu.assertNil(a())
  lu.assertEquals(select("#", a()), 0)
  -- the subject stays alive with its iterator
  local it = (("word "):rep(3) .. tostring(os.time())):gmatch("%a+")
  collectgarbage()
  lu.assertEquals({ it(), it(), it() }, { "word", "word", "word" })
end

function TestStrings:test_malformed_patterns_as_lua_says()
  for _, p in ipairs({ "[a%]+", "[a+", "%", "[]+", "[^]+", "(%a+" }) do
    local ok1, e1 = pcall(by_gmatch, "some text", p)
    local ok2, e2 = pcall(string.find, "some text", p)
    lu.assertEquals(ok1, ok2, p)
    lu.assertEquals(e1 and tostring(e1):gsub("^.-: ", "") or nil, e2 and tostring(e2):gsub("^.-: ", "") or nil, p)
  end
  -- patterns Lua reads another way than a set and '+'
  lu.assertEquals(by_gmatch("a]]b]", "[]]+"), by_find("a]]b]", "[]]+"))
  lu.assertEquals(by_gmatch("a]]b]", "[^]]+"), by_find("a]]b]", "[^]]+"))
end

function TestStrings:test_bad_arguments_as_lua_says()
  local function err(f, ...)
    local ok, e = pcall(f, ...)
    lu.assertFalse(ok)
    return (e:gsub("^[^:]*:%d+: ", ""))   -- the caller's position, when it is Lua
  end
  lu.assertEquals(err(string.gmatch), "bad argument #1 to 'string.gmatch' (string expected, got no value)")
  lu.assertEquals(err(string.gmatch, "x"), "bad argument #2 to 'string.gmatch' (string expected, got no value)")
  lu.assertEquals(err(string.gmatch, "x", {}), "bad argument #2 to 'string.gmatch' (string expected, got table)")
  lu.assertEquals(err(string.gmatch, "x", "%a+", "y"),
    "bad argument #3 to 'string.gmatch' (number expected, got string)")
  lu.assertEquals(err(function() return ("x"):gmatch("%a+", "y") end),
    "bad argument #2 to 'gmatch' (number expected, got string)")
  lu.assertEquals(err(function() return ("x"):gmatch() end),
    "bad argument #1 to 'gmatch' (string expected, got no value)")
  lu.assertEquals(err(string.lower), "bad argument #1 to 'string.lower' (string expected, got no value)")
  lu.assertEquals(err(function() return string.lower({}) end),
    "bad argument #1 to 'lower' (string expected, got table)")
end

function TestStrings:test_lower()
  math.randomseed(7)
  for _ = 1, 200 do
    local s = random_string(math.random, math.random(0, 60))
    local want = s:gsub("[A-Z]", function(c) return string.char(c:byte() + 32) end)
    lu.assertEquals(s:lower(), want)
  end
  lu.assertEquals(string.lower(42), "42")
  lu.assertEquals(("\196\214ABC"):lower(), "\196\214abc")
end

function TestStrings:test_another_locale_gets_lua_functions()
  -- in a locale other than "C" the classes are that locale's: Lua's
  -- own functions run, with find's results still
  local name = os.setlocale("C.UTF-8", "ctype") or os.setlocale("C.utf8", "ctype")
  if not name then lu.skip("no C.UTF-8 locale here") end
  local ok, e = pcall(function()
    math.randomseed(3)
    check_patterns(math.random, 20)
    lu.assertEquals(("AbC\233"):lower(), "abc\233")
  end)
  os.setlocale("C", "ctype")
  if not ok then error(e, 0) end
end

function TestStrings:test_in_a_flow()
  -- the workers' states: words of random lines through flat_map, counted
  math.randomseed(11)
  local lines, want = {}, {}
  for i = 1, 300 do
    lines[i] = random_string(math.random, math.random(0, 50))
    for _, w in ipairs(by_find(lines[i], "%a+")) do want[w] = (want[w] or 0) + 1 end
  end
  for stages = 1, 3 do
    local got = {}
    for _, kv in ipairs(sluice.flow.from_enumerable(lines, { stages = stages, max_demand = 7 })
        :flat_map(function(line) return line:gmatch("%a+") end)
        :partition({ stages = stages })
        :frequencies()
        :to_list()) do
      got[kv[1]] = kv[2]
    end
    lu.assertEquals(got, want)
  end
end

os.exit(lu.LuaUnit.run())
