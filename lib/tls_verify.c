/* TLS contexts with mutual authentication, and the Endpoint IDs a peer
 * certificate authenticates (see usp/tls.h).
 *
 * Why the choices:
 * - The trust store is the CA file and nothing else: a USP endpoint trusts
 *   the CAs it was given (R-SEC.2), not every CA the host trusts.
 * - Both roles require the peer's certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT):
 *   an agent must authenticate its controller or broker (R-MTP.1), and a
 *   controller authenticates agents by the Endpoint ID in their certificate
 *   (R-SEC.10a).
 * - A wildcard "*" stands for one or more characters: "os::012345-*" must
 *   not match "os::012345-", which is not a valid Endpoint ID anyway, and
 *   the empty match would only widen what a shared certificate covers.
 * - A pattern that breaks R-SEC.12 is skipped, not an error: the other
 *   entries of the certificate may still be good, and a skipped entry can
 *   only make a Record fail to match. */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "certs_int.h"
#include "usp/eid.h"
#include "usp/errors.h"
#include "usp/tls.h"

/* ---- Contexts ----------------------------------------------------------- */

static int check_file(const char *what, const char *path, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return certs__fail(e == ENOENT ? USP_ENOENT : USP_EIO, why, whylen, "%s %s: %s", what, path,
                           e == ENOENT ? "no such file" : strerror(e));
    }
    if (!S_ISREG(st.st_mode))
        return certs__fail(USP_EINVAL, why, whylen, "%s %s: not a regular file", what, path);
    return 0;
}

int usp_tls_ctx_new(enum usp_tls_role role, const struct usp_tls_files *f, unsigned flags,
                    SSL_CTX **out, char *why, size_t whylen)
{
    *out = NULL;
    if (why && whylen)
        why[0] = '\0';
    if (!f || !f->ca_file)
        return certs__fail(USP_EINVAL, why, whylen, "a CA file is required to verify the peer");
    if (!f->cert_file != !f->key_file)
        return certs__fail(USP_EINVAL, why, whylen,
                           "a certificate needs its key and a key its certificate");
    int rc = check_file("CA file", f->ca_file, why, whylen);
    if (!rc && f->cert_file)
        rc = check_file("certificate", f->cert_file, why, whylen);
    if (!rc && f->key_file)
        rc = check_file("key", f->key_file, why, whylen);
    if (rc)
        return rc;

    bool dtls = flags & USP_TLS_DTLS, server = role == USP_TLS_SERVER;
    const SSL_METHOD *m = dtls ? (server ? DTLS_server_method() : DTLS_client_method())
                               : (server ? TLS_server_method() : TLS_client_method());
    STACK_OF(X509_NAME) *names = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(m);
    rc = USP_EIO;
    if (!ctx) {
        certs__ossl_why(why, whylen, "cannot make a TLS context");
        goto out;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, dtls ? DTLS1_2_VERSION : TLS1_2_VERSION)) {
        certs__ossl_why(why, whylen, "cannot require %s 1.2", dtls ? "DTLS" : "TLS");
        goto out;
    }
    SSL_CTX_set_default_passwd_cb(ctx, certs__no_password);
    if (!SSL_CTX_load_verify_file(ctx, f->ca_file)) {
        certs__ossl_why(why, whylen, "CA file %s: cannot load", f->ca_file);
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (flags & USP_TLS_NO_TIME_CHECK)
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
    if (server) {
        /* Tells clients which CAs we accept, so they pick the right certificate. */
        names = SSL_load_client_CA_file(f->ca_file);
        if (!names) {
            certs__ossl_why(why, whylen, "CA file %s: no CA names to offer clients", f->ca_file);
            goto out;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        names = NULL;
    }
    if (f->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, f->cert_file) != 1) {
            certs__ossl_why(why, whylen, "certificate %s: cannot load", f->cert_file);
            goto out;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, f->key_file, SSL_FILETYPE_PEM) != 1) {
            certs__ossl_why(why, whylen, "key %s: cannot load", f->key_file);
            goto out;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            certs__ossl_why(why, whylen, "key %s does not belong to certificate %s", f->key_file,
                            f->cert_file);
            goto out;
        }
    }
    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    SSL_CTX_free(ctx);
    return rc;
}

int usp_tls_use_files(SSL *ssl, const char *cert_file, const char *key_file, char *why,
                      size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!cert_file || !key_file)
        return certs__fail(USP_EINVAL, why, whylen, "a certificate and its key are required");
    int rc = check_file("certificate", cert_file, why, whylen);
    if (!rc)
        rc = check_file("key", key_file, why, whylen);
    if (rc)
        return rc;
    ERR_clear_error();
    SSL_set_default_passwd_cb(ssl, certs__no_password);
    if (SSL_use_certificate_chain_file(ssl, cert_file) != 1) {
        certs__ossl_why(why, whylen, "certificate %s: cannot load", cert_file);
        return USP_EIO;
    }
    if (SSL_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        certs__ossl_why(why, whylen, "key %s: cannot load", key_file);
        return USP_EIO;
    }
    if (SSL_check_private_key(ssl) != 1) {
        certs__ossl_why(why, whylen, "key %s does not belong to certificate %s", key_file,
                        cert_file);
        return USP_EIO;
    }
    return 0;
}

int usp_tls_expect_host(SSL *ssl, const char *host)
{
    if (!ssl || !host || !*host)
        return USP_EINVAL;
    char buf[INET6_ADDRSTRLEN + 2];
    const char *ip = host;
    size_t n = strlen(host);
    /* "[::1]" as written in a URL. */
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        ip = buf;
    }
    unsigned char addr[16];
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    ERR_clear_error();
    if (inet_pton(AF_INET, ip, addr) == 1 || inet_pton(AF_INET6, ip, addr) == 1) {
        if (!X509_VERIFY_PARAM_set1_host(p, NULL, 0) || !X509_VERIFY_PARAM_set1_ip_asc(p, ip))
            goto fail;
        return 0;
    }
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    /* SNI, so a server with several names can pick the right certificate. */
    if (!SSL_set1_host(ssl, host) || !SSL_set_tlsext_host_name(ssl, host))
        goto fail;
    return 0;
fail:
    ERR_clear_error();
    return USP_EINVAL;
}

const char *usp_tls_verify_text(const SSL *ssl)
{
    return X509_verify_cert_error_string(SSL_get_verify_result(ssl));
}

/* ---- Wildcard patterns (R-SEC.11/12) ------------------------------------ */

static const char *const wildcard_schemes[] = {"oui", "cid", "pen", "os", "ops"};

int usp_tls_eid_pattern_check(const char *pattern, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!pattern)
        return certs__fail(USP_EINVAL, why, whylen, "the pattern is missing");
    if (!strchr(pattern, '*'))
        return certs__fail(USP_EINVAL, why, whylen, "'%s' has no '*': not a wildcard pattern",
                           pattern);
    size_t n = strlen(pattern);
    if (n > USP_EID_MAX_LEN)
        return certs__fail(USP_EINVAL, why, whylen, "'%.*s...' is longer than %d characters",
                           USP_EID_MAX_LEN, pattern, USP_EID_MAX_LEN);
    const char *c1 = strchr(pattern, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
        return certs__fail(USP_EINVAL, why, whylen,
                           "'%s' is not authority-scheme:authority-id:instance-id", pattern);
    const char *star = strchr(pattern, '*');
    if (star < c2)
        return certs__fail(USP_EINVAL, why, whylen,
                           "'%s': only the instance-id may hold a wildcard, not the "
                           "authority-scheme or authority-id (R-SEC.11)",
                           pattern);
    size_t sn = (size_t)(c1 - pattern);
    bool allowed = false, oui_prefix = false;
    for (size_t i = 0; i < sizeof wildcard_schemes / sizeof wildcard_schemes[0]; i++) {
        if (strlen(wildcard_schemes[i]) == sn && !memcmp(pattern, wildcard_schemes[i], sn)) {
            allowed = true;
            oui_prefix = i >= 3; /* os, ops */
        }
    }
    if (!allowed)
        return certs__fail(USP_EINVAL, why, whylen,
                           "'%s': a wildcard is allowed only with the oui, cid, pen, os or ops "
                           "authority-scheme (R-SEC.12)",
                           pattern);
    /* "<OUI>-" names who assigned the rest; it must be spelled out. */
    const char *inst = c2 + 1;
    if (oui_prefix && (size_t)(star - inst) < 7)
        return certs__fail(USP_EINVAL, why, whylen,
                           "'%s': the '<OUI>-' that starts an %.*s instance-id names the "
                           "assigning entity and must not be wildcarded (R-SEC.12)",
                           pattern, (int)sn, pattern);
    char tmp[USP_EID_MAX_LEN + 1], ewhy[160];
    for (size_t i = 0; i <= n; i++)
        tmp[i] = pattern[i] == '*' ? 'X' : pattern[i];
    if (usp_eid_parse(tmp, NULL, ewhy, sizeof ewhy) != 0)
        return certs__fail(USP_EINVAL, why, whylen,
                           "'%s' with each '*' read as one character is not an Endpoint ID: %s",
                           pattern, ewhy);
    return 0;
}

/* Glob match of an instance-id where each "*" is one or more characters
 * (read as "?*"). Iterative, remembering the last "*" only: enough for
 * glob patterns, and bounded by the lengths (50 each). */
static bool glob_match(const char *p, size_t pn, const char *s, size_t sn)
{
    size_t pi = 0, si = 0, star_p = 0, star_s = 0;
    bool star = false;
    while (si < sn) {
        if (pi < pn && p[pi] == '*') {
            si++; /* the one character a "*" always takes */
            pi++;
            star = true;
            star_p = pi;
            star_s = si;
        } else if (pi < pn && p[pi] == s[si]) {
            pi++;
            si++;
        } else if (star) {
            pi = star_p;
            si = ++star_s;
        } else {
            return false;
        }
    }
    return pi == pn;
}

bool usp_tls_eid_pattern_match(const char *pattern, const char *eid)
{
    struct usp_eid e;
    if (!pattern || !eid || usp_eid_parse(eid, &e, NULL, 0) != 0)
        return false;
    /* Scheme and authority-id: "scheme:authority:" compared as written. */
    size_t head = (size_t)(e.instance - eid);
    if (strlen(pattern) < head || memcmp(pattern, eid, head) != 0)
        return false;
    const char *pi = pattern + head;
    return glob_match(pi, strlen(pi), e.instance, e.instance_len);
}

/* ---- Endpoint IDs of a certificate -------------------------------------- */

struct usp_tls_id {
    const char *eid;
    unsigned flags;
};

struct usp_tls_ids {
    size_t n;
    struct usp_tls_id id[]; /* then the strings */
};

/* A found entry, before the final allocation. */
struct found {
    char eid[USP_EID_MAX_LEN + 1];
    unsigned flags;
};

/* Appends "; <reason>" for a skipped entry while there is room. */
static void note_skip(char *notes, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note_skip(char *notes, size_t len, const char *fmt, ...)
{
    size_t used = strlen(notes);
    if (used + 1 >= len)
        return;
    if (used)
        used += (size_t)snprintf(notes + used, len - used, "; ");
    if (used >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + used, len - used, fmt, ap);
    va_end(ap);
}

/* Looks at one subjectAltName entry: 1 when it gave an Endpoint ID in `f`,
 * 0 when it is not one (`notes` may say why). */
static int look(const GENERAL_NAME *g, struct found *f, char *notes, size_t nlen)
{
    int type;
    const ASN1_STRING *v = GENERAL_NAME_get0_value(g, &type);
    if (type != GEN_URI && type != GEN_DNS)
        return 0;
    const char *d = (const char *)ASN1_STRING_get0_data(v);
    size_t n = (size_t)ASN1_STRING_length(v);
    char why[200];
    f->flags = 0;
    if (type == GEN_DNS) {
        /* R-SEC.0a: an fqdn Endpoint ID may be a dNSName. Names that are
         * not fqdn instance-ids (localhost, *.example.org) are host names
         * only, so they are skipped without a note. */
        char eid[USP_EID_MAX_LEN + 1];
        if (n > USP_EID_INSTANCE_MAX || memchr(d, '\0', n))
            return 0;
        int w = snprintf(eid, sizeof eid, "fqdn::%.*s", (int)n, d);
        if (w < 0 || (size_t)w >= sizeof eid || usp_eid_parse(eid, NULL, NULL, 0) != 0)
            return 0;
        memcpy(f->eid, eid, (size_t)w + 1);
        f->flags = USP_TLS_ID_DNS;
        return 1;
    }
    size_t pn = strlen(USP_EID_URN_PREFIX);
    if (n < pn || strncasecmp(d, USP_EID_URN_PREFIX, pn) != 0)
        return 0; /* some other URI */
    if (memchr(d, '*', n)) {
        char pat[USP_EID_MAX_LEN + 1];
        if (n - pn > USP_EID_MAX_LEN || memchr(d, '\0', n)) {
            note_skip(notes, nlen, "wildcard URN of %zu bytes is too long", n);
            return 0;
        }
        memcpy(pat, d + pn, n - pn);
        pat[n - pn] = '\0';
        if (usp_tls_eid_pattern_check(pat, why, sizeof why) != 0) {
            note_skip(notes, nlen, "%s", why);
            return 0;
        }
        memcpy(f->eid, pat, n - pn + 1);
        f->flags = USP_TLS_ID_WILDCARD;
        return 1;
    }
    int rc = usp_eid_from_urn(d, n, f->eid, sizeof f->eid, why, sizeof why);
    if (rc) {
        note_skip(notes, nlen, "URI '%.*s': %s", (int)(n < 80 ? n : 80), d,
                  rc == USP_ERANGE ? "too long" : why);
        return 0;
    }
    return 1;
}

int usp_tls_ids_from_cert(const X509 *cert, struct usp_tls_ids **out, char *why, size_t whylen)
{
    *out = NULL;
    if (why && whylen)
        why[0] = '\0';
    if (!cert)
        return certs__fail(USP_EINVAL, why, whylen, "no certificate");
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    ERR_clear_error();
    int total = gens ? sk_GENERAL_NAME_num(gens) : 0;
    struct found *found = NULL;
    struct usp_tls_ids *ids = NULL;
    char notes[400] = "";
    size_t nf = 0, bytes = 0;
    int rc = USP_ENOMEM;
    if (total > 0 && !(found = calloc((size_t)total, sizeof *found)))
        goto out;
    for (int i = 0; i < total; i++) {
        if (look(sk_GENERAL_NAME_value(gens, i), &found[nf], notes, sizeof notes)) {
            bytes += strlen(found[nf].eid) + 1;
            nf++;
        }
    }
    if (!nf) {
        rc = certs__fail(USP_ENOENT, why, whylen,
                         "the certificate has no Endpoint ID in its subjectAltName%s%s",
                         notes[0] ? " (skipped: " : "", notes[0] ? notes : "");
        if (notes[0] && why && whylen && strlen(why) + 2 < whylen)
            strcat(why, ")");
        goto out;
    }
    size_t head = sizeof *ids + nf * sizeof ids->id[0];
    ids = malloc(head + bytes);
    if (!ids)
        goto out;
    ids->n = nf;
    char *s = (char *)ids + head;
    for (size_t i = 0; i < nf; i++) {
        size_t l = strlen(found[i].eid) + 1;
        memcpy(s, found[i].eid, l);
        ids->id[i].eid = s;
        ids->id[i].flags = found[i].flags;
        s += l;
    }
    *out = ids;
    ids = NULL;
    rc = 0;
out:
    if (rc == USP_ENOMEM)
        certs__fail(rc, why, whylen, "out of memory");
    free(found);
    free(ids);
    GENERAL_NAMES_free(gens);
    return rc;
}

int usp_tls_ids_from_ssl(const SSL *ssl, struct usp_tls_ids **out, char *why, size_t whylen)
{
    *out = NULL;
    X509 *peer = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (!peer)
        return certs__fail(USP_EPERM, why, whylen, "the peer sent no certificate");
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        return certs__fail(USP_EPERM, why, whylen, "the peer certificate did not verify: %s",
                           X509_verify_cert_error_string(v));
    return usp_tls_ids_from_cert(peer, out, why, whylen);
}

void usp_tls_ids_free(struct usp_tls_ids *ids)
{
    free(ids);
}

size_t usp_tls_ids_count(const struct usp_tls_ids *ids)
{
    return ids ? ids->n : 0;
}

const char *usp_tls_ids_get(const struct usp_tls_ids *ids, size_t i, unsigned *flags)
{
    if (!ids || i >= ids->n)
        return NULL;
    if (flags)
        *flags = ids->id[i].flags;
    return ids->id[i].eid;
}

static bool id_matches(const struct usp_tls_id *id, const char *from_id, const struct usp_eid *pe)
{
    if (id->flags & USP_TLS_ID_WILDCARD)
        return usp_tls_eid_pattern_match(id->eid, from_id);
    if (id->flags & USP_TLS_ID_DNS)
        return pe->scheme == USP_EID_FQDN && !strcasecmp(id->eid, from_id);
    return !strcmp(id->eid, from_id);
}

int usp_tls_ids_match(const struct usp_tls_ids *ids, const char *from_id, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    struct usp_eid pe;
    char ewhy[160];
    if (!from_id || usp_eid_parse(from_id, &pe, ewhy, sizeof ewhy) != 0)
        return certs__fail(USP_EINVAL, why, whylen, "from_id '%s' is not an Endpoint ID: %s",
                           from_id ? from_id : "(null)", from_id ? ewhy : "missing");
    size_t n = usp_tls_ids_count(ids);
    for (size_t i = 0; i < n; i++)
        if (id_matches(&ids->id[i], from_id, &pe))
            return 0;
    if (why && whylen) {
        int w = snprintf(why, whylen,
                         "from_id '%s' is not authenticated by the certificate (it "
                         "holds ",
                         from_id);
        size_t used = w < 0 ? 0 : (size_t)w;
        for (size_t i = 0; i < n && used < whylen; i++) {
            w = snprintf(why + used, whylen - used, "%s%s%s", i ? ", " : "", ids->id[i].eid,
                         (ids->id[i].flags & USP_TLS_ID_DNS) ? " (dNSName)" : "");
            used += w < 0 ? 0 : (size_t)w;
        }
        if (!n && used < whylen)
            used += (size_t)snprintf(why + used, whylen - used, "no Endpoint ID");
        if (used < whylen)
            snprintf(why + used, whylen - used, ")");
    }
    return USP_EPERM;
}
