/* CoAP binding (legacy, USP 1.0-1.2): the pure helpers of
 * lib/mtp_coap_util.c (resource path, reply-to Uri-Query, Endpoint ID in a
 * coap(s) URL, version rule) and the configuration checks of
 * lib/mtp_coap.c, which run before anything touches the network. The
 * exchange itself is tested in tests/integration/test-coap-mtp.sh. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/mtp.h"
#include "usp/mtp_coap.h"

static void test_resource_path(void)
{
    char buf[128];
    size_t n = usp_mtp_coap_resource_path("os::012345-SIM000001", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "/e/os::012345-SIM000001");
    CU_ASSERT_EQUAL(n, strlen(buf));
    usp_mtp_coap_resource_path("proto::a/b c%d?e#f", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "/e/proto::a%2Fb%20c%25d%3Fe%23f");
    /* too small: the length needed and a terminated prefix */
    char small[6];
    n = usp_mtp_coap_resource_path("doc::x", small, sizeof small);
    CU_ASSERT_EQUAL(n, strlen("/e/doc::x"));
    CU_ASSERT_STRING_EQUAL(small, "/e/do");
    CU_ASSERT_EQUAL(usp_mtp_coap_resource_path("doc::x", NULL, 0), n);
}

/* Whatever the Endpoint ID, the path parses as a URL and gives it back. */
static void test_resource_path_round_trip(void)
{
    static const char *const eids[] = {"doc::agent%21", "proto::x&y=z", "os::a+b c",
                                       "self::#?/:@!$'()*,;~", "\xc3\xa9::x"};
    for (size_t i = 0; i < sizeof eids / sizeof eids[0]; i++) {
        char path[128], url[192], back[64];
        usp_mtp_coap_resource_path(eids[i], path, sizeof path);
        snprintf(url, sizeof url, "coap://127.0.0.1:5683%s", path);
        struct usp_mtp_url u;
        char why[160];
        CU_ASSERT_EQUAL_FATAL(usp_mtp_url_parse(url, &u, why, sizeof why), 0);
        CU_ASSERT_EQUAL(usp_mtp_coap_url_eid(&u, back, sizeof back), 0);
        CU_ASSERT_STRING_EQUAL(back, eids[i]);
    }
}

static void test_reply_to(void)
{
    char q[256], uri[256];
    const char *own = "coaps://[::1]:5684/e/os::012345-A%2Fb";
    size_t n = usp_mtp_coap_reply_to_build(own, q, sizeof q);
    CU_ASSERT_STRING_EQUAL(q, "reply-to=coaps%3A%2F%2F%5B%3A%3A1%5D%3A5684%2Fe%2Fos%3A%3A012345-"
                              "A%252Fb");
    CU_ASSERT_EQUAL(n, strlen(q));
    CU_ASSERT_EQUAL(usp_mtp_coap_reply_to_parse((const uint8_t *)q, n, uri, sizeof uri), 0);
    CU_ASSERT_STRING_EQUAL(uri, own);
    /* an old peer that sends it unencoded */
    const char *plain = "reply-to=coap://10.0.0.1:5683/e/proto::c";
    CU_ASSERT_EQUAL(
        usp_mtp_coap_reply_to_parse((const uint8_t *)plain, strlen(plain), uri, sizeof uri), 0);
    CU_ASSERT_STRING_EQUAL(uri, "coap://10.0.0.1:5683/e/proto::c");
    /* not a reply-to: another option, or a prefix of the name */
    CU_ASSERT_EQUAL(usp_mtp_coap_reply_to_parse((const uint8_t *)"x=1", 3, uri, sizeof uri),
                    USP_ENOENT);
    CU_ASSERT_EQUAL(usp_mtp_coap_reply_to_parse((const uint8_t *)"reply-to", 8, uri, sizeof uri),
                    USP_ENOENT);
    CU_ASSERT_EQUAL(
        usp_mtp_coap_reply_to_parse((const uint8_t *)"reply-tox=a", 11, uri, sizeof uri),
        USP_ENOENT);
    /* broken values: empty, bad escapes, %00, control characters */
    static const char *const bad[] = {"reply-to=",    "reply-to=a%",    "reply-to=a%4",
                                      "reply-to=%zz", "reply-to=a%00b", "reply-to=a\nb",
                                      "reply-to=%7F"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(uri, "junk");
        CU_ASSERT_EQUAL(
            usp_mtp_coap_reply_to_parse((const uint8_t *)bad[i], strlen(bad[i]), uri, sizeof uri),
            USP_EINVAL);
        CU_ASSERT_STRING_EQUAL(uri, "");
    }
    /* the value is not terminated: the length counts, not a NUL */
    const char raw[] = {'r', 'e', 'p', 'l', 'y', '-', 't', 'o', '=', 'a', 'b', 'c'};
    CU_ASSERT_EQUAL(usp_mtp_coap_reply_to_parse((const uint8_t *)raw, 10, uri, sizeof uri), 0);
    CU_ASSERT_STRING_EQUAL(uri, "a");
    /* too small */
    char tiny[4];
    CU_ASSERT_EQUAL(
        usp_mtp_coap_reply_to_parse((const uint8_t *)plain, strlen(plain), tiny, sizeof tiny),
        USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(tiny, "");
}

static int eid_of(const char *url, char *out, size_t n)
{
    struct usp_mtp_url u;
    if (usp_mtp_url_parse(url, &u, NULL, 0) != 0)
        return -100;
    return usp_mtp_coap_url_eid(&u, out, n);
}

static void test_url_eid(void)
{
    char eid[64];
    CU_ASSERT_EQUAL(eid_of("coap://127.0.0.1/e/os::012345-X", eid, sizeof eid), 0);
    CU_ASSERT_STRING_EQUAL(eid, "os::012345-X");
    CU_ASSERT_EQUAL(eid_of("coaps://[::1]:1/e/proto::a%2Fb", eid, sizeof eid), 0);
    CU_ASSERT_STRING_EQUAL(eid, "proto::a/b");
    static const char *const bad[] = {
        "coap://127.0.0.1",        "coap://127.0.0.1/",       "coap://127.0.0.1/e/",
        "coap://127.0.0.1/e",      "coap://127.0.0.1/x/a",    "coap://127.0.0.1/e/a/b",
        "coap://127.0.0.1/e/a%00", "coap://127.0.0.1/e/a%0A", "ws://127.0.0.1/e/a",
        "coap://127.0.0.1/E/a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(eid, "junk");
        CU_ASSERT_EQUAL(eid_of(bad[i], eid, sizeof eid), USP_EINVAL);
        CU_ASSERT_STRING_EQUAL(eid, "");
    }
    char tiny[4];
    CU_ASSERT_EQUAL(eid_of("coap://127.0.0.1/e/proto::long", tiny, sizeof tiny), USP_ERANGE);
}

static void test_version(void)
{
    char why[200];
    CU_ASSERT_EQUAL(usp_mtp_coap_version_check(NULL, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_mtp_coap_version_check("1.0", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_mtp_coap_version_check("1.2", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_mtp_coap_version_check("1.3", why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "obsoleted in USP 1.3"));
    CU_ASSERT_EQUAL(usp_mtp_coap_version_check("1.4", NULL, 0), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_mtp_coap_version_check("1.20", NULL, 0), USP_EINVAL);
}

/* ---- configuration checks of the binding (no network) ---- */

/* Through the binding's own table: registering it here would change what
 * other suites of the same runner see (test_mtp_url expects "coap" to have
 * no binding). The checks of lib/mtp.c (Endpoint ID, TLS files...) are
 * tested there. */
static int try_conn(struct usp_mtp_ctx *ctx, const char *url, const char *local,
                    const char *version, char *why, size_t n)
{
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.role = USP_MTP_AGENT;
    cfg.eid = "proto::agent";
    cfg.url = url;
    cfg.coap.local_url = local;
    cfg.usp_version = version;
    struct usp_mtp_url u;
    CU_ASSERT_EQUAL_FATAL(usp_mtp_url_parse(url, &u, NULL, 0), 0);
    struct usp_mtp_conn *c = NULL;
    why[0] = '\0';
    int rc = usp_mtp_coap_ops.conn_new(ctx, &cfg, &u, &c, why, n);
    if (rc == 0) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        c->ops = &usp_mtp_coap_ops;
        CU_ASSERT_STRING_EQUAL(usp_mtp_coap_ext_ops.peer_eid(c), "proto::ctrl");
        CU_ASSERT_PTR_NULL(usp_mtp_coap_ext_ops.peer_ids(c));
        CU_ASSERT_PTR_NULL(usp_mtp_local_dest(c)); /* not UP */
        usp_mtp_conn_free(c);
    } else {
        CU_ASSERT_PTR_NULL(c);
        CU_ASSERT_NOT_EQUAL(why[0], '\0');
    }
    return rc;
}

static int try_listen(struct usp_mtp_ctx *ctx, const char *url, const char *version, char *why,
                      size_t n)
{
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.role = USP_MTP_CONTROLLER;
    cfg.eid = "proto::ctrl";
    cfg.url = url;
    cfg.usp_version = version;
    struct usp_mtp_url u;
    CU_ASSERT_EQUAL_FATAL(usp_mtp_url_parse(url, &u, NULL, 0), 0);
    struct usp_mtp_listener *l = NULL;
    int rc = usp_mtp_coap_ext_ops.listen(ctx, &cfg, &u, &l, why, n);
    CU_ASSERT_PTR_NULL(l); /* only failures are tried here: nothing is bound */
    return rc;
}

static void test_config(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct usp_mtp_ctx *ctx = usp_mtp_ctx_new(&loop, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    char why[256];
    const char *peer = "coap://127.0.0.1:5683/e/proto::ctrl";
    const char *own = "coap://127.0.0.1:5690/e/proto::agent";
    CU_ASSERT_EQUAL(try_conn(ctx, peer, own, NULL, why, sizeof why), 0);
    CU_ASSERT_EQUAL(try_conn(ctx, peer, own, "1.1", why, sizeof why), 0);
    CU_ASSERT_EQUAL(try_conn(ctx, peer, "coap://127.0.0.1:5690", NULL, why, sizeof why), 0);
    CU_ASSERT_EQUAL(try_conn(ctx, peer, own, "1.3", why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "obsoleted"));
    CU_ASSERT_EQUAL(try_conn(ctx, peer, NULL, NULL, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "local_url"));
    CU_ASSERT_EQUAL(
        try_conn(ctx, peer, "coap://localhost:5690/e/proto::agent", NULL, why, sizeof why),
        USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "numeric"));
    CU_ASSERT_EQUAL(
        try_conn(ctx, peer, "coap://127.0.0.1:5690/e/proto::other", NULL, why, sizeof why),
        USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "/e/proto::agent"));
    CU_ASSERT_EQUAL(try_conn(ctx, "coap://127.0.0.1:5683/usp", own, NULL, why, sizeof why),
                    USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "/e/<peer Endpoint ID>"));
    CU_ASSERT_EQUAL(
        try_conn(ctx, "coap://ctrl.example:5683/e/proto::ctrl", own, NULL, why, sizeof why),
        USP_EPERM);
    CU_ASSERT_EQUAL(
        try_conn(ctx, "coap://127.0.0.1:5683/e/proto::ctrl?x=1", own, NULL, why, sizeof why),
        USP_EINVAL);
    CU_ASSERT_EQUAL(
        try_conn(ctx, "coaps://127.0.0.1:5684/e/proto::ctrl", own, NULL, why, sizeof why),
        USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "both be coap:// or both coaps://"));

    CU_ASSERT_EQUAL(try_listen(ctx, "coap://127.0.0.1:5683/e/proto::agent", NULL, why, sizeof why),
                    USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "/e/proto::ctrl"));
    CU_ASSERT_EQUAL(try_listen(ctx, "coap://127.0.0.1:5683/e/proto::ctrl", "1.4", why, sizeof why),
                    USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "1.3"));
    CU_ASSERT_EQUAL(try_listen(ctx, "coap://localhost:5683", NULL, why, sizeof why), USP_EINVAL);

    usp_mtp_ctx_free(ctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

void suite_mtp_coap(void)
{
    USP_SUITE("mtp_coap", USP_TEST(test_resource_path), USP_TEST(test_resource_path_round_trip),
              USP_TEST(test_reply_to), USP_TEST(test_url_eid), USP_TEST(test_version),
              USP_TEST(test_config));
}
