/* rt: the runtime shared by the binding's files: the scheduler, the main
 * state, worker states, message kinds and the main thread's wait loop.
 * Only lua/ includes this. */
#ifndef SLUICE_RT_H
#define SLUICE_RT_H
#include <signal.h>
#include <stdint.h>
#include <lua.h>
#include "sched.h"
#include "codec.h"
#include "alloc.h"

#define SLUICE_VERSION "0.1.0"

/* Message kinds (sl_msg.kind). */
enum {
  SL_M_TASK = 1,      /* main -> worker: data = encoded {fn, args...} */
  SL_M_TASK_DONE,     /* worker -> main: data = encoded result, n = ok */
  SL_M_HOST_FIRST     /* first kind free for other binding files */
};

/* A per-worker hook for message kinds handled outside binding.c: returns
 * 1 when it took the message. */
typedef int (*sl_rt_handler)(lua_State *L, int worker, sl_msg *m);

typedef struct sl_rt {
  sl_sched *sched;
  int nworkers;
  lua_State *L;                     /* main state; main thread only */
  volatile sig_atomic_t interrupted; /* set by the SIGINT handler */
  volatile sig_atomic_t sigint_seen; /* a SIGINT arrived during the current entry */
  sl_rt_handler worker_handler;     /* stage messages, set by stage.c */
  int (*main_handler)(lua_State *L, sl_msg *m);
  int entry_running;                /* 1 while the binary runs an entry (a chunk, a REPL line) */
  int64_t interrupted_at;           /* when "interrupted" was last raised on the main thread */
  size_t memory_limit;              /* bytes per worker state (SLUICE_MEMORY), 0: none; set before sl_rt_open */
} sl_rt;

extern sl_rt sl_rt_g;

/* A new Lua state for the main thread or a worker: allocating from a pool
 * of its own (*pool, freed with sl_pool_free after lua_close), with the
 * generational collector, a panic message, and warn() as in the lua5.4
 * interpreter (off until warn("@on")). NULL when out of memory. */
lua_State *sl_rt_newstate(sl_pool **pool);

/* Opens the runtime with n workers and leaves the sluice module on the
 * stack of the main state L (also stored as global "sluice"). */
int sl_rt_open(lua_State *L, int nworkers);
/* Opens the runtime with n workers on a host's state L (the sluice module
 * loaded by require into a program that embeds Lua): L's main thread
 * becomes the main state, left as the host made it (allocator, panic and
 * warn functions, collector mode, opened libraries and globals); only the
 * embedded library is preloaded, package.loaded.sluice set, and the base
 * library's print (if the global print is still that) replaced by the
 * line-atomic one, which prints the same.
 * Leaves the sluice module on the stack. Raises a Lua error when the
 * library fails to load; returns non-zero when the workers cannot start. */
int sl_rt_open_host(lua_State *L, int nworkers);
/* Stops the workers and closes the runtime. Queued messages are dropped
 * and a worker busy in Lua code is interrupted ("interrupted" raised in
 * the running callback or task, and again at each instruction until it
 * returns). Each worker gets grace_ms (<0: no limit) to end. Returns 0
 * when all were joined and their states closed. Otherwise prints on
 * stderr which workers are still busy (stuck in a C call) and returns how
 * many: nothing is freed then, and the caller must end the process with
 * _exit, without closing the main state. */
int sl_rt_close(int64_t grace_ms);
/* Interrupts the Lua code the workers run now: each worker that is inside
 * a callback or task gets "interrupted" raised there once (a pcall can
 * catch it), and then goes on with its next message. Idle workers are not
 * touched. A worker sleeping in sluice.sleep wakes within 50 ms. Returns
 * how many workers were busy. Main thread (any thread is safe). */
int sl_rt_interrupt_workers(void);

/* Interrupts the callback (or task) with id `id` if a worker runs it
 * now: "interrupted" is raised in it, once per handler run (a later
 * request for the same run is ignored, except at exit). Returns 1 if one
 * was running.
 * Any thread. */
int sl_rt_interrupt_running(uint64_t id);
/* Ctrl-C (main thread): forget the stages and tasks started so far (a new
 * entry begins); interrupt those started since that are running now. */
void sl_rt_forget_started(void);
void sl_rt_interrupt_started(void);
/* The hook the SIGINT handler sets on the main state: raises
 * "interrupted" when Ctrl-C was pressed (and again every 100 ms while the
 * entry runs on, so that a pcall cannot hold it). */
void sl_rt_interrupt_hook(lua_State *L, lua_Debug *ar);

/* The worker (0-based) owning state L, or -1 for the main state. */
int sl_rt_place(lua_State *L);

/* Fresh, process-unique id (> 0). */
uint64_t sl_rt_id(void);

/* lua_pcall with a traceback handler. On error, leaves two values: the
 * error value and a traceback string. Returns the lua_pcall status. */
int sl_pcall(lua_State *L, int nargs, int nresults);

/* Main thread: waits up to timeout_ms for one message and handles it.
 * Raises "interrupted" when Ctrl-C was pressed. Returns 1 if a message was
 * handled. */
int sl_rt_pump(lua_State *L, int64_t timeout_ms);
/* Raises the pending interrupt, if any. */
void sl_rt_check_interrupt(lua_State *L);

/* On a worker whose memory limit refused an allocation: the string at
 * idx, if it ends with "not enough memory", gets " (worker N limit X MiB)"
 * appended. Does nothing elsewhere. */
void sl_rt_note_memory(lua_State *L, int idx);

/* Raises a Lua error "fn: message" after the codec failed. */
int sl_rt_codec_error(lua_State *L, const char *fn, const char *err);

/* Encodes the globals snapshot (API.md §1) into a new object the message
 * carries to a worker; the worker installs it before running anything. */
void sl_rt_attach_snapshot(lua_State *L, sl_msg *m);
/* Worker side: installs the snapshot carried by m, if any. */
void sl_rt_install_snapshot(lua_State *L, sl_msg *m);

/* Line-atomic write to stdout (worker and main output never interleave
 * inside a line). */
void sl_rt_write_line(const char *s, size_t len);
#endif
