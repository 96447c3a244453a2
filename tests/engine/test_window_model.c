/* The window state machine (engine/window.c, window_session.c) against a
 * brute-force model: fixed, sliding and session windows (with and without
 * merging sessions) under random batches from two producers, over many
 * seeds; every call's actions are checked against what the model says
 * (runs, fires in order, late drops, merges, the frontier). */
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

static sl_win_out out;

/* ---- random model check ---------------------------------------------------- */

typedef struct mwin {
  int64_t id;
  uint64_t key;
  int64_t lo, hi;   /* sessions */
  int ended;
  uint64_t cnt;
  char ev[600];
} mwin;

/* The brute-force model: every window ever created, ended or not. */
typedef struct model {
  sl_window_spec sp;
  mwin w[4096];
  int nw;
  int started;
  int64_t first, maxseen;
  int has_recent[2], done[2];
  int64_t recent[2];
  int has_br;              /* the batch's producer's latest event time so far */
  int64_t br;
  int any_ended;           /* fixed, sliding: the highest window that ended */
  int64_t maxended;
  int has_ended[4];
  int64_t ended_hi[4];
  char log[16384];
} model;

static uint64_t rng;
static uint64_t rnd(void) {
  uint64_t z = (rng += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}
static int64_t rint_(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }

static mwin *m_find(model *m, int64_t id, uint64_t key) {
  for (int i = 0; i < m->nw; i++)
    if (m->w[i].id == id && m->w[i].key == key) return &m->w[i];
  return NULL;
}

static mwin *m_get(model *m, int64_t id, uint64_t key) {
  mwin *x = m_find(m, id, key);
  if (x) return x;
  x = &m->w[m->nw++];
  memset(x, 0, sizeof *x);
  x->id = id, x->key = key;
  return x;
}

static void m_add(model *m, mwin *x, long g) {
  cat(x->ev, sizeof x->ev, "%ld,", g);
  if (m->sp.trigger_every && ++x->cnt == m->sp.trigger_every) cat(x->ev, sizeof x->ev, "|"), x->cnt = 0;
}

/* Session y merges into x (merge_sessions): x's events, then y's. */
static void m_merge(model *m, mwin *x, mwin *y) {
  x->hi = y->hi;
  cat(x->ev, sizeof x->ev, "%s", y->ev);
  x->cnt += y->cnt;
  if (m->sp.trigger_every && x->cnt >= m->sp.trigger_every) {
    cat(x->ev, sizeof x->ev, "|");
    x->cnt -= m->sp.trigger_every;
  }
  y->ended = 1;   /* gone: never logged */
}

static void m_end(model *m, mwin *x) {
  x->ended = 1;
  cat(m->log, sizeof m->log, " ");
  cat_win(m->log, sizeof m->log, (sl_win_id){x->id, x->key});
  cat(m->log, sizeof m->log, "=[%s]", x->ev);
}

static int64_t m_fdiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }

static void m_event(model *m, int64_t t, uint64_t key, long g, uint64_t *late) {
  int64_t size = m->sp.size_ms;
  if (m->sp.kind != SL_WIN_SESSION) {
    int64_t ev = m->sp.kind == SL_WIN_FIXED ? size : m->sp.every_ms;
    int64_t top = m_fdiv(t, ev) * ev, s;
    for (s = top; s + size > t; s -= ev) {}
    if (!m->started) m->started = 1, m->first = s + ev, m->maxseen = top;
    /* a window below the lowest open one opens unless one at or above it
     * has ended, or the event is older than its producer's latest window */
    int64_t rlow = INT64_MIN;
    if (m->has_br) {
      int64_t rs;
      for (rs = m_fdiv(m->br, ev) * ev; rs + size > m->br; rs -= ev) {}
      rlow = rs + ev;
    }
    int any = 0;
    for (s = s + ev; s <= top; s += ev) {
      if (s < m->first) {
        if (m->any_ended && s <= m->maxended) continue;
        if (s < rlow) continue;
        m->first = s;
      }
      mwin *x = m_get(m, s, 0);
      if (x->ended) continue;
      m_add(m, x, g);
      any = 1;
    }
    if (!m->has_br || t > m->br) m->br = t;
    m->has_br = 1;
    if (!any) (*late)++;
    else if (top > m->maxseen) m->maxseen = top;
    return;
  }
  mwin *in = NULL, *below = NULL, *above = NULL;
  for (int i = 0; i < m->nw; i++) {
    mwin *x = &m->w[i];
    if (x->ended || x->key != key) continue;
    if (x->lo <= t && t <= x->hi) in = x;
    if (x->hi < t && (!below || x->hi > below->hi)) below = x;
    if (x->lo > t && (!above || x->lo < above->lo)) above = x;
  }
  mwin *j = in;
  if (!j && below && t <= below->hi + size) {
    j = below, j->hi = t;
    if (m->sp.merge_sessions && above && above->lo <= t + size) m_merge(m, j, above);
  }
  if (!j && above && t >= above->lo - size) j = above, j->lo = t;
  if (!j) {
    int wk = m->has_recent[0] || m->done[0];
    int wk1 = m->has_recent[1] || m->done[1];
    int64_t wm = INT64_MAX;
    for (int p = 0; p < 2; p++)
      if (!m->done[p] && m->recent[p] < wm) wm = m->recent[p];
    if ((m->has_ended[key] && t <= m->ended_hi[key] + size) || (wk && wk1 && t + size < wm)) {
      (*late)++;
      return;
    }
    j = &m->w[m->nw++];
    memset(j, 0, sizeof *j);
    j->id = t, j->key = key, j->lo = t, j->hi = t;
  }
  m_add(m, j, g);
}

static int m_cmp(const void *a, const void *b) {
  const mwin *x = *(mwin *const *)a, *y = *(mwin *const *)b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->key < y->key ? -1 : x->key > y->key;
}

/* After a batch or a producer_done: fires what the watermark passed. */
static void m_step(model *m) {
  int all = m->done[0] && m->done[1];
  int64_t wm = INT64_MAX;
  for (int p = 0; p < 2; p++) {
    if (m->done[p]) continue;
    if (!m->has_recent[p]) return;
    if (m->recent[p] < wm) wm = m->recent[p];
  }
  int64_t size = m->sp.size_ms;
  if (m->sp.kind != SL_WIN_SESSION) {
    if (!m->started) return;
    int64_t ev = m->sp.kind == SL_WIN_FIXED ? size : m->sp.every_ms;
    for (int64_t s = m->first; s <= m->maxseen; s += ev) {
      if (!all && s + size > wm) break;
      mwin *x = m_get(m, s, 0);
      if (!x->ended) m_end(m, x);
      if (!m->any_ended || s > m->maxended) m->maxended = s;
      m->any_ended = 1;
    }
    return;
  }
  mwin *f[4096];
  int nf = 0;
  for (int i = 0; i < m->nw; i++)
    if (!m->w[i].ended && (all || m->w[i].hi + size < wm)) f[nf++] = &m->w[i];
  qsort(f, nf, sizeof *f, m_cmp);
  for (int i = 0; i < nf; i++) {
    m_end(m, f[i]);
    if (!m->has_ended[f[i]->key] || f[i]->hi > m->ended_hi[f[i]->key]) m->ended_hi[f[i]->key] = f[i]->hi;
    m->has_ended[f[i]->key] = 1;
  }
}

/* The machine side: the same log, built from the actions. */
typedef struct mach {
  mwin w[4096];
  int nw;
  char log[16384];
  int errors;
  int has_f;               /* the machine's frontier after the last call */
  int64_t f;
  uint64_t merges;
} mach;

static sl_window *m_w;   /* the machine random_run drives */

static void mach_apply(mach *h, const long *g) {
  for (size_t i = 0; i < out.nacts; i++) {
    const sl_win_action *a = &out.acts[i];
    mwin *x = NULL;
    for (int j = 0; j < h->nw; j++)
      if (h->w[j].id == a->win.id && h->w[j].key == a->win.key) x = &h->w[j];
    if (!x) {
      if (h->has_f && a->win.id < h->f) h->errors++;   /* no new window below the frontier */
      x = &h->w[h->nw++];
      memset(x, 0, sizeof *x);
      x->id = a->win.id, x->key = a->win.key;
    }
    if (x->ended) h->errors++;   /* nothing may touch an ended window */
    if (a->op == SL_WIN_MERGE) {
      mwin *y = NULL;
      for (int j = 0; j < h->nw; j++)
        if (h->w[j].id == a->other && h->w[j].key == a->win.key) y = &h->w[j];
      if (!y || y->ended || y == x) {
        h->errors++;
        continue;
      }
      cat(x->ev, sizeof x->ev, "%s", y->ev);
      y->ended = 1;
      h->merges++;
    } else if (a->op == SL_WIN_RUN) {
      for (uint32_t j = 0; j < a->n; j++) cat(x->ev, sizeof x->ev, "%ld,", g[out.idx[a->from + j]]);
    } else if (a->trigger == SL_TRIG_EVERY) {
      cat(x->ev, sizeof x->ev, "|");
    } else if (a->trigger == SL_TRIG_DONE && a->ends) {
      x->ended = 1;
      cat(h->log, sizeof h->log, " ");
      cat_win(h->log, sizeof h->log, a->win);
      cat(h->log, sizeof h->log, "=[%s]", x->ev);
    } else {
      h->errors++;
    }
  }
  /* the frontier never goes back, and every window below it has ended */
  int64_t f;
  if (sl_window_frontier(m_w, &f)) {
    if (h->has_f && f < h->f) h->errors++;
    h->has_f = 1, h->f = f;
    for (int j = 0; j < h->nw; j++)
      if (h->w[j].id < f && !h->w[j].ended) h->errors++;
  } else if (h->has_f) {
    h->errors++;
  }
}

static uint64_t random_merges;   /* MERGE actions over the random runs */

static int random_run(sl_window_kind kind, uint64_t seed, char *why, size_t cap) {
  static model m;
  static mach h;
  memset(&m, 0, sizeof m);
  memset(&h, 0, sizeof h);
  rng = seed * 7919 + (uint64_t)kind;
  sl_window_spec sp = {.kind = kind, .producers = 2, .lateness_ms = -1};
  sp.trigger_every = (uint64_t)rint_(0, 3);
  if (kind == SL_WIN_FIXED) sp.size_ms = rint_(3, 20);
  if (kind == SL_WIN_SLIDING) sp.size_ms = rint_(3, 25), sp.every_ms = rint_(1, sp.size_ms);
  if (kind == SL_WIN_SESSION) sp.size_ms = rint_(2, 12), sp.merge_sessions = (int)rint_(0, 1);
  m.sp = sp;
  sl_window *w = NULL;
  if (sl_window_new(&sp, 0, &w)) return snprintf(why, cap, "new"), 0;
  m_w = w;
  int64_t clock[2] = {rint_(-40, 40), rint_(-40, 40)};
  long g = 0;
  int ok = 1;
  for (int step = 0; step < 60 && ok && !(m.done[0] && m.done[1]); step++) {
    uint32_t p = (uint32_t)rint_(0, 1);
    if (m.done[p]) p ^= 1;
    m.log[0] = h.log[0] = 0;
    uint64_t mlate = 0;
    sl_win_out_reset(&out);
    if (rint_(0, 15) == 0) {
      m.done[p] = 1;
      m_step(&m);
      CHECK_INT(sl_window_producer_done(w, p, 0, &out), 0);
      mach_apply(&h, NULL);
    } else {
      int64_t t[8];
      uint64_t k[8];
      long gv[8];
      uint32_t n = (uint32_t)rint_(1, 7);
      m.has_br = m.has_recent[p];
      m.br = m.recent[p];
      for (uint32_t i = 0; i < n; i++) {
        clock[p] += rint_(-6, 12);
        if (rint_(0, 20) == 0) clock[p] += rint_(10, 60);
        t[i] = clock[p];
        k[i] = kind == SL_WIN_SESSION ? (uint64_t)rint_(0, 3) : 0;
        gv[i] = g++;
        m_event(&m, t[i], k[i], gv[i], &mlate);
      }
      for (uint32_t i = 0; i < n; i++) {   /* the watermark moves after the batch */
        if (!m.has_recent[p] || t[i] > m.recent[p]) m.recent[p] = t[i];
        m.has_recent[p] = 1;
      }
      m_step(&m);
      CHECK_INT(sl_window_batch(w, p, n, t, k, 0, &out), 0);
      mach_apply(&h, gv);
    }
    if (mlate) cat(m.log, sizeof m.log, " late:%" PRIu64, mlate);
    if (out.late) cat(h.log, sizeof h.log, " late:%" PRIu64, out.late);
    if (strcmp(m.log, h.log) != 0 || h.errors) {
      snprintf(why, cap, "step %d: model \"%s\", machine \"%s\", errors %d", step, m.log, h.log, h.errors);
      ok = 0;
    }
  }
  if (ok && !(m.done[0] && m.done[1])) {   /* end of input */
    for (uint32_t p = 0; p < 2; p++) {
      if (m.done[p]) continue;
      m.log[0] = h.log[0] = 0;
      m.done[p] = 1;
      m_step(&m);
      sl_win_out_reset(&out);
      CHECK_INT(sl_window_producer_done(w, p, 0, &out), 0);
      mach_apply(&h, NULL);
      if (strcmp(m.log, h.log) != 0) {
        snprintf(why, cap, "end: model \"%s\", machine \"%s\"", m.log, h.log);
        ok = 0;
      }
    }
  }
  /* every window that got events fired done exactly once */
  for (int i = 0; ok && i < h.nw; i++)
    if (!h.w[i].ended) snprintf(why, cap, "window %" PRId64 " never ended", h.w[i].id), ok = 0;
  if (ok && sl_window_open_count(w) != 0) snprintf(why, cap, "open windows left"), ok = 0;
  random_merges += h.merges;
  sl_window_free(w);
  return ok;
}

static void test_random_against_model(void) {
  const uint64_t first = 1, last = 300;
  sl_window_kind kinds[] = {SL_WIN_FIXED, SL_WIN_SLIDING, SL_WIN_SESSION};
  const char *names[] = {"fixed", "sliding", "session"};
  for (int k = 0; k < 3; k++) {
    int failed = 0;
    for (uint64_t seed = first; seed <= last && !failed; seed++) {
      char why[2048];
      if (!random_run(kinds[k], seed, why, sizeof why)) {
        fprintf(stderr, "  %s seed %" PRIu64 ": %s\n", names[k], seed, why);
        check_failed_in_test = 1;
        failed = 1;
      }
    }
    printf("     random %s: seeds %" PRIu64 "..%" PRIu64 "\n", names[k], first, last);
  }
  printf("     random sessions merged %" PRIu64 " times\n", random_merges);
  CHECK(random_merges > 0);
}

int main(void) {
  sl_win_out_init(&out);
  RUN(test_random_against_model);
  sl_win_out_free(&out);
  return CHECK_SUMMARY();
}
