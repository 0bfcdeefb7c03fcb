/* Test tool for tests/wire: the uspsim side of the wire-compatibility check
 * against the Broadband Forum's official USP 1.4 schema.
 *
 *   wire_tool gen CASES OUTDIR
 *       For each line "NAME KIND CHOICES" of CASES (KIND msg or record,
 *       CHOICES the oneof members to pick, comma-separated, or "-"), builds
 *       a fully populated message from our generated descriptors, encodes
 *       it with libusp (usp_msg_encode + usp_record_wrap_msg, or
 *       usp_record_encode) into OUTDIR/NAME.bin and writes what libusp's
 *       JSON writer makes of it to OUTDIR/NAME.json as
 *       {"record": ..., "msg": ...} ("msg" for KIND msg only).
 *   wire_tool decode DIR
 *       For each DIR/NAME.bin, decodes the Record with usp_record_decode
 *       (and its no_session_context payload with usp_msg_decode when it is
 *       one) and writes usp_json_write_record's output to DIR/NAME.out.json,
 *       or the reason it failed to DIR/NAME.err; when the payload is not a
 *       Msg, usp_msg_decode's reason goes to DIR/NAME.msgerr.
 *
 * Filling rules: every field is set to a distinctive non-default value
 * (strings carry the field name, a counter and non-ASCII text; fixed32 and
 * uint64 values include their maximum), repeated fields and maps get 2 or 3
 * elements, every sub-message is present. In a oneof the member named in
 * CHOICES is taken, otherwise member (element index mod members), so the
 * elements of a repeated field walk through the alternatives. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/json.h"

#define MAX_CHOICES 16

struct filler {
    struct usp_arena *a;
    const char *choice[MAX_CHOICES];
    bool used[MAX_CHOICES];
    size_t n_choice;
    unsigned n_str, n_bytes, n_32, n_64, n_enum, n_rep;
    bool failed;
    char why[200];
};

static void fill_fail(struct filler *fl, const char *what, const char *name)
{
    if (!fl->failed)
        snprintf(fl->why, sizeof fl->why, "%s: %s", what, name);
    fl->failed = true;
}

static size_t type_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
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

static ProtobufCMessage *fill_msg(struct filler *fl, const ProtobufCMessageDescriptor *d,
                                  unsigned idx);

static void fill_value(struct filler *fl, const ProtobufCFieldDescriptor *f, void *dst,
                       unsigned idx)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        /* JSON escapes, 2-, 3- and 4-byte UTF-8, and the name of the field
         * so a swapped field shows. */
        unsigned k = fl->n_str++;
        char *s = usp_arena_printf(fl->a, "%s#%u \"q\\\t\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80",
                                   f->name, k);
        if (!s)
            fill_fail(fl, "out of memory", f->name);
        *(char **)dst = s;
        return;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        unsigned k = fl->n_bytes++;
        size_t n = 4 + k % 5;
        uint8_t *b = usp_arena_alloc(fl->a, n);
        if (!b) {
            fill_fail(fl, "out of memory", f->name);
            return;
        }
        /* Starts with 0x00: a field tag of 0, so never a valid message. */
        b[0] = 0x00;
        b[1] = 0xff;
        b[2] = 0x80;
        for (size_t i = 3; i < n; i++)
            b[i] = (uint8_t)(k * 37 + i);
        ProtobufCBinaryData *bd = dst;
        bd->data = b;
        bd->len = n;
        return;
    }
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)dst = 1;
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        unsigned k = fl->n_32++;
        *(uint32_t *)dst = k % 2 == 0 ? UINT32_MAX : 3000000000u + k;
        return;
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        unsigned k = fl->n_64++;
        uint64_t v = k % 3 == 0   ? UINT64_MAX
                     : k % 3 == 1 ? (UINT64_C(1) << 63) + k
                                  : (UINT64_C(1) << 53) + 1 + 2 * (uint64_t)k;
        *(uint64_t *)dst = v;
        return;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        unsigned k = fl->n_enum++;
        /* values[] is sorted by number; skip the default when we can. */
        unsigned pick = ed->n_values > 1 ? 1 + k % (ed->n_values - 1) : 0;
        *(int *)dst = ed->values[pick].value;
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)dst = fill_msg(fl, f->descriptor, idx);
        return;
    default:
        /* USP 1.4 has no signed or floating-point fields. */
        fill_fail(fl, "field type this tool does not fill", f->name);
        return;
    }
}

static int choice_index(struct filler *fl, const char *name)
{
    for (size_t i = 0; i < fl->n_choice; i++)
        if (strcmp(fl->choice[i], name) == 0)
            return (int)i;
    return -1;
}

static void fill_oneof(struct filler *fl, const ProtobufCMessageDescriptor *d, unsigned first,
                       char *base, unsigned idx)
{
    const ProtobufCFieldDescriptor *mem[32];
    unsigned n = 0;
    unsigned qoff = d->fields[first].quantifier_offset;
    for (unsigned j = first; j < d->n_fields && n < 32; j++)
        if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            d->fields[j].quantifier_offset == qoff)
            mem[n++] = &d->fields[j];
    const ProtobufCFieldDescriptor *pick = mem[idx % n];
    for (unsigned j = 0; j < n; j++) {
        int c = choice_index(fl, mem[j]->name);
        if (c >= 0) {
            pick = mem[j];
            fl->used[c] = true;
        }
    }
    *(uint32_t *)(base + qoff) = pick->id;
    fill_value(fl, pick, base + pick->offset, idx);
}

static ProtobufCMessage *fill_msg(struct filler *fl, const ProtobufCMessageDescriptor *d,
                                  unsigned idx)
{
    ProtobufCMessage *m = usp_arena_zalloc(fl->a, d->sizeof_message);
    if (!m) {
        fill_fail(fl, "out of memory", d->name);
        return NULL;
    }
    protobuf_c_message_init(d, m);
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields && !fl->failed; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            bool first = true;
            for (unsigned j = 0; j < i; j++)
                if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    d->fields[j].quantifier_offset == f->quantifier_offset)
                    first = false;
            if (first)
                fill_oneof(fl, d, i, base, idx);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = 2 + fl->n_rep++ % 2;
            size_t sz = type_size(f);
            char *arr = usp_arena_zalloc(fl->a, n * sz);
            if (!arr) {
                fill_fail(fl, "out of memory", f->name);
                break;
            }
            for (size_t k = 0; k < n; k++)
                fill_value(fl, f, arr + k * sz, (unsigned)k);
            *(size_t *)(base + f->quantifier_offset) = n;
            *(char **)(base + f->offset) = arr;
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
            *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
        fill_value(fl, f, base + f->offset, idx);
    }
    return m;
}

/* Header.msg_type for the body, found by name so the table needs no
 * upkeep: "get_supported_dm_resp" -> GET_SUPPORTED_DM_RESP; the schema
 * shortens PROTOCOL to PROTO. */
static int msg_type_for(const Usp__Msg *msg)
{
    const Usp__Body *b = msg->body;
    const ProtobufCFieldDescriptor *f = NULL;
    if (b->msg_body_case == USP__BODY__MSG_BODY_ERROR)
        return USP__HEADER__MSG_TYPE__ERROR;
    if (b->msg_body_case == USP__BODY__MSG_BODY_REQUEST)
        f = protobuf_c_message_descriptor_get_field(&usp__request__descriptor,
                                                    b->request->req_type_case);
    else if (b->msg_body_case == USP__BODY__MSG_BODY_RESPONSE)
        f = protobuf_c_message_descriptor_get_field(&usp__response__descriptor,
                                                    b->response->resp_type_case);
    if (!f)
        return -1;
    char up[64];
    size_t w = 0;
    for (const char *p = f->name; *p && w < sizeof up - 1; p++)
        up[w++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    up[w] = '\0';
    char *proto = strstr(up, "PROTOCOL");
    if (proto)
        memmove(proto + 5, proto + 8, strlen(proto + 8) + 1);
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&usp__header__msg_type__descriptor, up);
    return v ? v->value : -1;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "wire_tool: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fwrite(data, 1, len, f);
    if (fclose(f) != 0 || n != len) {
        fprintf(stderr, "wire_tool: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* {"record": <rec>, "msg": <msg>} with libusp's writer for both. */
static int write_json(const char *path, const ProtobufCMessage *rec, const ProtobufCMessage *msg)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "wire_tool: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    fputs("{\"record\":", f);
    if (usp_json_write(f, rec, 0) != 0)
        rc = -1;
    if (msg) {
        fputs(",\"msg\":", f);
        if (usp_json_write(f, msg, 0) != 0)
            rc = -1;
    }
    fputs("}\n", f);
    if (fclose(f) != 0)
        rc = -1;
    if (rc)
        fprintf(stderr, "wire_tool: usp_json_write failed for %s\n", path);
    return rc;
}

static int gen_case(struct usp_arena *a, const char *outdir, const char *name, const char *kind,
                    char *choices)
{
    struct filler fl = {.a = a};
    for (char *t = strtok(choices, ","); t; t = strtok(NULL, ",")) {
        if (strcmp(t, "-") == 0)
            continue;
        if (fl.n_choice == MAX_CHOICES) {
            fprintf(stderr, "wire_tool: %s: too many choices\n", name);
            return -1;
        }
        fl.choice[fl.n_choice++] = t;
    }
    bool is_msg = strcmp(kind, "msg") == 0;
    if (!is_msg && strcmp(kind, "record") != 0) {
        fprintf(stderr, "wire_tool: %s: kind must be msg or record, not %s\n", name, kind);
        return -1;
    }
    const ProtobufCMessageDescriptor *d =
        is_msg ? &usp__msg__descriptor : &usp_record__record__descriptor;
    ProtobufCMessage *m = fill_msg(&fl, d, 0);
    if (fl.failed) {
        fprintf(stderr, "wire_tool: %s: %s\n", name, fl.why);
        return -1;
    }
    for (size_t i = 0; i < fl.n_choice; i++) {
        if (!fl.used[i]) {
            fprintf(stderr, "wire_tool: %s: no oneof has a member named %s\n", name, fl.choice[i]);
            return -1;
        }
    }

    char path[4096];
    uint8_t *bin;
    size_t len;
    int rc;
    if (is_msg) {
        Usp__Msg *msg = (Usp__Msg *)m;
        int type = msg_type_for(msg);
        if (type < 0) {
            fprintf(stderr, "wire_tool: %s: no MsgType for the body\n", name);
            return -1;
        }
        msg->header->msg_type = type;
        if (usp_msg_kind(msg) != type) {
            fprintf(stderr, "wire_tool: %s: usp_msg_kind says %d, the body is %d\n", name,
                    usp_msg_kind(msg), type);
            return -1;
        }
        /* The Record usp_record_wrap_msg should make, for the JSON side. */
        char *to = usp_arena_printf(a, "proto::wire-to-%s", name);
        char *from = usp_arena_printf(a, "doc::wire-from-%s", name);
        uint8_t *payload;
        size_t plen;
        if (!to || !from || usp_msg_encode(a, msg, &payload, &plen) != 0) {
            fprintf(stderr, "wire_tool: %s: usp_msg_encode failed\n", name);
            return -1;
        }
        struct usp_record_hdr h = {.version = "1.4", .to_id = to, .from_id = from};
        rc = usp_record_wrap_msg(a, &h, msg, &bin, &len);
        if (rc) {
            fprintf(stderr, "wire_tool: %s: usp_record_wrap_msg: %d\n", name, rc);
            return -1;
        }
        UspRecord__NoSessionContextRecord nsc = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
        nsc.payload.data = payload;
        nsc.payload.len = plen;
        UspRecord__Record rec = USP_RECORD__RECORD__INIT;
        rec.version = "1.4";
        rec.to_id = to;
        rec.from_id = from;
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
        rec.no_session_context = &nsc;
        snprintf(path, sizeof path, "%s/%s.json", outdir, name);
        if (write_json(path, &rec.base, &msg->base) != 0)
            return -1;
    } else {
        UspRecord__Record *rec = (UspRecord__Record *)m;
        rec->version = "1.4";
        /* A no_session_context Record must be plaintext (R-E2E.41). */
        if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT)
            rec->payload_security = USP_RECORD__RECORD__PAYLOAD_SECURITY__PLAINTEXT;
        rc = usp_record_encode(a, rec, &bin, &len);
        if (rc) {
            fprintf(stderr, "wire_tool: %s: usp_record_encode: %d\n", name, rc);
            return -1;
        }
        snprintf(path, sizeof path, "%s/%s.json", outdir, name);
        if (write_json(path, &rec->base, NULL) != 0)
            return -1;
    }
    snprintf(path, sizeof path, "%s/%s.bin", outdir, name);
    return write_file(path, bin, len);
}

static int cmd_gen(const char *cases, const char *outdir)
{
    FILE *f = fopen(cases, "r");
    if (!f) {
        fprintf(stderr, "wire_tool: cannot read %s: %s\n", cases, strerror(errno));
        return 2;
    }
    struct usp_arena *a = usp_arena_new(0);
    if (!a) {
        fclose(f);
        fprintf(stderr, "wire_tool: out of memory\n");
        return 2;
    }
    char line[1024];
    int bad = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        char name[256], kind[32], choices[700];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%255s %31s %699s", name, kind, choices) != 3) {
            fprintf(stderr, "wire_tool: bad case line: %s", line);
            bad++;
            continue;
        }
        if (gen_case(a, outdir, name, kind, choices) != 0)
            bad++;
        n++;
        usp_arena_reset(a);
    }
    usp_arena_free(a);
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "wire_tool: no cases in %s\n", cases);
        return 2;
    }
    return bad ? 1 : 0;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        uint8_t *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int decode_one(struct usp_arena *a, const char *dir, const char *base)
{
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/%s.bin", dir, base);
    size_t len;
    uint8_t *buf = read_file(in, &len);
    if (!buf) {
        fprintf(stderr, "wire_tool: cannot read %s\n", in);
        return -1;
    }
    struct usp_decode_err err;
    UspRecord__Record *rec = NULL;
    Usp__Msg *msg = NULL;
    char why[512] = "";
    int rc = usp_record_decode(a, buf, len, &rec, &err);
    if (rc)
        snprintf(why, sizeof why, "usp_record_decode: %d, %u at %s: %s\n", rc, err.usp_code,
                 err.field, err.msg);
    else if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT) {
        /* A payload that is not a Msg is left raw, as uspsim decode does;
         * the checker is told why, and decides whether it should have
         * been one. */
        const ProtobufCBinaryData *p = &rec->no_session_context->payload;
        if (usp_msg_decode(a, p->data, p->len, &msg, &err) != 0) {
            char merr[512];
            snprintf(merr, sizeof merr, "usp_msg_decode: %u at %s: %s\n", err.usp_code, err.field,
                     err.msg);
            snprintf(out, sizeof out, "%s/%s.msgerr", dir, base);
            write_file(out, merr, strlen(merr));
            msg = NULL;
        }
    }
    free(buf);
    if (why[0]) {
        snprintf(out, sizeof out, "%s/%s.err", dir, base);
        write_file(out, why, strlen(why));
        return -1;
    }
    snprintf(out, sizeof out, "%s/%s.out.json", dir, base);
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "wire_tool: cannot write %s\n", out);
        return -1;
    }
    rc = usp_json_write_record(f, rec, msg, 0);
    fputc('\n', f);
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "wire_tool: usp_json_write_record failed for %s\n", out);
        return -1;
    }
    return 0;
}

static int cmd_decode(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "wire_tool: cannot open %s: %s\n", dir, strerror(errno));
        return 2;
    }
    struct usp_arena *a = usp_arena_new(0);
    if (!a) {
        closedir(dp);
        return 2;
    }
    int bad = 0, n = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".bin") != 0)
            continue;
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(l - 4), de->d_name);
        if (decode_one(a, dir, base) != 0)
            bad++;
        n++;
        usp_arena_reset(a);
    }
    closedir(dp);
    usp_arena_free(a);
    if (n == 0) {
        fprintf(stderr, "wire_tool: no .bin files in %s\n", dir);
        return 2;
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "gen") == 0)
        return cmd_gen(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "decode") == 0)
        return cmd_decode(argv[2]);
    fprintf(stderr, "usage: wire_tool gen CASES OUTDIR | wire_tool decode DIR\n");
    return 2;
}
