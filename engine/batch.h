/* batch: events travel between stages as batches. A batch is a view
 * (first, count) over a refcounted, immutable store that holds the encoded
 * bytes of n events and n+1 offsets (event i is bytes off[i]..off[i+1]).
 * Slicing a batch shares the store; no bytes are copied. Stores may be
 * shared between threads (the refcount is atomic); views are owned by one
 * holder at a time. */
#ifndef SLUICE_BATCH_H
#define SLUICE_BATCH_H
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

typedef struct sl_store sl_store;

typedef struct sl_batch {
  sl_store *store;  /* one reference owned by this view; NULL when empty */
  uint32_t first;   /* index of the first event in the store */
  uint32_t count;   /* number of events in the view */
} sl_batch;

#define SL_BATCH_EMPTY ((sl_batch){NULL, 0, 0})

/* Builds a batch by appending encoded events one at a time. */
typedef struct sl_batch_builder {
  sl_buf bytes;
  uint32_t *off;    /* off[0..n] */
  uint32_t n, cap;
} sl_batch_builder;

void sl_bb_init(sl_batch_builder *bb);
/* Marks the end of the event whose bytes were just appended to bb->bytes. */
int sl_bb_end_event(sl_batch_builder *bb);
/* Makes room for n more events' offsets (a hint; 0 or SL_ENOMEM). */
int sl_bb_reserve(sl_batch_builder *bb, uint32_t n);
/* Appends one already encoded event. */
int sl_bb_add(sl_batch_builder *bb, const void *p, size_t len);
/* Moves the events into a new batch (count may be 0) and resets bb. */
int sl_bb_finish(sl_batch_builder *bb, sl_batch *out);
void sl_bb_free(sl_batch_builder *bb);

/* Event i (0-based within the view): pointer and length. */
const char *sl_batch_event(const sl_batch *b, uint32_t i, size_t *len);
/* The same for n events from `from` at once: out[k] points at event
 * from + k and lens[k] is its length (the decoder's inner loop). */
void sl_batch_events(const sl_batch *b, uint32_t from, uint32_t n, const char **out, size_t *lens);
/* A new view of count events from index from; takes a new reference. */
sl_batch sl_batch_slice(const sl_batch *b, uint32_t from, uint32_t count);
/* Drops the first n events of the view in place. */
void sl_batch_drop(sl_batch *b, uint32_t n);
/* Gathers the events idx[0..n-1] of b into a new store. */
int sl_batch_gather(const sl_batch *b, const uint32_t *idx, uint32_t n, sl_batch *out);
/* Releases the view's reference (the store is freed with its last one). */
void sl_batch_release(sl_batch *b);
#endif
