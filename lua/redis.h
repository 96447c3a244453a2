/* redis: Redis Streams for sluice.redis (redis.c: connections and
 * commands; redis_ack.c: acknowledging a source's entries). */
#ifndef SLUICE_REDIS_H
#define SLUICE_REDIS_H
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include <lua.h>

/* A field value that starts with these bytes holds a codec encoding after
 * them; the last byte is the format's version. */
#define VALUE_PREFIX "\0SL1"

typedef struct sl_redis_url {
  char host[256];
  int port, db;
  char path[512];   /* a unix socket when not empty */
} sl_redis_url;

/* redis://[host][:port][/db] or unix:///path: 0, or -1 when malformed. */
int sl_redis_parse_url(const char *s, sl_redis_url *u);
/* Connects (2 s to connect, 30 s per reply); NULL with a message in err. */
redisContext *sl_redis_open(const sl_redis_url *u, char *err, size_t errlen);
/* "loading", "nogroup", "busygroup", "wrongtype" or "reply" for an error reply. */
const char *sl_redis_error_kind(const char *msg);

/* Pushes the sluice._redis table (connect, encode, decode and the
 * source registration of redis_ack.c). */
void sl_redis_open_lua(lua_State *L);
/* Adds register_source to the table on top of the stack (redis_ack.c). */
void sl_redis_ack_open(lua_State *L);

/* Hooks for a stage's handle_events (stage.c). sl_redis_source_of(peer):
 * the registered source a producer is, or NULL (cheap when no source was
 * ever registered). sl_redis_take_ids copies the `id` of each event of the
 * array at idx; sl_redis_ack then acknowledges them (done != 0: the
 * callback returned) or forgets them (it failed: they stay pending, and
 * are delivered again). Both on the stage's own thread and state. */
typedef struct sl_redis_source sl_redis_source;
const sl_redis_source *sl_redis_source_of(uint64_t peer);
void sl_redis_take_ids(lua_State *L, int idx);
void sl_redis_ack(lua_State *L, const sl_redis_source *src, int done);
#endif
