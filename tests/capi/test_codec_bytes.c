/* test_codec_bytes: the codec's bytes (lua/codec*.c): flat tables written
 * as the general encoder writes them, short arrays decoded by the batch
 * decoder's own path, keys read from an event's bytes, and decoding that
 * never trusts its input (truncations, random bytes, mutated encodings,
 * malformed values). The helpers are codec_check.h's. */
#include "codec_check.h"
#include "hash.h"

/* {====================================================================
** Garbage: decoding never trusts its input
** ===================================================================== */

#ifndef FUZZ_ROUNDS
#define FUZZ_ROUNDS 20000
#endif

/* The random inputs are fixed by the seed; the mutated encodings are not
 * quite: the order of hash keys in an encoding follows lua_next, which
 * depends on each state's string hash seed. */
static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Decodes p[0..n) in L both alone and as a batch event; whatever the
 * result, the stack must be balanced. Returns the status of sl_decode. */
static int decode_any(lua_State *L, const char *p, size_t n) {
  int top = lua_gettop(L);
  /* read as a partial, the pairs end exactly at the end */
  const char *pairs;
  int64_t np = sl_encoded_partial(p, n, &pairs);
  for (int64_t k = 0; k < 2 * np; k++) {
    pairs = sl_push_scalar(L, pairs);
    lua_pop(L, 1);
  }
  if (np >= 0) CHECK(pairs == p + n);
  lua_settop(L, top);
  int rc = sl_decode(L, p, n, err, sizeof err);
  if (rc == 0) {
    CHECK_INT(lua_gettop(L), top + 1);
    lua_pop(L, 1);
  } else {
    CHECK(rc < 0);
    CHECK_INT(lua_gettop(L), top);
  }
  return rc;
}

static void decode_batch_any(lua_State *L, char **events, size_t *lens, int n) {
  sl_batch_builder bb;
  sl_batch b;
  int top = lua_gettop(L);
  sl_bb_init(&bb);
  for (int i = 0; i < n; i++) sl_bb_add(&bb, events[i], lens[i]);
  sl_bb_finish(&bb, &b);
  sl_bb_free(&bb);
  int rc = sl_decode_batch(L, &b, err, sizeof err);
  CHECK_INT(lua_gettop(L), rc == 0 ? top + 1 : top);
  if (rc == 0) lua_pop(L, 1);
  sl_batch_release(&b);
}

static const char *const corpus[] = {
  "return {1, 'two', 3.5, {4, {5}}, a = {b = {c = 'deep'}}, [true] = false}",
  "local t = {} t.self = t t[1] = t t[t] = {t} return t",
  "return {string.format, math, _G, print, string.rep('z', 300)}",
  ("local n = 0 local function inc() n = n + 1 return n end"
   " return {inc, function() return n end, inc}"),
  "local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end return fact",
  "local t = {} for i = 1, 200 do t[i] = i * 1000 t['k' .. i] = -i end return t",
  "return {0/0, -0.0, math.huge, math.mininteger, math.maxinteger, 2^53}",
};
#define NCORPUS (sizeof corpus / sizeof *corpus)

/* Flat tables (scalar keys and values) take a shorter path in
 * sl_encode_named and sl_encode_batch; their bytes are those of the
 * general path (sl_encode), and a module table still crosses by name. */
static void test_flat_tables_same_bytes(void) {
  lua_State *A = newstate(), *B = newstate();
  static const char *const values[] = {
    "return {}", "return {1, 2}", "return {1, 'two', 3.5, true, false}",
    "return {x = 1, y = 'b', [2.5] = -7, [true] = false}",
    "return {10, 20, 30, n = 3, [-1] = 'neg', [100] = 1e300}",
    "local t = {} for i = 1, 200 do t['k' .. i] = i end return t",   /* 200 pairs: a 2-byte count */
    "return {1, nil, 3}", "return {[1] = 'a', [3] = 'c'}",
    /* array keys in the hash part, out of order; a border past a hole */
    "local t = {} t[2] = 'b' t[1] = 'a' t.x = 1 return t",
    "local t = {} for i = 10, 1, -1 do t[i] = i end return t",
    "return {1, 2, [4] = 4}", "local t = {} for i = 1, 300 do t[i] = i end return t",
    "return {1, {2}}", "return {f = print}", "return {1, x = {}}",  /* not flat: general path */
  };
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    size_t n1, n2;
    char *general = encode_chunk(A, values[i], &n1);
    CHECK(general != NULL);
    sl_buf named = SL_BUF_INIT;
    CHECK(eval(A, values[i]));
    sl_encode_names(A);
    CHECK_INT(sl_encode_named(A, -2, -1, &named, "x", err, sizeof err), 0);
    lua_pop(A, 2);
    CHECK(general && named.len == n1 && memcmp(named.data, general, n1) == 0);
    /* the same value as an event of a batch */
    char chunk[512];
    snprintf(chunk, sizeof chunk, "return {(function() %s end)()}", values[i]);
    sl_batch b = SL_BATCH_EMPTY;
    CHECK(eval(A, chunk));
    CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), 0);
    lua_pop(A, 1);
    const char *p = sl_batch_event(&b, 0, &n2);
    CHECK(general && n2 == n1 && memcmp(p, general, n1) == 0);
    CHECK_INT(sl_decode_batch(B, &b, err, sizeof err), 0);
    lua_pop(B, 1);
    sl_batch_release(&b);
    sl_buf_free(&named);
    free(general);
  }
  CHECK_INT(lua_gettop(A), 0);
  /* a flat module table crosses by name on both paths */
  run(A, "package.loaded.flatmod = {x = 1}");
  run(B, "package.loaded.flatmod = {x = 2}");
  sl_buf named = SL_BUF_INIT;
  CHECK(eval(A, "return package.loaded.flatmod"));
  sl_encode_names(A);
  CHECK_INT(sl_encode_named(A, -2, -1, &named, "x", err, sizeof err), 0);
  lua_pop(A, 2);
  CHECK_INT(sl_decode(B, named.data, named.len, err, sizeof err), 0);
  lua_setglobal(B, "v");
  CHECK_LUA(B, "v == package.loaded.flatmod and v.x == 2");
  sl_buf_free(&named);
  close2(A, B);
}

/* sl_encode_array_to (an outbox's path for a table event) writes a short
 * array of scalars byte for byte as the general path does, and declines
 * (1, the buffer as it was) every other table: holes, other keys, tables
 * inside, the empty table, 128 elements, and a module, which crosses by
 * name. */
static void test_short_arrays_same_bytes(void) {
  lua_State *A = newstate();
  static const char *const taken[] = {
    "return {1, 2}", "return {1700000000000, -5, 'ts'}", "return {0/0, -0.0, 1.5, math.huge, 2.0}",
    "return {math.mininteger, math.maxinteger, 63, 64, -1, 0}", "return {true, false, ''}",
    "return {string.rep('w', 127), string.rep('v', 128), string.rep('u', 70000)}",
    "local t = {} for i = 1, 127 do t[i] = i * 7 end return t",
    "local t = {} t[2] = 'b' t[1] = 'a' return t",             /* array keys in the hash part */
    "local t = {1, 2, 3, 4} t[4] = nil t[3] = nil return t",   /* array part past the border */
    "return setmetatable({5, 6}, {__len = function() return 9 end, __index = {7}})",
  };
  static const char *const declined[] = {
    "return {}", "return {1, nil, 3}", "return {1, 2, x = 3}", "return {1, 2, [4] = 4}",
    "return {1, {2}}", "return {print}", "return {x = 1}",
    "local t = {} for i = 1, 128 do t[i] = i end return t",
    "package.loaded.arrmod = {1, 2} return package.loaded.arrmod",
  };
  for (int pass = 0; pass < 2; pass++) {
    const char *const *vals = pass ? declined : taken;
    size_t nv = pass ? sizeof declined / sizeof *declined : sizeof taken / sizeof *taken;
    for (size_t i = 0; i < nv; i++) {
      size_t n1;
      int failed_before = check_failed_in_test;
      CHECK(eval(A, vals[i]));                        /* stack: v */
      sl_encode_names(A);                             /* stack: v names */
      const sl_modset *mods = sl_encode_modset(A, 2);
      CHECK(mods != NULL);
      sl_buf b = SL_BUF_INIT;
      CHECK_INT(sl_buf_append(&b, "pre", 3), 0);      /* what is already there stays */
      int rc = sl_encode_array_to(A, 1, mods, &b);
      CHECK_INT(lua_gettop(A), 2);
      if (pass) {
        CHECK_INT(rc, 1);
        CHECK(b.len == 3 && memcmp(b.data, "pre", 3) == 0);
      } else {
        CHECK_INT(rc, 0);
        sl_buf general = SL_BUF_INIT;
        CHECK_INT(sl_encode_named(A, 1, 2, &general, "x", err, sizeof err), 0);
        n1 = general.len;
        CHECK(b.len == 3 + n1 && memcmp(b.data, "pre", 3) == 0 && memcmp(b.data + 3, general.data, n1) == 0);
        sl_buf_free(&general);
      }
      if (check_failed_in_test && !failed_before) fprintf(stderr, "  (value: %s)\n", vals[i]);
      sl_buf_free(&b);
      lua_settop(A, 0);
    }
  }
  /* the set holds the modules and _G, and nothing else */
  sl_encode_names(A);
  const sl_modset *mods = sl_encode_modset(A, 1);
  lua_getglobal(A, "string");
  CHECK(sl_modset_has(mods, lua_topointer(A, -1)));
  lua_rawgeti(A, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  CHECK(sl_modset_has(mods, lua_topointer(A, -1)));
  lua_newtable(A);
  CHECK(!sl_modset_has(mods, lua_topointer(A, -1)));
  lua_close(A);
}

/* sl_encoded_partial reads {p, part} with a part of scalar pairs, whose
 * keys and values sl_push_scalar pushes as decoding would; it declines
 * anything else, and no prefix of a partial's bytes reads as one. */
static void test_encoded_partials(void) {
  lua_State *A = newstate(), *B = newstate();
  size_t n;
  char *bytes = encode_chunk(A, "return {3, {a = 1, [''] = -2.5, [7] = true, [-1] = 'v',"
                                " [string.rep('k', 300)] = math.mininteger, [false] = 0}}", &n);
  CHECK(bytes != NULL);
  const char *pairs = NULL;
  CHECK_INT(sl_encoded_partial(bytes, n, &pairs), 6);
  lua_newtable(B);                                  /* the pairs, pushed */
  for (int k = 0; pairs && k < 6; k++) {
    pairs = sl_push_scalar(B, pairs);
    pairs = sl_push_scalar(B, pairs);
    lua_rawset(B, 1);
  }
  CHECK(pairs == bytes + n);
  lua_setglobal(B, "got");
  CHECK_LUA(B, "got.a == 1 and math.type(got.a) == 'integer' and got[''] == -2.5 and got[7] == true"
               " and got[-1] == 'v' and got[string.rep('k', 300)] == math.mininteger and got[false] == 0");
  for (size_t len = 0; len < n; len++) CHECK_INT(sl_encoded_partial(bytes, len, &pairs), -1);
  free(bytes);
  static const char *const declined[] = {
    "return {3, {1, 2}}", "return {3, {a = {}}}", "return {3, {a = print}}", "return {1, 2, 3}",
    "return {3}", "return {{}, {a = 1}}", "return {3, {a = 1}, x = 1}", "return 'str'", "return {3, 'x'}",
  };
  for (size_t i = 0; i < sizeof declined / sizeof *declined; i++) {
    bytes = encode_chunk(A, declined[i], &n);
    CHECK(bytes != NULL);
    if (bytes) CHECK_INT(sl_encoded_partial(bytes, n, &pairs), -1);
    free(bytes);
  }
  bytes = encode_chunk(A, "return {1, {}}", &n);   /* an empty part: no pairs */
  CHECK(bytes != NULL);
  if (bytes) CHECK_INT(sl_encoded_partial(bytes, n, &pairs), 0);
  free(bytes);
  close2(A, B);
}

/* A key's partition hash: a float with an integer value hashes as that
 * integer (keys equal in Lua go to one partition); any other encoding
 * hashes as its bytes. */
static void test_key_hash(void) {
  lua_State *A = newstate();
  static const char *const same[][2] = {
    {"return 3", "return 3.0"}, {"return 0", "return -0.0"}, {"return 0", "return 0.0"},
    {"return -70", "return -70.0"}, {"return 2^53", "return math.tointeger(2^53)"},
    {"return math.mininteger", "return -2^63"}, {"return 1e15", "return 1000000000000000"},
    {"return {3}", "return {3.0}"},   /* in a table too (test_key_canon.c) */
  };
  for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
    size_t n, m;
    char *a = encode_chunk(A, same[i][0], &n), *b = encode_chunk(A, same[i][1], &m);
    CHECK(a != NULL && b != NULL);
    if (a && b) {
      CHECK(n != m || memcmp(a, b, n) != 0);        /* an integer and a float */
      CHECK(sl_key_hash(a, n) == sl_key_hash(b, m));
      const char *i_bytes = a[0] == 0x04 ? b : a;     /* the integer's hash is its bytes' */
      CHECK(sl_key_hash(i_bytes, i_bytes == a ? n : m) == sl_hash_bytes(i_bytes, i_bytes == a ? n : m));
    }
    free(a);
    free(b);
  }
  static const char *const own[] = {
    "return 0.5", "return 2^63", "return -2^64", "return 1/0", "return -1/0", "return 0/0",
    "return 'x'", "return {3.5, 'x'}", "return true",
  };
  for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
    size_t n;
    char *a = encode_chunk(A, own[i], &n);
    CHECK(a != NULL);
    if (a) CHECK(sl_key_hash(a, n) == sl_hash_bytes(a, n));
    free(a);
  }
  lua_close(A);
}

/* Short arrays of scalars take a shorter path in sl_decode_batch; each
 * event decodes to what sl_decode makes of its bytes, for every kind of
 * scalar, holes, the length limit of that path (127) and arrays just past
 * it or with other keys (the general path). */
static void test_batch_flat_arrays(void) {
  lua_State *A = newstate(), *B = newstate();
  run(B, "function deq(a, b)"
         "  if a ~= a and b ~= b then return true end"
         "  if type(a) ~= 'table' or type(b) ~= 'table' then"
         "    return a == b and math.type(a) == math.type(b) end"
         "  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end"
         "  for k in pairs(b) do if a[k] == nil then return false end end"
         "  return true end");
  CHECK(eval(A, "local big = {} for i = 1, 127 do big[i] = i * 7 end"
                " local over = {} for i = 1, 128 do over[i] = -i end"
                " return {{1, 2}, {'ts', 1700000000000, -5}, {0/0, -0.0, 1.5, math.huge},"
                " {math.mininteger, math.maxinteger, 63, 64, -1}, {true, false}, {1, nil, 3},"
                " {string.rep('w', 127), string.rep('v', 128)}, {''}, {}, big, over,"
                " {1, 2, x = 3}, {{1}}, 'str', 42}"));
  sl_batch b = SL_BATCH_EMPTY;
  CHECK_INT(sl_encode_batch(A, -1, &b, "events", err, sizeof err), 0);
  lua_pop(A, 1);
  CHECK_INT(b.count, 15);
  CHECK_INT(sl_decode_batch(B, &b, err, sizeof err), 0);
  lua_setglobal(B, "batch");
  lua_newtable(B);
  for (uint32_t i = 0; i < b.count; i++) {
    size_t len;
    const char *p = sl_batch_event(&b, i, &len);
    CHECK_INT(sl_decode(B, p, len, err, sizeof err), 0);
    lua_rawseti(B, -2, (lua_Integer)i + 1);
  }
  lua_setglobal(B, "single");
  CHECK_LUA(B, "#batch == 15 and deq(batch, single)");
  CHECK_LUA(B, "batch[1][1] == 1 and batch[1][2] == 2 and #batch[1] == 2");
  CHECK_LUA(B, "batch[2][1] == 'ts' and batch[2][2] == 1700000000000 and batch[2][3] == -5");
  CHECK_LUA(B, "batch[3][1] ~= batch[3][1] and 1 / batch[3][2] < 0 and batch[3][3] == 1.5");
  CHECK_LUA(B, "batch[4][1] == math.mininteger and batch[4][2] == math.maxinteger and batch[4][5] == -1");
  CHECK_LUA(B, "math.type(batch[4][3]) == 'integer' and batch[4][4] == 64");
  CHECK_LUA(B, "batch[5][1] == true and batch[5][2] == false and batch[6][2] == nil and batch[6][3] == 3");
  CHECK_LUA(B, "#batch[7][1] == 127 and #batch[7][2] == 128 and batch[8][1] == '' and next(batch[9]) == nil");
  CHECK_LUA(B, "#batch[10] == 127 and batch[10][127] == 889 and #batch[11] == 128 and batch[11][128] == -128");
  CHECK_LUA(B, "batch[12].x == 3 and batch[13][1][1] == 1 and batch[14] == 'str' and batch[15] == 42");
  sl_batch_release(&b);
  CHECK_INT(lua_gettop(B), 0);
  close2(A, B);
}

/* sl_encoded_field reads a partition key from an event's bytes: when it
 * answers, its bytes are the encoding of the field the decoded event has
 * (nil for a missing field or a non-table event); it declines (-1) only
 * for keys that are not scalars and for module tables; truncated bytes
 * never read past the end. */
static void test_encoded_field(void) {
  lua_State *A = newstate(), *B = newstate();
  static const char *const values[] = {
    "return {1, 'two', 3.5}", "return {'a', nil, 'c'}", "return {{1, 2}, 'k', x = 'y'}",
    "return {function() return 1 end, 7, name = 'n'}", "return {x = 1, name = 'bob', [2] = 'hash'}",
    "local t = {} return {t, t, name = t}", "return {[100] = 'far', [-3] = 'neg', [63] = 'edge'}",
    "return {true, false, name = true}", "return 'not a table'", "return 42", "return {}",
    "return {string.format, 5, name = math}", "return math", "return {1.0, 2^60, -1, name = 'x'}",
  };
  static const lua_Integer indexes[] = {1, 2, 3, 4, 63, 100, -3, 0};
  static const char *const fields[] = {"name", "x", "missing"};
  int answered = 0, declined = 0;
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
    size_t n;
    char *ev = encode_chunk(A, values[i], &n);
    CHECK(ev != NULL);
    if (!ev) continue;
    CHECK_INT(sl_decode(B, ev, n, err, sizeof err), 0);
    int e = lua_gettop(B);
    for (size_t j = 0; j < 8 + 3; j++) {
      const char *field = j >= 8 ? fields[j - 8] : NULL;
      lua_Integer index = j < 8 ? indexes[j] : 0;
      const char *kp;
      size_t kl;
      int r = sl_encoded_field(ev, n, index, field, field ? strlen(field) : 0, &kp, &kl);
      if (lua_type(B, e) == LUA_TTABLE) {
        if (field) lua_getfield(B, e, field);
        else lua_rawgeti(B, e, index);
      } else {
        lua_pushnil(B);
      }
      int t = lua_type(B, -1);
      sl_buf want = SL_BUF_INIT;
      if (r == 1) {
        answered++;
        CHECK_INT(sl_encode(B, -1, &want, "k", err, sizeof err), 0);
        CHECK(want.len == kl && memcmp(want.data, kp, kl) == 0);
      } else {
        declined++;
        CHECK_INT(r, -1);
        CHECK(t == LUA_TTABLE || t == LUA_TFUNCTION || strcmp(values[i], "return math") == 0);
      }
      sl_buf_free(&want);
      lua_pop(B, 1);
      /* every prefix of the bytes: an answer within them, or -1 */
      for (size_t cut = 0; cut < n; cut++) {
        r = sl_encoded_field(ev, cut, index, field, field ? strlen(field) : 0, &kp, &kl);
        CHECK(r == -1 || (r == 1 && ((kp >= ev && kp + kl <= ev + cut) || kl == 1)));
      }
    }
    lua_pop(B, 1);
    free(ev);
  }
  CHECK(answered > 100 && declined > 5);
  close2(A, B);
}

static void test_truncations(void) {
  lua_State *A = newstate(), *B = newstate();
  for (size_t c = 0; c < NCORPUS; c++) {
    size_t n;
    char *p = encode_chunk(A, corpus[c], &n);
    CHECK(p != NULL);
    if (!p) continue;
    CHECK_INT(decode_any(B, p, n), 0);
    for (size_t k = 0; k < n; k++) {
      char *q = malloc(k ? k : 1);   /* exact size, so ASan sees overreads */
      memcpy(q, p, k);
      int rc = decode_any(B, q, k);
      if (rc >= 0) fprintf(stderr, "  prefix %zu of corpus %zu decoded\n", k, c);
      CHECK(rc < 0);
      free(q);
    }
    /* trailing bytes are rejected too */
    char *q = malloc(n + 1);
    memcpy(q, p, n);
    q[n] = 0;
    CHECK_INT(decode_any(B, q, n + 1), SL_ECORRUPT);
    free(q);
    free(p);
  }
  close2(A, B);
}

static void test_garbage(void) {
  lua_State *A = newstate(), *B = newstate();
  char *enc[NCORPUS];
  size_t enclen[NCORPUS];
  int decoded = 0, failed = 0;
  for (size_t c = 0; c < NCORPUS; c++) enc[c] = encode_chunk(A, corpus[c], &enclen[c]);
  /* random bytes, biased towards small tag values so that some parse */
  for (int it = 0; it < FUZZ_ROUNDS; it++) {
    size_t n = next_rand() % 48;
    char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
      uint64_t r = next_rand();
      p[i] = (char)((r & 0x300) ? (uint8_t)(r % 16) : (uint8_t)(r >> 16));
    }
    if (decode_any(B, p, n) == 0) decoded++;
    else failed++;
    free(p);
  }
  /* bit flips in valid encodings */
  for (int it = 0; it < FUZZ_ROUNDS; it++) {
    size_t c = next_rand() % NCORPUS;
    if (!enc[c]) continue;
    size_t n = enclen[c];
    char *p = malloc(n);
    memcpy(p, enc[c], n);
    int flips = 1 + (int)(next_rand() % 3);
    for (int f = 0; f < flips; f++) {
      size_t at = next_rand() % n;
      p[at] = (char)(p[at] ^ (1 << (next_rand() % 8)));
    }
    if (decode_any(B, p, n) == 0) decoded++;
    else failed++;
    free(p);
  }
  /* batches mixing valid, flipped and random events */
  for (int it = 0; it < FUZZ_ROUNDS / 10; it++) {
    char *ev[8];
    size_t len[8];
    int m = 1 + (int)(next_rand() % 8);
    for (int i = 0; i < m; i++) {
      size_t c = next_rand() % NCORPUS;
      len[i] = enc[c] ? enclen[c] : 0;
      ev[i] = malloc(len[i] ? len[i] : 1);
      if (len[i]) memcpy(ev[i], enc[c], len[i]);
      if (len[i] && next_rand() % 2) {
        size_t at = next_rand() % len[i];
        ev[i][at] = (char)(ev[i][at] ^ (1 << (next_rand() % 8)));
      }
      if (next_rand() % 4 == 0) len[i] = next_rand() % (len[i] + 1);
    }
    decode_batch_any(B, ev, len, m);
    for (int i = 0; i < m; i++) free(ev[i]);
  }
  printf("     garbage: %d decoded, %d rejected\n", decoded, failed);
  CHECK(decoded > 0 && failed > 0);
  CHECK_INT(lua_gettop(B), 0);
  for (size_t c = 0; c < NCORPUS; c++) free(enc[c]);
  close2(A, B);
}

/* Hand-made malformed inputs with known reasons. */
static void test_malformed(void) {
  static const struct { const char *bytes; size_t n; const char *msg; } cases[] = {
    {"", 0, "malformed encoded value: truncated (at byte 0)"},
    {"\x3f", 1, "malformed encoded value: bad tag 0x3f (at byte 0)"},
    {"\x05\x05" "abc", 5, "malformed encoded value: length out of range (at byte 2)"},
    {"\x83" "ab", 3, "malformed encoded value: truncated (at byte 1)"},
    {"\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11,
     "malformed encoded value: varint overflow (at byte 11)"},
    {"\x06\x01\x00\x08\x01", 5, "malformed encoded value: bad back-reference (at byte 5)"},
    {"\x08\x00", 2, "malformed encoded value: bad back-reference (at byte 2)"},
    {"\x06\x00\x01\x00\x41", 5, "malformed encoded value: nil or NaN table key (at byte 4)"},
    {"\x06\x00\x01\x04\x00\x00\x00\x00\x00\x00\xf8\x7f\x41", 13,
     "malformed encoded value: nil or NaN table key (at byte 12)"},
    {"\x06\x7f\x00", 3, "malformed encoded value: length out of range (at byte 2)"},
    {"\x0b\x09\x01\x01", 4, "malformed encoded value: bad handle kind (at byte 2)"},
    {"\x0c", 1, "malformed encoded value: bad tag 0x0c (at byte 0)"},
    {"\x07\x03" "abc\x00", 6, "malformed encoded value: bad function bytecode (at byte 5)"},
    {"\x41\x41", 2, "malformed encoded value: trailing bytes (at byte 1)"},
  };
  lua_State *B = newstate();
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    CHECK_INT(decode_any(B, cases[i].bytes, cases[i].n), SL_ECORRUPT);
    CHECK_STR(err, cases[i].msg);
  }
  /* bytecode that passes the pre-check but not lua_load: a wrong version */
  size_t n;
  char *p = encode_chunk(B, "return function() end", &n);
  char *sig = p ? memmem(p, n, "\x1bLua", 4) : NULL;
  CHECK(sig != NULL);
  if (sig) {
    sig[4] = 0x53;
    CHECK_INT(decode_any(B, p, n), SL_ECORRUPT);
    CHECK(strncmp(err, "malformed encoded value: bad function (", 39) == 0);
  }
  free(p);
  /* the closure's upvalue count (the byte after the header) must match the
   * function's: lua_load only asserts it */
  p = encode_chunk(B, "local u = 1 return function() return u end", &n);
  sig = p ? memmem(p, n, "\x1bLua", 4) : NULL;
  CHECK(sig != NULL);
  if (sig) {
    CHECK_INT(sig[31], 1);
    sig[31] = 2;
    CHECK_INT(decode_any(B, p, n), SL_ECORRUPT);
    CHECK(strncmp(err, "malformed encoded value: bad function bytecode", 46) == 0);
  }
  free(p);
  /* an _ENV upvalue sent as a value, not as the globals (found by
   * fuzz_decode: it decoded to a function whose _ENV was `true`, which
   * encoding again turned into the globals) */
  p = encode_chunk(B, "return function(x) return print(x) end", &n);
  CHECK(p != NULL && n > 0 && p[n - 1] == 0x0C);   /* the last byte: its one upvalue, T_ENV */
  if (p && n > 0) {
    p[n - 1] = 0x02;                               /* true */
    CHECK_INT(decode_any(B, p, n), SL_ECORRUPT);
    CHECK(strncmp(err, "malformed encoded value: bad function: _ENV is not the globals", 62) == 0);
  }
  free(p);
  lua_close(B);
}

/* }==================================================================== */

int main(void) {
  RUN(test_flat_tables_same_bytes);
  RUN(test_short_arrays_same_bytes);
  RUN(test_encoded_partials);
  RUN(test_key_hash);
  RUN(test_batch_flat_arrays);
  RUN(test_encoded_field);
  RUN(test_truncations);
  RUN(test_garbage);
  RUN(test_malformed);
  return CHECK_SUMMARY();
}
