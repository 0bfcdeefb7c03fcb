/* One timer structure per worker: a hierarchical timing wheel with
 * millisecond resolution for every timer of every agent on that worker
 * (periodic events, notification retries, keepalive work, async command
 * completions).
 *
 * Entries are intrusive: the caller embeds a struct usp_tw_entry in its own
 * struct (32 bytes, no malloc per timer). Adding and cancelling are O(1);
 * advancing touches only the slots that are due or must be cascaded to a
 * finer level, never every entry. Timers fire at exactly their millisecond:
 * there is no rounding to a coarser granularity at higher levels (entries
 * are cascaded down as their time approaches).
 *
 * The core is pure: time only moves when usp_tw_advance() is called, so
 * tests drive it with a virtual clock. struct usp_tw_uv binds it to a libuv
 * loop with ONE uv_timer_t armed for the next due slot.
 *
 * Nothing here is thread-safe: a wheel belongs to one loop. */
#ifndef USP_TIMERWHEEL_H
#define USP_TIMERWHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct usp_tw;
struct usp_tw_entry;

/* Called once when an entry falls due, after it has been removed from the
 * wheel: it may add the entry again, free it, or add and cancel others.
 * `now_ms` is the millisecond the entry fired at: its expiry, or, for an
 * entry added already due (not after the last advance), the time of that
 * last advance. */
typedef void (*usp_tw_cb)(struct usp_tw_entry *e, uint64_t now_ms);

/* Embed in the owner's struct; initialise with usp_tw_entry_init. The
 * fields are private. */
struct usp_tw_entry {
    struct usp_tw_entry *next;
    struct usp_tw_entry **pprev; /* NULL when not pending */
    uint64_t expires;            /* ms on the wheel's clock */
    usp_tw_cb cb;
};

/* Who moves the wheel's clock when it is bound to an event loop: `now`
 * gives the current time in ms (what usp_tw_now returns) and `arm` asks to
 * be woken (by a call to usp_tw_advance) at `when_ms`, or never when it is
 * UINT64_MAX. `arm` is called only when the wake-up time gets earlier, or at
 * the end of usp_tw_advance. */
struct usp_tw_driver {
    uint64_t (*now)(void *ctx);
    void (*arm)(void *ctx, uint64_t when_ms);
};

/* A wheel whose clock starts at `now_ms`. 0 or USP_ENOMEM. */
int usp_tw_new(uint64_t now_ms, struct usp_tw **out);
/* Forgets every pending entry (each becomes not pending; no callback runs)
 * and frees the wheel. NULL is a no-op. */
void usp_tw_free(struct usp_tw *w);

/* Installs a driver (see struct usp_tw_driver); NULL removes it. The
 * driver is armed at once for the next due entry. */
void usp_tw_set_driver(struct usp_tw *w, const struct usp_tw_driver *drv, void *ctx);

static inline void usp_tw_entry_init(struct usp_tw_entry *e, usp_tw_cb cb)
{
    e->next = NULL;
    e->pprev = NULL;
    e->expires = 0;
    e->cb = cb;
}

static inline bool usp_tw_pending(const struct usp_tw_entry *e)
{
    return e->pprev != NULL;
}

/* When a pending entry falls due (ms). */
static inline uint64_t usp_tw_expires(const struct usp_tw_entry *e)
{
    return e->expires;
}

/* Arms `e` to fire at `expires_ms` (re-arms it if it was pending). A time
 * not after the last advance fires at the next usp_tw_advance() call. */
void usp_tw_add(struct usp_tw *w, struct usp_tw_entry *e, uint64_t expires_ms);
/* The same, `delay_ms` after usp_tw_now(w). */
void usp_tw_add_in(struct usp_tw *w, struct usp_tw_entry *e, uint64_t delay_ms);
/* Disarms `e`; a no-op when it is not pending. */
void usp_tw_cancel(struct usp_tw *w, struct usp_tw_entry *e);

/* Moves the clock to `now_ms` and fires, in time order, every entry due at
 * or before it (entries added by callbacks included, when they fall due by
 * `now_ms`; one added already due fires at the next call). Time never goes
 * back: an earlier `now_ms` only fires the entries added already due.
 * Returns how many entries fired. */
size_t usp_tw_advance(struct usp_tw *w, uint64_t now_ms);

/* The current time: the driver's clock, or without a driver the time of
 * the last advance (or creation); inside a callback, the time it fires at. */
uint64_t usp_tw_now(const struct usp_tw *w);

/* When usp_tw_advance() must next be called: the next entry's time, or
 * earlier when a coarser slot must first be cascaded (at most once per
 * level an entry goes through). Never later than the next entry. false when
 * nothing is pending. */
bool usp_tw_next(const struct usp_tw *w, uint64_t *when_ms);

/* Pending entries. */
size_t usp_tw_count(const struct usp_tw *w);

/* --- libuv binding ------------------------------------------------------- */

/* One wheel on one loop, driven by one uv_timer_t. Embed it or allocate it;
 * it must stay in place until usp_tw_uv_close's callback. */
struct usp_tw_uv {
    uv_timer_t timer;
    struct usp_tw *tw; /* the wheel: add entries here */
    uint64_t armed;    /* when the timer is set to fire, UINT64_MAX if idle */
    void (*on_closed)(struct usp_tw_uv *u);
};

/* Creates the wheel (its clock is uv_now(loop)) and the timer. 0,
 * USP_ENOMEM, or USP_EIO when libuv refuses the timer. */
int usp_tw_uv_init(struct usp_tw_uv *u, uv_loop_t *loop);
/* Frees the wheel (pending entries are forgotten) and closes the timer;
 * `done` (may be NULL) runs from the loop once `u` may be freed. */
void usp_tw_uv_close(struct usp_tw_uv *u, void (*done)(struct usp_tw_uv *u));

#endif
