/* Endpoint ID parsing and validation (TR-369 section 2.2, R-ARC.0-6).
 *
 * Why the choices in usp/eid.h:
 * - R-ARC.6 limits the instance-id to 50 characters and nothing else; a
 *   percent-escape counts as the 3 characters it is written with, because
 *   the limit exists for the places the ID is written (MQTT topics, UIs).
 *   The whole Endpoint ID has no limit of its own in the specification.
 * - RFC 2234 literals are case-insensitive, but Endpoint IDs are compared
 *   as strings everywhere (Records, topics, certificates): accepting "OUI:"
 *   would let two spellings name one Endpoint, so only lower case passes.
 * - The specification's table asks for a 24-bit OUI (6 hex digits); the
 *   IEEE also assigns 28- and 36-bit blocks (MA-M, MA-S) and the project's
 *   notes accept them as 7 and 9 hex digits, so all three pass. A caller
 *   that wants only MA-L can test authority_len == 6.
 * - A PEN is an SNMP enterprise arc; 4294967295 bounds it (and makes the
 *   longest Endpoint ID 65 characters).
 * - The imei example in the specification, 990000862471854, has a wrong
 *   Luhn digit; refusing it would refuse the specification's own example,
 *   so a bad check digit is only a warning.
 * - The os/ops instance-id follows TR-069 3.4.4: the OUI is 6 hex digits,
 *   ProductClass and SerialNumber are non-empty. A ProductClass may itself
 *   hold "-", so ops only needs a "-" somewhere between two non-empty
 *   parts after the OUI. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "usp/eid.h"
#include "usp/errors.h"

enum auth_rule {
    AUTH_OUI,         /* 6, 7 or 9 hex digits */
    AUTH_CID,         /* 6 hex digits */
    AUTH_PEN,         /* decimal */
    AUTH_NAME,        /* 0-6 unreserved characters */
    AUTH_NAME_NO_DOT, /* the same without "." */
    AUTH_EMPTY,       /* zero-length */
};

enum inst_rule {
    INST_ANY, /* only R-ARC.5/6 */
    INST_OS,
    INST_OPS,
    INST_UUID,
    INST_IMEI,
    INST_FQDN,
};

struct scheme {
    const char *name;
    enum auth_rule auth;
    enum inst_rule inst;
};

/* Indexed by enum usp_eid_scheme. */
static const struct scheme schemes[USP_EID_SCHEME_COUNT] = {
    [USP_EID_OUI] = {"oui", AUTH_OUI, INST_ANY},
    [USP_EID_CID] = {"cid", AUTH_CID, INST_ANY},
    [USP_EID_PEN] = {"pen", AUTH_PEN, INST_ANY},
    [USP_EID_SELF] = {"self", AUTH_NAME, INST_ANY},
    [USP_EID_USER] = {"user", AUTH_NAME, INST_ANY},
    [USP_EID_OS] = {"os", AUTH_EMPTY, INST_OS},
    [USP_EID_OPS] = {"ops", AUTH_EMPTY, INST_OPS},
    [USP_EID_UUID] = {"uuid", AUTH_EMPTY, INST_UUID},
    [USP_EID_IMEI] = {"imei", AUTH_EMPTY, INST_IMEI},
    [USP_EID_PROTO] = {"proto", AUTH_NAME_NO_DOT, INST_ANY},
    [USP_EID_DOC] = {"doc", AUTH_NAME, INST_ANY},
    [USP_EID_FQDN] = {"fqdn", AUTH_EMPTY, INST_FQDN},
};

#define AUTH_NAME_MAX  6
#define PEN_MAX_DIGITS 10
#define BBF_OUI        "00256D"
#define BBF_PEN        "3561"

/* Where a failure is reported: the caller's buffer, possibly none. */
struct why {
    char *buf;
    size_t len;
};

__attribute__((format(printf, 2, 3))) static int fail(struct why *w, const char *fmt, ...)
{
    if (w->buf && w->len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->buf, w->len, fmt, ap);
        va_end(ap);
    }
    return USP_EINVAL;
}

/* Input text made safe to print: at most 24 characters, anything outside
 * printable ASCII as \xHH, "..." when cut. */
struct shown {
    char s[24 * 4 + 4];
};

static const char *show(struct shown *o, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t w = 0;
    size_t i;
    for (i = 0; i < n && i < 24; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
            o->s[w++] = (char)c;
        } else {
            o->s[w++] = '\\';
            o->s[w++] = 'x';
            o->s[w++] = hex[c >> 4];
            o->s[w++] = hex[c & 15];
        }
    }
    if (i < n) {
        memcpy(o->s + w, "...", 3);
        w += 3;
    }
    o->s[w] = '\0';
    return o->s;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_unreserved(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_';
}

static bool all_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_hex(p[i]))
            return false;
    return true;
}

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(p[i]))
            return false;
    return true;
}

static bool equal_nocase(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

static int check_authority(const struct scheme *sc, const char *p, size_t n, unsigned *warn,
                           struct why *w)
{
    struct shown sh;
    switch (sc->auth) {
    case AUTH_OUI:
        if ((n != 6 && n != 7 && n != 9) || !all_hex(p, n))
            return fail(w,
                        "oui authority-id must be 6, 7 or 9 hex digits (an IEEE OUI, MA-M or "
                        "MA-S), got '%s'",
                        show(&sh, p, n));
        if (equal_nocase(p, n, BBF_OUI))
            *warn |= USP_EID_WARN_RESERVED;
        return 0;
    case AUTH_CID:
        if (n != 6 || !all_hex(p, n))
            return fail(w, "cid authority-id must be 6 hex digits (an IEEE CID), got '%s'",
                        show(&sh, p, n));
        return 0;
    case AUTH_PEN: {
        if (n == 0 || !all_digits(p, n) || p[0] == '0')
            return fail(w,
                        "pen authority-id must be a decimal Private Enterprise Number from 1, "
                        "without leading zeros, got '%s'",
                        show(&sh, p, n));
        uint64_t v = 0;
        for (size_t i = 0; i < n && v <= UINT32_MAX; i++)
            v = v * 10 + (uint64_t)(p[i] - '0');
        if (n > PEN_MAX_DIGITS || v > UINT32_MAX)
            return fail(w, "pen authority-id '%s' is larger than 4294967295", show(&sh, p, n));
        if (n == strlen(BBF_PEN) && memcmp(p, BBF_PEN, n) == 0)
            *warn |= USP_EID_WARN_RESERVED;
        return 0;
    }
    case AUTH_NAME:
    case AUTH_NAME_NO_DOT:
        if (n > AUTH_NAME_MAX)
            return fail(w, "%s authority-id must be at most %d characters, got %zu ('%s')",
                        sc->name, AUTH_NAME_MAX, n, show(&sh, p, n));
        for (size_t i = 0; i < n; i++) {
            if (!is_unreserved(p[i]) || (sc->auth == AUTH_NAME_NO_DOT && p[i] == '.'))
                return fail(w,
                            "%s authority-id character %zu ('%s') is not allowed (letters, "
                            "digits, '-', '_'%s)",
                            sc->name, i + 1, show(&sh, p + i, 1),
                            sc->auth == AUTH_NAME_NO_DOT ? "" : ", '.'");
        }
        return 0;
    case AUTH_EMPTY:
        if (n != 0)
            return fail(w, "%s authority-id must be empty, got '%s'", sc->name, show(&sh, p, n));
        return 0;
    }
    return fail(w, "internal error: unknown authority rule");
}

/* R-ARC.5 and R-ARC.6, common to every scheme. */
static int check_instance_syntax(const char *p, size_t n, struct why *w)
{
    struct shown sh;
    if (n == 0)
        return fail(w, "instance-id is empty");
    if (n > USP_EID_INSTANCE_MAX)
        return fail(w, "instance-id is %zu characters, more than %d (R-ARC.6)", n,
                    USP_EID_INSTANCE_MAX);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            if (i + 2 >= n || !is_hex(p[i + 1]) || !is_hex(p[i + 2]))
                return fail(w,
                            "instance-id character %zu starts a bad percent-escape '%s' "
                            "(want %%HH)",
                            i + 1, show(&sh, p + i, n - i < 3 ? n - i : 3));
            i += 2;
        } else if (!is_unreserved(p[i])) {
            return fail(w,
                        "instance-id character %zu ('%s') is not allowed (letters, digits, "
                        "'-', '.', '_' or %%HH)",
                        i + 1, show(&sh, p + i, 1));
        }
    }
    return 0;
}

/* TR-069 3.4.4 device identity: "<OUI>-" then the rest. */
static int check_oui_prefix(const char *name, const char *form, const char *p, size_t n,
                            unsigned *warn, struct why *w)
{
    struct shown sh;
    if (n < 8 || !all_hex(p, 6) || p[6] != '-')
        return fail(w, "%s instance-id must be %s with a 6-hex-digit OUI, got '%s'", name, form,
                    show(&sh, p, n));
    if (equal_nocase(p, 6, BBF_OUI))
        *warn |= USP_EID_WARN_RESERVED;
    return 0;
}

static int check_os(const char *p, size_t n, unsigned *warn, struct why *w)
{
    /* The OUI check wants a character after the "-": the SerialNumber. */
    return check_oui_prefix("os", "<OUI>-<SerialNumber>", p, n, warn, w);
}

static int check_ops(const char *p, size_t n, unsigned *warn, struct why *w)
{
    static const char form[] = "<OUI>-<ProductClass>-<SerialNumber>";
    struct shown sh;
    int rc = check_oui_prefix("ops", form, p, n, warn, w);
    if (rc)
        return rc;
    const char *rest = p + 7;
    size_t rn = n - 7;
    if (rest[0] == '-')
        return fail(w, "ops instance-id has an empty ProductClass (want %s), got '%s'", form,
                    show(&sh, p, n));
    const char *dash = memchr(rest, '-', rn);
    if (!dash)
        return fail(w, "ops instance-id has no '-' before the SerialNumber (want %s), got '%s'",
                    form, show(&sh, p, n));
    if (rest[rn - 1] == '-')
        return fail(w, "ops instance-id has an empty SerialNumber (want %s), got '%s'", form,
                    show(&sh, p, n));
    return 0;
}

static int check_uuid(const char *p, size_t n, struct why *w)
{
    struct shown sh;
    bool ok = n == 36;
    for (size_t i = 0; ok && i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            ok = p[i] == '-';
        else
            ok = is_hex(p[i]);
    }
    if (!ok)
        return fail(w,
                    "uuid instance-id must be an RFC 4122 UUID "
                    "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex), got '%s'",
                    show(&sh, p, n));
    return 0;
}

static bool luhn_ok(const char *p, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(p[n - 1 - i] - '0');
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

static int check_imei(const char *p, size_t n, unsigned *warn, struct why *w)
{
    struct shown sh;
    if (!all_digits(p, n))
        return fail(w, "imei instance-id must be 15 decimal digits, got '%s'", show(&sh, p, n));
    if (n == 16)
        return fail(w, "imei instance-id must be 15 decimal digits; 16 is an IMEISV, which is "
                       "not an IMEI");
    if (n != 15)
        return fail(w, "imei instance-id must be 15 decimal digits, got %zu", n);
    if (!luhn_ok(p, n))
        *warn |= USP_EID_WARN_CHECK_DIGIT;
    return 0;
}

/* A host name (RFC 1123 LDH labels) as a certificate's dNSName would hold
 * it, without wildcards [R-ARC.4a]. */
static int check_fqdn(const char *p, size_t n, struct why *w)
{
    struct shown sh;
    size_t labels = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '.') {
            if (!is_alpha(p[i]) && !is_digit(p[i]) && p[i] != '-')
                return fail(w,
                            "fqdn instance-id character %zu ('%s') is not allowed in a host "
                            "name (letters, digits, '-', '.')",
                            i + 1, show(&sh, p + i, 1));
            continue;
        }
        size_t len = i - start;
        labels++;
        if (len == 0)
            return fail(w, "fqdn instance-id label %zu is empty in '%s'", labels, show(&sh, p, n));
        if (len > 63)
            return fail(w, "fqdn instance-id label %zu is longer than 63 characters", labels);
        if (p[start] == '-' || p[i - 1] == '-')
            return fail(w, "fqdn instance-id label %zu ('%s') must not start or end with '-'",
                        labels, show(&sh, p + start, len));
        if (i == n && all_digits(p + start, len))
            return fail(w, "fqdn instance-id top-level label '%s' must not be all digits",
                        show(&sh, p + start, len));
        start = i + 1;
    }
    if (labels < 2)
        return fail(w, "fqdn instance-id '%s' is not fully qualified (needs a '.')",
                    show(&sh, p, n));
    return 0;
}

static int check_instance(const struct scheme *sc, const char *p, size_t n, unsigned *warn,
                          struct why *w)
{
    /* A wildcard is the likeliest mistake for fqdn: say so rather than
     * blaming the character. */
    if (sc->inst == INST_FQDN && memchr(p, '*', n))
        return fail(w, "fqdn instance-id must not contain a wildcard '*'");
    int rc = check_instance_syntax(p, n, w);
    if (rc)
        return rc;
    switch (sc->inst) {
    case INST_ANY:
        return 0;
    case INST_OS:
        return check_os(p, n, warn, w);
    case INST_OPS:
        return check_ops(p, n, warn, w);
    case INST_UUID:
        return check_uuid(p, n, w);
    case INST_IMEI:
        return check_imei(p, n, warn, w);
    case INST_FQDN:
        return check_fqdn(p, n, w);
    }
    return fail(w, "internal error: unknown instance-id rule");
}

int usp_eid_parse_n(const char *s, size_t len, struct usp_eid *out, char *why, size_t whylen)
{
    struct why w = {why, whylen};
    struct shown sh;
    if (why && whylen)
        why[0] = '\0';
    if (out)
        memset(out, 0, sizeof *out);
    if (!s)
        return fail(&w, "Endpoint ID is missing");
    if (len == 0)
        return fail(&w, "Endpoint ID is empty");
    const char *nul = memchr(s, '\0', len);
    if (nul)
        return fail(&w, "Endpoint ID has a NUL byte at offset %zu", (size_t)(nul - s));

    const char *c1 = memchr(s, ':', len);
    if (!c1)
        return fail(&w, "Endpoint ID '%s' has no ':' after the authority-scheme",
                    show(&sh, s, len));
    size_t sn = (size_t)(c1 - s);
    int scheme = -1;
    for (int i = 0; i < USP_EID_SCHEME_COUNT; i++) {
        if (strlen(schemes[i].name) == sn && memcmp(s, schemes[i].name, sn) == 0) {
            scheme = i;
            break;
        }
    }
    if (scheme < 0) {
        for (int i = 0; i < USP_EID_SCHEME_COUNT; i++)
            if (equal_nocase(s, sn, schemes[i].name))
                return fail(&w, "authority-scheme '%s' must be written in lower case ('%s')",
                            show(&sh, s, sn), schemes[i].name);
        if (sn == 0)
            return fail(&w, "Endpoint ID has an empty authority-scheme");
        return fail(&w, "unknown authority-scheme '%s'", show(&sh, s, sn));
    }
    const struct scheme *sc = &schemes[scheme];

    const char *auth = c1 + 1;
    size_t rest = len - sn - 1;
    const char *c2 = memchr(auth, ':', rest);
    if (!c2)
        return fail(&w, "Endpoint ID has no ':' between the authority-id and the instance-id");
    size_t an = (size_t)(c2 - auth);
    const char *inst = c2 + 1;
    size_t in = rest - an - 1;

    unsigned warn = 0;
    int rc = check_authority(sc, auth, an, &warn, &w);
    if (rc)
        return rc;
    rc = check_instance(sc, inst, in, &warn, &w);
    if (rc)
        return rc;
    if (scheme == USP_EID_PROTO || scheme == USP_EID_DOC)
        warn |= USP_EID_WARN_NOT_PRODUCTION;
    if (out) {
        out->scheme = (enum usp_eid_scheme)scheme;
        out->authority = auth;
        out->authority_len = an;
        out->instance = inst;
        out->instance_len = in;
        out->warn = warn;
    }
    return 0;
}

int usp_eid_parse(const char *s, struct usp_eid *out, char *why, size_t whylen)
{
    return usp_eid_parse_n(s, s ? strlen(s) : 0, out, why, whylen);
}

bool usp_eid_valid(const char *s)
{
    return usp_eid_parse(s, NULL, NULL, 0) == 0;
}

const char *usp_eid_scheme_name(enum usp_eid_scheme scheme)
{
    if ((unsigned)scheme >= USP_EID_SCHEME_COUNT)
        return NULL;
    return schemes[scheme].name;
}

const char *usp_eid_warn_text(unsigned flag)
{
    switch (flag) {
    case USP_EID_WARN_RESERVED:
        return "uses the Broadband Forum's reserved OUI 00256D or PEN 3561 (R-ARC.3)";
    case USP_EID_WARN_NOT_PRODUCTION:
        return "the proto and doc schemes must not be used in production (R-ARC.4)";
    case USP_EID_WARN_CHECK_DIGIT:
        return "the IMEI's Luhn check digit is wrong";
    }
    return NULL;
}

int usp_eid_to_urn(const char *eid, char *buf, size_t buflen)
{
    if (buf && buflen)
        buf[0] = '\0';
    if (usp_eid_parse(eid, NULL, NULL, 0) != 0)
        return USP_EINVAL;
    size_t need = strlen(USP_EID_URN_PREFIX) + strlen(eid) + 1;
    if (!buf || buflen < need)
        return USP_ERANGE;
    snprintf(buf, buflen, "%s%s", USP_EID_URN_PREFIX, eid);
    return 0;
}

int usp_eid_from_urn(const char *urn, size_t len, char *buf, size_t buflen, char *why,
                     size_t whylen)
{
    struct why w = {why, whylen};
    struct shown sh;
    size_t pn = strlen(USP_EID_URN_PREFIX);
    if (buf && buflen)
        buf[0] = '\0';
    if (why && whylen)
        why[0] = '\0';
    if (!urn)
        return fail(&w, "URN is missing");
    if (len < pn || strncasecmp(urn, USP_EID_URN_PREFIX, pn) != 0)
        return fail(&w, "'%s' does not start with '%s'", show(&sh, urn, len), USP_EID_URN_PREFIX);
    int rc = usp_eid_parse_n(urn + pn, len - pn, NULL, why, whylen);
    if (rc)
        return rc;
    if (!buf || buflen < len - pn + 1)
        return USP_ERANGE;
    memcpy(buf, urn + pn, len - pn);
    buf[len - pn] = '\0';
    return 0;
}
