/* fuzz_decode: the value decoder (sl_decode) on arbitrary bytes.
 *
 * Each input is decoded into a Lua state. Malformed bytes must give an
 * error status and push nothing; a value that decodes is encoded again,
 * decoded again, and the two decoded values must be equal (same shape:
 * types, integer/float subtype, numbers bit for bit, strings, tables key
 * by key, functions by their upvalues, handles by kind and ids, shared
 * and cyclic references mapped one to one). ASan and UBSan watch every
 * step. The state is made once and renewed every RENEW inputs, so that
 * nothing one input leaves behind builds up. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "buf.h"
#include "codec.h"
#include "status.h"
#include "fuzz_lua.h"

#define RENEW 20000

static unsigned long inputs;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char err[256];
  if (!L || ++inputs % RENEW == 0) {
    if (L) lua_close(L);
    L = newstate();
  }
  lua_settop(L, 0);
  int rc = sl_decode(L, (const char *)data, size, err, sizeof err);
  if (rc != 0) {
    if (rc != SL_ECORRUPT && rc != SL_ENOENT && rc != SL_ENOMEM) fail("unknown status");
    if (lua_gettop(L) != 0) fail("a failed decode left values on the stack");
    if (!err[0]) fail("a failed decode gave no message");
    return 0;
  }
  if (lua_gettop(L) != 1) fail("a decode pushed other than one value");
  sl_buf b = SL_BUF_INIT;
  rc = sl_encode(L, 1, &b, "v", err, sizeof err);
  if (rc == 0) {
    if (sl_decode(L, b.data, b.len, err, sizeof err) != 0) {
      fprintf(stderr, "re-decode: %s\n", err);
      fail("what the encoder wrote does not decode");
    }
    lua_newtable(L);
    if (!equal(1, 2, 3, 0)) fail("decode(encode(v)) differs from v");
  } else {
    /* every value the decoder makes is one the encoder can send */
    fprintf(stderr, "encode: %d %s\n", rc, err);
    fail("a decoded value does not encode");
  }
  sl_buf_free(&b);
  lua_settop(L, 0);
  return 0;
}
