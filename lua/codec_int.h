/* codec_int: what the codec's files share (codec.c: handles and the
 * name index; codec_enc.c: the encoder; codec_flat.c: its fast paths for
 * scalars and flat tables; codec_dec.c: the decoder): the
 * tags of the wire format and the varint and number helpers, inline so
 * that the per-value paths stay as fast as in one file. */
#ifndef SLUICE_CODEC_INT_H
#define SLUICE_CODEC_INT_H
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <lua.h>
#include "buf.h"
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
#define PATHMAX 256

/* {====================================================================
** Varints and raw numbers
** ===================================================================== */

static inline size_t varint_put(char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (char)(uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (char)(uint8_t)v;
  return n;
}

static inline uint64_t zigzag(lua_Integer i) {
  uint64_t u = (uint64_t)(lua_Unsigned)i << 1;
  return i < 0 ? ~u : u;
}

static inline lua_Integer unzigzag(uint64_t u) {
  return (lua_Integer)(lua_Unsigned)((u & 1) ? ~(u >> 1) : (u >> 1));
}

/* The double of 8 little-endian bytes at p (T_FLT's payload). */
static inline lua_Number get_f64(const uint8_t *p) {
  uint64_t u = 0;
  double x;
  for (int k = 0; k < 8; k++) u |= (uint64_t)p[k] << (8 * k);
  memcpy(&x, &u, sizeof x);
  return (lua_Number)x;
}

/* Room for n more bytes at the end of b, or NULL. */
static inline char *room(sl_buf *b, size_t n) {
  if (b->cap - b->len < n && sl_buf_reserve(b, n)) return NULL;
  return b->data + b->len;
}

/* Writes v as a varint at b->data[at], where one byte was reserved,
 * moving the bytes after it when v needs more than one. */
static inline int patch_varint(sl_buf *b, size_t at, uint64_t v) {
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

static inline int put_tag_varint(sl_buf *b, int tag, uint64_t v) {
  char *p = room(b, 1 + MAXVARINT);
  if (!p) return SL_ENOMEM;
  p[0] = (char)tag;
  b->len += 1 + varint_put(p + 1, v);
  return 0;
}

/* Writes string s as its encoding at p (room for 1 + MAXVARINT + n
 * bytes); returns the bytes written. */
static inline size_t string_put(char *p, const char *s, size_t n) {
  size_t h = 1;
  if (n < 128) *p = (char)(T_FIXSTR + n);
  else {
    *p = (char)T_STR;
    h += varint_put(p + 1, n);
  }
  memcpy(p + h, s, n);
  return h + n;
}

static inline int put_string(sl_buf *b, const char *s, size_t n) {
  char *p = room(b, 1 + MAXVARINT + n);
  if (!p) return SL_ENOMEM;
  b->len += string_put(p, s, n);
  return 0;
}

/* Writes the integer i at p (room for 1 + MAXVARINT bytes); returns the
 * bytes written. */
static inline size_t int_put(char *p, lua_Integer i) {
  if ((lua_Unsigned)i < 64) {
    *p = (char)(T_FIXINT + (int)i);
    return 1;
  }
  *p = (char)T_INT;
  return 1 + varint_put(p + 1, zigzag(i));
}

/* Writes the number at idx, keeping its subtype, at p (room for
 * 1 + MAXVARINT bytes); returns the bytes written. */
static inline size_t number_put(char *p, lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return int_put(p, lua_tointeger(L, idx));
  double d = (double)lua_tonumber(L, idx);
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  *p = (char)T_FLT;
  for (int k = 0; k < 8; k++) p[1 + k] = (char)(uint8_t)(u >> (8 * k));
  return 9;
}

static inline int put_number(sl_buf *b, lua_State *L, int idx) {
  char *p = room(b, 1 + MAXVARINT);
  if (!p) return SL_ENOMEM;
  b->len += number_put(p, L, idx);
  return 0;
}


/* }==================================================================== */

/* codec.c: the name index (see there) */
void cd_names_get(lua_State *L);
void cd_names_build(lua_State *L);
/* codec_flat.c: writes the table at idx if it is flat (see there): 1
 * when written, 0 when not (nothing written), or SL_ENOMEM. */
int cd_enc_flat(lua_State *L, int idx, int names, sl_buf *b);
#endif
