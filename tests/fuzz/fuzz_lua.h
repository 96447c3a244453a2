/* fuzz_lua: what the fuzz targets that use a Lua state share: the state,
 * a failure that libFuzzer reports (abort), and deep equality of two
 * decoded values. */
#ifndef SLUICE_FUZZ_LUA_H
#define SLUICE_FUZZ_LUA_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "codec.h"

static lua_State *L;

static void fail(const char *what) {
  fprintf(stderr, "fuzz: %s\n", what);
  abort();
}

static lua_State *newstate(void) {
  lua_State *s = luaL_newstate();
  if (!s) fail("no memory for a state");
  luaL_openlibs(s);
  return s;
}

/* Deep equality of the values at a and b; seen (a table at index seen)
 * maps each table/function/userdata of a to its partner in b. */
static int equal(int a, int b, int seen, int depth) {
  int ta = lua_type(L, a), tb = lua_type(L, b);
  if (ta != tb) return 0;
  if (depth > SL_CODEC_MAX_DEPTH + 10) fail("comparison deeper than the codec allows");
  lua_checkstack(L, 16);
  switch (ta) {
  case LUA_TNIL: return 1;
  case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
  case LUA_TNUMBER:
    if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
    if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
    else {
      lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
      return memcmp(&x, &y, sizeof x) == 0;
    }
  case LUA_TSTRING: {
    size_t la, lb;
    const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
  }
  default: break;
  }
  /* reference types: the same object (a module or a module's function
   * decodes to the receiver's own) is equal; a seen before must map to
   * the same b */
  if (lua_rawequal(L, a, b)) return 1;
  /* reference types: a seen before must map to the same b */
  lua_pushvalue(L, a);
  if (lua_rawget(L, seen) != LUA_TNIL) {
    int same = lua_rawequal(L, -1, b);
    lua_pop(L, 1);
    return same;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, a);
  lua_pushvalue(L, b);
  lua_rawset(L, seen);
  if (ta == LUA_TUSERDATA) {
    sl_handle *ha = sl_handle_test(L, a, 0), *hb = sl_handle_test(L, b, 0);
    if (!ha || !hb) return 0;
    return ha->kind == hb->kind && ha->id == hb->id && ha->aux == hb->aux;
  }
  if (ta == LUA_TFUNCTION) {
    if (lua_iscfunction(L, a) != lua_iscfunction(L, b)) return 0;
    if (lua_iscfunction(L, a)) return lua_tocfunction(L, a) == lua_tocfunction(L, b);
    for (int i = 1;; i++) {
      const char *na = lua_getupvalue(L, a, i);
      const char *nb = lua_getupvalue(L, b, i);
      if (!na || !nb) {
        lua_pop(L, (na != NULL) + (nb != NULL));
        return !na && !nb;
      }
      int top = lua_gettop(L);
      int eq = equal(top - 1, top, seen, depth + 1);
      lua_pop(L, 2);
      if (!eq) return 0;
    }
  }
  if (ta != LUA_TTABLE) return 0;
  /* same number of keys; each key of a that is not a reference type must
   * be in b with an equal value; keys that are tables etc. are counted */
  lua_Integer na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, b)) nb++, lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, a)) {
    na++;
    int k = lua_gettop(L) - 1;
    int kt = lua_type(L, k);
    if (kt == LUA_TTABLE || kt == LUA_TFUNCTION || kt == LUA_TUSERDATA) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, k);
    lua_rawget(L, b);
    int top = lua_gettop(L);
    int eq = equal(top - 1, top, seen, depth + 1);
    lua_pop(L, 2);
    if (!eq) {
      lua_pop(L, 1);
      return 0;
    }
  }
  if (na != nb) return 0;
  lua_getmetatable(L, a) ? (void)0 : lua_pushnil(L);
  lua_getmetatable(L, b) ? (void)0 : lua_pushnil(L);
  int top = lua_gettop(L);
  int eq = equal(top - 1, top, seen, depth + 1);
  lua_pop(L, 2);
  return eq;
}

#endif
