/* `uspsim decode`: one USP Record (binary, hex or base64) to JSON. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "opts.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/errors.h"
#include "usp/json.h"

#define INPUT_MAX (64u << 20) /* bytes read at most; a Record is far smaller */

struct decode_opts {
    bool hex;
    bool base64;
    bool compact;
    bool lenient;
};

static const struct sim_opt decode_opts[] = {
    {.name = "hex",
     .type = SIM_OPT_FLAG,
     .help = "the input is hex digits; whitespace is ignored",
     .set = sim_opt_set_flag,
     .off = offsetof(struct decode_opts, hex)},
    {.name = "base64",
     .type = SIM_OPT_FLAG,
     .help = "the input is standard base64; whitespace is ignored",
     .set = sim_opt_set_flag,
     .off = offsetof(struct decode_opts, base64)},
    {.name = "compact",
     .type = SIM_OPT_FLAG,
     .help = "print the JSON on one line",
     .set = sim_opt_set_flag,
     .off = offsetof(struct decode_opts, compact)},
    {.name = "lenient",
     .type = SIM_OPT_FLAG,
     .help = "print the JSON even when a USP rule is broken (exit 0, a warning)",
     .set = sim_opt_set_flag,
     .off = offsetof(struct decode_opts, lenient)},
    {.name = NULL},
};

static const struct sim_cmd_spec decode_spec = {
    .name = "decode",
    .args = "[FILE|-]",
    .summary = "Decodes one USP Record and the Message inside it, and prints both as one JSON\n"
               "object. Reads FILE, or standard input when FILE is - or missing.",
    .details = "The payload of a no_session_context Record is decoded as a Msg, as is the\n"
               "payload of a session_context Record that holds one whole (unsegmented)\n"
               "payload; the Msg appears under the key \"msg\".\n"
               "Exit status: 0 decoded, 1 the input is not a valid Record (the message names\n"
               "the field), 2 bad usage.\n",
    .opts = decode_opts,
};

/* A byte as error messages show it. */
static const char *show_byte(unsigned char c, char buf[8])
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "0x%02x", c);
    return buf;
}

static bool space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Reads all of `f` into a malloc'd buffer. 0, or -1 with errno set (EFBIG
 * for input over INPUT_MAX). */
static int read_all(FILE *f, uint8_t **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (n == cap) {
            if (cap >= INPUT_MAX) {
                free(buf);
                errno = EFBIG;
                return -1;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno ? errno : EIO;
                free(buf);
                errno = e;
                return -1;
            }
            break;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Hex digits (whitespace anywhere) to bytes, in place. */
static int unhex(uint8_t *buf, size_t *len, char *why, size_t whylen)
{
    size_t o = 0, digits = 0;
    int hi = 0;
    char b[8];
    for (size_t i = 0; i < *len; i++) {
        if (space(buf[i]))
            continue;
        int v = hexval(buf[i]);
        if (v < 0) {
            snprintf(why, whylen, "bad hex: %s at offset %zu is not a hex digit",
                     show_byte(buf[i], b), i);
            return -1;
        }
        if (digits++ % 2 == 0)
            hi = v;
        else
            buf[o++] = (uint8_t)(hi << 4 | v);
    }
    if (digits % 2) {
        snprintf(why, whylen, "bad hex: an odd number of hex digits (%zu)", digits);
        return -1;
    }
    *len = o;
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 (RFC 4648 section 4, whitespace anywhere, the final "="
 * padding optional) to bytes, in place. */
static int unbase64(uint8_t *buf, size_t *len, char *why, size_t whylen)
{
    size_t o = 0, nchars = 0, pads = 0;
    uint32_t acc = 0;
    char b[8];
    for (size_t i = 0; i < *len; i++) {
        unsigned char c = buf[i];
        if (space(c))
            continue;
        if (c == '=') {
            pads++;
            continue;
        }
        int v = b64val(c);
        if (v < 0) {
            snprintf(why, whylen, "bad base64: %s at offset %zu is not a base64 character",
                     show_byte(c, b), i);
            return -1;
        }
        if (pads) {
            snprintf(why, whylen, "bad base64: data after the '=' padding at offset %zu", i);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (++nchars % 4 == 0) {
            buf[o++] = (uint8_t)(acc >> 16);
            buf[o++] = (uint8_t)(acc >> 8);
            buf[o++] = (uint8_t)acc;
            acc = 0;
        }
    }
    size_t rest = nchars % 4;
    if (rest == 1) {
        snprintf(why, whylen, "bad base64: %zu characters is one too many or three too few",
                 nchars);
        return -1;
    }
    if (pads && (pads > 2 || (rest + pads) % 4 != 0)) {
        snprintf(why, whylen, "bad base64: wrong '=' padding (%zu after %zu characters)", pads,
                 nchars);
        return -1;
    }
    if (rest == 2) {
        buf[o++] = (uint8_t)(acc >> 4);
    } else if (rest == 3) {
        buf[o++] = (uint8_t)(acc >> 10);
        buf[o++] = (uint8_t)(acc >> 2);
    }
    *len = o;
    return 0;
}

/* ---- why bytes do not decode ---------------------------------------- */

/* protobuf-c only says that unpacking failed. To name the field, walk the
 * wire format along the descriptors and report the first thing protobuf-c
 * would reject. */
struct wire {
    const uint8_t *p, *end, *start;
};

static int varint(struct wire *w, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (w->p >= w->end)
            return -1;
        uint8_t b = *w->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -2;
}

static unsigned wire_type_of(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

/* Finds the first fault in `w` read as message `d` at `path`. Returns 0 if
 * none was found, else 1 with `field` and `why` filled. */
static int wire_fault(struct wire w, const ProtobufCMessageDescriptor *d, const char *path,
                      int depth, char *field, size_t flen, char *why, size_t wlen)
{
    while (w.p < w.end) {
        size_t at = (size_t)(w.p - w.start);
        uint64_t tag, n;
        int rc = varint(&w, &tag);
        if (rc || w.p - w.start - at > 5) {
            /* protobuf-c reads at most 5 bytes of tag */
            snprintf(field, flen, "%s", path);
            snprintf(why, wlen, "the field tag at offset %zu is %s", at,
                     rc == -1 ? "cut short" : "over 5 bytes");
            return 1;
        }
        uint32_t num = (uint32_t)(tag >> 3);
        unsigned wt = (unsigned)(tag & 7);
        const ProtobufCFieldDescriptor *f = (tag >> 3) <= UINT32_MAX && num
                                                ? protobuf_c_message_descriptor_get_field(d, num)
                                                : NULL;
        if (f)
            snprintf(field, flen, "%s.%s", path, f->name);
        else
            snprintf(field, flen, "%s.<field %llu>", path, (unsigned long long)(tag >> 3));
        if (num == 0 || (tag >> 3) > 0x1fffffff) {
            snprintf(why, wlen, "field number %llu at offset %zu is not allowed",
                     (unsigned long long)(tag >> 3), at);
            return 1;
        }
        if (f && wt != wire_type_of(f) && !(wt == 2 && f->label == PROTOBUF_C_LABEL_REPEATED)) {
            snprintf(why, wlen, "wire type %u at offset %zu, but the field needs wire type %u", wt,
                     at, wire_type_of(f));
            return 1;
        }
        switch (wt) {
        case 0:
            rc = varint(&w, &n);
            if (rc) {
                snprintf(why, wlen, "the number of the field at offset %zu is %s", at,
                         rc == -1 ? "cut short" : "over 10 bytes");
                return 1;
            }
            break;
        case 1:
        case 5: {
            size_t need = wt == 1 ? 8 : 4;
            if ((size_t)(w.end - w.p) < need) {
                snprintf(why, wlen, "the %zu-byte value of the field at offset %zu is cut short",
                         need, at);
                return 1;
            }
            w.p += need;
            break;
        }
        case 2: {
            rc = varint(&w, &n);
            if (rc) {
                snprintf(why, wlen, "the length of the field at offset %zu is %s", at,
                         rc == -1 ? "cut short" : "over 10 bytes");
                return 1;
            }
            size_t left = (size_t)(w.end - w.p);
            if (n > left) {
                snprintf(why, wlen,
                         "the field at offset %zu has length %llu, past the end (%zu bytes left)",
                         at, (unsigned long long)n, left);
                return 1;
            }
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 32) {
                char sub[128];
                snprintf(sub, sizeof sub, "%s", field);
                struct wire in = {.p = w.p, .end = w.p + n, .start = w.start};
                if (wire_fault(in, f->descriptor, sub, depth + 1, field, flen, why, wlen))
                    return 1;
                snprintf(field, flen, "%s", sub);
            }
            w.p += n;
            break;
        }
        default:
            snprintf(why, wlen, "wire type %u at offset %zu is not supported", wt, at);
            return 1;
        }
    }
    return 0;
}

/* ---- the command ------------------------------------------------------ */

/* Prints why decoding failed: the codec's field and sentence, made more
 * precise by the wire walk when the bytes do not parse at all. */
static void report(const char *what, int rc, const struct usp_decode_err *e,
                   const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                   bool warning)
{
    char field[128], why[160];
    const char *f = e->field[0] ? e->field : "?";
    const char *m = e->msg[0] ? e->msg : usp_strerror(rc);
    if (rc == USP_EDECODE) {
        struct wire w = {.p = buf, .end = buf + len, .start = buf};
        if (wire_fault(w, d, d == &usp__msg__descriptor ? "msg" : "record", 0, field, sizeof field,
                       why, sizeof why)) {
            f = field;
            m = why;
        }
    }
    fprintf(stderr, "uspsim decode: %s%s: %s: %s", warning ? "warning: " : "", what, f, m);
    if (e->usp_code) {
        const char *name = usp_err_name(e->usp_code);
        fprintf(stderr, " (USP error %u%s%s)", (unsigned)e->usp_code, name ? ": " : "",
                name ? name : "");
    }
    fprintf(stderr, "\n");
}

/* The whole payload of a Record that carries a Msg, or false. */
static bool payload_of(const UspRecord__Record *rec, ProtobufCBinaryData *out)
{
    if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT &&
        rec->no_session_context) {
        *out = rec->no_session_context->payload;
        return out->len > 0;
    }
    if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT &&
        rec->session_context &&
        rec->payload_security == USP_RECORD__RECORD__PAYLOAD_SECURITY__PLAINTEXT &&
        rec->session_context->payload_sar_state ==
            USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__NONE &&
        rec->session_context->n_payload == 1) {
        *out = rec->session_context->payload[0];
        return out->len > 0;
    }
    return false;
}

int sim_cmd_decode(int argc, char **argv)
{
    struct decode_opts o = {0};
    int n = sim_opts_parse(&decode_spec, &o, argc, argv, 0);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n > 1)
        return sim_opts_usage_error(&decode_spec, "unexpected argument '%s' (one FILE at most)",
                                    argv[2]);
    if (o.hex && o.base64)
        return sim_opts_usage_error(&decode_spec, "--hex and --base64 exclude each other");

    const char *path = n == 1 ? argv[1] : "-";
    const char *name = strcmp(path, "-") ? path : "standard input";
    int status = 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    struct usp_arena *a = NULL;
    char why[160];

    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "uspsim decode: cannot open %s: %s\n", path, strerror(errno));
        goto out;
    }
    int rc = read_all(f, &buf, &len);
    int e = errno;
    if (f != stdin)
        fclose(f);
    if (rc) {
        fprintf(stderr, "uspsim decode: cannot read %s: %s\n", name,
                e == EFBIG ? "more than 64 MiB" : strerror(e));
        goto out;
    }
    if ((o.hex && unhex(buf, &len, why, sizeof why)) ||
        (o.base64 && unbase64(buf, &len, why, sizeof why))) {
        fprintf(stderr, "uspsim decode: %s: %s\n", name, why);
        goto out;
    }
    if (len == 0) {
        fprintf(stderr, "uspsim decode: %s: empty input, no Record to decode\n", name);
        goto out;
    }

    a = usp_arena_new(0);
    if (!a) {
        fprintf(stderr, "uspsim decode: out of memory\n");
        goto out;
    }
    UspRecord__Record *rec = NULL;
    Usp__Msg *msg = NULL;
    struct usp_decode_err derr;
    rc = usp_record_decode(a, buf, len, &rec, &derr);
    if (rc == USP_ENOMEM) {
        fprintf(stderr, "uspsim decode: out of memory\n");
        goto out;
    }
    if (rc) {
        bool go_on = rc == USP_EPROTO && rec && o.lenient;
        report("bad Record", rc, &derr, &usp_record__record__descriptor, buf, len, go_on);
        if (!go_on)
            goto out;
    }
    ProtobufCBinaryData pl;
    if (payload_of(rec, &pl)) {
        rc = usp_msg_decode(a, pl.data, pl.len, &msg, &derr);
        if (rc == USP_ENOMEM) {
            fprintf(stderr, "uspsim decode: out of memory\n");
            goto out;
        }
        if (rc) {
            report("bad Msg in the payload", rc, &derr, &usp__msg__descriptor, pl.data, pl.len,
                   o.lenient);
            if (!o.lenient)
                goto out;
        }
    }
    if (usp_json_write_record(stdout, rec, msg, o.compact ? 0 : 2) != 0) {
        fprintf(stderr, "uspsim decode: cannot write the JSON\n");
        goto out;
    }
    fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "uspsim decode: cannot write the JSON: %s\n", strerror(errno));
        goto out;
    }
    status = 0;
out:
    usp_arena_free(a);
    free(buf);
    return status;
}
