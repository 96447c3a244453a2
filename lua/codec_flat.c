/* codec_flat: the encoder's fast paths (see codec.c and codec.h): a
 * scalar, and a flat table -- scalar keys and values, the common event --
 * written byte for byte as the general encoder (codec_enc.c) writes them,
 * without its seen map and recursion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include "codec.h"
#include "hash.h"
#include "codec_int.h"
#include "status.h"

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

/* Appends the nil, boolean, number or string at idx (of type t); 1 for
 * any other type (nothing written), or SL_ENOMEM. */
static int put_scalar(sl_buf *b, lua_State *L, int t, int idx) {
  switch (t) {
  case LUA_TNIL: return sl_buf_putc(b, T_NIL) ? SL_ENOMEM : 0;
  case LUA_TBOOLEAN: return sl_buf_putc(b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE) ? SL_ENOMEM : 0;
  case LUA_TNUMBER: return put_number(b, L, idx);
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_string(b, s, n);
  }
  default: return 1;
  }
}

/* A flat table (every key and value nil, boolean, number or string; not
 * a module that crosses by name; names is the names index) is written as
 * enc_table writes it, byte for byte, without the seen map and the
 * recursion: the common event. Returns 1 when written, 0 when the table
 * is not flat (nothing written), or SL_ENOMEM. Needs 3 free stack slots.
 * One traversal with lua_next writes the array part (keys 1..#t in
 * order, as a sequence's come) and then the other pairs; a table whose
 * traversal is not like that (a hole in 1..#t, those keys out of order)
 * is written by flat_slow, which reads 1..#t by index (cd_enc_flat). */

/* Writes the key and value at -2 and -1 (a flat table's pair). */
static int put_pair(sl_buf *b, lua_State *L) {
  int rc = put_scalar(b, L, lua_type(L, -2), -2);
  return rc ? rc : put_scalar(b, L, lua_type(L, -1), -1);
}

static int flat_slow(lua_State *L, int idx, lua_Unsigned narr, sl_buf *b) {
  int rc;
  if (put_tag_varint(b, T_TABLE, narr) || sl_buf_putc(b, 0)) return SL_ENOMEM;
  size_t hpos = b->len - 1;
  for (lua_Unsigned i = 1; i <= narr; i++) {
    int t = lua_rawgeti(L, idx, (lua_Integer)i);
    rc = put_scalar(b, L, t, -1);
    lua_pop(L, 1);
    if (rc) return rc;
  }
  uint64_t nhash = 0;
  lua_pushnil(L);                                   /* stack: nil */
  while (lua_next(L, idx)) {                        /* stack: k v */
    int isint;
    lua_Integer k = lua_tointegerx(L, -2, &isint);
    if (isint && lua_isinteger(L, -2) && k >= 1 && (lua_Unsigned)k <= narr) {
      lua_pop(L, 1);
      continue;
    }
    if ((rc = put_pair(b, L)) != 0) {
      lua_pop(L, 2);
      return rc;
    }
    lua_pop(L, 1);                                  /* stack: k */
    nhash++;
  }
  return patch_varint(b, hpos, nhash) ? SL_ENOMEM : 0;
}

int cd_enc_flat(lua_State *L, int idx, int names, sl_buf *b) {
  size_t len0 = b->len;
  int rc;
  lua_pushvalue(L, idx);
  int named = lua_rawget(L, names) != LUA_TNIL;
  lua_pop(L, 1);
  if (named) return 0;
  lua_Unsigned narr = lua_rawlen(L, idx);
  if (put_tag_varint(b, T_TABLE, narr) || sl_buf_putc(b, 0)) return SL_ENOMEM;
  size_t hpos = b->len - 1;
  lua_Unsigned next = 1;                            /* the array key expected */
  uint64_t nhash = 0;
  lua_pushnil(L);                                   /* stack: nil */
  while (lua_next(L, idx)) {                        /* stack: k v */
    if (next <= narr) {
      if (!lua_isinteger(L, -2) || (lua_Unsigned)lua_tointeger(L, -2) != next) {
        lua_pop(L, 2);
        goto slow;
      }
      next++;
      rc = put_scalar(b, L, lua_type(L, -1), -1);
    } else {
      rc = put_pair(b, L);
      nhash++;
    }
    lua_pop(L, 1);                                  /* stack: k */
    if (rc) {
      lua_pop(L, 1);
      goto not_flat;
    }
  }
  if (next != narr + 1) goto slow;                  /* a hole in 1..#t */
  if (patch_varint(b, hpos, nhash)) return SL_ENOMEM;
  return 1;
slow:
  b->len = len0;
  if ((rc = flat_slow(L, idx, narr, b)) == 0) return 1;
not_flat:
  b->len = len0;
  return rc < 0 ? rc : 0;
}

/* The head of a table of n (< 128) array values and no pairs, as
 * enc_table writes it: T_TABLE, n, 0. */
static int put_array_head(sl_buf *b, unsigned n) {
  char *p = room(b, 3);
  if (!p) return SL_ENOMEM;
  p[0] = (char)T_TABLE;
  p[1] = (char)n;                                   /* one varint byte */
  p[2] = 0;                                         /* no pairs */
  b->len += 3;
  return 0;
}

int sl_encode_array_to(lua_State *L, int idx, const sl_modset *mods, sl_buf *b) {
  if (!mods || sl_modset_has(mods, lua_topointer(L, idx))) return 1;
  lua_Unsigned narr = lua_rawlen(L, idx);
  if (narr == 0 || narr >= 0x80) return 1;
  size_t len0 = b->len;
  if (put_array_head(b, (unsigned)narr)) return SL_ENOMEM;
  int rc = 0;
  for (lua_Unsigned i = 1; rc == 0 && i <= narr; i++) {
    int t = lua_rawgeti(L, idx, (lua_Integer)i);
    rc = t == LUA_TNIL ? 1 : put_scalar(b, L, t, -1);   /* a hole or a table inside: not ours */
    lua_pop(L, 1);
  }
  if (rc == 0) {                                    /* no key after narr */
    lua_pushinteger(L, (lua_Integer)narr);
    if (lua_next(L, idx)) {
      lua_pop(L, 2);
      rc = 1;
    }
  }
  if (rc) b->len = len0;
  return rc;
}

int sl_encode_scalar_to(lua_State *L, int idx, sl_buf *out) {
  return put_scalar(out, L, lua_type(L, idx), idx);
}

static int is_scalar(int t) {
  return t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING;
}

int sl_encode_pair_to(lua_State *L, int k, int v, sl_buf *out) {
  int tk = lua_type(L, k), tv = lua_type(L, v);
  if (!is_scalar(tk) || !is_scalar(tv)) return 1;
  size_t len0 = out->len;
  /* as enc_flat writes the table {k, v}: two array values, no pairs */
  int rc = put_array_head(out, 2);
  if (rc == 0) rc = put_scalar(out, L, tk, k);
  if (rc == 0) rc = put_scalar(out, L, tv, v);
  if (rc) out->len = len0;
  return rc;
}

int sl_encode_tuple_to(lua_State *L, const char *kinds, int x, int lit_up, sl_buf *out) {
  size_t k = strlen(kinds), len0 = out->len;
  int rc = k >= 1 && k < 0x80 ? put_array_head(out, (unsigned)k) : 1;
  for (size_t j = 0; rc == 0 && j < k; j++) {
    int idx = kinds[j] == 'p' ? x : lua_upvalueindex(lit_up++);
    rc = put_scalar(out, L, lua_type(L, idx), idx);
  }
  if (rc) out->len = len0;
  return rc;
}

/* A varint with no tag. */
static int put_varint(sl_buf *b, uint64_t v) {
  char *p = room(b, MAXVARINT);
  if (!p) return SL_ENOMEM;
  b->len += varint_put(p, v);
  return 0;
}

/* The integer i, as number_put writes it. */
static int put_int(sl_buf *b, lua_Integer i) {
  char *p = room(b, 1 + MAXVARINT);
  if (!p) return SL_ENOMEM;
  b->len += int_put(p, i);
  return 0;
}

int sl_encode_split_to(lua_State *L, int t, uint32_t n, sl_batch_builder *bb) {
  sl_buf *parts = calloc(n, sizeof *parts), key = SL_BUF_INIT;
  uint64_t *count = calloc(n, sizeof *count);
  int rc = parts && count ? 0 : SL_ENOMEM;
  t = lua_absindex(L, t);
  if (rc == 0) {
    lua_pushnil(L);
    while (lua_next(L, t)) {                        /* stack: k v */
      key.len = 0;
      rc = put_scalar(&key, L, lua_type(L, -2), -2);
      uint32_t p = 0;
      if (rc == 0) {
        p = n == 1 ? 0 : sl_hash_partition(sl_key_hash(key.data, key.len), n);
        rc = sl_buf_append(&parts[p], key.data, key.len) ? SL_ENOMEM : 0;
      }
      if (rc == 0) rc = put_scalar(&parts[p], L, lua_type(L, -1), -1);
      if (rc != 0) {
        lua_pop(L, 2);
        break;
      }
      count[p]++;
      lua_pop(L, 1);
    }
  }
  /* {p, part}: two array values and no pairs; part: no array values and
   * count[p] pairs (as the decoder reads a table) */
  for (uint32_t p = 0; rc == 0 && p < n; p++) {
    sl_buf *b = &bb->bytes;
    if (count[p] == 0) continue;
    if (put_tag_varint(b, T_TABLE, 2) || sl_buf_putc(b, 0) || put_int(b, (lua_Integer)p + 1) ||
        put_tag_varint(b, T_TABLE, 0) || put_varint(b, count[p]) || sl_buf_append(b, parts[p].data, parts[p].len) ||
        sl_bb_end_event(bb))
      rc = SL_ENOMEM;
  }
  for (uint32_t p = 0; parts && p < n; p++) sl_buf_free(&parts[p]);
  free(parts);
  free(count);
  sl_buf_free(&key);
  return rc;
}
