/* JSON writer: exact output for escaping, maps, bytes, enums, defaults,
 * oneofs, pretty printing and Records with their Message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/json.h"

static char *out;
static size_t out_len;
static FILE *f;

static void open_out(void)
{
    out = NULL;
    out_len = 0;
    f = open_memstream(&out, &out_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
}

/* Closes the stream and compares with the expected text. */
static void expect(const char *want)
{
    fclose(f);
    CU_ASSERT_STRING_EQUAL(out, want);
    if (strcmp(out, want))
        fprintf(stderr, "\n  got:  %s\n  want: %s\n", out, want);
    free(out);
}

static void test_get_compact_and_pretty(void)
{
    char *paths[] = {"Device.", "Device.WiFi."};
    Usp__Get get = USP__GET__INIT;
    get.n_param_paths = 2;
    get.param_paths = paths;
    Usp__Request rq = USP__REQUEST__INIT;
    rq.req_type_case = USP__REQUEST__REQ_TYPE_GET;
    rq.get = &get;
    Usp__Body body = USP__BODY__INIT;
    body.msg_body_case = USP__BODY__MSG_BODY_REQUEST;
    body.request = &rq;
    Usp__Header h = USP__HEADER__INIT;
    h.msg_id = "m1";
    h.msg_type = USP__HEADER__MSG_TYPE__GET;
    Usp__Msg m = USP__MSG__INIT;
    m.header = &h;
    m.body = &body;

    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &m.base, 0), 0);
    expect("{\"header\":{\"msg_id\":\"m1\",\"msg_type\":\"GET\"},\"body\":{\"request\":{\"get\":"
           "{\"param_paths\":[\"Device.\",\"Device.WiFi.\"]}}}}");

    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &m.base, 2), 0);
    expect("{\n"
           "  \"header\": {\n"
           "    \"msg_id\": \"m1\",\n"
           "    \"msg_type\": \"GET\"\n"
           "  },\n"
           "  \"body\": {\n"
           "    \"request\": {\n"
           "      \"get\": {\n"
           "        \"param_paths\": [\n"
           "          \"Device.\",\n"
           "          \"Device.WiFi.\"\n"
           "        ]\n"
           "      }\n"
           "    }\n"
           "  }\n"
           "}");

    /* Defaults are omitted: msg_type ERROR (0), max_depth 0, no paths. */
    h.msg_type = USP__HEADER__MSG_TYPE__ERROR;
    get.n_param_paths = 0;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &m.base, 0), 0);
    expect("{\"header\":{\"msg_id\":\"m1\"},\"body\":{\"request\":{\"get\":{}}}}");
    get.max_depth = 4294967295u;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &get.base, 4), 0);
    expect("{\n    \"max_depth\": 4294967295\n}");
}

static void test_escaping(void)
{
    Usp__Notify__ValueChange vc = USP__NOTIFY__VALUE_CHANGE__INIT;
    vc.param_path = "Device.X_Test.\"quoted\"\\path/";
    vc.param_value = "nl\ncr\rtab\tbs\bff\f\x01\x1f\x7f"
                     " \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"                     /* é € 😀 */
                     " \xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe0\x9f\xbf" /* invalid */
                     "|\xe2\x82";                                                /* cut short */
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &vc.base, 0), 0);
    expect("{\"param_path\":\"Device.X_Test.\\\"quoted\\\"\\\\path/\","
           "\"param_value\":\"nl\\ncr\\rtab\\tbs\\bff\\f\\u0001\\u001f\x7f"
           " \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
           " \\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd|"
           "\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"}");
}

static void test_map_wire_order(void)
{
    Usp__GetResp__ResolvedPathResult__ResultParamsEntry e1 =
        USP__GET_RESP__RESOLVED_PATH_RESULT__RESULT_PARAMS_ENTRY__INIT;
    Usp__GetResp__ResolvedPathResult__ResultParamsEntry e2 = e1, e3 = e1;
    e1.key = "Zeta";
    e1.value = "1";
    e2.key = "Alpha";
    e2.value = "";
    e3.key = "Tab\tKey";
    e3.value = "x\"y";
    Usp__GetResp__ResolvedPathResult__ResultParamsEntry *entries[] = {&e1, &e2, &e3};
    Usp__GetResp__ResolvedPathResult rp = USP__GET_RESP__RESOLVED_PATH_RESULT__INIT;
    rp.resolved_path = "Device.DeviceInfo.";
    rp.n_result_params = 3;
    rp.result_params = entries;

    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &rp.base, 0), 0);
    expect("{\"resolved_path\":\"Device.DeviceInfo.\",\"result_params\":{\"Zeta\":\"1\","
           "\"Alpha\":\"\",\"Tab\\tKey\":\"x\\\"y\"}}");

    rp.n_result_params = 2;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &rp.base, 1), 0);
    expect("{\n \"resolved_path\": \"Device.DeviceInfo.\",\n \"result_params\": {\n"
           "  \"Zeta\": \"1\",\n  \"Alpha\": \"\"\n }\n}");

    /* Order survives the wire. */
    uint8_t buf[128];
    CU_ASSERT_FATAL(protobuf_c_message_get_packed_size(&rp.base) <= sizeof buf);
    size_t n = protobuf_c_message_pack(&rp.base, buf);
    ProtobufCMessage *d =
        protobuf_c_message_unpack(&usp__get_resp__resolved_path_result__descriptor, NULL, n, buf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, d, 0), 0);
    expect("{\"resolved_path\":\"Device.DeviceInfo.\",\"result_params\":{\"Zeta\":\"1\","
           "\"Alpha\":\"\"}}");
    protobuf_c_message_free_unpacked(d, NULL);
}

static void test_bytes_enums(void)
{
    static const uint8_t sig[] = {0x00, 0xab, 0xff, 0x10};
    UspRecord__WebSocketConnectRecord ws = USP_RECORD__WEB_SOCKET_CONNECT_RECORD__INIT;
    UspRecord__Record r = USP_RECORD__RECORD__INIT;
    r.version = "1.4";
    r.to_id = "proto::a";
    r.from_id = "proto::b";
    r.payload_security = USP_RECORD__RECORD__PAYLOAD_SECURITY__TLS12;
    r.mac_signature.data = (uint8_t *)sig;
    r.mac_signature.len = sizeof sig;
    r.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT;
    r.websocket_connect = &ws;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &r.base, 0), 0);
    expect("{\"version\":\"1.4\",\"to_id\":\"proto::a\",\"from_id\":\"proto::b\","
           "\"payload_security\":\"TLS12\",\"mac_signature\":\"00abff10\","
           "\"websocket_connect\":{}}");

    /* An enum number without a name is printed as the number. */
    r.payload_security = 7;
    r.mac_signature.len = 0;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &r.base, 0), 0);
    expect("{\"version\":\"1.4\",\"to_id\":\"proto::a\",\"from_id\":\"proto::b\","
           "\"payload_security\":7,\"websocket_connect\":{}}");

    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    sc.session_id = 18446744073709551615ull;
    sc.expected_id = 9007199254740993ull; /* not representable as a double */
    sc.payload_sar_state = USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__COMPLETE;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &sc.base, 0), 0);
    expect("{\"session_id\":18446744073709551615,\"expected_id\":9007199254740993,"
           "\"payload_sar_state\":\"COMPLETE\"}");
}

static void test_oneof_defaults(void)
{
    /* A set oneof member is printed even at its default value. */
    Usp__OperateResp__OperationResult r1 = USP__OPERATE_RESP__OPERATION_RESULT__INIT;
    r1.operation_resp_case = USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH;
    r1.req_obj_path = "";
    Usp__OperateResp__OperationResult__CommandFailure cf =
        USP__OPERATE_RESP__OPERATION_RESULT__COMMAND_FAILURE__INIT;
    Usp__OperateResp__OperationResult r2 = USP__OPERATE_RESP__OPERATION_RESULT__INIT;
    r2.executed_command = "Device.Reboot()";
    r2.operation_resp_case = USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE;
    r2.cmd_failure = &cf;
    Usp__OperateResp__OperationResult r3 = USP__OPERATE_RESP__OPERATION_RESULT__INIT;
    Usp__OperateResp__OperationResult *v[] = {&r1, &r2, &r3};
    Usp__OperateResp o = USP__OPERATE_RESP__INIT;
    o.n_operation_results = 3;
    o.operation_results = v;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &o.base, 0), 0);
    expect("{\"operation_results\":[{\"req_obj_path\":\"\"},{\"executed_command\":"
           "\"Device.Reboot()\",\"cmd_failure\":{}},{}]}");

    /* Booleans: false is the default, true is printed. */
    Usp__Notify n = USP__NOTIFY__INIT;
    Usp__Notify__ObjectDeletion od = USP__NOTIFY__OBJECT_DELETION__INIT;
    n.notification_case = USP__NOTIFY__NOTIFICATION_OBJ_DELETION;
    n.obj_deletion = &od;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &n.base, 0), 0);
    expect("{\"obj_deletion\":{}}");
    n.send_resp = 1;
    n.subscription_id = "s";
    open_out();
    CU_ASSERT_EQUAL(usp_json_write(f, &n.base, 0), 0);
    expect("{\"subscription_id\":\"s\",\"send_resp\":true,\"obj_deletion\":{}}");
}

/* Msg{header{msg_id "1", msg_type GET}}, packed by hand. */
static const uint8_t small_msg[] = {0x0a, 0x05, 0x0a, 0x01, 0x31, 0x10, 0x01};

static void test_record_with_msg(void)
{
    struct usp_arena *a = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    Usp__Msg *msg = NULL;
    struct usp_decode_err err;
    /* No body: invalid, but still decoded and printable. */
    CU_ASSERT_EQUAL(usp_msg_decode(a, small_msg, sizeof small_msg, &msg, &err), USP_EPROTO);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);

    UspRecord__NoSessionContextRecord nsc = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    nsc.payload.data = (uint8_t *)small_msg;
    nsc.payload.len = sizeof small_msg;
    UspRecord__Record r = USP_RECORD__RECORD__INIT;
    r.version = "1.3";
    r.to_id = "proto::a";
    r.from_id = "proto::b";
    r.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    r.no_session_context = &nsc;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write_record(f, &r, msg, 0), 0);
    expect("{\"version\":\"1.3\",\"to_id\":\"proto::a\",\"from_id\":\"proto::b\","
           "\"no_session_context\":{\"payload\":\"0a050a01311001\",\"msg\":{\"header\":"
           "{\"msg_id\":\"1\",\"msg_type\":\"GET\"}}}}");

    open_out();
    CU_ASSERT_EQUAL(usp_json_write_record(f, &r, msg, 2), 0);
    expect("{\n"
           "  \"version\": \"1.3\",\n"
           "  \"to_id\": \"proto::a\",\n"
           "  \"from_id\": \"proto::b\",\n"
           "  \"no_session_context\": {\n"
           "    \"payload\": \"0a050a01311001\",\n"
           "    \"msg\": {\n"
           "      \"header\": {\n"
           "        \"msg_id\": \"1\",\n"
           "        \"msg_type\": \"GET\"\n"
           "      }\n"
           "    }\n"
           "  }\n"
           "}");

    /* Without a Message it is the plain Record. */
    open_out();
    CU_ASSERT_EQUAL(usp_json_write_record(f, &r, NULL, 0), 0);
    expect("{\"version\":\"1.3\",\"to_id\":\"proto::a\",\"from_id\":\"proto::b\","
           "\"no_session_context\":{\"payload\":\"0a050a01311001\"}}");

    /* A reassembled session payload goes beside the session's payloads. */
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    ProtobufCBinaryData pl = {sizeof small_msg, (uint8_t *)small_msg};
    sc.session_id = 2;
    sc.n_payload = 1;
    sc.payload = &pl;
    r.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT;
    r.session_context = &sc;
    open_out();
    CU_ASSERT_EQUAL(usp_json_write_record(f, &r, msg, 0), 0);
    expect("{\"version\":\"1.3\",\"to_id\":\"proto::a\",\"from_id\":\"proto::b\","
           "\"session_context\":{\"session_id\":2,\"payload\":[\"0a050a01311001\"],\"msg\":"
           "{\"header\":{\"msg_id\":\"1\",\"msg_type\":\"GET\"}}}}");
    usp_arena_free(a);
}

static void test_errors(void)
{
    Usp__Header h = USP__HEADER__INIT;
    CU_ASSERT_EQUAL(usp_json_write(NULL, &h.base, 0), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_json_write(stdout, NULL, 0), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_json_write_record(stdout, NULL, NULL, 0), USP_EINVAL);
    /* A stream that cannot be written reports USP_EIO. */
    FILE *ro = fopen("/dev/null", "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ro);
    h.msg_id = "x";
    CU_ASSERT_EQUAL(usp_json_write(ro, &h.base, 0), USP_EIO);
    fclose(ro);
}

void suite_json(void)
{
    USP_SUITE("json", USP_TEST(test_get_compact_and_pretty), USP_TEST(test_escaping),
              USP_TEST(test_map_wire_order), USP_TEST(test_bytes_enums),
              USP_TEST(test_oneof_defaults), USP_TEST(test_record_with_msg), USP_TEST(test_errors));
}
