/* stage_int: what the binding's stage files share (registry.c, stage.c,
 * stage_msg.c, stage_api.c, stage_opts.c, stage_exit.c). Not for other files: they use
 * lstage.h. */
#ifndef SLUICE_STAGE_INT_H
#define SLUICE_STAGE_INT_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "codec.h"
#include "lstage.h"
#include "rt.h"
#include "sched.h"
#include "stage.h"

/* ---- messages ------------------------------------------------------------------ */

/* The binding's own messages; the protocol between stages (subscribe,
 * ask, events, cancels) is the engine's (engine/stage.h, SL_SM_*). */
enum {
  M_START = SL_M_HOST_FIRST, /* to: stage ref; from: waiter; data: {spec,arg,opts} (n: main ref) */
  M_START_REPLY,   /* to: waiter; n: 1 ok; data: error */
  M_SUBSCRIBE_TO,  /* to: consumer; from: producer ref; n: sub id; data: {opts=, ack=} */
  M_INFO,          /* to: stage; data: message */
  M_CAST,          /* to: stage; data: message */
  M_CALL,          /* to: stage; from: call id; n: op; data: request */
  M_REPLY,         /* to: call id; n: 1 ok / 0 error; data: value */
  M_EXIT           /* to: main; a stage ended (wakes waiters) */
};

/* Internal call operations (M_CALL.n). */
enum { OP_USER, OP_BUFFERED, OP_DEMAND_GET, OP_DEMAND_SET, OP_STATS, OP_STOP, OP_FINISH, OP_SHUTDOWN };

enum { T_PRODUCER = SL_STAGE_PRODUCER, T_PC = SL_STAGE_PC, T_CONSUMER = SL_STAGE_CONSUMER };
static const char *const type_names[] = {"producer", "producer_consumer", "consumer", NULL};
static const char *const cancel_names[] = {"permanent", "transient", "temporary", NULL};

#define REPLY_FLAG ((uint64_t)1 << 63)

/* ---- stage records ------------------------------------------------------------ */

typedef struct selsub {   /* a subscription's selector (consumer side) */
  uint64_t id;
  int ref;                /* registry ref of the function */
  struct selsub *next;
} selsub;

/* The binding's side of a stage: its Lua data and what the Lua callbacks
 * need; the protocol state is the engine record st. */
typedef struct stage {
  sl_stage *st;
  uint64_t ref;
  int type, place;
  lua_State *L;
  int lref;               /* registry: {spec = ..., state = ...} */
  char *name;
  int part_hash;          /* registry ref of the partition hash, or LUA_NOREF */
  lua_Integer key_index;  /* partition by event[key_index] (0: not set) */
  char *key_field;        /* partition by event[key_field] (NULL: not set) */
  int part_names;         /* registry ref of name -> index, or LUA_NOREF */
  uint32_t nparts;
  selsub *sels;
  int sub_opts;           /* stack index of the options while a consumer subscribes */
  uint64_t late;          /* events a window dropped as late (stats().late) */
  int raw_ref;            /* registry ref of its raw batch (rawbatch.c), or LUA_NOREF */
  struct stage *hnext;
} stage;

#define NBUCKETS 256
typedef struct place {
  stage *table[NBUCKETS];
  stage *current;         /* the stage whose callback is running */
  int rr;
} place;

extern place *st_places;     /* index place + 1; each touched by its own thread */
extern const sl_stage_ops st_lua_ops;
extern const char st_NOREPLY_KEY;   /* its address is sluice.NOREPLY */
#define NOREPLY ((void *)&st_NOREPLY_KEY)
/* Main thread: replies that arrived for a wait, and the ids waited for. */
extern sl_msg *st_replies;
extern uint64_t *st_waits;
extern size_t st_nwaits, st_capwaits;
/* Exit: events handed to handle_events so far, events that reached a
 * stage already gone while shutting down, and whether it is. */
extern atomic_uint_fast64_t st_consumed_total, st_lost_at_exit;
extern atomic_int st_shutting_down;

#define EXIT_FINITE 16   /* in st_reg_live's types: a producer that ends by itself */

/* registry.c */
int st_reg_at_exit(uint64_t ref);
uint64_t *st_live_stages(int **types, size_t *n);
uint64_t *st_reg_live(size_t *n);
void st_reg_add(uint64_t ref, const char *name, int type, int finite);
void st_reg_dead(uint64_t ref, const char *reason, size_t len);
void st_reg_free(void);
char *st_reg_name(uint64_t ref);
int st_reg_status(lua_State *L, uint64_t ref);
int st_reg_type(uint64_t ref);
void st_reg_watch(uint64_t ref);
int st_reg_watched(uint64_t ref);
uint64_t st_reg_whereis(const char *name);

/* stage.c */
void st_push_error_reason(lua_State *L);
void st_emit_lua(stage *s, int idx, const char *cb);
char *st_encode_reason(lua_State *L, int idx, size_t *len);
stage *st_find_stage(int p, uint64_t ref);
void st_free_lstage(stage *s);
int st_has_callback(stage *s, const char *cb);
int st_invoke(stage *s, const char *cb, int nargs, int nres);
sl_reason st_lua_reason(lua_State *L, int idx, unsigned flags);
sl_msg *st_msg(uint32_t kind, uint64_t to, uint64_t from, int64_t n);
sl_inbox *st_place_inbox(int place);
place *st_place_of(int p);
void st_post(uint64_t ref, sl_msg *m);
int st_push_callback(stage *s, const char *cb);
const char *st_push_got(lua_State *L, int idx);
void st_push_reason(lua_State *L, const sl_reason *r);
void st_push_stage(lua_State *L, uint64_t ref);
sl_msg *st_reason_msg(lua_State *L, uint32_t kind, uint64_t to, uint64_t sub_id, int idx);
void st_run_emitting(stage *s, const char *cb, int nargs);
void st_set_state(stage *s, int idx);
void st_set_stop_asked(stage *s, int idx);
void st_unlink_stage(stage *s);

/* stage_msg.c */
lua_Integer st_check_timeout(lua_State *L, int idx, lua_Integer def, const char *fn);
int64_t st_deadline_of(int64_t timeout);
int st_call_stage(lua_State *L, uint64_t ref, int op, int arg, int64_t timeout, const char *fn);
void st_check_sendable(lua_State *L, int idx, const char *fn);
stage *st_current_stage(lua_State *L);
sl_msg *st_encode_msg(lua_State *L, int idx, uint32_t kind, uint64_t to, const char *fn);
int st_is_main_thread(lua_State *L);
void st_push_stats(stage *s);
/* Adds the stage's consumer subscriptions and dispatcher to the stats
 * table on top of the stack (progress.c: sluice.graph). */
void st_push_consumers(stage *s);
void st_reply(lua_State *L, uint64_t call_id, int ok, int idx);
stage *st_self_stage(lua_State *L, uint64_t ref);
sl_msg *st_wait_reply(lua_State *L, uint64_t id, int64_t timeout, uint64_t target, const char *fn);

/* stage_api.c */
void st_cast_op(lua_State *L, uint64_t ref, int64_t op, int arg);

/* stage_opts.c: each raises a Lua error naming fn on a bad value. */
/* Subscription options (table at idx, may be nil): pushes a normalised
 * copy. skip_first: the table's [1] is the producer (subscribe_to). */
void st_check_sub_opts(lua_State *L, const char *fn, int idx, int skip_first);
/* A stage given as a handle or a registered name (replaced by its handle). */
int st_check_stage_arg(lua_State *L, int idx, const char *fn, const char *what);
/* sluice.start's options (at idx) for a spec of the given type: pushes
 * the normalised options table. */
void st_check_start_opts(lua_State *L, int idx, int type);

#endif
