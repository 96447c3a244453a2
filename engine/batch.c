/* batch: refcounted event stores and views over them. */
#include <stdatomic.h>
#include <stdlib.h>
#include "batch.h"
#include "blocks.h"
#include "status.h"

/* A store's blocks come from the block cache of the thread that built it
 * and go back to the cache of the thread that frees it (blocks.h). */
struct sl_store {
  atomic_int refs;
  uint32_t n;
  uint32_t *off;   /* n+1 offsets */
  char *data;
  size_t dcap;     /* the blocks' sizes */
  size_t ocap;
};

void sl_bb_init(sl_batch_builder *bb) {
  memset(bb, 0, sizeof *bb);
  bb->bytes.pooled = 1;
}

/* Sets the offsets array to cap entries (cap > n + 1). */
static int bb_resize(sl_batch_builder *bb, uint32_t cap) {
  if (!bb->off) {
    size_t got;
    uint32_t *p = sl_block_get((size_t)(cap < 1024 ? 1024 : cap) * sizeof *p, &got);
    if (!p) return SL_ENOMEM;
    p[0] = 0;
    bb->off = p;
    bb->cap = got / sizeof *p > UINT32_MAX ? UINT32_MAX : (uint32_t)(got / sizeof *p);
    return 0;
  }
  uint32_t *p = realloc(bb->off, cap * sizeof *p);
  if (!p) return SL_ENOMEM;
  bb->off = p;
  bb->cap = cap;
  return 0;
}

int sl_bb_reserve(sl_batch_builder *bb, uint32_t n) {
  if (n > UINT32_MAX - 2 - bb->n) return SL_ENOMEM;
  if (bb->n + n + 2 <= bb->cap) return 0;
  return bb_resize(bb, bb->n + n + 2);
}

int sl_bb_end_event(sl_batch_builder *bb) {
  if (bb->n + 2 > bb->cap && bb_resize(bb, bb->cap ? bb->cap * 2 : 64)) return SL_ENOMEM;
  if (bb->bytes.len > UINT32_MAX) return SL_ENOMEM;
  bb->off[++bb->n] = (uint32_t)bb->bytes.len;
  return 0;
}

int sl_bb_add(sl_batch_builder *bb, const void *p, size_t len) {
  if (sl_buf_append(&bb->bytes, p, len)) return SL_ENOMEM;
  return sl_bb_end_event(bb);
}

/* A block of cap bytes that holds used bytes, when the block is more
 * than four times that (and the difference worth a copy): a new block of
 * used bytes with them, the big one handed back to the cache. Returns the
 * block to keep (p itself, or the new one), NULL when out of memory. */
static void *fit(void *p, size_t *cap, size_t used) {
  if (*cap <= 4 * used + 1024) return p;
  size_t n = used ? used : 1;
  void *q = malloc(n);
  if (!q) return NULL;
  memcpy(q, p, used);
  sl_block_put(p, *cap);
  *cap = n;
  return q;
}

int sl_bb_finish(sl_batch_builder *bb, sl_batch *out) {
  *out = SL_BATCH_EMPTY;
  size_t ocap = (size_t)bb->cap * sizeof *bb->off;
  if (bb->n == 0) {
    bb->bytes.len = 0;
    return 0;
  }
  /* events that are all empty still get a byte store, so that every
   * event pointer is a real one (never NULL + 0) */
  if (!bb->bytes.data && sl_buf_reserve(&bb->bytes, 1)) return SL_ENOMEM;
  /* a store keeps little more than it holds: a small batch that waits
   * in a queue (a partition of many stages gets many) does not hold a
   * block of the cache's size */
  char *data = fit(bb->bytes.data, &bb->bytes.cap, bb->bytes.len);
  if (!data) return SL_ENOMEM;
  bb->bytes.data = data;
  uint32_t *off = fit(bb->off, &ocap, ((size_t)bb->n + 1) * sizeof *bb->off);
  if (!off) return SL_ENOMEM;
  bb->off = off;
  bb->cap = (uint32_t)(ocap / sizeof *bb->off);
  sl_store *s = malloc(sizeof *s);
  if (!s) return SL_ENOMEM;
  atomic_init(&s->refs, 1);
  s->n = bb->n;
  s->off = bb->off;
  s->ocap = ocap;
  s->dcap = bb->bytes.cap;
  s->data = sl_buf_take(&bb->bytes, NULL);
  out->store = s;
  out->first = 0;
  out->count = bb->n;
  bb->off = NULL;
  bb->n = bb->cap = 0;
  return 0;
}

void sl_bb_free(sl_batch_builder *bb) {
  sl_buf_free(&bb->bytes);
  sl_block_put(bb->off, (size_t)bb->cap * sizeof *bb->off);
  memset(bb, 0, sizeof *bb);
  bb->bytes.pooled = 1;
}

const char *sl_batch_event(const sl_batch *b, uint32_t i, size_t *len) {
  const sl_store *s = b->store;
  uint32_t k = b->first + i;
  *len = s->off[k + 1] - s->off[k];
  return s->data + s->off[k];
}

void sl_batch_events(const sl_batch *b, uint32_t from, uint32_t n, const char **out, size_t *lens) {
  const sl_store *s = b->store;
  const uint32_t *off = s->off + b->first + from;
  for (uint32_t k = 0; k < n; k++) {
    out[k] = s->data + off[k];
    lens[k] = off[k + 1] - off[k];
  }
}

sl_batch sl_batch_slice(const sl_batch *b, uint32_t from, uint32_t count) {
  if (count == 0 || !b->store) return SL_BATCH_EMPTY;
  atomic_fetch_add_explicit(&b->store->refs, 1, memory_order_relaxed);
  return (sl_batch){b->store, b->first + from, count};
}

void sl_batch_drop(sl_batch *b, uint32_t n) {
  if (n >= b->count) {
    sl_batch_release(b);
    return;
  }
  b->first += n;
  b->count -= n;
}

/* One pass sizes the new store, one copies the events into it: no
 * per-event growth checks (a partition dispatcher gathers every event it
 * sends to a partition whose events are not contiguous). */
int sl_batch_gather(const sl_batch *b, const uint32_t *idx, uint32_t n, sl_batch *out) {
  *out = SL_BATCH_EMPTY;
  if (n == 0) return 0;
  const sl_store *s = b->store;
  const uint32_t *off = s->off + b->first;
  size_t total = 0;   /* at most the source store's bytes: fits in 32 bits */
  for (uint32_t i = 0; i < n; i++) total += off[idx[i] + 1] - off[idx[i]];
  sl_batch_builder bb;
  sl_bb_init(&bb);
  int rc = SL_ENOMEM;
  /* (at least a byte: empty events still point into a real store) */
  if (sl_bb_reserve(&bb, n) == 0 && sl_buf_reserve(&bb.bytes, total ? total : 1) == 0) {
    char *dst = bb.bytes.data;
    uint32_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
      uint32_t k = idx[i], len = off[k + 1] - off[k];
      memcpy(dst + pos, s->data + off[k], len);
      pos += len;
      bb.off[i + 1] = pos;
    }
    bb.bytes.len = pos;
    bb.n = n;
    rc = sl_bb_finish(&bb, out);
  }
  sl_bb_free(&bb);
  return rc;
}

void sl_batch_release(sl_batch *b) {
  sl_store *s = b->store;
  *b = SL_BATCH_EMPTY;
  if (!s) return;
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
    sl_block_put(s->off, s->ocap);
    sl_block_put(s->data, s->dcap);
    free(s);
  }
}
