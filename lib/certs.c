/* X.509 certificate generation with OpenSSL 3 (see usp/certs.h).
 *
 * Extensions are built as ASN.1 structures, never from OpenSSL's
 * configuration strings: a host name or URI holding "," or ":" then cannot
 * turn into a second entry, and a bad entry is reported by its field.
 *
 * Certificates and keys are written to a temporary file beside the target
 * and renamed over it, so a reader (a broker restarted by a test, a second
 * `uspsim certs`) never sees half a file, and an interrupted run leaves
 * either the old file or the new one. No fsync: these are test
 * credentials, and 100,000 fsyncs would dominate the run. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certs_int.h"
#include "usp/certs.h"
#include "usp/eid.h"
#include "usp/errors.h"
#include "usp/tls.h"

struct usp_cert {
    X509 *x;
    EVP_PKEY *key; /* NULL for a certificate loaded without its key */
    bool partial;  /* x has no decoded public key yet (see finish) */
};

#define CN_MAX      64 /* ub-common-name, RFC 5280 appendix A.1 */
#define SERIAL_LEN  16
#define RSA_MIN     2048
#define RSA_MAX     8192
#define SUBJECT_ORG "uspsim"

/* ---- Errors ------------------------------------------------------------- */

int certs__fail(int rc, char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void certs__ossl_why(char *why, size_t whylen, const char *fmt, ...)
{
    const char *data = NULL, *func = NULL;
    int flags = 0;
    /* The oldest error is the cause; later ones are callers wrapping it. */
    unsigned long e = ERR_get_error_all(NULL, NULL, &func, &data, &flags);
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
        size_t used = n < 0 ? 0 : (size_t)n < whylen ? (size_t)n : whylen - 1;
        if (e && used < whylen) {
            const char *reason = ERR_reason_error_string(e);
            const char *lib = ERR_lib_error_string(e);
            char code[32];
            if (!reason) {
                snprintf(code, sizeof code, "error code %d", ERR_GET_REASON(e));
                reason = code;
            }
            bool have_data = data && *data && (flags & ERR_TXT_STRING);
            snprintf(why + used, whylen - used, ": %s%s%s%s%s%s", lib ? lib : "", lib ? ": " : "",
                     reason, have_data ? " (" : "", have_data ? data : "", have_data ? ")" : "");
        }
    }
    ERR_clear_error();
}

int certs__no_password(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* ---- Keys --------------------------------------------------------------- */

int usp_cert_key_new(enum usp_cert_key_type type, unsigned rsa_bits, EVP_PKEY **out, char *why,
                     size_t whylen)
{
    *out = NULL;
    EVP_PKEY *k = NULL;
    ERR_clear_error();
    if (type == USP_CERT_KEY_EC) {
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    } else if (type == USP_CERT_KEY_RSA) {
        if (!rsa_bits)
            rsa_bits = USP_CERT_RSA_BITS_DEFAULT;
        if (rsa_bits < RSA_MIN || rsa_bits > RSA_MAX)
            return certs__fail(USP_EINVAL, why, whylen, "RSA key size %u is not %d..%d bits",
                               rsa_bits, RSA_MIN, RSA_MAX);
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
    } else {
        return certs__fail(USP_EINVAL, why, whylen, "unknown key type %d", (int)type);
    }
    if (!k) {
        certs__ossl_why(why, whylen, "cannot make a %s key",
                        type == USP_CERT_KEY_EC ? "P-256" : "RSA");
        return USP_EIO;
    }
    *out = k;
    return 0;
}

/* ---- Building ----------------------------------------------------------- */

static bool is_ascii_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static int push_name(GENERAL_NAMES *gens, int type, const char *text, ASN1_OCTET_STRING *ip)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    if (!g)
        goto fail;
    if (type == GEN_IPADD) {
        GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
        ip = NULL;
    } else {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!s || !ASN1_STRING_set(s, text, (int)strlen(text))) {
            ASN1_IA5STRING_free(s);
            goto fail;
        }
        GENERAL_NAME_set0_value(g, type, s);
    }
    if (!sk_GENERAL_NAME_push(gens, g))
        goto fail;
    return 0;
fail:
    GENERAL_NAME_free(g);
    ASN1_OCTET_STRING_free(ip);
    return USP_ENOMEM;
}

/* The subjectAltName entries of `spec`, in the documented order. 0 (with
 * *out NULL when there are none), USP_EINVAL or USP_ENOMEM. */
static int build_san(const struct usp_cert_spec *spec, GENERAL_NAMES **out, char *why,
                     size_t whylen)
{
    *out = NULL;
    if (!spec->neids && !spec->nuris && !spec->ndns && !spec->nips)
        return 0;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int rc = USP_ENOMEM;
    if (!gens)
        goto out;
    for (size_t i = 0; i < spec->neids; i++) {
        const char *eid = spec->eids[i];
        char urn[USP_EID_URN_MAX_LEN + 1], ewhy[160];
        if (!eid) {
            rc = certs__fail(USP_EINVAL, why, whylen, "Endpoint ID %zu is missing", i + 1);
            goto out;
        }
        if (strchr(eid, '*')) {
            if (usp_tls_eid_pattern_check(eid, ewhy, sizeof ewhy) != 0) {
                rc =
                    certs__fail(USP_EINVAL, why, whylen, "Endpoint ID pattern '%s': %s", eid, ewhy);
                goto out;
            }
            snprintf(urn, sizeof urn, "%s%s", USP_EID_URN_PREFIX, eid);
        } else if (usp_eid_parse(eid, NULL, ewhy, sizeof ewhy) != 0) {
            rc = certs__fail(USP_EINVAL, why, whylen, "Endpoint ID '%s': %s", eid, ewhy);
            goto out;
        } else if (usp_eid_to_urn(eid, urn, sizeof urn) != 0) {
            rc = certs__fail(USP_EINVAL, why, whylen, "Endpoint ID '%s' is too long", eid);
            goto out;
        }
        if ((rc = push_name(gens, GEN_URI, urn, NULL)) != 0)
            goto out;
    }
    for (size_t i = 0; i < spec->nuris; i++) {
        if (!spec->uris[i] || !*spec->uris[i] || !is_ascii_text(spec->uris[i])) {
            rc = certs__fail(USP_EINVAL, why, whylen, "URI %zu is empty or not printable ASCII",
                             i + 1);
            goto out;
        }
        if ((rc = push_name(gens, GEN_URI, spec->uris[i], NULL)) != 0)
            goto out;
    }
    for (size_t i = 0; i < spec->ndns; i++) {
        if (!spec->dns[i] || !*spec->dns[i] || !is_ascii_text(spec->dns[i])) {
            rc = certs__fail(USP_EINVAL, why, whylen,
                             "DNS name %zu is empty or not printable ASCII", i + 1);
            goto out;
        }
        if ((rc = push_name(gens, GEN_DNS, spec->dns[i], NULL)) != 0)
            goto out;
    }
    for (size_t i = 0; i < spec->nips; i++) {
        ASN1_OCTET_STRING *ip = spec->ips[i] ? a2i_IPADDRESS(spec->ips[i]) : NULL;
        if (!ip) {
            ERR_clear_error();
            rc = certs__fail(USP_EINVAL, why, whylen, "'%s' is not an IPv4 or IPv6 address",
                             spec->ips[i] ? spec->ips[i] : "(null)");
            goto out;
        }
        if ((rc = push_name(gens, GEN_IPADD, NULL, ip)) != 0)
            goto out;
    }
    *out = gens;
    gens = NULL;
    rc = 0;
out:
    if (rc == USP_ENOMEM)
        certs__fail(rc, why, whylen, "out of memory building the subjectAltName");
    GENERAL_NAMES_free(gens);
    return rc;
}

static int set_serial(X509 *x)
{
    unsigned char buf[SERIAL_LEN];
    if (RAND_bytes(buf, sizeof buf) != 1)
        return -1;
    /* Positive (RFC 5280 4.1.2.2), never zero, always 16 bytes long. */
    buf[0] = (unsigned char)((buf[0] & 0x7f) | 0x40);
    BIGNUM *bn = BN_bin2bn(buf, sizeof buf, NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int set_subject(X509 *x, const char *cn)
{
    char buf[CN_MAX + 1];
    snprintf(buf, sizeof buf, "%s", cn);
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)SUBJECT_ORG,
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)buf, -1, -1,
                                    0))
        return -1;
    return 0;
}

static int set_time(ASN1_TIME *t, time_t now, int64_t off)
{
    int64_t days = off / USP_CERT_DAY, secs = off % USP_CERT_DAY;
    if (days > 3650000 || days < -3650000)
        return -1;
    return X509_time_adj_ex(t, (int)days, (long)secs, &now) ? 0 : -1;
}

static int add_basic_constraints(X509 *x, bool ca)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int ok = bc != NULL;
    if (ok && ca) {
        bc->ca = 0xff;
        bc->pathlen = ASN1_INTEGER_new();
        ok = bc->pathlen && ASN1_INTEGER_set(bc->pathlen, 0);
    }
    ok = ok && X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_REPLACE) == 1;
    BASIC_CONSTRAINTS_free(bc);
    return ok ? 0 : -1;
}

/* keyUsage bit numbers, RFC 5280 4.2.1.3. */
enum {
    BIT_DIGITAL_SIGNATURE = 0,
    BIT_KEY_ENCIPHERMENT = 2,
    BIT_KEY_CERT_SIGN = 5,
    BIT_CRL_SIGN = 6,
};

static int add_key_usage(X509 *x, bool ca, bool rsa)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL;
    if (ca) {
        ok = ok && ASN1_BIT_STRING_set_bit(ku, BIT_KEY_CERT_SIGN, 1) &&
             ASN1_BIT_STRING_set_bit(ku, BIT_CRL_SIGN, 1);
    } else {
        ok = ok && ASN1_BIT_STRING_set_bit(ku, BIT_DIGITAL_SIGNATURE, 1);
        /* TLS 1.2 RSA key transport needs it; ECDHE suites do not. */
        if (rsa)
            ok = ok && ASN1_BIT_STRING_set_bit(ku, BIT_KEY_ENCIPHERMENT, 1);
    }
    ok = ok && X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_REPLACE) == 1;
    ASN1_BIT_STRING_free(ku);
    return ok ? 0 : -1;
}

static int add_ext_key_usage(X509 *x, bool server, bool client)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int ok = eku != NULL;
    if (server)
        ok = ok && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0;
    if (client)
        ok = ok && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) > 0;
    ok = ok && X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_REPLACE) == 1;
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return ok ? 0 : -1;
}

/* subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits (RFC 5280
 * 4.2.1.2, method 1), what OpenSSL's "hash" makes too. */
static int add_key_ids(X509 *x, X509 *issuer)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    int ok = ski && aki && X509_pubkey_digest(x, EVP_sha1(), md, &n) &&
             ASN1_OCTET_STRING_set(ski, md, (int)n) &&
             X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_REPLACE) == 1;
    if (ok) {
        const ASN1_OCTET_STRING *ikid = issuer ? X509_get0_subject_key_id(issuer) : ski;
        if (ikid) {
            aki->keyid = ASN1_OCTET_STRING_dup(ikid);
            ok = aki->keyid && X509_add1_ext_i2d(x, NID_authority_key_identifier, aki, 0,
                                                 X509V3_ADD_REPLACE) == 1;
        }
    }
    ASN1_OCTET_STRING_free(ski);
    AUTHORITY_KEYID_free(aki);
    return ok ? 0 : -1;
}

/* X509_set_pubkey in OpenSSL 3.0 encodes the key and decodes it again
 * through the provider machinery: three quarters of the time it takes to
 * make a certificate. For a P-256 key the SubjectPublicKeyInfo is only the
 * curve's name and the point, so it is written directly. */
static int set_pubkey(X509 *x, EVP_PKEY *key, bool *shortcut)
{
    *shortcut = false;
    char group[32];
    unsigned char point[133];
    size_t plen = 0;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        !EVP_PKEY_get_group_name(key, group, sizeof group, NULL) || strcmp(group, "prime256v1") ||
        !EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point,
                                         &plen) ||
        plen != 65 || point[0] != 4) {
        ERR_clear_error();
        return X509_set_pubkey(x, key) ? 0 : -1;
    }
    unsigned char *enc = OPENSSL_memdup(point, plen);
    if (!enc)
        return -1;
    if (!X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                                V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), enc, (int)plen)) {
        OPENSSL_free(enc);
        return -1;
    }
    *shortcut = true;
    return 0;
}

/* After set_pubkey's shortcut the X509 lacks the decoded public key that
 * X509_get0_pubkey (and so SSL_CTX_use_PrivateKey, X509_check_issued) need.
 * Reading the signed DER back gives a complete object, at about what
 * X509_set_pubkey would have cost: so it is done only when someone asks
 * for the X509 (usp_cert_x509), never for writing files. */
static int finish(struct usp_cert *c)
{
    if (!c->partial)
        return 0;
    unsigned char *der = NULL;
    int len = i2d_X509(c->x, &der);
    if (len <= 0)
        return -1;
    const unsigned char *p = der;
    X509 *full = d2i_X509(NULL, &p, len);
    OPENSSL_free(der);
    if (!full)
        return -1;
    X509_free(c->x);
    c->x = full;
    c->partial = false;
    return 0;
}

static const char *use_name(enum usp_cert_use use)
{
    switch (use) {
    case USP_CERT_USE_CA:
        return "CA";
    case USP_CERT_USE_SERVER:
        return "server";
    case USP_CERT_USE_CLIENT:
        return "client";
    case USP_CERT_USE_PEER:
        return "peer";
    }
    return "unknown";
}

int usp_cert_new(const struct usp_cert_spec *spec, struct usp_cert **out, char *why, size_t whylen)
{
    *out = NULL;
    if (why && whylen)
        why[0] = '\0';
    if (!spec->common_name || !*spec->common_name)
        return certs__fail(USP_EINVAL, why, whylen, "the certificate needs a common name");
    if ((unsigned)spec->use > USP_CERT_USE_PEER)
        return certs__fail(USP_EINVAL, why, whylen, "unknown certificate use %d", (int)spec->use);
    if (spec->not_after <= spec->not_before)
        return certs__fail(USP_EINVAL, why, whylen,
                           "validity window is empty: not_after (%lld s) is not after "
                           "not_before (%lld s)",
                           (long long)spec->not_after, (long long)spec->not_before);
    if (spec->issuer && !spec->issuer->key)
        return certs__fail(USP_EINVAL, why, whylen, "the issuer certificate has no private key");

    struct usp_cert *c = calloc(1, sizeof *c);
    GENERAL_NAMES *san = NULL;
    int rc = USP_ENOMEM;
    if (!c) {
        certs__fail(rc, why, whylen, "out of memory");
        goto out;
    }
    ERR_clear_error();
    if ((rc = build_san(spec, &san, why, whylen)) != 0)
        goto out;
    if (spec->key) {
        if (!EVP_PKEY_up_ref(spec->key)) {
            rc = USP_EIO;
            certs__ossl_why(why, whylen, "cannot reference the given key");
            goto out;
        }
        c->key = spec->key;
    } else if ((rc = usp_cert_key_new(spec->key_type, spec->rsa_bits, &c->key, why, whylen)) != 0) {
        goto out;
    }

    rc = USP_EIO;
    c->x = X509_new();
    time_t now = spec->now ? spec->now : time(NULL);
    bool ca = spec->use == USP_CERT_USE_CA;
    bool rsa = EVP_PKEY_get_base_id(c->key) == EVP_PKEY_RSA;
    X509 *issuer_x = spec->issuer ? spec->issuer->x : c->x;
    EVP_PKEY *signer = spec->issuer ? spec->issuer->key : c->key;
    const char *step = "cannot make the certificate";
    bool set_pubkey_shortcut = false;
    if (!c->x || !X509_set_version(c->x, X509_VERSION_3) || set_serial(c->x) ||
        set_pubkey(c->x, c->key, &set_pubkey_shortcut))
        goto fail;
    step = "cannot set the subject name";
    if (set_subject(c->x, spec->common_name))
        goto fail;
    step = "cannot set the issuer name";
    if (!X509_set_issuer_name(c->x, X509_get_subject_name(issuer_x)))
        goto fail;
    step = "cannot set the validity dates";
    if (set_time(X509_getm_notBefore(c->x), now, spec->not_before) ||
        set_time(X509_getm_notAfter(c->x), now, spec->not_after))
        goto fail;
    step = "cannot add the extensions";
    if (add_basic_constraints(c->x, ca) || add_key_usage(c->x, ca, rsa))
        goto fail;
    if (!ca &&
        add_ext_key_usage(c->x, spec->use != USP_CERT_USE_CLIENT, spec->use != USP_CERT_USE_SERVER))
        goto fail;
    if (add_key_ids(c->x, spec->issuer ? spec->issuer->x : NULL))
        goto fail;
    if (san && X509_add1_ext_i2d(c->x, NID_subject_alt_name, san, 0, X509V3_ADD_REPLACE) != 1)
        goto fail;
    step = "cannot sign the certificate";
    if (X509_sign(c->x, signer, EVP_sha256()) <= 0)
        goto fail;
    /* A CA is made rarely and shared, also between threads: finish it now. */
    c->partial = set_pubkey_shortcut;
    step = "cannot read back the certificate";
    if (ca && finish(c))
        goto fail;
    *out = c;
    c = NULL;
    rc = 0;
    goto out;
fail:
    certs__ossl_why(why, whylen, "%s (%s certificate '%s')", step, use_name(spec->use),
                    spec->common_name);
out:
    GENERAL_NAMES_free(san);
    usp_cert_free(c);
    return rc;
}

void usp_cert_free(struct usp_cert *c)
{
    if (!c)
        return;
    X509_free(c->x);
    EVP_PKEY_free(c->key);
    free(c);
}

X509 *usp_cert_x509(const struct usp_cert *c)
{
    /* Finishing changes what `c` holds, not what it means: the object is
     * logically const. */
    if (c->partial && finish((struct usp_cert *)c)) {
        ERR_clear_error();
        return NULL;
    }
    return c->x;
}

EVP_PKEY *usp_cert_pkey(const struct usp_cert *c)
{
    return c->key;
}

/* ---- Files -------------------------------------------------------------- */

/* Writes `len` bytes to `path` through a temporary file and a rename. */
static int write_file(const char *path, const char *data, size_t len, mode_t mode, char *why,
                      size_t whylen)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp)
        return certs__fail(USP_ENOMEM, why, whylen, "%s: out of memory", path);
    snprintf(tmp, pl + 32, "%s.tmp%ld", path, (long)getpid());
    int rc = USP_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        certs__fail(rc, why, whylen, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    /* open() applies the umask; a key must not stay readable by others. */
    if (fchmod(fd, mode) != 0) {
        certs__fail(rc, why, whylen, "%s: cannot set mode %o: %s", tmp, (unsigned)mode,
                    strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            certs__fail(rc, why, whylen, "%s: cannot write: %s", tmp,
                        w < 0 ? strerror(errno) : "no progress");
            goto out;
        }
        off += (size_t)w;
    }
    int cr = close(fd);
    fd = -1;
    if (cr != 0) {
        certs__fail(rc, why, whylen, "%s: cannot write: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        certs__fail(rc, why, whylen, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* The PEM text of the key or the certificate, made in memory, then written
 * to `path`. */
static int write_pem(const char *path, const struct usp_cert *c, bool key, char *why, size_t whylen)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = USP_EIO;
    if (!b) {
        certs__ossl_why(why, whylen, "%s: cannot make a memory BIO", path);
        goto out;
    }
    int ok = key ? PEM_write_bio_PrivateKey(b, c->key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, c->x);
    if (!ok) {
        certs__ossl_why(why, whylen, "%s: cannot encode the %s as PEM", path,
                        key ? "private key" : "certificate");
        goto out;
    }
    char *data;
    long len = BIO_get_mem_data(b, &data);
    rc = write_file(path, data, len > 0 ? (size_t)len : 0, key ? 0600 : 0644, why, whylen);
out:
    BIO_free(b);
    return rc;
}

int usp_cert_write(const struct usp_cert *c, const char *cert_path, const char *key_path, char *why,
                   size_t whylen)
{
    /* The key first: a certificate never lies beside a key it does not
     * match for longer than one rename (and usp_cert_load checks they
     * match anyway). */
    if (key_path) {
        if (!c->key)
            return certs__fail(USP_EINVAL, why, whylen, "%s: no private key to write", key_path);
        int rc = write_pem(key_path, c, true, why, whylen);
        if (rc)
            return rc;
    }
    return write_pem(cert_path, c, false, why, whylen);
}

static int open_pem(const char *path, BIO **out, char *why, size_t whylen)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return certs__fail(e == ENOENT ? USP_ENOENT : USP_EIO, why, whylen, "%s: %s", path,
                           e == ENOENT ? "no such file" : strerror(e));
    }
    if (!S_ISREG(st.st_mode))
        return certs__fail(USP_EINVAL, why, whylen, "%s: not a regular file", path);
    ERR_clear_error();
    *out = BIO_new_file(path, "r");
    if (!*out) {
        certs__ossl_why(why, whylen, "%s: cannot open", path);
        return USP_EIO;
    }
    return 0;
}

/* The key type of DER PKCS#8 PrivateKeyInfo: "EC", "RSA", or NULL. */
static const char *pkcs8_type(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);
    const ASN1_OBJECT *alg = NULL;
    const char *type = NULL;
    if (p8 && PKCS8_pkey_get0(&alg, NULL, NULL, NULL, p8)) {
        int nid = OBJ_obj2nid(alg);
        type = nid == NID_X9_62_id_ecPublicKey ? "EC" : nid == NID_rsaEncryption ? "RSA" : NULL;
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    return type;
}

/* PEM_read_bio_PrivateKey in OpenSSL 3.0 sets up a decoder for every key
 * type and format it knows, each time: two thirds of the time it takes to
 * check an existing certificate and key. Ours are unencrypted PKCS#8, so
 * the PEM is opened here and only the one decoder that fits is asked;
 * anything else goes the general way. */
static EVP_PKEY *read_key(BIO *b)
{
    BUF_MEM *mem = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long len = 0;
    EVP_PKEY *key = NULL;
    if (BIO_get_mem_ptr(b, &mem) != 1 || !mem)
        return NULL;
    BIO *copy = BIO_new_mem_buf(mem->data, (int)mem->length);
    if (!copy)
        return NULL;
    const char *type = NULL;
    if (!PEM_read_bio(copy, &name, &header, &der, &len)) {
        BIO_free(copy);
        return NULL; /* not PEM at all: PEM's reason is the useful one */
    }
    if (!strcmp(name, PEM_STRING_PKCS8INF) && !header[0])
        type = pkcs8_type(der, len);
    ERR_clear_error();
    if (type) {
        OSSL_DECODER_CTX *dc = OSSL_DECODER_CTX_new_for_pkey(&key, "DER", "PrivateKeyInfo", type,
                                                             EVP_PKEY_KEYPAIR, NULL, NULL);
        const unsigned char *p = der;
        size_t n = (size_t)len;
        if (!dc || !OSSL_DECODER_from_data(dc, &p, &n)) {
            EVP_PKEY_free(key);
            key = NULL;
            ERR_clear_error();
        }
        OSSL_DECODER_CTX_free(dc);
    }
    if (!key)
        key = PEM_read_bio_PrivateKey(b, NULL, certs__no_password, NULL);
    BIO_free(copy);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    return key;
}

/* The whole file in a memory BIO (certificates and keys are small). */
static int slurp(const char *path, BIO **out, char *why, size_t whylen)
{
    BIO *f = NULL;
    int rc = open_pem(path, &f, why, whylen);
    if (rc)
        return rc;
    BIO *m = BIO_new(BIO_s_mem());
    char buf[4096];
    int n;
    rc = m ? 0 : USP_ENOMEM;
    while (!rc && (n = BIO_read(f, buf, sizeof buf)) > 0)
        if (BIO_write(m, buf, n) != n)
            rc = USP_ENOMEM;
    BIO_free(f);
    if (rc) {
        BIO_free(m);
        return certs__fail(rc, why, whylen, "%s: out of memory", path);
    }
    *out = m;
    return 0;
}

int usp_cert_load(const char *cert_path, const char *key_path, struct usp_cert **out, char *why,
                  size_t whylen)
{
    *out = NULL;
    if (why && whylen)
        why[0] = '\0';
    struct usp_cert *c = calloc(1, sizeof *c);
    BIO *b = NULL;
    int rc = USP_ENOMEM;
    if (!c) {
        certs__fail(rc, why, whylen, "out of memory");
        goto out;
    }
    if ((rc = open_pem(cert_path, &b, why, whylen)) != 0)
        goto out;
    c->x = PEM_read_bio_X509(b, NULL, certs__no_password, NULL);
    if (!c->x) {
        rc = USP_EINVAL;
        certs__ossl_why(why, whylen, "%s: not a PEM certificate", cert_path);
        goto out;
    }
    BIO_free(b);
    b = NULL;
    if (key_path) {
        if ((rc = slurp(key_path, &b, why, whylen)) != 0)
            goto out;
        c->key = read_key(b);
        if (!c->key) {
            rc = USP_EINVAL;
            certs__ossl_why(why, whylen, "%s: not an unencrypted PEM private key", key_path);
            goto out;
        }
        if (X509_check_private_key(c->x, c->key) != 1) {
            rc = USP_EINVAL;
            certs__ossl_why(why, whylen, "%s: the key does not belong to %s", key_path, cert_path);
            goto out;
        }
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    BIO_free(b);
    usp_cert_free(c);
    return rc;
}

/* ---- Checking ----------------------------------------------------------- */

static bool same_name(const GENERAL_NAME *a, const GENERAL_NAME *b)
{
    int ta, tb;
    const ASN1_STRING *va = GENERAL_NAME_get0_value(a, &ta);
    const ASN1_STRING *vb = GENERAL_NAME_get0_value(b, &tb);
    if (ta != tb || (ta != GEN_URI && ta != GEN_DNS && ta != GEN_IPADD))
        return false;
    return ASN1_STRING_cmp(va, vb) == 0;
}

static int check_san(const X509 *x, const struct usp_cert_spec *spec, char *why, size_t whylen)
{
    GENERAL_NAMES *want = NULL;
    GENERAL_NAMES *have = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = build_san(spec, &want, why, whylen);
    if (rc)
        goto out;
    int nw = want ? sk_GENERAL_NAME_num(want) : 0;
    int nh = have ? sk_GENERAL_NAME_num(have) : 0;
    rc = USP_EINVAL;
    if (nw != nh) {
        certs__fail(rc, why, whylen, "subjectAltName has %d entries, not %d", nh, nw);
        goto out;
    }
    for (int i = 0; i < nw; i++) {
        if (!same_name(sk_GENERAL_NAME_value(want, i), sk_GENERAL_NAME_value(have, i))) {
            char text[256];
            usp_cert_san_text(x, text, sizeof text);
            certs__fail(rc, why, whylen, "subjectAltName entry %d differs (it holds %s)", i + 1,
                        text);
            goto out;
        }
    }
    rc = 0;
out:
    GENERAL_NAMES_free(want);
    GENERAL_NAMES_free(have);
    ERR_clear_error();
    return rc;
}

static int check_key(const struct usp_cert *c, const struct usp_cert_spec *spec, char *why,
                     size_t whylen)
{
    if (spec->key) {
        /* c->key belongs to c->x (made together, or checked on loading). */
        if (EVP_PKEY_eq(c->key, spec->key) != 1)
            return certs__fail(USP_EINVAL, why, whylen, "it is not made for the given key");
        return 0;
    }
    int id = EVP_PKEY_get_base_id(c->key);
    if (spec->key_type == USP_CERT_KEY_EC) {
        char group[64] = "";
        if (id != EVP_PKEY_EC)
            return certs__fail(USP_EINVAL, why, whylen, "its key is not an EC key");
        if (!EVP_PKEY_get_group_name(c->key, group, sizeof group, NULL) ||
            (strcmp(group, "prime256v1") && strcmp(group, "P-256")))
            return certs__fail(USP_EINVAL, why, whylen, "its EC key is on %s, not P-256",
                               group[0] ? group : "an unknown curve");
        return 0;
    }
    unsigned bits = spec->rsa_bits ? spec->rsa_bits : USP_CERT_RSA_BITS_DEFAULT;
    if (id != EVP_PKEY_RSA)
        return certs__fail(USP_EINVAL, why, whylen, "its key is not an RSA key");
    if (EVP_PKEY_get_bits(c->key) != (int)bits)
        return certs__fail(USP_EINVAL, why, whylen, "its RSA key has %d bits, not %u",
                           EVP_PKEY_get_bits(c->key), bits);
    return 0;
}

static int check_use(X509 *x, enum usp_cert_use use, char *why, size_t whylen)
{
    uint32_t ex = X509_get_extension_flags(x);
    bool ca = (ex & EXFLAG_CA) != 0;
    if (ca != (use == USP_CERT_USE_CA))
        return certs__fail(USP_EINVAL, why, whylen, "it is %sa CA certificate", ca ? "" : "not ");
    if (use == USP_CERT_USE_CA)
        return 0;
    uint32_t want = (use != USP_CERT_USE_CLIENT ? XKU_SSL_SERVER : 0) |
                    (use != USP_CERT_USE_SERVER ? XKU_SSL_CLIENT : 0);
    uint32_t have = (ex & EXFLAG_XKUSAGE) ? X509_get_extended_key_usage(x) : 0;
    if ((have & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) != want)
        return certs__fail(USP_EINVAL, why, whylen, "its extendedKeyUsage is not for a %s",
                           use_name(use));
    return 0;
}

static int check_window(X509 *x, const struct usp_cert_spec *spec, char *why, size_t whylen)
{
    time_t now = spec->now ? spec->now : time(NULL);
    /* X509_cmp_time: -1 when the time is before `now`, 1 when not, 0 on error. */
    int nb = X509_cmp_time(X509_get0_notBefore(x), &now);
    int na = X509_cmp_time(X509_get0_notAfter(x), &now);
    if (!nb || !na)
        return certs__fail(USP_EINVAL, why, whylen, "its validity dates cannot be read");
    if (spec->not_before > 0) {
        if (nb < 0)
            return certs__fail(USP_EINVAL, why, whylen, "it is already valid");
    } else if (spec->not_after < 0) {
        if (na > 0)
            return certs__fail(USP_EINVAL, why, whylen, "it has not expired");
    } else {
        if (nb > 0)
            return certs__fail(USP_EINVAL, why, whylen, "it is not valid yet");
        if (na < 0)
            return certs__fail(USP_EINVAL, why, whylen, "it has expired");
    }
    return 0;
}

int usp_cert_matches(const struct usp_cert *c, const struct usp_cert_spec *spec, char *why,
                     size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!c->key)
        return certs__fail(USP_EINVAL, why, whylen, "it has no private key");
    char cn[CN_MAX + 1], want_cn[CN_MAX + 1];
    snprintf(want_cn, sizeof want_cn, "%s", spec->common_name ? spec->common_name : "");
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(c->x), NID_commonName, cn, sizeof cn) < 0 ||
        strcmp(cn, want_cn)) {
        ERR_clear_error();
        return certs__fail(USP_EINVAL, why, whylen, "its common name is not '%s'", want_cn);
    }
    int rc = check_use(c->x, spec->use, why, whylen);
    if (!rc)
        rc = check_key(c, spec, why, whylen);
    if (!rc)
        rc = check_san(c->x, spec, why, whylen);
    if (!rc)
        rc = check_window(c->x, spec, why, whylen);
    if (rc)
        return rc;
    /* By name and signature: X509_check_issued would need the decoded
     * public keys that a certificate just made may not have yet. */
    const struct usp_cert *is = spec->issuer ? spec->issuer : c;
    EVP_PKEY *ikey = is->key ? is->key : X509_get0_pubkey(is->x);
    if (!ikey || X509_NAME_cmp(X509_get_issuer_name(c->x), X509_get_subject_name(is->x)) ||
        X509_verify(c->x, ikey) != 1) {
        ERR_clear_error();
        return certs__fail(USP_EINVAL, why, whylen, "it is not %s",
                           spec->issuer ? "signed by the issuer" : "self-signed");
    }
    return 0;
}

/* ---- Text --------------------------------------------------------------- */

int usp_cert_fingerprint(const X509 *x, char *buf, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (buf && len)
        buf[0] = '\0';
    if (!buf || len < USP_CERT_FINGERPRINT_LEN + 1)
        return USP_ERANGE;
    if (!X509_digest(x, EVP_sha256(), md, &n) || n != 32) {
        ERR_clear_error();
        return USP_EINVAL;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(buf, "sha256:", 7);
    for (unsigned i = 0; i < n; i++) {
        buf[7 + 2 * i] = hex[md[i] >> 4];
        buf[8 + 2 * i] = hex[md[i] & 15];
    }
    buf[7 + 2 * n] = '\0';
    return 0;
}

/* Appends `n` bytes; what does not fit is cut and ends in "...". */
static void append(char *buf, size_t len, size_t *used, const char *s, size_t n)
{
    if (*used >= len)
        return; /* already full */
    if (*used + n < len) {
        memcpy(buf + *used, s, n);
        *used += n;
        buf[*used] = '\0';
        return;
    }
    if (len < 4) {
        buf[0] = '\0';
    } else {
        size_t room = *used < len - 4 ? len - 4 - *used : 0;
        memcpy(buf + *used, s, room);
        memcpy(buf + *used + room, "...", 4);
    }
    *used = len;
}

void usp_cert_san_text(const X509 *x, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    buf[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gens ? sk_GENERAL_NAME_num(gens) : 0;
    size_t used = 0;
    for (int i = 0; i < n && used < len; i++) {
        int type;
        const ASN1_STRING *v = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, i), &type);
        char item[300];
        const unsigned char *d = ASN1_STRING_get0_data(v);
        int dl = ASN1_STRING_length(v);
        if (type == GEN_URI || type == GEN_DNS) {
            snprintf(item, sizeof item, "%s%s:%.*s", i ? "," : "", type == GEN_URI ? "URI" : "DNS",
                     dl, (const char *)d);
        } else if (type == GEN_IPADD && (dl == 4 || dl == 16)) {
            char ip[INET6_ADDRSTRLEN];
            inet_ntop(dl == 4 ? AF_INET : AF_INET6, d, ip, sizeof ip);
            snprintf(item, sizeof item, "%sIP:%s", i ? "," : "", ip);
        } else {
            snprintf(item, sizeof item, "%sother", i ? "," : "");
        }
        append(buf, len, &used, item, strlen(item));
    }
    if (!n)
        snprintf(buf, len, "-");
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
}

void usp_cert_info(const struct usp_cert *c, struct usp_cert_info *out)
{
    /* c->x as it is: none of these needs the decoded public key. */
    usp_cert_san_text(c->x, out->san, sizeof out->san);
    if (usp_cert_not_after_text(c->x, out->not_after, sizeof out->not_after))
        snprintf(out->not_after, sizeof out->not_after, "-");
    if (usp_cert_fingerprint(c->x, out->fingerprint, sizeof out->fingerprint))
        snprintf(out->fingerprint, sizeof out->fingerprint, "-");
}

int usp_cert_not_after_text(const X509 *x, char *buf, size_t len)
{
    struct tm tm;
    if (buf && len)
        buf[0] = '\0';
    if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) || !buf ||
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        ERR_clear_error();
        return USP_EINVAL;
    }
    return 0;
}
