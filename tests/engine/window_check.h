/* Shared by the window state machine's tests (test_window.c,
 * test_window_model.c): appending formatted text to a rendering. */
#ifndef SLUICE_WINDOW_CHECK_H
#define SLUICE_WINDOW_CHECK_H
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "window.h"

static inline void cat(char *s, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void cat(char *s, size_t cap, const char *fmt, ...) {
  size_t o = strlen(s);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s + o, cap - o, fmt, ap);
  va_end(ap);
}

static inline void cat_win(char *s, size_t cap, sl_win_id id) {
  cat(s, cap, "%" PRId64, id.id);
  if (id.key) cat(s, cap, "/%" PRIu64, id.key);
}
#endif
