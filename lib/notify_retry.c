/* Notifications, agent side, over time: the per-agent state and everything
 * the timer wheel drives for it — retries of Notify messages sent with
 * send_resp=true (R-NOT.1-4) and of OnBoardRequests (R-NOT.6a), the
 * subscriptions' TimeToLive, Periodic! events and the polling of dynamic
 * values that ValueChange subscriptions reference.
 *
 * An agent's state exists only while one of these is needed and is freed
 * as soon as none is. Timer callbacks arm their next run before they send,
 * and the state carries a `busy` count, so a send callback may re-enter the
 * notifier (answer a Notify at once, clean the agent up) without anything
 * being freed under the caller. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify_int.h"
#include "usp/errors.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* Agents' Periodic! controllers looked at per refresh. */
#define MAX_PERIODIC 32

/* --- Randomness, ids, the back-off table --------------------------------- */

static uint64_t splitmix(struct usp_notifier *n)
{
    uint64_t z = (n->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t notify__random(struct usp_notifier *n, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo + 1;
    return span ? lo + splitmix(n) % span : splitmix(n);
}

void notify__msg_id(struct usp_notifier *n, char *buf, size_t len)
{
    snprintf(buf, len, "notify-%llu", (unsigned long long)++n->next_id);
}

void usp_notify_retry_window(uint32_t m, uint32_t k, uint32_t n, uint64_t *lo_ms, uint64_t *hi_ms)
{
    const long double cap = (long double)((uint64_t)1 << 40);
    if (m < 1)
        m = 1;
    if (k < 1000)
        k = 1000;
    if (n < 1)
        n = 1;
    if (n > 10) /* R-NOT.2: from the tenth retry the range stays */
        n = 10;
    long double lo = (long double)m * 1000.0L;
    for (uint32_t i = 1; i < n && lo < cap; i++)
        lo = lo * k / 1000.0L;
    long double hi = lo * k / 1000.0L;
    if (lo > cap)
        lo = cap;
    if (hi > cap)
        hi = cap;
    uint64_t l = (uint64_t)ceill(lo), h = (uint64_t)floorl(hi);
    *lo_ms = l;
    *hi_ms = h < l ? l : h;
}

/* --- Per-agent state ----------------------------------------------------- */

static void mem_add(struct notify_state *st, long delta)
{
    st->mem = (uint32_t)((long)st->mem + delta);
    st->n->stats.mem = (uint64_t)((long)st->n->stats.mem + delta);
}

static void pending_fire(struct usp_tw_entry *e, uint64_t now);
static void ttl_fire(struct usp_tw_entry *e, uint64_t now);
static void poll_fire(struct usp_tw_entry *e, uint64_t now);
static void periodic_fire(struct usp_tw_entry *e, uint64_t now);

struct notify_state *notify__state(struct usp_notifier *n, struct usp_dm_agent *a,
                                   struct usp_notify_agent *na)
{
    if (na->st)
        return na->st;
    struct notify_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->n = n;
    st->dm = a;
    st->owner = na;
    st->next = n->states;
    if (st->next)
        st->next->prev = st;
    n->states = st;
    na->st = st;
    n->stats.agents++;
    mem_add(st, (long)sizeof *st);
    return st;
}

/* The agent's TimeToLive and poll timers, allocated when missing. */
static struct notify_timers *timers(struct notify_state *st)
{
    if (st->tm)
        return st->tm;
    struct notify_timers *tm = calloc(1, sizeof *tm);
    if (!tm)
        return NULL;
    usp_tw_entry_init(&tm->ttl, ttl_fire);
    usp_tw_entry_init(&tm->poll, poll_fire);
    tm->st = st;
    st->tm = tm;
    mem_add(st, (long)sizeof *tm);
    return tm;
}

/* Frees the timers when neither is armed. */
static void timers_trim(struct notify_state *st)
{
    struct notify_timers *tm = st->tm;
    if (!tm || usp_tw_pending(&tm->ttl) || usp_tw_pending(&tm->poll))
        return;
    free(tm);
    st->tm = NULL;
    mem_add(st, -(long)sizeof *tm);
}

static size_t pending_size(const struct notify_pending *p)
{
    const char *id = (const char *)p->data + p->len;
    const char *eid = id + strlen(id) + 1;
    return sizeof *p + p->len + strlen(id) + 1 + strlen(eid) + 1;
}

static const char *pending_id(const struct notify_pending *p)
{
    return (const char *)p->data + p->len;
}

static const char *pending_eid(const struct notify_pending *p)
{
    const char *id = pending_id(p);
    return id + strlen(id) + 1;
}

/* Unlinks and frees one pending notification. */
static void pending_drop(struct notify_pending *p)
{
    struct notify_state *st = p->st;
    for (struct notify_pending **pp = &st->pending; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    usp_tw_cancel(st->n->cfg.tw, &p->tw);
    st->npending--;
    st->n->stats.pending--;
    mem_add(st, -(long)pending_size(p));
    free(p);
}

static void clear_periodic(struct notify_state *st)
{
    for (uint32_t i = 0; i < st->nper; i++)
        usp_tw_cancel(st->n->cfg.tw, &st->per[i].tw);
    free(st->per);
    mem_add(st, -(long)(st->nper * sizeof *st->per));
    st->per = NULL;
    st->nper = 0;
}

static void clear_watch(struct notify_state *st)
{
    free(st->watch);
    mem_add(st, -(long)(st->nwatch * sizeof *st->watch));
    st->watch = NULL;
    st->nwatch = 0;
    if (st->tm)
        usp_tw_cancel(st->n->cfg.tw, &st->tm->poll);
}

static void clear_all(struct notify_state *st)
{
    while (st->pending)
        pending_drop(st->pending);
    clear_periodic(st);
    clear_watch(st);
    if (st->tm)
        usp_tw_cancel(st->n->cfg.tw, &st->tm->ttl);
    timers_trim(st);
}

static void state_free(struct notify_state *st)
{
    struct usp_notifier *n = st->n;
    clear_all(st);
    if (st->prev)
        st->prev->next = st->next;
    else
        n->states = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->owner)
        st->owner->st = NULL;
    n->stats.agents--;
    mem_add(st, -(long)sizeof *st);
    free(st);
}

static bool idle(const struct notify_state *st)
{
    return !st->pending && !st->nper && !st->nwatch &&
           (!st->tm || (!usp_tw_pending(&st->tm->ttl) && !usp_tw_pending(&st->tm->poll)));
}

void notify__state_release(struct notify_state *st)
{
    if (st && !st->busy && (st->dead || idle(st)))
        state_free(st);
}

void notify__free_states(struct usp_notifier *n)
{
    while (n->states)
        state_free(n->states);
}

void usp_notify_agent_cleanup(struct usp_notifier *n, struct usp_notify_agent *na)
{
    struct notify_state *st = na ? na->st : NULL;
    if (!st)
        return;
    clear_all(st);
    na->st = NULL;
    st->owner = NULL;
    st->dead = true;
    notify__state_release(st); /* or the callback that is inside frees it */
}

size_t usp_notify_agent_pending(const struct usp_notify_agent *na)
{
    return na->st ? na->st->npending : 0;
}

size_t usp_notify_agent_mem(const struct usp_notify_agent *na)
{
    return na->st ? na->st->mem : 0;
}

/* --- Retries ------------------------------------------------------------- */

/* m and k of controller row `ctrl`; false when the row is gone. */
static bool retry_params(struct notify_state *st, uint32_t ctrl, uint32_t *m, uint32_t *k,
                         bool *enabled)
{
    const struct notify_schema *sc = notify__schema(st->n, st->dm);
    if (!sc || !sc->ctrl)
        return false;
    struct usp_dm_inst crow;
    notify__row(sc->ctrl, ctrl, &crow);
    if (!usp_dm_exists(st->dm, &crow))
        return false;
    uint64_t mv = notify__get_uint(st->dm, &crow, sc->c_min_wait, 5);
    uint64_t kv = notify__get_uint(st->dm, &crow, sc->c_mult, 2000);
    *m = mv < 1 ? 1 : mv > 65535 ? 65535 : (uint32_t)mv;
    *k = kv < 1000 ? 1000 : kv > 65535 ? 65535 : (uint32_t)kv;
    *enabled = !sc->c_enable || notify__get_bool(st->dm, &crow, sc->c_enable);
    return true;
}

/* Arms the next retry (attempt + 1) from `now`, or the deadline when that
 * comes first. */
static void schedule_retry(struct notify_pending *p, uint32_t m, uint32_t k, uint64_t now)
{
    struct usp_notifier *n = p->st->n;
    uint64_t lo, hi;
    usp_notify_retry_window(m, k, p->attempt + 1, &lo, &hi);
    uint64_t at = now + notify__random(n, lo, hi);
    if (p->deadline != UINT64_MAX && at >= p->deadline) {
        p->expiring = true;
        at = p->deadline;
    }
    usp_tw_add(n->cfg.tw, &p->tw, at);
}

int notify__pending_add(struct notify_state *st, const uint8_t *payload, size_t len,
                        const char *msg_id, const char *to_eid, uint32_t ctrl,
                        uint32_t expiration_s, int kind)
{
    size_t il = strlen(msg_id) + 1, el = strlen(to_eid) + 1;
    if (len > UINT32_MAX)
        return USP_ERANGE;
    struct notify_pending *p = malloc(sizeof *p + len + il + el);
    if (!p)
        return USP_ENOMEM;
    memset(p, 0, sizeof *p);
    usp_tw_entry_init(&p->tw, pending_fire);
    p->st = st;
    p->ctrl = ctrl;
    p->len = (uint32_t)len;
    p->kind = (uint8_t)kind;
    memcpy(p->data, payload, len);
    memcpy(p->data + len, msg_id, il);
    memcpy(p->data + len + il, to_eid, el);
    uint64_t now = usp_tw_now(st->n->cfg.tw);
    p->deadline = expiration_s ? now + (uint64_t)expiration_s * 1000 : UINT64_MAX;
    p->next = st->pending;
    st->pending = p;
    st->npending++;
    st->n->stats.pending++;
    mem_add(st, (long)pending_size(p));
    uint32_t m = 5, k = 2000;
    bool enabled;
    retry_params(st, ctrl, &m, &k, &enabled);
    schedule_retry(p, m, k, now);
    return 0;
}

void notify__drop_onboard(struct notify_state *st, uint32_t ctrl)
{
    struct notify_pending *p = st->pending;
    while (p) {
        struct notify_pending *next = p->next;
        if (p->kind == PK_ONBOARD && p->ctrl == ctrl)
            pending_drop(p);
        p = next;
    }
}

static void pending_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct notify_pending *p = container_of(e, struct notify_pending, tw);
    struct notify_state *st = p->st;
    struct usp_notifier *n = st->n;
    uint32_t m, k;
    bool enabled;
    if (p->expiring || !retry_params(st, p->ctrl, &m, &k, &enabled)) {
        /* NotifExpiration reached, or the recipient controller is gone */
        pending_drop(p);
        n->stats.expired++;
        notify__state_release(st);
        return;
    }
    p->attempt++;
    struct usp_arena *ar = enabled ? notify__arena_get(n) : NULL;
    struct usp_notify_out out = {.attempt = p->attempt, .send_resp = true, .len = p->len};
    uint8_t *buf = NULL;
    Usp__Msg *msg = NULL;
    if (ar) {
        /* Copies: a NotifyResp inside the send may free `p`. */
        buf = usp_arena_alloc(ar, p->len ? p->len : 1);
        out.msg_id = usp_arena_strdup(ar, pending_id(p));
        out.to_eid = usp_arena_strdup(ar, pending_eid(p));
        if (buf)
            memcpy(buf, p->data, p->len);
        struct usp_decode_err derr;
        if (buf && usp_msg_decode(ar, buf, p->len, &msg, &derr) != 0)
            msg = NULL;
    }
    schedule_retry(p, m, k, now);
    if (msg && out.msg_id && out.to_eid) {
        out.msg = msg;
        out.payload = buf;
        st->busy++;
        n->stats.retried++;
        if (n->cfg.send(n->cfg.ctx, st->dm, &out, ar) < 0)
            n->stats.send_failed++;
        st->busy--;
    }
    if (ar)
        notify__arena_put(n, ar);
    notify__state_release(st);
}

int usp_notify_resp_received(struct usp_notifier *n, struct usp_notify_agent *na, const char *from,
                             const char *msg_id)
{
    struct notify_state *st = na ? na->st : NULL;
    if (!st || !msg_id)
        return USP_ENOENT;
    for (struct notify_pending *p = st->pending; p; p = p->next) {
        if (strcmp(pending_id(p), msg_id) != 0)
            continue;
        if (from && strcmp(pending_eid(p), from) != 0)
            return USP_ENOENT; /* another controller cannot acknowledge it */
        pending_drop(p);
        n->stats.acked++;
        notify__state_release(st);
        return 0;
    }
    return USP_ENOENT;
}

void usp_notify_reply(struct usp_notifier *n, struct usp_notify_agent *na,
                      const struct usp_agent_reply *r)
{
    if (r && r->msg_id)
        usp_notify_resp_received(n, na, r->controller, r->msg_id);
}

/* --- TimeToLive ---------------------------------------------------------- */

/* When subscription `row` expires (agent seconds), or INT64_MAX. */
static int64_t ttl_expiry(const struct notify_schema *sc, const struct usp_dm_agent *a,
                          const struct usp_dm_inst *row)
{
    uint64_t ttl = sc->s_ttl ? notify__get_uint(a, row, sc->s_ttl, 0) : 0;
    if (!ttl)
        return INT64_MAX;
    char v[64];
    int64_t created;
    /* An unknown CreationDate counts from the agent's boot. */
    if (!notify__parse_time(notify__get(a, row, sc->s_creation, v, sizeof v), &created))
        created = a->boot_sec;
    return created + (int64_t)ttl;
}

static void ttl_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct notify_state *st = container_of(e, struct notify_timers, ttl)->st;
    struct usp_notifier *n = st->n;
    struct usp_dm_agent *a = st->dm;
    const struct notify_schema *sc = notify__schema(n, a);
    if (!sc || !sc->sub) {
        notify__state_release(st);
        return;
    }
    st->busy++;
    uint32_t *rows = malloc(NOTIFY_MAX_SUBS * sizeof *rows);
    size_t nrows = rows ? notify__sub_rows(sc, a, rows, NOTIFY_MAX_SUBS) : 0;
    int64_t now_s = notify__now(n, a);
    size_t deleted = 0;
    for (size_t i = 0; i < nrows && !st->dead; i++) {
        struct usp_dm_inst row;
        notify__row(sc->sub, rows[i], &row);
        if (ttl_expiry(sc, a, &row) > now_s || usp_dm_delete(a, &row) != 0)
            continue;
        n->stats.ttl_removed++;
        deleted++;
        char path[64];
        snprintf(path, sizeof path, "Device.LocalAgent.Subscription.%u.", rows[i]);
        struct usp_dm_event_info ev = {.kind = USP_EV_OBJ_DELETION, .path = path};
        notify__process(n, a, st->owner, &ev, 0, NULL);
    }
    if (deleted && sc->sub_count && !st->dead) {
        struct usp_dm_inst la = {.obj = sc->sub->parent};
        char v[24], path[64];
        snprintf(v, sizeof v, "%u", usp_dm_count(a, sc->sub, &la));
        snprintf(path, sizeof path, "Device.LocalAgent.%s", sc->sub_count->name);
        struct usp_dm_event_info ev = {.kind = USP_EV_VALUE_CHANGE, .path = path, .value = v};
        notify__process(n, a, st->owner, &ev, 0, NULL);
    }
    free(rows);
    if (!st->dead)
        usp_notify_refresh(n, a, st->owner); /* re-arms for the next expiry */
    st->busy--;
    notify__state_release(st);
}

/* --- Periodic! ----------------------------------------------------------- */

/* The first time ref + k*interval strictly after `now`. */
static int64_t next_boundary(int64_t ref, uint32_t interval, int64_t now)
{
    int64_t d = now - ref, iv = interval, k;
    if (d >= 0)
        k = d / iv + 1;
    else
        k = -((-d + iv - 1) / iv) + 1;
    if (ref + k * iv <= now) /* -d a multiple of the interval */
        k++;
    return ref + k * iv;
}

static void periodic_arm(struct usp_notifier *n, struct notify_periodic *pe, int64_t now_s,
                         uint64_t now_ms)
{
    int64_t next = next_boundary(pe->ref, pe->interval, now_s);
    pe->due = next;
    usp_tw_add(n->cfg.tw, &pe->tw, now_ms + (uint64_t)(next - now_s) * 1000);
}

static void periodic_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct notify_periodic *pe = container_of(e, struct notify_periodic, tw);
    struct notify_state *st = pe->st;
    struct usp_notifier *n = st->n;
    uint32_t ctrl = pe->ctrl;
    int64_t now_s = notify__now(n, st->dm);
    /* A clock a little behind the wheel must not send the same period twice. */
    periodic_arm(n, pe, now_s > pe->due ? now_s : pe->due, now);
    st->busy++;
    n->stats.periodic++;
    struct usp_dm_event_info ev = {
        .kind = USP_EV_EVENT, .path = "Device.LocalAgent.", .name = "Periodic!"};
    notify__process(n, st->dm, st->owner, &ev, ctrl, NULL);
    st->busy--;
    notify__state_release(st);
}

/* --- Dynamic values ------------------------------------------------------ */

struct watch_vec {
    const struct usp_dm_agent *a;
    struct notify_watch *v;
    uint32_t n, cap, max;
    bool oom;
};

static bool inst_eq(const struct usp_dm_inst *x, const struct usp_dm_inst *y)
{
    if (x->obj != y->obj || x->n != y->n)
        return false;
    return !memcmp(x->inst, y->inst, x->n * sizeof x->inst[0]);
}

static int watch_param(void *ctx, const struct usp_dm_inst *o, const struct usp_dm_param *p)
{
    struct watch_vec *w = ctx;
    if (!usp_dm_is_dynamic(w->a, o, p))
        return 0;
    for (uint32_t i = 0; i < w->n; i++)
        if (w->v[i].p == p && inst_eq(&w->v[i].o, o))
            return 0;
    if (w->n == w->max)
        return 1; /* full: stop looking */
    if (w->n == w->cap) {
        uint32_t cap = w->cap ? w->cap * 2 : 4;
        if (cap > w->max)
            cap = w->max;
        struct notify_watch *nv = realloc(w->v, cap * sizeof *nv);
        if (!nv) {
            w->oom = true;
            return 1;
        }
        w->v = nv;
        w->cap = cap;
    }
    struct notify_watch *nw = &w->v[w->n++];
    memset(nw, 0, sizeof *nw);
    nw->o.obj = o->obj;
    nw->o.n = o->n;
    memcpy(nw->o.inst, o->inst, o->n * sizeof o->inst[0]);
    nw->p = p;
    return 0;
}

static int watch_match(void *ctx, const struct usp_dm_match *m)
{
    if (m->param)
        return watch_param(ctx, &m->obj, m->param);
    if (m->command || m->event)
        return 0;
    struct watch_vec *w = ctx;
    unsigned budget = 4096;
    return notify__walk_params(w->a, &m->obj, watch_param, ctx, &budget);
}

static uint64_t value_hash(const struct usp_dm_agent *a, const struct notify_watch *w, char *buf,
                           size_t len)
{
    if (usp_dm_get(a, &w->o, w->p, buf, len) != 0)
        buf[0] = '\0';
    return notify__hash(buf, strlen(buf));
}

static bool watch_path(const struct notify_watch *w, char *buf, size_t len)
{
    if (usp_dm_inst_path(&w->o, buf, len) != 0)
        return false;
    size_t l = strlen(buf), nl = strlen(w->p->name);
    if (l + nl >= len)
        return false;
    memcpy(buf + l, w->p->name, nl + 1);
    return true;
}

void notify__watch_seen(struct notify_state *st, const char *path, const char *value)
{
    char buf[1024];
    for (uint32_t i = 0; i < st->nwatch; i++) {
        if (watch_path(&st->watch[i], buf, sizeof buf) && !strcmp(buf, path)) {
            st->watch[i].hash = notify__hash(value, strlen(value));
            return;
        }
    }
}

struct change {
    char *path, *value;
};

static void poll_fire(struct usp_tw_entry *e, uint64_t now)
{
    struct notify_state *st = container_of(e, struct notify_timers, poll)->st;
    struct usp_notifier *n = st->n;
    struct usp_dm_agent *a = st->dm;
    usp_tw_add(n->cfg.tw, e, now + n->cfg.poll_ms);
    st->busy++;
    /* Collect first: a send may change the watch list. */
    char *val = malloc(USP_DM_VALUE_MAX);
    struct change *ch = calloc(st->nwatch ? st->nwatch : 1, sizeof *ch);
    uint32_t nch = 0;
    char path[1024];
    for (uint32_t i = 0; val && ch && i < st->nwatch; i++) {
        struct notify_watch *w = &st->watch[i];
        uint64_t h = value_hash(a, w, val, USP_DM_VALUE_MAX);
        n->stats.polled++;
        if (h == w->hash || !watch_path(w, path, sizeof path))
            continue;
        w->hash = h;
        ch[nch].path = strdup(path);
        ch[nch].value = strdup(val);
        if (ch[nch].path && ch[nch].value)
            nch++;
        else {
            free(ch[nch].path);
            free(ch[nch].value);
        }
    }
    for (uint32_t i = 0; i < nch; i++) {
        if (!st->dead) {
            struct usp_dm_event_info ev = {
                .kind = USP_EV_VALUE_CHANGE, .path = ch[i].path, .value = ch[i].value};
            notify__process(n, a, st->owner, &ev, 0, NULL);
        }
        free(ch[i].path);
        free(ch[i].value);
    }
    free(ch);
    free(val);
    st->busy--;
    notify__state_release(st);
}

/* --- Refresh ------------------------------------------------------------- */

struct refresh {
    char refs[USP_DM_VALUE_MAX];
    char v[512];
    uint32_t rows[NOTIFY_MAX_SUBS];
    uint32_t ctrls[MAX_PERIODIC];
    unsigned nctrls;
    struct notify_epath periodic;
    char pbuf[64];
};

static bool is_type(const struct notify_schema *sc, const struct usp_dm_agent *a,
                    const struct usp_dm_inst *row, char *buf, size_t len, const char *want)
{
    return !strcmp(notify__get(a, row, sc->s_type, buf, len), want);
}

/* The Periodic! timers for r->ctrls; keeps the time of an unchanged one. */
static int set_periodic(struct notify_state *st, const struct notify_schema *sc, struct refresh *r,
                        int64_t now_s)
{
    struct usp_notifier *n = st->n;
    struct usp_dm_agent *a = st->dm;
    struct notify_periodic *np = NULL;
    uint32_t nn = 0;
    if (r->nctrls && sc->c_per_interval) {
        np = calloc(r->nctrls, sizeof *np);
        if (!np)
            return USP_ENOMEM;
    }
    uint64_t now_ms = usp_tw_now(n->cfg.tw);
    for (unsigned i = 0; np && i < r->nctrls; i++) {
        struct usp_dm_inst crow;
        notify__row(sc->ctrl, r->ctrls[i], &crow);
        uint64_t iv = notify__get_uint(a, &crow, sc->c_per_interval, 0);
        if (!iv || iv > UINT32_MAX)
            continue;
        int64_t ref;
        if (!notify__parse_time(notify__get(a, &crow, sc->c_per_time, r->v, sizeof r->v), &ref))
            ref = a->boot_sec; /* unknown time: the agent picks, here its boot */
        struct notify_periodic *pe = &np[nn++];
        usp_tw_entry_init(&pe->tw, periodic_fire);
        pe->st = st;
        pe->ctrl = r->ctrls[i];
        pe->interval = (uint32_t)iv;
        pe->ref = ref;
        const struct notify_periodic *old = NULL;
        for (uint32_t j = 0; j < st->nper; j++)
            if (st->per[j].ctrl == pe->ctrl && st->per[j].interval == pe->interval &&
                st->per[j].ref == ref && usp_tw_pending(&st->per[j].tw))
                old = &st->per[j];
        if (old) {
            pe->due = old->due;
            usp_tw_add(n->cfg.tw, &pe->tw, usp_tw_expires(&old->tw));
        } else {
            periodic_arm(n, pe, now_s, now_ms);
        }
    }
    clear_periodic(st);
    if (nn) {
        st->per = np;
        st->nper = nn;
        mem_add(st, (long)(nn * sizeof *np));
    } else {
        free(np);
    }
    return 0;
}

/* Installs the new watch list, keeping what was last seen of old entries.
 * 0 or USP_ENOMEM. */
static int set_watch(struct notify_state *st, struct watch_vec *w)
{
    char *val = malloc(USP_DM_VALUE_MAX);
    for (uint32_t i = 0; i < w->n; i++) {
        bool known = false;
        for (uint32_t j = 0; j < st->nwatch && !known; j++)
            if (st->watch[j].p == w->v[i].p && inst_eq(&st->watch[j].o, &w->v[i].o)) {
                w->v[i].hash = st->watch[j].hash;
                known = true;
            }
        if (!known && val)
            w->v[i].hash = value_hash(st->dm, &w->v[i], val, USP_DM_VALUE_MAX);
    }
    free(val);
    bool polling = st->tm && usp_tw_pending(&st->tm->poll);
    uint64_t due = polling ? usp_tw_expires(&st->tm->poll) : 0;
    clear_watch(st);
    if (!w->n)
        return 0;
    struct notify_timers *tm = timers(st);
    if (!tm)
        return USP_ENOMEM;
    st->watch = w->v;
    st->nwatch = w->n;
    w->v = NULL;
    mem_add(st, (long)(st->nwatch * sizeof *st->watch));
    if (polling)
        usp_tw_add(st->n->cfg.tw, &tm->poll, due);
    else
        usp_tw_add_in(st->n->cfg.tw, &tm->poll, st->n->cfg.poll_ms);
    return 0;
}

int usp_notify_refresh(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na)
{
    const struct notify_schema *sc = notify__schema(n, a);
    if (!sc)
        return USP_ENOMEM;
    struct notify_state *st = na->st;
    if (st)
        st->busy++;
    int rc = 0;
    struct watch_vec w = {.a = a, .max = n->cfg.watch_max};
    struct refresh *r = calloc(1, sizeof *r);
    if (!r) {
        rc = USP_ENOMEM;
        goto out;
    }
    int64_t now_s = notify__now(n, a);
    int64_t ttl_min = INT64_MAX;
    bool per_ok =
        sc->has_periodic && sc->ctrl &&
        notify__epath(&r->periodic, "Device.LocalAgent.", "Periodic!", r->pbuf, sizeof r->pbuf);
    size_t nrows = sc->sub ? notify__sub_rows(sc, a, r->rows, NOTIFY_MAX_SUBS) : 0;
    for (size_t i = 0; i < nrows; i++) {
        struct usp_dm_inst row;
        notify__row(sc->sub, r->rows[i], &row);
        int64_t exp = ttl_expiry(sc, a, &row); /* TimeToLive holds for disabled rows too */
        if (exp < ttl_min)
            ttl_min = exp;
        if (sc->s_enable && !notify__get_bool(a, &row, sc->s_enable))
            continue;
        if (sc->s_trigger &&
            !strcmp(notify__get(a, &row, sc->s_trigger, r->v, sizeof r->v), "Config"))
            continue;
        bool ev = per_ok && is_type(sc, a, &row, r->v, sizeof r->v, "Event");
        bool vc = !ev && is_type(sc, a, &row, r->v, sizeof r->v, "ValueChange");
        if (!ev && !vc)
            continue;
        if (!notify__get(a, &row, sc->s_refs, r->refs, sizeof r->refs)[0])
            continue;
        const struct notify_reflist *rl = notify__reflist(n, r->refs);
        if (!rl) {
            rc = USP_ENOMEM;
            goto out;
        }
        if (ev) {
            if (!notify__match(a, rl, NT_EVENT, &r->periodic))
                continue;
            uint32_t c = notify__recipient(sc, a, &row, r->v, sizeof r->v);
            bool seen = false;
            for (unsigned j = 0; j < r->nctrls; j++)
                seen |= r->ctrls[j] == c;
            if (c && !seen && r->nctrls < MAX_PERIODIC)
                r->ctrls[r->nctrls++] = c;
            continue;
        }
        for (uint32_t j = 0; j < rl->nrefs && w.n < w.max; j++) {
            const struct usp_path *p = rl->refs[j].p;
            if (!(p->flags & (USP_PATH_OBJECT | USP_PATH_PARAM)))
                continue;
            struct usp_dm_path_err err;
            usp_dm_resolve(a, p, watch_match, &w, &err);
        }
        if (w.oom) {
            rc = USP_ENOMEM;
            goto out;
        }
    }
    if (ttl_min == INT64_MAX && !r->nctrls && !w.n && !(st && st->pending)) {
        if (st) { /* nothing to keep time for any more */
            clear_periodic(st);
            clear_watch(st);
            if (st->tm)
                usp_tw_cancel(n->cfg.tw, &st->tm->ttl);
            timers_trim(st);
        }
        goto out;
    }
    if (!st) {
        st = notify__state(n, a, na);
        if (!st) {
            rc = USP_ENOMEM;
            goto out;
        }
        st->busy++;
    }
    if (ttl_min != INT64_MAX) {
        struct notify_timers *tm = timers(st);
        if (!tm) {
            rc = USP_ENOMEM;
            goto out;
        }
        usp_tw_add_in(n->cfg.tw, &tm->ttl,
                      ttl_min > now_s ? (uint64_t)(ttl_min - now_s) * 1000 : 0);
    } else if (st->tm) {
        usp_tw_cancel(n->cfg.tw, &st->tm->ttl);
    }
    rc = set_periodic(st, sc, r, now_s);
    if (!rc)
        rc = set_watch(st, &w);
    timers_trim(st);
out:
    free(w.v);
    free(r);
    if (st) {
        st->busy--;
        notify__state_release(st);
    }
    return rc;
}
