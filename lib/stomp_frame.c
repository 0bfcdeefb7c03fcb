/* STOMP 1.2 frame parser and encoders (see usp/stomp.h for the decisions
 * and the rules behind them).
 *
 * The parser is a byte-wise state machine over the command and header
 * lines, which are short, and works in bulk over bodies (memchr for the
 * NUL, or a plain count when content-length is known). It never looks back
 * while scanning: the command is matched from a small copy and the first
 * content-length is recognised and read as its bytes go by. So the same
 * code scans bytes straight from the caller's read and bytes appended to
 * the parser's buffer, and a frame that is complete inside one read is
 * handed out in place. Only once a frame is complete are its header lines
 * split and checked for UTF-8, and escapes decoded in place (into the
 * buffer: a frame with escapes that was not buffered gets its header block,
 * never its body, copied there first). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/stomp.h"

/* ---- Commands ------------------------------------------------------------ */

/* clang-format off */
static const char *const cmd_names[USP_STOMP_CMD_COUNT] = {
    [USP_STOMP_HEARTBEAT] = "heart-beat",   [USP_STOMP_CONNECT] = "CONNECT",
    [USP_STOMP_STOMP] = "STOMP",            [USP_STOMP_CONNECTED] = "CONNECTED",
    [USP_STOMP_SEND] = "SEND",              [USP_STOMP_SUBSCRIBE] = "SUBSCRIBE",
    [USP_STOMP_UNSUBSCRIBE] = "UNSUBSCRIBE", [USP_STOMP_ACK] = "ACK",
    [USP_STOMP_NACK] = "NACK",              [USP_STOMP_BEGIN] = "BEGIN",
    [USP_STOMP_COMMIT] = "COMMIT",          [USP_STOMP_ABORT] = "ABORT",
    [USP_STOMP_DISCONNECT] = "DISCONNECT",  [USP_STOMP_MESSAGE] = "MESSAGE",
    [USP_STOMP_RECEIPT] = "RECEIPT",        [USP_STOMP_ERROR] = "ERROR",
};
/* clang-format on */

const char *usp_stomp_cmd_name(enum usp_stomp_cmd cmd)
{
    return (unsigned)cmd < USP_STOMP_CMD_COUNT ? cmd_names[cmd] : NULL;
}

bool usp_stomp_cmd_has_body(enum usp_stomp_cmd cmd)
{
    return cmd == USP_STOMP_SEND || cmd == USP_STOMP_MESSAGE || cmd == USP_STOMP_ERROR;
}

bool usp_stomp_cmd_escapes(enum usp_stomp_cmd cmd)
{
    /* "All frames except the CONNECT and CONNECTED frames will also escape
     * any carriage return, line feed or colon" (STOMP 1.2, Value Encoding).
     * STOMP is its own command, not in that exception: a STOMP frame can
     * only reach a 1.2 server, and the 1.0 compatibility the exception is
     * for does not arise. TR-369 reads it the same way (note under
     * R-STOMP.4: the colons of the endpoint-id are escaped). */
    return cmd != USP_STOMP_CONNECT && cmd != USP_STOMP_CONNECTED;
}

/* ---- Small helpers ------------------------------------------------------- */

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

static bool esc_ok(uint8_t c)
{
    return c == 'r' || c == 'n' || c == 'c' || c == '\\';
}

/* Decodes the escapes of s[0..n) in place (already checked); new length. */
static size_t unescape(uint8_t *s, size_t n)
{
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        uint8_t c = s[r];
        if (c == '\\' && r + 1 < n) {
            c = s[++r];
            c = c == 'r' ? '\r' : c == 'n' ? '\n' : c == 'c' ? ':' : '\\';
        }
        s[w++] = c;
    }
    return w;
}

struct usp_stomp_str usp_stomp_header(const struct usp_stomp_frame *f, const char *name)
{
    struct usp_stomp_str none = {NULL, 0};
    if (!f || !name)
        return none;
    size_t n = strlen(name);
    for (size_t i = 0; i < f->nhdr; i++)
        if (f->hdr[i].name.len == n && memcmp(f->hdr[i].name.p, name, n) == 0)
            return f->hdr[i].value;
    return none;
}

bool usp_stomp_str_eq(struct usp_stomp_str s, const char *lit)
{
    return s.p && lit && strlen(lit) == s.len && memcmp(s.p, lit, s.len) == 0;
}

/* ---- Parser -------------------------------------------------------------- */

enum {
    ST_IDLE,      /* between frames */
    ST_IDLE_CR,   /* between frames, after a CR */
    ST_CMD,       /* command line */
    ST_CMD_CR,    /* command line, after a CR */
    ST_LINE,      /* start of a header line or of the blank line */
    ST_LINE_CR,   /* blank line, after a CR */
    ST_NAME,      /* header name */
    ST_NAME_ESC,  /* header name, after a backslash */
    ST_NAME_CR,   /* header name, after a CR */
    ST_VALUE,     /* header value */
    ST_VALUE_ESC, /* header value, after a backslash */
    ST_VALUE_CR,  /* header value, after a CR */
    ST_BODY_LEN,  /* body of known length */
    ST_BODY_NUL,  /* the NUL after a body of known length */
    ST_BODY_SCAN, /* body up to the first NUL */
};

enum {
    F_HAVE_CL = 1u << 0,   /* the first content-length has been read */
    F_IN_CL = 1u << 1,     /* reading the value of the first content-length */
    F_CL_DIGIT = 1u << 2,  /* ... and it has a digit */
    F_ESCAPING = 1u << 3,  /* escapes are decoded in this frame */
    F_ESCAPES = 1u << 4,   /* this frame has escapes */
    F_DELIVERED = 1u << 5, /* buf holds a frame handed out: drop it next call */
};

enum {
    E_NONE,
    E_NOMEM,
    E_BAD_EOL,
    E_NUL_BETWEEN,
    E_NUL_IN_HEAD,
    E_CMD_UNKNOWN,
    E_LINE_TOO_LONG,
    E_TOO_MANY_HEADERS,
    E_NO_COLON,
    E_EMPTY_NAME,
    E_BAD_ESCAPE,
    E_BAD_UTF8,
    E_BAD_CL,
    E_CL_TOO_LARGE,
    E_FRAME_TOO_LARGE,
    E_BODY_NOT_ALLOWED,
    E_NO_NUL,
};

#define CL_NAME     "content-length"
#define CL_NAME_LEN 14
#define CL_NONE     0xFF /* cl_match: this name is not content-length */

enum { SCAN_MORE, SCAN_DONE };

static const struct usp_stomp_limits default_limits = {
    .max_frame = USP_STOMP_MAX_FRAME_DEFAULT,
    .max_headers = USP_STOMP_MAX_HEADERS_DEFAULT,
    .max_line = USP_STOMP_MAX_LINE_DEFAULT,
};

void usp_stomp_limits_init(struct usp_stomp_limits *lim)
{
    *lim = default_limits;
}

/* The limits in force: zero fields take the defaults. */
static struct usp_stomp_limits limits(const struct usp_stomp_parser *p)
{
    struct usp_stomp_limits l = p->lim ? *p->lim : default_limits;
    if (!l.max_frame)
        l.max_frame = default_limits.max_frame;
    if (l.max_frame < 2)
        l.max_frame = 2; /* the smallest thing a frame ends with: LF NUL */
    if (!l.max_headers || l.max_headers > USP_STOMP_HEADERS_CAP)
        l.max_headers = USP_STOMP_HEADERS_CAP;
    if (!l.max_line)
        l.max_line = default_limits.max_line;
    return l;
}

void usp_stomp_parser_init(struct usp_stomp_parser *p, const struct usp_stomp_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->lim = lim;
    p->state = ST_IDLE;
}

void usp_stomp_parser_cleanup(struct usp_stomp_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = 0;
}

void usp_stomp_parser_reset(struct usp_stomp_parser *p)
{
    const struct usp_stomp_limits *lim = p->lim;
    usp_stomp_parser_cleanup(p);
    usp_stomp_parser_init(p, lim);
}

size_t usp_stomp_parser_mem(const struct usp_stomp_parser *p)
{
    return p->cap;
}

bool usp_stomp_parser_in_frame(const struct usp_stomp_parser *p)
{
    return !p->err && p->state != ST_IDLE;
}

static int err_rc(uint8_t e)
{
    switch (e) {
    case E_NOMEM:
        return USP_ENOMEM;
    case E_LINE_TOO_LONG:
    case E_TOO_MANY_HEADERS:
    case E_CL_TOO_LARGE:
    case E_FRAME_TOO_LARGE:
        return USP_ERANGE;
    default:
        return USP_EPROTO;
    }
}

static int fail(struct usp_stomp_parser *p, uint8_t e, uint32_t off, uint8_t byte)
{
    p->err = e;
    p->err_off = off;
    p->err_byte = byte;
    return err_rc(e);
}

/* Makes room for `need` bytes in the buffer; `exact` when no more will
 * follow, otherwise the buffer grows geometrically (up to max_frame). */
static int reserve(struct usp_stomp_parser *p, size_t need, bool exact, uint32_t max_frame)
{
    if (need <= p->cap)
        return 0;
    size_t cap = need;
    if (!exact) {
        cap = (size_t)p->cap * 2;
        if (cap < 256)
            cap = 256;
        if (cap > max_frame)
            cap = max_frame;
        if (cap < need)
            cap = need;
    }
    uint8_t *b = realloc(p->buf, cap);
    if (!b)
        return fail(p, E_NOMEM, p->pos, 0);
    p->buf = b;
    p->cap = (uint32_t)cap;
    return 0;
}

/* Appends bytes of the current frame to the buffer. */
static int append(struct usp_stomp_parser *p, const uint8_t *s, size_t n,
                  const struct usp_stomp_limits *l)
{
    size_t need = (size_t)p->len + n;
    if ((p->flags & F_HAVE_CL) && p->state >= ST_BODY_LEN) {
        /* The frame's size is known: allocate it once. */
        size_t total = (size_t)p->hdr_len + p->clen + 1;
        if (reserve(p, need > total ? need : total, true, l->max_frame) < 0)
            return USP_ENOMEM;
    } else if (reserve(p, need, false, l->max_frame) < 0) {
        return USP_ENOMEM;
    }
    if (n)
        memcpy(p->buf + p->len, s, n);
    p->len = (uint32_t)need;
    return 0;
}

/* The buffer of a frame already handed out is dropped, and freed unless
 * it is small enough to keep. */
static void release(struct usp_stomp_parser *p, const struct usp_stomp_limits *l)
{
    p->flags &= (uint8_t)~F_DELIVERED;
    p->len = 0;
    if (p->cap > l->keep_buffer) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
}

static void frame_start(struct usp_stomp_parser *p)
{
    p->state = ST_CMD;
    p->pos = p->line = p->hdr_len = p->left = p->clen = 0;
    p->nhdr = 0;
    p->cmd = USP_STOMP_HEARTBEAT;
    p->cmd_len = 0;
    p->cl_match = 0;
    p->flags = 0;
}

static int end_cmd(struct usp_stomp_parser *p, const struct usp_stomp_limits *l)
{
    for (int c = USP_STOMP_CONNECT; c < USP_STOMP_CMD_COUNT; c++) {
        size_t n = strlen(cmd_names[c]);
        if (n == p->cmd_len && memcmp(cmd_names[c], p->cmd_buf, n) == 0) {
            p->cmd = (uint8_t)c;
            if (usp_stomp_cmd_escapes((enum usp_stomp_cmd)c) || l->unescape_connect)
                p->flags |= F_ESCAPING;
            p->state = ST_LINE;
            return 0;
        }
    }
    return fail(p, E_CMD_UNKNOWN, 0, 0);
}

static int end_line(struct usp_stomp_parser *p, uint32_t off)
{
    if (p->flags & F_IN_CL) {
        if (!(p->flags & F_CL_DIGIT))
            return fail(p, E_BAD_CL, off, 0);
        p->flags = (uint8_t)((p->flags & ~F_IN_CL) | F_HAVE_CL);
    }
    p->state = ST_LINE;
    return 0;
}

static int end_headers(struct usp_stomp_parser *p, uint32_t off, const struct usp_stomp_limits *l)
{
    p->hdr_len = off + 1;
    if (!(p->flags & F_HAVE_CL)) {
        p->state = ST_BODY_SCAN;
        return 0;
    }
    if (p->clen && !usp_stomp_cmd_has_body((enum usp_stomp_cmd)p->cmd))
        return fail(p, E_BODY_NOT_ALLOWED, p->hdr_len, 0);
    if ((uint64_t)p->hdr_len + p->clen + 1 > l->max_frame)
        return fail(p, E_CL_TOO_LARGE, p->hdr_len, 0);
    p->left = p->clen;
    p->state = p->clen ? ST_BODY_LEN : ST_BODY_NUL;
    return 0;
}

/* One byte of a header name, up to and including its colon. */
static int name_byte(struct usp_stomp_parser *p, uint8_t c, uint32_t off,
                     const struct usp_stomp_limits *l)
{
    if (++p->line > l->max_line)
        return fail(p, E_LINE_TOO_LONG, off, c);
    if (c == ':') {
        if (p->line == 1)
            return fail(p, E_EMPTY_NAME, off, c);
        if (p->cl_match == CL_NAME_LEN && !(p->flags & F_HAVE_CL)) {
            p->flags = (uint8_t)((p->flags | F_IN_CL) & ~F_CL_DIGIT);
            p->clen = 0;
        }
        p->state = ST_VALUE;
    } else if (c == '\n') {
        return fail(p, E_NO_COLON, off, c);
    } else if (c == '\r') {
        p->state = ST_NAME_CR;
    } else if (c == 0) {
        return fail(p, E_NUL_IN_HEAD, off, c);
    } else if (c == '\\' && (p->flags & F_ESCAPING)) {
        p->state = ST_NAME_ESC;
        p->cl_match = CL_NONE; /* "content-length" has no escapes */
    } else if (p->cl_match < CL_NAME_LEN && CL_NAME[p->cl_match] == c) {
        p->cl_match++;
    } else {
        p->cl_match = CL_NONE;
    }
    return 0;
}

/* Scans d[0..n) as the continuation of the current frame. SCAN_DONE with
 * *k the bytes up to and including the frame's NUL, SCAN_MORE with all of
 * them consumed, or an error. */
static int scan(struct usp_stomp_parser *p, const uint8_t *d, size_t n, size_t *k,
                const struct usp_stomp_limits *l)
{
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        uint8_t c = d[i];
        switch (p->state) {
        case ST_BODY_LEN: {
            size_t take = n - i < p->left ? n - i : p->left;
            i += take;
            p->pos += (uint32_t)take;
            p->left -= (uint32_t)take;
            if (!p->left)
                p->state = ST_BODY_NUL;
            continue;
        }
        case ST_BODY_NUL:
            if (c != 0)
                return fail(p, E_NO_NUL, p->pos, c);
            p->pos++;
            *k = i + 1;
            return SCAN_DONE;
        case ST_BODY_SCAN: {
            if (!usp_stomp_cmd_has_body((enum usp_stomp_cmd)p->cmd)) {
                if (c != 0)
                    return fail(p, E_BODY_NOT_ALLOWED, p->pos, c);
                p->pos++;
                *k = i + 1;
                return SCAN_DONE;
            }
            const uint8_t *z = memchr(d + i, 0, n - i);
            size_t take = z ? (size_t)(z - (d + i)) : n - i;
            if ((uint64_t)p->pos + take + 1 > l->max_frame)
                return fail(p, E_FRAME_TOO_LARGE, l->max_frame - 1, 0);
            i += take;
            p->pos += (uint32_t)take;
            if (!z)
                continue;
            p->pos++;
            *k = i + 1;
            return SCAN_DONE;
        }
        default:
            break;
        }

        /* The command and headers, a byte at a time. This byte and at
         * least a NUL after it must fit. */
        uint32_t off = p->pos;
        if ((uint64_t)off + 2 > l->max_frame)
            return fail(p, E_FRAME_TOO_LARGE, off, c);
        p->pos++;
        i++;
        switch (p->state) {
        case ST_CMD:
            if (c == '\n') {
                rc = end_cmd(p, l);
            } else if (c == '\r') {
                p->state = ST_CMD_CR;
            } else if (c == 0) {
                rc = fail(p, E_NUL_IN_HEAD, off, c);
            } else if (p->cmd_len == sizeof p->cmd_buf) {
                rc = fail(p, E_CMD_UNKNOWN, 0, 0); /* longer than any command */
            } else {
                p->cmd_buf[p->cmd_len++] = (char)c;
            }
            break;
        case ST_CMD_CR:
            rc = c == '\n' ? end_cmd(p, l) : fail(p, E_BAD_EOL, off, c);
            break;
        case ST_LINE:
            if (c == '\n') {
                rc = end_headers(p, off, l);
                break;
            }
            if (c == '\r') {
                p->state = ST_LINE_CR;
                break;
            }
            if (p->nhdr >= l->max_headers) {
                rc = fail(p, E_TOO_MANY_HEADERS, off, c);
                break;
            }
            p->nhdr++;
            p->line = 0;
            p->cl_match = 0;
            p->state = ST_NAME;
            rc = name_byte(p, c, off, l); /* c is the name's first byte */
            break;
        case ST_NAME:
            rc = name_byte(p, c, off, l);
            break;
        case ST_NAME_CR:
            rc = fail(p, c == '\n' ? E_NO_COLON : E_BAD_EOL, off, c);
            break;
        case ST_NAME_ESC:
        case ST_VALUE_ESC:
            if (++p->line > l->max_line) {
                rc = fail(p, E_LINE_TOO_LONG, off, c);
            } else if (!esc_ok(c)) {
                rc = fail(p, E_BAD_ESCAPE, off - 1, c);
            } else {
                p->flags |= F_ESCAPES;
                p->state = p->state == ST_NAME_ESC ? ST_NAME : ST_VALUE;
            }
            break;
        case ST_VALUE:
            if (c == '\n') {
                rc = end_line(p, off);
            } else if (c == '\r') {
                p->state = ST_VALUE_CR;
            } else if (++p->line > l->max_line) {
                rc = fail(p, E_LINE_TOO_LONG, off, c);
            } else if (c == 0) {
                rc = fail(p, E_NUL_IN_HEAD, off, c);
            } else if (p->flags & F_IN_CL) {
                if (c < '0' || c > '9') {
                    rc = fail(p, E_BAD_CL, off, c);
                    break;
                }
                uint64_t v = (uint64_t)p->clen * 10 + (uint64_t)(c - '0');
                if (v > l->max_frame) {
                    rc = fail(p, E_CL_TOO_LARGE, off, c);
                    break;
                }
                p->clen = (uint32_t)v;
                p->flags |= F_CL_DIGIT;
            } else if (c == '\\' && (p->flags & F_ESCAPING)) {
                p->state = ST_VALUE_ESC;
            }
            break;
        case ST_VALUE_CR:
            rc = c == '\n' ? end_line(p, off) : fail(p, E_BAD_EOL, off, c);
            break;
        case ST_LINE_CR:
            rc = c == '\n' ? end_headers(p, off, l) : fail(p, E_BAD_EOL, off, c);
            break;
        }
        if (rc < 0)
            return rc;
    }
    *k = n;
    return SCAN_MORE;
}

/* Fills `f` from the complete frame at base[0..pos). `in_buf`: base is the
 * parser's buffer (writable). */
static int deliver(struct usp_stomp_parser *p, const uint8_t *base, bool in_buf,
                   struct usp_stomp_frame *f, const struct usp_stomp_limits *l)
{
    const uint8_t *hb = base;
    uint8_t *w = NULL;
    bool decode = (p->flags & (F_ESCAPING | F_ESCAPES)) == (F_ESCAPING | F_ESCAPES);
    if (decode) {
        if (!in_buf) {
            /* Escapes are decoded in place: copy the header block (never
             * the body) to the buffer, which is empty here. */
            if (reserve(p, p->hdr_len, true, l->max_frame) < 0)
                return USP_ENOMEM;
            memcpy(p->buf, base, p->hdr_len);
            p->len = p->hdr_len;
        }
        w = p->buf;
        hb = w;
    }

    const uint8_t *nl = memchr(hb, '\n', p->hdr_len);
    size_t o = (size_t)(nl - hb) + 1; /* past the command line */
    for (uint16_t h = 0; h < p->nhdr; h++) {
        nl = memchr(hb + o, '\n', p->hdr_len - o);
        size_t eol = (size_t)(nl - hb);
        size_t end = eol > o && hb[eol - 1] == '\r' ? eol - 1 : eol;
        size_t bad = utf8_bad(hb + o, end - o);
        if (bad < end - o) {
            p->nhdr = (uint16_t)(h + 1);
            return fail(p, E_BAD_UTF8, (uint32_t)(o + bad), hb[o + bad]);
        }
        const uint8_t *colon = memchr(hb + o, ':', end - o);
        size_t c = (size_t)(colon - hb);
        size_t nlen = c - o, vlen = end - c - 1;
        if (decode) {
            nlen = unescape(w + o, nlen);
            vlen = unescape(w + c + 1, vlen);
        }
        f->hdr[h].name.p = (const char *)hb + o;
        f->hdr[h].name.len = nlen;
        f->hdr[h].value.p = (const char *)hb + c + 1;
        f->hdr[h].value.len = vlen;
        o = eol + 1;
    }
    f->cmd = (enum usp_stomp_cmd)p->cmd;
    f->eols = 0;
    f->nhdr = p->nhdr;
    f->body = base + p->hdr_len;
    f->body_len = (p->flags & F_HAVE_CL) ? p->clen : p->pos - 1 - p->hdr_len;
    f->has_content_length = (p->flags & F_HAVE_CL) != 0;
    f->wire_len = p->pos;
    if (in_buf || decode)
        p->flags |= F_DELIVERED;
    p->frames++;
    p->state = ST_IDLE;
    return 1;
}

int usp_stomp_parse(struct usp_stomp_parser *p, const uint8_t *data, size_t len, size_t *used,
                    struct usp_stomp_frame *f)
{
    size_t dummy, i = 0, k = 0;
    if (!used)
        used = &dummy;
    *used = 0;
    if (p->err)
        return err_rc(p->err);
    if (!data && len)
        return USP_EINVAL;
    const struct usp_stomp_limits l = limits(p);
    if (p->flags & F_DELIVERED)
        release(p, &l);
    if (!len)
        return 0;

    if (p->state == ST_IDLE || p->state == ST_IDLE_CR) {
        uint32_t eols = 0;
        while (i < len) {
            uint8_t c = data[i];
            /* A bad byte after heart-beats: report them first, so that
             * the events do not depend on how the stream was cut. */
            if (p->state == ST_IDLE_CR) {
                if (c != '\n') {
                    if (eols)
                        break;
                    return fail(p, E_BAD_EOL, 0, c);
                }
                p->state = ST_IDLE;
            } else if (c == '\r') {
                p->state = ST_IDLE_CR;
                i++;
                continue;
            } else if (c == 0) {
                if (eols)
                    break;
                return fail(p, E_NUL_BETWEEN, 0, c);
            } else if (c != '\n') {
                break;
            }
            if (eols < UINT32_MAX)
                eols++;
            i++;
        }
        if (eols) {
            memset(f, 0, offsetof(struct usp_stomp_frame, hdr));
            f->cmd = USP_STOMP_HEARTBEAT;
            f->eols = eols;
            f->body = NULL;
            f->body_len = 0;
            f->has_content_length = false;
            f->wire_len = i;
            *used = i;
            return 1;
        }
        if (i == len) {
            *used = len;
            return 0;
        }
        frame_start(p);
    }

    int rc;
    if (p->len == 0) {
        /* The frame starts in this read: hand it out in place if it ends
         * here too, else keep what there is of it. */
        const uint8_t *base = data + i;
        rc = scan(p, base, len - i, &k, &l);
        if (rc < 0)
            return rc;
        if (rc == SCAN_DONE) {
            *used = i + k;
            return deliver(p, base, false, f, &l);
        }
        if (append(p, base, len - i, &l) < 0)
            return USP_ENOMEM;
        *used = len;
        return 0;
    }
    rc = scan(p, data + i, len - i, &k, &l);
    if (rc < 0)
        return rc;
    if (append(p, data + i, k, &l) < 0)
        return USP_ENOMEM;
    *used = i + k;
    if (rc == SCAN_DONE)
        return deliver(p, p->buf, true, f, &l);
    return 0;
}

/* Appends printf output to a why buffer, tracking the length wanted. */
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

static void say_byte(struct why *w, uint8_t c)
{
    if (c >= 0x21 && c < 0x7F)
        say(w, "'%c'", c);
    else
        say(w, "0x%02x", c);
}

size_t usp_stomp_parser_why(const struct usp_stomp_parser *p, char *buf, size_t n)
{
    struct why w = {buf, n, 0};
    if (buf && n)
        buf[0] = '\0';
    if (!p->err)
        return 0;
    const struct usp_stomp_limits l = limits(p);
    bool between = p->state == ST_IDLE || p->state == ST_IDLE_CR;
    if (p->err == E_NOMEM) {
        say(&w, "STOMP parser: out of memory");
    } else if (between) {
        say(&w, "STOMP stream after frame %u: ", (unsigned)p->frames);
    } else {
        say(&w, "STOMP frame %u, byte %u", (unsigned)p->frames + 1, (unsigned)p->err_off);
        bool in_header = p->nhdr && p->state >= ST_NAME && p->state <= ST_VALUE_CR;
        if (in_header || p->err == E_BAD_UTF8)
            say(&w, " (header %u)", (unsigned)p->nhdr);
        say(&w, ": ");
    }
    switch (p->err) {
    case E_BAD_EOL:
        say(&w, "CR followed by ");
        say_byte(&w, p->err_byte);
        say(&w, ", not LF");
        break;
    case E_NUL_BETWEEN:
        say(&w, "NUL byte between frames");
        break;
    case E_NUL_IN_HEAD:
        say(&w, "NUL byte in the command or headers");
        break;
    case E_CMD_UNKNOWN:
        say(&w, "unknown command \"");
        for (size_t i = 0; i < p->cmd_len; i++) {
            uint8_t c = (uint8_t)p->cmd_buf[i];
            if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
                say(&w, "%c", c);
            else
                say(&w, "\\x%02x", c);
        }
        say(&w, p->cmd_len == sizeof p->cmd_buf ? "...\"" : "\"");
        break;
    case E_LINE_TOO_LONG:
        say(&w, "header line longer than %u bytes", (unsigned)l.max_line);
        break;
    case E_TOO_MANY_HEADERS:
        say(&w, "more than %u headers", (unsigned)l.max_headers);
        break;
    case E_NO_COLON:
        say(&w, "header line has no ':'");
        break;
    case E_EMPTY_NAME:
        say(&w, "header name is empty");
        break;
    case E_BAD_ESCAPE:
        say(&w, "undefined escape sequence '\\");
        if (p->err_byte >= 0x21 && p->err_byte < 0x7F)
            say(&w, "%c'", p->err_byte);
        else
            say(&w, "' followed by 0x%02x", p->err_byte);
        break;
    case E_BAD_UTF8:
        say(&w, "header is not valid UTF-8 (byte 0x%02x)", p->err_byte);
        break;
    case E_BAD_CL:
        say(&w, "content-length is not a decimal number");
        break;
    case E_CL_TOO_LARGE:
        say(&w, "content-length makes the frame larger than %u bytes", (unsigned)l.max_frame);
        break;
    case E_FRAME_TOO_LARGE:
        say(&w, "frame larger than %u bytes", (unsigned)l.max_frame);
        break;
    case E_BODY_NOT_ALLOWED:
        say(&w, "a %s frame must not have a body", cmd_names[p->cmd]);
        break;
    case E_NO_NUL:
        say(&w, "no NUL after the %u body bytes of content-length (got ", (unsigned)p->clen);
        say_byte(&w, p->err_byte);
        say(&w, ")");
        break;
    }
    return w.len;
}

/* ---- Received frames, by kind -------------------------------------------- */

static int view_fail(char *why, size_t whylen, int rc, const char *fmt, const char *arg)
{
    if (why && whylen)
        snprintf(why, whylen, fmt, arg);
    return rc;
}

static int view_start(const struct usp_stomp_frame *f, enum usp_stomp_cmd cmd, void *out,
                      size_t size, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!f || !out)
        return view_fail(why, whylen, USP_EINVAL, "%s", "no frame");
    memset(out, 0, size);
    if (f->cmd != cmd)
        return view_fail(why, whylen, USP_EINVAL, "not a %s frame", cmd_names[cmd]);
    return 0;
}

static int require(const struct usp_stomp_frame *f, const char *name, struct usp_stomp_str *v,
                   char *why, size_t whylen)
{
    *v = usp_stomp_header(f, name);
    if (!v->p) {
        if (why && whylen)
            snprintf(why, whylen, "%s frame has no %s header", cmd_names[f->cmd], name);
        return USP_EPROTO;
    }
    return 0;
}

static int parse_u32(const char *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    if (!n)
        return USP_EPROTO;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return USP_EPROTO;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            return USP_EPROTO;
    }
    *out = (uint32_t)v;
    return 0;
}

int usp_stomp_heart_beat_parse(struct usp_stomp_str v, uint32_t *x, uint32_t *y)
{
    uint32_t a, b;
    const char *comma = v.p ? memchr(v.p, ',', v.len) : NULL;
    if (!comma)
        return USP_EPROTO;
    size_t n = (size_t)(comma - v.p);
    if (parse_u32(v.p, n, &a) < 0 || parse_u32(comma + 1, v.len - n - 1, &b) < 0)
        return USP_EPROTO;
    if (x)
        *x = a;
    if (y)
        *y = b;
    return 0;
}

int usp_stomp_connected_view(const struct usp_stomp_frame *f, struct usp_stomp_connected *out,
                             char *why, size_t whylen)
{
    int rc = view_start(f, USP_STOMP_CONNECTED, out, sizeof *out, why, whylen);
    if (rc < 0)
        return rc;
    /* "STOMP 1.2 servers MUST set ... version"; we offer only 1.2. */
    if ((rc = require(f, "version", &out->version, why, whylen)) < 0)
        return rc;
    if (!usp_stomp_str_eq(out->version, "1.2")) {
        if (why && whylen)
            snprintf(why, whylen, "CONNECTED frame has version '%.*s'; only 1.2 was offered",
                     (int)(out->version.len < 32 ? out->version.len : 32), out->version.p);
        return USP_EPROTO;
    }
    out->session = usp_stomp_header(f, "session");
    out->server = usp_stomp_header(f, "server");
    out->subscribe_dest = usp_stomp_header(f, "subscribe-dest");
    struct usp_stomp_str hb = usp_stomp_header(f, "heart-beat");
    if (hb.p) {
        if (usp_stomp_heart_beat_parse(hb, &out->sx, &out->sy) < 0)
            return view_fail(why, whylen, USP_EPROTO, "%s",
                             "CONNECTED frame has a heart-beat header that is not "
                             "two numbers separated by a comma");
        out->has_heart_beat = true;
    }
    return 0;
}

int usp_stomp_message_view(const struct usp_stomp_frame *f, struct usp_stomp_message *out,
                           char *why, size_t whylen)
{
    int rc = view_start(f, USP_STOMP_MESSAGE, out, sizeof *out, why, whylen);
    if (rc < 0 || (rc = require(f, "destination", &out->destination, why, whylen)) < 0 ||
        (rc = require(f, "message-id", &out->message_id, why, whylen)) < 0 ||
        (rc = require(f, "subscription", &out->subscription, why, whylen)) < 0)
        return rc;
    out->content_type = usp_stomp_header(f, "content-type");
    out->reply_to_dest = usp_stomp_header(f, "reply-to-dest");
    out->ack = usp_stomp_header(f, "ack");
    out->receipt = usp_stomp_header(f, "receipt");
    out->has_content_length = f->has_content_length;
    out->body = f->body;
    out->body_len = f->body_len;
    return 0;
}

int usp_stomp_error_view(const struct usp_stomp_frame *f, struct usp_stomp_error *out, char *why,
                         size_t whylen)
{
    int rc = view_start(f, USP_STOMP_ERROR, out, sizeof *out, why, whylen);
    if (rc < 0)
        return rc;
    out->message = usp_stomp_header(f, "message");
    out->receipt_id = usp_stomp_header(f, "receipt-id");
    out->content_type = usp_stomp_header(f, "content-type");
    out->body = f->body;
    out->body_len = f->body_len;
    return 0;
}

int usp_stomp_receipt_view(const struct usp_stomp_frame *f, struct usp_stomp_receipt *out,
                           char *why, size_t whylen)
{
    int rc = view_start(f, USP_STOMP_RECEIPT, out, sizeof *out, why, whylen);
    if (rc < 0)
        return rc;
    return require(f, "receipt-id", &out->receipt_id, why, whylen);
}

/* ---- Heart-beats --------------------------------------------------------- */

void usp_stomp_heartbeat_negotiate(uint32_t cx, uint32_t cy, uint32_t sx, uint32_t sy,
                                   struct usp_stomp_heartbeat *out)
{
    out->send_ms = cx == 0 || sy == 0 ? 0 : cx > sy ? cx : sy;
    out->expect_ms = sx == 0 || cy == 0 ? 0 : sx > cy ? sx : cy;
    out->tx_idle_ms = out->send_ms / 2 + (out->send_ms & 1);
    out->rx_timeout_ms = out->expect_ms > UINT32_MAX / 2 ? UINT32_MAX : out->expect_ms * 2;
}

static uint32_t rabbit_secs(uint32_t ms)
{
    return ms == 0 ? 0 : ms < 1000 ? 1 : ms / 1000;
}

void usp_stomp_heartbeat_rabbitmq(uint32_t cx, uint32_t cy, uint32_t *sx, uint32_t *sy)
{
    /* secs(m) * 1000 never exceeds m for m >= 1000, so no overflow. */
    *sx = rabbit_secs(cy) * 1000;
    *sy = rabbit_secs(cx) * 1000;
}

/* ---- Encoders ------------------------------------------------------------ */

struct out {
    uint8_t *buf;
    size_t cap, n;
};

static void put(struct out *o, const void *s, size_t k)
{
    if (k && o->buf && k <= o->cap && o->n <= o->cap - k)
        memcpy(o->buf + o->n, s, k);
    o->n += k;
}

/* Writes a header name or value, escaped when `esc`. USP_EINVAL for bytes
 * no frame can carry. */
static int put_text(struct out *o, struct usp_stomp_str s, bool esc, bool is_name)
{
    const uint8_t *b = (const uint8_t *)s.p;
    if (!b && s.len)
        return USP_EINVAL;
    if (is_name && !s.len)
        return USP_EINVAL;
    if (s.len && (memchr(b, 0, s.len) || utf8_bad(b, s.len) != s.len))
        return USP_EINVAL;
    size_t run = 0; /* bytes written as they are, waiting */
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = b[i];
        const char *e = NULL;
        if (c == '\r')
            e = "\\r";
        else if (c == '\n')
            e = "\\n";
        else if (c == ':' && (esc || is_name))
            e = "\\c";
        else if (c == '\\' && esc)
            e = "\\\\";
        if (!e)
            continue;
        if (!esc)
            return USP_EINVAL; /* CR, LF, or ':' in a name, cannot be written */
        put(o, b + run, i - run);
        put(o, e, 2);
        run = i + 1;
    }
    put(o, b + run, s.len - run);
    return 0;
}

static int encode_head(enum usp_stomp_cmd cmd, const struct usp_stomp_header *hdr, size_t nhdr,
                       size_t body_len, bool body_has_nul, struct out *o)
{
    if (cmd <= USP_STOMP_HEARTBEAT || cmd >= USP_STOMP_CMD_COUNT || (nhdr && !hdr))
        return USP_EINVAL;
    if (body_len && !usp_stomp_cmd_has_body(cmd))
        return USP_EINVAL;
    bool esc = usp_stomp_cmd_escapes(cmd);
    bool have_cl = false;
    put(o, cmd_names[cmd], strlen(cmd_names[cmd]));
    put(o, "\n", 1);
    for (size_t i = 0; i < nhdr; i++) {
        const struct usp_stomp_header *h = &hdr[i];
        if (!have_cl && h->name.len == CL_NAME_LEN && h->name.p &&
            memcmp(h->name.p, CL_NAME, CL_NAME_LEN) == 0) {
            /* The first content-length frames the body: it must be the
             * body's length, in digits the parser reads back. */
            uint64_t v = 0;
            if (!h->value.len || !h->value.p)
                return USP_EINVAL;
            for (size_t j = 0; j < h->value.len; j++) {
                char c = h->value.p[j];
                if (c < '0' || c > '9')
                    return USP_EINVAL;
                v = v * 10 + (uint64_t)(c - '0');
                if (v > body_len)
                    return USP_EINVAL;
            }
            if (v != body_len)
                return USP_EINVAL;
            have_cl = true;
        }
        int rc = put_text(o, h->name, esc, true);
        if (rc < 0)
            return rc;
        put(o, ":", 1);
        if ((rc = put_text(o, h->value, esc, false)) < 0)
            return rc;
        put(o, "\n", 1);
    }
    if (!have_cl && body_has_nul)
        return USP_EINVAL; /* the receiver would cut the body at the NUL */
    put(o, "\n", 1);
    return 0;
}

static int finish(const struct out *o, size_t *len)
{
    if (len)
        *len = o->n;
    return o->n > o->cap || (!o->buf && o->n) ? USP_ERANGE : 0;
}

int usp_stomp_encode_head(enum usp_stomp_cmd cmd, const struct usp_stomp_header *hdr, size_t nhdr,
                          size_t body_len, bool body_has_nul, uint8_t *buf, size_t cap, size_t *len)
{
    struct out o = {buf, buf ? cap : 0, 0};
    int rc = encode_head(cmd, hdr, nhdr, body_len, body_has_nul, &o);
    if (rc < 0) {
        if (len)
            *len = 0;
        return rc;
    }
    return finish(&o, len);
}

int usp_stomp_encode(enum usp_stomp_cmd cmd, const struct usp_stomp_header *hdr, size_t nhdr,
                     const uint8_t *body, size_t body_len, uint8_t *buf, size_t cap, size_t *len)
{
    struct out o = {buf, buf ? cap : 0, 0};
    int rc = 0;
    if (cmd == USP_STOMP_HEARTBEAT && !nhdr && !body_len) {
        put(&o, USP_STOMP_HEARTBEAT_EOL, 1);
    } else if (body_len && !body) {
        rc = USP_EINVAL;
    } else {
        bool nul = body_len && memchr(body, 0, body_len) != NULL;
        if ((rc = encode_head(cmd, hdr, nhdr, body_len, nul, &o)) == 0) {
            put(&o, body, body_len);
            put(&o, "", 1);
        }
    }
    if (rc < 0) {
        if (len)
            *len = 0;
        return rc;
    }
    return finish(&o, len);
}

static struct usp_stomp_str str(const char *s)
{
    struct usp_stomp_str r = {s, s ? strlen(s) : 0};
    return r;
}

static bool given(const char *s)
{
    return s && *s;
}

int usp_stomp_encode_connect(const struct usp_stomp_connect *c, uint8_t *buf, size_t cap,
                             size_t *len)
{
    struct usp_stomp_header h[6];
    size_t n = 0;
    char hb[24];
    if (len)
        *len = 0;
    if (!c || !given(c->endpoint_id))
        return USP_EINVAL;
    h[n++] = (struct usp_stomp_header){str("accept-version"), str("1.2")};
    if (c->host)
        h[n++] = (struct usp_stomp_header){str("host"), str(c->host)};
    if (c->login)
        h[n++] = (struct usp_stomp_header){str("login"), str(c->login)};
    if (c->passcode)
        h[n++] = (struct usp_stomp_header){str("passcode"), str(c->passcode)};
    if (c->heartbeat) {
        snprintf(hb, sizeof hb, "%u,%u", (unsigned)c->cx, (unsigned)c->cy);
        h[n++] = (struct usp_stomp_header){str("heart-beat"), str(hb)};
    }
    h[n++] = (struct usp_stomp_header){str("endpoint-id"), str(c->endpoint_id)};
    return usp_stomp_encode(USP_STOMP_STOMP, h, n, NULL, 0, buf, cap, len);
}

int usp_stomp_encode_subscribe(const char *id, const char *destination, uint8_t *buf, size_t cap,
                               size_t *len)
{
    if (len)
        *len = 0;
    if (!given(id) || !given(destination))
        return USP_EINVAL;
    struct usp_stomp_header h[] = {
        {str("id"), str(id)},
        {str("destination"), str(destination)},
        {str("ack"), str("auto")},
    };
    return usp_stomp_encode(USP_STOMP_SUBSCRIBE, h, 3, NULL, 0, buf, cap, len);
}

int usp_stomp_encode_unsubscribe(const char *id, uint8_t *buf, size_t cap, size_t *len)
{
    if (len)
        *len = 0;
    if (!given(id))
        return USP_EINVAL;
    struct usp_stomp_header h[] = {{str("id"), str(id)}};
    return usp_stomp_encode(USP_STOMP_UNSUBSCRIBE, h, 1, NULL, 0, buf, cap, len);
}

/* The headers of a SEND; `cl` receives the digits of body_len. */
static int send_headers(const struct usp_stomp_send *s, size_t body_len, char cl[24],
                        struct usp_stomp_header h[5], size_t *n)
{
    if (!s || !given(s->destination) || !given(s->reply_to_dest))
        return USP_EINVAL;
    snprintf(cl, 24, "%zu", body_len);
    *n = 0;
    h[(*n)++] = (struct usp_stomp_header){str("destination"), str(s->destination)};
    h[(*n)++] = (struct usp_stomp_header){
        str("content-type"), str(s->content_type ? s->content_type : USP_STOMP_CONTENT_TYPE)};
    h[(*n)++] = (struct usp_stomp_header){str("content-length"), str(cl)};
    h[(*n)++] = (struct usp_stomp_header){str("reply-to-dest"), str(s->reply_to_dest)};
    if (s->receipt)
        h[(*n)++] = (struct usp_stomp_header){str("receipt"), str(s->receipt)};
    return 0;
}

int usp_stomp_encode_send(const struct usp_stomp_send *s, const uint8_t *body, size_t body_len,
                          uint8_t *buf, size_t cap, size_t *len)
{
    struct usp_stomp_header h[5];
    char cl[24];
    size_t n;
    if (len)
        *len = 0;
    if (send_headers(s, body_len, cl, h, &n) < 0)
        return USP_EINVAL;
    return usp_stomp_encode(USP_STOMP_SEND, h, n, body, body_len, buf, cap, len);
}

int usp_stomp_encode_send_head(const struct usp_stomp_send *s, size_t body_len, uint8_t *buf,
                               size_t cap, size_t *len)
{
    struct usp_stomp_header h[5];
    char cl[24];
    size_t n;
    if (len)
        *len = 0;
    if (send_headers(s, body_len, cl, h, &n) < 0)
        return USP_EINVAL;
    return usp_stomp_encode_head(USP_STOMP_SEND, h, n, body_len, false, buf, cap, len);
}

int usp_stomp_encode_disconnect(const char *receipt, uint8_t *buf, size_t cap, size_t *len)
{
    struct usp_stomp_header h[] = {{str("receipt"), str(receipt)}};
    return usp_stomp_encode(USP_STOMP_DISCONNECT, h, receipt ? 1 : 0, NULL, 0, buf, cap, len);
}
