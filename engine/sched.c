/* sched: worker threads, inboxes and timers.
 *
 * DESIGN
 * Each inbox is a mutex-protected FIFO list plus a binary min-heap of timers
 * ordered by (due, id); it belongs to one consumer thread (a worker or the
 * main thread) and any thread may post. There is no global lock on the
 * message path: posting takes only the target inbox's mutex, and the owner
 * takes the whole list in one swap. The owner is signalled only when it is
 * parked on the condition variable. Lock order: an inbox mutex is a leaf;
 * no code holds two of them.
 * Before a worker parks it spins for a few tens of microseconds, watching
 * the inbox's `stir` counter (bumped by every post, wake and close) without
 * the lock. On a virtual machine, waking a parked thread on an idle vCPU
 * costs tens of microseconds, about what two stages that feed each other
 * spend between their messages; the spin is skipped when there are more
 * workers than CPUs, where it would take CPU time from a runnable one.
 * Lua states are not touched here: the host's handler runs on the worker's
 * thread and owns whatever state it keeps in its context.
 * Stopping: each worker bumps its `seq` before and after every handler
 * (odd: busy), and says under `life_mu` when it leaves its loop and when
 * its stop hook has returned. An interrupting thread calls the host's
 * interrupt hook only under `life_mu` and only for a worker that has not
 * left (so its context is alive); a stop waits on `life_cv` with a time
 * limit and never joins a worker that has not ended. life_mu is taken
 * with no inbox mutex held and the interrupt hook takes no lock. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "blocks.h"
#include "sched.h"
#include "status.h"

typedef struct timer {
  int64_t due;
  uint64_t id;
  sl_msg *msg;
} timer;

struct sl_inbox {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  sl_msg *head, *tail;
  timer *heap;
  size_t nheap, capheap;
  uint64_t next_timer;
  int parked;     /* owner is waiting on cv: PARK_PLAIN or PARK_LAZY */
  int lazy_run;   /* main: the last message taken was lazy */
  uint64_t post_wakes;  /* posts that signalled the parked owner */
  int woken;      /* sl_inbox_wake was called */
  int closing;    /* worker: exit once the list is drained */
  int spin;       /* owner spins before parking (workers, when CPUs allow) */
  atomic_uint stir;   /* bumped under mu by whatever ends a wait */
};

typedef struct sl_worker {
  sl_sched *sched;
  int index;
  pthread_t thread;
  sl_inbox inbox;
  void *ctx;                /* the host's, from hooks.start */
  atomic_uint_fast64_t seq; /* bumped before and after each handle: odd while busy */
  int leaving;              /* under life_mu: left its loop, ctx no longer interruptible */
  int ended;                /* under life_mu: hooks.stop returned */
} sl_worker;

struct sl_sched {
  int n;
  sl_worker *workers;
  sl_inbox main;
  sl_sched_hooks hooks;
  pthread_mutex_t life_mu;  /* start-up count, leaving/ended flags, interrupts */
  pthread_cond_t life_cv;
  int started;
  int nended;
  int closed;               /* the inboxes were closed (owner: the stopping thread) */
  atomic_int stopping;      /* workers drop what they have not handled yet */
};

static _Thread_local int current_worker = -1;
static _Thread_local sl_worker *current_w;

int64_t sl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sl_msg *sl_msg_new(uint32_t kind) {
  sl_msg *m = calloc(1, sizeof *m);
  if (m) m->kind = kind;
  return m;
}

void sl_msg_free(sl_msg *m) {
  if (!m) return;
  sl_batch_release(&m->batch);
  if (m->obj_free) m->obj_free(m->obj);
  free(m->data);
  free(m);
}

/* ---- inbox ---------------------------------------------------------- */

static void inbox_init(sl_inbox *in) {
  memset(in, 0, sizeof *in);
  pthread_mutex_init(&in->mu, NULL);
  pthread_cond_init(&in->cv, NULL);
  atomic_init(&in->stir, 0);
  in->next_timer = 1;
}

static void inbox_destroy(sl_inbox *in) {
  for (sl_msg *m = in->head, *next; m; m = next) {
    next = m->next;
    sl_msg_free(m);
  }
  for (size_t i = 0; i < in->nheap; i++) sl_msg_free(in->heap[i].msg);
  free(in->heap);
  pthread_mutex_destroy(&in->mu);
  pthread_cond_destroy(&in->cv);
}

/* What ends a wait happened: lets a spinning owner see it. Called under mu. */
static void stir_locked(sl_inbox *in) {
  atomic_fetch_add_explicit(&in->stir, 1, memory_order_release);
}

static void push_locked(sl_inbox *in, sl_msg *m) {
  m->next = NULL;
  if (in->tail) in->tail->next = m;
  else in->head = m;
  in->tail = m;
  stir_locked(in);
}

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* How an owner is parked: PARK_LAZY, for at most SL_LAZY_MS, lets lazy
 * posts leave it asleep. */
enum { PARK_NO = 0, PARK_PLAIN = 1, PARK_LAZY = 2 };

/* How long an owner spins before it parks. */
#define SPIN_NS 50000

/* Spins until in->stir moves from seen or SPIN_NS pass; mu not held. */
static void spin_wait(sl_inbox *in, unsigned seen) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (atomic_load_explicit(&in->stir, memory_order_acquire) != seen) return;
      cpu_relax();
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) >= SPIN_NS) return;
  }
}

void sl_inbox_post(sl_inbox *in, sl_msg *m) {
  pthread_mutex_lock(&in->mu);
  int wake = in->parked == PARK_PLAIN || (in->parked == PARK_LAZY && !m->lazy);
  in->post_wakes += (uint64_t)wake;
  push_locked(in, m);
  pthread_mutex_unlock(&in->mu);
  if (wake) pthread_cond_signal(&in->cv);
}

static int timer_less(const timer *a, const timer *b) {
  return a->due < b->due || (a->due == b->due && a->id < b->id);
}

static void heap_up(timer *h, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!timer_less(&h[i], &h[p])) break;
    timer t = h[i]; h[i] = h[p]; h[p] = t;
    i = p;
  }
}

static void heap_down(timer *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && timer_less(&h[l], &h[m])) m = l;
    if (r < n && timer_less(&h[r], &h[m])) m = r;
    if (m == i) break;
    timer t = h[i]; h[i] = h[m]; h[m] = t;
    i = m;
  }
}

/* Removes heap entry i, keeping the heap order. */
static sl_msg *heap_remove(sl_inbox *in, size_t i) {
  sl_msg *m = in->heap[i].msg;
  in->heap[i] = in->heap[--in->nheap];
  if (i < in->nheap) {
    heap_down(in->heap, in->nheap, i);
    heap_up(in->heap, i);
  }
  return m;
}

uint64_t sl_inbox_after(sl_inbox *in, int64_t delay_ms, sl_msg *m) {
  int64_t now = sl_now_ms();
  if (delay_ms < 0) delay_ms = 0;
  /* a delay too large to add to the clock never comes due (it used to
   * wrap around to the past and fire at once) */
  int64_t due = delay_ms > INT64_MAX - now ? INT64_MAX : now + delay_ms;
  pthread_mutex_lock(&in->mu);
  if (in->nheap == in->capheap) {
    size_t cap = in->capheap ? in->capheap * 2 : 16;
    timer *h = realloc(in->heap, cap * sizeof *h);
    if (!h) {  /* out of memory: deliver at once rather than lose it */
      push_locked(in, m);
      pthread_mutex_unlock(&in->mu);
      pthread_cond_signal(&in->cv);
      return 0;
    }
    in->heap = h;
    in->capheap = cap;
  }
  uint64_t id = in->next_timer++;
  in->heap[in->nheap] = (timer){due, id, m};
  heap_up(in->heap, in->nheap++);
  stir_locked(in);
  int wake = in->parked;
  pthread_mutex_unlock(&in->mu);
  if (wake) pthread_cond_signal(&in->cv);
  return id;
}

int sl_inbox_cancel(sl_inbox *in, uint64_t id) {
  sl_msg *m = NULL;
  pthread_mutex_lock(&in->mu);
  for (size_t i = 0; i < in->nheap; i++)
    if (in->heap[i].id == id) {
      m = heap_remove(in, i);
      break;
    }
  pthread_mutex_unlock(&in->mu);
  sl_msg_free(m);
  return m != NULL;
}

/* Moves due timers to the list; returns ms until the next one (-1: none). */
static int64_t fire_timers_locked(sl_inbox *in) {
  if (in->nheap == 0) return -1;
  int64_t now = sl_now_ms();
  while (in->nheap > 0 && in->heap[0].due <= now) push_locked(in, heap_remove(in, 0));
  return in->nheap ? in->heap[0].due - now : -1;
}

static void abs_deadline(struct timespec *ts, int64_t ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000;
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

/* Waits until the list is non-empty, a wake, closing, or timeout_ms
 * passes (<0: no limit). With lazy (main, after a lazy message) it parks
 * for at most SL_LAZY_MS at a time while lazy posts come; a lazy park
 * that finds nothing ends the lazy run. Returns with in->mu held. */
static void wait_locked(sl_inbox *in, int64_t timeout_ms, int lazy) {
  int64_t deadline = timeout_ms >= 0 ? sl_now_ms() + timeout_ms : -1;
  int spun = !in->spin;
  pthread_mutex_lock(&in->mu);
  for (;;) {
    int64_t next = fire_timers_locked(in);
    if (in->head || in->woken || in->closing) break;
    int64_t wait = next;
    if (deadline >= 0) {
      int64_t left = deadline - sl_now_ms();
      if (left <= 0) break;
      if (wait < 0 || left < wait) wait = left;
    }
    if (!spun) {   /* once per wait: spin, then look again */
      spun = 1;
      unsigned seen = atomic_load_explicit(&in->stir, memory_order_relaxed);
      pthread_mutex_unlock(&in->mu);
      spin_wait(in, seen);
      pthread_mutex_lock(&in->mu);
      continue;
    }
    int lazy_park = lazy && in->lazy_run;
    if (lazy_park && (wait < 0 || wait > SL_LAZY_MS)) wait = SL_LAZY_MS;
    in->parked = lazy_park ? PARK_LAZY : PARK_PLAIN;
    if (wait < 0) {
      pthread_cond_wait(&in->cv, &in->mu);
    } else {
      struct timespec ts;
      abs_deadline(&ts, wait);
      pthread_cond_timedwait(&in->cv, &in->mu, &ts);
    }
    in->parked = PARK_NO;
    if (lazy_park && !in->head) in->lazy_run = 0;
  }
}

/* Worker use: waits as wait_locked does and returns the whole list
 * (caller owns it). */
static sl_msg *take_all(sl_inbox *in, int64_t timeout_ms, int *closing) {
  wait_locked(in, timeout_ms, 0);
  sl_msg *list = in->head;
  in->head = in->tail = NULL;
  in->woken = 0;
  if (closing) *closing = in->closing;
  pthread_mutex_unlock(&in->mu);
  return list;
}

sl_msg *sl_inbox_wait(sl_inbox *in, int64_t timeout_ms) {
  /* The main thread takes one message at a time: it pops the head, so
   * draining k queued messages costs O(k), not O(k^2). */
  wait_locked(in, timeout_ms, 1);
  sl_msg *m = in->head;
  if (m) {
    in->head = m->next;
    if (!in->head) in->tail = NULL;
    m->next = NULL;
    in->lazy_run = m->lazy;
  }
  in->woken = 0;
  pthread_mutex_unlock(&in->mu);
  return m;
}

void sl_inbox_state(sl_inbox *in, sl_inbox_stats *st) {
  pthread_mutex_lock(&in->mu);
  st->parked = in->parked == PARK_LAZY ? SL_PARKED_LAZY : in->parked ? SL_PARKED : SL_NOT_PARKED;
  st->post_wakes = in->post_wakes;
  pthread_mutex_unlock(&in->mu);
}

void sl_inbox_wake(sl_inbox *in) {
  pthread_mutex_lock(&in->mu);
  in->woken = 1;
  stir_locked(in);
  pthread_mutex_unlock(&in->mu);
  pthread_cond_signal(&in->cv);
}

/* ---- workers ---------------------------------------------------------- */

/* Only the worker writes its seq, so a plain load and store suffice. */
static void bump_seq(sl_worker *w) {
  uint64_t v = atomic_load_explicit(&w->seq, memory_order_relaxed);
  atomic_store_explicit(&w->seq, v + 1, memory_order_release);
}

static void *worker_main(void *arg) {
  sl_worker *w = arg;
  sl_sched *s = w->sched;
  current_worker = w->index;
  current_w = w;
  void *ctx = s->hooks.start(w->index, s->hooks.ud);
  pthread_mutex_lock(&s->life_mu);
  w->ctx = ctx;
  s->started++;
  pthread_cond_broadcast(&s->life_cv);
  pthread_mutex_unlock(&s->life_mu);
  for (;;) {
    int closing = 0;
    sl_msg *list = take_all(&w->inbox, -1, &closing);
    /* at shutdown what is still queued is dropped: stages that keep
     * feeding each other would otherwise never let the worker end */
    while (list) {
      sl_msg *next = list->next;
      list->next = NULL;
      if (closing || atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
        sl_msg_free(list);
      } else {
        bump_seq(w);
        s->hooks.handle(ctx, list);
        bump_seq(w);
      }
      list = next;
    }
    if (closing) break;
  }
  /* from here on nobody calls hooks.interrupt on ctx: stop may free it */
  pthread_mutex_lock(&s->life_mu);
  w->leaving = 1;
  pthread_mutex_unlock(&s->life_mu);
  s->hooks.stop(ctx);
  sl_block_clear();   /* the batch blocks this thread kept */
  pthread_mutex_lock(&s->life_mu);
  w->ended = 1;
  s->nended++;
  pthread_cond_broadcast(&s->life_cv);
  pthread_mutex_unlock(&s->life_mu);
  return NULL;
}

int sl_sched_start(int n, const sl_sched_hooks *hooks, sl_sched **out) {
  if (n < 1) return SL_EINVAL;
  sl_sched *s = calloc(1, sizeof *s);
  if (!s) return SL_ENOMEM;
  s->workers = calloc((size_t)n, sizeof *s->workers);
  if (!s->workers) goto err;
  s->hooks = *hooks;
  inbox_init(&s->main);
  pthread_mutex_init(&s->life_mu, NULL);
  pthread_cond_init(&s->life_cv, NULL);
  atomic_init(&s->stopping, 0);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  for (int i = 0; i < n; i++) {
    sl_worker *w = &s->workers[i];
    w->sched = s;
    w->index = i;
    inbox_init(&w->inbox);
    atomic_init(&w->seq, 0);
    w->inbox.spin = cpus > 0 && n <= cpus;
  }
  for (int i = 0; i < n; i++) {
    if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
      s->n = i;   /* stop the ones that started */
      sl_sched_stop(s);
      return SL_ENOMEM;
    }
    s->n = i + 1;
  }
  pthread_mutex_lock(&s->life_mu);
  while (s->started < n) pthread_cond_wait(&s->life_cv, &s->life_mu);
  pthread_mutex_unlock(&s->life_mu);
  *out = s;
  return 0;
err:
  free(s);
  return SL_ENOMEM;
}

/* Calls hooks.interrupt for every worker inside a handler. life_mu held:
 * a worker cannot leave its loop (and free its context) meanwhile. */
static int interrupt_locked(sl_sched *s, int (*match)(void *ctx, void *ud), void *ud) {
  int n = 0;
  for (int i = 0; i < s->n; i++) {
    sl_worker *w = &s->workers[i];
    if (w->leaving) continue;
    uint64_t seq = atomic_load_explicit(&w->seq, memory_order_acquire);
    if ((seq & 1) && (!match || match(w->ctx, ud))) {
      n++;
      if (s->hooks.interrupt) s->hooks.interrupt(w->ctx, seq);
    }
  }
  return n;
}

int sl_sched_interrupt(sl_sched *s) { return sl_sched_interrupt_if(s, NULL, NULL); }

int sl_sched_interrupt_if(sl_sched *s, int (*match)(void *ctx, void *ud), void *ud) {
  pthread_mutex_lock(&s->life_mu);
  int n = interrupt_locked(s, match, ud);
  pthread_mutex_unlock(&s->life_mu);
  return n;
}

uint64_t sl_sched_seq(void) {
  return current_w ? atomic_load_explicit(&current_w->seq, memory_order_relaxed) : 0;
}

/* How often a stop interrupts the busy workers again while it waits (a
 * handler may catch one interruption, or the host may miss one that
 * arrived just as the previous handler ended). */
#define REINTERRUPT_MS 50

int sl_sched_stop_within(sl_sched *s, int64_t grace_ms) {
  if (!s) return 0;
  if (!s->closed) {
    s->closed = 1;
    atomic_store(&s->stopping, 1);
    for (int i = 0; i < s->n; i++) {
      sl_inbox *in = &s->workers[i].inbox;
      pthread_mutex_lock(&in->mu);
      in->closing = 1;
      stir_locked(in);
      pthread_mutex_unlock(&in->mu);
      pthread_cond_signal(&in->cv);
    }
  }
  int64_t deadline = grace_ms >= 0 ? sl_now_ms() + grace_ms : -1;
  pthread_mutex_lock(&s->life_mu);
  while (s->nended < s->n) {
    interrupt_locked(s, NULL, NULL);
    int64_t wait = REINTERRUPT_MS;
    if (deadline >= 0) {
      int64_t left = deadline - sl_now_ms();
      if (left <= 0) break;
      if (left < wait) wait = left;
    }
    struct timespec ts;
    abs_deadline(&ts, wait);
    pthread_cond_timedwait(&s->life_cv, &s->life_mu, &ts);
  }
  int running = s->n - s->nended;
  pthread_mutex_unlock(&s->life_mu);
  if (running) return running;
  for (int i = 0; i < s->n; i++) pthread_join(s->workers[i].thread, NULL);
  for (int i = 0; i < s->n; i++) inbox_destroy(&s->workers[i].inbox);
  inbox_destroy(&s->main);
  pthread_mutex_destroy(&s->life_mu);
  pthread_cond_destroy(&s->life_cv);
  free(s->workers);
  free(s);
  return 0;
}

void sl_sched_stop(sl_sched *s) { sl_sched_stop_within(s, -1); }

int sl_sched_running(sl_sched *s, int worker) {
  pthread_mutex_lock(&s->life_mu);
  int r = !s->workers[worker].ended;
  pthread_mutex_unlock(&s->life_mu);
  return r;
}

int sl_sched_workers(const sl_sched *s) { return s->n; }
sl_inbox *sl_sched_inbox(sl_sched *s, int worker) { return &s->workers[worker].inbox; }
sl_inbox *sl_sched_main(sl_sched *s) { return &s->main; }
int sl_sched_current(void) { return current_worker; }
