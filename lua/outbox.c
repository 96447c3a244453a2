/* outbox: what a Flow stage emits, copied as it is emitted. A value that
 * goes from one stage to the next is a copy made when it is sent; inside
 * a stage the fused loop gathers a batch's output before the stage hands
 * it on, so a table a user function returned and then changed would go
 * out as it is at the end of the batch. Two ways to copy at emission:
 *
 * - sluice._outbox() makes an outbox, a userdata that encodes each event
 *   put into it at once (the bytes that would be sent: the copy is the
 *   encoding) into a batch builder. `ob[#ob + 1] = e` appends one event
 *   (code written for arrays works unchanged) and #ob counts them;
 *   sluice._putter(ob) returns a function put(e) that appends e to ob,
 *   which the fused loop calls; sluice._tuple_putter(ob, map, kinds,
 *   ...) one that appends map(x) for a map that only builds a tuple of x
 *   and literals, writing its bytes from x with no table; sluice._put_array(ob, t) appends t's
 *   elements (a flat_map's array), sluice._put_pairs(ob, t) a table's
 *   pairs as {k, v} events, sluice._put_split(ob, t, n) a keyed
 *   accumulator cut by partition. A stage callback returns the outbox in
 *   place of an events array, and the stage emits its batch without
 *   encoding it again.
 * - sluice._snap(t) copies a flat table (scalar keys and values) in C, for
 *   values kept inside the stage (what group_by holds); it returns nothing
 *   for a table that needs a deep copy. */
#include <stdio.h>
#include <lauxlib.h>
#include "codec.h"
#include "outbox.h"

#define OUTBOX_MT "sluice.outbox"
enum { UV_NAMES = 1, UV_PUTTER = 2 };   /* the outbox's user values */

typedef struct outbox {
  sl_batch_builder bb;
  const sl_modset *mods;   /* of the names index in UV_NAMES, once fetched */
} outbox;

/* The outbox at idx. The functions of this file (but a putter's put) have
 * the outbox metatable as upvalue 1, so that checking an outbox, once per
 * array or event the fused loop emits, is a comparison and not
 * luaL_checkudata's lookup of the metatable by name. */
static outbox *check_outbox(lua_State *L, int idx) {
  outbox *o = lua_touserdata(L, idx);
  if (o && lua_getmetatable(L, idx)) {
    int same = lua_topointer(L, -1) == lua_topointer(L, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same) return o;
  }
  return luaL_checkudata(L, idx, OUTBOX_MT);   /* not an outbox: its error */
}

static int l_outbox(lua_State *L) {
  outbox *o = lua_newuserdatauv(L, sizeof *o, 2);
  sl_bb_init(&o->bb);
  o->mods = NULL;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return 1;
}

/* Raises msg without a location: the callers are a flow's generated code
 * and its own modules, which the error must not point into. */
static int fail(lua_State *L, const char *msg) {
  lua_pushstring(L, msg);
  return lua_error(L);
}

/* Pushes the names index the outbox at ob encodes with, fetching it (and
 * its set of module tables) the first time. */
static void push_names(lua_State *L, int ob, outbox *o) {
  if (lua_getiuservalue(L, ob, UV_NAMES) == LUA_TNIL) {   /* stack: ... names */
    lua_pop(L, 1);
    sl_encode_names(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, ob, UV_NAMES);
    o->mods = sl_encode_modset(L, lua_gettop(L));
  }
}

/* Appends the encoding of the value at idx to the outbox at ob (a stack
 * or upvalue index). */
static int put(lua_State *L, int ob, outbox *o, int idx) {
  char err[256];
  int t = lua_type(L, idx), rc;
  if (t == LUA_TNIL) return fail(L, "an emitted event is nil");
  if (t == LUA_TTABLE) {   /* a short array of scalars first: the common table event */
    if (!o->mods) {
      push_names(L, ob, o);
      lua_pop(L, 1);
    }
    rc = sl_encode_array_to(L, idx, o->mods, &o->bb.bytes);
  } else {
    rc = sl_encode_scalar_to(L, idx, &o->bb.bytes);   /* strings, numbers, booleans */
  }
  if (rc == 0) {
    if (sl_bb_end_event(&o->bb) != 0) return fail(L, "not enough memory");
    return 0;
  }
  if (rc < 0) return fail(L, "not enough memory");
  idx = lua_absindex(L, idx);
  push_names(L, ob, o);
  rc = sl_encode_named(L, idx, -1, &o->bb.bytes, "event", err, sizeof err);
  lua_pop(L, 1);
  if (rc == 0) rc = sl_bb_end_event(&o->bb);
  if (rc != 0) return fail(L, err);
  return 0;
}

/* put(v): an outbox's putter, the outbox its upvalue 1. */
static int l_putter_put(lua_State *L) {
  luaL_checkany(L, 1);
  return put(L, lua_upvalueindex(1), lua_touserdata(L, lua_upvalueindex(1)), 1);
}

/* sluice._putter(ob) -> put: a function that appends its argument to ob
 * (the fused loop's emit: no check of ob per event). */
static int l_putter(lua_State *L) {
  check_outbox(L, 1);
  if (lua_getiuservalue(L, 1, UV_PUTTER) == LUA_TFUNCTION) return 1;
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_putter_put, 1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, UV_PUTTER);
  return 1;
}

/* put(x) of sluice._tuple_putter: upvalues the outbox, the map, the
 * kinds ('p' x, 'c' a literal) and the literals. A scalar x makes the
 * event {E1, ..., Ek} written as the encoder writes that table (its
 * values are scalars: an array and no pairs); any other x goes through
 * the map, and its table is put as any event is. */
static int l_tuple_put(lua_State *L) {
  outbox *o = lua_touserdata(L, lua_upvalueindex(1));
  int t = lua_type(L, 1);
  if (t == LUA_TNUMBER || t == LUA_TSTRING || t == LUA_TBOOLEAN) {
    int rc = sl_encode_tuple_to(L, lua_tostring(L, lua_upvalueindex(3)), 1, 4, &o->bb.bytes);
    if (rc == 0 && sl_bb_end_event(&o->bb) == 0) return 0;
    return fail(L, "not enough memory");   /* (the literals are scalars: only memory fails) */
  }
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, 1, 1);                                /* stack: the map's table */
  return put(L, lua_upvalueindex(1), o, 1);
}

/* sluice._tuple_putter(ob, map, kinds, literals...) -> put: put(x)
 * appends map(x) to ob, where map is exactly function(x) return {E1,
 * ..., Ek} end (sluice._tuple_ctor gave kinds and the literals): for a
 * scalar x the tuple is encoded from x and the literals, with no table;
 * the bytes are those of the table map(x). */
static int l_tuple_putter(lua_State *L) {
  check_outbox(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  size_t klen;
  const char *kinds = luaL_checklstring(L, 3, &klen);
  int nconst = 0;
  for (size_t j = 0; j < klen; j++) nconst += kinds[j] == 'c';
  luaL_argcheck(L, klen >= 1 && klen < 128 && lua_gettop(L) == 3 + nconst, 3, "kinds and literals do not agree");
  for (int c = 0; c < nconst; c++) {
    int tc = lua_type(L, 4 + c);
    luaL_argcheck(L, tc == LUA_TNUMBER || tc == LUA_TBOOLEAN || tc == LUA_TSTRING, 4 + c, "a literal must be a scalar");
  }
  lua_pushcclosure(L, l_tuple_put, 3 + nconst);
  return 1;
}

/* sluice._put_array(ob, t): appends t[1], ..., t[#t] (as a loop over
 * them would: # and indexing respect metamethods; a table without a
 * metatable is read raw) -- one call for a flat_map's array. */
static int l_put_array(lua_State *L) {
  outbox *o = check_outbox(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  int raw = !lua_getmetatable(L, 2);
  lua_Integer n;
  if (raw) {
    n = (lua_Integer)lua_rawlen(L, 2);
  } else {
    lua_pop(L, 1);
    lua_len(L, 2);
    int isint;
    n = lua_tointegerx(L, -1, &isint);
    if (!isint) return fail(L, "the length of an emitted array must be an integer");
    lua_pop(L, 1);
  }
  for (lua_Integer i = 1; i <= n; i++) {
    if (raw) lua_rawgeti(L, 2, i);
    else lua_geti(L, 2, i);
    put(L, 1, o, 3);
    lua_settop(L, 2);
  }
  return 0;
}

/* ob[#ob + 1] = v: only appending is allowed. */
static int l_outbox_newindex(lua_State *L) {
  outbox *o = check_outbox(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i != (lua_Integer)o->bb.n + 1) {
    lua_pushfstring(L, "an outbox only appends (index %I given, %d events held)", (LUAI_UACINT)i, (int)o->bb.n);
    return lua_error(L);
  }
  return put(L, 1, o, 3);
}

static int l_outbox_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_outbox(L, 1)->bb.n);
  return 1;
}

static int l_outbox_gc(lua_State *L) {
  sl_bb_free(&check_outbox(L, 1)->bb);
  return 0;
}

int sl_outbox_take(lua_State *L, int idx, sl_batch *out, char *err, size_t errlen) {
  outbox *o = luaL_testudata(L, idx, OUTBOX_MT);
  if (!o) return 0;
  if (sl_bb_finish(&o->bb, out) != 0) {
    snprintf(err, errlen, "not enough memory");
    return -1;
  }
  return 1;
}

/* sluice._put_pairs(ob, t): appends {k, v} for each pair of t, in next's
 * order (what pairs(t) gives for a table without a metatable): a reduce's
 * accumulator going out as pairs, with no table made per pair where k and
 * v are scalars. */
static int l_put_pairs(lua_State *L) {
  outbox *o = check_outbox(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 2)) {                          /* stack: ob t k v */
    int rc = sl_encode_pair_to(L, 3, 4, &o->bb.bytes);
    if (rc < 0 || (rc == 0 && sl_bb_end_event(&o->bb) != 0)) return fail(L, "not enough memory");
    if (rc > 0) {   /* a table or function inside: the pair as a table */
      lua_createtable(L, 2, 0);
      lua_pushvalue(L, 3);
      lua_rawseti(L, 5, 1);
      lua_pushvalue(L, 4);
      lua_rawseti(L, 5, 2);
      put(L, 1, o, 5);
    }
    lua_settop(L, 3);
  }
  return 0;
}

/* sluice._put_split(ob, t, n) -> true, or false (nothing appended): a
 * keyed combining layer's accumulator t cut by partition and put into ob
 * as the events {p, part} for p in 1..n (sl_encode_split_to), with no
 * table made per partition; false when a key or value is not a scalar. */
static int l_put_split(lua_State *L) {
  outbox *o = check_outbox(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 1 && n <= INT32_MAX, 3, "must be a partition count >= 1");
  lua_settop(L, 2);
  int rc = sl_encode_split_to(L, 2, (uint32_t)n, &o->bb);
  if (rc < 0) return fail(L, "not enough memory");
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* sluice._snap(t) -> a copy of the flat table t, or nothing when t holds
 * a table or a function (as a key or value); any other value is returned
 * as it is. */
static int l_snap(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE) {
    lua_settop(L, 1);
    return 1;
  }
  lua_settop(L, 1);
  lua_Unsigned n = lua_rawlen(L, 1);
  lua_createtable(L, n > 1u << 24 ? 0 : (int)n, 0);   /* 2: the copy */
  lua_pushnil(L);
  while (lua_next(L, 1)) {                           /* stack: t c k v */
    int tv = lua_type(L, -1);
    if (tv == LUA_TTABLE || tv == LUA_TFUNCTION || lua_type(L, -2) == LUA_TTABLE) return 0;
    lua_pushvalue(L, -2);
    lua_insert(L, -2);                               /* stack: t c k k v */
    lua_rawset(L, 2);
  }
  return 1;
}

void sl_outbox_open(lua_State *L) {
  static const luaL_Reg mt[] = {
    {"__newindex", l_outbox_newindex}, {"__len", l_outbox_len}, {"__gc", l_outbox_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, OUTBOX_MT)) {   /* stack: sluice mt */
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, mt, 1);
  }
  static const luaL_Reg fns[] = {
    {"_putter", l_putter}, {"_tuple_putter", l_tuple_putter}, {"_put_array", l_put_array}, {"_put_pairs", l_put_pairs}, {"_put_split", l_put_split},
    {"_outbox", l_outbox},
    {NULL, NULL}};
  lua_pushvalue(L, -2);
  lua_insert(L, -2);                              /* stack: sluice sluice mt */
  luaL_setfuncs(L, fns, 1);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_snap);
  lua_setfield(L, -2, "_snap");
}
