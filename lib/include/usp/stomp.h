/* STOMP 1.2 frames for the USP STOMP binding (TR-369 "STOMP Binding",
 * R-STOMP.*): an incremental parser and the encoders, without any I/O
 * (sans-IO). The binding reads from its socket, hands the bytes to
 * usp_stomp_parse and writes what the encoders produce.
 *
 * Frames (STOMP 1.2 "STOMP Frames", "Augmented BNF"):
 *   COMMAND EOL *(name ":" value EOL) EOL body NUL *(EOL)      EOL = [CR] LF
 *
 * Decisions, with the rule behind each (details in lib/stomp_frame.c):
 * - Header escapes \r \n \c \\ are decoded in every frame except CONNECT
 *   and CONNECTED ("Value Encoding": "All frames except the CONNECT and
 *   CONNECTED frames will also escape ..."); any other escape is a fatal
 *   error. The STOMP frame is not exempt, so the STOMP frame we send
 *   escapes its headers: the colons of the endpoint-id become \c, which is
 *   also what TR-369 asks in the note under R-STOMP.4.
 * - A raw ':' in a header value is accepted (the first colon of a line ends
 *   the name): the grammar forbids it, but servers send it and nothing is
 *   ambiguous. A raw NUL or CR in the command or a header is an error, and
 *   so is a name or value that is not UTF-8 ("Value Encoding").
 * - Repeated headers are all kept in order; lookups return the first one,
 *   which is the one that counts ("Repeated Header Entries"). The first
 *   content-length alone decides where the body ends.
 * - Only SEND, MESSAGE and ERROR may carry a body ("Body"); a body in any
 *   other frame is an error. Without content-length the body ends at the
 *   first NUL; with it, exactly that many bytes (NULs included) are read and
 *   a NUL must follow ("Header content-length").
 * - EOLs between frames are heart-beats ("Heart-beating") and are reported
 *   as such, including the EOLs that may follow a frame's NUL (RabbitMQ
 *   sends one after every frame). A stray NUL between frames is an error.
 * - Only the fifteen commands of the specification are accepted.
 *
 * Memory: the parser is meant to be embedded in a connection (72
 * bytes) and allocates only while a frame spans several reads, in one
 * block that grows geometrically (or straight to the announced size when
 * content-length is known), and by default gives it back as soon as the
 * frame has been handed out. Frames complete inside one read are handed
 * out without copying (only the header block of a frame with escapes is
 * copied, to be decoded; never the body). Limits live in a struct the
 * caller shares between parsers. */
#ifndef USP_STOMP_H
#define USP_STOMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/errors.h"

/* content-type of USP Records [R-STOMP.20]. */
#define USP_STOMP_CONTENT_TYPE "application/vnd.bbf.usp.msg"
/* What a heart-beat is on the wire: one EOL ("Heart-beating"). */
#define USP_STOMP_HEARTBEAT_EOL "\n"

/* ---- Commands ------------------------------------------------------------ */

enum usp_stomp_cmd {
    USP_STOMP_HEARTBEAT, /* not a frame: EOLs between frames */
    USP_STOMP_CONNECT,
    USP_STOMP_STOMP,
    USP_STOMP_CONNECTED,
    USP_STOMP_SEND,
    USP_STOMP_SUBSCRIBE,
    USP_STOMP_UNSUBSCRIBE,
    USP_STOMP_ACK,
    USP_STOMP_NACK,
    USP_STOMP_BEGIN,
    USP_STOMP_COMMIT,
    USP_STOMP_ABORT,
    USP_STOMP_DISCONNECT,
    USP_STOMP_MESSAGE,
    USP_STOMP_RECEIPT,
    USP_STOMP_ERROR,
    USP_STOMP_CMD_COUNT
};

/* "CONNECT", "MESSAGE", ...; "heart-beat" for USP_STOMP_HEARTBEAT; NULL
 * for a value out of range. */
const char *usp_stomp_cmd_name(enum usp_stomp_cmd cmd);
/* Whether frames with this command may carry a body (SEND, MESSAGE, ERROR). */
bool usp_stomp_cmd_has_body(enum usp_stomp_cmd cmd);
/* Whether header escapes apply to this command (all but CONNECT, CONNECTED). */
bool usp_stomp_cmd_escapes(enum usp_stomp_cmd cmd);

/* ---- Frames -------------------------------------------------------------- */

/* Bytes that are not NUL-terminated. p is NULL (and len 0) for a header
 * that is absent. */
struct usp_stomp_str {
    const char *p;
    size_t len;
};

struct usp_stomp_header {
    struct usp_stomp_str name, value; /* decoded */
};

/* Most headers a frame can have; the parser's limit is at most this. */
#define USP_STOMP_HEADERS_CAP 64

/* A parsed frame (or a run of heart-beat EOLs when cmd is
 * USP_STOMP_HEARTBEAT). Everything it points to stays valid until the next
 * call on the parser (parse, reset, cleanup) and, since a frame complete
 * inside one read is not copied, as long as the bytes passed to that
 * usp_stomp_parse call. About 2 KB: keep it on the stack, not per
 * connection. */
struct usp_stomp_frame {
    enum usp_stomp_cmd cmd;
    uint32_t eols; /* HEARTBEAT: EOLs received (CRLF counts once) */
    size_t nhdr;
    struct usp_stomp_header hdr[USP_STOMP_HEADERS_CAP]; /* in the order received */
    const uint8_t *body;                                /* non-NULL for frames */
    size_t body_len;
    bool has_content_length;
    /* Bytes the frame took on the wire, its NUL included; for heart-beats,
     * the bytes of this call that the EOLs took. */
    size_t wire_len;
};

/* The first header called `name` (the one that counts), or {NULL, 0}. */
struct usp_stomp_str usp_stomp_header(const struct usp_stomp_frame *f, const char *name);
/* Whether `s` is present and equal to the C string `lit`. */
bool usp_stomp_str_eq(struct usp_stomp_str s, const char *lit);

/* ---- Parser -------------------------------------------------------------- */

struct usp_stomp_limits {
    uint32_t max_frame;   /* whole frame: command, headers, body, NUL */
    uint32_t max_headers; /* header lines per frame, at most USP_STOMP_HEADERS_CAP */
    uint32_t max_line;    /* one command or header line as received, EOL excluded */
    /* Buffer bytes kept once a frame has been handed out, for the next
     * frame that spans reads; 0 frees the buffer every time (the right
     * choice for many idle connections). */
    uint32_t keep_buffer;
    /* Decode escapes in CONNECT and CONNECTED too. Off by default, per the
     * specification; RabbitMQ escapes every header it sends, CONNECTED
     * included, which only matters for values with ':' or '\'. */
    bool unescape_connect;
};

#define USP_STOMP_MAX_FRAME_DEFAULT   (4u * 1024 * 1024 + 64 * 1024)
#define USP_STOMP_MAX_HEADERS_DEFAULT USP_STOMP_HEADERS_CAP
#define USP_STOMP_MAX_LINE_DEFAULT    8192u

/* Fills `lim` with the defaults above (keep_buffer 0, unescape_connect
 * false). A zero field of a limits struct given to the parser also means
 * its default. */
void usp_stomp_limits_init(struct usp_stomp_limits *lim);

/* Parser state. Embed it; the fields are private. */
struct usp_stomp_parser {
    const struct usp_stomp_limits *lim;
    uint8_t *buf; /* the current frame while it spans reads */
    uint32_t len, cap;
    uint32_t pos;     /* bytes of the current frame seen */
    uint32_t line;    /* bytes of the current line */
    uint32_t hdr_len; /* bytes before the body, once known */
    uint32_t left;    /* body bytes still to come (content-length known) */
    uint32_t clen;    /* the first content-length */
    uint32_t frames;  /* frames handed out, for error messages */
    uint32_t err_off; /* error: offset in the frame */
    uint16_t nhdr;
    uint8_t state, cmd, cmd_len, cl_match, flags;
    uint8_t err, err_byte;
    char cmd_buf[11];
};

/* Ready to parse a new stream. `lim` (NULL: defaults) is not copied and must
 * outlive the parser; share one between parsers. Allocates nothing. */
void usp_stomp_parser_init(struct usp_stomp_parser *p, const struct usp_stomp_limits *lim);
/* Frees the buffer. The parser can be initialised again. */
void usp_stomp_parser_cleanup(struct usp_stomp_parser *p);
/* Back to the start of a stream (a new connection): drops a partial frame
 * and a pending error. */
void usp_stomp_parser_reset(struct usp_stomp_parser *p);

/* Parses from `data` (`len` bytes, any split of the stream: one byte, or
 * many frames) until one frame or run of heart-beat EOLs is complete.
 * `*used` is set to the bytes of `data` consumed. Returns
 *   1  `*f` holds a frame or heart-beats; call again with data + *used;
 *   0  every byte was consumed (*used == len) and nothing is complete yet;
 *   USP_EPROTO  the stream is malformed;
 *   USP_ERANGE  a limit was exceeded;
 *   USP_ENOMEM.
 * After an error the parser returns that error until reset; the binding
 * then sends ERROR (if it is the server) and closes the connection, with
 * usp_stomp_parser_why as the reason. Typical loop:
 *     int rc = 0;
 *     while (len && (rc = usp_stomp_parse(p, d, len, &used, &f)) == 1) {
 *         d += used, len -= used;
 *         handle(&f);
 *     }
 *     if (rc < 0) fail(); */
int usp_stomp_parse(struct usp_stomp_parser *p, const uint8_t *data, size_t len, size_t *used,
                    struct usp_stomp_frame *f);

/* A sentence saying what is wrong and where, e.g. "STOMP frame 3, byte 57
 * (header 2): undefined escape sequence \t"; "" when there is no error.
 * Writes at most `n` bytes, NUL included. Returns the length it wanted. */
size_t usp_stomp_parser_why(const struct usp_stomp_parser *p, char *buf, size_t n);
/* Bytes the parser holds on the heap now. */
size_t usp_stomp_parser_mem(const struct usp_stomp_parser *p);
/* Whether part of a frame (or a CR) has been received and not completed:
 * a connection closing now cut a frame short. False after an error. */
bool usp_stomp_parser_in_frame(const struct usp_stomp_parser *p);

/* ---- Received frames, by kind ---------------------------------------------
 * Views over a parsed frame, valid as long as the frame. Each returns 0,
 * USP_EINVAL when the frame is of another command, or USP_EPROTO when a
 * header the specification requires is missing or malformed; `why` (may be
 * NULL) then says which. */

struct usp_stomp_connected {
    struct usp_stomp_str version;        /* "1.2" (checked) */
    struct usp_stomp_str session;        /* optional */
    struct usp_stomp_str server;         /* optional */
    struct usp_stomp_str subscribe_dest; /* USP: the destination to use [R-STOMP.6, 14] */
    bool has_heart_beat;
    uint32_t sx, sy; /* heart-beat:<sx>,<sy>; 0,0 without the header */
};
int usp_stomp_connected_view(const struct usp_stomp_frame *f, struct usp_stomp_connected *out,
                             char *why, size_t whylen);

struct usp_stomp_message {
    struct usp_stomp_str destination;   /* required */
    struct usp_stomp_str message_id;    /* required */
    struct usp_stomp_str subscription;  /* required */
    struct usp_stomp_str content_type;  /* USP_STOMP_CONTENT_TYPE for a Record */
    struct usp_stomp_str reply_to_dest; /* where to answer [R-STOMP.23] */
    struct usp_stomp_str ack;           /* only for client acknowledgement */
    /* RabbitMQ copies a SEND's `receipt` header into the MESSAGE frames it
     * delivers; it is not addressed to us and needs no answer. */
    struct usp_stomp_str receipt;
    bool has_content_length; /* the body was framed by content-length */
    const uint8_t *body;
    size_t body_len;
};
int usp_stomp_message_view(const struct usp_stomp_frame *f, struct usp_stomp_message *out,
                           char *why, size_t whylen);

struct usp_stomp_error {
    struct usp_stomp_str message;    /* short description, optional (SHOULD) */
    struct usp_stomp_str receipt_id; /* the frame it is about, optional */
    struct usp_stomp_str content_type;
    const uint8_t *body; /* details, may be empty */
    size_t body_len;
};
int usp_stomp_error_view(const struct usp_stomp_frame *f, struct usp_stomp_error *out, char *why,
                         size_t whylen);

struct usp_stomp_receipt {
    struct usp_stomp_str receipt_id; /* required */
};
int usp_stomp_receipt_view(const struct usp_stomp_frame *f, struct usp_stomp_receipt *out,
                           char *why, size_t whylen);

/* Parses a heart-beat header value "<x>,<y>" (two decimal numbers of
 * milliseconds, at most UINT32_MAX, nothing else). 0 or USP_EPROTO. */
int usp_stomp_heart_beat_parse(struct usp_stomp_str v, uint32_t *x, uint32_t *y);

/* ---- Heart-beat negotiation (R-STOMP.8-11, STOMP "Heart-beating") ---------
 * We send heart-beat:<cx>,<cy> (OutgoingHeartbeat, IncomingHeartbeat), the
 * server answers heart-beat:<sx>,<sy>. Then we must send something at
 * least every send_ms (0: never), and the server promised data at least
 * every expect_ms (0: nothing to check):
 *   send_ms   = cx == 0 || sy == 0 ? 0 : max(cx, sy)
 *   expect_ms = sx == 0 || cy == 0 ? 0 : max(sx, cy)
 * The timers to run from that, with the margins the specification asks
 * the receiver to allow for:
 *   tx_idle_ms: send an EOL when nothing was sent for this long; half of
 *     send_ms, so that timer and loop jitter never stretch a gap beyond
 *     send_ms (RabbitMQ's own sender works the same way);
 *   rx_timeout_ms: consider the connection dead after this long without
 *     any byte: twice expect_ms.
 * RabbitMQ works in whole seconds: it answers sx = secs(cy) * 1000 and
 * sy = secs(cx) * 1000 with secs(0) = 0, secs(1..999) = 1 and otherwise
 * secs(m) = m / 1000 rounded down, sends when idle for half of sx and
 * closes the connection after 2 to 3 sy of silence. So its sy can be
 * smaller than our cx (cx = 1500 gives sy = 1000 while send_ms is 1500);
 * tx_idle_ms at half of send_ms stays within what it accepts. */
struct usp_stomp_heartbeat {
    uint32_t send_ms, expect_ms;
    uint32_t tx_idle_ms, rx_timeout_ms;
};
void usp_stomp_heartbeat_negotiate(uint32_t cx, uint32_t cy, uint32_t sx, uint32_t sy,
                                   struct usp_stomp_heartbeat *out);
/* What RabbitMQ answers to heart-beat:<cx>,<cy> (see above); for tests and
 * a simulated broker. */
void usp_stomp_heartbeat_rabbitmq(uint32_t cx, uint32_t cy, uint32_t *sx, uint32_t *sy);

/* ---- Encoders -------------------------------------------------------------
 * Each writes a whole frame (or a frame head) into buf[0..cap) and sets
 * `*len` to the bytes it needs, also when they do not fit. 0, USP_ERANGE
 * when cap is too small (buf may be NULL with cap 0 to measure), or
 * USP_EINVAL for something no valid frame can carry: a name or value that
 * is not UTF-8 or holds a NUL; an empty name; in CONNECT/CONNECTED (no
 * escapes) a CR or LF anywhere or a ':' in a name; a body in a frame that
 * cannot have one; a body with a NUL but no content-length; a
 * content-length header that is not the body's length. */

/* Any frame, headers written in order as given (escaped as the command
 * requires), nothing added: the inverse of the parser, for tests, fault
 * injection and a simulated broker. cmd USP_STOMP_HEARTBEAT writes one EOL. */
int usp_stomp_encode(enum usp_stomp_cmd cmd, const struct usp_stomp_header *hdr, size_t nhdr,
                     const uint8_t *body, size_t body_len, uint8_t *buf, size_t cap, size_t *len);
/* The same up to and including the blank line: the body and one NUL byte
 * must follow (a separate buffer saves copying a Record). `body_len` and
 * whether the body holds a NUL are what the checks above need; body_has_nul
 * is ignored when a content-length header is given. */
int usp_stomp_encode_head(enum usp_stomp_cmd cmd, const struct usp_stomp_header *hdr, size_t nhdr,
                          size_t body_len, bool body_has_nul, uint8_t *buf, size_t cap,
                          size_t *len);

/* STOMP frame opening the session [R-STOMP.2-5, 8-10]:
 *   STOMP
 *   accept-version:1.2
 *   host:<host>                  if host is not NULL
 *   login:<login>                if login is not NULL [R-STOMP.3]
 *   passcode:<passcode>          if passcode is not NULL
 *   heart-beat:<cx>,<cy>         if heartbeat (EnableHeartbeats) [R-STOMP.8-10]
 *   endpoint-id:<endpoint_id>    escaped: "os::x" is written os\c\cx [R-STOMP.4] */
struct usp_stomp_connect {
    const char *host;
    const char *login;
    const char *passcode;
    const char *endpoint_id; /* required, non-empty */
    bool heartbeat;
    uint32_t cx, cy; /* OutgoingHeartbeat, IncomingHeartbeat (ms) */
};
int usp_stomp_encode_connect(const struct usp_stomp_connect *c, uint8_t *buf, size_t cap,
                             size_t *len);

/* SUBSCRIBE with id, destination and ack:auto [R-STOMP.12, 13, 17]. */
int usp_stomp_encode_subscribe(const char *id, const char *destination, uint8_t *buf, size_t cap,
                               size_t *len);
/* UNSUBSCRIBE with id [R-STOMP.31/32]. */
int usp_stomp_encode_unsubscribe(const char *id, uint8_t *buf, size_t cap, size_t *len);

/* SEND carrying a Record [R-STOMP.18-22]:
 *   SEND
 *   destination:<destination>
 *   content-type:<content_type, default USP_STOMP_CONTENT_TYPE>
 *   content-length:<body_len>
 *   reply-to-dest:<reply_to_dest>
 *   receipt:<receipt>            if receipt is not NULL */
struct usp_stomp_send {
    const char *destination;   /* required, non-empty */
    const char *reply_to_dest; /* required, non-empty [R-STOMP.21] */
    const char *content_type;  /* NULL: USP_STOMP_CONTENT_TYPE */
    const char *receipt;
};
int usp_stomp_encode_send(const struct usp_stomp_send *s, const uint8_t *body, size_t body_len,
                          uint8_t *buf, size_t cap, size_t *len);
/* Its head only: the body and one NUL byte follow. */
int usp_stomp_encode_send_head(const struct usp_stomp_send *s, size_t body_len, uint8_t *buf,
                               size_t cap, size_t *len);

/* DISCONNECT, with receipt:<receipt> unless it is NULL ("DISCONNECT"). */
int usp_stomp_encode_disconnect(const char *receipt, uint8_t *buf, size_t cap, size_t *len);

#endif
