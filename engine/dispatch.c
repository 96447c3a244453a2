/* dispatch: demand, broadcast and partition dispatchers (see dispatch.h).
 *
 * One struct serves the three kinds; the public functions switch on the
 * kind. The demand and broadcast kinds find a consumer by a linear
 * search (their asks are O(consumers) anyway: the demand kind keeps its
 * list sorted, the broadcast kind takes the minimum over all). The
 * partition kind finds a consumer's partition through a hash index
 * (consumer -> partition), so a subscribe, ask or cancel is O(1) however
 * many partitions there are; a dispatch is O(events + partitions).
 * Nothing is allocated per event; the demand and broadcast kinds only
 * slice the input batch, the partition kind gathers each partition's
 * events into one new batch per dispatch (a slice when they are
 * contiguous). */
#include <stdlib.h>
#include <string.h>
#include "dispatch.h"
#include "hash.h"
#include "status.h"

#define NO_INFO UINT32_MAX

/* A consumer with its outstanding demand (demand, broadcast kinds). */
typedef struct dem {
  uint64_t consumer;
  uint64_t counter;
} dem;

/* An element of a partition queue: events, or an info marker when
 * b.store is NULL. The front of a queue is always events. */
typedef struct qent {
  sl_batch b;
  uint32_t info;       /* marker: index into d->slots */
} qent;

typedef struct part {
  int taken;
  uint64_t consumer;
  uint64_t demand;     /* 0 while the queue is not empty */
  uint64_t queued;     /* events in q */
  qent *q;             /* ring, capacity a power of two */
  size_t qcap, qhead, qlen;
} part;

/* An info waiting for `remaining` partitions to drain past its markers. */
typedef struct slot {
  uint64_t token;
  uint32_t remaining;  /* 0: free */
} slot;

struct sl_dispatch {
  sl_dispatch_kind kind;
  sl_emit_fn emit;
  void *ud;
  /* demand, broadcast */
  dem *dems;           /* demand: highest counter first; broadcast: subscription order */
  size_t ndems, capdems;
  dem *scratch;        /* demand: reordering space, as large as dems */
  size_t capscratch;
  uint64_t total;      /* demand: sum of counters */
  uint64_t max;        /* demand: expected maximum ask */
  int shuffle;
  uint64_t rng;
  /* shared accounting */
  uint64_t pending;    /* demand, partition */
  uint64_t waiting;    /* broadcast, partition */
  uint64_t vacant;     /* partition: events queued for vacant partitions without using demand */
  uint64_t vacant_limit;
  uint64_t requested;  /* broadcast */
  uint64_t emit_left;  /* demand: during emit, the consumer's demand after the batch */
  /* partition */
  part *parts;
  uint32_t nparts;
  uint32_t *counts;    /* nparts + 1 */
  uint32_t *idx;       /* grouping space for one dispatch */
  size_t capidx;
  uint64_t *pkeys;     /* consumer index: open addressing, linear probing; */
  uint32_t *pvals;     /* pkeys[i] == 0 is a free slot, else pvals[i] is its partition */
  uint32_t pmask;      /* capacity - 1, capacity a power of two >= 2 * nparts */
  slot *slots;         /* infos held by markers; free when remaining is 0 */
  size_t nslots, capslots;
  /* infos ready for sl_dispatch_pop_info (ring) */
  uint64_t *ready;
  size_t rcap, rhead, rlen;
};

static uint64_t sat_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t min64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}

/* Grows *p (an array of *cap elements of esz bytes) to hold need. */
static int grow(void **p, size_t *cap, size_t need, size_t esz) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 4;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * esz);
  if (!q) return SL_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

/* Makes room for one more element at the back of a ring, unrolling it so
 * that it starts at index 0. */
static int ring_reserve(void **data, size_t *cap, size_t *head, size_t len, size_t esz) {
  if (len < *cap) return 0;
  size_t ncap = *cap ? *cap * 2 : 4;
  char *p = malloc(ncap * esz);
  if (!p) return SL_ENOMEM;
  const char *old = *data;
  size_t first = *cap - *head;
  if (first > len) first = len;
  if (len) {
    memcpy(p, old + *head * esz, first * esz);
    memcpy(p + first * esz, old, (len - first) * esz);
  }
  free(*data);
  *data = p;
  *cap = ncap;
  *head = 0;
  return 0;
}

static int push_ready(sl_dispatch *d, uint64_t token) {
  if (ring_reserve((void **)&d->ready, &d->rcap, &d->rhead, d->rlen, sizeof *d->ready))
    return SL_ENOMEM;
  d->ready[(d->rhead + d->rlen) & (d->rcap - 1)] = token;
  d->rlen++;
  return 0;
}

static long find_dem(const sl_dispatch *d, uint64_t consumer) {
  for (size_t i = 0; i < d->ndems; i++)
    if (d->dems[i].consumer == consumer) return (long)i;
  return -1;
}

static void remove_dem(sl_dispatch *d, size_t i) {
  memmove(&d->dems[i], &d->dems[i + 1], (d->ndems - i - 1) * sizeof *d->dems);
  d->ndems--;
}

/* Appends a consumer with counter 0 (the demand kind keeps `scratch` as
 * large as the list, so that a dispatch never allocates). */
static int add_dem(sl_dispatch *d, uint64_t consumer) {
  if (d->kind == SL_DISPATCH_DEMAND &&
      grow((void **)&d->scratch, &d->capscratch, d->ndems + 1, sizeof *d->scratch))
    return SL_ENOMEM;
  if (grow((void **)&d->dems, &d->capdems, d->ndems + 1, sizeof *d->dems)) return SL_ENOMEM;
  d->dems[d->ndems++] = (dem){consumer, 0};
  return 0;
}

/* ---- demand ------------------------------------------------------------- */

/* Inserts e into the sorted list, after every entry with a counter >= its
 * own, as GenStage's add_demand does (so ties keep FIFO order). */
static void demand_insert(sl_dispatch *d, dem e) {
  size_t j = 0;
  while (j < d->ndems && d->dems[j].counter >= e.counter) j++;
  memmove(&d->dems[j + 1], &d->dems[j], (d->ndems - j) * sizeof *d->dems);
  d->dems[j] = e;
  d->ndems++;
}

/* Adds n to consumer i's demand and moves it to its sorted place; the
 * upstream demand is n less what cancelled consumers left pending. */
static int demand_ask(sl_dispatch *d, long i, uint64_t n, uint64_t *upstream) {
  int rc = 0;
  if (d->max == 0) d->max = n;
  else if (n > d->max) rc = SL_DISPATCH_OVER_MAX;
  dem e = d->dems[i];
  remove_dem(d, (size_t)i);
  e.counter = sat_add(e.counter, n);
  demand_insert(d, e);
  d->total = sat_add(d->total, n);
  uint64_t sent = min64(d->pending, n);
  d->pending -= sent;
  *upstream = n - sent;
  return rc;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Shuffles the consumers, then restores the highest-first order with a
 * stable sort: only consumers with equal demand trade places. */
static void demand_shuffle(sl_dispatch *d) {
  dem *a = d->dems;
  for (size_t i = d->ndems; i > 1; i--) {
    size_t j = (size_t)(splitmix(&d->rng) % i);
    dem t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
  for (size_t i = 1; i < d->ndems; i++) {
    dem t = a[i];
    size_t j = i;
    while (j > 0 && a[j - 1].counter < t.counter) {
      a[j] = a[j - 1];
      j--;
    }
    a[j] = t;
  }
}

/* Walks the consumers from the highest demand, each taking up to its
 * demand, until the batch or the demand runs out. Consumers served in
 * full go to the back (their counter is 0), a consumer served in part
 * goes back to its sorted place: the order GenStage's re-insertions give. */
static void demand_dispatch(sl_dispatch *d, sl_batch *batch, sl_batch *leftovers) {
  if (d->shuffle && batch->count > 0) {
    demand_shuffle(d);
    d->shuffle = 0;
  }
  uint32_t from = 0, left = batch->count;
  size_t x = 0;            /* consumers served in full */
  int partial = 0;
  while (left > 0 && x < d->ndems && d->dems[x].counter > 0) {
    dem *e = &d->dems[x];
    uint32_t t = e->counter < left ? (uint32_t)e->counter : left;
    d->emit_left = e->counter - t;
    if (from == 0 && t == batch->count) {
      d->emit(d->ud, e->consumer, *batch);   /* the whole batch: hand the view over */
      *batch = SL_BATCH_EMPTY;
    } else {
      d->emit(d->ud, e->consumer, sl_batch_slice(batch, from, t));
    }
    from += t;
    left -= t;
    e->counter -= t;
    d->total -= t;
    if (e->counter > 0) {
      partial = 1;
      break;
    }
    x++;
  }
  d->emit_left = 0;
  if (x > 0 || partial) {
    size_t n = d->ndems;
    memcpy(d->scratch, d->dems, x * sizeof *d->dems);
    dem p = partial ? d->dems[x] : (dem){0, 0};
    size_t rest = x + (size_t)partial;
    memmove(d->dems, d->dems + rest, (n - rest) * sizeof *d->dems);
    d->ndems = n - rest;
    if (partial) demand_insert(d, p);
    memcpy(d->dems + d->ndems, d->scratch, x * sizeof *d->dems);
    d->ndems += x;
  }
  if (left == 0) {
    *leftovers = SL_BATCH_EMPTY;
  } else if (from == 0) {
    *leftovers = *batch;                      /* nothing went out */
    *batch = SL_BATCH_EMPTY;
  } else {
    *leftovers = sl_batch_slice(batch, from, left);
  }
  sl_batch_release(batch);
  d->pending -= min64(d->pending, left);
}

/* ---- broadcast ---------------------------------------------------------- */

/* Moves the slowest consumer's demand into `waiting` and returns the part
 * of it not requested upstream yet. `requested` is demand asked upstream
 * that the producer has not met yet: the stage reports what meets it
 * (sl_dispatch_produced: new events, and buffered ones taken against it),
 * whether or not they can be delivered now. */
static uint64_t broadcast_sync(sl_dispatch *d) {
  uint64_t m = UINT64_MAX;
  for (size_t i = 0; i < d->ndems; i++) m = min64(m, d->dems[i].counter);
  if (d->ndems == 0) m = 0;
  if (m > 0) {
    for (size_t i = 0; i < d->ndems; i++) d->dems[i].counter -= m;
    d->waiting = sat_add(d->waiting, m);
  }
  uint64_t up = d->waiting > d->requested ? d->waiting - d->requested : 0;
  d->requested += up;
  return up;
}

/* A new consumer has asked nothing yet: the others keep `waiting` as
 * their own demand and nothing is dispatched until it asks too. */
static int broadcast_subscribe(sl_dispatch *d, uint64_t consumer) {
  if (add_dem(d, consumer)) return SL_ENOMEM;
  for (size_t i = 0; i + 1 < d->ndems; i++)
    d->dems[i].counter = sat_add(d->dems[i].counter, d->waiting);
  d->waiting = 0;
  return 0;
}

/* Sends every consumer a view of the first `waiting` events (the last
 * consumer gets the caller's view itself when it takes all of it); the
 * rest is left over. */
static void broadcast_dispatch(sl_dispatch *d, sl_batch *batch, sl_batch *leftovers) {
  uint32_t k = (uint32_t)min64(batch->count, d->ndems ? d->waiting : 0);
  for (size_t i = 0; k > 0 && i < d->ndems; i++) {
    if (i + 1 == d->ndems && k == batch->count) {
      d->emit(d->ud, d->dems[i].consumer, *batch);
      *batch = SL_BATCH_EMPTY;
    } else {
      d->emit(d->ud, d->dems[i].consumer, sl_batch_slice(batch, 0, k));
    }
  }
  d->waiting -= k;
  if (k == 0) {
    *leftovers = *batch;
    *batch = SL_BATCH_EMPTY;
    return;
  }
  *leftovers = k < batch->count ? sl_batch_slice(batch, k, batch->count - k) : SL_BATCH_EMPTY;
  sl_batch_release(batch);
}

/* ---- partition ---------------------------------------------------------- */

/* ---- consumer index (partition kind) -------------------------------------
 * Consumer ids are nonzero (0 marks a free slot). Each taken partition has
 * exactly one entry; a cancel removes it by backward-shift deletion, so
 * there are no tombstones and a lookup stops at the first free slot. */

static uint32_t pslot(const sl_dispatch *d, uint64_t consumer) {
  uint64_t h = consumer * 0x9E3779B97F4A7C15u;
  return (uint32_t)(h >> 32) & d->pmask;
}

static long find_part(const sl_dispatch *d, uint64_t consumer) {
  if (consumer == 0) {   /* not indexable: only a linear search finds it */
    for (uint32_t i = 0; i < d->nparts; i++)
      if (d->parts[i].taken && d->parts[i].consumer == 0) return (long)i;
    return -1;
  }
  for (uint32_t i = pslot(d, consumer);; i = (i + 1) & d->pmask) {
    if (d->pkeys[i] == consumer) return (long)d->pvals[i];
    if (d->pkeys[i] == 0) return -1;
  }
}

static void index_put(sl_dispatch *d, uint64_t consumer, uint32_t p) {
  if (consumer == 0) return;
  uint32_t i = pslot(d, consumer);
  while (d->pkeys[i] != 0) i = (i + 1) & d->pmask;
  d->pkeys[i] = consumer;
  d->pvals[i] = p;
}

static void index_del(sl_dispatch *d, uint64_t consumer) {
  if (consumer == 0) return;
  uint32_t i = pslot(d, consumer);
  while (d->pkeys[i] != consumer) {
    if (d->pkeys[i] == 0) return;
    i = (i + 1) & d->pmask;
  }
  /* Move later entries of the run back into the hole when their home
   * slot does not lie cyclically in (hole, j]. */
  uint32_t hole = i;
  for (uint32_t j = (i + 1) & d->pmask; d->pkeys[j] != 0; j = (j + 1) & d->pmask) {
    uint32_t home = pslot(d, d->pkeys[j]);
    int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    d->pkeys[hole] = d->pkeys[j];
    d->pvals[hole] = d->pvals[j];
    hole = j;
  }
  d->pkeys[hole] = 0;
}

/* Appends events (the queue takes the view b) or, with an empty b, the
 * marker of info `info`. */
static int enqueue(part *p, sl_batch b, uint32_t info) {
  if (ring_reserve((void **)&p->q, &p->qcap, &p->qhead, p->qlen, sizeof *p->q))
    return SL_ENOMEM;
  p->q[(p->qhead + p->qlen) & (p->qcap - 1)] = (qent){b, info};
  p->qlen++;
  p->queued += b.count;
  return 0;
}

/* One partition has drained past the info's marker. */
static int marker_passed(sl_dispatch *d, uint32_t info) {
  slot *s = &d->slots[info];
  if (--s->remaining > 0) return 0;
  return push_ready(d, s->token);
}

/* Pops the info markers at the front of the queue, keeping its front on
 * events. */
static int pop_markers(sl_dispatch *d, part *p) {
  int rc = 0;
  while (p->qlen && p->q[p->qhead].b.store == NULL) {
    if (marker_passed(d, p->q[p->qhead].info)) rc = SL_ENOMEM;
    p->qhead = (p->qhead + 1) & (p->qcap - 1);
    p->qlen--;
  }
  return rc;
}

/* Emits up to n queued events of the partition to its consumer and
 * returns the part of n left over. */
static uint64_t release_queue(sl_dispatch *d, part *p, uint64_t n, int *rc) {
  while (n > 0 && p->qlen) {
    sl_batch *b = &p->q[p->qhead].b;
    uint32_t t = (uint32_t)min64(b->count, n);
    if (t == b->count) {
      sl_batch out = *b;
      p->qhead = (p->qhead + 1) & (p->qcap - 1);
      p->qlen--;
      d->emit(d->ud, p->consumer, out);
    } else {
      d->emit(d->ud, p->consumer, sl_batch_slice(b, 0, t));
      sl_batch_drop(b, t);
    }
    p->queued -= t;
    n -= t;
    if (pop_markers(d, p)) *rc = SL_ENOMEM;
  }
  return n;
}

/* Serves the partition's queue first; what is left of n becomes demand
 * once the queue is empty. As in GenStage the whole ask (less pending)
 * goes upstream and into `waiting` even when the queue served part of it:
 * `waiting` is shared by all partitions. */
static int partition_ask(sl_dispatch *d, long i, uint64_t n, uint64_t *upstream) {
  part *p = &d->parts[i];
  int rc = 0;
  uint64_t left = p->qlen ? release_queue(d, p, n, &rc) : n;
  if (p->qlen == 0) p->demand = sat_add(p->demand, left);
  uint64_t sent = min64(d->pending, n);
  d->pending -= sent;
  *upstream = n - sent;
  d->waiting = sat_add(d->waiting, *upstream);
  return rc;
}

/* Frees the partition: open demand becomes pending; queued events stay
 * queued for the partition's next consumer, and as events of a vacant
 * partition they no longer count against the demand: their count comes
 * back as upstream demand (GenStage discards them and does the same). */
static void partition_cancel(sl_dispatch *d, long i, uint64_t *upstream) {
  part *p = &d->parts[i];
  *upstream = 0;
  if (p->qlen) {
    *upstream = p->queued;
    d->waiting = sat_add(d->waiting, *upstream);
  } else {
    d->pending = sat_add(d->pending, p->demand);
  }
  index_del(d, p->consumer);
  p->taken = 0;
  p->consumer = 0;
  p->demand = 0;
}

/* The events ids[0..n-1] of b (n >= 1) as one new view owned by the
 * caller: a slice when they are contiguous, a gathered copy otherwise. */
static int group(const sl_batch *b, const uint32_t *ids, uint32_t n, sl_batch *out) {
  if (ids[n - 1] - ids[0] == n - 1) {
    *out = sl_batch_slice(b, ids[0], n);
    return 0;
  }
  return sl_batch_gather(b, ids, n, out);
}

/* Sends the events ids[0..n-1] of b that belong to partition p: to its
 * consumer while it has demand and nothing is queued ahead (the view goes
 * to emit), the rest to its queue (the view stays there). b is only read. */
static int partition_feed(sl_dispatch *d, part *p, const sl_batch *b, const uint32_t *ids, uint32_t n) {
  sl_batch g;
  if (p->qlen == 0 && p->demand > 0) {
    uint32_t t = (uint32_t)min64(p->demand, n);
    if (group(b, ids, t, &g)) return SL_ENOMEM;
    d->emit(d->ud, p->consumer, g);
    p->demand -= t;
    ids += t;
    n -= t;
  }
  if (n == 0) return 0;
  if (group(b, ids, n, &g)) return SL_ENOMEM;
  if (enqueue(p, g, NO_INFO)) {
    sl_batch_release(&g);
    return SL_ENOMEM;
  }
  return 0;
}

/* Validates every partition number first, so that an error changes
 * nothing; then takes up to `waiting` non-dropped events, groups them by
 * partition and feeds each partition in turn (partition order). */
static int partition_dispatch(sl_dispatch *d, sl_batch *batch, const int32_t *parts,
                              sl_batch *leftovers, uint32_t *bad) {
  uint32_t n = batch->count;
  for (uint32_t i = 0; i < n; i++) {
    if (parts[i] < -1 || parts[i] >= (int32_t)d->nparts) {
      if (bad) *bad = i;
      return SL_ENOENT;
    }
  }
  /* The cut: the input up to the first non-dropped event beyond waiting. */
  uint32_t cut = 0;
  uint64_t take = 0;
  uint32_t *c = d->counts;
  memset(c, 0, (d->nparts + 1) * sizeof *c);
  for (; cut < n; cut++) {
    if (parts[cut] < 0) continue;
    const part *q = &d->parts[parts[cut]];
    if (!q->taken && q->queued + c[parts[cut]] < d->vacant_limit) {   /* for a vacant partition: no demand used */
      c[parts[cut]]++;
      d->vacant++;
      continue;
    }
    if (take == d->waiting) break;
    take++;
  }
  uint32_t grouped = 0;
  for (uint32_t i = 0; i < cut; i++) grouped += parts[i] >= 0;
  if (grow((void **)&d->idx, &d->capidx, grouped, sizeof *d->idx)) return SL_ENOMEM;
  d->waiting -= take;
  /* Group the taken events by partition, keeping their order (counting sort). */
  memset(c, 0, (d->nparts + 1) * sizeof *c);
  for (uint32_t i = 0; i < cut; i++)
    if (parts[i] >= 0) c[parts[i] + 1]++;
  for (uint32_t p = 0; p < d->nparts; p++) c[p + 1] += c[p];
  for (uint32_t i = 0; i < cut; i++)
    if (parts[i] >= 0) d->idx[c[parts[i]]++] = i;
  /* Now c[p] is the end of partition p's run, and c[p-1] its start. */
  int rc = 0;
  for (uint32_t p = 0; p < d->nparts; p++) {
    uint32_t start = p ? c[p - 1] : 0, len = c[p] - start;
    if (len && partition_feed(d, &d->parts[p], batch, d->idx + start, len)) rc = SL_ENOMEM;
  }
  if (cut == 0) {
    *leftovers = *batch;                      /* nothing was taken */
    *batch = SL_BATCH_EMPTY;
  } else {
    *leftovers = cut < n ? sl_batch_slice(batch, cut, n - cut) : SL_BATCH_EMPTY;
    sl_batch_release(batch);
  }
  return rc;
}

/* Queues the info behind every backed-up partition; 1 when there is none. */
static int partition_info(sl_dispatch *d, uint64_t token) {
  uint32_t backed = 0;
  for (uint32_t p = 0; p < d->nparts; p++)
    if (d->parts[p].qlen) backed++;
  if (backed == 0) return 1;
  size_t s = 0;
  while (s < d->nslots && d->slots[s].remaining) s++;
  if (s == d->nslots) {
    if (s >= NO_INFO || grow((void **)&d->slots, &d->capslots, s + 1, sizeof *d->slots))
      return SL_ENOMEM;
    d->slots[d->nslots++] = (slot){0, 0};
  }
  /* Reserve every queue first so that a failure leaves no stray marker. */
  for (uint32_t p = 0; p < d->nparts; p++) {
    part *q = &d->parts[p];
    if (q->qlen && ring_reserve((void **)&q->q, &q->qcap, &q->qhead, q->qlen, sizeof *q->q))
      return SL_ENOMEM;
  }
  d->slots[s] = (slot){token, backed};
  for (uint32_t p = 0; p < d->nparts; p++)
    if (d->parts[p].qlen) enqueue(&d->parts[p], SL_BATCH_EMPTY, (uint32_t)s);
  return 0;
}

/* ---- the interface ------------------------------------------------------ */

int sl_dispatch_new(sl_dispatch_kind kind, const sl_dispatch_opts *opts, sl_dispatch **out) {
  *out = NULL;
  if (!opts || !opts->emit) return SL_EINVAL;
  if (kind != SL_DISPATCH_DEMAND && kind != SL_DISPATCH_BROADCAST && kind != SL_DISPATCH_PARTITION)
    return SL_EINVAL;
  if (kind == SL_DISPATCH_PARTITION && (opts->partitions < 1 || opts->partitions > INT32_MAX))
    return SL_EINVAL;
  sl_dispatch *d = calloc(1, sizeof *d);
  if (!d) return SL_ENOMEM;
  d->kind = kind;
  d->emit = opts->emit;
  d->ud = opts->ud;
  d->max = opts->max_demand;
  d->shuffle = kind == SL_DISPATCH_DEMAND && opts->shuffle_demands_on_first_dispatch;
  d->vacant_limit = opts->vacant_limit ? opts->vacant_limit : SL_DISPATCH_VACANT_LIMIT;
  d->rng = opts->seed;
  if (kind == SL_DISPATCH_PARTITION) {
    d->nparts = opts->partitions;
    d->parts = calloc(d->nparts, sizeof *d->parts);
    d->counts = calloc((size_t)d->nparts + 1, sizeof *d->counts);
    size_t cap = 2;
    while (cap < 2 * (size_t)d->nparts) cap *= 2;
    if (cap - 1 > UINT32_MAX) goto err;
    d->pmask = (uint32_t)(cap - 1);
    d->pkeys = calloc(cap, sizeof *d->pkeys);
    d->pvals = calloc(cap, sizeof *d->pvals);
    if (!d->parts || !d->counts || !d->pkeys || !d->pvals) goto err;
  }
  *out = d;
  return 0;
err:
  sl_dispatch_free(d);
  return SL_ENOMEM;
}

void sl_dispatch_free(sl_dispatch *d) {
  if (!d) return;
  for (uint32_t p = 0; d->parts && p < d->nparts; p++) {
    part *q = &d->parts[p];
    for (size_t i = 0; i < q->qlen; i++) sl_batch_release(&q->q[(q->qhead + i) & (q->qcap - 1)].b);
    free(q->q);
  }
  free(d->parts);
  free(d->counts);
  free(d->pkeys);
  free(d->pvals);
  free(d->idx);
  free(d->slots);
  free(d->dems);
  free(d->scratch);
  free(d->ready);
  free(d);
}

sl_dispatch_kind sl_dispatch_kind_of(const sl_dispatch *d) {
  return d->kind;
}

int sl_dispatch_subscribe(sl_dispatch *d, uint64_t consumer, int32_t partition) {
  if (d->kind == SL_DISPATCH_PARTITION) {
    if (partition < 0 || (uint32_t)partition >= d->nparts) return SL_ENOENT;
    part *p = &d->parts[partition];
    if (p->taken || find_part(d, consumer) >= 0) return SL_EEXIST;
    p->taken = 1;
    p->consumer = consumer;
    index_put(d, consumer, (uint32_t)partition);
    return 0;
  }
  if (find_dem(d, consumer) >= 0) return SL_EEXIST;
  if (d->kind == SL_DISPATCH_BROADCAST) return broadcast_subscribe(d, consumer);
  return add_dem(d, consumer);
}

int sl_dispatch_cancel(sl_dispatch *d, uint64_t consumer, uint64_t *upstream) {
  *upstream = 0;
  if (d->kind == SL_DISPATCH_PARTITION) {
    long i = find_part(d, consumer);
    if (i < 0) return SL_ENOENT;
    partition_cancel(d, i, upstream);
    return 0;
  }
  long i = find_dem(d, consumer);
  if (i < 0) return SL_ENOENT;
  uint64_t left = d->dems[i].counter;
  remove_dem(d, (size_t)i);
  if (d->kind == SL_DISPATCH_DEMAND) {
    d->total -= left;
    d->pending = sat_add(d->pending, left);
    return 0;
  }
  if (d->ndems == 0) d->waiting = 0;   /* nobody left to send it to */
  *upstream = broadcast_sync(d);
  return 0;
}

int sl_dispatch_ask(sl_dispatch *d, uint64_t consumer, uint64_t n, uint64_t *upstream) {
  *upstream = 0;
  long i = d->kind == SL_DISPATCH_PARTITION ? find_part(d, consumer) : find_dem(d, consumer);
  if (i < 0) return SL_ENOENT;
  switch (d->kind) {
  case SL_DISPATCH_DEMAND:
    return demand_ask(d, i, n, upstream);
  case SL_DISPATCH_BROADCAST:
    d->dems[i].counter = sat_add(d->dems[i].counter, n);
    *upstream = broadcast_sync(d);
    return 0;
  default:
    return partition_ask(d, i, n, upstream);
  }
}

void sl_dispatch_produced(sl_dispatch *d, uint64_t n) {
  if (d->kind == SL_DISPATCH_BROADCAST) d->requested -= min64(d->requested, n);
}

int sl_dispatch_dispatch(sl_dispatch *d, sl_batch *batch, const int32_t *parts,
                         sl_batch *leftovers, uint32_t *bad) {
  *leftovers = SL_BATCH_EMPTY;
  if (batch->count == 0) {
    sl_batch_release(batch);
    return 0;
  }
  switch (d->kind) {
  case SL_DISPATCH_DEMAND:
    demand_dispatch(d, batch, leftovers);
    return 0;
  case SL_DISPATCH_BROADCAST:
    broadcast_dispatch(d, batch, leftovers);
    return 0;
  default:
    if (!parts) return SL_EINVAL;
    return partition_dispatch(d, batch, parts, leftovers, bad);
  }
}

uint64_t sl_dispatch_emit_left(const sl_dispatch *d) { return d->emit_left; }

uint64_t sl_dispatch_take_vacant(sl_dispatch *d) {
  uint64_t v = d->vacant;
  d->vacant = 0;
  return v;
}

uint64_t sl_dispatch_accepts(const sl_dispatch *d) {
  switch (d->kind) {
  case SL_DISPATCH_DEMAND: return d->total;
  case SL_DISPATCH_BROADCAST: return d->ndems ? d->waiting : 0;
  default: return d->waiting;
  }
}

int sl_dispatch_info(sl_dispatch *d, uint64_t token) {
  if (d->kind != SL_DISPATCH_PARTITION) return 1;
  return partition_info(d, token);
}

int sl_dispatch_pop_info(sl_dispatch *d, uint64_t *token) {
  if (d->rlen == 0) return 0;
  *token = d->ready[d->rhead];
  d->rhead = (d->rhead + 1) & (d->rcap - 1);
  d->rlen--;
  return 1;
}

void sl_dispatch_hash_partitions(const sl_batch *b, uint32_t n, int32_t *parts) {
  for (uint32_t i = 0; i < b->count; i++) {
    size_t len;
    const char *p = sl_batch_event(b, i, &len);
    parts[i] = (int32_t)sl_hash_partition(sl_hash_bytes(p, len), n);
  }
}

void sl_dispatch_get_state(const sl_dispatch *d, sl_dispatch_state *st) {
  *st = (sl_dispatch_state){0};
  st->pending = d->pending;
  st->requested = d->requested;
  st->max_demand = d->max;
  if (d->kind == SL_DISPATCH_PARTITION) {
    for (uint32_t p = 0; p < d->nparts; p++) {
      st->consumers += d->parts[p].taken != 0;
      st->queued += d->parts[p].queued;
    }
    st->waiting = d->waiting;
  } else {
    st->consumers = d->ndems;
    st->waiting = d->kind == SL_DISPATCH_DEMAND ? d->total : d->waiting;
  }
}

int sl_dispatch_entry_at(const sl_dispatch *d, size_t i, sl_dispatch_entry *e) {
  *e = (sl_dispatch_entry){0};
  if (d->kind == SL_DISPATCH_PARTITION) {
    if (i >= d->nparts) return SL_ENOENT;
    const part *p = &d->parts[i];
    *e = (sl_dispatch_entry){p->taken, p->consumer, p->demand, p->queued};
    return 0;
  }
  if (i >= d->ndems) return SL_ENOENT;
  *e = (sl_dispatch_entry){1, d->dems[i].consumer, d->dems[i].counter, 0};
  return 0;
}
