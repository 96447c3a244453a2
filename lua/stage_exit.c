/* stage_exit: the orderly end of the stages when the script ends (see
 * sl_stage_shutdown in lstage.h). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "buffer.h"
#include "dispatch.h"
#include "hash.h"
#include "stage_int.h"
#include "status.h"

/* ---- exit ------------------------------------------------------------------------------ */

static size_t count_alive(const uint64_t *refs, size_t n) {
  size_t a = 0;
  for (size_t i = 0; i < n; i++) a += st_reg_status(NULL, refs[i]) == 1;
  return a;
}

/* Pumps the main inbox until every stage of refs has ended, or nothing
 * moved for idle_ms, or deadline passes. */
static void wait_stages(lua_State *L, const uint64_t *refs, size_t n, int64_t deadline, int64_t idle_ms) {
  size_t alive = count_alive(refs, n);
  uint64_t seen = atomic_load(&st_consumed_total);
  int64_t still_since = sl_now_ms();
  while (alive > 0 && sl_now_ms() < deadline) {
    sl_rt_pump(L, 10);
    size_t a = count_alive(refs, n);
    uint64_t c = atomic_load(&st_consumed_total);
    if (a != alive || c != seen) still_since = sl_now_ms();
    else if (sl_now_ms() - still_since >= idle_ms) break;
    alive = a;
    seen = c;
  }
}

#define EXIT_DRAIN_MS 5000

/* The orderly end of the stages (run protected: Ctrl-C ends the waits). */
static int shutdown_stages(lua_State *L) {
  int *types;
  size_t n;
  uint64_t *refs = st_live_stages(&types, &n);
  lua_pushlightuserdata(L, refs);                  /* freed by the caller's cleanup */
  lua_setfield(L, LUA_REGISTRYINDEX, "sluice.exit.refs");
  lua_pushlightuserdata(L, types);
  lua_setfield(L, LUA_REGISTRYINDEX, "sluice.exit.types");
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, LUA_REGISTRYINDEX, "sluice.exit.n");
  if (n == 0) return 0;
  /* 1. producers send nothing new; what they hold still goes out, and
   * every stage downstream ends once its producers have (terminate runs) */
  for (size_t i = 0; i < n; i++)
    if (types[i] == T_PRODUCER) st_cast_op(L, refs[i], OP_FINISH, 0);   /* finite sources run to their end */
  wait_stages(L, refs, n, sl_now_ms() + EXIT_DRAIN_MS, 100);
  for (size_t i = 0; i < n; i++)
    if (types[i] == (T_PRODUCER | EXIT_FINITE) && st_reg_status(NULL, refs[i]) == 1) {
      char *name = st_reg_name(refs[i]);
      fprintf(stderr, "sluice: at exit, the source %s%s%s had not reached its end after %d ms; it stops now "
              "(await the pipeline's last stage to get all of it)\n", name ? "'" : "",
              name ? name : "stage", name ? "'" : "", EXIT_DRAIN_MS);
      free(name);
    }
  /* 2. what is left (consumers that outlive their producers, stages with
   * nobody to take their events) stops with "shutdown" */
  for (size_t i = 0; i < n; i++)
    if (st_reg_status(NULL, refs[i]) == 1) st_cast_op(L, refs[i], OP_SHUTDOWN, 0);
  /* a callback that never returns (an endless loop) is interrupted: its
   * stage fails with "interrupted" and the worker takes the stop */
  if (count_alive(refs, n) > 0) sl_rt_interrupt_workers();
  wait_stages(L, refs, n, sl_now_ms() + 500, 500);
  if (count_alive(refs, n) > 0) sl_rt_interrupt_workers();
  wait_stages(L, refs, n, sl_now_ms() + 500, 500);
  return 0;
}

void sl_stage_shutdown(lua_State *L) {
  if (!st_places) return;
  atomic_store(&st_shutting_down, 1);
  int top = lua_gettop(L);
  lua_pushcfunction(L, shutdown_stages);
  int interrupted = lua_pcall(L, 0, 0, 0) != LUA_OK;
  lua_getfield(L, LUA_REGISTRYINDEX, "sluice.exit.refs");
  uint64_t *refs = lua_touserdata(L, -1);
  lua_getfield(L, LUA_REGISTRYINDEX, "sluice.exit.types");
  int *types = lua_touserdata(L, -1);
  lua_getfield(L, LUA_REGISTRYINDEX, "sluice.exit.n");
  size_t n = (size_t)lua_tointeger(L, -1);
  lua_settop(L, top);
  if (interrupted) {   /* Ctrl-C during the drain: stop the rest now */
    sl_rt_g.interrupted = 0;
    lua_sethook(L, NULL, 0, 0);
    for (size_t i = 0; refs && i < n; i++)
      if (st_reg_status(NULL, refs[i]) == 1) st_cast_op(L, refs[i], OP_SHUTDOWN, 0);
    int64_t deadline = sl_now_ms() + 500;
    while (refs && count_alive(refs, n) > 0 && sl_now_ms() < deadline) {
      sl_msg *m = sl_inbox_wait(sl_sched_main(sl_rt_g.sched), 10);
      if (m && !sl_stage_handle(L, PLACE_MAIN, m)) sl_msg_free(m);
    }
  }
  size_t stuck = 0;
  for (size_t i = 0; refs && i < n; i++) {
    if (st_reg_status(NULL, refs[i]) != 1) continue;
    char *name = st_reg_name(refs[i]);
    int p = sl_ref_place(refs[i]);
    char where[32];
    if (p == PLACE_MAIN) snprintf(where, sizeof where, "the main thread");
    else snprintf(where, sizeof where, "worker %d", p + 1);
    if (stuck++ < 8) {
      if (name) fprintf(stderr, "sluice: at exit, stage '%s' on %s did not stop (busy in a callback); what it held is lost\n", name, where);
      else fprintf(stderr, "sluice: at exit, stage %llu on %s did not stop (busy in a callback); what it held is lost\n",
                   (unsigned long long)(refs[i] & 0xffffffffffffULL), where);
    }
    free(name);
  }
  if (stuck > 8) fprintf(stderr, "sluice: at exit, %zu more stages did not stop\n", stuck - 8);
  uint64_t lost = atomic_load(&st_lost_at_exit);
  if (lost) fprintf(stderr, "sluice: at exit, %llu events on their way to stages that had stopped were dropped\n",
                    (unsigned long long)lost);
  free(refs);
  free(types);
}
