/* GetInstances on the agent: tables, rows and searches, first_level_only,
 * unique keys, errors (7008, 7016, 7018, 7026) and permissions. */
#include <string.h>

#include "test_handle.h"

typedef Usp__GetInstancesResp__RequestedPathResult ReqRes;
typedef Usp__GetInstancesResp__CurrInstance CurrInst;

static ReqRes *gi(const char *path, bool first_level_only)
{
    Usp__GetInstances *g = usp_arena_zalloc(H.a, sizeof *g);
    usp__get_instances__init(g);
    g->n_obj_paths = 1;
    g->obj_paths = usp_arena_alloc(H.a, sizeof(char *));
    g->obj_paths[0] = usp_arena_strdup(H.a, path);
    g->first_level_only = first_level_only;
    Usp__Msg *m = hfix_handle(hfix_request(USP__REQUEST__REQ_TYPE_GET_INSTANCES, g));
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__GET_INSTANCES_RESP);
    CU_ASSERT_EQUAL_FATAL(r->get_instances_resp->n_req_path_results, 1);
    ReqRes *rr = r->get_instances_resp->req_path_results[0];
    CU_ASSERT_STRING_EQUAL(rr->requested_path, path);
    return rr;
}

static const char *key(CurrInst *ci, const char *name)
{
    return HFIX_MAP_GET(ci->unique_keys, ci->n_unique_keys, name);
}

static void test_gi_table_first_level(void)
{
    hfix_setup(false);
    ReqRes *r = gi("Device.IP.Interface.", true);
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL_FATAL(r->n_curr_insts, 2);
    CU_ASSERT_STRING_EQUAL(r->curr_insts[0]->instantiated_obj_path, "Device.IP.Interface.1.");
    CU_ASSERT_STRING_EQUAL(key(r->curr_insts[0], "Alias"), "cpe-1");
    CU_ASSERT_STRING_EQUAL(key(r->curr_insts[0], "Name"), "eth1");
    CU_ASSERT_EQUAL(r->curr_insts[0]->n_unique_keys, 2);
    CU_ASSERT_STRING_EQUAL(r->curr_insts[1]->instantiated_obj_path, "Device.IP.Interface.2.");
    CU_ASSERT_STRING_EQUAL(key(r->curr_insts[1], "Name"), "eth2");
    hfix_teardown();
}

static void test_gi_nested_and_searches(void)
{
    hfix_setup(false);
    ReqRes *r = gi("Device.IP.Interface.", false);
    CU_ASSERT_EQUAL_FATAL(r->n_curr_insts, 4);
    const char *want[] = {"Device.IP.Interface.1.", "Device.IP.Interface.1.IPv4Address.1.",
                          "Device.IP.Interface.2.", "Device.IP.Interface.2.IPv4Address.1."};
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_STRING_EQUAL(r->curr_insts[i]->instantiated_obj_path, want[i]);
    CU_ASSERT_STRING_EQUAL(key(r->curr_insts[1], "Alias"), "cpe-1");
    /* Rows named by a search or an instance number. */
    r = gi("Device.IP.Interface.[Enable==false].", true);
    CU_ASSERT_EQUAL_FATAL(r->n_curr_insts, 1);
    CU_ASSERT_STRING_EQUAL(r->curr_insts[0]->instantiated_obj_path, "Device.IP.Interface.2.");
    r = gi("Device.IP.Interface.1.", false);
    CU_ASSERT_EQUAL_FATAL(r->n_curr_insts, 2);
    CU_ASSERT_STRING_EQUAL(r->curr_insts[1]->instantiated_obj_path,
                           "Device.IP.Interface.1.IPv4Address.1.");
    r = gi("Device.IP.Interface.*.IPv4Address.", true);
    CU_ASSERT_EQUAL(r->n_curr_insts, 2);
    r = gi("Device.IP.Interface.[Name==\"none\"].", false);
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL(r->n_curr_insts, 0);
    /* An empty table is no error. */
    r = gi("Device.Users.User.", false);
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL(r->n_curr_insts, 0);
    hfix_teardown();
}

static void test_gi_errors(void)
{
    hfix_setup(false);
    const char *paths[] = {"Device.DeviceInfo.",           "Device.Nope.",
                           "Device.IP.Interface.9.",       "Device.IP..",
                           "Device.IP.Interface.1.Enable", "Device.IP.Interface.{i}."};
    const uint32_t codes[] = {USP_ERR_NOT_A_TABLE,           USP_ERR_INVALID_PATH,
                              USP_ERR_OBJECT_DOES_NOT_EXIST, USP_ERR_INVALID_PATH_SYNTAX,
                              USP_ERR_INVALID_PATH,          USP_ERR_INVALID_PATH};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        ReqRes *r = gi(paths[i], false);
        CU_ASSERT_EQUAL(r->err_code, codes[i]);
        CU_ASSERT(r->err_msg[0] != '\0');
        CU_ASSERT_EQUAL(r->n_curr_insts, 0);
    }
    hfix_teardown();
}

static void test_gi_permissions(void)
{
    hfix_setup(false);
    hfix_deny("Device.IP.Interface.2.", USP_PERM_READ);
    hfix_deny("Device.IP.Interface.1.Name", USP_PERM_READ);
    ReqRes *r = gi("Device.IP.Interface.", false);
    CU_ASSERT_EQUAL_FATAL(r->n_curr_insts, 2);
    CU_ASSERT_STRING_EQUAL(r->curr_insts[0]->instantiated_obj_path, "Device.IP.Interface.1.");
    CU_ASSERT_PTR_NULL(key(r->curr_insts[0], "Name"));
    CU_ASSERT_STRING_EQUAL(key(r->curr_insts[0], "Alias"), "cpe-1");
    CU_ASSERT_STRING_EQUAL(r->curr_insts[1]->instantiated_obj_path,
                           "Device.IP.Interface.1.IPv4Address.1.");
    /* R-GIN.0: a row matched through an unreadable parameter is absent. */
    hfix_deny("Device.IP.Interface.1.Enable", USP_PERM_READ);
    CU_ASSERT_EQUAL(gi("Device.IP.Interface.[Enable==true].", true)->n_curr_insts, 0);
    CU_ASSERT_EQUAL(gi("Device.IP.Interface.1.", true)->n_curr_insts, 1);
    hfix_teardown();
}

void suite_handle_instances(void)
{
    USP_SUITE("handle_instances", USP_TEST(test_gi_table_first_level),
              USP_TEST(test_gi_nested_and_searches), USP_TEST(test_gi_errors),
              USP_TEST(test_gi_permissions));
}
