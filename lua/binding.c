/* binding: the sluice module's runtime part: worker Lua states, tasks,
 * sleep, line-atomic print and the main thread's wait loop. The globals
 * snapshot the workers see is snapshot.c; handles, key hashes and tickets
 * are keys.c.
 *
 * DESIGN
 * Every lua_State is touched by exactly one thread: the main state by the
 * main thread, each worker state by its worker thread (created in the
 * scheduler's start hook, closed in its stop hook). Values cross only as
 * encoded bytes inside messages (codec.c). The only cross-thread calls on
 * a state are lua_sethook: from the SIGINT handler on the main state
 * (main.c), and from an interrupting thread on a busy worker's state (the
 * scheduler calls worker_interrupt under its lock, so the state is alive
 * and inside a handler). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "alloc.h"
#include "rt.h"
#include "lstage.h"
#include "status.h"
#include "lines.h"
#include "lwindow.h"
#include "outbox.h"
#include "bytecode.h"
#include "rawbatch.h"
#include "redis.h"
#include "snapshot.h"
#include "strfast.h"
#include "keys.h"
#include "argcheck.h"

sl_rt sl_rt_g;

typedef struct { const char *name; const char *src; size_t len; } sl_embedded_t;
extern const sl_embedded_t sl_embedded[];

static atomic_uint_fast64_t next_id = 1;
uint64_t sl_rt_id(void) { return atomic_fetch_add(&next_id, 1); }

/* ---- output ------------------------------------------------------------ */

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

void sl_rt_write_line(const char *s, size_t len) {
  pthread_mutex_lock(&out_mu);
  fwrite(s, 1, len, stdout);
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
}

/* print(...) that writes its whole line with one locked write. */
static int l_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);  /* stack: ... buf? s */
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_addvalue(&b);
    (void)s;
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  sl_rt_write_line(s, len);
  return 0;
}

/* ---- protected calls ---------------------------------------------------- */

/* Message handler: keeps the error value, adds the traceback as a second
 * value through a table {err, traceback} unpacked by sl_pcall. */
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  lua_createtable(L, 2, 0);             /* stack: err t */
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  luaL_traceback(L, L, msg ? NULL : "(error object is not a string)", 1);
  lua_rawseti(L, -2, 2);
  return 1;
}

int sl_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs;     /* function index */
  lua_pushcfunction(L, msgh);
  lua_insert(L, base);                  /* stack: msgh f args... */
  void *ud;
  sl_pool *pool = lua_getallocf(L, &ud) == sl_pool_alloc ? ud : NULL;
  if (pool) sl_pool_guard(pool, 1);   /* the memory limit holds in here */
  int st = lua_pcall(L, nargs, nresults, base);
  if (pool) sl_pool_guard(pool, -1);
  lua_remove(L, base);
  if (st != LUA_OK) {
    if (lua_istable(L, -1)) {           /* stack: {err, tb} */
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);            /* stack: t err tb */
      lua_remove(L, -3);
    } else {                            /* memory error: no handler ran */
      if (st == LUA_ERRMEM) sl_rt_note_memory(L, -1);
      lua_pushliteral(L, "");
    }
  }
  return st;
}

int sl_rt_codec_error(lua_State *L, const char *fn, const char *err) {
  return luaL_error(L, "%s: %s", fn, err);
}

/* ---- embedded Lua modules ----------------------------------------------- */

static int load_embedded(lua_State *L) {
  const sl_embedded_t *e = lua_touserdata(L, lua_upvalueindex(1));
  char chunk[96];
  snprintf(chunk, sizeof chunk, "=[%s]", e->name);
  if (luaL_loadbuffer(L, e->src, e->len, chunk) != LUA_OK) return lua_error(L);
  lua_pushstring(L, e->name);
  lua_call(L, 1, 1);
  return 1;
}

static void preload_embedded(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);  /* stack: preload */
  for (const sl_embedded_t *e = sl_embedded; e->name; e++) {
    lua_pushlightuserdata(L, (void *)e);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, e->name);
  }
  lua_pop(L, 1);
}

/* ---- worker states ---------------------------------------------------------- */

typedef struct wctx {
  int index;
  lua_State *L;
  sl_pool *pool;    /* L's allocator */
  sl_snapshot *snap;   /* newest installed, one reference */
  atomic_uint_fast64_t interrupt_seq;   /* handler asked to stop (sl_sched_seq), 0: none */
  atomic_uint_fast64_t running;         /* the stage or task the handler serves now, 0: none */
  atomic_uint_fast64_t raised_seq;      /* the handler "interrupted" was last raised in */
} wctx;

/* Set once the runtime closes: an interruption then holds until the
 * handler returns, instead of raising once. */
static atomic_int closing;

/* warn(): each state is used by one thread, so its switch and whether a
 * message is half written are per thread. */
static _Thread_local int warn_on, warn_midway;

static void state_warn(void *ud, const char *msg, int tocont) {
  (void)ud;
  if (!warn_midway && !tocont && msg[0] == '@') {   /* a control message */
    if (strcmp(msg + 1, "on") == 0) warn_on = 1;
    else if (strcmp(msg + 1, "off") == 0) warn_on = 0;
    return;
  }
  if (warn_on) {
    if (!warn_midway) fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont) {
      fputc('\n', stderr);
      fflush(stderr);
    }
  }
  warn_midway = tocont;
}

static int state_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "sluice: unprotected error in call to Lua API (%s)\n", msg ? msg : "not a string");
  fflush(stderr);
  return 0;   /* then Lua aborts */
}

lua_State *sl_rt_newstate(sl_pool **pool) {
  *pool = sl_pool_new();
  lua_State *L = *pool ? lua_newstate(sl_pool_alloc, *pool) : NULL;
  if (!L) {
    if (*pool) sl_pool_free(*pool);
    *pool = NULL;
    return NULL;
  }
  lua_atpanic(L, state_panic);
  lua_setwarnf(L, state_warn, NULL);
  /* stages make many short-lived tables and strings per batch: the
   * generational collector handles that better than the incremental one.
   * A minor collection once the heap grew by 10 % (Lua's default: 20 %)
   * keeps less garbage in each worker's heap: a 2-worker combining word
   * count (50 MB) peaked at 36.9 MB instead of 38.7 MB, for about the same
   * work. A small heap gets larger multipliers (sl_pool_tune_gc, after
   * each message). */
  lua_gc(L, LUA_GCGEN, 10, 0);
  return L;
}

static int worker_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "sluice: unprotected error in a worker state: %s\n", msg ? msg : "(not a string)");
  fflush(stderr);
  return 0;   /* then Lua aborts */
}

/* The worker context of the running thread (NULL on the main thread):
 * each state is used by one thread only, so the thread tells the state.
 * A host that loads sluice as a module keeps its states' extra space. */
static _Thread_local wctx *thread_ctx;

static wctx *ctx_of(lua_State *L) {
  (void)L;
  return thread_ctx;
}

void sl_rt_note_memory(lua_State *L, int idx) {
  wctx *c = ctx_of(L);
  size_t len;
  const char *msg = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
  static const char oom[] = "not enough memory";
  if (!c || !msg || len < sizeof oom - 1 || strcmp(msg + len - (sizeof oom - 1), oom) != 0 ||
      !sl_pool_refused(c->pool, 0))
    return;
  idx = lua_absindex(L, idx);
  size_t lim = sl_pool_limit(c->pool);
  if (lim % (1024 * 1024) == 0) lua_pushfstring(L, "%s (worker %d limit %d MiB)", msg, c->index + 1, (int)(lim >> 20));
  else if (lim % 1024 == 0) lua_pushfstring(L, "%s (worker %d limit %d KiB)", msg, c->index + 1, (int)(lim >> 10));
  else lua_pushfstring(L, "%s (worker %d limit %I bytes)", msg, c->index + 1, (lua_Integer)lim);
  lua_replace(L, idx);
}

int sl_rt_place(lua_State *L) {
  wctx *c = ctx_of(L);
  return c ? c->index : -1;
}

void sl_rt_install_snapshot(lua_State *L, sl_msg *m) {
  wctx *c = ctx_of(L);
  if (c) sl_snap_install(L, &c->snap, m);
}

/* __index of a worker's globals: a name missing from the worker's own
 * globals comes from the snapshot (snapshot.c). */
static int l_global_index(lua_State *L) {
  /* stack: G name */
  wctx *c = ctx_of(L);
  if (!c || !c->snap || lua_type(L, 2) != LUA_TSTRING) return 0;
  return sl_snap_lookup(L, c->snap, 2);
}

static int open_module(lua_State *L);

/* Sets up a new state (main or worker): libraries (gmatch and lower with
 * their fast paths), embedded modules,
 * line-atomic print, the sluice module as a global. */
static void setup_state(lua_State *L) {
  luaL_openlibs(L);
  sl_strfast_open(L);
  preload_embedded(L);
  lua_pushcfunction(L, l_print);
  lua_setglobal(L, "print");
  luaL_requiref(L, "sluice", open_module, 1);
  lua_pop(L, 1);
  /* the parts of the module written in Lua add themselves to it */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sluice.stages");
  lua_call(L, 1, 0);
}

static void *worker_start(int index, void *ud) {
  wctx *c = calloc(1, sizeof *c);
  if (!c) abort();
  c->index = index;
  atomic_init(&c->interrupt_seq, 0);
  atomic_init(&c->running, 0);
  atomic_init(&c->raised_seq, 0);
  c->L = sl_rt_newstate(&c->pool);
  if (!c->L) abort();
  lua_atpanic(c->L, worker_panic);
  *(wctx **)lua_getextraspace(c->L) = c;
  thread_ctx = c;   /* worker_start runs on the worker's thread */
  setup_state(c->L);
  sl_snap_init_cache(c->L);
  /* set after the set-up, which must not fail; what it took counts */
  sl_pool_set_limit(c->pool, sl_rt_g.memory_limit);
  lua_rawgeti(c->L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);  /* stack: G */
  lua_createtable(c->L, 0, 1);
  lua_pushcfunction(c->L, l_global_index);
  lua_setfield(c->L, -2, "__index");
  lua_setmetatable(c->L, -2);
  lua_pop(c->L, 1);
  return c;
}

/* ---- interrupting workers ---------------------------------------------------- */

/* 1 when the handler the worker runs now was asked to stop. */
static int interrupt_pending(wctx *c) {
  return atomic_load(&c->interrupt_seq) == sl_sched_seq();
}

/* Raises the pending interruption. It is used up by this raise, except
 * once the runtime closes: then the hook stays, so a callback that catches
 * the error with pcall is interrupted again at its next instruction. */
static int raise_interrupt(lua_State *L, wctx *c) {
  atomic_store(&c->raised_seq, sl_sched_seq());
  if (!atomic_load(&closing)) {
    atomic_store(&c->interrupt_seq, 0);
    lua_sethook(L, NULL, 0, 0);
  }
  /* no position: the traceback says where the callback was */
  lua_pushliteral(L, "interrupted");
  return lua_error(L);
}

/* Hook on a worker state: raises "interrupted" inside the handler it was
 * meant for (a hook left over from an earlier handler just goes away). */
static void worker_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  wctx *c = ctx_of(L);
  if (interrupt_pending(c)) raise_interrupt(L, c);
  else lua_sethook(L, NULL, 0, 0);
}

/* Scheduler hook, on the interrupting thread. */
static void worker_interrupt(void *ctx, uint64_t seq) {
  wctx *c = ctx;
  /* once per handler: a second request would land in the error's
   * unwinding (a flow's error handler, terminate); at exit it always goes */
  if (atomic_load(&c->raised_seq) == seq && !atomic_load(&closing)) return;
  atomic_store(&c->interrupt_seq, seq);
  lua_sethook(c->L, worker_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

int sl_rt_interrupt_workers(void) {
  return sl_rt_g.sched ? sl_sched_interrupt(sl_rt_g.sched) : 0;
}

static int runs(void *ctx, void *ud) {
  return atomic_load(&((wctx *)ctx)->running) == *(uint64_t *)ud;
}

int sl_rt_interrupt_running(uint64_t id) {
  return sl_rt_g.sched && id ? sl_sched_interrupt_if(sl_rt_g.sched, runs, &id) : 0;
}

static void worker_stop(void *ctx) {
  wctx *c = ctx;
  lua_sethook(c->L, NULL, 0, 0);   /* no interruption reaches it any more */
  sl_stage_close_place(c->index);
  lua_close(c->L);
  sl_pool_free(c->pool);
  sl_snap_release(c->snap);
  sl_key_canon_release();
  free(c);
}

/* Runs a task: decodes {fn, args...}, calls it, posts the results back. */
static void run_task(wctx *c, sl_msg *m) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  sl_msg *r = sl_msg_new(SL_M_TASK_DONE);
  if (!r) abort();
  r->to = m->to;
  char err[256];
  sl_buf out = SL_BUF_INIT;
  if (sl_decode(L, m->data, m->len, err, sizeof err) != 0) {
    lua_pushfstring(L, "sluice.task: %s", err);
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushliteral(L, "");
    lua_rawseti(L, -2, 2);
  } else {
    /* stack: {fn, args...} */
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    lua_rawgeti(L, -1, 0);
    lua_Integer nargs = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (nargs > n - 1) nargs = n - 1;
    luaL_checkstack(L, (int)nargs + 4, "task arguments");
    for (lua_Integer i = 1; i <= nargs + 1; i++) lua_rawgeti(L, top + 1, i);
    int st = sl_pcall(L, (int)nargs, LUA_MULTRET);
    if (st == LUA_OK) {
      int nres = lua_gettop(L) - top - 1;
      lua_createtable(L, nres, 1);                     /* stack: args res... t */
      lua_pushinteger(L, nres);
      lua_setfield(L, -2, "n");
      for (int i = 1; i <= nres; i++) {
        lua_pushvalue(L, top + 1 + i);
        lua_rawseti(L, -2, i);
      }
      r->n = 1;
    } else {                                           /* stack: args err tb */
      lua_createtable(L, 2, 0);
      lua_insert(L, -3);
      lua_rawseti(L, -3, 2);
      lua_rawseti(L, -2, 1);
    }
  }
  if (sl_encode(L, -1, &out, r->n ? "results" : "error", err, sizeof err) != 0) {
    sl_buf_free(&out);
    lua_pushfstring(L, "sluice.task: %s", err);
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    r->n = 0;
    sl_encode(L, -1, &out, "error", err, sizeof err);
  }
  r->data = sl_buf_take(&out, &r->len);
  lua_settop(L, top);
  sl_inbox_post(sl_sched_main(sl_rt_g.sched), r);
}

static void worker_handle(void *ctx, sl_msg *m) {
  wctx *c = ctx;
  sl_rt_install_snapshot(c->L, m);
  /* a message serves one stage (or one task): m->to names it, so that
   * sl_rt_interrupt_running can aim at the callback it runs */
  atomic_store(&c->running, m->to);
  sl_pool_refused(c->pool, 1);
  if (m->kind == SL_M_TASK) {
    run_task(c, m);
    sl_msg_free(m);
  } else if (!(sl_rt_g.worker_handler && sl_rt_g.worker_handler(c->L, c->index, m))) {
    sl_msg_free(m);   /* a handler that takes m frees it: m is not read after */
  }
  atomic_store(&c->running, 0);
  sl_pool_tune_gc(c->pool, c->L);
}

/* ---- main thread waits ------------------------------------------------------ */

static sl_msg *done_tasks;   /* SL_M_TASK_DONE messages not yet awaited (main thread only) */

/* Tasks started by the main thread since sl_rt_forget_started: what
 * Ctrl-C interrupts (main thread only). */
static uint64_t *started_tasks;
static size_t ntasks, captasks;

static void note_task(uint64_t id) {
  if (ntasks == captasks) {
    size_t cap = captasks ? captasks * 2 : 16;
    uint64_t *p = realloc(started_tasks, cap * sizeof *p);
    if (!p) return;   /* only Ctrl-C's reach shrinks */
    started_tasks = p;
    captasks = cap;
  }
  started_tasks[ntasks++] = id;
}

void sl_rt_forget_started(void) {
  ntasks = 0;
  sl_stage_forget_started();
}

void sl_rt_interrupt_started(void) {
  for (size_t i = 0; i < ntasks; i++) sl_rt_interrupt_running(started_tasks[i]);
  sl_stage_interrupt_started();
}

/* After a Ctrl-C the entry is interrupted again every REINTERRUPT_MS
 * while it runs on, so that no pcall can hold it. */
#define REINTERRUPT_MS 100

static int interrupt_due(void) {
  if (sl_rt_g.interrupted) return 1;
  return sl_rt_g.sigint_seen && sl_rt_g.entry_running && sl_now_ms() - sl_rt_g.interrupted_at >= REINTERRUPT_MS;
}

static void raise_main_interrupt(lua_State *L) {
  sl_rt_g.interrupted = 0;
  sl_rt_g.interrupted_at = sl_now_ms();
  /* the SIGINT handler armed a hook at every instruction; from now on it
   * only looks now and then whether the entry is due again */
  lua_sethook(sl_rt_g.L, sl_rt_interrupt_hook, LUA_MASKCOUNT, 1000);
  sl_rt_interrupt_started();
  luaL_error(L, "interrupted");
}

void sl_rt_interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (interrupt_due()) raise_main_interrupt(L);
}

void sl_rt_check_interrupt(lua_State *L) {
  if (interrupt_due()) raise_main_interrupt(L);
}

int sl_rt_pump(lua_State *L, int64_t timeout_ms) {
  sl_rt_check_interrupt(L);
  if (timeout_ms < 0 || timeout_ms > 10) timeout_ms = 10;  /* poll for Ctrl-C */
  sl_msg *m = sl_inbox_wait(sl_sched_main(sl_rt_g.sched), timeout_ms);
  sl_rt_check_interrupt(L);
  if (!m) return 0;
  if (m->kind == SL_M_TASK_DONE) {
    m->next = done_tasks;
    done_tasks = m;
  } else if (!(sl_rt_g.main_handler && sl_rt_g.main_handler(L, m))) {
    sl_msg_free(m);
  }
  return 1;
}

/* ---- sluice.* functions ----------------------------------------------------- */

static int l_workers(lua_State *L) {
  lua_pushinteger(L, sl_rt_g.nworkers);
  return 1;
}

static int is_main(lua_State *L) { return ctx_of(L) == NULL; }

/* now + ms, or INT64_MAX when that is past the clock's range (ms >= 0) */
static int64_t deadline_after(lua_Integer ms) {
  int64_t now = sl_now_ms();
  return ms > INT64_MAX - now ? INT64_MAX : now + ms;
}

static int l_sleep(lua_State *L) {
  lua_Integer ms = sl_arg_integer(L, 1, 0, "sluice.sleep", "ms");
  if (!is_main(L)) {   /* a worker just blocks its thread, a slice at a time */
    wctx *c = ctx_of(L);
    int64_t deadline = deadline_after(ms);
    for (;;) {
      if (interrupt_pending(c)) return raise_interrupt(L, c);
      int64_t left = deadline - sl_now_ms();
      if (left <= 0) break;
      if (left > 50) left = 50;
      struct timespec ts = {0, (long)left * 1000000};
      nanosleep(&ts, NULL);
    }
    return 0;
  }
  int64_t deadline = deadline_after(ms);
  for (;;) {
    int64_t left = deadline - sl_now_ms();
    if (left <= 0) break;
    sl_rt_pump(L, left);
  }
  return 0;
}

/* sluice._pump([ms]): handles main-thread messages for up to ms (one at
 * least when available); used by the Lua library's waits. */
static int l_pump(lua_State *L) {
  lua_Integer ms = luaL_optinteger(L, 1, 0);
  if (!is_main(L)) return 0;
  lua_pushboolean(L, sl_rt_pump(L, ms));
  return 1;
}

static int l_inspect(lua_State *L) {
  lua_settop(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sluice.inspect");
  lua_call(L, 1, 1);                              /* stack: v opts inspect */
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* sluice.task(fn, ...) -> task handle */
static int l_task(lua_State *L) {
  if (!lua_isfunction(L, 1)) sl_arg_fail(L, 1, "sluice.task", "fn must be a function");
  if (!is_main(L)) return luaL_error(L, "sluice.task: only the main thread may start tasks");
  int n = lua_gettop(L);
  lua_createtable(L, n, 0);                       /* stack: fn args... t */
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n - 1);
  lua_rawseti(L, -2, 0);
  sl_buf b = SL_BUF_INIT;
  char err[256];
  if (sl_encode(L, -1, &b, "task", err, sizeof err) != 0) {
    sl_buf_free(&b);
    return sl_rt_codec_error(L, "sluice.task", err);
  }
  static int rr;
  int w = rr++ % sl_rt_g.nworkers;
  sl_msg *m = sl_msg_new(SL_M_TASK);
  if (!m) {
    sl_buf_free(&b);
    return luaL_error(L, "sluice.task: out of memory");
  }
  m->to = sl_rt_id();
  m->data = sl_buf_take(&b, &m->len);
  sl_rt_attach_snapshot(L, m);
  sl_handle_push(L, SL_H_TASK, m->to, (uint64_t)w);
  note_task(m->to);
  sl_inbox_post(sl_sched_inbox(sl_rt_g.sched, w), m);
  return 1;
}

static sl_msg *take_done(uint64_t id) {
  for (sl_msg **p = &done_tasks; *p; p = &(*p)->next)
    if ((*p)->to == id) {
      sl_msg *m = *p;
      *p = m->next;
      m->next = NULL;
      return m;
    }
  return NULL;
}

/* The timeout_ms argument at idx of a wait named fn: nil (or none) is -1,
 * "no limit"; otherwise a number with an integer value >= 0, or an error
 * naming fn and the value. */
static lua_Integer check_timeout(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return -1;
  int isint = 0;
  lua_Integer t = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
  if (!isint || t < 0) {
    lua_pushcfunction(L, l_inspect);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    luaL_error(L, "%s: timeout must be an integer >= 0, got %s", fn, lua_tostring(L, -1));
  }
  return t;
}

/* The deadline of a wait of timeout ms from now (-1: none); a timeout too
 * large to add to the clock has none either. */
static int64_t deadline_of(lua_Integer timeout) {
  if (timeout < 0) return -1;
  int64_t now = sl_now_ms();
  return timeout > INT64_MAX - now ? -1 : now + timeout;
}

/* task:await([timeout_ms]) -> results of fn, or raises its error. */
static int l_task_await(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_TASK, "task:await", "task");
  lua_Integer timeout = check_timeout(L, 2, "task:await");
  if (!is_main(L)) return luaL_error(L, "task:await: only the main thread may wait");
  uint64_t id = h->id;
  int64_t deadline = deadline_of(timeout);
  sl_msg *m;
  lua_getfield(L, LUA_REGISTRYINDEX, "sluice.awaited");  /* results kept for a second await */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "sluice.awaited");
  }
  int awaited = lua_gettop(L);
  while (!(m = take_done(id))) {
    if (deadline >= 0 && sl_now_ms() >= deadline)
      return luaL_error(L, "task:await: timed out after %I ms", timeout);
    if (lua_rawgeti(L, awaited, (lua_Integer)id) != LUA_TNIL)
      return luaL_error(L, "task:await: the task was already awaited");
    lua_pop(L, 1);
    sl_rt_pump(L, deadline >= 0 ? deadline - sl_now_ms() : -1);
  }
  lua_pushboolean(L, 1);
  lua_rawseti(L, awaited, (lua_Integer)id);
  char err[256];
  int ok = (int)m->n;
  int st = sl_decode(L, m->data, m->len, err, sizeof err);
  sl_msg_free(m);
  if (st != 0) return luaL_error(L, "task:await: %s", err);
  if (!ok) {                                             /* stack: {err, tb} */
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    const char *tb = lua_tostring(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING && tb && *tb) {
      lua_pushfstring(L, "%s\n[task on worker %d] %s", lua_tostring(L, -2), (int)h->aux + 1, tb);
      return lua_error(L);
    }
    lua_pop(L, 1);
    return lua_error(L);
  }
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  return n;
}

/* task:done() -> true once the task's result has arrived (never waits). */
static int l_task_done(lua_State *L) {
  sl_handle *h = sl_arg_self(L, SL_H_TASK, "task:done", "task");
  if (!is_main(L)) return luaL_error(L, "task:done: only the main thread may check tasks");
  for (sl_msg *m = done_tasks; m; m = m->next)
    if (m->to == h->id) {
      lua_pushboolean(L, 1);
      return 1;
    }
  /* a task already awaited is done too */
  int awaited = lua_getfield(L, LUA_REGISTRYINDEX, "sluice.awaited") == LUA_TTABLE &&
                lua_rawgeti(L, -1, (lua_Integer)h->id) != LUA_TNIL;
  lua_pushboolean(L, awaited);
  return 1;
}

/* sluice._trim_heap() -> the 64 KiB slabs of this state's allocator
 * given back to the system (alloc.c; 0 for a state with another
 * allocator): a reduce's end calls it after its full collection. */
static int l_trim_heap(lua_State *L) {
  void *ud;
  sl_pool *pool = lua_getallocf(L, &ud) == sl_pool_alloc ? ud : NULL;
  lua_pushinteger(L, pool ? (lua_Integer)sl_pool_trim(pool) : 0);
  return 1;
}

/* The sluice table (C part); sluice.stages adds the Lua part. */
static int open_module(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"workers", l_workers}, {"sleep", l_sleep}, {"inspect", l_inspect},
    {"task", l_task}, {"_pump", l_pump}, {"_pin_globals", sl_snap_pin}, {"_trim_heap", l_trim_heap},
    {NULL, NULL}};
  static const luaL_Reg task_methods[] = {{"await", l_task_await}, {"done", l_task_done}, {NULL, NULL}};
  for (int k = 1; k < SL_H_NKINDS; k++) sl_rt_handle_methods(L, k, (luaL_Reg[]){{NULL, NULL}});
  sl_rt_handle_methods(L, SL_H_TASK, task_methods);
  luaL_newlib(L, funcs);                            /* stack: sluice */
  sl_keys_open(L);
  lua_pushliteral(L, SLUICE_VERSION);
  lua_setfield(L, -2, "version");
  sl_stage_open(L);
  sl_lines_open(L);
  lua_setfield(L, -2, "_lines");
  { void sl_progress_open(lua_State *); sl_progress_open(L); }   /* progress.c: counters, clock */
  sl_window_open_lua(L);
  lua_setfield(L, -2, "_window");
  sl_outbox_open(L);
  sl_rawbatch_open(L);
  sl_bytecode_open(L);
  sl_strfast_funcs(L);
  sl_redis_open_lua(L);
  lua_setfield(L, -2, "_redis");
  return 1;
}

static int main_handler(lua_State *L, sl_msg *m) { return sl_stage_handle(L, PLACE_MAIN, m); }

int sl_rt_open(lua_State *L, int nworkers) {
  *(wctx **)lua_getextraspace(L) = NULL;   /* marks the main state */
  sl_rt_g.L = L;
  sl_rt_g.nworkers = nworkers;
  sl_rt_g.worker_handler = sl_stage_handle;
  sl_rt_g.main_handler = main_handler;
  sl_stage_init(nworkers);
  setup_state(L);
  sl_snap_record_baseline(L);
  sl_sched_hooks hooks = {worker_start, worker_handle, worker_stop, NULL, worker_interrupt};
  int rc = sl_sched_start(nworkers, &hooks, &sl_rt_g.sched);
  if (rc != 0) return rc;
  lua_getglobal(L, "sluice");
  return 0;
}

/* Whether the global print of L is the base library's own (found by
 * asking a fresh state of the same Lua library for its print). */
static int print_is_stock(lua_State *L) {
  lua_getglobal(L, "print");
  lua_CFunction f = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  lua_State *F = f ? luaL_newstate() : NULL;
  if (!F) return 0;
  luaL_requiref(F, "_G", luaopen_base, 1);
  lua_getglobal(F, "print");
  int same = lua_tocfunction(F, -1) == f;
  lua_close(F);
  return same;
}

int sl_rt_open_host(lua_State *L, int nworkers) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  sl_rt_g.L = lua_tothread(L, -1);   /* require may run in a coroutine */
  lua_pop(L, 1);
  sl_rt_g.nworkers = nworkers;
  sl_rt_g.worker_handler = sl_stage_handle;
  sl_rt_g.main_handler = main_handler;
  sl_stage_init(nworkers);
  preload_embedded(L);
  if (print_is_stock(L)) {   /* the same output, in one locked write */
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");
  }
  luaL_requiref(L, "sluice", open_module, 0);   /* package.loaded.sluice, no global */
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sluice.stages");
  lua_call(L, 1, 0);
  sl_snap_record_baseline(L);
  sl_sched_hooks hooks = {worker_start, worker_handle, worker_stop, NULL, worker_interrupt};
  int rc = sl_sched_start(nworkers, &hooks, &sl_rt_g.sched);
  if (rc != 0) return rc;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "sluice");
  lua_remove(L, -2);
  return 0;
}

int sl_rt_close(int64_t grace_ms) {
  sl_stage_shutdown(sl_rt_g.L);
  atomic_store(&closing, 1);
  int stuck = sl_sched_stop_within(sl_rt_g.sched, grace_ms);
  if (stuck) {
    for (int i = 0; i < sl_rt_g.nworkers; i++)
      if (sl_sched_running(sl_rt_g.sched, i))
        fprintf(stderr, "sluice: worker %d did not stop within %d ms (busy in a C call?);"
                " exiting without waiting for it\n", i + 1, (int)grace_ms);
    fflush(stderr);
    return stuck;
  }
  while (done_tasks) {
    sl_msg *m = done_tasks;
    done_tasks = m->next;
    sl_msg_free(m);
  }
  sl_snap_unpin();
  sl_rt_g.sched = NULL;
  sl_stage_close(sl_rt_g.L);
  return 0;
}
