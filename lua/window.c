/* window: the binding of the engine's window state machine (engine/window.h)
 * for the layer stages of a flow.
 *
 *   sluice._window(spec) -> w        one per layer stage, on its worker
 *   w:batch(p, events) -> actions    p: 1-based producer of the batch
 *   w:batch_raw(p, rb) -> actions    a raw batch (rawbatch.c): times read
 *                                    from the events' bytes, each run decoded
 *   w:skip_events()                  runs of raw batches come as counts (an
 *                                    empty array and 1, n): the layer reads
 *                                    no event
 *   w:batch_range(p, first, step, k) -> actions
 *                                    the batch first, first + step, ... (k
 *                                    numbers: a split sluice.range source's)
 *                                    without a table of them
 *   w:producer_done(p) -> actions
 *   w:timer() -> actions             the timer asked by w:next_due() is due
 *   w:message(name) -> actions       a {"trigger", name} message
 *   w:next_due() -> ms | nil         delay until the machine's next timer
 *   w:late() -> n                    events dropped as late so far
 *   w:frontier() -> id | nil         every window with a smaller id has
 *                                    ended, and no new one will open
 *
 * spec: {kind = "global" | "count" | "fixed" | "periodic" | "session" |
 * "sliding", count, size_ms, every_ms, lateness_ms, trigger_every,
 * periodically_ms, producers, merge_sessions = bool, by = {index = i} |
 * {field = name} | function, key = nil | {index = i} | {field = name} |
 * function}.
 *
 * Event times and session keys are read here: a key spec reads the
 * event's field in C, with no Lua call; a function is called once per
 * event. Session keys are mapped to ids (the machine's key) in a table
 * kept with the window, so any Lua value can be a key.
 *
 * The actions come in one flat array, six slots per action (a slot may
 * be nil), action k at 6k+1..6k+6, ending at the first nil op:
 *   1, id, key, events [, i, j]  run: the events of the batch that go to
 *                                window (id, key), in order (with i and j:
 *                                the batch itself, its events i..j)
 *   1, id, key, first, last, step
 *                                (batch_range) a run of consecutive
 *                                numbers: first, first + step, ..., last
 *   2, id, key, trigger, ends    fire: trigger is "done", "watermark",
 *                                "every", "periodically", or the name of a
 *                                message (a custom trigger fires in
 *                                sluice.flow_window, on the window whose
 *                                events it saw)
 *   3, id, key, other            merge: session `other` (same key) merges
 *                                into session id
 * where key is the session key (nil without one). Times are ms from the
 * monotonic clock. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "codec.h"
#include "keys.h"
#include "rawbatch.h"
#include "rt.h"
#include "sched.h"
#include "status.h"
#include "window.h"
#include "lwindow.h"

#define WINDOW_MT "sluice.window"

typedef struct lwin {
  sl_window *w;
  sl_win_out out;
  int64_t *times;
  uint64_t *keys;
  size_t cap;
  int timed;      /* the kind has event times */
  int keyed;      /* sessions per key */
  int skip;       /* w:skip_events(): runs of a raw batch come as counts */
} lwin;

/* uservalue slots: 1 spec.by, 2 spec.key, 3 key value -> id, 4 id -> key value, 5 name -> id, 6 id -> name */
enum { UV_BY = 1, UV_KEY, UV_KEY_ID, UV_ID_KEY, UV_NAME_ID, UV_ID_NAME, UV_N = UV_ID_NAME };

static lwin *check_win(lua_State *L) { return luaL_checkudata(L, 1, WINDOW_MT); }

static int l_gc(lua_State *L) {
  lwin *x = luaL_checkudata(L, 1, WINDOW_MT);
  if (x->w) sl_window_free(x->w);
  x->w = NULL;
  sl_win_out_free(&x->out);
  free(x->times);
  free(x->keys);
  x->times = NULL;
  x->keys = NULL;
  return 0;
}

static lua_Integer field_int(lua_State *L, int t, const char *k, lua_Integer def) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* sluice._window(spec) -> w */
static int l_window(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const kinds[] = {"global", "count", "fixed", "periodic", "session", "sliding", NULL};
  static const sl_window_kind kv[] = {SL_WIN_GLOBAL, SL_WIN_COUNT, SL_WIN_FIXED, SL_WIN_PERIODIC, SL_WIN_SESSION,
                                      SL_WIN_SLIDING};
  lua_getfield(L, 1, "kind");
  int k = luaL_checkoption(L, -1, NULL, kinds);
  lua_pop(L, 1);
  sl_window_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.kind = kv[k];
  spec.count = (uint64_t)field_int(L, 1, "count", 0);
  spec.size_ms = field_int(L, 1, "size_ms", 0);
  spec.every_ms = field_int(L, 1, "every_ms", 0);
  spec.lateness_ms = field_int(L, 1, "lateness_ms", -1);
  spec.trigger_every = (uint64_t)field_int(L, 1, "trigger_every", 0);
  spec.periodically_ms = field_int(L, 1, "periodically_ms", 0);
  spec.producers = (uint32_t)field_int(L, 1, "producers", 1);
  lua_getfield(L, 1, "merge_sessions");
  spec.merge_sessions = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lwin *x = lua_newuserdatauv(L, sizeof *x, UV_N);
  memset(x, 0, sizeof *x);
  sl_win_out_init(&x->out);
  luaL_setmetatable(L, WINDOW_MT);
  int rc = sl_window_new(&spec, sl_now_ms(), &x->w);
  if (rc != 0) return luaL_error(L, "window: %s", sl_strerror(rc));
  x->timed = spec.kind == SL_WIN_FIXED || spec.kind == SL_WIN_SESSION || spec.kind == SL_WIN_SLIDING;
  lua_getfield(L, 1, "by");
  lua_setiuservalue(L, -2, UV_BY);
  lua_getfield(L, 1, "key");
  x->keyed = spec.kind == SL_WIN_SESSION && !lua_isnil(L, -1);
  lua_setiuservalue(L, -2, UV_KEY);
  for (int i = UV_KEY_ID; i <= UV_ID_NAME; i++) {
    lua_newtable(L);
    lua_setiuservalue(L, -2, i);
  }
  return 1;
}

/* How to read the part of an event that a spec names ({index = i},
 * {field = name} or a function), resolved once per batch. */
typedef struct part_reader {
  enum { PART_FN, PART_INDEX, PART_FIELD, PART_NONE } kind;
  lua_Integer index;
  int slot;   /* PART_FN: the function's stack slot; PART_FIELD: the name's */
} part_reader;

/* Resolves the spec at sp; a field name is pushed (and stays). */
static part_reader part_reader_of(lua_State *L, int sp) {
  part_reader r = {PART_NONE, 0, sp};
  if (lua_isfunction(L, sp)) {
    r.kind = PART_FN;
  } else if (lua_istable(L, sp)) {
    if (lua_getfield(L, sp, "index") == LUA_TNUMBER && lua_isinteger(L, -1)) {
      r.kind = PART_INDEX;
      r.index = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    if (r.kind == PART_NONE && lua_getfield(L, sp, "field") == LUA_TSTRING) {
      r.kind = PART_FIELD;
      r.slot = lua_gettop(L);
      return r;
    }
    if (r.kind == PART_NONE) lua_pop(L, 1);
  }
  return r;
}

/* Pushes the part of the event at ev that r reads: its field, or the
 * result of the function; nil for a field of a value that is not a table. */
static void push_part(lua_State *L, const part_reader *r, int ev) {
  switch (r->kind) {
  case PART_FN:
    lua_pushvalue(L, r->slot);
    lua_pushvalue(L, ev);
    lua_call(L, 1, 1);
    return;
  case PART_INDEX:
    if (lua_type(L, ev) == LUA_TTABLE) lua_rawgeti(L, ev, r->index);
    else lua_pushnil(L);
    return;
  case PART_FIELD:
    if (lua_type(L, ev) == LUA_TTABLE) {
      lua_pushvalue(L, r->slot);
      lua_gettable(L, ev);
    } else {
      lua_pushnil(L);
    }
    return;
  default: lua_pushnil(L);
  }
}

static int grow(lwin *x, size_t n) {
  if (n <= x->cap) return 0;
  size_t cap = x->cap ? x->cap : 256;
  while (cap < n) cap *= 2;
  int64_t *t = realloc(x->times, cap * sizeof *t);
  if (!t) return SL_ENOMEM;
  x->times = t;
  uint64_t *k = realloc(x->keys, cap * sizeof *k);
  if (!k) return SL_ENOMEM;
  x->keys = k;
  x->cap = cap;
  return 0;
}

/* The id (1..) of the value at index v in the window's two tables at
 * uservalue slots to_id (value -> id) and to_value (id -> value); a new
 * value gets the next id. */
static uint64_t intern(lua_State *L, int ud, int v, int to_id, int to_value) {
  v = lua_absindex(L, v);
  lua_getiuservalue(L, ud, to_id);
  lua_pushvalue(L, v);
  uint64_t id;
  if (lua_rawget(L, -2) == LUA_TNUMBER) {
    id = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return id;
  }
  lua_pop(L, 1);                                    /* stack: to_id */
  lua_getiuservalue(L, ud, to_value);
  id = (uint64_t)lua_rawlen(L, -1) + 1;
  lua_pushvalue(L, v);
  lua_rawseti(L, -2, (lua_Integer)id);
  lua_pop(L, 1);
  lua_pushvalue(L, v);
  lua_pushinteger(L, (lua_Integer)id);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return id;
}

/* The id of the session key at the stack top (popped); 0 for nil. */
static uint64_t key_id(lua_State *L, int ud) {
  uint64_t id = lua_isnil(L, -1) ? 0 : intern(L, ud, -1, UV_KEY_ID, UV_ID_KEY);
  lua_pop(L, 1);
  return id;
}

/* The events of a batch: the table at index tbl, or (tbl == 0) the
 * numbers first, first + step, ... of a split sluice.range source, or
 * (raw != NULL) a raw batch's events, still encoded. */
typedef struct ev_src {
  int tbl;
  lua_Integer first, step;
  const sl_batch *raw;
} ev_src;

static lua_Integer range_value(const ev_src *s, lua_Unsigned i) {
  return (lua_Integer)((lua_Unsigned)s->first + i * (lua_Unsigned)s->step);
}

/* Pushes event i (0-based) of the batch. */
static void push_event(lua_State *L, const ev_src *s, lua_Unsigned i) {
  if (s->raw) {
    size_t len;
    const char *p = sl_batch_event(s->raw, (uint32_t)i, &len);
    char err[256];
    if (sl_decode(L, p, len, err, sizeof err) != 0) luaL_error(L, "%s", err);
  } else if (s->tbl) {
    lua_rawgeti(L, s->tbl, (lua_Integer)i + 1);
  } else {
    lua_pushinteger(L, range_value(s, i));
  }
}

/* Pushes events from .. from + n - 1 (0-based) of a raw batch as a new
 * array, decoded as a batch is. */
static void push_raw_slice(lua_State *L, const sl_batch *b, uint32_t from, uint32_t n) {
  sl_batch slice = sl_batch_slice(b, from, n);
  char err[256];
  int rc = sl_decode_batch(L, &slice, err, sizeof err);
  sl_batch_release(&slice);
  if (rc != 0) luaL_error(L, "%s", err);
}

/* The integer time of event i of a raw batch read from its bytes, by the
 * reader r ({index} or {field}): 1 with *t set, or 0 when the bytes do
 * not say it plainly (not a table, a time that is not an integer in the
 * window's range): the event is then decoded and read as a table is. */
static int raw_time(lua_State *L, const sl_batch *b, uint32_t i, const part_reader *r, int64_t *t) {
  size_t len, flen = 0;
  const char *p = sl_batch_event(b, i, &len), *field = NULL;
  if (r->kind == PART_FIELD) field = lua_tolstring(L, r->slot, &flen);
  lua_Integer x;
  if (sl_encoded_int_field(p, len, r->index, field, flen, &x) != 0 || x < SL_WIN_TIME_MIN || x > SL_WIN_TIME_MAX)
    return 0;
  *t = (int64_t)x;
  return 1;
}

static const char *const trigger_names[] = {"done", "watermark", "every", "periodically"};

/* Pushes the actions of x->out as one flat array, ACTION_SLOTS slots per
 * action (see the file's opening comment); src (or NULL) is the batch the
 * runs index into. One array, no table per action: a
 * session window over interleaved keys has a run per event. */
#define ACTION_SLOTS 6
static void push_actions(lua_State *L, int ud, lwin *x, const ev_src *src) {
  size_t n = x->out.nacts;
  lua_createtable(L, n > (size_t)INT32_MAX / ACTION_SLOTS ? 0 : (int)(n * ACTION_SLOTS), 0);
  int arr = lua_gettop(L);
  lua_getiuservalue(L, ud, UV_ID_KEY);            /* key id -> key value */
  int keys = lua_gettop(L);
  for (size_t i = 0; i < n; i++) {
    const sl_win_action *a = &x->out.acts[i];
    lua_Integer b = (lua_Integer)(i * ACTION_SLOTS);
    lua_pushinteger(L, a->op == SL_WIN_FIRE ? 2 : a->op == SL_WIN_MERGE ? 3 : 1);
    lua_rawseti(L, arr, b + 1);
    lua_pushinteger(L, (lua_Integer)a->win.id);
    lua_rawseti(L, arr, b + 2);
    if (a->win.key) {
      lua_rawgeti(L, keys, (lua_Integer)a->win.key);
      lua_rawseti(L, arr, b + 3);
    }
    if (a->op == SL_WIN_MERGE) {
      lua_pushinteger(L, (lua_Integer)a->other);  /* the session merged into it */
      lua_rawseti(L, arr, b + 4);
    } else if (a->op == SL_WIN_FIRE) {
      if (a->trigger == SL_TRIG_MESSAGE || a->trigger == SL_TRIG_CUSTOM) {
        lua_getiuservalue(L, ud, UV_ID_NAME);
        lua_rawgeti(L, -1, (lua_Integer)a->name_id);
        lua_remove(L, -2);
      } else {
        lua_pushstring(L, trigger_names[a->trigger]);
      }
      lua_rawseti(L, arr, b + 4);
      lua_pushboolean(L, a->ends);
      lua_rawseti(L, arr, b + 5);
    } else if (src->raw && x->skip) {
      /* the layer reads no event: an empty array and 1..n, so the loop
       * runs n times with a nil event */
      lua_createtable(L, 0, 0);
      lua_rawseti(L, arr, b + 4);
      lua_pushinteger(L, 1);
      lua_rawseti(L, arr, b + 5);
      lua_pushinteger(L, (lua_Integer)a->n);
      lua_rawseti(L, arr, b + 6);
    } else if (x->out.idx[a->from + a->n - 1] - x->out.idx[a->from] == a->n - 1) {
      /* consecutive events of the batch (a run's indices only grow): the
       * batch itself and the slice's first and last index; of a range,
       * the run's first and last number and the step */
      lua_Unsigned i0 = x->out.idx[a->from], i1 = x->out.idx[a->from + a->n - 1];
      if (src->raw) {   /* the run decoded into an array of its own */
        push_raw_slice(L, src->raw, (uint32_t)i0, a->n);
        lua_rawseti(L, arr, b + 4);
        continue;
      }
      if (src->tbl) {
        lua_pushvalue(L, src->tbl);
        lua_rawseti(L, arr, b + 4);
        lua_pushinteger(L, (lua_Integer)i0 + 1);
        lua_rawseti(L, arr, b + 5);
        lua_pushinteger(L, (lua_Integer)i1 + 1);
      } else {
        lua_pushinteger(L, range_value(src, i0));
        lua_rawseti(L, arr, b + 4);
        lua_pushinteger(L, range_value(src, i1));
        lua_rawseti(L, arr, b + 5);
        lua_pushinteger(L, src->step);
      }
      lua_rawseti(L, arr, b + 6);
    } else {
      lua_createtable(L, (int)a->n, 0);
      for (uint32_t j = 0; j < a->n; j++) {
        push_event(L, src, x->out.idx[a->from + j]);
        lua_rawseti(L, -2, (lua_Integer)j + 1);
      }
      lua_rawseti(L, arr, b + 4);
    }
  }
  lua_settop(L, arr);
}

static int finish(lua_State *L, lwin *x, int rc, const ev_src *src, const char *what) {
  if (rc != 0) {
    sl_win_out_reset(&x->out);
    lua_pushfstring(L, "%s: %s", what, sl_strerror(rc));
    return lua_error(L);
  }
  push_actions(L, 1, x, src);
  sl_win_out_reset(&x->out);
  return 1;
}

static uint32_t check_producer(lua_State *L, int idx) {
  lua_Integer p = luaL_checkinteger(L, idx);
  luaL_argcheck(L, p >= 1 && p <= UINT32_MAX, idx, "producer out of range");
  return (uint32_t)(p - 1);
}

/* Takes the time of event i (0-based) off the stack top into x->times,
 * or raises the error that names it. */
static void take_time(lua_State *L, lwin *x, lua_Unsigned i) {
  if (lua_isinteger(L, -1)) {   /* the common case, in fewer calls */
    lua_Integer t = lua_tointegerx(L, -1, NULL);
    if (t >= SL_WIN_TIME_MIN && t <= SL_WIN_TIME_MAX) {
      x->times[i] = (int64_t)t;
      lua_settop(L, -2);
      return;
    }
  }
  int isint = 0;
  lua_Integer t = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER || t < SL_WIN_TIME_MIN || t > SL_WIN_TIME_MAX) {
    lua_pushfstring(L, "the event time (by) must be an integer of ms, got %s for event %d",
                    luaL_tolstring(L, -1, NULL), (int)i + 1);
    lua_error(L);
  }
  x->times[i] = (int64_t)t;
  lua_pop(L, 1);
}

/* Runs the n events of src through the machine as producer p's batch;
 * the window's uservalues are pushed above the stack top (top). */
static int batch_of(lua_State *L, lwin *x, uint32_t p, const ev_src *src, lua_Unsigned n, int top) {
  if (n > UINT32_MAX) return luaL_error(L, "window: too many events in one batch");
  if (grow(x, (size_t)n) != 0) return luaL_error(L, "window: not enough memory");
  lua_settop(L, top);
  lua_getiuservalue(L, 1, UV_BY);
  lua_getiuservalue(L, 1, UV_KEY);
  part_reader by = part_reader_of(L, top + 1), key = part_reader_of(L, top + 2);   /* (field names pushed) */
  int ev = lua_gettop(L) + 1;
  if (src->raw && x->timed && !x->keyed && (by.kind == PART_INDEX || by.kind == PART_FIELD)) {
    /* times read from the events' bytes; an event they do not give a
     * plain time for is decoded, and read (or named in the error) as a
     * table's is */
    for (lua_Unsigned i = 0; i < n; i++) {
      if (raw_time(L, src->raw, (uint32_t)i, &by, &x->times[i])) continue;
      push_event(L, src, i);
      push_part(L, &by, ev);
      take_time(L, x, i);
      lua_pop(L, 1);
    }
  } else if (x->timed && !x->keyed && by.kind == PART_FN) {
    /* times from a function (the first layer's fixed windows): the event
     * goes straight in as its argument */
    for (lua_Unsigned i = 0; i < n; i++) {
      lua_pushvalue(L, by.slot);
      push_event(L, src, i);
      lua_call(L, 1, 1);
      take_time(L, x, i);
    }
  } else {
    for (lua_Unsigned i = 0; i < n && (x->timed || x->keyed); i++) {
      push_event(L, src, i);                       /* ev: the event */
      if (x->timed) {
        push_part(L, &by, ev);
        take_time(L, x, i);
      }
      if (x->keyed) {
        push_part(L, &key, ev);
        x->keys[i] = key_id(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  int rc = sl_window_batch(x->w, p, (uint32_t)n, x->timed ? x->times : NULL, x->keyed ? x->keys : NULL,
                           sl_now_ms(), &x->out);
  return finish(L, x, rc, src, "batch");
}

/* w:batch(p, events) -> actions */
static int l_batch(lua_State *L) {
  lwin *x = check_win(L);
  uint32_t p = check_producer(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  ev_src src = {3, 0, 0, NULL};
  return batch_of(L, x, p, &src, lua_rawlen(L, 3), 3);
}

/* w:batch_raw(p, rb) -> actions: the events of a raw batch (rawbatch.c),
 * read from their bytes where they can be; each run comes as an array of
 * its events, decoded. */
static int l_batch_raw(lua_State *L) {
  lwin *x = check_win(L);
  uint32_t p = check_producer(L, 2);
  ev_src src = {0, 0, 0, sl_rawbatch_check(L, 3)};
  return batch_of(L, x, p, &src, src.raw->count, 3);
}

/* w:skip_events(): from now on a run of a raw batch's events comes as an
 * empty array and 1, n instead of its events decoded (the layer's loop
 * passes its reducer a nil event: it reads none). */
static int l_skip_events(lua_State *L) {
  check_win(L)->skip = 1;
  return 0;
}

/* w:batch_range(p, first, step, k) -> actions: the batch first, first +
 * step, ... (k numbers) of a split sluice.range source, with no table of
 * them; a run of consecutive numbers comes as first, last, step (numbers
 * where a run has events, see the file's opening comment). */
static int l_batch_range(lua_State *L) {
  lwin *x = check_win(L);
  uint32_t p = check_producer(L, 2);
  ev_src src = {0, luaL_checkinteger(L, 3), luaL_checkinteger(L, 4), NULL};
  lua_Integer k = luaL_checkinteger(L, 5);
  luaL_argcheck(L, k >= 0, 5, "count out of range");
  return batch_of(L, x, p, &src, (lua_Unsigned)k, 5);
}

/* w:producer_done(p) -> actions */
static int l_producer_done(lua_State *L) {
  lwin *x = check_win(L);
  uint32_t p = check_producer(L, 2);
  return finish(L, x, sl_window_producer_done(x->w, p, sl_now_ms(), &x->out), NULL, "producer_done");
}

/* w:timer() -> actions */
static int l_timer(lua_State *L) {
  lwin *x = check_win(L);
  return finish(L, x, sl_window_timer(x->w, sl_now_ms(), &x->out), NULL, "timer");
}

/* The id of trigger name at idx (any value but nil). */
static uint64_t name_id(lua_State *L, int idx) {
  luaL_checkany(L, idx);
  return intern(L, 1, idx, UV_NAME_ID, UV_ID_NAME);
}

/* w:message(name) -> actions */
static int l_message(lua_State *L) {
  lwin *x = check_win(L);
  uint64_t id = name_id(L, 2);
  return finish(L, x, sl_window_message(x->w, id, &x->out), NULL, "message");
}

/* w:next_due() -> ms from now (>= 0), or nil */
static int l_next_due(lua_State *L) {
  lwin *x = check_win(L);
  int64_t due = sl_window_next_due(x->w);
  if (due < 0) return 0;
  int64_t d = due - sl_now_ms();
  lua_pushinteger(L, d > 0 ? d : 0);
  return 1;
}

/* w:late() -> events dropped as late so far */
static int l_late(lua_State *L) {
  lwin *x = check_win(L);
  lua_pushinteger(L, (lua_Integer)sl_window_late_total(x->w));
  return 1;
}

/* w:frontier() -> id, or nil while the machine knows no bound
 * (sl_window_frontier) */
static int l_frontier(lua_State *L) {
  lwin *x = check_win(L);
  int64_t f;
  if (!sl_window_frontier(x->w, &f)) return 0;
  lua_pushinteger(L, (lua_Integer)f);
  return 1;
}

/* sluice._range_chunk(first, step, k) -> {first, first + step, ...} (k
 * numbers): a split source's events, made at their size in one call. */
static int l_range_chunk(lua_State *L) {
  lua_Integer v = luaL_checkinteger(L, 1), step = luaL_checkinteger(L, 2), k = luaL_checkinteger(L, 3);
  luaL_argcheck(L, k >= 0 && k <= INT32_MAX, 3, "count out of range");
  lua_createtable(L, (int)k, 0);
  for (lua_Integer i = 1; i <= k; i++) {
    lua_pushinteger(L, v);
    lua_rawseti(L, -2, i);
    v = (lua_Integer)((lua_Unsigned)v + (lua_Unsigned)step);
  }
  return 1;
}

/* A combining layer's reading of its events for the next layer's fixed
 * window and partition (sluice.flow_codegen): what that layer's window and
 * dispatcher will compute, in one call per event. */
typedef struct wpart {
  lua_Integer size;       /* the window's size, ms */
  lua_Integer tidx, kidx; /* {index = i} of the time / the key */
  int tfield, kfield;     /* or {field = name}: the name is upvalue 2 / 3 */
  int same;               /* the key is the time */
  uint32_t n;             /* partitions; 1: no key read */
} wpart;

/* Pushes e[i], or e[name] for the name at upvalue up (e at index 1). */
static void wpart_get(lua_State *L, int field, lua_Integer i, int up) {
  if (field) {
    lua_pushvalue(L, lua_upvalueindex(up));
    lua_gettable(L, 1);
  } else {
    lua_geti(L, 1, i);
  }
}

/* f(e) -> p, wid: e's partition (1..n) and its window's start. Returns
 * nothing where the loop's own code decides (and names the error): e is
 * not a table, its time is not an integer in range, its key not a scalar. */
static int l_wpart_of(lua_State *L) {
  const wpart *c = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_type(L, 1) != LUA_TTABLE) return 0;
  wpart_get(L, c->tfield, c->tidx, 2);
  if (!lua_isinteger(L, -1)) return 0;
  lua_Integer t = lua_tointegerx(L, -1, NULL);
  if (t < SL_WIN_TIME_MIN || t > SL_WIN_TIME_MAX) return 0;
  lua_Integer q = t / c->size;
  if (t % c->size != 0 && t < 0) q--;   /* floor division, as Lua's // (size > 0) */
  lua_Integer p = 1;
  if (c->n > 1) {
    if (c->same) lua_pushvalue(L, -1);
    else wpart_get(L, c->kfield, c->kidx, 3);
    p = (lua_Integer)sl_key_partition(L, -1, c->n);
    if (!p) return 0;
  }
  lua_pushinteger(L, p);
  lua_pushinteger(L, q * c->size);
  return 2;
}

/* Reads a spec {index = i} (into *i) or {field = name} (the name pushed,
 * *field set) as part_reader_of does; with none (the key only), pushes
 * nil. */
static void wpart_spec(lua_State *L, int idx, lua_Integer *i, int *field) {
  part_reader r = part_reader_of(L, idx);
  int none = r.kind == PART_NONE && lua_isnil(L, idx) && idx == 3;
  luaL_argcheck(L, r.kind == PART_INDEX || r.kind == PART_FIELD || none, idx, "must be {index = i} or {field = name}");
  *i = r.index;
  *field = r.kind == PART_FIELD;
  if (!*field) lua_pushnil(L);
}

/* sluice._window_part(by, size_ms, key, n) -> f (l_wpart_of): by and key
 * are {index = i} or {field = name}; key is nil when n is 1. */
static int l_window_part(lua_State *L) {
  lua_Integer size = luaL_checkinteger(L, 2), n = luaL_checkinteger(L, 4);
  luaL_argcheck(L, size > 0, 2, "must be > 0");
  luaL_argcheck(L, n >= 1 && n <= INT32_MAX, 4, "must be a partition count >= 1");
  luaL_argcheck(L, n == 1 || !lua_isnil(L, 3), 3, "a key is needed for more than one partition");
  lua_settop(L, 4);
  wpart *c = lua_newuserdatauv(L, sizeof *c, 0);   /* 5 */
  c->size = size;
  c->n = (uint32_t)n;
  wpart_spec(L, 1, &c->tidx, &c->tfield);          /* 6: the time's field name, or nil */
  wpart_spec(L, 3, &c->kidx, &c->kfield);          /* 7: the key's */
  c->same = c->tfield == c->kfield && (c->tfield ? lua_rawequal(L, 6, 7) : c->tidx == c->kidx);
  lua_pushcclosure(L, l_wpart_of, 3);
  return 1;
}

int sl_window_open_lua(lua_State *L) {
  static const luaL_Reg methods[] = {{"batch", l_batch}, {"batch_raw", l_batch_raw}, {"skip_events", l_skip_events}, {"batch_range", l_batch_range}, {"producer_done", l_producer_done}, {"timer", l_timer},
                                     {"message", l_message}, {"next_due", l_next_due},
                                     {"late", l_late}, {"frontier", l_frontier}, {NULL, NULL}};
  if (luaL_newmetatable(L, WINDOW_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_range_chunk);
  lua_setfield(L, -2, "_range_chunk");            /* into the sluice table below the function */
  lua_pushcfunction(L, l_window_part);
  lua_setfield(L, -2, "_window_part");
  lua_pushcfunction(L, l_window);
  return 1;
}
