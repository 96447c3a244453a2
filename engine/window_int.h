/* window_int: what engine/window.c and engine/window_session.c share: the
 * machine's state and the helpers both halves use. Not for other files:
 * they use window.h. */
#ifndef SLUICE_WINDOW_INT_H
#define SLUICE_WINDOW_INT_H
#include <stddef.h>
#include <stdint.h>
#include "window.h"

/* uint64 -> uint64 map, open addressing with linear probing and
 * backward-shift deletion. */
typedef struct hmap {
  uint64_t *keys, *vals;
  uint8_t *used;
  size_t cap, len;         /* cap: 0 or a power of two */
} hmap;

/* ---- state ----------------------------------------------------------------- */

typedef struct sess {
  int64_t id, lo, hi;
  uint64_t key;
  uint64_t every;          /* events since the last every fire */
  uint64_t tserial;        /* state 2: the serial of its lateness done timer */
  uint32_t k;              /* key record */
  uint8_t state;           /* 0 free, 1 open, 2 watermark fired */
} sess;

typedef struct skey {
  uint64_t key;
  int has_ended;
  int64_t ended_hi;        /* highest hi of an ended session */
  uint32_t *s;             /* open sessions s[head .. head+len), ascending */
  uint32_t head, len, cap;
  uint32_t nwm;            /* the first nwm have fired watermark */
  int inheap;
  int64_t hpri;            /* the priority of its valid heap entry */
} skey;

typedef struct hent {
  int64_t pri;
  uint32_t k;
} hent;

typedef struct cent {      /* a collected session with its sort key */
  int64_t id;
  uint64_t key;
  uint32_t s;
} cent;

typedef struct tent {      /* a lateness done timer */
  int64_t due;
  int64_t end;             /* fixed/sliding: windows [lo, end) end */
  uint32_t s;              /* session */
  uint64_t serial;         /* session: stale unless the session's tserial */
} tent;

struct sl_window {
  sl_window_spec sp;
  int64_t step;            /* fixed: size; sliding: every */
  int64_t last_now;
  int finished;
  uint8_t *pdone;
  int64_t *tree;           /* 2 * nleaf; leaf i at nleaf + i */
  uint32_t nleaf;
  uint64_t late;
  /* global, count, periodic */
  int64_t cur;             /* current window id */
  uint64_t ccount;         /* count: events in the current window */
  uint64_t cevery;         /* events since the last every fire */
  int64_t pend;            /* periodic: end of the current window */
  /* trigger_periodically */
  int64_t t0, pnext;       /* pnext: next due, -1 none */
  /* fixed, sliding */
  int started;
  int64_t lo, wmlo, hi;
  int ended;               /* some window has ended: those below `endmark` */
  int64_t endmark;
  hmap counts;             /* window start -> events since the last every fire */
  /* lateness timers (ring) */
  tent *tq;
  size_t tcap, thead, tlen;
  /* sessions */
  hmap keymap;             /* key -> index into keys */
  skey *keys;
  size_t nkeys, capkeys;
  sess *ss;
  size_t nss, capss;
  uint32_t *sfree;
  size_t nfree, capfree;
  uint64_t nopen;
  hent *heap;
  size_t nheap, capheap;
  cent *coll;              /* sessions collected for one step */
  uint64_t tserial;        /* the last lateness timer serial given out */
  size_t ncoll, capcoll;
};

/* window.c */
int wn_fire(sl_win_out *o, int64_t id, uint64_t key, int trig, int ends, uint64_t name);
int wn_grow(void **p, size_t *cap, size_t need, size_t esz);
uint64_t *wn_hm_put(hmap *h, uint64_t k, uint64_t v0);
int wn_run(sl_window *w, sl_win_out *o, int64_t id, uint64_t key, uint32_t from, uint32_t n, uint64_t *every);
int wn_tq_push(sl_window *w, tent e);
int64_t wn_watermark(const sl_window *w);

/* window_session.c */
int wn_coll_open(sl_window *w);
int wn_sess_batch(sl_window *w, uint32_t n, const int64_t *t, const uint64_t *keys, sl_win_out *o);
void wn_sess_end(sl_window *w, uint32_t s);
int wn_sess_step(sl_window *w, int64_t wm, sl_win_out *o);
#endif
