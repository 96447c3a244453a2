/* The worker states' pool allocator (lua/alloc.c): blocks keep their
 * contents whatever else is allocated and freed, and sl_pool_trim gives
 * back exactly the slabs with no block in use, leaving the free lists
 * with no block of a slab that went. Under AddressSanitizer the pool
 * hands every block to malloc and holds no slab: the contents are still
 * checked there, the slab counts only where the pool is on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "alloc.h"
#include "check.h"

#define N 20000

static void *get(sl_pool *p, size_t n) { return sl_pool_alloc(p, NULL, LUA_TTABLE, n); }
static void put(sl_pool *p, void *b, size_t n) { sl_pool_alloc(p, b, n, 0); }

static size_t size_of(int i) { return (size_t)(8 + (i * 37) % 240); }   /* 8..247: every class */

static void fill(void *b, size_t n, int tag) { memset(b, tag & 0xff, n); }
static int intact(const void *b, size_t n, int tag) {
  const unsigned char *u = b;
  for (size_t k = 0; k < n; k++)
    if (u[k] != (unsigned char)(tag & 0xff)) return 0;
  return 1;
}

static void test_trim_gives_back_empty_slabs(void) {
  sl_pool *p = sl_pool_new();
  void **b = calloc(N, sizeof *b);
  CHECK(p != NULL && b != NULL);
  if (!p || !b) return;
  CHECK_INT(sl_pool_trim(p), 0);                    /* nothing yet */
  for (int i = 0; i < N; i++) {
    b[i] = get(p, size_of(i));
    CHECK(b[i] != NULL);
    fill(b[i], size_of(i), i);
  }
  size_t held = sl_pool_slabs(p);
  int pooled = held > 0;
  if (pooled) CHECK(held >= 40);                    /* ~2.5 MB of blocks in 64 KiB slabs */
  CHECK_INT(sl_pool_trim(p), 0);                    /* every slab has blocks in use */
  /* keep every 1000th block: at most 20 slabs keep one */
  for (int i = 0; i < N; i++)
    if (i % 1000 != 0) {
      put(p, b[i], size_of(i));
      b[i] = NULL;
    }
  size_t freed = sl_pool_trim(p);
  if (pooled) {
    CHECK(freed >= held - 21);                      /* all but the kept blocks' slabs and the current one */
    CHECK_INT(sl_pool_slabs(p), held - freed);
    CHECK_INT(sl_pool_spares(p), freed);
    CHECK_INT(sl_pool_trim(p), 0);                  /* nothing left to give */
  } else {
    CHECK_INT(freed, 0);
  }
  for (int i = 0; i < N; i += 1000) CHECK(intact(b[i], size_of(i), i));
  /* the free lists hold no block of a slab that went: new blocks are
   * usable and never overlap the kept ones */
  void **c = calloc(N, sizeof *c);
  CHECK(c != NULL);
  for (int i = 0; c && i < N; i++) {
    c[i] = get(p, size_of(i + 1));
    CHECK(c[i] != NULL);
    if (c[i]) fill(c[i], size_of(i + 1), 7 * i + 3);   /* each its own tag: no two overlap */
  }
  if (pooled) CHECK_INT(sl_pool_spares(p), 0);      /* the slabs given back were used again first */
  for (int i = 0; i < N; i += 1000) CHECK(intact(b[i], size_of(i), i));
  for (int i = 0; c && i < N; i++) {
    CHECK(intact(c[i], size_of(i + 1), 7 * i + 3));
    put(p, c[i], size_of(i + 1));
  }
  for (int i = 0; i < N; i += 1000) put(p, b[i], size_of(i));
  sl_pool_trim(p);
  if (pooled) CHECK(sl_pool_slabs(p) <= 1);         /* the slab being cut stays */
  free(c);
  free(b);
  sl_pool_free(p);
}

/* Resident pages of this process (/proc/self/statm), or -1. */
static long resident_pages(void) {
  long size = -1, res = -1;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res;
}

/* A Lua state on the pool: a large table dropped, a full collection and
 * a trim give most of its slabs' pages back (the process's resident
 * memory shrinks by them), and the state goes on, reusing them. */
static void test_trim_after_a_collection(void) {
  sl_pool *p = sl_pool_new();
  lua_State *L = p ? lua_newstate(sl_pool_alloc, p) : NULL;
  CHECK(L != NULL);
  if (!L) return;
  luaL_openlibs(L);
  CHECK(luaL_dostring(L, "t = {} for i = 1, 100000 do t['k' .. i] = {i} end") == LUA_OK);
  size_t held = sl_pool_slabs(p);
  CHECK(luaL_dostring(L, "t = nil collectgarbage()") == LUA_OK);
  long before = resident_pages();
  size_t freed = sl_pool_trim(p);
  long after = resident_pages();
  if (held) {
    CHECK(held >= 100);                             /* 100 000 strings and tables: > 6 MB */
    CHECK(freed >= held * 9 / 10);
    CHECK_INT(sl_pool_slabs(p), held - freed);
    long page = sysconf(_SC_PAGESIZE);
    CHECK(before > 0 && after > 0 && (before - after) * page >= (long)(freed * 64 * 1024) * 9 / 10);
  }
  CHECK(luaL_dostring(L, "local u = {} for i = 1, 50000 do u[i] = 'v' .. i end "
                         "assert(u[49999] == 'v49999' and #u == 50000) v = u") == LUA_OK);
  if (held) CHECK(sl_pool_spares(p) < freed);     /* the spare slabs in use again */
  CHECK(luaL_dostring(L, "assert(v[12345] == 'v12345')") == LUA_OK);
  lua_close(L);
  sl_pool_free(p);
}

int main(void) {
  RUN(test_trim_gives_back_empty_slabs);
  RUN(test_trim_after_a_collection);
  return CHECK_SUMMARY();
}
