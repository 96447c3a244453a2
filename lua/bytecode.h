/* bytecode: reading a Lua 5.4 function's binary chunk without loading
 * it (bytecode.c). */
#ifndef SLUICE_BYTECODE_H
#define SLUICE_BYTECODE_H
#include <stddef.h>
#include <lua.h>

/* Whether the binary chunk p[0..n) passes the decoder's pre-check: every
 * count fits in the bytes left, the counts lua_load takes on trust agree,
 * functions nest at most 256 deep. */
int sl_bytecode_ok(const char *p, size_t n);
/* Whether the function at idx may read its parameter q (0-based): 0 only
 * when its instructions never name that register (see bytecode.c); 1 for
 * a C function, a vararg function, one that makes closures, or anything
 * the walk does not know. */
int sl_reads_param(lua_State *L, int idx, int q);
/* Whether the function at idx is exactly function(x) return {E1, ...,
 * Ek} end, 1 <= k <= SL_TUPLE_MAX, each E the parameter x or a literal
 * boolean or small number ({word, 1}, {ts, ts}): writes k kinds ('p' for
 * x, 'c' for a literal) and a NUL into kinds, pushes the literals in
 * order and returns k; else returns 0 and pushes nothing. */
#define SL_TUPLE_MAX 8
int sl_tuple_ctor(lua_State *L, int idx, char *kinds);
/* Whether the Lua functions at a and b are the same code (parameters,
 * instructions, constants, nested functions) with the same upvalue
 * descriptors (what the upvalues hold is the caller's to check): 0 for a
 * C function or anything else. */
int sl_same_code(lua_State *L, int a, int b);
/* Adds sluice._reads_param, sluice._tuple_ctor and sluice._same_code to the sluice table at
 * the stack top. */
void sl_bytecode_open(lua_State *L);
#endif
