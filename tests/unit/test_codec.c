/* Codec: round trips of every Message and Record type, every validation
 * rule (usp_code, discard, field), and the R-MTP.5 receive decisions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "testutil.h"
#include "usp/codec.h"
#include "usp/json.h"

#define OWN  "proto::agent-1"
#define CTRL "proto::ctrl-1"

static struct usp_arena *A;

static void start(void)
{
    A = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(A);
}

static void end(void)
{
    usp_arena_free(A);
    A = NULL;
}

/* ---- builders ---------------------------------------------------------- */

static void *mk(const ProtobufCMessageDescriptor *d)
{
    void *p = usp_arena_alloc(A, d->sizeof_message);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    protobuf_c_message_init(d, p);
    return p;
}
#define NEW(T, d) ((T *)mk(&(d)))

static void **ptrs_(size_t n, void *const *src)
{
    void **v = usp_arena_alloc(A, n * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    memcpy(v, src, n * sizeof *v);
    return v;
}
#define NARGS(...) (sizeof((void *[]){__VA_ARGS__}) / sizeof(void *))
/* Sets a repeated field (count and array) from a list of pointers. */
#define SETV(o, field, ...)                                                                        \
    ((o)->n_##field = NARGS(__VA_ARGS__),                                                          \
     (o)->field = (void *)ptrs_(NARGS(__VA_ARGS__), (void *[]){__VA_ARGS__}))

/* Map entries (key, value, key, value, ...) of entry type d. */
static void *map_(const ProtobufCMessageDescriptor *d, size_t n, void *const *kv)
{
    ProtobufCMessage **v = usp_arena_alloc(A, n / 2 * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    for (size_t i = 0; i < n / 2; i++) {
        char *e = mk(d);
        *(char **)(e + d->fields[0].offset) = kv[2 * i];
        *(char **)(e + d->fields[1].offset) = kv[2 * i + 1];
        v[i] = (ProtobufCMessage *)e;
    }
    return v;
}
#define SETMAP(o, field, d, ...)                                                                   \
    ((o)->n_##field = NARGS(__VA_ARGS__) / 2,                                                      \
     (o)->field = map_(&(d), NARGS(__VA_ARGS__), (void *[]){__VA_ARGS__}))

/* Sets oneof member `name` of `m` (message members only). */
static void set_oneof(void *m, const char *name, void *val)
{
    ProtobufCMessage *pm = m;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(pm->descriptor, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_FATAL((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0);
    *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
    *(void **)((char *)m + f->offset) = val;
}

static Usp__Msg *wrap(const char *id, int type, Usp__Body *b)
{
    Usp__Msg *m = NEW(Usp__Msg, usp__msg__descriptor);
    m->header = NEW(Usp__Header, usp__header__descriptor);
    m->header->msg_id = (char *)id;
    m->header->msg_type = type;
    m->body = b;
    return m;
}

static Usp__Msg *req(int type, const char *member, void *x)
{
    Usp__Request *r = NEW(Usp__Request, usp__request__descriptor);
    set_oneof(r, member, x);
    Usp__Body *b = NEW(Usp__Body, usp__body__descriptor);
    set_oneof(b, "request", r);
    return wrap("req-1", type, b);
}

static Usp__Msg *resp(int type, const char *member, void *x)
{
    Usp__Response *r = NEW(Usp__Response, usp__response__descriptor);
    set_oneof(r, member, x);
    Usp__Body *b = NEW(Usp__Body, usp__body__descriptor);
    set_oneof(b, "response", r);
    return wrap("resp-1", type, b);
}

static Usp__Msg *build_get(void)
{
    Usp__Get *g = NEW(Usp__Get, usp__get__descriptor);
    SETV(g, param_paths, "Device.DeviceInfo.", "Device.WiFi.SSID.*.Enable");
    g->max_depth = 2;
    return req(USP__HEADER__MSG_TYPE__GET, "get", g);
}

static Usp__Msg *build_get_resp(void)
{
    Usp__GetResp *g = NEW(Usp__GetResp, usp__get_resp__descriptor);
    Usp__GetResp__RequestedPathResult *ok =
        NEW(Usp__GetResp__RequestedPathResult, usp__get_resp__requested_path_result__descriptor);
    Usp__GetResp__RequestedPathResult *bad =
        NEW(Usp__GetResp__RequestedPathResult, usp__get_resp__requested_path_result__descriptor);
    Usp__GetResp__ResolvedPathResult *rp =
        NEW(Usp__GetResp__ResolvedPathResult, usp__get_resp__resolved_path_result__descriptor);
    rp->resolved_path = "Device.DeviceInfo.";
    SETMAP(rp, result_params, usp__get_resp__resolved_path_result__result_params_entry__descriptor,
           "SerialNumber", "SN-0001", "Manufacturer", "ACME");
    ok->requested_path = "Device.DeviceInfo.";
    SETV(ok, resolved_path_results, rp);
    bad->requested_path = "Device.Nope.";
    bad->err_code = 7026;
    bad->err_msg = "Invalid path";
    SETV(g, req_path_results, ok, bad);
    return resp(USP__HEADER__MSG_TYPE__GET_RESP, "get_resp", g);
}

static Usp__Msg *build_set(void)
{
    Usp__Set *s = NEW(Usp__Set, usp__set__descriptor);
    Usp__Set__UpdateObject *o = NEW(Usp__Set__UpdateObject, usp__set__update_object__descriptor);
    Usp__Set__UpdateParamSetting *p1 =
        NEW(Usp__Set__UpdateParamSetting, usp__set__update_param_setting__descriptor);
    Usp__Set__UpdateParamSetting *p2 =
        NEW(Usp__Set__UpdateParamSetting, usp__set__update_param_setting__descriptor);
    p1->param = "Enable";
    p1->value = "true";
    p1->required = 1;
    p2->param = "SSID";
    p2->value = "guest-net";
    o->obj_path = "Device.WiFi.SSID.1.";
    SETV(o, param_settings, p1, p2);
    s->allow_partial = 1;
    SETV(s, update_objs, o);
    return req(USP__HEADER__MSG_TYPE__SET, "set", s);
}

static Usp__Msg *build_set_resp(void)
{
    Usp__SetResp *s = NEW(Usp__SetResp, usp__set_resp__descriptor);
    Usp__SetResp__ParameterError *pe =
        NEW(Usp__SetResp__ParameterError, usp__set_resp__parameter_error__descriptor);
    pe->param = "SSID";
    pe->err_code = 7012;
    pe->err_msg = "too long";
    Usp__SetResp__UpdatedInstanceResult *ir = NEW(
        Usp__SetResp__UpdatedInstanceResult, usp__set_resp__updated_instance_result__descriptor);
    ir->affected_path = "Device.WiFi.SSID.1.";
    SETV(ir, param_errs, pe);
    SETMAP(ir, updated_params,
           usp__set_resp__updated_instance_result__updated_params_entry__descriptor, "Enable",
           "true");
    Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationSuccess *ok =
        NEW(Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationSuccess,
            usp__set_resp__updated_object_result__operation_status__operation_success__descriptor);
    SETV(ok, updated_inst_results, ir);
    Usp__SetResp__UpdatedInstanceFailure *inf = NEW(
        Usp__SetResp__UpdatedInstanceFailure, usp__set_resp__updated_instance_failure__descriptor);
    inf->affected_path = "Device.WiFi.SSID.2.";
    SETV(inf, param_errs, pe);
    Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure *ko =
        NEW(Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure,
            usp__set_resp__updated_object_result__operation_status__operation_failure__descriptor);
    ko->err_code = 7020;
    ko->err_msg = "Object could not be updated";
    SETV(ko, updated_inst_failures, inf);
    Usp__SetResp__UpdatedObjectResult *r1 =
        NEW(Usp__SetResp__UpdatedObjectResult, usp__set_resp__updated_object_result__descriptor);
    Usp__SetResp__UpdatedObjectResult *r2 =
        NEW(Usp__SetResp__UpdatedObjectResult, usp__set_resp__updated_object_result__descriptor);
    r1->requested_path = "Device.WiFi.SSID.1.";
    r1->oper_status = NEW(Usp__SetResp__UpdatedObjectResult__OperationStatus,
                          usp__set_resp__updated_object_result__operation_status__descriptor);
    set_oneof(r1->oper_status, "oper_success", ok);
    r2->requested_path = "Device.WiFi.SSID.2.";
    r2->oper_status = NEW(Usp__SetResp__UpdatedObjectResult__OperationStatus,
                          usp__set_resp__updated_object_result__operation_status__descriptor);
    set_oneof(r2->oper_status, "oper_failure", ko);
    SETV(s, updated_obj_results, r1, r2);
    return resp(USP__HEADER__MSG_TYPE__SET_RESP, "set_resp", s);
}

static Usp__Msg *build_add(void)
{
    Usp__Add *a = NEW(Usp__Add, usp__add__descriptor);
    Usp__Add__CreateObject *o = NEW(Usp__Add__CreateObject, usp__add__create_object__descriptor);
    Usp__Add__CreateParamSetting *p =
        NEW(Usp__Add__CreateParamSetting, usp__add__create_param_setting__descriptor);
    p->param = "Alias";
    p->value = "cpe-guest";
    p->required = 1;
    o->obj_path = "Device.WiFi.SSID.";
    SETV(o, param_settings, p);
    a->allow_partial = 1;
    SETV(a, create_objs, o);
    return req(USP__HEADER__MSG_TYPE__ADD, "add", a);
}

static Usp__Msg *build_add_resp(void)
{
    Usp__AddResp *a = NEW(Usp__AddResp, usp__add_resp__descriptor);
    Usp__AddResp__ParameterError *pe =
        NEW(Usp__AddResp__ParameterError, usp__add_resp__parameter_error__descriptor);
    pe->param = "SSID";
    pe->err_code = 7012;
    pe->err_msg = "bad value";
    Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess *ok =
        NEW(Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess,
            usp__add_resp__created_object_result__operation_status__operation_success__descriptor);
    ok->instantiated_path = "Device.WiFi.SSID.3.";
    SETV(ok, param_errs, pe);
    SETMAP(
        ok, unique_keys,
        usp__add_resp__created_object_result__operation_status__operation_success__unique_keys_entry__descriptor,
        "Alias", "cpe-3", "Name", "ssid3");
    Usp__AddResp__CreatedObjectResult__OperationStatus__OperationFailure *ko =
        NEW(Usp__AddResp__CreatedObjectResult__OperationStatus__OperationFailure,
            usp__add_resp__created_object_result__operation_status__operation_failure__descriptor);
    ko->err_code = 7019;
    ko->err_msg = "not creatable";
    Usp__AddResp__CreatedObjectResult *r1 =
        NEW(Usp__AddResp__CreatedObjectResult, usp__add_resp__created_object_result__descriptor);
    Usp__AddResp__CreatedObjectResult *r2 =
        NEW(Usp__AddResp__CreatedObjectResult, usp__add_resp__created_object_result__descriptor);
    r1->requested_path = "Device.WiFi.SSID.";
    r1->oper_status = NEW(Usp__AddResp__CreatedObjectResult__OperationStatus,
                          usp__add_resp__created_object_result__operation_status__descriptor);
    set_oneof(r1->oper_status, "oper_success", ok);
    r2->requested_path = "Device.DeviceInfo.";
    r2->oper_status = NEW(Usp__AddResp__CreatedObjectResult__OperationStatus,
                          usp__add_resp__created_object_result__operation_status__descriptor);
    set_oneof(r2->oper_status, "oper_failure", ko);
    SETV(a, created_obj_results, r1, r2);
    return resp(USP__HEADER__MSG_TYPE__ADD_RESP, "add_resp", a);
}

static Usp__Msg *build_delete(void)
{
    Usp__Delete *d = NEW(Usp__Delete, usp__delete__descriptor);
    d->allow_partial = 1;
    SETV(d, obj_paths, "Device.WiFi.SSID.3.", "Device.NAT.PortMapping.[Enable==false].");
    return req(USP__HEADER__MSG_TYPE__DELETE, "delete", d);
}

static Usp__Msg *build_delete_resp(void)
{
    Usp__DeleteResp *d = NEW(Usp__DeleteResp, usp__delete_resp__descriptor);
    Usp__DeleteResp__UnaffectedPathError *ue = NEW(
        Usp__DeleteResp__UnaffectedPathError, usp__delete_resp__unaffected_path_error__descriptor);
    ue->unaffected_path = "Device.NAT.PortMapping.4.";
    ue->err_code = 7024;
    ue->err_msg = "Delete failure";
    Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationSuccess *ok = NEW(
        Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationSuccess,
        usp__delete_resp__deleted_object_result__operation_status__operation_success__descriptor);
    SETV(ok, affected_paths, "Device.NAT.PortMapping.2.", "Device.NAT.PortMapping.3.");
    SETV(ok, unaffected_path_errs, ue);
    Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationFailure *ko = NEW(
        Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationFailure,
        usp__delete_resp__deleted_object_result__operation_status__operation_failure__descriptor);
    ko->err_code = 7016;
    ko->err_msg = "Object does not exist";
    Usp__DeleteResp__DeletedObjectResult *r1 = NEW(
        Usp__DeleteResp__DeletedObjectResult, usp__delete_resp__deleted_object_result__descriptor);
    Usp__DeleteResp__DeletedObjectResult *r2 = NEW(
        Usp__DeleteResp__DeletedObjectResult, usp__delete_resp__deleted_object_result__descriptor);
    r1->requested_path = "Device.NAT.PortMapping.[Enable==false].";
    r1->oper_status = NEW(Usp__DeleteResp__DeletedObjectResult__OperationStatus,
                          usp__delete_resp__deleted_object_result__operation_status__descriptor);
    set_oneof(r1->oper_status, "oper_success", ok);
    r2->requested_path = "Device.WiFi.SSID.9.";
    r2->oper_status = NEW(Usp__DeleteResp__DeletedObjectResult__OperationStatus,
                          usp__delete_resp__deleted_object_result__operation_status__descriptor);
    set_oneof(r2->oper_status, "oper_failure", ko);
    SETV(d, deleted_obj_results, r1, r2);
    return resp(USP__HEADER__MSG_TYPE__DELETE_RESP, "delete_resp", d);
}

static Usp__Msg *build_operate(void)
{
    Usp__Operate *o = NEW(Usp__Operate, usp__operate__descriptor);
    o->command = "Device.IP.Diagnostics.IPPing()";
    o->command_key = "ping-42";
    o->send_resp = 1;
    SETMAP(o, input_args, usp__operate__input_args_entry__descriptor, "Host", "192.0.2.1",
           "NumberOfRepetitions", "3");
    return req(USP__HEADER__MSG_TYPE__OPERATE, "operate", o);
}

static Usp__Msg *build_operate_resp(void)
{
    Usp__OperateResp *o = NEW(Usp__OperateResp, usp__operate_resp__descriptor);
    Usp__OperateResp__OperationResult *r1 =
        NEW(Usp__OperateResp__OperationResult, usp__operate_resp__operation_result__descriptor);
    Usp__OperateResp__OperationResult *r2 =
        NEW(Usp__OperateResp__OperationResult, usp__operate_resp__operation_result__descriptor);
    Usp__OperateResp__OperationResult *r3 =
        NEW(Usp__OperateResp__OperationResult, usp__operate_resp__operation_result__descriptor);
    r1->executed_command = "Device.IP.Diagnostics.IPPing()";
    r1->operation_resp_case = USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH;
    r1->req_obj_path = "Device.LocalAgent.Request.7.";
    Usp__OperateResp__OperationResult__OutputArgs *out =
        NEW(Usp__OperateResp__OperationResult__OutputArgs,
            usp__operate_resp__operation_result__output_args__descriptor);
    SETMAP(out, output_args,
           usp__operate_resp__operation_result__output_args__output_args_entry__descriptor,
           "Status", "Complete", "AverageResponseTime", "12");
    r2->executed_command = "Device.WiFi.Reset()";
    set_oneof(r2, "req_output_args", out);
    Usp__OperateResp__OperationResult__CommandFailure *cf =
        NEW(Usp__OperateResp__OperationResult__CommandFailure,
            usp__operate_resp__operation_result__command_failure__descriptor);
    cf->err_code = 7022;
    cf->err_msg = "Command failure";
    r3->executed_command = "Device.Reboot()";
    set_oneof(r3, "cmd_failure", cf);
    SETV(o, operation_results, r1, r2, r3);
    return resp(USP__HEADER__MSG_TYPE__OPERATE_RESP, "operate_resp", o);
}

static Usp__Msg *notify_with(const char *member, void *x)
{
    Usp__Notify *n = NEW(Usp__Notify, usp__notify__descriptor);
    n->subscription_id = "sub-1";
    n->send_resp = 1;
    set_oneof(n, member, x);
    return req(USP__HEADER__MSG_TYPE__NOTIFY, "notify", n);
}

static Usp__Msg *build_notify_event(void)
{
    Usp__Notify__Event *e = NEW(Usp__Notify__Event, usp__notify__event__descriptor);
    e->obj_path = "Device.";
    e->event_name = "Boot!";
    SETMAP(e, params, usp__notify__event__params_entry__descriptor, "Cause", "LocalReboot",
           "CommandKey", "", "FirmwareUpdated", "false");
    return notify_with("event", e);
}

static Usp__Msg *build_notify_value_change(void)
{
    Usp__Notify__ValueChange *v =
        NEW(Usp__Notify__ValueChange, usp__notify__value_change__descriptor);
    v->param_path = "Device.WiFi.SSID.1.Enable";
    v->param_value = "false";
    return notify_with("value_change", v);
}

static Usp__Msg *build_notify_obj_creation(void)
{
    Usp__Notify__ObjectCreation *c =
        NEW(Usp__Notify__ObjectCreation, usp__notify__object_creation__descriptor);
    c->obj_path = "Device.WiFi.SSID.4.";
    SETMAP(c, unique_keys, usp__notify__object_creation__unique_keys_entry__descriptor, "Alias",
           "cpe-4");
    return notify_with("obj_creation", c);
}

static Usp__Msg *build_notify_obj_deletion(void)
{
    Usp__Notify__ObjectDeletion *d =
        NEW(Usp__Notify__ObjectDeletion, usp__notify__object_deletion__descriptor);
    d->obj_path = "Device.WiFi.SSID.4.";
    return notify_with("obj_deletion", d);
}

static Usp__Msg *build_notify_oper_complete(void)
{
    Usp__Notify__OperationComplete *c =
        NEW(Usp__Notify__OperationComplete, usp__notify__operation_complete__descriptor);
    c->obj_path = "Device.IP.Diagnostics.";
    c->command_name = "IPPing()";
    c->command_key = "ping-42";
    Usp__Notify__OperationComplete__OutputArgs *out =
        NEW(Usp__Notify__OperationComplete__OutputArgs,
            usp__notify__operation_complete__output_args__descriptor);
    SETMAP(out, output_args,
           usp__notify__operation_complete__output_args__output_args_entry__descriptor,
           "SuccessCount", "3");
    set_oneof(c, "req_output_args", out);
    return notify_with("oper_complete", c);
}

static Usp__Msg *build_notify_oper_failed(void)
{
    Usp__Notify__OperationComplete *c =
        NEW(Usp__Notify__OperationComplete, usp__notify__operation_complete__descriptor);
    c->obj_path = "Device.";
    c->command_name = "Reboot()";
    c->command_key = "rb-1";
    Usp__Notify__OperationComplete__CommandFailure *f =
        NEW(Usp__Notify__OperationComplete__CommandFailure,
            usp__notify__operation_complete__command_failure__descriptor);
    f->err_code = 7023;
    f->err_msg = "Command canceled";
    set_oneof(c, "cmd_failure", f);
    return notify_with("oper_complete", c);
}

static Usp__Msg *build_notify_on_board(void)
{
    Usp__Notify__OnBoardRequest *o =
        NEW(Usp__Notify__OnBoardRequest, usp__notify__on_board_request__descriptor);
    o->oui = "00256D";
    o->product_class = "SimGateway";
    o->serial_number = "SIM000001";
    o->agent_supported_protocol_versions = "1.3,1.4";
    Usp__Msg *m = notify_with("on_board_req", o);
    m->body->request->notify->subscription_id = "";
    return m;
}

static Usp__Msg *build_notify_resp(void)
{
    Usp__NotifyResp *n = NEW(Usp__NotifyResp, usp__notify_resp__descriptor);
    n->subscription_id = "sub-1";
    return resp(USP__HEADER__MSG_TYPE__NOTIFY_RESP, "notify_resp", n);
}

static Usp__Msg *build_gsdm(void)
{
    Usp__GetSupportedDM *g = NEW(Usp__GetSupportedDM, usp__get_supported_dm__descriptor);
    SETV(g, obj_paths, "Device.WiFi.", "Device.LocalAgent.Controller.{i}.");
    g->first_level_only = 1;
    g->return_commands = 1;
    g->return_events = 1;
    g->return_params = 1;
    g->return_unique_key_sets = 1;
    return req(USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM, "get_supported_dm", g);
}

static Usp__Msg *build_gsdm_resp(void)
{
    Usp__GetSupportedDMResp__SupportedParamResult *p =
        NEW(Usp__GetSupportedDMResp__SupportedParamResult,
            usp__get_supported_dmresp__supported_param_result__descriptor);
    p->param_name = "Enable";
    p->access = USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_WRITE;
    p->value_type = USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_BOOLEAN;
    p->value_change = USP__GET_SUPPORTED_DMRESP__VALUE_CHANGE_TYPE__VALUE_CHANGE_ALLOWED;
    Usp__GetSupportedDMResp__SupportedCommandResult *c =
        NEW(Usp__GetSupportedDMResp__SupportedCommandResult,
            usp__get_supported_dmresp__supported_command_result__descriptor);
    c->command_name = "Reset()";
    SETV(c, input_arg_names, "Delay");
    SETV(c, output_arg_names, "Status", "Result.{i}.");
    c->command_type = USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_ASYNC;
    Usp__GetSupportedDMResp__SupportedEventResult *e =
        NEW(Usp__GetSupportedDMResp__SupportedEventResult,
            usp__get_supported_dmresp__supported_event_result__descriptor);
    e->event_name = "Triggered!";
    SETV(e, arg_names, "Value");
    Usp__GetSupportedDMResp__SupportedUniqueKeySet *k =
        NEW(Usp__GetSupportedDMResp__SupportedUniqueKeySet,
            usp__get_supported_dmresp__supported_unique_key_set__descriptor);
    SETV(k, key_names, "Alias");
    Usp__GetSupportedDMResp__SupportedObjectResult *o =
        NEW(Usp__GetSupportedDMResp__SupportedObjectResult,
            usp__get_supported_dmresp__supported_object_result__descriptor);
    o->supported_obj_path = "Device.WiFi.SSID.{i}.";
    o->access = USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_DELETE;
    o->is_multi_instance = 1;
    SETV(o, supported_commands, c);
    SETV(o, supported_events, e);
    SETV(o, supported_params, p);
    SETV(o, divergent_paths, "Device.WiFi.SSID.1.X_VENDOR.");
    SETV(o, unique_key_sets, k);
    Usp__GetSupportedDMResp__RequestedObjectResult *r =
        NEW(Usp__GetSupportedDMResp__RequestedObjectResult,
            usp__get_supported_dmresp__requested_object_result__descriptor);
    r->req_obj_path = "Device.WiFi.";
    r->err_code = 0;
    r->err_msg = "";
    r->data_model_inst_uri = "urn:broadband-forum-org:tr-181-2-19-1";
    SETV(r, supported_objs, o);
    Usp__GetSupportedDMResp__RequestedObjectResult *bad =
        NEW(Usp__GetSupportedDMResp__RequestedObjectResult,
            usp__get_supported_dmresp__requested_object_result__descriptor);
    bad->req_obj_path = "Device.Nope.";
    bad->err_code = 7026;
    bad->err_msg = "Invalid path";
    Usp__GetSupportedDMResp *g =
        NEW(Usp__GetSupportedDMResp, usp__get_supported_dmresp__descriptor);
    SETV(g, req_obj_results, r, bad);
    return resp(USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM_RESP, "get_supported_dm_resp", g);
}

static Usp__Msg *build_get_instances(void)
{
    Usp__GetInstances *g = NEW(Usp__GetInstances, usp__get_instances__descriptor);
    SETV(g, obj_paths, "Device.WiFi.SSID.");
    g->first_level_only = 1;
    return req(USP__HEADER__MSG_TYPE__GET_INSTANCES, "get_instances", g);
}

static Usp__Msg *build_get_instances_resp(void)
{
    Usp__GetInstancesResp__CurrInstance *c = NEW(
        Usp__GetInstancesResp__CurrInstance, usp__get_instances_resp__curr_instance__descriptor);
    c->instantiated_obj_path = "Device.WiFi.SSID.1.";
    SETMAP(c, unique_keys, usp__get_instances_resp__curr_instance__unique_keys_entry__descriptor,
           "Alias", "cpe-1", "Name", "wlan0");
    Usp__GetInstancesResp__RequestedPathResult *r =
        NEW(Usp__GetInstancesResp__RequestedPathResult,
            usp__get_instances_resp__requested_path_result__descriptor);
    r->requested_path = "Device.WiFi.SSID.";
    SETV(r, curr_insts, c);
    Usp__GetInstancesResp__RequestedPathResult *bad =
        NEW(Usp__GetInstancesResp__RequestedPathResult,
            usp__get_instances_resp__requested_path_result__descriptor);
    bad->requested_path = "Device.DeviceInfo.";
    bad->err_code = 7018;
    bad->err_msg = "Object is not a table";
    Usp__GetInstancesResp *g = NEW(Usp__GetInstancesResp, usp__get_instances_resp__descriptor);
    SETV(g, req_path_results, r, bad);
    return resp(USP__HEADER__MSG_TYPE__GET_INSTANCES_RESP, "get_instances_resp", g);
}

static Usp__Msg *build_gsp(void)
{
    Usp__GetSupportedProtocol *g =
        NEW(Usp__GetSupportedProtocol, usp__get_supported_protocol__descriptor);
    g->controller_supported_protocol_versions = "1.3,1.4";
    return req(USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO, "get_supported_protocol", g);
}

static Usp__Msg *build_gsp_resp(void)
{
    Usp__GetSupportedProtocolResp *g =
        NEW(Usp__GetSupportedProtocolResp, usp__get_supported_protocol_resp__descriptor);
    g->agent_supported_protocol_versions = "1.0,1.1,1.2,1.3,1.4";
    return resp(USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO_RESP, "get_supported_protocol_resp", g);
}

static Usp__Msg *build_register(void)
{
    Usp__Register__RegistrationPath *p1 =
        NEW(Usp__Register__RegistrationPath, usp__register__registration_path__descriptor);
    Usp__Register__RegistrationPath *p2 =
        NEW(Usp__Register__RegistrationPath, usp__register__registration_path__descriptor);
    p1->path = "Device.X_SIM_Service.";
    p2->path = "Device.X_SIM_Other.Run()";
    Usp__Register *r = NEW(Usp__Register, usp__register__descriptor);
    r->allow_partial = 1;
    SETV(r, reg_paths, p1, p2);
    return req(USP__HEADER__MSG_TYPE__REGISTER, "register", r);
}

static Usp__Msg *build_register_resp(void)
{
    Usp__RegisterResp__RegisteredPathResult__OperationStatus__OperationSuccess *ok = NEW(
        Usp__RegisterResp__RegisteredPathResult__OperationStatus__OperationSuccess,
        usp__register_resp__registered_path_result__operation_status__operation_success__descriptor);
    ok->registered_path = "Device.X_SIM_Service.";
    Usp__RegisterResp__RegisteredPathResult__OperationStatus__OperationFailure *ko = NEW(
        Usp__RegisterResp__RegisteredPathResult__OperationStatus__OperationFailure,
        usp__register_resp__registered_path_result__operation_status__operation_failure__descriptor);
    ko->err_code = 7029;
    ko->err_msg = "Already in use";
    Usp__RegisterResp__RegisteredPathResult *r1 =
        NEW(Usp__RegisterResp__RegisteredPathResult,
            usp__register_resp__registered_path_result__descriptor);
    Usp__RegisterResp__RegisteredPathResult *r2 =
        NEW(Usp__RegisterResp__RegisteredPathResult,
            usp__register_resp__registered_path_result__descriptor);
    r1->requested_path = "Device.X_SIM_Service.";
    r1->oper_status = NEW(Usp__RegisterResp__RegisteredPathResult__OperationStatus,
                          usp__register_resp__registered_path_result__operation_status__descriptor);
    set_oneof(r1->oper_status, "oper_success", ok);
    r2->requested_path = "Device.X_SIM_Other.Run()";
    r2->oper_status = NEW(Usp__RegisterResp__RegisteredPathResult__OperationStatus,
                          usp__register_resp__registered_path_result__operation_status__descriptor);
    set_oneof(r2->oper_status, "oper_failure", ko);
    Usp__RegisterResp *r = NEW(Usp__RegisterResp, usp__register_resp__descriptor);
    SETV(r, registered_path_results, r1, r2);
    return resp(USP__HEADER__MSG_TYPE__REGISTER_RESP, "register_resp", r);
}

static Usp__Msg *build_deregister(void)
{
    Usp__Deregister *d = NEW(Usp__Deregister, usp__deregister__descriptor);
    SETV(d, paths, "Device.X_SIM_Service.", "");
    return req(USP__HEADER__MSG_TYPE__DEREGISTER, "deregister", d);
}

static Usp__Msg *build_deregister_resp(void)
{
    Usp__DeregisterResp__DeregisteredPathResult__OperationStatus__OperationSuccess *ok = NEW(
        Usp__DeregisterResp__DeregisteredPathResult__OperationStatus__OperationSuccess,
        usp__deregister_resp__deregistered_path_result__operation_status__operation_success__descriptor);
    SETV(ok, deregistered_path, "Device.X_SIM_Service.", "Device.X_SIM_Other.");
    Usp__DeregisterResp__DeregisteredPathResult__OperationStatus__OperationFailure *ko = NEW(
        Usp__DeregisterResp__DeregisteredPathResult__OperationStatus__OperationFailure,
        usp__deregister_resp__deregistered_path_result__operation_status__operation_failure__descriptor);
    ko->err_code = 7030;
    ko->err_msg = "Deregister failure";
    Usp__DeregisterResp__DeregisteredPathResult *r1 =
        NEW(Usp__DeregisterResp__DeregisteredPathResult,
            usp__deregister_resp__deregistered_path_result__descriptor);
    Usp__DeregisterResp__DeregisteredPathResult *r2 =
        NEW(Usp__DeregisterResp__DeregisteredPathResult,
            usp__deregister_resp__deregistered_path_result__descriptor);
    r1->requested_path = "";
    r1->oper_status =
        NEW(Usp__DeregisterResp__DeregisteredPathResult__OperationStatus,
            usp__deregister_resp__deregistered_path_result__operation_status__descriptor);
    set_oneof(r1->oper_status, "oper_success", ok);
    r2->requested_path = "Device.X_SIM_Gone.";
    r2->oper_status =
        NEW(Usp__DeregisterResp__DeregisteredPathResult__OperationStatus,
            usp__deregister_resp__deregistered_path_result__operation_status__descriptor);
    set_oneof(r2->oper_status, "oper_failure", ko);
    Usp__DeregisterResp *d = NEW(Usp__DeregisterResp, usp__deregister_resp__descriptor);
    SETV(d, deregistered_path_results, r1, r2);
    return resp(USP__HEADER__MSG_TYPE__DEREGISTER_RESP, "deregister_resp", d);
}

static Usp__Msg *build_error(void)
{
    Usp__Msg *m = usp_msg_new_error(A, "req-9", USP_ERR_INVALID_ARGUMENTS, "bad Set");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(usp_msg_error_add_param(A, m, "Device.WiFi.SSID.1.SSID", 7012, NULL), 0);
    CU_ASSERT_EQUAL(usp_msg_error_add_param(A, m, "Device.WiFi.SSID.1.Enable", 7021, "req"), 0);
    return m;
}

/* ---- helpers ----------------------------------------------------------- */

static char *json(const ProtobufCMessage *m)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(usp_json_write(f, m, 0), 0);
    fclose(f);
    return s;
}

static uint8_t *enc(const Usp__Msg *m, size_t *len)
{
    uint8_t *buf = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_msg_encode(A, m, &buf, len), 0);
    return buf;
}

static uint8_t *enc_rec(const UspRecord__Record *r, size_t *len)
{
    uint8_t *buf = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_record_encode(A, r, &buf, len), 0);
    return buf;
}

/* Encodes m, decodes it, and checks the result is the same message: same
 * JSON (every field, by name) and the same bytes when packed again. */
static void roundtrip(Usp__Msg *m, int kind, const char *needle)
{
    size_t len, len2;
    uint8_t *buf = enc(m, &len);
    Usp__Msg *d = NULL;
    struct usp_decode_err err;
    int rc = usp_msg_decode(A, buf, len, &d, &err);
    if (rc)
        fprintf(stderr, "\n  decode: %s [%s]\n", err.msg, err.field);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(usp_msg_kind(m), kind);
    CU_ASSERT_EQUAL(usp_msg_kind(d), kind);
    CU_ASSERT_EQUAL(d->header->msg_type, (unsigned)kind);
    CU_ASSERT_STRING_EQUAL(d->header->msg_id, m->header->msg_id);
    char *j1 = json(&m->base), *j2 = json(&d->base);
    CU_ASSERT_STRING_EQUAL(j1, j2);
    CU_ASSERT_PTR_NOT_NULL(strstr(j2, needle));
    uint8_t *buf2 = enc(d, &len2);
    CU_ASSERT_EQUAL(len, len2);
    CU_ASSERT(len == len2 && memcmp(buf, buf2, len) == 0);
    free(j1);
    free(j2);
}

#define RT(name, kind, needle)                                                                     \
    static void test_rt_##name(void)                                                               \
    {                                                                                              \
        start();                                                                                   \
        roundtrip(build_##name(), USP__HEADER__MSG_TYPE__##kind, needle);                          \
        end();                                                                                     \
    }

RT(get, GET, "\"max_depth\":2")
RT(get_resp, GET_RESP, "\"result_params\":{\"SerialNumber\":\"SN-0001\",\"Manufacturer\":\"ACME\"}")
RT(set, SET, "\"value\":\"guest-net\"")
RT(set_resp, SET_RESP, "\"updated_inst_failures\":[{\"affected_path\":\"Device.WiFi.SSID.2.\"")
RT(add, ADD, "\"required\":true")
RT(add_resp, ADD_RESP, "\"unique_keys\":{\"Alias\":\"cpe-3\",\"Name\":\"ssid3\"}")
RT(delete, DELETE, "\"allow_partial\":true")
RT(delete_resp, DELETE_RESP, "\"unaffected_path\":\"Device.NAT.PortMapping.4.\"")
RT(operate, OPERATE, "\"input_args\":{\"Host\":\"192.0.2.1\"")
RT(operate_resp, OPERATE_RESP, "\"req_obj_path\":\"Device.LocalAgent.Request.7.\"")
RT(notify_event, NOTIFY, "\"params\":{\"Cause\":\"LocalReboot\",\"CommandKey\":\"\"")
RT(notify_value_change, NOTIFY, "\"param_value\":\"false\"")
RT(notify_obj_creation, NOTIFY, "\"obj_creation\":{")
RT(notify_obj_deletion, NOTIFY, "\"obj_deletion\":{\"obj_path\":\"Device.WiFi.SSID.4.\"}")
RT(notify_oper_complete, NOTIFY, "\"req_output_args\":{\"output_args\":{\"SuccessCount\":\"3\"}}")
RT(notify_oper_failed, NOTIFY, "\"cmd_failure\":{\"err_code\":7023")
RT(notify_on_board, NOTIFY, "\"product_class\":\"SimGateway\"")
RT(notify_resp, NOTIFY_RESP, "\"notify_resp\":{\"subscription_id\":\"sub-1\"}")
RT(gsdm, GET_SUPPORTED_DM, "\"return_unique_key_sets\":true")
RT(gsdm_resp, GET_SUPPORTED_DM_RESP, "\"value_change\":\"VALUE_CHANGE_ALLOWED\"")
RT(get_instances, GET_INSTANCES, "\"first_level_only\":true")
RT(get_instances_resp, GET_INSTANCES_RESP, "\"unique_keys\":{\"Alias\":\"cpe-1\"")
RT(gsp, GET_SUPPORTED_PROTO, "\"controller_supported_protocol_versions\":\"1.3,1.4\"")
RT(gsp_resp, GET_SUPPORTED_PROTO_RESP, "\"agent_supported_protocol_versions\"")
RT(register, REGISTER, "\"reg_paths\":[{\"path\":\"Device.X_SIM_Service.\"}")
RT(register_resp, REGISTER_RESP, "\"registered_path\":\"Device.X_SIM_Service.\"")
RT(deregister, DEREGISTER, "\"paths\":[\"Device.X_SIM_Service.\",\"\"]")
RT(deregister_resp, DEREGISTER_RESP, "\"deregistered_path\":[\"Device.X_SIM_Service.\"")
RT(error, ERROR, "\"param_errs\":[{\"param_path\":\"Device.WiFi.SSID.1.SSID\",\"err_code\":7012")

/* A few fields read back by type, beside the JSON comparison. */
static void test_rt_fields(void)
{
    start();
    size_t len;
    uint8_t *buf = enc(build_gsdm_resp(), &len);
    Usp__Msg *d;
    struct usp_decode_err err;
    CU_ASSERT_EQUAL_FATAL(usp_msg_decode(A, buf, len, &d, &err), 0);
    Usp__GetSupportedDMResp *g = d->body->response->get_supported_dm_resp;
    CU_ASSERT_EQUAL_FATAL(g->n_req_obj_results, 2);
    CU_ASSERT_EQUAL(g->req_obj_results[1]->err_code, 7026);
    Usp__GetSupportedDMResp__SupportedObjectResult *o = g->req_obj_results[0]->supported_objs[0];
    CU_ASSERT_STRING_EQUAL(o->supported_obj_path, "Device.WiFi.SSID.{i}.");
    CU_ASSERT_EQUAL(o->access, USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_DELETE);
    CU_ASSERT_TRUE(o->is_multi_instance);
    CU_ASSERT_EQUAL(o->supported_commands[0]->command_type,
                    USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_ASYNC);
    CU_ASSERT_EQUAL(o->supported_commands[0]->n_output_arg_names, 2);
    CU_ASSERT_STRING_EQUAL(o->unique_key_sets[0]->key_names[0], "Alias");

    buf = enc(build_operate(), &len);
    CU_ASSERT_EQUAL_FATAL(usp_msg_decode(A, buf, len, &d, &err), 0);
    Usp__Operate *op = d->body->request->operate;
    CU_ASSERT_STRING_EQUAL(op->command, "Device.IP.Diagnostics.IPPing()");
    CU_ASSERT_TRUE(op->send_resp);
    CU_ASSERT_EQUAL_FATAL(op->n_input_args, 2);
    CU_ASSERT_STRING_EQUAL(op->input_args[1]->key, "NumberOfRepetitions");
    CU_ASSERT_STRING_EQUAL(op->input_args[1]->value, "3");

    buf = enc(build_error(), &len);
    CU_ASSERT_EQUAL_FATAL(usp_msg_decode(A, buf, len, &d, &err), 0);
    Usp__Error *e = d->body->error;
    CU_ASSERT_EQUAL(e->err_code, 7004);
    CU_ASSERT_STRING_EQUAL(e->err_msg, "bad Set");
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 2);
    CU_ASSERT_STRING_EQUAL(e->param_errs[0]->err_msg, "Invalid value");
    CU_ASSERT_EQUAL(e->param_errs[1]->err_code, 7021);
    end();
}

/* ---- records ----------------------------------------------------------- */

static UspRecord__Record *rec_base(void)
{
    UspRecord__Record *r = NEW(UspRecord__Record, usp_record__record__descriptor);
    r->version = "1.4";
    r->to_id = OWN;
    r->from_id = CTRL;
    return r;
}

static UspRecord__Record *rec_nsc(const Usp__Msg *m)
{
    UspRecord__Record *r = rec_base();
    UspRecord__NoSessionContextRecord *n =
        NEW(UspRecord__NoSessionContextRecord, usp_record__no_session_context_record__descriptor);
    n->payload.data = enc(m, &n->payload.len);
    set_oneof(r, "no_session_context", n);
    return r;
}

static void rec_roundtrip(UspRecord__Record *r, int type, const char *needle)
{
    size_t len, len2;
    uint8_t *buf = enc_rec(r, &len);
    UspRecord__Record *d;
    struct usp_decode_err err;
    int rc = usp_record_decode(A, buf, len, &d, &err);
    if (rc)
        fprintf(stderr, "\n  decode: %s [%s]\n", err.msg, err.field);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(d->record_type_case, (unsigned)type);
    CU_ASSERT_STRING_EQUAL(d->version, "1.4");
    CU_ASSERT_STRING_EQUAL(d->to_id, OWN);
    CU_ASSERT_STRING_EQUAL(d->from_id, CTRL);
    char *j1 = json(&r->base), *j2 = json(&d->base);
    CU_ASSERT_STRING_EQUAL(j1, j2);
    CU_ASSERT_PTR_NOT_NULL(strstr(j2, needle));
    uint8_t *buf2 = enc_rec(d, &len2);
    CU_ASSERT(len == len2 && memcmp(buf, buf2, len) == 0);
    free(j1);
    free(j2);
}

static void test_rec_no_session(void)
{
    start();
    UspRecord__Record *r = rec_nsc(build_get());
    r->mac_signature.data = (uint8_t *)"\x01\x02";
    r->mac_signature.len = 2;
    r->sender_cert.data = (uint8_t *)"PEM";
    r->sender_cert.len = 3;
    rec_roundtrip(r, USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT,
                  "\"mac_signature\":\"0102\",\"sender_cert\":\"50454d\"");
    end();
}

static void test_rec_session(void)
{
    start();
    UspRecord__Record *r = rec_base();
    r->payload_security = USP_RECORD__RECORD__PAYLOAD_SECURITY__TLS12;
    UspRecord__SessionContextRecord *s =
        NEW(UspRecord__SessionContextRecord, usp_record__session_context_record__descriptor);
    s->session_id = 18446744073709551615ull;
    s->sequence_id = 7;
    s->expected_id = 5;
    s->retransmit_id = 3;
    s->payload_sar_state = USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__BEGIN;
    s->payloadrec_sar_state = USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__INPROCESS;
    ProtobufCBinaryData *p = usp_arena_alloc(A, 2 * sizeof *p);
    p[0] = (ProtobufCBinaryData){3, (uint8_t *)"abc"};
    p[1] = (ProtobufCBinaryData){1, (uint8_t *)"\xff"};
    s->n_payload = 2;
    s->payload = p;
    set_oneof(r, "session_context", s);
    rec_roundtrip(r, USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT,
                  "\"session_id\":18446744073709551615,\"sequence_id\":7,\"expected_id\":5,"
                  "\"retransmit_id\":3,\"payload_sar_state\":\"BEGIN\",\"payloadrec_sar_state\":"
                  "\"INPROCESS\",\"payload\":[\"616263\",\"ff\"]");
    end();
}

static void test_rec_websocket(void)
{
    start();
    UspRecord__Record *r = rec_base();
    set_oneof(r, "websocket_connect", mk(&usp_record__web_socket_connect_record__descriptor));
    rec_roundtrip(r, USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT, "\"websocket_connect\":{}");
    end();
}

static void test_rec_mqtt(void)
{
    start();
    UspRecord__Record *r = rec_base();
    UspRecord__MQTTConnectRecord *m =
        NEW(UspRecord__MQTTConnectRecord, usp_record__mqttconnect_record__descriptor);
    m->version = USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V5;
    m->subscribed_topic = "usp/agent/proto::agent-1";
    set_oneof(r, "mqtt_connect", m);
    rec_roundtrip(
        r, USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT,
        "\"mqtt_connect\":{\"version\":\"V5\",\"subscribed_topic\":\"usp/agent/proto::agent-1\"}");
    end();
}

static void test_rec_stomp(void)
{
    start();
    UspRecord__Record *r = rec_base();
    UspRecord__STOMPConnectRecord *s =
        NEW(UspRecord__STOMPConnectRecord, usp_record__stompconnect_record__descriptor);
    s->subscribed_destination = "/queue/agent-1";
    set_oneof(r, "stomp_connect", s);
    rec_roundtrip(r, USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT,
                  "\"stomp_connect\":{\"subscribed_destination\":\"/queue/agent-1\"}");
    end();
}

static void test_rec_disconnect(void)
{
    start();
    UspRecord__Record *r = rec_base();
    UspRecord__DisconnectRecord *d =
        NEW(UspRecord__DisconnectRecord, usp_record__disconnect_record__descriptor);
    d->reason = "Session Context terminated";
    d->reason_code = 7105;
    set_oneof(r, "disconnect", d);
    rec_roundtrip(
        r, USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT,
        "\"disconnect\":{\"reason\":\"Session Context terminated\",\"reason_code\":7105}");
    end();
}

static void test_rec_uds(void)
{
    start();
    UspRecord__Record *r = rec_base();
    set_oneof(r, "uds_connect", mk(&usp_record__udsconnect_record__descriptor));
    rec_roundtrip(r, USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT, "\"uds_connect\":{}");
    end();
}

static void test_wrap_msg(void)
{
    start();
    uint8_t *buf;
    size_t len;
    struct usp_record_hdr h = {.to_id = OWN, .from_id = CTRL};
    CU_ASSERT_EQUAL_FATAL(usp_record_wrap_msg(A, &h, build_set(), &buf, &len), 0);
    UspRecord__Record *r;
    Usp__Msg *m;
    struct usp_decode_err err;
    CU_ASSERT_EQUAL_FATAL(usp_record_decode(A, buf, len, &r, &err), 0);
    CU_ASSERT_STRING_EQUAL(r->version, USP_VERSION_DEFAULT);
    CU_ASSERT_STRING_EQUAL(r->to_id, OWN);
    CU_ASSERT_STRING_EQUAL(r->from_id, CTRL);
    CU_ASSERT_EQUAL_FATAL(r->record_type_case, USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT);
    const ProtobufCBinaryData *p = &r->no_session_context->payload;
    CU_ASSERT_EQUAL_FATAL(usp_msg_decode(A, p->data, p->len, &m, &err), 0);
    CU_ASSERT_EQUAL(usp_msg_kind(m), USP__HEADER__MSG_TYPE__SET);
    h.version = "1.2";
    CU_ASSERT_EQUAL_FATAL(usp_record_wrap_msg(A, &h, build_set(), &buf, &len), 0);
    CU_ASSERT_EQUAL_FATAL(usp_record_decode(A, buf, len, &r, &err), 0);
    CU_ASSERT_STRING_EQUAL(r->version, "1.2");
    h.to_id = NULL;
    CU_ASSERT_EQUAL(usp_record_wrap_msg(A, &h, build_set(), &buf, &len), USP_EINVAL);
    end();
}

static void test_msg_types(void)
{
    CU_ASSERT_STRING_EQUAL(usp_msg_type_name(USP__HEADER__MSG_TYPE__GET), "GET");
    CU_ASSERT_STRING_EQUAL(usp_msg_type_name(USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO_RESP),
                           "GET_SUPPORTED_PROTO_RESP");
    CU_ASSERT_STRING_EQUAL(usp_msg_type_name(0), "ERROR");
    CU_ASSERT_PTR_NULL(usp_msg_type_name(23));
    CU_ASSERT_PTR_NULL(usp_msg_type_name(-1));
    int requests = 0;
    for (int t = 0; t <= 22; t++) {
        const char *n = usp_msg_type_name(t);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n);
        bool is_req = t != 0 && !strstr(n, "_RESP");
        CU_ASSERT_EQUAL(usp_msg_type_is_request(t), is_req);
        requests += is_req;
    }
    CU_ASSERT_EQUAL(requests, 11);
    CU_ASSERT_FALSE(usp_msg_type_is_request(-1));
    CU_ASSERT_FALSE(usp_msg_type_is_request(99));
    CU_ASSERT_EQUAL(usp_msg_kind(NULL), -1);
}

static void test_versions(void)
{
    static const char *const good[] = {"1.0", "1.1", "1.2", "1.3", "1.4"};
    static const char *const bad[] = {"1.5",   "2.0",  "0.9",  "1.",   "1",         ".4",
                                      "1.4.1", "v1.4", " 1.4", "1.4 ", "1.x",       "",
                                      "1,4",   "+1.4", "-1.4", "1.-4", "1.9999999", "11111111.0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CU_ASSERT_TRUE(usp_version_supported(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_FALSE(usp_version_supported(bad[i]));
    unsigned ma = 0, mi = 0;
    CU_ASSERT_EQUAL(usp_version_parse("12.34", &ma, &mi), 0);
    CU_ASSERT_EQUAL(ma, 12);
    CU_ASSERT_EQUAL(mi, 34);
    CU_ASSERT_EQUAL(usp_version_parse("1.4.1", &ma, &mi), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_version_parse(NULL, &ma, &mi), USP_EINVAL);
    CU_ASSERT_FALSE(usp_version_supported(NULL));
}

/* ---- validation -------------------------------------------------------- */

/* Packs r, decodes it and checks the verdict. */
static void expect_rec(UspRecord__Record *r, uint32_t code, bool discard, const char *field)
{
    size_t len;
    uint8_t *buf = enc_rec(r, &len);
    UspRecord__Record *d;
    struct usp_decode_err err;
    CU_ASSERT_EQUAL(usp_record_decode(A, buf, len, &d, &err), USP_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(d);
    CU_ASSERT_EQUAL(err.usp_code, code);
    CU_ASSERT_EQUAL(err.discard, discard);
    CU_ASSERT_STRING_EQUAL(err.field, field);
    CU_ASSERT(err.msg[0] != '\0');
    if (strcmp(err.field, field) || err.usp_code != code || err.discard != discard)
        fprintf(stderr, "\n  got %u %d [%s] %s\n", err.usp_code, err.discard, err.field, err.msg);
}

static void expect_msg(Usp__Msg *m, uint32_t code, bool discard, const char *field)
{
    size_t len;
    uint8_t *buf = enc(m, &len);
    Usp__Msg *d;
    struct usp_decode_err err;
    CU_ASSERT_EQUAL(usp_msg_decode(A, buf, len, &d, &err), USP_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(d);
    CU_ASSERT_EQUAL(err.usp_code, code);
    CU_ASSERT_EQUAL(err.discard, discard);
    CU_ASSERT_STRING_EQUAL(err.field, field);
    CU_ASSERT(err.msg[0] != '\0');
    if (strcmp(err.field, field) || err.usp_code != code || err.discard != discard)
        fprintf(stderr, "\n  got %u %d [%s] %s\n", err.usp_code, err.discard, err.field, err.msg);
}

static void test_val_garbage(void)
{
    start();
    static const uint8_t junk[] = {0x0a, 0x05, 'a'}; /* string longer than the buffer */
    UspRecord__Record *r;
    Usp__Msg *m;
    struct usp_decode_err err;
    CU_ASSERT_EQUAL(usp_record_decode(A, junk, sizeof junk, &r, &err), USP_EDECODE);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL(err.usp_code, USP_ERR_RECORD_NOT_PARSED);
    CU_ASSERT_TRUE(err.discard);
    CU_ASSERT_STRING_EQUAL(err.field, "record");
    CU_ASSERT_EQUAL(usp_msg_decode(A, junk, sizeof junk, &m, &err), USP_EDECODE);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(err.usp_code, USP_ERR_MESSAGE_FAILED);
    CU_ASSERT_TRUE(err.discard);
    CU_ASSERT_STRING_EQUAL(err.field, "msg");
    end();
}

static void test_val_record_required(void)
{
    start();
    UspRecord__Record *r = rec_nsc(build_get());
    r->version = "";
    expect_rec(r, 7104, false, "record.version");
    r->version = "1.5";
    expect_rec(r, 7104, false, "record.version");
    r->version = "1.4.1";
    expect_rec(r, 7104, false, "record.version");
    r->version = "1.4";
    r->to_id = "";
    expect_rec(r, 7104, true, "record.to_id");
    r->to_id = OWN;
    r->from_id = "";
    expect_rec(r, 7104, true, "record.from_id");
    end();
}

static void test_val_record_oneof(void)
{
    start();
    UspRecord__Record *r = rec_base();
    expect_rec(r, 7104, true, "record.record_type");
    /* The discard wins over an earlier, answerable fault. */
    r->payload_security = 9;
    expect_rec(r, 7104, true, "record.record_type");
    end();
}

static void test_val_record_enums(void)
{
    start();
    UspRecord__Record *r = rec_nsc(build_get());
    r->payload_security = 5;
    expect_rec(r, 7104, false, "record.payload_security");

    r = rec_base();
    UspRecord__MQTTConnectRecord *m =
        NEW(UspRecord__MQTTConnectRecord, usp_record__mqttconnect_record__descriptor);
    m->version = 2;
    m->subscribed_topic = "t";
    set_oneof(r, "mqtt_connect", m);
    expect_rec(r, 7104, false, "record.mqtt_connect.version");

    r = rec_base();
    UspRecord__STOMPConnectRecord *s =
        NEW(UspRecord__STOMPConnectRecord, usp_record__stompconnect_record__descriptor);
    s->version = 1;
    set_oneof(r, "stomp_connect", s);
    expect_rec(r, 7104, false, "record.stomp_connect.version");

    r = rec_base();
    UspRecord__SessionContextRecord *sc =
        NEW(UspRecord__SessionContextRecord, usp_record__session_context_record__descriptor);
    sc->session_id = 2;
    sc->payloadrec_sar_state = 4;
    set_oneof(r, "session_context", sc);
    expect_rec(r, 7104, false, "record.session_context.payloadrec_sar_state");
    sc->payloadrec_sar_state = 0;
    sc->payload_sar_state = -1;
    expect_rec(r, 7104, false, "record.session_context.payload_sar_state");

    /* Version problems are reported before enum ones. */
    r = rec_nsc(build_get());
    r->payload_security = 5;
    r->version = "3.0";
    expect_rec(r, 7104, false, "record.version");
    end();
}

static void test_val_record_payload(void)
{
    start();
    UspRecord__Record *r = rec_nsc(build_get());
    r->no_session_context->payload.len = 0;
    expect_rec(r, 7104, false, "record.no_session_context.payload");
    r = rec_nsc(build_get());
    r->payload_security = USP_RECORD__RECORD__PAYLOAD_SECURITY__TLS12;
    expect_rec(r, 7104, false, "record.payload_security");
    end();
}

static void test_val_msg_frame(void)
{
    start();
    Usp__Msg *m = build_get();
    m->header = NULL;
    expect_msg(m, 7004, true, "msg.header");
    m = build_get();
    m->header->msg_id = "";
    expect_msg(m, 7004, true, "msg.header.msg_id");
    m = build_get();
    m->body = NULL;
    expect_msg(m, 7004, true, "msg.body");
    m = wrap("x", 0, NEW(Usp__Body, usp__body__descriptor));
    expect_msg(m, 7004, true, "msg.body.msg_body");
    end();
}

static void test_val_msg_oneofs(void)
{
    start();
    /* An empty Request is still a Request: it gets a 7004 answer. */
    Usp__Msg *m = req(1, "get", NEW(Usp__Get, usp__get__descriptor));
    m->body->request->req_type_case = USP__REQUEST__REQ_TYPE__NOT_SET;
    expect_msg(m, 7004, false, "msg.body.request.req_type");

    m = resp(2, "get_resp", NEW(Usp__GetResp, usp__get_resp__descriptor));
    m->body->response->resp_type_case = USP__RESPONSE__RESP_TYPE__NOT_SET;
    expect_msg(m, 7004, true, "msg.body.response.resp_type");

    m = build_notify_event();
    m->body->request->notify->notification_case = USP__NOTIFY__NOTIFICATION__NOT_SET;
    expect_msg(m, 7004, false, "msg.body.request.notify.notification");

    m = build_notify_oper_complete();
    m->body->request->notify->oper_complete->operation_resp_case =
        USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP__NOT_SET;
    expect_msg(m, 7004, false, "msg.body.request.notify.oper_complete.operation_resp");

    m = build_operate_resp();
    m->body->response->operate_resp->operation_results[2]->operation_resp_case =
        USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP__NOT_SET;
    expect_msg(m, 7004, true, "msg.body.response.operate_resp.operation_results[2].operation_resp");

    m = build_add_resp();
    m->body->response->add_resp->created_obj_results[1]->oper_status->oper_status_case = 0;
    expect_msg(m, 7004, true,
               "msg.body.response.add_resp.created_obj_results[1].oper_status.oper_status");
    /* An absent OperationStatus has an empty oneof just the same. */
    m = build_add_resp();
    m->body->response->add_resp->created_obj_results[0]->oper_status = NULL;
    expect_msg(m, 7004, true,
               "msg.body.response.add_resp.created_obj_results[0].oper_status.oper_status");

    m = build_set_resp();
    m->body->response->set_resp->updated_obj_results[0]->oper_status->oper_status_case = 0;
    expect_msg(m, 7004, true,
               "msg.body.response.set_resp.updated_obj_results[0].oper_status.oper_status");
    m = build_delete_resp();
    m->body->response->delete_resp->deleted_obj_results[1]->oper_status = NULL;
    expect_msg(m, 7004, true,
               "msg.body.response.delete_resp.deleted_obj_results[1].oper_status.oper_status");
    m = build_register_resp();
    m->body->response->register_resp->registered_path_results[0]->oper_status->oper_status_case = 0;
    expect_msg(
        m, 7004, true,
        "msg.body.response.register_resp.registered_path_results[0].oper_status.oper_status");
    m = build_deregister_resp();
    m->body->response->deregister_resp->deregistered_path_results[1]
        ->oper_status->oper_status_case = 0;
    expect_msg(m, 7004, true,
               "msg.body.response.deregister_resp.deregistered_path_results[1].oper_status."
               "oper_status");
    end();
}

static void test_val_msg_enums(void)
{
    start();
    Usp__Msg *m = build_get();
    m->header->msg_type = 99;
    expect_msg(m, 7004, false, "msg.header.msg_type");

    m = build_gsdm_resp();
    Usp__GetSupportedDMResp__SupportedObjectResult *o =
        m->body->response->get_supported_dm_resp->req_obj_results[0]->supported_objs[0];
    o->supported_params[0]->value_change = 3;
    expect_msg(m, 7004, true,
               "msg.body.response.get_supported_dm_resp.req_obj_results[0].supported_objs[0]."
               "supported_params[0].value_change");
    o->supported_params[0]->value_change = 0;
    o->access = 4;
    expect_msg(m, 7004, true,
               "msg.body.response.get_supported_dm_resp.req_obj_results[0].supported_objs[0]."
               "access");
    o->access = 0;
    o->supported_commands[0]->command_type = 77;
    expect_msg(m, 7004, true,
               "msg.body.response.get_supported_dm_resp.req_obj_results[0].supported_objs[0]."
               "supported_commands[0].command_type");
    end();
}

/* The validators also accept structures built in memory (not decoded). */
static void test_val_in_memory(void)
{
    start();
    struct usp_decode_err err;
    Usp__Msg *m = build_get();
    CU_ASSERT_EQUAL(usp_msg_validate(m, &err), 0);
    m->body->request->get = NULL; /* case set, pointer missing: an empty Get */
    CU_ASSERT_EQUAL(usp_msg_validate(m, &err), 0);
    m->body->request->req_type_case = 42;
    CU_ASSERT_EQUAL(usp_msg_validate(m, &err), USP_EPROTO);
    CU_ASSERT_STRING_EQUAL(err.field, "msg.body.request.req_type");
    CU_ASSERT_EQUAL(usp_msg_validate(NULL, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_record_validate(NULL, &err), USP_EINVAL);
    UspRecord__Record *r = rec_nsc(build_get());
    CU_ASSERT_EQUAL(usp_record_validate(r, NULL), 0);
    end();
}

/* Every oneof of both schemas has its name known to the validator. */
static int check_oneof_names(const ProtobufCMessageDescriptor *d, int depth)
{
    int missing = 0;
    if (depth > 20)
        return 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && !codec__oneof_name(d)) {
            fprintf(stderr, "\n  no oneof name for %s\n", d->name);
            missing++;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            missing += check_oneof_names(f->descriptor, depth + 1);
    }
    return missing;
}

static void test_oneof_names(void)
{
    CU_ASSERT_EQUAL(check_oneof_names(&usp__msg__descriptor, 0), 0);
    CU_ASSERT_EQUAL(check_oneof_names(&usp_record__record__descriptor, 0), 0);
    CU_ASSERT_STRING_EQUAL(codec__oneof_name(&usp__request__descriptor), "req_type");
    CU_ASSERT_PTR_NULL(codec__oneof_name(&usp__get__descriptor));
}

/* ---- receive decisions (R-E2E.1, R-MTP.5) ------------------------------ */

static void rx_of(UspRecord__Record *r, struct usp_rx *rx)
{
    size_t len;
    uint8_t *buf = enc_rec(r, &len);
    CU_ASSERT_EQUAL_FATAL(usp_rx_record(A, buf, len, OWN, rx), 0);
}

/* Builds the reply to rx and decodes it as the controller would. */
static Usp__Error *reply_of(const struct usp_rx *rx, UspRecord__Record **rec_out)
{
    uint8_t *buf;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(usp_rx_error_reply(A, rx, OWN, &buf, &len), 0);
    struct usp_rx back;
    CU_ASSERT_EQUAL_FATAL(usp_rx_record(A, buf, len, CTRL, &back), 0);
    CU_ASSERT_EQUAL_FATAL(back.action, USP_RX_DELIVER);
    CU_ASSERT_EQUAL(usp_msg_kind(back.msg), USP__HEADER__MSG_TYPE__ERROR);
    CU_ASSERT_STRING_EQUAL(back.rec->to_id, CTRL);
    CU_ASSERT_STRING_EQUAL(back.rec->from_id, OWN);
    CU_ASSERT_STRING_EQUAL(back.msg->header->msg_id, "req-1");
    *rec_out = back.rec;
    return back.msg->body->error;
}

static void test_rx_deliver(void)
{
    start();
    struct usp_rx rx;
    rx_of(rec_nsc(build_get()), &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DELIVER);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rx.msg);
    CU_ASSERT_EQUAL(usp_msg_kind(rx.msg), USP__HEADER__MSG_TYPE__GET);
    /* Responses and Notify are delivered the same way. */
    rx_of(rec_nsc(build_get_resp()), &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DELIVER);
    /* Records without a Message are delivered with msg NULL. */
    UspRecord__Record *r = rec_base();
    set_oneof(r, "uds_connect", mk(&usp_record__udsconnect_record__descriptor));
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DELIVER);
    CU_ASSERT_PTR_NULL(rx.msg);
    CU_ASSERT_PTR_NOT_NULL(rx.rec);
    uint8_t *buf;
    size_t len;
    CU_ASSERT_EQUAL(usp_rx_error_reply(A, &rx, OWN, &buf, &len), USP_EINVAL);
    end();
}

static void test_rx_not_ours(void)
{
    start();
    struct usp_rx rx;
    UspRecord__Record *r = rec_nsc(build_get());
    r->to_id = "proto::someone-else";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_TRUE(rx.err.discard);
    CU_ASSERT_EQUAL(rx.err.usp_code, 0);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.to_id");
    /* Even a broken Record for someone else is only dropped. */
    r->version = "9.9";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.to_id");
    end();
}

static void test_rx_garbage(void)
{
    start();
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    struct usp_rx rx;
    CU_ASSERT_EQUAL(usp_rx_record(A, junk, sizeof junk, OWN, &rx), 0);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_EQUAL(rx.err.usp_code, USP_ERR_RECORD_NOT_PARSED);
    CU_ASSERT_PTR_NULL(rx.rec);
    CU_ASSERT_EQUAL(usp_rx_record(A, NULL, 0, OWN, &rx), 0);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.from_id");
    end();
}

static void test_rx_reply_record_error(void)
{
    start();
    struct usp_rx rx;
    UspRecord__Record *r = rec_nsc(build_get());
    r->version = "2.0";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL_FATAL(rx.action, USP_RX_REPLY_ERROR);
    CU_ASSERT_EQUAL(rx.err.usp_code, USP_ERR_RECORD_FIELD_INVALID);
    CU_ASSERT_FALSE(rx.err.discard);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.version");
    UspRecord__Record *back;
    Usp__Error *e = reply_of(&rx, &back);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_RECORD_FIELD_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(e->err_msg, "record.version"));
    /* We cannot answer in 2.0, so the reply uses our default. */
    CU_ASSERT_STRING_EQUAL(back->version, USP_VERSION_DEFAULT);

    r = rec_nsc(build_gsdm());
    r->payload_security = 3;
    r->version = "1.2";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL_FATAL(rx.action, USP_RX_REPLY_ERROR);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.payload_security");
    e = reply_of(&rx, &back);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_RECORD_FIELD_INVALID);
    CU_ASSERT_STRING_EQUAL(back->version, "1.2");
    end();
}

static void test_rx_reply_msg_error(void)
{
    start();
    struct usp_rx rx;
    Usp__Msg *m = build_notify_event();
    m->body->request->notify->notification_case = 0;
    UspRecord__Record *r = rec_nsc(m);
    r->version = "1.3";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL_FATAL(rx.action, USP_RX_REPLY_ERROR);
    CU_ASSERT_EQUAL(rx.err.usp_code, USP_ERR_INVALID_ARGUMENTS);
    CU_ASSERT_PTR_NOT_NULL(rx.msg);
    UspRecord__Record *back;
    Usp__Error *e = reply_of(&rx, &back);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_INVALID_ARGUMENTS);
    CU_ASSERT_PTR_NOT_NULL(strstr(e->err_msg, "msg.body.request.notify.notification"));
    CU_ASSERT_STRING_EQUAL(back->version, "1.3");
    end();
}

static void test_rx_drop_cases(void)
{
    start();
    struct usp_rx rx;
    /* A bad Record carrying a Response is never answered. */
    UspRecord__Record *r = rec_nsc(build_get_resp());
    r->version = "2.0";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_EQUAL(rx.err.usp_code, USP_ERR_RECORD_FIELD_INVALID);
    CU_ASSERT_TRUE(rx.err.discard);
    /* Nor is one from a sender that is not an Endpoint ID. */
    static const char *const bad_from[] = {"controller", "proto:ctrl", "zzz::ctrl", "proto::",
                                           "proto::a b", "proto::a:b", "proto::%4"};
    for (size_t i = 0; i < sizeof bad_from / sizeof bad_from[0]; i++) {
        r = rec_nsc(build_get());
        r->version = "2.0";
        r->from_id = (char *)bad_from[i];
        rx_of(r, &rx);
        CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    }
    r = rec_nsc(build_get());
    r->version = "2.0";
    r->from_id = "oui:00256D:my-unique-bbf-id-42%2F";
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_REPLY_ERROR);
    /* instance-id: at most 50 characters (R-ARC.6). */
    char eid[80];
    snprintf(eid, sizeof eid, "proto::%.50s",
             "0123456789012345678901234567890123456789012345678901");
    r->from_id = eid;
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_REPLY_ERROR);
    snprintf(eid, sizeof eid, "proto::%.51s",
             "0123456789012345678901234567890123456789012345678901");
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    /* Nor a Request whose Message is broken beyond reading. */
    r = rec_nsc(build_get());
    r->no_session_context->payload.len = 3;
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_EQUAL(rx.err.usp_code, USP_ERR_MESSAGE_FAILED);
    /* An empty payload has no msg_id to answer. */
    r = rec_nsc(build_get());
    r->no_session_context->payload.len = 0;
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.no_session_context.payload");
    /* R-ENC.4: no record_type. */
    r = rec_base();
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.record_type");
    /* A broken Response: nothing to answer. */
    Usp__Msg *m = build_add_resp();
    m->body->response->add_resp->created_obj_results[0]->oper_status = NULL;
    rx_of(rec_nsc(m), &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_EQUAL(rx.err.usp_code, USP_ERR_INVALID_ARGUMENTS);
    /* A Request without msg_id. */
    m = build_get();
    m->header->msg_id = "";
    rx_of(rec_nsc(m), &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "msg.header.msg_id");
    /* A bad session_context Record is left to the session layer. */
    r = rec_base();
    UspRecord__SessionContextRecord *sc =
        NEW(UspRecord__SessionContextRecord, usp_record__session_context_record__descriptor);
    sc->payload_sar_state = 8;
    set_oneof(r, "session_context", sc);
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.session_context.payload_sar_state");
    /* TLS12 payload outside a session: unreadable, dropped. */
    r = rec_nsc(build_get());
    r->payload_security = USP_RECORD__RECORD__PAYLOAD_SECURITY__TLS12;
    rx_of(r, &rx);
    CU_ASSERT_EQUAL(rx.action, USP_RX_DROP);
    CU_ASSERT_STRING_EQUAL(rx.err.field, "record.payload_security");
    end();
}

static void test_rx_null_own(void)
{
    start();
    /* Without an own ID (a decoding tool) every to_id is accepted and a
     * reply comes from the to_id the Record was sent to. */
    UspRecord__Record *r = rec_nsc(build_get());
    r->to_id = "proto::whoever";
    r->version = "0.1";
    size_t len;
    uint8_t *buf = enc_rec(r, &len);
    struct usp_rx rx;
    CU_ASSERT_EQUAL_FATAL(usp_rx_record(A, buf, len, NULL, &rx), 0);
    CU_ASSERT_EQUAL_FATAL(rx.action, USP_RX_REPLY_ERROR);
    CU_ASSERT_EQUAL_FATAL(usp_rx_error_reply(A, &rx, NULL, &buf, &len), 0);
    UspRecord__Record *back;
    struct usp_decode_err err;
    CU_ASSERT_EQUAL_FATAL(usp_record_decode(A, buf, len, &back, &err), 0);
    CU_ASSERT_STRING_EQUAL(back->from_id, "proto::whoever");
    CU_ASSERT_EQUAL(usp_rx_record(NULL, buf, len, NULL, &rx), USP_EINVAL);
    end();
}

void suite_codec(void)
{
    USP_SUITE("codec_roundtrip", USP_TEST(test_rt_get), USP_TEST(test_rt_get_resp),
              USP_TEST(test_rt_set), USP_TEST(test_rt_set_resp), USP_TEST(test_rt_add),
              USP_TEST(test_rt_add_resp), USP_TEST(test_rt_delete), USP_TEST(test_rt_delete_resp),
              USP_TEST(test_rt_operate), USP_TEST(test_rt_operate_resp),
              USP_TEST(test_rt_notify_event), USP_TEST(test_rt_notify_value_change),
              USP_TEST(test_rt_notify_obj_creation), USP_TEST(test_rt_notify_obj_deletion),
              USP_TEST(test_rt_notify_oper_complete), USP_TEST(test_rt_notify_oper_failed),
              USP_TEST(test_rt_notify_on_board), USP_TEST(test_rt_notify_resp),
              USP_TEST(test_rt_gsdm), USP_TEST(test_rt_gsdm_resp), USP_TEST(test_rt_get_instances),
              USP_TEST(test_rt_get_instances_resp), USP_TEST(test_rt_gsp),
              USP_TEST(test_rt_gsp_resp), USP_TEST(test_rt_register),
              USP_TEST(test_rt_register_resp), USP_TEST(test_rt_deregister),
              USP_TEST(test_rt_deregister_resp), USP_TEST(test_rt_error), USP_TEST(test_rt_fields),
              USP_TEST(test_rec_no_session), USP_TEST(test_rec_session),
              USP_TEST(test_rec_websocket), USP_TEST(test_rec_mqtt), USP_TEST(test_rec_stomp),
              USP_TEST(test_rec_disconnect), USP_TEST(test_rec_uds), USP_TEST(test_wrap_msg),
              USP_TEST(test_msg_types), USP_TEST(test_versions));
    USP_SUITE("codec_validate", USP_TEST(test_val_garbage), USP_TEST(test_val_record_required),
              USP_TEST(test_val_record_oneof), USP_TEST(test_val_record_enums),
              USP_TEST(test_val_record_payload), USP_TEST(test_val_msg_frame),
              USP_TEST(test_val_msg_oneofs), USP_TEST(test_val_msg_enums),
              USP_TEST(test_val_in_memory), USP_TEST(test_oneof_names));
    USP_SUITE("codec_rx", USP_TEST(test_rx_deliver), USP_TEST(test_rx_not_ours),
              USP_TEST(test_rx_garbage), USP_TEST(test_rx_reply_record_error),
              USP_TEST(test_rx_reply_msg_error), USP_TEST(test_rx_drop_cases),
              USP_TEST(test_rx_null_own));
}
