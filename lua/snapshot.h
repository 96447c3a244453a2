/* snapshot: the main state's globals as the workers see them (snapshot.c). */
#ifndef SLUICE_SNAPSHOT_H
#define SLUICE_SNAPSHOT_H
#include <lua.h>
#include "sched.h"

typedef struct sl_snapshot sl_snapshot;

/* Main state, at open: records the global names of a fresh state (the
 * ones a snapshot leaves out). */
void sl_snap_record_baseline(lua_State *L);
/* sluice._pin_globals(on), and dropping the pinned snapshot at close. */
int sl_snap_pin(lua_State *L);
void sl_snap_unpin(void);
/* Drops a reference (NULL is fine). */
void sl_snap_release(sl_snapshot *s);

/* Worker state: an empty decoded-globals cache (at start); installs the
 * snapshot m carries into *cur when it is newer; pushes the global whose
 * name is at index name from s (decoded once, cached) and returns 1, or
 * returns 0 when s has no such global. */
void sl_snap_init_cache(lua_State *L);
void sl_snap_install(lua_State *L, sl_snapshot **cur, sl_msg *m);
int sl_snap_lookup(lua_State *L, sl_snapshot *s, int name);
#endif
