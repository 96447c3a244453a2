/* The argument checks of the public C functions: see argcheck.h. */
#include <math.h>
#include <lauxlib.h>
#include "argcheck.h"

const char *sl_arg_got(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNONE: return lua_pushliteral(L, "no value");
  case LUA_TSTRING: return lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
  case LUA_TNUMBER: {
    if (lua_isinteger(L, idx)) return lua_pushfstring(L, "%I", lua_tointeger(L, idx));
    lua_Number x = lua_tonumber(L, idx);
    if (isnan(x)) return lua_pushliteral(L, "0/0");
    if (isinf(x)) return x > 0 ? lua_pushliteral(L, "math.huge") : lua_pushliteral(L, "-math.huge");
    return lua_pushfstring(L, "%f", x);
  }
  case LUA_TBOOLEAN: return lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
  case LUA_TNIL: return lua_pushliteral(L, "nil");
  case LUA_TUSERDATA:   /* a handle shows as its own __tostring writes it: <stage 3> */
    for (int k = 1; k < SL_H_NKINDS; k++)
      if (sl_handle_test(L, idx, k)) return luaL_tolstring(L, idx, NULL);
    return lua_pushstring(L, luaL_typename(L, idx));
  default: return lua_pushstring(L, luaL_typename(L, idx));
  }
}

int sl_arg_fail(lua_State *L, int idx, const char *fn, const char *what) {
  return luaL_error(L, "%s: %s, got %s", fn, what, sl_arg_got(L, idx));
}

lua_Integer sl_arg_integer(lua_State *L, int idx, lua_Integer min, const char *fn, const char *name) {
  int isint = 0;
  lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
  if (!isint || v < min)
    luaL_error(L, "%s: %s must be an integer >= %I, got %s", fn, name, min, sl_arg_got(L, idx));
  return v;
}

const char *sl_arg_string(lua_State *L, int idx, const char *fn, const char *name) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: %s must be a string, got %s", fn, name, sl_arg_got(L, idx));
  return lua_tostring(L, idx);
}

void sl_arg_present(lua_State *L, int idx, const char *fn, const char *name) {
  if (lua_type(L, idx) == LUA_TNONE) luaL_error(L, "%s: %s is missing", fn, name);
}

sl_handle *sl_arg_self(lua_State *L, int kind, const char *fn, const char *what) {
  sl_handle *h = sl_handle_test(L, 1, kind);
  if (!h) luaL_error(L, "%s: expected a %s as self (call it with ':'), got %s", fn, what, sl_arg_got(L, 1));
  return h;
}
