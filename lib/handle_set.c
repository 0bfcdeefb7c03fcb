/* Set (TR-369 "The Set Message"): parameter error -> object error ->
 * message error, after allow_partial and `required`.
 *
 * - A parameter that fails (7006 no Write permission, 7010 unknown, 7013
 *   read-only or writeOnceReadOnly already set, 7011/7012 bad value, 7025
 *   duplicate key) and is not required is reported in param_errs of its
 *   object's UpdatedInstanceResult; the object still succeeds.
 * - A required parameter that fails fails its object (R-SET.2): the
 *   object's changes are undone. With allow_partial=true the
 *   UpdatedObjectResult is an oper_failure 7021 with updated_inst_failures;
 *   with allow_partial=false the whole message fails (R-SET.1): every
 *   change the message made is undone and the answer is an Error 7021
 *   whose param_errs name the failed parameters by full path.
 * - A search path matching more than one object is all-or-nothing whatever
 *   allow_partial says (R-SET.2a): one failed object undoes the changes of
 *   the whole obj_path and gives an oper_failure listing the objects that
 *   failed.
 * - A path that does not resolve (7008, 7026, 7016) fails the same way, at
 *   the level of the obj_path; a search that matches nothing succeeds with
 *   no results (R-MSG.4a).
 * - updated_params holds every parameter set (even to the value it had),
 *   relative to the object, read back, and only when readable (R-SET.3).
 * - ValueChange events go out only for values that changed, and only once
 *   the message's outcome is known (a rolled-back value never changed).
 *
 * Undo writes the old value back through the engine. A writeOnceReadOnly
 * parameter that a rolled-back Set wrote for the first time keeps its new
 * value: the engine refuses a second write and has no undo. */
#include <stdio.h>
#include <string.h>

#include "handle_int.h"

typedef Usp__SetResp__UpdatedObjectResult ObjRes;
typedef Usp__SetResp__UpdatedObjectResult__OperationStatus OperStatus;
typedef Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure OperFailure;
typedef Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationSuccess OperSuccess;
typedef Usp__SetResp__UpdatedInstanceFailure InstFailure;
typedef Usp__SetResp__UpdatedInstanceResult InstResult;
typedef Usp__SetResp__UpdatedInstanceResult__UpdatedParamsEntry UpdatedEntry;
typedef Usp__SetResp__ParameterError ParamErr;

struct undo {
    struct usp_dm_inst o;
    const struct usp_dm_param *p;
    char *old;
};

struct set_state {
    struct hctx *c;
    struct undo *u;
    size_t nu, capu;
};

/* The outcome of one matched object. */
struct obj_out {
    char *path;
    bool failed;               /* a required parameter failed */
    struct hvec errs;          /* ParamErr * (all failures) */
    struct hvec required_errs; /* ParamErr * (required ones) */
    struct hvec updated;       /* UpdatedEntry * */
};

static int log_undo(struct set_state *s, const struct usp_dm_inst *o, const struct usp_dm_param *p,
                    char *old)
{
    if (s->nu == s->capu) {
        size_t cap = s->capu ? s->capu * 2 : 16;
        struct undo *nu = usp_arena_realloc(s->c->a, s->u, s->capu * sizeof *nu, cap * sizeof *nu);
        if (!nu)
            return USP_ENOMEM;
        s->u = nu;
        s->capu = cap;
    }
    s->u[s->nu++] = (struct undo){*o, p, old};
    return 0;
}

static void undo_to(struct set_state *s, size_t mark)
{
    char why[128];
    while (s->nu > mark) {
        struct undo *u = &s->u[--s->nu];
        (void)usp_dm_set(s->c->agent, &u->o, u->p, u->old, NULL, why, sizeof why);
    }
}

static ParamErr *param_err(struct hctx *c, const char *param, uint32_t code, const char *msg)
{
    ParamErr *e = usp_arena_alloc(c->a, sizeof *e);
    if (!e)
        return NULL;
    usp__set_resp__parameter_error__init(e);
    e->param = usp_arena_strdup(c->a, param);
    e->err_code = code;
    e->err_msg = usp_arena_strdup(c->a, msg);
    return e->param && e->err_msg ? e : NULL;
}

/* Sets one parameter: 0 or the USP code (msg filled), or USP_ENOMEM. */
static int set_one(struct set_state *s, struct obj_out *oo, const struct usp_dm_inst *o,
                   const Usp__Set__UpdateParamSetting *ps, char *msg, size_t msglen)
{
    struct hctx *c = s->c;
    struct usp_dm_inst owner;
    const struct usp_dm_param *p;
    char *ppath = handle__join(c, oo->path, ps->param);
    if (!ppath)
        return USP_ENOMEM;
    if (handle__rel_param(o, ps->param, &owner, &p) != 0) {
        snprintf(msg, msglen, "Unsupported parameter: %s", ppath);
        return USP_ERR_UNSUPPORTED_PARAM;
    }
    if (!handle__allowed(c, ppath, USP_PERM_WRITE)) {
        snprintf(msg, msglen, "Permission denied: no Write permission on %s", ppath);
        return USP_ERR_PERMISSION_DENIED;
    }
    if (p->access == USP_DM_READ_ONLY) {
        snprintf(msg, msglen, "Attempt to update non-writeable parameter %s", ppath);
        return USP_ERR_PARAM_READ_ONLY;
    }
    if (!usp_dm_exists(c->agent, &owner)) {
        snprintf(msg, msglen, "Object does not exist: %s", oo->path);
        return USP_ERR_OBJECT_DOES_NOT_EXIST;
    }
    char *old = handle__read_raw(c, &owner, p);
    if (!old)
        return USP_ENOMEM;
    bool changed = false;
    char why[256] = "";
    int rc = usp_dm_set(c->agent, &owner, p, ps->value, &changed, why, sizeof why);
    if (rc < 0)
        return USP_ENOMEM;
    if (rc > 0) {
        snprintf(msg, msglen, "%s: %s%s%s",
                 usp_err_name((uint32_t)rc) ? usp_err_name((uint32_t)rc) : "Error", ppath,
                 why[0] ? ": " : "", why);
        return rc;
    }
    if (log_undo(s, &owner, p, old))
        return USP_ENOMEM;
    char *v = handle__read(c, &owner, p);
    if (!v)
        return USP_ENOMEM;
    if (changed) {
        char *raw = handle__read_raw(c, &owner, p);
        if (!raw)
            return USP_ENOMEM;
        struct usp_dm_event_info ev = {.kind = USP_EV_VALUE_CHANGE, .path = ppath, .value = raw};
        if (handle__queue_event(c, &ev))
            return USP_ENOMEM;
    }
    if (handle__allowed(c, ppath, USP_PERM_READ)) {
        UpdatedEntry *e = usp_arena_alloc(c->a, sizeof *e);
        if (!e)
            return USP_ENOMEM;
        usp__set_resp__updated_instance_result__updated_params_entry__init(e);
        e->key = ps->param;
        e->value = v;
        if (handle__push(c->a, &oo->updated, e))
            return USP_ENOMEM;
    }
    return 0;
}

static int set_object(struct set_state *s, const struct usp_dm_inst *o,
                      const Usp__Set__UpdateObject *uo, struct obj_out *oo)
{
    struct hctx *c = s->c;
    memset(oo, 0, sizeof *oo);
    oo->path = handle__obj_path(c, o);
    if (!oo->path)
        return USP_ENOMEM;
    size_t umark = s->nu, emark = handle__events_mark(c);
    for (size_t i = 0; i < uo->n_param_settings; i++) {
        const Usp__Set__UpdateParamSetting *ps = uo->param_settings[i];
        char msg[512];
        int rc = set_one(s, oo, o, ps, msg, sizeof msg);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        ParamErr *e = param_err(c, ps->param, (uint32_t)rc, msg);
        if (!e || handle__push(c->a, &oo->errs, e))
            return USP_ENOMEM;
        if (ps->required) {
            oo->failed = true;
            if (handle__push(c->a, &oo->required_errs, e))
                return USP_ENOMEM;
        }
    }
    if (oo->failed) {
        undo_to(s, umark);
        handle__events_drop(c, emark);
    }
    return 0;
}

static OperStatus *new_status(struct hctx *c)
{
    OperStatus *st = usp_arena_alloc(c->a, sizeof *st);
    if (st)
        usp__set_resp__updated_object_result__operation_status__init(st);
    return st;
}

static int set_failure(struct hctx *c, ObjRes *r, uint32_t code, const char *msg,
                       struct hvec *inst_failures)
{
    OperStatus *st = new_status(c);
    OperFailure *f = usp_arena_alloc(c->a, sizeof *f);
    if (!st || !f)
        return USP_ENOMEM;
    usp__set_resp__updated_object_result__operation_status__operation_failure__init(f);
    f->err_code = code;
    f->err_msg = usp_arena_strdup(c->a, msg);
    if (!f->err_msg)
        return USP_ENOMEM;
    if (inst_failures) {
        f->n_updated_inst_failures = inst_failures->n;
        f->updated_inst_failures = (InstFailure **)handle__items(inst_failures);
    }
    st->oper_status_case =
        USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE;
    st->oper_failure = f;
    r->oper_status = st;
    return 0;
}

static int inst_failure(struct hctx *c, struct hvec *out, const struct obj_out *oo)
{
    InstFailure *f = usp_arena_alloc(c->a, sizeof *f);
    if (!f)
        return USP_ENOMEM;
    usp__set_resp__updated_instance_failure__init(f);
    f->affected_path = oo->path;
    f->n_param_errs = oo->errs.n;
    f->param_errs = (ParamErr **)handle__items(&oo->errs);
    return handle__push(c->a, out, f);
}

/* The Error for allow_partial=false: the failed required parameters of
 * the object, by full path. */
static Usp__Msg *object_error(struct hctx *c, const struct obj_out *oo)
{
    Usp__Msg *m = handle__new_error(c, USP_ERR_REQUIRED_PARAM_FAILED,
                                    "Required parameter failed: %s could not be updated", oo->path);
    for (size_t i = 0; m && i < oo->required_errs.n; i++) {
        const ParamErr *e = oo->required_errs.v[i];
        char *full = handle__join(c, oo->path, e->param);
        if (!full || usp_msg_error_add_param(c->a, m, full, e->err_code, e->err_msg))
            return NULL;
    }
    return m;
}

static Usp__Msg *path_error(struct hctx *c, const char *path, uint32_t code, const char *msg)
{
    Usp__Msg *m = handle__new_error(c, code, "%s", msg);
    if (m && usp_msg_error_add_param(c->a, m, path, code, msg))
        return NULL;
    return m;
}

/* One UpdateObject. Sets *err (an Error message) when the whole message
 * must fail. */
static int set_path(struct set_state *s, const Usp__Set__UpdateObject *uo, bool allow_partial,
                    ObjRes *r, Usp__Msg **err)
{
    struct hctx *c = s->c;
    char msg[512] = "";
    uint32_t code = 0;
    r->requested_path = uo->obj_path;
    struct usp_path *p;
    struct hmatches ms = {0};
    int rc = handle__parse(c, uo->obj_path, &p, msg, sizeof msg);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        code = (uint32_t)rc;
        goto path_failed;
    }
    if (!(p->flags & USP_PATH_OBJECT) || !usp_path_is_instantiated(p)) {
        code = USP_ERR_INVALID_PATH;
        snprintf(msg, sizeof msg,
                 "Invalid path: Set takes object paths of the instantiated data model "
                 "(ending in '.'): %s",
                 uo->obj_path);
        goto path_failed;
    }
    bool search = usp_path_is_search(p);
    struct usp_dm_path_err perr;
    rc = handle__resolve(c, p, &ms, &perr);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        if (rc == USP_ERR_OBJECT_DOES_NOT_EXIST && search) {
            ms.n = 0;
        } else {
            code = (uint32_t)rc;
            snprintf(msg, sizeof msg, "%s", perr.msg);
            goto path_failed;
        }
    }
    for (size_t i = 0; i < ms.n; i++) {
        if (handle__is_table(&ms.m[i].obj)) {
            code = USP_ERR_INVALID_PATH;
            snprintf(msg, sizeof msg, "Invalid path: %s names a table; Set needs its instances",
                     uo->obj_path);
            goto path_failed;
        }
    }

    size_t umark = s->nu, emark = handle__events_mark(c);
    struct obj_out *outs = usp_arena_zalloc(c->a, (ms.n ? ms.n : 1) * sizeof *outs);
    if (!outs)
        return USP_ENOMEM;
    size_t nfailed = 0;
    bool multi = search && ms.n > 1;
    for (size_t i = 0; i < ms.n; i++) {
        rc = set_object(s, &ms.m[i].obj, uo, &outs[i]);
        if (rc)
            return rc;
        if (outs[i].failed) {
            nfailed++;
            if (!multi && !allow_partial) {
                undo_to(s, 0);
                handle__events_drop(c, 0);
                *err = object_error(c, &outs[i]);
                return *err ? 0 : USP_ENOMEM;
            }
        }
    }
    if (nfailed) {
        /* R-SET.2a for a multi-object search; otherwise the one object
         * failed under allow_partial=true (R-SET.0). */
        undo_to(s, umark);
        handle__events_drop(c, emark);
        struct hvec fails = {0};
        for (size_t i = 0; i < ms.n; i++)
            if (outs[i].failed && inst_failure(c, &fails, &outs[i]))
                return USP_ENOMEM;
        snprintf(msg, sizeof msg,
                 "Required parameter failed: %zu of %zu object%s could not be "
                 "updated%s",
                 nfailed, ms.n, ms.n == 1 ? "" : "s",
                 multi ? "; no object of this path was changed" : "");
        return set_failure(c, r, USP_ERR_REQUIRED_PARAM_FAILED, msg, &fails);
    }
    struct hvec results = {0};
    for (size_t i = 0; i < ms.n; i++) {
        InstResult *ir = usp_arena_alloc(c->a, sizeof *ir);
        if (!ir)
            return USP_ENOMEM;
        usp__set_resp__updated_instance_result__init(ir);
        ir->affected_path = outs[i].path;
        ir->n_param_errs = outs[i].errs.n;
        ir->param_errs = (ParamErr **)handle__items(&outs[i].errs);
        ir->n_updated_params = outs[i].updated.n;
        ir->updated_params = (UpdatedEntry **)handle__items(&outs[i].updated);
        if (handle__push(c->a, &results, ir))
            return USP_ENOMEM;
    }
    OperStatus *st = new_status(c);
    OperSuccess *ok = usp_arena_alloc(c->a, sizeof *ok);
    if (!st || !ok)
        return USP_ENOMEM;
    usp__set_resp__updated_object_result__operation_status__operation_success__init(ok);
    ok->n_updated_inst_results = results.n;
    ok->updated_inst_results = (InstResult **)handle__items(&results);
    st->oper_status_case =
        USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS;
    st->oper_success = ok;
    r->oper_status = st;
    return 0;

path_failed:
    if (!allow_partial) {
        undo_to(s, 0);
        handle__events_drop(c, 0);
        *err = path_error(c, uo->obj_path, code, msg);
        return *err ? 0 : USP_ENOMEM;
    }
    return set_failure(c, r, code, msg, NULL);
}

int handle__set(struct hctx *c, const Usp__Set *req, Usp__Msg **resp)
{
    struct set_state s = {.c = c};
    Usp__SetResp *sr = usp_arena_alloc(c->a, sizeof *sr);
    if (!sr)
        return USP_ENOMEM;
    usp__set_resp__init(sr);
    struct hvec results = {0};
    for (size_t i = 0; i < req->n_update_objs; i++) {
        ObjRes *r = usp_arena_alloc(c->a, sizeof *r);
        if (!r)
            return USP_ENOMEM;
        usp__set_resp__updated_object_result__init(r);
        Usp__Msg *err = NULL;
        int rc = set_path(&s, req->update_objs[i], req->allow_partial, r, &err);
        if (rc) {
            undo_to(&s, 0);
            handle__events_drop(c, 0);
            return rc;
        }
        if (err) {
            *resp = err;
            return 0;
        }
        if (handle__push(c->a, &results, r))
            return USP_ENOMEM;
    }
    sr->n_updated_obj_results = results.n;
    sr->updated_obj_results = (ObjRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__SET_RESP,
                                 USP__RESPONSE__RESP_TYPE_SET_RESP, sr);
    return *resp ? 0 : USP_ENOMEM;
}
