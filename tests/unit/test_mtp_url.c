/* MTP interface: URL parsing and formatting for every binding, the MQTT
 * 3.1.1 reply-to topic convention, ConnectRetry back-off, configuration
 * checks, the binding registry and wrappers, and the context's timer wheel
 * and connect slots. Nothing here needs a broker (see
 * tests/integration/test-mqtt-mtp.sh for the MQTT binding itself). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "mtp_int.h"
#include "testutil.h"
#include "usp/mtp.h"

/* ---- good URLs ---- */

struct good {
    const char *url;
    const char *scheme, *binding;
    bool tls;
    enum usp_mtp_host_kind kind;
    const char *host;
    unsigned port;
    bool port_given;
    const char *user, *password; /* NULL: not given */
    const char *path, *query;    /* query NULL: none */
};

static const struct good goods[] = {
    {"mqtt://127.0.0.1:1883", "mqtt", "mqtt", false, USP_MTP_HOST_IPV4, "127.0.0.1", 1883, true,
     NULL, NULL, "", NULL},
    {"MQTT://Broker.Example.com", "mqtt", "mqtt", false, USP_MTP_HOST_NAME, "Broker.Example.com",
     1883, false, NULL, NULL, "", NULL},
    {"mqtts://[::1]:8884/usp/x", "mqtts", "mqtt", true, USP_MTP_HOST_IPV6, "::1", 8884, true, NULL,
     NULL, "/usp/x", NULL},
    {"mqtts://[2001:db8::1]", "mqtts", "mqtt", true, USP_MTP_HOST_IPV6, "2001:db8::1", 8883, false,
     NULL, NULL, "", NULL},
    {"mqtt://user:p%40ss:w%2F@host", "mqtt", "mqtt", false, USP_MTP_HOST_NAME, "host", 1883, false,
     "user", "p@ss:w/", "", NULL},
    {"mqtt://only-user@10.0.0.1/", "mqtt", "mqtt", false, USP_MTP_HOST_IPV4, "10.0.0.1", 1883,
     false, "only-user", NULL, "/", NULL},
    {"mqtt://:@h", "mqtt", "mqtt", false, USP_MTP_HOST_NAME, "h", 1883, false, "", "", "", NULL},
    {"stomp://broker:61000", "stomp", "stomp", false, USP_MTP_HOST_NAME, "broker", 61000, true,
     NULL, NULL, "", NULL},
    {"STOMPS://broker", "stomps", "stomp", true, USP_MTP_HOST_NAME, "broker", 61614, false, NULL,
     NULL, "", NULL},
    {"ws://agent.local/usp?eid=proto%3A%3Aa&x=1", "ws", "ws", false, USP_MTP_HOST_NAME,
     "agent.local", 80, false, NULL, NULL, "/usp", "eid=proto%3A%3Aa&x=1"},
    {"wss://1.2.3.4?", "wss", "ws", true, USP_MTP_HOST_IPV4, "1.2.3.4", 443, false, NULL, NULL, "",
     ""},
    {"unix:/run/usp/broker.sock", "unix", "uds", false, USP_MTP_HOST_NONE, "", 0, false, NULL, NULL,
     "/run/usp/broker.sock", NULL},
    {"unix:///tmp/a b", "unix", "uds", false, USP_MTP_HOST_NONE, "", 0, false, NULL, NULL,
     "/tmp/a b", NULL},
    {"unix:relative.sock", "unix", "uds", false, USP_MTP_HOST_NONE, "", 0, false, NULL, NULL,
     "relative.sock", NULL},
    {"unix:////x", "unix", "uds", false, USP_MTP_HOST_NONE, "", 0, false, NULL, NULL, "//x", NULL},
    {"coap://h", "coap", "coap", false, USP_MTP_HOST_NAME, "h", 5683, false, NULL, NULL, "", NULL},
    {"coaps://h:1", "coaps", "coap", true, USP_MTP_HOST_NAME, "h", 1, true, NULL, NULL, "", NULL},
    {"mqtt://broker.:65535", "mqtt", "mqtt", false, USP_MTP_HOST_NAME, "broker.", 65535, true, NULL,
     NULL, "", NULL},
    {"mqtt://a_b-c.d9/p:@!$&'()*+,;=-._~%2F", "mqtt", "mqtt", false, USP_MTP_HOST_NAME, "a_b-c.d9",
     1883, false, NULL, NULL, "/p:@!$&'()*+,;=-._~%2F", NULL},
    {"mqtt://0.0.0.0:00080", "mqtt", "mqtt", false, USP_MTP_HOST_IPV4, "0.0.0.0", 80, true, NULL,
     NULL, "", NULL},
};

static void test_url_good(void)
{
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        const struct good *g = &goods[i];
        struct usp_mtp_url u;
        char why[200] = "x";
        int rc = usp_mtp_url_parse(g->url, &u, why, sizeof why);
        if (rc)
            fprintf(stderr, "\n%s: %s\n", g->url, why);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_STRING_EQUAL(why, "");
        CU_ASSERT_STRING_EQUAL(u.scheme, g->scheme);
        CU_ASSERT_STRING_EQUAL(u.binding, g->binding);
        CU_ASSERT_EQUAL(u.tls, g->tls);
        CU_ASSERT_EQUAL(u.host_kind, g->kind);
        CU_ASSERT_STRING_EQUAL(u.host, g->host);
        CU_ASSERT_EQUAL(u.port, g->port);
        CU_ASSERT_EQUAL(u.port_given, g->port_given);
        CU_ASSERT_EQUAL(u.has_user, g->user != NULL);
        CU_ASSERT_STRING_EQUAL(u.user, g->user ? g->user : "");
        CU_ASSERT_EQUAL(u.has_password, g->password != NULL);
        CU_ASSERT_STRING_EQUAL(u.password, g->password ? g->password : "");
        CU_ASSERT_STRING_EQUAL(u.path, g->path);
        CU_ASSERT_EQUAL(u.has_query, g->query != NULL);
        CU_ASSERT_STRING_EQUAL(u.query, g->query ? g->query : "");
        /* validation only */
        CU_ASSERT_EQUAL(usp_mtp_url_parse(g->url, NULL, NULL, 0), 0);
    }
}

/* ---- bad URLs: the error names what and where ---- */

struct bad {
    const char *url;
    const char *says; /* must appear in the message */
};

static const struct bad bads[] = {
    {"", "empty"},
    {"127.0.0.1:1883", "must start with a scheme"},
    {"broker", "no scheme"},
    {"http://x", "unknown scheme \"http\""},
    {"mqttsx://x", "unknown scheme"},
    {"mqtt:/x", "expected \"//\" after \"mqtt:\" at offset 5"},
    {"mqtt:", "expected \"//\""},
    {"mqtt://", "host is missing"},
    {"mqtt://:1883", "host is missing"},
    {"mqtt://u@", "host is missing"},
    {"mqtt://h:", "port after ':' at offset 8 is empty"},
    {"mqtt://h:0", "out of range 1-65535"},
    {"mqtt://h:65536", "out of range"},
    {"mqtt://h:99999999999999999999", "out of range"},
    {"mqtt://h:12a", "port \"12a\" at offset 9 is not a number"},
    {"mqtt://h:-1", "not a number"},
    {"mqtt://::1", "IPv6 addresses go in brackets"},
    {"mqtt://[::1", "no closing ']'"},
    {"mqtt://[]", "not a valid IPv6"},
    {"mqtt://[fe80::1%25eth0]", "zone identifiers"},
    {"mqtt://[::g]", "not a valid IPv6 address"},
    {"mqtt://[::1]x", "expected ':' and a port after ']'"},
    {"mqtt://[::1]:", "empty"},
    {"mqtt://999.1.1.1", "\"999.1.1.1\" at offset 7 is not a valid IPv4 address"},
    {"mqtt://1.2.3", "not a valid IPv4"},
    {"mqtt://01.2.3.4", "not a valid IPv4"},
    {"mqtt://1.2.3.4.", "not a valid IPv4"},
    {"mqtt://a..b", "empty label"},
    {"mqtt://.a", "empty label"},
    {"mqtt://-a.b", "starts or ends with '-'"},
    {"mqtt://a-.b", "starts or ends with '-'"},
    {"mqtt://a b", "character 0x20 at offset 8 is not allowed in a host name"},
    {"mqtt://a%20b", "not allowed in a host name"},
    {"mqtt://h/a b", "0x20 at offset 10 is not allowed in the path"},
    {"mqtt://h/a\"b", "not allowed in the path"},
    {"mqtt://h/%zz", "bad %-escape at offset 9"},
    {"mqtt://h/%4", "bad %-escape"},
    {"ws://h/?a<b", "not allowed in the query"},
    {"mqtt://h#frag", "fragments"},
    {"mqtt://h/x#", "fragments (\"#...\", offset 10)"},
    {"mqtt://a@b@h", "more than one '@'"},
    {"mqtt://us er@h", "not allowed in the user name"},
    {"mqtt://u:p w@h", "not allowed in the password"},
    {"mqtt://u:%00@h", "%00"},
    {"mqtt://u%2@h", "bad %-escape"},
    {"unix:", "needs a socket path"},
    {"unix://host/x", "not a host"},
    {"unix://", "not a host"},
    {"unix:/a\tb", "not allowed in a socket path"},
};

static void check_bad(const char *url, const char *says)
{
    struct usp_mtp_url u;
    memset(&u, 0x5a, sizeof u);
    char why[200] = "";
    int rc = usp_mtp_url_parse(url, &u, why, sizeof why);
    CU_ASSERT_EQUAL(rc, USP_EINVAL);
    if (!strstr(why, says))
        fprintf(stderr, "\n\"%.60s\": got \"%s\", want \"%s\"\n", url, why, says);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, says));
    /* nothing half-filled is left behind */
    CU_ASSERT_EQUAL(u.host[0], 0);
    CU_ASSERT_EQUAL(u.scheme[0], 0);
}

static void test_url_bad(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++)
        check_bad(bads[i].url, bads[i].says);

    char buf[4200];
    /* a label of 64 characters */
    snprintf(buf, sizeof buf, "mqtt://%064d.example", 7);
    memset(buf + 7, 'a', 64);
    check_bad(buf, "longer than 63 characters");
    /* a host of 254 characters (labels of 50) */
    strcpy(buf, "mqtt://");
    for (int i = 0; i < 5; i++)
        strcat(buf, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."); /* 50 */
    strcat(buf, "abc");                                                    /* 253 */
    CU_ASSERT_EQUAL(usp_mtp_url_parse(buf, NULL, NULL, 0), 0);
    strcat(buf, "d");
    check_bad(buf, "longer than 253 characters");
    buf[strlen(buf) - 1] = '.'; /* 253 and a trailing dot: too long as well */
    check_bad(buf, "longer than 253 characters");
    /* a unix path of 108 characters */
    strcpy(buf, "unix:/");
    memset(buf + 6, 'p', 107);
    buf[6 + 107] = '\0';
    check_bad(buf, "longer than 107 characters");
    buf[6 + 106] = '\0';
    CU_ASSERT_EQUAL(usp_mtp_url_parse(buf, NULL, NULL, 0), 0);
    /* a whole URL over the limit */
    strcpy(buf, "mqtt://h/");
    memset(buf + 9, 'x', 2100);
    buf[9 + 2100] = '\0';
    check_bad(buf, "longer than 2048 characters");
    /* a path over its own limit, in a URL under the total one */
    buf[9 + 1030] = '\0';
    check_bad(buf, "path at offset 8 is longer than 1024");
    /* a user over 255 bytes once decoded */
    strcpy(buf, "mqtt://");
    for (int i = 0; i < 256; i++)
        strcat(buf, "u");
    strcat(buf, "@h");
    check_bad(buf, "user name is longer than 255");

    char why[8];
    CU_ASSERT_EQUAL(usp_mtp_url_parse(NULL, NULL, why, sizeof why), USP_EINVAL);
    CU_ASSERT_EQUAL(strlen(why), sizeof why - 1); /* truncated, terminated */
    CU_ASSERT_EQUAL(usp_mtp_url_parse("mqtt://h:0", NULL, NULL, 0), USP_EINVAL);
}

static void test_url_format(void)
{
    char buf[USP_MTP_URL_MAX + 64];
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        struct usp_mtp_url a, b;
        CU_ASSERT_EQUAL_FATAL(usp_mtp_url_parse(goods[i].url, &a, NULL, 0), 0);
        CU_ASSERT_EQUAL(usp_mtp_url_format(&a, true, buf, sizeof buf), 0);
        if (usp_mtp_url_parse(buf, &b, NULL, 0))
            fprintf(stderr, "\n%s -> %s does not parse\n", goods[i].url, buf);
        CU_ASSERT_EQUAL_FATAL(usp_mtp_url_parse(buf, &b, NULL, 0), 0);
        CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
    }
    struct usp_mtp_url u;
    CU_ASSERT_EQUAL(usp_mtp_url_parse("MQTT://us%3Aer:p%40ss@[::1]:1/t?q", &u, NULL, 0), 0);
    CU_ASSERT_EQUAL(usp_mtp_url_format(&u, true, buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "mqtt://us%3Aer:p%40ss@[::1]:1/t?q");
    CU_ASSERT_EQUAL(usp_mtp_url_format(&u, false, buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "mqtt://us%3Aer:***@[::1]:1/t?q");
    /* too small: USP_ERANGE, truncated and terminated */
    char small[10];
    CU_ASSERT_EQUAL(usp_mtp_url_format(&u, true, small, sizeof small), USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(small, "mqtt://us");
    /* a struct no URL gives */
    strcpy(u.scheme, "http");
    CU_ASSERT_EQUAL(usp_mtp_url_format(&u, true, buf, sizeof buf), USP_EINVAL);
}

/* ---- MQTT 3.1.1 reply-to [R-MQTT.24/25] ---- */

static void test_reply_to_suffix(void)
{
    char buf[256], reply[256];
    size_t dl;
    size_t n = mtp__mqtt311_topic_build("usp/agent/a", "usp/controller/c", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "usp/agent/a/reply-to=usp%2Fcontroller%2Fc");
    CU_ASSERT_EQUAL(n, strlen(buf));
    CU_ASSERT_TRUE(mtp__mqtt311_topic_split(buf, &dl, reply));
    CU_ASSERT_EQUAL(dl, strlen("usp/agent/a"));
    CU_ASSERT_STRING_EQUAL(reply, "usp/controller/c");

    /* the specification's example */
    const char *ex = "usp/agents/cid:3AA3F8:my-unique-usp-id-42/reply-to="
                     "usp%2Fcontrollers%2Foui:00256D:my-unique-bbf-id-42";
    CU_ASSERT_TRUE(mtp__mqtt311_topic_split(ex, &dl, reply));
    CU_ASSERT_EQUAL(dl, strlen("usp/agents/cid:3AA3F8:my-unique-usp-id-42"));
    CU_ASSERT_STRING_EQUAL(reply, "usp/controllers/oui:00256D:my-unique-bbf-id-42");

    /* the last "/reply-to=" wins; %2f in lower case too */
    CU_ASSERT_TRUE(mtp__mqtt311_topic_split("a/reply-to=x/reply-to=b%2fc%2F", &dl, reply));
    CU_ASSERT_EQUAL(dl, strlen("a/reply-to=x"));
    CU_ASSERT_STRING_EQUAL(reply, "b/c/");
    /* a '%' that is not %2F stays */
    CU_ASSERT_TRUE(mtp__mqtt311_topic_split("t/reply-to=a%2Gb%", &dl, reply));
    CU_ASSERT_STRING_EQUAL(reply, "a%2Gb%");
    /* none, or an empty one */
    CU_ASSERT_FALSE(mtp__mqtt311_topic_split("usp/agent/a", &dl, reply));
    CU_ASSERT_EQUAL(dl, strlen("usp/agent/a"));
    CU_ASSERT_STRING_EQUAL(reply, "");
    CU_ASSERT_FALSE(mtp__mqtt311_topic_split("usp/agent/a/reply-to=", &dl, reply));
    CU_ASSERT_EQUAL(dl, strlen("usp/agent/a/reply-to="));
    CU_ASSERT_FALSE(mtp__mqtt311_topic_split("reply-to=x", &dl, reply));

    /* snprintf-like sizing */
    char tiny[8];
    n = mtp__mqtt311_topic_build("abc", "d/e", tiny, sizeof tiny);
    CU_ASSERT_EQUAL(n, strlen("abc/reply-to=d%2Fe"));
    CU_ASSERT_STRING_EQUAL(tiny, "abc/rep");
    CU_ASSERT_EQUAL(mtp__mqtt311_topic_build("abc", "d/e", NULL, 0), n);
}

/* ---- back-off [R-MQTT.10/33] ---- */

static void test_retry_delay(void)
{
    uv_loop_t loop;
    CU_ASSERT_EQUAL_FATAL(uv_loop_init(&loop), 0);
    struct usp_mtp_ctx *ctx = usp_mtp_ctx_new(&loop, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    struct {
        uint32_t m, k, max, n;
        uint32_t lo, hi; /* ms, inclusive */
    } cases[] = {
        {5, 2000, 30720, 1, 5000, 10000},
        {5, 2000, 30720, 2, 10000, 20000},
        {5, 2000, 30720, 3, 20000, 40000},
        {5, 2000, 30720, 10, 2560000, 5120000},
        {5, 2000, 30720, 11, 2560000, 5120000}, /* n stays at 10 */
        {5, 2000, 30720, 1000, 2560000, 5120000},
        {5, 2000, 12, 1, 5000, 10000},
        {5, 2000, 12, 2, 10000, 12000}, /* capped */
        {5, 2000, 12, 9, 12000, 12000},
        {5, 1000, 100, 7, 5000, 5000}, /* multiplier 1: no range */
        {1, 1500, 30720, 1, 1000, 1500},
        {65535, 65535, 4294967295u, 10, UINT32_MAX, UINT32_MAX}, /* saturates */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t mn = UINT32_MAX, mx = 0;
        for (int r = 0; r < 300; r++) {
            uint32_t d = mtp__retry_delay_ms(ctx, cases[i].m, cases[i].k, cases[i].max, cases[i].n);
            mn = d < mn ? d : mn;
            mx = d > mx ? d : mx;
        }
        CU_ASSERT_TRUE(mn >= cases[i].lo && mx <= cases[i].hi);
        if (cases[i].hi - cases[i].lo >= 1000)
            CU_ASSERT_TRUE(mx - mn > (cases[i].hi - cases[i].lo) / 2); /* it is random */
    }
    usp_mtp_ctx_free(ctx);
    CU_ASSERT_EQUAL(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

/* ---- registry, configuration, wrappers (with a stand-in binding) ---- */

static int fake_calls[8];
struct fake_conn {
    struct usp_mtp_conn base;
    char host[USP_MTP_HOST_MAX + 8];
};

static int fake_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                    const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                    size_t whylen)
{
    fake_calls[0]++;
    struct fake_conn *f = calloc(1, sizeof *f);
    if (!f)
        return USP_ENOMEM;
    snprintf(f->host, sizeof f->host, "%s:%u", url->host, url->port);
    *out = &f->base;
    return 0;
}

static int fake_open(struct usp_mtp_conn *c)
{
    return ++fake_calls[1];
}

static int fake_send(struct usp_mtp_conn *c, const struct usp_mtp_dest *to, const uint8_t *rec,
                     size_t len)
{
    fake_calls[2]++;
    return (int)len;
}

static int fake_close(struct usp_mtp_conn *c, uint32_t code, const char *reason)
{
    fake_calls[3]++;
    return (int)code;
}

static void fake_free(struct usp_mtp_conn *c)
{
    fake_calls[4]++;
    free(c);
}

static const char *fake_local(const struct usp_mtp_conn *c)
{
    return ((const struct fake_conn *)c)->host;
}

static const struct usp_mtp_ops fake_ops = {
    .name = "stomp",
    .conn_new = fake_new,
    .open = fake_open,
    .send = fake_send,
    .close = fake_close,
    .free = fake_free,
    .local_dest = fake_local,
};

static void test_registry_and_config(void)
{
    uv_loop_t loop;
    CU_ASSERT_EQUAL_FATAL(uv_loop_init(&loop), 0);
    struct usp_mtp_ctx *ctx = usp_mtp_ctx_new(&loop, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);

    struct usp_mtp_ops broken = fake_ops;
    broken.send = NULL;
    CU_ASSERT_EQUAL(usp_mtp_register(&broken), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_mtp_register(NULL), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_mtp_register(&fake_ops), 0);
    CU_ASSERT_EQUAL(usp_mtp_register(&fake_ops), 0); /* again: fine */
    struct usp_mtp_ops other = fake_ops;
    CU_ASSERT_EQUAL(usp_mtp_register(&other), USP_EEXIST);
    CU_ASSERT_PTR_EQUAL(usp_mtp_find("stomp"), &fake_ops);
    CU_ASSERT_PTR_NULL(usp_mtp_find("carrier-pigeon"));
    CU_ASSERT_PTR_NULL(usp_mtp_find(NULL));

    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    CU_ASSERT_EQUAL(cfg.keepalive_s, 60);
    CU_ASSERT_EQUAL(cfg.retry_time_s, 5);
    CU_ASSERT_EQUAL(cfg.retry_multiplier, 2000);
    CU_ASSERT_EQUAL(cfg.retry_max_s, 30720);
    CU_ASSERT_EQUAL(cfg.mqtt.version, USP_MQTT_V5);
    cfg.eid = "proto::agent-1";
    cfg.url = "stomp://broker.example:61000";

    static const struct usp_mtp_callbacks cbs = {0};
    struct usp_mtp_conn *c = NULL;
    char why[200];
    CU_ASSERT_EQUAL_FATAL(usp_mtp_conn_new(ctx, &cfg, &cbs, &fake_calls, &c, why, sizeof why), 0);
    CU_ASSERT_PTR_EQUAL(c->ops, &fake_ops);
    CU_ASSERT_PTR_EQUAL(c->ctx, ctx);
    CU_ASSERT_PTR_EQUAL(c->cb, &cbs);
    CU_ASSERT_PTR_EQUAL(c->user, &fake_calls);
    CU_ASSERT_EQUAL(usp_mtp_get_state(c), USP_MTP_IDLE);
    CU_ASSERT_EQUAL(usp_mtp_open(c), 1);
    struct usp_mtp_dest d = {"t"};
    CU_ASSERT_EQUAL(usp_mtp_send(c, &d, (const uint8_t *)"abc", 3), 3);
    CU_ASSERT_EQUAL(usp_mtp_close(c, 7105, "bye"), 7105);
    CU_ASSERT_STRING_EQUAL(usp_mtp_local_dest(c), "broker.example:61000");
    CU_ASSERT_PTR_EQUAL(usp_mtp_get_stats(c), &c->stats);
    usp_mtp_conn_free(c);
    usp_mtp_conn_free(NULL);
    CU_ASSERT_EQUAL(fake_calls[0], 1);
    CU_ASSERT_EQUAL(fake_calls[2], 1);
    CU_ASSERT_EQUAL(fake_calls[3], 1);
    CU_ASSERT_EQUAL(fake_calls[4], 1);

#define BAD(stmt, code, text)                                                                      \
    do {                                                                                           \
        struct usp_mtp_config b = cfg;                                                             \
        stmt;                                                                                      \
        c = (struct usp_mtp_conn *)&cfg;                                                           \
        int rc_ = usp_mtp_conn_new(ctx, &b, &cbs, NULL, &c, why, sizeof why);                      \
        CU_ASSERT_EQUAL(rc_, code);                                                                \
        CU_ASSERT_PTR_NULL(c);                                                                     \
        if (!strstr(why, text))                                                                    \
            fprintf(stderr, "\n%s: got \"%s\"\n", #stmt, why);                                     \
        CU_ASSERT_PTR_NOT_NULL(strstr(why, text));                                                 \
    } while (0)
    BAD(b.eid = NULL, USP_EINVAL, "Endpoint ID is missing");
    BAD(b.eid = "", USP_EINVAL, "Endpoint ID is missing");
    BAD(b.eid = "a\nb", USP_EINVAL, "control character at offset 1");
    BAD(b.url = NULL, USP_EINVAL, "bad URL: no URL given");
    BAD(b.url = "stomp://h:99999", USP_EINVAL, "bad URL: the port");
    BAD(b.url = "ws://h/usp", USP_ENOENT, "no MTP binding is registered for \"ws\"");
    BAD(b.url = "coap://h", USP_ENOENT, "no MTP binding is registered for \"coap\"");
    BAD(b.keepalive_s = 3, USP_EINVAL, "keepalive 3 s is out of range");
    BAD(b.keepalive_s = 70000, USP_EINVAL, "keepalive");
    BAD(b.retry_time_s = 0, USP_EINVAL, "ConnectRetryTime");
    BAD(b.retry_multiplier = 999, USP_EINVAL, "ConnectRetryIntervalMultiplier 999");
    BAD(b.retry_multiplier = 65536, USP_EINVAL, "ConnectRetryIntervalMultiplier");
    BAD(b.retry_max_s = 0, USP_EINVAL, "ConnectRetryMaxInterval");
    BAD(b.max_record = 0, USP_EINVAL, "max_record");
    BAD(b.connect_timeout_ms = 0, USP_EINVAL, "timeouts");
    BAD(b.peer_eid = "proto::c", USP_EINVAL, "peer_eid and peer_dest go together");
    BAD(b.peer_dest = "t", USP_EINVAL, "go together");
    BAD(b.bind_address = "localhost", USP_EINVAL, "bind address \"localhost\" is not a numeric");
    BAD(b.role = (enum usp_mtp_role)7, USP_EINVAL, "role 7");
    BAD(b.usp_version = "", USP_EINVAL, "USP version is missing");
    CU_ASSERT_EQUAL(fake_calls[0], 1); /* the binding never saw them */

    /* keepalive 0 (off) and a numeric IPv6 source are fine */
    cfg.keepalive_s = 0;
    cfg.bind_address = "::1";
    CU_ASSERT_EQUAL(usp_mtp_conn_new(ctx, &cfg, &cbs, NULL, &c, why, sizeof why), 0);
    usp_mtp_conn_free(c);

    CU_ASSERT_STRING_EQUAL(usp_mtp_state_name(USP_MTP_UP), "UP");
    CU_ASSERT_STRING_EQUAL(usp_mtp_state_name((enum usp_mtp_state)99), "?");
    CU_ASSERT_STRING_EQUAL(usp_mtp_reason_name(USP_MTP_R_NO_TOPIC), "no-topic");
    CU_ASSERT_STRING_EQUAL(usp_mtp_reason_name(USP_MTP_R_INTERNAL), "internal");
    CU_ASSERT_STRING_EQUAL(usp_mtp_reason_name((enum usp_mtp_reason) - 1), "?");

    usp_mtp_ctx_free(ctx);
    CU_ASSERT_EQUAL(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

/* ---- timers on the wheel, connect slots ---- */

struct tw {
    struct usp_tw_entry e;
    struct mtp_waiter w;
    struct usp_mtp_ctx *ctx;
    char name;
    uint64_t fired_at;
    int fired;
};
static char order[32];
static size_t norder;
static uint64_t t0;

static struct tw *of_entry(struct usp_tw_entry *e)
{
    return (struct tw *)((char *)e - offsetof(struct tw, e));
}

static void tw_fire(struct usp_tw_entry *e, uint64_t now_ms)
{
    struct tw *w = of_entry(e);
    w->fired++;
    w->fired_at = uv_now(w->ctx->loop) - t0;
    if (norder < sizeof order - 1)
        order[norder++] = w->name;
}

/* Re-arms itself twice, from inside its own callback. */
static void tw_again(struct usp_tw_entry *e, uint64_t now_ms)
{
    struct tw *w = of_entry(e);
    if (++w->fired < 3)
        mtp__timer_arm(w->ctx, e, 30, tw_again);
}

static struct tw *victim;
static void tw_cancel_other(struct usp_tw_entry *e, uint64_t now_ms)
{
    tw_fire(e, now_ms);
    mtp__timer_cancel(victim->ctx, &victim->e);
}

/* With the context's own wheel, or with one the caller shares. */
static void run_timers(bool shared)
{
    uv_loop_t loop;
    CU_ASSERT_EQUAL_FATAL(uv_loop_init(&loop), 0);
    struct usp_tw_uv wheel;
    struct usp_mtp_ctx_opts o = {0};
    if (shared) {
        CU_ASSERT_EQUAL_FATAL(usp_tw_uv_init(&wheel, &loop), 0);
        o.wheel = wheel.tw;
    }
    struct usp_mtp_ctx *ctx = usp_mtp_ctx_new(&loop, &o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(ctx->owns_tw, !shared);
    struct tw a = {.ctx = ctx, .name = 'A'}, b = {.ctx = ctx, .name = 'B'},
              c = {.ctx = ctx, .name = 'C'}, d = {.ctx = ctx, .name = 'D'},
              f = {.ctx = ctx, .name = 'F'}, g = {.ctx = ctx, .name = 'G'},
              h = {.ctx = ctx, .name = 'H'};
    norder = 0;
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    mtp__timer_arm(ctx, &a.e, 300, tw_fire);
    mtp__timer_arm(ctx, &b.e, 80, tw_fire);
    mtp__timer_arm(ctx, &c.e, 0, tw_fire); /* from the loop, not now */
    mtp__timer_arm(ctx, &d.e, 150, tw_fire);
    mtp__timer_arm(ctx, &f.e, 10, tw_again);
    mtp__timer_arm(ctx, &g.e, 200, tw_cancel_other);
    mtp__timer_arm(ctx, &h.e, 250, tw_fire); /* G cancels it first */
    victim = &h;
    CU_ASSERT_EQUAL(c.fired, 0);
    CU_ASSERT_TRUE(usp_tw_pending(&d.e));
    mtp__timer_cancel(ctx, &d.e);
    CU_ASSERT_FALSE(usp_tw_pending(&d.e));
    mtp__timer_cancel(ctx, &d.e);            /* twice: harmless */
    mtp__timer_arm(ctx, &b.e, 120, tw_fire); /* re-arming moves it */
    /* The loop ends when nothing is armed. */
    CU_ASSERT_EQUAL(uv_run(&loop, UV_RUN_DEFAULT), 0);
    order[norder] = '\0';
    CU_ASSERT_STRING_EQUAL(order, "CBGA");
    CU_ASSERT_EQUAL(a.fired, 1);
    CU_ASSERT_EQUAL(d.fired, 0);
    CU_ASSERT_EQUAL(h.fired, 0);
    CU_ASSERT_EQUAL(f.fired, 3);
    CU_ASSERT_TRUE(a.fired_at >= 300 && a.fired_at <= 1500);
    CU_ASSERT_TRUE(b.fired_at >= 120 && b.fired_at < a.fired_at);

    /* connect slots: one at a time, the waiter runs from the loop */
    ctx->max_connecting = 1;
    struct tw s1 = {.ctx = ctx, .name = '1'}, s2 = {.ctx = ctx, .name = '2'},
              s3 = {.ctx = ctx, .name = '3'};
    CU_ASSERT_TRUE(mtp__connect_slot_take(ctx, &s1.w, &s1.e, tw_fire));
    CU_ASSERT_FALSE(mtp__connect_slot_take(ctx, &s2.w, &s2.e, tw_fire));
    CU_ASSERT_FALSE(mtp__connect_slot_take(ctx, &s3.w, &s3.e, tw_fire));
    mtp__connect_wait_cancel(ctx, &s3.w); /* leaves the queue */
    mtp__connect_wait_cancel(ctx, &s3.w);
    CU_ASSERT_EQUAL(ctx->connecting, 1);
    mtp__connect_slot_give(ctx);
    CU_ASSERT_EQUAL(ctx->connecting, 0);
    CU_ASSERT_EQUAL(s2.fired, 0); /* not from inside give */
    CU_ASSERT_EQUAL(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CU_ASSERT_EQUAL(s2.fired, 1);
    CU_ASSERT_EQUAL(s3.fired, 0);
    CU_ASSERT_EQUAL(s1.fired, 0);
    CU_ASSERT_PTR_NULL(ctx->waiters);
    CU_ASSERT_PTR_EQUAL(ctx->waiters_tail, &ctx->waiters);
    /* no limit: always a slot */
    ctx->max_connecting = 0;
    for (int i = 0; i < 5; i++)
        CU_ASSERT_TRUE(mtp__connect_slot_take(ctx, &s3.w, &s3.e, tw_fire));

    usp_mtp_ctx_free(ctx);
    if (shared)
        usp_tw_uv_close(&wheel, NULL);
    CU_ASSERT_EQUAL(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CU_ASSERT_EQUAL(a.fired, 1);
    CU_ASSERT_EQUAL(uv_loop_close(&loop), 0);
}

static void test_timers_own_wheel(void)
{
    run_timers(false);
}

static void test_timers_shared_wheel(void)
{
    run_timers(true);
}

void suite_mtp_url(void)
{
    USP_SUITE("mtp_url", USP_TEST(test_url_good), USP_TEST(test_url_bad), USP_TEST(test_url_format),
              USP_TEST(test_reply_to_suffix));
    USP_SUITE("mtp_core", USP_TEST(test_retry_delay), USP_TEST(test_registry_and_config),
              USP_TEST(test_timers_own_wheel), USP_TEST(test_timers_shared_wheel));
}
