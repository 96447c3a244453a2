/* redis: Redis Streams over hiredis, for sluice.redis (lua/sluice/redis.lua).
 *
 * sluice._redis.connect(url, fname) opens a connection (a userdata with
 * __gc) in the calling Lua state; a connection belongs to the state, and so
 * to one thread. Its methods run one command, or one pipelined batch of
 * XADDs, and return the reply as Lua values; a failure returns
 * nil, message, kind, where kind is "io" (the connection failed; the next
 * call connects again), "loading" (Redis is loading its data: try again),
 * "nogroup", "busygroup", "wrongtype" or "reply" (another error reply).
 *
 * Field values (write_fields, push_field): a string that does not start
 * with VALUE_PREFIX goes to Redis and comes back as it is; any other value
 * (numbers, booleans, tables, strings that start with the prefix) is
 * written as the prefix followed by the codec's encoding (§2 of the
 * reference) and read back decoded. The prefix holds a format version.
 *
 * Acknowledgement (redis_ack.c) uses the same URLs and connections. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include "argcheck.h"
#include "codec.h"
#include "outbox.h"
#include "redis.h"

#define CONN_MT "sluice.redis.conn"
#define PIPELINE 1000   /* XADDs appended before their replies are read */

/* ---- URLs and contexts ------------------------------------------------------------------- */

/* redis://[host][:port][/db] or unix:///path (also unix:/path). */
int sl_redis_parse_url(const char *s, sl_redis_url *u) {
  memset(u, 0, sizeof *u);
  u->port = 6379;
  const char *p = NULL;
  if (strncmp(s, "unix://", 7) == 0) p = s + 7;
  else if (strncmp(s, "unix:", 5) == 0) p = s + 5;
  if (p) {
    if (p[0] != '/' || strlen(p) >= sizeof u->path) return -1;
    strcpy(u->path, p);
    return 0;
  }
  if (strncmp(s, "redis://", 8) != 0) return -1;
  p = s + 8;
  size_t h = strcspn(p, ":/");
  if (h >= sizeof u->host) return -1;
  memcpy(u->host, p, h);
  u->host[h] = 0;
  if (h == 0) strcpy(u->host, "127.0.0.1");
  p += h;
  if (*p == ':') {
    char *end;
    errno = 0;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || errno || port < 1 || port > 65535) return -1;
    u->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    errno = 0;
    long db = strtol(p + 1, &end, 10);
    if (end == p + 1 || errno || db < 0 || db > 1 << 20 || *end) return -1;
    u->db = (int)db;
    p = end;
  } else if (*p == '/') {
    p++;
  }
  return *p ? -1 : 0;
}

/* hiredis writes to sockets without MSG_NOSIGNAL: a Redis that went away
 * would kill the process with SIGPIPE. Ignored once, unless the program
 * set a handler of its own. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

redisContext *sl_redis_open(const sl_redis_url *u, char *err, size_t errlen) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, ignore_sigpipe);
  struct timeval connect_to = {2, 0}, io_to = {30, 0};
  redisContext *c = u->path[0] ? redisConnectUnixWithTimeout(u->path, connect_to)
                               : redisConnectWithTimeout(u->host, u->port, connect_to);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (c->err) {
    snprintf(err, errlen, "%s", c->errstr);
    redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, io_to);
  if (u->db) {
    redisReply *r = redisCommand(c, "SELECT %d", u->db);
    int bad = !r || r->type == REDIS_REPLY_ERROR;
    snprintf(err, errlen, "%s", !r ? c->errstr : bad ? r->str : "");
    if (r) freeReplyObject(r);
    if (bad) {
      redisFree(c);
      return NULL;
    }
  }
  return c;
}

const char *sl_redis_error_kind(const char *msg) {
  static const struct { const char *prefix, *kind; } kinds[] = {
    {"LOADING", "loading"}, {"NOGROUP", "nogroup"}, {"BUSYGROUP", "busygroup"}, {"WRONGTYPE", "wrongtype"}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strncmp(msg, kinds[i].prefix, strlen(kinds[i].prefix)) == 0) return kinds[i].kind;
  return "reply";
}

/* ---- connections ------------------------------------------------------------------------- */

typedef struct conn {
  redisContext *c;   /* NULL after an I/O error, until the next call */
  sl_redis_url u;
  char *url;
  int pub;           /* from sluice.redis.connect: an event conn:add cannot write is conn:add's error */
} conn;

/* The connection that is self of the method fn (open: not closed); else
 * raises an error that names fn. */
static conn *self_conn(lua_State *L, const char *fn, int open) {
  conn *k = luaL_testudata(L, 1, CONN_MT);
  if (!k) luaL_error(L, "%s: expected a Redis connection as self (call it with ':'), got %s", fn, sl_arg_got(L, 1));
  if (open && !k->url) luaL_error(L, "%s: the connection is closed", fn);
  return k;
}

/* Pushes nil, message, kind; returns 3. */
static int fail3(lua_State *L, const char *msg, const char *kind) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, kind);
  return 3;
}

/* Makes sure k has a context: 0, or -1 with the failure pushed (3 values). */
static int ensure(lua_State *L, conn *k) {
  if (k->c) return 0;
  char err[256];
  k->c = sl_redis_open(&k->u, err, sizeof err);
  if (k->c) return 0;
  lua_pushnil(L);
  lua_pushfstring(L, "cannot connect to %s: %s", k->url, err);
  lua_pushliteral(L, "io");
  return -1;
}

/* An I/O failure: pushes nil, message, "io" and drops the context. */
static int io_failure(lua_State *L, conn *k) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", k->url, k->c->errstr[0] ? k->c->errstr : "connection lost");
  lua_pushliteral(L, "io");
  redisFree(k->c);
  k->c = NULL;
  return 3;
}

/* sluice._redis.connect(url, fname [, public]) -> connection; raises
 * "<fname>: cannot connect to <url>: <why>" (no location). public: the
 * user's connection (sluice.redis.connect), whose conn:add names itself
 * in the errors of the events it cannot write; a sink's own connection
 * leaves that to the sink. */
static int l_connect(lua_State *L) {
  const char *fname = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "sluice.redis.connect";
  if (lua_type(L, 1) != LUA_TSTRING) sl_arg_fail(L, 1, fname, "url must be a string");
  const char *url = lua_tostring(L, 1);
  int pub = lua_toboolean(L, 3);
  sl_redis_url u;
  if (sl_redis_parse_url(url, &u) != 0) {
    lua_pushfstring(L, "%s: url must be redis://host:port[/db] or unix:///path, got '%s'", fname, url);
    return lua_error(L);
  }
  char err[256];
  redisContext *c = sl_redis_open(&u, err, sizeof err);
  if (!c) {
    lua_pushfstring(L, "%s: cannot connect to %s: %s", fname, url, err);
    return lua_error(L);
  }
  conn *k = lua_newuserdatauv(L, sizeof *k, 0);
  k->c = c;
  k->u = u;
  k->url = strdup(url);
  k->pub = pub;
  luaL_setmetatable(L, CONN_MT);
  if (!k->url) return luaL_error(L, "not enough memory");
  return 1;
}

/* conn:close(): closing a closed connection does nothing. */
static int l_close(lua_State *L) {
  conn *k = self_conn(L, "conn:close", 0);
  if (k->c) redisFree(k->c);
  k->c = NULL;
  free(k->url);
  k->url = NULL;
  return 0;
}

/* ---- replies ----------------------------------------------------------------------------- */

/* Pushes a reply: strings and statuses as strings, integers, arrays as
 * tables (a nil element as false), nil as nil. */
static void push_reply(lua_State *L, const redisReply *r, int in_array) {
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
  case REDIS_REPLY_ERROR: lua_pushlstring(L, r->str, r->len); break;
  case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
  case REDIS_REPLY_ARRAY:
    luaL_checkstack(L, 4, "reply nested too deep");
    lua_createtable(L, (int)r->elements, 0);
    for (size_t i = 0; i < r->elements; i++) {
      push_reply(L, r->element[i], 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  default:
    if (in_array) lua_pushboolean(L, 0);
    else lua_pushnil(L);
  }
}

/* Pushes a field value as it is, or decoded when it carries the prefix;
 * a value that does not decode stays the string it is, with a line on
 * stderr. */
static void push_field(lua_State *L, const char *p, size_t len, const char *id) {
  size_t n = sizeof VALUE_PREFIX - 1;
  if (len < n || memcmp(p, VALUE_PREFIX, n) != 0) {
    lua_pushlstring(L, p, len);
    return;
  }
  char err[200];
  if (sl_decode(L, p + n, len - n, err, sizeof err) == 0) return;
  fprintf(stderr, "sluice: redis entry %s: a field value does not decode (%s); it is kept as a string\n", id, err);
  lua_pushlstring(L, p, len);
}

/* Pushes {id = ..., fields = {...}} for an entry reply [id, [k, v, ...]],
 * or nothing (returning 0) for an entry trimmed from the stream while it
 * was pending ([id, nil]). */
static int push_entry(lua_State *L, const redisReply *e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING) return 0;
  const redisReply *id = e->element[0], *f = e->element[1];
  if (f->type != REDIS_REPLY_ARRAY) return 0;
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, id->str, id->len);
  lua_setfield(L, -2, "id");
  lua_createtable(L, 0, (int)(f->elements / 2));
  for (size_t i = 0; i + 1 < f->elements; i += 2) {
    const redisReply *k = f->element[i], *v = f->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    lua_pushlstring(L, k->str, k->len);
    push_field(L, v->str, v->len, id->str);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "fields");
  return 1;
}

/* Pushes the array of entries of an entry list reply, and the array of
 * ids whose entries are gone (trimmed while pending). */
static void push_entries(lua_State *L, const redisReply *list) {
  lua_createtable(L, list && list->type == REDIS_REPLY_ARRAY ? (int)list->elements : 0, 0);
  lua_createtable(L, 0, 0);
  if (!list || list->type != REDIS_REPLY_ARRAY) return;
  lua_Integer n = 0, gone = 0;
  for (size_t i = 0; i < list->elements; i++) {
    const redisReply *e = list->element[i];
    if (push_entry(L, e)) {
      lua_rawseti(L, -3, ++n);
    } else if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 && e->element[0]->type == REDIS_REPLY_STRING) {
      lua_pushlstring(L, e->element[0]->str, e->element[0]->len);
      lua_rawseti(L, -2, ++gone);
    }
  }
}

/* Runs one command: the reply (the caller frees it), or NULL with the
 * failure pushed (3 values). An error reply is a failure too. */
static redisReply *command(lua_State *L, conn *k, int argc, const char **argv, const size_t *lens) {
  if (ensure(L, k) != 0) return NULL;
  redisReply *r = redisCommandArgv(k->c, argc, argv, lens);
  if (!r) {
    io_failure(L, k);
    return NULL;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    fail3(L, r->str, sl_redis_error_kind(r->str));
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

/* conn:call(arg, ...) -> the reply; arguments are strings or numbers
 * (not NaN, which has no spelling Redis reads). */
static int l_call(lua_State *L) {
  const char *fn = "conn:call";
  conn *k = self_conn(L, fn, 1);
  int argc = lua_gettop(L) - 1;
  if (argc < 1) return sl_arg_fail(L, 2, fn, "expected a command");
  if (argc > 64) return luaL_error(L, "%s: takes at most 64 arguments (the command and its own), got %d", fn, argc);
  const char *argv[64];
  size_t lens[64];
  for (int i = 0; i < argc; i++) {
    int t = lua_type(L, i + 2);
    if ((t != LUA_TSTRING && t != LUA_TNUMBER) || (t == LUA_TNUMBER && isnan(lua_tonumber(L, i + 2)))) {
      lua_pushfstring(L, "argument %d must be a string or a number other than NaN", i + 1);
      return sl_arg_fail(L, i + 2, fn, lua_tostring(L, -1));
    }
    argv[i] = lua_tolstring(L, i + 2, &lens[i]);
  }
  redisReply *r = command(L, k, argc, argv, lens);
  if (!r) return 3;
  push_reply(L, r, 0);
  freeReplyObject(r);
  return 1;
}

/* conn:_read(stream, group, consumer, count, id) -> entries, gone_ids:
 * XREADGROUP ... COUNT count STREAMS stream id (no BLOCK). */
static int l_read(lua_State *L) {
  conn *k = self_conn(L, "conn:_read", 1);
  const char *argv[9];
  size_t lens[9];
  argv[0] = "XREADGROUP", argv[1] = "GROUP", argv[4] = "COUNT", argv[6] = "STREAMS";
  argv[2] = luaL_checklstring(L, 3, &lens[2]);   /* group */
  argv[3] = luaL_checklstring(L, 4, &lens[3]);   /* consumer */
  argv[5] = luaL_checklstring(L, 5, &lens[5]);   /* count */
  argv[7] = luaL_checklstring(L, 2, &lens[7]);   /* stream */
  argv[8] = luaL_checklstring(L, 6, &lens[8]);   /* id */
  for (int i = 0; i < 9; i++)
    if (i == 0 || i == 1 || i == 4 || i == 6) lens[i] = strlen(argv[i]);
  redisReply *r = command(L, k, 9, argv, lens);
  if (!r) return 3;
  const redisReply *list = NULL;
  if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
    const redisReply *s = r->element[0];
    if (s->type == REDIS_REPLY_ARRAY && s->elements >= 2) list = s->element[1];
  }
  push_entries(L, list);
  freeReplyObject(r);
  return 2;
}

/* conn:_autoclaim(stream, group, consumer, min_idle_ms, cursor, count)
 * -> entries, next cursor, gone_ids. */
static int l_autoclaim(lua_State *L) {
  conn *k = self_conn(L, "conn:_autoclaim", 1);
  const char *argv[8] = {"XAUTOCLAIM"};
  size_t lens[8] = {10};
  for (int i = 1; i <= 5; i++) argv[i] = luaL_checklstring(L, i + 1, &lens[i]);
  argv[6] = "COUNT", lens[6] = 5;
  argv[7] = luaL_checklstring(L, 7, &lens[7]);
  redisReply *r = command(L, k, 8, argv, lens);
  if (!r) return 3;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING) {
    freeReplyObject(r);
    return fail3(L, "XAUTOCLAIM: unexpected reply", "reply");
  }
  push_entries(L, r->element[1]);   /* stack: entries gone */
  lua_pushlstring(L, r->element[0]->str, r->element[0]->len);
  lua_insert(L, -2);                /* stack: entries cursor gone */
  if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->element[2]->elements; i++) {
      const redisReply *g = r->element[2]->element[i];
      if (g->type != REDIS_REPLY_STRING) continue;
      lua_pushlstring(L, g->str, g->len);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
  }
  freeReplyObject(r);
  return 3;
}

/* conn:_ack(stream, group, ids) -> the number acknowledged. */
static int l_ack(lua_State *L) {
  conn *k = self_conn(L, "conn:_ack", 1);
  size_t slen, glen;
  const char *stream = luaL_checklstring(L, 2, &slen), *group = luaL_checklstring(L, 3, &glen);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 4), done = 0;
  for (lua_Integer from = 1; from <= n; from += PIPELINE) {
    lua_Integer m = n - from + 1 < PIPELINE ? n - from + 1 : PIPELINE;
    const char **argv = malloc(sizeof *argv * (size_t)(m + 3));
    size_t *lens = malloc(sizeof *lens * (size_t)(m + 3));
    if (!argv || !lens) {
      free(argv), free(lens);
      return luaL_error(L, "not enough memory");
    }
    argv[0] = "XACK", lens[0] = 4, argv[1] = stream, lens[1] = slen, argv[2] = group, lens[2] = glen;
    for (lua_Integer i = 0; i < m; i++) {
      lua_rawgeti(L, 4, from + i);
      argv[3 + i] = lua_tolstring(L, -1, &lens[3 + i]);
      lua_pop(L, 1);   /* the string stays alive in the table */
      if (!argv[3 + i]) argv[3 + i] = "0-0", lens[3 + i] = 3;
    }
    redisReply *r = command(L, k, (int)m + 3, argv, lens);
    free(argv), free(lens);
    if (!r) return 3;
    done += r->type == REDIS_REPLY_INTEGER ? (lua_Integer)r->integer : 0;
    freeReplyObject(r);
  }
  lua_pushinteger(L, done);
  return 1;
}

/* ---- writing entries --------------------------------------------------------------------- */

/* Appends the bytes of one field value to b: the string itself, or the
 * prefix and the encoding. root names the value in errors. */
static int put_value(lua_State *L, int idx, sl_buf *b, const char *root, char *err, size_t errlen) {
  size_t n = sizeof VALUE_PREFIX - 1, len;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tolstring(L, idx, &len);
    if (len < n || memcmp(s, VALUE_PREFIX, n) != 0) return sl_buf_append(b, s, len) ? -1 : 0;
  }
  if (sl_buf_append(b, VALUE_PREFIX, n)) return -1;
  return sl_encode(L, idx, b, root, err, errlen) < 0 ? -1 : 0;
}

/* Appends one XADD for the event at ev to the pipeline. An event with a
 * `fields` table writes those fields; any other event writes one field v.
 * Returns 0, or -1 with a message in err. */
static int append_xadd(lua_State *L, conn *k, int ev, lua_Integer i, const char *stream, size_t slen,
                       const char *maxlen, int whole, sl_buf *b, char *err, size_t errlen) {
  enum { MAXF = 256 };
  const char *argv[5 + 2 * MAXF];
  size_t lens[5 + 2 * MAXF], offs[2 * MAXF];
  int argc = 0, nf = 0;
  char root[64];
  argv[argc] = "XADD", lens[argc++] = 4;
  argv[argc] = stream, lens[argc++] = slen;
  if (maxlen) {
    argv[argc] = "MAXLEN", lens[argc++] = 6;
    argv[argc] = "~", lens[argc++] = 1;
    argv[argc] = maxlen, lens[argc++] = strlen(maxlen);
  }
  argv[argc] = "*", lens[argc++] = 1;
  b->len = 0;
  int has_fields = !whole && lua_type(L, ev) == LUA_TTABLE && lua_getfield(L, ev, "fields") == LUA_TTABLE;
  if (!whole && lua_type(L, ev) == LUA_TTABLE) lua_pop(L, 1);
  if (has_fields) {
    lua_getfield(L, ev, "fields");
    int ft = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ft)) {   /* stack: fields key value */
      if (lua_type(L, -2) != LUA_TSTRING) {
        snprintf(err, errlen, "events[%lld].fields has a key that is not a string (%s)", (long long)i,
                 luaL_typename(L, -2));
        lua_settop(L, ft - 1);
        return -1;
      }
      if (nf == 2 * MAXF) {
        snprintf(err, errlen, "events[%lld].fields has more than %d fields", (long long)i, MAXF);
        lua_settop(L, ft - 1);
        return -1;
      }
      size_t kl;
      const char *key = lua_tolstring(L, -2, &kl);
      offs[nf++] = b->len;
      if (sl_buf_append(b, key, kl)) goto nomem;
      offs[nf++] = b->len;
      snprintf(root, sizeof root, "events[%lld].fields.%.20s", (long long)i, key);
      if (put_value(L, -1, b, root, err, errlen) != 0) {
        lua_settop(L, ft - 1);
        return -1;
      }
      lua_pop(L, 1);
    }
    lua_settop(L, ft - 1);
    if (nf == 0) {
      snprintf(err, errlen, "events[%lld].fields is empty (an entry needs a field)", (long long)i);
      return -1;
    }
  } else {
    offs[nf++] = b->len;
    if (sl_buf_append(b, "v", 1)) goto nomem;
    offs[nf++] = b->len;
    snprintf(root, sizeof root, "events[%lld]", (long long)i);
    if (put_value(L, ev, b, root, err, errlen) != 0) return -1;
  }
  for (int f = 0; f < nf; f++) {
    argv[argc] = b->data + offs[f];
    lens[argc++] = (f + 1 < nf ? offs[f + 1] : b->len) - offs[f];
  }
  if (redisAppendCommandArgv(k->c, argc, argv, lens) != REDIS_OK) goto nomem;
  return 0;
nomem:
  snprintf(err, errlen, "not enough memory");
  return -1;
}

/* Reads the replies of n appended commands: 0, or -1 with the first
 * failure pushed (3 values). Every reply is read, so the connection stays
 * in step. */
static int read_replies(lua_State *L, conn *k, lua_Integer n) {
  int failed = 0;
  for (lua_Integer i = 0; i < n; i++) {
    redisReply *r = NULL;
    if (redisGetReply(k->c, (void **)&r) != REDIS_OK) {
      if (!failed) io_failure(L, k);
      return -1;
    }
    if (r->type == REDIS_REPLY_ERROR && !failed) {
      fail3(L, r->str, sl_redis_error_kind(r->str));
      failed = 1;
    }
    freeReplyObject(r);
  }
  return failed ? -1 : 0;
}

/* conn:add(stream, events [, maxlen [, whole]]) -> the number of entries
 * written: one XADD per event (array or a flow's outbox), pipelined. With
 * whole, every event is written as one field v (a flow's partition across
 * processes). A bad event raises before anything of its pipeline batch is
 * sent; on the user's connection the error names conn:add. */
static int l_add(lua_State *L) {
  const char *fn = "conn:add";
  conn *k = self_conn(L, fn, 1);
  const char *who = k->pub ? "conn:add: " : "";
  if (lua_type(L, 2) != LUA_TSTRING) sl_arg_fail(L, 2, fn, "stream must be a string");
  size_t slen;
  const char *stream = lua_tolstring(L, 2, &slen);
  char err[256], maxbuf[32];
  const char *maxlen = NULL;
  if (!lua_isnoneornil(L, 4)) {
    if (!lua_isinteger(L, 4) || lua_tointeger(L, 4) < 1)
      luaL_error(L, "%s: maxlen must be an integer from 1 to %I, got %s", fn, (lua_Integer)LUA_MAXINTEGER,
                 sl_arg_got(L, 4));
    snprintf(maxbuf, sizeof maxbuf, "%lld", (long long)lua_tointeger(L, 4));
    maxlen = maxbuf;
  }
  int whole = lua_toboolean(L, 5);
  lua_settop(L, 3);
  sl_batch batch;
  int ob = sl_outbox_take(L, 3, &batch, err, sizeof err);
  if (ob < 0) return luaL_error(L, "%s%s", who, err);
  if (ob > 0) {   /* a flow's encoded output: decoded here, once */
    int rc = sl_decode_batch(L, &batch, err, sizeof err);
    sl_batch_release(&batch);
    if (rc != 0) return luaL_error(L, "%s%s", who, err);
    lua_replace(L, 3);
  }
  if (!lua_istable(L, 3)) sl_arg_fail(L, 3, fn, "events must be an array (a table)");
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  sl_buf b = SL_BUF_INIT;
  for (lua_Integer from = 1; from <= n; from += PIPELINE) {
    if (ensure(L, k) != 0) {
      sl_buf_free(&b);
      return 3;
    }
    lua_Integer m = 0;
    for (lua_Integer i = from; i <= n && m < PIPELINE; i++, m++) {
      lua_rawgeti(L, 3, i);
      int rc = append_xadd(L, k, lua_gettop(L), i, stream, slen, maxlen, whole, &b, err, sizeof err);
      lua_pop(L, 1);
      if (rc != 0) {
        sl_buf_free(&b);
        redisFree(k->c);   /* drops what was appended */
        k->c = NULL;
        lua_pushfstring(L, "%s%s", who, err);
        return lua_error(L);
      }
    }
    if (read_replies(L, k, m) != 0) {
      sl_buf_free(&b);
      return 3;
    }
  }
  sl_buf_free(&b);
  lua_pushinteger(L, n);
  return 1;
}

/* sluice._redis.events(events) -> events as an array: a flow's outbox is
 * taken (left empty) and decoded, anything else is returned as it is. A
 * writer that may retry a batch calls it first, so that every try writes
 * the same events. */
static int l_events(lua_State *L) {
  char err[256];
  sl_batch batch;
  lua_settop(L, 1);
  int ob = sl_outbox_take(L, 1, &batch, err, sizeof err);
  if (ob < 0) return luaL_error(L, "%s", err);
  if (ob == 0) return 1;
  int rc = sl_decode_batch(L, &batch, err, sizeof err);
  sl_batch_release(&batch);
  if (rc != 0) return luaL_error(L, "%s", err);
  return 1;
}

/* sluice.redis.encode(v) -> the field value v is written as. */
static int l_encode(lua_State *L) {
  if (lua_isnone(L, 1)) return sl_arg_fail(L, 1, "sluice.redis.encode", "expected a value");
  lua_settop(L, 1);
  char err[256];
  sl_buf b = SL_BUF_INIT;
  if (put_value(L, 1, &b, "value", err, sizeof err) != 0) {
    sl_buf_free(&b);
    return luaL_error(L, "sluice.redis.encode: %s", err);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  sl_buf_free(&b);
  return 1;
}

/* sluice._redis.whoami() -> "host:pid", a default consumer name. */
static int l_whoami(lua_State *L) {
  char host[256] = "host";
  if (gethostname(host, sizeof host) != 0) strcpy(host, "host");
  host[sizeof host - 1] = 0;
  lua_pushfstring(L, "%s:%d", host, (int)getpid());
  return 1;
}

/* sluice.redis.decode(s) -> the value the field value s stands for. */
static int l_decode(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING) return sl_arg_fail(L, 1, "sluice.redis.decode", "expected a string");
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  push_field(L, s, len, "?");
  return 1;
}

void sl_redis_open_lua(lua_State *L) {
  /* call, add and close are public (sluice.redis.connect); the source's own commands are not */
  static const luaL_Reg methods[] = {{"call", l_call}, {"_read", l_read}, {"_autoclaim", l_autoclaim},
                                     {"_ack", l_ack}, {"add", l_add}, {"close", l_close}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"connect", l_connect}, {"encode", l_encode}, {"decode", l_decode},
                                   {"whoami", l_whoami}, {"events", l_events}, {NULL, NULL}};
  if (luaL_newmetatable(L, CONN_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  sl_redis_ack_open(L);
}
