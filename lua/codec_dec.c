/* codec_dec: the decoder (see codec.c and codec.h); functions' bytecode
 * is pre-checked by bytecode.c before it reaches lua_load. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "codec.h"
#include "bytecode.h"
#include "codec_int.h"
#include "status.h"

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


/* Decodes upvalue i of the function at f: T_ENV, T_UPREF or a value. An
 * upvalue named _ENV is always sent as T_ENV (the encoder does so), so any
 * other form for it is refused: it would decode to a value that encoding
 * again turns into the receiver's globals. */
static int dec_upvalue(Dec *d, int f, int i) {
  lua_State *L = d->L;
  int rc;
  const char *name = lua_getupvalue(L, f, i);       /* stack: old */
  if (name) lua_pop(L, 1);
  int is_env = name && strcmp(name, "_ENV") == 0;
  if (is_env && (d->p >= d->end || *d->p != T_ENV)) return dec_bad(d, "bad function: _ENV is not the globals");
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
  if (!sl_bytecode_ok(code, len)) return dec_bad(d, "bad function bytecode");
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
  case T_FLT:
    if (left(d) < 8) return dec_bad(d, "truncated");
    lua_pushnumber(L, get_f64(d->p));
    d->p += 8;
    return 0;
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

/* Steps over one scalar of a flat array (flat_array); 0 when p does not
 * start one that ends by end. */
static const uint8_t *flat_scalar(const uint8_t *p, const uint8_t *end) {
  uint8_t tag = *p++;
  if (tag >= T_FIXSTR) return (size_t)(end - p) >= (size_t)(tag - T_FIXSTR) ? p + (tag - T_FIXSTR) : NULL;
  if (tag >= T_FIXINT || tag <= T_TRUE) return p;
  if (tag == T_FLT) return end - p >= 8 ? p + 8 : NULL;
  if (tag != T_INT) return NULL;
  for (int k = 0; k < MAXVARINT && p < end; k++) {
    uint8_t c = *p++;
    if (k == 9 && c > 1) return NULL;   /* past 64 bits */
    if (!(c & 0x80)) return p;
  }
  return NULL;
}

/* The common table event, a short array of scalars ({ts, i}, {word, 1}):
 * T_TABLE narr 0 and narr scalars, exactly len bytes. Pushes it and
 * returns 1; returns 0 (nothing pushed) for anything else, which the
 * general decoder then takes. No refs to keep: a value without tables
 * inside has none. */
static int flat_array(lua_State *L, const uint8_t *p, size_t len) {
  const uint8_t *end = p + len, *q = p + 3;
  if (len < 3 || p[0] != T_TABLE || p[1] >= 0x80 || p[2] != 0) return 0;
  int narr = p[1];
  for (int i = 0; i < narr; i++)
    if (q == end || (q = flat_scalar(q, end)) == NULL) return 0;
  if (q != end) return 0;
  lua_createtable(L, narr, 0);
  q = p + 3;
  for (int i = 1; i <= narr; i++) {
    uint8_t tag = *q++;
    if (tag >= T_FIXSTR) {
      size_t n = (size_t)(tag - T_FIXSTR);
      lua_pushlstring(L, (const char *)q, n);
      q += n;
    } else if (tag >= T_FIXINT) {
      lua_pushinteger(L, tag - T_FIXINT);
    } else if (tag == T_INT) {
      uint64_t u = 0;
      for (int shift = 0;; shift += 7) {
        uint8_t c = *q++;
        u |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) break;
      }
      lua_pushinteger(L, unzigzag(u));
    } else if (tag == T_FLT) {
      lua_pushnumber(L, get_f64(q));
      q += 8;
    } else if (tag == T_NIL) {
      continue;   /* a hole: nothing to set */
    } else {
      lua_pushboolean(L, tag == T_TRUE);
    }
    lua_rawseti(L, -2, i);
  }
  return 1;
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
      } else if (len >= 3 && p[0] == T_TABLE && flat_array(L, p, len)) {
        /* pushed */
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
