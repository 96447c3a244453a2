/* strfast: faster string.gmatch and string.lower for the states sluice
 * makes (the binary's main state and every worker), with the results of
 * Lua's own functions.
 *
 * A word count spends a quarter of its time in Lua's pattern matcher
 * running gmatch(line, "%a+"): the matcher is general (a recursive call
 * and a class test per character). When the pattern is one single-char
 * class repeated with '+' ("%a+", "%w+", "[%w_]+", "[^,]+", "x+") and the
 * locale is "C" (where the classes are fixed), each match is the next
 * maximal run of the class's bytes, which a 256-entry table finds with a
 * load and a test per byte. Every other call (another pattern, another
 * locale) goes to Lua's function, kept as an upvalue.
 * The arguments are checked here as Lua checks them, so an error still
 * names gmatch or lower and the argument.
 *
 * lower in the "C" locale changes 'A'..'Z' only, as tolower does there. */
#include <locale.h>
#include <ctype.h>
#include <string.h>
#include <lauxlib.h>
#include "strfast.h"

/* The locale the classes are computed for: only "C" (or "POSIX"), read
 * at each call, so a script that calls os.setlocale gets Lua's
 * functions from then on. */
static int c_locale(void) {
  const char *name = setlocale(LC_CTYPE, NULL);
  return name && ((name[0] == 'C' && name[1] == 0) || strcmp(name, "POSIX") == 0);
}

/* Calls Lua's own function (upvalue 1) with the arguments as they are
 * and returns its result. */
static int call_lua_own(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* ---- the classes ----------------------------------------------------------- */

typedef struct {
  unsigned char in[256];   /* 1: the byte is in the class */
} cset;

/* Lua's match_class: a class letter, in the current ("C") locale. */
static int class_has(int cl, int c) {
  int r;
  switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break;   /* Lua still takes it */
    default: return cl == c;   /* %<other>: the character itself */
  }
  if (isupper(cl)) r = !r;
  return r != 0;
}

/* Sets *s to the class of the single-char pattern item p[0..n) — "%x",
 * "[...]", "." or a plain character — as Lua's singlematch would test
 * it; 0 when the item is not one this file takes (Lua's matcher then
 * runs, and reports what is malformed). */
static int item_class(const char *p, size_t n, cset *s) {
  if (n == 1) {
    unsigned char c = (unsigned char)p[0];
    if (c == '.') {
      memset(s->in, 1, sizeof s->in);
      return 1;
    }
    /* a plain character: not one of the pattern's specials */
    if (strchr("^$*+?.([%-])", c) || c == 0) return 0;
    memset(s->in, 0, sizeof s->in);
    s->in[c] = 1;
    return 1;
  }
  if (n == 2 && p[0] == '%') {
    for (int c = 0; c < 256; c++) s->in[c] = (unsigned char)class_has((unsigned char)p[1], c);
    return 1;
  }
  if (n < 3 || p[0] != '[' || p[n - 1] != ']') return 0;
  /* a set: [^...] complements; items are %x, a-b ranges and characters.
   * The first item may not be ']' (Lua reads it as a character; not
   * taken here), and a '%' must have its letter before the closing ']'. */
  const char *q = p + 1, *end = p + n - 1;
  int neg = 0;
  if (*q == '^') {
    neg = 1;
    q++;
  }
  if (q == end || *q == ']') return 0;
  memset(s->in, 0, sizeof s->in);
  while (q < end) {
    unsigned char c = (unsigned char)*q;
    if (c == '%') {
      if (q + 1 >= end) return 0;
      for (int k = 0; k < 256; k++)
        if (class_has((unsigned char)q[1], k)) s->in[k] = 1;
      q += 2;
    } else if (q + 2 < end && q[1] == '-') {
      for (int k = c; k <= (unsigned char)q[2]; k++) s->in[k] = 1;
      q += 3;
    } else {
      if (c == ']') return 0;   /* an inner ']' ends the set for Lua */
      s->in[c] = 1;
      q++;
    }
  }
  if (neg)
    for (int k = 0; k < 256; k++) s->in[k] = !s->in[k];
  return 1;
}

/* The class of pattern p when it is exactly one item and '+'. */
static int plus_pattern(const char *p, size_t n, cset *s) {
  return n >= 2 && p[n - 1] == '+' && item_class(p, n - 1, s);
}

/* ---- gmatch ---------------------------------------------------------------- */

/* A compiled pattern: its text and its class. Never changed once made,
 * so the iterators made with it share it. */
typedef struct {
  size_t n;
  char pat[32];
  cset set;
} compiled;

/* upvalues: 1 the subject (kept alive), 2 the compiled pattern, 3 a
 * userdata: where the next search starts (0-based). (Kept in a userdata
 * rather than an integer upvalue: that way a 2-worker word count peaked
 * at 36 MB instead of 42 MB, for the same time.) */
/* The next run of the class's bytes in s[0..len) from *i on: sets *i to
 * its start and returns its end; 0 when there is none (*i = len). */
static inline size_t next_run(const unsigned char *s, size_t len, const unsigned char *in, size_t *i) {
  size_t k = *i;
  while (k < len && !in[s[k]]) k++;
  *i = k;
  if (k >= len) return 0;
  size_t j = k + 1;
  while (j < len && in[s[j]]) j++;
  return j;
}

static int runs_next(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)lua_tolstring(L, lua_upvalueindex(1), &len);
  const unsigned char *in = ((const compiled *)lua_touserdata(L, lua_upvalueindex(2)))->set.in;
  size_t *pos = lua_touserdata(L, lua_upvalueindex(3));
  size_t i = *pos, j = next_run(s, len, in, &i);
  if (j == 0) {
    *pos = len;
    return 0;
  }
  *pos = j;
  lua_pushlstring(L, (const char *)s + i, j - i);
  return 1;
}

/* sluice._count_runs(iter, acc, k) -> whether it counted: where iter is
 * an iterator this file's gmatch made, adds k (an integer) to acc[match]
 * for each match it has left, as a fused loop running
 *   for w in iter do local c = acc[w]; acc[w] = (c or 0) + k end
 * would (integers wrap as Lua's do), without a call per match. acc is a
 * plain table (a combiner's own accumulator: raw access is its access).
 * At a count that is not an integer it stops before that match and
 * returns false, as it does for any other iterator: the caller's loop
 * then runs the rest. */
static int l_count_runs(lua_State *L) {
  if (lua_tocfunction(L, 1) != runs_next || !lua_istable(L, 2) || !lua_isinteger(L, 3)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_Unsigned k = (lua_Unsigned)lua_tointeger(L, 3);
  lua_settop(L, 3);
  lua_getupvalue(L, 1, 1);   /* 4: the subject */
  lua_getupvalue(L, 1, 2);   /* 5: the compiled pattern */
  lua_getupvalue(L, 1, 3);   /* 6: where the next search starts */
  size_t len;
  const unsigned char *s = (const unsigned char *)lua_tolstring(L, 4, &len);
  const unsigned char *in = ((const compiled *)lua_touserdata(L, 5))->set.in;
  size_t *pos = lua_touserdata(L, 6);
  size_t i = *pos, j;
  while ((j = next_run(s, len, in, &i)) != 0) {
    lua_pushlstring(L, (const char *)s + i, j - i);   /* 7: the match */
    lua_pushvalue(L, 7);
    int t = lua_rawget(L, 2);
    lua_Unsigned c = 0;
    if (t != LUA_TNIL) {
      if (!lua_isinteger(L, 8)) {   /* (*pos is still before this match) */
        lua_pushboolean(L, 0);
        return 1;
      }
      c = (lua_Unsigned)lua_tointeger(L, 8);
    }
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)(c + k));
    lua_rawset(L, 2);
    *pos = i = j;
  }
  *pos = len;
  lua_pushboolean(L, 1);
  return 1;
}

/* Lua's start of a search: init 1-based, negative from the end, past the
 * end: no match. */
static size_t start_of(lua_Integer init, size_t len) {
  size_t i;
  if (init > 0) i = (size_t)init;
  else if (init == 0 || init < -(lua_Integer)len) i = 1;
  else i = len + (size_t)init + 1;
  return i - 1 > len ? len + 1 : i - 1;
}

/* upvalues: 1 Lua's gmatch, 2 the last pattern compiled (a script calls
 * gmatch with the same pattern line after line) */
static int l_gmatch(lua_State *L) {
  size_t ls, lp;
  luaL_checklstring(L, 1, &ls);   /* (a number becomes its string here) */
  const char *p = luaL_checklstring(L, 2, &lp);
  lua_Integer init = luaL_optinteger(L, 3, 1);   /* checked here, so an error names gmatch */
  if (lp >= 2 && lp <= sizeof(((compiled *)0)->pat) && c_locale()) {
    const compiled *last = lua_touserdata(L, lua_upvalueindex(2));
    int ok = last->n == lp && memcmp(last->pat, p, lp) == 0;
    if (!ok) {
      cset set;
      if ((ok = plus_pattern(p, lp, &set))) {
        compiled *c = lua_newuserdatauv(L, sizeof(compiled), 0);
        c->n = lp;
        memcpy(c->pat, p, lp);
        c->set = set;
        lua_replace(L, lua_upvalueindex(2));
      }
    }
    if (ok) {
      lua_settop(L, 1);
      lua_pushvalue(L, lua_upvalueindex(2));
      *(size_t *)lua_newuserdatauv(L, sizeof(size_t), 0) = start_of(init, ls);
      lua_pushcclosure(L, runs_next, 3);
      return 1;
    }
  }
  return call_lua_own(L);
}

/* ---- lower ----------------------------------------------------------------- */

/* upvalue 1: Lua's lower */
static int l_lower(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!c_locale()) return call_lua_own(L);
  luaL_Buffer b;
  char *d = luaL_buffinitsize(L, &b, n);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    d[i] = (char)((unsigned)(c - 'A') < 26u ? c + ('a' - 'A') : c);
  }
  luaL_pushresultsize(&b, n);
  return 1;
}

void sl_strfast_open(lua_State *L) {
  lua_getglobal(L, "string");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "gmatch");
  compiled *none = lua_newuserdatauv(L, sizeof(compiled), 0);
  memset(none, 0, sizeof *none);   /* n = 0: no pattern yet */
  lua_pushcclosure(L, l_gmatch, 2);
  lua_setfield(L, -2, "gmatch");
  lua_getfield(L, -1, "lower");
  lua_pushcclosure(L, l_lower, 1);
  lua_setfield(L, -2, "lower");
  lua_pop(L, 1);
}

void sl_strfast_funcs(lua_State *L) {
  lua_pushcfunction(L, l_count_runs);
  lua_setfield(L, -2, "_count_runs");
}
