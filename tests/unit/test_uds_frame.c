/* UNIX domain socket MTP frames: every TLV type both ways, the
 * specification's handshake example, several and unknown TLVs, any split
 * of the stream, frames handed out in place, limits, and every malformed
 * frame with the exact text the binding sends in its Error TLV. */
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/uds.h"

#define B(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

/* ---- An event log, the same whatever the split of the stream -------------- */

struct log {
    char *s;
    size_t n, cap;
};

static void logf_(struct log *l, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(l->s ? l->s + l->n : NULL, l->s ? l->cap - l->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            abort();
        if (l->s && l->n + (size_t)k < l->cap) {
            l->n += (size_t)k;
            return;
        }
        l->cap = (l->cap + (size_t)k + 1) * 2;
        l->s = realloc(l->s, l->cap);
        if (!l->s)
            abort();
    }
}

static void log_frame(struct log *l, const struct usp_uds_frame *f)
{
    struct usp_uds_tlv t;
    size_t off = 0;
    uint32_t n = 0;
    logf_(l, "F%u{", (unsigned)f->len);
    while (usp_uds_tlv_next(f, &off, &t)) {
        logf_(l, "%u:", t.type);
        for (uint32_t i = 0; i < t.len; i++) {
            uint8_t c = t.value[i];
            if (c >= 0x20 && c < 0x7F && c != '\\' && c != ';')
                logf_(l, "%c", c);
            else
                logf_(l, "\\x%02x", c);
        }
        logf_(l, ";");
        n++;
    }
    CU_ASSERT_EQUAL(n, f->ntlv);
    CU_ASSERT_EQUAL(off, f->len);
    CU_ASSERT_EQUAL(f->wire_len, f->len + USP_UDS_HEADER_LEN);
    logf_(l, "}|");
}

/* Parses `in` in reads of `chunk` bytes (0: one read), or two reads split
 * at `split` when chunk is SIZE_MAX; each read is a fresh heap copy freed
 * right after use. Returns the log (free it). */
static char *parse_log(const uint8_t *in, size_t n, size_t chunk, size_t split,
                       const struct usp_uds_limits *lim)
{
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    struct log l = {0};
    int rc = 0;
    usp_uds_parser_init(&p, lim);
    size_t off = 0;
    while (off < n && rc >= 0) {
        size_t k = chunk == 0 ? n : chunk == SIZE_MAX ? (off < split ? split : n - off) : chunk;
        if (k > n - off)
            k = n - off;
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, in + off, k);
        size_t pos = 0, used;
        while (pos < k && (rc = usp_uds_parse(&p, c + pos, k - pos, &used, &f)) == 1) {
            CU_ASSERT(used > 0 && used <= k - pos);
            pos += used;
            log_frame(&l, &f);
        }
        if (rc == 0)
            CU_ASSERT_EQUAL(pos + used, k);
        free(c);
        off += k;
    }
    if (rc < 0) {
        char why[256];
        usp_uds_parser_why(&p, why, sizeof why);
        logf_(&l, "ERR%d:%s", rc, why);
    } else if (usp_uds_parser_in_frame(&p)) {
        logf_(&l, "PARTIAL");
    }
    usp_uds_parser_cleanup(&p);
    if (!l.s)
        logf_(&l, "%s", "");
    return l.s;
}

static char *every_split(const uint8_t *in, size_t n, const struct usp_uds_limits *lim)
{
    char *ref = parse_log(in, n, 0, 0, lim);
    for (size_t k = 0; k <= n; k++) {
        char *s = parse_log(in, n, SIZE_MAX, k, lim);
        if (strcmp(s, ref) != 0) {
            printf("\nsplit at %zu:\n  %s\nvs\n  %s\n", k, s, ref);
            CU_FAIL("split changes the result");
        }
        free(s);
    }
    static const size_t sizes[] = {1, 2, 3, 5, 8, 13, 64};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *s = parse_log(in, n, sizes[i], 0, lim);
        CU_ASSERT_STRING_EQUAL(s, ref);
        free(s);
    }
    return ref;
}

/* ---- Frames of each type --------------------------------------------------- */

static void test_handshake_example(void)
{
    /* The specification's example: a Handshake from os::00256D-0123456789. */
    static const char want[] = "_USP\x00\x00\x00\x1a"
                               "\x01\x00\x00\x00\x15"
                               "os::00256D-0123456789";
    uint8_t buf[64];
    size_t len;
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("os::00256D-0123456789", buf, sizeof buf, &len), 0);
    CU_ASSERT_EQUAL(len, sizeof want - 1);
    CU_ASSERT_EQUAL(memcmp(buf, want, sizeof want - 1), 0);

    struct usp_uds_parser p;
    struct usp_uds_frame f;
    struct usp_uds_tlv t;
    size_t used;
    usp_uds_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, buf, len, &used, &f), 1);
    CU_ASSERT_EQUAL(used, len);
    CU_ASSERT_EQUAL(f.len, 26);
    CU_ASSERT_EQUAL(f.ntlv, 1);
    CU_ASSERT_EQUAL(f.wire_len, 34);
    CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_HANDSHAKE, &t), 1);
    CU_ASSERT_EQUAL(t.len, 21);
    CU_ASSERT_EQUAL(memcmp(t.value, "os::00256D-0123456789", 21), 0);
    CU_ASSERT(t.value == buf + 13); /* in place */
    CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_RECORD, &t), 0);
    CU_ASSERT_EQUAL(usp_uds_parser_mem(&p), 0);
    usp_uds_parser_cleanup(&p);
}

static void test_record_and_error(void)
{
    static const uint8_t rec[] = {0x0a, 0x03, '1', '.', '4', 0x00, 0x12, 0x00, 0xff};
    uint8_t buf[64], head[13];
    size_t len;
    CU_ASSERT_EQUAL(usp_uds_encode_record(rec, sizeof rec, buf, sizeof buf, &len), 0);
    CU_ASSERT_EQUAL(len, 8 + 5 + sizeof rec);
    CU_ASSERT_EQUAL(memcmp(buf, "_USP\x00\x00\x00\x0e\x03\x00\x00\x00\x09", 13), 0);
    CU_ASSERT_EQUAL(memcmp(buf + 13, rec, sizeof rec), 0);
    /* The 13-byte head and the Record from its own buffer: same bytes. */
    CU_ASSERT_EQUAL(usp_uds_encode_head(USP_UDS_RECORD, sizeof rec, head), 0);
    CU_ASSERT_EQUAL(memcmp(head, buf, 13), 0);

    char *s = every_split(buf, len, NULL);
    CU_ASSERT_STRING_EQUAL(s, "F14{3:\\x0a\\x031.4\\x00\\x12\\x00\\xff;}|");
    free(s);

    CU_ASSERT_EQUAL(usp_uds_encode_error("Handshake Endpoint ID is empty", buf, sizeof buf, &len),
                    0);
    CU_ASSERT_EQUAL(len, 8 + 5 + 30);
    s = every_split(buf, len, NULL);
    CU_ASSERT_STRING_EQUAL(s, "F35{2:Handshake Endpoint ID is empty;}|");
    free(s);
    /* An empty Error text and an empty Record are framed fine. */
    CU_ASSERT_EQUAL(usp_uds_encode_error("", buf, sizeof buf, &len), 0);
    CU_ASSERT_EQUAL(len, 13);
    CU_ASSERT_EQUAL(usp_uds_encode_record(NULL, 0, buf + 13, sizeof buf - 13, &len), 0);
    s = every_split(buf, 26, NULL);
    CU_ASSERT_STRING_EQUAL(s, "F5{2:;}|F5{3:;}|");
    free(s);
}

static void test_several_and_unknown_tlvs(void)
{
    /* Unknown types are kept for the binding to skip [R-UDS.15]. */
    struct usp_uds_tlv in[] = {
        {9, 3, (const uint8_t *)"abc"},
        {USP_UDS_HANDSHAKE, 6, (const uint8_t *)"doc::a"},
        {0, 0, NULL},
        {USP_UDS_RECORD, 2, (const uint8_t *)"\x00\x01"},
        {255, 1, (const uint8_t *)"\xff"},
    };
    uint8_t buf[128];
    size_t len;
    CU_ASSERT_EQUAL(usp_uds_encode(in, 5, buf, sizeof buf, &len), 0);
    CU_ASSERT_EQUAL(len, 8 + 5 * 5 + 3 + 6 + 0 + 2 + 1);
    char *s = every_split(buf, len, NULL);
    CU_ASSERT_STRING_EQUAL(s, "F37{9:abc;1:doc::a;0:;3:\\x00\\x01;255:\\xff;}|");
    free(s);

    struct usp_uds_parser p;
    struct usp_uds_frame f;
    struct usp_uds_tlv t;
    size_t used, off = 0;
    usp_uds_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, buf, len, &used, &f), 1);
    CU_ASSERT_EQUAL(f.ntlv, 5);
    for (size_t i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(usp_uds_tlv_next(&f, &off, &t), 1);
        CU_ASSERT_EQUAL(t.type, in[i].type);
        CU_ASSERT_EQUAL(t.len, in[i].len);
        CU_ASSERT(t.len == 0 || memcmp(t.value, in[i].value, t.len) == 0);
    }
    CU_ASSERT_EQUAL(usp_uds_tlv_next(&f, &off, &t), 0);
    CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_RECORD, &t), 1);
    CU_ASSERT_EQUAL(t.len, 2);
    CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_ERROR, NULL), 0);
    usp_uds_parser_cleanup(&p);

    CU_ASSERT_STRING_EQUAL(usp_uds_type_name(USP_UDS_HANDSHAKE), "Handshake");
    CU_ASSERT_STRING_EQUAL(usp_uds_type_name(USP_UDS_ERROR), "Error");
    CU_ASSERT_STRING_EQUAL(usp_uds_type_name(USP_UDS_RECORD), "USP Record");
    CU_ASSERT_PTR_NULL(usp_uds_type_name(0));
    CU_ASSERT_PTR_NULL(usp_uds_type_name(4));

    /* The walk stops at a TLV that does not fit (a frame not checked by
     * the parser), and at the end. */
    struct usp_uds_frame bogus = {(const uint8_t *)"\3\0\0\0\11ab", 7, 1, 15};
    off = 0;
    CU_ASSERT_EQUAL(usp_uds_tlv_next(&bogus, &off, &t), 0);
    CU_ASSERT_EQUAL(off, 0);
    CU_ASSERT_EQUAL(usp_uds_tlv_next(NULL, &off, &t), 0);
}

static void test_utf8_endpoint_ids(void)
{
    /* Endpoint IDs and Error texts are UTF-8, any of it. */
    static const char eid[] =
        "self::\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xe0\xa0\x80\xf4\x8f\xbf\xbf";
    uint8_t buf[64];
    size_t len, used;
    CU_ASSERT_EQUAL(usp_uds_encode_handshake(eid, buf, sizeof buf, &len), 0);
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    struct usp_uds_tlv t;
    usp_uds_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, buf, len, NULL, &f), 1); /* `used` may be NULL */
    CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_HANDSHAKE, &t), 1);
    CU_ASSERT_EQUAL(t.len, sizeof eid - 1);
    CU_ASSERT_EQUAL(memcmp(t.value, eid, t.len), 0);
    usp_uds_parser_cleanup(&p);

    /* clang-format off */
    static const char *const bad[] = {"\xf0\x9f\x98\x28", "\xe0\x9f\xbf", "\xf4\x90\x80\x80",
                                      "\xf0\x8f\xbf\xbf", "\xc1\xbf", "\xbf", "\xf8"};
    /* clang-format on */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[16], want[160], why[160];
        snprintf(text, sizeof text, "x%s", bad[i]);
        size_t n = strlen(text);
        uint8_t in[32] = "_USP\0\0\0\0\x02\0\0\0";
        in[7] = (uint8_t)(n + 5);
        in[12] = (uint8_t)n;
        memcpy(in + 13, text, n);
        usp_uds_parser_init(&p, NULL);
        CU_ASSERT_EQUAL(usp_uds_parse(&p, in, 13 + n, &used, &f), USP_EPROTO);
        usp_uds_parser_why(&p, why, sizeof why);
        snprintf(want, sizeof want,
                 "UDS frame 1: Error TLV at byte 8 is not valid UTF-8 (byte 1 of the value is "
                 "0x%02x)",
                 (uint8_t)bad[i][0]);
        CU_ASSERT_STRING_EQUAL(why, want);
        usp_uds_parser_cleanup(&p);
        CU_ASSERT_EQUAL(usp_uds_encode_error(text, buf, sizeof buf, &len), USP_EINVAL);
    }
}

/* ---- Splits, merges, buffers ----------------------------------------------- */

static void test_every_split_of_a_session(void)
{
    uint8_t in[256];
    size_t n = 0, len;
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("self::ctrl", in + n, sizeof in - n, &len), 0);
    n += len;
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("self::agent", in + n, sizeof in - n, &len), 0);
    n += len;
    CU_ASSERT_EQUAL(
        usp_uds_encode_record((const uint8_t *)"\x0a\x00\x00", 3, in + n, sizeof in - n, &len), 0);
    n += len;
    struct usp_uds_tlv two[] = {{3, 1, (const uint8_t *)"R"}, {7, 0, NULL}};
    CU_ASSERT_EQUAL(usp_uds_encode(two, 2, in + n, sizeof in - n, &len), 0);
    n += len;
    CU_ASSERT_EQUAL(usp_uds_encode_error("bye", in + n, sizeof in - n, &len), 0);
    n += len;
    char *s = every_split(in, n, NULL);
    CU_ASSERT_STRING_EQUAL(s, "F15{1:self::ctrl;}|F16{1:self::agent;}|F8{3:\\x0a\\x00\\x00;}|"
                              "F11{3:R;7:;}|F8{2:bye;}|");
    free(s);
    /* Cut short: the rest never comes. */
    s = parse_log(in, n - 1, 0, 0, NULL);
    CU_ASSERT_STRING_EQUAL(s, "F15{1:self::ctrl;}|F16{1:self::agent;}|F8{3:\\x0a\\x00\\x00;}|"
                              "F11{3:R;7:;}|PARTIAL");
    free(s);
}

static void test_merged_frames_in_place(void)
{
    size_t cap = 300 * 24, n = 0, len;
    uint8_t *in = malloc(cap);
    for (int i = 0; i < 300; i++) {
        uint8_t rec[4] = {(uint8_t)i, (uint8_t)(i >> 8), 0, 0xAA};
        CU_ASSERT_EQUAL(usp_uds_encode_record(rec, sizeof rec, in + n, cap - n, &len), 0);
        n += len;
    }
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    struct usp_uds_tlv t;
    usp_uds_parser_init(&p, NULL);
    size_t off = 0, used;
    int count = 0;
    while (off < n && usp_uds_parse(&p, in + off, n - off, &used, &f) == 1) {
        CU_ASSERT_EQUAL(used, 17);
        CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_RECORD, &t), 1);
        CU_ASSERT(t.value == in + off + 13);
        CU_ASSERT_EQUAL(t.value[0], (uint8_t)count);
        CU_ASSERT_EQUAL(t.value[1], (uint8_t)(count >> 8));
        CU_ASSERT_EQUAL(usp_uds_parser_mem(&p), 0);
        off += used;
        count++;
    }
    CU_ASSERT_EQUAL(count, 300);
    CU_ASSERT_EQUAL(off, n);
    usp_uds_parser_cleanup(&p);
    free(in);
}

static void test_buffer_lifetime(void)
{
    uint8_t rec[1000], in[1100];
    size_t n;
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (uint8_t)(i * 13);
    CU_ASSERT_EQUAL(usp_uds_encode_record(rec, sizeof rec, in, sizeof in, &n), 0);
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    struct usp_uds_tlv t;
    size_t used;
    usp_uds_parser_init(&p, NULL);
    /* Header only: nothing allocated yet before it is complete. */
    CU_ASSERT_EQUAL(usp_uds_parse(&p, in, 7, &used, &f), 0);
    CU_ASSERT_EQUAL(used, 7);
    CU_ASSERT_EQUAL(usp_uds_parser_mem(&p), 0);
    CU_ASSERT(usp_uds_parser_in_frame(&p));
    /* Then exactly the frame's size. */
    CU_ASSERT_EQUAL(usp_uds_parse(&p, in + 7, 100, &used, &f), 0);
    CU_ASSERT_EQUAL(usp_uds_parser_mem(&p), n - 8);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, in + 107, n - 107, &used, &f), 1);
    CU_ASSERT_EQUAL(used, n - 107);
    CU_ASSERT(!usp_uds_parser_in_frame(&p));
    CU_ASSERT_EQUAL(usp_uds_tlv_find(&f, USP_UDS_RECORD, &t), 1);
    CU_ASSERT_EQUAL(t.len, sizeof rec);
    CU_ASSERT_EQUAL(memcmp(t.value, rec, sizeof rec), 0);
    CU_ASSERT(t.value < in || t.value >= in + sizeof in);
    /* Freed when the next call starts. */
    CU_ASSERT_EQUAL(usp_uds_parse(&p, NULL, 0, &used, &f), 0);
    CU_ASSERT_EQUAL(usp_uds_parser_mem(&p), 0);
    usp_uds_parser_cleanup(&p);
}

/* ---- Malformed frames and limits --------------------------------------------- */

struct bad {
    const char *in;
    size_t n;
    int rc;
    const char *why;
};
/* clang-format off */
#define BAD(lit, rc, why) {lit, sizeof(lit) - 1, rc, why}
/* clang-format on */

static const struct bad bads[] = {
    BAD("GET / HTTP/1.1\r\n", USP_EPROTO,
        "UDS frame 1: byte 0 of the header is 0x47, not 0x5f of the sync \"_USP\""),
    BAD("_UXP\x00\x00\x00\x05", USP_EPROTO,
        "UDS frame 1: byte 2 of the header is 0x58, not 0x53 of the sync \"_USP\""),
    BAD("_US", USP_EPROTO, NULL), /* incomplete, not wrong: no error */
    BAD("_USP\x7f\xff\xff\xff", USP_ERANGE,
        "UDS frame 1: length 2147483647 exceeds the limit of 4198400 bytes"),
    BAD("_USP\x00\x00\x00\x00", USP_EPROTO,
        "UDS frame 1: length 0 leaves no room for a TLV (a frame holds one or more)"),
    BAD("_USP\x00\x00\x00\x04\x03\x00\x00\x00", USP_EPROTO,
        "UDS frame 1: length 4 leaves no room for a TLV (a frame holds one or more)"),
    BAD("_USP\x00\x00\x00\x08\x03\x00\x00\x00\x10xyz", USP_EPROTO,
        "UDS frame 1: TLV at byte 8 (type 3) has length 16 but only 3 bytes remain in the "
        "frame"),
    BAD("_USP\x00\x00\x00\x0a\x03\x00\x00\x00\x02"
        "ab\x03\x00\x00",
        USP_EPROTO, "UDS frame 1: 3 bytes at byte 15 are too few for a TLV header"),
    BAD("_USP\x00\x00\x00\x05\x01\x00\x00\x00\x00", USP_EPROTO,
        "UDS frame 1: Handshake TLV at byte 8 has an empty Endpoint ID"),
    BAD("_USP\x00\x00\x00\x0a\x01\x00\x00\x00\x05os::\xff", USP_EPROTO,
        "UDS frame 1: Handshake TLV at byte 8 is not valid UTF-8 (byte 4 of the value is 0xff)"),
    BAD("_USP\x00\x00\x00\x0b\x01\x00\x00\x00\x06os:\x00:x", USP_EPROTO,
        "UDS frame 1: Handshake TLV at byte 8 holds a NUL byte (byte 3 of the value)"),
    BAD("_USP\x00\x00\x00\x0b\x03\x00\x00\x00\x01R\x02\x00\x00\x00\x00"
        "_USP\x00\x00\x00\x0c\x03\x00\x00\x00\x00\x02\x00\x00\x00\x02\xe2\x82",
        USP_EPROTO,
        "UDS frame 2: Error TLV at byte 13 is not valid UTF-8 (byte 0 of the value is 0xe2)"),
    BAD("_USP\x00\x00\x00\x07\x02\x00\x00\x00\x02\xc0\xaf", USP_EPROTO,
        "UDS frame 1: Error TLV at byte 8 is not valid UTF-8 (byte 0 of the value is 0xc0)"),
};

static void test_malformed(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        char want[300];
        if (bads[i].why)
            snprintf(want, sizeof want, "ERR%d:%s", bads[i].rc, bads[i].why);
        else
            snprintf(want, sizeof want, "PARTIAL");
        char *s = every_split((const uint8_t *)bads[i].in, bads[i].n, NULL);
        const char *err = strstr(s, bads[i].why ? "ERR" : "PARTIAL");
        if (!err || strcmp(err, want) != 0) {
            printf("\ncase %zu: got '%s'\n         want '%s'\n", i, s, want);
            CU_FAIL("wrong error");
        }
        free(s);
    }
    /* The Error TLV the binding sends back is itself a valid frame. */
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    size_t used;
    char why[256];
    uint8_t buf[300];
    usp_uds_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, B("HTTP"), &used, &f), USP_EPROTO);
    CU_ASSERT(usp_uds_parser_why(&p, why, sizeof why) < sizeof why);
    CU_ASSERT_EQUAL(usp_uds_encode_error(why, buf, sizeof buf, &used), 0);
    /* Sticky until reset. */
    CU_ASSERT_EQUAL(usp_uds_parse(&p, B("_USP"), &used, &f), USP_EPROTO);
    CU_ASSERT_EQUAL(used, 0);
    char small[12];
    CU_ASSERT_EQUAL(usp_uds_parser_why(&p, small, sizeof small), strlen(why));
    CU_ASSERT_STRING_EQUAL(small, "UDS frame 1");
    usp_uds_parser_reset(&p);
    CU_ASSERT_EQUAL(usp_uds_parser_why(&p, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(why, "");
    CU_ASSERT_EQUAL(usp_uds_parse(&p, buf, 13 + strlen(small), &used, &f), 0);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, NULL, 3, &used, &f), USP_EINVAL);
    usp_uds_parser_cleanup(&p);
}

static void test_limits(void)
{
    struct usp_uds_limits lim = {.max_frame = 32};
    uint8_t rec[27], in[64];
    size_t n;
    memset(rec, 'r', sizeof rec);
    CU_ASSERT_EQUAL(usp_uds_encode_record(rec, 27, in, sizeof in, &n), 0);
    char *s = every_split(in, n, &lim);
    CU_ASSERT_STRING_EQUAL(s, "F32{3:rrrrrrrrrrrrrrrrrrrrrrrrrrr;}|");
    free(s);
    in[7] = 33; /* claims one byte more than the limit */
    /* Refused as soon as the header is in, before the payload. */
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    size_t used;
    char why[128];
    usp_uds_parser_init(&p, &lim);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, in, 4, &used, &f), 0);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, in + 4, 4, &used, &f), USP_ERANGE);
    CU_ASSERT_EQUAL(usp_uds_parser_mem(&p), 0);
    usp_uds_parser_why(&p, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(why, "UDS frame 1: length 33 exceeds the limit of 32 bytes");
    usp_uds_parser_cleanup(&p);
    /* The largest limit leaves room for the header in 32 bits. */
    struct usp_uds_limits huge = {UINT32_MAX};
    usp_uds_parser_init(&p, &huge);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, B("_USP\xff\xff\xff\xff"), &used, &f), USP_ERANGE);
    usp_uds_parser_why(&p, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(why,
                           "UDS frame 1: length 4294967295 exceeds the limit of 4294967287 bytes");
    usp_uds_parser_cleanup(&p);
    /* A zero limit means the default. */
    struct usp_uds_limits zero = {0};
    usp_uds_parser_init(&p, &zero);
    CU_ASSERT_EQUAL(usp_uds_parse(&p, B("_USP\x00\x40\x10\x01"), &used, &f), USP_ERANGE);
    usp_uds_parser_why(&p, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(why, "UDS frame 1: length 4198401 exceeds the limit of 4198400 bytes");
    usp_uds_parser_cleanup(&p);
}

/* ---- Encoders ------------------------------------------------------------ */

static void test_encode_refuses(void)
{
    uint8_t buf[64];
    size_t len = 99;
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("", buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(usp_uds_encode_handshake(NULL, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("os::\xff", buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_uds_encode_error("\xed\xa0\x80", buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_uds_encode_error(NULL, buf, sizeof buf, &len), USP_EINVAL);
    struct usp_uds_tlv nul = {USP_UDS_ERROR, 3, (const uint8_t *)"a\0b"};
    CU_ASSERT_EQUAL(usp_uds_encode(&nul, 1, buf, sizeof buf, &len), USP_EINVAL);
    nul.type = USP_UDS_RECORD; /* a Record may hold anything */
    CU_ASSERT_EQUAL(usp_uds_encode(&nul, 1, buf, sizeof buf, &len), 0);
    CU_ASSERT_EQUAL(usp_uds_encode(&nul, 0, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_uds_encode(NULL, 1, buf, sizeof buf, &len), USP_EINVAL);
    struct usp_uds_tlv novalue = {USP_UDS_RECORD, 3, NULL};
    CU_ASSERT_EQUAL(usp_uds_encode(&novalue, 1, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_uds_encode_record(NULL, 1, buf, sizeof buf, &len), USP_EINVAL);
    /* Measuring, and one byte short. */
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("self::x", NULL, 0, &len), USP_ERANGE);
    CU_ASSERT_EQUAL(len, 20);
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("self::x", buf, 19, &len), USP_ERANGE);
    CU_ASSERT_EQUAL(len, 20);
    CU_ASSERT_EQUAL(usp_uds_encode_handshake("self::x", buf, 20, &len), 0);
    /* Values that do not fit the 4-byte lengths. */
    uint8_t head[13];
    CU_ASSERT_EQUAL(usp_uds_encode_head(3, (size_t)UINT32_MAX - 4, head), USP_ERANGE);
    CU_ASSERT_EQUAL(usp_uds_encode_head(3, (size_t)UINT32_MAX - 5, head), 0);
    CU_ASSERT_EQUAL(memcmp(head, "_USP\xff\xff\xff\xff\x03\xff\xff\xff\xfa", 13), 0);
    CU_ASSERT_EQUAL(usp_uds_encode_record(buf, (size_t)UINT32_MAX, buf, sizeof buf, &len),
                    USP_ERANGE);
    struct usp_uds_tlv big[2] = {{3, UINT32_MAX / 2, buf}, {3, UINT32_MAX / 2, buf}};
    CU_ASSERT_EQUAL(usp_uds_encode(big, 2, buf, sizeof buf, &len), USP_ERANGE);
}

void suite_uds_frame(void)
{
    USP_SUITE("uds_frame", USP_TEST(test_handshake_example), USP_TEST(test_record_and_error),
              USP_TEST(test_several_and_unknown_tlvs), USP_TEST(test_utf8_endpoint_ids),
              USP_TEST(test_every_split_of_a_session), USP_TEST(test_merged_frames_in_place),
              USP_TEST(test_buffer_lifetime), USP_TEST(test_malformed), USP_TEST(test_limits),
              USP_TEST(test_encode_refuses));
}
