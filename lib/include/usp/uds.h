/* Frames of the USP UNIX domain socket MTP (TR-369 "UNIX Domain Socket
 * Binding", R-UDS.6-25, USP 1.3+): an incremental parser and the encoders,
 * without any I/O (sans-IO).
 *
 *   frame = "_USP" (0x5F 0x55 0x53 0x50) + length (4 bytes, big-endian: the
 *           bytes that follow) + one or more TLVs          [R-UDS.6-9]
 *   TLV   = type (1 byte) + length (4 bytes, big-endian) + value [R-UDS.10-11]
 *   types   1 Handshake: the sender's Endpoint ID, UTF-8
 *           2 Error: a UTF-8 text
 *           3 USP Record: protobuf bytes
 *           others: ignored by the receiver [R-UDS.15]
 *
 * The parser checks a whole frame before handing it out: wrong sync bytes
 * (seen at the first wrong byte), a length over the configured maximum
 * (seen as soon as the header is in, before anything is buffered), a frame
 * without a TLV, TLVs that do not fill the frame exactly (a TLV running
 * past its end, or bytes too few for a TLV header), and a Handshake or
 * Error value that is not UTF-8 or holds a NUL byte, or an empty Endpoint
 * ID. On any of those the binding sends an Error TLV carrying
 * usp_uds_parser_why() and closes the connection [R-UDS.21, 23, 24].
 * Whether an Endpoint ID is well formed (usp/eid.h), which TLVs are
 * expected when (handshake first [R-UDS.19/20]) and what a Record holds
 * are the binding's business.
 *
 * Memory: the parser is meant to be embedded in a connection (56
 * bytes). A frame complete inside one read is handed out in place; one that
 * spans reads is collected in a buffer of exactly its size, allocated once
 * its header has been checked and freed when the next call starts. */
#ifndef USP_UDS_H
#define USP_UDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/errors.h"

#define USP_UDS_SYNC           "_USP" /* R-UDS.8 */
#define USP_UDS_HEADER_LEN     8u     /* sync + length */
#define USP_UDS_TLV_HEADER_LEN 5u     /* type + length */

enum usp_uds_type {
    USP_UDS_HANDSHAKE = 1,
    USP_UDS_ERROR = 2,
    USP_UDS_RECORD = 3,
};

/* "Handshake", "Error", "USP Record"; NULL for other types. */
const char *usp_uds_type_name(unsigned type);

struct usp_uds_tlv {
    uint8_t type;
    uint32_t len;
    const uint8_t *value; /* not NUL-terminated */
};

/* A checked frame. What it points to stays valid until the next call on
 * the parser (parse, reset, cleanup) and, since a frame complete inside
 * one read is not copied, as long as the bytes passed to that
 * usp_uds_parse call. */
struct usp_uds_frame {
    const uint8_t *payload; /* the TLVs */
    uint32_t len;           /* the header's length field */
    uint32_t ntlv;          /* at least 1 */
    size_t wire_len;        /* USP_UDS_HEADER_LEN + len */
};

/* Walks the TLVs of a parsed frame: start with *off = 0; 1 with `*t`
 * filled, 0 after the last one. */
int usp_uds_tlv_next(const struct usp_uds_frame *f, size_t *off, struct usp_uds_tlv *t);
/* The first TLV of `type`: 1 with `*t` filled, 0 when there is none. */
int usp_uds_tlv_find(const struct usp_uds_frame *f, uint8_t type, struct usp_uds_tlv *t);

/* ---- Parser -------------------------------------------------------------- */

struct usp_uds_limits {
    /* Largest length field accepted (the frame less its 8-byte header);
     * at most UINT32_MAX - 8. */
    uint32_t max_frame;
};

/* A 4 MiB Record plus its TLV header and room for a few other TLVs. */
#define USP_UDS_MAX_FRAME_DEFAULT (4u * 1024 * 1024 + 4096)

/* Parser state. Embed it; the fields are private. */
struct usp_uds_parser {
    const struct usp_uds_limits *lim;
    uint8_t *buf;    /* the payload of a frame that spans reads */
    uint32_t have;   /* bytes of the current frame received, header included */
    uint32_t len;    /* its length field, once the header is in */
    uint32_t frames; /* frames handed out, for error messages */
    uint32_t err_a, err_b, err_c;
    uint8_t hdr[USP_UDS_HEADER_LEN];
    uint8_t err, err_type;
    bool delivered; /* buf holds a frame handed out: free it next call */
};

/* Ready to parse a new stream. `lim` (NULL or a zero max_frame: the
 * default) is not copied and must outlive the parser; share one between
 * parsers. Allocates nothing. */
void usp_uds_parser_init(struct usp_uds_parser *p, const struct usp_uds_limits *lim);
/* Frees the buffer. The parser can be initialised again. */
void usp_uds_parser_cleanup(struct usp_uds_parser *p);
/* Back to the start of a stream: drops a partial frame and a pending error. */
void usp_uds_parser_reset(struct usp_uds_parser *p);

/* Parses from `data` (`len` bytes, any split of the stream) until one frame
 * is complete. `*used` is set to the bytes of `data` consumed. Returns
 *   1  `*f` holds a checked frame; call again with data + *used;
 *   0  every byte was consumed and no frame is complete yet;
 *   USP_EPROTO  the frame is malformed;
 *   USP_ERANGE  its length is over the limit;
 *   USP_ENOMEM.
 * After an error the parser returns that error until reset. */
int usp_uds_parse(struct usp_uds_parser *p, const uint8_t *data, size_t len, size_t *used,
                  struct usp_uds_frame *f);

/* The text to send in the Error TLV and to log: a sentence saying what is
 * wrong and where, e.g. "UDS frame 2: TLV at byte 8 (type 3) has length
 * 4096 but only 12 bytes remain in the frame"; "" when there is no error.
 * Writes at most `n` bytes, NUL included. Returns the length it wanted. */
size_t usp_uds_parser_why(const struct usp_uds_parser *p, char *buf, size_t n);
/* Bytes the parser holds on the heap now. */
size_t usp_uds_parser_mem(const struct usp_uds_parser *p);
/* Whether part of a frame has been received and not completed: a
 * connection closing now cut a frame short. False after an error. */
bool usp_uds_parser_in_frame(const struct usp_uds_parser *p);

/* ---- Encoders -------------------------------------------------------------
 * Each writes a whole frame into buf[0..cap) and sets `*len` to the bytes
 * it needs, also when they do not fit. 0, USP_ERANGE when cap is too small
 * (buf may be NULL with cap 0 to measure) or the frame would not fit the
 * 4-byte length, or USP_EINVAL for what the parser would refuse: no TLV, a
 * Handshake or Error value that is not UTF-8 or holds a NUL, an empty
 * Endpoint ID. */

/* A frame of the TLVs given, in order (any types). */
int usp_uds_encode(const struct usp_uds_tlv *tlv, size_t n, uint8_t *buf, size_t cap, size_t *len);
/* Type 1 with the Endpoint ID `eid` [R-UDS.16/17]. */
int usp_uds_encode_handshake(const char *eid, uint8_t *buf, size_t cap, size_t *len);
/* Type 2 with `text` [R-UDS.21, 23, 24]. */
int usp_uds_encode_error(const char *text, uint8_t *buf, size_t cap, size_t *len);
/* Type 3 with a Record [R-UDS.22]. */
int usp_uds_encode_record(const uint8_t *rec, size_t rec_len, uint8_t *buf, size_t cap,
                          size_t *len);
/* The 13 bytes that come before the value of a frame holding one TLV, so
 * that a Record can be written from its own buffer. 0, or USP_ERANGE when
 * value_len does not fit. The value is not checked. */
int usp_uds_encode_head(uint8_t type, size_t value_len,
                        uint8_t out[USP_UDS_HEADER_LEN + USP_UDS_TLV_HEADER_LEN]);

#endif
