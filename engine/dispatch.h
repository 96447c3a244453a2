/* dispatch: the producer side of subscriptions (SEMANTICS §1.8, API.md §3).
 *
 * A dispatcher decides which consumer gets which events. It is a plain
 * state machine: the stage engine feeds it subscriptions, asks, cancels and
 * batches, and it answers with upstream demand (how many more events the
 * producer should supply: first from its buffer, then from handle_demand)
 * and with outgoing (consumer, batch) pairs handed to the emit callback.
 * One interface, three kinds:
 *
 *  - SL_DISPATCH_DEMAND: each batch goes to the consumers with the highest
 *    outstanding demand first (ties in FIFO order), each taking up to its
 *    demand, so one batch may be split.
 *  - SL_DISPATCH_BROADCAST: every consumer gets every event, at the pace of
 *    the slowest consumer; demand is never asked twice. Selectors run on
 *    the consumer side: a consumer that rejects events gives their demand
 *    back by calling sl_dispatch_ask.
 *  - SL_DISPATCH_PARTITION: the caller computes a partition (0-based) per
 *    event, or -1 to drop it; each partition has at most one consumer;
 *    events a partition cannot take yet wait in a per-partition queue.
 *
 * Consumers are named by uint64 ids chosen by the caller (one id per
 * subscription). Batches are views (batch.h): a dispatch takes the
 * caller's view; every emitted view belongs to the emit callback; the
 * leftovers view belongs to the caller. Infos (the messages of
 * stage:send) are opaque uint64 tokens that must not overtake the events
 * queued ahead of them inside the dispatcher (only the partition
 * dispatcher queues events). One owner; not thread-safe. */
#ifndef SLUICE_DISPATCH_H
#define SLUICE_DISPATCH_H
#include <stddef.h>
#include <stdint.h>
#include "batch.h"

typedef struct sl_dispatch sl_dispatch;

typedef enum sl_dispatch_kind {
  SL_DISPATCH_DEMAND,
  SL_DISPATCH_BROADCAST,
  SL_DISPATCH_PARTITION
} sl_dispatch_kind;

/* Receives one outgoing batch (never empty) for consumer. The callee owns
 * the view and must release it or pass it on; it must not call back into
 * the dispatcher (queue the message, return). */
typedef void (*sl_emit_fn)(void *ud, uint64_t consumer, sl_batch batch);

typedef struct sl_dispatch_opts {
  sl_emit_fn emit;     /* required */
  void *ud;            /* passed to emit */
  /* demand: the maximum demand expected in one ask; 0 = the first ask's */
  uint64_t max_demand;
  /* demand: shuffle the consumers (among equal demands) before the first
   * dispatch, with a PRNG seeded by seed (deterministic per seed) */
  int shuffle_demands_on_first_dispatch;
  uint64_t seed;
  /* partition: number of partitions, 1..INT32_MAX */
  uint32_t partitions;
  /* partition: how many events a partition without a consumer may hold
   * before its events use demand again (0: SL_DISPATCH_VACANT_LIMIT) */
  uint64_t vacant_limit;
} sl_dispatch_opts;

#define SL_DISPATCH_VACANT_LIMIT 10000

/* Positive status of sl_dispatch_ask (demand kind): the ask was applied
 * but n exceeds the expected maximum demand; the caller logs GenStage's
 * "expects a maximum demand of N" warning. */
#define SL_DISPATCH_OVER_MAX 1

/* Inside an emit callback: the demand the batch's consumer has left
 * after it (demand kind; 0 for the other kinds, where it is not kept per
 * consumer). A consumer with demand left is not holding its producer up,
 * so the batch may reach it a little late (sl_msg.lazy). */
uint64_t sl_dispatch_emit_left(const sl_dispatch *d);

/* Creates a dispatcher of the given kind. SL_EINVAL for a missing emit
 * callback or a partition count out of range. */
int sl_dispatch_new(sl_dispatch_kind kind, const sl_dispatch_opts *opts, sl_dispatch **out);

/* Releases every queued view, pending info and the dispatcher. */
void sl_dispatch_free(sl_dispatch *d);

sl_dispatch_kind sl_dispatch_kind_of(const sl_dispatch *d);

/* Adds consumer with no demand (a subscription never creates upstream
 * demand). partition is used by the partition kind only (0-based) and
 * ignored otherwise. Returns 0, SL_EEXIST when the consumer id is already
 * subscribed (broadcast: GenStage's :already_subscribed) or the partition
 * is taken, SL_ENOENT when the partition does not exist, SL_ENOMEM. */
int sl_dispatch_subscribe(sl_dispatch *d, uint64_t consumer, int32_t partition);

/* Removes consumer and sets *upstream to the new upstream demand its
 * departure creates (broadcast: the slowest consumer may be gone). The
 * demand it had not received is kept as `pending` (demand, partition) so
 * that later asks do not request it twice. Partition: its queued events
 * stay queued for the partition's next consumer (GenStage discards them)
 * and their count becomes upstream demand (as in GenStage). SL_ENOENT for
 * an unknown id. */
int sl_dispatch_cancel(sl_dispatch *d, uint64_t consumer, uint64_t *upstream);

/* Adds n to consumer's demand and sets *upstream to the demand to pass
 * upstream. The partition kind first emits events queued for the
 * consumer's partition (up to n). Returns 0, SL_DISPATCH_OVER_MAX (demand
 * kind, see above), or SL_ENOENT for an unknown id. */
int sl_dispatch_ask(sl_dispatch *d, uint64_t consumer, uint64_t n, uint64_t *upstream);

/* n events met demand this dispatcher asked upstream: new events the
 * stage emitted, or events from its buffer taken against an upstream
 * demand. The broadcast kind asks upstream only for demand not met yet;
 * the other kinds ignore this. */
void sl_dispatch_produced(sl_dispatch *d, uint64_t n);

/* Dispatches *batch: emits what the consumers can take now and stores the
 * rest, an unsplit tail of the input, in *leftovers (the caller's, usually
 * for the buffer; SL_BATCH_EMPTY when none). *batch is consumed (it becomes
 * SL_BATCH_EMPTY). parts (partition kind only, NULL otherwise) holds one
 * partition per event of *batch, -1 to drop the event without using
 * demand. The partition kind takes at most `waiting` non-dropped events
 * of partitions that have a consumer; events beyond a partition's demand
 * are queued (unbounded), and so are those of a partition without a
 * consumer, which use no demand while it holds fewer than vacant_limit
 * (see sl_dispatch_take_vacant; GenStage counts them against the shared
 * demand, so the other partitions starve). When a
 * partition number is out of range nothing happens, *bad (if not NULL)
 * gets the event's index, the caller keeps *batch, and SL_ENOENT is
 * returned (the binding raises "unknown partition N"). SL_ENOMEM may leave
 * some events lost: treat it as fatal for the stage. */
int sl_dispatch_dispatch(sl_dispatch *d, sl_batch *batch, const int32_t *parts,
                         sl_batch *leftovers, uint32_t *bad);

/* Partition kind: the number of events queued for partitions without a
 * consumer (below their vacant_limit) since the last call. They used none
 * of the consumers' demand, so the producer owes that many events again:
 * the stage asks its source for them, and the other partitions keep
 * flowing while one has no consumer. Resets the count. */
uint64_t sl_dispatch_take_vacant(sl_dispatch *d);

/* How many events a dispatch would take now: the sum of the consumers'
 * demands (demand), `waiting` (broadcast, 0 without consumers), or
 * `waiting` non-dropped events (partition). A producer serves its buffer
 * with this many events; dispatching no more than that leaves no
 * leftovers, so buffered events keep their order. */
uint64_t sl_dispatch_accepts(const sl_dispatch *d);

/* Submits an info. Returns 1 when it may be delivered now (nothing is
 * queued ahead of it: always so for demand and broadcast), 0 when it waits
 * behind events queued in backed-up partitions (it comes out of
 * sl_dispatch_pop_info once all of them have gone out or were discarded),
 * or SL_ENOMEM. */
int sl_dispatch_info(sl_dispatch *d, uint64_t token);

/* Pops the next info that became deliverable (after an ask or a cancel)
 * into *token and returns 1; returns 0 when none is. */
int sl_dispatch_pop_info(sl_dispatch *d, uint64_t *token);

/* The default partitioning: parts[i] = the partition (0..n-1) of the hash
 * of event i's encoded bytes, for every event of b. */
void sl_dispatch_hash_partitions(const sl_batch *b, uint32_t n, int32_t *parts);

/* ---- introspection (tests, stats) ---------------------------------------- */

typedef struct sl_dispatch_state {
  size_t consumers;
  uint64_t waiting;    /* demand: sum of demands; broadcast, partition: waiting */
  uint64_t pending;    /* demand, partition: demand of cancelled consumers */
  uint64_t requested;  /* broadcast: asked upstream, not dispatched yet */
  uint64_t queued;     /* partition: events in partition queues */
  uint64_t max_demand; /* demand: expected maximum (0 until the first ask) */
} sl_dispatch_state;

void sl_dispatch_get_state(const sl_dispatch *d, sl_dispatch_state *st);

typedef struct sl_dispatch_entry {
  int has_consumer;    /* 0: a partition without subscriber */
  uint64_t consumer;
  uint64_t demand;     /* outstanding demand */
  uint64_t queued;     /* partition: events queued for it */
} sl_dispatch_entry;

/* Entry i: demand: consumers in dispatch order (highest demand first);
 * broadcast: consumers in subscription order; partition: partition i.
 * SL_ENOENT past the end. */
int sl_dispatch_entry_at(const sl_dispatch *d, size_t i, sl_dispatch_entry *e);
#endif
