/* What MTP bindings share: the per-loop context (a timer wheel, "later from
 * the loop" work, the connect-slot limit, stats, logging), back-off, state
 * reporting, and the MQTT 3.1.1 reply-to topic convention. */
#ifndef USP_MTP_INT_H
#define USP_MTP_INT_H

#include <stdarg.h>

#include "usp/mtp.h"
#include "usp/timerwheel.h"
#include "usp/tls.h"

/* Timers: every deadline of a connection (retry, connect timeout,
 * keepalive, close timeout) is one struct usp_tw_entry on the worker's
 * timing wheel (usp/timerwheel.h), so a fleet costs no uv_timer_t per
 * connection and advancing touches only what is due. A connection waiting
 * for a connect slot sits on the context's FIFO of waiters. */
struct mtp_waiter {
    struct mtp_waiter *next, **pprev; /* pprev NULL: not waiting */
    struct usp_tw_entry *entry;       /* fired from the loop when a slot frees */
};

struct usp_mtp_ctx {
    uv_loop_t *loop;
    struct usp_tw *tw;       /* the caller's wheel, or own_tw's; NULL once freeing */
    struct usp_tw_uv own_tw; /* used when the caller gives no wheel */
    /* Closes own_tw from the loop: usp_mtp_ctx_free may run inside one of
     * the wheel's own callbacks, where the wheel cannot go. */
    uv_idle_t reaper;
    bool owns_tw, own_tw_open, reaper_open;
    struct mtp_waiter *waiters, **waiters_tail;
    uint32_t connecting, max_connecting;
    uint64_t rng;
    struct usp_mtp_stats stats;
    usp_mtp_log_cb log;
    void *log_user;
    enum usp_mtp_log_level log_level;
    struct mtp_tls_cache *tls_cache; /* SSL_CTXs made so far, see mtp__tls_ctx */
    uint32_t conns; /* connections not yet released */
    bool freeing;   /* usp_mtp_ctx_free was called */
};

/* Arms `e` to run `fn` after `delay_ms` on the wheel (0: from the loop, not
 * from inside this call). Re-arming moves it. Nothing once the context is
 * being freed. */
void mtp__timer_arm(struct usp_mtp_ctx *ctx, struct usp_tw_entry *e, uint64_t delay_ms,
                    usp_tw_cb fn);
void mtp__timer_cancel(struct usp_mtp_ctx *ctx, struct usp_tw_entry *e);

/* Takes a connect slot (true), or queues `w` so that `e` runs `fn` from the
 * loop when one frees (false; `fn` must call this again).
 * mtp__connect_slot_give returns a slot; mtp__connect_wait_cancel leaves the
 * queue. */
bool mtp__connect_slot_take(struct usp_mtp_ctx *ctx, struct mtp_waiter *w, struct usp_tw_entry *e,
                            usp_tw_cb fn);
void mtp__connect_slot_give(struct usp_mtp_ctx *ctx);
void mtp__connect_wait_cancel(struct usp_mtp_ctx *ctx, struct mtp_waiter *w);

/* Connections count against the context until released (after their last
 * handle closed), so that usp_mtp_ctx_free can finish after them. */
void mtp__conn_hold(struct usp_mtp_ctx *ctx);
void mtp__conn_release(struct usp_mtp_ctx *ctx);

uint64_t mtp__rand(struct usp_mtp_ctx *ctx);
/* The wait before retry number `n` (1 = first) [R-MQTT.10/33, TR-181
 * MQTT.Client ConnectRetryTime]: a random value between
 * m*(k/1000)^(n-1) and m*(k/1000)^n seconds, n capped at 10, the result
 * capped at max_s. In milliseconds. */
uint32_t mtp__retry_delay_ms(struct usp_mtp_ctx *ctx, uint32_t m, uint32_t k, uint32_t max_s,
                             uint32_t n);

void mtp__log(struct usp_mtp_ctx *ctx, enum usp_mtp_log_level level, const char *eid,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Sets c->state and reports it (when the callback is set). */
void mtp__emit_state(struct usp_mtp_conn *c, enum usp_mtp_state state, enum usp_mtp_reason reason,
                     int code, uint32_t attempt, uint32_t retry_ms, const char *detail);

/* Counts on the connection and on its context. */
#define MTP_STAT(c, field, n)                                                                      \
    do {                                                                                           \
        (c)->stats.field += (n);                                                                   \
        (c)->ctx->stats.field += (n);                                                              \
    } while (0)

/* Checks what every binding needs from a configuration (Endpoint ID,
 * back-off, keepalive and size ranges). 0 or USP_EINVAL with `why`. */
int mtp__config_check(const struct usp_mtp_config *cfg, char *why, size_t whylen);
int mtp__fail(char *why, size_t whylen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* MQTT 3.1.1 reply-to convention [R-MQTT.24/25]: the PUBLISH Topic Name is
 * `dest` + "/reply-to=" + the reply topic with every "/" written "%2F".
 * Writes it to `buf` and returns its length, or the length it needs when
 * that is >= n (like snprintf). */
size_t mtp__mqtt311_topic_build(const char *dest, const char *reply, char *buf, size_t n);
/* Splits a received Topic Name at the last "/reply-to=": *dest_len is the
 * length before it, `reply` (at least strlen(topic) + 1 bytes) gets the text
 * after it with "%2F" (either case) turned back into "/". true when a
 * non-empty reply-to was found; otherwise *dest_len is strlen(topic). */
bool mtp__mqtt311_topic_split(const char *topic, size_t *dest_len, char *reply);

/* ---- TLS (mtp_tls.c) ------------------------------------------------------ */

struct mtp_tls_cache;

/* Whether `cfg` asks for TLS on URL `u`: the scheme says so, or unix: with
 * cfg->tls.uds. */
bool mtp__tls_wanted(const struct usp_mtp_config *cfg, const struct usp_mtp_url *u);
/* Checks the TLS settings when TLS is wanted (CA, certificate and key
 * given). 0 or USP_EINVAL with `why`. */
int mtp__tls_config_check(const struct usp_mtp_config *cfg, const struct usp_mtp_url *u, char *why,
                          size_t whylen);
/* An SSL_CTX (usp_tls_ctx_new) for `role`, made once per context and set
 * of arguments and kept until usp_mtp_ctx_free: borrowed, do not free it
 * (an SSL made from it holds its own reference). cert_file and key_file
 * may be NULL for a context without a certificate of its own (then give
 * one per SSL with usp_tls_use_files); `flags` as usp_tls_ctx_new. 0, or
 * usp_tls_ctx_new's errors with `why`. */
int mtp__tls_ctx(struct usp_mtp_ctx *ctx, enum usp_tls_role role, unsigned flags,
                 const char *ca_file, const char *cert_file, const char *key_file, SSL_CTX **out,
                 char *why, size_t whylen);
/* Frees the cache (usp_mtp_ctx_free). */
void mtp__tls_cache_free(struct usp_mtp_ctx *ctx);

/* Bytes of an MQTT connection object, for reports (its configuration
 * strings follow it in the same allocation). In mtp_mqtt.c. */
size_t mtp__mqtt_conn_size(void);

/* ---- WebSocket handshake helpers (mtp_ws_util.c; no libwebsockets) ------- */

/* The subprotocol of the WebSocket binding [R-WS.9-12]. */
#define MTP_WS_PROTOCOL "v1.usp"
/* Longest peer Endpoint ID a listener accepts from a request. */
#define MTP_WS_EID_MAX 255

/* The request-target of a WebSocket client: `path` ("" is "/"), `query`
 * (may be NULL or "") and the "eid" parameter [R-WS.10b] with `eid`
 * percent-encoded wherever a query value needs it: "%" always as "%25"
 * [R-WS.10c], and "&", "+", "#", "=" and everything outside RFC 3986 query
 * characters as "%HH". Writes it to `buf` and returns its length, or the
 * length it needs when that is >= n (like snprintf). */
size_t mtp__ws_target(const char *path, const char *query, const char *eid, char *buf, size_t n);
/* Whether a query (without "?") already has an "eid" parameter. */
bool mtp__ws_query_has_eid(const char *query);
/* Whether the comma-separated list of a Sec-WebSocket-Protocol header
 * names `proto` (tokens compared exactly; spaces and tabs around commas
 * are ignored). NULL: false. */
bool mtp__ws_protocol_listed(const char *list, const char *proto);
/* The "eid" parameter of the bbf-usp-protocol extension in a
 * Sec-WebSocket-Extensions value (RFC 6455 9.1 grammar, quoted-string or
 * token) [R-WS.10a/11a]: 0 with the value in `out`; USP_ENOENT when there
 * is none; USP_EINVAL when that extension is malformed; USP_ERANGE when
 * the value needs more than n - 1 bytes. `out` is always terminated, and
 * empty unless 0 is returned. */
int mtp__ws_ext_eid(const char *hdr, char *out, size_t n);
/* The extension value `bbf-usp-protocol; eid="<eid>"` with '"' and '\'
 * escaped: written to `buf`, returns the length (or the length needed when
 * >= n, like snprintf). */
size_t mtp__ws_ext_value(const char *eid, char *buf, size_t n);
/* Percent-decodes s into out (n bytes, terminated): 0, USP_EINVAL for a
 * bad escape or %00, USP_ERANGE when it does not fit. */
int mtp__ws_pct_decode(const char *s, char *out, size_t n);
/* Whether an Endpoint ID received from a peer is acceptable text: 1 to
 * MTP_WS_EID_MAX bytes, no control characters. */
bool mtp__ws_peer_eid_ok(const char *eid);

/* Bytes of a WebSocket connection object, for reports (its configuration
 * strings follow it in the same allocation). In mtp_ws.c. */
size_t mtp__ws_conn_size(void);

/* Picks the address for connection attempt `attempt` from a resolver
 * result (IPv4 and IPv6 only, in turn, so a dead address costs one retry,
 * not all) and writes it as text into buf. false when there is none. */
bool mtp__pick_addr(const struct addrinfo *res, uint32_t attempt, char *buf, size_t len);

#endif
