/* outbox: events encoded as a Flow stage emits them (outbox.c). */
#ifndef SLUICE_OUTBOX_H
#define SLUICE_OUTBOX_H
#include <stddef.h>
#include <lua.h>
#include "batch.h"

/* Sets sluice._outbox, sluice._put and sluice._snap in the table on top
 * of the stack. */
void sl_outbox_open(lua_State *L);
/* When the value at idx is an outbox: moves its events into *out (the
 * outbox is left empty) and returns 1, or -1 with a message in err when
 * memory runs out. Returns 0 for any other value. */
int sl_outbox_take(lua_State *L, int idx, sl_batch *out, char *err, size_t errlen);
#endif
