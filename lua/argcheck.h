/* argcheck: the argument checks of the public C functions and handle
 * methods (argcheck.c). Each error names the function the user called
 * ("sluice.sleep", "stage:send_after") and shows the value it got, as the
 * Lua half of the library does, whether the function was called directly,
 * as a method or through pcall. */
#ifndef SLUICE_ARGCHECK_H
#define SLUICE_ARGCHECK_H
#include <lua.h>
#include "codec.h"

/* Pushes how an error shows the value at idx: strings quoted, integers
 * and booleans as written, floats as sluice.inspect writes them (0/0,
 * math.huge), nil, "no value" past the top, handles as they print
 * (<stage 3>), else the type's name. */
const char *sl_arg_got(lua_State *L, int idx);
/* Raises "fn: <what>, got <value at idx>" (idx: a positive index). */
int sl_arg_fail(lua_State *L, int idx, const char *fn, const char *what);
/* The integer at idx, >= min: else "fn: <name> must be an integer >= min". */
lua_Integer sl_arg_integer(lua_State *L, int idx, lua_Integer min, const char *fn, const char *name);
/* The string at idx: else "fn: <name> must be a string". */
const char *sl_arg_string(lua_State *L, int idx, const char *fn, const char *name);
/* Checks there is an argument (nil counts) at idx: else "fn: <name> is missing". */
void sl_arg_present(lua_State *L, int idx, const char *fn, const char *name);
/* The handle of `kind` at idx 1 (the method's self): else
 * "fn: expected a <what> handle as self (call it with ':'), got ...". */
sl_handle *sl_arg_self(lua_State *L, int kind, const char *fn, const char *what);
#endif
