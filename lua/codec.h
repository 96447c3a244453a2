/* codec: Lua values <-> bytes, the only way a value crosses from one Lua
 * state to another (API.md §1). Encoding appends to an sl_buf in one pass;
 * decoding reads in one pass and never trusts its input. */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H
#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "buf.h"
#include "batch.h"

/* Deepest table/function nesting accepted by encode and decode. */
#define SL_CODEC_MAX_DEPTH 200

/* Handles (stage, subscription, task, timer) are full userdata that cross
 * by identity: kind plus two ids. Their metatables live in the registry
 * under "sluice.handle.<n>" (n = kind) and are filled in by the binding. */
enum { SL_H_STAGE = 1, SL_H_SUB = 2, SL_H_TASK = 3, SL_H_TIMER = 4, SL_H_FROM = 5, SL_H_NKINDS = 6 };
typedef struct sl_handle {
  int kind;
  uint64_t id;
  uint64_t aux;
} sl_handle;

/* Pushes a new handle userdata of the given kind. */
sl_handle *sl_handle_push(lua_State *L, int kind, uint64_t id, uint64_t aux);
/* The handle at idx, or NULL when the value is not a handle (of that kind;
 * kind 0 accepts any kind). */
sl_handle *sl_handle_test(lua_State *L, int idx, int kind);

/* Encodes the value at idx, appending to out. root names the value in
 * error messages ("events[3]"). On failure returns a negative status,
 * writes a message to err ("cannot send a userdata value (at
 * events[3].conn)") and leaves out->len as it was. Raises no Lua error
 * (may raise only on Lua memory errors). */
int sl_encode(lua_State *L, int idx, sl_buf *out, const char *root, char *err, size_t errlen);

/* Pushes the index of module names that encoding consults (a table or
 * function that package.loaded reaches crosses by name), for
 * sl_encode_named: a caller that encodes many values one at a time looks
 * it up once. */
void sl_encode_names(lua_State *L);
/* sl_encode with the names index that sl_encode_names pushed, at names. */
int sl_encode_named(lua_State *L, int idx, int names, sl_buf *out, const char *root, char *err, size_t errlen);

/* The tables of the names index at names (the modules, which cross by
 * name), kept alive by the index; NULL when it has none recorded. */
typedef struct sl_modset sl_modset;
const sl_modset *sl_encode_modset(lua_State *L, int names);
int sl_modset_has(const sl_modset *m, const void *p);
/* Appends the encoding of the table at idx when it is a short array of
 * scalars -- keys 1..n for some n from 1 to 127, every value a boolean,
 * number or string, no other key, not a table of mods -- byte for byte
 * what sl_encode writes: 0; 1 (nothing written) for any other table;
 * SL_ENOMEM. The common event ({ts, i}, {word, 1}) without the general
 * path's traversal. Needs 2 free stack slots. */
int sl_encode_array_to(lua_State *L, int idx, const sl_modset *mods, sl_buf *out);
/* Appends the encoding of the table {E1, ..., Ek}, k = #kinds (1..127),
 * from a C closure: E j is the value at x where kinds[j] is 'p', else the
 * next of the closure's upvalues lit_up, lit_up + 1, ...; byte for byte
 * what sl_encode writes for that table when every E is a scalar: 0; 1
 * (nothing written) when one is not; SL_ENOMEM. */
int sl_encode_tuple_to(lua_State *L, const char *kinds, int x, int lit_up, sl_buf *out);

/* Appends the encoding of the nil, boolean, number or string at idx to
 * out: 0, SL_ENOMEM, or 1 (nothing written) for any other type. */
int sl_encode_scalar_to(lua_State *L, int idx, sl_buf *out);
/* Appends the encoding of the table {k, v} for the scalars at k and v
 * (byte for byte what sl_encode writes for it): 0, SL_ENOMEM, or 1
 * (nothing written) when either is not a scalar. */
int sl_encode_pair_to(lua_State *L, int k, int v, sl_buf *out);
/* Appends to bb, for each p in 1..n that gets a pair of the table at t,
 * the event {p, part}: part holds the pairs of t whose key the engine's
 * partition hash of its encoding sends to p (as sluice._hash(k, n) does).
 * 0, SL_ENOMEM, or 1 (nothing appended) when a key or value is not a
 * scalar. */
int sl_encode_split_to(lua_State *L, int t, uint32_t n, sl_batch_builder *bb);

/* Writes the encoding of the nil, boolean, number or string at idx to
 * dst[0..cap) -- the same bytes sl_encode appends -- and returns its
 * length; returns 0 for any other type or when it needs more than cap
 * (strings need 1 + 10 + their length). For hashing scalar keys without
 * a buffer. */
size_t sl_encode_scalar(lua_State *L, int idx, char *dst, size_t cap);

/* Decodes one value from p[0..len) and pushes it. Functions get the
 * receiving state's globals as _ENV. On malformed input returns a negative
 * status with a message in err and pushes nothing: SL_ECORRUPT for bytes
 * that are not a well-formed value, SL_ENOENT for a module or module
 * function that this state cannot resolve by name, SL_ENOMEM. */
int sl_decode(lua_State *L, const char *p, size_t len, char *err, size_t errlen);

/* Encodes every element t[1..#t] of the array at idx as one event of a new
 * batch. A nil element fails ("... is nil"). Error paths are named
 * root[i]... */
int sl_encode_batch(lua_State *L, int idx, sl_batch *out, const char *root, char *err, size_t errlen);

/* The partition key of an encoded event, read from its bytes: the event's
 * field t[index] (field NULL) or t[field] (flen bytes). Returns 1 with
 * *vp, *vlen the key's encoding (the nil encoding when the event is not a
 * table or has no such field), or -1 when the bytes alone cannot say
 * (the key is not a nil, boolean, number or string, the event may be a
 * module table, or the bytes do not parse): decode then (codec_key.c). */
int sl_encoded_field(const char *bytes, size_t len, lua_Integer index, const char *field, size_t flen,
                     const char **vp, size_t *vlen);

/* The integer field of an encoded event, read as sl_encoded_field reads
 * it (field NULL: t[index]): 0 with *out set, or -1 when the bytes do not
 * hold a plain integer there (decode then). {ts, ...}, index 1, takes a
 * few instructions. */
int sl_encoded_int_field(const char *bytes, size_t len, lua_Integer index, const char *field, size_t flen,
                         lua_Integer *out);

/* A combining layer's partial: when the event's bytes encode {p, part}
 * with p a scalar and part a table of pairs of scalars (no array part,
 * no nil), returns the number of pairs and sets *pairs to the first
 * byte of the first key; the pairs follow key, value, key, value ... to
 * the event's end. -1 for anything else. */
int64_t sl_encoded_partial(const char *bytes, size_t len, const char **pairs);
/* The partition hash of an encoded key: the engine's hash of its bytes,
 * except that a float with an integer value hashes as that integer (1.0
 * as 1, -0.0 as 0), as a Lua table keeps it, and a table hashes its
 * canonical encoding (sl_key_canon): keys equal in Lua, and equal tables,
 * go to one partition. */
uint64_t sl_key_hash(const char *bytes, size_t len);
/* The canonical encoding of an encoded value (codec_key.c): equal tables
 * (as keys: equal scalars, tables equal the same way) have the same
 * canonical bytes however they were built. Returns 0 when bytes are
 * already canonical (out untouched), 1 with out holding them, -1 when the
 * value has no canonical form (it holds a function or the same table
 * twice: compare its own bytes then), the bytes do not parse or memory
 * runs out. Tables are hashed (sl_key_hash)
 * and compared as keys (sluice._key) this way. */
int sl_key_canon(const char *bytes, size_t len, sl_buf *out);
/* Frees the calling thread's working memory of sl_key_canon and
 * sl_key_hash (a worker calls it as it ends). */
void sl_key_canon_release(void);
/* Pushes the scalar encoded at p (a key or value of a partial that
 * sl_encoded_partial checked) and returns where the next value starts. */
const char *sl_push_scalar(lua_State *L, const char *p);

/* Pushes a new array with the batch's events decoded in order. */
int sl_decode_batch(lua_State *L, const sl_batch *b, char *err, size_t errlen);
#endif
