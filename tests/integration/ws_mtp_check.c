/* Test driver for tests/integration/test-ws-mtp.sh: runs the WebSocket
 * binding of libusp (libwebsockets on the libuv loop) against itself and
 * against the script's fake peers, and checks what the specification asks
 * of it. One scenario per run:
 *
 *   exchange PORT1 PORT2  agent client <-> controller listener, then agent
 *            listener <-> controller client, in one process: the
 *            WebSocketConnectRecord first, records both ways (Get/GetResp,
 *            Notify/NotifyResp), the peer's Endpoint ID from the "eid"
 *            query with its "%" escaped [R-WS.10b/c], a 60000-byte record
 *            (read in many pieces) intact, oversized records refused and
 *            dropped, send before UP refused, 12 s idle with keepalive 5 s
 *            (both sides ping, lws answers: nobody drops), then graceful
 *            closes deliver DisconnectRecords.
 *   dup PORT1 PORT2       one session per pair of Endpoint IDs [R-WS.4]: a
 *            second session from the same agent replaces the first; an
 *            incoming session is refused while an own connection to that
 *            peer is up. An unparseable record: usp_mtp_reject closes with
 *            1003 [R-WS.16]; the agent reconnects after its back-off.
 *   serve PORT            a controller listener that answers every Get,
 *            until killed (the script kills it and starts it again).
 *   client PORT           an agent that must survive the server going
 *            away: it prints KILL-SERVER-NOW once it has exchanged records,
 *            comes back within its back-off and exchanges again.
 *   listen PORT N         an agent listener for the script's raw fake
 *            clients: echoes every record; ends after N sessions.
 *   fake-client PORT MODE one agent against a raw fake server of the
 *            script: MODE "broken" (no v1.usp in the answer: refused
 *            [R-WS.12], retried after the back-off) or "silent" (never
 *            answers a ping: DOWN with reason keepalive).
 *   scale PORT N          N agent clients to one controller listener in this
 *            process: time, file descriptors and heap per session.
 *   unused-port PORT      nothing listens: DOWN with reason connect, back-off.
 *   wss P1 P2 P3 P4 DIR   wss:// with the certificates of `uspsim certs` in
 *            DIR (plus DIR/unknown-ca, DIR/wrong-san and DIR/srv, an agent
 *            listener's certificate): both directions with records both
 *            ways, peer Endpoint IDs from the certificates, and what must
 *            be refused (untrusted client or server, wrong host, an eid the
 *            certificate does not name, our own certificate missing).
 *   wss-scale PORT N DIR  N agents (DIR/agents/<i>.pem) to one wss listener.
 *
 * Prints "ok ..." for each check that passed, "FAIL ..." otherwise, and
 * exits non-zero on any failure. */
#include <dirent.h>
#include <libwebsockets.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/mtp.h"
#include "usp/tls.h"

static int failures;
static uv_loop_t *loop;
static struct usp_mtp_ctx *ctx;
static uint64_t t_start;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok   ");                                                                       \
        } else {                                                                                   \
            failures++;                                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("#    [%6.3f] ", (double)(uv_now(loop) - t_start) / 1000);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static void on_log(void *user, enum usp_mtp_log_level level, const char *eid, const char *msg)
{
    note("log %d %s: %s", (int)level, eid ? eid : "-", msg);
}

/* ---- endpoints ---- */

struct ep {
    const char *name;
    struct usp_mtp_conn *c;
    char eid[96], peer[96];
    enum usp_mtp_state state;
    enum usp_mtp_reason reason;
    int code;
    char states[512]; /* e.g. "CONNECTING UP DOWN CONNECTING UP CLOSED" */
    int ups, downs, closed, records;
    uint64_t t_up, t_first_down, retry_sum_hi_ms;
    uint32_t max_attempt;
    int first_type; /* record type of the first record received; -1 none */
    /* wss: what arrived after the first record, and the last detail. */
    size_t rx_bytes, last_len;
    int rx_after_first, pattern_bad, disconnects;
    char detail[400];
    void (*on_record)(struct ep *e, const uint8_t *rec, size_t len, const struct usp_mtp_rx *rx);
    void (*on_state)(struct ep *e, const struct usp_mtp_event *ev);
};

static void ep_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct ep *e = user;
    CHECK(c == e->c, "%s: the state callback names its connection", e->name);
    note("%s: %s %s (%d) attempt %u retry %u ms: %s", e->name, usp_mtp_state_name(ev->state),
         usp_mtp_reason_name(ev->reason), ev->code, ev->attempt, ev->retry_ms, ev->detail);
    e->state = ev->state;
    e->reason = ev->reason;
    e->code = ev->code;
    snprintf(e->detail, sizeof e->detail, "%s", ev->detail);
    size_t n = strlen(e->states);
    snprintf(e->states + n, sizeof e->states - n, "%s%s", n ? " " : "",
             usp_mtp_state_name(ev->state));
    switch (ev->state) {
    case USP_MTP_UP:
        e->ups++;
        e->t_up = uv_now(loop);
        break;
    case USP_MTP_DOWN:
        if (e->downs++ == 0)
            e->t_first_down = uv_now(loop);
        if (ev->attempt > e->max_attempt)
            e->max_attempt = ev->attempt;
        e->retry_sum_hi_ms += ev->retry_ms;
        break;
    case USP_MTP_CLOSED:
        e->closed++;
        break;
    default:
        break;
    }
    if (e->on_state)
        e->on_state(e, ev);
}

static void ep_record(struct usp_mtp_conn *c, const uint8_t *rec, size_t len,
                      const struct usp_mtp_rx *rx, void *user)
{
    struct ep *e = user;
    if (e->records++ == 0)
        CHECK(rx->reply_to.to == NULL, "%s: a point-to-point record has no reply-to", e->name);
    if (e->on_record)
        e->on_record(e, rec, len, rx);
}

static const struct usp_mtp_callbacks callbacks = {.state = ep_state, .record = ep_record};

static void cfg_init(struct usp_mtp_config *cfg, enum usp_mtp_role role, const char *eid,
                     const char *url)
{
    usp_mtp_config_init(cfg);
    cfg->role = role;
    cfg->eid = eid;
    cfg->url = url;
    cfg->keepalive_s = 5;
    cfg->retry_time_s = 1;
    cfg->retry_multiplier = 2000;
    cfg->retry_max_s = 8;
    cfg->connect_timeout_ms = 5000;
    cfg->close_timeout_ms = 3000;
}

/* A client connection for `e` (peer EID optional). */
static void ep_client(struct ep *e, const char *name, enum usp_mtp_role role, const char *eid,
                      const char *url, const char *peer, uint32_t max_record, uint32_t retry_s,
                      uint32_t mult)
{
    e->name = name;
    e->first_type = -1;
    snprintf(e->eid, sizeof e->eid, "%s", eid);
    snprintf(e->peer, sizeof e->peer, "%s", peer ? peer : "");
    struct usp_mtp_config cfg;
    cfg_init(&cfg, role, e->eid, url);
    cfg.peer_eid = peer ? e->peer : NULL;
    cfg.peer_dest = peer ? url : NULL; /* not used by point-to-point bindings */
    cfg.max_record = max_record;
    cfg.retry_time_s = retry_s;
    cfg.retry_multiplier = mult;
    char why[200];
    int rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, e, &e->c, why, sizeof why);
    CHECK(rc == 0, "%s: connection created (%s)", name, rc ? why : "no error");
    if (rc)
        exit(1);
    CHECK(usp_mtp_get_state(e->c) == USP_MTP_IDLE, "%s: IDLE before open", name);
}

/* ---- records ---- */

static int build_msg(struct usp_arena *a, const char *from, const char *to, const char *msg_id,
                     int kind, uint8_t **out, size_t *len)
{
    Usp__Msg *m = usp_arena_zalloc(a, sizeof *m);
    Usp__Header *h = usp_arena_zalloc(a, sizeof *h);
    Usp__Body *b = usp_arena_zalloc(a, sizeof *b);
    Usp__Request *rq = usp_arena_zalloc(a, sizeof *rq);
    Usp__Response *rs = usp_arena_zalloc(a, sizeof *rs);
    Usp__Get *g = usp_arena_zalloc(a, sizeof *g);
    Usp__GetResp *gr = usp_arena_zalloc(a, sizeof *gr);
    Usp__Notify *n = usp_arena_zalloc(a, sizeof *n);
    Usp__Notify__Event *ev = usp_arena_zalloc(a, sizeof *ev);
    Usp__NotifyResp *nr = usp_arena_zalloc(a, sizeof *nr);
    char **paths = usp_arena_zalloc(a, sizeof *paths);
    if (!m || !h || !b || !rq || !rs || !g || !gr || !n || !ev || !nr || !paths)
        return USP_ENOMEM;
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__request__init(rq);
    usp__response__init(rs);
    usp__get__init(g);
    usp__get_resp__init(gr);
    usp__notify__init(n);
    usp__notify__event__init(ev);
    usp__notify_resp__init(nr);
    h->msg_id = (char *)msg_id;
    h->msg_type = kind;
    m->header = h;
    m->body = b;
    switch (kind) {
    case USP__HEADER__MSG_TYPE__GET:
        paths[0] = "Device.DeviceInfo.";
        g->n_param_paths = 1;
        g->param_paths = paths;
        rq->req_type_case = USP__REQUEST__REQ_TYPE_GET;
        rq->get = g;
        b->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
        b->request = rq;
        break;
    case USP__HEADER__MSG_TYPE__GET_RESP:
        rs->resp_type_case = USP__RESPONSE__RESP_TYPE_GET_RESP;
        rs->get_resp = gr;
        b->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
        b->response = rs;
        break;
    case USP__HEADER__MSG_TYPE__NOTIFY:
        n->subscription_id = "sub-1";
        n->send_resp = 1;
        ev->obj_path = "Device.";
        ev->event_name = "Boot!";
        n->notification_case = USP__NOTIFY__NOTIFICATION_EVENT;
        n->event = ev;
        rq->req_type_case = USP__REQUEST__REQ_TYPE_NOTIFY;
        rq->notify = n;
        b->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
        b->request = rq;
        break;
    default:
        nr->subscription_id = "sub-1";
        rs->resp_type_case = USP__RESPONSE__RESP_TYPE_NOTIFY_RESP;
        rs->notify_resp = nr;
        b->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
        b->response = rs;
        break;
    }
    struct usp_record_hdr hdr = {.to_id = to, .from_id = from};
    return usp_record_wrap_msg(a, &hdr, m, out, len);
}

static int send_msg(struct ep *from, const char *to_eid, const char *msg_id, int kind)
{
    struct usp_arena *a = usp_arena_new(1024);
    uint8_t *buf;
    size_t len;
    int rc = build_msg(a, from->eid, to_eid, msg_id, kind, &buf, &len);
    if (rc == 0)
        rc = usp_mtp_send(from->c, NULL, buf, len);
    usp_arena_free(a);
    return rc;
}

/* What arrived: a decoded Record (and Msg), or nothing. */
struct got {
    struct usp_arena *a;
    UspRecord__Record *rec;
    Usp__Msg *msg;
};

static void got_decode(struct got *g, const uint8_t *buf, size_t len, const char *own)
{
    g->a = usp_arena_new(4096);
    struct usp_rx rx;
    g->rec = NULL;
    g->msg = NULL;
    if (usp_rx_record(g->a, buf, len, own, &rx) == 0 && rx.action == USP_RX_DELIVER) {
        g->rec = rx.rec;
        g->msg = rx.msg;
    }
}

static int kind_of(const struct got *g)
{
    return g->msg ? usp_msg_kind(g->msg) : -1;
}

/* ---- accepted sessions ---- */

#define MAX_ACCEPTED 64
static struct ep accepted[MAX_ACCEPTED];
static int n_accepted;
static void (*accepted_on_record)(struct ep *e, const uint8_t *rec, size_t len,
                                  const struct usp_mtp_rx *rx);
static void (*accepted_on_state)(struct ep *e, const struct usp_mtp_event *ev);
static char last_check_eid[128], last_check_path[128];

static int on_check(struct usp_mtp_listener *l, const struct usp_mtp_peer *peer, void *user)
{
    snprintf(last_check_eid, sizeof last_check_eid, "%s", peer->eid ? peer->eid : "(none)");
    snprintf(last_check_path, sizeof last_check_path, "%s", peer->path);
    note("check: a session from %s, eid %s, path %s", peer->addr, last_check_eid, peer->path);
    return 0;
}

/* What a test listener is: its name and its own Endpoint ID. */
struct lis_info {
    const char *name, *eid;
};

static void on_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                      const struct usp_mtp_peer *peer, void *user)
{
    const struct lis_info *li = user;
    const char *lname = li->name;
    if (n_accepted >= MAX_ACCEPTED) {
        CHECK(false, "too many accepted sessions");
        usp_mtp_conn_free(c);
        return;
    }
    struct ep *e = &accepted[n_accepted++];
    memset(e, 0, sizeof *e);
    e->first_type = -1;
    char *name = malloc(32);
    snprintf(name, 32, "%s/s%d", lname, n_accepted);
    e->name = name;
    e->c = c;
    snprintf(e->eid, sizeof e->eid, "%s", li->eid);
    snprintf(e->peer, sizeof e->peer, "%s", peer->eid ? peer->eid : "");
    e->on_record = accepted_on_record;
    e->on_state = accepted_on_state;
    CHECK(usp_mtp_get_state(c) == USP_MTP_CONNECTING, "%s: CONNECTING inside accept", name);
    CHECK(usp_mtp_open(c) == USP_EPERM, "%s: an accepted session cannot be opened", name);
    const char *pe = usp_mtp_peer_eid(c);
    CHECK((pe == NULL) == (peer->eid == NULL) && (!pe || strcmp(pe, peer->eid) == 0),
          "%s: usp_mtp_peer_eid gives the peer's eid (%s)", name, pe ? pe : "none");
    usp_mtp_conn_set_callbacks(c, &callbacks, e);
    note("accepted %s from %s (eid %s)", name, peer->addr, peer->eid ? peer->eid : "none");
}

static const struct usp_mtp_listener_callbacks lcb = {.check = on_check, .accept = on_accept};
static const struct usp_mtp_listener_callbacks lcb_nocheck = {.accept = on_accept};

static struct usp_mtp_listener *listen_on(enum usp_mtp_role role, const char *eid, const char *url,
                                          uint32_t max_record, uint32_t keepalive,
                                          const struct usp_mtp_listener_callbacks *cb,
                                          const char *name)
{
    struct usp_mtp_config cfg;
    cfg_init(&cfg, role, eid, url);
    cfg.max_record = max_record;
    cfg.keepalive_s = keepalive;
    char why[200];
    struct usp_mtp_listener *l = NULL;
    static struct lis_info infos[8];
    static int n_infos;
    struct lis_info *li = &infos[n_infos++ % 8];
    li->name = name;
    li->eid = eid;
    int rc = usp_mtp_listen(ctx, &cfg, cb, li, &l, why, sizeof why);
    CHECK(rc == 0, "%s: listening on %s (%s)", name, url, rc ? why : "no error");
    if (rc)
        exit(1);
    return l;
}

static void free_accepted(void)
{
    for (int i = 0; i < n_accepted; i++) {
        usp_mtp_conn_free(accepted[i].c);
        accepted[i].c = NULL;
        free((char *)accepted[i].name);
    }
    n_accepted = 0;
}

static uv_timer_t watchdog, pause_timer;
static void finish_all(void);

static void on_watchdog(uv_timer_t *t)
{
    CHECK(false, "the scenario finished in time");
    finish_all();
}

static void start_watchdog(uint64_t ms)
{
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_watchdog, ms, 0);
    uv_timer_init(loop, &pause_timer);
}

static void stop_timers(void)
{
    uv_timer_stop(&watchdog);
    if (!uv_is_closing((uv_handle_t *)&watchdog))
        uv_close((uv_handle_t *)&watchdog, NULL);
    uv_timer_stop(&pause_timer);
    if (!uv_is_closing((uv_handle_t *)&pause_timer))
        uv_close((uv_handle_t *)&pause_timer, NULL);
}

/* ---- exchange ---- */

static struct ep agent, ctl_cli;
static struct usp_mtp_listener *lis1, *lis2;
static int phase, rounds;
static struct ep *ctl_side, *agent_side; /* accepted sessions */
static bool big_checked, oversize_checked, idle_done, stage2_done, srv_got_disconnect;
static char url1[128], url2[128];
static struct usp_mtp_stats totals;

#define AGENT_EID "doc::agent%21"
#define CTL_EID   "proto::ctl"
#define SRV_EID   "proto::agent-srv"
#define BIG_LEN   60000

static void finish_all(void)
{
    if (!ctx)
        return;
    totals = *usp_mtp_ctx_stats(ctx);
    stop_timers();
    usp_mtp_conn_free(agent.c);
    usp_mtp_conn_free(ctl_cli.c);
    agent.c = ctl_cli.c = NULL;
    free_accepted();
    usp_mtp_listener_close(lis1);
    usp_mtp_listener_close(lis2);
    lis1 = lis2 = NULL;
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
}

static void check_connect_record(const char *who, const struct got *g, const char *from,
                                 const char *to)
{
    CHECK(g->rec && g->rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT,
          "%s: the first record is a WebSocketConnectRecord [R-MTP.6]", who);
    if (g->rec)
        CHECK(strcmp(g->rec->from_id, from) == 0 && strcmp(g->rec->to_id, to) == 0 &&
                  strcmp(g->rec->version, USP_VERSION_DEFAULT) == 0,
              "%s: WebSocketConnectRecord from %s to %s, version %s", who, g->rec->from_id,
              g->rec->to_id, g->rec->version);
}

static void stage2(void);

static void on_idle_over(uv_timer_t *t)
{
    idle_done = true;
    CHECK(agent.downs == 0 && agent.state == USP_MTP_UP,
          "agent: still UP after 12 s idle with keepalive 5 s (pongs answered) [R-WS.17]");
    CHECK(ctl_side && ctl_side->closed == 0 && ctl_side->state == USP_MTP_UP,
          "controller side: still UP after 12 s idle (it pings too)");
    note("idle over; the agent's side: tx %llu rx %llu",
         (unsigned long long)agent.c->stats.tx_records,
         (unsigned long long)agent.c->stats.rx_records);
    stage2();
}

/* Controller side of session 1 (accepted). */
static void ctl_side_record(struct ep *e, const uint8_t *buf, size_t len,
                            const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, CTL_EID);
    if (e->first_type < 0) {
        e->first_type = g.rec ? (int)g.rec->record_type_case : 0;
        check_connect_record("controller (accepted)", &g, AGENT_EID, CTL_EID);
        CHECK(strcmp(rx->arrived_on, "/usp") == 0, "controller: arrived on the resource path %s",
              rx->arrived_on);
        rounds = 0;
        int rc = send_msg(e, AGENT_EID, "get-1", USP__HEADER__MSG_TYPE__GET);
        CHECK(rc == 0, "controller: first Get sent (%d)", rc);
        goto out;
    }
    int kind = kind_of(&g);
    if (g.rec && g.rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
        CHECK(phase == 5, "controller: DisconnectRecord after the agent's close (phase %d)", phase);
        CHECK(g.rec->disconnect->reason_code == USP_ERR_SESS_CONTEXT_TERMINATED &&
                  strcmp(g.rec->disconnect->reason, "test over") == 0,
              "DisconnectRecord: reason_code %u, reason \"%s\" [R-MTP.7]",
              g.rec->disconnect->reason_code, g.rec->disconnect->reason);
        phase = 6;
    } else if (kind == USP__HEADER__MSG_TYPE__GET_RESP) {
        char want[32];
        snprintf(want, sizeof want, "get-%d", rounds + 1);
        if (strcmp(g.msg->header->msg_id, want) != 0)
            CHECK(false, "controller: GetResp %s in order (got %s)", want, g.msg->header->msg_id);
        rounds++;
        if (rounds < 20) {
            snprintf(want, sizeof want, "get-%d", rounds + 1);
            send_msg(e, AGENT_EID, want, USP__HEADER__MSG_TYPE__GET);
        } else {
            CHECK(true, "controller: 20 Get/GetResp round trips");
            phase = 2;
            /* Oversized, then big but allowed, then a marker. */
            size_t n = 65537;
            uint8_t *b = calloc(1, BIG_LEN > n ? BIG_LEN : n);
            CHECK(usp_mtp_send(e->c, NULL, b, n) == 0,
                  "controller: a %zu-byte record goes out (its limit is larger)", n);
            for (size_t i = 0; i < BIG_LEN; i++)
                b[i] = (uint8_t)(i % 251);
            CHECK(usp_mtp_send(e->c, NULL, b, BIG_LEN) == 0,
                  "controller: a %d-byte record goes out", BIG_LEN);
            free(b);
            CHECK(send_msg(e, AGENT_EID, "after-big", USP__HEADER__MSG_TYPE__GET) == 0,
                  "controller: a Get follows the big records");
        }
    } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY) {
        CHECK(send_msg(e, AGENT_EID, "notify-1", USP__HEADER__MSG_TYPE__NOTIFY_RESP) == 0,
              "controller: NotifyResp sent on the session");
    } else {
        CHECK(false, "controller: unexpected record (%zu bytes, kind %d)", len, kind);
    }
out:
    usp_arena_free(g.a);
}

static void agent_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    CHECK(len <= 65536, "agent: nothing over max_record is delivered (%zu)", len);
    if (len == BIG_LEN) {
        bool same = true;
        for (size_t i = 0; i < len && same; i++)
            same = buf[i] == (uint8_t)(i % 251);
        CHECK(same, "agent: a %d-byte record arrives intact (read in pieces)", BIG_LEN);
        big_checked = true;
        return;
    }
    struct got g;
    got_decode(&g, buf, len, AGENT_EID);
    int kind = kind_of(&g);
    if (kind == USP__HEADER__MSG_TYPE__GET) {
        const char *id = g.msg->header->msg_id;
        if (strcmp(id, "after-big") == 0) {
            CHECK(big_checked, "agent: the big record came before the marker");
            CHECK(e->c->stats.rx_oversize == 1,
                  "agent: the oversized record was dropped and counted (rx_oversize %llu)",
                  (unsigned long long)e->c->stats.rx_oversize);
            oversize_checked = true;
            uint8_t *b = calloc(1, 65537);
            CHECK(usp_mtp_send(e->c, NULL, b, 65537) == USP_ERANGE && e->c->stats.tx_oversize == 1,
                  "agent: a record over its max_record is refused");
            free(b);
            phase = 3;
            CHECK(send_msg(e, CTL_EID, "notify-1", USP__HEADER__MSG_TYPE__NOTIFY) == 0,
                  "agent: Notify sent");
        } else {
            send_msg(e, CTL_EID, id, USP__HEADER__MSG_TYPE__GET_RESP);
        }
    } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY_RESP) {
        CHECK(phase == 3, "agent: NotifyResp arrived");
        phase = 4;
        note("idle for 12 s with keepalive 5 s");
        uv_timer_start(&pause_timer, on_idle_over, 12000, 0);
    } else {
        CHECK(false, "agent: unexpected record (%zu bytes)", len);
    }
    usp_arena_free(g.a);
}

/* Stage 2: the agent listens, the controller connects. */
static void srv_side_record(struct ep *e, const uint8_t *buf, size_t len,
                            const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, SRV_EID);
    int kind = kind_of(&g);
    if (g.rec && g.rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
        CHECK(strcmp(g.rec->from_id, CTL_EID) == 0,
              "agent (accepted): DisconnectRecord from the controller");
        srv_got_disconnect = true;
    } else if (kind == USP__HEADER__MSG_TYPE__GET) {
        CHECK(send_msg(e, CTL_EID, g.msg->header->msg_id, USP__HEADER__MSG_TYPE__GET_RESP) == 0,
              "agent (accepted): GetResp sent");
        CHECK(send_msg(e, CTL_EID, "notify-2", USP__HEADER__MSG_TYPE__NOTIFY) == 0,
              "agent (accepted): Notify sent");
    } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY_RESP) {
        CHECK(true, "agent (accepted): NotifyResp arrived");
        stage2_done = true;
        phase = 8;
        CHECK(usp_mtp_close(ctl_cli.c, 0, "bye") == 0, "controller client: graceful close");
    } else {
        CHECK(false, "agent (accepted): unexpected record (%zu bytes)", len);
    }
    usp_arena_free(g.a);
}

static void ctl_cli_record(struct ep *e, const uint8_t *buf, size_t len,
                           const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, CTL_EID);
    if (e->first_type < 0) {
        e->first_type = 0;
        check_connect_record("controller client", &g, SRV_EID, CTL_EID);
        CHECK(send_msg(e, SRV_EID, "get-s2", USP__HEADER__MSG_TYPE__GET) == 0,
              "controller client: Get sent to the agent");
        goto out;
    }
    int kind = kind_of(&g);
    if (kind == USP__HEADER__MSG_TYPE__GET_RESP)
        CHECK(strcmp(g.msg->header->msg_id, "get-s2") == 0, "controller client: GetResp arrived");
    else if (kind == USP__HEADER__MSG_TYPE__NOTIFY)
        CHECK(send_msg(e, SRV_EID, "notify-2", USP__HEADER__MSG_TYPE__NOTIFY_RESP) == 0,
              "controller client: NotifyResp sent");
    else
        CHECK(false, "controller client: unexpected record");
out:
    usp_arena_free(g.a);
}

static void accepted_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && strstr(e->name, "lis1")) {
        ctl_side = e;
        e->on_record = ctl_side_record;
        CHECK(strcmp(e->peer, AGENT_EID) == 0,
              "controller listener: the agent's eid decoded from the query: %s [R-WS.10b/c]",
              e->peer);
    }
    if (ev->state == USP_MTP_UP && strstr(e->name, "lis2")) {
        agent_side = e;
        e->on_record = srv_side_record;
        CHECK(strcmp(e->peer, CTL_EID) == 0, "agent listener: the controller's eid %s", e->peer);
    }
    if (ev->state == USP_MTP_CLOSED && e == ctl_side) {
        CHECK(phase == 6, "controller side: CLOSED after the DisconnectRecord (phase %d)", phase);
        CHECK(ev->reason == USP_MTP_R_PEER_CLOSED && ev->code == 1000,
              "controller side: the agent closed with 1000 (%s %d)",
              usp_mtp_reason_name(ev->reason), ev->code);
        CHECK(usp_mtp_send(e->c, NULL, (const uint8_t *)"x", 1) == USP_EPERM,
              "controller side: nothing is sent once CLOSED");
    }
    if (ev->state == USP_MTP_CLOSED && e == agent_side) {
        CHECK(srv_got_disconnect, "agent side: CLOSED after the DisconnectRecord");
        CHECK(ev->reason == USP_MTP_R_PEER_CLOSED && ev->code == 1000,
              "agent side: the controller closed with 1000 (%s %d)",
              usp_mtp_reason_name(ev->reason), ev->code);
    }
    if (ctl_side && ctl_side->closed && agent_side && agent_side->closed && agent.closed &&
        ctl_cli.closed)
        finish_all();
}

static void agent_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_CLOSED)
        CHECK(ev->reason == USP_MTP_R_CLOSED, "agent: CLOSED with reason closed (%s)",
              usp_mtp_reason_name(ev->reason));
    if (ev->state == USP_MTP_CLOSED && ctl_cli.c && ctl_cli.state == USP_MTP_IDLE) {
        /* Session 1 is over: stage 2 already ran. */
    }
    if (ctl_side && ctl_side->closed && agent_side && agent_side->closed && agent.closed &&
        ctl_cli.closed)
        finish_all();
}

static void ctl_cli_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(ev->reason == USP_MTP_R_CLOSED, "controller client: CLOSED with reason closed");
        /* Both stages done: the agent closes session 1. */
        phase = 5;
        CHECK(usp_mtp_close(agent.c, USP_ERR_SESS_CONTEXT_TERMINATED, "test over") == 0,
              "agent: graceful close");
        CHECK(usp_mtp_close(agent.c, 0, NULL) == USP_EPERM, "agent: a second close is refused");
        CHECK(usp_mtp_send(agent.c, NULL, (const uint8_t *)"x", 1) == USP_EPERM,
              "agent: nothing is sent after close");
    }
    if (ctl_side && ctl_side->closed && agent_side && agent_side->closed && agent.closed &&
        ctl_cli.closed)
        finish_all();
}

static void stage2(void)
{
    phase = 7;
    lis2 = listen_on(USP_MTP_AGENT, SRV_EID, url2, 65536, 5, &lcb_nocheck, "lis2");
    ep_client(&ctl_cli, "ctl-client", USP_MTP_CONTROLLER, CTL_EID, url2, SRV_EID, 1 << 20, 1, 1000);
    ctl_cli.on_record = ctl_cli_record;
    ctl_cli.on_state = ctl_cli_state;
    CHECK(usp_mtp_open(ctl_cli.c) == 0, "controller client: open");
}

static int run_exchange(int port1, int port2)
{
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port1);
    snprintf(url2, sizeof url2, "ws://127.0.0.1:%d/agent", port2);
    start_watchdog(60000);
    accepted_on_state = accepted_state;
    lis1 =
        listen_on(USP_MTP_CONTROLLER, CTL_EID, url1, USP_MTP_MAX_RECORD_DEFAULT, 5, &lcb, "lis1");
    CHECK(usp_mtp_listener_port(lis1) == port1, "lis1: bound port %u",
          (unsigned)usp_mtp_listener_port(lis1));
    {
        /* The same port again: refused at once with a reason. */
        struct usp_mtp_config cfg;
        cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url1);
        struct usp_mtp_listener *l2 = NULL;
        char why[200];
        int rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l2, why, sizeof why);
        CHECK(rc == USP_EIO && l2 == NULL, "a second listener on port %d fails: %s", port1, why);
        cfg.url = "ws://localhost:1234/";
        rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l2, why, sizeof why);
        CHECK(rc == USP_EINVAL, "a listener on a host name is refused: %s", why);
        cfg.url = "wss://127.0.0.1:1234/";
        rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l2, why, sizeof why);
        CHECK(rc == USP_EINVAL && strstr(why, "needs a CA file"),
              "a wss:// listener without TLS files is refused: %s", why);
        struct usp_mtp_conn *c = NULL;
        rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
        CHECK(rc == USP_EINVAL && c == NULL, "a wss:// connection without TLS files is refused: %s",
              why);
        cfg.url = "ws://127.0.0.1:1234/usp?eid=x";
        rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
        CHECK(rc == USP_EINVAL, "a URL with its own eid parameter is refused: %s", why);
    }
    ep_client(&agent, "agent", USP_MTP_AGENT, AGENT_EID, url1, CTL_EID, 65536, 3, 1500);
    agent.on_record = agent_record;
    agent.on_state = agent_state;
    CHECK(usp_mtp_send(agent.c, NULL, (const uint8_t *)"x", 1) == USP_EPERM &&
              agent.c->stats.tx_refused == 1,
          "agent: send before UP is refused");
    CHECK(usp_mtp_open(agent.c) == 0, "agent: open");
    CHECK(usp_mtp_open(agent.c) == USP_EPERM, "agent: a second open is refused");
    CHECK(agent.state == USP_MTP_IDLE, "agent: no callback from inside open");
    phase = 1;
    uv_run(loop, UV_RUN_DEFAULT);

    CHECK(strcmp(last_check_path, "/agent") == 0 || strcmp(last_check_path, "/usp") == 0,
          "check callback saw the resource path (%s)", last_check_path);
    CHECK(big_checked && oversize_checked && idle_done && stage2_done,
          "every stage ran (big %d, oversize %d, idle %d, stage 2 %d)", big_checked,
          oversize_checked, idle_done, stage2_done);
    CHECK(strcmp(agent.states, "CONNECTING UP CLOSED") == 0, "agent states: %s", agent.states);
    CHECK(strcmp(ctl_cli.states, "CONNECTING UP CLOSED") == 0, "controller client states: %s",
          ctl_cli.states);
    const struct usp_mtp_stats *s = &totals;
    printf("#    totals: tx %llu records %llu bytes, rx %llu records %llu bytes, rx_oversize "
           "%llu, tx_oversize %llu, tx_refused %llu, ups %llu, drops %llu\n",
           (unsigned long long)s->tx_records, (unsigned long long)s->tx_bytes,
           (unsigned long long)s->rx_records, (unsigned long long)s->rx_bytes,
           (unsigned long long)s->rx_oversize, (unsigned long long)s->tx_oversize,
           (unsigned long long)s->tx_refused, (unsigned long long)s->ups,
           (unsigned long long)s->drops);
    CHECK(s->rx_no_reply_to == 0, "no record counted as missing a reply-to");
    CHECK(s->rx_oversize == 1 && s->tx_oversize == 1, "oversize counted once each way");
    CHECK(s->ups == 4 && s->drops == 0, "four sessions came up, none dropped");
    return 0;
}

/* ---- dup: R-WS.4 and R-WS.16 ---- */

static struct ep a1, a2, ax, bx;
static struct usp_mtp_listener *lis_ctl, *lis_agent;
static int dup_stage;
static struct ep *c_first, *c_second, *c_third;

#define DUP_EID "doc::dup"

static void dup_finish(void)
{
    stop_timers();
    usp_mtp_conn_free(a1.c);
    usp_mtp_conn_free(a2.c);
    usp_mtp_conn_free(ax.c);
    usp_mtp_conn_free(bx.c);
    a1.c = a2.c = ax.c = bx.c = NULL;
    free_accepted();
    usp_mtp_listener_close(lis_ctl);
    usp_mtp_listener_close(lis_agent);
    lis_ctl = lis_agent = NULL;
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
}

static void dup_next(void);

static void dup_accepted_record(struct ep *e, const uint8_t *buf, size_t len,
                                const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, CTL_EID);
    if (!g.rec) {
        note("%s: %zu bytes that are not a Record", e->name, len);
        CHECK(usp_mtp_reject(e->c, "not a USP Record") == 0,
              "%s: usp_mtp_reject on an unparseable record", e->name);
        CHECK(usp_mtp_send(e->c, NULL, (const uint8_t *)"x", 1) == USP_EPERM,
              "%s: nothing more is sent once closing with 1003", e->name);
    } else if (g.rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT) {
        note("%s: WebSocketConnectRecord from %s", e->name, g.rec->from_id);
        if (e == c_third) {
            CHECK(dup_stage == 4, "a WebSocketConnectRecord again after the reconnect");
            dup_stage = 5;
            dup_next();
        }
    }
    usp_arena_free(g.a);
}

static void dup_accepted_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && strcmp(e->peer, DUP_EID) == 0) {
        if (!c_first)
            c_first = e;
        else if (!c_second)
            c_second = e;
        else if (!c_third)
            c_third = e;
        e->on_record = dup_accepted_record;
        if (e == c_second) {
            CHECK(c_first->closed == 1, "the first session was closed before the second is UP");
            CHECK(c_first->reason == USP_MTP_R_LOST && c_first->code == 1000,
                  "first session: CLOSED, replaced (%s %d) [R-WS.4]",
                  usp_mtp_reason_name(c_first->reason), c_first->code);
            CHECK(lis_ctl->stats.replaced == 1, "listener: replaced counted (%llu)",
                  (unsigned long long)lis_ctl->stats.replaced);
        }
    }
    if (ev->state == USP_MTP_CLOSED && e == c_second) {
        CHECK(ev->reason == USP_MTP_R_LOST && ev->code == 1003,
              "second session: CLOSED after the 1003 (%s %d)", usp_mtp_reason_name(ev->reason),
              ev->code);
    }
}

static void a1_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && dup_stage == 0) {
        dup_stage = 1;
        CHECK(usp_mtp_open(a2.c) == 0, "a2 (same Endpoint ID): open");
    }
    if (ev->state == USP_MTP_DOWN && dup_stage <= 2) {
        note("a1 went down: %s", ev->detail);
        CHECK(usp_mtp_close(a1.c, 0, NULL) == 0, "a1: close (stop retrying)");
    }
}

static void a2_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && dup_stage == 1) {
        dup_stage = 2;
        /* Garbage on the session: the controller must close it with 1003. */
        CHECK(usp_mtp_send(a2.c, NULL, (const uint8_t *)"this is not a USP record", 24) == 0,
              "a2: sends bytes that are not a Record");
    } else if (ev->state == USP_MTP_DOWN && dup_stage == 2) {
        CHECK(ev->reason == USP_MTP_R_PEER_CLOSED && ev->code == 1003,
              "a2: the controller closed with 1003 [R-WS.16] (%s %d)",
              usp_mtp_reason_name(ev->reason), ev->code);
        CHECK(ev->retry_ms >= 1000 && ev->retry_ms <= 2000,
              "a2: retries after the back-off (%u ms, m = 1 s, k = 2)", ev->retry_ms);
        dup_stage = 3;
    } else if (ev->state == USP_MTP_UP && dup_stage == 3) {
        CHECK(e->t_up - e->t_first_down >= 1000, "a2: back UP %llu ms after going down",
              (unsigned long long)(e->t_up - e->t_first_down));
        dup_stage = 4;
    }
}

static void ax_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_DOWN && dup_stage == 6) {
        CHECK(ev->reason == USP_MTP_R_REFUSED && ev->code == 403,
              "ax: its session is refused (HTTP 403) while the controller's own connection is "
              "up (%s %d: %s) [R-WS.4]",
              usp_mtp_reason_name(ev->reason), ev->code, ev->detail);
        CHECK(lis_ctl->stats.refused >= 1, "controller listener: refused counted (%llu)",
              (unsigned long long)lis_ctl->stats.refused);
        CHECK(ax.ups == 0, "ax: never UP");
        dup_stage = 7;
        dup_finish();
    }
}

static void bx_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && dup_stage == 5) {
        dup_stage = 6;
        CHECK(usp_mtp_open(ax.c) == 0, "ax: open towards the controller listener");
    }
}

static void dup_next(void)
{
    if (dup_stage == 5) {
        /* The controller connects to agent doc::x; then doc::x connects to the
         * controller: refused. */
        CHECK(usp_mtp_open(bx.c) == 0, "bx (controller client to doc::x): open");
    }
}

static int run_dup(int port1, int port2)
{
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port1);
    snprintf(url2, sizeof url2, "ws://127.0.0.1:%d/x", port2);
    start_watchdog(30000);
    accepted_on_state = dup_accepted_state;
    lis_ctl = listen_on(USP_MTP_CONTROLLER, CTL_EID, url1, 65536, 0, &lcb_nocheck, "lis-ctl");
    lis_agent = listen_on(USP_MTP_AGENT, "doc::x", url2, 65536, 0, &lcb_nocheck, "lis-x");
    ep_client(&a1, "a1", USP_MTP_AGENT, DUP_EID, url1, CTL_EID, 65536, 1, 2000);
    ep_client(&a2, "a2", USP_MTP_AGENT, DUP_EID, url1, CTL_EID, 65536, 1, 2000);
    ep_client(&ax, "ax", USP_MTP_AGENT, "doc::x", url1, CTL_EID, 65536, 1, 2000);
    ep_client(&bx, "bx", USP_MTP_CONTROLLER, CTL_EID, url2, "doc::x", 65536, 1, 2000);
    a1.on_state = a1_state;
    a2.on_state = a2_state;
    ax.on_state = ax_state;
    bx.on_state = bx_state;
    CHECK(usp_mtp_open(a1.c) == 0, "a1: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(dup_stage == 7, "dup: every stage ran (%d)", dup_stage);
    CHECK(strcmp(a1.states, "CONNECTING UP DOWN CLOSED") == 0, "a1 states: %s", a1.states);
    return 0;
}

/* ---- serve / client: the server goes away and comes back ---- */

static struct ep cl;
static struct usp_mtp_listener *srv_lis;
static int cl_rounds, cl_connects;
static bool killed;

static void serve_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, CTL_EID);
    if (g.rec && g.rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT) {
        note("%s: WebSocketConnectRecord from %s", e->name, g.rec->from_id);
        send_msg(e, g.rec->from_id, "get-1", USP__HEADER__MSG_TYPE__GET);
    } else if (kind_of(&g) == USP__HEADER__MSG_TYPE__GET_RESP) {
        int n = atoi(g.msg->header->msg_id + 4);
        if (n < 5) {
            char id[16];
            snprintf(id, sizeof id, "get-%d", n + 1);
            send_msg(e, g.rec->from_id, id, USP__HEADER__MSG_TYPE__GET);
        } else {
            printf("SERVED %s\n", g.rec->from_id);
            fflush(stdout);
        }
    }
    usp_arena_free(g.a);
}

static void serve_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_CLOSED) {
        /* The client said goodbye: done. */
        printf("SESSION-CLOSED %s %d\n", usp_mtp_reason_name(ev->reason), ev->code);
        fflush(stdout);
        if (ev->reason == USP_MTP_R_PEER_CLOSED) {
            free_accepted();
            usp_mtp_listener_close(srv_lis);
            usp_mtp_ctx_free(ctx);
        }
    }
}

static int run_serve(int port)
{
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port);
    accepted_on_record = serve_record;
    accepted_on_state = serve_state;
    srv_lis = listen_on(USP_MTP_CONTROLLER, CTL_EID, url1, 65536, 5, &lcb_nocheck, "srv");
    printf("LISTENING %d\n", port);
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

static void client_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, e->eid);
    if (kind_of(&g) == USP__HEADER__MSG_TYPE__GET) {
        send_msg(e, CTL_EID, g.msg->header->msg_id, USP__HEADER__MSG_TYPE__GET_RESP);
        if (strcmp(g.msg->header->msg_id, "get-5") == 0) {
            cl_rounds++;
            note("client: 5 Gets answered on connection %d", cl_connects);
            if (!killed) {
                killed = true;
                printf("KILL-SERVER-NOW\n");
                fflush(stdout);
            } else {
                CHECK(usp_mtp_close(e->c, 0, "done") == 0, "client: graceful close");
            }
        }
    }
    usp_arena_free(g.a);
}

static void client_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP) {
        cl_connects++;
        if (killed) {
            uint64_t took = e->t_up - e->t_first_down;
            note("client back %.3f s after the server went away (retry counter reached %u)",
                 took / 1000.0, e->max_attempt);
            CHECK(took >= 1000, "client: waited at least the minimum back-off (%llu ms)",
                  (unsigned long long)took);
            CHECK(took <= e->retry_sum_hi_ms + 3000,
                  "client: reconnected within its back-off window (%llu ms <= %llu + 3000 ms)",
                  (unsigned long long)took, (unsigned long long)e->retry_sum_hi_ms);
        }
    }
    if (ev->state == USP_MTP_DOWN && killed && e->downs == 1)
        CHECK(ev->reason == USP_MTP_R_LOST || ev->reason == USP_MTP_R_PEER_CLOSED,
              "client: DOWN when the server went away (%s)", usp_mtp_reason_name(ev->reason));
    if (ev->state == USP_MTP_CLOSED) {
        stop_timers();
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        usp_mtp_ctx_free(ctx);
    }
}

static void on_client_watchdog(uv_timer_t *t)
{
    CHECK(false, "client: finished in time (%s)", cl.states);
    stop_timers();
    usp_mtp_conn_free(cl.c);
    cl.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static int run_client(int port)
{
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port);
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_client_watchdog, 40000, 0);
    uv_timer_init(loop, &pause_timer);
    ep_client(&cl, "client", USP_MTP_AGENT, "proto::comeback", url1, CTL_EID, 65536, 1, 2000);
    cl.on_record = client_record;
    cl.on_state = client_state;
    CHECK(usp_mtp_open(cl.c) == 0, "client: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(cl_rounds == 2 && cl_connects >= 2,
          "client: exchanged before and after (%d rounds, %d "
          "sessions)",
          cl_rounds, cl_connects);
    CHECK(strncmp(cl.states, "CONNECTING UP DOWN", 18) == 0 && cl.closed == 1, "client states: %s",
          cl.states);
    return 0;
}

/* ---- listen: for the script's raw fake clients ---- */

static int listen_want, listen_closed;
static struct usp_mtp_listener *raw_lis;

static void echo_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    note("%s: %zu bytes, echoed", e->name, len);
    int rc = usp_mtp_send(e->c, NULL, buf, len);
    if (rc)
        CHECK(false, "%s: echo sent (%d)", e->name, rc);
}

static void raw_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_CLOSED && ++listen_closed == listen_want) {
        CHECK(raw_lis->stats.accepted == (uint64_t)listen_want, "listener: %d sessions accepted",
              listen_want);
        CHECK(raw_lis->stats.refused >= 2, "listener: %llu requests refused",
              (unsigned long long)raw_lis->stats.refused);
        const struct usp_mtp_stats *s = usp_mtp_ctx_stats(ctx);
        CHECK(s->rx_oversize == 1, "listener: one oversized message dropped (%llu)",
              (unsigned long long)s->rx_oversize);
        printf("#    peers seen:");
        for (int i = 0; i < n_accepted; i++)
            printf(" %s", accepted[i].peer[0] ? accepted[i].peer : "(none)");
        printf("\n");
        stop_timers();
        free_accepted();
        usp_mtp_listener_close(raw_lis);
        raw_lis = NULL;
        usp_mtp_ctx_free(ctx);
        ctx = NULL;
    }
}

static void on_listen_watchdog(uv_timer_t *t)
{
    CHECK(false, "listen: %d of %d sessions ended in time", listen_closed, listen_want);
    stop_timers();
    free_accepted();
    usp_mtp_listener_close(raw_lis);
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
}

static int run_listen(int port, int n)
{
    listen_want = n;
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port);
    accepted_on_record = echo_record;
    accepted_on_state = raw_state;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_listen_watchdog, 40000, 0);
    uv_timer_init(loop, &pause_timer);
    raw_lis = listen_on(USP_MTP_AGENT, SRV_EID, url1, 4096, 0, &lcb, "raw");
    printf("LISTENING %d\n", port);
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(listen_closed == n, "listen: %d sessions ended", listen_closed);
    return 0;
}

/* ---- fake-client: against the script's broken or silent server ---- */

static struct ep fc;
static const char *fc_mode;

static void fc_done(void)
{
    stop_timers();
    usp_mtp_conn_free(fc.c);
    fc.c = NULL;
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
}

static void fc_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (strcmp(fc_mode, "broken") == 0 && ev->state == USP_MTP_DOWN) {
        CHECK(ev->reason == USP_MTP_R_REFUSED,
              "broken server: refused without v1.usp in the answer [R-WS.12] (%s: %s)",
              usp_mtp_reason_name(ev->reason), ev->detail);
        if (e->downs == 2)
            fc_done();
    }
    if (strcmp(fc_mode, "silent") == 0) {
        if (ev->state == USP_MTP_DOWN) {
            uint64_t after = uv_now(loop) - e->t_up;
            CHECK(ev->reason == USP_MTP_R_KEEPALIVE,
                  "silent server: DOWN with reason keepalive (%s)",
                  usp_mtp_reason_name(ev->reason));
            CHECK(after >= 9000 && after <= 12000,
                  "silent server: noticed %.3f s after UP (keepalive 5 s: a ping at 5 s, no answer "
                  "by 10 s)",
                  after / 1000.0);
            fc_done();
        }
    }
}

static void fc_watchdog(uv_timer_t *t)
{
    CHECK(false, "fake-client %s: finished in time (%s)", fc_mode, fc.states);
    fc_done();
}

static int run_fake_client(int port, const char *mode)
{
    fc_mode = mode;
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port);
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, fc_watchdog, 25000, 0);
    uv_timer_init(loop, &pause_timer);
    ep_client(&fc, mode, USP_MTP_AGENT, AGENT_EID, url1, CTL_EID, 65536, 1, 2000);
    fc.on_state = fc_state;
    CHECK(usp_mtp_open(fc.c) == 0, "%s: open", mode);
    uv_run(loop, UV_RUN_DEFAULT);
    if (strcmp(mode, "broken") == 0)
        CHECK(fc.ups == 0 && fc.downs == 2, "broken server: never UP, refused twice (%s)",
              fc.states);
    else
        CHECK(fc.ups == 1 && fc.downs == 1, "silent server: UP once, then DOWN (%s)", fc.states);
    return 0;
}

/* ---- scale ---- */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR itself */
}

/* Heap in use, including large blocks malloc takes with mmap. */
static size_t heap_used(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static int scale_n, scale_up, scale_closed, scale_acc_closed;
static struct usp_mtp_conn **scale_conns;
static uint64_t scale_t0, scale_t_up;

static void scale_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    if (ev->state == USP_MTP_UP && ++scale_up == scale_n) {
        scale_t_up = uv_hrtime();
        uv_stop(loop);
    }
    if (ev->state == USP_MTP_CLOSED && ++scale_closed == scale_n && scale_acc_closed == scale_n)
        uv_stop(loop);
    if (ev->state == USP_MTP_DOWN)
        printf("#    DOWN: %s\n", ev->detail);
}

static const struct usp_mtp_callbacks scale_cb = {.state = scale_state};

static void scale_acc_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    if (ev->state == USP_MTP_CLOSED) {
        usp_mtp_conn_free(c);
        if (++scale_acc_closed == scale_n && scale_closed == scale_n)
            uv_stop(loop);
    }
}

static const struct usp_mtp_callbacks scale_acc_cb = {.state = scale_acc_state};
static int scale_accepted;
static struct usp_mtp_conn **scale_acc;

static void scale_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                         const struct usp_mtp_peer *peer, void *user)
{
    usp_mtp_conn_set_callbacks(c, &scale_acc_cb, NULL);
    if (scale_accepted < scale_n)
        scale_acc[scale_accepted] = c;
    scale_accepted++;
}

static const struct usp_mtp_listener_callbacks scale_lcb = {.accept = scale_accept};

static int run_scale(int port, int n)
{
    scale_n = n;
    scale_conns = calloc((size_t)n, sizeof *scale_conns);
    scale_acc = calloc((size_t)n, sizeof *scale_acc);
    char(*eids)[48] = calloc((size_t)n, sizeof *eids);
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port);
    int fd0 = count_fds();
    size_t m0 = heap_used();
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url1);
    struct usp_mtp_listener *l = NULL;
    char why[200];
    CHECK(usp_mtp_listen(ctx, &cfg, &scale_lcb, NULL, &l, why, sizeof why) == 0,
          "scale: listening");
    int fd1 = count_fds();
    size_t m1 = heap_used();
    for (int i = 0; i < n; i++) {
        snprintf(eids[i], sizeof eids[i], "proto::scale-%d", i);
        cfg_init(&cfg, USP_MTP_AGENT, eids[i], url1);
        cfg.peer_eid = CTL_EID;
        cfg.peer_dest = url1;
        cfg.keepalive_s = 30;
        if (usp_mtp_conn_new(ctx, &cfg, &scale_cb, NULL, &scale_conns[i], why, sizeof why)) {
            CHECK(false, "scale: connection %d: %s", i, why);
            return 1;
        }
    }
    size_t m2 = heap_used();
    scale_t0 = uv_hrtime();
    for (int i = 0; i < n; i++)
        usp_mtp_open(scale_conns[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(scale_t_up - scale_t0) / 1e9;
    /* Let the accepted side catch up with the last WebSocketConnectRecords. */
    for (int i = 0; i < 50 && (int)usp_mtp_ctx_stats(ctx)->rx_records < n; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    size_t m3 = heap_used();
    int fd2 = count_fds();
    CHECK(scale_up == n, "scale: %d of %d agents UP", scale_up, n);
    CHECK(scale_accepted == n, "scale: %d of %d sessions accepted", scale_accepted, n);
    CHECK(l->stats.accepted == (uint64_t)n, "scale: the listener counted %llu",
          (unsigned long long)l->stats.accepted);
    printf("#    %d WebSocket sessions UP (TCP, upgrade, 101) in %.3f s: %.0f sessions/s with at "
           "most %u connecting\n",
           n, secs, n / secs, ctx->max_connecting);
    double fds = (double)(fd2 - fd1) / n;
    printf("#    file descriptors: %d for the context and listener, %.2f per session pair "
           "(client socket + accepted socket)\n",
           fd1 - fd0, fds);
    CHECK(fds <= 2.01, "scale: %.2f file descriptors per client/server pair (one each)", fds);
    printf("#    sizeof(struct ws_conn) %zu bytes (+ its strings), struct usp_mtp_conn %zu; "
           "libwebsockets reads into %d bytes per session\n",
           mtp__ws_conn_size(), sizeof(struct usp_mtp_conn), 1024);
    if (m3 > m0) { /* not under ASan, which has its own allocator */
        printf("#    heap: lws context + listener %.0f KB (the lws fd table follows the fd limit, "
               "%d here); per client connection before open %.0f bytes; per session pair once "
               "up (both ends, incl. libwebsockets) %.0f bytes\n",
               (double)(m1 - m0) / 1024, (int)sysconf(_SC_OPEN_MAX), (double)(m2 - m1) / n,
               (double)(m3 - m2) / n);
    }
    for (int i = 0; i < n; i++)
        usp_mtp_close(scale_conns[i], 0, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(scale_closed == n, "scale: %d of %d closed gracefully", scale_closed, n);
    CHECK(scale_acc_closed == n, "scale: %d of %d accepted sessions saw the close",
          scale_acc_closed, n);
    for (int i = 0; i < n; i++)
        usp_mtp_conn_free(scale_conns[i]);
    usp_mtp_listener_close(l);
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
    free(scale_conns);
    free(scale_acc);
    free(eids);
    return 0;
}

/* ---- nothing listening ---- */

static void on_lonely_done(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    usp_mtp_conn_free(fc.c);
    fc.c = NULL;
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
}

static int run_unused_port(int port)
{
    snprintf(url1, sizeof url1, "ws://127.0.0.1:%d/usp", port);
    ep_client(&fc, "lonely", USP_MTP_AGENT, "proto::lonely", url1, NULL, 65536, 1, 2000);
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_lonely_done, 3500, 0);
    CHECK(usp_mtp_open(fc.c) == 0, "lonely: open");
    uv_run(loop, UV_RUN_DEFAULT);
    /* attempt 1 at once, then 1-2 s, then 2-4 s: 2 or 3 attempts in 3.5 s */
    CHECK(fc.downs >= 2 && fc.downs <= 3, "lonely: %d failed attempts in 3.5 s (back-off)",
          fc.downs);
    CHECK(fc.reason == USP_MTP_R_CONNECT, "lonely: DOWN with reason connect (%s)",
          usp_mtp_reason_name(fc.reason));
    CHECK(fc.ups == 0, "lonely: never UP");
    return 0;
}

/* ---- wss:// (TLS both ways) ---- */

static const char *cert_dir;

/* DIR/rel, in one of a few rotating buffers. */
static const char *cpath(const char *rel)
{
    static char bufs[12][600];
    static int next;
    char *b = bufs[next++ % 12];
    snprintf(b, sizeof bufs[0], "%s/%s", cert_dir, rel);
    return b;
}

static uv_timer_t tick;
static void on_tick(uv_timer_t *t)
{
}

/* Runs the loop until `cond` holds or `ms` have passed (tick keeps it
 * waking up). */
#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        uint64_t end_ = uv_now(loop) + (ms);                                                       \
        while (!(cond) && uv_now(loop) < end_)                                                     \
            uv_run(loop, UV_RUN_ONCE);                                                             \
    } while (0)

static void tls_files(struct usp_mtp_config *cfg, const char *ca, const char *cert, const char *key)
{
    cfg->tls.ca_file = ca;
    cfg->tls.cert_file = cert;
    cfg->tls.key_file = key;
}

/* Sessions a wss listener accepted: what its check and accept callbacks
 * saw of the client's certificate. */
static int wss_checks, wss_check_ids_ok, wss_accept_ids_ok;

static bool ids_have(const struct usp_tls_ids *ids, const char *eid)
{
    char why[200];
    return ids && usp_tls_ids_match(ids, eid, why, sizeof why) == 0;
}

static int wss_on_check(struct usp_mtp_listener *l, const struct usp_mtp_peer *peer, void *user)
{
    wss_checks++;
    if (peer->eid && ids_have(peer->ids, peer->eid))
        wss_check_ids_ok++;
    note("check: eid %s, %zu Endpoint ID(s) in the certificate, first %s",
         peer->eid ? peer->eid : "none", peer->ids ? usp_tls_ids_count(peer->ids) : 0,
         peer->ids ? usp_tls_ids_get(peer->ids, 0, NULL) : "-");
    return 0;
}

static void wss_on_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                          const struct usp_mtp_peer *peer, void *user)
{
    if (peer->eid && ids_have(peer->ids, peer->eid))
        wss_accept_ids_ok++;
    on_accept(l, c, peer, user);
}

static const struct usp_mtp_listener_callbacks wss_lcb = {.check = wss_on_check,
                                                          .accept = wss_on_accept};

static struct usp_mtp_listener *wss_listen(enum usp_mtp_role role, const char *eid, int port,
                                           const char *cert, const char *key, const char *name)
{
    static struct lis_info infos[8];
    static int n_infos;
    struct lis_info *li = &infos[n_infos++ % 8];
    li->name = name;
    li->eid = eid;
    char url[128], why[300];
    snprintf(url, sizeof url, "wss://127.0.0.1:%d/usp", port);
    struct usp_mtp_config cfg;
    cfg_init(&cfg, role, eid, url);
    tls_files(&cfg, cpath("ca.pem"), cert, key);
    struct usp_mtp_listener *l = NULL;
    int rc = usp_mtp_listen(ctx, &cfg, &wss_lcb, li, &l, why, sizeof why);
    CHECK(rc == 0, "%s: listening on %s with %s (%s)", name, url, cert, rc ? why : "no error");
    if (rc)
        exit(1);
    return l;
}

/* A wss client for `e`. */
static void wss_client(struct ep *e, const char *name, enum usp_mtp_role role, const char *eid,
                       int port, const char *peer, const char *ca, const char *cert,
                       const char *key)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    e->first_type = -1;
    snprintf(e->eid, sizeof e->eid, "%s", eid);
    snprintf(e->peer, sizeof e->peer, "%s", peer ? peer : "");
    char url[128], why[300];
    snprintf(url, sizeof url, "wss://127.0.0.1:%d/usp", port);
    struct usp_mtp_config cfg;
    cfg_init(&cfg, role, e->eid, url);
    cfg.peer_eid = peer ? e->peer : NULL;
    cfg.peer_dest = peer ? url : NULL;
    tls_files(&cfg, ca, cert, key);
    int rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, e, &e->c, why, sizeof why);
    CHECK(rc == 0, "%s: wss connection created (%s)", name, rc ? why : "no error");
    if (rc)
        exit(1);
    CHECK(usp_mtp_open(e->c) == 0, "%s: open", name);
}

/* Records: USP Records (Connect, Disconnect) are decoded; the others are
 * byte patterns checked here. */
static void wss_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, e->eid);
    int type = g.rec ? (int)g.rec->record_type_case : 0;
    usp_arena_free(g.a);
    if (e->first_type < 0)
        e->first_type = type;
    if (type == USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT)
        return;
    if (type == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
        e->disconnects++;
        return;
    }
    e->rx_after_first++;
    e->rx_bytes += len;
    e->last_len = len;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != (uint8_t)(i * 7 + len)) {
            e->pattern_bad++;
            break;
        }
    }
}

static int send_pattern(struct ep *e, size_t len)
{
    uint8_t *b = malloc(len);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(i * 7 + len);
    int rc = usp_mtp_send(e->c, NULL, b, len);
    free(b);
    return rc;
}

#define WSS_BIG 300000

/* Records both ways between a client and the session its peer accepted. */
static void wss_exchange(const char *what, struct ep *cli, struct ep *acc)
{
    CHECK(send_pattern(cli, 100) == 0 && send_pattern(cli, WSS_BIG) == 0,
          "%s: the client sends 100 and %d bytes", what, WSS_BIG);
    CHECK(send_pattern(acc, 200) == 0 && send_pattern(acc, WSS_BIG) == 0,
          "%s: the accepted side sends 200 and %d bytes", what, WSS_BIG);
    WAIT_UNTIL(cli->rx_after_first >= 2 && acc->rx_after_first >= 2, 5000);
    CHECK(acc->rx_after_first == 2 && acc->rx_bytes == 100 + WSS_BIG && !acc->pattern_bad,
          "%s: the accepted side got both records intact (%d records, %zu bytes)", what,
          acc->rx_after_first, acc->rx_bytes);
    CHECK(cli->rx_after_first == 2 && cli->rx_bytes == 200 + WSS_BIG && !cli->pattern_bad,
          "%s: the client got both records intact (%d records, %zu bytes)", what,
          cli->rx_after_first, cli->rx_bytes);
}

static void print_ids(const char *who, const struct usp_tls_ids *ids)
{
    char list[300] = "";
    size_t n = ids ? usp_tls_ids_count(ids) : 0;
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                 usp_tls_ids_get(ids, i, NULL));
    }
    note("%s: usp_mtp_peer_ids: %s", who, n ? list : "none");
}

/* A client that must fail in its TLS handshake: DOWN, reason connect (or
 * refused), never UP, with `want` in the detail. */
static void wss_expect_down(struct ep *e, enum usp_mtp_reason reason, const char *want,
                            const char *what)
{
    WAIT_UNTIL(e->downs >= 1 || e->ups >= 1, 6000);
    CHECK(e->ups == 0 && e->downs >= 1, "%s: the client never comes UP (DOWN %d)", what, e->downs);
    CHECK(e->reason == reason, "%s: reason %s (%s)", what, usp_mtp_reason_name(reason),
          usp_mtp_reason_name(e->reason));
    CHECK(strstr(e->detail, want) != NULL, "%s: the detail says \"%s\": %s", what, want, e->detail);
    printf("#    %s: DOWN: %s\n", what, e->detail);
    usp_mtp_conn_free(e->c);
    e->c = NULL;
}

static int run_wss(int p1, int p2, int p3, int p4)
{
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 20, 20);
    accepted_on_record = wss_record;
    accepted_on_state = NULL;
    char why[300];

    /* Configuration errors come back from the call. */
    {
        struct usp_mtp_config cfg;
        struct usp_mtp_conn *c = NULL;
        cfg_init(&cfg, USP_MTP_AGENT, "doc::agent1", "wss://127.0.0.1:1/usp");
        int rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
        CHECK(rc == USP_EINVAL, "wss:// without TLS files: USP_EINVAL (%s)", why);
        tls_files(&cfg, cpath("no-such-ca.pem"), cpath("agents/1.pem"), cpath("agents/1.key"));
        rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
        CHECK(rc == USP_ENOENT && strstr(why, "no-such-ca.pem"),
              "a missing CA file: USP_ENOENT naming it (%s)", why);
        struct usp_mtp_listener *l = NULL;
        char url[64];
        snprintf(url, sizeof url, "wss://127.0.0.1:%d/usp", p4);
        cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url);
        tls_files(&cfg, cpath("ca.pem"), cpath("controller.pem"), cpath("no-such.key"));
        rc = usp_mtp_listen(ctx, &cfg, &wss_lcb, NULL, &l, why, sizeof why);
        CHECK(rc == USP_ENOENT && strstr(why, "no-such.key"),
              "a wss listener with a missing key: USP_ENOENT naming it (%s)", why);
    }

    /* Agent client -> controller listener. */
    struct usp_mtp_listener *lc =
        wss_listen(USP_MTP_CONTROLLER, CTL_EID, p1, cpath("controller.pem"),
                   cpath("controller.key"), "ctl-wss");
    static struct ep ag1, ctl2, bad;
    wss_client(&ag1, "agent1", USP_MTP_AGENT, "doc::agent1", p1, CTL_EID, cpath("ca.pem"),
               cpath("agents/1.pem"), cpath("agents/1.key"));
    ag1.on_record = wss_record;
    WAIT_UNTIL(ag1.ups == 1 && n_accepted == 1 && accepted[0].ups == 1 &&
                   accepted[0].first_type >= 0,
               8000);
    CHECK(ag1.ups == 1, "agent1: UP over wss (%s)", ag1.detail);
    CHECK(n_accepted == 1 && accepted[0].ups == 1, "ctl-wss: one session accepted and UP");
    if (ag1.ups != 1 || n_accepted != 1)
        return 1;
    struct ep *cs = &accepted[0];
    CHECK(wss_checks == 1 && wss_check_ids_ok == 1,
          "ctl-wss: the check callback's peer.ids authenticate the agent's eid");
    CHECK(wss_accept_ids_ok == 1, "ctl-wss: the accept callback's peer.ids authenticate it too");
    const struct usp_tls_ids *ids = usp_mtp_peer_ids(cs->c);
    print_ids("ctl-wss/s1", ids);
    CHECK(ids_have(ids, "doc::agent1") && !ids_have(ids, "doc::agent2"),
          "ctl-wss: usp_mtp_peer_ids holds doc::agent1 (and not doc::agent2)");
    ids = usp_mtp_peer_ids(ag1.c);
    print_ids("agent1", ids);
    CHECK(ids_have(ids, CTL_EID), "agent1: usp_mtp_peer_ids holds the controller's %s", CTL_EID);
    CHECK(cs->first_type == USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT,
          "ctl-wss: the first record is the agent's WebSocketConnectRecord [R-MTP.6]");
    wss_exchange("agent1<->ctl-wss", &ag1, cs);

    /* Controller client -> agent listener (its certificate names
     * doc::agent-srv and 127.0.0.1). */
    struct usp_mtp_listener *la =
        wss_listen(USP_MTP_AGENT, "doc::agent-srv", p2, cpath("srv/controller.pem"),
                   cpath("srv/controller.key"), "agent-wss");
    wss_client(&ctl2, "ctl-cli", USP_MTP_CONTROLLER, CTL_EID, p2, "doc::agent-srv", cpath("ca.pem"),
               cpath("controller.pem"), cpath("controller.key"));
    ctl2.on_record = wss_record;
    WAIT_UNTIL(ctl2.ups == 1 && n_accepted == 2 && accepted[1].ups == 1 && ctl2.first_type >= 0,
               8000);
    CHECK(ctl2.ups == 1 && n_accepted == 2, "ctl-cli: UP over wss with the agent's listener (%s)",
          ctl2.detail);
    if (ctl2.ups != 1 || n_accepted != 2)
        return 1;
    struct ep *as = &accepted[1];
    ids = usp_mtp_peer_ids(as->c);
    print_ids("agent-wss/s2", ids);
    CHECK(ids_have(ids, CTL_EID), "agent-wss: usp_mtp_peer_ids holds the controller's %s", CTL_EID);
    CHECK(ids_have(usp_mtp_peer_ids(ctl2.c), "doc::agent-srv"),
          "ctl-cli: usp_mtp_peer_ids holds doc::agent-srv");
    CHECK(ctl2.first_type == USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT,
          "ctl-cli: the agent listener's WebSocketConnectRecord comes first [R-MTP.6]");
    wss_exchange("ctl-cli<->agent-wss", &ctl2, as);

    /* An agent whose certificate another CA signed: the listener refuses
     * it in the handshake. */
    uint64_t refused0 = lc->stats.refused;
    wss_client(&bad, "untrusted-client", USP_MTP_AGENT, "doc::agent3", p1, CTL_EID, cpath("ca.pem"),
               cpath("unknown-ca/agents/3.pem"), cpath("unknown-ca/agents/3.key"));
    wss_expect_down(&bad, USP_MTP_R_CONNECT, "did it refuse our certificate",
                    "untrusted client certificate");
    WAIT_UNTIL(lc->stats.refused > refused0, 2000);
    CHECK(lc->stats.refused == refused0 + 1 && n_accepted == 2,
          "ctl-wss: refused it (refused %llu), no session", (unsigned long long)lc->stats.refused);

    /* The eid in the request is not the one its (trusted) certificate
     * names: 403 [R-SEC.0a]. */
    refused0 = lc->stats.refused;
    wss_client(&bad, "wrong-eid", USP_MTP_AGENT, "doc::agent1", p1, CTL_EID, cpath("ca.pem"),
               cpath("wrong-san/agents/1.pem"), cpath("wrong-san/agents/1.key"));
    wss_expect_down(&bad, USP_MTP_R_REFUSED, "HTTP 403", "eid not in the certificate");
    CHECK(lc->stats.refused == refused0 + 1 && n_accepted == 2,
          "ctl-wss: refused it with 403, no session");

    /* A server whose certificate another CA signed. */
    struct usp_mtp_listener *lu =
        wss_listen(USP_MTP_CONTROLLER, CTL_EID, p3, cpath("unknown-ca/controller.pem"),
                   cpath("unknown-ca/controller.key"), "untrusted-server");
    wss_client(&bad, "to-untrusted", USP_MTP_AGENT, "doc::agent2", p3, CTL_EID, cpath("ca.pem"),
               cpath("agents/2.pem"), cpath("agents/2.key"));
    wss_expect_down(&bad, USP_MTP_R_CONNECT,
                    "the server's certificate did not verify: unable to get local issuer "
                    "certificate",
                    "untrusted server certificate");

    /* A server certificate from our CA but for another host. */
    struct usp_mtp_listener *lh =
        wss_listen(USP_MTP_CONTROLLER, CTL_EID, p4, cpath("wrong-san/broker.pem"),
                   cpath("wrong-san/broker.key"), "wrong-host");
    wss_client(&bad, "to-wrong-host", USP_MTP_AGENT, "doc::agent2", p4, CTL_EID, cpath("ca.pem"),
               cpath("agents/2.pem"), cpath("agents/2.key"));
    wss_expect_down(&bad, USP_MTP_R_CONNECT, "is not for 127.0.0.1", "host mismatch");

    /* Our own certificate cannot be loaded. */
    wss_client(&bad, "no-cert", USP_MTP_AGENT, "doc::agent2", p1, CTL_EID, cpath("ca.pem"),
               cpath("agents/none.pem"), cpath("agents/none.key"));
    wss_expect_down(&bad, USP_MTP_R_CONNECT, "cannot load our certificate", "own certificate");

    /* The good sessions are still up; graceful closes with DisconnectRecords. */
    CHECK(ag1.state == USP_MTP_UP && ctl2.state == USP_MTP_UP && cs->state == USP_MTP_UP &&
              as->state == USP_MTP_UP,
          "the good sessions stayed UP meanwhile");
    CHECK(usp_mtp_close(ag1.c, 0, "bye") == 0 && usp_mtp_close(ctl2.c, 0, "bye") == 0,
          "both clients close");
    WAIT_UNTIL(ag1.closed && ctl2.closed && cs->closed && as->closed, 6000);
    CHECK(ag1.closed && ctl2.closed && cs->closed && as->closed, "all four ends CLOSED (%s / %s)",
          ag1.detail, cs->detail);
    CHECK(cs->disconnects == 1 && as->disconnects == 1,
          "both accepted sides got the DisconnectRecord first [R-MTP.7]");
    CHECK(usp_mtp_peer_ids(cs->c) == NULL, "usp_mtp_peer_ids is NULL once the session is over");

    usp_mtp_conn_free(ag1.c);
    usp_mtp_conn_free(ctl2.c);
    free_accepted();
    usp_mtp_listener_close(lc);
    usp_mtp_listener_close(la);
    usp_mtp_listener_close(lu);
    usp_mtp_listener_close(lh);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
    return 0;
}

/* N agents, each with its own certificate (DIR/agents/<i>.pem, Endpoint
 * ID doc::agent<i>), to one wss controller listener. */
static int wss_ids_ok;

static void wss_scale_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                             const struct usp_mtp_peer *peer, void *user)
{
    if (peer->eid && ids_have(peer->ids, peer->eid) && ids_have(usp_mtp_peer_ids(c), peer->eid))
        wss_ids_ok++;
    scale_accept(l, c, peer, user);
}

static const struct usp_mtp_listener_callbacks wss_scale_lcb = {.accept = wss_scale_accept};

static int run_wss_scale(int port, int n)
{
    scale_n = n;
    scale_conns = calloc((size_t)n, sizeof *scale_conns);
    scale_acc = calloc((size_t)n, sizeof *scale_acc);
    char(*eids)[48] = calloc((size_t)n, sizeof *eids);
    char(*files)[2][600] = calloc((size_t)n, sizeof *files);
    snprintf(url1, sizeof url1, "wss://127.0.0.1:%d/usp", port);
    size_t m0 = heap_used();
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url1);
    tls_files(&cfg, cpath("ca.pem"), cpath("controller.pem"), cpath("controller.key"));
    struct usp_mtp_listener *l = NULL;
    char why[300];
    int rc = usp_mtp_listen(ctx, &cfg, &wss_scale_lcb, NULL, &l, why, sizeof why);
    CHECK(rc == 0, "wss-scale: listening (%s)", rc ? why : "no error");
    if (rc)
        return 1;
    size_t m1 = heap_used();
    for (int i = 0; i < n; i++) {
        snprintf(eids[i], sizeof eids[i], "doc::agent%d", i + 1);
        snprintf(files[i][0], sizeof files[i][0], "%s/agents/%d.pem", cert_dir, i + 1);
        snprintf(files[i][1], sizeof files[i][1], "%s/agents/%d.key", cert_dir, i + 1);
        cfg_init(&cfg, USP_MTP_AGENT, eids[i], url1);
        cfg.peer_eid = CTL_EID;
        cfg.peer_dest = url1;
        cfg.keepalive_s = 30;
        cfg.connect_timeout_ms = 20000;
        tls_files(&cfg, cpath("ca.pem"), files[i][0], files[i][1]);
        if (usp_mtp_conn_new(ctx, &cfg, &scale_cb, NULL, &scale_conns[i], why, sizeof why)) {
            CHECK(false, "wss-scale: connection %d: %s", i, why);
            return 1;
        }
    }
    size_t m2 = heap_used();
    scale_t0 = uv_hrtime();
    for (int i = 0; i < n; i++)
        usp_mtp_open(scale_conns[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(scale_t_up - scale_t0) / 1e9;
    for (int i = 0; i < 100 && (int)usp_mtp_ctx_stats(ctx)->rx_records < n; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    size_t m3 = heap_used();
    CHECK(scale_up == n, "wss-scale: %d of %d agents UP over wss", scale_up, n);
    CHECK(scale_accepted == n, "wss-scale: %d of %d sessions accepted", scale_accepted, n);
    CHECK(wss_ids_ok == n,
          "wss-scale: %d of %d accepted sessions carry the agent's own "
          "Endpoint ID from its certificate",
          wss_ids_ok, n);
    printf("#    %d wss sessions UP (TCP, TLS with both certificates, upgrade, 101) in %.3f s: "
           "%.0f sessions/s\n",
           n, secs, n / secs);
    if (m3 > m0) { /* not under ASan, which has its own allocator */
        printf("#    heap: TLS listener (its vhost and SSL_CTX) and lws context %.0f KB; per "
               "client connection before open %.0f bytes; per wss session pair once up (both "
               "ends, incl. libwebsockets and OpenSSL, buffers released when idle) %.0f bytes\n",
               (double)(m1 - m0) / 1024, (double)(m2 - m1) / n, (double)(m3 - m2) / n);
    }
    for (int i = 0; i < n; i++)
        usp_mtp_close(scale_conns[i], 0, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(scale_closed == n, "wss-scale: %d of %d closed gracefully", scale_closed, n);
    CHECK(scale_acc_closed == n, "wss-scale: %d of %d accepted sessions saw the close",
          scale_acc_closed, n);
    for (int i = 0; i < n; i++)
        usp_mtp_conn_free(scale_conns[i]);
    usp_mtp_listener_close(l);
    usp_mtp_ctx_free(ctx);
    ctx = NULL;
    free(scale_conns);
    free(scale_acc);
    free(eids);
    free(files);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s exchange|dup|serve|client|listen|fake-client|scale|unused-port PORT "
                "[PORT2|N|MODE]\n       %s wss PORT1 PORT2 PORT3 PORT4 CERTDIR\n"
                "       %s wss-scale PORT N CERTDIR\n",
                argv[0], argv[0], argv[0]);
        return 2;
    }
    int port = atoi(argv[2]);
    const char *arg3 = argc > 3 ? argv[3] : "";
    loop = uv_default_loop();
    uv_update_time(loop);
    t_start = uv_now(loop);
    CHECK(usp_mtp_register_ext(&usp_mtp_ws_ext_ops) == 0, "WebSocket binding registered");
    CHECK(usp_mtp_register_ext(&usp_mtp_ws_ext_ops) == 0, "registering again is fine");
    CHECK(usp_mtp_find("ws") == &usp_mtp_ws_ops, "found as \"ws\"");
    /* For debugging: WS_CHECK_LWS_LOG=<lws log bits>, WS_CHECK_LOG=<0-3>. */
    if (getenv("WS_CHECK_LWS_LOG"))
        lws_set_log_level(atoi(getenv("WS_CHECK_LWS_LOG")), NULL);
    struct usp_mtp_ctx_opts o = {.max_connecting = 100};
    if (getenv("WS_CHECK_LOG")) {
        o.log = on_log;
        o.log_level = (enum usp_mtp_log_level)atoi(getenv("WS_CHECK_LOG"));
    }
    ctx = usp_mtp_ctx_new(loop, &o);
    if (!ctx)
        return 1;
    const char *what = argv[1];
    if (strcmp(what, "exchange") == 0)
        run_exchange(port, atoi(arg3));
    else if (strcmp(what, "dup") == 0)
        run_dup(port, atoi(arg3));
    else if (strcmp(what, "serve") == 0)
        run_serve(port);
    else if (strcmp(what, "client") == 0)
        run_client(port);
    else if (strcmp(what, "listen") == 0)
        run_listen(port, atoi(arg3));
    else if (strcmp(what, "fake-client") == 0)
        run_fake_client(port, arg3);
    else if (strcmp(what, "scale") == 0)
        run_scale(port, atoi(arg3));
    else if (strcmp(what, "unused-port") == 0)
        run_unused_port(port);
    else if (strcmp(what, "wss") == 0 && argc >= 7) {
        cert_dir = argv[6];
        run_wss(port, atoi(arg3), atoi(argv[4]), atoi(argv[5]));
    } else if (strcmp(what, "wss-scale") == 0 && argc >= 5) {
        cert_dir = argv[4];
        run_wss_scale(port, atoi(arg3));
    } else {
        fprintf(stderr, "unknown scenario %s\n", what);
        return 2;
    }
    /* The context and every handle are closed: the loop ends. */
    int rc = uv_run(loop, UV_RUN_DEFAULT);
    CHECK(rc == 0 && uv_loop_close(loop) == 0, "loop closed cleanly");
    printf("%s: %d failure(s)\n", what, failures);
    return failures ? 1 : 0;
}
