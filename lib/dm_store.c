/* The data-model engine's store: the binding of a device profile to a
 * schema (struct usp_dm_model, shared by every agent of the profile) and the
 * per-agent instance store, copy-on-write over that binding.
 *
 * An untouched agent owns nothing but its struct usp_dm_agent: its rows are
 * the profile's ("instances" lines, counts drawn from the agent index) and
 * its values come from the profile's generators. The first write allocates
 * the overlay, ONE block that holds only what the agent changed:
 *
 *   [header][record][record]...   free   [slot][slot]...[slot]
 *
 * Records grow from the front, the slot array (offsets of the live records,
 * sorted by key) from the back, like a database page. A record is
 *
 *   u16 object index | u16 parameter index | u32 length |
 *   u32 instance numbers (as many as the key has) | length bytes of payload
 *
 * Value records carry the object's instance numbers and the value (no NUL);
 * table records (parameter index 0xffff) carry the parent's instance numbers
 * and the table's changes: the next number to give, the profile rows
 * deleted and the rows added (both sorted). A rewritten record is appended
 * and the old one becomes garbage, collected when the block is rebuilt to
 * grow. There is no per-entry allocation: a Set costs ~10 bytes plus the
 * value, and lookups are a binary search over the slots.
 *
 * A row is a profile row when its number is within the profile's count for
 * its table (and its parent is one); added rows are numbered above the
 * count, so the two never mix, and an added row takes no profile values. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dm_store_int.h"
#include "usp/errors.h"

/* --- Binding (struct usp_dm_model) ----------------------------------------
 *
 * Every profile line is matched to its schema item once, here, and checked:
 * reads then find the profile entries of an object, parameter or command by
 * index (object->index, parameter index) without any string lookup. The
 * binding is immutable and shared by every agent of the profile. */

static int bind_err(struct usp_dm_model_err *err, const struct usp_profile_entry *e,
                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bind_err(struct usp_dm_model_err *err, const struct usp_profile_entry *e,
                    const char *fmt, ...)
{
    if (!err)
        return USP_EINVAL;
    char what[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (e)
        snprintf(err->msg, sizeof err->msg, "%s:%u: %s: %s", e->file ? e->file : "?", e->line,
                 e->path, what);
    else
        snprintf(err->msg, sizeof err->msg, "%s", what);
    return USP_EINVAL;
}

/* The same precedence as the profile's own lookups: most written instance
 * numbers first; on a tie, numbers at deeper levels first, then by number. */
static unsigned numbered(const struct usp_profile_entry *e)
{
    unsigned n = 0;
    for (unsigned k = 0; k < e->nlevels; k++)
        n += e->inst[k] != 0;
    return n;
}

static int cmp_prec(const void *a, const void *b)
{
    const struct usp_profile_entry *x = *(const struct usp_profile_entry *const *)a;
    const struct usp_profile_entry *y = *(const struct usp_profile_entry *const *)b;
    unsigned nx = numbered(x), ny = numbered(y);
    if (nx != ny)
        return nx > ny ? -1 : 1;
    unsigned n = x->nlevels < y->nlevels ? x->nlevels : y->nlevels;
    for (unsigned k = n; k-- > 0;) {
        bool ax = x->inst[k] != 0, ay = y->inst[k] != 0;
        if (ax != ay)
            return ax ? -1 : 1;
        if (x->inst[k] != y->inst[k])
            return x->inst[k] < y->inst[k] ? -1 : 1;
    }
    return x->line < y->line ? 1 : x->line > y->line ? -1 : 0;
}

static const char *model_name(const struct usp_dm_schema *s)
{
    const char *n = usp_dm_schema_model(s);
    return n && *n ? n : "the schema";
}

/* Whether supported path `spath` is exactly `obj->path` followed by `leaf`:
 * the profile's numbers sit where the schema has "{i}" and nowhere else. */
static bool same_path(const char *spath, const struct usp_dm_object *obj, const char *leaf)
{
    size_t n = strlen(obj->path);
    return !strncmp(spath, obj->path, n) && !strcmp(spath + n, leaf ? leaf : "");
}

/* An output argument name of a command ("Status", "Result.1.Name"):
 * numbers after tables are skipped. */
static bool output_has(const struct usp_dm_object *tree, const char *name)
{
    const struct usp_dm_object *o = tree;
    const char *p = name;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!len)
            return false;
        if (!dot)
            return usp_dm_object_param(o, p, len) != NULL;
        if (p[0] < '0' || p[0] > '9') {
            o = usp_dm_object_child(o, p, len);
            if (!o)
                return false;
        }
        p = dot + 1;
    }
}

static bool base_numeric(unsigned base)
{
    return base == USP_DM_INT || base == USP_DM_UNSIGNED_INT || base == USP_DM_LONG ||
           base == USP_DM_UNSIGNED_LONG || base == USP_DM_DECIMAL;
}

/* A generator's value must pass the type: a constant always; any other for
 * a sample (agent 0 at its boot, every {i} = 1), which catches e.g. a
 * gauge on a boolean or a template too long for its string. */
static int check_value(struct usp_dm_model_err *err, const struct usp_profile_value *v,
                       const struct usp_dm_param *p)
{
    const char *c = usp_gen_const(v->gen);
    char why[160] = "";
    if (c) {
        if (usp_dm_type_check(p, c, why, sizeof why) != 0)
            return bind_err(err, &v->e, "value \"%.120s\" is not a valid %s: %s", c,
                            usp_dm_base_name(p->type->base), why);
        return 0;
    }
    enum usp_gen_kind k = usp_gen_kind(v->gen);
    unsigned base = p->type->item ? USP_DM_STRING : p->type->base;
    if ((k == USP_GEN_UPTIME || k == USP_GEN_COUNTER || k == USP_GEN_GAUGE) &&
        !base_numeric(base) && base != USP_DM_STRING)
        return bind_err(err, &v->e, "%s gives numbers, but the parameter is a %s",
                        usp_gen_source(v->gen), usp_dm_base_name(base));
    if (k == USP_GEN_NOW && base != USP_DM_DATETIME && base != USP_DM_STRING)
        return bind_err(err, &v->e, "now() gives a dateTime, but the parameter is a %s",
                        usp_dm_base_name(base));
    unsigned inst[USP_PROFILE_MAX_LEVELS];
    for (unsigned l = 0; l < v->e.nlevels && l < USP_PROFILE_MAX_LEVELS; l++)
        inst[l] = v->e.inst[l] ? v->e.inst[l] : 1;
    struct usp_gen_ctx ctx = {
        .agent = 0, .eid = "proto::uspsim-0", .boot_sec = 1700000000, .now_sec = 1700000000};
    char *buf = malloc(USP_DM_VALUE_MAX);
    if (!buf)
        return USP_ENOMEM;
    int rc = 0;
    if (usp_gen_eval(v->gen, &ctx, inst, v->e.nlevels, buf, USP_DM_VALUE_MAX) != 0)
        rc = bind_err(err, &v->e, "value %s cannot be computed (longer than %d bytes?)",
                      usp_gen_source(v->gen), USP_DM_VALUE_MAX - 1);
    else if (usp_dm_type_check(p, buf, why, sizeof why) != 0)
        rc = bind_err(err, &v->e, "value %s gives \"%.100s\" (agent 0), not a valid %s: %s",
                      usp_gen_source(v->gen), buf, usp_dm_base_name(p->type->base), why);
    free(buf);
    return rc;
}

static int bind_values(struct usp_dm_model *m, struct usp_dm_model_err *err)
{
    const struct usp_profile *prof = m->profile;
    for (size_t i = 0; i < usp_profile_nvalues(prof); i++) {
        const struct usp_profile_value *v = usp_profile_value_at(prof, i);
        struct usp_dm_item it;
        if (usp_dm_lookup(m->schema, v->e.spath, &it) != 0 || it.kind != USP_DM_KIND_PARAM)
            return bind_err(err, &v->e, "no such parameter in %s", model_name(m->schema));
        if (!same_path(v->e.spath, it.object, it.param->name))
            return bind_err(err, &v->e, "instance numbers do not match the schema's %s%s",
                            it.object->path, it.param->name);
        struct dm_mparam *mp =
            &m->params[m->mobj[it.object->index].pbase + usp_dm_param_index(it.param)];
        if (mp->counts)
            return bind_err(err, &v->e,
                            "a NumberOfEntries parameter counts the rows of %s: "
                            "give an 'instances' line instead of a value",
                            mp->counts->path);
        int rc = check_value(err, v, it.param);
        if (rc)
            return rc;
        mp->slot = usp_profile_slot(prof, v->e.spath);
        if (!mp->slot)
            return bind_err(err, &v->e, "the profile has no value slot for it (internal)");
    }
    return 0;
}

static int bind_decls(struct usp_dm_model *m, struct usp_dm_model_err *err, uint32_t *which)
{
    const struct usp_profile *prof = m->profile;
    for (size_t i = 0; i < usp_profile_ninsts(prof); i++) {
        const struct usp_profile_inst *d = usp_profile_inst_at(prof, i);
        struct usp_dm_item it;
        if (usp_dm_lookup(m->schema, d->e.spath, &it) != 0 || it.kind != USP_DM_KIND_OBJECT) {
            /* Without the "{i}." the profile added: a single object? */
            char plain[USP_PROFILE_MAX_PATH + 8];
            size_t n = strlen(d->e.spath);
            snprintf(plain, sizeof plain, "%.*s", (int)(n > 4 ? n - 4 : n), d->e.spath);
            if (usp_dm_lookup(m->schema, plain, &it) == 0 && it.kind == USP_DM_KIND_OBJECT)
                return bind_err(err, &d->e, "%s is not a multi-instance object", it.object->path);
            return bind_err(err, &d->e, "no such object in %s", model_name(m->schema));
        }
        if (!(it.object->flags & USP_DM_OBJ_MULTI))
            return bind_err(err, &d->e, "%s is not a multi-instance object", it.object->path);
        if (!same_path(d->e.spath, it.object, NULL))
            return bind_err(err, &d->e, "instance numbers do not match the schema's %s",
                            it.object->path);
        if (d->max > it.object->max_entries)
            return bind_err(err, &d->e, "%u instances, but %s allows at most %u", d->max,
                            it.object->path, it.object->max_entries);
        which[i] = it.object->index;
    }
    return 0;
}

static int bind_cmds(struct usp_dm_model *m, struct usp_dm_model_err *err, uint32_t *which)
{
    const struct usp_profile *prof = m->profile;
    for (size_t i = 0; i < usp_profile_ncmds(prof); i++) {
        const struct usp_profile_cmd *c = usp_profile_cmd_at(prof, i);
        struct usp_dm_item it;
        if (usp_dm_lookup(m->schema, c->e.spath, &it) != 0 || it.kind != USP_DM_KIND_COMMAND)
            return bind_err(err, &c->e, "no such command in %s", model_name(m->schema));
        if (!same_path(c->e.spath, it.object, it.command->name))
            return bind_err(err, &c->e, "instance numbers do not match the schema's %s%s",
                            it.object->path, it.command->name);
        for (unsigned k = 0; k < c->nout; k++)
            if (!output_has(it.command->output, c->out[k].name))
                return bind_err(err, &c->e, "%s has no output argument %s", it.command->name,
                                c->out[k].name);
        which[i] = m->mobj[it.object->index].cbase + (uint32_t)(it.command - it.object->commands);
    }
    return 0;
}

/* Fills lists[k] (count[k] entries, taken from *pool) with the entries whose
 * target index is which[i], in precedence order. */
static void fill_lists(struct usp_dm_model *m, size_t nent,
                       const void *(*at)(const struct usp_profile *, size_t), const uint32_t *which,
                       size_t nidx, uint32_t *count, const void ***lists, const void ***pool)
{
    for (size_t i = 0; i < nent; i++)
        count[which[i]]++;
    for (size_t k = 0; k < nidx; k++) {
        lists[k] = *pool;
        *pool += count[k];
        count[k] = 0;
    }
    for (size_t i = 0; i < nent; i++) {
        uint32_t k = which[i];
        lists[k][count[k]++] = at(m->profile, i);
    }
    for (size_t k = 0; k < nidx; k++)
        if (count[k] > 1)
            qsort(lists[k], count[k], sizeof *lists[k], cmp_prec);
}

static const void *inst_at(const struct usp_profile *p, size_t i)
{
    return usp_profile_inst_at(p, i);
}

static const void *cmd_at(const struct usp_profile *p, size_t i)
{
    return usp_profile_cmd_at(p, i);
}

static void find_reboot_targets(struct usp_dm_model *m)
{
    struct usp_dm_item it;
    if (!usp_dm_lookup(m->schema, "Device.LocalAgent.Request.{i}.", &it) &&
        it.kind == USP_DM_KIND_OBJECT && (it.object->flags & USP_DM_OBJ_MULTI))
        m->request_table = it.object;
    if (!usp_dm_lookup(m->schema, "Device.LocalAgent.Subscription.{i}.Persistent", &it) &&
        it.kind == USP_DM_KIND_PARAM && (it.object->flags & USP_DM_OBJ_MULTI)) {
        m->subscription_table = it.object;
        m->subscription_persistent = it.param;
    }
}

/* Objects: parameter and command bases, levels, ancestors, subtrees. */
static int bind_objects(struct usp_dm_model *m, struct usp_dm_model_err *err)
{
    size_t nparams = 0, ncmds = 0, nchain = 0;
    for (size_t i = 0; i < m->nobjs; i++) {
        const struct usp_dm_object *o = usp_dm_schema_object(m->schema, i);
        struct dm_mobj *mo = &m->mobj[i];
        if (o->nparams > DM_MAX_PARAMS)
            return bind_err(err, NULL, "%s has %u parameters (at most %d supported)", o->path,
                            o->nparams, DM_MAX_PARAMS);
        mo->obj = o;
        mo->pbase = (uint32_t)nparams;
        mo->cbase = (uint32_t)ncmds;
        nparams += o->nparams;
        ncmds += o->ncommands;
        unsigned lv = 0;
        for (const struct usp_dm_object *p = o; p; p = p->parent)
            lv += (p->flags & USP_DM_OBJ_MULTI) != 0;
        if (lv > USP_DM_MAX_LEVELS)
            return bind_err(err, NULL, "%s has %u table levels (at most %d supported)", o->path, lv,
                            USP_DM_MAX_LEVELS);
        mo->levels = (uint8_t)lv;
        mo->chain = (uint32_t)nchain;
        nchain += lv;
    }
    for (size_t i = m->nobjs; i-- > 0;) {
        const struct usp_dm_object *o = m->mobj[i].obj;
        uint32_t end = (uint32_t)i + 1;
        for (uint32_t k = 0; k < o->nchildren; k++)
            if (m->mobj[o->children[k]->index].end > end)
                end = m->mobj[o->children[k]->index].end;
        m->mobj[i].end = end;
    }
    m->params = calloc(nparams ? nparams : 1, sizeof *m->params);
    m->cmds = calloc(ncmds ? ncmds : 1, sizeof *m->cmds);
    m->chain = calloc(nchain ? nchain : 1, sizeof *m->chain);
    if (!m->params || !m->cmds || !m->chain)
        return USP_ENOMEM;
    m->ncmds = ncmds;
    m->mem += nparams * sizeof *m->params + ncmds * sizeof *m->cmds + nchain * sizeof *m->chain;
    for (size_t i = 0; i < m->nobjs; i++) {
        const struct usp_dm_object *o = m->mobj[i].obj;
        unsigned l = m->mobj[i].levels;
        for (const struct usp_dm_object *p = o; p; p = p->parent)
            if (p->flags & USP_DM_OBJ_MULTI)
                m->chain[m->mobj[i].chain + --l] = p;
        const struct usp_dm_param *ne = o->num_entries_param;
        if ((o->flags & USP_DM_OBJ_MULTI) && ne && dm__owns(m, ne->parent))
            m->params[m->mobj[ne->parent->index].pbase + usp_dm_param_index(ne)].counts = o;
    }
    return 0;
}

static int bind_profile(struct usp_dm_model *m, struct usp_dm_model_err *err)
{
    const struct usp_profile *prof = m->profile;
    size_t nd = usp_profile_ninsts(prof), nc = usp_profile_ncmds(prof);
    size_t nidx = m->nobjs + m->ncmds;
    uint32_t *which_d = calloc(nd ? nd : 1, sizeof *which_d);
    uint32_t *which_c = calloc(nc ? nc : 1, sizeof *which_c);
    uint32_t *count = calloc(nidx, sizeof *count);
    const void ***lists = calloc(nidx, sizeof *lists);
    int rc = USP_ENOMEM;
    m->entries = calloc(nd + nc ? nd + nc : 1, sizeof *m->entries);
    if (!which_d || !which_c || !count || !lists || !m->entries)
        goto out;
    m->mem += (nd + nc) * sizeof *m->entries;
    if ((rc = bind_values(m, err)) != 0 || (rc = bind_decls(m, err, which_d)) != 0 ||
        (rc = bind_cmds(m, err, which_c)) != 0)
        goto out;
    const void **pool = m->entries;
    fill_lists(m, nd, inst_at, which_d, m->nobjs, count, lists, &pool);
    fill_lists(m, nc, cmd_at, which_c, m->ncmds, count + m->nobjs, lists + m->nobjs, &pool);
    for (size_t i = 0; i < m->nobjs; i++) {
        m->mobj[i].ndecl = count[i];
        m->mobj[i].decl = (const struct usp_profile_inst *const *)lists[i];
    }
    for (size_t i = 0; i < m->ncmds; i++) {
        m->cmds[i].n = count[m->nobjs + i];
        m->cmds[i].e = (const struct usp_profile_cmd *const *)lists[m->nobjs + i];
    }
    rc = 0;
out:
    free(which_d);
    free(which_c);
    free(count);
    free(lists);
    return rc;
}

int usp_dm_model_new(const struct usp_dm_schema *schema, const struct usp_profile *profile,
                     struct usp_dm_model **out, struct usp_dm_model_err *err)
{
    *out = NULL;
    if (err)
        err->msg[0] = '\0';
    size_t nobjs = usp_dm_schema_nobjects(schema);
    if (nobjs == 0 || nobjs > DM_MAX_OBJECTS)
        return bind_err(err, NULL, "the schema has %zu objects (1 to %d supported)", nobjs,
                        DM_MAX_OBJECTS);
    struct usp_dm_model *m = calloc(1, sizeof *m);
    if (!m)
        return USP_ENOMEM;
    m->schema = schema;
    m->profile = profile;
    m->nobjs = nobjs;
    m->mobj = calloc(nobjs, sizeof *m->mobj);
    m->mem = sizeof *m + nobjs * sizeof *m->mobj;
    int rc = m->mobj ? bind_objects(m, err) : USP_ENOMEM;
    if (!rc) {
        find_reboot_targets(m);
        if (profile)
            rc = bind_profile(m, err);
    }
    if (rc) {
        usp_dm_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void usp_dm_model_free(struct usp_dm_model *m)
{
    if (!m)
        return;
    free(m->mobj);
    free(m->params);
    free(m->cmds);
    free(m->chain);
    free(m->entries);
    free(m);
}

const struct usp_dm_schema *usp_dm_model_schema(const struct usp_dm_model *m)
{
    return m->schema;
}

const struct usp_profile *usp_dm_model_profile(const struct usp_dm_model *m)
{
    return m->profile;
}

size_t usp_dm_model_mem(const struct usp_dm_model *m)
{
    return m->mem;
}

const struct usp_profile_cmd *usp_dm_command_entry(const struct usp_dm_model *m,
                                                   const struct usp_dm_inst *o,
                                                   const struct usp_dm_command *cmd)
{
    if (!m || !o || !cmd || !dm__owns(m, cmd->parent) || o->obj != cmd->parent)
        return NULL;
    const struct dm_mcmd *mc =
        &m->cmds[m->mobj[cmd->parent->index].cbase + (uint32_t)(cmd - cmd->parent->commands)];
    for (uint32_t k = 0; k < mc->n; k++) {
        const struct usp_profile_entry *e = &mc->e[k]->e;
        bool ok = true;
        for (unsigned l = 0; ok && l < e->nlevels; l++)
            ok = !e->inst[l] || (l < o->n && o->inst[l] == e->inst[l]);
        if (ok)
            return mc->e[k];
    }
    return NULL;
}

#define TABLE_PARAM 0xffffu
#define REC_HDR     8u

struct usp_dm_overlay {
    uint32_t cap;     /* bytes of the block, this header included */
    uint32_t used;    /* end of the records */
    uint32_t nrec;    /* live records (slots at the end of the block) */
    uint32_t garbage; /* bytes of dead records */
};

/* A key: object, parameter (or TABLE_PARAM) and k instance numbers. */
struct key {
    uint32_t obj, param;
    unsigned k;
    const uint32_t *inst;
};

/* A decoded table record. The lists point into the overlay (unaligned). */
struct tab {
    uint32_t next, ndel, nadd;
    const unsigned char *del, *add;
};

static inline uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t rd16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline unsigned char *base(const struct usp_dm_overlay *ov)
{
    return (unsigned char *)ov;
}

static inline uint32_t *slots(const struct usp_dm_overlay *ov)
{
    return (uint32_t *)(void *)(base(ov) + ov->cap) - ov->nrec;
}

static inline unsigned key_k(const struct usp_dm_model *m, uint32_t obj, uint32_t param)
{
    unsigned lv = m->mobj[obj].levels;
    return param == TABLE_PARAM ? lv - 1 : lv;
}

static inline uint32_t rec_size(const struct usp_dm_model *m, const unsigned char *r)
{
    return REC_HDR + 4 * key_k(m, rd16(r), rd16(r + 2)) + rd32(r + 4);
}

static inline const unsigned char *rec_data(const struct usp_dm_model *m, const unsigned char *r)
{
    return r + REC_HDR + 4 * key_k(m, rd16(r), rd16(r + 2));
}

static int key_cmp(const struct key *k, const unsigned char *r)
{
    uint32_t o = rd16(r), p = rd16(r + 2);
    if (k->obj != o)
        return k->obj < o ? -1 : 1;
    if (k->param != p)
        return k->param < p ? -1 : 1;
    for (unsigned l = 0; l < k->k; l++) {
        uint32_t v = rd32(r + REC_HDR + 4 * l);
        if (k->inst[l] != v)
            return k->inst[l] < v ? -1 : 1;
    }
    return 0;
}

/* Binary search: true when found at *pos, else *pos is where it goes. */
static bool find(const struct usp_dm_overlay *ov, const struct key *k, uint32_t *pos)
{
    uint32_t lo = 0, hi = ov ? ov->nrec : 0;
    const uint32_t *s = ov ? slots(ov) : NULL;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(k, base(ov) + s[mid]);
        if (!c) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *pos = lo;
    return false;
}

static const unsigned char *lookup(const struct usp_dm_overlay *ov, const struct key *k)
{
    uint32_t pos;
    return find(ov, k, &pos) ? base(ov) + slots(ov)[pos] : NULL;
}

/* malloc chunks come in 16-byte steps with 8 bytes of overhead: asking for
 * 16n + 8 bytes wastes nothing. */
static uint32_t round_cap(size_t need)
{
    size_t c = ((need + 8 + 15) & ~(size_t)15) - 8;
    return (uint32_t)(c < 24 ? 24 : c);
}

/* Copies the live records of `ov` (which may be NULL) into a new block of
 * `cap` bytes, in slot order, leaving room as asked. */
static struct usp_dm_overlay *rebuild(const struct usp_dm_model *m, const struct usp_dm_overlay *ov,
                                      uint32_t cap)
{
    struct usp_dm_overlay *n = malloc(cap);
    if (!n)
        return NULL;
    n->cap = cap;
    n->used = sizeof *n;
    n->nrec = ov ? ov->nrec : 0;
    n->garbage = 0;
    if (ov) {
        const uint32_t *os = slots(ov);
        uint32_t *ns = slots(n);
        for (uint32_t i = 0; i < ov->nrec; i++) {
            const unsigned char *r = base(ov) + os[i];
            uint32_t sz = rec_size(m, r);
            memcpy(base(n) + n->used, r, sz);
            ns[i] = n->used;
            n->used += sz;
        }
    }
    return n;
}

/* Makes room for a record of `rsz` bytes (plus a slot when `slot`). */
static int reserve(struct usp_dm_agent *a, uint32_t rsz, bool slot)
{
    struct usp_dm_overlay *ov = a->ov;
    size_t need = rsz + (slot ? 4u : 0u);
    if (ov && (size_t)ov->cap - 4u * ov->nrec - ov->used >= need)
        return 0;
    size_t live = ov ? ov->used - sizeof *ov - ov->garbage : 0;
    size_t nrec = ov ? ov->nrec : 0;
    size_t want = sizeof(struct usp_dm_overlay) + live + 4 * nrec + need;
    /* Grow by a quarter (at least 32 bytes) unless collecting garbage
     * alone makes the room: slack is per agent, times 100,000. */
    if (!ov || want > ov->cap) {
        size_t slack = want / 4 < 32 ? 32 : want / 4;
        want += ov ? slack : 0;
    } else {
        want = ov->cap;
    }
    if (want > UINT32_MAX / 2)
        return USP_ENOMEM;
    struct usp_dm_overlay *n = rebuild(a->model, ov, round_cap(want));
    if (!n)
        return USP_ENOMEM;
    free(ov);
    a->ov = n;
    return 0;
}

/* Writes the record for `k` with `len` bytes of payload; `data` may be NULL
 * (the caller fills *out). Replaces an existing record. */
static int put(struct usp_dm_agent *a, const struct key *k, const void *data, uint32_t len,
               unsigned char **out)
{
    uint32_t pos;
    bool found = find(a->ov, k, &pos);
    uint32_t rsz = REC_HDR + 4 * k->k + len;
    if (found) {
        unsigned char *r = base(a->ov) + slots(a->ov)[pos];
        if (rd32(r + 4) == len) {
            if (data)
                memcpy(r + REC_HDR + 4 * k->k, data, len);
            if (out)
                *out = r + REC_HDR + 4 * k->k;
            return 0;
        }
    }
    int rc = reserve(a, rsz, !found);
    if (rc)
        return rc;
    struct usp_dm_overlay *ov = a->ov;
    unsigned char *r = base(ov) + ov->used;
    uint16_t o16 = (uint16_t)k->obj, p16 = (uint16_t)k->param;
    memcpy(r, &o16, 2);
    memcpy(r + 2, &p16, 2);
    memcpy(r + 4, &len, 4);
    if (k->k)
        memcpy(r + REC_HDR, k->inst, 4 * k->k);
    if (data)
        memcpy(r + REC_HDR + 4 * k->k, data, len);
    if (found) {
        uint32_t *s = slots(ov);
        ov->garbage += rec_size(a->model, base(ov) + s[pos]);
        s[pos] = ov->used;
    } else {
        uint32_t *s = slots(ov) - 1;
        memmove(s, s + 1, pos * sizeof *s);
        s[pos] = ov->used;
        ov->nrec++;
    }
    ov->used += rsz;
    if (out)
        *out = r + REC_HDR + 4 * k->k;
    return 0;
}

/* Removes the records for which drop(r) says so. */
static void drop_where(struct usp_dm_agent *a,
                       bool (*drop)(const struct usp_dm_model *, const unsigned char *,
                                    const void *),
                       const void *ctx)
{
    struct usp_dm_overlay *ov = a->ov;
    if (!ov)
        return;
    uint32_t *s = slots(ov);
    uint32_t keep = 0;
    /* Compacting in place from the top keeps the survivors' order. */
    for (uint32_t i = ov->nrec; i-- > 0;) {
        const unsigned char *r = base(ov) + s[i];
        if (drop(a->model, r, ctx)) {
            ov->garbage += rec_size(a->model, r);
        } else {
            s[ov->nrec - 1 - keep] = s[i];
            keep++;
        }
    }
    ov->nrec = keep;
    if (!keep) {
        free(ov);
        a->ov = NULL;
    }
}

/* --- Table records ------------------------------------------------------- */

static void tab_decode(const struct usp_dm_model *m, const unsigned char *r, struct tab *t)
{
    const unsigned char *d = rec_data(m, r);
    uint32_t len = rd32(r + 4);
    t->next = rd32(d);
    t->ndel = rd32(d + 4);
    t->del = d + 8;
    t->nadd = (len - 8) / 4 - t->ndel;
    t->add = t->del + 4 * t->ndel;
}

static bool in_list(const unsigned char *v, uint32_t n, uint32_t x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t y = rd32(v + 4 * mid);
        if (y == x)
            return true;
        if (x < y)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

static const unsigned char *table_rec(const struct usp_dm_agent *a, const struct usp_dm_object *t,
                                      const uint32_t *parent)
{
    if (!a->ov)
        return NULL;
    struct key k = {t->index, TABLE_PARAM, key_k(a->model, t->index, TABLE_PARAM), parent};
    return lookup(a->ov, &k);
}

/* --- Rows ---------------------------------------------------------------- */

/* The profile's row count for table `t` under `parent` (whose rows are all
 * profile rows). */
static uint32_t prof_count(const struct usp_dm_agent *a, const struct usp_dm_object *t,
                           const uint32_t *parent, unsigned n)
{
    const struct dm_mobj *mo = dm__mobj(a->model, t);
    for (uint32_t k = 0; k < mo->ndecl; k++) {
        const struct usp_profile_inst *d = mo->decl[k];
        bool ok = true;
        for (unsigned l = 0; ok && l < d->e.nlevels; l++)
            ok = !d->e.inst[l] || (l < n && parent[l] == d->e.inst[l]);
        if (ok) {
            unsigned pi[USP_DM_MAX_LEVELS];
            for (unsigned l = 0; l < n; l++)
                pi[l] = parent[l];
            return usp_profile_inst_count(d, a->index, pi, n);
        }
    }
    return 0;
}

/* Whether the rows inst[0..n) on the path of `obj` (n = its levels) all
 * exist; *prof tells whether they are all profile rows. */
static bool rows_exist(const struct usp_dm_agent *a, const struct usp_dm_object *obj,
                       const uint32_t *inst, unsigned n, bool *prof)
{
    const struct usp_dm_model *m = a->model;
    const struct dm_mobj *mo = dm__mobj(m, obj);
    const struct usp_dm_object *const *chain = &m->chain[mo->chain];
    bool p = true;
    for (unsigned l = 0; l < n; l++) {
        uint32_t r = inst[l];
        uint32_t cnt = p ? prof_count(a, chain[l], inst, l) : 0;
        const unsigned char *rec = table_rec(a, chain[l], inst);
        struct tab t;
        if (rec)
            tab_decode(m, rec, &t);
        if (r == 0)
            return false;
        if (r <= cnt) {
            if (rec && in_list(t.del, t.ndel, r))
                return false;
        } else {
            p = false;
            if (!rec || !in_list(t.add, t.nadd, r))
                return false;
        }
    }
    if (prof)
        *prof = p;
    return true;
}

static bool inst_ok(const struct usp_dm_agent *a, const struct usp_dm_inst *o)
{
    return o && a && a->model && dm__owns(a->model, o->obj) &&
           o->n == dm__mobj(a->model, o->obj)->levels;
}

bool usp_dm_exists(const struct usp_dm_agent *a, const struct usp_dm_inst *o)
{
    if (!o || !a || !a->model || !dm__owns(a->model, o->obj))
        return false;
    unsigned lv = dm__mobj(a->model, o->obj)->levels;
    if (o->n == lv)
        return rows_exist(a, o->obj, o->inst, o->n, NULL);
    /* A table path ("Device.IP.Interface."): its parent rows. */
    return (o->obj->flags & USP_DM_OBJ_MULTI) && o->n + 1 == lv &&
           rows_exist(a, o->obj, o->inst, o->n, NULL);
}

/* The parent rows of table `t`: 0 when they exist, with the profile count
 * of the table under them and a copy of its table record's lists. */
struct rows {
    uint32_t cnt; /* profile rows 1..cnt */
    uint32_t next;
    uint32_t ndel, nadd;
    uint32_t *del, *add; /* point into buf or the heap */
    uint32_t buf[64];
    uint32_t *heap;
};

static int rows_load(const struct usp_dm_agent *a, const struct usp_dm_object *t,
                     const uint32_t *parent, unsigned n, struct rows *rw)
{
    rw->heap = NULL;
    rw->ndel = rw->nadd = rw->next = 0;
    rw->del = rw->add = rw->buf;
    bool prof = true;
    if (!t || !dm__owns(a->model, t) || !(t->flags & USP_DM_OBJ_MULTI) ||
        n + 1 != dm__mobj(a->model, t)->levels)
        return USP_EINVAL;
    if (n &&
        !rows_exist(a, a->model->chain[dm__mobj(a->model, t)->chain + n - 1], parent, n, &prof))
        return USP_ENOENT;
    rw->cnt = prof ? prof_count(a, t, parent, n) : 0;
    const unsigned char *rec = table_rec(a, t, parent);
    if (!rec)
        return 0;
    struct tab tb;
    tab_decode(a->model, rec, &tb);
    size_t tot = (size_t)tb.ndel + tb.nadd;
    uint32_t *v = rw->buf;
    if (tot > sizeof rw->buf / sizeof rw->buf[0]) {
        v = rw->heap = malloc(tot * sizeof *v);
        if (!v)
            return USP_ENOMEM;
    }
    memcpy(v, tb.del, 4 * tot); /* del and add are adjacent */
    rw->del = v;
    rw->add = v + tb.ndel;
    rw->ndel = tb.ndel;
    rw->nadd = tb.nadd;
    rw->next = tb.next;
    return 0;
}

static void rows_done(struct rows *rw)
{
    free(rw->heap);
}

static uint32_t rows_count(const struct rows *rw)
{
    return rw->cnt - rw->ndel + rw->nadd;
}

static const uint32_t *parent_inst(const struct usp_dm_inst *parent, unsigned *n)
{
    *n = parent ? parent->n : 0;
    return parent ? parent->inst : NULL;
}

int usp_dm_instances(const struct usp_dm_agent *a, const struct usp_dm_object *table,
                     const struct usp_dm_inst *parent, usp_dm_inst_cb cb, void *ctx)
{
    unsigned n;
    const uint32_t *pi = parent_inst(parent, &n);
    struct rows rw;
    int rc = rows_load(a, table, pi, n, &rw);
    if (rc)
        return rc == USP_ENOMEM ? rc : 0;
    uint32_t d = 0;
    for (uint32_t r = 1; r <= rw.cnt && !rc; r++) {
        if (d < rw.ndel && rw.del[d] == r) {
            d++;
            continue;
        }
        rc = cb(ctx, r);
    }
    for (uint32_t k = 0; k < rw.nadd && !rc; k++)
        rc = cb(ctx, rw.add[k]);
    rows_done(&rw);
    return rc;
}

uint32_t usp_dm_count(const struct usp_dm_agent *a, const struct usp_dm_object *table,
                      const struct usp_dm_inst *parent)
{
    unsigned n;
    const uint32_t *pi = parent_inst(parent, &n);
    struct rows rw;
    if (rows_load(a, table, pi, n, &rw))
        return 0;
    uint32_t c = rows_count(&rw);
    rows_done(&rw);
    return c;
}

/* Rewrites the table record of `t` under `parent` from `rw` (whose lists
 * the caller changed). */
static int rows_store(struct usp_dm_agent *a, const struct usp_dm_object *t, const uint32_t *parent,
                      unsigned n, const struct rows *rw)
{
    struct key k = {t->index, TABLE_PARAM, n, parent};
    uint32_t len = 8 + 4 * (rw->ndel + rw->nadd);
    unsigned char *d;
    int rc = put(a, &k, NULL, len, &d);
    if (rc)
        return rc;
    memcpy(d, &rw->next, 4);
    memcpy(d + 4, &rw->ndel, 4);
    memmove(d + 8, rw->del, 4 * rw->ndel);
    memmove(d + 8 + 4 * rw->ndel, rw->add, 4 * rw->nadd);
    return 0;
}

/* Room for one more number in rw's lists. */
static int rows_grow(struct rows *rw)
{
    size_t tot = (size_t)rw->ndel + rw->nadd + 1;
    if (tot <= sizeof rw->buf / sizeof rw->buf[0] && !rw->heap)
        return 0;
    uint32_t *v = malloc(tot * sizeof *v);
    if (!v)
        return USP_ENOMEM;
    memcpy(v, rw->del, 4 * rw->ndel);
    memcpy(v + rw->ndel, rw->add, 4 * rw->nadd);
    free(rw->heap);
    rw->heap = v;
    rw->del = v;
    rw->add = v + rw->ndel;
    return 0;
}

int usp_dm_add(struct usp_dm_agent *a, const struct usp_dm_object *table,
               const struct usp_dm_inst *parent, uint32_t *inst)
{
    unsigned n;
    const uint32_t *pi = parent_inst(parent, &n);
    struct rows rw;
    int rc = rows_load(a, table, pi, n, &rw);
    if (rc)
        return rc == USP_EINVAL ? USP_ENOENT : rc;
    if (rows_count(&rw) >= table->max_entries) {
        rc = USP_ERANGE;
        goto out;
    }
    uint32_t next = rw.next > rw.cnt + 1 ? rw.next : rw.cnt + 1;
    if (next == 0 || next == UINT32_MAX) { /* numbers are never reused: none left */
        rc = USP_ERANGE;
        goto out;
    }
    if ((rc = rows_grow(&rw)) != 0)
        goto out;
    rw.add[rw.nadd++] = next; /* above everything: the list stays sorted */
    rw.next = next + 1;
    if ((rc = rows_store(a, table, pi, n, &rw)) != 0)
        goto out;
    *inst = next;
out:
    rows_done(&rw);
    return rc;
}

struct subtree {
    uint32_t lo, hi; /* object indexes */
    unsigned k;      /* instance numbers to compare */
    const uint32_t *inst;
};

static bool in_subtree(const struct usp_dm_model *m, const unsigned char *r, const void *ctx)
{
    const struct subtree *st = ctx;
    uint32_t o = rd16(r);
    if (o < st->lo || o >= st->hi || key_k(m, o, rd16(r + 2)) < st->k)
        return false;
    for (unsigned l = 0; l < st->k; l++)
        if (rd32(r + REC_HDR + 4 * l) != st->inst[l])
            return false;
    return true;
}

int usp_dm_delete(struct usp_dm_agent *a, const struct usp_dm_inst *row)
{
    if (!inst_ok(a, row) || !(row->obj->flags & USP_DM_OBJ_MULTI) || !row->n)
        return USP_ENOENT;
    const struct usp_dm_object *t = row->obj;
    unsigned n = row->n - 1;
    uint32_t r = row->inst[n];
    if (!rows_exist(a, t, row->inst, row->n, NULL))
        return USP_ENOENT;
    struct rows rw;
    int rc = rows_load(a, t, row->inst, n, &rw);
    if (rc)
        return rc;
    /* The row's values and the tables below it go first. */
    struct subtree st = {t->index, dm__mobj(a->model, t)->end, row->n, row->inst};
    drop_where(a, in_subtree, &st);
    if ((rc = rows_grow(&rw)) != 0)
        goto out;
    if (r <= rw.cnt) {
        uint32_t at = 0;
        while (at < rw.ndel && rw.del[at] < r)
            at++;
        /* The add list follows the del list in the same buffer. */
        memmove(rw.del + at + 1, rw.del + at, 4 * ((rw.ndel - at) + rw.nadd));
        rw.del[at] = r;
        rw.ndel++;
        rw.add = rw.del + rw.ndel;
    } else {
        uint32_t at = 0;
        while (at < rw.nadd && rw.add[at] != r)
            at++;
        memmove(rw.add + at, rw.add + at + 1, 4 * (rw.nadd - at - 1));
        rw.nadd--;
    }
    if (rw.next < rw.cnt + 1)
        rw.next = rw.cnt + 1;
    if (r >= rw.next)
        rw.next = r + 1;
    rc = rows_store(a, t, row->inst, n, &rw);
out:
    rows_done(&rw);
    return rc;
}

/* --- Values -------------------------------------------------------------- */

void usp_dm_agent_gen_ctx(const struct usp_dm_agent *a, struct usp_gen_ctx *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ctx->agent = a->index;
    ctx->eid = a->eid;
    ctx->boot_sec = a->boot_sec;
    ctx->boot_usec = 0;
    ctx->now_sec = (int64_t)ts.tv_sec + a->skew_sec;
    ctx->now_usec = (uint32_t)(ts.tv_nsec / 1000);
}

int64_t usp_dm_agent_now(const struct usp_dm_agent *a)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec + a->skew_sec;
}

static int copy_out(char *buf, size_t len, const char *v, size_t n)
{
    if (!len)
        return USP_ERANGE;
    if (n >= len) {
        memcpy(buf, v, len - 1);
        buf[len - 1] = '\0';
        return USP_ERANGE;
    }
    memcpy(buf, v, n);
    buf[n] = '\0';
    return 0;
}

static const char *zero_value(const struct usp_dm_param *p)
{
    if (p->type->item)
        return "";
    switch (p->type->base) {
    case USP_DM_BOOLEAN:
        return "false";
    case USP_DM_INT:
    case USP_DM_UNSIGNED_INT:
    case USP_DM_LONG:
    case USP_DM_UNSIGNED_LONG:
    case USP_DM_DECIMAL:
        return "0";
    case USP_DM_DATETIME:
        return "0001-01-01T00:00:00Z";
    default:
        return "";
    }
}

static const unsigned char *value_rec(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                                      const struct usp_dm_param *p)
{
    if (!a->ov)
        return NULL;
    struct key k = {o->obj->index, usp_dm_param_index(p), o->n, o->inst};
    return lookup(a->ov, &k);
}

static const struct usp_profile_value *
prof_value(const struct usp_dm_agent *a, const struct usp_dm_inst *o, const struct usp_dm_param *p)
{
    const struct usp_profile_slot *s = dm__mparam(a->model, p)->slot;
    if (!s)
        return NULL;
    unsigned pi[USP_DM_MAX_LEVELS];
    for (unsigned l = 0; l < o->n; l++)
        pi[l] = o->inst[l];
    return usp_profile_slot_value(s, pi, o->n);
}

/* The value of a row known to exist (`prof`: a profile row). */
static int read_value(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                      const struct usp_dm_param *p, bool prof, char *buf, size_t len)
{
    const struct dm_mparam *mp = dm__mparam(a->model, p);
    if (mp->counts) {
        char num[16];
        int n = snprintf(num, sizeof num, "%u", usp_dm_count(a, mp->counts, o));
        return copy_out(buf, len, num, (size_t)n);
    }
    const unsigned char *r = value_rec(a, o, p);
    if (r)
        return copy_out(buf, len, (const char *)rec_data(a->model, r), rd32(r + 4));
    const struct usp_profile_value *v = prof ? prof_value(a, o, p) : NULL;
    if (v) {
        struct usp_gen_ctx ctx;
        unsigned pi[USP_DM_MAX_LEVELS];
        for (unsigned l = 0; l < o->n; l++)
            pi[l] = o->inst[l];
        if (usp_gen_is_dynamic(v->gen)) {
            usp_dm_agent_gen_ctx(a, &ctx);
        } else {
            /* Reading the clock costs more than most values. */
            ctx = (struct usp_gen_ctx){
                .agent = a->index, .eid = a->eid, .boot_sec = a->boot_sec, .now_sec = a->boot_sec};
        }
        if (!len)
            return USP_ERANGE;
        int rc = usp_gen_eval(v->gen, &ctx, pi, o->n, buf, len);
        return rc == USP_ERANGE ? rc : 0;
    }
    const char *d = p->default_value ? p->default_value : zero_value(p);
    return copy_out(buf, len, d, strlen(d));
}

static bool param_ok(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                     const struct usp_dm_param *p)
{
    return inst_ok(a, o) && p && p->parent == o->obj;
}

int usp_dm_get(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
               const struct usp_dm_param *p, char *buf, size_t len)
{
    bool prof;
    if (len)
        buf[0] = '\0';
    if (!param_ok(a, o, p) || !rows_exist(a, o->obj, o->inst, o->n, &prof))
        return USP_ENOENT;
    return read_value(a, o, p, prof, buf, len);
}

bool usp_dm_is_dynamic(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                       const struct usp_dm_param *p)
{
    bool prof;
    if (!param_ok(a, o, p) || dm__mparam(a->model, p)->counts || value_rec(a, o, p) ||
        !rows_exist(a, o->obj, o->inst, o->n, &prof) || !prof)
        return false;
    const struct usp_profile_value *v = prof_value(a, o, p);
    return v && usp_gen_is_dynamic(v->gen);
}

static int why_set(char *why, size_t whylen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int why_set(char *why, size_t whylen, int code, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Strong references must name something that exists (R-ARC.12). */
static int check_refs(const struct usp_dm_agent *a, const struct usp_dm_param *p, const char *value,
                      char *why, size_t whylen)
{
    const struct usp_dm_type *t = p->type;
    const struct usp_dm_pathref *pr = t->pathref;
    if (!pr && t->item)
        pr = t->item->pathref;
    if (!pr || pr->ref_type != USP_DM_REF_STRONG)
        return 0;
    const char *s = value;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        while (n && (*s == ' '))
            s++, n--;
        while (n && s[n - 1] == ' ')
            n--;
        if (n) {
            struct usp_dm_inst o;
            const struct usp_dm_param *tp = NULL;
            int rc = dm__parse_ref(a->model, s, n, &o, &tp);
            if (rc || !usp_dm_exists(a, &o) || o.n != dm__mobj(a->model, o.obj)->levels)
                return why_set(why, whylen, USP_ERR_INVALID_VALUE,
                               "%.*s does not exist (strong reference)", (int)(n > 200 ? 200 : n),
                               s);
        }
        if (!e)
            return 0;
        s = e + 1;
    }
}

static bool key_has(const struct usp_dm_unique_key *k, uint32_t pidx)
{
    for (uint32_t i = 0; i < k->nparams; i++)
        if (k->params[i] == pidx)
            return true;
    return false;
}

struct uniq {
    const struct usp_dm_agent *a;
    const struct usp_dm_inst *row;
    const struct usp_dm_unique_key *key;
    const struct usp_dm_param *p; /* the parameter being set, or NULL */
    const char *value;            /* its new value */
    char *mine, *theirs;          /* USP_DM_VALUE_MAX each */
    uint32_t clash;
};

static int uniq_cmp(void *ctx, uint32_t inst)
{
    struct uniq *u = ctx;
    uint32_t self = u->row->inst[u->row->n - 1];
    if (inst == self)
        return 0;
    struct usp_dm_inst other = *u->row;
    other.inst[other.n - 1] = inst;
    const struct usp_dm_object *o = u->row->obj;
    for (uint32_t i = 0; i < u->key->nparams; i++) {
        const struct usp_dm_param *kp = &o->params[u->key->params[i]];
        const char *mine = u->value;
        if (kp != u->p) {
            if (usp_dm_get(u->a, u->row, kp, u->mine, USP_DM_VALUE_MAX) < 0)
                return 0;
            mine = u->mine;
        }
        if (usp_dm_get(u->a, &other, kp, u->theirs, USP_DM_VALUE_MAX) < 0 ||
            strcmp(mine, u->theirs) != 0)
            return 0;
    }
    u->clash = inst;
    return 1;
}

/* 0, or 7025 when a unique key of `row` (with `p` set to `value` when p is
 * not NULL; only keys holding p then) equals a sibling's. */
static int check_unique(const struct usp_dm_agent *a, const struct usp_dm_inst *row,
                        const struct usp_dm_param *p, const char *value, char *why, size_t whylen)
{
    const struct usp_dm_object *o = row->obj;
    if (!(o->flags & USP_DM_OBJ_MULTI) || !o->nkeys || !row->n)
        return 0;
    int rc = 0;
    char *buf = NULL;
    for (uint32_t k = 0; k < o->nkeys && !rc; k++) {
        if (p && !key_has(&o->keys[k], usp_dm_param_index(p)))
            continue;
        if (!buf && !(buf = malloc(2 * USP_DM_VALUE_MAX)))
            return USP_ENOMEM;
        struct uniq u = {a, row, &o->keys[k], p, value, buf, buf + USP_DM_VALUE_MAX, 0};
        struct usp_dm_inst parent = *row;
        parent.n--;
        int w = usp_dm_instances(a, o, &parent, uniq_cmp, &u);
        if (w < 0) {
            rc = w;
        } else if (w > 0) {
            char names[160] = "";
            size_t at = 0;
            for (uint32_t i = 0; i < o->keys[k].nparams && at < sizeof names; i++)
                at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? "," : "",
                                       o->params[o->keys[k].params[i]].name);
            rc = why_set(why, whylen, USP_ERR_UNIQUE_KEY_CONFLICT,
                         "unique key (%s) already used by instance %u", names, u.clash);
        }
    }
    free(buf);
    return rc;
}

int usp_dm_check_unique(const struct usp_dm_agent *a, const struct usp_dm_inst *row, char *why,
                        size_t whylen)
{
    if (!inst_ok(a, row) || !usp_dm_exists(a, row))
        return why_set(why, whylen, USP_ERR_OBJECT_DOES_NOT_EXIST, "no such object");
    return check_unique(a, row, NULL, NULL, why, whylen);
}

static int do_set(struct usp_dm_agent *a, const struct usp_dm_inst *o, const struct usp_dm_param *p,
                  const char *value, bool keys, bool *changed, char *why, size_t whylen)
{
    bool prof;
    if (changed)
        *changed = false;
    if (why && whylen)
        why[0] = '\0';
    if (!param_ok(a, o, p))
        return why_set(why, whylen, USP_ERR_INVALID_PATH, "no such parameter in this object");
    if (!value)
        return why_set(why, whylen, USP_ERR_INVALID_VALUE, "no value");
    if (!rows_exist(a, o->obj, o->inst, o->n, &prof))
        return why_set(why, whylen, USP_ERR_OBJECT_DOES_NOT_EXIST, "the object does not exist");
    if (dm__mparam(a->model, p)->counts)
        return why_set(why, whylen, USP_ERR_PARAM_READ_ONLY,
                       "%s is computed from the rows of its table", p->name);
    size_t vlen = strlen(value);
    if (vlen >= USP_DM_VALUE_MAX)
        return why_set(why, whylen, USP_ERR_INVALID_VALUE, "value longer than %d bytes",
                       USP_DM_VALUE_MAX - 1);
    int rc = usp_dm_type_check(p, value, why, whylen);
    if (rc)
        return rc;
    if ((rc = check_refs(a, p, value, why, whylen)) != 0)
        return rc;
    const unsigned char *rec = value_rec(a, o, p);
    bool once = p->access == USP_DM_WRITE_ONCE_READ_ONLY;
    char *cur = malloc(USP_DM_VALUE_MAX);
    if (!cur)
        return USP_ENOMEM;
    read_value(a, o, p, prof, cur, USP_DM_VALUE_MAX);
    if (once && (rec || (prof && prof_value(a, o, p) && *cur))) {
        rc = why_set(why, whylen, USP_ERR_PARAM_READ_ONLY,
                     "%s is writeOnceReadOnly and already has a value", p->name);
        goto out;
    }
    bool diff = strcmp(cur, value) != 0;
    if (diff && keys && (rc = check_unique(a, o, p, value, why, whylen)) != 0)
        goto out;
    if (diff || once) {
        struct key k = {o->obj->index, usp_dm_param_index(p), o->n, o->inst};
        if ((rc = put(a, &k, value, (uint32_t)vlen, NULL)) != 0)
            goto out;
    }
    if (changed)
        *changed = diff;
out:
    free(cur);
    return rc;
}

int usp_dm_set(struct usp_dm_agent *a, const struct usp_dm_inst *o, const struct usp_dm_param *p,
               const char *value, bool *changed, char *why, size_t whylen)
{
    return do_set(a, o, p, value, true, changed, why, whylen);
}

int usp_dm_set_nokeys(struct usp_dm_agent *a, const struct usp_dm_inst *o,
                      const struct usp_dm_param *p, const char *value, bool *changed, char *why,
                      size_t whylen)
{
    return do_set(a, o, p, value, false, changed, why, whylen);
}

/* --- Agent life cycle ---------------------------------------------------- */

void usp_dm_agent_init(struct usp_dm_agent *a, const struct usp_dm_model *m, uint64_t index,
                       const char *eid, int64_t boot_sec)
{
    memset(a, 0, sizeof *a);
    a->model = m;
    a->index = index;
    a->eid = eid;
    a->boot_sec = boot_sec;
}

void usp_dm_agent_cleanup(struct usp_dm_agent *a)
{
    free(a->ov);
    a->ov = NULL;
}

struct collect {
    uint32_t *v;
    size_t n, cap;
};

static int collect_cb(void *ctx, uint32_t inst)
{
    struct collect *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        uint32_t *v = realloc(c->v, cap * sizeof *v);
        if (!v)
            return USP_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = inst;
    return 0;
}

/* Top-level tables only (LocalAgent.Request and Subscription are). */
static void drop_rows(struct usp_dm_agent *a, const struct usp_dm_object *t,
                      const struct usp_dm_param *flag)
{
    if (!t || dm__mobj(a->model, t)->levels != 1)
        return;
    struct collect c = {0};
    if (usp_dm_instances(a, t, NULL, collect_cb, &c) == 0) {
        char v[8];
        for (size_t i = 0; i < c.n; i++) {
            struct usp_dm_inst row = {.obj = t, .n = 1, .inst = {c.v[i]}};
            if (flag && (usp_dm_get(a, &row, flag, v, sizeof v) != 0 ||
                         (strcmp(v, "false") && strcmp(v, "0"))))
                continue;
            usp_dm_delete(a, &row);
        }
    }
    free(c.v);
}

void usp_dm_agent_reboot(struct usp_dm_agent *a, int64_t now_sec)
{
    const struct usp_dm_model *m = a->model;
    drop_rows(a, m->request_table, NULL);
    drop_rows(a, m->subscription_table, m->subscription_persistent);
    a->boot_sec = now_sec;
}

void usp_dm_agent_factory_reset(struct usp_dm_agent *a, int64_t now_sec)
{
    free(a->ov);
    a->ov = NULL;
    a->boot_sec = now_sec;
}

size_t usp_dm_agent_mem(const struct usp_dm_agent *a)
{
    return a->ov ? a->ov->cap : 0;
}

size_t usp_dm_agent_records(const struct usp_dm_agent *a)
{
    return a->ov ? a->ov->nrec : 0;
}
