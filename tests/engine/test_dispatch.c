/* Unit tests of the demand and broadcast dispatchers (engine/dispatch.c;
 * the partition kind: test_dispatch_partition.c) and the default hash
 * (engine/hash.c), written after GenStage's dispatcher tests: subscribe,
 * ask, dispatch, cancel, then assert the exact state and which consumer
 * got which events. Events are small words ("a", "1", ...); consumers are
 * the ids 1, 2, 3. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "dispatch_check.h"
#include "hash.h"

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

/* During each emit the demand dispatcher tells the demand the consumer
 * has left after the batch (what makes a message to it lazy); the other
 * kinds say 0, as does the dispatcher between emits. */
static sl_dispatch *left_disp;
static char lefts[256];

static void emit_left(void *ud, uint64_t consumer, sl_batch b) {
  (void)ud;
  size_t o = strlen(lefts);
  snprintf(lefts + o, sizeof lefts - o, "%s%llu:%u/%llu", o ? " " : "", (unsigned long long)consumer,
           (unsigned)b.count, (unsigned long long)sl_dispatch_emit_left(left_disp));
  sl_batch_release(&b);
}

static void test_emit_left(void) {
  for (int kind = 0; kind < 2; kind++) {
    sl_dispatch_opts o = {0};
    o.emit = emit_left;
    CHECK_INT(sl_dispatch_new(kind ? SL_DISPATCH_BROADCAST : SL_DISPATCH_DEMAND, &o, &left_disp), 0);
    CHECK_INT(sl_dispatch_subscribe(left_disp, 1, 0), 0);
    CHECK_INT(sl_dispatch_subscribe(left_disp, 2, 0), 0);
    CHECK_INT(ask(left_disp, 1, 5), kind ? 0 : 5);
    CHECK_INT(ask(left_disp, 2, 3), kind ? 3 : 3);
    lefts[0] = 0;
    CHECK_STR(dispatch(left_disp, "a b c d e f", NULL), kind ? "d e f" : "");
    CHECK_STR(lefts, kind ? "1:3/0 2:3/0" : "1:5/0 2:1/2");
    lefts[0] = 0;
    if (!kind) {
      CHECK_STR(dispatch(left_disp, "g", NULL), "");
      CHECK_STR(lefts, "2:1/1");
    }
    CHECK_INT(sl_dispatch_emit_left(left_disp), 0);
    sl_dispatch_free(left_disp);
  }
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
  sl_dispatch_produced(d, 7);             /* the producer made 7 (as a stage reports them) */
  CHECK_INT(state(d).requested, 0);
  CHECK_STR(dispatch(d, "a b c d e f g", NULL), "f g");
  CHECK_STR(received(), "1:a b c d e | 2:a b c d e");
  CHECK_INT(state(d).waiting, 0);
  CHECK_STR(dispatch(d, "f g", NULL), "f g");
  CHECK_STR(received(), "");
  CHECK_INT(ask(d, 2, 7), 5);
  CHECK_STR(demands(d), "1:0 2:2");
  sl_dispatch_produced(d, 2);             /* the buffered f g meet 2 of those 5 */
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
  sl_dispatch_produced(d, 10);
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
  sl_dispatch_produced(d, 3);
  CHECK_STR(dispatch(d, "a b c", NULL), "");
  CHECK_STR(received(), "1:a b c");
  CHECK_INT(state(d).waiting, 7);
  CHECK_INT(state(d).requested, 7);
  CHECK_INT(sl_dispatch_subscribe(d, 2, 0), 0);
  CHECK_STR(demands(d), "1:7 2:0");
  CHECK_INT(state(d).waiting, 0);
  CHECK_INT(sl_dispatch_accepts(d), 0);
  sl_dispatch_produced(d, 2);             /* d e: made for the first ask, buffered */
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

/* The broadcast kind driven as a producer stage drives it: what it asks
 * upstream is made by handle_demand (sometimes more, sometimes in pieces),
 * reported with sl_dispatch_produced, dispatched, and what is left over is
 * buffered; buffered events are taken first against new upstream demand.
 * Consumers ask back some of what they get (as with a selector or small
 * max_demand); two of them subscribe mid-way. The demand asked upstream and not yet made is what the
 * producer owes, and nothing stalls: whenever consumers can take events,
 * the buffer or what the producer owes will bring them; everyone gets the
 * same events. (The stall this catches: buffered events counted twice
 * against upstream demand.) */
static void test_broadcast_stage_model(void) {
  for (uint64_t seed0 = 1; seed0 <= 200; seed0++) {
    tally t = {{0}};
    sl_dispatch_opts o = {.emit = count_emit, .ud = &t};
    sl_dispatch *d;
    CHECK_INT(sl_dispatch_new(SL_DISPATCH_BROADCAST, &o, &d), 0);
    uint64_t seed = seed0, owed = 0, buf = 0, got_before[4] = {0}, base[4] = {0};
    /* consumer 1 from the start; 2 and 3 subscribe mid-way (then the
     * others' waiting demand waits for them: events made for it are
     * buffered) */
    uint64_t ncons = 1, joins[4] = {0, 0, 1 + rnd(&seed) % 100, 1 + rnd(&seed) % 300};
    CHECK_INT(sl_dispatch_subscribe(d, 1, 0), 0);
    for (int step = 0; step < 400; step++) {
      uint64_t up = 0;
      while (ncons < 3 && (uint64_t)step == joins[ncons + 1]) {
        ncons++;
        CHECK_INT(sl_dispatch_subscribe(d, ncons, 0), 0);
        base[ncons] = t.got[1];
      }
      uint32_t r = (uint32_t)(rnd(&seed) % 3);
      if (r == 0) {                                  /* a consumer asks */
        uint64_t c = 1 + rnd(&seed) % ncons, n = 1 + rnd(&seed) % 20;
        CHECK_INT(sl_dispatch_ask(d, c, n, &up), 0);
      } else if (r == 1) {                           /* consumers ask back part of what came */
        for (uint64_t c = 1; c <= ncons; c++) {
          uint64_t came = t.got[c] - got_before[c];
          got_before[c] = t.got[c];
          uint64_t back = came ? rnd(&seed) % (came + 1) : 0;
          uint64_t u;
          CHECK_INT(sl_dispatch_ask(d, c, back, &u), 0);
          up += u;
        }
      }
      /* the stage: buffered events first, then handle_demand for the rest */
      uint64_t n = up;
      uint64_t take = buf < sl_dispatch_accepts(d) ? buf : sl_dispatch_accepts(d);
      if (take) {
        sl_dispatch_produced(d, n < take ? n : take);
        n = n > take ? n - take : 0;
        sl_batch b = mk_n((uint32_t)take), l;
        CHECK_INT(sl_dispatch_dispatch(d, &b, NULL, &l, NULL), 0);
        buf -= take - l.count;
        sl_batch_release(&l);
      }
      owed += n;
      if (owed && rnd(&seed) % 2) {                  /* handle_demand makes some of it, or more */
        uint64_t made = rnd(&seed) % 4 == 0 ? owed + rnd(&seed) % 5 : 1 + rnd(&seed) % owed;
        owed -= made < owed ? made : owed;
        sl_dispatch_produced(d, made);
        sl_batch b = mk_n((uint32_t)made), l;
        CHECK_INT(sl_dispatch_dispatch(d, &b, NULL, &l, NULL), 0);
        buf += l.count;
        sl_batch_release(&l);
      }
      for (uint64_t c = 2; c <= ncons; c++) CHECK_INT(t.got[c] + base[c], t.got[1]);
      /* what the dispatcher counts as asked and not made is what the
       * producer owes; consumers that can take events now are served by
       * the buffer or by what the producer owes (no stall) */
      CHECK_INT(state(d).requested, owed);
      if (sl_dispatch_accepts(d) > 0) CHECK(buf + owed > 0);
    }
    sl_dispatch_free(d);
  }
}

/* For every kind: nobody gets more than it asked, every event is either
 * emitted, queued, dropped or left over, and (demand) the list stays
 * sorted, (broadcast) demand upstream is at most the slowest consumer's. */
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
        /* what is asked upstream depends on what the producer reports
         * made (sl_dispatch_produced), which random batches do not model:
         * test_broadcast_stage_model checks that; here, never more than
         * the slowest consumer's demand */
        uint64_t slowest = asked[1];
        for (uint64_t c = 2; c <= 3; c++) slowest = asked[c] < slowest ? asked[c] : slowest;
        CHECK(upstream <= slowest);
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
  RUN(test_emit_left);
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
  RUN(test_broadcast_stage_model);
  RUN(test_invariants_under_random_traffic);
  RUN(test_hash_is_deterministic_and_spreads);
  RUN(test_hash_partitions_feed_dispatch);
  return CHECK_SUMMARY();
}
