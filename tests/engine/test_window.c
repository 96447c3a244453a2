/* Unit tests of the window state machine (engine/window.c). Each call's
 * actions are rendered as one string and compared exactly:
 *
 *   R<id>[/<key>]:<events>   RUN; events are the batch indices it covers,
 *                            "a-b" for a..b, joined by commas
 *   F<id>[/<key>]:<trigger>  FIRE; "!" after it when the window ends;
 *                            message and custom carry (name_id)
 *   M<id>[/<key>]<-<other>   MERGE: session other merges into id
 *   late:<n>                 events dropped as late by the call
 *
 * Batches are written as space-separated times ("0 500 3500"); keyed
 * session events as time:key. A small host (`sim`) reduces event values
 * into per-window sums to check Flow's examples by their results. The
 * brute-force model under random batches is test_window_model.c. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "status.h"
#include "window.h"
#include "window_check.h"

/* ---- helpers ------------------------------------------------------------ */

static sl_win_out out;

static const char *trig_name(int t) {
  static const char *n[] = {"done", "watermark", "every", "periodically", "message", "custom"};
  return n[t];
}

/* Renders out (see the top comment). */
static const char *render(const sl_win_out *o) {
  static char buf[8192];
  buf[0] = 0;
  for (size_t i = 0; i < o->nacts; i++) {
    const sl_win_action *a = &o->acts[i];
    if (i) cat(buf, sizeof buf, " ");
    if (a->op == SL_WIN_MERGE) {
      cat(buf, sizeof buf, "M");
      cat_win(buf, sizeof buf, a->win);
      cat(buf, sizeof buf, "<-%" PRId64, a->other);
      continue;
    }
    cat(buf, sizeof buf, a->op == SL_WIN_RUN ? "R" : "F");
    cat_win(buf, sizeof buf, a->win);
    cat(buf, sizeof buf, ":");
    if (a->op == SL_WIN_RUN) {
      for (uint32_t j = 0; j < a->n;) {
        uint32_t v = o->idx[a->from + j], k = 1;
        while (j + k < a->n && o->idx[a->from + j + k] == v + k) k++;
        cat(buf, sizeof buf, "%s%u", j ? "," : "", v);
        if (k > 1) cat(buf, sizeof buf, "-%u", v + k - 1);
        j += k;
      }
    } else {
      cat(buf, sizeof buf, "%s", trig_name(a->trigger));
      if (a->trigger == SL_TRIG_MESSAGE || a->trigger == SL_TRIG_CUSTOM)
        cat(buf, sizeof buf, "(%" PRIu64 ")", a->name_id);
      if (a->ends) cat(buf, sizeof buf, "!");
    }
  }
  if (o->late) cat(buf, sizeof buf, "%slate:%" PRIu64, o->nacts ? " " : "", o->late);
  return buf;
}

/* Parses "t t:k ..." into times/keys; returns the count. */
static uint32_t parse(const char *s, int64_t *t, uint64_t *k) {
  uint32_t n = 0;
  while (*s) {
    char *e;
    t[n] = strtoll(s, &e, 10);
    k[n] = 0;
    if (*e == ':') k[n] = strtoull(e + 1, &e, 10);
    n++;
    s = e;
    while (*s == ' ') s++;
  }
  return n;
}

static sl_window *mkw(sl_window_spec sp, int64_t now) {
  sl_window *w = NULL;
  if (!sp.producers) sp.producers = 1;
  CHECK_INT(sl_window_new(&sp, now, &w), 0);
  sl_win_out_reset(&out);
  return w;
}

/* One batch of the events in s from producer p at now. */
static const char *bat(sl_window *w, uint32_t p, int64_t now, const char *s) {
  static int64_t t[4096];
  static uint64_t k[4096];
  uint32_t n = parse(s, t, k);
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_batch(w, p, n, t, k, now, &out), 0);
  return render(&out);
}

/* A batch of n events without times (global, count, periodic). */
static const char *batn(sl_window *w, uint32_t p, uint32_t n) {
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_batch(w, p, n, NULL, NULL, 0, &out), 0);
  return render(&out);
}

static const char *pdone(sl_window *w, uint32_t p, int64_t now) {
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_producer_done(w, p, now, &out), 0);
  return render(&out);
}

static const char *tick(sl_window *w, int64_t now) {
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_timer(w, now, &out), 0);
  return render(&out);
}

static const char *msg(sl_window *w, uint64_t name) {
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_message(w, name, &out), 0);
  return render(&out);
}

/* ---- sim: a host that sums event values per window ------------------------ */

typedef struct simw {
  sl_win_id id;
  int64_t sum, n;
} simw;

typedef struct sim {
  simw w[256];
  int nw;
  char log[8192];   /* "id:sum" per done, "id:trigger=sum" per other fire */
} sim;

static simw *sim_win(sim *s, sl_win_id id) {
  for (int i = 0; i < s->nw; i++)
    if (s->w[i].id.id == id.id && s->w[i].id.key == id.key) return &s->w[i];
  s->w[s->nw] = (simw){id, 0, 0};
  return &s->w[s->nw++];
}

/* Applies out to the batch values v (NULL: no batch). */
static void sim_apply(sim *s, const int64_t *v) {
  for (size_t i = 0; i < out.nacts; i++) {
    const sl_win_action *a = &out.acts[i];
    simw *x = sim_win(s, a->win);
    if (a->op == SL_WIN_RUN) {
      for (uint32_t j = 0; j < a->n; j++) x->sum += v[out.idx[a->from + j]], x->n++;
      continue;
    }
    if (s->log[0]) cat(s->log, sizeof s->log, " ");
    cat_win(s->log, sizeof s->log, a->win);
    if (a->trigger == SL_TRIG_DONE) cat(s->log, sizeof s->log, ":%" PRId64, x->sum);
    else cat(s->log, sizeof s->log, ":%s=%" PRId64, trig_name(a->trigger), x->sum);
    if (a->ends) *x = s->w[--s->nw];
  }
}

/* Feeds the values from..to (times = values) in batches of `size` from one
 * producer, then ends; returns the log. */
static const char *sim_range(sl_window_spec sp, int64_t from, int64_t to, uint32_t size) {
  static sim s;
  memset(&s, 0, sizeof s);
  sl_window *w = mkw(sp, 0);
  int64_t v[64];
  for (int64_t x = from; x <= to;) {
    uint32_t n = 0;
    while (n < size && x <= to) v[n++] = x++;
    sl_win_out_reset(&out);
    CHECK_INT(sl_window_batch(w, 0, n, v, NULL, 0, &out), 0);
    sim_apply(&s, v);
  }
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_producer_done(w, 0, 0, &out), 0);
  sim_apply(&s, NULL);
  CHECK_INT(sl_window_open_count(w), 0);
  sl_window_free(w);
  return s.log;
}

/* ---- spec checks ------------------------------------------------------------ */

static void test_spec_checks(void) {
  sl_window *w = (sl_window *)1;
  sl_window_spec ok = {.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 5, .producers = 1};
  CHECK_INT(sl_window_new(&ok, 0, &w), 0);
  sl_window_free(w);
  sl_window_spec bad[] = {
    {.lateness_ms = -1, .kind = SL_WIN_GLOBAL, .producers = 0},
    {.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 0, .producers = 1},
    {.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 0, .producers = 1},
    {.lateness_ms = -1, .kind = SL_WIN_PERIODIC, .size_ms = -5, .producers = 1},
    {.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = SL_WIN_DURATION_MAX + 1, .producers = 1},
    {.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 11, .producers = 1},
    {.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 0, .producers = 1},
    {.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 10, .periodically_ms = -1, .producers = 1},
    {.kind = SL_WIN_FIXED, .size_ms = 10, .lateness_ms = SL_WIN_DURATION_MAX + 1, .producers = 1},
    {.kind = (sl_window_kind)9, .producers = 1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    w = (sl_window *)1;
    CHECK_INT(sl_window_new(&bad[i], 0, &w), SL_EINVAL);
    CHECK(w == NULL);
  }
  CHECK_INT(sl_window_new(&ok, -1, &w), SL_EINVAL);

  /* bad calls change nothing */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 10, .producers = 2}, 0);
  int64_t t[] = {5, SL_WIN_TIME_MAX + 1};
  CHECK_INT(sl_window_batch(w, 0, 2, t, NULL, 0, &out), SL_EINVAL);
  CHECK_INT(out.bad, 1);
  CHECK_INT(sl_window_batch(w, 0, 1, NULL, NULL, 0, &out), SL_EINVAL);
  CHECK_INT(sl_window_batch(w, 2, 1, t, NULL, 0, &out), SL_EINVAL);
  CHECK_INT(sl_window_producer_done(w, 2, 0, &out), SL_EINVAL);
  CHECK_INT(sl_window_fire_open(w, SL_TRIG_DONE, 0, &out), SL_EINVAL);
  CHECK_INT(out.nacts, 0);
  CHECK_STR(pdone(w, 0, 0), "");
  CHECK_INT(sl_window_batch(w, 0, 1, t, NULL, 0, &out), SL_EINVAL);   /* producer done */
  CHECK_STR(pdone(w, 0, 0), "");                                       /* twice: nothing */
  CHECK_STR(bat(w, 1, 0, "5"), "R0:0");
  CHECK_STR(pdone(w, 1, 0), "F0:done!");
  CHECK_INT(sl_window_batch(w, 1, 1, t, NULL, 0, &out), SL_EINVAL);   /* finished */
  sl_window_free(w);
}

/* ---- global ------------------------------------------------------------------ */

static void test_global(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_GLOBAL, .producers = 2}, 0);
  CHECK_INT(sl_window_open_count(w), 1);
  CHECK_STR(batn(w, 0, 3), "R0:0-2");
  CHECK_STR(batn(w, 1, 2), "R0:0-1");
  CHECK_STR(batn(w, 0, 0), "");
  CHECK_STR(pdone(w, 1, 0), "");
  CHECK_STR(batn(w, 0, 1), "R0:0");
  CHECK_INT(sl_window_next_due(w), -1);
  CHECK_STR(pdone(w, 0, 0), "F0:done!");
  CHECK_INT(sl_window_finished(w), 1);
  CHECK_INT(sl_window_open_count(w), 0);
  CHECK_STR(msg(w, 1), "");
  sl_window_free(w);
}

/* ---- count ------------------------------------------------------------------- */

static void test_count_flow_examples(void) {
  sl_window_spec sp = {.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 10, .producers = 1};
  /* Flow: 1..100 with count(10) gives [55, 155, ..., 955, 0]; 1..25 gives [55, 155, 115] */
  const char *hundred = "1:55 2:155 3:255 4:355 5:455 6:555 7:655 8:755 9:855 10:955 11:0";
  CHECK_STR(sim_range(sp, 1, 100, 64), hundred);
  CHECK_STR(sim_range(sp, 1, 100, 1), hundred);
  CHECK_STR(sim_range(sp, 1, 100, 3), hundred);
  CHECK_STR(sim_range(sp, 1, 100, 7), hundred);
  CHECK_STR(sim_range(sp, 1, 25, 1), "1:55 2:155 3:115");
  CHECK_STR(sim_range(sp, 1, 25, 3), "1:55 2:155 3:115");
  CHECK_STR(sim_range(sp, 1, 25, 7), "1:55 2:155 3:115");
}

static void test_count_boundaries(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 3, .producers = 2}, 0);
  /* inside one batch: the done comes right after the window's third event */
  CHECK_STR(batn(w, 0, 7), "R1:0-2 F1:done! R2:3-5 F2:done! R3:6");
  /* across batches and producers */
  CHECK_STR(batn(w, 1, 1), "R3:0");
  CHECK_STR(batn(w, 0, 1), "R3:0 F3:done!");
  CHECK_STR(batn(w, 1, 3), "R4:0-2 F4:done!");
  CHECK_STR(pdone(w, 0, 0), "");
  CHECK_STR(pdone(w, 1, 0), "F5:done!");   /* the open window, empty */
  sl_window_free(w);

  /* batches of 1: the same windows */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 2, .producers = 1}, 0);
  CHECK_STR(batn(w, 0, 1), "R1:0");
  CHECK_STR(batn(w, 0, 1), "R1:0 F1:done!");
  CHECK_STR(batn(w, 0, 1), "R2:0");
  CHECK_STR(pdone(w, 0, 0), "F2:done!");
  sl_window_free(w);
}

/* ---- fixed ------------------------------------------------------------------- */

static void test_fixed_flow_example(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .producers = 1}, 0);
  /* Flow: 0, 500, 3500, 3600 with fixed(1s): {0,2} {1000,0} {2000,0} {3000,2} */
  CHECK_STR(bat(w, 0, 0, "0 500 3500 3600"),
            "R0:0-1 R3000:2-3 F0:done! F1000:done! F2000:done!");
  CHECK_INT(sl_window_open_count(w), 1);
  CHECK_STR(pdone(w, 0, 0), "F3000:done!");
  sl_window_free(w);

  int64_t v[] = {0, 500, 3500, 3600};
  sim s;
  memset(&s, 0, sizeof s);
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .producers = 1}, 0);
  CHECK_INT(sl_window_batch(w, 0, 4, v, NULL, 0, &out), 0);
  sim_apply(&s, v);
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_producer_done(w, 0, 0, &out), 0);
  sim_apply(&s, NULL);
  CHECK_STR(s.log, "0:500 1000:0 2000:0 3000:7100");
  sl_window_free(w);

  /* negative times: floor */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "-1 -1000 -1001 0"), "R-1000:0-1 R0:3 F-1000:done! late:1");   /* -1001 is older than its producer's latest window */
  sl_window_free(w);
}

static void test_fixed_two_producers(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "0 1500"), "R0:0 R1000:1");       /* producer 1 sent nothing: no watermark */
  CHECK_STR(bat(w, 0, 0, "2600"), "R2000:0");
  CHECK_STR(bat(w, 1, 0, "1200"), "R1000:0 F0:done!");     /* watermark = min(2600, 1200) */
  CHECK_STR(bat(w, 1, 0, "900"), "late:1");                /* window 0 has ended */
  CHECK_INT(sl_window_late_total(w), 1);
  CHECK_STR(pdone(w, 1, 0), "F1000:done!");                /* a done producer no longer holds it back */
  CHECK_STR(bat(w, 0, 0, "3000 1999 2999"), "R3000:0 R2000:2 F2000:done! late:1");
  CHECK_INT(sl_window_open_count(w), 1);
  CHECK_STR(pdone(w, 0, 0), "F3000:done!");
  CHECK_INT(sl_window_late_total(w), 2);
  sl_window_free(w);
}

static void test_fixed_first_window_late_even_with_lateness(void) {
  /* Flow #125: [5000, 1000, 6000] drops 1000, with lateness too */
  sl_window *w = mkw((sl_window_spec){.kind = SL_WIN_FIXED, .size_ms = 1000, .lateness_ms = 10000,
                                      .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "5000"), "R5000:0");
  CHECK_STR(bat(w, 0, 0, "1000"), "late:1");
  CHECK_STR(bat(w, 0, 0, "6000"), "R6000:0 F5000:watermark");
  CHECK_STR(pdone(w, 0, 0), "F5000:done! F6000:done!");
  sl_window_free(w);
}

static void test_fixed_lateness(void) {
  sl_window *w = mkw((sl_window_spec){.kind = SL_WIN_FIXED, .size_ms = 1000, .lateness_ms = 50,
                                      .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 10, "100 1200"), "R0:0 R1000:1 F0:watermark");
  CHECK_INT(sl_window_next_due(w), 60);
  CHECK_STR(bat(w, 0, 20, "300 2500"), "R0:0 R2000:1 F1000:watermark");   /* 0 still takes events */
  CHECK_INT(sl_window_open_count(w), 3);
  CHECK_INT(sl_window_next_due(w), 60);
  CHECK_STR(tick(w, 59), "");
  CHECK_STR(tick(w, 60), "F0:done!");
  CHECK_INT(sl_window_next_due(w), 70);
  CHECK_STR(bat(w, 0, 65, "400 1300"), "R1000:1 late:1");
  CHECK_STR(tick(w, 100), "F1000:done!");
  CHECK_INT(sl_window_next_due(w), -1);
  CHECK_STR(bat(w, 0, 110, "3100"), "R3000:0 F2000:watermark");
  CHECK_INT(sl_window_next_due(w), 160);
  /* end of input: every window not ended fires done, pending timers go */
  CHECK_STR(pdone(w, 0, 120), "F2000:done! F3000:done!");
  CHECK_INT(sl_window_next_due(w), -1);
  CHECK_STR(tick(w, 200), "");
  sl_window_free(w);

  /* lateness 0: the done is due at the batch's now */
  w = mkw((sl_window_spec){.kind = SL_WIN_FIXED, .size_ms = 10, .lateness_ms = 0, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 5, "1 25"), "R0:0 R20:1 F0:watermark F10:watermark");
  CHECK_INT(sl_window_next_due(w), 5);
  CHECK_STR(tick(w, 5), "F0:done! F10:done!");
  sl_window_free(w);
}

/* The same sorted input in batches of 1 and in one batch: the windows fire
 * at other points, with the same contents. */
static void test_fixed_batch_size_dependence(void) {
  sl_window_spec sp = {.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .producers = 1};
  sl_window *w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "0 300 1100 2100 2500"), "R0:0-1 R1000:2 R2000:3-4 F0:done! F1000:done!");
  CHECK_STR(pdone(w, 0, 0), "F2000:done!");
  sl_window_free(w);
  w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "0"), "R0:0");
  CHECK_STR(bat(w, 0, 0, "300"), "R0:0");
  CHECK_STR(bat(w, 0, 0, "1100"), "R1000:0 F0:done!");
  CHECK_STR(bat(w, 0, 0, "2100"), "R2000:0 F1000:done!");
  CHECK_STR(bat(w, 0, 0, "2500"), "R2000:0");
  CHECK_STR(pdone(w, 0, 0), "F2000:done!");
  sl_window_free(w);
  const char *want = "0:300 1000:1100 2000:4600";
  for (uint32_t size = 1; size <= 7; size += 2) {
    static sim s;
    memset(&s, 0, sizeof s);
    int64_t all[] = {0, 300, 1100, 2100, 2500};
    w = mkw(sp, 0);
    for (uint32_t i = 0; i < 5; i += size) {
      uint32_t n = 5 - i < size ? 5 - i : size;
      sl_win_out_reset(&out);
      CHECK_INT(sl_window_batch(w, 0, n, all + i, NULL, 0, &out), 0);
      sim_apply(&s, all + i);
    }
    sl_win_out_reset(&out);
    CHECK_INT(sl_window_producer_done(w, 0, 0, &out), 0);
    sim_apply(&s, NULL);
    CHECK_STR(s.log, want);
    sl_window_free(w);
  }
}

/* ---- periodic ---------------------------------------------------------------- */

static void test_periodic(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_PERIODIC, .size_ms = 100, .producers = 1}, 1000);
  CHECK_INT(sl_window_next_due(w), 1100);
  CHECK_STR(batn(w, 0, 2), "R1:0-1");
  CHECK_STR(tick(w, 1099), "");
  CHECK_STR(tick(w, 1100), "F1:done!");
  CHECK_INT(sl_window_next_due(w), 1200);
  CHECK_STR(batn(w, 0, 1), "R2:0");
  CHECK_STR(tick(w, 1350), "F2:done! F3:done!");   /* window 3 = [1200, 1300) passed too */
  CHECK_INT(sl_window_next_due(w), 1400);
  CHECK_STR(batn(w, 0, 3), "R4:0-2");
  CHECK_STR(msg(w, 9), "F4:message(9)");
  CHECK_STR(pdone(w, 0, 1360), "F4:done!");
  CHECK_INT(sl_window_next_due(w), -1);
  CHECK_STR(tick(w, 1400), "");
  sl_window_free(w);
}

/* ---- sliding ----------------------------------------------------------------- */

static void test_sliding_membership(void) {
  sl_window_spec sp = {.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 5, .producers = 2};
  sl_window *w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "7"), "R0:0 R5:0");
  sl_window_free(w);
  w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "-3"), "R-10:0 R-5:0");
  CHECK_STR(bat(w, 0, 0, "-5 -1 0"), "R-10:0-1 R-5:0-2 R0:2");
  sl_window_free(w);
  /* every = 3 does not divide size 10: an event is in 3 or 4 windows */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 3, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "9 10"), "R0:0 R3:0 R6:0 R9:0 R3:1 R6:1 R9:1 F0:done!");
  sl_window_free(w);
}

static void test_sliding_watermark_and_gaps(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 5,
                                      .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "7 12 23"), "R0:0 R5:0-1 R10:1 R15:2 R20:2 F0:done! F5:done! F10:done!");
  CHECK_STR(bat(w, 0, 0, "50"), "R45:0 R50:0 F15:done! F20:done! F25:done! F30:done! F35:done! F40:done!");
  CHECK_INT(sl_window_open_count(w), 2);   /* 45 and 50 */
  sl_window_free(w);

  /* gap windows open between the first and the highest window seen */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 5, .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "7 40"), "R0:0 R5:0 R35:1 R40:1");
  CHECK_INT(sl_window_open_count(w), 9);
  CHECK_STR(bat(w, 1, 0, "31"), "R25:0 R30:0 F0:done! F5:done! F10:done! F15:done! F20:done!");
  /* late partially: 26 is in 20 (ended) and 25 (open) */
  CHECK_STR(bat(w, 1, 0, "26 19"), "R25:0 late:1");
  CHECK_STR(pdone(w, 0, 0), "");
  CHECK_STR(pdone(w, 1, 0), "F25:done! F30:done! F35:done! F40:done!");
  sl_window_free(w);
}

/* ---- session ----------------------------------------------------------------- */

static void test_session_single_key(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = 10, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "0 5 30"), "R0:0-1 R30:2 F0:done!");   /* {0:[0,5]} {30} */
  CHECK_INT(sl_window_open_count(w), 1);
  CHECK_STR(bat(w, 0, 0, "15"), "late:1");      /* within gap of the ended session 0 */
  CHECK_STR(bat(w, 0, 0, "25 40 12"), "R30:0-1 late:1");
  sl_window_free(w);

  /* sessions within gap of each other are not merged; an event between
   * two joins the earlier one; an event inside one joins it */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = 10, .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "0 25"), "R0:0 R25:1");
  CHECK_STR(bat(w, 0, 0, "15 9 24 16 20"), "R25:0 R0:1 R25:2-4");   /* 15 extends 25 downward */
  CHECK_STR(bat(w, 0, 0, "-8 35 46"), "R0:0 R25:1 R46:2");   /* -8 extends 0 downward, 35 extends 25 */
  CHECK_INT(sl_window_open_count(w), 3);
  CHECK_STR(pdone(w, 0, 0), "");
  CHECK_STR(pdone(w, 1, 0), "F0:done! F25:done! F46:done!");
  sl_window_free(w);
}

static void test_session_keyed(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = 10, .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 3:2 8:1 30:2"), "R0/1:0 R3/2:1 R0/1:2 R30/2:3");
  CHECK_STR(bat(w, 1, 0, "29:1"), "R29/1:0 F0/1:done! F3/2:done!");   /* watermark 29 */
  CHECK_STR(bat(w, 1, 0, "5:1 25:1 12:3 18:3"), "R29/1:1 late:3");   /* 25 joins 29; 12, 18: t + gap < 29 */
  CHECK_STR(bat(w, 1, 0, "41:3 41:4"), "R41/3:0 R41/4:1");
  CHECK_STR(bat(w, 0, 0, "30:1 38:4"), "R29/1:0 R41/4:1");
  CHECK_INT(sl_window_open_count(w), 4);
  CHECK_STR(msg(w, 3), "F29/1:message(3) F30/2:message(3) F41/3:message(3) F41/4:message(3)");
  CHECK_STR(pdone(w, 1, 0), "");
  CHECK_STR(pdone(w, 0, 0), "F29/1:done! F30/2:done! F41/3:done! F41/4:done!");
  sl_window_free(w);
}

static void test_session_watermark_and_lateness(void) {
  sl_window *w = mkw((sl_window_spec){.kind = SL_WIN_SESSION, .size_ms = 10, .lateness_ms = 100,
                                      .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 2:2 4:3 30:1"), "R0/1:0 R2/2:1 R4/3:2 R30/1:3 "
                                               "F0/1:watermark F2/2:watermark F4/3:watermark");
  CHECK_INT(sl_window_next_due(w), 100);
  CHECK_STR(bat(w, 0, 50, "9:2 38:1"), "R2/2:0 R30/1:1");   /* a watermarked session still takes events */
  CHECK_STR(bat(w, 0, 60, "60:2"), "R60/2:0 F30/1:watermark");
  CHECK_STR(tick(w, 100), "F0/1:done! F2/2:done! F4/3:done!");
  CHECK_INT(sl_window_next_due(w), 160);
  CHECK_STR(bat(w, 0, 120, "15:2 3:3"), "late:2");
  CHECK_STR(pdone(w, 0, 130), "F30/1:done! F60/2:done!");
  CHECK_INT(sl_window_next_due(w), -1);
  sl_window_free(w);
}

/* merge_sessions: an event within gap of two sessions of its key bridges
 * them (it can only come out of order: from a slower producer, or late
 * within lateness). */
static void test_session_merge(void) {
  sl_window_spec sp = {.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = 10, .producers = 2,
                       .merge_sessions = 1};
  sl_window *w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "0"), "R0:0");
  CHECK_STR(bat(w, 1, 0, "15 18"), "R15:0-1");            /* watermark 0: both open */
  CHECK_STR(bat(w, 0, 0, "3 7 9"), "R0:0 M0<-15 R0:1-2");  /* 7 is within gap of 0's hi 3 and of 15 */
  CHECK_INT(sl_window_open_count(w), 1);
  CHECK_STR(bat(w, 1, 0, "30 31"), "R30:0-1");             /* [0, 18] and 30 stay apart */
  CHECK_STR(pdone(w, 0, 0), "F0:done!");                   /* watermark 31: 18 + 10 < 31 */
  CHECK_STR(pdone(w, 1, 0), "F30:done!");
  sl_window_free(w);

  /* without merge_sessions the event joins the earlier session */
  sp.merge_sessions = 0;
  w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "0"), "R0:0");
  CHECK_STR(bat(w, 1, 0, "15 18"), "R15:0-1");
  CHECK_STR(bat(w, 0, 0, "3 7 9"), "R0:0-2");
  CHECK_INT(sl_window_open_count(w), 2);
  sl_window_free(w);

  /* keys apart; a bridge of one key between events of another */
  sp.merge_sessions = 1;
  w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 0:2"), "R0/1:0 R0/2:1");
  CHECK_STR(bat(w, 1, 0, "15:1 15:2"), "R15/1:0 R15/2:1");
  CHECK_STR(bat(w, 0, 0, "8:2 1:1 8:1"), "M0/2<-15 R0/2:0 R0/1:1 M0/1<-15 R0/1:2");
  CHECK_STR(pdone(w, 1, 0), "");
  CHECK_STR(pdone(w, 0, 0), "F0/1:done! F0/2:done!");
  sl_window_free(w);

  /* trigger_every: the merged counts add up; "every" after the MERGE */
  sp.trigger_every = 2;
  w = mkw(sp, 0);
  CHECK_STR(bat(w, 0, 0, "0"), "R0:0");
  CHECK_STR(bat(w, 1, 0, "15"), "R15:0");
  CHECK_STR(bat(w, 0, 0, "7 8"), "M0<-15 F0:every R0:0-1 F0:every");
  sl_window_free(w);

  /* lateness: both watermarked: the merged session keeps the later done
   * timer (the other one goes stale) */
  sl_window_spec lp = {.lateness_ms = 100, .kind = SL_WIN_SESSION, .size_ms = 10, .producers = 1,
                       .merge_sessions = 1};
  w = mkw(lp, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 15:1 40:1"), "R0/1:0 R15/1:1 R40/1:2 F0/1:watermark F15/1:watermark");
  CHECK_STR(bat(w, 0, 5, "7:1"), "M0/1<-15 R0/1:0");
  CHECK_INT(sl_window_open_count(w), 2);
  CHECK_INT(sl_window_next_due(w), 100);
  CHECK_STR(tick(w, 100), "F0/1:done!");
  CHECK_STR(pdone(w, 0, 110), "F40/1:done!");
  sl_window_free(w);

  /* only the earlier one watermarked: the merged session is not; it fires
   * watermark when the watermark passes it */
  w = mkw(lp, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 15:1 22:1"), "R0/1:0 R15/1:1-2 F0/1:watermark");
  CHECK_STR(bat(w, 0, 5, "8:1"), "M0/1<-15 R0/1:0");
  CHECK_STR(tick(w, 100), "");                                   /* session 0's timer is stale */
  CHECK_STR(bat(w, 0, 110, "40:1"), "R40/1:0 F0/1:watermark");  /* 22 + 10 < 40 */
  CHECK_INT(sl_window_next_due(w), 210);
  CHECK_STR(tick(w, 210), "F0/1:done!");
  CHECK_INT(sl_window_open_count(w), 1);
  sl_window_free(w);
}

/* ---- triggers ------------------------------------------------------------------ */

static void test_trigger_every(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_GLOBAL, .trigger_every = 2, .producers = 1}, 0);
  CHECK_STR(batn(w, 0, 3), "R0:0-1 F0:every R0:2");
  CHECK_STR(batn(w, 0, 3), "R0:0 F0:every R0:1-2 F0:every");
  CHECK_STR(pdone(w, 0, 0), "F0:done!");
  sl_window_free(w);

  /* count windows: every fires before done; the count restarts per window */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 4, .trigger_every = 2, .producers = 1}, 0);
  CHECK_STR(batn(w, 0, 7), "R1:0-1 F1:every R1:2-3 F1:every F1:done! R2:4-5 F2:every R2:6");
  sl_window_free(w);
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 3, .trigger_every = 2, .producers = 1}, 0);
  CHECK_STR(batn(w, 0, 7), "R1:0-1 F1:every R1:2 F1:done! R2:3-4 F2:every R2:5 F2:done! R3:6");
  sl_window_free(w);

  /* fixed: each window counts its own events across batches */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 10, .trigger_every = 2, .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "1 11 2 12 3"), "R0:0 R10:1 R0:2 F0:every R10:3 F10:every R0:4");
  CHECK_STR(bat(w, 1, 0, "4"), "R0:0 F0:every");   /* watermark 4 */
  CHECK_STR(bat(w, 1, 0, "13 14"), "R10:0-1 F10:every F0:done!");   /* 11 12 | 13 14 */
  sl_window_free(w);

  /* sliding: a run is cut for the window whose count is reached */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 5, .trigger_every = 2,
                           .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "6 7 8"), "R0:0-1 F0:every R0:2 R5:0-1 F5:every R5:2");
  CHECK_STR(bat(w, 0, 0, "11"), "R5:0 F5:every R10:0");
  sl_window_free(w);

  /* session */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = 10, .trigger_every = 3, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 1:1 0:2 2:1 3:1"), "R0/1:0-1 R0/2:2 R0/1:3 F0/1:every R0/1:4");
  sl_window_free(w);
}

static void test_trigger_periodically(void) {
  /* fixed: every window from the lowest open to the highest, gaps included */
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .periodically_ms = 100,
                                      .producers = 2}, 5000);
  CHECK_INT(sl_window_next_due(w), 5100);
  CHECK_STR(tick(w, 5100), "");   /* no open window */
  CHECK_INT(sl_window_next_due(w), 5200);
  CHECK_STR(bat(w, 0, 5150, "0 3500"), "R0:0 R3000:1");
  CHECK_STR(tick(w, 5230), "F0:periodically F1000:periodically F2000:periodically F3000:periodically");
  CHECK_INT(sl_window_next_due(w), 5300);
  CHECK_STR(bat(w, 1, 5240, "2100"), "R2000:0 F0:done! F1000:done!");
  CHECK_STR(tick(w, 5555), "F2000:periodically F3000:periodically");   /* once, however late */
  CHECK_INT(sl_window_next_due(w), 5600);
  CHECK_STR(pdone(w, 0, 5560), "");   /* the watermark is 2100 */
  CHECK_STR(pdone(w, 1, 5560), "F2000:done! F3000:done!");
  CHECK_INT(sl_window_next_due(w), -1);
  sl_window_free(w);

  /* global */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_GLOBAL, .periodically_ms = 10, .producers = 1}, 0);
  CHECK_STR(tick(w, 10), "F0:periodically");
  sl_window_free(w);

  /* periodic windows: at equal times the periodically fire comes first */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_PERIODIC, .size_ms = 100, .periodically_ms = 50,
                           .producers = 1}, 0);
  CHECK_STR(tick(w, 50), "F1:periodically");
  CHECK_STR(tick(w, 100), "F1:periodically F1:done!");
  CHECK_STR(tick(w, 260), "F2:periodically F2:done!");   /* periodically due 150: once, next 300 */
  CHECK_INT(sl_window_next_due(w), 300);
  sl_window_free(w);

  /* sliding with lateness: a window ending at T gets the periodically fire due at T */
  w = mkw((sl_window_spec){.kind = SL_WIN_SLIDING, .size_ms = 10, .every_ms = 10, .lateness_ms = 100,
                           .periodically_ms = 100, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "1 15"), "R0:0 R10:1 F0:watermark");
  CHECK_STR(tick(w, 100), "F0:periodically F10:periodically F0:done!");
  sl_window_free(w);
}

static void test_message_and_custom(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_GLOBAL, .producers = 1}, 0);
  CHECK_STR(msg(w, 7), "F0:message(7)");
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_fire_open(w, SL_TRIG_CUSTOM, 4, &out), 0);
  CHECK_STR(render(&out), "F0:custom(4)");
  sl_window_free(w);

  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 2, .producers = 1}, 0);
  CHECK_STR(msg(w, 1), "F1:message(1)");   /* count's current window, even empty */
  CHECK_STR(batn(w, 0, 3), "R1:0-1 F1:done! R2:2");
  CHECK_STR(msg(w, 1), "F2:message(1)");
  sl_window_free(w);

  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 10, .producers = 2}, 0);
  CHECK_STR(msg(w, 1), "");
  CHECK_STR(bat(w, 0, 0, "5 27"), "R0:0 R20:1");
  CHECK_STR(msg(w, 2), "F0:message(2) F10:message(2) F20:message(2)");
  sl_win_out_reset(&out);
  CHECK_INT(sl_window_fire_open(w, SL_TRIG_CUSTOM, 8, &out), 0);
  CHECK_STR(render(&out), "F0:custom(8) F10:custom(8) F20:custom(8)");
  sl_window_free(w);
}

/* ---- frontier ----------------------------------------------------------------- */

static int64_t front(sl_window *w) {
  int64_t f = -7;
  if (!sl_window_frontier(w, &f)) return -1;   /* no bound (none of the tests' frontiers is -1) */
  return f;
}

static void test_frontier(void) {
  sl_window *w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_GLOBAL, .producers = 1}, 0);
  CHECK_INT(front(w), -1);
  CHECK_STR(pdone(w, 0, 0), "F0:done!");
  CHECK(front(w) == INT64_MAX);
  sl_window_free(w);

  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_COUNT, .count = 2, .producers = 1}, 0);
  CHECK_INT(front(w), 1);
  CHECK_STR(batn(w, 0, 5), "R1:0-1 F1:done! R2:2-3 F2:done! R3:4");
  CHECK_INT(front(w), 3);
  sl_window_free(w);

  /* fixed: no bound until a window ends (an older producer may still open
   * a lower window); then the lowest open window */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_FIXED, .size_ms = 1000, .producers = 2}, 0);
  CHECK_STR(bat(w, 0, 0, "2500"), "R2000:0");
  CHECK_INT(front(w), -1);
  CHECK_STR(bat(w, 1, 0, "500"), "R0:0");
  CHECK_INT(front(w), -1);
  CHECK_STR(bat(w, 1, 0, "3100"), "R3000:0 F0:done! F1000:done!");
  CHECK_INT(front(w), 2000);
  CHECK_STR(pdone(w, 1, 0), "");                          /* watermark 2500 */
  CHECK_INT(front(w), 2000);
  CHECK_STR(pdone(w, 0, 0), "F2000:done! F3000:done!");
  CHECK(front(w) == INT64_MAX);
  sl_window_free(w);

  /* with lateness a window watermarked but not done holds it */
  w = mkw((sl_window_spec){.kind = SL_WIN_FIXED, .size_ms = 10, .lateness_ms = 5, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "1 25"), "R0:0 R20:1 F0:watermark F10:watermark");
  CHECK_INT(front(w), -1);
  CHECK_STR(tick(w, 5), "F0:done! F10:done!");
  CHECK_INT(front(w), 20);
  sl_window_free(w);

  /* sessions: min(watermark - gap, the smallest open id) */
  w = mkw((sl_window_spec){.lateness_ms = -1, .kind = SL_WIN_SESSION, .size_ms = 10, .producers = 1}, 0);
  CHECK_STR(bat(w, 0, 0, "0:1 3:2"), "R0/1:0 R3/2:1");
  CHECK_INT(front(w), -7);      /* watermark 3 */
  CHECK_STR(bat(w, 0, 0, "12:2 20:1"), "R3/2:0 R20/1:1 F0/1:done!");
  CHECK_INT(front(w), 3);       /* session 3 (key 2) is still open */
  CHECK_STR(bat(w, 0, 0, "40:1"), "R40/1:0 F3/2:done! F20/1:done!");
  CHECK_INT(front(w), 30);
  sl_window_free(w);
}

int main(void) {
  sl_win_out_init(&out);
  RUN(test_spec_checks);
  RUN(test_global);
  RUN(test_count_flow_examples);
  RUN(test_count_boundaries);
  RUN(test_fixed_flow_example);
  RUN(test_fixed_two_producers);
  RUN(test_fixed_first_window_late_even_with_lateness);
  RUN(test_fixed_lateness);
  RUN(test_fixed_batch_size_dependence);
  RUN(test_periodic);
  RUN(test_sliding_membership);
  RUN(test_sliding_watermark_and_gaps);
  RUN(test_session_single_key);
  RUN(test_session_keyed);
  RUN(test_session_watermark_and_lateness);
  RUN(test_session_merge);
  RUN(test_trigger_every);
  RUN(test_trigger_periodically);
  RUN(test_message_and_custom);
  RUN(test_frontier);
  sl_win_out_free(&out);
  return CHECK_SUMMARY();
}
