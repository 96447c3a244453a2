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
 * the pages of the slabs with no block in use back to the system, so a
 * state that held a large accumulator does not keep its memory after the
 * flow. Slabs are aligned to their size and count their blocks in use in
 * their header; they are cut from 2 MiB mappings (one mmap per 32 slabs:
 * a mapping per slab cost a fifth of a word count's system time), and a
 * slab given back stays mapped, with no pages, until it is used again.
 * Under AddressSanitizer
 * every block goes to malloc, so that the sanitizer still sees Lua's heap.
 * A pool may have a limit (SLUICE_MEMORY): past it, growing fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
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

#define CHUNK_SLABS 32

struct sl_pool {
  void *free[NCLASS];   /* per class: freed blocks, linked through their first word */
  char *cur, *end;      /* the unused tail of the newest slab */
  slab *slabs;          /* the slabs in use */
  size_t used;          /* bytes the state holds (Lua's own count of its blocks) */
  size_t nslabs;
  char *next_slab, *chunks_end;   /* the slabs of the newest mapping not cut yet */
  char **chunks;        /* the mappings, CHUNK_SLABS slabs each */
  size_t nchunks;
  slab **spare;         /* slabs given back (no pages), to use again first */
  size_t nspare, capspare;
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

/* A new slab: a spare one, the next of the newest mapping, or the first
 * of a new mapping of CHUNK_SLABS slabs aligned to SLAB (so that slab_of
 * finds a slab from any of its blocks). */
static slab *slab_new(sl_pool *p) {
  if (p->nspare) return p->spare[--p->nspare];
  if (p->next_slab == p->chunks_end) {
    char **chunks = realloc(p->chunks, (p->nchunks + 1) * sizeof *chunks);
    if (!chunks) return NULL;
    p->chunks = chunks;
    size_t len = (CHUNK_SLABS + 1) * (size_t)SLAB;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    char *c = (char *)(((uintptr_t)m + SLAB - 1) & ~(uintptr_t)(SLAB - 1));
    char *end = c + CHUNK_SLABS * (size_t)SLAB;
    if (c > m) munmap(m, (size_t)(c - m));
    if (end < m + len) munmap(end, (size_t)(m + len - end));
    p->chunks[p->nchunks++] = c;
    p->next_slab = c;
    p->chunks_end = end;
  }
  slab *sl = (slab *)p->next_slab;
  p->next_slab += SLAB;
  return sl;
}

void sl_pool_free(sl_pool *p) {
  if (!p) return;
  for (size_t i = 0; i < p->nchunks; i++) munmap(p->chunks[i], CHUNK_SLABS * (size_t)SLAB);
  free(p->chunks);
  free(p->spare);
  free(p);
}

size_t sl_pool_slabs(const sl_pool *p) { return p->nslabs; }
size_t sl_pool_spares(const sl_pool *p) { return p->nspare; }

static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (slab *const *)a, y = (uintptr_t) * (slab *const *)b;
  return x < y ? -1 : x > y;
}

/* Slabs with no block in use give their pages back to the system: their
 * blocks leave the free lists, and the slabs become spares (one madvise
 * per run of adjacent ones). The slab being cut (p->cur) stays. Costs a
 * walk of the slabs, and of the free lists when some slab is empty. */
size_t sl_pool_trim(sl_pool *p) {
  if (!SL_POOL || !p) return 0;
  slab *current = p->cur ? slab_of(p->cur - 1) : NULL;
  size_t empty = 0;
  for (slab *s = p->slabs; s; s = s->next) empty += s->live == 0 && s != current;
  if (!empty) return 0;
  if (p->capspare - p->nspare < empty) {
    size_t cap = p->nspare + empty;
    slab **spare = realloc(p->spare, cap * sizeof *spare);
    if (!spare) return 0;
    p->spare = spare;
    p->capspare = cap;
  }
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
  slab **gone = p->spare + p->nspare;
  size_t n = 0;
  for (slab **link = &p->slabs; *link;) {
    slab *s = *link;
    if (s->live == 0 && s != current) {
      *link = s->next;
      gone[n++] = s;
    } else {
      link = &s->next;
    }
  }
  qsort(gone, n, sizeof *gone, by_address);
  for (size_t i = 0, j; i < n; i = j) {
    for (j = i + 1; j < n && (char *)gone[j] == (char *)gone[j - 1] + SLAB; j++) {}
    madvise(gone[i], (j - i) * (size_t)SLAB, MADV_DONTNEED);
  }
  p->nspare += n;
  p->nslabs -= n;
  return n;
}

static int class_of(size_t n) { return (int)((n + 15) / 16) - 1; }

__attribute__((noreturn, cold)) static void oom_abort(void) {
  static const char msg[] = "sluice: out of memory (no slab for a block that shrinks)\n";
  if (write(2, msg, sizeof msg - 1) < 0) abort();
  abort();
}

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
  slab *s = slab_new(p);
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
    if (!b) {
      /* Lua expects a shrink never to fail: a small block keeps its
       * bigger one; a large one cannot become small (a small block is
       * freed into its slab), and no slab can be had: out of memory */
      if (ptr && nsize <= osize && !small_old) oom_abort();
      return ptr && nsize <= osize ? ptr : NULL;
    }
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
