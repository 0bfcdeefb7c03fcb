/* TLS for the WebSocket binding (wss://): the libwebsockets vhosts that
 * carry it and the checks made during a handshake. mtp_ws.c owns the
 * connections; this file knows nothing of them and is told what it needs.
 *
 * Client side: one vhost per context and (CA file, flags), given an SSL_CTX
 * of our own through provided_client_ssl_ctx (usp_tls_ctx_new: TLS 1.2+,
 * the server's certificate verified against the CA file only, R-MTP.1).
 * It is not the context's cached one (mtp__tls_ctx): libwebsockets sets
 * per-SSL callbacks only, but the context is handed to a library we do not
 * control, so it is not shared with other bindings. It has no certificate:
 * each connection sends its own (one per agent), set on its SSL when
 * libwebsockets first asks us about the server's certificate, which is
 * before our own certificate is chosen in TLS 1.2 and 1.3 alike (lws 4.1
 * offers no callback between SSL_new and the first SSL_connect). For the
 * same reason the server's name is checked here, on the leaf certificate
 * (X509_check_host / X509_check_ip_asc), rather than with
 * usp_tls_expect_host: libwebsockets derives the name from the Host header
 * by cutting at the first ':', which breaks IPv6 literals.
 *
 * Server side: libwebsockets 4.1 takes no SSL_CTX for a server vhost; it
 * makes one from the files, and we adjust it from
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: TLS 1.2 at least,
 * a trust store holding the CA file only, the date checks as asked.
 * LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT makes the client's
 * certificate required. One vhost per context and (CA, certificate, key,
 * flags), kept until the context goes: libwebsockets 4.1 on a foreign
 * libuv loop cannot destroy a vhost that had connections (see mtp_ws.c). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mtp_int.h"

struct ws_tls_vh {
    struct ws_tls_vh *next;
    struct lws_vhost *vh;
    SSL_CTX *own; /* client vhosts: ours, freed after the lws_context */
    bool server;
    unsigned flags;
    size_t len;
    char keys[]; /* CA, certificate, key, each terminated ("" when absent) */
};

/* What LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS applies, set
 * around lws_create_vhost (which calls it from inside). */
struct server_setup {
    const char *ca_file;
    unsigned flags;
    char why[160];
    bool failed;
};
static _Thread_local struct server_setup *pending;

/* Prototypes of the functions mtp_ws.c uses (it declares them too). */
int mtp__ws_tls_vhost(struct lws_context *lws, struct ws_tls_vh **list, bool server,
                      const struct usp_mtp_tls_config *tls, const struct lws_protocols *protocols,
                      const lws_retry_bo_t *policy, struct lws_vhost **out, char *why,
                      size_t whylen);
void mtp__ws_tls_vhosts_free(struct ws_tls_vh *list);
int mtp__ws_tls_server_ctx_setup(SSL_CTX *sc);
int mtp__ws_tls_client_verify(X509_STORE_CTX *x, SSL *ssl, int preverify_ok, const char *host,
                              const char *cert_file, const char *key_file, bool *set_up,
                              int *verify_err, char *why, size_t whylen);

static size_t keys_fill(char *dst, const char *ca, const char *cert, const char *key)
{
    const char *v[3] = {ca ? ca : "", cert ? cert : "", key ? key : ""};
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(v[i]) + 1;
        if (dst)
            memcpy(dst + n, v[i], l);
        n += l;
    }
    return n;
}

int mtp__ws_tls_server_ctx_setup(SSL_CTX *sc)
{
    struct server_setup *s = pending;
    if (!s || !sc)
        return 0; /* not a vhost of ours being made */
    ERR_clear_error();
    X509_STORE *st = X509_STORE_new();
    if (!st || !X509_STORE_load_file(st, s->ca_file)) {
        X509_STORE_free(st);
        snprintf(s->why, sizeof s->why, "CA file %s: cannot load", s->ca_file);
        s->failed = true;
        ERR_clear_error();
        return 1;
    }
    /* The CA file and nothing else is trusted for clients [R-MTP.1]. */
    SSL_CTX_set_cert_store(sc, st);
    if (!SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION)) {
        snprintf(s->why, sizeof s->why, "cannot require TLS 1.2");
        s->failed = true;
        ERR_clear_error();
        return 1;
    }
    if (s->flags & USP_TLS_NO_TIME_CHECK)
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(sc), X509_V_FLAG_NO_CHECK_TIME);
    /* Tells clients which CAs we accept, so that they pick the right
     * certificate. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(sc, names);
    /* Idle sessions keep no read and write buffers. */
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    /* lws 4.1 looks the client's SNI name up among the vhosts "on the same
     * port" and, finding none by that name, moves the SSL to the first one:
     * every adopted socket has port CONTEXT_PORT_NO_LISTEN_SERVER, so each
     * wss listener would show the first listener's certificate. A listener
     * has one certificate: SNI is not looked at. */
    SSL_CTX_set_tlsext_servername_callback(sc, NULL);
    ERR_clear_error();
    return 0;
}

static int make_client_vhost(struct lws_context *lws, const struct usp_mtp_tls_config *tls,
                             const struct lws_protocols *protocols, const lws_retry_bo_t *policy,
                             struct ws_tls_vh *e, char *why, size_t whylen)
{
    struct usp_tls_files f = {tls->ca_file, NULL, NULL};
    SSL_CTX *sc = NULL;
    int rc =
        usp_tls_ctx_new(USP_TLS_CLIENT, &f, tls->flags & USP_TLS_NO_TIME_CHECK, &sc, why, whylen);
    if (rc)
        return rc;
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.vhost_name = "usp-wss-client";
    info.retry_and_idle_policy = policy;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.provided_client_ssl_ctx = sc;
    e->vh = lws_create_vhost(lws, &info);
    if (!e->vh) {
        SSL_CTX_free(sc);
        return mtp__fail(why, whylen, USP_EIO, "libwebsockets cannot make a TLS client vhost");
    }
    e->own = sc;
    return 0;
}

static int make_server_vhost(struct lws_context *lws, const struct usp_mtp_tls_config *tls,
                             const struct lws_protocols *protocols, const lws_retry_bo_t *policy,
                             struct ws_tls_vh *e, char *why, size_t whylen)
{
    /* libwebsockets only logs why it cannot load a file: try them first
     * for a reason to give. */
    struct usp_tls_files f = {tls->ca_file, tls->cert_file, tls->key_file};
    SSL_CTX *probe = NULL;
    int rc = usp_tls_ctx_new(USP_TLS_SERVER, &f, tls->flags & USP_TLS_NO_TIME_CHECK, &probe, why,
                             whylen);
    if (rc)
        return rc;
    SSL_CTX_free(probe);
    struct server_setup s = {.ca_file = tls->ca_file, .flags = tls->flags};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* sockets come by adoption */
    info.protocols = protocols;
    info.vhost_name = "usp-wss-server";
    info.retry_and_idle_policy = policy;
    info.options =
        LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
    info.ssl_cert_filepath = tls->cert_file;
    info.ssl_private_key_filepath = tls->key_file;
    info.ssl_ca_filepath = tls->ca_file;
    info.ssl_options_set = (long)(SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1);
    struct server_setup *outer = pending;
    pending = &s;
    e->vh = lws_create_vhost(lws, &info);
    pending = outer;
    if (!e->vh || s.failed)
        return mtp__fail(why, whylen, USP_EIO, "libwebsockets cannot make a TLS server vhost%s%s",
                         s.failed ? ": " : "", s.failed ? s.why : "");
    return 0;
}

int mtp__ws_tls_vhost(struct lws_context *lws, struct ws_tls_vh **list, bool server,
                      const struct usp_mtp_tls_config *tls, const struct lws_protocols *protocols,
                      const lws_retry_bo_t *policy, struct lws_vhost **out, char *why,
                      size_t whylen)
{
    *out = NULL;
    /* A client vhost holds no certificate: keyed on the CA file alone. */
    const char *cert = server ? tls->cert_file : NULL, *key = server ? tls->key_file : NULL;
    unsigned flags = tls->flags & USP_TLS_NO_TIME_CHECK;
    size_t len = keys_fill(NULL, tls->ca_file, cert, key);
    for (struct ws_tls_vh *e = *list; e; e = e->next) {
        if (e->server == server && e->flags == flags && e->len == len) {
            char stackkeys[512];
            char *k = len <= sizeof stackkeys ? stackkeys : malloc(len);
            if (!k)
                return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
            keys_fill(k, tls->ca_file, cert, key);
            bool same = memcmp(e->keys, k, len) == 0;
            if (k != stackkeys)
                free(k);
            if (same) {
                *out = e->vh;
                return 0;
            }
        }
    }
    struct ws_tls_vh *e = calloc(1, sizeof *e + len);
    if (!e)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    e->server = server;
    e->flags = flags;
    e->len = len;
    keys_fill(e->keys, tls->ca_file, cert, key);
    int rc = server ? make_server_vhost(lws, tls, protocols, policy, e, why, whylen)
                    : make_client_vhost(lws, tls, protocols, policy, e, why, whylen);
    if (rc) {
        /* A vhost made but not usable stays with the lws_context. */
        free(e);
        return rc;
    }
    e->next = *list;
    *list = e;
    *out = e->vh;
    return 0;
}

void mtp__ws_tls_vhosts_free(struct ws_tls_vh *list)
{
    while (list) {
        struct ws_tls_vh *next = list->next;
        SSL_CTX_free(list->own);
        free(list);
        list = next;
    }
}

/* `host` without the brackets of an IPv6 literal, in `buf`; whether it is
 * a numeric address. */
static bool numeric_host(const char *host, char *buf, size_t n)
{
    size_t len = strlen(host);
    if (host[0] == '[' && len >= 2 && host[len - 1] == ']' && len - 2 < n) {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        snprintf(buf, n, "%s", host);
    }
    unsigned char addr[16];
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

int mtp__ws_tls_client_verify(X509_STORE_CTX *x, SSL *ssl, int preverify_ok, const char *host,
                              const char *cert_file, const char *key_file, bool *set_up,
                              int *verify_err, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!*set_up && ssl) {
        /* Our own certificate is chosen after the server's is verified. */
        *set_up = true;
        SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
        if (usp_tls_use_files(ssl, cert_file, key_file, why, whylen) != 0) {
            X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
            return 1;
        }
    }
    if (!preverify_ok) {
        if (*verify_err == X509_V_OK)
            *verify_err = X509_STORE_CTX_get_error(x);
        return 1;
    }
    if (X509_STORE_CTX_get_error_depth(x) != 0)
        return 0;
    /* The leaf, last: the chain is good; now the server's name (R-MTP.4
     * step 3). */
    X509 *leaf = X509_STORE_CTX_get_current_cert(x);
    char name[USP_MTP_HOST_MAX + 1];
    bool ip = numeric_host(host, name, sizeof name);
    bool ok = leaf && (ip ? X509_check_ip_asc(leaf, name, 0) == 1
                          : X509_check_host(leaf, name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                                            NULL) == 1);
    if (ok)
        return 0;
    int err = ip ? X509_V_ERR_IP_ADDRESS_MISMATCH : X509_V_ERR_HOSTNAME_MISMATCH;
    X509_STORE_CTX_set_error(x, err);
    if (*verify_err == X509_V_OK)
        *verify_err = err;
    return 1;
}
