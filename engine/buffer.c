/* buffer: a producer's event buffer with info markers (see buffer.h).
 *
 * Events are numbered by their absolute position in the stream of stored
 * events: `head` is the position of the oldest event held, `tail` the
 * position the next stored event gets. An info remembers the tail at the
 * time it was pushed and is ready once head has reached it, whether the
 * events ahead were taken or discarded. Both queues are rings whose
 * capacity is a power of two. */
#include <stdlib.h>
#include <string.h>
#include "buffer.h"
#include "status.h"

typedef struct info {
  uint64_t token;
  uint64_t pos;      /* ready once head >= pos */
} info;

struct sl_buffer {
  size_t limit;      /* SL_BUFFER_UNLIMITED or >= 1 */
  int keep;
  size_t count;      /* events held */
  uint64_t head, tail;
  sl_batch *views;   /* ring of non-empty views, each owned by the buffer */
  size_t vcap, vhead, vlen;
  info *infos;       /* ring, in push order (so pos never decreases) */
  size_t icap, ihead, ilen;
};

/* Makes room for one more element in a ring of esz-byte elements,
 * unrolling it so that it starts at index 0 again. */
static int ring_reserve(void **data, size_t *cap, size_t *head, size_t len, size_t esz) {
  if (len < *cap) return 0;
  size_t ncap = *cap ? *cap * 2 : 8;
  char *p = malloc(ncap * esz);
  if (!p) return SL_ENOMEM;
  const char *old = *data;
  size_t first = *cap - *head;   /* elements from head to the end of the old array */
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

static sl_batch *front_view(sl_buffer *b) {
  return &b->views[b->vhead];
}

static void pop_view(sl_buffer *b) {
  b->vhead = (b->vhead + 1) & (b->vcap - 1);
  b->vlen--;
}

int sl_buffer_new(size_t size, int keep, sl_buffer **out) {
  *out = NULL;
  if (size == 0 || (keep != SL_KEEP_FIRST && keep != SL_KEEP_LAST)) return SL_EINVAL;
  sl_buffer *b = calloc(1, sizeof *b);
  if (!b) return SL_ENOMEM;
  b->limit = size;
  b->keep = keep;
  *out = b;
  return 0;
}

void sl_buffer_free(sl_buffer *b) {
  if (!b) return;
  while (b->vlen) {
    sl_batch_release(front_view(b));
    pop_view(b);
  }
  free(b->views);
  free(b->infos);
  free(b);
}

/* Removes the n oldest events (n <= count), releasing emptied views. */
static void drop_front(sl_buffer *b, size_t n) {
  b->count -= n;
  b->head += n;
  while (n) {
    sl_batch *v = front_view(b);
    if (v->count <= n) {
      n -= v->count;
      sl_batch_release(v);
      pop_view(b);
    } else {
      sl_batch_drop(v, (uint32_t)n);
      n = 0;
    }
  }
}

int sl_buffer_push(sl_buffer *b, sl_batch *batch, size_t *discarded) {
  *discarded = 0;
  size_t k = batch->count;
  if (k == 0) {
    sl_batch_release(batch);
    return 0;
  }
  if (b->keep == SL_KEEP_FIRST && b->limit != SL_BUFFER_UNLIMITED) {
    size_t room = b->limit - b->count;
    if (room == 0) {
      sl_batch_release(batch);
      *discarded = k;
      return 0;
    }
    if (k > room) k = room;
  }
  if (ring_reserve((void **)&b->views, &b->vcap, &b->vhead, b->vlen, sizeof *b->views))
    return SL_ENOMEM;
  *discarded = batch->count - k;
  batch->count = (uint32_t)k;   /* SL_KEEP_FIRST: the view forgets its tail */
  b->views[(b->vhead + b->vlen) & (b->vcap - 1)] = *batch;
  b->vlen++;
  *batch = SL_BATCH_EMPTY;
  b->count += k;
  b->tail += k;
  if (b->count > b->limit) {
    *discarded = b->count - b->limit;
    drop_front(b, b->count - b->limit);
  }
  return 0;
}

int sl_buffer_push_info(sl_buffer *b, uint64_t token) {
  if (b->count == 0 && b->ilen == 0) return 1;
  if (ring_reserve((void **)&b->infos, &b->icap, &b->ihead, b->ilen, sizeof *b->infos))
    return SL_ENOMEM;
  b->infos[(b->ihead + b->ilen) & (b->icap - 1)] = (info){token, b->tail};
  b->ilen++;
  return 0;
}

int sl_buffer_pop_info(sl_buffer *b, uint64_t *token) {
  if (b->ilen == 0 || b->infos[b->ihead].pos > b->head) return 0;
  *token = b->infos[b->ihead].token;
  b->ihead = (b->ihead + 1) & (b->icap - 1);
  b->ilen--;
  return 1;
}

/* How many events a take of n may return: no more than are held, and none
 * past the first info that is not ready yet. */
static size_t take_limit(const sl_buffer *b, size_t n) {
  if (n > b->count) n = b->count;
  for (size_t i = 0; i < b->ilen; i++) {
    const info *in = &b->infos[(b->ihead + i) & (b->icap - 1)];
    if (in->pos > b->head) {
      if (in->pos - b->head < n) n = (size_t)(in->pos - b->head);
      break;
    }
  }
  return n;
}

size_t sl_buffer_take(sl_buffer *b, size_t n, sl_batch *out, size_t max_out, size_t *nout) {
  size_t limit = take_limit(b, n), taken = 0, k = 0;
  while (taken < limit && k < max_out) {
    sl_batch *v = front_view(b);
    size_t t = limit - taken;
    if (t >= v->count) {
      t = v->count;
      out[k++] = *v;
      pop_view(b);
    } else {
      out[k++] = sl_batch_slice(v, 0, (uint32_t)t);
      sl_batch_drop(v, (uint32_t)t);
    }
    taken += t;
  }
  b->count -= taken;
  b->head += taken;
  *nout = k;
  return taken;
}

/* Copies the first n events held (n <= count) into one new batch. */
static int gather_front(const sl_buffer *b, size_t n, sl_batch *out) {
  sl_batch_builder bb;
  sl_bb_init(&bb);
  for (size_t i = 0; n > 0; i++) {
    const sl_batch *v = &b->views[(b->vhead + i) & (b->vcap - 1)];
    for (uint32_t j = 0; j < v->count && n > 0; j++, n--) {
      size_t len;
      const char *p = sl_batch_event(v, j, &len);
      if (sl_bb_add(&bb, p, len)) {
        sl_bb_free(&bb);
        return SL_ENOMEM;
      }
    }
  }
  int rc = sl_bb_finish(&bb, out);
  sl_bb_free(&bb);
  return rc;
}

int sl_buffer_take_batch(sl_buffer *b, size_t n, sl_batch *out) {
  *out = SL_BATCH_EMPTY;
  size_t limit = take_limit(b, n), k;
  if (limit == 0) return 0;
  if (limit <= front_view(b)->count) {
    sl_buffer_take(b, limit, out, 1, &k);
    return 0;
  }
  int rc = gather_front(b, limit, out);
  if (rc) return rc;
  drop_front(b, limit);
  return 0;
}

size_t sl_buffer_count(const sl_buffer *b) {
  return b->count;
}

size_t sl_buffer_infos(const sl_buffer *b) {
  return b->ilen;
}
