/* Path resolution against one agent's instantiated data model: names,
 * instance numbers, '*', search expressions, unique-key addresses and
 * reference following (TR-369 "Path Names", "Searching", "Reference
 * Following"), plus the instantiated-path helpers built on the same walk.
 *
 * Decisions where the specification leaves room:
 * - The schema part of a path is checked before any data is read, so an
 *   unknown name is 7026 even under a wildcard over an empty table, and a
 *   search value that cannot be compared with its parameter's type (an
 *   operator other than == and != on a string, boolean or list, "~=" aside,
 *   or a literal that is not of the type) is 7008 whatever the rows hold.
 *   Past a reference ('+') the schema depends on the referenced row, so the
 *   rest is checked when it is reached.
 * - A search expression addresses (rather than searches) when all its
 *   comparisons are "==" on parameters of the row itself and they cover all
 *   parameters of one of the table's unique keys; one that matches nothing
 *   is then 7016, like a missing instance number or a reference to nothing.
 *   Below a wildcard or a search, nothing matching is never an error: that
 *   branch simply yields nothing (R-GET.1a, R-MSG.4a).
 * - "Param+" on a value holding several references is 7016 (it names no
 *   single object: "#n+" and "#*+" are for lists); in a search expression
 *   "#*+" is true when any referenced row satisfies the comparison.
 * - Booleans compare as true/1 and false/0; numbers by their base type;
 *   dateTime as instants (a zone offset is honoured, none means UTC), and the
 *   unknown time 0001-01-01T00:00:00Z only with == and !=; "~=" splits the
 *   value on commas and compares each item by the list's item type.
 * - A path may follow at most 32 references in all (its own and its search
 *   expressions'): more is 7005, so that reference cycles cannot make a
 *   walk recurse without bound.
 * - Matches come in path order: instance numbers increasing, list items in
 *   their order; the same object reached twice through references is
 *   reported twice. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dm_store_int.h"
#include "usp/errors.h"

/* --- Instantiated paths -------------------------------------------------- */

int usp_dm_inst_path(const struct usp_dm_inst *o, char *buf, size_t len)
{
    if (!o || !o->obj || !buf || !len)
        return USP_EINVAL;
    const char *s = o->obj->path;
    size_t at = 0;
    unsigned l = 0;
    buf[0] = '\0';
    while (*s) {
        if (!strncmp(s, "{i}.", 4)) {
            if (l == o->n) {
                if (s[4]) /* only the table's own "{i}." may be left out */
                    return USP_EINVAL;
                break;
            }
            char num[12];
            int n = snprintf(num, sizeof num, "%u.", o->inst[l++]);
            if (at + (size_t)n >= len)
                return USP_ERANGE;
            memcpy(buf + at, num, (size_t)n + 1);
            at += (size_t)n;
            s += 4;
            continue;
        }
        if (at + 1 >= len) {
            buf[at] = '\0';
            return USP_ERANGE;
        }
        buf[at++] = *s++;
        buf[at] = '\0';
    }
    return l == o->n ? 0 : USP_EINVAL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int dm__parse_ref(const struct usp_dm_model *m, const char *s, size_t len, struct usp_dm_inst *o,
                  const struct usp_dm_param **param)
{
    memset(o, 0, sizeof *o);
    if (param)
        *param = NULL;
    if (!len)
        return USP_EINVAL;
    const struct usp_dm_object *cur = usp_dm_schema_root(m->schema);
    bool pending = false; /* a table whose instance number must come next */
    size_t i = 0;
    bool first = true;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '.')
            j++;
        size_t n = j - i;
        const char *seg = s + i;
        bool last = j >= len || j + 1 == len;
        if (!n)
            return USP_EINVAL;
        if (first) {
            if (!cur || strlen(cur->name) != n || memcmp(seg, cur->name, n))
                return USP_ENOENT;
            first = false;
        } else if (is_digit(seg[0])) {
            if (!pending || seg[0] == '0' || n > 10)
                return pending ? USP_EINVAL : USP_ENOENT;
            uint64_t v = 0;
            for (size_t k = 0; k < n; k++) {
                if (!is_digit(seg[k]))
                    return USP_EINVAL;
                v = v * 10 + (uint64_t)(seg[k] - '0');
            }
            if (v > UINT32_MAX || o->n >= USP_DM_MAX_LEVELS)
                return USP_EINVAL;
            o->inst[o->n++] = (uint32_t)v;
            pending = false;
        } else {
            if (pending)
                return USP_ENOENT;
            const struct usp_dm_object *ch = usp_dm_object_child(cur, seg, n);
            if (!ch) {
                const struct usp_dm_param *p =
                    param && j >= len ? usp_dm_object_param(cur, seg, n) : NULL;
                if (!p)
                    return USP_ENOENT;
                *param = p;
                break;
            }
            cur = ch;
            pending = (ch->flags & USP_DM_OBJ_MULTI) != 0;
        }
        if (last)
            break;
        i = j + 1;
    }
    if (first || !dm__owns(m, cur))
        return USP_ENOENT;
    o->obj = cur;
    return 0;
}

int usp_dm_inst_parse(const struct usp_dm_model *m, const char *path, struct usp_dm_inst *out)
{
    if (!path)
        return USP_EINVAL;
    return dm__parse_ref(m, path, strlen(path), out, NULL);
}

/* --- Unique keys --------------------------------------------------------- */

int usp_dm_unique_keys(const struct usp_dm_agent *a, const struct usp_dm_inst *row, usp_dm_kv_cb cb,
                       void *ctx)
{
    const struct usp_dm_object *o = row->obj;
    if (!o->nkeys)
        return 0;
    char *buf = malloc(USP_DM_VALUE_MAX);
    if (!buf)
        return USP_ENOMEM;
    int rc = 0;
    for (uint32_t k = 0; k < o->nkeys && !rc; k++) {
        for (uint32_t i = 0; i < o->keys[k].nparams && !rc; i++) {
            uint32_t pi = o->keys[k].params[i];
            bool seen = false;
            for (uint32_t k2 = 0; k2 <= k && !seen; k2++)
                for (uint32_t i2 = 0; i2 < (k2 == k ? i : o->keys[k2].nparams); i2++)
                    if (o->keys[k2].params[i2] == pi) {
                        seen = true;
                        break;
                    }
            if (seen)
                continue;
            rc = usp_dm_get(a, row, &o->params[pi], buf, USP_DM_VALUE_MAX);
            if (rc == USP_ERANGE)
                rc = 0;
            if (!rc)
                rc = cb(ctx, o->params[pi].name, buf);
        }
    }
    free(buf);
    return rc;
}

/* --- Typed comparison ---------------------------------------------------- */

static bool parse_i64(const char *s, int64_t *v)
{
    if (!*s || (!is_digit(*s) && *s != '-' && *s != '+'))
        return false;
    errno = 0;
    char *e;
    long long x = strtoll(s, &e, 10);
    if (errno || *e || e == s)
        return false;
    *v = x;
    return true;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    if (!*s || (!is_digit(*s) && *s != '+'))
        return false;
    errno = 0;
    char *e;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno || *e || e == s)
        return false;
    *v = x;
    return true;
}

static bool parse_dec(const char *s, double *v)
{
    for (const char *p = s; *p; p++)
        if (!is_digit(*p) && !strchr("+-.eE", *p))
            return false;
    if (!*s)
        return false;
    char *e;
    *v = strtod(s, &e);
    return !*e;
}

static bool parse_bool(const char *s, bool *v)
{
    if (!strcmp(s, "true") || !strcmp(s, "1"))
        *v = true;
    else if (!strcmp(s, "false") || !strcmp(s, "0"))
        *v = false;
    else
        return false;
    return true;
}

static int64_t days_from_civil(int64_t y, unsigned mo, unsigned d)
{
    y -= mo <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, int n, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        *v = *v * 10 + (unsigned)(s[i] - '0');
    }
    return true;
}

/* An instant in microseconds since the epoch; *unknown for year 0001. */
static bool parse_time(const char *s, int64_t *us, bool *unknown)
{
    unsigned y, mo, d, h, mi, se;
    if (strlen(s) < 19 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || se > 60)
        return false;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int n = 0;
        p++;
        if (!is_digit(*p))
            return false;
        for (; is_digit(*p); p++, n++)
            if (n < 6)
                frac = frac * 10 + (*p - '0');
        for (; n < 6; n++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        unsigned oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om))
            return false;
        off = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p)
        return false;
    *unknown = y == 1;
    int64_t sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    *us = sec * 1000000 + frac;
    return true;
}

static bool ordering(enum usp_path_op op)
{
    return op == USP_PATH_OP_LT || op == USP_PATH_OP_GT || op == USP_PATH_OP_LE ||
           op == USP_PATH_OP_GE;
}

/* Whether `c` can be evaluated on parameter `p`: 0 or 7008 with `msg`. */
static int cmp_check(const struct usp_dm_param *p, const struct usp_path_cmp *c, char *msg,
                     size_t msglen)
{
    const struct usp_dm_type *t = p->type;
    const char *v = c->value;
    const char *op = usp_path_op_str(c->op);
    if (c->op == USP_PATH_OP_CONTAINS) {
        if (!t->item) {
            snprintf(msg, msglen, "~= needs a list parameter; %s is not a list", p->name);
            return USP_ERR_INVALID_PATH_SYNTAX;
        }
        t = t->item;
    } else if (t->item) {
        if (ordering(c->op)) {
            snprintf(msg, msglen, "%s is a list: only ==, != and ~= apply", p->name);
            return USP_ERR_INVALID_PATH_SYNTAX;
        }
        return 0;
    }
    union {
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    } x;
    bool unknown = false;
    int64_t us;
    switch (t->base) {
    case USP_DM_BOOLEAN:
        if (ordering(c->op)) {
            snprintf(msg, msglen, "%s is a boolean: only == and != apply, not %s", p->name, op);
            return USP_ERR_INVALID_PATH_SYNTAX;
        }
        if (!parse_bool(v, &x.b))
            goto bad;
        return 0;
    case USP_DM_INT:
    case USP_DM_LONG:
        if (!parse_i64(v, &x.i))
            goto bad;
        return 0;
    case USP_DM_UNSIGNED_INT:
    case USP_DM_UNSIGNED_LONG:
        if (!parse_u64(v, &x.u))
            goto bad;
        return 0;
    case USP_DM_DECIMAL:
        if (!parse_dec(v, &x.d))
            goto bad;
        return 0;
    case USP_DM_DATETIME:
        if (!parse_time(v, &us, &unknown))
            goto bad;
        if (unknown && ordering(c->op)) {
            snprintf(msg, msglen, "the unknown time compares only with == and !=");
            return USP_ERR_INVALID_PATH_SYNTAX;
        }
        return 0;
    default:
        if (ordering(c->op)) {
            snprintf(msg, msglen, "%s is a %s: only == and != apply, not %s", p->name,
                     usp_dm_base_name(t->base), op);
            return USP_ERR_INVALID_PATH_SYNTAX;
        }
        return 0;
    }
bad:
    snprintf(msg, msglen, "\"%.60s\" cannot be compared with %s (%s)", v, p->name,
             usp_dm_base_name(t->base));
    return USP_ERR_INVALID_PATH_SYNTAX;
}

static bool order_ok(enum usp_path_op op, int c)
{
    switch (op) {
    case USP_PATH_OP_EQ:
    case USP_PATH_OP_CONTAINS:
        return c == 0;
    case USP_PATH_OP_NE:
        return c != 0;
    case USP_PATH_OP_LT:
        return c < 0;
    case USP_PATH_OP_GT:
        return c > 0;
    case USP_PATH_OP_LE:
        return c <= 0;
    case USP_PATH_OP_GE:
        return c >= 0;
    }
    return false;
}

#define CMP3(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

/* One value (or list item) of base type `base` against the literal; false
 * when the value cannot be compared (it is not of the type). */
static bool cmp_one(unsigned base, const char *val, const struct usp_path_cmp *c,
                    enum usp_path_op op)
{
    const char *lit = c->value;
    switch (base) {
    case USP_DM_BOOLEAN: {
        bool a, b;
        return parse_bool(val, &a) && parse_bool(lit, &b) && order_ok(op, a != b);
    }
    case USP_DM_INT:
    case USP_DM_LONG: {
        int64_t a, b;
        return parse_i64(val, &a) && parse_i64(lit, &b) && order_ok(op, CMP3(a, b));
    }
    case USP_DM_UNSIGNED_INT:
    case USP_DM_UNSIGNED_LONG: {
        uint64_t a, b;
        return parse_u64(val, &a) && parse_u64(lit, &b) && order_ok(op, CMP3(a, b));
    }
    case USP_DM_DECIMAL: {
        double a, b;
        return parse_dec(val, &a) && parse_dec(lit, &b) && order_ok(op, CMP3(a, b));
    }
    case USP_DM_DATETIME: {
        int64_t a, b;
        bool ua, ub;
        if (!parse_time(val, &a, &ua) || !parse_time(lit, &b, &ub))
            return op == USP_PATH_OP_NE && strcmp(val, lit) != 0;
        if ((ua || ub) && ordering(op))
            return false;
        return order_ok(op, CMP3(a, b));
    }
    case USP_DM_HEXBINARY:
        return order_ok(op, strcasecmp(val, lit) != 0);
    default:
        return order_ok(op, strcmp(val, lit) != 0);
    }
}

static bool cmp_eval(const struct usp_dm_param *p, char *val, const struct usp_path_cmp *c)
{
    const struct usp_dm_type *t = p->type;
    if (c->op != USP_PATH_OP_CONTAINS) {
        if (t->item) /* whole lists compare as strings */
            return order_ok(c->op, strcmp(val, c->value) != 0);
        return cmp_one(t->base, val, c, c->op);
    }
    unsigned base = t->item->base;
    char *s = val;
    for (;;) {
        char *e = strchr(s, ',');
        if (e)
            *e = '\0';
        while (*s == ' ')
            s++;
        size_t n = strlen(s);
        while (n && s[n - 1] == ' ')
            s[--n] = '\0';
        if (t->item->item ? !strcmp(s, c->value) : cmp_one(base, s, c, USP_PATH_OP_EQ))
            return true;
        if (!e)
            return false;
        s = e + 1;
    }
}

/* --- The walk ------------------------------------------------------------ */

struct rs {
    const struct usp_dm_agent *a;
    const struct usp_path *p;
    usp_dm_match_cb cb;
    void *ctx;
    struct usp_dm_path_err *err;
};

static int fail(struct rs *r, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct rs *r, uint32_t code, const char *fmt, ...)
{
    if (r->err) {
        r->err->usp_code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err->msg, sizeof r->err->msg, fmt, ap);
        va_end(ap);
    }
    return (int)code;
}

static bool pending(const struct usp_dm_model *m, const struct usp_dm_inst *cur)
{
    return (cur->obj->flags & USP_DM_OBJ_MULTI) && cur->n + 1 == dm__mobj(m, cur->obj)->levels;
}

static const char *seg_name(const struct usp_path_seg *s)
{
    return s->kind == USP_PATH_SEG_NAME || s->kind == USP_PATH_SEG_COMMAND ||
                   s->kind == USP_PATH_SEG_EVENT
               ? s->name
               : "?";
}

/* Reference following steps a path may take (each one reads a value and
 * may fan out): a cycle of references must not recurse without bound. */
#define MAX_REFS 32

/* Checks the schema part of the path (up to the first reference). */
static int check_static(struct rs *r)
{
    const struct usp_path *p = r->p;
    uint32_t refs = 0;
    for (uint32_t i = 0; i < p->nseg; i++) {
        const struct usp_path_seg *s = &p->seg[i];
        refs += s->kind == USP_PATH_SEG_REF;
        if (s->kind == USP_PATH_SEG_SEARCH)
            for (uint32_t k = 0; k < s->search.ncmp; k++)
                for (uint32_t j = 0; j < s->search.cmp[k].nrel; j++)
                    refs += s->search.cmp[k].rel[j].kind == USP_PATH_SEG_REF;
    }
    if (refs > MAX_REFS)
        return fail(r, USP_ERR_RESOURCES_EXCEEDED, "the path follows %u references (at most %d)",
                    refs, MAX_REFS);
    const struct usp_dm_object *o = usp_dm_schema_root(r->a->model->schema);
    if (!o || p->seg[0].kind != USP_PATH_SEG_NAME || strcmp(p->seg[0].name, o->name))
        return fail(r, USP_ERR_INVALID_PATH, "%s is not a root object of the data model",
                    seg_name(&p->seg[0]));
    bool pend = false;
    for (uint32_t i = 1; i < p->nseg; i++) {
        const struct usp_path_seg *s = &p->seg[i];
        bool last = i + 1 == p->nseg;
        switch (s->kind) {
        case USP_PATH_SEG_NAME: {
            if (pend)
                return fail(r, USP_ERR_INVALID_PATH,
                            "%s is a table: an instance number, '*' or a search expression "
                            "must come before %s",
                            o->path, s->name);
            const struct usp_dm_object *ch = usp_dm_object_child(o, s->name, s->len);
            if (ch) {
                o = ch;
                pend = (ch->flags & USP_DM_OBJ_MULTI) != 0;
                break;
            }
            const struct usp_dm_param *pa = usp_dm_object_param(o, s->name, s->len);
            if (!pa)
                return fail(r, USP_ERR_INVALID_PATH, "%s has no object or parameter %s", o->path,
                            s->name);
            if (!last && p->seg[i + 1].kind == USP_PATH_SEG_REF)
                return 0; /* the rest depends on the referenced rows */
            if (!last)
                return fail(r, USP_ERR_INVALID_PATH, "%s%s is a parameter, not an object", o->path,
                            s->name);
            break;
        }
        case USP_PATH_SEG_INSTANCE:
        case USP_PATH_SEG_WILDCARD:
        case USP_PATH_SEG_SEARCH:
            if (!pend)
                return fail(r, USP_ERR_INVALID_PATH,
                            "%s is not a table: no instance selector "
                            "may follow it",
                            o->path);
            pend = false;
            if (s->kind == USP_PATH_SEG_SEARCH) {
                for (uint32_t k = 0; k < s->search.ncmp; k++) {
                    const struct usp_path_cmp *c = &s->search.cmp[k];
                    const struct usp_dm_object *eo = o;
                    for (uint32_t j = 0; j < c->nrel; j++) {
                        const struct usp_path_seg *rs = &c->rel[j];
                        if (rs->kind != USP_PATH_SEG_NAME)
                            break;
                        bool rl = j + 1 == c->nrel;
                        const struct usp_dm_param *pa = NULL;
                        if (rl || c->rel[j + 1].kind == USP_PATH_SEG_REF)
                            pa = usp_dm_object_param(eo, rs->name, rs->len);
                        if (pa && !rl)
                            break; /* reference: checked on the rows */
                        if (pa) {
                            char msg[200];
                            uint32_t code = (uint32_t)cmp_check(pa, c, msg, sizeof msg);
                            if (code)
                                return fail(r, code, "%s", msg);
                            break;
                        }
                        const struct usp_dm_object *ch =
                            rl ? NULL : usp_dm_object_child(eo, rs->name, rs->len);
                        if (!ch)
                            return fail(r, USP_ERR_INVALID_PATH,
                                        "search expression: %s has no %s %s", eo->path,
                                        rl ? "parameter" : "object", rs->name);
                        if (ch->flags & USP_DM_OBJ_MULTI)
                            return fail(r, USP_ERR_INVALID_PATH,
                                        "search expression: %s is a table; an expression may "
                                        "not descend into a table",
                                        ch->path);
                        eo = ch;
                    }
                }
            }
            break;
        case USP_PATH_SEG_SUPPORTED:
            return fail(r, USP_ERR_INVALID_PATH,
                        "{i} belongs to supported-data-model paths, not instantiated ones");
        case USP_PATH_SEG_COMMAND:
        case USP_PATH_SEG_EVENT:
            if (pend || !last)
                return fail(r, USP_ERR_INVALID_PATH, "%s%s: %s", o->path, s->name,
                            pend ? "a table row must be selected first"
                                 : "a command or event ends the path");
            if (s->kind == USP_PATH_SEG_COMMAND ? !usp_dm_object_command(o, s->name, s->len)
                                                : !usp_dm_object_event(o, s->name, s->len))
                return fail(r, USP_ERR_INVALID_PATH, "%s has no %s %s", o->path,
                            s->kind == USP_PATH_SEG_COMMAND ? "command" : "event", s->name);
            break;
        case USP_PATH_SEG_REF:
            return fail(r, USP_ERR_INVALID_PATH, "reference following needs a parameter");
        }
    }
    return 0;
}

/* Instance numbers collected before the walk goes on (callbacks may change
 * the agent). */
struct nums {
    uint32_t *v;
    size_t n, cap;
    uint32_t small[32];
};

static int nums_cb(void *ctx, uint32_t inst)
{
    struct nums *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap * 2;
        uint32_t *v = malloc(cap * sizeof *v);
        if (!v)
            return USP_ENOMEM;
        memcpy(v, s->v, s->n * sizeof *v);
        if (s->v != s->small)
            free(s->v);
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = inst;
    return 0;
}

static int nums_load(const struct usp_dm_agent *a, const struct usp_dm_inst *table, struct nums *s)
{
    s->v = s->small;
    s->n = 0;
    s->cap = sizeof s->small / sizeof s->small[0];
    return usp_dm_instances(a, table->obj, table, nums_cb, s);
}

static void nums_done(struct nums *s)
{
    if (s->v != s->small)
        free(s->v);
}

static int walk(struct rs *r, uint32_t i, struct usp_dm_inst cur, bool search);

/* Items of a reference value: item `index` (1-based) or all (0). Calls
 * fn(r, target, arg) for each existing target. A reference to nothing is
 * 7016 unless `search`. */
typedef int (*ref_fn)(struct rs *r, const struct usp_dm_inst *target, void *arg);

static int follow(struct rs *r, const struct usp_dm_inst *cur, const struct usp_dm_param *pa,
                  const struct usp_path_seg *ref, bool search, ref_fn fn, void *arg)
{
    const struct usp_dm_agent *a = r->a;
    char *val = malloc(USP_DM_VALUE_MAX);
    if (!val)
        return fail(r, USP_ERR_INTERNAL_ERROR, "out of memory");
    int rc = usp_dm_get(a, cur, pa, val, USP_DM_VALUE_MAX);
    if (rc) {
        free(val);
        return search ? 0 : fail(r, USP_ERR_OBJECT_DOES_NOT_EXIST, "%s: no value", pa->name);
    }
    uint32_t want = ref->ref.mode == USP_PATH_REF_INDEX ? ref->ref.index : 0;
    bool all = ref->ref.mode == USP_PATH_REF_ALL;
    uint32_t item = 0, found = 0;
    char *s = val;
    rc = 0;
    for (;;) {
        char *e = all || want ? strchr(s, ',') : NULL;
        if (e)
            *e = '\0';
        while (*s == ' ')
            s++;
        size_t n = strlen(s);
        while (n && s[n - 1] == ' ')
            s[--n] = '\0';
        item++;
        if (n && (!want || item == want)) {
            struct usp_dm_inst t;
            if (!dm__parse_ref(a->model, s, n, &t, NULL) &&
                t.n == dm__mobj(a->model, t.obj)->levels && usp_dm_exists(a, &t)) {
                found++;
                if ((rc = fn(r, &t, arg)) != 0)
                    break;
            } else if (!search && !all) {
                rc = fail(r, USP_ERR_OBJECT_DOES_NOT_EXIST,
                          "%s+ refers to \"%.100s\", which does not exist", pa->name, s);
                break;
            }
        }
        if (!e || (want && item >= want))
            break;
        s = e + 1;
    }
    if (!rc && !found && !search)
        rc = fail(r, USP_ERR_OBJECT_DOES_NOT_EXIST, "%s%s references no existing object", pa->name,
                  want  ? "#n+"
                  : all ? "#*+"
                        : "+");
    free(val);
    return rc;
}

/* Evaluates comparison `c` from rel segment j on object `cur`: *res. */
struct eval_arg {
    const struct usp_path_cmp *c;
    uint32_t j;
    bool *res;
};

static int eval_rel(struct rs *r, const struct usp_path_cmp *c, uint32_t j, struct usp_dm_inst cur,
                    bool *res);

static int eval_ref_fn(struct rs *r, const struct usp_dm_inst *t, void *arg)
{
    struct eval_arg *ea = arg;
    bool res = false;
    int rc = eval_rel(r, ea->c, ea->j, *t, &res);
    if (rc)
        return rc;
    if (res) {
        *ea->res = true;
        return -1; /* stop: one referenced row satisfies it */
    }
    return 0;
}

static int eval_rel(struct rs *r, const struct usp_path_cmp *c, uint32_t j, struct usp_dm_inst cur,
                    bool *res)
{
    const struct usp_dm_agent *a = r->a;
    *res = false;
    for (; j < c->nrel; j++) {
        const struct usp_path_seg *s = &c->rel[j];
        if (s->kind != USP_PATH_SEG_NAME)
            return fail(r, USP_ERR_INVALID_PATH, "search expression: a name was expected");
        bool last = j + 1 == c->nrel;
        const struct usp_dm_param *pa = last || c->rel[j + 1].kind == USP_PATH_SEG_REF
                                            ? usp_dm_object_param(cur.obj, s->name, s->len)
                                            : NULL;
        if (pa && last) {
            char msg[200];
            uint32_t code = (uint32_t)cmp_check(pa, c, msg, sizeof msg);
            if (code)
                return fail(r, code, "%s", msg);
            char *val = malloc(USP_DM_VALUE_MAX);
            if (!val)
                return fail(r, USP_ERR_INTERNAL_ERROR, "out of memory");
            if (usp_dm_get(a, &cur, pa, val, USP_DM_VALUE_MAX) == 0)
                *res = cmp_eval(pa, val, c);
            free(val);
            return 0;
        }
        if (pa) {
            struct eval_arg ea = {c, j + 2, res};
            int rc = follow(r, &cur, pa, &c->rel[j + 1], true, eval_ref_fn, &ea);
            return rc == -1 ? 0 : rc;
        }
        const struct usp_dm_object *ch =
            last ? NULL : usp_dm_object_child(cur.obj, s->name, s->len);
        if (!ch)
            return fail(r, USP_ERR_INVALID_PATH, "search expression: %s has no %s %s",
                        cur.obj->path, last ? "parameter" : "object", s->name);
        if (ch->flags & USP_DM_OBJ_MULTI)
            return fail(r, USP_ERR_INVALID_PATH,
                        "search expression: %s is a table; an expression may not descend "
                        "into a table",
                        ch->path);
        cur.obj = ch;
    }
    return 0;
}

/* A unique-key address: all "==" on the row's own parameters, covering one
 * of the table's unique keys. */
static bool is_address(const struct usp_dm_object *t, const struct usp_path_seg *s)
{
    for (uint32_t k = 0; k < s->search.ncmp; k++)
        if (s->search.cmp[k].op != USP_PATH_OP_EQ || s->search.cmp[k].nrel != 1)
            return false;
    for (uint32_t k = 0; k < t->nkeys; k++) {
        bool all = true;
        for (uint32_t i = 0; i < t->keys[k].nparams && all; i++) {
            const char *name = t->params[t->keys[k].params[i]].name;
            bool has = false;
            for (uint32_t c = 0; c < s->search.ncmp && !has; c++)
                has = !strcmp(s->search.cmp[c].rel[0].name, name);
            all = has;
        }
        if (all)
            return true;
    }
    return false;
}

static int emit(struct rs *r, const struct usp_dm_inst *cur, const struct usp_dm_param *pa,
                const struct usp_dm_command *cmd, const struct usp_dm_event *ev)
{
    struct usp_dm_match m = {*cur, pa, cmd, ev};
    return r->cb(r->ctx, &m);
}

struct walk_arg {
    uint32_t i;
    bool search;
};

static int walk_ref_fn(struct rs *r, const struct usp_dm_inst *t, void *arg)
{
    const struct walk_arg *wa = arg;
    return walk(r, wa->i, *t, wa->search);
}

static int walk_rows(struct rs *r, uint32_t i, struct usp_dm_inst cur, bool search)
{
    const struct usp_path_seg *s = &r->p->seg[i];
    struct nums rows;
    int rc = nums_load(r->a, &cur, &rows);
    if (rc) {
        nums_done(&rows);
        return rc < 0 ? fail(r, USP_ERR_INTERNAL_ERROR, "out of memory") : rc;
    }
    bool addr = s->kind == USP_PATH_SEG_SEARCH && is_address(cur.obj, s);
    uint32_t matched = 0;
    struct usp_dm_inst row = cur;
    row.n++;
    for (size_t k = 0; k < rows.n && !rc; k++) {
        row.inst[row.n - 1] = rows.v[k];
        bool ok = true;
        if (s->kind == USP_PATH_SEG_SEARCH) {
            if (!usp_dm_exists(r->a, &row))
                continue; /* deleted by a callback meanwhile */
            for (uint32_t c = 0; c < s->search.ncmp && ok && !rc; c++)
                rc = eval_rel(r, &s->search.cmp[c], 0, row, &ok);
            if (rc || !ok)
                continue;
        }
        matched++;
        rc = walk(r, i + 1, row, search || !addr);
    }
    nums_done(&rows);
    if (!rc && addr && !matched && !search) {
        char path[256];
        if (usp_dm_inst_path(&cur, path, sizeof path))
            snprintf(path, sizeof path, "%s", cur.obj->path);
        rc = fail(r, USP_ERR_OBJECT_DOES_NOT_EXIST, "no instance of %s has the unique key given",
                  path);
    }
    return rc;
}

static int walk(struct rs *r, uint32_t i, struct usp_dm_inst cur, bool search)
{
    const struct usp_dm_model *m = r->a->model;
    const struct usp_path *p = r->p;
    for (; i < p->nseg; i++) {
        const struct usp_path_seg *s = &p->seg[i];
        bool last = i + 1 == p->nseg;
        bool pend = pending(m, &cur);
        switch (s->kind) {
        case USP_PATH_SEG_NAME: {
            if (pend)
                return search ? 0
                              : fail(r, USP_ERR_INVALID_PATH,
                                     "%s is a table: select a row "
                                     "before %s",
                                     cur.obj->path, s->name);
            const struct usp_dm_object *ch = usp_dm_object_child(cur.obj, s->name, s->len);
            if (ch) {
                cur.obj = ch;
                break;
            }
            const struct usp_dm_param *pa = usp_dm_object_param(cur.obj, s->name, s->len);
            if (pa && last)
                return emit(r, &cur, pa, NULL, NULL);
            if (pa && p->seg[i + 1].kind == USP_PATH_SEG_REF && i + 2 < p->nseg) {
                const struct usp_path_seg *ref = &p->seg[i + 1];
                struct walk_arg wa = {i + 2, search || ref->ref.mode == USP_PATH_REF_ALL};
                return follow(r, &cur, pa, ref, search, walk_ref_fn, &wa);
            }
            if (search)
                return 0; /* a referenced row of another kind */
            return fail(r, USP_ERR_INVALID_PATH, "%s has no %s %s", cur.obj->path,
                        pa ? "object" : "object or parameter", s->name);
        }
        case USP_PATH_SEG_INSTANCE:
            if (!pend)
                return search ? 0
                              : fail(r, USP_ERR_INVALID_PATH, "%s is not a table", cur.obj->path);
            cur.inst[cur.n++] = s->inst;
            if (!usp_dm_exists(r->a, &cur)) {
                if (search)
                    return 0;
                char path[256];
                if (usp_dm_inst_path(&cur, path, sizeof path))
                    snprintf(path, sizeof path, "%s", cur.obj->path);
                return fail(r, USP_ERR_OBJECT_DOES_NOT_EXIST, "%s does not exist", path);
            }
            break;
        case USP_PATH_SEG_WILDCARD:
        case USP_PATH_SEG_SEARCH:
            if (!pend)
                return search ? 0
                              : fail(r, USP_ERR_INVALID_PATH, "%s is not a table", cur.obj->path);
            return walk_rows(r, i, cur, search);
        case USP_PATH_SEG_COMMAND:
        case USP_PATH_SEG_EVENT: {
            const struct usp_dm_command *cmd = s->kind == USP_PATH_SEG_COMMAND
                                                   ? usp_dm_object_command(cur.obj, s->name, s->len)
                                                   : NULL;
            const struct usp_dm_event *ev = s->kind == USP_PATH_SEG_EVENT
                                                ? usp_dm_object_event(cur.obj, s->name, s->len)
                                                : NULL;
            if (pend || (!cmd && !ev))
                return search
                           ? 0
                           : fail(r, USP_ERR_INVALID_PATH, "%s has no %s %s", cur.obj->path,
                                  s->kind == USP_PATH_SEG_COMMAND ? "command" : "event", s->name);
            return emit(r, &cur, NULL, cmd, ev);
        }
        case USP_PATH_SEG_SUPPORTED:
        case USP_PATH_SEG_REF:
            return fail(r, USP_ERR_INVALID_PATH, "unexpected path element");
        }
    }
    /* An object path: a row, a single object, or a table (no selector). */
    if (!dm__owns(m, cur.obj))
        return search ? 0 : fail(r, USP_ERR_INVALID_PATH, "not an object of the data model");
    return emit(r, &cur, NULL, NULL, NULL);
}

int usp_dm_resolve(const struct usp_dm_agent *a, const struct usp_path *p, usp_dm_match_cb cb,
                   void *ctx, struct usp_dm_path_err *err)
{
    struct rs r = {a, p, cb, ctx, err};
    if (err) {
        err->usp_code = 0;
        err->msg[0] = '\0';
    }
    if (!p || !p->nseg)
        return fail(&r, USP_ERR_INVALID_PATH, "empty path");
    int rc = check_static(&r);
    if (rc)
        return rc;
    struct usp_dm_inst root = {.obj = usp_dm_schema_root(a->model->schema)};
    if (p->flags & USP_PATH_HAS_SUPPORTED)
        return fail(&r, USP_ERR_INVALID_PATH, "{i} is not allowed here");
    return walk(&r, 1, root, false);
}
