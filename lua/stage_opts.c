/* stage_opts: the checks of what sluice.start and sluice.subscribe are
 * given (options, subscribe_to entries, the stages named), each leaving a
 * normalised copy on the stack for stage_api.c. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <lauxlib.h>
#include "stage_int.h"
#include "argcheck.h"

static int is_handle_kind(lua_State *L, int idx, int kind) { return sl_handle_test(L, idx, kind) != NULL; }

/* Checks subscription options (table at idx, may be nil) and leaves a
 * normalised copy on the stack. skip_first: the table's [1] is the
 * producer (subscribe_to entries). */
void st_check_sub_opts(lua_State *L, const char *fn, int idx, int skip_first) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  int out = lua_gettop(L);
  if (lua_isnoneornil(L, idx)) {
    lua_pushinteger(L, 1000);
    lua_setfield(L, out, "max_demand");
    lua_pushinteger(L, 500);
    lua_setfield(L, out, "min_demand");
    return;
  }
  if (!lua_istable(L, idx)) luaL_error(L, "%s: subscription options must be a table, got %s", fn, luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!(skip_first && lua_isinteger(L, -2) && lua_tointeger(L, -2) == 1)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "%s: subscription option keys must be strings, got %s", fn, luaL_typename(L, -2));
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, out);
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, out, "max_demand");
  lua_Integer max = 1000;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
      luaL_error(L, "%s: max_demand must be an integer >= 1, got %s", fn, st_push_got(L, -1));
    if (lua_tointeger(L, -1) > INT32_MAX)
      luaL_error(L, "%s: max_demand must be at most %d, got %s", fn, (int)INT32_MAX, st_push_got(L, -1));
    max = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  lua_pushinteger(L, max);
  lua_setfield(L, out, "max_demand");
  lua_getfield(L, out, "min_demand");
  lua_Integer min = max / 2;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) >= max)
      luaL_error(L, "%s: min_demand must be an integer from 0 to max_demand - 1 (%I), got %s", fn,
                 (lua_Integer)(max - 1), st_push_got(L, -1));
    min = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  lua_pushinteger(L, min);
  lua_setfield(L, out, "min_demand");
  lua_getfield(L, out, "cancel");
  if (!lua_isnil(L, -1)) {
    const char *c = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;  /* no in-place conversion */
    int ok = 0;
    for (int i = 0; cancel_names[i]; i++) ok |= c && strcmp(c, cancel_names[i]) == 0;
    if (!ok)
      luaL_error(L, "%s: cancel must be \"permanent\", \"transient\" or \"temporary\", got %s", fn, st_push_got(L, -1));
  }
  lua_pop(L, 1);
  lua_getfield(L, out, "selector");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_error(L, "%s: selector must be a function, got %s", fn, luaL_typename(L, -1));
  lua_pop(L, 1);
}

/* Resolves a producer given as a handle or a registered name. */
int st_check_stage_arg(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    uint64_t ref = st_reg_whereis(lua_tostring(L, idx));
    if (!ref) return luaL_error(L, "%s: no stage is named '%s'", fn, lua_tostring(L, idx));
    st_push_stage(L, ref);
    lua_replace(L, idx);
  }
  if (!is_handle_kind(L, idx, SL_H_STAGE))
    return luaL_error(L, "%s: %s must be a stage, got %s", fn, what, luaL_typename(L, idx));
  return 1;
}

/* st_check_stage_arg for a stage that must be able to produce. */
static void check_producer_arg(lua_State *L, int idx, const char *fn, const char *what) {
  st_check_stage_arg(L, idx, fn, what);
  if (st_reg_type(sl_handle_test(L, idx, SL_H_STAGE)->id) == T_CONSUMER)
    luaL_error(L, "%s: %s must be a producer or a producer_consumer, got a consumer", fn, what);
}

static const char *const start_keys[] = {"subscribe_to", "dispatcher", "demand", "buffer_size", "buffer_keep",
                                         "worker", "name", "_on_cancel", "_main", "_finite", NULL};

/* Checks sluice.start's options (at idx) against the spec's type; leaves
 * the normalised options table on the stack. */
void st_check_start_opts(lua_State *L, int idx, int type) {
  const char *fn = "sluice.start";
  lua_newtable(L);
  int out = lua_gettop(L);
  if (lua_isnoneornil(L, idx)) return;
  if (!lua_istable(L, idx)) sl_arg_fail(L, idx, fn, "opts must be a table");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int known = 0;
    for (int i = 0; k && start_keys[i]; i++) known |= strcmp(k, start_keys[i]) == 0;
    if (!known) luaL_error(L, "%s: unknown option %s", fn, luaL_tolstring(L, -2, NULL));
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, out);
    lua_pop(L, 1);
  }
  lua_getfield(L, out, "subscribe_to");
  if (!lua_isnil(L, -1)) {
    if (type == T_PRODUCER) luaL_error(L, "%s: subscribe_to is for consumers and producer_consumers", fn);
    if (!lua_istable(L, -1)) luaL_error(L, "%s: subscribe_to must be a list, got %s", fn, luaL_typename(L, -1));
    int list = lua_gettop(L);
    lua_newtable(L);
    int norm = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, list, i) != LUA_TNIL; i++) {
      int e = lua_gettop(L);
      lua_createtable(L, 0, 2);
      if (lua_istable(L, e) && !is_handle_kind(L, e, SL_H_STAGE)) {
        lua_rawgeti(L, e, 1);
        check_producer_arg(L, lua_gettop(L), fn, "a subscribe_to producer");
        lua_setfield(L, -2, "producer");
        st_check_sub_opts(L, fn, e, 1);
      } else {
        lua_pushvalue(L, e);
        check_producer_arg(L, lua_gettop(L), fn, "a subscribe_to entry");
        lua_setfield(L, -2, "producer");
        lua_pushnil(L);
        st_check_sub_opts(L, fn, -1, 0);
        lua_remove(L, -2);
      }
      lua_setfield(L, -2, "opts");
      lua_rawseti(L, norm, i);
      lua_settop(L, norm);
    }
    lua_settop(L, norm);
    lua_setfield(L, out, "subscribe_to");
  }
  lua_settop(L, out);
  lua_getfield(L, out, "dispatcher");
  if (!lua_isnil(L, -1)) {
    if (type == T_CONSUMER) luaL_error(L, "%s: dispatcher is for producers and producer_consumers", fn);
    if (lua_istable(L, -1)) lua_getfield(L, -1, "kind");
    else lua_pushnil(L);   /* indexing a non-table would raise Lua's own error */
    if (!lua_istable(L, -2) || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: dispatcher must come from sluice.dispatcher.demand/broadcast/partition", fn);
  }
  lua_settop(L, out);
  lua_getfield(L, out, "demand");
  if (!lua_isnil(L, -1)) {
    const char *d = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (type != T_PRODUCER) luaL_error(L, "%s: demand is an option for producers only", fn);
    if (!d || (strcmp(d, "forward") != 0 && strcmp(d, "accumulate") != 0))
      luaL_error(L, "%s: demand must be \"forward\" or \"accumulate\", got %s", fn, st_push_got(L, -1));
  }
  lua_settop(L, out);
  lua_getfield(L, out, "buffer_size");
  if (!lua_isnil(L, -1)) {
    if (type == T_CONSUMER) luaL_error(L, "%s: buffer_size is for producers and producer_consumers", fn);
    int ok = (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) ||
             (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == HUGE_VAL);
    if (!ok) luaL_error(L, "%s: buffer_size must be an integer >= 1 or math.huge, got %s", fn, st_push_got(L, -1));
  }
  lua_settop(L, out);
  lua_getfield(L, out, "buffer_keep");
  if (!lua_isnil(L, -1)) {
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!k || (strcmp(k, "first") != 0 && strcmp(k, "last") != 0))
      luaL_error(L, "%s: buffer_keep must be \"first\" or \"last\", got %s", fn, st_push_got(L, -1));
  }
  lua_settop(L, out);
  lua_getfield(L, out, "worker");
  if (!lua_isnil(L, -1) && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > sl_rt_g.nworkers))
    luaL_error(L, "%s: worker must be an integer from 1 to %d, got %s", fn, sl_rt_g.nworkers, st_push_got(L, -1));
  lua_settop(L, out);
  lua_getfield(L, out, "name");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: name must be a string, got %s", fn, luaL_typename(L, -1));
    if (st_reg_whereis(lua_tostring(L, -1))) luaL_error(L, "%s: a stage named '%s' is already running", fn, lua_tostring(L, -1));
  }
  lua_settop(L, out);
}
