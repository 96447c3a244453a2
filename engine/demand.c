/* demand: consumer-side demand accounting (see demand.h). */
#include "demand.h"
#include "status.h"

int sl_demand_init(sl_demand *d, uint64_t max, uint64_t min, int manual) {
  if (max < 1 || min >= max) return SL_EINVAL;
  *d = (sl_demand){0};
  d->max = max;
  d->min = min;
  d->manual = manual != 0;
  return 0;
}

uint64_t sl_demand_initial_ask(sl_demand *d) {
  if (d->manual) return 0;
  d->pending = d->max;
  return d->max;
}

void sl_demand_asked(sl_demand *d, uint64_t n) {
  d->pending = n > UINT64_MAX - d->pending ? UINT64_MAX : d->pending + n;
}

uint64_t sl_demand_begin(sl_demand *d, uint64_t k) {
  d->left = k;
  d->chunk = 0;
  if (d->manual) {
    /* Nobody promised to respect the demand in manual mode: no excess. */
    d->pending -= k < d->pending ? k : d->pending;
    d->owed = 0;
    return 0;
  }
  d->owed = d->pending;
  if (k <= d->pending) return 0;
  d->excess += k - d->pending;
  return k - d->pending;
}

uint64_t sl_demand_next(sl_demand *d) {
  uint64_t n = d->left;
  if (!d->manual && n > d->max - d->min) n = d->max - d->min;
  d->left -= n;
  d->chunk = n;
  return n;
}

/* Only the part of the chunk that was asked for lowers the outstanding
 * demand, so an excess never makes the consumer ask twice for it. */
uint64_t sl_demand_done(sl_demand *d) {
  uint64_t n = d->chunk;
  d->chunk = 0;
  if (d->manual || n == 0) return 0;
  if (n > d->owed) n = d->owed;
  d->owed -= n;
  d->pending -= n;
  if (d->pending > d->min) return 0;
  uint64_t ask = d->max - d->pending;
  d->pending = d->max;
  return ask;
}
