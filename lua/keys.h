/* keys: handles' metatables, partition hashes of keys, encoded keys and
 * tickets (keys.c). */
#ifndef SLUICE_KEYS_H
#define SLUICE_KEYS_H
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>

/* Sets sluice._hash, _key, _handle_id, _ticket and _take in the table on
 * top of the stack. */
void sl_keys_open(lua_State *L);
/* The partition (1..n) where the engine's hash of the encoding of the
 * scalar at idx sends it (sluice._hash's answer), or 0 when the value is
 * not a scalar or too long for this path (sluice._hash then encodes it
 * in full). */
uint32_t sl_key_partition(lua_State *L, int idx, uint32_t n);
/* Fills the metatable of handle kind `kind` with methods (and the
 * handles' __tostring and __eq). */
void sl_rt_handle_methods(lua_State *L, int kind, const luaL_Reg *methods);
#endif
