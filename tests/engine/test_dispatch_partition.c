/* Unit tests of the partition dispatcher (engine/dispatch.c): subscribe,
 * ask, dispatch, cancel, queues per partition, vacant partitions, infos
 * behind queues; exact states and which consumer got which events. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "dispatch_check.h"
#include "hash.h"

/* ---- partition dispatcher ----------------------------------------------- */


static void test_partition_subscribe_ask_cancel(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 10), 10);
  CHECK_INT(state(d).waiting, 10);
  CHECK_INT(state(d).pending, 0);
  CHECK_INT(cancel(d, 1), 0);
  CHECK_INT(state(d).waiting, 10);
  CHECK_INT(state(d).pending, 10);
  CHECK_STR(demands(d), "- -");
  /* Subscribe again: the pending demand is not asked twice. */
  CHECK_INT(sl_dispatch_subscribe(d, 1, 1), 0);
  CHECK_INT(ask(d, 1, 5), 0);
  CHECK_INT(state(d).waiting, 10);
  CHECK_INT(state(d).pending, 5);
  CHECK_INT(cancel(d, 1), 0);
  CHECK_INT(state(d).pending, 10);
  sl_dispatch_free(d);
}

/* Many partitions: subscribe, ask and cancel find a consumer's partition
 * in constant time (100000 partitions took tens of seconds with a linear
 * search), and the index stays right through cancels and new
 * subscriptions whose ids collide in every way (consecutive ids, ids that
 * differ by a power of two, a freed partition taken by a new consumer). */
static void test_partition_many_consumers_index(void) {
  enum { N = 100000 };
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = N});
  clock_t t0 = clock();
  /* consumer of partition p: p + 1 for even p, (p << 20) + 1 for odd p */
  for (uint32_t p = 0; p < N; p++) {
    uint64_t c = (p % 2) ? ((uint64_t)p << 20) + 1 : (uint64_t)p + 1;
    CHECK_INT(sl_dispatch_subscribe(d, c, (int32_t)p), 0);
  }
  int asks_ok = 1;
  for (uint32_t p = 0; p < N; p++) {
    uint64_t c = (p % 2) ? ((uint64_t)p << 20) + 1 : (uint64_t)p + 1, up = 0;
    if (sl_dispatch_ask(d, c, p + 1, &up) != 0 || up != p + 1) asks_ok = 0;
  }
  CHECK(asks_ok);
  /* cancel every third partition, then give each to a new consumer */
  int cancel_ok = 1;
  for (uint32_t p = 0; p < N; p += 3) {
    uint64_t c = (p % 2) ? ((uint64_t)p << 20) + 1 : (uint64_t)p + 1, up = 9;
    if (sl_dispatch_cancel(d, c, &up) != 0 || up != 0) cancel_ok = 0;
    if (sl_dispatch_cancel(d, c, &up) != SL_ENOENT) cancel_ok = 0;
    if (sl_dispatch_ask(d, c, 1, &up) != SL_ENOENT) cancel_ok = 0;
  }
  CHECK(cancel_ok);
  int resub_ok = 1;
  for (uint32_t p = 0; p < N; p += 3) {
    uint64_t c = (uint64_t)3000000000u + p, up = 0;
    if (sl_dispatch_subscribe(d, c, (int32_t)p) != 0) resub_ok = 0;
    if (sl_dispatch_subscribe(d, c, (int32_t)((p + 1) % N)) != SL_EEXIST) resub_ok = 0;
    if (sl_dispatch_ask(d, c, 7, &up) != 0) resub_ok = 0;
  }
  CHECK(resub_ok);
  /* every partition's entry: its consumer and its demand */
  int entries_ok = 1;
  for (uint32_t p = 0; p < N; p++) {
    sl_dispatch_entry e;
    uint64_t c = p % 3 == 0 ? (uint64_t)3000000000u + p
               : (p % 2) ? ((uint64_t)p << 20) + 1 : (uint64_t)p + 1;
    uint64_t want = p % 3 == 0 ? 7 : p + 1;
    if (sl_dispatch_entry_at(d, p, &e) != 0 || !e.has_consumer || e.consumer != c || e.demand != want)
      entries_ok = 0;
  }
  CHECK(entries_ok);
  CHECK_INT(state(d).consumers, N);
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  CHECK(secs < 2.0);
  CHECK_STR(received(), "");
  sl_dispatch_free(d);
}

static void test_partition_ask_and_dispatch(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 1});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 3), 3);
  static const int32_t p0[8] = {0};
  CHECK_STR(dispatch(d, "1", p0), "");
  CHECK_STR(received(), "1:1");
  CHECK_INT(state(d).waiting, 2);
  CHECK_INT(ask(d, 1, 3), 3);
  CHECK_INT(state(d).waiting, 5);
  CHECK_STR(dispatch(d, "2 5 6 7 8 9 11", p0), "9 11");
  CHECK_STR(received(), "1:2 5 6 7 8");
  CHECK_INT(state(d).waiting, 0);
  sl_dispatch_free(d);
}

/* Events are grouped per partition, in order; -1 drops an event without
 * using demand. */
static void test_partition_drop_uses_no_demand(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  CHECK_INT(ask(d, 1, 2), 2);
  CHECK_INT(ask(d, 2, 2), 2);
  CHECK_INT(sl_dispatch_accepts(d), 4);
  const int32_t parts[] = {0, -1, 1, -1, 0, 1, -1};
  CHECK_STR(dispatch(d, "a b c d e f g", parts), "");
  CHECK_STR(received(), "1:a e | 2:c f");
  CHECK_INT(state(d).waiting, 0);
  CHECK_STR(demands(d), "1:0 2:0");
  /* Only non-dropped events count against waiting: the cut comes at the
   * first event that would exceed it. */
  CHECK_INT(ask(d, 1, 1), 1);
  CHECK_INT(ask(d, 2, 1), 1);
  const int32_t parts2[] = {-1, 0, -1, 1, -1, 0, 1};
  CHECK_STR(dispatch(d, "h i j k l m n", parts2), "m n");
  CHECK_STR(received(), "1:i | 2:k");
  sl_dispatch_free(d);
}

/* Events beyond a partition's demand are queued; the next ask releases
 * them before any demand is counted. */
static void test_partition_queues_and_releases_on_ask(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 5), 5);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  CHECK_INT(ask(d, 2, 5), 5);
  CHECK_INT(state(d).waiting, 10);
  static const int32_t p0[8] = {0};
  /* Everything goes to partition 0: half of it is queued. */
  CHECK_STR(dispatch(d, "1 2", p0), "");
  CHECK_STR(dispatch(d, "5 6 7 1 2 5 6 7", p0), "");
  CHECK_STR(received(), "1:1 2 | 1:5 6 7");
  CHECK_INT(state(d).waiting, 0);
  CHECK_STR(queues(d), "5 0");
  CHECK_INT(state(d).queued, 5);
  CHECK_STR(demands(d), "1:0 2:5");
  /* A partial ask releases part of the queue. */
  CHECK_INT(ask(d, 1, 2), 2);
  CHECK_STR(received(), "1:1 2");
  CHECK_STR(queues(d), "3 0");
  CHECK_STR(demands(d), "1:0 2:5");
  /* A larger one drains it and keeps the rest as demand. */
  CHECK_INT(ask(d, 1, 5), 5);
  CHECK_STR(received(), "1:5 6 7");
  CHECK_STR(queues(d), "0 0");
  CHECK_STR(demands(d), "1:2 2:5");
  CHECK_INT(state(d).waiting, 7);
  /* New events for a partition go behind its queue, never around it. */
  const int32_t pa[] = {1, 1, 1, 1, 1, 1, 0};
  CHECK_STR(dispatch(d, "a b c d e f g", pa), "");
  CHECK_STR(received(), "1:g | 2:a b c d e");   /* in partition order */
  CHECK_STR(queues(d), "0 1");
  CHECK_STR(dispatch(d, "h", (const int32_t[]){1}), "h");
  /* The released event uses up the demand it was released for. */
  CHECK_INT(ask(d, 2, 2), 2);
  CHECK_STR(received(), "2:f");
  CHECK_STR(demands(d), "1:1 2:1");
  CHECK_STR(dispatch(d, "h", (const int32_t[]){1}), "");
  CHECK_STR(received(), "2:h");
  sl_dispatch_free(d);
}

/* A partition without a subscriber has no demand: its events wait, and
 * they use none of the demand the other partitions asked for. */
static void test_partition_buffers_before_subscription(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  CHECK_INT(ask(d, 2, 5), 5);
  static const int32_t p0[8] = {0};
  CHECK_STR(dispatch(d, "1 2 5 6 7", p0), "");
  CHECK_STR(received(), "");
  CHECK_STR(dispatch(d, "8 9", p0), "");
  CHECK_STR(queues(d), "7 0");
  CHECK_INT(state(d).waiting, 5);
  CHECK_STR(dispatch(d, "x y", (const int32_t[]){0, 1}), "");
  CHECK_STR(received(), "2:y");
  CHECK_INT(state(d).waiting, 4);
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 5), 5);
  CHECK_STR(received(), "1:1 2 5 6 7");
  CHECK_STR(queues(d), "3 0");
  CHECK_INT(state(d).waiting, 9);
  /* The queue is served first: new events for partition 0 wait behind it. */
  CHECK_STR(dispatch(d, "1 2", p0), "");
  CHECK_STR(received(), "");
  CHECK_STR(queues(d), "5 0");
  CHECK_INT(state(d).waiting, 7);
  sl_dispatch_free(d);
}

/* Events for a vacant partition are counted for sl_dispatch_take_vacant
 * until its queue holds vacant_limit events; beyond that they use demand
 * as GenStage's do. */
static void test_partition_vacant_limit(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2, .vacant_limit = 3});
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  CHECK_INT(ask(d, 2, 4), 4);
  CHECK_STR(dispatch(d, "a b c", (const int32_t[]){0, 1, 0}), "");
  CHECK_STR(received(), "2:b");
  CHECK_INT(sl_dispatch_take_vacant(d), 2);
  CHECK_INT(sl_dispatch_take_vacant(d), 0);
  CHECK_INT(state(d).waiting, 3);
  /* the queue holds 2: one more is free, then they use demand */
  CHECK_STR(dispatch(d, "d e f g h", (const int32_t[]){0, 0, 0, 0, 0}), "h");
  CHECK_INT(sl_dispatch_take_vacant(d), 1);
  CHECK_STR(queues(d), "6 0");
  CHECK_INT(state(d).waiting, 0);
  CHECK_INT(sl_dispatch_take_vacant(d), 0);
  sl_dispatch_free(d);
}

/* Cancel: open demand becomes pending; queued events stay queued for the
 * partition's next consumer, which gets them first. */
static void test_partition_cancel_keeps_queue(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  CHECK_INT(ask(d, 2, 5), 5);
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  const int32_t parts[] = {0, 0, 1, 0, 0};
  CHECK_STR(dispatch(d, "1 2 5 6 7", parts), "");
  CHECK_STR(received(), "2:5");
  CHECK_STR(queues(d), "4 0");
  CHECK_INT(cancel(d, 1), 4);
  CHECK_STR(queues(d), "4 0");
  CHECK_INT(state(d).waiting, 4);
  CHECK_INT(state(d).pending, 0);
  CHECK_STR(demands(d), "- 2:4");
  CHECK_INT(cancel(d, 2), 0);
  CHECK_INT(state(d).pending, 4);
  CHECK_INT(sl_dispatch_subscribe(d, 3, 0), 0);
  CHECK_INT(ask(d, 3, 3), 0);                 /* the pending demand covers it */
  CHECK_STR(received(), "3:1 2 6");
  CHECK_STR(queues(d), "1 0");
  sl_dispatch_free(d);
}

/* A number out of range is an error naming the event; nothing happens. */
static void test_partition_unknown_partition(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 5), 5);
  sl_batch b = mk("a b c"), left = SL_BATCH_EMPTY;
  uint32_t bad = 99;
  const int32_t parts[] = {0, 1, 2};
  CHECK_INT(sl_dispatch_dispatch(d, &b, parts, &left, &bad), SL_ENOENT);
  CHECK_INT(bad, 2);
  CHECK_INT(parts[bad], 2);
  CHECK_INT(b.count, 3);                 /* still the caller's */
  CHECK(left.store == NULL);
  CHECK_STR(received(), "");
  CHECK_INT(state(d).waiting, 5);
  const int32_t neg[] = {-2, 0, 0};
  CHECK_INT(sl_dispatch_dispatch(d, &b, neg, &left, &bad), SL_ENOENT);
  CHECK_INT(bad, 0);
  CHECK_INT(sl_dispatch_dispatch(d, &b, NULL, &left, &bad), SL_EINVAL);
  sl_batch_release(&b);
  sl_dispatch_free(d);
}

/* One consumer per partition; the partition must exist. */
static void test_partition_taken_and_unknown_on_subscribe(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), SL_EEXIST);
  CHECK_INT(sl_dispatch_subscribe(d, 1, 1), SL_EEXIST);   /* same id elsewhere */
  CHECK_INT(sl_dispatch_subscribe(d, 3, 2), SL_ENOENT);
  CHECK_INT(sl_dispatch_subscribe(d, 3, -1), SL_ENOENT);
  CHECK_STR(demands(d), "1:0 -");
  uint64_t up;
  CHECK_INT(sl_dispatch_ask(d, 3, 1, &up), SL_ENOENT);
  CHECK_INT(sl_dispatch_cancel(d, 3, &up), SL_ENOENT);
  /* Once cancelled, the partition is free again. */
  CHECK_INT(cancel(d, 1), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  sl_dispatch_free(d);
  sl_dispatch_opts o = {.emit = emit, .partitions = 0};
  CHECK_INT(sl_dispatch_new(SL_DISPATCH_PARTITION, &o, &d), SL_EINVAL);
  CHECK(d == NULL);
  o.emit = NULL;
  CHECK_INT(sl_dispatch_new(SL_DISPATCH_DEMAND, &o, &d), SL_EINVAL);
}

/* A partition's events gathered from a mixed batch are copied; a
 * contiguous run is sliced. */
static void test_partition_slices_contiguous_runs(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  ask(d, 1, 10);
  ask(d, 2, 10);
  sl_batch b = mk("a b c d"), left;
  sl_store *s = b.store;
  const int32_t runs[] = {0, 0, 1, 1};
  CHECK_INT(sl_dispatch_dispatch(d, &b, runs, &left, NULL), 0);
  CHECK(last_store == s);
  CHECK_STR(received(), "1:a b | 2:c d");
  b = mk("a b c d");
  s = b.store;
  const int32_t mixed[] = {1, 0, 1, 1};
  CHECK_INT(sl_dispatch_dispatch(d, &b, mixed, &left, NULL), 0);
  CHECK(last_store != s);
  CHECK_STR(received(), "1:b | 2:a c d");
  sl_dispatch_free(d);
}

/* Infos: immediate without backlog; otherwise behind the events queued in
 * every backed-up partition, delivered once all of them have drained
 * (or were discarded by a cancel). Demand and broadcast never hold one. */
static void test_partition_info_waits_behind_queues(void) {
  uint64_t tok;
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 3});
  CHECK_INT(sl_dispatch_info(d, 1), 1);
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 3, 2), 0);
  CHECK_INT(ask(d, 3, 7), 7);
  const int32_t parts[] = {0, 1, 0, 1, 2, 2};
  CHECK_STR(dispatch(d, "a b c d e f", parts), "");
  CHECK_STR(received(), "3:e f");
  CHECK_STR(queues(d), "2 2 0");
  CHECK_INT(sl_dispatch_info(d, 7), 0);
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
  /* More events behind the marker do not hold it back. */
  CHECK_STR(dispatch(d, "g", (const int32_t[]){0}), "");
  CHECK_STR(queues(d), "3 2 0");
  CHECK_INT(ask(d, 1, 2), 2);
  CHECK_STR(received(), "1:a c");
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);   /* partition 1 still ahead */
  CHECK_INT(ask(d, 2, 1), 1);
  CHECK_STR(received(), "2:b");
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
  CHECK_INT(sl_dispatch_info(d, 8), 0);
  CHECK_INT(ask(d, 2, 1), 1);
  CHECK_STR(received(), "2:d");
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 1);
  CHECK_INT(tok, 7);
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);   /* 8 waits for "g" */
  /* A cancel keeps the queue, and the infos behind it, for the
   * partition's next consumer. */
  CHECK_INT(cancel(d, 1), 1);
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 4, 0), 0);
  ask(d, 4, 4);
  CHECK_STR(received(), "4:g");
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 1);
  CHECK_INT(tok, 8);
  CHECK_INT(sl_dispatch_info(d, 9), 1);
  sl_dispatch_free(d);
  d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_info(d, 1), 1);
  sl_dispatch_free(d);
  d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_info(d, 1), 1);
  CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
  sl_dispatch_free(d);
}

/* Freeing with queued events and pending infos releases them (checked by
 * the sanitizers). */
static void test_partition_free_with_queues(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  ask(d, 1, 5);
  const int32_t parts[] = {1, 0, 1, 1};
  CHECK_STR(dispatch(d, "a b c d", parts), "");
  CHECK_INT(sl_dispatch_info(d, 5), 0);
  CHECK_STR(dispatch(d, "e", (const int32_t[]){1}), "");
  CHECK_STR(received(), "1:b");
  sl_dispatch_free(d);
}

/* Many infos in flight: each comes out once, in order, and their slots
 * are reused round after round. */
static void test_partition_many_infos(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 2});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 1), 0);
  static const int32_t p0[8] = {0};
  uint64_t tok, next = 1;
  for (int round = 0; round < 3; round++) {
    ask(d, 2, 5);               /* credits waiting; partition 0 has no demand */
    for (int i = 0; i < 5; i++) {
      CHECK_STR(dispatch(d, "e", p0), "");
      CHECK_INT(sl_dispatch_info(d, next + (uint64_t)i), 0);
    }
    CHECK_STR(queues(d), "5 0");
    CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
    ask(d, 1, 2);
    CHECK_STR(received(), "1:e | 1:e");
    for (int i = 0; i < 2; i++) {
      CHECK_INT(sl_dispatch_pop_info(d, &tok), 1);
      CHECK_INT(tok, next++);
    }
    CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
    ask(d, 1, 3);
    CHECK_STR(received(), "1:e | 1:e | 1:e");
    for (int i = 0; i < 3; i++) {
      CHECK_INT(sl_dispatch_pop_info(d, &tok), 1);
      CHECK_INT(tok, next++);
    }
    CHECK_INT(sl_dispatch_pop_info(d, &tok), 0);
    CHECK_INT(state(d).queued, 0);
  }
  CHECK_STR(demands(d), "1:0 2:15");
  sl_dispatch_free(d);
}

int main(void) {
  RUN(test_partition_subscribe_ask_cancel);
  RUN(test_partition_many_consumers_index);
  RUN(test_partition_ask_and_dispatch);
  RUN(test_partition_drop_uses_no_demand);
  RUN(test_partition_queues_and_releases_on_ask);
  RUN(test_partition_buffers_before_subscription);
  RUN(test_partition_cancel_keeps_queue);
  RUN(test_partition_vacant_limit);
  RUN(test_partition_unknown_partition);
  RUN(test_partition_taken_and_unknown_on_subscribe);
  RUN(test_partition_slices_contiguous_runs);
  RUN(test_partition_info_waits_behind_queues);
  RUN(test_partition_free_with_queues);
  RUN(test_partition_many_infos);
  return CHECK_SUMMARY();
}
