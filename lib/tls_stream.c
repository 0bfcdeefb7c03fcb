/* A sans-IO TLS session over OpenSSL (see tls_stream_int.h).
 *
 * Why a BIO of our own rather than two memory BIOs: a memory BIO keeps the
 * largest buffer it ever grew to for as long as the session lives, which a
 * fleet of idle sessions would pay for thousands of times. Ours reads the
 * caller's bytes in place and writes into a buffer that is freed as soon
 * as the caller has taken it, so an idle session owns no I/O buffer at
 * all. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls_stream_int.h"

struct tls_stream {
    SSL *ssl;
    const uint8_t *in; /* fed, not yet taken by OpenSSL (borrowed) */
    size_t in_len;
    uint8_t *out; /* ciphertext for the socket */
    size_t out_len, out_cap;
    struct usp_tls_ids *ids;
    char *why;     /* why it failed; NULL until then */
    char *ids_why; /* why the peer's certificate gave no Endpoint ID */
    int err;       /* sticky error */
    bool up, shut, out_nomem;
};

/* ---- The BIO ---------------------------------------------------------------- */

static BIO_METHOD *bio_method;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

static int bio_read(BIO *b, char *buf, int len)
{
    struct tls_stream *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct tls_stream *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    size_t need = t->out_len + (size_t)len;
    if (need > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap * 2 : 1024;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(t->out, cap);
        if (!p) {
            t->out_nomem = true;
            return -1;
        }
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, buf, (size_t)len);
    t->out_len = need;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct tls_stream *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)(t->in_len > LONG_MAX ? LONG_MAX : t->in_len) : 0;
    default:
        return 0;
    }
}

static void bio_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "usp tls stream");
    if (m && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write) &&
        BIO_meth_set_ctrl(m, bio_ctrl)) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* ---- Errors ---------------------------------------------------------------- */

static int fail(struct tls_stream *t, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct tls_stream *t, int rc, const char *fmt, ...)
{
    if (!t->err) {
        t->err = rc;
        char buf[320];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        free(t->why);
        t->why = strdup(buf); /* NULL: tls_stream__why gives a general text */
    }
    ERR_clear_error();
    return t->err;
}

/* After a call that returned `r` <= 0: 0 when it only waits for input. */
static int ssl_outcome(struct tls_stream *t, int r, const char *during)
{
    int e = SSL_get_error(t->ssl, r);
    if (t->out_nomem)
        return fail(t, USP_ENOMEM, "out of memory");
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return fail(t, USP_EIO, "the peer closed the TLS session");
    case SSL_ERROR_SSL:
        break;
    default:
        return fail(t, USP_EPROTO, "TLS %s failed (OpenSSL error %d)", during, e);
    }
    long v = SSL_get_verify_result(t->ssl);
    unsigned long ossl = ERR_peek_last_error();
    const char *reason = ossl ? ERR_reason_error_string(ossl) : NULL;
    if (v != X509_V_OK)
        return fail(t, USP_EPERM, "the peer's certificate did not verify: %s",
                    X509_verify_cert_error_string(v));
    if (ossl && ERR_GET_LIB(ossl) == ERR_LIB_SSL &&
        ERR_GET_REASON(ossl) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return fail(t, USP_EPERM, "the peer sent no certificate (mutual authentication required)");
    if (reason && strstr(reason, "alert")) {
        bool ours = strstr(reason, "unknown ca") || strstr(reason, "certificate");
        return fail(t, USP_EPROTO, "the peer ended the TLS session with an alert: %s%s", reason,
                    ours ? " (it did not accept our certificate)" : "");
    }
    return fail(t, USP_EPROTO, "TLS %s failed: %s", during, reason ? reason : "unknown error");
}

/* ---- The session ------------------------------------------------------------- */

int tls_stream__new(SSL_CTX *sc, enum usp_tls_role role, const char *expect_host,
                    const char *cert_file, const char *key_file, struct tls_stream **out, char *why,
                    size_t whylen)
{
    *out = NULL;
    if (why && whylen)
        why[0] = '\0';
    if (!sc || !cert_file != !key_file) {
        snprintf(why, why ? whylen : 0,
                 "a TLS context is required, and a certificate needs its key");
        return USP_EINVAL;
    }
    if (!CRYPTO_THREAD_run_once(&bio_once, bio_method_make) || !bio_method) {
        snprintf(why, why ? whylen : 0, "cannot make the TLS stream BIO");
        return USP_ENOMEM;
    }
    int rc = USP_ENOMEM;
    BIO *b = NULL;
    struct tls_stream *t = calloc(1, sizeof *t);
    ERR_clear_error();
    if (!t || !(t->ssl = SSL_new(sc)) || !(b = BIO_new(bio_method))) {
        snprintf(why, why ? whylen : 0, "out of memory for a TLS session");
        goto out;
    }
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    SSL_set_bio(t->ssl, b, b); /* the SSL owns it now */
    b = NULL;
    SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (role == USP_TLS_SERVER) {
        /* Nothing to resume from a session ticket on these links, and no
         * per-session state kept in the shared context. */
        SSL_set_num_tickets(t->ssl, 0);
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (expect_host && usp_tls_expect_host(t->ssl, expect_host) != 0) {
            snprintf(why, why ? whylen : 0, "cannot expect host \"%.100s\" in the certificate",
                     expect_host);
            rc = USP_EINVAL;
            goto out;
        }
    }
    if (cert_file && (rc = usp_tls_use_files(t->ssl, cert_file, key_file, why, whylen)) != 0)
        goto out;
    *out = t;
    t = NULL;
    rc = 0;
out:
    BIO_free(b);
    tls_stream__free(t);
    ERR_clear_error();
    return rc;
}

void tls_stream__free(struct tls_stream *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t->out);
    free(t->why);
    free(t->ids_why);
    usp_tls_ids_free(t->ids);
    free(t);
}

void tls_stream__feed(struct tls_stream *t, const uint8_t *in, size_t len)
{
    t->in = in;
    t->in_len = len;
}

static int handshake(struct tls_stream *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1)
        return ssl_outcome(t, r, "handshake");
    t->up = true;
    char why[256];
    if (usp_tls_ids_from_ssl(t->ssl, &t->ids, why, sizeof why) != 0) {
        t->ids = NULL;
        t->ids_why = strdup(why);
    }
    ERR_clear_error();
    return 0;
}

int tls_stream__start(struct tls_stream *t)
{
    if (t->err)
        return t->err;
    return t->up ? 0 : handshake(t);
}

int tls_stream__read(struct tls_stream *t, uint8_t *buf, size_t cap)
{
    if (t->err)
        return t->err;
    if (!t->up) {
        int rc = handshake(t);
        if (rc || !t->up)
            return rc;
    }
    if (cap == 0)
        return 0;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        return r;
    return ssl_outcome(t, r, "read");
}

int tls_stream__write(struct tls_stream *t, const uint8_t *p, size_t len)
{
    if (t->err || !t->up || t->shut)
        return USP_EPERM;
    while (len) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        ERR_clear_error();
        int r = SSL_write(t->ssl, p, n);
        if (r <= 0) {
            int rc = ssl_outcome(t, r, "write");
            return rc ? rc : fail(t, USP_EPROTO, "TLS write could not proceed");
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int tls_stream__shutdown(struct tls_stream *t)
{
    if (t->err || !t->up || t->shut)
        return USP_EPERM;
    t->shut = true;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* 0: sent, the peer's not seen yet */
    ERR_clear_error();
    return t->out_nomem ? USP_ENOMEM : 0;
}

size_t tls_stream__out(const struct tls_stream *t, const uint8_t **p)
{
    *p = t->out_len ? t->out : NULL;
    return t->out_len;
}

void tls_stream__out_clear(struct tls_stream *t)
{
    free(t->out);
    t->out = NULL;
    t->out_len = t->out_cap = 0;
}

bool tls_stream__up(const struct tls_stream *t)
{
    return t->up && !t->err;
}

const char *tls_stream__why(const struct tls_stream *t)
{
    if (!t->err)
        return "";
    return t->why ? t->why : "TLS failed (no detail: out of memory)";
}

const struct usp_tls_ids *tls_stream__ids(const struct tls_stream *t)
{
    return t->up ? t->ids : NULL;
}

const char *tls_stream__ids_why(const struct tls_stream *t)
{
    if (t->ids)
        return "";
    return t->ids_why ? t->ids_why : t->up ? "no Endpoint ID in the peer's certificate" : "not up";
}

SSL *tls_stream__ssl(const struct tls_stream *t)
{
    return t->ssl;
}

void tls_stream__describe(const struct tls_stream *t, char *buf, size_t n)
{
    if (!t->up) {
        snprintf(buf, n, "%s", "");
        return;
    }
    snprintf(buf, n, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}
