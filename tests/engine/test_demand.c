/* Unit tests of consumer-side demand accounting (engine/demand.c): the
 * chunks handed to handle_events and the asks sent upstream, traced the
 * way GenStage's Counter/Forwarder tests observe them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "check.h"
#include "demand.h"
#include "status.h"

/* A trace of one message: "chunk [ask] chunk [ask] ..." with chunks as
 * "first..last" event numbers and asks as "+n". */
static char trace[512];

static void feed(sl_demand *d, uint64_t first, uint64_t k) {
  trace[0] = 0;
  sl_demand_begin(d, k);
  uint64_t n, from = first;
  while ((n = sl_demand_next(d)) > 0) {
    uint64_t ask = sl_demand_done(d);
    size_t len = strlen(trace);
    snprintf(trace + len, sizeof trace - len, "%s%llu..%llu", len ? " " : "",
             (unsigned long long)from, (unsigned long long)(from + n - 1));
    if (ask) {
      len = strlen(trace);
      snprintf(trace + len, sizeof trace - len, " +%llu", (unsigned long long)ask);
    }
    from += n;
  }
}

static void test_init_validates(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 0, 0, 0), SL_EINVAL);
  CHECK_INT(sl_demand_init(&d, 10, 10, 0), SL_EINVAL);
  CHECK_INT(sl_demand_init(&d, 10, 11, 0), SL_EINVAL);
  CHECK_INT(sl_demand_init(&d, 1, 0, 0), 0);
  CHECK_INT(sl_demand_init(&d, 10, 9, 1), 0);
}

/* Defaults 1000/500: a message of 1000 is handled as 0..499 then 500..999,
 * each followed by an ask of 500. */
static void test_defaults_give_chunks_of_500(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 1000, 500, 0), 0);
  CHECK_INT(sl_demand_initial_ask(&d), 1000);
  CHECK_INT(d.pending, 1000);
  feed(&d, 0, 1000);
  CHECK_STR(trace, "0..499 +500 500..999 +500");
  CHECK_INT(d.pending, 1000);
  CHECK_INT(d.excess, 0);
}

/* max 100/min 20 against a producer that emits exactly what it is asked,
 * as one message: handle_demand sees 100, 80, 100, 80, ... and the chunks
 * are 0..79, 80..99, 100..179, 180..259, 260..279 (SEMANTICS §1.4). */
static void test_max_100_min_20_asks_100_80(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 100, 20, 0), 0);
  uint64_t asks[16], nasks = 0, served = 0, next = 0;
  asks[nasks++] = sl_demand_initial_ask(&d);
  char chunks[1024] = "";
  while (served < 6) {   /* the producer answers six asks in order */
    uint64_t k = asks[served++];
    sl_demand_begin(&d, k);
    uint64_t n;
    while ((n = sl_demand_next(&d)) > 0) {
      size_t len = strlen(chunks);
      snprintf(chunks + len, sizeof chunks - len, "%s%llu..%llu", len ? " " : "",
               (unsigned long long)next, (unsigned long long)(next + n - 1));
      next += n;
      uint64_t ask = sl_demand_done(&d);
      if (ask) asks[nasks++] = ask;
    }
  }
  CHECK_INT(nasks, 7);
  CHECK_INT(asks[0], 100);
  CHECK_INT(asks[1], 80);
  CHECK_INT(asks[2], 100);
  CHECK_INT(asks[3], 80);
  CHECK_INT(asks[4], 100);
  CHECK_INT(asks[5], 80);
  CHECK_INT(asks[6], 100);
  CHECK_STR(chunks, "0..79 80..99 100..179 180..259 260..279 280..359 "
                    "360..439 440..459 460..539");
  CHECK_INT(d.excess, 0);
}

/* Chunks are counted from the start of each message, not aligned on the
 * min boundary: with 1000/750 and messages of 100, the asks after the
 * first four messages are none, none, 300, none (GenStage's code, not its
 * moduledoc). */
static void test_chunks_count_from_message_start(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 1000, 750, 0), 0);
  CHECK_INT(sl_demand_initial_ask(&d), 1000);
  feed(&d, 0, 100);
  CHECK_STR(trace, "0..99");
  feed(&d, 100, 100);
  CHECK_STR(trace, "100..199");
  feed(&d, 200, 100);
  CHECK_STR(trace, "200..299 +300");
  feed(&d, 300, 100);
  CHECK_STR(trace, "300..399");
  CHECK_INT(d.pending, 900);
}

/* A message larger than max - min is cut, and the last chunk may be short. */
static void test_long_message_is_cut(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 10, 4, 0), 0);
  CHECK_INT(sl_demand_initial_ask(&d), 10);
  feed(&d, 1, 10);
  CHECK_STR(trace, "1..6 +6 7..10");
  CHECK_INT(d.pending, 6);
  feed(&d, 11, 3);
  CHECK_STR(trace, "11..13 +7");
  CHECK_INT(d.pending, 10);
}

/* min 0: chunks of max, ask once everything asked has arrived. */
static void test_min_zero(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 3, 0, 0), 0);
  CHECK_INT(sl_demand_initial_ask(&d), 3);
  feed(&d, 1, 2);
  CHECK_STR(trace, "1..2");
  feed(&d, 3, 1);
  CHECK_STR(trace, "3..3 +3");
}

/* Manual mode: nothing asked automatically, one chunk per message. */
static void test_manual_mode(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 100, 50, 1), 0);
  CHECK_INT(sl_demand_initial_ask(&d), 0);
  CHECK_INT(d.pending, 0);
  sl_demand_asked(&d, 30);
  CHECK_INT(d.pending, 30);
  CHECK_INT(sl_demand_begin(&d, 250), 0);   /* no excess in manual mode */
  CHECK_INT(sl_demand_next(&d), 250);
  CHECK_INT(sl_demand_done(&d), 0);
  CHECK_INT(sl_demand_next(&d), 0);
  CHECK_INT(d.pending, 0);
  CHECK_INT(d.excess, 0);
}

/* Events beyond the outstanding demand are counted as excess, still handed
 * out, and do not lower the demand (so they are not asked for again). */
static void test_excess_is_counted(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 10, 5, 0), 0);
  CHECK_INT(sl_demand_initial_ask(&d), 10);
  CHECK_INT(sl_demand_begin(&d, 14), 4);
  CHECK_INT(sl_demand_next(&d), 5);
  CHECK_INT(sl_demand_done(&d), 5);
  CHECK_INT(sl_demand_next(&d), 5);
  CHECK_INT(sl_demand_done(&d), 5);
  CHECK_INT(sl_demand_next(&d), 4);
  CHECK_INT(sl_demand_done(&d), 0);     /* the 4 were never asked for */
  CHECK_INT(sl_demand_next(&d), 0);
  CHECK_INT(d.excess, 4);
  CHECK_INT(d.pending, 10);
  /* The next in-demand message behaves normally again. */
  CHECK_INT(sl_demand_begin(&d, 5), 0);
  CHECK_INT(sl_demand_next(&d), 5);
  CHECK_INT(sl_demand_done(&d), 5);
  CHECK_INT(d.excess, 4);
}

/* An empty message hands out nothing and asks nothing. */
static void test_empty_message(void) {
  sl_demand d;
  CHECK_INT(sl_demand_init(&d, 10, 5, 0), 0);
  sl_demand_initial_ask(&d);
  CHECK_INT(sl_demand_begin(&d, 0), 0);
  CHECK_INT(sl_demand_next(&d), 0);
  CHECK_INT(sl_demand_done(&d), 0);
  CHECK_INT(d.pending, 10);
}

int main(void) {
  RUN(test_init_validates);
  RUN(test_defaults_give_chunks_of_500);
  RUN(test_max_100_min_20_asks_100_80);
  RUN(test_chunks_count_from_message_start);
  RUN(test_long_message_is_cut);
  RUN(test_min_zero);
  RUN(test_manual_mode);
  RUN(test_excess_is_counted);
  RUN(test_empty_message);
  return CHECK_SUMMARY();
}
