/* Chunked bump allocator. The arena and its first chunk are one malloc, so a
 * short-lived arena that fits its first chunk costs one malloc/free pair in
 * total. Later chunks double in size up to a cap; an allocation too large
 * for a normal chunk gets a chunk of its own, linked behind the chunk being
 * filled so the free space there is not wasted. */
#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/arena.h"

#define ALIGN         alignof(max_align_t)
#define DEFAULT_CHUNK 4096
#define MAX_CHUNK     (1024 * 1024)

struct chunk {
    struct chunk *next; /* older chunks */
    size_t size;        /* usable bytes after the header */
    size_t off;         /* bytes used */
};

struct usp_arena {
    struct chunk *head;  /* every chunk, newest first; `first` is last */
    struct chunk *cur;   /* the chunk small allocations bump in */
    struct chunk *first; /* lives in the same malloc as the arena */
    size_t next_size;    /* usable size of the next normal chunk */
    size_t used;
    void *last; /* latest allocation in `cur`, for in-place realloc */
    ProtobufCAllocator pa;
};

static size_t round_up(size_t n)
{
    return (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
}

#define ARENA_HDR round_up(sizeof(struct usp_arena))
#define CHUNK_HDR round_up(sizeof(struct chunk))

static unsigned char *chunk_data(struct chunk *c)
{
    return (unsigned char *)c + CHUNK_HDR;
}

static void *pa_alloc(void *data, size_t n)
{
    return usp_arena_alloc(data, n);
}

static void pa_free(void *data, void *p)
{
    /* Everything goes when the arena is reset or freed. */
}

struct usp_arena *usp_arena_new(size_t chunk)
{
    if (chunk == 0)
        chunk = DEFAULT_CHUNK;
    chunk = round_up(chunk);
    if (chunk == 0 || chunk > SIZE_MAX - ARENA_HDR - CHUNK_HDR)
        return NULL;
    struct usp_arena *a = malloc(ARENA_HDR + CHUNK_HDR + chunk);
    if (!a)
        return NULL;
    struct chunk *c = (struct chunk *)((unsigned char *)a + ARENA_HDR);
    c->next = NULL;
    c->size = chunk;
    c->off = 0;
    *a = (struct usp_arena){
        .head = c,
        .cur = c,
        .first = c,
        .next_size = chunk < MAX_CHUNK ? chunk * 2 : chunk,
        .pa = {.alloc = pa_alloc, .free = pa_free, .allocator_data = a},
    };
    return a;
}

static void free_chunks(struct usp_arena *a)
{
    struct chunk *c = a->head;
    while (c) {
        struct chunk *next = c->next;
        if (c != a->first)
            free(c);
        c = next;
    }
}

void usp_arena_free(struct usp_arena *a)
{
    if (!a)
        return;
    free_chunks(a);
    free(a);
}

void usp_arena_reset(struct usp_arena *a)
{
    if (!a)
        return;
    free_chunks(a);
    a->first->next = NULL;
    a->first->off = 0;
    a->head = a->cur = a->first;
    a->next_size = a->first->size < MAX_CHUNK ? a->first->size * 2 : a->first->size;
    a->used = 0;
    a->last = NULL;
}

static struct chunk *chunk_new(size_t size)
{
    if (size > SIZE_MAX - CHUNK_HDR)
        return NULL;
    struct chunk *c = malloc(CHUNK_HDR + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->off = 0;
    return c;
}

void *usp_arena_alloc(struct usp_arena *a, size_t n)
{
    if (!a)
        return NULL;
    if (n == 0)
        n = 1; /* distinct pointers for distinct calls */
    if (n > SIZE_MAX - ALIGN)
        return NULL;
    n = round_up(n);
    struct chunk *c = a->cur;
    if (c->size - c->off < n) {
        if (n > a->next_size / 2) {
            /* A chunk of its own, kept out of the bump path. */
            struct chunk *big = chunk_new(n);
            if (!big)
                return NULL;
            big->off = n;
            big->next = a->head;
            a->head = big;
            a->used += n;
            return chunk_data(big);
        }
        c = chunk_new(a->next_size);
        if (!c)
            return NULL;
        if (a->next_size < MAX_CHUNK)
            a->next_size *= 2;
        c->next = a->head;
        a->head = a->cur = c;
    }
    void *p = chunk_data(c) + c->off;
    c->off += n;
    a->used += n;
    a->last = p;
    return p;
}

void *usp_arena_zalloc(struct usp_arena *a, size_t n)
{
    void *p = usp_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *usp_arena_strndup(struct usp_arena *a, const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *p = usp_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *usp_arena_strdup(struct usp_arena *a, const char *s)
{
    return s ? usp_arena_strndup(a, s, strlen(s)) : NULL;
}

char *usp_arena_printf(struct usp_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = usp_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void *usp_arena_realloc(struct usp_arena *a, void *p, size_t old_n, size_t new_n)
{
    if (!a)
        return NULL;
    if (!p)
        return usp_arena_alloc(a, new_n);
    if (new_n > SIZE_MAX - ALIGN)
        return NULL;
    struct chunk *c = a->cur;
    unsigned char *top = chunk_data(c) + c->off;
    size_t old_r = round_up(old_n ? old_n : 1);
    size_t new_r = round_up(new_n ? new_n : 1);
    if (p == a->last && (unsigned char *)p + old_r == top) {
        size_t start = c->off - old_r;
        if (new_r <= c->size - start) {
            c->off = start + new_r;
            a->used = a->used - old_r + new_r;
            return p;
        }
    }
    if (new_n <= old_n)
        return p;
    void *q = usp_arena_alloc(a, new_n);
    if (q)
        memcpy(q, p, old_n);
    return q;
}

size_t usp_arena_used(const struct usp_arena *a)
{
    return a ? a->used : 0;
}

ProtobufCAllocator *usp_arena_allocator(struct usp_arena *a)
{
    return a ? &a->pa : NULL;
}
