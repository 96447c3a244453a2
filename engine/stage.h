/* stage: the GenStage stage protocol as a plain state machine.
 *
 * A stage record holds one stage's side of every subscription (consumer
 * side: demand accounting per producer; producer side: the dispatcher and
 * the buffer), its queued input (a producer_consumer waits for downstream
 * demand before it takes more), what an accumulating producer holds back,
 * the messages of stage:send waiting behind events, and the lifecycle
 * (finish, stop, terminate, telling the peers).
 *
 * It knows nothing of Lua or threads. The host feeds it the protocol
 * messages below (sl_stage_receive) and calls the behaviour of the stage
 * through a table of C functions (sl_stage_ops): the Lua binding calls the
 * Lua callbacks there, the C tests plain C functions. Messages go out
 * through ops->post, which the host routes to the peer's record (by ref):
 * through worker inboxes in sluice, through a deterministic queue in the
 * tests. The protocol needs only that messages from one sender to one
 * receiver arrive in the order they were posted.
 *
 * Refs name stages, sub ids name subscriptions (chosen by whoever asks
 * for the subscription; unique per process). Every message carries the
 * target ref in `to`.
 *
 * One owner per record; not thread-safe. */
#ifndef SLUICE_STAGE_H
#define SLUICE_STAGE_H
#include <stddef.h>
#include <stdint.h>
#include "batch.h"
#include "dispatch.h"
#include "sched.h"

typedef enum sl_stage_type { SL_STAGE_PRODUCER, SL_STAGE_PC, SL_STAGE_CONSUMER } sl_stage_type;

/* What a consumer does when one of its subscriptions ends. */
typedef enum sl_cancel_mode { SL_CANCEL_PERMANENT, SL_CANCEL_TRANSIENT, SL_CANCEL_TEMPORARY } sl_cancel_mode;

/* Protocol messages (sl_msg.kind). `from` and `n` as noted; reasons travel
 * in data/len with their flags in n (see sl_reason). */
enum {
  SL_SM_FIRST = 64,
  SL_SM_SUBSCRIBE = SL_SM_FIRST, /* to producer; from: consumer ref; n: sub id; data: opts (host's bytes) */
  SL_SM_ASK,                     /* to producer; from: sub id; n: demand */
  SL_SM_EVENTS,                  /* to consumer; from: sub id; batch */
  SL_SM_CANCEL_SUB,              /* to consumer; from: sub id; reason: the consumer asks its producer to cancel */
  SL_SM_CANCEL_REQ,              /* to producer; from: sub id; reason */
  SL_SM_CANCELLED,               /* to consumer; from: sub id; n: down | flags << 1; reason */
  SL_SM_DOWN,                    /* to producer; from: sub id; reason (the consumer ended) */
  SL_SM_LAST = SL_SM_DOWN
};

/* An exit or cancel reason: the host's encoded value (data/len, opaque to
 * the engine) or, with SL_REASON_TEXT, a plain message made by the engine. */
enum {
  SL_REASON_NORMAL = 1,   /* "normal" or "shutdown": a transient subscription ends quietly */
  SL_REASON_TEXT = 2,     /* data is text, not the host's encoding */
  SL_REASON_ALREADY = 4,  /* "already_subscribed": never stops the consumer */
  SL_REASON_ERROR = 8,    /* the stage crashed (an error in its own code) */
  SL_REASON_ASKED = 16    /* the user stopped it: events it held are not reported as dropped */
};

typedef struct sl_reason {
  char *data;   /* malloc'd, owned by whoever holds the reason */
  size_t len;
  unsigned flags;
} sl_reason;

typedef struct sl_stage sl_stage;

/* Subscription options of the consumer side. */
typedef struct sl_sub_opts {
  uint64_t max_demand;    /* 1.. */
  uint64_t min_demand;    /* < max_demand */
  sl_cancel_mode cancel;
  int selector;           /* events pass through ops->select first */
} sl_sub_opts;

enum { SL_ROLE_CONSUMER_SIDE = 0, SL_ROLE_PRODUCER_SIDE = 1 };
enum { SL_DEMAND_AUTOMATIC = 0, SL_DEMAND_MANUAL = 1 };

/* The behaviour: every callback but post and fail may be NULL. A callback
 * that fails stops the stage with sl_stage_stop (or fail) and returns; the
 * engine checks sl_stage_stopping after each call. Callbacks may emit
 * events (sl_stage_emit) and send messages (ops->post or the sl_stage_*
 * calls below), but must not free the record. */
typedef struct sl_stage_ops {
  /* Routes m (owned) to the record of ref `to`. Required. */
  void (*post)(sl_stage *s, uint64_t to, sl_msg *m);
  /* An error found by the engine: stop the stage with this message (the
   * host builds its reason; default: a text reason with SL_REASON_ERROR). */
  void (*fail)(sl_stage *s, const char *message);
  /* Producers: n more events are wanted. */
  void (*handle_demand)(sl_stage *s, uint64_t n);
  /* Consumers and producer_consumers: a chunk of events (a view the
   * callee may only read) from subscription sub of producer peer. */
  void (*handle_events)(sl_stage *s, uint64_t sub, uint64_t peer, const sl_batch *chunk);
  /* A subscription starts. Producer side: opts are the bytes the
   * consumer's host sent; consumer side: NULL (the host has its own). Returns SL_DEMAND_AUTOMATIC or SL_DEMAND_MANUAL (consumer side). */
  int (*handle_subscribe)(sl_stage *s, int role, uint64_t sub, uint64_t peer, const char *opts, size_t len);
  /* A subscription ended (down: the peer ended; otherwise a cancel). */
  void (*handle_cancel)(sl_stage *s, int role, int down, uint64_t sub, uint64_t peer, const sl_reason *r);
  /* A stage:send message, in order with the events (data owned by the record). */
  void (*handle_info)(sl_stage *s, const char *data, size_t len);
  /* The stage ends with reason r. */
  void (*terminate)(sl_stage *s, const sl_reason *r);
  /* Partition dispatchers: the partition of every event of *b (may
   * replace *b); 0, or -1 after stopping the stage. NULL: the engine's
   * hash of each event's bytes. */
  int (*partition)(sl_stage *s, sl_batch *b, int32_t *parts);
  /* Partition dispatchers: the partition (0-based) a subscription with
   * these opts asks for, or -1 with a reason written to why. */
  int32_t (*partition_of)(sl_stage *s, const char *opts, size_t len, char *why, size_t whylen);
  /* Subscriptions with a selector: replaces *b with the events it keeps
   * (0), or stops the stage (-1). */
  int (*select)(sl_stage *s, uint64_t sub, sl_batch *b);
  /* A warning about the stage (excess events, discarded events). */
  void (*warn)(sl_stage *s, const char *fmt, unsigned long long n);
  /* The stage stops holding n events it never delivered (buffered or
   * queued), and the user did not stop it (SL_REASON_ASKED): the host
   * says so, or knows that its owner gets the stage's failure. NULL: a
   * warning through warn. */
  void (*dropped)(sl_stage *s, unsigned long long n);
  /* The record is about to be freed; the exit reason is sl_stage_reason. */
  void (*ended)(sl_stage *s);
} sl_stage_ops;

typedef struct sl_stage_config {
  uint64_t ref;
  sl_stage_type type;
  /* producers and producer_consumers */
  sl_dispatch_kind dispatcher;
  int shuffle_demands_on_first_dispatch;
  uint32_t partitions;        /* partition kind */
  size_t buffer_size;         /* SL_BUFFER_UNLIMITED: none */
  int buffer_keep;            /* SL_KEEP_FIRST / SL_KEEP_LAST */
  int accumulate;             /* producers: start in accumulate mode */
  int stop_when_no_consumers; /* stop "normal" once the last consumer leaves */
} sl_stage_config;

/* Creates a record (nothing is sent). SL_EINVAL / SL_ENOMEM. */
int sl_stage_new(const sl_stage_config *cfg, const sl_stage_ops *ops, void *ud, sl_stage **out);
/* Frees a record that never ran or whose host is going away, without
 * terminate and without telling peers. */
void sl_stage_free(sl_stage *s);

void *sl_stage_ud(const sl_stage *s);
uint64_t sl_stage_ref(const sl_stage *s);
sl_stage_type sl_stage_type_of(const sl_stage *s);

/* Consumer side: subscribes to producer as sub (GenStage's order: the
 * subscribe goes out, handle_subscribe runs, then the first ask). opts
 * (taken, may be NULL) are passed to the producer's handle_subscribe. */
void sl_stage_subscribe(sl_stage *s, uint64_t producer, uint64_t sub, const sl_sub_opts *o, char *opts, size_t len);

/* Handles a protocol message for this record (m stays the caller's), then
 * runs queued input and settles (see sl_stage_settle). Returns 1 when the
 * stage ended and the record was freed. */
int sl_stage_receive(sl_stage *s, sl_msg *m);

/* After the host ran something on the stage itself (a call, a cast, an
 * info): hands queued input to a producer_consumer that has demand, then
 * a finishing stage with nothing left stops "normal", and a pending stop
 * is carried out (terminate, peers told, ops->ended, record freed).
 * Returns 1 when the record was freed. */
int sl_stage_settle(sl_stage *s);

/* Events emitted by a behaviour callback (producers, producer_consumers):
 * held back while accumulating, otherwise dispatched; what the consumers
 * cannot take yet is buffered. Takes *b. */
void sl_stage_emit(sl_stage *s, sl_batch *b);

/* A stage:send message (data taken): delivered to handle_info behind the
 * events emitted before it. */
void sl_stage_info(sl_stage *s, char *data, size_t len);

/* Asks the stage to stop with r (taken) once the running message is done;
 * the first reason wins (later ones are freed). */
void sl_stage_stop(sl_stage *s, sl_reason r);
int sl_stage_stopping(const sl_stage *s);
/* The exit reason (valid once stopping). */
const sl_reason *sl_stage_reason(const sl_stage *s);

/* stage:finish(): stop "normal" once nothing is left to send. */
void sl_stage_finish(sl_stage *s);
/* Producers: demand mode. Switching to forward replays what was held. */
void sl_stage_set_accumulate(sl_stage *s, int on);
int sl_stage_accumulating(const sl_stage *s);

/* Manual demand from a callback of this stage: from:ask(n). */
void sl_stage_ask(sl_stage *s, uint64_t sub, uint64_t n);
/* Whether sub is one of this stage's subscriptions to a producer / from a consumer. */
int sl_stage_has_producer(const sl_stage *s, uint64_t sub);
int sl_stage_has_consumer(const sl_stage *s, uint64_t sub);

/* Introspection (the binding's topology graph): consumer subscription i
 * of s, in the order they were made: its id, the consumer's ref and the
 * partition it takes (-1 unless s dispatches by partition). SL_ENOENT past
 * the end. */
int sl_stage_consumer_at(const sl_stage *s, size_t i, uint64_t *sub_id, uint64_t *peer, int32_t *partition);
/* s's dispatcher kind (sl_dispatch_kind), or -1 for a consumer. */
int sl_stage_dispatch_kind(const sl_stage *s);

typedef struct sl_stage_stats {
  uint64_t events_in, events_out;
  uint64_t buffered;      /* in the buffer */
  uint64_t held;          /* in partition queues, queued input and held back (accumulate) */
  uint64_t demand;        /* producers: the consumers' open demand; consumers: asked, not received */
  int producers, consumers;
} sl_stage_stats;
void sl_stage_get_stats(const sl_stage *s, sl_stage_stats *st);

/* A message with no payload (for hosts and tests). */
sl_msg *sl_stage_msg(uint32_t kind, uint64_t to, uint64_t from, int64_t n);
/* A message carrying a copy of reason r (kind CANCEL_REQ, CANCELLED, DOWN,
 * CANCEL_SUB); for CANCELLED, down goes in n's low bit. */
sl_msg *sl_stage_reason_msg(uint32_t kind, uint64_t to, uint64_t sub, int down, const sl_reason *r);
/* The reason a message carries (a view into m). */
sl_reason sl_stage_msg_reason(const sl_msg *m);
/* A text reason (malloc'd copy). */
sl_reason sl_reason_text(const char *text, unsigned flags);
/* A malloc'd copy of r without the flags in drop. */
sl_reason sl_reason_copy(const sl_reason *r, unsigned drop);
void sl_reason_free(sl_reason *r);

/* The answer to a protocol message whose target no longer exists: a
 * subscribe is cancelled "noproc" (the returned message goes to the
 * consumer), anything else needs none (NULL). */
sl_msg *sl_stage_gone_reply(const sl_msg *m);
#endif
