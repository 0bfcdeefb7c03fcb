/* WebSocket binding helpers (lib/mtp_ws_util.c: the eid query parameter,
 * the subprotocol list, the deprecated bbf-usp-protocol extension) and
 * what lib/mtp.c adds for point-to-point bindings (extension registry,
 * listeners, usp_mtp_reject / usp_mtp_peer_eid / usp_mtp_conn_set_callbacks).
 * Nothing here needs libwebsockets: a fake binding named "ws" stands in for
 * the real one (see tests/integration/test-ws-mtp.sh for that). */
#include <stdlib.h>
#include <string.h>

#include "mtp_int.h"
#include "testutil.h"
#include "usp/mtp.h"

/* ---- the request-target and its eid [R-WS.10b/c] ---- */

/* What a server does with a query: split at '&', find "eid=", decode. */
static bool server_reads_eid(const char *target, char *out, size_t n)
{
    const char *q = strchr(target, '?');
    if (!q)
        return false;
    char *copy = strdup(q + 1);
    bool found = false;
    for (char *save = NULL, *p = strtok_r(copy, "&", &save); p; p = strtok_r(NULL, "&", &save))
        if (!found && strncmp(p, "eid=", 4) == 0)
            found = mtp__ws_pct_decode(p + 4, out, n) == 0;
    free(copy);
    return found;
}

static void test_target(void)
{
    char buf[256];
    size_t n = mtp__ws_target("", NULL, "doc::agent%21", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "/?eid=doc::agent%2521"); /* the specification's example */
    CU_ASSERT_EQUAL(n, strlen(buf));
    mtp__ws_target("/usp", "x=1", "proto::a b&c+d#e=f%", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "/usp?x=1&eid=proto::a%20b%26c%2Bd%23e%3Df%25");
    mtp__ws_target("/usp/agent", "", "os::00256D-0123", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "/usp/agent?eid=os::00256D-0123");
    mtp__ws_target(NULL, NULL, "\xc3\xa9", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "/?eid=%C3%A9");

    /* Too small: the length needed, a terminated prefix. */
    char small[8];
    memset(small, 'x', sizeof small);
    n = mtp__ws_target("/usp", NULL, "doc::agent", small, sizeof small);
    CU_ASSERT_EQUAL(n, strlen("/usp?eid=doc::agent"));
    CU_ASSERT_STRING_EQUAL(small, "/usp?ei");
    CU_ASSERT_EQUAL(mtp__ws_target("/usp", NULL, "doc::agent", NULL, 0), n);

    /* Whatever the Endpoint ID, a server reads it back unchanged. */
    static const char *const eids[] = {"doc::agent%21", "proto::x&y=z", "os::a+b c", "%%%",
                                       "self::#?/:@!$'()*,;~"};
    for (size_t i = 0; i < sizeof eids / sizeof eids[0]; i++) {
        char back[64];
        mtp__ws_target("/p", "k=v", eids[i], buf, sizeof buf);
        CU_ASSERT_TRUE(server_reads_eid(buf, back, sizeof back));
        CU_ASSERT_STRING_EQUAL(back, eids[i]);
        struct usp_mtp_url u;
        char url[300];
        snprintf(url, sizeof url, "ws://h%s", buf);
        CU_ASSERT_EQUAL(usp_mtp_url_parse(url, &u, NULL, 0), 0); /* a valid URL */
    }
}

static void test_query_has_eid(void)
{
    CU_ASSERT_TRUE(mtp__ws_query_has_eid("eid=x"));
    CU_ASSERT_TRUE(mtp__ws_query_has_eid("a=1&eid=x"));
    CU_ASSERT_TRUE(mtp__ws_query_has_eid("eid"));
    CU_ASSERT_TRUE(mtp__ws_query_has_eid("eid&a=1"));
    CU_ASSERT_FALSE(mtp__ws_query_has_eid("xeid=1"));
    CU_ASSERT_FALSE(mtp__ws_query_has_eid("a=eid=1"));
    CU_ASSERT_FALSE(mtp__ws_query_has_eid("eids=1"));
    CU_ASSERT_FALSE(mtp__ws_query_has_eid(""));
    CU_ASSERT_FALSE(mtp__ws_query_has_eid(NULL));
}

/* ---- Sec-WebSocket-Protocol [R-WS.9-12a] ---- */

static void test_protocol_listed(void)
{
    CU_ASSERT_TRUE(mtp__ws_protocol_listed("v1.usp", "v1.usp"));
    CU_ASSERT_TRUE(mtp__ws_protocol_listed("foo, v1.usp", "v1.usp"));
    CU_ASSERT_TRUE(mtp__ws_protocol_listed("foo,v1.usp ,bar", "v1.usp"));
    CU_ASSERT_TRUE(mtp__ws_protocol_listed(" \tv1.usp\t", "v1.usp"));
    CU_ASSERT_TRUE(mtp__ws_protocol_listed(",,v1.usp,,", "v1.usp"));
    CU_ASSERT_FALSE(mtp__ws_protocol_listed("v1.usp2", "v1.usp"));
    CU_ASSERT_FALSE(mtp__ws_protocol_listed("v1.us", "v1.usp"));
    CU_ASSERT_FALSE(mtp__ws_protocol_listed("V1.USP", "v1.usp")); /* tokens are exact */
    CU_ASSERT_FALSE(mtp__ws_protocol_listed("foo v1.usp", "v1.usp"));
    CU_ASSERT_FALSE(mtp__ws_protocol_listed("", "v1.usp"));
    CU_ASSERT_FALSE(mtp__ws_protocol_listed(NULL, "v1.usp"));
}

/* ---- the deprecated extension [R-WS.10a/11a] ---- */

static void test_ext_eid(void)
{
    char out[64];
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; eid=\"doc::a\"", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "doc::a");
    CU_ASSERT_EQUAL(
        mtp__ws_ext_eid("permessage-deflate; client_max_window_bits, bbf-usp-protocol;eid=tok", out,
                        sizeof out),
        0);
    CU_ASSERT_STRING_EQUAL(out, "tok");
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; x=1; flag; eid=\"y\"", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "y");
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; eid=\"a\\\"b\\\\c\"", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "a\"b\\c");
    /* A comma inside someone else's quoted value does not start an extension. */
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("x; a=\"q, bbf-usp-protocol; eid=z\", bbf-usp-protocol; "
                                    "eid=real",
                                    out, sizeof out),
                    0);
    CU_ASSERT_STRING_EQUAL(out, "real");
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol", out, sizeof out), USP_ENOENT);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("foo; eid=\"x\"", out, sizeof out), USP_ENOENT);
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("", out, sizeof out), USP_ENOENT);
    CU_ASSERT_EQUAL(mtp__ws_ext_eid(NULL, out, sizeof out), USP_ENOENT);
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; eid=\"open", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; eid=", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; ;", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol junk", out, sizeof out), USP_EINVAL);
    char tiny[4];
    CU_ASSERT_EQUAL(mtp__ws_ext_eid("bbf-usp-protocol; eid=\"doc::agent\"", tiny, sizeof tiny),
                    USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(tiny, ""); /* nothing half-read */

    /* What a server answers, and that it reads back. */
    char v[128];
    size_t n = mtp__ws_ext_value("doc::\"q\"\\", v, sizeof v);
    CU_ASSERT_STRING_EQUAL(v, "bbf-usp-protocol; eid=\"doc::\\\"q\\\"\\\\\"");
    CU_ASSERT_EQUAL(n, strlen(v));
    CU_ASSERT_EQUAL(mtp__ws_ext_eid(v, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "doc::\"q\"\\");
    CU_ASSERT_EQUAL(mtp__ws_ext_value("doc::a", NULL, 0),
                    strlen("bbf-usp-protocol; eid=\"doc::a\""));
}

static void test_pct_decode_and_eid_ok(void)
{
    char out[16];
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("/a%20b%2f", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "/a b/");
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("%zz", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("%2", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("a%", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("%00", out, sizeof out), USP_EINVAL);
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("0123456789abcdef", out, sizeof out), USP_ERANGE);
    CU_ASSERT_EQUAL(mtp__ws_pct_decode("x", out, 0), USP_ERANGE);

    char eid[MTP_WS_EID_MAX + 2];
    memset(eid, 'a', sizeof eid);
    eid[MTP_WS_EID_MAX] = '\0';
    CU_ASSERT_TRUE(mtp__ws_peer_eid_ok(eid));
    eid[MTP_WS_EID_MAX] = 'a';
    eid[MTP_WS_EID_MAX + 1] = '\0';
    CU_ASSERT_FALSE(mtp__ws_peer_eid_ok(eid)); /* too long */
    CU_ASSERT_TRUE(mtp__ws_peer_eid_ok("doc::agent%21"));
    CU_ASSERT_FALSE(mtp__ws_peer_eid_ok(""));
    CU_ASSERT_FALSE(mtp__ws_peer_eid_ok(NULL));
    CU_ASSERT_FALSE(mtp__ws_peer_eid_ok("doc::a\nb"));
    CU_ASSERT_FALSE(mtp__ws_peer_eid_ok("doc::a\x7f"));
}

/* ---- the interface for listeners, with a fake "ws" binding ---- */

static int fake_calls;
static struct usp_mtp_listener fake_listener;

struct fake_conn {
    struct usp_mtp_conn base;
    const char *peer;
};

static int fake_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                         const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                         size_t whylen)
{
    struct fake_conn *c = calloc(1, sizeof *c);
    if (!c)
        return USP_ENOMEM;
    c->peer = "proto::peer";
    *out = &c->base;
    return 0;
}

static int fake_open(struct usp_mtp_conn *c)
{
    c->state = USP_MTP_UP;
    return 0;
}

static int fake_send(struct usp_mtp_conn *c, const struct usp_mtp_dest *to, const uint8_t *rec,
                     size_t len)
{
    return 0;
}

static int fake_close(struct usp_mtp_conn *c, uint32_t code, const char *reason)
{
    return 0;
}

static void fake_free(struct usp_mtp_conn *c)
{
    free(c);
}

static int fake_listen(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                       const struct usp_mtp_url *url, struct usp_mtp_listener **out, char *why,
                       size_t whylen)
{
    fake_calls++;
    CU_ASSERT_STRING_EQUAL(url->host, "127.0.0.1");
    CU_ASSERT_EQUAL(url->port, 8080);
    memset(&fake_listener, 0, sizeof fake_listener);
    fake_listener.port = url->port;
    *out = &fake_listener;
    return 0;
}

static void fake_listener_close(struct usp_mtp_listener *l)
{
    fake_calls += 100;
}

static int fake_reject(struct usp_mtp_conn *c, const char *reason)
{
    fake_calls += 10;
    return strcmp(reason, "bad") == 0 ? 0 : USP_EINVAL;
}

static const char *fake_peer_eid(const struct usp_mtp_conn *c)
{
    return ((const struct fake_conn *)c)->peer;
}

static const struct usp_mtp_ops fake_ws_ops = {
    .name = "ws",
    .conn_new = fake_conn_new,
    .open = fake_open,
    .send = fake_send,
    .close = fake_close,
    .free = fake_free,
};

static const struct usp_mtp_ext_ops fake_ws_ext = {
    .base = &fake_ws_ops,
    .listen = fake_listen,
    .listener_close = fake_listener_close,
    .reject = fake_reject,
    .peer_eid = fake_peer_eid,
};

/* A binding without extensions. */
static const struct usp_mtp_ops plain_ops = {
    .name = "plain",
    .conn_new = fake_conn_new,
    .open = fake_open,
    .send = fake_send,
    .close = fake_close,
    .free = fake_free,
};

static void on_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                      const struct usp_mtp_peer *peer, void *user)
{
}

static void test_listen_interface(void)
{
    uv_loop_t loop;
    CU_ASSERT_EQUAL_FATAL(uv_loop_init(&loop), 0);
    struct usp_mtp_ctx *ctx = usp_mtp_ctx_new(&loop, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);

    CU_ASSERT_EQUAL(usp_mtp_register_ext(NULL), USP_EINVAL);
    struct usp_mtp_ext_ops broken = fake_ws_ext;
    broken.listener_close = NULL; /* listen without close */
    CU_ASSERT_EQUAL(usp_mtp_register_ext(&broken), USP_EINVAL);
    broken = fake_ws_ext;
    broken.base = NULL;
    CU_ASSERT_EQUAL(usp_mtp_register_ext(&broken), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_mtp_register_ext(&fake_ws_ext), 0);
    CU_ASSERT_EQUAL(usp_mtp_register_ext(&fake_ws_ext), 0); /* again: fine */
    CU_ASSERT_PTR_EQUAL(usp_mtp_find("ws"), &fake_ws_ops);  /* the base is registered too */
    struct usp_mtp_ext_ops twin = fake_ws_ext;
    CU_ASSERT_EQUAL(usp_mtp_register_ext(&twin), USP_EEXIST);
    CU_ASSERT_EQUAL(usp_mtp_register(&plain_ops), 0);

    static const struct usp_mtp_listener_callbacks lcb = {.accept = on_accept};
    static const struct usp_mtp_listener_callbacks no_accept = {0};
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.role = USP_MTP_AGENT;
    cfg.eid = "proto::agent";
    cfg.url = "ws://127.0.0.1:8080/usp";
    struct usp_mtp_listener *l = (struct usp_mtp_listener *)&cfg; /* must be cleared */
    char why[200];
    int user;

    CU_ASSERT_EQUAL(usp_mtp_listen(ctx, &cfg, &no_accept, NULL, &l, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "accept"));
    CU_ASSERT_EQUAL(usp_mtp_listen(ctx, &cfg, NULL, NULL, &l, why, sizeof why), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_mtp_listen(NULL, &cfg, &lcb, NULL, &l, why, sizeof why), USP_EINVAL);
    cfg.url = "ws://127.0.0.1:8080/usp#frag";
    CU_ASSERT_EQUAL(usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "bad URL"));
    cfg.url = "mqtt://127.0.0.1:1883"; /* no binding that listens */
    CU_ASSERT_EQUAL(usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why), USP_ENOENT);
    cfg.url = "ws://127.0.0.1:8080/usp";
    cfg.eid = NULL; /* the common configuration checks apply */
    CU_ASSERT_EQUAL(usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "Endpoint ID"));
    cfg.eid = "proto::agent";
    CU_ASSERT_EQUAL(fake_calls, 0);

    CU_ASSERT_EQUAL_FATAL(usp_mtp_listen(ctx, &cfg, &lcb, &user, &l, why, sizeof why), 0);
    CU_ASSERT_EQUAL(fake_calls, 1);
    CU_ASSERT_PTR_EQUAL(l, &fake_listener);
    CU_ASSERT_PTR_EQUAL(l->ops, &fake_ws_ext);
    CU_ASSERT_PTR_EQUAL(l->ctx, ctx);
    CU_ASSERT_PTR_EQUAL(l->cb, &lcb);
    CU_ASSERT_PTR_EQUAL(l->user, &user);
    CU_ASSERT_EQUAL(usp_mtp_listener_port(l), 8080);
    usp_mtp_listener_close(l);
    CU_ASSERT_EQUAL(fake_calls, 101);
    usp_mtp_listener_close(NULL); /* a no-op */

    /* Connection extras: through the extension, or a default without one. */
    static const struct usp_mtp_callbacks cbs = {0};
    struct usp_mtp_conn *c = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_mtp_conn_new(ctx, &cfg, NULL, NULL, &c, why, sizeof why), 0);
    usp_mtp_conn_set_callbacks(c, &cbs, &user);
    CU_ASSERT_PTR_EQUAL(c->cb, &cbs);
    CU_ASSERT_PTR_EQUAL(c->user, &user);
    CU_ASSERT_STRING_EQUAL(usp_mtp_peer_eid(c), "proto::peer");
    CU_ASSERT_EQUAL(usp_mtp_reject(c, "bad"), 0);
    CU_ASSERT_EQUAL(fake_calls, 111);
    usp_mtp_conn_free(c);

    /* "plain" serves no URL scheme: make its connection by hand. */
    struct usp_mtp_url u;
    CU_ASSERT_EQUAL(usp_mtp_url_parse("ws://h", &u, NULL, 0), 0);
    CU_ASSERT_EQUAL_FATAL(plain_ops.conn_new(ctx, &cfg, &u, &c, why, sizeof why), 0);
    c->ops = &plain_ops;
    c->state = USP_MTP_IDLE;
    CU_ASSERT_PTR_NULL(usp_mtp_peer_eid(c));
    CU_ASSERT_EQUAL(usp_mtp_reject(c, NULL), USP_EPERM); /* not UP */
    c->state = USP_MTP_UP;
    CU_ASSERT_EQUAL(usp_mtp_reject(c, NULL), 0); /* no rule: nothing to do */
    CU_ASSERT_EQUAL(fake_calls, 111);
    usp_mtp_conn_free(c);

    usp_mtp_ctx_free(ctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

void suite_mtp_ws(void)
{
    USP_SUITE("mtp_ws", USP_TEST(test_target), USP_TEST(test_query_has_eid),
              USP_TEST(test_protocol_listed), USP_TEST(test_ext_eid),
              USP_TEST(test_pct_decode_and_eid_ok), USP_TEST(test_listen_interface));
}
