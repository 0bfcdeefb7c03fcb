/* USP Path Name parser (TR-369 "Data Model Path Grammar", TR-106 names).
 *
 * Two passes over the same code: the first validates and counts segments,
 * comparisons and string bytes; the second, which cannot fail, fills one
 * block of exactly that size. Parsing twice costs less than guessing a size
 * and wasting memory in parsed paths that may be kept per subscription, and
 * it needs no per-segment allocation.
 *
 * Why the choices in usp/path.h:
 * - Names: the grammar says [A-Za-z_][A-Za-z_0-9]*, TR-106 allows '-' too
 *   (xs:NCName without '.' or ':'; hyphens are only "SHOULD NOT"), so vendor
 *   names with '-' are accepted. Non-ASCII NCName letters are not: no BBF
 *   model uses them and ASCII keeps the check to a few comparisons. The 256
 *   limit is the XSD maxLength of a name.
 * - Instance numbers are posnum ::= [1-9][0-9]* and TR-181 instance numbers
 *   are unsignedInt, hence 1..4294967295 and no leading zero.
 * - The first element is a name followed by '.' (objpath ::= name '.' ...),
 *   so "Device" alone, ".Device." or "Reboot()" are not paths. Which root
 *   names exist is for the data model (7026), not the syntax.
 * - Unquoted values: the grammar's number ::= '0' | '-'? posnum is narrower
 *   than the specification's own examples ("true", "08", "+123",
 *   "2021-06-06T08:00:00Z"), so any run of letters, digits and "_-+.:" is
 *   taken as written and typed by the evaluator.
 * - String values must be UTF-8 (proto3 strings are) without control
 *   characters; '%' only introduces %22 or %25, as TR-369 describes.
 * - Whitespace is tolerated where R-ARC.9a asks (around operators) and, as
 *   harmlessly, around "&&" and inside the brackets; anywhere else it is an
 *   error, so a path and its canonical text differ only inside '[...]'.
 * - '{i}' with '*', '[...]' or '+' mixes the supported and the instantiated
 *   data models; no message can use that, so it is rejected. */
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/path.h"

struct parser {
    const char *s;
    size_t n;
    size_t i;
    unsigned opts;
    struct usp_path_err *err;
    uint32_t flags;
    /* Counted in the first pass; cursors in the second. */
    uint32_t nseg, ncmp, nrel;
    size_t nstr;
    /* The block's areas in the second pass; NULL in the first. */
    struct usp_path_seg *seg;
    struct usp_path_cmp *cmp;
    struct usp_path_seg *rel;
    char *str;
    /* Where the first pass writes what it does not keep. */
    struct usp_path_seg scratch_seg;
    struct usp_path_cmp scratch_cmp;
};

struct layout {
    size_t cmp, rel, str, size;
};

static inline bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static inline bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool name_start(int c)
{
    return is_alpha(c) || c == '_';
}

static inline bool name_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
}

static inline bool literal_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '+' || c == '.' || c == ':';
}

static inline bool is_space(int c)
{
    return c == ' ' || c == '\t';
}

/* The byte at the cursor, or -1 at the end. */
static inline int peek(const struct parser *p)
{
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static inline int peek_at(const struct parser *p, size_t off)
{
    return p->i + off < p->n ? (unsigned char)p->s[p->i + off] : -1;
}

__attribute__((format(printf, 3, 4))) static int fail(struct parser *p, size_t pos, const char *fmt,
                                                      ...)
{
    if (p->err) {
        struct usp_path_err *e = p->err;
        e->usp_code = USP_ERR_INVALID_PATH_SYNTAX;
        e->pos = pos;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < sizeof e->msg)
            snprintf(e->msg + k, sizeof e->msg - (size_t)k, " at position %zu", pos);
    }
    return USP_EINVAL;
}

static struct usp_path_seg *add_seg(struct parser *p, bool rel)
{
    if (rel)
        return p->rel ? &p->rel[p->nrel++] : (p->nrel++, &p->scratch_seg);
    return p->seg ? &p->seg[p->nseg++] : (p->nseg++, &p->scratch_seg);
}

static struct usp_path_cmp *add_cmp(struct parser *p)
{
    return p->cmp ? &p->cmp[p->ncmp++] : (p->ncmp++, &p->scratch_cmp);
}

/* Room for `n` bytes and a NUL in the string area; NULL in the first pass. */
static char *add_str(struct parser *p, size_t n)
{
    char *d = p->str ? p->str + p->nstr : NULL;
    p->nstr += n + 1;
    return d;
}

static void set_name(struct parser *p, struct usp_path_seg *sg, enum usp_path_seg_kind kind,
                     size_t start, size_t len, const char *suffix)
{
    size_t slen = strlen(suffix);
    char *d = add_str(p, len + slen);
    if (d) {
        memcpy(d, p->s + start, len);
        memcpy(d + len, suffix, slen);
        d[len + slen] = '\0';
    }
    sg->kind = kind;
    sg->len = (uint32_t)(len + slen);
    sg->name = d;
}

static void skip_space(struct parser *p)
{
    while (p->i < p->n && is_space((unsigned char)p->s[p->i]))
        p->i++;
}

/* A name starts at the cursor (the caller checked name_start). */
static int scan_name(struct parser *p, size_t *start, size_t *len)
{
    size_t b = p->i;
    while (p->i < p->n && name_char((unsigned char)p->s[p->i]))
        p->i++;
    if (p->i - b > USP_PATH_NAME_MAX)
        return fail(p, b, "name longer than %d characters", USP_PATH_NAME_MAX);
    *start = b;
    *len = p->i - b;
    return 0;
}

/* A positive number starts at the cursor (the caller checked is_digit). */
static int scan_posnum(struct parser *p, const char *what, uint32_t *out)
{
    size_t b = p->i;
    if (p->s[b] == '0') {
        if (is_digit(peek_at(p, 1)))
            return fail(p, b, "%s with a leading zero", what);
        return fail(p, b, "%s 0 (numbering starts at 1)", what);
    }
    uint64_t v = 0;
    while (p->i < p->n && is_digit((unsigned char)p->s[p->i])) {
        v = v * 10 + (uint64_t)(p->s[p->i] - '0');
        if (v > UINT32_MAX)
            return fail(p, b, "%s larger than 4294967295", what);
        p->i++;
    }
    *out = (uint32_t)v;
    return 0;
}

/* '{i}' must not meet '*', '[...]' or reference following in one path. */
static int check_mix(struct parser *p, uint32_t adding, size_t pos)
{
    uint32_t multi = USP_PATH_HAS_WILDCARD | USP_PATH_HAS_SEARCH | USP_PATH_HAS_REF;
    if (((adding & USP_PATH_HAS_SUPPORTED) && (p->flags & multi)) ||
        ((adding & multi) && (p->flags & USP_PATH_HAS_SUPPORTED)))
        return fail(p, pos, "'{i}' cannot be combined with '*', '[...]' or reference following");
    p->flags |= adding;
    return 0;
}

/* "+", "#n+" or "#*+" at the cursor, then ".name" must follow; the cursor
 * is left on the name. */
static int parse_ref(struct parser *p, bool rel)
{
    size_t b = p->i;
    struct usp_path_seg *sg = add_seg(p, rel);
    sg->kind = USP_PATH_SEG_REF;
    sg->len = 0;
    sg->ref.mode = USP_PATH_REF_ONE;
    sg->ref.index = 0;
    if (peek(p) == '#') {
        p->i++;
        int c = peek(p);
        if (c == '*') {
            sg->ref.mode = USP_PATH_REF_ALL;
            p->i++;
        } else if (is_digit(c)) {
            int rc = scan_posnum(p, "reference index", &sg->ref.index);
            if (rc)
                return rc;
            sg->ref.mode = USP_PATH_REF_INDEX;
        } else {
            return fail(p, p->i, "expected index number or '*' after '#'");
        }
        if (peek(p) != '+')
            return fail(p, p->i, "expected '+' after the reference index");
    }
    p->i++; /* the '+' */
    if (!rel) {
        int rc = check_mix(p, USP_PATH_HAS_REF, b);
        if (rc)
            return rc;
    }
    if (peek(p) != '.')
        return fail(p, p->i, "expected '.' after reference following '+'");
    p->i++;
    if (!name_start(peek(p)))
        return fail(p, p->i, "expected name after reference following '+.'");
    return 0;
}

/* Bytes of the well-formed UTF-8 sequence starting s[0..n), or 0 for none
 * (overlong forms, surrogates and code points past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[j] & 0x3f);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

/* A "string" at the cursor: validated, then decoded into the string area. */
static int parse_string(struct parser *p, struct usp_path_cmp *cm)
{
    size_t open = p->i++;
    size_t b = p->i;
    size_t dlen = 0;
    for (;;) {
        if (p->i >= p->n)
            return fail(p, p->n, "expected '\"' closing the string opened at position %zu", open);
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"')
            break;
        if (c == '%') {
            if (peek_at(p, 1) == '2' && (peek_at(p, 2) == '2' || peek_at(p, 2) == '5')) {
                p->i += 3;
                dlen++;
                continue;
            }
            return fail(p, p->i, "invalid escape in string value (only %%22 and %%25 are allowed)");
        }
        if (c < 0x20 || c == 0x7f)
            return fail(p, p->i, "control character in string value");
        size_t k = 1;
        if (c >= 0x80) {
            k = utf8_len((const unsigned char *)p->s + p->i, p->n - p->i);
            if (!k)
                return fail(p, p->i, "invalid UTF-8 in string value");
        }
        p->i += k;
        dlen += k;
    }
    size_t e = p->i++;
    char *d = add_str(p, dlen);
    if (d) {
        size_t o = 0;
        for (size_t j = b; j < e; j++) {
            if (p->s[j] == '%') {
                d[o++] = p->s[j + 2] == '2' ? '"' : '%';
                j += 2;
            } else {
                d[o++] = p->s[j];
            }
        }
        d[o] = '\0';
    }
    cm->quoted = true;
    cm->value = d;
    cm->value_len = (uint32_t)dlen;
    return 0;
}

/* One comparison "relpath op value" at the cursor. */
static int parse_cmp(struct parser *p)
{
    struct usp_path_cmp *cm = add_cmp(p);
    uint32_t first = p->nrel;
    cm->rel = p->rel ? p->rel + first : NULL;
    if (!name_start(peek(p)))
        return fail(p, p->i, "expected parameter name in search expression");
    for (;;) {
        size_t start, len;
        int rc = scan_name(p, &start, &len);
        if (rc)
            return rc;
        set_name(p, add_seg(p, true), USP_PATH_SEG_NAME, start, len, "");
        int c = peek(p);
        if (c == '+' || c == '#') {
            rc = parse_ref(p, true);
            if (rc)
                return rc;
            continue;
        }
        if (c != '.')
            break;
        p->i++;
        if (!name_start(peek(p)))
            return fail(p, p->i,
                        "expected parameter name after '.' in search expression (it cannot "
                        "descend into a child table)");
    }
    cm->nrel = p->nrel - first;

    skip_space(p);
    int c = peek(p), c2 = peek_at(p, 1);
    size_t oplen = 2;
    if (c == '=' && c2 == '=') {
        cm->op = USP_PATH_OP_EQ;
    } else if (c == '!' && c2 == '=') {
        cm->op = USP_PATH_OP_NE;
    } else if (c == '~' && c2 == '=') {
        cm->op = USP_PATH_OP_CONTAINS;
    } else if (c == '<') {
        cm->op = c2 == '=' ? USP_PATH_OP_LE : USP_PATH_OP_LT;
        oplen = c2 == '=' ? 2 : 1;
    } else if (c == '>') {
        cm->op = c2 == '=' ? USP_PATH_OP_GE : USP_PATH_OP_GT;
        oplen = c2 == '=' ? 2 : 1;
    } else {
        return fail(p, p->i, "expected operator ==, !=, ~=, <, >, <= or >=");
    }
    p->i += oplen;
    skip_space(p);

    c = peek(p);
    if (c == '"')
        return parse_string(p, cm);
    if (!literal_char(c))
        return fail(p, p->i, "expected value (a \"string\" or a literal) after the operator");
    size_t b = p->i;
    while (p->i < p->n && literal_char((unsigned char)p->s[p->i]))
        p->i++;
    size_t len = p->i - b;
    char *d = add_str(p, len);
    if (d) {
        memcpy(d, p->s + b, len);
        d[len] = '\0';
    }
    cm->quoted = false;
    cm->value = d;
    cm->value_len = (uint32_t)len;
    return 0;
}

/* '[' expr ']' at the cursor. */
static int parse_search(struct parser *p)
{
    int rc = check_mix(p, USP_PATH_HAS_SEARCH, p->i);
    if (rc)
        return rc;
    struct usp_path_seg *sg = add_seg(p, false);
    sg->kind = USP_PATH_SEG_SEARCH;
    sg->len = 0;
    sg->search.cmp = p->cmp ? p->cmp + p->ncmp : NULL;
    p->i++;
    skip_space(p);
    if (peek(p) == ']')
        return fail(p, p->i, "empty search expression");
    uint32_t k = 0;
    for (;;) {
        rc = parse_cmp(p);
        if (rc)
            return rc;
        k++;
        skip_space(p);
        int c = peek(p);
        if (c == '&' && peek_at(p, 1) == '&') {
            p->i += 2;
            skip_space(p);
            continue;
        }
        if (c == ']')
            break;
        return fail(p, p->i, "expected '&&' or ']' in search expression");
    }
    p->i++;
    sg->search.ncmp = k;
    return 0;
}

/* An instance selector at the cursor, after "Table." */
static int parse_selector(struct parser *p, const char **what)
{
    int c = peek(p);
    int rc;
    struct usp_path_seg *sg;
    if (is_digit(c)) {
        sg = add_seg(p, false);
        sg->kind = USP_PATH_SEG_INSTANCE;
        sg->len = 0;
        rc = scan_posnum(p, "instance number", &sg->inst);
        if (rc)
            return rc;
        p->flags |= USP_PATH_HAS_INSTANCE;
        *what = "instance number";
        return 0;
    }
    if (c == '*') {
        rc = check_mix(p, USP_PATH_HAS_WILDCARD, p->i);
        if (rc)
            return rc;
        sg = add_seg(p, false);
        sg->kind = USP_PATH_SEG_WILDCARD;
        sg->len = 0;
        p->i++;
        *what = "'*'";
        return 0;
    }
    if (c == '[') {
        *what = "search expression";
        return parse_search(p);
    }
    if (c == '{') {
        if (peek_at(p, 1) != 'i' || peek_at(p, 2) != '}')
            return fail(p, p->i, "expected '{i}' (search expressions use '[...]')");
        rc = check_mix(p, USP_PATH_HAS_SUPPORTED, p->i);
        if (rc)
            return rc;
        sg = add_seg(p, false);
        sg->kind = USP_PATH_SEG_SUPPORTED;
        sg->len = 0;
        p->i += 3;
        *what = "'{i}'";
        return 0;
    }
    return fail(p, p->i, "expected name, '*', instance number, '[' or '{i}' after '.'");
}

static int parse_path(struct parser *p)
{
    size_t start, len;
    int rc;
    if (p->n == 0)
        return fail(p, 0, "empty path: expected a name");
    if (p->n > USP_PATH_MAX_LEN)
        return fail(p, USP_PATH_MAX_LEN, "path longer than %d bytes", USP_PATH_MAX_LEN);
    if (!name_start(peek(p)))
        return fail(p, 0, "expected name at start of path");
    rc = scan_name(p, &start, &len);
    if (rc)
        return rc;
    set_name(p, add_seg(p, false), USP_PATH_SEG_NAME, start, len, "");
    if (peek(p) != '.')
        return fail(p, p->i, "expected '.' after the first name");
    p->i++;

    bool after_name = false; /* an instance selector may come next */
    for (;;) {
        int c = peek(p);
        if (c < 0) {
            p->flags |= USP_PATH_OBJECT;
            return 0;
        }
        if (name_start(c)) {
            rc = scan_name(p, &start, &len);
            if (rc)
                return rc;
            c = peek(p);
            if (c == '(') {
                p->i++;
                if (peek(p) != ')')
                    return fail(p, p->i, "expected ')' after '('");
                p->i++;
                if (p->i < p->n)
                    return fail(p, p->i, "expected end of path after command '()'");
                set_name(p, add_seg(p, false), USP_PATH_SEG_COMMAND, start, len, "()");
                p->flags |= USP_PATH_COMMAND;
                return 0;
            }
            if (c == '!') {
                p->i++;
                if (p->i < p->n)
                    return fail(p, p->i, "expected end of path after event '!'");
                set_name(p, add_seg(p, false), USP_PATH_SEG_EVENT, start, len, "!");
                p->flags |= USP_PATH_EVENT;
                return 0;
            }
            if (c >= 0 && c != '.' && c != '+' && c != '#')
                return fail(p, p->i, "expected '.', '()', '!', '+', '#' or end of path after name");
            set_name(p, add_seg(p, false), USP_PATH_SEG_NAME, start, len, "");
            if (c < 0) {
                p->flags |= USP_PATH_PARAM;
                return 0;
            }
            if (c == '.') {
                p->i++;
                after_name = true;
            } else {
                rc = parse_ref(p, false);
                if (rc)
                    return rc;
                after_name = false;
            }
            continue;
        }
        if (!after_name)
            return fail(p, p->i, "expected name after '.'");
        const char *what = "";
        rc = parse_selector(p, &what);
        if (rc)
            return rc;
        c = peek(p);
        if (c == '.') {
            p->i++;
            after_name = false;
            continue;
        }
        if (c < 0 && (p->opts & USP_PATH_OPT_REFERENCE)) {
            p->flags |= USP_PATH_OBJECT | USP_PATH_NO_DOT;
            return 0;
        }
        return fail(p, p->i, "expected '.' after %s", what);
    }
}

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

static struct layout layout_of(const struct parser *p)
{
    struct layout l;
    size_t end = offsetof(struct usp_path, seg) + (size_t)p->nseg * sizeof(struct usp_path_seg);
    l.cmp = align_up(end, alignof(struct usp_path_cmp));
    l.rel = align_up(l.cmp + (size_t)p->ncmp * sizeof(struct usp_path_cmp),
                     alignof(struct usp_path_seg));
    l.str = l.rel + (size_t)p->nrel * sizeof(struct usp_path_seg);
    l.size = l.str + p->nstr;
    return l;
}

static void parser_init(struct parser *p, const char *s, size_t len, unsigned opts,
                        struct usp_path_err *err)
{
    memset(p, 0, sizeof *p);
    p->s = s;
    p->n = len;
    p->opts = opts;
    p->err = err;
}

/* The second pass over input the first pass accepted. */
static struct usp_path *build(const struct parser *measured, void *buf, const struct layout *l)
{
    struct parser p;
    parser_init(&p, measured->s, measured->n, measured->opts, NULL);
    struct usp_path *path = buf;
    char *base = buf;
    p.seg = path->seg;
    p.cmp = (struct usp_path_cmp *)(void *)(base + l->cmp);
    p.rel = (struct usp_path_seg *)(void *)(base + l->rel);
    p.str = base + l->str;
    if (parse_path(&p) || p.nseg != measured->nseg || p.ncmp != measured->ncmp ||
        p.nrel != measured->nrel || p.nstr != measured->nstr)
        return NULL; /* the input changed under us */
    path->flags = p.flags;
    path->nseg = p.nseg;
    path->size = l->size;
    return path;
}

static void clear_err(struct usp_path_err *err)
{
    if (err) {
        err->usp_code = 0;
        err->pos = 0;
        err->msg[0] = '\0';
    }
}

static int internal_err(struct usp_path_err *err, int rc, const char *msg)
{
    if (err) {
        err->usp_code = USP_ERR_INTERNAL_ERROR;
        err->pos = 0;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return rc;
}

static int measure(struct parser *p, const char *s, size_t len, unsigned opts,
                   struct usp_path_err *err)
{
    clear_err(err);
    parser_init(p, s ? s : "", s ? len : 0, opts, err);
    return parse_path(p);
}

int usp_path_parse_buf(const char *s, size_t len, unsigned opts, void *buf, size_t cap,
                       size_t *need, struct usp_path **out, struct usp_path_err *err)
{
    struct parser p;
    if (out)
        *out = NULL;
    int rc = measure(&p, s, len, opts, err);
    if (rc)
        return rc;
    struct layout l = layout_of(&p);
    if (need)
        *need = l.size;
    if (!buf || cap < l.size)
        return internal_err(err, USP_ERANGE, "buffer too small for the parsed path");
    if ((uintptr_t)buf % alignof(max_align_t))
        return internal_err(err, USP_EINVAL, "buffer not aligned for the parsed path");
    struct usp_path *path = build(&p, buf, &l);
    if (!path)
        return internal_err(err, USP_EINVAL, "path changed while it was parsed");
    if (out)
        *out = path;
    return 0;
}

int usp_path_parse_n(const char *s, size_t len, unsigned opts, struct usp_path **out,
                     struct usp_path_err *err)
{
    struct parser p;
    *out = NULL;
    int rc = measure(&p, s, len, opts, err);
    if (rc)
        return rc;
    struct layout l = layout_of(&p);
    void *buf = malloc(l.size);
    if (!buf)
        return internal_err(err, USP_ENOMEM, "out of memory parsing a path");
    struct usp_path *path = build(&p, buf, &l);
    if (!path) {
        free(buf);
        return internal_err(err, USP_EINVAL, "path changed while it was parsed");
    }
    *out = path;
    return 0;
}

int usp_path_parse(const char *s, struct usp_path **out, struct usp_path_err *err)
{
    return usp_path_parse_n(s, s ? strlen(s) : 0, 0, out, err);
}

void usp_path_free(struct usp_path *p)
{
    free(p);
}

bool usp_path_name_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > USP_PATH_NAME_MAX || !name_start((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!name_char((unsigned char)s[i]))
            return false;
    return true;
}
