/* Get on the agent: resolved paths per object, relative names, max_depth,
 * searches, per-path errors (7008, 7026) and read permissions. */
#include <string.h>

#include "test_handle.h"

static void setup(void)
{
    hfix_setup(false);
}

static Usp__GetResp *get_resp(Usp__Msg *m)
{
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_GET_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__GET_RESP);
    return r->get_resp;
}

/* The ResolvedPathResult for `path`, or NULL. */
static Usp__GetResp__ResolvedPathResult *resolved(Usp__GetResp__RequestedPathResult *r,
                                                  const char *path)
{
    for (size_t i = 0; i < r->n_resolved_path_results; i++)
        if (!strcmp(r->resolved_path_results[i]->resolved_path, path))
            return r->resolved_path_results[i];
    return NULL;
}

static const char *param(Usp__GetResp__ResolvedPathResult *rp, const char *name)
{
    return rp ? HFIX_MAP_GET(rp->result_params, rp->n_result_params, name) : NULL;
}

static void test_get_param_path(void)
{
    setup();
    Usp__GetResp *g = get_resp(hfix_handle(hfix_get1("Device.DeviceInfo.FriendlyName")));
    CU_ASSERT_EQUAL_FATAL(g->n_req_path_results, 1);
    Usp__GetResp__RequestedPathResult *r = g->req_path_results[0];
    CU_ASSERT_STRING_EQUAL(r->requested_path, "Device.DeviceInfo.FriendlyName");
    CU_ASSERT_EQUAL(r->err_code, 0);
    /* R-GET.2/R-GET.3: the parent object, with only that parameter. */
    CU_ASSERT_EQUAL_FATAL(r->n_resolved_path_results, 1);
    CU_ASSERT_STRING_EQUAL(r->resolved_path_results[0]->resolved_path, "Device.DeviceInfo.");
    CU_ASSERT_EQUAL(r->resolved_path_results[0]->n_result_params, 1);
    CU_ASSERT_STRING_EQUAL(param(r->resolved_path_results[0], "FriendlyName"), "gw-7");
    hfix_teardown();
}

static void test_get_object_subtree(void)
{
    setup();
    Usp__GetResp *g = get_resp(hfix_handle(hfix_get1("Device.IP.Interface.1.")));
    Usp__GetResp__RequestedPathResult *r = g->req_path_results[0];
    CU_ASSERT_EQUAL(r->err_code, 0);
    /* Every sub-object is its own resolved path (USP 1.2), with names
     * relative to it. */
    Usp__GetResp__ResolvedPathResult *row = resolved(r, "Device.IP.Interface.1.");
    Usp__GetResp__ResolvedPathResult *addr = resolved(r, "Device.IP.Interface.1.IPv4Address.1.");
    Usp__GetResp__ResolvedPathResult *stats = resolved(r, "Device.IP.Interface.1.Stats.");
    CU_ASSERT_FATAL(row && addr && stats);
    CU_ASSERT_STRING_EQUAL(param(row, "Name"), "eth1");
    CU_ASSERT_STRING_EQUAL(param(row, "Enable"), "true");
    CU_ASSERT_STRING_EQUAL(param(row, "Alias"), "cpe-1");
    CU_ASSERT_PTR_NULL(param(row, "IPv4Address.1.IPAddress"));
    CU_ASSERT_STRING_EQUAL(param(addr, "IPAddress"), "192.168.1.1");
    CU_ASSERT_PTR_NOT_NULL(param(stats, "BytesSent"));
    CU_ASSERT_PTR_NULL(resolved(r, "Device.IP.Interface.2."));
    for (size_t i = 0; i < r->n_resolved_path_results; i++) {
        Usp__GetResp__ResolvedPathResult *rp = r->resolved_path_results[i];
        CU_ASSERT(strncmp(rp->resolved_path, "Device.IP.Interface.1.", 22) == 0);
        for (size_t k = 0; k < rp->n_result_params; k++)
            CU_ASSERT_PTR_NULL(strchr(rp->result_params[k]->key, '.'));
    }
    hfix_teardown();
}

static void test_get_max_depth(void)
{
    setup();
    const char *path = "Device.IP.Interface.1.";
    Usp__GetResp__RequestedPathResult *r1 =
        get_resp(hfix_handle(hfix_get(&path, 1, 1)))->req_path_results[0];
    CU_ASSERT_EQUAL(r1->n_resolved_path_results, 1);
    CU_ASSERT_PTR_NOT_NULL(resolved(r1, "Device.IP.Interface.1."));
    Usp__GetResp__RequestedPathResult *r2 =
        get_resp(hfix_handle(hfix_get(&path, 1, 2)))->req_path_results[0];
    CU_ASSERT_PTR_NOT_NULL(resolved(r2, "Device.IP.Interface.1."));
    CU_ASSERT_PTR_NOT_NULL(resolved(r2, "Device.IP.Interface.1.IPv4Address.1."));
    CU_ASSERT_PTR_NOT_NULL(resolved(r2, "Device.IP.Interface.1.Stats."));
    Usp__GetResp__RequestedPathResult *r0 =
        get_resp(hfix_handle(hfix_get(&path, 1, 0)))->req_path_results[0];
    CU_ASSERT(r0->n_resolved_path_results >= r2->n_resolved_path_results);
    /* From Device.IP.: depth 2 reaches the rows, not what is below them. */
    const char *ip = "Device.IP.";
    Usp__GetResp__RequestedPathResult *rip =
        get_resp(hfix_handle(hfix_get(&ip, 1, 2)))->req_path_results[0];
    CU_ASSERT_PTR_NOT_NULL(resolved(rip, "Device.IP."));
    CU_ASSERT_PTR_NOT_NULL(resolved(rip, "Device.IP.Interface.2."));
    CU_ASSERT_PTR_NULL(resolved(rip, "Device.IP.Interface.2.Stats."));
    hfix_teardown();
}

static void test_get_wildcard_and_search(void)
{
    setup();
    Usp__GetResp__RequestedPathResult *r =
        get_resp(hfix_handle(hfix_get1("Device.IP.Interface.*.Enable")))->req_path_results[0];
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL_FATAL(r->n_resolved_path_results, 2);
    CU_ASSERT_STRING_EQUAL(r->resolved_path_results[0]->resolved_path, "Device.IP.Interface.1.");
    CU_ASSERT_STRING_EQUAL(param(r->resolved_path_results[0], "Enable"), "true");
    CU_ASSERT_STRING_EQUAL(r->resolved_path_results[1]->resolved_path, "Device.IP.Interface.2.");
    CU_ASSERT_STRING_EQUAL(param(r->resolved_path_results[1], "Enable"), "false");

    r = get_resp(hfix_handle(hfix_get1("Device.IP.Interface.[Enable==true].Name")))
            ->req_path_results[0];
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL_FATAL(r->n_resolved_path_results, 1);
    CU_ASSERT_STRING_EQUAL(r->resolved_path_results[0]->resolved_path, "Device.IP.Interface.1.");
    CU_ASSERT_STRING_EQUAL(param(r->resolved_path_results[0], "Name"), "eth1");

    /* R-GET.1a: a valid search with no match is an empty success. */
    r = get_resp(hfix_handle(hfix_get1("Device.IP.Interface.[Name==\"none\"].")))
            ->req_path_results[0];
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL(r->n_resolved_path_results, 0);

    /* A table path gives every row. */
    r = get_resp(hfix_handle(hfix_get1("Device.IP.Interface.")))->req_path_results[0];
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_PTR_NOT_NULL(resolved(r, "Device.IP.Interface.1."));
    CU_ASSERT_PTR_NOT_NULL(resolved(r, "Device.IP.Interface.2.IPv4Address.1."));
    hfix_teardown();
}

static void expect_path_error(const char *path, uint32_t code)
{
    Usp__GetResp *g = get_resp(hfix_handle(hfix_get1(path)));
    CU_ASSERT_EQUAL_FATAL(g->n_req_path_results, 1);
    CU_ASSERT_STRING_EQUAL(g->req_path_results[0]->requested_path, path);
    CU_ASSERT_EQUAL(g->req_path_results[0]->err_code, code);
    CU_ASSERT(g->req_path_results[0]->err_msg[0] != '\0');
    CU_ASSERT_EQUAL(g->req_path_results[0]->n_resolved_path_results, 0);
}

static void test_get_errors_7026_7008(void)
{
    setup();
    expect_path_error("Device.Nope.", USP_ERR_INVALID_PATH);
    expect_path_error("Device.DeviceInfo.Nope", USP_ERR_INVALID_PATH);
    /* R-GET.0: an instance that does not exist is 7026 too. */
    expect_path_error("Device.IP.Interface.9.", USP_ERR_INVALID_PATH);
    expect_path_error("Device.IP.Interface.*.Nope", USP_ERR_INVALID_PATH);
    expect_path_error("Device.Reboot()", USP_ERR_INVALID_PATH);
    expect_path_error("Device.IP.Interface.{i}.", USP_ERR_INVALID_PATH);
    /* An object named without its final '.' is not a parameter path. */
    expect_path_error("Device.DeviceInfo", USP_ERR_INVALID_PATH);
    expect_path_error("Device.IP.Interface.*.Stats", USP_ERR_INVALID_PATH);
    expect_path_error("Device..IP", USP_ERR_INVALID_PATH_SYNTAX);
    expect_path_error("Device.IP.Interface.[Enable>1].", USP_ERR_INVALID_PATH_SYNTAX);

    /* Paths are independent: one bad path does not spoil the others. */
    const char *paths[] = {"Device.Nope.", "Device.DeviceInfo.Manufacturer"};
    Usp__GetResp *g = get_resp(hfix_handle(hfix_get(paths, 2, 0)));
    CU_ASSERT_EQUAL_FATAL(g->n_req_path_results, 2);
    CU_ASSERT_EQUAL(g->req_path_results[0]->err_code, USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(g->req_path_results[1]->err_code, 0);
    CU_ASSERT_STRING_EQUAL(param(g->req_path_results[1]->resolved_path_results[0], "Manufacturer"),
                           "uspsim");
    hfix_teardown();
}

static void test_get_read_permission(void)
{
    setup();
    hfix_deny("Device.DeviceInfo.UpTime", USP_PERM_READ);
    hfix_deny("Device.IP.Interface.2.", USP_PERM_READ);
    /* R-GET.4: an unreadable parameter is left out of its object. */
    Usp__GetResp__RequestedPathResult *r =
        get_resp(hfix_handle(hfix_get1("Device.DeviceInfo.")))->req_path_results[0];
    Usp__GetResp__ResolvedPathResult *di = resolved(r, "Device.DeviceInfo.");
    CU_ASSERT_FATAL(di != NULL);
    CU_ASSERT_PTR_NULL(param(di, "UpTime"));
    CU_ASSERT_PTR_NOT_NULL(param(di, "Manufacturer"));
    /* R-GET.1: named explicitly, it is as if it were not supported. */
    expect_path_error("Device.DeviceInfo.UpTime", USP_ERR_INVALID_PATH);
    expect_path_error("Device.IP.Interface.2.", USP_ERR_INVALID_PATH);
    /* A search skips the unreadable row and what is below it. */
    r = get_resp(hfix_handle(hfix_get1("Device.IP.Interface.*.")))->req_path_results[0];
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_PTR_NOT_NULL(resolved(r, "Device.IP.Interface.1."));
    for (size_t i = 0; i < r->n_resolved_path_results; i++)
        CU_ASSERT(
            strncmp(r->resolved_path_results[i]->resolved_path, "Device.IP.Interface.2.", 22) != 0);
    hfix_teardown();
}

static void test_get_dynamic_and_events(void)
{
    setup();
    hfix_advance(90 * 1000);
    Usp__GetResp__RequestedPathResult *r =
        get_resp(hfix_handle(hfix_get1("Device.DeviceInfo.UpTime")))->req_path_results[0];
    CU_ASSERT_EQUAL_FATAL(r->n_resolved_path_results, 1);
    CU_ASSERT_PTR_NOT_NULL(param(r->resolved_path_results[0], "UpTime"));
    /* Reading changes nothing and announces nothing. */
    CU_ASSERT_EQUAL(H.nev, 0);
    hfix_teardown();
}

void suite_handle_get(void)
{
    USP_SUITE("handle_get", USP_TEST(test_get_param_path), USP_TEST(test_get_object_subtree),
              USP_TEST(test_get_max_depth), USP_TEST(test_get_wildcard_and_search),
              USP_TEST(test_get_errors_7026_7008), USP_TEST(test_get_read_permission),
              USP_TEST(test_get_dynamic_and_events));
}
