/* Writes the seed corpus of fuzz_record: one Record of each record type and
 * no_session_context Records carrying several message types, valid and
 * not. Run from the project root after building it against libusp, e.g.
 *   cc -std=c11 -D_GNU_SOURCE -Ilib/include -Ibuild/gen tests/fuzz/gen_seeds_record.c \
 *      build/libusp.a $(pkg-config --libs libprotobuf-c) -o build/gen_seeds_record
 *   build/gen_seeds_record tests/fuzz/corpus/record
 * The output is checked in; rerun only to change the seeds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/codec.h"

#define OWN  "proto::agent-1"
#define CTRL "proto::ctrl-1"

static struct usp_arena *A;
static const char *dir;

static void put(const char *name, const UspRecord__Record *r)
{
    uint8_t *buf;
    size_t len;
    if (usp_record_encode(A, r, &buf, &len)) {
        fprintf(stderr, "cannot encode %s\n", name);
        exit(1);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static UspRecord__Record *rec(void)
{
    UspRecord__Record *r = usp_arena_alloc(A, sizeof *r);
    usp_record__record__init(r);
    r->version = "1.4";
    r->to_id = OWN;
    r->from_id = CTRL;
    return r;
}

/* A no_session_context Record with `m` packed inside. */
static void put_msg(const char *name, const Usp__Msg *m, const char *version)
{
    UspRecord__Record *r = rec();
    UspRecord__NoSessionContextRecord *n = usp_arena_alloc(A, sizeof *n);
    usp_record__no_session_context_record__init(n);
    if (usp_msg_encode(A, m, &n->payload.data, &n->payload.len))
        exit(1);
    r->version = (char *)version;
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    r->no_session_context = n;
    put(name, r);
}

static Usp__Msg *msg(const char *id, int type, Usp__Body *b)
{
    Usp__Msg *m = usp_arena_alloc(A, sizeof *m);
    Usp__Header *h = usp_arena_alloc(A, sizeof *h);
    usp__msg__init(m);
    usp__header__init(h);
    h->msg_id = (char *)id;
    h->msg_type = type;
    m->header = h;
    m->body = b;
    return m;
}

static Usp__Body *request(Usp__Request *rq)
{
    Usp__Body *b = usp_arena_alloc(A, sizeof *b);
    usp__body__init(b);
    b->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
    b->request = rq;
    return b;
}

static Usp__Body *response(Usp__Response *rs)
{
    Usp__Body *b = usp_arena_alloc(A, sizeof *b);
    usp__body__init(b);
    b->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
    b->response = rs;
    return b;
}

static char *paths[] = {"Device.DeviceInfo.", "Device.WiFi.SSID.*.Enable"};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds_record DIR\n");
        return 2;
    }
    dir = argv[1];
    A = usp_arena_new(0);

    /* Record types without a Message. */
    UspRecord__WebSocketConnectRecord ws = USP_RECORD__WEB_SOCKET_CONNECT_RECORD__INIT;
    UspRecord__Record *r = rec();
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT;
    r->websocket_connect = &ws;
    put("websocket_connect", r);

    UspRecord__MQTTConnectRecord mq = USP_RECORD__MQTTCONNECT_RECORD__INIT;
    mq.version = USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V5;
    mq.subscribed_topic = "usp/agent/" OWN;
    r = rec();
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT;
    r->mqtt_connect = &mq;
    put("mqtt_connect", r);

    UspRecord__STOMPConnectRecord st = USP_RECORD__STOMPCONNECT_RECORD__INIT;
    st.subscribed_destination = "/queue/agent-1";
    r = rec();
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT;
    r->stomp_connect = &st;
    put("stomp_connect", r);

    UspRecord__DisconnectRecord dc = USP_RECORD__DISCONNECT_RECORD__INIT;
    dc.reason = "Session Context terminated";
    dc.reason_code = 7105;
    r = rec();
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT;
    r->disconnect = &dc;
    put("disconnect", r);

    UspRecord__UDSConnectRecord uds = USP_RECORD__UDSCONNECT_RECORD__INIT;
    r = rec();
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT;
    r->uds_connect = &uds;
    put("uds_connect", r);

    ProtobufCBinaryData seg[2] = {{5, (uint8_t *)"\x0a\x03\x0a\x01x"}, {2, (uint8_t *)"\x12\x00"}};
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    sc.session_id = 1234;
    sc.sequence_id = 1;
    sc.expected_id = 1;
    sc.payload_sar_state = USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__BEGIN;
    sc.payloadrec_sar_state = USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__BEGIN;
    sc.n_payload = 2;
    sc.payload = seg;
    r = rec();
    r->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT;
    r->session_context = &sc;
    r->mac_signature = (ProtobufCBinaryData){4, (uint8_t *)"\x30\x02\x01\x00"};
    put("session_context", r);

    /* Messages. */
    Usp__Get get = USP__GET__INIT;
    get.n_param_paths = 2;
    get.param_paths = paths;
    get.max_depth = 1;
    Usp__Request rq = USP__REQUEST__INIT;
    rq.req_type_case = USP__REQUEST__REQ_TYPE_GET;
    rq.get = &get;
    Usp__Msg *get_msg = msg("get-1", USP__HEADER__MSG_TYPE__GET, request(&rq));
    put_msg("msg_get", get_msg, "1.4");
    put_msg("bad_version_get", get_msg, "2.0");

    Usp__Set__UpdateParamSetting ps = USP__SET__UPDATE_PARAM_SETTING__INIT;
    ps.param = "Enable";
    ps.value = "true";
    ps.required = 1;
    Usp__Set__UpdateParamSetting *psv[] = {&ps};
    Usp__Set__UpdateObject uo = USP__SET__UPDATE_OBJECT__INIT;
    uo.obj_path = "Device.WiFi.SSID.1.";
    uo.n_param_settings = 1;
    uo.param_settings = psv;
    Usp__Set__UpdateObject *uov[] = {&uo};
    Usp__Set set = USP__SET__INIT;
    set.n_update_objs = 1;
    set.update_objs = uov;
    Usp__Request rq_set = USP__REQUEST__INIT;
    rq_set.req_type_case = USP__REQUEST__REQ_TYPE_SET;
    rq_set.set = &set;
    put_msg("msg_set", msg("set-1", USP__HEADER__MSG_TYPE__SET, request(&rq_set)), "1.3");

    Usp__Operate__InputArgsEntry arg = USP__OPERATE__INPUT_ARGS_ENTRY__INIT;
    arg.key = "Host";
    arg.value = "192.0.2.1";
    Usp__Operate__InputArgsEntry *argv_[] = {&arg};
    Usp__Operate op = USP__OPERATE__INIT;
    op.command = "Device.IP.Diagnostics.IPPing()";
    op.command_key = "k";
    op.send_resp = 1;
    op.n_input_args = 1;
    op.input_args = argv_;
    Usp__Request rq_op = USP__REQUEST__INIT;
    rq_op.req_type_case = USP__REQUEST__REQ_TYPE_OPERATE;
    rq_op.operate = &op;
    put_msg("msg_operate", msg("op-1", USP__HEADER__MSG_TYPE__OPERATE, request(&rq_op)), "1.4");

    Usp__Notify__Event__ParamsEntry ep = USP__NOTIFY__EVENT__PARAMS_ENTRY__INIT;
    ep.key = "Cause";
    ep.value = "LocalReboot";
    Usp__Notify__Event__ParamsEntry *epv[] = {&ep};
    Usp__Notify__Event ev = USP__NOTIFY__EVENT__INIT;
    ev.obj_path = "Device.";
    ev.event_name = "Boot!";
    ev.n_params = 1;
    ev.params = epv;
    Usp__Notify nt = USP__NOTIFY__INIT;
    nt.subscription_id = "boot";
    nt.send_resp = 1;
    nt.notification_case = USP__NOTIFY__NOTIFICATION_EVENT;
    nt.event = &ev;
    Usp__Request rq_nt = USP__REQUEST__INIT;
    rq_nt.req_type_case = USP__REQUEST__REQ_TYPE_NOTIFY;
    rq_nt.notify = &nt;
    put_msg("msg_notify", msg("nt-1", USP__HEADER__MSG_TYPE__NOTIFY, request(&rq_nt)), "1.4");

    Usp__GetSupportedDM gsdm = USP__GET_SUPPORTED_DM__INIT;
    gsdm.n_obj_paths = 1;
    gsdm.obj_paths = paths;
    gsdm.return_params = 1;
    gsdm.return_unique_key_sets = 1;
    Usp__Request rq_gsdm = USP__REQUEST__INIT;
    rq_gsdm.req_type_case = USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM;
    rq_gsdm.get_supported_dm = &gsdm;
    put_msg("msg_gsdm", msg("g-1", USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM, request(&rq_gsdm)),
            "1.4");

    Usp__GetResp__ResolvedPathResult__ResultParamsEntry rpe =
        USP__GET_RESP__RESOLVED_PATH_RESULT__RESULT_PARAMS_ENTRY__INIT;
    rpe.key = "SerialNumber";
    rpe.value = "SN1";
    Usp__GetResp__ResolvedPathResult__ResultParamsEntry *rpev[] = {&rpe};
    Usp__GetResp__ResolvedPathResult rp = USP__GET_RESP__RESOLVED_PATH_RESULT__INIT;
    rp.resolved_path = "Device.DeviceInfo.";
    rp.n_result_params = 1;
    rp.result_params = rpev;
    Usp__GetResp__ResolvedPathResult *rpv[] = {&rp};
    Usp__GetResp__RequestedPathResult rqp = USP__GET_RESP__REQUESTED_PATH_RESULT__INIT;
    rqp.requested_path = "Device.DeviceInfo.";
    rqp.n_resolved_path_results = 1;
    rqp.resolved_path_results = rpv;
    Usp__GetResp__RequestedPathResult *rqpv[] = {&rqp};
    Usp__GetResp gr = USP__GET_RESP__INIT;
    gr.n_req_path_results = 1;
    gr.req_path_results = rqpv;
    Usp__Response rs = USP__RESPONSE__INIT;
    rs.resp_type_case = USP__RESPONSE__RESP_TYPE_GET_RESP;
    rs.get_resp = &gr;
    put_msg("msg_get_resp", msg("get-1", USP__HEADER__MSG_TYPE__GET_RESP, response(&rs)), "1.4");

    Usp__AddResp__CreatedObjectResult__OperationStatus__OperationFailure af =
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPERATION_FAILURE__INIT;
    af.err_code = 7019;
    af.err_msg = "not creatable";
    Usp__AddResp__CreatedObjectResult__OperationStatus ast =
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__INIT;
    ast.oper_status_case =
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE;
    ast.oper_failure = &af;
    Usp__AddResp__CreatedObjectResult cor = USP__ADD_RESP__CREATED_OBJECT_RESULT__INIT;
    cor.requested_path = "Device.DeviceInfo.";
    cor.oper_status = &ast;
    Usp__AddResp__CreatedObjectResult *corv[] = {&cor};
    Usp__AddResp ar = USP__ADD_RESP__INIT;
    ar.n_created_obj_results = 1;
    ar.created_obj_results = corv;
    Usp__Response rs_add = USP__RESPONSE__INIT;
    rs_add.resp_type_case = USP__RESPONSE__RESP_TYPE_ADD_RESP;
    rs_add.add_resp = &ar;
    put_msg("msg_add_resp", msg("add-1", USP__HEADER__MSG_TYPE__ADD_RESP, response(&rs_add)),
            "1.4");

    Usp__Msg *e = usp_msg_new_error(A, "set-9", USP_ERR_REQUIRED_PARAM_FAILED, NULL);
    usp_msg_error_add_param(A, e, "Device.WiFi.SSID.1.SSID", USP_ERR_INVALID_VALUE, NULL);
    put_msg("msg_error", e, "1.4");

    /* Invalid ones: each reaches a different branch of the decision. */
    Usp__Request empty_rq = USP__REQUEST__INIT;
    put_msg("msg_empty_request", msg("x-1", USP__HEADER__MSG_TYPE__GET, request(&empty_rq)), "1.4");
    nt.notification_case = USP__NOTIFY__NOTIFICATION__NOT_SET;
    put_msg("msg_notify_no_notification",
            msg("nt-2", USP__HEADER__MSG_TYPE__NOTIFY, request(&rq_nt)), "1.4");
    r = rec();
    r->payload_security = 3;
    put("no_record_type", r);
    return 0;
}
