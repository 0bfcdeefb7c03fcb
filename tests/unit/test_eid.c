/* Endpoint ID parsing: valid and invalid examples for every scheme, the
 * reason given for each rejection, warnings, and the URN form. */
#include <CUnit/CUnit.h>
#include <string.h>

#include "testutil.h"
#include "usp/eid.h"
#include "usp/errors.h"

struct good {
    const char *eid;
    enum usp_eid_scheme scheme;
    const char *authority;
    const char *instance;
    unsigned warn;
};

static const struct good goods[] = {
    /* oui: 6, 7 or 9 hex digits */
    {"oui:00256D:my-unique-bbf-id-42", USP_EID_OUI, "00256D", "my-unique-bbf-id-42",
     USP_EID_WARN_RESERVED},
    {"oui:00256d:x", USP_EID_OUI, "00256d", "x", USP_EID_WARN_RESERVED},
    {"oui:A4B1C2:cpe_1.2", USP_EID_OUI, "A4B1C2", "cpe_1.2", 0},
    {"oui:70B3D51:dev", USP_EID_OUI, "70B3D51", "dev", 0},
    {"oui:70B3D5123:dev", USP_EID_OUI, "70B3D5123", "dev", 0},
    /* cid */
    {"cid:3AA3F8:my-unique-usp-id-42", USP_EID_CID, "3AA3F8", "my-unique-usp-id-42", 0},
    {"cid:3aa3f8:a%20b", USP_EID_CID, "3aa3f8", "a%20b", 0},
    /* pen */
    {"pen:3561:my-unique-bbf-id-42", USP_EID_PEN, "3561", "my-unique-bbf-id-42",
     USP_EID_WARN_RESERVED},
    {"pen:1:a", USP_EID_PEN, "1", "a", 0},
    {"pen:4294967295:a", USP_EID_PEN, "4294967295", "a", 0},
    {"pen:35610:a", USP_EID_PEN, "35610", "a", 0},
    /* self and user: authority-id 0-6 characters */
    {"self::my-Agent", USP_EID_SELF, "", "my-Agent", 0},
    {"self:ab.c_1:my-Agent", USP_EID_SELF, "ab.c_1", "my-Agent", 0},
    {"user::x", USP_EID_USER, "", "x", 0},
    {"user:admin:ctrl-7", USP_EID_USER, "admin", "ctrl-7", 0},
    /* os and ops */
    {"os::00256D-0123456789", USP_EID_OS, "", "00256D-0123456789", USP_EID_WARN_RESERVED},
    {"os::A4B1C2-SN%2F1", USP_EID_OS, "", "A4B1C2-SN%2F1", 0},
    {"ops::00256D-STB-0123456789", USP_EID_OPS, "", "00256D-STB-0123456789", USP_EID_WARN_RESERVED},
    {"ops::A4B1C2-Set-Top-Box-42", USP_EID_OPS, "", "A4B1C2-Set-Top-Box-42", 0},
    /* uuid */
    {"uuid::f81d4fae-7dec-11d0-a765-00a0c91e6bf6", USP_EID_UUID, "",
     "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 0},
    {"uuid::F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6", USP_EID_UUID, "",
     "F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6", 0},
    /* imei: the specification's example has a wrong Luhn digit */
    {"imei::990000862471853", USP_EID_IMEI, "", "990000862471853", 0},
    {"imei::990000862471854", USP_EID_IMEI, "", "990000862471854", USP_EID_WARN_CHECK_DIGIT},
    /* proto and doc work but warn */
    {"proto::my-Agent", USP_EID_PROTO, "", "my-Agent", USP_EID_WARN_NOT_PRODUCTION},
    {"proto:lab_1:a.b", USP_EID_PROTO, "lab_1", "a.b", USP_EID_WARN_NOT_PRODUCTION},
    {"doc::agent", USP_EID_DOC, "", "agent", USP_EID_WARN_NOT_PRODUCTION},
    {"doc:v1.2:agent", USP_EID_DOC, "v1.2", "agent", USP_EID_WARN_NOT_PRODUCTION},
    /* fqdn */
    {"fqdn::www.example.org", USP_EID_FQDN, "", "www.example.org", 0},
    {"fqdn::a-1.b2.example", USP_EID_FQDN, "", "a-1.b2.example", 0},
    {"fqdn::1.2.3.example", USP_EID_FQDN, "", "1.2.3.example", 0},
    /* instance-id of exactly 50 characters, counting a %HH as 3 */
    {"self::abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX", USP_EID_SELF, "",
     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX", 0},
    {"self::abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU%41", USP_EID_SELF, "",
     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU%41", 0},
    /* the longest possible Endpoint ID */
    {"pen:4294967295:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX", USP_EID_PEN, "4294967295",
     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX", 0},
};

struct bad {
    const char *eid;
    const char *why; /* a part of the reason that must be there */
};

static const struct bad bads[] = {
    /* shape */
    {"", "Endpoint ID is empty"},
    {"oui", "no ':' after the authority-scheme"},
    {"self:abc", "no ':' between the authority-id and the instance-id"},
    {":a:b", "empty authority-scheme"},
    {"foo::bar", "unknown authority-scheme 'foo'"},
    {"OUI:00256D:x", "authority-scheme 'OUI' must be written in lower case ('oui')"},
    {"Self::x", "must be written in lower case ('self')"},
    {"x\x01y::z", "unknown authority-scheme 'x\\x01y'"},
    /* instance-id, common to every scheme */
    {"self::", "instance-id is empty"},
    {"self::abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY",
     "instance-id is 51 characters, more than 50"},
    {"self::abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV%41",
     "instance-id is 51 characters, more than 50"},
    {"self::my agent", "instance-id character 3 (' ') is not allowed"},
    {"self::a:b", "instance-id character 2 (':') is not allowed"},
    {"self::a~b", "instance-id character 2 ('~') is not allowed"},
    {"self::caf\xc3\xa9", "instance-id character 4 ('\\xc3') is not allowed"},
    {"self::ab%4", "instance-id character 3 starts a bad percent-escape '%4'"},
    {"self::ab%zz", "instance-id character 3 starts a bad percent-escape '%zz'"},
    {"self::%", "instance-id character 1 starts a bad percent-escape '%'"},
    /* oui */
    {"oui::x", "oui authority-id must be 6, 7 or 9 hex digits"},
    {"oui:00256:x", "oui authority-id must be 6, 7 or 9 hex digits"},
    {"oui:00256D12:x", "got '00256D12'"},
    {"oui:00256G:x", "oui authority-id must be 6, 7 or 9 hex digits"},
    {"oui:A4B1C2:", "instance-id is empty"},
    /* cid */
    {"cid:3AA3F:x", "cid authority-id must be 6 hex digits (an IEEE CID), got '3AA3F'"},
    {"cid:3AA3F81:x", "cid authority-id must be 6 hex digits"},
    {"cid:3AA3FX:x", "cid authority-id must be 6 hex digits"},
    /* pen */
    {"pen::x", "pen authority-id must be a decimal Private Enterprise Number"},
    {"pen:0:x", "without leading zeros, got '0'"},
    {"pen:03561:x", "without leading zeros, got '03561'"},
    {"pen:35a1:x", "pen authority-id must be a decimal"},
    {"pen:-3561:x", "pen authority-id must be a decimal"},
    {"pen:4294967296:x", "pen authority-id '4294967296' is larger than 4294967295"},
    {"pen:123456789012345678901234:x", "is larger than 4294967295"},
    /* self, user, doc */
    {"self:abcdefg:x", "self authority-id must be at most 6 characters, got 7"},
    {"self:a b:x", "self authority-id character 2 (' ') is not allowed"},
    {"user:toolong:x", "user authority-id must be at most 6 characters, got 7"},
    {"user:a%20:x", "user authority-id character 2 ('%') is not allowed"},
    {"user::", "instance-id is empty"},
    {"doc:1234567:x", "doc authority-id must be at most 6 characters"},
    {"doc:a/b:x", "doc authority-id character 2 ('/') is not allowed"},
    /* proto: no "." in the authority-id */
    {"proto:a.b:x", "proto authority-id character 2 ('.') is not allowed"},
    {"proto:abcdefg:x", "proto authority-id must be at most 6 characters"},
    {"proto::a b", "instance-id character 2 (' ') is not allowed"},
    /* os */
    {"os:x:00256D-0123456789", "os authority-id must be empty, got 'x'"},
    {"os::0123456789", "os instance-id must be <OUI>-<SerialNumber> with a 6-hex-digit OUI"},
    {"os::00256D-", "os instance-id must be <OUI>-<SerialNumber>"},
    {"os::00256D", "os instance-id must be <OUI>-<SerialNumber>"},
    {"os::0025GD-123", "os instance-id must be <OUI>-<SerialNumber>"},
    /* ops */
    {"ops:a:00256D-STB-1", "ops authority-id must be empty, got 'a'"},
    {"ops::00256D-STB", "ops instance-id has no '-' before the SerialNumber"},
    {"ops::00256D--0123", "ops instance-id has an empty ProductClass"},
    {"ops::00256D-STB-", "ops instance-id has an empty SerialNumber"},
    {"ops::STB-0123", "ops instance-id must be <OUI>-<ProductClass>-<SerialNumber>"},
    /* uuid */
    {"uuid:x:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "uuid authority-id must be empty"},
    {"uuid::f81d4fae7dec11d0a76500a0c91e6bf6", "uuid instance-id must be an RFC 4122 UUID"},
    {"uuid::f81d4fae-7dec-11d0-a765-00a0c91e6bf", "uuid instance-id must be an RFC 4122 UUID"},
    {"uuid::g81d4fae-7dec-11d0-a765-00a0c91e6bf6", "uuid instance-id must be an RFC 4122 UUID"},
    {"uuid::f81d4fae-7dec-11d0-a765_00a0c91e6bf6", "uuid instance-id must be an RFC 4122 UUID"},
    {"uuid::{f81d4fae-7dec-11d0-a765-00a0c91e6bf6}", "instance-id character 1 ('{')"},
    /* imei */
    {"imei:1:990000862471853", "imei authority-id must be empty, got '1'"},
    {"imei::99000086247185", "imei instance-id must be 15 decimal digits, got 14"},
    {"imei::9900008624718530", "16 is an IMEISV, which is not an IMEI"},
    {"imei::99000086247185x", "imei instance-id must be 15 decimal digits, got '99000086247185x'"},
    /* fqdn */
    {"fqdn:a:www.example.org", "fqdn authority-id must be empty, got 'a'"},
    {"fqdn::*.example.org", "fqdn instance-id must not contain a wildcard '*'"},
    {"fqdn::localhost", "fqdn instance-id 'localhost' is not fully qualified"},
    {"fqdn::www..example.org", "fqdn instance-id label 2 is empty"},
    {"fqdn::www.example.org.", "fqdn instance-id label 4 is empty"},
    {"fqdn::.example.org", "fqdn instance-id label 1 is empty"},
    {"fqdn::-www.example.org", "label 1 ('-www') must not start or end with '-'"},
    {"fqdn::www.example-.org", "label 2 ('example-') must not start or end with '-'"},
    {"fqdn::my_host.example.org", "fqdn instance-id character 3 ('_') is not allowed in a host"},
    {"fqdn::a%41.example.org", "fqdn instance-id character 2 ('%') is not allowed in a host"},
    {"fqdn::192.168.1.1", "top-level label '1' must not be all digits"},
};

static void test_valid_every_scheme(void)
{
    bool seen[USP_EID_SCHEME_COUNT] = {false};
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        const struct good *g = &goods[i];
        struct usp_eid e;
        char why[200] = "untouched";
        int rc = usp_eid_parse(g->eid, &e, why, sizeof why);
        if (rc != 0)
            fprintf(stderr, "\n  %s: unexpected error: %s\n", g->eid, why);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_STRING_EQUAL(why, "");
        CU_ASSERT_EQUAL(e.scheme, g->scheme);
        CU_ASSERT_EQUAL(e.authority_len, strlen(g->authority));
        CU_ASSERT_NSTRING_EQUAL(e.authority, g->authority, strlen(g->authority));
        CU_ASSERT_EQUAL(e.instance_len, strlen(g->instance));
        CU_ASSERT_NSTRING_EQUAL(e.instance, g->instance, strlen(g->instance));
        /* The parts point into the input. */
        CU_ASSERT_PTR_EQUAL(e.instance + e.instance_len, g->eid + strlen(g->eid));
        CU_ASSERT_EQUAL(e.warn, g->warn);
        CU_ASSERT_TRUE(usp_eid_valid(g->eid));
        CU_ASSERT_TRUE(strlen(g->eid) <= USP_EID_MAX_LEN);
        seen[g->scheme] = true;
    }
    for (int s = 0; s < USP_EID_SCHEME_COUNT; s++)
        CU_ASSERT_TRUE(seen[s]);
}

static void test_invalid_every_scheme(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const struct bad *b = &bads[i];
        struct usp_eid e;
        char why[200] = "";
        int rc = usp_eid_parse(b->eid, &e, why, sizeof why);
        CU_ASSERT_EQUAL(rc, USP_EINVAL);
        if (!strstr(why, b->why))
            fprintf(stderr, "\n  '%s': reason '%s' lacks '%s'\n", b->eid, why, b->why);
        CU_ASSERT_PTR_NOT_NULL(strstr(why, b->why));
        CU_ASSERT_FALSE(usp_eid_valid(b->eid));
        /* Nothing half-filled is left behind. */
        CU_ASSERT_PTR_NULL(e.authority);
        CU_ASSERT_PTR_NULL(e.instance);
    }
}

/* Every scheme has at least one rejected example of its own. */
static void test_invalid_covers_every_scheme(void)
{
    for (int s = 0; s < USP_EID_SCHEME_COUNT; s++) {
        const char *name = usp_eid_scheme_name((enum usp_eid_scheme)s);
        size_t n = strlen(name);
        bool found = false;
        for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++)
            if (strncmp(bads[i].eid, name, n) == 0 && bads[i].eid[n] == ':')
                found = true;
        CU_ASSERT_TRUE(found);
    }
}

static void test_scheme_names(void)
{
    static const char *const names[] = {"oui", "cid",  "pen",  "self",  "user", "os",
                                        "ops", "uuid", "imei", "proto", "doc",  "fqdn"};
    CU_ASSERT_EQUAL(sizeof names / sizeof names[0], USP_EID_SCHEME_COUNT);
    for (int s = 0; s < USP_EID_SCHEME_COUNT; s++)
        CU_ASSERT_STRING_EQUAL(usp_eid_scheme_name((enum usp_eid_scheme)s), names[s]);
    CU_ASSERT_PTR_NULL(usp_eid_scheme_name(USP_EID_SCHEME_COUNT));
    CU_ASSERT_PTR_NULL(usp_eid_scheme_name((enum usp_eid_scheme) - 1));
}

static void test_warn_text(void)
{
    CU_ASSERT_PTR_NOT_NULL(strstr(usp_eid_warn_text(USP_EID_WARN_RESERVED), "00256D"));
    CU_ASSERT_PTR_NOT_NULL(strstr(usp_eid_warn_text(USP_EID_WARN_NOT_PRODUCTION), "R-ARC.4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(usp_eid_warn_text(USP_EID_WARN_CHECK_DIGIT), "Luhn"));
    CU_ASSERT_PTR_NULL(usp_eid_warn_text(0));
    CU_ASSERT_PTR_NULL(usp_eid_warn_text(USP_EID_WARN_RESERVED | USP_EID_WARN_CHECK_DIGIT));
}

static void test_null_and_buffers(void)
{
    char why[200];
    CU_ASSERT_EQUAL(usp_eid_parse(NULL, NULL, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "Endpoint ID is missing");
    CU_ASSERT_FALSE(usp_eid_valid(NULL));
    /* No reason buffer at all, or a zero-sized one. */
    CU_ASSERT_EQUAL(usp_eid_parse("bad", NULL, NULL, 0), USP_EINVAL);
    why[0] = 'x';
    CU_ASSERT_EQUAL(usp_eid_parse("bad", NULL, why, 0), USP_EINVAL);
    CU_ASSERT_EQUAL(why[0], 'x');
    /* A short buffer is cut, still terminated. */
    char small[8];
    memset(small, 'z', sizeof small);
    CU_ASSERT_EQUAL(usp_eid_parse("foo::x", NULL, small, sizeof small), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(small, "unknown");
    /* Valid without an output struct. */
    CU_ASSERT_EQUAL(usp_eid_parse("self::a", NULL, why, sizeof why), 0);
}

static void test_parse_n(void)
{
    char why[200];
    struct usp_eid e;
    static const char buf[] = "self::agent1TRAILING";
    CU_ASSERT_EQUAL(usp_eid_parse_n(buf, 12, &e, why, sizeof why), 0);
    CU_ASSERT_EQUAL(e.instance_len, 6);
    CU_ASSERT_NSTRING_EQUAL(e.instance, "agent1", 6);
    static const char nul[] = "self::ab\0cd";
    CU_ASSERT_EQUAL(usp_eid_parse_n(nul, sizeof nul - 1, &e, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "Endpoint ID has a NUL byte at offset 8");
    CU_ASSERT_EQUAL(usp_eid_parse_n("self::a", 0, &e, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "Endpoint ID is empty");
}

static void test_long_input_is_shown_cut(void)
{
    char eid[300];
    memset(eid, 'q', sizeof eid - 1);
    eid[sizeof eid - 1] = '\0';
    eid[3] = ':';
    eid[4] = ':';
    eid[0] = 'f';
    char why[200];
    CU_ASSERT_EQUAL(usp_eid_parse(eid, NULL, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "unknown authority-scheme 'fqq'");
    memcpy(eid, "self", 4);
    eid[4] = ':';
    eid[5] = ':';
    CU_ASSERT_EQUAL(usp_eid_parse(eid, NULL, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "instance-id is 293 characters, more than 50 (R-ARC.6)");
    CU_ASSERT_EQUAL(
        usp_eid_parse("os::qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", NULL, why, sizeof why),
        USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "got 'qqqqqqqqqqqqqqqqqqqqqqqq...'"));
}

static void test_urn(void)
{
    char buf[USP_EID_URN_MAX_LEN + 1];
    char why[200];
    CU_ASSERT_EQUAL(usp_eid_to_urn("self::my-Agent", buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "urn:bbf:usp:id:self::my-Agent");
    /* The longest Endpoint ID fits the advertised buffer size. */
    static const char longest[] =
        "pen:4294967295:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX";
    CU_ASSERT_EQUAL(sizeof longest - 1, USP_EID_MAX_LEN);
    CU_ASSERT_EQUAL(usp_eid_to_urn(longest, buf, sizeof buf), 0);
    CU_ASSERT_EQUAL(strlen(buf), USP_EID_URN_MAX_LEN);
    /* Too small, or a bad Endpoint ID. */
    CU_ASSERT_EQUAL(usp_eid_to_urn("self::my-Agent", buf, 29), USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(usp_eid_to_urn("self::my-Agent", buf, 30), 0);
    CU_ASSERT_EQUAL(usp_eid_to_urn("self::my Agent", buf, sizeof buf), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_eid_to_urn("self::a", NULL, 0), USP_ERANGE);

    const char *u = "urn:bbf:usp:id:ops::00256D-STB-0123456789";
    CU_ASSERT_EQUAL(usp_eid_from_urn(u, strlen(u), buf, sizeof buf, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(buf, "ops::00256D-STB-0123456789");
    u = "URN:BBF:USP:ID:doc::agent";
    CU_ASSERT_EQUAL(usp_eid_from_urn(u, strlen(u), buf, sizeof buf, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(buf, "doc::agent");
    u = "urn:bbf:usp:id:";
    CU_ASSERT_EQUAL(usp_eid_from_urn(u, strlen(u), buf, sizeof buf, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "Endpoint ID is empty");
    u = "urn:bbf:usp:id:fqdn::*.example.org";
    CU_ASSERT_EQUAL(usp_eid_from_urn(u, strlen(u), buf, sizeof buf, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "fqdn instance-id must not contain a wildcard '*'");
    CU_ASSERT_STRING_EQUAL(buf, "");
    u = "urn:bbf:usp:self::a";
    CU_ASSERT_EQUAL(usp_eid_from_urn(u, strlen(u), buf, sizeof buf, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "'urn:bbf:usp:self::a' does not start with 'urn:bbf:usp:id:'");
    u = "uri:x";
    CU_ASSERT_EQUAL(usp_eid_from_urn(u, strlen(u), buf, sizeof buf, why, sizeof why), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "does not start with"));
    CU_ASSERT_EQUAL(usp_eid_from_urn(NULL, 0, buf, sizeof buf, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "URN is missing");
    /* Length-bounded: the URN needs no terminating NUL. */
    static const char san[] = "urn:bbf:usp:id:self::abcXYZ";
    CU_ASSERT_EQUAL(usp_eid_from_urn(san, sizeof san - 4, buf, sizeof buf, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(buf, "self::abc");
    CU_ASSERT_EQUAL(usp_eid_from_urn(san, sizeof san - 1, buf, 10, why, sizeof why), USP_ERANGE);
    /* Round trip through both forms for every valid example. */
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        char urn[USP_EID_URN_MAX_LEN + 1];
        char back[USP_EID_MAX_LEN + 1];
        CU_ASSERT_EQUAL(usp_eid_to_urn(goods[i].eid, urn, sizeof urn), 0);
        CU_ASSERT_EQUAL(usp_eid_from_urn(urn, strlen(urn), back, sizeof back, why, sizeof why), 0);
        CU_ASSERT_STRING_EQUAL(back, goods[i].eid);
    }
}

void suite_eid(void)
{
    USP_SUITE("eid", USP_TEST(test_valid_every_scheme), USP_TEST(test_invalid_every_scheme),
              USP_TEST(test_invalid_covers_every_scheme), USP_TEST(test_scheme_names),
              USP_TEST(test_warn_text), USP_TEST(test_null_and_buffers), USP_TEST(test_parse_n),
              USP_TEST(test_long_input_is_shown_cut), USP_TEST(test_urn));
}
