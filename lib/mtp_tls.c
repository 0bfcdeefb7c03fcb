/* TLS for the MTP bindings: which connections want it, and one SSL_CTX per
 * context and set of files, so that a fleet of agents on one worker loads
 * its CA file once rather than once per connection. */
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "mtp_int.h"

struct mtp_tls_cache {
    struct mtp_tls_cache *next;
    SSL_CTX *ssl_ctx;
    enum usp_tls_role role;
    unsigned flags;
    /* ca_file, cert_file, key_file one after another, each terminated; an
     * absent file is an empty string. */
    size_t len;
    char keys[];
};

bool mtp__tls_wanted(const struct usp_mtp_config *cfg, const struct usp_mtp_url *u)
{
    if (u->tls)
        return true;
    return strcmp(u->binding, "uds") == 0 && cfg->tls.uds;
}

int mtp__tls_config_check(const struct usp_mtp_config *cfg, const struct usp_mtp_url *u, char *why,
                          size_t whylen)
{
    if (!mtp__tls_wanted(cfg, u))
        return 0;
    const char *what = !cfg->tls.ca_file || !*cfg->tls.ca_file       ? "a CA file"
                       : !cfg->tls.cert_file || !*cfg->tls.cert_file ? "a certificate file"
                       : !cfg->tls.key_file || !*cfg->tls.key_file   ? "a key file"
                                                                     : NULL;
    if (what)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "%s%s uses TLS with mutual authentication and needs %s "
                         "(CA, certificate and key)",
                         u->scheme, strcmp(u->scheme, "unix") == 0 ? ": with TLS" : "://", what);
    return 0;
}

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

int mtp__tls_ctx(struct usp_mtp_ctx *ctx, enum usp_tls_role role, unsigned flags,
                 const char *ca_file, const char *cert_file, const char *key_file, SSL_CTX **out,
                 char *why, size_t whylen)
{
    *out = NULL;
    size_t len = keys_fill(NULL, ca_file, cert_file, key_file);
    char stackkeys[512];
    char *keys = len <= sizeof stackkeys ? stackkeys : malloc(len);
    if (!keys)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    keys_fill(keys, ca_file, cert_file, key_file);
    int rc = 0;
    for (struct mtp_tls_cache *e = ctx->tls_cache; e; e = e->next) {
        if (e->role == role && e->flags == flags && e->len == len &&
            memcmp(e->keys, keys, len) == 0) {
            *out = e->ssl_ctx;
            goto out;
        }
    }
    struct usp_tls_files f = {ca_file, cert_file, key_file};
    SSL_CTX *sc = NULL;
    rc = usp_tls_ctx_new(role, &f, flags, &sc, why, whylen);
    if (rc)
        goto out;
    struct mtp_tls_cache *e = malloc(sizeof *e + len);
    if (!e) {
        SSL_CTX_free(sc);
        rc = mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
        goto out;
    }
    e->ssl_ctx = sc;
    e->role = role;
    e->flags = flags;
    e->len = len;
    memcpy(e->keys, keys, len);
    e->next = ctx->tls_cache;
    ctx->tls_cache = e;
    *out = sc;
out:
    if (keys != stackkeys)
        free(keys);
    return rc;
}

void mtp__tls_cache_free(struct usp_mtp_ctx *ctx)
{
    struct mtp_tls_cache *e = ctx->tls_cache;
    ctx->tls_cache = NULL;
    while (e) {
        struct mtp_tls_cache *next = e->next;
        SSL_CTX_free(e->ssl_ctx);
        free(e);
        e = next;
    }
}
