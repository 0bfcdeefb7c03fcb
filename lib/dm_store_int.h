/* Private to the data-model engine (dm_store.c, dm_resolve.c):
 * the binding of a profile to a schema, shared read-only by every agent, and
 * the helpers the resolver needs from the store. */
#ifndef USP_DM_STORE_INT_H
#define USP_DM_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/dm.h"

/* Overlay records key objects and parameters on 16 bits each; the binding
 * refuses larger schemas. The all-ones parameter index marks a table record. */
#define DM_MAX_OBJECTS 0xfffe
#define DM_MAX_PARAMS  0xfffe

/* Per schema object (indexed by object->index). */
struct dm_mobj {
    const struct usp_dm_object *obj;
    uint32_t pbase; /* its first parameter in model->params */
    uint32_t cbase; /* its first command in model->cmds */
    uint32_t end;   /* index after the last object of its subtree */
    uint32_t chain; /* its multi-instance ancestors (itself included) in model->chain */
    uint32_t ndecl; /* tables: profile "instances" lines, most specific first */
    const struct usp_profile_inst *const *decl;
    uint8_t levels; /* multi-instance objects on its path, itself included */
};

/* Per schema parameter (model->params[mobj.pbase + param index]). */
struct dm_mparam {
    const struct usp_profile_slot *slot; /* profile values, or NULL */
    const struct usp_dm_object *counts;  /* NumberOfEntries: the table it counts */
};

/* Per schema command (model->cmds[mobj.cbase + command index]). */
struct dm_mcmd {
    uint32_t n; /* profile "command" lines, most specific first */
    const struct usp_profile_cmd *const *e;
};

struct usp_dm_model {
    const struct usp_dm_schema *schema;
    const struct usp_profile *profile;
    size_t nobjs;
    struct dm_mobj *mobj;
    struct dm_mparam *params;
    struct dm_mcmd *cmds;
    size_t ncmds;
    const struct usp_dm_object **chain;
    const void **entries; /* storage of every decl and e list */
    /* What a reboot touches (NULL when the schema lacks them). */
    const struct usp_dm_object *request_table;
    const struct usp_dm_object *subscription_table;
    const struct usp_dm_param *subscription_persistent;
    size_t mem;
};

static inline const struct dm_mobj *dm__mobj(const struct usp_dm_model *m,
                                             const struct usp_dm_object *o)
{
    return &m->mobj[o->index];
}

static inline const struct dm_mparam *dm__mparam(const struct usp_dm_model *m,
                                                 const struct usp_dm_param *p)
{
    return &m->params[m->mobj[p->parent->index].pbase + usp_dm_param_index(p)];
}

/* Whether `o` belongs to the model's schema (not an argument tree or another
 * schema). */
static inline bool dm__owns(const struct usp_dm_model *m, const struct usp_dm_object *o)
{
    return o && o->index < m->nobjs && m->mobj[o->index].obj == o;
}

/* Parses a reference value: an object path ("Device.IP.Interface.1", the
 * final '.' optional) or, when `param` is not NULL, a parameter path. 0,
 * USP_ENOENT or USP_EINVAL. */
int dm__parse_ref(const struct usp_dm_model *m, const char *s, size_t len, struct usp_dm_inst *o,
                  const struct usp_dm_param **param);

#endif
