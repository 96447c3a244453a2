/* alloc: a single-thread pool allocator for worker Lua states, and their
 * collector's multipliers (alloc.c). */
#ifndef SLUICE_ALLOC_H
#define SLUICE_ALLOC_H
#include <stddef.h>

typedef struct sl_pool sl_pool;

sl_pool *sl_pool_new(void);
/* Frees the pool's slabs: only after the state using it was closed. */
void sl_pool_free(sl_pool *p);
/* A limit on the bytes the state may hold (0: none); past it the
 * allocator refuses to grow and Lua raises "not enough memory". */
void sl_pool_set_limit(sl_pool *p, size_t bytes);
size_t sl_pool_limit(const sl_pool *p);
/* delta +1 on entering a protected call, -1 on leaving: the limit holds
 * only inside one. */
void sl_pool_guard(sl_pool *p, int delta);
/* 1 if an allocation was refused for the limit (since the last reset). */
int sl_pool_refused(sl_pool *p, int reset);
/* Sets the generational collector's multipliers of L (whose allocator p
 * is) for the heap it holds now; called after each message. */
struct lua_State;
void sl_pool_tune_gc(sl_pool *p, struct lua_State *L);
/* Gives the slabs that hold no block in use back to the system (after a
 * full collection, most of a dropped accumulator's); returns how many.
 * The state must not be allocating meanwhile (its own thread calls it). */
size_t sl_pool_trim(sl_pool *p);
/* The slabs the pool has in use (of 64 KiB each), and those it gave
 * back and keeps mapped, with no pages, to use again first. */
size_t sl_pool_slabs(const sl_pool *p);
size_t sl_pool_spares(const sl_pool *p);
/* A lua_Alloc over the pool given as ud. */
void *sl_pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
#endif
