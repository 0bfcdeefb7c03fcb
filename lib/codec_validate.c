/* Validation of decoded Records and Messages. The oneof (R-ENC.3/4/5) and
 * enum (R-ENC.2) rules are checked by walking the protobuf-c descriptors, so
 * every message type of both schemas is covered without per-type code. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec_int.h"

#define MAX_DEPTH 32

void codec__set_err(struct usp_decode_err *err, uint32_t code, bool discard, const char *field,
                    const char *fmt, ...)
{
    if (!err)
        return;
    err->usp_code = code;
    err->discard = discard;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* protobuf-c descriptors do not name oneofs; these are the schema's names,
 * used only to make err->field point at the oneof itself. */
static const struct {
    const ProtobufCMessageDescriptor *desc;
    const char *name;
} oneof_names[] = {
    {&usp_record__record__descriptor, "record_type"},
    {&usp__body__descriptor, "msg_body"},
    {&usp__request__descriptor, "req_type"},
    {&usp__response__descriptor, "resp_type"},
    {&usp__notify__descriptor, "notification"},
    {&usp__notify__operation_complete__descriptor, "operation_resp"},
    {&usp__operate_resp__operation_result__descriptor, "operation_resp"},
    {&usp__add_resp__created_object_result__operation_status__descriptor, "oper_status"},
    {&usp__delete_resp__deleted_object_result__operation_status__descriptor, "oper_status"},
    {&usp__set_resp__updated_object_result__operation_status__descriptor, "oper_status"},
    {&usp__register_resp__registered_path_result__operation_status__descriptor, "oper_status"},
    {&usp__deregister_resp__deregistered_path_result__operation_status__descriptor, "oper_status"},
};

const char *codec__oneof_name(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < sizeof oneof_names / sizeof oneof_names[0]; i++)
        if (oneof_names[i].desc == d)
            return oneof_names[i].name;
    return NULL;
}

struct walk {
    bool record; /* Record rules (7104, empty oneof discards) or Message rules (7004) */
    /* A first pass only looks for a failure, without building field paths
     * or messages (every valid message costs no formatting); a second pass
     * with `paths` set runs only to describe a failure found. */
    bool paths;
    struct usp_decode_err *err;
    bool found;
    size_t len;
    char path[256];
};

static size_t path_push(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(struct walk *w, const char *fmt, ...)
{
    size_t old = w->len;
    if (w->paths && w->len < sizeof w->path - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(w->path + w->len, sizeof w->path - w->len, fmt, ap);
        va_end(ap);
        if (n > 0)
            w->len += (size_t)n;
        if (w->len > sizeof w->path - 1)
            w->len = sizeof w->path - 1;
    }
    return old;
}

static void path_pop(struct walk *w, size_t old)
{
    if (!w->paths)
        return;
    w->len = old;
    w->path[old] = '\0';
}

/* A later error only replaces an earlier one when it discards and the
 * earlier one did not: discarding is the stronger verdict. */
static bool walk_done(const struct walk *w)
{
    return w->found && (w->err->discard || !w->record);
}

static void walk_fail(struct walk *w, bool discard, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void walk_fail(struct walk *w, bool discard, const char *fmt, ...)
{
    if (w->found && !(discard && !w->err->discard))
        return;
    if (!w->paths) {
        w->found = true;
        w->err->discard = discard;
        return;
    }
    char msg[sizeof w->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    codec__set_err(w->err, w->record ? USP_ERR_RECORD_FIELD_INVALID : USP_ERR_INVALID_ARGUMENTS,
                   discard, w->path, "%s", msg);
    w->found = true;
}

static void check_enum(struct walk *w, const ProtobufCFieldDescriptor *f, int32_t v)
{
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    if (protobuf_c_enum_descriptor_get_value(ed, v))
        return;
    walk_fail(w, false, "Unknown value %d for enum %s in field %s (R-ENC.2)", (int)v,
              ed->short_name, f->name);
}

static void walk_msg(struct walk *w, const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m,
                     int depth);

static void walk_sub(struct walk *w, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *sub,
                     int depth)
{
    size_t old = path_push(w, ".%s", f->name);
    walk_msg(w, f->descriptor, sub, depth + 1);
    path_pop(w, old);
}

static bool first_of_oneof(const ProtobufCMessageDescriptor *d, unsigned i)
{
    for (unsigned j = 0; j < i; j++)
        if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            d->fields[j].quantifier_offset == d->fields[i].quantifier_offset)
            return false;
    return true;
}

static void walk_oneof(struct walk *w, const ProtobufCMessageDescriptor *d, unsigned i,
                       const ProtobufCMessage *m, int depth)
{
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *base = (const char *)m;
    uint32_t which = m ? *(const uint32_t *)(base + f->quantifier_offset) : 0;
    const char *name = codec__oneof_name(d);
    if (which == 0) {
        size_t old = path_push(w, ".%s", name ? name : f->name);
        walk_fail(w, w->record, "%s has no value in oneof %s (R-ENC.3)", d->short_name,
                  name ? name : "");
        path_pop(w, old);
        return;
    }
    const ProtobufCFieldDescriptor *mem = NULL;
    for (unsigned j = i; j < d->n_fields; j++)
        if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            d->fields[j].quantifier_offset == f->quantifier_offset && d->fields[j].id == which)
            mem = &d->fields[j];
    if (!mem) {
        size_t old = path_push(w, ".%s", name ? name : f->name);
        walk_fail(w, w->record, "%s has an unknown case %u in oneof %s", d->short_name,
                  (unsigned)which, name ? name : "");
        path_pop(w, old);
        return;
    }
    if (mem->type == PROTOBUF_C_TYPE_MESSAGE)
        walk_sub(w, mem, *(ProtobufCMessage *const *)(base + mem->offset), depth);
    else if (mem->type == PROTOBUF_C_TYPE_ENUM) {
        size_t old = path_push(w, ".%s", mem->name);
        check_enum(w, mem, *(const int32_t *)(base + mem->offset));
        path_pop(w, old);
    }
}

/* `m` NULL stands for an absent sub-message, i.e. the default instance:
 * its oneofs are empty, which R-ENC.3 forbids just the same. */
static void walk_msg(struct walk *w, const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m,
                     int depth)
{
    if (depth > MAX_DEPTH || walk_done(w))
        return;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields && !walk_done(w); i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (first_of_oneof(d, i))
                walk_oneof(w, d, i, m, depth);
            continue;
        }
        if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_ENUM)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = m ? *(const size_t *)(base + f->quantifier_offset) : 0;
            const void *arr = m ? *(void *const *)(base + f->offset) : NULL;
            for (size_t k = 0; arr && k < n && !walk_done(w); k++) {
                size_t old = path_push(w, ".%s[%zu]", f->name, k);
                if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                    walk_msg(w, f->descriptor, ((ProtobufCMessage *const *)arr)[k], depth + 1);
                else
                    check_enum(w, f, ((const int32_t *)arr)[k]);
                path_pop(w, old);
            }
            continue;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            walk_sub(w, f, m ? *(ProtobufCMessage *const *)(base + f->offset) : NULL, depth);
            continue;
        }
        /* A singular enum: absent means its default, always a known value. */
        if (!m)
            continue;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
            !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
            continue;
        size_t old = path_push(w, ".%s", f->name);
        check_enum(w, f, *(const int32_t *)(base + f->offset));
        path_pop(w, old);
    }
}

static void walk_init(struct walk *w, bool record, bool paths, struct usp_decode_err *err)
{
    w->record = record;
    w->paths = paths;
    w->err = err;
    w->found = false;
    w->len = 0;
    w->path[0] = '\0';
    if (paths)
        path_push(w, "%s", record ? "record" : "msg");
}

/* Walks `m` quickly; when that finds a failure, again to describe it. */
static void walk_run(struct walk *w, bool record, struct usp_decode_err *err,
                     const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m)
{
    walk_init(w, record, false, err);
    walk_msg(w, d, m, 0);
    if (!w->found)
        return;
    memset(err, 0, sizeof *err);
    walk_init(w, record, true, err);
    walk_msg(w, d, m, 0);
}

int usp_version_parse(const char *v, unsigned *major, unsigned *minor)
{
    unsigned part[2] = {0, 0};
    if (!v)
        return USP_EINVAL;
    for (int k = 0; k < 2; k++) {
        int digits = 0;
        while (*v >= '0' && *v <= '9') {
            if (++digits > 6)
                return USP_EINVAL;
            part[k] = part[k] * 10 + (unsigned)(*v++ - '0');
        }
        if (digits == 0)
            return USP_EINVAL;
        if (k == 0 && *v++ != '.')
            return USP_EINVAL;
    }
    if (*v != '\0')
        return USP_EINVAL;
    if (major)
        *major = part[0];
    if (minor)
        *minor = part[1];
    return 0;
}

bool usp_version_supported(const char *v)
{
    unsigned major, minor;
    if (usp_version_parse(v, &major, &minor) != 0)
        return false;
    /* Written as + 1 > so the check stays warning-free while MIN is 0. */
    return major == 1 && minor + 1 > USP_VERSION_MIN_MINOR && minor <= USP_VERSION_MAX_MINOR;
}

int usp_record_validate(const UspRecord__Record *rec, struct usp_decode_err *err)
{
    struct usp_decode_err dummy;
    if (!err)
        err = &dummy;
    memset(err, 0, sizeof *err);
    if (!rec)
        return USP_EINVAL;
    const uint32_t bad = USP_ERR_RECORD_FIELD_INVALID;
    /* Without a sender or with no recipient nobody can be answered. */
    if (!rec->from_id || !rec->from_id[0]) {
        codec__set_err(err, bad, true, "record.from_id", "Record has no from_id");
        return USP_EPROTO;
    }
    if (!rec->to_id || !rec->to_id[0]) {
        codec__set_err(err, bad, true, "record.to_id", "Record has no to_id");
        return USP_EPROTO;
    }
    struct walk w;
    walk_run(&w, true, err, &usp_record__record__descriptor, &rec->base);
    if (w.found && err->discard)
        return USP_EPROTO;
    if (!rec->version || !rec->version[0]) {
        codec__set_err(err, bad, false, "record.version", "Record has no version");
        return USP_EPROTO;
    }
    if (!usp_version_supported(rec->version)) {
        codec__set_err(err, bad, false, "record.version",
                       "Record version \"%.40s\" is not supported (supported: %s)", rec->version,
                       USP_VERSIONS_SUPPORTED);
        return USP_EPROTO;
    }
    if (w.found)
        return USP_EPROTO;
    if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT) {
        const UspRecord__NoSessionContextRecord *nsc = rec->no_session_context;
        if (!nsc || nsc->payload.len == 0 || !nsc->payload.data) {
            codec__set_err(err, bad, false, "record.no_session_context.payload",
                           "no_session_context Record has an empty payload (R-E2E.26)");
            return USP_EPROTO;
        }
        if (rec->payload_security != USP_RECORD__RECORD__PAYLOAD_SECURITY__PLAINTEXT) {
            codec__set_err(err, bad, false, "record.payload_security",
                           "payload_security TLS12 needs a session_context Record (R-E2E.41)");
            return USP_EPROTO;
        }
    }
    return 0;
}

int usp_msg_validate(const Usp__Msg *msg, struct usp_decode_err *err)
{
    struct usp_decode_err dummy;
    if (!err)
        err = &dummy;
    memset(err, 0, sizeof *err);
    if (!msg)
        return USP_EINVAL;
    const uint32_t bad = USP_ERR_INVALID_ARGUMENTS;
    /* Without a msg_id or without knowing it is a Request there is nobody
     * to answer (R-MTP.5): these discard. */
    if (!msg->header) {
        codec__set_err(err, bad, true, "msg.header", "Msg has no header");
        return USP_EPROTO;
    }
    if (!msg->header->msg_id || !msg->header->msg_id[0]) {
        codec__set_err(err, bad, true, "msg.header.msg_id", "Msg header has an empty msg_id");
        return USP_EPROTO;
    }
    if (!msg->body) {
        codec__set_err(err, bad, true, "msg.body", "Msg has no body");
        return USP_EPROTO;
    }
    struct walk w;
    walk_run(&w, false, err, &usp__msg__descriptor, &msg->base);
    if (!w.found)
        return 0;
    err->discard = msg->body->msg_body_case != USP__BODY__MSG_BODY_REQUEST;
    return USP_EPROTO;
}
