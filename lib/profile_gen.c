/* Values of device profiles for an agent: parsing value expressions
 * (templates, literals and the generator calls random, uptime, now, counter,
 * gauge), evaluating them, and finding which line applies to an instance.
 *
 * Evaluation is a pure function of the generator, the agent (index, EID and
 * virtual clock) and the instance numbers: per-agent values come from seeded
 * hashes instead of stored state, so 100,000 agents cost no memory here. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile_int.h"

__extension__ typedef unsigned __int128 u128;

/* Salts that keep the draws of one generator apart. */
#define SALT_PICK  0x7069636bu        /* "pick": random() */
#define SALT_ARG   0x61726700u        /* + argument index */
#define SALT_PHASE 0x7068617365ull    /* gauge phase */
#define SALT_NOISE 0x6e6f697365000000 /* ^ second of the clock */
#define SALT_COUNT 0x636f756e74ull    /* instance counts */

/* --- Hashing --------------------------------------------------------------- */

uint64_t profile__mix(uint64_t x)
{
    /* splitmix64's finaliser: every input bit moves every output bit. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t profile__hash(uint64_t h, const char *s)
{
    /* FNV-1a, then mixed: stable across runs and platforms. */
    uint64_t f = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        f ^= (unsigned char)*s;
        f *= 0x100000001b3ull;
    }
    return profile__mix(h ^ f);
}

uint64_t profile__draw(uint64_t key, uint64_t agent, const unsigned *inst, unsigned ninst,
                       uint64_t salt)
{
    uint64_t x = profile__mix(key ^ 0x5eed5eed5eed5eedull);
    x = profile__mix(x ^ agent);
    for (unsigned k = 0; k < ninst; k++)
        x = profile__mix(x ^ ((uint64_t)inst[k] << 8 | k));
    return profile__mix(x ^ salt);
}

int64_t profile__pick(uint64_t x, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    if (span == UINT64_MAX)
        return (int64_t)x;
    return (int64_t)((uint64_t)lo + x % (span + 1));
}

/* --- Accessors ------------------------------------------------------------- */

enum usp_gen_kind usp_gen_kind(const struct usp_gen *g)
{
    switch (g->type) {
    case G_RANDOM_INT:
    case G_RANDOM_LIST:
        return USP_GEN_RANDOM;
    case G_UPTIME:
        return USP_GEN_UPTIME;
    case G_NOW:
        return USP_GEN_NOW;
    case G_COUNTER:
        return USP_GEN_COUNTER;
    case G_GAUGE:
        return USP_GEN_GAUGE;
    default:
        return USP_GEN_TEXT;
    }
}

unsigned usp_gen_flags(const struct usp_gen *g)
{
    return g->flags;
}

bool usp_gen_is_dynamic(const struct usp_gen *g)
{
    return (g->flags & USP_GEN_F_DYNAMIC) != 0;
}

const char *usp_gen_const(const struct usp_gen *g)
{
    return g->cval;
}

const char *usp_gen_source(const struct usp_gen *g)
{
    return g->src;
}

unsigned usp_gen_levels(const struct usp_gen *g)
{
    return g->levels;
}

void profile__gen_key(struct usp_gen *g, uint64_t key)
{
    g->key = key;
}

/* --- Parsing --------------------------------------------------------------- */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_ident(char ch)
{
    return is_alpha(ch) || is_digit(ch) || ch == '_';
}

/* Characters of an unquoted value. */
static bool is_bare(char ch)
{
    return is_ident(ch) || (ch != '\0' && strchr(".:+-/@%", ch) != NULL);
}

static const char *const gen_names[] = {"random", "uptime", "now", "counter", "gauge"};

/* The number at `at` has decimals where an integer is needed. */
static int not_integer(struct pcur *c, size_t at)
{
    size_t e = c->i + 1;
    while (e < c->n && is_digit(c->s[e]))
        e++;
    return profile__err(c, at, "integer expected, not '%.*s'", (int)(e - at), c->s + at);
}

int profile__parse_num(struct pcur *c, bool milli, int64_t *v)
{
    size_t at = c->i;
    bool neg = false;
    if (c->i < c->n && (c->s[c->i] == '-' || c->s[c->i] == '+')) {
        neg = c->s[c->i] == '-';
        c->i++;
    }
    if (c->i >= c->n || !is_digit(c->s[c->i]))
        return profile__err(c, at, "number expected");
    uint64_t mag = 0;
    bool big = false;
    while (c->i < c->n && is_digit(c->s[c->i])) {
        unsigned d = (unsigned)(c->s[c->i++] - '0');
        if (mag > (UINT64_MAX - d) / 10)
            big = true;
        else
            mag = mag * 10 + d;
    }
    unsigned frac = 0, nfrac = 0;
    if (c->i + 1 < c->n && c->s[c->i] == '.' && is_digit(c->s[c->i + 1])) {
        if (!milli)
            return not_integer(c, at);
        c->i++;
        while (c->i < c->n && is_digit(c->s[c->i])) {
            if (nfrac == 3)
                return profile__err(c, at, "at most 3 decimals in a number");
            frac = frac * 10 + (unsigned)(c->s[c->i++] - '0');
            nfrac++;
        }
    }
    if (c->i < c->n && (is_ident(c->s[c->i]) || c->s[c->i] == '.') &&
        !(c->s[c->i] == '.' && c->i + 1 < c->n && c->s[c->i + 1] == '.'))
        return profile__err(c, at, "bad number");
    if (milli) {
        while (nfrac < 3) {
            frac *= 10;
            nfrac++;
        }
        if (mag > (UINT64_MAX - frac) / 1000)
            big = true;
        else
            mag = mag * 1000 + frac;
    }
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (big || mag > limit)
        return profile__err(c, at, "number out of range");
    if (neg)
        *v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else
        *v = (int64_t)mag;
    return 0;
}

/* Checks one UTF-8 sequence at s[0..n); returns its length or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    size_t len;
    uint32_t cp;
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf) {
        len = 2;
        cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        cp = b & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Reads one character of a quoted string at c->i into `out` (escapes
 * decoded, UTF-8 checked). Returns bytes written (0 at the closing quote),
 * or a negative error. */
static int string_char(struct pcur *c, size_t open, char *out)
{
    if (c->i >= c->n)
        return profile__err(c, open, "unterminated string");
    unsigned char ch = (unsigned char)c->s[c->i];
    if (ch == '"') {
        c->i++;
        return 0;
    }
    if (ch == '\\') {
        if (c->i + 1 >= c->n)
            return profile__err(c, open, "unterminated string");
        char e = c->s[c->i + 1];
        char d = e == 'n' ? '\n' : e == 't' ? '\t' : e == '"' ? '"' : e == '\\' ? '\\' : 0;
        if (!d) {
            if ((unsigned char)e < 0x20 || (unsigned char)e >= 0x7f)
                return profile__err(c, c->i, "unknown escape (use \\\" \\\\ \\n \\t)");
            return profile__err(c, c->i, "unknown escape '\\%c' (use \\\" \\\\ \\n \\t)", e);
        }
        c->i += 2;
        out[0] = d;
        return 1;
    }
    if (ch < 0x20 && ch != '\t')
        return profile__err(c, c->i, "control character 0x%02x in a string", ch);
    if (ch == 0x7f)
        return profile__err(c, c->i, "control character 0x7f in a string");
    size_t len = utf8_len((const unsigned char *)c->s + c->i, c->n - c->i);
    if (!len)
        return profile__err(c, c->i, "invalid UTF-8 in a string");
    memcpy(out, c->s + c->i, len);
    c->i += len;
    return (int)len;
}

int profile__parse_string(struct pcur *c, const char **out)
{
    size_t open = c->i;
    if (c->i >= c->n || c->s[c->i] != '"')
        return profile__err(c, c->i, "quoted string expected");
    c->i++;
    char *buf = malloc(c->n - c->i + 1);
    if (!buf)
        return profile__oom(c);
    size_t len = 0;
    int rc;
    while ((rc = string_char(c, open, buf + len)) > 0)
        len += (size_t)rc;
    if (rc == 0) {
        *out = profile__intern(c->p, buf, len);
        if (!*out)
            rc = profile__oom(c);
    }
    free(buf);
    return rc;
}

/* Template building state. */
struct tbuild {
    struct tpart parts[PROFILE_MAX_PARTS];
    struct tterm terms[PROFILE_MAX_PARTS][PROFILE_MAX_TERMS];
    unsigned nparts;
    char *lit; /* literal text being collected */
    size_t nlit;
};

static int flush_lit(struct pcur *c, struct tbuild *b, size_t at)
{
    if (!b->nlit)
        return 0;
    if (b->nparts == PROFILE_MAX_PARTS)
        return profile__err(c, at, "template too long (at most %d pieces)", PROFILE_MAX_PARTS);
    struct tpart *t = &b->parts[b->nparts++];
    memset(t, 0, sizeof *t);
    t->kind = TP_LIT;
    t->len = (uint32_t)b->nlit;
    t->u.text = profile__intern(c->p, b->lit, b->nlit);
    if (!t->u.text)
        return profile__oom(c);
    b->nlit = 0;
    return 0;
}

static int parse_uint(const char *s, size_t n, size_t *i, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    size_t k = *i;
    if (k >= n || !is_digit(s[k]))
        return -1;
    while (k < n && is_digit(s[k])) {
        x = x * 10 + (uint64_t)(s[k++] - '0');
        if (x > max)
            return -1;
    }
    *i = k;
    *v = x;
    return 0;
}

static const char placeholder_help[] =
    "expected n, i1..iN, eid, serial, mac, ip; write {{ for a brace";

/* Parses the placeholder at c->i ('{') into the next part. */
static int parse_placeholder(struct pcur *c, struct tbuild *b, unsigned levels, unsigned allow)
{
    size_t open = c->i;
    size_t close = c->i + 1;
    while (close < c->n && c->s[close] != '}' && c->s[close] != '"' && c->s[close] != '{')
        close++;
    if (close >= c->n || c->s[close] != '}')
        return profile__err(c, open, "unterminated placeholder (write {{ for a brace)");
    const char *s = c->s;
    size_t i = open + 1, n = close;
    int plen = (int)(close - open + 1);
    size_t name_end = i;
    while (name_end < n && is_ident(s[name_end]))
        name_end++;
    size_t nlen = name_end - i;
    if (b->nparts == PROFILE_MAX_PARTS)
        return profile__err(c, open, "template too long (at most %d pieces)", PROFILE_MAX_PARTS);
    struct tpart *t = &b->parts[b->nparts];
    struct tterm *terms = b->terms[b->nparts];
    memset(t, 0, sizeof *t);
    unsigned need = 0;
    bool arith = true, width_ok = false;
    if (nlen == 1 && s[i] == 'n') {
        t->kind = TP_NUM;
        t->from_agent = 1;
        need = TPL_N;
        width_ok = true;
    } else if (nlen >= 2 && s[i] == 'i' && is_digit(s[i + 1])) {
        size_t k = i + 1;
        uint64_t lv;
        if (parse_uint(s, name_end, &k, 255, &lv) < 0 || k != name_end || lv == 0)
            return profile__err(c, open, "unknown placeholder %.*s (%s)", plen, s + open,
                                placeholder_help);
        need = TPL_INST;
        if ((allow & TPL_INST) && lv > levels) {
            if (!levels)
                return profile__err(c, open,
                                    "placeholder {i%" PRIu64 "}: the path has no table "
                                    "level",
                                    lv);
            return profile__err(c, open,
                                "placeholder {i%" PRIu64 "}: the path has only %u table level%s",
                                lv, levels, levels == 1 ? "" : "s");
        }
        t->kind = TP_NUM;
        terms[0].level = (uint8_t)lv;
        terms[0].mult = 1;
        t->nterms = 1;
        width_ok = true;
        if (name_end < n && s[name_end] == '*') {
            size_t k2 = name_end + 1;
            uint64_t mult;
            if (parse_uint(s, n, &k2, 1000000, &mult) < 0)
                return profile__err(c, name_end,
                                    "bad multiplier in placeholder %.*s (at most "
                                    "1000000)",
                                    plen, s + open);
            terms[0].mult = (int32_t)mult;
            name_end = k2;
        }
    } else if (nlen == 3 && !memcmp(s + i, "eid", 3)) {
        t->kind = TP_EID;
        need = TPL_EID;
        arith = false;
    } else if (nlen == 6 && !memcmp(s + i, "serial", 6)) {
        t->kind = TP_SERIAL;
        need = TPL_SERIAL;
        arith = false;
    } else if (nlen == 3 && !memcmp(s + i, "mac", 3)) {
        t->kind = TP_MAC;
        need = TPL_MAC;
    } else if (nlen == 2 && !memcmp(s + i, "ip", 2)) {
        t->kind = TP_IP;
        need = TPL_IP;
    } else {
        return profile__err(c, open, "unknown placeholder %.*s (%s)", plen, s + open,
                            placeholder_help);
    }
    if (!(allow & need)) {
        if (allow == TPL_N)
            return profile__err(c, open, "placeholder %.*s is not allowed here (only {n})", plen,
                                s + open);
        return profile__err(c, open, "placeholder %.*s is not allowed here", plen, s + open);
    }
    i = name_end;
    while (i < n && (s[i] == '+' || s[i] == '-')) {
        size_t at = i;
        if (!arith)
            return profile__err(c, at, "{%.*s} takes no arithmetic", (int)nlen, s + open + 1);
        int64_t sign = s[i] == '-' ? -1 : 1;
        i++;
        if (i < n && s[i] == 'i') {
            size_t k = i + 1;
            uint64_t lv, mult = 1;
            if (parse_uint(s, n, &k, 255, &lv) < 0 || lv == 0)
                return profile__err(c, at, "bad term in placeholder %.*s", plen, s + open);
            if (lv > levels)
                return profile__err(c, i,
                                    "placeholder term i%" PRIu64 ": the path has %s%u "
                                    "table level%s",
                                    lv, levels ? "only " : "", levels, levels == 1 ? "" : "s");
            if (k < n && s[k] == '*') {
                k++;
                if (parse_uint(s, n, &k, 1000000, &mult) < 0)
                    return profile__err(c, at,
                                        "bad multiplier in placeholder %.*s (at most "
                                        "1000000)",
                                        plen, s + open);
            }
            if (t->nterms == PROFILE_MAX_TERMS)
                return profile__err(c, at, "too many terms in placeholder %.*s", plen, s + open);
            terms[t->nterms].level = (uint8_t)lv;
            terms[t->nterms].mult = (int32_t)(sign * (int64_t)mult);
            t->nterms++;
            i = k;
        } else {
            uint64_t v;
            if (parse_uint(s, n, &i, 1000000000000ull, &v) < 0)
                return profile__err(c, at,
                                    "bad term in placeholder %.*s (a number up to "
                                    "1000000000000 or iK[*M])",
                                    plen, s + open);
            t->add += sign * (int64_t)v;
        }
    }
    if (i < n && s[i] == ':') {
        size_t at = i;
        uint64_t w;
        i++;
        if (!width_ok || parse_uint(s, n, &i, 20, &w) < 0 || w == 0)
            return profile__err(c, at, "bad width in placeholder %.*s (%s)", plen, s + open,
                                width_ok ? "{n:06} pads to 6 digits, at most 20"
                                         : "only {n} and {iK} take a width");
        t->width = (uint8_t)w;
    }
    if (i != n)
        return profile__err(c, i, "unexpected '%c' in placeholder %.*s", s[i], plen, s + open);
    t->u.terms = NULL;
    b->nparts++;
    c->i = close + 1;
    return 0;
}

static int finish_text(struct pcur *c, struct tbuild *b, size_t start, struct usp_gen **out)
{
    struct usp_profile *p = c->p;
    struct usp_gen *g = profile__alloc(p, sizeof *g);
    struct tpart *parts = b->nparts ? profile__alloc(p, b->nparts * sizeof *parts) : NULL;
    if (!g || (b->nparts && !parts))
        return profile__oom(c);
    g->type = G_TEXT;
    g->prof = p;
    g->n = b->nparts;
    size_t clen = 0;
    for (unsigned k = 0; k < b->nparts; k++) {
        struct tpart *t = &parts[k];
        *t = b->parts[k];
        if (t->kind == TP_LIT) {
            clen += t->len;
            continue;
        }
        if (t->kind != TP_NUM || t->from_agent)
            g->flags |= USP_GEN_F_AGENT;
        if (t->nterms) {
            struct tterm *terms = profile__alloc(p, t->nterms * sizeof *terms);
            if (!terms)
                return profile__oom(c);
            memcpy(terms, b->terms[k], t->nterms * sizeof *terms);
            for (unsigned j = 0; j < t->nterms; j++)
                if (terms[j].level > g->levels)
                    g->levels = terms[j].level;
            g->flags |= USP_GEN_F_INST;
            t->u.terms = terms;
        }
    }
    g->u.parts = parts;
    if (!g->flags) {
        /* Literal pieces only: keep the whole value ready. */
        char *v = malloc(clen + 1);
        if (!v)
            return profile__oom(c);
        size_t at = 0;
        for (unsigned k = 0; k < b->nparts; k++) {
            memcpy(v + at, parts[k].u.text, parts[k].len);
            at += parts[k].len;
        }
        g->cval = profile__intern(p, v, at);
        free(v);
        if (!g->cval)
            return profile__oom(c);
    }
    g->src = profile__intern(p, c->s + start, c->i - start);
    if (!g->src)
        return profile__oom(c);
    *out = g;
    return 0;
}

int profile__parse_template(struct pcur *c, unsigned levels, unsigned allow, struct usp_gen **out)
{
    size_t open = c->i;
    if (c->i >= c->n || c->s[c->i] != '"')
        return profile__err(c, c->i, "quoted string expected");
    struct tbuild *b = calloc(1, sizeof *b);
    if (!b)
        return profile__oom(c);
    int rc = 0;
    b->lit = malloc(c->n - c->i + 1);
    if (!b->lit) {
        rc = profile__oom(c);
        goto out;
    }
    c->i++;
    for (;;) {
        if (c->i < c->n && c->s[c->i] == '{') {
            if (c->i + 1 < c->n && c->s[c->i + 1] == '{') {
                b->lit[b->nlit++] = '{';
                c->i += 2;
                continue;
            }
            if ((rc = flush_lit(c, b, c->i)) < 0 ||
                (rc = parse_placeholder(c, b, levels, allow)) < 0)
                goto out;
            continue;
        }
        if (c->i + 1 < c->n && c->s[c->i] == '}' && c->s[c->i + 1] == '}') {
            b->lit[b->nlit++] = '}';
            c->i += 2;
            continue;
        }
        rc = string_char(c, open, b->lit + b->nlit);
        if (rc < 0)
            goto out;
        if (rc == 0)
            break;
        b->nlit += (size_t)rc;
    }
    if ((rc = flush_lit(c, b, c->i)) < 0)
        goto out;
    rc = finish_text(c, b, open, out);
out:
    free(b->lit);
    free(b);
    return rc;
}

/* An unquoted value: one piece of literal text. */
static int parse_bare(struct pcur *c, struct usp_gen **out)
{
    size_t start = c->i;
    while (c->i < c->n && is_bare(c->s[c->i]))
        c->i++;
    if (c->i == start) {
        unsigned char ch = (unsigned char)(c->i < c->n ? c->s[c->i] : 0);
        if (!ch)
            return profile__err(c, start, "value expected");
        if (ch == '{')
            return profile__err(c, start,
                                "unexpected '{': templates must be quoted, e.g. "
                                "\"eth{i1}\"");
        if (ch < 0x20 || ch >= 0x7f)
            return profile__err(c, start, "unexpected byte 0x%02x (quote text values)", ch);
        return profile__err(c, start,
                            "unexpected '%c' (quote text with spaces or "
                            "punctuation)",
                            ch);
    }
    size_t len = c->i - start;
    for (size_t k = 0; k < sizeof gen_names / sizeof gen_names[0]; k++)
        if (strlen(gen_names[k]) == len && !memcmp(gen_names[k], c->s + start, len))
            return profile__err(c, start, "'%s' is a generator: write %s()", gen_names[k],
                                gen_names[k]);
    struct tbuild *b = calloc(1, sizeof *b);
    if (!b)
        return profile__oom(c);
    b->lit = (char *)c->s + start; /* read only by flush_lit */
    b->nlit = len;
    int rc = flush_lit(c, b, start);
    if (rc == 0)
        rc = finish_text(c, b, start, out);
    free(b);
    return rc;
}

/* Argument descriptions of counter() and gauge(). */
struct argspec {
    const char *name;
    bool milli; /* decimals allowed (stored in thousandths) */
    bool required;
    bool range_ok; /* A..B allowed */
    int64_t def;
    int64_t min; /* smallest value allowed */
    bool u64;    /* 0 to 2^64-1, kept as the bits of an int64 */
    bool bits;   /* 32 or 64 */
};

static const struct argspec counter_args[CTR_NARGS] = {
    [CTR_START] = {.name = "start", .range_ok = true, .u64 = true},
    [CTR_RATE] = {.name = "rate", .milli = true, .range_ok = true, .def = 1000},
    [CTR_BITS] = {.name = "bits", .def = 64, .bits = true},
};

static const struct argspec gauge_args[GAU_NARGS] = {
    [GAU_MEAN] =
        {.name = "mean", .milli = true, .required = true, .range_ok = true, .min = INT64_MIN},
    [GAU_AMPL] = {.name = "amplitude", .milli = true, .range_ok = true},
    [GAU_PERIOD] = {.name = "period", .milli = true, .range_ok = true, .def = 3600000, .min = 1},
    [GAU_NOISE] = {.name = "noise", .milli = true, .range_ok = true},
};

static void arg_names(const struct argspec *spec, unsigned n, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (unsigned k = 0; k < n && at < len; k++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", k ? ", " : "", spec[k].name);
}

/* An integer 0 to 2^64-1 at c->i, returned as the bits of an int64. */
static int parse_u64(struct pcur *c, int64_t *v)
{
    size_t at = c->i;
    uint64_t x = 0;
    if (c->i >= c->n || !is_digit(c->s[c->i]))
        return profile__err(c, at, "number expected (0 or more)");
    while (c->i < c->n && is_digit(c->s[c->i])) {
        unsigned d = (unsigned)(c->s[c->i++] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return profile__err(c, at, "number out of range (at most 18446744073709551615)");
        x = x * 10 + d;
    }
    if (c->i < c->n && (is_ident(c->s[c->i]) || c->s[c->i] == '.') &&
        !(c->s[c->i] == '.' && c->i + 1 < c->n && c->s[c->i + 1] == '.'))
        return c->s[c->i] == '.' && c->i + 1 < c->n && is_digit(c->s[c->i + 1])
                   ? not_integer(c, at)
                   : profile__err(c, at, "bad number");
    *v = (int64_t)x;
    return 0;
}

/* A number or range A..B at c->i. */
static int parse_range(struct pcur *c, bool milli, bool u64, struct numarg *a, bool *is_range)
{
    size_t at = c->i;
    int rc = u64 ? parse_u64(c, &a->lo) : profile__parse_num(c, milli, &a->lo);
    if (rc < 0)
        return rc;
    a->hi = a->lo;
    *is_range = false;
    if (c->i + 1 < c->n && c->s[c->i] == '.' && c->s[c->i + 1] == '.') {
        c->i += 2;
        if ((rc = u64 ? parse_u64(c, &a->hi) : profile__parse_num(c, milli, &a->hi)) < 0)
            return rc;
        *is_range = true;
        if (u64 ? (uint64_t)a->lo > (uint64_t)a->hi : a->lo > a->hi)
            return profile__err(c, at,
                                "bad range %.*s: the first bound is greater than the "
                                "second",
                                (int)(c->i - at), c->s + at);
    }
    return 0;
}

static int parse_named_args(struct pcur *c, const char *fn, const struct argspec *spec,
                            unsigned nspec, struct numarg *args)
{
    bool seen[8] = {false};
    bool named = false;
    unsigned pos = 0;
    char names[96];
    arg_names(spec, nspec, names, sizeof names);
    profile__skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ')') {
        c->i++;
        goto defaults;
    }
    for (;;) {
        profile__skip_ws(c);
        size_t at = c->i;
        size_t e = c->i;
        while (e < c->n && is_ident(c->s[e]))
            e++;
        size_t after = e;
        while (after < c->n && (c->s[after] == ' ' || c->s[after] == '\t'))
            after++;
        unsigned k;
        if (e > at && is_alpha(c->s[at]) && after < c->n && c->s[after] == '=') {
            for (k = 0; k < nspec; k++)
                if (strlen(spec[k].name) == e - at && !memcmp(spec[k].name, c->s + at, e - at))
                    break;
            if (k == nspec)
                return profile__err(c, at, "%s(): unknown argument '%.*s' (expected %s)", fn,
                                    (int)(e - at), c->s + at, names);
            named = true;
            c->i = after + 1;
            profile__skip_ws(c);
        } else {
            if (named)
                return profile__err(c, at, "%s(): a positional argument after a named one", fn);
            if (pos >= nspec)
                return profile__err(c, at, "%s(): too many arguments (expected %s)", fn, names);
            k = pos++;
        }
        if (seen[k])
            return profile__err(c, at, "%s(): argument '%s' given twice", fn, spec[k].name);
        seen[k] = true;
        size_t vat = c->i;
        bool is_range;
        int rc = parse_range(c, spec[k].milli, spec[k].u64, &args[k], &is_range);
        if (rc < 0)
            return rc;
        if (is_range && !spec[k].range_ok)
            return profile__err(c, vat, "%s(): '%s' cannot be a range", fn, spec[k].name);
        if (spec[k].bits && args[k].lo != 32 && args[k].lo != 64)
            return profile__err(c, vat, "%s(): '%s' must be 32 or 64", fn, spec[k].name);
        if (!spec[k].u64 && args[k].lo < spec[k].min)
            return profile__err(c, vat, "%s(): '%s' must be %s", fn, spec[k].name,
                                spec[k].min > 0 ? "positive" : "0 or more");
        profile__skip_ws(c);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->i < c->n && c->s[c->i] == ')') {
            c->i++;
            break;
        }
        return profile__err(c, c->i, "%s(): ',' or ')' expected", fn);
    }
defaults:
    for (unsigned k = 0; k < nspec; k++) {
        if (seen[k])
            continue;
        if (spec[k].required)
            return profile__err(c, c->i ? c->i - 1 : 0, "%s(): missing argument '%s'", fn,
                                spec[k].name);
        args[k].lo = args[k].hi = spec[k].def;
    }
    return 0;
}

/* random(A..B) or random(item, item, ...) with items quoted templates or
 * unquoted words and numbers. */
static int parse_random(struct pcur *c, unsigned levels, struct usp_gen *g)
{
    struct usp_gen *items = NULL;
    struct usp_gen *tmp[PROFILE_MAX_ITEMS];
    unsigned n = 0;
    profile__skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ')')
        return profile__err(c, c->i, "random(): needs a range A..B or at least one value");
    for (;;) {
        profile__skip_ws(c);
        size_t at = c->i;
        if (c->i < c->n && c->s[c->i] != '"') {
            /* A range is recognised before the item is read as a word. */
            size_t e = c->i;
            while (e < c->n && is_bare(c->s[e]))
                e++;
            const char *dots = memmem(c->s + at, e - at, "..", 2);
            if (dots) {
                if (n)
                    return profile__err(c, at,
                                        "random(): a range A..B must be the only "
                                        "argument");
                struct numarg *a = profile__alloc(c->p, sizeof *a);
                if (!a)
                    return profile__oom(c);
                bool is_range;
                int rc = parse_range(c, false, false, a, &is_range);
                if (rc < 0)
                    return rc;
                profile__skip_ws(c);
                if (c->i >= c->n || c->s[c->i] != ')')
                    return profile__err(c, c->i < c->n ? c->i : at,
                                        "random(): a range A..B must be the only argument");
                c->i++;
                g->type = G_RANDOM_INT;
                g->n = 1;
                g->u.args = a;
                return 0;
            }
        }
        if (n == PROFILE_MAX_ITEMS)
            return profile__err(c, at, "random(): at most %d values", PROFILE_MAX_ITEMS);
        int rc = c->i < c->n && c->s[c->i] == '"'
                     ? profile__parse_template(c, levels, TPL_ALL, &tmp[n])
                     : parse_bare(c, &tmp[n]);
        if (rc < 0)
            return rc;
        n++;
        profile__skip_ws(c);
        if (c->i < c->n && c->s[c->i] == ',') {
            c->i++;
            continue;
        }
        if (c->i < c->n && c->s[c->i] == ')') {
            c->i++;
            break;
        }
        return profile__err(c, c->i, "random(): ',' or ')' expected");
    }
    items = profile__alloc(c->p, n * sizeof *items);
    if (!items)
        return profile__oom(c);
    for (unsigned k = 0; k < n; k++) {
        items[k] = *tmp[k];
        if (items[k].levels > g->levels)
            g->levels = items[k].levels;
    }
    g->type = G_RANDOM_LIST;
    g->n = n;
    g->u.items = items;
    return 0;
}

static int parse_call(struct pcur *c, unsigned levels, size_t start, size_t name_end,
                      struct usp_gen **out)
{
    const char *name = c->s + start;
    size_t nlen = name_end - start;
    unsigned which;
    for (which = 0; which < sizeof gen_names / sizeof gen_names[0]; which++)
        if (strlen(gen_names[which]) == nlen && !memcmp(gen_names[which], name, nlen))
            break;
    if (which == sizeof gen_names / sizeof gen_names[0])
        return profile__err(c, start,
                            "unknown generator '%.*s()' (expected random, uptime, "
                            "now, counter, gauge)",
                            (int)nlen, name);
    struct usp_gen *g = profile__alloc(c->p, sizeof *g);
    if (!g)
        return profile__oom(c);
    g->prof = c->p;
    int rc = 0;
    switch (which) {
    case 0:
        rc = parse_random(c, levels, g);
        g->flags = USP_GEN_F_AGENT | USP_GEN_F_INST;
        break;
    case 1:
    case 2:
        profile__skip_ws(c);
        if (c->i >= c->n || c->s[c->i] != ')')
            return profile__err(c, c->i, "%s() takes no arguments", gen_names[which]);
        c->i++;
        g->type = which == 1 ? G_UPTIME : G_NOW;
        g->flags = USP_GEN_F_AGENT | USP_GEN_F_DYNAMIC;
        break;
    case 3:
    case 4: {
        bool ctr = which == 3;
        unsigned nargs = ctr ? CTR_NARGS : GAU_NARGS;
        struct numarg *args = profile__alloc(c->p, nargs * sizeof *args);
        if (!args)
            return profile__oom(c);
        rc = parse_named_args(c, gen_names[which], ctr ? counter_args : gauge_args, nargs, args);
        g->type = ctr ? G_COUNTER : G_GAUGE;
        g->n = nargs;
        g->u.args = args;
        g->flags = USP_GEN_F_AGENT | USP_GEN_F_INST | USP_GEN_F_DYNAMIC;
        break;
    }
    }
    if (rc < 0)
        return rc;
    g->src = profile__intern(c->p, c->s + start, c->i - start);
    if (!g->src)
        return profile__oom(c);
    *out = g;
    return 0;
}

int profile__parse_expr(struct pcur *c, unsigned levels, struct usp_gen **out)
{
    profile__skip_ws(c);
    size_t start = c->i;
    if (c->i >= c->n || c->s[c->i] == '#')
        return profile__err(c, c->i, "value expected");
    if (c->s[c->i] == '"')
        return profile__parse_template(c, levels, TPL_ALL, out);
    if (is_alpha(c->s[c->i])) {
        size_t e = c->i;
        while (e < c->n && is_ident(c->s[e]))
            e++;
        size_t k = e;
        while (k < c->n && (c->s[k] == ' ' || c->s[k] == '\t'))
            k++;
        if (k < c->n && c->s[k] == '(') {
            c->i = k + 1;
            return parse_call(c, levels, start, e, out);
        }
    }
    return parse_bare(c, out);
}

/* --- Evaluation ------------------------------------------------------------ */

struct obuf {
    char *buf;
    size_t len, at;
    bool trunc;
};

static void put(struct obuf *o, const char *s, size_t n)
{
    size_t room = o->len - 1 - o->at;
    if (n > room) {
        n = room;
        o->trunc = true;
    }
    memcpy(o->buf + o->at, s, n);
    o->at += n;
    o->buf[o->at] = '\0';
}

static void putf(struct obuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct obuf *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static int64_t part_num(const struct tpart *t, uint64_t base, const unsigned *inst)
{
    /* Unsigned arithmetic wraps instead of overflowing. */
    uint64_t v = base + (uint64_t)t->add;
    for (unsigned k = 0; k < t->nterms; k++)
        v += (uint64_t)(int64_t)t->u.terms[k].mult * inst[t->u.terms[k].level - 1];
    return (int64_t)v;
}

static void eval_text(const struct usp_gen *g, const struct usp_gen_ctx *ctx, const unsigned *inst,
                      struct obuf *o)
{
    if (g->cval) {
        put(o, g->cval, strlen(g->cval));
        return;
    }
    for (unsigned k = 0; k < g->n; k++) {
        const struct tpart *t = &g->u.parts[k];
        switch (t->kind) {
        case TP_LIT:
            put(o, t->u.text, t->len);
            break;
        case TP_NUM:
            putf(o, "%0*" PRId64, t->width, part_num(t, t->from_agent ? ctx->agent : 0, inst));
            break;
        case TP_EID:
            if (ctx->eid)
                put(o, ctx->eid, strlen(ctx->eid));
            break;
        case TP_SERIAL:
            if (g->prof && g->prof->serial && g->prof->serial != g)
                eval_text(g->prof->serial, ctx, inst, o);
            else
                putf(o, "SIM%06" PRIu64, ctx->agent);
            break;
        case TP_MAC: {
            /* Each agent owns 02:AA:AA:AA:AA:00-FF (AA = its index): locally
             * administered, unicast. */
            uint64_t off = (uint64_t)part_num(t, 0, inst) & 0xff;
            uint64_t m = 0x02ull << 40 | (ctx->agent & 0xffffffffull) << 8 | off;
            putf(o, "%02X:%02X:%02X:%02X:%02X:%02X", (unsigned)(m >> 40 & 0xff),
                 (unsigned)(m >> 32 & 0xff), (unsigned)(m >> 24 & 0xff), (unsigned)(m >> 16 & 0xff),
                 (unsigned)(m >> 8 & 0xff), (unsigned)(m & 0xff));
            break;
        }
        case TP_IP: {
            uint64_t a = ((uint64_t)part_num(t, ctx->agent, inst) + 1) & 0xffffff;
            putf(o, "10.%u.%u.%u", (unsigned)(a >> 16), (unsigned)(a >> 8 & 0xff),
                 (unsigned)(a & 0xff));
            break;
        }
        }
    }
}

static int64_t arg_value(const struct usp_gen *g, unsigned k, const struct usp_gen_ctx *ctx,
                         const unsigned *inst, unsigned ninst)
{
    /* Unsigned ranges work too: profile__pick only subtracts and adds. */
    const struct numarg *a = &g->u.args[k];
    if (a->lo == a->hi)
        return a->lo;
    return profile__pick(profile__draw(g->key, ctx->agent, inst, ninst, SALT_ARG + k), a->lo,
                         a->hi);
}

/* Microseconds since boot, never negative. */
static uint64_t elapsed_us(const struct usp_gen_ctx *ctx)
{
    u128 now = 0, boot = 0;
    if (ctx->now_sec >= 0)
        now = (u128)ctx->now_sec * 1000000u + ctx->now_usec;
    if (ctx->boot_sec >= 0)
        boot = (u128)ctx->boot_sec * 1000000u + ctx->boot_usec;
    if (now <= boot)
        return 0;
    u128 d = now - boot;
    return d > UINT64_MAX ? UINT64_MAX : (uint64_t)d;
}

/* TR-106 dateTime in UTC; "0001-01-01T00:00:00Z" (the Unknown Time) outside
 * years 1-9999. Days to civil date after Howard Hinnant's algorithm. */
static void put_datetime(struct obuf *o, int64_t t)
{
    const int64_t min = -62135596800LL, max = 253402300799LL;
    if (t < min || t > max) {
        put(o, "0001-01-01T00:00:00Z", 20);
        return;
    }
    int64_t days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    putf(o, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, (int)m, (int)d, (int)(secs / 3600),
         (int)(secs / 60 % 60), (int)(secs % 60));
}

static void eval_counter(const struct usp_gen *g, const struct usp_gen_ctx *ctx,
                         const unsigned *inst, unsigned ninst, struct obuf *o)
{
    uint64_t start = (uint64_t)arg_value(g, CTR_START, ctx, inst, ninst);
    uint64_t rate = (uint64_t)arg_value(g, CTR_RATE, ctx, inst, ninst); /* thousandths */
    /* Exact: floor(rate * t) never goes down as the clock moves on. */
    u128 grown = (u128)rate * elapsed_us(ctx) / 1000000000u;
    uint64_t v = start + (uint64_t)grown;
    if (g->u.args[CTR_BITS].lo == 32)
        v &= 0xffffffffu;
    putf(o, "%" PRIu64, v);
}

static void eval_gauge(const struct usp_gen *g, const struct usp_gen_ctx *ctx, const unsigned *inst,
                       unsigned ninst, struct obuf *o)
{
    double mean = (double)arg_value(g, GAU_MEAN, ctx, inst, ninst) / 1000.0;
    double ampl = (double)arg_value(g, GAU_AMPL, ctx, inst, ninst) / 1000.0;
    double period = (double)arg_value(g, GAU_PERIOD, ctx, inst, ninst) / 1000.0;
    double noise = (double)arg_value(g, GAU_NOISE, ctx, inst, ninst) / 1000.0;
    uint64_t ph = profile__draw(g->key, ctx->agent, inst, ninst, SALT_PHASE);
    double phase = (double)(ph >> 11) * 0x1p-53;
    /* Whole periods are dropped in integers so large clocks keep precision. */
    uint64_t pms = (uint64_t)arg_value(g, GAU_PERIOD, ctx, inst, ninst);
    int64_t sec = ctx->now_sec;
    u128 tms = sec > 0 ? (u128)sec * 1000u + ctx->now_usec / 1000u : 0;
    double within = (double)(uint64_t)(tms % pms) / 1000.0;
    double x = fmod(within / period + phase, 1.0);
    double v = mean + ampl * sin(2.0 * M_PI * x);
    if (noise > 0) {
        uint64_t u = profile__draw(g->key, ctx->agent, inst, ninst, SALT_NOISE ^ (uint64_t)sec);
        v += noise * ((double)(u >> 11) * 0x1p-52 - 1.0);
    }
    if (!(v > -9.2e18 && v < 9.2e18))
        v = 0;
    putf(o, "%lld", llround(v));
}

int usp_gen_eval(const struct usp_gen *g, const struct usp_gen_ctx *ctx, const unsigned *inst,
                 unsigned ninst, char *buf, size_t len)
{
    if (!buf || !len)
        return USP_EINVAL;
    buf[0] = '\0';
    if (ninst < g->levels || (ninst && !inst))
        return USP_EINVAL;
    struct obuf o = {buf, len, 0, false};
    switch (g->type) {
    case G_TEXT:
        eval_text(g, ctx, inst, &o);
        break;
    case G_RANDOM_INT: {
        uint64_t x = profile__draw(g->key, ctx->agent, inst, ninst, SALT_PICK);
        putf(&o, "%" PRId64, profile__pick(x, g->u.args[0].lo, g->u.args[0].hi));
        break;
    }
    case G_RANDOM_LIST: {
        uint64_t x = profile__draw(g->key, ctx->agent, inst, ninst, SALT_PICK);
        eval_text(&g->u.items[x % g->n], ctx, inst, &o);
        break;
    }
    case G_UPTIME:
        putf(&o, "%" PRIu64, elapsed_us(ctx) / 1000000u);
        break;
    case G_NOW:
        put_datetime(&o, ctx->now_sec);
        break;
    case G_COUNTER:
        eval_counter(g, ctx, inst, ninst, &o);
        break;
    case G_GAUGE:
        eval_gauge(g, ctx, inst, ninst, &o);
        break;
    }
    return o.trunc ? USP_ERANGE : 0;
}

/* --- Which line applies ------------------------------------------------------ */

static const struct usp_profile_entry *slot_match(const struct usp_profile_slot *s,
                                                  const unsigned *inst, unsigned ninst)
{
    if (!s)
        return NULL;
    for (uint32_t k = 0; k < s->n; k++) {
        const struct usp_profile_entry *e = s->e[k];
        bool ok = true;
        for (unsigned l = 0; ok && l < e->nlevels; l++)
            if (e->inst[l] && (l >= ninst || !inst || inst[l] != e->inst[l]))
                ok = false;
        if (ok)
            return e;
    }
    return NULL;
}

const struct usp_profile_slot *usp_profile_slot(const struct usp_profile *p, const char *spath)
{
    return profile__slot_find(p, &p->vmap, p->vslots, spath, strlen(spath));
}

const struct usp_profile_value *usp_profile_slot_value(const struct usp_profile_slot *s,
                                                       const unsigned *inst, unsigned ninst)
{
    /* The entry is the first member of the value. */
    return (const struct usp_profile_value *)slot_match(s, inst, ninst);
}

const struct usp_profile_value *usp_profile_find_value(const struct usp_profile *p,
                                                       const char *spath, const unsigned *inst,
                                                       unsigned ninst)
{
    return usp_profile_slot_value(usp_profile_slot(p, spath), inst, ninst);
}

const struct usp_profile_cmd *usp_profile_find_cmd(const struct usp_profile *p, const char *spath,
                                                   const unsigned *inst, unsigned ninst)
{
    const struct usp_profile_slot *s =
        profile__slot_find(p, &p->cmap, p->cslots, spath, strlen(spath));
    return (const struct usp_profile_cmd *)slot_match(s, inst, ninst);
}

const struct usp_profile_inst *usp_profile_find_inst(const struct usp_profile *p, const char *table,
                                                     const unsigned *parent_inst, unsigned nparent)
{
    size_t n = strlen(table);
    const struct usp_profile_slot *s;
    if (n >= 4 && !strcmp(table + n - 4, "{i}.")) {
        s = profile__slot_find(p, &p->imap, p->islots, table, n);
    } else {
        if (n == 0 || table[n - 1] != '.' || n > USP_PROFILE_MAX_PATH)
            return NULL;
        char buf[USP_PROFILE_MAX_PATH + 5];
        memcpy(buf, table, n);
        memcpy(buf + n, "{i}.", 5);
        s = profile__slot_find(p, &p->imap, p->islots, buf, n + 4);
    }
    return (const struct usp_profile_inst *)slot_match(s, parent_inst, nparent);
}

unsigned usp_profile_inst_count(const struct usp_profile_inst *d, uint64_t agent,
                                const unsigned *parent_inst, unsigned nparent)
{
    if (d->min == d->max)
        return d->min;
    uint64_t x = profile__draw(d->key, agent, parent_inst, parent_inst ? nparent : 0, SALT_COUNT);
    return (unsigned)profile__pick(x, d->min, d->max);
}

unsigned usp_profile_instances(const struct usp_profile *p, const char *table, uint64_t agent,
                               const unsigned *parent_inst, unsigned nparent)
{
    const struct usp_profile_inst *d = usp_profile_find_inst(p, table, parent_inst, nparent);
    return d ? usp_profile_inst_count(d, agent, parent_inst, nparent) : 0;
}

int usp_profile_get(const struct usp_profile *p, const char *path, const struct usp_gen_ctx *ctx,
                    char *buf, size_t len)
{
    char spath[USP_PROFILE_MAX_PATH + 8];
    unsigned inst[USP_PROFILE_MAX_LEVELS], ninst;
    if (buf && len)
        buf[0] = '\0';
    int rc = usp_profile_split_path(path, spath, sizeof spath, inst, &ninst);
    if (rc < 0)
        return USP_EINVAL;
    for (unsigned k = 0; k < ninst; k++)
        if (!inst[k])
            return USP_EINVAL; /* a concrete path has numbers, not {i} */
    const struct usp_profile_value *v = usp_profile_find_value(p, spath, inst, ninst);
    if (!v)
        return USP_ENOENT;
    return usp_gen_eval(v->gen, ctx, inst, ninst, buf, len);
}

int usp_profile_serial(const struct usp_profile *p, uint64_t agent, char *buf, size_t len)
{
    struct usp_gen_ctx ctx = {.agent = agent};
    return usp_gen_eval(p->serial, &ctx, NULL, 0, buf, len);
}
