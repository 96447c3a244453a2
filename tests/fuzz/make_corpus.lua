-- Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
-- by hand from the wire format (lua/codec_int.h) and the targets' input
-- layouts (see the top comment of each tests/fuzz/fuzz_<target>.c).
--   lua5.4 tests/fuzz/make_corpus.lua [dir]     (dir: tests/fuzz/corpus)
local dir = arg[1] or "tests/fuzz/corpus"

local function varint(v)
  local t = {}
  repeat
    local b = v & 0x7f
    v = v >> 7
    t[#t + 1] = string.char(v ~= 0 and (b | 0x80) or b)
  until v == 0
  return table.concat(t)
end
local function zz(i) return i < 0 and ~(i << 1) or (i << 1) end

-- encoders for the tags
local E = {}
function E.int(i)
  if i >= 0 and i < 64 then return string.char(0x40 + i) end
  return "\3" .. varint(zz(i))
end
function E.flt(x) return "\4" .. string.pack("<d", x) end
function E.str(s)
  if #s < 128 then return string.char(0x80 + #s) .. s end
  return "\5" .. varint(#s) .. s
end
function E.tab(arr, hash)   -- hash: list of {k, v} encoded pairs
  hash = hash or {}
  local t = {"\6", varint(#arr), varint(#hash)}
  for _, v in ipairs(arr) do t[#t + 1] = v end
  for _, kv in ipairs(hash) do t[#t + 1] = kv[1] .. kv[2] end
  return table.concat(t)
end
function E.ref(k) return "\8" .. varint(k) end
function E.mod(name) return "\9" .. varint(#name) .. name end
function E.field(m, f) return "\10" .. varint(#m) .. m .. varint(#f) .. f end
function E.handle(kind, id, aux) return "\11" .. string.char(kind) .. varint(id) .. varint(aux) end
function E.func(f, ups)
  local code = string.dump(f)
  return "\7" .. varint(#code) .. code .. varint(#ups) .. table.concat(ups)
end

local values = {
  nil_ = "\0", ["false"] = "\1", ["true"] = "\2",
  int0 = E.int(0), int63 = E.int(63), int64 = E.int(64), intneg = E.int(-1),
  intmax = E.int(math.maxinteger), intmin = E.int(math.mininteger),
  flt = E.flt(1.5), fltnan = E.flt(0 / 0), fltinf = E.flt(1 / 0), fltnegzero = E.flt(-0.0),
  strempty = E.str(""), strshort = E.str("hello"), strlong = E.str(string.rep("x", 200)),
  arr = E.tab({E.int(1), E.int(2), E.str("three")}),
  map = E.tab({}, {{E.str("a"), E.int(1)}, {E.str("b"), E.tab({E.flt(2.5)})}}),
  mixed = E.tab({E.int(1)}, {{E.str("k"), E.str("v")}, {E.int(10), E.flt(0.25)}}),
  cycle = E.tab({E.ref(0)}),                                     -- t[1] = t
  shared = E.tab({E.tab({E.int(7)}), E.ref(1)}),                 -- t[1] == t[2]
  nested = E.tab({E.tab({E.tab({E.tab({E.str("deep")})})})}),
  mod = E.mod("string"), modG = E.mod("_G"), field = E.field("string", "format"),
  handle = E.handle(1, 42, 0), handles = E.tab({E.handle(2, 1, 2), E.handle(3, 5, 0), E.ref(1)}),
  func = E.func(load("return function(x) return x + 1 end")(), {}),
  funcenv = E.func(load("return function(x) return print(x) end")(), {"\12"}),
  funcup = E.func(load("local n = 0 return function() n = n + 1 return n end")(), {E.int(5)}),
}

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function seeds(target, list)
  os.execute("mkdir -p " .. dir .. "/" .. target)
  local names = {}
  for name in pairs(list) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do write(dir .. "/" .. target .. "/" .. name, list[name]) end
end

seeds("decode", values)

-- batch: n, reserve flag, per event a length byte (bit 7: sl_bb_add) and
-- its bytes, then (op, arg[, more]) operations; op % 6: 0 slice, 1 drop,
-- 2 gather, 3 release, 4 copy, 5 decode; bits 4-5 the source slot, 6-7
-- the destination slot.
local function batch(evs, ops)
  local t = {string.char(#evs), "\1"}
  for i, e in ipairs(evs) do t[#t + 1] = string.char(#e | (i % 2 == 0 and 0x80 or 0)) .. e end
  for _, o in ipairs(ops) do t[#t + 1] = string.char(table.unpack(o)) end
  return table.concat(t)
end
local small = {values.int0, values.strshort, values.arr, values.flt, values.mod, values["true"]}
seeds("batch", {
  decode_all = batch(small, {{5, 0}}),
  slice_drop = batch(small, {{0 | 0x40, 1, 3}, {5 | 0x10, 0}, {1 | 0x10, 1}, {5 | 0x10, 0}}),
  gather = batch(small, {{2 | 0x80, 4, 5, 0, 0, 2}, {5 | 0x20, 0}, {3, 0}, {5 | 0x20, 0}}),
  copy_release = batch(small, {{4 | 0xc0, 0}, {3, 0}, {5 | 0x30, 0}, {1 | 0x30, 9}}),
  bad_event = batch({values.int0, "\6\5", values.strshort}, {{5, 0}}),
  empty_events = batch({"", "", ""}, {{5, 0}, {0 | 0x40, 1, 1}, {5 | 0x10, 0}}),
  none = batch({}, {{5, 0}, {0, 0, 0}}),
})

-- window: 10 spec bytes (kind, count, size, every, lateness, trigger_every,
-- periodically, producers, merge, now), then operations; op % 6: 0/5
-- batch (producer, n, per event a signed time step and a key, a now step;
-- bit 7 of op: steps x 8, bit 6: keyed), 1 producer_done (p, now step), 2
-- timer (bit 7: at next_due, else a now step), 3 message (name), 4
-- fire_open (trigger, name).
local function window(spec, ops)
  local t = {string.char(table.unpack(spec))}
  for _, o in ipairs(ops) do t[#t + 1] = string.char(table.unpack(o)) end
  return table.concat(t)
end
local flow = {
  {0, 0, 3, 5, 1, 3, 2, 0, 5, 4, 1, 3, 2},   -- batch p0: 4 events
  {5, 1, 3, 4, 0, 4, 1, 4, 2, 250, 0, 9},    -- batch p1: 3 events
  {2, 10}, {3, 7}, {4, 4, 8}, {2 | 0x80},
  {0, 0, 2, 20, 1, 1, 2, 3},
  {1, 0, 1}, {2, 50}, {1, 1, 1},
}
seeds("window", {
  global = window({0, 0, 0, 0, 0x80, 0, 1, 0, 0, 0}, flow),
  count = window({1, 2, 0, 0, 0x80, 2, 1, 0, 0, 0}, flow),
  fixed = window({2, 0, 9, 0, 0x80, 0, 1, 1, 0, 0}, flow),
  fixed_lateness = window({2, 0, 9, 0, 20, 1, 6, 1, 0, 0}, flow),
  periodic = window({3, 0, 9, 0, 0x80, 0, 1, 0, 0, 5}, flow),
  session = window({4, 0, 4, 0, 0x80, 2, 1, 1, 0, 0}, flow),
  session_keyed_merge = window({4, 0, 4, 0, 10, 0, 1, 1, 1, 0},
    {{0 | 0x40, 0, 5, 1, 1, 8, 1, 4, 2, 250, 1, 1, 1, 3}, {5 | 0x40, 1, 3, 4, 0, 4, 1, 4, 2, 3},
     {2 | 0x80}, {3, 1}, {1, 0, 1}, {2, 30}, {1, 1, 1}}),
  sliding = window({5, 0, 12, 3, 0x80, 1, 1, 1, 0, 0}, flow),
  sliding_lateness = window({5, 0, 12, 4, 7, 0, 9, 2, 0, 0}, flow),
})
