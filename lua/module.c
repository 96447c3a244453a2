/* module: sluice as a Lua C module (build/sluice.so): `require "sluice"`
 * from lua5.4 or any program that embeds Lua 5.4 gives the same table as
 * the sluice binary's global `sluice`.
 *
 * The state that requires it becomes the main state; the workers (their
 * count from SLUICE_WORKERS, else the online CPUs) start at once. The host
 * keeps its state as it made it (see sl_rt_open_host). When the host
 * closes that state, a finalizer in its registry ends the stages and
 * stops the workers, as the binary does at exit. One runtime per process:
 * a second state cannot require sluice while the first holds it, and a
 * closed runtime does not open again.
 *
 * The library stays loaded until the process ends (RTLD_NODELETE): a
 * worker stuck in a C call at close still runs its code, and the engine's
 * thread-local data must outlive any unloading of the module. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include "rt.h"

/* How long the workers get at close to return from what they run (the
 * binary's exit grace: Lua code is interrupted at once). */
#define CLOSE_GRACE_MS 1000

static const char SENTINEL_KEY[] = "sluice.module.sentinel";

enum { RT_NONE, RT_OPEN, RT_CLOSED };
static int rt_state = RT_NONE;
static lua_State *rt_owner;   /* the main thread of the state that holds it */

static int sentinel_gc(lua_State *L) {
  (void)L;
  if (rt_state != RT_OPEN) return 0;
  rt_state = RT_CLOSED;
  /* when a worker is stuck in a C call nothing is freed: it may still
   * use the runtime, and the host goes on closing its own state */
  sl_rt_close(CLOSE_GRACE_MS);
  return 0;
}

/* The worker count: SLUICE_WORKERS (1..1024), else the online CPUs. */
static int default_workers(lua_State *L) {
  const char *e = getenv("SLUICE_WORKERS");
  if (e && *e) {
    char *end;
    long n = strtol(e, &end, 10);
    if (*end == '\0' && n >= 1 && n <= 1024) return (int)n;
    luaL_error(L, "sluice: SLUICE_WORKERS must be a number from 1 to 1024, got '%s'", e);
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? (int)n : 1;
}

/* Keeps this library mapped until the process ends. */
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void *)pin_library, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

__attribute__((visibility("default"))) int luaopen_sluice(lua_State *L);

__attribute__((visibility("default"))) int luaopen_sluice(lua_State *L) {
  luaL_checkversion(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (rt_state == RT_OPEN && main == rt_owner) {
    /* package.loaded.sluice was cleared: the same table again */
    lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
    lua_getiuservalue(L, -1, 1);
    return 1;
  }
  if (rt_state == RT_OPEN)
    return luaL_error(L, "sluice: another Lua state of this process already uses sluice "
                         "(one state per process requires it; its workers serve that state)");
  if (rt_state == RT_CLOSED)
    return luaL_error(L, "sluice: the Lua state that used sluice in this process was closed; "
                         "sluice opens once per process");
  int workers = default_workers(L);
  pin_library();
  if (sl_rt_open_host(L, workers) != 0)
    return luaL_error(L, "sluice: cannot start %d worker threads", workers);
  rt_state = RT_OPEN;
  rt_owner = main;
  /* stack: sluice. The sentinel keeps the table as its user value. */
  lua_newuserdatauv(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
  return 1;
}
