/* Text from a parsed USP path: the canonical form (logs, tests, echoing a
 * requested path) and the supported-data-model form ("{i}" for every
 * instance selector). Both write into the caller's buffer with snprintf
 * rules and allocate nothing. */
#include <stdint.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/path.h"

struct out {
    char *buf;
    size_t cap;
    size_t len; /* what the whole text needs, even past cap */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u32(struct out *o, uint32_t v)
{
    char d[10];
    size_t k = sizeof d;
    do {
        d[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, d + k, sizeof d - k);
}

/* The value between quotes, '"' and '%' escaped again. */
static void put_quoted(struct out *o, const char *v, size_t n)
{
    put(o, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '"' && v[i] != '%')
            continue;
        put(o, v + run, i - run);
        put(o, v[i] == '"' ? "%22" : "%25", 3);
        run = i + 1;
    }
    put(o, v + run, n - run);
    put(o, "\"", 1);
}

static int finish(struct out *o, size_t *len)
{
    if (len)
        *len = o->len;
    if (o->cap == 0)
        return USP_ERANGE;
    o->buf[o->len < o->cap ? o->len : o->cap - 1] = '\0';
    return o->len < o->cap ? 0 : USP_ERANGE;
}

static void put_segs(struct out *o, const struct usp_path_seg *seg, uint32_t n, bool supported);

static void put_search(struct out *o, const struct usp_path_seg *sg)
{
    put(o, "[", 1);
    for (uint32_t k = 0; k < sg->search.ncmp; k++) {
        const struct usp_path_cmp *cm = &sg->search.cmp[k];
        if (k)
            put(o, "&&", 2);
        put_segs(o, cm->rel, cm->nrel, false);
        const char *op = usp_path_op_str(cm->op);
        put_str(o, op ? op : "?");
        if (cm->quoted)
            put_quoted(o, cm->value, cm->value_len);
        else
            put(o, cm->value, cm->value_len);
    }
    put(o, "]", 1);
}

/* Segments joined by '.', except before REF; `supported` writes "{i}" for
 * every instance selector. */
static void put_segs(struct out *o, const struct usp_path_seg *seg, uint32_t n, bool supported)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct usp_path_seg *sg = &seg[i];
        if (i && sg->kind != USP_PATH_SEG_REF)
            put(o, ".", 1);
        if (supported && (sg->kind == USP_PATH_SEG_INSTANCE || sg->kind == USP_PATH_SEG_WILDCARD ||
                          sg->kind == USP_PATH_SEG_SEARCH)) {
            put(o, "{i}", 3);
            continue;
        }
        switch (sg->kind) {
        case USP_PATH_SEG_NAME:
        case USP_PATH_SEG_COMMAND:
        case USP_PATH_SEG_EVENT:
            put(o, sg->name, sg->len);
            break;
        case USP_PATH_SEG_INSTANCE:
            put_u32(o, sg->inst);
            break;
        case USP_PATH_SEG_WILDCARD:
            put(o, "*", 1);
            break;
        case USP_PATH_SEG_SEARCH:
            put_search(o, sg);
            break;
        case USP_PATH_SEG_SUPPORTED:
            put(o, "{i}", 3);
            break;
        case USP_PATH_SEG_REF:
            if (sg->ref.mode == USP_PATH_REF_INDEX) {
                put(o, "#", 1);
                put_u32(o, sg->ref.index);
            } else if (sg->ref.mode == USP_PATH_REF_ALL) {
                put(o, "#*", 2);
            }
            put(o, "+", 1);
            break;
        }
    }
}

int usp_path_format(const struct usp_path *p, char *buf, size_t cap, size_t *len)
{
    struct out o = {buf, buf ? cap : 0, 0};
    put_segs(&o, p->seg, p->nseg, false);
    if ((p->flags & USP_PATH_OBJECT) && !(p->flags & USP_PATH_NO_DOT))
        put(&o, ".", 1);
    return finish(&o, len);
}

int usp_path_supported_form(const struct usp_path *p, char *buf, size_t cap, size_t *len)
{
    struct out o = {buf, buf ? cap : 0, 0};
    if (p->flags & USP_PATH_HAS_REF) {
        if (len)
            *len = 0;
        if (buf && cap)
            buf[0] = '\0';
        return USP_EINVAL;
    }
    put_segs(&o, p->seg, p->nseg, true);
    if (p->flags & USP_PATH_OBJECT)
        put(&o, ".", 1);
    return finish(&o, len);
}

const char *usp_path_op_str(enum usp_path_op op)
{
    switch (op) {
    case USP_PATH_OP_EQ:
        return "==";
    case USP_PATH_OP_NE:
        return "!=";
    case USP_PATH_OP_CONTAINS:
        return "~=";
    case USP_PATH_OP_LT:
        return "<";
    case USP_PATH_OP_GT:
        return ">";
    case USP_PATH_OP_LE:
        return "<=";
    case USP_PATH_OP_GE:
        return ">=";
    }
    return NULL;
}
