/* The receive-side decision for one Record: deliver, drop silently, or
 * answer with an Error (R-E2E.1, R-ENC.2-5, R-MTP.5). */
#include <stdio.h>
#include <string.h>

#include "codec_int.h"
#include "usp/eid.h"

/* The payload of a no_session_context Record, decoded without validation,
 * when it is a Request with a msg_id: the only case R-MTP.5 answers. */
static const Usp__Msg *peek_request(struct usp_arena *a, const UspRecord__Record *rec, int *rc)
{
    *rc = 0;
    if (rec->record_type_case != USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT ||
        !rec->no_session_context || rec->no_session_context->payload.len == 0 ||
        rec->payload_security == USP_RECORD__RECORD__PAYLOAD_SECURITY__TLS12)
        return NULL;
    const ProtobufCBinaryData *p = &rec->no_session_context->payload;
    const Usp__Msg *m =
        (const Usp__Msg *)codec__unpack(a, &usp__msg__descriptor, p->data, p->len, rc);
    if (!m)
        return NULL;
    if (!m->header || !m->header->msg_id || !m->header->msg_id[0] || !m->body ||
        m->body->msg_body_case != USP__BODY__MSG_BODY_REQUEST)
        return NULL;
    return m;
}

static void drop(struct usp_rx *rx, const char *why)
{
    rx->action = USP_RX_DROP;
    rx->err.discard = true;
    if (why) {
        size_t n = strlen(rx->err.msg);
        if (n + 3 < sizeof rx->err.msg)
            snprintf(rx->err.msg + n, sizeof rx->err.msg - n, "; %s", why);
    }
}

int usp_rx_record(struct usp_arena *a, const uint8_t *buf, size_t len, const char *own_eid,
                  struct usp_rx *rx)
{
    if (!rx)
        return USP_EINVAL;
    memset(rx, 0, sizeof *rx);
    rx->action = USP_RX_DROP;
    rx->err.discard = true;
    if (!a)
        return USP_EINVAL;

    UspRecord__Record *rec;
    int rc = usp_record_decode(a, buf, len, &rec, &rx->err);
    if (rc == USP_ENOMEM)
        return rc;
    if (!rec) {
        drop(rx, NULL);
        return 0;
    }
    rx->rec = rec;

    /* R-E2E.1: a Record for someone else is not ours to judge or answer. */
    if (rec->to_id && rec->to_id[0] && own_eid && strcmp(rec->to_id, own_eid) != 0) {
        codec__set_err(&rx->err, 0, true, "record.to_id",
                       "Record is addressed to \"%.60s\", not to us (R-E2E.1)", rec->to_id);
        rx->action = USP_RX_DROP;
        return 0;
    }

    if (rc) {
        /* A bad Record: answered only under R-MTP.5. */
        if (rx->err.discard) {
            drop(rx, NULL);
            return 0;
        }
        if (!usp_eid_valid(rec->from_id)) {
            drop(rx, "from_id is not a valid Endpoint ID, no Error sent (R-MTP.5)");
            return 0;
        }
        if (!peek_request(a, rec, &rc)) {
            if (rc == USP_ENOMEM)
                return rc;
            drop(rx, "no Request with a msg_id inside, no Error sent (R-MTP.5)");
            return 0;
        }
        rx->action = USP_RX_REPLY_ERROR;
        return 0;
    }

    if (rec->record_type_case != USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT) {
        rx->action = USP_RX_DELIVER;
        return 0;
    }

    const ProtobufCBinaryData *p = &rec->no_session_context->payload;
    rc = usp_msg_decode(a, p->data, p->len, &rx->msg, &rx->err);
    if (rc == USP_ENOMEM)
        return rc;
    if (rc == 0) {
        rx->action = USP_RX_DELIVER;
        return 0;
    }
    if (rx->err.discard || !rx->msg) {
        drop(rx, NULL);
        return 0;
    }
    if (!usp_eid_valid(rec->from_id)) {
        drop(rx, "from_id is not a valid Endpoint ID, no Error sent (R-MTP.5)");
        return 0;
    }
    rx->action = USP_RX_REPLY_ERROR;
    return 0;
}

int usp_rx_error_reply(struct usp_arena *a, const struct usp_rx *rx, const char *own_eid,
                       uint8_t **out, size_t *len)
{
    if (!a || !rx || rx->action != USP_RX_REPLY_ERROR || !rx->rec || !out || !len)
        return USP_EINVAL;
    const UspRecord__Record *rec = rx->rec;
    const Usp__Msg *req = rx->msg;
    int rc = 0;
    if (!req)
        req = peek_request(a, rec, &rc);
    if (rc)
        return rc;
    if (!req || !req->header || !req->header->msg_id || !req->header->msg_id[0])
        return USP_EINVAL;

    const char *text = rx->err.msg;
    if (rx->err.field[0])
        text = usp_arena_printf(a, "%s (%s)", rx->err.msg, rx->err.field);
    if (!text)
        return USP_ENOMEM;
    Usp__Msg *m = usp_msg_new_error(a, req->header->msg_id, rx->err.usp_code, text);
    if (!m)
        return USP_ENOMEM;
    struct usp_record_hdr h = {
        .version = usp_version_supported(rec->version) ? rec->version : USP_VERSION_DEFAULT,
        .to_id = rec->from_id,
        .from_id = own_eid ? own_eid : rec->to_id,
    };
    return usp_record_wrap_msg(a, &h, m, out, len);
}
