/* Delete (TR-369 "The Delete Message"): removes rows named by instance
 * paths or search paths.
 *
 * - A path that is valid but matches no row (a search with no match, or an
 *   instance number that does not exist) succeeds with no affected_paths
 *   (R-DEL.2a).
 * - Path-level failures: bad syntax 7008, not in the supported model 7026,
 *   a single-instance object 7018 (not a table), a table named without an
 *   instance 7004 (Delete takes rows). They give an oper_failure.
 * - Row-level failures, in unaffected_path_errs (R-DEL.3): the table is
 *   not deletable (read-only) 7024, no Delete permission 7006. A row the
 *   controller may not read is left out of both lists (R-DEL.2, R-DEL.4).
 * - allow_partial=false: any failure fails the message with an Error whose
 *   err_code is the first failure's and whose param_errs list every failed
 *   path or row; nothing is deleted (R-DEL.1).
 * - affected_paths lists the rows the path matched. Rows below them go too
 *   (usp_dm_delete removes the subtree) and each gets its ObjectDeletion
 *   event, the matched row first and then its descendants in order, but
 *   they are not listed: the controller asked for the matched rows, and
 *   the specification's example lists just those.
 * - Events wait until the message succeeds; the table's NumberOfEntries
 *   gets a ValueChange. */
#include <stdio.h>
#include <string.h>

#include "handle_int.h"

typedef Usp__DeleteResp__DeletedObjectResult ObjRes;
typedef Usp__DeleteResp__DeletedObjectResult__OperationStatus OperStatus;
typedef Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationFailure OperFailure;
typedef Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationSuccess OperSuccess;
typedef Usp__DeleteResp__UnaffectedPathError Unaffected;

struct target {
    struct usp_dm_inst row;
    char *path;
    bool readable;
};

struct del_path {
    const char *req;
    uint32_t code; /* path-level failure */
    char msg[512];
    struct target *t; /* rows that may go */
    size_t nt;
    struct hvec unaffected; /* Unaffected * */
};

static int check_path(struct hctx *c, const char *req, struct del_path *dp)
{
    memset(dp, 0, sizeof *dp);
    dp->req = req;
    struct usp_path *p;
    int rc = handle__parse(c, req, &p, dp->msg, sizeof dp->msg);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        dp->code = (uint32_t)rc;
        return 0;
    }
    if (!(p->flags & USP_PATH_OBJECT) || !usp_path_is_instantiated(p)) {
        dp->code = USP_ERR_INVALID_PATH;
        snprintf(dp->msg, sizeof dp->msg,
                 "Invalid path: Delete takes instance or search paths of the instantiated data "
                 "model (ending in '.'): %s",
                 req);
        return 0;
    }
    struct hmatches ms;
    struct usp_dm_path_err perr;
    rc = handle__resolve(c, p, &ms, &perr);
    if (rc < 0)
        return rc;
    if (rc == USP_ERR_OBJECT_DOES_NOT_EXIST)
        return 0; /* R-DEL.2a */
    if (rc > 0) {
        dp->code = (uint32_t)rc;
        snprintf(dp->msg, sizeof dp->msg, "%s", perr.msg);
        return 0;
    }
    dp->t = usp_arena_zalloc(c->a, (ms.n ? ms.n : 1) * sizeof *dp->t);
    if (!dp->t)
        return USP_ENOMEM;
    for (size_t i = 0; i < ms.n; i++) {
        const struct usp_dm_inst *o = &ms.m[i].obj;
        if (!(o->obj->flags & USP_DM_OBJ_MULTI)) {
            dp->code = USP_ERR_NOT_A_TABLE;
            snprintf(dp->msg, sizeof dp->msg, "Object is not a table: %s", o->obj->path);
            return 0;
        }
        if (handle__is_table(o)) {
            dp->code = USP_ERR_INVALID_ARGUMENTS;
            snprintf(dp->msg, sizeof dp->msg,
                     "Invalid arguments: %s names a table; Delete takes its instances", req);
            return 0;
        }
        char *path = handle__obj_path(c, o);
        if (!path)
            return USP_ENOMEM;
        bool readable = handle__allowed(c, path, USP_PERM_READ);
        uint32_t code = 0;
        char msg[512];
        if (o->obj->access != USP_DM_READ_WRITE) {
            code = USP_ERR_OBJECT_NOT_DELETABLE;
            snprintf(msg, sizeof msg, "Delete failure: %s is not deletable", path);
        } else if (!handle__allowed(c, path, USP_PERM_DELETE)) {
            code = USP_ERR_PERMISSION_DENIED;
            snprintf(msg, sizeof msg, "Permission denied: no Delete permission on %s", path);
        }
        if (!code) {
            dp->t[dp->nt++] = (struct target){*o, path, readable};
            continue;
        }
        if (!readable)
            continue;
        Unaffected *u = usp_arena_alloc(c->a, sizeof *u);
        if (!u)
            return USP_ENOMEM;
        usp__delete_resp__unaffected_path_error__init(u);
        u->unaffected_path = path;
        u->err_code = code;
        u->err_msg = usp_arena_strdup(c->a, msg);
        if (!u->err_msg || handle__push(c->a, &dp->unaffected, u))
            return USP_ENOMEM;
    }
    return 0;
}

/* Queues ObjectDeletion for every row below `o` (pre-order). */
static int queue_below(struct hctx *c, const struct usp_dm_inst *o)
{
    for (uint32_t i = 0; i < o->obj->nchildren; i++) {
        const struct usp_dm_object *ch = o->obj->children[i];
        struct usp_dm_inst ci;
        if (!(ch->flags & USP_DM_OBJ_MULTI)) {
            handle__child(o, ch, 0, &ci);
            if (queue_below(c, &ci))
                return USP_ENOMEM;
            continue;
        }
        uint32_t *insts;
        size_t n;
        if (handle__instances(c, ch, o, &insts, &n))
            return USP_ENOMEM;
        for (size_t k = 0; k < n; k++) {
            handle__child(o, ch, insts[k], &ci);
            char *path = handle__obj_path(c, &ci);
            struct usp_dm_event_info ev = {.kind = USP_EV_OBJ_DELETION, .path = path};
            if (!path || handle__queue_event(c, &ev) || queue_below(c, &ci))
                return USP_ENOMEM;
        }
    }
    return 0;
}

static int delete_rows(struct hctx *c, struct del_path *dp, ObjRes *r)
{
    struct hvec affected = {0};
    for (size_t i = 0; i < dp->nt; i++) {
        struct target *t = &dp->t[i];
        if (!usp_dm_exists(c->agent, &t->row))
            continue; /* went with a row deleted before it */
        struct usp_dm_event_info ev = {.kind = USP_EV_OBJ_DELETION, .path = t->path};
        if (handle__queue_event(c, &ev) || queue_below(c, &t->row))
            return USP_ENOMEM;
        if (usp_dm_delete(c->agent, &t->row) != 0)
            continue;
        if (handle__queue_count_change(c, &t->row))
            return USP_ENOMEM;
        if (t->readable && handle__push(c->a, &affected, t->path))
            return USP_ENOMEM;
    }
    OperStatus *st = usp_arena_alloc(c->a, sizeof *st);
    OperSuccess *ok = usp_arena_alloc(c->a, sizeof *ok);
    if (!st || !ok)
        return USP_ENOMEM;
    usp__delete_resp__deleted_object_result__operation_status__init(st);
    usp__delete_resp__deleted_object_result__operation_status__operation_success__init(ok);
    ok->n_affected_paths = affected.n;
    ok->affected_paths = (char **)handle__items(&affected);
    ok->n_unaffected_path_errs = dp->unaffected.n;
    ok->unaffected_path_errs = (Unaffected **)handle__items(&dp->unaffected);
    st->oper_status_case =
        USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS;
    st->oper_success = ok;
    r->oper_status = st;
    return 0;
}

static int path_failure(struct hctx *c, const struct del_path *dp, ObjRes *r)
{
    OperStatus *st = usp_arena_alloc(c->a, sizeof *st);
    OperFailure *f = usp_arena_alloc(c->a, sizeof *f);
    if (!st || !f)
        return USP_ENOMEM;
    usp__delete_resp__deleted_object_result__operation_status__init(st);
    usp__delete_resp__deleted_object_result__operation_status__operation_failure__init(f);
    f->err_code = dp->code;
    f->err_msg = usp_arena_strdup(c->a, dp->msg);
    if (!f->err_msg)
        return USP_ENOMEM;
    st->oper_status_case =
        USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE;
    st->oper_failure = f;
    r->oper_status = st;
    return 0;
}

/* R-DEL.1: the Error for allow_partial=false, or NULL (with *none set)
 * when every path passed. */
static Usp__Msg *holistic_error(struct hctx *c, struct del_path *dps, size_t n, bool *none)
{
    Usp__Msg *m = NULL;
    *none = true;
    for (size_t i = 0; i < n; i++) {
        struct del_path *dp = &dps[i];
        if (dp->code) {
            if (!m && !(m = handle__new_error(c, dp->code, "%s", dp->msg)))
                return NULL;
            *none = false;
            if (usp_msg_error_add_param(c->a, m, dp->req, dp->code, dp->msg))
                return NULL;
        }
        for (size_t k = 0; k < dp->unaffected.n; k++) {
            const Unaffected *u = dp->unaffected.v[k];
            if (!m && !(m = handle__new_error(c, u->err_code, "%s", u->err_msg)))
                return NULL;
            *none = false;
            if (usp_msg_error_add_param(c->a, m, u->unaffected_path, u->err_code, u->err_msg))
                return NULL;
        }
    }
    return m;
}

int handle__delete(struct hctx *c, const Usp__Delete *req, Usp__Msg **resp)
{
    struct del_path *dps = usp_arena_alloc(c->a, (req->n_obj_paths + 1) * sizeof *dps);
    if (!dps)
        return USP_ENOMEM;
    for (size_t i = 0; i < req->n_obj_paths; i++)
        if (check_path(c, req->obj_paths[i], &dps[i]))
            return USP_ENOMEM;
    if (!req->allow_partial) {
        bool none;
        Usp__Msg *m = holistic_error(c, dps, req->n_obj_paths, &none);
        if (!none) {
            *resp = m;
            return m ? 0 : USP_ENOMEM;
        }
    }
    Usp__DeleteResp *dr = usp_arena_alloc(c->a, sizeof *dr);
    if (!dr)
        return USP_ENOMEM;
    usp__delete_resp__init(dr);
    struct hvec results = {0};
    for (size_t i = 0; i < req->n_obj_paths; i++) {
        ObjRes *r = usp_arena_alloc(c->a, sizeof *r);
        if (!r)
            return USP_ENOMEM;
        usp__delete_resp__deleted_object_result__init(r);
        r->requested_path = req->obj_paths[i];
        int rc = dps[i].code ? path_failure(c, &dps[i], r) : delete_rows(c, &dps[i], r);
        if (rc || handle__push(c->a, &results, r))
            return USP_ENOMEM;
    }
    dr->n_deleted_obj_results = results.n;
    dr->deleted_obj_results = (ObjRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__DELETE_RESP,
                                 USP__RESPONSE__RESP_TYPE_DELETE_RESP, dr);
    return *resp ? 0 : USP_ENOMEM;
}
