/* The CoAP binding (TR-369 1.0-1.2 "CoAP Binding", R-COAP.*; obsoleted in
 * USP 1.3, kept to reproduce older deployments, see usp/mtp_coap.h) on
 * libcoap 4.3 with OpenSSL, driven by the context's libuv loop.
 *
 * Local servers: every (scheme, numeric address, port) an endpoint serves
 * on is one struct coap_srv with a libcoap context of its own (its DTLS
 * server certificate is per context), one endpoint (the UDP socket) and
 * one resource "/e/<eid>" per Endpoint ID served there. libcoap is built
 * with epoll: the context's epoll descriptor, which also holds libcoap's
 * timerfd for retransmissions, is watched with a uv_poll_t, and each time
 * it is readable coap_io_process(COAP_IO_NO_WAIT) runs. A send from an API
 * call asks for a pass from the loop too (a wheel entry at 0 ms), so that
 * libcoap arms its timer.
 *
 * Connections: an outgoing or accepted association holds a libcoap client
 * session to the peer's server in the context of its own local server
 * (one certificate per endpoint serves both directions), so records
 * arriving at that server from the peer are matched to it by the pair own
 * Endpoint ID / peer Endpoint ID (from the reply-to).
 *
 * Re-entrancy: libcoap calls the handlers from coap_io_process; nothing a
 * handler reaches may be freed under libcoap's feet. So while a server is
 * inside libcoap (in_io), releasing a client session, deleting a resource
 * or freeing the server itself is deferred to the end of that pass. State
 * changes found in handlers (lost: a NACK, a DTLS failure) are settled
 * from the connection's wheel entry; records are delivered from the
 * request handler (already on the loop). A connection freed inside one of
 * its callbacks is finished by the outermost frame (busy/dead). */
#include <arpa/inet.h>
#include <coap3/coap.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/mtp_coap.h"

#define EID_MAX 255

struct coap_srv;
struct cp_conn;
struct cp_listener;

/* A numeric peer or local address (smaller than a sockaddr_storage). */
union cp_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* One USP endpoint resource on a server. */
struct coap_res {
    struct coap_res *next;
    struct coap_srv *srv;
    coap_resource_t *r; /* NULL once deleted */
    struct cp_listener *lis;
    char *eid, *path, *url; /* own Endpoint ID, "/e/...", the server URI (reply-to) */
    uint32_t refs;
    uint32_t max_record; /* the listener's, else the largest of its connections */
};

struct coap_srv {
    struct coap_srv *next; /* in the registry */
    struct usp_mtp_ctx *ctx;
    coap_context_t *cc;
    uv_poll_t poll;
    struct usp_tw_entry kick;
    struct coap_res *res;
    struct cp_conn *conns;
    coap_session_t **grave; /* client sessions to release after the pass */
    size_t ngrave, capgrave;
    char *ca, *cert, *key; /* coaps: the files of the DTLS server */
    unsigned tls_flags;
    uint32_t refs; /* listeners and connections attached */
    int in_io;
    uint16_t port;
    bool tls;
    char host[INET6_ADDRSTRLEN];
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct coap_srv *registry;

/* What a connection or a listener keeps of its configuration; strings
 * follow the object in the same allocation. */
struct cp_cfg {
    const char *eid, *local_url, *usp_version, *ca, *cert, *key;
    uint32_t max_record, close_timeout_ms, retry_time_s, retry_mult, retry_max_s;
    uint32_t ack_timeout_ms, max_retransmit;
    unsigned tls_flags;
    uint8_t role;
    bool tls;
};

enum phase {
    P_IDLE,
    P_OPENING, /* the first attempt is due from the loop */
    P_UP,
    P_RETRY,
    P_CLOSING, /* waiting for answers to what is in flight */
    P_CLOSED,
};

struct cp_conn {
    struct usp_mtp_conn base;
    struct cp_conn *next, **pprev;  /* in srv->conns */
    struct cp_conn *lnext, **lprev; /* accepted: in the listener's list */
    struct coap_srv *srv;
    struct coap_res *res;
    struct cp_listener *lis;
    coap_session_t *session;
    coap_optlist_t *opts; /* Uri-Path, Content-Format, Uri-Query of every POST */
    struct usp_tls_ids *ids;
    struct usp_tw_entry timer;
    struct cp_cfg cfg;
    const char *peer_url, *peer_eid;
    union cp_addr peer_addr;
    uint32_t attempt, inflight;
    int lost_code;
    uint8_t phase, lost_reason, busy;
    bool accepted, lost, closing, dead, was_up;
};

struct cp_listener {
    struct usp_mtp_listener base;
    struct coap_srv *srv;
    struct coap_res *res;
    struct cp_conn *sessions;
    struct cp_cfg cfg;
};

#define CONN(c) ((struct cp_conn *)(c))

static void srv_unref(struct coap_srv *srv);
static void fire(struct usp_tw_entry *t, uint64_t now_ms);

/* ---- Strings ------------------------------------------------------------------ */

static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *scopy(char **pool, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = *pool;
    memcpy(d, s, n);
    *pool += n;
    return d;
}

static char *dup_str(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Size of the strings of a cp_cfg made from `cfg` with local URL `local`. */
static size_t cfg_strings(const struct usp_mtp_config *cfg, const char *local, bool tls)
{
    return slen(cfg->eid) + slen(local) +
           slen(cfg->usp_version ? cfg->usp_version : USP_MTP_COAP_VERSION_DEFAULT) +
           (tls ? slen(cfg->tls.ca_file) + slen(cfg->tls.cert_file) + slen(cfg->tls.key_file) : 0);
}

static void cfg_fill(struct cp_cfg *d, const struct usp_mtp_config *cfg, const char *local,
                     bool tls, char **pool)
{
    d->eid = scopy(pool, cfg->eid);
    d->local_url = scopy(pool, local);
    d->usp_version =
        scopy(pool, cfg->usp_version ? cfg->usp_version : USP_MTP_COAP_VERSION_DEFAULT);
    if (tls) {
        d->ca = scopy(pool, cfg->tls.ca_file);
        d->cert = scopy(pool, cfg->tls.cert_file);
        d->key = scopy(pool, cfg->tls.key_file);
    }
    d->max_record = cfg->max_record;
    d->close_timeout_ms = cfg->close_timeout_ms;
    d->retry_time_s = cfg->retry_time_s;
    d->retry_mult = cfg->retry_multiplier;
    d->retry_max_s = cfg->retry_max_s;
    d->ack_timeout_ms = cfg->coap.ack_timeout_ms;
    d->max_retransmit = cfg->coap.max_retransmit;
    d->tls_flags = cfg->tls.flags;
    d->role = (uint8_t)cfg->role;
    d->tls = tls;
}

static size_t cfg_copy_strings(const struct cp_cfg *c)
{
    return slen(c->eid) + slen(c->local_url) + slen(c->usp_version) + slen(c->ca) + slen(c->cert) +
           slen(c->key);
}

static void cfg_copy(struct cp_cfg *d, const struct cp_cfg *s, char **pool)
{
    *d = *s;
    d->eid = scopy(pool, s->eid);
    d->local_url = scopy(pool, s->local_url);
    d->usp_version = scopy(pool, s->usp_version);
    d->ca = scopy(pool, s->ca);
    d->cert = scopy(pool, s->cert);
    d->key = scopy(pool, s->key);
}

/* ---- URLs ------------------------------------------------------------------------ */

/* A numeric host and port as a socket address. */
static bool url_addr(const struct usp_mtp_url *u, union cp_addr *ss)
{
    memset(ss, 0, sizeof *ss);
    if (u->host_kind == USP_MTP_HOST_IPV4) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(u->port);
        return inet_pton(AF_INET, u->host, &a->sin_addr) == 1;
    }
    if (u->host_kind == USP_MTP_HOST_IPV6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(u->port);
        return inet_pton(AF_INET6, u->host, &a->sin6_addr) == 1;
    }
    return false;
}

static void to_coap_addr(const union cp_addr *ss, coap_address_t *a)
{
    coap_address_init(a);
    if (ss->sa.sa_family == AF_INET6) {
        a->size = sizeof(struct sockaddr_in6);
        memcpy(&a->addr.sin6, ss, sizeof(struct sockaddr_in6));
    } else {
        a->size = sizeof(struct sockaddr_in);
        memcpy(&a->addr.sin, ss, sizeof(struct sockaddr_in));
    }
}

/* Checks an own server URL (local_url or a listener's) for `eid` and writes
 * its canonical form (path "/e/<eid>") to `out`. */
static int local_url_check(const char *url, const char *eid, const char *what,
                           struct usp_mtp_url *u, char *out, size_t outlen, char *why,
                           size_t whylen)
{
    char uwhy[160];
    if (usp_mtp_url_parse(url, u, uwhy, sizeof uwhy))
        return mtp__fail(why, whylen, USP_EINVAL, "bad %s: %s", what, uwhy);
    if (strcmp(u->binding, "coap") != 0)
        return mtp__fail(why, whylen, USP_EINVAL, "the %s must be a coap:// or coaps:// URL", what);
    if (u->host_kind != USP_MTP_HOST_IPV4 && u->host_kind != USP_MTP_HOST_IPV6)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the %s needs a numeric address to bind, not \"%s\"", what, u->host);
    if (u->has_user || u->has_query)
        return mtp__fail(why, whylen, USP_EINVAL, "the %s takes no user name and no query", what);
    char path[USP_MTP_PATH_MAX + 1];
    size_t n = usp_mtp_coap_resource_path(eid, path, sizeof path);
    if (n >= sizeof path)
        return mtp__fail(why, whylen, USP_EINVAL, "the Endpoint ID is too long for a path");
    if (u->path[0] && !(u->path[0] == '/' && u->path[1] == '\0')) {
        char in_path[EID_MAX + 1];
        if (usp_mtp_coap_url_eid(u, in_path, sizeof in_path) != 0 || strcmp(in_path, eid) != 0)
            return mtp__fail(why, whylen, USP_EINVAL,
                             "the %s's path must be \"%s\" (the USP endpoint resource of "
                             "Endpoint ID \"%s\"), not \"%.64s\"",
                             what, path, eid, u->path);
    }
    memcpy(u->path, path, n + 1);
    if (usp_mtp_url_format(u, false, out, outlen) != 0)
        return mtp__fail(why, whylen, USP_EINVAL, "the %s is too long", what);
    return 0;
}

/* ---- TLS ------------------------------------------------------------------------- */

static int on_tls_setup(void *tls_session, coap_dtls_pki_t *setup)
{
    SSL *ssl = tls_session;
    /* DTLS 1.2 or newer, and the peer must show a certificate [R-MTP.1]. */
    if (!SSL_set_min_proto_version(ssl, DTLS1_2_VERSION))
        return 0;
    SSL_set_verify(ssl,
                   SSL_get_verify_mode(ssl) | SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                   SSL_get_verify_callback(ssl));
    return 1;
}

static int on_cn(const char *cn, const uint8_t *cert, size_t len, coap_session_t *s, unsigned depth,
                 int validated, void *arg)
{
    return validated ? 1 : 0;
}

static void pki_fill(coap_dtls_pki_t *p, const char *ca, const char *cert, const char *key,
                     unsigned flags)
{
    memset(p, 0, sizeof *p);
    p->version = COAP_DTLS_PKI_SETUP_VERSION;
    p->verify_peer_cert = 1;
    p->check_common_ca = 1;
    p->allow_self_signed = 0;
    p->allow_expired_certs = (flags & USP_TLS_NO_TIME_CHECK) != 0;
    p->cert_chain_validation = 1;
    p->cert_chain_verify_depth = 4;
    p->validate_cn_call_back = on_cn;
    p->additional_tls_setup_call_back = on_tls_setup;
    p->pki_key.key_type = COAP_PKI_KEY_PEM;
    p->pki_key.key.pem.ca_file = ca;
    p->pki_key.key.pem.public_cert = cert;
    p->pki_key.key.pem.private_key = key;
}

static struct usp_tls_ids *session_ids(coap_session_t *s, char *why, size_t whylen)
{
    coap_tls_library_t lib;
    SSL *ssl = coap_session_get_tls(s, &lib);
    struct usp_tls_ids *ids = NULL;
    if (!ssl || lib != COAP_TLS_LIBRARY_OPENSSL) {
        snprintf(why, whylen, "no DTLS session");
        return NULL;
    }
    if (usp_tls_ids_from_ssl(ssl, &ids, why, whylen) != 0)
        return NULL;
    return ids;
}

/* ---- Servers ------------------------------------------------------------------------- */

static void srv_release_session(struct coap_srv *srv, coap_session_t *s)
{
    if (!s)
        return;
    coap_session_set_app_data(s, NULL);
    if (srv->in_io) {
        if (srv->ngrave == srv->capgrave) {
            size_t n = srv->capgrave ? srv->capgrave * 2 : 8;
            coap_session_t **g = realloc(srv->grave, n * sizeof *g);
            if (!g)
                return; /* leaked until the context goes: better than a use after free */
            srv->grave = g;
            srv->capgrave = n;
        }
        srv->grave[srv->ngrave++] = s;
        return;
    }
    coap_session_release(s);
}

static void res_delete(struct coap_res *res)
{
    if (res->r)
        coap_delete_resource(res->srv->cc, res->r);
    free(res->eid);
    free(res->path);
    free(res->url);
    free(res);
}

static void on_srv_closed(uv_handle_t *h)
{
    struct coap_srv *srv = h->data;
    struct usp_mtp_ctx *ctx = srv->ctx;
    free(srv->ca);
    free(srv->cert);
    free(srv->key);
    free(srv->grave);
    free(srv);
    mtp__conn_release(ctx);
}

static void srv_destroy(struct coap_srv *srv)
{
    pthread_mutex_lock(&registry_lock);
    for (struct coap_srv **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == srv) {
            *pp = srv->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    for (size_t i = 0; i < srv->ngrave; i++)
        coap_session_release(srv->grave[i]);
    srv->ngrave = 0;
    while (srv->res) {
        struct coap_res *r = srv->res;
        srv->res = r->next;
        res_delete(r);
    }
    mtp__timer_cancel(srv->ctx, &srv->kick);
    uv_poll_stop(&srv->poll);
    coap_free_context(srv->cc);
    srv->cc = NULL;
    uv_close((uv_handle_t *)&srv->poll, on_srv_closed);
}

/* After a pass through libcoap: what was deferred. */
static void srv_after_io(struct coap_srv *srv)
{
    if (srv->in_io)
        return;
    for (size_t i = 0; i < srv->ngrave; i++)
        coap_session_release(srv->grave[i]);
    srv->ngrave = 0;
    for (struct coap_res **pp = &srv->res; *pp;) {
        struct coap_res *r = *pp;
        if (r->refs == 0) {
            *pp = r->next;
            res_delete(r);
        } else {
            pp = &r->next;
        }
    }
    if (srv->refs == 0)
        srv_destroy(srv);
}

static void srv_pass(struct coap_srv *srv)
{
    srv->in_io++;
    coap_io_process(srv->cc, COAP_IO_NO_WAIT);
    srv->in_io--;
    srv_after_io(srv);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    srv_pass(h->data);
}

static void fire_kick(struct usp_tw_entry *t, uint64_t now_ms)
{
    srv_pass((struct coap_srv *)((char *)t - offsetof(struct coap_srv, kick)));
}

static void srv_kick(struct coap_srv *srv)
{
    mtp__timer_arm(srv->ctx, &srv->kick, 0, fire_kick);
}

static void srv_unref(struct coap_srv *srv)
{
    if (--srv->refs == 0 && !srv->in_io)
        srv_destroy(srv);
}

static void res_unref(struct coap_res *res)
{
    if (--res->refs > 0)
        return;
    struct coap_srv *srv = res->srv;
    if (srv->in_io)
        return; /* deleted after the pass */
    for (struct coap_res **pp = &srv->res; *pp; pp = &(*pp)->next) {
        if (*pp == res) {
            *pp = res->next;
            break;
        }
    }
    res_delete(res);
}

static void on_post(coap_resource_t *r, coap_session_t *s, const coap_pdu_t *req,
                    const coap_string_t *query, coap_pdu_t *resp);
static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
                                   const coap_pdu_t *recv, const coap_mid_t mid);
static void on_nack(coap_session_t *s, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid);
static int on_event(coap_session_t *s, const coap_event_t ev);

static bool srv_matches(const struct coap_srv *srv, struct usp_mtp_ctx *ctx,
                        const struct usp_mtp_url *u)
{
    /* One still being released after a pass is taken back: its socket is
     * still bound. */
    return srv->ctx == ctx && srv->tls == u->tls && srv->port == u->port &&
           strcmp(srv->host, u->host) == 0;
}

/* The server for `u` (a checked local URL) in `ctx`, made and bound when
 * there is none; a reference is taken. */
static int srv_get(struct usp_mtp_ctx *ctx, const struct usp_mtp_url *u, const struct cp_cfg *cfg,
                   struct coap_srv **out, char *why, size_t whylen)
{
    *out = NULL;
    pthread_mutex_lock(&registry_lock);
    struct coap_srv *srv = registry;
    while (srv && !srv_matches(srv, ctx, u))
        srv = srv->next;
    pthread_mutex_unlock(&registry_lock);
    if (srv) {
        if (srv->tls && (!same_str(srv->ca, cfg->ca) || !same_str(srv->cert, cfg->cert) ||
                         !same_str(srv->key, cfg->key) || srv->tls_flags != cfg->tls_flags))
            return mtp__fail(why, whylen, USP_EINVAL,
                             "coaps://%s:%u is already served with other certificate files "
                             "(one DTLS server context per address and port)",
                             u->host, u->port);
        srv->refs++;
        *out = srv;
        return 0;
    }
    union cp_addr ss;
    if (!url_addr(u, &ss))
        return mtp__fail(why, whylen, USP_EINVAL, "\"%s\" is not a numeric address", u->host);
    srv = calloc(1, sizeof *srv);
    if (!srv)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    srv->ctx = ctx;
    srv->tls = u->tls;
    srv->port = u->port;
    snprintf(srv->host, sizeof srv->host, "%.45s", u->host); /* numeric */
    int rc = USP_EIO;
    srv->cc = coap_new_context(NULL);
    if (!srv->cc) {
        rc = mtp__fail(why, whylen, USP_ENOMEM, "libcoap cannot make a context");
        goto fail;
    }
    coap_set_app_data(srv->cc, srv);
    coap_context_set_block_mode(srv->cc, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(srv->cc, on_response);
    coap_register_nack_handler(srv->cc, on_nack);
    coap_register_event_handler(srv->cc, on_event);
    if (u->tls) {
        if (!coap_dtls_is_supported()) {
            rc = mtp__fail(why, whylen, USP_EPERM, "this libcoap has no DTLS support");
            goto fail;
        }
        srv->ca = dup_str(cfg->ca);
        srv->cert = dup_str(cfg->cert);
        srv->key = dup_str(cfg->key);
        srv->tls_flags = cfg->tls_flags;
        if (!srv->ca || !srv->cert || !srv->key) {
            rc = mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
            goto fail;
        }
        coap_dtls_pki_t pki;
        pki_fill(&pki, srv->ca, srv->cert, srv->key, srv->tls_flags);
        if (!coap_context_set_pki(srv->cc, &pki)) {
            rc = mtp__fail(why, whylen, USP_EIO,
                           "libcoap cannot load the DTLS certificate %s, key %s or CA %s",
                           srv->cert, srv->key, srv->ca);
            goto fail;
        }
    }
    coap_address_t addr;
    to_coap_addr(&ss, &addr);
    if (!coap_new_endpoint(srv->cc, &addr, u->tls ? COAP_PROTO_DTLS : COAP_PROTO_UDP)) {
        rc = mtp__fail(why, whylen, USP_EIO, "cannot bind UDP %s port %u (in use?)", u->host,
                       u->port);
        goto fail;
    }
    int fd = coap_context_get_coap_fd(srv->cc);
    if (fd < 0 || uv_poll_init(ctx->loop, &srv->poll, fd) != 0) {
        rc = mtp__fail(why, whylen, USP_EIO, "libcoap has no epoll descriptor to watch");
        goto fail;
    }
    srv->poll.data = srv;
    uv_poll_start(&srv->poll, UV_READABLE, on_poll);
    srv->refs = 1;
    mtp__conn_hold(ctx);
    pthread_mutex_lock(&registry_lock);
    srv->next = registry;
    registry = srv;
    pthread_mutex_unlock(&registry_lock);
    *out = srv;
    return 0;
fail:
    if (srv->cc)
        coap_free_context(srv->cc);
    free(srv->ca);
    free(srv->cert);
    free(srv->key);
    free(srv);
    return rc;
}

/* The resource for `eid` on `srv` (made when there is none); a reference
 * is taken. */
static int res_get(struct coap_srv *srv, const struct cp_cfg *cfg, const char *url,
                   struct coap_res **out, char *why, size_t whylen)
{
    *out = NULL;
    for (struct coap_res *r = srv->res; r; r = r->next) {
        if (strcmp(r->eid, cfg->eid) == 0) {
            /* also one waiting for deletion after a pass: libcoap keeps one
             * resource per path */
            if (r->refs++ == 0)
                r->max_record = 0;
            if (!r->lis && cfg->max_record > r->max_record)
                r->max_record = cfg->max_record;
            *out = r;
            return 0;
        }
    }
    struct coap_res *res = calloc(1, sizeof *res);
    if (!res)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char path[USP_MTP_PATH_MAX + 1];
    usp_mtp_coap_resource_path(cfg->eid, path, sizeof path);
    res->srv = srv;
    res->eid = dup_str(cfg->eid);
    res->path = dup_str(path);
    res->url = dup_str(url);
    res->max_record = cfg->max_record;
    /* libcoap matches the Uri-Path options joined with '/': "e/<eid>". */
    size_t elen = strlen(cfg->eid);
    char *rpath = malloc(elen + 3);
    coap_str_const_t *uri = NULL;
    if (rpath) {
        memcpy(rpath, "e/", 2);
        memcpy(rpath + 2, cfg->eid, elen + 1);
        uri = coap_new_str_const((const uint8_t *)rpath, elen + 2);
        free(rpath);
    }
    if (uri)
        res->r = coap_resource_init(uri, COAP_RESOURCE_FLAGS_RELEASE_URI);
    if (!res->eid || !res->path || !res->url || !res->r) {
        if (!res->r && uri)
            coap_delete_str_const(uri);
        free(res->eid);
        free(res->path);
        free(res->url);
        free(res);
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    }
    coap_resource_set_userdata(res->r, res);
    coap_register_handler(res->r, COAP_REQUEST_POST, on_post);
    coap_add_attr(res->r, coap_make_str_const("rt"), coap_make_str_const("\"" USP_MTP_COAP_RT "\""),
                  0);
    coap_add_attr(res->r, coap_make_str_const("if"),
                  coap_make_str_const(cfg->role == USP_MTP_AGENT ? "\"" USP_MTP_COAP_IF_AGENT "\""
                                                                 : "\"" USP_MTP_COAP_IF_CONTROLLER
                                                                   "\""),
                  0);
    coap_add_resource(srv->cc, res->r);
    res->refs = 1;
    res->next = srv->res;
    srv->res = res;
    *out = res;
    return 0;
}

/* ---- Connections ----------------------------------------------------------------------- */

static void enter(struct cp_conn *c)
{
    c->busy++;
}

static void finalize(struct cp_conn *c);

static void leave(struct cp_conn *c)
{
    if (--c->busy == 0 && c->dead)
        finalize(c);
}

static void unlink_conn(struct cp_conn *c)
{
    if (c->pprev) {
        *c->pprev = c->next;
        if (c->next)
            c->next->pprev = c->pprev;
        c->pprev = NULL;
        c->next = NULL;
    }
    if (c->lprev) {
        *c->lprev = c->lnext;
        if (c->lnext)
            c->lnext->lprev = c->lprev;
        c->lprev = NULL;
        c->lnext = NULL;
    }
    c->lis = NULL;
}

static void drop_session(struct cp_conn *c)
{
    if (c->session) {
        srv_release_session(c->srv, c->session);
        c->session = NULL;
    }
    usp_tls_ids_free(c->ids);
    c->ids = NULL;
    c->inflight = 0;
}

static void finalize(struct cp_conn *c)
{
    struct usp_mtp_ctx *ctx = c->base.ctx;
    mtp__timer_cancel(ctx, &c->timer);
    if (c->srv)
        drop_session(c);
    unlink_conn(c);
    if (c->opts)
        coap_delete_optlist(c->opts);
    if (c->res)
        res_unref(c->res);
    if (c->srv)
        srv_unref(c->srv);
    free(c);
    mtp__conn_release(ctx);
}

/* Remembers why the association failed; settled from the loop. */
static void lose(struct cp_conn *c, enum usp_mtp_reason r, int code)
{
    if (c->lost || c->phase == P_CLOSED)
        return;
    c->lost = true;
    c->lost_reason = (uint8_t)r;
    c->lost_code = code;
    mtp__timer_arm(c->base.ctx, &c->timer, 0, fire);
}

static const char *nack_text(int reason)
{
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        return "no acknowledgement after the retransmissions";
    case COAP_NACK_NOT_DELIVERABLE:
        return "not deliverable";
    case COAP_NACK_RST:
        return "the peer answered with a reset";
    case COAP_NACK_TLS_FAILED:
        return "the DTLS handshake failed";
    case COAP_NACK_ICMP_ISSUE:
        return "ICMP error";
    default:
        return "failed";
    }
}

static void describe(const struct cp_conn *c, enum usp_mtp_reason r, int code, char *buf, size_t n)
{
    switch (r) {
    case USP_MTP_R_CLOSED:
        snprintf(buf, n,
                 code == 1001 ? "closed with the listener"
                 : code == 1  ? "closed; answers still missing after close_timeout_ms"
                              : "closed");
        break;
    case USP_MTP_R_TIMEOUT:
    case USP_MTP_R_CONNECT:
        snprintf(buf, n, "CoAP peer %s: %s", c->peer_url, nack_text(code));
        break;
    case USP_MTP_R_REFUSED:
        snprintf(buf, n,
                 "CoAP peer %s: DTLS handshake failed or the certificate is not the "
                 "peer's",
                 c->peer_url);
        break;
    default:
        snprintf(buf, n, "CoAP peer %s: internal error (%d)", c->peer_url, code);
        break;
    }
}

static void emit_closed(struct cp_conn *c, enum usp_mtp_reason r, int code)
{
    char detail[200];
    describe(c, r, code, detail, sizeof detail);
    drop_session(c);
    c->phase = P_CLOSED;
    mtp__log(c->base.ctx, USP_MTP_LOG_INFO, c->cfg.eid, "CoAP %s: %s", c->peer_url, detail);
    mtp__emit_state(&c->base, USP_MTP_CLOSED, r, code, c->attempt, 0, detail);
}

static void teardown(struct cp_conn *c)
{
    struct usp_mtp_ctx *ctx = c->base.ctx;
    enum usp_mtp_reason r = c->lost_reason;
    int code = c->lost_code;
    c->lost = false;
    if (c->closing || c->accepted || r == USP_MTP_R_CLOSED) {
        if (c->phase == P_UP && r != USP_MTP_R_CLOSED)
            MTP_STAT(&c->base, drops, 1);
        emit_closed(c, r, code);
        return;
    }
    char detail[200];
    describe(c, r, code, detail, sizeof detail);
    if (c->phase == P_UP)
        MTP_STAT(&c->base, drops, 1);
    else
        MTP_STAT(&c->base, attempts_failed, 1);
    drop_session(c);
    c->attempt++;
    uint32_t delay = mtp__retry_delay_ms(ctx, c->cfg.retry_time_s, c->cfg.retry_mult,
                                         c->cfg.retry_max_s, c->attempt);
    c->phase = P_RETRY;
    mtp__timer_arm(ctx, &c->timer, delay, fire);
    mtp__log(ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP %s down: %s; retry %u in %u ms", c->peer_url,
             detail, c->attempt, delay);
    mtp__emit_state(&c->base, USP_MTP_DOWN, r, code, c->attempt, delay, detail);
}

static int make_session(struct cp_conn *c)
{
    coap_address_t a;
    to_coap_addr(&c->peer_addr, &a);
    coap_session_t *s;
    if (c->cfg.tls) {
        /* libcoap keeps these as the context's PKI setup (also for its
         * DTLS server): the server's own copies outlive every connection,
         * and they are the same files (srv_get). */
        coap_dtls_pki_t pki;
        pki_fill(&pki, c->srv->ca, c->srv->cert, c->srv->key, c->srv->tls_flags);
        s = coap_new_client_session_pki(c->srv->cc, NULL, &a, COAP_PROTO_DTLS, &pki);
    } else {
        s = coap_new_client_session(c->srv->cc, NULL, &a, COAP_PROTO_UDP);
    }
    if (!s)
        return USP_EIO;
    coap_session_set_app_data(s, c);
    uint32_t ack = c->cfg.ack_timeout_ms ? c->cfg.ack_timeout_ms : 2000;
    if (ack < 1000)
        ack = 1000; /* libcoap 4.3 ignores an ACK_TIMEOUT under one second */
    if (ack > 60000)
        ack = 60000;
    coap_fixed_point_t fp = {(uint16_t)(ack / 1000), (uint16_t)(ack % 1000)};
    coap_session_set_ack_timeout(s, fp);
    coap_session_set_max_retransmit(s, c->cfg.max_retransmit ? c->cfg.max_retransmit : 4);
    c->session = s;
    return 0;
}

/* Uri-Path of the peer's resource, Content-Format 42, reply-to. */
static int build_opts(struct cp_conn *c, const char *peer_path)
{
    uint8_t buf[USP_MTP_PATH_MAX + 64];
    size_t buflen = sizeof buf;
    while (*peer_path == '/') /* else the first Uri-Path option is empty */
        peer_path++;
    int n = coap_split_path((const uint8_t *)peer_path, strlen(peer_path), buf, &buflen);
    const uint8_t *p = buf;
    for (int i = 0; i < n; i++) {
        if (!coap_insert_optlist(&c->opts, coap_new_optlist(COAP_OPTION_URI_PATH,
                                                            coap_opt_length(p), coap_opt_value(p))))
            return USP_ENOMEM;
        p += coap_opt_size(p);
    }
    uint8_t fmt[4];
    if (!coap_insert_optlist(
            &c->opts,
            coap_new_optlist(COAP_OPTION_CONTENT_FORMAT,
                             coap_encode_var_safe(fmt, sizeof fmt, USP_MTP_COAP_FORMAT), fmt)))
        return USP_ENOMEM;
    size_t qn = usp_mtp_coap_reply_to_build(c->res->url, NULL, 0);
    char *q = malloc(qn + 1);
    if (!q)
        return USP_ENOMEM;
    usp_mtp_coap_reply_to_build(c->res->url, q, qn + 1);
    int ok =
        coap_insert_optlist(&c->opts, coap_new_optlist(COAP_OPTION_URI_QUERY, qn, (uint8_t *)q));
    free(q);
    return ok ? 0 : USP_ENOMEM;
}

/* Binds the local server (first time) and makes the client session. */
static void attempt(struct cp_conn *c)
{
    struct usp_mtp_ctx *ctx = c->base.ctx;
    char why[200] = "";
    if (!c->srv) {
        struct usp_mtp_url lu;
        char canon[USP_MTP_URL_MAX + 1];
        int rc = local_url_check(c->cfg.local_url, c->cfg.eid, "local URL", &lu, canon,
                                 sizeof canon, why, sizeof why);
        if (!rc)
            rc = srv_get(ctx, &lu, &c->cfg, &c->srv, why, sizeof why);
        if (!rc) {
            rc = res_get(c->srv, &c->cfg, canon, &c->res, why, sizeof why);
            if (rc) {
                srv_unref(c->srv);
                c->srv = NULL;
            }
        }
        if (rc) {
            mtp__log(ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP: %s", why);
            c->phase = P_OPENING;
            c->lost = true;
            c->lost_reason = USP_MTP_R_CONNECT;
            c->lost_code = 0;
            teardown(c);
            return;
        }
        c->next = c->srv->conns;
        if (c->next)
            c->next->pprev = &c->next;
        c->srv->conns = c;
        c->pprev = &c->srv->conns;
        struct usp_mtp_url pu;
        usp_mtp_url_parse(c->peer_url, &pu, NULL, 0);
        if (build_opts(c, pu.path) != 0) {
            c->lost = true;
            c->lost_reason = USP_MTP_R_INTERNAL;
            c->lost_code = USP_ENOMEM;
            teardown(c);
            return;
        }
    }
    if (make_session(c) != 0) {
        mtp__log(ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP: libcoap cannot make a session to %s",
                 c->peer_url);
        c->lost = true;
        c->lost_reason = USP_MTP_R_INTERNAL;
        c->lost_code = 0;
        teardown(c);
        return;
    }
    c->phase = P_UP;
    c->attempt = 0;
    c->was_up = true;
    MTP_STAT(&c->base, ups, 1);
    srv_kick(c->srv);
    mtp__log(ctx, USP_MTP_LOG_INFO, c->cfg.eid, "CoAP %s up (own server %s)", c->peer_url,
             c->res->url);
    mtp__emit_state(&c->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, NULL);
}

static void fire(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct cp_conn *c = (struct cp_conn *)((char *)t - offsetof(struct cp_conn, timer));
    enter(c);
    if (c->lost) {
        teardown(c);
    } else if (c->phase == P_OPENING || c->phase == P_RETRY) {
        attempt(c);
    } else if (c->phase == P_CLOSING) {
        emit_closed(c, USP_MTP_R_CLOSED, c->inflight ? 1 : 0);
    }
    leave(c);
}

static void release_copy(coap_session_t *s, void *p)
{
    free(p);
}

/* One confirmable POST with the record. */
static int post(struct cp_conn *c, const uint8_t *rec, size_t len)
{
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, c->session);
    if (!pdu)
        return USP_ENOMEM;
    uint8_t tok[8];
    size_t tl = 0;
    coap_session_new_token(c->session, &tl, tok);
    uint8_t *copy = malloc(len);
    if (!copy || !coap_add_token(pdu, tl, tok) || !coap_add_optlist_pdu(pdu, &c->opts)) {
        free(copy);
        coap_delete_pdu(pdu);
        return USP_ENOMEM;
    }
    memcpy(copy, rec, len);
    /* libcoap frees the copy through release_copy, also when this fails. */
    if (!coap_add_data_large_request(c->session, pdu, len, copy, release_copy, copy)) {
        coap_delete_pdu(pdu);
        return USP_EIO;
    }
    if (coap_send(c->session, pdu) == COAP_INVALID_MID)
        return USP_EIO;
    c->inflight++;
    srv_kick(c->srv);
    return 0;
}

static int send_record(struct cp_conn *c, const uint8_t *rec, size_t len)
{
    int rc = post(c, rec, len);
    if (rc) {
        MTP_STAT(&c->base, tx_failed, 1);
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP %s: cannot send a record: %s",
                 c->peer_url, usp_strerror(rc));
        return rc;
    }
    MTP_STAT(&c->base, tx_records, 1);
    MTP_STAT(&c->base, tx_bytes, len);
    return 0;
}

/* DisconnectRecord [R-MTP.7]. */
static void send_disconnect(struct cp_conn *c, uint32_t code, const char *reason)
{
    struct usp_arena *a = usp_arena_new(512);
    if (!a)
        return;
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__DisconnectRecord dc = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = (char *)c->cfg.usp_version;
    rec.to_id = (char *)c->peer_eid;
    rec.from_id = (char *)c->cfg.eid;
    dc.reason = (char *)(reason ? reason : "");
    dc.reason_code = code;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT;
    rec.disconnect = &dc;
    uint8_t *buf;
    size_t len;
    if (usp_record_encode(a, &rec, &buf, &len) == 0)
        (void)send_record(c, buf, len);
    usp_arena_free(a);
}

static int cp_open(struct usp_mtp_conn *base)
{
    struct cp_conn *c = CONN(base);
    if (c->phase != P_IDLE || c->accepted)
        return USP_EPERM;
    c->phase = P_OPENING;
    mtp__timer_arm(base->ctx, &c->timer, 0, fire);
    return 0;
}

static int cp_send(struct usp_mtp_conn *base, const struct usp_mtp_dest *to, const uint8_t *rec,
                   size_t len)
{
    struct cp_conn *c = CONN(base);
    if (c->phase != P_UP || c->closing || !c->session) {
        MTP_STAT(base, tx_refused, 1);
        return USP_EPERM;
    }
    if (len > c->cfg.max_record) {
        MTP_STAT(base, tx_oversize, 1);
        return USP_ERANGE;
    }
    if (len == 0 || !rec) {
        MTP_STAT(base, tx_refused, 1);
        return USP_EINVAL;
    }
    return send_record(c, rec, len);
}

static int cp_close(struct usp_mtp_conn *base, uint32_t code, const char *reason)
{
    struct cp_conn *c = CONN(base);
    if (c->closing || c->phase == P_CLOSED)
        return USP_EPERM;
    c->closing = true;
    c->lost = false;
    if (c->phase == P_UP && c->session && c->peer_eid)
        send_disconnect(c, code, reason);
    bool wait = c->phase == P_UP && c->inflight > 0;
    c->phase = P_CLOSING;
    mtp__timer_arm(base->ctx, &c->timer, wait ? c->cfg.close_timeout_ms : 0, fire);
    return 0;
}

static void cp_free(struct usp_mtp_conn *base)
{
    struct cp_conn *c = CONN(base);
    c->base.cb = NULL;
    mtp__timer_cancel(base->ctx, &c->timer);
    if (c->busy) {
        c->dead = true;
        return;
    }
    finalize(c);
}

static const char *cp_local_dest(const struct usp_mtp_conn *base)
{
    const struct cp_conn *c = (const struct cp_conn *)base;
    return c->phase == P_UP && c->res ? c->res->url : NULL;
}

static const char *cp_peer_eid(const struct usp_mtp_conn *base)
{
    return ((const struct cp_conn *)base)->peer_eid;
}

static const struct usp_tls_ids *cp_peer_ids(const struct usp_mtp_conn *base)
{
    const struct cp_conn *c = (const struct cp_conn *)base;
    return c->phase == P_UP || c->phase == P_CLOSING ? c->ids : NULL;
}

/* A connection object for `peer_url` (its checked, parsed form `pu`). */
static struct cp_conn *conn_alloc(const struct cp_cfg *cfg, const char *peer_url,
                                  const char *peer_eid, const union cp_addr *addr)
{
    size_t extra = cfg_copy_strings(cfg) + slen(peer_url) + slen(peer_eid);
    struct cp_conn *c = calloc(1, sizeof *c + extra);
    if (!c)
        return NULL;
    char *pool = (char *)(c + 1);
    cfg_copy(&c->cfg, cfg, &pool);
    c->peer_url = scopy(&pool, peer_url);
    c->peer_eid = scopy(&pool, peer_eid);
    c->peer_addr = *addr;
    return c;
}

/* A local URL for `cfg` when none is given: a listener's of the same
 * context for the same Endpoint ID and scheme. */
static const char *default_local(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                                 bool tls)
{
    const char *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (struct coap_srv *s = registry; s && !found; s = s->next) {
        if (s->ctx != ctx || s->tls != tls || s->refs == 0)
            continue;
        for (struct coap_res *r = s->res; r; r = r->next)
            if (r->lis && r->refs > 0 && strcmp(r->eid, cfg->eid) == 0)
                found = r->url;
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

static int cp_conn_new(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                       const struct usp_mtp_url *url, struct usp_mtp_conn **out, char *why,
                       size_t whylen)
{
    int rc = usp_mtp_coap_version_check(cfg->usp_version, why, whylen);
    if (rc)
        return rc;
    union cp_addr ss;
    if (!url_addr(url, &ss))
        return mtp__fail(why, whylen, USP_EPERM,
                         "the CoAP binding needs a numeric peer address, not \"%s\" (host "
                         "names are not resolved)",
                         url->host);
    if (url->has_user || url->has_query)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "a CoAP peer URL takes no user name and no query (the binding adds "
                         "reply-to)");
    char peer_eid[EID_MAX + 1];
    if (usp_mtp_coap_url_eid(url, peer_eid, sizeof peer_eid) != 0) {
        if (!cfg->peer_eid)
            return mtp__fail(why, whylen, USP_EINVAL,
                             "the peer URL's path must be the USP endpoint resource "
                             "\"/e/<peer Endpoint ID>\", not \"%.64s\"",
                             url->path);
        snprintf(peer_eid, sizeof peer_eid, "%s", cfg->peer_eid);
    }
    if (cfg->peer_eid && strcmp(cfg->peer_eid, peer_eid) != 0)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "peer_eid \"%.64s\" differs from the Endpoint ID \"%.64s\" in the URL",
                         cfg->peer_eid, peer_eid);
    const char *local =
        cfg->coap.local_url ? cfg->coap.local_url : default_local(ctx, cfg, url->tls);
    if (!local)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "cfg->coap.local_url (own CoAP server, sent as reply-to) is missing and "
                         "no listener of this context serves \"%.64s\" over %s",
                         cfg->eid, url->scheme);
    struct usp_mtp_url lu;
    char canon[USP_MTP_URL_MAX + 1];
    if ((rc = local_url_check(local, cfg->eid, "local URL", &lu, canon, sizeof canon, why, whylen)))
        return rc;
    if (lu.tls != url->tls)
        return mtp__fail(why, whylen, USP_EINVAL,
                         "the local URL and the peer URL must both be coap:// or both coaps://");
    char peer_url[USP_MTP_URL_MAX + 1];
    if (usp_mtp_url_format(url, false, peer_url, sizeof peer_url) != 0)
        return mtp__fail(why, whylen, USP_EINVAL, "the peer URL is too long");

    struct cp_cfg tmp;
    char *pool0 = malloc(cfg_strings(cfg, canon, url->tls) + 1);
    if (!pool0)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char *pool = pool0;
    memset(&tmp, 0, sizeof tmp);
    cfg_fill(&tmp, cfg, canon, url->tls, &pool);
    struct cp_conn *c = conn_alloc(&tmp, peer_url, peer_eid, &ss);
    free(pool0);
    if (!c)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    mtp__conn_hold(ctx);
    c->base.ctx = ctx;
    c->phase = P_IDLE;
    *out = &c->base;
    return 0;
}

/* ---- libcoap handlers ---------------------------------------------------------------- */

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
                                   const coap_pdu_t *recv, const coap_mid_t mid)
{
    struct cp_conn *c = coap_session_get_app_data(s);
    if (!c || c->dead)
        return COAP_RESPONSE_OK;
    coap_pdu_code_t code = coap_pdu_get_code(recv);
    int cls = COAP_RESPONSE_CLASS(code);
    if (cls < 2) /* an empty ACK: the answer follows */
        return COAP_RESPONSE_OK;
    if (c->inflight)
        c->inflight--;
    if (cls != 2) {
        MTP_STAT(&c->base, tx_failed, 1);
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP %s refused a record: %d.%02d",
                 c->peer_url, cls, code & 0x1f);
    }
    if (c->phase == P_CLOSING && c->inflight == 0)
        mtp__timer_arm(c->base.ctx, &c->timer, 0, fire);
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid)
{
    struct cp_conn *c = coap_session_get_app_data(s);
    if (!c || c->dead)
        return;
    if (c->inflight)
        c->inflight--;
    MTP_STAT(&c->base, tx_failed, 1);
    mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP %s: a record failed: %s", c->peer_url,
             nack_text(reason));
    if (c->phase == P_CLOSING) {
        if (c->inflight == 0)
            mtp__timer_arm(c->base.ctx, &c->timer, 0, fire);
        return;
    }
    enum usp_mtp_reason r = reason == COAP_NACK_TOO_MANY_RETRIES ? USP_MTP_R_TIMEOUT
                            : reason == COAP_NACK_TLS_FAILED     ? USP_MTP_R_REFUSED
                                                                 : USP_MTP_R_CONNECT;
    lose(c, r, (int)reason);
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
    struct cp_conn *c = coap_session_get_app_data(s);
    if (!c || c->dead || c->session != s)
        return 0;
    if (ev == COAP_EVENT_DTLS_CONNECTED) {
        char why[200];
        struct usp_tls_ids *ids = session_ids(s, why, sizeof why);
        if (!ids) {
            mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->cfg.eid,
                     "CoAP %s: no Endpoint ID in the peer's certificate: %s", c->peer_url, why);
            lose(c, USP_MTP_R_REFUSED, 0);
            return 0;
        }
        if (usp_tls_ids_match(ids, c->peer_eid, why, sizeof why) != 0) {
            mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->cfg.eid,
                     "CoAP %s: the peer's certificate is not for %s: %s", c->peer_url, c->peer_eid,
                     why);
            usp_tls_ids_free(ids);
            lose(c, USP_MTP_R_REFUSED, 0);
            return 0;
        }
        usp_tls_ids_free(c->ids);
        c->ids = ids;
    } else if (ev == COAP_EVENT_DTLS_ERROR) {
        coap_tls_library_t lib;
        SSL *ssl = coap_session_get_tls(s, &lib);
        mtp__log(c->base.ctx, USP_MTP_LOG_WARN, c->cfg.eid, "CoAP %s: DTLS handshake failed: %s",
                 c->peer_url,
                 ssl && lib == COAP_TLS_LIBRARY_OPENSSL ? usp_tls_verify_text(ssl) : "?");
        MTP_STAT(&c->base, tx_failed, c->inflight);
        c->inflight = 0;
        lose(c, USP_MTP_R_REFUSED, 0);
    }
    return 0;
}

static void answer(coap_pdu_t *resp, int code)
{
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE(code));
}

static void addr_text(coap_session_t *s, char *buf, size_t n)
{
    const coap_address_t *a = coap_session_get_addr_remote(s);
    buf[0] = '\0';
    if (!a)
        return;
    if (a->addr.sa.sa_family == AF_INET)
        uv_ip4_name(&a->addr.sin, buf, n);
    else if (a->addr.sa.sa_family == AF_INET6)
        uv_ip6_name(&a->addr.sin6, buf, n);
}

static struct cp_conn *find_conn(struct coap_srv *srv, const char *own, const char *peer)
{
    for (struct cp_conn *c = srv->conns; c; c = c->next)
        if (!c->dead && (c->phase == P_UP || c->phase == P_RETRY || c->phase == P_CLOSING) &&
            strcmp(c->cfg.eid, own) == 0 && strcmp(c->peer_eid, peer) == 0)
            return c;
    return NULL;
}

/* A new accepted connection for a peer that POSTed to the listener's
 * resource; NULL when refused (the answer is set). */
static struct cp_conn *accept_peer(struct coap_res *res, coap_session_t *s, const char *reply,
                                   const char *peer_eid, const union cp_addr *addr,
                                   struct usp_tls_ids **ids, coap_pdu_t *resp)
{
    struct cp_listener *l = res->lis;
    struct usp_mtp_ctx *ctx = res->srv->ctx;
    char where[INET6_ADDRSTRLEN] = "";
    addr_text(s, where, sizeof where);
    struct usp_mtp_peer peer = {.eid = peer_eid, .path = res->path, .addr = where, .ids = *ids};
    if (l->base.cb->check && l->base.cb->check(&l->base, &peer, l->base.user) != 0) {
        l->base.stats.refused++;
        mtp__log(ctx, USP_MTP_LOG_INFO, res->eid, "CoAP: %s (%s) refused by the check callback",
                 peer_eid, where);
        answer(resp, 403);
        return NULL;
    }
    if (!res->lis) { /* closed inside the check callback */
        answer(resp, 403);
        return NULL;
    }
    struct cp_conn *c = conn_alloc(&l->cfg, reply, peer_eid, addr);
    if (!c) {
        answer(resp, 500);
        return NULL;
    }
    mtp__conn_hold(ctx);
    c->base.ops = &usp_mtp_coap_ops;
    c->base.ctx = ctx;
    c->base.state = USP_MTP_IDLE;
    c->accepted = true;
    c->srv = res->srv;
    c->srv->refs++;
    c->res = res;
    res->refs++;
    c->next = c->srv->conns;
    if (c->next)
        c->next->pprev = &c->next;
    c->srv->conns = c;
    c->pprev = &c->srv->conns;
    c->lis = l;
    c->lnext = l->sessions;
    if (c->lnext)
        c->lnext->lprev = &c->lnext;
    l->sessions = c;
    c->lprev = &l->sessions;
    struct usp_mtp_url pu;
    usp_mtp_url_parse(reply, &pu, NULL, 0);
    if (build_opts(c, pu.path) != 0 || make_session(c) != 0) {
        finalize(c);
        answer(resp, 500);
        return NULL;
    }
    c->ids = *ids;
    *ids = NULL;
    c->phase = P_UP;
    l->base.stats.accepted++;
    MTP_STAT(&c->base, ups, 1);
    mtp__log(ctx, USP_MTP_LOG_INFO, res->eid, "CoAP: accepted %s (%s, reply-to %s)", peer_eid,
             where, reply);
    enter(c);
    l->base.cb->accept(&l->base, &c->base, &peer, l->base.user);
    if (!c->dead && c->phase == P_UP)
        mtp__emit_state(&c->base, USP_MTP_UP, USP_MTP_R_NONE, 0, 0, 0, NULL);
    return c; /* busy held: the caller leaves */
}

static void count_drop(struct coap_srv *srv, struct cp_conn *c, bool oversize)
{
    if (c && oversize)
        MTP_STAT(&c->base, rx_oversize, 1);
    else if (c)
        MTP_STAT(&c->base, rx_dropped, 1);
    else if (oversize)
        srv->ctx->stats.rx_oversize++;
    else
        srv->ctx->stats.rx_dropped++;
}

static void on_post(coap_resource_t *r, coap_session_t *s, const coap_pdu_t *req,
                    const coap_string_t *query, coap_pdu_t *resp)
{
    struct coap_res *res = coap_resource_get_userdata(r);
    if (!res || res->refs == 0) {
        answer(resp, 404);
        return;
    }
    struct coap_srv *srv = res->srv;
    struct usp_mtp_ctx *ctx = srv->ctx;
    char where[INET6_ADDRSTRLEN] = "";
    addr_text(s, where, sizeof where);

    coap_opt_iterator_t oi;
    coap_opt_t *o = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &oi);
    if (!o || coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o)) != USP_MTP_COAP_FORMAT) {
        mtp__log(ctx, USP_MTP_LOG_INFO, res->eid,
                 "CoAP: POST from %s without Content-Format 42: 4.15", where);
        count_drop(srv, NULL, false);
        answer(resp, 415);
        return;
    }
    /* reply-to: the first Uri-Query option that is one */
    char reply[USP_MTP_URL_MAX + 1] = "";
    coap_opt_filter_t f;
    coap_option_filter_clear(&f);
    coap_option_filter_set(&f, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &oi, &f);
    int qrc = USP_ENOENT;
    while (qrc == USP_ENOENT && (o = coap_option_next(&oi)) != NULL)
        qrc =
            usp_mtp_coap_reply_to_parse(coap_opt_value(o), coap_opt_length(o), reply, sizeof reply);
    struct usp_mtp_url ru;
    char peer_eid[EID_MAX + 1] = "";
    union cp_addr raddr;
    const char *bad = NULL;
    if (qrc != 0)
        bad = qrc == USP_ENOENT ? "no reply-to Uri-Query" : "a malformed reply-to";
    else if (usp_mtp_url_parse(reply, &ru, NULL, 0) != 0 || strcmp(ru.binding, "coap") != 0)
        bad = "a reply-to that is not a coap(s) URI";
    else if (ru.tls != srv->tls)
        bad = "a reply-to whose scheme is not the one it used";
    else if (!url_addr(&ru, &raddr))
        bad = "a reply-to without a numeric address";
    else if (usp_mtp_coap_url_eid(&ru, peer_eid, sizeof peer_eid) != 0)
        bad = "a reply-to whose path is not /e/<Endpoint ID>";
    struct cp_conn *c = bad ? NULL : find_conn(srv, res->eid, peer_eid);

    size_t len = 0, off = 0, total = 0;
    const uint8_t *data = NULL;
    if (!coap_get_data_large(req, &len, &data, &off, &total))
        len = 0;
    if (!bad && len == 0)
        bad = "an empty payload";
    if (bad) {
        mtp__log(ctx, USP_MTP_LOG_INFO, res->eid, "CoAP: POST from %s with %s: 4.00", where, bad);
        count_drop(srv, c, false);
        answer(resp, 400);
        return;
    }
    uint32_t max = c ? c->cfg.max_record : res->max_record;
    if (len > max) {
        mtp__log(ctx, USP_MTP_LOG_INFO, res->eid,
                 "CoAP: record of %zu bytes from %s is over %u: 4.13", len, where, max);
        count_drop(srv, c, true);
        answer(resp, 413);
        return;
    }
    struct usp_arena *a = usp_arena_new(len * 2 + 512);
    if (!a) {
        answer(resp, 500);
        return;
    }
    UspRecord__Record *rec = NULL;
    struct usp_decode_err err;
    int drc = usp_record_decode(a, data, len, &rec, &err);
    usp_arena_free(a);
    if (drc == USP_EDECODE || drc == USP_ENOMEM) {
        if (drc == USP_EDECODE)
            mtp__log(ctx, USP_MTP_LOG_INFO, res->eid,
                     "CoAP: payload from %s is not a USP Record: 4.00", where);
        count_drop(srv, c, false);
        answer(resp, drc == USP_ENOMEM ? 500 : 400);
        return;
    }
    struct usp_tls_ids *ids = NULL;
    if (srv->tls) {
        /* The reply-to's Endpoint ID must be the certificate's. */
        char why[200];
        ids = session_ids(s, why, sizeof why);
        if (!ids || usp_tls_ids_match(ids, peer_eid, why, sizeof why) != 0) {
            mtp__log(ctx, USP_MTP_LOG_WARN, res->eid,
                     "CoAP: %s (%s) is not authenticated by its certificate: %s: 4.03", peer_eid,
                     where, why);
            usp_tls_ids_free(ids);
            count_drop(srv, c, false);
            answer(resp, 403);
            return;
        }
    }
    if (c) {
        enter(c);
        if (ids && !c->ids) {
            c->ids = ids;
            ids = NULL;
        }
    } else if (res->lis) {
        c = accept_peer(res, s, reply, peer_eid, &raddr, &ids, resp);
        if (!c) {
            usp_tls_ids_free(ids);
            return;
        }
    } else {
        mtp__log(ctx, USP_MTP_LOG_INFO, res->eid,
                 "CoAP: record from %s (%s) and nobody accepts it (no listener): 4.03", peer_eid,
                 where);
        usp_tls_ids_free(ids);
        count_drop(srv, NULL, false);
        answer(resp, 403);
        return;
    }
    usp_tls_ids_free(ids);
    if (!c->dead) {
        struct usp_mtp_rx rx = {.reply_to = {.to = reply}, .arrived_on = res->path};
        MTP_STAT(&c->base, rx_records, 1);
        MTP_STAT(&c->base, rx_bytes, len);
        if (c->base.cb && c->base.cb->record)
            c->base.cb->record(&c->base, data, len, &rx, c->base.user);
    }
    leave(c);
    answer(resp, 204);
}

/* ---- Listeners -------------------------------------------------------------------------- */

static int cp_listen(struct usp_mtp_ctx *ctx, const struct usp_mtp_config *cfg,
                     const struct usp_mtp_url *url, struct usp_mtp_listener **out, char *why,
                     size_t whylen)
{
    int rc = usp_mtp_coap_version_check(cfg->usp_version, why, whylen);
    if (rc)
        return rc;
    struct usp_mtp_url lu;
    char canon[USP_MTP_URL_MAX + 1];
    if ((rc = local_url_check(cfg->url, cfg->eid, "listener URL", &lu, canon, sizeof canon, why,
                              whylen)))
        return rc;
    struct cp_listener *l = calloc(1, sizeof *l + cfg_strings(cfg, canon, lu.tls));
    if (!l)
        return mtp__fail(why, whylen, USP_ENOMEM, "out of memory");
    char *pool = (char *)(l + 1);
    cfg_fill(&l->cfg, cfg, canon, lu.tls, &pool);
    rc = srv_get(ctx, &lu, &l->cfg, &l->srv, why, whylen);
    if (rc) {
        free(l);
        return rc;
    }
    rc = res_get(l->srv, &l->cfg, canon, &l->res, why, whylen);
    if (!rc && l->res->lis) {
        res_unref(l->res);
        rc = mtp__fail(why, whylen, USP_EEXIST, "%s already has a listener", canon);
    }
    if (rc) {
        srv_unref(l->srv);
        free(l);
        return rc;
    }
    l->res->lis = l;
    l->res->max_record = cfg->max_record;
    l->base.port = lu.port;
    mtp__log(ctx, USP_MTP_LOG_INFO, cfg->eid, "CoAP: listening on %s", canon);
    *out = &l->base;
    return 0;
}

static void cp_listener_close(struct usp_mtp_listener *base)
{
    struct cp_listener *l = (struct cp_listener *)base;
    while (l->sessions) {
        struct cp_conn *c = l->sessions;
        unlink_conn(c); /* leaves srv->conns too: no more records for it */
        if (c->phase != P_CLOSED) {
            c->closing = true;
            lose(c, USP_MTP_R_CLOSED, 1001);
        }
    }
    l->res->lis = NULL;
    res_unref(l->res);
    srv_unref(l->srv);
    free(l);
}

/* ---- Tables ------------------------------------------------------------------------------- */

static void coap_log_quiet(coap_log_t level, const char *message)
{
}

static int cp_global_init(void)
{
    coap_startup();
    coap_set_log_handler(coap_log_quiet);
    coap_set_log_level(LOG_EMERG);
    coap_dtls_set_log_level(LOG_EMERG);
    return 0;
}

const struct usp_mtp_ops usp_mtp_coap_ops = {
    .name = "coap",
    .global_init = cp_global_init,
    .conn_new = cp_conn_new,
    .open = cp_open,
    .send = cp_send,
    .close = cp_close,
    .free = cp_free,
    .local_dest = cp_local_dest,
};

const struct usp_mtp_ext_ops usp_mtp_coap_ext_ops = {
    .base = &usp_mtp_coap_ops,
    .listen = cp_listen,
    .listener_close = cp_listener_close,
    .peer_eid = cp_peer_eid,
    .peer_ids = cp_peer_ids,
};
