/* test_codec: values encoded in one Lua state and decoded in another
 * (lua/codec.c). Each test makes two fresh states A and B, builds a value
 * in A with Lua code, sends it to B (where it becomes the global v) and
 * checks it there with Lua code. */
#include "codec_check.h"


/* {====================================================================
** Round trips
** ===================================================================== */

static void test_scalars(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "return nil"), 0);
  CHECK_LUA(B, "v == nil");
  CHECK_INT(send(A, B, "return true"), 0);
  CHECK_LUA(B, "v == true");
  CHECK_INT(send(A, B, "return false"), 0);
  CHECK_LUA(B, "v == false");
  const char *ints[] = {"0", "1", "63", "64", "-1", "-64", "127", "128", "300", "-300",
                        "math.maxinteger", "math.mininteger", "1 << 62", "-(1 << 40)"};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
    char chunk[64], cond[128];
    snprintf(chunk, sizeof chunk, "return %s", ints[i]);
    snprintf(cond, sizeof cond, "math.type(v) == 'integer' and v == %s", ints[i]);
    CHECK_INT(send(A, B, chunk), 0);
    CHECK_LUA(B, cond);
  }
  CHECK_INT(send(A, B, "return 1.0"), 0);
  CHECK_LUA(B, "math.type(v) == 'float' and v == 1");
  CHECK_INT(send(A, B, "return 0.1"), 0);
  CHECK_LUA(B, "v == 0.1");
  CHECK_INT(send(A, B, "return -0.0"), 0);
  CHECK_LUA(B, "math.type(v) == 'float' and v == 0 and 1/v == -math.huge");
  CHECK_INT(send(A, B, "return 0/0"), 0);
  CHECK_LUA(B, "math.type(v) == 'float' and v ~= v");
  CHECK_INT(send(A, B, "return math.huge"), 0);
  CHECK_LUA(B, "v == math.huge");
  CHECK_INT(send(A, B, "return -math.huge"), 0);
  CHECK_LUA(B, "v == -math.huge");
  CHECK_INT(send(A, B, "return 2^63"), 0);
  CHECK_LUA(B, "math.type(v) == 'float' and v == 2^63");
  close2(A, B);
}

static void test_strings(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "return ''"), 0);
  CHECK_LUA(B, "v == ''");
  CHECK_INT(send(A, B, "return 'a\\0b\\255\\n'"), 0);
  CHECK_LUA(B, "v == 'a\\0b\\255\\n' and #v == 5");
  const int lens[] = {1, 127, 128, 129, 16383, 16384, 100000};
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
    char chunk[64], cond[128];
    snprintf(chunk, sizeof chunk, "return string.rep('\\0x', %d)", lens[i]);
    snprintf(cond, sizeof cond, "v == string.rep('\\0x', %d)", lens[i]);
    CHECK_INT(send(A, B, chunk), 0);
    CHECK_LUA(B, cond);
  }
  close2(A, B);
}

static void test_tables(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "return {}"), 0);
  CHECK_LUA(B, "type(v) == 'table' and next(v) == nil");
  CHECK_INT(send(A, B, "return {1, 'two', 3.0, {4}, a = 1, ['b c'] = {d = true},"
                       " [1.5] = 'f', [true] = false, [-7] = 'neg', [0] = 0}"), 0);
  CHECK_LUA(B, "v[1] == 1 and v[2] == 'two' and math.type(v[3]) == 'float' and v[4][1] == 4");
  CHECK_LUA(B, "v.a == 1 and v['b c'].d == true and v[1.5] == 'f' and v[true] == false");
  CHECK_LUA(B, "v[-7] == 'neg' and v[0] == 0 and #v == 4");
  CHECK_INT(send(A, B, "return {1, nil, 3}"), 0);
  CHECK_LUA(B, "v[1] == 1 and v[2] == nil and v[3] == 3");
  /* a big array and a big hash, past the one-byte counts */
  CHECK_INT(send(A, B, "local t = {} for i = 1, 1000 do t[i] = i * 2 t['k' .. i] = i end return t"), 0);
  CHECK_LUA(B, "#v == 1000 and v[1000] == 2000 and v.k1000 == 1000");
  CHECK_LUA(B, "(function() local n = 0 for _ in pairs(v) do n = n + 1 end return n end)() == 2000");
  /* integer keys stored in the hash part, sparse arrays */
  CHECK_INT(send(A, B, "local t = {} t[3] = 'c' t[1] = 'a' t[2] = 'b' t[100] = 'z' return t"), 0);
  CHECK_LUA(B, "v[1] == 'a' and v[2] == 'b' and v[3] == 'c' and v[100] == 'z'");
  /* a table as a key */
  CHECK_INT(send(A, B, "local k = {name = 'k'} return {[k] = 'val', k = k}"), 0);
  CHECK_LUA(B, "v[v.k] == 'val'");
  close2(A, B);
}

static void test_shared_and_cycles(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "local s = {1} return {a = s, b = s, c = {s}}"), 0);
  CHECK_LUA(B, "v.a == v.b and v.c[1] == v.a and v.a[1] == 1");
  CHECK_INT(send(A, B, "local t = {} t.self = t t[1] = t return t"), 0);
  CHECK_LUA(B, "v.self == v and v[1] == v");
  CHECK_INT(send(A, B, "local a, b = {}, {} a.b = b b.a = a a.name = 'a' return {a, b}"), 0);
  CHECK_LUA(B, "v[1].b == v[2] and v[2].a == v[1] and v[1].name == 'a'");
  CHECK_INT(send(A, B, "local t = {} t[t] = t return t"), 0);
  CHECK_LUA(B, "v[v] == v");
  close2(A, B);
}

static void test_metatables_dropped(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "return setmetatable({a = 1}, {__index = function() return 5 end,"
                       " __len = function() return 99 end,"
                       " __pairs = function() error('pairs') end})"), 0);
  CHECK_LUA(B, "getmetatable(v) == nil and v.a == 1 and v.b == nil and #v == 0");
  CHECK_INT(send(A, B, "return setmetatable({}, {__len = function() return 3 end,"
                       " __index = function(_, k) return k end})"), 0);
  CHECK_LUA(B, "next(v) == nil");
  close2(A, B);
}

static void test_functions(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "return function(a, b) return a + b end"), 0);
  CHECK_LUA(B, "v(2, 3) == 5");
  CHECK_INT(send(A, B, "local n, s, t = 10, 'str', {k = 1}"
                       " return function(x) return n + x, s, t.k end"), 0);
  CHECK_LUA(B, "select('#', v(1)) == 3 and v(1) == 11 and select(2, v(1)) == 'str'");
  /* _ENV becomes B's globals: the function reads B's g */
  run(A, "g = 'in A'");
  run(B, "g = 'in B'");
  CHECK_INT(send(A, B, "return function() return g end"), 0);
  CHECK_LUA(B, "v() == 'in B'");
  CHECK_INT(send(A, B, "return function(x) newglobal = x end"), 0);
  run(B, "v(42)");
  CHECK_LUA(B, "newglobal == 42");
  /* a bigger function: nested functions, every kind of constant, long
   * strings, varargs, locals */
  CHECK_INT(send(A, B, "local up = {n = 3}"
                       " return function(...)"
                       "   local long = string.rep('long constant ', 20)"
                       "   local k = {1, 2.5, -7, 2^60, 1 << 62, true, false, 0, 'short', long}"
                       "   local function inner(x) return function(y) return x + y + up.n end end"
                       "   local sum = 0 for i = 1, select('#', ...) do sum = sum + select(i, ...) end"
                       "   return inner(sum)(1), #k, k[10] == long, k[4] == 2^60"
                       " end"), 0);
  CHECK_LUA(B, "select('#', v(1, 2, 3)) == 4 and v(1, 2, 3) == 10 and select(2, v()) == 10");
  CHECK_LUA(B, "select(3, v()) == true and select(4, v()) == true");
  /* a function made by load() from source, and one from stripped bytecode */
  CHECK_INT(send(A, B, "return load('local a, b = ... return a * b')"), 0);
  CHECK_LUA(B, "v(6, 7) == 42");
  CHECK_INT(send(A, B, "local n = 5 local f = function(x) return x + n end"
                       " local g = load(string.dump(f, true)) debug.setupvalue(g, 1, 5) return g"), 0);
  CHECK_LUA(B, "v(1) == 6");
  /* debug info is kept: errors carry a line */
  CHECK_INT(send(A, B, "return function() error('boom') end"), 0);
  CHECK_LUA(B, "select(2, pcall(v)):match(':%d+: boom$') ~= nil");
  close2(A, B);
}

/* A function sent again (the encoder keeps its bytecode): the same bytes
 * each time, its upvalues read afresh at each send, and every decoded
 * copy is a separate function with its own upvalues. */
static void test_function_sent_again(void) {
  lua_State *A = newstate(), *B = newstate();
  run(A, "local n = 1 f = function(x) n = n + x return n end"
         " setn = function(v) n = v end");
  size_t l1, l2;
  char *p1 = encode_chunk(A, "return f", &l1);
  char *p2 = encode_chunk(A, "return f", &l2);
  CHECK(p1 && p2 && l1 == l2 && memcmp(p1, p2, l1) == 0);
  free(p1);
  free(p2);
  CHECK_INT(send(A, B, "return f"), 0);
  run(B, "first = v");
  run(A, "setn(100)");
  CHECK_INT(send(A, B, "return f"), 0);
  CHECK_LUA(B, "first ~= v and first(1) == 2 and first(1) == 3 and v(1) == 101");
  /* a new closure of the same code, and one collected in between */
  run(A, "local function mk(k) return function() return k end end"
         " g1 = mk(1) g2 = mk(2)");
  CHECK_INT(send(A, B, "return {g1, g2}"), 0);
  CHECK_LUA(B, "v[1]() == 1 and v[2]() == 2");
  run(A, "g1 = nil collectgarbage() collectgarbage()");
  CHECK_INT(send(A, B, "return g2"), 0);
  CHECK_LUA(B, "v() == 2");
  close2(A, B);
}

static void test_recursive_functions(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "local function fact(n) if n <= 1 then return 1 end"
                       " return n * fact(n - 1) end return fact"), 0);
  CHECK_LUA(B, "v(5) == 120");
  CHECK_INT(send(A, B, "local even, odd"
                       " function even(n) if n == 0 then return true end return odd(n - 1) end"
                       " function odd(n) if n == 0 then return false end return even(n - 1) end"
                       " return {even = even, odd = odd}"), 0);
  CHECK_LUA(B, "v.even(10) and v.odd(7) and not v.even(3)");
  /* shared function and function inside tables that hold it */
  CHECK_INT(send(A, B, "local f = function() return 1 end local t = {f = f}"
                       " t.g = function() return t.f() + 1 end return {f, f, t}"), 0);
  CHECK_LUA(B, "v[1] == v[2] and v[3].f == v[1] and v[3].g() == 2");
  close2(A, B);
}

static void test_shared_upvalues(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "local n = 0"
                       " local function inc() n = n + 1 return n end"
                       " local function get() return n end"
                       " return {inc = inc, get = get}"), 0);
  CHECK_LUA(B, "v.inc() == 1 and v.inc() == 2 and v.get() == 2");
  /* a table upvalue shared with the value itself */
  CHECK_INT(send(A, B, "local t = {1} return {t = t, f = function() return t end}"), 0);
  CHECK_LUA(B, "v.f() == v.t");
  close2(A, B);
}

static void test_by_name(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK_INT(send(A, B, "return {string.format, math, _G, print, string, table.concat,"
                       " io.write, require}"), 0);
  CHECK_LUA(B, "v[1] == string.format and v[2] == math and v[3] == _G and v[4] == print");
  CHECK_LUA(B, "v[5] == string and v[6] == table.concat and v[7] == io.write and v[8] == require");
  CHECK_INT(send(A, B, "return _G"), 0);
  CHECK_LUA(B, "v == _G");
  /* a function using a module upvalue gets B's module */
  CHECK_INT(send(A, B, "local fmt = string.format return function(x) return fmt('%03d', x) end"), 0);
  CHECK_LUA(B, "v(7) == '007'");
  /* a module required after the index was built crosses by name, and
   * the receiver requires it */
  run(A, "package.preload.mymod = function() return {x = 1} end");
  run(B, "package.preload.mymod = function() return {x = 1, inB = true} end");
  CHECK_INT(send(A, B, "return require('mymod')"), 0);
  CHECK_LUA(B, "v == package.loaded.mymod and v.inB");
  /* a C function added to a module after the index was built */
  run(A, "string.cf = mkcfn()");
  run(B, "string.cf = mkcfn()");
  CHECK_INT(send(A, B, "return string.cf"), 0);
  CHECK_LUA(B, "v == string.cf");
  close2(A, B);
}

static void test_by_name_unresolved(void) {
  lua_State *A = newstate(), *B = newstate();
  run(A, "package.preload.onlyA = function() return {} end require('onlyA')");
  CHECK_INT(send(A, B, "return {m = require('onlyA')}"), SL_ENOENT);
  CHECK(strncmp(err, "cannot resolve module 'onlyA': module 'onlyA' not found", 55) == 0);
  run(A, "string.cf = mkcfn()");
  CHECK_INT(send(A, B, "return string.cf"), SL_ENOENT);
  CHECK_STR(err, "cannot resolve 'string.cf' (no such function)");
  close2(A, B);
}

static void test_handles(void) {
  lua_State *A = newstate(), *B = newstate();
  sl_buf buf = SL_BUF_INIT;
  sl_handle *h = sl_handle_push(A, SL_H_STAGE, 42, 7);   /* stack: h */
  CHECK(h && sl_handle_test(A, -1, SL_H_STAGE) == h && sl_handle_test(A, -1, 0) == h);
  CHECK(sl_handle_test(A, -1, SL_H_SUB) == NULL);
  lua_createtable(A, 2, 0);                               /* stack: h t */
  lua_pushvalue(A, -2);
  lua_rawseti(A, -2, 1);
  lua_pushvalue(A, -2);
  lua_rawseti(A, -2, 2);
  sl_handle_push(A, SL_H_TIMER, UINT64_MAX, 0);
  lua_rawseti(A, -2, 3);
  CHECK_INT(sl_encode(A, -1, &buf, "x", err, sizeof err), 0);
  lua_pop(A, 2);
  CHECK_INT(sl_decode(B, buf.data, buf.len, err, sizeof err), 0);  /* stack: t */
  lua_rawgeti(B, -1, 1);
  sl_handle *g = sl_handle_test(B, -1, SL_H_STAGE);
  CHECK(g && g->kind == SL_H_STAGE && g->id == 42 && g->aux == 7);
  lua_pop(B, 1);
  lua_rawgeti(B, -1, 3);
  g = sl_handle_test(B, -1, 0);
  CHECK(g && g->kind == SL_H_TIMER && g->id == UINT64_MAX && g->aux == 0);
  lua_pop(B, 1);
  lua_setglobal(B, "v");
  CHECK_LUA(B, "rawequal(v[1], v[2]) and type(v[1]) == 'userdata'");
  /* not handles */
  CHECK(sl_handle_push(B, 0, 1, 1) == NULL && lua_isnil(B, -1));
  lua_pop(B, 1);
  lua_getglobal(B, "io");
  lua_getfield(B, -1, "stdout");
  CHECK(sl_handle_test(B, -1, 0) == NULL);
  lua_pop(B, 2);
  lua_newuserdatauv(B, sizeof(sl_handle), 0);
  CHECK(sl_handle_test(B, -1, 0) == NULL);
  lua_pop(B, 1);
  lua_pushinteger(B, 1);
  CHECK(sl_handle_test(B, -1, 0) == NULL);
  lua_pop(B, 1);
  CHECK_INT(lua_gettop(B), 0);
  sl_buf_free(&buf);
  close2(A, B);
}

/* }==================================================================== */


/* {====================================================================
** Rejections
** ===================================================================== */

static void test_rejections(void) {
  static const struct { const char *chunk, *root, *msg; } cases[] = {
    {"return {conn = io.stdout}", "events[3]",
     "cannot send a userdata value (at events[3].conn)"},
    {"return {co = coroutine.create(print)}", "x", "cannot send a thread value (at x.co)"},
    {"return mkcfn()", "x", "cannot send a C function value (at x)"},
    {"return {f = {mkcfn()}}", "x", "cannot send a C function value (at x.f[1])"},
    {"return lightud()", "x", "cannot send a light userdata value (at x)"},
    {"return io.stdout", "x", "cannot send a userdata value (at x)"},
    {"local conn = io.stdout return function() return conn end", "fn",
     "cannot send a userdata value (at fn.conn)"},
    {"local t = {1, {c = coroutine.running()}} return function() return t end", "fn",
     "cannot send a thread value (at fn.t[2].c)"},
    {"return {1, 2, io.stdout}", "x", "cannot send a userdata value (at x[3])"},
    {"return {a = {b = {1, {c = io.stdout}}}}", "x", "cannot send a userdata value (at x.a.b[2].c)"},
    {"return {['a b'] = io.stdout}", "x", "cannot send a userdata value (at x[\"a b\"])"},
    {"return {['end'] = io.stdout}", "x", "cannot send a userdata value (at x[\"end\"])"},
    {"return {['q\"\\n'] = io.stdout}", "x", "cannot send a userdata value (at x[\"q\\\"\\10\"])"},
    {"return {[1.5] = io.stdout}", "x", "cannot send a userdata value (at x[1.5])"},
    {"return {[-3] = io.stdout}", "x", "cannot send a userdata value (at x[-3])"},
    {"return {[true] = io.stdout}", "x", "cannot send a userdata value (at x[true])"},
    {"return {[{}] = io.stdout}", "x", "cannot send a userdata value (at x[<table>])"},
    {"return {[coroutine.create(print)] = 1}", "x",
     "cannot send a thread value (at x[<thread key>])"},
    {"return {k = {[{conn = io.stdout}] = 1}}", "x",
     "cannot send a userdata value (at x.k[<table key>].conn)"},
    {"return {[io.stdout] = 1}", "x", "cannot send a userdata value (at x[<userdata key>])"},
    {"return {[mkcfn()] = 1}", "x", "cannot send a C function value (at x[<function key>])"},
  };
  lua_State *A = newstate();
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sl_buf buf = SL_BUF_INIT;
    sl_buf_append(&buf, "abc", 3);
    err[0] = '\0';
    if (!eval(A, cases[i].chunk)) {
      CHECK(!"chunk failed");
      continue;
    }
    int top = lua_gettop(A);
    CHECK_INT(sl_encode(A, -1, &buf, cases[i].root, err, sizeof err), SL_EINVAL);
    CHECK_STR(err, cases[i].msg);
    CHECK_INT(lua_gettop(A), top);
    CHECK(buf.len == 3 && memcmp(buf.data, "abc", 3) == 0);
    lua_pop(A, 1);
    sl_buf_free(&buf);
  }
  lua_close(A);
}

static void test_long_path(void) {
  lua_State *A = newstate();
  sl_buf buf = SL_BUF_INIT;
  CHECK(eval(A, "local t = {} local c = t for i = 1, 150 do c.field = {} c = c.field end"
                " c.x = io.stdout return t"));
  CHECK_INT(sl_encode(A, -1, &buf, "x", err, sizeof err), SL_EINVAL);
  CHECK(strncmp(err, "cannot send a userdata value (at x...", 37) == 0);
  CHECK(strlen(err) > 200 && strcmp(err + strlen(err) - 9, ".field.x)") == 0);
  lua_close(A);
  sl_buf_free(&buf);
}

static void test_depth_limit(void) {
  lua_State *A = newstate(), *B = newstate();
  char chunk[256];
  snprintf(chunk, sizeof chunk, "local t = {} local c = t for i = 2, %d do c[1] = {} c = c[1] end"
           " return t", SL_CODEC_MAX_DEPTH);
  CHECK_INT(send(A, B, chunk), 0);
  CHECK_LUA(B, "(function() local n, c = 0, v while c do n = n + 1 c = c[1] end return n end)() == 200");
  snprintf(chunk, sizeof chunk, "local t = {} local c = t for i = 2, %d do c[1] = {} c = c[1] end"
           " return t", SL_CODEC_MAX_DEPTH + 1);
  CHECK_INT(send(A, B, chunk), SL_EINVAL);
  CHECK(strncmp(err, "value nested deeper than 200 levels (at x", 41) == 0);
  CHECK(strcmp(err + strlen(err) - 4, "[1])") == 0);
  /* a cycle is not deep */
  CHECK_INT(send(A, B, "local t = {} t[1] = t return t"), 0);
  /* functions nest too: each function holds the previous one */
  CHECK_INT(send(A, B, "local f = function() return 0 end"
                       " for i = 1, 199 do local g = f f = function() return g() + 1 end end return f"), 0);
  CHECK_LUA(B, "v() == 199");
  CHECK_INT(send(A, B, "local f = function() return 0 end"
                       " for i = 1, 200 do local g = f f = function() return g() + 1 end end return f"), SL_EINVAL);
  CHECK(strncmp(err, "value nested deeper than 200 levels (at x...", 44) == 0);
  CHECK(strcmp(err + strlen(err) - 5, ".g.g)") == 0);
  /* decode enforces the same limit on hand-made bytes */
  for (int depth = SL_CODEC_MAX_DEPTH; depth <= SL_CODEC_MAX_DEPTH + 1; depth++) {
    char bytes[3 * (SL_CODEC_MAX_DEPTH + 1) + 1];
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
      bytes[n++] = 0x06;
      bytes[n++] = 1;
      bytes[n++] = 0;
    }
    bytes[n++] = 0x00;
    int rc = sl_decode(B, bytes, n, err, sizeof err);
    if (depth <= SL_CODEC_MAX_DEPTH) {
      CHECK_INT(rc, 0);
      lua_pop(B, 1);
    } else {
      CHECK_INT(rc, SL_ECORRUPT);
      CHECK_STR(err, "value nested deeper than 200 levels");
    }
    CHECK_INT(lua_gettop(B), 0);
  }
  close2(A, B);
}

/* }==================================================================== */


/* {====================================================================
** Format and batches
** ===================================================================== */

static void test_format(void) {
  lua_State *A = newstate();
  CHECK(encodes_as(A, "return nil", "\x00", 1));
  CHECK(encodes_as(A, "return 5", "\x45", 1));
  CHECK(encodes_as(A, "return 64", "\x03\x80\x01", 3));
  CHECK(encodes_as(A, "return -1", "\x03\x01", 2));
  CHECK(encodes_as(A, "return 1.5", "\x04\x00\x00\x00\x00\x00\x00\xf8\x3f", 9));
  CHECK(encodes_as(A, "return 'ab'", "\x82" "ab", 3));
  CHECK(encodes_as(A, "return {'a', 1}", "\x06\x02\x00\x81" "a" "\x41", 6));
  CHECK(encodes_as(A, "return {k = true}", "\x06\x00\x01\x81" "k" "\x02", 6));
  CHECK(encodes_as(A, "local t = {} t[1] = t return t", "\x06\x01\x00\x08\x00", 5));
  CHECK(encodes_as(A, "return string", "\x09\x06string", 8));
  CHECK(encodes_as(A, "return string.format", "\x0a\x06string\x06" "format", 15));
  CHECK(encodes_as(A, "return print", "\x0a\x02_G\x05print", 10));
  lua_close(A);
}

/* sl_encode_scalar writes exactly the bytes sl_encode appends, and
 * declines tables, functions and what does not fit. */
static void test_encode_scalar(void) {
  lua_State *L = newstate();
  const char *chunks[] = {"return nil", "return true", "return false", "return 0", "return 63",
                          "return 64", "return -1", "return math.mininteger", "return 2.5",
                          "return 0/0", "return ''", "return 'word'", "return string.rep('x', 127)",
                          "return string.rep('x', 128)", "return string.rep('x', 245)"};
  for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
    size_t want_len;
    char *want = encode_chunk(L, chunks[i], &want_len);
    char dst[256];
    CHECK(eval(L, chunks[i]));
    size_t got = sl_encode_scalar(L, -1, dst, sizeof dst);
    lua_pop(L, 1);
    if (got != want_len || memcmp(dst, want, want_len) != 0) {
      fprintf(stderr, "  %s: %zu bytes, want %zu\n", chunks[i], got, want_len);
      CHECK(!"sl_encode_scalar differs from sl_encode");
    }
    free(want);
  }
  char dst[256];
  const char *declined[] = {"return {}", "return print", "return string.rep('x', 246)"};
  for (size_t i = 0; i < sizeof declined / sizeof *declined; i++) {
    CHECK(eval(L, declined[i]));
    CHECK_INT(sl_encode_scalar(L, -1, dst, sizeof dst), 0);
    lua_pop(L, 1);
  }
  CHECK(eval(L, "return 1000"));
  CHECK_INT(sl_encode_scalar(L, -1, dst, 10), 0);   /* needs room for 1 + 10 */
  CHECK_INT(sl_encode_scalar(L, -1, dst, 11), 3);
  lua_pop(L, 1);
  CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_batch(void) {
  lua_State *A = newstate(), *B = newstate();
  sl_batch b = SL_BATCH_EMPTY;
  CHECK(eval(A, "local t = {1} local n = 0 return {1, 'two', {3, k = t}, t, t,"
                " function() n = n + 1 return n end}"));
  CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), 0);
  CHECK_INT(b.count, 6);
  lua_pop(A, 1);
  CHECK_INT(sl_decode_batch(B, &b, err, sizeof err), 0);
  lua_setglobal(B, "v");
  CHECK_LUA(B, "#v == 6 and v[1] == 1 and v[2] == 'two' and v[3][1] == 3 and v[3].k[1] == 1");
  /* each event stands alone: sharing does not cross events */
  CHECK_LUA(B, "v[4] ~= v[5] and v[4][1] == 1 and v[6]() == 1");
  /* a slice decodes on its own */
  sl_batch s = sl_batch_slice(&b, 3, 3);
  CHECK_INT(sl_decode_batch(B, &s, err, sizeof err), 0);
  lua_setglobal(B, "v");
  CHECK_LUA(B, "#v == 3 and v[1][1] == 1 and v[3]() == 1");
  sl_batch_release(&s);
  sl_batch_release(&b);
  /* empty */
  CHECK(eval(A, "return {}"));
  CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), 0);
  CHECK(b.store == NULL && b.count == 0);
  lua_pop(A, 1);
  CHECK_INT(sl_decode_batch(B, &b, err, sizeof err), 0);
  CHECK(lua_istable(B, -1) && lua_rawlen(B, -1) == 0);
  lua_pop(B, 1);
  /* failures leave no batch and a balanced stack */
  CHECK(eval(A, "return {1, nil, 3}"));
  CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), SL_EINVAL);
  CHECK_STR(err, "events[2] is nil");
  CHECK(b.store == NULL && b.count == 0);
  CHECK_INT(lua_gettop(A), 1);
  lua_pop(A, 1);
  CHECK(eval(A, "return {1, 2, {conn = io.stdout}}"));
  CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), SL_EINVAL);
  CHECK_STR(err, "cannot send a userdata value (at events[3].conn)");
  CHECK(b.store == NULL && b.count == 0);
  CHECK_INT(lua_gettop(A), 1);
  lua_pop(A, 1);
  CHECK(eval(A, "return 'nope'"));
  CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), SL_EINVAL);
  CHECK_STR(err, "events must be an array, got string");
  lua_pop(A, 1);
  CHECK_INT(lua_gettop(B), 0);
  close2(A, B);
}

/* }==================================================================== */

int main(void) {
  RUN(test_scalars);
  RUN(test_strings);
  RUN(test_tables);
  RUN(test_shared_and_cycles);
  RUN(test_metatables_dropped);
  RUN(test_functions);
  RUN(test_function_sent_again);
  RUN(test_recursive_functions);
  RUN(test_shared_upvalues);
  RUN(test_by_name);
  RUN(test_by_name_unresolved);
  RUN(test_handles);
  RUN(test_rejections);
  RUN(test_long_path);
  RUN(test_depth_limit);
  RUN(test_format);
  RUN(test_encode_scalar);
  RUN(test_batch);
  return CHECK_SUMMARY();
}
