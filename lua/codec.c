/* codec: Lua values <-> bytes (API.md §1). One pass each way; the wire
 * format is described in engine/README.md (the codec section). The encoder raises no Lua error but
 * memory errors; the decoder checks every length, count and reference
 * against its input before using it. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "codec.h"
#include "status.h"

/* Tags: the first byte of every encoded value. */
enum {
  T_NIL = 0x00, T_FALSE = 0x01, T_TRUE = 0x02,
  T_INT = 0x03,     /* zigzag varint */
  T_FLT = 0x04,     /* 8 bytes, IEEE double, little endian */
  T_STR = 0x05,     /* varint length, bytes */
  T_TABLE = 0x06,   /* varint narr, varint nhash, narr values, nhash pairs */
  T_FUNC = 0x07,    /* varint length, bytecode, varint nups, nups upvalues */
  T_REF = 0x08,     /* varint k: the k-th (0-based) table/function/handle */
  T_MOD = 0x09,     /* varint length, module name */
  T_FIELD = 0x0A,   /* module name, field name (each varint length, bytes) */
  T_HANDLE = 0x0B,  /* kind byte, varint id, varint aux */
  T_ENV = 0x0C,     /* upvalue only: the receiver's globals */
  T_UPREF = 0x0D,   /* upvalue only: varint k, varint n: shares upvalue n of ref k */
  T_FIXINT = 0x40,  /* 0x40 + i, for 0 <= i < 64 */
  T_FIXSTR = 0x80   /* 0x80 + length, for strings shorter than 128 bytes */
};

#define MAXVARINT 10
/* Registry and index keys: addresses, cheaper to look up than strings. */
static const char NAMES_KEY = 'n', NAMES_SIG = 's', DUMPS_KEY = 'd';
#define PATHMAX 256

static const char *const handle_mt[SL_H_NKINDS] = {
  NULL, "sluice.handle.1", "sluice.handle.2", "sluice.handle.3",
  "sluice.handle.4", "sluice.handle.5"
};

/* {====================================================================
** Varints and raw numbers
** ===================================================================== */

static size_t varint_put(char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (char)(uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (char)(uint8_t)v;
  return n;
}

static uint64_t zigzag(lua_Integer i) {
  uint64_t u = (uint64_t)(lua_Unsigned)i << 1;
  return i < 0 ? ~u : u;
}

static lua_Integer unzigzag(uint64_t u) {
  return (lua_Integer)(lua_Unsigned)((u & 1) ? ~(u >> 1) : (u >> 1));
}

/* Room for n more bytes at the end of b, or NULL. */
static char *room(sl_buf *b, size_t n) {
  if (b->cap - b->len < n && sl_buf_reserve(b, n)) return NULL;
  return b->data + b->len;
}

/* Writes v as a varint at b->data[at], where one byte was reserved,
 * moving the bytes after it when v needs more than one. */
static int patch_varint(sl_buf *b, size_t at, uint64_t v) {
  char tmp[MAXVARINT];
  size_t n = varint_put(tmp, v);
  if (n > 1) {
    if (sl_buf_reserve(b, n - 1)) return SL_ENOMEM;
    memmove(b->data + at + n, b->data + at + 1, b->len - at - 1);
    b->len += n - 1;
  }
  memcpy(b->data + at, tmp, n);
  return 0;
}

static int put_tag_varint(sl_buf *b, int tag, uint64_t v) {
  char *p = room(b, 1 + MAXVARINT);
  if (!p) return SL_ENOMEM;
  p[0] = (char)tag;
  b->len += 1 + varint_put(p + 1, v);
  return 0;
}

/* Writes string s as its encoding at p (room for 1 + MAXVARINT + n
 * bytes); returns the bytes written. */
static size_t string_put(char *p, const char *s, size_t n) {
  size_t h = 1;
  if (n < 128) *p = (char)(T_FIXSTR + n);
  else {
    *p = (char)T_STR;
    h += varint_put(p + 1, n);
  }
  memcpy(p + h, s, n);
  return h + n;
}

static int put_string(sl_buf *b, const char *s, size_t n) {
  char *p = room(b, 1 + MAXVARINT + n);
  if (!p) return SL_ENOMEM;
  b->len += string_put(p, s, n);
  return 0;
}

/* Writes the number at idx, keeping its subtype, at p (room for
 * 1 + MAXVARINT bytes); returns the bytes written. */
static size_t number_put(char *p, lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    if ((lua_Unsigned)i < 64) {
      *p = (char)(T_FIXINT + (int)i);
      return 1;
    }
    *p = (char)T_INT;
    return 1 + varint_put(p + 1, zigzag(i));
  }
  double d = (double)lua_tonumber(L, idx);
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  *p = (char)T_FLT;
  for (int k = 0; k < 8; k++) p[1 + k] = (char)(uint8_t)(u >> (8 * k));
  return 9;
}

static int put_number(sl_buf *b, lua_State *L, int idx) {
  char *p = room(b, 1 + MAXVARINT);
  if (!p) return SL_ENOMEM;
  b->len += number_put(p, L, idx);
  return 0;
}

size_t sl_encode_scalar(lua_State *L, int idx, char *dst, size_t cap) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    if (cap < 1) return 0;
    *dst = (char)T_NIL;
    return 1;
  case LUA_TBOOLEAN:
    if (cap < 1) return 0;
    *dst = (char)(lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    return 1;
  case LUA_TNUMBER:
    return cap < 1 + MAXVARINT ? 0 : number_put(dst, L, idx);
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return cap < 1 + MAXVARINT || n > cap - 1 - MAXVARINT ? 0 : string_put(dst, s, n);
  }
  default:
    return 0;
  }
}

/* }==================================================================== */


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
** ===================================================================== */

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
static void names_build(lua_State *L) {
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
  lua_pushvalue(L, index);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_KEY);
}

/* Pushes the index, rebuilding it when package.loaded has changed. */
static void names_get(lua_State *L) {
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
  names_build(L);
}

/* }==================================================================== */


/* {====================================================================
** Encoder
** ===================================================================== */

/* The seen map: the address of every table, Lua function and handle met
 * in the value being encoded (lua_topointer) -> its ref number (1-based,
 * in order of appearance), and the identity of every upvalue met
 * (lua_upvalueid) -> ref * 256 + n for upvalue n of the function with
 * number ref. Addresses are stable: Lua's collector does not move objects,
 * and the value holds them alive. Open addressing, linear probing; the map
 * starts inside Enc and grows into a userdata kept in a stack slot, so
 * that a memory error raised while it grows leaks nothing. used[] lists
 * the filled slots, so that clearing costs one store per entry. */
#define SEEN_INLINE 16

typedef struct SeenSlot {
  const void *key;   /* NULL: empty */
  lua_Integer val;
} SeenSlot;

typedef struct Enc {
  lua_State *L;
  sl_buf *b;
  int seenslot;       /* stack slot: the seen map's storage once it grew */
  int names;          /* stack slot: the name index (nil until needed) */
  int hasnames, rebuilt;
  SeenSlot *slot;
  uint32_t *used;
  size_t mask, count;
  lua_Integer nref;   /* last ref number handed out in this value */
  int depth;
  SeenSlot inl[SEEN_INLINE];
  uint32_t inlused[SEEN_INLINE / 2];
  /* error report: the message, and the path built right to left while
   * the recursion unwinds */
  char msg[80];
  char path[PATHMAX];
  size_t pathpos;
  int pathcut;        /* the path was too long: its start is left out */
  int nomem;          /* a memory failure: the message has no path */
} Enc;

static int enc_value(Enc *e, int idx);

static void enc_init(Enc *e, lua_State *L, sl_buf *b) {
  e->L = L;
  e->b = b;
  lua_pushnil(L);
  e->seenslot = lua_gettop(L);
  lua_pushnil(L);
  e->names = lua_gettop(L);
  e->hasnames = e->rebuilt = 0;
  memset(e->inl, 0, sizeof e->inl);
  e->slot = e->inl;
  e->used = e->inlused;
  e->mask = SEEN_INLINE - 1;
  e->count = 0;
  e->nref = 0;
  e->depth = 0;
  e->msg[0] = '\0';
  e->pathpos = PATHMAX - 1;
  e->path[PATHMAX - 1] = '\0';
  e->pathcut = e->nomem = 0;
}

static int enc_fail(Enc *e, int status, const char *what) {
  e->nomem = status == SL_ENOMEM;
  if (e->nomem) snprintf(e->msg, sizeof e->msg, "not enough memory");
  else if (what) snprintf(e->msg, sizeof e->msg, "cannot send a %s value", what);
  else snprintf(e->msg, sizeof e->msg, "value nested deeper than %d levels", SL_CODEC_MAX_DEPTH);
  return status;
}

static void path_prepend(Enc *e, const char *s, size_t n) {
  if (n > e->pathpos) {
    e->pathcut = 1;
    return;
  }
  e->pathpos -= n;
  memcpy(e->path + e->pathpos, s, n);
}

static int is_identifier(const char *s, size_t n) {
  static const char *const reserved[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
    "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
    "true", "until", "while", NULL
  };
  if (n == 0 || n > 64 || !(s[0] == '_' || ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z')))
    return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
      return 0;
  }
  for (int k = 0; reserved[k]; k++)
    if (strlen(reserved[k]) == n && memcmp(reserved[k], s, n) == 0) return 0;
  return 1;
}

/* Prepends the path segment for the key at kidx: ".name" for identifier
 * strings, ["..."] for other strings, [3] for numbers and booleans, and
 * [<table>] (the type in angle brackets) for keys that have no short
 * literal form. With iskey, the failure is in the key itself:
 * [<thread key>]. */
static void path_key(Enc *e, int kidx, int iskey) {
  lua_State *L = e->L;
  char seg[96];
  int n;
  switch (lua_type(L, kidx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, kidx, &len);
    if (is_identifier(s, len)) {
      n = snprintf(seg, sizeof seg, ".%.*s", (int)len, s);
      break;
    }
    n = 0;
    seg[n++] = '[';
    seg[n++] = '"';
    for (size_t i = 0; i < len && n < 60; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c == '"' || c == '\\') n += snprintf(seg + n, sizeof seg - (size_t)n, "\\%c", c);
      else if (c >= 32 && c < 127) seg[n++] = (char)c;
      else n += snprintf(seg + n, sizeof seg - (size_t)n, "\\%d", c);
      if (i + 1 < len && n >= 60) n += snprintf(seg + n, sizeof seg - (size_t)n, "...");
    }
    n += snprintf(seg + n, sizeof seg - (size_t)n, "\"]");
    break;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, kidx))
      n = snprintf(seg, sizeof seg, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)lua_tointeger(L, kidx));
    else
      n = snprintf(seg, sizeof seg, "[%.14g]", (double)lua_tonumber(L, kidx));
    break;
  case LUA_TBOOLEAN:
    n = snprintf(seg, sizeof seg, "[%s]", lua_toboolean(L, kidx) ? "true" : "false");
    break;
  default:
    n = snprintf(seg, sizeof seg, "[<%s%s>]", luaL_typename(L, kidx), iskey ? " key" : "");
    break;
  }
  if (n > (int)sizeof seg - 1) n = (int)sizeof seg - 1;
  if (n > 0) path_prepend(e, seg, (size_t)n);
}

static void path_index(Enc *e, lua_Integer i) {
  char seg[32];
  int n = snprintf(seg, sizeof seg, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)i);
  path_prepend(e, seg, (size_t)n);
}

/* Upvalues appear in paths as fields of their function: fn.conn. */
static void path_upvalue(Enc *e, const char *name, int i) {
  char seg[96];
  int n;
  if (name && *name && strcmp(name, "(no name)") != 0)
    n = snprintf(seg, sizeof seg, ".%.80s", name);
  else
    n = snprintf(seg, sizeof seg, "[upvalue %d]", i);
  path_prepend(e, seg, (size_t)n);
}

/* Writes the error message, "<msg> (at <root><path>)", into err. */
static void enc_report(Enc *e, const char *root, lua_Integer rootidx, char *err, size_t errlen) {
  char ri[32] = "";
  if (!err || errlen == 0) return;
  if (!root) root = "value";
  if (rootidx > 0) snprintf(ri, sizeof ri, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)rootidx);
  if (e->nomem)
    snprintf(err, errlen, "%s", e->msg);
  else
    snprintf(err, errlen, "%s (at %s%s%s%s)", e->msg, root, ri, e->pathcut ? "..." : "",
             e->path + e->pathpos);
}

static size_t seen_hash(const void *key, size_t mask) {
  uint64_t x = (uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15u;
  return (size_t)(x >> 32) & mask;
}

/* The value stored for key, or 0. */
static lua_Integer seen_get(const Enc *e, const void *key) {
  if (e->count == 0) return 0;
  for (size_t i = seen_hash(key, e->mask);; i = (i + 1) & e->mask) {
    if (e->slot[i].key == key) return e->slot[i].val;
    if (e->slot[i].key == NULL) return 0;
  }
}

static void seen_insert(Enc *e, const void *key, lua_Integer val) {
  size_t i = seen_hash(key, e->mask);
  while (e->slot[i].key) i = (i + 1) & e->mask;
  e->slot[i].key = key;
  e->slot[i].val = val;
  e->used[e->count++] = (uint32_t)i;
}

/* Adds key (not in the map) with val, growing the map at half full. */
static void seen_put(Enc *e, const void *key, lua_Integer val) {
  if ((e->count + 1) * 2 > e->mask + 1) {
    size_t cap = (e->mask + 1) * 2, n = e->count;
    SeenSlot *old = e->slot;
    uint32_t *oldused = e->used;
    char *mem = lua_newuserdatauv(e->L, cap * sizeof(SeenSlot) + cap / 2 * sizeof(uint32_t), 0);
    memset(mem, 0, cap * sizeof(SeenSlot));
    e->slot = (SeenSlot *)mem;
    e->used = (uint32_t *)(mem + cap * sizeof(SeenSlot));
    e->mask = cap - 1;
    e->count = 0;
    for (size_t k = 0; k < n; k++) seen_insert(e, old[oldused[k]].key, old[oldused[k]].val);
    lua_replace(e->L, e->seenslot);  /* stack: (the old storage may go) */
  }
  seen_insert(e, key, val);
}

/* Empties the map, for the next value of a batch. */
static void seen_clear(Enc *e) {
  for (size_t k = 0; k < e->count; k++) e->slot[e->used[k]].key = NULL;
  e->count = 0;
  e->nref = 0;
}

/* Writes a back-reference and returns 1 when the object at idx was met
 * earlier in this value, else returns 0; a negative status on failure. */
static int seen_find(Enc *e, int idx) {
  lua_Integer r = seen_get(e, lua_topointer(e->L, idx));
  if (r == 0) return 0;
  return put_tag_varint(e->b, T_REF, (uint64_t)(r - 1)) ? SL_ENOMEM : 1;
}

/* Gives the object at idx the next ref number. */
static lua_Integer seen_add(Enc *e, int idx) {
  seen_put(e, lua_topointer(e->L, idx), ++e->nref);
  return e->nref;
}

/* Appends the name of the package.loaded entry at idx, if it has one.
 * Returns 1 when written, 0 when it has none, or a negative status. With
 * retry, a miss rebuilds the index once and looks again. */
static int enc_named(Enc *e, int idx, int retry) {
  lua_State *L = e->L;
  if (!e->hasnames) {
    names_get(L);                                   /* stack: index */
    lua_replace(L, e->names);
    e->hasnames = 1;
  }
  for (;;) {
    lua_pushvalue(L, idx);                          /* stack: v */
    if (lua_rawget(L, e->names) == LUA_TSTRING) {   /* stack: name */
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      int rc = sl_buf_append(e->b, s, n);
      lua_pop(L, 1);
      return rc ? SL_ENOMEM : 1;
    }
    lua_pop(L, 1);
    if (!retry || e->rebuilt) return 0;
    e->rebuilt = 1;
    names_build(L);                                 /* stack: index */
    lua_replace(L, e->names);
  }
}

static int enc_enter(Enc *e) {
  if (++e->depth > SL_CODEC_MAX_DEPTH) return enc_fail(e, SL_EINVAL, NULL);
  if (!lua_checkstack(e->L, 8)) return enc_fail(e, SL_ENOMEM, NULL);
  return 0;
}

/* Encodes the table at idx: array part t[1..#t] first, then every other
 * pair. The pair count is known only at the end and is patched in. */
static int enc_table(Enc *e, int idx) {
  lua_State *L = e->L;
  sl_buf *b = e->b;
  int rc;
  if ((rc = seen_find(e, idx)) != 0 || (rc = enc_named(e, idx, 0)) != 0)
    return rc < 0 ? enc_fail(e, rc, NULL) : 0;
  if ((rc = enc_enter(e)) != 0) return rc;
  seen_add(e, idx);
  lua_Unsigned narr = lua_rawlen(L, idx);
  if (put_tag_varint(b, T_TABLE, narr) || sl_buf_putc(b, 0))
    return enc_fail(e, SL_ENOMEM, NULL);
  size_t hpos = b->len - 1;
  for (lua_Unsigned i = 1; i <= narr; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i);            /* stack: v */
    if ((rc = enc_value(e, lua_gettop(L))) != 0) {
      path_index(e, (lua_Integer)i);
      return rc;
    }
    lua_pop(L, 1);
  }
  uint64_t nhash = 0;
  lua_pushnil(L);                                   /* stack: nil */
  while (lua_next(L, idx)) {                        /* stack: k v */
    int v = lua_gettop(L);
    if (lua_isinteger(L, v - 1)) {
      lua_Integer k = lua_tointeger(L, v - 1);
      if (k >= 1 && (lua_Unsigned)k <= narr) {
        lua_pop(L, 1);
        continue;
      }
    }
    if ((rc = enc_value(e, v - 1)) != 0) {
      path_key(e, v - 1, 1);
      return rc;
    }
    if ((rc = enc_value(e, v)) != 0) {
      path_key(e, v - 1, 0);
      return rc;
    }
    lua_pop(L, 1);                                  /* stack: k */
    nhash++;
  }
  if (patch_varint(b, hpos, nhash)) return enc_fail(e, SL_ENOMEM, NULL);
  e->depth--;
  return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return sl_buf_append(ud, p, n) ? 1 : 0;
}

/* Appends the bytecode of the Lua function at idx (debug info kept).
 * Each state keeps the dumps of the functions it has encoded in a table
 * with weak keys (registry[&DUMPS_KEY]): a function sent again, as the
 * same callbacks and user functions are to every stage of a flow layer,
 * is dumped once. Bytecode depends on the function's prototype only, so
 * the cached bytes stay right whatever its upvalues hold later. Returns 0
 * or SL_ENOMEM. */
static int put_bytecode(Enc *e, int idx) {
  lua_State *L = e->L;
  sl_buf *b = e->b;
  if (!lua_checkstack(L, 4)) return SL_ENOMEM;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMPS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);                      /* stack: dumps */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DUMPS_KEY);
  }
  int dumps = lua_gettop(L);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, dumps) == LUA_TSTRING) {        /* stack: dumps code */
    size_t n;
    const char *code = lua_tolstring(L, -1, &n);
    int rc = sl_buf_append(b, code, n);
    lua_pop(L, 2);
    return rc ? SL_ENOMEM : 0;
  }
  lua_pop(L, 1);
  size_t start = b->len;
  lua_pushvalue(L, idx);                            /* stack: dumps f */
  int rc = lua_dump(L, dump_writer, b, 0);
  lua_pop(L, 1);
  if (rc) {
    lua_pop(L, 1);
    return SL_ENOMEM;
  }
  lua_pushvalue(L, idx);
  lua_pushlstring(L, b->data + start, b->len - start);
  lua_rawset(L, dumps);
  lua_pop(L, 1);
  return 0;
}

/* Encodes the upvalues of the Lua function at f (ref number ref). An
 * upvalue named _ENV is sent as T_ENV; an upvalue shared with a function
 * encoded earlier in this value is sent as T_UPREF, so the receiver joins
 * them again (lua_upvaluejoin). */
static int enc_upvalues(Enc *e, int f, lua_Integer ref, int nups) {
  lua_State *L = e->L;
  for (int i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, f, i);     /* stack: v */
    int rc;
    if (name && strcmp(name, "_ENV") == 0) {
      lua_pop(L, 1);
      if (sl_buf_putc(e->b, T_ENV)) return enc_fail(e, SL_ENOMEM, NULL);
      continue;
    }
    const void *id = lua_upvalueid(L, f, i);
    lua_Integer code = seen_get(e, id);
    if (code) {
      lua_pop(L, 1);
      char *p = room(e->b, 1 + 2 * MAXVARINT);
      if (!p) return enc_fail(e, SL_ENOMEM, NULL);
      p[0] = (char)T_UPREF;
      size_t n = 1 + varint_put(p + 1, (uint64_t)((code >> 8) - 1));
      n += varint_put(p + n, (uint64_t)(code & 0xff));
      e->b->len += n;
      continue;
    }
    seen_put(e, id, ref * 256 + i);
    if ((rc = enc_value(e, lua_gettop(L))) != 0) {
      path_upvalue(e, name, i);
      return rc;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Encodes the function at idx: a C function by name, a Lua function as
 * its bytecode (debug info kept) and its upvalues. */
static int enc_function(Enc *e, int idx) {
  lua_State *L = e->L;
  sl_buf *b = e->b;
  lua_Debug ar;
  int rc;
  if (lua_iscfunction(L, idx)) {
    rc = enc_named(e, idx, 1);
    return rc > 0 ? 0 : rc < 0 ? enc_fail(e, rc, NULL) : enc_fail(e, SL_EINVAL, "C function");
  }
  if ((rc = seen_find(e, idx)) != 0) return rc < 0 ? enc_fail(e, rc, NULL) : 0;
  if ((rc = enc_enter(e)) != 0) return rc;
  lua_Integer ref = seen_add(e, idx);
  if (sl_buf_putc(b, T_FUNC) || sl_buf_putc(b, 0)) return enc_fail(e, SL_ENOMEM, NULL);
  size_t lpos = b->len - 1;
  rc = put_bytecode(e, idx);
  lua_pushvalue(L, idx);                            /* stack: f */
  lua_getinfo(L, ">u", &ar);                        /* stack: (f popped) */
  char *p;
  if (rc || patch_varint(b, lpos, b->len - lpos - 1) || !(p = room(b, MAXVARINT)))
    return enc_fail(e, SL_ENOMEM, NULL);
  b->len += varint_put(p, ar.nups);
  if ((rc = enc_upvalues(e, idx, ref, ar.nups)) != 0) return rc;
  e->depth--;
  return 0;
}

static int enc_userdata(Enc *e, int idx) {
  sl_handle *h = sl_handle_test(e->L, idx, 0);
  int rc;
  if (!h) return enc_fail(e, SL_EINVAL, "userdata");
  if ((rc = seen_find(e, idx)) != 0) return rc < 0 ? enc_fail(e, rc, NULL) : 0;
  seen_add(e, idx);
  char *p = room(e->b, 2 + 2 * MAXVARINT);
  if (!p) return enc_fail(e, SL_ENOMEM, NULL);
  p[0] = (char)T_HANDLE;
  p[1] = (char)h->kind;
  size_t n = 2 + varint_put(p + 2, h->id);
  n += varint_put(p + n, h->aux);
  e->b->len += n;
  return 0;
}

/* Encodes the value at (absolute) idx. On failure the message is in e and
 * the path below this value in e->path. */
static int enc_value(Enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return sl_buf_putc(e->b, T_NIL) ? enc_fail(e, SL_ENOMEM, NULL) : 0;
  case LUA_TBOOLEAN:
    return sl_buf_putc(e->b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE)
           ? enc_fail(e, SL_ENOMEM, NULL) : 0;
  case LUA_TNUMBER:
    return put_number(e->b, L, idx) ? enc_fail(e, SL_ENOMEM, NULL) : 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_string(e->b, s, n) ? enc_fail(e, SL_ENOMEM, NULL) : 0;
  }
  case LUA_TTABLE: return enc_table(e, idx);
  case LUA_TFUNCTION: return enc_function(e, idx);
  case LUA_TUSERDATA: return enc_userdata(e, idx);
  case LUA_TLIGHTUSERDATA: return enc_fail(e, SL_EINVAL, "light userdata");
  default: return enc_fail(e, SL_EINVAL, lua_typename(L, lua_type(L, idx)));
  }
}

int sl_encode(lua_State *L, int idx, sl_buf *out, const char *root, char *err, size_t errlen) {
  size_t len0 = out->len;
  int top = lua_gettop(L), rc;
  Enc e;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {  /* fast path: no stack slots needed */
  case LUA_TNIL:
    rc = sl_buf_putc(out, T_NIL) ? SL_ENOMEM : 0;
    goto simple;
  case LUA_TBOOLEAN:
    rc = sl_buf_putc(out, lua_toboolean(L, idx) ? T_TRUE : T_FALSE) ? SL_ENOMEM : 0;
    goto simple;
  case LUA_TNUMBER:
    rc = put_number(out, L, idx);
    goto simple;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    rc = put_string(out, s, n);
    goto simple;
  }
  default: break;
  }
  if (!lua_checkstack(L, 8)) {
    rc = SL_ENOMEM;
    goto simple;
  }
  enc_init(&e, L, out);
  rc = enc_value(&e, idx);
  lua_settop(L, top);
  if (rc) {
    out->len = len0;
    enc_report(&e, root, 0, err, errlen);
  }
  return rc;
simple:
  if (rc) {
    out->len = len0;
    if (err && errlen) snprintf(err, errlen, "not enough memory");
  }
  return rc;
}

typedef struct BatchCtx {
  sl_batch_builder bb;
  const char *root;
  char *err;
  size_t errlen;
  int rc;
} BatchCtx;

/* Body of sl_encode_batch, run under lua_pcall so that a memory error
 * cannot leak the builder. stack: ctx array */
static int encode_batch_body(lua_State *L) {
  BatchCtx *c = lua_touserdata(L, 1);
  lua_Unsigned n = lua_rawlen(L, 2);
  Enc e;
  if (n > UINT32_MAX - 2) {
    c->rc = SL_EINVAL;
    snprintf(c->err, c->errlen, "%s has too many elements", c->root);
    return 0;
  }
  lua_checkstack(L, 8);
  if (sl_bb_reserve(&c->bb, (uint32_t)n) || sl_buf_reserve(&c->bb.bytes, (size_t)n * 4)) {
    c->rc = SL_ENOMEM;
    snprintf(c->err, c->errlen, "not enough memory");
    return 0;
  }
  enc_init(&e, L, &c->bb.bytes);                    /* stack: ctx array seen names */
  for (lua_Unsigned i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 2, (lua_Integer)i);      /* stack: ... v */
    if (t == LUA_TNUMBER || t == LUA_TSTRING) {     /* fast path: scalars need no bookkeeping */
      int rc;
      if (t == LUA_TNUMBER) {
        rc = put_number(e.b, L, -1);
      } else {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        rc = put_string(e.b, s, len);
      }
      lua_pop(L, 1);
      if (rc || sl_bb_end_event(&c->bb)) {
        c->rc = SL_ENOMEM;
        snprintf(c->err, c->errlen, "not enough memory");
        return 0;
      }
      continue;
    }
    seen_clear(&e);
    if (t == LUA_TNIL) {
      c->rc = SL_EINVAL;
      snprintf(c->err, c->errlen, "%s[" LUA_INTEGER_FMT "] is nil", c->root, (LUAI_UACINT)i);
      return 0;
    }
    if ((c->rc = enc_value(&e, lua_gettop(L))) != 0) {
      enc_report(&e, c->root, (lua_Integer)i, c->err, c->errlen);
      return 0;
    }
    if ((c->rc = sl_bb_end_event(&c->bb)) != 0) {
      snprintf(c->err, c->errlen, "not enough memory");
      return 0;
    }
    lua_pop(L, 1);
  }
  return 0;
}

int sl_encode_batch(lua_State *L, int idx, sl_batch *out, const char *root, char *err, size_t errlen) {
  BatchCtx c;
  char dummy[1];
  *out = SL_BATCH_EMPTY;
  if (!err || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (!root) root = "value";
  if (lua_type(L, idx) != LUA_TTABLE) {
    snprintf(err, errlen, "%s must be an array, got %s", root, luaL_typename(L, idx));
    return SL_EINVAL;
  }
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "not enough memory");
    return SL_ENOMEM;
  }
  sl_bb_init(&c.bb);
  c.root = root;
  c.err = err;
  c.errlen = errlen;
  c.rc = 0;
  lua_pushcfunction(L, encode_batch_body);          /* stack: body */
  lua_pushlightuserdata(L, &c);                     /* stack: body ctx */
  lua_pushvalue(L, idx);                            /* stack: body ctx array */
  int st = lua_pcall(L, 2, 0, 0);                  /* stack: | errobj */
  if (st != LUA_OK) {
    c.rc = st == LUA_ERRMEM ? SL_ENOMEM : SL_EINVAL;
    snprintf(err, errlen, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                : "not enough memory");
    lua_pop(L, 1);
  }
  if (c.rc == 0 && (c.rc = sl_bb_finish(&c.bb, out)) != 0)
    snprintf(err, errlen, "not enough memory");
  sl_bb_free(&c.bb);
  if (c.rc) *out = SL_BATCH_EMPTY;
  return c.rc;
}

/* }==================================================================== */


/* {====================================================================
** Decoder
** ===================================================================== */

typedef struct Dec {
  lua_State *L;
  const uint8_t *p, *end, *start;
  int refs;           /* stack slot: ref number -> object (nil until needed) */
  int hasrefs;
  lua_Integer nref;   /* refs[1..nref] belong to the value being decoded */
  int depth;
  char *err;
  size_t errlen;
} Dec;

static int dec_value(Dec *d);

static int dec_bad(Dec *d, const char *what) {
  if (d->err && d->errlen)
    snprintf(d->err, d->errlen, "malformed encoded value: %s (at byte %zu)", what,
             (size_t)(d->p - d->start));
  return SL_ECORRUPT;
}

static int get_varint(Dec *d, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; d->p < d->end; shift += 7) {
    uint8_t c = *d->p++;
    if (shift == 63 && c > 1) return dec_bad(d, "varint overflow");
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return dec_bad(d, "truncated");
}

static size_t left(const Dec *d) {
  return (size_t)(d->end - d->p);
}

/* Reads a count of items that take at least per bytes each: it cannot be
 * more than the bytes left after it allow. */
static int get_count(Dec *d, uint64_t *v, size_t per) {
  if (d->p < d->end && *d->p < 0x80) *v = *d->p++;
  else if (get_varint(d, v)) return SL_ECORRUPT;
  return *v > left(d) / per ? dec_bad(d, "length out of range") : 0;
}

/* Reads a length-prefixed byte string. */
static int get_bytes(Dec *d, const char **s, size_t *n) {
  uint64_t len;
  if (get_count(d, &len, 1)) return SL_ECORRUPT;
  *s = (const char *)d->p;
  *n = (size_t)len;
  d->p += len;
  return 0;
}

static void ref_add(Dec *d, int idx) {
  lua_State *L = d->L;
  if (!d->hasrefs) {
    lua_createtable(L, 16, 0);                      /* stack: refs */
    lua_replace(L, d->refs);
    d->hasrefs = 1;
  }
  lua_pushvalue(L, idx);                            /* stack: obj */
  lua_rawseti(L, d->refs, ++d->nref);
}

/* Pushes the ref with number k (0-based within this value). */
static int ref_get(Dec *d, uint64_t k) {
  if (k >= (uint64_t)d->nref) return dec_bad(d, "bad back-reference");
  lua_rawgeti(d->L, d->refs, 1 + (lua_Integer)k);
  return 0;
}

static int dec_enter(Dec *d) {
  if (++d->depth > SL_CODEC_MAX_DEPTH) {
    if (d->err && d->errlen)
      snprintf(d->err, d->errlen, "value nested deeper than %d levels", SL_CODEC_MAX_DEPTH);
    return SL_ECORRUPT;
  }
  if (!lua_checkstack(d->L, 8)) {
    if (d->err && d->errlen) snprintf(d->err, d->errlen, "not enough memory");
    return SL_ENOMEM;
  }
  return 0;
}

static int dec_table(Dec *d) {
  lua_State *L = d->L;
  uint64_t narr, nhash;
  int rc;
  if (get_count(d, &narr, 1) || get_count(d, &nhash, 2)) return SL_ECORRUPT;
  if (narr + 2 * nhash > left(d)) return dec_bad(d, "length out of range");
  if (narr > INT_MAX) return dec_bad(d, "length out of range");
  if ((rc = dec_enter(d)) != 0) return rc;
  /* the counts are hints: bounded by the input, capped below Lua's limits */
  lua_createtable(L, (int)(narr < (1u << 26) ? narr : (1u << 26)),
                  (int)(nhash < (1u << 24) ? nhash : (1u << 24)));  /* stack: t */
  int t = lua_gettop(L);
  ref_add(d, t);
  for (uint64_t i = 1; i <= narr; i++) {
    if ((rc = dec_value(d)) != 0) return rc;        /* stack: t v */
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (uint64_t i = 0; i < nhash; i++) {
    if ((rc = dec_value(d)) != 0) return rc;        /* stack: t k */
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
                             lua_tonumber(L, -1) != lua_tonumber(L, -1)))
      return dec_bad(d, "nil or NaN table key");
    if ((rc = dec_value(d)) != 0) return rc;        /* stack: t k v */
    lua_rawset(L, t);                               /* stack: t */
  }
  d->depth--;
  return 0;
}

typedef struct Reader {
  const char *p;
  size_t n;
} Reader;

static const char *bytes_reader(lua_State *L, void *ud, size_t *size) {
  Reader *r = ud;
  const char *p = r->p;
  (void)L;
  *size = r->n;
  r->p = NULL;
  r->n = 0;
  return *size ? p : NULL;
}

/* {--------------------------------------------------------------------
** Bytecode pre-check. lua_load trusts the counts in a binary chunk: it
** allocates (and for some vectors clears) as many items as a count says
** before reading them, and it recurses once per nested function without
** a limit. So before handing bytes to it, walk the chunk the way lundump
** reads it (Lua 5.4 layout, ldump.c) and check that every count fits in
** the bytes that are left, that the counts lundump takes on trust agree
** (upvalue names, line info, the closure's upvalues), and that functions
** nest at most BYTECODE_MAXNEST deep. The instructions themselves are not verified:
** the bytes come from our own encoder in this process.
** --------------------------------------------------------------------- */

#define BYTECODE_MAXNEST 256
#if LUA_VERSION_NUM != 504
#error "codec.c walks the Lua 5.4 bytecode layout (bytecode_ok)"
#endif

typedef struct Scan {
  const uint8_t *p, *end;
  size_t isize, nsize;  /* sizes of an instruction and of a number */
} Scan;

/* ldump's dumpSize: 7-bit groups, most significant first, 0x80 on the last. */
static int sc_size(Scan *s, uint64_t *v) {
  uint64_t x = 0;
  for (int i = 0; i < MAXVARINT; i++) {
    if (s->p == s->end) return -1;
    uint8_t b = *s->p++;
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static int sc_skip(Scan *s, uint64_t n) {
  if (n > (uint64_t)(s->end - s->p)) return -1;
  s->p += n;
  return 0;
}

/* A count of items of at least min bytes each. */
static int sc_count(Scan *s, uint64_t *n, size_t min) {
  return sc_size(s, n) || *n > (uint64_t)(s->end - s->p) / min ? -1 : 0;
}

static int sc_string(Scan *s) {
  uint64_t n;
  return sc_size(s, &n) || (n && sc_skip(s, n - 1)) ? -1 : 0;
}

/* Walks one function; *nups gets its number of upvalues. */
static int sc_function(Scan *s, int nest, uint64_t *nups) {
  uint64_t n, x, ncode;
  if (nest > BYTECODE_MAXNEST) return -1;
  /* source, linedefined, lastlinedefined, numparams, is_vararg, maxstack */
  if (sc_string(s) || sc_size(s, &x) || sc_size(s, &x) || sc_skip(s, 3)) return -1;
  if (sc_count(s, &ncode, s->isize) || sc_skip(s, ncode * s->isize)) return -1;  /* code */
  if (sc_count(s, &n, 1)) return -1;                                   /* constants */
  for (uint64_t i = 0; i < n; i++) {
    if (s->p == s->end) return -1;
    switch (*s->p++) {
    case 0x00: case 0x01: case 0x11: break;        /* nil, false, true */
    case 0x03:                                     /* integer */
      if (sc_skip(s, sizeof(lua_Integer))) return -1;
      break;
    case 0x13:                                     /* float */
      if (sc_skip(s, s->nsize)) return -1;
      break;
    case 0x04: case 0x14:                          /* short, long string */
      if (sc_string(s)) return -1;
      break;
    default: return -1;
    }
  }
  if (sc_count(s, nups, 3) || sc_skip(s, 3 * *nups)) return -1;       /* upvalues */
  if (sc_count(s, &n, 1)) return -1;                                   /* protos */
  for (uint64_t i = 0; i < n; i++)
    if (sc_function(s, nest + 1, &x)) return -1;
  if (sc_count(s, &n, 1) || (n && n != ncode) || sc_skip(s, n)) return -1;  /* lineinfo */
  if (sc_count(s, &n, 2)) return -1;                                   /* abslineinfo */
  for (uint64_t i = 0; i < n; i++)
    if (sc_size(s, &x) || sc_size(s, &x)) return -1;
  if (sc_count(s, &n, 3)) return -1;                                   /* locvars */
  for (uint64_t i = 0; i < n; i++)
    if (sc_string(s) || sc_size(s, &x) || sc_size(s, &x)) return -1;
  /* upvalue names: lundump 5.4.0-5.4.5 stores as many as the count says
   * into the upvalue vector, without comparing with its size */
  if (sc_count(s, &n, 1) || (n && n != *nups)) return -1;
  for (uint64_t i = 0; i < n; i++)
    if (sc_string(s)) return -1;
  return 0;
}

/* Whether the binary chunk p[0..n) passes the pre-check. Its header is
 * left to lua_load to verify, except for the sizes the walk needs. The
 * byte after the header is the closure's upvalue count, which lundump
 * does not compare with the function's own count (only asserts it). */
static int bytecode_ok(const char *p, size_t n) {
  const uint8_t *u = (const uint8_t *)p;
  size_t hdr = 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number);
  uint64_t nups;
  if (n < hdr + 1 || u[12] < 1 || u[12] > 8 || u[13] != sizeof(lua_Integer) ||
      u[14] != sizeof(lua_Number))
    return 0;
  Scan s = {u + hdr + 1, u + n, u[12], sizeof(lua_Number)};
  return sc_function(&s, 0, &nups) == 0 && s.p == s.end && nups == u[hdr];
}

/* }-------------------------------------------------------------------- */

/* Decodes upvalue i of the function at f: T_ENV, T_UPREF or a value. */
static int dec_upvalue(Dec *d, int f, int i) {
  lua_State *L = d->L;
  int rc;
  if (d->p < d->end && *d->p == T_ENV) {
    d->p++;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);  /* stack: _G */
  } else if (d->p < d->end && *d->p == T_UPREF) {
    uint64_t k, n;
    d->p++;
    if (get_varint(d, &k) || get_varint(d, &n) || ref_get(d, k)) return SL_ECORRUPT;
    int g = lua_gettop(L);                          /* stack: g */
    if (lua_type(L, g) != LUA_TFUNCTION || lua_iscfunction(L, g) || n < 1 || n > 255 ||
        !lua_getupvalue(L, g, (int)n))              /* stack: g gv */
      return dec_bad(d, "bad shared upvalue");
    lua_pop(L, 1);                                  /* stack: g */
    lua_upvaluejoin(L, f, i, g, (int)n);
    lua_pop(L, 1);
    return 0;
  } else if ((rc = dec_value(d)) != 0) {            /* stack: v */
    return rc;
  }
  lua_setupvalue(L, f, i);
  return 0;
}

static int dec_function(Dec *d) {
  lua_State *L = d->L;
  const char *code;
  size_t len;
  uint64_t nups;
  lua_Debug ar;
  int rc;
  if (get_bytes(d, &code, &len)) return SL_ECORRUPT;
  if ((rc = dec_enter(d)) != 0) return rc;
  if (!bytecode_ok(code, len)) return dec_bad(d, "bad function bytecode");
  Reader r = {code, len};
  rc = lua_load(L, bytes_reader, &r, "=(sluice)", "b");  /* stack: f | msg */
  if (rc != LUA_OK) {
    if (d->err && d->errlen)
      snprintf(d->err, d->errlen, "malformed encoded value: bad function (%s)",
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return rc == LUA_ERRMEM ? SL_ENOMEM : SL_ECORRUPT;
  }
  int f = lua_gettop(L);
  ref_add(d, f);
  if (get_count(d, &nups, 1)) return SL_ECORRUPT;
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  if (nups != ar.nups) return dec_bad(d, "upvalue count does not match the bytecode");
  for (int i = 1; i <= (int)nups; i++)
    if ((rc = dec_upvalue(d, f, i)) != 0) return rc;
  d->depth--;
  return 0;
}

static int pushmsg_fail(Dec *d, int status, const char *fmt, const char *a, const char *b) {
  if (d->err && d->errlen) snprintf(d->err, d->errlen, fmt, a, b);
  return status;
}

/* Pushes the module called name: the receiver's globals for "_G", else
 * package.loaded[name], else what require(name) returns. */
static int dec_module(Dec *d, const char *name, size_t n, const char *shown) {
  lua_State *L = d->L;
  if (n == 2 && memcmp(name, "_G", 2) == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);  /* stack: _G */
    return 0;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);   /* stack: loaded */
  if (lua_istable(L, -1)) {
    lua_pushlstring(L, name, n);
    if (lua_rawget(L, -2) != LUA_TNIL && lua_toboolean(L, -1)) {  /* stack: loaded m */
      lua_remove(L, -2);
      return 0;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);    /* stack: _G */
  lua_getfield(L, -1, "require");                         /* stack: _G require */
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return pushmsg_fail(d, SL_ENOENT, "cannot resolve module '%s'%s", shown,
                        " (no require function)");
  }
  lua_pushlstring(L, name, n);                            /* stack: require name */
  int st = lua_pcall(L, 1, 1, 0);                         /* stack: m | msg */
  if (st != LUA_OK) {
    char msg[200];
    snprintf(msg, sizeof msg, ": %s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return st == LUA_ERRMEM ? SL_ENOMEM
         : pushmsg_fail(d, SL_ENOENT, "cannot resolve module '%s'%s", shown, msg);
  }
  return 0;
}

/* Decodes T_MOD / T_FIELD: resolves the name in the receiving state. */
static int dec_named(Dec *d, int field) {
  lua_State *L = d->L;
  const char *mod, *key = NULL;
  size_t mlen, klen = 0;
  char mname[128], kname[128];
  int rc;
  if (get_bytes(d, &mod, &mlen) || (field && get_bytes(d, &key, &klen))) return SL_ECORRUPT;
  if (memchr(mod, '\0', mlen)) return dec_bad(d, "bad module name");
  snprintf(mname, sizeof mname, "%.*s", (int)(mlen < 120 ? mlen : 120), mod);
  if ((rc = dec_module(d, mod, mlen, mname)) != 0) return rc;    /* stack: m */
  if (!field) return 0;
  snprintf(kname, sizeof kname, "%.*s", (int)(klen < 120 ? klen : 120), key);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return pushmsg_fail(d, SL_ENOENT, "cannot resolve '%s.%s' (module is not a table)", mname, kname);
  }
  lua_pushlstring(L, key, klen);                           /* stack: m key */
  if (lua_rawget(L, -2) != LUA_TFUNCTION) {                /* stack: m fn */
    lua_pop(L, 2);
    return pushmsg_fail(d, SL_ENOENT, "cannot resolve '%s.%s' (no such function)", mname, kname);
  }
  lua_remove(L, -2);                                       /* stack: fn */
  return 0;
}

static int dec_handle(Dec *d) {
  uint64_t id, aux;
  if (d->p == d->end) return dec_bad(d, "truncated");
  int kind = *d->p++;
  if (kind <= 0 || kind >= SL_H_NKINDS) return dec_bad(d, "bad handle kind");
  if (get_varint(d, &id) || get_varint(d, &aux)) return SL_ECORRUPT;
  sl_handle_push(d->L, kind, id, aux);                     /* stack: h */
  ref_add(d, lua_gettop(d->L));
  return 0;
}

/* Decodes one value and pushes it; on failure the stack above the value's
 * place is left to the caller to clear. */
static int dec_value(Dec *d) {
  lua_State *L = d->L;
  if (d->p == d->end) return dec_bad(d, "truncated");
  int tag = *d->p++;
  if (tag >= T_FIXSTR) {
    size_t n = (size_t)(tag - T_FIXSTR);
    if (n > left(d)) return dec_bad(d, "truncated");
    lua_pushlstring(L, (const char *)d->p, n);
    d->p += n;
    return 0;
  }
  if (tag >= T_FIXINT) {
    lua_pushinteger(L, tag - T_FIXINT);
    return 0;
  }
  switch (tag) {
  case T_NIL: lua_pushnil(L); return 0;
  case T_FALSE: lua_pushboolean(L, 0); return 0;
  case T_TRUE: lua_pushboolean(L, 1); return 0;
  case T_INT: {
    uint64_t u;
    if (get_varint(d, &u)) return SL_ECORRUPT;
    lua_pushinteger(L, unzigzag(u));
    return 0;
  }
  case T_FLT: {
    uint64_t u = 0;
    double x;
    if (left(d) < 8) return dec_bad(d, "truncated");
    for (int k = 0; k < 8; k++) u |= (uint64_t)d->p[k] << (8 * k);
    d->p += 8;
    memcpy(&x, &u, sizeof x);
    lua_pushnumber(L, (lua_Number)x);
    return 0;
  }
  case T_STR: {
    const char *s;
    size_t n;
    if (get_bytes(d, &s, &n)) return SL_ECORRUPT;
    lua_pushlstring(L, s, n);
    return 0;
  }
  case T_TABLE: return dec_table(d);
  case T_FUNC: return dec_function(d);
  case T_REF: {
    uint64_t k;
    return get_varint(d, &k) ? SL_ECORRUPT : ref_get(d, k);
  }
  case T_MOD: return dec_named(d, 0);
  case T_FIELD: return dec_named(d, 1);
  case T_HANDLE: return dec_handle(d);
  default: {
    char what[32];
    d->p--;
    snprintf(what, sizeof what, "bad tag 0x%02x", (unsigned)tag);
    return dec_bad(d, what);
  }
  }
}

static void dec_init(Dec *d, lua_State *L, char *err, size_t errlen) {
  d->L = L;
  lua_pushnil(L);
  d->refs = lua_gettop(L);
  d->hasrefs = 0;
  d->nref = 0;
  d->depth = 0;
  d->err = err;
  d->errlen = errlen;
}

/* Decodes p[0..len) as exactly one value and pushes it. */
static int dec_one(Dec *d, const char *p, size_t len) {
  d->start = d->p = (const uint8_t *)p;
  d->end = d->p + len;
  d->nref = 0;  /* refs[] of the previous value are overwritten */
  d->depth = 0;
  int rc = dec_value(d);
  if (rc == 0 && d->p != d->end) rc = dec_bad(d, "trailing bytes");
  return rc;
}

int sl_decode(lua_State *L, const char *p, size_t len, char *err, size_t errlen) {
  int top = lua_gettop(L), rc;
  Dec d;
  if (!lua_checkstack(L, 8)) {
    if (err && errlen) snprintf(err, errlen, "not enough memory");
    return SL_ENOMEM;
  }
  dec_init(&d, L, err, errlen);                     /* stack: refs */
  if ((rc = dec_one(&d, p, len)) != 0) {
    lua_settop(L, top);
    return rc;
  }
  lua_replace(L, d.refs);                           /* stack: v */
  return 0;
}

int sl_decode_batch(lua_State *L, const sl_batch *b, char *err, size_t errlen) {
  int top = lua_gettop(L), rc;
  Dec d;
  if (!lua_checkstack(L, 8)) {
    if (err && errlen) snprintf(err, errlen, "not enough memory");
    return SL_ENOMEM;
  }
  lua_createtable(L, b->count < (1u << 26) ? (int)b->count : 0, 0);  /* stack: arr */
  dec_init(&d, L, err, errlen);                     /* stack: arr refs */
  enum { GROUP = 64 };
  const char *ps[GROUP];
  size_t lens[GROUP];
  for (uint32_t i = 0; i < b->count; i += GROUP) {
    uint32_t g = b->count - i < GROUP ? b->count - i : GROUP;
    sl_batch_events(b, i, g, ps, lens);
    for (uint32_t k = 0; k < g; k++) {
      const uint8_t *p = (const uint8_t *)ps[k];
      size_t len = lens[k];
      /* fast paths: short strings and small integers, checked exactly */
      if (len >= 1 && p[0] >= T_FIXSTR && (size_t)(p[0] - T_FIXSTR) == len - 1) {
        lua_pushlstring(L, (const char *)p + 1, len - 1);
      } else if (len == 1 && p[0] >= T_FIXINT && p[0] < T_FIXSTR) {
        lua_pushinteger(L, p[0] - T_FIXINT);
      } else if (len >= 2 && len <= 9 && p[0] == T_INT && !(p[len - 1] & 0x80)) {
        uint64_t u = 0;   /* a varint of at most 8 bytes ending exactly at len */
        size_t j = 1;
        for (; j < len && (p[j] & 0x80); j++) u |= (uint64_t)(p[j] & 0x7f) << (7 * (j - 1));
        if (j != len - 1) {
          if ((rc = dec_one(&d, ps[k], len)) != 0) {
            lua_settop(L, top);
            return rc;
          }
        } else {
          u |= (uint64_t)p[j] << (7 * (j - 1));
          lua_pushinteger(L, unzigzag(u));
        }
      } else if ((rc = dec_one(&d, ps[k], len)) != 0) {  /* stack: arr refs v */
        lua_settop(L, top);
        return rc;
      }
      lua_rawseti(L, top + 1, (lua_Integer)(i + k) + 1);
    }
  }
  lua_pop(L, 1);                                    /* stack: arr */
  return 0;
}

/* }==================================================================== */
