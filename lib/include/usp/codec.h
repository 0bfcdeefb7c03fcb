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

/* Unpacks a Record into `a` and validates it (usp_record_validate). */
int usp_record_decode(struct usp_arena *a, const uint8_t *buf, size_t len,
                      UspRecord__Record **out, struct usp_decode_err *err);
/* Required fields present, version supported, record_type set (else
 * discard, R-ENC.4), known enum values (R-ENC.2), no_session_context with
 * a non-empty payload (R-E2E.26). 0, or USP_EPROTO with `err` filled. */
int usp_record_validate(const UspRecord__Record *rec, struct usp_decode_err *err);

/* Unpacks a Msg into `a` and validates it (usp_msg_validate). */
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
 * rx->action) or USP_ENOMEM. */
int usp_rx_record(struct usp_arena *a, const uint8_t *buf, size_t len, const char *own_eid,
                  struct usp_rx *rx);
/* Builds the Error reply Record for rx->action == USP_RX_REPLY_ERROR: an
 * Error message with rx->err.usp_code and the request's msg_id, from
 * own_eid to the sender, in the sender's version when we support it. */
int usp_rx_error_reply(struct usp_arena *a, const struct usp_rx *rx, const char *own_eid,
                       uint8_t **out, size_t *len);

#endif
