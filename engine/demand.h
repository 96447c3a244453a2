/* demand: consumer-side demand accounting for one subscription
 * (GenStage's automatic demand, SEMANTICS §1.4).
 *
 * The consumer asks max_demand when it subscribes. Every incoming message
 * is handed to handle_events in chunks of at most max - min events,
 * counted from the start of the message (the chunks do not line up with
 * the min boundary, as in GenStage's code, not its moduledoc). After each
 * chunk, when the outstanding demand has fallen to min or below, the
 * consumer asks for max - outstanding and counts max as outstanding again.
 * In manual mode nothing is asked automatically and a message is one chunk.
 *
 * Use, per incoming message of k events:
 *
 *     uint64_t excess = sl_demand_begin(&d, k);    // log once if > 0
 *     uint64_t n, from = 0;
 *     while ((n = sl_demand_next(&d)) > 0) {
 *       handle_events(events from .. from+n-1);
 *       uint64_t ask = sl_demand_done(&d);          // ask upstream if > 0
 *       from += n;
 *     }
 *
 * Plain data owned by the subscription: no allocation, no locking. */
#ifndef SLUICE_DEMAND_H
#define SLUICE_DEMAND_H
#include <stdint.h>

typedef struct sl_demand {
  /* read-only after sl_demand_init */
  uint64_t max, min;
  int manual;
  /* read-only */
  uint64_t pending;   /* demand asked upstream and not yet received */
  uint64_t excess;    /* events received beyond the demand, in total */
  /* private: the message being handed out */
  uint64_t left;      /* events of the message not handed out yet */
  uint64_t owed;      /* demand the message may still count against */
  uint64_t chunk;     /* size of the chunk handed out, 0 when none */
} sl_demand;

/* Sets up a subscription's demand: max >= 1 and min < max (SL_EINVAL
 * otherwise); pass min = max / 2 for GenStage's default. */
int sl_demand_init(sl_demand *d, uint64_t max, uint64_t min, int manual);

/* The demand to ask when the subscription starts: max, or 0 in manual
 * mode. Counts it as outstanding. Call once. */
uint64_t sl_demand_initial_ask(sl_demand *d);

/* Records a manual ask of n events (manual mode: from:ask(n)); keeps
 * `pending` meaningful for stats. Automatic mode needs no call. */
void sl_demand_asked(sl_demand *d, uint64_t n);

/* Starts handing out a message of k events and returns how many of them
 * exceed the outstanding demand (0 normally; GenStage logs "has received
 * N events in excess"). Excess events are still handed out but do not
 * count against the demand. Manual mode never reports excess. */
uint64_t sl_demand_begin(sl_demand *d, uint64_t k);

/* The size of the next chunk of the current message for handle_events,
 * or 0 when the message is done. Call sl_demand_done after each chunk. */
uint64_t sl_demand_next(sl_demand *d);

/* Closes the chunk returned by the last sl_demand_next (after its
 * handle_events ran) and returns the demand to ask upstream now (0:
 * nothing to ask). */
uint64_t sl_demand_done(sl_demand *d);
#endif
