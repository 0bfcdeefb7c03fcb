/* Delete on the agent: instance and search paths, empty matches (R-DEL.2a),
 * row-level failures (7006, 7024), path-level ones (7004, 7008, 7018,
 * 7026), the holistic Error of allow_partial=false (R-DEL.1) and the
 * ObjectDeletion events for nested rows. */
#include <string.h>

#include "test_handle.h"

typedef Usp__DeleteResp__DeletedObjectResult ObjRes;
typedef Usp__DeleteResp__DeletedObjectResult__OperationStatus__OperationSuccess OperSuccess;

static Usp__DeleteResp *del_resp(Usp__Msg *m)
{
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_DELETE_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__DELETE_RESP);
    return r->delete_resp;
}

static OperSuccess *success(ObjRes *r)
{
    CU_ASSERT_FATAL(r->oper_status != NULL);
    CU_ASSERT_EQUAL_FATAL(
        r->oper_status->oper_status_case,
        USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS);
    return r->oper_status->oper_success;
}

static uint32_t failure_code(ObjRes *r)
{
    CU_ASSERT_FATAL(r->oper_status != NULL);
    CU_ASSERT_EQUAL_FATAL(
        r->oper_status->oper_status_case,
        USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE);
    CU_ASSERT(r->oper_status->oper_failure->err_msg[0] != '\0');
    return r->oper_status->oper_failure->err_code;
}

static OperSuccess *delete1(bool allow_partial, const char *path)
{
    Usp__DeleteResp *dr = del_resp(hfix_handle(hfix_delete(allow_partial, &path, 1)));
    CU_ASSERT_EQUAL_FATAL(dr->n_deleted_obj_results, 1);
    CU_ASSERT_STRING_EQUAL(dr->deleted_obj_results[0]->requested_path, path);
    return success(dr->deleted_obj_results[0]);
}

static void test_delete_row_and_events(void)
{
    hfix_setup(false);
    OperSuccess *ok = delete1(false, "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL_FATAL(ok->n_affected_paths, 1);
    CU_ASSERT_STRING_EQUAL(ok->affected_paths[0], "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL(ok->n_unaffected_path_errs, 0);
    CU_ASSERT_FALSE(hfix_exists("Device.IP.Interface.1."));
    CU_ASSERT_FALSE(hfix_exists("Device.IP.Interface.1.IPv4Address.1."));
    CU_ASSERT_TRUE(hfix_exists("Device.IP.Interface.2."));
    /* ObjectDeletion for the row and for the row below it. */
    CU_ASSERT_PTR_NOT_NULL(hfix_find(USP_EV_OBJ_DELETION, "Device.IP.Interface.1."));
    CU_ASSERT_PTR_NOT_NULL(hfix_find(USP_EV_OBJ_DELETION, "Device.IP.Interface.1.IPv4Address.1."));
    CU_ASSERT_EQUAL(hfix_count(USP_EV_OBJ_DELETION), 2);
    const struct hfix_event *e =
        hfix_find(USP_EV_VALUE_CHANGE, "Device.IP.InterfaceNumberOfEntries");
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_STRING_EQUAL(e->value, "1");
    /* Again: the row is gone, which is an empty success (R-DEL.2a). */
    ok = delete1(false, "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL(ok->n_affected_paths, 0);
    CU_ASSERT_EQUAL(ok->n_unaffected_path_errs, 0);
    hfix_teardown();
}

static void test_delete_search(void)
{
    hfix_setup(false);
    OperSuccess *ok = delete1(false, "Device.IP.Interface.[Name==\"none\"].");
    CU_ASSERT_EQUAL(ok->n_affected_paths, 0);
    ok = delete1(true, "Device.IP.Interface.*.IPv4Address.*.");
    CU_ASSERT_EQUAL_FATAL(ok->n_affected_paths, 2);
    CU_ASSERT_STRING_EQUAL(ok->affected_paths[0], "Device.IP.Interface.1.IPv4Address.1.");
    CU_ASSERT_STRING_EQUAL(ok->affected_paths[1], "Device.IP.Interface.2.IPv4Address.1.");
    CU_ASSERT_STRING_EQUAL(hfix_value("Device.IP.Interface.1.IPv4AddressNumberOfEntries"), "0");
    ok = delete1(true, "Device.IP.Interface.[Enable==false].");
    CU_ASSERT_EQUAL_FATAL(ok->n_affected_paths, 1);
    CU_ASSERT_STRING_EQUAL(ok->affected_paths[0], "Device.IP.Interface.2.");
    hfix_teardown();
}

static void test_delete_row_failures_7006_7024(void)
{
    hfix_setup(false);
    /* A read-only table's rows cannot be deleted (7024). */
    OperSuccess *ok = delete1(true, "Device.WiFi.Radio.1.");
    CU_ASSERT_EQUAL(ok->n_affected_paths, 0);
    CU_ASSERT_EQUAL_FATAL(ok->n_unaffected_path_errs, 1);
    CU_ASSERT_STRING_EQUAL(ok->unaffected_path_errs[0]->unaffected_path, "Device.WiFi.Radio.1.");
    CU_ASSERT_EQUAL(ok->unaffected_path_errs[0]->err_code, USP_ERR_OBJECT_NOT_DELETABLE);
    CU_ASSERT_TRUE(hfix_exists("Device.WiFi.Radio.1."));
    /* No Delete permission on one row of a search (7006). */
    hfix_deny("Device.IP.Interface.2.", USP_PERM_DELETE);
    ok = delete1(true, "Device.IP.Interface.*.");
    CU_ASSERT_EQUAL_FATAL(ok->n_affected_paths, 1);
    CU_ASSERT_STRING_EQUAL(ok->affected_paths[0], "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL_FATAL(ok->n_unaffected_path_errs, 1);
    CU_ASSERT_STRING_EQUAL(ok->unaffected_path_errs[0]->unaffected_path, "Device.IP.Interface.2.");
    CU_ASSERT_EQUAL(ok->unaffected_path_errs[0]->err_code, USP_ERR_PERMISSION_DENIED);
    CU_ASSERT_TRUE(hfix_exists("Device.IP.Interface.2."));
    hfix_teardown();

    /* R-DEL.4: a row the controller cannot read is not reported. */
    hfix_setup(false);
    hfix_deny("Device.IP.Interface.2.", USP_PERM_DELETE | USP_PERM_READ);
    ok = delete1(true, "Device.IP.Interface.*.");
    CU_ASSERT_EQUAL(ok->n_affected_paths, 1);
    CU_ASSERT_EQUAL(ok->n_unaffected_path_errs, 0);
    hfix_teardown();
}

static void test_delete_path_failures(void)
{
    hfix_setup(false);
    const char *paths[] = {"Device.DeviceInfo.", "Device.IP.Interface.", "Device.Nope.",
                           "Device.IP..", "Device.IP.Interface.1.Enable"};
    const uint32_t codes[] = {USP_ERR_NOT_A_TABLE, USP_ERR_INVALID_ARGUMENTS, USP_ERR_INVALID_PATH,
                              USP_ERR_INVALID_PATH_SYNTAX, USP_ERR_INVALID_PATH};
    Usp__DeleteResp *dr = del_resp(hfix_handle(hfix_delete(true, paths, 5)));
    CU_ASSERT_EQUAL_FATAL(dr->n_deleted_obj_results, 5);
    for (size_t i = 0; i < 5; i++) {
        CU_ASSERT_STRING_EQUAL(dr->deleted_obj_results[i]->requested_path, paths[i]);
        CU_ASSERT_EQUAL(failure_code(dr->deleted_obj_results[i]), codes[i]);
    }
    CU_ASSERT_EQUAL(H.nev, 0);
    hfix_teardown();
}

static void test_delete_allow_partial_false_error(void)
{
    hfix_setup(false);
    const char *paths[] = {"Device.IP.Interface.1.", "Device.WiFi.Radio.1.", "Device.Nope."};
    Usp__Error *e = hfix_error(hfix_handle(hfix_delete(false, paths, 3)));
    CU_ASSERT_FATAL(e != NULL);
    CU_ASSERT_EQUAL(e->err_code, USP_ERR_OBJECT_NOT_DELETABLE);
    CU_ASSERT_EQUAL_FATAL(e->n_param_errs, 2);
    CU_ASSERT_STRING_EQUAL(e->param_errs[0]->param_path, "Device.WiFi.Radio.1.");
    CU_ASSERT_EQUAL(e->param_errs[0]->err_code, USP_ERR_OBJECT_NOT_DELETABLE);
    CU_ASSERT_STRING_EQUAL(e->param_errs[1]->param_path, "Device.Nope.");
    CU_ASSERT_EQUAL(e->param_errs[1]->err_code, USP_ERR_INVALID_PATH);
    /* R-DEL.1: nothing was deleted. */
    CU_ASSERT_TRUE(hfix_exists("Device.IP.Interface.1."));
    CU_ASSERT_EQUAL(H.nev, 0);
    hfix_teardown();
}

void suite_handle_delete(void)
{
    USP_SUITE("handle_delete", USP_TEST(test_delete_row_and_events), USP_TEST(test_delete_search),
              USP_TEST(test_delete_row_failures_7006_7024), USP_TEST(test_delete_path_failures),
              USP_TEST(test_delete_allow_partial_false_error));
}
