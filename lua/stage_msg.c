/* stage_msg: the binding's messages to stages on their place (start,
 * subscribe_to, info, cast, call), the protocol messages handed to the
 * engine records, replies and the main thread's waits for them. */
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

/* ---- subscriptions ------------------------------------------------------------------ */

static lua_Integer opt_integer(lua_State *L, int idx, const char *key, lua_Integer def) {
  lua_getfield(L, idx, key);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* Consumer side of a new subscription to producer (opts at idx). */
static void consumer_subscribe(stage *s, uint64_t producer, uint64_t sub_id, int idx) {
  lua_State *L = s->L;
  idx = lua_absindex(L, idx);
  sl_sub_opts o = {1000, 500, SL_CANCEL_PERMANENT, 0};
  lua_getfield(L, idx, "cancel");
  const char *cm = lua_tostring(L, -1);
  for (int i = 0; cm && cancel_names[i]; i++)
    if (strcmp(cm, cancel_names[i]) == 0) o.cancel = (sl_cancel_mode)i;
  lua_pop(L, 1);
  lua_getfield(L, idx, "selector");
  if (lua_isfunction(L, -1)) {
    selsub *x = calloc(1, sizeof *x);
    if (!x) abort();
    x->id = sub_id;
    x->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    x->next = s->sels;
    s->sels = x;
    o.selector = 1;
  } else {
    lua_pop(L, 1);
  }
  o.max_demand = (uint64_t)opt_integer(L, idx, "max_demand", 1000);
  o.min_demand = (uint64_t)opt_integer(L, idx, "min_demand", (lua_Integer)(o.max_demand / 2));
  /* the producer gets the options without the selector (it runs here) */
  lua_getfield(L, idx, "selector");
  lua_pushnil(L);
  lua_setfield(L, idx, "selector");                /* stack: selector */
  sl_buf b = SL_BUF_INIT;
  char err[256];
  char *data = NULL;
  size_t len = 0;
  if (sl_encode(L, idx, &b, "opts", err, sizeof err) == 0) data = sl_buf_take(&b, &len);
  else sl_buf_free(&b);
  lua_setfield(L, idx, "selector");                /* handle_subscribe sees every option */
  int saved = s->sub_opts;
  s->sub_opts = idx;
  sl_stage_subscribe(s->st, producer, sub_id, &o, data, len);
  s->sub_opts = saved;
}

/* ---- starting a stage ------------------------------------------------------------------ */

/* Reads the dispatcher option table at idx into cfg and s. */
static void read_dispatcher(stage *s, int idx, sl_stage_config *cfg) {
  lua_State *L = s->L;
  cfg->dispatcher = SL_DISPATCH_DEMAND;
  if (!lua_istable(L, idx)) return;
  lua_getfield(L, idx, "kind");
  const char *k = lua_tostring(L, -1);
  if (k && strcmp(k, "broadcast") == 0) cfg->dispatcher = SL_DISPATCH_BROADCAST;
  else if (k && strcmp(k, "partition") == 0) cfg->dispatcher = SL_DISPATCH_PARTITION;
  lua_pop(L, 1);
  lua_getfield(L, idx, "shuffle_demands_on_first_dispatch");
  cfg->shuffle_demands_on_first_dispatch = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (cfg->dispatcher != SL_DISPATCH_PARTITION) return;
  lua_getfield(L, idx, "partitions");
  if (lua_istable(L, -1)) {
    cfg->partitions = (uint32_t)lua_rawlen(L, -1);
    lua_newtable(L);                          /* stack: names map */
    for (uint32_t i = 1; i <= cfg->partitions; i++) {
      lua_rawgeti(L, -2, i);
      lua_pushinteger(L, i);
      lua_rawset(L, -3);
    }
    s->part_names = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    cfg->partitions = (uint32_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "hash");
  if (lua_isfunction(L, -1)) s->part_hash = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  lua_getfield(L, idx, "key");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "index");
    s->key_index = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    lua_getfield(L, -2, "field");
    if (lua_type(L, -1) == LUA_TSTRING) s->key_field = strdup(lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  s->nparts = cfg->partitions;
}

/* Creates the stage described by the table on the stack top ({spec, arg,
 * opts}), runs init, makes the subscriptions of subscribe_to, then answers
 * the waiter (an init error is answered instead, and the stage is gone). */
static void start_stage(lua_State *L, int p, sl_msg *m) {
  int t = lua_gettop(L);
  stage *s = calloc(1, sizeof *s);
  if (!s) abort();
  s->ref = m->to;
  s->place = p;
  s->L = L;
  s->part_hash = s->part_names = s->raw_ref = LUA_NOREF;
  lua_getfield(L, t, "spec");
  lua_getfield(L, -1, "type");
  s->type = luaL_checkoption(L, -1, NULL, type_names);
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);                        /* stack: t spec lt */
  lua_insert(L, -2);
  lua_setfield(L, -2, "spec");
  s->lref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, t, "opts");
  int opts = lua_gettop(L);
  lua_getfield(L, opts, "name");
  if (lua_isstring(L, -1)) s->name = strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  sl_stage_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.ref = s->ref;
  cfg.type = (sl_stage_type)s->type;
  if (s->type != T_CONSUMER) {
    lua_getfield(L, opts, "dispatcher");
    read_dispatcher(s, lua_gettop(L), &cfg);
    lua_pop(L, 1);
    lua_getfield(L, opts, "buffer_size");
    cfg.buffer_size = lua_isinteger(L, -1) ? (size_t)lua_tointeger(L, -1)
                      : (s->type == T_PC || lua_isnumber(L, -1) ? SL_BUFFER_UNLIMITED : 10000);
    lua_pop(L, 1);
    lua_getfield(L, opts, "buffer_keep");
    const char *keep = lua_tostring(L, -1);
    cfg.buffer_keep = keep && strcmp(keep, "first") == 0 ? SL_KEEP_FIRST : SL_KEEP_LAST;
    lua_pop(L, 1);
    lua_getfield(L, opts, "demand");
    const char *d = lua_tostring(L, -1);
    cfg.accumulate = d && strcmp(d, "accumulate") == 0;
    lua_pop(L, 1);
    lua_getfield(L, opts, "_on_cancel");
    const char *oc = lua_tostring(L, -1);
    cfg.stop_when_no_consumers = oc && strcmp(oc, "stop") == 0;
    lua_pop(L, 1);
  }
  int rc = sl_stage_new(&cfg, &st_lua_ops, s, &s->st);
  sl_msg *r = st_msg(M_START_REPLY, m->from, 0, 0);
  if (rc != 0) {
    lua_pushfstring(L, "cannot create the stage: %s", sl_strerror(rc));
    r->data = st_encode_reason(L, -1, &r->len);
    st_free_lstage(s);
    st_reg_dead(m->to, r->data, r->len);   /* before the reply: the name is free once start returns */
    sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
    lua_settop(L, t - 1);
    return;
  }
  place *pl = st_place_of(p);
  s->hnext = pl->table[s->ref % NBUCKETS];
  pl->table[s->ref % NBUCKETS] = s;
  /* init(arg) -> state; without init the state is arg */
  lua_getfield(L, t, "arg");
  if (st_has_callback(s, "init")) {
    st_push_callback(s, "init");
    lua_insert(L, -2);
    pl->current = s;
    int st = sl_pcall(L, 1, 1);
    pl->current = NULL;
    if (st != LUA_OK) {                            /* stack: ... err tb */
      if (lua_type(L, -2) == LUA_TSTRING) {          /* a message gets its traceback */
        lua_pushfstring(L, "init failed: %s\n%s", lua_tostring(L, -2), lua_tostring(L, -1));
        lua_replace(L, -3);
      }
      r->data = st_encode_reason(L, -2, &r->len);
      st_unlink_stage(s);
      st_push_error_reason(L);                       /* the reason await would give */
      size_t len;
      char *data = st_encode_reason(L, -1, &len);
      st_reg_dead(s->ref, data, len);                   /* before the reply: the name is free again */
      free(data);
      sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
      sl_stage_free(s->st);
      st_free_lstage(s);
      lua_settop(L, t - 1);
      return;
    }
  }
  st_set_state(s, -1);
  lua_pop(L, 1);
  lua_getfield(L, opts, "subscribe_to");
  int subs = lua_gettop(L);
  if (lua_istable(L, subs)) {
    for (lua_Integer i = 1; !sl_stage_stopping(s->st); i++) {
      if (lua_rawgeti(L, subs, i) == LUA_TNIL) {
        lua_pop(L, 1);
        break;
      }
      lua_getfield(L, -1, "producer");
      sl_handle *h = sl_handle_test(L, -1, SL_H_STAGE);
      lua_getfield(L, -2, "opts");
      if (h) consumer_subscribe(s, h->id, sl_rt_id(), -1);
      lua_pop(L, 3);
    }
  }
  /* answered once the subscriptions are on their way, so that whatever
   * the main thread sends a producer next arrives behind them */
  r->n = 1;
  sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
  lua_settop(L, t - 1);
  sl_stage_settle(s->st);
}

/* ---- message handling ---------------------------------------------------------------- */

/* Main thread only: replies that arrived for a wait, and the ids waited
 * for. A reply nobody waits for any more (its call timed out) is dropped
 * when it arrives instead of being kept forever. */
sl_msg *st_replies;
uint64_t *st_waits;
size_t st_nwaits, st_capwaits;

static void waits_push(uint64_t id) {
  if (st_nwaits == st_capwaits) {
    size_t n = st_capwaits ? 2 * st_capwaits : 8;
    uint64_t *w = realloc(st_waits, n * sizeof *w);
    if (!w) abort();
    st_waits = w;
    st_capwaits = n;
  }
  st_waits[st_nwaits++] = id;
}

static void waits_drop(uint64_t id) {
  for (size_t i = st_nwaits; i-- > 0;)
    if (st_waits[i] == id) {
      st_waits[i] = st_waits[--st_nwaits];
      return;
    }
}

static int waited(uint64_t id) {
  for (size_t i = 0; i < st_nwaits; i++)
    if (st_waits[i] == id) return 1;
  return 0;
}

/* Pushes the stats table of stage:stats(). */
void st_push_stats(stage *s) {
  lua_State *L = s->L;
  sl_stage_stats st;
  sl_stage_get_stats(s->st, &st);
  lua_createtable(L, 0, 11);
  lua_pushinteger(L, (lua_Integer)st.events_in);
  lua_setfield(L, -2, "events_in");
  lua_pushinteger(L, (lua_Integer)st.events_out);
  lua_setfield(L, -2, "events_out");
  lua_pushinteger(L, (lua_Integer)st.buffered);
  lua_setfield(L, -2, "buffered");
  lua_pushinteger(L, (lua_Integer)st.held);
  lua_setfield(L, -2, "held");
  lua_pushinteger(L, (lua_Integer)st.demand);
  lua_setfield(L, -2, "demand");
  lua_pushinteger(L, st.producers);
  lua_setfield(L, -2, "producers");
  lua_pushinteger(L, st.consumers);
  lua_setfield(L, -2, "consumers");
  lua_pushinteger(L, (lua_Integer)s->late);
  lua_setfield(L, -2, "late");
  lua_pushstring(L, type_names[s->type]);
  lua_setfield(L, -2, "type");
  if (s->name) {
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "name");
  }
  lua_pushinteger(L, s->place + 1);
  lua_setfield(L, -2, "worker");
}

/* Answers an internal or user call; pushes nothing. reply_to = 0: a cast. */
void st_reply(lua_State *L, uint64_t call_id, int ok, int idx) {
  if (!call_id) return;
  sl_msg *m = st_msg(M_REPLY, call_id, 0, ok);
  sl_buf b = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, idx, &b, "reply", err, sizeof err) != 0) {
    sl_buf_free(&b);
    lua_pushstring(L, err);
    sl_encode(L, -1, &b, "reply", err, sizeof err);
    lua_pop(L, 1);
    m->n = 0;
  }
  m->data = sl_buf_take(&b, &m->len);
  sl_inbox_post(sl_sched_main(sl_rt_g.sched), m);
}

/* st_reply() with a string. */
static void reply_str(lua_State *L, uint64_t call_id, int ok, const char *s) {
  lua_pushstring(L, s);
  st_reply(L, call_id, ok, -1);
  lua_pop(L, 1);
}

/* Answers call_id with the error that is stopping s: the message and the
 * traceback of its {"error", message, traceback} reason. */
static void reply_failure(stage *s, uint64_t call_id) {
  lua_State *L = s->L;
  st_push_reason(L, sl_stage_reason(s->st));
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, 2);
    lua_rawgeti(L, -2, 3);                          /* stack: reason msg tb */
    if (lua_isstring(L, -2) && lua_isstring(L, -1) && lua_rawlen(L, -1) > 0) {
      lua_pushliteral(L, "\n");
      lua_insert(L, -2);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
    }
    lua_remove(L, -2);                              /* stack: msg */
  }
  st_reply(L, call_id, 0, -1);
  lua_pop(L, 1);
}

/* Runs a call: the user's handle_call (OP_USER), or an internal operation
 * of a stage method; answers unless the call is a cast (from 0) or the
 * callback returned sluice.NOREPLY. */
static void handle_call(stage *s, sl_msg *m) {
  lua_State *L = s->L;
  char err[256];
  switch ((int)(m->n & 0xff)) {
  case OP_USER: {
    if (sl_decode(L, m->data, m->len, err, sizeof err) != 0) {
      reply_str(L, m->from, 0, err);
      return;
    }
    sl_handle_push(L, SL_H_FROM, m->from, REPLY_FLAG);
    int r = st_invoke(s, "handle_call", 2, 3);
    if (r < 0) {
      reply_str(L, m->from, 0, "the stage has no handle_call callback");
      return;
    }
    if (r == 0) {          /* the stage stops; the caller gets the error */
      reply_failure(s, m->from);
      return;
    }
    st_set_state(s, -1);
    st_emit_lua(s, -2, "handle_call");
    if (!(lua_touserdata(L, -3) == NOREPLY)) st_reply(L, m->from, 1, -3);
    lua_pop(L, 3);
    return;
  }
  case OP_BUFFERED: {
    sl_stage_stats st;
    sl_stage_get_stats(s->st, &st);
    lua_pushinteger(L, (lua_Integer)st.buffered);
    break;
  }
  case OP_DEMAND_GET:
    if (s->type != T_PRODUCER) {
      reply_str(L, m->from, 0, "demand mode is only for producers");
      return;
    }
    lua_pushstring(L, sl_stage_accumulating(s->st) ? "accumulate" : "forward");
    break;
  case OP_DEMAND_SET:
    sl_stage_set_accumulate(s->st, (int)(m->n >> 8));
    lua_pushboolean(L, 1);
    break;
  case OP_STATS:
    st_push_stats(s);
    if (m->n >> 8) st_push_consumers(s);   /* sluice.graph asks for them */
    break;
  case OP_STOP:
    if (sl_decode(L, m->data, m->len, err, sizeof err) != 0) lua_pushliteral(L, "normal");
    st_set_stop_asked(s, -1);
    break;
  case OP_SHUTDOWN:                                  /* at exit: what it holds is reported */
    lua_pushliteral(L, "shutdown");
    sl_stage_stop(s->st, st_lua_reason(L, -1, 0));
    break;
  case OP_FINISH:
    sl_stage_finish(s->st);
    lua_pushboolean(L, 1);
    break;
  default:
    lua_pushboolean(L, 1);
    break;
  }
  st_reply(L, m->from, 1, -1);
  lua_pop(L, 1);
}

/* Decodes an M_SUBSCRIBE_TO payload: pushes the options and returns the
 * call id waiting for the subscription to be made (0: nobody waits). */
static uint64_t subscribe_to_ack(lua_State *L, sl_msg *m) {
  char err[256];
  if (sl_decode(L, m->data, m->len, err, sizeof err) != 0 || !lua_istable(L, -1)) {
    lua_settop(L, lua_gettop(L) - 1);
    lua_newtable(L);
    return 0;
  }
  lua_getfield(L, -1, "ack");
  uint64_t ack = (uint64_t)lua_tointeger(L, -1);
  lua_getfield(L, -2, "opts");                      /* stack: t ack opts */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_replace(L, -3);
  lua_pop(L, 1);                                    /* stack: opts */
  return ack;
}

/* A message for a stage that is not (or no longer) on this place: a
 * subscribe is answered "noproc", a call or a synchronous subscribe "the
 * stage has stopped"; anything else is dropped. */
static void stage_gone(lua_State *L, sl_msg *m) {
  if (m->kind == SL_SM_EVENTS && atomic_load(&st_shutting_down) && st_reg_at_exit(m->to))
    atomic_fetch_add(&st_lost_at_exit, m->batch.count);
  sl_msg *r = sl_stage_gone_reply(m);
  if (r) st_post(r->to, r);
  else if (m->kind == M_CALL) reply_str(L, m->from, 0, "the stage has stopped");
  else if (m->kind == M_SUBSCRIBE_TO) {
    uint64_t ack = subscribe_to_ack(L, m);
    lua_pop(L, 1);
    if (ack) reply_str(L, ack, 0, "the stage has stopped");
  }
}

/* Handles one message on place p: starts a stage, or hands the message to
 * the stage it is for (protocol messages to the engine record). */
static void handle_stage_msg(lua_State *L, int p, sl_msg *m) {
  if (m->kind == M_START) {
    char err[256];
    if (p == PLACE_MAIN) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, (int)m->n);
      luaL_unref(L, LUA_REGISTRYINDEX, (int)m->n);
    } else if (sl_decode(L, m->data, m->len, err, sizeof err) != 0) {
      lua_pushstring(L, err);
      sl_msg *r = st_msg(M_START_REPLY, m->from, 0, 0);
      r->data = st_encode_reason(L, -1, &r->len);
      lua_pop(L, 1);
      st_reg_dead(m->to, r->data, r->len);   /* before the reply: the name is free again */
      sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
      return;
    }
    start_stage(L, p, m);
    return;
  }
  stage *s = st_find_stage(p, m->to);
  if (!s) {
    stage_gone(L, m);
    return;
  }
  if (m->kind >= SL_SM_FIRST && m->kind <= SL_SM_LAST) {
    sl_stage_receive(s->st, m);
    return;
  }
  char err[256];
  switch (m->kind) {
  case M_SUBSCRIBE_TO: {
    uint64_t ack = subscribe_to_ack(L, m);           /* stack: opts */
    if (s->type != T_PRODUCER) consumer_subscribe(s, m->from, (uint64_t)m->n, -1);
    lua_pop(L, 1);
    if (ack) {
      lua_pushboolean(L, 1);
      st_reply(L, ack, 1, -1);
      lua_pop(L, 1);
    }
    break;
  }
  case M_INFO:
    sl_stage_info(s->st, m->data, m->len);
    m->data = NULL;
    m->len = 0;
    break;
  case M_CAST:
    if (sl_decode(L, m->data, m->len, err, sizeof err) != 0) break;
    st_run_emitting(s, "handle_cast", 1);
    break;
  case M_CALL:
    handle_call(s, m);
    break;
  default:
    break;
  }
  sl_stage_settle(s->st);
}

/* Replies are kept for the main thread's waits; other stage messages are
 * handled here and freed. */
int sl_stage_handle(lua_State *L, int p, sl_msg *m) {
  int ours = (m->kind >= M_START && m->kind <= M_EXIT) || (m->kind >= SL_SM_FIRST && m->kind <= SL_SM_LAST);
  if (!ours) return 0;
  if (m->kind == M_START_REPLY || m->kind == M_REPLY) {
    if (!waited(m->to)) {
      sl_msg_free(m);
      return 1;
    }
    m->next = st_replies;
    st_replies = m;
    return 1;
  }
  if (m->kind != M_EXIT) handle_stage_msg(L, p, m);
  sl_msg_free(m);
  return 1;
}

/* A timeout argument at idx: nil (def) or an integer >= 0; raises
 * "fn: timeout must be an integer >= 0, got x" otherwise. */
lua_Integer st_check_timeout(lua_State *L, int idx, lua_Integer def, const char *fn) {
  if (lua_isnoneornil(L, idx)) return def;
  int isint = 0;
  lua_Integer t = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
  if (!isint || t < 0) luaL_error(L, "%s: timeout must be an integer >= 0, got %s", fn, st_push_got(L, idx));
  return t;
}

/* The clock time timeout ms from now; -1 (no limit) for a negative
 * timeout or one past the clock's range. */
int64_t st_deadline_of(int64_t timeout) {
  if (timeout < 0) return -1;
  int64_t now = sl_now_ms();
  return timeout > INT64_MAX - now ? -1 : now + timeout;
}

/* ---- the main thread waits -------------------------------------------------------------- */

static sl_msg *take_reply(uint64_t id) {
  for (sl_msg **p = &st_replies; *p; p = &(*p)->next)
    if ((*p)->to == id) {
      sl_msg *m = *p;
      *p = m->next;
      m->next = NULL;
      return m;
    }
  return NULL;
}

/* Waits for the reply to call id (timeout < 0: no limit). When it times
 * out, or when target (if not 0) has ended without answering, raises (fn
 * names the function) or, with fn NULL, returns NULL. */
sl_msg *st_wait_reply(lua_State *L, uint64_t id, int64_t timeout, uint64_t target, const char *fn) {
  int64_t deadline = st_deadline_of(timeout);
  const char *why = NULL;
  sl_msg *m;
  waits_push(id);
  for (;;) {
    if ((m = take_reply(id))) break;
    if (target && st_reg_status(NULL, target) == 0) {
      while (sl_rt_pump(L, 0)) {}   /* its answer may still be on the way */
      if ((m = take_reply(id))) break;
      why = "the stage has stopped";
      break;
    }
    int64_t left = deadline >= 0 ? deadline - sl_now_ms() : 50;
    if (deadline >= 0 && left <= 0) {
      why = "timed out";
      break;
    }
    sl_rt_pump(L, left);   /* may raise "interrupted": id stays listed, harmless */
  }
  waits_drop(id);
  if (m || !fn) return m;
  if (strcmp(why, "timed out") == 0) luaL_error(L, "%s: timed out after %I ms", fn, (lua_Integer)timeout);
  luaL_error(L, "%s: %s", fn, why);
  return NULL;
}

int st_is_main_thread(lua_State *L) { return sl_rt_place(L) == PLACE_MAIN; }

stage *st_current_stage(lua_State *L) {
  int p = sl_rt_place(L);
  return st_places ? st_place_of(p)->current : NULL;
}

/* The stage record of ref when it is the one running a callback here. */
stage *st_self_stage(lua_State *L, uint64_t ref) {
  stage *s = st_current_stage(L);
  return s && s->ref == ref ? s : NULL;
}

/* A message of kind for to carrying the encoded value at idx; raises
 * "fn: ..." when the value cannot cross. */
sl_msg *st_encode_msg(lua_State *L, int idx, uint32_t kind, uint64_t to, const char *fn) {
  sl_buf b = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, idx, &b, "message", err, sizeof err) != 0) {
    sl_buf_free(&b);
    luaL_error(L, "%s: %s", fn, err);
  }
  sl_msg *m = st_msg(kind, to, 0, 0);
  m->data = sl_buf_take(&b, &m->len);
  return m;
}

/* Raises "fn: ..." when the value at idx cannot cross to another state. */
void st_check_sendable(lua_State *L, int idx, const char *fn) {
  sl_buf b = SL_BUF_INIT;
  char err[256];
  int rc = sl_encode(L, idx, &b, "message", err, sizeof err);
  sl_buf_free(&b);
  if (rc != 0) luaL_error(L, "%s: %s", fn, err);
}

/* A synchronous internal call from the main thread; pushes the reply. */
int st_call_stage(lua_State *L, uint64_t ref, int op, int arg, int64_t timeout, const char *fn) {
  if (!st_is_main_thread(L)) return luaL_error(L, "%s: only the main thread may call a stage", fn);
  if (st_reg_status(NULL, ref) == 0) return luaL_error(L, "%s: the stage has stopped", fn);
  sl_msg *m = arg ? st_encode_msg(L, arg, M_CALL, ref, fn) : st_msg(M_CALL, ref, 0, 0);
  uint64_t id = sl_rt_id();
  m->from = id;
  m->n = op;
  st_post(ref, m);
  sl_msg *r = st_wait_reply(L, id, timeout, ref, fn);
  char err[256];
  int ok = (int)r->n;
  int st = sl_decode(L, r->data, r->len, err, sizeof err);
  sl_msg_free(r);
  if (st != 0) return luaL_error(L, "%s: %s", fn, err);
  if (!ok) {
    if (lua_type(L, -1) == LUA_TSTRING) return luaL_error(L, "%s: %s", fn, lua_tostring(L, -1));
    return lua_error(L);   /* an error value that is not a string is raised as is */
  }
  return 1;
}
