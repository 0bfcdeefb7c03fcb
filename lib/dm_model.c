/* Builds the model from the element trees of the loaded documents: every
 * object, parameter, command and event (with their base= modifications),
 * component references expanded where they are used, and the value types
 * of <syntax> and named <dataType>s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dm_int.h"
#include "usp/errors.h"

#define MAX_FACETS 65535

static bool name_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && ((c >= '0' && c <= '9') || c == '-'));
}

static bool valid_name(const char *s, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char(s[i], i == 0))
            return false;
    return true;
}

/* "A.B.{i}.C." (relative names allowed: no leading "{i}"). */
static bool valid_object_path(const char *p)
{
    size_t len = strlen(p);
    if (!len || p[len - 1] != '.')
        return false;
    size_t i = 0;
    bool first = true;
    while (i < len) {
        const char *dot = memchr(p + i, '.', len - i);
        size_t seg = (size_t)(dot - (p + i));
        if (seg == 3 && memcmp(p + i, "{i}", 3) == 0) {
            if (first)
                return false;
        } else if (!valid_name(p + i, seg)) {
            return false;
        }
        first = false;
        i += seg + 1;
    }
    return true;
}

static bool ends_multi(const char *p)
{
    size_t len = strlen(p);
    return len >= 4 && memcmp(p + len - 4, "{i}.", 4) == 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

static int parse_u32(const char *v, uint32_t *out)
{
    uint64_t u;
    if (dm_types__parse_u64(v, strlen(v), &u) < 0 || u >= UINT32_MAX)
        return -1;
    *out = (uint32_t)u;
    return 0;
}

/* An interned copy with whitespace runs collapsed to one space and trimmed
 * (attribute values that hold lists of paths may span lines). */
static const char *intern_collapsed(struct dm_loader *L, const char *v)
{
    char *buf = strdup(v);
    if (!buf)
        return NULL;
    size_t o = 0;
    bool space = false;
    for (const char *p = v; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            space = o > 0;
            continue;
        }
        if (space)
            buf[o++] = ' ';
        space = false;
        buf[o++] = *p;
    }
    const char *r = dm_schema__intern(&L->b->strs, buf, o);
    free(buf);
    return r;
}

static int lookup_word(const char *v, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v, words[i]))
            return (int)i;
    return -1;
}

#define WORD(v, words) lookup_word((v), (words), sizeof(words) / sizeof(words)[0])

static const char *const status_words[] = {"current", "deprecated", "obsoleted", "deleted"};
static const char *const access_words[] = {"readOnly", "readWrite", "writeOnceReadOnly"};
static const char *const notify_words[] = {"normal", "canDeny", "forceEnabled",
                                           "forceDefaultEnabled"};
static const char *const default_words[] = {"", "object", "factory", "implementation", "parameter"};
static const char *const reftype_words[] = {"", "weak", "strong"};
static const char *const target_words[] = {"any", "parameter", "object", "single", "table", "row"};
static const char *const nesting_words[] = {"legacy", "permitted", "required"};
static const char *const base_words[] = {"string",    "boolean",      "int",      "unsignedInt",
                                         "long",      "unsignedLong", "dateTime", "base64",
                                         "hexBinary", "decimal"};

static int status_attr(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *n,
                       uint8_t *st)
{
    const char *v = dm_xml__attr(n, "status");
    if (!v)
        return 0;
    int s = WORD(v, status_words);
    if (s < 0)
        return dm_xml__fail(L, d, n, "bad status \"%s\"", v);
    *st = (uint8_t)s;
    return 0;
}

/* Description text with the common indentation removed. */
static const char *description_text(struct dm_loader *L, const struct dm_xnode *n)
{
    const char *s = n->text ? n->text : "";
    size_t len = strlen(s);
    size_t minind = SIZE_MAX;
    for (size_t i = 0; i < len;) {
        size_t ind = 0;
        while (i + ind < len && s[i + ind] == ' ')
            ind++;
        if (i + ind < len && s[i + ind] != '\n' && ind < minind)
            minind = ind;
        const char *nl = memchr(s + i, '\n', len - i);
        i = nl ? (size_t)(nl - s) + 1 : len;
    }
    if (minind == SIZE_MAX)
        minind = 0;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - s) : len;
        size_t skip = 0;
        while (skip < minind && i + skip < end && s[i + skip] == ' ')
            skip++;
        memcpy(out + o, s + i + skip, end - i - skip);
        o += end - i - skip;
        if (nl)
            out[o++] = '\n';
        i = end + 1;
    }
    size_t a = 0;
    while (a < o && (out[a] == '\n' || out[a] == ' '))
        a++;
    while (o > a && (out[o - 1] == '\n' || out[o - 1] == ' '))
        o--;
    const char *r = dm_schema__intern(&L->b->strs, out + a, o - a);
    free(out);
    return r;
}

/* Applies a <description action=...> child of n to *slot. */
static int apply_description(struct dm_loader *L, const struct dm_xnode *n, const char **slot)
{
    if (!(L->flags & USP_DM_LOAD_DESCRIPTIONS))
        return 0;
    const struct dm_xnode *dn = dm_xml__child(n, DM_T_DESCRIPTION);
    if (!dn)
        return 0;
    const char *text = description_text(L, dn);
    if (!text)
        return dm_xml__oom(L);
    const char *action = dm_xml__attr(dn, "action");
    if (*slot && action && (!strcmp(action, "append") || !strcmp(action, "prefix"))) {
        bool app = action[0] == 'a';
        size_t la = strlen(*slot), lb = strlen(text);
        char *joined = malloc(la + lb + 3);
        if (!joined)
            return dm_xml__oom(L);
        snprintf(joined, la + lb + 3, "%s\n\n%s", app ? *slot : text, app ? text : *slot);
        *slot = dm_xml__intern(L, joined);
        free(joined);
        if (!*slot)
            return dm_xml__oom(L);
        return 0;
    }
    *slot = text;
    return 0;
}

/* ---- types ---- */

static int base_of(const struct dm_xnode *n)
{
    return n->tag >= DM_T_STRING && n->tag <= DM_T_DECIMAL ? n->tag - DM_T_STRING : -1;
}

/* Facets of one element applied to b. Facets of a kind given here replace
 * the inherited ones, except enumerations when `merge` (a modification of
 * an existing parameter), which are merged by value. `sizes_only` /
 * `skip_sizes` split a list's facets between the list and its items. */
struct facet_mode {
    bool merge;
    bool sizes_only;
    bool skip_sizes;
};

static int parse_bound(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *n,
                       const char *an, unsigned base, union usp_dm_int *v, bool *has)
{
    const char *s = dm_xml__attr(n, an);
    *has = false;
    if (!s)
        return 0;
    int rc = dm_types__base_signed(base) ? dm_types__parse_i64(s, strlen(s), &v->i)
                                         : dm_types__parse_u64(s, strlen(s), &v->u);
    if (rc < 0 || !dm_types__fits_base(base, v))
        return dm_xml__fail(L, d, n, "%s=\"%s\" is not a valid %s", an, s, base_words[base]);
    *has = true;
    return 0;
}

static int apply_facets(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *holder,
                        struct dm_tbuild *b, struct facet_mode m)
{
    bool sizes = false, ranges = false, enums = false, pats = false;
    for (const struct dm_xnode *n = holder->children; n; n = n->next) {
        if (n->tag == DM_T_SIZE) {
            if (m.skip_sizes)
                continue;
            if (!sizes) {
                b->sizes.n = 0;
                sizes = true;
            }
            struct usp_dm_size sz = {0, USP_DM_UNBOUNDED};
            const char *mn = dm_xml__attr(n, "minLength"), *mx = dm_xml__attr(n, "maxLength");
            if (mn && parse_u32(mn, &sz.min) < 0)
                return dm_xml__fail(L, d, n, "bad minLength \"%s\"", mn);
            if (mx && parse_u32(mx, &sz.max) < 0)
                return dm_xml__fail(L, d, n, "bad maxLength \"%s\"", mx);
            if (sz.min > sz.max)
                return dm_xml__fail(L, d, n, "minLength %u is above maxLength %u", sz.min, sz.max);
            struct usp_dm_size *slot =
                b->sizes.n < MAX_FACETS ? dm_schema__vec_push(&b->sizes, sizeof *slot) : NULL;
            if (!slot)
                return b->sizes.n >= MAX_FACETS ? dm_xml__fail(L, d, n, "too many sizes")
                                                : dm_xml__oom(L);
            *slot = sz;
            continue;
        }
        if (m.sizes_only)
            continue;
        if (n->tag == DM_T_RANGE) {
            if (!ranges) {
                b->ranges.n = 0;
                ranges = true;
            }
            if (b->base == USP_DM_STRING || b->base == USP_DM_BOOLEAN ||
                b->base == USP_DM_DATETIME || b->base == USP_DM_BASE64 ||
                b->base == USP_DM_HEXBINARY)
                return dm_xml__fail(L, d, n, "range on a non-numeric type (%s)",
                                    base_words[b->base]);
            struct usp_dm_range r = {.step = 1};
            unsigned nb = b->base == USP_DM_DECIMAL ? USP_DM_LONG : b->base;
            if (parse_bound(L, d, n, "minInclusive", nb, &r.min, &r.has_min) < 0 ||
                parse_bound(L, d, n, "maxInclusive", nb, &r.max, &r.has_max) < 0)
                return USP_EINVAL;
            const char *st = dm_xml__attr(n, "step");
            if (st && (dm_types__parse_u64(st, strlen(st), &r.step) < 0 || r.step == 0))
                return dm_xml__fail(L, d, n, "bad step \"%s\" (a positive integer)", st);
            if (r.has_min && r.has_max &&
                (dm_types__base_signed(nb) ? r.min.i > r.max.i : r.min.u > r.max.u))
                return dm_xml__fail(
                    L, d, n, "range minInclusive=\"%s\" is above maxInclusive=\"%s\"",
                    dm_xml__attr(n, "minInclusive"), dm_xml__attr(n, "maxInclusive"));
            struct usp_dm_range *slot =
                b->ranges.n < MAX_FACETS ? dm_schema__vec_push(&b->ranges, sizeof *slot) : NULL;
            if (!slot)
                return b->ranges.n >= MAX_FACETS ? dm_xml__fail(L, d, n, "too many ranges")
                                                 : dm_xml__oom(L);
            *slot = r;
        } else if (n->tag == DM_T_ENUMERATION) {
            if (!enums && !m.merge) {
                b->enums.n = 0;
            }
            enums = true;
            const char *v = dm_xml__attr(n, "value");
            if (!v)
                return dm_xml__fail(L, d, n, "<enumeration> without value=");
            struct usp_dm_enum e = {0};
            if (!(e.value = dm_xml__intern(L, v)))
                return dm_xml__oom(L);
            if (status_attr(L, d, n, &e.status) < 0)
                return USP_EINVAL;
            const char *o = dm_xml__attr(n, "optional");
            bool bo = false;
            if (o && parse_bool(o, &bo) < 0)
                return dm_xml__fail(L, d, n, "bad optional=\"%s\"", o);
            if (bo)
                e.flags |= USP_DM_ENUM_OPTIONAL;
            const char *ac = dm_xml__attr(n, "access");
            if (ac && !strcmp(ac, "readOnly"))
                e.flags |= USP_DM_ENUM_READ_ONLY;
            else if (ac && strcmp(ac, "readWrite") != 0)
                return dm_xml__fail(L, d, n, "bad access \"%s\"", ac);
            uint32_t at = b->enums.n;
            for (uint32_t i = 0; i < b->enums.n; i++)
                if (DM_VEC_AT(b->enums, struct usp_dm_enum, i).value == e.value)
                    at = i;
            if (e.status == USP_DM_DELETED) {
                if (at < b->enums.n) { /* drop it, keeping the order */
                    struct usp_dm_enum *ev = b->enums.v;
                    memmove(ev + at, ev + at + 1, (b->enums.n - at - 1) * sizeof *ev);
                    b->enums.n--;
                }
                continue;
            }
            if (at < b->enums.n) {
                DM_VEC_AT(b->enums, struct usp_dm_enum, at) = e;
                continue;
            }
            struct usp_dm_enum *slot =
                b->enums.n < MAX_FACETS ? dm_schema__vec_push(&b->enums, sizeof *slot) : NULL;
            if (!slot)
                return b->enums.n >= MAX_FACETS ? dm_xml__fail(L, d, n, "too many enumerations")
                                                : dm_xml__oom(L);
            *slot = e;
        } else if (n->tag == DM_T_PATTERN) {
            if (!pats) {
                b->patterns.n = 0;
                pats = true;
            }
            const char *v = dm_xml__attr(n, "value");
            if (!v)
                return dm_xml__fail(L, d, n, "<pattern> without value=");
            struct usp_dm_pattern *slot =
                b->patterns.n < MAX_FACETS ? dm_schema__vec_push(&b->patterns, sizeof *slot) : NULL;
            if (!slot)
                return b->patterns.n >= MAX_FACETS ? dm_xml__fail(L, d, n, "too many patterns")
                                                   : dm_xml__oom(L);
            if (!(slot->value = dm_xml__intern(L, v)))
                return dm_xml__oom(L);
        } else if (n->tag == DM_T_UNITS) {
            const char *v = dm_xml__attr(n, "value");
            if (!v)
                return dm_xml__fail(L, d, n, "<units> without value=");
            if (!(b->units = dm_xml__intern(L, v)))
                return dm_xml__oom(L);
        } else if (n->tag == DM_T_PATHREF || n->tag == DM_T_INSTANCEREF) {
            bool inst = n->tag == DM_T_INSTANCEREF;
            const char *rt = dm_xml__attr(n, "refType");
            int r = rt ? WORD(rt, reftype_words) : -1;
            if (r <= 0)
                return dm_xml__fail(L, d, n, "refType must be \"weak\" or \"strong\"");
            const char *tp = dm_xml__attr(n, "targetParent");
            const char *tt = dm_xml__attr(n, "targetType");
            int t = inst ? USP_DM_TARGET_ROW : 0;
            if (tt && !inst && (t = WORD(tt, target_words)) < 0)
                return dm_xml__fail(L, d, n, "bad targetType \"%s\"", tt);
            b->pathref.ref_type = (uint8_t)r;
            b->pathref.target_type = (uint8_t)t;
            if (!(b->pathref.target_parent = intern_collapsed(L, tp ? tp : "")))
                return dm_xml__oom(L);
            b->has_pathref = true;
        } else if (n->tag == DM_T_ENUMERATIONREF) {
            const char *tp = dm_xml__attr(n, "targetParam");
            if (!tp)
                return dm_xml__fail(L, d, n, "<enumerationRef> without targetParam=");
            const char *nv = dm_xml__attr(n, "nullValue");
            if (!(b->enumref.target_param = intern_collapsed(L, tp)) ||
                (nv && !(b->enumref.null_value = dm_xml__intern(L, nv))))
                return dm_xml__oom(L);
            if (!nv)
                b->enumref.null_value = NULL;
            b->has_enumref = true;
        }
    }
    return 0;
}

static bool is_facet(const struct dm_xnode *c)
{
    return c->tag >= DM_T_RANGE && c->tag <= DM_T_ENUMERATIONREF;
}

/* Whether n has size facets (sizes) or other facets (!sizes). */
static bool has_facets(const struct dm_xnode *n, bool sizes)
{
    for (const struct dm_xnode *c = n->children; c; c = c->next)
        if (sizes ? c->tag == DM_T_SIZE : is_facet(c))
            return true;
    return false;
}

static const struct usp_dm_type *intern_type(struct dm_loader *L, struct dm_xdoc *d,
                                             const struct dm_xnode *n, struct dm_tbuild *b)
{
    const char *bad;
    char why[160];
    const struct usp_dm_type *t = dm_types__intern(&L->b->types, b, &bad, why, sizeof why);
    if (!t) {
        if (bad)
            dm_xml__fail(L, d, n, "bad pattern \"%.80s\": %s", bad, why);
        else
            dm_xml__oom(L);
    }
    return t;
}

static const struct usp_dm_type *refine_mode(struct dm_loader *L, struct dm_xdoc *d,
                                             const struct dm_xnode *holder,
                                             const struct usp_dm_type *from, const char *name,
                                             const struct usp_dm_type *parent, struct facet_mode m)
{
    struct dm_tbuild b;
    const struct usp_dm_type *r = NULL;
    if (dm_types__tbuild_from(&b, from) < 0) {
        dm_xml__oom(L);
    } else {
        b.name = name;
        b.parent = parent;
        if (apply_facets(L, d, holder, &b, m) == 0)
            r = intern_type(L, d, holder, &b);
    }
    dm_types__tbuild_cleanup(&b);
    return r;
}

/* `from` refined by the facets of `holder`; for a list type the sizes
 * apply to the list and the other facets to its items. `name`/`parent`
 * label the result. */
static const struct usp_dm_type *refine(struct dm_loader *L, struct dm_xdoc *d,
                                        const struct dm_xnode *holder,
                                        const struct usp_dm_type *from, const char *name,
                                        const struct usp_dm_type *parent, bool merge)
{
    if (!from->item)
        return refine_mode(L, d, holder, from, name, parent, (struct facet_mode){.merge = merge});
    const struct usp_dm_type *item = from->item;
    if (has_facets(holder, false)) {
        item = refine_mode(L, d, holder, item, NULL, item->name ? item : item->parent,
                           (struct facet_mode){.merge = merge, .skip_sizes = true});
        if (!item)
            return NULL;
    }
    struct dm_tbuild b;
    const struct usp_dm_type *r = NULL;
    if (dm_types__tbuild_from(&b, from) < 0) {
        dm_xml__oom(L);
    } else {
        b.name = name;
        b.parent = parent;
        b.item = item;
        if (apply_facets(L, d, holder, &b, (struct facet_mode){.sizes_only = true}) == 0)
            r = intern_type(L, d, holder, &b);
    }
    dm_types__tbuild_cleanup(&b);
    return r;
}

/* A list of `item`s described by <list> `listn`; `old` (a modification of
 * a list) supplies what listn leaves out. */
static const struct usp_dm_type *wrap_list(struct dm_loader *L, struct dm_xdoc *d,
                                           const struct dm_xnode *listn,
                                           const struct usp_dm_type *item, const char *name,
                                           const struct usp_dm_type *parent,
                                           const struct usp_dm_type *old)
{
    struct dm_tbuild b;
    if (old && old->item) {
        if (dm_types__tbuild_from(&b, old) < 0) {
            dm_types__tbuild_cleanup(&b);
            dm_xml__oom(L);
            return NULL;
        }
        b.base = item->base;
    } else {
        dm_types__tbuild_init(&b, item->base);
    }
    b.item = item;
    b.name = name;
    b.parent = parent;
    const struct usp_dm_type *r = NULL;
    const char *mi = dm_xml__attr(listn, "minItems"), *ma = dm_xml__attr(listn, "maxItems");
    const char *ne = dm_xml__attr(listn, "nestedBrackets");
    if (mi && parse_u32(mi, &b.min_items) < 0) {
        dm_xml__fail(L, d, listn, "bad minItems \"%s\"", mi);
        goto out;
    }
    if (ma && strcmp(ma, "unbounded") != 0 && (parse_u32(ma, &b.max_items) < 0 || !b.max_items)) {
        dm_xml__fail(L, d, listn, "bad maxItems \"%s\"", ma);
        goto out;
    }
    if (b.min_items > b.max_items) {
        dm_xml__fail(L, d, listn, "minItems %u is above maxItems %u", b.min_items, b.max_items);
        goto out;
    }
    int nest = ne ? WORD(ne, nesting_words) : b.nested;
    if (nest < 0) {
        dm_xml__fail(L, d, listn, "bad nestedBrackets \"%s\"", ne);
        goto out;
    }
    b.nested = (uint8_t)nest;
    if (apply_facets(L, d, listn, &b, (struct facet_mode){.sizes_only = true}) < 0)
        goto out;
    r = intern_type(L, d, listn, &b);
out:
    dm_types__tbuild_cleanup(&b);
    return r;
}

static const struct usp_dm_type *named_type(struct dm_loader *L, struct dm_xdoc *d,
                                            const struct dm_xnode *at, const char *name);

static bool numeric_base(unsigned base)
{
    return base == USP_DM_INT || base == USP_DM_UNSIGNED_INT || base == USP_DM_LONG ||
           base == USP_DM_UNSIGNED_LONG || base == USP_DM_DECIMAL;
}

static bool same_array(const void *a, size_t na, const void *b, size_t nb, size_t size)
{
    return na == nb && (!na || memcmp(a, b, na * size) == 0);
}

/* Copies the facets a parameter's syntax added to its base type (those that
 * differ from the named type it refines) onto b: a modification that only
 * changes the base type keeps them. */
static int carry_facets(struct dm_tbuild *b, const struct usp_dm_type *old)
{
    if (old->name)
        return 0; /* a named type used as is: nothing of its own */
    const struct usp_dm_type *p = old->parent;
    struct dm_tbuild tmp;
    if (dm_types__tbuild_from(&tmp, old) < 0) {
        dm_types__tbuild_cleanup(&tmp);
        return USP_ENOMEM;
    }
    if (old->nsizes &&
        (!p || !same_array(old->sizes, old->nsizes, p->sizes, p->nsizes, sizeof *old->sizes))) {
        dm_schema__vec_free(&b->sizes);
        b->sizes = tmp.sizes;
        memset(&tmp.sizes, 0, sizeof tmp.sizes);
    }
    if (old->nranges && numeric_base(b->base) && (!p || old->ranges != p->ranges)) {
        dm_schema__vec_free(&b->ranges);
        b->ranges = tmp.ranges;
        memset(&tmp.ranges, 0, sizeof tmp.ranges);
    }
    if (old->nenums && (!p || old->enums != p->enums)) {
        dm_schema__vec_free(&b->enums);
        b->enums = tmp.enums;
        memset(&tmp.enums, 0, sizeof tmp.enums);
    }
    if (old->npatterns && (!p || old->patterns != p->patterns)) {
        dm_schema__vec_free(&b->patterns);
        b->patterns = tmp.patterns;
        memset(&tmp.patterns, 0, sizeof tmp.patterns);
    }
    if (old->units && (!p || old->units != p->units))
        b->units = old->units;
    if (old->pathref && (!p || old->pathref != p->pathref)) {
        b->pathref = *old->pathref;
        b->has_pathref = true;
    }
    if (old->enumref && (!p || old->enumref != p->enumref)) {
        b->enumref = *old->enumref;
        b->has_enumref = true;
    }
    dm_types__tbuild_cleanup(&tmp);
    return 0;
}

/* The type of a base-type element (<string>, <unsignedInt>, ..., <dataType
 * ref|base>) with its facets. `old` is the type being modified (a base=
 * modification), or NULL: modifications merge into what was there. */
static const struct usp_dm_type *element_type(struct dm_loader *L, struct dm_xdoc *d,
                                              const struct dm_xnode *n,
                                              const struct usp_dm_type *old)
{
    const struct usp_dm_type *from = NULL, *parent = NULL;
    int base = -1;
    if (n->tag == DM_T_DATATYPE) {
        const char *ref = dm_xml__attr(n, "ref");
        if (!ref)
            ref = dm_xml__attr(n, "base");
        if (!ref || !*ref) {
            dm_xml__fail(L, d, n, "<dataType> in a syntax needs ref= or base=");
            return NULL;
        }
        from = named_type(L, d, n, ref);
        if (!from)
            return NULL;
        parent = from;
        bool facets = has_facets(n, true) || has_facets(n, false);
        if (old && (old == from || old->parent == from))
            return facets ? refine(L, d, n, old, NULL, from, true) : old; /* same type */
        if (!old && !facets)
            return from;
        if (!old)
            return refine(L, d, n, from, NULL, from, false);
    } else {
        base = base_of(n);
        if (old && !old->item && old->base == base && !old->name && !old->parent)
            return refine(L, d, n, old, NULL, NULL, true); /* same built-in: merge */
    }
    /* a fresh built-in, or a modification that changes the base type */
    struct dm_tbuild b;
    const struct usp_dm_type *r = NULL;
    if (from) {
        if (dm_types__tbuild_from(&b, from) < 0)
            goto nomem;
        b.name = NULL;
        b.parent = parent;
    } else {
        dm_types__tbuild_init(&b, (unsigned)base);
    }
    if (old && carry_facets(&b, old) < 0)
        goto nomem;
    if (apply_facets(L, d, n, &b, (struct facet_mode){.merge = old != NULL}) == 0)
        r = intern_type(L, d, n, &b);
    dm_types__tbuild_cleanup(&b);
    return r;
nomem:
    dm_types__tbuild_cleanup(&b);
    dm_xml__oom(L);
    return NULL;
}

/* The type a <dataType name=...> definition describes. */
static const struct usp_dm_type *build_datatype_node(struct dm_loader *L, struct dm_xdef *def)
{
    struct dm_xdoc *d = def->doc;
    const struct dm_xnode *n = def->node;
    const struct usp_dm_type *t = NULL, *parent = NULL;
    const struct dm_xnode *listn = NULL, *basen = NULL;
    for (const struct dm_xnode *c = n->children; c; c = c->next) {
        if (c->tag == DM_T_LIST && !listn)
            listn = c;
        else if (base_of(c) >= 0 && !basen)
            basen = c;
    }
    const char *base = dm_xml__attr(n, "base");
    if (base && *base) {
        parent = named_type(L, d, n, base);
        if (!parent)
            return NULL;
        t = refine(L, d, n, parent, listn ? NULL : def->name, parent, false);
    } else if (basen) {
        t = element_type(L, d, basen, NULL);
        if (t && !listn) {
            struct dm_tbuild b;
            if (dm_types__tbuild_from(&b, t) < 0) {
                dm_xml__oom(L);
                t = NULL;
            } else {
                b.name = def->name;
                b.parent = NULL;
                t = intern_type(L, d, n, &b);
            }
            dm_types__tbuild_cleanup(&b);
        }
    } else {
        dm_xml__fail(L, d, n, "dataType \"%s\" has neither base= nor a base type element",
                     def->name);
        return NULL;
    }
    if (t && listn)
        t = wrap_list(L, d, listn, t, def->name, parent, NULL);
    return t;
}

/* Builds the named dataType `def` (once). */
static const struct usp_dm_type *build_datatype(struct dm_loader *L, struct dm_xdef *def)
{
    if (def->state == 2)
        return def->type;
    struct dm_xdoc *d = def->doc;
    const struct dm_xnode *n = def->node;
    if (def->state == 1) {
        dm_xml__fail(L, d, n, "dataType \"%s\" is derived from itself", def->name);
        return NULL;
    }
    if (L->type_depth >= DM_MAX_DEPTH) {
        dm_xml__fail(L, d, n, "dataType derivations nested deeper than %d", DM_MAX_DEPTH);
        return NULL;
    }
    def->state = 1;
    /* Errors in here are about the dataType, not the parameter using it. */
    const struct dm_xnode *ctx = L->ctx;
    L->ctx = NULL;
    L->type_depth++;
    const struct usp_dm_type *t = build_datatype_node(L, def);
    L->type_depth--;
    L->ctx = ctx;
    if (!t)
        return NULL;
    const struct usp_dm_type **slot = dm_schema__vec_push(&L->b->datatypes, sizeof *slot);
    if (!slot) {
        dm_xml__oom(L);
        return NULL;
    }
    *slot = t;
    def->type = t;
    def->state = 2;
    return t;
}

static const struct usp_dm_type *named_type(struct dm_loader *L, struct dm_xdoc *d,
                                            const struct dm_xnode *at, const char *name)
{
    const char *nm = dm_xml__intern(L, name);
    if (!nm) {
        dm_xml__oom(L);
        return NULL;
    }
    struct dm_xdef *def = dm_xml__resolve(L, d, DM_DEF_TYPE, nm);
    if (!def) {
        dm_xml__fail(L, d, at, "unknown dataType \"%s\"", name);
        return NULL;
    }
    return build_datatype(L, def);
}

/* <syntax> of a parameter: its type, default and flags. */
static int parse_syntax(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *syn,
                        struct dm_bparam *p, bool is_new, bool args)
{
    const char *v;
    bool bv;
    if ((v = dm_xml__attr(syn, "secured"))) {
        if (parse_bool(v, &bv) < 0)
            return dm_xml__fail(L, d, syn, "bad secured=\"%s\"", v);
        p->flags =
            (uint16_t)(bv ? p->flags | USP_DM_PARAM_SECURED : p->flags & ~USP_DM_PARAM_SECURED);
    }
    if ((v = dm_xml__attr(syn, "hidden"))) {
        if (parse_bool(v, &bv) < 0)
            return dm_xml__fail(L, d, syn, "bad hidden=\"%s\"", v);
        p->flags =
            (uint16_t)(bv ? p->flags | USP_DM_PARAM_HIDDEN : p->flags & ~USP_DM_PARAM_HIDDEN);
    }
    const struct dm_xnode *listn = NULL, *basen = NULL, *defn = NULL;
    for (const struct dm_xnode *c = syn->children; c; c = c->next) {
        if (c->tag == DM_T_LIST) {
            if (listn)
                return dm_xml__fail(L, d, c, "a second <list> in one syntax");
            listn = c;
        } else if (c->tag == DM_T_DEFAULT) {
            defn = c;
        } else if (base_of(c) >= 0 || c->tag == DM_T_DATATYPE) {
            if (basen)
                return dm_xml__fail(L, d, c, "a second base type in one syntax");
            basen = c;
        } else if (c->tag != DM_T_DESCRIPTION) {
            return dm_xml__fail(L, d, c, "unknown type <%s> (not a TR-106 base type)", c->name);
        }
    }
    const struct usp_dm_type *old = is_new ? NULL : p->type;
    const struct usp_dm_type *t;
    if (basen) {
        const struct usp_dm_type *item =
            element_type(L, d, basen, old ? (old->item ? old->item : old) : NULL);
        if (!item)
            return USP_EINVAL;
        if (listn) {
            t = wrap_list(L, d, listn, item, NULL, NULL, old);
        } else if (old && old->item) {
            /* a modification without <list>: keep the list around the items */
            struct dm_tbuild b;
            if (dm_types__tbuild_from(&b, old) < 0) {
                dm_types__tbuild_cleanup(&b);
                return dm_xml__oom(L);
            }
            b.item = item;
            b.base = item->base;
            t = intern_type(L, d, syn, &b);
            dm_types__tbuild_cleanup(&b);
        } else {
            t = item;
        }
    } else if (old) {
        t = listn ? wrap_list(L, d, listn, old->item ? old->item : old, NULL, NULL, old) : old;
    } else {
        return dm_xml__fail(L, d, syn, "syntax without a base type");
    }
    if (!t)
        return USP_EINVAL;
    p->type = t;
    if (defn) {
        const char *ty = dm_xml__attr(defn, "type"), *val = dm_xml__attr(defn, "value");
        int k = ty ? WORD(ty, default_words) : -1;
        if (k <= 0)
            return dm_xml__fail(L, d, defn, "bad default type \"%s\"", ty ? ty : "");
        if (!val)
            return dm_xml__fail(L, d, defn, "<default> without value=");
        if (!(p->default_value = dm_xml__intern(L, val)))
            return dm_xml__oom(L);
        /* an argument's default is always of type "parameter" (as flattened) */
        p->default_type = (uint8_t)(args ? USP_DM_DEFAULT_PARAMETER : k);
    }
    return 0;
}

/* ---- model expansion ---- */

struct ctx {
    struct dm_xdoc *doc;
    struct dm_bscope *scope;
    struct dm_bobj *obj; /* where parameters, commands and events go */
    const char *prefix;  /* prepended to object names (interned) */
    bool args;           /* inside a command's or event's arguments */
    int depth;           /* component nesting */
};

static int items(struct dm_loader *L, struct ctx *c, const struct dm_xnode *parent);

static const char *concat(struct dm_loader *L, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char small[512];
    char *buf = la + lb < sizeof small ? small : malloc(la + lb + 1);
    if (!buf)
        return NULL;
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb + 1);
    const char *r = dm_schema__intern(&L->b->strs, buf, la + lb);
    if (buf != small)
        free(buf);
    return r;
}

static struct dm_bobj *ctx_object(struct dm_loader *L, struct ctx *c, const struct dm_xnode *n)
{
    if (c->obj)
        return c->obj;
    struct dm_bobj *o = *c->prefix ? dm_schema__scope_find(c->scope, c->prefix) : NULL;
    if (!o) {
        if (*c->prefix)
            dm_xml__fail(L, c->doc, n, "object \"%s\" is not defined", c->prefix);
        else
            dm_xml__fail(L, c->doc, n, "not inside an object");
    }
    return o;
}

static int object_def(struct dm_loader *L, struct ctx *c, const struct dm_xnode *n)
{
    struct dm_xdoc *d = c->doc;
    const char *name = dm_xml__attr(n, "name"), *base = dm_xml__attr(n, "base");
    if (!name && !base) {
        if (dm_xml__attr(n, "ref"))
            return 0; /* a profile-style reference: not a definition */
        return dm_xml__fail(L, d, n, "<object> without name= or base=");
    }
    const char *path = concat(L, c->prefix, name ? name : base);
    if (!path)
        return dm_xml__oom(L);
    if (!valid_object_path(path))
        return dm_xml__fail(L, d, n, "bad object name \"%s\"", path);
    struct dm_bobj *o = dm_schema__scope_find(c->scope, path);
    if (!name && !o)
        return dm_xml__fail(L, d, n,
                            "object \"%s\" is not defined (base= modifies an existing one)", path);
    if (!o) {
        if (!(o = dm_schema__scope_add(L->b, c->scope, path)))
            return dm_xml__oom(L);
        o->file = dm_xml__doc_name(d);
        o->line = (int)n->line;
        if (ends_multi(path))
            o->flags |= USP_DM_OBJ_MULTI;
    }
    const char *v;
    /* Access, enable and numEntries mean nothing for argument objects (the
     * flattened files drop them): ignored there. */
    if ((v = dm_xml__attr(n, "access")) && !c->args) {
        int a = WORD(v, access_words);
        if (a < 0 || a == USP_DM_WRITE_ONCE_READ_ONLY)
            return dm_xml__fail(L, d, n, "bad access \"%s\"", v);
        o->access = (uint8_t)a;
    }
    if ((v = dm_xml__attr(n, "minEntries")) && parse_u32(v, &o->min_entries) < 0)
        return dm_xml__fail(L, d, n, "bad minEntries \"%s\"", v);
    if ((v = dm_xml__attr(n, "maxEntries"))) {
        if (!strcmp(v, "unbounded"))
            o->max_entries = USP_DM_UNBOUNDED;
        else if (parse_u32(v, &o->max_entries) < 0 || !o->max_entries)
            return dm_xml__fail(L, d, n, "bad maxEntries \"%s\"", v);
    }
    if (o->min_entries > o->max_entries)
        return dm_xml__fail(L, d, n, "minEntries %u is above maxEntries", o->min_entries);
    if ((v = dm_xml__attr(n, "numEntriesParameter")) && !c->args) {
        if (!valid_name(v, strlen(v)))
            return dm_xml__fail(L, d, n, "bad numEntriesParameter \"%s\"", v);
        if (!(o->num_entries = dm_xml__intern(L, v)))
            return dm_xml__oom(L);
    }
    if ((v = dm_xml__attr(n, "enableParameter")) && !c->args) {
        if (!valid_name(v, strlen(v)))
            return dm_xml__fail(L, d, n, "bad enableParameter \"%s\"", v);
        if (!(o->enable = dm_xml__intern(L, v)))
            return dm_xml__oom(L);
    }
    if ((v = dm_xml__attr(n, "mountType"))) {
        if (!strcmp(v, "mountPoint"))
            o->flags |= USP_DM_OBJ_MOUNT_POINT;
        else if (strcmp(v, "none") != 0 && strcmp(v, "mountable") != 0)
            return dm_xml__fail(L, d, n, "bad mountType \"%s\"", v);
    }
    if (status_attr(L, d, n, &o->status) < 0)
        return USP_EINVAL;
    if (apply_description(L, n, &o->description) < 0)
        return USP_ENOMEM;
    struct ctx in = *c;
    in.obj = o;
    in.prefix = path;
    return items(L, &in, n);
}

static int param_def(struct dm_loader *L, struct ctx *c, const struct dm_xnode *n)
{
    struct dm_xdoc *d = c->doc;
    const char *name = dm_xml__attr(n, "name"), *base = dm_xml__attr(n, "base");
    if (!name && !base) {
        if (dm_xml__attr(n, "ref"))
            return 0; /* profile-style reference */
        return dm_xml__fail(L, d, n, "<parameter> without name= or base=");
    }
    const char *nm = name ? name : base;
    if (!valid_name(nm, strlen(nm)))
        return dm_xml__fail(L, d, n, "bad parameter name \"%s\"", nm);
    struct dm_bobj *o = ctx_object(L, c, n);
    if (!o)
        return USP_EINVAL;
    const char *in = dm_xml__intern(L, nm);
    if (!in)
        return dm_xml__oom(L);
    struct dm_bparam *p = dm_schema__bobj_param(o, in);
    bool is_new = !p;
    if (!p && !name)
        return dm_xml__fail(L, d, n,
                            "parameter \"%s\" is not defined in \"%s\" (base= modifies an "
                            "existing one)",
                            nm, o->path);
    if (!p) {
        if (!(p = dm_schema__vec_push(&o->params, sizeof *p)))
            return dm_xml__oom(L);
        p->name = in;
    }
    const char *v;
    bool bv;
    if ((v = dm_xml__attr(n, "access")) && !c->args) {
        int a = WORD(v, access_words);
        if (a < 0)
            return dm_xml__fail(L, d, n, "bad access \"%s\"", v);
        p->access = (uint8_t)a;
    }
    if (status_attr(L, d, n, &p->status) < 0)
        return USP_EINVAL;
    if ((v = dm_xml__attr(n, "activeNotify")) && !c->args) {
        int a = WORD(v, notify_words);
        if (a < 0)
            return dm_xml__fail(L, d, n, "bad activeNotify \"%s\"", v);
        p->notify = (uint8_t)a;
    }
    if ((v = dm_xml__attr(n, "mandatory")) && c->args) {
        if (parse_bool(v, &bv) < 0)
            return dm_xml__fail(L, d, n, "bad mandatory=\"%s\"", v);
        p->flags =
            (uint16_t)(bv ? p->flags | USP_DM_PARAM_MANDATORY : p->flags & ~USP_DM_PARAM_MANDATORY);
    }
    const struct dm_xnode *syn = dm_xml__child(n, DM_T_SYNTAX);
    if (!syn && is_new)
        return dm_xml__fail(L, d, n, "parameter without <syntax>");
    if (syn) {
        L->ctx = n;
        int rc = parse_syntax(L, d, syn, p, is_new, c->args);
        L->ctx = NULL;
        if (rc < 0)
            return rc;
    }
    if (apply_description(L, n, &p->description) < 0)
        return USP_ENOMEM;
    return 0;
}

static int cmd_def(struct dm_loader *L, struct ctx *c, const struct dm_xnode *n, bool event)
{
    struct dm_xdoc *d = c->doc;
    if (c->args)
        return dm_xml__fail(L, d, n, "a %s inside arguments", event ? "event" : "command");
    const char *name = dm_xml__attr(n, "name"), *base = dm_xml__attr(n, "base");
    if (!name && !base) {
        if (dm_xml__attr(n, "ref"))
            return 0;
        return dm_xml__fail(L, d, n, "<%s> without name= or base=", event ? "event" : "command");
    }
    const char *nm = name ? name : base;
    size_t len = strlen(nm);
    const char *suffix = event ? "!" : "()";
    size_t sl = strlen(suffix);
    if (len <= sl || strcmp(nm + len - sl, suffix) != 0 || !valid_name(nm, len - sl))
        return dm_xml__fail(L, d, n, "bad %s name \"%s\" (must end with \"%s\")",
                            event ? "event" : "command", nm, suffix);
    struct dm_bobj *o = ctx_object(L, c, n);
    if (!o)
        return USP_EINVAL;
    const char *in = dm_xml__intern(L, nm);
    if (!in)
        return dm_xml__oom(L);
    struct dm_bcmd *cmd = dm_schema__bobj_cmd(o, in);
    if (cmd && cmd->is_event != event)
        return dm_xml__fail(L, d, n, "\"%s\" is already defined as a %s", nm,
                            cmd->is_event ? "event" : "command");
    if (!cmd && !name)
        return dm_xml__fail(L, d, n,
                            "%s \"%s\" is not defined in \"%s\" (base= modifies an existing "
                            "one)",
                            event ? "event" : "command", nm, o->path);
    if (!cmd) {
        if (!(cmd = dm_schema__vec_push(&o->cmds, sizeof *cmd)))
            return dm_xml__oom(L);
        cmd->name = in;
        cmd->is_event = event;
    }
    const char *v;
    if (!event && (v = dm_xml__attr(n, "async"))) {
        if (parse_bool(v, &cmd->async) < 0)
            return dm_xml__fail(L, d, n, "bad async=\"%s\"", v);
    }
    if (status_attr(L, d, n, &cmd->status) < 0)
        return USP_EINVAL;
    if (apply_description(L, n, &cmd->description) < 0)
        return USP_ENOMEM;
    /* Arguments live in scopes of their own (commands are refused there),
     * so expanding them never moves `cmd`. */
    struct ctx ac = {.doc = d, .prefix = "", .args = true, .depth = c->depth};
    if (event) {
        if (!cmd->args && !(cmd->args = dm_schema__scope_new(L->b)))
            return dm_xml__oom(L);
        ac.scope = cmd->args;
        ac.obj = &ac.scope->root;
        return items(L, &ac, n);
    }
    for (const struct dm_xnode *ch = n->children; ch; ch = ch->next) {
        bool input = ch->tag == DM_T_INPUT;
        if (!input && ch->tag != DM_T_OUTPUT)
            continue;
        struct dm_bscope **sp = input ? &cmd->input : &cmd->output;
        if (!*sp && !(*sp = dm_schema__scope_new(L->b)))
            return dm_xml__oom(L);
        ac.scope = *sp;
        ac.obj = &ac.scope->root;
        int rc = items(L, &ac, ch);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int key_def(struct dm_loader *L, struct ctx *c, const struct dm_xnode *n)
{
    struct dm_xdoc *d = c->doc;
    if (!c->obj || c->obj == &c->scope->root)
        return dm_xml__fail(L, d, n, "<uniqueKey> outside an object");
    struct dm_bobj *o = c->obj;
    bool functional = true;
    const char *v = dm_xml__attr(n, "functional");
    if (v && parse_bool(v, &functional) < 0)
        return dm_xml__fail(L, d, n, "bad functional=\"%s\"", v);
    uint32_t cnt = 0;
    for (const struct dm_xnode *p = n->children; p; p = p->next)
        if (p->tag == DM_T_PARAMETER)
            cnt++;
    if (!cnt)
        return dm_xml__fail(L, d, n, "<uniqueKey> without parameters");
    const char **names = dm_schema__alloc(&L->b->tmp, cnt * sizeof *names);
    if (!names)
        return dm_xml__oom(L);
    uint32_t k = 0;
    for (const struct dm_xnode *p = n->children; p; p = p->next) {
        if (p->tag != DM_T_PARAMETER)
            continue;
        const char *ref = dm_xml__attr(p, "ref");
        if (!ref || !valid_name(ref, strlen(ref)))
            return dm_xml__fail(L, d, p, "uniqueKey parameter needs a ref= naming a parameter");
        if (!(names[k++] = dm_xml__intern(L, ref)))
            return dm_xml__oom(L);
    }
    /* a modification may restate an existing key */
    for (uint32_t i = 0; i < o->keys.n; i++) {
        struct dm_bkey *e = &DM_VEC_AT(o->keys, struct dm_bkey, i);
        if (e->n == cnt && !memcmp(e->params, names, cnt * sizeof *names)) {
            e->functional = functional;
            return 0;
        }
    }
    struct dm_bkey *key = dm_schema__vec_push(&o->keys, sizeof *key);
    if (!key)
        return dm_xml__oom(L);
    *key = (struct dm_bkey){names, cnt, functional};
    return 0;
}

static int component_ref(struct dm_loader *L, struct ctx *c, const struct dm_xnode *n)
{
    struct dm_xdoc *d = c->doc;
    const char *ref = dm_xml__attr(n, "ref");
    if (!ref || !*ref)
        return dm_xml__fail(L, d, n, "<component> reference without ref=");
    if (c->depth >= DM_MAX_DEPTH)
        return dm_xml__fail(L, d, n,
                            "components nested deeper than %d (a component that includes "
                            "itself?)",
                            DM_MAX_DEPTH);
    const char *nm = dm_xml__intern(L, ref);
    if (!nm)
        return dm_xml__oom(L);
    struct dm_xdef *def = dm_xml__resolve(L, d, DM_DEF_COMPONENT, nm);
    if (def && def->virtual_ && L->root && L->root != d) {
        struct dm_xdef *alt = dm_xml__resolve(L, L->root, DM_DEF_COMPONENT, nm);
        if (alt && !alt->virtual_)
            def = alt;
    }
    if (!def)
        return dm_xml__fail(L, d, n, "unknown component \"%s\"", ref);
    struct ctx in = *c;
    in.doc = def->doc;
    in.depth = c->depth + 1;
    const char *path = dm_xml__attr(n, "path");
    if (path && *path) {
        if (!(in.prefix = concat(L, c->prefix, path)))
            return dm_xml__oom(L);
        if (!valid_object_path(in.prefix))
            return dm_xml__fail(L, d, n, "bad component path \"%s\"", in.prefix);
        in.obj = NULL;
    }
    return items(L, &in, def->node);
}

static int items(struct dm_loader *L, struct ctx *c, const struct dm_xnode *parent)
{
    for (const struct dm_xnode *n = parent->children; n; n = n->next) {
        int rc = 0;
        switch (n->tag) {
        case DM_T_OBJECT:
            rc = object_def(L, c, n);
            break;
        case DM_T_PARAMETER:
            rc = param_def(L, c, n);
            break;
        case DM_T_COMMAND:
            rc = cmd_def(L, c, n, false);
            break;
        case DM_T_EVENT:
            rc = cmd_def(L, c, n, true);
            break;
        case DM_T_COMPONENT:
            rc = component_ref(L, c, n);
            break;
        case DM_T_UNIQUEKEY:
            rc = key_def(L, c, n);
            break;
        default:
            break; /* descriptions and the like: not part of the schema */
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int dm_model__expand(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *model,
                     int depth)
{
    if (depth > DM_MAX_DEPTH)
        return dm_xml__fail(L, d, model, "model bases nested deeper than %d", DM_MAX_DEPTH);
    const char *base = dm_xml__attr(model, "base");
    if (base && *base) {
        const char *nm = dm_xml__intern(L, base);
        if (!nm)
            return dm_xml__oom(L);
        struct dm_xdef *def = dm_xml__resolve(L, d, DM_DEF_MODEL, nm);
        if (!def)
            return dm_xml__fail(L, d, model, "unknown base model \"%s\"", base);
        if (def->node == model)
            return dm_xml__fail(L, d, model, "model is its own base");
        int rc = dm_model__expand(L, def->doc, def->node, depth + 1);
        if (rc < 0)
            return rc;
    }
    struct ctx c = {.doc = d, .scope = &L->b->model, .prefix = ""};
    return items(L, &c, model);
}
