/* Unit tests of the per-thread block cache (engine/blocks.c) and of the
 * batches built in its blocks (engine/batch.c): what is kept and what is
 * freed, the most recent fitting block first, the bounds, a batch built
 * on one thread and freed on another, and events intact across reuse.
 * Under AddressSanitizer nothing is cached (sl_block_caching() is 0):
 * the expected values say so. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "batch.h"
#include "blocks.h"
#include "check.h"

static void test_get_from_empty_cache_mallocs(void) {
  sl_block_clear();
  size_t cap = 0;
  char *p = sl_block_get(1000, &cap);
  CHECK(p != NULL);
  CHECK_INT(cap, 1000);
  memset(p, 1, cap);
  sl_block_put(p, cap);
  CHECK_INT(sl_block_count(), sl_block_caching() ? 1 : 0);
  sl_block_clear();
  CHECK_INT(sl_block_count(), 0);
}

static void test_put_then_get_returns_the_block(void) {
  sl_block_clear();
  size_t c1, c2, c3;
  char *a = sl_block_get(4096, &c1);
  char *b = sl_block_get(8192, &c2);
  sl_block_put(a, c1);
  sl_block_put(b, c2);
  /* the most recent block that fits: b for 100 bytes, then a */
  char *x = sl_block_get(100, &c3);
  if (sl_block_caching()) {
    CHECK(x == b);
    CHECK_INT(c3, 8192);
  } else {
    CHECK_INT(c3, 100);
  }
  /* a needs 4096 at most: a request for 5000 skips it */
  size_t c4;
  char *y = sl_block_get(5000, &c4);
  CHECK_INT(c4, 5000);
  CHECK_INT(sl_block_count(), sl_block_caching() ? 1 : 0);
  size_t c5;
  char *z = sl_block_get(4096, &c5);
  if (sl_block_caching()) CHECK(z == a);
  CHECK_INT(c5, 4096);
  CHECK_INT(sl_block_count(), 0);
  sl_block_put(x, c3);
  sl_block_put(y, c4);
  sl_block_put(z, c5);
  sl_block_clear();
}

static void test_bounds(void) {
  sl_block_clear();
  size_t c;
  /* too small and too large blocks are freed, not kept */
  sl_block_put(sl_block_get(100, &c), c);
  CHECK_INT(sl_block_count(), 0);
  sl_block_put(sl_block_get(1 << 20, &c), c);
  CHECK_INT(sl_block_count(), 0);
  sl_block_put(NULL, 4096);
  CHECK_INT(sl_block_count(), 0);
  /* at most 32 kept */
  char *ps[40];
  for (int i = 0; i < 40; i++) ps[i] = sl_block_get(1024, &c);
  for (int i = 0; i < 40; i++) sl_block_put(ps[i], 1024);
  CHECK_INT(sl_block_count(), sl_block_caching() ? 32 : 0);
  sl_block_clear();
  CHECK_INT(sl_block_count(), 0);
}

/* A batch of n events "e<i>" (i from base), each padded to a length
 * that varies with i. */
static sl_batch build(int n, int base) {
  sl_batch_builder bb;
  sl_batch out;
  sl_bb_init(&bb);
  for (int i = 0; i < n; i++) {
    char ev[64];
    int len = snprintf(ev, sizeof ev, "e%d", base + i);
    while (len < 4 + (base + i) % 37) ev[len++] = '.';
    CHECK_INT(sl_bb_add(&bb, ev, (size_t)len), 0);
  }
  CHECK_INT(sl_bb_finish(&bb, &out), 0);
  sl_bb_free(&bb);
  return out;
}

static int events_ok(const sl_batch *b, int n, int base) {
  if ((int)b->count != n) return 0;
  for (int i = 0; i < n; i++) {
    char ev[64];
    int len = snprintf(ev, sizeof ev, "e%d", base + i);
    while (len < 4 + (base + i) % 37) ev[len++] = '.';
    size_t got;
    const char *p = sl_batch_event(b, (uint32_t)i, &got);
    if (got != (size_t)len || memcmp(p, ev, got) != 0) return 0;
  }
  return 1;
}

static void test_batches_reuse_blocks_and_keep_events(void) {
  sl_block_clear();
  /* a builder that grows past its first blocks (10000 events) */
  sl_batch big = build(10000, 0);
  CHECK(events_ok(&big, 10000, 0));
  sl_batch_release(&big);
  for (int round = 0; round < 50; round++) {
    sl_batch b = build(1 + round * 7, round * 1000);
    sl_batch s = sl_batch_slice(&b, 0, b.count);
    sl_batch_release(&b);   /* the slice still holds the store */
    CHECK(events_ok(&s, 1 + round * 7, round * 1000));
    sl_batch_release(&s);
  }
  /* the released stores' blocks are kept for the next batch: its bytes
   * and offsets, two blocks going round (the bytes of the batch of 10000
   * events were too big to keep) */
  CHECK_INT(sl_block_count(), sl_block_caching() ? 2 : 0);
  sl_block_clear();
}

typedef struct handoff {
  sl_batch b[8];
  int kept;
} handoff;

/* Releases the batches it is given and builds new ones in the blocks. */
static void *consumer(void *arg) {
  handoff *h = arg;
  for (int i = 0; i < 8; i++) {
    CHECK(events_ok(&h->b[i], 100, i * 100));
    sl_batch_release(&h->b[i]);
  }
  h->kept = sl_block_count();
  for (int i = 0; i < 8; i++) {
    h->b[i] = build(100, 5000 + i * 100);
  }
  sl_block_clear();
  return NULL;
}

static void test_batch_built_on_one_thread_freed_on_another(void) {
  sl_block_clear();
  handoff h;
  for (int i = 0; i < 8; i++) h.b[i] = build(100, i * 100);
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, consumer, &h), 0);
  pthread_join(t, NULL);
  /* the consumer kept the 16 blocks of the 8 batches it released */
  CHECK_INT(h.kept, sl_block_caching() ? 16 : 0);
  for (int i = 0; i < 8; i++) {
    CHECK(events_ok(&h.b[i], 100, 5000 + i * 100));
    sl_batch_release(&h.b[i]);
  }
  CHECK_INT(sl_block_count(), sl_block_caching() ? 16 : 0);
  sl_block_clear();
}

int main(void) {
  RUN(test_get_from_empty_cache_mallocs);
  RUN(test_put_then_get_returns_the_block);
  RUN(test_bounds);
  RUN(test_batches_reuse_blocks_and_keep_events);
  RUN(test_batch_built_on_one_thread_freed_on_another);
  return CHECK_SUMMARY();
}
