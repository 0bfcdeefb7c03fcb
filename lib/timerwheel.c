/* Hierarchical timing wheel (Varghese & Lauck), cascading variant.
 *
 * Level 0 has 256 slots of 1 ms; levels 1..6 have 64 slots each, covering
 * 2^(8+6L) ms per level: 44 bits of milliseconds (~557 years) in all.
 * `clk` is the next millisecond to process. An entry goes to the lowest
 * level whose span holds `expires - clk`, in the slot its expiry selects;
 * when the clock reaches the start of a higher-level slot, that slot's
 * entries are re-inserted one level (or more) down. Every entry in a level 0
 * slot expires at exactly that millisecond, so timers fire on time.
 *
 * A bitmap of non-empty slots per level lets usp_tw_advance() jump straight
 * to the next millisecond where something happens (a level 0 slot to fire
 * or a higher slot to cascade) instead of stepping through idle time.
 *
 * Slots are singly linked lists with a back pointer to the previous link
 * (`pprev`), so cancel is O(1) and the list head needs one pointer. */
#include <stdlib.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/timerwheel.h"

#define L0_BITS  8
#define L0_SIZE  (1u << L0_BITS)
#define LN_BITS  6
#define LN_SIZE  (1u << LN_BITS)
#define NLEVELS  7 /* level 0 and 6 coarser ones */
#define NSLOTS   (L0_SIZE + (NLEVELS - 1) * LN_SIZE)
#define NWORDS   (NSLOTS / 64)
#define SPAN_MAX ((uint64_t)1 << (L0_BITS + (NLEVELS - 1) * LN_BITS))

struct usp_tw {
    struct usp_tw_entry *slot[NSLOTS];
    uint64_t bits[NWORDS];        /* non-empty slots; level L>0 is word 3+L */
    struct usp_tw_entry *expired; /* added already due: fire at the next advance */
    uint64_t clk;                 /* next millisecond to process */
    uint64_t now;                 /* time of the last advance (or of the firing entry) */
    size_t count;
    const struct usp_tw_driver *drv;
    void *drv_ctx;
    uint64_t armed; /* what the driver was last asked for */
    bool advancing; /* inside usp_tw_advance: re-arm once at the end */
};

static unsigned shift_of(unsigned level)
{
    return L0_BITS + (level - 1) * LN_BITS;
}

static unsigned slot_base(unsigned level)
{
    return level == 0 ? 0 : L0_SIZE + (level - 1) * LN_SIZE;
}

static void bit_set(struct usp_tw *w, unsigned idx)
{
    w->bits[idx / 64] |= (uint64_t)1 << (idx % 64);
}

static void bit_clear(struct usp_tw *w, unsigned idx)
{
    w->bits[idx / 64] &= ~((uint64_t)1 << (idx % 64));
}

static void link_head(struct usp_tw_entry **head, struct usp_tw_entry *e)
{
    e->next = *head;
    if (e->next)
        e->next->pprev = &e->next;
    *head = e;
    e->pprev = head;
}

/* Removes e from whatever list holds it; clears the slot's bit when that
 * list is a wheel slot and is now empty. */
static void unlink_entry(struct usp_tw *w, struct usp_tw_entry *e)
{
    struct usp_tw_entry **pprev = e->pprev;
    *pprev = e->next;
    if (e->next)
        e->next->pprev = pprev;
    e->next = NULL;
    e->pprev = NULL;
    uintptr_t p = (uintptr_t)pprev, lo = (uintptr_t)&w->slot[0];
    if (p >= lo && p < (uintptr_t)&w->slot[NSLOTS] && *pprev == NULL)
        bit_clear(w, (unsigned)((p - lo) / sizeof w->slot[0]));
}

/* Puts e in the slot for its expiry relative to clk (e is unlinked). */
static void place(struct usp_tw *w, struct usp_tw_entry *e)
{
    if (e->expires < w->clk) {
        link_head(&w->expired, e);
        return;
    }
    uint64_t delta = e->expires - w->clk;
    uint64_t at = e->expires;
    unsigned idx;
    if (delta < L0_SIZE) {
        idx = (unsigned)(at & (L0_SIZE - 1));
    } else {
        if (delta >= SPAN_MAX) /* beyond the top level: park it at the edge */
            at = w->clk + SPAN_MAX - 1;
        unsigned level = 1;
        while (level < NLEVELS - 1 && delta >= ((uint64_t)1 << (shift_of(level) + LN_BITS)))
            level++;
        idx = slot_base(level) + (unsigned)((at >> shift_of(level)) & (LN_SIZE - 1));
    }
    link_head(&w->slot[idx], e);
    bit_set(w, idx);
}

/* The first set bit of `word` at or after bit `from` going round, as an
 * offset from `from`; -1 when the word is empty. */
static int rot_first(uint64_t word, unsigned from)
{
    if (!word)
        return -1;
    uint64_t r = from ? (word >> from) | (word << (64 - from)) : word;
    return __builtin_ctzll(r);
}

/* Level 0's first non-empty slot at or after slot `p`, going round, as an
 * offset from p; -1 when level 0 is empty. */
static int l0_first(const uint64_t *bits, unsigned p)
{
    unsigned wi = p / 64, bi = p % 64;
    uint64_t word = bits[wi] >> bi;
    if (word)
        return __builtin_ctzll(word);
    for (unsigned k = 1; k < L0_SIZE / 64; k++) {
        uint64_t b = bits[(wi + k) % (L0_SIZE / 64)];
        if (b)
            return (int)(64 * k - bi + (unsigned)__builtin_ctzll(b));
    }
    word = bi ? bits[wi] & (((uint64_t)1 << bi) - 1) : 0;
    if (word)
        return (int)(L0_SIZE - bi + (unsigned)__builtin_ctzll(word));
    return -1;
}

/* The next millisecond >= clk at which a level 0 slot fires or a higher
 * slot cascades; UINT64_MAX when the wheel is empty. */
static uint64_t next_tick(const struct usp_tw *w)
{
    uint64_t best = UINT64_MAX;
    int d = l0_first(w->bits, (unsigned)(w->clk & (L0_SIZE - 1)));
    if (d >= 0)
        best = w->clk + (uint64_t)d;
    for (unsigned level = 1; level < NLEVELS; level++) {
        uint64_t word = w->bits[NWORDS - (NLEVELS - 1) + (level - 1)];
        if (!word)
            continue;
        unsigned s = shift_of(level);
        uint64_t c0 = (w->clk + ((uint64_t)1 << s) - 1) >> s; /* first boundary >= clk */
        int off = rot_first(word, (unsigned)(c0 & (LN_SIZE - 1)));
        uint64_t t = (c0 + (uint64_t)off) << s;
        if (t < best)
            best = t;
    }
    return best;
}

int usp_tw_new(uint64_t now_ms, struct usp_tw **out)
{
    struct usp_tw *w = calloc(1, sizeof *w);
    *out = w;
    if (!w)
        return USP_ENOMEM;
    w->clk = now_ms;
    w->now = now_ms;
    w->armed = UINT64_MAX;
    return 0;
}

static void forget_list(struct usp_tw_entry *e)
{
    while (e) {
        struct usp_tw_entry *next = e->next;
        e->next = NULL;
        e->pprev = NULL;
        e = next;
    }
}

void usp_tw_free(struct usp_tw *w)
{
    if (!w)
        return;
    for (unsigned i = 0; i < NSLOTS; i++)
        forget_list(w->slot[i]);
    forget_list(w->expired);
    free(w);
}

static void rearm(struct usp_tw *w)
{
    if (!w->drv || w->advancing)
        return;
    uint64_t when;
    if (!usp_tw_next(w, &when))
        when = UINT64_MAX;
    w->armed = when;
    w->drv->arm(w->drv_ctx, when);
}

void usp_tw_set_driver(struct usp_tw *w, const struct usp_tw_driver *drv, void *ctx)
{
    w->drv = drv;
    w->drv_ctx = ctx;
    w->armed = UINT64_MAX;
    rearm(w);
}

void usp_tw_add(struct usp_tw *w, struct usp_tw_entry *e, uint64_t expires_ms)
{
    if (e->pprev)
        unlink_entry(w, e);
    else
        w->count++;
    e->expires = expires_ms;
    place(w, e);
    if (w->drv && !w->advancing) {
        uint64_t when = expires_ms < w->clk ? w->now : expires_ms;
        if (when < w->armed) {
            w->armed = when;
            w->drv->arm(w->drv_ctx, when);
        }
    }
}

uint64_t usp_tw_now(const struct usp_tw *w)
{
    if (w->drv && !w->advancing) {
        uint64_t t = w->drv->now(w->drv_ctx);
        return t > w->now ? t : w->now;
    }
    return w->now;
}

void usp_tw_add_in(struct usp_tw *w, struct usp_tw_entry *e, uint64_t delay_ms)
{
    uint64_t now = usp_tw_now(w);
    uint64_t at = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
    usp_tw_add(w, e, at);
}

void usp_tw_cancel(struct usp_tw *w, struct usp_tw_entry *e)
{
    if (!e->pprev)
        return;
    unlink_entry(w, e);
    w->count--;
}

/* Fires every entry of the detached list `*head` (its first entry's pprev
 * points at `head`, so callbacks may cancel entries still in it). */
static size_t fire_list(struct usp_tw *w, struct usp_tw_entry **head, uint64_t now)
{
    size_t n = 0;
    while (*head) {
        struct usp_tw_entry *e = *head;
        unlink_entry(w, e);
        w->count--;
        w->now = now;
        e->cb(e, now);
        n++;
    }
    return n;
}

static struct usp_tw_entry *detach(struct usp_tw *w, unsigned idx, struct usp_tw_entry **head)
{
    *head = w->slot[idx];
    w->slot[idx] = NULL;
    bit_clear(w, idx);
    if (*head)
        (*head)->pprev = head;
    return *head;
}

/* Processes millisecond t == clk: cascades the higher slots that start at
 * t, then fires level 0's slot for t. */
static size_t process_tick(struct usp_tw *w, uint64_t t)
{
    for (unsigned level = 1; level < NLEVELS; level++) {
        unsigned s = shift_of(level);
        if (t & (((uint64_t)1 << s) - 1))
            break;
        unsigned idx = slot_base(level) + (unsigned)((t >> s) & (LN_SIZE - 1));
        struct usp_tw_entry *list;
        detach(w, idx, &list);
        while (list) {
            struct usp_tw_entry *e = list;
            unlink_entry(w, e);
            place(w, e);
        }
    }
    struct usp_tw_entry *due;
    detach(w, (unsigned)(t & (L0_SIZE - 1)), &due);
    w->clk = t + 1;
    return fire_list(w, &due, t);
}

size_t usp_tw_advance(struct usp_tw *w, uint64_t now_ms)
{
    size_t fired = 0;
    bool outer = !w->advancing;
    w->advancing = true;

    /* Entries added already due fire first, at the time they were due. */
    if (w->expired) {
        struct usp_tw_entry *list = w->expired;
        w->expired = NULL;
        list->pprev = &list;
        fired += fire_list(w, &list, w->now);
    }
    while (w->clk <= now_ms) {
        uint64_t t = next_tick(w);
        if (t > now_ms) {
            w->clk = now_ms + 1;
            break;
        }
        w->clk = t;
        fired += process_tick(w, t);
    }
    if (now_ms > w->now)
        w->now = now_ms;

    if (outer) {
        w->advancing = false;
        rearm(w);
    }
    return fired;
}

bool usp_tw_next(const struct usp_tw *w, uint64_t *when_ms)
{
    if (w->count == 0)
        return false;
    if (w->expired) {
        *when_ms = w->now;
        return true;
    }
    uint64_t t = next_tick(w);
    if (t == UINT64_MAX)
        return false;
    *when_ms = t;
    return true;
}

size_t usp_tw_count(const struct usp_tw *w)
{
    return w->count;
}

/* --- libuv binding ------------------------------------------------------- */

static uint64_t uvd_now(void *ctx)
{
    struct usp_tw_uv *u = ctx;
    return uv_now(u->timer.loop);
}

static void on_timer(uv_timer_t *t)
{
    struct usp_tw_uv *u = (struct usp_tw_uv *)t;
    u->armed = UINT64_MAX;
    usp_tw_advance(u->tw, uv_now(t->loop)); /* re-arms through uvd_arm */
}

static void uvd_arm(void *ctx, uint64_t when)
{
    struct usp_tw_uv *u = ctx;
    if (when == UINT64_MAX) {
        uv_timer_stop(&u->timer);
        u->armed = UINT64_MAX;
        return;
    }
    uint64_t now = uv_now(u->timer.loop);
    u->armed = when;
    uv_timer_start(&u->timer, on_timer, when > now ? when - now : 0, 0);
}

static const struct usp_tw_driver uv_driver = {
    .now = uvd_now,
    .arm = uvd_arm,
};

int usp_tw_uv_init(struct usp_tw_uv *u, uv_loop_t *loop)
{
    memset(u, 0, sizeof *u);
    u->armed = UINT64_MAX;
    if (uv_timer_init(loop, &u->timer) != 0)
        return USP_EIO;
    int rc = usp_tw_new(uv_now(loop), &u->tw);
    if (rc < 0) {
        uv_close((uv_handle_t *)&u->timer, NULL);
        return rc;
    }
    usp_tw_set_driver(u->tw, &uv_driver, u);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct usp_tw_uv *u = (struct usp_tw_uv *)h;
    if (u->on_closed)
        u->on_closed(u);
}

void usp_tw_uv_close(struct usp_tw_uv *u, void (*done)(struct usp_tw_uv *u))
{
    uv_timer_stop(&u->timer);
    usp_tw_free(u->tw);
    u->tw = NULL;
    u->on_closed = done;
    uv_close((uv_handle_t *)&u->timer, on_closed);
}
