/* Readable forms of what agents send the controller (see ctl.h). One line
 * per fact, paths written in full so that lines can be grepped:
 *
 *   Get           Device.DeviceInfo.Manufacturer = uspsim
 *   Set           Device.WiFi.SSID.1.SSID = home           (what was set)
 *   Add           created Device.NAT.PortMapping.3.
 *                 Device.NAT.PortMapping.3.Alias = cpe-3   (unique keys)
 *   Delete        deleted Device.NAT.PortMapping.3.
 *   Operate       Device.SelfTestDiagnostics(): running as Device.LocalAgent.Request.1.
 *                 Device.X.Cmd(): output Status = Complete
 *   GetInstances  Device.WiFi.SSID.1.  Alias=cpe-1 Name=wl0
 *   GetSupportedDM  Device.DeviceInfo.  object read-only
 *                     Manufacturer  parameter read-only string
 *   GSP           USP versions 1.0,1.1,1.2,1.3,1.4
 *   failures      PATH: error 7026 (Invalid path): message
 *   Error         error 7004 (Invalid arguments): message
 *                   PATH: error 7013 (Parameter read-only): message
 *
 * Strings from the agent are printed with control characters escaped, so
 * nothing an agent sends can drive the terminal. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "usp/codec.h"
#include "usp/errors.h"

/* Writes `s` with control characters as \n, \t or \xHH. */
static void put(FILE *f, const char *s)
{
    if (!s)
        return;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p == '\\')
            fputs("\\\\", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
}

const char *ctl_err_str(uint32_t code, char *buf, size_t len)
{
    const char *name = usp_err_name(code);
    if (name)
        snprintf(buf, len, "%" PRIu32 " (%s)", code, name);
    else
        snprintf(buf, len, "%" PRIu32, code);
    return buf;
}

const char *ctl_ago(uint64_t ms, char *buf, size_t len)
{
    uint64_t s = ms / 1000;
    if (s == 0)
        snprintf(buf, len, "now");
    else if (s < 60)
        snprintf(buf, len, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
    return buf;
}

/* "PATH: error CODE (Name): message" */
static void put_err(FILE *f, const char *indent, const char *path, const char *more, uint32_t code,
                    const char *msg)
{
    char eb[96];
    fputs(indent, f);
    put(f, path);
    put(f, more);
    fprintf(f, ": error %s", ctl_err_str(code, eb, sizeof eb));
    if (msg && *msg) {
        fputs(": ", f);
        put(f, msg);
    }
    fputc('\n', f);
}

/* Every map in the generated code has entries { base; key; value; }. */
#define PUT_MAP(f, prefix, entries, n, sep, eol)                                                   \
    do {                                                                                           \
        for (size_t i_ = 0; i_ < (n); i_++) {                                                      \
            put(f, prefix);                                                                        \
            put(f, (entries)[i_]->key);                                                            \
            fputs(sep, f);                                                                         \
            put(f, (entries)[i_]->value);                                                          \
            fputs(eol, f);                                                                         \
        }                                                                                          \
    } while (0)

static int print_get(FILE *f, const Usp__GetResp *g)
{
    int fails = 0;
    for (size_t i = 0; i < g->n_req_path_results; i++) {
        const Usp__GetResp__RequestedPathResult *rp = g->req_path_results[i];
        if (rp->err_code) {
            put_err(f, "", rp->requested_path, NULL, rp->err_code, rp->err_msg);
            fails++;
            continue;
        }
        size_t nparams = 0;
        for (size_t j = 0; j < rp->n_resolved_path_results; j++) {
            const Usp__GetResp__ResolvedPathResult *r = rp->resolved_path_results[j];
            for (size_t k = 0; k < r->n_result_params; k++) {
                put(f, r->resolved_path);
                put(f, r->result_params[k]->key);
                fputs(" = ", f);
                put(f, r->result_params[k]->value);
                fputc('\n', f);
            }
            nparams += r->n_result_params;
        }
        if (nparams == 0) {
            fputs("# ", f);
            put(f, rp->requested_path);
            fputs(rp->n_resolved_path_results ? ": no parameters\n" : ": nothing matched\n", f);
        }
    }
    return fails;
}

static int print_set(FILE *f, const Usp__SetResp *s)
{
    int fails = 0;
    for (size_t i = 0; i < s->n_updated_obj_results; i++) {
        const Usp__SetResp__UpdatedObjectResult *u = s->updated_obj_results[i];
        const Usp__SetResp__UpdatedObjectResult__OperationStatus *st = u->oper_status;
        if (!st)
            continue;
        if (st->oper_status_case ==
                USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE &&
            st->oper_failure) {
            const Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure *fl =
                st->oper_failure;
            put_err(f, "", u->requested_path, NULL, fl->err_code, fl->err_msg);
            fails++;
            for (size_t j = 0; j < fl->n_updated_inst_failures; j++) {
                const Usp__SetResp__UpdatedInstanceFailure *uf = fl->updated_inst_failures[j];
                for (size_t k = 0; k < uf->n_param_errs; k++)
                    put_err(f, "  ", uf->affected_path, uf->param_errs[k]->param,
                            uf->param_errs[k]->err_code, uf->param_errs[k]->err_msg);
            }
            continue;
        }
        if (!st->oper_success)
            continue;
        if (st->oper_success->n_updated_inst_results == 0) {
            fputs("# ", f);
            put(f, u->requested_path);
            fputs(": nothing matched\n", f);
        }
        for (size_t j = 0; j < st->oper_success->n_updated_inst_results; j++) {
            const Usp__SetResp__UpdatedInstanceResult *ur =
                st->oper_success->updated_inst_results[j];
            for (size_t k = 0; k < ur->n_updated_params; k++) {
                put(f, ur->affected_path);
                put(f, ur->updated_params[k]->key);
                fputs(" = ", f);
                put(f, ur->updated_params[k]->value);
                fputc('\n', f);
            }
            if (ur->n_updated_params == 0 && ur->n_param_errs == 0) {
                fputs("updated ", f);
                put(f, ur->affected_path);
                fputc('\n', f);
            }
            for (size_t k = 0; k < ur->n_param_errs; k++) {
                put_err(f, "", ur->affected_path, ur->param_errs[k]->param,
                        ur->param_errs[k]->err_code, ur->param_errs[k]->err_msg);
                fails++;
            }
        }
    }
    return fails;
}

static int print_add(FILE *f, const Usp__AddResp *a)
{
    int fails = 0;
    for (size_t i = 0; i < a->n_created_obj_results; i++) {
        const Usp__AddResp__CreatedObjectResult *c = a->created_obj_results[i];
        const Usp__AddResp__CreatedObjectResult__OperationStatus *st = c->oper_status;
        if (!st)
            continue;
        if (st->oper_status_case ==
                USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE &&
            st->oper_failure) {
            put_err(f, "", c->requested_path, NULL, st->oper_failure->err_code,
                    st->oper_failure->err_msg);
            fails++;
            continue;
        }
        const Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess *ok =
            st->oper_success;
        if (!ok)
            continue;
        fputs("created ", f);
        put(f, ok->instantiated_path);
        fputc('\n', f);
        for (size_t k = 0; k < ok->n_unique_keys; k++) {
            put(f, ok->instantiated_path);
            put(f, ok->unique_keys[k]->key);
            fputs(" = ", f);
            put(f, ok->unique_keys[k]->value);
            fputc('\n', f);
        }
        for (size_t k = 0; k < ok->n_param_errs; k++) {
            put_err(f, "", ok->instantiated_path, ok->param_errs[k]->param,
                    ok->param_errs[k]->err_code, ok->param_errs[k]->err_msg);
            fails++;
        }
    }
    return fails;
}

static int print_delete(FILE *f, const Usp__DeleteResp *d)
{
    int fails = 0;
    for (size_t i = 0; i < d->n_deleted_obj_results; i++) {
        const Usp__DeleteResp__DeletedObjectResult *r = d->deleted_obj_results[i];
        const Usp__DeleteResp__DeletedObjectResult__OperationStatus *st = r->oper_status;
        if (!st)
            continue;
        if (st->oper_status_case ==
                USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE &&
            st->oper_failure) {
            put_err(f, "", r->requested_path, NULL, st->oper_failure->err_code,
                    st->oper_failure->err_msg);
            fails++;
            continue;
        }
        const Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationSuccess *ok =
            st->oper_success;
        if (!ok)
            continue;
        for (size_t k = 0; k < ok->n_affected_paths; k++) {
            fputs("deleted ", f);
            put(f, ok->affected_paths[k]);
            fputc('\n', f);
        }
        if (ok->n_affected_paths == 0 && ok->n_unaffected_path_errs == 0) {
            fputs("# ", f);
            put(f, r->requested_path);
            fputs(": nothing matched\n", f);
        }
        for (size_t k = 0; k < ok->n_unaffected_path_errs; k++) {
            const Usp__DeleteResp__UnaffectedPathError *e = ok->unaffected_path_errs[k];
            put_err(f, "", e->unaffected_path, NULL, e->err_code, e->err_msg);
            fails++;
        }
    }
    return fails;
}

static int print_operate(FILE *f, const Usp__OperateResp *o)
{
    int fails = 0;
    for (size_t i = 0; i < o->n_operation_results; i++) {
        const Usp__OperateResp__OperationResult *r = o->operation_results[i];
        switch (r->operation_resp_case) {
        case USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH:
            put(f, r->executed_command);
            fputs(": running as ", f);
            put(f, r->req_obj_path);
            fputc('\n', f);
            break;
        case USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OUTPUT_ARGS:
            if (!r->req_output_args || r->req_output_args->n_output_args == 0) {
                put(f, r->executed_command);
                fputs(": done\n", f);
                break;
            }
            for (size_t k = 0; k < r->req_output_args->n_output_args; k++) {
                put(f, r->executed_command);
                fputs(": output ", f);
                put(f, r->req_output_args->output_args[k]->key);
                fputs(" = ", f);
                put(f, r->req_output_args->output_args[k]->value);
                fputc('\n', f);
            }
            break;
        case USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE:
            put_err(f, "", r->executed_command, NULL, r->cmd_failure ? r->cmd_failure->err_code : 0,
                    r->cmd_failure ? r->cmd_failure->err_msg : NULL);
            fails++;
            break;
        default:
            put(f, r->executed_command);
            fputs(": (no result)\n", f);
            break;
        }
    }
    if (o->n_operation_results == 0)
        fputs("# nothing matched\n", f);
    return fails;
}

static int print_instances(FILE *f, const Usp__GetInstancesResp *g)
{
    int fails = 0;
    for (size_t i = 0; i < g->n_req_path_results; i++) {
        const Usp__GetInstancesResp__RequestedPathResult *rp = g->req_path_results[i];
        if (rp->err_code) {
            put_err(f, "", rp->requested_path, NULL, rp->err_code, rp->err_msg);
            fails++;
            continue;
        }
        if (rp->n_curr_insts == 0) {
            fputs("# ", f);
            put(f, rp->requested_path);
            fputs(": no instances\n", f);
        }
        for (size_t j = 0; j < rp->n_curr_insts; j++) {
            const Usp__GetInstancesResp__CurrInstance *ci = rp->curr_insts[j];
            put(f, ci->instantiated_obj_path);
            if (ci->n_unique_keys)
                fputc(' ', f);
            PUT_MAP(f, " ", ci->unique_keys, ci->n_unique_keys, "=", "");
            fputc('\n', f);
        }
    }
    return fails;
}

static const char *obj_access(int a)
{
    switch (a) {
    case USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_READ_ONLY:
        return "read-only";
    case USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_DELETE:
        return "add-delete";
    case USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_ONLY:
        return "add-only";
    case USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_DELETE_ONLY:
        return "delete-only";
    default:
        return "?";
    }
}

static const char *param_access(int a)
{
    switch (a) {
    case USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_ONLY:
        return "read-only";
    case USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_WRITE:
        return "read-write";
    case USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_WRITE_ONLY:
        return "write-only";
    default:
        return "?";
    }
}

static const char *value_type(int t)
{
    static const char *const names[] = {
        "unknown", "base64", "boolean", "dateTime",    "decimal",      "hexBinary",
        "int",     "long",   "string",  "unsignedInt", "unsignedLong",
    };
    return t >= 0 && (size_t)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static void put_list(FILE *f, const char *label, char **items, size_t n)
{
    if (!n)
        return;
    fputs(label, f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        put(f, items[i]);
    }
}

static int print_gsdm(FILE *f, const Usp__GetSupportedDMResp *g)
{
    int fails = 0;
    for (size_t i = 0; i < g->n_req_obj_results; i++) {
        const Usp__GetSupportedDMResp__RequestedObjectResult *r = g->req_obj_results[i];
        if (r->err_code) {
            put_err(f, "", r->req_obj_path, NULL, r->err_code, r->err_msg);
            fails++;
            continue;
        }
        if (r->data_model_inst_uri && r->data_model_inst_uri[0]) {
            fputs("# ", f);
            put(f, r->req_obj_path);
            fputs(": data model ", f);
            put(f, r->data_model_inst_uri);
            fputc('\n', f);
        }
        for (size_t j = 0; j < r->n_supported_objs; j++) {
            const Usp__GetSupportedDMResp__SupportedObjectResult *o = r->supported_objs[j];
            put(f, o->supported_obj_path);
            fprintf(f, "  object %s%s\n", obj_access(o->access),
                    o->is_multi_instance ? " multi-instance" : "");
            for (size_t k = 0; k < o->n_supported_params; k++) {
                const Usp__GetSupportedDMResp__SupportedParamResult *p = o->supported_params[k];
                fputs("  ", f);
                put(f, p->param_name);
                fprintf(
                    f, "  parameter %s %s%s\n", param_access(p->access), value_type(p->value_type),
                    p->value_change ==
                            USP__GET_SUPPORTED_DMRESP__VALUE_CHANGE_TYPE__VALUE_CHANGE_WILL_IGNORE
                        ? " (value change ignored)"
                        : "");
            }
            for (size_t k = 0; k < o->n_supported_commands; k++) {
                const Usp__GetSupportedDMResp__SupportedCommandResult *c = o->supported_commands[k];
                fputs("  ", f);
                put(f, c->command_name);
                fprintf(f, "  command %s",
                        c->command_type == USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_ASYNC  ? "async"
                        : c->command_type == USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_SYNC ? "sync"
                                                                                           : "?");
                put_list(f, "  in: ", c->input_arg_names, c->n_input_arg_names);
                put_list(f, "  out: ", c->output_arg_names, c->n_output_arg_names);
                fputc('\n', f);
            }
            for (size_t k = 0; k < o->n_supported_events; k++) {
                const Usp__GetSupportedDMResp__SupportedEventResult *e = o->supported_events[k];
                fputs("  ", f);
                put(f, e->event_name);
                fputs("  event", f);
                put_list(f, "  args: ", e->arg_names, e->n_arg_names);
                fputc('\n', f);
            }
            for (size_t k = 0; k < o->n_unique_key_sets; k++) {
                put_list(f, "  unique keys: ", o->unique_key_sets[k]->key_names,
                         o->unique_key_sets[k]->n_key_names);
                fputc('\n', f);
            }
            put_list(f, "  divergent: ", o->divergent_paths, o->n_divergent_paths);
            if (o->n_divergent_paths)
                fputc('\n', f);
        }
    }
    return fails;
}

static int print_error(FILE *f, const Usp__Error *e)
{
    char eb[96];
    fprintf(f, "error %s", ctl_err_str(e->err_code, eb, sizeof eb));
    if (e->err_msg && *e->err_msg) {
        fputs(": ", f);
        put(f, e->err_msg);
    }
    fputc('\n', f);
    for (size_t i = 0; i < e->n_param_errs; i++)
        put_err(f, "  ", e->param_errs[i]->param_path, NULL, e->param_errs[i]->err_code,
                e->param_errs[i]->err_msg);
    return 1;
}

int ctl_print_msg(FILE *f, const Usp__Msg *msg)
{
    if (!msg || !msg->body)
        return 0;
    if (msg->body->msg_body_case == USP__BODY__MSG_BODY_ERROR && msg->body->error)
        return print_error(f, msg->body->error);
    if (msg->body->msg_body_case != USP__BODY__MSG_BODY_RESPONSE || !msg->body->response)
        return 0;
    const Usp__Response *r = msg->body->response;
    switch (r->resp_type_case) {
    case USP__RESPONSE__RESP_TYPE_GET_RESP:
        return print_get(f, r->get_resp);
    case USP__RESPONSE__RESP_TYPE_SET_RESP:
        return print_set(f, r->set_resp);
    case USP__RESPONSE__RESP_TYPE_ADD_RESP:
        return print_add(f, r->add_resp);
    case USP__RESPONSE__RESP_TYPE_DELETE_RESP:
        return print_delete(f, r->delete_resp);
    case USP__RESPONSE__RESP_TYPE_OPERATE_RESP:
        return print_operate(f, r->operate_resp);
    case USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP:
        return print_instances(f, r->get_instances_resp);
    case USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP:
        return print_gsdm(f, r->get_supported_dm_resp);
    case USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP:
        fputs("USP versions ", f);
        put(f, r->get_supported_protocol_resp->agent_supported_protocol_versions);
        fputc('\n', f);
        return 0;
    default: {
        const char *name = usp_msg_type_name(usp_msg_kind(msg));
        fprintf(f, "# %s\n", name ? name : "response");
        return 0;
    }
    }
}

void ctl_print_notify(FILE *f, const char *eid, const Usp__Notify *n)
{
    fputc('[', f);
    put(f, eid);
    fputs("] ", f);
    switch (n->notification_case) {
    case USP__NOTIFY__NOTIFICATION_EVENT:
        fputs("event ", f);
        put(f, n->event->obj_path);
        put(f, n->event->event_name);
        PUT_MAP(f, " ", n->event->params, n->event->n_params, "=", "");
        break;
    case USP__NOTIFY__NOTIFICATION_VALUE_CHANGE:
        fputs("value change ", f);
        put(f, n->value_change->param_path);
        fputs(" = ", f);
        put(f, n->value_change->param_value);
        break;
    case USP__NOTIFY__NOTIFICATION_OBJ_CREATION:
        fputs("object created ", f);
        put(f, n->obj_creation->obj_path);
        PUT_MAP(f, " ", n->obj_creation->unique_keys, n->obj_creation->n_unique_keys, "=", "");
        break;
    case USP__NOTIFY__NOTIFICATION_OBJ_DELETION:
        fputs("object deleted ", f);
        put(f, n->obj_deletion->obj_path);
        break;
    case USP__NOTIFY__NOTIFICATION_OPER_COMPLETE: {
        const Usp__Notify__OperationComplete *o = n->oper_complete;
        fputs("operation complete ", f);
        put(f, o->obj_path);
        put(f, o->command_name);
        if (o->command_key && *o->command_key) {
            fputs(" key ", f);
            put(f, o->command_key);
        }
        if (o->operation_resp_case == USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP_CMD_FAILURE &&
            o->cmd_failure) {
            char eb[96];
            fprintf(f, ": error %s", ctl_err_str(o->cmd_failure->err_code, eb, sizeof eb));
            if (o->cmd_failure->err_msg && *o->cmd_failure->err_msg) {
                fputs(": ", f);
                put(f, o->cmd_failure->err_msg);
            }
        } else if (o->req_output_args) {
            PUT_MAP(f, " ", o->req_output_args->output_args, o->req_output_args->n_output_args, "=",
                    "");
        }
        break;
    }
    case USP__NOTIFY__NOTIFICATION_ON_BOARD_REQ:
        fputs("onboard request oui=", f);
        put(f, n->on_board_req->oui);
        fputs(" product_class=", f);
        put(f, n->on_board_req->product_class);
        fputs(" serial=", f);
        put(f, n->on_board_req->serial_number);
        fputs(" versions=", f);
        put(f, n->on_board_req->agent_supported_protocol_versions);
        break;
    default:
        fputs("notification", f);
        break;
    }
    if (n->subscription_id && *n->subscription_id) {
        fputs(" (subscription ", f);
        put(f, n->subscription_id);
        fputc(')', f);
    }
    fputc('\n', f);
}
