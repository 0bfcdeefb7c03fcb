/* Arena: alignment, chunk growth, huge allocations, reset, realloc, and use
 * as a protobuf-c allocator. */
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"
#include "usp/arena.h"
#include "usp/codec.h"

#define ALIGN alignof(max_align_t)

static void test_alignment(void)
{
    struct usp_arena *a = usp_arena_new(100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    for (size_t n = 0; n < 300; n++) {
        unsigned char *p = usp_arena_alloc(a, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL((uintptr_t)p % ALIGN, 0);
        memset(p, 0xa5, n);
    }
    usp_arena_free(a);
}

static void test_used_and_zero(void)
{
    struct usp_arena *a = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(usp_arena_used(a), 0);
    unsigned char *p = usp_arena_alloc(a, 1);
    CU_ASSERT_EQUAL(usp_arena_used(a), ALIGN);
    usp_arena_alloc(a, ALIGN + 1);
    CU_ASSERT_EQUAL(usp_arena_used(a), 3 * ALIGN);
    memset(p, 0xff, ALIGN);
    usp_arena_reset(a);
    CU_ASSERT_EQUAL(usp_arena_used(a), 0);
    unsigned char *z = usp_arena_zalloc(a, 64);
    CU_ASSERT_PTR_EQUAL(z, p); /* same memory, dirty before */
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(z[i], 0);
    usp_arena_free(a);
}

static void test_strings(void)
{
    struct usp_arena *a = usp_arena_new(32);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    char *s = usp_arena_strdup(a, "Device.WiFi.");
    CU_ASSERT_STRING_EQUAL(s, "Device.WiFi.");
    CU_ASSERT_STRING_EQUAL(usp_arena_strndup(a, "abcdef", 3), "abc");
    CU_ASSERT_STRING_EQUAL(usp_arena_strndup(a, "ab", 10), "ab");
    CU_ASSERT_PTR_NULL(usp_arena_strdup(a, NULL));
    char *p = usp_arena_printf(a, "%s.%d.%s", "Device.IP.Interface", 42, "Name");
    CU_ASSERT_STRING_EQUAL(p, "Device.IP.Interface.42.Name");
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *q = usp_arena_printf(a, "<%s>", big);
    CU_ASSERT_EQUAL(strlen(q), sizeof big + 1);
    CU_ASSERT_EQUAL(q[0], '<');
    CU_ASSERT_EQUAL(q[sizeof big], '>');
    CU_ASSERT_STRING_EQUAL(s, "Device.WiFi."); /* earlier data intact */
    usp_arena_free(a);
}

static void test_growth(void)
{
    /* Many blocks: every allocation keeps its own bytes. */
    struct usp_arena *a = usp_arena_new(256);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    unsigned char *ptr[2000];
    for (int i = 0; i < 2000; i++) {
        ptr[i] = usp_arena_alloc(a, 1 + i % 200);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ptr[i]);
        memset(ptr[i], i & 0xff, 1 + i % 200);
    }
    int bad = 0;
    for (int i = 0; i < 2000; i++)
        for (int k = 0; k < 1 + i % 200; k++)
            bad += ptr[i][k] != (i & 0xff);
    CU_ASSERT_EQUAL(bad, 0);
    usp_arena_free(a);
}

static void test_huge(void)
{
    struct usp_arena *a = usp_arena_new(256);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    unsigned char *p = usp_arena_alloc(a, 16);
    unsigned char *big = usp_arena_alloc(a, 1 << 20);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    CU_ASSERT_EQUAL((uintptr_t)big % ALIGN, 0);
    memset(big, 1, 1 << 20);
    /* The big block did not end the current one: small ones continue. */
    unsigned char *q = usp_arena_alloc(a, 16);
    CU_ASSERT_PTR_EQUAL(q, p + 16);
    CU_ASSERT_EQUAL(usp_arena_used(a), 32 + (1 << 20));
    /* Reset frees the big block and hands out the first block again. */
    usp_arena_reset(a);
    CU_ASSERT_PTR_EQUAL(usp_arena_alloc(a, 8), p);
    usp_arena_free(a);
}

static void test_reset_keeps_first(void)
{
    struct usp_arena *a = usp_arena_new(128);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    void *first = usp_arena_alloc(a, 10);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_PTR_NOT_NULL(usp_arena_alloc(a, 100));
    usp_arena_reset(a);
    CU_ASSERT_PTR_EQUAL(usp_arena_alloc(a, 10), first);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 50; i++)
            CU_ASSERT_PTR_NOT_NULL(usp_arena_alloc(a, 300));
        usp_arena_reset(a);
    }
    CU_ASSERT_PTR_EQUAL(usp_arena_alloc(a, 1), first);
    usp_arena_free(a);
    usp_arena_free(NULL);
    usp_arena_reset(NULL);
}

static void test_realloc(void)
{
    struct usp_arena *a = usp_arena_new(256);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    char *p = usp_arena_alloc(a, 8);
    memcpy(p, "abcdefgh", 8);
    /* The latest allocation grows in place. */
    char *q = usp_arena_realloc(a, p, 8, 40);
    CU_ASSERT_PTR_EQUAL(q, p);
    CU_ASSERT_EQUAL(usp_arena_used(a), 48);
    usp_arena_alloc(a, 1);
    /* Not the latest any more: copied. */
    char *r = usp_arena_realloc(a, q, 40, 80);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_PTR_NOT_EQUAL(r, q);
    CU_ASSERT_EQUAL(memcmp(r, "abcdefgh", 8), 0);
    /* Beyond the block: copied into a new one. */
    char *s = usp_arena_realloc(a, r, 80, 4000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(memcmp(s, "abcdefgh", 8), 0);
    memset(s, 0, 4000);
    /* NULL behaves as alloc; shrinking keeps the pointer. */
    char *t = usp_arena_realloc(a, NULL, 0, 10);
    CU_ASSERT_PTR_NOT_NULL(t);
    CU_ASSERT_PTR_EQUAL(usp_arena_realloc(a, s, 4000, 10), s);
    usp_arena_free(a);
}

static void test_overflow(void)
{
    struct usp_arena *a = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NULL(usp_arena_alloc(a, SIZE_MAX));
    CU_ASSERT_PTR_NULL(usp_arena_alloc(a, SIZE_MAX - 8));
    CU_ASSERT_PTR_NULL(usp_arena_realloc(a, NULL, 0, SIZE_MAX));
    CU_ASSERT_PTR_NULL(usp_arena_new(SIZE_MAX));
    CU_ASSERT_PTR_NULL(usp_arena_alloc(NULL, 8));
    CU_ASSERT_PTR_NOT_NULL(usp_arena_alloc(a, 8)); /* still usable */
    usp_arena_free(a);
}

static void test_protobuf_allocator(void)
{
    struct usp_arena *a = usp_arena_new(64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    char *paths[] = {"Device.DeviceInfo.", "Device.WiFi.", "Device.IP."};
    Usp__Get get = USP__GET__INIT;
    get.n_param_paths = 3;
    get.param_paths = paths;
    uint8_t buf[128];
    size_t n = usp__get__pack(&get, buf);
    ProtobufCAllocator *pa = usp_arena_allocator(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pa);
    for (int round = 0; round < 3; round++) {
        Usp__Get *d = usp__get__unpack(pa, n, buf);
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_EQUAL(d->n_param_paths, 3);
        CU_ASSERT_STRING_EQUAL(d->param_paths[2], "Device.IP.");
        CU_ASSERT(usp_arena_used(a) > sizeof *d);
        usp__get__free_unpacked(d, pa); /* a no-op: the arena owns it */
        usp_arena_reset(a);
        CU_ASSERT_EQUAL(usp_arena_used(a), 0);
    }
    usp_arena_free(a);
}

void suite_arena(void)
{
    USP_SUITE("arena", USP_TEST(test_alignment), USP_TEST(test_used_and_zero),
              USP_TEST(test_strings), USP_TEST(test_growth), USP_TEST(test_huge),
              USP_TEST(test_reset_keeps_first), USP_TEST(test_realloc), USP_TEST(test_overflow),
              USP_TEST(test_protobuf_allocator));
}
