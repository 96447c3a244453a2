/* redis_ack: acknowledging the entries of a Redis source.
 *
 * A source stage registers itself (sluice._redis.register_source: its
 * stage, URL, stream and group) once it has started. A stage that receives
 * events from a registered source copies their ids before its
 * handle_events runs and, once handle_events has returned, acknowledges
 * them with one XACK (sl_redis_take_ids, sl_redis_ack, called by stage.c).
 * If handle_events failed the ids are forgotten: the entries stay pending
 * in the group, and a source claims them again after its claim_idle_ms.
 *
 * The registry of sources is shared by every thread (a mutex; entries are
 * never removed, and their fields never change after registration). Each
 * Lua state keeps its own connections for acknowledging (one per source)
 * and the ids it took, in a userdata in its registry. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lauxlib.h>
#include "buf.h"
#include "codec.h"
#include "redis.h"

struct sl_redis_source {
  uint64_t ref;   /* the source stage */
  size_t index;   /* in sources[] */
  sl_redis_url u;
  char *url, *stream, *group;
  atomic_ullong acked;
};

static pthread_mutex_t sources_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_redis_source **sources;
static size_t nsources, capsources;
static atomic_size_t published;   /* nsources, read without the lock for the fast "none" */

const sl_redis_source *sl_redis_source_of(uint64_t peer) {
  if (atomic_load_explicit(&published, memory_order_acquire) == 0) return NULL;
  const sl_redis_source *found = NULL;
  pthread_mutex_lock(&sources_mu);
  for (size_t i = 0; i < nsources && !found; i++)
    if (sources[i]->ref == peer) found = sources[i];
  pthread_mutex_unlock(&sources_mu);
  return found;
}

/* sluice._redis.register_source(stage, url, stream, group) */
static int l_register_source(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_STAGE);
  luaL_argexpected(L, h != NULL, 1, "stage");
  const char *url = luaL_checkstring(L, 2), *stream = luaL_checkstring(L, 3), *group = luaL_checkstring(L, 4);
  sl_redis_source *s = calloc(1, sizeof *s);
  if (!s || sl_redis_parse_url(url, &s->u) != 0) {
    free(s);
    return luaL_error(L, "register_source: bad url '%s'", url);
  }
  s->ref = h->id;
  s->url = strdup(url), s->stream = strdup(stream), s->group = strdup(group);
  pthread_mutex_lock(&sources_mu);
  if (nsources == capsources) {
    size_t cap = capsources ? 2 * capsources : 8;
    sl_redis_source **n = realloc(sources, cap * sizeof *n);
    if (n) sources = n, capsources = cap;
  }
  int ok = nsources < capsources && s->url && s->stream && s->group;
  if (ok) {
    s->index = nsources;
    sources[nsources++] = s;
    atomic_store_explicit(&published, nsources, memory_order_release);
  }
  pthread_mutex_unlock(&sources_mu);
  if (!ok) {
    free(s->url), free(s->stream), free(s->group), free(s);
    return luaL_error(L, "not enough memory");
  }
  return 0;
}

/* sluice._redis.acked(stage) -> entries of that source acknowledged so far
 * in this process (0 for a stage that is not a source). */
static int l_acked(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_STAGE);
  luaL_argexpected(L, h != NULL, 1, "stage");
  const sl_redis_source *s = sl_redis_source_of(h->id);
  lua_pushinteger(L, s ? (lua_Integer)atomic_load(&((sl_redis_source *)s)->acked) : 0);
  return 1;
}

/* ---- per state ---------------------------------------------------------------------------- */

typedef struct ackctx {
  redisContext **conns;   /* by source index */
  size_t nconns;
  sl_buf ids;             /* the ids taken, back to back */
  size_t *offs;           /* offs[0..nids] */
  size_t nids, capids;
} ackctx;

static const char ACKCTX_KEY = 0;

static int ackctx_gc(lua_State *L) {
  ackctx *a = lua_touserdata(L, 1);
  for (size_t i = 0; i < a->nconns; i++)
    if (a->conns[i]) redisFree(a->conns[i]);
  free(a->conns);
  free(a->offs);
  sl_buf_free(&a->ids);
  memset(a, 0, sizeof *a);
  return 0;
}

static ackctx *get_ctx(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ACKCTX_KEY) == LUA_TUSERDATA) {
    ackctx *a = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return a;
  }
  lua_pop(L, 1);
  ackctx *a = lua_newuserdatauv(L, sizeof *a, 0);
  memset(a, 0, sizeof *a);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, ackctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ACKCTX_KEY);
  return a;
}

void sl_redis_take_ids(lua_State *L, int idx) {
  ackctx *a = get_ctx(L);
  idx = lua_absindex(L, idx);
  a->nids = 0;
  a->ids.len = 0;
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if ((size_t)n + 1 > a->capids) {
    size_t *o = realloc(a->offs, ((size_t)n + 1) * sizeof *o);
    if (!o) return;   /* the entries stay pending: delivered again later */
    a->offs = o, a->capids = (size_t)n + 1;
  }
  a->offs[0] = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) == LUA_TTABLE) {
      if (lua_getfield(L, -1, "id") == LUA_TSTRING) {
        size_t len;
        const char *id = lua_tolstring(L, -1, &len);
        if (sl_buf_append(&a->ids, id, len) == 0) a->offs[++a->nids] = a->ids.len;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* One XACK for ids [from, to): 1 done, 0 failed (message in err). A lost
 * connection is opened again once; Redis loading its data is waited for
 * (up to 10 s). */
static int xack(ackctx *a, const sl_redis_source *s, size_t from, size_t to, char *err, size_t errlen) {
  size_t argc = 3 + to - from;
  const char **argv = malloc(argc * sizeof *argv);
  size_t *lens = malloc(argc * sizeof *lens);
  if (!argv || !lens) {
    free(argv), free(lens);
    snprintf(err, errlen, "not enough memory");
    return 0;
  }
  argv[0] = "XACK", lens[0] = 4;
  argv[1] = s->stream, lens[1] = strlen(s->stream);
  argv[2] = s->group, lens[2] = strlen(s->group);
  for (size_t i = from; i < to; i++) {
    argv[3 + i - from] = a->ids.data + a->offs[i];
    lens[3 + i - from] = a->offs[i + 1] - a->offs[i];
  }
  int done = 0, reconnects = 0, loading = 0;
  while (!done) {
    redisContext **c = &a->conns[s->index];
    if (!*c && !(*c = sl_redis_open(&s->u, err, errlen))) break;
    redisReply *r = redisCommandArgv(*c, (int)argc, argv, lens);
    if (!r) {
      snprintf(err, errlen, "%s", (*c)->errstr);
      redisFree(*c);
      *c = NULL;
      if (reconnects++ < 1) continue;
      break;
    }
    if (r->type == REDIS_REPLY_ERROR && strcmp(sl_redis_error_kind(r->str), "loading") == 0 && loading++ < 100) {
      freeReplyObject(r);
      sleep_ms(100);
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) snprintf(err, errlen, "%s", r->str);
    else done = 1;
    freeReplyObject(r);
    if (!done) break;
  }
  free(argv), free(lens);
  return done;
}

void sl_redis_ack(lua_State *L, const sl_redis_source *src, int done) {
  ackctx *a = get_ctx(L);
  size_t n = a->nids;
  a->nids = 0;
  if (!done || n == 0) return;
  sl_redis_source *s = (sl_redis_source *)src;
  if (a->nconns <= s->index) {
    redisContext **c = realloc(a->conns, (s->index + 1) * sizeof *c);
    if (!c) {
      fprintf(stderr, "sluice: redis: could not acknowledge %zu entries of %s (not enough memory); "
                      "they stay pending and will be delivered again\n", n, s->stream);
      return;
    }
    for (size_t i = a->nconns; i <= s->index; i++) c[i] = NULL;
    a->conns = c, a->nconns = s->index + 1;
  }
  char err[256];
  for (size_t from = 0; from < n; from += 1000) {
    size_t to = from + 1000 < n ? from + 1000 : n;
    if (xack(a, s, from, to, err, sizeof err)) {
      atomic_fetch_add(&s->acked, to - from);
    } else {
      fprintf(stderr, "sluice: redis: could not acknowledge %zu entries of %s at %s (%s); "
                      "they stay pending and will be delivered again\n", to - from, s->stream, s->url, err);
    }
  }
}

void sl_redis_ack_open(lua_State *L) {
  lua_pushcfunction(L, l_register_source);
  lua_setfield(L, -2, "register_source");
  lua_pushcfunction(L, l_acked);
  lua_setfield(L, -2, "acked");
}
