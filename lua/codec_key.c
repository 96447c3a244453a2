/* codec_key: reading an encoded event from its bytes. One field: a
 * partition keyed by {index = i} or {field = name} hashes the encoding of
 * the event's field; when that field is a scalar, its bytes inside the
 * event's encoding are exactly its own encoding, so the key can be hashed
 * without decoding the event into a Lua state. Anything else (a table or
 * function key, a back-reference, bytes that do not parse) is left to the
 * caller, which decodes. And a combining layer's partial {p, part} whose
 * part holds only pairs of scalars, merged pair by pair without a table
 * of the part (sl_encoded_partial, sl_push_scalar). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"
#include "codec_int.h"
#include "hash.h"

typedef struct Rd {
  const uint8_t *p, *end;
} Rd;

static int rd_varint(Rd *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    uint8_t c = *r->p++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static int rd_skip(Rd *r, uint64_t n) {
  if (n > (uint64_t)(r->end - r->p)) return -1;
  r->p += n;
  return 0;
}

static int rd_bytes(Rd *r) {
  uint64_t n;
  return rd_varint(r, &n) || rd_skip(r, n) ? -1 : 0;
}

/* Steps over one encoded value; -1 when the bytes do not parse. */
static int skip_value(Rd *r, int depth) {
  uint64_t n, m;
  if (r->p == r->end || depth > SL_CODEC_MAX_DEPTH) return -1;
  uint8_t tag = *r->p++;
  if (tag >= T_FIXSTR) return rd_skip(r, (uint64_t)(tag - T_FIXSTR));
  if (tag >= T_FIXINT) return 0;
  switch (tag) {
  case T_NIL: case T_FALSE: case T_TRUE: return 0;
  case T_INT: case T_REF: return rd_varint(r, &n);
  case T_FLT: return rd_skip(r, 8);
  case T_STR: case T_MOD: return rd_bytes(r);
  case T_FIELD: return rd_bytes(r) || rd_bytes(r) ? -1 : 0;
  case T_HANDLE: return rd_skip(r, 1) || rd_varint(r, &n) || rd_varint(r, &m) ? -1 : 0;
  case T_TABLE:
    if (rd_varint(r, &n) || rd_varint(r, &m) || m > UINT64_MAX / 2) return -1;
    for (uint64_t i = 0; i < n + 2 * m; i++)
      if (skip_value(r, depth + 1)) return -1;
    return 0;
  case T_FUNC:
    if (rd_bytes(r) || rd_varint(r, &n)) return -1;     /* bytecode, upvalue count */
    for (uint64_t i = 0; i < n; i++) {
      if (r->p == r->end) return -1;
      if (*r->p == T_ENV) {
        r->p++;
      } else if (*r->p == T_UPREF) {
        r->p++;
        if (rd_varint(r, &m) || rd_varint(r, &m)) return -1;
      } else if (skip_value(r, depth + 1)) {
        return -1;
      }
    }
    return 0;
  default: return -1;
  }
}

/* Whether the value starting at p is a scalar, whose bytes are its own
 * encoding wherever it stands. */
static int scalar_at(const uint8_t *p) { return *p >= T_FIXINT || *p <= T_STR; }

static const char NIL_ENCODED[1] = {(char)T_NIL};

/* The key is nil: its encoding. */
static int nil_key(const char **vp, size_t *vlen) {
  *vp = NIL_ENCODED;
  *vlen = 1;
  return 1;
}

int sl_encoded_field(const char *bytes, size_t len, lua_Integer index, const char *field, size_t flen,
                     const char **vp, size_t *vlen) {
  Rd r = {(const uint8_t *)bytes, (const uint8_t *)bytes + len};
  uint64_t narr, nhash;
  if (len == 0 || *r.p == T_MOD || *r.p == T_FIELD) return -1;   /* a module may be a table */
  if (*r.p != T_TABLE) return nil_key(vp, vlen);   /* not a table: the key is nil */
  r.p++;
  if (rd_varint(&r, &narr) || rd_varint(&r, &nhash)) return -1;
  /* what a key reads as, encoded: field's string, or the integer index */
  char want[1 + MAXVARINT + 128];
  size_t wlen;
  if (field) {
    if (flen >= 128) return -1;
    wlen = string_put(want, field, flen);
  } else {
    if (index >= 1 && (uint64_t)index <= narr) {    /* in the array part */
      for (lua_Integer i = 1; i < index; i++)
        if (skip_value(&r, 1)) return -1;
      const uint8_t *v = r.p;
      if (v == r.end || !scalar_at(v) || skip_value(&r, 1)) return -1;
      *vp = (const char *)v;
      *vlen = (size_t)(r.p - v);
      return 1;
    }
    if (index >= 0 && index < 64) {
      want[0] = (char)(T_FIXINT + (int)index);
      wlen = 1;
    } else {
      want[0] = (char)T_INT;
      wlen = 1 + varint_put(want + 1, zigzag(index));
    }
  }
  for (uint64_t i = 0; i < narr; i++)
    if (skip_value(&r, 1)) return -1;
  for (uint64_t i = 0; i < nhash; i++) {
    const uint8_t *k = r.p;
    if (skip_value(&r, 1)) return -1;
    int match = (size_t)(r.p - k) == wlen && memcmp(k, want, wlen) == 0;
    const uint8_t *v = r.p;
    if (skip_value(&r, 1)) return -1;
    if (match) {
      if (!scalar_at(v)) return -1;
      *vp = (const char *)v;
      *vlen = (size_t)(r.p - v);
      return 1;
    }
  }
  return nil_key(vp, vlen);
}

/* {====================================================================
** Canonical encodings: equal tables, equal bytes
** =====================================================================
** A table's encoding lists its pairs in the order lua_next gives them,
** which follows how the table was built (and, for string keys, the
** string hashes of the state that built it): two equal tables may encode
** differently. Their canonical encoding is the same: the values of keys
** 1..m (m the last of an unbroken run from 1) as the array, then every
** other pair sorted by the canonical bytes of its key (then of its
** value), each key and value canonical, and a float with an integer
** value written as that integer (as a Lua table keeps 1.0 as 1). Strings,
** modules and handles keep their bytes. A value holding a back-reference
** (the same table twice) or a function has none: a back-reference is
** numbered in the order the encoder visited the fields, which sorting
** would change, so two different tables could read alike; such a value
** is compared by its own bytes, which decode to it alone. Canonical
** bytes are compared and hashed, never decoded. */

/* The integer a float holds, when it holds one (1.0, -0.0; not 2^63). */
static int float_int(const uint8_t *p, lua_Integer *i) {
  lua_Number d = get_f64(p);
  /* [-2^63, 2^63): the doubles that convert to a lua_Integer */
  if (d != floor(d) || !(d >= -0x1p63 && d < 0x1p63)) return 0;
  *i = (lua_Integer)d;
  return 1;
}

/* Whether the value at p (a whole encoding: 1..len) is its own canonical
 * encoding: any value but a table or a float with an integer value, and
 * a table with only an array part of such values, none nil (the
 * common tuple event {word, 1}). */
static int canonical_as_is(const uint8_t *p, size_t len) {
  lua_Integer i;
  if (*p == T_FLT) return len != 9 || !float_int(p + 1, &i);
  if (*p != T_TABLE) return 1;
  Rd r = {p + 1, p + len};
  uint64_t narr, nhash;
  if (rd_varint(&r, &narr) || rd_varint(&r, &nhash) || nhash != 0) return 0;
  const uint8_t *q = r.p, *end = r.end;
  for (uint64_t k = 0; k < narr; k++) {
    if (q == end) return 0;
    uint8_t t = *q;
    if (t >= T_FIXSTR) {
      q += 1 + (t - T_FIXSTR);
    } else if (t >= T_FIXINT || t == T_TRUE || t == T_FALSE) {
      q++;
    } else if (t == T_INT) {
      for (q++; q < end && (*q & 0x80); q++) {}
      q++;
    } else if (t == T_FLT) {
      if (end - q < 9 || float_int(q + 1, &i)) return 0;
      q += 9;
    } else {   /* nil (a hole), a table; else a long string, a function... */
      if (t == T_NIL || t == T_TABLE) return 0;
      r.p = q;
      if (skip_value(&r, 1)) return 0;
      q = r.p;
    }
    if (q > end) return 0;
  }
  return q == end;
}

typedef struct {
  size_t k, v, end;        /* the key's and value's canonical bytes: arena[k..v), [v..end) */
  const uint8_t *base;     /* the arena, once written */
} centry;

static int centry_cmp(const void *a, const void *b) {
  const centry *x = a, *y = b;
  size_t xk = x->v - x->k, yk = y->v - y->k;
  int c = memcmp(x->base + x->k, y->base + y->k, xk < yk ? xk : yk);
  if (c || xk != yk) return c ? c : (xk < yk ? -1 : 1);
  size_t xv = x->end - x->v, yv = y->end - y->v;   /* equal keys: two tables equal as keys */
  c = memcmp(x->base + x->v, y->base + y->v, xv < yv ? xv : yv);
  return c ? c : (xv < yv ? -1 : xv > yv);
}

static int put_int(sl_buf *out, lua_Integer i) {
  char *p = room(out, 1 + MAXVARINT);
  if (!p) return -1;
  out->len += int_put(p, i);
  return 0;
}

static int canon_value(Rd *r, sl_buf *a, int depth);

/* Appends the canonical encoding of the table whose tag r has just read
 * to the arena a: its entries' canonical bytes first, then the table's
 * own, which are then moved down to where the entries began. */
static int canon_table(Rd *r, sl_buf *a, int depth) {
  uint64_t narr, nhash;
  if (rd_varint(r, &narr) || rd_varint(r, &nhash)) return -1;
  size_t left = (size_t)(r->end - r->p);   /* each value takes a byte at least */
  if (narr > left || nhash > left / 2) return -1;
  size_t cap = (size_t)(narr + nhash), n = 0, m = (size_t)narr, at = a->len;
  centry few[16], *es = cap <= 16 ? few : malloc(cap * sizeof *es);
  int rc = es ? 0 : -1;
  for (uint64_t i = 1; rc == 0 && i <= narr; i++) {
    if (r->p < r->end && *r->p == T_NIL) {   /* a hole: the array ends before it */
      r->p++;
      if (m == narr) m = (size_t)i - 1;
      continue;
    }
    centry *e = &es[n++];
    e->k = a->len;
    rc = put_int(a, (lua_Integer)i);
    e->v = a->len;
    if (rc == 0) rc = canon_value(r, a, depth + 1);
    e->end = a->len;
  }
  for (uint64_t i = 0; rc == 0 && i < nhash; i++) {
    centry *e = &es[n++];
    e->k = a->len;
    rc = canon_value(r, a, depth + 1);
    e->v = a->len;
    if (rc == 0) rc = canon_value(r, a, depth + 1);
    e->end = a->len;
  }
  size_t own = a->len;
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) es[i].base = (const uint8_t *)a->data;
    if (n - m > 16) {
      qsort(es + m, n - m, sizeof *es, centry_cmp);
    } else {   /* a few pairs (most tables): by insertion */
      for (size_t i = m + 1; i < n; i++) {
        centry e = es[i];
        size_t j = i;
        for (; j > m && centry_cmp(&es[j - 1], &e) > 0; j--) es[j] = es[j - 1];
        es[j] = e;
      }
    }
    char *p = put_tag_varint(a, T_TABLE, m) ? NULL : room(a, MAXVARINT);
    if (p) a->len += varint_put(p, n - m);
    else rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const centry *e = &es[i];
    size_t from = i < m ? e->v : e->k;   /* the array's values, then key and value */
    if (!room(a, e->end - from)) rc = -1;
    else {
      memcpy(a->data + a->len, a->data + from, e->end - from);
      a->len += e->end - from;
    }
  }
  if (rc == 0) {
    memmove(a->data + at, a->data + own, a->len - own);
    a->len = at + (a->len - own);
  }
  if (es != few) free(es);
  return rc;
}

/* Appends the canonical encoding of the value at r to the arena a. */
static int canon_value(Rd *r, sl_buf *a, int depth) {
  if (r->p == r->end || depth > SL_CODEC_MAX_DEPTH) return -1;
  const uint8_t *v = r->p;
  lua_Integer i;
  if (*v >= T_FIXINT) {   /* a small integer or a short string: its bytes */
    size_t n = *v >= T_FIXSTR ? 1 + (size_t)(*v - T_FIXSTR) : 1;
    char *p = n <= (size_t)(r->end - v) ? room(a, n) : NULL;
    if (!p) return -1;
    memcpy(p, v, n);
    a->len += n;
    r->p += n;
    return 0;
  }
  if (*v == T_TABLE) {
    r->p++;
    return canon_table(r, a, depth);
  }
  if (*v == T_REF || *v == T_FUNC) return -1;   /* (an upvalue may be a back-reference) */
  if (skip_value(r, depth)) return -1;
  if (*v == T_FLT && float_int(v + 1, &i)) return put_int(a, i);
  return sl_buf_append(a, v, (size_t)(r->p - v)) ? -1 : 0;
}

/* Each thread's arena, kept between calls (given back past 1 MiB, and
 * by sl_key_canon_release when a worker ends). */
static _Thread_local sl_buf arena;

static void arena_done(void) {
  if (arena.cap > ((size_t)1 << 20)) sl_buf_free(&arena);
}

void sl_key_canon_release(void) { sl_buf_free(&arena); }

/* The canonical bytes of a value that is not canonical as it is, in the
 * thread's arena (until arena_done): 0, or -1 (the value has none, or
 * memory ran out). The value is at depth 0: the encoder's deepest
 * nesting is within reach, as it is for skip_value. */
static int canon_in_arena(const char *bytes, size_t len) {
  Rd r = {(const uint8_t *)bytes, (const uint8_t *)bytes + len};
  arena.len = 0;
  return canon_value(&r, &arena, 0) || r.p != r.end ? -1 : 0;
}

int sl_key_canon(const char *bytes, size_t len, sl_buf *out) {
  if (len == 0 || canonical_as_is((const uint8_t *)bytes, len)) return 0;
  int rc = canon_in_arena(bytes, len);
  if (rc == 0) {
    out->len = 0;
    rc = sl_buf_append(out, arena.data, arena.len) ? -1 : 1;
  }
  arena_done();
  return rc;
}

uint64_t sl_key_hash(const char *bytes, size_t len) {
  if (len == 0 || canonical_as_is((const uint8_t *)bytes, len)) return sl_hash_bytes(bytes, len);
  uint64_t h = canon_in_arena(bytes, len) == 0 ? sl_hash_bytes(arena.data, arena.len) : sl_hash_bytes(bytes, len);
  arena_done();
  return h;
}

/* }==================================================================== */

int64_t sl_encoded_partial(const char *bytes, size_t len, const char **pairs) {
  Rd r = {(const uint8_t *)bytes, (const uint8_t *)bytes + len};
  uint64_t narr, nhash;
  if (len < 3 || *r.p++ != T_TABLE || rd_varint(&r, &narr) || rd_varint(&r, &nhash) || narr != 2 || nhash != 0)
    return -1;
  if (r.p == r.end || !scalar_at(r.p) || skip_value(&r, 1)) return -1;   /* p */
  if (r.p == r.end || *r.p++ != T_TABLE || rd_varint(&r, &narr) || rd_varint(&r, &nhash) || narr != 0 ||
      nhash > (uint64_t)(r.end - r.p) / 2)
    return -1;
  const uint8_t *first = r.p;
  for (uint64_t i = 0; i < 2 * nhash; i++)
    if (r.p == r.end || !scalar_at(r.p) || *r.p == T_NIL || skip_value(&r, 1)) return -1;
  if (r.p != r.end) return -1;
  *pairs = (const char *)first;
  return (int64_t)nhash;
}

const char *sl_push_scalar(lua_State *L, const char *at) {
  const uint8_t *p = (const uint8_t *)at;
  uint8_t tag = *p++;
  uint64_t n = 0;
  if (tag >= T_FIXSTR) {
    lua_pushlstring(L, (const char *)p, (size_t)(tag - T_FIXSTR));
    return (const char *)p + (tag - T_FIXSTR);
  }
  if (tag >= T_FIXINT) {
    lua_pushinteger(L, tag - T_FIXINT);
    return (const char *)p;
  }
  switch (tag) {
  case T_FALSE: case T_TRUE:
    lua_pushboolean(L, tag == T_TRUE);
    return (const char *)p;
  case T_FLT:
    lua_pushnumber(L, get_f64(p));
    return (const char *)p + 8;
  default: break;   /* T_INT, T_STR */
  }
  for (int shift = 0;; shift += 7) {
    uint8_t c = *p++;
    n |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) break;
  }
  if (tag == T_INT) {
    lua_pushinteger(L, unzigzag(n));
    return (const char *)p;
  }
  lua_pushlstring(L, (const char *)p, (size_t)n);
  return (const char *)p + n;
}

/* The integer encoded in bytes[0..len): 0, or -1 when they are not
 * exactly an integer. */
static int encoded_int(const char *bytes, size_t len, lua_Integer *out) {
  Rd r = {(const uint8_t *)bytes, (const uint8_t *)bytes + len};
  uint64_t u;
  if (len == 1 && r.p[0] >= T_FIXINT && r.p[0] < T_FIXSTR) {
    *out = r.p[0] - T_FIXINT;
    return 0;
  }
  if (len < 2 || *r.p++ != T_INT || rd_varint(&r, &u) || r.p != r.end) return -1;
  *out = unzigzag(u);
  return 0;
}

int sl_encoded_int_field(const char *bytes, size_t len, lua_Integer index, const char *field, size_t flen,
                         lua_Integer *out) {
  const uint8_t *u = (const uint8_t *)bytes;
  if (!field && index == 1 && len >= 4 && u[0] == T_TABLE && u[1] >= 1 && u[1] < 0x80 && u[2] == 0) {
    /* the common event {ts, ...}: an array part (one-byte count) and no
     * pairs, its first value an integer */
    if (u[3] >= T_FIXINT && u[3] < T_FIXSTR) {
      *out = u[3] - T_FIXINT;
      return 0;
    }
    if (u[3] == T_INT) {
      Rd r = {u + 4, u + len};
      uint64_t z;
      if (rd_varint(&r, &z)) return -1;
      *out = unzigzag(z);
      return 0;
    }
  }
  const char *v;
  size_t vlen;
  if (sl_encoded_field(bytes, len, index, field, flen, &v, &vlen) != 1) return -1;
  return encoded_int(v, vlen, out);
}
