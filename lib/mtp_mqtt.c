/* The MQTT binding (TR-369 "MQTT Binding", R-MQTT.*) on libmosquitto 2.0
 * driven by the caller's libuv loop through the external-loop API only:
 * mosquitto_socket() + uv_poll_t + mosquitto_loop_read/write, and
 * mosquitto_loop_misc (keepalive) from the context's timer wheel, which
 * touches a connection only when its keepalive check is due. Host names are
 * resolved with uv_getaddrinfo first, so libmosquitto only ever sees numeric
 * addresses and its connect never blocks.
 *
 * Life of a connection: open -> [wait for a connect slot] -> [resolve] ->
 * TCP connect + CONNECT -> CONNACK -> SUBSCRIBE -> SUBACK -> UP (the agent
 * sends its MQTTConnectRecord) ... -> lost: the libmosquitto object is
 * destroyed, DOWN is reported and the next attempt scheduled after the
 * ConnectRetry back-off. A graceful close sends the DisconnectRecord, then
 * DISCONNECT, and ends in CLOSED.
 *
 * Re-entrancy: libmosquitto calls back from inside mosquitto_loop_*; user
 * callbacks run from there too and may call send, close or free. Every
 * frame that calls out holds `busy`; whatever cannot be done inside (destroy
 * the libmosquitto object, free the connection, report DOWN) is done by the
 * outermost frame (settle), or from the loop when the frame is a call into
 * this API, so that callbacks never run inside the caller's own call. */
#include <errno.h>
#include <limits.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"

/* ---- File descriptors and source ports ------------------------------------
 *
 * libmosquitto 2.0.11 opens an AF_UNIX socketpair in mosquitto_new() and
 * again in every mosquitto_connect*() call. It only serves to wake up
 * mosquitto_loop()'s select() when another thread queues a packet; with the
 * external loop nothing ever reads it, yet it costs two of the process's
 * file descriptors per client (3 per connection instead of 1). No option of
 * 2.0.11 turns it off, and the library is built to carry on without it: a
 * failed socketpair() is only a logged warning, and every use of the pair
 * is skipped when it is absent.
 *
 * Likewise mosquitto_connect_bind*() creates, binds and connects the socket
 * in one call, leaving no moment to set IP_BIND_ADDRESS_NO_PORT, without
 * which the kernel searches for a free port at bind() time (slow at tens of
 * thousands of clients per source address) instead of at connect().
 *
 * So this file defines socketpair() and bind(). They act only on the thread
 * and for the duration of our own calls into libmosquitto (hook_flags is
 * thread-local and set around mosquitto_new/connect), and otherwise pass
 * straight to the system call, so the rest of the process sees the usual
 * behaviour. */
enum {
    HOOK_NO_PAIR = 1u << 0,
    HOOK_BIND_NO_PORT = 1u << 1,
    HOOK_READ_AHEAD = 1u << 2,
};
static _Thread_local unsigned hook_flags;

/* Reading ahead. libmosquitto reads a packet with one read() for the fixed
 * header's first byte, one per byte of the remaining length and one for
 * the rest: 3-4 system calls per packet, and one more that finds the socket
 * empty. While this binding has mosquitto_loop_read read a plain (not TLS)
 * socket, read() on that socket is served from a per-thread buffer filled
 * with one system call, and the binding calls mosquitto_loop_read again
 * until the buffer is used up, so nothing stays in it once that socket's
 * turn is over (what is left when the connection fails is dropped with
 * it). Everywhere else read() is the system call. */
#define READ_AHEAD_SIZE 16384
static _Thread_local struct {
    int fd; /* the socket being read, with HOOK_READ_AHEAD */
    uint32_t off, len;
    uint8_t buf[READ_AHEAD_SIZE];
} ra;

ssize_t read(int fd, void *dst, size_t n)
{
    if (!(hook_flags & HOOK_READ_AHEAD) || fd != ra.fd || n == 0)
        return syscall(SYS_read, fd, dst, n);
    if (ra.off == ra.len) {
        ssize_t r = syscall(SYS_read, fd, ra.buf, sizeof ra.buf);
        if (r <= 0)
            return r;
        ra.off = 0;
        ra.len = (uint32_t)r;
    }
    size_t k = ra.len - ra.off;
    if (k > n)
        k = n;
    memcpy(dst, ra.buf + ra.off, k);
    ra.off += (uint32_t)k;
    return (ssize_t)k;
}

int socketpair(int domain, int type, int protocol, int sv[2])
{
    if (hook_flags & HOOK_NO_PAIR) {
        errno = EMFILE;
        return -1;
    }
    return (int)syscall(SYS_socketpair, domain, type, protocol, sv);
}

#if defined(__USE_GNU) && !defined(__cplusplus)
#define SOCKADDR_PTR(a) ((a).__sockaddr__) /* glibc's transparent union */
#else
#define SOCKADDR_PTR(a) (a)
#endif

int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    const struct sockaddr *sa = SOCKADDR_PTR(addr);
    if ((hook_flags & HOOK_BIND_NO_PORT) && sa &&
        (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
        int one = 1;
        /* Failure only costs speed. */
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    return (int)syscall(SYS_bind, fd, sa, len);
}

/* ---- The connection ------------------------------------------------------- */

enum phase {
    P_IDLE,        /* created */
    P_WAIT_SLOT,   /* waiting for a connect slot of the context */
    P_RESOLVING,   /* uv_getaddrinfo */
    P_CONNECTING,  /* TCP connect and CONNECT sent, waiting for CONNACK */
    P_SUBSCRIBING, /* SUBSCRIBE sent, waiting for SUBACK */
    P_UP,
    P_CLOSING, /* DISCONNECT sent */
    P_RETRY,   /* waiting for the next attempt */
    P_CLOSED,
};

enum poll_state { POLL_NONE, POLL_ACTIVE, POLL_CLOSING };

struct mqtt_conn {
    struct usp_mtp_conn base;
    struct mosquitto *mosq; /* only while an attempt or session exists */
    uv_poll_t poll;
    struct usp_tw_entry timer; /* the one deadline of the current phase */
    struct mtp_waiter wait;    /* for a connect slot */
    uv_getaddrinfo_t *gai;
    char *assigned_id; /* CONNACK Assigned Client Identifier, kept [R-MQTT.9] */
    char *reply;       /* reply-to in use: own topic or Response Information */
    char **subs;       /* topic filters of the pending SUBSCRIBE */
    int nsubs;
    int sub_mid;
    /* Configuration, all in the allocation after the struct. */
    const char *eid, *host, *topic, *client_id, *user, *password, *bind;
    const char *peer_eid, *peer_dest, *usp_version;
    uint32_t max_record, connect_timeout_ms, close_timeout_ms;
    uint32_t retry_time_s, retry_mult, retry_max_s;
    uint32_t attempt; /* failed attempts since the last UP */
    int lost_code;
    uint16_t port, keepalive;
    uint8_t phase, poll_state, poll_events, version, role, qos, qos_eff;
    uint8_t lost_reason, close_reason, busy;
    bool host_is_name, reply_owned, has_slot, lost, closing, dead, finalizing, api;
    /* mqtts:// (see "TLS" below): the context's shared client SSL_CTX
     * (borrowed from mtp__tls_ctx), the own certificate and key loaded
     * into each SSL, and why the last handshake failed. */
    SSL_CTX *ssl_ctx;
    const char *cert_file, *key_file;
    unsigned long tls_err; /* OpenSSL's first error of a failed handshake */
    int tls_verify;        /* X509_V_* of a failed verification */
    uint8_t tls_fail;      /* enum tls_fail */
    bool tls, tls_hs, ww_stale, rd_wants_write;
};

#define CONN(c) ((struct mqtt_conn *)(c))

static struct mqtt_conn *of_timer(struct usp_tw_entry *t)
{
    return (struct mqtt_conn *)((char *)t - offsetof(struct mqtt_conn, timer));
}

static bool settle(struct mqtt_conn *m);
static void fire_attempt(struct usp_tw_entry *t, uint64_t now_ms);
static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now_ms);

static void enter(struct mqtt_conn *m)
{
    m->busy++;
    m->ww_stale = false; /* this frame may queue packets: see rearm_poll */
}

/* Ends a frame; the outermost one settles. The caller must not touch `m`
 * afterwards. */
static void leave(struct mqtt_conn *m)
{
    if (--m->busy == 0)
        (void)settle(m);
}

static void fire_settle(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct mqtt_conn *m = of_timer(t);
    enter(m);
    leave(m);
}

static void on_poll_closed(uv_handle_t *h)
{
    struct mqtt_conn *m = h->data;
    m->poll_state = POLL_NONE;
    if (m->finalizing) {
        struct usp_mtp_ctx *ctx = m->base.ctx;
        free(m);
        mtp__conn_release(ctx);
    }
}

/* Stops watching the socket; must happen before libmosquitto closes it. */
static void poll_close(struct mqtt_conn *m)
{
    if (m->poll_state != POLL_ACTIVE)
        return;
    m->poll_state = POLL_CLOSING;
    m->poll_events = 0;
    uv_close((uv_handle_t *)&m->poll, on_poll_closed);
}

static void lost(struct mqtt_conn *m, enum usp_mtp_reason reason, int code)
{
    if (!m->lost) {
        m->lost = true;
        m->lost_reason = (uint8_t)reason;
        m->lost_code = code;
    }
    poll_close(m);
}

static void on_poll(uv_poll_t *p, int status, int events);

static void rearm_poll(struct mqtt_conn *m)
{
    if (m->poll_state != POLL_ACTIVE || !m->mosq)
        return;
    bool ww;
    if (m->tls_hs) {
        /* Our handshake: what OpenSSL waits for, not mosquitto_want_write,
         * which stays true for the queued CONNECT (see "TLS"). */
        SSL *ssl = mosquitto_ssl_get(m->mosq);
        ww = ssl && SSL_want_write(ssl);
    } else {
        ww = (mosquitto_want_write(m->mosq) && !m->ww_stale) || m->rd_wants_write;
    }
    int ev = UV_READABLE | (ww ? UV_WRITABLE : 0);
    if (ev == m->poll_events)
        return;
    if (uv_poll_start(&m->poll, ev, on_poll) == 0)
        m->poll_events = (uint8_t)ev;
    else
        lost(m, USP_MTP_R_INTERNAL, 0);
}

static void free_subs(struct mqtt_conn *m)
{
    for (int i = 0; i < m->nsubs; i++)
        free(m->subs[i]);
    free(m->subs);
    m->subs = NULL;
    m->nsubs = 0;
}

static void drop_reply(struct mqtt_conn *m)
{
    if (m->reply_owned)
        free(m->reply);
    m->reply = NULL;
    m->reply_owned = false;
}

/* Releases everything of the current attempt or session. */
static void drop_session(struct mqtt_conn *m)
{
    poll_close(m);
    if (m->mosq) {
        mosquitto_destroy(m->mosq);
        m->mosq = NULL;
    }
    if (m->gai) {
        m->gai->data = NULL; /* its callback frees it */
        uv_cancel((uv_req_t *)m->gai);
        m->gai = NULL;
    }
    free_subs(m);
    drop_reply(m);
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
    mtp__connect_wait_cancel(m->base.ctx, &m->wait);
    mtp__timer_cancel(m->base.ctx, &m->timer);
}

static void finalize(struct mqtt_conn *m)
{
    drop_session(m);
    free(m->assigned_id);
    m->assigned_id = NULL;
    m->finalizing = true;
    if (m->poll_state == POLL_NONE) {
        struct usp_mtp_ctx *ctx = m->base.ctx;
        free(m);
        mtp__conn_release(ctx);
    }
    /* else on_poll_closed frees it */
}

static const char *mqtt_reason_text(const struct mqtt_conn *m, int code)
{
    return m->version == USP_MQTT_V5 ? mosquitto_reason_string(code)
                                     : mosquitto_connack_string(code);
}

/* ---- TLS (mqtts://) ----------------------------------------------------------
 *
 * libmosquitto gets the context's client SSL_CTX (mtp__tls_ctx: TLS 1.2+,
 * the broker's certificate verified against the CA file only, R-MTP.1)
 * through MOSQ_OPT_SSL_CTX, shared by every connection of the context and
 * up-referenced by each libmosquitto object. MOSQ_OPT_SSL_CTX_WITH_DEFAULTS
 * must be turned off: 2.0.11 enables it in mosquitto_new, and with it
 * refuses a context given without mosquitto_tls_set (and would otherwise
 * load the CA file again per object). The context holds no certificate:
 * each SSL gets the agent's own one (usp_tls_use_files), and the URL's host
 * to check the broker's certificate against (usp_tls_expect_host, R-MTP.4
 * step 3), from the context's info callback at the start of the handshake,
 * which runs inside mosquitto_connect_bind_async's first SSL_connect, before
 * the ClientHello is built. `tls_conn` names the connection whose call is
 * running, so the shared callback touches only that connection's SSL.
 *
 * The handshake is driven here, not by libmosquitto: 2.0.11 continues it
 * only from mosquitto_loop_read (mosquitto_loop_write does nothing while it
 * runs), reports its failures without a reason (and closes the socket behind
 * the poll handle), takes a connection reset for "try again", and keeps
 * mosquitto_want_write true for the queued CONNECT, which would make a
 * poll for writing spin while OpenSSL waits to read. So while `tls_hs` the
 * binding calls SSL_do_handshake itself, polls for what OpenSSL wants, and
 * keeps the failure (verify result or OpenSSL error) for the DOWN detail;
 * once done, one mosquitto_loop_read lets libmosquitto see the finished
 * handshake (its SSL_connect returns 1) and mosquitto_loop_write sends the
 * CONNECT.
 *
 * Afterwards libmosquitto's `want_write` flag is set by an SSL_read or
 * SSL_write that would block on writing and cleared only by the next
 * SSL_write: with nothing left to send it stays set and a poll for writing
 * would spin. A writable socket after which mosquitto_loop_write left
 * OpenSSL not waiting to write, yet mosquitto_want_write still true, is
 * such a stale flag (`ww_stale`): not polled for until the connection next
 * does something. An SSL_read that must write (`rd_wants_write`, e.g. a
 * TLS 1.2 renegotiation) is retried from mosquitto_loop_read when the socket
 * can take it. */
enum tls_fail {
    TLS_OK,
    TLS_FAIL_SSL,      /* OpenSSL failed: tls_err, tls_verify */
    TLS_FAIL_CLOSED,   /* the broker closed the connection in the handshake */
    TLS_FAIL_OWN_CERT, /* our certificate or key could not be loaded */
};

static _Thread_local struct mqtt_conn *tls_conn;

static void describe_tls(const struct mqtt_conn *m, int code, char *buf, size_t n)
{
    int w = snprintf(buf, n, "TLS handshake with %s port %u failed: ", m->host, m->port);
    size_t used = w < 0 ? 0 : (size_t)w;
    if (used >= n)
        return;
    buf += used;
    n -= used;
    if (m->tls_fail == TLS_FAIL_OWN_CERT) {
        snprintf(buf, n, "cannot load our certificate %s or key %s", m->cert_file, m->key_file);
    } else if (m->tls_fail == TLS_FAIL_CLOSED) {
        snprintf(buf, n, "%s", code ? strerror(code) : "the broker closed the connection");
    } else if (m->tls_verify != X509_V_OK) {
        snprintf(buf, n, "the broker's certificate did not verify: %s",
                 X509_verify_cert_error_string(m->tls_verify));
    } else {
        const char *r = m->tls_err ? ERR_reason_error_string(m->tls_err) : NULL;
        snprintf(buf, n, "%s%s", r ? r : "TLS error",
                 r && strstr(r, "alert") ? " (sent by the broker: did it refuse our certificate?)"
                                         : "");
    }
}

/* A verify callback that fails: the handshake must not go on unchecked. */
static int refuse_peer(int ok, X509_STORE_CTX *x)
{
    X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* The verify callback of our SSLs: keeps why the broker's certificate
 * failed, since libmosquitto may free the SSL before we can ask. */
static int keep_verify(int ok, X509_STORE_CTX *x)
{
    struct mqtt_conn *m = tls_conn;
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    if (!ok && m && m->mosq && ssl && mosquitto_ssl_get(m->mosq) == ssl &&
        m->tls_verify == X509_V_OK)
        m->tls_verify = X509_STORE_CTX_get_error(x);
    return ok;
}

/* libmosquitto's log while connecting over TLS: it takes OpenSSL's errors
 * off the queue to log them ("OpenSSL Error[0]: error:0A000418:..."), e.g.
 * for the alert of a broker that refused our certificate after a TLS 1.3
 * handshake; the first one is kept for the DOWN detail. Not set once UP:
 * libmosquitto formats every line for a log callback. */
static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    struct mqtt_conn *m = obj;
    const char *e;
    if (m->tls_err == 0 && strncmp(str, "OpenSSL Error[", 14) == 0 &&
        (e = strstr(str, "error:")) != NULL)
        m->tls_err = strtoul(e + 6, NULL, 16);
}

/* The context's info callback: per-connection set-up at the start of each
 * handshake of the connection named by tls_conn. */
static void tls_info(const SSL *cssl, int where, int ret)
{
    struct mqtt_conn *m = tls_conn;
    if (!(where & SSL_CB_HANDSHAKE_START) || !m || !m->mosq || mosquitto_ssl_get(m->mosq) != cssl)
        return;
    SSL *ssl = (SSL *)cssl; /* OpenSSL passes its own SSL as const */
    /* Idle sessions keep no read and write buffers (about 34 KB each). */
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    if (usp_tls_expect_host(ssl, m->host) != 0)
        SSL_set_verify(ssl, SSL_VERIFY_PEER, refuse_peer); /* no name to check: refuse */
    else
        SSL_set_verify(ssl, SSL_get_verify_mode(ssl), keep_verify);
    /* libmosquitto names the numeric address it connects to in SNI; an
     * address is no server name (RFC 6066 section 3). */
    if (!m->host_is_name)
        SSL_set_tlsext_host_name(ssl, NULL);
    char why[200];
    if (usp_tls_use_files(ssl, m->cert_file, m->key_file, why, sizeof why) != 0) {
        m->tls_fail = TLS_FAIL_OWN_CERT;
        mtp__log(m->base.ctx, USP_MTP_LOG_ERROR, m->eid, "MQTT %s:%u: %s", m->host, m->port, why);
    }
}

/* One step of our handshake (see above). */
static void tls_step(struct mqtt_conn *m)
{
    SSL *ssl = mosquitto_ssl_get(m->mosq);
    if (!ssl) {
        lost(m, USP_MTP_R_INTERNAL, -3);
        return;
    }
    struct mqtt_conn *outer = tls_conn;
    tls_conn = m;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    int sys = errno;
    tls_conn = outer;
    switch (err) {
    case SSL_ERROR_NONE: {
        m->tls_hs = false;
        int rc = mosquitto_loop_read(m->mosq, 1); /* libmosquitto's SSL_connect: 1 */
        if (rc == MOSQ_ERR_SUCCESS && !m->lost && m->mosq)
            rc = mosquitto_loop_write(m->mosq, 1); /* the CONNECT */
        if (rc != MOSQ_ERR_SUCCESS && !m->lost)
            lost(m, USP_MTP_R_CONNECT, rc == MOSQ_ERR_ERRNO ? errno : ECONNRESET);
        return;
    }
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return;
    case SSL_ERROR_SYSCALL: {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(mosquitto_socket(m->mosq), SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr && sys != ECONNRESET && sys != EPIPE) {
            /* The TCP connection itself failed (refused, unreachable). */
            lost(m, USP_MTP_R_CONNECT, soerr);
            return;
        }
        if (!m->tls_fail)
            m->tls_fail = TLS_FAIL_CLOSED;
        lost(m, USP_MTP_R_CONNECT, soerr ? soerr : sys);
        return;
    }
    default:
        if (!m->tls_fail)
            m->tls_fail = TLS_FAIL_SSL;
        if (m->tls_verify == X509_V_OK)
            m->tls_verify = (int)SSL_get_verify_result(ssl);
        if (!m->tls_err)
            m->tls_err = ERR_peek_error();
        ERR_clear_error();
        lost(m, USP_MTP_R_CONNECT, EPROTO);
        return;
    }
}

static void describe_loss(const struct mqtt_conn *m, enum usp_mtp_reason r, int code, char *buf,
                          size_t n)
{
    switch (r) {
    case USP_MTP_R_RESOLVE:
        snprintf(buf, n, "cannot resolve %s: %s", m->host, uv_strerror(code));
        break;
    case USP_MTP_R_CONNECT:
        if (m->tls_fail)
            describe_tls(m, code, buf, n);
        else if (m->tls && code != ECONNREFUSED && code != EHOSTUNREACH && code != ENETUNREACH &&
                 code != ETIMEDOUT)
            /* TCP was up: the TLS set-up ended it, and the broker's alert
             * (TLS 1.3 sends it after our side is done) did not reach us. */
            snprintf(buf, n,
                     "TLS handshake with %s port %u failed: the connection ended during or "
                     "right after the handshake (%s): did the broker refuse our certificate?",
                     m->host, m->port, code ? strerror(code) : "closed");
        else
            snprintf(buf, n, "cannot connect to %s port %u: %s", m->host, m->port,
                     code ? strerror(code) : "connection failed");
        break;
    case USP_MTP_R_TIMEOUT:
        snprintf(buf, n, "no MQTT session with %s port %u within %u ms", m->host, m->port,
                 m->connect_timeout_ms);
        break;
    case USP_MTP_R_REFUSED:
        snprintf(buf, n, "the broker refused the connection: %s (%d)", mqtt_reason_text(m, code),
                 code);
        break;
    case USP_MTP_R_SUBSCRIBE:
        snprintf(buf, n, "the broker refused every subscription (%d)", code);
        break;
    case USP_MTP_R_NO_TOPIC:
        snprintf(buf, n, "no topic to subscribe to: MTP disabled [R-MQTT.16]");
        break;
    case USP_MTP_R_KEEPALIVE:
        snprintf(buf, n, "no answer from the broker within the keepalive");
        break;
    case USP_MTP_R_PEER_CLOSED:
        snprintf(buf, n, "the broker closed the session: %s (%d)", mosquitto_reason_string(code),
                 code);
        break;
    case USP_MTP_R_CLOSED:
        snprintf(buf, n,
                 code ? "closed; the broker did not finish in time, connection cut" : "closed");
        break;
    case USP_MTP_R_LOST:
        snprintf(buf, n, "connection lost: %s",
                 code > 0 ? mosquitto_strerror(code) : "socket error");
        break;
    default:
        snprintf(buf, n, "internal error (%d)", code);
        break;
    }
}

/* After a loss: release the session, then report CLOSED, or DOWN with the
 * next attempt scheduled. Runs from the loop, with busy held. */
static void teardown(struct mqtt_conn *m)
{
    struct usp_mtp_ctx *ctx = m->base.ctx;
    enum phase was = m->phase;
    enum usp_mtp_reason r = m->lost_reason;
    int code = m->lost_code;
    char detail[200];

    m->lost = false;
    drop_session(m);
    describe_loss(m, r, code, detail, sizeof detail);
    if (m->closing) {
        m->phase = P_CLOSED;
        mtp__log(ctx, USP_MTP_LOG_INFO, m->eid, "MQTT %s:%u: %s", m->host, m->port, detail);
        mtp__emit_state(&m->base, USP_MTP_CLOSED, r, code, m->attempt, 0, detail);
        return;
    }
    if (was == P_UP)
        MTP_STAT(&m->base, drops, 1);
    else
        MTP_STAT(&m->base, attempts_failed, 1);
    m->attempt++;
    uint32_t delay =
        mtp__retry_delay_ms(ctx, m->retry_time_s, m->retry_mult, m->retry_max_s, m->attempt);
    m->phase = P_RETRY;
    mtp__timer_arm(ctx, &m->timer, delay, fire_attempt);
    mtp__log(ctx, USP_MTP_LOG_INFO, m->eid, "MQTT %s:%u down: %s; retry %u in %u ms", m->host,
             m->port, detail, m->attempt, delay);
    mtp__emit_state(&m->base, USP_MTP_DOWN, r, code, m->attempt, delay, detail);
}

/* Finishes what callbacks left: a free (false: `m` is gone) or a loss. */
static bool settle(struct mqtt_conn *m)
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
            poll_close(m);
            mtp__timer_arm(m->base.ctx, &m->timer, 0, fire_settle);
            return true;
        }
        m->busy++;
        teardown(m);
        m->busy--;
    }
    rearm_poll(m);
    return true;
}

/* A call into this API: like enter/leave, but a loss found on the way is
 * reported from the loop. */
static void api_enter(struct mqtt_conn *m)
{
    if (m->busy == 0)
        m->api = true;
    m->busy++;
    m->ww_stale = false;
}

static void api_leave(struct mqtt_conn *m)
{
    if (m->busy == 1) {
        m->busy = 0;
        if (settle(m))
            m->api = false;
        return;
    }
    m->busy--;
}

/* ---- Records the binding sends itself -------------------------------------- */

static int publish(struct mqtt_conn *m, const char *topic, const uint8_t *rec, size_t len);

/* MQTTConnectRecord [R-MTP.6] or DisconnectRecord [R-MTP.7] to the peer. */
static int send_own_record(struct mqtt_conn *m, bool connect, uint32_t reason_code,
                           const char *reason)
{
    struct usp_arena *a = usp_arena_new(512);
    if (!a)
        return USP_ENOMEM;
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__MQTTConnectRecord mc = USP_RECORD__MQTTCONNECT_RECORD__INIT;
    UspRecord__DisconnectRecord dc = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = (char *)(m->usp_version ? m->usp_version : USP_VERSION_DEFAULT);
    rec.to_id = (char *)m->peer_eid;
    rec.from_id = (char *)m->eid;
    if (connect) {
        mc.version = m->version == USP_MQTT_V5
                         ? USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V5
                         : USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V3_1_1;
        mc.subscribed_topic = m->reply;
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT;
        rec.mqtt_connect = &mc;
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
        rc = publish(m, m->peer_dest, buf, len);
    if (rc)
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid, "MQTT: cannot send the %s to %s: %s",
                 connect ? "MQTTConnectRecord" : "DisconnectRecord", m->peer_dest,
                 usp_strerror(rc));
    usp_arena_free(a);
    return rc;
}

/* ---- libmosquitto callbacks (run inside mosquitto_loop_*) ------------------ */

static void begin_disconnect(struct mqtt_conn *m, enum usp_mtp_reason why_closed)
{
    m->closing = true;
    m->close_reason = (uint8_t)why_closed;
    m->phase = P_CLOSING;
    int rc = m->version == USP_MQTT_V5 ? mosquitto_disconnect_v5(m->mosq, 0, NULL)
                                       : mosquitto_disconnect(m->mosq);
    if (rc != MOSQ_ERR_SUCCESS)
        lost(m, why_closed, 0);
    else
        mtp__timer_arm(m->base.ctx, &m->timer, m->close_timeout_ms, fire_close_timeout);
}

static int add_sub(struct mqtt_conn *m, const char *filter, size_t cap)
{
    for (int i = 0; i < m->nsubs; i++) {
        bool covered = false;
        if (strcmp(m->subs[i], filter) == 0 ||
            (mosquitto_topic_matches_sub(m->subs[i], filter, &covered) == MOSQ_ERR_SUCCESS &&
             covered))
            return 0;
    }
    if ((size_t)m->nsubs >= cap)
        return 0;
    char *s = strdup(filter);
    if (!s)
        return USP_ENOMEM;
    m->subs[m->nsubs++] = s;
    return 0;
}

#define MAX_SUBS 16

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct mqtt_conn *m = obj;
    if (m->dead || m->lost || m->phase != P_CONNECTING)
        return;
    if (rc != 0) {
        lost(m, USP_MTP_R_REFUSED, rc);
        return;
    }
    char *resp_info = NULL;
    if (m->version == USP_MQTT_V5) {
        char *id = NULL;
        uint8_t maxqos;
        if (!m->client_id[0] && mosquitto_property_read_string(
                                    props, MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, &id, false)) {
            free(m->assigned_id);
            m->assigned_id = id;
        }
        mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_INFORMATION, &resp_info, false);
        if (mosquitto_property_read_byte(props, MQTT_PROP_MAXIMUM_QOS, &maxqos, false) &&
            maxqos < m->qos_eff)
            m->qos_eff = maxqos;
    }

    /* Subscribe to every topic we are given [R-MQTT.15]. */
    int err = 0;
    m->subs = calloc(MAX_SUBS, sizeof *m->subs);
    if (!m->subs)
        err = USP_ENOMEM;
    if (!err && m->topic[0]) {
        if (m->version == USP_MQTT_V5) {
            err = add_sub(m, m->topic, MAX_SUBS);
        } else {
            /* 3.1.1 senders append "/reply-to=..." to our topic. */
            size_t n = strlen(m->topic);
            char *f = malloc(n + 3);
            if (!f) {
                err = USP_ENOMEM;
            } else {
                memcpy(f, m->topic, n);
                memcpy(f + n, "/#", 3);
                err = add_sub(m, f, MAX_SUBS);
                free(f);
            }
        }
    }
    if (!err && m->version == USP_MQTT_V5) {
        char *name = NULL, *value = NULL;
        const mosquitto_property *p = mosquitto_property_read_string_pair(
            props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
        while (p && !err) {
            if (strcmp(name, "subscribe-topic") == 0) {
                if (value[0] && mosquitto_sub_topic_check(value) == MOSQ_ERR_SUCCESS)
                    err = add_sub(m, value, MAX_SUBS);
                else
                    mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                             "MQTT: ignored the CONNACK subscribe-topic \"%.80s\"", value);
            }
            free(name);
            free(value);
            name = value = NULL;
            p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                    true);
        }
        free(name);
        free(value);
        if (resp_info && (!resp_info[0] || mosquitto_pub_topic_check(resp_info))) {
            if (resp_info[0])
                mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                         "MQTT: ignored the CONNACK Response Information \"%.80s\"", resp_info);
            free(resp_info);
            resp_info = NULL;
        }
        if (!err && resp_info)
            err = add_sub(m, resp_info, MAX_SUBS);
    }
    /* The reply-to: Response Information first [R-MQTT.21], then our own
     * topic; SUBACK may still change it. */
    if (!err) {
        if (resp_info) {
            m->reply = resp_info;
            m->reply_owned = true;
            resp_info = NULL;
        } else if (m->topic[0]) {
            m->reply = (char *)m->topic;
        }
    }
    free(resp_info);
    if (err) {
        lost(m, USP_MTP_R_INTERNAL, err);
        return;
    }
    if (m->nsubs == 0) {
        begin_disconnect(m, USP_MTP_R_NO_TOPIC);
        return;
    }
    rc = mosquitto_subscribe_multiple(mosq, &m->sub_mid, m->nsubs, m->subs, m->qos_eff, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        lost(m, USP_MTP_R_INTERNAL, rc);
        return;
    }
    m->phase = P_SUBSCRIBING;
    /* The broker has accepted the TCP connection (it answered CONNECT), so
     * it is out of the listen backlog that the connect cap protects: let
     * the next connection start while this one subscribes. */
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
}

static void fire_keepalive(struct usp_tw_entry *t, uint64_t now_ms);

static uint64_t keepalive_period_ms(const struct mqtt_conn *m)
{
    /* A quarter of the keepalive: libmosquitto sends PINGREQ when a whole
     * keepalive passed without traffic; checking 4 times per period sends it
     * at most K/4 late, well before the broker's 1.5 K limit. */
    uint64_t ms = (uint64_t)m->keepalive * 1000 / 4;
    return ms < 1000 ? 1000 : ms;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
    struct mqtt_conn *m = obj;
    if (m->dead || m->lost || m->phase != P_SUBSCRIBING || mid != m->sub_mid)
        return;
    bool ok = false, reply_ok = false;
    const char *first_plain = NULL;
    for (int i = 0; i < count && i < m->nsubs; i++) {
        if (granted[i] >= 0x80)
            continue;
        ok = true;
        bool match = false;
        if (m->reply &&
            mosquitto_topic_matches_sub(m->subs[i], m->reply, &match) == MOSQ_ERR_SUCCESS && match)
            reply_ok = true;
        if (!first_plain && mosquitto_pub_topic_check(m->subs[i]) == MOSQ_ERR_SUCCESS)
            first_plain = m->subs[i];
    }
    if (!ok) {
        lost(m, USP_MTP_R_SUBSCRIBE, count > 0 ? granted[0] : -1);
        return;
    }
    if (!reply_ok) {
        /* Never publish a reply-to we are not subscribed to [R-MQTT.17]. */
        char *r = first_plain ? strdup(first_plain) : NULL;
        if (!r) {
            lost(m, first_plain ? USP_MTP_R_INTERNAL : USP_MTP_R_SUBSCRIBE, 0);
            return;
        }
        drop_reply(m);
        m->reply = r;
        m->reply_owned = true;
    }
    free_subs(m);
    m->phase = P_UP;
    m->attempt = 0;
    if (m->tls)
        mosquitto_log_callback_set(m->mosq, NULL);
    if (m->has_slot) {
        m->has_slot = false;
        mtp__connect_slot_give(m->base.ctx);
    }
    mtp__timer_cancel(m->base.ctx, &m->timer);
    if (m->keepalive)
        mtp__timer_arm(m->base.ctx, &m->timer, keepalive_period_ms(m), fire_keepalive);
    MTP_STAT(&m->base, ups, 1);
    if (m->role == USP_MTP_AGENT && m->peer_eid)
        send_own_record(m, true, 0, NULL);
    mtp__log(m->base.ctx, USP_MTP_LOG_INFO, m->eid, "MQTT %s:%u up, reply-to %s", m->host, m->port,
             m->reply);
    char detail[96];
    snprintf(detail, sizeof detail, "subscribed; reply-to %.60s", m->reply);
    mtp__emit_state(&m->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, detail);
}

static bool content_type_ok(const char *ct)
{
    /* [R-MQTT.27a]; a missing Content Type is tolerated. */
    return !ct || strcmp(ct, "usp.msg") == 0 || strcmp(ct, "application/vnd.bbf.usp.msg") == 0;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct mqtt_conn *m = obj;
    if (m->dead || m->lost || (m->phase != P_UP && m->phase != P_CLOSING))
        return;
    if (msg->payloadlen <= 0) {
        MTP_STAT(&m->base, rx_dropped, 1);
        return;
    }
    if ((size_t)msg->payloadlen > m->max_record) {
        MTP_STAT(&m->base, rx_oversize, 1);
        mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                 "MQTT: dropped a %d-byte record on %s (max_record %u)", msg->payloadlen,
                 msg->topic, m->max_record);
        return;
    }
    char *reply = NULL, *ct = NULL;
    if (m->version == USP_MQTT_V5) {
        mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &ct, false);
        if (!content_type_ok(ct)) {
            MTP_STAT(&m->base, rx_dropped, 1);
            mtp__log(m->base.ctx, USP_MTP_LOG_WARN, m->eid,
                     "MQTT: dropped a record with Content Type \"%.40s\" on %s", ct, msg->topic);
            free(ct);
            return;
        }
        free(ct);
        mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &reply, false);
    }
    /* 3.1.1, or a 5.0 sender that used the 3.1.1 convention. */
    size_t tlen = strlen(msg->topic);
    char stack[512];
    char *buf = 2 * (tlen + 1) <= sizeof stack ? stack : malloc(2 * (tlen + 1));
    if (!buf) {
        free(reply);
        MTP_STAT(&m->base, rx_dropped, 1);
        return;
    }
    char *dest = buf, *suffix = buf + tlen + 1;
    size_t dlen = tlen;
    bool have_suffix = mtp__mqtt311_topic_split(msg->topic, &dlen, suffix);
    memcpy(dest, msg->topic, dlen);
    dest[dlen] = '\0';
    struct usp_mtp_rx rx = {.arrived_on = dest, .qos = msg->qos};
    if (reply && reply[0])
        rx.reply_to.to = reply;
    else if (have_suffix)
        rx.reply_to.to = suffix;
    if (!rx.reply_to.to)
        MTP_STAT(&m->base, rx_no_reply_to, 1);
    MTP_STAT(&m->base, rx_records, 1);
    MTP_STAT(&m->base, rx_bytes, (uint64_t)msg->payloadlen);
    if (m->base.cb && m->base.cb->record)
        m->base.cb->record(&m->base, msg->payload, (size_t)msg->payloadlen, &rx, m->base.user);
    if (buf != stack)
        free(buf);
    free(reply);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    struct mqtt_conn *m = obj;
    /* libmosquitto closes the socket now or has just done so. */
    poll_close(m);
    if (m->dead || m->lost)
        return;
    enum usp_mtp_reason r;
    if (m->phase == P_CLOSING)
        r = m->close_reason;
    else if (rc == MOSQ_ERR_KEEPALIVE)
        r = USP_MTP_R_KEEPALIVE;
    else if (rc >= 0x80)
        r = USP_MTP_R_PEER_CLOSED; /* an MQTT 5 DISCONNECT from the broker */
    else if (m->phase == P_CONNECTING)
        r = USP_MTP_R_CONNECT;
    else
        r = USP_MTP_R_LOST;
    int code = rc;
    if (r == USP_MTP_R_CONNECT)
        code = rc == MOSQ_ERR_ERRNO ? errno : ECONNRESET;
    if (r == USP_MTP_R_CONNECT && m->tls && (m->tls_err || m->tls_verify != X509_V_OK)) {
        /* After our side of a TLS 1.3 handshake the broker may still
         * refuse our certificate: its alert comes with the first read. */
        if (!m->tls_fail)
            m->tls_fail = TLS_FAIL_SSL;
        code = EPROTO;
    } else if (r == USP_MTP_R_CLOSED || r == USP_MTP_R_NO_TOPIC)
        code = 0;
    lost(m, r, code);
}

/* ---- Connecting ------------------------------------------------------------ */

static int make_mosq(struct mqtt_conn *m)
{
    const char *id = m->client_id[0]               ? m->client_id
                     : m->version == USP_MQTT_V311 ? m->eid
                     : m->assigned_id              ? m->assigned_id
                                                   : NULL;
    unsigned outer_hooks = hook_flags; /* we may be inside another connection's read */
    hook_flags = outer_hooks | HOOK_NO_PAIR;
    m->mosq = mosquitto_new(id, true, m);
    hook_flags = outer_hooks;
    if (!m->mosq)
        return errno == ENOMEM ? USP_ENOMEM : USP_EINVAL;
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         m->version == USP_MQTT_V5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (m->tls) {
        /* See "TLS": our context as it is, without libmosquitto's defaults. */
        if (mosquitto_int_option(m->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
            mosquitto_void_option(m->mosq, MOSQ_OPT_SSL_CTX, m->ssl_ctx) != MOSQ_ERR_SUCCESS)
            return USP_EIO;
        mosquitto_log_callback_set(m->mosq, on_log);
    }
    if (m->user && mosquitto_username_pw_set(m->mosq, m->user, m->password) != MOSQ_ERR_SUCCESS)
        return USP_ENOMEM;
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    if (m->version != USP_MQTT_V5)
        return 0;

    /* CONNECT properties [R-MQTT.12, 13]. 2.0.11 takes them only in the
     * blocking mosquitto_connect_bind_v5(), and keeps them for every later
     * (re)connect of the object. Hand them over with a call that fails at
     * once without touching the network: a UNIX socket path that cannot
     * exist (port 0 selects a UNIX socket). */
    mosquitto_property *props = NULL;
    int rc = mosquitto_property_add_byte(&props, MQTT_PROP_REQUEST_RESPONSE_INFORMATION, 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "usp-endpoint-id",
                                                m->eid);
    if (rc == MOSQ_ERR_SUCCESS) {
        hook_flags = outer_hooks | HOOK_NO_PAIR;
        rc = mosquitto_connect_bind_v5(m->mosq, "/dev/null/uspsim-no-such-socket", 0, m->keepalive,
                                       NULL, props);
        hook_flags = outer_hooks;
        /* Expected: MOSQ_ERR_ERRNO (ENOTDIR); the properties are kept. */
        rc = rc == MOSQ_ERR_ERRNO ? MOSQ_ERR_SUCCESS : rc ? rc : MOSQ_ERR_UNKNOWN;
    }
    mosquitto_property_free_all(&props);
    return rc == MOSQ_ERR_SUCCESS ? 0 : rc == MOSQ_ERR_NOMEM ? USP_ENOMEM : USP_EIO;
}

static void connect_to(struct mqtt_conn *m, const char *addr)
{
    int rc = make_mosq(m);
    if (rc) {
        lost(m, USP_MTP_R_INTERNAL, rc);
        return;
    }
    m->qos_eff = m->qos;
    m->tls_fail = TLS_OK;
    m->tls_err = 0;
    m->tls_verify = X509_V_OK;
    m->tls_hs = m->rd_wants_write = m->ww_stale = false;
    struct mqtt_conn *outer = tls_conn;
    tls_conn = m; /* the first SSL_connect runs inside (see "TLS") */
    unsigned outer_hooks = hook_flags;
    hook_flags = outer_hooks | HOOK_NO_PAIR | (m->bind ? HOOK_BIND_NO_PORT : 0);
    errno = 0;
    ERR_clear_error();
    rc = mosquitto_connect_bind_async(m->mosq, addr, m->port, m->keepalive, m->bind);
    int err = errno;
    hook_flags = outer_hooks;
    tls_conn = outer;
    if (rc == MOSQ_ERR_TLS) {
        /* The handshake failed at once; libmosquitto freed the SSL. */
        if (!m->tls_fail)
            m->tls_fail = TLS_FAIL_SSL;
        if (!m->tls_err)
            m->tls_err = ERR_peek_error();
        ERR_clear_error();
        lost(m, USP_MTP_R_CONNECT, EPROTO);
        return;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        lost(m, USP_MTP_R_CONNECT, rc == MOSQ_ERR_ERRNO ? err : 0);
        return;
    }
    m->tls_hs = m->tls;
    int fd = mosquitto_socket(m->mosq);
    if (fd < 0 || uv_poll_init_socket(m->base.ctx->loop, &m->poll, fd) != 0) {
        lost(m, USP_MTP_R_INTERNAL, fd < 0 ? -1 : -2);
        return;
    }
    m->poll.data = m;
    m->poll_state = POLL_ACTIVE;
    m->poll_events = 0;
    m->phase = P_CONNECTING;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct mqtt_conn *m = req->data;
    free(req);
    if (!m) { /* the attempt was dropped meanwhile */
        uv_freeaddrinfo(res);
        return;
    }
    m->gai = NULL;
    enter(m);
    char addr[64];
    bool found = status == 0 && mtp__pick_addr(res, m->attempt, addr, sizeof addr);
    uv_freeaddrinfo(res);
    if (!found)
        lost(m, USP_MTP_R_RESOLVE, status ? status : UV_EAI_NODATA);
    else if (!m->dead)
        connect_to(m, addr);
    leave(m);
}

static void fire_deadline(struct usp_tw_entry *t, uint64_t now_ms);

/* close_timeout_ms passed and the DISCONNECT did not go out: cut. */
static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct mqtt_conn *m = of_timer(t);
    enter(m);
    lost(m, m->close_reason, m->close_reason == USP_MTP_R_CLOSED ? 1 : 0);
    leave(m);
}

static void fire_attempt(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct mqtt_conn *m = of_timer(t);
    struct usp_mtp_ctx *ctx = m->base.ctx;
    if (m->poll_state == POLL_CLOSING) {
        /* The last attempt's handle is still closing: a moment later. */
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
        connect_to(m, m->host);
    }
    leave(m);
}

/* The connect timeout. */
static void fire_deadline(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct mqtt_conn *m = of_timer(t);
    enter(m);
    lost(m, USP_MTP_R_TIMEOUT, 0);
    leave(m);
}

static void fire_keepalive(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct mqtt_conn *m = of_timer(t);
    if (m->phase != P_UP || !m->mosq)
        return;
    enter(m);
    int rc = mosquitto_loop_misc(m->mosq);
    if (rc != MOSQ_ERR_SUCCESS && !m->lost)
        lost(m, USP_MTP_R_LOST, rc);
    if (!m->lost && m->phase == P_UP)
        mtp__timer_arm(m->base.ctx, &m->timer, keepalive_period_ms(m), fire_keepalive);
    leave(m);
}

/* mosquitto_loop_read with reading ahead (see read() above): again while
 * what one system call brought is not used up. */
static int read_ahead(struct mqtt_conn *m)
{
    int fd = mosquitto_socket(m->mosq);
    unsigned saved = hook_flags;
    int saved_fd = ra.fd;
    ra.fd = fd;
    ra.off = ra.len = 0;
    int rc;
    do {
        hook_flags = saved | HOOK_READ_AHEAD;
        rc = mosquitto_loop_read(m->mosq, 1);
        hook_flags = saved;
        /* The record callback may have closed or replaced the socket. */
    } while (rc == MOSQ_ERR_SUCCESS && ra.off < ra.len && !m->lost && m->mosq &&
             mosquitto_socket(m->mosq) == fd);
    ra.off = ra.len = 0;
    ra.fd = saved_fd;
    return rc;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct mqtt_conn *m = p->data;
    if (m->poll_state != POLL_ACTIVE || !m->mosq)
        return;
    enter(m);
    int rc;
    if (m->tls_hs) {
        if (status < 0)
            m->poll_events = 0; /* libuv stopped the handle */
        tls_step(m);
    } else if (status < 0) {
        /* POLLERR: libuv stopped the handle; let libmosquitto find out. */
        m->poll_events = 0;
        rc = mosquitto_loop_read(m->mosq, 1);
        if (!m->lost) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(mosquitto_socket(m->mosq), SOL_SOCKET, SO_ERROR, &err, &len);
            lost(m, m->phase == P_CONNECTING ? USP_MTP_R_CONNECT : USP_MTP_R_LOST,
                 m->phase == P_CONNECTING ? err : rc);
        }
    } else {
        bool rd = (events & UV_READABLE) || ((events & UV_WRITABLE) && m->rd_wants_write);
        if (rd && !m->tls) {
            rc = read_ahead(m);
            if (rc != MOSQ_ERR_SUCCESS && !m->lost)
                lost(m, USP_MTP_R_LOST, rc);
            /* What the callbacks queued (libmosquitto does not write from
             * inside them: PUBACKs, answers) goes now, while the socket
             * is surely writable, instead of after a round of polling for
             * it: two epoll_ctl calls and a wake-up fewer per answer. */
            if (!m->lost && !m->dead && m->mosq && !(events & UV_WRITABLE) &&
                mosquitto_want_write(m->mosq)) {
                rc = mosquitto_loop_write(m->mosq, 1);
                if (rc != MOSQ_ERR_SUCCESS && !m->lost)
                    lost(m, USP_MTP_R_LOST, rc);
            }
        } else if (rd) {
            rc = mosquitto_loop_read(m->mosq, 1);
            if (rc != MOSQ_ERR_SUCCESS && !m->lost)
                lost(m, USP_MTP_R_LOST, rc);
            if (m->tls && m->mosq && !m->lost) {
                SSL *ssl = mosquitto_ssl_get(m->mosq);
                m->rd_wants_write = ssl && SSL_want_write(ssl);
            }
        }
        if ((events & UV_WRITABLE) && !m->lost && !m->dead && m->mosq) {
            rc = mosquitto_loop_write(m->mosq, 1);
            if (rc != MOSQ_ERR_SUCCESS && !m->lost)
                lost(m, USP_MTP_R_LOST, rc);
            if (m->tls && m->mosq && !m->lost) {
                /* See "TLS": a stale want_write, nothing to send. */
                SSL *ssl = mosquitto_ssl_get(m->mosq);
                m->ww_stale = ssl && !SSL_want_write(ssl) && mosquitto_want_write(m->mosq);
            }
        }
    }
    leave(m);
}

/* ---- Operations ------------------------------------------------------------- */

static int mq_open(struct usp_mtp_conn *c)
{
    struct mqtt_conn *m = CONN(c);
    if (m->dead || m->phase != P_IDLE)
        return USP_EPERM;
    m->phase = P_RETRY;
    mtp__timer_arm(c->ctx, &m->timer, 0, fire_attempt);
    return 0;
}

static int publish(struct mqtt_conn *m, const char *topic, const uint8_t *rec, size_t len)
{
    int rc;
    if (m->version == USP_MQTT_V5) {
        mosquitto_property *props = NULL;
        rc = mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, m->reply);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, "usp.msg");
        if (rc == MOSQ_ERR_SUCCESS)
            rc =
                mosquitto_publish_v5(m->mosq, NULL, topic, (int)len, rec, m->qos_eff, false, props);
        mosquitto_property_free_all(&props);
    } else {
        char stack[512];
        size_t need = mtp__mqtt311_topic_build(topic, m->reply, stack, sizeof stack);
        char *t = need < sizeof stack ? stack : malloc(need + 1);
        if (!t)
            return USP_ENOMEM;
        if (t != stack)
            mtp__mqtt311_topic_build(topic, m->reply, t, need + 1);
        rc = mosquitto_publish(m->mosq, NULL, t, (int)len, rec, m->qos_eff, false);
        if (t != stack)
            free(t);
    }
    switch (rc) {
    case MOSQ_ERR_SUCCESS:
        MTP_STAT(&m->base, tx_records, 1);
        MTP_STAT(&m->base, tx_bytes, len);
        return 0;
    case MOSQ_ERR_NOMEM:
        MTP_STAT(&m->base, tx_failed, 1);
        return USP_ENOMEM;
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
        MTP_STAT(&m->base, tx_oversize, 1);
        return USP_ERANGE;
    default:
        MTP_STAT(&m->base, tx_failed, 1);
        return USP_EIO;
    }
}

static int mq_send(struct usp_mtp_conn *c, const struct usp_mtp_dest *to, const uint8_t *rec,
                   size_t len)
{
    struct mqtt_conn *m = CONN(c);
    if (m->dead || m->phase != P_UP || m->lost || !m->mosq) {
        MTP_STAT(c, tx_refused, 1);
        return USP_EPERM;
    }
    if (!to || !to->to || !to->to[0] || mosquitto_pub_topic_check(to->to) != MOSQ_ERR_SUCCESS ||
        (!rec && len)) {
        MTP_STAT(c, tx_refused, 1);
        return USP_EINVAL;
    }
    if (len > m->max_record) {
        MTP_STAT(c, tx_oversize, 1);
        mtp__log(c->ctx, USP_MTP_LOG_WARN, m->eid,
                 "MQTT: refused to send a %zu-byte record (max_record %u)", len, m->max_record);
        return USP_ERANGE;
    }
    api_enter(m);
    int rc = publish(m, to->to, rec, len);
    api_leave(m);
    return rc;
}

static int mq_close(struct usp_mtp_conn *c, uint32_t reason_code, const char *reason)
{
    struct mqtt_conn *m = CONN(c);
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
        lost(m, USP_MTP_R_CLOSED, 0);
    }
    api_leave(m);
    return 0;
}

static void mq_free(struct usp_mtp_conn *c)
{
    struct mqtt_conn *m = CONN(c);
    if (m->dead)
        return;
    m->dead = true;
    m->base.cb = NULL; /* no callback after this call */
    mtp__timer_cancel(c->ctx, &m->timer);
    mtp__connect_wait_cancel(c->ctx, &m->wait);
    poll_close(m);
    if (m->busy == 0)
        finalize(m);
}

static const char *mq_local_dest(const struct usp_mtp_conn *c)
{
    const struct mqtt_conn *m = (const struct mqtt_conn *)c;
    return (m->phase == P_UP || m->phase == P_CLOSING) ? m->reply : NULL;
}

static int mq_global_init(void)
{
    return mosquitto_lib_init() == MOSQ_ERR_SUCCESS ? 0 : USP_EIO;
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

static int mq_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                       const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                       size_t whylen)
{
    const struct usp_mtp_mqtt_config *q = &cfg->mqtt;
    if (q->version != USP_MQTT_V5 && q->version != USP_MQTT_V311)
        return mtp__fail(why, whylen, USP_EINVAL, "MQTT version %d is neither 5 nor 4 (3.1.1)",
                         (int)q->version);
    if (q->qos != 0 && q->qos != 1)
        return mtp__fail(why, whylen, USP_EINVAL, "MQTT QoS %d is not 0 or 1", q->qos);
    if (q->topic && q->topic[0] && mosquitto_pub_topic_check(q->topic) != MOSQ_ERR_SUCCESS)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the topic \"%.80s\" is not a valid MQTT topic name (no wildcards)",
                         q->topic);
    if (cfg->peer_dest && mosquitto_pub_topic_check(cfg->peer_dest) != MOSQ_ERR_SUCCESS)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the peer topic \"%.80s\" is not a valid MQTT topic name", cfg->peer_dest);
    if (q->client_id && strlen(q->client_id) > 65535)
        return mtp__fail(why, whylen, USP_EINVAL, "the MQTT client id is too long");
    if (!(q->topic && q->topic[0]) && q->version == USP_MQTT_V311)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "MQTT 3.1.1 needs a topic: the broker cannot give one");

    SSL_CTX *ssl_ctx = NULL;
    if (url->tls) {
        /* One client context per CA file and context (mtp__tls_ctx); the
         * own certificate goes into each SSL (see "TLS"). Checked here
         * once, so that a wrong file is an error now, not a DOWN later. */
        int rc = mtp__tls_ctx(ctx, USP_TLS_CLIENT, cfg->tls.flags & USP_TLS_NO_TIME_CHECK,
                              cfg->tls.ca_file, NULL, NULL, &ssl_ctx, why, whylen);
        if (rc)
            return rc;
        SSL *probe = SSL_new(ssl_ctx);
        if (!probe)
            return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
        rc = usp_tls_use_files(probe, cfg->tls.cert_file, cfg->tls.key_file, why, whylen);
        SSL_free(probe);
        if (rc)
            return rc;
        SSL_CTX_set_info_callback(ssl_ctx, tls_info);
    }
    const char *user = q->username ? q->username : url->has_user ? url->user : NULL;
    const char *pass = q->username ? q->password : url->has_password ? url->password : NULL;
    const char *strs[] = {cfg->eid,
                          url->host,
                          q->topic ? q->topic : "",
                          q->client_id ? q->client_id : "",
                          user,
                          pass,
                          cfg->bind_address,
                          cfg->peer_eid,
                          cfg->peer_dest,
                          cfg->usp_version,
                          url->tls ? cfg->tls.cert_file : NULL,
                          url->tls ? cfg->tls.key_file : NULL};
    size_t total = sizeof(struct mqtt_conn);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            total += strlen(strs[i]) + 1;
    struct mqtt_conn *m = calloc(1, total);
    if (!m)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char *pos = (char *)(m + 1);
    m->eid = put_str(&pos, strs[0]);
    m->host = put_str(&pos, strs[1]);
    m->topic = put_str(&pos, strs[2]);
    m->client_id = put_str(&pos, strs[3]);
    m->user = user ? put_str(&pos, user) : NULL;
    m->password = pass ? put_str(&pos, pass) : NULL;
    m->bind = cfg->bind_address ? put_str(&pos, cfg->bind_address) : NULL;
    m->peer_eid = cfg->peer_eid ? put_str(&pos, cfg->peer_eid) : NULL;
    m->peer_dest = cfg->peer_dest ? put_str(&pos, cfg->peer_dest) : NULL;
    m->usp_version = cfg->usp_version ? put_str(&pos, cfg->usp_version) : NULL;
    if (url->tls) {
        m->tls = true;
        m->ssl_ctx = ssl_ctx;
        m->cert_file = put_str(&pos, cfg->tls.cert_file);
        m->key_file = put_str(&pos, cfg->tls.key_file);
    }
    m->host_is_name = url->host_kind == USP_MTP_HOST_NAME;
    m->port = url->port;
    m->keepalive = (uint16_t)cfg->keepalive_s;
    m->max_record = cfg->max_record;
    m->connect_timeout_ms = cfg->connect_timeout_ms;
    m->close_timeout_ms = cfg->close_timeout_ms;
    m->retry_time_s = cfg->retry_time_s;
    m->retry_mult = cfg->retry_multiplier;
    m->retry_max_s = cfg->retry_max_s;
    m->version = (uint8_t)q->version;
    m->role = (uint8_t)cfg->role;
    m->qos = m->qos_eff = (uint8_t)q->qos;
    m->phase = P_IDLE;
    m->base.ctx = ctx;
    mtp__conn_hold(ctx);
    *out = &m->base;
    return 0;
}

const struct usp_mtp_ops usp_mtp_mqtt_ops = {
    .name = "mqtt",
    .global_init = mq_global_init,
    .conn_new = mq_conn_new,
    .open = mq_open,
    .send = mq_send,
    .close = mq_close,
    .free = mq_free,
    .local_dest = mq_local_dest,
};

size_t mtp__mqtt_conn_size(void)
{
    return sizeof(struct mqtt_conn);
}
