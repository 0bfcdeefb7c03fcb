/* Add (TR-369 "The Add Message"): new rows in writable tables.
 *
 * - obj_path names a table ("Device.IP.Interface.") or, through a search,
 *   several ("Device.WiFi.AccessPoint.*.AssociatedDevice."): one
 *   CreatedObjectResult per table matched, all with the same
 *   requested_path (R-ADD.2 is deprecated); a search matching nothing
 *   gives one empty oper_success (R-MSG.4a).
 * - Not a table (a single object, or a row): 7018; a read-only table:
 *   7019; no Add permission on the table: 7006; maxEntries reached: 7017.
 * - A parameter that fails and is neither required nor part of a unique
 *   key goes to param_errs (R-ADD.4); a required one, or any unique-key
 *   parameter (always treated as required), fails the object: the row is
 *   removed again and the result is an oper_failure 7021 naming the
 *   parameters (allow_partial=true), or the whole message fails with an
 *   Error 7021 whose param_errs give each parameter's path and code, and
 *   every row the message created is removed (R-ADD.1, R-ADD.2a).
 *   7021 and 7025 are not in the Add list of the specification but the
 *   error-code table names Add as where they apply, so they are used.
 * - The agent fills the unique keys the controller left wholly unset
 *   (R-ADD.5: "cpe-N" for Alias and other empty string keys) and returns
 *   every readable key in unique_keys (R-ADD.6).
 * - ObjectCreation (with the keys) and the NumberOfEntries ValueChange are
 *   announced once the message succeeds; no ValueChange for the values of
 *   the new row itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handle_int.h"

typedef Usp__AddResp__CreatedObjectResult ObjRes;
typedef Usp__AddResp__CreatedObjectResult__OperationStatus OperStatus;
typedef Usp__AddResp__CreatedObjectResult__OperationStatus__OperationFailure OperFailure;
typedef Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess OperSuccess;
typedef Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess__UniqueKeysEntry
    KeyEntry;
typedef Usp__AddResp__ParameterError ParamErr;

static bool is_key_param(const struct usp_dm_object *o, uint32_t idx)
{
    for (uint32_t k = 0; k < o->nkeys; k++)
        for (uint32_t j = 0; j < o->keys[k].nparams; j++)
            if (o->keys[k].params[j] == idx)
                return true;
    return false;
}

/* The value of a parameter by name in a row ("" when missing). */
static char *row_value(struct hctx *c, const struct usp_dm_inst *row, const char *name)
{
    const struct usp_dm_param *p = usp_dm_object_param(row->obj, name, strlen(name));
    return p ? handle__read_raw(c, row, p) : NULL;
}

static int set_agent_value(struct hctx *c, const struct usp_dm_inst *row, const char *name,
                           const char *value)
{
    const struct usp_dm_param *p = usp_dm_object_param(row->obj, name, strlen(name));
    if (!p)
        return 0;
    char why[128];
    int rc = usp_dm_set(c->agent, row, p, value, NULL, why, sizeof why);
    return rc < 0 ? rc : 0;
}

/* "Device.LocalAgent.Controller.N" for the requesting controller, or NULL. */
static char *controller_row(struct hctx *c)
{
    struct usp_dm_item it;
    if (usp_dm_lookup(c->schema, "Device.LocalAgent.Controller.{i}.", &it) != 0 ||
        it.kind != USP_DM_KIND_OBJECT)
        return NULL;
    struct usp_dm_inst parent = {.obj = it.object->parent, .n = 0};
    uint32_t *insts;
    size_t n;
    if (handle__instances(c, it.object, &parent, &insts, &n))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        struct usp_dm_inst row;
        handle__child(&parent, it.object, insts[i], &row);
        char *eid = row_value(c, &row, "EndpointID");
        if (eid && strcmp(eid, c->controller) == 0)
            return usp_arena_printf(c->a, "Device.LocalAgent.Controller.%u", insts[i]);
    }
    return NULL;
}

int handle__init_row(struct hctx *c, const struct usp_dm_inst *row)
{
    if (strcmp(row->obj->path, "Device.LocalAgent.Subscription.{i}.") != 0)
        return 0;
    char *recipient = controller_row(c);
    if (recipient && set_agent_value(c, row, "Recipient", recipient))
        return USP_ENOMEM;
    time_t now = (time_t)handle__now(c);
    struct tm tm;
    char buf[32];
    if (gmtime_r(&now, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return set_agent_value(c, row, "CreationDate", buf);
    return 0;
}

int handle__assign_keys(struct hctx *c, const struct usp_dm_inst *row, const bool *given)
{
    const struct usp_dm_object *o = row->obj;
    uint32_t inst = row->n ? row->inst[row->n - 1] : 0;
    for (uint32_t k = 0; k < o->nkeys; k++) {
        const struct usp_dm_unique_key *uk = &o->keys[k];
        bool any = false;
        for (uint32_t j = 0; given && j < uk->nparams; j++)
            any |= given[uk->params[j]];
        if (any)
            continue; /* the creator chose this key */
        for (uint32_t j = 0; j < uk->nparams; j++) {
            const struct usp_dm_param *p = &o->params[uk->params[j]];
            if (p->type && (p->type->base != USP_DM_STRING || p->type->item))
                continue;
            char cur[8];
            if (usp_dm_get(c->agent, row, p, cur, sizeof cur) != 0 || cur[0])
                continue; /* set already (or too long to be empty) */
            /* "cpe-" as TR-181 _AliasUSP prescribes for agent-assigned
             * aliases; a clash with a controller's choice moves on. */
            for (unsigned tries = 1; tries <= 16; tries++) {
                char v[64], why[128];
                if (tries == 1)
                    snprintf(v, sizeof v, "cpe-%u", inst);
                else
                    snprintf(v, sizeof v, "cpe-%u-%u", inst, tries);
                int rc = usp_dm_set(c->agent, row, p, v, NULL, why, sizeof why);
                if (rc < 0)
                    return rc;
                if (rc != USP_ERR_UNIQUE_KEY_CONFLICT)
                    break;
            }
        }
    }
    return 0;
}

/* A created row, kept until the message's outcome is known. */
struct created {
    struct usp_dm_inst row;
};

struct add_state {
    struct hctx *c;
    struct created *rows;
    size_t nrows, caprows;
};

static void remove_rows(struct add_state *s, size_t mark)
{
    while (s->nrows > mark)
        (void)usp_dm_delete(s->c->agent, &s->rows[--s->nrows].row);
}

static int note_row(struct add_state *s, const struct usp_dm_inst *row)
{
    if (s->nrows == s->caprows) {
        size_t cap = s->caprows ? s->caprows * 2 : 8;
        struct created *n =
            usp_arena_realloc(s->c->a, s->rows, s->caprows * sizeof *n, cap * sizeof *n);
        if (!n)
            return USP_ENOMEM;
        s->rows = n;
        s->caprows = cap;
    }
    s->rows[s->nrows++].row = *row;
    return 0;
}

struct failed_param {
    const char *param;
    uint32_t code;
    const char *msg;
};

/* The outcome of creating one row. */
struct row_out {
    uint32_t code; /* 0: created */
    char msg[512];
    struct usp_dm_inst row;
    char *path;
    struct hvec errs;     /* ParamErr * (not required) */
    struct hvec required; /* struct failed_param * */
};

static int param_failed(struct hctx *c, struct row_out *ro, const char *param, bool required,
                        uint32_t code, const char *msg)
{
    if (required) {
        struct failed_param *f = usp_arena_alloc(c->a, sizeof *f);
        if (!f)
            return USP_ENOMEM;
        f->param = param;
        f->code = code;
        f->msg = usp_arena_strdup(c->a, msg);
        return f->msg ? handle__push(c->a, &ro->required, f) : USP_ENOMEM;
    }
    ParamErr *e = usp_arena_alloc(c->a, sizeof *e);
    if (!e)
        return USP_ENOMEM;
    usp__add_resp__parameter_error__init(e);
    e->param = (char *)param;
    e->err_code = code;
    e->err_msg = usp_arena_strdup(c->a, msg);
    return e->err_msg ? handle__push(c->a, &ro->errs, e) : USP_ENOMEM;
}

static int create_row(struct add_state *s, const struct usp_dm_inst *table,
                      const Usp__Add__CreateObject *co, struct row_out *ro)
{
    struct hctx *c = s->c;
    memset(ro, 0, sizeof *ro);
    if (!(table->obj->flags & USP_DM_OBJ_MULTI) || !handle__is_table(table)) {
        char *opath = handle__obj_path(c, table);
        if (!opath)
            return USP_ENOMEM;
        ro->code = USP_ERR_NOT_A_TABLE;
        snprintf(ro->msg, sizeof ro->msg, "Object is not a table: %s%s", opath,
                 table->obj->flags & USP_DM_OBJ_MULTI ? " is a row; Add takes its table" : "");
        return 0;
    }
    char *tpath = handle__table_path(c, table);
    if (!tpath)
        return USP_ENOMEM;
    if (table->obj->access != USP_DM_READ_WRITE) {
        ro->code = USP_ERR_OBJECT_NOT_CREATABLE;
        snprintf(ro->msg, sizeof ro->msg, "Attempt to create non-creatable object: %s", tpath);
        return 0;
    }
    if (!handle__allowed(c, tpath, USP_PERM_ADD)) {
        ro->code = USP_ERR_PERMISSION_DENIED;
        snprintf(ro->msg, sizeof ro->msg, "Permission denied: no Add permission on %s", tpath);
        return 0;
    }
    struct usp_dm_inst parent = *table;
    parent.obj = table->obj->parent;
    uint32_t inst;
    int rc = usp_dm_add(c->agent, table->obj, &parent, &inst);
    if (rc == USP_ERANGE) {
        ro->code = USP_ERR_CREATION_FAILURE;
        snprintf(ro->msg, sizeof ro->msg,
                 "Object could not be created: %s already has its maximum of %u entries", tpath,
                 table->obj->max_entries);
        return 0;
    }
    if (rc == USP_ENOENT) {
        ro->code = USP_ERR_OBJECT_DOES_NOT_EXIST;
        snprintf(ro->msg, sizeof ro->msg, "Object does not exist: %s", tpath);
        return 0;
    }
    if (rc)
        return USP_ENOMEM;
    handle__child(&parent, table->obj, inst, &ro->row);
    ro->path = handle__obj_path(c, &ro->row);
    if (!ro->path || note_row(s, &ro->row) || handle__init_row(c, &ro->row))
        return USP_ENOMEM;
    bool *given = usp_arena_zalloc(c->a, (table->obj->nparams + 1) * sizeof *given);
    if (!given)
        return USP_ENOMEM;
    for (size_t i = 0; i < co->n_param_settings; i++) {
        const Usp__Add__CreateParamSetting *ps = co->param_settings[i];
        struct usp_dm_inst owner;
        const struct usp_dm_param *p;
        char msg[512], why[256] = "";
        char *ppath = handle__join(c, ro->path, ps->param);
        if (!ppath)
            return USP_ENOMEM;
        uint32_t code = 0;
        bool key = false;
        if (handle__rel_param(&ro->row, ps->param, &owner, &p) != 0) {
            code = USP_ERR_UNSUPPORTED_PARAM;
            snprintf(msg, sizeof msg, "Unsupported parameter: %s", ppath);
        } else {
            key = owner.obj == ro->row.obj && is_key_param(owner.obj, usp_dm_param_index(p));
            if (!handle__allowed(c, ppath, USP_PERM_WRITE)) {
                code = USP_ERR_PERMISSION_DENIED;
                snprintf(msg, sizeof msg, "Permission denied: no Write permission on %s", ppath);
            } else if (p->access == USP_DM_READ_ONLY) {
                code = USP_ERR_PARAM_READ_ONLY;
                snprintf(msg, sizeof msg, "Attempt to update non-writeable parameter %s", ppath);
            } else {
                rc = usp_dm_set(c->agent, &owner, p, ps->value, NULL, why, sizeof why);
                if (rc < 0)
                    return USP_ENOMEM;
                code = (uint32_t)rc;
                snprintf(msg, sizeof msg, "%s: %s%s%s",
                         usp_err_name(code) ? usp_err_name(code) : "Error", ppath,
                         why[0] ? ": " : "", why);
                if (!code && owner.obj == ro->row.obj)
                    given[usp_dm_param_index(p)] = true;
            }
        }
        if (code && param_failed(c, ro, ps->param, ps->required || key, code, msg))
            return USP_ENOMEM;
    }
    if (ro->required.n) {
        ro->code = USP_ERR_REQUIRED_PARAM_FAILED;
        size_t len = (size_t)snprintf(ro->msg, sizeof ro->msg,
                                      "Required parameter failed: %s not created:", tpath);
        for (size_t i = 0; i < ro->required.n && len < sizeof ro->msg; i++) {
            const struct failed_param *f = ro->required.v[i];
            len += (size_t)snprintf(ro->msg + len, sizeof ro->msg - len, " %s (%u)", f->param,
                                    f->code);
        }
        return 0;
    }
    return handle__assign_keys(c, &ro->row, given);
}

static int success(struct hctx *c, ObjRes *r, const struct row_out *ro)
{
    OperStatus *st = usp_arena_alloc(c->a, sizeof *st);
    OperSuccess *ok = usp_arena_alloc(c->a, sizeof *ok);
    if (!st || !ok)
        return USP_ENOMEM;
    usp__add_resp__created_object_result__operation_status__init(st);
    usp__add_resp__created_object_result__operation_status__operation_success__init(ok);
    st->oper_status_case =
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS;
    st->oper_success = ok;
    r->oper_status = st;
    if (!ro)
        return 0; /* a search that matched no table */
    ok->instantiated_path = ro->path;
    ok->n_param_errs = ro->errs.n;
    ok->param_errs = (ParamErr **)handle__items(&ro->errs);
    struct hkeys keys;
    if (handle__keys(c, &ro->row, &keys))
        return USP_ENOMEM;
    struct hvec entries = {0};
    for (uint32_t i = 0; i < keys.n; i++) {
        char *kpath = handle__join(c, ro->path, keys.kv[i].key);
        if (!kpath)
            return USP_ENOMEM;
        if (!handle__allowed(c, kpath, USP_PERM_READ))
            continue;
        KeyEntry *e = usp_arena_alloc(c->a, sizeof *e);
        if (!e)
            return USP_ENOMEM;
        usp__add_resp__created_object_result__operation_status__operation_success__unique_keys_entry__init(
            e);
        e->key = (char *)keys.kv[i].key;
        e->value = (char *)keys.kv[i].value;
        if (handle__push(c->a, &entries, e))
            return USP_ENOMEM;
    }
    ok->n_unique_keys = entries.n;
    ok->unique_keys = (KeyEntry **)handle__items(&entries);
    struct usp_dm_event_info ev = {
        .kind = USP_EV_OBJ_CREATION, .path = ro->path, .kv = keys.kv, .nkv = keys.n};
    if (handle__queue_event(c, &ev))
        return USP_ENOMEM;
    return handle__queue_count_change(c, &ro->row);
}

static int failure(struct hctx *c, ObjRes *r, uint32_t code, const char *msg)
{
    OperStatus *st = usp_arena_alloc(c->a, sizeof *st);
    OperFailure *f = usp_arena_alloc(c->a, sizeof *f);
    if (!st || !f)
        return USP_ENOMEM;
    usp__add_resp__created_object_result__operation_status__init(st);
    usp__add_resp__created_object_result__operation_status__operation_failure__init(f);
    f->err_code = code;
    f->err_msg = usp_arena_strdup(c->a, msg);
    if (!f->err_msg)
        return USP_ENOMEM;
    st->oper_status_case =
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE;
    st->oper_failure = f;
    r->oper_status = st;
    return 0;
}

static Usp__Msg *message_error(struct hctx *c, const char *req_path, const struct row_out *ro)
{
    Usp__Msg *m = handle__new_error(c, ro->code, "%s", ro->msg);
    if (!m)
        return NULL;
    if (!ro->required.n)
        return usp_msg_error_add_param(c->a, m, req_path, ro->code, ro->msg) ? NULL : m;
    for (size_t i = 0; i < ro->required.n; i++) {
        const struct failed_param *f = ro->required.v[i];
        char *full = handle__join(c, ro->path, f->param);
        if (!full || usp_msg_error_add_param(c->a, m, full, f->code, f->msg))
            return NULL;
    }
    return m;
}

static ObjRes *new_result(struct hctx *c, const char *req_path, struct hvec *results)
{
    ObjRes *r = usp_arena_alloc(c->a, sizeof *r);
    if (!r)
        return NULL;
    usp__add_resp__created_object_result__init(r);
    r->requested_path = (char *)req_path;
    return handle__push(c->a, results, r) ? NULL : r;
}

/* One CreateObject: appends its results, or sets *err when the message
 * fails as a whole. */
static int add_path(struct add_state *s, const Usp__Add__CreateObject *co, bool allow_partial,
                    struct hvec *results, Usp__Msg **err)
{
    struct hctx *c = s->c;
    struct row_out *ro = usp_arena_zalloc(c->a, sizeof *ro);
    if (!ro)
        return USP_ENOMEM;
    struct usp_path *p;
    int rc = handle__parse(c, co->obj_path, &p, ro->msg, sizeof ro->msg);
    if (rc < 0)
        return rc;
    struct hmatches ms = {0};
    bool search = false;
    if (rc > 0) {
        ro->code = (uint32_t)rc;
    } else if (!(p->flags & USP_PATH_OBJECT) || !usp_path_is_instantiated(p)) {
        ro->code = USP_ERR_INVALID_PATH;
        snprintf(ro->msg, sizeof ro->msg,
                 "Invalid path: Add takes paths to tables of the instantiated data model "
                 "(ending in '.'): %s",
                 co->obj_path);
    } else {
        search = usp_path_is_search(p);
        struct usp_dm_path_err perr;
        rc = handle__resolve(c, p, &ms, &perr);
        if (rc < 0)
            return rc;
        if (rc == USP_ERR_OBJECT_DOES_NOT_EXIST && search) {
            ms.n = 0;
        } else if (rc > 0) {
            ro->code = (uint32_t)rc;
            snprintf(ro->msg, sizeof ro->msg, "%s", perr.msg);
        }
    }
    if (ro->code) {
        if (!allow_partial) {
            *err = message_error(c, co->obj_path, ro);
            return *err ? 0 : USP_ENOMEM;
        }
        ObjRes *r = new_result(c, co->obj_path, results);
        return r ? failure(c, r, ro->code, ro->msg) : USP_ENOMEM;
    }
    if (ms.n == 0) {
        ObjRes *r = new_result(c, co->obj_path, results);
        return r ? success(c, r, NULL) : USP_ENOMEM;
    }
    for (size_t i = 0; i < ms.n; i++) {
        size_t mark = s->nrows;
        rc = create_row(s, &ms.m[i].obj, co, ro);
        if (rc)
            return rc;
        if (ro->code) {
            remove_rows(s, mark);
            if (!allow_partial) {
                *err = message_error(c, co->obj_path, ro);
                return *err ? 0 : USP_ENOMEM;
            }
        }
        ObjRes *r = new_result(c, co->obj_path, results);
        if (!r)
            return USP_ENOMEM;
        rc = ro->code ? failure(c, r, ro->code, ro->msg) : success(c, r, ro);
        if (rc)
            return rc;
        ro = usp_arena_zalloc(c->a, sizeof *ro);
        if (!ro)
            return USP_ENOMEM;
    }
    return 0;
}

int handle__add(struct hctx *c, const Usp__Add *req, Usp__Msg **resp)
{
    struct add_state s = {.c = c};
    Usp__AddResp *ar = usp_arena_alloc(c->a, sizeof *ar);
    if (!ar)
        return USP_ENOMEM;
    usp__add_resp__init(ar);
    struct hvec results = {0};
    for (size_t i = 0; i < req->n_create_objs; i++) {
        Usp__Msg *err = NULL;
        int rc = add_path(&s, req->create_objs[i], req->allow_partial, &results, &err);
        if (rc || err) {
            /* The message fails as a whole: nothing it created stays. */
            remove_rows(&s, 0);
            handle__events_drop(c, 0);
            if (rc)
                return rc;
            *resp = err;
            return 0;
        }
    }
    ar->n_created_obj_results = results.n;
    ar->created_obj_results = (ObjRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__ADD_RESP,
                                 USP__RESPONSE__RESP_TYPE_ADD_RESP, ar);
    return *resp ? 0 : USP_ENOMEM;
}
