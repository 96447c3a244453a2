/* stage: the stage protocol (see stage.h).
 *
 * Subscriptions are kept by side and by id (subs.h), so that the
 * per-message lookups (ask, events) cost O(1) however many subscriptions a
 * stage has. A producer_consumer queues its input (events,
 * cancels and infos, in arrival order) while it has no downstream demand;
 * an accumulating producer holds its demands, events and infos in order
 * and replays them when it switches to forward. The reasons and the
 * messages that carry them: reason.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buffer.h"
#include "demand.h"
#include "stage.h"
#include "status.h"
#include "subs.h"

typedef sl_sub sub;

enum { PIN_EVENTS, PIN_CANCELLED, PIN_INFO };

typedef struct pin {      /* producer_consumer input waiting for demand */
  int kind;
  uint64_t sub;
  int down;
  sl_batch batch;
  sl_reason reason;
  char *data;             /* info */
  size_t len;
  struct pin *next;
} pin;

typedef struct acc {      /* what an accumulating producer holds back, in order */
  uint64_t demand;        /* > 0: a demand */
  uint64_t token;         /* > 0: an info behind held events */
  sl_batch batch;         /* otherwise: events */
  struct acc *next;
} acc;

typedef struct info {     /* stage:send messages waiting behind events */
  uint64_t token;
  char *data;
  size_t len;
  struct info *next;
} info;

struct sl_stage {
  uint64_t ref;
  sl_stage_type type;
  const sl_stage_ops *ops;
  void *ud;
  /* subscriptions */
  sl_subs subs;            /* side[1]: our consumers, side[0]: our producers */
  /* producer side */
  sl_dispatch *disp;
  uint32_t nparts;
  /* The partitions of the events a dispatch left over (see dispatch_batch);
   * memo holds a reference to their store. */
  sl_batch memo;
  int32_t *memo_parts;
  uint32_t memo_cap;
  sl_buffer *buf;
  int accumulate;
  acc *acc_head, *acc_tail;
  uint64_t acc_events;
  int stop_when_no_consumers;
  uint64_t owed;          /* events that went to vacant partitions during handle_demand */
  int in_demand;          /* handle_demand is running */
  /* consumer side */
  pin *in_head, *in_tail;
  uint64_t in_events;
  uint64_t pc_demand;
  /* infos */
  info *infos;
  uint64_t next_token;
  /* lifecycle */
  int finishing;
  sl_reason finish_reason;  /* the reason a finish ends with (none: "normal") */
  int stop_pending;       /* 1: asked to stop; 2: stopping (terminate runs) */
  sl_reason reason;
  /* stats */
  uint64_t events_in, events_out;
};

/* ---- helpers --------------------------------------------------------------------- */

static void post(sl_stage *s, uint64_t to, sl_msg *m) { s->ops->post(s, to, m); }

static void fail(sl_stage *s, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (s->ops->fail) s->ops->fail(s, buf);
  else sl_stage_stop(s, sl_reason_text(buf, SL_REASON_ERROR));
}

static void warn(sl_stage *s, const char *fmt, unsigned long long n) {
  if (s->ops->warn) s->ops->warn(s, fmt, n);
}

static void stop_text(sl_stage *s, const char *text, unsigned flags) {
  if (!s->stop_pending) sl_stage_stop(s, sl_reason_text(text, flags));
}

/* ---- records ---------------------------------------------------------------------- */

static void send_events(void *ud, uint64_t sub_id, sl_batch b);

int sl_stage_new(const sl_stage_config *cfg, const sl_stage_ops *ops, void *ud, sl_stage **out) {
  *out = NULL;
  if (!cfg || !ops || !ops->post) return SL_EINVAL;
  sl_stage *s = calloc(1, sizeof *s);
  if (!s) return SL_ENOMEM;
  s->ref = cfg->ref;
  s->type = cfg->type;
  s->ops = ops;
  s->ud = ud;
  if (s->type != SL_STAGE_CONSUMER) {
    sl_dispatch_opts o;
    memset(&o, 0, sizeof o);
    o.emit = send_events;
    o.ud = s;
    o.shuffle_demands_on_first_dispatch = cfg->shuffle_demands_on_first_dispatch;
    o.seed = cfg->ref;
    o.partitions = cfg->partitions;
    int rc = sl_dispatch_new(cfg->dispatcher, &o, &s->disp);
    if (rc == 0) rc = sl_buffer_new(cfg->buffer_size, cfg->buffer_keep, &s->buf);
    if (rc != 0) {
      sl_stage_free(s);
      return rc;
    }
    s->nparts = cfg->partitions;
    s->accumulate = cfg->type == SL_STAGE_PRODUCER && cfg->accumulate;
    s->stop_when_no_consumers = cfg->stop_when_no_consumers;
  }
  *out = s;
  return 0;
}

void sl_stage_free(sl_stage *s) {
  if (!s) return;
  sl_subs_free(&s->subs);
  for (pin *p = s->in_head, *n; p; p = n) {
    n = p->next;
    sl_batch_release(&p->batch);
    sl_reason_free(&p->reason);
    free(p->data);
    free(p);
  }
  for (acc *a = s->acc_head, *n; a; a = n) {
    n = a->next;
    sl_batch_release(&a->batch);
    free(a);
  }
  for (info *i = s->infos, *n; i; i = n) {
    n = i->next;
    free(i->data);
    free(i);
  }
  if (s->buf) sl_buffer_free(s->buf);
  sl_batch_release(&s->memo);
  free(s->memo_parts);
  if (s->disp) sl_dispatch_free(s->disp);
  sl_reason_free(&s->reason);
  sl_reason_free(&s->finish_reason);
  free(s);
}

void *sl_stage_ud(const sl_stage *s) { return s->ud; }
uint64_t sl_stage_ref(const sl_stage *s) { return s->ref; }
sl_stage_type sl_stage_type_of(const sl_stage *s) { return s->type; }
int sl_stage_stopping(const sl_stage *s) { return s->stop_pending != 0; }
const sl_reason *sl_stage_reason(const sl_stage *s) { return &s->reason; }
int sl_stage_accumulating(const sl_stage *s) { return s->accumulate; }
int sl_stage_has_producer(const sl_stage *s, uint64_t id) { return sl_subs_find(&s->subs, id, 0) != NULL; }
int sl_stage_has_consumer(const sl_stage *s, uint64_t id) { return sl_subs_find(&s->subs, id, 1) != NULL; }

void sl_stage_stop(sl_stage *s, sl_reason r) {
  if (s->stop_pending) {
    sl_reason_free(&r);
    return;
  }
  s->stop_pending = 1;
  s->reason = r;
}

void sl_stage_finish(sl_stage *s) { s->finishing = 1; }

/* ---- producer side ------------------------------------------------------------ */

/* Emit callback of the dispatcher: sends one batch to a consumer. */
static void send_events(void *ud, uint64_t sub_id, sl_batch b) {
  sl_stage *s = ud;
  sub *c = sl_subs_find(&s->subs, sub_id, 1);
  if (!c) {
    sl_batch_release(&b);
    return;
  }
  s->events_out += b.count;
  sl_msg *m = sl_stage_msg(SL_SM_EVENTS, c->peer, sub_id, 0);
  m->batch = b;
  m->lazy = sl_dispatch_emit_left(s->disp) > 0;
  post(s, c->peer, m);
}

static void deliver_ready_infos(sl_stage *s);

static void buffer_leftovers(sl_stage *s, sl_batch *left) {
  if (!left->count) return;
  size_t discarded = 0;
  if (sl_buffer_push(s->buf, left, &discarded) != 0) {
    sl_batch_release(left);
    fail(s, "out of memory buffering events");
    return;
  }
  if (discarded) {
    warn(s, "discarded %llu events from its buffer", (unsigned long long)discarded);
    deliver_ready_infos(s);   /* infos pushed out with the oldest events (keep last) */
  }
}

/* The partitions of b's events when b is (part of) the leftovers of the
 * last partition dispatch: copied into parts, 1; else 0. The memo's
 * reference keeps its store alive, so a store at the same address is the
 * same events. */
static int memo_get(const sl_stage *s, const sl_batch *b, int32_t *parts) {
  const sl_batch *m = &s->memo;
  if (!m->store || b->store != m->store || b->first < m->first || b->count > m->count ||
      b->first - m->first > m->count - b->count)
    return 0;
  memcpy(parts, s->memo_parts + (b->first - m->first), b->count * sizeof *parts);
  return 1;
}

/* Remembers the partitions of the leftovers left (a suffix of the batch
 * whose partitions parts[0..n) were), so that dispatching them again, in
 * pieces as demand comes, does not hash them (or call the partition
 * function) again. Without leftovers the memo stays: what it covers may
 * still be waiting in the buffer. */
static void memo_set(sl_stage *s, const sl_batch *left, const int32_t *parts, uint32_t n) {
  if (!left->count) return;
  sl_batch_release(&s->memo);
  if (left->count > s->memo_cap) {
    int32_t *p = realloc(s->memo_parts, left->count * sizeof *p);
    if (!p) return;   /* no memo: the next dispatch computes them */
    s->memo_parts = p;
    s->memo_cap = left->count;
  }
  memcpy(s->memo_parts, parts + (n - left->count), left->count * sizeof *parts);
  s->memo = sl_batch_slice(left, 0, left->count);
}

/* Hands *b to the dispatcher; what the consumers cannot take yet is
 * buffered. Consumes *b. */
static void dispatch_batch(sl_stage *s, sl_batch *b) {
  if (!b->count) return;
  int32_t stackparts[256], *parts = NULL;
  if (sl_dispatch_kind_of(s->disp) == SL_DISPATCH_PARTITION) {
    parts = b->count <= 256 ? stackparts : malloc(b->count * sizeof *parts);
    if (!parts) abort();
    if (memo_get(s, b, parts)) {
      /* leftovers of the last dispatch: their partitions are known */
    } else if (s->ops->partition) {
      if (s->ops->partition(s, b, parts) != 0) {
        sl_batch_release(b);
        if (parts != stackparts) free(parts);
        return;
      }
    } else {
      sl_dispatch_hash_partitions(b, s->nparts, parts);
    }
  }
  uint32_t n = b->count, bad = 0;
  sl_batch left = SL_BATCH_EMPTY;
  int rc = sl_dispatch_dispatch(s->disp, b, parts, &left, &bad);
  if (parts && rc != SL_ENOENT) memo_set(s, &left, parts, n);
  if (parts != stackparts) free(parts);
  if (rc == SL_ENOENT) {
    sl_batch_release(b);
    fail(s, "unknown partition computed for event %d", (int)bad + 1);
    return;
  }
  uint64_t vacant = sl_dispatch_kind_of(s->disp) == SL_DISPATCH_PARTITION ? sl_dispatch_take_vacant(s->disp) : 0;
  if (s->type == SL_STAGE_PC) {
    uint64_t used = n - left.count - vacant;
    s->pc_demand = s->pc_demand > used ? s->pc_demand - used : 0;
  } else {
    s->owed += vacant;   /* the source owes them again (see serve) */
  }
  buffer_leftovers(s, &left);
}

/* Appends to what an accumulating producer holds back: a demand (> 0), an
 * info token (> 0) or the events of *b (taken). */
static void acc_push(sl_stage *s, uint64_t demand, uint64_t token, sl_batch *b) {
  acc *a = calloc(1, sizeof *a);
  if (!a) abort();
  a->demand = demand;
  a->token = token;
  if (b) {
    a->batch = *b;
    *b = SL_BATCH_EMPTY;
    s->acc_events += a->batch.count;
  }
  if (s->acc_tail) s->acc_tail->next = a;
  else s->acc_head = a;
  s->acc_tail = a;
}

void sl_stage_emit(sl_stage *s, sl_batch *b) {
  if (!b->count) {
    sl_batch_release(b);
    return;
  }
  if (s->type == SL_STAGE_CONSUMER) {
    sl_batch_release(b);
    fail(s, "a consumer cannot emit events");
    return;
  }
  if (s->accumulate) {
    acc_push(s, 0, 0, b);
    return;
  }
  sl_dispatch_produced(s->disp, b->count);
  dispatch_batch(s, b);
}

static info *take_info(sl_stage *s, uint64_t token) {
  for (info **p = &s->infos; *p; p = &(*p)->next)
    if ((*p)->token == token) {
      info *i = *p;
      *p = i->next;
      return i;
    }
  return NULL;
}

/* Runs handle_info for the info of token, unless the stage is stopping. */
static void deliver_token(sl_stage *s, uint64_t token) {
  info *i = take_info(s, token);
  if (!i) return;
  if (!s->stop_pending && s->ops->handle_info) s->ops->handle_info(s, i->data, i->len);
  free(i->data);
  free(i);
}

/* Delivers the infos whose events ahead have gone out, in order: those
 * freed by the buffer first, then by the partition queues. */
static void deliver_ready_infos(sl_stage *s) {
  uint64_t token;
  while (!s->stop_pending && s->buf && sl_buffer_pop_info(s->buf, &token)) deliver_token(s, token);
  while (!s->stop_pending && s->disp && sl_dispatch_pop_info(s->disp, &token)) deliver_token(s, token);
}

static void pc_take(sl_stage *s);

/* Serves n of new upstream demand (n may be 0): first the buffer gives
 * the dispatcher as many events as it accepts now, which may be more than
 * n (a broadcast dispatcher does not ask again for events it requested
 * that wait in the buffer); then what is left of n goes to handle_demand
 * (producers) or opens the queued input (producer_consumers). */
static void serve(sl_stage *s, uint64_t n) {
  deliver_ready_infos(s);
  while (!s->stop_pending && sl_buffer_count(s->buf) > 0) {
    uint64_t want = sl_dispatch_accepts(s->disp);
    if (want == 0) break;
    sl_batch b;
    if (sl_buffer_take_batch(s->buf, want, &b) != 0) {
      fail(s, "out of memory taking buffered events");
      return;
    }
    if (b.count == 0) {            /* an info marker is next */
      deliver_ready_infos(s);
      continue;
    }
    /* buffered events meet (part of) the new demand */
    sl_dispatch_produced(s->disp, n < b.count ? n : b.count);
    n = n > b.count ? n - b.count : 0;
    dispatch_batch(s, &b);
    deliver_ready_infos(s);
  }
  if (s->type == SL_STAGE_PRODUCER && !s->in_demand) {
    n += s->owed;
    s->owed = 0;
  }
  if (n == 0 || s->stop_pending) return;
  if (s->type == SL_STAGE_PRODUCER) {
    /* events that went to a partition without a consumer used no demand:
     * handle_demand is asked for as many again */
    while (n > 0 && !s->finishing && !s->stop_pending && s->ops->handle_demand && !s->in_demand) {
      s->in_demand = 1;
      s->owed = 0;
      s->ops->handle_demand(s, n);
      s->in_demand = 0;
      n = s->owed;
      s->owed = 0;
    }
  } else {
    s->pc_demand += n;
    pc_take(s);
  }
}

/* Upstream demand n (possibly 0) computed by the dispatcher after an ask
 * or a cancel. */
static void demand_arrived(sl_stage *s, uint64_t n) {
  if (s->accumulate) {
    if (n > 0) acc_push(s, n, 0, NULL);
    return;
  }
  serve(s, n);
}

static void queue_info(sl_stage *s, uint64_t token);

void sl_stage_set_accumulate(sl_stage *s, int on) {
  if (s->type != SL_STAGE_PRODUCER) return;
  if (on) {
    s->accumulate = 1;
    return;
  }
  /* forward: replay what was held, in order, demands not merged */
  s->accumulate = 0;
  while (s->acc_head && !s->stop_pending) {
    acc *a = s->acc_head;
    s->acc_head = a->next;
    if (!s->acc_head) s->acc_tail = NULL;
    if (a->demand) {
      serve(s, a->demand);
    } else if (a->token) {
      queue_info(s, a->token);
    } else {
      s->acc_events -= a->batch.count;
      sl_dispatch_produced(s->disp, a->batch.count);
      dispatch_batch(s, &a->batch);
    }
    sl_batch_release(&a->batch);
    free(a);
  }
  if (!s->stop_pending) serve(s, 0);   /* buffered events the dispatcher accepts now */
}

/* Puts info token behind the buffered events and the events queued in the
 * dispatcher, or delivers it now when none are. */
static void queue_info(sl_stage *s, uint64_t token) {
  int r = sl_buffer_push_info(s->buf, token);
  if (r == 1 && sl_dispatch_info(s->disp, token) == 1) deliver_token(s, token);
}

/* A stage:send message for a producer (data taken). */
static void buffer_info(sl_stage *s, char *data, size_t len) {
  info *i = calloc(1, sizeof *i);
  if (!i) abort();
  i->token = ++s->next_token;
  i->data = data;
  i->len = len;
  i->next = s->infos;
  s->infos = i;
  if (s->accumulate && s->acc_events > 0) acc_push(s, 0, i->token, NULL);
  else queue_info(s, i->token);
}

/* ---- consumer side ---------------------------------------------------------------- */

static pin *pin_push(sl_stage *s, int kind, uint64_t sub_id) {
  pin *p = calloc(1, sizeof *p);
  if (!p) abort();
  p->kind = kind;
  p->sub = sub_id;
  if (s->in_tail) s->in_tail->next = p;
  else s->in_head = p;
  s->in_tail = p;
  return p;
}

/* Sends n of demand to the producer of subscription c (nothing for 0). */
static void ask_producer(sl_stage *s, sub *c, uint64_t n) {
  if (n == 0) return;
  post(s, c->peer, sl_stage_msg(SL_SM_ASK, c->peer, c->id, (int64_t)n));
}

/* Hands an incoming batch to handle_events in demand-sized chunks and asks
 * upstream after each chunk. Consumes *b. */
static void consume(sl_stage *s, sub *c, sl_batch *b) {
  if (c->selector && s->ops->select) {
    uint32_t all = b->count;
    if (s->ops->select(s, c->id, b) != 0) {
      sl_batch_release(b);
      return;
    }
    ask_producer(s, c, all - b->count);   /* rejected events give their demand back */
  }
  uint64_t k = b->count;
  uint64_t excess = sl_demand_begin(&c->d, k);
  if (excess) warn(s, "has received %llu events in excess", (unsigned long long)excess);
  uint64_t n, from = 0;
  while ((n = sl_demand_next(&c->d)) > 0) {
    int whole = from == 0 && n == k;
    sl_batch chunk = whole ? *b : sl_batch_slice(b, (uint32_t)from, (uint32_t)n);
    s->events_in += n;
    if (s->ops->handle_events) s->ops->handle_events(s, c->id, c->peer, &chunk);
    if (!whole) sl_batch_release(&chunk);
    from += n;
    if (s->stop_pending) break;
    /* a subscription ends only when its cancel message arrives, so c is still ours */
    ask_producer(s, c, sl_demand_done(&c->d));
  }
  sl_batch_release(b);
}

/* A subscription of ours to a producer ended (in order with its input):
 * handle_cancel, then the cancel mode decides whether the stage stops. */
static void cancelled_arrived(sl_stage *s, uint64_t sub_id, int down, const sl_reason *r) {
  sub *c = sl_subs_find(&s->subs, sub_id, 0);
  if (!c) return;
  sl_subs_remove(&s->subs, c);
  if (s->ops->handle_cancel) s->ops->handle_cancel(s, SL_ROLE_CONSUMER_SIDE, down, c->id, c->peer, r);
  int quiet = r->flags & SL_REASON_NORMAL;
  if (!(r->flags & SL_REASON_ALREADY) && !s->stop_pending &&
      (c->cancel == SL_CANCEL_PERMANENT || (c->cancel == SL_CANCEL_TRANSIENT && !quiet))) {
    if (quiet && s->type == SL_STAGE_PC) {
      /* the producer ended normally: what is already here still goes out,
       * then the stage stops with the producer's reason */
      s->finishing = 1;
      if (!s->finish_reason.data) s->finish_reason = sl_reason_copy(r, 0);
    } else {
      sl_stage_stop(s, sl_reason_copy(r, SL_REASON_ERROR | SL_REASON_ASKED));   /* not our own crash */
    }
  }
  free(c);
}

/* Hands queued input to a producer_consumer while downstream demand lasts. */
static void pc_take(sl_stage *s) {
  while (s->in_head && !s->stop_pending) {
    pin *p = s->in_head;
    if (p->kind == PIN_EVENTS && s->pc_demand == 0) break;
    s->in_head = p->next;
    if (!s->in_head) s->in_tail = NULL;
    if (p->kind == PIN_EVENTS) {
      s->in_events -= p->batch.count;
      sub *c = sl_subs_find(&s->subs, p->sub, 0);
      if (c) consume(s, c, &p->batch);
    } else if (p->kind == PIN_CANCELLED) {
      cancelled_arrived(s, p->sub, p->down, &p->reason);
    } else {
      buffer_info(s, p->data, p->len);
      p->data = NULL;
    }
    sl_batch_release(&p->batch);
    sl_reason_free(&p->reason);
    free(p->data);
    free(p);
  }
}

void sl_stage_info(sl_stage *s, char *data, size_t len) {
  if (s->type == SL_STAGE_CONSUMER) {
    if (!s->stop_pending && s->ops->handle_info) s->ops->handle_info(s, data, len);
    free(data);
  } else if (s->type == SL_STAGE_PC && s->in_head) {
    pin *p = pin_push(s, PIN_INFO, 0);
    p->data = data;
    p->len = len;
  } else {
    buffer_info(s, data, len);
  }
}

void sl_stage_subscribe(sl_stage *s, uint64_t producer, uint64_t sub_id, const sl_sub_opts *o, char *opts,
                        size_t len) {
  sub *c = sl_subs_add(&s->subs, sub_id, producer, 0);
  c->cancel = o->cancel;
  c->selector = o->selector;
  if (sl_demand_init(&c->d, o->max_demand, o->min_demand, 0) != 0) sl_demand_init(&c->d, 1000, 500, 0);
  sl_msg *m = sl_stage_msg(SL_SM_SUBSCRIBE, producer, s->ref, (int64_t)sub_id);
  m->data = opts;
  m->len = len;
  post(s, producer, m);
  int mode = SL_DEMAND_AUTOMATIC;
  if (s->ops->handle_subscribe)
    mode = s->ops->handle_subscribe(s, SL_ROLE_CONSUMER_SIDE, sub_id, producer, NULL, 0);
  if (s->stop_pending) return;
  uint64_t asked = c->d.pending;                   /* from:ask calls made in handle_subscribe */
  sl_demand_init(&c->d, c->d.max, c->d.min, mode == SL_DEMAND_MANUAL);
  sl_demand_asked(&c->d, asked);
  ask_producer(s, c, sl_demand_initial_ask(&c->d));
}

void sl_stage_ask(sl_stage *s, uint64_t sub_id, uint64_t n) {
  sub *c = sl_subs_find(&s->subs, sub_id, 0);
  if (!c || n == 0) return;
  sl_demand_asked(&c->d, n);
  ask_producer(s, c, n);
}

/* ---- producer side of subscriptions ------------------------------------------------- */

static void refuse(sl_stage *s, uint64_t consumer, uint64_t sub_id, int down, const char *why, unsigned flags) {
  sl_reason r = sl_reason_text(why, flags);
  post(s, consumer, sl_stage_reason_msg(SL_SM_CANCELLED, consumer, sub_id, down, &r));
  sl_reason_free(&r);
}

static void producer_subscribe(sl_stage *s, const sl_msg *m) {
  uint64_t consumer = m->from, sub_id = (uint64_t)m->n;
  if (s->type == SL_STAGE_CONSUMER) {
    refuse(s, consumer, sub_id, 1, "not a producer", 0);
    return;
  }
  int32_t part = 0;
  sl_dispatch_kind kind = sl_dispatch_kind_of(s->disp);
  char why[200];
  if (kind == SL_DISPATCH_PARTITION) {
    snprintf(why, sizeof why, "no partition given");
    part = s->ops->partition_of ? s->ops->partition_of(s, m->data, m->len, why, sizeof why) : -1;
    if (part < 0) {
      refuse(s, consumer, sub_id, 0, why, 0);
      return;
    }
  } else if (kind == SL_DISPATCH_BROADCAST) {
    for (sub *c = s->subs.side[1].head; c; c = c->next)
      if (c->peer == consumer) {
        refuse(s, consumer, sub_id, 0, "already_subscribed", SL_REASON_ALREADY);
        return;
      }
  }
  int rc = sl_dispatch_subscribe(s->disp, sub_id, part);
  if (rc != 0) {
    if (rc == SL_EEXIST) snprintf(why, sizeof why, "the partition %d is already taken", (int)part + 1);
    else snprintf(why, sizeof why, "cannot subscribe: %s", sl_strerror(rc));
    refuse(s, consumer, sub_id, 0, why, 0);
    return;
  }
  sl_subs_add(&s->subs, sub_id, consumer, 1);
  if (s->ops->handle_subscribe) s->ops->handle_subscribe(s, SL_ROLE_PRODUCER_SIDE, sub_id, consumer, m->data, m->len);
}

/* A consumer of ours is gone (cancelled or down). */
static void producer_drop(sl_stage *s, uint64_t sub_id, int down, const sl_reason *r, int notify) {
  sub *c = sl_subs_find(&s->subs, sub_id, 1);
  if (!c) return;
  sl_subs_remove(&s->subs, c);
  uint64_t up = 0;
  sl_dispatch_cancel(s->disp, sub_id, &up);
  if (s->ops->handle_cancel) s->ops->handle_cancel(s, SL_ROLE_PRODUCER_SIDE, down, sub_id, c->peer, r);
  if (notify) post(s, c->peer, sl_stage_reason_msg(SL_SM_CANCELLED, c->peer, sub_id, 0, r));
  free(c);
  deliver_ready_infos(s);
  if (!s->stop_pending) demand_arrived(s, up);
  if (s->stop_when_no_consumers && s->subs.side[1].n == 0) stop_text(s, "normal", SL_REASON_NORMAL);
}

/* ---- lifecycle -------------------------------------------------------------------- */

/* Ends the stage: terminate, tell every peer, hand the record back. */
static void do_stop(sl_stage *s) {
  s->stop_pending = 2;
  sl_stage_stats st;
  sl_stage_get_stats(s, &st);
  unsigned long long held = (unsigned long long)(st.buffered + st.held);
  if (held > 0 && !(s->reason.flags & SL_REASON_ASKED)) {
    if (s->ops->dropped) s->ops->dropped(s, held);
    else warn(s, "stopped with %llu events it had not delivered (buffered or queued)", held);
  }
  if (s->ops->terminate) s->ops->terminate(s, &s->reason);
  for (sub *c = s->subs.side[1].head; c; c = c->next)
    post(s, c->peer, sl_stage_reason_msg(SL_SM_CANCELLED, c->peer, c->id, 1, &s->reason));
  for (sub *c = s->subs.side[0].head; c; c = c->next)
    post(s, c->peer, sl_stage_reason_msg(SL_SM_DOWN, c->peer, c->id, 0, &s->reason));
  if (s->ops->ended) s->ops->ended(s);
  sl_stage_free(s);
}

static int holds_output(const sl_stage *s) {
  sl_dispatch_state st;
  sl_dispatch_get_state(s->disp, &st);
  return sl_buffer_count(s->buf) > 0 || sl_buffer_infos(s->buf) > 0 || st.queued > 0 || s->in_head ||
         s->acc_head;
}

int sl_stage_settle(sl_stage *s) {
  if (s->type == SL_STAGE_PC && !s->stop_pending) pc_take(s);
  if (!s->stop_pending && s->finishing && (s->type == SL_STAGE_CONSUMER || !holds_output(s))) {
    if (s->finish_reason.data) {
      sl_stage_stop(s, s->finish_reason);
      s->finish_reason = (sl_reason){NULL, 0, 0};
    } else {
      stop_text(s, "normal", SL_REASON_NORMAL);
    }
  }
  if (s->stop_pending == 1) {
    do_stop(s);
    return 1;
  }
  return 0;
}

int sl_stage_receive(sl_stage *s, sl_msg *m) {
  switch (m->kind) {
  case SL_SM_SUBSCRIBE:
    producer_subscribe(s, m);
    break;
  case SL_SM_ASK: {
    if (!sl_subs_find(&s->subs, m->from, 1)) break;
    uint64_t up = 0;
    int rc = sl_dispatch_ask(s->disp, m->from, (uint64_t)m->n, &up);
    if (rc == SL_DISPATCH_OVER_MAX)
      warn(s, "expects a maximum demand of its first ask, got %llu", (unsigned long long)m->n);
    deliver_ready_infos(s);
    demand_arrived(s, up);
    break;
  }
  case SL_SM_EVENTS: {
    sub *c = sl_subs_find(&s->subs, m->from, 0);
    if (!c) break;
    if (s->type == SL_STAGE_PC && (s->in_head || s->pc_demand == 0)) {
      pin *p = pin_push(s, PIN_EVENTS, c->id);
      p->batch = m->batch;
      s->in_events += p->batch.count;
      m->batch = SL_BATCH_EMPTY;
    } else {
      sl_batch b = m->batch;
      m->batch = SL_BATCH_EMPTY;
      consume(s, c, &b);
    }
    break;
  }
  case SL_SM_CANCEL_SUB: {
    sub *c = sl_subs_find(&s->subs, m->from, 0);
    sl_reason r = sl_stage_msg_reason(m);
    if (c) post(s, c->peer, sl_stage_reason_msg(SL_SM_CANCEL_REQ, c->peer, c->id, 0, &r));
    break;
  }
  case SL_SM_CANCEL_REQ: {
    sl_reason r = sl_stage_msg_reason(m);
    producer_drop(s, m->from, 0, &r, 1);
    break;
  }
  case SL_SM_DOWN: {
    sl_reason r = sl_stage_msg_reason(m);
    producer_drop(s, m->from, 1, &r, 0);
    break;
  }
  case SL_SM_CANCELLED: {
    sl_reason r = sl_stage_msg_reason(m);
    if (s->type == SL_STAGE_PC && s->in_head) {
      pin *p = pin_push(s, PIN_CANCELLED, m->from);
      p->down = (int)(m->n & 1);
      p->reason = r;
      m->data = NULL;   /* the pin owns the bytes now */
      m->len = 0;
    } else {
      cancelled_arrived(s, m->from, (int)(m->n & 1), &r);
    }
    break;
  }
  default:
    break;
  }
  return sl_stage_settle(s);
}

int sl_stage_consumer_at(const sl_stage *s, size_t i, uint64_t *sub_id, uint64_t *peer, int32_t *partition) {
  const sub *c = s->subs.side[1].head;
  for (; c && i > 0; c = c->next) i--;
  if (!c) return SL_ENOENT;
  *sub_id = c->id;
  *peer = c->peer;
  *partition = -1;
  if (s->disp && sl_dispatch_kind_of(s->disp) == SL_DISPATCH_PARTITION) {
    sl_dispatch_entry e;
    for (size_t k = 0; sl_dispatch_entry_at(s->disp, k, &e) == 0; k++)
      if (e.has_consumer && e.consumer == c->id) {
        *partition = (int32_t)k;
        break;
      }
  }
  return 0;
}

int sl_stage_dispatch_kind(const sl_stage *s) { return s->disp ? (int)sl_dispatch_kind_of(s->disp) : -1; }

void sl_stage_get_stats(const sl_stage *s, sl_stage_stats *st) {
  memset(st, 0, sizeof *st);
  st->events_in = s->events_in;
  st->events_out = s->events_out;
  st->held = s->in_events + s->acc_events;
  if (s->disp) {
    sl_dispatch_state d;
    sl_dispatch_get_state(s->disp, &d);
    st->demand = d.waiting;
    st->held += d.queued;
    st->buffered = sl_buffer_count(s->buf);
  } else {
    for (const sub *c = s->subs.side[0].head; c; c = c->next) st->demand += c->d.pending;
  }
  st->producers = s->subs.side[0].n;
  st->consumers = s->subs.side[1].n;
}
