/* progress: counters that every state shares, and a wall clock, for the
 * progress line and for counts that stages report to the main thread
 * (lines a jsonl source skipped). A stage adds to a counter once per chunk
 * it reads; the main thread reads it when it draws the line: no message
 * per event. One atomic int64 per counter, kept for the life of the
 * process (8 bytes per flow run that asks for one). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include "sched.h"
#include "codec.h"
#include "stage_int.h"

#define CHUNK 256

/* Counters live in chunks that never move, so a reader needs no lock. */
static _Atomic int64_t *chunks[4096];
static atomic_size_t ncounters;   /* read without the lock (counter_at) */
static pthread_mutex_t counters_mu = PTHREAD_MUTEX_INITIALIZER;
/* Counters handed back (sluice._counter_free), taken again first. */
static size_t *free_ids;
static size_t nfree, free_cap;

static _Atomic int64_t *counter_at(lua_State *L, lua_Integer id) {
  if (id < 1 || (size_t)id > atomic_load(&ncounters)) luaL_argerror(L, 1, "not a counter");
  size_t i = (size_t)id - 1;
  return &chunks[i / CHUNK][i % CHUNK];
}

/* sluice._counter() -> a new counter id (its value starts at 0). */
static int l_counter(lua_State *L) {
  pthread_mutex_lock(&counters_mu);
  if (nfree > 0) {
    size_t id = free_ids[--nfree];
    atomic_store(&chunks[(id - 1) / CHUNK][(id - 1) % CHUNK], 0);
    pthread_mutex_unlock(&counters_mu);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
  }
  size_t i = atomic_load(&ncounters);
  if (i / CHUNK >= sizeof chunks / sizeof chunks[0]) {
    pthread_mutex_unlock(&counters_mu);
    return luaL_error(L, "too many counters");
  }
  if (i % CHUNK == 0 && !chunks[i / CHUNK]) {
    chunks[i / CHUNK] = calloc(CHUNK, sizeof(_Atomic int64_t));
    if (!chunks[i / CHUNK]) {
      pthread_mutex_unlock(&counters_mu);
      return luaL_error(L, "not enough memory");
    }
  }
  atomic_store(&chunks[i / CHUNK][i % CHUNK], 0);
  atomic_store(&ncounters, i + 1);
  pthread_mutex_unlock(&counters_mu);
  lua_pushinteger(L, (lua_Integer)(i + 1));
  return 1;
}

/* sluice._counter_free(id): the counter may be handed out again (its
 * users are done with it). */
static int l_counter_free(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  counter_at(L, id);
  pthread_mutex_lock(&counters_mu);
  if (nfree == free_cap) {
    size_t cap = free_cap ? free_cap * 2 : 64;
    size_t *n = realloc(free_ids, cap * sizeof *n);
    if (!n) {
      pthread_mutex_unlock(&counters_mu);
      return 0;   /* kept: it is only not reused */
    }
    free_ids = n;
    free_cap = cap;
  }
  free_ids[nfree++] = (size_t)id;
  pthread_mutex_unlock(&counters_mu);
  return 0;
}

/* sluice._count(id [, n]) -> the counter's value after adding n (default 0). */
static int l_count(lua_State *L) {
  _Atomic int64_t *c = counter_at(L, luaL_checkinteger(L, 1));
  lua_Integer n = luaL_optinteger(L, 2, 0);
  lua_pushinteger(L, (lua_Integer)(atomic_fetch_add(c, (int64_t)n) + n));
  return 1;
}

/* sluice._now_ms() -> a monotonic clock in milliseconds. */
static int l_now_ms(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sl_now_ms());
  return 1;
}

/* sluice._isatty(fd) -> whether file descriptor fd is a terminal. */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* sluice._live() -> the handles of the live stages (in no set order). */
static int l_live(lua_State *L) {
  size_t n;
  uint64_t *refs = st_reg_live(&n);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    st_push_stage(L, refs[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(refs);
  return 1;
}

/* sluice._is_main() -> whether this is the main thread's state. */
static int l_is_main(lua_State *L) {
  lua_pushboolean(L, st_is_main_thread(L));
  return 1;
}

void st_push_consumers(stage *s) {
  static const char *const kinds[] = {"demand", "broadcast", "partition"};
  lua_State *L = s->L;
  int kind = sl_stage_dispatch_kind(s->st);
  if (kind >= 0 && kind <= 2) {
    lua_pushstring(L, kinds[kind]);
    lua_setfield(L, -2, "dispatcher");
  }
  lua_newtable(L);
  uint64_t sub_id, peer;
  int32_t part;
  for (size_t i = 0; sl_stage_consumer_at(s->st, i, &sub_id, &peer, &part) == 0; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)peer);
    lua_setfield(L, -2, "consumer");
    lua_pushinteger(L, (lua_Integer)sub_id);
    lua_setfield(L, -2, "subscription");
    if (part >= 0) {
      lua_pushinteger(L, (lua_Integer)part + 1);
      lua_setfield(L, -2, "partition");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "consumers_of");
}

/* sluice._consumers(stage) -> its stats table plus `dispatcher` and
 * `consumers_of` ({consumer = stage id, subscription = id, partition = i
 * or nil}, in the order they subscribed); main thread, as stage:stats(). */
static int l_consumers(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, SL_H_STAGE);
  luaL_argexpected(L, h != NULL, 1, "stage");
  stage *s = st_self_stage(L, h->id);
  if (s) {
    st_push_stats(s);
    st_push_consumers(s);
    return 1;
  }
  return st_call_stage(L, h->id, OP_STATS | (1 << 8), 0, 5000, "sluice.graph");
}

/* The terminal settings sluice._term(true) replaced (sluice.top). */
static struct termios saved_term;
static int term_saved;

/* sluice._term(on) -> true when done: on = true turns off line buffering
 * and echo on stdin (keys arrive one by one, Ctrl-C still interrupts);
 * false when stdin is not a terminal. on = false restores the settings. */
static int l_term(lua_State *L) {
  if (!lua_toboolean(L, 1)) {
    if (term_saved) tcsetattr(0, TCSANOW, &saved_term);
    term_saved = 0;
    lua_pushboolean(L, 1);
    return 1;
  }
  struct termios t;
  if (!isatty(0) || tcgetattr(0, &t) != 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  saved_term = t;
  term_saved = 1;
  t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
  t.c_cc[VMIN] = 0;
  t.c_cc[VTIME] = 0;
  lua_pushboolean(L, tcsetattr(0, TCSANOW, &t) == 0);
  return 1;
}

/* sluice._keypress() -> true when a key was pressed (it is read and dropped)
 * or stdin has ended; never waits. */
static int l_keypress(lua_State *L) {
  struct pollfd p = {.fd = 0, .events = POLLIN};
  int got = 0;
  if (poll(&p, 1, 0) > 0) {
    char c;
    got = 1;
    if (p.revents & POLLIN) {
      ssize_t n = read(0, &c, 1);
      got = n != -1 || (errno != EAGAIN && errno != EINTR);
    }
  }
  lua_pushboolean(L, got);
  return 1;
}

/* Adds the functions above to the table on top of the stack. */
void sl_progress_open(lua_State *L);
void sl_progress_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"_counter", l_counter}, {"_count", l_count}, {"_now_ms", l_now_ms},
                                   {"_counter_free", l_counter_free},
                                   {"_isatty", l_isatty}, {"_live", l_live}, {"_is_main", l_is_main},
                                   {"_consumers", l_consumers}, {"_term", l_term}, {"_keypress", l_keypress},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
