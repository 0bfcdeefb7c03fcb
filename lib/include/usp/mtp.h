/* Message Transfer Protocols: the transports that carry USP Records between
 * endpoints (TR-369 "Message Transfer Protocols"). Every binding (MQTT,
 * STOMP, WebSocket, UNIX domain sockets, legacy CoAP) sits behind one interface,
 * the same for Agents and Controllers: a connection object per endpoint and
 * broker or peer, created from a URL and a configuration, that sends and
 * receives opaque Record bytes and reports its state. A fault-injection layer
 * can wrap a connection with the same shape.
 *
 * Threading: one struct usp_mtp_ctx per uv_loop_t (one per worker thread);
 * a connection and its callbacks live on that loop only. Callbacks run on
 * the loop, never from inside the caller's own call into this API. Freeing a
 * connection from inside one of its callbacks is allowed: it is released
 * once the callback has returned. Register bindings (usp_mtp_register)
 * before starting threads.
 *
 * Memory: per-connection state is kept small because a fleet holds many
 * thousands per process; shared things (callback tables, the timing wheel
 * every deadline sits on) live once per context or per loop. */
#ifndef USP_MTP_H
#define USP_MTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "usp/errors.h"

struct usp_tw;
struct usp_tls_ids;

/* ---- URLs --------------------------------------------------------------- */

/* Schemes and their bindings:
 *   mqtt://[user[:password]@]host[:port][/path]    binding "mqtt",  port 1883
 *   mqtts://...                                    binding "mqtt",  port 8883, TLS
 *   stomp://... / stomps://...                     binding "stomp", 61613 / 61614
 *   ws://host[:port][/path][?query] / wss://...    binding "ws",    80 / 443
 *   unix:PATH                                      binding "uds"   (no host, no port)
 *   coap://... / coaps://...                       binding "coap",  5683 / 5684
 * CoAP was obsoleted by USP 1.3; its binding (lib/mtp_coap.c) exists to
 * reproduce older deployments and sends Records of version 1.0-1.2. Scheme names are
 * case-insensitive and stored in lower case. The host is a DNS name, a
 * dotted-quad IPv4 address or an IPv6 address in brackets. User and password
 * are percent-decoded; path and query are kept as written (checked against
 * RFC 3986). A fragment ("#...") is an error. */
#define USP_MTP_URL_MAX      2048 /* longest URL accepted */
#define USP_MTP_HOST_MAX     253  /* longest host name */
#define USP_MTP_USERINFO_MAX 255  /* longest user or password, decoded */
#define USP_MTP_PATH_MAX     1024 /* longest path (or query) */
#define USP_MTP_UNIX_MAX     107  /* longest unix socket path (sun_path less the NUL) */

enum usp_mtp_host_kind {
    USP_MTP_HOST_NONE, /* unix: */
    USP_MTP_HOST_NAME, /* needs a DNS lookup */
    USP_MTP_HOST_IPV4,
    USP_MTP_HOST_IPV6,
};

struct usp_mtp_url {
    char scheme[8];  /* "mqtt", "mqtts", "stomp", "stomps", "ws", "wss", "unix", "coap", "coaps" */
    char binding[8]; /* name of the binding that serves it: "mqtt", "stomp", "ws", "uds", "coap" */
    bool tls;
    enum usp_mtp_host_kind host_kind;
    char host[USP_MTP_HOST_MAX + 1]; /* IPv6 without the brackets; "" for unix: */
    uint16_t port;                   /* as written, or the scheme's default; 0 for unix: */
    bool port_given;
    bool has_user;     /* "user@" was written (user may still be empty) */
    bool has_password; /* "user:password@" was written */
    char user[USP_MTP_USERINFO_MAX + 1];
    char password[USP_MTP_USERINFO_MAX + 1];
    char path[USP_MTP_PATH_MAX + 1];  /* "" or "/..."; for unix: the socket path */
    char query[USP_MTP_PATH_MAX + 1]; /* after "?", without it */
    bool has_query;
};

/* Parses `s`. 0, or USP_EINVAL with a sentence naming what is wrong and at
 * which offset in `why` (may be NULL; truncated to `whylen`). `out` may be
 * NULL to only validate. */
int usp_mtp_url_parse(const char *s, struct usp_mtp_url *out, char *why, size_t whylen);
/* Writes `u` back as a URL that parses to the same struct; the password is
 * written as "***" unless `with_password`. 0, or USP_ERANGE when `buf` is too
 * small (it then holds a truncated, terminated string), USP_EINVAL for a
 * struct that no URL can produce. */
int usp_mtp_url_format(const struct usp_mtp_url *u, bool with_password, char *buf, size_t n);

/* ---- Connections --------------------------------------------------------- */

struct usp_mtp_ctx;
struct usp_mtp_conn;
struct usp_mtp_ops;

enum usp_mtp_role {
    USP_MTP_AGENT,
    USP_MTP_CONTROLLER,
};

enum usp_mtp_state {
    USP_MTP_IDLE,       /* created, usp_mtp_open not called yet */
    USP_MTP_CONNECTING, /* resolving, connecting, handshaking, subscribing */
    USP_MTP_UP,         /* records can be sent and arrive */
    USP_MTP_DOWN,       /* lost or failed; the next attempt is scheduled */
    USP_MTP_CLOSED,     /* for good: usp_mtp_close, or disabled by the binding */
};

enum usp_mtp_reason {
    USP_MTP_R_NONE,
    USP_MTP_R_CLOSED,      /* usp_mtp_close finished */
    USP_MTP_R_RESOLVE,     /* the host name did not resolve */
    USP_MTP_R_CONNECT,     /* the transport connection failed (code: errno) */
    USP_MTP_R_TIMEOUT,     /* no session within connect_timeout_ms */
    USP_MTP_R_REFUSED,     /* the server refused the session (code: e.g. MQTT CONNACK reason) */
    USP_MTP_R_SUBSCRIBE,   /* every subscription was refused */
    USP_MTP_R_NO_TOPIC,    /* nothing to subscribe to: disabled [R-MQTT.16] */
    USP_MTP_R_LOST,        /* the connection dropped */
    USP_MTP_R_KEEPALIVE,   /* the peer stopped answering */
    USP_MTP_R_PEER_CLOSED, /* the server closed the session (code: e.g. MQTT DISCONNECT reason) */
    USP_MTP_R_INTERNAL,    /* out of memory or a library error */
};

/* A state change, valid during the callback only. */
struct usp_mtp_event {
    enum usp_mtp_state state;
    enum usp_mtp_reason reason; /* why DOWN or CLOSED; NONE otherwise */
    int code;                   /* binding detail, see the reasons */
    const char *detail;         /* a sentence for logs, never NULL */
    uint32_t attempt;           /* failed attempts since the last UP (CONNECTING, DOWN) */
    uint32_t retry_ms;          /* DOWN: delay until the next attempt */
};

/* Where a record goes, for every binding: the MQTT topic, the STOMP
 * destination; NULL for bindings that are point to point (WebSocket, UNIX
 * domain socket), where the connection itself is the destination. */
struct usp_mtp_dest {
    const char *to;
};

/* About a received record, valid during the callback only. Pass &reply_to to
 * usp_mtp_send to answer. */
struct usp_mtp_rx {
    /* .to NULL when the sender gave none (counted as rx_no_reply_to); what
     * to do then is the endpoint's business, e.g. R-MQTT.26a. */
    struct usp_mtp_dest reply_to;
    const char *arrived_on; /* topic or destination, without any reply-to suffix */
    int qos;                /* MQTT QoS; 0 for other bindings */
};

/* Counters; per connection, and summed over all connections per context. */
struct usp_mtp_stats {
    uint64_t tx_records, tx_bytes; /* handed to the transport */
    uint64_t rx_records, rx_bytes; /* delivered to the record callback */
    uint64_t tx_refused;           /* send refused: not UP [R-MQTT.17], bad destination */
    uint64_t tx_oversize;          /* send refused: over max_record */
    uint64_t tx_failed;            /* the transport refused the record */
    uint64_t rx_oversize;          /* dropped: over max_record */
    uint64_t rx_dropped;           /* dropped: empty, wrong content type */
    uint64_t rx_no_reply_to;       /* delivered without a reply-to */
    uint64_t ups;                  /* times the connection came UP */
    uint64_t attempts_failed;      /* connection attempts that did not come UP */
    uint64_t drops;                /* UP to DOWN, not asked for */
};

typedef void (*usp_mtp_state_cb)(struct usp_mtp_conn *c, const struct usp_mtp_event *ev,
                                 void *user);
typedef void (*usp_mtp_record_cb)(struct usp_mtp_conn *c, const uint8_t *rec, size_t len,
                                  const struct usp_mtp_rx *rx, void *user);
/* Both may be NULL. Keep one table for many connections: it is not copied. */
struct usp_mtp_callbacks {
    usp_mtp_state_cb state;
    usp_mtp_record_cb record;
};

enum usp_mtp_log_level { USP_MTP_LOG_ERROR, USP_MTP_LOG_WARN, USP_MTP_LOG_INFO, USP_MTP_LOG_DEBUG };
/* `eid` names the endpoint the line is about (may be NULL). */
typedef void (*usp_mtp_log_cb)(void *user, enum usp_mtp_log_level level, const char *eid,
                               const char *msg);

struct usp_mtp_ctx_opts {
    /* Connection attempts in flight per context; 0: no limit. A broker
     * listener drops SYNs beyond its backlog (mosquitto: 100), so a ramp
     * should stay below it. */
    uint32_t max_connecting;
    usp_mtp_log_cb log; /* NULL: no logging */
    void *log_user;
    enum usp_mtp_log_level log_level; /* lines above this level are not formatted */
    /* The worker's timing wheel (usp/timerwheel.h, driven on `loop`), so
     * that one timer serves everything on the loop; it must outlive the
     * context. NULL: the context makes its own. */
    struct usp_tw *wheel;
};

/* A context for all connections on `loop`. `opts` may be NULL. NULL when
 * out of memory. */
struct usp_mtp_ctx *usp_mtp_ctx_new(uv_loop_t *loop, const struct usp_mtp_ctx_opts *opts);
/* Frees the context; every connection must have been freed. Its own timer
 * (if any) is closed on the loop: run the loop once more before
 * uv_loop_close. */
void usp_mtp_ctx_free(struct usp_mtp_ctx *ctx);
/* Sums over every connection this context ever held. */
const struct usp_mtp_stats *usp_mtp_ctx_stats(const struct usp_mtp_ctx *ctx);

enum usp_mqtt_version {
    USP_MQTT_V311 = 4, /* MQTT 3.1.1 (protocol level 4) [R-MQTT.2] */
    USP_MQTT_V5 = 5,   /* MQTT 5.0 [R-MQTT.1] */
};

struct usp_mtp_mqtt_config {
    enum usp_mqtt_version version;
    /* NULL or "": MQTT 5 sends an empty ClientId and keeps the Assigned
     * Client Identifier from CONNACK; MQTT 3.1.1 uses the Endpoint ID
     * [R-MQTT.8-11]. */
    const char *client_id;
    /* The endpoint's own topic, e.g. "usp/agent/<eid>" (expanded by the
     * caller, no wildcards): subscribed to, and the reply-to of every PUBLISH
     * unless the broker gives a Response Information [R-MQTT.15, 21]. */
    const char *topic;
    const char *username; /* NULL: none (or the URL's) */
    const char *password;
    int qos; /* 0 or 1, capped by the CONNACK Maximum QoS */
};

/* STOMP settings (binding "stomp"): TR-181 Device.STOMP.Connection.{i}
 * and the endpoint's own destination (LocalAgent.MTP.{i}.STOMP.Destination,
 * or a Controller's). All zero is valid: vhost "/", no heart-beats, the
 * URL's credentials, the destination from the server. */
struct usp_mtp_stomp_config {
    /* VirtualHost, the `host` header [R-STOMP.5]; NULL or "": "/". */
    const char *virtual_host;
    /* `login` and `passcode` [R-STOMP.3]; NULL: the URL's user and
     * password; neither: no such headers (the server's default user). */
    const char *username;
    const char *password;
    /* Own destination, subscribed to and sent as reply-to-dest unless the
     * CONNECTED frame gives a subscribe-dest [R-STOMP.14-16]; NULL or "":
     * only the server's. See usp_mtp_stomp_dest for a naming scheme. */
    const char *destination;
    /* EnableHeartbeats, OutgoingHeartbeat, IncomingHeartbeat (ms)
     * [R-STOMP.8-11]: with enable_heartbeats false no heart-beat header is
     * sent and none are exchanged. keepalive_s does not apply to STOMP. */
    bool enable_heartbeats;
    uint32_t outgoing_heartbeat_ms;
    uint32_t incoming_heartbeat_ms;
};

/* TLS (mqtts, stomps, wss; DTLS for coaps; unix: when `uds` is set, USP
 * 1.4) with mutual authentication [R-MTP.1, R-SEC.0a], through the
 * contexts of usp/tls.h: TLS 1.2+, the peer's certificate required and
 * verified against ca_file only. A client also checks the server's
 * certificate against the URL's host. */
struct usp_mtp_tls_config {
    const char *ca_file;   /* PEM CA certificate(s) trusted for the peer; required for TLS */
    const char *cert_file; /* own certificate (chain); required for TLS */
    const char *key_file;
    unsigned flags; /* USP_TLS_NO_TIME_CHECK (usp/tls.h) */
    bool uds;       /* unix: URLs use TLS (no scheme can say so) */
};

/* CoAP settings (binding "coap", legacy USP 1.0-1.2; see usp/mtp_coap.h). */
struct usp_mtp_coap_config {
    /* The endpoint's own CoAP server (coap://ADDR:PORT/e/<eid> or coaps://),
     * where peers POST records and which goes out as the reply-to
     * Uri-Query; NULL: the binding's default (see usp/mtp_coap.h). */
    const char *local_url;
    /* RFC 7252 ACK_TIMEOUT in ms (0: 2000; 1000-60000, values outside
     * are clamped) and MAX_RETRANSMIT (0: 4): how soon an unanswered
     * Record counts as failed. */
    uint32_t ack_timeout_ms;
    uint32_t max_retransmit;
};

struct usp_mtp_config {
    enum usp_mtp_role role;
    const char *eid; /* own Endpoint ID */
    const char *url; /* see usp_mtp_url_parse */
    /* Numeric source address to bind (IPv4 or IPv6), NULL: any. Spreading a
     * fleet over several source addresses avoids running out of ports. */
    const char *bind_address;
    const char *usp_version; /* Record.version of records the binding builds; NULL: "1.4" */
    /* The Controller an Agent reports to: the binding sends it the
     * MTP's Connect Record once up [R-MTP.6] and a DisconnectRecord before a
     * graceful close [R-MTP.7]. Both NULL: no such records. */
    const char *peer_eid;
    const char *peer_dest;
    uint32_t keepalive_s;        /* 0 (off) or 5..65535 [R-MQTT.14] */
    uint32_t max_record;         /* largest Record sent or accepted, bytes */
    uint32_t retry_time_s;       /* ConnectRetryTime, >= 1 */
    uint32_t retry_multiplier;   /* ConnectRetryIntervalMultiplier, 1000..65535 (thousandths) */
    uint32_t retry_max_s;        /* ConnectRetryMaxInterval, >= 1 */
    uint32_t connect_timeout_ms; /* no session by then: the attempt failed */
    uint32_t close_timeout_ms;   /* a graceful close that takes longer is cut */
    struct usp_mtp_mqtt_config mqtt;
    struct usp_mtp_stomp_config stomp; /* binding "stomp" */
    struct usp_mtp_tls_config tls;     /* TLS URLs, see above */
    struct usp_mtp_coap_config coap;   /* binding "coap" */
};

#define USP_MTP_MAX_RECORD_DEFAULT (4u * 1024 * 1024)

/* Fills `cfg` with zeros and the defaults: TR-181 ones (keepalive 60 s,
 * ConnectRetryTime 5 s, multiplier 2000, ConnectRetryMaxInterval 30720 s),
 * max_record USP_MTP_MAX_RECORD_DEFAULT, connect timeout 30 s, close
 * timeout 5 s, MQTT 5 at QoS 1. */
void usp_mtp_config_init(struct usp_mtp_config *cfg);

/* A connection on `ctx` for cfg->url, served by the binding registered for
 * the URL's scheme. Everything in `cfg` is copied; `cb` must outlive the
 * connection. Nothing happens on the network until usp_mtp_open. 0, or
 * USP_EINVAL (bad configuration), USP_ENOENT (no binding registered for the
 * scheme), USP_EPERM (the binding cannot serve this URL, e.g. TLS),
 * USP_ENOMEM; `why` says what is wrong. */
int usp_mtp_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                     const struct usp_mtp_callbacks *cb, void *user, struct usp_mtp_conn **out,
                     char *why, size_t whylen);

/* ---- Bindings ------------------------------------------------------------ */

/* One per binding, filled with designated initialisers and registered by
 * name. Connections of every binding start with struct usp_mtp_conn. */
struct usp_mtp_ops {
    const char *name; /* "mqtt"; matches struct usp_mtp_url.binding */
    /* Once, from usp_mtp_register (library set-up); may be NULL. */
    int (*global_init)(void);
    int (*conn_new)(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                    const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                    size_t whylen);
    int (*open)(struct usp_mtp_conn *c);
    int (*send)(struct usp_mtp_conn *c, const struct usp_mtp_dest *to, const uint8_t *rec,
                size_t len);
    int (*close)(struct usp_mtp_conn *c, uint32_t reason_code, const char *reason);
    void (*free)(struct usp_mtp_conn *c);
    /* Where peers reach this endpoint (MQTT: the reply-to topic in use);
     * NULL when not UP or not meaningful. */
    const char *(*local_dest)(const struct usp_mtp_conn *c);
};

/* Read-only for callers; the binding owns the fields. */
struct usp_mtp_conn {
    const struct usp_mtp_ops *ops;
    struct usp_mtp_ctx *ctx;
    const struct usp_mtp_callbacks *cb;
    void *user;
    enum usp_mtp_state state;
    struct usp_mtp_stats stats;
};

/* The MQTT binding (lib/mtp_mqtt.c, libmosquitto 2.0 through its
 * external-loop API on the context's loop). Costs per connection: one file
 * descriptor (the TCP socket), about 0.6 KB of its own and about 1.4 KB in
 * libmosquitto once connected. To get there, linking it defines socketpair()
 * and bind() for the process: both pass straight to the system calls except
 * inside the binding's own calls into libmosquitto, where they refuse
 * libmosquitto's per-client wake-up socketpair (2 more descriptors per
 * client, unused with an external loop) and set IP_BIND_ADDRESS_NO_PORT
 * before binding a source address. mqtts:// uses cfg->tls [R-MTP.1]: one
 * client SSL_CTX per context and CA file (mtp__tls_ctx) handed to
 * libmosquitto, the own certificate loaded into each connection's SSL, the
 * broker's certificate checked against the URL's host; a failed handshake
 * gives DOWN (reason connect) with OpenSSL's reason in the detail. TLS adds
 * about 36 KB per connected agent (tests/integration/test-mqtt-mtp.sh). */
extern const struct usp_mtp_ops usp_mtp_mqtt_ops;

/* Registers a binding under ops->name and runs its global_init. Call before
 * starting threads. 0 (also when the same ops are registered again),
 * USP_EEXIST (another binding has that name), USP_ERANGE (table full),
 * USP_EINVAL, or global_init's error. */
int usp_mtp_register(const struct usp_mtp_ops *ops);
/* The binding registered as `name`, or NULL. */
const struct usp_mtp_ops *usp_mtp_find(const char *name);

/* Starts connecting; state callbacks follow from the loop: CONNECTING, then
 * UP, or DOWN with a reconnect scheduled after the back-off [R-MQTT.10/33].
 * 0, or USP_EPERM when not IDLE. */
static inline int usp_mtp_open(struct usp_mtp_conn *c)
{
    return c->ops->open(c);
}

/* Sends one Record to `to` (with this endpoint's reply-to). 0 when handed to
 * the transport; USP_EPERM when not UP (nothing is queued), USP_ERANGE when
 * over max_record, USP_EINVAL for a bad destination, USP_EIO when the
 * transport refused it, USP_ENOMEM. Counted in the stats either way. */
static inline int usp_mtp_send(struct usp_mtp_conn *c, const struct usp_mtp_dest *to,
                               const uint8_t *rec, size_t len)
{
    return c->ops->send(c, to, rec, len);
}

/* Graceful close: when UP, sends the DisconnectRecord{reason_code, reason}
 * to the configured peer [R-MTP.7] (reason may be NULL), then ends the
 * session; in any other state stops connecting. CLOSED is reported later
 * from the loop. 0, or USP_EPERM when already closing or closed. */
static inline int usp_mtp_close(struct usp_mtp_conn *c, uint32_t reason_code, const char *reason)
{
    return c->ops->close(c, reason_code, reason);
}

/* Cuts the connection unless it is closed (no DisconnectRecord) and frees
 * it; no callback runs after this call. Allowed inside its own callbacks.
 * Some memory is released from the loop: run it before usp_mtp_ctx_free
 * completes (see there). */
static inline void usp_mtp_conn_free(struct usp_mtp_conn *c)
{
    if (c)
        c->ops->free(c);
}

static inline enum usp_mtp_state usp_mtp_get_state(const struct usp_mtp_conn *c)
{
    return c->state;
}

static inline const struct usp_mtp_stats *usp_mtp_get_stats(const struct usp_mtp_conn *c)
{
    return &c->stats;
}

static inline const char *usp_mtp_local_dest(const struct usp_mtp_conn *c)
{
    return c->ops->local_dest ? c->ops->local_dest(c) : NULL;
}

/* "IDLE", "CONNECTING", ...; "?" for values out of range. */
const char *usp_mtp_state_name(enum usp_mtp_state s);
/* "none", "closed", "resolve", ...; "?" for values out of range. */
const char *usp_mtp_reason_name(enum usp_mtp_reason r);

/* ---- Listeners: the accepting side of point-to-point bindings ------------
 *
 * WebSocket, UNIX domain socket (usp/mtp_uds.h) and CoAP (usp/mtp_coap.h)
 * sessions are point to point: one
 * endpoint listens and accepts, the other connects with usp_mtp_conn_new.
 * A listener is made from a configuration like a connection: its URL names
 * what to bind (ws://127.0.0.1:8080/usp: numeric address, port, resource
 * path [R-WS.2]); role, eid, keepalive_s, max_record, close_timeout_ms and
 * usp_version apply to every session it accepts. Each accepted session is
 * a struct usp_mtp_conn of its own, handed to the accept callback: the
 * owner sets its callbacks there (usp_mtp_conn_set_callbacks) and frees it
 * later. An accepted connection reports UP once the accept callback has
 * returned and ends in CLOSED (this side never re-establishes it); it
 * cannot be opened. Records on a point-to-point connection need no
 * destination: usp_mtp_send ignores `to` (NULL is fine), and a received
 * record's reply_to.to is NULL (not counted as rx_no_reply_to). */

struct usp_mtp_listener;

/* Who asks for a session, valid during the callback only. */
struct usp_mtp_peer {
    /* The peer's Endpoint ID as it gave it (WebSocket: the "eid" query
     * parameter, percent-decoded [R-WS.10b/c], else the deprecated
     * bbf-usp-protocol extension [R-WS.10a]); NULL when it gave none. */
    const char *eid;
    const char *path; /* the resource path it asked for, percent-decoded, no query */
    const char *addr; /* its numeric address */
    /* The Endpoint IDs its verified TLS certificate authenticates
     * (usp/tls.h); NULL without TLS. */
    const struct usp_tls_ids *ids;
};

/* Before the session exists (WebSocket: after the binding's own checks,
 * before the 101 answer): 0 accepts, anything else refuses (WebSocket:
 * HTTP 403). */
typedef int (*usp_mtp_check_cb)(struct usp_mtp_listener *l, const struct usp_mtp_peer *peer,
                                void *user);
/* A session is established; `c` now belongs to the callee. */
typedef void (*usp_mtp_accept_cb)(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                                  const struct usp_mtp_peer *peer, void *user);

/* Keep one table for many listeners: it is not copied. */
struct usp_mtp_listener_callbacks {
    usp_mtp_check_cb check;   /* NULL: accept whatever passes the binding's checks */
    usp_mtp_accept_cb accept; /* required */
};

struct usp_mtp_listener_stats {
    uint64_t accepted; /* sessions handed to the accept callback */
    uint64_t refused;  /* requests refused: by the binding's checks or by `check` */
    uint64_t replaced; /* sessions closed for a newer one from the same peer [R-WS.4] */
};

struct usp_mtp_ext_ops;

/* Read-only for callers; the binding owns the fields. */
struct usp_mtp_listener {
    const struct usp_mtp_ext_ops *ops;
    struct usp_mtp_ctx *ctx;
    const struct usp_mtp_listener_callbacks *cb;
    void *user;
    uint16_t port; /* the bound port */
    struct usp_mtp_listener_stats stats;
};

/* What a binding offers beyond struct usp_mtp_ops (whose layout is fixed):
 * listening, and per-connection extras. Registered with
 * usp_mtp_register_ext, which registers `base` too. */
struct usp_mtp_ext_ops {
    const struct usp_mtp_ops *base; /* the binding's connection table */
    /* NULL when the binding cannot listen. */
    int (*listen)(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                  const struct usp_mtp_url *url, struct usp_mtp_listener **out, char *why,
                  size_t whylen);
    void (*listener_close)(struct usp_mtp_listener *l);
    /* See usp_mtp_reject; NULL: the binding has no such rule. */
    int (*reject)(struct usp_mtp_conn *c, const char *reason);
    /* See usp_mtp_peer_eid; may be NULL. */
    const char *(*peer_eid)(const struct usp_mtp_conn *c);
    /* See usp_mtp_peer_ids; may be NULL. */
    const struct usp_tls_ids *(*peer_ids)(const struct usp_mtp_conn *c);
};

/* Registers ext->base (usp_mtp_register) and the extension. Call before
 * starting threads. 0 (also when registered again), or as usp_mtp_register;
 * USP_EINVAL when ext or its base is incomplete. */
int usp_mtp_register_ext(const struct usp_mtp_ext_ops *ext);

/* Listens on cfg->url with the binding of the URL's scheme; the socket is
 * bound before this returns. `cfg` is copied; `cb` must outlive the
 * listener. 0, or USP_EINVAL (bad configuration, e.g. a host name instead
 * of a numeric address), USP_ENOENT (no binding, or it cannot listen),
 * USP_EPERM (e.g. TLS), USP_EIO (cannot bind: the port is in use...),
 * USP_ENOMEM; `why` says what is wrong. */
int usp_mtp_listen(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                   const struct usp_mtp_listener_callbacks *cb, void *user,
                   struct usp_mtp_listener **out, char *why, size_t whylen);

/* Stops listening and frees the listener; no callback of it runs after
 * this call. Sessions it accepted and handed over are cut: their owners
 * get CLOSED (reason closed, code 1001) from the loop and still free them.
 * Allowed inside its own callbacks. NULL is a no-op. */
void usp_mtp_listener_close(struct usp_mtp_listener *l);

static inline uint16_t usp_mtp_listener_port(const struct usp_mtp_listener *l)
{
    return l->port;
}

/* Sets the callbacks of a connection, e.g. an accepted one inside the
 * accept callback. `cb` must outlive the connection. */
void usp_mtp_conn_set_callbacks(struct usp_mtp_conn *c, const struct usp_mtp_callbacks *cb,
                                void *user);

/* The Endpoint ID of the peer when the binding knows it (WebSocket: given
 * by the peer when it connected to us, or cfg->peer_eid when we connect);
 * NULL otherwise. */
const char *usp_mtp_peer_eid(const struct usp_mtp_conn *c);

/* The Endpoint IDs the peer's verified TLS certificate authenticates, for
 * checking each received Record's from_id (usp_tls_ids_match) [R-SEC.0a]:
 * on a point-to-point binding with TLS, the peer endpoint's certificate
 * (kept while the session is up); NULL without TLS, on brokered bindings
 * (the certificate is the broker's) and before the session is up. */
const struct usp_tls_ids *usp_mtp_peer_ids(const struct usp_mtp_conn *c);

/* The record just received cannot be parsed: the binding does what its
 * specification asks. WebSocket: close the session with 1003
 * [R-WS.16] (`reason`, may be NULL, goes into the close frame); the
 * connection then goes DOWN (and retries) or, when accepted, CLOSED, from
 * the loop. 0 when done or when the binding has no such rule (MQTT: the
 * record is simply dropped); USP_EPERM when not UP. */
int usp_mtp_reject(struct usp_mtp_conn *c, const char *reason);

/* The WebSocket binding (lib/mtp_ws.c, libwebsockets 4.1 on the context's
 * loop as a foreign libuv loop; one lws_context per struct usp_mtp_ctx,
 * made when the first WebSocket connection or listener is created and
 * destroyed from the loop once the last is freed). Register it with
 * usp_mtp_register_ext(&usp_mtp_ws_ext_ops).
 * - Both roles connect (ws://; the "eid" query parameter is added
 *   [R-WS.10b/c], so the URL must not have one; the answer must name
 *   subprotocol v1.usp [R-WS.12]) and listen (v1.usp required in the
 *   request [R-WS.12a], else HTTP 403; the listener's path, when not "" or
 *   "/", must match; the peer's Endpoint ID from "eid"). A listener binds a
 *   numeric address; accepted sockets are served by one libwebsockets
 *   vhost per context.
 * - One record per binary message [R-WS.14]; fragmented messages are
 *   reassembled [R-WS.14b]; a text message closes the session with 1003
 *   [R-WS.16], as does usp_mtp_reject. Messages over max_record are dropped
 *   (rx_oversize); at most 4 * max_record + 64 KiB wait to be sent.
 * - Pings every keepalive_s (0: none); a session whose peer sent nothing,
 *   pong or data, for a whole keepalive_s after a ping is dropped
 *   [R-WS.17/18]. Pings are answered by libwebsockets.
 * - Reconnects with the ConnectRetry back-off (retry_time_s as m,
 *   retry_multiplier as k, capped at retry_max_s) [R-WS.19-21].
 * - An Agent queues a WebSocketConnectRecord first once a session is up
 *   [R-MTP.6], and either role a DisconnectRecord before a graceful close
 *   [R-MTP.7], when it knows the peer's Endpoint ID: cfg->peer_eid when
 *   connecting (peer_dest is not used but must be set with peer_eid, e.g.
 *   to the URL), the peer's "eid" when accepting.
 * - At most one session per pair of Endpoint IDs in a context [R-WS.4]: a
 *   new session replaces an older one with the same peer, except that a
 *   request from a peer to which an own connection is UP is refused (403)
 *   rather than replacing it (that connection would only come back).
 * - Event codes: REFUSED: the HTTP status (101: the answer was not
 *   acceptable, e.g. no v1.usp); PEER_CLOSED: the peer's close code (1005
 *   when none); LOST: 1003 (closed by us for a text frame or
 *   usp_mtp_reject), 1000 (replaced by a newer session [R-WS.4]), 0
 *   otherwise; CLOSED: 1001 (the listener closed), 1 (the close handshake
 *   took longer than close_timeout_ms).
 * - Costs per session: one file descriptor, about 2.6 KB of heap with
 *   libwebsockets (see tests/integration/test-ws-mtp.sh); per context the
 *   lws_context, whose fd table follows the process's fd limit.
 * - wss:// (both roles, lib/mtp_ws_tls.c) with mutual authentication
 *   [R-MTP.1, R-SEC.0a]: TLS 1.2+, the peer's certificate required and
 *   verified against tls.ca_file only. A client checks the server's
 *   certificate against the URL's host and sends its own tls.cert_file
 *   (set per connection: one per agent); a DOWN after a failed handshake
 *   says why (OpenSSL's verify text, a host mismatch, our certificate not
 *   loadable, or the server ending it after our certificate). A listener
 *   refuses a client whose certificate does not verify (counted in
 *   stats.refused) and, with 403, one whose "eid" its certificate does not
 *   authenticate; struct usp_mtp_peer.ids and usp_mtp_peer_ids carry the
 *   peer certificate's Endpoint IDs in both roles. Costs: per context one
 *   client vhost and SSL_CTX per CA file, and one server vhost and SSL_CTX
 *   per set of listener files, kept until the context goes (libwebsockets
 *   4.1 cannot destroy a vhost that had connections); per session the
 *   OpenSSL connection with its own certificate and the peer's IDs
 *   (tests/integration/test-ws-mtp.sh prints it, about 67 KB per client
 *   and server pair). */
extern const struct usp_mtp_ops usp_mtp_ws_ops;
extern const struct usp_mtp_ext_ops usp_mtp_ws_ext_ops;

/* The STOMP binding (lib/mtp_stomp.c: its own STOMP 1.2 client on a
 * uv_tcp_t of the context's loop, host names resolved with
 * uv_getaddrinfo). Connects with a STOMP frame carrying accept-version 1.2,
 * host (VirtualHost), login/passcode, heart-beat and the escaped
 * endpoint-id [R-STOMP.2-5, 8-10]; takes the CONNECTED frame's
 * subscribe-dest, else cfg->stomp.destination; with neither it sends
 * DISCONNECT and goes DOWN (reason no-topic) to retry [R-STOMP.14-16].
 * SUBSCRIBEs with ack:auto and a receipt, and is UP once the receipt (or a
 * first MESSAGE) arrives [R-STOMP.13, 17]. Records go out as SEND with
 * content-length, content-type application/vnd.bbf.usp.msg and
 * reply-to-dest [R-STOMP.18-22]; a received record's reply_to.to is its
 * reply-to-dest [R-STOMP.23]. Never BEGIN, COMMIT, ABORT, ACK or NACK. An
 * Agent with peer_eid/peer_dest sends a STOMPConnectRecord{V1_2,
 * subscribed_destination} once UP [R-MTP.6] and a DisconnectRecord before
 * a graceful close (then DISCONNECT with a receipt) [R-MTP.7]. Heart-beats
 * as negotiated (usp/stomp.h), on the context's timer wheel; a silent
 * server goes DOWN with reason keepalive. An ERROR frame ends the session:
 * DOWN with its message in the detail (reason refused before the
 * subscription, subscribe while subscribing, peer-closed once UP). A frame
 * over max_record + 64 KiB, or a malformed stream, closes the connection
 * (reason lost, the parser's sentence in the detail); a MESSAGE whose body
 * is over max_record is dropped (rx_oversize). Reconnects use the STOMP
 * server-retry rule with retry_time_s = ServerRetryInitialInterval,
 * retry_multiplier = ServerRetryIntervalMultiplier and retry_max_s =
 * ServerRetryMaxInterval: attempt n waits a random time between 0 and
 * m * (k/1000)^(n-1) seconds (n capped at 10), at most retry_max_s. Costs
 * per connection: one file descriptor; memory, see
 * tests/integration/test-stomp-mtp.sh. stomps:// runs TLS
 * (lib/tls_stream.c) under the frames: the broker's certificate is checked
 * against tls.ca_file and the URL's host, our own certificate is sent. */
extern const struct usp_mtp_ops usp_mtp_stomp_ops;

/* A destination for an endpoint on a broker such as RabbitMQ, where
 * "/queue/NAME" makes a queue on first use and NAME may not hold '/':
 * "/queue/usp.agent.<eid>" or "/queue/usp.controller.<eid>", with every '/'
 * of the Endpoint ID written "%2F" and every '%' "%25" (so that distinct IDs
 * never share a queue); ':' is kept (the binding escapes it as \c on the
 * wire, RabbitMQ accepts it). Writes it to `buf` (always terminated when
 * n > 0). 0; USP_EINVAL for an empty Endpoint ID or one with control
 * characters; USP_ERANGE when the queue name would pass RabbitMQ's 255
 * bytes or `buf` is too small. */
int usp_mtp_stomp_dest(enum usp_mtp_role role, const char *eid, char *buf, size_t n);

#endif
