/* window: the window state machine of a Flow layer stage (SEMANTICS §2.8,
 * API.md §5).
 *
 * One sl_window per layer stage decides which window every incoming event
 * goes to and when windows fire. It is a plain state machine: no Lua, no
 * threads, no clock reads (every time is passed in). The host feeds it,
 * in order:
 *
 *  - sl_window_batch: the events of one batch from upstream producer p
 *    (0-based), with per event its time in ms (fixed, sliding, session)
 *    and, for keyed sessions, a 64-bit key id chosen by the host;
 *  - sl_window_producer_done: producer p has finished;
 *  - sl_window_timer: the timer the machine asked for (sl_window_next_due)
 *    is due;
 *  - sl_window_message / sl_window_fire_open: a {"trigger", name} message
 *    or a custom trigger the host decided (the host keeps the names and
 *    passes a name_id).
 *
 * Each call appends to an sl_win_out an ordered list of actions, which the
 * host applies in order:
 *
 *  - RUN(window, from, n): the batch events idx[from .. from+n-1] (indices
 *    into the batch) are reduced into `window`'s accumulator, in order;
 *  - FIRE(window, trigger, ends): on_trigger for `window`; ends = 1 when
 *    the window is over (its accumulator is dropped; an ended window never
 *    takes another event);
 *  - MERGE(window, other): sessions only (with merge_sessions): session
 *    `other` of the same key merges into `window` (the host merges other's
 *    accumulator into window's and drops other's; `other` never appears
 *    again).
 *
 * and out->late grows by the events it dropped as late (they are in no
 * RUN). A window is {id, key}: key is the session key id, 0 otherwise; id
 * is 0 (global), 1, 2, ... (count, periodic), the window start in ms
 * (fixed, sliding) or the time of the session's first event (session).
 *
 * Kinds:
 *  - GLOBAL: one window, open from the start, fires done when every
 *    producer is done.
 *  - COUNT n: window k takes events (k-1)n+1 .. kn as they enter; its done
 *    fires right after the RUN of its n-th event. At end of input the open
 *    window (possibly empty) fires done.
 *  - PERIODIC p: window k covers now values [t0 + (k-1)p, t0 + kp), t0 =
 *    the now given to sl_window_new. Batches go into the current window;
 *    a timer fires done for every window whose end has passed (empty ones
 *    too, so ids follow the formula) and opens the next.
 *  - FIXED size: the window of an event at t is floor(t / size) * size.
 *    It is SLIDING with every = size, and shares its code and rules.
 *  - SLIDING size, every: an event at t belongs to every window [s, s+size)
 *    with s a multiple of every and s <= t < s + size.
 *  - SESSION gap (optionally keyed): per key, sessions are disjoint ranges
 *    [lo, hi] of event times.
 *
 * Watermark (fixed, sliding, session): per producer `recent` = the largest
 * event time it has sent (late events included). After each batch and
 * each producer_done, the watermark is the minimum of `recent` over the
 * producers that are not done; it is unknown while one of them has sent
 * nothing. A fixed or sliding window [s, s+size) fires when s + size <=
 * watermark (for fixed windows the same as "s is below the watermark's
 * window"); a session when hi + gap < watermark. Without lateness that
 * fire is done (ends); with lateness it is watermark (the window stays
 * open and takes events), and done follows at a timer lateness ms after
 * the now of the call that fired it.
 *
 * Rules chosen where the spec leaves room (simplest ones consistent with
 * Flow):
 *  - Fixed and sliding windows: the open windows are every window start
 *    (a multiple of the step) from the lowest not ended to the highest
 *    seen, gap windows included; a window starts existing when an event
 *    belongs to it or it lies between two that exist. A window below the
 *    lowest open one opens (the range extends down to it) unless a window
 *    at or above it has ended, or the event is older than its producer's
 *    latest window (Flow's rule), so a slower producer's first events are
 *    not late. An event that belongs only to ended (or refused) windows is
 *    late; one that belongs partly to them runs into the others.
 *  - Sessions never overlap within a key: an event inside a session's
 *    [lo, hi] joins it; otherwise it joins the nearest earlier session if
 *    it is within gap of that session's hi (the older one), else the
 *    nearest later one if within gap of its lo, else it opens a session.
 *    With merge_sessions, an event that joins the earlier session and is
 *    also within gap of the later one's lo bridges them: MERGE(earlier,
 *    later) right after the RUNs of the batch's events before it, and the
 *    event runs into the merged session, [earlier lo, later hi], whose id
 *    is the earlier one's (the smaller). trigger_every counts add up (an
 *    "every" fires after the MERGE when they reach n). With lateness the
 *    merged session has fired watermark when both had (its done timer is
 *    the later of the two); otherwise it has not, and fires watermark
 *    again when the watermark passes it. Without merge_sessions they stay
 *    apart and the event joins the earlier one. An event
 *    that opens no session and joins none is late when it is within gap
 *    after the key's highest ended session (t <= ended hi + gap) or when
 *    t + gap < watermark. A session fires watermark at most once.
 *  - Several things due at one timer call are handled in time order; at
 *    equal times trigger_periodically fires before window ends, so a
 *    window that ends at T still gets the periodically fire due at T.
 *    trigger_periodically fires once per timer call however many periods
 *    passed; its next due time is the next t0 + j*p after now.
 *  - now values that go backwards are taken as the largest now seen.
 *  - trigger_every counts the events that RUN into a window; when its n-th
 *    event is also a count window's last, every fires before done.
 *  - Sliding RUNs: consecutive events with the same set of windows form a
 *    group; each group gives one RUN per window, windows ascending (runs
 *    of one window keep event order; windows are independent).
 *  - Fields a kind does not use are ignored (lateness for global, count,
 *    periodic; size for global and count; ...).
 *
 * Limits: event times and now values lie in [SL_WIN_TIME_MIN,
 * SL_WIN_TIME_MAX] (now >= 0), durations in 1..SL_WIN_DURATION_MAX, so
 * window arithmetic never overflows. A batch holds at most 2^32-1 events.
 * Gap windows are implicit (no record), but each one fires: a jump of
 * event time by k windows produces k fires.
 *
 * Memory: global/count/periodic keep no per-window record. Fixed and
 * sliding keep a counter per window with events only when trigger_every
 * is set (a hash by window start, freed when the window ends), and the
 * lowest open window for late detection. Sessions keep a record per open
 * session, and per key ever seen a small record (its sorted open sessions
 * and the highest ended session's hi). Per-event work is O(1) amortised
 * (sessions: O(log sessions of the key)); the watermark is a tournament
 * tree over producers (O(log producers) per batch).
 *
 * SL_ENOMEM leaves the machine in an unspecified state: treat it as fatal
 * for the stage. One owner; not thread-safe. */
#ifndef SLUICE_WINDOW_H
#define SLUICE_WINDOW_H
#include <stddef.h>
#include <stdint.h>

#define SL_WIN_TIME_MAX (INT64_C(1) << 62)
#define SL_WIN_TIME_MIN (-SL_WIN_TIME_MAX)
#define SL_WIN_DURATION_MAX (INT64_C(1) << 61)

typedef struct sl_window sl_window;

typedef enum { SL_WIN_GLOBAL, SL_WIN_COUNT, SL_WIN_FIXED, SL_WIN_PERIODIC,
               SL_WIN_SESSION, SL_WIN_SLIDING } sl_window_kind;

typedef struct sl_window_spec {
  sl_window_kind kind;
  uint64_t count;          /* COUNT: n >= 1 */
  int64_t size_ms;         /* FIXED, SLIDING: window length; PERIODIC: period; SESSION: gap (all >= 1) */
  int64_t every_ms;        /* SLIDING: a window starts every every_ms (1..size_ms) */
  int64_t lateness_ms;     /* FIXED, SESSION, SLIDING: allowed lateness; < 0: none */
  uint64_t trigger_every;  /* 0: none; else fire "every" after each n events of a window */
  int64_t periodically_ms; /* 0: none; else fire "periodically" on every open window each period */
  uint32_t producers;      /* upstream producers of the stage (>= 1) */
  int merge_sessions;      /* SESSION: 1 = sessions of a key that come within gap merge (MERGE actions) */
} sl_window_spec;

typedef enum { SL_TRIG_DONE, SL_TRIG_WATERMARK, SL_TRIG_EVERY, SL_TRIG_PERIODICALLY,
               SL_TRIG_MESSAGE, SL_TRIG_CUSTOM } sl_win_trigger;

typedef enum { SL_WIN_RUN, SL_WIN_FIRE, SL_WIN_MERGE } sl_win_op;

typedef struct sl_win_id {
  int64_t id;
  uint64_t key;            /* session key id; 0 otherwise */
} sl_win_id;

typedef struct sl_win_action {
  uint8_t op;              /* sl_win_op */
  uint8_t trigger;         /* FIRE: sl_win_trigger */
  uint8_t ends;            /* FIRE: 1 = the window is over */
  uint32_t from, n;        /* RUN: idx[from .. from+n-1] */
  sl_win_id win;
  uint64_t name_id;        /* FIRE with SL_TRIG_MESSAGE / SL_TRIG_CUSTOM */
  int64_t other;           /* MERGE: the id of the window (same key) merged into win */
} sl_win_action;

/* What a call answers. Calls append (actions, idx, late); the host resets
 * it between calls whose RUNs it has applied (RUN indices are into the
 * batch of the call that made them). */
typedef struct sl_win_out {
  sl_win_action *acts;
  size_t nacts, capacts;
  uint32_t *idx;
  size_t nidx, capidx;
  uint64_t late;           /* events dropped as late */
  uint32_t bad;            /* sl_window_batch SL_EINVAL: the event whose time is out of range */
  size_t call_acts;        /* internal: actions made before the current batch call */
} sl_win_out;

void sl_win_out_init(sl_win_out *o);
void sl_win_out_reset(sl_win_out *o);   /* empties it, keeps the arrays */
void sl_win_out_free(sl_win_out *o);

/* Checks the spec and creates the machine; now is the start of the first
 * periodic window and of trigger_periodically's periods. SL_EINVAL for a
 * bad field or now, SL_ENOMEM. */
int sl_window_new(const sl_window_spec *spec, int64_t now, sl_window **out);
void sl_window_free(sl_window *w);

/* One batch of n events from producer p. times: one per event (fixed,
 * sliding, session; ignored, may be NULL, otherwise); keys: one per event
 * for keyed sessions, NULL for key 0. SL_EINVAL (nothing changed) for an
 * unknown or finished producer, a machine whose producers are all done,
 * missing times, or a time out of range (out->bad = its index). */
int sl_window_batch(sl_window *w, uint32_t p, uint32_t n, const int64_t *times,
                    const uint64_t *keys, int64_t now, sl_win_out *out);

/* Producer p has finished. When it was the last one every open window
 * fires done (ascending) and the machine is finished: no timers, no open
 * windows. A second call for the same producer does nothing. SL_EINVAL
 * for an unknown producer or a bad now. */
int sl_window_producer_done(sl_window *w, uint32_t p, int64_t now, sl_win_out *out);

/* The absolute time (ms) of the earliest pending timer, or -1. */
int64_t sl_window_next_due(const sl_window *w);

/* Handles everything due at or before now (nothing when nothing is due). */
int sl_window_timer(sl_window *w, int64_t now, sl_win_out *out);

/* FIRE(message, name_id) on every open window, ascending (id, then key). */
int sl_window_message(sl_window *w, uint64_t name_id, sl_win_out *out);

/* FIRE(trigger, name_id) on every open window, ascending; never ends a
 * window (SL_EINVAL for SL_TRIG_DONE or an unknown trigger). */
int sl_window_fire_open(sl_window *w, sl_win_trigger trigger, uint64_t name_id, sl_win_out *out);

/* How far the machine has moved past its windows: 1 and *out = f when
 * every window with id < f it has had has ended (fired done) and it will
 * never have another window with id < f; 0 when it knows no such bound.
 * f never decreases. By kind:
 *  - count, periodic: f = the current window's id (ids end in order);
 *  - fixed, sliding: once some window has ended, f = the lowest window
 *    not ended (no window below it opens again); none before;
 *  - session: once the watermark is known, f = min(watermark - gap, the
 *    smallest id of an open session): no new session opens below
 *    watermark - gap. O(open sessions);
 *  - global: none;
 *  - every kind, once finished: f = INT64_MAX. */
int sl_window_frontier(const sl_window *w, int64_t *out);

/* ---- introspection (tests, stats) ---------------------------------------- */
uint64_t sl_window_open_count(const sl_window *w);   /* open windows, gap windows included */
uint64_t sl_window_late_total(const sl_window *w);   /* late events so far */
int sl_window_finished(const sl_window *w);          /* 1 once every producer is done */
#endif
