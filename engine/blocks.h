/* blocks: a per-thread cache of the blocks batches are built in (see
 * blocks.c). Every block is a malloc'd block: one that is not handed back
 * may be freed with free. */
#ifndef SLUICE_BLOCKS_H
#define SLUICE_BLOCKS_H
#include <stddef.h>

/* A block of at least need bytes (its size in *cap), from this thread's
 * cache or malloc; NULL when out of memory. */
void *sl_block_get(size_t need, size_t *cap);
/* Hands a block of cap bytes back: kept for this thread's next batch, or
 * freed. p may be NULL. */
void sl_block_put(void *p, size_t cap);
/* Frees the blocks this thread keeps (a worker, before it ends). */
void sl_block_clear(void);
/* For tests: how many blocks this thread keeps, and whether blocks are
 * cached at all in this build (not under AddressSanitizer). */
int sl_block_count(void);
int sl_block_caching(void);
#endif
