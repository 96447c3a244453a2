-- LuaRocks rockspec: `luarocks --lua-version 5.4 make` in a clone builds
-- the sluice binary and the Lua module with the Makefile and installs both
-- into the tree (the module as lib/lua/5.4/sluice.so, the binary as
-- bin/sluice). The version follows SLUICE_VERSION in lua/rt.h.
rockspec_format = "3.0"
package = "sluice"
version = "0.1.0-1"
source = {
   -- not published: `luarocks make` builds the working tree it runs in
   url = "file://.",
}
description = {
   summary = "GenStage and Flow for Lua: stages, back-pressure and parallel pipelines",
   detailed = [[
      A C engine of stages exchanging events under back-pressure, driven
      from Lua 5.4: producers, producer_consumers and consumers on worker
      threads (each with its own Lua state), dispatchers, and Flow, a
      parallel Enum with partitions, windows and triggers. Installs the
      module (require "sluice") and the sluice binary with its REPL.
   ]],
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
-- The Makefile sets its own CFLAGS (-std=c11 -pthread, and -fPIC for the
-- module's objects only): luarocks' CFLAGS would replace them, so it is not
-- passed (luarocks says so in a warning).
build = {
   type = "make",
   build_variables = {
      LUA = "$(LUA)",
      LUA_CFLAGS = "-I$(LUA_INCDIR)",
   },
   install_variables = {
      BINDIR = "$(BINDIR)",
      LUA_CMOD_DIR = "$(LIBDIR)",
   },
}
