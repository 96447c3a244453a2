/* reason: exit and cancel reasons (text reasons, copies) and the stage
 * protocol's messages that carry them (see stage.h). They do not touch a
 * stage record; stage.c is the protocol itself. */
#include <stdlib.h>
#include <string.h>
#include "stage.h"

sl_reason sl_reason_text(const char *text, unsigned flags) {
  sl_reason r = {NULL, strlen(text), flags | SL_REASON_TEXT};
  r.data = malloc(r.len + 1);
  if (!r.data) abort();   /* out of memory on the message path: nothing sane to do */
  memcpy(r.data, text, r.len + 1);
  return r;
}

void sl_reason_free(sl_reason *r) {
  free(r->data);
  r->data = NULL;
  r->len = 0;
}

sl_reason sl_reason_copy(const sl_reason *r, unsigned drop) {
  sl_reason c = {NULL, r->len, r->flags & ~drop};
  if (r->len) {
    c.data = malloc(r->len);
    if (!c.data) abort();
    memcpy(c.data, r->data, r->len);
  }
  return c;
}

sl_msg *sl_stage_msg(uint32_t kind, uint64_t to, uint64_t from, int64_t n) {
  sl_msg *m = sl_msg_new(kind);
  if (!m) abort();
  m->to = to;
  m->from = from;
  m->n = n;
  return m;
}

sl_msg *sl_stage_reason_msg(uint32_t kind, uint64_t to, uint64_t sub_id, int down, const sl_reason *r) {
  unsigned flags = r->flags & ~(unsigned)(SL_REASON_ERROR | SL_REASON_ASKED);
  sl_msg *m = sl_stage_msg(kind, to, sub_id, (int64_t)(flags << 1) | (down ? 1 : 0));
  sl_reason c = sl_reason_copy(r, 0);
  m->data = c.data;
  m->len = c.len;
  return m;
}

sl_reason sl_stage_msg_reason(const sl_msg *m) {
  return (sl_reason){m->data, m->len, (unsigned)((uint64_t)m->n >> 1)};
}

sl_msg *sl_stage_gone_reply(const sl_msg *m) {
  if (m->kind != SL_SM_SUBSCRIBE) return NULL;
  sl_reason r = sl_reason_text("noproc", 0);
  sl_msg *c = sl_stage_reason_msg(SL_SM_CANCELLED, m->from, (uint64_t)m->n, 1, &r);
  sl_reason_free(&r);
  return c;
}
