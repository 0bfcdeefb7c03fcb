/* Internals shared by profile.c (file format, lookups) and profile_gen.c
 * (value expressions and their evaluation). */
#ifndef USP_PROFILE_INT_H
#define USP_PROFILE_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/profile.h"

/* Placeholders a template may use (masks for profile__parse_template). */
enum {
    TPL_N = 1u << 0,
    TPL_INST = 1u << 1,
    TPL_EID = 1u << 2,
    TPL_SERIAL = 1u << 3,
    TPL_MAC = 1u << 4,
    TPL_IP = 1u << 5,
    TPL_ALL = 0x3f,
};

/* Longest template, list or generator call accepted in one value. */
#define PROFILE_MAX_PARTS 256
#define PROFILE_MAX_ITEMS 256
#define PROFILE_MAX_TERMS 4

enum tpart_kind { TP_LIT, TP_NUM, TP_EID, TP_SERIAL, TP_MAC, TP_IP };

/* `mult` times the instance number of table level `level` (1-based). */
struct tterm {
    uint8_t level;
    int32_t mult;
};

/* One piece of a template. Numbers ({n}, {iK}, {mac}, {ip}) are
 * base + add + sum of terms, where base is the agent index for {n}, {mac}
 * and {ip} and 0 for {iK}. */
struct tpart {
    uint8_t kind;
    uint8_t width;      /* TP_NUM: zero-padded width, 0 for none */
    uint8_t from_agent; /* TP_NUM: base is the agent index */
    uint8_t nterms;
    uint32_t len; /* TP_LIT */
    int64_t add;
    union {
        const char *text;          /* TP_LIT */
        const struct tterm *terms; /* numbers */
    } u;
};

enum gen_type { G_TEXT, G_RANDOM_INT, G_RANDOM_LIST, G_UPTIME, G_NOW, G_COUNTER, G_GAUGE };

/* A number argument: [lo, hi] drawn per agent (lo == hi for a plain
 * number). Arguments that allow decimals are in thousandths. */
struct numarg {
    int64_t lo, hi;
};

enum { CTR_START, CTR_RATE, CTR_BITS, CTR_NARGS };
enum { GAU_MEAN, GAU_AMPL, GAU_PERIOD, GAU_NOISE, GAU_NARGS };

struct usp_gen {
    uint8_t type;   /* enum gen_type */
    uint8_t flags;  /* USP_GEN_F_* */
    uint8_t levels; /* instance numbers read by templates */
    uint8_t pad;
    uint32_t n; /* parts, items or args */
    uint64_t key;
    const struct usp_profile *prof; /* for {serial} */
    const char *src;
    const char *cval;
    union {
        const struct tpart *parts;   /* G_TEXT */
        const struct usp_gen *items; /* G_RANDOM_LIST: n G_TEXT generators */
        const struct numarg *args;   /* G_RANDOM_INT (1), G_COUNTER, G_GAUGE */
    } u;
};

/* Parse-time memory: a chunked bump allocator (the profile is freed as a
 * whole) and the string intern set. */
struct pchunk;

struct pintern {
    const char **slot;
    size_t cap, n;
};

/* Interned string (or any pointer) -> index. */
struct pmap {
    const void **key;
    uint32_t *val;
    size_t cap, n;
};

/* The lines of one supported path, most specific first. */
struct usp_profile_slot {
    const char *spath;
    uint32_t n;
    const struct usp_profile_entry **e;
};

struct usp_profile {
    const char *file;
    const char *name;
    const char *description;
    uint64_t seed;
    const struct usp_gen *serial;

    struct usp_profile_value *values;
    size_t nvalues, capvalues;
    struct usp_profile_inst *insts;
    size_t ninsts, capinsts;
    struct usp_profile_cmd *cmds;
    size_t ncmds, capcmds;

    struct usp_profile_slot *vslots, *islots, *cslots;
    size_t nvslots, nislots, ncslots;
    struct pmap vmap, imap, cmap; /* spath -> slot */

    struct pchunk *chunks;
    size_t mem;
    struct pintern strs;
};

/* A position in one line being parsed. */
struct pcur {
    const char *s; /* the line, without its end of line */
    size_t n;
    size_t i;
    unsigned line;
    const char *file;
    struct usp_profile *p;
    struct usp_profile_err *err;
};

/* Memory (NULL when out of memory; zeroed). */
void *profile__alloc(struct usp_profile *p, size_t n);
const char *profile__intern(struct usp_profile *p, const char *s, size_t n);
/* The interned copy of `s`, or NULL when the profile never saw it. */
const char *profile__intern_find(const struct usp_profile *p, const char *s, size_t n);

/* The slot of `spath` (its first `len` bytes) in one of the profile's
 * tables, or NULL. */
const struct usp_profile_slot *profile__slot_find(const struct usp_profile *p,
                                                  const struct pmap *map,
                                                  const struct usp_profile_slot *slots,
                                                  const char *spath, size_t len);

/* Fills c->err for column `at` (0-based offset in the line) and returns
 * USP_EINVAL. */
int profile__err(struct pcur *c, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int profile__oom(struct pcur *c);

static inline void profile__skip_ws(struct pcur *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
        c->i++;
}

/* Expressions (profile_gen.c). `levels` is the number of table levels of the
 * path the value belongs to ({i1}..{iN} allowed). */
int profile__parse_expr(struct pcur *c, unsigned levels, struct usp_gen **out);
/* A quoted template at c->i using only the placeholders in `allow`. */
int profile__parse_template(struct pcur *c, unsigned levels, unsigned allow, struct usp_gen **out);
/* A quoted string at c->i, escapes decoded, braces literal, interned. */
int profile__parse_string(struct pcur *c, const char **out);
/* A number at c->i: an integer, or with `milli` up to three decimals
 * returned in thousandths. */
int profile__parse_num(struct pcur *c, bool milli, int64_t *v);
/* Sets the seed key of `g` (and its list items). */
void profile__gen_key(struct usp_gen *g, uint64_t key);

/* Hashing and seeded draws, shared so every draw mixes the same way. */
uint64_t profile__hash(uint64_t h, const char *s);
uint64_t profile__mix(uint64_t x);
uint64_t profile__draw(uint64_t key, uint64_t agent, const unsigned *inst, unsigned ninst,
                       uint64_t salt);
/* A uniform draw in [lo, hi] from `x`. */
int64_t profile__pick(uint64_t x, int64_t lo, int64_t hi);

#endif
