/* The STOMP binding (TR-369 "STOMP Binding", R-STOMP.*): our own STOMP 1.2
 * client on a uv_tcp_t of the context's loop, with the sans-IO frame codec
 * of usp/stomp.h. Host names are resolved with uv_getaddrinfo, so nothing
 * blocks the loop; every deadline (retry, connect timeout, heart-beats,
 * close timeout) is the connection's one entry on the context's timer
 * wheel.
 *
 * Life of a connection: open -> [wait for a connect slot] -> [resolve] ->
 * TCP connect -> STOMP -> CONNECTED (destination and heart-beats settled,
 * the slot given back) -> SUBSCRIBE with a receipt -> RECEIPT -> UP (an
 * agent sends its STOMPConnectRecord) ... -> lost: the socket is closed,
 * DOWN is reported and the next attempt scheduled after the server-retry
 * back-off. A graceful close sends the DisconnectRecord, then DISCONNECT
 * with a receipt, and ends in CLOSED once the receipt (or the server's
 * close) arrives.
 *
 * Bytes in and out go through two functions only, feed() and
 * wire_write(): TLS (stomps://) sits there, a tls_stream (OpenSSL on a BIO
 * of our own, tls_stream_int.h) between the socket and the parser. With
 * stomps:// the client verifies the broker's certificate against
 * cfg->tls.ca_file and the URL's host [R-MTP.1, R-MTP.4], and sends its
 * own certificate (cfg->tls.cert_file/key_file, set per connection on a
 * context shared by every connection with that CA). The STOMP frame
 * follows once the TLS handshake is done; login and passcode are sent when
 * configured, and with a client certificate and no username configured
 * none are sent [R-STOMP.3]. A certificate that does not verify, or a
 * broker that refuses ours, is DOWN with reason refused and the TLS reason
 * in the detail (code -9, USP_EPERM: the broker's certificate did not
 * verify; -4, USP_EPROTO: the TLS session failed, e.g. an alert from the
 * broker). Costs: OpenSSL's session on top of the connection, about 25 KB
 * once up (its record buffers are released between records).
 *
 * Memory: a connection is one allocation (the struct, its uv_tcp_t and its
 * configuration strings). Nothing else stays allocated while it is idle:
 * each read gets a buffer that is freed once its frames are handled (the
 * parser copies only a frame cut across reads, and frees that copy once
 * the frame is handed out), and only bytes the socket would not take at
 * once wait in write requests.
 *
 * Re-entrancy, as in the MQTT binding: user callbacks run from inside our
 * own callbacks and may call send, close or free. Every frame that calls
 * out holds `busy`; whatever cannot be done inside (free the connection,
 * report DOWN) is done by the outermost frame (settle), or from the loop
 * when the frame is a call into this API, so that callbacks never run
 * inside the caller's own call. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "mtp_int.h"
#include "tls_stream_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/stomp.h"

/* Bytes asked of the socket per read. */
#define READ_SIZE 65536
/* Room for the command and headers of a MESSAGE around a max_record body:
 * a bigger frame closes the connection. */
#define FRAME_HEADROOM (64u * 1024)
/* Bytes that may wait for the socket beyond the frame being sent: past
 * this the server is not reading and sends are refused. */
#define OUT_QUEUE_SLACK (1024u * 1024)

/* Our only subscription and the receipts we ask for. */
#define SUB_ID      "0"
#define RECEIPT_SUB "usp-subscribed"
#define RECEIPT_BYE "usp-bye"

enum phase {
    P_IDLE,        /* created */
    P_WAIT_SLOT,   /* waiting for a connect slot of the context */
    P_RESOLVING,   /* uv_getaddrinfo */
    P_CONNECTING,  /* TCP connect */
    P_TLS,         /* TLS handshake (stomps://) */
    P_STOMP,       /* STOMP frame sent, waiting for CONNECTED */
    P_SUBSCRIBING, /* SUBSCRIBE sent, waiting for its RECEIPT */
    P_UP,
    P_CLOSING, /* DISCONNECT sent, waiting for its RECEIPT */
    P_RETRY,   /* waiting for the next attempt */
    P_CLOSED,
};

enum handle_state { H_NONE, H_OPEN, H_CLOSING };

struct stomp_conn {
    struct usp_mtp_conn base;
    uv_tcp_t tcp;              /* initialised per attempt (tcp_state) */
    struct usp_tw_entry timer; /* the one deadline of the current phase */
    struct mtp_waiter wait;    /* for a connect slot */
    uv_getaddrinfo_t *gai;
    struct tls_stream *tls; /* stomps://, per attempt */
    struct usp_stomp_parser parser;
    struct usp_stomp_limits lim;
    char *dest;                /* destination in use: cfg_dest, or the server's (dest_owned) */
    char *err_text;            /* what the server or the parser said, for the next report */
    uint64_t last_rx, last_tx; /* wheel time of the last byte in / handed to the socket */
    size_t out_queued;         /* bytes in write requests */
    uint32_t hb_tx_idle, hb_rx_timeout; /* negotiated, ms; 0: off */
    /* Configuration, all in the allocation after the struct. */
    const char *eid, *host, *vhost, *login, *passcode, *cfg_dest, *bind;
    const char *peer_eid, *peer_dest, *usp_version;
    const char *ca, *cert, *key; /* stomps:// */
    unsigned tls_flags;
    uint32_t max_record, connect_timeout_ms, close_timeout_ms;
    uint32_t retry_time_s, retry_mult, retry_max_s, hb_out, hb_in;
    uint32_t attempt; /* failed attempts since the last UP */
    int lost_code;
    uint16_t port;
    uint8_t phase, tcp_state, role, lost_reason, close_reason, busy;
    bool host_is_name, hb_enabled, dest_owned, has_slot, lost, closing, dead, finalizing, api;
    bool use_tls, tls_failed;
};

#define CONN(c) ((struct stomp_conn *)(c))

static struct stomp_conn *of_timer(struct usp_tw_entry *t)
{
    return (struct stomp_conn *)((char *)t - offsetof(struct stomp_conn, timer));
}

static uint64_t now_ms(const struct stomp_conn *m)
{
    const struct usp_mtp_ctx *ctx = m->base.ctx;
    return ctx->tw ? usp_tw_now(ctx->tw) : uv_now(ctx->loop);
}

/* Time from `since` to `now`; 0 when `since` is later (a wheel callback
 * runs at its expiry, which may be before the loop's time of a read). */
static uint64_t elapsed(uint64_t now, uint64_t since)
{
    return now > since ? now - since : 0;
}

static bool settle(struct stomp_conn *m);
static void fire_attempt(struct usp_tw_entry *t, uint64_t now);
static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now);
static void fire_heartbeat(struct usp_tw_entry *t, uint64_t now);

static void enter(struct stomp_conn *m)
{
    m->busy++;
}

/* Ends a frame; the outermost one settles. The caller must not touch `m`
 * afterwards. */
static void leave(struct stomp_conn *m)
{
    if (--m->busy == 0)
        (void)settle(m);
}

static void fire_settle(struct usp_tw_entry *t, uint64_t now)
{
    struct stomp_conn *m = of_timer(t);
    enter(m);
    leave(m);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct stomp_conn *m = h->data;
    m->tcp_state = H_NONE;
    if (m->finalizing) {
        struct usp_mtp_ctx *ctx = m->base.ctx;
        free(m);
        mtp__conn_release(ctx);
    }
}

/* Closes the socket; write requests still queued are cancelled. */
static void tcp_close(struct stomp_conn *m)
{
    if (m->tcp_state != H_OPEN)
        return;
    m->tcp_state = H_CLOSING;
    uv_close((uv_handle_t *)&m->tcp, on_tcp_closed);
}

/* Keeps the first explanation of a loss. */
static void set_err(struct stomp_conn *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(struct stomp_conn *m, const char *fmt, ...)
{
    if (m->err_text)
        return;
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    m->err_text = strdup(buf); /* NULL: the report is only less precise */
}

static void lost(struct stomp_conn *m, enum usp_mtp_reason reason, int code)
{
    if (!m->lost) {
        m->lost = true;
        m->lost_reason = (uint8_t)reason;
        m->lost_code = code;
    }
    tcp_close(m);
}

static void drop_dest(struct stomp_conn *m)
{
    if (m->dest_owned)
        free(m->dest);
    m->dest = NULL;
    m->dest_owned = false;
}

/* Releases everything of the current attempt or session. */
static void drop_session(struct stomp_conn *m)
{
    tcp_close(m);
    if (m->gai) {
        m->gai->data = NULL; /* its callback frees it */
        uv_cancel((uv_req_t *)m->gai);
        m->gai = NULL;
    }
    tls_stream__free(m->tls);
    m->tls = NULL;
    usp_stomp_parser_reset(&m->parser);
    drop_dest(m);
    m->hb_tx_idle = m->hb_rx_timeout = 0;
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
    mtp__connect_wait_cancel(m->base.ctx, &m->wait);
    mtp__timer_cancel(m->base.ctx, &m->timer);
}

static void finalize(struct stomp_conn *m)
{
    drop_session(m);
    usp_stomp_parser_cleanup(&m->parser);
    free(m->err_text);
    m->err_text = NULL;
    m->finalizing = true;
    if (m->tcp_state == H_NONE) {
        struct usp_mtp_ctx *ctx = m->base.ctx;
        free(m);
        mtp__conn_release(ctx);
    }
    /* else on_tcp_closed frees it */
}

static void describe_loss(const struct stomp_conn *m, enum usp_mtp_reason r, int code, char *buf,
                          size_t n)
{
    const char *e = m->err_text ? m->err_text : NULL;
    switch (r) {
    case USP_MTP_R_RESOLVE:
        snprintf(buf, n, "cannot resolve %s: %s", m->host, uv_strerror(code));
        break;
    case USP_MTP_R_CONNECT:
        snprintf(buf, n, "cannot connect to %s port %u: %s", m->host, m->port,
                 code ? strerror(code) : "connection failed");
        break;
    case USP_MTP_R_TIMEOUT:
        snprintf(buf, n, "no STOMP session with %s port %u within %u ms", m->host, m->port,
                 m->connect_timeout_ms);
        break;
    case USP_MTP_R_REFUSED:
        if (m->tls_failed)
            snprintf(buf, n, "TLS with %s port %u failed: %s", m->host, m->port,
                     e ? e : "no reason given");
        else
            snprintf(buf, n, "the server refused the session: %s", e ? e : "no reason given");
        break;
    case USP_MTP_R_SUBSCRIBE:
        snprintf(buf, n, "the server refused the subscription: %s", e ? e : "no reason given");
        break;
    case USP_MTP_R_NO_TOPIC:
        snprintf(buf, n,
                 "no destination: the server gave no subscribe-dest and none is configured; "
                 "DISCONNECT sent [R-STOMP.16]");
        break;
    case USP_MTP_R_KEEPALIVE:
        snprintf(buf, n, "%s", e ? e : "the server sent nothing within the heart-beat interval");
        break;
    case USP_MTP_R_PEER_CLOSED:
        snprintf(buf, n, "the server ended the session: %s", e ? e : "no reason given");
        break;
    case USP_MTP_R_CLOSED:
        snprintf(buf, n,
                 code ? "closed; the server did not answer the DISCONNECT in time, connection cut"
                      : "closed");
        break;
    case USP_MTP_R_LOST:
        if (e)
            snprintf(buf, n, "connection closed: %s", e);
        else
            snprintf(buf, n, "connection lost: %s",
                     code > 0 ? strerror(code) : "the server closed the connection");
        break;
    default:
        snprintf(buf, n, "internal error: %s", code < 0 ? usp_strerror(code) : "libuv refused");
        break;
    }
}

/* STOMP's server-retry wait before attempt n (1 = first): a random time
 * between 0 and m * (k/1000)^(n-1) seconds, n capped at 10, at most max_s
 * (TR-181 STOMP.Connection ServerRetry*). The context's random source. */
static uint32_t server_retry_ms(struct stomp_conn *m, uint32_t n)
{
    if (n < 1)
        n = 1;
    if (n > 10)
        n = 10;
    double hi = m->retry_time_s;
    for (uint32_t i = 1; i < n; i++)
        hi *= m->retry_mult / 1000.0;
    if (hi > m->retry_max_s)
        hi = m->retry_max_s;
    double r = (double)(mtp__rand(m->base.ctx) >> 11) / (double)(1ull << 53); /* [0, 1) */
    double ms = hi * r * 1000.0;
    return ms >= 4294967295.0 ? UINT32_MAX : (uint32_t)ms;
}

/* After a loss: release the session, then report CLOSED, or DOWN with the
 * next attempt scheduled. Runs from the loop, with busy held. */
static void teardown(struct stomp_conn *m)
{
    struct usp_mtp_ctx *ctx = m->base.ctx;
    enum phase was = m->phase;
    enum usp_mtp_reason r = m->lost_reason;
    int code = m->lost_code;
    char detail[400];

    m->lost = false;
    drop_session(m);
    describe_loss(m, r, code, detail, sizeof detail);
    free(m->err_text);
    m->err_text = NULL;
    m->tls_failed = false;
    if (m->closing) {
        m->phase = P_CLOSED;
        mtp__log(ctx, USP_MTP_LOG_INFO, m->eid, "STOMP %s:%u: %s", m->host, m->port, detail);
        mtp__emit_state(&m->base, USP_MTP_CLOSED, r, code, m->attempt, 0, detail);
        return;
    }
    if (was == P_UP)
        MTP_STAT(&m->base, drops, 1);
    else
        MTP_STAT(&m->base, attempts_failed, 1);
    m->attempt++;
    uint32_t delay = server_retry_ms(m, m->attempt);
    m->phase = P_RETRY;
    mtp__timer_arm(ctx, &m->timer, delay, fire_attempt);
    mtp__log(ctx, USP_MTP_LOG_INFO, m->eid, "STOMP %s:%u down: %s; retry %u in %u ms", m->host,
             m->port, detail, m->attempt, delay);
    mtp__emit_state(&m->base, USP_MTP_DOWN, r, code, m->attempt, delay, detail);
}

/* Finishes what callbacks left: a free (false: `m` is gone) or a loss. */
static bool settle(struct stomp_conn *m)
{
    for (;;) {
        if (m->dead) {
            finalize(m);
            return false;
        }
        if (!m->lost)
            break;
        if (m->api) {
            /* Inside a call into this API: report from the loop. */
            tcp_close(m);
            mtp__timer_arm(m->base.ctx, &m->timer, 0, fire_settle);
            return true;
        }
        m->busy++;
        teardown(m);
        m->busy--;
    }
    return true;
}

/* A call into this API: like enter/leave, but a loss found on the way is
 * reported from the loop. */
static void api_enter(struct stomp_conn *m)
{
    if (m->busy == 0)
        m->api = true;
    m->busy++;
}

static void api_leave(struct stomp_conn *m)
{
    if (m->busy == 1) {
        m->busy = 0;
        if (settle(m))
            m->api = false;
        return;
    }
    m->busy--;
}

/* ---- Bytes out ------------------------------------------------------------- */

struct out_chunk {
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct out_chunk *c = (struct out_chunk *)req;
    struct stomp_conn *m = req->handle->data;
    m->out_queued -= c->len;
    free(c);
    if (status < 0 && status != UV_ECANCELED && m->tcp_state == H_OPEN) {
        enter(m);
        lost(m, USP_MTP_R_LOST, -status);
        leave(m);
    }
}

/* Hands bufs to the socket: what it does not take at once waits in one
 * write request (libuv keeps the order). 0, USP_EIO (no socket, or the
 * server does not read: nothing was written), USP_ENOMEM. A failure after
 * part of a frame went out loses the connection. */
static int raw_write(struct stomp_conn *m, const uv_buf_t *b, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += b[i].len;
    if (m->tcp_state != H_OPEN || m->lost)
        return USP_EIO;
    if (m->out_queued && m->out_queued + total > (size_t)m->max_record + OUT_QUEUE_SLACK)
        return USP_EIO;
    int w = uv_try_write((uv_stream_t *)&m->tcp, b, n);
    if (w < 0 && w != UV_EAGAIN) {
        lost(m, USP_MTP_R_LOST, -w);
        return USP_EIO;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    m->last_tx = now_ms(m);
    if (done == total)
        return 0;
    struct out_chunk *c = malloc(sizeof *c + (total - done));
    if (!c) {
        if (done)
            lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        return USP_ENOMEM;
    }
    size_t skip = done, o = 0;
    for (unsigned i = 0; i < n; i++) {
        if (skip >= b[i].len) {
            skip -= b[i].len;
            continue;
        }
        memcpy(c->data + o, b[i].base + skip, b[i].len - skip);
        o += b[i].len - skip;
        skip = 0;
    }
    c->len = o;
    uv_buf_t ub = uv_buf_init((char *)c->data, (unsigned)o);
    int rc = uv_write(&c->req, (uv_stream_t *)&m->tcp, &ub, 1, on_written);
    if (rc) {
        free(c);
        lost(m, USP_MTP_R_LOST, -rc);
        return USP_EIO;
    }
    m->out_queued += o;
    return 0;
}

/* Writes what TLS has for the socket. */
static int tls_flush(struct stomp_conn *m)
{
    const uint8_t *p;
    size_t n = tls_stream__out(m->tls, &p);
    if (!n)
        return 0;
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
    int rc = raw_write(m, &b, 1);
    tls_stream__out_clear(m->tls);
    return rc;
}

/* Every byte to the server goes through here: encrypted with stomps://. */
static int wire_write(struct stomp_conn *m, const uv_buf_t *b, unsigned n)
{
    if (!m->tls)
        return raw_write(m, b, n);
    if (m->tcp_state != H_OPEN || m->lost)
        return USP_EIO;
    if (m->out_queued && m->out_queued > (size_t)m->max_record + OUT_QUEUE_SLACK)
        return USP_EIO;
    for (unsigned i = 0; i < n; i++) {
        int rc = tls_stream__write(m->tls, (const uint8_t *)b[i].base, b[i].len);
        if (rc) {
            tls_stream__out_clear(m->tls);
            if (rc != USP_ENOMEM) {
                set_err(m, "TLS: %s", tls_stream__why(m->tls));
                lost(m, USP_MTP_R_LOST, USP_EPROTO);
            }
            return rc == USP_ENOMEM ? rc : USP_EIO;
        }
    }
    return tls_flush(m);
}

/* A frame without a body: `hdr` in order. */
static int send_frame(struct stomp_conn *m, enum usp_stomp_cmd cmd,
                      const struct usp_stomp_header *hdr, size_t nhdr)
{
    uint8_t stack[512], *buf = stack;
    size_t len;
    int rc = usp_stomp_encode(cmd, hdr, nhdr, NULL, 0, stack, sizeof stack, &len);
    if (rc == USP_ERANGE) {
        buf = malloc(len);
        rc = buf ? usp_stomp_encode(cmd, hdr, nhdr, NULL, 0, buf, len, &len) : USP_ENOMEM;
    }
    if (rc == 0) {
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        rc = wire_write(m, &b, 1);
    }
    if (buf != stack)
        free(buf);
    return rc;
}

static struct usp_stomp_header hdr(const char *name, const char *value)
{
    struct usp_stomp_header h = {{name, strlen(name)}, {value, strlen(value)}};
    return h;
}

/* The STOMP frame [R-STOMP.2-5, 8-10]. */
static int send_connect(struct stomp_conn *m)
{
    struct usp_stomp_connect c = {
        .host = m->vhost,
        .login = m->login,
        .passcode = m->passcode,
        .endpoint_id = m->eid,
        .heartbeat = m->hb_enabled,
        .cx = m->hb_out,
        .cy = m->hb_in,
    };
    uint8_t stack[512], *buf = stack;
    size_t len;
    int rc = usp_stomp_encode_connect(&c, stack, sizeof stack, &len);
    if (rc == USP_ERANGE) {
        buf = malloc(len);
        rc = buf ? usp_stomp_encode_connect(&c, buf, len, &len) : USP_ENOMEM;
    }
    if (rc == 0) {
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        rc = wire_write(m, &b, 1);
    }
    if (buf != stack)
        free(buf);
    return rc;
}

/* One Record as a SEND to `to`, with our reply-to-dest [R-STOMP.18-22].
 * The body is not copied unless the socket makes it wait. */
static int send_record(struct stomp_conn *m, const char *to, const uint8_t *rec, size_t len)
{
    struct usp_stomp_send s = {.destination = to, .reply_to_dest = m->dest};
    uint8_t stack[512], *head = stack;
    size_t hlen;
    int rc = usp_stomp_encode_send_head(&s, len, stack, sizeof stack, &hlen);
    if (rc == USP_ERANGE) {
        head = malloc(hlen);
        rc = head ? usp_stomp_encode_send_head(&s, len, head, hlen, &hlen) : USP_ENOMEM;
    }
    if (rc == USP_EINVAL) {
        MTP_STAT(&m->base, tx_refused, 1);
    } else if (rc == 0) {
        uv_buf_t b[3] = {
            uv_buf_init((char *)head, (unsigned)hlen),
            uv_buf_init((char *)(uintptr_t)rec, (unsigned)len),
            uv_buf_init((char *)"", 1), /* the frame's NUL */
        };
        rc = wire_write(m, b, 3);
        if (rc == 0) {
            MTP_STAT(&m->base, tx_records, 1);
            MTP_STAT(&m->base, tx_bytes, len);
        } else {
            MTP_STAT(&m->base, tx_failed, 1);
        }
    } else {
        MTP_STAT(&m->base, tx_failed, 1);
    }
    if (head != stack)
        free(head);
    return rc;
}

/* STOMPConnectRecord [R-MTP.6] or DisconnectRecord [R-MTP.7] to the peer. */
static int send_own_record(struct stomp_conn *m, bool connect, uint32_t reason_code,
                           const char *reason)
{
    struct usp_arena *a = usp_arena_new(512);
    if (!a)
        return USP_ENOMEM;
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__STOMPConnectRecord sc = USP_RECORD__STOMPCONNECT_RECORD__INIT;
    UspRecord__DisconnectRecord dc = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = (char *)(m->usp_version ? m->usp_version : USP_VERSION_DEFAULT);
    rec.to_id = (char *)m->peer_eid;
    rec.from_id = (char *)m->eid;
    if (connect) {
        sc.version = USP_RECORD__STOMPCONNECT_RECORD__STOMPVERSION__V1_2;
        sc.subscribed_destination = m->dest;
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT;
        rec.stomp_connect = &sc;
    } else {
        dc.reason = (char *)(reason ? reason : "");
        dc.reason_code = reason_code;
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT;
        rec.disconnect = &dc;
    }
    uint8_t *buf;
    size_t len;
    int rc = usp_record_encode(a, &rec, &buf, &len);
    if (rc == 0)
        rc = send_record(m, m->peer_dest, buf, len);
    if (rc)
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid, "STOMP: cannot send the %s to %s: %s",
                 connect ? "STOMPConnectRecord" : "DisconnectRecord", m->peer_dest,
                 usp_strerror(rc));
    usp_arena_free(a);
    return rc;
}

/* Heart-beats [R-STOMP.8-11]: the next moment an EOL is due or the
 * server's silence becomes fatal. */
static void arm_heartbeat(struct stomp_conn *m)
{
    if (!m->hb_tx_idle && !m->hb_rx_timeout)
        return;
    uint64_t now = now_ms(m), next = UINT64_MAX;
    if (m->hb_tx_idle)
        next = m->last_tx + m->hb_tx_idle;
    if (m->hb_rx_timeout && m->last_rx + m->hb_rx_timeout < next)
        next = m->last_rx + m->hb_rx_timeout;
    mtp__timer_arm(m->base.ctx, &m->timer, next > now ? next - now : 0, fire_heartbeat);
}

static void fire_heartbeat(struct usp_tw_entry *t, uint64_t now)
{
    struct stomp_conn *m = of_timer(t);
    if (m->phase != P_UP || m->lost || m->dead)
        return;
    enter(m);
    if (m->hb_rx_timeout && elapsed(now, m->last_rx) >= m->hb_rx_timeout) {
        set_err(m, "the server sent nothing for %llu ms (heart-beat: every %u ms expected)",
                (unsigned long long)elapsed(now, m->last_rx), m->hb_rx_timeout / 2);
        lost(m, USP_MTP_R_KEEPALIVE, 0);
    } else {
        if (m->hb_tx_idle && elapsed(now, m->last_tx) >= m->hb_tx_idle) {
            uv_buf_t b = uv_buf_init((char *)USP_STOMP_HEARTBEAT_EOL, 1);
            (void)wire_write(m, &b, 1);
        }
        if (!m->lost)
            arm_heartbeat(m);
    }
    leave(m);
}

/* ---- Frames in ------------------------------------------------------------- */

static void give_slot(struct stomp_conn *m)
{
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
}

static void go_up(struct stomp_conn *m)
{
    m->phase = P_UP;
    m->attempt = 0;
    give_slot(m);
    mtp__timer_cancel(m->base.ctx, &m->timer);
    arm_heartbeat(m);
    MTP_STAT(&m->base, ups, 1);
    if (m->role == USP_MTP_AGENT && m->peer_eid)
        send_own_record(m, true, 0, NULL);
    char detail[200];
    if (m->hb_tx_idle || m->hb_rx_timeout)
        snprintf(detail, sizeof detail,
                 "subscribed to %.100s; heart-beats: send every %u ms, expect every %u ms", m->dest,
                 m->hb_tx_idle * 2, m->hb_rx_timeout / 2);
    else
        snprintf(detail, sizeof detail, "subscribed to %.100s; no heart-beats", m->dest);
    mtp__log(m->base.ctx, USP_MTP_LOG_INFO, m->eid, "STOMP %s:%u up, %s", m->host, m->port, detail);
    mtp__emit_state(&m->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, detail);
}

static void protocol_error(struct stomp_conn *m, const char *what)
{
    set_err(m, "%s", what);
    lost(m, USP_MTP_R_LOST, USP_EPROTO);
}

static void on_connected(struct stomp_conn *m, const struct usp_stomp_frame *f)
{
    struct usp_stomp_connected cd;
    char why[160];
    if (usp_stomp_connected_view(f, &cd, why, sizeof why) < 0) {
        set_err(m, "%s", why);
        lost(m, USP_MTP_R_REFUSED, USP_EPROTO);
        return;
    }
    /* The server answered: it is out of its listen backlog, which the
     * connect cap protects. */
    give_slot(m);
    /* The server's destination wins [R-STOMP.14/15]. */
    if (cd.subscribe_dest.p && cd.subscribe_dest.len) {
        m->dest = strndup(cd.subscribe_dest.p, cd.subscribe_dest.len);
        if (!m->dest) {
            lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
            return;
        }
        m->dest_owned = true;
    } else if (m->cfg_dest[0]) {
        m->dest = (char *)m->cfg_dest;
    } else {
        /* Neither: DISCONNECT and try again later [R-STOMP.16]. */
        (void)send_frame(m, USP_STOMP_DISCONNECT, NULL, 0);
        lost(m, USP_MTP_R_NO_TOPIC, 0);
        return;
    }
    if (m->hb_enabled) {
        struct usp_stomp_heartbeat hb;
        usp_stomp_heartbeat_negotiate(m->hb_out, m->hb_in, cd.sx, cd.sy, &hb);
        m->hb_tx_idle = hb.tx_idle_ms;
        m->hb_rx_timeout = hb.rx_timeout_ms;
    }
    struct usp_stomp_header h[] = {
        hdr("id", SUB_ID),
        hdr("destination", m->dest),
        hdr("ack", "auto"), /* [R-STOMP.17] */
        hdr("receipt", RECEIPT_SUB),
    };
    int rc = send_frame(m, USP_STOMP_SUBSCRIBE, h, sizeof h / sizeof h[0]);
    if (rc == USP_EINVAL) {
        set_err(m, "the server's subscribe-dest \"%.100s\" cannot be sent back in a SUBSCRIBE",
                m->dest);
        lost(m, USP_MTP_R_SUBSCRIBE, rc);
    } else if (rc && !m->lost) {
        lost(m, USP_MTP_R_INTERNAL, rc);
    } else {
        m->phase = P_SUBSCRIBING;
    }
}

static void on_receipt(struct stomp_conn *m, const struct usp_stomp_frame *f)
{
    struct usp_stomp_receipt r;
    char why[160];
    if (usp_stomp_receipt_view(f, &r, why, sizeof why) < 0) {
        protocol_error(m, why);
        return;
    }
    if (m->phase == P_SUBSCRIBING && usp_stomp_str_eq(r.receipt_id, RECEIPT_SUB))
        go_up(m);
    else if (m->phase == P_CLOSING && usp_stomp_str_eq(r.receipt_id, RECEIPT_BYE))
        lost(m, m->close_reason, 0);
    /* Other receipts are not ours to act on. */
}

/* The media type of a Record [R-STOMP.20], parameters and case aside. */
static bool content_type_ok(struct usp_stomp_str ct)
{
    if (!ct.p)
        return true; /* tolerated */
    size_t n = 0;
    while (n < ct.len && ct.p[n] != ';')
        n++;
    while (n && (ct.p[n - 1] == ' ' || ct.p[n - 1] == '\t'))
        n--;
    return n == strlen(USP_STOMP_CONTENT_TYPE) && strncasecmp(ct.p, USP_STOMP_CONTENT_TYPE, n) == 0;
}

static void on_message(struct stomp_conn *m, const struct usp_stomp_frame *f)
{
    /* A delivery proves the subscription even before its receipt. */
    if (m->phase == P_SUBSCRIBING)
        go_up(m);
    if (m->lost || m->dead)
        return;
    if (m->phase != P_UP && m->phase != P_CLOSING) {
        protocol_error(m, "the server sent a MESSAGE before any subscription");
        return;
    }
    struct usp_stomp_message msg;
    char why[160];
    if (usp_stomp_message_view(f, &msg, why, sizeof why) < 0) {
        MTP_STAT(&m->base, rx_dropped, 1);
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid, "STOMP: dropped a MESSAGE: %s", why);
        return;
    }
    if (msg.body_len == 0) {
        MTP_STAT(&m->base, rx_dropped, 1);
        return;
    }
    if (!content_type_ok(msg.content_type)) {
        MTP_STAT(&m->base, rx_dropped, 1);
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                 "STOMP: dropped a MESSAGE with content-type \"%.*s\"",
                 (int)(msg.content_type.len > 60 ? 60 : msg.content_type.len), msg.content_type.p);
        return;
    }
    if (msg.body_len > m->max_record) {
        MTP_STAT(&m->base, rx_oversize, 1);
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                 "STOMP: dropped a %zu-byte record (max_record %u)", msg.body_len, m->max_record);
        return;
    }
    /* NUL-terminated copies of the destination and the reply-to-dest. */
    size_t dl = msg.destination.len, rl = msg.reply_to_dest.len;
    char stack[512];
    char *buf = dl + rl + 2 <= sizeof stack ? stack : malloc(dl + rl + 2);
    if (!buf) {
        MTP_STAT(&m->base, rx_dropped, 1);
        return;
    }
    memcpy(buf, msg.destination.p, dl);
    buf[dl] = '\0';
    char *reply = buf + dl + 1;
    if (rl)
        memcpy(reply, msg.reply_to_dest.p, rl);
    reply[rl] = '\0';
    struct usp_mtp_rx rx = {.arrived_on = buf, .qos = 0};
    if (rl)
        rx.reply_to.to = reply;
    else
        MTP_STAT(&m->base, rx_no_reply_to, 1);
    MTP_STAT(&m->base, rx_records, 1);
    MTP_STAT(&m->base, rx_bytes, msg.body_len);
    if (m->base.cb && m->base.cb->record)
        m->base.cb->record(&m->base, msg.body, msg.body_len, &rx, m->base.user);
    if (buf != stack)
        free(buf);
}

/* Printable text of at most n bytes of s: other bytes as '.', trailing
 * blanks dropped. */
static void clean_text(const char *s, size_t len, char *out, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; s && i < len && o + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c != 0x7f) ? (char)c : (c == '\n' || c == '\t') ? ' ' : '.';
    }
    while (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

static void on_error(struct stomp_conn *m, const struct usp_stomp_frame *f)
{
    struct usp_stomp_error e;
    char msg[128], body[200];
    (void)usp_stomp_error_view(f, &e, NULL, 0);
    clean_text(e.message.p, e.message.len, msg, sizeof msg);
    clean_text((const char *)e.body, e.body_len, body, sizeof body);
    set_err(m, "ERROR frame: %s%s%s", msg[0] ? msg : "(no message)", body[0] ? ": " : "", body);
    enum usp_mtp_reason r = m->phase == P_SUBSCRIBING ? USP_MTP_R_SUBSCRIBE
                            : m->phase == P_CLOSING   ? m->close_reason
                            : m->phase == P_UP        ? USP_MTP_R_PEER_CLOSED
                                                      : USP_MTP_R_REFUSED;
    /* The server closes the connection after an ERROR [R-STOMP.7]. */
    lost(m, r, 0);
}

static void on_frame(struct stomp_conn *m, const struct usp_stomp_frame *f)
{
    char what[96];
    switch (f->cmd) {
    case USP_STOMP_HEARTBEAT:
        break; /* last_rx is already set */
    case USP_STOMP_ERROR:
        on_error(m, f);
        break;
    case USP_STOMP_CONNECTED:
        if (m->phase == P_STOMP)
            on_connected(m, f);
        else
            protocol_error(m, "the server sent a second CONNECTED frame");
        break;
    case USP_STOMP_RECEIPT:
    case USP_STOMP_MESSAGE:
        if (m->phase == P_STOMP) {
            snprintf(what, sizeof what, "the server sent %s before CONNECTED",
                     usp_stomp_cmd_name(f->cmd));
            protocol_error(m, what);
        } else if (f->cmd == USP_STOMP_RECEIPT) {
            on_receipt(m, f);
        } else {
            on_message(m, f);
        }
        break;
    default:
        snprintf(what, sizeof what, "the server sent a %s frame, which only clients send",
                 usp_stomp_cmd_name(f->cmd));
        protocol_error(m, what);
        break;
    }
}

/* Every plaintext byte from the server goes through here. */
static void feed_plain(struct stomp_conn *m, const uint8_t *d, size_t len)
{
    struct usp_stomp_frame f;
    int rc = 0;
    while (len && !m->lost && !m->dead) {
        size_t used = 0;
        rc = usp_stomp_parse(&m->parser, d, len, &used, &f);
        if (rc <= 0)
            break;
        d += used;
        len -= used;
        on_frame(m, &f);
    }
    if (rc < 0) {
        char why[200];
        usp_stomp_parser_why(&m->parser, why, sizeof why);
        set_err(m, "%s", why);
        lost(m, rc == USP_ENOMEM ? USP_MTP_R_INTERNAL : USP_MTP_R_LOST, rc);
        return;
    }
    /* Give back the copy of a frame that spanned reads. */
    if (!m->lost && !m->dead)
        (void)usp_stomp_parse(&m->parser, NULL, 0, NULL, &f);
}

/* Plaintext taken out of TLS at a time (one TLS record at most). */
#define PLAIN_SIZE 16384

/* Every byte from the socket goes through here. */
static void feed(struct stomp_conn *m, const uint8_t *d, size_t len)
{
    if (!m->tls) {
        feed_plain(m, d, len);
        return;
    }
    uint8_t plain[PLAIN_SIZE];
    tls_stream__feed(m->tls, d, len);
    while (!m->lost && !m->dead) {
        int r = tls_stream__read(m->tls, plain, sizeof plain);
        if (tls_flush(m) != 0 && !m->lost)
            lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        if (m->lost || m->dead)
            break;
        if (r < 0) {
            bool before = m->phase == P_TLS || m->phase == P_STOMP;
            set_err(m, "%s", tls_stream__why(m->tls));
            if (r == USP_ENOMEM)
                lost(m, USP_MTP_R_INTERNAL, r);
            else if (r == USP_EIO)
                lost(m, m->phase == P_CLOSING ? m->close_reason : USP_MTP_R_LOST, 0);
            else if (before) {
                /* The broker's certificate, or the broker refusing ours. */
                m->tls_failed = true;
                lost(m, USP_MTP_R_REFUSED, r == USP_EPERM ? USP_EPERM : USP_EPROTO);
            } else {
                lost(m, USP_MTP_R_LOST, USP_EPROTO);
            }
            break;
        }
        if (m->phase == P_TLS && tls_stream__up(m->tls)) {
            m->phase = P_STOMP;
            int rc = send_connect(m);
            if (rc && !m->lost)
                lost(m, USP_MTP_R_INTERNAL, rc);
            if (m->lost)
                break;
        }
        if (r == 0)
            break;
        feed_plain(m, plain, (size_t)r);
    }
    if (m->tls)
        tls_stream__feed(m->tls, NULL, 0);
}

/* TLS over the new TCP connection: the ClientHello. */
static int tls_begin(struct stomp_conn *m)
{
    SSL_CTX *sc = NULL;
    char why[300];
    int rc = mtp__tls_ctx(m->base.ctx, USP_TLS_CLIENT, m->tls_flags, m->ca, NULL, NULL, &sc, why,
                          sizeof why);
    if (rc == 0)
        rc = tls_stream__new(sc, USP_TLS_CLIENT, m->host, m->cert, m->key, &m->tls, why,
                             sizeof why);
    if (rc) {
        set_err(m, "TLS: %s", why);
        return rc;
    }
    m->phase = P_TLS;
    rc = tls_stream__start(m->tls);
    if (rc == 0)
        rc = tls_flush(m);
    if (rc && !m->err_text)
        set_err(m, "TLS: %s", tls_stream__why(m->tls));
    return rc;
}

/* ---- Socket callbacks --------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    char *b = malloc(READ_SIZE);
    *buf = uv_buf_init(b, b ? READ_SIZE : 0); /* none: UV_ENOBUFS follows */
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct stomp_conn *m = s->data;
    if (n == 0 || m->tcp_state != H_OPEN) {
        free(buf->base);
        return;
    }
    enter(m);
    if (n > 0) {
        m->last_rx = now_ms(m);
        feed(m, (const uint8_t *)buf->base, (size_t)n);
    } else if (m->phase == P_CLOSING) {
        lost(m, m->close_reason, 0); /* the server closed after DISCONNECT */
    } else if (n == UV_ENOBUFS) {
        lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
    } else {
        if (usp_stomp_parser_in_frame(&m->parser))
            set_err(m, "the server closed the connection inside a frame");
        lost(m, USP_MTP_R_LOST, n == UV_EOF ? 0 : (int)-n);
    }
    free(buf->base);
    leave(m);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct stomp_conn *m = req->handle->data;
    free(req);
    if (status == UV_ECANCELED || m->tcp_state != H_OPEN)
        return;
    enter(m);
    if (status < 0) {
        lost(m, USP_MTP_R_CONNECT, -status);
    } else {
        int rc = uv_read_start((uv_stream_t *)&m->tcp, on_alloc, on_read);
        if (rc) {
            lost(m, USP_MTP_R_INTERNAL, 0);
        } else {
            m->phase = P_STOMP;
            m->last_rx = now_ms(m);
            rc = m->use_tls ? tls_begin(m) : send_connect(m);
            if (rc && !m->lost)
                lost(m, USP_MTP_R_INTERNAL, rc);
        }
    }
    leave(m);
}

static void connect_to(struct stomp_conn *m, const struct sockaddr *sa)
{
    int rc = uv_tcp_init_ex(m->base.ctx->loop, &m->tcp, sa->sa_family);
    if (rc) {
        lost(m, USP_MTP_R_CONNECT, -rc);
        return;
    }
    m->tcp.data = m;
    m->tcp_state = H_OPEN;
    (void)uv_tcp_nodelay(&m->tcp, 1);
    if (m->bind) {
        struct sockaddr_storage b;
        if (uv_ip4_addr(m->bind, 0, (struct sockaddr_in *)&b) != 0 &&
            uv_ip6_addr(m->bind, 0, (struct sockaddr_in6 *)&b) != 0) {
            lost(m, USP_MTP_R_CONNECT, EINVAL);
            return;
        }
        /* The port is picked at connect time, per destination: far more
         * connections per source address than a port picked at bind. */
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&m->tcp, &fd) == 0)
            (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        rc = uv_tcp_bind(&m->tcp, (const struct sockaddr *)&b, 0);
        if (rc) {
            lost(m, USP_MTP_R_CONNECT, -rc);
            return;
        }
    }
    uv_connect_t *req = malloc(sizeof *req);
    if (!req) {
        lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        return;
    }
    rc = uv_tcp_connect(req, &m->tcp, sa, on_connect);
    if (rc) {
        free(req);
        lost(m, USP_MTP_R_CONNECT, -rc);
        return;
    }
    m->phase = P_CONNECTING;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct stomp_conn *m = req->data;
    free(req);
    if (!m) { /* the attempt was dropped meanwhile */
        uv_freeaddrinfo(res);
        return;
    }
    m->gai = NULL;
    enter(m);
    /* Each attempt takes the next address, so that a dead one costs one
     * retry, not all. */
    unsigned count = 0;
    for (struct addrinfo *a = status == 0 ? res : NULL; a; a = a->ai_next)
        count += a->ai_family == AF_INET || a->ai_family == AF_INET6;
    unsigned pick = count ? m->attempt % count : 0;
    struct sockaddr_storage sa;
    bool found = false;
    for (struct addrinfo *a = count ? res : NULL; a && !found; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || pick-- > 0)
            continue;
        memset(&sa, 0, sizeof sa);
        memcpy(&sa, a->ai_addr, a->ai_addrlen < sizeof sa ? a->ai_addrlen : sizeof sa);
        if (a->ai_family == AF_INET)
            ((struct sockaddr_in *)&sa)->sin_port = htons(m->port);
        else
            ((struct sockaddr_in6 *)&sa)->sin6_port = htons(m->port);
        found = true;
    }
    uv_freeaddrinfo(res);
    if (!found)
        lost(m, USP_MTP_R_RESOLVE, status ? status : UV_EAI_NODATA);
    else if (!m->dead && !m->lost)
        connect_to(m, (const struct sockaddr *)&sa);
    leave(m);
}

/* ---- Timers ---------------------------------------------------------------- */

/* The connect timeout. */
static void fire_deadline(struct usp_tw_entry *t, uint64_t now)
{
    struct stomp_conn *m = of_timer(t);
    enter(m);
    lost(m, USP_MTP_R_TIMEOUT, 0);
    leave(m);
}

/* close_timeout_ms passed without the DISCONNECT receipt: cut. */
static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now)
{
    struct stomp_conn *m = of_timer(t);
    enter(m);
    lost(m, m->close_reason, m->close_reason == USP_MTP_R_CLOSED ? 1 : 0);
    leave(m);
}

static void fire_attempt(struct usp_tw_entry *t, uint64_t now)
{
    struct stomp_conn *m = of_timer(t);
    struct usp_mtp_ctx *ctx = m->base.ctx;
    if (m->tcp_state != H_NONE) {
        /* The last attempt's socket is still closing: a moment later. */
        mtp__timer_arm(ctx, &m->timer, 20, fire_attempt);
        return;
    }
    if (!mtp__connect_slot_take(ctx, &m->wait, &m->timer, fire_attempt)) {
        m->phase = P_WAIT_SLOT;
        return;
    }
    m->has_slot = true;
    enter(m);
    m->phase = m->host_is_name ? P_RESOLVING : P_CONNECTING;
    mtp__timer_arm(ctx, &m->timer, m->connect_timeout_ms, fire_deadline);
    mtp__emit_state(&m->base, USP_MTP_CONNECTING, USP_MTP_R_NONE, 0, m->attempt, 0,
                    m->host_is_name ? "resolving" : "connecting");
    if (m->dead || m->closing || m->lost) {
        leave(m);
        return;
    }
    if (m->host_is_name) {
        m->gai = malloc(sizeof *m->gai);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        if (!m->gai) {
            lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        } else {
            m->gai->data = m;
            int rc = uv_getaddrinfo(ctx->loop, m->gai, on_resolved, m->host, NULL, &hints);
            if (rc) {
                free(m->gai);
                m->gai = NULL;
                lost(m, USP_MTP_R_RESOLVE, rc);
            }
        }
    } else {
        struct sockaddr_storage sa;
        if (uv_ip4_addr(m->host, m->port, (struct sockaddr_in *)&sa) != 0 &&
            uv_ip6_addr(m->host, m->port, (struct sockaddr_in6 *)&sa) != 0)
            lost(m, USP_MTP_R_RESOLVE, UV_EAI_NONAME);
        else
            connect_to(m, (const struct sockaddr *)&sa);
    }
    leave(m);
}

/* ---- Operations ---------------------------------------------------------------- */

static int st_open(struct usp_mtp_conn *c)
{
    struct stomp_conn *m = CONN(c);
    if (m->dead || m->phase != P_IDLE)
        return USP_EPERM;
    m->phase = P_RETRY;
    mtp__timer_arm(c->ctx, &m->timer, 0, fire_attempt);
    return 0;
}

static int st_send(struct usp_mtp_conn *c, const struct usp_mtp_dest *to, const uint8_t *rec,
                   size_t len)
{
    struct stomp_conn *m = CONN(c);
    if (m->dead || m->phase != P_UP || m->lost) {
        MTP_STAT(c, tx_refused, 1);
        return USP_EPERM;
    }
    if (!to || !to->to || !to->to[0] || (!rec && len)) {
        MTP_STAT(c, tx_refused, 1);
        return USP_EINVAL;
    }
    if (len > m->max_record) {
        MTP_STAT(c, tx_oversize, 1);
        mtp__log(c->ctx, USP_MTP_LOG_WARN, m->eid,
                 "STOMP: refused to send a %zu-byte record (max_record %u)", len, m->max_record);
        return USP_ERANGE;
    }
    api_enter(m);
    int rc = send_record(m, to->to, rec, len);
    api_leave(m);
    return rc;
}

static void begin_disconnect(struct stomp_conn *m, enum usp_mtp_reason why_closed)
{
    m->closing = true;
    m->close_reason = (uint8_t)why_closed;
    m->phase = P_CLOSING;
    struct usp_stomp_header h = hdr("receipt", RECEIPT_BYE);
    if (send_frame(m, USP_STOMP_DISCONNECT, &h, 1) != 0)
        lost(m, why_closed, 0);
    else
        mtp__timer_arm(m->base.ctx, &m->timer, m->close_timeout_ms, fire_close_timeout);
}

static int st_close(struct usp_mtp_conn *c, uint32_t reason_code, const char *reason)
{
    struct stomp_conn *m = CONN(c);
    if (m->dead || m->closing || m->phase == P_CLOSED)
        return USP_EPERM;
    api_enter(m);
    if (m->phase == P_UP && !m->lost) {
        if (m->peer_eid)
            send_own_record(m, false, reason_code, reason);
        begin_disconnect(m, USP_MTP_R_CLOSED);
    } else {
        /* Not up: stop where we are; CLOSED comes from the loop. */
        m->closing = true;
        m->close_reason = USP_MTP_R_CLOSED;
        if (m->lost) {
            m->lost_reason = USP_MTP_R_CLOSED;
            m->lost_code = 0;
        }
        lost(m, USP_MTP_R_CLOSED, 0);
    }
    api_leave(m);
    return 0;
}

static void st_free(struct usp_mtp_conn *c)
{
    struct stomp_conn *m = CONN(c);
    if (m->dead)
        return;
    m->dead = true;
    m->base.cb = NULL; /* no callback after this call */
    mtp__timer_cancel(c->ctx, &m->timer);
    mtp__connect_wait_cancel(c->ctx, &m->wait);
    tcp_close(m);
    if (m->busy == 0)
        finalize(m);
}

static const char *st_local_dest(const struct usp_mtp_conn *c)
{
    const struct stomp_conn *m = (const struct stomp_conn *)c;
    return (m->phase == P_UP || m->phase == P_CLOSING) ? m->dest : NULL;
}

/* Copies `s` into the block at *pos; returns the copy. */
static const char *put_str(char **pos, const char *s)
{
    char *d = *pos;
    size_t n = strlen(s) + 1;
    memcpy(d, s, n);
    *pos += n;
    return d;
}

static int st_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                       const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                       size_t whylen)
{
    const struct usp_mtp_stomp_config *s = &cfg->stomp;
    bool tls = url->tls;
    const char *user = s->username ? s->username : url->has_user ? url->user : NULL;
    const char *pass = s->username     ? (s->password ? s->password : "")
                       : url->has_user ? (url->has_password ? url->password : "")
                                       : NULL;
    const char *vhost = s->virtual_host && s->virtual_host[0] ? s->virtual_host : "/";
    const char *dest = s->destination ? s->destination : "";
    size_t len;
    /* Measure the frames once: whatever no frame can carry fails now. */
    struct usp_stomp_connect cc = {vhost,
                                   user,
                                   pass,
                                   cfg->eid,
                                   s->enable_heartbeats,
                                   s->outgoing_heartbeat_ms,
                                   s->incoming_heartbeat_ms};
    if (usp_stomp_encode_connect(&cc, NULL, 0, &len) == USP_EINVAL)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the virtual host, login, passcode or Endpoint ID cannot go into a STOMP "
                         "frame (not UTF-8)");
    if (dest[0] && usp_stomp_encode_subscribe(SUB_ID, dest, NULL, 0, &len) == USP_EINVAL)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the destination \"%.80s\" cannot go into a STOMP frame (not UTF-8)",
                         dest);
    struct usp_stomp_send ps = {.destination = cfg->peer_dest, .reply_to_dest = "x"};
    if (cfg->peer_dest && usp_stomp_encode_send_head(&ps, 0, NULL, 0, &len) == USP_EINVAL)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the peer destination \"%.80s\" cannot go into a STOMP frame",
                         cfg->peer_dest);

    const char *strs[] = {cfg->eid,
                          url->host,
                          vhost,
                          user,
                          pass,
                          dest,
                          cfg->bind_address,
                          cfg->peer_eid,
                          cfg->peer_dest,
                          cfg->usp_version,
                          tls ? cfg->tls.ca_file : NULL,
                          tls ? cfg->tls.cert_file : NULL,
                          tls ? cfg->tls.key_file : NULL};
    size_t total = sizeof(struct stomp_conn);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            total += strlen(strs[i]) + 1;
    struct stomp_conn *m = calloc(1, total);
    if (!m)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char *pos = (char *)(m + 1);
    m->eid = put_str(&pos, cfg->eid);
    m->host = put_str(&pos, url->host);
    m->vhost = put_str(&pos, vhost);
    m->login = user ? put_str(&pos, user) : NULL;
    m->passcode = pass ? put_str(&pos, pass) : NULL;
    m->cfg_dest = put_str(&pos, dest);
    m->bind = cfg->bind_address ? put_str(&pos, cfg->bind_address) : NULL;
    m->peer_eid = cfg->peer_eid ? put_str(&pos, cfg->peer_eid) : NULL;
    m->peer_dest = cfg->peer_dest ? put_str(&pos, cfg->peer_dest) : NULL;
    m->usp_version = cfg->usp_version ? put_str(&pos, cfg->usp_version) : NULL;
    if (tls) {
        /* mtp__tls_config_check has made sure all three are there. */
        m->ca = put_str(&pos, cfg->tls.ca_file);
        m->cert = put_str(&pos, cfg->tls.cert_file);
        m->key = put_str(&pos, cfg->tls.key_file);
        m->tls_flags = cfg->tls.flags;
        m->use_tls = true;
    }
    m->host_is_name = url->host_kind == USP_MTP_HOST_NAME;
    m->port = url->port;
    m->max_record = cfg->max_record;
    m->connect_timeout_ms = cfg->connect_timeout_ms;
    m->close_timeout_ms = cfg->close_timeout_ms;
    m->retry_time_s = cfg->retry_time_s;
    m->retry_mult = cfg->retry_multiplier;
    m->retry_max_s = cfg->retry_max_s;
    m->hb_enabled = s->enable_heartbeats;
    m->hb_out = s->outgoing_heartbeat_ms;
    m->hb_in = s->incoming_heartbeat_ms;
    m->role = (uint8_t)cfg->role;
    m->phase = P_IDLE;
    usp_stomp_limits_init(&m->lim);
    m->lim.max_frame = cfg->max_record + FRAME_HEADROOM; /* max_record <= 256 MiB */
    m->lim.keep_buffer = 0;
    usp_stomp_parser_init(&m->parser, &m->lim);
    m->base.ctx = ctx;
    mtp__conn_hold(ctx);
    *out = &m->base;
    return 0;
}

const struct usp_mtp_ops usp_mtp_stomp_ops = {
    .name = "stomp",
    .conn_new = st_conn_new,
    .open = st_open,
    .send = st_send,
    .close = st_close,
    .free = st_free,
    .local_dest = st_local_dest,
};

/* For reports (tests/integration/test-stomp-mtp.sh). */
size_t mtp__stomp_conn_size(void)
{
    return sizeof(struct stomp_conn);
}

/* ---- Destination naming ---------------------------------------------------------- */

/* RabbitMQ's longest queue name (AMQP shortstr). */
#define RABBITMQ_QUEUE_MAX 255

int usp_mtp_stomp_dest(enum usp_mtp_role role, const char *eid, char *buf, size_t n)
{
    if (buf && n)
        buf[0] = '\0';
    if (!eid || !eid[0] || (role != USP_MTP_AGENT && role != USP_MTP_CONTROLLER))
        return USP_EINVAL;
    char q[RABBITMQ_QUEUE_MAX + 1];
    int o = snprintf(q, sizeof q, "usp.%s.", role == USP_MTP_AGENT ? "agent" : "controller");
    for (const char *p = eid; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            return USP_EINVAL;
        const char *esc = c == '/' ? "%2F" : c == '%' ? "%25" : NULL;
        size_t k = esc ? 3 : 1;
        if ((size_t)o + k > RABBITMQ_QUEUE_MAX)
            return USP_ERANGE;
        if (esc)
            memcpy(q + o, esc, 3);
        else
            q[o] = (char)c;
        o += (int)k;
    }
    q[o] = '\0';
    int w = snprintf(buf, buf ? n : 0, "/queue/%s", q);
    return w < 0 || (size_t)w >= n ? USP_ERANGE : 0;
}
