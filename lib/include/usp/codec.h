/* USP Record and Message codec: decode with validation as the specification
 * requires, encode, and build Error replies. Decoded structures live in the
 * caller's arena (see usp/arena.h). */
#ifndef USP_CODEC_H
#define USP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp-msg-1-4.pb-c.h"
#include "usp-record-1-4.pb-c.h"
#include "usp/arena.h"
#include "usp/errors.h"

/* Protocol versions this codec reads and writes. */
#define USP_VERSION_MIN_MINOR 0 /* 1.0 */
#define USP_VERSION_MAX_MINOR 4 /* 1.4 */
#define USP_VERSION_DEFAULT "1.4"
#define USP_VERSIONS_SUPPORTED "1.0,1.1,1.2,1.3,1.4"

/* Why input was rejected: the USP code to report (7100-7106 for Records,
 * 7000-7031 for Messages), whether the input must be dropped without any
 * answer, the proto field at fault (dotted proto field names from the top,
 * e.g. "record.no_session_context.payload" or
 * "msg.body.request.get.param_paths"), and a sentence for humans. */
/*
 * Codes and `discard` per rule (err->field in brackets; repeated fields
 * carry their index, e.g. "msg.body.response.add_resp.created_obj_results[1]
 * .oper_status.oper_status"; an empty oneof is named by the oneof itself):
 *   Record bytes do not decode             7100, discard  [record]
 *   from_id or to_id empty                 7104, discard  [record.from_id|to_id]
 *   record_type (or any Record oneof) empty 7104, discard [record.record_type] R-ENC.4
 *   version missing, not "D.D", not 1.0-1.4 7104          [record.version]
 *   unknown enum value in a Record field   7104           [e.g. record.payload_security] R-ENC.2
 *   no_session_context with empty payload  7104           [record.no_session_context.payload]
 *   no_session_context with TLS12 payload  7104           [record.payload_security] R-E2E.41
 *   Msg bytes do not decode                7000, discard  [msg]
 *   Msg without header / empty msg_id / without body
 *                                          7004, discard  [msg.header|msg.header.msg_id|msg.body]
 *   empty oneof anywhere in a Msg          7004           [e.g. msg.body.request.req_type] R-ENC.5
 *   unknown enum value in a Msg field      7004           [e.g. msg.header.msg_type] R-ENC.2
 * For Msg errors `discard` is true unless the body is a Request (only
 * Requests are answered). Record checks run in the order from_id, to_id,
 * empty oneofs, version, enums, payload rules; Msg checks in the order
 * header, msg_id, body, then oneofs and enums in field order. The first
 * failure is reported.
 */
struct usp_decode_err {
    uint32_t usp_code;
    bool discard;
    char field[128];
    char msg[192];
};

/* Parses "Major.Minor" strictly (digits only). 0 or USP_EINVAL. */
int usp_version_parse(const char *v, unsigned *major, unsigned *minor);
/* True for 1.0 .. 1.4. */
bool usp_version_supported(const char *v);

/* Unpacks a Record into `a` and validates it (usp_record_validate).
 * USP_EDECODE (*out NULL) for bytes that are not a Record; USP_EPROTO
 * leaves the decoded Record in *out for logging; USP_ENOMEM. */
int usp_record_decode(struct usp_arena *a, const uint8_t *buf, size_t len,
                      UspRecord__Record **out, struct usp_decode_err *err);
/* Required fields present, version supported, record_type set (else
 * discard, R-ENC.4), known enum values (R-ENC.2), no_session_context with
 * a non-empty payload (R-E2E.26). 0, or USP_EPROTO with `err` filled. */
int usp_record_validate(const UspRecord__Record *rec, struct usp_decode_err *err);

/* Unpacks a Msg into `a` and validates it (usp_msg_validate). Same
 * results as usp_record_decode. */
int usp_msg_decode(struct usp_arena *a, const uint8_t *buf, size_t len, Usp__Msg **out,
                   struct usp_decode_err *err);
/* Header with msg_id, body and every oneof set (else 7004, R-ENC.5), known
 * enum values (R-ENC.2). 0, or USP_EPROTO with `err` filled. */
int usp_msg_validate(const Usp__Msg *msg, struct usp_decode_err *err);

/* Packs into the arena. */
int usp_record_encode(struct usp_arena *a, const UspRecord__Record *rec, uint8_t **out,
                      size_t *len);
int usp_msg_encode(struct usp_arena *a, const Usp__Msg *msg, uint8_t **out, size_t *len);

/* The outer fields of a Record we send. */
struct usp_record_hdr {
    const char *version; /* NULL: USP_VERSION_DEFAULT */
    const char *to_id;
    const char *from_id;
};
/* Packs `msg` into a no_session_context Record, all in the arena. */
int usp_record_wrap_msg(struct usp_arena *a, const struct usp_record_hdr *h, const Usp__Msg *msg,
                        uint8_t **out, size_t *len);

/* The message type the body says (the body wins over the header, R-MSG.10);
 * -1 when the body carries nothing. */
int usp_msg_kind(const Usp__Msg *msg);
/* "GET", "GET_RESP", ... for a Header.MsgType value, NULL if unknown. */
const char *usp_msg_type_name(int type);
bool usp_msg_type_is_request(int type);

/* A new Msg in the arena: Error with `code`, `text` (NULL: the code's name)
 * and msg_id. */
Usp__Msg *usp_msg_new_error(struct usp_arena *a, const char *msg_id, uint32_t code,
                            const char *text);
/* Appends a param_errs entry to an Error Msg. */
int usp_msg_error_add_param(struct usp_arena *a, Usp__Msg *err, const char *path, uint32_t code,
                            const char *text);

/* What to do with received bytes, after R-E2E.1, R-ENC.*, R-MTP.5. */
enum usp_rx_action {
    USP_RX_DELIVER,     /* rec (and msg for no_session_context) are good */
    USP_RX_DROP,        /* ignore silently; err says why (for the log) */
    USP_RX_REPLY_ERROR, /* answer with an Error message (usp_rx_error_reply) */
};
struct usp_rx {
    enum usp_rx_action action;
    UspRecord__Record *rec; /* NULL when the bytes are not a Record */
    Usp__Msg *msg;          /* decoded payload of a no_session_context Record */
    struct usp_decode_err err;
};
/* Classifies one received Record addressed to `own_eid`. A bad Record is
 * answered only when R-MTP.5 allows it: valid from_id, to_id equal to
 * own_eid, a Request inside with a readable msg_id. Returns 0 (see
 * rx->action) or USP_ENOMEM.
 * - A Record for another to_id is dropped with usp_code 0 and field
 *   "record.to_id" (R-E2E.1), whatever else is wrong with it.
 * - "Valid from_id" means usp_eid_valid() (usp/eid.h).
 * - Only no_session_context Records are answered; a bad session_context,
 *   Connect or Disconnect Record is dropped (the session layer owns those
 *   replies). A payload that does not decode as a Msg is dropped (7000):
 *   nobody can tell it carried a Request.
 * - DELIVER: rec is valid; msg is set for no_session_context (validated),
 *   NULL for other record types. REPLY_ERROR: rec is set; msg is set when
 *   the fault is in the Message, NULL for a Record fault.
 * - own_eid NULL accepts any to_id (for decoding tools). */
int usp_rx_record(struct usp_arena *a, const uint8_t *buf, size_t len, const char *own_eid,
                  struct usp_rx *rx);
/* Builds the Error reply Record for rx->action == USP_RX_REPLY_ERROR: an
 * Error message with rx->err.usp_code and the request's msg_id, from
 * own_eid to the sender, in the sender's version when we support it.
 * err_msg is "<rx->err.msg> (<rx->err.field>)". own_eid NULL replies from
 * the Record's to_id. USP_EINVAL for any other action. */
int usp_rx_error_reply(struct usp_arena *a, const struct usp_rx *rx, const char *own_eid,
                       uint8_t **out, size_t *len);

#endif
