/* probe: a minimal Lua C module, built as BUILD/tests/probe.so and loaded
 * with require by tests/lua/test_runtime.lua. It links against nothing:
 * the Lua API must come from the sluice binary (static Lua is exported
 * with -Wl,-E), in the main state and in worker states alike. */
#include <lua.h>
#include <lauxlib.h>

int luaopen_probe(lua_State *L);

static int probe_add(lua_State *L) {
  lua_pushinteger(L, luaL_checkinteger(L, 1) + luaL_checkinteger(L, 2));
  return 1;
}

int luaopen_probe(lua_State *L) {
  static const luaL_Reg funcs[] = {{"add", probe_add}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
