/* libFuzzer target for the WebSocket handshake text the binding reads or
 * writes itself (lib/mtp_ws_util.c): any bytes as a Sec-WebSocket-Extensions
 * value, a Sec-WebSocket-Protocol list, a %-escaped path, a query and an
 * Endpoint ID. Besides crashes it checks the results: return codes from the
 * documented set, outputs always terminated and within bounds, the
 * extension value written by the server read back unchanged, and any
 * Endpoint ID read back unchanged from the request-target a client builds
 * [R-WS.10b/c]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mtp_int.h"
#include "usp/errors.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_ext(const char *s, size_t cap)
{
    char out[300];
    memset(out, 'x', sizeof out);
    int rc = mtp__ws_ext_eid(s, out, cap);
    CHECK(rc == 0 || rc == USP_ENOENT || rc == USP_EINVAL || rc == USP_ERANGE);
    CHECK(memchr(out, '\0', cap) != NULL);
    if (rc == USP_ENOENT)
        CHECK(out[0] == '\0');
    if (rc != 0)
        return;
    CHECK(strlen(out) < cap);
    /* What a server writes back reads back unchanged. */
    size_t need = mtp__ws_ext_value(out, NULL, 0);
    char *v = malloc(need + 1);
    CHECK(v != NULL);
    CHECK(mtp__ws_ext_value(out, v, need + 1) == need && strlen(v) == need);
    char again[300];
    CHECK(mtp__ws_ext_eid(v, again, sizeof again) == 0);
    CHECK(strcmp(again, out) == 0);
    free(v);
}

/* As a server: the "eid" parameter of the query, %-decoded. */
static int server_eid(const char *target, char *out, size_t n)
{
    const char *q = strchr(target, '?');
    CHECK(q != NULL);
    for (const char *p = q + 1; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= 4 && strncmp(p, "eid=", 4) == 0) {
            char *v = strndup(p + 4, len - 4);
            CHECK(v != NULL);
            int rc = mtp__ws_pct_decode(v, out, n);
            free(v);
            return rc;
        }
        p = end ? end + 1 : NULL;
    }
    return USP_ENOENT;
}

static void check_target(const char *eid, size_t n)
{
    if (n == 0)
        return;
    size_t need = mtp__ws_target("/usp", "a=1", eid, NULL, 0);
    CHECK(need >= n + strlen("/usp?a=1&eid="));
    char *t = malloc(need + 1), *back = malloc(n + 1);
    CHECK(t && back);
    CHECK(mtp__ws_target("/usp", "a=1", eid, t, need + 1) == need && strlen(t) == need);
    /* Only query characters, no separators from the Endpoint ID. */
    for (const char *p = strstr(t, "eid=") + 4; *p; p++)
        CHECK(*p != '&' && *p != '+' && *p != '#' && *p != '=' && (unsigned char)*p > 0x20 &&
              (unsigned char)*p < 0x7f);
    CHECK(server_eid(t, back, n + 1) == 0);
    CHECK(strcmp(back, eid) == 0);
    /* A short buffer: terminated prefix. */
    char small[16];
    size_t cut = n % sizeof small + 1;
    CHECK(mtp__ws_target("/usp", "a=1", eid, small, cut) == need);
    CHECK(strlen(small) == cut - 1 && strncmp(small, t, cut - 1) == 0);
    free(t);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    size_t n = strlen(s);

    check_ext(s, 300);
    check_ext(s, size % 40 + 1);

    if (mtp__ws_protocol_listed(s, MTP_WS_PROTOCOL))
        CHECK(strstr(s, MTP_WS_PROTOCOL) != NULL);
    if (mtp__ws_query_has_eid(s))
        CHECK(strstr(s, "eid") != NULL);

    char out[64];
    int rc = mtp__ws_pct_decode(s, out, sizeof out);
    CHECK(rc == 0 || rc == USP_EINVAL || rc == USP_ERANGE);
    if (rc == 0)
        CHECK(strlen(out) <= n);
    (void)mtp__ws_peer_eid_ok(s);

    check_target(s, n);
    free(s);
    return 0;
}
