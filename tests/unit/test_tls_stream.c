/* lib/tls_stream.c: two sessions talking to each other in memory, with
 * certificates made at test time by lib/certs.c (a CA, a second CA the
 * sessions do not trust, peer certificates carrying Endpoint IDs). */
#include <malloc.h>
#include <openssl/ssl.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "tls_stream_int.h"
#include "usp/certs.h"
#include "usp/tls.h"

#define AGENT_EID "os::012345-TLS000001"
#define CTL_EID   "proto::tls-controller"

enum { C_CA, C_OTHER_CA, C_CTL, C_AGENT, C_ROGUE, C_COUNT };
static const char *const cnames[C_COUNT] = {"ca", "other-ca", "ctl", "agent", "rogue"};

static struct {
    bool ready, failed;
    char dir[64];
    char pem[C_COUNT][96], key[C_COUNT][96];
    struct usp_cert *c[C_COUNT];
} fx;

static void fixture_cleanup(void)
{
    for (int i = 0; i < C_COUNT; i++) {
        usp_cert_free(fx.c[i]);
        if (fx.pem[i][0])
            unlink(fx.pem[i]);
        if (fx.key[i][0])
            unlink(fx.key[i]);
    }
    if (fx.dir[0])
        rmdir(fx.dir);
}

static int make(int i, const struct usp_cert_spec *s)
{
    char why[300];
    if (usp_cert_new(s, &fx.c[i], why, sizeof why) != 0) {
        fprintf(stderr, "certificate %s: %s\n", cnames[i], why);
        return -1;
    }
    snprintf(fx.pem[i], sizeof fx.pem[i], "%s/%s.pem", fx.dir, cnames[i]);
    snprintf(fx.key[i], sizeof fx.key[i], "%s/%s.key", fx.dir, cnames[i]);
    if (usp_cert_write(fx.c[i], fx.pem[i], fx.key[i], why, sizeof why) != 0) {
        fprintf(stderr, "certificate %s: %s\n", cnames[i], why);
        return -1;
    }
    return 0;
}

static bool fixture(void)
{
    if (fx.ready || fx.failed) {
        CU_ASSERT_FATAL(fx.ready);
        return fx.ready;
    }
    fx.failed = true;
    snprintf(fx.dir, sizeof fx.dir, "/tmp/usp-tls-stream-XXXXXX");
    if (!mkdtemp(fx.dir)) {
        fx.dir[0] = '\0';
        CU_FAIL_FATAL("mkdtemp");
        return false;
    }
    atexit(fixture_cleanup);
    static const char *const ctl[] = {CTL_EID}, *const agent[] = {AGENT_EID};
    static const char *const dns[] = {"localhost"}, *const ips[] = {"127.0.0.1"};
    struct usp_cert_spec ca = {.use = USP_CERT_USE_CA,
                               .common_name = "tls-stream test CA",
                               .not_before = -3600,
                               .not_after = 2 * USP_CERT_DAY};
    struct usp_cert_spec other = ca;
    other.common_name = "a CA nobody trusts";
    if (make(C_CA, &ca) || make(C_OTHER_CA, &other))
        return false;
    struct usp_cert_spec s = {.use = USP_CERT_USE_PEER,
                              .common_name = CTL_EID,
                              .not_before = -3600,
                              .not_after = USP_CERT_DAY,
                              .eids = ctl,
                              .neids = 1,
                              .dns = dns,
                              .ndns = 1,
                              .ips = ips,
                              .nips = 1,
                              .issuer = fx.c[C_CA]};
    if (make(C_CTL, &s))
        return false;
    s.common_name = AGENT_EID;
    s.eids = agent;
    s.dns = NULL;
    s.ndns = 0;
    s.ips = NULL;
    s.nips = 0;
    if (make(C_AGENT, &s))
        return false;
    s.issuer = fx.c[C_OTHER_CA];
    if (make(C_ROGUE, &s))
        return false;
    fx.ready = true;
    fx.failed = false;
    return true;
}

static SSL_CTX *ctx_for(enum usp_tls_role role, int ca, int cert)
{
    struct usp_tls_files f = {fx.pem[ca], cert >= 0 ? fx.pem[cert] : NULL,
                              cert >= 0 ? fx.key[cert] : NULL};
    SSL_CTX *sc = NULL;
    char why[300];
    int rc = usp_tls_ctx_new(role, &f, 0, &sc, why, sizeof why);
    if (rc)
        fprintf(stderr, "usp_tls_ctx_new: %s\n", why);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return sc;
}

/* ---- a pair of sessions joined in memory ---- */

struct side {
    struct tls_stream *t;
    uint8_t got[128 * 1024];
    size_t got_len;
    int rc; /* last error */
};

/* Moves what `from` has to write into `to`, in pieces of at most `chunk`
 * bytes, and lets `to` read it. Returns the bytes moved. */
static size_t pump(struct side *from, struct side *to, size_t chunk)
{
    const uint8_t *p;
    size_t n = tls_stream__out(from->t, &p);
    if (!n)
        return 0;
    uint8_t *copy = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    memcpy(copy, p, n);
    tls_stream__out_clear(from->t);
    for (size_t off = 0; off < n;) {
        size_t k = n - off < chunk ? n - off : chunk;
        tls_stream__feed(to->t, copy + off, k);
        off += k;
        for (;;) {
            int r = tls_stream__read(to->t, to->got + to->got_len, sizeof to->got - to->got_len);
            if (r > 0) {
                to->got_len += (size_t)r;
                continue;
            }
            if (r < 0)
                to->rc = r;
            break;
        }
        if (to->rc)
            break;
    }
    free(copy);
    return n;
}

/* Runs both sides until neither has anything to write. */
static void run(struct side *a, struct side *b, size_t chunk)
{
    for (int i = 0; i < 50; i++)
        if (!pump(a, b, chunk) + !pump(b, a, chunk) == 2)
            return;
}

static void pair(struct side *cl, struct side *sv, SSL_CTX *csc, SSL_CTX *ssc, const char *host,
                 int ccert, int scert)
{
    char why[300];
    memset(cl, 0, sizeof *cl);
    memset(sv, 0, sizeof *sv);
    CU_ASSERT_EQUAL_FATAL(
        tls_stream__new(csc, USP_TLS_CLIENT, host, ccert >= 0 ? fx.pem[ccert] : NULL,
                        ccert >= 0 ? fx.key[ccert] : NULL, &cl->t, why, sizeof why),
        0);
    CU_ASSERT_EQUAL_FATAL(
        tls_stream__new(ssc, USP_TLS_SERVER, NULL, scert >= 0 ? fx.pem[scert] : NULL,
                        scert >= 0 ? fx.key[scert] : NULL, &sv->t, why, sizeof why),
        0);
    CU_ASSERT_FALSE(tls_stream__up(cl->t));
    CU_ASSERT_STRING_EQUAL(tls_stream__why(cl->t), "");
    CU_ASSERT_EQUAL(tls_stream__start(cl->t), 0);
    const uint8_t *p;
    CU_ASSERT(tls_stream__out(cl->t, &p) > 0); /* the ClientHello */
}

static void unpair(struct side *cl, struct side *sv)
{
    tls_stream__free(cl->t);
    tls_stream__free(sv->t);
}

static struct side cl, sv; /* big: not on the stack */

static void test_handshake_and_data(void)
{
    if (!fixture())
        return;
    SSL_CTX *csc = ctx_for(USP_TLS_CLIENT, C_CA, C_AGENT),
            *ssc = ctx_for(USP_TLS_SERVER, C_CA, C_CTL);
    pair(&cl, &sv, csc, ssc, "localhost", -1, -1);
    CU_ASSERT_EQUAL(tls_stream__write(cl.t, (const uint8_t *)"x", 1), USP_EPERM); /* not up */
    run(&cl, &sv, 7); /* every record cut into 7-byte reads */
    CU_ASSERT_EQUAL(cl.rc, 0);
    CU_ASSERT_EQUAL(sv.rc, 0);
    CU_ASSERT_TRUE(tls_stream__up(cl.t));
    CU_ASSERT_TRUE(tls_stream__up(sv.t));
    char d[80];
    tls_stream__describe(sv.t, d, sizeof d);
    CU_ASSERT(strncmp(d, "TLSv1.", 6) == 0);

    /* Each side knows the other's Endpoint ID from its certificate. */
    const struct usp_tls_ids *ids = tls_stream__ids(sv.t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
    CU_ASSERT_EQUAL(usp_tls_ids_count(ids), 1);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(ids, 0, NULL), AGENT_EID);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, AGENT_EID, NULL, 0), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, CTL_EID, NULL, 0), USP_EPERM);
    ids = tls_stream__ids(cl.t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(ids, 0, NULL), CTL_EID);

    /* Data both ways: a big one (many TLS records) read in odd pieces. */
    static uint8_t big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 8));
    CU_ASSERT_EQUAL(tls_stream__write(cl.t, big, sizeof big), 0);
    CU_ASSERT_EQUAL(tls_stream__write(sv.t, (const uint8_t *)"hello agent", 11), 0);
    size_t cl0 = cl.got_len;
    run(&cl, &sv, 1000);
    CU_ASSERT_EQUAL(sv.got_len, sizeof big);
    CU_ASSERT(memcmp(sv.got, big, sizeof big) == 0);
    CU_ASSERT_EQUAL(cl.got_len - cl0, 11);
    CU_ASSERT(memcmp(cl.got + cl0, "hello agent", 11) == 0);

    /* Idle: no I/O buffer of our own left. */
    const uint8_t *p;
    CU_ASSERT_EQUAL(tls_stream__out(cl.t, &p), 0);
    CU_ASSERT_PTR_NULL(p);

    /* close_notify: the peer learns the session ended. */
    CU_ASSERT_EQUAL(tls_stream__shutdown(cl.t), 0);
    CU_ASSERT_EQUAL(tls_stream__shutdown(cl.t), USP_EPERM);
    CU_ASSERT_EQUAL(tls_stream__write(cl.t, big, 1), USP_EPERM);
    run(&cl, &sv, 4096);
    CU_ASSERT_EQUAL(sv.rc, USP_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_stream__why(sv.t), "closed"));
    unpair(&cl, &sv);
    SSL_CTX_free(csc);
    SSL_CTX_free(ssc);
}

/* A client whose certificate comes from a CA the server does not trust. */
static void test_wrong_ca(void)
{
    if (!fixture())
        return;
    SSL_CTX *csc = ctx_for(USP_TLS_CLIENT, C_CA, C_ROGUE),
            *ssc = ctx_for(USP_TLS_SERVER, C_CA, C_CTL);
    pair(&cl, &sv, csc, ssc, NULL, -1, -1);
    run(&cl, &sv, 4096);
    CU_ASSERT_EQUAL(sv.rc, USP_EPERM);
    const char *w = tls_stream__why(sv.t);
    CU_ASSERT_PTR_NOT_NULL(strstr(w, "did not verify"));
    CU_ASSERT_PTR_NOT_NULL(strstr(w, "unable to get local issuer certificate"));
    CU_ASSERT_FALSE(tls_stream__up(sv.t));
    CU_ASSERT_PTR_NULL(tls_stream__ids(sv.t));
    /* The client got the server's alert. */
    CU_ASSERT_EQUAL(cl.rc, USP_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_stream__why(cl.t), "alert"));
    CU_ASSERT_FALSE(tls_stream__up(cl.t));
    /* Sticky. */
    uint8_t b[16];
    CU_ASSERT_EQUAL(tls_stream__read(sv.t, b, sizeof b), USP_EPERM);
    unpair(&cl, &sv);

    /* The other way round: the server's certificate is the untrusted one. */
    SSL_CTX *rsc = ctx_for(USP_TLS_SERVER, C_CA, C_ROGUE),
            *gcc = ctx_for(USP_TLS_CLIENT, C_CA, C_AGENT);
    pair(&cl, &sv, gcc, rsc, NULL, -1, -1);
    run(&cl, &sv, 4096);
    CU_ASSERT_EQUAL(cl.rc, USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_stream__why(cl.t), "unable to get local issuer certificate"));
    CU_ASSERT_NOT_EQUAL(sv.rc, 0);
    unpair(&cl, &sv);
    SSL_CTX_free(csc);
    SSL_CTX_free(ssc);
    SSL_CTX_free(rsc);
    SSL_CTX_free(gcc);
}

/* The client checks the URL's host against the server certificate. */
static void test_host_check(void)
{
    if (!fixture())
        return;
    SSL_CTX *csc = ctx_for(USP_TLS_CLIENT, C_CA, C_AGENT),
            *ssc = ctx_for(USP_TLS_SERVER, C_CA, C_CTL);
    pair(&cl, &sv, csc, ssc, "127.0.0.1", -1, -1);
    run(&cl, &sv, 4096);
    CU_ASSERT_TRUE(tls_stream__up(cl.t));
    unpair(&cl, &sv);
    pair(&cl, &sv, csc, ssc, "broker.example.org", -1, -1);
    run(&cl, &sv, 4096);
    CU_ASSERT_EQUAL(cl.rc, USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_stream__why(cl.t), "hostname mismatch"));
    unpair(&cl, &sv);
    pair(&cl, &sv, csc, ssc, "10.1.2.3", -1, -1);
    run(&cl, &sv, 4096);
    CU_ASSERT_EQUAL(cl.rc, USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_stream__why(cl.t), "IP address mismatch"));
    unpair(&cl, &sv);
    SSL_CTX_free(csc);
    SSL_CTX_free(ssc);
}

/* Contexts without a certificate: each session brings its own files, and
 * a session without any is refused by the server. */
static void test_per_session_files(void)
{
    if (!fixture())
        return;
    SSL_CTX *csc = ctx_for(USP_TLS_CLIENT, C_CA, -1), *ssc = ctx_for(USP_TLS_SERVER, C_CA, -1);
    pair(&cl, &sv, csc, ssc, NULL, C_AGENT, C_CTL);
    run(&cl, &sv, 4096);
    CU_ASSERT_TRUE(tls_stream__up(sv.t));
    CU_ASSERT_PTR_NOT_NULL(tls_stream__ids(sv.t));
    unpair(&cl, &sv);

    pair(&cl, &sv, csc, ssc, NULL, -1, C_CTL);
    run(&cl, &sv, 4096);
    CU_ASSERT_EQUAL(sv.rc, USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(tls_stream__why(sv.t), "no certificate"));
    unpair(&cl, &sv);

    char why[300];
    struct tls_stream *t = NULL;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.pem", fx.dir);
    CU_ASSERT_EQUAL(
        tls_stream__new(csc, USP_TLS_CLIENT, NULL, missing, fx.key[C_AGENT], &t, why, sizeof why),
        USP_ENOENT);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "missing.pem"));
    CU_ASSERT_EQUAL(
        tls_stream__new(csc, USP_TLS_CLIENT, NULL, fx.pem[C_AGENT], NULL, &t, why, sizeof why),
        USP_EINVAL);
    SSL_CTX_free(csc);
    SSL_CTX_free(ssc);
}

/* Bytes that are not TLS: a clear failure, never a crash. */
static void test_garbage(void)
{
    if (!fixture())
        return;
    SSL_CTX *ssc = ctx_for(USP_TLS_SERVER, C_CA, C_CTL);
    char why[300];
    struct tls_stream *t;
    CU_ASSERT_EQUAL_FATAL(
        tls_stream__new(ssc, USP_TLS_SERVER, NULL, NULL, NULL, &t, why, sizeof why), 0);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    tls_stream__feed(t, (const uint8_t *)junk, sizeof junk - 1);
    uint8_t b[64];
    int r = tls_stream__read(t, b, sizeof b);
    CU_ASSERT_EQUAL(r, USP_EPROTO);
    CU_ASSERT(strlen(tls_stream__why(t)) > 10);
    CU_ASSERT_EQUAL(tls_stream__write(t, b, 1), USP_EPERM);
    tls_stream__free(t);
    SSL_CTX_free(ssc);
}

static size_t heap(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* What an idle session costs, both ends (reported, and bounded). */
static void test_idle_memory(void)
{
    if (!fixture())
        return;
    SSL_CTX *csc = ctx_for(USP_TLS_CLIENT, C_CA, C_AGENT),
            *ssc = ctx_for(USP_TLS_SERVER, C_CA, C_CTL);
    enum { N = 20 };
    static struct side c[N], s[N];
    size_t m0 = heap();
    for (int i = 0; i < N; i++) {
        pair(&c[i], &s[i], csc, ssc, NULL, -1, -1);
        run(&c[i], &s[i], 65536);
        CU_ASSERT_TRUE(tls_stream__up(s[i].t));
        CU_ASSERT_EQUAL(tls_stream__write(c[i].t, (const uint8_t *)"ping", 4), 0);
        run(&c[i], &s[i], 65536);
        CU_ASSERT_EQUAL(s[i].got_len, 4);
    }
    size_t m1 = heap();
    if (m1 > m0) { /* ASan has its own allocator */
        double per = (double)(m1 - m0) / N;
        printf("\n    tls_stream: an idle TLS 1.3 session costs %.0f bytes per end (client + "
               "server: %.0f)\n",
               per / 2, per);
        /* OpenSSL's own cost (the SSL object is 7.6 KB, the peer's parsed
         * certificate and key, two AES-GCM contexts) is about 25 KB; its
         * record buffers, released between records, would add 34 KB. */
        CU_ASSERT(per / 2 < 32 * 1024);
    }
    for (int i = 0; i < N; i++)
        unpair(&c[i], &s[i]);
    SSL_CTX_free(csc);
    SSL_CTX_free(ssc);
}

void suite_tls_stream(void)
{
    USP_SUITE("tls_stream", USP_TEST(test_handshake_and_data), USP_TEST(test_wrong_ca),
              USP_TEST(test_host_check), USP_TEST(test_per_session_files), USP_TEST(test_garbage),
              USP_TEST(test_idle_memory));
}
