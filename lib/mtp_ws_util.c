/* WebSocket binding helpers that read or write handshake text: the client's
 * request-target with the "eid" query parameter [R-WS.10b/c], the
 * Sec-WebSocket-Protocol list [R-WS.9-12a] and the deprecated
 * bbf-usp-protocol extension [R-WS.10a/11a]. No libwebsockets here, so the
 * unit tests and the fuzzer link these alone. */
#include <string.h>

#include "mtp_int.h"

/* Appends to a bounded buffer, counting what did not fit. */
struct out {
    char *p;
    size_t n, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->n)
        o->p[o->len] = c;
    o->len++;
}

static void put_str(struct out *o, const char *s)
{
    while (*s)
        put(o, *s++);
}

static size_t finish(struct out *o)
{
    if (o->n)
        o->p[o->len < o->n ? o->len : o->n - 1] = '\0';
    return o->len;
}

static bool is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Characters a query value may carry as they are: RFC 3986 query
 * characters less the ones that separate parameters ("&", "="), "+" (read
 * as a space by form decoders, libwebsockets among them) and "%". */
static bool value_char_ok(unsigned char c)
{
    return is_alnum(c) || (c && strchr("-._~!$'()*,;:@/?", c) != NULL);
}

size_t mtp__ws_target(const char *path, const char *query, const char *eid, char *buf, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    struct out o = {.p = buf, .n = n};
    put_str(&o, path && path[0] ? path : "/");
    put(&o, '?');
    if (query && query[0]) {
        put_str(&o, query);
        put(&o, '&');
    }
    put_str(&o, "eid=");
    for (const unsigned char *s = (const unsigned char *)eid; *s; s++) {
        if (value_char_ok(*s)) {
            put(&o, (char)*s);
        } else {
            put(&o, '%');
            put(&o, hex[*s >> 4]);
            put(&o, hex[*s & 15]);
        }
    }
    return finish(&o);
}

bool mtp__ws_query_has_eid(const char *query)
{
    for (const char *p = query; p && *p;) {
        if (strncmp(p, "eid=", 4) == 0 || strcmp(p, "eid") == 0 || strncmp(p, "eid&", 4) == 0)
            return true;
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return false;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool mtp__ws_protocol_listed(const char *list, const char *proto)
{
    size_t plen = strlen(proto);
    for (const char *p = list; p && *p;) {
        while (is_ows(*p) || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_ows(end[-1]))
            end--;
        if ((size_t)(end - start) == plen && memcmp(start, proto, plen) == 0)
            return true;
    }
    return false;
}

/* RFC 7230 tchar. */
static bool is_tchar(unsigned char c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A token at *pp; returns its length (0: none) and moves past it. */
static size_t token(const char **pp)
{
    const char *p = *pp;
    while (is_tchar((unsigned char)*p))
        p++;
    size_t n = (size_t)(p - *pp);
    *pp = p;
    return n;
}

static void skip_ows(const char **pp)
{
    while (is_ows(**pp))
        (*pp)++;
}

/* A token or quoted-string value at *pp. With `out`, stores the unquoted
 * value (up to n - 1 bytes; *over set when more). USP_EINVAL when neither. */
static int param_value(const char **pp, char *out, size_t n, bool *over)
{
    const char *p = *pp;
    size_t o = 0;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (!*p)
                return USP_EINVAL; /* unterminated */
            if (*p == '\\') {
                p++;
                if (!*p)
                    return USP_EINVAL;
            }
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return USP_EINVAL;
            if (out) {
                if (o + 1 < n)
                    out[o] = *p;
                else
                    *over = true;
                o++;
            }
        }
        p++;
    } else {
        const char *s = p;
        size_t len = token(&p);
        if (len == 0)
            return USP_EINVAL;
        if (out) {
            for (size_t i = 0; i < len; i++) {
                if (o + 1 < n)
                    out[o] = s[i];
                else
                    *over = true;
                o++;
            }
        }
    }
    if (out && n)
        out[o < n ? o : n - 1] = '\0';
    *pp = p;
    return 0;
}

#define BBF_EXT "bbf-usp-protocol"

static int ext_eid(const char *hdr, char *out, size_t n)
{
    if (!hdr)
        return USP_ENOENT;
    const char *p = hdr;
    for (;;) {
        /* One extension: name *( ";" param ). Elements may be empty. */
        skip_ows(&p);
        if (!*p)
            return USP_ENOENT;
        if (*p == ',') {
            p++;
            continue;
        }
        const char *name = p;
        size_t nlen = token(&p);
        bool ours = nlen == sizeof BBF_EXT - 1 && strncmp(name, BBF_EXT, nlen) == 0;
        for (; nlen > 0;) {
            skip_ows(&p);
            if (*p != ';')
                break;
            p++;
            skip_ows(&p);
            const char *pn = p;
            size_t pl = token(&p);
            if (pl == 0) {
                if (ours)
                    return USP_EINVAL;
                break;
            }
            skip_ows(&p);
            if (*p != '=')
                continue; /* a parameter without a value */
            p++;
            skip_ows(&p);
            bool want = ours && pl == 3 && strncmp(pn, "eid", 3) == 0;
            bool over = false;
            int rc = param_value(&p, want ? out : NULL, n, &over);
            if (rc) {
                if (ours)
                    return rc;
                break;
            }
            if (want) {
                if (over)
                    return USP_ERANGE;
                return 0;
            }
        }
        skip_ows(&p);
        if (ours && *p && *p != ',')
            return USP_EINVAL;
        /* Past this extension: garbage in another one is skipped up to the
         * next comma outside quotes. */
        bool q = false;
        while (*p && (q || *p != ',')) {
            if (*p == '"')
                q = !q;
            else if (q && *p == '\\' && p[1])
                p++;
            p++;
        }
    }
}

int mtp__ws_ext_eid(const char *hdr, char *out, size_t n)
{
    if (out && n)
        out[0] = '\0';
    int rc = ext_eid(hdr, out, n);
    if (rc && out && n)
        out[0] = '\0'; /* nothing half-read */
    return rc;
}

size_t mtp__ws_ext_value(const char *eid, char *buf, size_t n)
{
    struct out o = {.p = buf, .n = n};
    put_str(&o, BBF_EXT "; eid=\"");
    for (const char *s = eid; *s; s++) {
        if (*s == '"' || *s == '\\')
            put(&o, '\\');
        put(&o, *s);
    }
    put(&o, '"');
    return finish(&o);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mtp__ws_pct_decode(const char *s, char *out, size_t n)
{
    size_t o = 0;
    if (n == 0)
        return USP_ERANGE;
    out[0] = '\0';
    for (; *s; s++) {
        char c = *s;
        if (c == '%') {
            int h = hexval(s[1]);
            int l = h < 0 ? -1 : hexval(s[2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return USP_EINVAL;
            c = (char)(h * 16 + l);
            s += 2;
        }
        if (o + 1 >= n)
            return USP_ERANGE;
        out[o++] = c;
        out[o] = '\0';
    }
    return 0;
}

bool mtp__ws_peer_eid_ok(const char *eid)
{
    size_t n = eid ? strnlen(eid, MTP_WS_EID_MAX + 1) : 0;
    if (n == 0 || n > MTP_WS_EID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)eid[i] < 0x20 || eid[i] == 0x7f)
            return false;
    return true;
}
