/* strfast: string.gmatch and string.lower with fast paths (strfast.c). */
#ifndef SL_STRFAST_H
#define SL_STRFAST_H
#include <lua.h>

/* Replaces string.gmatch and string.lower in L's string table (the one
 * its strings' methods come from) with versions that keep Lua's results
 * and fall back to Lua's own functions. */
void sl_strfast_open(lua_State *L);

/* Adds sluice._count_runs to the table on top of L's stack (the sluice
 * module): a combiner's count of what a gmatch iterator has left. */
void sl_strfast_funcs(lua_State *L);

#endif
