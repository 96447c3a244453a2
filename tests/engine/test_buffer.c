/* Unit tests of the producer buffer (engine/buffer.c), after GenStage's
 * buffer_test.exs: exact survivors and discard counts on overflow, infos
 * kept in order behind events, infos displaced by a "last" overflow. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "batch.h"
#include "buffer.h"
#include "check.h"
#include "status.h"

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

/* A batch of n empty events. */
static sl_batch mk_empty(int n) {
  sl_batch_builder bb;
  sl_batch b;
  sl_bb_init(&bb);
  for (int i = 0; i < n; i++) CHECK_INT(sl_bb_add(&bb, "", 0), 0);
  CHECK_INT(sl_bb_finish(&bb, &b), 0);
  sl_bb_free(&bb);
  return b;
}

/* Appends the events of b to out, space-separated. */
static void cat_events(char *out, size_t cap, const sl_batch *b) {
  for (uint32_t i = 0; i < b->count; i++) {
    size_t len, o = strlen(out);
    const char *p = sl_batch_event(b, i, &len);
    snprintf(out + o, cap - o, "%s%.*s", o ? " " : "", (int)len, p);
  }
}

/* Takes up to n events as one batch and returns them as text. */
static const char *take(sl_buffer *b, size_t n) {
  static char out[256];
  sl_batch t;
  out[0] = 0;
  if (sl_buffer_take_batch(b, n, &t) != 0) return "(error)";
  cat_events(out, sizeof out, &t);
  sl_batch_release(&t);
  return out;
}

/* Everything held, taken through sl_buffer_take, infos popped in between
 * and shown as "<token>". */
static const char *drain(sl_buffer *b) {
  static char out[256];
  sl_batch v[8];
  size_t nv;
  uint64_t tok;
  out[0] = 0;
  for (;;) {
    while (sl_buffer_pop_info(b, &tok)) {
      size_t o = strlen(out);
      snprintf(out + o, sizeof out - o, "%s<%llu>", o ? " " : "", (unsigned long long)tok);
    }
    if (sl_buffer_take(b, SIZE_MAX, v, 8, &nv) == 0) break;
    for (size_t i = 0; i < nv; i++) {
      cat_events(out, sizeof out, &v[i]);
      sl_batch_release(&v[i]);
    }
  }
  return out;
}

static size_t push(sl_buffer *b, const char *events) {
  sl_batch batch = mk(events);
  size_t discarded = 99;
  CHECK_INT(sl_buffer_push(b, &batch, &discarded), 0);
  CHECK(batch.store == NULL);
  return discarded;
}

static void test_new_validates(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(0, SL_KEEP_LAST, &b), SL_EINVAL);
  CHECK(b == NULL);
  CHECK_INT(sl_buffer_new(10, 7, &b), SL_EINVAL);
  CHECK_INT(sl_buffer_new(SL_BUFFER_UNLIMITED, SL_KEEP_FIRST, &b), 0);
  sl_buffer_free(b);
}

static void test_fifo_take_in_views(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(100, SL_KEEP_LAST, &b), 0);
  CHECK_INT(push(b, "1 2 3"), 0);
  CHECK_INT(push(b, "4 5"), 0);
  CHECK_INT(sl_buffer_count(b), 5);
  sl_batch v[4];
  size_t nv;
  CHECK_INT(sl_buffer_take(b, 4, v, 4, &nv), 4);
  CHECK_INT(nv, 2);
  char s[64] = "";
  cat_events(s, sizeof s, &v[0]);
  CHECK_STR(s, "1 2 3");
  s[0] = 0;
  cat_events(s, sizeof s, &v[1]);
  CHECK_STR(s, "4");
  CHECK(v[0].store != v[1].store);
  sl_batch_release(&v[0]);
  sl_batch_release(&v[1]);
  CHECK_INT(sl_buffer_count(b), 1);
  /* max_out bounds the views as well as the events. */
  CHECK_INT(push(b, "6 7"), 0);
  CHECK_INT(sl_buffer_take(b, 10, v, 1, &nv), 1);
  CHECK_INT(nv, 1);
  sl_batch_release(&v[0]);
  CHECK_STR(drain(b), "6 7");
  CHECK_INT(sl_buffer_take(b, 10, v, 4, &nv), 0);
  CHECK_INT(nv, 0);
  sl_buffer_free(b);
}

/* One pushed batch comes back as a slice of the same store; events from
 * several batches are gathered into a new one. */
static void test_take_batch_slices_or_gathers(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(100, SL_KEEP_LAST, &b), 0);
  sl_batch in = mk("1 2 3");
  sl_store *store = in.store;
  size_t disc;
  CHECK_INT(sl_buffer_push(b, &in, &disc), 0);
  CHECK_INT(push(b, "4 5"), 0);
  sl_batch t;
  CHECK_INT(sl_buffer_take_batch(b, 2, &t), 0);
  CHECK(t.store == store);
  CHECK_INT(t.count, 2);
  sl_batch_release(&t);
  CHECK_INT(sl_buffer_take_batch(b, 2, &t), 0);
  CHECK(t.store != store);
  char s[64] = "";
  cat_events(s, sizeof s, &t);
  CHECK_STR(s, "3 4");
  sl_batch_release(&t);
  CHECK_STR(take(b, 0), "");
  CHECK_STR(take(b, 9), "5");
  CHECK_STR(take(b, 9), "");
  sl_buffer_free(b);
}

/* keep first: the incoming events that do not fit are dropped. */
static void test_overflow_keep_first(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(5, SL_KEEP_FIRST, &b), 0);
  CHECK_INT(push(b, "1 2 3"), 0);
  CHECK_INT(push(b, "4 5 6 7"), 2);
  CHECK_INT(sl_buffer_count(b), 5);
  CHECK_INT(push(b, "8"), 1);
  CHECK_INT(push(b, "9 10 11"), 3);
  CHECK_INT(sl_buffer_count(b), 5);
  CHECK_STR(take(b, 2), "1 2");
  CHECK_INT(push(b, "12 13 14"), 1);
  CHECK_STR(drain(b), "3 4 5 12 13");
  sl_buffer_free(b);
}

/* keep last: the oldest events make room for the incoming ones. */
static void test_overflow_keep_last(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(5, SL_KEEP_LAST, &b), 0);
  CHECK_INT(push(b, "1 2 3"), 0);
  CHECK_INT(push(b, "4 5 6 7"), 2);
  CHECK_INT(sl_buffer_count(b), 5);
  CHECK_STR(take(b, 1), "3");
  CHECK_INT(push(b, "8"), 0);
  CHECK_INT(push(b, "9 10 11 12 13 14"), 6);   /* larger than the buffer */
  CHECK_INT(sl_buffer_count(b), 5);
  CHECK_STR(drain(b), "10 11 12 13 14");
  sl_buffer_free(b);
}

static void test_unlimited_keeps_everything(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(SL_BUFFER_UNLIMITED, SL_KEEP_LAST, &b), 0);
  for (int i = 0; i < 1000; i++) CHECK_INT(push(b, "a b c d e f g h i j"), 0);
  CHECK_INT(sl_buffer_count(b), 10000);
  size_t total = 0;
  sl_batch t;
  while (sl_buffer_count(b) > 0) {
    CHECK_INT(sl_buffer_take_batch(b, 333, &t), 0);
    total += t.count;
    sl_batch_release(&t);
  }
  CHECK_INT(total, 10000);
  sl_buffer_free(b);
}

/* An info pushed onto an empty buffer is delivered at once. */
static void test_info_on_empty_buffer_is_immediate(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(10, SL_KEEP_LAST, &b), 0);
  CHECK_INT(sl_buffer_push_info(b, 1), 1);
  CHECK_INT(sl_buffer_infos(b), 0);
  uint64_t tok;
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  sl_buffer_free(b);
}

/* Infos come out behind the events pushed before them, in order; a take
 * stops at an info that is not ready; count ignores infos. */
static void test_infos_ordered_behind_events(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(10, SL_KEEP_LAST, &b), 0);
  CHECK_INT(push(b, "1 2"), 0);
  CHECK_INT(sl_buffer_push_info(b, 100), 0);
  CHECK_INT(push(b, "3"), 0);
  CHECK_INT(sl_buffer_push_info(b, 200), 0);
  CHECK_INT(sl_buffer_push_info(b, 300), 0);
  CHECK_INT(push(b, "4 5"), 0);
  CHECK_INT(sl_buffer_count(b), 5);
  CHECK_INT(sl_buffer_infos(b), 3);
  uint64_t tok;
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  CHECK_STR(take(b, 1), "1");
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  CHECK_STR(take(b, 10), "2");            /* stops at info 100 */
  CHECK_INT(sl_buffer_pop_info(b, &tok), 1);
  CHECK_INT(tok, 100);
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  CHECK_STR(drain(b), "3 <200> <300> 4 5");
  CHECK_INT(sl_buffer_infos(b), 0);
  sl_buffer_free(b);
}

/* An info pushed while an earlier one is ready but not popped yet waits
 * its turn instead of overtaking it. */
static void test_info_does_not_overtake_ready_info(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(10, SL_KEEP_LAST, &b), 0);
  CHECK_INT(push(b, "1"), 0);
  CHECK_INT(sl_buffer_push_info(b, 1), 0);
  CHECK_STR(take(b, 5), "1");
  CHECK_INT(sl_buffer_push_info(b, 2), 0);
  CHECK_STR(drain(b), "<1> <2>");
  CHECK_INT(sl_buffer_push_info(b, 3), 1);
  sl_buffer_free(b);
}

/* keep last: an info whose events ahead were all discarded is released
 * by the overflow; one with events still ahead stays. */
static void test_info_displaced_by_keep_last(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(3, SL_KEEP_LAST, &b), 0);
  CHECK_INT(push(b, "1 2 3"), 0);
  CHECK_INT(sl_buffer_push_info(b, 7), 0);
  CHECK_INT(push(b, "4 5"), 2);            /* 1 and 2 go, 3 is still ahead */
  uint64_t tok;
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  CHECK_INT(sl_buffer_push_info(b, 8), 0);
  CHECK_INT(push(b, "6 7 8 9"), 4);        /* 3, 4, 5 and 6 go */
  CHECK_INT(sl_buffer_pop_info(b, &tok), 1);
  CHECK_INT(tok, 7);
  CHECK_INT(sl_buffer_pop_info(b, &tok), 1);
  CHECK_INT(tok, 8);
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  CHECK_STR(drain(b), "7 8 9");
  sl_buffer_free(b);
}

/* keep first: dropped incoming events never were ahead of an info. */
static void test_info_stays_with_keep_first(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(3, SL_KEEP_FIRST, &b), 0);
  CHECK_INT(push(b, "1 2 3"), 0);
  CHECK_INT(sl_buffer_push_info(b, 7), 0);
  CHECK_INT(push(b, "4 5"), 2);
  uint64_t tok;
  CHECK_INT(sl_buffer_pop_info(b, &tok), 0);
  CHECK_STR(take(b, 2), "1 2");
  CHECK_INT(push(b, "6 7 8"), 1);
  CHECK_STR(drain(b), "3 <7> 6 7");
  sl_buffer_free(b);
}

/* Freeing a buffer with events and infos releases everything (checked by
 * the sanitizers). */
static void test_free_releases_views(void) {
  sl_buffer *b;
  CHECK_INT(sl_buffer_new(4, SL_KEEP_LAST, &b), 0);
  CHECK_INT(push(b, "1 2 3"), 0);
  CHECK_INT(sl_buffer_push_info(b, 1), 0);
  CHECK_INT(push(b, "4 5"), 1);
  sl_buffer_free(b);
  sl_buffer_free(NULL);
}

/* Found by fuzz_batch: a batch whose events are all empty had no bytes at
 * all, and its event pointers were NULL + 0 (undefined behaviour that
 * UBSan reports, and a NULL that sl_decode takes as its input). Every
 * event pointer is now a real one, also for empty events. */
static void test_empty_events_have_pointers(void) {
  sl_batch b = mk_empty(3);
  CHECK_INT(b.count, 3);
  size_t len = 9;
  CHECK(sl_batch_event(&b, 1, &len) != NULL);
  CHECK_INT(len, 0);
  const char *ps[3] = {NULL, NULL, NULL};
  size_t lens[3] = {9, 9, 9};
  sl_batch_events(&b, 0, 3, ps, lens);
  for (int i = 0; i < 3; i++) {
    CHECK(ps[i] != NULL);
    CHECK_INT(lens[i], 0);
  }
  sl_batch_release(&b);
}

/* sl_batch_gather copies the chosen events of a view (in the order
 * asked, from a view that does not start at the store's first event) into
 * a store of their own; empty events among them keep real pointers. */
static void test_gather_copies_the_chosen_events(void) {
  sl_batch all = mk("x aa b cccccccccccccccccccccccc dd e");
  sl_batch v = sl_batch_slice(&all, 1, 5);   /* aa b ccc.. dd e */
  uint32_t idx[] = {4, 0, 2, 2};
  sl_batch g;
  CHECK_INT(sl_batch_gather(&v, idx, 4, &g), 0);
  CHECK(g.store != all.store);
  CHECK_INT(g.first, 0);
  CHECK_INT(g.count, 4);
  char s[128] = "";
  cat_events(s, sizeof s, &g);
  CHECK_STR(s, "e aa cccccccccccccccccccccccc cccccccccccccccccccccccc");
  sl_batch_release(&all);
  sl_batch_release(&v);
  s[0] = 0;
  cat_events(s, sizeof s, &g);   /* its own bytes: the source is gone */
  CHECK_STR(s, "e aa cccccccccccccccccccccccc cccccccccccccccccccccccc");
  sl_batch_release(&g);
  /* none chosen: the empty batch */
  CHECK_INT(sl_batch_gather(&v, idx, 0, &g), 0);
  CHECK(g.store == NULL);
  CHECK_INT(g.count, 0);
  /* only empty events: a store all the same */
  sl_batch e = mk_empty(3);
  uint32_t two[] = {2, 0};
  CHECK_INT(sl_batch_gather(&e, two, 2, &g), 0);
  CHECK_INT(g.count, 2);
  size_t len = 9;
  CHECK(sl_batch_event(&g, 1, &len) != NULL);
  CHECK_INT(len, 0);
  sl_batch_release(&g);
  sl_batch_release(&e);
}

int main(void) {
  RUN(test_new_validates);
  RUN(test_gather_copies_the_chosen_events);
  RUN(test_fifo_take_in_views);
  RUN(test_take_batch_slices_or_gathers);
  RUN(test_overflow_keep_first);
  RUN(test_overflow_keep_last);
  RUN(test_unlimited_keeps_everything);
  RUN(test_info_on_empty_buffer_is_immediate);
  RUN(test_infos_ordered_behind_events);
  RUN(test_info_does_not_overtake_ready_info);
  RUN(test_info_displaced_by_keep_last);
  RUN(test_info_stays_with_keep_first);
  RUN(test_free_releases_views);
  RUN(test_empty_events_have_pointers);
  return CHECK_SUMMARY();
}
