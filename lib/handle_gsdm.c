/* GetSupportedDM (TR-369 "The GetSupportedDM Message"): the supported data
 * model under each requested path, from the shared schema.
 *
 * Decisions:
 * - A path is a supported path ("Device.WiFi.AccessPoint.{i}."; the final
 *   "{i}." may be left out, nowhere else) or an instantiated one
 *   ("Device.WiFi.AccessPoint.1.AssociatedDevice.", which must exist:
 *   7016). A number after "{i}" is 7026, as are '*', search expressions
 *   and reference following, which the supported grammar does not have.
 * - A parameter, command or event path reports its object with just that
 *   item, whatever the return_* flags say (the item was asked for by name).
 * - first_level_only: the object in full, then its direct children with
 *   their unique key sets (when asked) but no parameters, commands or
 *   events, as the specification's example shows.
 * - Argument names are relative paths in supported notation, flattened
 *   down to parameters ("Result.{i}.SSID"), as in the example.
 * - value_type is the parameter's base type; a list is PARAM_STRING (its
 *   value is one comma-separated string). value_change is WILL_IGNORE for
 *   activeNotify="canDeny", ALLOWED otherwise.
 * - Access is the schema's, narrowed by the controller's permissions: a
 *   writable parameter without Write permission is PARAM_READ_ONLY; a
 *   writable table is ADD_DELETE, ADD_ONLY, DELETE_ONLY or READ_ONLY after
 *   the Add and Delete permissions. writeOnceReadOnly is PARAM_READ_WRITE.
 *   Objects and parameters without Read permission are absent (R-GSP.0).
 * - One schema serves every instance, so there is no divergence and
 *   divergent_paths stays empty.
 * - data_model_inst_uri comes from the model name: "Device:2.19" gives
 *   "urn:broadband-forum-org:tr-181-2-19-1", with the latest corrigendum
 *   of that amendment we know (the model name does not carry it). */
#include <stdio.h>
#include <string.h>

#include "handle_int.h"

typedef Usp__GetSupportedDMResp__RequestedObjectResult ReqRes;
typedef Usp__GetSupportedDMResp__SupportedObjectResult SupObj;
typedef Usp__GetSupportedDMResp__SupportedParamResult SupParam;
typedef Usp__GetSupportedDMResp__SupportedCommandResult SupCmd;
typedef Usp__GetSupportedDMResp__SupportedEventResult SupEvent;
typedef Usp__GetSupportedDMResp__SupportedUniqueKeySet SupKeys;

enum {
    WANT_PARAMS = 1 << 0,
    WANT_COMMANDS = 1 << 1,
    WANT_EVENTS = 1 << 2,
    WANT_KEYS = 1 << 3,
};

/* What a GSDM path named. */
struct gsdm_item {
    const struct usp_dm_object *obj;
    const struct usp_dm_param *param;
    const struct usp_dm_command *command;
    const struct usp_dm_event *event;
};

static Usp__GetSupportedDMResp__ParamValueType value_type(const struct usp_dm_type *t)
{
    if (!t || t->item)
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_STRING;
    switch (t->base) {
    case USP_DM_STRING:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_STRING;
    case USP_DM_BOOLEAN:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_BOOLEAN;
    case USP_DM_INT:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_INT;
    case USP_DM_UNSIGNED_INT:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_UNSIGNED_INT;
    case USP_DM_LONG:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_LONG;
    case USP_DM_UNSIGNED_LONG:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_UNSIGNED_LONG;
    case USP_DM_DATETIME:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_DATE_TIME;
    case USP_DM_BASE64:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_BASE_64;
    case USP_DM_HEXBINARY:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_HEX_BINARY;
    case USP_DM_DECIMAL:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_DECIMAL;
    default:
        return USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_UNKNOWN;
    }
}

static int add_param(struct hctx *c, struct hvec *out, const struct usp_dm_param *p)
{
    char *ppath = handle__join(c, p->parent->path, p->name);
    if (!ppath)
        return USP_ENOMEM;
    if (!handle__allowed(c, ppath, USP_PERM_READ))
        return 0;
    SupParam *sp = usp_arena_alloc(c->a, sizeof *sp);
    if (!sp)
        return USP_ENOMEM;
    usp__get_supported_dmresp__supported_param_result__init(sp);
    sp->param_name = (char *)p->name;
    sp->access = USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_ONLY;
    if (p->access != USP_DM_READ_ONLY && handle__allowed(c, ppath, USP_PERM_WRITE))
        sp->access = USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_WRITE;
    sp->value_type = value_type(p->type);
    sp->value_change = p->notify == USP_DM_NOTIFY_CAN_DENY
                           ? USP__GET_SUPPORTED_DMRESP__VALUE_CHANGE_TYPE__VALUE_CHANGE_WILL_IGNORE
                           : USP__GET_SUPPORTED_DMRESP__VALUE_CHANGE_TYPE__VALUE_CHANGE_ALLOWED;
    return handle__push(c->a, out, sp);
}

/* Flattens an argument tree into relative parameter names. */
static int arg_names(struct hctx *c, const struct usp_dm_object *o, struct hvec *out)
{
    for (uint32_t i = 0; i < o->nparams; i++) {
        char *name = handle__join(c, o->path, o->params[i].name);
        if (!name || handle__push(c->a, out, name))
            return USP_ENOMEM;
    }
    for (uint32_t i = 0; i < o->nchildren; i++)
        if (arg_names(c, o->children[i], out))
            return USP_ENOMEM;
    return 0;
}

static int add_command(struct hctx *c, struct hvec *out, const struct usp_dm_command *cmd)
{
    SupCmd *sc = usp_arena_alloc(c->a, sizeof *sc);
    if (!sc)
        return USP_ENOMEM;
    usp__get_supported_dmresp__supported_command_result__init(sc);
    sc->command_name = (char *)cmd->name;
    struct hvec in = {0}, outv = {0};
    if (arg_names(c, cmd->input, &in) || arg_names(c, cmd->output, &outv))
        return USP_ENOMEM;
    sc->n_input_arg_names = in.n;
    sc->input_arg_names = (char **)handle__items(&in);
    sc->n_output_arg_names = outv.n;
    sc->output_arg_names = (char **)handle__items(&outv);
    sc->command_type = cmd->async ? USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_ASYNC
                                  : USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_SYNC;
    return handle__push(c->a, out, sc);
}

static int add_event(struct hctx *c, struct hvec *out, const struct usp_dm_event *ev)
{
    SupEvent *se = usp_arena_alloc(c->a, sizeof *se);
    if (!se)
        return USP_ENOMEM;
    usp__get_supported_dmresp__supported_event_result__init(se);
    se->event_name = (char *)ev->name;
    struct hvec args = {0};
    if (arg_names(c, ev->args, &args))
        return USP_ENOMEM;
    se->n_arg_names = args.n;
    se->arg_names = (char **)handle__items(&args);
    return handle__push(c->a, out, se);
}

static int add_keys(struct hctx *c, struct hvec *out, const struct usp_dm_object *o)
{
    for (uint32_t k = 0; k < o->nkeys; k++) {
        const struct usp_dm_unique_key *uk = &o->keys[k];
        SupKeys *sk = usp_arena_alloc(c->a, sizeof *sk);
        char **names = usp_arena_alloc(c->a, (uk->nparams ? uk->nparams : 1) * sizeof *names);
        if (!sk || !names)
            return USP_ENOMEM;
        usp__get_supported_dmresp__supported_unique_key_set__init(sk);
        for (uint32_t j = 0; j < uk->nparams; j++)
            names[j] = (char *)o->params[uk->params[j]].name;
        sk->n_key_names = uk->nparams;
        sk->key_names = uk->nparams ? names : NULL;
        if (handle__push(c->a, out, sk))
            return USP_ENOMEM;
    }
    return 0;
}

static Usp__GetSupportedDMResp__ObjAccessType obj_access(struct hctx *c,
                                                         const struct usp_dm_object *o)
{
    if (!(o->flags & USP_DM_OBJ_MULTI) || o->access != USP_DM_READ_WRITE)
        return USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_READ_ONLY;
    bool add = handle__allowed(c, o->path, USP_PERM_ADD);
    bool del = handle__allowed(c, o->path, USP_PERM_DELETE);
    if (add && del)
        return USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_DELETE;
    if (add)
        return USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_ONLY;
    if (del)
        return USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_DELETE_ONLY;
    return USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_READ_ONLY;
}

/* One SupportedObjectResult: `want` says which lists to fill; `only`
 * (may be NULL) restricts them to one named item. */
static int report_obj(struct hctx *c, struct hvec *out, const struct usp_dm_object *o,
                      unsigned want, const struct gsdm_item *only)
{
    SupObj *so = usp_arena_alloc(c->a, sizeof *so);
    if (!so)
        return USP_ENOMEM;
    usp__get_supported_dmresp__supported_object_result__init(so);
    so->supported_obj_path = (char *)o->path;
    so->access = obj_access(c, o);
    so->is_multi_instance = (o->flags & USP_DM_OBJ_MULTI) != 0;
    struct hvec params = {0}, cmds = {0}, events = {0}, keys = {0};
    if (only) {
        if (only->param && add_param(c, &params, only->param))
            return USP_ENOMEM;
        if (only->command && add_command(c, &cmds, only->command))
            return USP_ENOMEM;
        if (only->event && add_event(c, &events, only->event))
            return USP_ENOMEM;
    } else {
        for (uint32_t i = 0; (want & WANT_PARAMS) && i < o->nparams; i++)
            if (add_param(c, &params, &o->params[i]))
                return USP_ENOMEM;
        for (uint32_t i = 0; (want & WANT_COMMANDS) && i < o->ncommands; i++)
            if (add_command(c, &cmds, &o->commands[i]))
                return USP_ENOMEM;
        for (uint32_t i = 0; (want & WANT_EVENTS) && i < o->nevents; i++)
            if (add_event(c, &events, &o->events[i]))
                return USP_ENOMEM;
    }
    if ((want & WANT_KEYS) && add_keys(c, &keys, o))
        return USP_ENOMEM;
    so->n_supported_params = params.n;
    so->supported_params = (SupParam **)handle__items(&params);
    so->n_supported_commands = cmds.n;
    so->supported_commands = (SupCmd **)handle__items(&cmds);
    so->n_supported_events = events.n;
    so->supported_events = (SupEvent **)handle__items(&events);
    so->n_unique_key_sets = keys.n;
    so->unique_key_sets = (SupKeys **)handle__items(&keys);
    return handle__push(c->a, out, so);
}

/* The object and everything below it (or its direct children only). */
static int report_tree(struct hctx *c, struct hvec *out, const struct usp_dm_object *o,
                       unsigned want, bool first_level_only, bool top)
{
    if (!handle__allowed(c, o->path, USP_PERM_READ))
        return 0;
    unsigned w = top || !first_level_only ? want : want & WANT_KEYS;
    if (report_obj(c, out, o, w, NULL))
        return USP_ENOMEM;
    if (first_level_only && !top)
        return 0;
    for (uint32_t i = 0; i < o->nchildren; i++)
        if (report_tree(c, out, o->children[i], want, first_level_only, false))
            return USP_ENOMEM;
    return 0;
}

/* Walks the path's segments through the schema. 0 with `it` filled, or a
 * USP code with `msg`. */
static int lookup(struct hctx *c, const struct usp_path *p, struct gsdm_item *it, char *msg,
                  size_t msglen)
{
    memset(it, 0, sizeof *it);
    const struct usp_dm_object *cur = usp_dm_schema_root(c->schema);
    if (!cur || p->seg[0].kind != USP_PATH_SEG_NAME || strcmp(p->seg[0].name, cur->name) != 0)
        goto invalid;
    struct usp_dm_inst inst = {.obj = cur};
    bool supported_seen = false, numbered = false;
    /* Whether the previous segment named a table still owed its selector. */
    bool owed = false;
    const struct usp_dm_object *last_table = NULL;
    for (uint32_t i = 1; i < p->nseg; i++) {
        const struct usp_path_seg *s = &p->seg[i];
        bool last = i + 1 == p->nseg;
        switch (s->kind) {
        case USP_PATH_SEG_NAME: {
            if (owed)
                goto invalid; /* only the final "{i}." may be left out */
            const struct usp_dm_object *ch = usp_dm_object_child(cur, s->name, s->len);
            if (!ch && last && (p->flags & USP_PATH_PARAM)) {
                it->param = usp_dm_object_param(cur, s->name, s->len);
                if (!it->param)
                    goto invalid;
                break;
            }
            if (!ch)
                goto invalid;
            cur = ch;
            owed = (ch->flags & USP_DM_OBJ_MULTI) != 0;
            if (owed)
                last_table = ch;
            break;
        }
        case USP_PATH_SEG_INSTANCE:
            if (!owed || supported_seen) {
                snprintf(msg, msglen,
                         "Invalid path: an instance number may not follow \"{i}\" or a "
                         "single-instance object");
                return USP_ERR_INVALID_PATH;
            }
            if (inst.n >= USP_DM_MAX_LEVELS)
                goto invalid;
            inst.inst[inst.n++] = s->inst;
            inst.obj = last_table;
            numbered = true;
            owed = false;
            break;
        case USP_PATH_SEG_SUPPORTED:
            if (!owed)
                goto invalid;
            supported_seen = true;
            owed = false;
            break;
        case USP_PATH_SEG_COMMAND:
            if (owed || !last || !(it->command = usp_dm_object_command(cur, s->name, s->len)))
                goto invalid;
            break;
        case USP_PATH_SEG_EVENT:
            if (owed || !last || !(it->event = usp_dm_object_event(cur, s->name, s->len)))
                goto invalid;
            break;
        default:
            goto invalid;
        }
    }
    if ((it->param && owed) || ((p->flags & USP_PATH_PARAM) && !it->param))
        goto invalid;
    it->obj = cur;
    if (numbered && !usp_dm_exists(c->agent, &inst)) {
        char buf[512];
        if (usp_dm_inst_path(&inst, buf, sizeof buf) != 0)
            buf[0] = 0;
        snprintf(msg, msglen, "Object does not exist: %s", buf);
        return USP_ERR_OBJECT_DOES_NOT_EXIST;
    }
    return 0;
invalid:
    snprintf(msg, msglen, "Invalid path: not in the supported data model");
    return USP_ERR_INVALID_PATH;
}

static const char *gsdm_uri(struct hctx *c)
{
    const char *model = usp_dm_schema_model(c->schema);
    unsigned major, minor;
    char tail;
    if (!model || sscanf(model, "Device:%u.%u%c", &major, &minor, &tail) != 2 || major != 2)
        return "";
    /* TR-181 Issue 2 Amendment 19 Corrigendum 1 is the release the default
     * model copies its facts from; older amendments are cited as issued. */
    unsigned corr = minor == 19 ? 1 : 0;
    return handle__printf(c, "urn:broadband-forum-org:tr-181-%u-%u-%u", major, minor, corr);
}

static int gsdm_path(struct hctx *c, const Usp__GetSupportedDM *req, const char *req_path,
                     ReqRes *out)
{
    char msg[512] = "";
    uint32_t err = 0;
    struct hvec objs = {0};
    struct usp_path *p;
    struct gsdm_item it;
    int rc = handle__parse(c, req_path, &p, msg, sizeof msg);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        err = (uint32_t)rc;
        goto done;
    }
    if (!usp_path_is_supported(p)) {
        err = USP_ERR_INVALID_PATH;
        snprintf(msg, sizeof msg,
                 "Invalid path: GetSupportedDM takes supported or instantiated paths without "
                 "'*', search expressions or reference following");
        goto done;
    }
    rc = lookup(c, p, &it, msg, sizeof msg);
    if (rc) {
        err = (uint32_t)rc;
        goto done;
    }
    if (!handle__allowed(c, it.obj->path, USP_PERM_READ)) {
        err = USP_ERR_INVALID_PATH;
        snprintf(msg, sizeof msg, "Invalid path: not in the supported data model");
        goto done;
    }
    unsigned want =
        (req->return_params ? WANT_PARAMS : 0) | (req->return_commands ? WANT_COMMANDS : 0) |
        (req->return_events ? WANT_EVENTS : 0) | (req->return_unique_key_sets ? WANT_KEYS : 0);
    if (it.param || it.command || it.event) {
        if (it.param) {
            char *ppath = handle__join(c, it.obj->path, it.param->name);
            if (!ppath)
                return USP_ENOMEM;
            if (!handle__allowed(c, ppath, USP_PERM_READ)) {
                err = USP_ERR_INVALID_PATH;
                snprintf(msg, sizeof msg, "Invalid path: not in the supported data model");
                goto done;
            }
        }
        rc = report_obj(c, &objs, it.obj, want & WANT_KEYS, &it);
    } else {
        rc = report_tree(c, &objs, it.obj, want, req->first_level_only, true);
    }
    if (rc)
        return USP_ENOMEM;
done:
    out->req_obj_path = (char *)req_path;
    if (err) {
        out->err_code = err;
        out->err_msg = usp_arena_strdup(c->a, msg);
        return out->err_msg ? 0 : USP_ENOMEM;
    }
    out->data_model_inst_uri = (char *)gsdm_uri(c);
    if (!out->data_model_inst_uri)
        return USP_ENOMEM;
    out->n_supported_objs = objs.n;
    out->supported_objs = (SupObj **)handle__items(&objs);
    return 0;
}

int handle__get_supported_dm(struct hctx *c, const Usp__GetSupportedDM *req, Usp__Msg **resp)
{
    Usp__GetSupportedDMResp *gr = usp_arena_alloc(c->a, sizeof *gr);
    if (!gr)
        return USP_ENOMEM;
    usp__get_supported_dmresp__init(gr);
    struct hvec results = {0};
    for (size_t i = 0; i < req->n_obj_paths; i++) {
        ReqRes *r = usp_arena_alloc(c->a, sizeof *r);
        if (!r)
            return USP_ENOMEM;
        usp__get_supported_dmresp__requested_object_result__init(r);
        if (gsdm_path(c, req, req->obj_paths[i], r) || handle__push(c->a, &results, r))
            return USP_ENOMEM;
    }
    gr->n_req_obj_results = results.n;
    gr->req_obj_results = (ReqRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM_RESP,
                                 USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP, gr);
    return *resp ? 0 : USP_ENOMEM;
}
