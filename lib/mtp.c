/* The MTP interface: URL parsing for every binding, the binding registry,
 * the per-loop context (timer wheel, deferred work, connect slots) and what
 * bindings share. No transport library is used here, so the URL parser and
 * the reply-to helpers link without one (unit tests, fuzzers). */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp_int.h"

/* ---- Errors -------------------------------------------------------------- */

int mtp__fail(char *why, size_t whylen, int rc, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

#define FAIL(...) mtp__fail(why, whylen, USP_EINVAL, __VA_ARGS__)

/* A character for a message: itself when printable, else its code. */
static const char *show_char(unsigned char c, char buf[8])
{
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "0x%02X", c);
    return buf;
}

/* ---- URLs ---------------------------------------------------------------- */

struct scheme_info {
    const char *scheme;
    const char *binding;
    uint16_t port;
    bool tls;
};

static const struct scheme_info schemes[] = {
    {"mqtt", "mqtt", 1883, false},    {"mqtts", "mqtt", 8883, true},
    {"stomp", "stomp", 61613, false}, {"stomps", "stomp", 61614, true},
    {"ws", "ws", 80, false},          {"wss", "ws", 443, true},
    {"unix", "uds", 0, false},        {"coap", "coap", 5683, false},
    {"coaps", "coap", 5684, true},
};
#define NSCHEMES (sizeof schemes / sizeof schemes[0])

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
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

static bool is_unreserved(int c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_sub_delim(int c)
{
    return c != 0 && strchr("!$&'()*+,;=", c) != NULL;
}

static const struct scheme_info *find_scheme(const char *name)
{
    for (size_t i = 0; i < NSCHEMES; i++)
        if (strcmp(schemes[i].scheme, name) == 0)
            return &schemes[i];
    return NULL;
}

/* Percent-decodes userinfo s[0..n) into out (USP_MTP_USERINFO_MAX + 1).
 * `colon_ok`: a raw ':' is data (the password). `base` is the offset of s
 * in the URL, for messages. */
static int decode_userinfo(const char *s, size_t n, bool colon_ok, char *out, const char *what,
                           size_t base, char *why, size_t whylen)
{
    size_t o = 0;
    char cb[8];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int h = i + 1 < n ? hex_val(s[i + 1]) : -1;
            int l = i + 2 < n ? hex_val(s[i + 2]) : -1;
            if (h < 0 || l < 0)
                return FAIL("the %s has a bad %%-escape at offset %zu (expected two hex digits)",
                            what, base + i);
            c = (unsigned char)(h * 16 + l);
            if (c == 0)
                return FAIL("the %s contains %%00 at offset %zu", what, base + i);
            i += 2;
        } else if (!is_unreserved(c) && !is_sub_delim(c) && !(colon_ok && c == ':')) {
            return FAIL("character %s at offset %zu is not allowed in the %s (write it as %%%02X)",
                        show_char(c, cb), base + i, what, c);
        }
        if (o >= USP_MTP_USERINFO_MAX)
            return FAIL("the %s is longer than %d characters", what, USP_MTP_USERINFO_MAX);
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* Dotted-quad with 4 decimal parts 0..255 and no leading zeros. */
static bool ipv4_valid(const char *s, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(s[i]) && i - start < 4)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || len > 3 || v > 255 || (len > 1 && s[start] == '0'))
            return false;
        parts++;
        if (i < n) {
            if (s[i] != '.' || i + 1 == n)
                return false;
            i++;
        }
    }
    return parts == 4;
}

static int check_host_name(const char *s, size_t n, size_t base, char *why, size_t whylen)
{
    char cb[8];
    bool numeric = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.' && c != '_')
            return FAIL("character %s at offset %zu is not allowed in a host name",
                        show_char(c, cb), base + i);
        if (!is_digit(c) && c != '.')
            numeric = false;
    }
    if (numeric) {
        if (!ipv4_valid(s, n))
            return FAIL("\"%.*s\" at offset %zu is not a valid IPv4 address", (int)n, s, base);
        return 0;
    }
    if (n > USP_MTP_HOST_MAX)
        return FAIL("the host name at offset %zu is longer than %d characters", base,
                    USP_MTP_HOST_MAX);
    size_t len = (n > 0 && s[n - 1] == '.') ? n - 1 : n; /* a trailing dot is allowed */
    if (len > USP_MTP_HOST_MAX)
        return FAIL("the host name at offset %zu is longer than %d characters", base,
                    USP_MTP_HOST_MAX);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        size_t l = i - start;
        if (l == 0)
            return FAIL("the host name has an empty label at offset %zu", base + start);
        if (l > 63)
            return FAIL("the host name label at offset %zu is longer than 63 characters",
                        base + start);
        if (s[start] == '-' || s[i - 1] == '-')
            return FAIL("the host name label at offset %zu starts or ends with '-'", base + start);
        start = i + 1;
    }
    return 0;
}

/* Path (`query` false) or query characters of RFC 3986, %-escapes checked. */
static int check_path_chars(const char *s, size_t n, bool query, size_t base, char *why,
                            size_t whylen)
{
    const char *what = query ? "query" : "path";
    char cb[8];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n || hex_val(s[i + 1]) < 0 || hex_val(s[i + 2]) < 0)
                return FAIL("the %s has a bad %%-escape at offset %zu (expected two hex digits)",
                            what, base + i);
            i += 2;
            continue;
        }
        if (is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@' || c == '/' ||
            (query && c == '?'))
            continue;
        return FAIL("character %s at offset %zu is not allowed in the %s (write it as %%%02X)",
                    show_char(c, cb), base + i, what, c);
    }
    return 0;
}

static int parse_unix(const char *s, size_t i, size_t n, struct usp_mtp_url *u, char *why,
                      size_t whylen)
{
    char cb[8];
    if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        if (n - i == 2 || s[i + 2] != '/')
            return FAIL("unix: takes a socket path, not a host: write unix:/path or "
                        "unix:///path");
        i += 2;
    }
    if (i == n)
        return FAIL("unix: needs a socket path, e.g. unix:/run/usp.sock");
    if (n - i > USP_MTP_UNIX_MAX)
        return FAIL("the unix socket path is longer than %d characters", USP_MTP_UNIX_MAX);
    for (size_t k = i; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c < 0x20 || c == 0x7f)
            return FAIL("character %s at offset %zu is not allowed in a socket path",
                        show_char(c, cb), k);
    }
    memcpy(u->path, s + i, n - i);
    u->path[n - i] = '\0';
    return 0;
}

static int parse_port(const char *s, size_t n, size_t base, struct usp_mtp_url *u, char *why,
                      size_t whylen)
{
    if (n == 0)
        return FAIL("the port after ':' at offset %zu is empty", base - 1);
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return FAIL("the port \"%.*s\" at offset %zu is not a number", (int)(n > 16 ? 16 : n),
                        s, base);
        if (v <= 65535)
            v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return FAIL("the port \"%.*s\" at offset %zu is out of range 1-65535",
                    (int)(n > 16 ? 16 : n), s, base);
    u->port = (uint16_t)v;
    u->port_given = true;
    return 0;
}

static int parse_hostport(const char *s, size_t i, size_t end, struct usp_mtp_url *u, char *why,
                          size_t whylen)
{
    char cb[8];
    if (i == end)
        return FAIL("the host is missing at offset %zu", i);
    if (s[i] == '[') {
        const char *close = memchr(s + i, ']', end - i);
        if (!close)
            return FAIL("the IPv6 address at offset %zu has no closing ']'", i);
        size_t hl = (size_t)(close - (s + i + 1));
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (memchr(s + i + 1, '%', hl))
            return FAIL("IPv6 zone identifiers (at offset %zu) are not supported", i);
        if (hl == 0 || hl >= sizeof tmp)
            return FAIL("\"%.*s\" at offset %zu is not a valid IPv6 address", (int)(hl + 2), s + i,
                        i);
        memcpy(tmp, s + i + 1, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return FAIL("\"%s\" at offset %zu is not a valid IPv6 address", tmp, i + 1);
        memcpy(u->host, tmp, hl + 1);
        u->host_kind = USP_MTP_HOST_IPV6;
        i = (size_t)(close - s) + 1;
        if (i == end)
            return 0;
        if (s[i] != ':')
            return FAIL("character %s at offset %zu: expected ':' and a port after ']'",
                        show_char((unsigned char)s[i], cb), i);
        return parse_port(s + i + 1, end - i - 1, i + 1, u, why, whylen);
    }
    const char *colon = memchr(s + i, ':', end - i);
    size_t hl = colon ? (size_t)(colon - (s + i)) : end - i;
    if (colon && memchr(colon + 1, ':', end - (size_t)(colon + 1 - s)))
        return FAIL("more than one ':' after the host at offset %zu; IPv6 addresses go in "
                    "brackets, e.g. mqtt://[::1]:1883",
                    i);
    if (hl == 0)
        return FAIL("the host is missing at offset %zu", i);
    int rc = check_host_name(s + i, hl, i, why, whylen);
    if (rc)
        return rc;
    memcpy(u->host, s + i, hl);
    u->host[hl] = '\0';
    u->host_kind = ipv4_valid(s + i, hl) ? USP_MTP_HOST_IPV4 : USP_MTP_HOST_NAME;
    if (colon)
        return parse_port(colon + 1, end - (size_t)(colon + 1 - s), (size_t)(colon + 1 - s), u, why,
                          whylen);
    return 0;
}

static int parse_url(const char *s, struct usp_mtp_url *u, char *why, size_t whylen)
{
    char cb[8];
    size_t n = strnlen(s, USP_MTP_URL_MAX + 1);
    if (n == 0)
        return FAIL("the URL is empty");
    if (n > USP_MTP_URL_MAX)
        return FAIL("the URL is longer than %d characters", USP_MTP_URL_MAX);

    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
    size_t i = 0;
    while (i < n && s[i] != ':') {
        unsigned char c = (unsigned char)s[i];
        if (!(is_alpha(c) || (i > 0 && (is_digit(c) || c == '+' || c == '-' || c == '.'))))
            return FAIL("the URL must start with a scheme such as \"mqtt://\" (character %s at "
                        "offset %zu)",
                        show_char(c, cb), i);
        i++;
    }
    if (i == n || i == 0)
        return FAIL("the URL has no scheme: expected e.g. \"mqtt://host:1883\"");
    char name[8];
    const struct scheme_info *si = NULL;
    if (i < sizeof name) {
        for (size_t k = 0; k < i; k++)
            name[k] = (char)((s[k] >= 'A' && s[k] <= 'Z') ? s[k] - 'A' + 'a' : s[k]);
        name[i] = '\0';
        si = find_scheme(name);
    }
    if (!si)
        return FAIL("unknown scheme \"%.*s\"; expected mqtt, mqtts, stomp, stomps, ws, wss, "
                    "unix, coap or coaps",
                    (int)(i > 16 ? 16 : i), s);
    strcpy(u->scheme, si->scheme);
    strcpy(u->binding, si->binding);
    u->tls = si->tls;
    u->port = si->port;
    i++; /* ':' */

    if (strcmp(si->scheme, "unix") == 0) {
        u->host_kind = USP_MTP_HOST_NONE;
        return parse_unix(s, i, n, u, why, whylen);
    }
    if (n - i < 2 || s[i] != '/' || s[i + 1] != '/')
        return FAIL("expected \"//\" after \"%s:\" at offset %zu", si->scheme, i);
    i += 2;

    const char *hash = memchr(s + i, '#', n - i);
    if (hash)
        return FAIL("fragments (\"#...\", offset %zu) are not allowed in an MTP URL",
                    (size_t)(hash - s));

    size_t auth_end = i;
    while (auth_end < n && s[auth_end] != '/' && s[auth_end] != '?')
        auth_end++;

    const char *at = memchr(s + i, '@', auth_end - i);
    if (at) {
        size_t at_off = (size_t)(at - s);
        if (memchr(at + 1, '@', auth_end - at_off - 1))
            return FAIL("more than one '@' in the authority at offset %zu: write '@' in a user "
                        "or password as %%40",
                        i);
        const char *colon = memchr(s + i, ':', at_off - i);
        size_t ul = colon ? (size_t)(colon - (s + i)) : at_off - i;
        int rc = decode_userinfo(s + i, ul, false, u->user, "user name", i, why, whylen);
        if (rc)
            return rc;
        u->has_user = true;
        if (colon) {
            size_t po = (size_t)(colon - s) + 1;
            rc = decode_userinfo(s + po, at_off - po, true, u->password, "password", po, why,
                                 whylen);
            if (rc)
                return rc;
            u->has_password = true;
        }
        i = at_off + 1;
    }
    int rc = parse_hostport(s, i, auth_end, u, why, whylen);
    if (rc)
        return rc;

    i = auth_end;
    size_t path_end = i;
    while (path_end < n && s[path_end] != '?')
        path_end++;
    if (path_end - i > USP_MTP_PATH_MAX)
        return FAIL("the path at offset %zu is longer than %d characters", i, USP_MTP_PATH_MAX);
    rc = check_path_chars(s + i, path_end - i, false, i, why, whylen);
    if (rc)
        return rc;
    memcpy(u->path, s + i, path_end - i);
    u->path[path_end - i] = '\0';
    if (path_end < n) {
        i = path_end + 1;
        if (n - i > USP_MTP_PATH_MAX)
            return FAIL("the query at offset %zu is longer than %d characters", i,
                        USP_MTP_PATH_MAX);
        rc = check_path_chars(s + i, n - i, true, i, why, whylen);
        if (rc)
            return rc;
        memcpy(u->query, s + i, n - i);
        u->query[n - i] = '\0';
        u->has_query = true;
    }
    return 0;
}

int usp_mtp_url_parse(const char *s, struct usp_mtp_url *out, char *why, size_t whylen)
{
    struct usp_mtp_url tmp;
    struct usp_mtp_url *u = out ? out : &tmp;
    memset(u, 0, sizeof *u);
    if (why && whylen)
        why[0] = '\0';
    if (!s)
        return FAIL("no URL given");
    int rc = parse_url(s, u, why, whylen);
    if (rc)
        memset(u, 0, sizeof *u);
    return rc;
}

/* Appends to a bounded buffer, remembering overflow. */
struct sbuf {
    char *p;
    size_t n, len;
    bool over;
};

static void sb_putc(struct sbuf *b, char c)
{
    if (b->len + 1 < b->n)
        b->p[b->len] = c;
    else
        b->over = true;
    b->len++;
}

static void sb_puts(struct sbuf *b, const char *s)
{
    while (*s)
        sb_putc(b, *s++);
}

static void sb_put_userinfo(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_unreserved(c) || is_sub_delim(c)) {
            sb_putc(b, (char)c);
        } else {
            sb_putc(b, '%');
            sb_putc(b, hex[c >> 4]);
            sb_putc(b, hex[c & 15]);
        }
    }
}

int usp_mtp_url_format(const struct usp_mtp_url *u, bool with_password, char *buf, size_t n)
{
    if (!u || !buf || n == 0)
        return USP_EINVAL;
    buf[0] = '\0';
    const struct scheme_info *si = find_scheme(u->scheme);
    if (!si || strcmp(si->binding, u->binding) != 0)
        return USP_EINVAL;
    struct sbuf b = {.p = buf, .n = n};
    sb_puts(&b, u->scheme);
    sb_putc(&b, ':');
    if (strcmp(u->scheme, "unix") == 0) {
        if (u->path[0] == '/' && u->path[1] == '/')
            sb_puts(&b, "//"); /* "unix://..." is read as "unix:///..." */
        sb_puts(&b, u->path);
    } else {
        sb_puts(&b, "//");
        if (u->has_user) {
            sb_put_userinfo(&b, u->user);
            if (u->has_password) {
                sb_putc(&b, ':');
                if (with_password)
                    sb_put_userinfo(&b, u->password);
                else
                    sb_puts(&b, "***");
            }
            sb_putc(&b, '@');
        }
        if (u->host_kind == USP_MTP_HOST_IPV6) {
            sb_putc(&b, '[');
            sb_puts(&b, u->host);
            sb_putc(&b, ']');
        } else {
            sb_puts(&b, u->host);
        }
        if (u->port_given) {
            char port[8];
            snprintf(port, sizeof port, ":%u", (unsigned)u->port);
            sb_puts(&b, port);
        }
        sb_puts(&b, u->path);
        if (u->has_query) {
            sb_putc(&b, '?');
            sb_puts(&b, u->query);
        }
    }
    b.p[b.len < b.n ? b.len : b.n - 1] = '\0';
    return b.over ? USP_ERANGE : 0;
}

/* ---- MQTT 3.1.1 reply-to topic suffix [R-MQTT.24/25] ---------------------- */

#define REPLY_TO "/reply-to="

size_t mtp__mqtt311_topic_build(const char *dest, const char *reply, char *buf, size_t n)
{
    struct sbuf b = {.p = buf, .n = n};
    sb_puts(&b, dest);
    sb_puts(&b, REPLY_TO);
    for (const char *p = reply; *p; p++) {
        if (*p == '/')
            sb_puts(&b, "%2F");
        else
            sb_putc(&b, *p);
    }
    if (n)
        buf[b.len < n ? b.len : n - 1] = '\0';
    return b.len;
}

bool mtp__mqtt311_topic_split(const char *topic, size_t *dest_len, char *reply)
{
    const char *last = NULL;
    for (const char *p = strstr(topic, REPLY_TO); p; p = strstr(p + 1, REPLY_TO))
        last = p;
    reply[0] = '\0';
    *dest_len = strlen(topic);
    if (!last || !last[sizeof REPLY_TO - 1])
        return false;
    size_t o = 0;
    for (const char *p = last + sizeof REPLY_TO - 1; *p; p++) {
        if (p[0] == '%' && p[1] == '2' && (p[2] == 'F' || p[2] == 'f')) {
            reply[o++] = '/';
            p += 2;
        } else {
            reply[o++] = *p;
        }
    }
    reply[o] = '\0';
    *dest_len = (size_t)(last - topic);
    return true;
}

/* ---- Registry ------------------------------------------------------------- */

#define MAX_BINDINGS 8
static const struct usp_mtp_ops *registry[MAX_BINDINGS];

int usp_mtp_register(const struct usp_mtp_ops *ops)
{
    if (!ops || !ops->name || !ops->name[0] || !ops->conn_new || !ops->open || !ops->send ||
        !ops->close || !ops->free)
        return USP_EINVAL;
    size_t i;
    for (i = 0; i < MAX_BINDINGS && registry[i]; i++) {
        if (registry[i] == ops)
            return 0;
        if (strcmp(registry[i]->name, ops->name) == 0)
            return USP_EEXIST;
    }
    if (i == MAX_BINDINGS)
        return USP_ERANGE;
    if (ops->global_init) {
        int rc = ops->global_init();
        if (rc)
            return rc;
    }
    registry[i] = ops;
    return 0;
}

const struct usp_mtp_ops *usp_mtp_find(const char *name)
{
    for (size_t i = 0; name && i < MAX_BINDINGS && registry[i]; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

/* ---- Context: timers, connect slots ---------------------------------------- */

void mtp__timer_cancel(struct usp_mtp_ctx *ctx, struct usp_tw_entry *e)
{
    if (ctx->tw)
        usp_tw_cancel(ctx->tw, e);
}

void mtp__timer_arm(struct usp_mtp_ctx *ctx, struct usp_tw_entry *e, uint64_t delay_ms,
                    usp_tw_cb fn)
{
    if (!ctx->tw || ctx->freeing)
        return; /* being freed: nothing runs any more */
    usp_tw_cancel(ctx->tw, e);
    usp_tw_entry_init(e, fn);
    /* An entry added already due fires at the wheel's next advance, which
     * its driver schedules on the loop: never from inside this call. */
    usp_tw_add_in(ctx->tw, e, delay_ms);
}

bool mtp__connect_slot_take(struct usp_mtp_ctx *ctx, struct mtp_waiter *w, struct usp_tw_entry *e,
                            usp_tw_cb fn)
{
    mtp__connect_wait_cancel(ctx, w);
    if (ctx->max_connecting == 0 || ctx->connecting < ctx->max_connecting) {
        ctx->connecting++;
        return true;
    }
    mtp__timer_cancel(ctx, e);
    usp_tw_entry_init(e, fn);
    w->entry = e;
    w->next = NULL;
    w->pprev = ctx->waiters_tail;
    *ctx->waiters_tail = w;
    ctx->waiters_tail = &w->next;
    return false;
}

void mtp__connect_wait_cancel(struct usp_mtp_ctx *ctx, struct mtp_waiter *w)
{
    if (!w->pprev)
        return;
    if (ctx->waiters_tail == &w->next)
        ctx->waiters_tail = w->pprev;
    *w->pprev = w->next;
    if (w->next)
        w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
}

void mtp__connect_slot_give(struct usp_mtp_ctx *ctx)
{
    if (ctx->connecting)
        ctx->connecting--;
    struct mtp_waiter *w = ctx->waiters;
    if (w) {
        struct usp_tw_entry *e = w->entry;
        mtp__connect_wait_cancel(ctx, w);
        if (ctx->tw && !ctx->freeing)
            usp_tw_add_in(ctx->tw, e, 0); /* its callback was set when it queued */
    }
}

static void ctx_release_memory(struct usp_mtp_ctx *ctx)
{
    if (ctx->freeing && !ctx->own_tw_open && !ctx->reaper_open && ctx->conns == 0)
        free(ctx);
}

static void on_own_tw_closed(struct usp_tw_uv *u)
{
    struct usp_mtp_ctx *ctx =
        (struct usp_mtp_ctx *)((char *)u - offsetof(struct usp_mtp_ctx, own_tw));
    ctx->own_tw_open = false;
    ctx_release_memory(ctx);
}

static void on_reaper_closed(uv_handle_t *h)
{
    struct usp_mtp_ctx *ctx = h->data;
    ctx->reaper_open = false;
    ctx_release_memory(ctx);
}

static void on_reap(uv_idle_t *h)
{
    struct usp_mtp_ctx *ctx = h->data;
    uv_idle_stop(h);
    ctx->tw = NULL; /* freed now; its entries are forgotten */
    usp_tw_uv_close(&ctx->own_tw, on_own_tw_closed);
    uv_close((uv_handle_t *)h, on_reaper_closed);
}

void mtp__conn_hold(struct usp_mtp_ctx *ctx)
{
    ctx->conns++;
}

void mtp__conn_release(struct usp_mtp_ctx *ctx)
{
    ctx->conns--;
    ctx_release_memory(ctx);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t mtp__rand(struct usp_mtp_ctx *ctx)
{
    return splitmix64(&ctx->rng);
}

struct usp_mtp_ctx *usp_mtp_ctx_new(uv_loop_t *loop, const struct usp_mtp_ctx_opts *opts)
{
    if (!loop)
        return NULL;
    struct usp_mtp_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->loop = loop;
    ctx->waiters_tail = &ctx->waiters;
    uint64_t seed = uv_hrtime() ^ (uint64_t)(uintptr_t)ctx ^ ((uint64_t)uv_os_getpid() << 32);
    ctx->rng = splitmix64(&seed);
    if (opts) {
        ctx->max_connecting = opts->max_connecting;
        ctx->log = opts->log;
        ctx->log_user = opts->log_user;
        ctx->log_level = opts->log_level;
        ctx->tw = opts->wheel;
    }
    if (!ctx->tw) {
        if (usp_tw_uv_init(&ctx->own_tw, loop) != 0) {
            free(ctx);
            return NULL;
        }
        ctx->tw = ctx->own_tw.tw;
        ctx->owns_tw = ctx->own_tw_open = true;
        uv_idle_init(loop, &ctx->reaper);
        ctx->reaper.data = ctx;
        ctx->reaper_open = true;
    }
    return ctx;
}

void usp_mtp_ctx_free(struct usp_mtp_ctx *ctx)
{
    if (!ctx || ctx->freeing)
        return;
    ctx->freeing = true;
    mtp__tls_cache_free(ctx);
    if (ctx->owns_tw)
        uv_idle_start(&ctx->reaper, on_reap);
    ctx_release_memory(ctx);
}

const struct usp_mtp_stats *usp_mtp_ctx_stats(const struct usp_mtp_ctx *ctx)
{
    return &ctx->stats;
}

uint32_t mtp__retry_delay_ms(struct usp_mtp_ctx *ctx, uint32_t m, uint32_t k, uint32_t max_s,
                             uint32_t n)
{
    if (n < 1)
        n = 1;
    if (n > 10)
        n = 10;
    double f = k / 1000.0, lo = m;
    for (uint32_t i = 1; i < n; i++)
        lo *= f;
    double hi = lo * f;
    double r = (double)(mtp__rand(ctx) >> 11) / (double)(1ull << 53); /* [0, 1) */
    double s = lo + (hi - lo) * r;
    if (s > max_s)
        s = max_s;
    double ms = s * 1000.0;
    return ms >= 4294967295.0 ? UINT32_MAX : (uint32_t)ms;
}

void mtp__log(struct usp_mtp_ctx *ctx, enum usp_mtp_log_level level, const char *eid,
              const char *fmt, ...)
{
    if (!ctx->log || level > ctx->log_level)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, eid, msg);
}

void mtp__emit_state(struct usp_mtp_conn *c, enum usp_mtp_state state, enum usp_mtp_reason reason,
                     int code, uint32_t attempt, uint32_t retry_ms, const char *detail)
{
    c->state = state;
    if (!c->cb || !c->cb->state)
        return;
    struct usp_mtp_event ev = {
        .state = state,
        .reason = reason,
        .code = code,
        .detail = detail ? detail : "",
        .attempt = attempt,
        .retry_ms = retry_ms,
    };
    c->cb->state(c, &ev, c->user);
}

/* ---- Configuration and connections ---------------------------------------- */

void usp_mtp_config_init(struct usp_mtp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->keepalive_s = 60;
    cfg->max_record = USP_MTP_MAX_RECORD_DEFAULT;
    cfg->retry_time_s = 5;
    cfg->retry_multiplier = 2000;
    cfg->retry_max_s = 30720;
    cfg->connect_timeout_ms = 30000;
    cfg->close_timeout_ms = 5000;
    cfg->mqtt.version = USP_MQTT_V5;
    cfg->mqtt.qos = 1;
}

static int check_text(const char *s, const char *what, size_t max, bool empty_ok, char *why,
                      size_t whylen)
{
    if (!s || (!s[0] && !empty_ok))
        return FAIL("the %s is missing", what);
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return FAIL("the %s is longer than %zu characters", what, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return FAIL("the %s contains a control character at offset %zu", what, i);
    return 0;
}

int mtp__config_check(const struct usp_mtp_config *cfg, char *why, size_t whylen)
{
    int rc;
    if (cfg->role != USP_MTP_AGENT && cfg->role != USP_MTP_CONTROLLER)
        return FAIL("role %d is neither agent nor controller", (int)cfg->role);
    if ((rc = check_text(cfg->eid, "Endpoint ID", 255, false, why, whylen)))
        return rc;
    if (cfg->usp_version &&
        (rc = check_text(cfg->usp_version, "USP version", 15, false, why, whylen)))
        return rc;
    if (!cfg->peer_eid != !cfg->peer_dest)
        return FAIL("peer_eid and peer_dest go together: set both or neither");
    if (cfg->peer_eid &&
        ((rc = check_text(cfg->peer_eid, "peer Endpoint ID", 255, false, why, whylen)) ||
         (rc = check_text(cfg->peer_dest, "peer destination", 65535, false, why, whylen))))
        return rc;
    if (cfg->keepalive_s != 0 && (cfg->keepalive_s < 5 || cfg->keepalive_s > 65535))
        return FAIL("keepalive %u s is out of range: 0 (off) or 5-65535", cfg->keepalive_s);
    if (cfg->retry_time_s < 1)
        return FAIL("ConnectRetryTime must be at least 1 s");
    if (cfg->retry_multiplier < 1000 || cfg->retry_multiplier > 65535)
        return FAIL("ConnectRetryIntervalMultiplier %u is out of range 1000-65535",
                    cfg->retry_multiplier);
    if (cfg->retry_max_s < 1)
        return FAIL("ConnectRetryMaxInterval must be at least 1 s");
    if (cfg->max_record < 1 || cfg->max_record > 256u * 1024 * 1024)
        return FAIL("max_record %u is out of range 1-268435456 bytes", cfg->max_record);
    if (cfg->connect_timeout_ms < 1 || cfg->close_timeout_ms < 1)
        return FAIL("connect and close timeouts must be at least 1 ms");
    if (cfg->bind_address) {
        unsigned char a[16];
        if (inet_pton(AF_INET, cfg->bind_address, a) != 1 &&
            inet_pton(AF_INET6, cfg->bind_address, a) != 1)
            return FAIL("bind address \"%.64s\" is not a numeric IPv4 or IPv6 address",
                        cfg->bind_address);
    }
    return 0;
}

int usp_mtp_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                     const struct usp_mtp_callbacks *cb, void *user, struct usp_mtp_conn **out,
                     char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (out)
        *out = NULL;
    if (!ctx || !cfg || !out)
        return FAIL("no context, configuration or result pointer");
    if (ctx->freeing)
        return FAIL("the context is being freed");
    struct usp_mtp_url u;
    char uwhy[160];
    if (usp_mtp_url_parse(cfg->url, &u, uwhy, sizeof uwhy))
        return FAIL("bad URL: %s", uwhy);
    const struct usp_mtp_ops *ops = usp_mtp_find(u.binding);
    if (!ops)
        return mtp__fail(why, whylen, USP_ENOENT,
                         "no MTP binding is registered for \"%s\" URLs (usp_mtp_register)",
                         u.scheme);
    int rc = mtp__config_check(cfg, why, whylen);
    if (!rc)
        rc = mtp__tls_config_check(cfg, &u, why, whylen);
    if (rc)
        return rc;
    struct usp_mtp_conn *c = NULL;
    rc = ops->conn_new(ctx, cfg, &u, &c, why, whylen);
    if (rc)
        return rc;
    c->ops = ops;
    c->ctx = ctx;
    c->cb = cb;
    c->user = user;
    c->state = USP_MTP_IDLE;
    *out = c;
    return 0;
}

const char *usp_mtp_state_name(enum usp_mtp_state s)
{
    static const char *const names[] = {"IDLE", "CONNECTING", "UP", "DOWN", "CLOSED"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *usp_mtp_reason_name(enum usp_mtp_reason r)
{
    static const char *const names[] = {
        "none",      "closed",   "resolve", "connect",   "timeout",     "refused",
        "subscribe", "no-topic", "lost",    "keepalive", "peer-closed", "internal",
    };
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

/* ---- Extensions and listeners ---------------------------------------------- */

static const struct usp_mtp_ext_ops *ext_registry[MAX_BINDINGS];

int usp_mtp_register_ext(const struct usp_mtp_ext_ops *ext)
{
    if (!ext || !ext->base || (ext->listen && !ext->listener_close))
        return USP_EINVAL;
    int rc = usp_mtp_register(ext->base);
    if (rc)
        return rc;
    size_t i;
    for (i = 0; i < MAX_BINDINGS && ext_registry[i]; i++) {
        if (ext_registry[i] == ext)
            return 0;
        if (ext_registry[i]->base == ext->base)
            return USP_EEXIST;
    }
    if (i == MAX_BINDINGS)
        return USP_ERANGE;
    ext_registry[i] = ext;
    return 0;
}

static const struct usp_mtp_ext_ops *find_ext(const struct usp_mtp_ops *base)
{
    for (size_t i = 0; base && i < MAX_BINDINGS && ext_registry[i]; i++)
        if (ext_registry[i]->base == base)
            return ext_registry[i];
    return NULL;
}

int usp_mtp_listen(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                   const struct usp_mtp_listener_callbacks *cb, void *user,
                   struct usp_mtp_listener **out, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (out)
        *out = NULL;
    if (!ctx || !cfg || !out)
        return FAIL("no context, configuration or result pointer");
    if (!cb || !cb->accept)
        return FAIL("a listener needs an accept callback");
    if (ctx->freeing)
        return FAIL("the context is being freed");
    struct usp_mtp_url u;
    char uwhy[160];
    if (usp_mtp_url_parse(cfg->url, &u, uwhy, sizeof uwhy))
        return FAIL("bad URL: %s", uwhy);
    const struct usp_mtp_ops *ops = usp_mtp_find(u.binding);
    const struct usp_mtp_ext_ops *ext = find_ext(ops);
    if (!ext || !ext->listen)
        return mtp__fail(why, whylen, USP_ENOENT,
                         "no registered MTP binding listens on \"%s\" URLs (usp_mtp_register_ext)",
                         u.scheme);
    int rc = mtp__config_check(cfg, why, whylen);
    if (!rc)
        rc = mtp__tls_config_check(cfg, &u, why, whylen);
    if (rc)
        return rc;
    struct usp_mtp_listener *l = NULL;
    rc = ext->listen(ctx, cfg, &u, &l, why, whylen);
    if (rc)
        return rc;
    l->ops = ext;
    l->ctx = ctx;
    l->cb = cb;
    l->user = user;
    *out = l;
    return 0;
}

void usp_mtp_listener_close(struct usp_mtp_listener *l)
{
    if (l)
        l->ops->listener_close(l);
}

void usp_mtp_conn_set_callbacks(struct usp_mtp_conn *c, const struct usp_mtp_callbacks *cb,
                                void *user)
{
    c->cb = cb;
    c->user = user;
}

const char *usp_mtp_peer_eid(const struct usp_mtp_conn *c)
{
    const struct usp_mtp_ext_ops *ext = find_ext(c->ops);
    return ext && ext->peer_eid ? ext->peer_eid(c) : NULL;
}

const struct usp_tls_ids *usp_mtp_peer_ids(const struct usp_mtp_conn *c)
{
    const struct usp_mtp_ext_ops *ext = find_ext(c->ops);
    return ext && ext->peer_ids ? ext->peer_ids(c) : NULL;
}

int usp_mtp_reject(struct usp_mtp_conn *c, const char *reason)
{
    const struct usp_mtp_ext_ops *ext = find_ext(c->ops);
    if (ext && ext->reject)
        return ext->reject(c, reason);
    return c->state == USP_MTP_UP ? 0 : USP_EPERM;
}

bool mtp__pick_addr(const struct addrinfo *res, uint32_t attempt, char *buf, size_t len)
{
    unsigned count = 0;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        count += a->ai_family == AF_INET || a->ai_family == AF_INET6;
    if (!count || !len)
        return false;
    unsigned pick = attempt % count;
    buf[0] = '\0';
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
            continue;
        if (pick-- > 0)
            continue;
        if (a->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)a->ai_addr, buf, len);
        else
            uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, buf, len);
        break;
    }
    return buf[0] != '\0';
}
