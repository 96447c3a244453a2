/* outbox: what a Flow stage emits, copied as it is emitted. A value that
 * goes from one stage to the next is a copy made when it is sent; inside
 * a stage the fused loop gathers a batch's output before the stage hands
 * it on, so a table a user function returned and then changed would go
 * out as it is at the end of the batch. Two ways to copy at emission:
 *
 * - sluice._outbox() makes an outbox, a userdata that encodes each event
 *   put into it at once (the bytes that would be sent: the copy is the
 *   encoding) into a batch builder. sluice._put(ob, e) appends one event;
 *   `ob[#ob + 1] = e` does the same for code written for arrays, and #ob
 *   counts the events. A stage callback returns the outbox in place of an
 *   events array, and the stage emits its batch without encoding again.
 * - sluice._snap(t) copies a flat table (scalar keys and values) in C, for
 *   values kept inside the stage (what group_by holds); it returns nothing
 *   for a table that needs a deep copy. */
#include <stdio.h>
#include <lauxlib.h>
#include "codec.h"
#include "outbox.h"

#define OUTBOX_MT "sluice.outbox"

typedef struct outbox {
  sl_batch_builder bb;
  int names;   /* the names index is the userdata's user value */
} outbox;

static outbox *check_outbox(lua_State *L, int idx) { return luaL_checkudata(L, idx, OUTBOX_MT); }

static int l_outbox(lua_State *L) {
  outbox *o = lua_newuserdatauv(L, sizeof *o, 1);
  sl_bb_init(&o->bb);
  o->names = 0;
  luaL_setmetatable(L, OUTBOX_MT);
  return 1;
}

/* Appends the encoding of the value at 2 (stack: ob v ...). */
static int put(lua_State *L, outbox *o) {
  char err[256];
  if (!o->names) {
    sl_encode_names(L);
    lua_setiuservalue(L, 1, 1);
    o->names = 1;
  }
  if (lua_isnil(L, 2)) return luaL_error(L, "an emitted event is nil");
  lua_getiuservalue(L, 1, 1);                       /* stack: ob v ... names */
  int rc = sl_encode_named(L, 2, -1, &o->bb.bytes, "event", err, sizeof err);
  lua_pop(L, 1);
  if (rc == 0) rc = sl_bb_end_event(&o->bb);
  if (rc != 0) {
    lua_pushstring(L, err);
    return lua_error(L);
  }
  return 0;
}

/* sluice._put(ob, v); upvalue 1 is the outbox metatable (compared
 * directly: a look-up by name per event costs more than the encoding). */
static int l_put(lua_State *L) {
  outbox *o = lua_touserdata(L, 1);
  if (!o || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    return luaL_typeerror(L, 1, OUTBOX_MT);
  lua_pop(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  return put(L, o);
}

/* ob[#ob + 1] = v: only appending is allowed. */
static int l_outbox_newindex(lua_State *L) {
  outbox *o = check_outbox(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i != (lua_Integer)o->bb.n + 1)
    return luaL_error(L, "an outbox only appends (index " LUA_INTEGER_FMT " given, %d events held)",
                      (LUAI_UACINT)i, (int)o->bb.n);
  lua_remove(L, 2);                                 /* stack: ob v */
  lua_settop(L, 2);
  return put(L, o);
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
  if (luaL_newmetatable(L, OUTBOX_MT)) luaL_setfuncs(L, mt, 0);   /* stack: sluice mt */
  lua_pushcclosure(L, l_put, 1);
  lua_setfield(L, -2, "_put");
  lua_pushcfunction(L, l_outbox);
  lua_setfield(L, -2, "_outbox");
  lua_pushcfunction(L, l_snap);
  lua_setfield(L, -2, "_snap");
}
