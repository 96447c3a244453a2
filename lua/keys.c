/* keys: how the binding names values across states. Handles (stage,
 * subscription, task, timer, from) compare and print by their kind and id
 * and get their methods here; sluice._hash(k, n) is the engine's partition
 * hash of a key's encoding (what the dispatcher computes in C),
 * sluice._key(v) a value's encoding as a string (uniq on tables),
 * sluice._copy(v) a value as it arrives after crossing a partition,
 * sluice._handle_id(h) the id a handle refers to; tickets
 * (sluice._ticket/_take) are counters every state shares, which a split
 * source hands out its parts with. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <lauxlib.h>
#include "codec.h"
#include "hash.h"
#include "keys.h"

uint32_t sl_key_partition(lua_State *L, int idx, uint32_t n) {
  char small[256];   /* scalar keys (most of them) need no buffer */
  size_t len = sl_encode_scalar(L, idx, small, sizeof small);
  return len ? sl_hash_partition(sl_key_hash(small, len), n) + 1 : 0;
}

/* sluice._hash(value, n) -> 1..n: the engine's hash of the encoded value,
 * the same on every state (partitioning by key). */
static int l_hash(lua_State *L) {
  luaL_checkany(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= INT32_MAX, 2, "must be a partition count >= 1");
  uint32_t p = sl_key_partition(L, 1, (uint32_t)n);
  if (p) {
    lua_pushinteger(L, (lua_Integer)p);
    return 1;
  }
  sl_buf b = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, 1, &b, "key", err, sizeof err) != 0) {
    sl_buf_free(&b);
    return luaL_error(L, "partition key: %s", err);
  }
  uint64_t h = sl_key_hash(b.data, b.len);
  sl_buf_free(&b);
  lua_pushinteger(L, (lua_Integer)sl_hash_partition(h, (uint32_t)n) + 1);
  return 1;
}

/* Tickets: counters that every state shares. A split source hands out its
 * parts with one: each stage takes the next number until the parts run
 * out. One int64 per ticket, kept for the life of the process. */
static pthread_mutex_t tickets_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t *tickets;
static size_t ntickets, captickets;

/* sluice._ticket() -> a new ticket id (its counter starts at 0). */
static int l_ticket(lua_State *L) {
  pthread_mutex_lock(&tickets_mu);
  if (ntickets == captickets) {
    size_t cap = captickets ? captickets * 2 : 64;
    int64_t *t = realloc(tickets, cap * sizeof *t);
    if (!t) {
      pthread_mutex_unlock(&tickets_mu);
      return luaL_error(L, "not enough memory");
    }
    tickets = t;
    captickets = cap;
  }
  tickets[ntickets++] = 0;
  lua_Integer id = (lua_Integer)ntickets;
  pthread_mutex_unlock(&tickets_mu);
  lua_pushinteger(L, id);
  return 1;
}

/* sluice._take(id) -> the ticket's next number: 1, 2, 3, ... */
static int l_take(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  pthread_mutex_lock(&tickets_mu);
  if (id < 1 || (size_t)id > ntickets) {
    pthread_mutex_unlock(&tickets_mu);
    return luaL_argerror(L, 1, "not a ticket");
  }
  lua_Integer v = (lua_Integer)++tickets[id - 1];
  pthread_mutex_unlock(&tickets_mu);
  lua_pushinteger(L, v);
  return 1;
}

/* sluice._key(v) -> the canonical encoding of v as a string (sl_key_canon):
 * equal tables give equal strings, however they were built (uniq and
 * joins on table keys). */
static int l_key(lua_State *L) {
  luaL_checkany(L, 1);
  sl_buf b = SL_BUF_INIT, c = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, 1, &b, "key", err, sizeof err) != 0) {
    sl_buf_free(&b);
    return luaL_error(L, "key: %s", err);
  }
  /* (bytes just encoded parse: -1 is memory, and then the encoding as it is) */
  const sl_buf *k = sl_key_canon(b.data ? b.data : "", b.len, &c) == 1 ? &c : &b;
  lua_pushlstring(L, k->data ? k->data : "", k->len);
  sl_buf_free(&b);
  sl_buf_free(&c);
  return 1;
}

/* sluice._copy(v) -> v sent and received in this state (encoded and
 * decoded), and v's encoding: a new table or function, as an event that
 * crosses a partition arrives (a counting reduce's combining keeps each
 * table event as its own key, as its partition would, and places it by
 * the original's encoding). */
static int l_copy(lua_State *L) {
  luaL_checkany(L, 1);
  sl_buf b = SL_BUF_INIT;
  char err[256];
  int rc = sl_encode(L, 1, &b, "event", err, sizeof err);
  if (rc == 0) rc = sl_decode(L, b.data ? b.data : "", b.len, err, sizeof err);
  if (rc == 0) lua_pushlstring(L, b.data ? b.data : "", b.len);
  sl_buf_free(&b);
  if (rc != 0) {
    lua_pushstring(L, err);   /* no position: the caller names the operation */
    return lua_error(L);
  }
  return 2;
}

/* sluice._hash_encoded(bytes, n) -> 1..n: sluice._hash of the value whose
 * encoding bytes are (as sluice._copy gives it). */
static int l_hash_encoded(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= INT32_MAX, 2, "must be a partition count >= 1");
  lua_pushinteger(L, (lua_Integer)sl_hash_partition(sl_key_hash(p, len), (uint32_t)n) + 1);
  return 1;
}

/* sluice._handle_id(h) -> the id a handle refers to (a subscription's id
 * is shared by its subscription handle and its "from" handles). */
static int l_handle_id(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, 0);
  luaL_argexpected(L, h != NULL, 1, "handle");
  lua_pushinteger(L, (lua_Integer)h->id);
  return 1;
}

static int l_handle_tostring(lua_State *L) {
  sl_handle *h = sl_handle_test(L, 1, 0);
  static const char *names[] = {"?", "stage", "subscription", "task", "timer", "from"};
  lua_pushfstring(L, "<%s %d>", names[h && h->kind < SL_H_NKINDS ? h->kind : 0],
                  h ? (int)h->id : 0);
  return 1;
}

static int l_handle_eq(lua_State *L) {
  sl_handle *a = sl_handle_test(L, 1, 0), *b = sl_handle_test(L, 2, 0);
  lua_pushboolean(L, a && b && a->kind == b->kind && a->id == b->id);
  return 1;
}

/* Fills the metatable of handle kind `kind` with methods. */
void sl_rt_handle_methods(lua_State *L, int kind, const luaL_Reg *methods) {
  sl_handle_push(L, kind, 0, 0);                   /* creates the metatable if needed */
  lua_getmetatable(L, -1);                         /* stack: h mt */
  lua_remove(L, -2);
  lua_getfield(L, -1, "__index");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
  }
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_handle_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, l_handle_eq);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);
}

void sl_keys_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_hash", l_hash}, {"_key", l_key}, {"_copy", l_copy}, {"_hash_encoded", l_hash_encoded}, {"_handle_id", l_handle_id}, {"_ticket", l_ticket}, {"_take", l_take},
    {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
