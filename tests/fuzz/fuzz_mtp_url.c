/* libFuzzer target for the MTP URL parser and the MQTT 3.1.1 reply-to topic
 * helpers: any bytes as a URL and as a received Topic Name. Besides crashes
 * it checks that what is accepted is self-consistent (scheme and binding,
 * host kind, limits), that formatting and parsing again give the same
 * struct, that a rejection always comes with a terminated sentence and a
 * cleared struct, and that the reply-to suffix round-trips. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mtp_int.h"
#include "usp/errors.h"
#include "usp/mtp.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void check_url(const char *s, size_t n)
{
    static struct usp_mtp_url u, v;
    char why[160];
    memset(why, 'x', sizeof why);
    int rc = usp_mtp_url_parse(s, &u, why, sizeof why);
    CHECK(rc == 0 || rc == USP_EINVAL);
    CHECK(memchr(why, '\0', sizeof why) != NULL);
    CHECK(rc == 0 ? why[0] == '\0' : why[0] != '\0');
    CHECK(usp_mtp_url_parse(s, NULL, NULL, 0) == rc);
    if (rc) {
        CHECK(all_zero(&u, sizeof u));
        return;
    }
    CHECK(n <= USP_MTP_URL_MAX);
    bool is_unix = strcmp(u.scheme, "unix") == 0;
    CHECK(is_unix == (u.host_kind == USP_MTP_HOST_NONE));
    CHECK(is_unix == (strcmp(u.binding, "uds") == 0));
    CHECK(is_unix ? u.port == 0 && !u.port_given && !u.host[0] && u.path[0]
                  : u.port != 0 && u.host[0]);
    CHECK(strlen(u.host) <= USP_MTP_HOST_MAX);
    CHECK(strlen(u.path) <= (is_unix ? USP_MTP_UNIX_MAX : USP_MTP_PATH_MAX));
    CHECK(u.has_password ? u.has_user : true);
    CHECK(u.tls == (u.scheme[strlen(u.scheme) - 1] == 's' && !is_unix && strcmp(u.scheme, "ws")));
    if (u.host_kind == USP_MTP_HOST_IPV6) {
        unsigned char a[16];
        CHECK(inet_pton(AF_INET6, u.host, a) == 1);
    }
    if (u.host_kind == USP_MTP_HOST_IPV4) {
        unsigned char a[4];
        CHECK(inet_pton(AF_INET, u.host, a) == 1);
    }

    /* format, parse again: the same struct */
    static char buf[3 * USP_MTP_URL_MAX + 64];
    CHECK(usp_mtp_url_format(&u, true, buf, sizeof buf) == 0);
    CHECK(usp_mtp_url_parse(buf, &v, NULL, 0) == 0);
    CHECK(memcmp(&u, &v, sizeof u) == 0);
    /* short buffers: USP_ERANGE or 0, always terminated, a prefix */
    size_t full = strlen(buf);
    char small[64];
    size_t cut = n % sizeof small + 1;
    memset(small, 'x', sizeof small);
    rc = usp_mtp_url_format(&u, true, small, cut);
    CHECK(rc == (full < cut ? 0 : USP_ERANGE));
    CHECK(strlen(small) == (full < cut ? full : cut - 1));
    CHECK(strncmp(small, buf, strlen(small)) == 0);
    /* the masked form never shows the password */
    CHECK(usp_mtp_url_format(&u, false, buf, sizeof buf) == 0);
    if (u.has_password)
        CHECK(strstr(buf, ":***@") != NULL);
}

static void check_reply_to(const char *s, size_t n)
{
    char *reply = malloc(n + 1);
    CHECK(reply != NULL);
    size_t dl;
    bool found = mtp__mqtt311_topic_split(s, &dl, reply);
    CHECK(strlen(reply) <= n);
    if (!found) {
        CHECK(dl == n && reply[0] == '\0');
    } else {
        CHECK(dl < n && reply[0] != '\0');
        CHECK(strncmp(s + dl, "/reply-to=", 10) == 0);
        CHECK(strstr(s + dl + 1, "/reply-to=") == NULL); /* the last one */
    }
    /* build then split: the same parts back, unless the reply-to itself
     * holds a literal "%2F" (which the convention cannot carry) */
    const char *r = found ? reply : s;
    if (r[0] && !strstr(r, "%2F") && !strstr(r, "%2f")) {
        char *dest = strndup(s, dl);
        CHECK(dest != NULL);
        size_t need = mtp__mqtt311_topic_build(dest, r, NULL, 0);
        char *t = malloc(need + 1), *back = malloc(need + 1);
        CHECK(t && back);
        CHECK(mtp__mqtt311_topic_build(dest, r, t, need + 1) == need);
        CHECK(strlen(t) == need);
        size_t dl2;
        CHECK(mtp__mqtt311_topic_split(t, &dl2, back));
        CHECK(dl2 == strlen(dest) && strcmp(back, r) == 0);
        free(dest);
        free(t);
        free(back);
    }
    free(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4 * USP_MTP_URL_MAX)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    size_t n = strlen(s); /* up to the first NUL, as a C string would be */
    check_url(s, n);
    check_reply_to(s, n);
    free(s);
    return 0;
}
