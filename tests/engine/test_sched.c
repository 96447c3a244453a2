/* Scheduler tests: inbox FIFO per sender, parking and waking, the timer
 * heap (order, cancel, equal due times), and workers handing messages to
 * the host on their own thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "check.h"
#include "sched.h"

/* ---- a host that records what each worker got ------------------------- */

typedef struct {
  int index;
  int started;
  int64_t got[4096];
  int n;
  int thread_ok;
} rec;

static rec recs[4];
static atomic_int stopped;
static atomic_int handled;

static void *h_start(int index, void *ud) {
  (void)ud;
  recs[index].index = index;
  recs[index].started = 1;
  recs[index].thread_ok = 1;
  return &recs[index];
}

static void h_handle(void *ctx, sl_msg *m) {
  rec *r = ctx;
  if (sl_sched_current() != r->index) r->thread_ok = 0;
  if (r->n < 4096) r->got[r->n++] = m->n;
  atomic_fetch_add(&handled, 1);
  sl_msg_free(m);
}

static void h_stop(void *ctx) {
  (void)ctx;
  atomic_fetch_add(&stopped, 1);
}

static sl_msg *num(int64_t n) {
  sl_msg *m = sl_msg_new(1);
  m->n = n;
  return m;
}

/* ---- inbox without threads -------------------------------------------- */

static void test_inbox_fifo(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox *in = sl_sched_main(s);
  for (int i = 1; i <= 5; i++) sl_inbox_post(in, num(i));
  for (int i = 1; i <= 5; i++) {
    sl_msg *m = sl_inbox_wait(in, 0);
    CHECK(m != NULL);
    if (m) CHECK_INT(m->n, i);
    sl_msg_free(m);
  }
  CHECK(sl_inbox_wait(in, 0) == NULL);
  sl_sched_stop(s);
}

/* The main thread drains a long inbox one message at a time in linear
 * time: 200000 queued messages take well under a second (taking the whole
 * list and putting the rest back walked the rest each time: minutes). A
 * message posted while the inbox is being drained comes after the others,
 * and an emptied inbox takes new posts again. */
static void test_main_inbox_drain_is_linear(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox *in = sl_sched_main(s);
  enum { N = 200000 };
  for (int i = 1; i <= N; i++) sl_inbox_post(in, num(i));
  int64_t t0 = sl_now_ms();
  int order_ok = 1, got = 0;
  for (int i = 1; i <= N; i++) {
    sl_msg *m = sl_inbox_wait(in, 0);
    if (!m) break;
    got++;
    if (m->n != i || m->next != NULL) order_ok = 0;
    sl_msg_free(m);
    if (i == N / 2) sl_inbox_post(in, num(N + 1));
  }
  sl_msg *m = sl_inbox_wait(in, 0);
  CHECK(m != NULL);
  if (m) CHECK_INT(m->n, N + 1);
  sl_msg_free(m);
  CHECK_INT(got, N);
  CHECK(order_ok);
  CHECK(sl_now_ms() - t0 < 1000);
  CHECK(sl_inbox_wait(in, 0) == NULL);
  sl_inbox_post(in, num(7));
  m = sl_inbox_wait(in, 0);
  CHECK(m != NULL);
  if (m) CHECK_INT(m->n, 7);
  sl_msg_free(m);
  CHECK(sl_inbox_wait(in, 0) == NULL);
  sl_sched_stop(s);
}

static void test_wait_timeout_and_wake(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox *in = sl_sched_main(s);
  int64_t t0 = sl_now_ms();
  CHECK(sl_inbox_wait(in, 30) == NULL);
  CHECK(sl_now_ms() - t0 >= 29);
  sl_inbox_wake(in);
  t0 = sl_now_ms();
  CHECK(sl_inbox_wait(in, 5000) == NULL);   /* the wake returns at once */
  CHECK(sl_now_ms() - t0 < 1000);
  sl_sched_stop(s);
}

/* ---- lazy messages to the main thread ----------------------------------- */

/* A thread that waits (up to 2 s) until the main inbox is parked the way
 * it wants, then posts one message, lazy or not; it reports the wakes the
 * post made (-1: the inbox was never parked so). */
typedef struct {
  sl_inbox *in;
  int want;         /* SL_PARKED or SL_PARKED_LAZY */
  int lazy;
  int64_t n;
  int64_t woke;
} lazy_poster;

static void *post_when_parked(void *ud) {
  lazy_poster *p = ud;
  sl_inbox_stats st;
  int64_t t0 = sl_now_ms();
  p->woke = -1;
  for (;;) {
    sl_inbox_state(p->in, &st);
    if (st.parked == p->want) break;
    if (sl_now_ms() - t0 > 2000) {
      sl_inbox_post(p->in, num(-1));   /* let the waiter go */
      return NULL;
    }
  }
  uint64_t before = st.post_wakes;
  sl_msg *m = num(p->n);
  m->lazy = p->lazy;
  sl_inbox_post(p->in, m);
  sl_inbox_state(p->in, &st);
  p->woke = (int64_t)(st.post_wakes - before);
  return NULL;
}

/* Runs one poster against the main thread's wait (timeout 5 s); returns
 * what the post did to the waiter (wakes, -1: never parked so) and checks
 * that the message arrived. */
static int64_t post_to_waiting_main(sl_inbox *in, int want, int lazy, int64_t n) {
  lazy_poster p = {in, want, lazy, n, 0};
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, post_when_parked, &p), 0);
  sl_msg *m = sl_inbox_wait(in, 5000);
  pthread_join(t, NULL);
  CHECK(m != NULL);
  if (m) CHECK_INT(m->n, p.woke < 0 ? -1 : n);
  sl_msg_free(m);
  return p.woke;
}

/* After the main thread took a lazy message, its next park lasts at most
 * SL_LAZY_MS and a lazy post does not signal it (it finds the message
 * when the park ends); a message that is not lazy does. A lazy park that
 * finds nothing ends the lazy run: the next park is plain and a lazy
 * post signals it. (A poster can be slow enough that a 2 ms park ends
 * before it posts, so each case gets a few tries.) */
static void test_lazy_posts_to_main(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox *in = sl_sched_main(s);
  int64_t lazy_quiet = -2, plain_wakes = -2, after_run = -2;
  for (int try = 0; try < 5 && lazy_quiet != 0; try++) {
    sl_msg *m = num(1);
    m->lazy = 1;
    sl_inbox_post(in, m);
    sl_msg_free(sl_inbox_wait(in, 0));            /* a lazy message taken */
    lazy_quiet = post_to_waiting_main(in, SL_PARKED_LAZY, 1, 2);
  }
  CHECK_INT(lazy_quiet, 0);
  for (int try = 0; try < 5 && plain_wakes != 1; try++) {
    sl_msg *m = num(1);
    m->lazy = 1;
    sl_inbox_post(in, m);
    sl_msg_free(sl_inbox_wait(in, 0));
    plain_wakes = post_to_waiting_main(in, SL_PARKED_LAZY, 0, 3);
  }
  CHECK_INT(plain_wakes, 1);
  /* the lazy run ends with a park that finds nothing */
  sl_msg *m = num(1);
  m->lazy = 1;
  sl_inbox_post(in, m);
  sl_msg_free(sl_inbox_wait(in, 0));
  CHECK(sl_inbox_wait(in, 20) == NULL);
  after_run = post_to_waiting_main(in, SL_PARKED, 1, 4);
  CHECK_INT(after_run, 1);
  /* a worker's inbox never parks lazily: a lazy post signals it */
  sl_inbox_stats st;
  sl_inbox *w = sl_sched_inbox(s, 0);
  atomic_store(&handled, 0);
  int64_t t0 = sl_now_ms();
  do sl_inbox_state(w, &st); while (st.parked != SL_PARKED && sl_now_ms() - t0 < 2000);
  CHECK_INT(st.parked, SL_PARKED);
  uint64_t before = st.post_wakes;
  m = num(5);
  m->lazy = 1;
  sl_inbox_post(w, m);
  sl_inbox_state(w, &st);
  CHECK_INT(st.post_wakes - before, 1);
  while (atomic_load(&handled) < 1 && sl_now_ms() - t0 < 5000) {}
  CHECK_INT(atomic_load(&handled), 1);
  sl_sched_stop(s);
}

static void test_timers_fire_in_due_order(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox *in = sl_sched_main(s);
  sl_inbox_after(in, 60, num(3));
  sl_inbox_after(in, 20, num(1));
  uint64_t t2 = sl_inbox_after(in, 40, num(2));
  sl_inbox_after(in, 40, num(22));           /* same due time: FIFO */
  uint64_t cancelled = sl_inbox_after(in, 30, num(99));
  CHECK(t2 > 0);
  CHECK_INT(sl_inbox_cancel(in, cancelled), 1);
  CHECK_INT(sl_inbox_cancel(in, cancelled), 0);   /* already gone */
  CHECK(sl_inbox_wait(in, 0) == NULL);           /* nothing due yet */
  int64_t want[] = {1, 2, 22, 3};
  for (int i = 0; i < 4; i++) {
    sl_msg *m = sl_inbox_wait(in, 2000);
    CHECK(m != NULL);
    if (m) CHECK_INT(m->n, want[i]);
    sl_msg_free(m);
  }
  CHECK(sl_inbox_wait(in, 100) == NULL);
  sl_sched_stop(s);
}

static void test_many_timers_heap(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox *in = sl_sched_main(s);
  /* 200 timers with delays in a scrambled order; every third cancelled */
  /* each message carries the due time computed just before posting; the
   * heap may order two timers whose due times differ by the clock tick
   * between those two readings either way, hence the 2 ms slack below */
  uint64_t ids[200];
  for (int i = 0; i < 200; i++) {
    int d = (i * 37) % 200;
    ids[i] = sl_inbox_after(in, d / 4, num(sl_now_ms() + d / 4));
  }
  int cancelled = 0;
  for (int i = 0; i < 200; i += 3) cancelled += sl_inbox_cancel(in, ids[i]);
  CHECK_INT(cancelled, 67);
  int64_t last = -1;
  int got = 0, ordered = 1;
  sl_msg *m;
  while ((m = sl_inbox_wait(in, 300)) != NULL) {
    if (m->n < last - 2) ordered = 0;
    last = m->n;
    got++;
    sl_msg_free(m);
  }
  CHECK_INT(got, 133);
  CHECK(ordered);
  sl_sched_stop(s);
}

/* ---- workers ------------------------------------------------------------ */

typedef struct {
  sl_inbox *in;
  int sender;
} poster_arg;

static void *poster(void *p) {
  poster_arg *a = p;
  for (int i = 0; i < 1000; i++) sl_inbox_post(a->in, num(a->sender * 100000 + i));
  return NULL;
}

static void test_workers_fifo_per_sender(void) {
  memset(recs, 0, sizeof recs);
  atomic_store(&stopped, 0);
  atomic_store(&handled, 0);
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(2, &hooks, &s), 0);
  CHECK_INT(sl_sched_workers(s), 2);
  CHECK_INT(recs[0].started, 1);
  CHECK_INT(recs[1].started, 1);
  pthread_t t[3];
  poster_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i] = (poster_arg){sl_sched_inbox(s, 1), i + 1};
    pthread_create(&t[i], NULL, poster, &args[i]);
  }
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  /* a marker posted last by this thread: once handled, all 3000 were */
  sl_inbox_post(sl_sched_inbox(s, 1), num(-1));
  for (int k = 0; k < 5000 && atomic_load(&handled) < 3001; k++) {
    struct timespec ts = {0, 2 * 1000000};
    nanosleep(&ts, NULL);
  }
  sl_sched_stop(s);
  CHECK_INT(atomic_load(&stopped), 2);
  CHECK_INT(recs[1].n, 3001);
  CHECK_INT(recs[1].got[3000], -1);
  CHECK_INT(recs[0].n, 0);
  CHECK(recs[1].thread_ok);
  int64_t next[4] = {0, 0, 0, 0};
  int in_order = 1;
  for (int i = 0; i < 3000; i++) {
    int64_t v = recs[1].got[i];
    int sender = (int)(v / 100000);
    if (v % 100000 != next[sender]) in_order = 0;
    next[sender]++;
  }
  CHECK(in_order);
}

static void test_worker_timer(void) {
  memset(recs, 0, sizeof recs);
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox_after(sl_sched_inbox(s, 0), 20, num(7));
  sl_inbox_post(sl_sched_inbox(s, 0), num(1));
  struct timespec ts = {0, 80 * 1000000};
  nanosleep(&ts, NULL);
  sl_sched_stop(s);
  CHECK_INT(recs[0].n, 2);
  CHECK_INT(recs[0].got[0], 1);
  CHECK_INT(recs[0].got[1], 7);
}

static void test_bad_worker_count(void) {
  sl_sched_hooks hooks = {h_start, h_handle, h_stop, NULL, NULL};
  sl_sched *s = NULL;
  CHECK(sl_sched_start(0, &hooks, &s) < 0);
  CHECK(s == NULL);
}

/* ---- stopping busy workers ---------------------------------------------- */

/* A host whose handler spins, like a Lua callback in an endless loop:
 * "polite" workers return once interrupted, a "stuck" one (a C call that
 * never looks) only when released. */
typedef struct {
  int index;
  atomic_int entered;            /* handlers begun */
  atomic_int handled;            /* handlers finished */
  atomic_uint_fast64_t asked;    /* seq passed to the last interrupt */
  atomic_int interrupts;
  int stuck;
} spinner;

static spinner spinners[2];
static atomic_int release_stuck;

static void *sp_start(int index, void *ud) {
  (void)ud;
  spinners[index].index = index;
  return &spinners[index];
}

static void sp_handle(void *ctx, sl_msg *m) {
  spinner *p = ctx;
  uint64_t mine = sl_sched_seq();
  atomic_fetch_add(&p->entered, 1);
  for (;;) {
    if (p->stuck ? atomic_load(&release_stuck) : atomic_load(&p->asked) == mine) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  atomic_fetch_add(&p->handled, 1);
  sl_msg_free(m);
}

static void sp_interrupt(void *ctx, uint64_t seq) {
  spinner *p = ctx;
  atomic_store(&p->asked, seq);
  atomic_fetch_add(&p->interrupts, 1);
}

static void sp_stop(void *ctx) { (void)ctx; }

static void wait_entered(spinner *p, int n) {
  for (int k = 0; k < 5000 && atomic_load(&p->entered) < n; k++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

static void test_stop_interrupts_busy_handler(void) {
  memset(spinners, 0, sizeof spinners);
  sl_sched_hooks hooks = {sp_start, sp_handle, sp_stop, NULL, sp_interrupt};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  CHECK_INT(sl_sched_seq(), 0);                 /* not a worker thread */
  CHECK_INT(sl_sched_interrupt(s), 0);          /* nobody busy */
  CHECK_INT(atomic_load(&spinners[0].interrupts), 0);
  sl_inbox_post(sl_sched_inbox(s, 0), num(1));
  sl_inbox_post(sl_sched_inbox(s, 0), num(2));  /* queued behind: dropped */
  wait_entered(&spinners[0], 1);
  int64_t t0 = sl_now_ms();
  CHECK_INT(sl_sched_stop_within(s, 5000), 0);
  CHECK(sl_now_ms() - t0 < 1000);
  CHECK_INT(atomic_load(&spinners[0].entered), 1);
  CHECK_INT(atomic_load(&spinners[0].handled), 1);
  CHECK_INT(atomic_load(&spinners[0].asked), 1); /* the first handler's number */
}

static void test_interrupt_asks_running_handler_once(void) {
  memset(spinners, 0, sizeof spinners);
  sl_sched_hooks hooks = {sp_start, sp_handle, sp_stop, NULL, sp_interrupt};
  sl_sched *s;
  CHECK_INT(sl_sched_start(1, &hooks, &s), 0);
  sl_inbox_post(sl_sched_inbox(s, 0), num(1));
  wait_entered(&spinners[0], 1);
  CHECK_INT(sl_sched_interrupt(s), 1);
  for (int k = 0; k < 5000 && atomic_load(&spinners[0].handled) < 1; k++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  CHECK_INT(atomic_load(&spinners[0].handled), 1);
  CHECK_INT(atomic_load(&spinners[0].interrupts), 1);
  /* the worker goes on with the next message after an interruption */
  sl_inbox_post(sl_sched_inbox(s, 0), num(2));
  wait_entered(&spinners[0], 2);
  CHECK_INT(atomic_load(&spinners[0].entered), 2);
  CHECK_INT(sl_sched_stop_within(s, 5000), 0);
  CHECK_INT(atomic_load(&spinners[0].asked), 3); /* the second handler's number */
}

static void test_stop_gives_up_on_stuck_worker(void) {
  memset(spinners, 0, sizeof spinners);
  atomic_store(&release_stuck, 0);
  spinners[1].stuck = 1;
  sl_sched_hooks hooks = {sp_start, sp_handle, sp_stop, NULL, sp_interrupt};
  sl_sched *s;
  CHECK_INT(sl_sched_start(2, &hooks, &s), 0);
  sl_inbox_post(sl_sched_inbox(s, 1), num(1));
  wait_entered(&spinners[1], 1);
  int64_t t0 = sl_now_ms();
  CHECK_INT(sl_sched_stop_within(s, 200), 1);
  int64_t took = sl_now_ms() - t0;
  CHECK(took >= 199 && took < 2000);
  CHECK_INT(sl_sched_running(s, 0), 0);
  CHECK_INT(sl_sched_running(s, 1), 1);
  CHECK(atomic_load(&spinners[1].interrupts) >= 2);  /* asked again while waiting */
  CHECK_INT(atomic_load(&spinners[1].handled), 0);
  atomic_store(&release_stuck, 1);
  CHECK_INT(sl_sched_stop_within(s, -1), 0);
  CHECK_INT(atomic_load(&spinners[1].handled), 1);
}

int main(void) {
  RUN(test_inbox_fifo);
  RUN(test_main_inbox_drain_is_linear);
  RUN(test_wait_timeout_and_wake);
  RUN(test_lazy_posts_to_main);
  RUN(test_timers_fire_in_due_order);
  RUN(test_many_timers_heap);
  RUN(test_workers_fifo_per_sender);
  RUN(test_worker_timer);
  RUN(test_bad_worker_count);
  RUN(test_stop_interrupts_busy_handler);
  RUN(test_interrupt_asks_running_handler_once);
  RUN(test_stop_gives_up_on_stuck_worker);
  return CHECK_SUMMARY();
}
