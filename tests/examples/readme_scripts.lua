-- Checks the documentation's scripts and transcripts against the program.
--   sluice tests/examples/readme_scripts.lua BIN PAGE.md...
-- (run from the repository root by tests/examples/readme_scripts.sh)
--
-- In each page:
--   * a ```lua block whose first line is "-- examples/NAME.lua" (or
--     "-- examples/NAME.lua: what it shows") is a complete script: it must be
--     byte for byte the file examples/NAME.lua, and the next fenced block must
--     be a ```console block that runs it (its first command is
--     "build/sluice examples/NAME.lua", arguments allowed);
--   * a ```console block is a transcript: each "$ COMMAND" line is run with sh
--     in the repository root (build/sluice standing for BIN, with
--     SLUICE_WORKERS=2), and what it prints (stdout and stderr) must be the
--     lines up to the next "$ " line or the end of the block. For the REPL
--     ("$ build/sluice" alone) the lines typed are those after each
--     "sluice> " or ">> " prompt, fed to "build/sluice -i" on stdin, which
--     prints the same transcript a terminal shows.
-- Trailing blanks of each line, and the Lua 5.4 release number in the REPL's
-- banner, are ignored. Also: every examples/*.lua has
-- a line in examples/README.md.
local bin = assert(arg[1], "usage: readme_scripts.lua BIN PAGE.md...")
local passed, failed = 0, 0
local function result(ok, name, detail)
  if ok then passed = passed + 1; print("ok " .. name)
  else failed = failed + 1; print("FAIL " .. name); if detail then print((detail:gsub("[^\n]+", "    %0"))) end end
end
local function read(path)
  local f = io.open(path, "rb"); if not f then return nil end
  local s = f:read("a"); f:close(); return s
end
-- Trailing blanks of lines and trailing empty lines off; the Lua release
-- in the banner ("(Lua 5.4.4)") is the machine's, so any 5.4.x matches.
local function norm(s)
  s = s:gsub("[ \t]+\n", "\n"):gsub("[ \t]+$", ""):gsub("%(Lua 5%.4%.%d+%)", "(Lua 5.4.x)")
  return (s:gsub("\n+$", ""))
end
local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local tmp = os.tmpname()

local function run(cmd, input)
  cmd = cmd:gsub("^build/sluice", bin):gsub("([ |;(])build/sluice", "%1" .. bin)
  local full = "SLUICE_WORKERS=2 timeout 60 sh -c " .. sh_quote(cmd) .. " 2>&1"
  if input then
    local f = assert(io.open(tmp, "wb")); f:write(input); f:close()
    full = full .. " <" .. tmp
  else
    full = full .. " </dev/null"
  end
  local p = io.popen(full, "r")
  local out = p:read("a"); p:close()
  return out
end

local function blocks(text)
  local list, cur = {}, nil
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if cur then
      if line:match("^```%s*$") then list[#list + 1] = cur; cur = nil
      else cur.lines[#cur.lines + 1] = line end
    else
      local lang = line:match("^```(%S*)%s*$")
      if lang then cur = { lang = lang, lines = {} } end
    end
  end
  return list
end

local function check_console(page, i, b)
  local cmds, cur = {}, nil
  for _, line in ipairs(b.lines) do
    local c = line:match("^%$ (.*)$")
    if c then cur = { cmd = c, out = {} }; cmds[#cmds + 1] = cur
    elseif cur then cur.out[#cur.out + 1] = line end
  end
  if #cmds == 0 then result(false, page .. " console block " .. i .. " has no $ command") end
  for _, c in ipairs(cmds) do
    local want = table.concat(c.out, "\n")
    local got
    if c.cmd == "build/sluice" then             -- a REPL session
      local typed = {}
      for _, l in ipairs(c.out) do
        local t = l:match("^sluice> (.*)$") or l:match("^>> (.*)$")
        if t and t ~= "" then typed[#typed + 1] = t end
      end
      got = run("build/sluice -i", table.concat(typed, "\n") .. "\n")
    else
      got = run(c.cmd)
    end
    result(norm(got) == norm(want), page .. ": $ " .. c.cmd,
      "--- the page shows\n" .. want .. "\n--- the program prints\n" .. got)
  end
  return cmds
end

for p = 2, #arg do
  local page = arg[p]
  local list = blocks(assert(read(page), "cannot read " .. page))
  local scripts = 0
  for i, b in ipairs(list) do
    local file = b.lang == "lua" and b.lines[1] and b.lines[1]:match("^%-%- (examples/[%w_]+%.lua)")
    if file then
      scripts = scripts + 1
      local body = table.concat(b.lines, "\n") .. "\n"
      local real = read(file)
      result(real == body, page .. ": the script block is " .. file,
        real and "--- the page shows\n" .. body .. "--- the file holds\n" .. real or "no such file")
      local nxt = list[i + 1]
      local first = nxt and nxt.lang == "console" and nxt.lines[1] or ""
      local runs = first:match("^%$ build/sluice (examples/[%w_]+%.lua)")
      result(runs == file, page .. ": " .. file .. " is followed by its run",
        "the next block should be ```console starting \"$ build/sluice " .. file .. "\", got: " .. first)
    elseif b.lang == "console" then
      check_console(page, i, b)
    end
  end
  print(("%s: %d complete scripts"):format(page, scripts))
end

-- every example is listed in examples/README.md
local index = read("examples/README.md") or ""
local p = io.popen("ls examples/*.lua")
for f in p:lines() do
  local name = f:match("examples/(.*)")
  result(index:find("`" .. name .. "`", 1, true) ~= nil, "examples/README.md lists " .. name)
end
p:close()
os.remove(tmp)
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
