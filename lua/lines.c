/* lines: the reader behind sluice.lines and sluice.words. It reads a file
 * in large blocks and cuts lines with memchr, so a line costs one string
 * push, not a Lua read call. A reader may cover a byte range [from, to)
 * of the file: it yields the lines that start in that range (a line that
 * starts before `from` belongs to the reader before it), which is how a
 * split source shares one file among stages without reading a line twice.
 * A words reader cuts each of its lines into words instead: the runs of
 * ASCII letters, lowercased (what line:lower():gmatch("%a+") gives in the
 * C locale), each one string push. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "lines.h"

#define READER_MT "sluice.lines_reader"
#define BLOCK 65536

typedef struct reader {
  FILE *f;          /* NULL once exhausted or closed */
  char *buf;
  size_t cap, beg, end;   /* unread bytes are buf[beg..end) */
  lua_Integer pos;  /* file offset of buf[beg] */
  lua_Integer to;   /* lines starting at or after this offset are not ours */
  int eof;          /* the file has no bytes past buf[end] */
  int words;        /* yields the lines' words, not the lines */
} reader;

static const char *reader_name(const reader *r) { return r->words ? "sluice.words" : "sluice.lines"; }

static void reader_close(reader *r) {
  if (r->f) fclose(r->f);
  r->f = NULL;
  free(r->buf);
  r->buf = NULL;
  r->cap = r->beg = r->end = 0;
}

/* Reads more bytes after buf[end], moving the unread ones to the front
 * and growing the buffer when it is full. Returns 0, or -1 on a read
 * error or when out of memory (message pushed). */
static int refill(lua_State *L, reader *r) {
  if (r->beg > 0) {
    memmove(r->buf, r->buf + r->beg, r->end - r->beg);
    r->end -= r->beg;
    r->beg = 0;
  }
  if (r->end == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : BLOCK;
    char *nb = realloc(r->buf, cap);
    if (!nb) {
      lua_pushfstring(L, "%s: not enough memory for a line", reader_name(r));
      return -1;
    }
    r->buf = nb;
    r->cap = cap;
  }
  size_t got = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
  r->end += got;
  if (got == 0) {
    if (ferror(r->f)) {
      lua_pushfstring(L, "%s: read error: %s", reader_name(r), strerror(errno));
      return -1;
    }
    r->eof = 1;
  }
  return 0;
}

/* Finds the end of the line at buf[beg]: sets *nl to the newline's index
 * (or end at the end of the file). Returns 1 when there is a line, 0 at the
 * end of the file, -1 on error (message pushed). */
static int next_line(lua_State *L, reader *r, size_t *nl) {
  size_t scanned = r->beg;
  for (;;) {
    char *p = r->end > scanned ? memchr(r->buf + scanned, '\n', r->end - scanned) : NULL;
    if (p) {
      *nl = (size_t)(p - r->buf);
      return 1;
    }
    if (r->eof) {
      *nl = r->end;
      return r->end > r->beg;
    }
    size_t off = r->end - r->beg;   /* scanned so far; refill moves the bytes */
    if (refill(L, r)) return -1;
    scanned = r->beg + off;
  }
}

/* sluice._lines(path [, from [, to [, words]]]) -> reader of the lines
 * that start in [from, to) (default: the whole file); with words true, of
 * those lines' words. */
static int l_lines(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer from = luaL_optinteger(L, 2, 0);
  lua_Integer to = luaL_optinteger(L, 3, LUA_MAXINTEGER);
  int words = lua_toboolean(L, 4);
  luaL_argcheck(L, from >= 0, 2, "must be >= 0");
  reader *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, READER_MT);
  r->to = to;
  r->words = words;
  r->f = fopen(path, "rb");
  if (!r->f) return luaL_error(L, "%s: %s: %s", reader_name(r), path, strerror(errno));
  r->pos = from;
  if (from > 0) {
    /* a line that starts before `from` belongs to the reader before */
    if (fseek(r->f, (long)(from - 1), SEEK_SET) != 0) {
      int e = errno;
      reader_close(r);
      return luaL_error(L, "%s: %s: %s", reader_name(r), path, strerror(e));
    }
    r->pos = from - 1;
    size_t nl;
    int rc = next_line(L, r, &nl);
    if (rc < 0) {
      reader_close(r);
      return lua_error(L);
    }
    if (rc > 0) {
      size_t skip = nl < r->end ? nl + 1 - r->beg : nl - r->beg;
      r->pos += (lua_Integer)skip;
      r->beg += skip;
    }
  }
  return 1;
}

static int is_letter(unsigned char c) { return (unsigned char)((c | 0x20) - 'a') < 26; }

/* Appends the words of line[0..len) to the array at index 3 from its
 * element n + 1 on, lowercasing them in place (the bytes are the reader's
 * own and are not read again); returns how many. */
static lua_Integer push_words(lua_State *L, char *line, size_t len, lua_Integer n) {
  lua_Integer got = 0;
  size_t i = 0;
  while (i < len) {
    while (i < len && !is_letter((unsigned char)line[i])) i++;
    size_t w = i;
    for (; i < len && is_letter((unsigned char)line[i]); i++) line[i] = (char)(line[i] | 0x20);
    if (i > w) {
      lua_pushlstring(L, line + w, i - w);
      lua_rawseti(L, 3, n + ++got);
    }
  }
  return got;
}

/* reader:read(k, out) -> done: appends up to k lines (without their "\n"
 * or "\r\n") to the array out; done is true once the reader's lines are
 * all read (the file is closed then). A words reader appends the words of
 * whole lines until k words or more came out. */
static int l_reader_read(lua_State *L) {
  reader *r = luaL_checkudata(L, 1, READER_MT);
  lua_Integer k = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
  lua_Integer got = 0;
  while (r->f && got < k && r->pos < r->to) {
    size_t nl;
    int rc = next_line(L, r, &nl);
    if (rc < 0) {
      reader_close(r);
      return lua_error(L);
    }
    if (rc == 0) break;
    size_t len = nl - r->beg, used = len;
    if (nl < r->end) {          /* ended by a newline (dropped with a \r before it) */
      used++;
      if (len > 0 && r->buf[nl - 1] == '\r') len--;
    }
    if (r->words) {
      got += push_words(L, r->buf + r->beg, len, n + got);
    } else {
      lua_pushlstring(L, r->buf + r->beg, len);
      lua_rawseti(L, 3, n + ++got);
    }
    r->beg += used;
    r->pos += (lua_Integer)used;
  }
  if (got < k) reader_close(r);
  lua_pushboolean(L, r->f == NULL);
  return 1;
}

/* reader:pos() -> the file offset just past the last line read (the file's
 * size once a whole-file reader is done): how far the reader got, for the
 * progress line. */
static int l_reader_pos(lua_State *L) {
  reader *r = luaL_checkudata(L, 1, READER_MT);
  lua_pushinteger(L, r->pos);
  return 1;
}

static int l_reader_close(lua_State *L) {
  reader_close(luaL_checkudata(L, 1, READER_MT));
  return 0;
}

int sl_lines_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"read", l_reader_read}, {"close", l_reader_close}, {"pos", l_reader_pos},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, READER_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_reader_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_lines);
  return 1;
}
