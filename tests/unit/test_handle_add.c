/* Add on the agent: new rows, agent-assigned unique keys, parameter errors,
 * required and unique-key failures with and without allow_partial, search
 * paths (R-ADD.2a), the path-level codes 7006/7008/7016/7017/7018/7019/7026
 * and the events. */
#include <string.h>

#include "test_handle.h"

typedef Usp__AddResp__CreatedObjectResult ObjRes;
typedef Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess OperSuccess;
typedef Usp__AddResp__CreatedObjectResult__OperationStatus__OperationFailure OperFailure;

static Usp__AddResp *add_resp(Usp__Msg *m)
{
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_ADD_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__ADD_RESP);
    return r->add_resp;
}

static OperSuccess *success(ObjRes *r)
{
    CU_ASSERT_FATAL(r->oper_status != NULL);
    CU_ASSERT_EQUAL_FATAL(
        r->oper_status->oper_status_case,
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS);
    return r->oper_status->oper_success;
}

static OperFailure *failure(ObjRes *r)
{
    CU_ASSERT_FATAL(r->oper_status != NULL);
    CU_ASSERT_EQUAL_FATAL(
        r->oper_status->oper_status_case,
        USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE);
    CU_ASSERT(r->oper_status->oper_failure->err_msg[0] != '\0');
    return r->oper_status->oper_failure;
}

static const char *key(OperSuccess *ok, const char *name)
{
    return HFIX_MAP_GET(ok->unique_keys, ok->n_unique_keys, name);
}

static uint32_t param_err(OperSuccess *ok, const char *param)
{
    for (size_t i = 0; i < ok->n_param_errs; i++)
        if (!strcmp(ok->param_errs[i]->param, param))
            return ok->param_errs[i]->err_code;
    return 0;
}

static void test_add_success_keys_events(void)
{
    hfix_setup(false);
    const char *s[] = {"!Enable=true", "IPv4Enable=true"};
    Usp__AddResp *ar = add_resp(hfix_handle(hfix_add(false, "Device.IP.Interface.", s, 2)));
    CU_ASSERT_EQUAL_FATAL(ar->n_created_obj_results, 1);
    CU_ASSERT_STRING_EQUAL(ar->created_obj_results[0]->requested_path, "Device.IP.Interface.");
    OperSuccess *ok = success(ar->created_obj_results[0]);
    CU_ASSERT_STRING_EQUAL(ok->instantiated_path, "Device.IP.Interface.3.");
    CU_ASSERT_EQUAL(ok->n_param_errs, 0);
    /* R-ADD.5: the agent fills the keys the controller left out. */
    CU_ASSERT_STRING_EQUAL(key(ok, "Alias"), "cpe-3");
    CU_ASSERT_STRING_EQUAL(key(ok, "Name"), "cpe-3");
    CU_ASSERT_EQUAL(ok->n_unique_keys, 2);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.3.Enable"), "true");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.3.IPv4Enable"), "true");
    const struct hfix_event *e = hfix_find(USP_EV_OBJ_CREATION, "Device.IP.Interface.3.");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Alias"), "cpe-3");
    CU_ASSERT_STRING_EQUAL(hfix_ev_kv(e, "Name"), "cpe-3");
    e = hfix_find(USP_EV_VALUE_CHANGE, "Device.IP.InterfaceNumberOfEntries");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->value, "3");
    CU_ASSERT_EQUAL(hfix_count(USP_EV_VALUE_CHANGE), 1);

    /* A controller-chosen Alias is kept; R-ADD.6: unreadable keys are not
     * returned. */
    hfix_deny("Device.IP.Interface.4.Name", USP_PERM_READ);
    const char *s2[] = {"Alias=wan"};
    ok = success(add_resp(hfix_handle(hfix_add(true, "Device.IP.Interface.", s2, 1)))
                     ->created_obj_results[0]);
    CU_ASSERT_STRING_EQUAL(ok->instantiated_path, "Device.IP.Interface.4.");
    CU_ASSERT_STRING_EQUAL(key(ok, "Alias"), "wan");
    CU_ASSERT_PTR_NULL(key(ok, "Name"));
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.4.Name"), "cpe-4");
    hfix_teardown();
}

static void test_add_param_errors(void)
{
    hfix_setup(false);
    hfix_deny("Device.IP.Interface.3.IPv4Enable", USP_PERM_WRITE);
    const char *s[] = {"Nope=1",          "Status=Up",    "Enable=maybe",
                       "IPv4Enable=true", "Stats.Nope=2", "IPv4Address.1.Enable=true"};
    OperSuccess *ok = success(add_resp(hfix_handle(hfix_add(false, "Device.IP.Interface.", s, 6)))
                                  ->created_obj_results[0]);
    CU_ASSERT_STRING_EQUAL(ok->instantiated_path, "Device.IP.Interface.3.");
    CU_ASSERT_EQUAL(param_err(ok, "Nope"), USP_ERR_UNSUPPORTED_PARAM);
    CU_ASSERT_EQUAL(param_err(ok, "Status"), USP_ERR_PARAM_READ_ONLY);
    CU_ASSERT_EQUAL(param_err(ok, "Enable"), USP_ERR_INVALID_TYPE);
    CU_ASSERT_EQUAL(param_err(ok, "IPv4Enable"), USP_ERR_PERMISSION_DENIED);
    CU_ASSERT_EQUAL(param_err(ok, "Stats.Nope"), USP_ERR_UNSUPPORTED_PARAM);
    CU_ASSERT_EQUAL(param_err(ok, "IPv4Address.1.Enable"), USP_ERR_UNSUPPORTED_PARAM);
    CU_ASSERT_EQUAL(ok->n_param_errs, 6);
    CU_ASSERT_TRUE(hfix_exists("Device.IP.Interface.3."));
    hfix_teardown();
}

static void test_add_required_failure(void)
{
    hfix_setup(false);
    const char *s[] = {"IPv4Enable=true", "!Enable=maybe"};
    /* allow_partial=true: this object fails, the row goes away again. */
    OperFailure *f = failure(add_resp(hfix_handle(hfix_add(true, "Device.IP.Interface.", s, 2)))
                                 ->created_obj_results[0]);
    CU_ASSERT_EQUAL(f->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
    CU_ASSERT_PTR_NOT_NULL(strstr(f->err_msg, "Enable"));
    CU_ASSERT_FALSE(hfix_exists("Device.IP.Interface.3."));
    CU_ASSERT_EQUAL(H.nev, 0);
    /* allow_partial=false: an Error naming the parameter. */
    Usp__Error *e = hfix_error(hfix_handle(hfix_add(false, "Device.IP.Interface.", s, 2)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 1);
    CU_ASSERT(strncmp(e->param_errs[0]->param_path, "Device.IP.Interface.", 20) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e->param_errs[0]->param_path, ".Enable"));
    CU_ASSERT_EQUAL(e->param_errs[0]->err_code, USP_ERR_INVALID_TYPE);
    CU_ASSERT_EQUAL(H.nev, 0);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.InterfaceNumberOfEntries"), "2");
    hfix_teardown();
}

static void test_add_unique_key_is_required_7025(void)
{
    hfix_setup(false);
    /* Not marked required, but a unique key: its failure fails the object. */
    const char *s[] = {"EndpointID=ctrl-1", "Enable=true"};
    OperFailure *f =
        failure(add_resp(hfix_handle(hfix_add(true, "Device.LocalAgent.Controller.", s, 2)))
                    ->created_obj_results[0]);
    CU_ASSERT_EQUAL(f->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
    Usp__Error *e = hfix_error(hfix_handle(hfix_add(false, "Device.LocalAgent.Controller.", s, 2)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_REQUIRED_PARAM_FAILED);
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 1);
    CU_ASSERT_EQUAL(e->param_errs[0]->err_code, USP_ERR_UNIQUE_KEY_CONFLICT);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.ControllerNumberOfEntries"), "2");
    /* A value out of range is 7012; not required, so only a param_err. */
    const char *s2[] = {"EndpointID=ctrl-3", "USPNotifRetryMinimumWaitInterval=0"};
    OperSuccess *ok =
        success(add_resp(hfix_handle(hfix_add(false, "Device.LocalAgent.Controller.", s2, 2)))
                    ->created_obj_results[0]);
    /* The two failed Adds used numbers 3 and 4: numbers are not reused. */
    CU_ASSERT_STRING_EQUAL(ok->instantiated_path, "Device.LocalAgent.Controller.5.");
    CU_ASSERT_EQUAL(param_err(ok, "USPNotifRetryMinimumWaitInterval"), USP_ERR_INVALID_VALUE);
    CU_ASSERT_STRING_EQUAL(key(ok, "EndpointID"), "ctrl-3");
    CU_ASSERT_STRING_EQUAL(key(ok, "Alias"), "cpe-5");
    hfix_teardown();
}

static void expect_failure(const char *path, uint32_t code)
{
    ObjRes *r = add_resp(hfix_handle(hfix_add(true, path, NULL, 0)))->created_obj_results[0];
    CU_ASSERT_STRING_EQUAL(r->requested_path, path);
    CU_ASSERT_EQUAL(failure(r)->err_code, code);
    Usp__Error *e = hfix_error(hfix_handle(hfix_add(false, path, NULL, 0)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, code);
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 1);
    CU_ASSERT_STRING_EQUAL(e->param_errs[0]->param_path, path);
    CU_ASSERT_EQUAL(e->param_errs[0]->err_code, code);
}

static void test_add_path_errors(void)
{
    hfix_setup(false);
    expect_failure("Device.DeviceInfo.", USP_ERR_NOT_A_TABLE);
    expect_failure("Device.IP.Interface.1.", USP_ERR_NOT_A_TABLE);
    expect_failure("Device.WiFi.Radio.", USP_ERR_OBJECT_NOT_CREATABLE);
    expect_failure("Device.Nope.", USP_ERR_INVALID_PATH);
    expect_failure("Device.IP.Interface.9.IPv4Address.", USP_ERR_OBJECT_DOES_NOT_EXIST);
    expect_failure("Device.IP.Interface.Enable", USP_ERR_INVALID_PATH);
    expect_failure("Device.IP.Interface..", USP_ERR_INVALID_PATH_SYNTAX);
    hfix_deny("Device.IP.Interface.", USP_PERM_ADD);
    expect_failure("Device.IP.Interface.", USP_ERR_PERMISSION_DENIED);
    CU_ASSERT_EQUAL(H.nev, 0);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.InterfaceNumberOfEntries"), "2");
    hfix_teardown();
}

static void test_add_max_entries_7017(void)
{
    hfix_setup(true); /* Device.Item.{i}. holds at most 2 rows */
    for (int i = 1; i <= 2; i++) {
        OperSuccess *ok = success(
            add_resp(hfix_handle(hfix_add(true, "Device.Item.", NULL, 0)))->created_obj_results[0]);
        CU_ASSERT_STRING_EQUAL(ok->instantiated_path, i == 1 ? "Device.Item.1." : "Device.Item.2.");
    }
    ObjRes *r =
        add_resp(hfix_handle(hfix_add(true, "Device.Item.", NULL, 0)))->created_obj_results[0];
    CU_ASSERT_EQUAL(failure(r)->err_code, USP_ERR_CREATION_FAILURE);
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OBJ_CREATION), 2);
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.ItemNumberOfEntries"), "2");
    hfix_teardown();
}

static void test_add_search_paths(void)
{
    hfix_setup(false);
    /* IPAddress is a unique key: unique per interface, not across them. */
    const char *s[] = {"IPAddress=10.0.0.1"};
    Usp__AddResp *ar =
        add_resp(hfix_handle(hfix_add(true, "Device.IP.Interface.*.IPv4Address.", s, 1)));
    CU_ASSERT_EQUAL_FATAL(ar->n_created_obj_results, 2);
    for (size_t i = 0; i < 2; i++)
        CU_ASSERT_STRING_EQUAL(ar->created_obj_results[i]->requested_path,
                               "Device.IP.Interface.*.IPv4Address.");
    CU_ASSERT_STRING_EQUAL(success(ar->created_obj_results[0])->instantiated_path,
                           "Device.IP.Interface.1.IPv4Address.2.");
    CU_ASSERT_STRING_EQUAL(success(ar->created_obj_results[1])->instantiated_path,
                           "Device.IP.Interface.2.IPv4Address.2.");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.2.IPv4Address.2.IPAddress"), "10.0.0.1");

    /* R-MSG.4a: matching no table is one empty success. */
    ar = add_resp(
        hfix_handle(hfix_add(false, "Device.IP.Interface.[Name==\"none\"].IPv4Address.", s, 1)));
    CU_ASSERT_EQUAL_FATAL(ar->n_created_obj_results, 1);
    CU_ASSERT_STRING_EQUAL(success(ar->created_obj_results[0])->instantiated_path, "");

    /* R-ADD.2a: allow_partial=false and one failure: nothing is created. */
    size_t nev = H.nev;
    hfix_deny("Device.IP.Interface.2.IPv4Address.", USP_PERM_ADD);
    Usp__Error *e =
        hfix_error(hfix_handle(hfix_add(false, "Device.IP.Interface.*.IPv4Address.", NULL, 0)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_PERMISSION_DENIED);
    CU_ASSERT_FALSE(hfix_exists("Device.IP.Interface.1.IPv4Address.3."));
    CU_ASSERT_EQUAL(H.nev, nev);
    /* allow_partial=true: one success, one failure. */
    ar = add_resp(hfix_handle(hfix_add(true, "Device.IP.Interface.*.IPv4Address.", NULL, 0)));
    CU_ASSERT_EQUAL_FATAL(ar->n_created_obj_results, 2);
    CU_ASSERT_PTR_NOT_NULL(success(ar->created_obj_results[0])->instantiated_path);
    CU_ASSERT_EQUAL(failure(ar->created_obj_results[1])->err_code, USP_ERR_PERMISSION_DENIED);
    hfix_teardown();
}

static void test_add_subscription_agent_values(void)
{
    hfix_setup(false);
    hfix_advance(5000);
    const char *s[] = {"Enable=true", "NotifType=ValueChange",
                       "ReferenceList=Device.DeviceInfo.FriendlyName"};
    OperSuccess *ok =
        success(add_resp(hfix_handle(hfix_add(false, "Device.LocalAgent.Subscription.", s, 3)))
                    ->created_obj_results[0]);
    CU_ASSERT_STRING_EQUAL(ok->instantiated_path, "Device.LocalAgent.Subscription.1.");
    /* Recipient is the requesting controller's row; ID and Alias are
     * assigned; CreationDate is the agent's clock. */
    CU_ASSERT_STRING_EQUAL(key(ok, "Recipient"), "Device.LocalAgent.Controller.1");
    CU_ASSERT_STRING_EQUAL(key(ok, "ID"), "cpe-1");
    CU_ASSERT_STRING_EQUAL(key(ok, "Alias"), "cpe-1");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.LocalAgent.Subscription.1.CreationDate"),
                           "2023-11-14T22:13:25Z");
    /* The same ID from the same controller clashes (7025, required). */
    const char *s2[] = {"ID=cpe-1"};
    Usp__Error *e =
        hfix_error(hfix_handle(hfix_add(false, "Device.LocalAgent.Subscription.", s2, 1)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->param_errs[0]->err_code, USP_ERR_UNIQUE_KEY_CONFLICT);
    /* ... but not from another controller. */
    ok = success(add_resp(hfix_handle_as("ctrl-2",
                                         hfix_add(false, "Device.LocalAgent.Subscription.", s2, 1)))
                     ->created_obj_results[0]);
    CU_ASSERT_STRING_EQUAL(key(ok, "Recipient"), "Device.LocalAgent.Controller.2");
    CU_ASSERT_STRING_EQUAL(key(ok, "ID"), "cpe-1");
    hfix_teardown();
}

void suite_handle_add(void)
{
    USP_SUITE("handle_add", USP_TEST(test_add_success_keys_events), USP_TEST(test_add_param_errors),
              USP_TEST(test_add_required_failure), USP_TEST(test_add_unique_key_is_required_7025),
              USP_TEST(test_add_path_errors), USP_TEST(test_add_max_entries_7017),
              USP_TEST(test_add_search_paths), USP_TEST(test_add_subscription_agent_values));
}
