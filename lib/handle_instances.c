/* GetInstances (TR-369 "The GetInstances Message"): the rows of the tables
 * a path names, with their unique keys; without first_level_only also the
 * rows of every table below them.
 *
 * Decisions:
 * - A path may name a table ("Device.WiFi.SSID."), rows of a table
 *   ("Device.WiFi.SSID.*.", "Device.WiFi.SSID.1."): the rows themselves are
 *   reported. Any other object is 7018 (not a table); parameter, command
 *   and event paths are 7026.
 * - Rows without Read permission are absent (R-GIN.0), with what lies
 *   below them, and so are rows a search expression selected by comparing
 *   a parameter the controller may not read; unique-key parameters without
 *   Read permission are left out (R-GIN.1). */
#include <stdio.h>
#include <string.h>

#include "handle_int.h"

typedef Usp__GetInstancesResp__RequestedPathResult ReqRes;
typedef Usp__GetInstancesResp__CurrInstance CurrInst;
typedef Usp__GetInstancesResp__CurrInstance__UniqueKeysEntry KeyEntry;

struct gi_state {
    struct hctx *c;
    struct hvec insts; /* CurrInst * */
    bool first_level_only;
};

static int add_row(struct gi_state *g, const struct usp_dm_inst *row, bool *readable)
{
    struct hctx *c = g->c;
    *readable = false;
    char *path = handle__obj_path(c, row);
    if (!path)
        return USP_ENOMEM;
    if (!handle__allowed(c, path, USP_PERM_READ))
        return 0;
    *readable = true;
    struct hkeys keys;
    if (handle__keys(c, row, &keys))
        return USP_ENOMEM;
    struct hvec entries = {0};
    for (uint32_t i = 0; i < keys.n; i++) {
        char *kpath = handle__join(c, path, keys.kv[i].key);
        if (!kpath)
            return USP_ENOMEM;
        if (!handle__allowed(c, kpath, USP_PERM_READ))
            continue;
        KeyEntry *e = usp_arena_alloc(c->a, sizeof *e);
        if (!e)
            return USP_ENOMEM;
        usp__get_instances_resp__curr_instance__unique_keys_entry__init(e);
        e->key = (char *)keys.kv[i].key;
        e->value = (char *)keys.kv[i].value;
        if (handle__push(c->a, &entries, e))
            return USP_ENOMEM;
    }
    CurrInst *ci = usp_arena_alloc(c->a, sizeof *ci);
    if (!ci)
        return USP_ENOMEM;
    usp__get_instances_resp__curr_instance__init(ci);
    ci->instantiated_obj_path = path;
    ci->n_unique_keys = entries.n;
    ci->unique_keys = (KeyEntry **)handle__items(&entries);
    return handle__push(c->a, &g->insts, ci);
}

static int walk_rows(struct gi_state *g, const struct usp_dm_inst *parent,
                     const struct usp_dm_object *table);

/* The tables below object `o` (through single-instance sub-objects). */
static int walk_below(struct gi_state *g, const struct usp_dm_inst *o)
{
    for (uint32_t i = 0; i < o->obj->nchildren; i++) {
        const struct usp_dm_object *ch = o->obj->children[i];
        int rc;
        if (ch->flags & USP_DM_OBJ_MULTI) {
            rc = walk_rows(g, o, ch);
        } else {
            struct usp_dm_inst ci;
            handle__child(o, ch, 0, &ci);
            rc = walk_below(g, &ci);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int row_and_below(struct gi_state *g, const struct usp_dm_inst *row)
{
    bool readable;
    int rc = add_row(g, row, &readable);
    if (rc || !readable || g->first_level_only)
        return rc;
    return walk_below(g, row);
}

static int walk_rows(struct gi_state *g, const struct usp_dm_inst *parent,
                     const struct usp_dm_object *table)
{
    uint32_t *insts;
    size_t n;
    int rc = handle__instances(g->c, table, parent, &insts, &n);
    for (size_t k = 0; rc == 0 && k < n; k++) {
        struct usp_dm_inst row;
        handle__child(parent, table, insts[k], &row);
        rc = row_and_below(g, &row);
    }
    return rc;
}

static int gi_path(struct hctx *c, const char *req_path, bool first_level_only, ReqRes *out)
{
    struct gi_state g = {.c = c, .first_level_only = first_level_only};
    char msg[512] = "";
    uint32_t err = 0;
    struct usp_path *p;
    int rc = handle__parse(c, req_path, &p, msg, sizeof msg);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        err = (uint32_t)rc;
        goto done;
    }
    if (!(p->flags & USP_PATH_OBJECT) || !usp_path_is_instantiated(p)) {
        err = USP_ERR_INVALID_PATH;
        snprintf(msg, sizeof msg,
                 "Invalid path: GetInstances takes paths to tables of the instantiated data "
                 "model (ending in '.')");
        goto done;
    }
    bool search = usp_path_is_search(p);
    struct hmatches ms;
    struct usp_dm_path_err perr;
    rc = handle__resolve(c, p, &ms, &perr);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        if (rc == USP_ERR_OBJECT_DOES_NOT_EXIST && search) {
            ms.n = 0; /* no match under a search (R-MSG.4a) */
        } else {
            err = (uint32_t)rc;
            snprintf(msg, sizeof msg, "%s", perr.msg);
            goto done;
        }
    }
    for (size_t i = 0; i < ms.n; i++) {
        const struct usp_dm_inst *o = &ms.m[i].obj;
        if (!handle__search_readable(c, p, o))
            continue; /* R-GIN.0 */
        if (!(o->obj->flags & USP_DM_OBJ_MULTI)) {
            err = USP_ERR_NOT_A_TABLE;
            snprintf(msg, sizeof msg, "Object is not a table: %s", o->obj->path);
            goto done;
        }
        if (handle__is_table(o)) {
            struct usp_dm_inst parent = *o;
            parent.obj = o->obj->parent;
            rc = walk_rows(&g, &parent, o->obj);
        } else {
            rc = row_and_below(&g, o);
        }
        if (rc)
            return rc;
    }
done:
    out->requested_path = (char *)req_path;
    if (err) {
        out->err_code = err;
        out->err_msg = usp_arena_strdup(c->a, msg);
        return out->err_msg ? 0 : USP_ENOMEM;
    }
    out->n_curr_insts = g.insts.n;
    out->curr_insts = (CurrInst **)handle__items(&g.insts);
    return 0;
}

int handle__get_instances(struct hctx *c, const Usp__GetInstances *req, Usp__Msg **resp)
{
    Usp__GetInstancesResp *gr = usp_arena_alloc(c->a, sizeof *gr);
    if (!gr)
        return USP_ENOMEM;
    usp__get_instances_resp__init(gr);
    struct hvec results = {0};
    for (size_t i = 0; i < req->n_obj_paths; i++) {
        ReqRes *r = usp_arena_alloc(c->a, sizeof *r);
        if (!r)
            return USP_ENOMEM;
        usp__get_instances_resp__requested_path_result__init(r);
        if (gi_path(c, req->obj_paths[i], req->first_level_only, r) ||
            handle__push(c->a, &results, r))
            return USP_ENOMEM;
    }
    gr->n_req_path_results = results.n;
    gr->req_path_results = (ReqRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__GET_INSTANCES_RESP,
                                 USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP, gr);
    return *resp ? 0 : USP_ENOMEM;
}
