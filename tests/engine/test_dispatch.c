/* Unit tests of the dispatchers (engine/dispatch.c) and the default hash
 * (engine/hash.c), written after GenStage's dispatcher tests: subscribe,
 * ask, dispatch, cancel, then assert the exact state and which consumer
 * got which events. Events are small words ("a", "1", ...); consumers are
 * the ids 1, 2, 3. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "batch.h"
#include "check.h"
#include "dispatch.h"
#include "hash.h"
#include "status.h"

/* ---- helpers ------------------------------------------------------------ */

/* A batch of the space-separated words of s, one event each. */
static sl_batch mk(const char *s) {
  sl_batch_builder bb;
  sl_batch b;
  sl_bb_init(&bb);
  while (*s) {
    size_t n = strcspn(s, " ");
    sl_bb_add(&bb, s, n);
    s += n;
    while (*s == ' ') s++;
  }
  sl_bb_finish(&bb, &b);
  sl_bb_free(&bb);
  return b;
}

static void cat_events(char *out, size_t cap, const sl_batch *b) {
  for (uint32_t i = 0; i < b->count; i++) {
    size_t len, o = strlen(out);
    const char *p = sl_batch_event(b, i, &len);
    snprintf(out + o, cap - o, "%s%.*s", o ? " " : "", (int)len, p);
  }
}

/* The "mailbox": every emitted batch as "consumer:events", joined by " | ".
 * The last emitted store is kept to check that views share storage. */
static char sent[1024];
static sl_store *last_store;

static void emit(void *ud, uint64_t consumer, sl_batch b) {
  (void)ud;
  size_t o = strlen(sent);
  snprintf(sent + o, sizeof sent - o, "%s%llu:", o ? " | " : "", (unsigned long long)consumer);
  char ev[512] = "";
  cat_events(ev, sizeof ev, &b);
  o = strlen(sent);
  snprintf(sent + o, sizeof sent - o, "%s", ev);
  CHECK(b.count > 0);
  last_store = b.store;
  sl_batch_release(&b);
}

/* Returns what was sent since the last call and empties the mailbox. */
static const char *received(void) {
  static char out[1024];
  memcpy(out, sent, sizeof out);
  sent[0] = 0;
  return out;
}

/* The consumers' demands in entry order, e.g. "3:5 1:4 2:2". */
static const char *demands(const sl_dispatch *d) {
  static char out[256];
  sl_dispatch_entry e;
  out[0] = 0;
  for (size_t i = 0; sl_dispatch_entry_at(d, i, &e) == 0; i++) {
    size_t o = strlen(out);
    if (e.has_consumer)
      snprintf(out + o, sizeof out - o, "%s%llu:%llu", o ? " " : "",
               (unsigned long long)e.consumer, (unsigned long long)e.demand);
    else
      snprintf(out + o, sizeof out - o, "%s-", o ? " " : "");
  }
  return out;
}

static sl_dispatch_state state(const sl_dispatch *d) {
  sl_dispatch_state st;
  sl_dispatch_get_state(d, &st);
  return st;
}

static sl_dispatch *new_disp(sl_dispatch_kind kind, sl_dispatch_opts o) {
  sl_dispatch *d = NULL;
  o.emit = emit;
  CHECK_INT(sl_dispatch_new(kind, &o, &d), 0);
  sent[0] = 0;
  return d;
}

static uint64_t ask(sl_dispatch *d, uint64_t consumer, uint64_t n) {
  uint64_t up = 999;
  int rc = sl_dispatch_ask(d, consumer, n, &up);
  CHECK(rc == 0 || rc == SL_DISPATCH_OVER_MAX);
  return up;
}

static uint64_t cancel(sl_dispatch *d, uint64_t consumer) {
  uint64_t up = 999;
  CHECK_INT(sl_dispatch_cancel(d, consumer, &up), 0);
  return up;
}

/* Dispatches the words of s (with partitions parts, or NULL) and returns
 * the leftovers as text. */
static const char *dispatch(sl_dispatch *d, const char *s, const int32_t *parts) {
  static char out[256];
  sl_batch b = mk(s), left;
  out[0] = 0;
  CHECK_INT(sl_dispatch_dispatch(d, &b, parts, &left, NULL), 0);
  CHECK(b.store == NULL);
  cat_events(out, sizeof out, &left);
  sl_batch_release(&left);
  return out;
}

/* ---- demand dispatcher -------------------------------------------------- */

static void test_demand_subscribe_ask_cancel(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_STR(demands(d), "1:0");
  CHECK_INT(ask(d, 1, 10), 10);
  CHECK_STR(demands(d), "1:10");
  CHECK_INT(state(d).max_demand, 10);
  /* Cancelling leaves the unfulfilled demand pending. */
  CHECK_INT(cancel(d, 1), 0);
  CHECK_STR(demands(d), "");
  CHECK_INT(state(d).pending, 10);
  /* A new consumer's asks are served by the pending demand first. */
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 5), 0);
  CHECK_INT(state(d).pending, 5);
  CHECK_INT(cancel(d, 1), 0);
  CHECK_INT(state(d).pending, 10);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_INT(ask(d, 2, 12), 2);
  CHECK_INT(state(d).pending, 0);
  sl_dispatch_free(d);
}

static void test_demand_ask_and_dispatch(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 3), 3);
  CHECK_STR(dispatch(d, "a", NULL), "");
  CHECK_STR(received(), "1:a");
  CHECK_STR(demands(d), "1:2");
  CHECK_INT(ask(d, 1, 3), 3);
  CHECK_STR(demands(d), "1:5");
  CHECK_INT(sl_dispatch_accepts(d), 5);
  CHECK_STR(dispatch(d, "b c d e f g h", NULL), "g h");
  CHECK_STR(received(), "1:b c d e f");
  CHECK_STR(demands(d), "1:0");
  CHECK_STR(dispatch(d, "i j", NULL), "i j");
  CHECK_STR(received(), "");
  sl_dispatch_free(d);
}

/* The list stays sorted by demand, highest first; a re-inserted consumer
 * goes after the ones with equal demand. */
static void test_demand_orders_by_highest_demand(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  for (uint64_t c = 1; c <= 3; c++) CHECK_INT(sl_dispatch_subscribe(d, c, 0), 0);
  CHECK_STR(demands(d), "1:0 2:0 3:0");
  CHECK_INT(ask(d, 1, 4), 4);
  CHECK_INT(ask(d, 2, 2), 2);
  CHECK_INT(ask(d, 3, 3), 3);
  CHECK_STR(demands(d), "1:4 3:3 2:2");
  CHECK_INT(ask(d, 3, 2), 2);
  CHECK_STR(demands(d), "3:5 1:4 2:2");
  CHECK_INT(ask(d, 2, 4), 4);
  CHECK_STR(demands(d), "2:6 3:5 1:4");
  CHECK_INT(ask(d, 1, 1), 1);
  CHECK_STR(demands(d), "2:6 3:5 1:5");   /* after the equal one */
  sl_dispatch_free(d);
}

/* One batch is split across consumers; served consumers move back. */
static void test_demand_splits_batches(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_INT(ask(d, 1, 3), 3);
  CHECK_INT(ask(d, 2, 2), 2);
  CHECK_STR(demands(d), "1:3 2:2");
  /* One batch fits all. */
  CHECK_STR(dispatch(d, "a b c d e", NULL), "");
  CHECK_STR(received(), "1:a b c | 2:d e");
  CHECK_STR(dispatch(d, "a b c", NULL), "a b c");
  CHECK_STR(demands(d), "1:0 2:0");
  CHECK_STR(received(), "");
  /* Two batches, the first one served by the head consumer alone. */
  CHECK_INT(ask(d, 1, 3), 3);
  CHECK_INT(ask(d, 2, 3), 3);
  CHECK_STR(demands(d), "1:3 2:3");
  CHECK_STR(dispatch(d, "a b", NULL), "");
  CHECK_STR(received(), "1:a b");
  CHECK_STR(demands(d), "2:3 1:1");
  CHECK_STR(dispatch(d, "c d", NULL), "");
  CHECK_STR(received(), "2:c d");
  CHECK_STR(demands(d), "1:1 2:1");
  /* Everyone exhausted, with a leftover. */
  CHECK_STR(dispatch(d, "e f g", NULL), "g");
  CHECK_STR(received(), "1:e | 2:f");
  CHECK_STR(demands(d), "1:0 2:0");
  sl_dispatch_free(d);
}

/* Exhausted consumers go to the back in the order they were served; the
 * one served in part returns to its sorted place among the others. */
static void test_demand_reorders_after_dispatch(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  for (uint64_t c = 1; c <= 4; c++) CHECK_INT(sl_dispatch_subscribe(d, c, 0), 0);
  ask(d, 1, 5);
  ask(d, 2, 5);
  ask(d, 3, 3);
  ask(d, 4, 3);
  CHECK_STR(demands(d), "1:5 2:5 3:3 4:3");
  CHECK_STR(dispatch(d, "1 2 3 4 5 6 7 8 9 10 11 12", NULL), "");
  CHECK_STR(received(), "1:1 2 3 4 5 | 2:6 7 8 9 10 | 3:11 12");
  CHECK_STR(demands(d), "4:3 3:1 1:0 2:0");
  CHECK_INT(sl_dispatch_accepts(d), 4);
  sl_dispatch_free(d);
}

/* Leftovers eat into the pending demand of cancelled consumers, so it is
 * not requested again: pending = max(pending - leftovers, 0). */
static void test_demand_pending_reduced_by_leftovers(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 5), 5);
  CHECK_INT(cancel(d, 1), 0);
  CHECK_INT(state(d).pending, 5);
  CHECK_STR(dispatch(d, "a b c", NULL), "a b c");
  CHECK_INT(state(d).pending, 2);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_INT(ask(d, 2, 4), 2);
  CHECK_INT(state(d).pending, 0);
  CHECK_STR(dispatch(d, "a b c d e f g", NULL), "e f g");
  CHECK_INT(state(d).pending, 0);
  sl_dispatch_free(d);
}

/* A batch taken whole by one consumer is handed over, not copied; a split
 * batch is sliced, sharing its store. */
static void test_demand_shares_storage(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  ask(d, 1, 10);
  sl_batch b = mk("a b c"), left;
  sl_store *s = b.store;
  CHECK_INT(sl_dispatch_dispatch(d, &b, NULL, &left, NULL), 0);
  CHECK(last_store == s);
  CHECK(left.store == NULL);
  b = mk("d e f g h i j k");
  s = b.store;
  CHECK_INT(sl_dispatch_dispatch(d, &b, NULL, &left, NULL), 0);
  CHECK(last_store == s);
  CHECK(left.store == s);
  CHECK_INT(left.count, 1);
  sl_batch_release(&left);
  CHECK_STR(received(), "1:a b c | 1:d e f g h i j");
  sl_dispatch_free(d);
}

/* The shuffle is deterministic per seed, happens once, reorders only
 * consumers with equal demand, and every seed gives a valid split. */
static void test_demand_shuffle_on_first_dispatch(void) {
  int orders[2] = {0, 0};
  for (uint64_t seed = 1; seed <= 32; seed++) {
    sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND,
                              (sl_dispatch_opts){.shuffle_demands_on_first_dispatch = 1, .seed = seed});
    CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
    CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
    CHECK_INT(sl_dispatch_subscribe(d, 3, 0), 0);
    ask(d, 1, 3);
    ask(d, 2, 3);
    ask(d, 3, 1);
    CHECK_STR(dispatch(d, "a b c d e f g", NULL), "");
    const char *got = received();
    if (strcmp(got, "1:a b c | 2:d e f | 3:g") == 0) orders[0]++;
    else if (strcmp(got, "2:a b c | 1:d e f | 3:g") == 0) orders[1]++;
    else CHECK_STR(got, "1:a b c | 2:d e f | 3:g");
    /* Only the first dispatch is shuffled. */
    ask(d, 3, 2);
    ask(d, 1, 2);
    CHECK_STR(demands(d), "3:2 1:2 2:0");
    CHECK_STR(dispatch(d, "h i j k", NULL), "");
    CHECK_STR(received(), "3:h i | 1:j k");
    sl_dispatch_free(d);
  }
  CHECK(orders[0] > 0 && orders[1] > 0);
  CHECK_INT(orders[0] + orders[1], 32);
  /* Same seed, same order. */
  char first[128];
  for (int run = 0; run < 2; run++) {
    sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND,
                              (sl_dispatch_opts){.shuffle_demands_on_first_dispatch = 1, .seed = 42});
    for (uint64_t c = 1; c <= 5; c++) {
      CHECK_INT(sl_dispatch_subscribe(d, c, 0), 0);
      ask(d, c, 1);
    }
    CHECK_STR(dispatch(d, "a b c d e", NULL), "");
    if (run == 0) snprintf(first, sizeof first, "%s", received());
    else CHECK_STR(received(), first);
    sl_dispatch_free(d);
  }
}

/* The first ask fixes the expected maximum unless max_demand is given;
 * a larger ask is applied and reported for the warning. */
static void test_demand_warns_on_demand_over_max(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  uint64_t up;
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_INT(sl_dispatch_ask(d, 1, 3, &up), 0);
  CHECK_INT(sl_dispatch_ask(d, 2, 4, &up), SL_DISPATCH_OVER_MAX);
  CHECK_INT(up, 4);
  CHECK_STR(demands(d), "2:4 1:3");
  sl_dispatch_free(d);
  d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){.max_demand = 10});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_ask(d, 1, 3, &up), 0);
  CHECK_INT(sl_dispatch_ask(d, 1, 10, &up), 0);
  CHECK_INT(sl_dispatch_ask(d, 1, 11, &up), SL_DISPATCH_OVER_MAX);
  sl_dispatch_free(d);
}

static void test_demand_unknown_and_duplicate(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_DEMAND, (sl_dispatch_opts){0});
  uint64_t up;
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), SL_EEXIST);
  CHECK_INT(sl_dispatch_ask(d, 2, 1, &up), SL_ENOENT);
  CHECK_INT(sl_dispatch_cancel(d, 2, &up), SL_ENOENT);
  CHECK_INT(state(d).consumers, 1);
  /* Without consumers everything is left over. */
  CHECK_INT(cancel(d, 1), 0);
  CHECK_STR(dispatch(d, "a b", NULL), "a b");
  sl_dispatch_free(d);
}

/* ---- broadcast dispatcher ----------------------------------------------- */

static void test_broadcast_subscribe_and_cancel(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_STR(demands(d), "1:0");
  CHECK_INT(cancel(d, 1), 0);
  CHECK_STR(demands(d), "");
  sl_dispatch_free(d);
}

/* Demand goes upstream at the pace of the slowest consumer; everyone gets
 * the same first `waiting` events. */
static void test_broadcast_slowest_pace(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_INT(ask(d, 1, 10), 0);
  CHECK_STR(demands(d), "1:10 2:0");
  CHECK_INT(state(d).waiting, 0);
  CHECK_INT(ask(d, 2, 5), 5);
  CHECK_STR(demands(d), "1:5 2:0");
  CHECK_INT(state(d).waiting, 5);
  CHECK_INT(state(d).requested, 5);
  CHECK_STR(dispatch(d, "a b c d e f g", NULL), "f g");
  CHECK_STR(received(), "1:a b c d e | 2:a b c d e");
  CHECK_INT(state(d).waiting, 0);
  CHECK_INT(state(d).requested, 0);
  CHECK_STR(dispatch(d, "f g", NULL), "f g");
  CHECK_STR(received(), "");
  CHECK_INT(ask(d, 2, 7), 5);
  CHECK_STR(demands(d), "1:0 2:2");
  CHECK_STR(dispatch(d, "f g", NULL), "");
  CHECK_STR(received(), "1:f g | 2:f g");
  CHECK_INT(state(d).waiting, 3);
  CHECK_INT(state(d).requested, 3);
  sl_dispatch_free(d);
}

/* gen_stage #318: a consumer that subscribes and asks after the first one
 * does not make the dispatcher ask upstream again for events already
 * requested. */
static void test_broadcast_never_duplicates_demand(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 10), 10);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_STR(demands(d), "1:10 2:0");
  CHECK_INT(state(d).waiting, 0);
  CHECK_INT(state(d).requested, 10);
  CHECK_INT(ask(d, 2, 10), 0);
  CHECK_STR(demands(d), "1:0 2:0");
  CHECK_INT(state(d).waiting, 10);
  CHECK_STR(dispatch(d, "1 2 3 4 5 6 7 8 9 10", NULL), "");
  CHECK_STR(received(), "1:1 2 3 4 5 6 7 8 9 10 | 2:1 2 3 4 5 6 7 8 9 10");
  CHECK_INT(ask(d, 1, 10), 0);
  CHECK_INT(ask(d, 2, 10), 10);
  sl_dispatch_free(d);
}

/* A consumer that subscribes mid-way holds the others back until it asks;
 * the events that arrive meanwhile are left over for the buffer. */
static void test_broadcast_subscribe_midway(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 10), 10);
  CHECK_STR(dispatch(d, "a b c", NULL), "");
  CHECK_STR(received(), "1:a b c");
  CHECK_INT(state(d).waiting, 7);
  CHECK_INT(state(d).requested, 7);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_STR(demands(d), "1:7 2:0");
  CHECK_INT(state(d).waiting, 0);
  CHECK_INT(sl_dispatch_accepts(d), 0);
  CHECK_STR(dispatch(d, "d e", NULL), "d e");
  CHECK_STR(received(), "");
  CHECK_INT(ask(d, 2, 4), 0);
  CHECK_STR(demands(d), "1:3 2:0");
  CHECK_INT(sl_dispatch_accepts(d), 4);
  CHECK_STR(dispatch(d, "d e", NULL), "");
  CHECK_STR(received(), "1:d e | 2:d e");
  CHECK_INT(state(d).waiting, 2);
  CHECK_INT(state(d).requested, 5);
  sl_dispatch_free(d);
}

/* Cancelling the slowest consumer raises the minimum and releases demand. */
static void test_broadcast_cancel_releases_demand(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 3, 0), 0);
  CHECK_INT(ask(d, 1, 10), 0);
  CHECK_INT(ask(d, 2, 4), 0);
  CHECK_INT(ask(d, 3, 6), 4);
  CHECK_STR(demands(d), "1:6 2:0 3:2");
  CHECK_INT(cancel(d, 2), 2);
  CHECK_STR(demands(d), "1:4 3:0");
  CHECK_INT(state(d).waiting, 6);
  CHECK_INT(state(d).requested, 6);
  /* Cancelling a consumer that is not the slowest releases nothing. */
  CHECK_INT(cancel(d, 1), 0);
  CHECK_STR(demands(d), "3:0");
  /* Once nobody is left, nothing goes out and every event is left over. */
  CHECK_INT(cancel(d, 3), 0);
  CHECK_INT(sl_dispatch_accepts(d), 0);
  CHECK_STR(dispatch(d, "a b", NULL), "a b");
  CHECK_STR(received(), "");
  sl_dispatch_free(d);
}

/* The same consumer id twice is refused and changes nothing. */
static void test_broadcast_refuses_duplicate(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(ask(d, 1, 5), 5);
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), SL_EEXIST);
  CHECK_STR(demands(d), "1:0");
  CHECK_INT(state(d).waiting, 5);
  CHECK_INT(state(d).consumers, 1);
  sl_dispatch_free(d);
}

/* Every consumer gets a view of the same store. */
static void test_broadcast_shares_storage(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_BROADCAST, (sl_dispatch_opts){0});
  CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  ask(d, 1, 2);
  ask(d, 2, 2);
  sl_batch b = mk("x y z"), left;
  sl_store *s = b.store;
  CHECK_INT(sl_dispatch_dispatch(d, &b, NULL, &left, NULL), 0);
  CHECK(last_store == s);
  CHECK(left.store == s);
  sl_batch_release(&left);
  CHECK_STR(received(), "1:x y | 2:x y");
  sl_dispatch_free(d);
}

/* ---- partition dispatcher ----------------------------------------------- */

static const char *queues(const sl_dispatch *d) {
  static char out[256];
  sl_dispatch_entry e;
  out[0] = 0;
  for (size_t i = 0; sl_dispatch_entry_at(d, i, &e) == 0; i++) {
    size_t o = strlen(out);
    snprintf(out + o, sizeof out - o, "%s%llu", o ? " " : "", (unsigned long long)e.queued);
  }
  return out;
}

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

/* ---- invariants under random traffic ------------------------------------ */

typedef struct tally {
  uint64_t got[4];     /* events received per consumer 1..3 (index 0 unused) */
} tally;

static void count_emit(void *ud, uint64_t consumer, sl_batch b) {
  tally *t = ud;
  if (consumer >= 1 && consumer <= 3) t->got[consumer] += b.count;
  sl_batch_release(&b);
}

static uint64_t rnd(uint64_t *s) {
  *s = *s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
  return *s >> 33;
}

static sl_batch mk_n(uint32_t n) {
  sl_batch_builder bb;
  sl_batch b;
  sl_bb_init(&bb);
  for (uint32_t i = 0; i < n; i++) sl_bb_add(&bb, "e", 1);
  sl_bb_finish(&bb, &b);
  sl_bb_free(&bb);
  return b;
}

/* For every kind: nobody gets more than it asked, every event is either
 * emitted, queued, dropped or left over, and (demand) the list stays
 * sorted, (broadcast) demand upstream is exactly the slowest consumer's. */
static void test_invariants_under_random_traffic(void) {
  for (int kind = 0; kind < 3; kind++) {
    tally t = {{0}};
    sl_dispatch_opts o = {.emit = count_emit, .ud = &t, .partitions = 3};
    sl_dispatch *d;
    CHECK_INT(sl_dispatch_new((sl_dispatch_kind)kind, &o, &d), 0);
    uint64_t asked[4] = {0}, seed = 7 + (uint64_t)kind, upstream = 0;
    uint64_t in = 0, left = 0, dropped = 0;
    for (uint64_t c = 1; c <= 3; c++) CHECK_INT(sl_dispatch_subscribe(d, c, (int32_t)c - 1), 0);
    for (int step = 0; step < 5000; step++) {
      if (rnd(&seed) % 2) {
        uint64_t c = 1 + rnd(&seed) % 3, n = rnd(&seed) % 20, up;
        int rc = sl_dispatch_ask(d, c, n, &up);
        CHECK(rc == 0 || rc == SL_DISPATCH_OVER_MAX);
        asked[c] += n;
        upstream += up;
      } else {
        uint32_t n = (uint32_t)(rnd(&seed) % 30);
        int32_t parts[30];
        for (uint32_t i = 0; i < n; i++) {
          parts[i] = (int32_t)(rnd(&seed) % 4) - 1;
        }
        uint64_t before = sl_dispatch_accepts(d);
        sl_batch b = mk_n(n), l;
        CHECK_INT(sl_dispatch_dispatch(d, &b, kind == 2 ? parts : NULL, &l, NULL), 0);
        in += n;
        left += l.count;
        if (kind == 2) {
          uint32_t cut = n - l.count;
          for (uint32_t i = 0; i < cut; i++) dropped += parts[i] < 0;
        } else {
          CHECK_INT(n - l.count, n < before ? n : before);
        }
        sl_batch_release(&l);
      }
      for (uint64_t c = 1; c <= 3; c++) CHECK(t.got[c] <= asked[c]);
      if (kind == SL_DISPATCH_DEMAND) {
        sl_dispatch_entry e, prev = {0, 0, UINT64_MAX, 0};
        uint64_t sum = 0;
        for (size_t i = 0; sl_dispatch_entry_at(d, i, &e) == 0; prev = e, i++) {
          CHECK(e.demand <= prev.demand);
          sum += e.demand;
        }
        CHECK_INT(sum, sl_dispatch_accepts(d));
        CHECK_INT(t.got[1] + t.got[2] + t.got[3] + left, in);
        CHECK_INT(upstream, asked[1] + asked[2] + asked[3]);
      } else if (kind == SL_DISPATCH_BROADCAST) {
        uint64_t slowest = asked[1];
        for (uint64_t c = 2; c <= 3; c++) slowest = asked[c] < slowest ? asked[c] : slowest;
        CHECK_INT(upstream, slowest);
        CHECK(t.got[1] == t.got[2] && t.got[2] == t.got[3]);
        CHECK_INT(t.got[1] + left, in);
      } else {
        CHECK_INT(t.got[1] + t.got[2] + t.got[3] + state(d).queued + dropped + left, in);
        CHECK_INT(upstream, asked[1] + asked[2] + asked[3]);
      }
    }
    CHECK(t.got[1] > 0 && t.got[2] > 0 && t.got[3] > 0);
    sl_dispatch_free(d);
  }
}

/* ---- default hash ------------------------------------------------------- */

static void test_hash_is_deterministic_and_spreads(void) {
  CHECK(sl_hash_bytes("abc", 3) == sl_hash_bytes("abc", 3));
  CHECK(sl_hash_bytes("abc", 3) != sl_hash_bytes("abd", 3));
  CHECK(sl_hash_bytes("", 0) == sl_hash_bytes(NULL, 0));
  CHECK(sl_hash_bytes("", 0) != sl_hash_bytes("\0", 1));
  CHECK(sl_hash_bytes("aaaaaaaaa", 9) != sl_hash_bytes("aaaaaaaaaa", 10));
  char big[100];
  memset(big, 'x', sizeof big);
  uint64_t h = sl_hash_bytes(big, sizeof big);
  big[57] = 'y';
  CHECK(sl_hash_bytes(big, sizeof big) != h);
  /* 80000 keys over 8 partitions: each within 3% of its share. */
  uint32_t count[8] = {0};
  char key[32];
  for (int i = 1; i <= 80000; i++) {
    int n = snprintf(key, sizeof key, "%d", i);
    uint32_t p = sl_hash_partition(sl_hash_bytes(key, (size_t)n), 8);
    CHECK(p < 8);
    count[p < 8 ? p : 0]++;
  }
  for (int p = 0; p < 8; p++) CHECK(count[p] > 9700 && count[p] < 10300);
  CHECK_INT(sl_hash_partition(UINT64_MAX, 5), 4);
  CHECK_INT(sl_hash_partition(0, 5), 0);
  CHECK_INT(sl_hash_partition(UINT64_MAX, 1), 0);
}

/* The default partitioning, applied to a batch and fed to a dispatch:
 * equal events land in the same partition. */
static void test_hash_partitions_feed_dispatch(void) {
  sl_dispatch *d = new_disp(SL_DISPATCH_PARTITION, (sl_dispatch_opts){.partitions = 4});
  for (uint64_t c = 0; c < 4; c++) {
    CHECK_INT(sl_dispatch_subscribe(d, c + 1, (int32_t)c), 0);
    ask(d, c + 1, 100);
  }
  sl_batch b = mk("k1 k2 k3 k1 k4 k2 k1"), left;
  int32_t parts[7];
  sl_dispatch_hash_partitions(&b, 4, parts);
  CHECK(parts[0] == parts[3] && parts[0] == parts[6]);
  CHECK(parts[1] == parts[5]);
  for (int i = 0; i < 7; i++) CHECK(parts[i] >= 0 && parts[i] < 4);
  CHECK_INT(sl_dispatch_dispatch(d, &b, parts, &left, NULL), 0);
  CHECK(left.store == NULL);
  CHECK_INT(state(d).waiting, 393);
  /* Every event went out exactly once, to the consumer of its partition. */
  sl_dispatch_entry e;
  uint64_t total = 0;
  for (size_t i = 0; sl_dispatch_entry_at(d, i, &e) == 0; i++) total += 100 - e.demand;
  CHECK_INT(total, 7);
  int k = 0;
  for (const char *p = received(); *p; p++) k += *p == 'k';
  CHECK_INT(k, 7);
  sl_dispatch_free(d);
}

int main(void) {
  RUN(test_demand_subscribe_ask_cancel);
  RUN(test_demand_ask_and_dispatch);
  RUN(test_demand_orders_by_highest_demand);
  RUN(test_demand_splits_batches);
  RUN(test_demand_reorders_after_dispatch);
  RUN(test_demand_pending_reduced_by_leftovers);
  RUN(test_demand_shares_storage);
  RUN(test_demand_shuffle_on_first_dispatch);
  RUN(test_demand_warns_on_demand_over_max);
  RUN(test_demand_unknown_and_duplicate);
  RUN(test_broadcast_subscribe_and_cancel);
  RUN(test_broadcast_slowest_pace);
  RUN(test_broadcast_never_duplicates_demand);
  RUN(test_broadcast_subscribe_midway);
  RUN(test_broadcast_cancel_releases_demand);
  RUN(test_broadcast_refuses_duplicate);
  RUN(test_broadcast_shares_storage);
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
  RUN(test_invariants_under_random_traffic);
  RUN(test_hash_is_deterministic_and_spreads);
  RUN(test_hash_partitions_feed_dispatch);
  return CHECK_SUMMARY();
}
