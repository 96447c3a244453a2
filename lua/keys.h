/* keys: handles' metatables, partition hashes of keys, encoded keys and
 * tickets (keys.c). */
#ifndef SLUICE_KEYS_H
#define SLUICE_KEYS_H
#include <lua.h>
#include <lauxlib.h>

/* Sets sluice._hash, _key, _handle_id, _ticket and _take in the table on
 * top of the stack. */
void sl_keys_open(lua_State *L);
/* Fills the metatable of handle kind `kind` with methods (and the
 * handles' __tostring and __eq). */
void sl_rt_handle_methods(lua_State *L, int kind, const luaL_Reg *methods);
#endif
