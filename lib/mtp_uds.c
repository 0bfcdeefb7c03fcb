/* The UNIX domain socket binding (TR-369 "UNIX Domain Socket Binding",
 * R-UDS.*; see usp/mtp_uds.h): clients and listeners on uv_pipe_t, frames
 * from usp/uds.h, TLS (USP 1.4) from tls_stream_int.h.
 *
 * Life of a client: open -> [connect slot] -> pipe connect -> [TLS] ->
 * Handshake TLV sent -> the server's Handshake -> UP (an agent sends its
 * UDSConnectRecord) ... -> lost: socket closed, DOWN, next attempt after a
 * random 1-5 s. An accepted session: [TLS] -> the client's Handshake ->
 * check -> our Handshake -> accept callback -> UP ... -> CLOSED.
 *
 * Bytes in go through feed() (TLS) and feed_plain(); bytes out through
 * put() (TLS) and wire_write(). Re-entrancy as in the STOMP binding: every
 * frame that calls out holds `busy`; the outermost one settles (frees the
 * connection, reports a loss), or the loop does when the frame is a call
 * into this API, so that callbacks never run inside the caller's call. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mtp_int.h"
#include "tls_stream_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/eid.h"
#include "usp/mtp_uds.h"
#include "usp/uds.h"

/* Bytes asked of the socket per read. */
#define READ_SIZE 65536
/* Plaintext taken out of TLS at a time (one TLS record at most). */
#define PLAIN_SIZE 16384
/* Room for TLVs around a max_record Record in one frame. */
#define FRAME_HEADROOM 4096u
/* Bytes that may wait for the socket beyond the frame being sent. */
#define OUT_QUEUE_SLACK (1024u * 1024)
/* R-UDS.5: a client waits a random 1 to 5 s before reconnecting. */
#define RETRY_MIN_MS 1000u
#define RETRY_MAX_MS 5000u

#define CODE_ERR_TLV USP_MTP_UDS_CODE_ERROR_TLV

enum phase {
    P_IDLE,
    P_WAIT_SLOT,
    P_CONNECTING, /* pipe connect */
    P_TLS,        /* TLS handshake */
    P_HANDSHAKE,  /* waiting for the peer's Handshake TLV */
    P_UP,
    P_CLOSING, /* DisconnectRecord sent, write side shut */
    P_RETRY,
    P_CLOSED,
};

enum handle_state { H_NONE, H_OPEN, H_CLOSING };

struct uds_listener;

struct uds_conn {
    struct usp_mtp_conn base;
    uv_pipe_t pipe;
    struct usp_tw_entry timer;
    struct mtp_waiter wait;
    struct usp_uds_parser parser;
    struct usp_uds_limits lim;
    struct tls_stream *tls;
    struct uds_listener *lis; /* accepted: the listener while it lasts */
    struct uds_conn *lnext, **lprev;
    uv_shutdown_t *shut;
    char *peer;     /* the Endpoint ID of the peer's Handshake */
    char *err_text; /* what went wrong, for the next report */
    size_t out_queued;
    /* Configuration, in the allocation after the struct. */
    const char *eid, *path, *cfg_peer, *usp_version, *ca, *cert, *key;
    uint32_t max_record, connect_timeout_ms, close_timeout_ms, attempt;
    unsigned tls_flags;
    int lost_code;
    uint8_t phase, pipe_state, role, lost_reason, busy;
    bool use_tls, accepted, handed, has_slot, lost, closing, dead, finalizing, api;
};

struct uds_listener {
    struct usp_mtp_listener base;
    uv_pipe_t pipe;
    SSL_CTX *sc; /* borrowed from the context's cache */
    struct uds_conn *conns;
    const char *eid, *path, *usp_version;
    uint32_t max_record, connect_timeout_ms, close_timeout_ms;
    uint8_t role;
    bool closed, bound;
};

#define CONN(c) ((struct uds_conn *)(c))

static struct uds_conn *of_timer(struct usp_tw_entry *t)
{
    return (struct uds_conn *)((char *)t - offsetof(struct uds_conn, timer));
}

static bool settle(struct uds_conn *m);
static void fire_attempt(struct usp_tw_entry *t, uint64_t now);

static void enter(struct uds_conn *m)
{
    m->busy++;
}

static void leave(struct uds_conn *m)
{
    if (--m->busy == 0)
        (void)settle(m);
}

static void api_enter(struct uds_conn *m)
{
    if (m->busy == 0)
        m->api = true;
    m->busy++;
}

static void api_leave(struct uds_conn *m)
{
    if (m->busy == 1) {
        m->busy = 0;
        if (settle(m))
            m->api = false;
        return;
    }
    m->busy--;
}

static void fire_settle(struct usp_tw_entry *t, uint64_t now)
{
    struct uds_conn *m = of_timer(t);
    enter(m);
    leave(m);
}

static const char *who(const struct uds_conn *m)
{
    return m->accepted ? "accepted" : "client";
}

static void set_err(struct uds_conn *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct uds_conn *m, const char *fmt, ...)
{
    if (m->err_text)
        return;
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    m->err_text = strdup(buf); /* NULL: the report is only less precise */
}

/* ---- Socket ------------------------------------------------------------------- */

static void finalize_free(struct uds_conn *m)
{
    struct usp_mtp_ctx *ctx = m->base.ctx;
    free(m);
    mtp__conn_release(ctx);
}

static void on_pipe_closed(uv_handle_t *h)
{
    struct uds_conn *m = h->data;
    m->pipe_state = H_NONE;
    if (m->finalizing)
        finalize_free(m);
}

static void pipe_close(struct uds_conn *m)
{
    if (m->pipe_state != H_OPEN)
        return;
    m->pipe_state = H_CLOSING;
    uv_close((uv_handle_t *)&m->pipe, on_pipe_closed);
}

static void lost(struct uds_conn *m, enum usp_mtp_reason reason, int code)
{
    if (!m->lost) {
        m->lost = true;
        m->lost_reason = (uint8_t)reason;
        m->lost_code = code;
    }
    pipe_close(m);
}

static void unlink_listener(struct uds_conn *m)
{
    if (!m->lprev)
        return;
    *m->lprev = m->lnext;
    if (m->lnext)
        m->lnext->lprev = m->lprev;
    m->lnext = NULL;
    m->lprev = NULL;
    m->lis = NULL;
}

static void drop_session(struct uds_conn *m)
{
    pipe_close(m);
    tls_stream__free(m->tls);
    m->tls = NULL;
    usp_uds_parser_reset(&m->parser);
    free(m->peer);
    m->peer = NULL;
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
    mtp__connect_wait_cancel(m->base.ctx, &m->wait);
    mtp__timer_cancel(m->base.ctx, &m->timer);
}

static void finalize(struct uds_conn *m)
{
    drop_session(m);
    unlink_listener(m);
    usp_uds_parser_cleanup(&m->parser);
    free(m->err_text);
    m->err_text = NULL;
    m->finalizing = true;
    if (m->pipe_state == H_NONE)
        finalize_free(m);
    /* else on_pipe_closed frees it */
}

static void describe_loss(const struct uds_conn *m, enum usp_mtp_reason r, int code, char *buf,
                          size_t n)
{
    const char *e = m->err_text;
    switch (r) {
    case USP_MTP_R_CONNECT:
        snprintf(buf, n, "cannot connect to unix:%s: %s", m->path,
                 code ? strerror(code) : "connection failed");
        break;
    case USP_MTP_R_TIMEOUT:
        snprintf(buf, n, "no UDS handshake with unix:%s within %u ms [R-UDS.18]", m->path,
                 m->connect_timeout_ms);
        break;
    case USP_MTP_R_REFUSED:
        snprintf(buf, n, "the peer refused the session: %s", e ? e : "no reason given");
        break;
    case USP_MTP_R_PEER_CLOSED:
        snprintf(buf, n, "the peer ended the session: %s", e ? e : "it closed the connection");
        break;
    case USP_MTP_R_CLOSED:
        snprintf(buf, n, "%s",
                 code == 1001 ? "closed: the listener closed"
                 : code       ? "closed; the close took longer than close_timeout_ms, cut"
                              : "closed");
        break;
    case USP_MTP_R_LOST:
        if (e)
            snprintf(buf, n, "connection closed: %s", e);
        else
            snprintf(buf, n, "connection lost: %s", code > 0 ? strerror(code) : "no reason");
        break;
    default:
        snprintf(buf, n, "internal error: %s%s%s", code < 0 ? usp_strerror(code) : "libuv refused",
                 e ? ": " : "", e ? e : "");
        break;
    }
}

static uint32_t retry_ms(struct uds_conn *m)
{
    return RETRY_MIN_MS + (uint32_t)(mtp__rand(m->base.ctx) % (RETRY_MAX_MS - RETRY_MIN_MS + 1));
}

/* After a loss: CLOSED, or DOWN with the next attempt scheduled. */
static void teardown(struct uds_conn *m)
{
    struct usp_mtp_ctx *ctx = m->base.ctx;
    enum phase was = m->phase;
    enum usp_mtp_reason r = m->lost_reason;
    int code = m->lost_code;
    char detail[500];

    m->lost = false;
    if (m->shut) {
        m->shut->data = NULL; /* its callback frees it */
        m->shut = NULL;
    }
    drop_session(m);
    describe_loss(m, r, code, detail, sizeof detail);
    free(m->err_text);
    m->err_text = NULL;
    if (m->accepted && !m->handed) {
        /* Never reached the owner: nobody to tell. */
        mtp__log(ctx, USP_MTP_LOG_INFO, m->eid,
                 "UDS unix:%s: a session ended before its handshake: %s", m->path, detail);
        m->phase = P_CLOSED;
        m->dead = true;
        return;
    }
    if (was == P_UP)
        MTP_STAT(&m->base, drops, r == USP_MTP_R_CLOSED ? 0 : 1);
    else if (!m->accepted && !m->closing)
        MTP_STAT(&m->base, attempts_failed, 1);
    if (m->closing || m->accepted) {
        m->phase = P_CLOSED;
        mtp__log(ctx, USP_MTP_LOG_INFO, m->eid, "UDS %s unix:%s: %s", who(m), m->path, detail);
        mtp__emit_state(&m->base, USP_MTP_CLOSED, r, code, m->attempt, 0, detail);
        return;
    }
    m->attempt++;
    uint32_t delay = retry_ms(m);
    m->phase = P_RETRY;
    mtp__timer_arm(ctx, &m->timer, delay, fire_attempt);
    mtp__log(ctx, USP_MTP_LOG_INFO, m->eid, "UDS unix:%s down: %s; retry %u in %u ms", m->path,
             detail, m->attempt, delay);
    mtp__emit_state(&m->base, USP_MTP_DOWN, r, code, m->attempt, delay, detail);
}

static bool settle(struct uds_conn *m)
{
    for (;;) {
        if (m->dead) {
            finalize(m);
            return false;
        }
        if (!m->lost)
            break;
        if (m->api) {
            pipe_close(m);
            mtp__timer_arm(m->base.ctx, &m->timer, 0, fire_settle);
            return true;
        }
        m->busy++;
        teardown(m);
        m->busy--;
    }
    return true;
}

/* ---- Bytes out ------------------------------------------------------------------ */

struct out_chunk {
    uv_write_t req;
    size_t len;
    uint8_t data[];
};

static void on_written(uv_write_t *req, int status)
{
    struct out_chunk *c = (struct out_chunk *)req;
    struct uds_conn *m = req->handle->data;
    m->out_queued -= c->len;
    free(c);
    if (status < 0 && status != UV_ECANCELED && m->pipe_state == H_OPEN) {
        enter(m);
        lost(m, USP_MTP_R_LOST, -status);
        leave(m);
    }
}

/* Hands bufs to the socket; what it does not take at once waits in one
 * write request. 0, USP_EIO (no socket, or the peer does not read),
 * USP_ENOMEM. A failure after part went out loses the connection. */
static int wire_write(struct uds_conn *m, const uv_buf_t *b, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += b[i].len;
    if (m->pipe_state != H_OPEN || m->lost)
        return USP_EIO;
    if (m->out_queued && m->out_queued + total > (size_t)m->max_record + OUT_QUEUE_SLACK)
        return USP_EIO;
    size_t done = 0;
    if (!m->out_queued) {
        int w = uv_try_write((uv_stream_t *)&m->pipe, b, n);
        if (w < 0 && w != UV_EAGAIN) {
            lost(m, USP_MTP_R_LOST, -w);
            return USP_EIO;
        }
        done = w > 0 ? (size_t)w : 0;
    }
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
    int rc = uv_write(&c->req, (uv_stream_t *)&m->pipe, &ub, 1, on_written);
    if (rc) {
        free(c);
        lost(m, USP_MTP_R_LOST, -rc);
        return USP_EIO;
    }
    m->out_queued += o;
    return 0;
}

/* Writes what TLS has for the socket. */
static int tls_flush(struct uds_conn *m)
{
    const uint8_t *p;
    size_t n = tls_stream__out(m->tls, &p);
    if (!n)
        return 0;
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
    int rc = wire_write(m, &b, 1);
    tls_stream__out_clear(m->tls);
    return rc;
}

/* Puts plaintext on the connection: through TLS when it has it. */
static int put(struct uds_conn *m, const uv_buf_t *b, unsigned n)
{
    if (!m->tls)
        return wire_write(m, b, n);
    if (m->pipe_state != H_OPEN || m->lost)
        return USP_EIO;
    for (unsigned i = 0; i < n; i++) {
        int rc = tls_stream__write(m->tls, (const uint8_t *)b[i].base, b[i].len);
        if (rc) {
            tls_stream__out_clear(m->tls);
            return rc == USP_ENOMEM ? rc : USP_EIO;
        }
    }
    return tls_flush(m);
}

static int send_tlv_text(struct uds_conn *m, bool error, const char *text)
{
    uint8_t stack[600], *buf = stack;
    size_t len;
    int rc = error ? usp_uds_encode_error(text, stack, sizeof stack, &len)
                   : usp_uds_encode_handshake(text, stack, sizeof stack, &len);
    if (rc == USP_ERANGE) {
        buf = malloc(len);
        rc = !buf    ? USP_ENOMEM
             : error ? usp_uds_encode_error(text, buf, len, &len)
                     : usp_uds_encode_handshake(text, buf, len, &len);
    }
    if (rc == 0) {
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        rc = put(m, &b, 1);
    }
    if (buf != stack)
        free(buf);
    return rc;
}

/* An Error TLV [R-UDS.21, 23-24], then the connection is lost with
 * `reason` and the detail "<what>: <text> (Error TLV sent)". */
static void send_error_and_close(struct uds_conn *m, enum usp_mtp_reason reason, const char *what,
                                 const char *text)
{
    /* Not UTF-8 text would make the encoder refuse: keep it plain. */
    char clean[300];
    size_t o = 0;
    for (const char *p = text; *p && o + 1 < sizeof clean; p++)
        clean[o++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) ? *p : '?';
    clean[o] = '\0';
    if (!o)
        snprintf(clean, sizeof clean, "error");
    int rc = send_tlv_text(m, true, clean);
    set_err(m, "%s: %s (%s)", what, clean,
            rc == 0 ? "Error TLV sent" : "could not send the Error TLV");
    lost(m, reason, CODE_ERR_TLV);
}

/* A Record with the TLV header in front, the body not copied. */
static int send_record(struct uds_conn *m, const uint8_t *rec, size_t len)
{
    uint8_t head[USP_UDS_HEADER_LEN + USP_UDS_TLV_HEADER_LEN];
    if (usp_uds_encode_head(USP_UDS_RECORD, len, head) != 0)
        return USP_ERANGE;
    uv_buf_t b[2] = {uv_buf_init((char *)head, sizeof head),
                     uv_buf_init((char *)(uintptr_t)rec, (unsigned)len)};
    int rc = put(m, b, len ? 2 : 1);
    if (rc == 0) {
        MTP_STAT(&m->base, tx_records, 1);
        MTP_STAT(&m->base, tx_bytes, len);
    } else {
        MTP_STAT(&m->base, tx_failed, 1);
    }
    return rc;
}

/* UDSConnectRecord [R-MTP.6] or DisconnectRecord [R-MTP.7] to the peer. */
static int send_own_record(struct uds_conn *m, bool connect, uint32_t reason_code,
                           const char *reason)
{
    struct usp_arena *a = usp_arena_new(512);
    if (!a)
        return USP_ENOMEM;
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__UDSConnectRecord uc = USP_RECORD__UDSCONNECT_RECORD__INIT;
    UspRecord__DisconnectRecord dc = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = (char *)(m->usp_version ? m->usp_version : USP_VERSION_DEFAULT);
    rec.to_id = m->peer;
    rec.from_id = (char *)m->eid;
    if (connect) {
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT;
        rec.uds_connect = &uc;
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
        rc = send_record(m, buf, len);
    if (rc)
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid, "UDS: cannot send the %s to %s: %s",
                 connect ? "UDSConnectRecord" : "DisconnectRecord", m->peer, usp_strerror(rc));
    usp_arena_free(a);
    return rc;
}

/* ---- Frames in ---------------------------------------------------------------- */

static void give_slot(struct uds_conn *m)
{
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
}

/* UP: an agent's UDSConnectRecord goes first [R-MTP.6] (a client's only
 * when a peer is configured; a server knows its peer from the handshake). */
static void connect_record(struct uds_conn *m)
{
    m->phase = P_UP;
    m->attempt = 0;
    give_slot(m);
    mtp__timer_cancel(m->base.ctx, &m->timer);
    if (m->role == USP_MTP_AGENT && (m->accepted || m->cfg_peer))
        send_own_record(m, true, 0, NULL);
}

static void report_up(struct uds_conn *m)
{
    MTP_STAT(&m->base, ups, 1);
    char detail[480], tls[80] = "";
    if (m->tls)
        tls_stream__describe(m->tls, tls, sizeof tls);
    snprintf(detail, sizeof detail, "UDS session with %.255s on unix:%.100s%s%s", m->peer, m->path,
             tls[0] ? " over " : "", tls);
    mtp__log(m->base.ctx, USP_MTP_LOG_INFO, m->eid, "%s", detail);
    mtp__emit_state(&m->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, detail);
}

/* The peer's Handshake TLV [R-UDS.16-19]. */
static void on_handshake(struct uds_conn *m, const struct usp_uds_tlv *t)
{
    if (m->phase != P_HANDSHAKE) {
        mtp__log(m->base.ctx, USP_MTP_LOG_DEBUG, m->eid, "UDS: a second Handshake ignored");
        return;
    }
    char eid[256], why[420];
    if (t->len >= sizeof eid) {
        snprintf(why, sizeof why, "the Handshake's Endpoint ID is %u bytes long (at most %zu)",
                 t->len, sizeof eid - 1);
        send_error_and_close(m, m->accepted ? USP_MTP_R_LOST : USP_MTP_R_REFUSED, "bad Handshake",
                             why);
        return;
    }
    memcpy(eid, t->value, t->len);
    eid[t->len] = '\0';
    char ewhy[200];
    if (usp_eid_parse(eid, NULL, ewhy, sizeof ewhy) != 0) {
        snprintf(why, sizeof why, "the Handshake's Endpoint ID \"%.80s\" is not valid: %s", eid,
                 ewhy);
        send_error_and_close(m, m->accepted ? USP_MTP_R_LOST : USP_MTP_R_REFUSED, "bad Handshake",
                             why);
        return;
    }
    const struct usp_tls_ids *ids = m->tls ? tls_stream__ids(m->tls) : NULL;
    if (m->tls && usp_tls_ids_match(ids, eid, ewhy, sizeof ewhy) != 0) {
        snprintf(why, sizeof why,
                 "the Handshake's Endpoint ID %.80s is not one the peer's certificate "
                 "authenticates: %s",
                 eid, ewhy);
        send_error_and_close(m, m->accepted ? USP_MTP_R_LOST : USP_MTP_R_REFUSED, "refused", why);
        m->lost_code = USP_EPERM;
        return;
    }
    if (m->cfg_peer && strcmp(m->cfg_peer, eid) != 0)
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                 "UDS unix:%s: the server is %s, not the configured peer %s", m->path, eid,
                 m->cfg_peer);
    m->peer = strdup(eid);
    if (!m->peer) {
        lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        return;
    }
    if (!m->accepted) {
        connect_record(m);
        if (!m->lost && !m->dead)
            report_up(m);
        return;
    }
    struct uds_listener *l = m->lis;
    struct usp_mtp_peer peer = {.eid = m->peer, .path = m->path, .addr = "", .ids = ids};
    if (!l || l->closed) {
        lost(m, USP_MTP_R_CLOSED, 1001);
        return;
    }
    if (l->base.cb->check && l->base.cb->check(&l->base, &peer, l->base.user) != 0) {
        l->base.stats.refused++;
        send_error_and_close(m, USP_MTP_R_REFUSED, "refused", "the server refused the session");
        return;
    }
    if (m->dead || m->lost)
        return;
    if (send_tlv_text(m, false, m->eid) != 0) {
        if (!m->lost)
            lost(m, USP_MTP_R_INTERNAL, USP_EIO);
        return;
    }
    l = m->lis; /* the check may have closed the listener */
    if (!l || l->closed) {
        lost(m, USP_MTP_R_CLOSED, 1001);
        return;
    }
    m->handed = true;
    connect_record(m); /* UP: sends are allowed inside the accept callback */
    if (m->dead || m->lost)
        return;
    l->base.stats.accepted++;
    l->base.cb->accept(&l->base, &m->base, &peer, l->base.user);
    if (m->dead || m->lost)
        return;
    report_up(m);
}

static void on_record(struct uds_conn *m, const struct usp_uds_tlv *t)
{
    if (m->phase != P_UP) {
        /* Before the handshake [R-UDS.20], or while closing. */
        MTP_STAT(&m->base, rx_dropped, 1);
        mtp__log(m->base.ctx, USP_MTP_LOG_DEBUG, m->eid,
                 "UDS: a %u-byte Record before the handshake, ignored [R-UDS.20]", t->len);
        return;
    }
    if (t->len == 0) {
        MTP_STAT(&m->base, rx_dropped, 1);
        return;
    }
    if (t->len > m->max_record) {
        MTP_STAT(&m->base, rx_oversize, 1);
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                 "UDS: dropped a %u-byte record (max_record %u)", t->len, m->max_record);
        return;
    }
    MTP_STAT(&m->base, rx_records, 1);
    MTP_STAT(&m->base, rx_bytes, t->len);
    struct usp_mtp_rx rx = {.reply_to = {NULL}, .arrived_on = NULL, .qos = 0};
    if (m->base.cb && m->base.cb->record)
        m->base.cb->record(&m->base, t->value, t->len, &rx, m->base.user);
}

static void on_error_tlv(struct uds_conn *m, const struct usp_uds_tlv *t)
{
    char text[300];
    size_t o = 0;
    for (uint32_t i = 0; i < t->len && o + 1 < sizeof text; i++) {
        unsigned char c = t->value[i];
        text[o++] = (c >= 0x20 && c != 0x7f) ? (char)c : ' ';
    }
    text[o] = '\0';
    set_err(m, "Error TLV: %s", o ? text : "(empty)");
    /* R-UDS.25: close. */
    bool before = m->phase != P_UP && m->phase != P_CLOSING;
    lost(m,
         m->phase == P_CLOSING    ? USP_MTP_R_CLOSED
         : before && !m->accepted ? USP_MTP_R_REFUSED
                                  : USP_MTP_R_PEER_CLOSED,
         CODE_ERR_TLV);
}

static void on_frame(struct uds_conn *m, const struct usp_uds_frame *f)
{
    size_t off = 0;
    struct usp_uds_tlv t;
    while (!m->lost && !m->dead && usp_uds_tlv_next(f, &off, &t) == 1) {
        switch (t.type) {
        case USP_UDS_HANDSHAKE:
            on_handshake(m, &t);
            break;
        case USP_UDS_ERROR:
            on_error_tlv(m, &t);
            break;
        case USP_UDS_RECORD:
            on_record(m, &t);
            break;
        default:
            break; /* [R-UDS.15] */
        }
    }
}

static void feed_plain(struct uds_conn *m, const uint8_t *d, size_t len)
{
    struct usp_uds_frame f;
    int rc = 0;
    while (len && !m->lost && !m->dead) {
        size_t used = 0;
        rc = usp_uds_parse(&m->parser, d, len, &used, &f);
        if (rc <= 0)
            break;
        d += used;
        len -= used;
        on_frame(m, &f);
    }
    if (rc == USP_ENOMEM) {
        lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        return;
    }
    if (rc < 0 && !m->lost && !m->dead) {
        char why[300];
        usp_uds_parser_why(&m->parser, why, sizeof why);
        send_error_and_close(m, USP_MTP_R_LOST, "bad frame from the peer", why);
        return;
    }
    if (!m->lost && !m->dead)
        (void)usp_uds_parse(&m->parser, NULL, 0, NULL, &f);
}

/* TLS is up: the client speaks first [R-UDS.16]. */
static void tls_up(struct uds_conn *m)
{
    if (!tls_stream__ids(m->tls)) {
        char why[300];
        snprintf(why, sizeof why,
                 "the peer's certificate authenticates no Endpoint ID (urn:bbf:usp:id:): %s",
                 tls_stream__ids_why(m->tls));
        send_error_and_close(m, m->accepted ? USP_MTP_R_LOST : USP_MTP_R_REFUSED, "refused", why);
        m->lost_code = USP_EPERM;
        return;
    }
    m->phase = P_HANDSHAKE;
    if (!m->accepted && send_tlv_text(m, false, m->eid) != 0 && !m->lost)
        lost(m, USP_MTP_R_INTERNAL, USP_EIO);
}

static void feed(struct uds_conn *m, const uint8_t *d, size_t len)
{
    if (!m->tls) {
        feed_plain(m, d, len);
        return;
    }
    uint8_t plain[PLAIN_SIZE];
    tls_stream__feed(m->tls, d, len);
    while (!m->lost && !m->dead) {
        bool was_up = tls_stream__up(m->tls);
        int r = tls_stream__read(m->tls, plain, sizeof plain);
        if (tls_flush(m) != 0 && !m->lost)
            lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        if (m->lost || m->dead)
            break;
        if (r < 0) {
            const char *w = tls_stream__why(m->tls);
            if (r == USP_EIO) {
                set_err(m, "%s", w);
                lost(m, m->phase == P_CLOSING ? USP_MTP_R_CLOSED : USP_MTP_R_PEER_CLOSED, 0);
            } else if (r == USP_ENOMEM) {
                lost(m, USP_MTP_R_INTERNAL, r);
            } else {
                set_err(m, "TLS: %s", w);
                bool before = m->phase == P_TLS || m->phase == P_HANDSHAKE;
                lost(m, before && !m->accepted ? USP_MTP_R_REFUSED : USP_MTP_R_LOST,
                     r == USP_EPERM ? USP_EPERM : USP_EPROTO);
            }
            break;
        }
        /* The read that finished the handshake may hold plaintext too. */
        if (!was_up && tls_stream__up(m->tls) && m->phase == P_TLS) {
            tls_up(m);
            if (m->lost || m->dead)
                break;
        }
        if (r == 0)
            break;
        feed_plain(m, plain, (size_t)r);
    }
    tls_stream__feed(m->tls, NULL, 0);
}

/* ---- Socket callbacks ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    char *b = malloc(READ_SIZE);
    *buf = uv_buf_init(b, b ? READ_SIZE : 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct uds_conn *m = s->data;
    if (n == 0 || m->pipe_state != H_OPEN) {
        free(buf->base);
        return;
    }
    enter(m);
    if (n > 0) {
        feed(m, (const uint8_t *)buf->base, (size_t)n);
    } else if (m->phase == P_CLOSING) {
        lost(m, USP_MTP_R_CLOSED, 0);
    } else if (n == UV_ENOBUFS) {
        lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
    } else {
        if (usp_uds_parser_in_frame(&m->parser))
            set_err(m, "the peer closed the connection inside a frame");
        bool before = m->phase != P_UP;
        if (n == UV_EOF)
            lost(m, before && !m->accepted ? USP_MTP_R_REFUSED : USP_MTP_R_PEER_CLOSED, 0);
        else
            lost(m, USP_MTP_R_LOST, (int)-n);
        if (before && !m->accepted)
            set_err(m, "the server closed the connection before the handshake finished");
    }
    free(buf->base);
    leave(m);
}

/* Starts reading, TLS (client: its ClientHello) or the client's Handshake. */
static int session_start(struct uds_conn *m, SSL_CTX *sc)
{
    int rc = uv_read_start((uv_stream_t *)&m->pipe, on_alloc, on_read);
    if (rc) {
        lost(m, USP_MTP_R_INTERNAL, USP_EIO);
        return USP_EIO;
    }
    if (!m->use_tls) {
        m->phase = P_HANDSHAKE;
        if (!m->accepted && (rc = send_tlv_text(m, false, m->eid)) != 0 && !m->lost)
            lost(m, USP_MTP_R_INTERNAL, rc);
        return rc;
    }
    char why[300];
    rc = tls_stream__new(sc, m->accepted ? USP_TLS_SERVER : USP_TLS_CLIENT, NULL,
                         m->accepted ? NULL : m->cert, m->accepted ? NULL : m->key, &m->tls, why,
                         sizeof why);
    if (rc) {
        set_err(m, "TLS: %s", why);
        lost(m, USP_MTP_R_INTERNAL, rc);
        return rc;
    }
    m->phase = P_TLS;
    if (!m->accepted) {
        rc = tls_stream__start(m->tls);
        if (rc == 0)
            rc = tls_flush(m);
        if (rc && !m->lost) {
            set_err(m, "TLS: %s", tls_stream__why(m->tls));
            lost(m, USP_MTP_R_INTERNAL, rc);
        }
    }
    return rc;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct uds_conn *m = req->handle->data;
    free(req);
    if (status == UV_ECANCELED || m->pipe_state != H_OPEN)
        return;
    enter(m);
    if (status < 0) {
        lost(m, USP_MTP_R_CONNECT, -status);
    } else {
        give_slot(m); /* the server accepted: out of its backlog */
        SSL_CTX *sc = NULL;
        char why[300];
        if (m->use_tls) {
            int rc = mtp__tls_ctx(m->base.ctx, USP_TLS_CLIENT, m->tls_flags, m->ca, NULL, NULL, &sc,
                                  why, sizeof why);
            if (rc) {
                set_err(m, "TLS: %s", why);
                lost(m, USP_MTP_R_INTERNAL, rc);
            }
        }
        if (!m->lost)
            (void)session_start(m, sc);
    }
    leave(m);
}

/* ---- Timers --------------------------------------------------------------------- */

/* No handshake within connect_timeout_ms [R-UDS.18]. */
static void fire_deadline(struct usp_tw_entry *t, uint64_t now)
{
    struct uds_conn *m = of_timer(t);
    enter(m);
    lost(m, m->accepted ? USP_MTP_R_LOST : USP_MTP_R_TIMEOUT, 0);
    if (m->accepted)
        set_err(m, "the client sent no Handshake within %u ms", m->connect_timeout_ms);
    leave(m);
}

static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now)
{
    struct uds_conn *m = of_timer(t);
    enter(m);
    lost(m, USP_MTP_R_CLOSED, 1);
    leave(m);
}

static void fire_attempt(struct usp_tw_entry *t, uint64_t now)
{
    struct uds_conn *m = of_timer(t);
    struct usp_mtp_ctx *ctx = m->base.ctx;
    if (m->pipe_state != H_NONE) {
        mtp__timer_arm(ctx, &m->timer, 20, fire_attempt);
        return;
    }
    if (!mtp__connect_slot_take(ctx, &m->wait, &m->timer, fire_attempt)) {
        m->phase = P_WAIT_SLOT;
        return;
    }
    m->has_slot = true;
    enter(m);
    m->phase = P_CONNECTING;
    mtp__timer_arm(ctx, &m->timer, m->connect_timeout_ms, fire_deadline);
    mtp__emit_state(&m->base, USP_MTP_CONNECTING, USP_MTP_R_NONE, 0, m->attempt, 0, "connecting");
    if (m->dead || m->closing || m->lost) {
        leave(m);
        return;
    }
    int rc = uv_pipe_init(ctx->loop, &m->pipe, 0);
    if (rc) {
        lost(m, USP_MTP_R_CONNECT, -rc);
        leave(m);
        return;
    }
    m->pipe.data = m;
    m->pipe_state = H_OPEN;
    uv_connect_t *req = malloc(sizeof *req);
    if (!req) {
        lost(m, USP_MTP_R_INTERNAL, USP_ENOMEM);
        leave(m);
        return;
    }
    uv_pipe_connect(req, &m->pipe, m->path, on_connect); /* errors come to on_connect */
    leave(m);
}

/* ---- Operations ------------------------------------------------------------------ */

static int uds_open(struct usp_mtp_conn *c)
{
    struct uds_conn *m = CONN(c);
    if (m->dead || m->accepted || m->phase != P_IDLE)
        return USP_EPERM;
    m->phase = P_RETRY;
    mtp__timer_arm(c->ctx, &m->timer, 0, fire_attempt);
    return 0;
}

static int uds_send(struct usp_mtp_conn *c, const struct usp_mtp_dest *to, const uint8_t *rec,
                    size_t len)
{
    struct uds_conn *m = CONN(c);
    if (m->dead || m->phase != P_UP || m->lost) {
        MTP_STAT(c, tx_refused, 1);
        return USP_EPERM;
    }
    if (!rec && len) {
        MTP_STAT(c, tx_refused, 1);
        return USP_EINVAL;
    }
    if (len > m->max_record) {
        MTP_STAT(c, tx_oversize, 1);
        mtp__log(c->ctx, USP_MTP_LOG_WARN, m->eid,
                 "UDS: refused to send a %zu-byte record (max_record %u)", len, m->max_record);
        return USP_ERANGE;
    }
    api_enter(m);
    int rc = send_record(m, rec, len);
    api_leave(m);
    return rc;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct uds_conn *m = req->data;
    free(req);
    if (!m)
        return;
    m->shut = NULL;
    /* Everything went out: the close is done, whatever the peer does. */
    enter(m);
    lost(m, USP_MTP_R_CLOSED, 0);
    leave(m);
}

static int uds_close(struct usp_mtp_conn *c, uint32_t reason_code, const char *reason)
{
    struct uds_conn *m = CONN(c);
    if (m->dead || m->closing || m->phase == P_CLOSED)
        return USP_EPERM;
    api_enter(m);
    m->closing = true;
    if (m->phase == P_UP && !m->lost) {
        if (m->peer)
            send_own_record(m, false, reason_code, reason);
        if (m->tls && !m->lost && tls_stream__shutdown(m->tls) == 0)
            (void)tls_flush(m);
        m->phase = P_CLOSING;
        uv_shutdown_t *req = m->lost ? NULL : malloc(sizeof *req);
        if (req) {
            req->data = m;
            if (uv_shutdown(req, (uv_stream_t *)&m->pipe, on_shutdown) == 0) {
                m->shut = req;
                mtp__timer_arm(c->ctx, &m->timer, m->close_timeout_ms, fire_close_timeout);
            } else {
                free(req);
                lost(m, USP_MTP_R_CLOSED, 0);
            }
        } else {
            lost(m, USP_MTP_R_CLOSED, 0);
        }
    } else {
        if (m->lost) {
            m->lost_reason = USP_MTP_R_CLOSED;
            m->lost_code = 0;
        }
        lost(m, USP_MTP_R_CLOSED, 0);
    }
    api_leave(m);
    return 0;
}

static void uds_free(struct usp_mtp_conn *c)
{
    struct uds_conn *m = CONN(c);
    if (m->dead)
        return;
    m->dead = true;
    m->base.cb = NULL;
    if (m->shut) {
        m->shut->data = NULL;
        m->shut = NULL;
    }
    mtp__timer_cancel(c->ctx, &m->timer);
    mtp__connect_wait_cancel(c->ctx, &m->wait);
    pipe_close(m);
    if (m->busy == 0)
        finalize(m);
}

static const char *uds_peer_eid(const struct usp_mtp_conn *c)
{
    const struct uds_conn *m = (const struct uds_conn *)c;
    return m->phase == P_UP || m->phase == P_CLOSING ? m->peer : NULL;
}

static const struct usp_tls_ids *uds_peer_ids(const struct usp_mtp_conn *c)
{
    const struct uds_conn *m = (const struct uds_conn *)c;
    if (!m->tls || (m->phase != P_UP && m->phase != P_CLOSING))
        return NULL;
    return tls_stream__ids(m->tls);
}

static int uds_reject(struct usp_mtp_conn *c, const char *reason)
{
    struct uds_conn *m = CONN(c);
    if (m->dead || m->phase != P_UP || m->lost)
        return USP_EPERM;
    api_enter(m);
    send_error_and_close(m, USP_MTP_R_LOST, "Record refused",
                         reason && *reason ? reason
                                           : "the USP Record could not be parsed [R-UDS.24]");
    api_leave(m);
    return 0;
}

static const char *put_str(char **pos, const char *s)
{
    char *d = *pos;
    size_t n = strlen(s) + 1;
    memcpy(d, s, n);
    *pos += n;
    return d;
}

/* One block: the struct and the strings. */
static struct uds_conn *conn_alloc(struct usp_mtp_ctx *ctx, const char *const *strs, size_t n)
{
    size_t total = sizeof(struct uds_conn);
    for (size_t i = 0; i < n; i++)
        if (strs[i])
            total += strlen(strs[i]) + 1;
    struct uds_conn *m = calloc(1, total);
    if (!m)
        return NULL;
    m->base.ctx = ctx;
    m->base.ops = &usp_mtp_uds_ops;
    return m;
}

static void conn_limits(struct uds_conn *m, uint32_t max_record)
{
    m->max_record = max_record;
    m->lim.max_frame = max_record + FRAME_HEADROOM;
    usp_uds_parser_init(&m->parser, &m->lim);
}

static int uds_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                        const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                        size_t whylen)
{
    if (!url->path[0])
        return mtp__fail(why, whylen, USP_EINVAL, "unix: needs a socket path");
    bool tls = mtp__tls_wanted(cfg, url);
    const char *strs[] = {cfg->eid,
                          url->path,
                          cfg->peer_eid,
                          cfg->usp_version,
                          tls ? cfg->tls.ca_file : NULL,
                          tls ? cfg->tls.cert_file : NULL,
                          tls ? cfg->tls.key_file : NULL};
    struct uds_conn *m = conn_alloc(ctx, strs, sizeof strs / sizeof strs[0]);
    if (!m)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char *pos = (char *)(m + 1);
    m->eid = put_str(&pos, cfg->eid);
    m->path = put_str(&pos, url->path);
    m->cfg_peer = cfg->peer_eid ? put_str(&pos, cfg->peer_eid) : NULL;
    m->usp_version = cfg->usp_version ? put_str(&pos, cfg->usp_version) : NULL;
    if (tls) {
        m->ca = put_str(&pos, cfg->tls.ca_file);
        m->cert = put_str(&pos, cfg->tls.cert_file);
        m->key = put_str(&pos, cfg->tls.key_file);
    }
    m->use_tls = tls;
    m->tls_flags = cfg->tls.flags;
    m->connect_timeout_ms = cfg->connect_timeout_ms;
    m->close_timeout_ms = cfg->close_timeout_ms;
    m->role = (uint8_t)cfg->role;
    m->phase = P_IDLE;
    conn_limits(m, cfg->max_record);
    mtp__conn_hold(ctx);
    *out = &m->base;
    return 0;
}

const struct usp_mtp_ops usp_mtp_uds_ops = {
    .name = "uds",
    .conn_new = uds_conn_new,
    .open = uds_open,
    .send = uds_send,
    .close = uds_close,
    .free = uds_free,
};

size_t usp_mtp_uds_conn_size(void)
{
    return sizeof(struct uds_conn);
}

/* ---- Listening -------------------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h)
{
    struct uds_listener *l = h->data;
    struct usp_mtp_ctx *ctx = l->base.ctx;
    free(l);
    mtp__conn_release(ctx);
}

static void on_dropped_closed(uv_handle_t *h)
{
    free(h);
}

/* Takes a connection off the backlog and closes it (out of memory). */
static void drop_pending(struct uds_listener *l)
{
    mtp__log(l->base.ctx, USP_MTP_LOG_WARN, l->eid,
             "UDS unix:%s: out of memory, connection dropped", l->path);
    uv_pipe_t *p = malloc(sizeof *p);
    if (!p || uv_pipe_init(l->base.ctx->loop, p, 0) != 0) {
        free(p);
        return;
    }
    (void)uv_accept((uv_stream_t *)&l->pipe, (uv_stream_t *)p);
    uv_close((uv_handle_t *)p, on_dropped_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct uds_listener *l = server->data;
    if (l->closed)
        return;
    if (status < 0) {
        mtp__log(l->base.ctx, USP_MTP_LOG_WARN, l->eid, "UDS unix:%s: accept: %s", l->path,
                 uv_strerror(status));
        return;
    }
    const char *strs[] = {l->eid, l->path, l->usp_version};
    struct uds_conn *m = conn_alloc(l->base.ctx, strs, 3);
    if (!m || uv_pipe_init(l->base.ctx->loop, &m->pipe, 0) != 0) {
        free(m);
        drop_pending(l);
        return;
    }
    char *pos = (char *)(m + 1);
    m->eid = put_str(&pos, l->eid);
    m->path = put_str(&pos, l->path);
    m->usp_version = l->usp_version ? put_str(&pos, l->usp_version) : NULL;
    m->pipe.data = m;
    m->pipe_state = H_OPEN;
    m->accepted = true;
    m->use_tls = l->sc != NULL;
    m->connect_timeout_ms = l->connect_timeout_ms;
    m->close_timeout_ms = l->close_timeout_ms;
    m->role = l->role;
    conn_limits(m, l->max_record);
    mtp__conn_hold(l->base.ctx);
    m->lis = l;
    m->lnext = l->conns;
    if (l->conns)
        l->conns->lprev = &m->lnext;
    m->lprev = &l->conns;
    l->conns = m;
    enter(m);
    int rc = uv_accept(server, (uv_stream_t *)&m->pipe);
    if (rc) {
        m->dead = true;
    } else {
        mtp__timer_arm(l->base.ctx, &m->timer, m->connect_timeout_ms, fire_deadline);
        (void)session_start(m, l->sc);
    }
    leave(m);
}

/* Whether something accepts on `path` now. */
static bool socket_alive(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return true; /* cannot tell: do not remove it */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof sa.sun_path) {
        close(fd);
        return true;
    }
    memcpy(sa.sun_path, path, n + 1);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    return r == 0 || (e != ECONNREFUSED && e != ENOENT);
}

static int uds_listen(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                      const struct usp_mtp_url *url, struct usp_mtp_listener **out, char *why,
                      size_t whylen)
{
    if (!url->path[0])
        return mtp__fail(why, whylen, USP_EINVAL, "unix: needs a socket path");
    SSL_CTX *sc = NULL;
    if (mtp__tls_wanted(cfg, url)) {
        int rc = mtp__tls_ctx(ctx, USP_TLS_SERVER, cfg->tls.flags, cfg->tls.ca_file,
                              cfg->tls.cert_file, cfg->tls.key_file, &sc, why, whylen);
        if (rc)
            return rc;
    }
    struct stat st;
    if (lstat(url->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return mtp__fail(why, whylen, USP_EIO, "unix:%s exists and is not a socket", url->path);
        if (socket_alive(url->path))
            return mtp__fail(why, whylen, USP_EIO,
                             "unix:%s is in use: something accepts connections on it", url->path);
        if (unlink(url->path) != 0)
            return mtp__fail(why, whylen, USP_EIO, "unix:%s: cannot remove the stale socket: %s",
                             url->path, strerror(errno));
    }
    size_t total = sizeof(struct uds_listener) + strlen(cfg->eid) + 1 + strlen(url->path) + 1 +
                   (cfg->usp_version ? strlen(cfg->usp_version) + 1 : 0);
    struct uds_listener *l = calloc(1, total);
    if (!l)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char *pos = (char *)(l + 1);
    l->eid = put_str(&pos, cfg->eid);
    l->path = put_str(&pos, url->path);
    l->usp_version = cfg->usp_version ? put_str(&pos, cfg->usp_version) : NULL;
    l->max_record = cfg->max_record;
    l->connect_timeout_ms = cfg->connect_timeout_ms;
    l->close_timeout_ms = cfg->close_timeout_ms;
    l->role = (uint8_t)cfg->role;
    l->sc = sc;
    l->base.ctx = ctx;
    int rc = uv_pipe_init(ctx->loop, &l->pipe, 0);
    if (rc) {
        free(l);
        return mtp__fail(why, whylen, USP_EIO, "unix:%s: %s", url->path, uv_strerror(rc));
    }
    l->pipe.data = l;
    mtp__conn_hold(ctx);
    rc = uv_pipe_bind(&l->pipe, l->path);
    if (rc == 0) {
        l->bound = true;
        rc = uv_listen((uv_stream_t *)&l->pipe, SOMAXCONN, on_connection);
    }
    if (rc) {
        mtp__fail(why, whylen, USP_EIO, "unix:%s: cannot %s: %s", l->path,
                  l->bound ? "listen" : "bind", uv_strerror(rc));
        if (l->bound)
            unlink(l->path);
        l->closed = true;
        uv_close((uv_handle_t *)&l->pipe, on_listener_closed);
        return USP_EIO;
    }
    mtp__log(ctx, USP_MTP_LOG_INFO, l->eid, "UDS: listening on unix:%s%s", l->path,
             sc ? " with TLS" : "");
    *out = &l->base;
    return 0;
}

static void uds_listener_close(struct usp_mtp_listener *base)
{
    struct uds_listener *l = (struct uds_listener *)base;
    if (l->closed)
        return;
    l->closed = true;
    l->base.cb = NULL;
    if (l->bound)
        unlink(l->path);
    while (l->conns) {
        struct uds_conn *m = l->conns;
        unlink_listener(m);
        if (!m->handed) {
            /* Not the owner's yet: dropped. */
            m->dead = true;
            pipe_close(m);
            if (m->busy == 0)
                finalize(m);
            continue;
        }
        api_enter(m);
        if (!m->lost)
            lost(m, USP_MTP_R_CLOSED, 1001);
        api_leave(m);
    }
    uv_close((uv_handle_t *)&l->pipe, on_listener_closed);
}

const struct usp_mtp_ext_ops usp_mtp_uds_ext_ops = {
    .base = &usp_mtp_uds_ops,
    .listen = uds_listen,
    .listener_close = uds_listener_close,
    .reject = uds_reject,
    .peer_eid = uds_peer_eid,
    .peer_ids = uds_peer_ids,
};
