/* alloc: a single-thread pool allocator for worker Lua states (alloc.c). */
#ifndef SLUICE_ALLOC_H
#define SLUICE_ALLOC_H
#include <stddef.h>

typedef struct sl_pool sl_pool;

sl_pool *sl_pool_new(void);
/* Frees the pool's slabs: only after the state using it was closed. */
void sl_pool_free(sl_pool *p);
/* A lua_Alloc over the pool given as ud. */
void *sl_pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
#endif
