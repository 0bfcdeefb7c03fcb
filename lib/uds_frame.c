/* Frames of the USP UNIX domain socket MTP (see usp/uds.h).
 *
 * The header is only 8 bytes, so the parser takes it a byte at a time
 * (rejecting bad sync bytes at once, so that a peer speaking another
 * protocol is told so after a byte or two), then knows the frame's exact
 * size: it either finds the whole frame in the caller's bytes and checks it
 * there, or allocates that size once and collects the rest. A frame is
 * checked completely before anything of it is handed out, so that a Record
 * is never acted on from a frame that turns out to be malformed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/uds.h"

enum {
    E_NONE,
    E_NOMEM,
    E_SYNC,
    E_TOO_LARGE,
    E_NO_TLV,
    E_TLV_HEADER,
    E_TLV_OVERRUN,
    E_EMPTY_EID,
    E_BAD_UTF8,
    E_NUL,
};

const char *usp_uds_type_name(unsigned type)
{
    switch (type) {
    case USP_UDS_HANDSHAKE:
        return "Handshake";
    case USP_UDS_ERROR:
        return "Error";
    case USP_UDS_RECORD:
        return "USP Record";
    }
    return NULL;
}

static uint32_t get_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put_be32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* Index of the first byte of s[0..n) that is not part of a well-formed
 * UTF-8 sequence (no overlong forms, surrogates or values above
 * U+10FFFF), or n when all of it is. */
static size_t utf8_bad(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        if (n - i <= k)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return i;
        i += k + 1;
    }
    return n;
}

/* Checks the value of a Handshake or Error TLV: E_NONE, or the error with
 * the offset of the offending byte in *bad. Other types carry anything. */
static int check_value(uint8_t type, const uint8_t *v, uint32_t n, uint32_t *bad)
{
    if (type != USP_UDS_HANDSHAKE && type != USP_UDS_ERROR)
        return E_NONE;
    *bad = 0;
    if (type == USP_UDS_HANDSHAKE && n == 0)
        return E_EMPTY_EID;
    const uint8_t *z = n ? memchr(v, 0, n) : NULL;
    if (z) {
        *bad = (uint32_t)(z - v);
        return E_NUL;
    }
    size_t b = utf8_bad(v, n);
    if (b < n) {
        *bad = (uint32_t)b;
        return E_BAD_UTF8;
    }
    return E_NONE;
}

int usp_uds_tlv_next(const struct usp_uds_frame *f, size_t *off, struct usp_uds_tlv *t)
{
    if (!f || !off || !t || *off >= f->len || f->len - *off < USP_UDS_TLV_HEADER_LEN)
        return 0;
    const uint8_t *b = f->payload + *off;
    uint32_t n = get_be32(b + 1);
    if (n > f->len - *off - USP_UDS_TLV_HEADER_LEN)
        return 0; /* not a frame from the parser */
    t->type = b[0];
    t->len = n;
    t->value = b + USP_UDS_TLV_HEADER_LEN;
    *off += USP_UDS_TLV_HEADER_LEN + (size_t)n;
    return 1;
}

int usp_uds_tlv_find(const struct usp_uds_frame *f, uint8_t type, struct usp_uds_tlv *t)
{
    size_t off = 0;
    struct usp_uds_tlv x;
    while (usp_uds_tlv_next(f, &off, &x))
        if (x.type == type) {
            if (t)
                *t = x;
            return 1;
        }
    return 0;
}

/* ---- Parser -------------------------------------------------------------- */

static uint32_t max_frame(const struct usp_uds_parser *p)
{
    uint32_t m = p->lim && p->lim->max_frame ? p->lim->max_frame : USP_UDS_MAX_FRAME_DEFAULT;
    /* The count of bytes received, header included, must fit 32 bits. */
    return m > UINT32_MAX - USP_UDS_HEADER_LEN ? UINT32_MAX - USP_UDS_HEADER_LEN : m;
}

void usp_uds_parser_init(struct usp_uds_parser *p, const struct usp_uds_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->lim = lim;
}

void usp_uds_parser_cleanup(struct usp_uds_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    p->buf = NULL;
}

void usp_uds_parser_reset(struct usp_uds_parser *p)
{
    const struct usp_uds_limits *lim = p->lim;
    usp_uds_parser_cleanup(p);
    usp_uds_parser_init(p, lim);
}

size_t usp_uds_parser_mem(const struct usp_uds_parser *p)
{
    return p->buf ? p->len : 0;
}

bool usp_uds_parser_in_frame(const struct usp_uds_parser *p)
{
    return !p->err && p->have != 0;
}

static int fail(struct usp_uds_parser *p, uint8_t e, uint32_t a, uint32_t b, uint32_t c)
{
    p->err = e;
    p->err_a = a;
    p->err_b = b;
    p->err_c = c;
    switch (e) {
    case E_NOMEM:
        return USP_ENOMEM;
    case E_TOO_LARGE:
        return USP_ERANGE;
    default:
        return USP_EPROTO;
    }
}

/* The length field of a complete header. */
static int check_len(struct usp_uds_parser *p, uint32_t len)
{
    if (len > max_frame(p))
        return fail(p, E_TOO_LARGE, len, max_frame(p), 0);
    if (len < USP_UDS_TLV_HEADER_LEN)
        return fail(p, E_NO_TLV, len, 0, 0); /* one or more TLVs [R-UDS.6] */
    return 0;
}

/* Checks the TLVs of a complete frame and fills `f`. */
static int check_frame(struct usp_uds_parser *p, const uint8_t *pl, uint32_t len,
                       struct usp_uds_frame *f)
{
    uint32_t off = 0, ntlv = 0;
    while (off < len) {
        uint32_t left = len - off;
        if (left < USP_UDS_TLV_HEADER_LEN)
            return fail(p, E_TLV_HEADER, USP_UDS_HEADER_LEN + off, left, 0);
        uint8_t type = pl[off];
        uint32_t n = get_be32(pl + off + 1);
        left -= USP_UDS_TLV_HEADER_LEN;
        if (n > left) {
            p->err_type = type;
            return fail(p, E_TLV_OVERRUN, USP_UDS_HEADER_LEN + off, n, left);
        }
        uint32_t bad;
        int e = check_value(type, pl + off + USP_UDS_TLV_HEADER_LEN, n, &bad);
        if (e != E_NONE) {
            p->err_type = type;
            return fail(p, (uint8_t)e, USP_UDS_HEADER_LEN + off, bad,
                        n ? pl[off + USP_UDS_TLV_HEADER_LEN + bad] : 0);
        }
        off += USP_UDS_TLV_HEADER_LEN + n;
        ntlv++;
    }
    f->payload = pl;
    f->len = len;
    f->ntlv = ntlv;
    f->wire_len = (size_t)USP_UDS_HEADER_LEN + len;
    p->frames++;
    return 1;
}

int usp_uds_parse(struct usp_uds_parser *p, const uint8_t *data, size_t len, size_t *used,
                  struct usp_uds_frame *f)
{
    size_t dummy, i = 0;
    int rc;
    if (!used)
        used = &dummy;
    *used = 0;
    if (p->err)
        return fail(p, p->err, p->err_a, p->err_b, p->err_c);
    if (!data && len)
        return USP_EINVAL;
    if (p->delivered) {
        free(p->buf);
        p->buf = NULL;
        p->delivered = false;
    }

    if (p->have == 0 && len >= USP_UDS_HEADER_LEN && memcmp(data, USP_UDS_SYNC, 4) == 0) {
        /* A frame that starts here and may end here: checked in place. */
        uint32_t n = get_be32(data + 4);
        if ((rc = check_len(p, n)) < 0)
            return rc;
        if (len - USP_UDS_HEADER_LEN >= n) {
            rc = check_frame(p, data + USP_UDS_HEADER_LEN, n, f);
            if (rc > 0)
                *used = USP_UDS_HEADER_LEN + (size_t)n;
            return rc;
        }
    }

    while (p->have < USP_UDS_HEADER_LEN && i < len) {
        uint8_t c = data[i++];
        if (p->have < 4 && c != (uint8_t)USP_UDS_SYNC[p->have])
            return fail(p, E_SYNC, p->have, c, 0);
        p->hdr[p->have++] = c;
        if (p->have == USP_UDS_HEADER_LEN) {
            p->len = get_be32(p->hdr + 4);
            if ((rc = check_len(p, p->len)) < 0)
                return rc;
            if (!(p->buf = malloc(p->len)))
                return fail(p, E_NOMEM, 0, 0, 0);
        }
    }
    if (p->have < USP_UDS_HEADER_LEN) {
        *used = len;
        return 0;
    }
    size_t need = (size_t)USP_UDS_HEADER_LEN + p->len - p->have;
    size_t take = len - i < need ? len - i : need;
    if (take)
        memcpy(p->buf + (p->have - USP_UDS_HEADER_LEN), data + i, take);
    p->have += (uint32_t)take;
    i += take;
    *used = i;
    if (take < need)
        return 0;
    p->have = 0;
    p->delivered = true; /* also after an error: the buffer goes at reset */
    return check_frame(p, p->buf, p->len, f);
}

struct why {
    char *buf;
    size_t n, len;
};

__attribute__((format(printf, 2, 3))) static void say(struct why *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = w->len < w->n ? w->n - w->len : 0;
    int k = vsnprintf(room ? w->buf + w->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0)
        w->len += (size_t)k;
}

static const char *tlv_name(uint8_t type)
{
    const char *n = usp_uds_type_name(type);
    return n ? n : "unknown";
}

size_t usp_uds_parser_why(const struct usp_uds_parser *p, char *buf, size_t n)
{
    struct why w = {buf, n, 0};
    if (buf && n)
        buf[0] = '\0';
    if (!p->err)
        return 0;
    say(&w, "UDS frame %u: ", (unsigned)p->frames + 1);
    switch (p->err) {
    case E_NOMEM:
        say(&w, "out of memory");
        break;
    case E_SYNC:
        say(&w, "byte %u of the header is 0x%02x, not 0x%02x of the sync \"_USP\"",
            (unsigned)p->err_a, (unsigned)p->err_b, (unsigned)(uint8_t)USP_UDS_SYNC[p->err_a]);
        break;
    case E_TOO_LARGE:
        say(&w, "length %u exceeds the limit of %u bytes", (unsigned)p->err_a, (unsigned)p->err_b);
        break;
    case E_NO_TLV:
        say(&w, "length %u leaves no room for a TLV (a frame holds one or more)",
            (unsigned)p->err_a);
        break;
    case E_TLV_HEADER:
        say(&w, "%u bytes at byte %u are too few for a TLV header", (unsigned)p->err_b,
            (unsigned)p->err_a);
        break;
    case E_TLV_OVERRUN:
        say(&w, "TLV at byte %u (type %u) has length %u but only %u bytes remain in the frame",
            (unsigned)p->err_a, (unsigned)p->err_type, (unsigned)p->err_b, (unsigned)p->err_c);
        break;
    case E_EMPTY_EID:
        say(&w, "Handshake TLV at byte %u has an empty Endpoint ID", (unsigned)p->err_a);
        break;
    case E_BAD_UTF8:
        say(&w, "%s TLV at byte %u is not valid UTF-8 (byte %u of the value is 0x%02x)",
            tlv_name(p->err_type), (unsigned)p->err_a, (unsigned)p->err_b, (unsigned)p->err_c);
        break;
    case E_NUL:
        say(&w, "%s TLV at byte %u holds a NUL byte (byte %u of the value)", tlv_name(p->err_type),
            (unsigned)p->err_a, (unsigned)p->err_b);
        break;
    }
    return w.len;
}

/* ---- Encoders ------------------------------------------------------------ */

int usp_uds_encode_head(uint8_t type, size_t value_len,
                        uint8_t out[USP_UDS_HEADER_LEN + USP_UDS_TLV_HEADER_LEN])
{
    if (value_len > UINT32_MAX - USP_UDS_TLV_HEADER_LEN)
        return USP_ERANGE;
    memcpy(out, USP_UDS_SYNC, 4);
    put_be32(out + 4, (uint32_t)(value_len + USP_UDS_TLV_HEADER_LEN));
    out[8] = type;
    put_be32(out + 9, (uint32_t)value_len);
    return 0;
}

int usp_uds_encode(const struct usp_uds_tlv *tlv, size_t n, uint8_t *buf, size_t cap, size_t *len)
{
    uint64_t payload = 0;
    if (len)
        *len = 0;
    if (!tlv || !n)
        return USP_EINVAL;
    for (size_t i = 0; i < n; i++) {
        uint32_t bad;
        if (tlv[i].len && !tlv[i].value)
            return USP_EINVAL;
        if (check_value(tlv[i].type, tlv[i].value, tlv[i].len, &bad) != E_NONE)
            return USP_EINVAL;
        payload += USP_UDS_TLV_HEADER_LEN + (uint64_t)tlv[i].len;
        if (payload > UINT32_MAX)
            return USP_ERANGE;
    }
    size_t total = USP_UDS_HEADER_LEN + (size_t)payload;
    if (len)
        *len = total;
    if (!buf || cap < total)
        return USP_ERANGE;
    memcpy(buf, USP_UDS_SYNC, 4);
    put_be32(buf + 4, (uint32_t)payload);
    size_t o = USP_UDS_HEADER_LEN;
    for (size_t i = 0; i < n; i++) {
        buf[o] = tlv[i].type;
        put_be32(buf + o + 1, tlv[i].len);
        if (tlv[i].len)
            memcpy(buf + o + USP_UDS_TLV_HEADER_LEN, tlv[i].value, tlv[i].len);
        o += USP_UDS_TLV_HEADER_LEN + tlv[i].len;
    }
    return 0;
}

static int encode_one(uint8_t type, const uint8_t *v, size_t n, uint8_t *buf, size_t cap,
                      size_t *len)
{
    if (len)
        *len = 0;
    if (n > UINT32_MAX - USP_UDS_TLV_HEADER_LEN)
        return USP_ERANGE;
    struct usp_uds_tlv t = {type, (uint32_t)n, v};
    return usp_uds_encode(&t, 1, buf, cap, len);
}

int usp_uds_encode_handshake(const char *eid, uint8_t *buf, size_t cap, size_t *len)
{
    if (!eid) {
        if (len)
            *len = 0;
        return USP_EINVAL;
    }
    return encode_one(USP_UDS_HANDSHAKE, (const uint8_t *)eid, strlen(eid), buf, cap, len);
}

int usp_uds_encode_error(const char *text, uint8_t *buf, size_t cap, size_t *len)
{
    if (!text) {
        if (len)
            *len = 0;
        return USP_EINVAL;
    }
    return encode_one(USP_UDS_ERROR, (const uint8_t *)text, strlen(text), buf, cap, len);
}

int usp_uds_encode_record(const uint8_t *rec, size_t rec_len, uint8_t *buf, size_t cap, size_t *len)
{
    return encode_one(USP_UDS_RECORD, rec, rec_len, buf, cap, len);
}
