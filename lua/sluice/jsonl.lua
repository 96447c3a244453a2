-- sluice.jsonl: JSON lines. sluice.jsonl(path [, opts]) is an enumerable
-- like sluice.lines whose events are the decoded lines (a split source
-- decodes in the stages that read the lines), and flow:into_jsonl(path)
-- writes a flow's events as JSON lines. Decoding and encoding use
-- lua-cjson, required in each state that reads or writes.
local sluice = require("sluice")

local M = {}

-- cjson in this state, or an error naming fn.
local cjson
local function json(fn)
  if cjson then return cjson end
  local ok, mod = pcall(require, "cjson")
  if not ok then
    error(("%s: JSON lines need lua-cjson (the Debian package lua-cjson): %s")
      :format(fn, tostring(mod):match("^[^\n]*")), 0)
  end
  cjson = mod
  return cjson
end
M.json = json

-- A decoded value as an event: JSON null becomes nil (the field is left
-- out) and numbers with an integer value become integers (cjson reads
-- every number as a float).
local function fix(v, null)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if x == null then v[k] = nil
      elseif type(x) == "table" or math.type(x) == "float" then v[k] = fix(x, null) end
    end
    return v
  elseif math.type(v) == "float" then
    return math.tointeger(v) or v
  end
  return v
end

-- The number of lines of the file before the line that starts at or
-- after byte `from` (the first line of a split part): the newlines before
-- from - 1, plus the one that ends the line a part's reader skips. Read
-- only on an error.
local function lines_before(path, from)
  if from <= 0 then return 0 end
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n, left = 0, from - 1
  while left > 0 do
    local block = f:read(math.min(left, 65536))
    if not block then break end
    local _, k = block:gsub("\n", "")
    n, left = n + k, left - #block
  end
  f:close()
  return n + 1
end
M.lines_before = lines_before

-- Decodes the lines read (an array of strings) into events appended to
-- out. `first` is the line number of lines[1], or a function that returns
-- it (a split part counts it only on an error). A line of blanks is left
-- out; a bad line raises "sluice.jsonl: path:line: message" or, with
-- bad = "skip", is left out and counted on the enumerable's counter.
function M.decode(enum, lines, out, first)
  local cj = json("sluice.jsonl")
  local decode, null = cj.decode, cj.null
  local k = #out
  for i = 1, #lines do
    local line = lines[i]
    local ok, v = pcall(decode, line)
    if ok and v ~= null then
      k = k + 1
      out[k] = fix(v, null)
    elseif not line:find("^%s*$") then
      if enum.bad == "skip" then
        sluice._count(enum.skip_counter, 1)
      else
        local at = type(first) == "function" and first() or first
        local msg = ok and "null is not an event" or tostring(v):gsub("^Expected", "expected")
        error(("sluice.jsonl: %s:%d: %s"):format(enum.path, at + i - 1, msg), 0)
      end
    end
  end
  return out
end

-- src:skipped() on the enumerable (main thread): the bad lines skipped so far.
local Enum = { __index = {} }
function Enum.__index.skipped(e)
  if type(e) ~= "table" or e.__sluice_enum ~= "jsonl" then error("jsonl:skipped: expected a sluice.jsonl source", 2) end
  return e.skip_counter and sluice._count(e.skip_counter) or 0
end

--- sluice.jsonl(path [, opts]) -> an enumerable of the file's lines
--- decoded as JSON; opts.bad = "error" (default) or "skip".
function M.jsonl(path, opts)
  local fn = "sluice.jsonl"
  if type(path) ~= "string" then
    error(("%s: path must be a string, got %s"):format(fn, sluice.inspect(path)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("%s: opts must be a table, got %s"):format(fn, type(opts)), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "bad" then error(("%s: unknown option %s"):format(fn, sluice.inspect(k)), 2) end
  end
  local bad = opts.bad or "error"
  if bad ~= "error" and bad ~= "skip" then
    error(('%s: bad must be "error" or "skip", got %s'):format(fn, sluice.inspect(bad)), 2)
  end
  local ok, err = pcall(json, fn)
  if not ok then error(err, 2) end
  local f, oerr = io.open(path, "rb")
  if not f then error(fn .. ": " .. oerr, 2) end
  f:close()
  return setmetatable({ __sluice_enum = "jsonl", path = path, bad = bad,
                        skip_counter = bad == "skip" and sluice._counter() or nil }, Enum)
end

-- The consumer of flow:into_jsonl: writes each event as one line.
M.Writer = {
  type = "consumer",
  init = function(cfg)
    local f, err = io.open(cfg.path, "wb")
    if not f then error("sluice.flow.into_jsonl: " .. err, 0) end
    return { f = f, cfg = cfg, encode = json("sluice.flow.into_jsonl").encode }
  end,
  handle_events = function(events, _, st)
    local parts, encode = {}, st.encode
    for i = 1, #events do
      local ok, s = pcall(encode, events[i])
      if not ok then
        error(("sluice.flow.into_jsonl: cannot encode event %s: %s"):format(sluice.inspect(events[i]), s), 0)
      end
      parts[i] = s
    end
    parts[#parts + 1] = ""
    st.f:write(table.concat(parts, "\n"))
    sluice._count(st.cfg.written, #events)
    return {}, st
  end,
  handle_cancel = function(_, _, st)
    local me = sluice.self()
    if me:stats().producers == 0 then st.f:close(); st.f = nil; me:finish() end
    return {}, st
  end,
  terminate = function(_, st)
    if st and st.f then st.f:close() end
  end,
}

return M
