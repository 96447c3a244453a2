/* rawbatch: a stage's events given to its handle_events still encoded
 * (see rawbatch.c). */
#ifndef SLUICE_RAWBATCH_H
#define SLUICE_RAWBATCH_H
#include <lua.h>
#include "batch.h"

/* Adds sluice._raw_events, sluice._raw_get and sluice._merge_raw to the
 * sluice table at the stack top. */
void sl_rawbatch_open(lua_State *L);
/* The events of the raw batch at idx; raises an error for another value
 * or a raw batch used after its callback. */
const sl_batch *sl_rawbatch_check(lua_State *L, int idx);
/* Pushes the raw batch of the registry ref rref with b as its events
 * (valid until sl_rawbatch_end). */
void sl_rawbatch_push(lua_State *L, int rref, const sl_batch *b);
/* The raw batch of rref no longer has events: a use after its callback
 * raises an error instead of reading freed bytes. */
void sl_rawbatch_end(lua_State *L, int rref);
#endif
