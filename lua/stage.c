/* stage: GenStage stages in the binding: lifecycle, subscriptions, the
 * message protocol between stages, and the Lua callbacks. Demand
 * accounting, buffers and dispatchers are the engine's state machines
 * (engine/demand, engine/buffer, engine/dispatch); this file drives them.
 *
 * DESIGN
 * A stage lives on one place: a worker (0..n-1) or the main thread
 * (PLACE_MAIN, for iterator producers and stream consumers). Its C record
 * and its Lua data (spec and state, in a registry table of that place's
 * state) are touched only by that place's thread. Stages talk only through
 * messages posted to the peer's place inbox; a stage reference ("ref")
 * packs the id and the place, so routing needs no lookup and no lock. The
 * registry (names, types, liveness, exit reasons) is the only shared
 * table, under one mutex; it is touched when stages start and stop and by
 * the main thread's checks and waits, never on the event path. Per
 * sender, messages arrive in send order, which the protocol relies on
 * (subscribe before ask, events before cancel); an inbox is one FIFO, so
 * messages posted one after the other by different threads (the second
 * thread having seen the first post happen) arrive in that order too:
 * sluice.start answers only once the subscriptions are posted, so what the
 * main thread sends a producer next comes behind them.
 *
 * The main thread waits for replies (start, call, subscribe) by pumping
 * its own inbox; stages living on the main thread run during those waits. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "buffer.h"
#include "demand.h"
#include "dispatch.h"
#include "lstage.h"
#include "rt.h"
#include "stage.h"
#include "status.h"
#include "hash.h"

/* ---- refs and places --------------------------------------------------- */

uint64_t sl_ref_make(uint64_t id, int place) { return id | ((uint64_t)(place + 1) << 48); }
int sl_ref_place(uint64_t ref) { return (int)(ref >> 48) - 1; }

static sl_inbox *place_inbox(int place) {
  return place == PLACE_MAIN ? sl_sched_main(sl_rt_g.sched) : sl_sched_inbox(sl_rt_g.sched, place);
}

static void post(uint64_t ref, sl_msg *m) { sl_inbox_post(place_inbox(sl_ref_place(ref)), m); }

static sl_msg *msg(uint32_t kind, uint64_t to, uint64_t from, int64_t n) {
  sl_msg *m = sl_msg_new(kind);
  if (!m) abort();   /* out of memory on the message path: nothing sane to do */
  m->to = to;
  m->from = from;
  m->n = n;
  return m;
}

/* ---- registry --------------------------------------------------------------- */

/* Every stage started, alive or dead (await needs the exit reason of any
 * handle still held), hashed by ref. The only table shared by threads. */
typedef struct reg_entry {
  uint64_t ref;
  char *name;
  int type;        /* T_PRODUCER, T_PC, T_CONSUMER */
  int alive;
  int watched;     /* someone awaits its exit: no crash report */
  int finite;      /* a producer that ends by itself: at exit it may run to its end */
  char *reason;    /* encoded exit reason once dead */
  size_t rlen;
  struct reg_entry *next;
} reg_entry;

#define REG_BUCKETS 1024
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg_table[REG_BUCKETS];

/* The entry of ref (reg_mu held), or NULL. */
static reg_entry *reg_find(uint64_t ref) {
  for (reg_entry *e = reg_table[ref % REG_BUCKETS]; e; e = e->next)
    if (e->ref == ref) return e;
  return NULL;
}

/* Registers a stage being started (name may be NULL). */
static void reg_add(uint64_t ref, const char *name, int type, int finite) {
  reg_entry *e = calloc(1, sizeof *e);
  if (!e) abort();
  e->ref = ref;
  e->type = type;
  e->finite = finite;
  e->name = name ? strdup(name) : NULL;
  e->alive = 1;
  pthread_mutex_lock(&reg_mu);
  e->next = reg_table[ref % REG_BUCKETS];
  reg_table[ref % REG_BUCKETS] = e;
  pthread_mutex_unlock(&reg_mu);
}

/* Marks ref dead with its encoded exit reason (copied). A dead stage
 * keeps its name for stage:name() but no longer answers to whereis. */
static void reg_dead(uint64_t ref, const char *reason, size_t len) {
  char *copy = malloc(len ? len : 1);
  if (copy && len) memcpy(copy, reason, len);
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e) {
    e->alive = 0;
    free(e->reason);
    e->reason = copy;
    e->rlen = copy ? len : 0;
    copy = NULL;
  }
  pthread_mutex_unlock(&reg_mu);
  free(copy);
}

/* 1 alive, 0 dead (pushes the exit reason onto L when L is given), -1 unknown */
static int reg_status(lua_State *L, uint64_t ref) {
  int st = -1;
  char *copy = NULL;
  size_t len = 0;
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e) {
    st = e->alive;
    if (!st && L && e->reason) {
      copy = malloc(e->rlen ? e->rlen : 1);
      if (copy) memcpy(copy, e->reason, e->rlen);
      len = e->rlen;
    }
  }
  pthread_mutex_unlock(&reg_mu);
  if (copy) {
    char err[128];
    if (sl_decode(L, copy, len, err, sizeof err) != 0) lua_pushstring(L, err);
    free(copy);
  } else if (st == 0 && L) {
    lua_pushliteral(L, "normal");
  }
  return st;
}

/* Marks ref as awaited: its crash is someone's to report. */
static void reg_watch(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e) e->watched = 1;
  pthread_mutex_unlock(&reg_mu);
}

static int reg_watched(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  int w = e && e->watched;
  pthread_mutex_unlock(&reg_mu);
  return w;
}

/* The live stage registered under name, or 0. */
static uint64_t reg_whereis(const char *name) {
  uint64_t ref = 0;
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS && !ref; b++)
    for (reg_entry *e = reg_table[b]; e; e = e->next)
      if (e->alive && e->name && strcmp(e->name, name) == 0) {
        ref = e->ref;
        break;
      }
  pthread_mutex_unlock(&reg_mu);
  return ref;
}

/* The type of stage ref, or -1 when unknown. */
static int reg_type(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  int t = e ? e->type : -1;
  pthread_mutex_unlock(&reg_mu);
  return t;
}

/* A malloc'd copy of ref's name, or NULL. */
static char *reg_name(uint64_t ref) {
  char *n = NULL;
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e && e->name) n = strdup(e->name);
  pthread_mutex_unlock(&reg_mu);
  return n;
}

static void reg_free(void) {
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS; b++)
    while (reg_table[b]) {
      reg_entry *e = reg_table[b];
      reg_table[b] = e->next;
      free(e->name);
      free(e->reason);
      free(e);
    }
  pthread_mutex_unlock(&reg_mu);
}

/* ---- messages ------------------------------------------------------------------ */

/* The binding's own messages; the protocol between stages (subscribe,
 * ask, events, cancels) is the engine's (engine/stage.h, SL_SM_*). */
enum {
  M_START = SL_M_HOST_FIRST, /* to: stage ref; from: waiter; data: {spec,arg,opts} (n: main ref) */
  M_START_REPLY,   /* to: waiter; n: 1 ok; data: error */
  M_SUBSCRIBE_TO,  /* to: consumer; from: producer ref; n: sub id; data: {opts=, ack=} */
  M_INFO,          /* to: stage; data: message */
  M_CAST,          /* to: stage; data: message */
  M_CALL,          /* to: stage; from: call id; n: op; data: request */
  M_REPLY,         /* to: call id; n: 1 ok / 0 error; data: value */
  M_EXIT           /* to: main; a stage ended (wakes waiters) */
};

/* Internal call operations (M_CALL.n). */
enum { OP_USER, OP_BUFFERED, OP_DEMAND_GET, OP_DEMAND_SET, OP_STATS, OP_STOP, OP_FINISH, OP_SHUTDOWN };

enum { T_PRODUCER = SL_STAGE_PRODUCER, T_PC = SL_STAGE_PC, T_CONSUMER = SL_STAGE_CONSUMER };
static const char *const type_names[] = {"producer", "producer_consumer", "consumer", NULL};
static const char *const cancel_names[] = {"permanent", "transient", "temporary", NULL};

#define REPLY_FLAG ((uint64_t)1 << 63)

/* ---- stage records ------------------------------------------------------------ */

typedef struct selsub {   /* a subscription's selector (consumer side) */
  uint64_t id;
  int ref;                /* registry ref of the function */
  struct selsub *next;
} selsub;

/* The binding's side of a stage: its Lua data and what the Lua callbacks
 * need; the protocol state is the engine record st. */
typedef struct stage {
  sl_stage *st;
  uint64_t ref;
  int type, place;
  lua_State *L;
  int lref;               /* registry: {spec = ..., state = ...} */
  char *name;
  int part_hash;          /* registry ref of the partition hash, or LUA_NOREF */
  lua_Integer key_index;  /* partition by event[key_index] (0: not set) */
  char *key_field;        /* partition by event[key_field] (NULL: not set) */
  int part_names;         /* registry ref of name -> index, or LUA_NOREF */
  uint32_t nparts;
  selsub *sels;
  int sub_opts;           /* stack index of the options while a consumer subscribes */
  struct stage *hnext;
} stage;

#define NBUCKETS 256
typedef struct place {
  stage *table[NBUCKETS];
  stage *current;         /* the stage whose callback is running */
  int rr;
} place;

static place *places;     /* index place + 1; each touched by its own thread */

static place *place_of(int p) { return &places[p + 1]; }

static stage *find_stage(int p, uint64_t ref) {
  for (stage *s = place_of(p)->table[ref % NBUCKETS]; s; s = s->hnext)
    if (s->ref == ref) return s;
  return NULL;
}

/* "stage 'name' on worker 2": how errors and warnings name a stage. */
static const char *stage_label(stage *s, char *buf, size_t len) {
  char where[32];
  if (s->place == PLACE_MAIN) snprintf(where, sizeof where, "the main thread");
  else snprintf(where, sizeof where, "worker %d", s->place + 1);
  if (s->name) snprintf(buf, len, "stage '%s' on %s", s->name, where);
  else snprintf(buf, len, "stage %llu on %s", (unsigned long long)(s->ref & 0xffffffffffffULL), where);
  return buf;
}

/* Pushes how an error message shows the value at idx: strings quoted,
 * numbers, booleans and nil as written in Lua, anything else by its type
 * (no metamethod runs: this is also used outside any protected call). */
static const char *push_got(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: return lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return lua_pushfstring(L, "%I", lua_tointeger(L, idx));
    return lua_pushfstring(L, "%f", lua_tonumber(L, idx));
  case LUA_TBOOLEAN: return lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
  case LUA_TNIL: return lua_pushliteral(L, "nil");
  default: return lua_pushstring(L, luaL_typename(L, idx));
  }
}

/* ---- reasons ---------------------------------------------------------------------- */

static const char NOREPLY_KEY = 0;   /* its address is sluice.NOREPLY */
#define NOREPLY ((void *)&NOREPLY_KEY)

/* Encodes the value at idx into a malloc'd reason; on failure encodes a
 * string describing it instead. */
static char *encode_reason(lua_State *L, int idx, size_t *len) {
  sl_buf b = SL_BUF_INIT;
  char err[256];
  idx = lua_absindex(L, idx);
  if (sl_encode(L, idx, &b, "reason", err, sizeof err) != 0) {
    sl_buf_free(&b);
    lua_pushstring(L, err);
    sl_encode(L, -1, &b, "reason", err, sizeof err);
    lua_pop(L, 1);
  }
  return sl_buf_take(&b, len);
}

/* Whether the reason at idx ends a transient subscription quietly:
 * "normal", "shutdown" or {"shutdown", ...}. */
static int is_normal_reason(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *r = lua_tostring(L, idx);
    return strcmp(r, "normal") == 0 || strcmp(r, "shutdown") == 0;
  }
  if (lua_istable(L, idx)) {
    lua_rawgeti(L, idx, 1);
    int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "shutdown") == 0;
    lua_pop(L, 1);
    return yes;
  }
  return 0;
}

/* The engine's reason for the Lua value at idx. */
static sl_reason lua_reason(lua_State *L, int idx, unsigned flags) {
  sl_reason r = {NULL, 0, flags};
  if (is_normal_reason(L, idx)) r.flags |= SL_REASON_NORMAL;
  if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "already_subscribed") == 0)
    r.flags |= SL_REASON_ALREADY;
  r.data = encode_reason(L, idx, &r.len);
  return r;
}

/* Pushes a reason as a Lua value. */
static void push_reason(lua_State *L, const sl_reason *r) {
  char err[256];
  if (r->flags & SL_REASON_TEXT) lua_pushlstring(L, r->data ? r->data : "", r->len);
  else if (!r->data) lua_pushliteral(L, "normal");
  else if (sl_decode(L, r->data, r->len, err, sizeof err) != 0) lua_pushstring(L, err);
}

/* A message of kind for `to` carrying the reason at idx. */
static sl_msg *reason_msg(lua_State *L, uint32_t kind, uint64_t to, uint64_t sub_id, int idx) {
  sl_reason r = lua_reason(L, idx, 0);
  sl_msg *m = sl_stage_reason_msg(kind, to, sub_id, 0, &r);
  sl_reason_free(&r);
  return m;
}

/* stage:stop(reason), the user's own stop: s stops with the reason at idx
 * once the current message is handled; the first reason given wins. */
static void set_stop_asked(stage *s, int idx) { sl_stage_stop(s->st, lua_reason(s->L, idx, SL_REASON_ASKED)); }

/* Stops s with {"error", message, traceback}: message at -2, tb at -1. */
static void set_error(stage *s, int pop) {
  lua_State *L = s->L;
  lua_createtable(L, 3, 0);                 /* stack: msg tb r */
  lua_pushliteral(L, "error");
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 3);
  sl_stage_stop(s->st, lua_reason(L, -1, SL_REASON_ERROR));
  lua_pop(L, 1 + pop);
}

/* Stops s with an error found by the engine or the binding (not raised by
 * Lua code, so with an empty traceback); the message names the stage. */
static void set_error_msg(stage *s, const char *message) {
  lua_State *L = s->L;
  char label[128];
  lua_pushfstring(L, "%s: %s", stage_label(s, label, sizeof label), message);
  lua_pushliteral(L, "");
  set_error(s, 2);
}

static void set_errorf(stage *s, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  set_error_msg(s, buf);
}

/* ---- Lua side of a stage --------------------------------------------------------- */

/* Pushes the spec's callback cb and returns 1, or pushes nothing and
 * returns 0 when the spec has none. */
static int push_callback(stage *s, const char *cb) {
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->lref);   /* stack: t */
  lua_getfield(s->L, -1, "spec");
  lua_getfield(s->L, -1, cb);                       /* stack: t spec fn */
  lua_remove(s->L, -2);
  lua_remove(s->L, -2);
  if (lua_isnil(s->L, -1)) {
    lua_pop(s->L, 1);
    return 0;
  }
  return 1;
}

static int has_callback(stage *s, const char *cb) {
  if (!push_callback(s, cb)) return 0;
  lua_pop(s->L, 1);
  return 1;
}

/* Stores the value at idx as the stage state. */
static void set_state(stage *s, int idx) {
  idx = lua_absindex(s->L, idx);
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->lref);
  lua_pushvalue(s->L, idx);
  lua_setfield(s->L, -2, "state");
  lua_pop(s->L, 1);
}

/* Calls spec[cb](args..., state): the nargs arguments are on the stack.
 * Leaves nres results and returns 1, or on error stops the stage and
 * returns 0 (args popped). A missing callback returns -1 (args popped). */
static int invoke(stage *s, const char *cb, int nargs, int nres) {
  lua_State *L = s->L;
  if (!push_callback(s, cb)) {
    lua_pop(L, nargs);
    return -1;
  }
  lua_insert(L, -nargs - 1);                        /* stack: fn args */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->lref);
  lua_getfield(L, -1, "state");
  lua_remove(L, -2);                                /* stack: fn args state */
  place *pl = place_of(s->place);
  stage *prev = pl->current;
  pl->current = s;
  int st = sl_pcall(L, nargs + 1, nres);
  pl->current = prev;
  if (st != LUA_OK) {
    if (sl_stage_stopping(s->st)) {                 /* terminate: the reason stays */
      lua_pop(L, 2);
      return 0;
    }
    if (lua_type(L, -2) == LUA_TSTRING) {
      char label[128];
      lua_pushfstring(L, "%s (%s): %s", stage_label(s, label, sizeof label), cb, lua_tostring(L, -2));
      lua_replace(L, -3);
    }
    set_error(s, 2);
    return 0;
  }
  return 1;
}

static void push_from(lua_State *L, uint64_t sub_id, uint64_t peer) {
  sl_handle_push(L, SL_H_FROM, sub_id, peer);
}

static void push_stage(lua_State *L, uint64_t ref) { sl_handle_push(L, SL_H_STAGE, ref, 0); }

/* Encodes the events array a callback returned (at idx) and emits it.
 * cb names the callback in errors. */
static void emit_lua(stage *s, int idx, const char *cb) {
  lua_State *L = s->L;
  if (lua_isnil(L, idx)) return;
  if (!lua_istable(L, idx)) {
    set_errorf(s, "%s must return an array of events, got %s", cb, luaL_typename(L, idx));
    return;
  }
  if (lua_rawlen(L, idx) == 0) return;
  if (s->type == T_CONSUMER) {
    set_errorf(s, "%s: a consumer cannot emit events (got %d)", cb, (int)lua_rawlen(L, idx));
    return;
  }
  sl_batch b;
  char err[256], root[64];
  snprintf(root, sizeof root, "%s events", cb);
  if (sl_encode_batch(L, idx, &b, root, err, sizeof err) != 0) {
    set_errorf(s, "%s", err);
    return;
  }
  sl_stage_emit(s->st, &b);
}

/* Runs callback cb with nargs arguments on the stack, expecting
 * {events, state} back: stores the state and emits the events. */
static void run_emitting(stage *s, const char *cb, int nargs) {
  if (invoke(s, cb, nargs, 2) <= 0) return;
  set_state(s, -1);
  emit_lua(s, -2, cb);
  lua_pop(s->L, 2);
}

/* ---- the behaviour: engine callbacks into Lua ------------------------------------------ */

static stage *ls(sl_stage *st) { return sl_stage_ud(st); }

/* Exit: events handed to handle_events so far (progress while draining),
 * and events that reached a stage already gone while shutting down. */
static atomic_uint_fast64_t consumed_total, lost_at_exit;
static atomic_int shutting_down;

static void op_post(sl_stage *st, uint64_t to, sl_msg *m) { post(to, m); }

static void op_fail(sl_stage *st, const char *message) { set_error_msg(ls(st), message); }

static void op_warn(sl_stage *st, const char *fmt, unsigned long long n) {
  char label[128], line[256];
  int len = snprintf(line, sizeof line, "sluice: %s ", stage_label(ls(st), label, sizeof label));
  len += snprintf(line + len, sizeof line - (size_t)len, fmt, n);
  if (len > (int)sizeof line - 2) len = (int)sizeof line - 2;
  line[len++] = '\n';
  fwrite(line, 1, (size_t)len, stderr);
}

static void op_handle_demand(sl_stage *st, uint64_t n) {
  stage *s = ls(st);
  lua_pushinteger(s->L, (lua_Integer)n);
  run_emitting(s, "handle_demand", 1);
}

static void op_handle_events(sl_stage *st, uint64_t sub_id, uint64_t peer, const sl_batch *chunk) {
  stage *s = ls(st);
  lua_State *L = s->L;
  char err[256];
  if (sl_decode_batch(L, chunk, err, sizeof err) != 0) {
    set_errorf(s, "handle_events: %s", err);
    return;
  }
  push_from(L, sub_id, peer);
  atomic_fetch_add_explicit(&consumed_total, chunk->count, memory_order_relaxed);
  run_emitting(s, "handle_events", 2);
}

static int op_handle_subscribe(sl_stage *st, int role, uint64_t sub_id, uint64_t peer, const char *opts,
                               size_t len) {
  stage *s = ls(st);
  lua_State *L = s->L;
  char err[256];
  int top = lua_gettop(L);
  lua_pushstring(L, role == SL_ROLE_PRODUCER_SIDE ? "consumer" : "producer");
  if (role == SL_ROLE_CONSUMER_SIDE) lua_pushvalue(L, s->sub_opts);   /* every option, the selector too */
  else if (sl_decode(L, opts, len, err, sizeof err) != 0) lua_newtable(L);
  push_from(L, sub_id, peer);
  int r = invoke(s, "handle_subscribe", 3, 2);
  int mode = SL_DEMAND_AUTOMATIC;
  if (r > 0) {
    const char *m = lua_tostring(L, -2);
    if (m && strcmp(m, "manual") == 0) {
      if (role == SL_ROLE_PRODUCER_SIDE)
        set_errorf(s, "handle_subscribe: a producer cannot use manual demand (bad return value \"manual\")");
      mode = SL_DEMAND_MANUAL;
    } else if (role == SL_ROLE_CONSUMER_SIDE && !lua_isnil(L, -2) && !(m && strcmp(m, "automatic") == 0)) {
      set_errorf(s, "handle_subscribe must return \"automatic\" or \"manual\", got %s", push_got(L, -2));
      lua_settop(L, top);
      return mode;
    }
    set_state(s, -1);
  }
  lua_settop(L, top);
  return mode;
}

static void drop_selector(stage *s, uint64_t sub_id) {
  for (selsub **p = &s->sels; *p; p = &(*p)->next)
    if ((*p)->id == sub_id) {
      selsub *x = *p;
      *p = x->next;
      luaL_unref(s->L, LUA_REGISTRYINDEX, x->ref);
      free(x);
      return;
    }
}

static void op_handle_cancel(sl_stage *st, int role, int down, uint64_t sub_id, uint64_t peer, const sl_reason *r) {
  stage *s = ls(st);
  lua_State *L = s->L;
  if (role == SL_ROLE_CONSUMER_SIDE) drop_selector(s, sub_id);
  if (!has_callback(s, "handle_cancel")) return;
  lua_createtable(L, 2, 0);
  lua_pushstring(L, down ? "down" : "cancel");
  lua_rawseti(L, -2, 1);
  push_reason(L, r);
  lua_rawseti(L, -2, 2);
  push_from(L, sub_id, peer);
  run_emitting(s, "handle_cancel", 2);
}

static void op_handle_info(sl_stage *st, const char *data, size_t len) {
  stage *s = ls(st);
  char err[256];
  if (sl_decode(s->L, data, len, err, sizeof err) != 0) {
    set_errorf(s, "handle_info: %s", err);
    return;
  }
  run_emitting(s, "handle_info", 1);
}

static void op_terminate(sl_stage *st, const sl_reason *r) {
  stage *s = ls(st);
  if (!has_callback(s, "terminate")) return;
  push_reason(s->L, r);
  if (invoke(s, "terminate", 1, 0) < 0) {}
}

/* Pushes the events of *b decoded, for computing their partitions in Lua
 * terms. Returns the array's stack index, or 0 after stopping the stage. */
static int decode_for_partition(stage *s, const sl_batch *b) {
  char err[256];
  if (sl_decode_batch(s->L, b, err, sizeof err) != 0) {
    set_errorf(s, "partition: %s", err);
    return 0;
  }
  return lua_gettop(s->L);
}

/* Computes the partition of every event of *b with a Lua hash; may
 * replace *b when the hash returns new events. 0, or -1 after stopping. */
static int lua_partitions(stage *s, sl_batch *b, int32_t *parts) {
  lua_State *L = s->L;
  char err[256];
  int top = lua_gettop(L);
  int events = decode_for_partition(s, b);
  if (!events) return -1;
  int changed = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->part_hash);
  int hash = lua_gettop(L);
  for (uint32_t i = 0; i < b->count; i++) {
    lua_pushvalue(L, hash);
    lua_rawgeti(L, events, (lua_Integer)i + 1);
    if (sl_pcall(L, 1, 2) != LUA_OK) {
      char label[128];
      lua_pushfstring(L, "%s (partition hash): %s", stage_label(s, label, sizeof label),
                      lua_tostring(L, -2));
      lua_replace(L, -3);
      set_error(s, 2);
      lua_settop(L, top);
      return -1;
    }
    if (!lua_isnil(L, -1)) {                       /* stack: ... p newev */
      lua_rawseti(L, events, (lua_Integer)i + 1);
      changed = 1;
    } else {
      lua_pop(L, 1);
    }
    if (lua_isnil(L, -1)) {
      parts[i] = -1;
    } else {
      lua_Integer p = -2;
      if (s->part_names != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->part_names);
        lua_pushvalue(L, -2);
        if (lua_rawget(L, -2) == LUA_TNUMBER) p = lua_tointeger(L, -1) - 1;
        lua_pop(L, 2);
      } else {
        int isint;
        lua_Integer k = lua_tointegerx(L, -1, &isint);   /* 2.0 is partition 2 */
        if (isint && lua_type(L, -1) == LUA_TNUMBER) p = k - 1;
      }
      if (p < 0 || p >= (lua_Integer)s->nparts) {
        char label[128];
        lua_pushfstring(L, "%s: unknown partition %s computed for event %d", stage_label(s, label, sizeof label),
                        push_got(L, -1), (int)i + 1);
        lua_pushliteral(L, "");
        set_error(s, 3);
        lua_settop(L, top);
        return -1;
      }
      parts[i] = (int32_t)p;
    }
    lua_pop(L, 1);
  }
  if (changed) {
    sl_batch nb;
    if (sl_encode_batch(L, events, &nb, "event", err, sizeof err) != 0) {
      set_errorf(s, "partition hash: %s", err);
      lua_settop(L, top);
      return -1;
    }
    sl_batch_release(b);
    *b = nb;
  }
  lua_settop(L, top);
  return 0;
}

/* Partitions by a key read in C from each decoded event (key = {index =
 * i} or {field = name}): the engine's hash of the key's encoding, as
 * sluice._hash computes it, with no Lua call. 0, or -1 after stopping. */
static int key_partitions(stage *s, const sl_batch *b, int32_t *parts) {
  lua_State *L = s->L;
  char err[256];
  int top = lua_gettop(L);
  int events = decode_for_partition(s, b);         /* stack: events */
  if (!events) return -1;
  sl_buf key = SL_BUF_INIT;
  for (uint32_t i = 0; i < b->count; i++) {
    if (lua_rawgeti(L, events, (lua_Integer)i + 1) == LUA_TTABLE) {
      if (s->key_field) lua_getfield(L, -1, s->key_field);
      else lua_rawgeti(L, -1, s->key_index);       /* stack: events e k */
    } else {
      lua_pushnil(L);
    }
    key.len = 0;
    if (sl_encode(L, -1, &key, "partition key", err, sizeof err) != 0) {
      sl_buf_free(&key);
      set_errorf(s, "%s", err);
      lua_settop(L, top);
      return -1;
    }
    parts[i] = (int32_t)sl_hash_partition(sl_hash_bytes(key.data, key.len), s->nparts);
    lua_pop(L, 2);
  }
  sl_buf_free(&key);
  lua_settop(L, top);
  return 0;
}

static int op_partition(sl_stage *st, sl_batch *b, int32_t *parts) {
  stage *s = ls(st);
  if (s->part_hash != LUA_NOREF) return lua_partitions(s, b, parts);
  if (s->key_index || s->key_field) return key_partitions(s, b, parts);
  sl_dispatch_hash_partitions(b, s->nparts, parts);
  return 0;
}

static int32_t op_partition_of(sl_stage *st, const char *opts, size_t len, char *why, size_t whylen) {
  stage *s = ls(st);
  lua_State *L = s->L;
  char err[256];
  int top = lua_gettop(L);
  if (sl_decode(L, opts, len, err, sizeof err) != 0 || !lua_istable(L, -1)) {
    lua_settop(L, top);
    lua_newtable(L);
  }
  lua_getfield(L, -1, "partition");
  int32_t part = -1;
  if (s->part_names != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->part_names);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) == LUA_TNUMBER) part = (int32_t)lua_tointeger(L, -1) - 1;
    lua_pop(L, 2);
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    int isint;
    lua_Integer p = lua_tointegerx(L, -1, &isint);
    if (isint && p >= 1 && p <= (lua_Integer)s->nparts) part = (int32_t)(p - 1);
  }
  if (part < 0)
    snprintf(why, whylen, "partition must be one of the dispatcher's %u partitions, got %s", s->nparts,
             push_got(L, -1));
  lua_settop(L, top);
  return part;
}

/* Keeps the events of *b the subscription's selector accepts. */
static int op_select(sl_stage *st, uint64_t sub_id, sl_batch *b) {
  stage *s = ls(st);
  lua_State *L = s->L;
  selsub *x = s->sels;
  while (x && x->id != sub_id) x = x->next;
  if (!x) return 0;
  char err[256];
  int top = lua_gettop(L);
  if (sl_decode_batch(L, b, err, sizeof err) != 0) {
    set_errorf(s, "handle_events: %s", err);
    return -1;
  }
  int all = lua_gettop(L);
  uint32_t n = b->count, kept = 0;
  uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
  if (!idx) abort();
  for (uint32_t i = 0; i < n; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref);
    lua_rawgeti(L, all, (lua_Integer)i + 1);
    if (sl_pcall(L, 1, 1) != LUA_OK) {
      char label[128];
      if (lua_type(L, -2) == LUA_TSTRING) {
        lua_pushfstring(L, "%s (selector): %s", stage_label(s, label, sizeof label), lua_tostring(L, -2));
        lua_replace(L, -3);
      }
      set_error(s, 2);
      lua_settop(L, top);
      free(idx);
      return -1;
    }
    if (lua_toboolean(L, -1)) idx[kept++] = i;
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  if (kept < n) {
    sl_batch out = SL_BATCH_EMPTY;
    if (kept && sl_batch_gather(b, idx, kept, &out) != 0) abort();
    sl_batch_release(b);
    *b = out;
  }
  free(idx);
  return 0;
}

static void unlink_stage(stage *s) {
  for (stage **p = &place_of(s->place)->table[s->ref % NBUCKETS]; *p; p = &(*p)->hnext)
    if (*p == s) {
      *p = s->hnext;
      return;
    }
}

/* Frees what the binding holds for a stage (the engine record apart). */
static void free_lstage(stage *s) {
  lua_State *L = s->L;
  while (s->sels) drop_selector(s, s->sels->id);
  if (s->part_hash != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->part_hash);
  free(s->key_field);
  if (s->part_names != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->part_names);
  if (s->lref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->lref);
  free(s->name);
  free(s);
}

/* A one-line crash report on stderr for a stage that failed in its own
 * code (those it stopped in turn carry its reason without reporting). */
static void crash_report(stage *s, const sl_reason *r) {
  lua_State *L = s->L;
  char label[128];
  push_reason(L, r);
  if (lua_istable(L, -1)) lua_rawgeti(L, -1, 2);
  else lua_pushvalue(L, -1);
  const char *msg = lua_tostring(L, -1);
  if (!msg) msg = luaL_typename(L, -1);
  stage_label(s, label, sizeof label);
  size_t ll = strlen(label);
  if (strncmp(msg, label, ll) == 0 && msg[ll] == ' ') msg += ll + 1;       /* "(callback): ..." */
  else if (strncmp(msg, label, ll) == 0 && msg[ll] == ':') msg += ll + 2;  /* ": ..." */
  char line[600];
  const char *close = msg[0] == '(' ? strstr(msg, "): ") : NULL;
  int n = close ? snprintf(line, sizeof line, "sluice: %s crashed in %.*s: %s", label, (int)(close - msg - 1),
                           msg + 1, close + 3)
                : snprintf(line, sizeof line, "sluice: %s crashed: %s", label, msg);
  if (n < 0 || n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n') line[i] = ' ';   /* one line */
  line[n++] = '\n';
  fwrite(line, 1, (size_t)n, stderr);
  lua_pop(L, 2);
}

static void op_ended(sl_stage *st) {
  stage *s = ls(st);
  const sl_reason *r = sl_stage_reason(st);
  lua_State *L = s->L;
  size_t len;
  push_reason(L, r);
  char *data = encode_reason(L, -1, &len);
  lua_pop(L, 1);
  unlink_stage(s);
  if ((r->flags & SL_REASON_ERROR) && !reg_watched(s->ref)) crash_report(s, r);
  reg_dead(s->ref, data, len);
  free(data);
  sl_inbox_post(sl_sched_main(sl_rt_g.sched), msg(M_EXIT, s->ref, 0, 0));
  free_lstage(s);
}

static const sl_stage_ops lua_ops = {
  .post = op_post,
  .fail = op_fail,
  .handle_demand = op_handle_demand,
  .handle_events = op_handle_events,
  .handle_subscribe = op_handle_subscribe,
  .handle_cancel = op_handle_cancel,
  .handle_info = op_handle_info,
  .terminate = op_terminate,
  .partition = op_partition,
  .partition_of = op_partition_of,
  .select = op_select,
  .warn = op_warn,
  .ended = op_ended,
};

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
  s->part_hash = s->part_names = LUA_NOREF;
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
  int rc = sl_stage_new(&cfg, &lua_ops, s, &s->st);
  sl_msg *r = msg(M_START_REPLY, m->from, 0, 0);
  if (rc != 0) {
    lua_pushfstring(L, "cannot create the stage: %s", sl_strerror(rc));
    r->data = encode_reason(L, -1, &r->len);
    free_lstage(s);
    reg_dead(m->to, r->data, r->len);   /* before the reply: the name is free once start returns */
    sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
    lua_settop(L, t - 1);
    return;
  }
  place *pl = place_of(p);
  s->hnext = pl->table[s->ref % NBUCKETS];
  pl->table[s->ref % NBUCKETS] = s;
  /* init(arg) -> state; without init the state is arg */
  lua_getfield(L, t, "arg");
  if (has_callback(s, "init")) {
    push_callback(s, "init");
    lua_insert(L, -2);
    pl->current = s;
    int st = sl_pcall(L, 1, 1);
    pl->current = NULL;
    if (st != LUA_OK) {                            /* stack: ... err tb */
      if (lua_type(L, -2) == LUA_TSTRING) {          /* a message gets its traceback */
        lua_pushfstring(L, "init failed: %s\n%s", lua_tostring(L, -2), lua_tostring(L, -1));
        lua_replace(L, -3);
      }
      r->data = encode_reason(L, -2, &r->len);
      unlink_stage(s);
      lua_createtable(L, 3, 0);                      /* the reason await would give */
      lua_pushliteral(L, "error");
      lua_rawseti(L, -2, 1);
      lua_pushvalue(L, -3);
      lua_rawseti(L, -2, 2);
      lua_pushvalue(L, -2);
      lua_rawseti(L, -2, 3);
      size_t len;
      char *data = encode_reason(L, -1, &len);
      reg_dead(s->ref, data, len);                   /* before the reply: the name is free again */
      free(data);
      sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
      sl_stage_free(s->st);
      free_lstage(s);
      lua_settop(L, t - 1);
      return;
    }
  }
  set_state(s, -1);
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
static sl_msg *replies;
static uint64_t *waits;
static size_t nwaits, capwaits;

static void waits_push(uint64_t id) {
  if (nwaits == capwaits) {
    size_t n = capwaits ? 2 * capwaits : 8;
    uint64_t *w = realloc(waits, n * sizeof *w);
    if (!w) abort();
    waits = w;
    capwaits = n;
  }
  waits[nwaits++] = id;
}

static void waits_drop(uint64_t id) {
  for (size_t i = nwaits; i-- > 0;)
    if (waits[i] == id) {
      waits[i] = waits[--nwaits];
      return;
    }
}

static int waited(uint64_t id) {
  for (size_t i = 0; i < nwaits; i++)
    if (waits[i] == id) return 1;
  return 0;
}

/* Pushes the stats table of stage:stats(). */
static void push_stats(stage *s) {
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
  lua_pushinteger(L, 0);
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
static void reply(lua_State *L, uint64_t call_id, int ok, int idx) {
  if (!call_id) return;
  sl_msg *m = msg(M_REPLY, call_id, 0, ok);
  sl_buf b = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, idx, &b, "reply", err, sizeof err) != 0) {
    sl_buf_free(&b);
    lua_pushfstring(L, "call: %s", err);
    sl_encode(L, -1, &b, "reply", err, sizeof err);
    lua_pop(L, 1);
    m->n = 0;
  }
  m->data = sl_buf_take(&b, &m->len);
  sl_inbox_post(sl_sched_main(sl_rt_g.sched), m);
}

/* reply() with a string. */
static void reply_str(lua_State *L, uint64_t call_id, int ok, const char *s) {
  lua_pushstring(L, s);
  reply(L, call_id, ok, -1);
  lua_pop(L, 1);
}

/* Answers call_id with the error that is stopping s: the message and the
 * traceback of its {"error", message, traceback} reason. */
static void reply_failure(stage *s, uint64_t call_id) {
  lua_State *L = s->L;
  push_reason(L, sl_stage_reason(s->st));
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
  reply(L, call_id, 0, -1);
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
    int r = invoke(s, "handle_call", 2, 3);
    if (r < 0) {
      reply_str(L, m->from, 0, "the stage has no handle_call callback");
      return;
    }
    if (r == 0) {          /* the stage stops; the caller gets the error */
      reply_failure(s, m->from);
      return;
    }
    set_state(s, -1);
    emit_lua(s, -2, "handle_call");
    if (!(lua_touserdata(L, -3) == NOREPLY)) reply(L, m->from, 1, -3);
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
    push_stats(s);
    break;
  case OP_STOP:
    if (sl_decode(L, m->data, m->len, err, sizeof err) != 0) lua_pushliteral(L, "normal");
    set_stop_asked(s, -1);
    break;
  case OP_SHUTDOWN:                                  /* at exit: what it holds is reported */
    lua_pushliteral(L, "shutdown");
    sl_stage_stop(s->st, lua_reason(L, -1, 0));
    break;
  case OP_FINISH:
    sl_stage_finish(s->st);
    lua_pushboolean(L, 1);
    break;
  default:
    lua_pushboolean(L, 1);
    break;
  }
  reply(L, m->from, 1, -1);
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
  if (m->kind == SL_SM_EVENTS && atomic_load(&shutting_down))
    atomic_fetch_add(&lost_at_exit, m->batch.count);
  sl_msg *r = sl_stage_gone_reply(m);
  if (r) post(r->to, r);
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
      sl_msg *r = msg(M_START_REPLY, m->from, 0, 0);
      r->data = encode_reason(L, -1, &r->len);
      lua_pop(L, 1);
      reg_dead(m->to, r->data, r->len);   /* before the reply: the name is free again */
      sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
      return;
    }
    start_stage(L, p, m);
    return;
  }
  stage *s = find_stage(p, m->to);
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
      reply(L, ack, 1, -1);
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
    run_emitting(s, "handle_cast", 1);
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
    m->next = replies;
    replies = m;
    return 1;
  }
  if (m->kind != M_EXIT) handle_stage_msg(L, p, m);
  sl_msg_free(m);
  return 1;
}

/* ---- the main thread waits -------------------------------------------------------------- */

static sl_msg *take_reply(uint64_t id) {
  for (sl_msg **p = &replies; *p; p = &(*p)->next)
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
static sl_msg *wait_reply(lua_State *L, uint64_t id, int64_t timeout, uint64_t target, const char *fn) {
  int64_t deadline = timeout >= 0 ? sl_now_ms() + timeout : -1;
  const char *why = NULL;
  sl_msg *m;
  waits_push(id);
  for (;;) {
    if ((m = take_reply(id))) break;
    if (target && reg_status(NULL, target) == 0) {
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
  if (strcmp(why, "timed out") == 0) luaL_error(L, "%s: timed out after %d ms", fn, (int)timeout);
  luaL_error(L, "%s: %s", fn, why);
  return NULL;
}

static int is_main_thread(lua_State *L) { return sl_rt_place(L) == PLACE_MAIN; }

static stage *current_stage(lua_State *L) {
  int p = sl_rt_place(L);
  return places ? place_of(p)->current : NULL;
}

/* The stage record of ref when it is the one running a callback here. */
static stage *self_stage(lua_State *L, uint64_t ref) {
  stage *s = current_stage(L);
  return s && s->ref == ref ? s : NULL;
}

/* A message of kind for to carrying the encoded value at idx; raises
 * "fn: ..." when the value cannot cross. */
static sl_msg *encode_msg(lua_State *L, int idx, uint32_t kind, uint64_t to, const char *fn) {
  sl_buf b = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, idx, &b, "message", err, sizeof err) != 0) {
    sl_buf_free(&b);
    luaL_error(L, "%s: %s", fn, err);
  }
  sl_msg *m = msg(kind, to, 0, 0);
  m->data = sl_buf_take(&b, &m->len);
  return m;
}

/* Raises "fn: ..." when the value at idx cannot cross to another state. */
static void check_sendable(lua_State *L, int idx, const char *fn) {
  sl_buf b = SL_BUF_INIT;
  char err[256];
  int rc = sl_encode(L, idx, &b, "message", err, sizeof err);
  sl_buf_free(&b);
  if (rc != 0) luaL_error(L, "%s: %s", fn, err);
}

/* A synchronous internal call from the main thread; pushes the reply. */
static int call_stage(lua_State *L, uint64_t ref, int op, int arg, int64_t timeout, const char *fn) {
  if (!is_main_thread(L)) return luaL_error(L, "%s: only the main thread may call a stage", fn);
  if (reg_status(NULL, ref) == 0) return luaL_error(L, "%s: the stage has stopped", fn);
  sl_msg *m = arg ? encode_msg(L, arg, M_CALL, ref, fn) : msg(M_CALL, ref, 0, 0);
  uint64_t id = sl_rt_id();
  m->from = id;
  m->n = op;
  post(ref, m);
  sl_msg *r = wait_reply(L, id, timeout, ref, fn);
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

/* ---- option checking ------------------------------------------------------------------------ */

static int is_handle_kind(lua_State *L, int idx, int kind) { return sl_handle_test(L, idx, kind) != NULL; }

/* Checks subscription options (table at idx, may be nil) and leaves a
 * normalised copy on the stack. skip_first: the table's [1] is the
 * producer (subscribe_to entries). */
static void check_sub_opts(lua_State *L, const char *fn, int idx, int skip_first) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  int out = lua_gettop(L);
  if (lua_isnoneornil(L, idx)) {
    lua_pushinteger(L, 1000);
    lua_setfield(L, out, "max_demand");
    lua_pushinteger(L, 500);
    lua_setfield(L, out, "min_demand");
    return;
  }
  if (!lua_istable(L, idx)) luaL_error(L, "%s: subscription options must be a table, got %s", fn, luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!(skip_first && lua_isinteger(L, -2) && lua_tointeger(L, -2) == 1)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "%s: subscription option keys must be strings, got %s", fn, luaL_typename(L, -2));
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, out);
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, out, "max_demand");
  lua_Integer max = 1000;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
      luaL_error(L, "%s: max_demand must be an integer >= 1, got %s", fn, push_got(L, -1));
    max = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  lua_pushinteger(L, max);
  lua_setfield(L, out, "max_demand");
  lua_getfield(L, out, "min_demand");
  lua_Integer min = max / 2;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) >= max)
      luaL_error(L, "%s: min_demand must be an integer from 0 to max_demand - 1 (%I), got %s", fn,
                 (lua_Integer)(max - 1), push_got(L, -1));
    min = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  lua_pushinteger(L, min);
  lua_setfield(L, out, "min_demand");
  lua_getfield(L, out, "cancel");
  if (!lua_isnil(L, -1)) {
    const char *c = lua_tostring(L, -1);
    int ok = 0;
    for (int i = 0; cancel_names[i]; i++) ok |= c && lua_type(L, -1) == LUA_TSTRING && strcmp(c, cancel_names[i]) == 0;
    if (!ok)
      luaL_error(L, "%s: cancel must be \"permanent\", \"transient\" or \"temporary\", got %s", fn, push_got(L, -1));
  }
  lua_pop(L, 1);
  lua_getfield(L, out, "selector");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_error(L, "%s: selector must be a function, got %s", fn, luaL_typename(L, -1));
  lua_pop(L, 1);
}

/* Resolves a producer given as a handle or a registered name. */
static int check_stage_arg(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    uint64_t ref = reg_whereis(lua_tostring(L, idx));
    if (!ref) return luaL_error(L, "%s: no stage is named '%s'", fn, lua_tostring(L, idx));
    push_stage(L, ref);
    lua_replace(L, idx);
  }
  if (!is_handle_kind(L, idx, SL_H_STAGE))
    return luaL_error(L, "%s: %s must be a stage, got %s", fn, what, luaL_typename(L, idx));
  return 1;
}

/* check_stage_arg for a stage that must be able to produce. */
static void check_producer_arg(lua_State *L, int idx, const char *fn, const char *what) {
  check_stage_arg(L, idx, fn, what);
  if (reg_type(sl_handle_test(L, idx, SL_H_STAGE)->id) == T_CONSUMER)
    luaL_error(L, "%s: %s must be a producer or a producer_consumer, got a consumer", fn, what);
}

static const char *const start_keys[] = {"subscribe_to", "dispatcher", "demand", "buffer_size", "buffer_keep",
                                         "worker", "name", "_on_cancel", "_main", "_finite", NULL};

/* Checks sluice.start's options (at idx) against the spec's type; leaves
 * the normalised options table on the stack. */
static void check_start_opts(lua_State *L, int idx, int type) {
  const char *fn = "sluice.start";
  lua_newtable(L);
  int out = lua_gettop(L);
  if (lua_isnoneornil(L, idx)) return;
  luaL_argexpected(L, lua_istable(L, idx), idx, "table of options");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int known = 0;
    for (int i = 0; k && start_keys[i]; i++) known |= strcmp(k, start_keys[i]) == 0;
    if (!known) luaL_error(L, "%s: unknown option %s", fn, luaL_tolstring(L, -2, NULL));
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, out);
    lua_pop(L, 1);
  }
  lua_getfield(L, out, "subscribe_to");
  if (!lua_isnil(L, -1)) {
    if (type == T_PRODUCER) luaL_error(L, "%s: subscribe_to is for consumers and producer_consumers", fn);
    if (!lua_istable(L, -1)) luaL_error(L, "%s: subscribe_to must be a list, got %s", fn, luaL_typename(L, -1));
    int list = lua_gettop(L);
    lua_newtable(L);
    int norm = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, list, i) != LUA_TNIL; i++) {
      int e = lua_gettop(L);
      lua_createtable(L, 0, 2);
      if (lua_istable(L, e) && !is_handle_kind(L, e, SL_H_STAGE)) {
        lua_rawgeti(L, e, 1);
        check_producer_arg(L, lua_gettop(L), fn, "a subscribe_to producer");
        lua_setfield(L, -2, "producer");
        check_sub_opts(L, fn, e, 1);
      } else {
        lua_pushvalue(L, e);
        check_producer_arg(L, lua_gettop(L), fn, "a subscribe_to entry");
        lua_setfield(L, -2, "producer");
        lua_pushnil(L);
        check_sub_opts(L, fn, -1, 0);
        lua_remove(L, -2);
      }
      lua_setfield(L, -2, "opts");
      lua_rawseti(L, norm, i);
      lua_settop(L, norm);
    }
    lua_settop(L, norm);
    lua_setfield(L, out, "subscribe_to");
  }
  lua_settop(L, out);
  lua_getfield(L, out, "dispatcher");
  if (!lua_isnil(L, -1)) {
    if (type == T_CONSUMER) luaL_error(L, "%s: dispatcher is for producers and producer_consumers", fn);
    lua_getfield(L, -1, "kind");
    if (!lua_istable(L, -2) || !lua_isstring(L, -1))
      luaL_error(L, "%s: dispatcher must come from sluice.dispatcher.demand/broadcast/partition", fn);
  }
  lua_settop(L, out);
  lua_getfield(L, out, "demand");
  if (!lua_isnil(L, -1)) {
    const char *d = lua_tostring(L, -1);
    if (type != T_PRODUCER) luaL_error(L, "%s: demand is an option for producers only", fn);
    if (!d || (strcmp(d, "forward") != 0 && strcmp(d, "accumulate") != 0))
      luaL_error(L, "%s: demand must be \"forward\" or \"accumulate\", got %s", fn, push_got(L, -1));
  }
  lua_settop(L, out);
  lua_getfield(L, out, "buffer_size");
  if (!lua_isnil(L, -1)) {
    if (type == T_CONSUMER) luaL_error(L, "%s: buffer_size is for producers and producer_consumers", fn);
    int ok = (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) ||
             (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == HUGE_VAL);
    if (!ok) luaL_error(L, "%s: buffer_size must be an integer >= 1 or math.huge, got %s", fn, push_got(L, -1));
  }
  lua_settop(L, out);
  lua_getfield(L, out, "buffer_keep");
  if (!lua_isnil(L, -1)) {
    const char *k = lua_tostring(L, -1);
    if (!k || (strcmp(k, "first") != 0 && strcmp(k, "last") != 0))
      luaL_error(L, "%s: buffer_keep must be \"first\" or \"last\", got %s", fn, push_got(L, -1));
  }
  lua_settop(L, out);
  lua_getfield(L, out, "worker");
  if (!lua_isnil(L, -1) && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > sl_rt_g.nworkers))
    luaL_error(L, "%s: worker must be an integer from 1 to %d, got %s", fn, sl_rt_g.nworkers, push_got(L, -1));
  lua_settop(L, out);
  lua_getfield(L, out, "name");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: name must be a string, got %s", fn, luaL_typename(L, -1));
    if (reg_whereis(lua_tostring(L, -1))) luaL_error(L, "%s: a stage named '%s' is already running", fn, lua_tostring(L, -1));
  }
  lua_settop(L, out);
}

/* ---- sluice.* stage functions ------------------------------------------------------------------ */

static void cast_op(lua_State *L, uint64_t ref, int64_t op, int arg);

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

void sl_stage_stop_started(lua_State *L) {
  lua_pushliteral(L, "shutdown");
  int reason = lua_gettop(L);
  for (size_t i = 0; i < nstarted; i++)
    if (reg_status(NULL, started[i]) == 1) cast_op(L, started[i], OP_STOP, reason);
  lua_pop(L, 1);
  /* main-thread stages stop when the main inbox is pumped */
  int64_t deadline = sl_now_ms() + 1000;
  for (size_t i = 0; i < nstarted; i++)
    while (reg_status(NULL, started[i]) == 1 && sl_now_ms() < deadline) sl_rt_pump(L, 10);
  nstarted = 0;
}

/* ---- exit ------------------------------------------------------------------------------ */

#define EXIT_FINITE 16   /* in live_stages' types: a producer that ends by itself */

/* The live stages: refs and types (malloc'd; *n of them). */
static uint64_t *live_stages(int **types, size_t *n) {
  size_t cap = 16, k = 0;
  uint64_t *refs = malloc(cap * sizeof *refs);
  int *ts = malloc(cap * sizeof *ts);
  if (!refs || !ts) abort();
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS; b++)
    for (reg_entry *e = reg_table[b]; e; e = e->next) {
      if (!e->alive) continue;
      if (k == cap) {
        cap *= 2;
        refs = realloc(refs, cap * sizeof *refs);
        ts = realloc(ts, cap * sizeof *ts);
        if (!refs || !ts) abort();
      }
      refs[k] = e->ref;
      ts[k++] = e->type | (e->finite ? EXIT_FINITE : 0);
    }
  pthread_mutex_unlock(&reg_mu);
  *types = ts;
  *n = k;
  return refs;
}

static size_t count_alive(const uint64_t *refs, size_t n) {
  size_t a = 0;
  for (size_t i = 0; i < n; i++) a += reg_status(NULL, refs[i]) == 1;
  return a;
}

/* Pumps the main inbox until every stage of refs has ended, or nothing
 * moved for idle_ms, or deadline passes. */
static void wait_stages(lua_State *L, const uint64_t *refs, size_t n, int64_t deadline, int64_t idle_ms) {
  size_t alive = count_alive(refs, n);
  uint64_t seen = atomic_load(&consumed_total);
  int64_t still_since = sl_now_ms();
  while (alive > 0 && sl_now_ms() < deadline) {
    sl_rt_pump(L, 10);
    size_t a = count_alive(refs, n);
    uint64_t c = atomic_load(&consumed_total);
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
  uint64_t *refs = live_stages(&types, &n);
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
    if (types[i] == T_PRODUCER) cast_op(L, refs[i], OP_FINISH, 0);   /* finite sources run to their end */
  wait_stages(L, refs, n, sl_now_ms() + EXIT_DRAIN_MS, 100);
  for (size_t i = 0; i < n; i++)
    if (types[i] == (T_PRODUCER | EXIT_FINITE) && reg_status(NULL, refs[i]) == 1) {
      char *name = reg_name(refs[i]);
      fprintf(stderr, "sluice: at exit, the source %s%s%s had not reached its end after %d ms; it stops now "
              "(await the pipeline's last stage to get all of it)\n", name ? "'" : "",
              name ? name : "stage", name ? "'" : "", EXIT_DRAIN_MS);
      free(name);
    }
  /* 2. what is left (consumers that outlive their producers, stages with
   * nobody to take their events) stops with "shutdown" */
  for (size_t i = 0; i < n; i++)
    if (reg_status(NULL, refs[i]) == 1) cast_op(L, refs[i], OP_SHUTDOWN, 0);
  wait_stages(L, refs, n, sl_now_ms() + 1000, 1000);
  return 0;
}

void sl_stage_shutdown(lua_State *L) {
  if (!places) return;
  atomic_store(&shutting_down, 1);
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
      if (reg_status(NULL, refs[i]) == 1) cast_op(L, refs[i], OP_SHUTDOWN, 0);
    int64_t deadline = sl_now_ms() + 500;
    while (refs && count_alive(refs, n) > 0 && sl_now_ms() < deadline) {
      sl_msg *m = sl_inbox_wait(sl_sched_main(sl_rt_g.sched), 10);
      if (m && !sl_stage_handle(L, PLACE_MAIN, m)) sl_msg_free(m);
    }
  }
  size_t stuck = 0;
  for (size_t i = 0; refs && i < n; i++) {
    if (reg_status(NULL, refs[i]) != 1) continue;
    char *name = reg_name(refs[i]);
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
  uint64_t lost = atomic_load(&lost_at_exit);
  if (lost) fprintf(stderr, "sluice: at exit, %llu events on their way to stages that had stopped were dropped\n",
                    (unsigned long long)lost);
  free(refs);
  free(types);
}

/* sluice.start(spec, arg [, opts]) -> stage */
static int l_start(lua_State *L) {
  const char *fn = "sluice.start";
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 3);
  if (!is_main_thread(L)) return luaL_error(L, "%s: only the main thread may start stages", fn);
  lua_getfield(L, 1, "type");
  const char *tn = lua_tostring(L, -1);
  int type = -1;
  for (int i = 0; tn && lua_type(L, -1) == LUA_TSTRING && type_names[i]; i++)
    if (strcmp(tn, type_names[i]) == 0) type = i;
  if (type < 0)
    return luaL_error(L, "%s: spec.type must be \"producer\", \"producer_consumer\" or \"consumer\", got %s", fn,
                      push_got(L, -1));
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
  check_start_opts(L, 3, type);                    /* stack: spec arg opts nopts */
  int nopts = lua_gettop(L);
  lua_getfield(L, nopts, "_main");
  int p;
  if (lua_toboolean(L, -1)) {
    p = PLACE_MAIN;
  } else {
    lua_getfield(L, nopts, "worker");
    if (lua_isinteger(L, -1)) p = (int)lua_tointeger(L, -1) - 1;
    else p = place_of(PLACE_MAIN)->rr++ % sl_rt_g.nworkers;
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
    m = msg(M_START, ref, 0, 0);
    m->n = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    m = encode_msg(L, -1, M_START, ref, fn);
    sl_rt_attach_snapshot(L, m);
  }
  uint64_t waiter = sl_rt_id();
  m->from = waiter;
  lua_getfield(L, nopts, "name");
  lua_getfield(L, nopts, "_finite");
  reg_add(ref, lua_tostring(L, -2), type, lua_toboolean(L, -1));
  lua_pop(L, 2);
  note_started(ref);
  post(ref, m);
  sl_msg *r = wait_reply(L, waiter, -1, 0, fn);
  int ok = (int)r->n;
  if (!ok) {
    char err[256];
    if (sl_decode(L, r->data, r->len, err, sizeof err) != 0) lua_pushstring(L, err);
    sl_msg_free(r);
    if (lua_type(L, -1) != LUA_TSTRING) return lua_error(L);   /* an error value raised as is */
    return luaL_error(L, "%s: %s", fn, lua_tostring(L, -1));
  }
  sl_msg_free(r);
  push_stage(L, ref);
  return 1;
}

/* sluice.subscribe(consumer, producer [, opts]) -> subscription */
static int l_subscribe(lua_State *L) {
  const char *fn = "sluice.subscribe";
  check_stage_arg(L, 1, fn, "the consumer");
  check_stage_arg(L, 2, fn, "the producer");
  check_sub_opts(L, fn, 3, 0);
  uint64_t consumer = sl_handle_test(L, 1, SL_H_STAGE)->id;
  uint64_t producer = sl_handle_test(L, 2, SL_H_STAGE)->id;
  if (reg_type(consumer) == T_PRODUCER)
    return luaL_error(L, "%s: the consumer must be a consumer or a producer_consumer, got a producer", fn);
  if (reg_type(producer) == T_CONSUMER)
    return luaL_error(L, "%s: the producer must be a producer or a producer_consumer, got a consumer", fn);
  /* From the main thread, returns once a worker consumer has sent the
   * subscribe (as GenStage's sync_subscribe), so that what the main thread
   * sends the producer next arrives behind it. A consumer living on the
   * main thread subscribes when the main thread next waits; inside a
   * callback the subscription is asynchronous. */
  uint64_t ack = is_main_thread(L) && sl_ref_place(consumer) != PLACE_MAIN ? sl_rt_id() : 0;
  lua_createtable(L, 0, 2);                        /* stack: ... nopts t */
  lua_insert(L, -2);
  lua_setfield(L, -2, "opts");
  lua_pushinteger(L, (lua_Integer)ack);
  lua_setfield(L, -2, "ack");
  sl_msg *m = encode_msg(L, -1, M_SUBSCRIBE_TO, consumer, fn);
  uint64_t id = sl_rt_id();
  m->from = producer;
  m->n = (int64_t)id;
  post(consumer, m);
  if (ack) {
    sl_msg *r = wait_reply(L, ack, -1, consumer, NULL);
    if (r) sl_msg_free(r);
  }
  sl_handle_push(L, SL_H_SUB, id, consumer);
  return 1;
}

/* sluice.self() -> the stage whose callback is running */
static int l_self(lua_State *L) {
  stage *s = current_stage(L);
  if (!s) return luaL_error(L, "sluice.self: not inside a stage callback");
  push_stage(L, s->ref);
  return 1;
}

/* sluice.whereis(name) -> stage or nil */
static int l_whereis(lua_State *L) {
  uint64_t ref = reg_whereis(luaL_checkstring(L, 1));
  if (!ref) return 0;
  push_stage(L, ref);
  return 1;
}

static uint64_t check_stage(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_STAGE);
  luaL_argexpected(L, h != NULL, 1, "stage");
  return h->id;
}

/* stage:send(msg): handle_info, behind the events a producer emitted before */
static int l_stage_send(lua_State *L) {
  uint64_t ref = check_stage(L);
  luaL_checkany(L, 2);
  post(ref, encode_msg(L, 2, M_INFO, ref, "stage:send"));
  return 0;
}

/* stage:send_after(ms, msg) -> timer: stage:send after ms, on the
 * target's place */
static int l_stage_send_after(lua_State *L) {
  uint64_t ref = check_stage(L);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0, 2, "must be >= 0");
  luaL_checkany(L, 3);
  sl_msg *m = encode_msg(L, 3, M_INFO, ref, "stage:send_after");
  int p = sl_ref_place(ref);
  uint64_t id = sl_inbox_after(place_inbox(p), ms, m);
  sl_handle_push(L, SL_H_TIMER, id, (uint64_t)(p + 1));
  return 1;
}

/* timer:cancel() -> whether it was still pending */
static int l_timer_cancel(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_TIMER);
  luaL_argexpected(L, h != NULL, 1, "timer");
  lua_pushboolean(L, sl_inbox_cancel(place_inbox((int)h->aux - 1), h->id));
  return 1;
}

/* stage:cast(msg): handle_cast */
static int l_stage_cast(lua_State *L) {
  uint64_t ref = check_stage(L);
  luaL_checkany(L, 2);
  post(ref, encode_msg(L, 2, M_CAST, ref, "stage:cast"));
  return 0;
}

/* stage:call(req [, timeout_ms]) -> reply (main thread) */
static int l_stage_call(lua_State *L) {
  uint64_t ref = check_stage(L);
  luaL_checkany(L, 2);
  lua_Integer timeout = luaL_optinteger(L, 3, 5000);
  return call_stage(L, ref, OP_USER, 2, timeout, "stage:call");
}

/* Local (self) or remote internal operation without a reply. */
static void cast_op(lua_State *L, uint64_t ref, int64_t op, int arg) {
  sl_msg *m = arg ? encode_msg(L, arg, M_CALL, ref, "stage") : msg(M_CALL, ref, 0, 0);
  m->n = op;
  post(ref, m);
}

/* stage:demand() -> "forward" | "accumulate"; stage:demand(mode) switches
 * a producer's mode, asynchronously (from its own callbacks too, so that a
 * forward replays the held demand after the running callback, as
 * GenStage's demand/2 does). */
static int l_stage_demand(lua_State *L) {
  uint64_t ref = check_stage(L);
  stage *s = self_stage(L, ref);
  if (lua_isnoneornil(L, 2)) {
    if (s) {
      if (s->type != T_PRODUCER) return luaL_error(L, "stage:demand: demand mode is only for producers");
      lua_pushstring(L, sl_stage_accumulating(s->st) ? "accumulate" : "forward");
      return 1;
    }
    return call_stage(L, ref, OP_DEMAND_GET, 0, 5000, "stage:demand");
  }
  const char *mode = luaL_checkstring(L, 2);
  int accumulate = strcmp(mode, "accumulate") == 0;
  if (!accumulate && strcmp(mode, "forward") != 0)
    return luaL_error(L, "stage:demand: mode must be \"forward\" or \"accumulate\", got \"%s\"", mode);
  cast_op(L, ref, OP_DEMAND_SET | ((int64_t)accumulate << 8), 0);
  return 0;
}

/* stage:buffered() -> events in the buffer */
static int l_stage_buffered(lua_State *L) {
  uint64_t ref = check_stage(L);
  stage *s = self_stage(L, ref);
  if (s) {
    sl_stage_stats st;
    sl_stage_get_stats(s->st, &st);
    lua_pushinteger(L, (lua_Integer)st.buffered);
    return 1;
  }
  return call_stage(L, ref, OP_BUFFERED, 0, 5000, "stage:buffered");
}

/* stage:stats() -> table */
static int l_stage_stats(lua_State *L) {
  uint64_t ref = check_stage(L);
  stage *s = self_stage(L, ref);
  if (s) {
    push_stats(s);
    return 1;
  }
  return call_stage(L, ref, OP_STATS, 0, 5000, "stage:stats");
}

/* stage:finish(): stop "normal" once nothing is left to send */
static int l_stage_finish(lua_State *L) {
  uint64_t ref = check_stage(L);
  stage *s = self_stage(L, ref);
  if (s) sl_stage_finish(s->st);
  else cast_op(L, ref, OP_FINISH, 0);
  return 0;
}

/* stage:stop([reason]): from the main thread, returns once it has stopped. */
static int l_stage_stop(lua_State *L) {
  uint64_t ref = check_stage(L);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "normal");
  }
  stage *s = self_stage(L, ref);
  if (s) {
    set_stop_asked(s, 2);
    return 0;
  }
  if (reg_status(NULL, ref) != 1) return 0;
  cast_op(L, ref, OP_STOP, 2);
  if (is_main_thread(L))
    while (reg_status(NULL, ref) == 1) sl_rt_pump(L, 50);
  return 0;
}

/* stage:await([timeout_ms]) -> exit reason (main thread) */
static int l_stage_await(lua_State *L) {
  uint64_t ref = check_stage(L);
  lua_Integer timeout = luaL_optinteger(L, 2, -1);
  if (!is_main_thread(L)) return luaL_error(L, "stage:await: only the main thread may wait");
  reg_watch(ref);
  int64_t deadline = timeout >= 0 ? sl_now_ms() + timeout : -1;
  for (;;) {
    int st = reg_status(L, ref);
    if (st == 0) return 1;
    if (st < 0) return luaL_error(L, "stage:await: unknown stage");
    int64_t left = deadline >= 0 ? deadline - sl_now_ms() : 50;
    if (deadline >= 0 && left <= 0) return luaL_error(L, "stage:await: timed out after %d ms", (int)timeout);
    sl_rt_pump(L, left);
  }
}

/* sluice._watch(stage): its exit will be awaited (by a flow), so a
 * crash is reported there, not on stderr. */
static int l_watch(lua_State *L) {
  reg_watch(check_stage(L));
  return 0;
}

/* stage:alive() -> boolean */
static int l_stage_alive(lua_State *L) {
  lua_pushboolean(L, reg_status(NULL, check_stage(L)) == 1);
  return 1;
}

/* stage:name() -> the name given at start, or nil */
static int l_stage_name(lua_State *L) {
  char *n = reg_name(check_stage(L));
  if (!n) return 0;
  lua_pushstring(L, n);
  free(n);
  return 1;
}

/* subscription:cancel([reason]): through the consumer, which asks its
 * producer to cancel (handle_cancel gets {"cancel", reason} on both sides) */
static int l_sub_cancel(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_SUB);
  luaL_argexpected(L, h != NULL, 1, "subscription");
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "normal");
  }
  check_sendable(L, 2, "subscription:cancel");
  post(h->aux, reason_msg(L, SL_SM_CANCEL_SUB, h->aux, h->id, 2));
  return 0;
}

/* from:ask(n): manual demand for the subscription from (n >= 0) */
static int l_from_ask(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_FROM);
  luaL_argexpected(L, h != NULL && !(h->aux & REPLY_FLAG), 1, "subscription from");
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "demand must be >= 0");
  if (n == 0) return 0;
  stage *s = current_stage(L);
  if (s && sl_stage_has_producer(s->st, h->id)) sl_stage_ask(s->st, h->id, (uint64_t)n);
  else post(h->aux, msg(SL_SM_ASK, h->aux, h->id, n));
  return 0;
}

/* from:cancel([reason]): ends the subscription from, from either side */
static int l_from_cancel(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_FROM);
  luaL_argexpected(L, h != NULL && !(h->aux & REPLY_FLAG), 1, "subscription from");
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "normal");
  }
  /* The request goes to the producer: the peer, or ourselves when we are
   * the producer (handled after the running callback, as in GenStage). */
  stage *s = current_stage(L);
  uint64_t producer = s && sl_stage_has_consumer(s->st, h->id) ? s->ref : h->aux;
  check_sendable(L, 2, "from:cancel");
  post(producer, reason_msg(L, SL_SM_CANCEL_REQ, producer, h->id, 2));
  return 0;
}

/* from:reply(value): answers the call from (after sluice.NOREPLY) */
static int l_from_reply(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_FROM);
  luaL_argexpected(L, h != NULL && (h->aux & REPLY_FLAG), 1, "call from");
  luaL_checkany(L, 2);
  reply(L, h->id, 1, 2);
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
  if (!lua_istable(L, 1)) return luaL_error(L, "%s: expects a table of options", fn);
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
                      luaL_tolstring(L, -1, NULL));
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
    {"start", l_start}, {"subscribe", l_subscribe}, {"self", l_self}, {"whereis", l_whereis}, {"_watch", l_watch}, {NULL, NULL}};
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
  places = calloc((size_t)nworkers + 1, sizeof *places);
  if (!places) abort();
}

void sl_stage_close(lua_State *L) {
  place *pl = place_of(PLACE_MAIN);
  for (int b = 0; b < NBUCKETS; b++)
    while (pl->table[b]) {
      stage *s = pl->table[b];
      pl->table[b] = s->hnext;
      sl_stage_free(s->st);
      free_lstage(s);
    }
  while (replies) {
    sl_msg *m = replies;
    replies = m->next;
    sl_msg_free(m);
  }
  reg_free();
  free(started);
  started = NULL;
  nstarted = capstarted = 0;
  free(waits);
  waits = NULL;
  nwaits = capwaits = 0;
  free(places);
  places = NULL;
}

/* Worker places: stages left at shutdown are freed with their state. */
void sl_stage_close_place(int p) {
  place *pl = place_of(p);
  for (int b = 0; b < NBUCKETS; b++)
    while (pl->table[b]) {
      stage *s = pl->table[b];
      pl->table[b] = s->hnext;
      sl_stage_free(s->st);
      free_lstage(s);
    }
}
