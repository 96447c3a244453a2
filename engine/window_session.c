/* window_session: the session windows of the window machine (see
 * window.h): per key, sorted open sessions; a lazy min-heap of keys finds
 * the sessions the watermark passes. The rest of the machine is in
 * window.c; window_int.h is what the two share. */
#include <stdlib.h>
#include <string.h>
#include "status.h"
#include "window.h"
#include "window_int.h"

/* ---- sessions ----------------------------------------------------------- */

static int heap_push(sl_window *w, uint32_t k, int64_t pri) {
  if (wn_grow((void **)&w->heap, &w->capheap, w->nheap + 1, sizeof *w->heap)) return SL_ENOMEM;
  size_t i = w->nheap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (w->heap[p].pri <= pri) break;
    w->heap[i] = w->heap[p];
    i = p;
  }
  w->heap[i] = (hent){pri, k};
  w->keys[k].inheap = 1;
  w->keys[k].hpri = pri;
  return 0;
}

static hent heap_pop(sl_window *w) {
  hent top = w->heap[0], last = w->heap[--w->nheap];
  size_t i = 0, n = w->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && w->heap[c + 1].pri < w->heap[c].pri) c++;
    if (last.pri <= w->heap[c].pri) break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (n) w->heap[i] = last;
  return top;
}

static int64_t key_index(sl_window *w, uint64_t key) {
  uint64_t *v = wn_hm_put(&w->keymap, key, UINT64_MAX);
  if (!v) return SL_ENOMEM;
  if (*v == UINT64_MAX) {
    if (wn_grow((void **)&w->keys, &w->capkeys, w->nkeys + 1, sizeof *w->keys)) return SL_ENOMEM;
    memset(&w->keys[w->nkeys], 0, sizeof *w->keys);
    w->keys[w->nkeys].key = key;
    *v = w->nkeys++;
  }
  return (int64_t)*v;
}

/* The open session of k at position i (0-based from head). */
static sess *kat(sl_window *w, skey *k, uint32_t i) { return &w->ss[k->s[k->head + i]]; }

/* Position of the last open session of k with lo <= t, or -1. */
static int64_t key_find(sl_window *w, skey *k, int64_t t) {
  if (k->len && kat(w, k, k->len - 1)->lo <= t) return k->len - 1;   /* the usual case */
  int64_t lo = 0, hi = (int64_t)k->len - 1, r = -1;
  while (lo <= hi) {
    int64_t mid = (lo + hi) / 2;
    if (kat(w, k, (uint32_t)mid)->lo <= t) r = mid, lo = mid + 1;
    else hi = mid - 1;
  }
  return r;
}

/* Inserts session s into k's list at position pos. */
static int key_insert(sl_window *w, skey *k, uint32_t pos, uint32_t s) {
  if (k->head + k->len == k->cap) {
    if (k->head) {
      memmove(k->s, k->s + k->head, k->len * sizeof *k->s);
      k->head = 0;
    } else {
      size_t cap = k->cap;
      if (wn_grow((void **)&k->s, &cap, (size_t)k->len + 1, sizeof *k->s)) return SL_ENOMEM;
      k->cap = (uint32_t)cap;
    }
  }
  uint32_t *b = k->s + k->head;
  memmove(b + pos + 1, b + pos, (k->len - pos) * sizeof *b);
  b[pos] = s;
  k->len++;
  return 0;
}

static void key_pop_front(skey *k) {
  k->head++, k->len--;
  if (k->nwm) k->nwm--;
  if (!k->len) k->head = 0;
}

static int64_t sess_new(sl_window *w, int64_t t, uint64_t key, uint32_t kidx) {
  uint32_t s;
  if (w->nfree) {
    s = w->sfree[--w->nfree];
  } else {
    if (wn_grow((void **)&w->ss, &w->capss, w->nss + 1, sizeof *w->ss)) return SL_ENOMEM;
    if (wn_grow((void **)&w->sfree, &w->capfree, w->nss + 1, sizeof *w->sfree)) return SL_ENOMEM;
    s = (uint32_t)w->nss++;
  }
  w->ss[s] = (sess){t, t, t, key, 0, 0, kidx, 1};
  w->nopen++;
  return s;
}

/* Session s ends: it leaves the front of its key's list. */
void wn_sess_end(sl_window *w, uint32_t s) {
  sess *x = &w->ss[s];
  skey *k = &w->keys[x->k];
  key_pop_front(k);
  if (!k->has_ended || x->hi > k->ended_hi) k->ended_hi = x->hi;
  k->has_ended = 1;
  x->state = 0;
  w->sfree[w->nfree++] = s;
  w->nopen--;
}

/* The session event t of key joins or opens; LATE when it is late. With
 * merge_sessions, *bridge = the key's record index + 1 when t joined the
 * session at *bpos and brings it within gap of the next one (0 otherwise). */
#define LATE INT64_C(-1000)
static int64_t sess_place(sl_window *w, int64_t t, uint64_t key, uint32_t *bridge, uint32_t *bpos) {
  *bridge = 0;
  int64_t ki = key_index(w, key);
  if (ki < 0) return ki;
  skey *k = &w->keys[ki];
  int64_t gap = w->sp.size_ms;
  int64_t pos = key_find(w, k, t);
  if (pos >= 0) {
    sess *x = kat(w, k, (uint32_t)pos);
    if (t <= x->hi) return k->s[k->head + pos];
    if (t <= x->hi + gap) {
      x->hi = t;
      if (w->sp.merge_sessions && pos + 1 < (int64_t)k->len && kat(w, k, (uint32_t)(pos + 1))->lo <= t + gap)
        *bridge = (uint32_t)ki + 1, *bpos = (uint32_t)pos;
      return k->s[k->head + pos];
    }
  }
  if (pos + 1 < (int64_t)k->len) {
    sess *x = kat(w, k, (uint32_t)(pos + 1));
    if (t >= x->lo - gap) {
      x->lo = t;
      return k->s[k->head + pos + 1];
    }
  }
  int64_t wm = wn_watermark(w);
  if ((k->has_ended && t <= k->ended_hi + gap) || (wm != INT64_MIN && t + gap < wm)) return LATE;
  int64_t s = sess_new(w, t, key, (uint32_t)ki);
  if (s < 0) return s;
  k = &w->keys[ki];
  uint32_t at = (uint32_t)(pos + 1);
  if (key_insert(w, k, at, (uint32_t)s)) return SL_ENOMEM;
  /* a new first session without a watermark fire: the key's heap entry */
  if (at == k->nwm && (!k->inheap || t < k->hpri) && heap_push(w, (uint32_t)ki, t)) return SL_ENOMEM;
  return s;
}

/* The sessions at positions i and i+1 of key ki merge (see window.h): the
 * MERGE action, then the merged session in the earlier one's place.
 * Returns the merged session's record. */
static int64_t sess_merge(sl_window *w, uint32_t ki, uint32_t i, sl_win_out *o) {
  skey *k = &w->keys[ki];
  uint32_t xs = k->s[k->head + i], ys = k->s[k->head + i + 1];
  sess x = w->ss[xs], y = w->ss[ys];
  int xw = i < k->nwm, yw = i + 1 < k->nwm;   /* watermarked ones are a prefix */
  sl_win_action a = {SL_WIN_MERGE, 0, 0, 0, 0, {x.id, x.key}, 0, y.id};
  if (wn_grow((void **)&o->acts, &o->capacts, o->nacts + 1, sizeof *o->acts)) return SL_ENOMEM;
  o->acts[o->nacts++] = a;
  /* both watermarked: keep the record whose done timer comes later (the
   * other's timer goes stale) */
  uint32_t keep = (xw && yw && y.tserial > x.tserial) ? ys : xs, drop = keep == xs ? ys : xs;
  sess *m = &w->ss[keep];
  m->id = x.id, m->lo = x.lo, m->hi = y.hi;
  m->state = yw ? 2 : 1;
  m->tserial = yw ? (keep == xs ? x.tserial : y.tserial) : 0;
  uint64_t te = w->sp.trigger_every, every = x.every + y.every;
  int fire_every = te && every >= te;
  m->every = fire_every ? every - te : every;
  uint32_t *b = k->s + k->head;
  b[i] = keep;
  memmove(b + i + 1, b + i + 2, (k->len - i - 2) * sizeof *b);
  k->len--;
  if (xw) k->nwm--;
  w->ss[drop].state = 0;
  w->sfree[w->nfree++] = drop;
  w->nopen--;
  if (fire_every && wn_fire(o, x.id, x.key, SL_TRIG_EVERY, 0, 0)) return SL_ENOMEM;
  return keep;
}

static int sess_flush(sl_window *w, sl_win_out *o, uint32_t s, uint32_t from, uint32_t n) {
  sess *x = &w->ss[s];
  uint64_t ev = x->every;
  int rc = wn_run(w, o, x->id, x->key, from, n, &ev);
  w->ss[s].every = ev;
  return rc;
}

int wn_sess_batch(sl_window *w, uint32_t n, const int64_t *t, const uint64_t *keys,
                      sl_win_out *o) {
  int64_t g = -1;
  uint32_t gfrom = 0, gn = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t bridge, bpos;
    int64_t s = sess_place(w, t[i], keys ? keys[i] : 0, &bridge, &bpos);
    if (s == LATE) {
      o->late++, w->late++;
      continue;
    }
    if (s < 0) return (int)s;
    if (bridge) {   /* the events before it run first, into the sessions as they were */
      if (gn && sess_flush(w, o, (uint32_t)g, gfrom, gn)) return SL_ENOMEM;
      gn = 0;
      s = sess_merge(w, bridge - 1, bpos, o);
      if (s < 0) return (int)s;
    }
    if (gn && s != g) {
      if (sess_flush(w, o, (uint32_t)g, gfrom, gn)) return SL_ENOMEM;
      gn = 0;
    }
    if (!gn) g = s, gfrom = (uint32_t)o->nidx;
    o->idx[o->nidx++] = i;
    gn++;
  }
  if (gn && sess_flush(w, o, (uint32_t)g, gfrom, gn)) return SL_ENOMEM;
  return 0;
}

static int coll_push(sl_window *w, uint32_t s) {
  if (wn_grow((void **)&w->coll, &w->capcoll, w->ncoll + 1, sizeof *w->coll)) return SL_ENOMEM;
  w->coll[w->ncoll++] = (cent){w->ss[s].id, w->ss[s].key, s};
  return 0;
}

static int coll_cmp(const void *a, const void *b) {
  const cent *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->key < y->key ? -1 : x->key > y->key ? 1 : 0;
}

static void coll_sort(sl_window *w) {
  if (w->ncoll > 1) qsort(w->coll, w->ncoll, sizeof *w->coll, coll_cmp);
}

/* Collects every open session, ascending (id, key). */
int wn_coll_open(sl_window *w) {
  w->ncoll = 0;
  for (size_t i = 0; i < w->nss; i++)
    if (w->ss[i].state && coll_push(w, (uint32_t)i)) return SL_ENOMEM;
  coll_sort(w);
  return 0;
}

/* Sessions the watermark wm has passed fire. */
int wn_sess_step(sl_window *w, int64_t wm, sl_win_out *o) {
  int64_t gap = w->sp.size_ms;
  w->ncoll = 0;
  while (w->nheap && w->heap[0].pri + gap < wm) {
    hent e = heap_pop(w);
    skey *k = &w->keys[e.k];
    if (!k->inheap || k->hpri != e.pri) continue;   /* stale */
    k->inheap = 0;
    while (k->nwm < k->len) {
      sess *x = kat(w, k, k->nwm);
      if (x->hi + gap >= wm) break;
      if (coll_push(w, k->s[k->head + k->nwm])) return SL_ENOMEM;
      k->nwm++;
    }
    if (k->nwm < k->len && heap_push(w, e.k, kat(w, k, k->nwm)->hi)) return SL_ENOMEM;
  }
  coll_sort(w);
  for (size_t i = 0; i < w->ncoll; i++) {
    uint32_t s = w->coll[i].s;
    sess *x = &w->ss[s];
    if (w->sp.lateness_ms < 0) {
      if (wn_fire(o, x->id, x->key, SL_TRIG_DONE, 1, 0)) return SL_ENOMEM;
      wn_sess_end(w, s);
    } else {
      if (wn_fire(o, x->id, x->key, SL_TRIG_WATERMARK, 0, 0)) return SL_ENOMEM;
      x->state = 2;
      x->tserial = ++w->tserial;
      tent e = {w->last_now + w->sp.lateness_ms, 0, s, x->tserial};
      if (wn_tq_push(w, e)) return SL_ENOMEM;
    }
  }
  return 0;
}
