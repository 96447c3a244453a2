-- sluice.flow_codegen: the code a layer stage runs on each batch. The
-- planner (sluice.flow_plan) calls compile to generate the source of one
-- Lua function (the fused loop) for a layer's per-event operations and
-- reducer; each stage (sluice.flow_layer, sluice.flow_source) turns it
-- into its run function with load_run, which compiles a source once per
-- worker. snapshot copies a table a user function made as sending it
-- would, for the events a stage emits.
local sluice = require("sluice")
local E = require("sluice.flow_error")

local nilerr, nilacc, op_error = E.nilerr, E.nilacc, E.op_error
local inspect = sluice.inspect

local M = {}

-- Snapshots ----------------------------------------------------------------------------------
--
-- A value goes from one stage to the next as a copy made when it is sent.
-- Inside a stage, the fused loop gathers what the operations emit in an
-- array that is sent once the batch (or a split source's run of chunks)
-- is done, so a table that a user function returned and then changed (an
-- upvalue it appends to, the accumulator emit_and_reduce also emits) would
-- be sent as it is at the end of the batch, and the result would depend on
-- where batches end. snapshot(t) copies t as sending it now would: its
-- raw fields (no metatable), nested tables copied, shared and cyclic
-- references kept, a module table kept as it is (sent by name).
-- Functions and stage handles are kept as they are.

-- The codec refuses values nested deeper; what lies deeper is left for it
-- to refuse when the value is sent.
local SNAPSHOT_DEPTH = 200

local function is_module(t)
  for _, m in pairs(package.loaded) do
    if m == t then return true end
  end
  return false
end

local function deep_copy(t, seen, depth)
  local c = {}
  seen[t] = c
  local fns = false
  for k, v in next, t do
    if type(k) == "table" then
      k = seen[k] or (depth < SNAPSHOT_DEPTH and deep_copy(k, seen, depth + 1)) or k
    end
    local tv = type(v)
    if tv == "table" then
      v = seen[v] or (depth < SNAPSHOT_DEPTH and deep_copy(v, seen, depth + 1)) or v
    elseif tv == "function" then
      fns = true
    end
    c[k] = v
  end
  -- only a table holding functions is worth looking up among the modules
  if fns and is_module(t) then
    seen[t] = t
    return t
  end
  return c
end

-- Flat tables (the common case) are copied in one pass; any other goes
-- to deep_copy.
local function snapshot(t)
  local c = {}
  for k, v in next, t do
    local tv = type(v)
    if tv == "table" or tv == "function" or type(k) == "table" then return deep_copy(t, {}, 1) end
    c[k] = v
  end
  return c
end

-- The fused loop ----------------------------------------------------------------------------

-- A flat_map whose function returns an iterator gets the rest of the loop
-- written out twice (array and iterator); past this many flat_maps in a
-- layer, iterators are collected into arrays instead of doubling again.
local MAX_ITER_FLAT_MAPS = 3

-- Generates the fused loop of a layer: one Lua function over a batch that
-- applies the per-event operations and the reducer, with the user's
-- functions as upvalues named after their operation (so an error can name
-- it). Returns the source of a chunk that, given (F, NILERR, KEY, HASH,
-- BADPART), returns run(events, out, acc, seen) -> acc; `out` receives the
-- emitted events. mode "range" loops over run(first, last, step, ...)
-- instead of an array.
--
-- comb (a combining layer, see "Combining" below) adds, after the layer's
-- operations, the partition of the next layer, that layer's operations
-- and its reducer, with acc a table partition -> partial accumulator; a
-- keyed one adds just the reducer, on one accumulator.
--
-- copy_out: the events the loop emits leave the stage (not a run() or a
-- layer feeding a departition/take_sort, whose events are dropped); then
-- `out` is an outbox (new_out) and each event is encoded, which copies it,
-- as the loop emits it; likewise (copy_groups) a table a user function
-- made is copied (snapshot) as group_by keeps it in its accumulator.
local function compile(ops, red, mode, comb, copy_out, copy_groups)
  -- a plain count (red.count) counts, before the partition, a table or
  -- function event as the copy the partition would send: in a keyed
  -- combining through its own reducer (red.comb_f), else copied where the
  -- partition is computed, before the operations that follow it
  local keyed_comb = comb ~= nil and comb.keyed
  if comb and comb.keyed then   -- one plain accumulator, split by key at the end
    red, comb = comb.red, nil
  end
  local src = {}
  local function w(s) src[#src + 1] = s end
  local F = {}
  local steps = {}   -- {op = operation | "part", name = its local, f = the user's function}
  for i, op in ipairs(ops) do steps[#steps + 1] = { op = op.op, name = ("op%d_%s"):format(i, op.op), f = op.f } end
  if comb then
    steps[#steps + 1] = { op = "part" }
    for i, op in ipairs(comb.ops) do
      local k = #ops + i
      steps[#steps + 1] = { op = op.op, name = ("op%d_%s"):format(k, op.op), f = op.f }
    end
    red = comb.red
  end
  w("local F, NILERR, KEY, HASH, BADPART, SNAP, NILACC, BADTIME = ...\n")
  w("local type, tointeger, math_type = type, math.tointeger, math.type\n")
  -- SNAPC (sluice._snap) copies a flat table in C and leaves other values
  -- as they are; it returns nothing for a table that needs SNAP's deep copy.
  -- PUTTER (sluice._putter) gives the function that appends an event to
  -- the outbox `out` (new_out)
  w("local SNAPC, PUTTER, PUTARRAY = require('sluice')._snap, require('sluice')._putter, require('sluice')._put_array\n")
  w("local COPYEV = require('sluice.flow_error').copy_event\n")
  w("local COUNT_RUNS = require('sluice')._count_runs\n")
  w("local function COLLECT(f, s, c)\n  local t, n = {}, 0\n  for x in f, s, c do n = n + 1; t[n] = x end\n  return t\nend\n")
  for i, st in ipairs(steps) do
    if st.f then
      w(("local %s = F[%d]\n"):format(st.name, i))
      F[i] = st.f
    end
  end
  -- a last map that only builds a tuple of its argument and literals
  -- (sluice._tuple_ctor) makes no table: {x, K} before a combiner with
  -- code for that (reduce_by_key's pair_code) is fused with it; a tuple
  -- whose events leave the stage ({ts, ts}) is encoded from x
  -- (sluice._tuple_putter)
  local last = steps[#steps]
  local tuple = not comb and last and last.op == "map" and table.pack(sluice._tuple_ctor(last.f))
  if tuple and tuple[1] == "pc" and red and red.kind == "reduce" and red.fast and red.fast.pair_code then
    last.pair = true
    F.pairk = tuple[2]
    w("local PAIRK = F.pairk\n")
  elseif tuple and tuple[1] and not red and copy_out then
    last.tuple = true
    F.tuple = tuple
    w("local TUPLE_PUTTER, TUPLE = require('sluice')._tuple_putter, F.tuple\n")
  end
  if red then
    if red.f then w("local reduce_" .. red.kind .. " = F.red\n") end
    if red.key then w("local group_by_key_fun = F.key\n") end
    if red.value then w("local group_by_value_fun = F.value\n") end
    F.red, F.key, F.value = keyed_comb and red.comb_f or red.f, red.key, red.value
    if red.fast and red.fast.fns then
      F.fast = red.fast.fns
      local names = {}
      for name in pairs(red.fast.fns) do names[#names + 1] = name end
      table.sort(names)   -- the same source on every worker (compiled once)
      for _, name in ipairs(names) do w(("local %s = F.fast.%s\n"):format(name, name)) end
    end
  end
  if comb then
    w("local acc_fn = F.acc\n")
    F.acc = red.acc
    if comb.hash then
      w("local partition_hash_fn = F.part\n")
      F.part = comb.hash
    elseif type(comb.key) == "function" then
      w("local partition_key_fn = F.part\n")
      F.part = comb.key
    end
    if comb.win and type(comb.win.by) == "function" then
      w("local window_by_fn = F.wby\n")
      F.wby = comb.win.by
    end
  end
  -- a window by a field and a partition by a field (or only one): both in
  -- one C call per event (sluice._window_part), where it can decide
  local function spec(x)
    if x == nil then return "nil" end
    return x.index and ("{index = %d}"):format(x.index) or ("{field = %q}"):format(x.field)
  end
  local wpart = comb and comb.win and type(comb.win.by) == "table" and not comb.hash
    and (comb.n == 1 or type(comb.key) == "table")
  if wpart then
    w(("local WPART = require('sluice')._window_part(%s, %d, %s, %d)\n")
      :format(spec(comb.win.by), comb.win.size, comb.n == 1 and "nil" or spec(comb.key), comb.n))
  end
  -- the loop's prologue, written once the body says what it needs (a
  -- window's run may be a single event: no work that is not used)
  local uses, prologue = {}, nil
  if mode == "range" then   -- a split sluice.range source: no array at all
    w("return function(first, last, step, out, acc, seen)\n")
    prologue = #src + 1
    w("")
    w("  for e0 = first, last, step do\n    local e = e0\n")
  else
    -- i0, i1: a slice of the batch (a window's run), the whole of it by default
    w("return function(events, out, acc, seen, i0, i1)\n")
    prologue = #src + 1
    w("")
    w("  for i = i0 or 1, i1 or #events do\n    local e = events[i]\n")
  end

  -- the fixed window of e in the next layer (as its window computes it):
  -- wid, the window's start (decl: "local " or "" where wid is declared)
  local function window_of(ind, decl)
    local by = comb.win.by
    if type(by) == "function" then
      w(ind .. "local t = window_by_fn(e)\n")
    else
      local field = by.index or ("%q"):format(by.field)
      w(ind .. ("local t = istable and e[%s] or nil\n"):format(field))
    end
    -- an integral float is its integer, as the window reads it
    w(ind .. "if math_type(t) ~= 'integer' then t = BADTIME(t) end\n")
    w(ind .. ("if t < %d or t > %d then BADTIME(t) end\n"):format(-(1 << 62), 1 << 62))
    w(ind .. ("%swid = t // %d * %d\n"):format(decl, comb.win.size, comb.win.size))
  end

  -- the partition of e in the next layer (as its dispatcher computes it)
  local function part(ind)
    local decl = "local "
    if wpart then
      -- WPART gives nothing where the code below must decide (and name
      -- the error): e not a table, a time not an integer, a key not a scalar
      w(ind .. "local p, wid = WPART(e)\n")
      w(ind .. "if not p then\n")
      ind, decl = ind .. "  ", ""
    end
    w(ind .. "local istable = type(e) == 'table'\n")
    if comb.win then window_of(ind, decl) end
    local n = comb.n
    if comb.hash then
      w(ind .. "local p, e2 = partition_hash_fn(e)\n")
      w(ind .. "if e2 ~= nil then e = e2 end\n")
    elseif n == 1 then
      w(ind .. decl .. "p = 1\n")
    elseif comb.key == nil then
      w(ind .. decl .. ("p = HASH(e, %d)\n"):format(n))
    elseif type(comb.key) == "function" then
      w(ind .. decl .. ("p = HASH(partition_key_fn(e), %d)\n"):format(n))
    else
      local field = comb.key.index or ("%q"):format(comb.key.field)
      w(ind .. decl .. ("p = HASH(istable and e[%s] or nil, %d)\n"):format(field, n))
    end
    if wpart then w(ind:sub(3) .. "end\n") end
  end

  -- what happens to an event that went through every step; made: a
  -- user function made e (it may hold on to it and change it later)
  local function sink(ind, made)
    if comb and comb.win then
      -- acc[p]: {wid, partial, events} per run of events of one window;
      -- newest[p]: the newest of them, for this call of the loop
      w(ind .. "local r = newest[p]\n")
      w(ind .. "if not r or r[1] ~= wid then\n")
      w(ind .. "  local recs = acc[p]\n")
      w(ind .. "  if not recs then recs = {}; acc[p] = recs end\n")
      w(ind .. "  r = recs[#recs]\n")
      w(ind .. "  if not r or r[1] ~= wid then\n")
      w(ind .. "    local a = acc_fn()\n")
      w(ind .. "    if a == nil then NILACC('accumulator', 'acc_fun') end\n")
      w(ind .. "    r = {wid, a, 0}; recs[#recs + 1] = r\n")
      w(ind .. "  end\n")
      w(ind .. "  newest[p] = r\n")
      w(ind .. "end\n")
      uses.newest = true
      w(ind .. "local a = reduce_reduce(e, r[2])\n")
      w(ind .. "if a == nil then NILACC('reduce') end\n")
      w(ind .. "r[2] = a; r[3] = r[3] + 1\n")
    elseif comb then
      w(ind .. "local a = acc[p]\n")
      w(ind .. "if a == nil then\n")
      w(ind .. "  a = acc_fn()\n")
      w(ind .. "  if a == nil then NILACC('accumulator', 'acc_fun') end\n")
      w(ind .. "end\n")
      w(ind .. "a = reduce_reduce(e, a)\n")
      w(ind .. "if a == nil then NILACC('reduce') end\n")
      w(ind .. "acc[p] = a\n")
    elseif not red then
      if copy_out then
        w(ind .. "PUT(e)\n")   -- out is an outbox: e is copied (encoded) now
        uses.put = true
      else
        w(ind .. "n = n + 1; out[n] = e\n")
        uses.n = true
      end
    elseif red.kind == "reduce" and red.fast then
      -- a combiner's own code (reducer.fast.code, over e and acc)
      w(ind .. "do\n")
      for line in red.fast.code:gmatch("[^\n]+") do w(ind .. "  " .. line .. "\n") end
      w(ind .. "end\n")
    elseif red.kind == "reduce" then
      w(ind .. "acc = reduce_reduce(e, acc)\n")
      w(ind .. "if acc == nil then NILACC('reduce') end\n")
    elseif red.kind == "emit_and_reduce" then
      w(ind .. "local evs\n")
      w(ind .. "evs, acc = reduce_emit_and_reduce(e, acc)\n")
      w(ind .. "if type(evs) ~= 'table' then NILERR('emit_and_reduce', evs) end\n")
      w(ind .. "if acc == nil then NILACC('emit_and_reduce') end\n")
      if copy_out then
        w(ind .. "for j = 1, #evs do PUT(evs[j]) end\n")
        uses.put = true
      else
        w(ind .. "for j = 1, #evs do n = n + 1; out[n] = evs[j] end\n")
        uses.n = true
      end
    else -- group_by, group_by_key
      if red.kind == "group_by" then
        w(ind .. "local key = group_by_key_fun(e)\n")
        w(ind .. (red.value and "local v = group_by_value_fun(e)\n" or "local v = e\n"))
        made = made or red.value ~= nil
      else
        w(ind .. "local key, v = e[1], e[2]\n")
      end
      w(ind .. "if key == nil then NILERR('group_by') end\n")
      if made and copy_groups then w(ind .. "do local c = SNAPC(v); if c == nil then c = SNAP(v) end; v = c end\n") end
      w(ind .. "local g = acc[key]\n")
      w(ind .. "if g == nil then g = {}; acc[key] = g end\n")
      w(ind .. "g[#g + 1] = v\n")
    end
  end

  -- what each event that reaches step k adds to acc[event], where the rest
  -- of the loop from step k is only a count (reducer.fast.runs: its code
  -- adds 1 to an integer count; pair_runs: a sum after a {x, K} map)
  local function counts_by(k)
    if comb or not red or red.kind ~= "reduce" or not red.fast then return nil end
    local st = steps[k]
    if st == nil and red.fast.runs then return "1" end
    if st and st.pair and steps[k + 1] == nil and red.fast.pair_runs then return "PAIRK" end
    return nil
  end

  -- steps k.. and the sink; flat_maps is how many flat_maps came before;
  -- made: an earlier step's user function made e
  local function body(k, ind, flat_maps, made)
    local st = steps[k]
    if not st then return sink(ind, made) end
    local op, f = st.op, st.name
    if op == "part" then
      part(ind)
      if red.count then
        w(ind .. "do local t = type(e); if t ~= 'string' and t ~= 'number' and t ~= 'boolean' then e = COPYEV(e) end end\n")
      end
      if comb.hash then   -- nil drops the event; 2.0 is partition 2
        w(ind .. "if p ~= nil then\n")
        w(ind .. "  local q = type(p) == 'number' and tointeger(p) or nil\n")
        w(ind .. ("  if q == nil or q < 1 or q > %d then BADPART(p) end\n"):format(comb.n))
        w(ind .. "  p = q\n")
        body(k + 1, ind .. "  ", flat_maps, made)
        w(ind .. "end\n")
      else
        body(k + 1, ind, flat_maps, made)
      end
    elseif op == "map" and st.tuple then
      w(ind .. "PUTT(e)\n")   -- e's tuple, encoded into out (or the map's table, put)
      uses.putt = st.name
    elseif op == "map" and st.pair then
      w(ind .. "do\n")
      for line in red.fast.pair_code:gmatch("[^\n]+") do
        w(ind .. "  " .. line:gsub("MAP%(", f .. "(") .. "\n")
      end
      w(ind .. "end\n")
    elseif op == "map" then
      w(ind .. ("e = %s(e)\n"):format(f))
      w(ind .. "if e == nil then NILERR('map') end\n")
      body(k + 1, ind, flat_maps, true)
    elseif op == "map_values" then
      w(ind .. ("local v = %s(e[2])\n"):format(f))
      w(ind .. "if v == nil then NILERR('map_values') end\n")
      w(ind .. "e = {e[1], v}\n")
      body(k + 1, ind, flat_maps, true)
    elseif op == "each" then
      w(ind .. ("%s(e)\n"):format(f))
      body(k + 1, ind, flat_maps, made)
    elseif op == "filter" or op == "reject" then
      w(ind .. ("if %s%s(e) then\n"):format(op == "reject" and "not " or "", f))
      body(k + 1, ind .. "  ", flat_maps, made)
      w(ind .. "end\n")
    elseif op == "flat_map" then
      local v = "xs" .. k
      w(ind .. ("local %s, %s_s, %s_c = %s(e)\n"):format(v, v, v, f))
      if flat_maps < MAX_ITER_FLAT_MAPS then
        w(ind .. ("if type(%s) == 'function' then\n"):format(v))
        -- a count right after the flat_map (a count by 1, or a sum of the
        -- literal K of a {x, K} map): a gmatch iterator's matches are
        -- counted in C (sluice._count_runs), the loop runs the rest
        local by = counts_by(k + 1)
        local more = ind .. "  "
        if by then
          w(ind .. ("  if not COUNT_RUNS(%s, acc, %s) then\n"):format(v, by))
          more = ind .. "    "
        end
        w(more .. ("for x in %s, %s_s, %s_c do\n"):format(v, v, v))
        w(more .. "  local e = x\n")
        body(k + 1, more .. "  ", flat_maps + 1, true)
        w(more .. "end\n")
        if by then w(ind .. "  end\n") end
        w(ind .. ("elseif type(%s) ~= 'table' then NILERR('flat_map', %s)\n"):format(v, v))
        w(ind .. "else\n")
      else
        w(ind .. ("if type(%s) == 'function' then %s = COLLECT(%s, %s_s, %s_c)\n"):format(v, v, v, v, v))
        w(ind .. ("elseif type(%s) ~= 'table' then NILERR('flat_map', %s) end\n"):format(v, v))
        w(ind .. "do\n")
      end
      if steps[k + 1] == nil and not red and copy_out then
        -- the array's events go out as they are: one call encodes them all
        w(ind .. ("  PUTARRAY(out, %s)\n"):format(v))
      else
        w(ind .. ("  for j = 1, #%s do\n"):format(v))
        w(ind .. ("    local e = %s[j]\n"):format(v))
        body(k + 1, ind .. "    ", flat_maps + 1, true)
        w(ind .. "  end\n")
      end
      w(ind .. "end\n")
    elseif op == "uniq" or op == "uniq_by" then
      w(ind .. ("local k = %s\n"):format(op == "uniq" and "e" or f .. "(e)"))
      w(ind .. "if type(k) == 'table' then k = KEY(k, seen) elseif k == nil then NILERR('uniq_by') end\n")
      w(ind .. "if not seen[k] then\n")
      w(ind .. "  seen[k] = true\n")
      body(k + 1, ind .. "  ", flat_maps, made)
      w(ind .. "end\n")
    else
      error("sluice.flow: unknown operation " .. tostring(op), 0)
    end
  end

  body(1, "    ", 0, false)
  w("  end\n  return acc\nend\n")
  src[prologue] = (uses.n and "  local n = #out\n" or "") .. (uses.put and "  local PUT = PUTTER(out)\n" or "")
    .. (uses.newest and "  local newest = {}\n" or "")
    .. (uses.putt and ("  local PUTT = TUPLE_PUTTER(out, %s, table.unpack(TUPLE, 1, TUPLE.n))\n"):format(uses.putt) or "")
  return table.concat(src), F
end

-- A table used as a key (uniq, uniq_by, joins) compares by content: its
-- key is a box (an empty table) that stands for its canonical encoding
-- (sluice._key), one box per encoding in `store` (the stage's own), so it
-- never meets a string key that has the same bytes.
local BOXES = {}
local function table_key(k, store)
  local s = sluice._key(k)
  local boxes = store[BOXES]
  if not boxes then
    boxes = {}
    store[BOXES] = boxes
  end
  local b = boxes[s]
  if not b then
    b = {}
    boxes[s] = b
  end
  return b
end

-- A combining layer read an event time that is not an integer: an
-- integral float in range is taken as its integer (as the next layer's
-- window takes it); any other value is an error (its check, made early).
local function badtime(t)
  local i = math.type(t) == "float" and math.tointeger(t) or nil
  if i and i >= -(1 << 62) and i <= 1 << 62 then return i end
  op_error("window", ("the event time (by) must be an integer of ms, got %s"):format(inspect(t)))
end

-- A combining layer's partition hash returned something that is not a
-- partition of the next layer (the dispatcher's check, made early).
local function badpart(p)
  op_error("partition hash", ("unknown partition %s computed for an event"):format(inspect(p)))
end

-- The generated loops a worker has compiled, by layer and source text: the
-- stages of a layer on one worker compile theirs once (the chunk is a
-- factory: each stage still gets its own closures over its own functions).
local compiled = setmetatable({}, { __mode = "v" })

-- The run function of a generated loop's source (compile), named after
-- the stage so that tracebacks say where it ran.

local function load_run(cfg, src)
  local name = "=[" .. cfg.label:gsub(" stage %d+$", "") .. "]"
  local key = name .. "\0" .. src
  local chunk = compiled[key]
  if not chunk then
    chunk = assert(load(src, name, "t"))
    compiled[key] = chunk
  end
  return chunk(cfg.F, nilerr, table_key, sluice._hash, badpart, snapshot, nilacc, badtime)
end

-- What a stage's loop and triggers append their output to: an outbox
-- (sluice._outbox) when the events leave the stage (compile's copy_out),
-- else an array. A stage callback returns either as its events.
local OUTBOX = sluice._outbox
local function new_out(cfg)
  if cfg.discard or cfg.tag then return {} end
  return OUTBOX()
end

M.snapshot, M.compile, M.load_run, M.new_out, M.table_key = snapshot, compile, load_run, new_out, table_key

return M
