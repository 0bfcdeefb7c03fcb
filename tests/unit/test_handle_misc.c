/* Dispatch on the agent: GetSupportedProtocol, messages an agent does not
 * take (7001), NotifyResp and Error bookkeeping, the body winning over the
 * header (R-MSG.10) and an env without callbacks. */
#include <string.h>

#include "test_handle.h"

static Usp__Msg *response_msg(Usp__Response__RespTypeCase kind, void *body, const char *msg_id)
{
    Usp__Msg *m = usp_arena_zalloc(H.a, sizeof *m);
    Usp__Header *h = usp_arena_zalloc(H.a, sizeof *h);
    Usp__Body *b = usp_arena_zalloc(H.a, sizeof *b);
    Usp__Response *r = usp_arena_zalloc(H.a, sizeof *r);
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__response__init(r);
    h->msg_id = (char *)msg_id;
    h->msg_type = USP__HEADER__MSG_TYPE__NOTIFY_RESP;
    r->resp_type_case = kind;
    r->get_resp = body;
    b->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
    b->response = r;
    m->header = h;
    m->body = b;
    return m;
}

static void test_get_supported_protocol(void)
{
    hfix_setup(false);
    Usp__GetSupportedProtocol *g = usp_arena_zalloc(H.a, sizeof *g);
    usp__get_supported_protocol__init(g);
    g->controller_supported_protocol_versions = "1.3,1.4";
    Usp__Msg *m = hfix_handle(hfix_request(USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL, g));
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO_RESP);
    CU_ASSERT_STRING_EQUAL(r->get_supported_protocol_resp->agent_supported_protocol_versions,
                           "1.0,1.1,1.2,1.3,1.4");
    H.env.versions = "1.3,1.4";
    m = hfix_handle(hfix_request(USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL, g));
    r = hfix_response(m, USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_STRING_EQUAL(r->get_supported_protocol_resp->agent_supported_protocol_versions,
                           "1.3,1.4");
    hfix_teardown();
}

static void test_not_taken_7001(void)
{
    hfix_setup(false);
    Usp__Notify *n = usp_arena_zalloc(H.a, sizeof *n);
    usp__notify__init(n);
    Usp__Register *reg = usp_arena_zalloc(H.a, sizeof *reg);
    usp__register__init(reg);
    Usp__Deregister *dereg = usp_arena_zalloc(H.a, sizeof *dereg);
    usp__deregister__init(dereg);
    Usp__Msg *reqs[] = {
        hfix_request(USP__REQUEST__REQ_TYPE_NOTIFY, n),
        hfix_request(USP__REQUEST__REQ_TYPE_REGISTER, reg),
        hfix_request(USP__REQUEST__REQ_TYPE_DEREGISTER, dereg),
    };
    for (size_t i = 0; i < 3; i++) {
        Usp__Error *e = hfix_error(hfix_handle(reqs[i]));
        CU_ASSERT_FATAL(e != NULL);
        CU_ASSERT_EQUAL(e->err_code, USP_ERR_MESSAGE_NOT_SUPPORTED);
        CU_ASSERT(e->err_msg[0] != '\0');
    }
    /* A Response the agent never asked for (here a GetResp). */
    Usp__GetResp *gr = usp_arena_zalloc(H.a, sizeof *gr);
    usp__get_resp__init(gr);
    Usp__Msg *m = response_msg(USP__RESPONSE__RESP_TYPE_GET_RESP, gr, "x-1");
    m->header->msg_type = USP__HEADER__MSG_TYPE__GET_RESP;
    Usp__Error *e = hfix_error(hfix_handle(m));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_MESSAGE_NOT_SUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(e->err_msg, "GetResp"));
    CU_ASSERT_EQUAL(H.nreplies, 0);
    hfix_teardown();
}

static void test_notify_resp_and_error_received(void)
{
    hfix_setup(false);
    Usp__NotifyResp *nr = usp_arena_zalloc(H.a, sizeof *nr);
    usp__notify_resp__init(nr);
    nr->subscription_id = "boot-1";
    CU_ASSERT_PTR_NULL(
        hfix_handle_as("ctrl-1", response_msg(USP__RESPONSE__RESP_TYPE_NOTIFY_RESP, nr, "n-9")));
    CU_ASSERT_EQUAL_FATAL(H.nreplies, 1);
    CU_ASSERT_STRING_EQUAL(H.replies[0].controller, "ctrl-1");
    CU_ASSERT_STRING_EQUAL(H.replies[0].msg_id, "n-9");
    CU_ASSERT_STRING_EQUAL(H.replies[0].subscription_id, "boot-1");
    CU_ASSERT_EQUAL(H.replies[0].err_code, 0);
    /* An Error is never answered; it is reported too. */
    Usp__Msg *err = usp_msg_new_error(H.a, "n-10", USP_ERR_REQUEST_DENIED, "no thanks");
    CU_ASSERT_PTR_NULL(hfix_handle_as("ctrl-2", err));
    CU_ASSERT_EQUAL_FATAL(H.nreplies, 2);
    CU_ASSERT_STRING_EQUAL(H.replies[1].controller, "ctrl-2");
    CU_ASSERT_STRING_EQUAL(H.replies[1].msg_id, "n-10");
    CU_ASSERT_PTR_NULL(H.replies[1].subscription_id);
    CU_ASSERT_EQUAL(H.replies[1].err_code, USP_ERR_REQUEST_DENIED);
    CU_ASSERT_STRING_EQUAL(H.replies[1].err_msg, "no thanks");
    /* Without a reply callback nothing happens either. */
    H.env.reply = NULL;
    CU_ASSERT_PTR_NULL(hfix_handle(response_msg(USP__RESPONSE__RESP_TYPE_NOTIFY_RESP, nr, "n-11")));
    CU_ASSERT_EQUAL(H.nreplies, 2);
    hfix_teardown();
}

static void test_body_wins_over_header(void)
{
    hfix_setup(false);
    Usp__Msg *m = hfix_get1("Device.DeviceInfo.Manufacturer");
    m->header->msg_type = USP__HEADER__MSG_TYPE__SET; /* wrong on purpose */
    Usp__Msg *resp = NULL;
    CU_ASSERT_EQUAL(usp_agent_handle(&H.agent, &H.env, "ctrl-1", m, H.a, &resp), 0);
    CU_ASSERT_PTR_NOT_NULL(hfix_response(resp, USP__RESPONSE__RESP_TYPE_GET_RESP));
    CU_ASSERT(resp->header->msg_type == USP__HEADER__MSG_TYPE__GET_RESP);
    CU_ASSERT_STRING_EQUAL(resp->header->msg_id, m->header->msg_id);
    hfix_teardown();
}

static void test_env_without_callbacks(void)
{
    hfix_setup(false);
    struct usp_agent_env bare = {0};
    Usp__Msg *resp = NULL;
    /* Full access, no events, the agent's own clock. */
    const char *s[] = {"!FriendlyName=bare"};
    CU_ASSERT_EQUAL(usp_agent_handle(&H.agent, &bare, "ctrl-1",
                                     hfix_set(false, "Device.DeviceInfo.", s, 1), H.a, &resp),
                    0);
    CU_ASSERT_PTR_NOT_NULL(hfix_response(resp, USP__RESPONSE__RESP_TYPE_SET_RESP));
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.DeviceInfo.FriendlyName"), "bare");
    CU_ASSERT_EQUAL(H.nev, 0);
    /* No scheduler: an asynchronous command cannot run (7003), and leaves
     * no Request behind. */
    CU_ASSERT_EQUAL(
        usp_agent_handle(&H.agent, &bare, NULL,
                         hfix_operate("Device.SelfTestDiagnostics()", "", true, NULL, 0), H.a,
                         &resp),
        0);
    Usp__Response *r = hfix_response(resp, USP__RESPONSE__RESP_TYPE_OPERATE_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_EQUAL_FATAL(r->operate_resp->n_operation_results, 1);
    CU_ASSERT_EQUAL(r->operate_resp->operation_results[0]->operation_resp_case,
                    USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE);
    CU_ASSERT_EQUAL(r->operate_resp->operation_results[0]->cmd_failure->err_code,
                    USP_ERR_INTERNAL_ERROR);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "0");
    hfix_teardown();
}

void suite_handle_misc(void)
{
    USP_SUITE("handle_misc", USP_TEST(test_get_supported_protocol), USP_TEST(test_not_taken_7001),
              USP_TEST(test_notify_resp_and_error_received), USP_TEST(test_body_wins_over_header),
              USP_TEST(test_env_without_callbacks));
}
