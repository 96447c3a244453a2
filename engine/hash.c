/* hash: multiply-fold hashing over 16-byte blocks.
 *
 * The core step is fold(a, b): the full 128-bit product of a and b with its
 * two halves xored together, so every input bit reaches most output bits
 * in one multiplication. Each 16-byte block is folded into the running
 * state; the last 1..16 bytes are read as two (possibly overlapping) words,
 * so there is no byte-at-a-time loop, and the length, mixed in first and
 * last, tells apart inputs whose overlapping reads coincide. */
#include <string.h>
#include "hash.h"

#define K0 UINT64_C(0xd1a6e55e9b9b1325)
#define K1 UINT64_C(0xcf0c26ef4243ed53)
#define K2 UINT64_C(0x5e6a0a2edd70e34d)
#define K3 UINT64_C(0x0463513755ac0ecd)

#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 u128;
#endif

static uint64_t fold(uint64_t a, uint64_t b) {
#ifdef __SIZEOF_INT128__
  u128 r = (u128)a * b;
  return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
  uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
  uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
  uint64_t lo = (mid << 32) | (uint32_t)ll;
  uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
  return lo ^ hi;
#endif
}

/* Little-endian loads, so that a hash does not depend on the host. */
static uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static uint64_t load32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

uint64_t sl_hash_bytes(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t h = fold((uint64_t)len ^ K0, K1);
  size_t n = len;
  for (; n > 16; n -= 16, p += 16)
    h = fold(load64(p) ^ K2, load64(p + 8) ^ h);
  uint64_t a = 0, b = 0;
  if (n >= 8) {
    a = load64(p);
    b = load64(p + n - 8);
  } else if (n >= 4) {
    a = load32(p);
    b = load32(p + n - 4);
  } else if (n > 0) {
    a = (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
  }
  h = fold(a ^ K2, b ^ h ^ K3);
  return fold(h ^ K0, (uint64_t)len ^ K3);
}
