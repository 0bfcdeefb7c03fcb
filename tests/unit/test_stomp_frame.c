/* STOMP 1.2 frame codec: parsing of every server frame (RabbitMQ-style
 * included), any split of the stream, heart-beats, escapes both ways,
 * bodies with NULs, limits and malformed input with the exact error, the
 * encoders' exact bytes, round trips and heart-beat negotiation. */
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/stomp.h"

#define B(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

/* ---- An event log, the same whatever the split of the stream -------------- */

struct log {
    char *s;
    size_t n, cap;
    uint64_t hb; /* heart-beat EOLs not yet written: runs split by reads merge */
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

static void log_bytes(struct log *l, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7F && b[i] != '\\' && b[i] != '|')
            logf_(l, "%c", b[i]);
        else
            logf_(l, "\\x%02x", b[i]);
    }
}

static void log_flush_hb(struct log *l)
{
    if (l->hb)
        logf_(l, "HB%llu|", (unsigned long long)l->hb);
    l->hb = 0;
}

static void log_event(struct log *l, const struct usp_stomp_frame *f)
{
    if (f->cmd == USP_STOMP_HEARTBEAT) {
        l->hb += f->eols;
        return;
    }
    log_flush_hb(l);
    logf_(l, "%s{", usp_stomp_cmd_name(f->cmd));
    for (size_t i = 0; i < f->nhdr; i++) {
        log_bytes(l, f->hdr[i].name.p, f->hdr[i].name.len);
        logf_(l, "=");
        log_bytes(l, f->hdr[i].value.p, f->hdr[i].value.len);
        logf_(l, ";");
    }
    logf_(l, "}%s[", f->has_content_length ? "cl" : "");
    log_bytes(l, f->body, f->body_len);
    logf_(l, "]|");
}

/* Parses `in` fed in chunks of `chunk` bytes (0: all at once), or in two
 * pieces split at `split` when chunk is SIZE_MAX. Every chunk is a fresh
 * heap copy freed right after use, so that ASan catches a parser keeping
 * pointers into bytes it was given earlier. Returns the log (free it). */
static char *parse_log(const uint8_t *in, size_t n, size_t chunk, size_t split,
                       const struct usp_stomp_limits *lim)
{
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    struct log l = {0};
    int rc = 0;
    usp_stomp_parser_init(&p, lim);
    size_t off = 0;
    while (off < n && rc >= 0) {
        size_t k = chunk == 0 ? n : chunk == SIZE_MAX ? (off < split ? split : n - off) : chunk;
        if (k > n - off)
            k = n - off;
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, in + off, k);
        size_t pos = 0, used;
        while (pos < k && (rc = usp_stomp_parse(&p, c + pos, k - pos, &used, &f)) == 1) {
            CU_ASSERT(used > 0 && used <= k - pos);
            pos += used;
            log_event(&l, &f);
        }
        if (rc == 0)
            CU_ASSERT_EQUAL(pos + used, k);
        free(c);
        off += k;
    }
    log_flush_hb(&l);
    if (rc < 0) {
        char why[256];
        usp_stomp_parser_why(&p, why, sizeof why);
        logf_(&l, "ERR%d:%s", rc, why);
    } else if (usp_stomp_parser_in_frame(&p)) {
        logf_(&l, "PARTIAL");
    }
    usp_stomp_parser_cleanup(&p);
    if (!l.s)
        logf_(&l, "%s", "");
    return l.s;
}

static char *whole(const uint8_t *in, size_t n)
{
    return parse_log(in, n, 0, 0, NULL);
}

/* Checks that every split of `in` into two reads, and reads of 1, 2, 3, 7
 * and 64 bytes, give the same log as one read; returns that log. */
static char *every_split(const uint8_t *in, size_t n, const struct usp_stomp_limits *lim)
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
    static const size_t sizes[] = {1, 2, 3, 7, 64};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *s = parse_log(in, n, sizes[i], 0, lim);
        CU_ASSERT_STRING_EQUAL(s, ref);
        free(s);
    }
    return ref;
}

/* Parses exactly one frame from `in`, which must be all of it. */
static int parse_one(struct usp_stomp_parser *p, const uint8_t *in, size_t n,
                     struct usp_stomp_frame *f)
{
    size_t used = 0;
    int rc = usp_stomp_parse(p, in, n, &used, f);
    if (rc == 1)
        CU_ASSERT_EQUAL(used, n);
    return rc;
}

static bool str_is(struct usp_stomp_str s, const char *lit)
{
    return usp_stomp_str_eq(s, lit);
}

/* ---- Server frames ------------------------------------------------------- */

static void test_connected_rabbitmq(void)
{
    /* RabbitMQ 3.12 answers a STOMP frame like this, LF after the NUL. */
    static const char in[] = "CONNECTED\n"
                             "server:RabbitMQ/3.12.4\n"
                             "session:session-Q8Jr2v0cK4X3bn6A_Ks3fQ\n"
                             "heart-beat:10000,30000\n"
                             "version:1.2\n"
                             "\n\0\n";
    char *s = every_split(B(in), NULL);
    CU_ASSERT_STRING_EQUAL(s, "CONNECTED{server=RabbitMQ/3.12.4;session=session-Q8Jr2v0cK4X3bn6A_"
                              "Ks3fQ;heart-beat=10000,30000;version=1.2;}[]|HB1|");
    free(s);

    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    struct usp_stomp_connected c;
    char why[128];
    usp_stomp_parser_init(&p, NULL);
    size_t used;
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B(in), &used, &f), 1);
    CU_ASSERT_EQUAL(used, sizeof in - 2);
    CU_ASSERT_EQUAL(f.wire_len, sizeof in - 2);
    CU_ASSERT_EQUAL(usp_stomp_connected_view(&f, &c, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(why, "");
    CU_ASSERT(str_is(c.version, "1.2"));
    CU_ASSERT(str_is(c.server, "RabbitMQ/3.12.4"));
    CU_ASSERT(str_is(c.session, "session-Q8Jr2v0cK4X3bn6A_Ks3fQ"));
    CU_ASSERT_PTR_NULL(c.subscribe_dest.p);
    CU_ASSERT(c.has_heart_beat);
    CU_ASSERT_EQUAL(c.sx, 10000);
    CU_ASSERT_EQUAL(c.sy, 30000);
    /* The trailing LF is a heart-beat. */
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, (const uint8_t *)in + used, 1, &used, &f), 1);
    CU_ASSERT_EQUAL(f.cmd, USP_STOMP_HEARTBEAT);
    CU_ASSERT_EQUAL(f.eols, 1);
    usp_stomp_parser_cleanup(&p);
}

static void test_connected_no_escapes(void)
{
    /* CONNECTED does not escape: raw colons, and a backslash is a byte. */
    static const char in[] = "CONNECTED\n"
                             "version:1.2\n"
                             "subscribe-dest:/queue/oui:00256D:agent\\c1\n"
                             "\n\0";
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    struct usp_stomp_connected c;
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(parse_one(&p, B(in), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_connected_view(&f, &c, NULL, 0), 0);
    CU_ASSERT(str_is(c.subscribe_dest, "/queue/oui:00256D:agent\\c1"));
    CU_ASSERT(!c.has_heart_beat);
    CU_ASSERT_EQUAL(c.sx, 0);
    CU_ASSERT_EQUAL(c.sy, 0);
    usp_stomp_parser_cleanup(&p);

    /* Unless told that the server escapes anyway (RabbitMQ). */
    struct usp_stomp_limits lim;
    usp_stomp_limits_init(&lim);
    lim.unescape_connect = true;
    usp_stomp_parser_init(&p, &lim);
    CU_ASSERT_EQUAL(parse_one(&p, B(in), &f), 1);
    CU_ASSERT(str_is(usp_stomp_header(&f, "subscribe-dest"), "/queue/oui:00256D:agent:1"));
    usp_stomp_parser_cleanup(&p);

    /* A CONNECT (not STOMP) frame is not decoded either; an undefined
     * escape is no error there. */
    static const char conn[] = "CONNECT\naccept-version:1.2\nlogin:a\\tb\n\n\0";
    char *s = whole(B(conn));
    CU_ASSERT_STRING_EQUAL(s, "CONNECT{accept-version=1.2;login=a\\x5ctb;}[]|");
    free(s);
    /* The STOMP frame is. */
    static const char stomp[] = "STOMP\nendpoint-id:os\\c\\c00256D-1\nlogin:a\\\\b\n\n\0";
    s = whole(B(stomp));
    CU_ASSERT_STRING_EQUAL(s, "STOMP{endpoint-id=os::00256D-1;login=a\\x5cb;}[]|");
    free(s);
}

/* A MESSAGE as RabbitMQ delivers it: its own headers, the sender's
 * headers including the receipt it asked for, colons escaped, a binary
 * body with NULs, LF after the NUL. */
static const char rabbit_msg[] = "MESSAGE\r\n"
                                 "subscription:sub-0\r\n"
                                 "destination:/queue/agent-1\r\n"
                                 "message-id:T_sub-0@@session-2f3WnLqgY@@1\r\n"
                                 "redelivered:false\r\n"
                                 "content-type:application/vnd.bbf.usp.msg\r\n"
                                 "reply-to-dest:/queue/ctrl\\coui\\c00256D\\cc1\r\n"
                                 "receipt:r-77\r\n"
                                 "persistent:true\r\n"
                                 "content-length:10\r\n"
                                 "\r\n"
                                 "\x0a\x03\x31\x2e\x34\x00\x12\x00\x00\x01"
                                 "\0\n";

static void test_message_rabbitmq(void)
{
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    struct usp_stomp_message m;
    char why[128];
    usp_stomp_parser_init(&p, NULL);
    size_t used;
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B(rabbit_msg), &used, &f), 1);
    CU_ASSERT_EQUAL(used, sizeof rabbit_msg - 2);
    CU_ASSERT_EQUAL(f.cmd, USP_STOMP_MESSAGE);
    CU_ASSERT_EQUAL(f.nhdr, 9);
    CU_ASSERT(f.has_content_length);
    CU_ASSERT_EQUAL(usp_stomp_message_view(&f, &m, why, sizeof why), 0);
    CU_ASSERT(str_is(m.destination, "/queue/agent-1"));
    CU_ASSERT(str_is(m.message_id, "T_sub-0@@session-2f3WnLqgY@@1"));
    CU_ASSERT(str_is(m.subscription, "sub-0"));
    CU_ASSERT(str_is(m.content_type, USP_STOMP_CONTENT_TYPE));
    CU_ASSERT(str_is(m.reply_to_dest, "/queue/ctrl:oui:00256D:c1"));
    CU_ASSERT(str_is(m.receipt, "r-77"));
    CU_ASSERT_PTR_NULL(m.ack.p);
    CU_ASSERT(m.has_content_length);
    CU_ASSERT_EQUAL(m.body_len, 10);
    CU_ASSERT_EQUAL(memcmp(m.body, "\x0a\x03\x31\x2e\x34\x00\x12\x00\x00\x01", 10), 0);
    /* The body is handed out in place even though the headers had escapes. */
    CU_ASSERT(m.body >= (const uint8_t *)rabbit_msg &&
              m.body < (const uint8_t *)rabbit_msg + sizeof rabbit_msg);
    usp_stomp_parser_cleanup(&p);

    char *s = every_split(B(rabbit_msg), NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "reply-to-dest=/queue/ctrl:oui:00256D:c1;"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "}cl[\\x0a\\x031.4\\x00\\x12\\x00\\x00\\x01]|HB1|"));
    free(s);
}

static void test_body_without_content_length(void)
{
    static const char in[] = "MESSAGE\ndestination:/q\nmessage-id:1\nsubscription:0\n\nhello\0"
                             "SEND\ndestination:/q\n\n\0";
    char *s = every_split(B(in), NULL);
    CU_ASSERT_STRING_EQUAL(
        s, "MESSAGE{destination=/q;message-id=1;subscription=0;}[hello]|SEND{destination=/q;}[]|");
    free(s);
    /* content-length:0 then the NUL; and content-length counting NULs. */
    static const char in2[] = "SEND\ncontent-length:0\n\n\0"
                              "SEND\ncontent-length:3\n\n\0\0\0\0";
    s = every_split(B(in2), NULL);
    CU_ASSERT_STRING_EQUAL(
        s, "SEND{content-length=0;}cl[]|SEND{content-length=3;}cl[\\x00\\x00\\x00]|");
    free(s);
}

static void test_error_and_receipt(void)
{
    static const char err[] = "ERROR\n"
                              "message:Bad CONNECT\n"
                              "content-type:text/plain\n"
                              "version:1.0,1.1,1.2\n"
                              "content-length:32\n"
                              "\n"
                              "Access refused for user 'guest'\n"
                              "\0";
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    struct usp_stomp_error e;
    struct usp_stomp_receipt r;
    char why[128];
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(parse_one(&p, B(err), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_error_view(&f, &e, why, sizeof why), 0);
    CU_ASSERT(str_is(e.message, "Bad CONNECT"));
    CU_ASSERT(str_is(e.content_type, "text/plain"));
    CU_ASSERT_PTR_NULL(e.receipt_id.p);
    CU_ASSERT_EQUAL(e.body_len, 32);
    CU_ASSERT_EQUAL(memcmp(e.body, "Access refused for user 'guest'\n", 32), 0);
    /* Other views refuse it. */
    CU_ASSERT_EQUAL(usp_stomp_receipt_view(&f, &r, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "not a RECEIPT frame");

    static const char rec[] = "RECEIPT\nreceipt-id:77\n\n\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(rec), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_receipt_view(&f, &r, why, sizeof why), 0);
    CU_ASSERT(str_is(r.receipt_id, "77"));
    static const char rec2[] = "RECEIPT\nreceipt:77\n\n\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(rec2), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_receipt_view(&f, &r, why, sizeof why), USP_EPROTO);
    CU_ASSERT_STRING_EQUAL(why, "RECEIPT frame has no receipt-id header");
    /* ERROR without message or body is still an ERROR. */
    static const char err2[] = "ERROR\n\n\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(err2), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_error_view(&f, &e, why, sizeof why), 0);
    CU_ASSERT_PTR_NULL(e.message.p);
    CU_ASSERT_EQUAL(e.body_len, 0);
    CU_ASSERT_PTR_NOT_NULL(e.body);
    usp_stomp_parser_cleanup(&p);
}

static void test_view_errors(void)
{
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    struct usp_stomp_message m;
    struct usp_stomp_connected c;
    char why[128];
    usp_stomp_parser_init(&p, NULL);
    static const char m1[] = "MESSAGE\ndestination:/q\nsubscription:0\n\n\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(m1), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_message_view(&f, &m, why, sizeof why), USP_EPROTO);
    CU_ASSERT_STRING_EQUAL(why, "MESSAGE frame has no message-id header");
    CU_ASSERT_EQUAL(usp_stomp_connected_view(&f, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "not a CONNECTED frame");
    CU_ASSERT_EQUAL(usp_stomp_connected_view(NULL, &c, why, sizeof why), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(why, "no frame");
    CU_ASSERT_PTR_NULL(usp_stomp_header(NULL, "destination").p);
    CU_ASSERT_PTR_NULL(usp_stomp_header(&f, NULL).p);
    static const char c1[] = "CONNECTED\nversion:1.1\n\n\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(c1), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_connected_view(&f, &c, why, sizeof why), USP_EPROTO);
    CU_ASSERT_STRING_EQUAL(why, "CONNECTED frame has version '1.1'; only 1.2 was offered");
    static const char c2[] = "CONNECTED\nserver:x\n\n\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(c2), &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_connected_view(&f, &c, why, sizeof why), USP_EPROTO);
    CU_ASSERT_STRING_EQUAL(why, "CONNECTED frame has no version header");
    static const char *const bad_hb[] = {"10000", "10000,", ",5",  "1,2,3",        " 1,2",
                                         "1, 2",  "-1,2",   "a,b", "4294967296,0", ""};
    for (size_t i = 0; i < sizeof bad_hb / sizeof bad_hb[0]; i++) {
        char in[96];
        int n = snprintf(in, sizeof in, "CONNECTED\nversion:1.2\nheart-beat:%s\n\n", bad_hb[i]);
        in[n] = '\0';
        CU_ASSERT_EQUAL(parse_one(&p, (const uint8_t *)in, (size_t)n + 1, &f), 1);
        CU_ASSERT_EQUAL(usp_stomp_connected_view(&f, &c, why, sizeof why), USP_EPROTO);
        CU_ASSERT_STRING_EQUAL(why, "CONNECTED frame has a heart-beat header that is not two "
                                    "numbers separated by a comma");
    }
    struct usp_stomp_str hb = {"4294967295,0", 12};
    uint32_t x = 1, y = 1;
    CU_ASSERT_EQUAL(usp_stomp_heart_beat_parse(hb, &x, &y), 0);
    CU_ASSERT_EQUAL(x, UINT32_MAX);
    CU_ASSERT_EQUAL(y, 0);
    usp_stomp_parser_cleanup(&p);
}

/* ---- Escapes, repeated headers, heart-beats ------------------------------ */

static void test_escapes_decoded(void)
{
    /* Every escape, in a name and in a value; a raw ':' in a value. */
    static const char in[] = "MESSAGE\n"
                             "a\\cb\\\\c\\r\\nd:\\r\\n\\c\\\\x\n"
                             "time:12:30:00\n"
                             "\n\0";
    char *s = every_split(B(in), NULL);
    CU_ASSERT_STRING_EQUAL(s, "MESSAGE{a:b\\x5cc\\x0d\\x0ad=\\x0d\\x0a:\\x5cx;time=12:30:00;}[]|");
    free(s);

    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(parse_one(&p, B(in), &f), 1);
    CU_ASSERT_EQUAL(f.hdr[0].name.len, 8);
    CU_ASSERT_EQUAL(memcmp(f.hdr[0].name.p, "a:b\\c\r\nd", 8), 0);
    CU_ASSERT_EQUAL(f.hdr[0].value.len, 5);
    CU_ASSERT_EQUAL(memcmp(f.hdr[0].value.p, "\r\n:\\x", 5), 0);
    /* The input is left alone: decoding happens in the parser's copy. */
    CU_ASSERT_EQUAL(memcmp(in + 8, "a\\cb", 4), 0);
    CU_ASSERT(usp_stomp_parser_mem(&p) > 0);
    usp_stomp_parser_cleanup(&p);
}

static void test_repeated_headers(void)
{
    static const char in[] = "MESSAGE\nfoo:World\nfoo:Hello\n"
                             "content-length:3\ncontent-length:5\n\nabc\0";
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(parse_one(&p, B(in), &f), 1);
    CU_ASSERT_EQUAL(f.nhdr, 4);
    CU_ASSERT(str_is(usp_stomp_header(&f, "foo"), "World"));
    CU_ASSERT(str_is(f.hdr[1].value, "Hello"));
    /* The first content-length frames the body; the second is history. */
    CU_ASSERT(str_is(usp_stomp_header(&f, "content-length"), "3"));
    CU_ASSERT_EQUAL(f.body_len, 3);
    CU_ASSERT_PTR_NULL(usp_stomp_header(&f, "bar").p);
    CU_ASSERT_PTR_NULL(usp_stomp_header(&f, "fo").p);
    /* A later content-length is not read at all, garbage or not. */
    static const char in2[] = "SEND\ncontent-length:2\ncontent-length:x\n\nab\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(in2), &f), 1);
    CU_ASSERT_EQUAL(f.body_len, 2);
    /* Names are case-sensitive: Content-Length is not content-length. */
    static const char in3[] = "SEND\nContent-Length:1\n\nab\0";
    CU_ASSERT_EQUAL(parse_one(&p, B(in3), &f), 1);
    CU_ASSERT(!f.has_content_length);
    CU_ASSERT_EQUAL(f.body_len, 2);
    usp_stomp_parser_cleanup(&p);
}

static void test_heartbeats(void)
{
    char *s = every_split(B("\n"), NULL);
    CU_ASSERT_STRING_EQUAL(s, "HB1|");
    free(s);
    s = every_split(B("\r\n\n\r\n\n"), NULL);
    CU_ASSERT_STRING_EQUAL(s, "HB4|");
    free(s);
    s = every_split(B("\n\nRECEIPT\nreceipt-id:1\n\n\0\r\n\nRECEIPT\nreceipt-id:2\n\n\0"), NULL);
    CU_ASSERT_STRING_EQUAL(s, "HB2|RECEIPT{receipt-id=1;}[]|HB2|RECEIPT{receipt-id=2;}[]|");
    free(s);

    /* Heart-beats before a bad byte are reported before the error, in any
     * split. */
    s = every_split(B("\n\r\n\r\r"), NULL);
    CU_ASSERT_STRING_EQUAL(s, "HB2|ERR-4:STOMP stream after frame 0: CR followed by 0x0d, not LF");
    free(s);
    s = every_split(B("\n\0"), NULL);
    CU_ASSERT_STRING_EQUAL(s, "HB1|ERR-4:STOMP stream after frame 0: NUL byte between frames");
    free(s);

    /* A run in one read is one event; a CR waits for its LF. */
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    size_t used;
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\n\r\n\nSEND"), &used, &f), 1);
    CU_ASSERT_EQUAL(f.cmd, USP_STOMP_HEARTBEAT);
    CU_ASSERT_EQUAL(f.eols, 3);
    CU_ASSERT_EQUAL(f.wire_len, 4);
    CU_ASSERT_EQUAL(used, 4);
    usp_stomp_parser_reset(&p);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\r"), &used, &f), 0);
    CU_ASSERT_EQUAL(used, 1);
    CU_ASSERT(usp_stomp_parser_in_frame(&p));
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\n"), NULL, &f), 1); /* `used` may be NULL */
    CU_ASSERT_EQUAL(f.eols, 1);
    CU_ASSERT(!usp_stomp_parser_in_frame(&p));
    CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), 0);
    usp_stomp_parser_cleanup(&p);
}

/* ---- Splits and merges --------------------------------------------------- */

static void test_every_split_of_a_session(void)
{
    /* What an agent receives in a session: heart-beats, CONNECTED, a
     * MESSAGE with escapes and a binary body, one without content-length,
     * a RECEIPT, an ERROR; CRLF and LF mixed. */
    static const char in[] = "\n"
                             "CONNECTED\r\nversion:1.2\r\nheart-beat:5000,5000\r\n\r\n\0\n"
                             "\r\n"
                             "MESSAGE\nsubscription:0\nmessage-id:m\\c1\ndestination:/q/a\n"
                             "reply-to-dest:/q/c\\\\1\ncontent-length:5\n\n\0\x01\0\x02\0\0"
                             "MESSAGE\nsubscription:0\nmessage-id:2\ndestination:/q/a\n\nxy\0"
                             "\n\n"
                             "RECEIPT\nreceipt-id:bye\n\n\0"
                             "ERROR\nmessage:gone\n\nbye\n\0\n";
    char *s = every_split(B(in), NULL);
    CU_ASSERT_STRING_EQUAL(s, "HB1|CONNECTED{version=1.2;heart-beat=5000,5000;}[]|HB2|"
                              "MESSAGE{subscription=0;message-id=m:1;destination=/q/a;"
                              "reply-to-dest=/q/c\\x5c1;content-length=5;}cl[\\x00\\x01\\x00"
                              "\\x02\\x00]|"
                              "MESSAGE{subscription=0;message-id=2;destination=/q/a;}[xy]|HB2|"
                              "RECEIPT{receipt-id=bye;}[]|ERROR{message=gone;}[bye\\x0a]|HB1|");
    free(s);
}

static void test_merged_frames_in_place(void)
{
    /* 200 SEND frames in one read: all handed out without copying. */
    size_t cap = 200 * 160, n = 0;
    uint8_t *in = malloc(cap);
    for (int i = 0; i < 200; i++) {
        size_t len;
        char body[8];
        int bl = snprintf(body, sizeof body, "r%d", i);
        struct usp_stomp_send s = {"/queue/c", "/queue/a", NULL, NULL};
        CU_ASSERT_EQUAL(
            usp_stomp_encode_send(&s, (const uint8_t *)body, (size_t)bl, in + n, cap - n, &len), 0);
        n += len;
    }
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    usp_stomp_parser_init(&p, NULL);
    size_t off = 0, used;
    int count = 0, rc;
    while (off < n && (rc = usp_stomp_parse(&p, in + off, n - off, &used, &f)) == 1) {
        char body[8];
        int bl = snprintf(body, sizeof body, "r%d", count);
        CU_ASSERT_EQUAL(f.cmd, USP_STOMP_SEND);
        CU_ASSERT_EQUAL(f.body_len, (size_t)bl);
        CU_ASSERT_EQUAL(memcmp(f.body, body, (size_t)bl), 0);
        CU_ASSERT(f.body > in + off && f.body < in + off + used);
        CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), 0);
        off += used;
        count++;
    }
    CU_ASSERT_EQUAL(count, 200);
    CU_ASSERT_EQUAL(off, n);
    usp_stomp_parser_cleanup(&p);
    free(in);
}

static void test_buffer_lifetime(void)
{
    /* A frame that spans reads is copied; with content-length the buffer
     * is allocated once at the frame's size, and freed on the next call. */
    uint8_t body[3000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 7);
    uint8_t in[3200];
    size_t n;
    struct usp_stomp_send s = {"/queue/c", "/queue/a", NULL, NULL};
    CU_ASSERT_EQUAL(usp_stomp_encode_send(&s, body, sizeof body, in, sizeof in, &n), 0);
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    size_t used;
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, in, 150, &used, &f), 0);
    CU_ASSERT_EQUAL(used, 150);
    CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), n);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, in + 150, n - 150, &used, &f), 1);
    CU_ASSERT_EQUAL(used, n - 150);
    CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), n);
    CU_ASSERT_EQUAL(f.body_len, sizeof body);
    CU_ASSERT_EQUAL(memcmp(f.body, body, sizeof body), 0);
    CU_ASSERT(f.body < in || f.body >= in + sizeof in);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\n"), &used, &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), 0);
    usp_stomp_parser_cleanup(&p);

    /* keep_buffer keeps a small buffer for the next frame. */
    struct usp_stomp_limits lim;
    usp_stomp_limits_init(&lim);
    lim.keep_buffer = 4096;
    usp_stomp_parser_init(&p, &lim);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, in, 10, &used, &f), 0);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, in + 10, n - 10, &used, &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\n"), &used, &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), n);
    usp_stomp_parser_cleanup(&p);
    CU_ASSERT_EQUAL(usp_stomp_parser_mem(&p), 0);
}

/* ---- Limits and malformed input ------------------------------------------- */

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
    BAD("\r\r", USP_EPROTO, "STOMP stream after frame 0: CR followed by 0x0d, not LF"),
    BAD("\rX", USP_EPROTO, "STOMP stream after frame 0: CR followed by 'X', not LF"),
    BAD("\0", USP_EPROTO, "STOMP stream after frame 0: NUL byte between frames"),
    BAD("RECEIPT\nreceipt-id:1\n\n\0\0", USP_EPROTO,
        "STOMP stream after frame 1: NUL byte between frames"),
    BAD("HELLO\n\n\0", USP_EPROTO, "STOMP frame 1, byte 0: unknown command \"HELLO\""),
    BAD("send\n\n\0", USP_EPROTO, "STOMP frame 1, byte 0: unknown command \"send\""),
    BAD("GET / HTTP/1.1\r\n", USP_EPROTO,
        "STOMP frame 1, byte 0: unknown command \"GET / HTTP/...\""),
    BAD("SEN\x01\n\n\0", USP_EPROTO, "STOMP frame 1, byte 0: unknown command \"SEN\\x01\""),
    BAD("SEND\rX", USP_EPROTO, "STOMP frame 1, byte 5: CR followed by 'X', not LF"),
    BAD("SE\0ND", USP_EPROTO, "STOMP frame 1, byte 2: NUL byte in the command or headers"),
    BAD("SEND\nfoo\n\n\0", USP_EPROTO, "STOMP frame 1, byte 8 (header 1): header line has no ':'"),
    BAD("SEND\nfoo\r\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 9 (header 1): header line has no ':'"),
    BAD("SEND\nfo\ro:1\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 8 (header 1): CR followed by 'o', not LF"),
    BAD("SEND\na:1\n:b\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 9 (header 2): header name is empty"),
    BAD("SEND\na:1\rb\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 9 (header 1): CR followed by 'b', not LF"),
    BAD("SEND\na:1\n\rb", USP_EPROTO, "STOMP frame 1, byte 10: CR followed by 'b', not LF"),
    BAD("SEND\na:x\0y\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 8 (header 1): NUL byte in the command or headers"),
    BAD("SEND\na\0:x\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 6 (header 1): NUL byte in the command or headers"),
    BAD("SEND\na:x\\ty\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 8 (header 1): undefined escape sequence '\\t'"),
    BAD("SEND\na\\:x\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 6 (header 1): undefined escape sequence '\\:'"),
    BAD("SEND\na:x\\\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 8 (header 1): undefined escape sequence '\\' followed by 0x0a"),
    BAD("SEND\ncontent-length:\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 20 (header 1): content-length is not a decimal number"),
    BAD("SEND\ncontent-length: 1\n\nx\0", USP_EPROTO,
        "STOMP frame 1, byte 20 (header 1): content-length is not a decimal number"),
    BAD("SEND\ncontent-length:+1\n\nx\0", USP_EPROTO,
        "STOMP frame 1, byte 20 (header 1): content-length is not a decimal number"),
    BAD("SEND\ncontent-length:1x\n\nx\0", USP_EPROTO,
        "STOMP frame 1, byte 21 (header 1): content-length is not a decimal number"),
    BAD("SEND\ncontent-length:\\c\n\nx\0", USP_EPROTO,
        "STOMP frame 1, byte 20 (header 1): content-length is not a decimal number"),
    BAD("SEND\ncontent-length:99999999999999999999\n\n", USP_ERANGE,
        "STOMP frame 1, byte 26 (header 1): content-length makes the frame larger than "
        "4259840 bytes"),
    BAD("SEND\ncontent-length:4259826\n\n", USP_ERANGE,
        "STOMP frame 1, byte 29: content-length makes the frame larger than 4259840 bytes"),
    BAD("SEND\ncontent-length:2\n\nabc\0", USP_EPROTO,
        "STOMP frame 1, byte 25: no NUL after the 2 body bytes of content-length (got 'c')"),
    BAD("RECEIPT\nreceipt-id:1\n\nx\0", USP_EPROTO,
        "STOMP frame 1, byte 22: a RECEIPT frame must not have a body"),
    BAD("CONNECTED\nversion:1.2\ncontent-length:1\n\nx\0", USP_EPROTO,
        "STOMP frame 1, byte 40: a CONNECTED frame must not have a body"),
    BAD("SUBSCRIBE\nid:0\n\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 16: a SUBSCRIBE frame must not have a body"),
    BAD("SEND\na:\xc3\x28\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 7 (header 1): header is not valid UTF-8 (byte 0xc3)"),
    BAD("SEND\na:1\n\xc0\xaf:1\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 9 (header 2): header is not valid UTF-8 (byte 0xc0)"),
    BAD("SEND\na:\xed\xa0\x80\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 7 (header 1): header is not valid UTF-8 (byte 0xed)"),
    BAD("SEND\na:\xf4\x90\x80\x80\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 7 (header 1): header is not valid UTF-8 (byte 0xf4)"),
    BAD("SEND\na:\xe2\x82\n\n\0", USP_EPROTO,
        "STOMP frame 1, byte 7 (header 1): header is not valid UTF-8 (byte 0xe2)"),
};

static void test_malformed(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        char want[300];
        snprintf(want, sizeof want, "ERR%d:%s", bads[i].rc, bads[i].why);
        char *s = every_split((const uint8_t *)bads[i].in, bads[i].n, NULL);
        const char *err = strstr(s, "ERR");
        CU_ASSERT_PTR_NOT_NULL(err);
        if (!err || strcmp(err, want) != 0) {
            printf("\ncase %zu: got '%s'\n         want '%s'\n", i, s, want);
            CU_FAIL("wrong error");
        }
        free(s);
    }
    /* Valid UTF-8 of every length is fine, up to the edges. */
    char *s = whole(B("SEND\n\xc3\xa9t\xc3\xa9:\xe2\x82\xac \xf0\x9f\x98\x80\n\n\0"));
    CU_ASSERT_STRING_EQUAL(s,
                           "SEND{\\xc3\\xa9t\\xc3\\xa9=\\xe2\\x82\\xac \\xf0\\x9f\\x98\\x80;}[]|");
    free(s);
    s = whole(B("SEND\na:\xe0\xa0\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf\xc2\x80\n\n\0"));
    CU_ASSERT_STRING_EQUAL(
        s, "SEND{a=\\xe0\\xa0\\x80\\xed\\x9f\\xbf\\xf4\\x8f\\xbf\\xbf\\xc2\\x80;}[]|");
    free(s);
    static const char *const not_utf8[] = {"\xe0\x9f\xbf",     "\xe2\x82\x28", "\xc1\xbf",
                                           "\xf5\x80\x80\x80", "\x80",         "\xf0\x8f\xbf\xbf",
                                           "\xf0\x9f\x98"};
    for (size_t i = 0; i < sizeof not_utf8 / sizeof not_utf8[0]; i++) {
        char in[32];
        int n = snprintf(in, sizeof in, "SEND\na:%s\n\n", not_utf8[i]);
        char want[128];
        snprintf(want, sizeof want,
                 "ERR-4:STOMP frame 1, byte 7 (header 1): header is not valid UTF-8 (byte 0x%02x)",
                 (uint8_t)not_utf8[i][0]);
        s = whole((const uint8_t *)in, (size_t)n + 1);
        CU_ASSERT_STRING_EQUAL(s, want);
        free(s);
    }
}

static void test_limits(void)
{
    struct usp_stomp_limits lim = {.max_frame = 64, .max_headers = 3, .max_line = 17};
    struct {
        const uint8_t *in;
        size_t n;
        const char *want;
    } cases[] = {
        {B("SEND\na:1\nb:2\nc:3\n\n\0"), "SEND{a=1;b=2;c=3;}[]|"},
        {B("SEND\na:1\nb:2\nc:3\nd:4\n\n\0"), "ERR-5:STOMP frame 1, byte 17: more than 3 headers"},
        {B("SEND\n0123456789abcdef:\n\n\0"), "SEND{0123456789abcdef=;}[]|"},
        {B("SEND\n0123456789abcdefg:\n\n\0"),
         "ERR-5:STOMP frame 1, byte 22 (header 1): header line longer than 17 bytes"},
        {B("SEND\nabc:0123456789\\c\\c\n\n\0"),
         "ERR-5:STOMP frame 1, byte 22 (header 1): header line longer than 17 bytes"},
        {B("SEND\nabc:0123456789\\c\\\n\n\0"),
         "ERR-5:STOMP frame 1, byte 22 (header 1): header line longer than 17 bytes"},
        {B("SEND\nabc:0123456789abcd\n\n\0"),
         "ERR-5:STOMP frame 1, byte 22 (header 1): header line longer than 17 bytes"},
        /* 64 bytes exactly, then one more */
        {B("SEND\n\n012345678901234567890123456789012345678901234567890123456\0"),
         "SEND{}[012345678901234567890123456789012345678901234567890123456]|"},
        {B("SEND\n\n0123456789012345678901234567890123456789012345678901234567\0"),
         "ERR-5:STOMP frame 1, byte 63: frame larger than 64 bytes"},
        {B("SEND\ncontent-length:39\n\n012345678901234567890123456789012345678\0"),
         "SEND{content-length=39;}cl[012345678901234567890123456789012345678]|"},
        /* refused as soon as the headers end, before the body arrives */
        {B("SEND\ncontent-length:40\n\n"),
         "ERR-5:STOMP frame 1, byte 24: content-length makes the frame larger than 64 bytes"},
        {B("SEND\ncontent-length:65\n"),
         "ERR-5:STOMP frame 1, byte 21 (header 1): content-length makes the frame larger "
         "than 64 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = every_split(cases[i].in, cases[i].n, &lim);
        if (strcmp(s, cases[i].want) != 0) {
            printf("\ncase %zu: got '%s'\n         want '%s'\n", i, s, cases[i].want);
            CU_FAIL("wrong result under limits");
        }
        free(s);
    }
    /* Headers alone can reach max_frame too. */
    struct usp_stomp_limits tiny = {.max_frame = 32};
    char *t = every_split(B("SEND\na:1\nabcdefghijklmnopqrstuvwxyz:x\n\n\0"), &tiny);
    CU_ASSERT_STRING_EQUAL(t,
                           "ERR-5:STOMP frame 1, byte 31 (header 2): frame larger than 32 bytes");
    free(t);
    /* Below 2 (LF NUL) no frame fits: 2 is the floor. */
    struct usp_stomp_limits one = {.max_frame = 1};
    t = every_split(B("\nXY"), &one);
    CU_ASSERT_STRING_EQUAL(t, "HB1|ERR-5:STOMP frame 1, byte 1: frame larger than 2 bytes");
    free(t);

    /* The cap on headers is USP_STOMP_HEADERS_CAP whatever is asked. */
    struct usp_stomp_limits big = {.max_headers = 1000};
    char in[2048];
    size_t n = (size_t)snprintf(in, sizeof in, "SEND\n");
    for (int i = 0; i <= USP_STOMP_HEADERS_CAP; i++)
        n += (size_t)snprintf(in + n, sizeof in - n, "h%d:v\n", i);
    n += (size_t)snprintf(in + n, sizeof in - n, "\n");
    in[n++] = '\0';
    char *s = parse_log((const uint8_t *)in, n, 0, 0, &big);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "ERR-5:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "more than 64 headers"));
    free(s);
}

static void test_sticky_error_and_reset(void)
{
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    size_t used = 99;
    char why[128];
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(usp_stomp_parser_why(&p, why, sizeof why), 0);
    CU_ASSERT_STRING_EQUAL(why, "");
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("SEND\nx\n"), &used, &f), USP_EPROTO);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\n"), &used, &f), USP_EPROTO);
    CU_ASSERT_EQUAL(used, 0);
    size_t n = usp_stomp_parser_why(&p, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(why, "STOMP frame 1, byte 6 (header 1): header line has no ':'");
    CU_ASSERT_EQUAL(n, strlen(why));
    /* Truncated to the buffer, length still the full one. */
    char small[10];
    CU_ASSERT_EQUAL(usp_stomp_parser_why(&p, small, sizeof small), n);
    CU_ASSERT_STRING_EQUAL(small, "STOMP fra");
    usp_stomp_parser_reset(&p);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, B("\n"), &used, &f), 1);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, NULL, 0, &used, &f), 0);
    CU_ASSERT_EQUAL(usp_stomp_parse(&p, NULL, 1, &used, &f), USP_EINVAL);
    usp_stomp_parser_cleanup(&p);
}

/* ---- Encoders ------------------------------------------------------------ */

static void check_bytes(int rc, const uint8_t *buf, size_t len, const char *want, size_t n)
{
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(len, n);
    if (len != n || memcmp(buf, want, n) != 0) {
        struct log l = {0};
        log_bytes(&l, buf, len);
        printf("\ngot: %s\n", l.s ? l.s : "");
        free(l.s);
        CU_FAIL("wrong bytes");
    }
}
/* `expr` is run first: it sets `len`. */
#define CHECK_BYTES(expr, buf, len, lit)                                                           \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        check_bytes(rc_, buf, len, lit, sizeof(lit) - 1);                                          \
    } while (0)

static void test_encode_connect(void)
{
    uint8_t buf[512];
    size_t len;
    struct usp_stomp_connect c = {
        .host = "vhost-a",
        .login = "agent",
        .passcode = "pa:ss\\w",
        .endpoint_id = "os::00256D-0123456789",
        .heartbeat = true,
        .cx = 10000,
        .cy = 20000,
    };
    CHECK_BYTES(usp_stomp_encode_connect(&c, buf, sizeof buf, &len), buf, len,
                "STOMP\n"
                "accept-version:1.2\n"
                "host:vhost-a\n"
                "login:agent\n"
                "passcode:pa\\css\\\\w\n"
                "heart-beat:10000,20000\n"
                "endpoint-id:os\\c\\c00256D-0123456789\n"
                "\n\0");
    /* Parsed back, the endpoint-id is the Endpoint ID again. */
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    usp_stomp_parser_init(&p, NULL);
    CU_ASSERT_EQUAL(parse_one(&p, buf, len, &f), 1);
    CU_ASSERT_EQUAL(f.cmd, USP_STOMP_STOMP);
    CU_ASSERT(str_is(usp_stomp_header(&f, "endpoint-id"), "os::00256D-0123456789"));
    CU_ASSERT(str_is(usp_stomp_header(&f, "passcode"), "pa:ss\\w"));
    usp_stomp_parser_cleanup(&p);

    /* Client certificates, no heart-beats [R-STOMP.3, R-STOMP.9]. */
    struct usp_stomp_connect c2 = {.host = "/", .endpoint_id = "self::ctrl"};
    CHECK_BYTES(usp_stomp_encode_connect(&c2, buf, sizeof buf, &len), buf, len,
                "STOMP\naccept-version:1.2\nhost:/\nendpoint-id:self\\c\\cctrl\n\n\0");
    struct usp_stomp_connect c3 = {.endpoint_id = "doc::a", .heartbeat = true};
    CHECK_BYTES(usp_stomp_encode_connect(&c3, buf, sizeof buf, &len), buf, len,
                "STOMP\naccept-version:1.2\nheart-beat:0,0\nendpoint-id:doc\\c\\ca\n\n\0");
    /* The endpoint-id is required. */
    struct usp_stomp_connect c4 = {.host = "h"};
    CU_ASSERT_EQUAL(usp_stomp_encode_connect(&c4, buf, sizeof buf, &len), USP_EINVAL);
    c4.endpoint_id = "";
    CU_ASSERT_EQUAL(usp_stomp_encode_connect(&c4, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_stomp_encode_connect(NULL, buf, sizeof buf, &len), USP_EINVAL);
    /* Measuring, and a buffer one byte short. */
    CU_ASSERT_EQUAL(usp_stomp_encode_connect(&c, NULL, 0, &len), USP_ERANGE);
    CU_ASSERT_EQUAL(len, 130);
    CU_ASSERT_EQUAL(usp_stomp_encode_connect(&c, buf, 129, &len), USP_ERANGE);
    CU_ASSERT_EQUAL(len, 130);
    CU_ASSERT_EQUAL(usp_stomp_encode_connect(&c, buf, 130, &len), 0);
}

static void test_encode_client_frames(void)
{
    uint8_t buf[512];
    size_t len;
    CHECK_BYTES(usp_stomp_encode_subscribe("sub-0", "/queue/agent:1", buf, sizeof buf, &len), buf,
                len, "SUBSCRIBE\nid:sub-0\ndestination:/queue/agent\\c1\nack:auto\n\n\0");
    CU_ASSERT_EQUAL(usp_stomp_encode_subscribe("", "/q", buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_stomp_encode_subscribe("0", NULL, buf, sizeof buf, &len), USP_EINVAL);
    CHECK_BYTES(usp_stomp_encode_unsubscribe("sub-0", buf, sizeof buf, &len), buf, len,
                "UNSUBSCRIBE\nid:sub-0\n\n\0");
    CU_ASSERT_EQUAL(usp_stomp_encode_unsubscribe("", buf, sizeof buf, &len), USP_EINVAL);
    CHECK_BYTES(usp_stomp_encode_disconnect("77", buf, sizeof buf, &len), buf, len,
                "DISCONNECT\nreceipt:77\n\n\0");
    CHECK_BYTES(usp_stomp_encode_disconnect(NULL, buf, sizeof buf, &len), buf, len,
                "DISCONNECT\n\n\0");
    CHECK_BYTES(usp_stomp_encode(USP_STOMP_HEARTBEAT, NULL, 0, NULL, 0, buf, sizeof buf, &len), buf,
                len, "\n");

    static const uint8_t rec[] = {0x0a, 0x03, 0x31, 0x2e, 0x34, 0x00, 0x12, 0x00};
    struct usp_stomp_send s = {.destination = "/queue/controller-1",
                               .reply_to_dest = "/queue/agent:oui:00256D"};
    CHECK_BYTES(usp_stomp_encode_send(&s, rec, sizeof rec, buf, sizeof buf, &len), buf, len,
                "SEND\n"
                "destination:/queue/controller-1\n"
                "content-type:application/vnd.bbf.usp.msg\n"
                "content-length:8\n"
                "reply-to-dest:/queue/agent\\coui\\c00256D\n"
                "\n"
                "\x0a\x03\x31\x2e\x34\x00\x12\x00\0");
    /* The head alone, then body and NUL, make the same bytes. */
    uint8_t head[256];
    size_t hl;
    CU_ASSERT_EQUAL(usp_stomp_encode_send_head(&s, sizeof rec, head, sizeof head, &hl), 0);
    CU_ASSERT_EQUAL(hl + sizeof rec + 1, len);
    CU_ASSERT_EQUAL(memcmp(head, buf, hl), 0);
    CU_ASSERT_EQUAL(memcmp(buf + hl, rec, sizeof rec), 0);
    CU_ASSERT_EQUAL(buf[len - 1], 0);
    /* A receipt and another content type. */
    s.receipt = "r1";
    s.content_type = "application/octet-stream";
    CHECK_BYTES(usp_stomp_encode_send(&s, (const uint8_t *)"x", 1, buf, sizeof buf, &len), buf, len,
                "SEND\ndestination:/queue/controller-1\ncontent-type:application/octet-stream\n"
                "content-length:1\nreply-to-dest:/queue/agent\\coui\\c00256D\nreceipt:r1\n\nx\0");
    /* reply-to-dest is required [R-STOMP.21]. */
    s.reply_to_dest = NULL;
    CU_ASSERT_EQUAL(usp_stomp_encode_send(&s, rec, sizeof rec, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_stomp_encode_send_head(&s, 1, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_stomp_encode_send(NULL, rec, sizeof rec, buf, sizeof buf, &len),
                    USP_EINVAL);
}

static void test_encode_refuses(void)
{
    uint8_t buf[256];
    size_t len = 99;
    struct usp_stomp_header h[2];
#define H(i, n, v) (h[i] = (struct usp_stomp_header){{n, sizeof(n) - 1}, {v, sizeof(v) - 1}})
    /* CONNECT and CONNECTED cannot carry CR, LF, or ':' in a name. */
    H(0, "host", "a\nb");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_CONNECT, h, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    CU_ASSERT_EQUAL(len, 0);
    H(0, "host", "a\rb");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_CONNECTED, h, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "a:b", "x");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_CONNECT, h, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    /* ... but colons and backslashes in values go as they are. */
    H(0, "session", "ID:x\\1");
    CHECK_BYTES(usp_stomp_encode(USP_STOMP_CONNECTED, h, 1, NULL, 0, buf, sizeof buf, &len), buf,
                len, "CONNECTED\nsession:ID:x\\1\n\n\0");
    /* Everything is escaped in the other frames. */
    H(0, "a:b\\", "\r\n:\\");
    CHECK_BYTES(usp_stomp_encode(USP_STOMP_MESSAGE, h, 1, NULL, 0, buf, sizeof buf, &len), buf, len,
                "MESSAGE\na\\cb\\\\:\\r\\n\\c\\\\\n\n\0");
    /* Empty names, NULs, bad UTF-8. */
    H(0, "", "x");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "a", "x\0y");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "a", "\xff");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    /* A body with a NUL needs content-length, which must be right. */
    static const uint8_t body[] = {'a', 0, 'b'};
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, NULL, 0, body, 3, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "content-length", "2");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, body, 3, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "content-length", "3x");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, body, 3, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "content-length", "");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, body, 3, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "content-length", "4");
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, h, 1, body, 3, buf, sizeof buf, &len),
                    USP_EINVAL);
    H(0, "content-length", "003");
    CHECK_BYTES(usp_stomp_encode(USP_STOMP_SEND, h, 1, body, 3, buf, sizeof buf, &len), buf, len,
                "SEND\ncontent-length:003\n\na\0b\0");
    /* A body only where one is allowed. */
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_RECEIPT, NULL, 0, body, 1, buf, sizeof buf, &len),
                    USP_EINVAL);
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, NULL, 0, NULL, 1, buf, sizeof buf, &len),
                    USP_EINVAL);
    /* Commands out of range; headers without an array. */
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_CMD_COUNT, NULL, 0, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    CU_ASSERT_EQUAL(usp_stomp_encode(USP_STOMP_SEND, NULL, 1, NULL, 0, buf, sizeof buf, &len),
                    USP_EINVAL);
    CU_ASSERT_EQUAL(
        usp_stomp_encode_head(USP_STOMP_HEARTBEAT, NULL, 0, 0, false, buf, sizeof buf, &len),
        USP_EINVAL);
#undef H
}

static void test_round_trip_every_command(void)
{
    static const char val[] = "v:a\\b\r\nc é";
    for (int c = USP_STOMP_CONNECT; c < USP_STOMP_CMD_COUNT; c++) {
        enum usp_stomp_cmd cmd = (enum usp_stomp_cmd)c;
        bool esc = usp_stomp_cmd_escapes(cmd);
        struct usp_stomp_header h[4] = {
            {{"x-name", 6}, {val, esc ? sizeof val - 1 : 5}},
            {{"x-name", 6}, {"second", 6}},
            {{"empty", 5}, {"", 0}},
            {{"content-length", 14}, {"4", 1}},
        };
        static const uint8_t body[4] = {0, 1, 0, 2};
        bool has_body = usp_stomp_cmd_has_body(cmd);
        uint8_t buf[512];
        size_t len;
        CU_ASSERT_EQUAL(usp_stomp_encode(cmd, h, has_body ? 4 : 3, has_body ? body : NULL,
                                         has_body ? 4 : 0, buf, sizeof buf, &len),
                        0);
        struct usp_stomp_parser p;
        struct usp_stomp_frame f;
        usp_stomp_parser_init(&p, NULL);
        CU_ASSERT_EQUAL(parse_one(&p, buf, len, &f), 1);
        CU_ASSERT_EQUAL(f.cmd, cmd);
        CU_ASSERT_EQUAL(f.nhdr, has_body ? 4 : 3);
        for (size_t i = 0; i < f.nhdr; i++) {
            CU_ASSERT_EQUAL(f.hdr[i].name.len, h[i].name.len);
            CU_ASSERT_EQUAL(memcmp(f.hdr[i].name.p, h[i].name.p, h[i].name.len), 0);
            CU_ASSERT_EQUAL(f.hdr[i].value.len, h[i].value.len);
            CU_ASSERT(h[i].value.len == 0 ||
                      memcmp(f.hdr[i].value.p, h[i].value.p, h[i].value.len) == 0);
        }
        CU_ASSERT_EQUAL(f.body_len, has_body ? 4 : 0);
        CU_ASSERT(!has_body || memcmp(f.body, body, 4) == 0);
        CU_ASSERT(str_is(usp_stomp_header(&f, "x-name"), esc ? val : "v:a\\b"));
        usp_stomp_parser_cleanup(&p);
    }
}

/* ---- Names and heart-beats ----------------------------------------------- */

static void test_cmd_names(void)
{
    CU_ASSERT_STRING_EQUAL(usp_stomp_cmd_name(USP_STOMP_MESSAGE), "MESSAGE");
    CU_ASSERT_STRING_EQUAL(usp_stomp_cmd_name(USP_STOMP_HEARTBEAT), "heart-beat");
    CU_ASSERT_PTR_NULL(usp_stomp_cmd_name(USP_STOMP_CMD_COUNT));
    CU_ASSERT_PTR_NULL(usp_stomp_cmd_name((enum usp_stomp_cmd) - 1));
    /* Every command parses to itself. */
    for (int c = USP_STOMP_CONNECT; c < USP_STOMP_CMD_COUNT; c++) {
        char in[32];
        int n = snprintf(in, sizeof in, "%s\n\n", usp_stomp_cmd_name((enum usp_stomp_cmd)c));
        struct usp_stomp_parser p;
        struct usp_stomp_frame f;
        usp_stomp_parser_init(&p, NULL);
        CU_ASSERT_EQUAL(parse_one(&p, (const uint8_t *)in, (size_t)n + 1, &f), 1);
        CU_ASSERT_EQUAL((int)f.cmd, c);
        usp_stomp_parser_cleanup(&p);
    }
    CU_ASSERT(usp_stomp_cmd_has_body(USP_STOMP_SEND));
    CU_ASSERT(usp_stomp_cmd_has_body(USP_STOMP_ERROR));
    CU_ASSERT(!usp_stomp_cmd_has_body(USP_STOMP_STOMP));
    CU_ASSERT(usp_stomp_cmd_escapes(USP_STOMP_STOMP));
    CU_ASSERT(!usp_stomp_cmd_escapes(USP_STOMP_CONNECT));
    CU_ASSERT(!usp_stomp_cmd_escapes(USP_STOMP_CONNECTED));
}

static void test_heartbeat_negotiation(void)
{
    struct {
        uint32_t cx, cy, sx, sy;
        uint32_t send, expect, tx_idle, rx_timeout;
    } cases[] = {
        {0, 0, 0, 0, 0, 0, 0, 0},
        {10000, 10000, 0, 0, 0, 0, 0, 0}, /* server does none */
        {0, 0, 5000, 5000, 0, 0, 0, 0},   /* we do none */
        {10000, 0, 0, 30000, 30000, 0, 15000, 0},
        {10000, 20000, 5000, 5000, 10000, 20000, 5000, 40000},
        {1000, 1000, 4000, 3000, 3000, 4000, 1500, 8000},
        {3, 1, 1, 1, 3, 1, 2, 2},
        {UINT32_MAX, UINT32_MAX, 1, 1, UINT32_MAX, UINT32_MAX, 2147483648u, UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct usp_stomp_heartbeat hb;
        usp_stomp_heartbeat_negotiate(cases[i].cx, cases[i].cy, cases[i].sx, cases[i].sy, &hb);
        CU_ASSERT_EQUAL(hb.send_ms, cases[i].send);
        CU_ASSERT_EQUAL(hb.expect_ms, cases[i].expect);
        CU_ASSERT_EQUAL(hb.tx_idle_ms, cases[i].tx_idle);
        CU_ASSERT_EQUAL(hb.rx_timeout_ms, cases[i].rx_timeout);
    }
    /* RabbitMQ's whole seconds. */
    struct {
        uint32_t cx, cy, sx, sy;
    } rabbit[] = {
        {0, 0, 0, 0},
        {500, 500, 1000, 1000},
        {1500, 2500, 2000, 1000},
        {10000, 0, 0, 10000},
        {999, 1000, 1000, 1000},
        {1, 59999, 59000, 1000},
        {UINT32_MAX, 0, 0, 4294967000u},
    };
    for (size_t i = 0; i < sizeof rabbit / sizeof rabbit[0]; i++) {
        uint32_t sx, sy;
        usp_stomp_heartbeat_rabbitmq(rabbit[i].cx, rabbit[i].cy, &sx, &sy);
        CU_ASSERT_EQUAL(sx, rabbit[i].sx);
        CU_ASSERT_EQUAL(sy, rabbit[i].sy);
    }
    /* cx = 1500 against RabbitMQ: it wants 1000, the rule gives 1500, and
     * sending when idle for 750 ms keeps within its 2-3 s timeout. */
    uint32_t sx, sy;
    struct usp_stomp_heartbeat hb;
    usp_stomp_heartbeat_rabbitmq(1500, 1500, &sx, &sy);
    usp_stomp_heartbeat_negotiate(1500, 1500, sx, sy, &hb);
    CU_ASSERT_EQUAL(hb.send_ms, 1500);
    CU_ASSERT_EQUAL(hb.tx_idle_ms, 750);
    CU_ASSERT(hb.tx_idle_ms < 2 * sy);
}

void suite_stomp_frame(void)
{
    USP_SUITE("stomp_frame", USP_TEST(test_connected_rabbitmq), USP_TEST(test_connected_no_escapes),
              USP_TEST(test_message_rabbitmq), USP_TEST(test_body_without_content_length),
              USP_TEST(test_error_and_receipt), USP_TEST(test_view_errors),
              USP_TEST(test_escapes_decoded), USP_TEST(test_repeated_headers),
              USP_TEST(test_heartbeats), USP_TEST(test_every_split_of_a_session),
              USP_TEST(test_merged_frames_in_place), USP_TEST(test_buffer_lifetime),
              USP_TEST(test_malformed), USP_TEST(test_limits),
              USP_TEST(test_sticky_error_and_reset), USP_TEST(test_encode_connect),
              USP_TEST(test_encode_client_frames), USP_TEST(test_encode_refuses),
              USP_TEST(test_round_trip_every_command), USP_TEST(test_cmd_names),
              USP_TEST(test_heartbeat_negotiation));
}
