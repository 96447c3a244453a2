/* buf: a growable byte buffer (append-only writer). The codec encodes into
 * it and batches take ownership of its bytes. Not thread-safe: one owner. */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sl_buf {
  char *data;   /* owned; NULL while cap == 0 */
  size_t len;
  size_t cap;
  int pooled;   /* a batch's bytes: its block comes from and goes back to
                 * the thread's block cache (blocks.h) */
} sl_buf;

#define SL_BUF_INIT {NULL, 0, 0, 0}

/* Makes room for n more bytes; returns 0 or SL_ENOMEM. */
int sl_buf_reserve(sl_buf *b, size_t n);
int sl_buf_append(sl_buf *b, const void *p, size_t n);
/* Gives the bytes to the caller (who frees them with free, or hands a
 * pooled buffer's block back with sl_block_put) and empties b. */
char *sl_buf_take(sl_buf *b, size_t *len);
void sl_buf_free(sl_buf *b);

static inline int sl_buf_putc(sl_buf *b, uint8_t c) {
  if (b->len == b->cap && sl_buf_reserve(b, 1)) return -1;
  b->data[b->len++] = (char)c;
  return 0;
}
#endif
