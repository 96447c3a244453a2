/* buf: growable byte buffer. */
#include <stdlib.h>
#include "blocks.h"
#include "buf.h"
#include "status.h"

/* The first block of a pooled buffer: room for a batch of small events
 * without growing. */
#define POOLED_FIRST 4096

int sl_buf_reserve(sl_buf *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  if (!b->data && b->pooled) {
    size_t cap;
    char *p = sl_block_get(n > POOLED_FIRST ? n : POOLED_FIRST, &cap);
    if (!p) return SL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
  }
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < n) {
    if (cap > SIZE_MAX / 2) return SL_ENOMEM;
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (!p) return SL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int sl_buf_append(sl_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (sl_buf_reserve(b, n)) return SL_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

char *sl_buf_take(sl_buf *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

void sl_buf_free(sl_buf *b) {
  if (b->pooled) sl_block_put(b->data, b->cap);
  else free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

const char *sl_strerror(int code) {
  switch (code) {
  case SL_OK: return "ok";
  case SL_ENOMEM: return "out of memory";
  case SL_EINVAL: return "invalid argument";
  case SL_ECORRUPT: return "malformed encoded data";
  case SL_ENOENT: return "no such object";
  case SL_ETIMEDOUT: return "timed out";
  case SL_EINTR: return "interrupted";
  case SL_EEXIST: return "already exists";
  case SL_ECLOSED: return "closed";
  default: return "unknown error";
  }
}
