/* test_key_canon: canonical encodings (sl_key_canon, codec_key.c). Equal
 * tables built in other orders, with holes, after deletions, in states
 * with other string hash seeds, or holding 1.0 where the other holds 1,
 * have the same canonical bytes and the same partition hash
 * (sl_key_hash); tables that differ have different canonical bytes; a
 * table holding the same table twice, or a function, has none; the
 * canonical bytes of a table without shared references decode to an
 * equal table; values already canonical (scalars, arrays of scalars)
 * hash as their own bytes. The helpers are codec_check.h's. */
#include "codec_check.h"
#include "hash.h"

/* The canonical bytes of the value of chunk in L (as a new buffer; its
 * own bytes when they are canonical already). */
static sl_buf canon_of(lua_State *L, const char *chunk, int *rc) {
  size_t n;
  sl_buf c = SL_BUF_INIT;
  char *bytes = encode_chunk(L, chunk, &n);
  CHECK(bytes != NULL);
  *rc = bytes ? sl_key_canon(bytes, n, &c) : -1;
  if (*rc == 0) {
    sl_buf_append(&c, bytes, n);
    CHECK(sl_key_hash(bytes, n) == sl_hash_bytes(bytes, n) || bytes[0] == 0x04);
  } else if (*rc == 1) {
    CHECK(sl_key_hash(bytes, n) == sl_hash_bytes(c.data, c.len));
  }
  free(bytes);
  return c;
}

static int same_bytes(const sl_buf *a, const sl_buf *b) {
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static void check_same(lua_State *A, const char *a, lua_State *B, const char *b) {
  int ra, rb;
  sl_buf x = canon_of(A, a, &ra), y = canon_of(B, b, &rb);
  CHECK(ra >= 0 && rb >= 0);
  if (!same_bytes(&x, &y)) fprintf(stderr, "  not the same:\n    %s\n    %s\n", a, b);
  CHECK(same_bytes(&x, &y));
  sl_buf_free(&x);
  sl_buf_free(&y);
}

static void test_equal_tables(void) {
  lua_State *A = newstate(), *B = newstate();
  static const char *const same[][2] = {
    {"local t = {} for i = 1, 40 do t['k' .. i] = i end return t",
     "local t = {} for i = 40, 1, -1 do t['k' .. i] = i end return t"},
    {"local t = {} for i = 1, 40 do t['k' .. i] = i end return t",
     "local t = {} for i = 1, 300 do t['x' .. i] = i end for i = 1, 300 do t['x' .. i] = nil end"
     " for i = 1, 40 do t['k' .. i] = i end return t"},
    {"return {1, 2, 3}", "local t = {} t[3] = 3 t[2] = 2 t[1] = 1 return t"},
    {"return {1, nil, 3}", "local t = {} t[1] = 1 t[3] = 3 return t"},
    {"return {1, nil, 3, x = 'y'}", "local t = {x = 'y'} t[3] = 3 t[1] = 1 return t"},
    {"return {a = {x = 1, y = 2}, b = {1, 2}, [3.5] = true}",
     "local t = {} t[3.5] = true t.b = {} t.b[2] = 2 t.b[1] = 1 t.a = {y = 2} t.a.x = 1 return t"},
    {"return {x = 1}", "return {x = 1.0}"},
    {"return {3}", "return {3.0}"},
    {"return {0, -0.0}", "return {0.0, 0}"},
    {"return {[10] = 'a', [20] = 'b', [30] = 'c'}", "return {[30] = 'c', [10] = 'a', [20] = 'b'}"},
    {"return {}", "local t = {1, 2, x = 3} t[1] = nil t[2] = nil t.x = nil return t"},
  };
  for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
    check_same(A, same[i][0], A, same[i][1]);
    check_same(A, same[i][0], B, same[i][1]);   /* another state: other string hash seeds */
    check_same(B, same[i][0], A, same[i][0]);
  }
  lua_close(A);
  lua_close(B);
}

static void test_different_tables(void) {
  lua_State *A = newstate();
  static const char *const chunks[] = {
    "return {}", "return {false}", "return {1, 2}", "return {2, 1}", "return {a = 1}", "return {a = 2}",
    "return {b = 1}", "return {1}", "return {[2] = 1}", "return {x = {}}", "return {x = {1}}",
    "return {1.5}", "return {'1'}", "return {a = 1, b = 2}", "return {a = 1, b = 2, c = 3}",
    "return {{a = 1}, {b = 2}}", "return {{b = 2}, {a = 1}}", "return {1, nil, 3}", "return {1, 3}",
    "return {[1] = 1, [3] = 3, [4] = 4}", "return {1, nil, 3, 4, 5}",
  };
  size_t n = sizeof chunks / sizeof *chunks;
  sl_buf c[sizeof chunks / sizeof *chunks];
  for (size_t i = 0; i < n; i++) {
    int rc;
    c[i] = canon_of(A, chunks[i], &rc);
    CHECK(rc >= 0);
  }
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++) {
      if (same_bytes(&c[i], &c[j])) fprintf(stderr, "  the same: %s and %s\n", chunks[i], chunks[j]);
      CHECK(!same_bytes(&c[i], &c[j]));
    }
  for (size_t i = 0; i < n; i++) sl_buf_free(&c[i]);
  lua_close(A);
}

/* What is canonical already keeps its bytes (and its hash); a table with
 * pairs, a nested table or an integral float is rewritten; bytes that do
 * not parse are refused. */
static void test_as_is(void) {
  lua_State *A = newstate();
  static const char *const as_is[] = {
    "return 'x'", "return 7", "return 1.5", "return true", "return {'w', 1}", "return {1, 2.5, 'x', false}",
    "return {}", "return print",
  };
  for (size_t i = 0; i < sizeof as_is / sizeof *as_is; i++) {
    int rc;
    sl_buf c = canon_of(A, as_is[i], &rc);
    CHECK_INT(rc, 0);
    sl_buf_free(&c);
  }
  static const char *const rewritten[] = {
    "return {x = 1}", "return {{1}}", "return {2.0}", "return {1, nil, 3}",
  };
  for (size_t i = 0; i < sizeof rewritten / sizeof *rewritten; i++) {
    int rc;
    sl_buf c = canon_of(A, rewritten[i], &rc);
    CHECK_INT(rc, 1);
    sl_buf_free(&c);
  }
  /* 3.0 alone: the float's hash is its integer's (sl_key_hash), the
   * canonical bytes are the integer's */
  int r3, r3f;
  sl_buf i3 = canon_of(A, "return 3", &r3), f3 = canon_of(A, "return 3.0", &r3f);
  CHECK(r3 == 0 && r3f == 1 && same_bytes(&i3, &f3));
  sl_buf_free(&i3);
  sl_buf_free(&f3);
  /* bytes that do not parse: counts past the end, a nested table or a
   * string cut short, a tag that is no tag */
  static const struct { const char *p; size_t n; } bad[] = {
    {"\x06\x05\x00\x40", 4}, {"\x06\x00\x02\x40", 4}, {"\x06\x01\x01\x7f", 4},
    {"\x06\x00\x01\x81" "a" "\x06\x00\x01", 7}, {"\x06\x00\x02\x41\x41\x42\xa5" "x", 8},
    {"\x06\x01\x00\x06\x00\x01\x41", 7}, {"\x06\x00\x01\x41\x41\x1f", 6},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sl_buf c = SL_BUF_INIT;
    CHECK_INT(sl_key_canon(bad[i].p, bad[i].n, &c), -1);
    sl_buf_free(&c);
  }
  lua_close(A);
}

/* Random nested tables, each built twice in two orders (with keys added
 * and removed in between in the second) in two states: the canonical
 * bytes are the same, and decode to a table equal to the original. */
static void test_random_tables(void) {
  lua_State *A = newstate(), *B = newstate();
  static const char lib[] =
    "function build(seed, order)\n"
    "  local r = seed\n"
    "  local function rnd(n) r = (r * 1103515245 + 12345) % 2147483648 return r % n end\n"
    "  local function make(depth)\n"
    "    local keys, vals, seen = {}, {}, {}\n"
    "    local n = rnd(12)\n"
    "    for i = 1, n do\n"
    "      local kind = rnd(5)\n"
    "      local k = kind == 0 and i or kind == 1 and ('k' .. rnd(50)) or kind == 2 and rnd(100) + 0.5\n"
    "        or kind == 3 and (rnd(2) == 0) or rnd(20) - 5\n"
    "      if seen[k] then k = 'u' .. i end\n"
    "      seen[k] = true\n"
    "      keys[i] = k\n"
    "      local v = rnd(6)\n"
    "      vals[i] = v == 0 and depth < 3 and make(depth + 1) or v == 1 and rnd(9) + 0.0 or v == 2 and 'v' .. rnd(9)\n"
    "        or v == 3 and rnd(2) == 1 or rnd(1000)\n"
    "    end\n"
    "    local t = {}\n"
    "    if order == 2 then for i = 1, 30 do t['junk' .. i] = i end end\n"
    "    local from, to, step = 1, n, 1\n"
    "    if order == 2 then from, to, step = n, 1, -1 end\n"
    "    for i = from, to, step do t[keys[i]] = vals[i] end\n"
    "    if order == 2 then for i = 1, 30 do t['junk' .. i] = nil end end\n"
    "    return t\n"
    "  end\n"
    "  return make(0)\n"
    "end\n"
    "function deq(a, b)\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n";
  run(A, lib);
  run(B, lib);
  for (int seed = 1; seed <= 300; seed++) {
    char one[64], two[64];
    snprintf(one, sizeof one, "return build(%d, 1)", seed);
    snprintf(two, sizeof two, "return build(%d, 2)", seed);
    int ra, rb;
    sl_buf x = canon_of(A, one, &ra), y = canon_of(B, two, &rb);
    CHECK(ra >= 0 && rb >= 0);
    if (!same_bytes(&x, &y)) fprintf(stderr, "  seed %d: not the same\n", seed);
    CHECK(same_bytes(&x, &y));
    CHECK_INT(sl_decode(A, x.data, x.len, err, sizeof err), 0);
    lua_setglobal(A, "decoded");
    snprintf(one, sizeof one, "deq(decoded, build(%d, 1))", seed);
    CHECK_LUA(A, one);
    sl_buf_free(&x);
    sl_buf_free(&y);
  }
  lua_close(A);
  lua_close(B);
}

/* A value that holds the same table twice, or a function, has no
 * canonical form (sl_key_canon: -1): a back-reference is numbered in the
 * order the fields were visited, so sorting could make two different
 * tables read alike. They hash and compare as their own bytes, which
 * decode to them alone. */
static void test_no_canonical_form(void) {
  lua_State *A = newstate();
  static const char *const none[] = {
    "local s = {1} return {a = s, b = s}", "local t = {x = 1} t.self = t return t",
    "return {f = function() return 1 end}", "return {{1}, x = {g = function() end}}",
  };
  for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
    int rc;
    sl_buf c = canon_of(A, none[i], &rc);
    CHECK_INT(rc, -1);
    sl_buf_free(&c);
  }
  /* {k1 = {1}, k2 = <k1's table>, k6 = {2}} against the same built with k2
   * sharing k6's: different tables, different bytes (and the reference
   * keeps its place whatever order the fields came in) */
  size_t nx, ny;
  char *x = encode_chunk(A, "local X = {k1 = {1}, k6 = {2}} X.k2 = X.k1 return X", &nx);
  char *y = encode_chunk(A, "local Y = {} Y.k6 = {2} Y.k2 = {1} Y.k1 = {1} Y.k2 = Y.k6 return Y", &ny);
  CHECK(x && y && (nx != ny || memcmp(x, y, nx) != 0));
  CHECK(sl_key_hash(x, nx) == sl_hash_bytes(x, nx));
  free(x);
  free(y);
  lua_close(A);
}

int main(void) {
  RUN(test_equal_tables);
  RUN(test_different_tables);
  RUN(test_as_is);
  RUN(test_no_canonical_form);
  RUN(test_random_tables);
  return CHECK_SUMMARY();
}
