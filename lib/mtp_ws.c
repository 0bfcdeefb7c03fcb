/* The WebSocket binding (TR-369 "WebSocket Binding", R-WS.*) on
 * libwebsockets 4.1 driven by the caller's libuv loop: each struct
 * usp_mtp_ctx gets one lws_context made on its loop as a foreign loop, with
 * one client vhost for every outgoing ws:// session and one server vhost
 * for the sessions every ws:// listener accepts (wss:// below).
 * Deadlines (connect timeout, back-off, keepalive pings, close timeout) sit
 * on the context's timer wheel like the MQTT binding's; libwebsockets' own
 * idle checks are switched off. Host names are resolved with
 * uv_getaddrinfo first, so libwebsockets only ever sees numeric addresses
 * and never blocks the loop on DNS.
 *
 * Life of an outgoing connection: open -> [wait for a connect slot] ->
 * [resolve] -> TCP connect + HTTP upgrade (subprotocol v1.usp, "eid" in the
 * query) -> the answer must name v1.usp [R-WS.12] -> UP (an Agent queues
 * its WebSocketConnectRecord first) ... -> lost: the lws connection is let
 * go, DOWN is reported and the next attempt scheduled after the back-off
 * [R-WS.19-21]. A graceful close queues the DisconnectRecord, then the
 * close frame (1000), and ends in CLOSED.
 *
 * Accepted sessions: a listener is a socket of its own on the loop (a
 * uv_poll_t); each connection it accepts is handed to libwebsockets
 * (lws_adopt_descriptor_vhost_via_info) on one server vhost shared by
 * every listener of the context. The binding checks each upgrade request
 * (v1.usp offered [R-WS.12a], the path, the peer's "eid" [R-WS.10b], one
 * session per pair of Endpoint IDs [R-WS.4], the owner's check callback)
 * before libwebsockets answers 101; once established, the session is
 * handed to the accept callback as a connection of its own, UP until it
 * ends in CLOSED. Closing a listener closes its socket at once. (A vhost
 * per listener would not do: libwebsockets 4.1 on a foreign libuv loop
 * never finishes destroying a vhost that still had connections, so the
 * port would stay bound and unserviced.)
 *
 * Letting go of an lws connection: the connection object and the wsi point
 * at each other (c->wsi, and the wsi's opaque user data points at a
 * struct ws_link: a connection, an accepted socket's ticket while its
 * request is not checked yet, or the closing mark). To drop a wsi the
 * binding clears both links and has libwebsockets kill it: by returning -1
 * when inside that wsi's own callback, else with LWS_TO_KILL_ASYNC. A wsi
 * with no connection is closed at its next callback.
 *
 * Close frames are written by the binding itself (lws_write with the close
 * opcode) rather than with lws_close_reason and a -1 return: the Debian
 * build of libwebsockets 4.1 is compiled with _DEBUG, where the libuv
 * service loop closes a connection a second time right after the first
 * close ("uv repeat test") and so kills it before the close frame it was
 * about to send goes out. After our close frame the wsi is let go of
 * gracefully: it waits (close_timeout_ms at most) for the peer's close,
 * discarding what else arrives, and closes without echoing it.
 *
 * Re-entrancy follows mtp_mqtt.c: every frame that calls out holds `busy`;
 * a loss found on the way is settled by the outermost frame, or from the
 * loop when that frame is a call into this API, so that callbacks never run
 * inside the caller's own call; a free inside a callback is finished by the
 * outermost frame.
 *
 * wss:// (TLS helpers and vhosts in mtp_ws_tls.c): a client connection uses
 * the context's TLS client vhost for its CA file (LCCSCF_USE_SSL); its own
 * certificate goes onto its SSL, and the server's name is checked, from
 * LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION, the first point
 * where lws 4.1 shows us the SSL of a client connection. A wss listener
 * adopts its sockets onto a TLS server vhost of its set of files
 * (LWS_ADOPT_ALLOW_SSL); the Endpoint IDs of the client's certificate are
 * read when the upgrade request is checked. Two more defects of lws 4.1
 * matter here: its server-side verify callback accepts whatever our
 * LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION returns, also for
 * a certificate OpenSSL refused, so that callback must return 1 then; and
 * it moves an accepted SSL to the "first vhost on the port" when the SNI
 * name matches no vhost name, and adopted sockets all share one port, so
 * its SNI callback is removed from our server SSL_CTXs (mtp_ws_tls.c). A
 * third is known, not worked around: every lws_context made with
 * LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT takes a new process-wide SSL ex-data
 * index for its wsi, so a context created on another worker thread while a
 * handshake is running makes that handshake fail its verification (it
 * then retries after the back-off). */
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/tls.h"

/* Bytes libwebsockets reads of a frame per callback; it allocates this per
 * session, so it is kept small: longer messages come in pieces and are
 * reassembled here anyway [R-WS.14b]. */
#define RX_CHUNK 1024
/* HTTP handshakes a context runs at once (a header table each, allocated
 * while in use); more wait for one. */
#define AH_POOL 256
/* Queued bytes per connection beyond four max_records are refused. */
#define TXQ_SLACK (64u * 1024)
/* Close frame payloads are at most 125 bytes: a code and up to 123 of text. */
#define CLOSE_TEXT_MAX 123

/* ---- Shared per-loop state ------------------------------------------------- */

struct ws_conn;
struct ws_listener;

/* One per struct usp_mtp_ctx that has WebSocket connections or listeners:
 * the lws_context on its loop. Found through a small process-wide registry
 * (contexts are created per worker thread). */
struct ws_shared {
    struct ws_shared *next; /* in the registry */
    struct usp_mtp_ctx *ctx;
    struct lws_context *lws;
    struct lws_vhost *client_vh;
    struct lws_vhost *server_vh; /* accepted sockets of every listener; made at first listen */
    struct ws_tls_vh *tls_vhs;   /* wss:// vhosts, see mtp_ws_tls.c */
    uv_timer_t later;            /* destroys the lws_context from the loop */
    struct lws *cb_wsi;          /* the wsi whose callback is running, if any */
    struct ws_conn **tab;        /* sessions by pair of Endpoint IDs [R-WS.4] */
    uint32_t tab_size, tab_count;
    uint32_t users; /* connections, listeners, tickets, closing wsi not yet released */
    uint32_t spins; /* loop turns since lws_context_destroy */
    bool destroying;
};

/* What a wsi's opaque user data points at. */
enum link_kind {
    LINK_CONN,    /* in struct ws_conn */
    LINK_TICKET,  /* in struct ws_ticket */
    LINK_CLOSING, /* closing_mark: let go of while a close handshake finishes */
};
struct ws_link {
    uint8_t kind;
};

static struct ws_link closing_mark = {LINK_CLOSING};

/* ---- TLS helpers (mtp_ws_tls.c, see its top comment) ----------------------- */

struct ws_tls_vh;
/* The vhost for wss:// clients (server false: keyed on the CA file and
 * flags, our own SSL_CTX without a certificate) or for wss:// listeners
 * (keyed on CA, certificate, key and flags), made once per context and
 * kept on `list` until the lws_context is gone. 0, or an error with `why`. */
int mtp__ws_tls_vhost(struct lws_context *lws, struct ws_tls_vh **list, bool server,
                      const struct usp_mtp_tls_config *tls, const struct lws_protocols *protocols,
                      const lws_retry_bo_t *policy, struct lws_vhost **out, char *why,
                      size_t whylen);
/* Frees the list and our SSL_CTXs, once the lws_context is freed. */
void mtp__ws_tls_vhosts_free(struct ws_tls_vh *list);
/* LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: 0 or 1 (fail). */
int mtp__ws_tls_server_ctx_setup(SSL_CTX *sc);
/* LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION of a client: sets
 * our certificate on the SSL at the first call (*set_up), keeps the first
 * verification error in *verify_err, checks the leaf against `host`. 0 to
 * go on, 1 to fail the handshake (`why` is set when our own files could
 * not be loaded). */
int mtp__ws_tls_client_verify(X509_STORE_CTX *x, SSL *ssl, int preverify_ok, const char *host,
                              const char *cert_file, const char *key_file, bool *set_up,
                              int *verify_err, char *why, size_t whylen);

/* The close opcode for lws_write: libwebsockets 4.1 uses it internally and
 * leaves it out of enum lws_write_protocol (between CONTINUATION = 2 ... and
 * PING = 5, value 4), see the top of the file for why it is used here. */
#define WRITE_CLOSE ((enum lws_write_protocol)4)

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ws_shared *registry;

/* lws' validity pings and idle hang-ups are off (hang-up time 0): the
 * binding pings on its own wheel so that a lost peer has a reason. */
static const lws_retry_bo_t no_idle_policy = {.secs_since_valid_hangup = 0};

/* ---- Connections ------------------------------------------------------------ */

enum phase {
    P_IDLE,       /* created */
    P_WAIT_SLOT,  /* waiting for a connect slot of the context */
    P_RESOLVING,  /* uv_getaddrinfo */
    P_CONNECTING, /* TCP connect and upgrade request, waiting for 101 */
    P_PENDING,    /* accepted: request checked, 101 not yet sent */
    P_UP,
    P_CLOSING, /* close frame queued or sent */
    P_RETRY,   /* waiting for the next attempt */
    P_CLOSED,
};

struct ws_out {
    struct ws_out *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the record */
};

struct ws_conn {
    struct usp_mtp_conn base;
    struct ws_link link; /* LINK_CONN */
    struct ws_shared *sh;
    struct lws *wsi;           /* while an attempt or session exists */
    struct usp_tw_entry timer; /* the one deadline of the current phase */
    struct mtp_waiter wait;    /* for a connect slot */
    uv_getaddrinfo_t *gai;
    struct ws_out *txq, **txq_tail;
    size_t txq_bytes;
    uint8_t *rx_buf; /* a message being reassembled */
    size_t rx_len, rx_cap;
    char *close_text;               /* reason for a close frame we owe */
    struct ws_listener *lis;        /* accepted: its listener, until that closes */
    struct ws_conn *lnext, **lprev; /* in the listener's sessions */
    struct ws_conn *hnext;          /* in the R-WS.4 table */
    /* wss://: the vhost of our connections (NULL: the plain client vhost),
     * our certificate, what the peer's certificate authenticates (while
     * the session is up), and why the last handshake failed. */
    struct lws_vhost *vh;
    const char *cert_file, *key_file;
    struct usp_tls_ids *ids;
    char *tls_fail_text; /* libwebsockets' words for a failed attempt */
    int tls_verify;      /* X509_V_* of a failed verification */
    /* Configuration, all in the allocation after the struct. */
    const char *eid, *peer_eid, *host, *target, *host_hdr, *bind, *usp_version, *path;
    uint32_t max_record, connect_timeout_ms, close_timeout_ms, keepalive_s;
    uint32_t retry_time_s, retry_mult, retry_max_s;
    uint32_t attempt; /* failed attempts since the last UP */
    uint32_t hash;
    int lost_code;
    uint16_t port, close_code;
    uint8_t phase, role, lost_reason, busy;
    bool accepted, handed, in_tab, host_is_name, has_slot, lost, closing, dead, api;
    bool ping_due, ping_wait, rx_drop, close_due, close_sent, peer_closing, ext_asked;
    bool tls, tls_set_up, tls_own_cert;
};

#define CONN(c) ((struct ws_conn *)(c))

/* An accepted socket whose upgrade request is not checked yet. */
struct ws_ticket {
    struct ws_link link;     /* LINK_TICKET */
    struct ws_shared *sh;    /* a ticket is a user of the shared state */
    struct ws_listener *lis; /* NULL once the listener closed */
    struct lws *wsi;
    struct ws_ticket *next, **pprev; /* in the listener's tickets */
    bool adopting, gone, tls_refused;
};

struct ws_listener {
    struct usp_mtp_listener base;
    struct ws_shared *sh;
    uv_poll_t poll; /* on the listening socket */
    int fd;
    struct ws_conn *sessions; /* accepted, not yet freed */
    struct ws_ticket *tickets;
    struct lws_vhost *vh; /* where accepted sockets go */
    const char *eid, *path, *usp_version, *where, *host;
    uint32_t max_record, close_timeout_ms, keepalive_s;
    uint8_t role;
    bool closed, tls;
};

static struct ws_conn *of_link(struct ws_link *k)
{
    return (struct ws_conn *)((char *)k - offsetof(struct ws_conn, link));
}

static struct ws_ticket *ticket_of(struct ws_link *k)
{
    return (struct ws_ticket *)((char *)k - offsetof(struct ws_ticket, link));
}

static struct ws_conn *of_timer(struct usp_tw_entry *t)
{
    return (struct ws_conn *)((char *)t - offsetof(struct ws_conn, timer));
}

static bool settle(struct ws_conn *c);
static void fire_attempt(struct usp_tw_entry *t, uint64_t now_ms);
static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now_ms);
static void fire_settle(struct usp_tw_entry *t, uint64_t now_ms);
static void shared_release(struct ws_shared *sh);

static void enter(struct ws_conn *c)
{
    c->busy++;
}

/* Ends a frame; the outermost one settles. The caller must not touch `c`
 * afterwards. */
static void leave(struct ws_conn *c)
{
    if (--c->busy == 0)
        (void)settle(c);
}

/* A call into this API: like enter/leave, but a loss found on the way is
 * reported from the loop. */
static void api_enter(struct ws_conn *c)
{
    if (c->busy == 0)
        c->api = true;
    c->busy++;
}

static void api_leave(struct ws_conn *c)
{
    if (c->busy == 1) {
        c->busy = 0;
        if (settle(c))
            c->api = false;
        return;
    }
    c->busy--;
}

static void fire_settle(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct ws_conn *c = of_timer(t);
    enter(c);
    leave(c);
}

/* Remembers the first reason the session or attempt is over. */
static void lost(struct ws_conn *c, enum usp_mtp_reason reason, int code)
{
    if (!c->lost) {
        c->lost = true;
        c->lost_reason = (uint8_t)reason;
        c->lost_code = code;
    }
}

/* ---- The R-WS.4 table ---------------------------------------------------------- */

static uint32_t pair_hash(const char *own, const char *peer)
{
    uint32_t h = 2166136261u;
    for (const char *s = own; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ 0x1f) * 16777619u;
    for (const char *s = peer; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct ws_conn *tab_find(struct ws_shared *sh, const char *own, const char *peer,
                                const struct ws_conn *except)
{
    if (!sh->tab_size)
        return NULL;
    uint32_t h = pair_hash(own, peer);
    for (struct ws_conn *c = sh->tab[h & (sh->tab_size - 1)]; c; c = c->hnext)
        if (c != except && c->hash == h && strcmp(c->eid, own) == 0 &&
            strcmp(c->peer_eid, peer) == 0)
            return c;
    return NULL;
}

static void tab_remove(struct ws_conn *c)
{
    if (!c->in_tab)
        return;
    struct ws_shared *sh = c->sh;
    for (struct ws_conn **pp = &sh->tab[c->hash & (sh->tab_size - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    }
    c->hnext = NULL;
    c->in_tab = false;
    sh->tab_count--;
}

/* Out of memory only costs the R-WS.4 check for this session. */
static void tab_insert(struct ws_conn *c)
{
    struct ws_shared *sh = c->sh;
    if (c->in_tab || !c->peer_eid)
        return;
    if (sh->tab_count + 1 > sh->tab_size) {
        uint32_t n = sh->tab_size ? sh->tab_size * 2 : 64;
        struct ws_conn **t = calloc(n, sizeof *t);
        if (!t)
            return;
        for (uint32_t i = 0; i < sh->tab_size; i++) {
            for (struct ws_conn *e = sh->tab[i], *next; e; e = next) {
                next = e->hnext;
                e->hnext = t[e->hash & (n - 1)];
                t[e->hash & (n - 1)] = e;
            }
        }
        free(sh->tab);
        sh->tab = t;
        sh->tab_size = n;
    }
    c->hash = pair_hash(c->eid, c->peer_eid);
    c->hnext = sh->tab[c->hash & (sh->tab_size - 1)];
    sh->tab[c->hash & (sh->tab_size - 1)] = c;
    c->in_tab = true;
    sh->tab_count++;
}

/* ---- Letting go ------------------------------------------------------------------ */

/* Unlinks the wsi and has libwebsockets close it (see the top of the file). */
static void release_wsi(struct ws_conn *c)
{
    struct lws *wsi = c->wsi;
    if (!wsi)
        return;
    c->wsi = NULL;
    if (c->close_sent || c->peer_closing) {
        /* Our close frame is out, or the peer's came and libwebsockets
         * answers it: let the close handshake finish without us. */
        int secs = (int)((c->close_timeout_ms + 999) / 1000);
        c->sh->users++; /* until its WSI_DESTROY: the context waits for it */
        lws_set_opaque_user_data(wsi, &closing_mark);
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, secs > 0 ? secs : 1);
        return;
    }
    lws_set_opaque_user_data(wsi, NULL);
    if (wsi != c->sh->cb_wsi)
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void free_txq(struct ws_conn *c)
{
    for (struct ws_out *o = c->txq, *next; o; o = next) {
        next = o->next;
        free(o);
    }
    c->txq = NULL;
    c->txq_tail = &c->txq;
    c->txq_bytes = 0;
}

static void free_rx(struct ws_conn *c)
{
    free(c->rx_buf);
    c->rx_buf = NULL;
    c->rx_len = c->rx_cap = 0;
    c->rx_drop = false;
}

/* Releases everything of the current attempt or session. */
static void drop_session(struct ws_conn *c)
{
    struct usp_mtp_ctx *ctx = c->base.ctx;
    release_wsi(c);
    if (c->gai) {
        c->gai->data = NULL; /* its callback frees it */
        uv_cancel((uv_req_t *)c->gai);
        c->gai = NULL;
    }
    tab_remove(c);
    free_txq(c);
    free_rx(c);
    free(c->close_text);
    c->close_text = NULL;
    usp_tls_ids_free(c->ids);
    c->ids = NULL;
    free(c->tls_fail_text);
    c->tls_fail_text = NULL;
    c->ping_due = c->ping_wait = c->close_due = c->close_sent = c->peer_closing = false;
    if (c->has_slot) {
        c->has_slot = false;
        mtp__connect_slot_give(ctx);
    }
    mtp__connect_wait_cancel(ctx, &c->wait);
    mtp__timer_cancel(ctx, &c->timer);
}

static void unlink_listener(struct ws_conn *c)
{
    if (!c->lprev)
        return;
    *c->lprev = c->lnext;
    if (c->lnext)
        c->lnext->lprev = c->lprev;
    c->lnext = NULL;
    c->lprev = NULL;
    c->lis = NULL;
}

static void finalize(struct ws_conn *c)
{
    struct ws_shared *sh = c->sh;
    drop_session(c);
    unlink_listener(c);
    free(c);
    shared_release(sh);
}

static const char *where(const struct ws_conn *c)
{
    return c->accepted ? c->path : c->host;
}

/* Why a wss:// attempt failed in its TLS handshake: our certificate, the
 * server's (OpenSSL's verify text), or what libwebsockets saw. */
static void describe_tls(const struct ws_conn *c, char *buf, size_t n)
{
    int w = snprintf(buf, n, "TLS handshake with %s port %u failed: ", c->host, c->port);
    size_t used = w < 0 ? 0 : (size_t)w;
    if (used >= n)
        return;
    buf += used;
    n -= used;
    if (c->tls_own_cert)
        snprintf(buf, n, "cannot load our certificate %s or key %s", c->cert_file, c->key_file);
    else if (c->tls_verify == X509_V_ERR_HOSTNAME_MISMATCH ||
             c->tls_verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
        snprintf(buf, n, "the server's certificate is not for %s (%s)", c->host,
                 X509_verify_cert_error_string(c->tls_verify));
    else if (c->tls_verify != X509_V_OK)
        snprintf(buf, n, "the server's certificate did not verify: %s",
                 X509_verify_cert_error_string(c->tls_verify));
    else if (c->tls_set_up)
        /* The server's certificate was good, then the server ended it: with
         * TLS 1.3 its alert comes after our side is done. */
        snprintf(buf, n,
                 "the server ended the connection after our certificate%s%s: did it "
                 "refuse our certificate %s?",
                 c->tls_fail_text ? ": " : "", c->tls_fail_text ? c->tls_fail_text : "",
                 c->cert_file);
    else
        snprintf(buf, n, "%s", c->tls_fail_text);
}

static void describe_loss(const struct ws_conn *c, enum usp_mtp_reason r, int code, char *buf,
                          size_t n)
{
    switch (r) {
    case USP_MTP_R_RESOLVE:
        snprintf(buf, n, "cannot resolve %s: %s", c->host, uv_strerror(code));
        break;
    case USP_MTP_R_CONNECT:
        if (c->tls && (c->tls_set_up || c->tls_fail_text))
            describe_tls(c, buf, n);
        else
            snprintf(buf, n, "cannot connect to %s port %u%s%s", c->host, c->port, code ? ": " : "",
                     code ? strerror(code) : "");
        break;
    case USP_MTP_R_TIMEOUT:
        snprintf(buf, n, "no WebSocket session with %s port %u within %u ms", c->host, c->port,
                 c->connect_timeout_ms);
        break;
    case USP_MTP_R_REFUSED:
        if (code == 101)
            snprintf(buf, n,
                     "the server's answer is not acceptable: no subprotocol " MTP_WS_PROTOCOL
                     " [R-WS.12], or a bad handshake");
        else if (code > 0)
            snprintf(buf, n, "the server refused the session (HTTP %d)", code);
        else
            snprintf(buf, n, "the server refused the session");
        break;
    case USP_MTP_R_KEEPALIVE:
        snprintf(buf, n, "no answer to a ping within %u s [R-WS.17]", c->keepalive_s);
        break;
    case USP_MTP_R_PEER_CLOSED:
        snprintf(buf, n, "the peer closed the session (%d)", code);
        break;
    case USP_MTP_R_CLOSED:
        snprintf(buf, n,
                 code == 1001 ? "closed with the listener"
                 : code == 1  ? "closed; the peer did not finish in time, connection cut"
                              : "closed");
        break;
    case USP_MTP_R_LOST:
        if (code == 1003)
            snprintf(buf, n,
                     "closed with 1003: the peer sent something that is not a USP "
                     "Record [R-WS.16]");
        else if (code == 1000)
            snprintf(buf, n, "replaced by a newer session with the same peer [R-WS.4]");
        else
            snprintf(buf, n, "connection lost");
        break;
    default:
        snprintf(buf, n, "internal error (%d)", code);
        break;
    }
}

/* After a loss: release the session, then report CLOSED, or DOWN with the
 * next attempt scheduled. Runs with busy held, never inside an API call. */
static void teardown(struct ws_conn *c)
{
    struct usp_mtp_ctx *ctx = c->base.ctx;
    enum phase was = c->phase;
    enum usp_mtp_reason r = c->lost_reason;
    int code = c->lost_code;
    char detail[320];

    c->lost = false;
    describe_loss(c, r, code, detail, sizeof detail); /* before the session's details go */
    drop_session(c);
    if (c->closing || c->accepted) {
        c->phase = P_CLOSED;
        /* A peer ending an accepted session normally is not a drop. */
        if (was == P_UP && !c->closing && !(r == USP_MTP_R_PEER_CLOSED && code == 1000))
            MTP_STAT(&c->base, drops, 1);
        mtp__log(ctx, USP_MTP_LOG_INFO, c->eid, "WebSocket %s: %s", where(c), detail);
        mtp__emit_state(&c->base, USP_MTP_CLOSED, r, code, c->attempt, 0, detail);
        return;
    }
    if (was == P_UP)
        MTP_STAT(&c->base, drops, 1);
    else
        MTP_STAT(&c->base, attempts_failed, 1);
    c->attempt++;
    uint32_t delay =
        mtp__retry_delay_ms(ctx, c->retry_time_s, c->retry_mult, c->retry_max_s, c->attempt);
    c->phase = P_RETRY;
    mtp__timer_arm(ctx, &c->timer, delay, fire_attempt);
    mtp__log(ctx, USP_MTP_LOG_INFO, c->eid, "WebSocket %s:%u down: %s; retry %u in %u ms", c->host,
             c->port, detail, c->attempt, delay);
    mtp__emit_state(&c->base, USP_MTP_DOWN, r, code, c->attempt, delay, detail);
}

/* Finishes what callbacks left: a free (false: `c` is gone) or a loss. */
static bool settle(struct ws_conn *c)
{
    for (;;) {
        if (c->dead) {
            finalize(c);
            return false;
        }
        if (!c->lost)
            return true;
        if (c->accepted && !c->handed) {
            /* Never handed over: nobody to tell. */
            c->dead = true;
            continue;
        }
        if (c->api) {
            /* Inside a call into this API: report from the loop. */
            release_wsi(c);
            mtp__connect_wait_cancel(c->base.ctx, &c->wait);
            mtp__timer_arm(c->base.ctx, &c->timer, 0, fire_settle);
            return true;
        }
        c->busy++;
        teardown(c);
        c->busy--;
    }
}

/* ---- Sending ------------------------------------------------------------------- */

static void want_write(struct ws_conn *c)
{
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

/* Queues one record for the session. */
static int enqueue(struct ws_conn *c, const uint8_t *rec, size_t len)
{
    if (c->txq_bytes + len > 4 * (size_t)c->max_record + TXQ_SLACK) {
        MTP_STAT(&c->base, tx_failed, 1);
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->eid,
                 "WebSocket %s: send queue full (%zu bytes waiting); record refused", where(c),
                 c->txq_bytes);
        return USP_EIO;
    }
    struct ws_out *o = malloc(sizeof *o + LWS_PRE + len);
    if (!o) {
        MTP_STAT(&c->base, tx_failed, 1);
        return USP_ENOMEM;
    }
    o->next = NULL;
    o->len = len;
    if (len)
        memcpy(o->buf + LWS_PRE, rec, len);
    *c->txq_tail = o;
    c->txq_tail = &o->next;
    c->txq_bytes += len;
    MTP_STAT(&c->base, tx_records, 1);
    MTP_STAT(&c->base, tx_bytes, len);
    want_write(c);
    return 0;
}

/* WebSocketConnectRecord [R-MTP.6] or DisconnectRecord [R-MTP.7] to the peer. */
static int send_own_record(struct ws_conn *c, bool connect, uint32_t reason_code,
                           const char *reason)
{
    struct usp_arena *a = usp_arena_new(512);
    if (!a)
        return USP_ENOMEM;
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__WebSocketConnectRecord wc = USP_RECORD__WEB_SOCKET_CONNECT_RECORD__INIT;
    UspRecord__DisconnectRecord dc = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = (char *)(c->usp_version ? c->usp_version : USP_VERSION_DEFAULT);
    rec.to_id = (char *)c->peer_eid;
    rec.from_id = (char *)c->eid;
    if (connect) {
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT;
        rec.websocket_connect = &wc;
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
        rc = enqueue(c, buf, len);
    if (rc)
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->eid, "WebSocket: cannot send the %s to %s: %s",
                 connect ? "WebSocketConnectRecord" : "DisconnectRecord", c->peer_eid,
                 usp_strerror(rc));
    usp_arena_free(a);
    return rc;
}

/* Asks for a close frame with `code` once the queue is out (1000) or at
 * once (anything else: what is queued is dropped). */
static void close_with(struct ws_conn *c, uint16_t code, const char *text)
{
    c->close_due = true;
    c->close_code = code;
    free(c->close_text);
    c->close_text = NULL;
    if (text && text[0]) {
        size_t n = strnlen(text, CLOSE_TEXT_MAX);
        c->close_text = malloc(n + 1); /* without it, the frame has no text */
        if (c->close_text) {
            memcpy(c->close_text, text, n);
            c->close_text[n] = '\0';
        }
    }
    if (code != 1000)
        free_txq(c);
    want_write(c);
}

/* The wsi may write: one frame per callback. Returns -1 to close it. */
static int on_writable(struct ws_conn *c, struct lws *wsi)
{
    if (c->phase != P_UP && c->phase != P_CLOSING)
        return 0;
    if (c->ping_due) {
        /* With a payload: libwebsockets 4.1 does not report an empty pong
         * to a server's callback. */
        unsigned char ping[LWS_PRE + 4];
        memcpy(ping + LWS_PRE, "usp", 3);
        c->ping_due = false;
        if (lws_write(wsi, ping + LWS_PRE, 3, LWS_WRITE_PING) < 0) {
            lost(c, USP_MTP_R_LOST, 0);
            return -1;
        }
        if (c->txq || c->close_due)
            lws_callback_on_writable(wsi);
        return 0;
    }
    struct ws_out *o = c->txq;
    if (o) {
        c->txq = o->next;
        if (!c->txq)
            c->txq_tail = &c->txq;
        c->txq_bytes -= o->len;
        int n = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_BINARY);
        free(o);
        if (n < 0) {
            MTP_STAT(&c->base, tx_failed, 1);
            lost(c, USP_MTP_R_LOST, 0);
            return -1;
        }
        if (c->txq || c->close_due)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (c->close_due) {
        /* The close frame: a code and up to 123 bytes of text. */
        unsigned char frame[LWS_PRE + 2 + CLOSE_TEXT_MAX];
        size_t n = c->close_text ? strlen(c->close_text) : 0;
        frame[LWS_PRE] = (unsigned char)(c->close_code >> 8);
        frame[LWS_PRE + 1] = (unsigned char)c->close_code;
        if (n)
            memcpy(frame + LWS_PRE + 2, c->close_text, n);
        c->close_due = false;
        int rc = lws_write(wsi, frame + LWS_PRE, 2 + n, WRITE_CLOSE);
        c->close_sent = rc >= 0;
        if (c->close_code == 1000)
            lost(c, USP_MTP_R_CLOSED, 0);
        else
            lost(c, USP_MTP_R_LOST, c->close_code);
        return rc < 0 ? -1 : 0;
    }
    return 0;
}

/* ---- Receiving ----------------------------------------------------------------- */

static void deliver(struct ws_conn *c, const uint8_t *rec, size_t len)
{
    if (len == 0) {
        MTP_STAT(&c->base, rx_dropped, 1);
        return;
    }
    MTP_STAT(&c->base, rx_records, 1);
    MTP_STAT(&c->base, rx_bytes, len);
    struct usp_mtp_rx rx = {.arrived_on = c->path};
    if (c->base.cb && c->base.cb->record)
        c->base.cb->record(&c->base, rec, len, &rx, c->base.user);
}

/* A piece of a message. Returns -1 to close the wsi. */
static int on_receive(struct ws_conn *c, struct lws *wsi, const uint8_t *in, size_t len)
{
    c->ping_wait = false; /* the peer is alive */
    if ((c->phase != P_UP && c->phase != P_CLOSING) || (c->close_due && c->close_code != 1000))
        return 0; /* closing for a fault: the rest is not read */
    bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    if (!lws_frame_is_binary(wsi)) {
        /* A Record travels in a binary message only [R-WS.14, R-WS.16]. */
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->eid,
                 "WebSocket %s: the peer sent a text frame; closing with 1003 [R-WS.16]", where(c));
        MTP_STAT(&c->base, rx_dropped, 1);
        free_rx(c);
        close_with(c, 1003, "text frame: USP Records travel in binary frames");
        mtp__timer_arm(c->base.ctx, &c->timer, c->close_timeout_ms, fire_close_timeout);
        return 0;
    }
    if (first) {
        free_rx(c);
        if (final) { /* the whole message at once: no copy */
            if (len > c->max_record) {
                MTP_STAT(&c->base, rx_oversize, 1);
                mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->eid,
                         "WebSocket %s: dropped a %zu-byte record (max_record %u)", where(c), len,
                         c->max_record);
                return 0;
            }
            deliver(c, in, len);
            return 0;
        }
    }
    if (!c->rx_drop) {
        size_t need = c->rx_len + len;
        if (need > c->max_record) {
            MTP_STAT(&c->base, rx_oversize, 1);
            mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->eid,
                     "WebSocket %s: dropping a record of more than %u bytes (max_record)", where(c),
                     c->max_record);
            free(c->rx_buf);
            c->rx_buf = NULL;
            c->rx_len = c->rx_cap = 0;
            c->rx_drop = true;
        } else {
            if (need > c->rx_cap) {
                size_t cap = c->rx_cap ? c->rx_cap : 4096;
                while (cap < need)
                    cap *= 2;
                if (cap > c->max_record)
                    cap = c->max_record;
                uint8_t *b = realloc(c->rx_buf, cap);
                if (!b) {
                    free_rx(c);
                    lost(c, USP_MTP_R_INTERNAL, USP_ENOMEM);
                    return -1;
                }
                c->rx_buf = b;
                c->rx_cap = cap;
            }
            memcpy(c->rx_buf + c->rx_len, in, len);
            c->rx_len = need;
        }
    }
    if (final) {
        uint8_t *b = c->rx_buf;
        size_t n = c->rx_len;
        bool drop = c->rx_drop;
        c->rx_buf = NULL;
        c->rx_len = c->rx_cap = 0;
        c->rx_drop = false;
        if (!drop)
            deliver(c, b, n);
        free(b);
    }
    return 0;
}

/* ---- Keepalive [R-WS.17/18] ------------------------------------------------------- */

static void fire_keepalive(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct ws_conn *c = of_timer(t);
    if (c->phase != P_UP || !c->wsi)
        return;
    enter(c);
    if (c->ping_wait) {
        lost(c, USP_MTP_R_KEEPALIVE, 0);
    } else {
        c->ping_due = true;
        c->ping_wait = true;
        want_write(c);
        mtp__timer_arm(c->base.ctx, &c->timer, (uint64_t)c->keepalive_s * 1000, fire_keepalive);
    }
    leave(c);
}

static void fire_close_timeout(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct ws_conn *c = of_timer(t);
    enter(c);
    if (c->closing)
        lost(c, USP_MTP_R_CLOSED, 1);
    else
        lost(c, USP_MTP_R_LOST, c->close_code);
    leave(c);
}

/* The session is established, in either direction. */
static void went_up(struct ws_conn *c)
{
    struct usp_mtp_ctx *ctx = c->base.ctx;
    c->phase = P_UP;
    c->attempt = 0;
    if (c->has_slot) {
        c->has_slot = false;
        mtp__connect_slot_give(ctx);
    }
    mtp__timer_cancel(ctx, &c->timer);
    if (c->keepalive_s)
        mtp__timer_arm(ctx, &c->timer, (uint64_t)c->keepalive_s * 1000, fire_keepalive);
    MTP_STAT(&c->base, ups, 1);
    /* The Connect Record comes before anything else on the session
     * [R-MTP.6, R-MTP.8]. */
    if (c->role == USP_MTP_AGENT && c->peer_eid)
        send_own_record(c, true, 0, NULL);
}

/* One session per pair of Endpoint IDs [R-WS.4]: the newer one stays. */
static void replace_older(struct ws_conn *c)
{
    if (!c->peer_eid)
        return;
    struct ws_conn *old = tab_find(c->sh, c->eid, c->peer_eid, c);
    if (old) {
        tab_remove(old);
        if (c->lis)
            c->lis->base.stats.replaced++;
        mtp__log(c->base.ctx, USP_MTP_LOG_INFO, c->eid,
                 "WebSocket: a new session with %s replaces the older one [R-WS.4]", c->peer_eid);
        enter(old);
        lost(old, USP_MTP_R_LOST, 1000);
        leave(old);
    }
    tab_insert(c);
}

/* ---- Listener side ---------------------------------------------------------------- */

static const char *put_str(char **pos, const char *s);

/* A request on a listener's vhost, before the 101. Returns nonzero to
 * refuse it. */
static void ticket_free(struct ws_ticket *t)
{
    struct ws_shared *sh = t->sh;
    if (t->pprev) {
        *t->pprev = t->next;
        if (t->next)
            t->next->pprev = t->pprev;
    }
    free(t);
    shared_release(sh);
}

static int server_filter(struct lws *wsi, const char *offered)
{
    struct ws_link *k = lws_get_opaque_user_data(wsi);
    if (!k || k->kind != LINK_TICKET)
        return -1;
    struct ws_ticket *t = ticket_of(k);
    struct ws_listener *l = t->lis;
    if (!l || l->closed)
        return -1;
    struct usp_mtp_ctx *ctx = l->base.ctx;
    char path[USP_MTP_PATH_MAX + 1], addr[64] = "", arg[MTP_WS_EID_MAX + 8];
    char ext[512], ext_eid[MTP_WS_EID_MAX + 1], refusal_buf[MTP_WS_EID_MAX + 300];
    const char *peer = NULL, *refusal = NULL;
    bool ext_asked = false;
    struct usp_tls_ids *ids = NULL;

    lws_get_peer_simple(wsi, addr, sizeof addr);
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) < 0)
        path[0] = '\0';
    char list[256] = "";
    if (lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) < 0)
        list[0] = '\0';
    if (!mtp__ws_protocol_listed(list, MTP_WS_PROTOCOL) &&
        !mtp__ws_protocol_listed(offered, MTP_WS_PROTOCOL)) {
        refusal = "no Sec-WebSocket-Protocol " MTP_WS_PROTOCOL " [R-WS.12a]";
        goto out;
    }
    if (!path[0] || (l->path[0] && strcmp(path, l->path) != 0)) {
        refusal = "not our resource path [R-WS.2]";
        goto out;
    }
    /* The peer's Endpoint ID: the "eid" query parameter (lws has decoded
     * it) [R-WS.10b/c], else the deprecated extension [R-WS.10a]. */
    for (int i = 0; !peer && i < 256; i++) {
        int n = lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0) {
            if (lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) <= 0)
                break; /* no more parameters */
            refusal = "a query parameter is too long";
            goto out;
        }
        if (strncmp(arg, "eid=", 4) == 0)
            peer = arg + 4;
    }
    if (lws_hdr_copy(wsi, ext, sizeof ext, WSI_TOKEN_EXTENSIONS) > 0) {
        int rc = mtp__ws_ext_eid(ext, ext_eid, sizeof ext_eid);
        if (rc != USP_ENOENT)
            ext_asked = true;
        if (rc == 0 && !peer)
            peer = ext_eid;
    }
    if (peer && !mtp__ws_peer_eid_ok(peer)) {
        refusal = "the eid parameter is not an acceptable Endpoint ID";
        goto out;
    }
    if (l->tls) {
        /* The Endpoint IDs of the client's verified certificate; an "eid"
         * it does not authenticate is refused [R-SEC.0a]. */
        char why[200];
        SSL *ssl = lws_get_ssl(wsi);
        if (!ssl || usp_tls_ids_from_ssl(ssl, &ids, why, sizeof why) != 0) {
            ids = NULL;
            if (peer) {
                snprintf(refusal_buf, sizeof refusal_buf,
                         "its certificate authenticates no Endpoint ID, not eid %s: %s", peer, why);
                refusal = refusal_buf;
                goto out;
            }
        } else if (peer && usp_tls_ids_match(ids, peer, why, sizeof why) != 0) {
            snprintf(refusal_buf, sizeof refusal_buf,
                     "its certificate does not authenticate eid %s [R-SEC.0a]: %s", peer, why);
            refusal = refusal_buf;
            goto out;
        }
    }
    if (peer) {
        struct ws_conn *other = tab_find(l->sh, l->eid, peer, NULL);
        if (other && !other->accepted && other->phase == P_UP) {
            refusal = "a session with this peer is already up [R-WS.4]";
            goto out;
        }
    }
    struct usp_mtp_peer info = {.eid = peer, .path = path, .addr = addr, .ids = ids};
    if (l->base.cb->check && l->base.cb->check(&l->base, &info, l->base.user) != 0) {
        refusal = "refused by the owner";
        goto out;
    }
    if (l->closed) {
        refusal = "the listener is closing";
        goto out;
    }

    /* The session to be: its connection, attached to the wsi. */
    const char *strs[] = {l->eid, peer, path, l->usp_version, addr};
    size_t total = sizeof(struct ws_conn);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            total += strlen(strs[i]) + 1;
    struct ws_conn *c = calloc(1, total);
    if (!c) {
        refusal = "out of memory";
        goto out;
    }
    char *pos = (char *)(c + 1);
    c->eid = put_str(&pos, l->eid);
    c->peer_eid = peer ? put_str(&pos, peer) : NULL;
    c->path = put_str(&pos, path);
    c->usp_version = l->usp_version ? put_str(&pos, l->usp_version) : NULL;
    c->host = put_str(&pos, addr);
    c->base.ops = &usp_mtp_ws_ops;
    c->base.ctx = ctx;
    c->base.state = USP_MTP_IDLE;
    c->sh = l->sh;
    c->sh->users++;
    c->txq_tail = &c->txq;
    c->accepted = true;
    c->ext_asked = ext_asked;
    c->role = l->role;
    c->max_record = l->max_record;
    c->close_timeout_ms = l->close_timeout_ms;
    c->keepalive_s = l->keepalive_s;
    c->phase = P_PENDING;
    c->tls = l->tls;
    c->ids = ids; /* the connection takes them */
    ids = NULL;
    c->lis = l;
    c->lnext = l->sessions;
    if (l->sessions)
        l->sessions->lprev = &c->lnext;
    c->lprev = &l->sessions;
    l->sessions = c;
    c->link.kind = LINK_CONN;
    c->wsi = wsi;
    lws_set_opaque_user_data(wsi, &c->link);
    ticket_free(t); /* the connection takes over */
out:
    usp_tls_ids_free(ids);
    if (refusal) {
        /* An answer the client can show, rather than a bare close. */
        lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, NULL);
        l->base.stats.refused++;
        mtp__log(ctx, USP_MTP_LOG_INFO, l->eid,
                 "WebSocket %s: refused a session from %s (eid %s): %s", l->where, addr,
                 peer ? peer : "none", refusal);
        return -1;
    }
    return 0;
}

/* The 101 went out: hand the session over. */
static void server_established(struct ws_conn *c)
{
    struct ws_listener *l = c->lis;
    if (!l || l->closed) {
        lost(c, USP_MTP_R_CLOSED, 1001);
        return;
    }
    c->base.state = USP_MTP_CONNECTING;
    went_up(c);
    replace_older(c);
    c->handed = true;
    l->base.stats.accepted++;
    struct usp_mtp_peer info = {
        .eid = c->peer_eid, .path = c->path, .addr = c->host, .ids = c->ids};
    mtp__log(c->base.ctx, USP_MTP_LOG_INFO, c->eid, "WebSocket %s: accepted a session from %s%s%s",
             l->where, c->host, c->peer_eid ? ", eid " : "", c->peer_eid ? c->peer_eid : "");
    l->base.cb->accept(&l->base, &c->base, &info, l->base.user);
    if (c->dead || c->lost || c->closing || c->phase != P_UP)
        return;
    char detail[96];
    snprintf(detail, sizeof detail, "accepted from %.40s", c->host);
    mtp__emit_state(&c->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, detail);
}

/* The extension answer [R-WS.11a]: only to a client that sent it. */
static void add_headers(struct ws_conn *c, struct lws *wsi, struct lws_process_html_args *args)
{
    if (!c->accepted || !c->ext_asked || !args || !args->p)
        return;
    char v[2 * MTP_WS_EID_MAX + 40];
    size_t n = mtp__ws_ext_value(c->eid, v, sizeof v);
    if (n >= sizeof v)
        return;
    unsigned char *p = (unsigned char *)args->p;
    if (lws_add_http_header_by_name(
            wsi, (const unsigned char *)"sec-websocket-extensions:", (const unsigned char *)v,
            (int)n, &p, (unsigned char *)args->p + args->max_len) == 0)
        args->p = (char *)p;
}

/* ---- Client side ---------------------------------------------------------------- */

/* The server's answer, before the session exists: it must have picked
 * v1.usp [R-WS.12]. Returns nonzero to refuse. */
static int client_check_answer(struct ws_conn *c, struct lws *wsi)
{
    char proto[64] = "";
    if (lws_hdr_copy(wsi, proto, sizeof proto, WSI_TOKEN_PROTOCOL) < 0 ||
        strcmp(proto, MTP_WS_PROTOCOL) != 0) {
        lost(c, USP_MTP_R_REFUSED, 101);
        return -1;
    }
    return 0;
}

/* The server's certificate: its Endpoint IDs, for usp_mtp_peer_ids. */
static void client_tls_ids(struct ws_conn *c, struct lws *wsi)
{
    char why[200];
    SSL *ssl = lws_get_ssl(wsi);
    usp_tls_ids_free(c->ids);
    c->ids = NULL;
    if (!ssl || usp_tls_ids_from_ssl(ssl, &c->ids, why, sizeof why) != 0) {
        c->ids = NULL;
        mtp__log(c->base.ctx, USP_MTP_LOG_DEBUG, c->eid,
                 "WebSocket %s:%u: no Endpoint ID in the server's certificate: %s", c->host,
                 c->port, ssl ? why : "no TLS session");
        return;
    }
    if (c->peer_eid && usp_tls_ids_match(c->ids, c->peer_eid, why, sizeof why) != 0)
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->eid,
                 "WebSocket %s:%u: the server's certificate does not authenticate the "
                 "configured peer %s: %s",
                 c->host, c->port, c->peer_eid, why);
}

static void client_established(struct ws_conn *c, struct lws *wsi)
{
    if (c->tls)
        client_tls_ids(c, wsi);
    went_up(c);
    replace_older(c);
    mtp__log(c->base.ctx, USP_MTP_LOG_INFO, c->eid, "WebSocket %s:%u%s up", c->host, c->port,
             c->path);
    mtp__emit_state(&c->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, "session established");
}

static void client_failed(struct ws_conn *c, struct lws *wsi, const char *in, size_t len)
{
    if (c->lost)
        return;
    /* "HS: ..." means the server answered, but not with a session. */
    if (in && len >= 3 && strncmp(in, "HS:", 3) == 0) {
        lost(c, USP_MTP_R_REFUSED, (int)lws_http_client_http_response(wsi));
    } else {
        lost(c, USP_MTP_R_CONNECT, 0);
        if (c->tls && in && len && !c->tls_fail_text)
            c->tls_fail_text = strndup(in, len > 160 ? 160 : len); /* NULL: no words */
    }
    mtp__log(c->base.ctx, USP_MTP_LOG_DEBUG, c->eid, "WebSocket %s:%u: %.*s", c->host, c->port,
             in ? (int)(len > 120 ? 120 : len) : 4, in ? in : "none");
}

/* ---- The libwebsockets callback ------------------------------------------------------ */

static int conn_event(struct ws_conn *c, struct lws *wsi, enum lws_callback_reasons reason,
                      void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
        return client_check_answer(c, wsi);
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c->phase == P_CONNECTING)
            client_established(c, wsi);
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (c->phase == P_PENDING)
            server_established(c);
        return 0;
    case LWS_CALLBACK_ADD_HEADERS:
        add_headers(c, wsi, in);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        client_failed(c, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
    case LWS_CALLBACK_RECEIVE:
        return on_receive(c, wsi, in, len);
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
    case LWS_CALLBACK_RECEIVE_PONG:
        c->ping_wait = false;
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *p = in;
        int code = p && len >= 2 ? (p[0] << 8 | p[1]) : 1005;
        c->peer_closing = true;
        lost(c, c->closing ? USP_MTP_R_CLOSED : USP_MTP_R_PEER_CLOSED, c->closing ? 0 : code);
        return 0; /* lws answers the close */
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED:
        lost(c, c->closing ? USP_MTP_R_CLOSED : USP_MTP_R_LOST, 0);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* The wsi is gone whatever happened: never touch it again. */
        if (c->wsi == wsi) {
            c->wsi = NULL;
            lws_set_opaque_user_data(wsi, NULL);
            if (c->phase == P_CONNECTING && !c->lost)
                lost(c, USP_MTP_R_CONNECT, 0);
            else if (!c->lost && c->phase != P_RETRY && c->phase != P_CLOSED)
                lost(c, c->closing ? USP_MTP_R_CLOSED : USP_MTP_R_LOST, 0);
        }
        return 0;
    default:
        return 0;
    }
}

/* A client's handshake: the server's certificate (see mtp_ws_tls.c). 0
 * accepts, 1 fails the handshake. */
static int client_verify(struct lws *wsi, X509_STORE_CTX *x, SSL *ssl, int ok)
{
    struct ws_link *k = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    struct ws_conn *c = k && k->kind == LINK_CONN ? of_link(k) : NULL;
    if (!c || c->wsi != wsi || !c->tls) {
        /* Let go of meanwhile: no reason to go on. */
        X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
        return 1;
    }
    char why[200];
    bool was_set_up = c->tls_set_up;
    int rc = mtp__ws_tls_client_verify(x, ssl, ok, c->host, c->cert_file, c->key_file,
                                       &c->tls_set_up, &c->tls_verify, why, sizeof why);
    if (!was_set_up && why[0]) {
        c->tls_own_cert = true;
        mtp__log(c->base.ctx, USP_MTP_LOG_ERROR, c->eid, "WebSocket %s:%u: %s", c->host, c->port,
                 why);
    }
    return rc;
}

/* A listener's handshake: the client's certificate was checked by OpenSSL
 * against the listener's CA file; a failure is counted and logged here (the
 * session never reaches the request checks). 0 accepts, 1 fails. */
static int server_verify(struct lws *wsi, X509_STORE_CTX *x, int ok)
{
    if (ok)
        return 0;
    struct ws_link *k = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    struct ws_ticket *t = k && k->kind == LINK_TICKET ? ticket_of(k) : NULL;
    struct ws_listener *l = t ? t->lis : NULL;
    if (l && !l->closed && !t->tls_refused) {
        t->tls_refused = true;
        l->base.stats.refused++;
        char addr[64] = "";
        lws_get_peer_simple(wsi, addr, sizeof addr);
        mtp__log(l->base.ctx, USP_MTP_LOG_WARN, l->eid,
                 "WebSocket wss %s: refused a TLS client from %s: its certificate did not "
                 "verify: %s (depth %d) [R-MTP.1]",
                 l->where, addr[0] ? addr : "?",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)),
                 X509_STORE_CTX_get_error_depth(x));
    }
    return 1; /* lws 4.1 takes 0 as "accept", whatever OpenSSL found */
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        return mtp__ws_tls_server_ctx_setup(user);
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        return client_verify(wsi, user, in, (int)len);
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        return server_verify(wsi, user, (int)len);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return server_filter(wsi, in);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* Only WebSocket upgrades (no h2c). */
        return in && strcmp(in, "websocket") == 0 ? 0 : -1;
    case LWS_CALLBACK_HTTP:
        /* A plain HTTP request to a listener: nothing here. */
        return -1;
    default:
        break;
    }
    struct ws_link *k = lws_get_opaque_user_data(wsi);
    if (k && k->kind == LINK_CLOSING) {
        /* A close handshake finishing: after our close frame the peer's
         * answer ends it (no echo); anything else is dropped. */
        if (reason == LWS_CALLBACK_WSI_DESTROY) {
            lws_set_opaque_user_data(wsi, NULL);
            shared_release(lws_context_user(lws_get_context(wsi)));
        }
        return reason == LWS_CALLBACK_WS_PEER_INITIATED_CLOSE ? -1 : 0;
    }
    if (k && k->kind == LINK_TICKET) {
        struct ws_ticket *t = ticket_of(k);
        if (reason == LWS_CALLBACK_WSI_DESTROY) {
            lws_set_opaque_user_data(wsi, NULL);
            t->gone = true;
            if (!t->adopting)
                ticket_free(t);
        }
        return 0;
    }
    struct ws_conn *c = k ? of_link(k) : NULL;
    if (!c) {
        /* A wsi we let go of: close it at its next chance. */
        switch (reason) {
        case LWS_CALLBACK_CLIENT_WRITEABLE:
        case LWS_CALLBACK_SERVER_WRITEABLE:
        case LWS_CALLBACK_CLIENT_RECEIVE:
        case LWS_CALLBACK_RECEIVE:
        case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
        case LWS_CALLBACK_ESTABLISHED:
            return -1;
        default:
            return 0;
        }
    }
    bool may_close; /* whether -1 closes the wsi after this reason */
    switch (reason) {
    case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_RECEIVE:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
        may_close = true;
        break;
    case LWS_CALLBACK_ADD_HEADERS:
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: /* 0: lws answers the close */
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        may_close = false;
        break;
    default:
        return 0; /* poll changes and the like: not ours */
    }
    if (!c->wsi && c->phase == P_CONNECTING)
        c->wsi = wsi; /* during lws_client_connect_via_info */
    if (c->wsi != wsi)
        return 0;
    struct ws_shared *sh = c->sh;
    struct lws *outer = sh->cb_wsi;
    sh->cb_wsi = wsi;
    enter(c);
    int rc = conn_event(c, wsi, reason, in, len);
    leave(c); /* may free c */
    sh->cb_wsi = outer;
    if (!may_close)
        return 0;
    /* Closed here, or let go of on the way out (not after our close frame:
     * that wsi waits for the peer's). */
    return rc || lws_get_opaque_user_data(wsi) == NULL ? -1 : 0;
}

static const struct lws_protocols protocols[] = {
    {MTP_WS_PROTOCOL, ws_callback, 0, RX_CHUNK, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- The shared state's life ------------------------------------------------------ */

static void on_later_closed(uv_handle_t *h)
{
    struct ws_shared *sh = h->data;
    struct usp_mtp_ctx *ctx = sh->ctx;
    mtp__ws_tls_vhosts_free(sh->tls_vhs); /* the lws_context is gone */
    free(sh->tab);
    free(sh);
    mtp__conn_release(ctx);
}

/* Destroying an lws_context on a foreign libuv loop is staged: the first
 * lws_context_destroy closes its handles, which takes turns of the loop.
 * libwebsockets 4.1 then frees the context by itself in some cases, and in
 * others only at a second lws_context_destroy once its handles are closed
 * (as its own foreign-loop example does). It clears sh->lws (info.pcontext)
 * when the context is freed, so the shared state lives until then. */
#define DESTROY_SPINS 8

static void on_later(uv_timer_t *t)
{
    struct ws_shared *sh = t->data;
    if (sh->destroying) {
        if (!sh->lws) {
            uv_timer_stop(&sh->later);
            uv_close((uv_handle_t *)&sh->later, on_later_closed);
        } else if (++sh->spins == DESTROY_SPINS) {
            mtp__log(sh->ctx, USP_MTP_LOG_DEBUG, NULL,
                     "WebSocket: second lws_context_destroy to finish the context");
            lws_context_destroy(sh->lws); /* the second call: frees it */
        } else if (sh->spins > 4 * DESTROY_SPINS) {
            /* Never freed: keep the memory it may still write to. */
            mtp__log(sh->ctx, USP_MTP_LOG_ERROR, NULL,
                     "WebSocket: libwebsockets did not finish destroying its context");
            uv_timer_stop(&sh->later);
            uv_close((uv_handle_t *)&sh->later, NULL);
            mtp__conn_release(sh->ctx);
        }
        return;
    }
    if (sh->users > 0)
        return;
    sh->destroying = true;
    pthread_mutex_lock(&registry_lock);
    for (struct ws_shared **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == sh) {
            *pp = sh->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    lws_context_destroy(sh->lws);
    /* Watch it finish, a turn of the loop at a time. */
    uv_timer_start(&sh->later, on_later, 1, 1);
}

static void run_later(struct ws_shared *sh)
{
    if (!sh->destroying)
        uv_timer_start(&sh->later, on_later, 0, 0);
}

static void shared_release(struct ws_shared *sh)
{
    if (--sh->users == 0)
        run_later(sh);
}

static int shared_get(struct usp_mtp_ctx *ctx, struct ws_shared **out, char *why, size_t whylen)
{
    struct ws_shared *sh;
    pthread_mutex_lock(&registry_lock);
    for (sh = registry; sh && sh->ctx != ctx; sh = sh->next)
        ;
    if (sh)
        sh->users++;
    pthread_mutex_unlock(&registry_lock);
    if (sh) {
        *out = sh;
        return 0;
    }
    sh = calloc(1, sizeof *sh);
    if (!sh)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    sh->ctx = ctx;
    void *loops[1] = {ctx->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    /* DO_SSL_GLOBAL_INIT: wss:// may come later; without it libwebsockets
     * 4.1 makes no TLS vhost in this context (plain vhosts leave it out). */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_SKIP_SERVER_CANONICAL_NAME |
                   LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.max_http_header_pool2 = AH_POOL;
    info.gid = -1;
    info.uid = -1;
    info.retry_and_idle_policy = &no_idle_policy;
    info.user = sh;
    info.pcontext = &sh->lws; /* cleared when the context is freed */
    sh->lws = lws_create_context(&info);
    if (!sh->lws) {
        free(sh);
        return mtp__fail(why, whylen, USP_EIO,
                         "libwebsockets cannot make a context on this loop (is its libuv event "
                         "library, libwebsockets-evlib-uv, installed?)");
    }
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.vhost_name = "usp-ws-client";
    info.retry_and_idle_policy = &no_idle_policy;
    /* wss:// connections use vhosts of their own (mtp_ws_tls.c). */
    sh->client_vh = lws_create_vhost(sh->lws, &info);
    uv_timer_init(ctx->loop, &sh->later);
    sh->later.data = sh;
    mtp__conn_hold(ctx); /* until the timer handle has closed */
    if (!sh->client_vh) {
        /* Unregistered and unused: on_later destroys it from the loop. */
        run_later(sh);
        return mtp__fail(why, whylen, USP_EIO, "libwebsockets cannot make the client vhost");
    }
    sh->users = 1;
    pthread_mutex_lock(&registry_lock);
    sh->next = registry;
    registry = sh;
    pthread_mutex_unlock(&registry_lock);
    *out = sh;
    return 0;
}

/* ---- Connecting ------------------------------------------------------------------- */

static void connect_to(struct ws_conn *c, const char *addr)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = c->sh->lws;
    ci.vhost = c->sh->client_vh;
    ci.address = addr;
    ci.port = c->port;
    ci.path = c->target;
    ci.host = c->host_hdr;
    ci.protocol = MTP_WS_PROTOCOL;
    ci.iface = c->bind;
    ci.opaque_user_data = &c->link;
    ci.retry_and_idle_policy = &no_idle_policy;
    if (c->tls) {
        /* The vhost's SSL_CTX; the name is checked by us (mtp_ws_tls.c). */
        ci.vhost = c->vh;
        ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
        c->tls_set_up = c->tls_own_cert = false;
        c->tls_verify = X509_V_OK;
    }
    c->phase = P_CONNECTING;
    c->wsi = NULL;
    struct lws *wsi = lws_client_connect_via_info(&ci);
    if (c->lost || c->dead)
        return; /* failed on the way: the callbacks said so */
    if (!wsi) {
        c->wsi = NULL;
        lost(c, USP_MTP_R_CONNECT, 0);
        return;
    }
    c->wsi = wsi;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct ws_conn *c = req->data;
    free(req);
    if (!c) { /* the attempt was dropped meanwhile */
        uv_freeaddrinfo(res);
        return;
    }
    c->gai = NULL;
    enter(c);
    char addr[64];
    bool found = status == 0 && mtp__pick_addr(res, c->attempt, addr, sizeof addr);
    uv_freeaddrinfo(res);
    if (!found)
        lost(c, USP_MTP_R_RESOLVE, status ? status : UV_EAI_NODATA);
    else if (!c->dead && !c->lost)
        connect_to(c, addr);
    leave(c);
}

/* The connect timeout. */
static void fire_deadline(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct ws_conn *c = of_timer(t);
    enter(c);
    lost(c, USP_MTP_R_TIMEOUT, 0);
    leave(c);
}

static void fire_attempt(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct ws_conn *c = of_timer(t);
    struct usp_mtp_ctx *ctx = c->base.ctx;
    if (!mtp__connect_slot_take(ctx, &c->wait, &c->timer, fire_attempt)) {
        c->phase = P_WAIT_SLOT;
        return;
    }
    c->has_slot = true;
    enter(c);
    c->phase = c->host_is_name ? P_RESOLVING : P_CONNECTING;
    mtp__timer_arm(ctx, &c->timer, c->connect_timeout_ms, fire_deadline);
    mtp__emit_state(&c->base, USP_MTP_CONNECTING, USP_MTP_R_NONE, 0, c->attempt, 0,
                    c->host_is_name ? "resolving" : "connecting");
    if (c->dead || c->closing || c->lost) {
        leave(c);
        return;
    }
    if (c->host_is_name) {
        c->gai = malloc(sizeof *c->gai);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        if (!c->gai) {
            lost(c, USP_MTP_R_INTERNAL, USP_ENOMEM);
        } else {
            c->gai->data = c;
            int rc = uv_getaddrinfo(ctx->loop, c->gai, on_resolved, c->host, NULL, &hints);
            if (rc) {
                free(c->gai);
                c->gai = NULL;
                lost(c, USP_MTP_R_RESOLVE, rc);
            }
        }
    } else {
        connect_to(c, c->host);
    }
    leave(c);
}

/* ---- Operations ------------------------------------------------------------------ */

static int ws_open(struct usp_mtp_conn *base)
{
    struct ws_conn *c = CONN(base);
    if (c->dead || c->accepted || c->phase != P_IDLE)
        return USP_EPERM;
    c->phase = P_RETRY;
    mtp__timer_arm(base->ctx, &c->timer, 0, fire_attempt);
    return 0;
}

static int ws_send(struct usp_mtp_conn *base, const struct usp_mtp_dest *to, const uint8_t *rec,
                   size_t len)
{
    struct ws_conn *c = CONN(base);
    if (c->dead || c->phase != P_UP || c->lost || c->closing || c->close_due || !c->wsi) {
        MTP_STAT(base, tx_refused, 1);
        return USP_EPERM;
    }
    if (!rec && len) {
        MTP_STAT(base, tx_refused, 1);
        return USP_EINVAL;
    }
    if (len > c->max_record) {
        MTP_STAT(base, tx_oversize, 1);
        mtp__log(base->ctx, USP_MTP_LOG_WARN, c->eid,
                 "WebSocket: refused to send a %zu-byte record (max_record %u)", len,
                 c->max_record);
        return USP_ERANGE;
    }
    return enqueue(c, rec, len);
}

static int ws_close(struct usp_mtp_conn *base, uint32_t reason_code, const char *reason)
{
    struct ws_conn *c = CONN(base);
    if (c->dead || c->closing || c->phase == P_CLOSED)
        return USP_EPERM;
    api_enter(c);
    c->closing = true;
    if (c->phase == P_UP && !c->lost && c->wsi && !c->close_due) {
        if (c->peer_eid)
            send_own_record(c, false, reason_code, reason);
        c->phase = P_CLOSING;
        close_with(c, 1000, NULL);
        mtp__timer_arm(base->ctx, &c->timer, c->close_timeout_ms, fire_close_timeout);
    } else {
        /* Not up: stop where we are; CLOSED comes from the loop. */
        lost(c, USP_MTP_R_CLOSED, 0);
        if (c->lost_reason != USP_MTP_R_CLOSED) {
            c->lost_reason = USP_MTP_R_CLOSED;
            c->lost_code = 0;
        }
    }
    api_leave(c);
    return 0;
}

static void ws_free(struct usp_mtp_conn *base)
{
    struct ws_conn *c = CONN(base);
    if (c->dead)
        return;
    c->dead = true;
    c->base.cb = NULL; /* no callback after this call */
    mtp__timer_cancel(base->ctx, &c->timer);
    mtp__connect_wait_cancel(base->ctx, &c->wait);
    release_wsi(c);
    tab_remove(c);
    if (c->busy == 0)
        finalize(c);
}

static const char *ws_local_dest(const struct usp_mtp_conn *c)
{
    return NULL; /* the session is the destination */
}

static int ws_reject(struct usp_mtp_conn *base, const char *reason)
{
    struct ws_conn *c = CONN(base);
    if (c->dead || c->lost || !c->wsi || (c->phase != P_UP && c->phase != P_CLOSING))
        return USP_EPERM;
    if (c->close_due && c->close_code == 1003)
        return 0;
    mtp__log(base->ctx, USP_MTP_LOG_WARN, c->eid,
             "WebSocket %s: closing with 1003: the peer sent an unparseable record [R-WS.16]",
             where(c));
    close_with(c, 1003, reason ? reason : "unparseable USP Record");
    mtp__timer_arm(base->ctx, &c->timer, c->close_timeout_ms, fire_close_timeout);
    return 0;
}

static const char *ws_peer_eid(const struct usp_mtp_conn *c)
{
    return CONN(c)->peer_eid;
}

static const struct usp_tls_ids *ws_peer_ids(const struct usp_mtp_conn *c)
{
    const struct ws_conn *w = CONN(c);
    return w->phase == P_UP || w->phase == P_CLOSING ? w->ids : NULL;
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

static int ws_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                       const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                       size_t whylen)
{
    if (mtp__ws_query_has_eid(url->query))
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the URL already has an eid parameter: the binding adds it [R-WS.10b]");
    size_t tlen = mtp__ws_target(url->path, url->query, cfg->eid, NULL, 0);
    char host_hdr[USP_MTP_HOST_MAX + 16];
    bool v6 = url->host_kind == USP_MTP_HOST_IPV6;
    if (url->port_given)
        snprintf(host_hdr, sizeof host_hdr, "%s%s%s:%u", v6 ? "[" : "", url->host, v6 ? "]" : "",
                 (unsigned)url->port);
    else
        snprintf(host_hdr, sizeof host_hdr, "%s%s%s", v6 ? "[" : "", url->host, v6 ? "]" : "");
    const char *strs[] = {cfg->eid,
                          cfg->peer_eid,
                          url->host,
                          host_hdr,
                          cfg->bind_address,
                          cfg->usp_version,
                          url->path[0] ? url->path : "/",
                          url->tls ? cfg->tls.cert_file : NULL,
                          url->tls ? cfg->tls.key_file : NULL};
    size_t total = sizeof(struct ws_conn) + tlen + 1;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            total += strlen(strs[i]) + 1;
    struct ws_shared *sh;
    int rc = shared_get(ctx, &sh, why, whylen);
    if (rc)
        return rc;
    struct lws_vhost *vh = NULL;
    if (url->tls) {
        /* Checked by mtp__tls_config_check: CA, certificate and key given. */
        rc = mtp__ws_tls_vhost(sh->lws, &sh->tls_vhs, false, &cfg->tls, protocols, &no_idle_policy,
                               &vh, why, whylen);
        if (rc) {
            shared_release(sh);
            return rc;
        }
    }
    struct ws_conn *c = calloc(1, total);
    if (!c) {
        shared_release(sh);
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    }
    char *pos = (char *)(c + 1);
    c->eid = put_str(&pos, cfg->eid);
    c->peer_eid = cfg->peer_eid ? put_str(&pos, cfg->peer_eid) : NULL;
    c->host = put_str(&pos, url->host);
    c->host_hdr = put_str(&pos, host_hdr);
    c->bind = cfg->bind_address ? put_str(&pos, cfg->bind_address) : NULL;
    c->usp_version = cfg->usp_version ? put_str(&pos, cfg->usp_version) : NULL;
    c->path = put_str(&pos, strs[6]);
    if (url->tls) {
        c->tls = true;
        c->vh = vh;
        c->cert_file = put_str(&pos, cfg->tls.cert_file);
        c->key_file = put_str(&pos, cfg->tls.key_file);
    }
    c->target = pos;
    mtp__ws_target(url->path, url->query, cfg->eid, pos, tlen + 1);
    c->link.kind = LINK_CONN;
    c->sh = sh;
    c->txq_tail = &c->txq;
    c->host_is_name = url->host_kind == USP_MTP_HOST_NAME;
    c->port = url->port;
    c->keepalive_s = cfg->keepalive_s;
    c->max_record = cfg->max_record;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    c->close_timeout_ms = cfg->close_timeout_ms;
    c->retry_time_s = cfg->retry_time_s;
    c->retry_mult = cfg->retry_multiplier;
    c->retry_max_s = cfg->retry_max_s;
    c->role = (uint8_t)cfg->role;
    c->phase = P_IDLE;
    c->base.ctx = ctx;
    *out = &c->base;
    return 0;
}

static int ws_global_init(void)
{
    /* libwebsockets logs to stderr with no way to name the endpoint: quiet
     * (a test may turn it on again with lws_set_log_level). */
    lws_set_log_level(0, NULL);
    return 0;
}

const struct usp_mtp_ops usp_mtp_ws_ops = {
    .name = "ws",
    .global_init = ws_global_init,
    .conn_new = ws_conn_new,
    .open = ws_open,
    .send = ws_send,
    .close = ws_close,
    .free = ws_free,
    .local_dest = ws_local_dest,
};

/* ---- Listening ----------------------------------------------------------------- */

/* Accepts at most this many connections per readiness callback. */
#define ACCEPT_BATCH 64

static void on_listener_closed(uv_handle_t *h)
{
    struct ws_listener *l = h->data;
    struct ws_shared *sh = l->sh;
    close(l->fd);
    free(l);
    shared_release(sh);
}

static void on_accept_ready(uv_poll_t *p, int status, int events)
{
    struct ws_listener *l = p->data;
    if (l->closed)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                mtp__log(l->base.ctx, USP_MTP_LOG_WARN, l->eid, "WebSocket %s: accept: %s",
                         l->where, strerror(errno));
            return;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct ws_ticket *t = calloc(1, sizeof *t);
        if (!t) {
            close(fd);
            continue;
        }
        t->link.kind = LINK_TICKET;
        t->sh = l->sh;
        t->sh->users++;
        t->lis = l;
        lws_adopt_desc_t ad;
        memset(&ad, 0, sizeof ad);
        ad.vh = l->vh;
        ad.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (l->tls ? LWS_ADOPT_ALLOW_SSL : 0);
        ad.fd.sockfd = fd;
        ad.opaque = &t->link;
        t->adopting = true;
        struct lws *wsi = lws_adopt_descriptor_vhost_via_info(&ad); /* closes fd on failure */
        t->adopting = false;
        if (!wsi || t->gone) {
            ticket_free(t);
            continue;
        }
        t->wsi = wsi;
        t->next = l->tickets;
        if (l->tickets)
            l->tickets->pprev = &t->next;
        t->pprev = &l->tickets;
        l->tickets = t;
        if (l->closed)
            return; /* closed from a callback of the adoption */
    }
}

/* The listening socket for `url` (numeric host), or -1 with errno. */
static int open_listen_socket(const struct usp_mtp_url *url)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (url->host_kind == USP_MTP_HOST_IPV4) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if (uv_ip4_addr(url->host, url->port, a) != 0) {
            errno = EINVAL;
            return -1;
        }
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (uv_ip6_addr(url->host, url->port, a) != 0) {
            errno = EINVAL;
            return -1;
        }
        len = sizeof *a;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) /* "::" takes IPv4 as well */
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int ws_listen(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                     const struct usp_mtp_url *url, struct usp_mtp_listener **out, char *why,
                     size_t whylen)
{
    if (url->host_kind != USP_MTP_HOST_IPV4 && url->host_kind != USP_MTP_HOST_IPV6)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "a listener binds a numeric address, not \"%s\" (0.0.0.0 or [::] for "
                         "any)",
                         url->host);
    if (url->has_query || url->has_user)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "a listener URL takes no user and no query, only address, port and path");
    char path[USP_MTP_PATH_MAX + 1];
    if (mtp__ws_pct_decode(url->path, path, sizeof path) != 0)
        return mtp__fail(why, whylen, USP_EINVAL, "the listener path has a bad %%-escape");
    if (strcmp(path, "/") == 0)
        path[0] = '\0'; /* any path */
    char where_[USP_MTP_HOST_MAX + USP_MTP_PATH_MAX + 16];
    bool v6 = url->host_kind == USP_MTP_HOST_IPV6;
    snprintf(where_, sizeof where_, "%s%s%s:%u%s", v6 ? "[" : "", url->host, v6 ? "]" : "",
             (unsigned)url->port, url->path);
    const char *strs[] = {cfg->eid, path, cfg->usp_version, where_, url->host};
    size_t total = sizeof(struct ws_listener);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            total += strlen(strs[i]) + 1;
    struct ws_shared *sh;
    int rc = shared_get(ctx, &sh, why, whylen);
    if (rc)
        return rc;
    struct lws_vhost *vh = NULL;
    if (url->tls) {
        /* One vhost per set of files, kept until the context goes. */
        rc = mtp__ws_tls_vhost(sh->lws, &sh->tls_vhs, true, &cfg->tls, protocols, &no_idle_policy,
                               &vh, why, whylen);
        if (rc) {
            shared_release(sh);
            return rc;
        }
    } else if (!sh->server_vh) {
        struct lws_context_creation_info info;
        memset(&info, 0, sizeof info);
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* sockets come by adoption */
        info.protocols = protocols;
        info.vhost_name = "usp-ws-server";
        info.retry_and_idle_policy = &no_idle_policy;
        sh->server_vh = lws_create_vhost(sh->lws, &info);
        if (!sh->server_vh) {
            shared_release(sh);
            return mtp__fail(why, whylen, USP_EIO, "libwebsockets cannot make the server vhost");
        }
    }
    struct ws_listener *l = calloc(1, total);
    if (!l) {
        shared_release(sh);
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    }
    char *pos = (char *)(l + 1);
    l->eid = put_str(&pos, cfg->eid);
    l->path = put_str(&pos, path);
    l->usp_version = cfg->usp_version ? put_str(&pos, cfg->usp_version) : NULL;
    l->where = put_str(&pos, where_);
    l->host = put_str(&pos, url->host);
    l->sh = sh;
    l->tls = url->tls;
    l->vh = url->tls ? vh : sh->server_vh;
    l->role = (uint8_t)cfg->role;
    l->max_record = cfg->max_record;
    l->close_timeout_ms = cfg->close_timeout_ms;
    l->keepalive_s = cfg->keepalive_s;
    l->base.ctx = ctx;
    l->base.port = url->port;
    l->fd = open_listen_socket(url);
    if (l->fd < 0) {
        int err = errno;
        free(l);
        shared_release(sh);
        return mtp__fail(why, whylen, USP_EIO, "cannot listen on %s: %s", where_, strerror(err));
    }
    if (uv_poll_init_socket(ctx->loop, &l->poll, l->fd) != 0 ||
        uv_poll_start(&l->poll, UV_READABLE, on_accept_ready) != 0) {
        close(l->fd);
        free(l);
        shared_release(sh);
        return mtp__fail(why, whylen, USP_EIO, "cannot watch the socket of %s", where_);
    }
    l->poll.data = l;
    mtp__log(ctx, USP_MTP_LOG_INFO, l->eid, "WebSocket: listening on %s%s", where_,
             l->tls ? " (wss, client certificates required)" : "");
    *out = &l->base;
    return 0;
}

static void ws_listener_close(struct usp_mtp_listener *base)
{
    struct ws_listener *l = (struct ws_listener *)base;
    if (l->closed)
        return;
    l->closed = true;
    l->base.cb = NULL;
    /* Requests not checked yet: refused. */
    while (l->tickets) {
        struct ws_ticket *t = l->tickets;
        l->tickets = t->next;
        if (t->next)
            t->next->pprev = &l->tickets;
        t->pprev = NULL;
        t->next = NULL;
        t->lis = NULL;
        if (t->wsi && t->wsi != l->sh->cb_wsi)
            lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    /* Sessions: cut; handed ones tell their owners from the loop. */
    while (l->sessions) {
        struct ws_conn *c = l->sessions;
        unlink_listener(c);
        api_enter(c);
        if (!c->lost)
            lost(c, USP_MTP_R_CLOSED, 1001);
        release_wsi(c);
        api_leave(c);
    }
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_listener_closed);
}

const struct usp_mtp_ext_ops usp_mtp_ws_ext_ops = {
    .base = &usp_mtp_ws_ops,
    .listen = ws_listen,
    .listener_close = ws_listener_close,
    .reject = ws_reject,
    .peer_eid = ws_peer_eid,
    .peer_ids = ws_peer_ids,
};

size_t mtp__ws_conn_size(void)
{
    return sizeof(struct ws_conn);
}
