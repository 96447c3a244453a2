/* alloc: the memory of worker Lua states: their allocator, and the
 * multipliers of their collector (sl_pool_tune_gc, at the end).
 *
 * A worker state is touched by
 * one thread only, so its small blocks can be recycled through free lists
 * of its own, without the locking and bookkeeping of the C library's
 * malloc (which showed as ~19 % of a word count's profile). Blocks of up
 * to SMALL_MAX bytes come from 64 KiB slabs, one free list per 16-byte
 * size class; larger blocks go to realloc/free. A freed small block goes
 * back on its free list; sl_pool_trim (after a full collection) gives
 * the slabs with no block in use back to the system, so a state that
 * held a large accumulator does not keep its memory after the flow. Each
 * slab is mapped on its own, aligned to its size, and counts its blocks
 * in use in its header. Under AddressSanitizer
 * every block goes to malloc, so that the sanitizer still sees Lua's heap.
 * A pool may have a limit (SLUICE_MEMORY): past it, growing fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <lua.h>
#include "alloc.h"

#define SMALL_MAX 256
#define NCLASS (SMALL_MAX / 16)
#define SLAB (64 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define SL_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_POOL 0
#endif
#endif
#ifndef SL_POOL
#define SL_POOL 1
#endif

/* A slab's first 16 bytes; its blocks follow. */
typedef struct slab {
  struct slab *next;
  uint32_t live;        /* blocks in use */
} slab;
_Static_assert(sizeof(slab) <= 16, "a slab header fits before the first block");

static inline slab *slab_of(void *b) { return (slab *)((uintptr_t)b & ~(uintptr_t)(SLAB - 1)); }

struct sl_pool {
  void *free[NCLASS];   /* per class: freed blocks, linked through their first word */
  char *cur, *end;      /* the unused tail of the newest slab */
  slab *slabs;
  size_t used;          /* bytes the state holds (Lua's own count of its blocks) */
  size_t nslabs;
  size_t limit;         /* 0: none */
  int refused;          /* an allocation was refused for the limit */
  int guarded;          /* > 0: inside a protected call, where the limit holds */
  int gc_minor, gc_major;   /* the state's collector multipliers (sl_pool_tune_gc) */
};

void sl_pool_guard(sl_pool *p, int delta) { p->guarded += delta; }

void sl_pool_set_limit(sl_pool *p, size_t bytes) { p->limit = bytes; }
size_t sl_pool_limit(const sl_pool *p) { return p->limit; }
int sl_pool_refused(sl_pool *p, int reset) {
  int r = p->refused;
  if (reset) p->refused = 0;
  return r;
}

sl_pool *sl_pool_new(void) { return calloc(1, sizeof(sl_pool)); }

/* A new slab of SLAB bytes aligned to SLAB (so that slab_of finds it
 * from any of its blocks), mapped on its own so that it can go back. */
static slab *slab_map(void) {
  char *m = mmap(NULL, 2 * SLAB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  char *s = (char *)(((uintptr_t)m + SLAB - 1) & ~(uintptr_t)(SLAB - 1));
  if (s > m) munmap(m, (size_t)(s - m));
  if (s + SLAB < m + 2 * SLAB) munmap(s + SLAB, (size_t)(m + 2 * SLAB - (s + SLAB)));
  return (slab *)s;
}

void sl_pool_free(sl_pool *p) {
  if (!p) return;
  for (slab *s = p->slabs, *n; s; s = n) {
    n = s->next;
    munmap(s, SLAB);
  }
  free(p);
}

size_t sl_pool_slabs(const sl_pool *p) { return p->nslabs; }

/* Slabs with no block in use go back to the system: their blocks leave
 * the free lists first. The slab being cut (p->cur) stays. Costs a walk
 * of the slabs, and of the free lists when some slab is empty. */
size_t sl_pool_trim(sl_pool *p) {
  if (!SL_POOL || !p) return 0;
  slab *current = p->cur ? slab_of(p->cur - 1) : NULL;
  size_t empty = 0;
  for (slab *s = p->slabs; s; s = s->next) empty += s->live == 0 && s != current;
  if (!empty) return 0;
  for (int c = 0; c < NCLASS; c++) {
    void **link = &p->free[c];
    while (*link) {
      void *b = *link, *next;
      memcpy(&next, b, sizeof next);
      slab *s = slab_of(b);
      if (s->live == 0 && s != current) *link = next;
      else link = (void **)b;
    }
  }
  size_t freed = 0;
  for (slab **link = &p->slabs; *link;) {
    slab *s = *link;
    if (s->live == 0 && s != current) {
      *link = s->next;
      munmap(s, SLAB);
      freed++;
    } else {
      link = &s->next;
    }
  }
  p->nslabs -= freed;
  return freed;
}

static int class_of(size_t n) { return (int)((n + 15) / 16) - 1; }

/* A block of class c from its free list or the newest slab's tail; NULL
 * when neither has one (no slab is cut here). */
static inline void *pool_take(sl_pool *p, int c) {
  void *b = p->free[c];
  if (b) {
    memcpy(&p->free[c], b, sizeof(void *));
    slab_of(b)->live++;
    return b;
  }
  size_t size = (size_t)(c + 1) * 16;
  if ((size_t)(p->end - p->cur) < size) return NULL;
  b = p->cur;
  p->cur += size;
  slab_of(b)->live++;
  return b;
}

/* A block of class c, cutting a new slab when pool_take has none. */
static void *pool_get(sl_pool *p, int c) {
  void *b = pool_take(p, c);
  if (b) return b;
  slab *s = slab_map();
  if (!s) return NULL;
  s->next = p->slabs;
  s->live = 0;
  p->slabs = s;
  p->nslabs++;
  p->cur = (char *)s + 16;   /* keeps blocks 16-byte aligned */
  p->end = (char *)s + SLAB;
  return pool_take(p, c);
}

static void pool_put(sl_pool *p, void *b, int c) {
  memcpy(b, &p->free[c], sizeof(void *));
  p->free[c] = b;
  slab_of(b)->live--;
}

static void *pool_alloc(sl_pool *p, void *ptr, size_t osize, size_t nsize);
static void *alloc_slow(sl_pool *p, void *ptr, size_t osize, size_t nsize);

/* The limit applies to growth only: freeing and shrinking never fail (Lua
 * needs that), and a refused allocation makes Lua collect garbage and try
 * once more before it raises "not enough memory". It holds only inside
 * protected calls (callbacks and tasks): the host's own unprotected work
 * on the state (decoding a message, ending a stage) could not survive an
 * error, and it is bounded by the demand. */
void *sl_pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  sl_pool *p = ud;
  /* the two calls most made, in few instructions: a small block freed,
   * and a new small block (no limit to check) */
  if (SL_POOL && nsize == 0 && ptr && osize <= SMALL_MAX) {
    pool_put(p, ptr, class_of(osize));
    p->used -= osize;
    return NULL;
  }
  if (SL_POOL && !ptr && nsize <= SMALL_MAX && nsize > 0 && !p->limit) {
    void *b = pool_take(p, class_of(nsize));
    if (b) {
      p->used += nsize;
      return b;
    }
  }
  return alloc_slow(p, ptr, osize, nsize);
}

/* Every other call (a limit to check, a slab to cut, a block to resize). */
__attribute__((noinline)) static void *alloc_slow(sl_pool *p, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0;   /* without ptr, osize is the kind of object */
  if (nsize > old && p->limit && p->guarded > 0 && p->used + (nsize - old) > p->limit) {
    p->refused = 1;
    return NULL;
  }
  void *r = pool_alloc(p, ptr, osize, nsize);
  if (r || nsize == 0) p->used = p->used - old + nsize;
  return r;
}

static void *pool_alloc(sl_pool *p, void *ptr, size_t osize, size_t nsize) {
  if (!SL_POOL) {
    if (nsize == 0) {
      free(ptr);
      return NULL;
    }
    return realloc(ptr, nsize);
  }
  /* osize is the block's size when ptr != NULL (Lua 5.4 contract) */
  int small_old = ptr && osize <= SMALL_MAX;
  if (nsize == 0) {
    if (small_old) pool_put(p, ptr, class_of(osize));
    else free(ptr);
    return NULL;
  }
  if (nsize <= SMALL_MAX) {
    if (small_old && class_of(osize) == class_of(nsize)) return ptr;
    void *b = pool_get(p, class_of(nsize));
    /* Lua expects a shrink never to fail: keep the bigger block then */
    if (!b) return ptr && nsize <= osize ? ptr : NULL;
    if (ptr) {
      memcpy(b, ptr, osize < nsize ? osize : nsize);
      if (small_old) pool_put(p, ptr, class_of(osize));
      else free(ptr);
    }
    return b;
  }
  if (!small_old) return realloc(ptr, nsize);   /* large to large, or new */
  void *b = malloc(nsize);
  if (!b) return NULL;
  memcpy(b, ptr, osize);
  pool_put(p, ptr, class_of(osize));
  return b;
}

/* The collector of a worker state is generational (lua/binding.c), with
 * multipliers that keep a floor under the young generation and under the
 * growth that calls for a major collection. Lua's multipliers are
 * relative to the heap, and a stage's heap may be a few hundred KB while
 * the batch it works on (its events decoded, the tables its loop makes)
 * is as large: 10 % of the heap meant a minor collection every few
 * hundred events, and the batch, promoted while in use, a major one every
 * few batches (windows on a partition, 1 M events: 4.55 G instructions,
 * 4.16 G with the floors). A heap past the floors (a word count's
 * vocabulary) keeps 10 % and 100 %. */
#define GC_YOUNG_FLOOR (512 * 1024)
#define GC_MAJOR_FLOOR (2 * 1024 * 1024)
static int gc_mul(size_t floor, size_t used, int lo, int hi, int step) {
  size_t m = floor * 100 / (used ? used : 1);
  int v = m < (size_t)lo ? lo : m > (size_t)hi ? hi : (int)m;
  return v / step * step;
}

void sl_pool_tune_gc(sl_pool *p, lua_State *L) {
  int minor = gc_mul(GC_YOUNG_FLOOR, p->used, 10, 200, 10);
  int major = gc_mul(GC_MAJOR_FLOOR, p->used, 100, 1000, 50);
  if (minor != p->gc_minor || major != p->gc_major) {
    p->gc_minor = minor;
    p->gc_major = major;
    /* (a stage that chose the incremental collector keeps it) */
    if (lua_gc(L, LUA_GCGEN, minor, major) == LUA_GCINC) lua_gc(L, LUA_GCINC, 0, 0, 0);
  }
}
