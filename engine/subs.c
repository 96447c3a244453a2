/* subs: a stage's subscriptions, by side and by id (see subs.h). */
#include <stdlib.h>
#include "subs.h"

static size_t bucket(const sl_subs *s, uint64_t id) {
  uint64_t h = id * UINT64_C(0x9e3779b97f4a7c15);
  return (size_t)(h >> 32) & (s->nbuckets - 1);
}

sl_sub *sl_subs_find(const sl_subs *s, uint64_t id, int producer_side) {
  if (!s->nbuckets) return NULL;
  for (sl_sub *c = s->table[bucket(s, id)]; c; c = c->hnext)
    if (c->id == id && c->producer_side == producer_side) return c;
  return NULL;
}

/* Doubles the table (16 buckets at first), keeping at most one
 * subscription per bucket on average. */
static void rehash(sl_subs *s) {
  size_t n = s->nbuckets ? s->nbuckets * 2 : 16;
  sl_sub **t = calloc(n, sizeof *t);
  if (!t) abort();
  sl_sub **old = s->table;
  size_t oldn = s->nbuckets;
  s->table = t;
  s->nbuckets = n;
  for (size_t i = 0; i < oldn; i++)
    for (sl_sub *c = old[i], *next; c; c = next) {
      next = c->hnext;
      size_t b = bucket(s, c->id);
      c->hnext = t[b];
      t[b] = c;
    }
  free(old);
}

sl_sub *sl_subs_add(sl_subs *s, uint64_t id, uint64_t peer, int producer_side) {
  if (s->count + 1 > s->nbuckets) rehash(s);
  sl_sub *c = calloc(1, sizeof *c);
  if (!c) abort();
  c->id = id;
  c->peer = peer;
  c->producer_side = producer_side;
  size_t b = bucket(s, id);
  c->hnext = s->table[b];
  s->table[b] = c;
  sl_subs_side *l = &s->side[producer_side ? 1 : 0];
  c->prev = l->tail;
  if (l->tail) l->tail->next = c;
  else l->head = c;
  l->tail = c;
  l->n++;
  s->count++;
  return c;
}

void sl_subs_remove(sl_subs *s, sl_sub *c) {
  for (sl_sub **p = &s->table[bucket(s, c->id)]; *p; p = &(*p)->hnext)
    if (*p == c) {
      *p = c->hnext;
      break;
    }
  sl_subs_side *l = &s->side[c->producer_side ? 1 : 0];
  if (c->prev) c->prev->next = c->next;
  else l->head = c->next;
  if (c->next) c->next->prev = c->prev;
  else l->tail = c->prev;
  l->n--;
  s->count--;
}

void sl_subs_free(sl_subs *s) {
  for (int k = 0; k < 2; k++)
    for (sl_sub *c = s->side[k].head, *n; c; c = n) {
      n = c->next;
      free(c);
    }
  free(s->table);
  s->table = NULL;
  s->nbuckets = s->count = 0;
  s->side[0] = s->side[1] = (sl_subs_side){NULL, NULL, 0};
}
