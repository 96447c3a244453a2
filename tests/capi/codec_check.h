/* codec_check: what the codec's C tests share (test_codec.c: values
 * between states, rejections, the format and batches; test_codec_bytes.c:
 * the bytes, and decoding input it cannot trust): fresh states with two C
 * helpers, running Lua code in them, sending values from one to the
 * other. */
#ifndef SLUICE_CODEC_CHECK_H
#define SLUICE_CODEC_CHECK_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "check.h"
#include "codec.h"
#include "status.h"

static char err[512];

/* Returns a new C closure: a C function that no module holds. */
static inline int l_mkcfn(lua_State *L) {
  lua_pushinteger(L, 1);
  lua_pushcclosure(L, l_mkcfn, 1);
  return 1;
}

static inline int l_lightud(lua_State *L) {
  lua_pushlightuserdata(L, &err);
  return 1;
}

static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, l_mkcfn);
  lua_setfield(L, LUA_REGISTRYINDEX, "mkcfn");
  lua_pushcfunction(L, l_lightud);
  lua_setfield(L, LUA_REGISTRYINDEX, "lightud");
  return L;
}

/* The C helpers live in the registry, so that they are not globals (and
 * so not nameable as _G.<name>); scripts get them through this chunk. */
static const char prelude[] =
  "local mkcfn, lightud = ...\n";

/* Runs chunk (with mkcfn and lightud as locals) and leaves its first
 * result on the stack; returns 0 on error (printed). */
static inline int eval(lua_State *L, const char *chunk) {
  char *src = malloc(sizeof prelude + strlen(chunk));
  strcpy(src, prelude);
  strcat(src, chunk);
  int rc = luaL_loadstring(L, src);
  free(src);
  if (rc == LUA_OK) {
    lua_getfield(L, LUA_REGISTRYINDEX, "mkcfn");
    lua_getfield(L, LUA_REGISTRYINDEX, "lightud");
    rc = lua_pcall(L, 2, 1, 0);
  }
  if (rc != LUA_OK) {
    fprintf(stderr, "  lua error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static inline void run(lua_State *L, const char *chunk) {
  if (eval(L, chunk)) lua_pop(L, 1);
  else CHECK(!"chunk failed");
}

/* True when "return <cond>" is true in L. */
static inline int truth(lua_State *L, const char *cond) {
  char buf[4096];
  snprintf(buf, sizeof buf, "return %s", cond);
  if (!eval(L, buf)) return 0;
  int ok = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!ok) fprintf(stderr, "  false in B: %s\n", cond);
  return ok;
}
#define CHECK_LUA(L, cond) CHECK(truth(L, cond))

/* Encodes the value of chunk in A (root "x") and decodes it in B into the
 * global v. Returns the first failing status; the message is in err.
 * Checks that both stacks are left balanced. */
static inline int send_root(lua_State *A, lua_State *B, const char *chunk, const char *root) {
  sl_buf buf = SL_BUF_INIT;
  int rc;
  err[0] = '\0';
  if (!eval(A, chunk)) return -100;
  int ta = lua_gettop(A), tb = lua_gettop(B);
  rc = sl_encode(A, -1, &buf, root, err, sizeof err);
  CHECK_INT(lua_gettop(A), ta);
  lua_pop(A, 1);
  if (rc == 0) {
    rc = sl_decode(B, buf.data, buf.len, err, sizeof err);
    CHECK_INT(lua_gettop(B), rc == 0 ? tb + 1 : tb);
    if (rc == 0) lua_setglobal(B, "v");
  } else {
    CHECK_INT(buf.len, 0);
  }
  sl_buf_free(&buf);
  return rc;
}

static inline int send(lua_State *A, lua_State *B, const char *chunk) {
  return send_root(A, B, chunk, "x");
}

/* Encodes the value of chunk in L and returns the bytes (caller frees). */
static char *encode_chunk(lua_State *L, const char *chunk, size_t *len) {
  sl_buf buf = SL_BUF_INIT;
  *len = 0;
  if (!eval(L, chunk)) return NULL;
  int rc = sl_encode(L, -1, &buf, "x", err, sizeof err);
  lua_pop(L, 1);
  if (rc) {
    fprintf(stderr, "  encode failed: %s\n", err);
    sl_buf_free(&buf);
    return NULL;
  }
  return sl_buf_take(&buf, len);
}

/* Encoding of chunk's value == the len bytes at want. */
static inline int encodes_as(lua_State *L, const char *chunk, const char *want, size_t len) {
  size_t n;
  char *p = encode_chunk(L, chunk, &n);
  int ok = p && n == len && memcmp(p, want, len) == 0;
  if (!ok) {
    fprintf(stderr, "  %s encodes as", chunk);
    for (size_t i = 0; p && i < n; i++) fprintf(stderr, " %02x", (unsigned char)p[i]);
    fprintf(stderr, "\n");
  }
  free(p);
  return ok;
}

static inline void close2(lua_State *A, lua_State *B) {
  lua_close(A);
  lua_close(B);
}
#endif
