/* lstage: GenStage stages in the binding (see stage.c). */
#ifndef SLUICE_LSTAGE_H
#define SLUICE_LSTAGE_H
#include <stdint.h>
#include <lua.h>
#include "sched.h"

#define PLACE_MAIN (-1)

/* A stage reference: id in the low 48 bits, place + 1 above. */
uint64_t sl_ref_make(uint64_t id, int place);
int sl_ref_place(uint64_t ref);

/* Registers stage functions into the sluice table on the stack top. */
void sl_stage_open(lua_State *L);
/* Handles a stage message on a worker or the main thread: 1 if taken. */
int sl_stage_handle(lua_State *L, int place, sl_msg *m);
/* Frees what the stages of the main place and the registry hold. */
void sl_stage_close(lua_State *L);
/* Ctrl-C in the REPL: forget the stages started so far (at the start of
 * an entry), and stop those started since (after an interrupted one). */
void sl_stage_forget_started(void);
void sl_stage_stop_started(lua_State *L);
/* Interrupts the callbacks that the stages started since run now. */
void sl_stage_interrupt_started(void);
/* At exit, before the workers stop: producers finish, what is in flight
 * drains (bounded: 5 s, or 100 ms without progress), the rest stops with
 * "shutdown" (terminate runs); what is still lost is reported on stderr. */
void sl_stage_shutdown(lua_State *L);
/* Sets up the places before the workers start. */
void sl_stage_init(int nworkers);
/* Frees the stages left on worker place p (on its thread, at shutdown). */
void sl_stage_close_place(int p);
#endif
