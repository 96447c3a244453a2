/* lwindow: the binding of the window state machine (see window.c). */
#ifndef SLUICE_LWINDOW_H
#define SLUICE_LWINDOW_H
#include <lua.h>

/* Registers the window metatable and sluice._range_chunk into the table
 * on the stack top, and pushes sluice._window(spec) -> w. */
int sl_window_open_lua(lua_State *L);
#endif
