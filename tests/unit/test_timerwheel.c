/* The timing wheel: exact firing times on a virtual clock, add/cancel churn
 * against a simple reference model, callbacks that re-arm and cancel, and
 * the libuv binding on a real loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "testutil.h"
#include "usp/errors.h"
#include "usp/timerwheel.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

struct item {
    struct usp_tw_entry e;
    int id;
    int fired;         /* times fired */
    uint64_t fired_at; /* cb's now */
    uint64_t want;     /* reference: expected fire time, valid when pending */
    int pending;       /* reference */
    int deferred;      /* re-armed already due inside a callback */
    struct usp_tw *w;
};

/* Every firing in order, for order checks. */
static uint64_t fire_log[1 << 16];
static size_t fire_n;

static void on_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct item *it = container_of(e, struct item, e);
    it->fired++;
    it->fired_at = now;
    if (fire_n < sizeof fire_log / sizeof fire_log[0])
        fire_log[fire_n++] = now;
}

static void test_basic_exact(void)
{
    struct usp_tw *w;
    CU_ASSERT_EQUAL_FATAL(usp_tw_new(1000, &w), 0);
    static const uint64_t at[] = {1000,
                                  1001,
                                  1255,
                                  1256,
                                  1300,
                                  17000,
                                  17384,
                                  300000,
                                  1000 + 16384,
                                  5000000,
                                  1000 + (1u << 20),
                                  86400000ull * 400};
    enum { N = sizeof at / sizeof at[0] };
    struct item it[N];
    memset(it, 0, sizeof it);
    for (int i = 0; i < N; i++) {
        usp_tw_entry_init(&it[i].e, on_fire);
        usp_tw_add(w, &it[i].e, at[i]);
        CU_ASSERT_TRUE(usp_tw_pending(&it[i].e));
    }
    CU_ASSERT_EQUAL(usp_tw_count(w), N);
    uint64_t next;
    CU_ASSERT_TRUE(usp_tw_next(w, &next));
    CU_ASSERT_EQUAL(next, 1000);
    /* Step one ms at a time through the first 20 s: each fires exactly at its time. */
    for (uint64_t t = 1000; t < 21000; t++) {
        usp_tw_advance(w, t);
        for (int i = 0; i < N; i++) {
            if (at[i] <= t) {
                CU_ASSERT_EQUAL(it[i].fired, 1);
                CU_ASSERT_EQUAL(it[i].fired_at, at[i]);
            } else {
                CU_ASSERT_EQUAL(it[i].fired, 0);
            }
        }
    }
    /* The rest in big jumps: still exact. */
    usp_tw_advance(w, 4999999);
    CU_ASSERT_EQUAL(it[9].fired, 0);
    CU_ASSERT_EQUAL(it[7].fired_at, 300000);
    usp_tw_advance(w, 86400000ull * 401);
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(it[i].fired, 1);
        CU_ASSERT_EQUAL(it[i].fired_at, at[i]);
        CU_ASSERT_FALSE(usp_tw_pending(&it[i].e));
    }
    CU_ASSERT_EQUAL(usp_tw_count(w), 0);
    CU_ASSERT_FALSE(usp_tw_next(w, &next));
    usp_tw_free(w);
}

static void test_cancel_and_rearm(void)
{
    struct usp_tw *w;
    CU_ASSERT_EQUAL_FATAL(usp_tw_new(0, &w), 0);
    struct item a = {0}, b = {0}, c = {0};
    usp_tw_entry_init(&a.e, on_fire);
    usp_tw_entry_init(&b.e, on_fire);
    usp_tw_entry_init(&c.e, on_fire);
    usp_tw_add(w, &a.e, 100);
    usp_tw_add(w, &b.e, 100000);
    usp_tw_add(w, &c.e, 50);
    usp_tw_cancel(w, &c.e);
    usp_tw_cancel(w, &c.e); /* twice is a no-op */
    CU_ASSERT_FALSE(usp_tw_pending(&c.e));
    usp_tw_add(w, &b.e, 70);     /* re-arm earlier */
    usp_tw_add(w, &a.e, 200000); /* re-arm later */
    CU_ASSERT_EQUAL(usp_tw_count(w), 2);
    uint64_t next;
    CU_ASSERT_TRUE(usp_tw_next(w, &next));
    CU_ASSERT_EQUAL(next, 70);
    usp_tw_advance(w, 150000);
    CU_ASSERT_EQUAL(c.fired, 0);
    CU_ASSERT_EQUAL(b.fired, 1);
    CU_ASSERT_EQUAL(b.fired_at, 70);
    CU_ASSERT_EQUAL(a.fired, 0);
    CU_ASSERT_TRUE(usp_tw_next(w, &next));
    CU_ASSERT_TRUE(next <= 200000);
    usp_tw_advance(w, 199999);
    CU_ASSERT_EQUAL(a.fired, 0);
    usp_tw_advance(w, 200000);
    CU_ASSERT_EQUAL(a.fired, 1);
    CU_ASSERT_EQUAL(a.fired_at, 200000);

    /* Already due: fires at the next advance, even with the same time. */
    usp_tw_add(w, &c.e, 10);
    CU_ASSERT_TRUE(usp_tw_next(w, &next));
    CU_ASSERT_EQUAL(next, 200000);
    CU_ASSERT_EQUAL(usp_tw_advance(w, 200000), 1);
    CU_ASSERT_EQUAL(c.fired, 1);
    CU_ASSERT_EQUAL(c.fired_at, 200000);
    /* Time does not go back. */
    usp_tw_add(w, &c.e, 200001);
    CU_ASSERT_EQUAL(usp_tw_advance(w, 5), 0);
    CU_ASSERT_EQUAL(usp_tw_now(w), 200000);
    CU_ASSERT_EQUAL(usp_tw_advance(w, 200001), 1);
    CU_ASSERT_EQUAL(c.fired_at, 200001);
    /* Beyond the top level's span (2^44 ms): still exact. */
    uint64_t far = 200001 + ((uint64_t)1 << 45) + 12345;
    usp_tw_add(w, &a.e, far);
    usp_tw_advance(w, far - 1);
    CU_ASSERT_EQUAL(a.fired, 1);
    usp_tw_advance(w, far + 10);
    CU_ASSERT_EQUAL(a.fired, 2);
    CU_ASSERT_EQUAL(a.fired_at, far);
    /* add_in is relative to the current time. */
    usp_tw_add_in(w, &b.e, 25);
    CU_ASSERT_EQUAL(usp_tw_expires(&b.e), far + 10 + 25);
    usp_tw_free(w);
    CU_ASSERT_FALSE(usp_tw_pending(&b.e)); /* freeing forgets pending entries */
}

/* xorshift64*: deterministic randomness for the churn test. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint64_t rnd_delay(void)
{
    switch (rnd() % 8) {
    case 0:
        return 0;
    case 1:
    case 2:
        return rnd() % 300;
    case 3:
        return rnd() % 20000;
    case 4:
        return rnd() % 2000000;
    case 5:
        return rnd() % 100000000;
    case 6:
        return rnd() % ((uint64_t)1 << 40);
    default:
        return rnd() % 5000;
    }
}

enum { CHURN_N = 3000 };
static struct item churn[CHURN_N];
static uint64_t churn_last_now;
static int churn_errors;

static void churn_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct item *it = container_of(e, struct item, e);
    if (!it->pending || it->want != now)
        churn_errors++;
    if (fire_n > 0 && now < fire_log[fire_n - 1])
        churn_errors++; /* out of time order within one advance */
    if (fire_n < sizeof fire_log / sizeof fire_log[0])
        fire_log[fire_n++] = now;
    it->pending = 0;
    it->fired++;
    /* Some callbacks re-arm themselves or cancel / re-arm another entry. */
    uint64_t r = rnd() % 10;
    if (r == 0) {
        uint64_t d = rnd() % 2 ? rnd_delay() : 0;
        usp_tw_add(it->w, &it->e, now + d);
        it->pending = 1;
        /* Due at once (not after the clock): fires at the next advance, at
         * the time this advance ends. */
        it->deferred = d == 0;
        it->want = d == 0 ? churn_last_now : now + d;
    } else if (r == 1) {
        struct item *o = &churn[rnd() % CHURN_N];
        if (o != it) {
            usp_tw_cancel(it->w, &o->e);
            o->pending = 0;
        }
    }
}

static void test_churn_vs_reference(void)
{
    struct usp_tw *w;
    uint64_t now = 123456789;
    CU_ASSERT_EQUAL_FATAL(usp_tw_new(now, &w), 0);
    rng_state = 0x9e3779b97f4a7c15ull;
    churn_errors = 0;
    memset(churn, 0, sizeof churn);
    for (int i = 0; i < CHURN_N; i++) {
        usp_tw_entry_init(&churn[i].e, churn_fire);
        churn[i].id = i;
        churn[i].w = w;
    }
    churn_last_now = now;
    long checks = 0;
    for (int round = 0; round < 4000; round++) {
        /* Random adds, re-adds and cancels. */
        int ops = (int)(rnd() % 40);
        for (int k = 0; k < ops; k++) {
            struct item *it = &churn[rnd() % CHURN_N];
            if (rnd() % 4 == 0) {
                usp_tw_cancel(w, &it->e);
                it->pending = 0;
            } else {
                uint64_t at = now + rnd_delay();
                if (rnd() % 16 == 0)
                    at = now - rnd() % 1000; /* already due */
                usp_tw_add(w, &it->e, at);
                it->pending = 1;
                it->deferred = 0;
                it->want = at > now ? at : now;
            }
        }
        /* Reference: the earliest pending time. */
        uint64_t min = UINT64_MAX;
        size_t npend = 0;
        for (int i = 0; i < CHURN_N; i++)
            if (churn[i].pending) {
                npend++;
                if (churn[i].want < min)
                    min = churn[i].want;
            }
        CU_ASSERT_EQUAL(usp_tw_count(w), npend);
        uint64_t next;
        CU_ASSERT_EQUAL(usp_tw_next(w, &next), npend > 0);
        if (npend) {
            /* never late; earlier only for a cascade */
            CU_ASSERT_TRUE(next <= min);
            CU_ASSERT_TRUE(next >= now);
        }
        /* Advance: small steps, to the next due time, or huge jumps. */
        uint64_t step;
        switch (rnd() % 4) {
        case 0:
            step = rnd() % 50;
            break;
        case 1:
            step = npend ? (min > now ? min - now : 0) : 1000;
            break;
        case 2:
            step = rnd() % 100000;
            break;
        default:
            step = rnd() % ((uint64_t)1 << 36);
        }
        uint64_t to = now + step;
        /* Which entries must fire: those due by `to` (callbacks may add
         * more, which they check themselves). */
        int before[CHURN_N];
        for (int i = 0; i < CHURN_N; i++)
            before[i] = churn[i].fired;
        fire_n = 0;
        churn_last_now = to;
        usp_tw_advance(w, to);
        for (int i = 0; i < CHURN_N; i++) {
            struct item *it = &churn[i];
            if (it->pending && it->want <= to && !it->deferred)
                churn_errors++; /* due but did not fire */
            it->deferred = 0;
            checks += it->fired - before[i];
        }
        now = to;
        CU_ASSERT_EQUAL(usp_tw_now(w), now);
    }
    CU_ASSERT_EQUAL(churn_errors, 0);
    CU_ASSERT_TRUE(checks > 10000); /* the test really fired things */
    usp_tw_free(w);
}

/* With one entry, usp_tw_next names exactly the millisecond where the wheel
 * has work: the entry's time when it is in level 0, else the start of its
 * slot (when it cascades). Following next() wakes at most once per level. */
static void test_next_single(void)
{
    rng_state = 12345;
    for (int round = 0; round < 20000; round++) {
        uint64_t start = rnd() % ((uint64_t)1 << 42);
        uint64_t e = start + rnd_delay();
        struct usp_tw *w;
        CU_ASSERT_EQUAL_FATAL(usp_tw_new(start, &w), 0);
        struct item it = {0};
        usp_tw_entry_init(&it.e, on_fire);
        usp_tw_add(w, &it.e, e);
        int wakes = 0;
        uint64_t now = start, next;
        while (usp_tw_next(w, &next)) {
            /* placed (or cascaded) at `now`, by its distance from then */
            uint64_t delta = e - now, want = e;
            unsigned s = 0;
            if (delta >= 256) {
                s = 8;
                while (s < 38 && delta >= ((uint64_t)1 << (s + 6)))
                    s += 6;
                want = (e >> s) << s;
            }
            if (next != want) {
                CU_FAIL("next() is not the entry's slot");
                break;
            }
            usp_tw_advance(w, next);
            now = next;
            if (++wakes > 7)
                break;
        }
        CU_ASSERT_EQUAL(it.fired, 1);
        CU_ASSERT_EQUAL(it.fired_at, e);
        CU_ASSERT_TRUE(wakes <= 7);
        usp_tw_free(w);
    }
}

/* A callback that re-arms itself forever every 7 ms: one advance over a
 * long stretch fires it at every multiple, in order. */
static void periodic_cb(struct usp_tw_entry *e, uint64_t now)
{
    struct item *it = container_of(e, struct item, e);
    if (it->fired > 0 && now != it->fired_at + 7)
        it->want = 1; /* error flag */
    it->fired++;
    it->fired_at = now;
    usp_tw_add(it->w, e, now + 7);
}

static void test_self_rearm(void)
{
    struct usp_tw *w;
    CU_ASSERT_EQUAL_FATAL(usp_tw_new(0, &w), 0);
    struct item it = {0};
    it.w = w;
    usp_tw_entry_init(&it.e, periodic_cb);
    usp_tw_add(w, &it.e, 7);
    CU_ASSERT_EQUAL(usp_tw_advance(w, 7000), 1000);
    CU_ASSERT_EQUAL(it.fired, 1000);
    CU_ASSERT_EQUAL(it.fired_at, 7000);
    CU_ASSERT_EQUAL(it.want, 0);
    usp_tw_free(w);
}

/* --- libuv binding --- */

struct uv_item {
    struct usp_tw_entry e;
    uint64_t added, delay, fired_at;
    int order;
};
static int uv_order;
static struct usp_tw_uv uvw;

static void uv_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct uv_item *it = container_of(e, struct uv_item, e);
    it->fired_at = uv_now(uvw.timer.loop);
    it->order = ++uv_order;
}

static int uv_closed;
static void uv_done(struct usp_tw_uv *u)
{
    uv_closed++;
}

static void test_uv_binding(void)
{
    uv_loop_t loop;
    CU_ASSERT_EQUAL_FATAL(uv_loop_init(&loop), 0);
    CU_ASSERT_EQUAL_FATAL(usp_tw_uv_init(&uvw, &loop), 0);
    static const uint64_t delays[] = {40, 5, 20, 0, 60};
    struct uv_item it[5];
    memset(it, 0, sizeof it);
    uv_order = 0;
    for (int i = 0; i < 5; i++) {
        usp_tw_entry_init(&it[i].e, uv_fire);
        it[i].delay = delays[i];
        it[i].added = uv_now(&loop);
        usp_tw_add_in(uvw.tw, &it[i].e, delays[i]);
    }
    CU_ASSERT_EQUAL(uvw.armed, it[3].added); /* armed for the earliest */
    /* The loop runs while the timer is armed and stops once the wheel is
     * empty: one timer handle served every entry. */
    uv_run(&loop, UV_RUN_DEFAULT);
    CU_ASSERT_EQUAL(usp_tw_count(uvw.tw), 0);
    CU_ASSERT_EQUAL(uvw.armed, UINT64_MAX);
    static const int want_order[] = {4, 2, 3, 1, 5};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(it[i].order, want_order[i]);
        CU_ASSERT_TRUE(it[i].fired_at >= it[i].added + it[i].delay);
    }
    usp_tw_uv_close(&uvw, uv_done);
    uv_run(&loop, UV_RUN_DEFAULT);
    CU_ASSERT_EQUAL(uv_closed, 1);
    CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

void suite_timerwheel(void)
{
    USP_SUITE("timerwheel", USP_TEST(test_basic_exact), USP_TEST(test_cancel_and_rearm),
              USP_TEST(test_churn_vs_reference), USP_TEST(test_next_single),
              USP_TEST(test_self_rearm), USP_TEST(test_uv_binding));
}
