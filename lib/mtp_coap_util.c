/* Pure helpers of the CoAP binding (no libcoap): the USP endpoint resource
 * path, the reply-to Uri-Query, the Endpoint ID in a coap(s) URL and the
 * version rule. Linked by unit tests and fuzzers without libcoap. */
#include <stdio.h>
#include <string.h>

#include "usp/mtp_coap.h"

static const char hex[] = "0123456789ABCDEF";

static bool is_unreserved(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int hex_val(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends to a bounded buffer, counting what would have been written. */
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

static void put_pct(struct out *o, unsigned char c)
{
    put(o, '%');
    put(o, hex[c >> 4]);
    put(o, hex[c & 15]);
}

static size_t finish(struct out *o)
{
    if (o->n)
        o->p[o->len < o->n ? o->len : o->n - 1] = '\0';
    return o->len;
}

size_t usp_mtp_coap_resource_path(const char *eid, char *buf, size_t n)
{
    struct out o = {buf, n, 0};
    put(&o, '/');
    put(&o, 'e');
    put(&o, '/');
    for (const unsigned char *s = (const unsigned char *)eid; *s; s++) {
        /* pchar of RFC 3986 less '%' (always escaped) */
        if (is_unreserved(*s) || (*s && strchr("!$&'()*+,;=:@", *s)))
            put(&o, (char)*s);
        else
            put_pct(&o, *s);
    }
    return finish(&o);
}

size_t usp_mtp_coap_reply_to_build(const char *uri, char *buf, size_t n)
{
    struct out o = {buf, n, 0};
    for (const char *p = USP_MTP_COAP_REPLY_TO; *p; p++)
        put(&o, *p);
    for (const unsigned char *s = (const unsigned char *)uri; *s; s++) {
        if (is_unreserved(*s))
            put(&o, (char)*s);
        else
            put_pct(&o, *s);
    }
    return finish(&o);
}

/* Percent-decodes s[0..len) into out (n bytes, terminated): 0, USP_EINVAL
 * for a bad escape or a control character (also escaped), USP_ERANGE. */
static int pct_decode(const char *s, size_t len, char *out, size_t n)
{
    size_t o = 0;
    if (n)
        out[0] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int h = i + 1 < len ? hex_val(s[i + 1]) : -1;
            int l = i + 2 < len ? hex_val(s[i + 2]) : -1;
            if (h < 0 || l < 0)
                goto bad;
            c = (unsigned char)(h * 16 + l);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            goto bad;
        if (o + 1 >= n)
            goto range;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
bad:
    if (n)
        out[0] = '\0';
    return USP_EINVAL;
range:
    if (n)
        out[0] = '\0';
    return USP_ERANGE;
}

int usp_mtp_coap_reply_to_parse(const uint8_t *val, size_t len, char *uri, size_t n)
{
    const size_t plen = sizeof USP_MTP_COAP_REPLY_TO - 1;
    if (n)
        uri[0] = '\0';
    if (len < plen || memcmp(val, USP_MTP_COAP_REPLY_TO, plen) != 0)
        return USP_ENOENT;
    if (len == plen)
        return USP_EINVAL;
    return pct_decode((const char *)val + plen, len - plen, uri, n);
}

int usp_mtp_coap_url_eid(const struct usp_mtp_url *u, char *eid, size_t n)
{
    if (n)
        eid[0] = '\0';
    if (strcmp(u->binding, "coap") != 0 || strncmp(u->path, "/e/", 3) != 0)
        return USP_EINVAL;
    const char *seg = u->path + 3;
    size_t len = strlen(seg);
    if (len == 0 || memchr(seg, '/', len))
        return USP_EINVAL;
    int rc = pct_decode(seg, len, eid, n);
    if (rc == 0 && eid[0] == '\0')
        rc = USP_EINVAL;
    return rc;
}

int usp_mtp_coap_version_check(const char *version, char *why, size_t whylen)
{
    const char *v = version ? version : USP_MTP_COAP_VERSION_DEFAULT;
    if (strcmp(v, "1.0") == 0 || strcmp(v, "1.1") == 0 || strcmp(v, "1.2") == 0)
        return 0;
    if (why && whylen)
        snprintf(why, whylen,
                 "USP version \"%.16s\" cannot be used with CoAP: the CoAP binding was "
                 "obsoleted in USP 1.3, its Records declare 1.0, 1.1 or 1.2",
                 v);
    return USP_EINVAL;
}
