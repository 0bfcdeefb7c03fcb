/* The immutable data-model schema: its memory pool, string interning, the
 * builder the XML loader fills, the freeze step that turns the builder into
 * compact sorted arrays, and the read-only lookups every agent uses. */
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dm_int.h"
#include "usp/errors.h"

struct usp_dm_schema {
    struct dm_pool pool; /* owns everything below except `regexes` */
    struct dm_vec regexes;
    const char *model;
    const struct usp_dm_object *objects;
    size_t nobjects;
    const struct usp_dm_type **datatypes; /* sorted by name */
    size_t ndatatypes;
    struct usp_dm_counts counts;
};

/* ---- pool ---- */

struct dm_chunk {
    struct dm_chunk *next;
    size_t cap, used;
    max_align_t data[];
};

#define DM_CHUNK_SIZE ((size_t)64 * 1024)
#define DM_ALIGN      alignof(max_align_t)

void *dm_schema__alloc(struct dm_pool *p, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + DM_ALIGN - 1) & ~(DM_ALIGN - 1);
    struct dm_chunk *c = p->head;
    if (c && c->cap - c->used >= n) {
        void *r = (unsigned char *)c->data + c->used;
        c->used += n;
        return r;
    }
    /* Big requests get a chunk of their own, kept behind the current one so
     * its free space is not lost. */
    size_t cap = n > DM_CHUNK_SIZE / 4 ? n : DM_CHUNK_SIZE;
    struct dm_chunk *nc = calloc(1, sizeof *nc + cap);
    if (!nc)
        return NULL;
    nc->cap = cap;
    nc->used = n;
    p->bytes += sizeof *nc + cap;
    if (c && cap != DM_CHUNK_SIZE) {
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        p->head = nc;
    }
    return nc->data;
}

void *dm_schema__memdup(struct dm_pool *p, const void *src, size_t n)
{
    void *r = dm_schema__alloc(p, n);
    if (r && n)
        memcpy(r, src, n);
    return r;
}

void dm_schema__pool_release(struct dm_pool *p)
{
    struct dm_chunk *c = p->head;
    while (c) {
        struct dm_chunk *next = c->next;
        free(c);
        c = next;
    }
    p->head = NULL;
    p->bytes = 0;
}

/* ---- string interning ---- */

struct dm_str_slot {
    const char *s;
    uint32_t len, hash;
};

/* Eight bytes at a time, multiply and fold: names and paths are short. */
static uint32_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = UINT64_C(0x9E3779B97F4A7C15) ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 32;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 29;
    return (uint32_t)h;
}

void dm_schema__strtab_init(struct dm_strtab *t, struct dm_pool *pool)
{
    memset(t, 0, sizeof *t);
    t->pool = pool;
}

void dm_schema__strtab_cleanup(struct dm_strtab *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->n = 0;
}

static int strtab_grow(struct dm_strtab *t)
{
    size_t cap = t->cap ? t->cap * 2 : 4096;
    struct dm_str_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return USP_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].s)
            continue;
        size_t j = t->slots[i].hash & (cap - 1);
        while (slots[j].s)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

const char *dm_schema__intern(struct dm_strtab *t, const char *s, size_t len)
{
    if (len > UINT32_MAX - 1)
        return NULL;
    if ((t->n + 1) * 10 > t->cap * 7 && strtab_grow(t) < 0)
        return NULL;
    uint32_t h = hash_bytes(s, len);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].s) {
        const struct dm_str_slot *e = &t->slots[j];
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0)
            return e->s;
        j = (j + 1) & (t->cap - 1);
    }
    char *copy = dm_schema__alloc(t->pool, len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    t->slots[j] = (struct dm_str_slot){copy, (uint32_t)len, h};
    t->n++;
    return copy;
}

/* ---- growable arrays ---- */

void *dm_schema__vec_push(struct dm_vec *a, size_t size)
{
    if (a->n == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 4;
        if (cap < a->cap || (size_t)cap > SIZE_MAX / size)
            return NULL;
        void *v = realloc(a->v, (size_t)cap * size);
        if (!v)
            return NULL;
        a->v = v;
        a->cap = cap;
    }
    void *r = (unsigned char *)a->v + (size_t)a->n * size;
    memset(r, 0, size);
    a->n++;
    return r;
}

void dm_schema__vec_free(struct dm_vec *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* ---- errors ---- */

void dm_schema__errorf(struct usp_dm_error *err, int line, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->line = line;
}

/* ---- builder ---- */

static void bobj_free(struct dm_bobj *o);

static void scope_cleanup(struct dm_bscope *s)
{
    bobj_free(&s->root);
    for (uint32_t i = 0; i < s->objs.n; i++)
        bobj_free(DM_VEC_AT(s->objs, struct dm_bobj *, i));
    dm_schema__vec_free(&s->objs);
    free(s->map);
    s->map = NULL;
}

static void bobj_free(struct dm_bobj *o)
{
    for (uint32_t i = 0; i < o->cmds.n; i++) {
        struct dm_bcmd *c = &DM_VEC_AT(o->cmds, struct dm_bcmd, i);
        if (c->input)
            scope_cleanup(c->input);
        if (c->output)
            scope_cleanup(c->output);
        if (c->args)
            scope_cleanup(c->args);
    }
    dm_schema__vec_free(&o->params);
    dm_schema__vec_free(&o->cmds);
    dm_schema__vec_free(&o->keys); /* key name arrays live in the tmp pool */
}

int dm_schema__builder_init(struct dm_builder *b, struct dm_pool *pool, unsigned flags)
{
    memset(b, 0, sizeof *b);
    b->pool = pool;
    b->flags = flags;
    dm_schema__strtab_init(&b->strs, pool);
    dm_types__init(&b->types, pool, &b->strs);
    b->model.root.path = "";
    return 0;
}

void dm_schema__builder_cleanup(struct dm_builder *b)
{
    scope_cleanup(&b->model);
    dm_schema__vec_free(&b->datatypes);
    dm_types__cleanup(&b->types);
    dm_types__regexes_free(&b->types.regexes);
    dm_schema__strtab_cleanup(&b->strs);
    dm_schema__pool_release(&b->tmp);
}

struct dm_bscope *dm_schema__scope_new(struct dm_builder *b)
{
    struct dm_bscope *s = dm_schema__alloc(&b->tmp, sizeof *s);
    if (s)
        s->root.path = "";
    return s;
}

static size_t ptr_hash(const void *p)
{
    return (size_t)(((uintptr_t)p >> 3) * UINT64_C(0x9E3779B97F4A7C15) >> 17);
}

struct dm_bobj *dm_schema__scope_find(const struct dm_bscope *s, const char *path)
{
    if (!s->cap)
        return NULL;
    size_t j = ptr_hash(path) & (s->cap - 1);
    while (s->map[j]) {
        if (s->map[j]->path == path)
            return s->map[j];
        j = (j + 1) & (s->cap - 1);
    }
    return NULL;
}

static int scope_grow(struct dm_bscope *s)
{
    size_t cap = s->cap ? s->cap * 2 : 16;
    struct dm_bobj **map = calloc(cap, sizeof *map);
    if (!map)
        return USP_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->map[i])
            continue;
        size_t j = ptr_hash(s->map[i]->path) & (cap - 1);
        while (map[j])
            j = (j + 1) & (cap - 1);
        map[j] = s->map[i];
    }
    free(s->map);
    s->map = map;
    s->cap = cap;
    return 0;
}

struct dm_bobj *dm_schema__scope_add(struct dm_builder *b, struct dm_bscope *s, const char *path)
{
    if ((s->objs.n + 1) * 2 > s->cap && scope_grow(s) < 0)
        return NULL;
    struct dm_bobj *o = dm_schema__alloc(&b->tmp, sizeof *o);
    struct dm_bobj **slot = o ? dm_schema__vec_push(&s->objs, sizeof *slot) : NULL;
    if (!slot)
        return NULL;
    *slot = o;
    o->path = path;
    o->order = s->objs.n - 1;
    o->max_entries = 1;
    o->min_entries = 1;
    size_t j = ptr_hash(path) & (s->cap - 1);
    while (s->map[j])
        j = (j + 1) & (s->cap - 1);
    s->map[j] = o;
    return o;
}

struct dm_bparam *dm_schema__bobj_param(struct dm_bobj *o, const char *name)
{
    for (uint32_t i = 0; i < o->params.n; i++) {
        struct dm_bparam *p = &DM_VEC_AT(o->params, struct dm_bparam, i);
        if (p->name == name)
            return p;
    }
    return NULL;
}

struct dm_bcmd *dm_schema__bobj_cmd(struct dm_bobj *o, const char *name)
{
    for (uint32_t i = 0; i < o->cmds.n; i++) {
        struct dm_bcmd *c = &DM_VEC_AT(o->cmds, struct dm_bcmd, i);
        if (c->name == name)
            return c;
    }
    return NULL;
}

/* ---- freeze ---- */

struct fz {
    struct dm_builder *b;
    struct usp_dm_error *err;
    struct usp_dm_counts *c;
    struct usp_dm_object *empty_args;
};

/* Where an object's path splits: parent path is path[0..*plen), the object's
 * own name is path[*nstart..*nstart+*nlen). */
static void split_path(const char *path, size_t *plen, size_t *nstart, size_t *nlen)
{
    size_t len = strlen(path);
    if (len && path[len - 1] == '.')
        len--;
    if (len >= 4 && memcmp(path + len - 4, ".{i}", 4) == 0)
        len -= 4;
    size_t dot = len;
    while (dot > 0 && path[dot - 1] != '.')
        dot--;
    *plen = dot;
    *nstart = dot;
    *nlen = len - dot;
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

static int cmp_param(const void *a, const void *b)
{
    return strcmp(((const struct usp_dm_param *)a)->name, ((const struct usp_dm_param *)b)->name);
}

static int cmp_command(const void *a, const void *b)
{
    return strcmp(((const struct usp_dm_command *)a)->name,
                  ((const struct usp_dm_command *)b)->name);
}

static int cmp_event(const void *a, const void *b)
{
    return strcmp(((const struct usp_dm_event *)a)->name, ((const struct usp_dm_event *)b)->name);
}

static int cmp_path_len(const void *a, const void *b)
{
    size_t la = strlen((*(struct dm_bobj *const *)a)->path);
    size_t lb = strlen((*(struct dm_bobj *const *)b)->path);
    if (la != lb)
        return la < lb ? -1 : 1;
    uint32_t oa = (*(struct dm_bobj *const *)a)->order, ob = (*(struct dm_bobj *const *)b)->order;
    return oa < ob ? -1 : oa > ob;
}

static int freeze_scope(struct fz *z, struct dm_bscope *sc, bool args, struct usp_dm_object **out);

static int freeze_params(struct fz *z, struct dm_bobj *bo, struct usp_dm_object *o, bool args)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < bo->params.n; i++) {
        const struct dm_bparam *bp = &DM_VEC_AT(bo->params, struct dm_bparam, i);
        if (bp->status == USP_DM_DELETED) {
            if (!args)
                z->c->deleted_params++;
            continue;
        }
        n++;
    }
    if (!n)
        return 0;
    struct usp_dm_param *ps = dm_schema__alloc(z->b->pool, n * sizeof *ps);
    if (!ps)
        return USP_ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = 0; i < bo->params.n; i++) {
        const struct dm_bparam *bp = &DM_VEC_AT(bo->params, struct dm_bparam, i);
        if (bp->status == USP_DM_DELETED)
            continue;
        struct usp_dm_param *p = &ps[k++];
        p->name = bp->name;
        p->parent = o;
        p->type = bp->type;
        p->default_value = bp->default_value;
        p->description = bp->description;
        p->access = bp->access;
        p->status = bp->status;
        p->notify = bp->notify;
        p->default_type = bp->default_type;
        p->flags = bp->flags;
        if (args) {
            z->c->arg_params++;
        } else {
            z->c->params++;
            if (p->access != USP_DM_READ_ONLY)
                z->c->writable_params++;
            if (p->status == USP_DM_DEPRECATED)
                z->c->deprecated_params++;
            else if (p->status == USP_DM_OBSOLETED)
                z->c->obsoleted_params++;
        }
    }
    qsort(ps, n, sizeof *ps, cmp_param);
    o->params = ps;
    o->nparams = n;
    return 0;
}

static int freeze_args(struct fz *z, struct dm_bscope *sc, const struct usp_dm_object **out)
{
    if (!sc || (!sc->root.params.n && !sc->objs.n)) {
        *out = z->empty_args;
        return 0;
    }
    struct usp_dm_object *objs;
    int rc = freeze_scope(z, sc, true, &objs);
    if (rc < 0)
        return rc;
    *out = &objs[0];
    return 0;
}

static int freeze_cmds(struct fz *z, struct dm_bobj *bo, struct usp_dm_object *o)
{
    uint32_t nc = 0, ne = 0;
    for (uint32_t i = 0; i < bo->cmds.n; i++) {
        const struct dm_bcmd *bc = &DM_VEC_AT(bo->cmds, struct dm_bcmd, i);
        if (bc->status == USP_DM_DELETED) {
            if (bc->is_event)
                z->c->deleted_events++;
            else
                z->c->deleted_commands++;
            continue;
        }
        if (bc->is_event)
            ne++;
        else
            nc++;
    }
    struct usp_dm_command *cs = nc ? dm_schema__alloc(z->b->pool, nc * sizeof *cs) : NULL;
    struct usp_dm_event *es = ne ? dm_schema__alloc(z->b->pool, ne * sizeof *es) : NULL;
    if ((nc && !cs) || (ne && !es))
        return USP_ENOMEM;
    uint32_t kc = 0, ke = 0;
    for (uint32_t i = 0; i < bo->cmds.n; i++) {
        struct dm_bcmd *bc = &DM_VEC_AT(bo->cmds, struct dm_bcmd, i);
        if (bc->status == USP_DM_DELETED)
            continue;
        int rc;
        if (bc->is_event) {
            struct usp_dm_event *e = &es[ke++];
            e->name = bc->name;
            e->parent = o;
            e->description = bc->description;
            e->status = bc->status;
            if ((rc = freeze_args(z, bc->args, &e->args)) < 0)
                return rc;
            z->c->events++;
            if (e->status == USP_DM_DEPRECATED)
                z->c->deprecated_events++;
            else if (e->status == USP_DM_OBSOLETED)
                z->c->obsoleted_events++;
        } else {
            struct usp_dm_command *c = &cs[kc++];
            c->name = bc->name;
            c->parent = o;
            c->description = bc->description;
            c->status = bc->status;
            c->async = bc->async;
            if ((rc = freeze_args(z, bc->input, &c->input)) < 0 ||
                (rc = freeze_args(z, bc->output, &c->output)) < 0)
                return rc;
            z->c->commands++;
            if (c->async)
                z->c->async_commands++;
            if (c->status == USP_DM_DEPRECATED)
                z->c->deprecated_commands++;
            else if (c->status == USP_DM_OBSOLETED)
                z->c->obsoleted_commands++;
        }
    }
    if (nc)
        qsort(cs, nc, sizeof *cs, cmp_command);
    if (ne)
        qsort(es, ne, sizeof *es, cmp_event);
    o->commands = cs;
    o->ncommands = nc;
    o->events = es;
    o->nevents = ne;
    return 0;
}

/* Unique keys, enable and numEntries parameters: names resolved to the
 * frozen parameters (which needs the parent's parameters frozen too). */
static int freeze_refs(struct fz *z, struct dm_bobj *bo, struct usp_dm_object *o)
{
    if (bo->keys.n) {
        struct usp_dm_unique_key *ks = dm_schema__alloc(z->b->pool, bo->keys.n * sizeof *ks);
        if (!ks)
            return USP_ENOMEM;
        for (uint32_t i = 0; i < bo->keys.n; i++) {
            const struct dm_bkey *bk = &DM_VEC_AT(bo->keys, struct dm_bkey, i);
            uint32_t *idx = dm_schema__alloc(z->b->pool, (bk->n ? bk->n : 1) * sizeof *idx);
            if (!idx)
                return USP_ENOMEM;
            for (uint32_t j = 0; j < bk->n; j++) {
                const struct usp_dm_param *p =
                    usp_dm_object_param(o, bk->params[j], strlen(bk->params[j]));
                if (!p) {
                    dm_schema__errorf(
                        z->err, bo->line,
                        "%s:%d: <object name=\"%s\">: uniqueKey parameter \"%s\" is not "
                        "a (supported) parameter of the object",
                        bo->file, bo->line, bo->path, bk->params[j]);
                    return USP_EINVAL;
                }
                idx[j] = usp_dm_param_index(p);
            }
            ks[i] = (struct usp_dm_unique_key){idx, bk->n, bk->functional};
        }
        o->keys = ks;
        o->nkeys = bo->keys.n;
        if (!(o->flags & (USP_DM_OBJ_ARG_OBJECT | USP_DM_OBJ_ARGS)))
            z->c->unique_keys += bo->keys.n;
    }
    if (bo->enable) {
        o->enable_param = usp_dm_object_param(o, bo->enable, strlen(bo->enable));
        if (!o->enable_param) {
            dm_schema__errorf(z->err, bo->line,
                              "%s:%d: <object name=\"%s\">: enableParameter \"%s\" is not a "
                              "(supported) parameter of the object",
                              bo->file, bo->line, bo->path, bo->enable);
            return USP_EINVAL;
        }
    }
    if (bo->num_entries) {
        if (o->parent)
            o->num_entries_param =
                usp_dm_object_param(o->parent, bo->num_entries, strlen(bo->num_entries));
        if (!o->num_entries_param) {
            dm_schema__errorf(z->err, bo->line,
                              "%s:%d: <object name=\"%s\">: numEntriesParameter \"%s\" is not a "
                              "(supported) parameter of the parent object",
                              bo->file, bo->line, bo->path, bo->num_entries);
            return USP_EINVAL;
        }
    }
    return 0;
}

static void count_deleted_object(struct fz *z, struct dm_bobj *bo)
{
    z->c->deleted_objects++;
    for (uint32_t i = 0; i < bo->params.n; i++) {
        if (DM_VEC_AT(bo->params, struct dm_bparam, i).status == USP_DM_DELETED)
            z->c->deleted_params++;
        else
            z->c->params_in_deleted++;
    }
    for (uint32_t i = 0; i < bo->cmds.n; i++) {
        if (DM_VEC_AT(bo->cmds, struct dm_bcmd, i).is_event)
            z->c->deleted_events++;
        else
            z->c->deleted_commands++;
    }
}

/* Freezes one set of objects (the model, or an argument tree whose root is
 * the scope's own root object) into an array in depth-first order. */
static int freeze_scope(struct fz *z, struct dm_bscope *sc, bool args, struct usp_dm_object **out)
{
    struct dm_builder *b = z->b;
    int rc = USP_ENOMEM;
    uint32_t total = sc->objs.n + (args ? 1 : 0);
    struct dm_bobj **live = calloc(total ? total : 1, sizeof *live);
    uint32_t *parent = calloc(total ? total : 1, sizeof *parent);
    uint32_t *nchild = calloc(total ? total : 1, sizeof *nchild);
    uint32_t *pos = calloc(total ? total : 1, sizeof *pos);
    uint32_t *stack = calloc(total ? total : 1, sizeof *stack);
    struct dm_bobj ***kids = calloc(total ? total : 1, sizeof *kids);
    struct dm_bobj **sorted = calloc(total ? total : 1, sizeof *sorted);
    const char **names = calloc(total ? total : 1, sizeof *names);
    if (!live || !parent || !nchild || !pos || !stack || !kids || !sorted || !names)
        goto out;

    /* Parents have shorter paths: visiting by length settles whether a
     * parent is deleted (or missing) before its children. */
    for (uint32_t i = 0; i < sc->objs.n; i++)
        sorted[i] = DM_VEC_AT(sc->objs, struct dm_bobj *, i);
    qsort(sorted, sc->objs.n, sizeof *sorted, cmp_path_len);

    uint32_t n = 0, root = UINT32_MAX;
    if (args) {
        sc->root.order = UINT32_MAX;
        live[n++] = &sc->root;
        sc->root.status = USP_DM_CURRENT;
        root = 0;
    }
    for (uint32_t i = 0; i < sc->objs.n; i++) {
        struct dm_bobj *bo = sorted[i];
        size_t plen, nstart, nlen;
        split_path(bo->path, &plen, &nstart, &nlen);
        names[n] = dm_schema__intern(&b->strs, bo->path + nstart, nlen);
        if (!names[n])
            goto out;
        struct dm_bobj *pb = NULL;
        if (plen) {
            const char *pp = dm_schema__intern(&b->strs, bo->path, plen);
            if (!pp)
                goto out;
            pb = dm_schema__scope_find(sc, pp);
            if (!pb) {
                dm_schema__errorf(
                    z->err, bo->line,
                    "%s:%d: <object name=\"%s\">: parent object \"%s\" is not defined", bo->file,
                    bo->line, bo->path, pp);
                rc = USP_EINVAL;
                goto out;
            }
            if (pb->status == USP_DM_DELETED)
                bo->status = USP_DM_DELETED; /* a deleted object takes its subtree */
        }
        if (bo->status == USP_DM_DELETED) {
            if (!args)
                count_deleted_object(z, bo);
            continue;
        }
        if (!plen) {
            if (args) {
                parent[n] = 0;
            } else if (root != UINT32_MAX) {
                dm_schema__errorf(z->err, bo->line,
                                  "%s:%d: <object name=\"%s\">: a second root object (the first is "
                                  "\"%s\")",
                                  bo->file, bo->line, bo->path, live[root]->path);
                rc = USP_EINVAL;
                goto out;
            } else {
                root = n;
                parent[n] = UINT32_MAX;
            }
        } else {
            parent[n] = pb->order; /* live index, see below */
        }
        bo->order = n; /* from now on: index in live[] */
        live[n++] = bo;
    }
    if (root == UINT32_MAX) {
        dm_schema__errorf(z->err, 0, "%s: the model defines no (supported) object", z->b->file);
        rc = USP_EINVAL;
        goto out;
    }
    if (args)
        names[0] = "";

    /* Children lists, sorted by name. */
    for (uint32_t i = 0; i < n; i++)
        if (parent[i] != UINT32_MAX && i != root)
            nchild[parent[i]]++;
    for (uint32_t i = 0; i < n; i++) {
        kids[i] = nchild[i] ? calloc(nchild[i], sizeof **kids) : NULL;
        if (nchild[i] && !kids[i])
            goto out;
        nchild[i] = 0;
    }
    for (uint32_t i = 0; i < n; i++)
        if (parent[i] != UINT32_MAX && i != root)
            kids[parent[i]][nchild[parent[i]]++] = live[i];
    for (uint32_t i = 0; i < n; i++) {
        if (nchild[i] < 2)
            continue;
        /* Sorts pointers into names[] (indexed like live[]), then maps back. */
        const char ***keyed = calloc(nchild[i], sizeof *keyed);
        struct dm_bobj **tmp = calloc(nchild[i], sizeof *tmp);
        if (!keyed || !tmp) {
            free(keyed);
            free(tmp);
            goto out;
        }
        for (uint32_t j = 0; j < nchild[i]; j++)
            keyed[j] = &names[kids[i][j]->order];
        qsort(keyed, nchild[i], sizeof *keyed, cmp_name_ptr);
        for (uint32_t j = 0; j < nchild[i]; j++)
            tmp[j] = live[keyed[j] - names];
        memcpy(kids[i], tmp, nchild[i] * sizeof *tmp);
        free(keyed);
        free(tmp);
    }

    /* Depth-first order: pos[live index] = final index. */
    uint32_t sp = 0, next = 0;
    stack[sp++] = root;
    while (sp) {
        uint32_t i = stack[--sp];
        pos[i] = next++;
        for (uint32_t j = nchild[i]; j-- > 0;)
            stack[sp++] = kids[i][j]->order;
    }

    struct usp_dm_object *objs = dm_schema__alloc(b->pool, n * sizeof *objs);
    if (!objs)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        struct dm_bobj *bo = live[i];
        struct usp_dm_object *o = &objs[pos[i]];
        o->path = bo->path;
        o->name = names[i];
        o->parent = parent[i] == UINT32_MAX ? NULL : &objs[pos[parent[i]]];
        o->description = bo->description;
        o->min_entries = bo->min_entries;
        o->max_entries = bo->max_entries;
        o->index = pos[i];
        o->access = bo->access;
        o->status = bo->status;
        o->flags = bo->flags;
        if (args)
            o->flags |= i == 0 ? USP_DM_OBJ_ARGS : USP_DM_OBJ_ARG_OBJECT;
        if (nchild[i]) {
            const struct usp_dm_object **ch = dm_schema__alloc(b->pool, nchild[i] * sizeof *ch);
            if (!ch)
                goto out;
            for (uint32_t j = 0; j < nchild[i]; j++)
                ch[j] = &objs[pos[kids[i][j]->order]];
            o->children = ch;
            o->nchildren = nchild[i];
        }
        if ((rc = freeze_params(z, bo, o, args)) < 0 || (rc = freeze_cmds(z, bo, o)) < 0)
            goto out;
        rc = USP_ENOMEM;
        if (args) {
            if (i)
                z->c->arg_objects++;
        } else {
            z->c->objects++;
            if (o->flags & USP_DM_OBJ_MULTI) {
                z->c->multi_objects++;
                if (o->access == USP_DM_READ_WRITE)
                    z->c->writable_objects++;
            }
            if (o->status == USP_DM_DEPRECATED)
                z->c->deprecated_objects++;
            else if (o->status == USP_DM_OBSOLETED)
                z->c->obsoleted_objects++;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        if ((rc = freeze_refs(z, live[i], &objs[pos[i]])) < 0)
            goto out;
    *out = objs;
    rc = 0;
out:
    if (kids)
        for (uint32_t i = 0; i < total; i++)
            free(kids[i]);
    free(kids);
    free(live);
    free(parent);
    free(nchild);
    free(pos);
    free(stack);
    free(sorted);
    free(names);
    return rc;
}

static int cmp_type_name(const void *a, const void *b)
{
    return strcmp((*(const struct usp_dm_type *const *)a)->name,
                  (*(const struct usp_dm_type *const *)b)->name);
}

int dm_schema__freeze(struct dm_builder *b, struct usp_dm_schema **out, struct usp_dm_error *err)
{
    struct usp_dm_schema *s = calloc(1, sizeof *s);
    if (!s)
        return USP_ENOMEM;
    struct fz z = {.b = b, .err = err, .c = &s->counts};
    s->counts = b->counts;
    int rc = USP_ENOMEM;
    if (!b->file)
        b->file = "?";
    z.empty_args = dm_schema__alloc(b->pool, sizeof *z.empty_args);
    if (!z.empty_args)
        goto fail;
    z.empty_args->path = z.empty_args->name = "";
    z.empty_args->flags = USP_DM_OBJ_ARGS;

    struct usp_dm_object *objs;
    if ((rc = freeze_scope(&z, &b->model, false, &objs)) < 0)
        goto fail;
    s->objects = objs;
    s->nobjects = s->counts.objects;
    s->model = b->model_name ? b->model_name : "";

    /* Named dataTypes, one per name (the first defined wins). */
    rc = USP_ENOMEM;
    if (b->datatypes.n) {
        const struct usp_dm_type **dts = dm_schema__alloc(b->pool, b->datatypes.n * sizeof *dts);
        if (!dts)
            goto fail;
        memcpy(dts, b->datatypes.v, b->datatypes.n * sizeof *dts);
        qsort(dts, b->datatypes.n, sizeof *dts, cmp_type_name);
        size_t k = 0;
        for (size_t i = 0; i < b->datatypes.n; i++)
            if (!k || strcmp(dts[k - 1]->name, dts[i]->name) != 0)
                dts[k++] = dts[i];
        s->datatypes = dts;
        s->ndatatypes = k;
    }
    s->counts.datatypes = (uint32_t)s->ndatatypes;
    s->counts.types = (uint32_t)b->types.n;
    s->counts.patterns = b->types.regexes.n;
    /* The schema takes the pool and the compiled patterns. */
    s->pool = *b->pool;
    memset(b->pool, 0, sizeof *b->pool);
    s->regexes = b->types.regexes;
    memset(&b->types.regexes, 0, sizeof b->types.regexes);
    /* glibc keeps ~6 KB per compiled pattern of TR-181 (measured: mallinfo2) */
    s->counts.bytes = s->pool.bytes + sizeof *s + s->regexes.n * (sizeof(regex_t) + 6144);
    *out = s;
    return 0;
fail:
    free(s);
    return rc;
}

void usp_dm_schema_free(struct usp_dm_schema *s)
{
    if (!s)
        return;
    dm_types__regexes_free(&s->regexes);
    dm_schema__pool_release(&s->pool);
    free(s);
}

/* ---- read-only API ---- */

const char *usp_dm_schema_model(const struct usp_dm_schema *s)
{
    return s->model;
}

const struct usp_dm_counts *usp_dm_schema_counts(const struct usp_dm_schema *s)
{
    return &s->counts;
}

const struct usp_dm_object *usp_dm_schema_root(const struct usp_dm_schema *s)
{
    return s->nobjects ? &s->objects[0] : NULL;
}

size_t usp_dm_schema_nobjects(const struct usp_dm_schema *s)
{
    return s->nobjects;
}

const struct usp_dm_object *usp_dm_schema_object(const struct usp_dm_schema *s, size_t i)
{
    return i < s->nobjects ? &s->objects[i] : NULL;
}

/* strcmp of (name, len) against a NUL-terminated string. */
static int cmp_n(const char *name, size_t len, const char *s)
{
    int c = strncmp(name, s, len);
    if (c)
        return c;
    return s[len] ? -1 : 0;
}

const struct usp_dm_type *usp_dm_schema_datatype(const struct usp_dm_schema *s, const char *name)
{
    size_t lo = 0, hi = s->ndatatypes, len = strlen(name);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = cmp_n(name, len, s->datatypes[mid]->name);
        if (!c)
            return s->datatypes[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

#define BSEARCH(arr, n, field, name, len)                                                          \
    do {                                                                                           \
        size_t lo_ = 0, hi_ = (n);                                                                 \
        while (lo_ < hi_) {                                                                        \
            size_t mid_ = (lo_ + hi_) / 2;                                                         \
            int c_ = cmp_n((name), (len), (arr)[mid_] field);                                      \
            if (!c_)                                                                               \
                return &(arr)[mid_];                                                               \
            if (c_ < 0)                                                                            \
                hi_ = mid_;                                                                        \
            else                                                                                   \
                lo_ = mid_ + 1;                                                                    \
        }                                                                                          \
        return NULL;                                                                               \
    } while (0)

const struct usp_dm_object *usp_dm_object_child(const struct usp_dm_object *o, const char *name,
                                                size_t len)
{
    size_t lo = 0, hi = o->nchildren;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = cmp_n(name, len, o->children[mid]->name);
        if (!c)
            return o->children[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct usp_dm_param *usp_dm_object_param(const struct usp_dm_object *o, const char *name,
                                               size_t len)
{
    BSEARCH(o->params, o->nparams, .name, name, len);
}

const struct usp_dm_command *usp_dm_object_command(const struct usp_dm_object *o, const char *name,
                                                   size_t len)
{
    BSEARCH(o->commands, o->ncommands, .name, name, len);
}

const struct usp_dm_event *usp_dm_object_event(const struct usp_dm_object *o, const char *name,
                                               size_t len)
{
    BSEARCH(o->events, o->nevents, .name, name, len);
}

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

/* The last segment: a parameter, command, event or (without a trailing dot)
 * an object. */
static int resolve_leaf(const struct usp_dm_object *o, const char *name, size_t len,
                        struct usp_dm_item *out)
{
    if (len && name[len - 1] == ')') {
        out->command = usp_dm_object_command(o, name, len);
        if (out->command) {
            out->kind = USP_DM_KIND_COMMAND;
            out->object = o;
            return 0;
        }
        return USP_ENOENT;
    }
    if (len && name[len - 1] == '!') {
        out->event = usp_dm_object_event(o, name, len);
        if (out->event) {
            out->kind = USP_DM_KIND_EVENT;
            out->object = o;
            return 0;
        }
        return USP_ENOENT;
    }
    out->param = usp_dm_object_param(o, name, len);
    if (out->param) {
        out->kind = USP_DM_KIND_PARAM;
        out->object = o;
        return 0;
    }
    const struct usp_dm_object *ch = usp_dm_object_child(o, name, len);
    if (ch) {
        out->kind = USP_DM_KIND_OBJECT;
        out->object = ch;
        return 0;
    }
    return USP_ENOENT;
}

int usp_dm_lookup(const struct usp_dm_schema *s, const char *path, struct usp_dm_item *out)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path)
        return USP_EINVAL;
    const struct usp_dm_object *o = NULL;
    bool after_multi = false; /* an instance segment may come next */
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        bool last = !dot || !dot[1];
        if (!len)
            return USP_ENOENT;
        if (!o) {
            o = usp_dm_schema_root(s);
            if (!o || cmp_n(p, len, o->name) != 0)
                return USP_ENOENT;
            after_multi = o->flags & USP_DM_OBJ_MULTI;
        } else if (!is_name_start(*p)) {
            if (!after_multi)
                return USP_ENOENT;
            after_multi = false;
        } else if (last && !dot) {
            return resolve_leaf(o, p, len, out);
        } else {
            o = usp_dm_object_child(o, p, len);
            if (!o)
                return USP_ENOENT;
            after_multi = o->flags & USP_DM_OBJ_MULTI;
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    out->kind = USP_DM_KIND_OBJECT;
    out->object = o;
    return 0;
}

int usp_dm_lookup_names(const struct usp_dm_schema *s, const char *const *names, const size_t *lens,
                        size_t n, struct usp_dm_item *out)
{
    memset(out, 0, sizeof *out);
    const struct usp_dm_object *o = NULL;
    size_t last = n;
    while (last > 0 && (!lens[last - 1] || !is_name_start(names[last - 1][0])))
        last--;
    if (!last)
        return USP_EINVAL;
    for (size_t i = 0; i < last; i++) {
        if (!lens[i] || !is_name_start(names[i][0]))
            continue;
        if (!o) {
            o = usp_dm_schema_root(s);
            if (!o || cmp_n(names[i], lens[i], o->name) != 0)
                return USP_ENOENT;
        } else if (i == last - 1) {
            return resolve_leaf(o, names[i], lens[i], out);
        } else {
            o = usp_dm_object_child(o, names[i], lens[i]);
            if (!o)
                return USP_ENOENT;
        }
    }
    out->kind = USP_DM_KIND_OBJECT;
    out->object = o;
    return 0;
}

/* ---- names ---- */

#define NAME_OF(table, v) ((v) < sizeof(table) / sizeof(table)[0] ? (table)[v] : "?")

const char *usp_dm_base_name(unsigned base)
{
    static const char *const t[] = {"string",       "boolean",  "int",    "unsignedInt", "long",
                                    "unsignedLong", "dateTime", "base64", "hexBinary",   "decimal"};
    return NAME_OF(t, base);
}

const char *usp_dm_access_name(unsigned access)
{
    static const char *const t[] = {"readOnly", "readWrite", "writeOnceReadOnly"};
    return NAME_OF(t, access);
}

const char *usp_dm_status_name(unsigned status)
{
    static const char *const t[] = {"current", "deprecated", "obsoleted", "deleted"};
    return NAME_OF(t, status);
}

const char *usp_dm_notify_name(unsigned notify)
{
    static const char *const t[] = {"normal", "canDeny", "forceEnabled", "forceDefaultEnabled"};
    return NAME_OF(t, notify);
}

const char *usp_dm_default_type_name(unsigned type)
{
    static const char *const t[] = {"none", "object", "factory", "implementation", "parameter"};
    return NAME_OF(t, type);
}

const char *usp_dm_ref_type_name(unsigned ref_type)
{
    static const char *const t[] = {"none", "weak", "strong"};
    return NAME_OF(t, ref_type);
}

const char *usp_dm_target_type_name(unsigned target_type)
{
    static const char *const t[] = {"any", "parameter", "object", "single", "table", "row"};
    return NAME_OF(t, target_type);
}
