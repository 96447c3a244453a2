/* subs: the subscriptions of one stage record (engine/stage.c).
 *
 * A stage keeps each subscription twice: in a list per side, in the order
 * they were made (what a stop and the stats walk), and in one hash table by
 * subscription id, so that the lookups on the event path (an ask, a batch
 * of events, the dispatcher's emit) cost O(1) whatever the fan-out. Side 1
 * (producer side): the consumers subscribed to this stage; side 0: the
 * producers this stage subscribed to. An id may be on both sides (a stage
 * subscribed to itself). Allocation failures abort, as on the rest of the
 * message path. One owner; not thread-safe. */
#ifndef SLUICE_SUBS_H
#define SLUICE_SUBS_H
#include <stddef.h>
#include <stdint.h>
#include "demand.h"

typedef struct sl_sub {
  uint64_t id;
  uint64_t peer;             /* the other stage's ref */
  int producer_side;         /* 1: a consumer of ours; 0: one of our producers */
  int cancel;                /* consumer side: sl_cancel_mode */
  int selector;              /* consumer side: events go through ops->select */
  sl_demand d;               /* consumer side */
  struct sl_sub *prev, *next;  /* the side's list */
  struct sl_sub *hnext;        /* hash chain */
} sl_sub;

typedef struct sl_subs_side {
  sl_sub *head, *tail;
  int n;
} sl_subs_side;

typedef struct sl_subs {
  sl_subs_side side[2];      /* [0]: our producers, [1]: our consumers */
  sl_sub **table;
  size_t nbuckets, count;
} sl_subs;

/* The subscription id on a side, or NULL. */
sl_sub *sl_subs_find(const sl_subs *s, uint64_t id, int producer_side);
/* A new zeroed subscription appended to its side. */
sl_sub *sl_subs_add(sl_subs *s, uint64_t id, uint64_t peer, int producer_side);
/* Unlinks c (the caller frees it). */
void sl_subs_remove(sl_subs *s, sl_sub *c);
/* Frees every subscription and the table. */
void sl_subs_free(sl_subs *s);
#endif
