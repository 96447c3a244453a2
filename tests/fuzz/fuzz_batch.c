/* fuzz_batch: the batch format (engine/batch.c) and the batch decoder.
 *
 * The input is read as a program:
 *   byte 0            number of events n (0..63)
 *   per event         a length byte (0..31) and that many bytes: the
 *                     event's encoded bytes (whatever they are); its top
 *                     bit chooses sl_bb_add or append + sl_bb_end_event
 *   the rest          operations on four views (slots), two bytes each
 *                     (op, argument) plus what the op reads:
 *                     slice, drop, gather, release, read, decode.
 * A model keeps, per slot, the list of original events its view holds;
 * after every operation each view must show exactly those bytes. The
 * decode operation runs sl_decode_batch on a view and checks it against
 * sl_decode of each event: the batch decodes when every event does, to
 * equal values, and otherwise fails with the status of the first event
 * that fails. Leaks (a reference never dropped) are reported by ASan. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "batch.h"
#include "buf.h"
#include "status.h"
#include "fuzz_lua.h"

#define MAXEV 64
#define SLOTS 4

typedef struct input {
  const uint8_t *p, *end;
} input;

static unsigned byte(input *in) { return in->p < in->end ? *in->p++ : 0; }

static const uint8_t *ev_p[MAXEV];
static size_t ev_n[MAXEV];

typedef struct slot {
  sl_batch b;
  uint32_t ev[MAXEV];   /* model: original event of each position */
  uint32_t n;
} slot;

static void check_slot(const slot *s) {
  if (s->b.count != s->n) fail("view count differs from the model");
  if (s->n == 0) {
    if (s->b.store) fail("an empty view holds a store");
    return;
  }
  const char *ps[MAXEV];
  size_t lens[MAXEV];
  sl_batch_events(&s->b, 0, s->n, ps, lens);
  for (uint32_t i = 0; i < s->n; i++) {
    size_t len;
    const char *p = sl_batch_event(&s->b, i, &len);
    uint32_t e = s->ev[i];
    if (len != ev_n[e] || lens[i] != len || ps[i] != p || (len && memcmp(p, ev_p[e], len) != 0))
      fail("view bytes differ from the model");
  }
}

static void decode_check(const slot *s) {
  static char err[256], err1[256];
  lua_settop(L, 0);
  int rc = sl_decode_batch(L, &s->b, err, sizeof err);
  int first_rc = 0;
  uint32_t bad = s->n;
  for (uint32_t i = 0; i < s->n && !first_rc; i++) {
    size_t len;
    const char *p = sl_batch_event(&s->b, i, &len);
    int r = sl_decode(L, p, len, err1, sizeof err1);
    if (r) first_rc = r, bad = i;
    else if (rc == 0) {
      lua_rawgeti(L, 1, (lua_Integer)i + 1);   /* stack: arr v1 v */
      lua_newtable(L);
      int top = lua_gettop(L);
      if (!equal(top - 1, top - 2, top, 0)) fail("a batch element differs from its event decoded alone");
      lua_pop(L, 3);
    } else {
      lua_pop(L, 1);
    }
  }
  if (rc != first_rc) {
    fprintf(stderr, "batch rc %d (%s), event %u alone rc %d (%s)\n", rc, err, bad, first_rc, err1);
    fail("the batch decodes differently from its events");
  }
  if (rc == 0) {
    if (lua_gettop(L) != 1 || !lua_istable(L, 1)) fail("a batch decode pushed no array");
  } else if (lua_gettop(L) != 0) {
    fail("a failed batch decode left values on the stack");
  }
  lua_settop(L, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned long inputs;
  if (!L || ++inputs % 20000 == 0) {
    if (L) lua_close(L);
    L = newstate();
  }
  input in = {data, data + size};
  uint32_t n = byte(&in) % MAXEV;
  sl_batch_builder bb;
  sl_bb_init(&bb);
  if (byte(&in) & 1) sl_bb_reserve(&bb, n);
  for (uint32_t i = 0; i < n; i++) {
    unsigned l = byte(&in);
    size_t len = l & 31;
    if (len > (size_t)(in.end - in.p)) len = (size_t)(in.end - in.p);
    ev_p[i] = in.p, ev_n[i] = len;
    in.p += len;
    int rc = (l & 0x80) ? sl_bb_add(&bb, ev_p[i], len)
                        : (sl_buf_append(&bb.bytes, ev_p[i], len) ? SL_ENOMEM : sl_bb_end_event(&bb));
    if (rc) fail("builder out of memory");
  }
  static slot sl[SLOTS];
  memset(sl, 0, sizeof sl);
  if (sl_bb_finish(&bb, &sl[0].b)) fail("finish out of memory");
  sl_bb_free(&bb);
  sl[0].n = n;
  for (uint32_t i = 0; i < n; i++) sl[0].ev[i] = i;
  check_slot(&sl[0]);
  while (in.p < in.end) {
    unsigned op = byte(&in), arg = byte(&in);
    slot *a = &sl[op >> 4 & 3], *d = &sl[op >> 6 & 3];
    switch (op % 6) {
    case 0: {   /* slice a[from, from+count) into d */
      uint32_t from = a->n ? arg % (a->n + 1) : 0;
      uint32_t count = a->n - from ? byte(&in) % (a->n - from + 1) : 0;
      sl_batch v = sl_batch_slice(&a->b, from, count);
      slot t;
      t.b = v, t.n = count;
      memcpy(t.ev, a->ev + from, count * sizeof *t.ev);
      sl_batch_release(&d->b);
      *d = t;
      break;
    }
    case 1: {   /* drop the first arg events of a (all when arg >= count) */
      uint32_t k = arg % (MAXEV + 2);
      sl_batch_drop(&a->b, k);
      if (k >= a->n) a->n = 0;
      else memmove(a->ev, a->ev + k, (a->n - k) * sizeof *a->ev), a->n -= k;
      break;
    }
    case 2: {   /* gather arg events of a (any indices, repeats allowed) into d */
      if (!a->n) break;
      uint32_t k = arg % (MAXEV + 1), idx[MAXEV];
      slot t;
      for (uint32_t i = 0; i < k; i++) idx[i] = byte(&in) % a->n, t.ev[i] = a->ev[idx[i]];
      if (sl_batch_gather(&a->b, idx, k, &t.b)) fail("gather out of memory");
      t.n = k;
      sl_batch_release(&d->b);
      *d = t;
      break;
    }
    case 3:     /* release a */
      sl_batch_release(&a->b);
      if (a->b.store || a->b.count) fail("a released view is not empty");
      a->n = 0;
      break;
    case 4:     /* copy a's view into d by a full slice */
      if (a == d) break;
      sl_batch_release(&d->b);
      d->b = sl_batch_slice(&a->b, 0, a->n);
      d->n = a->n;
      memcpy(d->ev, a->ev, a->n * sizeof *a->ev);
      break;
    case 5:
      decode_check(a);
      break;
    }
    for (int i = 0; i < SLOTS; i++) check_slot(&sl[i]);
  }
  for (int i = 0; i < SLOTS; i++) sl_batch_release(&sl[i].b);
  return 0;
}
