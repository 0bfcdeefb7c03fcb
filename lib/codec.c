/* Record and Message decode/encode into an arena, and builders for the
 * messages the codec itself produces (Error). Validation is in
 * codec_validate.c, the receive decision in rx.c. */
#include <string.h>

#include "codec_int.h"

/* An allocator over the arena that remembers whether it ran dry, so a NULL
 * from protobuf-c can be told apart: out of memory or bad bytes. */
struct track {
    ProtobufCAllocator pa;
    struct usp_arena *a;
    bool oom;
};

static void *track_alloc(void *data, size_t n)
{
    struct track *t = data;
    void *p = usp_arena_alloc(t->a, n);
    if (!p)
        t->oom = true;
    return p;
}

static void track_free(void *data, void *p)
{
}

ProtobufCMessage *codec__unpack(struct usp_arena *a, const ProtobufCMessageDescriptor *d,
                                const uint8_t *buf, size_t len, int *rc)
{
    static const uint8_t none[1];
    struct track t = {.pa = {.alloc = track_alloc, .free = track_free}, .a = a};
    t.pa.allocator_data = &t;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &t.pa, len, buf ? buf : none);
    *rc = m ? 0 : t.oom ? USP_ENOMEM : USP_EDECODE;
    return m;
}

int usp_record_decode(struct usp_arena *a, const uint8_t *buf, size_t len, UspRecord__Record **out,
                      struct usp_decode_err *err)
{
    int rc;
    if (err)
        memset(err, 0, sizeof *err);
    if (!out)
        return USP_EINVAL;
    *out = NULL;
    if (!a || (!buf && len))
        return USP_EINVAL;
    ProtobufCMessage *m = codec__unpack(a, &usp_record__record__descriptor, buf, len, &rc);
    if (rc == USP_ENOMEM)
        return rc;
    if (rc) {
        codec__set_err(err, USP_ERR_RECORD_NOT_PARSED, true, "record",
                       "%zu bytes do not decode as a USP Record", len);
        return rc;
    }
    *out = (UspRecord__Record *)m;
    return usp_record_validate(*out, err);
}

int usp_msg_decode(struct usp_arena *a, const uint8_t *buf, size_t len, Usp__Msg **out,
                   struct usp_decode_err *err)
{
    int rc;
    if (err)
        memset(err, 0, sizeof *err);
    if (!out)
        return USP_EINVAL;
    *out = NULL;
    if (!a || (!buf && len))
        return USP_EINVAL;
    ProtobufCMessage *m = codec__unpack(a, &usp__msg__descriptor, buf, len, &rc);
    if (rc == USP_ENOMEM)
        return rc;
    if (rc) {
        codec__set_err(err, USP_ERR_MESSAGE_FAILED, true, "msg",
                       "%zu bytes do not decode as a USP Msg", len);
        return rc;
    }
    *out = (Usp__Msg *)m;
    return usp_msg_validate(*out, err);
}

static int pack(struct usp_arena *a, const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    if (!a || !m || !out || !len)
        return USP_EINVAL;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = usp_arena_alloc(a, n ? n : 1);
    if (!buf)
        return USP_ENOMEM;
    if (protobuf_c_message_pack(m, buf) != n)
        return USP_EINVAL;
    *out = buf;
    *len = n;
    return 0;
}

int usp_record_encode(struct usp_arena *a, const UspRecord__Record *rec, uint8_t **out, size_t *len)
{
    return pack(a, rec ? &rec->base : NULL, out, len);
}

int usp_msg_encode(struct usp_arena *a, const Usp__Msg *msg, uint8_t **out, size_t *len)
{
    return pack(a, msg ? &msg->base : NULL, out, len);
}

int usp_record_wrap_msg(struct usp_arena *a, const struct usp_record_hdr *h, const Usp__Msg *msg,
                        uint8_t **out, size_t *len)
{
    if (!h || !h->to_id || !h->to_id[0] || !h->from_id || !h->from_id[0])
        return USP_EINVAL;
    uint8_t *payload;
    size_t plen;
    int rc = usp_msg_encode(a, msg, &payload, &plen);
    if (rc)
        return rc;
    UspRecord__NoSessionContextRecord nsc = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    nsc.payload.data = payload;
    nsc.payload.len = plen;
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    rec.version = (char *)(h->version ? h->version : USP_VERSION_DEFAULT);
    rec.to_id = (char *)h->to_id;
    rec.from_id = (char *)h->from_id;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    rec.no_session_context = &nsc;
    return usp_record_encode(a, &rec, out, len);
}

/* Header.MsgType for each Request.req_type and Response.resp_type case. */
static const int req_kind[] = {
    [USP__REQUEST__REQ_TYPE_GET] = USP__HEADER__MSG_TYPE__GET,
    [USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM] = USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM,
    [USP__REQUEST__REQ_TYPE_GET_INSTANCES] = USP__HEADER__MSG_TYPE__GET_INSTANCES,
    [USP__REQUEST__REQ_TYPE_SET] = USP__HEADER__MSG_TYPE__SET,
    [USP__REQUEST__REQ_TYPE_ADD] = USP__HEADER__MSG_TYPE__ADD,
    [USP__REQUEST__REQ_TYPE_DELETE] = USP__HEADER__MSG_TYPE__DELETE,
    [USP__REQUEST__REQ_TYPE_OPERATE] = USP__HEADER__MSG_TYPE__OPERATE,
    [USP__REQUEST__REQ_TYPE_NOTIFY] = USP__HEADER__MSG_TYPE__NOTIFY,
    [USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL] = USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO,
    [USP__REQUEST__REQ_TYPE_REGISTER] = USP__HEADER__MSG_TYPE__REGISTER,
    [USP__REQUEST__REQ_TYPE_DEREGISTER] = USP__HEADER__MSG_TYPE__DEREGISTER,
};
static const int resp_kind[] = {
    [USP__RESPONSE__RESP_TYPE_GET_RESP] = USP__HEADER__MSG_TYPE__GET_RESP,
    [USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP] = USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM_RESP,
    [USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP] = USP__HEADER__MSG_TYPE__GET_INSTANCES_RESP,
    [USP__RESPONSE__RESP_TYPE_SET_RESP] = USP__HEADER__MSG_TYPE__SET_RESP,
    [USP__RESPONSE__RESP_TYPE_ADD_RESP] = USP__HEADER__MSG_TYPE__ADD_RESP,
    [USP__RESPONSE__RESP_TYPE_DELETE_RESP] = USP__HEADER__MSG_TYPE__DELETE_RESP,
    [USP__RESPONSE__RESP_TYPE_OPERATE_RESP] = USP__HEADER__MSG_TYPE__OPERATE_RESP,
    [USP__RESPONSE__RESP_TYPE_NOTIFY_RESP] = USP__HEADER__MSG_TYPE__NOTIFY_RESP,
    [USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP] =
        USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO_RESP,
    [USP__RESPONSE__RESP_TYPE_REGISTER_RESP] = USP__HEADER__MSG_TYPE__REGISTER_RESP,
    [USP__RESPONSE__RESP_TYPE_DEREGISTER_RESP] = USP__HEADER__MSG_TYPE__DEREGISTER_RESP,
};

#define COUNT(t) (sizeof(t) / sizeof((t)[0]))

int usp_msg_kind(const Usp__Msg *msg)
{
    if (!msg || !msg->body)
        return -1;
    const Usp__Body *b = msg->body;
    switch (b->msg_body_case) {
    case USP__BODY__MSG_BODY_REQUEST:
        if (b->request && b->request->req_type_case > 0 &&
            (size_t)b->request->req_type_case < COUNT(req_kind))
            return req_kind[b->request->req_type_case];
        return -1;
    case USP__BODY__MSG_BODY_RESPONSE:
        if (b->response && b->response->resp_type_case > 0 &&
            (size_t)b->response->resp_type_case < COUNT(resp_kind))
            return resp_kind[b->response->resp_type_case];
        return -1;
    case USP__BODY__MSG_BODY_ERROR:
        return USP__HEADER__MSG_TYPE__ERROR;
    default:
        return -1;
    }
}

const char *usp_msg_type_name(int type)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&usp__header__msg_type__descriptor, type);
    return v ? v->name : NULL;
}

bool usp_msg_type_is_request(int type)
{
    for (size_t i = 1; i < COUNT(req_kind); i++)
        if (req_kind[i] == type)
            return true;
    return false;
}

Usp__Msg *usp_msg_new_error(struct usp_arena *a, const char *msg_id, uint32_t code,
                            const char *text)
{
    Usp__Msg *m = usp_arena_alloc(a, sizeof *m);
    Usp__Header *h = usp_arena_alloc(a, sizeof *h);
    Usp__Body *b = usp_arena_alloc(a, sizeof *b);
    Usp__Error *e = usp_arena_alloc(a, sizeof *e);
    if (!m || !h || !b || !e)
        return NULL;
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__error__init(e);
    if (!text)
        text = usp_err_name(code);
    h->msg_id = usp_arena_strdup(a, msg_id ? msg_id : "");
    e->err_msg = usp_arena_strdup(a, text ? text : "");
    if (!h->msg_id || !e->err_msg)
        return NULL;
    h->msg_type = USP__HEADER__MSG_TYPE__ERROR;
    e->err_code = code;
    b->msg_body_case = USP__BODY__MSG_BODY_ERROR;
    b->error = e;
    m->header = h;
    m->body = b;
    return m;
}

int usp_msg_error_add_param(struct usp_arena *a, Usp__Msg *err, const char *path, uint32_t code,
                            const char *text)
{
    if (!a || !err || !err->body || err->body->msg_body_case != USP__BODY__MSG_BODY_ERROR ||
        !err->body->error)
        return USP_EINVAL;
    Usp__Error *e = err->body->error;
    Usp__Error__ParamError *pe = usp_arena_alloc(a, sizeof *pe);
    if (!pe)
        return USP_ENOMEM;
    usp__error__param_error__init(pe);
    if (!text)
        text = usp_err_name(code);
    pe->param_path = usp_arena_strdup(a, path ? path : "");
    pe->err_msg = usp_arena_strdup(a, text ? text : "");
    pe->err_code = code;
    if (!pe->param_path || !pe->err_msg)
        return USP_ENOMEM;
    size_t n = e->n_param_errs;
    Usp__Error__ParamError **v =
        usp_arena_realloc(a, e->param_errs, n * sizeof *v, (n + 1) * sizeof *v);
    if (!v)
        return USP_ENOMEM;
    v[n] = pe;
    e->param_errs = v;
    e->n_param_errs = n + 1;
    return 0;
}
