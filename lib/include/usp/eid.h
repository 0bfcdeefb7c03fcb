/* USP Endpoint IDs (TR-369 section 2.2, R-ARC.0-6): parsing and validation
 * of `authority-scheme ":" [authority-id] ":" instance-id` for every scheme,
 * and the certificate URN form `urn:bbf:usp:id:<eid>`.
 *
 * Decisions where the specification leaves room (see lib/eid.c for why):
 * - Only the instance-id has a length limit: 50 characters, counted as
 *   written (a "%HH" escape is 3) [R-ARC.6]. There is no limit on the whole
 *   Endpoint ID; it follows from the parts, at most USP_EID_MAX_LEN.
 * - Scheme names are matched in lower case only, as the specification
 *   writes them; "OUI:..." is rejected with a reason saying so.
 * - oui takes 6, 7 or 9 hex digits (MA-L, MA-M, MA-S); cid 6; hex digits
 *   of either case. pen is decimal without leading zeros, 1..4294967295.
 * - imei is exactly 15 digits; a wrong Luhn check digit is a warning, not
 *   an error (the specification's own example fails it). The 16-digit
 *   IMEISV is not an IMEI and is rejected.
 * - uuid is the RFC 4122 textual form 8-4-4-4-12, hex of either case.
 * - fqdn is a host name of two or more LDH labels (1-63 characters, no
 *   leading or trailing "-"), no wildcard, no trailing dot, a top-level
 *   label that is not all digits.
 * - Reserved values (BBF OUI 00256D, PEN 3561) and the proto/doc schemes
 *   are valid Endpoint IDs that carry warning flags [R-ARC.3, R-ARC.4]. */
#ifndef USP_EID_H
#define USP_EID_H

#include <stdbool.h>
#include <stddef.h>

enum usp_eid_scheme {
    USP_EID_OUI,
    USP_EID_CID,
    USP_EID_PEN,
    USP_EID_SELF,
    USP_EID_USER,
    USP_EID_OS,
    USP_EID_OPS,
    USP_EID_UUID,
    USP_EID_IMEI,
    USP_EID_PROTO,
    USP_EID_DOC,
    USP_EID_FQDN,
    USP_EID_SCHEME_COUNT
};

/* Warning flags: the Endpoint ID is valid, but ... */
enum {
    USP_EID_WARN_RESERVED = 1u << 0,       /* uses the BBF OUI 00256D or PEN 3561 [R-ARC.3] */
    USP_EID_WARN_NOT_PRODUCTION = 1u << 1, /* proto or doc scheme [R-ARC.4] */
    USP_EID_WARN_CHECK_DIGIT = 1u << 2,    /* imei whose Luhn check digit is wrong */
};

#define USP_EID_INSTANCE_MAX 50 /* characters of the instance-id [R-ARC.6] */
/* The longest valid Endpoint ID follows from the parts: "pen" ":" a 10-digit
 * PEN ":" 50 characters. Handy for fixed buffers (add 1 for the NUL). */
#define USP_EID_MAX_LEN     65
#define USP_EID_URN_PREFIX  "urn:bbf:usp:id:"
#define USP_EID_URN_MAX_LEN (sizeof USP_EID_URN_PREFIX - 1 + USP_EID_MAX_LEN)

/* A parsed Endpoint ID. The pointers point into the parsed string, which
 * must outlive this struct; the parts are not NUL-terminated. */
struct usp_eid {
    enum usp_eid_scheme scheme;
    const char *authority; /* may be empty (authority_len 0) */
    size_t authority_len;
    const char *instance;
    size_t instance_len;
    unsigned warn; /* USP_EID_WARN_* */
};

/* Parses and validates `s`. 0, or USP_EINVAL with a sentence naming what is
 * wrong and where in `why` (may be NULL; truncated to `whylen`). `out` may
 * be NULL to only validate. */
int usp_eid_parse(const char *s, struct usp_eid *out, char *why, size_t whylen);
/* The same for `len` bytes that need not be NUL-terminated (an embedded
 * NUL is an error), e.g. a certificate's subjectAltName. */
int usp_eid_parse_n(const char *s, size_t len, struct usp_eid *out, char *why, size_t whylen);
/* Whether `s` is a valid Endpoint ID (warnings do not make it invalid). */
bool usp_eid_valid(const char *s);

/* "oui", "cid", ...; NULL for a value out of range. */
const char *usp_eid_scheme_name(enum usp_eid_scheme scheme);
/* A sentence for one USP_EID_WARN_* flag; NULL for an unknown flag. */
const char *usp_eid_warn_text(unsigned flag);

/* Writes "urn:bbf:usp:id:<eid>" into `buf` after validating `eid`.
 * 0, USP_EINVAL (bad Endpoint ID) or USP_ERANGE (`buf` too small; it then
 * holds an empty string). */
int usp_eid_to_urn(const char *eid, char *buf, size_t buflen);
/* Takes the Endpoint ID out of a "urn:bbf:usp:id:..." URN (the prefix is
 * matched without regard to case, RFC 8141) of `len` bytes, validates it
 * and writes it into `buf`. 0, USP_EINVAL with `why`, or USP_ERANGE. */
int usp_eid_from_urn(const char *urn, size_t len, char *buf, size_t buflen, char *why,
                     size_t whylen);

#endif
