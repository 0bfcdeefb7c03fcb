/* Operate on the agent: synchronous and asynchronous commands, the Request
 * table, OperationComplete on a virtual clock, Cancel(), the built-in
 * behaviours, profile outcomes, input arguments (7027), send_resp=false
 * and the path-level Errors. */
#include <string.h>

#include "test_handle.h"
#include "usp/dm.h"

typedef Usp__OperateResp__OperationResult OpRes;

static Usp__OperateResp *op_resp(Usp__Msg *m)
{
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_OPERATE_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__OPERATE_RESP);
    return r->operate_resp;
}

static OpRes *op1(const char *cmd, const char *key, const char *const *args, size_t n)
{
    Usp__OperateResp *r = op_resp(hfix_handle(hfix_operate(cmd, key, true, args, n)));
    CU_ASSERT_EQUAL_FATAL(r->n_operation_results, 1);
    return r->operation_results[0];
}

static uint32_t failed(const OpRes *r)
{
    if (r->operation_resp_case != USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE)
        return 0;
    CU_ASSERT(r->cmd_failure->err_msg[0] != '\0');
    return r->cmd_failure->err_code;
}

static Usp__OperateResp__OperationResult__OutputArgs *outputs(const OpRes *r)
{
    CU_ASSERT_EQUAL_FATAL(r->operation_resp_case,
                          USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OUTPUT_ARGS);
    return r->req_output_args;
}

static const char *req_path(const OpRes *r)
{
    CU_ASSERT_EQUAL_FATAL(r->operation_resp_case,
                          USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH);
    return r->req_obj_path;
}

static void test_operate_sync_and_profile_outcomes(void)
{
    hfix_setup(false);
    OpRes *r = op1("Device.LocalAgent.Controller.1.E2ESession.Reset()", "k", NULL, 0);
    CU_ASSERT_STRING_EQUAL(r->executed_command,
                           "Device.LocalAgent.Controller.1.E2ESession.Reset()");
    CU_ASSERT_EQUAL(outputs(r)->n_output_args, 0);
    /* The profile fails it on controller 2 (7022 with its message). */
    r = op1("Device.LocalAgent.Controller.2.E2ESession.Reset()", "k", NULL, 0);
    CU_ASSERT_EQUAL(failed(r), USP_ERR_COMMAND_FAILURE);
    CU_ASSERT_STRING_EQUAL(r->cmd_failure->err_msg, "no session to reset");
    /* A search: one OperationResult per object, failures included (R-OPR.1). */
    Usp__OperateResp * or
        = op_resp(hfix_handle(
            hfix_operate("Device.LocalAgent.Controller.*.E2ESession.Reset()", "k", true, NULL, 0)));
    CU_ASSERT_EQUAL_FATAL(or->n_operation_results, 2);
    CU_ASSERT_STRING_EQUAL(or->operation_results[0]->executed_command,
                           "Device.LocalAgent.Controller.1.E2ESession.Reset()");
    CU_ASSERT_EQUAL(failed(or->operation_results[0]), 0);
    CU_ASSERT_EQUAL(failed(or->operation_results[1]), USP_ERR_COMMAND_FAILURE);
    /* A code Operate may not carry (7017) becomes 7022. */
    r = op1("Device.MQTT.Client.1.ForceReconnect()", "", NULL, 0);
    CU_ASSERT_EQUAL(failed(r), USP_ERR_COMMAND_FAILURE);
    CU_ASSERT_STRING_EQUAL(r->cmd_failure->err_msg, "broker gone");
    /* Synchronous commands raise no OperationComplete. */
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OPER_COMPLETE), 0);
    hfix_teardown();
}

static void test_operate_reboot_factory_reset(void)
{
    hfix_setup(false);
    OpRes *r = op1("Device.Reboot()", "rb-1", NULL, 0);
    CU_ASSERT_EQUAL(outputs(r)->n_output_args, 0);
    const struct hfix_event *e = hfix_find(USP_EV_REBOOT, "Device.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->command_key, "rb-1");
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Cause"), "RemoteReboot");
    const char *args[] = {"Cause=LocalReboot", "Reason=maintenance"};
    op1("Device.Reboot()", "rb-2", args, 2);
    e = &H.ev[H.nev - 1];
    CU_ASSERT_EQUAL(e->kind, USP_EV_REBOOT);
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Cause"), "LocalReboot");
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Reason"), "maintenance");
    /* A value outside the argument's enumeration is 7027. */
    const char *bad[] = {"Cause=Sometimes"};
    CU_ASSERT_EQUAL(failed(op1("Device.Reboot()", "", bad, 1)), USP_ERR_INVALID_CMD_ARGS);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_REBOOT), 2);

    op1("Device.FactoryReset()", "fr", NULL, 0);
    e = hfix_find(USP_EV_FACTORY_RESET, "Device.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->command_key, "fr");
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Cause"), "RemoteFactoryReset");
    hfix_teardown();
}

static void test_operate_async_self_test(void)
{
    hfix_setup(false);
    OpRes *r = op1("Device.SelfTestDiagnostics()", "st", NULL, 0);
    CU_ASSERT_STRING_EQUAL(r->executed_command, "Device.SelfTestDiagnostics()");
    CU_ASSERT_STRING_EQUAL(req_path(r), "Device.LocalAgent.Request.1.");
    /* R-OPR.0: the Request row while it runs. */
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Request.1.Originator"), "ctrl-1");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Request.1.Command"),
                           "Device.SelfTestDiagnostics()");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Request.1.CommandKey"), "st");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Request.1.Status"), "Active");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Request.1.Alias"), "cpe-1");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "1");
    const struct hfix_event *e = hfix_find(USP_EV_OBJ_CREATION, "Device.LocalAgent.Request.1.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "CommandKey"), "st");
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Alias"), "cpe-1");

    /* The profile gives it 2 s. */
    hfix_advance(1999);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OPER_COMPLETE), 0);
    CU_ASSERT_TRUE(hfix_exists("Device.LocalAgent.Request.1."));
    hfix_advance(1);
    e = hfix_find(USP_EV_OPER_COMPLETE, "Device.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->name, "SelfTestDiagnostics()");
    CU_ASSERT_STRING_EQUAL(e->command_key, "st");
    CU_ASSERT_EQUAL(e->err_code, 0);
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Status"), "Complete");
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Results"), "all good on os::012345-SIM000007");
    CU_ASSERT_FALSE(hfix_exists("Device.LocalAgent.Request.1."));
    CU_ASSERT_PTR_NOT_NULL(hfix_find(USP_EV_OBJ_DELETION, "Device.LocalAgent.Request.1."));
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "0");
    /* The next request gets a new number. */
    CU_ASSERT_STRING_EQUAL(req_path(op1("Device.SelfTestDiagnostics()", "st2", NULL, 0)),
                           "Device.LocalAgent.Request.2.");
    hfix_teardown();
}

static void test_operate_schedule_timer_and_args_7027(void)
{
    hfix_setup(false);
    const char *args[] = {"DelaySeconds=3", "Unknown=ignored"};
    OpRes *r = op1("Device.ScheduleTimer()", "t", args, 2);
    CU_ASSERT_STRING_EQUAL(req_path(r), "Device.LocalAgent.Request.1.");
    hfix_advance(2999);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OPER_COMPLETE), 0);
    hfix_advance(1);
    const struct hfix_event *e = hfix_find(USP_EV_OPER_COMPLETE, "Device.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->name, "ScheduleTimer()");
    CU_ASSERT_EQUAL(e->nkv, 0);
    /* R-OPR.5: mandatory DelaySeconds missing, or not of its type. */
    const char *bad1[] = {"Other=1"};
    const char *bad2[] = {"DelaySeconds=soon"};
    const char *bad3[] = {"DelaySeconds=0"};
    CU_ASSERT_EQUAL(failed(op1("Device.ScheduleTimer()", "", bad1, 1)), USP_ERR_INVALID_CMD_ARGS);
    CU_ASSERT_EQUAL(failed(op1("Device.ScheduleTimer()", "", bad2, 1)), USP_ERR_INVALID_CMD_ARGS);
    CU_ASSERT_EQUAL(failed(op1("Device.ScheduleTimer()", "", bad3, 1)), USP_ERR_INVALID_CMD_ARGS);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "0");
    /* Mandatory arguments of an argument object count once it is given. */
    const char *du1[] = {"URL=http://x/app.tar"};
    const char *du2[] = {"URL=http://x/app.tar", "AutoRestart.Enable=true"};
    const char *du3[] = {"URL=http://x/app.tar", "ApplicationData.1.Capacity=3"};
    CU_ASSERT_EQUAL(failed(op1("Device.SoftwareModules.InstallDU()", "", du1, 1)), 0);
    CU_ASSERT_EQUAL(failed(op1("Device.SoftwareModules.InstallDU()", "", du2, 2)),
                    USP_ERR_INVALID_CMD_ARGS);
    CU_ASSERT_EQUAL(failed(op1("Device.SoftwareModules.InstallDU()", "", du3, 2)),
                    USP_ERR_INVALID_CMD_ARGS);
    CU_ASSERT_EQUAL(failed(op1("Device.SoftwareModules.InstallDU()", "", NULL, 0)),
                    USP_ERR_INVALID_CMD_ARGS);
    hfix_teardown();
}

static void test_operate_async_profile_failure(void)
{
    hfix_setup(false);
    const char *du[] = {"URL=http://x/app.tar"};
    OpRes *r = op1("Device.SoftwareModules.InstallDU()", "du", du, 1);
    CU_ASSERT_STRING_EQUAL(req_path(r), "Device.LocalAgent.Request.1.");
    hfix_advance(1000);
    const struct hfix_event *e = hfix_find(USP_EV_OPER_COMPLETE, "Device.SoftwareModules.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->name, "InstallDU()");
    /* 7001 is not a CommandFailure code: it becomes 7022. */
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_COMMAND_FAILURE);
    CU_ASSERT_STRING_EQUAL(e->err_msg, "simulated");
    CU_ASSERT_FALSE(hfix_exists("Device.LocalAgent.Request.1."));
    hfix_teardown();
}

static void test_operate_cancel_7023(void)
{
    hfix_setup(false);
    const char *args[] = {"DelaySeconds=10"};
    CU_ASSERT_STRING_EQUAL(req_path(op1("Device.ScheduleTimer()", "tk", args, 1)),
                           "Device.LocalAgent.Request.1.");
    hfix_advance(1000);
    OpRes *r = op1("Device.LocalAgent.Request.1.Cancel()", "", NULL, 0);
    CU_ASSERT_EQUAL(outputs(r)->n_output_args, 0);
    const struct hfix_event *e = hfix_find(USP_EV_OPER_COMPLETE, "Device.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->name, "ScheduleTimer()");
    CU_ASSERT_STRING_EQUAL(e->command_key, "tk");
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_COMMAND_CANCELLED);
    CU_ASSERT_FALSE(hfix_exists("Device.LocalAgent.Request.1."));
    CU_ASSERT_PTR_NOT_NULL(hfix_find(USP_EV_OBJ_DELETION, "Device.LocalAgent.Request.1."));
    /* The timer fires later and finds nothing to complete. */
    hfix_advance(20000);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OPER_COMPLETE), 1);
    /* Cancelling it again: the request is gone (7016, an Error). */
    Usp__Error *err = hfix_error(
        hfix_handle(hfix_operate("Device.LocalAgent.Request.1.Cancel()", "", true, NULL, 0)));
    CU_ASSERT_FATAL(err != NULL);
    CU_ASSERT_EQUAL(err->err_code, USP_ERR_OBJECT_DOES_NOT_EXIST);
    hfix_teardown();
}

static void test_operate_async_dropped_by_reboot(void)
{
    hfix_setup(false);
    const char *args[] = {"DelaySeconds=5"};
    CU_ASSERT_STRING_EQUAL(req_path(op1("Device.ScheduleTimer()", "a", args, 1)),
                           "Device.LocalAgent.Request.1.");
    hfix_advance(1000);
    usp_dm_agent_reboot(&H.agent, HFIX_T0 + 1);
    hfix_advance(10000);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OPER_COMPLETE), 0);
    /* Pending timers of an agent that goes away: teardown drops them. */
    CU_ASSERT_STRING_EQUAL(req_path(op1("Device.ScheduleTimer()", "b", args, 1)),
                           "Device.LocalAgent.Request.2.");
    hfix_teardown();
}

static void test_operate_duplicate_key_and_scheduler_failure_7002_7003_7005(void)
{
    hfix_setup(false);
    const char *args[] = {"DelaySeconds=5"};
    req_path(op1("Device.ScheduleTimer()", "same", args, 1));
    /* The same command with the same key still running: 7002. */
    CU_ASSERT_EQUAL(failed(op1("Device.ScheduleTimer()", "same", args, 1)), USP_ERR_REQUEST_DENIED);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "1");
    /* From another controller it is another request. */
    Usp__OperateResp * or = op_resp(hfix_handle_as("ctrl-2", hfix_operate("Device.ScheduleTimer()",
                                                                          "same", true, args, 1)));
    CU_ASSERT_EQUAL(failed(or->operation_results[0]), 0);
    size_t nev = H.nev;
    H.schedule_rc = USP_EIO;
    CU_ASSERT_EQUAL(failed(op1("Device.ScheduleTimer()", "other", args, 1)),
                    USP_ERR_INTERNAL_ERROR);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "2");
    CU_ASSERT_EQUAL(H.nev, nev);
    /* A scheduler out of room: resources exceeded. */
    H.schedule_rc = USP_ENOMEM;
    CU_ASSERT_EQUAL(failed(op1("Device.ScheduleTimer()", "other", args, 1)),
                    USP_ERR_RESOURCES_EXCEEDED);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.RequestNumberOfEntries"), "2");
    CU_ASSERT_EQUAL(H.nev, nev);
    hfix_teardown();
}

static void test_operate_onboard_request(void)
{
    hfix_setup(false);
    OpRes *r = op1("Device.LocalAgent.Controller.[EndpointID==\"ctrl-1\"].SendOnBoardRequest()",
                   "ob", NULL, 0);
    CU_ASSERT_STRING_EQUAL(r->executed_command,
                           "Device.LocalAgent.Controller.1.SendOnBoardRequest()");
    CU_ASSERT_EQUAL(outputs(r)->n_output_args, 0);
    const struct hfix_event *e =
        hfix_find(USP_EV_ONBOARD_REQUEST, "Device.LocalAgent.Controller.1.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->value, "ctrl-1");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Controller.1.OnBoardingComplete"),
                           "false");
    CU_ASSERT_PTR_NOT_NULL(
        hfix_find(USP_EV_VALUE_CHANGE, "Device.LocalAgent.Controller.1.OnBoardingComplete"));
    /* Controller 2 is disabled: R-NOT.5 does not apply, 7022. */
    r = op1("Device.LocalAgent.Controller.2.SendOnBoardRequest()", "", NULL, 0);
    CU_ASSERT_EQUAL(failed(r), USP_ERR_COMMAND_FAILURE);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_ONBOARD_REQUEST), 1);
    hfix_teardown();
}

static void test_operate_send_resp_false(void)
{
    hfix_setup(false);
    /* R-OPR.4: no answer... */
    CU_ASSERT_PTR_NULL(hfix_handle(hfix_operate("Device.Reboot()", "q", false, NULL, 0)));
    CU_ASSERT_EQUAL(hfix_count(USP_EV_REBOOT), 1);
    const char *args[] = {"DelaySeconds=1"};
    CU_ASSERT_PTR_NULL(hfix_handle(hfix_operate("Device.ScheduleTimer()", "q", false, args, 1)));
    CU_ASSERT_TRUE(hfix_exists("Device.LocalAgent.Request.1."));
    /* ... unless something failed: then just the failures. */
    Usp__OperateResp * or
        = op_resp(hfix_handle(
            hfix_operate("Device.LocalAgent.Controller.*.E2ESession.Reset()", "", false, NULL, 0)));
    CU_ASSERT_EQUAL_FATAL(or->n_operation_results, 1);
    CU_ASSERT_STRING_EQUAL(or->operation_results[0]->executed_command,
                           "Device.LocalAgent.Controller.2.E2ESession.Reset()");
    CU_ASSERT_EQUAL(failed(or->operation_results[0]), USP_ERR_COMMAND_FAILURE);
    /* Errors are still sent. */
    CU_ASSERT_PTR_NOT_NULL(
        hfix_error(hfix_handle(hfix_operate("Device.Nope()", "", false, NULL, 0))));
    hfix_teardown();
}

static void expect_error(const char *cmd, uint32_t code)
{
    Usp__Error *e = hfix_error(hfix_handle(hfix_operate(cmd, "", true, NULL, 0)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, code);
    CU_ASSERT(e->err_msg[0] != '\0');
}

static void test_operate_errors_and_permission(void)
{
    hfix_setup(false);
    expect_error("Device.Nope()", USP_ERR_INVALID_PATH);
    expect_error("Device.DeviceInfo.", USP_ERR_INVALID_PATH);
    expect_error("Device.DeviceInfo.Reboot()", USP_ERR_INVALID_PATH);
    expect_error("Device.LocalAgent.Controller.9.SendOnBoardRequest()",
                 USP_ERR_OBJECT_DOES_NOT_EXIST);
    expect_error("Device.Reboot(", USP_ERR_INVALID_PATH_SYNTAX);
    /* R-MSG.4a: a search matching nothing is an empty OperateResp. */
    Usp__OperateResp * or
        = op_resp(hfix_handle(
            hfix_operate("Device.LocalAgent.Controller.[EndpointID==\"zz\"].SendOnBoardRequest()",
                         "", true, NULL, 0)));
    CU_ASSERT_EQUAL(or->n_operation_results, 0);
    hfix_deny("Device.Reboot()", USP_PERM_OPERATE);
    CU_ASSERT_EQUAL(failed(op1("Device.Reboot()", "", NULL, 0)), USP_ERR_PERMISSION_DENIED);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_REBOOT), 0);
    hfix_teardown();
}

void suite_handle_operate(void)
{
    USP_SUITE("handle_operate", USP_TEST(test_operate_sync_and_profile_outcomes),
              USP_TEST(test_operate_reboot_factory_reset), USP_TEST(test_operate_async_self_test),
              USP_TEST(test_operate_schedule_timer_and_args_7027),
              USP_TEST(test_operate_async_profile_failure), USP_TEST(test_operate_cancel_7023),
              USP_TEST(test_operate_async_dropped_by_reboot),
              USP_TEST(test_operate_duplicate_key_and_scheduler_failure_7002_7003_7005),
              USP_TEST(test_operate_onboard_request), USP_TEST(test_operate_send_resp_false),
              USP_TEST(test_operate_errors_and_permission));
}
