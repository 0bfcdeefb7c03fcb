/* Set on the agent: success, non-required and required failures with and
 * without allow_partial, holistic search paths with rollback (R-SET.2a),
 * path errors and the events. */
#include <string.h>

#include "test_handle.h"

typedef Usp__SetResp__UpdatedObjectResult ObjRes;

static Usp__SetResp *set_resp(Usp__Msg *m)
{
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_SET_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__SET_RESP);
    return r->set_resp;
}

static Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationSuccess *success(ObjRes *r)
{
    CU_ASSERT_FATAL(r->oper_status != NULL);
    CU_ASSERT_EQUAL_FATAL(
        r->oper_status->oper_status_case,
        USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS);
    return r->oper_status->oper_success;
}

static Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure *failure(ObjRes *r)
{
    CU_ASSERT_FATAL(r->oper_status != NULL);
    CU_ASSERT_EQUAL_FATAL(
        r->oper_status->oper_status_case,
        USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE);
    return r->oper_status->oper_failure;
}

static uint32_t param_err(Usp__SetResp__ParameterError **errs, size_t n, const char *param)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(errs[i]->param, param)) {
            CU_ASSERT(errs[i]->err_msg[0] != '\0');
            return errs[i]->err_code;
        }
    return 0;
}

static void test_set_success_and_value_change(void)
{
    hfix_setup(false);
    const char *s[] = {"!FriendlyName=kitchen"};
    Usp__SetResp *sr = set_resp(hfix_handle(hfix_set(false, "Device.DeviceInfo.", s, 1)));
    CU_ASSERT_EQUAL_FATAL(sr->n_updated_obj_results, 1);
    CU_ASSERT_STRING_EQUAL(sr->updated_obj_results[0]->requested_path, "Device.DeviceInfo.");
    Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationSuccess *ok =
        success(sr->updated_obj_results[0]);
    CU_ASSERT_EQUAL_FATAL(ok->n_updated_inst_results, 1);
    Usp__SetResp__UpdatedInstanceResult *ir = ok->updated_inst_results[0];
    CU_ASSERT_STRING_EQUAL(ir->affected_path, "Device.DeviceInfo.");
    CU_ASSERT_EQUAL(ir->n_param_errs, 0);
    CU_ASSERT_EQUAL(ir->n_updated_params, 1);
    CU_ASSERT_STRING_EQUAL(HFIX_MAP_GET(ir->updated_params, ir->n_updated_params, "FriendlyName"),
                           "kitchen");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.DeviceInfo.FriendlyName"), "kitchen");
    const struct hfix_event *e = hfix_find(USP_EV_VALUE_CHANGE, "Device.DeviceInfo.FriendlyName");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->value, "kitchen");
    CU_ASSERT_EQUAL(H.nev, 1);

    /* The same value again: still reported in updated_params, but nothing
     * changed, so no ValueChange. */
    sr = set_resp(hfix_handle(hfix_set(false, "Device.DeviceInfo.", s, 1)));
    ir = success(sr->updated_obj_results[0])->updated_inst_results[0];
    CU_ASSERT_STRING_EQUAL(HFIX_MAP_GET(ir->updated_params, ir->n_updated_params, "FriendlyName"),
                           "kitchen");
    CU_ASSERT_EQUAL(H.nev, 1);

    /* A parameter of a single-instance sub-object, by relative path. */
    const char *s2[] = {"!E2ESession.SessionExpiration=120"};
    sr = set_resp(hfix_handle(hfix_set(false, "Device.LocalAgent.Controller.1.", s2, 1)));
    ir = success(sr->updated_obj_results[0])->updated_inst_results[0];
    CU_ASSERT_STRING_EQUAL(ir->affected_path, "Device.LocalAgent.Controller.1.");
    CU_ASSERT_STRING_EQUAL(
        HFIX_MAP_GET(ir->updated_params, ir->n_updated_params, "E2ESession.SessionExpiration"),
        "120");
    CU_ASSERT_STRING_EQUAL(
        hfix_value("Device.LocalAgent.Controller.1.E2ESession.SessionExpiration"), "120");
    hfix_teardown();
}

static void test_set_non_required_failures(void)
{
    hfix_setup(false);
    hfix_deny("Device.IP.Interface.1.IPv4Enable", USP_PERM_WRITE);
    const char *s[] = {"Enable=false", "Nope=1",       "Status=Up",
                       "Alias=other",  "Enable=maybe", "IPv4Enable=true"};
    Usp__SetResp *sr = set_resp(hfix_handle(hfix_set(false, "Device.IP.Interface.1.", s, 6)));
    Usp__SetResp__UpdatedInstanceResult *ir =
        success(sr->updated_obj_results[0])->updated_inst_results[0];
    CU_ASSERT_STRING_EQUAL(ir->affected_path, "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "Nope"), USP_ERR_UNSUPPORTED_PARAM);
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "Status"), USP_ERR_PARAM_READ_ONLY);
    /* writeOnceReadOnly with a value already: 7013. */
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "Alias"), USP_ERR_PARAM_READ_ONLY);
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "Enable"), USP_ERR_INVALID_TYPE);
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "IPv4Enable"),
                    USP_ERR_PERMISSION_DENIED);
    CU_ASSERT_EQUAL(ir->n_param_errs, 5);
    CU_ASSERT_STRING_EQUAL(HFIX_MAP_GET(ir->updated_params, ir->n_updated_params, "Enable"),
                           "false");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.1.Enable"), "false");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.1.Alias"), "cpe-1");

    /* 7012 (out of range) and 7025 (duplicate unique key). */
    const char *s2[] = {"USPNotifRetryMinimumWaitInterval=0", "EndpointID=ctrl-1"};
    sr = set_resp(hfix_handle(hfix_set(true, "Device.LocalAgent.Controller.2.", s2, 2)));
    ir = success(sr->updated_obj_results[0])->updated_inst_results[0];
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "USPNotifRetryMinimumWaitInterval"),
                    USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(param_err(ir->param_errs, ir->n_param_errs, "EndpointID"),
                    USP_ERR_UNIQUE_KEY_CONFLICT);
    CU_ASSERT_EQUAL(ir->n_updated_params, 0);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Controller.2.EndpointID"), "ctrl-2");
    hfix_teardown();
}

static void test_set_required_allow_partial_true(void)
{
    hfix_setup(false);
    const char *s[] = {"IPv4Enable=true", "!Enable=maybe"};
    Usp__SetResp *sr = set_resp(hfix_handle(hfix_set(true, "Device.IP.Interface.1.", s, 2)));
    Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure *f =
        failure(sr->updated_obj_results[0]);
    CU_ASSERT_EQUAL(f->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
    CU_ASSERT_EQUAL_FATAL(f->n_updated_inst_failures, 1);
    CU_ASSERT_STRING_EQUAL(f->updated_inst_failures[0]->affected_path, "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL(param_err(f->updated_inst_failures[0]->param_errs,
                              f->updated_inst_failures[0]->n_param_errs, "Enable"),
                    USP_ERR_INVALID_TYPE);
    /* The object failed: its other change is undone and not announced. */
    CU_ASSERT_STRING_NOT_EQUAL(hfix_value("Device.IP.Interface.1.IPv4Enable"), "true");
    CU_ASSERT_EQUAL(H.nev, 0);
    hfix_teardown();
}

static void test_set_required_allow_partial_false_7021(void)
{
    hfix_setup(false);
    /* Two UpdateObjects: the first succeeds, the second fails a required
     * parameter; the message fails and the first is undone. */
    Usp__Msg *m1 = hfix_set(false, "Device.DeviceInfo.", (const char *[]){"!FriendlyName=x"}, 1);
    Usp__Msg *m2 =
        hfix_set(false, "Device.IP.Interface.1.", (const char *[]){"!Enable=maybe", "Nope=1"}, 2);
    Usp__Set *set = m1->body->request->set;
    Usp__Set__UpdateObject **uo = usp_arena_alloc(H.a, 2 * sizeof *uo);
    uo[0] = set->update_objs[0];
    uo[1] = m2->body->request->set->update_objs[0];
    set->update_objs = uo;
    set->n_update_objs = 2;
    Usp__Error *e = hfix_error(hfix_handle(m1));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 1);
    CU_ASSERT_STRING_EQUAL(e->param_errs[0]->param_path, "Device.IP.Interface.1.Enable");
    CU_ASSERT_EQUAL(e->param_errs[0]->err_code, USP_ERR_INVALID_TYPE);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.DeviceInfo.FriendlyName"), "gw-7");
    CU_ASSERT_EQUAL(H.nev, 0);
    hfix_teardown();
}

static void test_set_search_holistic_rollback(void)
{
    for (int partial = 0; partial <= 1; partial++) {
        hfix_setup(false);
        hfix_deny("Device.IP.Interface.2.IPv4Enable", USP_PERM_WRITE);
        const char *s[] = {"!IPv4Enable=true"};
        /* R-SET.2a: whatever allow_partial says, a SetResp with an
         * oper_failure naming the object that failed, and nothing of this
         * path changed. */
        Usp__SetResp *sr = set_resp(hfix_handle(hfix_set(partial, "Device.IP.Interface.*.", s, 1)));
        Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationFailure *f =
            failure(sr->updated_obj_results[0]);
        CU_ASSERT_EQUAL(f->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
        CU_ASSERT_EQUAL_FATAL(f->n_updated_inst_failures, 1);
        CU_ASSERT_STRING_EQUAL(f->updated_inst_failures[0]->affected_path,
                               "Device.IP.Interface.2.");
        CU_ASSERT_EQUAL(param_err(f->updated_inst_failures[0]->param_errs,
                                  f->updated_inst_failures[0]->n_param_errs, "IPv4Enable"),
                        USP_ERR_PERMISSION_DENIED);
        CU_ASSERT_STRING_NOT_EQUAL(hfix_value("Device.IP.Interface.1.IPv4Enable"), "true");
        CU_ASSERT_EQUAL(hfix_count(USP_EV_VALUE_CHANGE), 0);
        hfix_teardown();
    }
}

static void test_set_search_success(void)
{
    hfix_setup(false);
    const char *s[] = {"!IPv4Enable=true"};
    Usp__SetResp *sr = set_resp(hfix_handle(hfix_set(false, "Device.IP.Interface.*.", s, 1)));
    Usp__SetResp__UpdatedObjectResult__OperationStatus__OperationSuccess *ok =
        success(sr->updated_obj_results[0]);
    CU_ASSERT_EQUAL_FATAL(ok->n_updated_inst_results, 2);
    CU_ASSERT_STRING_EQUAL(ok->updated_inst_results[0]->affected_path, "Device.IP.Interface.1.");
    CU_ASSERT_STRING_EQUAL(ok->updated_inst_results[1]->affected_path, "Device.IP.Interface.2.");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.2.IPv4Enable"), "true");
    CU_ASSERT_PTR_NOT_NULL(hfix_find(USP_EV_VALUE_CHANGE, "Device.IP.Interface.1.IPv4Enable"));
    CU_ASSERT_PTR_NOT_NULL(hfix_find(USP_EV_VALUE_CHANGE, "Device.IP.Interface.2.IPv4Enable"));

    /* R-MSG.4a: a search matching nothing is an empty success. */
    sr = set_resp(hfix_handle(hfix_set(false, "Device.IP.Interface.[Name==\"x\"].", s, 1)));
    CU_ASSERT_EQUAL(success(sr->updated_obj_results[0])->n_updated_inst_results, 0);
    hfix_teardown();
}

static void expect_path_failure(const char *path, uint32_t code)
{
    const char *s[] = {"!Enable=true"};
    Usp__SetResp *sr = set_resp(hfix_handle(hfix_set(true, path, s, 1)));
    CU_ASSERT_STRING_EQUAL(sr->updated_obj_results[0]->requested_path, path);
    CU_ASSERT_EQUAL(failure(sr->updated_obj_results[0])->err_code, code);
    Usp__Error *e = hfix_error(hfix_handle(hfix_set(false, path, s, 1)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, code);
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 1);
    CU_ASSERT_STRING_EQUAL(e->param_errs[0]->param_path, path);
}

static void test_set_path_errors_7016_7026_7008(void)
{
    hfix_setup(false);
    expect_path_failure("Device.IP.Interface.9.", USP_ERR_OBJECT_DOES_NOT_EXIST);
    expect_path_failure("Device.Nope.", USP_ERR_INVALID_PATH);
    expect_path_failure("Device.IP.Interface.", USP_ERR_INVALID_PATH);
    expect_path_failure("Device.DeviceInfo.FriendlyName", USP_ERR_INVALID_PATH);
    expect_path_failure("Device.IP..", USP_ERR_INVALID_PATH_SYNTAX);
    CU_ASSERT_EQUAL(H.nev, 0);
    hfix_teardown();
}

void suite_handle_set(void)
{
    USP_SUITE("handle_set", USP_TEST(test_set_success_and_value_change),
              USP_TEST(test_set_non_required_failures),
              USP_TEST(test_set_required_allow_partial_true),
              USP_TEST(test_set_required_allow_partial_false_7021),
              USP_TEST(test_set_search_holistic_rollback), USP_TEST(test_set_search_success),
              USP_TEST(test_set_path_errors_7016_7026_7008));
}
