/* dispatch_check: what the dispatcher tests share (test_dispatch.c,
 * test_dispatch_partition.c): batches of small words, an emit callback
 * that records "consumer:events" lines, and short forms of the calls. */
#ifndef SLUICE_TEST_DISPATCH_CHECK_H
#define SLUICE_TEST_DISPATCH_CHECK_H
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "batch.h"
#include "check.h"
#include "dispatch.h"
#include "status.h"

/* ---- helpers ------------------------------------------------------------ */

/* A batch of the space-separated words of s, one event each. */
static inline sl_batch mk(const char *s) {
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

static inline void cat_events(char *out, size_t cap, const sl_batch *b) {
  for (uint32_t i = 0; i < b->count; i++) {
    size_t len, o = strlen(out);
    const char *p = sl_batch_event(b, i, &len);
    snprintf(out + o, cap - o, "%s%.*s", o ? " " : "", (int)len, p);
  }
}

/* The "mailbox": every emitted batch as "consumer:events", joined by " | ".
 * The last emitted store is kept to check that views share storage. */
static char sent[1024];
static sl_store *last_store;

static inline void emit(void *ud, uint64_t consumer, sl_batch b) {
  (void)ud;
  size_t o = strlen(sent);
  snprintf(sent + o, sizeof sent - o, "%s%llu:", o ? " | " : "", (unsigned long long)consumer);
  char ev[512] = "";
  cat_events(ev, sizeof ev, &b);
  o = strlen(sent);
  snprintf(sent + o, sizeof sent - o, "%s", ev);
  CHECK(b.count > 0);
  last_store = b.store;
  sl_batch_release(&b);
}

/* Returns what was sent since the last call and empties the mailbox. */
static inline const char *received(void) {
  static char out[1024];
  memcpy(out, sent, sizeof out);
  sent[0] = 0;
  return out;
}

/* The consumers' demands in entry order, e.g. "3:5 1:4 2:2". */
static inline const char *demands(const sl_dispatch *d) {
  static char out[256];
  sl_dispatch_entry e;
  out[0] = 0;
  for (size_t i = 0; sl_dispatch_entry_at(d, i, &e) == 0; i++) {
    size_t o = strlen(out);
    if (e.has_consumer)
      snprintf(out + o, sizeof out - o, "%s%llu:%llu", o ? " " : "",
               (unsigned long long)e.consumer, (unsigned long long)e.demand);
    else
      snprintf(out + o, sizeof out - o, "%s-", o ? " " : "");
  }
  return out;
}

static inline sl_dispatch_state state(const sl_dispatch *d) {
  sl_dispatch_state st;
  sl_dispatch_get_state(d, &st);
  return st;
}

static inline sl_dispatch *new_disp(sl_dispatch_kind kind, sl_dispatch_opts o) {
  sl_dispatch *d = NULL;
  o.emit = emit;
  CHECK_INT(sl_dispatch_new(kind, &o, &d), 0);
  sent[0] = 0;
  return d;
}

static inline uint64_t ask(sl_dispatch *d, uint64_t consumer, uint64_t n) {
  uint64_t up = 999;
  int rc = sl_dispatch_ask(d, consumer, n, &up);
  CHECK(rc == 0 || rc == SL_DISPATCH_OVER_MAX);
  return up;
}

static inline uint64_t cancel(sl_dispatch *d, uint64_t consumer) {
  uint64_t up = 999;
  CHECK_INT(sl_dispatch_cancel(d, consumer, &up), 0);
  return up;
}

/* Dispatches the words of s (with partitions parts, or NULL) and returns
 * the leftovers as text. */
static inline const char *dispatch(sl_dispatch *d, const char *s, const int32_t *parts) {
  static char out[256];
  sl_batch b = mk(s), left;
  out[0] = 0;
  CHECK_INT(sl_dispatch_dispatch(d, &b, parts, &left, NULL), 0);
  CHECK(b.store == NULL);
  cat_events(out, sizeof out, &left);
  sl_batch_release(&left);
  return out;
}

static inline const char *queues(const sl_dispatch *d) {
  static char out[256];
  sl_dispatch_entry e;
  out[0] = 0;
  for (size_t i = 0; sl_dispatch_entry_at(d, i, &e) == 0; i++) {
    size_t o = strlen(out);
    snprintf(out + o, sizeof out - o, "%s%llu", o ? " " : "", (unsigned long long)e.queued);
  }
  return out;
}
#endif
