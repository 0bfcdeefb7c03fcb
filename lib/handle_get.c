/* Get (TR-369 "The Get Message"): one RequestedPathResult per path; since
 * USP 1.2 every object and sub-object is its own ResolvedPathResult with
 * parameter names relative to it; max_depth limits the tree (R-GET.5).
 *
 * Decisions:
 * - An object gets a ResolvedPathResult when the schema gives it at least
 *   one parameter (possibly empty after permission filtering, R-GET.4);
 *   an object with none (e.g. "Device.DHCPv4.") is only a step to its
 *   sub-objects, so an object with neither parameters nor sub-objects
 *   yields nothing (R-GET.1b).
 * - Depth counts a table and its row as one level, as the specification's
 *   example does for TemperatureSensor.{i}.
 * - An object or parameter without Read permission is treated as absent
 *   (R-GET.1): an explicit path to it is 7026, a search skips it, and an
 *   unreadable object hides its subtree. So is a row a search expression
 *   selected by comparing a parameter the controller may not read. */
#include <stdio.h>
#include <string.h>

#include "handle_int.h"

typedef Usp__GetResp__RequestedPathResult ReqRes;
typedef Usp__GetResp__ResolvedPathResult ResRes;
typedef Usp__GetResp__ResolvedPathResult__ResultParamsEntry ParamEntry;

struct get_state {
    struct hctx *c;
    struct hvec res; /* ResRes * */
    uint32_t max_depth;
};

static int add_param(struct hctx *c, struct hvec *params, const char *name, const char *value)
{
    ParamEntry *e = usp_arena_alloc(c->a, sizeof *e);
    if (!e)
        return USP_ENOMEM;
    usp__get_resp__resolved_path_result__result_params_entry__init(e);
    e->key = usp_arena_strdup(c->a, name);
    e->value = (char *)value;
    if (!e->key)
        return USP_ENOMEM;
    return handle__push(c->a, params, e);
}

static int add_result(struct get_state *g, const char *path, struct hvec *params)
{
    ResRes *r = usp_arena_alloc(g->c->a, sizeof *r);
    if (!r)
        return USP_ENOMEM;
    usp__get_resp__resolved_path_result__init(r);
    r->resolved_path = (char *)path;
    r->n_result_params = params->n;
    r->result_params = (ParamEntry **)handle__items(params);
    return handle__push(g->c->a, &g->res, r);
}

static int get_object(struct get_state *g, const struct usp_dm_inst *o, uint32_t depth);

static int get_children(struct get_state *g, const struct usp_dm_inst *o, uint32_t depth)
{
    const struct usp_dm_object *obj = o->obj;
    for (uint32_t i = 0; i < obj->nchildren; i++) {
        const struct usp_dm_object *ch = obj->children[i];
        struct usp_dm_inst ci;
        if (!(ch->flags & USP_DM_OBJ_MULTI)) {
            handle__child(o, ch, 0, &ci);
            int rc = get_object(g, &ci, depth);
            if (rc)
                return rc;
            continue;
        }
        uint32_t *insts;
        size_t n;
        int rc = handle__instances(g->c, ch, o, &insts, &n);
        for (size_t k = 0; rc == 0 && k < n; k++) {
            handle__child(o, ch, insts[k], &ci);
            rc = get_object(g, &ci, depth);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* An object and (depth permitting) its subtree; `depth` is the object's
 * level, 1 for the one the path named. */
static int get_object(struct get_state *g, const struct usp_dm_inst *o, uint32_t depth)
{
    struct hctx *c = g->c;
    char *path = handle__obj_path(c, o);
    if (!path)
        return USP_ENOMEM;
    if (!handle__allowed(c, path, USP_PERM_READ))
        return 0;
    if (o->obj->nparams) {
        struct hvec params = {0};
        for (uint32_t i = 0; i < o->obj->nparams; i++) {
            const struct usp_dm_param *p = &o->obj->params[i];
            char *ppath = handle__join(c, path, p->name);
            if (!ppath)
                return USP_ENOMEM;
            if (!handle__allowed(c, ppath, USP_PERM_READ))
                continue;
            char *v = handle__read(c, o, p);
            if (!v)
                return 0; /* the object went away: nothing to report */
            if (add_param(c, &params, p->name, v))
                return USP_ENOMEM;
        }
        if (add_result(g, path, &params))
            return USP_ENOMEM;
    }
    if (g->max_depth && depth >= g->max_depth)
        return 0;
    return get_children(g, o, depth + 1);
}

/* A table named without an instance: every readable row is a depth-1 tree. */
static int get_table(struct get_state *g, const struct usp_dm_inst *t)
{
    struct usp_dm_inst parent = *t;
    uint32_t *insts;
    size_t n;
    int rc = handle__instances(g->c, t->obj, &parent, &insts, &n);
    for (size_t k = 0; rc == 0 && k < n; k++) {
        struct usp_dm_inst row = *t;
        row.inst[row.n++] = insts[k];
        rc = get_object(g, &row, 1);
    }
    return rc;
}

static int get_param(struct get_state *g, const struct usp_dm_match *m, bool search, uint32_t *err,
                     char *msg, size_t msglen)
{
    struct hctx *c = g->c;
    char *path = handle__obj_path(c, &m->obj);
    char *ppath = path ? handle__join(c, path, m->param->name) : NULL;
    if (!ppath)
        return USP_ENOMEM;
    if (!handle__allowed(c, path, USP_PERM_READ) || !handle__allowed(c, ppath, USP_PERM_READ)) {
        if (!search) {
            *err = USP_ERR_INVALID_PATH;
            snprintf(msg, msglen, "Invalid path: %s is not in the supported data model", ppath);
        }
        return 0;
    }
    char *v = handle__read(c, &m->obj, m->param);
    if (!v)
        return 0;
    struct hvec params = {0};
    if (add_param(c, &params, m->param->name, v))
        return USP_ENOMEM;
    return add_result(g, path, &params);
}

static int get_path(struct hctx *c, const char *req_path, uint32_t max_depth, ReqRes *out)
{
    struct get_state g = {.c = c, .max_depth = max_depth};
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
    if (!(p->flags & (USP_PATH_OBJECT | USP_PATH_PARAM)) || !usp_path_is_instantiated(p)) {
        err = USP_ERR_INVALID_PATH;
        snprintf(msg, sizeof msg,
                 "Invalid path: Get takes object and parameter paths of the instantiated "
                 "data model, not %s",
                 p->flags & USP_PATH_COMMAND ? "a command"
                 : p->flags & USP_PATH_EVENT ? "an event"
                                             : "supported-model paths");
        goto done;
    }
    if ((p->flags & USP_PATH_PARAM) && !handle__names_param(c, p)) {
        err = USP_ERR_INVALID_PATH;
        snprintf(msg, sizeof msg, "Invalid path: %s names no parameter (object paths end in '.')",
                 req_path);
        goto done;
    }
    bool search = usp_path_is_search(p);
    struct hmatches ms;
    struct usp_dm_path_err perr;
    rc = handle__resolve(c, p, &ms, &perr);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        /* R-GET.0: a path that is not a search and matches nothing in the
         * instantiated model is 7026, whatever the reason; under a search,
         * a missing instance is just no match (R-GET.1a). */
        if (rc == USP_ERR_OBJECT_DOES_NOT_EXIST && search) {
            rc = 0;
        } else {
            err = rc == USP_ERR_OBJECT_DOES_NOT_EXIST ? USP_ERR_INVALID_PATH : (uint32_t)rc;
            snprintf(msg, sizeof msg, "%s", perr.msg);
            goto done;
        }
    }
    for (size_t i = 0; i < ms.n && !err; i++) {
        const struct usp_dm_match *m = &ms.m[i];
        if (!handle__search_readable(c, p, &m->obj))
            continue; /* R-GET.1: selected through an unreadable parameter */
        if (m->param) {
            rc = get_param(&g, m, search, &err, msg, sizeof msg);
        } else if (handle__is_table(&m->obj)) {
            rc = get_table(&g, &m->obj);
        } else {
            char *path = handle__obj_path(c, &m->obj);
            if (!path)
                return USP_ENOMEM;
            if (!search && !handle__allowed(c, path, USP_PERM_READ)) {
                err = USP_ERR_INVALID_PATH;
                snprintf(msg, sizeof msg, "Invalid path: %s is not in the supported data model",
                         path);
                break;
            }
            rc = get_object(&g, &m->obj, 1);
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
    out->n_resolved_path_results = g.res.n;
    out->resolved_path_results = (ResRes **)handle__items(&g.res);
    return 0;
}

int handle__get(struct hctx *c, const Usp__Get *req, Usp__Msg **resp)
{
    Usp__GetResp *gr = usp_arena_alloc(c->a, sizeof *gr);
    if (!gr)
        return USP_ENOMEM;
    usp__get_resp__init(gr);
    struct hvec results = {0};
    for (size_t i = 0; i < req->n_param_paths; i++) {
        ReqRes *r = usp_arena_alloc(c->a, sizeof *r);
        if (!r)
            return USP_ENOMEM;
        usp__get_resp__requested_path_result__init(r);
        int rc = get_path(c, req->param_paths[i], req->max_depth, r);
        if (rc || handle__push(c->a, &results, r))
            return USP_ENOMEM;
    }
    gr->n_req_path_results = results.n;
    gr->req_path_results = (ReqRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__GET_RESP,
                                 USP__RESPONSE__RESP_TYPE_GET_RESP, gr);
    return *resp ? 0 : USP_ENOMEM;
}
