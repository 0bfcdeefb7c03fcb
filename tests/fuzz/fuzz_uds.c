/* libFuzzer target for the UNIX domain socket MTP frame parser and encoder.
 *
 * Input: byte 0 picks the limit (default, or small so that it is reached),
 * byte 1 seeds the read sizes, the rest is the stream. Besides crashes and
 * leaks it checks that:
 * - reading the stream in random pieces (each a fresh heap copy, freed right
 *   after use) gives exactly the frames and error of one read of the whole;
 * - every frame's TLVs encode (usp_uds_encode) to exactly the bytes the
 *   frame arrived as (the format leaves no choice), which parse back to the
 *   same TLVs; single Handshake/Error/Record TLVs do so through their own
 *   encoders and the 13-byte head too;
 * - errors come with a sentence that is itself a valid Error TLV text, and
 *   no memory is held between frames. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usp/errors.h"
#include "usp/uds.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

struct log {
    uint8_t *b;
    size_t n, cap;
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

/* The frame as it was on the wire: header, then the payload. */
static void put_frame(struct log *l, const struct usp_uds_frame *f)
{
    uint8_t h[8] = {'_', 'U', 'S', 'P'};
    for (int i = 0; i < 4; i++)
        h[4 + i] = (uint8_t)(f->len >> (24 - 8 * i));
    put(l, h, sizeof h);
    put(l, f->payload, f->len);
}

static void round_trip(const struct usp_uds_frame *f)
{
    struct usp_uds_tlv *t = malloc(sizeof *t * f->ntlv);
    CHECK(t);
    size_t off = 0, n = 0;
    while (usp_uds_tlv_next(f, &off, &t[n]))
        n++;
    CHECK(n == f->ntlv && n >= 1 && off == f->len);

    struct log wire = {0};
    put_frame(&wire, f);
    size_t need = 0, len = 0;
    CHECK(usp_uds_encode(t, n, NULL, 0, &need) == USP_ERANGE);
    CHECK(need == wire.n);
    uint8_t *buf = malloc(need);
    CHECK(buf);
    CHECK(usp_uds_encode(t, n, buf, need, &len) == 0 && len == need);
    CHECK(memcmp(buf, wire.b, len) == 0);

    if (n == 1) {
        uint8_t head[13];
        CHECK(usp_uds_encode_head(t[0].type, t[0].len, head) == 0);
        CHECK(memcmp(head, buf, sizeof head) == 0);
        int rc = 1;
        if (t[0].type == USP_UDS_RECORD) {
            rc = usp_uds_encode_record(t[0].value, t[0].len, buf, need, &len);
        } else if (t[0].type == USP_UDS_HANDSHAKE || t[0].type == USP_UDS_ERROR) {
            char *s = malloc((size_t)t[0].len + 1);
            CHECK(s);
            memcpy(s, t[0].value, t[0].len);
            s[t[0].len] = '\0';
            rc = t[0].type == USP_UDS_HANDSHAKE ? usp_uds_encode_handshake(s, buf, need, &len)
                                                : usp_uds_encode_error(s, buf, need, &len);
            free(s);
        }
        if (rc != 1)
            CHECK(rc == 0 && len == need && memcmp(buf, wire.b, len) == 0);
    }

    struct usp_uds_parser p;
    struct usp_uds_frame g;
    size_t used = 0;
    usp_uds_parser_init(&p, NULL);
    CHECK(usp_uds_parse(&p, buf, len, &used, &g) == 1 && used == len);
    CHECK(g.len == f->len && g.ntlv == f->ntlv && memcmp(g.payload, f->payload, f->len) == 0);
    usp_uds_parser_cleanup(&p);
    free(buf);
    free(wire.b);
    free(t);
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static int run(const struct usp_uds_limits *lim, const uint8_t *in, size_t n, uint32_t seed,
               bool check, struct log *l, char *why, size_t whylen)
{
    struct usp_uds_parser p;
    struct usp_uds_frame f;
    int rc = 0;
    usp_uds_parser_init(&p, lim);
    size_t off = 0;
    while (off < n && rc >= 0) {
        size_t k = n - off;
        if (seed) {
            uint32_t r = rnd(&seed);
            size_t want = r & 0x100 ? 1 + (r & 7) : 1 + (r & 0xff);
            k = want < k ? want : k;
        }
        uint8_t *c = malloc(k);
        CHECK(c);
        memcpy(c, in + off, k);
        size_t pos = 0, used = 0;
        while (pos < k && (rc = usp_uds_parse(&p, c + pos, k - pos, &used, &f)) == 1) {
            CHECK(used > 0 && used <= k - pos);
            pos += used;
            CHECK(f.ntlv >= 1 && f.len >= 5 && f.len <= lim->max_frame);
            CHECK(f.wire_len == (size_t)f.len + 8);
            CHECK(usp_uds_parser_mem(&p) <= f.len);
            if (check)
                round_trip(&f);
            put_frame(l, &f);
        }
        if (rc == 0)
            CHECK(pos + used == k);
        CHECK(usp_uds_parser_mem(&p) <= lim->max_frame);
        free(c);
        off += k;
    }
    if (rc > 0)
        rc = 0;
    size_t wl = usp_uds_parser_why(&p, why, whylen);
    CHECK(memchr(why, 0, whylen));
    if (rc < 0) {
        CHECK(rc == USP_EPROTO || rc == USP_ERANGE || rc == USP_ENOMEM);
        CHECK(wl > 0 && wl < whylen);
        uint8_t buf[512];
        size_t len;
        CHECK(usp_uds_encode_error(why, buf, sizeof buf, &len) == 0);
        size_t used = 1;
        CHECK(usp_uds_parse(&p, in, n, &used, &f) == rc && used == 0); /* sticky */
    } else {
        CHECK(wl == 0);
        size_t used = 1;
        CHECK(usp_uds_parse(&p, NULL, 0, &used, &f) == 0 && used == 0);
        if (!usp_uds_parser_in_frame(&p))
            CHECK(usp_uds_parser_mem(&p) == 0);
    }
    uint8_t tail[2] = {(uint8_t)-rc, usp_uds_parser_in_frame(&p)};
    put(l, tail, sizeof tail);
    usp_uds_parser_cleanup(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct usp_uds_limits lim = {USP_UDS_MAX_FRAME_DEFAULT};
    if (data[0] & 1)
        lim.max_frame = 5 + (data[0] >> 1);
    uint32_t seed = 0x9E3779B9u ^ data[1] ^ (uint32_t)size << 8;
    struct log whole = {0}, pieces = {0};
    char why1[256], why2[256];
    int rc1 = run(&lim, data + 2, size - 2, 0, true, &whole, why1, sizeof why1);
    int rc2 = run(&lim, data + 2, size - 2, seed ? seed : 1, false, &pieces, why2, sizeof why2);
    CHECK(rc1 == rc2);
    CHECK(strcmp(why1, why2) == 0);
    CHECK(whole.n == pieces.n && memcmp(whole.b, pieces.b, whole.n) == 0);
    free(whole.b);
    free(pieces.b);
    return 0;
}
