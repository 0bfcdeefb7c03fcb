/* Descriptor-driven JSON writer for any protobuf-c message.
 *
 * Output rules (stable; other tools parse it):
 * - keys are proto field names, in descriptor order (field-number order);
 * - a singular scalar at its default (0, false, "", empty bytes, enum 0) is
 *   omitted, except a member of a set oneof, which is always printed; a set
 *   sub-message is always printed ({} when empty); empty repeated fields
 *   are omitted, others are arrays;
 * - enums by value name; a number the enum does not know is printed as a
 *   JSON number;
 * - 64-bit integers as JSON numbers (not strings);
 * - bytes as a lowercase hex string;
 * - a map (repeated *Entry message with fields key=1, value=2) as an object
 *   whose members follow wire order; a key repeated on the wire is printed
 *   each time it occurs;
 * - strings: '"', '\\' and control characters are escaped (\b \f \n \r \t
 *   or \u00XX), valid UTF-8 is copied as is, and each byte that is not
 *   part of a valid UTF-8 sequence (including overlong forms, surrogates
 *   and code points above U+10FFFF) becomes \ufffd;
 * - float/double (unused by USP) use %.9g/%.17g; NaN and infinities are
 *   the strings "NaN", "Infinity", "-Infinity";
 * - indent 0 gives one line with no spaces; indent N puts each member on
 *   its own line indented N spaces per level, with ": " after keys. No
 *   newline is written after the closing brace. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "usp/json.h"

#define MAX_DEPTH 64

struct jw {
    FILE *f;
    int indent;
    /* Written after the last field of `host`: the decoded Msg of a Record. */
    const ProtobufCMessage *host;
    const ProtobufCMessage *extra;
};

static void newline(struct jw *w, int depth)
{
    if (w->indent <= 0)
        return;
    fputc('\n', w->f);
    for (int i = 0; i < depth * w->indent; i++)
        fputc(' ', w->f);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void put_str(struct jw *w, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', w->f);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        switch (c) {
        case '"':
            fputs("\\\"", w->f);
            break;
        case '\\':
            fputs("\\\\", w->f);
            break;
        case '\b':
            fputs("\\b", w->f);
            break;
        case '\f':
            fputs("\\f", w->f);
            break;
        case '\n':
            fputs("\\n", w->f);
            break;
        case '\r':
            fputs("\\r", w->f);
            break;
        case '\t':
            fputs("\\t", w->f);
            break;
        default:
            if (c < 0x20) {
                fprintf(w->f, "\\u%04x", c);
                break;
            }
            size_t len = utf8_len(s + i, n - i);
            if (len == 0) {
                fputs("\\ufffd", w->f);
                break;
            }
            fwrite(s + i, 1, len, w->f);
            i += len;
            continue;
        }
        i++;
    }
    fputc('"', w->f);
}

static void put_cstr(struct jw *w, const char *s)
{
    put_str(w, s ? s : "", s ? strlen(s) : 0);
}

static void put_key(struct jw *w, const char *k)
{
    put_cstr(w, k);
    fputs(w->indent > 0 ? ": " : ":", w->f);
}

static void put_hex(struct jw *w, const ProtobufCBinaryData *b)
{
    static const char digits[] = "0123456789abcdef";
    fputc('"', w->f);
    for (size_t i = 0; b->data && i < b->len; i++) {
        fputc(digits[b->data[i] >> 4], w->f);
        fputc(digits[b->data[i] & 0xf], w->f);
    }
    fputc('"', w->f);
}

static void put_double(struct jw *w, double v, int digits)
{
    if (isnan(v))
        fputs("\"NaN\"", w->f);
    else if (isinf(v))
        fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", w->f);
    else
        fprintf(w->f, "%.*g", digits, v);
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* Whether the singular value at p is its type's default. */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p == NULL;
    }
    return true;
}

static void put_message(struct jw *w, const ProtobufCMessageDescriptor *d,
                        const ProtobufCMessage *m, int depth);

/* One value of field f stored at p. As a map key, numbers and booleans are
 * quoted, since JSON keys are strings. */
static void put_value(struct jw *w, const ProtobufCFieldDescriptor *f, const void *p, int depth,
                      bool as_key)
{
    const char *q = as_key ? "\"" : "";
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(w->f, "%s%" PRId32 "%s", q, *(const int32_t *)p, q);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(w->f, "%s%" PRIu32 "%s", q, *(const uint32_t *)p, q);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(w->f, "%s%" PRId64 "%s", q, *(const int64_t *)p, q);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(w->f, "%s%" PRIu64 "%s", q, *(const uint64_t *)p, q);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        put_double(w, *(const float *)p, 9);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_double(w, *(const double *)p, 17);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        fprintf(w->f, "%s%s%s", q, *(const protobuf_c_boolean *)p ? "true" : "false", q);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev)
            put_cstr(w, ev->name);
        else
            fprintf(w->f, "%s%" PRId32 "%s", q, v, q);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        put_cstr(w, *(char *const *)p);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        put_hex(w, p);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        put_message(w, f->descriptor, *(ProtobufCMessage *const *)p, depth);
        break;
    }
}

/* protobuf-c keeps no map flag: a map is a repeated message whose type is
 * the generated `...Entry` with exactly key = 1 and value = 2. */
static bool is_map(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t n = strlen(d->short_name);
    return d->n_fields == 2 && n > 5 && !strcmp(d->short_name + n - 5, "Entry") &&
           d->fields[0].id == 1 && !strcmp(d->fields[0].name, "key") && d->fields[1].id == 2 &&
           !strcmp(d->fields[1].name, "value");
}

static void put_map(struct jw *w, const ProtobufCFieldDescriptor *f, size_t n,
                    ProtobufCMessage *const *v, int depth)
{
    const ProtobufCMessageDescriptor *d = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &d->fields[0], *vf = &d->fields[1];
    fputc('{', w->f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', w->f);
        newline(w, depth + 1);
        const char *e = (const char *)v[i];
        if (!e) {
            fputs(w->indent > 0 ? "\"\": null" : "\"\":null", w->f);
            continue;
        }
        put_value(w, kf, e + kf->offset, depth + 1, true);
        fputs(w->indent > 0 ? ": " : ":", w->f);
        put_value(w, vf, e + vf->offset, depth + 1, false);
    }
    newline(w, depth);
    fputc('}', w->f);
}

static void put_repeated(struct jw *w, const ProtobufCFieldDescriptor *f, size_t n, const char *arr,
                         int depth)
{
    size_t sz = elem_size(f->type);
    fputc('[', w->f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', w->f);
        newline(w, depth + 1);
        const void *p = arr + i * sz;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(ProtobufCMessage *const *)p)
            fputs("null", w->f);
        else
            put_value(w, f, p, depth + 1, false);
    }
    newline(w, depth);
    fputc(']', w->f);
}

static void put_message(struct jw *w, const ProtobufCMessageDescriptor *d,
                        const ProtobufCMessage *m, int depth)
{
    if (depth > MAX_DEPTH) {
        fputs("null", w->f);
        return;
    }
    const char *base = (const char *)m;
    bool first = true;
    fputc('{', w->f);
    for (unsigned i = 0; m && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = base + f->offset;
        size_t n = 0;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)(base + f->quantifier_offset);
            if (n == 0 || !*(void *const *)p)
                continue;
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                continue;
        } else if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
            /* always printed */
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                   f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
            if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                continue;
        } else if (is_default(f, p)) {
            continue;
        }
        if (!first)
            fputc(',', w->f);
        first = false;
        newline(w, depth + 1);
        put_key(w, f->name);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (is_map(f))
                put_map(w, f, n, *(ProtobufCMessage *const *const *)p, depth + 1);
            else
                put_repeated(w, f, n, *(const char *const *)p, depth + 1);
        } else {
            put_value(w, f, p, depth + 1, false);
        }
    }
    if (m && m == w->host && w->extra) {
        if (!first)
            fputc(',', w->f);
        first = false;
        newline(w, depth + 1);
        put_key(w, "msg");
        put_message(w, w->extra->descriptor, w->extra, depth + 1);
    }
    if (!first)
        newline(w, depth);
    fputc('}', w->f);
}

static int finish(FILE *f)
{
    return ferror(f) ? USP_EIO : 0;
}

int usp_json_write(FILE *f, const ProtobufCMessage *m, int indent)
{
    if (!f || !m || !m->descriptor)
        return USP_EINVAL;
    struct jw w = {.f = f, .indent = indent};
    put_message(&w, m->descriptor, m, 0);
    return finish(f);
}

int usp_json_write_record(FILE *f, const UspRecord__Record *rec, const Usp__Msg *msg, int indent)
{
    if (!f || !rec)
        return USP_EINVAL;
    struct jw w = {.f = f, .indent = indent, .extra = msg ? &msg->base : NULL};
    /* "msg" goes beside the payload it was decoded from. */
    w.host = &rec->base;
    if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT &&
        rec->no_session_context)
        w.host = &rec->no_session_context->base;
    else if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT &&
             rec->session_context)
        w.host = &rec->session_context->base;
    put_message(&w, &usp_record__record__descriptor, &rec->base, 0);
    return finish(f);
}
