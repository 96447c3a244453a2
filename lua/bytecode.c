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
 *   encoded with no table made.
 * - sl_same_code: whether two functions are the same code (a reduce whose
 *   reducer is exactly a count combines as frequencies does). */
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

/* A binary chunk's header: signature, version, format, LUAC_DATA,
 * sizes of an instruction, a lua_Integer and a lua_Number, LUAC_INT,
 * LUAC_NUM; the closure's upvalue count follows it. */
#define CHUNK_HDR (4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number))

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
  size_t hdr = CHUNK_HDR;
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

/* The opcodes the tuple walk names (lopcodes.h's numbers). */
enum { OP_MOVE = 0, OP_LOADI = 1, OP_LOADF = 2, OP_LOADFALSE = 5, OP_LOADTRUE = 7, OP_NEWTABLE = 19,
       OP_RETURN0 = 71, OP_RETURN1 = 72, OP_SETLIST = 78, OP_EXTRAARG = 82 };

/* Instruction fields: op | A << 7 | k << 15 | B << 16 | C << 24; Bx and
 * sBx are the 17 bits from 15 (sBx offset by 2^16 - 1). */
#define INS(op, a, b, c) ((uint32_t)(op) | (uint32_t)(a) << 7 | (uint32_t)(b) << 16 | (uint32_t)(c) << 24)

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

/* The binary chunk of the Lua function at idx into b (empty for a C
 * function or on failure; free b after); strip leaves out the debug
 * information. */
static void dump_fn(lua_State *L, int idx, sl_buf *b, int strip) {
  if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx)) return;
  lua_pushvalue(L, idx);
  if (lua_dump(L, dump_writer, b, strip) != 0) b->len = 0;
  lua_pop(L, 1);
}

/* A chunk's main function: its parameter count, vararg flag and code. */
typedef struct MainFn {
  unsigned nparams, vararg;
  const uint8_t *code;
  uint64_t ncode;
} MainFn;

/* Where the stripped chunk u[0..n) goes on after its main function's
 * line numbers (which differ between two copies of the same code written
 * in different places; a nested function's line numbers are compared,
 * so copies with nested functions never match); 0 when it is not the
 * layout walked here (4-byte instructions). */
static size_t after_lines(const uint8_t *u, size_t n) {
  uint64_t x;
  if (n < CHUNK_HDR + 1 || u[12] != 4) return 0;
  Scan s = {u + CHUNK_HDR + 1, u + n, 4, sizeof(lua_Number)};
  if (sc_string(&s) || sc_size(&s, &x) || sc_size(&s, &x)) return 0;
  return (size_t)(s.p - u);
}

/* Reads the main function of the chunk u[0..n) up to its code; -1 when
 * it is not the layout walked here (4-byte instructions). */
static int main_fn(const uint8_t *u, size_t n, MainFn *f) {
  size_t at = after_lines(u, n);
  if (at == 0) return -1;
  Scan s = {u + at, u + n, 4, sizeof(lua_Number)};
  /* numparams, is_vararg, maxstack */
  if (s.end - s.p < 3) return -1;
  f->nparams = s.p[0];
  f->vararg = s.p[1];
  s.p += 3;
  if (sc_count(&s, &f->ncode, 4)) return -1;
  f->code = s.p;
  return 0;
}

static uint32_t ins_at(const MainFn *f, uint64_t j) {
  uint32_t i;
  memcpy(&i, f->code + 4 * j, 4);
  return i;
}

/* The walk itself: 1 (may read), 0 (never reads). */
static int reads_param_raw(lua_State *L, int idx, unsigned q) {
  sl_buf b = SL_BUF_INIT;
  MainFn f;
  dump_fn(L, idx, &b, 0);
  int reads = b.len == 0 || main_fn((const uint8_t *)b.data, b.len, &f) != 0 || f.vararg;
  if (!reads && q < f.nparams)                      /* (no such parameter: its argument is dropped) */
    for (uint64_t j = 0; !reads && j < f.ncode; j++) reads = names_register(ins_at(&f, j), q);
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

/* Whether the function at idx is exactly function(x) return {E1, ...,
 * Ek} end, each E the parameter x or a literal boolean or number that
 * fits an instruction: NEWTABLE 1 0 k, EXTRAARG, for each E an instruction
 * into register 1 + j (MOVE from 0, LOADI, LOADF, LOADTRUE, LOADFALSE),
 * SETLIST 1 k 0, RETURN1 1, RETURN0. Writes k kinds ('p' the parameter,
 * 'c' a literal) into kinds (room for SL_TUPLE_MAX + 1), pushes the
 * literals in order and returns k; 0 (nothing pushed) for anything else. */
static int tuple_ctor_raw(lua_State *L, int idx, char *kinds) {
  sl_buf b = SL_BUF_INIT;
  MainFn f;
  dump_fn(L, idx, &b, 0);
  int k = b.len && main_fn((const uint8_t *)b.data, b.len, &f) == 0 && f.nparams == 1 && !f.vararg &&
          f.ncode >= 6 && f.ncode <= 5 + SL_TUPLE_MAX ? (int)f.ncode - 5 : 0;
  if (k && (ins_at(&f, 0) != INS(OP_NEWTABLE, 1, 0, k) || ins_at(&f, 1) != OP_EXTRAARG ||
            ins_at(&f, 2 + k) != INS(OP_SETLIST, 1, k, 0) ||
            (ins_at(&f, 3 + k) & 0x7fff) != INS(OP_RETURN1, 1, 0, 0) || (ins_at(&f, 4 + k) & 0x7f) != OP_RETURN0))
    k = 0;
  int top = lua_gettop(L);
  for (int j = 0; j < k; j++) {
    uint32_t i = ins_at(&f, 2 + j), op = ((i >> 7) & 0xff) == (uint32_t)(2 + j) ? i & 0x7f : 0xff;
    int sbx = (int)(i >> 15) - 65535;               /* (2^17 - 1) >> 1 */
    kinds[j] = 'c';
    switch (op) {
    case OP_MOVE:                                   /* from the parameter (B 0, k 0) */
      if ((i >> 15) != 0) k = 0;
      kinds[j] = 'p';
      break;
    case OP_LOADI: lua_pushinteger(L, sbx); break;
    case OP_LOADF: lua_pushnumber(L, (lua_Number)sbx); break;
    case OP_LOADFALSE: lua_pushboolean(L, 0); break;
    case OP_LOADTRUE: lua_pushboolean(L, 1); break;
    default: k = 0;
    }
  }
  if (k) kinds[k] = 0;
  else lua_settop(L, top);
  sl_buf_free(&b);
  return k;
}

/* Whether the Lua functions at a and b have the same parameters, code,
 * constants, upvalue descriptors and nested functions: stripped chunks
 * equal but for where each was written. What their upvalues hold is not
 * in their code: the caller checks it. */
static int same_code(lua_State *L, int a, int b) {
  sl_buf x = SL_BUF_INIT, y = SL_BUF_INIT;
  dump_fn(L, a, &x, 1);
  dump_fn(L, b, &y, 1);
  size_t i = x.len ? after_lines((const uint8_t *)x.data, x.len) : 0;
  size_t j = y.len ? after_lines((const uint8_t *)y.data, y.len) : 0;
  int same = i && j && memcmp(x.data, y.data, CHUNK_HDR + 1) == 0 &&
             x.len - i == y.len - j && memcmp(x.data + i, y.data + j, x.len - i) == 0;
  sl_buf_free(&x);
  sl_buf_free(&y);
  return same;
}

int sl_same_code(lua_State *L, int a, int b) {
  return same_code(L, lua_absindex(L, a), lua_absindex(L, b));
}

int sl_tuple_ctor(lua_State *L, int idx, char *kinds) {
  idx = lua_absindex(L, idx);
  return probes_pass(L) ? tuple_ctor_raw(L, idx, kinds) : 0;
}

int sl_reads_param(lua_State *L, int idx, int q) {
  idx = lua_absindex(L, idx);
  if (q < 0 || !probes_pass(L)) return 1;
  return reads_param_raw(L, idx, (unsigned)q);
}

/* sluice._reads_param(fn, q) -> whether fn may read its parameter q
 * (1-based; see bytecode.c): a layer whose reducer never reads its event
 * skips decoding its events. */
static int l_reads_param(lua_State *L) {
  lua_Integer q = luaL_checkinteger(L, 2);
  luaL_argcheck(L, q >= 1 && q <= 255, 2, "parameter out of range");
  lua_pushboolean(L, sl_reads_param(L, 1, (int)q - 1));
  return 1;
}

/* sluice._tuple_ctor(fn) -> kinds, literals... when fn is exactly
 * function(x) return {E1, ..., Ek} end (bytecode.c: kinds is a string of
 * 'p' for x and 'c' for a literal), else false. */
static int l_tuple_ctor(lua_State *L) {
  char kinds[SL_TUPLE_MAX + 1];
  lua_settop(L, 1);
  int k = sl_tuple_ctor(L, 1, kinds);
  if (k == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int nconst = lua_gettop(L) - 1;
  lua_pushstring(L, kinds);
  lua_insert(L, 2);
  return 1 + nconst;
}

/* sluice._same_code(f, g) -> whether f and g are the same code with the
 * same upvalue descriptors (bytecode.c): how a reduce knows its reducer
 * is a count. */
static int l_same_code(lua_State *L) {
  lua_pushboolean(L, sl_same_code(L, 1, 2));
  return 1;
}

void sl_bytecode_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"_reads_param", l_reads_param}, {"_tuple_ctor", l_tuple_ctor},
                                 {"_same_code", l_same_code}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}

/* }-------------------------------------------------------------------- */
