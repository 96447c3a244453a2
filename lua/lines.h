/* lines: the C line reader behind sluice.lines and sluice.words (see
 * lines.c). */
#ifndef SLUICE_LINES_H
#define SLUICE_LINES_H
#include <lua.h>

/* Registers the reader's metatable and pushes the function
 * sluice._lines(path [, from [, to [, words]]]) -> reader; reader:read(k, out) ->
 * done; reader:close(). */
int sl_lines_open(lua_State *L);
#endif
