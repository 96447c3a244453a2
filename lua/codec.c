/* codec: Lua values <-> bytes. One pass each way; the wire
 * format is described in engine/README.md (the codec section). The encoder raises no Lua error but
 * memory errors; the decoder checks every length, count and reference
 * against its input before using it. This file holds the handles and the
 * name index; the encoder is codec_enc.c, the decoder codec_dec.c. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "codec.h"
#include "codec_int.h"
#include "status.h"

/* Registry and index keys: addresses, cheaper to look up than strings. */
static const char NAMES_KEY = 'n', NAMES_SIG = 's', NAMES_MODS = 'm';

static const char *const handle_mt[SL_H_NKINDS] = {
  NULL, "sluice.handle.1", "sluice.handle.2", "sluice.handle.3",
  "sluice.handle.4", "sluice.handle.5"
};

/* {====================================================================
** Handles
** ===================================================================== */

/* Pushes a new handle userdata of the given kind; with a kind out of range
 * pushes nil and returns NULL. The kind's metatable is made (empty) when
 * the binding has not made it yet. */
sl_handle *sl_handle_push(lua_State *L, int kind, uint64_t id, uint64_t aux) {
  if (kind <= 0 || kind >= SL_H_NKINDS) {
    lua_pushnil(L);
    return NULL;
  }
  sl_handle *h = lua_newuserdatauv(L, sizeof *h, 0);  /* stack: ud */
  h->kind = kind;
  h->id = id;
  h->aux = aux;
  if (lua_getfield(L, LUA_REGISTRYINDEX, handle_mt[kind]) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);                                  /* stack: ud mt */
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, handle_mt[kind]);
  }
  lua_setmetatable(L, -2);                            /* stack: ud */
  return h;
}

/* A userdata is a handle of kind k when its metatable is k's: the
 * metatable is checked before the bytes are read, as the bytes of another
 * userdata of the same size mean nothing. */
sl_handle *sl_handle_test(lua_State *L, int idx, int kind) {
  int k, found = 0;
  if (lua_type(L, idx) != LUA_TUSERDATA || kind < 0 || kind >= SL_H_NKINDS ||
      lua_rawlen(L, idx) != sizeof(sl_handle) || !lua_getmetatable(L, idx))  /* stack: mt */
    return NULL;
  for (k = kind ? kind : 1; !found && k <= (kind ? kind : SL_H_NKINDS - 1); k++) {
    lua_getfield(L, LUA_REGISTRYINDEX, handle_mt[k]);       /* stack: mt kindmt */
    found = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  sl_handle *h = lua_touserdata(L, idx);
  return found && h->kind == k - 1 ? h : NULL;
}

/* }==================================================================== */


/* {====================================================================
** Name index: values reachable from package.loaded, by name
**
** registry[&NAMES_KEY] maps each module table or C function (every
** package.loaded[name], and every C function field of those that are
** tables) to its encoding, ready to append: T_MOD name or T_FIELD module
** field. The globals table is always "_G". The index also keeps a
** signature of package.loaded under &NAMES_SIG; when package.loaded has
** changed since, or when a C function is not found, it is rebuilt.
** Under &NAMES_MODS it keeps the set of its tables (sl_modset), sorted
** addresses, so that a path that encodes one table at a time can tell a
** module from an event without a lookup in the index.
** ===================================================================== */

struct sl_modset {
  size_t n;
  const void *p[];
};

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)*(const void *const *)a, y = (uintptr_t)*(const void *const *)b;
  return x < y ? -1 : x > y;
}

/* Stores in the index at index the sorted set of its table keys. */
static void mods_build(lua_State *L, int index) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, index)) {                      /* stack: k v */
    n += lua_type(L, -2) == LUA_TTABLE;
    lua_pop(L, 1);
  }
  sl_modset *m = lua_newuserdatauv(L, sizeof *m + n * sizeof m->p[0], 0);  /* stack: set */
  m->n = 0;
  lua_pushnil(L);
  while (lua_next(L, index)) {                      /* stack: set k v */
    if (lua_type(L, -2) == LUA_TTABLE) m->p[m->n++] = lua_topointer(L, -2);
    lua_pop(L, 1);
  }
  qsort(m->p, m->n, sizeof m->p[0], cmp_ptr);
  lua_rawsetp(L, index, &NAMES_MODS);
}

const sl_modset *sl_encode_modset(lua_State *L, int names) {
  lua_rawgetp(L, names, &NAMES_MODS);
  const sl_modset *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return m;
}

int sl_modset_has(const sl_modset *m, const void *p) {
  size_t lo = 0, hi = m->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)m->p[mid] < (uintptr_t)p) lo = mid + 1;
    else hi = mid;
  }
  return lo < m->n && m->p[lo] == p;
}

/* A cheap fingerprint of package.loaded: its size and the identity of its
 * keys and values. Computed once per encode call that needs the index. */
static lua_Integer loaded_sig(lua_State *L, int loaded) {
  uint64_t sig = 0;
  if (!lua_istable(L, loaded)) return 0;
  lua_pushnil(L);                                   /* stack: nil */
  while (lua_next(L, loaded)) {                     /* stack: k v */
    uint64_t k = (uint64_t)(uintptr_t)lua_topointer(L, -2);
    uint64_t v = (uint64_t)(uintptr_t)lua_topointer(L, -1);
    sig = sig * 31 + (k ^ (v * 0x9E3779B97F4A7C15u)) + 1;
    lua_pop(L, 1);                                  /* stack: k */
  }
  return (lua_Integer)(lua_Unsigned)sig;
}

/* Sets index[value at vidx] = the string at top (popping it), unless the
 * value already has a name that is shorter, or as long and smaller: the
 * choice must not depend on traversal order. */
static void names_add(lua_State *L, int index, int vidx) {
  lua_pushvalue(L, vidx);                           /* stack: name v */
  if (lua_rawget(L, index) == LUA_TSTRING) {        /* stack: name old */
    size_t n1, n2;
    const char *s1 = lua_tolstring(L, -2, &n1), *s2 = lua_tolstring(L, -1, &n2);
    int cmp = n1 != n2 ? (n1 < n2 ? -1 : 1) : memcmp(s1, s2, n1);
    if (cmp >= 0) {
      lua_pop(L, 2);
      return;
    }
  }
  lua_pop(L, 1);                                    /* stack: name */
  lua_pushvalue(L, vidx);                           /* stack: name v */
  lua_insert(L, -2);                                /* stack: v name */
  lua_rawset(L, index);
}

/* Pushes the encoding T_MOD mod, or T_FIELD mod field when field != NULL. */
static void push_name(lua_State *L, const char *mod, size_t mlen, const char *field, size_t flen) {
  luaL_Buffer B;
  char v[1 + MAXVARINT];
  luaL_buffinit(L, &B);
  v[0] = (char)(field ? T_FIELD : T_MOD);
  luaL_addlstring(&B, v, 1 + varint_put(v + 1, mlen));
  luaL_addlstring(&B, mod, mlen);
  if (field) {
    luaL_addlstring(&B, v + 1, varint_put(v + 1, flen));
    luaL_addlstring(&B, field, flen);
  }
  luaL_pushresult(&B);                              /* stack: name */
}

/* Builds the index afresh, stores it in the registry and pushes it. */
void cd_names_build(lua_State *L) {
  lua_checkstack(L, 16);
  lua_createtable(L, 0, 256);                       /* stack: index */
  int index = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);  /* stack: index loaded */
  int loaded = index + 1;
  lua_pushinteger(L, loaded_sig(L, loaded));
  lua_rawsetp(L, index, &NAMES_SIG);
  if (lua_istable(L, loaded)) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {                   /* stack: index loaded mod m */
      size_t mlen;
      const char *mod;
      int m = lua_gettop(L);
      if (lua_type(L, -2) != LUA_TSTRING ||
          !(lua_istable(L, m) || lua_iscfunction(L, m))) {
        lua_pop(L, 1);
        continue;
      }
      mod = lua_tolstring(L, -2, &mlen);
      push_name(L, mod, mlen, NULL, 0);
      names_add(L, index, m);
      if (lua_istable(L, m)) {
        lua_pushnil(L);
        while (lua_next(L, m)) {                    /* stack: ... mod m f fn */
          if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
            size_t flen;
            const char *field = lua_tolstring(L, -2, &flen);
            push_name(L, mod, mlen, field, flen);
            names_add(L, index, lua_gettop(L) - 1);
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);                                /* stack: index loaded mod */
    }
  }
  lua_pop(L, 1);                                    /* stack: index */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);  /* stack: index _G */
  push_name(L, "_G", 2, NULL, 0);                  /* stack: index _G name */
  lua_rawset(L, index);
  mods_build(L, index);
  lua_pushvalue(L, index);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_KEY);
}

/* Pushes the index, rebuilding it when package.loaded has changed. */
void cd_names_get(lua_State *L) {
  lua_checkstack(L, 4);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_KEY) == LUA_TTABLE) {  /* stack: index */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);  /* stack: index loaded */
    lua_Integer sig = loaded_sig(L, lua_gettop(L));
    lua_rawgetp(L, -2, &NAMES_SIG);                  /* stack: index loaded sig */
    int same = lua_tointeger(L, -1) == sig;
    lua_pop(L, 2);                                   /* stack: index */
    if (same) return;
  }
  lua_pop(L, 1);
  cd_names_build(L);
}

/* }==================================================================== */
