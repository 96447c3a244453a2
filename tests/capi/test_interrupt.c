/* Runtime interruption of worker states through the C API that a stage
 * shutdown uses: sl_rt_interrupt_workers raises "interrupted" once in the
 * Lua code a worker runs and the worker goes on with its next message;
 * sl_rt_close stops workers in endless loops within its time limit. */
#include <string.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "check.h"
#include "rt.h"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* Runs chunk on L; returns its first result as a string ("" if none),
 * or the error message. */
static const char *run(lua_State *L, const char *chunk) {
  lua_settop(L, 0);
  if (luaL_loadstring(L, chunk) != LUA_OK || sl_pcall(L, 0, 1) != LUA_OK)
    return lua_tostring(L, 1);
  return lua_isnil(L, -1) ? "" : luaL_tolstring(L, -1, NULL);
}

/* Interrupts the workers until task T has returned (the task may take a
 * moment to start, and a worker still finishing an earlier task counts
 * as busy too); returns the largest number interrupted at once. */
static int interrupt_until_done(lua_State *L) {
  int most = 0;
  /* let the task reach its pcall first: an interrupt that lands while the
   * worker is still starting it (slow under the sanitizers) would be
   * raised outside the pcall */
  sleep_ms(200);
  for (int k = 0; k < 500; k++) {
    int n = sl_rt_interrupt_workers();
    if (n > most) most = n;
    if (strcmp(run(L, "sluice.sleep(10) return tostring(T:done())"), "true") == 0) break;
  }
  return most;
}

static void test_interrupt_and_close(void) {
  sl_pool *pool;
  lua_State *L = sl_rt_newstate(&pool);
  CHECK(L != NULL);
  if (!L) return;
  CHECK_INT(sl_rt_open(L, 2), 0);
  CHECK_INT(sl_rt_interrupt_workers(), 0);   /* nobody busy */
  /* worker 1: a loop that reports the error it catches; worker 2 idle */
  CHECK_STR(run(L, "T = sluice.task(function()"
                   "  local ok, e = pcall(function() while true do end end)"
                   "  return e end) return 'started'"), "started");
  CHECK(interrupt_until_done(L) >= 1);
  CHECK_STR(run(L, "return T:await(5000)"), "interrupted");
  /* the worker is usable again */
  CHECK_STR(run(L, "return sluice.task(function() return 6 * 7 end):await(5000)"), "42");
  /* a sleeping worker wakes */
  CHECK_STR(run(L, "T = sluice.task(function() return pcall(sluice.sleep, 600000) end)"
                   " return 'started'"), "started");
  CHECK(interrupt_until_done(L) >= 1);
  CHECK_STR(run(L, "local ok, e = T:await(5000) return tostring(ok) .. ' ' .. e"),
            "false interrupted");
  /* at close, an endless loop that catches errors is stopped all the same */
  CHECK_STR(run(L, "sluice.task(function() while true do pcall(function() while true do end end) end end)"
                   " return 'started'"), "started");
  sleep_ms(100);
  lua_settop(L, 0);
  CHECK_INT(sl_rt_close(2000), 0);
  lua_close(L);
  sl_pool_free(pool);
}

int main(void) {
  RUN(test_interrupt_and_close);
  return CHECK_SUMMARY();
}
