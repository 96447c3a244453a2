/* bytecode: reading a Lua 5.4 function's binary chunk (lua_dump's
 * layout, ldump.c) without loading it.
 *
 * - sl_bytecode_ok: the decoder's pre-check of a function that crosses
 *   between states (below).
 * - sl_reads_param: whether a function may read one of its parameters,
 *   from its instructions: a layer whose reducer never reads its event
 *   need not decode the events at all (a count per window).
 * - sl_tuple_ctor: whether a function is exactly function(x) return {E1,
 *   ..., Ek} end (each E x or a literal): such a map before reduce_by_key
 *   ({x, K}) is fused with it, and one whose events leave the stage is
 *   encoded with no table made. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "buf.h"
#include "bytecode.h"
#include "codec_int.h"

/* The pre-check. lua_load trusts the counts in a binary chunk: it
** allocates (and for some vectors clears) as many items as a count says
** before reading them, and it recurses once per nested function without
** a limit. So before handing bytes to it, walk the chunk the way lundump
** reads it (Lua 5.4 layout, ldump.c) and check that every count fits in
** the bytes that are left, that the counts lundump takes on trust agree
** (upvalue names, line info, the closure's upvalues), and that functions
** nest at most BYTECODE_MAXNEST deep. The instructions themselves are not verified:
** the bytes come from our own encoder in this process.
*/

#define BYTECODE_MAXNEST 256
#if LUA_VERSION_NUM != 504
#error "bytecode.c walks the Lua 5.4 bytecode layout"
#endif

typedef struct Scan {
  const uint8_t *p, *end;
  size_t isize, nsize;  /* sizes of an instruction and of a number */
} Scan;

/* ldump's dumpSize: 7-bit groups, most significant first, 0x80 on the last. */
static int sc_size(Scan *s, uint64_t *v) {
  uint64_t x = 0;
  for (int i = 0; i < MAXVARINT; i++) {
    if (s->p == s->end) return -1;
    uint8_t b = *s->p++;
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static int sc_skip(Scan *s, uint64_t n) {
  if (n > (uint64_t)(s->end - s->p)) return -1;
  s->p += n;
  return 0;
}

/* A count of items of at least min bytes each. */
static int sc_count(Scan *s, uint64_t *n, size_t min) {
  return sc_size(s, n) || *n > (uint64_t)(s->end - s->p) / min ? -1 : 0;
}

static int sc_string(Scan *s) {
  uint64_t n;
  return sc_size(s, &n) || (n && sc_skip(s, n - 1)) ? -1 : 0;
}

/* Walks one function; *nups gets its number of upvalues. */
static int sc_function(Scan *s, int nest, uint64_t *nups) {
  uint64_t n, x, ncode;
  if (nest > BYTECODE_MAXNEST) return -1;
  /* source, linedefined, lastlinedefined, numparams, is_vararg, maxstack */
  if (sc_string(s) || sc_size(s, &x) || sc_size(s, &x) || sc_skip(s, 3)) return -1;
  if (sc_count(s, &ncode, s->isize) || sc_skip(s, ncode * s->isize)) return -1;  /* code */
  if (sc_count(s, &n, 1)) return -1;                                   /* constants */
  for (uint64_t i = 0; i < n; i++) {
    if (s->p == s->end) return -1;
    switch (*s->p++) {
    case 0x00: case 0x01: case 0x11: break;        /* nil, false, true */
    case 0x03:                                     /* integer */
      if (sc_skip(s, sizeof(lua_Integer))) return -1;
      break;
    case 0x13:                                     /* float */
      if (sc_skip(s, s->nsize)) return -1;
      break;
    case 0x04: case 0x14:                          /* short, long string */
      if (sc_string(s)) return -1;
      break;
    default: return -1;
    }
  }
  if (sc_count(s, nups, 3) || sc_skip(s, 3 * *nups)) return -1;       /* upvalues */
  if (sc_count(s, &n, 1)) return -1;                                   /* protos */
  for (uint64_t i = 0; i < n; i++)
    if (sc_function(s, nest + 1, &x)) return -1;
  if (sc_count(s, &n, 1) || (n && n != ncode) || sc_skip(s, n)) return -1;  /* lineinfo */
  if (sc_count(s, &n, 2)) return -1;                                   /* abslineinfo */
  for (uint64_t i = 0; i < n; i++)
    if (sc_size(s, &x) || sc_size(s, &x)) return -1;
  if (sc_count(s, &n, 3)) return -1;                                   /* locvars */
  for (uint64_t i = 0; i < n; i++)
    if (sc_string(s) || sc_size(s, &x) || sc_size(s, &x)) return -1;
  /* upvalue names: lundump 5.4.0-5.4.5 stores as many as the count says
   * into the upvalue vector, without comparing with its size */
  if (sc_count(s, &n, 1) || (n && n != *nups)) return -1;
  for (uint64_t i = 0; i < n; i++)
    if (sc_string(s)) return -1;
  return 0;
}

/* Whether the binary chunk p[0..n) passes the pre-check. Its header is
 * left to lua_load to verify, except for the sizes the walk needs. The
 * byte after the header is the closure's upvalue count, which lundump
 * does not compare with the function's own count (only asserts it). */
int sl_bytecode_ok(const char *p, size_t n) {
  const uint8_t *u = (const uint8_t *)p;
  size_t hdr = 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number);
  uint64_t nups;
  if (n < hdr + 1 || u[12] < 1 || u[12] > 8 || u[13] != sizeof(lua_Integer) ||
      u[14] != sizeof(lua_Number))
    return 0;
  Scan s = {u + hdr + 1, u + n, u[12], sizeof(lua_Number)};
  return sc_function(&s, 0, &nups) == 0 && s.p == s.end && nups == u[hdr];
}


/* {--------------------------------------------------------------------
** Whether a function reads a parameter. Parameter q lives in register q
** for the whole call, and an instruction names a register in its A, B
** or C field (or names a range of registers from A up); so a function
** that is not vararg, makes no closures (a closure may capture the
** register) and has no instruction naming register q never reads
** parameter q. Each opcode's fields are read as lopcodes.h (5.4) says;
** what is not known reads as "may read". The debug library's
** getlocal is not counted: a reducer that reads its event through it
** gets nil where the engine skips decoding.
** --------------------------------------------------------------------- */

enum { F_A = 1, F_B = 2, F_C = 4, F_KC = 8, F_RANGE = 16, F_NO = 32 };

/* Register fields of the 83 opcodes of Lua 5.4, in lopcodes.h's order:
 * F_A/F_B/F_C a register, F_KC C a register when k is 0, F_RANGE the
 * registers from A up, F_NO an opcode this walk refuses (CLOSURE,
 * VARARGPREP). */
static const uint8_t op_fields[] = {
  F_A | F_B,                                        /* MOVE */
  F_A, F_A, F_A, F_A, F_A, F_A, F_A,                /* LOADI LOADF LOADK LOADKX LOADFALSE LFALSESKIP LOADTRUE */
  F_RANGE,                                          /* LOADNIL */
  F_A, F_A,                                         /* GETUPVAL SETUPVAL */
  F_A,                                              /* GETTABUP */
  F_A | F_B | F_C,                                  /* GETTABLE */
  F_A | F_B, F_A | F_B,                             /* GETI GETFIELD */
  F_KC,                                             /* SETTABUP */
  F_A | F_B | F_KC,                                 /* SETTABLE */
  F_A | F_KC, F_A | F_KC,                           /* SETI SETFIELD */
  F_A,                                              /* NEWTABLE */
  F_RANGE | F_B | F_KC,                             /* SELF */
  F_A | F_B,                                        /* ADDI */
  F_A | F_B, F_A | F_B, F_A | F_B, F_A | F_B, F_A | F_B, F_A | F_B,  /* ADDK SUBK MULK MODK POWK DIVK */
  F_A | F_B, F_A | F_B, F_A | F_B, F_A | F_B,       /* IDIVK BANDK BORK BXORK */
  F_A | F_B, F_A | F_B,                             /* SHRI SHLI */
  F_A | F_B | F_C, F_A | F_B | F_C, F_A | F_B | F_C, F_A | F_B | F_C,  /* ADD SUB MUL MOD */
  F_A | F_B | F_C, F_A | F_B | F_C, F_A | F_B | F_C, F_A | F_B | F_C,  /* POW DIV IDIV BAND */
  F_A | F_B | F_C, F_A | F_B | F_C, F_A | F_B | F_C, F_A | F_B | F_C,  /* BOR BXOR SHL SHR */
  F_A | F_B, F_A, F_A,                              /* MMBIN MMBINI MMBINK */
  F_A | F_B, F_A | F_B, F_A | F_B, F_A | F_B,       /* UNM BNOT NOT LEN */
  F_RANGE, F_RANGE, F_A,                            /* CONCAT CLOSE TBC */
  0,                                                /* JMP */
  F_A | F_B, F_A | F_B, F_A | F_B,                  /* EQ LT LE */
  F_A, F_A, F_A, F_A, F_A, F_A,                     /* EQK EQI LTI LEI GTI GEI */
  F_A, F_A | F_B,                                   /* TEST TESTSET */
  F_RANGE, F_RANGE, F_RANGE,                        /* CALL TAILCALL RETURN */
  0, F_A,                                           /* RETURN0 RETURN1 */
  F_RANGE, F_RANGE, F_RANGE, F_RANGE, F_RANGE,      /* FORLOOP FORPREP TFORPREP TFORCALL TFORLOOP */
  F_RANGE,                                          /* SETLIST */
  F_NO,                                             /* CLOSURE */
  F_RANGE, F_NO,                                    /* VARARG VARARGPREP */
  0,                                                /* EXTRAARG */
};
#define NOPS ((int)(sizeof op_fields / sizeof *op_fields))
_Static_assert(sizeof op_fields == 83, "Lua 5.4 has 83 opcodes");

/* Whether instruction i may name register q. */
static int names_register(uint32_t i, unsigned q) {
  unsigned op = i & 0x7f, a = (i >> 7) & 0xff, k = (i >> 15) & 1, b = (i >> 16) & 0xff, c = (i >> 24) & 0xff;
  if (op >= (unsigned)NOPS) return 1;
  unsigned f = op_fields[op];
  return (f & F_NO) || ((f & F_A) && a == q) || ((f & F_RANGE) && a <= q) || ((f & F_B) && b == q) ||
         ((f & F_C) && c == q) || ((f & F_KC) && !k && c == q);
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return sl_buf_append(ud, p, n) ? 1 : 0;
}

/* The walk itself: 1 (may read), 0 (never reads) for the chunk p[0..n). */
static int chunk_reads_param(const uint8_t *u, size_t n, unsigned q) {
  size_t hdr = 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number);
  uint64_t x, ncode;
  if (n < hdr + 1 || u[12] != 4) return 1;
  Scan s = {u + hdr + 1, u + n, 4, sizeof(lua_Number)};
  if (sc_string(&s) || sc_size(&s, &x) || sc_size(&s, &x) || s.end - s.p < 3) return 1;
  unsigned nparams = s.p[0], vararg = s.p[1];
  s.p += 3;
  if (vararg) return 1;
  if (q >= nparams) return 0;                       /* no such parameter: its argument is dropped */
  if (sc_count(&s, &ncode, 4)) return 1;
  for (uint64_t j = 0; j < ncode; j++) {
    uint32_t i;
    memcpy(&i, s.p + 4 * j, 4);
    if (names_register(i, q)) return 1;
  }
  return 0;
}

/* The function at idx through the walk; 1 for a C function. */
static int reads_param_raw(lua_State *L, int idx, unsigned q) {
  if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx)) return 1;
  sl_buf b = SL_BUF_INIT;
  lua_pushvalue(L, idx);
  int rc = lua_dump(L, dump_writer, &b, 0);
  lua_pop(L, 1);
  int reads = rc != 0 || chunk_reads_param((const uint8_t *)b.data, b.len, q);
  sl_buf_free(&b);
  return reads;
}

/* Functions whose answers are known: if the walk gets one wrong (a Lua
 * whose opcodes differ), it answers "may read" for every function. */
static const struct { const char *src; unsigned q; int reads; } probes[] = {
  {"return function(_, acc) return acc + 1 end", 0, 0},
  {"return function(e, acc) return acc + 1 end", 0, 0},
  {"return function(e, acc) return acc + 1 end", 1, 1},
  {"return function(e, acc) return acc + e[1] end", 0, 1},
  {"return function(e, acc) return acc + e.n end", 0, 1},
  {"return function(e, acc) acc[e] = true return acc end", 0, 1},
  {"return function(e, acc) if e then return acc end return acc + 1 end", 0, 1},
  {"return function(e, acc) local t = {1, e} return acc end", 0, 1},
  {"return function(e, acc) return tostring(e) end", 0, 1},
  {"return function(e, acc) return acc, e end", 0, 1},
  {"return function(e, acc) return acc .. 'x' end", 0, 0},
  {"return function(e, acc) return function() return e end end", 0, 1},
  {"return function(e, acc) for i = 1, 3 do acc = acc + i end return acc end", 0, 0},
  {"return function(e, acc) acc.n = (acc.n or 0) + 1 return acc end", 0, 0},
  {"return function(e, acc) return e == nil and acc or acc + 1 end", 0, 1},
  {"return function(e, acc) return -e end", 0, 1},
  {"return function(e, acc) acc[#acc + 1] = e return acc end", 0, 1},
  {"return function(...) return ... end", 0, 1},
  {"return function(e) return 1 end", 3, 0},
};

static atomic_int probes_ok;   /* 0 not yet run, 1 right, 2 wrong */

static int probes_pass(lua_State *L) {
  int state = atomic_load(&probes_ok);
  if (state) return state == 1;
  int ok = 1;
  for (size_t i = 0; ok && i < sizeof probes / sizeof *probes; i++) {
    if (luaL_loadstring(L, probes[i].src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
      ok = 0;
    } else {
      ok = reads_param_raw(L, -1, probes[i].q) == probes[i].reads;
    }
    lua_pop(L, 1);
  }
  atomic_store(&probes_ok, ok ? 1 : 2);
  return ok;
}

/* Whether the chunk u[0..n) is exactly function(x) return {E1, ..., Ek}
 * end, each E the parameter x or a literal boolean or number that fits
 * an instruction: NEWTABLE 1 0 k, EXTRAARG, for each E an instruction
 * into register 1 + j (MOVE from 0, LOADI, LOADF, LOADTRUE, LOADFALSE),
 * SETLIST 1 k 0, RETURN1 1, RETURN0. Writes k kinds ('p' the parameter,
 * 'c' a literal) into kinds (room for SL_TUPLE_MAX + 1), pushes the
 * literals in order and returns k; 0 (nothing pushed) for anything else. */
static int chunk_tuple_ctor(lua_State *L, const uint8_t *u, size_t n, char *kinds) {
  size_t hdr = 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number);
  uint64_t x, ncode;
  if (n < hdr + 1 || u[12] != 4) return 0;
  Scan s = {u + hdr + 1, u + n, 4, sizeof(lua_Number)};
  if (sc_string(&s) || sc_size(&s, &x) || sc_size(&s, &x) || s.end - s.p < 3) return 0;
  if (s.p[0] != 1 || s.p[1] != 0) return 0;         /* one parameter, not vararg */
  s.p += 3;
  if (sc_count(&s, &ncode, 4) || ncode < 6 || ncode > 5 + SL_TUPLE_MAX) return 0;
  unsigned k = (unsigned)ncode - 5;
  uint32_t c[5 + SL_TUPLE_MAX];
  memcpy(c, s.p, 4 * ncode);
  /* op | A << 7 | k << 15 | B << 16 | C << 24; Bx = i >> 15 */
  if (c[0] != (19u | 1u << 7 | k << 24) || c[1] != 82u) return 0;                /* NEWTABLE 1 0 k; EXTRAARG 0 */
  if (c[2 + k] != (78u | 1u << 7 | k << 16) || (c[3 + k] & 0x7fff) != (72u | 1u << 7) ||
      (c[4 + k] & 0x7f) != 71u)                                                   /* SETLIST 1 k 0; RETURN1 1; RETURN0 */
    return 0;
  int top = lua_gettop(L);
  for (unsigned j = 0; j < k; j++) {
    uint32_t i = c[2 + j], op = i & 0x7f;
    int sbx = (int)(i >> 15) - 65535;               /* (2^17 - 1) >> 1 */
    kinds[j] = 'c';
    if (((i >> 7) & 0xff) != 2 + j) op = 0xff;      /* into register 2 + j */
    switch (op) {
    case 0:                                         /* MOVE from the parameter */
      if (((i >> 16) & 0xff) != 0 || (i >> 15 & 1)) goto no;
      kinds[j] = 'p';
      break;
    case 1: lua_pushinteger(L, sbx); break;         /* LOADI */
    case 2: lua_pushnumber(L, (lua_Number)sbx); break;   /* LOADF */
    case 5: lua_pushboolean(L, 0); break;           /* LOADFALSE */
    case 7: lua_pushboolean(L, 1); break;           /* LOADTRUE */
    default: goto no;
    }
  }
  kinds[k] = 0;
  return (int)k;
no:
  lua_settop(L, top);
  return 0;
}

int sl_tuple_ctor(lua_State *L, int idx, char *kinds) {
  idx = lua_absindex(L, idx);
  if (!probes_pass(L) || lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx)) return 0;
  sl_buf b = SL_BUF_INIT;
  lua_pushvalue(L, idx);
  int rc = lua_dump(L, dump_writer, &b, 0);
  lua_pop(L, 1);
  int k = rc == 0 ? chunk_tuple_ctor(L, (const uint8_t *)b.data, b.len, kinds) : 0;
  sl_buf_free(&b);
  return k;
}

int sl_reads_param(lua_State *L, int idx, int q) {
  idx = lua_absindex(L, idx);
  if (q < 0 || !probes_pass(L)) return 1;
  return reads_param_raw(L, idx, (unsigned)q);
}

/* }-------------------------------------------------------------------- */
