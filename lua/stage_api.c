/* stage_api: the sluice.* stage functions and stage, subscription and
 * "from" handle methods; the stage set of one REPL entry. Their option
 * checks: stage_opts.c. */
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
#include "argcheck.h"
#include "status.h"

/* ---- the stage set of one REPL entry ----------------------------------------------------- */

/* Stages started by the main thread since sl_stage_forget_started: what
 * Ctrl-C stops (main thread only). */
static uint64_t *started;
static size_t nstarted, capstarted;

static void note_started(uint64_t ref) {
  if (nstarted == capstarted) {
    size_t cap = capstarted ? capstarted * 2 : 16;
    uint64_t *p = realloc(started, cap * sizeof *p);
    if (!p) return;   /* only Ctrl-C's reach shrinks */
    started = p;
    capstarted = cap;
  }
  started[nstarted++] = ref;
}

void sl_stage_forget_started(void) { nstarted = 0; }

void sl_stage_interrupt_started(void) {
  for (size_t i = 0; i < nstarted; i++)
    if (st_reg_status(NULL, started[i]) == 1) sl_rt_interrupt_running(started[i]);
}

void sl_stage_stop_started(lua_State *L) {
  lua_pushliteral(L, "shutdown");
  int reason = lua_gettop(L);
  for (size_t i = 0; i < nstarted; i++)
    if (st_reg_status(NULL, started[i]) == 1) st_cast_op(L, started[i], OP_STOP, reason);
  lua_pop(L, 1);
  /* main-thread stages stop when the main inbox is pumped; a callback
   * still running (an endless loop) is interrupted, again every 50 ms */
  int64_t deadline = sl_now_ms() + 1000, next = 0;
  for (size_t i = 0; i < nstarted; i++)
    while (st_reg_status(NULL, started[i]) == 1 && sl_now_ms() < deadline) {
      if (sl_now_ms() >= next) {
        sl_stage_interrupt_started();
        next = sl_now_ms() + 50;
      }
      sl_rt_pump(L, 10);
    }
  nstarted = 0;
}

/* sluice.start(spec, arg [, opts]) -> stage */
static int l_start(lua_State *L) {
  const char *fn = "sluice.start";
  if (!lua_istable(L, 1)) sl_arg_fail(L, 1, fn, "spec must be a table");
  lua_settop(L, 3);
  if (!st_is_main_thread(L)) return luaL_error(L, "%s: only the main thread may start stages", fn);
  lua_getfield(L, 1, "type");
  const char *tn = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  int type = -1;
  for (int i = 0; tn && type_names[i]; i++)
    if (strcmp(tn, type_names[i]) == 0) type = i;
  if (type < 0)
    return luaL_error(L, "%s: spec.type must be \"producer\", \"producer_consumer\" or \"consumer\", got %s", fn,
                      st_push_got(L, -1));
  lua_pop(L, 1);
  const char *need = type == T_PRODUCER ? "handle_demand" : "handle_events";
  lua_getfield(L, 1, need);
  if (!lua_isfunction(L, -1)) return luaL_error(L, "%s: a %s needs a %s function", fn, type_names[type], need);
  lua_pop(L, 1);
  static const char *const cbs[] = {"init", "handle_demand", "handle_events", "handle_info", "handle_cast",
                                    "handle_call", "handle_subscribe", "handle_cancel", "terminate", NULL};
  for (int i = 0; cbs[i]; i++) {
    lua_getfield(L, 1, cbs[i]);
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
      return luaL_error(L, "%s: spec.%s must be a function, got %s", fn, cbs[i], luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  st_check_start_opts(L, 3, type);                    /* stack: spec arg opts nopts */
  int nopts = lua_gettop(L);
  lua_getfield(L, nopts, "_main");
  int p;
  if (lua_toboolean(L, -1)) {
    p = PLACE_MAIN;
  } else {
    lua_getfield(L, nopts, "worker");
    if (lua_isinteger(L, -1)) p = (int)lua_tointeger(L, -1) - 1;
    else p = st_place_of(PLACE_MAIN)->rr++ % sl_rt_g.nworkers;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 3);                        /* stack: ... nopts t */
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "spec");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "arg");
  lua_pushvalue(L, nopts);
  lua_setfield(L, -2, "opts");
  uint64_t ref = sl_ref_make(sl_rt_id(), p);
  sl_msg *m;
  if (p == PLACE_MAIN) {
    m = st_msg(M_START, ref, 0, 0);
    m->n = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    m = st_encode_msg(L, -1, M_START, ref, fn);
    sl_rt_attach_snapshot(L, m);
  }
  uint64_t waiter = sl_rt_id();
  m->from = waiter;
  lua_getfield(L, nopts, "name");
  lua_getfield(L, nopts, "_finite");
  st_reg_add(ref, lua_tostring(L, -2), type, lua_toboolean(L, -1));
  lua_pop(L, 2);
  note_started(ref);
  st_post(ref, m);
  sl_msg *r = st_wait_reply(L, waiter, -1, 0, fn);
  int ok = (int)r->n;
  if (!ok) {
    char err[256];
    if (sl_decode(L, r->data, r->len, err, sizeof err) != 0) lua_pushstring(L, err);
    sl_msg_free(r);
    if (lua_type(L, -1) != LUA_TSTRING) return lua_error(L);   /* an error value raised as is */
    return luaL_error(L, "%s: %s", fn, lua_tostring(L, -1));
  }
  sl_msg_free(r);
  st_push_stage(L, ref);
  return 1;
}

/* sluice.subscribe(consumer, producer [, opts]) -> subscription */
static int l_subscribe(lua_State *L) {
  const char *fn = "sluice.subscribe";
  st_check_stage_arg(L, 1, fn, "the consumer");
  st_check_stage_arg(L, 2, fn, "the producer");
  st_check_sub_opts(L, fn, 3, 0);
  uint64_t consumer = sl_handle_test(L, 1, SL_H_STAGE)->id;
  uint64_t producer = sl_handle_test(L, 2, SL_H_STAGE)->id;
  if (st_reg_type(consumer) == T_PRODUCER)
    return luaL_error(L, "%s: the consumer must be a consumer or a producer_consumer, got a producer", fn);
  if (st_reg_type(producer) == T_CONSUMER)
    return luaL_error(L, "%s: the producer must be a producer or a producer_consumer, got a consumer", fn);
  /* From the main thread, returns once a worker consumer has sent the
   * subscribe (as GenStage's sync_subscribe), so that what the main thread
   * sends the producer next arrives behind it. A consumer living on the
   * main thread subscribes when the main thread next st_waits; inside a
   * callback the subscription is asynchronous. */
  uint64_t ack = st_is_main_thread(L) && sl_ref_place(consumer) != PLACE_MAIN ? sl_rt_id() : 0;
  lua_createtable(L, 0, 2);                        /* stack: ... nopts t */
  lua_insert(L, -2);
  lua_setfield(L, -2, "opts");
  lua_pushinteger(L, (lua_Integer)ack);
  lua_setfield(L, -2, "ack");
  sl_msg *m = st_encode_msg(L, -1, M_SUBSCRIBE_TO, consumer, fn);
  uint64_t id = sl_rt_id();
  m->from = producer;
  m->n = (int64_t)id;
  st_post(consumer, m);
  if (ack) {
    sl_msg *r = st_wait_reply(L, ack, -1, consumer, NULL);
    if (r) sl_msg_free(r);
  }
  sl_handle_push(L, SL_H_SUB, id, consumer);
  return 1;
}

/* sluice.self() -> the stage whose callback is running */
static int l_self(lua_State *L) {
  stage *s = st_current_stage(L);
  if (!s) return luaL_error(L, "sluice.self: not inside a stage callback");
  st_push_stage(L, s->ref);
  return 1;
}

/* sluice.whereis(name) -> stage or nil */
static int l_whereis(lua_State *L) {
  uint64_t ref = st_reg_whereis(sl_arg_string(L, 1, "sluice.whereis", "name"));
  if (!ref) return 0;
  st_push_stage(L, ref);
  return 1;
}

static uint64_t check_stage(lua_State *L, const char *fn) {
  return sl_arg_self(L, SL_H_STAGE, fn, "stage")->id;
}

/* stage:send(msg): handle_info, behind the events a producer emitted before */
static int l_stage_send(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:send");
  sl_arg_present(L, 2, "stage:send", "the message");
  st_post(ref, st_encode_msg(L, 2, M_INFO, ref, "stage:send"));
  return 0;
}

/* stage:send_after(ms, msg) -> timer: stage:send after ms, on the
 * target's place */
static int l_stage_send_after(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:send_after");
  lua_Integer ms = sl_arg_integer(L, 2, 0, "stage:send_after", "ms");
  sl_arg_present(L, 3, "stage:send_after", "the message");
  sl_msg *m = st_encode_msg(L, 3, M_INFO, ref, "stage:send_after");
  int p = sl_ref_place(ref);
  uint64_t id = sl_inbox_after(st_place_inbox(p), ms, m);
  sl_handle_push(L, SL_H_TIMER, id, (uint64_t)(p + 1));
  return 1;
}

/* timer:cancel() -> whether it was still pending */
static int l_timer_cancel(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_TIMER, "timer:cancel", "timer");
  lua_pushboolean(L, sl_inbox_cancel(st_place_inbox((int)h->aux - 1), h->id));
  return 1;
}

/* stage:cast(msg): handle_cast */
static int l_stage_cast(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:cast");
  sl_arg_present(L, 2, "stage:cast", "the message");
  st_post(ref, st_encode_msg(L, 2, M_CAST, ref, "stage:cast"));
  return 0;
}

/* stage:call(req [, timeout_ms]) -> reply (main thread) */
static int l_stage_call(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:call");
  sl_arg_present(L, 2, "stage:call", "the request");
  lua_Integer timeout = st_check_timeout(L, 3, 5000, "stage:call");
  return st_call_stage(L, ref, OP_USER, 2, timeout, "stage:call");
}

/* Local (self) or remote internal operation without a reply. */
void st_cast_op(lua_State *L, uint64_t ref, int64_t op, int arg) {
  sl_msg *m = arg ? st_encode_msg(L, arg, M_CALL, ref, "stage") : st_msg(M_CALL, ref, 0, 0);
  m->n = op;
  st_post(ref, m);
}

/* stage:demand() -> "forward" | "accumulate"; stage:demand(mode) switches
 * a producer's mode, asynchronously (from its own callbacks too, so that a
 * forward replays the held demand after the running callback, as
 * GenStage's demand/2 does). */
static int l_stage_demand(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:demand");
  stage *s = st_self_stage(L, ref);
  if (lua_isnoneornil(L, 2)) {
    if (s) {
      if (s->type != T_PRODUCER) return luaL_error(L, "stage:demand: demand mode is only for producers");
      lua_pushstring(L, sl_stage_accumulating(s->st) ? "accumulate" : "forward");
      return 1;
    }
    return st_call_stage(L, ref, OP_DEMAND_GET, 0, 5000, "stage:demand");
  }
  const char *mode = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
  int accumulate = strcmp(mode, "accumulate") == 0;
  if (!accumulate && strcmp(mode, "forward") != 0)
    return sl_arg_fail(L, 2, "stage:demand", "mode must be \"forward\" or \"accumulate\"");
  st_cast_op(L, ref, OP_DEMAND_SET | ((int64_t)accumulate << 8), 0);
  return 0;
}

/* stage:buffered() -> events in the buffer */
static int l_stage_buffered(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:buffered");
  stage *s = st_self_stage(L, ref);
  if (s) {
    sl_stage_stats st;
    sl_stage_get_stats(s->st, &st);
    lua_pushinteger(L, (lua_Integer)st.buffered);
    return 1;
  }
  return st_call_stage(L, ref, OP_BUFFERED, 0, 5000, "stage:buffered");
}

/* stage:stats() -> table */
static int l_stage_stats(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:stats");
  stage *s = st_self_stage(L, ref);
  if (s) {
    st_push_stats(s);
    return 1;
  }
  return st_call_stage(L, ref, OP_STATS, 0, 5000, "stage:stats");
}

/* stage:finish(): stop "normal" once nothing is left to send */
static int l_stage_finish(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:finish");
  stage *s = st_self_stage(L, ref);
  if (s) sl_stage_finish(s->st);
  else st_cast_op(L, ref, OP_FINISH, 0);
  return 0;
}

/* Waits until the stages refs[0..n) have stopped; a callback of theirs
 * still running after timeout ms (<0: no limit; at once after a Ctrl-C
 * in the running entry) is interrupted, again every 50 ms. */
static void stop_wait(lua_State *L, const uint64_t *refs, size_t n, lua_Integer timeout) {
  int64_t deadline = st_deadline_of(timeout), next = 0;
  for (size_t i = 0; i < n; i++)
    while (st_reg_status(NULL, refs[i]) == 1) {
      int64_t now = sl_now_ms();
      if ((sl_rt_g.sigint_seen && sl_rt_g.entry_running) || (deadline >= 0 && now >= deadline)) {
        if (now >= next) {
          for (size_t j = i; j < n; j++)
            if (st_reg_status(NULL, refs[j]) == 1) sl_rt_interrupt_running(refs[j]);
          next = now + 50;
        }
        sl_rt_pump(L, 10);
      } else {
        sl_rt_pump(L, deadline >= 0 && deadline - now < 50 ? deadline - now : 50);
      }
    }
}

/* stage:stop([reason [, timeout_ms]]): from the main thread, returns once
 * it has stopped; a callback that has not returned after timeout_ms (at
 * once after a Ctrl-C) is interrupted, again every 50 ms. */
static int l_stage_stop(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:stop");
  lua_Integer timeout = st_check_timeout(L, 3, -1, "stage:stop");
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "normal");
  }
  stage *s = st_self_stage(L, ref);
  if (s) {
    /* a stage that stops itself with {"error", ...} has failed: reported
     * like an error raised in a callback (the stages of a flow do this) */
    int failed = 0;
    if (lua_istable(L, 2)) {
      lua_rawgeti(L, 2, 1);
      failed = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "error") == 0;
      lua_pop(L, 1);
      if (failed) {   /* a memory error past the worker's limit says so */
        lua_rawgeti(L, 2, 2);
        sl_rt_note_memory(L, -1);
        lua_rawseti(L, 2, 2);
      }
    }
    sl_stage_stop(s->st, st_lua_reason(L, 2, failed ? SL_REASON_ERROR : SL_REASON_ASKED));
    return 0;
  }
  if (st_reg_status(NULL, ref) != 1) return 0;
  st_cast_op(L, ref, OP_STOP, 2);
  if (st_is_main_thread(L)) stop_wait(L, &ref, 1, timeout);
  return 0;
}

/* sluice._stop_all(stages, reason [, timeout_ms]): stage:stop(reason,
 * timeout_ms) of every live stage of the array, the stops all sent before
 * the wait (a stage queued behind another's stuck callback on its worker
 * stops once that callback is interrupted). Main thread only. */
static int l_stop_all(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_Integer timeout = st_check_timeout(L, 3, -1, "sluice._stop_all");
  if (!st_is_main_thread(L)) return luaL_error(L, "sluice._stop_all: only the main thread may wait");
  size_t n = (size_t)lua_rawlen(L, 1), k = 0;
  uint64_t *refs = lua_newuserdatauv(L, (n ? n : 1) * sizeof *refs, 0);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i);
    sl_handle *h = sl_handle_test(L, -1, SL_H_STAGE);
    lua_pop(L, 1);
    if (!h || st_reg_status(NULL, h->id) != 1) continue;
    st_cast_op(L, h->id, OP_STOP, 2);
    refs[k++] = h->id;
  }
  stop_wait(L, refs, k, timeout);
  return 0;
}

/* stage:await([timeout_ms]) -> exit reason (main thread) */
static int l_stage_await(lua_State *L) {
  uint64_t ref = check_stage(L, "stage:await");
  lua_Integer timeout = st_check_timeout(L, 2, -1, "stage:await");
  if (!st_is_main_thread(L)) return luaL_error(L, "stage:await: only the main thread may wait");
  st_reg_watch(ref);
  int64_t deadline = st_deadline_of(timeout);
  for (;;) {
    int st = st_reg_status(L, ref);
    if (st == 0) return 1;
    if (st < 0) return luaL_error(L, "stage:await: unknown stage");
    int64_t left = deadline >= 0 ? deadline - sl_now_ms() : 50;
    if (deadline >= 0 && left <= 0) return luaL_error(L, "stage:await: timed out after %I ms", timeout);
    sl_rt_pump(L, left);
  }
}

/* sluice._watch(stage): its exit will be awaited (by a flow), so a
 * crash is reported there, not on stderr. */
static int l_watch(lua_State *L) {
  st_reg_watch(check_stage(L, "sluice._watch"));
  return 0;
}

/* sluice._late(n): inside a callback, the running stage's stats().late
 * becomes n (the events its window dropped as late so far). */
static int l_late(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  stage *s = st_current_stage(L);
  if (!s) return luaL_error(L, "sluice._late: not inside a stage callback");
  s->late = n > 0 ? (uint64_t)n : 0;
  return 0;
}

/* stage:alive() -> boolean */
static int l_stage_alive(lua_State *L) {
  lua_pushboolean(L, st_reg_status(NULL, check_stage(L, "stage:alive")) == 1);
  return 1;
}

/* stage:name() -> the name given at start, or nil */
static int l_stage_name(lua_State *L) {
  char *n = st_reg_name(check_stage(L, "stage:name"));
  if (!n) return 0;
  lua_pushstring(L, n);
  free(n);
  return 1;
}

/* subscription:cancel([reason]): through the consumer, which asks its
 * producer to cancel (handle_cancel gets {"cancel", reason} on both sides) */
static int l_sub_cancel(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_SUB, "subscription:cancel", "subscription");
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "normal");
  }
  st_check_sendable(L, 2, "subscription:cancel");
  st_post(h->aux, st_reason_msg(L, SL_SM_CANCEL_SUB, h->aux, h->id, 2));
  return 0;
}

/* from:ask(n): manual demand for the subscription from (n >= 0) */
static int l_from_ask(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_FROM, "from:ask", "subscription's from");
  if (h->aux & REPLY_FLAG) return luaL_error(L, "from:ask: this from answers a call; only a subscription's from can ask");
  lua_Integer n = sl_arg_integer(L, 2, 0, "from:ask", "n");
  if (n == 0) return 0;
  stage *s = st_current_stage(L);
  if (s && sl_stage_has_producer(s->st, h->id)) sl_stage_ask(s->st, h->id, (uint64_t)n);
  else st_post(h->aux, st_msg(SL_SM_ASK, h->aux, h->id, n));
  return 0;
}

/* from:cancel([reason]): ends the subscription from, from either side */
static int l_from_cancel(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_FROM, "from:cancel", "subscription's from");
  if (h->aux & REPLY_FLAG) return luaL_error(L, "from:cancel: this from answers a call; only a subscription's from can cancel");
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "normal");
  }
  /* The request goes to the producer: the peer, or ourselves when we are
   * the producer (handled after the running callback, as in GenStage). */
  stage *s = st_current_stage(L);
  uint64_t producer = s && sl_stage_has_consumer(s->st, h->id) ? s->ref : h->aux;
  st_check_sendable(L, 2, "from:cancel");
  st_post(producer, st_reason_msg(L, SL_SM_CANCEL_REQ, producer, h->id, 2));
  return 0;
}

/* from:reply(value): answers the call from (after sluice.NOREPLY) */
static int l_from_reply(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_FROM, "from:reply", "call's from");
  if (!(h->aux & REPLY_FLAG)) return luaL_error(L, "from:reply: this from is a subscription's; only the from of handle_call can reply");
  sl_arg_present(L, 2, "from:reply", "the reply");
  st_reply(L, h->id, 1, 2);
  return 0;
}

/* sluice.dispatcher.demand{...} / broadcast{...} / partition{...} */
static int l_disp_demand(lua_State *L) {
  lua_settop(L, 1);
  lua_newtable(L);
  lua_pushliteral(L, "demand");
  lua_setfield(L, -2, "kind");
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "shuffle_demands_on_first_dispatch");
    lua_setfield(L, -2, "shuffle_demands_on_first_dispatch");
  }
  return 1;
}

static int l_disp_broadcast(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, "broadcast");
  lua_setfield(L, -2, "kind");
  return 1;
}

static int l_disp_partition(lua_State *L) {
  const char *fn = "sluice.dispatcher.partition";
  if (!lua_istable(L, 1)) return sl_arg_fail(L, 1, fn, "expects a table of options");
  lua_newtable(L);
  lua_pushliteral(L, "partition");
  lua_setfield(L, -2, "kind");
  lua_getfield(L, 1, "partitions");
  if (lua_istable(L, -1)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n < 1) return luaL_error(L, "%s: partitions must not be empty", fn);
    lua_getfield(L, 1, "hash");
    int has_hash = lua_isfunction(L, -1);
    lua_pop(L, 1);
    if (!has_hash) return luaL_error(L, "%s: named partitions need a hash function", fn);
  } else if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
    return luaL_error(L, "%s: partitions must be an integer >= 1 or a list of names, got %s", fn,
                      st_push_got(L, -1));
  } else if (lua_tointeger(L, -1) > INT32_MAX) {
    return luaL_error(L, "%s: partitions must be at most %d, got %s", fn, (int)INT32_MAX,
                      st_push_got(L, -1));
  }
  lua_setfield(L, -2, "partitions");
  lua_getfield(L, 1, "hash");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    return luaL_error(L, "%s: hash must be a function, got %s", fn, luaL_typename(L, -1));
  lua_setfield(L, -2, "hash");
  /* key = {index = i} | {field = "name"}: partition by that part of each
   * event, read in C (used when there is no hash function) */
  lua_getfield(L, 1, "key");
  if (!lua_isnil(L, -1)) {
    int ok = 0;
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "index");
      lua_getfield(L, -2, "field");
      ok = (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 && lua_isnil(L, -1)) ||
           (lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING);
      lua_pop(L, 2);
    }
    if (!ok) return luaL_error(L, "%s: key must be {index = i} or {field = \"name\"}, got %s", fn,
                               luaL_tolstring(L, -1, NULL));
  }
  lua_setfield(L, -2, "key");
  return 1;
}

extern void sl_rt_handle_methods(lua_State *L, int kind, const luaL_Reg *methods);

void sl_stage_open(lua_State *L) {
  static const luaL_Reg stage_methods[] = {
    {"send", l_stage_send}, {"send_after", l_stage_send_after}, {"cast", l_stage_cast},
    {"call", l_stage_call}, {"demand", l_stage_demand}, {"buffered", l_stage_buffered},
    {"finish", l_stage_finish}, {"stop", l_stage_stop}, {"await", l_stage_await},
    {"alive", l_stage_alive}, {"name", l_stage_name}, {"stats", l_stage_stats}, {NULL, NULL}};
  static const luaL_Reg sub_methods[] = {{"cancel", l_sub_cancel}, {NULL, NULL}};
  static const luaL_Reg from_methods[] = {
    {"ask", l_from_ask}, {"cancel", l_from_cancel}, {"reply", l_from_reply}, {NULL, NULL}};
  static const luaL_Reg timer_methods[] = {{"cancel", l_timer_cancel}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"start", l_start}, {"subscribe", l_subscribe}, {"self", l_self}, {"whereis", l_whereis}, {"_watch", l_watch}, {"_late", l_late}, {"_stop_all", l_stop_all}, {NULL, NULL}};
  static const luaL_Reg disp[] = {
    {"demand", l_disp_demand}, {"broadcast", l_disp_broadcast}, {"partition", l_disp_partition}, {NULL, NULL}};
  sl_rt_handle_methods(L, SL_H_STAGE, stage_methods);
  sl_rt_handle_methods(L, SL_H_SUB, sub_methods);
  sl_rt_handle_methods(L, SL_H_FROM, from_methods);
  sl_rt_handle_methods(L, SL_H_TIMER, timer_methods);
  luaL_setfuncs(L, funcs, 0);                      /* stack: sluice */
  luaL_newlib(L, disp);
  lua_setfield(L, -2, "dispatcher");
  lua_pushlightuserdata(L, NOREPLY);
  lua_setfield(L, -2, "NOREPLY");
}

void sl_stage_init(int nworkers) {
  st_places = calloc((size_t)nworkers + 1, sizeof *st_places);
  if (!st_places) abort();
}

void sl_stage_close(lua_State *L) {
  place *pl = st_place_of(PLACE_MAIN);
  for (int b = 0; b < NBUCKETS; b++)
    while (pl->table[b]) {
      stage *s = pl->table[b];
      pl->table[b] = s->hnext;
      sl_stage_free(s->st);
      st_free_lstage(s);
    }
  while (st_replies) {
    sl_msg *m = st_replies;
    st_replies = m->next;
    sl_msg_free(m);
  }
  st_reg_free();
  free(started);
  started = NULL;
  nstarted = capstarted = 0;
  free(st_waits);
  st_waits = NULL;
  st_nwaits = st_capwaits = 0;
  free(st_places);
  st_places = NULL;
}

/* Worker places: stages left at shutdown are freed with their state. */
void sl_stage_close_place(int p) {
  place *pl = st_place_of(p);
  for (int b = 0; b < NBUCKETS; b++)
    while (pl->table[b]) {
      stage *s = pl->table[b];
      pl->table[b] = s->hnext;
      sl_stage_free(s->st);
      st_free_lstage(s);
    }
}
