/* A bump allocator. Decoded messages and everything built to answer them live
 * in one arena that is reset or freed after dispatch: no per-field free. */
#ifndef USP_ARENA_H
#define USP_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct usp_arena;

/* `chunk` is the size of the first block (0 picks a default); later blocks
 * grow as needed. Returns NULL when out of memory. */
struct usp_arena *usp_arena_new(size_t chunk);
void usp_arena_free(struct usp_arena *a);
/* Forgets every allocation but keeps the first block for reuse. */
void usp_arena_reset(struct usp_arena *a);
/* Memory aligned for any type; NULL when out of memory. */
void *usp_arena_alloc(struct usp_arena *a, size_t n);
void *usp_arena_zalloc(struct usp_arena *a, size_t n);
char *usp_arena_strdup(struct usp_arena *a, const char *s);
char *usp_arena_strndup(struct usp_arena *a, const char *s, size_t n);
char *usp_arena_printf(struct usp_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Resizes `p` (an allocation of `old_n` bytes from this arena, or NULL) to
 * `new_n` bytes: in place when `p` is the arena's latest allocation and the
 * block has room, otherwise by copying into a new allocation (the old one is
 * not reclaimed). Growing arrays one element at a time stays linear. NULL
 * when out of memory (p is then unchanged). */
void *usp_arena_realloc(struct usp_arena *a, void *p, size_t old_n, size_t new_n);
/* Bytes handed out so far (for tests and benchmarks). */
size_t usp_arena_used(const struct usp_arena *a);
/* A protobuf-c allocator whose free is a no-op, backed by the arena. */
ProtobufCAllocator *usp_arena_allocator(struct usp_arena *a);

#endif
