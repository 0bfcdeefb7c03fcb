/* libFuzzer target for the STOMP 1.2 frame parser and encoder.
 *
 * Input: byte 0 picks the limits (default, small, RabbitMQ-style escapes in
 * CONNECT/CONNECTED, a kept buffer), byte 1 seeds the read sizes, the rest
 * is the stream. Besides crashes and leaks it checks that:
 * - reading the stream in random pieces (each a fresh heap copy, freed right
 *   after use) gives exactly the frames, heart-beat EOLs and error of one
 *   read of the whole;
 * - every frame encodes (usp_stomp_encode, sized by a measuring call) and
 *   the encoding parses back, alone and whole, to the same frame;
 * - the views agree with the frame, errors come with a sentence, the buffer
 *   stays within max_frame and is gone between frames. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/stomp.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

/* A growable log of events, compared between the two ways of reading. */
struct log {
    uint8_t *b;
    size_t n, cap;
    uint64_t hb; /* EOLs not yet written: runs cut by reads merge */
};

static void put(struct log *l, const void *p, size_t n)
{
    if (l->n + n > l->cap) {
        l->cap = (l->n + n) * 2 + 64;
        l->b = realloc(l->b, l->cap);
        CHECK(l->b);
    }
    if (n)
        memcpy(l->b + l->n, p, n);
    l->n += n;
}

static void put_u64(struct log *l, uint64_t v)
{
    put(l, &v, sizeof v);
}

static void flush_hb(struct log *l)
{
    if (l->hb) {
        put(l, "H", 1);
        put_u64(l, l->hb);
    }
    l->hb = 0;
}

static void put_frame(struct log *l, const struct usp_stomp_frame *f)
{
    if (f->cmd == USP_STOMP_HEARTBEAT) {
        l->hb += f->eols;
        return;
    }
    flush_hb(l);
    put(l, "F", 1);
    put_u64(l, (uint64_t)f->cmd);
    put_u64(l, f->nhdr);
    for (size_t i = 0; i < f->nhdr; i++) {
        put_u64(l, f->hdr[i].name.len);
        put(l, f->hdr[i].name.p, f->hdr[i].name.len);
        put_u64(l, f->hdr[i].value.len);
        put(l, f->hdr[i].value.p, f->hdr[i].value.len);
    }
    put_u64(l, f->has_content_length);
    put_u64(l, f->wire_len);
    put_u64(l, f->body_len);
    put(l, f->body, f->body_len);
}

static bool same_str(struct usp_stomp_str a, struct usp_stomp_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool same_frame(const struct usp_stomp_frame *a, const struct usp_stomp_frame *b)
{
    if (a->cmd != b->cmd || a->nhdr != b->nhdr || a->body_len != b->body_len ||
        a->has_content_length != b->has_content_length)
        return false;
    for (size_t i = 0; i < a->nhdr; i++)
        if (!same_str(a->hdr[i].name, b->hdr[i].name) ||
            !same_str(a->hdr[i].value, b->hdr[i].value))
            return false;
    return a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0;
}

/* Limits roomy enough for any re-encoding of what the fuzzed limits let
 * through (escaping can double a header line). */
static const struct usp_stomp_limits roomy = {
    .max_frame = 1u << 30,
    .max_headers = USP_STOMP_HEADERS_CAP,
    .max_line = 1u << 30,
};

static void check_views(const struct usp_stomp_frame *f)
{
    char why[128];
    int rc;
    switch (f->cmd) {
    case USP_STOMP_CONNECTED: {
        struct usp_stomp_connected c;
        rc = usp_stomp_connected_view(f, &c, why, sizeof why);
        CHECK(rc == 0 || rc == USP_EPROTO);
        CHECK(memchr(why, 0, sizeof why));
        if (rc == 0) {
            CHECK(usp_stomp_str_eq(c.version, "1.2"));
            CHECK(same_str(c.subscribe_dest, usp_stomp_header(f, "subscribe-dest")));
            struct usp_stomp_heartbeat hb;
            usp_stomp_heartbeat_negotiate(10000, 10000, c.sx, c.sy, &hb);
            CHECK(hb.send_ms == 0 || hb.send_ms >= 10000);
            CHECK(hb.tx_idle_ms <= hb.send_ms && hb.rx_timeout_ms >= hb.expect_ms);
        } else {
            CHECK(why[0]);
        }
        break;
    }
    case USP_STOMP_MESSAGE: {
        struct usp_stomp_message m;
        rc = usp_stomp_message_view(f, &m, why, sizeof why);
        CHECK(rc == 0 || rc == USP_EPROTO);
        if (rc == 0) {
            CHECK(m.destination.p && m.message_id.p && m.subscription.p);
            CHECK(m.body == f->body && m.body_len == f->body_len);
        }
        break;
    }
    case USP_STOMP_ERROR: {
        struct usp_stomp_error e;
        CHECK(usp_stomp_error_view(f, &e, why, sizeof why) == 0);
        CHECK(e.body == f->body && e.body_len == f->body_len);
        break;
    }
    case USP_STOMP_RECEIPT: {
        struct usp_stomp_receipt r;
        rc = usp_stomp_receipt_view(f, &r, why, sizeof why);
        CHECK(rc == (usp_stomp_header(f, "receipt-id").p ? 0 : USP_EPROTO));
        break;
    }
    default:
        break;
    }
}

/* Encodes a parsed frame and parses it back. */
static void round_trip(const struct usp_stomp_frame *f, bool unescape_connect)
{
    size_t need = 0, len = 0;
    int rc = usp_stomp_encode(f->cmd, f->hdr, f->nhdr, f->body, f->body_len, NULL, 0, &need);
    if (rc == USP_EINVAL) {
        /* Decoded escapes can put CR, LF or a ':' in a name where
         * CONNECT/CONNECTED cannot carry them; nothing else may fail. */
        CHECK(unescape_connect && (f->cmd == USP_STOMP_CONNECT || f->cmd == USP_STOMP_CONNECTED));
        return;
    }
    CHECK(rc == USP_ERANGE && need > 0);
    uint8_t *buf = malloc(need);
    CHECK(buf);
    CHECK(usp_stomp_encode(f->cmd, f->hdr, f->nhdr, f->body, f->body_len, buf, need, &len) == 0);
    CHECK(len == need);
    CHECK(buf[len - 1] == 0);

    struct usp_stomp_parser p;
    struct usp_stomp_frame g;
    size_t used = 0;
    usp_stomp_parser_init(&p, &roomy);
    CHECK(usp_stomp_parse(&p, buf, len, &used, &g) == 1);
    CHECK(used == len && g.wire_len == len);
    CHECK(same_frame(f, &g));
    CHECK(!usp_stomp_parser_in_frame(&p));
    usp_stomp_parser_cleanup(&p);

    /* The head alone plus body and NUL is the same encoding. */
    bool nul = f->body_len && memchr(f->body, 0, f->body_len);
    size_t hl = 0;
    CHECK(usp_stomp_encode_head(f->cmd, f->hdr, f->nhdr, f->body_len, nul, buf, len, &hl) == 0);
    CHECK(hl + f->body_len + 1 == len);
    free(buf);
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Parses `in` in reads of random sizes (or one read when seed is 0) and
 * logs every event; round trips when asked. Returns the final result. */
static int run(const struct usp_stomp_limits *lim, const uint8_t *in, size_t n, uint32_t seed,
               bool check, struct log *l, char *why, size_t whylen)
{
    struct usp_stomp_parser p;
    struct usp_stomp_frame f;
    int rc = 0;
    usp_stomp_parser_init(&p, lim);
    size_t off = 0;
    while (off < n && rc >= 0) {
        size_t k = n - off;
        if (seed) {
            uint32_t r = rnd(&seed);
            size_t want = r & 0x100 ? 1 + (r & 7) : 1 + (r & 0x1ff);
            k = want < k ? want : k;
        }
        uint8_t *c = malloc(k);
        CHECK(c);
        memcpy(c, in + off, k);
        size_t pos = 0, used = 0;
        while (pos < k && (rc = usp_stomp_parse(&p, c + pos, k - pos, &used, &f)) == 1) {
            CHECK(used > 0 && used <= k - pos);
            pos += used;
            CHECK(usp_stomp_parser_mem(&p) <=
                  (lim->max_frame > lim->keep_buffer ? lim->max_frame : lim->keep_buffer));
            if (f.cmd == USP_STOMP_HEARTBEAT) {
                CHECK(f.eols > 0 && f.nhdr == 0 && !f.body);
            } else {
                CHECK(f.body && f.nhdr <= USP_STOMP_HEADERS_CAP);
                CHECK(f.wire_len > f.body_len);
                if (check) {
                    check_views(&f);
                    round_trip(&f, lim->unescape_connect);
                }
            }
            put_frame(l, &f);
        }
        if (rc == 0)
            CHECK(pos + used == k);
        free(c);
        off += k;
    }
    if (rc > 0)
        rc = 0; /* the last read ended with an event: nothing pending */
    flush_hb(l);
    size_t wl = usp_stomp_parser_why(&p, why, whylen);
    CHECK(memchr(why, 0, whylen));
    if (rc < 0) {
        CHECK(rc == USP_EPROTO || rc == USP_ERANGE || rc == USP_ENOMEM);
        CHECK(wl > 0 && why[0]);
        size_t used = 1;
        CHECK(usp_stomp_parse(&p, in, n, &used, &f) == rc && used == 0); /* sticky */
    } else {
        CHECK(wl == 0);
        /* Between frames, the next call lets go of the last frame's buffer. */
        size_t used = 1;
        CHECK(usp_stomp_parse(&p, NULL, 0, &used, &f) == 0 && used == 0);
        if (!usp_stomp_parser_in_frame(&p))
            CHECK(usp_stomp_parser_mem(&p) <= lim->keep_buffer);
    }
    put_u64(l, (uint64_t)(int64_t)rc);
    put_u64(l, usp_stomp_parser_in_frame(&p));
    usp_stomp_parser_cleanup(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct usp_stomp_limits lim;
    usp_stomp_limits_init(&lim);
    switch (data[0] & 3) {
    case 1: /* small: the limits are reached */
        lim.max_frame = 96 + (data[0] >> 2);
        lim.max_headers = 1 + (data[0] >> 5);
        lim.max_line = 8 + (data[0] >> 2);
        break;
    case 2:
        lim.unescape_connect = true;
        break;
    case 3:
        lim.keep_buffer = 256;
        break;
    }
    uint32_t seed = 0x9E3779B9u ^ data[1] ^ (uint32_t)size << 8;
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    struct log whole = {0}, pieces = {0};
    char why1[256], why2[256];
    int rc1 = run(&lim, in, n, 0, true, &whole, why1, sizeof why1);
    int rc2 = run(&lim, in, n, seed ? seed : 1, false, &pieces, why2, sizeof why2);
    CHECK(rc1 == rc2);
    CHECK(strcmp(why1, why2) == 0);
    CHECK(whole.n == pieces.n && memcmp(whole.b, pieces.b, whole.n) == 0);
    free(whole.b);
    free(pieces.b);
    return 0;
}
