/* libFuzzer target for the USP path parser: arbitrary bytes either fail
 * cleanly (7008, a position inside the input) or parse into a
 * self-contained block whose canonical text parses back to the same
 * structure and text. The supported form of an accepted path is itself a
 * valid supported path that maps to itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/path.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_path: check failed: %s (line %d)\n", #cond, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool inside(const struct usp_path *p, const void *ptr, size_t n)
{
    const char *base = (const char *)p, *q = ptr;
    return q >= base && q + n <= base + p->size;
}

static bool is_name_kind(enum usp_path_seg_kind k)
{
    return k == USP_PATH_SEG_NAME || k == USP_PATH_SEG_COMMAND || k == USP_PATH_SEG_EVENT;
}

/* The block holds everything it points to, and values agree with lengths. */
static void check_segs(const struct usp_path *p, const struct usp_path_seg *seg, uint32_t n)
{
    CHECK(inside(p, seg, n * sizeof *seg));
    for (uint32_t i = 0; i < n; i++) {
        const struct usp_path_seg *s = &seg[i];
        if (is_name_kind(s->kind)) {
            CHECK(inside(p, s->name, s->len + 1));
            CHECK(strlen(s->name) == s->len);
        } else if (s->kind == USP_PATH_SEG_SEARCH) {
            CHECK(s->search.ncmp >= 1);
            CHECK(inside(p, s->search.cmp, s->search.ncmp * sizeof *s->search.cmp));
            for (uint32_t k = 0; k < s->search.ncmp; k++) {
                const struct usp_path_cmp *c = &s->search.cmp[k];
                CHECK(c->nrel >= 1 && c->rel[0].kind == USP_PATH_SEG_NAME &&
                      c->rel[c->nrel - 1].kind == USP_PATH_SEG_NAME);
                check_segs(p, c->rel, c->nrel);
                CHECK(inside(p, c->value, c->value_len + 1));
                CHECK(strlen(c->value) == c->value_len);
            }
        } else if (s->kind == USP_PATH_SEG_INSTANCE) {
            CHECK(s->inst >= 1);
        }
    }
}

static bool same_segs(const struct usp_path_seg *a, const struct usp_path_seg *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (a[i].kind != b[i].kind || a[i].len != b[i].len)
            return false;
        switch (a[i].kind) {
        case USP_PATH_SEG_NAME:
        case USP_PATH_SEG_COMMAND:
        case USP_PATH_SEG_EVENT:
            if (memcmp(a[i].name, b[i].name, a[i].len) != 0)
                return false;
            break;
        case USP_PATH_SEG_INSTANCE:
            if (a[i].inst != b[i].inst)
                return false;
            break;
        case USP_PATH_SEG_REF:
            if (a[i].ref.mode != b[i].ref.mode || a[i].ref.index != b[i].ref.index)
                return false;
            break;
        case USP_PATH_SEG_SEARCH:
            if (a[i].search.ncmp != b[i].search.ncmp)
                return false;
            for (uint32_t k = 0; k < a[i].search.ncmp; k++) {
                const struct usp_path_cmp *x = &a[i].search.cmp[k], *y = &b[i].search.cmp[k];
                if (x->nrel != y->nrel || x->op != y->op || x->quoted != y->quoted ||
                    x->value_len != y->value_len || memcmp(x->value, y->value, x->value_len) ||
                    !same_segs(x->rel, y->rel, x->nrel))
                    return false;
            }
            break;
        case USP_PATH_SEG_WILDCARD:
        case USP_PATH_SEG_SUPPORTED:
            break;
        }
    }
    return true;
}

/* Formats with the given function into a fresh heap string. */
static char *text_of(const struct usp_path *p,
                     int (*fn)(const struct usp_path *, char *, size_t, size_t *), size_t *len)
{
    int rc = fn(p, NULL, 0, len);
    if (rc == USP_EINVAL)
        return NULL;
    CHECK(rc == USP_ERANGE);
    char *t = malloc(*len + 1);
    CHECK(t);
    CHECK(fn(p, t, *len + 1, NULL) == 0);
    CHECK(strlen(t) == *len);
    /* One byte short must say so and stay terminated. */
    if (*len > 0) {
        char *u = malloc(*len);
        CHECK(u);
        CHECK(fn(p, u, *len, NULL) == USP_ERANGE);
        CHECK(strlen(u) == *len - 1 && memcmp(u, t, *len - 1) == 0);
        free(u);
    }
    return t;
}

static void one(const char *s, size_t n, unsigned opts)
{
    struct usp_path *p = NULL, *q = NULL;
    struct usp_path_err err;
    int rc = usp_path_parse_n(s, n, opts, &p, &err);
    if (rc) {
        CHECK(rc == USP_EINVAL && !p);
        CHECK(err.usp_code == USP_ERR_INVALID_PATH_SYNTAX);
        CHECK(err.pos <= n);
        CHECK(err.msg[0] && strstr(err.msg, " at position "));
        return;
    }
    uint32_t ends =
        p->flags & (USP_PATH_OBJECT | USP_PATH_PARAM | USP_PATH_COMMAND | USP_PATH_EVENT);
    CHECK(ends && !(ends & (ends - 1)));
    CHECK(p->nseg >= 1 && p->seg[0].kind == USP_PATH_SEG_NAME);
    CHECK(!(p->flags & USP_PATH_NO_DOT) || (opts & USP_PATH_OPT_REFERENCE));
    check_segs(p, p->seg, p->nseg);

    /* Canonical text: parses to the same structure and the same text. */
    size_t len = 0, len2 = 0;
    char *text = text_of(p, usp_path_format, &len);
    CHECK(text);
    /* Only whitespace inside brackets can make the two texts differ. */
    if (len != n || memcmp(text, s, n) != 0)
        CHECK(memchr(s, ' ', n) || memchr(s, '\t', n));
    CHECK(usp_path_parse_n(text, len, opts, &q, &err) == 0);
    CHECK(q->flags == p->flags && q->nseg == p->nseg && q->size == p->size);
    CHECK(same_segs(p->seg, q->seg, p->nseg));
    char *again = text_of(q, usp_path_format, &len2);
    CHECK(len2 == len && memcmp(again, text, len) == 0);
    free(again);
    usp_path_free(q);

    /* The caller-buffer form gives the same structure. */
    size_t need = 0;
    CHECK(usp_path_parse_buf(s, n, opts, NULL, 0, &need, &q, &err) == USP_ERANGE);
    CHECK(need == p->size);
    void *buf = malloc(need);
    CHECK(buf);
    CHECK(usp_path_parse_buf(s, n, opts, buf, need, NULL, &q, &err) == 0);
    CHECK(q == buf && same_segs(p->seg, q->seg, p->nseg));
    free(buf);

    /* The supported form, when there is one, is a fixed point. */
    char *sup = text_of(p, usp_path_supported_form, &len);
    if (!sup) {
        CHECK(p->flags & USP_PATH_HAS_REF);
    } else if (len > USP_PATH_MAX_LEN) {
        free(sup); /* "{i}" is longer than "1": past the limit it cannot parse */
    } else {
        CHECK(usp_path_parse_n(sup, len, 0, &q, &err) == 0);
        CHECK(usp_path_is_supported(q));
        char *sup2 = text_of(q, usp_path_supported_form, &len2);
        CHECK(sup2 && len2 == len && memcmp(sup2, sup, len) == 0);
        free(sup2);
        usp_path_free(q);
        free(sup);
    }
    free(text);
    usp_path_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    /* The NUL-terminated entry point sees the text up to the first NUL. */
    struct usp_path *p = NULL;
    struct usp_path_err err;
    if (usp_path_parse(s, &p, &err) == 0)
        usp_path_free(p);
    else
        CHECK(err.pos <= strlen(s));
    one(s, size, 0);
    one(s, size, USP_PATH_OPT_REFERENCE);
    free(s);
    return 0;
}
