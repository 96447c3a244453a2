/* window: the window state machine (see window.h).
 *
 * One struct serves every kind. Fixed windows run through the sliding
 * code with every = size. Events are walked once per batch: each event is
 * given its window range (fixed/sliding: the window starts it runs into;
 * session: its session; others: the current window) and consecutive
 * events with the same range form a group, flushed as one RUN per window
 * (cut where trigger_every fires). Late events only add to out->late and
 * stay out of idx, so a group can span them.
 *
 * Structures:
 *  - the watermark: a tournament tree of per-producer `recent` values
 *    (INT64_MIN: sent nothing yet, INT64_MAX: done); the root is the
 *    watermark;
 *  - fixed/sliding: lo (lowest window not ended), wmlo (lowest window
 *    without its watermark fire), hi (highest window seen); trigger_every
 *    counters in a hash by window start;
 *  - sessions: a pool of session records; per key (hash key -> record) a
 *    sorted array of its open sessions, whose watermarked ones are a
 *    prefix; a lazy min-heap of keys by the hi of their first session
 *    without a watermark fire finds the sessions the watermark passes;
 *  - lateness: a FIFO of done timers (due times never decrease).
 */
#include <stdlib.h>
#include <string.h>
#include "status.h"
#include "window.h"
#include "window_int.h"

/* ---- small containers ---------------------------------------------------- */

int wn_grow(void **p, size_t *cap, size_t need, size_t esz) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 8;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * esz);
  if (!q) return SL_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}


static uint64_t *hm_get(const hmap *h, uint64_t k) {
  if (!h->cap) return NULL;
  size_t m = h->cap - 1;
  for (size_t i = mix(k) & m; h->used[i]; i = (i + 1) & m)
    if (h->keys[i] == k) return &h->vals[i];
  return NULL;
}

static int hm_rehash(hmap *h, size_t ncap) {
  hmap n = {calloc(ncap, 8), calloc(ncap, 8), calloc(ncap, 1), ncap, 0};
  if (!n.keys || !n.vals || !n.used) {
    free(n.keys), free(n.vals), free(n.used);
    return SL_ENOMEM;
  }
  for (size_t j = 0; j < h->cap; j++) {
    if (!h->used[j]) continue;
    size_t i = mix(h->keys[j]) & (ncap - 1);
    while (n.used[i]) i = (i + 1) & (ncap - 1);
    n.used[i] = 1, n.keys[i] = h->keys[j], n.vals[i] = h->vals[j];
  }
  n.len = h->len;
  free(h->keys), free(h->vals), free(h->used);
  *h = n;
  return 0;
}

/* The value slot of k, inserted with value v0 when absent. */
uint64_t *wn_hm_put(hmap *h, uint64_t k, uint64_t v0) {
  uint64_t *v = hm_get(h, k);
  if (v) return v;
  if ((h->len + 1) * 4 > h->cap * 3 && hm_rehash(h, h->cap ? h->cap * 2 : 16)) return NULL;
  size_t m = h->cap - 1, i = mix(k) & m;
  while (h->used[i]) i = (i + 1) & m;
  h->used[i] = 1, h->keys[i] = k, h->vals[i] = v0;
  h->len++;
  return &h->vals[i];
}

static void hm_del(hmap *h, uint64_t k) {
  if (!h->cap) return;
  size_t m = h->cap - 1, i = mix(k) & m;
  while (h->used[i] && h->keys[i] != k) i = (i + 1) & m;
  if (!h->used[i]) return;
  for (size_t j = (i + 1) & m; h->used[j]; j = (j + 1) & m) {
    size_t home = mix(h->keys[j]) & m;
    /* j's entry may move to the hole i unless its home lies in (i, j] */
    if (((j - home) & m) >= ((j - i) & m)) {
      h->keys[i] = h->keys[j], h->vals[i] = h->vals[j];
      i = j;
    }
  }
  h->used[i] = 0;
  h->len--;
}

static void hm_free(hmap *h) {
  free(h->keys), free(h->vals), free(h->used);
  memset(h, 0, sizeof *h);
}

/* ---- out --------------------------------------------------------------- */

void sl_win_out_init(sl_win_out *o) { memset(o, 0, sizeof *o); }

void sl_win_out_reset(sl_win_out *o) {
  o->nacts = 0;
  o->nidx = 0;
  o->late = 0;
  o->bad = 0;
  o->call_acts = 0;
}

void sl_win_out_free(sl_win_out *o) {
  free(o->acts);
  free(o->idx);
  memset(o, 0, sizeof *o);
}

static int push_act(sl_win_out *o, sl_win_action a) {
  if (a.op == SL_WIN_RUN && o->nacts > o->call_acts) {   /* merges with an adjacent run of the same window */
    sl_win_action *l = &o->acts[o->nacts - 1];
    if (l->op == SL_WIN_RUN && l->win.id == a.win.id && l->win.key == a.win.key &&
        l->from + l->n == a.from) {
      l->n += a.n;
      return 0;
    }
  }
  if (wn_grow((void **)&o->acts, &o->capacts, o->nacts + 1, sizeof *o->acts)) return SL_ENOMEM;
  o->acts[o->nacts++] = a;
  return 0;
}

int wn_fire(sl_win_out *o, int64_t id, uint64_t key, int trig, int ends, uint64_t name) {
  sl_win_action a = {SL_WIN_FIRE, (uint8_t)trig, (uint8_t)ends, 0, 0, {id, key}, name, 0};
  return push_act(o, a);
}

/* RUN(win, from, n), cut after every trigger_every-th event of the window
 * (*every counts the window's events since its last every fire). */
int wn_run(sl_window *w, sl_win_out *o, int64_t id, uint64_t key, uint32_t from,
               uint32_t n, uint64_t *every) {
  uint64_t te = w->sp.trigger_every;
  while (n > 0) {
    uint32_t k = n;
    if (te && te - *every < k) k = (uint32_t)(te - *every);
    sl_win_action a = {SL_WIN_RUN, 0, 0, from, k, {id, key}, 0, 0};
    if (push_act(o, a)) return SL_ENOMEM;
    from += k, n -= k;
    if (te) {
      *every += k;
      if (*every == te) {
        *every = 0;
        if (wn_fire(o, id, key, SL_TRIG_EVERY, 0, 0)) return SL_ENOMEM;
      }
    }
  }
  return 0;
}

/* ---- arithmetic ------------------------------------------------------------- */

static int64_t floordiv(int64_t a, int64_t b) {   /* b > 0 */
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int sliding(const sl_window *w) {
  return w->sp.kind == SL_WIN_FIXED || w->sp.kind == SL_WIN_SLIDING;
}

static int evtime(const sl_window *w) {
  return sliding(w) || w->sp.kind == SL_WIN_SESSION;
}

/* The lowest and highest window start an event at t belongs to. */
static int64_t win_low(const sl_window *w, int64_t t) {
  return floordiv(t - w->sp.size_ms, w->step) * w->step + w->step;
}

static int64_t win_high(const sl_window *w, int64_t t) {
  return floordiv(t, w->step) * w->step;
}

/* ---- watermark tree ----------------------------------------------------- */

static void tree_set(sl_window *w, uint32_t p, int64_t v) {
  size_t i = w->nleaf + p;
  w->tree[i] = v;
  for (i /= 2; i >= 1; i /= 2) {
    int64_t a = w->tree[2 * i], b = w->tree[2 * i + 1];
    w->tree[i] = a < b ? a : b;
  }
}

/* The watermark, or INT64_MIN while unknown. */
int64_t wn_watermark(const sl_window *w) { return w->tree[1]; }

/* ---- lateness timers ---------------------------------------------------- */

int wn_tq_push(sl_window *w, tent e) {
  if (w->tlen == w->tcap) {
    size_t ncap = w->tcap ? w->tcap * 2 : 8;
    tent *n = malloc(ncap * sizeof *n);
    if (!n) return SL_ENOMEM;
    for (size_t i = 0; i < w->tlen; i++) n[i] = w->tq[(w->thead + i) & (w->tcap - 1)];
    free(w->tq);
    w->tq = n, w->tcap = ncap, w->thead = 0;
  }
  w->tq[(w->thead + w->tlen) & (w->tcap - 1)] = e;
  w->tlen++;
  return 0;
}

static tent *tq_front(sl_window *w) { return w->tlen ? &w->tq[w->thead] : NULL; }

static void tq_pop(sl_window *w) {
  w->thead = (w->thead + 1) & (w->tcap - 1);
  w->tlen--;
}

/* ---- creation ------------------------------------------------------------ */

static int dur_ok(int64_t d) { return d >= 1 && d <= SL_WIN_DURATION_MAX; }
static int now_ok(int64_t now) { return now >= 0 && now <= SL_WIN_TIME_MAX; }

int sl_window_new(const sl_window_spec *spec, int64_t now, sl_window **out) {
  *out = NULL;
  if (!spec || !now_ok(now) || spec->producers < 1) return SL_EINVAL;
  sl_window_spec sp = *spec;
  switch (sp.kind) {
  case SL_WIN_GLOBAL: break;
  case SL_WIN_COUNT:
    if (sp.count < 1) return SL_EINVAL;
    break;
  case SL_WIN_PERIODIC:
  case SL_WIN_FIXED:
  case SL_WIN_SESSION:
    if (!dur_ok(sp.size_ms)) return SL_EINVAL;
    break;
  case SL_WIN_SLIDING:
    if (!dur_ok(sp.size_ms) || sp.every_ms < 1 || sp.every_ms > sp.size_ms) return SL_EINVAL;
    break;
  default: return SL_EINVAL;
  }
  if (sp.kind == SL_WIN_FIXED || sp.kind == SL_WIN_SLIDING || sp.kind == SL_WIN_SESSION) {
    if (sp.lateness_ms > SL_WIN_DURATION_MAX) return SL_EINVAL;
    if (sp.lateness_ms < 0) sp.lateness_ms = -1;
  } else {
    sp.lateness_ms = -1;
  }
  if (sp.periodically_ms != 0 && !dur_ok(sp.periodically_ms)) return SL_EINVAL;
  sl_window *w = calloc(1, sizeof *w);
  if (!w) return SL_ENOMEM;
  w->sp = sp;
  w->step = sp.kind == SL_WIN_SLIDING ? sp.every_ms : sp.size_ms;
  w->last_now = now;
  w->t0 = now;
  w->pnext = sp.periodically_ms ? now + sp.periodically_ms : -1;
  w->cur = (sp.kind == SL_WIN_COUNT || sp.kind == SL_WIN_PERIODIC) ? 1 : 0;
  w->pend = sp.kind == SL_WIN_PERIODIC ? now + sp.size_ms : -1;
  uint32_t nl = 1;
  while (nl < sp.producers) nl *= 2;
  w->nleaf = nl;
  w->pdone = calloc(sp.producers, 1);
  w->tree = malloc(2 * (size_t)nl * sizeof *w->tree);
  if (!w->pdone || !w->tree) {
    sl_window_free(w);
    return SL_ENOMEM;
  }
  for (size_t i = 0; i < 2 * (size_t)nl; i++) w->tree[i] = INT64_MAX;
  for (uint32_t p = 0; p < sp.producers; p++) tree_set(w, p, INT64_MIN);
  *out = w;
  return 0;
}

static void sessions_clear(sl_window *w) {
  for (size_t i = 0; i < w->nkeys; i++) free(w->keys[i].s);
  free(w->keys), free(w->ss), free(w->sfree), free(w->heap), free(w->coll);
  w->keys = NULL, w->ss = NULL, w->sfree = NULL, w->heap = NULL, w->coll = NULL;
  w->nkeys = w->capkeys = w->nss = w->capss = w->nfree = w->capfree = 0;
  w->nheap = w->capheap = w->ncoll = w->capcoll = 0;
  w->nopen = 0;
  hm_free(&w->keymap);
}

void sl_window_free(sl_window *w) {
  if (!w) return;
  sessions_clear(w);
  hm_free(&w->counts);
  free(w->tq), free(w->pdone), free(w->tree);
  free(w);
}

/* ---- fixed and sliding -------------------------------------------------- */

static uint64_t *win_every(sl_window *w, int64_t s) {
  return wn_hm_put(&w->counts, (uint64_t)s, 0);
}

/* Flushes a group: idx[from .. from+n) runs into windows a..b. */
static int slide_flush(sl_window *w, sl_win_out *o, int64_t a, int64_t b, uint32_t from, uint32_t n) {
  for (int64_t s = a;; s += w->step) {
    uint64_t dummy = 0, *ev = &dummy;
    if (w->sp.trigger_every && !(ev = win_every(w, s))) return SL_ENOMEM;
    if (wn_run(w, o, s, 0, from, n, ev)) return SL_ENOMEM;
    if (s >= b) break;
  }
  return 0;
}

/* Windows [lo, end) end (done); lo = end. */
static int slide_end_upto(sl_window *w, sl_win_out *o, int64_t end) {
  for (int64_t s = w->lo; s < end; s += w->step) {
    if (wn_fire(o, s, 0, SL_TRIG_DONE, 1, 0)) return SL_ENOMEM;
    if (w->sp.trigger_every) hm_del(&w->counts, (uint64_t)s);
  }
  if (end > w->lo) w->lo = end;
  if (w->wmlo < w->lo) w->wmlo = w->lo;
  if (!w->ended || w->lo > w->endmark) w->endmark = w->lo;
  w->ended = 1;
  return 0;
}

static int slide_batch(sl_window *w, uint32_t p, uint32_t n, const int64_t *t, sl_win_out *o) {
  int64_t recent = w->tree[w->nleaf + p];   /* the producer's latest event time, INT64_MIN: none */
  int64_t ga = 0, gb = 0;
  uint32_t gfrom = 0, gn = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (!w->started) {
      w->started = 1;
      w->lo = w->wmlo = win_low(w, t[i]);
      w->hi = win_high(w, t[i]);
    }
    int64_t a = win_low(w, t[i]), b = win_high(w, t[i]);
    if (a < w->lo) {
      /* Windows below the lowest open one. Those that ended stay ended;
       * the others open now, unless the event is older than what its
       * producer has already sent (Flow's rule: an event whose window is
       * older than its producer's most recent one, and not open, is late).
       * So a slower producer's first events are not late. */
      int64_t fl = w->ended ? w->endmark : a;
      if (recent != INT64_MIN) {
        int64_t rl = win_low(w, recent);
        if (rl > fl) fl = rl;
      }
      if (fl > w->lo) fl = w->lo;
      if (t[i] > recent) recent = t[i];
      if (b < fl) {
        o->late++, w->late++;
        continue;
      }
      if (a < fl) a = fl;
      if (a < w->lo) {
        w->lo = a;
        if (w->wmlo > a) w->wmlo = a;
      }
    }
    if (t[i] > recent) recent = t[i];
    if (b > w->hi) w->hi = b;
    if (gn && (a != ga || b != gb)) {
      if (slide_flush(w, o, ga, gb, gfrom, gn)) return SL_ENOMEM;
      gn = 0;
    }
    if (!gn) ga = a, gb = b, gfrom = (uint32_t)o->nidx;
    o->idx[o->nidx++] = i;
    gn++;
  }
  if (gn && slide_flush(w, o, ga, gb, gfrom, gn)) return SL_ENOMEM;
  return 0;
}

/* Windows the watermark wm has passed fire. */
static int slide_step(sl_window *w, int64_t wm, sl_win_out *o) {
  if (!w->started) return 0;
  int64_t limit = floordiv(wm - w->sp.size_ms, w->step) * w->step;   /* last s with s + size <= wm */
  if (limit > w->hi) limit = w->hi;
  if (limit < w->wmlo) return 0;
  int64_t end = limit + w->step;
  if (w->sp.lateness_ms < 0) return slide_end_upto(w, o, end);
  for (int64_t s = w->wmlo; s < end; s += w->step)
    if (wn_fire(o, s, 0, SL_TRIG_WATERMARK, 0, 0)) return SL_ENOMEM;
  w->wmlo = end;
  tent e = {w->last_now + w->sp.lateness_ms, end, 0, 0};
  return wn_tq_push(w, e);
}

/* ---- shared paths ------------------------------------------------------- */

/* FIRE(trig, name) on every open window, ascending. */
static int fire_all(sl_window *w, int trig, uint64_t name, sl_win_out *o) {
  if (w->finished) return 0;
  switch (w->sp.kind) {
  case SL_WIN_GLOBAL:
  case SL_WIN_COUNT:
  case SL_WIN_PERIODIC:
    return wn_fire(o, w->cur, 0, trig, 0, name);
  case SL_WIN_FIXED:
  case SL_WIN_SLIDING:
    if (!w->started) return 0;
    for (int64_t s = w->lo; s <= w->hi; s += w->step)
      if (wn_fire(o, s, 0, trig, 0, name)) return SL_ENOMEM;
    return 0;
  case SL_WIN_SESSION:
    if (wn_coll_open(w)) return SL_ENOMEM;
    for (size_t i = 0; i < w->ncoll; i++) {
      const cent *x = &w->coll[i];
      if (wn_fire(o, x->id, x->key, trig, 0, name)) return SL_ENOMEM;
    }
    return 0;
  }
  return 0;
}

/* Every producer is done: every open window fires done. */
static int finish(sl_window *w, sl_win_out *o) {
  int rc = 0;
  switch (w->sp.kind) {
  case SL_WIN_GLOBAL:
  case SL_WIN_COUNT:
  case SL_WIN_PERIODIC:
    rc = wn_fire(o, w->cur, 0, SL_TRIG_DONE, 1, 0);
    break;
  case SL_WIN_FIXED:
  case SL_WIN_SLIDING:
    if (w->started) rc = slide_end_upto(w, o, w->hi + w->step);
    hm_free(&w->counts);
    break;
  case SL_WIN_SESSION:
    if ((rc = wn_coll_open(w))) break;
    for (size_t i = 0; i < w->ncoll && !rc; i++) {
      const cent *x = &w->coll[i];
      rc = wn_fire(o, x->id, x->key, SL_TRIG_DONE, 1, 0);
    }
    sessions_clear(w);
    break;
  }
  w->finished = 1;
  w->tlen = 0;
  w->pnext = -1;
  w->pend = -1;
  return rc;
}

/* After the watermark may have moved. */
static int after_input(sl_window *w, sl_win_out *o) {
  int64_t wm = wn_watermark(w);
  if (wm == INT64_MAX) return finish(w, o);
  if (wm == INT64_MIN || !evtime(w)) return 0;
  return sliding(w) ? slide_step(w, wm, o) : wn_sess_step(w, wm, o);
}

static void take_now(sl_window *w, int64_t now) {
  if (now > w->last_now) w->last_now = now;
}

int sl_window_batch(sl_window *w, uint32_t p, uint32_t n, const int64_t *times,
                    const uint64_t *keys, int64_t now, sl_win_out *out) {
  if (w->finished || p >= w->sp.producers || w->pdone[p] || !now_ok(now)) return SL_EINVAL;
  int et = evtime(w);
  int64_t mx = INT64_MIN;
  if (et && n) {
    if (!times) return SL_EINVAL;
    for (uint32_t i = 0; i < n; i++) {
      if (times[i] < SL_WIN_TIME_MIN || times[i] > SL_WIN_TIME_MAX) {
        out->bad = i;
        return SL_EINVAL;
      }
      if (times[i] > mx) mx = times[i];
    }
  }
  take_now(w, now);
  out->call_acts = out->nacts;
  if (wn_grow((void **)&out->idx, &out->capidx, out->nidx + n, sizeof *out->idx)) return SL_ENOMEM;
  int rc = 0;
  if (sliding(w)) {
    rc = slide_batch(w, p, n, times, out);
  } else if (w->sp.kind == SL_WIN_SESSION) {
    rc = wn_sess_batch(w, n, times, keys, out);
  } else {
    uint32_t from = (uint32_t)out->nidx;
    for (uint32_t i = 0; i < n; i++) out->idx[out->nidx++] = i;
    uint32_t left = n;
    while (left > 0 && !rc) {
      uint32_t k = left;
      if (w->sp.kind == SL_WIN_COUNT && w->sp.count - w->ccount < k)
        k = (uint32_t)(w->sp.count - w->ccount);
      rc = wn_run(w, out, w->cur, 0, from, k, &w->cevery);
      from += k, left -= k;
      if (w->sp.kind == SL_WIN_COUNT && !rc && (w->ccount += k) == w->sp.count) {
        rc = wn_fire(out, w->cur, 0, SL_TRIG_DONE, 1, 0);
        w->cur++, w->ccount = 0, w->cevery = 0;
      }
    }
  }
  if (rc) return rc;
  if (et && n) {
    int64_t cur = w->tree[w->nleaf + p];
    if (cur == INT64_MIN || mx > cur) tree_set(w, p, mx);
    return after_input(w, out);
  }
  return 0;
}

int sl_window_producer_done(sl_window *w, uint32_t p, int64_t now, sl_win_out *out) {
  if (p >= w->sp.producers || !now_ok(now)) return SL_EINVAL;
  if (w->pdone[p] || w->finished) return 0;
  take_now(w, now);
  w->pdone[p] = 1;
  tree_set(w, p, INT64_MAX);
  return after_input(w, out);
}

int64_t sl_window_next_due(const sl_window *w) {
  int64_t d = -1;
  if (w->finished) return -1;
  if (w->pnext >= 0) d = w->pnext;
  if (w->pend >= 0 && (d < 0 || w->pend < d)) d = w->pend;
  if (w->tlen) {
    int64_t t = w->tq[w->thead].due;
    if (d < 0 || t < d) d = t;
  }
  return d;
}

int sl_window_timer(sl_window *w, int64_t now, sl_win_out *out) {
  if (!now_ok(now)) return SL_EINVAL;
  take_now(w, now);
  now = w->last_now;
  while (!w->finished) {
    tent *e = tq_front(w);
    int64_t pe = w->pend >= 0 ? w->pend : INT64_MAX;
    int64_t te = e ? e->due : INT64_MAX;
    int64_t pn = w->pnext >= 0 ? w->pnext : INT64_MAX;
    if (pn <= now && pn <= pe && pn <= te) {
      if (fire_all(w, SL_TRIG_PERIODICALLY, 0, out)) return SL_ENOMEM;
      int64_t p = w->sp.periodically_ms;
      w->pnext = w->t0 + ((now - w->t0) / p + 1) * p;
    } else if (pe <= now && pe <= te) {
      if (wn_fire(out, w->cur, 0, SL_TRIG_DONE, 1, 0)) return SL_ENOMEM;
      w->cur++, w->cevery = 0;
      w->pend += w->sp.size_ms;
    } else if (te <= now) {
      tent x = *e;
      tq_pop(w);
      if (sliding(w)) {
        if (slide_end_upto(w, out, x.end)) return SL_ENOMEM;
      } else {
        sess *s = &w->ss[x.s];
        if (s->state != 2 || s->tserial != x.serial) continue;   /* stale: the session merged */
        if (wn_fire(out, s->id, s->key, SL_TRIG_DONE, 1, 0)) return SL_ENOMEM;
        wn_sess_end(w, x.s);
      }
    } else {
      break;
    }
  }
  return 0;
}

int sl_window_message(sl_window *w, uint64_t name_id, sl_win_out *out) {
  return fire_all(w, SL_TRIG_MESSAGE, name_id, out);
}

int sl_window_fire_open(sl_window *w, sl_win_trigger trigger, uint64_t name_id, sl_win_out *out) {
  if (trigger <= SL_TRIG_DONE || trigger > SL_TRIG_CUSTOM) return SL_EINVAL;
  return fire_all(w, trigger, name_id, out);
}

uint64_t sl_window_open_count(const sl_window *w) {
  if (w->finished) return 0;
  switch (w->sp.kind) {
  case SL_WIN_GLOBAL:
  case SL_WIN_COUNT:
  case SL_WIN_PERIODIC:
    return 1;
  case SL_WIN_FIXED:
  case SL_WIN_SLIDING:
    if (!w->started || w->hi < w->lo) return 0;
    return (uint64_t)((w->hi - w->lo) / w->step) + 1;
  case SL_WIN_SESSION:
    return w->nopen;
  }
  return 0;
}

int sl_window_frontier(const sl_window *w, int64_t *out) {
  int64_t f = 0;
  int known = 0;
  if (w->finished) {
    f = INT64_MAX, known = 1;
  } else {
    switch (w->sp.kind) {
    case SL_WIN_GLOBAL: break;
    case SL_WIN_COUNT:
    case SL_WIN_PERIODIC:
      f = w->cur, known = 1;
      break;
    case SL_WIN_FIXED:
    case SL_WIN_SLIDING:
      if (w->ended) f = w->lo, known = 1;
      break;
    case SL_WIN_SESSION: {
      int64_t wm = wn_watermark(w);
      if (wm == INT64_MIN) break;
      f = wm - w->sp.size_ms, known = 1;
      for (size_t i = 0; i < w->nss; i++)
        if (w->ss[i].state && w->ss[i].id < f) f = w->ss[i].id;
      break;
    }
    }
  }
  *out = f;
  return known;
}

uint64_t sl_window_late_total(const sl_window *w) { return w->late; }
int sl_window_finished(const sl_window *w) { return w->finished; }
