/* Notifications, agent side: matching events against the agent's
 * Device.LocalAgent.Subscription.{i}. rows and building the Notify
 * messages (TR-369 "Notifications and Subscriptions", the Subscription
 * object of TR-181). Per-agent state, retries and timers are in
 * notify_retry.c.
 *
 * Decisions where the specification leaves room:
 * - The data model is the record of subscriptions; rows are read at each
 *   event. What would be costly to redo, parsing ReferenceList paths, is
 *   cached per notifier by the list's text, which agents built from one
 *   profile share.
 * - Matching is structural first (names, instance numbers; '*' and
 *   '[expr]' match any instance). An entry with a search expression or
 *   reference following is then resolved against the agent's data and the
 *   event path must be one of its matches (or below an object match).
 *   ObjectDeletion cannot look at a row that is gone: there a search
 *   expression on the row acts as a wildcard, and reference following does
 *   not match.
 * - ObjectCreation and ObjectDeletion take a table path ("Device.WiFi.SSID.")
 *   as naming all its rows, besides instance, wildcard and search paths.
 * - A subscription with TriggerAction "Config" sends nothing (applying
 *   TriggerConfigSettings is not done here); a disabled Recipient
 *   controller gets nothing.
 * - Boot!'s ParameterMap: each enabled BootParameter row's ParameterName is
 *   resolved (search paths and object paths expand to every parameter
 *   below) and the values go into one JSON object keyed by parameter
 *   path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify_int.h"
#include "usp/errors.h"

static const char *const type_names[NT_COUNT] = {
    [NT_VALUE_CHANGE] = "ValueChange",
    [NT_OBJ_CREATION] = "ObjectCreation",
    [NT_OBJ_DELETION] = "ObjectDeletion",
    [NT_OPER_COMPLETE] = "OperationComplete",
    [NT_EVENT] = "Event",
};

/* --- Small helpers ------------------------------------------------------- */

uint64_t notify__hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int64_t notify__now(const struct usp_notifier *n, const struct usp_dm_agent *a)
{
    if (n->cfg.now)
        return n->cfg.now(n->cfg.ctx, a);
    return usp_dm_agent_now(a);
}

const char *notify__get(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                        const struct usp_dm_param *p, char *buf, size_t len)
{
    if (!p || usp_dm_get(a, o, p, buf, len) != 0)
        buf[0] = '\0';
    return buf;
}

bool notify__get_bool(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                      const struct usp_dm_param *p)
{
    char v[8];
    notify__get(a, o, p, v, sizeof v);
    return !strcmp(v, "true") || !strcmp(v, "1");
}

uint64_t notify__get_uint(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                          const struct usp_dm_param *p, uint64_t def)
{
    char v[24];
    notify__get(a, o, p, v, sizeof v);
    if (!v[0])
        return def;
    uint64_t x = 0;
    for (const char *s = v; *s; s++) {
        if (*s < '0' || *s > '9' || x > (UINT64_MAX - 9) / 10)
            return def;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    return x;
}

void notify__row(const struct usp_dm_object *table, uint32_t inst, struct usp_dm_inst *out)
{
    memset(out, 0, sizeof *out);
    out->obj = table;
    out->n = 1;
    out->inst[0] = inst;
}

static int two(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool notify__parse_time(const char *s, int64_t *out)
{
    int y1, y2, mo, d, h, mi, se;
    if (strlen(s) < 20 || two(s, &y1) || two(s + 2, &y2) || s[4] != '-' || two(s + 5, &mo) ||
        s[7] != '-' || two(s + 8, &d) || s[10] != 'T' || two(s + 11, &h) || s[13] != ':' ||
        two(s + 14, &mi) || s[16] != ':' || two(s + 17, &se))
        return false;
    int year = y1 * 100 + y2;
    if (year <= 1 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false; /* year 0001 is TR-106's unknown time */
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int64_t off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (two(p + 1, &oh) || p[3] != ':' || two(p + 4, &om))
            return false;
        off = (oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    }
    if (*p)
        return false;
    *out = days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    return true;
}

/* --- Schema bindings ----------------------------------------------------- */

static const struct usp_dm_object *find_obj(const struct usp_dm_schema *s, const char *path)
{
    struct usp_dm_item it;
    if (usp_dm_lookup(s, path, &it) != 0 || it.kind != USP_DM_KIND_OBJECT)
        return NULL;
    return it.object;
}

static const struct usp_dm_param *find_param(const struct usp_dm_object *o, const char *name)
{
    return o ? usp_dm_object_param(o, name, strlen(name)) : NULL;
}

static void bind_schema(struct notify_schema *b, const struct usp_dm_schema *s)
{
    memset(b, 0, sizeof *b);
    b->schema = s;
    const struct usp_dm_object *o = find_obj(s, "Device.LocalAgent.Subscription.{i}.");
    if (o && (o->flags & USP_DM_OBJ_MULTI)) {
        b->sub = o;
        b->s_enable = find_param(o, "Enable");
        b->s_recipient = find_param(o, "Recipient");
        b->s_id = find_param(o, "ID");
        b->s_creation = find_param(o, "CreationDate");
        b->s_type = find_param(o, "NotifType");
        b->s_refs = find_param(o, "ReferenceList");
        b->s_ttl = find_param(o, "TimeToLive");
        b->s_retry = find_param(o, "NotifRetry");
        b->s_expiration = find_param(o, "NotifExpiration");
        b->s_trigger = find_param(o, "TriggerAction");
        b->sub_count = find_param(o->parent, "SubscriptionNumberOfEntries");
        if (!b->s_type || !b->s_refs || !b->s_recipient)
            b->sub = NULL; /* nothing to match on */
    }
    o = find_obj(s, "Device.LocalAgent.Controller.{i}.");
    if (o && (o->flags & USP_DM_OBJ_MULTI)) {
        b->ctrl = o;
        b->c_enable = find_param(o, "Enable");
        b->c_eid = find_param(o, "EndpointID");
        b->c_min_wait = find_param(o, "USPNotifRetryMinimumWaitInterval");
        b->c_mult = find_param(o, "USPNotifRetryIntervalMultiplier");
        b->c_per_interval = find_param(o, "PeriodicNotifInterval");
        b->c_per_time = find_param(o, "PeriodicNotifTime");
    }
    o = find_obj(s, "Device.LocalAgent.Controller.{i}.BootParameter.{i}.");
    if (o && b->ctrl) {
        b->bootp = o;
        b->b_enable = find_param(o, "Enable");
        b->b_name = find_param(o, "ParameterName");
    }
    b->devinfo = find_obj(s, "Device.DeviceInfo.");
    b->d_oui = find_param(b->devinfo, "ManufacturerOUI");
    b->d_class = find_param(b->devinfo, "ProductClass");
    b->d_serial = find_param(b->devinfo, "SerialNumber");
    struct usp_dm_item it;
    if (!usp_dm_lookup(s, "Device.Boot!", &it) && it.kind == USP_DM_KIND_EVENT) {
        b->boot_has_reason = find_param(it.event->args, "Reason") != NULL;
        b->boot_has_map = find_param(it.event->args, "ParameterMap") != NULL;
    }
    b->has_periodic =
        !usp_dm_lookup(s, "Device.LocalAgent.Periodic!", &it) && it.kind == USP_DM_KIND_EVENT;
}

const struct notify_schema *notify__schema(struct usp_notifier *n, const struct usp_dm_agent *a)
{
    const struct usp_dm_schema *s = usp_dm_model_schema(a->model);
    for (unsigned i = 0; i < n->nschemas; i++)
        if (n->schemas[i]->schema == s)
            return n->schemas[i];
    /* Bindings never move: callers keep them across sends. */
    struct notify_schema **ns = realloc(n->schemas, (n->nschemas + 1) * sizeof *ns);
    if (!ns)
        return NULL;
    n->schemas = ns;
    struct notify_schema *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    bind_schema(b, s);
    ns[n->nschemas++] = b;
    return b;
}

/* --- ReferenceList cache ------------------------------------------------- */

static void reflist_free(struct notify_reflist *rl)
{
    for (uint32_t i = 0; i < rl->nrefs; i++)
        usp_path_free(rl->refs[i].p);
    free(rl->text);
    free(rl);
}

static void cache_flush(struct usp_notifier *n)
{
    for (size_t b = 0; b < n->nbuckets; b++) {
        struct notify_reflist *rl = n->buckets[b];
        while (rl) {
            struct notify_reflist *next = rl->next;
            reflist_free(rl);
            rl = next;
        }
        n->buckets[b] = NULL;
    }
    n->ncached = 0;
}

/* The items of a comma-separated list: commas inside '[...]' or a quoted
 * string belong to a search expression. Calls cb(item, len) for each
 * non-empty item, trimmed. */
static int split_list(const char *s, int (*cb)(void *ctx, const char *item, size_t len), void *ctx)
{
    int depth = 0;
    bool quoted = false;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == '"' && depth > 0)
            quoted = !quoted;
        else if (!quoted && *p == '[')
            depth++;
        else if (!quoted && *p == ']' && depth > 0)
            depth--;
        if (*p == '\0' || (*p == ',' && depth == 0 && !quoted)) {
            const char *a = start, *b = p;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (b > a) {
                int rc = cb(ctx, a, (size_t)(b - a));
                if (rc)
                    return rc;
            }
            if (*p == '\0')
                return 0;
            start = p + 1;
        }
    }
}

static int count_item(void *ctx, const char *item, size_t len)
{
    (*(uint32_t *)ctx)++;
    return 0;
}

struct fill_ctx {
    struct usp_notifier *n;
    struct notify_reflist *rl;
};

static int fill_item(void *ctx, const char *item, size_t len)
{
    struct fill_ctx *f = ctx;
    struct usp_path *p = NULL;
    int rc = usp_path_parse_n(item, len, 0, &p, NULL);
    if (rc == USP_ENOMEM)
        return rc;
    if (rc) {
        f->n->stats.bad_refs++;
        return 0;
    }
    struct notify_ref *r = &f->rl->refs[f->rl->nrefs++];
    r->p = p;
    r->resolve = (p->flags & (USP_PATH_HAS_SEARCH | USP_PATH_HAS_REF)) != 0;
    return 0;
}

const struct notify_reflist *notify__reflist(struct usp_notifier *n, const char *text)
{
    size_t len = strlen(text);
    uint64_t h = notify__hash(text, len);
    size_t b = (size_t)h & (n->nbuckets - 1);
    for (struct notify_reflist *rl = n->buckets[b]; rl; rl = rl->next)
        if (rl->hash == h && !strcmp(rl->text, text))
            return rl;
    if (n->ncached >= NOTIFY_CACHE_MAX)
        cache_flush(n); /* nothing holds an entry across calls */
    uint32_t items = 0;
    split_list(text, count_item, &items);
    struct notify_reflist *rl = calloc(1, sizeof *rl + items * sizeof rl->refs[0]);
    if (!rl)
        return NULL;
    rl->hash = h;
    rl->text = malloc(len + 1);
    struct fill_ctx f = {n, rl};
    if (!rl->text || split_list(text, fill_item, &f)) {
        reflist_free(rl);
        return NULL;
    }
    memcpy(rl->text, text, len + 1);
    rl->next = n->buckets[b];
    n->buckets[b] = rl;
    n->ncached++;
    return rl;
}

/* --- Matching ------------------------------------------------------------ */

bool notify__epath(struct notify_epath *e, const char *path, const char *name, char *buf,
                   size_t len)
{
    if (!path)
        return false;
    const char *t = path;
    if (name) {
        int w = snprintf(buf, len, "%s%s", path, name);
        if (w < 0 || (size_t)w >= len)
            return false;
        t = buf;
    }
    e->text = t;
    e->len = strlen(t);
    e->ntok = 0;
    e->is_obj = e->len > 0 && t[e->len - 1] == '.';
    const char *s = t;
    while (*s) {
        const char *d = strchr(s, '.');
        size_t l = d ? (size_t)(d - s) : strlen(s);
        if (l == 0 || e->ntok == NOTIFY_MAX_TOKENS)
            return false;
        e->tok[e->ntok].s = s;
        e->tok[e->ntok].len = (uint32_t)l;
        e->ntok++;
        if (!d)
            break;
        s = d + 1;
    }
    return e->ntok > 0;
}

static bool tok_number(const char *s, uint32_t len, uint32_t *v)
{
    if (len == 0 || len > 10 || s[0] < '1' || s[0] > '9')
        return false;
    uint64_t x = 0;
    for (uint32_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

enum { SM_NO, SM_EXACT, SM_PREFIX };

/* Aligns the reference's segments with the event path's tokens. */
static int smatch(const struct usp_path *r, const struct notify_epath *e, unsigned *used)
{
    unsigned i = 0;
    for (uint32_t k = 0; k < r->nseg; k++, i++) {
        const struct usp_path_seg *sg = &r->seg[k];
        if (i >= e->ntok)
            return SM_NO;
        const char *ts = e->tok[i].s;
        uint32_t tl = e->tok[i].len, num;
        switch (sg->kind) {
        case USP_PATH_SEG_NAME:
        case USP_PATH_SEG_COMMAND:
        case USP_PATH_SEG_EVENT:
            if (tl != sg->len || memcmp(ts, sg->name, tl) != 0)
                return SM_NO;
            break;
        case USP_PATH_SEG_INSTANCE:
            if (!tok_number(ts, tl, &num) || num != sg->inst)
                return SM_NO;
            break;
        case USP_PATH_SEG_WILDCARD:
        case USP_PATH_SEG_SEARCH:
        case USP_PATH_SEG_SUPPORTED:
            if (!tok_number(ts, tl, &num))
                return SM_NO;
            break;
        default: /* reference following: not structural */
            return SM_NO;
        }
    }
    *used = i;
    return i == e->ntok ? SM_EXACT : SM_PREFIX;
}

static bool structural(const struct usp_path *r, enum notify_type type,
                       const struct notify_epath *e)
{
    unsigned used = 0;
    int m = smatch(r, e, &used);
    if (m == SM_NO)
        return false;
    uint32_t f = r->flags;
    uint32_t num;
    switch (type) {
    case NT_VALUE_CHANGE:
        return !e->is_obj && (((f & USP_PATH_PARAM) && m == SM_EXACT) ||
                              ((f & USP_PATH_OBJECT) && m == SM_PREFIX));
    case NT_OBJ_CREATION:
    case NT_OBJ_DELETION:
        if (!e->is_obj || !(f & USP_PATH_OBJECT))
            return false;
        if (m == SM_EXACT) /* a row, '*' or '[expr]' */
            return r->seg[r->nseg - 1].kind != USP_PATH_SEG_NAME;
        /* a table path: the event is one of its rows */
        return used + 1 == e->ntok && r->seg[r->nseg - 1].kind == USP_PATH_SEG_NAME &&
               tok_number(e->tok[used].s, e->tok[used].len, &num);
    case NT_OPER_COMPLETE:
        return ((f & USP_PATH_COMMAND) && m == SM_EXACT) ||
               ((f & USP_PATH_OBJECT) && m == SM_PREFIX);
    case NT_EVENT:
        return ((f & USP_PATH_EVENT) && m == SM_EXACT) || ((f & USP_PATH_OBJECT) && m == SM_PREFIX);
    default:
        return false;
    }
}

/* Whether the event path `e` is covered by a resolved match `m` (its path
 * text) of a reference with flags `rf`. */
static bool covered(enum notify_type type, uint32_t rf, const char *m, const struct notify_epath *e)
{
    size_t ml = strlen(m);
    bool m_obj = ml > 0 && m[ml - 1] == '.';
    bool starts = e->len > ml && !strncmp(e->text, m, ml);
    uint32_t num;
    switch (type) {
    case NT_VALUE_CHANGE:
        if (e->is_obj)
            return false;
        return m_obj ? (rf & USP_PATH_OBJECT) && starts : !strcmp(m, e->text);
    case NT_OBJ_CREATION:
    case NT_OBJ_DELETION:
        if (!m_obj || !e->is_obj)
            return false;
        if (!strcmp(m, e->text))
            return true;
        /* a table's path: the row is the table path plus "N." */
        return starts && tok_number(e->text + ml, (uint32_t)(e->len - ml - 1), &num);
    case NT_OPER_COMPLETE:
    case NT_EVENT:
        return m_obj ? (rf & USP_PATH_OBJECT) && starts : !strcmp(m, e->text);
    default:
        return false;
    }
}

struct verify_ctx {
    enum notify_type type;
    uint32_t rflags;
    const struct notify_epath *e;
    char buf[1024];
};

static int verify_cb(void *ctx, const struct usp_dm_match *m)
{
    struct verify_ctx *v = ctx;
    if (usp_dm_inst_path(&m->obj, v->buf, sizeof v->buf) != 0)
        return 0;
    const char *item = m->param     ? m->param->name
                       : m->command ? m->command->name
                       : m->event   ? m->event->name
                                    : NULL;
    if (item) {
        size_t l = strlen(v->buf), il = strlen(item);
        if (l + il >= sizeof v->buf)
            return 0;
        memcpy(v->buf + l, item, il + 1);
    }
    return covered(v->type, v->rflags, v->buf, v->e) ? 1 : 0;
}

bool notify__match(const struct usp_dm_agent *a, const struct notify_reflist *rl,
                   enum notify_type type, const struct notify_epath *e)
{
    for (uint32_t i = 0; i < rl->nrefs; i++) {
        const struct notify_ref *r = &rl->refs[i];
        bool follows = r->p->flags & USP_PATH_HAS_REF;
        if (!follows) {
            if (!structural(r->p, type, e))
                continue;
            if (!r->resolve || type == NT_OBJ_DELETION)
                return true;
        } else if (type == NT_OBJ_DELETION) {
            continue; /* the row is gone: nothing to follow */
        }
        struct verify_ctx v = {.type = type, .rflags = r->p->flags, .e = e};
        struct usp_dm_path_err err;
        if (usp_dm_resolve(a, r->p, verify_cb, &v, &err) == 1)
            return true;
    }
    return false;
}

/* --- Walking parameters -------------------------------------------------- */

static unsigned obj_levels(const struct usp_dm_object *o)
{
    unsigned n = 0;
    for (const char *s = o->path; (s = strstr(s, "{i}")) != NULL; s += 3)
        n++;
    return n;
}

struct inst_list {
    uint32_t *v;
    size_t n, cap;
};

static int collect_inst(void *ctx, uint32_t inst)
{
    struct inst_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        uint32_t *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return USP_ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = inst;
    return 0;
}

/* Walks every row of table `t` under `parent` (whose n is t's levels - 1). */
static int walk_rows(const struct usp_dm_agent *a, const struct usp_dm_object *t,
                     const struct usp_dm_inst *parent, notify_param_cb cb, void *ctx,
                     unsigned *budget)
{
    if (parent->n >= USP_DM_MAX_LEVELS)
        return 0;
    struct inst_list l = {0};
    int rc = usp_dm_instances(a, t, parent, collect_inst, &l);
    for (size_t i = 0; i < l.n && !rc; i++) {
        struct usp_dm_inst row = *parent;
        row.obj = t;
        row.inst[row.n++] = l.v[i];
        rc = notify__walk_params(a, &row, cb, ctx, budget);
    }
    free(l.v);
    return rc;
}

int notify__walk_params(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                        notify_param_cb cb, void *ctx, unsigned *budget)
{
    const struct usp_dm_object *obj = o->obj;
    if (!obj || *budget == 0)
        return 0;
    if ((obj->flags & USP_DM_OBJ_MULTI) && o->n < obj_levels(obj)) /* a table match */
        return walk_rows(a, obj, o, cb, ctx, budget);
    (*budget)--;
    int rc = 0;
    for (uint32_t i = 0; i < obj->nparams && !rc; i++)
        rc = cb(ctx, o, &obj->params[i]);
    for (uint32_t i = 0; i < obj->nchildren && !rc; i++) {
        const struct usp_dm_object *c = obj->children[i];
        if (c->flags & (USP_DM_OBJ_ARGS | USP_DM_OBJ_ARG_OBJECT))
            continue;
        if (c->flags & USP_DM_OBJ_MULTI) {
            rc = walk_rows(a, c, o, cb, ctx, budget);
        } else {
            struct usp_dm_inst child = *o;
            child.obj = c;
            rc = notify__walk_params(a, &child, cb, ctx, budget);
        }
    }
    return rc;
}

/* --- Building messages --------------------------------------------------- */

/* The notifier's arena, or a fresh one for a send nested in another (a
 * send callback that makes the agent notify again). */
struct usp_arena *notify__arena_get(struct usp_notifier *n)
{
    struct usp_arena *ar = n->arena_depth ? usp_arena_new(0) : n->arena;
    if (ar)
        n->arena_depth++;
    return ar;
}

void notify__arena_put(struct usp_notifier *n, struct usp_arena *ar)
{
    n->arena_depth--;
    if (ar == n->arena)
        usp_arena_reset(ar);
    else
        usp_arena_free(ar);
}

static char *sdup(struct usp_arena *ar, const char *s)
{
    return usp_arena_strdup(ar, s ? s : "");
}

/* A Notify request in the arena; *nt gets its Notify body. */
static Usp__Msg *new_notify(struct usp_arena *ar, const char *msg_id, const char *sub_id,
                            bool send_resp, Usp__Notify **nt)
{
    Usp__Msg *m = usp_arena_alloc(ar, sizeof *m);
    Usp__Header *h = usp_arena_alloc(ar, sizeof *h);
    Usp__Body *b = usp_arena_alloc(ar, sizeof *b);
    Usp__Request *r = usp_arena_alloc(ar, sizeof *r);
    Usp__Notify *no = usp_arena_alloc(ar, sizeof *no);
    if (!m || !h || !b || !r || !no)
        return NULL;
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__request__init(r);
    usp__notify__init(no);
    h->msg_id = sdup(ar, msg_id);
    h->msg_type = USP__HEADER__MSG_TYPE__NOTIFY;
    no->subscription_id = sdup(ar, sub_id);
    no->send_resp = send_resp;
    r->req_type_case = USP__REQUEST__REQ_TYPE_NOTIFY;
    r->notify = no;
    b->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
    b->request = r;
    m->header = h;
    m->body = b;
    *nt = no;
    return h->msg_id && no->subscription_id ? m : NULL;
}

/* Map entries: every map<string,string> entry of usp-msg has the same
 * layout (base, key, value), so one builder serves them all. */
typedef Usp__Notify__Event__ParamsEntry KvEntry;

static KvEntry **kv_entries(struct usp_arena *ar, const ProtobufCMessageDescriptor *d,
                            const struct usp_kv *kv, uint32_t n)
{
    if (!n)
        return NULL;
    KvEntry **v = usp_arena_alloc(ar, n * sizeof *v);
    if (!v)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        KvEntry *e = usp_arena_alloc(ar, sizeof *e);
        if (!e)
            return NULL;
        usp__notify__event__params_entry__init(e);
        e->base.descriptor = d;
        e->key = sdup(ar, kv[i].key);
        e->value = sdup(ar, kv[i].value);
        if (!e->key || !e->value)
            return NULL;
        v[i] = e;
    }
    return v;
}

/* Appends `s` to a growing JSON text as a JSON string. */
struct jbuf {
    struct usp_arena *ar;
    char *s;
    size_t n, cap;
    bool oom;
};

static void jput(struct jbuf *j, const char *s, size_t len)
{
    if (j->oom)
        return;
    if (j->n + len + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 64;
        while (cap < j->n + len + 1)
            cap *= 2;
        char *ns = usp_arena_realloc(j->ar, j->s, j->cap, cap);
        if (!ns) {
            j->oom = true;
            return;
        }
        j->s = ns;
        j->cap = cap;
    }
    memcpy(j->s + j->n, s, len);
    j->n += len;
    j->s[j->n] = '\0';
}

static void jstr(struct jbuf *j, const char *s)
{
    jput(j, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            jput(j, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            jput(j, esc, 6);
        } else {
            jput(j, (const char *)p, 1);
        }
    }
    jput(j, "\"", 1);
}

struct pmap_ctx {
    struct jbuf *j;
    const struct usp_dm_agent *a;
    unsigned count;
    char path[1024];
    char value[USP_DM_VALUE_MAX];
};

static int pmap_param(void *ctx, const struct usp_dm_inst *o, const struct usp_dm_param *p)
{
    struct pmap_ctx *c = ctx;
    if (usp_dm_inst_path(o, c->path, sizeof c->path) != 0 ||
        strlen(c->path) + strlen(p->name) >= sizeof c->path)
        return 0;
    strcat(c->path, p->name);
    if (usp_dm_get(c->a, o, p, c->value, sizeof c->value) != 0)
        return 0;
    if (p->flags & USP_DM_PARAM_SECURED)
        c->value[0] = '\0';
    if (c->count++)
        jput(c->j, ",", 1);
    jstr(c->j, c->path);
    jput(c->j, ":", 1);
    jstr(c->j, c->value);
    return 0;
}

static int pmap_match(void *ctx, const struct usp_dm_match *m)
{
    struct pmap_ctx *c = ctx;
    if (m->param)
        return pmap_param(ctx, &m->obj, m->param);
    if (m->command || m->event)
        return 0;
    unsigned budget = 1024;
    return notify__walk_params(c->a, &m->obj, pmap_param, ctx, &budget);
}

/* Boot!'s ParameterMap for controller row `ctrl`: a JSON object. */
static char *param_map(const struct notify_schema *sc, const struct usp_dm_agent *a, uint32_t ctrl,
                       struct usp_arena *ar)
{
    struct jbuf j = {.ar = ar};
    jput(&j, "{", 1);
    struct pmap_ctx *c = NULL;
    struct inst_list l = {0};
    if (sc->bootp && sc->b_name) {
        struct usp_dm_inst parent;
        notify__row(sc->ctrl, ctrl, &parent);
        c = calloc(1, sizeof *c);
        if (!c || usp_dm_instances(a, sc->bootp, &parent, collect_inst, &l) < 0) {
            j.oom = true;
            goto out;
        }
        c->j = &j;
        c->a = a;
        for (size_t i = 0; i < l.n; i++) {
            struct usp_dm_inst row = parent;
            row.obj = sc->bootp;
            row.inst[row.n++] = l.v[i];
            if (sc->b_enable && !notify__get_bool(a, &row, sc->b_enable))
                continue;
            notify__get(a, &row, sc->b_name, c->value, sizeof c->value);
            struct usp_path *p;
            if (!c->value[0] || usp_path_parse(c->value, &p, NULL) != 0)
                continue;
            struct usp_dm_path_err err;
            usp_dm_resolve(a, p, pmap_match, c, &err);
            usp_path_free(p);
        }
    }
out:
    jput(&j, "}", 1);
    free(c);
    free(l.v);
    return j.oom ? NULL : j.s;
}

/* The Notify body for an event: fills `nt` per type. */
static int fill_body(struct usp_arena *ar, Usp__Notify *nt, enum notify_type type,
                     const struct usp_dm_event_info *ev, const struct usp_kv *args, uint32_t nargs)
{
    switch (type) {
    case NT_VALUE_CHANGE: {
        Usp__Notify__ValueChange *vc = usp_arena_alloc(ar, sizeof *vc);
        if (!vc)
            return USP_ENOMEM;
        usp__notify__value_change__init(vc);
        vc->param_path = sdup(ar, ev->path);
        vc->param_value = sdup(ar, ev->value);
        nt->notification_case = USP__NOTIFY__NOTIFICATION_VALUE_CHANGE;
        nt->value_change = vc;
        return vc->param_path && vc->param_value ? 0 : USP_ENOMEM;
    }
    case NT_OBJ_CREATION: {
        Usp__Notify__ObjectCreation *oc = usp_arena_alloc(ar, sizeof *oc);
        if (!oc)
            return USP_ENOMEM;
        usp__notify__object_creation__init(oc);
        oc->obj_path = sdup(ar, ev->path);
        oc->unique_keys = (Usp__Notify__ObjectCreation__UniqueKeysEntry **)kv_entries(
            ar, &usp__notify__object_creation__unique_keys_entry__descriptor, ev->kv, ev->nkv);
        oc->n_unique_keys = oc->unique_keys ? ev->nkv : 0;
        nt->notification_case = USP__NOTIFY__NOTIFICATION_OBJ_CREATION;
        nt->obj_creation = oc;
        return oc->obj_path && (oc->unique_keys || !ev->nkv) ? 0 : USP_ENOMEM;
    }
    case NT_OBJ_DELETION: {
        Usp__Notify__ObjectDeletion *od = usp_arena_alloc(ar, sizeof *od);
        if (!od)
            return USP_ENOMEM;
        usp__notify__object_deletion__init(od);
        od->obj_path = sdup(ar, ev->path);
        nt->notification_case = USP__NOTIFY__NOTIFICATION_OBJ_DELETION;
        nt->obj_deletion = od;
        return od->obj_path ? 0 : USP_ENOMEM;
    }
    case NT_OPER_COMPLETE: {
        Usp__Notify__OperationComplete *op = usp_arena_alloc(ar, sizeof *op);
        if (!op)
            return USP_ENOMEM;
        usp__notify__operation_complete__init(op);
        op->obj_path = sdup(ar, ev->path);
        op->command_name = sdup(ar, ev->name);
        op->command_key = sdup(ar, ev->command_key);
        if (!op->obj_path || !op->command_name || !op->command_key)
            return USP_ENOMEM;
        if (ev->err_code) {
            Usp__Notify__OperationComplete__CommandFailure *f = usp_arena_alloc(ar, sizeof *f);
            if (!f)
                return USP_ENOMEM;
            usp__notify__operation_complete__command_failure__init(f);
            f->err_code = ev->err_code;
            const char *msg = ev->err_msg ? ev->err_msg : usp_err_name(ev->err_code);
            f->err_msg = sdup(ar, msg);
            if (!f->err_msg)
                return USP_ENOMEM;
            op->operation_resp_case = USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP_CMD_FAILURE;
            op->cmd_failure = f;
        } else {
            Usp__Notify__OperationComplete__OutputArgs *o = usp_arena_alloc(ar, sizeof *o);
            if (!o)
                return USP_ENOMEM;
            usp__notify__operation_complete__output_args__init(o);
            o->output_args =
                (Usp__Notify__OperationComplete__OutputArgs__OutputArgsEntry **)kv_entries(
                    ar,
                    &usp__notify__operation_complete__output_args__output_args_entry__descriptor,
                    ev->kv, ev->nkv);
            if (!o->output_args && ev->nkv)
                return USP_ENOMEM;
            o->n_output_args = ev->nkv;
            op->operation_resp_case =
                USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP_REQ_OUTPUT_ARGS;
            op->req_output_args = o;
        }
        nt->notification_case = USP__NOTIFY__NOTIFICATION_OPER_COMPLETE;
        nt->oper_complete = op;
        return 0;
    }
    case NT_EVENT: {
        Usp__Notify__Event *e = usp_arena_alloc(ar, sizeof *e);
        if (!e)
            return USP_ENOMEM;
        usp__notify__event__init(e);
        e->obj_path = sdup(ar, ev->path);
        e->event_name = sdup(ar, ev->name);
        e->params = kv_entries(ar, &usp__notify__event__params_entry__descriptor, args, nargs);
        e->n_params = e->params ? nargs : 0;
        nt->notification_case = USP__NOTIFY__NOTIFICATION_EVENT;
        nt->event = e;
        return e->obj_path && e->event_name && (e->params || !nargs) ? 0 : USP_ENOMEM;
    }
    default:
        return USP_EINVAL;
    }
}

int notify__transmit(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                     Usp__Msg *msg, const char *to_eid, bool retry, uint32_t ctrl,
                     uint32_t expiration_s, int kind, struct usp_arena *ar)
{
    uint8_t *buf;
    size_t len;
    int rc = usp_msg_encode(ar, msg, &buf, &len);
    if (rc)
        return rc;
    struct notify_state *st = NULL;
    if (retry) {
        st = notify__state(n, a, na);
        if (!st)
            return USP_ENOMEM;
        st->busy++;
        rc = notify__pending_add(st, buf, len, msg->header->msg_id, to_eid, ctrl, expiration_s,
                                 kind);
        if (rc) {
            st->busy--;
            notify__state_release(st);
            return rc;
        }
    }
    struct usp_notify_out out = {
        .to_eid = to_eid,
        .msg_id = msg->header->msg_id,
        .msg = msg,
        .payload = buf,
        .len = len,
        .attempt = 0,
        .send_resp = retry,
    };
    n->stats.sent++;
    if (n->cfg.send(n->cfg.ctx, a, &out, ar) < 0)
        n->stats.send_failed++;
    if (st) {
        st->busy--;
        notify__state_release(st);
    }
    return 0;
}

/* --- Matching events against subscriptions ------------------------------- */

static int event_type(enum usp_dm_event_kind k)
{
    switch (k) {
    case USP_EV_VALUE_CHANGE:
        return NT_VALUE_CHANGE;
    case USP_EV_OBJ_CREATION:
        return NT_OBJ_CREATION;
    case USP_EV_OBJ_DELETION:
        return NT_OBJ_DELETION;
    case USP_EV_OPER_COMPLETE:
        return NT_OPER_COMPLETE;
    case USP_EV_EVENT:
        return NT_EVENT;
    default:
        return -1;
    }
}

/* Scratch for one event: too big for comfortable stacks in callbacks. */
struct proc {
    struct notify_epath e;
    char ebuf[1024];
    char refs[USP_DM_VALUE_MAX];
    char recip[512];
    char eid[USP_DM_VALUE_MAX];
    char id[128];
    char type[32];
    uint32_t rows[NOTIFY_MAX_SUBS];
};

static int collect_rows(void *ctx, uint32_t inst)
{
    struct inst_list *l = ctx;
    if (l->n < l->cap)
        l->v[l->n++] = inst;
    return 0;
}

size_t notify__sub_rows(const struct notify_schema *sc, const struct usp_dm_agent *a,
                        uint32_t *rows, size_t cap)
{
    struct inst_list l = {.v = rows, .cap = cap};
    struct usp_dm_inst la = {.obj = sc->sub->parent};
    usp_dm_instances(a, sc->sub, &la, collect_rows, &l);
    return l.n;
}

uint32_t notify__recipient(const struct notify_schema *sc, const struct usp_dm_agent *a,
                           const struct usp_dm_inst *row, char *buf, size_t len)
{
    struct usp_dm_inst c;
    const char *recip = notify__get(a, row, sc->s_recipient, buf, len);
    if (!recip[0] || !sc->ctrl || usp_dm_inst_parse(a->model, recip, &c) != 0 ||
        c.obj != sc->ctrl || c.n != 1)
        return 0;
    return c.inst[0];
}

/* One Notify for one subscription. */
static int notify_one(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                      const struct notify_schema *sc, enum notify_type type,
                      const struct usp_dm_event_info *ev, const struct usp_notify_boot *boot,
                      uint32_t ctrl, const char *eid, const char *sub_id, bool retry,
                      uint32_t expiration)
{
    struct usp_arena *ar = notify__arena_get(n);
    if (!ar)
        return USP_ENOMEM;
    int rc = USP_ENOMEM;
    char msg_id[32];
    notify__msg_id(n, msg_id, sizeof msg_id);
    Usp__Notify *nt;
    Usp__Msg *msg = new_notify(ar, msg_id, sub_id, retry, &nt);
    if (!msg)
        goto out;
    const struct usp_kv *args = ev->kv;
    uint32_t nargs = ev->nkv;
    struct usp_kv bkv[5];
    if (boot) {
        nargs = 0;
        bkv[nargs++] = (struct usp_kv){"CommandKey", boot->command_key ? boot->command_key : ""};
        bkv[nargs++] = (struct usp_kv){"Cause", boot->cause ? boot->cause : ""};
        if (sc->boot_has_reason)
            bkv[nargs++] = (struct usp_kv){"Reason", boot->reason ? boot->reason : ""};
        bkv[nargs++] =
            (struct usp_kv){"FirmwareUpdated", boot->firmware_updated ? "true" : "false"};
        if (sc->boot_has_map) {
            char *map = param_map(sc, a, ctrl, ar);
            if (!map)
                goto out;
            bkv[nargs++] = (struct usp_kv){"ParameterMap", map};
        }
        args = bkv;
    }
    rc = fill_body(ar, nt, type, ev, args, nargs);
    if (rc)
        goto out;
    rc = notify__transmit(n, a, na, msg, eid, retry, ctrl, expiration, PK_NOTIFY, ar);
out:
    notify__arena_put(n, ar);
    return rc;
}

int notify__process(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                    const struct usp_dm_event_info *ev, uint32_t only_ctrl,
                    const struct usp_notify_boot *boot)
{
    int type = event_type(ev->kind);
    const struct notify_schema *sc = notify__schema(n, a);
    if (!sc)
        return USP_ENOMEM;
    if (type < 0 || !sc->sub || !ev->path)
        return 0;
    struct usp_dm_inst la = {.obj = sc->sub->parent};
    if (usp_dm_count(a, sc->sub, &la) == 0)
        return 0; /* the common case: no subscription at all */
    struct proc *p = malloc(sizeof *p);
    if (!p)
        return USP_ENOMEM;
    int rc = 0;
    const char *name = (type == NT_OPER_COMPLETE || type == NT_EVENT) ? ev->name : NULL;
    if ((name == NULL && (type == NT_OPER_COMPLETE || type == NT_EVENT)) ||
        !notify__epath(&p->e, ev->path, name, p->ebuf, sizeof p->ebuf))
        goto out;
    size_t nrows = notify__sub_rows(sc, a, p->rows, NOTIFY_MAX_SUBS);
    for (size_t i = 0; i < nrows && rc != USP_ENOMEM; i++) {
        struct usp_dm_inst row;
        notify__row(sc->sub, p->rows[i], &row);
        if (sc->s_enable && !notify__get_bool(a, &row, sc->s_enable))
            continue;
        if (strcmp(notify__get(a, &row, sc->s_type, p->type, sizeof p->type), type_names[type]))
            continue;
        if (sc->s_trigger &&
            !strcmp(notify__get(a, &row, sc->s_trigger, p->type, sizeof p->type), "Config"))
            continue;
        notify__get(a, &row, sc->s_refs, p->refs, sizeof p->refs);
        if (!p->refs[0])
            continue;
        const struct notify_reflist *rl = notify__reflist(n, p->refs);
        if (!rl) {
            rc = USP_ENOMEM;
            break;
        }
        if (!notify__match(a, rl, (enum notify_type)type, &p->e))
            continue;
        uint32_t ctrl = notify__recipient(sc, a, &row, p->recip, sizeof p->recip);
        if (!ctrl || (only_ctrl && ctrl != only_ctrl))
            continue;
        struct usp_dm_inst crow;
        notify__row(sc->ctrl, ctrl, &crow);
        if (sc->c_enable && !notify__get_bool(a, &crow, sc->c_enable))
            continue;
        if (!notify__get(a, &crow, sc->c_eid, p->eid, sizeof p->eid)[0])
            continue;
        notify__get(a, &row, sc->s_id, p->id, sizeof p->id);
        bool retry = sc->s_retry && notify__get_bool(a, &row, sc->s_retry);
        uint64_t exp = retry ? notify__get_uint(a, &row, sc->s_expiration, 0) : 0;
        if (exp > UINT32_MAX)
            exp = UINT32_MAX;
        int r = notify_one(n, a, na, sc, (enum notify_type)type, ev, boot, ctrl, p->eid, p->id,
                           retry, (uint32_t)exp);
        if (r == USP_ENOMEM)
            rc = r;
    }
out:
    free(p);
    return rc;
}

/* --- Public entry points ------------------------------------------------- */

int usp_notifier_new(const struct usp_notify_cfg *cfg, struct usp_notifier **out)
{
    *out = NULL;
    if (!cfg || !cfg->tw || !cfg->send)
        return USP_EINVAL;
    struct usp_notifier *n = calloc(1, sizeof *n);
    if (!n)
        return USP_ENOMEM;
    n->cfg = *cfg;
    if (!n->cfg.poll_ms)
        n->cfg.poll_ms = USP_NOTIFY_POLL_MS_DEFAULT;
    if (!n->cfg.watch_max)
        n->cfg.watch_max = USP_NOTIFY_WATCH_MAX;
    if (!n->cfg.versions)
        n->cfg.versions = USP_VERSIONS_SUPPORTED;
    n->rng = cfg->seed ^ 0x6a09e667f3bcc909ull;
    n->nbuckets = 1024; /* for NOTIFY_CACHE_MAX entries: chains of ~4 */
    n->buckets = calloc(n->nbuckets, sizeof *n->buckets);
    n->arena = usp_arena_new(0);
    if (!n->buckets || !n->arena) {
        usp_notifier_free(n);
        return USP_ENOMEM;
    }
    *out = n;
    return 0;
}

void usp_notifier_free(struct usp_notifier *n)
{
    if (!n)
        return;
    notify__free_states(n);
    if (n->buckets)
        cache_flush(n);
    free(n->buckets);
    for (unsigned i = 0; i < n->nschemas; i++)
        free(n->schemas[i]);
    free(n->schemas);
    usp_arena_free(n->arena);
    free(n);
}

const struct usp_notify_stats *usp_notify_stats(const struct usp_notifier *n)
{
    return &n->stats;
}

/* Paths whose change alters what the agent's timers depend on. */
static bool affects_timers(const char *path)
{
    static const char *const pre[] = {"Device.LocalAgent.Subscription.",
                                      "Device.LocalAgent.Controller."};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
        if (!strncmp(path, pre[i], strlen(pre[i])))
            return true;
    return false;
}

void usp_notify_event(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                      const struct usp_dm_event_info *ev)
{
    if (!ev || !ev->path)
        return;
    if (ev->kind == USP_EV_ONBOARD_REQUEST) {
        struct usp_dm_inst c;
        const struct notify_schema *sc = notify__schema(n, a);
        if (sc && sc->ctrl && usp_dm_inst_parse(a->model, ev->path, &c) == 0 && c.obj == sc->ctrl &&
            c.n == 1)
            usp_notify_onboard(n, a, na, c.inst[0]);
        return;
    }
    if (ev->kind == USP_EV_REBOOT || ev->kind == USP_EV_FACTORY_RESET)
        return;
    struct notify_state *st = na->st;
    if (st) {
        st->busy++;
        if (ev->kind == USP_EV_VALUE_CHANGE && st->nwatch)
            notify__watch_seen(st, ev->path, ev->value ? ev->value : "");
    }
    notify__process(n, a, na, ev, 0, NULL);
    bool refresh =
        affects_timers(ev->path) ||
        (st && st->nwatch && (ev->kind == USP_EV_OBJ_CREATION || ev->kind == USP_EV_OBJ_DELETION));
    if (refresh && !(st && st->dead)) /* not for an agent cleaned up meanwhile */
        usp_notify_refresh(n, a, na);
    if (st) {
        st->busy--;
        notify__state_release(st);
    }
}

int usp_notify_boot(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                    const struct usp_notify_boot *b)
{
    static const struct usp_notify_boot none = {.cause = "LocalReboot"};
    struct usp_dm_event_info ev = {.kind = USP_EV_EVENT, .path = "Device.", .name = "Boot!"};
    int rc = notify__process(n, a, na, &ev, 0, b ? b : &none);
    int rc2 = usp_notify_refresh(n, a, na);
    return rc ? rc : rc2;
}

int usp_notify_onboard(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                       uint32_t controller)
{
    const struct notify_schema *sc = notify__schema(n, a);
    if (!sc)
        return USP_ENOMEM;
    if (!sc->ctrl || !sc->c_eid)
        return USP_ENOENT;
    struct usp_dm_inst crow;
    notify__row(sc->ctrl, controller, &crow);
    char eid[USP_DM_VALUE_MAX];
    if (!usp_dm_exists(a, &crow) || !notify__get(a, &crow, sc->c_eid, eid, sizeof eid)[0])
        return USP_ENOENT;
    if (na->st) /* a new request replaces one still waiting */
        notify__drop_onboard(na->st, controller);
    struct usp_arena *ar = notify__arena_get(n);
    if (!ar)
        return USP_ENOMEM;
    int rc = USP_ENOMEM;
    char msg_id[32], v[256];
    notify__msg_id(n, msg_id, sizeof msg_id);
    Usp__Notify *nt;
    Usp__Msg *msg = new_notify(ar, msg_id, "", true, &nt);
    Usp__Notify__OnBoardRequest *ob = usp_arena_alloc(ar, sizeof *ob);
    if (!msg || !ob)
        goto out;
    usp__notify__on_board_request__init(ob);
    struct usp_dm_inst di = {.obj = sc->devinfo};
    if (sc->devinfo) {
        ob->oui = sdup(ar, notify__get(a, &di, sc->d_oui, v, sizeof v));
        ob->product_class = sdup(ar, notify__get(a, &di, sc->d_class, v, sizeof v));
        ob->serial_number = sdup(ar, notify__get(a, &di, sc->d_serial, v, sizeof v));
    }
    ob->agent_supported_protocol_versions = sdup(ar, n->cfg.versions);
    if (!ob->oui || !ob->product_class || !ob->serial_number ||
        !ob->agent_supported_protocol_versions)
        goto out;
    nt->notification_case = USP__NOTIFY__NOTIFICATION_ON_BOARD_REQ;
    nt->on_board_req = ob;
    n->stats.onboard++;
    rc = notify__transmit(n, a, na, msg, eid, true, controller, 0, PK_ONBOARD, ar);
out:
    notify__arena_put(n, ar);
    return rc;
}
