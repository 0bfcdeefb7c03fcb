/* X.509 certificates for uspsim's TLS (OpenSSL 3): keys, a test CA, and
 * server, client and peer certificates that carry Endpoint IDs in their
 * subjectAltName as `urn:bbf:usp:id:<eid>` URIs [R-SEC.0a, R-SEC.10a].
 *
 * One function makes every certificate: the spec says what kind it is, its
 * key, its validity window relative to "now", its subjectAltName entries
 * and its issuer. The defective certificates that TLS tests need come from
 * the same function with other values:
 *
 *   expired          .not_before = -30 days, .not_after = -1 day
 *   not yet valid    .not_before = +1 day,   .not_after = +2 days
 *   wrong SAN        other .eids/.dns, or .uris taken verbatim (a URN that
 *                    is not even well formed)
 *   unknown CA       .issuer = a second CA made with .use = USP_CERT_USE_CA
 *   self-signed      .issuer = NULL (any .use)
 *
 * What every certificate gets: X.509 v3, a serial of 16 random bytes (positive),
 * SHA-256 signature, subject "O=uspsim, CN=<common_name>",
 * subjectKeyIdentifier (SHA-1 of the public key, RFC 5280 4.2.1.2 method 1),
 * authorityKeyIdentifier (the issuer's key identifier; its own when
 * self-signed), and by `use`:
 *
 *   CA      basicConstraints critical CA:TRUE, pathlen:0;
 *           keyUsage critical keyCertSign, cRLSign
 *   SERVER  basicConstraints critical CA:FALSE; keyUsage critical
 *           digitalSignature (+ keyEncipherment for RSA); extendedKeyUsage
 *           serverAuth
 *   CLIENT  as SERVER with extendedKeyUsage clientAuth
 *   PEER    as SERVER with extendedKeyUsage serverAuth, clientAuth (USP
 *           endpoints are TLS clients to brokers and servers to WebSocket
 *           or CoAP peers)
 *
 * Threads: separate objects may be used on separate threads, and one
 * certificate (a CA) may be the issuer of certificates made on several
 * threads at once; the first usp_cert_x509 call on a leaf has its own rule
 * (see there). */
#ifndef USP_CERTS_H
#define USP_CERTS_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum usp_cert_key_type {
    USP_CERT_KEY_EC,  /* ECDSA on P-256 (prime256v1): the default, fast */
    USP_CERT_KEY_RSA, /* RSA, 2048 bits unless said otherwise */
};

enum usp_cert_use {
    USP_CERT_USE_CA,
    USP_CERT_USE_SERVER,
    USP_CERT_USE_CLIENT,
    USP_CERT_USE_PEER,
};

#define USP_CERT_RSA_BITS_DEFAULT 2048
#define USP_CERT_DAY              86400

/* A certificate and its private key. */
struct usp_cert;

/* What to make. Zero-initialise and fill in; the arrays are borrowed for
 * the call only. */
struct usp_cert_spec {
    enum usp_cert_use use;
    enum usp_cert_key_type key_type; /* of a new key (ignored when .key is given) */
    unsigned rsa_bits;               /* 0: USP_CERT_RSA_BITS_DEFAULT; 2048..8192 */
    EVP_PKEY *key;                   /* reuse this key (borrowed, not freed); NULL: a new one */
    const char *common_name;         /* subject CN, required; cut to 64 bytes (RFC 5280) */
    time_t now;                      /* 0: the current time */
    int64_t not_before;              /* seconds relative to now, e.g. -3600 */
    int64_t not_after;               /* seconds relative to now; more than not_before */
    /* subjectAltName, in this order: URIs of .eids, .uris, dNSNames, iPAddresses. */
    const char *const *eids; /* Endpoint IDs, written as urn:bbf:usp:id:<eid>; an id with "*"
                              * in its instance-id is a shared-certificate pattern, checked
                              * against R-SEC.11/12 (see usp/tls.h) */
    size_t neids;
    const char *const *uris; /* other URIs, taken verbatim (no check beyond being ASCII) */
    size_t nuris;
    const char *const *dns; /* host names (or "*.example.org"), verbatim */
    size_t ndns;
    const char *const *ips; /* IPv4 or IPv6 addresses in text form */
    size_t nips;
    const struct usp_cert *issuer; /* signs the certificate; NULL: self-signed */
};

/* Makes a key pair. 0, USP_EINVAL (bad rsa_bits) or USP_EIO (OpenSSL
 * failed; `why` has its reason). */
int usp_cert_key_new(enum usp_cert_key_type type, unsigned rsa_bits, EVP_PKEY **out, char *why,
                     size_t whylen);

/* Makes the certificate `spec` describes. 0; USP_EINVAL for a bad spec (no
 * common name, an empty window, a bad Endpoint ID, IP address or wildcard
 * pattern, an issuer without its private key), USP_ENOMEM, or USP_EIO when
 * OpenSSL fails; `why` says which field or what OpenSSL reported. Any
 * certificate with a key may be the issuer, even one that is not a CA (a
 * defect tests may want). */
int usp_cert_new(const struct usp_cert_spec *spec, struct usp_cert **out, char *why, size_t whylen);
void usp_cert_free(struct usp_cert *c);

/* The certificate and key, owned by `c` (take a reference with
 * X509_up_ref/EVP_PKEY_up_ref to keep them longer). A P-256 leaf
 * certificate made by usp_cert_new is finished on the first call to
 * usp_cert_x509 (its DER is read back, about 0.2 ms, so that
 * X509_get0_pubkey works; writing files never needs it): that first call
 * changes `c` and must not run at the same time as other calls on the same
 * `c`. NULL only when that fails (out of memory). CA certificates are
 * finished when they are made. */
X509 *usp_cert_x509(const struct usp_cert *c);
EVP_PKEY *usp_cert_pkey(const struct usp_cert *c);

/* Writes the certificate and the key as PEM (the key unencrypted PKCS#8,
 * mode 0600). Each file is written to a temporary name beside it and
 * renamed, so a reader never sees half a file. `key_path` may be NULL to
 * write only the certificate. 0, or USP_EIO with the path and the reason in
 * `why`. */
int usp_cert_write(const struct usp_cert *c, const char *cert_path, const char *key_path, char *why,
                   size_t whylen);

/* Reads a PEM certificate and, when `key_path` is not NULL, its private key,
 * and checks that they belong together. 0, USP_ENOENT (a file is missing),
 * USP_EINVAL (not PEM, or the key does not match), USP_EIO (cannot read);
 * `why` names the file and gives OpenSSL's reason. */
int usp_cert_load(const char *cert_path, const char *key_path, struct usp_cert **out, char *why,
                  size_t whylen);

/* Whether `c` is what usp_cert_new(spec) would make, apart from the key, the
 * serial and the exact dates: the same use (basicConstraints and
 * extendedKeyUsage), key type (and RSA size) unless spec->key is given, the
 * same subjectAltName entries in the same order, signed by spec->issuer (or
 * self-signed), and on the same side of spec->now as the spec's window
 * (valid now when the spec's window holds now; expired when it ended;
 * not yet valid when it starts later). A certificate without its key fails.
 * 0 when it matches, otherwise USP_EINVAL with the first difference in
 * `why`. Used to keep files that are still good. */
int usp_cert_matches(const struct usp_cert *c, const struct usp_cert_spec *spec, char *why,
                     size_t whylen);

/* "sha256:" and the SHA-256 of the DER certificate as 64 lower-case hex
 * digits (the fingerprint + algorithm of R-SEC.2). `buf` needs
 * USP_CERT_FINGERPRINT_LEN + 1 bytes. 0 or USP_ERANGE. */
#define USP_CERT_FINGERPRINT_LEN (7 + 64)
int usp_cert_fingerprint(const X509 *x, char *buf, size_t len);

/* The subjectAltName of `x` as one line, "URI:urn:bbf:usp:id:...,
 * DNS:localhost,IP:127.0.0.1,IP:::1" ("-" when there is none); cut short
 * (ending in "...") when `len` is too small. */
void usp_cert_san_text(const X509 *x, char *buf, size_t len);

/* notAfter of `x` as "YYYY-MM-DDTHH:MM:SSZ". 0 or USP_EINVAL. */
int usp_cert_not_after_text(const X509 *x, char *buf, size_t len);

/* The three texts above for one certificate ("-" for what cannot be had),
 * without finishing it (see usp_cert_x509): what a listing of 100,000
 * agent certificates needs. */
struct usp_cert_info {
    char san[1024];
    char not_after[24];
    char fingerprint[USP_CERT_FINGERPRINT_LEN + 1];
};
void usp_cert_info(const struct usp_cert *c, struct usp_cert_info *out);

#endif
