/* A program that embeds Lua 5.4 and loads the sluice module with require
 * (tests/module/module.sh runs it): the host's state becomes the main
 * state, a task runs on a worker, a second state of the process cannot
 * take sluice while the first holds it, nor after it was closed.
 *   usage: module_host MODULE_DIR   (the directory of sluice.so) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>

static lua_State *new_state(const char *dir) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.so", dir);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  return L;
}

/* Runs chunk in L and prints its result, or its error. */
static void run(lua_State *L, const char *name, const char *chunk) {
  if (luaL_dostring(L, chunk) != LUA_OK) printf("%s: error: %s\n", name, lua_tostring(L, -1));
  else printf("%s: %s\n", name, lua_tostring(L, -1));
  lua_settop(L, 0);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODULE_DIR\n", argv[0]);
    return 2;
  }
  lua_State *A = new_state(argv[1]);
  lua_State *B = new_state(argv[1]);
  run(A, "A", "local s = require('sluice'); return s.task(function(x) return 'task ' .. x * 2 end, 21):await()");
  run(A, "A", "local F = require('sluice').flow; "
              "return #F.from_enumerable({1, 2, 3, 4}):partition({stages = 2}):map(function(x) return x end):to_list()"
              " .. ' events through a partition'");
  run(B, "B", "return require('sluice')");
  lua_close(A);
  run(B, "B", "return require('sluice')");
  lua_close(B);
  return 0;
}
