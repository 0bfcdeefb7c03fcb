/* libFuzzer target for the Endpoint ID parser: any bytes, as an Endpoint ID
 * and as a certificate URN. Besides crashes it checks that what is accepted
 * is self-consistent (parts inside the input, limits kept, URN round trip)
 * and that the reason for a rejection is always a terminated sentence. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usp/eid.h"
#include "usp/errors.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_parsed(const char *s, size_t n, const struct usp_eid *e)
{
    CHECK(n <= USP_EID_MAX_LEN);
    CHECK(usp_eid_scheme_name(e->scheme) != NULL);
    size_t sn = strlen(usp_eid_scheme_name(e->scheme));
    CHECK(memcmp(s, usp_eid_scheme_name(e->scheme), sn) == 0);
    CHECK(e->authority == s + sn + 1);
    CHECK(e->instance == e->authority + e->authority_len + 1);
    CHECK(e->instance + e->instance_len == s + n);
    CHECK(e->instance_len >= 1 && e->instance_len <= USP_EID_INSTANCE_MAX);
    for (unsigned f = e->warn; f; f &= f - 1)
        CHECK(usp_eid_warn_text(f & -f) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char why[96];
    struct usp_eid e;

    memset(why, 'x', sizeof why);
    int rc = usp_eid_parse_n(s, size, &e, why, sizeof why);
    CHECK(rc == 0 || rc == USP_EINVAL);
    CHECK(memchr(why, '\0', sizeof why) != NULL);
    if (rc == 0) {
        CHECK(why[0] == '\0');
        check_parsed(s, size, &e);
    } else {
        CHECK(why[0] != '\0');
    }

    /* The NUL-terminated entry points agree with the length-bounded one. */
    char *z = malloc(size + 1);
    if (!z)
        return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    if (!memchr(data, '\0', size)) {
        CHECK(usp_eid_valid(z) == (rc == 0));
        char urn[USP_EID_URN_MAX_LEN + 1];
        int urc = usp_eid_to_urn(z, urn, sizeof urn);
        CHECK(urc == (rc == 0 ? 0 : USP_EINVAL));
        if (urc == 0) {
            char back[USP_EID_MAX_LEN + 1];
            CHECK(usp_eid_from_urn(urn, strlen(urn), back, sizeof back, why, sizeof why) == 0);
            CHECK(strcmp(back, z) == 0);
        }
    }
    free(z);

    /* The same bytes as a URN. */
    char eid[USP_EID_MAX_LEN + 1];
    rc = usp_eid_from_urn(s, size, eid, sizeof eid, why, sizeof why);
    CHECK(rc == 0 || rc == USP_EINVAL);
    if (rc == 0)
        CHECK(usp_eid_valid(eid));
    return 0;
}
