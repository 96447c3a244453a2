/* Unit tests of the per-thread block cache (engine/blocks.c) and of the
 * batches built in its blocks (engine/batch.c): what is kept and what is
 * freed, the most recent fitting block first, the bounds, a batch built
 * on one thread and freed on another, a small batch moved into blocks of
 * its size, and events intact across reuse.
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

/* A batch of n events of len bytes each (len >= 8): "e<i>" padded with
 * dots, i from base. */
static sl_batch build(int n, int len, int base) {
  sl_batch_builder bb;
  sl_batch out;
  sl_bb_init(&bb);
  for (int i = 0; i < n; i++) {
    char ev[64];
    int k = snprintf(ev, sizeof ev, "e%d", base + i);
    while (k < len) ev[k++] = '.';
    CHECK_INT(sl_bb_add(&bb, ev, (size_t)len), 0);
  }
  CHECK_INT(sl_bb_finish(&bb, &out), 0);
  sl_bb_free(&bb);
  return out;
}

static int events_ok(const sl_batch *b, int n, int len, int base) {
  if ((int)b->count != n) return 0;
  for (int i = 0; i < n; i++) {
    char ev[64];
    int k = snprintf(ev, sizeof ev, "e%d", base + i);
    while (k < len) ev[k++] = '.';
    size_t got;
    const char *p = sl_batch_event(b, (uint32_t)i, &got);
    if (got != (size_t)len || memcmp(p, ev, got) != 0) return 0;
  }
  return 1;
}

/* 200 events of 10 bytes fill enough of a 4096-byte block (2000 bytes,
 * 804 bytes of offsets) to keep it: the two blocks go back to the cache
 * when the batch is freed and the next batch is built in them. */
static void test_batches_reuse_blocks_and_keep_events(void) {
  sl_block_clear();
  sl_batch big = build(20000, 12, 0);   /* grows past its first blocks */
  CHECK(events_ok(&big, 20000, 12, 0));
  sl_batch_release(&big);
  sl_block_clear();
  const char *first = NULL;
  for (int round = 0; round < 50; round++) {
    sl_batch b = build(200, 10, round * 1000);
    size_t len;
    const char *p = sl_batch_event(&b, 0, &len);
    if (round == 0) first = p;
    else if (sl_block_caching()) CHECK(p == first);   /* the same bytes block */
    CHECK_INT(sl_block_count(), 0);
    sl_batch s = sl_batch_slice(&b, 0, b.count);
    sl_batch_release(&b);   /* the slice still holds the store */
    CHECK(events_ok(&s, 200, 10, round * 1000));
    sl_batch_release(&s);
    CHECK_INT(sl_block_count(), sl_block_caching() ? 2 : 0);
  }
  sl_block_clear();
}

/* A batch that fills little of its blocks (3 events of 8 bytes) moves
 * into blocks of its size when it is finished, and the big ones go back
 * to the cache at once; its own small blocks are freed with it. */
static void test_small_batch_fits_its_blocks(void) {
  sl_block_clear();
  sl_batch b = build(3, 8, 7);
  CHECK_INT(sl_block_count(), sl_block_caching() ? 2 : 0);
  CHECK(events_ok(&b, 3, 8, 7));
  sl_batch_release(&b);
  CHECK_INT(sl_block_count(), sl_block_caching() ? 2 : 0);
  sl_block_clear();
}

typedef struct handoff {
  sl_batch b[8];
  int kept, left;
} handoff;

/* Releases the batches it is given and builds new ones in the blocks. */
static void *consumer(void *arg) {
  handoff *h = arg;
  for (int i = 0; i < 8; i++) {
    CHECK(events_ok(&h->b[i], 200, 10, i * 200));
    sl_batch_release(&h->b[i]);
  }
  h->kept = sl_block_count();
  for (int i = 0; i < 8; i++) h->b[i] = build(200, 10, 5000 + i * 200);
  h->left = sl_block_count();
  sl_block_clear();
  return NULL;
}

static void test_batch_built_on_one_thread_freed_on_another(void) {
  sl_block_clear();
  handoff h;
  for (int i = 0; i < 8; i++) h.b[i] = build(200, 10, i * 200);
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, consumer, &h), 0);
  pthread_join(t, NULL);
  /* the consumer kept the 16 blocks of the 8 batches it released, and
   * built its 8 batches in them */
  CHECK_INT(h.kept, sl_block_caching() ? 16 : 0);
  CHECK_INT(h.left, 0);
  for (int i = 0; i < 8; i++) {
    CHECK(events_ok(&h.b[i], 200, 10, 5000 + i * 200));
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
  RUN(test_small_batch_fits_its_blocks);
  RUN(test_batch_built_on_one_thread_freed_on_another);
  return CHECK_SUMMARY();
}
