/* Device profiles: the file format (see datamodels/profiles/FORMAT.md),
 * includes, overrides, the checks made once everything is read, and the
 * lookups the instance store uses. Value expressions are in profile_gen.c.
 *
 * Everything a parsed profile holds lives in one bump allocator and one
 * string intern set, so the profile is a single immutable block shared by
 * every agent and thread, freed as a whole. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "profile_int.h"

#define MAX_INCLUDE_DEPTH 16
#define MAX_FILE_SIZE     (16u << 20)
#define MAX_OUTS          64
#define MAX_DELAY_MS      86400000u
#define DEFAULT_SERIAL    "\"SIM{n:06}\""
#define SALT_TABLE        0x7461626c65ull /* keys of "instances" lines */

/* --- Memory ---------------------------------------------------------------- */

struct pchunk {
    struct pchunk *next;
    size_t cap, used;
    max_align_t data[];
};

static void *pool_get(struct usp_profile *p, size_t n, size_t align)
{
    struct pchunk *ch = p->chunks;
    size_t at = ch ? (ch->used + align - 1) & ~(align - 1) : 0;
    if (!ch || at + n > ch->cap) {
        size_t cap = n > 16384 ? n : 16384;
        ch = malloc(sizeof *ch + cap);
        if (!ch)
            return NULL;
        ch->next = p->chunks;
        ch->cap = cap;
        ch->used = 0;
        p->chunks = ch;
        p->mem += sizeof *ch + cap;
        at = 0;
    }
    ch->used = at + n;
    void *m = (unsigned char *)ch->data + at;
    memset(m, 0, n);
    return m;
}

void *profile__alloc(struct usp_profile *p, size_t n)
{
    return pool_get(p, n ? n : 1, sizeof(uint64_t));
}

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < n; k++) {
        h ^= (unsigned char)s[k];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool str_eq(const char *interned, const char *s, size_t n)
{
    return strncmp(interned, s, n) == 0 && interned[n] == '\0';
}

const char *profile__intern_find(const struct usp_profile *p, const char *s, size_t n)
{
    const struct pintern *t = &p->strs;
    if (!t->cap)
        return NULL;
    for (size_t i = str_hash(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slot[i])
            return NULL;
        if (str_eq(t->slot[i], s, n))
            return t->slot[i];
    }
}

const char *profile__intern(struct usp_profile *p, const char *s, size_t n)
{
    const char *found = profile__intern_find(p, s, n);
    if (found)
        return found;
    struct pintern *t = &p->strs;
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        const char **slot = calloc(cap, sizeof *slot);
        if (!slot)
            return NULL;
        for (size_t k = 0; k < t->cap; k++) {
            if (!t->slot[k])
                continue;
            size_t i = str_hash(t->slot[k], strlen(t->slot[k])) & (cap - 1);
            while (slot[i])
                i = (i + 1) & (cap - 1);
            slot[i] = t->slot[k];
        }
        free(t->slot);
        p->mem += (cap - t->cap) * sizeof *slot;
        t->slot = slot;
        t->cap = cap;
    }
    char *copy = pool_get(p, n + 1, 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    size_t i = str_hash(s, n) & (t->cap - 1);
    while (t->slot[i])
        i = (i + 1) & (t->cap - 1);
    t->slot[i] = copy;
    t->n++;
    return copy;
}

static size_t ptr_hash(const void *k)
{
    return (size_t)profile__mix((uint64_t)(uintptr_t)k);
}

static bool map_get(const struct pmap *m, const void *key, uint32_t *val)
{
    if (!m->cap)
        return false;
    for (size_t i = ptr_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->key[i])
            return false;
        if (m->key[i] == key) {
            *val = m->val[i];
            return true;
        }
    }
}

static int map_put(struct pmap *m, const void *key, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        const void **keys = calloc(cap, sizeof *keys);
        uint32_t *vals = calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return USP_ENOMEM;
        }
        for (size_t k = 0; k < m->cap; k++) {
            if (!m->key[k])
                continue;
            size_t i = ptr_hash(m->key[k]) & (cap - 1);
            while (keys[i])
                i = (i + 1) & (cap - 1);
            keys[i] = m->key[k];
            vals[i] = m->val[k];
        }
        free(m->key);
        free(m->val);
        m->key = keys;
        m->val = vals;
        m->cap = cap;
    }
    size_t i = ptr_hash(key) & (m->cap - 1);
    while (m->key[i] && m->key[i] != key)
        i = (i + 1) & (m->cap - 1);
    if (!m->key[i])
        m->n++;
    m->key[i] = key;
    m->val[i] = val;
    return 0;
}

static void map_free(struct pmap *m)
{
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static size_t map_mem(const struct pmap *m)
{
    return m->cap * (sizeof *m->key + sizeof *m->val);
}

/* --- Errors ---------------------------------------------------------------- */

static int verr(struct usp_profile_err *err, const char *file, unsigned line, unsigned col,
                const char *fmt, va_list ap)
{
    if (!err)
        return USP_EINVAL;
    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    err->line = line;
    err->col = col;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    int fl = (int)strnlen(err->file, sizeof err->file);
    int ml = (int)strnlen(err->msg, sizeof err->msg);
    if (line && col)
        snprintf(err->text, sizeof err->text, "%.*s:%u:%u: %.*s", fl, err->file, line, col, ml,
                 err->msg);
    else if (line)
        snprintf(err->text, sizeof err->text, "%.*s:%u: %.*s", fl, err->file, line, ml, err->msg);
    else
        snprintf(err->text, sizeof err->text, "%.*s: %.*s", fl, err->file, ml, err->msg);
    return USP_EINVAL;
}

static int ferr(struct usp_profile_err *err, const char *file, unsigned line, unsigned col,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int oom(struct usp_profile_err *err, const char *file)
{
    ferr(err, file, 0, 0, "out of memory");
    return USP_ENOMEM;
}

static int ferr(struct usp_profile_err *err, const char *file, unsigned line, unsigned col,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verr(err, file, line, col, fmt, ap);
    va_end(ap);
    return rc;
}

int profile__err(struct pcur *c, size_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verr(c->err, c->file, c->line, (unsigned)at + 1, fmt, ap);
    va_end(ap);
    return rc;
}

int profile__oom(struct pcur *c)
{
    ferr(c->err, c->file, c->line, 0, "out of memory");
    return USP_ENOMEM;
}

/* --- Paths ----------------------------------------------------------------- */

enum path_kind { PK_PARAM, PK_OBJECT, PK_CMD };

struct ppath {
    enum path_kind kind;
    bool ends_inst; /* an object path whose last part is {i} or a number */
    unsigned nlevels;
    unsigned inst[USP_PROFILE_MAX_LEVELS];
    char spath[USP_PROFILE_MAX_PATH + 8];
    size_t nspath;
};

static bool name_start(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool name_char(char ch)
{
    return name_start(ch) || (ch >= '0' && ch <= '9') || ch == '-';
}

/* Checks the syntax of s[0..n) and fills `pp`. On error: -1 with the
 * offending offset in *bad and the reason in `why`. */
static int parse_path(const char *s, size_t n, struct ppath *pp, size_t *bad, char *why,
                      size_t whylen)
{
    memset(pp, 0, offsetof(struct ppath, spath));
    pp->nspath = 0;
    pp->spath[0] = '\0';
    *bad = 0;
    if (n > USP_PROFILE_MAX_PATH) {
        snprintf(why, whylen, "path too long (at most %d bytes)", USP_PROFILE_MAX_PATH);
        return -1;
    }
    if (n < 6 || memcmp(s, "Device", 6) != 0 || (n > 6 && s[6] != '.') || n == 6) {
        snprintf(why, whylen, "a path must start with 'Device.'");
        return -1;
    }
    bool prev_inst = true; /* nothing may be numbered before "Device" */
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && s[j] != '.')
            j++;
        size_t len = j - i;
        const char *seg = s + i;
        const char *out = seg;
        size_t outlen = len;
        if (len == 0) {
            if (i == n && i > 0) {
                pp->kind = PK_OBJECT;
                break;
            }
            *bad = i;
            snprintf(why, whylen, "empty name ('..')");
            return -1;
        }
        if (seg[0] == '{' || (seg[0] >= '0' && seg[0] <= '9')) {
            if (prev_inst || i == 7) {
                *bad = i;
                snprintf(why, whylen, "'{i}' or an instance number must follow a table name");
                return -1;
            }
            unsigned num = 0;
            if (seg[0] == '{') {
                if (len != 3 || memcmp(seg, "{i}", 3) != 0) {
                    *bad = i;
                    snprintf(why, whylen, "only {i} may stand for an instance in a path");
                    return -1;
                }
            } else {
                uint64_t v = 0;
                for (size_t k = 0; k < len; k++) {
                    if (seg[k] < '0' || seg[k] > '9') {
                        *bad = i + k;
                        snprintf(why, whylen, "bad character '%c' in an instance number", seg[k]);
                        return -1;
                    }
                    v = v * 10 + (uint64_t)(seg[k] - '0');
                    if (v > 4294967295u) {
                        *bad = i;
                        snprintf(why, whylen, "instance number too large");
                        return -1;
                    }
                }
                if (v == 0 || seg[0] == '0') {
                    *bad = i;
                    snprintf(why, whylen,
                             v ? "instance number with a leading zero"
                               : "instance numbers start at 1");
                    return -1;
                }
                num = (unsigned)v;
                out = "{i}";
                outlen = 3;
            }
            if (pp->nlevels == USP_PROFILE_MAX_LEVELS) {
                *bad = i;
                snprintf(why, whylen, "too many table levels (at most %d)", USP_PROFILE_MAX_LEVELS);
                return -1;
            }
            pp->inst[pp->nlevels++] = num;
            prev_inst = true;
        } else {
            if (seg[0] == '*' || seg[0] == '[') {
                *bad = i;
                snprintf(why, whylen, "search paths ('*', '[...]') are not allowed here");
                return -1;
            }
            if (!name_start(seg[0])) {
                *bad = i;
                if ((unsigned char)seg[0] < 0x20 || (unsigned char)seg[0] >= 0x7f)
                    snprintf(why, whylen, "a name must start with a letter or '_'");
                else
                    snprintf(why, whylen, "a name must start with a letter or '_', not '%c'",
                             seg[0]);
                return -1;
            }
            size_t k = 1;
            while (k < len && name_char(seg[k]))
                k++;
            if (k + 2 == len && seg[k] == '(' && seg[k + 1] == ')') {
                if (j != n) {
                    *bad = i + k;
                    snprintf(why, whylen, "'()' must end a command path");
                    return -1;
                }
                pp->kind = PK_CMD;
            } else if (k != len) {
                *bad = i + k;
                if ((unsigned char)seg[k] < 0x20 || (unsigned char)seg[k] >= 0x7f)
                    snprintf(why, whylen, "bad character in a name");
                else
                    snprintf(why, whylen, "bad character '%c' in a name", seg[k]);
                return -1;
            }
            prev_inst = false;
        }
        memcpy(pp->spath + pp->nspath, out, outlen);
        pp->nspath += outlen;
        if (j == n) {
            if (pp->kind != PK_CMD)
                pp->kind = PK_PARAM;
            if (prev_inst) {
                *bad = i;
                snprintf(why, whylen,
                         "a path cannot end with an instance (add '.' for the "
                         "object)");
                return -1;
            }
            break;
        }
        pp->spath[pp->nspath++] = '.';
        i = j + 1;
        pp->ends_inst = prev_inst;
    }
    pp->spath[pp->nspath] = '\0';
    return 0;
}

int usp_profile_split_path(const char *path, char *spath, size_t len, unsigned *inst,
                           unsigned *ninst)
{
    struct ppath pp;
    size_t bad;
    char why[128];
    if (!path || !spath || !len)
        return USP_EINVAL;
    if (parse_path(path, strlen(path), &pp, &bad, why, sizeof why) < 0)
        return USP_EINVAL;
    if (pp.nspath + 1 > len)
        return USP_ERANGE;
    memcpy(spath, pp.spath, pp.nspath + 1);
    if (inst)
        memcpy(inst, pp.inst, pp.nlevels * sizeof *inst);
    if (ninst)
        *ninst = pp.nlevels;
    return 0;
}

/* --- Parse state ----------------------------------------------------------- */

struct fid {
    dev_t dev;
    ino_t ino;
};

struct pfile {
    const char *path; /* as shown in messages */
    const char *dir;  /* where its includes are; NULL refuses them */
    bool has_id;
    struct fid id;
};

/* Where a one-per-profile setting was made. */
struct dset {
    const char *file;
    unsigned line;
};

struct pstate {
    struct usp_profile *p;
    struct usp_profile_err *err;
    struct pfile stack[MAX_INCLUDE_DEPTH + 1];
    unsigned depth;
    struct fid *done;
    size_t ndone, capdone;
    struct dset d_name, d_desc, d_seed, d_serial;
    struct pmap vdup, idup, cdup; /* path as written -> entry index */
};

static int parse_buf(struct pstate *ps, const char *file, const char *buf, size_t len);

/* Reads a whole file; `shown` names it in messages. */
static int read_file(struct pstate *ps, struct pcur *c, size_t at, const char *path,
                     const char *shown, char **buf, size_t *len, struct fid *id)
{
    int rc = 0;
    char *data = NULL;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        int e = errno;
        if (c)
            profile__err(c, at, "cannot read '%s': %s", shown, strerror(e));
        else
            ferr(ps->err, shown, 0, 0, "cannot read: %s", strerror(e));
        rc = USP_EIO;
        goto out;
    }
    if (S_ISDIR(st.st_mode) || st.st_size > (off_t)MAX_FILE_SIZE) {
        const char *why = S_ISDIR(st.st_mode) ? "is a folder" : "is too large (at most 16 MiB)";
        if (c)
            profile__err(c, at, "cannot read '%s': %s", shown, why);
        else
            ferr(ps->err, shown, 0, 0, "cannot read: %s", why);
        rc = USP_EIO;
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    data = malloc(cap);
    if (!data) {
        rc = USP_ENOMEM;
        ferr(ps->err, shown, 0, 0, "out of memory");
        goto out;
    }
    /* The size may change under us: read to the end, within the limit. */
    for (;;) {
        if (n == cap) {
            if (cap > MAX_FILE_SIZE) {
                ferr(ps->err, shown, 0, 0, "cannot read: is too large (at most 16 MiB)");
                rc = USP_EIO;
                goto out;
            }
            char *more = realloc(data, cap * 2);
            if (!more) {
                rc = USP_ENOMEM;
                ferr(ps->err, shown, 0, 0, "out of memory");
                goto out;
            }
            data = more;
            cap *= 2;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        ferr(ps->err, shown, 0, 0, "cannot read: I/O error");
        rc = USP_EIO;
        goto out;
    }
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    *buf = data;
    *len = n;
    data = NULL;
out:
    free(data);
    if (f)
        fclose(f);
    return rc;
}

static const char *dir_of(struct usp_profile *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return profile__intern(p, ".", 1);
    if (slash == path)
        return profile__intern(p, "/", 1);
    return profile__intern(p, path, (size_t)(slash - path));
}

static int parse_file(struct pstate *ps, const char *shown, const char *dir, const char *buf,
                      size_t len, const struct fid *id)
{
    struct pfile *f = &ps->stack[ps->depth++];
    f->path = shown;
    f->dir = dir;
    f->has_id = id != NULL;
    if (id)
        f->id = *id;
    int rc = parse_buf(ps, shown, buf, len);
    ps->depth--;
    if (rc == 0 && id) {
        if (ps->ndone == ps->capdone) {
            size_t cap = ps->capdone ? ps->capdone * 2 : 8;
            struct fid *d = realloc(ps->done, cap * sizeof *d);
            if (!d)
                return oom(ps->err, shown);
            ps->done = d;
            ps->capdone = cap;
        }
        ps->done[ps->ndone++] = *id;
    }
    return rc;
}

static int do_include(struct pstate *ps, struct pcur *c, size_t at, const char *name)
{
    struct usp_profile *p = ps->p;
    const char *dir = ps->stack[ps->depth - 1].dir;
    if (!dir)
        return profile__err(c, at, "include is not available here (no folder to read from)");
    if (!*name)
        return profile__err(c, at, "include needs a file name");
    size_t need = strlen(dir) + strlen(name) + 2;
    char *path = malloc(need);
    if (!path)
        return profile__oom(c);
    if (name[0] == '/' || !*dir || !strcmp(dir, "."))
        snprintf(path, need, "%s", name);
    else
        snprintf(path, need, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    const char *shown = profile__intern(p, path, strlen(path));
    free(path);
    if (!shown)
        return profile__oom(c);

    struct stat st;
    if (stat(shown, &st) != 0) {
        if (errno == ENOENT)
            return profile__err(c, at, "cannot include '%s': no such file (%s)", name, shown);
        return profile__err(c, at, "cannot include '%s': %s", name, strerror(errno));
    }
    for (unsigned k = 0; k < ps->depth; k++) {
        const struct pfile *f = &ps->stack[k];
        if (f->has_id && f->id.dev == st.st_dev && f->id.ino == st.st_ino) {
            char chain[300];
            size_t n = 0;
            chain[0] = '\0';
            for (unsigned j = k; j < ps->depth && n < sizeof chain; j++)
                n += (size_t)snprintf(chain + n, sizeof chain - n, "%s -> ", ps->stack[j].path);
            if (n < sizeof chain)
                snprintf(chain + n, sizeof chain - n, "%s", shown);
            return profile__err(c, at, "include cycle: %s", chain);
        }
    }
    for (size_t k = 0; k < ps->ndone; k++)
        if (ps->done[k].dev == st.st_dev && ps->done[k].ino == st.st_ino)
            return 0; /* each file is read once */
    if (ps->depth > MAX_INCLUDE_DEPTH - 1)
        return profile__err(c, at, "includes nested too deeply (at most %d)", MAX_INCLUDE_DEPTH);
    char *buf = NULL;
    size_t len = 0;
    struct fid id;
    int rc = read_file(ps, c, at, shown, shown, &buf, &len, &id);
    if (rc < 0)
        return rc;
    const char *ndir = dir_of(p, shown);
    rc = ndir ? parse_file(ps, shown, ndir, buf, len, &id) : profile__oom(c);
    free(buf);
    return rc;
}

/* --- Entries --------------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 32;
    void *a = realloc(*arr, ncap * size);
    if (!a)
        return USP_ENOMEM;
    *arr = a;
    *cap = ncap;
    return 0;
}

/* Fills `e` from a parsed path; `path` is the text to keep as written. */
static int fill_entry(struct pcur *c, struct usp_profile_entry *e, const char *path, size_t pathlen,
                      const struct ppath *pp, const char *spath, size_t spathlen)
{
    struct usp_profile *p = c->p;
    e->path = profile__intern(p, path, pathlen);
    e->spath = profile__intern(p, spath, spathlen);
    e->file = c->file;
    e->line = c->line;
    e->nlevels = pp->nlevels;
    unsigned *inst = NULL;
    if (pp->nlevels) {
        inst = profile__alloc(p, pp->nlevels * sizeof *inst);
        if (inst)
            memcpy(inst, pp->inst, pp->nlevels * sizeof *inst);
    }
    e->inst = inst;
    if (!e->path || !e->spath || (pp->nlevels && !inst))
        return profile__oom(c);
    return 0;
}

/* Finds an earlier line with the same path: 1 and its index when it may be
 * overridden, 0 when there is none, or an error for one in this file. */
static int find_dup(struct pcur *c, struct pmap *m, const void *base, size_t stride,
                    const char *path, size_t at, uint32_t *idx)
{
    if (!map_get(m, path, idx))
        return 0;
    const struct usp_profile_entry *old =
        (const struct usp_profile_entry *)((const char *)base + *idx * stride);
    if (old->file == c->file)
        return profile__err(c, at,
                            "%s is already defined at line %u (only a line of an "
                            "including file may override it)",
                            path, old->line);
    return 1;
}

/* --- Statements ------------------------------------------------------------ */

static bool at_end(struct pcur *c)
{
    profile__skip_ws(c);
    return c->i >= c->n || c->s[c->i] == '#';
}

static int expect_end(struct pcur *c)
{
    if (at_end(c))
        return 0;
    unsigned char ch = (unsigned char)c->s[c->i];
    if (ch < 0x20 || ch >= 0x7f)
        return profile__err(c, c->i, "unexpected byte 0x%02x at the end of the line", ch);
    size_t e = c->i;
    while (e < c->n && e - c->i < 24 && c->s[e] != ' ' && c->s[e] != '\t' &&
           (unsigned char)c->s[e] >= 0x20 && (unsigned char)c->s[e] < 0x7f)
        e++;
    return profile__err(c, c->i, "unexpected '%.*s' at the end of the line", (int)(e - c->i),
                        c->s + c->i);
}

/* A path token: everything up to blank, '=' or '#'. */
static size_t path_token(struct pcur *c)
{
    size_t e = c->i;
    while (e < c->n && c->s[e] != ' ' && c->s[e] != '\t' && c->s[e] != '=' && c->s[e] != '#')
        e++;
    return e;
}

static int get_path(struct pcur *c, struct ppath *pp, size_t *start, size_t *end)
{
    profile__skip_ws(c);
    *start = c->i;
    *end = path_token(c);
    if (*end == *start)
        return profile__err(c, c->i, "path expected");
    size_t bad;
    char why[128];
    if (parse_path(c->s + *start, *end - *start, pp, &bad, why, sizeof why) < 0)
        return profile__err(c, *start + bad, "%s", why);
    c->i = *end;
    return 0;
}

/* profile/description/seed/serial: once per file, a later file wins. */
static int set_once(struct pcur *c, struct dset *d, const char *what, size_t at)
{
    if (d->file == c->file)
        return profile__err(c, at, "'%s' is already set at line %u", what, d->line);
    d->file = c->file;
    d->line = c->line;
    return 0;
}

static int st_profile(struct pstate *ps, struct pcur *c, size_t at)
{
    profile__skip_ws(c);
    const char *name;
    int rc;
    if (c->i < c->n && c->s[c->i] == '"') {
        if ((rc = profile__parse_string(c, &name)) < 0)
            return rc;
    } else {
        size_t s = c->i;
        while (c->i < c->n && (name_char(c->s[c->i]) || c->s[c->i] == '.'))
            c->i++;
        if (c->i == s)
            return profile__err(c, s, "profile needs a name");
        if (!(name = profile__intern(c->p, c->s + s, c->i - s)))
            return profile__oom(c);
    }
    if (!*name)
        return profile__err(c, at, "profile needs a name");
    if ((rc = expect_end(c)) < 0 || (rc = set_once(c, &ps->d_name, "profile", at)) < 0)
        return rc;
    c->p->name = name;
    return 0;
}

static int st_description(struct pstate *ps, struct pcur *c, size_t at)
{
    profile__skip_ws(c);
    const char *d;
    int rc;
    if ((rc = profile__parse_string(c, &d)) < 0 || (rc = expect_end(c)) < 0 ||
        (rc = set_once(c, &ps->d_desc, "description", at)) < 0)
        return rc;
    c->p->description = d;
    return 0;
}

static int st_seed(struct pstate *ps, struct pcur *c, size_t at)
{
    profile__skip_ws(c);
    size_t s = c->i;
    uint64_t v = 0;
    if (c->i >= c->n || c->s[c->i] < '0' || c->s[c->i] > '9')
        return profile__err(c, s, "seed needs a number (0 to 18446744073709551615)");
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        unsigned d = (unsigned)(c->s[c->i++] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return profile__err(c, s, "seed too large (at most 18446744073709551615)");
        v = v * 10 + d;
    }
    int rc;
    if ((rc = expect_end(c)) < 0 || (rc = set_once(c, &ps->d_seed, "seed", at)) < 0)
        return rc;
    c->p->seed = v;
    return 0;
}

static int st_serial(struct pstate *ps, struct pcur *c, size_t at)
{
    profile__skip_ws(c);
    struct usp_gen *g;
    int rc;
    if ((rc = profile__parse_template(c, 0, TPL_N, &g)) < 0 || (rc = expect_end(c)) < 0 ||
        (rc = set_once(c, &ps->d_serial, "serial", at)) < 0)
        return rc;
    c->p->serial = g;
    return 0;
}

static int st_include(struct pstate *ps, struct pcur *c)
{
    profile__skip_ws(c);
    size_t at = c->i;
    const char *name;
    int rc;
    if (c->i < c->n && c->s[c->i] == '"') {
        if ((rc = profile__parse_string(c, &name)) < 0)
            return rc;
    } else {
        size_t e = c->i;
        while (e < c->n && c->s[e] != ' ' && c->s[e] != '\t' && c->s[e] != '#')
            e++;
        if (e == c->i)
            return profile__err(c, at, "include needs a file name");
        if (!(name = profile__intern(c->p, c->s + c->i, e - c->i)))
            return profile__oom(c);
        c->i = e;
    }
    if ((rc = expect_end(c)) < 0)
        return rc;
    return do_include(ps, c, at, name);
}

static int st_instances(struct pstate *ps, struct pcur *c)
{
    struct usp_profile *p = c->p;
    struct ppath pp;
    size_t s, e;
    int rc = get_path(c, &pp, &s, &e);
    if (rc < 0)
        return rc;
    size_t plen = e - s;
    if (pp.kind != PK_OBJECT)
        return profile__err(c, s,
                            "instances needs a table path ending in '.', e.g. "
                            "Device.Ethernet.Interface.");
    if (pp.ends_inst) {
        /* "Table.{i}." is the same as "Table."; "Table.3." is an instance. */
        if (pp.inst[pp.nlevels - 1] != 0) {
            size_t t = plen - 1; /* the table ends where the number starts */
            while (t > 0 && c->s[s + t - 1] != '.')
                t--;
            return profile__err(c, s,
                                "instances needs a table, not an instance (write "
                                "'%.*s')",
                                (int)t, c->s + s);
        }
        plen -= 4;
        pp.nlevels--;
        pp.nspath -= 4;
        pp.spath[pp.nspath] = '\0';
    }
    if (pp.nspath <= 7)
        return profile__err(c, s,
                            "instances needs a table path, e.g. Device.Ethernet."
                            "Interface.");
    memcpy(pp.spath + pp.nspath, "{i}.", 5);
    pp.nspath += 4;

    profile__skip_ws(c);
    size_t at = c->i;
    int64_t lo, hi;
    if (c->i >= c->n || c->s[c->i] == '#')
        return profile__err(c, at, "instances needs a count, e.g. 4 or 2..8");
    if ((rc = profile__parse_num(c, false, &lo)) < 0)
        return rc;
    hi = lo;
    if (c->i + 1 < c->n && c->s[c->i] == '.' && c->s[c->i + 1] == '.') {
        c->i += 2;
        if ((rc = profile__parse_num(c, false, &hi)) < 0)
            return rc;
    }
    if (lo < 0 || hi > USP_PROFILE_MAX_COUNT)
        return profile__err(c, at, "instance count out of range (0 to %d)", USP_PROFILE_MAX_COUNT);
    if (lo > hi)
        return profile__err(c, at, "bad range %.*s: the first bound is greater than the second",
                            (int)(c->i - at), c->s + at);
    if ((rc = expect_end(c)) < 0)
        return rc;

    struct usp_profile_inst d = {0};
    if ((rc = fill_entry(c, &d.e, c->s + s, plen, &pp, pp.spath, pp.nspath)) < 0)
        return rc;
    d.min = (unsigned)lo;
    d.max = (unsigned)hi;
    uint32_t idx;
    rc = find_dup(c, &ps->idup, p->insts, sizeof *p->insts, d.e.path, s, &idx);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        p->insts[idx] = d;
        return 0;
    }
    if (grow((void **)&p->insts, &p->capinsts, p->ninsts, sizeof *p->insts) < 0 ||
        map_put(&ps->idup, d.e.path, (uint32_t)p->ninsts) < 0)
        return profile__oom(c);
    p->insts[p->ninsts++] = d;
    return 0;
}

static int st_value(struct pstate *ps, struct pcur *c)
{
    struct usp_profile *p = c->p;
    struct ppath pp;
    size_t s, e;
    int rc = get_path(c, &pp, &s, &e);
    if (rc < 0)
        return rc;
    if (pp.kind == PK_OBJECT)
        return profile__err(c, s, "%.*s is an object: values go on parameters", (int)(e - s),
                            c->s + s);
    if (pp.kind == PK_CMD)
        return profile__err(c, s,
                            "a command takes no value: write 'command %.*s delay=... "
                            "result=...'",
                            (int)(e - s), c->s + s);
    profile__skip_ws(c);
    if (c->i >= c->n || c->s[c->i] != '=')
        return profile__err(c, c->i, "'=' expected after the path");
    c->i++;
    struct usp_profile_value v = {0};
    struct usp_gen *g;
    if ((rc = profile__parse_expr(c, pp.nlevels, &g)) < 0 || (rc = expect_end(c)) < 0)
        return rc;
    v.gen = g;
    if ((rc = fill_entry(c, &v.e, c->s + s, e - s, &pp, pp.spath, pp.nspath)) < 0)
        return rc;
    uint32_t idx;
    rc = find_dup(c, &ps->vdup, p->values, sizeof *p->values, v.e.path, s, &idx);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        p->values[idx] = v;
        return 0;
    }
    if (grow((void **)&p->values, &p->capvalues, p->nvalues, sizeof *p->values) < 0 ||
        map_put(&ps->vdup, v.e.path, (uint32_t)p->nvalues) < 0)
        return profile__oom(c);
    p->values[p->nvalues++] = v;
    return 0;
}

static bool word_is(struct pcur *c, size_t s, size_t e, const char *w)
{
    return strlen(w) == e - s && !memcmp(c->s + s, w, e - s);
}

static int st_command(struct pstate *ps, struct pcur *c)
{
    struct usp_profile *p = c->p;
    struct ppath pp;
    size_t s, e;
    int rc = get_path(c, &pp, &s, &e);
    if (rc < 0)
        return rc;
    if (pp.kind != PK_CMD)
        return profile__err(c, s, "command needs a command path ending in '()'");
    struct usp_profile_cmd cmd = {0};
    struct usp_profile_out outs[MAX_OUTS];
    size_t code_at = 0, msg_at = 0, out_at = 0;
    bool seen_delay = false, seen_result = false, seen_code = false, seen_msg = false;
    cmd.err_code = USP_ERR_COMMAND_FAILURE;
    while (!at_end(c)) {
        size_t ks = c->i, ke = c->i;
        while (ke < c->n && c->s[ke] != '=' && c->s[ke] != ' ' && c->s[ke] != '\t' &&
               c->s[ke] != '#')
            ke++;
        if (ke >= c->n || c->s[ke] != '=')
            return profile__err(c, ks,
                                "KEY=VALUE expected (delay, result, code, message, "
                                "out.NAME)");
        c->i = ke + 1;
        if (word_is(c, ks, ke, "delay")) {
            int64_t ms;
            if (seen_delay)
                return profile__err(c, ks, "delay given twice");
            seen_delay = true;
            if ((rc = profile__parse_num(c, true, &ms)) < 0)
                return rc;
            if (ms < 0 || ms > MAX_DELAY_MS)
                return profile__err(c, ke + 1, "delay out of range (0 to 86400 seconds)");
            cmd.delay_ms = (uint32_t)ms;
        } else if (word_is(c, ks, ke, "result")) {
            size_t vs = c->i, ve = c->i;
            while (ve < c->n && name_char(c->s[ve]))
                ve++;
            if (seen_result)
                return profile__err(c, ks, "result given twice");
            seen_result = true;
            if (word_is(c, vs, ve, "ok"))
                cmd.fail = false;
            else if (word_is(c, vs, ve, "fail"))
                cmd.fail = true;
            else
                return profile__err(c, vs, "result must be ok or fail");
            c->i = ve;
        } else if (word_is(c, ks, ke, "code")) {
            int64_t code;
            if (seen_code)
                return profile__err(c, ks, "code given twice");
            seen_code = true;
            code_at = ks;
            if ((rc = profile__parse_num(c, false, &code)) < 0)
                return rc;
            if (code < 7000 || code > 7999)
                return profile__err(c, ke + 1, "code must be a USP error code (7000 to 7999)");
            cmd.err_code = (uint32_t)code;
        } else if (word_is(c, ks, ke, "message")) {
            if (seen_msg)
                return profile__err(c, ks, "message given twice");
            seen_msg = true;
            msg_at = ks;
            if ((rc = profile__parse_string(c, &cmd.err_msg)) < 0)
                return rc;
        } else if (ke - ks >= 4 && !memcmp(c->s + ks, "out.", 4)) {
            size_t ns = ks + 4;
            bool ok = ns < ke && name_start(c->s[ns]) && c->s[ke - 1] != '.';
            for (size_t k = ns; ok && k < ke; k++)
                ok = name_char(c->s[k]) || (c->s[k] == '.' && c->s[k + 1] != '.');
            if (!ok)
                return profile__err(c, ns, "bad output name '%.*s'", (int)(ke - ns), c->s + ns);
            const char *name = profile__intern(p, c->s + ns, ke - ns);
            if (!name)
                return profile__oom(c);
            for (unsigned k = 0; k < cmd.nout; k++)
                if (outs[k].name == name)
                    return profile__err(c, ks, "out.%s given twice", name);
            if (cmd.nout == MAX_OUTS)
                return profile__err(c, ks, "too many outputs (at most %d)", MAX_OUTS);
            if (!out_at)
                out_at = ks;
            struct usp_gen *g;
            if ((rc = profile__parse_expr(c, pp.nlevels, &g)) < 0)
                return rc;
            outs[cmd.nout].name = name;
            outs[cmd.nout].gen = g;
            cmd.nout++;
        } else {
            return profile__err(c, ks,
                                "unknown command setting '%.*s' (expected delay, "
                                "result, code, message, out.NAME)",
                                (int)(ke - ks), c->s + ks);
        }
        if (c->i < c->n && c->s[c->i] != ' ' && c->s[c->i] != '\t' && c->s[c->i] != '#')
            return profile__err(c, c->i, "blank expected after a setting");
    }
    if (!cmd.fail && (seen_code || seen_msg))
        return profile__err(c, seen_code ? code_at : msg_at, "code= and message= need result=fail");
    if (cmd.fail && cmd.nout)
        return profile__err(c, out_at, "out.NAME= needs result=ok");
    if (cmd.fail && !cmd.err_msg && !(cmd.err_msg = profile__intern(p, "Simulated failure", 17)))
        return profile__oom(c);
    if (cmd.nout) {
        struct usp_profile_out *o = profile__alloc(p, cmd.nout * sizeof *o);
        if (!o)
            return profile__oom(c);
        memcpy(o, outs, cmd.nout * sizeof *o);
        cmd.out = o;
    }
    if ((rc = fill_entry(c, &cmd.e, c->s + s, e - s, &pp, pp.spath, pp.nspath)) < 0)
        return rc;
    uint32_t idx;
    rc = find_dup(c, &ps->cdup, p->cmds, sizeof *p->cmds, cmd.e.path, s, &idx);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        p->cmds[idx] = cmd;
        return 0;
    }
    if (grow((void **)&p->cmds, &p->capcmds, p->ncmds, sizeof *p->cmds) < 0 ||
        map_put(&ps->cdup, cmd.e.path, (uint32_t)p->ncmds) < 0)
        return profile__oom(c);
    p->cmds[p->ncmds++] = cmd;
    return 0;
}

static int parse_line(struct pstate *ps, struct pcur *c)
{
    if (at_end(c))
        return 0;
    size_t s = c->i, e = c->i;
    while (e < c->n && c->s[e] != ' ' && c->s[e] != '\t' && c->s[e] != '=' && c->s[e] != '#')
        e++;
    if (e - s >= 6 && !memcmp(c->s + s, "Device", 6) && (e - s == 6 || c->s[s + 6] == '.'))
        return st_value(ps, c);
    c->i = e;
    if (word_is(c, s, e, "instances"))
        return st_instances(ps, c);
    if (word_is(c, s, e, "command"))
        return st_command(ps, c);
    if (word_is(c, s, e, "include"))
        return st_include(ps, c);
    if (word_is(c, s, e, "profile"))
        return st_profile(ps, c, s);
    if (word_is(c, s, e, "description"))
        return st_description(ps, c, s);
    if (word_is(c, s, e, "seed"))
        return st_seed(ps, c, s);
    if (word_is(c, s, e, "serial"))
        return st_serial(ps, c, s);
    if (memchr(c->s + s, '.', e - s))
        return profile__err(c, s, "a path must start with 'Device.'");
    size_t shown = e - s;
    for (size_t k = s; k < e; k++)
        if ((unsigned char)c->s[k] < 0x20 || (unsigned char)c->s[k] >= 0x7f) {
            shown = k - s;
            break;
        }
    return profile__err(c, s,
                        "unknown statement '%.*s' (expected profile, description, seed, "
                        "serial, include, instances, command or a Device. path)",
                        (int)(shown > 40 ? 40 : shown), c->s + s);
}

static int parse_buf(struct pstate *ps, const char *file, const char *buf, size_t len)
{
    size_t pos = 0;
    unsigned line = 0;
    if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
        pos = 3; /* a UTF-8 byte order mark */
    while (pos < len) {
        line++;
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t n = end - pos;
        if (n && buf[pos + n - 1] == '\r')
            n--;
        struct pcur c = {buf + pos, n, 0, line, file, ps->p, ps->err};
        const char *z = memchr(buf + pos, '\0', n);
        if (z)
            return profile__err(&c, (size_t)(z - (buf + pos)), "NUL byte in the file");
        int rc = parse_line(ps, &c);
        if (rc < 0)
            return rc;
        pos = end + 1;
    }
    return 0;
}

/* --- Checks and lookup tables ---------------------------------------------- */

static unsigned numbered(const struct usp_profile_entry *e)
{
    unsigned n = 0;
    for (unsigned k = 0; k < e->nlevels; k++)
        n += e->inst[k] != 0;
    return n;
}

/* Most written numbers first; on a tie, numbers at deeper levels first.
 * Two different lines that match the same instance never tie. */
static int cmp_prec(const void *a, const void *b)
{
    const struct usp_profile_entry *x = *(const struct usp_profile_entry *const *)a;
    const struct usp_profile_entry *y = *(const struct usp_profile_entry *const *)b;
    unsigned nx = numbered(x), ny = numbered(y);
    if (nx != ny)
        return nx > ny ? -1 : 1;
    for (unsigned k = x->nlevels; k-- > 0;) {
        bool ax = x->inst[k] != 0, ay = y->inst[k] != 0;
        if (ax != ay)
            return ax ? -1 : 1;
        if (x->inst[k] != y->inst[k])
            return x->inst[k] < y->inst[k] ? -1 : 1;
    }
    return 0;
}

static int build_slots(struct usp_profile *p, const void *base, size_t stride, size_t n,
                       struct pmap *map, struct usp_profile_slot **slots, size_t *nslots)
{
    uint32_t *count = NULL;
    int rc = USP_ENOMEM;
    size_t ns = 0;
    for (size_t k = 0; k < n; k++) {
        const struct usp_profile_entry *e =
            (const struct usp_profile_entry *)((const char *)base + k * stride);
        uint32_t v;
        if (!map_get(map, e->spath, &v) && map_put(map, e->spath, (uint32_t)ns++) < 0)
            goto out;
    }
    *slots = ns ? profile__alloc(p, ns * sizeof **slots) : NULL;
    count = calloc(ns ? ns : 1, sizeof *count);
    if ((ns && !*slots) || !count)
        goto out;
    *nslots = ns;
    for (size_t k = 0; k < n; k++) {
        const struct usp_profile_entry *e =
            (const struct usp_profile_entry *)((const char *)base + k * stride);
        uint32_t v = 0;
        map_get(map, e->spath, &v);
        (*slots)[v].spath = e->spath;
        (*slots)[v].n++;
    }
    for (size_t k = 0; k < ns; k++) {
        (*slots)[k].e = profile__alloc(p, (*slots)[k].n * sizeof *(*slots)[k].e);
        if (!(*slots)[k].e)
            goto out;
    }
    for (size_t k = 0; k < n; k++) {
        const struct usp_profile_entry *e =
            (const struct usp_profile_entry *)((const char *)base + k * stride);
        uint32_t v = 0;
        map_get(map, e->spath, &v);
        (*slots)[v].e[count[v]++] = e;
    }
    for (size_t k = 0; k < ns; k++)
        qsort((void *)(*slots)[k].e, (*slots)[k].n, sizeof *(*slots)[k].e, cmp_prec);
    rc = 0;
out:
    free(count);
    return rc;
}

const struct usp_profile_slot *profile__slot_find(const struct usp_profile *p,
                                                  const struct pmap *map,
                                                  const struct usp_profile_slot *slots,
                                                  const char *spath, size_t len)
{
    const char *k = profile__intern_find(p, spath, len);
    uint32_t v;
    if (!k || !map_get(map, k, &v))
        return NULL;
    return &slots[v];
}

/* Every table a line is inside must have an "instances" line, and numbered
 * instances must be ones some agent creates. */
static int check_tables(struct pstate *ps, const struct usp_profile_entry *e, const char *what)
{
    struct usp_profile *p = ps->p;
    const char *sp = e->spath;
    unsigned level = 0;
    for (const char *q = strstr(sp, ".{i}."); q && level < e->nlevels; q = strstr(q + 4, ".{i}.")) {
        size_t tlen = (size_t)(q - sp) + 5; /* through "{i}." */
        const struct usp_profile_slot *s = profile__slot_find(p, &p->imap, p->islots, sp, tlen);
        if (!s)
            return ferr(ps->err, e->file, e->line, 0,
                        "%s %s: no 'instances %.*s' line creates this table", what, e->path,
                        (int)(tlen - 4), sp);
        unsigned num = e->inst[level];
        if (num) {
            unsigned max = 0;
            for (uint32_t k = 0; k < s->n; k++) {
                const struct usp_profile_inst *d = (const struct usp_profile_inst *)s->e[k];
                if (d->max > max)
                    max = d->max;
            }
            if (num > max)
                return ferr(ps->err, e->file, e->line, 0,
                            "%s %s: instance %u of %.*s is never created (at most %u)", what,
                            e->path, num, (int)(tlen - 4), sp, max);
        }
        level++;
    }
    return 0;
}

static int finalize(struct pstate *ps, const char *top)
{
    struct usp_profile *p = ps->p;
    int rc;
    if (!p->serial) {
        struct usp_gen *g;
        struct pcur c = {DEFAULT_SERIAL, sizeof DEFAULT_SERIAL - 1, 0, 0, top, p, ps->err};
        if ((rc = profile__parse_template(&c, 0, TPL_N, &g)) < 0)
            return rc;
        p->serial = g;
    }
    if (!p->name) {
        const char *base = strrchr(top, '/');
        base = base ? base + 1 : top;
        size_t n = strlen(base);
        if (n > 5 && !strcmp(base + n - 5, ".prof"))
            n -= 5;
        if (!(p->name = profile__intern(p, base, n)))
            return oom(ps->err, top);
    }
    if (!p->description && !(p->description = profile__intern(p, "", 0)))
        return oom(ps->err, top);

    /* Seeds: the same profile seed and path give the same draws, whatever
     * file the line came from. The generators are still ours to finish, so
     * dropping their const here is sound. */
    for (size_t k = 0; k < p->nvalues; k++)
        profile__gen_key((struct usp_gen *)p->values[k].gen,
                         profile__hash(p->seed, p->values[k].e.spath));
    for (size_t k = 0; k < p->ninsts; k++)
        p->insts[k].key = profile__hash(p->seed ^ SALT_TABLE, p->insts[k].e.spath);
    for (size_t k = 0; k < p->ncmds; k++) {
        uint64_t h = profile__hash(p->seed, p->cmds[k].e.spath);
        for (unsigned j = 0; j < p->cmds[k].nout; j++)
            profile__gen_key((struct usp_gen *)p->cmds[k].out[j].gen,
                             profile__hash(h, p->cmds[k].out[j].name));
    }

    if (build_slots(p, p->values, sizeof *p->values, p->nvalues, &p->vmap, &p->vslots,
                    &p->nvslots) < 0 ||
        build_slots(p, p->insts, sizeof *p->insts, p->ninsts, &p->imap, &p->islots, &p->nislots) <
            0 ||
        build_slots(p, p->cmds, sizeof *p->cmds, p->ncmds, &p->cmap, &p->cslots, &p->ncslots) < 0)
        return oom(ps->err, top);

    for (size_t k = 0; k < p->ninsts; k++)
        if ((rc = check_tables(ps, &p->insts[k].e, "instances")) < 0)
            return rc;
    for (size_t k = 0; k < p->nvalues; k++)
        if ((rc = check_tables(ps, &p->values[k].e, "value of")) < 0)
            return rc;
    for (size_t k = 0; k < p->ncmds; k++)
        if ((rc = check_tables(ps, &p->cmds[k].e, "command")) < 0)
            return rc;
    return 0;
}

/* --- Loading --------------------------------------------------------------- */

static int parse_top(const char *name, const char *buf, size_t len, const char *dir,
                     const struct fid *id, struct usp_profile **out, struct usp_profile_err *err)
{
    struct pstate ps = {0};
    int rc;
    struct usp_profile *p = calloc(1, sizeof *p);
    if (!p)
        return oom(err, name);
    p->mem = sizeof *p;
    ps.p = p;
    ps.err = err;
    const char *shown = profile__intern(p, name, strlen(name));
    const char *idir = dir ? profile__intern(p, dir, strlen(dir)) : NULL;
    if (!shown || (dir && !idir)) {
        ferr(err, name, 0, 0, "out of memory");
        rc = USP_ENOMEM;
        goto out;
    }
    p->file = shown;
    if ((rc = parse_file(&ps, shown, idir, buf, len, id)) < 0 || (rc = finalize(&ps, shown)) < 0)
        goto out;
    p->mem += map_mem(&p->vmap) + map_mem(&p->imap) + map_mem(&p->cmap) +
              p->capvalues * sizeof *p->values + p->capinsts * sizeof *p->insts +
              p->capcmds * sizeof *p->cmds;
    *out = p;
    p = NULL;
out:
    map_free(&ps.vdup);
    map_free(&ps.idup);
    map_free(&ps.cdup);
    free(ps.done);
    usp_profile_free(p);
    return rc;
}

int usp_profile_parse_mem(const char *name, const char *buf, size_t len, const char *dir,
                          struct usp_profile **out, struct usp_profile_err *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!out)
        return USP_EINVAL;
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!buf && len)
        return ferr(err, name, 0, 0, "no data");
    return parse_top(name, buf ? buf : "", len, dir, NULL, out, err);
}

int usp_profile_load(const char *path, struct usp_profile **out, struct usp_profile_err *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!out || !path)
        return USP_EINVAL;
    *out = NULL;
    struct pstate ps = {.err = err};
    char *buf = NULL, *dir = NULL;
    size_t len = 0;
    struct fid id;
    int rc = read_file(&ps, NULL, 0, path, path, &buf, &len, &id);
    if (rc < 0)
        goto out;
    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        ferr(err, path, 0, 0, "out of memory");
        rc = USP_ENOMEM;
        goto out;
    }
    rc = parse_top(path, buf, len, dir, &id, out, err);
out:
    free(buf);
    free(dir);
    return rc;
}

void usp_profile_free(struct usp_profile *p)
{
    if (!p)
        return;
    struct pchunk *ch = p->chunks;
    while (ch) {
        struct pchunk *next = ch->next;
        free(ch);
        ch = next;
    }
    free(p->values);
    free(p->insts);
    free(p->cmds);
    map_free(&p->vmap);
    map_free(&p->imap);
    map_free(&p->cmap);
    free(p->strs.slot);
    free(p);
}

/* --- Accessors and lookups ------------------------------------------------- */

const char *usp_profile_name(const struct usp_profile *p)
{
    return p->name;
}

const char *usp_profile_description(const struct usp_profile *p)
{
    return p->description;
}

uint64_t usp_profile_seed(const struct usp_profile *p)
{
    return p->seed;
}

size_t usp_profile_mem(const struct usp_profile *p)
{
    return p->mem;
}

size_t usp_profile_nvalues(const struct usp_profile *p)
{
    return p->nvalues;
}

const struct usp_profile_value *usp_profile_value_at(const struct usp_profile *p, size_t i)
{
    return i < p->nvalues ? &p->values[i] : NULL;
}

size_t usp_profile_ninsts(const struct usp_profile *p)
{
    return p->ninsts;
}

const struct usp_profile_inst *usp_profile_inst_at(const struct usp_profile *p, size_t i)
{
    return i < p->ninsts ? &p->insts[i] : NULL;
}

size_t usp_profile_ncmds(const struct usp_profile *p)
{
    return p->ncmds;
}

const struct usp_profile_cmd *usp_profile_cmd_at(const struct usp_profile *p, size_t i)
{
    return i < p->ncmds ? &p->cmds[i] : NULL;
}
