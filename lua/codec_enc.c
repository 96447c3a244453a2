/* codec_enc: the encoder (see codec.c and codec.h); its fast paths for
 * scalars and flat tables are in codec_flat.c. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "codec.h"
#include "codec_int.h"
#include "status.h"

/* Registry key of the per-state cache of function dumps (its address). */
static const char DUMPS_KEY = 'd';

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
    cd_names_get(L);                                   /* stack: index */
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
    cd_names_build(L);                                 /* stack: index */
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

static int encode(lua_State *L, int idx, int names, sl_buf *out, const char *root, char *err, size_t errlen) {
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
  if (names && lua_type(L, idx) == LUA_TTABLE && (rc = cd_enc_flat(L, idx, names, out)) != 0) {
    if (rc > 0) rc = 0;
    goto simple;
  }
  enc_init(&e, L, out);
  if (names) {
    lua_pushvalue(L, names);
    lua_replace(L, e.names);
    e.hasnames = 1;
  }
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

int sl_encode(lua_State *L, int idx, sl_buf *out, const char *root, char *err, size_t errlen) {
  return encode(L, idx, 0, out, root, err, errlen);
}

void sl_encode_names(lua_State *L) { cd_names_get(L); }

int sl_encode_named(lua_State *L, int idx, int names, sl_buf *out, const char *root, char *err, size_t errlen) {
  return encode(L, idx, lua_absindex(L, names), out, root, err, errlen);
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
    if (t == LUA_TTABLE) {
      if (!e.hasnames) {
        cd_names_get(L);                              /* stack: ... v index */
        lua_replace(L, e.names);
        e.hasnames = 1;
      }
      int rc = cd_enc_flat(L, lua_gettop(L), e.names, e.b);
      if (rc < 0 || (rc > 0 && sl_bb_end_event(&c->bb))) {
        c->rc = SL_ENOMEM;
        snprintf(c->err, c->errlen, "not enough memory");
        return 0;
      }
      if (rc > 0) {
        lua_pop(L, 1);
        continue;
      }
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
