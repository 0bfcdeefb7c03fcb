/* Data-model value types: shared (interned) type records, the XML Schema
 * regular expressions of <pattern> translated to POSIX, and the checks of a
 * value against a type (usp_dm_type_check). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dm_int.h"
#include "usp/errors.h"

/* ---- type records ---- */

struct dm_pat_slot {
    const char *value; /* interned */
    regex_t *re;
};

struct dm_pattab {
    struct dm_pat_slot *slots;
    size_t cap, n;
};

void dm_types__init(struct dm_types *t, struct dm_pool *pool, struct dm_strtab *strs)
{
    memset(t, 0, sizeof *t);
    t->pool = pool;
    t->strs = strs;
}

void dm_types__cleanup(struct dm_types *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->n = 0;
    if (t->pats)
        free(t->pats->slots);
    free(t->pats);
    t->pats = NULL;
}

void dm_types__regexes_free(struct dm_vec *regexes)
{
    for (uint32_t i = 0; i < regexes->n; i++) {
        regex_t *re = DM_VEC_AT(*regexes, regex_t *, i);
        regfree(re);
        free(re);
    }
    dm_schema__vec_free(regexes);
}

void dm_types__tbuild_init(struct dm_tbuild *b, unsigned base)
{
    memset(b, 0, sizeof *b);
    b->base = (uint8_t)base;
    b->max_items = USP_DM_UNBOUNDED;
}

void dm_types__tbuild_cleanup(struct dm_tbuild *b)
{
    dm_schema__vec_free(&b->sizes);
    dm_schema__vec_free(&b->ranges);
    dm_schema__vec_free(&b->enums);
    dm_schema__vec_free(&b->patterns);
}

static int copy_into(struct dm_vec *v, const void *src, size_t n, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        void *slot = dm_schema__vec_push(v, size);
        if (!slot)
            return USP_ENOMEM;
        memcpy(slot, (const unsigned char *)src + i * size, size);
    }
    return 0;
}

int dm_types__tbuild_from(struct dm_tbuild *b, const struct usp_dm_type *t)
{
    dm_types__tbuild_init(b, t->base);
    b->item = t->item;
    b->units = t->units;
    b->min_items = t->min_items;
    b->max_items = t->max_items;
    b->nested = t->nested;
    if (t->pathref) {
        b->pathref = *t->pathref;
        b->has_pathref = true;
    }
    if (t->enumref) {
        b->enumref = *t->enumref;
        b->has_enumref = true;
    }
    if (copy_into(&b->sizes, t->sizes, t->nsizes, sizeof *t->sizes) < 0 ||
        copy_into(&b->ranges, t->ranges, t->nranges, sizeof *t->ranges) < 0 ||
        copy_into(&b->enums, t->enums, t->nenums, sizeof *t->enums) < 0)
        return USP_ENOMEM;
    for (uint16_t i = 0; i < t->npatterns; i++) {
        struct usp_dm_pattern *p = dm_schema__vec_push(&b->patterns, sizeof *p);
        if (!p)
            return USP_ENOMEM;
        p->value = t->patterns[i].value;
    }
    return 0;
}

#define MIX(h, v) ((h) = ((h) ^ (uint64_t)(v)) * UINT64_C(0x100000001B3))

static uint64_t tbuild_hash(const struct dm_tbuild *b)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    MIX(h, (uintptr_t)b->name);
    MIX(h, (uintptr_t)b->parent);
    MIX(h, (uintptr_t)b->item);
    MIX(h, (uintptr_t)b->units);
    MIX(h, b->base | (uint32_t)b->nested << 8);
    MIX(h, b->min_items);
    MIX(h, b->max_items);
    for (uint32_t i = 0; i < b->sizes.n; i++) {
        const struct usp_dm_size *s = &DM_VEC_AT(b->sizes, struct usp_dm_size, i);
        MIX(h, s->min);
        MIX(h, s->max);
    }
    for (uint32_t i = 0; i < b->ranges.n; i++) {
        const struct usp_dm_range *r = &DM_VEC_AT(b->ranges, struct usp_dm_range, i);
        MIX(h, r->min.u);
        MIX(h, r->max.u);
        MIX(h, r->step);
    }
    for (uint32_t i = 0; i < b->enums.n; i++)
        MIX(h, (uintptr_t)DM_VEC_AT(b->enums, struct usp_dm_enum, i).value);
    for (uint32_t i = 0; i < b->patterns.n; i++)
        MIX(h, (uintptr_t)DM_VEC_AT(b->patterns, struct usp_dm_pattern, i).value);
    if (b->has_pathref)
        MIX(h, (uintptr_t)b->pathref.target_parent + b->pathref.ref_type);
    if (b->has_enumref)
        MIX(h, (uintptr_t)b->enumref.target_param);
    return h;
}

static bool type_equal(const struct usp_dm_type *t, const struct dm_tbuild *b)
{
    if (t->name != b->name || t->parent != b->parent || t->item != b->item ||
        t->units != b->units || t->base != b->base || t->nested != b->nested ||
        t->min_items != b->min_items || t->max_items != b->max_items || t->nsizes != b->sizes.n ||
        t->nranges != b->ranges.n || t->nenums != b->enums.n || t->npatterns != b->patterns.n ||
        !t->pathref != !b->has_pathref || !t->enumref != !b->has_enumref)
        return false;
    for (uint32_t i = 0; i < b->sizes.n; i++) {
        const struct usp_dm_size *s = &DM_VEC_AT(b->sizes, struct usp_dm_size, i);
        if (t->sizes[i].min != s->min || t->sizes[i].max != s->max)
            return false;
    }
    for (uint32_t i = 0; i < b->ranges.n; i++) {
        const struct usp_dm_range *r = &DM_VEC_AT(b->ranges, struct usp_dm_range, i);
        const struct usp_dm_range *q = &t->ranges[i];
        if (q->min.u != r->min.u || q->max.u != r->max.u || q->step != r->step ||
            q->has_min != r->has_min || q->has_max != r->has_max)
            return false;
    }
    for (uint32_t i = 0; i < b->enums.n; i++) {
        const struct usp_dm_enum *e = &DM_VEC_AT(b->enums, struct usp_dm_enum, i);
        if (t->enums[i].value != e->value || t->enums[i].status != e->status ||
            t->enums[i].flags != e->flags)
            return false;
    }
    for (uint32_t i = 0; i < b->patterns.n; i++)
        if (t->patterns[i].value != DM_VEC_AT(b->patterns, struct usp_dm_pattern, i).value)
            return false;
    if (t->pathref && (t->pathref->target_parent != b->pathref.target_parent ||
                       t->pathref->ref_type != b->pathref.ref_type ||
                       t->pathref->target_type != b->pathref.target_type))
        return false;
    if (t->enumref && (t->enumref->target_param != b->enumref.target_param ||
                       t->enumref->null_value != b->enumref.null_value))
        return false;
    return true;
}

static uint64_t type_hash(const struct usp_dm_type *t)
{
    /* Same mixing as tbuild_hash, from the record. */
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    MIX(h, (uintptr_t)t->name);
    MIX(h, (uintptr_t)t->parent);
    MIX(h, (uintptr_t)t->item);
    MIX(h, (uintptr_t)t->units);
    MIX(h, t->base | (uint32_t)t->nested << 8);
    MIX(h, t->min_items);
    MIX(h, t->max_items);
    for (uint16_t i = 0; i < t->nsizes; i++) {
        MIX(h, t->sizes[i].min);
        MIX(h, t->sizes[i].max);
    }
    for (uint16_t i = 0; i < t->nranges; i++) {
        MIX(h, t->ranges[i].min.u);
        MIX(h, t->ranges[i].max.u);
        MIX(h, t->ranges[i].step);
    }
    for (uint16_t i = 0; i < t->nenums; i++)
        MIX(h, (uintptr_t)t->enums[i].value);
    for (uint16_t i = 0; i < t->npatterns; i++)
        MIX(h, (uintptr_t)t->patterns[i].value);
    if (t->pathref)
        MIX(h, (uintptr_t)t->pathref->target_parent + t->pathref->ref_type);
    if (t->enumref)
        MIX(h, (uintptr_t)t->enumref->target_param);
    return h;
}

static int types_grow(struct dm_types *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    const struct usp_dm_type **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return USP_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i])
            continue;
        size_t j = type_hash(t->slots[i]) & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static size_t ptrhash(const void *p)
{
    return (size_t)(((uintptr_t)p >> 3) * UINT64_C(0x9E3779B97F4A7C15) >> 20);
}

/* The compiled form of an interned pattern (compiled once per value). */
static int pattern_compiled(struct dm_types *t, const char *value, const void **out, char *why,
                            size_t whylen)
{
    *out = NULL;
    if (!*value)
        return 0; /* "" allows the empty string, checked without a regex */
    if (!t->pats && !(t->pats = calloc(1, sizeof *t->pats)))
        return USP_ENOMEM;
    struct dm_pattab *pt = t->pats;
    if ((pt->n + 1) * 2 > pt->cap) {
        size_t cap = pt->cap ? pt->cap * 2 : 64;
        struct dm_pat_slot *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return USP_ENOMEM;
        for (size_t i = 0; i < pt->cap; i++) {
            if (!pt->slots[i].value)
                continue;
            size_t j = ptrhash(pt->slots[i].value) & (cap - 1);
            while (slots[j].value)
                j = (j + 1) & (cap - 1);
            slots[j] = pt->slots[i];
        }
        free(pt->slots);
        pt->slots = slots;
        pt->cap = cap;
    }
    size_t j = ptrhash(value) & (pt->cap - 1);
    while (pt->slots[j].value) {
        if (pt->slots[j].value == value) {
            *out = pt->slots[j].re;
            return 0;
        }
        j = (j + 1) & (pt->cap - 1);
    }
    regex_t *re = malloc(sizeof *re);
    regex_t **keep = re ? dm_schema__vec_push(&t->regexes, sizeof *keep) : NULL;
    if (!keep) {
        free(re);
        return USP_ENOMEM;
    }
    if (dm_types__regex_compile(re, value, why, whylen) < 0) {
        t->regexes.n--;
        free(re);
        return USP_EINVAL;
    }
    *keep = re;
    pt->slots[j] = (struct dm_pat_slot){value, re};
    pt->n++;
    *out = re;
    return 0;
}

const struct usp_dm_type *dm_types__intern(struct dm_types *t, const struct dm_tbuild *b,
                                           const char **bad, char *why, size_t whylen)
{
    *bad = NULL;
    if ((t->n + 1) * 2 > t->cap && types_grow(t) < 0)
        return NULL;
    uint64_t h = tbuild_hash(b);
    size_t j = h & (t->cap - 1);
    while (t->slots[j]) {
        if (type_equal(t->slots[j], b))
            return t->slots[j];
        j = (j + 1) & (t->cap - 1);
    }
    struct usp_dm_type *r = dm_schema__alloc(t->pool, sizeof *r);
    if (!r)
        return NULL;
    r->name = b->name;
    r->parent = b->parent;
    r->item = b->item;
    r->units = b->units;
    r->base = b->base;
    r->nested = b->nested;
    r->min_items = b->min_items;
    r->max_items = b->max_items;
    r->nsizes = (uint16_t)b->sizes.n;
    r->nranges = (uint16_t)b->ranges.n;
    r->nenums = (uint16_t)b->enums.n;
    r->npatterns = (uint16_t)b->patterns.n;
    if (b->sizes.n && !(r->sizes = dm_schema__memdup(t->pool, b->sizes.v,
                                                     b->sizes.n * sizeof(struct usp_dm_size))))
        return NULL;
    if (b->ranges.n && !(r->ranges = dm_schema__memdup(t->pool, b->ranges.v,
                                                       b->ranges.n * sizeof(struct usp_dm_range))))
        return NULL;
    if (b->enums.n && !(r->enums = dm_schema__memdup(t->pool, b->enums.v,
                                                     b->enums.n * sizeof(struct usp_dm_enum))))
        return NULL;
    if (b->patterns.n) {
        struct usp_dm_pattern *ps = dm_schema__alloc(t->pool, b->patterns.n * sizeof *ps);
        if (!ps)
            return NULL;
        for (uint32_t i = 0; i < b->patterns.n; i++) {
            ps[i].value = DM_VEC_AT(b->patterns, struct usp_dm_pattern, i).value;
            int rc = pattern_compiled(t, ps[i].value, &ps[i].compiled, why, whylen);
            if (rc == USP_EINVAL) {
                *bad = ps[i].value;
                return NULL;
            }
            if (rc < 0)
                return NULL;
        }
        r->patterns = ps;
    }
    if (b->has_pathref &&
        !(r->pathref = dm_schema__memdup(t->pool, &b->pathref, sizeof b->pathref)))
        return NULL;
    if (b->has_enumref &&
        !(r->enumref = dm_schema__memdup(t->pool, &b->enumref, sizeof b->enumref)))
        return NULL;
    t->slots[j] = r;
    t->n++;
    return r;
}

/* ---- XML Schema regex -> POSIX ERE ---- */

struct rx_out {
    char *buf;
    size_t len, cap;
    bool overflow;
};

static void rx_put(struct rx_out *o, const char *s)
{
    size_t n = strlen(s);
    if (o->len + n + 1 > o->cap) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->len, s, n + 1);
    o->len += n;
}

static void rx_putc(struct rx_out *o, char c)
{
    char s[2] = {c, 0};
    rx_put(o, s);
}

/* A bracket expression: collected, then written in POSIX order (']' first,
 * '-' last) since POSIX brackets have no escapes. */
struct rx_class {
    bool negate, has_rbracket, has_dash, has_caret;
    char body[512];
    size_t len;
};

static bool cls_add(struct rx_class *c, const char *s)
{
    size_t n = strlen(s);
    if (c->len + n + 1 > sizeof c->body)
        return false;
    memcpy(c->body + c->len, s, n + 1);
    c->len += n;
    return true;
}

static bool cls_char(struct rx_class *c, char ch)
{
    if (ch == ']') {
        c->has_rbracket = true;
        return true;
    }
    if (ch == '-') {
        c->has_dash = true;
        return true;
    }
    if (ch == '^') {
        c->has_caret = true;
        return true;
    }
    char s[2] = {ch, 0};
    return cls_add(c, s);
}

/* One (possibly escaped) character of a class at *pp; returns the char or
 * -1 for a multi-char escape already added, -2 on error. */
static int cls_atom(struct rx_class *c, const char **pp, char *why, size_t whylen)
{
    const char *p = *pp;
    if (*p != '\\') {
        *pp = p + 1;
        return (unsigned char)*p;
    }
    p++;
    *pp = p + 1;
    switch (*p) {
    case 'd':
        return cls_add(c, "0-9") ? -1 : -2;
    case 'w':
        return cls_add(c, "[:alnum:]_") ? -1 : -2;
    case 's':
        return cls_add(c, " \t\r\n") ? -1 : -2;
    case 'i':
        return cls_add(c, "A-Za-z_:") ? -1 : -2;
    case 'c':
        c->has_dash = true;
        return cls_add(c, "A-Za-z0-9._:") ? -1 : -2;
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case '\0':
        snprintf(why, whylen, "pattern ends inside an escape");
        return -2;
    default:
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
            snprintf(why, whylen, "unsupported escape \\%c in a character class", *p);
            return -2;
        }
        return (unsigned char)*p;
    }
}

static int rx_class(struct rx_out *o, const char **pp, char *why, size_t whylen)
{
    struct rx_class c = {0};
    const char *p = *pp + 1; /* after '[' */
    if (*p == '^') {
        c.negate = true;
        p++;
    }
    bool first = true;
    while (*p && (*p != ']' || first)) {
        if (*p == '-' && p[1] == '[') {
            snprintf(why, whylen, "character class subtraction is not supported");
            return -1;
        }
        first = false;
        int lo = cls_atom(&c, &p, why, whylen);
        if (lo == -2)
            return -1;
        if (lo == -1)
            continue;
        if (*p == '-' && p[1] && p[1] != ']') {
            p++;
            int hi = cls_atom(&c, &p, why, whylen);
            if (hi < 0) {
                if (hi == -1)
                    snprintf(why, whylen, "bad range in a character class");
                return -1;
            }
            if (hi < lo) {
                snprintf(why, whylen, "reversed range in a character class");
                return -1;
            }
            /* Spelled out char by char: POSIX brackets cannot escape the
             * specials a range might start or end with. */
            for (int ch = lo; ch <= hi; ch++) {
                if (!cls_char(&c, (char)ch)) {
                    snprintf(why, whylen, "character class too long");
                    return -1;
                }
            }
            continue;
        }
        if (!cls_char(&c, (char)lo)) {
            snprintf(why, whylen, "character class too long");
            return -1;
        }
    }
    if (*p != ']') {
        snprintf(why, whylen, "unterminated character class");
        return -1;
    }
    *pp = p + 1;
    if (!c.len && !c.has_rbracket && !c.has_dash && !c.has_caret) {
        snprintf(why, whylen, "empty character class");
        return -1;
    }
    /* "[[" inside a bracket would start a POSIX class: guard "[:" "[." "[=". */
    for (size_t i = 0; i + 1 < c.len; i++) {
        if (c.body[i] == '[' &&
            (c.body[i + 1] == ':' || c.body[i + 1] == '.' || c.body[i + 1] == '=')) {
            /* only our own [:alnum:] is allowed */
            if (strncmp(c.body + i, "[:alnum:]", 9) == 0) {
                i += 8;
                continue;
            }
            snprintf(why, whylen, "unsupported '[%c' in a character class", c.body[i + 1]);
            return -1;
        }
    }
    rx_putc(o, '[');
    if (c.negate)
        rx_putc(o, '^');
    if (c.has_rbracket)
        rx_putc(o, ']');
    rx_put(o, c.body);
    if (c.has_caret)
        rx_putc(o, '^');
    if (c.has_dash)
        rx_putc(o, '-');
    rx_putc(o, ']');
    return 0;
}

/* Patterns come from files: keep regcomp's work bounded. */
#define RX_MAX_LEN    2048
#define RX_MAX_BOUND  1000
#define RX_MAX_WEIGHT 100000

int dm_types__regex_compile(regex_t *re, const char *xsd, char *why, size_t whylen)
{
    size_t in_len = strlen(xsd);
    if (in_len > RX_MAX_LEN) {
        snprintf(why, whylen, "pattern longer than %d characters", RX_MAX_LEN);
        return -1;
    }
    char *buf = malloc(in_len * 12 + 16);
    if (!buf) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    struct rx_out o = {buf, 0, in_len * 12 + 16, false};
    buf[0] = 0;
    rx_put(&o, "^(");
    uint64_t weight = 1;
    int depth = 0;
    const char *p = xsd;
    bool prev_atom = false; /* something a quantifier may follow */
    int rc = -1;
    while (*p) {
        char ch = *p;
        if (ch == '\\') {
            char e = p[1];
            p += 2;
            prev_atom = true;
            switch (e) {
            case 'd':
                rx_put(&o, "[0-9]");
                break;
            case 'D':
                rx_put(&o, "[^0-9]");
                break;
            case 'w':
                rx_put(&o, "[[:alnum:]_]");
                break;
            case 'W':
                rx_put(&o, "[^[:alnum:]_]");
                break;
            case 's':
                rx_put(&o, "[ \t\r\n]");
                break;
            case 'S':
                rx_put(&o, "[^ \t\r\n]");
                break;
            case 'i':
                rx_put(&o, "[A-Za-z_:]");
                break;
            case 'c':
                rx_put(&o, "[A-Za-z0-9._:-]");
                break;
            case 'n':
                rx_putc(&o, '\n');
                break;
            case 'r':
                rx_putc(&o, '\r');
                break;
            case 't':
                rx_putc(&o, '\t');
                break;
            case '\0':
                snprintf(why, whylen, "pattern ends with a backslash");
                goto out;
            default:
                if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
                    snprintf(why, whylen, "unsupported escape \\%c", e);
                    goto out;
                }
                if (strchr(".\\?*+{}()[]|^$", e)) {
                    rx_putc(&o, '\\');
                    rx_putc(&o, e);
                } else {
                    rx_putc(&o, e);
                }
                break;
            }
            continue;
        }
        switch (ch) {
        case '[':
            if (rx_class(&o, &p, why, whylen) < 0)
                goto out;
            prev_atom = true;
            continue;
        case '^':
        case '$': /* no anchors in XML Schema regexes: literal */
            rx_putc(&o, '\\');
            rx_putc(&o, ch);
            prev_atom = true;
            break;
        case '(':
            if (++depth > 32) {
                snprintf(why, whylen, "groups nested too deep");
                goto out;
            }
            if (p[1] == ')') {
                rx_put(&o, "(()"); /* empty group: POSIX needs some content */
                p++;
                rx_putc(&o, ')');
                depth--;
                prev_atom = true;
                break;
            }
            rx_putc(&o, '(');
            prev_atom = false;
            break;
        case ')':
            if (--depth < 0) {
                snprintf(why, whylen, "unbalanced ')'");
                goto out;
            }
            rx_putc(&o, ')');
            prev_atom = true;
            break;
        case '|':
            rx_putc(&o, '|');
            prev_atom = false;
            break;
        case '*':
        case '+':
        case '?':
            if (!prev_atom) {
                snprintf(why, whylen, "quantifier '%c' without anything to repeat", ch);
                goto out;
            }
            rx_putc(&o, ch);
            prev_atom = false;
            break;
        case '{': {
            if (!prev_atom) {
                snprintf(why, whylen, "quantifier '{' without anything to repeat");
                goto out;
            }
            char *end;
            errno = 0;
            unsigned long lo = strtoul(p + 1, &end, 10), hi = lo;
            if (end == p + 1 || errno) {
                snprintf(why, whylen, "bad quantifier");
                goto out;
            }
            if (*end == ',') {
                const char *q = end + 1;
                if (*q == '}') {
                    hi = lo;
                    end = (char *)q;
                } else {
                    hi = strtoul(q, &end, 10);
                    if (end == q || errno) {
                        snprintf(why, whylen, "bad quantifier");
                        goto out;
                    }
                }
            }
            if (*end != '}' || hi < lo) {
                snprintf(why, whylen, "bad quantifier");
                goto out;
            }
            if (hi > RX_MAX_BOUND || lo > RX_MAX_BOUND) {
                snprintf(why, whylen, "quantifier bound above %d", RX_MAX_BOUND);
                goto out;
            }
            weight *= hi ? hi : 1;
            if (weight > RX_MAX_WEIGHT) {
                snprintf(why, whylen, "pattern too complex");
                goto out;
            }
            for (const char *q = p; q <= end; q++)
                rx_putc(&o, *q);
            p = end + 1;
            prev_atom = false;
            continue;
        }
        case '}':
        case ']':
            rx_putc(&o, '\\');
            rx_putc(&o, ch);
            prev_atom = true;
            break;
        default:
            rx_putc(&o, ch);
            prev_atom = true;
            break;
        }
        p++;
    }
    if (depth) {
        snprintf(why, whylen, "unbalanced '('");
        goto out;
    }
    rx_put(&o, ")$");
    if (o.overflow) {
        snprintf(why, whylen, "pattern too long once translated");
        goto out;
    }
    int e = regcomp(re, buf, REG_EXTENDED | REG_NOSUB);
    if (e) {
        char msg[96];
        regerror(e, re, msg, sizeof msg);
        snprintf(why, whylen, "%s", msg);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* ---- lexical parsing ---- */

int dm_types__parse_u64(const char *s, size_t len, uint64_t *out)
{
    size_t i = 0;
    if (i < len && s[i] == '+')
        i++;
    if (i == len)
        return -1;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2; /* out of range */
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int dm_types__parse_i64(const char *s, size_t len, int64_t *out)
{
    bool neg = len && s[0] == '-';
    uint64_t m;
    int rc = dm_types__parse_u64(s + neg, len - neg, &m);
    if (rc < 0)
        return rc;
    if (neg && len > 1 && s[1] == '+')
        return -1;
    if (neg) {
        if (m > (uint64_t)INT64_MAX + 1)
            return -2;
        *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    } else {
        if (m > (uint64_t)INT64_MAX)
            return -2;
        *out = (int64_t)m;
    }
    return 0;
}

bool dm_types__base_signed(unsigned base)
{
    return base == USP_DM_INT || base == USP_DM_LONG || base == USP_DM_DECIMAL;
}

bool dm_types__fits_base(unsigned base, const union usp_dm_int *v)
{
    switch (base) {
    case USP_DM_INT:
        return v->i >= INT32_MIN && v->i <= INT32_MAX;
    case USP_DM_UNSIGNED_INT:
        return v->u <= UINT32_MAX;
    default:
        return true;
    }
}

/* ---- value checks ---- */

#define WHY(...)                                                                                   \
    do {                                                                                           \
        if (why && whylen)                                                                         \
            snprintf(why, whylen, __VA_ARGS__);                                                    \
    } while (0)

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static unsigned num2(const char *s)
{
    return (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
}

/* xsd:dateTime: YYYY-MM-DDThh:mm:ss[.f+][Z|(+|-)hh:mm] */
static bool datetime_ok(const char *s, size_t n)
{
    size_t y = 0;
    while (y < n && s[y] >= '0' && s[y] <= '9')
        y++;
    if (y < 4 || (y > 4 && s[0] == '0'))
        return false;
    const char *p = s + y;
    size_t left = n - y;
    if (left < 15 || p[0] != '-' || !digits(p + 1, 2) || p[3] != '-' || !digits(p + 4, 2) ||
        p[6] != 'T' || !digits(p + 7, 2) || p[9] != ':' || !digits(p + 10, 2) || p[12] != ':' ||
        !digits(p + 13, 2))
        return false;
    unsigned mon = num2(p + 1), day = num2(p + 4), hh = num2(p + 7), mm = num2(p + 10),
             ss = num2(p + 13);
    if (mon < 1 || mon > 12 || day < 1 || hh > 23 || mm > 59 || ss > 59)
        return false;
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (day > mdays[mon - 1])
        return false;
    if (mon == 2 && day == 29) {
        /* leap year from the last 4 digits is enough for the rule below */
        unsigned long yr = strtoul(s, NULL, 10);
        if (!((yr % 4 == 0 && yr % 100 != 0) || yr % 400 == 0))
            return false;
    }
    p += 15;
    left -= 15;
    if (left && *p == '.') {
        size_t f = 1;
        while (f < left && p[f] >= '0' && p[f] <= '9')
            f++;
        if (f == 1)
            return false;
        p += f;
        left -= f;
    }
    if (!left)
        return true;
    if (left == 1 && *p == 'Z')
        return true;
    if (left == 6 && (*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' &&
        digits(p + 4, 2))
        return num2(p + 1) <= 14 && num2(p + 4) <= 59;
    return false;
}

static bool decimal_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    size_t d = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, d++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, d++;
    }
    return d > 0 && i == n;
}

/* Octets of a base64 value, or -1 when not base64. Whitespace is ignored. */
static long base64_octets(const char *s, size_t n)
{
    size_t chars = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return -1;
        chars++;
    }
    if (pad > 2 || (chars + pad) % 4)
        return -1;
    return (long)((chars + pad) / 4 * 3 - pad);
}

/* Characters of a UTF-8 string (bytes that do not continue a sequence). */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

static bool size_ok(const struct usp_dm_type *t, size_t len)
{
    if (!t->nsizes)
        return true;
    for (uint16_t i = 0; i < t->nsizes; i++)
        if (len >= t->sizes[i].min &&
            (t->sizes[i].max == USP_DM_UNBOUNDED || len <= t->sizes[i].max))
            return true;
    return false;
}

static void describe_sizes(const struct usp_dm_type *t, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (uint16_t i = 0; i < t->nsizes && used < n; i++) {
        const struct usp_dm_size *s = &t->sizes[i];
        int w;
        if (s->max == USP_DM_UNBOUNDED)
            w = snprintf(buf + used, n - used, "%s%u..", i ? " or " : "", s->min);
        else
            w = snprintf(buf + used, n - used, "%s%u..%u", i ? " or " : "", s->min, s->max);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int check_scalar(const struct usp_dm_type *t, const char *v, size_t n, char *why,
                        size_t whylen);

/* Splits a list at top-level commas (brackets nest) and checks each item. */
static int check_list(const struct usp_dm_type *t, const char *v, size_t n, char *why,
                      size_t whylen)
{
    size_t chars = utf8_chars(v, n);
    if (!size_ok(t, chars)) {
        char s[96];
        describe_sizes(t, s, sizeof s);
        WHY("list length %zu not in %s", chars, s);
        return USP_ERR_INVALID_VALUE;
    }
    size_t items = 0;
    size_t i = 0;
    bool empty = true;
    for (size_t k = 0; k < n; k++)
        if (v[k] != ' ' && v[k] != '\t')
            empty = false;
    if (!empty) {
        while (i <= n) {
            size_t start = i;
            int depth = 0;
            while (i < n && (v[i] != ',' || depth > 0)) {
                if (v[i] == '[')
                    depth++;
                else if (v[i] == ']' && depth > 0)
                    depth--;
                i++;
            }
            size_t a = start, b = i;
            while (a < b && (v[a] == ' ' || v[a] == '\t'))
                a++;
            while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                b--;
            items++;
            int rc;
            const struct usp_dm_type *it = t->item;
            if (it->item) {
                /* nested list: "[a,b]" (brackets optional unless required) */
                bool br = b - a >= 2 && v[a] == '[' && v[b - 1] == ']';
                if (!br && t->nested == USP_DM_NESTING_REQUIRED) {
                    WHY("item %zu: a nested list must be in brackets", items);
                    return USP_ERR_INVALID_TYPE;
                }
                rc = br ? check_list(it, v + a + 1, b - a - 2, why, whylen)
                        : check_list(it, v + a, b - a, why, whylen);
            } else {
                rc = check_scalar(it, v + a, b - a, why, whylen);
            }
            if (rc) {
                if (why && whylen) {
                    char inner[160];
                    snprintf(inner, sizeof inner, "%s", why);
                    snprintf(why, whylen, "item %zu: %s", items, inner);
                }
                return rc;
            }
            i++; /* past the comma */
        }
    }
    if (items < t->min_items) {
        WHY("%zu items, at least %u required", items, t->min_items);
        return USP_ERR_INVALID_VALUE;
    }
    if (t->max_items != USP_DM_UNBOUNDED && items > t->max_items) {
        WHY("%zu items, at most %u allowed", items, t->max_items);
        return USP_ERR_INVALID_VALUE;
    }
    return 0;
}

static bool range_hit(const struct usp_dm_range *r, bool sig, const union usp_dm_int *v)
{
    if (sig) {
        if ((r->has_min && v->i < r->min.i) || (r->has_max && v->i > r->max.i))
            return false;
        if (r->step > 1) {
            int64_t base = r->has_min ? r->min.i : 0;
            uint64_t d =
                v->i >= base ? (uint64_t)v->i - (uint64_t)base : (uint64_t)base - (uint64_t)v->i;
            return d % r->step == 0;
        }
        return true;
    }
    if ((r->has_min && v->u < r->min.u) || (r->has_max && v->u > r->max.u))
        return false;
    if (r->step > 1)
        return (v->u - (r->has_min ? r->min.u : 0)) % r->step == 0;
    return true;
}

static void bound_str(char *buf, size_t n, bool has, bool sig, const union usp_dm_int *v)
{
    if (!has)
        buf[0] = 0;
    else if (sig)
        snprintf(buf, n, "%lld", (long long)v->i);
    else
        snprintf(buf, n, "%llu", (unsigned long long)v->u);
}

static void describe_ranges(const struct usp_dm_type *t, bool sig, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (uint16_t i = 0; i < t->nranges && used < n; i++) {
        const struct usp_dm_range *r = &t->ranges[i];
        char lo[24], hi[24];
        bound_str(lo, sizeof lo, r->has_min, sig, &r->min);
        bound_str(hi, sizeof hi, r->has_max, sig, &r->max);
        int w = snprintf(buf + used, n - used, "%s[%s:%s]", i ? " or " : "", lo, hi);
        if (w < 0)
            break;
        used += (size_t)w;
        if (r->step > 1 && used < n) {
            w = snprintf(buf + used, n - used, " step %llu", (unsigned long long)r->step);
            if (w > 0)
                used += (size_t)w;
        }
    }
}

static int check_scalar(const struct usp_dm_type *t, const char *v, size_t n, char *why,
                        size_t whylen)
{
    union usp_dm_int num = {0};
    size_t len = 0; /* for sizes */
    bool sig = dm_types__base_signed(t->base);
    switch (t->base) {
    case USP_DM_BOOLEAN:
        if (!((n == 1 && (v[0] == '0' || v[0] == '1')) || (n == 4 && !memcmp(v, "true", 4)) ||
              (n == 5 && !memcmp(v, "false", 5)))) {
            WHY("not a boolean (0, 1, true, false)");
            return USP_ERR_INVALID_TYPE;
        }
        len = n;
        break;
    case USP_DM_INT:
    case USP_DM_LONG: {
        int rc = dm_types__parse_i64(v, n, &num.i);
        if (rc < 0 || !dm_types__fits_base(t->base, &num)) {
            WHY(rc == -1 ? "not an %s" : "out of the range of %s", usp_dm_base_name(t->base));
            return USP_ERR_INVALID_TYPE;
        }
        len = n;
        break;
    }
    case USP_DM_UNSIGNED_INT:
    case USP_DM_UNSIGNED_LONG: {
        int rc = dm_types__parse_u64(v, n, &num.u);
        if (rc < 0 || !dm_types__fits_base(t->base, &num)) {
            WHY(rc == -1 ? "not an %s" : "out of the range of %s", usp_dm_base_name(t->base));
            return USP_ERR_INVALID_TYPE;
        }
        len = n;
        break;
    }
    case USP_DM_DECIMAL:
        if (!decimal_ok(v, n)) {
            WHY("not a decimal");
            return USP_ERR_INVALID_TYPE;
        }
        len = n;
        break;
    case USP_DM_DATETIME:
        if (!datetime_ok(v, n)) {
            WHY("not a dateTime (YYYY-MM-DDThh:mm:ss[.s][Z|+hh:mm])");
            return USP_ERR_INVALID_TYPE;
        }
        len = n;
        break;
    case USP_DM_HEXBINARY:
        for (size_t i = 0; i < n; i++) {
            if (!is_hex(v[i])) {
                WHY("not hexBinary (character %zu)", i + 1);
                return USP_ERR_INVALID_TYPE;
            }
        }
        if (n % 2) {
            WHY("not hexBinary (odd number of digits)");
            return USP_ERR_INVALID_TYPE;
        }
        len = n / 2;
        break;
    case USP_DM_BASE64: {
        long o = base64_octets(v, n);
        if (o < 0) {
            WHY("not base64");
            return USP_ERR_INVALID_TYPE;
        }
        len = (size_t)o;
        break;
    }
    default:
        len = utf8_chars(v, n);
        break;
    }
    if (!size_ok(t, len)) {
        char s[96];
        describe_sizes(t, s, sizeof s);
        WHY("length %zu%s not in %s", len,
            t->base == USP_DM_HEXBINARY || t->base == USP_DM_BASE64 ? " octets" : "", s);
        return USP_ERR_INVALID_VALUE;
    }
    if (t->nranges) {
        bool hit = false;
        if (t->base == USP_DM_DECIMAL) {
            char tmp[64];
            double d = 0;
            if (n < sizeof tmp) {
                memcpy(tmp, v, n);
                tmp[n] = 0;
                d = strtod(tmp, NULL);
            }
            for (uint16_t i = 0; i < t->nranges && !hit; i++) {
                const struct usp_dm_range *r = &t->ranges[i];
                hit = (!r->has_min || d >= (double)r->min.i) &&
                      (!r->has_max || d <= (double)r->max.i);
            }
        } else if (t->base != USP_DM_STRING && t->base != USP_DM_BOOLEAN &&
                   t->base != USP_DM_DATETIME && t->base != USP_DM_HEXBINARY &&
                   t->base != USP_DM_BASE64) {
            for (uint16_t i = 0; i < t->nranges && !hit; i++)
                hit = range_hit(&t->ranges[i], sig, &num);
        } else {
            hit = true; /* ranges only constrain numbers */
        }
        if (!hit) {
            char s[128];
            describe_ranges(t, sig, s, sizeof s);
            WHY("%.*s not in %s", n > 24 ? 24 : (int)n, v, s);
            return USP_ERR_INVALID_VALUE;
        }
    }
    if (t->nenums) {
        bool hit = false;
        for (uint16_t i = 0; i < t->nenums && !hit; i++)
            hit = strlen(t->enums[i].value) == n && !memcmp(t->enums[i].value, v, n);
        if (!hit) {
            WHY("\"%.*s\" is not one of the %u enumerated values", n > 32 ? 32 : (int)n, v,
                t->nenums);
            return USP_ERR_INVALID_VALUE;
        }
    }
    if (t->npatterns) {
        bool hit = false;
        char small[256];
        char *z = n < sizeof small ? small : malloc(n + 1);
        if (!z) {
            WHY("out of memory");
            return USP_ERR_INTERNAL_ERROR;
        }
        memcpy(z, v, n);
        z[n] = 0;
        bool nul_inside = strlen(z) != n;
        for (uint16_t i = 0; i < t->npatterns && !hit; i++) {
            const struct usp_dm_pattern *p = &t->patterns[i];
            if (!p->compiled)
                hit = n == 0;
            else if (!nul_inside)
                hit = regexec((const regex_t *)p->compiled, z, 0, NULL, 0) == 0;
        }
        if (z != small)
            free(z);
        if (!hit) {
            WHY("\"%.*s\" does not match the pattern%s", n > 32 ? 32 : (int)n, v,
                t->npatterns > 1 ? "s" : "");
            return USP_ERR_INVALID_VALUE;
        }
    }
    return 0;
}

int usp_dm_type_check_value(const struct usp_dm_type *t, const char *value, size_t len, char *why,
                            size_t whylen)
{
    if (why && whylen)
        why[0] = 0;
    if (!t || !value)
        return USP_ERR_INVALID_VALUE;
    if (t->item)
        return check_list(t, value, len, why, whylen);
    return check_scalar(t, value, len, why, whylen);
}

int usp_dm_type_check(const struct usp_dm_param *p, const char *value, char *why, size_t whylen)
{
    if (!p || !value) {
        if (why && whylen)
            snprintf(why, whylen, "no value");
        return USP_ERR_INVALID_VALUE;
    }
    return usp_dm_type_check_value(p->type, value, strlen(value), why, whylen);
}
