/* snapshot: the globals of the main state as the workers see them. A
 * stage or task started from the main state carries a snapshot: every
 * user global (the names a fresh state does not have) encoded once, plus
 * package.path and cpath, in an immutable, refcounted object that the
 * messages share. A worker keeps the newest snapshot it has seen; a name
 * missing from its own globals is decoded from it on first use and cached
 * (the cache is reset when a newer snapshot comes). A value that cannot
 * cross states is an error when a worker uses its name, not when the
 * snapshot is taken. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "codec.h"
#include "rt.h"
#include "snapshot.h"

/* An immutable list of (name, encoded value | error) plus package paths. */
struct sl_snapshot {
  atomic_int refs;
  uint64_t version;
  int n;
  struct snap_entry { char *name; int ok; char *bytes; size_t len; } *e;
  char *path, *cpath;
};
typedef sl_snapshot snapshot;

static void snap_release(void *p) {
  snapshot *s = p;
  if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
  for (int i = 0; i < s->n; i++) {
    free(s->e[i].name);
    free(s->e[i].bytes);
  }
  free(s->e);
  free(s->path);
  free(s->cpath);
  free(s);
}

static const char BASELINE_KEY[] = "sluice.baseline";

/* Records the global names of a fresh state (the ones not snapshotted). */
void sl_snap_record_baseline(lua_State *L) {
  lua_State *F = luaL_newstate();
  if (!F) return;
  luaL_openlibs(F);
  lua_newtable(L);                              /* stack: base */
  lua_pushnil(F);
  while (lua_next(F, LUA_REGISTRYINDEX) != 0) lua_pop(F, 1);  /* (keep F warm) */
  lua_rawgeti(F, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushnil(F);
  while (lua_next(F, -2) != 0) {
    if (lua_type(F, -2) == LUA_TSTRING) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, lua_tostring(F, -2));
    }
    lua_pop(F, 1);
  }
  lua_close(F);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "sluice");
  lua_setfield(L, LUA_REGISTRYINDEX, BASELINE_KEY);
}

static char *dup_field(lua_State *L, const char *field) {
  lua_getglobal(L, "package");
  char *r = NULL;
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, field);
    const char *s = lua_tostring(L, -1);
    if (s) r = strdup(s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return r;
}

static uint64_t snap_version;

/* Encodes every user global of the main state L into a new snapshot. */
static snapshot *snap_take(lua_State *L) {
  snapshot *s = calloc(1, sizeof *s);
  if (!s) luaL_error(L, "sluice: out of memory");
  atomic_init(&s->refs, 1);
  s->version = ++snap_version;
  s->path = dup_field(L, "path");
  s->cpath = dup_field(L, "cpath");
  int cap = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, BASELINE_KEY);    /* stack: base */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); /* stack: base G */
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {                       /* stack: base G k v */
    if (lua_type(L, -2) == LUA_TSTRING) {
      lua_pushvalue(L, -2);
      lua_rawget(L, -5);                               /* stack: base G k v inbase */
      int skip = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (!skip) {
        if (s->n == cap) {
          cap = cap ? cap * 2 : 16;
          void *p = realloc(s->e, (size_t)cap * sizeof *s->e);
          if (!p) break;
          s->e = p;
        }
        struct snap_entry *e = &s->e[s->n++];
        memset(e, 0, sizeof *e);
        e->name = strdup(lua_tostring(L, -2));
        sl_buf b = SL_BUF_INIT;
        char err[256];
        if (sl_encode(L, -1, &b, e->name, err, sizeof err) == 0) {
          e->ok = 1;
          e->bytes = sl_buf_take(&b, &e->len);
        } else {
          sl_buf_free(&b);
          e->bytes = strdup(err);
          e->len = strlen(err);
        }
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return s;
}

/* A snapshot pinned by sluice._pin_globals: every start until the unpin
 * shares it, so a flow that starts many stages encodes the globals once. */
static snapshot *pinned;

void sl_rt_attach_snapshot(lua_State *L, sl_msg *m) {
  if (pinned) {
    atomic_fetch_add(&pinned->refs, 1);
    m->obj = pinned;
  } else {
    m->obj = snap_take(L);
  }
  m->obj_free = snap_release;
}

/* sluice._pin_globals(on): on = true takes one snapshot for the starts
 * that follow; false drops it. Main thread only (the snapshot's owner). */
int sl_snap_pin(lua_State *L) {
  int on = lua_toboolean(L, 1);
  if (sl_rt_place(L) != -1) return luaL_error(L, "sluice._pin_globals: only the main thread may pin the globals");
  snap_release(pinned);
  pinned = on ? snap_take(L) : NULL;
  return 0;
}

void sl_snap_unpin(void) {
  snap_release(pinned);
  pinned = NULL;
}

void sl_snap_release(sl_snapshot *s) { snap_release(s); }

/* ---- worker side ---------------------------------------------------------- */

static const char SNAPCACHE_KEY[] = "sluice.snapcache";

static void set_package_field(lua_State *L, const char *field, const char *v) {
  if (!v) return;
  lua_getglobal(L, "package");
  lua_pushstring(L, v);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

void sl_snap_init_cache(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, SNAPCACHE_KEY);
}

void sl_snap_install(lua_State *L, sl_snapshot **cur, sl_msg *m) {
  snapshot *s = m->obj;
  if (!s || m->obj_free != snap_release) return;
  if (*cur && (*cur)->version >= s->version) return;
  atomic_fetch_add(&s->refs, 1);
  snap_release(*cur);
  *cur = s;
  set_package_field(L, "path", s->path);
  set_package_field(L, "cpath", s->cpath);
  sl_snap_init_cache(L);
}

int sl_snap_lookup(lua_State *L, sl_snapshot *s, int name) {
  name = lua_absindex(L, name);
  lua_getfield(L, LUA_REGISTRYINDEX, SNAPCACHE_KEY);   /* stack: cache */
  lua_pushvalue(L, name);
  if (lua_rawget(L, -2) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  const char *n = lua_tostring(L, name);
  for (int i = 0; i < s->n; i++) {
    if (strcmp(s->e[i].name, n) != 0) continue;
    if (!s->e[i].ok)
      return luaL_error(L, "global '%s' holds a value that cannot cross states (%s)", n, s->e[i].bytes);
    char err[256];
    if (sl_decode(L, s->e[i].bytes, s->e[i].len, err, sizeof err) != 0)
      return luaL_error(L, "global '%s': %s", n, err);
    lua_pushvalue(L, name);
    lua_pushvalue(L, -2);                              /* stack: cache v name v */
    lua_rawset(L, -4);
    return 1;
  }
  return 0;
}
