/* libFuzzer target for the CoAP binding's own parsing (lib/mtp_coap_util.c):
 * any bytes as a received Uri-Query option value (the reply-to), as a URL
 * whose "/e/<eid>" path names an Endpoint ID, and as an Endpoint ID or URI
 * to encode. Besides crashes it checks that results are terminated and
 * empty on failure, and that encoding then parsing gives the input back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/mtp.h"
#include "usp/mtp_coap.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static bool plain_text(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char uri[USP_MTP_URL_MAX + 1];
    static char text[USP_MTP_URL_MAX + 1];
    static char enc[3 * USP_MTP_URL_MAX + 32];

    /* the bytes as one Uri-Query option value (not terminated) */
    memset(uri, 'x', sizeof uri);
    int rc = usp_mtp_coap_reply_to_parse(data, size, uri, sizeof uri);
    CHECK(rc == 0 || rc == USP_ENOENT || rc == USP_EINVAL || rc == USP_ERANGE);
    CHECK(memchr(uri, '\0', sizeof uri) != NULL);
    if (rc)
        CHECK(uri[0] == '\0');
    else
        CHECK(uri[0] != '\0' && plain_text(uri));

    if (size > USP_MTP_URL_MAX)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    /* the bytes as a URL with an Endpoint ID in its path */
    struct usp_mtp_url u;
    if (usp_mtp_url_parse(text, &u, NULL, 0) == 0) {
        char eid[256];
        memset(eid, 'x', sizeof eid);
        rc = usp_mtp_coap_url_eid(&u, eid, sizeof eid);
        CHECK(rc == 0 || rc == USP_EINVAL || rc == USP_ERANGE);
        CHECK(memchr(eid, '\0', sizeof eid) != NULL);
        CHECK(rc ? eid[0] == '\0' : eid[0] != '\0' && plain_text(eid));
    }

    /* the bytes as an Endpoint ID and as a URI to encode: they come back */
    if (strlen(text) != size || !plain_text(text) || size == 0)
        return 0;
    size_t n = usp_mtp_coap_reply_to_build(text, enc, sizeof enc);
    CHECK(n < sizeof enc && strlen(enc) == n);
    CHECK(usp_mtp_coap_reply_to_parse((const uint8_t *)enc, n, uri, sizeof uri) == 0);
    CHECK(strcmp(uri, text) == 0);
    if (size <= 255) {
        char path[3 * 255 + 8], url[3 * 255 + 64], eid[256];
        n = usp_mtp_coap_resource_path(text, path, sizeof path);
        CHECK(n < sizeof path && strlen(path) == n && strncmp(path, "/e/", 3) == 0);
        snprintf(url, sizeof url, "coap://127.0.0.1:5683%s", path);
        /* at most 3 * 255 + 3 bytes: always a valid path, one segment */
        CHECK(usp_mtp_url_parse(url, &u, NULL, 0) == 0);
        CHECK(usp_mtp_coap_url_eid(&u, eid, sizeof eid) == 0 && strcmp(eid, text) == 0);
    }
    return 0;
}
