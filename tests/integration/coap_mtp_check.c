/* Scenarios for tests/integration/test-coap-mtp.sh: the CoAP binding of
 * libusp (legacy, USP 1.0-1.2) against itself, real libcoap on both sides
 * over UDP on 127.0.0.1 with free ports, plus libcoap's own client API for
 * requests a correct binding never sends, and one raw UDP fake peer for
 * deliberately broken datagrams. Usage: coap_mtp_check MODE [DIR]
 *   exchange coap|coaps DIR  agent <-> controller both ways, accept, the
 *                            reply-to, a 60000-byte record each way
 *                            (block-wise), peer IDs with DTLS, discovery
 *                            (GET /.well-known/core), graceful close with
 *                            a DisconnectRecord
 *   bad                      4.00 / 4.04 / 4.05 / 4.15 answers to a libcoap
 *                            client's wrong requests; a raw UDP fake peer's
 *                            junk datagram changes nothing
 *   down                     a peer that never answers (a silent UDP socket,
 *                            named as a fake peer) and a port with nobody:
 *                            tx_failed, DOWN with a reason, back UP after
 *                            the back-off; a peer answering 4.xx stays UP
 *   untrusted DIR            DTLS with a certificate from another CA is
 *                            refused both ways; nothing is accepted
 * Prints "ok ..." or "FAIL ..." per check and "#" notes; exits 1 on any
 * failure. DIR receives the generated certificates. */
#include <arpa/inet.h>
#include <coap3/coap.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "usp/arena.h"
#include "usp/certs.h"
#include "usp/codec.h"
#include "usp/mtp.h"
#include "usp/mtp_coap.h"
#include "usp/tls.h"

static int failures;
static uv_loop_t loop;

static void expect(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf(cond ? "ok   " : "FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!cond)
        failures++;
}

static void on_log(void *user, enum usp_mtp_log_level level, const char *eid, const char *msg)
{
    printf("#    [%s] %s: %s\n", (const char *)user, eid ? eid : "-", msg);
}

static uint16_t free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free port");
        exit(2);
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- endpoints -------------------------------------------------------------------- */

#define MAX_RX  16
#define MAX_ACC 4

struct got {
    struct usp_mtp_conn *on;
    uint8_t *bytes;
    size_t len;
    char reply_to[256];
};

struct ep {
    const char *name;
    struct usp_mtp_ctx *ctx;
    struct usp_mtp_listener *lis;
    struct usp_mtp_conn *acc[MAX_ACC];
    char acc_eid[MAX_ACC][64];
    bool acc_had_ids[MAX_ACC];
    int nacc;
    struct got rx[MAX_RX];
    int nrx;
    int refused_checks;
};

struct track {
    enum usp_mtp_state state;
    enum usp_mtp_reason reason;
    int ups, downs, closed;
    char detail[256];
};

static struct track tracks[16];
static int ntracks;

static void on_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct track *t = user;
    t->state = ev->state;
    t->reason = ev->reason;
    snprintf(t->detail, sizeof t->detail, "%s", ev->detail);
    t->ups += ev->state == USP_MTP_UP;
    t->downs += ev->state == USP_MTP_DOWN;
    t->closed += ev->state == USP_MTP_CLOSED;
    printf("#    state %s reason %s: %s\n", usp_mtp_state_name(ev->state),
           usp_mtp_reason_name(ev->reason), ev->detail);
}

static void on_record(struct usp_mtp_conn *c, const uint8_t *rec, size_t len,
                      const struct usp_mtp_rx *rx, void *user);

static const struct usp_mtp_callbacks conn_cb = {.state = on_state, .record = on_record};

/* A connection's user is its track; records land in the endpoint whose
 * context the connection belongs to. */
static struct ep *all_eps[4];
static int neps;

static void on_record(struct usp_mtp_conn *c, const uint8_t *rec, size_t len,
                      const struct usp_mtp_rx *rx, void *user)
{
    for (int i = 0; i < neps; i++) {
        struct ep *e = all_eps[i];
        if (e->ctx != c->ctx || e->nrx == MAX_RX)
            continue;
        struct got *g = &e->rx[e->nrx++];
        g->on = c;
        g->bytes = malloc(len);
        memcpy(g->bytes, rec, len);
        g->len = len;
        snprintf(g->reply_to, sizeof g->reply_to, "%s", rx->reply_to.to ? rx->reply_to.to : "");
    }
}

static int on_check(struct usp_mtp_listener *l, const struct usp_mtp_peer *peer, void *user)
{
    struct ep *e = user;
    if (peer->eid && strstr(peer->eid, "refuse-me")) {
        e->refused_checks++;
        return -1;
    }
    return 0;
}

static void on_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                      const struct usp_mtp_peer *peer, void *user)
{
    struct ep *e = user;
    if (e->nacc == MAX_ACC) {
        usp_mtp_conn_free(c);
        return;
    }
    snprintf(e->acc_eid[e->nacc], sizeof e->acc_eid[0], "%s", peer->eid ? peer->eid : "");
    e->acc_had_ids[e->nacc] = peer->ids != NULL;
    struct track *t = &tracks[ntracks++];
    usp_mtp_conn_set_callbacks(c, &conn_cb, t);
    e->acc[e->nacc++] = c;
}

static const struct usp_mtp_listener_callbacks lis_cb = {.check = on_check, .accept = on_accept};

static void ep_init(struct ep *e, const char *name)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    struct usp_mtp_ctx_opts o = {
        .log = on_log, .log_user = (void *)name, .log_level = USP_MTP_LOG_INFO};
    e->ctx = usp_mtp_ctx_new(&loop, &o);
    all_eps[neps++] = e;
}

static void ep_free(struct ep *e)
{
    for (int i = 0; i < e->nacc; i++)
        usp_mtp_conn_free(e->acc[i]);
    usp_mtp_listener_close(e->lis);
    for (int i = 0; i < e->nrx; i++)
        free(e->rx[i].bytes);
    usp_mtp_ctx_free(e->ctx);
}

struct tlsfiles {
    char ca[256], cert[256], key[256];
};

static void cfg_init(struct usp_mtp_config *cfg, enum usp_mtp_role role, const char *eid,
                     const char *url, const struct tlsfiles *tf)
{
    usp_mtp_config_init(cfg);
    cfg->role = role;
    cfg->eid = eid;
    cfg->url = url;
    cfg->retry_time_s = 1;
    cfg->retry_max_s = 2;
    cfg->close_timeout_ms = 3000;
    cfg->usp_version = "1.2";
    cfg->coap.ack_timeout_ms = 1000;
    cfg->coap.max_retransmit = 1; /* a silent peer fails within 4.5 s */
    if (tf) {
        cfg->tls.ca_file = tf->ca;
        cfg->tls.cert_file = tf->cert;
        cfg->tls.key_file = tf->key;
    }
}

static uint32_t listen_max_record; /* 0: the default */

static int ep_listen(struct ep *e, enum usp_mtp_role role, const char *eid, const char *url,
                     const struct tlsfiles *tf)
{
    struct usp_mtp_config cfg;
    cfg_init(&cfg, role, eid, url, tf);
    if (listen_max_record)
        cfg.max_record = listen_max_record;
    char why[256] = "";
    int rc = usp_mtp_listen(e->ctx, &cfg, &lis_cb, e, &e->lis, why, sizeof why);
    if (rc)
        printf("#    listen %s: %s\n", url, why);
    return rc;
}

static struct usp_mtp_conn *conn_open(struct ep *e, enum usp_mtp_role role, const char *eid,
                                      const char *url, const char *local, const struct tlsfiles *tf,
                                      struct track **tp)
{
    struct usp_mtp_config cfg;
    cfg_init(&cfg, role, eid, url, tf);
    cfg.coap.local_url = local;
    struct usp_mtp_conn *c = NULL;
    char why[256] = "";
    struct track *t = &tracks[ntracks++];
    int rc = usp_mtp_conn_new(e->ctx, &cfg, &conn_cb, t, &c, why, sizeof why);
    if (rc) {
        printf("#    conn_new %s: %s\n", url, why);
        return NULL;
    }
    usp_mtp_open(c);
    *tp = t;
    return c;
}

/* ---- waiting ---------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
}

typedef bool (*cond_fn)(void *arg);

static bool wait_for(cond_fn cond, void *arg, int ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    uint64_t end = uv_now(&loop) + (uint64_t)ms;
    bool ok = false;
    while (!(ok = cond(arg)) && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static bool is_up(void *arg)
{
    return ((struct track *)arg)->state == USP_MTP_UP;
}

static bool is_down(void *arg)
{
    return ((struct track *)arg)->state == USP_MTP_DOWN;
}

static bool is_closed(void *arg)
{
    return ((struct track *)arg)->state == USP_MTP_CLOSED;
}

struct rxwait {
    struct ep *e;
    int n;
};

static bool has_rx(void *arg)
{
    struct rxwait *w = arg;
    return w->e->nrx >= w->n;
}

static bool never(void *arg)
{
    return false;
}

static void settle(int ms)
{
    wait_for(never, NULL, ms);
}

/* ---- records --------------------------------------------------------------------- */

/* A no_session_context Record whose payload is `n` bytes of a pattern. */
static uint8_t *make_record(struct usp_arena *a, const char *from, const char *to, size_t n,
                            uint8_t seed, size_t *len)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__NoSessionContextRecord ns = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    uint8_t *p = usp_arena_alloc(a, n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 31 + (i >> 8));
    ns.payload.data = p;
    ns.payload.len = n;
    rec.version = "1.2";
    rec.from_id = (char *)from;
    rec.to_id = (char *)to;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    rec.no_session_context = &ns;
    uint8_t *out = NULL;
    if (usp_record_encode(a, &rec, &out, len) != 0)
        return NULL;
    return out;
}

static bool same_bytes(const struct got *g, const uint8_t *b, size_t n)
{
    return g->len == n && memcmp(g->bytes, b, n) == 0;
}

static int record_kind(const struct got *g)
{
    struct usp_arena *a = usp_arena_new(4096);
    UspRecord__Record *rec = NULL;
    struct usp_decode_err err;
    int kind = -1;
    if (usp_record_decode(a, g->bytes, g->len, &rec, &err) == 0 && rec)
        kind = (int)rec->record_type_case;
    usp_arena_free(a);
    return kind;
}

/* ---- a raw libcoap client (libcoap's own API, for requests our binding never sends) */

static int raw_code;
static char raw_body[4096];
static bool raw_done;

static coap_response_t raw_on_response(coap_session_t *s, const coap_pdu_t *sent,
                                       const coap_pdu_t *recv, const coap_mid_t mid)
{
    coap_pdu_code_t code = coap_pdu_get_code(recv);
    raw_code = COAP_RESPONSE_CLASS(code) * 100 + (code & 0x1f);
    size_t len = 0, off, total;
    const uint8_t *data;
    raw_body[0] = '\0';
    if (coap_get_data_large(recv, &len, &data, &off, &total)) {
        if (len >= sizeof raw_body)
            len = sizeof raw_body - 1;
        memcpy(raw_body, data, len);
        raw_body[len] = '\0';
    }
    raw_done = true;
    return COAP_RESPONSE_OK;
}

struct raw_req {
    coap_pdu_code_t method;
    const char *path; /* without the leading '/' */
    int format;       /* -1: no Content-Format */
    const char *query;
    const uint8_t *body;
    size_t len;
};

/* Sends one request to 127.0.0.1:port and waits (running the loop too) for
 * the answer: its code as 404 etc., or 0 when none came. */
static int raw_request(uint16_t port, const struct raw_req *r)
{
    coap_context_t *cc = coap_new_context(NULL);
    coap_context_set_block_mode(cc, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(cc, raw_on_response);
    coap_address_t dst;
    coap_address_init(&dst);
    dst.size = sizeof(struct sockaddr_in);
    dst.addr.sin.sin_family = AF_INET;
    dst.addr.sin.sin_port = htons(port);
    dst.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    coap_session_t *s = coap_new_client_session(cc, NULL, &dst, COAP_PROTO_UDP);
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, r->method, s);
    uint8_t tok[8];
    size_t tl;
    coap_session_new_token(s, &tl, tok);
    coap_add_token(pdu, tl, tok);
    coap_optlist_t *opts = NULL;
    uint8_t buf[512];
    size_t buflen = sizeof buf;
    int n = coap_split_path((const uint8_t *)r->path, strlen(r->path), buf, &buflen);
    const uint8_t *p = buf;
    for (int i = 0; i < n; i++) {
        coap_insert_optlist(
            &opts, coap_new_optlist(COAP_OPTION_URI_PATH, coap_opt_length(p), coap_opt_value(p)));
        p += coap_opt_size(p);
    }
    if (r->format >= 0) {
        uint8_t f[4];
        coap_insert_optlist(
            &opts, coap_new_optlist(COAP_OPTION_CONTENT_FORMAT,
                                    coap_encode_var_safe(f, sizeof f, (unsigned)r->format), f));
    }
    if (r->query)
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_URI_QUERY, strlen(r->query),
                                                    (const uint8_t *)r->query));
    coap_add_optlist_pdu(pdu, &opts);
    coap_delete_optlist(opts);
    if (r->len)
        coap_add_data(pdu, r->len, r->body);
    raw_done = false;
    raw_code = 0;
    coap_send(s, pdu);
    uint64_t end = uv_now(&loop) + 3000;
    while (!raw_done && uv_now(&loop) < end) {
        coap_io_process(cc, COAP_IO_NO_WAIT);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&loop);
    }
    coap_session_release(s);
    coap_free_context(cc);
    return raw_done ? raw_code : 0;
}

/* ---- certificates ---------------------------------------------------------------------- */

static struct usp_cert *mk_cert(enum usp_cert_use use, const char *cn, const char *eid,
                                const struct usp_cert *issuer)
{
    const char *eids[1] = {eid};
    struct usp_cert_spec spec = {.use = use,
                                 .key_type = USP_CERT_KEY_EC,
                                 .common_name = cn,
                                 .not_before = -3600,
                                 .not_after = 30 * USP_CERT_DAY,
                                 .eids = eid ? eids : NULL,
                                 .neids = eid ? 1 : 0,
                                 .issuer = issuer};
    struct usp_cert *c = NULL;
    char why[256];
    if (usp_cert_new(&spec, &c, why, sizeof why) != 0) {
        printf("FAIL certificate %s: %s\n", cn, why);
        exit(1);
    }
    return c;
}

static void write_cert(const struct usp_cert *c, const char *dir, const char *name,
                       struct tlsfiles *tf, const char *ca_name)
{
    char why[256];
    snprintf(tf->cert, sizeof tf->cert, "%s/%s.pem", dir, name);
    snprintf(tf->key, sizeof tf->key, "%s/%s.key", dir, name);
    snprintf(tf->ca, sizeof tf->ca, "%s/%s.pem", dir, ca_name);
    if (usp_cert_write(c, tf->cert, tf->key, why, sizeof why) != 0) {
        printf("FAIL writing %s: %s\n", tf->cert, why);
        exit(1);
    }
}

static void write_ca(const struct usp_cert *c, const char *dir, const char *name)
{
    char cert[256], key[256], why[256];
    snprintf(cert, sizeof cert, "%s/%s.pem", dir, name);
    snprintf(key, sizeof key, "%s/%s.key", dir, name);
    if (usp_cert_write(c, cert, key, why, sizeof why) != 0) {
        printf("FAIL writing %s: %s\n", cert, why);
        exit(1);
    }
}

#define AGENT_EID  "proto::coap-agent"
#define AGENT2_EID "proto::coap-agent2"
#define CTRL_EID   "proto::coap-ctrl"

/* ---- exchange --------------------------------------------------------------------------- */

static bool ids_have(const struct usp_tls_ids *ids, const char *eid)
{
    char why[200];
    return ids && usp_tls_ids_match(ids, eid, why, sizeof why) == 0;
}

static int run_exchange(const char *scheme, const char *dir)
{
    bool tls = strcmp(scheme, "coaps") == 0;
    struct tlsfiles tf_ctrl, tf_agent, tf_agent2;
    if (tls) {
        struct usp_cert *ca = mk_cert(USP_CERT_USE_CA, "coap test CA", NULL, NULL);
        struct usp_cert *cc = mk_cert(USP_CERT_USE_PEER, "ctrl", CTRL_EID, ca);
        struct usp_cert *ac = mk_cert(USP_CERT_USE_PEER, "agent", AGENT_EID, ca);
        struct usp_cert *a2 = mk_cert(USP_CERT_USE_PEER, "agent2", AGENT2_EID, ca);
        write_ca(ca, dir, "ca");
        write_cert(cc, dir, "ctrl", &tf_ctrl, "ca");
        write_cert(ac, dir, "agent", &tf_agent, "ca");
        write_cert(a2, dir, "agent2", &tf_agent2, "ca");
        usp_cert_free(ca);
        usp_cert_free(cc);
        usp_cert_free(ac);
        usp_cert_free(a2);
    }
    struct ep ctrl, agent, agent2;
    ep_init(&ctrl, "ctrl");
    ep_init(&agent, "agent");
    ep_init(&agent2, "agent2");
    char curl[128], aurl[128], a2url[128];
    uint16_t cport = free_udp_port(), aport = free_udp_port();
    snprintf(curl, sizeof curl, "%s://127.0.0.1:%u/e/" CTRL_EID, scheme, cport);
    snprintf(aurl, sizeof aurl, "%s://127.0.0.1:%u/e/" AGENT_EID, scheme, aport);
    snprintf(a2url, sizeof a2url, "%s://127.0.0.1:%u", scheme, free_udp_port());

    expect(ep_listen(&ctrl, USP_MTP_CONTROLLER, CTRL_EID, curl, tls ? &tf_ctrl : NULL) == 0,
           "%s: controller listens on %s", scheme, curl);
    expect(ep_listen(&agent, USP_MTP_AGENT, AGENT_EID, aurl, tls ? &tf_agent : NULL) == 0,
           "%s: agent listens on %s", scheme, aurl);
    expect(ep_listen(&agent2, USP_MTP_AGENT, AGENT2_EID, a2url, tls ? &tf_agent2 : NULL) == 0,
           "%s: agent2 listens on %s (path added)", scheme, a2url);
    /* the agent's association to the controller: local_url from its listener */
    struct track *ta = NULL;
    struct usp_mtp_conn *ac =
        conn_open(&agent, USP_MTP_AGENT, AGENT_EID, curl, NULL, tls ? &tf_agent : NULL, &ta);
    expect(ac != NULL, "%s: agent connection made (local URL taken from its listener)", scheme);
    if (!ac)
        return 1;
    expect(wait_for(is_up, ta, 3000), "%s: agent connection UP", scheme);
    expect(usp_mtp_local_dest(ac) && strcmp(usp_mtp_local_dest(ac), aurl) == 0,
           "%s: local_dest is the own server URI (%s)", scheme,
           usp_mtp_local_dest(ac) ? usp_mtp_local_dest(ac) : "NULL");

    struct usp_arena *a = usp_arena_new(1 << 16);
    size_t l1, l2, l3, l4;
    uint8_t *r1 = make_record(a, AGENT_EID, CTRL_EID, 40, 1, &l1);
    expect(usp_mtp_send(ac, NULL, r1, l1) == 0, "%s: agent sends a record", scheme);
    struct rxwait w = {&ctrl, 1};
    expect(wait_for(has_rx, &w, 5000), "%s: controller receives it", scheme);
    expect(ctrl.nacc == 1 && strcmp(ctrl.acc_eid[0], AGENT_EID) == 0,
           "%s: the controller's listener accepted %s (from the reply-to)", scheme,
           ctrl.nacc ? ctrl.acc_eid[0] : "nobody");
    expect(ctrl.nacc == 1 && ctrl.acc_had_ids[0] == tls, "%s: peer.ids in the accept callback %s",
           scheme, tls ? "set" : "NULL (NoSec)");
    expect(ctrl.nrx == 1 && same_bytes(&ctrl.rx[0], r1, l1) && ctrl.nacc == 1 &&
               ctrl.rx[0].on == ctrl.acc[0],
           "%s: the record arrives intact on the accepted connection", scheme);
    expect(ctrl.nrx == 1 && strcmp(ctrl.rx[0].reply_to, aurl) == 0,
           "%s: its reply-to is the agent's server URI (%s)", scheme,
           ctrl.nrx ? ctrl.rx[0].reply_to : "");
    struct usp_mtp_conn *cc = ctrl.nacc ? ctrl.acc[0] : NULL;
    if (!cc)
        return 1;
    expect(usp_mtp_get_state(cc) == USP_MTP_UP, "%s: the accepted connection is UP", scheme);
    expect(usp_mtp_peer_eid(cc) && strcmp(usp_mtp_peer_eid(cc), AGENT_EID) == 0,
           "%s: usp_mtp_peer_eid of the accepted connection", scheme);
    if (tls) {
        expect(ids_have(usp_mtp_peer_ids(cc), AGENT_EID),
               "coaps: the controller's usp_mtp_peer_ids authenticate " AGENT_EID);
        expect(ids_have(usp_mtp_peer_ids(ac), CTRL_EID),
               "coaps: the agent's usp_mtp_peer_ids authenticate " CTRL_EID);
    } else {
        expect(usp_mtp_peer_ids(cc) == NULL && usp_mtp_peer_ids(ac) == NULL,
               "coap: no peer IDs without DTLS");
    }

    /* the controller answers on the accepted connection */
    uint8_t *r2 = make_record(a, CTRL_EID, AGENT_EID, 50, 2, &l2);
    expect(usp_mtp_send(cc, NULL, r2, l2) == 0, "%s: controller answers", scheme);
    w = (struct rxwait){&agent, 1};
    expect(wait_for(has_rx, &w, 5000), "%s: the agent receives the answer", scheme);
    expect(agent.nrx == 1 && agent.rx[0].on == ac && same_bytes(&agent.rx[0], r2, l2),
           "%s: intact, on its own outgoing connection (no new accept: %d)", scheme, agent.nacc);
    expect(agent.nrx == 1 && strcmp(agent.rx[0].reply_to, curl) == 0,
           "%s: with the controller's server URI as reply-to", scheme);

    /* 60000 bytes each way: Block1 */
    uint8_t *r3 = make_record(a, AGENT_EID, CTRL_EID, 60000, 3, &l3);
    uint8_t *r4 = make_record(a, CTRL_EID, AGENT_EID, 60000, 4, &l4);
    expect(usp_mtp_send(ac, NULL, r3, l3) == 0 && usp_mtp_send(cc, NULL, r4, l4) == 0,
           "%s: a record of %zu bytes each way", scheme, l3);
    w = (struct rxwait){&ctrl, 2};
    bool got3 = wait_for(has_rx, &w, 15000);
    w = (struct rxwait){&agent, 2};
    bool got4 = wait_for(has_rx, &w, 15000);
    expect(got3 && same_bytes(&ctrl.rx[1], r3, l3),
           "%s: the controller gets the 60000-byte record intact (block-wise)", scheme);
    expect(got4 && same_bytes(&agent.rx[1], r4, l4),
           "%s: the agent gets the 60000-byte record intact (block-wise)", scheme);
    settle(300);

    /* the controller starts an association to agent2 */
    struct track *tc = NULL;
    char a2full[160];
    snprintf(a2full, sizeof a2full, "%s/e/" AGENT2_EID, a2url);
    struct usp_mtp_conn *c2 =
        conn_open(&ctrl, USP_MTP_CONTROLLER, CTRL_EID, a2full, curl, tls ? &tf_ctrl : NULL, &tc);
    expect(c2 && wait_for(is_up, tc, 3000), "%s: controller connection to agent2 UP", scheme);
    uint8_t *r5 = make_record(a, CTRL_EID, AGENT2_EID, 30, 5, &l1);
    expect(c2 && usp_mtp_send(c2, NULL, r5, l1) == 0, "%s: controller sends to agent2", scheme);
    w = (struct rxwait){&agent2, 1};
    expect(wait_for(has_rx, &w, 5000) && agent2.nacc == 1 &&
               strcmp(agent2.acc_eid[0], CTRL_EID) == 0 && same_bytes(&agent2.rx[0], r5, l1),
           "%s: agent2 accepts the controller and gets the record", scheme);
    if (agent2.nacc == 1) {
        uint8_t *r6 = make_record(a, AGENT2_EID, CTRL_EID, 30, 6, &l2);
        int before = ctrl.nrx;
        usp_mtp_send(agent2.acc[0], NULL, r6, l2);
        w = (struct rxwait){&ctrl, before + 1};
        expect(wait_for(has_rx, &w, 5000) && ctrl.rx[before].on == c2 &&
                   same_bytes(&ctrl.rx[before], r6, l2),
               "%s: agent2's answer arrives on the controller's outgoing connection", scheme);
    }

    /* discovery over NoSec: /.well-known/core lists both resources */
    if (!tls) {
        struct raw_req get = {
            .method = COAP_REQUEST_CODE_GET, .path = ".well-known/core", .format = -1};
        int code = raw_request(cport, &get);
        printf("#    controller /.well-known/core: %d %s\n", code, raw_body);
        expect(code == 205 && strstr(raw_body, "</e/" CTRL_EID ">") &&
                   strstr(raw_body, "rt=\"bbf.usp.endpoint\"") &&
                   strstr(raw_body, "if=\"bbf.usp.c\""),
               "coap: GET /.well-known/core of the controller: </e/" CTRL_EID
               ">;rt=\"bbf.usp.endpoint\";if=\"bbf.usp.c\"");
        code = raw_request(aport, &get);
        printf("#    agent /.well-known/core: %d %s\n", code, raw_body);
        expect(code == 205 && strstr(raw_body, "</e/" AGENT_EID ">") &&
                   strstr(raw_body, "rt=\"bbf.usp.endpoint\"") &&
                   strstr(raw_body, "if=\"bbf.usp.a\""),
               "coap: GET /.well-known/core of the agent: if=\"bbf.usp.a\"");
    }

    const struct usp_mtp_stats *sa = usp_mtp_get_stats(ac);
    expect(sa->tx_records == 2 && sa->rx_records == 2 && sa->tx_failed == 0,
           "%s: agent stats: tx %llu rx %llu failed %llu", scheme,
           (unsigned long long)sa->tx_records, (unsigned long long)sa->rx_records,
           (unsigned long long)sa->tx_failed);

    /* graceful close: a DisconnectRecord, then CLOSED */
    int before = ctrl.nrx;
    expect(usp_mtp_close(ac, 0, "bye") == 0, "%s: agent closes", scheme);
    expect(wait_for(is_closed, ta, 5000), "%s: agent connection CLOSED", scheme);
    w = (struct rxwait){&ctrl, before + 1};
    expect(wait_for(has_rx, &w, 3000) &&
               record_kind(&ctrl.rx[before]) == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT,
           "%s: the controller got a DisconnectRecord [R-MTP.7]", scheme);
    expect(usp_mtp_send(ac, NULL, r1, l1) == USP_EPERM, "%s: no send once closed", scheme);

    /* closing the listener closes what it accepted */
    usp_mtp_listener_close(ctrl.lis);
    ctrl.lis = NULL;
    settle(100);
    expect(usp_mtp_get_state(cc) == USP_MTP_CLOSED,
           "%s: the accepted connection is CLOSED with its listener", scheme);

    usp_mtp_conn_free(ac);
    usp_mtp_conn_free(c2);
    usp_arena_free(a);
    ep_free(&ctrl);
    ep_free(&agent);
    ep_free(&agent2);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- bad requests ------------------------------------------------------------------------ */

static int run_bad(void)
{
    struct ep ctrl;
    ep_init(&ctrl, "ctrl");
    uint16_t port = free_udp_port();
    char curl[128];
    snprintf(curl, sizeof curl, "coap://127.0.0.1:%u/e/" CTRL_EID, port);
    expect(ep_listen(&ctrl, USP_MTP_CONTROLLER, CTRL_EID, curl, NULL) == 0, "listener on %s", curl);
    struct usp_arena *a = usp_arena_new(4096);
    size_t len;
    uint8_t *good = make_record(a, AGENT_EID, CTRL_EID, 20, 9, &len);
    char reply[256];
    usp_mtp_coap_reply_to_build("coap://127.0.0.1:9/e/" AGENT_EID, reply, sizeof reply);
    const uint8_t junk[] = "this is not a USP record";
    struct raw_req r;

    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 42, reply, junk, sizeof junk - 1};
    expect(raw_request(port, &r) == 400, "POST of bytes that are not a USP Record: 4.00");
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 42, NULL, good, len};
    expect(raw_request(port, &r) == 400, "POST without reply-to: 4.00");
    r = (struct raw_req){COAP_REQUEST_CODE_POST,    "e/" CTRL_EID, 42,
                         "reply-to=http%3A%2F%2Fx", good,          len};
    expect(raw_request(port, &r) == 400, "POST with a reply-to that is not coap: 4.00");
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 42, reply, NULL, 0};
    expect(raw_request(port, &r) == 400, "POST with an empty payload: 4.00");
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 0, reply, good, len};
    expect(raw_request(port, &r) == 415, "POST with Content-Format 0 (text/plain): 4.15");
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, -1, reply, good, len};
    expect(raw_request(port, &r) == 415, "POST without Content-Format: 4.15");
    r = (struct raw_req){COAP_REQUEST_CODE_PUT, "e/" CTRL_EID, 42, reply, good, len};
    expect(raw_request(port, &r) == 405, "PUT: 4.05");
    r = (struct raw_req){COAP_REQUEST_CODE_GET, "e/" CTRL_EID, -1, NULL, NULL, 0};
    expect(raw_request(port, &r) == 405, "GET on the endpoint resource: 4.05");
    r = (struct raw_req){COAP_REQUEST_CODE_DELETE, "e/" CTRL_EID, -1, NULL, NULL, 0};
    expect(raw_request(port, &r) == 405, "DELETE: 4.05");
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/proto::nobody", 42, reply, good, len};
    expect(raw_request(port, &r) == 404, "POST to another Endpoint ID's resource: 4.04");
    expect(ctrl.nacc == 0 && ctrl.nrx == 0, "nothing accepted or delivered so far");
    const struct usp_mtp_stats *st = usp_mtp_ctx_stats(ctrl.ctx);
    expect(st->rx_dropped >= 6, "the drops are counted (rx_dropped %llu)",
           (unsigned long long)st->rx_dropped);

    /* the check callback refuses: 4.03 */
    char rreply[256];
    usp_mtp_coap_reply_to_build("coap://127.0.0.1:9/e/proto::refuse-me", rreply, sizeof rreply);
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 42, rreply, good, len};
    expect(raw_request(port, &r) == 403 && ctrl.refused_checks == 1 && ctrl.lis->stats.refused == 1,
           "a peer the check callback refuses: 4.03, counted as refused");

    /* a raw UDP fake peer sends broken datagrams: nothing happens */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const uint8_t broken[][8] = {
        {0x40}, {0x40, 0x02, 0x00}, {0xff, 0xff, 0xff, 0xff}, {0x48, 0x02, 0x12, 0x34, 1, 2}};
    static const size_t blen[] = {1, 3, 4, 6};
    for (size_t i = 0; i < 4; i++)
        sendto(fd, broken[i], blen[i], 0, (struct sockaddr *)&dst, sizeof dst);
    close(fd);
    settle(200);
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 42, reply, good, len};
    int code = raw_request(port, &r);
    expect(code == 204 && ctrl.nacc == 1 && ctrl.nrx == 1 && same_bytes(&ctrl.rx[0], good, len),
           "after junk from a raw UDP fake peer, a correct POST is still accepted: %d", code);
    /* over the listener's max_record: 4.13 */
    struct ep small;
    ep_init(&small, "small");
    uint16_t sport = free_udp_port();
    char surl[128];
    snprintf(surl, sizeof surl, "coap://127.0.0.1:%u/e/" CTRL_EID, sport);
    listen_max_record = 100;
    ep_listen(&small, USP_MTP_CONTROLLER, CTRL_EID, surl, NULL);
    listen_max_record = 0;
    size_t blen2;
    uint8_t *big = make_record(a, AGENT_EID, CTRL_EID, 200, 3, &blen2);
    r = (struct raw_req){COAP_REQUEST_CODE_POST, "e/" CTRL_EID, 42, reply, big, blen2};
    code = raw_request(sport, &r);
    expect(code == 413 && small.nrx == 0 && usp_mtp_ctx_stats(small.ctx)->rx_oversize == 1,
           "a record over the listener's max_record (100): 4.13, rx_oversize (%d)", code);
    ep_free(&small);
    usp_arena_free(a);
    ep_free(&ctrl);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- peers that are down ------------------------------------------------------------------ */

static int run_down(void)
{
    struct ep agent;
    ep_init(&agent, "agent");
    char aurl[128], silent[128], nobody[128], ctrlurl[128];
    snprintf(aurl, sizeof aurl, "coap://127.0.0.1:%u/e/" AGENT_EID, free_udp_port());

    /* a silent UDP socket: a fake peer that never answers */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(silent, sizeof silent, "coap://127.0.0.1:%u/e/" CTRL_EID, ntohs(sa.sin_port));
    snprintf(nobody, sizeof nobody, "coap://127.0.0.1:%u/e/" CTRL_EID, free_udp_port());

    struct track *t1 = NULL, *t2 = NULL;
    struct usp_mtp_conn *c1 = conn_open(&agent, USP_MTP_AGENT, AGENT_EID, silent, aurl, NULL, &t1);
    expect(c1 && wait_for(is_up, t1, 3000), "connection to a silent fake peer is UP (no session)");
    struct usp_arena *a = usp_arena_new(4096);
    size_t len;
    uint8_t *rec = make_record(a, AGENT_EID, CTRL_EID, 20, 7, &len);
    expect(usp_mtp_send(c1, NULL, rec, len) == 0, "a record to the silent peer");
    uint64_t t0 = uv_now(&loop);
    bool down = wait_for(is_down, t1, 10000);
    unsigned long long took = (unsigned long long)(uv_now(&loop) - t0);
    expect(down && t1->reason == USP_MTP_R_TIMEOUT && took >= 2000,
           "DOWN with reason timeout after one retransmission (%llu ms): %s", took, t1->detail);
    expect(usp_mtp_get_stats(c1)->tx_failed == 1, "counted in tx_failed");
    expect(usp_mtp_send(c1, NULL, rec, len) == USP_EPERM && usp_mtp_get_stats(c1)->tx_refused == 1,
           "sends are refused while DOWN");
    expect(wait_for(is_up, t1, 5000) && t1->ups == 2, "UP again after the back-off");

    struct usp_mtp_conn *c2 = conn_open(&agent, USP_MTP_AGENT, AGENT_EID, nobody, aurl, NULL, &t2);
    expect(c2 && wait_for(is_up, t2, 3000), "connection to a port with nobody is UP");
    usp_mtp_send(c2, NULL, rec, len);
    down = wait_for(is_down, t2, 10000);
    expect(down && (t2->reason == USP_MTP_R_TIMEOUT || t2->reason == USP_MTP_R_CONNECT),
           "a port with nobody: DOWN with reason %s: %s", usp_mtp_reason_name(t2->reason),
           t2->detail);
    expect(usp_mtp_get_stats(c2)->tx_failed >= 1, "counted in tx_failed");

    /* a peer that answers 4.xx: the record fails, the connection stays UP.
     * A listener of another Endpoint ID answers 4.04 for our path. */
    struct ep other;
    ep_init(&other, "other");
    uint16_t oport = free_udp_port();
    char ourl[128];
    snprintf(ourl, sizeof ourl, "coap://127.0.0.1:%u/e/proto::someone-else", oport);
    ep_listen(&other, USP_MTP_CONTROLLER, "proto::someone-else", ourl, NULL);
    snprintf(ctrlurl, sizeof ctrlurl, "coap://127.0.0.1:%u/e/" CTRL_EID, oport);
    struct track *t3 = NULL;
    struct usp_mtp_conn *c3 = conn_open(&agent, USP_MTP_AGENT, AGENT_EID, ctrlurl, aurl, NULL, &t3);
    expect(c3 && wait_for(is_up, t3, 3000), "connection to a peer without our resource is UP");
    usp_mtp_send(c3, NULL, rec, len);
    settle(1500);
    expect(usp_mtp_get_stats(c3)->tx_failed == 1 && t3->state == USP_MTP_UP,
           "its 4.04 answer counts in tx_failed; the connection stays UP");

    close(fd);
    usp_mtp_conn_free(c1);
    usp_mtp_conn_free(c2);
    usp_mtp_conn_free(c3);
    usp_arena_free(a);
    ep_free(&agent);
    ep_free(&other);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- untrusted DTLS ------------------------------------------------------------------------ */

static int run_untrusted(const char *dir)
{
    struct tlsfiles tf_ctrl, tf_agent, tf_rogue;
    struct usp_cert *ca = mk_cert(USP_CERT_USE_CA, "coap test CA", NULL, NULL);
    struct usp_cert *other = mk_cert(USP_CERT_USE_CA, "another CA", NULL, NULL);
    struct usp_cert *cc = mk_cert(USP_CERT_USE_PEER, "ctrl", CTRL_EID, ca);
    struct usp_cert *ac = mk_cert(USP_CERT_USE_PEER, "agent", AGENT_EID, ca);
    struct usp_cert *rc = mk_cert(USP_CERT_USE_PEER, "rogue", AGENT_EID, other);
    write_ca(ca, dir, "ca");
    write_ca(other, dir, "other-ca");
    write_cert(cc, dir, "ctrl", &tf_ctrl, "ca");
    write_cert(ac, dir, "agent", &tf_agent, "ca");
    /* the rogue agent trusts our CA but its own certificate is from another */
    write_cert(rc, dir, "rogue", &tf_rogue, "ca");
    usp_cert_free(ca);
    usp_cert_free(other);
    usp_cert_free(cc);
    usp_cert_free(ac);
    usp_cert_free(rc);

    struct ep ctrl, rogue, agent;
    ep_init(&ctrl, "ctrl");
    ep_init(&rogue, "rogue");
    ep_init(&agent, "agent");
    char curl[128], rurl[128], aurl[128];
    snprintf(curl, sizeof curl, "coaps://127.0.0.1:%u/e/" CTRL_EID, free_udp_port());
    snprintf(rurl, sizeof rurl, "coaps://127.0.0.1:%u/e/" AGENT_EID, free_udp_port());
    snprintf(aurl, sizeof aurl, "coaps://127.0.0.1:%u/e/" AGENT_EID, free_udp_port());
    expect(ep_listen(&ctrl, USP_MTP_CONTROLLER, CTRL_EID, curl, &tf_ctrl) == 0, "controller on %s",
           curl);
    struct usp_arena *a = usp_arena_new(4096);
    size_t len;
    uint8_t *rec = make_record(a, AGENT_EID, CTRL_EID, 20, 7, &len);

    /* a client whose certificate the controller does not trust */
    struct track *tr = NULL;
    struct usp_mtp_conn *cr =
        conn_open(&rogue, USP_MTP_AGENT, AGENT_EID, curl, rurl, &tf_rogue, &tr);
    expect(cr && wait_for(is_up, tr, 3000), "rogue agent connection UP (before any handshake)");
    usp_mtp_send(cr, NULL, rec, len);
    bool down = wait_for(is_down, tr, 10000);
    expect(down && tr->reason == USP_MTP_R_REFUSED,
           "the rogue agent's connection goes DOWN (reason %s): %s",
           usp_mtp_reason_name(tr->reason), tr->detail);
    expect(usp_mtp_get_stats(cr)->tx_failed >= 1, "its record counts in tx_failed");
    expect(ctrl.nacc == 0 && ctrl.nrx == 0, "the controller accepted nothing from it");

    /* a server whose certificate the client does not trust: the rogue
     * listens, a good controller connects to it */
    struct ep rogue_srv;
    ep_init(&rogue_srv, "rogue-server");
    char rsurl[128];
    snprintf(rsurl, sizeof rsurl, "coaps://127.0.0.1:%u/e/" AGENT_EID, free_udp_port());
    struct tlsfiles tf_rogue_trusting = tf_rogue;
    expect(ep_listen(&rogue_srv, USP_MTP_AGENT, AGENT_EID, rsurl, &tf_rogue_trusting) == 0,
           "rogue agent server on %s", rsurl);
    struct track *tc = NULL;
    struct usp_mtp_conn *cc2 =
        conn_open(&ctrl, USP_MTP_CONTROLLER, CTRL_EID, rsurl, curl, &tf_ctrl, &tc);
    expect(cc2 && wait_for(is_up, tc, 3000), "controller connection to the rogue server UP");
    uint8_t *rec2 = make_record(a, CTRL_EID, AGENT_EID, 20, 8, &len);
    usp_mtp_send(cc2, NULL, rec2, len);
    down = wait_for(is_down, tc, 10000);
    expect(down && tc->reason == USP_MTP_R_REFUSED,
           "the controller refuses the rogue server: DOWN (%s): %s",
           usp_mtp_reason_name(tc->reason), tc->detail);
    expect(rogue_srv.nacc == 0 && rogue_srv.nrx == 0, "the rogue server received nothing");

    /* the trusted agent gets through (the same controller; the association
     * to the rogue server, same Endpoint ID, is gone first, else the record
     * would be delivered on it) */
    usp_mtp_conn_free(cc2);
    cc2 = NULL;
    struct track *ta = NULL;
    struct usp_mtp_conn *ca2 =
        conn_open(&agent, USP_MTP_AGENT, AGENT_EID, curl, aurl, &tf_agent, &ta);
    expect(ca2 && wait_for(is_up, ta, 3000), "trusted agent connection UP");
    usp_mtp_send(ca2, NULL, rec, len);
    struct rxwait w = {&ctrl, 1};
    bool got = wait_for(has_rx, &w, 5000);
    expect(got && ctrl.nacc == 1 && same_bytes(&ctrl.rx[0], rec, len),
           "the trusted agent's record is accepted (%d accepted, %d records)", ctrl.nacc, ctrl.nrx);

    usp_mtp_conn_free(cr);
    usp_mtp_conn_free(cc2);
    usp_mtp_conn_free(ca2);
    usp_arena_free(a);
    ep_free(&ctrl);
    ep_free(&rogue);
    ep_free(&agent);
    ep_free(&rogue_srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}

static void coap_trace(coap_log_t level, const char *msg)
{
    fprintf(stderr, "coap %d %s", (int)level, msg);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s exchange coap|coaps DIR | bad | down | untrusted DIR\n",
                argv[0]);
        return 2;
    }
    if (usp_mtp_register_ext(&usp_mtp_coap_ext_ops) != 0) {
        printf("FAIL cannot register the CoAP binding\n");
        return 1;
    }
    uv_loop_init(&loop);
    if (getenv("COAP_DEBUG")) { /* libcoap's own trace on stderr */
        coap_set_log_handler(coap_trace);
        coap_set_log_level(LOG_DEBUG);
    }
    int rc = 2;
    if (strcmp(argv[1], "exchange") == 0 && argc == 4)
        rc = run_exchange(argv[2], argv[3]);
    else if (strcmp(argv[1], "bad") == 0)
        rc = run_bad();
    else if (strcmp(argv[1], "down") == 0)
        rc = run_down();
    else if (strcmp(argv[1], "untrusted") == 0 && argc == 3)
        rc = run_untrusted(argv[2]);
    else
        fprintf(stderr, "unknown mode\n");
    int lc = uv_loop_close(&loop);
    expect(lc == 0, "the loop closes: every handle was released");
    if (rc == 2)
        return 2;
    return failures || rc ? 1 : 0;
}
