/* hash: a fast 64-bit hash of byte strings, used to partition encoded
 * events (the partition dispatcher's default hash) and keys. Equal bytes
 * give equal hashes on every platform (little-endian reads); the value is
 * not stable across sluice versions and not meant for security. */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H
#include <stddef.h>
#include <stdint.h>

/* Hashes len bytes at p (p may be NULL when len is 0). */
uint64_t sl_hash_bytes(const void *p, size_t len);

/* Maps a hash to a partition in 0..n-1 (n >= 1) by scaling its high 32
 * bits, which is faster than h % n and uses the best-mixed bits. */
static inline uint32_t sl_hash_partition(uint64_t h, uint32_t n) {
  return (uint32_t)(((h >> 32) * (uint64_t)n) >> 32);
}
#endif
