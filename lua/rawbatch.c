/* rawbatch: a stage's events handed to its handle_events still encoded.
 *
 * A combining layer's merging stage receives partial accumulators, the
 * events {p, part}, one per partition from each stage of the layer
 * before; decoding each part into a table only to add it into the
 * stage's accumulator builds a second copy of the partition's keys at
 * once (several MB in a word count). A stage that calls
 * sluice._raw_events() in its init gets, instead of an array of events,
 * a raw batch: #rb is the event count, sluice._raw_get(rb, i) decodes
 * event i, and sluice._merge_raw(rb, i, acc, fun, nilfn) adds the pairs
 * of event i's part into acc straight from the bytes. The raw batch is
 * one userdata per stage, kept in the registry; it holds the batch only
 * while the callback runs. Events of a Redis source are always decoded
 * (their ids are taken for the acknowledgement). A window on a partition
 * takes raw batches too (w:batch_raw in window.c): it reads the times
 * from the bytes. */
#include <stdio.h>
#include <lauxlib.h>
#include "codec.h"
#include "rawbatch.h"
#include "stage_int.h"

#define RAWBATCH_MT "sluice.rawbatch"

typedef struct rawbatch {
  const sl_batch *b;   /* NULL outside the callback */
} rawbatch;

static const sl_batch *check_rb(lua_State *L, int idx) {
  rawbatch *rb = luaL_checkudata(L, idx, RAWBATCH_MT);
  if (!rb->b) luaL_error(L, "a raw batch is valid only inside the callback it was given to");
  return rb->b;
}

/* Event i (1-based) of the raw batch at idx: its bytes. */
static const char *event_of(lua_State *L, int idx, lua_Integer i, size_t *len) {
  const sl_batch *b = check_rb(L, idx);
  luaL_argcheck(L, i >= 1 && i <= (lua_Integer)b->count, 2, "event index out of range");
  return sl_batch_event(b, (uint32_t)(i - 1), len);
}

static int l_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_rb(L, 1)->count);
  return 1;
}

/* sluice._raw_get(rb, i) -> event i, decoded */
static int l_raw_get(lua_State *L) {
  size_t len;
  const char *p = event_of(L, 1, luaL_checkinteger(L, 2), &len);
  char err[256];
  if (sl_decode(L, p, len, err, sizeof err) != 0) return luaL_error(L, "handle_events: %s", err);
  return 1;
}

/* sluice._merge_raw(rb, i, acc, fun, nilfn) -> true, or false (nothing
 * done) when event i is not {p, part} with a part of scalar pairs, or acc
 * is not a table. For each pair (k, v) of the part: without fun, acc[k] =
 * (acc[k] or 0) + v (a count); with fun, acc[k] = v where acc[k] is nil,
 * else fun(acc[k], v), and nilfn() (which raises) when that is nil. acc
 * is read and written raw: it is the combiner's own table. */
static int l_merge_raw(lua_State *L) {
  size_t len;
  const char *p = event_of(L, 1, luaL_checkinteger(L, 2), &len), *pairs;
  int has_fun = !lua_isnoneornil(L, 4);
  if (has_fun) luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 5);
  int64_t n = lua_type(L, 3) == LUA_TTABLE ? sl_encoded_partial(p, len, &pairs) : -1;
  if (n < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  luaL_checkstack(L, 8, "merging a partial");
  for (int64_t k = 0; k < n; k++) {
    pairs = sl_push_scalar(L, pairs);               /* stack: ... k */
    lua_pushvalue(L, -1);
    int ta = lua_rawget(L, 3);                      /* stack: ... k a */
    pairs = sl_push_scalar(L, pairs);               /* stack: ... k a v */
    if (!has_fun) {
      if (ta == LUA_TNIL) {
        lua_pushinteger(L, 0);
        lua_replace(L, -3);
      }
      lua_arith(L, LUA_OPADD);                      /* stack: ... k a+v */
    } else if (ta == LUA_TNIL) {
      lua_remove(L, -2);                            /* stack: ... k v */
    } else {
      lua_pushvalue(L, 4);
      lua_insert(L, -3);                            /* stack: ... k fun a v */
      lua_call(L, 2, 1);                            /* stack: ... k r */
      if (lua_isnil(L, -1)) {
        lua_pushvalue(L, 5);
        lua_call(L, 0, 0);
      }
    }
    lua_rawset(L, 3);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* sluice._raw_events(): the running stage's handle_events gets its events
 * as a raw batch from now on (call it in init). */
static int l_raw_events(lua_State *L) {
  stage *s = st_current_stage(L);
  if (!s) return luaL_error(L, "sluice._raw_events: not inside a stage callback");
  if (s->raw_ref == LUA_NOREF) {
    rawbatch *rb = lua_newuserdatauv(L, sizeof *rb, 0);
    rb->b = NULL;
    luaL_setmetatable(L, RAWBATCH_MT);
    s->raw_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

const sl_batch *sl_rawbatch_check(lua_State *L, int idx) { return check_rb(L, idx); }

void sl_rawbatch_push(lua_State *L, int rref, const sl_batch *b) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rref);
  ((rawbatch *)lua_touserdata(L, -1))->b = b;
}

void sl_rawbatch_end(lua_State *L, int rref) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rref);
  ((rawbatch *)lua_touserdata(L, -1))->b = NULL;
  lua_pop(L, 1);
}

void sl_rawbatch_open(lua_State *L) {
  if (luaL_newmetatable(L, RAWBATCH_MT)) {
    lua_pushcfunction(L, l_len);
    lua_setfield(L, -2, "__len");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"_raw_events", l_raw_events}, {"_raw_get", l_raw_get}, {"_merge_raw", l_merge_raw}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
