/* sched: worker threads, their inboxes and timers.
 *
 * The scheduler knows nothing of what messages mean: it runs N worker
 * threads, each draining its own inbox and timer heap and handing every
 * message to the host's handler on that thread. The main thread has an
 * inbox too (replies, stream events), which it drains itself from blocking
 * calls with sl_inbox_wait. */
#ifndef SLUICE_SCHED_H
#define SLUICE_SCHED_H
#include <stddef.h>
#include <stdint.h>
#include "batch.h"

/* A message. Owned by whoever holds it: the sender until posted, then the
 * inbox, then the handler, which frees it with sl_msg_free. */
typedef struct sl_msg {
  struct sl_msg *next;
  uint32_t kind;    /* meaning defined by the host */
  uint64_t to;      /* target id (stage, task...) */
  uint64_t from;    /* sender id */
  int64_t n;        /* integer argument (demand, timer id...) */
  sl_batch batch;   /* events, owned by the message */
  char *data;       /* payload bytes, owned (malloc), may be NULL */
  size_t len;
  void *obj;        /* host object; obj_free(obj) runs when the message is freed */
  void (*obj_free)(void *obj);
  int lazy;         /* the receiver may take it a little late: its sender
                       does not wait for it (events to a consumer that
                       still has demand); see sl_inbox_wait */
} sl_msg;

sl_msg *sl_msg_new(uint32_t kind);
/* Frees the message, its payload and its batch reference. */
void sl_msg_free(sl_msg *m);

typedef struct sl_inbox sl_inbox;
typedef struct sl_sched sl_sched;

/* Host callbacks, each run on the worker's own thread, except interrupt. */
typedef struct sl_sched_hooks {
  void *(*start)(int worker, void *ud);   /* returns the worker's context */
  void (*handle)(void *ctx, sl_msg *m);   /* takes ownership of m */
  void (*stop)(void *ctx);                /* last call on the thread */
  void *ud;
  /* Optional. Runs on the interrupting thread while the worker is inside
   * handle (or has just left it): asks the running handler to return
   * soon. seq is that handler's number (see sl_sched_seq), so the worker
   * can tell a late request from one meant for its current handler. It
   * must not wait for the worker; the Lua host only calls lua_sethook. */
  void (*interrupt)(void *ctx, uint64_t seq);
} sl_sched_hooks;

/* Starts nworkers threads (each calls hooks->start before anything else
 * and the call returns only once every start has run). */
int sl_sched_start(int nworkers, const sl_sched_hooks *hooks, sl_sched **out);
/* Stops the workers (messages still queued are dropped, unhandled), joins
 * them and frees everything; waits as long as that takes. */
void sl_sched_stop(sl_sched *s);
/* Stops the workers within grace_ms (<0: no limit): closes the inboxes
 * (what is queued, even what a worker has taken but not handled yet, is
 * dropped), interrupts the workers that are inside a handler (again every
 * 50 ms while it waits) and waits for every worker to end. Returns 0 once
 * all ended: they are joined and s is freed. Otherwise returns how many
 * still run (sl_sched_running says which) and leaves s as it is: call
 * again to wait longer, or end the process without joining them. */
int sl_sched_stop_within(sl_sched *s, int64_t grace_ms);
/* After sl_sched_stop_within returned > 0: 1 if that worker (0-based)
 * has not ended yet. */
int sl_sched_running(sl_sched *s, int worker);
/* Calls hooks.interrupt for every worker that is inside a handler now;
 * returns how many were. Any thread. */
int sl_sched_interrupt(sl_sched *s);
/* The same for the busy workers whose context match(ctx, ud) accepts
 * (match runs under the scheduler's lock: it must only read the context,
 * without locking or waiting). */
int sl_sched_interrupt_if(sl_sched *s, int (*match)(void *ctx, void *ud), void *ud);
/* On a worker thread: the number of the handler it runs now (odd; it
 * grows by 2 per message). 0 on other threads. */
uint64_t sl_sched_seq(void);
int sl_sched_workers(const sl_sched *s);
/* Worker inbox (0-based) or the main thread's inbox. */
sl_inbox *sl_sched_inbox(sl_sched *s, int worker);
sl_inbox *sl_sched_main(sl_sched *s);
/* The 0-based worker running the calling thread, or -1 for other threads. */
int sl_sched_current(void);

/* Queues m (ownership moves to the inbox). FIFO per sender. Wakes the
 * owner only when it is parked, and not for a lazy message while the
 * owner is parked for at most SL_LAZY_MS (sl_inbox_wait). */
void sl_inbox_post(sl_inbox *in, sl_msg *m);
/* Queues m to be delivered after delay_ms; returns a timer id > 0. */
uint64_t sl_inbox_after(sl_inbox *in, int64_t delay_ms, sl_msg *m);
/* Cancels a pending timer; returns 1 if it was still pending. */
int sl_inbox_cancel(sl_inbox *in, uint64_t timer);
/* Main-thread use: waits up to timeout_ms (<0: forever) for a message.
 * Returns it, or NULL on timeout or when sl_inbox_wake was called. After
 * it returned a lazy message, the next wait that parks wakes at least
 * every SL_LAZY_MS and lazy posts do not signal it: a stream of small
 * batches to the main thread (a window's results as each window ends)
 * is taken a few at a time instead of one wake-up each, which on a
 * virtual machine costs tens of microseconds of the sender's time. A
 * park that finds nothing ends that: the next one waits as before. */
#define SL_LAZY_MS 2
sl_msg *sl_inbox_wait(sl_inbox *in, int64_t timeout_ms);
/* What an inbox's owner is doing and how often posts woke it. */
enum { SL_NOT_PARKED = 0, SL_PARKED = 1, SL_PARKED_LAZY = 2 };
typedef struct sl_inbox_stats {
  int parked;            /* SL_NOT_PARKED, SL_PARKED, or SL_PARKED_LAZY (for at most SL_LAZY_MS) */
  uint64_t post_wakes;   /* posts that signalled the parked owner */
} sl_inbox_stats;
void sl_inbox_state(sl_inbox *in, sl_inbox_stats *st);
/* Makes a pending or the next sl_inbox_wait return NULL at once (signal-safe
 * enough for a Ctrl-C path: only sets a flag and signals). */
void sl_inbox_wake(sl_inbox *in);

/* Monotonic milliseconds. */
int64_t sl_now_ms(void);
#endif
