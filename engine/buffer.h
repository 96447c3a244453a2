/* buffer: a producer's event buffer (GenStage.Buffer, SEMANTICS §1.5).
 *
 * A FIFO of events, held as the batch views that were pushed (no per-event
 * copy), with info markers (opaque uint64 tokens: the messages of
 * stage:send) between them. An info is deliverable once every event pushed
 * before it has been taken or discarded. The size limit counts events only;
 * when a push overflows it, SL_KEEP_FIRST drops the incoming events and
 * SL_KEEP_LAST drops the oldest ones (releasing the infos displaced with
 * them).
 *
 * Typical producer loop, with `demand` the dispatcher's appetite:
 *
 *     sl_buffer_push(b, &batch, &discarded);   // warn once if discarded
 *     while (sl_buffer_pop_info(b, &tok)) deliver(tok);
 *     ...
 *     while (demand > 0 && sl_buffer_count(b) > 0) {
 *       sl_buffer_take_batch(b, demand, &out);  // dispatch out, demand -= n
 *       while (sl_buffer_pop_info(b, &tok)) deliver(tok);
 *     }
 *
 * A take stops at the next info marker, so delivering the ready infos
 * between takes keeps infos and events in their pushed order.
 * One owner; not thread-safe. */
#ifndef SLUICE_BUFFER_H
#define SLUICE_BUFFER_H
#include <stddef.h>
#include <stdint.h>
#include "batch.h"

typedef struct sl_buffer sl_buffer;

enum { SL_KEEP_LAST = 0, SL_KEEP_FIRST = 1 };

/* No size limit (the producer_consumer default, math.huge in Lua). */
#define SL_BUFFER_UNLIMITED SIZE_MAX

/* Creates an empty buffer holding at most size events (SL_BUFFER_UNLIMITED
 * for no limit; 0 is SL_EINVAL, as buffer_size must be >= 1) that keeps
 * SL_KEEP_FIRST or SL_KEEP_LAST events on overflow. */
int sl_buffer_new(size_t size, int keep, sl_buffer **out);

/* Releases every view still held and the buffer. */
void sl_buffer_free(sl_buffer *b);

/* Appends the events of *batch. The buffer takes the caller's view (which
 * becomes SL_BATCH_EMPTY) and sets *discarded to the number of events the
 * size limit threw away (incoming ones with SL_KEEP_FIRST, the oldest with
 * SL_KEEP_LAST). Infos displaced by SL_KEEP_LAST become ready for
 * sl_buffer_pop_info. On SL_ENOMEM nothing changes and the caller keeps
 * its view. */
int sl_buffer_push(sl_buffer *b, sl_batch *batch, size_t *discarded);

/* Places an info marker behind every event held. Returns 1 when nothing
 * is ahead of it (no events, no undelivered infos): the caller delivers it
 * now and the buffer does not keep it; 0 when it was queued; SL_ENOMEM. */
int sl_buffer_push_info(sl_buffer *b, uint64_t token);

/* Pops the oldest ready info (every event pushed before it is gone) into
 * *token and returns 1; returns 0 when none is ready. */
int sl_buffer_pop_info(sl_buffer *b, uint64_t *token);

/* Takes up to n of the oldest events, stopping early at the next info
 * marker that is not ready yet, as views stored into out[0..max_out-1]
 * (stored views are the caller's to release). *nout is the number of
 * views stored; returns the number of events taken (0 when empty). */
size_t sl_buffer_take(sl_buffer *b, size_t n, sl_batch *out, size_t max_out,
                      size_t *nout);

/* Like sl_buffer_take, but returns the events as one batch in *out (the
 * caller's to release; SL_BATCH_EMPTY when nothing was taken): a slice
 * when they lie in one pushed batch, a gathered copy otherwise. Returns 0
 * or SL_ENOMEM (nothing taken then). */
int sl_buffer_take_batch(sl_buffer *b, size_t n, sl_batch *out);

/* Number of events held (infos are not counted). */
size_t sl_buffer_count(const sl_buffer *b);

/* Number of info markers held, ready or not. */
size_t sl_buffer_infos(const sl_buffer *b);
#endif
