-- sluice.inspect: a readable, deterministic rendering of any Lua value.
--
--   local inspect = require "sluice.inspect"
--   inspect(value [, opts]) --> string
--
-- The rendering reads like a Lua constructor:
-- - nil, booleans: as Lua writes them.
-- - integers: 1; floats always look like floats: 1.0, 0.5, 1e+20, and the
--   three specials as the expressions that produce them: 0/0 (nan),
--   math.huge, -math.huge. A float prints with the fewest digits (14..17)
--   that read back as the same number.
-- - strings: double-quoted; \ and " escaped, \a \b \f \n \r \t \v by name,
--   other control bytes as decimal escapes (\0, \27, \0001 before a digit),
--   bytes >= 128 left as they are.
-- - tables: the array part (keys 1..n up to the first nil) first, without
--   keys, then the other keys sorted: numbers (by value), strings (by byte
--   order), then the other types by type name (boolean false before true;
--   tables by their own rendering; functions by where they are defined;
--   threads and userdata without __tostring have no stable order). A
--   string key that is a Lua identifier prints as `name = v`, any other key
--   as `[key] = v`. Empty tables print as {}.
-- - A table reached more than once (a cycle or a shared sub-table) is
--   labelled where it is first printed, `<1>{...}`, and printed as
--   `<table 1>` wherever it appears again. Labels count from 1 in the order
--   the labelled tables appear in the output.
-- - opts.depth (default unlimited) is the number of nested table levels
--   shown: tables deeper than that print as {...} (depth = 0 shows only
--   {...} for a non-empty table).
-- - A value whose metatable has __tostring (sluice handles, for example)
--   prints as tostring(value). Other functions, userdata and threads print
--   as <function>, <userdata>, <thread>. Metatables are otherwise ignored,
--   and tables are read raw (no __index, no __pairs).
-- - Layout: a table stays on one line when that line is shorter than 80
--   columns; otherwise it opens a block with one entry per line, indented
--   by 2 spaces more than the line that opened it.

local type, next, rawget, tostring, tonumber, pcall, error =
      type, next, rawget, tostring, tonumber, pcall, error
local mtype, huge, tointeger = math.type, math.huge, math.tointeger
local fmt, rep = string.format, string.rep
local concat, sort = table.concat, table.sort
local getmetatable = (debug and debug.getmetatable) or getmetatable
local getinfo = debug and debug.getinfo

local WIDTH = 80           -- lines stay shorter than this when they can
local STEP = 2             -- indentation per nesting level

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in
            local nil not or repeat return then true until while]]):gmatch("%S+") do
  keywords[w] = true
end

-- Order of key types: numbers, strings, then by type name.
local typerank = { number = 1, string = 2, boolean = 3, ["function"] = 4,
                   table = 5, thread = 6, userdata = 7 }

local named = { ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
                ["\r"] = "\\r", ["\t"] = "\\t", ["\v"] = "\\v",
                ['"'] = '\\"', ["\\"] = "\\\\" }

local function escape(c, digit)
  local e = named[c]
  if e then return e .. digit end
  -- a decimal escape must not swallow a digit that follows it
  return fmt(digit == "" and "\\%d" or "\\%03d", c:byte()) .. digit
end

local function quote(s)
  return '"' .. s:gsub('([\0-\31\127"\\])(%d?)', escape) .. '"'
end

local function isident(s)
  return s:match("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil and not keywords[s]
end

local function number(x)
  if mtype(x) == "integer" then return fmt("%d", x) end
  if x ~= x then return "0/0" end
  if x == huge then return "math.huge" end
  if x == -huge then return "-math.huge" end
  local s
  for digits = 14, 17 do
    s = fmt("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[.e]") then s = s .. ".0" end
  return s
end

-- Returns tostring(v) when v's metatable has a __tostring that yields a
-- string, nil otherwise (a failing __tostring falls back to the plain form).
local function metastring(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return s end
  end
  return nil
end

local render   -- forward: value, depth, sortkeys cache -> string

-- A key of a type with no natural order sorts by this string. The cache
-- lives for one inspect call; the placeholder stored before rendering stops
-- a table that holds itself as a key from recursing forever.
local function sortkey(cache, k)
  local s = cache[k]
  if s == nil then
    cache[k] = ""
    local tk = type(k)
    if tk == "table" then
      s = render(k, huge, cache)
    elseif tk == "function" and getinfo then
      local info = getinfo(k, "S")
      s = fmt("%s:%09d", info.short_src, info.linedefined)
    else
      s = metastring(k) or ""
    end
    cache[k] = s
  end
  return s
end

local function keyorder(cache)
  return function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return typerank[ta] < typerank[tb] end
    if ta == "number" or ta == "string" then return a < b end
    if ta == "boolean" then return b and not a end
    return sortkey(cache, a) < sortkey(cache, b)
  end
end

--[[ Rendering runs in three passes over a tree of nodes:
  build   walks the value once, in output order, and makes the tree; a node
          is either a string (finished text: scalars, {}, {...}) or a table
          node: an array of entries {name = identifier | key = node,
          value = node}, with .shared set when the table is met again; a
          repeated table becomes {ref = node of its first occurrence};
  label   numbers the shared table nodes in output order;
  layout  writes each table node on one line or as an indented block. ]]

local function build(st, v, level)
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "number" then return number(v) end
  if tv == "nil" or tv == "boolean" then return tostring(v) end
  local s = metastring(v)
  if s then return s end
  if tv ~= "table" then return "<" .. tv .. ">" end

  local first = st.seen[v]
  if first then
    first.shared = true
    return { ref = first }
  end
  if next(v) == nil then return "{}" end
  if level > st.depth then return "{...}" end

  local node = {}
  st.seen[v] = node
  local n = 0
  while rawget(v, n + 1) ~= nil do
    n = n + 1
    node[n] = { value = build(st, rawget(v, n), level + 1) }
  end
  local keys = {}
  for k in next, v do
    if not (mtype(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, keyorder(st.sortkeys))
  for i = 1, #keys do
    local k = keys[i]
    local e = {}
    if type(k) == "string" and isident(k) then
      e.name = k
    else
      e.key = build(st, k, level + 1)
    end
    e.value = build(st, rawget(v, k), level + 1)
    node[n + i] = e
  end
  return node
end

local function label(node, st)
  if type(node) ~= "table" or node.ref then return end
  if node.shared then
    st.labels = st.labels + 1
    node.label = st.labels
  end
  for i = 1, #node do
    local e = node[i]
    if e.key then label(e.key, st) end
    label(e.value, st)
  end
end

local function opening(node)
  return node.label and ("<" .. node.label .. ">{") or "{"
end

-- Returns the one-line text of node if it is at most `budget` characters
-- long, nil otherwise. Gives up as soon as the budget is exceeded, so
-- laying out a large table costs about WIDTH steps per node.
local function oneline(node, budget)
  local s
  if type(node) == "string" then
    s = node
  elseif node.ref then
    s = "<table " .. node.ref.label .. ">"
  else
    local parts = {}
    local used = #opening(node) + 1
    for i = 1, #node do
      local e = node[i]
      if i > 1 then used = used + 2 end
      local k = ""
      if e.name then
        k = e.name .. " = "
      elseif e.key then
        local ks = oneline(e.key, budget - used - 5)
        if not ks then return nil end
        k = "[" .. ks .. "] = "
      end
      used = used + #k
      local vs = used <= budget and oneline(e.value, budget - used)
      if not vs then return nil end
      used = used + #vs
      parts[i] = k .. vs
    end
    s = opening(node) .. concat(parts, ", ") .. "}"
  end
  if #s > budget then return nil end
  return s
end

-- Appends node's text to out. `col` is the column where it starts on the
-- current line (whose indentation is `indent`), `tail` the number of
-- characters that will follow it on that line.
local function layout(node, out, indent, col, tail)
  local s = oneline(node, WIDTH - 1 - col - tail)
  if s or type(node) == "string" or node.ref then
    out[#out + 1] = s or oneline(node, huge)
    return
  end
  local inner = indent + STEP
  local pad = rep(" ", inner)
  out[#out + 1] = opening(node)
  for i = 1, #node do
    local e = node[i]
    local k = ""
    if e.name then
      k = e.name .. " = "
    elseif e.key then
      k = "[" .. oneline(e.key, huge) .. "] = "
    end
    local last = i == #node
    out[#out + 1] = "\n" .. pad .. k
    layout(e.value, out, inner, inner + #k, last and 0 or 1)
    if not last then out[#out + 1] = "," end
  end
  out[#out + 1] = "\n" .. rep(" ", indent) .. "}"
end

function render(v, depth, sortkeys)
  local st = { seen = {}, depth = depth, sortkeys = sortkeys, labels = 0 }
  local root = build(st, v, 1)
  label(root, st)
  local out = {}
  layout(root, out, 0, 0, 0)
  return concat(out)
end

--- Returns a readable string of `value` (see the header of this file).
--- opts.depth: number of nested table levels shown (integer >= 0).
local function inspect(value, opts)
  local depth = huge
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("sluice.inspect: opts must be a table, got " .. type(opts), 2)
    end
    local d = opts.depth
    if d ~= nil then
      if type(d) ~= "number" or d < 0 or (d ~= huge and not tointeger(d)) then
        error("sluice.inspect: opts.depth must be an integer >= 0, got "
              .. render(d, 1, {}), 2)
      end
      depth = d
    end
  end
  return render(value, depth, {})
end

return inspect
