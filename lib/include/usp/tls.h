/* TLS helpers for the USP bindings (mqtts, stomps, wss, UDS with TLS, DTLS
 * for coaps): OpenSSL contexts with mutual authentication, and the Endpoint
 * IDs a peer certificate authenticates.
 *
 * Contexts [R-MTP.1, R-SEC.0a]: TLS 1.2 or newer (DTLS 1.2 or newer), the
 * peer's certificate is always required and verified against the given CA
 * file only (not the system store), in both roles. Date checks follow
 * R-SEC.19/20: on by default, off with USP_TLS_NO_TIME_CHECK for an
 * endpoint that has no absolute time yet.
 *
 * Endpoint IDs in certificates [R-SEC.0a, R-SEC.10a-12]:
 * - every subjectAltName URI that starts with "urn:bbf:usp:id:" (the prefix
 *   in any case, RFC 8141) and holds a valid Endpoint ID;
 * - every dNSName that is a valid fqdn instance-id, as "fqdn::<name>";
 * - wildcard patterns for certificates shared by several agents: a URN
 *   whose instance-id contains "*". Each "*" stands for one or more
 *   instance-id characters. The pattern is honoured only when (R-SEC.12)
 *   the authority-scheme is oui, cid, pen, os or ops, the authority-id
 *   has no "*", and for os and ops the "<OUI>-" that starts the
 *   instance-id (the assigning entity) has none; with each "*" read as one
 *   character the rest must be a valid Endpoint ID. Examples:
 *   "os::012345-*", "os::012345-SIM*", "oui:00256D:*", "ops::012345-STB-*".
 * Entries that fail these rules are skipped, never trusted.
 *
 * A from_id matches when it equals an Endpoint ID of the certificate
 * (byte for byte: Endpoint IDs are compared as strings), when it is
 * "fqdn::<name>" and <name> equals a dNSName without regard to case, or
 * when it has the scheme and authority-id of a wildcard pattern and its
 * instance-id matches the pattern's. */
#ifndef USP_TLS_H
#define USP_TLS_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>

enum usp_tls_role {
    USP_TLS_CLIENT,
    USP_TLS_SERVER,
};

enum {
    USP_TLS_DTLS = 1u << 0,          /* DTLS 1.2+ (CoAP) instead of TLS 1.2+ */
    USP_TLS_NO_TIME_CHECK = 1u << 1, /* ignore notBefore/notAfter (no absolute time, R-SEC.19) */
};

/* Files of one endpoint. `cert_file` may hold the chain after the leaf.
 * With cert_file and key_file NULL, the context has no certificate of its
 * own and each connection sets one with usp_tls_use_files (one shared
 * context for many agents). */
struct usp_tls_files {
    const char *ca_file; /* PEM CA certificate(s) trusted for the peer: required */
    const char *cert_file;
    const char *key_file;
};

/* A new SSL_CTX for `role` (free it with SSL_CTX_free). 0; USP_EINVAL for
 * a missing ca_file or only one of cert_file/key_file; USP_ENOENT for a
 * file that does not exist; USP_EIO when OpenSSL cannot load a file or the
 * key does not match the certificate. `why` names the file and gives
 * OpenSSL's reason. */
int usp_tls_ctx_new(enum usp_tls_role role, const struct usp_tls_files *f, unsigned flags,
                    SSL_CTX **out, char *why, size_t whylen);

/* Sets the certificate (chain) and key of one connection. 0, USP_ENOENT or
 * USP_EIO with the file and reason in `why`. */
int usp_tls_use_files(SSL *ssl, const char *cert_file, const char *key_file, char *why,
                      size_t whylen);

/* For a client: the host name or IP address (text) the server certificate
 * must match, from the MTP URL (R-MTP.4 step 3). 0 or USP_EINVAL. */
int usp_tls_expect_host(SSL *ssl, const char *host);

/* Why verifying the peer failed, e.g. "certificate has expired"; "ok" when
 * it did not fail. */
const char *usp_tls_verify_text(const SSL *ssl);

/* ---- Endpoint IDs in a certificate ---------------------------------------- */

enum {
    USP_TLS_ID_WILDCARD = 1u << 0, /* a shared-certificate pattern (R-SEC.11) */
    USP_TLS_ID_DNS = 1u << 1,      /* "fqdn::<name>" from a dNSName */
};

/* The Endpoint IDs one certificate authenticates: immutable after it is
 * made, one allocation sized to what it holds (keep one per connection). */
struct usp_tls_ids;

/* Reads the subjectAltName of `cert`. 0 with at least one Endpoint ID;
 * USP_ENOENT when it has none (`why` says what was there and why entries
 * were skipped); USP_ENOMEM. */
int usp_tls_ids_from_cert(const X509 *cert, struct usp_tls_ids **out, char *why, size_t whylen);
/* The same for the verified peer of `ssl`: USP_EPERM when the peer sent no
 * certificate or it did not verify. */
int usp_tls_ids_from_ssl(const SSL *ssl, struct usp_tls_ids **out, char *why, size_t whylen);
void usp_tls_ids_free(struct usp_tls_ids *ids);

size_t usp_tls_ids_count(const struct usp_tls_ids *ids);
/* The i-th Endpoint ID or pattern, without the URN prefix; `flags` (may be
 * NULL) gets USP_TLS_ID_*. NULL when i is out of range. */
const char *usp_tls_ids_get(const struct usp_tls_ids *ids, size_t i, unsigned *flags);

/* Whether the certificate authenticates a Record's `from_id` [R-SEC.0a]. 0
 * when it does; USP_EPERM when not (the Record must be dropped; `why` says
 * what the certificate holds); USP_EINVAL when from_id is not a valid
 * Endpoint ID. */
int usp_tls_ids_match(const struct usp_tls_ids *ids, const char *from_id, char *why, size_t whylen);

/* Checks a shared-certificate pattern such as "os::012345-SIM*" against
 * R-SEC.11/12 (see above). 0, or USP_EINVAL with the reason. A string
 * without "*" is not a pattern and fails. */
int usp_tls_eid_pattern_check(const char *pattern, char *why, size_t whylen);
/* Whether the valid Endpoint ID `eid` falls under the (checked) pattern. */
bool usp_tls_eid_pattern_match(const char *pattern, const char *eid);

#endif
