/* Certificates and TLS helpers: a CA, a controller and agents made in a
 * temporary folder, then real OpenSSL handshakes in memory (two SSL
 * objects joined by a BIO pair, mutual authentication) that succeed for
 * the good chain and fail, with the right verify error, for expired,
 * not-yet-valid, unknown-CA and self-signed certificates and for a client
 * without one; Endpoint IDs taken from the subjectAltName; from_id
 * matching, with the shared-certificate wildcards of R-SEC.11/12. */
#include <CUnit/CUnit.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "usp/certs.h"
#include "usp/errors.h"
#include "usp/tls.h"

#define DAY        USP_CERT_DAY
#define AGENT_EID  "os::012345-SIM000001"
#define CTL_EID    "self::uspsim-controller"
#define SHARED_PAT "os::012345-SIM*"

/* ---- Fixture: made once, removed at exit --------------------------------- */

enum {
    F_CA,
    F_CTL,         /* controller: PEER, its EID, localhost/127.0.0.1/::1 */
    F_AGENT,       /* agent 1 */
    F_AGENT_EXP,   /* expired */
    F_AGENT_NYV,   /* not yet valid */
    F_OTHER_CA,    /* a second CA nobody trusts */
    F_AGENT_OTHER, /* signed by the other CA */
    F_AGENT_SELF,  /* self-signed */
    F_CTL_EXP,     /* expired controller */
    F_SHARED,      /* one certificate for all agents, SHARED_PAT */
    F_COUNT
};

static const char *const fnames[F_COUNT] = {
    "ca",       "controller",  "agent",      "agent-expired",      "agent-nyv",
    "other-ca", "agent-other", "agent-self", "controller-expired", "shared",
};

static struct {
    bool ready, failed;
    char dir[64];
    struct usp_cert *c[F_COUNT];
    char pem[F_COUNT][128], key[F_COUNT][128];
} fx;

static const char *const hosts[] = {"localhost"};
static const char *const ips[] = {"127.0.0.1", "::1"};

static void fixture_cleanup(void)
{
    for (int i = 0; i < F_COUNT; i++) {
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
        fprintf(stderr, "fixture %s: %s\n", fnames[i], why);
        return -1;
    }
    snprintf(fx.pem[i], sizeof fx.pem[i], "%s/%s.pem", fx.dir, fnames[i]);
    snprintf(fx.key[i], sizeof fx.key[i], "%s/%s.key", fx.dir, fnames[i]);
    if (usp_cert_write(fx.c[i], fx.pem[i], fx.key[i], why, sizeof why) != 0) {
        fprintf(stderr, "fixture %s: %s\n", fnames[i], why);
        return -1;
    }
    return 0;
}

static struct usp_cert_spec leaf(const char *cn, const char *const *eid, int64_t nb, int64_t na,
                                 const struct usp_cert *issuer)
{
    return (struct usp_cert_spec){.use = USP_CERT_USE_PEER,
                                  .common_name = cn,
                                  .not_before = nb,
                                  .not_after = na,
                                  .eids = eid,
                                  .neids = 1,
                                  .issuer = issuer};
}

/* True when the fixture is there; the calling test fails otherwise. */
static bool fixture(void)
{
    if (fx.ready || fx.failed) {
        CU_ASSERT_FATAL(fx.ready);
        return fx.ready;
    }
    fx.failed = true;
    snprintf(fx.dir, sizeof fx.dir, "/tmp/usp-certs-XXXXXX");
    if (!mkdtemp(fx.dir)) {
        fx.dir[0] = '\0';
        CU_FAIL_FATAL("mkdtemp");
        return false;
    }
    atexit(fixture_cleanup);
    static const char *const agent[] = {AGENT_EID}, *const ctl[] = {CTL_EID},
                             *const shared[] = {SHARED_PAT};
    struct usp_cert_spec ca = {.use = USP_CERT_USE_CA,
                               .common_name = "test CA",
                               .not_before = -3600,
                               .not_after = 30 * DAY};
    struct usp_cert_spec other = ca;
    other.common_name = "other CA";
    struct usp_cert_spec s[F_COUNT];
    if (make(F_CA, &ca) || make(F_OTHER_CA, &other))
        goto out;
    s[F_CTL] = leaf(CTL_EID, ctl, -3600, DAY, fx.c[F_CA]);
    s[F_CTL].dns = hosts;
    s[F_CTL].ndns = 1;
    s[F_CTL].ips = ips;
    s[F_CTL].nips = 2;
    s[F_CTL_EXP] = s[F_CTL];
    s[F_CTL_EXP].not_before = -3 * DAY;
    s[F_CTL_EXP].not_after = -DAY;
    s[F_AGENT] = leaf(AGENT_EID, agent, -3600, DAY, fx.c[F_CA]);
    s[F_AGENT_EXP] = leaf(AGENT_EID, agent, -3 * DAY, -DAY, fx.c[F_CA]);
    s[F_AGENT_NYV] = leaf(AGENT_EID, agent, DAY, 3 * DAY, fx.c[F_CA]);
    s[F_AGENT_OTHER] = leaf(AGENT_EID, agent, -3600, DAY, fx.c[F_OTHER_CA]);
    s[F_AGENT_SELF] = leaf(AGENT_EID, agent, -3600, DAY, NULL);
    s[F_SHARED] = leaf(SHARED_PAT, shared, -3600, DAY, fx.c[F_CA]);
    for (int i = 0; i < F_COUNT; i++)
        if (i != F_CA && i != F_OTHER_CA && make(i, &s[i]))
            goto out;
    fx.ready = true;
    fx.failed = false;
out:
    CU_ASSERT_FATAL(fx.ready);
    return fx.ready;
}

/* ---- A handshake in memory ------------------------------------------------ */

struct hs {
    bool ok; /* both ends finished and exchanged data */
    bool client_failed, server_failed;
    long client_verify; /* SSL_get_verify_result of each end */
    long server_verify;
    struct usp_tls_ids *client_saw, *server_saw; /* the peer's Endpoint IDs */
};

static bool step(SSL *ssl, bool *done, bool *failed)
{
    if (*done || *failed)
        return false;
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        *done = true;
        return true;
    }
    int e = SSL_get_error(ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        *failed = true;
    return false;
}

/* Pumps a client and a server joined by a BIO pair until both finish or
 * one fails, then sends "ping" and "pong" across. */
static void handshake(SSL_CTX *cctx, SSL_CTX *sctx, const char *expect_host, struct hs *r)
{
    memset(r, 0, sizeof *r);
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *bc = NULL, *bs = NULL;
    CU_ASSERT_FATAL(c && s && BIO_new_bio_pair(&bc, 0, &bs, 0) == 1);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (expect_host)
        CU_ASSERT_EQUAL(usp_tls_expect_host(c, expect_host), 0);
    bool cdone = false, sdone = false;
    for (int i = 0; i < 50 && !(cdone && sdone) && !r->client_failed && !r->server_failed; i++) {
        step(c, &cdone, &r->client_failed);
        step(s, &sdone, &r->server_failed);
    }
    /* A server that rejects the client in TLS 1.3 does so after the client
     * has finished: let the client read the alert. */
    char buf[8] = "";
    if (cdone && sdone && !r->client_failed && !r->server_failed) {
        bool sent = SSL_write(c, "ping", 4) == 4;
        int n = SSL_read(s, buf, sizeof buf);
        bool got = n == 4 && !memcmp(buf, "ping", 4);
        bool back = got && SSL_write(s, "pong", 4) == 4;
        n = SSL_read(c, buf, sizeof buf);
        r->ok = sent && back && n == 4 && !memcmp(buf, "pong", 4);
    }
    r->client_verify = SSL_get_verify_result(c);
    r->server_verify = SSL_get_verify_result(s);
    if (r->ok) {
        char why[300];
        CU_ASSERT_EQUAL(usp_tls_ids_from_ssl(c, &r->client_saw, why, sizeof why), 0);
        CU_ASSERT_EQUAL(usp_tls_ids_from_ssl(s, &r->server_saw, why, sizeof why), 0);
    }
    SSL_free(c);
    SSL_free(s);
    ERR_clear_error();
}

static void hs_free(struct hs *r)
{
    usp_tls_ids_free(r->client_saw);
    usp_tls_ids_free(r->server_saw);
}

static SSL_CTX *ctx(enum usp_tls_role role, int ca, int leaf_i, unsigned flags)
{
    struct usp_tls_files f = {.ca_file = fx.pem[ca],
                              .cert_file = leaf_i >= 0 ? fx.pem[leaf_i] : NULL,
                              .key_file = leaf_i >= 0 ? fx.key[leaf_i] : NULL};
    SSL_CTX *x = NULL;
    char why[300] = "";
    int rc = usp_tls_ctx_new(role, &f, flags, &x, why, sizeof why);
    if (rc)
        fprintf(stderr, "usp_tls_ctx_new: %s\n", why);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return x;
}

/* Agent (client, certificate `agent`) to controller (server). */
static void agent_to_controller(int agent, int controller, unsigned server_flags, struct hs *r)
{
    SSL_CTX *cc = ctx(USP_TLS_CLIENT, F_CA, agent, 0);
    SSL_CTX *sc = ctx(USP_TLS_SERVER, F_CA, controller, server_flags);
    handshake(cc, sc, NULL, r);
    SSL_CTX_free(cc);
    SSL_CTX_free(sc);
}

/* ---- Tests: generating ---------------------------------------------------- */

static void test_generate_write_load(void)
{
    if (!fixture())
        return;
    char why[300];
    struct usp_cert *c = NULL;
    CU_ASSERT_EQUAL(usp_cert_load(fx.pem[F_AGENT], fx.key[F_AGENT], &c, why, sizeof why), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(X509_cmp(usp_cert_x509(c), usp_cert_x509(fx.c[F_AGENT])), 0);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(usp_cert_pkey(c), usp_cert_pkey(fx.c[F_AGENT])), 1);

    /* Extensions as documented. */
    X509 *x = usp_cert_x509(c);
    uint32_t ex = X509_get_extension_flags(x);
    CU_ASSERT_FALSE(ex & EXFLAG_CA);
    CU_ASSERT_TRUE(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    CU_ASSERT_FALSE(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    CU_ASSERT_EQUAL(X509_get_extended_key_usage(x) & (XKU_SSL_SERVER | XKU_SSL_CLIENT),
                    XKU_SSL_SERVER | XKU_SSL_CLIENT);
    CU_ASSERT_PTR_NOT_NULL(X509_get0_subject_key_id(x));
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    CU_ASSERT_PTR_NOT_NULL(aki);
    CU_ASSERT(aki &&
              !ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(usp_cert_x509(fx.c[F_CA]))));
    CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(usp_cert_pkey(c)), EVP_PKEY_EC);
    X509 *cax = usp_cert_x509(fx.c[F_CA]);
    CU_ASSERT_TRUE(X509_get_extension_flags(cax) & EXFLAG_CA);
    CU_ASSERT_TRUE(X509_get_key_usage(cax) & KU_KEY_CERT_SIGN);
    CU_ASSERT_EQUAL(X509_check_issued(cax, x), X509_V_OK);
    CU_ASSERT_EQUAL(X509_verify(x, X509_get0_pubkey(cax)), 1);

    /* A leaf made in memory works where OpenSSL wants its public key. */
    X509 *mem = usp_cert_x509(fx.c[F_AGENT]);
    CU_ASSERT_PTR_NOT_NULL(X509_get0_pubkey(mem));
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
    CU_ASSERT_EQUAL(SSL_CTX_use_certificate(sc, mem), 1);
    CU_ASSERT_EQUAL(SSL_CTX_use_PrivateKey(sc, usp_cert_pkey(fx.c[F_AGENT])), 1);
    SSL_CTX_free(sc);
    struct usp_cert_info info;
    usp_cert_info(fx.c[F_AGENT], &info);
    CU_ASSERT_STRING_EQUAL(info.san, "URI:urn:bbf:usp:id:" AGENT_EID);
    CU_ASSERT_EQUAL(strncmp(info.fingerprint, "sha256:", 7), 0);

    char san[256];
    usp_cert_san_text(usp_cert_x509(fx.c[F_CTL]), san, sizeof san);
    CU_ASSERT_STRING_EQUAL(san, "URI:urn:bbf:usp:id:" CTL_EID ",DNS:localhost,IP:127.0.0.1,IP:::1");
    usp_cert_san_text(cax, san, sizeof san);
    CU_ASSERT_STRING_EQUAL(san, "-");
    usp_cert_san_text(usp_cert_x509(fx.c[F_CTL]), san, 24);
    CU_ASSERT_EQUAL(strlen(san), 23);
    CU_ASSERT_STRING_EQUAL(san + 20, "...");

    char fp[USP_CERT_FINGERPRINT_LEN + 1], small[10];
    CU_ASSERT_EQUAL(usp_cert_fingerprint(x, fp, sizeof fp), 0);
    CU_ASSERT_EQUAL(strncmp(fp, "sha256:", 7), 0);
    CU_ASSERT_EQUAL(strlen(fp), USP_CERT_FINGERPRINT_LEN);
    CU_ASSERT_EQUAL(usp_cert_fingerprint(x, small, sizeof small), USP_ERANGE);
    char until[32];
    CU_ASSERT_EQUAL(usp_cert_not_after_text(x, until, sizeof until), 0);
    CU_ASSERT_EQUAL(strlen(until), 20);
    CU_ASSERT_EQUAL(until[19], 'Z');

    /* Keys are private to their owner. */
    struct stat st;
    CU_ASSERT_EQUAL(stat(fx.key[F_AGENT], &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(stat(fx.pem[F_AGENT], &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0644);
    usp_cert_free(c);
}

static void test_matches(void)
{
    if (!fixture())
        return;
    static const char *const agent[] = {AGENT_EID}, *const other[] = {"os::012345-SIM000002"};
    char why[300];
    struct usp_cert_spec s = leaf(AGENT_EID, agent, -3600, DAY, fx.c[F_CA]);
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &s, why, sizeof why), 0);
    /* Each difference is named. */
    s.eids = other;
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &s, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "subjectAltName"));
    s.eids = agent;
    s.issuer = fx.c[F_OTHER_CA];
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &s, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "signed"));
    s.issuer = fx.c[F_CA];
    s.key_type = USP_CERT_KEY_RSA;
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &s, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "RSA"));
    s.key_type = USP_CERT_KEY_EC;
    s.use = USP_CERT_USE_CLIENT;
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &s, why, sizeof why), USP_EINVAL);
    s.use = USP_CERT_USE_PEER;
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT_EXP], &s, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "expired"));
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT_NYV], &s, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "not valid yet"));
    /* An expired spec matches the expired certificate, not the good one. */
    s.not_before = -3 * DAY;
    s.not_after = -DAY;
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT_EXP], &s, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &s, why, sizeof why), USP_EINVAL);
    /* Self-signed: no issuer. */
    struct usp_cert_spec self = leaf(AGENT_EID, agent, -3600, DAY, NULL);
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT_SELF], &self, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT], &self, why, sizeof why), USP_EINVAL);
    /* The given key. */
    self.key = usp_cert_pkey(fx.c[F_AGENT_SELF]);
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT_SELF], &self, why, sizeof why), 0);
    self.key = usp_cert_pkey(fx.c[F_AGENT]);
    CU_ASSERT_EQUAL(usp_cert_matches(fx.c[F_AGENT_SELF], &self, why, sizeof why), USP_EINVAL);
}

static void test_new_errors(void)
{
    if (!fixture())
        return;
    char why[300];
    struct usp_cert *c = NULL;
    static const char *const bad_eid[] = {"nonsense"}, *const bad_pat[] = {"self::*"},
                             *const bad_ip[] = {"300.1.1.1"}, *const bad_uri[] = {"a\tb"};
    struct usp_cert_spec s = {.use = USP_CERT_USE_PEER, .not_after = DAY};
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "common name"));
    s.common_name = "x";
    s.not_after = s.not_before;
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "empty"));
    s.not_after = DAY;
    s.eids = bad_eid;
    s.neids = 1;
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "nonsense"));
    s.eids = bad_pat;
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "R-SEC.12"));
    s.neids = 0;
    s.ips = bad_ip;
    s.nips = 1;
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "300.1.1.1"));
    s.nips = 0;
    s.uris = bad_uri;
    s.nuris = 1;
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    s.nuris = 0;
    s.key_type = USP_CERT_KEY_RSA;
    s.rsa_bits = 1024;
    CU_ASSERT_EQUAL(usp_cert_new(&s, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "1024"));
    CU_ASSERT_PTR_NULL(c);

    /* An issuer loaded without its key cannot sign. */
    struct usp_cert *pub = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_cert_load(fx.pem[F_CA], NULL, &pub, why, sizeof why), 0);
    struct usp_cert_spec t = {
        .use = USP_CERT_USE_PEER, .common_name = "x", .not_after = DAY, .issuer = pub};
    CU_ASSERT_EQUAL(usp_cert_new(&t, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "private key"));
    CU_ASSERT_EQUAL(usp_cert_matches(pub, &t, why, sizeof why), USP_EINVAL);
    usp_cert_free(pub);
}

static void test_load_errors(void)
{
    if (!fixture())
        return;
    char why[300], path[128];
    struct usp_cert *c = NULL;
    snprintf(path, sizeof path, "%s/missing.pem", fx.dir);
    CU_ASSERT_EQUAL(usp_cert_load(path, NULL, &c, why, sizeof why), USP_ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, path));
    /* Not PEM: the file and OpenSSL's reason. */
    snprintf(path, sizeof path, "%s/garbage.pem", fx.dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("this is not a certificate\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(usp_cert_load(path, NULL, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "no start line"));
    CU_ASSERT_EQUAL(usp_cert_load(fx.pem[F_AGENT], path, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "private key"));
    unlink(path);
    /* A key that belongs to another certificate. */
    CU_ASSERT_EQUAL(usp_cert_load(fx.pem[F_AGENT], fx.key[F_CTL], &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "does not belong"));
    CU_ASSERT_PTR_NULL(c);
    /* A folder is not a file. */
    CU_ASSERT_EQUAL(usp_cert_load(fx.dir, NULL, &c, why, sizeof why), USP_EINVAL);
    /* Writing where nothing can be written names the file. */
    snprintf(path, sizeof path, "%s/no/such/dir/x.pem", fx.dir);
    CU_ASSERT_EQUAL(usp_cert_write(fx.c[F_AGENT], path, NULL, why, sizeof why), USP_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "no/such/dir/x.pem"));
}

static void test_rsa(void)
{
    if (!fixture())
        return;
    static const char *const agent[] = {"os::012345-SIM000009"};
    struct usp_cert_spec s = leaf("rsa", agent, -3600, DAY, fx.c[F_CA]);
    s.key_type = USP_CERT_KEY_RSA;
    struct usp_cert *c = NULL;
    char why[300];
    CU_ASSERT_EQUAL_FATAL(usp_cert_new(&s, &c, why, sizeof why), 0);
    CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(usp_cert_pkey(c)), EVP_PKEY_RSA);
    CU_ASSERT_EQUAL(EVP_PKEY_get_bits(usp_cert_pkey(c)), 2048);
    CU_ASSERT_TRUE(X509_get_key_usage(usp_cert_x509(c)) & KU_KEY_ENCIPHERMENT);
    CU_ASSERT_EQUAL(usp_cert_matches(c, &s, why, sizeof why), 0);
    /* An RSA leaf under the EC CA shakes hands like any other. */
    char pem[160], key[160];
    snprintf(pem, sizeof pem, "%s/rsa.pem", fx.dir);
    snprintf(key, sizeof key, "%s/rsa.key", fx.dir);
    CU_ASSERT_EQUAL_FATAL(usp_cert_write(c, pem, key, why, sizeof why), 0);
    struct usp_tls_files cf = {.ca_file = fx.pem[F_CA], .cert_file = pem, .key_file = key};
    SSL_CTX *cc = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_tls_ctx_new(USP_TLS_CLIENT, &cf, 0, &cc, why, sizeof why), 0);
    SSL_CTX *sc = ctx(USP_TLS_SERVER, F_CA, F_CTL, 0);
    struct hs r;
    handshake(cc, sc, NULL, &r);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(r.server_saw, 0, NULL), "os::012345-SIM000009");
    hs_free(&r);
    SSL_CTX_free(cc);
    SSL_CTX_free(sc);
    unlink(pem);
    unlink(key);
    usp_cert_free(c);
}

/* ---- Tests: handshakes ---------------------------------------------------- */

static void test_handshake_valid(void)
{
    if (!fixture())
        return;
    struct hs r;
    agent_to_controller(F_AGENT, F_CTL, 0, &r);
    CU_ASSERT_TRUE(r.ok);
    CU_ASSERT_EQUAL(r.client_verify, X509_V_OK);
    CU_ASSERT_EQUAL(r.server_verify, X509_V_OK);
    /* Each end sees the other's Endpoint ID; the controller checks from_id. */
    CU_ASSERT_EQUAL(usp_tls_ids_count(r.server_saw), 1);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(r.server_saw, 0, NULL), AGENT_EID);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(r.client_saw, 0, NULL), CTL_EID);
    char why[300];
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, AGENT_EID, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, "os::012345-SIM000002", why, sizeof why),
                    USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, AGENT_EID));
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.client_saw, CTL_EID, why, sizeof why), 0);
    hs_free(&r);
}

static void test_handshake_host(void)
{
    if (!fixture())
        return;
    SSL_CTX *cc = ctx(USP_TLS_CLIENT, F_CA, F_AGENT, 0);
    SSL_CTX *sc = ctx(USP_TLS_SERVER, F_CA, F_CTL, 0);
    struct hs r;
    static const char *const good[] = {"localhost", "127.0.0.1", "::1", "[::1]"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        handshake(cc, sc, good[i], &r);
        CU_ASSERT_TRUE(r.ok);
        hs_free(&r);
    }
    handshake(cc, sc, "wrong.example.org", &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.client_failed);
    CU_ASSERT_EQUAL(r.client_verify, X509_V_ERR_HOSTNAME_MISMATCH);
    hs_free(&r);
    handshake(cc, sc, "10.9.8.7", &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_EQUAL(r.client_verify, X509_V_ERR_IP_ADDRESS_MISMATCH);
    hs_free(&r);
    SSL *ssl = SSL_new(cc);
    CU_ASSERT_EQUAL(usp_tls_expect_host(ssl, ""), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_tls_expect_host(ssl, NULL), USP_EINVAL);
    SSL_free(ssl);
    SSL_CTX_free(cc);
    SSL_CTX_free(sc);
}

static void test_handshake_expired(void)
{
    if (!fixture())
        return;
    struct hs r;
    /* The controller refuses an expired agent... */
    agent_to_controller(F_AGENT_EXP, F_CTL, 0, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.server_failed);
    CU_ASSERT_EQUAL(r.server_verify, X509_V_ERR_CERT_HAS_EXPIRED);
    /* ...and the agent an expired controller. */
    agent_to_controller(F_AGENT, F_CTL_EXP, 0, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.client_failed);
    CU_ASSERT_EQUAL(r.client_verify, X509_V_ERR_CERT_HAS_EXPIRED);
    /* Without absolute time the dates are not checked (R-SEC.19). */
    agent_to_controller(F_AGENT_EXP, F_CTL, USP_TLS_NO_TIME_CHECK, &r);
    CU_ASSERT_TRUE(r.ok);
    hs_free(&r);
}

static void test_handshake_not_yet_valid(void)
{
    if (!fixture())
        return;
    struct hs r;
    agent_to_controller(F_AGENT_NYV, F_CTL, 0, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.server_failed);
    CU_ASSERT_EQUAL(r.server_verify, X509_V_ERR_CERT_NOT_YET_VALID);
}

static void test_handshake_unknown_ca(void)
{
    if (!fixture())
        return;
    struct hs r;
    agent_to_controller(F_AGENT_OTHER, F_CTL, 0, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.server_failed);
    CU_ASSERT_EQUAL(r.server_verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    /* An agent that trusts only the other CA refuses the controller (whose
     * server sends the test CA along: a self-signed root nobody trusts). */
    SSL_CTX *cc = ctx(USP_TLS_CLIENT, F_OTHER_CA, F_AGENT_OTHER, 0);
    SSL_CTX *sc = ctx(USP_TLS_SERVER, F_CA, F_CTL, 0);
    handshake(cc, sc, NULL, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.client_failed);
    CU_ASSERT_EQUAL(r.client_verify, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
    SSL_CTX_free(cc);
    SSL_CTX_free(sc);
}

static void test_handshake_self_signed(void)
{
    if (!fixture())
        return;
    struct hs r;
    agent_to_controller(F_AGENT_SELF, F_CTL, 0, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.server_failed);
    CU_ASSERT_EQUAL(r.server_verify, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
}

static void test_handshake_needs_client_cert(void)
{
    if (!fixture())
        return;
    struct hs r;
    SSL_CTX *cc = ctx(USP_TLS_CLIENT, F_CA, -1, 0);
    SSL_CTX *sc = ctx(USP_TLS_SERVER, F_CA, F_CTL, 0);
    handshake(cc, sc, NULL, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.server_failed);
    /* The same client with a certificate set per connection gets in. */
    SSL *c = SSL_new(cc);
    char why[300];
    CU_ASSERT_EQUAL(usp_tls_use_files(c, fx.pem[F_AGENT], fx.key[F_AGENT], why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_use_files(c, fx.pem[F_AGENT], fx.key[F_CTL], why, sizeof why), USP_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, fx.key[F_CTL]));
    SSL_free(c);
    SSL_CTX_free(cc);
    SSL_CTX_free(sc);
}

static void test_tls_versions(void)
{
    if (!fixture())
        return;
    SSL_CTX *sc = ctx(USP_TLS_SERVER, F_CA, F_CTL, 0);
    CU_ASSERT_EQUAL(SSL_CTX_get_min_proto_version(sc), TLS1_2_VERSION);
    CU_ASSERT_TRUE(SSL_CTX_get_verify_mode(sc) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    /* A TLS 1.1 client, allowed to try it, is turned away by the server. */
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);
    SSL_CTX_set_security_level(old, 0);
    SSL_CTX_set_min_proto_version(old, TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
    SSL_CTX_set_verify(old, SSL_VERIFY_NONE, NULL);
    struct hs r;
    handshake(old, sc, NULL, &r);
    CU_ASSERT_FALSE(r.ok);
    CU_ASSERT_TRUE(r.server_failed);
    /* A TLS 1.2-only client (the oldest allowed) is accepted. */
    SSL_CTX *cc = ctx(USP_TLS_CLIENT, F_CA, F_AGENT, 0);
    SSL_CTX_set_max_proto_version(cc, TLS1_2_VERSION);
    handshake(cc, sc, NULL, &r);
    CU_ASSERT_TRUE(r.ok);
    hs_free(&r);
    SSL_CTX_free(cc);
    SSL_CTX_free(old);
    SSL_CTX_free(sc);
    /* DTLS for CoAP: 1.2 at least as well. */
    SSL_CTX *d = ctx(USP_TLS_CLIENT, F_CA, F_AGENT, USP_TLS_DTLS);
    CU_ASSERT_EQUAL(SSL_CTX_get_min_proto_version(d), DTLS1_2_VERSION);
    SSL_CTX_free(d);
}

static void test_ctx_errors(void)
{
    if (!fixture())
        return;
    char why[300], path[128];
    SSL_CTX *x = NULL;
    struct usp_tls_files f = {0};
    CU_ASSERT_EQUAL(usp_tls_ctx_new(USP_TLS_CLIENT, &f, 0, &x, why, sizeof why), USP_EINVAL);
    snprintf(path, sizeof path, "%s/missing-ca.pem", fx.dir);
    f.ca_file = path;
    CU_ASSERT_EQUAL(usp_tls_ctx_new(USP_TLS_CLIENT, &f, 0, &x, why, sizeof why), USP_ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, path));
    f.ca_file = fx.pem[F_CA];
    f.cert_file = fx.pem[F_AGENT];
    CU_ASSERT_EQUAL(usp_tls_ctx_new(USP_TLS_CLIENT, &f, 0, &x, why, sizeof why), USP_EINVAL);
    f.key_file = fx.key[F_CTL];
    CU_ASSERT_EQUAL(usp_tls_ctx_new(USP_TLS_SERVER, &f, 0, &x, why, sizeof why), USP_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, fx.key[F_CTL]));
    /* A CA file that is not PEM: the file and OpenSSL's reason. */
    snprintf(path, sizeof path, "%s/bad-ca.pem", fx.dir);
    FILE *fp = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", fp);
    fclose(fp);
    f.ca_file = path;
    f.key_file = fx.key[F_AGENT];
    CU_ASSERT_EQUAL(usp_tls_ctx_new(USP_TLS_CLIENT, &f, 0, &x, why, sizeof why), USP_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, path));
    CU_ASSERT_PTR_NOT_NULL(strchr(why + strlen(path), ':'));
    CU_ASSERT_PTR_NULL(x);
    unlink(path);
}

/* ---- Tests: Endpoint IDs -------------------------------------------------- */

/* A self-signed certificate with these SAN entries, for extraction. */
static X509 *san_cert(const char *const *uris, size_t nuris, const char *const *dns, size_t ndns,
                      struct usp_cert **keep)
{
    struct usp_cert_spec s = {.use = USP_CERT_USE_PEER,
                              .common_name = "san",
                              .not_after = DAY,
                              .uris = uris,
                              .nuris = nuris,
                              .dns = dns,
                              .ndns = ndns,
                              .key = usp_cert_pkey(fx.c[F_AGENT])};
    char why[300];
    CU_ASSERT_EQUAL_FATAL(usp_cert_new(&s, keep, why, sizeof why), 0);
    return usp_cert_x509(*keep);
}

static void test_ids_from_cert(void)
{
    if (!fixture())
        return;
    char why[400];
    struct usp_tls_ids *ids = NULL;
    struct usp_cert *c = NULL;
    unsigned flags;

    /* The controller: its URN; "localhost" is no fqdn Endpoint ID. */
    CU_ASSERT_EQUAL(usp_tls_ids_from_cert(usp_cert_x509(fx.c[F_CTL]), &ids, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_count(ids), 1);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(ids, 0, &flags), CTL_EID);
    CU_ASSERT_EQUAL(flags, 0);
    CU_ASSERT_PTR_NULL(usp_tls_ids_get(ids, 1, NULL));
    usp_tls_ids_free(ids);

    /* Every kind at once, the bad ones skipped. */
    static const char *const uris[] = {
        "URN:BBF:USP:ID:proto::upper-prefix", /* RFC 8141: the prefix in any case */
        "urn:bbf:usp:id:bogus",               /* not an Endpoint ID */
        "https://example.org/x",              /* some other URI */
        "urn:bbf:usp:id:self::*",             /* wildcard not allowed for self */
        "urn:bbf:usp:id:oui:00256D:box-*",    /* a good pattern */
    };
    static const char *const dns[] = {"Agent7.Example.org", "*.example.org", "localhost"};
    X509 *x = san_cert(uris, 5, dns, 3, &c);
    CU_ASSERT_EQUAL(usp_tls_ids_from_cert(x, &ids, why, sizeof why), 0);
    CU_ASSERT_EQUAL_FATAL(usp_tls_ids_count(ids), 3);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(ids, 0, &flags), "proto::upper-prefix");
    CU_ASSERT_EQUAL(flags, 0);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(ids, 1, &flags), "oui:00256D:box-*");
    CU_ASSERT_EQUAL(flags, USP_TLS_ID_WILDCARD);
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(ids, 2, &flags), "fqdn::Agent7.Example.org");
    CU_ASSERT_EQUAL(flags, USP_TLS_ID_DNS);

    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "proto::upper-prefix", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "oui:00256D:box-17", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "oui:00256D:box-", why, sizeof why), USP_EPERM);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "oui:00256E:box-17", why, sizeof why), USP_EPERM);
    /* A dNSName matches an fqdn from_id without regard to case, nothing else. */
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "fqdn::agent7.example.org", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "fqdn::agent8.example.org", why, sizeof why), USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "(dNSName)"));
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "self::bogus", why, sizeof why), USP_EPERM);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, "not an eid", why, sizeof why), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_tls_ids_match(ids, NULL, why, sizeof why), USP_EINVAL);
    usp_tls_ids_free(ids);
    usp_cert_free(c);

    /* Nothing usable: ENOENT, saying what was skipped and why. */
    static const char *const only_bad[] = {"urn:bbf:usp:id:self::*"};
    x = san_cert(only_bad, 1, NULL, 0, &c);
    ids = NULL;
    CU_ASSERT_EQUAL(usp_tls_ids_from_cert(x, &ids, why, sizeof why), USP_ENOENT);
    CU_ASSERT_PTR_NULL(ids);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "R-SEC.12"));
    usp_cert_free(c);
    CU_ASSERT_EQUAL(usp_tls_ids_from_cert(usp_cert_x509(fx.c[F_CA]), &ids, why, sizeof why),
                    USP_ENOENT);
    CU_ASSERT_EQUAL(usp_tls_ids_count(NULL), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(NULL, AGENT_EID, why, sizeof why), USP_EPERM);
}

struct pat {
    const char *pattern;
    bool ok;
};

static const struct pat pats[] = {
    {"os::012345-*", true},
    {"os::012345-SIM*", true},
    {"os::012345-SIM*-*", true},
    {"oui:00256D:*", true},
    {"cid:3AA3F8:a*b", true},
    {"pen:3561:*", true},
    {"ops::012345-STB-*", true},
    {"ops::012345-*-*", true},
    {"self::*", false}, /* R-SEC.12: not an allowed scheme */
    {"proto::x*", false},
    {"uuid::*", false},
    {"fqdn::*.example.org", false},
    {"os::*", false}, /* the OUI names the assigning entity */
    {"os::0123*-x", false},
    {"os::012345*", false},
    {"ops::*-STB-1", false},
    {"oui:0025*:x", false}, /* only the instance-id */
    {"*::x", false},
    {"os::012345-SIM", false},  /* no wildcard: not a pattern */
    {"ops::012345-*", false},   /* "X" for "*": no SerialNumber */
    {"oui:00256D:a b*", false}, /* still R-ARC.5 characters */
    {"oui:00256D:*xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", false}, /* 51 */
    {"os", false},
    {"", false},
};

static void test_pattern_check(void)
{
    char why[300];
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
        int rc = usp_tls_eid_pattern_check(pats[i].pattern, why, sizeof why);
        if ((rc == 0) != pats[i].ok)
            fprintf(stderr, "pattern '%s': rc %d (%s)\n", pats[i].pattern, rc, why);
        CU_ASSERT_EQUAL(rc == 0, pats[i].ok);
        if (!pats[i].ok)
            CU_ASSERT_NOT_EQUAL(why[0], '\0');
    }
    CU_ASSERT_EQUAL(usp_tls_eid_pattern_check(NULL, why, sizeof why), USP_EINVAL);
}

struct m {
    const char *pattern, *eid;
    bool match;
};

static const struct m ms[] = {
    {"os::012345-SIM*", "os::012345-SIM000001", true},
    {"os::012345-SIM*", "os::012345-SIM1", true},
    {"os::012345-SIM*", "os::012345-SIM", false}, /* "*" is one or more */
    {"os::012345-SIM*", "os::012345-SOM000001", false},
    {"os::012345-SIM*", "os::012346-SIM000001", false},
    {"os::012345-SIM*", "ops::012345-SIM-1", false},
    {"os::012345-*", "os::012345-ANYTHING.AT_ALL", true},
    {"oui:00256D:*", "oui:00256D:x", true},
    {"oui:00256D:*", "oui:00256d:x", false}, /* Endpoint IDs compare as strings */
    {"oui:00256D:*", "cid:00256D:x", false},
    {"cid:3AA3F8:a*b", "cid:3AA3F8:axyzb", true},
    {"cid:3AA3F8:a*b", "cid:3AA3F8:ab", false},
    {"cid:3AA3F8:a*b", "cid:3AA3F8:abab", true},
    {"cid:3AA3F8:a*b", "cid:3AA3F8:abba", false},
    {"cid:3AA3F8:*a*", "cid:3AA3F8:xay", true},
    {"cid:3AA3F8:*a*", "cid:3AA3F8:ay", false},
    {"cid:3AA3F8:**", "cid:3AA3F8:x", false},
    {"cid:3AA3F8:**", "cid:3AA3F8:xy", true},
    {"ops::012345-STB-*", "ops::012345-STB-77", true},
    {"ops::012345-*-*", "ops::012345-STB-77", true},
    {"os::012345-*", "not an eid", false},
};

static void test_pattern_match(void)
{
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        bool got = usp_tls_eid_pattern_match(ms[i].pattern, ms[i].eid);
        if (got != ms[i].match)
            fprintf(stderr, "'%s' ~ '%s': got %d\n", ms[i].pattern, ms[i].eid, got);
        CU_ASSERT_EQUAL(got, ms[i].match);
    }
    CU_ASSERT_FALSE(usp_tls_eid_pattern_match(NULL, AGENT_EID));
    CU_ASSERT_FALSE(usp_tls_eid_pattern_match("os::012345-*", NULL));
}

/* The shared certificate over a real handshake: any agent of the fleet is
 * authenticated by it, nobody else. */
static void test_shared_certificate(void)
{
    if (!fixture())
        return;
    struct hs r;
    agent_to_controller(F_SHARED, F_CTL, 0, &r);
    CU_ASSERT_TRUE_FATAL(r.ok);
    unsigned flags = 0;
    CU_ASSERT_STRING_EQUAL(usp_tls_ids_get(r.server_saw, 0, &flags), SHARED_PAT);
    CU_ASSERT_EQUAL(flags, USP_TLS_ID_WILDCARD);
    char why[300];
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, "os::012345-SIM000001", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, "os::012345-SIM100000", why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, "os::012345-XYZ", why, sizeof why), USP_EPERM);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, SHARED_PAT));
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, "os::999999-SIM000001", why, sizeof why),
                    USP_EPERM);
    CU_ASSERT_EQUAL(usp_tls_ids_match(r.server_saw, CTL_EID, why, sizeof why), USP_EPERM);
    hs_free(&r);
    /* A peer that did not verify gives no Endpoint IDs. */
    CU_ASSERT_EQUAL(usp_tls_ids_from_ssl(NULL, &r.server_saw, why, sizeof why), USP_EPERM);
}

void suite_certs(void)
{
    USP_SUITE("certs", USP_TEST(test_generate_write_load), USP_TEST(test_matches),
              USP_TEST(test_new_errors), USP_TEST(test_load_errors), USP_TEST(test_rsa),
              USP_TEST(test_handshake_valid), USP_TEST(test_handshake_host),
              USP_TEST(test_handshake_expired), USP_TEST(test_handshake_not_yet_valid),
              USP_TEST(test_handshake_unknown_ca), USP_TEST(test_handshake_self_signed),
              USP_TEST(test_handshake_needs_client_cert), USP_TEST(test_tls_versions),
              USP_TEST(test_ctx_errors), USP_TEST(test_ids_from_cert), USP_TEST(test_pattern_check),
              USP_TEST(test_pattern_match), USP_TEST(test_shared_certificate));
}
