/* stage: GenStage stages in the binding: the places and their stage
 * records, reasons, and the behaviour table (sl_stage_ops) that the
 * engine's stage protocol (engine/stage.c) calls, implemented with the
 * spec's Lua callbacks. The other concerns are in registry.c (the shared
 * table of stages), stage_msg.c (messages and waits), stage_api.c (the
 * sluice.* functions) and stage_exit.c (the end of the process).
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
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "buffer.h"
#include "dispatch.h"
#include "redis.h"
#include "hash.h"
#include "outbox.h"
#include "rawbatch.h"
#include "stage_int.h"
#include "argcheck.h"
#include "status.h"

/* ---- refs and places --------------------------------------------------- */

uint64_t sl_ref_make(uint64_t id, int p) { return id | ((uint64_t)(p + 1) << 48); }
int sl_ref_place(uint64_t ref) { return (int)(ref >> 48) - 1; }

sl_inbox *st_place_inbox(int p) {
  return p == PLACE_MAIN ? sl_sched_main(sl_rt_g.sched) : sl_sched_inbox(sl_rt_g.sched, p);
}

void st_post(uint64_t ref, sl_msg *m) { sl_inbox_post(st_place_inbox(sl_ref_place(ref)), m); }

sl_msg *st_msg(uint32_t kind, uint64_t to, uint64_t from, int64_t n) {
  sl_msg *m = sl_msg_new(kind);
  if (!m) abort();   /* out of memory on the message path: nothing sane to do */
  m->to = to;
  m->from = from;
  m->n = n;
  return m;
}

place *st_places;     /* index place + 1; each touched by its own thread */

place *st_place_of(int p) { return &st_places[p + 1]; }

stage *st_find_stage(int p, uint64_t ref) {
  for (stage *s = st_place_of(p)->table[ref % NBUCKETS]; s; s = s->hnext)
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
const char *st_push_got(lua_State *L, int idx) { return sl_arg_got(L, idx); }

/* ---- reasons ---------------------------------------------------------------------- */

const char st_NOREPLY_KEY = 0;   /* its address is sluice.NOREPLY */

/* Encodes the value at idx into a malloc'd reason; on failure encodes a
 * string describing it instead. */
char *st_encode_reason(lua_State *L, int idx, size_t *len) {
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
sl_reason st_lua_reason(lua_State *L, int idx, unsigned flags) {
  sl_reason r = {NULL, 0, flags};
  if (is_normal_reason(L, idx)) r.flags |= SL_REASON_NORMAL;
  if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "already_subscribed") == 0)
    r.flags |= SL_REASON_ALREADY;
  r.data = st_encode_reason(L, idx, &r.len);
  return r;
}

/* Pushes a reason as a Lua value. */
void st_push_reason(lua_State *L, const sl_reason *r) {
  char err[256];
  if (r->flags & SL_REASON_TEXT) lua_pushlstring(L, r->data ? r->data : "", r->len);
  else if (!r->data) lua_pushliteral(L, "normal");
  else if (sl_decode(L, r->data, r->len, err, sizeof err) != 0) lua_pushstring(L, err);
}

/* A message of kind for `to` carrying the reason at idx. */
sl_msg *st_reason_msg(lua_State *L, uint32_t kind, uint64_t to, uint64_t sub_id, int idx) {
  sl_reason r = st_lua_reason(L, idx, 0);
  sl_msg *m = sl_stage_reason_msg(kind, to, sub_id, 0, &r);
  sl_reason_free(&r);
  return m;
}

/* stage:stop(reason), the user's own stop: s stops with the reason at idx
 * once the current message is handled; the first reason given wins. */
void st_set_stop_asked(stage *s, int idx) { sl_stage_stop(s->st, st_lua_reason(s->L, idx, SL_REASON_ASKED)); }

/* Pushes {"error", message, traceback} for the message at -2 and the
 * traceback at -1. */
void st_push_error_reason(lua_State *L) {
  lua_createtable(L, 3, 0);                 /* stack: msg tb r */
  lua_pushliteral(L, "error");
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 3);
}

/* Stops s with {"error", message, traceback}: message at -2, tb at -1. */
static void set_error(stage *s, int pop) {
  lua_State *L = s->L;
  st_push_error_reason(L);
  sl_stage_stop(s->st, st_lua_reason(L, -1, SL_REASON_ERROR));
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
int st_push_callback(stage *s, const char *cb) {
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

int st_has_callback(stage *s, const char *cb) {
  if (!st_push_callback(s, cb)) return 0;
  lua_pop(s->L, 1);
  return 1;
}

/* Stores the value at idx as the stage state. */
void st_set_state(stage *s, int idx) {
  idx = lua_absindex(s->L, idx);
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->lref);
  lua_pushvalue(s->L, idx);
  lua_setfield(s->L, -2, "state");
  lua_pop(s->L, 1);
}

/* Calls spec[cb](args..., state): the nargs arguments are on the stack.
 * Leaves nres results and returns 1, or on error stops the stage and
 * returns 0 (args popped). A missing callback returns -1 (args popped). */
int st_invoke(stage *s, const char *cb, int nargs, int nres) {
  lua_State *L = s->L;
  if (!st_push_callback(s, cb)) {
    lua_pop(L, nargs);
    return -1;
  }
  lua_insert(L, -nargs - 1);                        /* stack: fn args */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->lref);
  lua_getfield(L, -1, "state");
  lua_remove(L, -2);                                /* stack: fn args state */
  place *pl = st_place_of(s->place);
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

void st_push_stage(lua_State *L, uint64_t ref) { sl_handle_push(L, SL_H_STAGE, ref, 0); }

/* Encodes the events array a callback returned (at idx) and emits it.
 * cb names the callback in errors. */
void st_emit_lua(stage *s, int idx, const char *cb) {
  lua_State *L = s->L;
  sl_batch b;
  char err[256], root[64];
  if (lua_isnil(L, idx)) return;
  int ob = sl_outbox_take(L, idx, &b, err, sizeof err);   /* events encoded as they were emitted */
  if (ob < 0) {
    set_errorf(s, "%s: %s", cb, err);
    return;
  }
  if (ob > 0) {
    if (b.count && s->type == T_CONSUMER) {
      set_errorf(s, "%s: a consumer cannot emit events (got %d)", cb, (int)b.count);
      sl_batch_release(&b);
      return;
    }
    sl_stage_emit(s->st, &b);
    return;
  }
  if (!lua_istable(L, idx)) {
    set_errorf(s, "%s must return an array of events, got %s", cb, luaL_typename(L, idx));
    return;
  }
  if (lua_rawlen(L, idx) == 0) return;
  if (s->type == T_CONSUMER) {
    set_errorf(s, "%s: a consumer cannot emit events (got %d)", cb, (int)lua_rawlen(L, idx));
    return;
  }
  snprintf(root, sizeof root, "%s events", cb);
  if (sl_encode_batch(L, idx, &b, root, err, sizeof err) != 0) {
    set_errorf(s, "%s", err);
    return;
  }
  sl_stage_emit(s->st, &b);
}

/* Runs callback cb with nargs arguments on the stack, expecting
 * {events, state} back: stores the state and emits the events. */
void st_run_emitting(stage *s, const char *cb, int nargs) {
  if (st_invoke(s, cb, nargs, 2) <= 0) return;
  st_set_state(s, -1);
  st_emit_lua(s, -2, cb);
  lua_pop(s->L, 2);
}

/* ---- the behaviour: engine callbacks into Lua ------------------------------------------ */

static stage *ls(sl_stage *st) { return sl_stage_ud(st); }

/* Exit: events handed to handle_events so far (progress while draining),
 * and events that reached a stage already gone while shutting down. */
atomic_uint_fast64_t st_consumed_total, st_lost_at_exit;
atomic_int st_shutting_down;

static void op_post(sl_stage *st, uint64_t to, sl_msg *m) { st_post(to, m); }

static void op_fail(sl_stage *st, const char *message) { set_error_msg(ls(st), message); }

static void op_warn(sl_stage *st, const char *fmt, unsigned long long n) {
  char label[128], line[256];
  int len = snprintf(line, sizeof line, "sluice: %s ", stage_label(ls(st), label, sizeof label));
  len += snprintf(line + len, sizeof line - (size_t)len, fmt, n);
  if (len > (int)sizeof line - 2) len = (int)sizeof line - 2;
  line[len++] = '\n';
  fwrite(line, 1, (size_t)len, stderr);
}

/* A stage stopped holding events: said on stderr, unless its owner
 * collects its outcome (a flow's result, an await) and it ended with an
 * error: the owner gets the error, and the events are part of it. */
static void op_dropped(sl_stage *st, unsigned long long n) {
  if (!(sl_stage_reason(st)->flags & SL_REASON_NORMAL) && st_reg_watched(ls(st)->ref)) return;
  op_warn(st, "stopped with %llu events it had not delivered (buffered or queued)", n);
}

static void op_handle_demand(sl_stage *st, uint64_t n) {
  stage *s = ls(st);
  lua_pushinteger(s->L, (lua_Integer)n);
  st_run_emitting(s, "handle_demand", 1);
}

static void op_handle_events(sl_stage *st, uint64_t sub_id, uint64_t peer, const sl_batch *chunk) {
  stage *s = ls(st);
  lua_State *L = s->L;
  char err[256];
  /* events of a Redis source are acknowledged once handle_events returned */
  const sl_redis_source *src = sl_redis_source_of(peer);
  int raw = s->raw_ref != LUA_NOREF && !src;
  if (raw) {
    sl_rawbatch_push(L, s->raw_ref, chunk);
  } else if (sl_decode_batch(L, chunk, err, sizeof err) != 0) {
    set_errorf(s, "handle_events: %s", err);
    return;
  }
  if (src) sl_redis_take_ids(L, -1);
  push_from(L, sub_id, peer);
  atomic_fetch_add_explicit(&st_consumed_total, chunk->count, memory_order_relaxed);
  st_run_emitting(s, "handle_events", 2);
  if (raw) sl_rawbatch_end(L, s->raw_ref);
  if (src) sl_redis_ack(L, src, !sl_stage_stopping(st) || (sl_stage_reason(st)->flags & SL_REASON_NORMAL));
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
  int r = st_invoke(s, "handle_subscribe", 3, 2);
  int mode = SL_DEMAND_AUTOMATIC;
  if (r > 0) {
    const char *m = lua_tostring(L, -2);
    if (m && strcmp(m, "manual") == 0) {
      if (role == SL_ROLE_PRODUCER_SIDE)
        set_errorf(s, "handle_subscribe: a producer cannot use manual demand (bad return value \"manual\")");
      mode = SL_DEMAND_MANUAL;
    } else if (role == SL_ROLE_CONSUMER_SIDE && !lua_isnil(L, -2) && !(m && strcmp(m, "automatic") == 0)) {
      set_errorf(s, "handle_subscribe must return \"automatic\" or \"manual\", got %s", st_push_got(L, -2));
      lua_settop(L, top);
      return mode;
    }
    st_set_state(s, -1);
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
  if (!st_has_callback(s, "handle_cancel")) return;
  lua_createtable(L, 2, 0);
  lua_pushstring(L, down ? "down" : "cancel");
  lua_rawseti(L, -2, 1);
  st_push_reason(L, r);
  lua_rawseti(L, -2, 2);
  push_from(L, sub_id, peer);
  st_run_emitting(s, "handle_cancel", 2);
}

static void op_handle_info(sl_stage *st, const char *data, size_t len) {
  stage *s = ls(st);
  char err[256];
  if (sl_decode(s->L, data, len, err, sizeof err) != 0) {
    set_errorf(s, "handle_info: %s", err);
    return;
  }
  st_run_emitting(s, "handle_info", 1);
}

static void op_terminate(sl_stage *st, const sl_reason *r) {
  stage *s = ls(st);
  if (!st_has_callback(s, "terminate")) return;
  st_push_reason(s->L, r);
  if (st_invoke(s, "terminate", 1, 0) < 0) {}
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
                        st_push_got(L, -1), (int)i + 1);
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

/* Partitions by a key (key = {index = i} or {field = name}): the
 * engine's hash of the key's encoding, as sluice._hash computes it, with
 * no Lua call. A scalar key is read from the event's bytes; only a batch
 * with another kind of key is decoded (once) to read it. 0, or -1 after
 * stopping. */
static int key_partitions(stage *s, const sl_batch *b, int32_t *parts) {
  lua_State *L = s->L;
  char err[256];
  int top = lua_gettop(L), events = 0;
  size_t flen = s->key_field ? strlen(s->key_field) : 0;
  sl_buf key = SL_BUF_INIT;
  for (uint32_t i = 0; i < b->count; i++) {
    size_t len, klen;
    const char *p = sl_batch_event(b, i, &len), *k;
    if (sl_encoded_field(p, len, s->key_index, s->key_field, flen, &k, &klen) == 1) {
      parts[i] = (int32_t)sl_hash_partition(sl_key_hash(k, klen), s->nparts);
      continue;
    }
    if (!events && !(events = decode_for_partition(s, b))) {  /* stack: events */
      sl_buf_free(&key);
      return -1;
    }
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
    parts[i] = (int32_t)sl_hash_partition(sl_key_hash(key.data, key.len), s->nparts);
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
  for (uint32_t i = 0; i < b->count; i++) {     /* the whole event is the key */
    size_t len;
    const char *p = sl_batch_event(b, i, &len);
    parts[i] = (int32_t)sl_hash_partition(sl_key_hash(p, len), s->nparts);
  }
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
             st_push_got(L, -1));
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

void st_unlink_stage(stage *s) {
  for (stage **p = &st_place_of(s->place)->table[s->ref % NBUCKETS]; *p; p = &(*p)->hnext)
    if (*p == s) {
      *p = s->hnext;
      return;
    }
}

/* Frees what the binding holds for a stage (the engine record apart). */
void st_free_lstage(stage *s) {
  lua_State *L = s->L;
  while (s->sels) drop_selector(s, s->sels->id);
  if (s->part_hash != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->part_hash);
  free(s->key_field);
  if (s->part_names != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->part_names);
  if (s->raw_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->raw_ref);
  if (s->lref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->lref);
  free(s->name);
  free(s);
}

/* A one-line crash report on stderr for a stage that failed in its own
 * code (those it stopped in turn carry its reason without reporting). */
static void crash_report(stage *s, const sl_reason *r) {
  lua_State *L = s->L;
  char label[128];
  st_push_reason(L, r);
  if (lua_istable(L, -1)) lua_rawgeti(L, -1, 2);
  else lua_pushvalue(L, -1);
  const char *msg = lua_tostring(L, -1);
  if (!msg) msg = luaL_typename(L, -1);
  stage_label(s, label, sizeof label);
  size_t ll = strlen(label);
  if (strncmp(msg, label, ll) == 0 && msg[ll] == ' ') msg += ll + 1;       /* "(callback): ..." */
  else if (strncmp(msg, label, ll) == 0 && msg[ll] == ':') msg += ll + 2;  /* ": ..." */
  char line[600];
  const char *open = strncmp(msg, "flow ", 5) == 0 ? strstr(msg, " (") : NULL;
  const char *shut = open ? strstr(open, "): ") : NULL;
  if (shut) {   /* a flow stage names itself: "flow 1 layer 2 stage 1 (map): ..." */
    int k = snprintf(line, sizeof line, "sluice: %.*s crashed in %.*s: %s", (int)(open - msg), msg,
                     (int)(shut - open - 2), open + 2, shut + 3);
    if (k < 0 || k > (int)sizeof line - 2) k = (int)sizeof line - 2;
    for (int i = 0; i < k; i++)
      if (line[i] == '\n') line[i] = ' ';
    line[k++] = '\n';
    fwrite(line, 1, (size_t)k, stderr);
    lua_pop(L, 2);
    return;
  }
  const char *close = msg[0] == '(' ? strstr(msg, "): ") : NULL;
  if (close && atomic_load(&st_shutting_down) && strcmp(close + 3, "interrupted") == 0) {
    int k = snprintf(line, sizeof line, "sluice: at exit, %s was interrupted in %.*s (it had not returned)\n", label,
                     (int)(close - msg - 1), msg + 1);
    fwrite(line, 1, (size_t)k, stderr);
    lua_pop(L, 2);
    return;
  }
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
  st_push_reason(L, r);
  char *data = st_encode_reason(L, -1, &len);
  lua_pop(L, 1);
  st_unlink_stage(s);
  if ((r->flags & SL_REASON_ERROR) && !st_reg_watched(s->ref)) crash_report(s, r);
  st_reg_dead(s->ref, data, len);
  free(data);
  sl_inbox_post(sl_sched_main(sl_rt_g.sched), st_msg(M_EXIT, s->ref, 0, 0));
  st_free_lstage(s);
}

const sl_stage_ops st_lua_ops = {
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
  .dropped = op_dropped,
  .ended = op_ended,
};
