/* fuzz_window: the window state machine (engine/window.c) driven by
 * arbitrary operations.
 *
 * The first ten bytes choose the spec (kind, count, size, every,
 * lateness, trigger_every, trigger_periodically, producers,
 * merge_sessions, the start now); the rest is a sequence of operations:
 * a batch from a producer (event times that move by signed steps, keys,
 * a now), producer_done, timer (at a later now, or exactly at
 * sl_window_next_due), a message, a custom/other fire. After every call
 * the target checks what the machine promises:
 *  - a call the API refuses returns SL_EINVAL and answers nothing;
 *  - every event of a batch runs into a window (exactly one, or for
 *    sliding windows at least one, each window at most once) or is
 *    counted late, never both; RUN indices are in range and ascending
 *    within a RUN; fixed and sliding RUNs go to windows that hold the
 *    event's time; count windows take exactly count events;
 *  - no action touches a window that ended or merged away; a FIRE ends
 *    a window exactly when it is a done; MERGE joins two open sessions of
 *    one key; only batches RUN;
 *  - windows other than sessions end in ascending order over the whole
 *    run; the done fires of the last producer_done are ascending;
 *  - message and fire_open fire every open window once, ascending, with
 *    the name given, ending none;
 *  - the frontier never decreases, every window below it has ended, and
 *    no window appears below it later;
 *  - once every producer is done: no open windows, no timer, no action
 *    from any call, and every window seen has ended;
 *  - the late total is the sum of the calls' late counts.
 * Any failure aborts (libFuzzer saves the input); ASan and UBSan watch
 * the machine's memory and arithmetic. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "status.h"
#include "window.h"

#define MAXN 16
#define HBITS 16
#define HSIZE (1u << HBITS)
#define SPAN 4000

static void fail(const char *what) {
  fprintf(stderr, "fuzz_window: %s\n", what);
  abort();
}

typedef struct input {
  const uint8_t *p, *end;
} input;

static unsigned byte(input *in) { return in->p < in->end ? *in->p++ : 0; }

/* ---- windows seen, by (id, key): an open-addressing table whose slots
 * belong to the current input when their generation matches ---- */
enum { W_OPEN = 1, W_ENDED = 2, W_MERGED = 3 };
typedef struct wrec {
  uint32_t gen;
  uint8_t state;
  int64_t id;
  uint64_t key;
  uint64_t events;      /* RUN events so far */
  uint32_t last_call;   /* the batch call that last ran into it */
  uint32_t last_event;  /* with the index of that batch's last event in it */
} wrec;

static wrec tab[HSIZE];
static wrec *seen[HSIZE / 2];   /* the windows of this input */
static uint32_t gen, nwin;

static wrec *win(int64_t id, uint64_t key, int create) {
  uint64_t h = ((uint64_t)id * UINT64_C(0x9e3779b97f4a7c15)) ^ (key * UINT64_C(0xbf58476d1ce4e5b9));
  for (uint32_t i = (uint32_t)(h >> (64 - HBITS));; i = (i + 1) & (HSIZE - 1)) {
    wrec *r = &tab[i];
    if (r->gen != gen) {
      if (!create) return NULL;
      if (nwin == HSIZE / 2) fail("too many windows for the table");
      seen[nwin++] = r;
      memset(r, 0, sizeof *r);
      r->gen = gen, r->id = id, r->key = key, r->state = W_OPEN;
      return r;
    }
    if (r->id == id && r->key == key) return r;
  }
}

static sl_window_spec sp;
static sl_window *w;
static sl_win_out out;
static int has_f;
static int64_t frontier;
static int any_ended;
static int64_t last_ended;
static uint64_t late_sum;
static uint32_t call;
static int checked_f;
static int64_t last_checked;

static int64_t fdiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }

static int win_less(sl_win_id a, sl_win_id b) {
  return a.id < b.id || (a.id == b.id && a.key < b.key);
}

/* Checks and applies the actions of the call that just returned rc.
 * n/times: the batch (n = 0 for other calls); final: the call finished
 * the machine; fire_all: the call was a message or fire_open (name). */
static void check(int rc, uint32_t n, const int64_t *times, int was_finished, int fire_all,
                  uint64_t name, uint64_t open_before) {
  if (rc != 0 && rc != SL_EINVAL) fail("unexpected status");
  if (rc == SL_EINVAL && (out.nacts || out.late)) fail("a refused call answered something");
  if (was_finished && (out.nacts || out.late)) fail("a finished machine acted");
  static uint32_t runs[MAXN];
  memset(runs, 0, sizeof runs);
  call++;
  int finished = sl_window_finished(w);
  int prev_done_set = 0;
  sl_win_id prev_done = {0, 0}, prev_fire = {0, 0};
  uint64_t fires = 0;
  for (size_t i = 0; i < out.nacts; i++) {
    const sl_win_action *a = &out.acts[i];
    wrec *r = win(a->win.id, a->win.key, 0);
    if (!r) {
      if (has_f && a->win.id < frontier) fail("a new window below the frontier");
      r = win(a->win.id, a->win.key, 1);
    }
    if (r->state != W_OPEN) fail("an action on a window that ended or merged away");
    if (sp.kind != SL_WIN_SESSION && a->win.key) fail("a key on a window that is not a session");
    switch (a->op) {
    case SL_WIN_RUN:
      if (!n) fail("a RUN from a call that is not a batch");
      if (a->n == 0) fail("an empty RUN");
      if ((uint64_t)a->from + a->n > out.nidx) fail("RUN indices out of range");
      for (uint32_t j = 0; j < a->n; j++) {
        uint32_t e = out.idx[a->from + j];
        if (e >= n) fail("a RUN index past the batch");
        if (j && e <= out.idx[a->from + j - 1]) fail("RUN indices not ascending");
        if (r->last_call == call && e <= r->last_event && r->events) fail("an event ran twice into a window");
        r->last_call = call, r->last_event = e;
        runs[e]++;
        r->events++;
        if (sp.kind == SL_WIN_FIXED || sp.kind == SL_WIN_SLIDING) {
          int64_t step = sp.kind == SL_WIN_FIXED ? sp.size_ms : sp.every_ms;
          if (fdiv(a->win.id, step) * step != a->win.id) fail("a window start off the step");
          if (times[e] < a->win.id || times[e] >= a->win.id + sp.size_ms) fail("an event ran into a window that does not hold its time");
        }
        if (sp.kind == SL_WIN_COUNT && r->events > sp.count) fail("a count window took more than count events");
        if (sp.kind == SL_WIN_GLOBAL && a->win.id != 0) fail("a global window other than 0");
      }
      break;
    case SL_WIN_MERGE: {
      if (sp.kind != SL_WIN_SESSION || !sp.merge_sessions) fail("a MERGE without merge_sessions");
      wrec *o = win(a->other, a->win.key, 0);
      if (!o || o == r || o->state != W_OPEN) fail("a MERGE of a window that is not open");
      o->state = W_MERGED;
      r->events += o->events;
      break;
    }
    case SL_WIN_FIRE:
      if (a->trigger > SL_TRIG_CUSTOM) fail("an unknown trigger");
      if (a->ends != (a->trigger == SL_TRIG_DONE)) fail("a FIRE ends a window exactly when it is a done");
      if (fire_all) {
        if (a->trigger == SL_TRIG_DONE) fail("a done from message/fire_open");
        if (a->name_id != name) fail("a fire with another name");
        if (fires && !win_less(prev_fire, a->win)) fail("message/fire_open not ascending");
        prev_fire = a->win;
        fires++;
      }
      if (a->trigger == SL_TRIG_EVERY && !sp.trigger_every && !fire_all) fail("an every without trigger_every");
      if (a->trigger == SL_TRIG_PERIODICALLY && !sp.periodically_ms && !fire_all) fail("a periodically without trigger_periodically");
      if (a->ends) {
        if (sp.kind == SL_WIN_COUNT && !finished && r->events != sp.count) fail("a count window ended before count events");
        if (sp.kind != SL_WIN_SESSION) {
          if (any_ended && a->win.id <= last_ended) fail("windows ended out of order");
          any_ended = 1, last_ended = a->win.id;
        }
        if (finished && prev_done_set && !win_less(prev_done, a->win)) fail("the last done fires not ascending");
        prev_done = a->win, prev_done_set = 1;
        r->state = W_ENDED;
      }
      break;
    default:
      fail("an unknown action");
    }
  }
  if (fire_all && rc == 0 && fires != open_before) fail("message/fire_open did not fire every open window once");
  if (n && rc == 0) {
    uint64_t none = 0;
    for (uint32_t e = 0; e < n; e++) {
      if (!runs[e]) none++;
      else if (runs[e] > 1 && sp.kind != SL_WIN_SLIDING) fail("an event ran into two windows");
    }
    if (none != out.late) fail("late count differs from the events in no RUN");
  } else if (out.late) {
    fail("late events from a call that is not a batch");
  }
  late_sum += out.late;
  if (sl_window_late_total(w) != late_sum) fail("late total differs from the calls' sum");
  /* frontier */
  int64_t f;
  if (sl_window_frontier(w, &f)) {
    if (has_f && f < frontier) fail("the frontier went back");
    has_f = 1, frontier = f;
  } else if (has_f) {
    fail("the frontier was known and is not");
  }
  if (has_f && (!checked_f || frontier != last_checked)) {   /* scan when it moved */
    checked_f = 1, last_checked = frontier;
    for (uint32_t i = 0; i < nwin; i++)
      if (seen[i]->state == W_OPEN && seen[i]->id < frontier) fail("an open window below the frontier");
  }
  if (finished) {
    if (sl_window_open_count(w) != 0) fail("open windows after the end");
    if (sl_window_next_due(w) != -1) fail("a timer after the end");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!out.acts && !out.capacts) sl_win_out_init(&out);
  input in = {data, data + size};
  gen++, nwin = 0, call = 0;
  has_f = 0, any_ended = 0, late_sum = 0, checked_f = 0;
  memset(&sp, 0, sizeof sp);
  sp.kind = (sl_window_kind)(byte(&in) % 6);
  sp.count = 1 + byte(&in) % 8;
  sp.size_ms = 1 + byte(&in) % 32;
  sp.every_ms = 1 + (int64_t)byte(&in) % sp.size_ms;
  unsigned b = byte(&in);
  sp.lateness_ms = (b & 0x80) ? -1 : (int64_t)(b % 64);
  sp.trigger_every = byte(&in) % 4;
  b = byte(&in);
  sp.periodically_ms = b % 3 == 0 ? 1 + (int64_t)(b >> 2) % 40 : 0;
  sp.producers = 1 + byte(&in) % 4;
  sp.merge_sessions = byte(&in) & 1;
  int64_t now = byte(&in);
  if (sp.kind == SL_WIN_FIXED) sp.every_ms = 0;
  if (sl_window_new(&sp, now, &w) != 0) fail("a valid spec refused");
  int64_t clock[4] = {0, 0, 0, 0};
  int done[4] = {0, 0, 0, 0};
  int64_t times[MAXN];
  uint64_t keys[MAXN];
  /* sessions make a window per event: an input stops taking operations
   * once its windows fill a quarter of the table */
  while (in.p < in.end && nwin < HSIZE / 4) {
    unsigned op = byte(&in);
    int was_finished = sl_window_finished(w);
    sl_win_out_reset(&out);
    int rc;
    switch (op % 6) {
    case 0:
    case 5: {   /* a batch */
      uint32_t p = byte(&in) % 4;   /* may be past producers: refused */
      uint32_t n = 1 + byte(&in) % MAXN;
      for (uint32_t i = 0; i < n; i++) {
        int8_t d = (int8_t)byte(&in);
        clock[p] += (op & 0x80) ? (int64_t)d * 8 : (int64_t)d % 16;
        /* times stay within +-SPAN: at most 2 * SPAN + 1 fixed or sliding
         * windows over a run, whatever fires them */
        if (clock[p] > SPAN) clock[p] = SPAN;
        if (clock[p] < -SPAN) clock[p] = -SPAN;
        times[i] = clock[p];
        keys[i] = byte(&in) % 4;
      }
      now += byte(&in) % 32;
      int refused = p >= sp.producers || done[p] || was_finished;
      uint64_t *kp = sp.kind == SL_WIN_SESSION && (op & 0x40) ? keys : NULL;
      rc = sl_window_batch(w, p, n, times, kp, now, &out);
      if (refused != (rc == SL_EINVAL)) fail("a batch refused (or taken) against the rules");
      check(rc, refused ? 0 : n, times, was_finished, 0, 0, 0);
      break;
    }
    case 1: {   /* producer_done */
      uint32_t p = byte(&in) % 4;
      now += byte(&in) % 32;
      rc = sl_window_producer_done(w, p, now, &out);
      if ((p >= sp.producers) != (rc == SL_EINVAL)) fail("producer_done refused against the rules");
      if (p < sp.producers) done[p] = 1;
      check(rc, 0, NULL, was_finished, 0, 0, 0);
      break;
    }
    case 2: {   /* timer */
      int64_t due = sl_window_next_due(w);
      if ((op & 0x80) && due >= 0) {
        if (due > now) now = due;
      } else {
        now += byte(&in) % 64;
      }
      rc = sl_window_timer(w, now, &out);
      check(rc, 0, NULL, was_finished, 0, 0, 0);
      if (rc == 0 && due >= 0 && due <= now && sl_window_next_due(w) >= 0 && sl_window_next_due(w) <= now)
        fail("a timer call left something due");
      break;
    }
    case 3: {   /* message */
      uint64_t name = byte(&in);
      uint64_t open = sl_window_open_count(w);
      rc = sl_window_message(w, name, &out);
      check(rc, 0, NULL, was_finished, 1, name, open);
      break;
    }
    case 4: {   /* another fire: done and unknown triggers are refused */
      unsigned t = byte(&in) % 8;
      uint64_t name = byte(&in);
      uint64_t open = sl_window_open_count(w);
      rc = sl_window_fire_open(w, (sl_win_trigger)t, name, &out);
      if ((t == SL_TRIG_DONE || t > SL_TRIG_CUSTOM) != (rc == SL_EINVAL)) fail("fire_open refused against the rules");
      check(rc, 0, NULL, was_finished, rc == 0, name, open);
      break;
    }
    }
  }
  /* end of input: every producer finishes; every window seen has ended */
  for (uint32_t p = 0; p < sp.producers; p++) {
    int was_finished = sl_window_finished(w);
    sl_win_out_reset(&out);
    now += 1;
    check(sl_window_producer_done(w, p, now, &out), 0, NULL, was_finished, 0, 0, 0);
  }
  if (!sl_window_finished(w)) fail("not finished after every producer_done");
  for (uint32_t i = 0; i < nwin; i++)
    if (seen[i]->state == W_OPEN) fail("a window never ended");
  sl_window_free(w);
  w = NULL;
  return 0;
}
