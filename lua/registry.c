/* registry: every stage started, alive or dead, hashed by ref: names,
 * types, liveness, exit reasons (await needs the reason of any handle still
 * held). The only table shared by threads, under one mutex; touched when
 * stages start and stop and by the main thread's checks and waits, never
 * on the event path. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "buffer.h"
#include "dispatch.h"
#include "hash.h"
#include "stage_int.h"
#include "status.h"

/* ---- registry --------------------------------------------------------------- */

/* Every stage started, alive or dead (await needs the exit reason of any
 * handle still held), hashed by ref. The only table shared by threads. */
typedef struct reg_entry {
  uint64_t ref;
  char *name;
  int type;        /* T_PRODUCER, T_PC, T_CONSUMER */
  int alive;
  int watched;     /* someone awaits its exit: no crash report */
  int finite;      /* a producer that ends by itself: at exit it may run to its end */
  int at_exit;     /* alive when the exit began: what it is sent later is lost by the exit */
  char *reason;    /* encoded exit reason once dead */
  size_t rlen;
  struct reg_entry *next;
} reg_entry;

#define REG_BUCKETS 1024
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg_table[REG_BUCKETS];

/* The entry of ref (reg_mu held), or NULL. */
static reg_entry *reg_find(uint64_t ref) {
  for (reg_entry *e = reg_table[ref % REG_BUCKETS]; e; e = e->next)
    if (e->ref == ref) return e;
  return NULL;
}

/* Registers a stage being started (name may be NULL). */
void st_reg_add(uint64_t ref, const char *name, int type, int finite) {
  reg_entry *e = calloc(1, sizeof *e);
  if (!e) abort();
  e->ref = ref;
  e->type = type;
  e->finite = finite;
  e->name = name ? strdup(name) : NULL;
  e->alive = 1;
  pthread_mutex_lock(&reg_mu);
  e->next = reg_table[ref % REG_BUCKETS];
  reg_table[ref % REG_BUCKETS] = e;
  pthread_mutex_unlock(&reg_mu);
}

/* Marks ref dead with its encoded exit reason (copied). A dead stage
 * keeps its name for stage:name() but no longer answers to whereis. */
void st_reg_dead(uint64_t ref, const char *reason, size_t len) {
  char *copy = malloc(len ? len : 1);
  if (copy && len) memcpy(copy, reason, len);
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e) {
    e->alive = 0;
    free(e->reason);
    e->reason = copy;
    e->rlen = copy ? len : 0;
    copy = NULL;
  }
  pthread_mutex_unlock(&reg_mu);
  free(copy);
}

/* 1 alive, 0 dead (pushes the exit reason onto L when L is given), -1 unknown */
int st_reg_status(lua_State *L, uint64_t ref) {
  int st = -1;
  char *copy = NULL;
  size_t len = 0;
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e) {
    st = e->alive;
    if (!st && L && e->reason) {
      copy = malloc(e->rlen ? e->rlen : 1);
      if (copy) memcpy(copy, e->reason, e->rlen);
      len = e->rlen;
    }
  }
  pthread_mutex_unlock(&reg_mu);
  if (copy) {
    char err[128];
    if (sl_decode(L, copy, len, err, sizeof err) != 0) lua_pushstring(L, err);
    free(copy);
  } else if (st == 0 && L) {
    lua_pushliteral(L, "normal");
  }
  return st;
}

/* Marks ref as awaited: its crash is someone's to report. */
void st_reg_watch(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e) e->watched = 1;
  pthread_mutex_unlock(&reg_mu);
}

int st_reg_watched(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  int w = e && e->watched;
  pthread_mutex_unlock(&reg_mu);
  return w;
}

/* The live stage registered under name, or 0. */
uint64_t st_reg_whereis(const char *name) {
  uint64_t ref = 0;
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS && !ref; b++)
    for (reg_entry *e = reg_table[b]; e; e = e->next)
      if (e->alive && e->name && strcmp(e->name, name) == 0) {
        ref = e->ref;
        break;
      }
  pthread_mutex_unlock(&reg_mu);
  return ref;
}

/* The type of stage ref, or -1 when unknown. */
int st_reg_type(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  int t = e ? e->type : -1;
  pthread_mutex_unlock(&reg_mu);
  return t;
}

/* A malloc'd copy of ref's name, or NULL. */
char *st_reg_name(uint64_t ref) {
  char *n = NULL;
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  if (e && e->name) n = strdup(e->name);
  pthread_mutex_unlock(&reg_mu);
  return n;
}

void st_reg_free(void) {
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS; b++)
    while (reg_table[b]) {
      reg_entry *e = reg_table[b];
      reg_table[b] = e->next;
      free(e->name);
      free(e->reason);
      free(e);
    }
  pthread_mutex_unlock(&reg_mu);
}


/* The live stages: refs and types (malloc'd; *n of them). */
/* Whether ref was alive when the exit began (st_live_stages). */
int st_reg_at_exit(uint64_t ref) {
  pthread_mutex_lock(&reg_mu);
  reg_entry *e = reg_find(ref);
  int a = e && e->at_exit;
  pthread_mutex_unlock(&reg_mu);
  return a;
}

uint64_t *st_live_stages(int **types, size_t *n) {
  size_t cap = 16, k = 0;
  uint64_t *refs = malloc(cap * sizeof *refs);
  int *ts = malloc(cap * sizeof *ts);
  if (!refs || !ts) abort();
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS; b++)
    for (reg_entry *e = reg_table[b]; e; e = e->next) {
      if (!e->alive) continue;
      if (k == cap) {
        cap *= 2;
        refs = realloc(refs, cap * sizeof *refs);
        ts = realloc(ts, cap * sizeof *ts);
        if (!refs || !ts) abort();
      }
      e->at_exit = 1;
      refs[k] = e->ref;
      ts[k++] = e->type | (e->finite ? EXIT_FINITE : 0);
    }
  pthread_mutex_unlock(&reg_mu);
  *types = ts;
  *n = k;
  return refs;
}

/* The refs of the live stages, oldest first (malloc'd; *n of them): for
 * sluice.stats() and sluice.graph(). */
uint64_t *st_reg_live(size_t *n) {
  size_t cap = 16, k = 0;
  uint64_t *refs = malloc(cap * sizeof *refs);
  if (!refs) abort();
  pthread_mutex_lock(&reg_mu);
  for (int b = 0; b < REG_BUCKETS; b++)
    for (reg_entry *e = reg_table[b]; e; e = e->next) {
      if (!e->alive) continue;
      if (k == cap) {
        cap *= 2;
        refs = realloc(refs, cap * sizeof *refs);
        if (!refs) abort();
      }
      refs[k++] = e->ref;
    }
  pthread_mutex_unlock(&reg_mu);
  *n = k;
  return refs;
}
