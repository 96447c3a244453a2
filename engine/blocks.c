/* blocks: a per-thread cache of the memory blocks that batches are built
 * in. A batch's bytes and offsets are built by one thread (the producer's
 * worker) and freed by another (the consumer's), once per batch; with the
 * C library's allocator each of those frees goes back to the arena of the
 * thread that allocated, under that arena's lock, and a new batch grows
 * its buffers from nothing again by doubling. Here the thread that frees
 * a batch keeps its blocks (up to CACHE_N of them, none larger than
 * CACHE_MAX bytes) and hands them to the next batch it builds; a flow's
 * workers both build and free batches, so blocks circulate without the
 * allocator. Under AddressSanitizer nothing is cached, so that the
 * sanitizer still sees each batch's own blocks. */
#include <stdlib.h>
#include "blocks.h"

#define CACHE_N 32
#define CACHE_MIN 256
#define CACHE_MAX (128 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define SL_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_BLOCKS 0
#endif
#endif
#ifndef SL_BLOCKS
#define SL_BLOCKS 1
#endif

typedef struct cache {
  void *p[CACHE_N];
  size_t cap[CACHE_N];
  int n;
} cache;

static _Thread_local cache tc;

void *sl_block_get(size_t need, size_t *cap) {
  if (SL_BLOCKS) {
    /* the most recently cached block that is big enough */
    for (int i = tc.n - 1; i >= 0 && i >= tc.n - 4; i--) {
      if (tc.cap[i] < need) continue;
      void *p = tc.p[i];
      *cap = tc.cap[i];
      tc.n--;
      tc.p[i] = tc.p[tc.n];
      tc.cap[i] = tc.cap[tc.n];
      return p;
    }
  }
  void *p = malloc(need);
  *cap = p ? need : 0;
  return p;
}

void sl_block_put(void *p, size_t cap) {
  if (!p) return;
  if (SL_BLOCKS && cap >= CACHE_MIN && cap <= CACHE_MAX && tc.n < CACHE_N) {
    tc.p[tc.n] = p;
    tc.cap[tc.n] = cap;
    tc.n++;
    return;
  }
  free(p);
}

void sl_block_clear(void) {
  while (tc.n > 0) {
    tc.n--;
    free(tc.p[tc.n]);
  }
}

int sl_block_count(void) { return tc.n; }
int sl_block_caching(void) { return SL_BLOCKS; }
