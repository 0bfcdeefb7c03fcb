/* Test driver for tests/integration/test-stomp-mtp.sh: runs the STOMP
 * binding of libusp against the RabbitMQ the script started, and against a
 * scripted fake STOMP server inside this process for what a real broker
 * will not do on demand (frames split at every byte, merged frames, NUL
 * bytes in bodies, oversized and malformed frames, a server that goes
 * silent). One scenario per run:
 *
 *   exchange  PORT   controller and agent through RabbitMQ: the agent's
 *             STOMPConnectRecord (decoded, version and subscribed
 *             destination checked), Get/GetResp and Notify/NotifyResp both
 *             ways answered at the received reply-to-dest, a binary body
 *             full of NUL bytes, heart-beats negotiated (RabbitMQ rounds to
 *             seconds) and kept through an idle spell of 3 intervals,
 *             oversized records refused and dropped, a clean close that
 *             delivers a DisconnectRecord.
 *   reconnect PORT   as exchange, then prints "KILL-BROKER-NOW"; the script
 *             kills RabbitMQ and starts it again on the same ports; both
 *             connections must come back within their back-off, the agent
 *             sends a new STOMPConnectRecord, and they exchange again.
 *   errors    PORT   refusals by the real broker, each reported with its
 *             ERROR message: bad login, unknown virtual host, a SEND to a
 *             destination RabbitMQ rejects (then the reconnect), a SUBSCRIBE
 *             it rejects, no destination at all [R-STOMP.16]; plus
 *             "localhost" resolved off the loop and a port nobody listens on.
 *   scale     PORT N N agents on RabbitMQ (half bound to 127.0.0.2): time to
 *             come up, file descriptors and heap per connection, a graceful
 *             close of all.
 *   fake-wire        the scripted fake checks every frame the client sends
 *             (STOMP headers and their escapes, SUBSCRIBE, SEND headers, the
 *             Connect and Disconnect Records, never BEGIN/COMMIT/ABORT/ACK/
 *             NACK) and feeds MESSAGEs split at every byte position, one
 *             byte at a time, and merged into one write; every record must
 *             arrive intact, in order, and its echo go to its reply-to-dest.
 *   fake-errors      one client against a fake that, connection after
 *             connection, sends an oversized frame, an ERROR, garbage, an
 *             endless body, an ERROR for the SUBSCRIBE, half a frame, a
 *             CONNECTED of another version, and ignores the DISCONNECT.
 *   fake-notopic     neither subscribe-dest nor a configured destination:
 *             DISCONNECT, DOWN with reason no-topic, and a retry.
 *   tls PORT CERTS OTHER  stomps:// to RabbitMQ's TLS listener (port PORT,
 *             certificates from `uspsim certs` in CERTS; OTHER is a second
 *             set from another CA): controller and agent exchange records
 *             both ways, the agent's STOMPConnectRecord first; a client
 *             whose certificate the broker does not trust is refused, and
 *             so is a broker the client does not trust, each with a clear
 *             detail (the URL host check is in tests/unit/test_tls_stream.c:
 *             the broker listens on 127.0.0.1 only).
 *   fake-heartbeat   heart-beats of 500 ms each way: the client's EOLs come
 *             in time; when the fake goes silent the client drops it after
 *             twice the interval (reason keepalive).
 *
 * Prints "ok ..." for each check that passed, "FAIL ..." otherwise, and
 * exits non-zero on any failure. */
#include <dirent.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/mtp.h"
#include "usp/stomp.h"

/* lib/mtp_stomp.c, for the memory report. */
size_t mtp__stomp_conn_size(void);

static int failures;
static uv_loop_t *loop;
static struct usp_mtp_ctx *ctx;
static uint64_t t_start;
static int port;

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

static uv_timer_t watchdog;

static void watchdog_start(uint64_t ms, uv_timer_cb cb)
{
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, cb, ms, 0);
}

static void watchdog_stop(void)
{
    if (!uv_is_closing((uv_handle_t *)&watchdog)) {
        uv_timer_stop(&watchdog);
        uv_close((uv_handle_t *)&watchdog, NULL);
    }
}

/* ---- endpoints ------------------------------------------------------------ */

struct ep {
    const char *name;
    struct usp_mtp_conn *c;
    char eid[64], dest[160];
    enum usp_mtp_state state;
    enum usp_mtp_reason reason;
    int code;
    char states[256]; /* e.g. "CONNECTING UP DOWN CONNECTING UP CLOSED" */
    char up_detail[256], down_detail[400];
    int ups, downs, closed;
    uint64_t t_first_down, t_up, t_down;
    uint64_t retry_sum_ms; /* the most the back-off may have waited */
    uint32_t retry_m, retry_k, retry_max;
    bool retry_rule_ok;
    /* what a scenario expects */
    enum usp_mtp_reason want_reason;
    const char *want_text;
    int close_after_downs, close_after_ups;
    void (*on_record)(struct ep *e, const uint8_t *rec, size_t len, const struct usp_mtp_rx *rx);
    void (*on_state)(struct ep *e, const struct usp_mtp_event *ev);
};

/* The STOMP server-retry bound for attempt n, ms. */
static double retry_bound_ms(const struct ep *e, uint32_t n)
{
    if (n > 10)
        n = 10;
    double hi = e->retry_m;
    for (uint32_t i = 1; i < n; i++)
        hi *= e->retry_k / 1000.0;
    if (hi > e->retry_max)
        hi = e->retry_max;
    return hi * 1000.0;
}

static void ep_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct ep *e = user;
    if (c != e->c || !ev->detail)
        CHECK(false, "%s: the state callback names its connection and gives a detail", e->name);
    note("%s: %s %s (%d) attempt %u retry %u ms: %s", e->name, usp_mtp_state_name(ev->state),
         usp_mtp_reason_name(ev->reason), ev->code, ev->attempt, ev->retry_ms, ev->detail);
    e->state = ev->state;
    e->reason = ev->reason;
    e->code = ev->code;
    size_t n = strlen(e->states);
    snprintf(e->states + n, sizeof e->states - n, "%s%s", n ? " " : "",
             usp_mtp_state_name(ev->state));
    switch (ev->state) {
    case USP_MTP_UP:
        e->ups++;
        e->t_up = uv_now(loop);
        snprintf(e->up_detail, sizeof e->up_detail, "%s", ev->detail);
        break;
    case USP_MTP_DOWN:
        if (e->downs++ == 0)
            e->t_first_down = uv_now(loop);
        e->t_down = uv_now(loop);
        snprintf(e->down_detail, sizeof e->down_detail, "%s", ev->detail);
        e->retry_sum_ms += ev->retry_ms;
        if (ev->retry_ms > retry_bound_ms(e, ev->attempt) + 1)
            e->retry_rule_ok = false;
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
    if (e->on_record)
        e->on_record(e, rec, len, rx);
}

static const struct usp_mtp_callbacks callbacks = {.state = ep_state, .record = ep_record};

static char rabbit_url[64];

/* A configuration for RabbitMQ (guest/guest, own destination named with
 * usp_mtp_stomp_dest) that ep_create turns into a connection. */
static void ep_config(struct usp_mtp_config *cfg, struct ep *e, const char *name,
                      enum usp_mtp_role role, const char *url)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    e->retry_rule_ok = true;
    snprintf(e->eid, sizeof e->eid, "proto::stomp-%s", name);
    int rc = usp_mtp_stomp_dest(role, e->eid, e->dest, sizeof e->dest);
    if (rc)
        CHECK(false, "%s: usp_mtp_stomp_dest (%d)", name, rc);
    usp_mtp_config_init(cfg);
    cfg->role = role;
    cfg->eid = e->eid;
    cfg->url = url;
    cfg->retry_time_s = 1;
    cfg->retry_multiplier = 2000;
    cfg->retry_max_s = 4;
    cfg->connect_timeout_ms = 5000;
    cfg->close_timeout_ms = 2000;
    cfg->stomp.username = "guest";
    cfg->stomp.password = "guest";
    cfg->stomp.destination = e->dest;
}

static void ep_create(struct ep *e, const struct usp_mtp_config *cfg)
{
    e->retry_m = cfg->retry_time_s;
    e->retry_k = cfg->retry_multiplier;
    e->retry_max = cfg->retry_max_s;
    char why[200];
    int rc = usp_mtp_conn_new(ctx, cfg, &callbacks, e, &e->c, why, sizeof why);
    CHECK(rc == 0, "%s: connection created (%s)", e->name, rc ? why : "no error");
    if (rc)
        exit(1);
    CHECK(usp_mtp_get_state(e->c) == USP_MTP_IDLE, "%s: IDLE before open", e->name);
}

/* ---- records ---------------------------------------------------------------- */

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

static int send_msg(struct ep *from, const char *to_eid, const char *dest, const char *msg_id,
                    int kind)
{
    struct usp_arena *a = usp_arena_new(1024);
    uint8_t *buf;
    size_t len;
    int rc = build_msg(a, from->eid, to_eid, msg_id, kind, &buf, &len);
    if (rc == 0) {
        struct usp_mtp_dest d = {.to = dest};
        rc = usp_mtp_send(from->c, &d, buf, len);
    }
    usp_arena_free(a);
    return rc;
}

/* A received Record, decoded with usp_record_decode; the Msg too for
 * no_session_context. */
struct got {
    struct usp_arena *a;
    UspRecord__Record *rec;
    Usp__Msg *msg;
};

static void got_decode(struct got *g, const uint8_t *buf, size_t len)
{
    struct usp_decode_err err;
    g->a = usp_arena_new(4096);
    g->rec = NULL;
    g->msg = NULL;
    if (usp_record_decode(g->a, buf, len, &g->rec, &err) != 0) {
        g->rec = NULL;
        return;
    }
    if (g->rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT) {
        const ProtobufCBinaryData *p = &g->rec->no_session_context->payload;
        if (usp_msg_decode(g->a, p->data, p->len, &g->msg, &err) != 0)
            g->msg = NULL;
    }
}

/* A body that is not a Record: every byte value, NULs throughout. */
#define BLOB_LEN 1000
static void blob_fill(uint8_t *b)
{
    static const uint8_t magic[] = {0, 0, 'B', 'L', 'O', 'B', 0};
    for (size_t i = 0; i < BLOB_LEN; i++)
        b[i] = (uint8_t)(i * 37 + i / 256);
    memcpy(b, magic, sizeof magic);
}

/* ---- exchange and reconnect on RabbitMQ ------------------------------------ */

static struct ep ctl, agent;
static int rounds_wanted, rounds_done, phase_no;
static bool reconnect_mode, killed, blob_ok, second_connect, idle_ok, big_checked;
static uv_timer_t idle_timer;
static int idle_downs_before;
static const uint32_t agent_max_record = 65536;
static struct usp_mtp_stats totals; /* the context's, kept when it goes */

static void finish_pair(void)
{
    totals = *usp_mtp_ctx_stats(ctx);
    watchdog_stop();
    usp_mtp_conn_free(agent.c);
    usp_mtp_conn_free(ctl.c);
    agent.c = ctl.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static void on_pair_watchdog(uv_timer_t *t)
{
    CHECK(false, "the scenario finished in time (stuck in phase %d; ctl: %s; agent: %s)", phase_no,
          ctl.states, agent.states);
    if (!uv_is_closing((uv_handle_t *)&idle_timer) && idle_timer.loop)
        uv_close((uv_handle_t *)&idle_timer, NULL);
    finish_pair();
}

static void start_rounds(int n)
{
    rounds_wanted = n;
    rounds_done = 0;
    int rc = send_msg(&ctl, agent.eid, agent.dest, "get-1", USP__HEADER__MSG_TYPE__GET);
    CHECK(rc == 0, "controller: first Get sent to the agent's destination");
}

static void agent_close(void)
{
    phase_no = 5;
    int rc = usp_mtp_close(agent.c, USP_ERR_SESS_CONTEXT_TERMINATED, "test over");
    CHECK(rc == 0, "agent: graceful close started");
    CHECK(usp_mtp_close(agent.c, 0, NULL) == USP_EPERM, "agent: a second close is refused");
    struct usp_mtp_dest d = {.to = ctl.dest};
    CHECK(usp_mtp_send(agent.c, &d, (const uint8_t *)"x", 1) == USP_EPERM,
          "agent: nothing is sent after close");
}

static void ctl_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    CHECK(rx->reply_to.to && strcmp(rx->reply_to.to, agent.dest) == 0,
          "controller: reply-to-dest is the agent's destination (%s)",
          rx->reply_to.to ? rx->reply_to.to : "none");
    CHECK(strcmp(rx->arrived_on, ctl.dest) == 0, "controller: arrived on its own destination (%s)",
          rx->arrived_on);
    if (len == BLOB_LEN && buf[2] == 'B' && buf[3] == 'L') {
        uint8_t want[BLOB_LEN];
        blob_fill(want);
        CHECK(memcmp(buf, want, BLOB_LEN) == 0,
              "controller: a %d-byte body full of NUL bytes arrived intact", BLOB_LEN);
        blob_ok = true;
        int rc = send_msg(&agent, ctl.eid, ctl.dest, "notify-1", USP__HEADER__MSG_TYPE__NOTIFY);
        CHECK(rc == 0, "agent: Notify sent to the controller's destination");
        return;
    }
    struct got g;
    got_decode(&g, buf, len);
    CHECK(g.rec != NULL, "controller: a valid Record arrived (%zu bytes)", len);
    if (!g.rec)
        goto out;
    switch (g.rec->record_type_case) {
    case USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT: {
        const UspRecord__STOMPConnectRecord *sc = g.rec->stomp_connect;
        CHECK(phase_no == 1 || (reconnect_mode && phase_no == 11),
              "controller: the STOMPConnectRecord comes first on a new channel (phase %d)",
              phase_no);
        CHECK(strcmp(g.rec->from_id, agent.eid) == 0 && strcmp(g.rec->to_id, ctl.eid) == 0,
              "STOMPConnectRecord: from %s to %s", g.rec->from_id, g.rec->to_id);
        CHECK(strcmp(g.rec->version, USP_VERSION_DEFAULT) == 0, "STOMPConnectRecord: USP %s",
              g.rec->version);
        CHECK(sc->version == USP_RECORD__STOMPCONNECT_RECORD__STOMPVERSION__V1_2,
              "STOMPConnectRecord: version V1_2 (%d)", (int)sc->version);
        CHECK(strcmp(sc->subscribed_destination, agent.dest) == 0,
              "STOMPConnectRecord: subscribed_destination %s", sc->subscribed_destination);
        if (phase_no == 11)
            second_connect = true;
        phase_no++;
        start_rounds(phase_no == 2 ? 20 : 5);
        break;
    }
    case USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT: {
        const UspRecord__DisconnectRecord *d = g.rec->disconnect;
        CHECK(phase_no == 5, "controller: DisconnectRecord after the agent's close (phase %d)",
              phase_no);
        CHECK(d->reason_code == USP_ERR_SESS_CONTEXT_TERMINATED &&
                  strcmp(d->reason, "test over") == 0,
              "DisconnectRecord: reason_code %u, reason \"%s\"", d->reason_code, d->reason);
        CHECK(strcmp(g.rec->from_id, agent.eid) == 0, "DisconnectRecord: from the agent");
        phase_no = 6;
        if (agent.closed)
            CHECK(usp_mtp_close(ctl.c, 0, NULL) == 0, "controller: graceful close");
        break;
    }
    case USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT: {
        CHECK(g.msg != NULL, "controller: the Msg decodes");
        if (!g.msg)
            break;
        int kind = usp_msg_kind(g.msg);
        if (kind == USP__HEADER__MSG_TYPE__GET_RESP) {
            char want[32];
            snprintf(want, sizeof want, "get-%d", rounds_done + 1);
            if (strcmp(g.msg->header->msg_id, want) != 0)
                CHECK(false, "controller: GetResp %s (got %s)", want, g.msg->header->msg_id);
            rounds_done++;
            if (rounds_done < rounds_wanted) {
                snprintf(want, sizeof want, "get-%d", rounds_done + 1);
                send_msg(&ctl, agent.eid, rx->reply_to.to, want, USP__HEADER__MSG_TYPE__GET);
            } else if (phase_no == 2) {
                note("%d Get/GetResp round trips done, each answered at the reply-to-dest",
                     rounds_done);
                CHECK(true, "controller: %d GetResps in order", rounds_done);
                phase_no = 3;
                uint8_t blob[BLOB_LEN];
                blob_fill(blob);
                struct usp_mtp_dest d = {.to = ctl.dest};
                CHECK(usp_mtp_send(agent.c, &d, blob, BLOB_LEN) == 0,
                      "agent: a binary body with NUL bytes sent");
            } else if (phase_no == 12) {
                CHECK(true, "controller: %d GetResps after the reconnect", rounds_done);
                agent_close();
            }
        } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY) {
            CHECK(strcmp(g.msg->header->msg_id, "notify-1") == 0, "controller: Notify arrived");
            int rc = send_msg(&ctl, agent.eid, rx->reply_to.to, "notify-1",
                              USP__HEADER__MSG_TYPE__NOTIFY_RESP);
            CHECK(rc == 0, "controller: NotifyResp sent to the received reply-to-dest");
        } else {
            CHECK(false, "controller: unexpected message type %d", kind);
        }
        break;
    }
    default:
        CHECK(false, "controller: unexpected record type %d", (int)g.rec->record_type_case);
    }
out:
    usp_arena_free(g.a);
}

static void big_test(void)
{
    size_t n = agent_max_record + 1;
    uint8_t *big = calloc(1, n);
    struct usp_mtp_dest to_ctl = {.to = ctl.dest}, to_agent = {.to = agent.dest};
    int rc = usp_mtp_send(agent.c, &to_ctl, big, n);
    CHECK(rc == USP_ERANGE && agent.c->stats.tx_oversize == 1,
          "agent: a %zu-byte record over max_record is refused (rc %d)", n, rc);
    rc = usp_mtp_send(ctl.c, &to_agent, big, n);
    CHECK(rc == 0, "controller: a %zu-byte record goes out (its limit is larger)", n);
    free(big);
    rc = send_msg(&ctl, agent.eid, agent.dest, "after-big", USP__HEADER__MSG_TYPE__GET);
    CHECK(rc == 0, "controller: a Get follows the big record");
}

static void on_idle_done(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    CHECK(ctl.state == USP_MTP_UP && agent.state == USP_MTP_UP &&
              ctl.downs + agent.downs == idle_downs_before,
          "heart-beats: both stayed UP through 4.5 s of silence (3 x the agent's 1500 ms)");
    idle_ok = true;
    phase_no = 4;
    big_test();
}

static void agent_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    CHECK(len <= agent_max_record, "agent: nothing over max_record is delivered (%zu)", len);
    struct got g;
    got_decode(&g, buf, len);
    CHECK(g.rec && g.msg, "agent: a valid Record with a Msg arrived");
    if (!g.msg)
        goto out;
    if (!rx->reply_to.to || strcmp(rx->reply_to.to, ctl.dest) != 0 ||
        strcmp(rx->arrived_on, agent.dest) != 0)
        CHECK(false, "agent: reply-to-dest %s is the controller's, arrived on %s",
              rx->reply_to.to ? rx->reply_to.to : "none", rx->arrived_on);
    int kind = usp_msg_kind(g.msg);
    if (kind == USP__HEADER__MSG_TYPE__GET) {
        const char *id = g.msg->header->msg_id;
        if (strcmp(id, "after-big") == 0) {
            CHECK(agent.c->stats.rx_oversize == 1,
                  "agent: the oversized record was dropped and counted (rx_oversize %llu), the "
                  "connection kept",
                  (unsigned long long)agent.c->stats.rx_oversize);
            big_checked = true;
            agent_close();
        } else {
            int rc =
                send_msg(&agent, ctl.eid, rx->reply_to.to, id, USP__HEADER__MSG_TYPE__GET_RESP);
            if (rc)
                CHECK(false, "agent: GetResp sent (rc %d)", rc);
        }
    } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY_RESP) {
        CHECK(strcmp(g.msg->header->msg_id, "notify-1") == 0, "agent: NotifyResp arrived");
        if (reconnect_mode) {
            killed = true;
            phase_no = 10;
            printf("KILL-BROKER-NOW\n");
            fflush(stdout);
        } else {
            note("idle for 4.5 s: only heart-beats on the wire");
            idle_downs_before = ctl.downs + agent.downs;
            uv_timer_init(loop, &idle_timer);
            uv_timer_start(&idle_timer, on_idle_done, 4500, 0);
        }
    } else {
        CHECK(false, "agent: unexpected message type %d", kind);
    }
out:
    usp_arena_free(g.a);
}

static void ctl_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && phase_no == 0) {
        const char *ld = usp_mtp_local_dest(ctl.c);
        CHECK(ld && strcmp(ld, ctl.dest) == 0, "controller: its reply-to-dest is its destination");
        CHECK(usp_mtp_open(agent.c) == 0, "agent: open");
        CHECK(usp_mtp_open(agent.c) == USP_EPERM, "agent: a second open is refused");
        struct usp_mtp_dest d = {.to = ctl.dest};
        CHECK(usp_mtp_send(agent.c, &d, (const uint8_t *)"x", 1) == USP_EPERM &&
                  agent.c->stats.tx_refused == 1,
              "agent: send before UP is refused");
        phase_no = 1;
    }
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(ev->reason == USP_MTP_R_CLOSED, "controller: CLOSED after its close");
        finish_pair();
    }
}

static void agent_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP) {
        const char *ld = usp_mtp_local_dest(agent.c);
        CHECK(ld && strcmp(ld, agent.dest) == 0, "agent: its reply-to-dest is its destination");
    }
    if (ev->state == USP_MTP_UP && reconnect_mode && killed && phase_no == 10) {
        uint64_t took = agent.t_up - agent.t_first_down;
        note("agent back %.3f s after the broker died (%d failed attempts)", took / 1000.0,
             agent.downs);
        CHECK(agent.retry_rule_ok,
              "agent: every wait was within 0 .. min(1 s x 2^(n-1), 4 s) (server-retry rule)");
        CHECK(took <= agent.retry_sum_ms + 3000,
              "agent: reconnected within its back-off window (%llu ms <= %llu + 3000 ms)",
              (unsigned long long)took, (unsigned long long)agent.retry_sum_ms);
        phase_no = 11;
    }
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(phase_no == 5 || phase_no == 6, "agent: CLOSED after its close (phase %d)", phase_no);
        CHECK(ev->reason == USP_MTP_R_CLOSED, "agent: CLOSED with reason closed");
        if (phase_no == 6)
            CHECK(usp_mtp_close(ctl.c, 0, NULL) == 0, "controller: graceful close");
    }
}

static int run_pair(bool reconnect)
{
    reconnect_mode = reconnect;
    struct usp_mtp_config cc, ac;
    ep_config(&cc, &ctl, reconnect ? "ctl-rc" : "ctl", USP_MTP_CONTROLLER, rabbit_url);
    cc.retry_multiplier = 1000; /* back every 0-1 s */
    cc.stomp.enable_heartbeats = true;
    cc.stomp.outgoing_heartbeat_ms = 1000;
    cc.stomp.incoming_heartbeat_ms = 1000;
    ep_create(&ctl, &cc);
    ep_config(&ac, &agent, reconnect ? "agent-rc" : "agent", USP_MTP_AGENT, rabbit_url);
    ac.peer_eid = ctl.eid;
    ac.peer_dest = ctl.dest;
    ac.max_record = agent_max_record;
    ac.stomp.enable_heartbeats = true;
    ac.stomp.outgoing_heartbeat_ms = 1500;
    ac.stomp.incoming_heartbeat_ms = 1500;
    ep_create(&agent, &ac);
    note("controller %s at %s; agent %s at %s", ctl.eid, ctl.dest, agent.eid, agent.dest);
    ctl.on_record = ctl_record;
    agent.on_record = agent_record;
    ctl.on_state = ctl_state;
    agent.on_state = agent_state;
    watchdog_start(reconnect ? 45000 : 25000, on_pair_watchdog);
    CHECK(usp_mtp_open(ctl.c) == 0, "controller: open");
    CHECK(ctl.state == USP_MTP_IDLE, "controller: no callback from inside open");
    uv_run(loop, UV_RUN_DEFAULT);

    CHECK(phase_no == 6, "the scenario reached its end (phase %d)", phase_no);
    if (reconnect) {
        CHECK(second_connect, "controller: a second STOMPConnectRecord after the reconnect");
        CHECK(strncmp(agent.states, "CONNECTING UP DOWN", 18) == 0 && agent.ups == 2 &&
                  agent.closed == 1,
              "agent states: %s", agent.states);
        CHECK(strncmp(ctl.states, "CONNECTING UP DOWN", 18) == 0 && ctl.ups == 2,
              "controller states: %s", ctl.states);
        CHECK(ctl.retry_rule_ok, "controller: every wait was within 0 .. 1 s");
    } else {
        CHECK(blob_ok && idle_ok && big_checked, "NUL body, idle spell and oversize checked");
        CHECK(strcmp(agent.states, "CONNECTING UP CLOSED") == 0, "agent states: %s", agent.states);
        CHECK(strcmp(ctl.states, "CONNECTING UP CLOSED") == 0, "controller states: %s", ctl.states);
        /* RabbitMQ answers heart-beat:1000,1000 to 1500,1500 (whole
         * seconds): we send every max(1500, 1000) and expect every 1500. */
        uint32_t sx, sy;
        struct usp_stomp_heartbeat hb;
        usp_stomp_heartbeat_rabbitmq(1500, 1500, &sx, &sy);
        usp_stomp_heartbeat_negotiate(1500, 1500, sx, sy, &hb);
        char want[96];
        snprintf(want, sizeof want, "send every %u ms, expect every %u ms", hb.send_ms,
                 hb.expect_ms);
        CHECK(strstr(agent.up_detail, want) != NULL, "agent: heart-beats negotiated: %s",
              agent.up_detail);
        CHECK(strstr(ctl.up_detail, "send every 1000 ms, expect every 1000 ms") != NULL,
              "controller: heart-beats negotiated: %s", ctl.up_detail);
    }
    const struct usp_mtp_stats *s = &totals;
    printf("#    totals: tx %llu records %llu bytes, rx %llu records %llu bytes, rx_oversize "
           "%llu, tx_oversize %llu, tx_refused %llu, ups %llu, drops %llu, failed attempts %llu\n",
           (unsigned long long)s->tx_records, (unsigned long long)s->tx_bytes,
           (unsigned long long)s->rx_records, (unsigned long long)s->rx_bytes,
           (unsigned long long)s->rx_oversize, (unsigned long long)s->tx_oversize,
           (unsigned long long)s->tx_refused, (unsigned long long)s->ups,
           (unsigned long long)s->drops, (unsigned long long)s->attempts_failed);
    CHECK(s->rx_no_reply_to == 0, "every received record had a reply-to-dest");
    if (!reconnect)
        CHECK(s->rx_oversize == 1 && s->tx_oversize == 1, "oversize counted once each way");
    return 0;
}

/* ---- errors from the real broker -------------------------------------------- */

#define NERR 7
static struct ep errs[NERR];
static int errs_closed;

static void errs_done(void)
{
    watchdog_stop();
    for (int i = 0; i < NERR; i++) {
        usp_mtp_conn_free(errs[i].c);
        errs[i].c = NULL;
    }
    usp_mtp_ctx_free(ctx);
}

static void on_errs_watchdog(uv_timer_t *t)
{
    for (int i = 0; i < NERR; i++)
        if (errs[i].closed == 0)
            CHECK(false, "%s: done in time (%s)", errs[i].name, errs[i].states);
    errs_done();
}

static void err_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_DOWN && e->downs == 1) {
        CHECK(ev->reason == e->want_reason && strstr(ev->detail, e->want_text),
              "%s: DOWN, reason %s (want %s), detail has \"%s\": %s", e->name,
              usp_mtp_reason_name(ev->reason), usp_mtp_reason_name(e->want_reason), e->want_text,
              ev->detail);
        CHECK(ev->attempt == 1 && ev->retry_ms <= 1000,
              "%s: retry 1 scheduled within 0-1 s (%u ms)", e->name, ev->retry_ms);
    }
    if (ev->state == USP_MTP_UP && strcmp(e->name, "bad-send") == 0 && e->ups == 1) {
        /* RabbitMQ refuses '/' inside a queue name: ERROR, then it closes. */
        struct usp_mtp_dest d = {.to = "/queue/no/such/queue"};
        CHECK(usp_mtp_send(e->c, &d, (const uint8_t *)"\x0a\x00", 2) == 0,
              "bad-send: a SEND to /queue/no/such/queue is handed over");
    }
    if ((ev->state == USP_MTP_DOWN && e->close_after_downs && e->downs == e->close_after_downs) ||
        (ev->state == USP_MTP_UP && e->close_after_ups && e->ups == e->close_after_ups))
        CHECK(usp_mtp_close(e->c, 0, NULL) == 0, "%s: close", e->name);
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(ev->reason == USP_MTP_R_CLOSED, "%s: CLOSED (%s)", e->name, e->states);
        if (++errs_closed == NERR)
            errs_done();
    }
}

static int run_errors(int unused_port)
{
    struct usp_mtp_config cfg[NERR];
    char unused_url[64], named_url[64];
    snprintf(named_url, sizeof named_url, "stomp://localhost:%d", port);
    snprintf(unused_url, sizeof unused_url, "stomp://127.0.0.1:%d", unused_port);
    const char *names[NERR] = {"bad-login", "bad-vhost", "bad-send", "bad-sub",
                               "no-dest",   "named",     "unused"};
    for (int i = 0; i < NERR; i++) {
        ep_config(&cfg[i], &errs[i], names[i], USP_MTP_AGENT, rabbit_url);
        cfg[i].retry_multiplier = 1000; /* every retry within 0-1 s */
        errs[i].on_state = err_state;
        errs[i].close_after_downs = 1;
    }
    cfg[0].stomp.username = "nobody";
    cfg[0].stomp.password = "wrong";
    errs[0].want_reason = USP_MTP_R_REFUSED;
    errs[0].want_text = "Access refused for user 'nobody'";
    errs[0].close_after_downs = 2;
    cfg[1].stomp.virtual_host = "no-such-vhost";
    errs[1].want_reason = USP_MTP_R_REFUSED;
    errs[1].want_text = "no-such-vhost";
    errs[2].want_reason = USP_MTP_R_PEER_CLOSED;
    errs[2].want_text = "Invalid destination";
    errs[2].close_after_downs = 0;
    errs[2].close_after_ups = 2;
    cfg[3].stomp.destination = "/queue/bad/sub";
    errs[3].want_reason = USP_MTP_R_SUBSCRIBE;
    errs[3].want_text = "Invalid destination";
    cfg[4].stomp.destination = NULL; /* RabbitMQ gives no subscribe-dest */
    errs[4].want_reason = USP_MTP_R_NO_TOPIC;
    errs[4].want_text = "R-STOMP.16";
    errs[4].close_after_downs = 2;
    cfg[5].url = named_url;
    cfg[5].connect_timeout_ms = 3000;
    errs[5].close_after_downs = 0;
    errs[5].close_after_ups = 1;
    /* "localhost" may give ::1 first, where nothing listens: one DOWN. */
    errs[5].want_reason = USP_MTP_R_CONNECT;
    errs[5].want_text = "";
    cfg[6].url = unused_url;
    errs[6].want_reason = USP_MTP_R_CONNECT;
    errs[6].want_text = "cannot connect";
    errs[6].close_after_downs = 2;
    for (int i = 0; i < NERR; i++)
        ep_create(&errs[i], &cfg[i]);
    watchdog_start(20000, on_errs_watchdog);
    for (int i = 0; i < NERR; i++)
        CHECK(usp_mtp_open(errs[i].c) == 0, "%s: open", errs[i].name);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(errs[0].ups == 0 && errs[0].downs == 2, "bad-login: never UP, retried (%s)",
          errs[0].states);
    CHECK(errs[2].ups == 2, "bad-send: UP again after the ERROR (%s)", errs[2].states);
    CHECK(errs[4].ups == 0 && errs[4].downs == 2,
          "no-dest: never UP, and retried rather than disabled [R-STOMP.16] (%s)", errs[4].states);
    CHECK(errs[5].ups == 1, "named: \"localhost\" resolved off the loop and UP (%s)",
          errs[5].states);
    CHECK(errs[6].ups == 0 && errs[6].downs == 2, "unused: DOWN twice (%s)", errs[6].states);
    return 0;
}

/* ---- scale: fds and memory per connection ------------------------------------ */

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

/* Established TCP connections from 127.0.0.2 to the broker's port. */
static int count_bound(void)
{
    FILE *f = fopen("/proc/self/net/tcp", "r");
    if (!f)
        return -1;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned la, lp, ra, rp, st;
        if (sscanf(line, " %*d: %x:%x %x:%x %x", &la, &lp, &ra, &rp, &st) == 5 &&
            la == 0x0200007F && (int)rp == port && st == 1)
            n++;
    }
    fclose(f);
    return n;
}

static int scale_n, scale_up, scale_closed, scale_down;
static struct usp_mtp_conn **scale_conns;
static uint64_t scale_t0, scale_t_up;

static void scale_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    if (ev->state == USP_MTP_UP && ++scale_up == scale_n) {
        scale_t_up = uv_hrtime();
        uv_stop(loop);
    }
    if (ev->state == USP_MTP_CLOSED && ++scale_closed == scale_n)
        uv_stop(loop);
    if (ev->state == USP_MTP_DOWN && scale_down++ < 5)
        printf("#    DOWN: %s\n", ev->detail);
}

static const struct usp_mtp_callbacks scale_cb = {.state = scale_state};

static void on_scale_watchdog(uv_timer_t *t)
{
    CHECK(false, "scale: done in time (%d UP, %d CLOSED of %d)", scale_up, scale_closed, scale_n);
    uv_stop(loop);
}

static int run_scale(int n)
{
    scale_n = n;
    scale_conns = calloc((size_t)n, sizeof *scale_conns);
    char(*eids)[48] = calloc((size_t)n, sizeof *eids);
    char(*dests)[96] = calloc((size_t)n, sizeof *dests);
    int fd0 = count_fds();
    struct mallinfo2 m0 = mallinfo2();
    for (int i = 0; i < n; i++) {
        snprintf(eids[i], sizeof eids[i], "proto::stomp-scale-%d", i);
        usp_mtp_stomp_dest(USP_MTP_AGENT, eids[i], dests[i], sizeof dests[i]);
        struct usp_mtp_config cfg;
        usp_mtp_config_init(&cfg);
        cfg.eid = eids[i];
        cfg.url = rabbit_url;
        cfg.stomp.username = "guest";
        cfg.stomp.password = "guest";
        cfg.stomp.destination = dests[i];
        cfg.stomp.enable_heartbeats = true;
        cfg.stomp.outgoing_heartbeat_ms = 30000;
        cfg.stomp.incoming_heartbeat_ms = 30000;
        cfg.retry_time_s = 1;
        cfg.bind_address = (i % 2) ? "127.0.0.2" : NULL;
        char why[200];
        if (usp_mtp_conn_new(ctx, &cfg, &scale_cb, NULL, &scale_conns[i], why, sizeof why)) {
            CHECK(false, "scale: connection %d: %s", i, why);
            return 1;
        }
    }
    struct mallinfo2 m1 = mallinfo2();
    watchdog_start(60000, on_scale_watchdog);
    scale_t0 = uv_hrtime();
    for (int i = 0; i < n; i++)
        usp_mtp_open(scale_conns[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(scale_t_up - scale_t0) / 1e9;
    struct mallinfo2 m2 = mallinfo2();
    int fd1 = count_fds();
    int bound = count_bound();
    CHECK(scale_up == n, "scale: %d of %d agents UP", scale_up, n);
    printf("#    %d agents UP (STOMP, CONNECTED, SUBSCRIBE, RECEIPT) in %.3f s: %.0f sessions/s "
           "with at most %u connecting\n",
           n, secs, n / secs, ctx->max_connecting);
    double fds = (double)(fd1 - fd0) / n;
    CHECK(fds <= 1.01, "scale: %.2f file descriptors per connection", fds);
    CHECK(bound == n / 2, "scale: %d connections come from the bound source 127.0.0.2", bound);
    printf("#    sizeof(struct stomp_conn) %zu bytes (uv_tcp_t %zu, struct usp_stomp_parser %zu, "
           "struct usp_mtp_conn %zu)\n",
           mtp__stomp_conn_size(), sizeof(uv_tcp_t), sizeof(struct usp_stomp_parser),
           sizeof(struct usp_mtp_conn));
    if (m2.uordblks > m0.uordblks) { /* not under ASan, which has its own allocator */
        double idle = (double)(m1.uordblks - m0.uordblks) / n;
        double up = (double)(m2.uordblks - m0.uordblks) / n;
        printf("#    heap per idle connection (created, not open): %.0f bytes\n", idle);
        printf("#    heap per connected agent (subscribed, heart-beats on): %.0f bytes\n", up);
        CHECK(up < 2048, "scale: under 2 KiB of heap per connected agent (%.0f bytes)", up);
    } else {
        printf("#    heap per connection not measured (sanitizer allocator)\n");
    }
    for (int i = 0; i < n; i++)
        usp_mtp_close(scale_conns[i], 0, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(scale_closed == n, "scale: %d of %d closed gracefully", scale_closed, n);
    for (int i = 0; i < n; i++)
        usp_mtp_conn_free(scale_conns[i]);
    watchdog_stop();
    usp_mtp_ctx_free(ctx);
    free(scale_conns);
    free(eids);
    free(dests);
    return 0;
}

/* ---- the scripted fake STOMP server ------------------------------------------
 * Deliberately scripted: it serves one client at a time and does exactly
 * what the running scenario tells it, byte for byte and write by write. It
 * reads the client's frames with the library's parser (tested on its own in
 * tests/unit/test_stomp_frame.c). */

struct fstep {
    struct fstep *next;
    uint32_t delay_ms; /* after the previous write */
    bool close;        /* not a write: close the connection */
    size_t len;
    uint8_t data[];
};

struct fconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct usp_stomp_parser parser;
    struct fstep *head, *tail;
    int n, handles, frames;
    bool closing, eof;
    uint64_t t_last_rx, t_last_tx, max_gap, t_first_eol;
    int eols;
    char raw[1024]; /* the first bytes of the connection, for escape checks */
    size_t raw_len;
};

struct fake_script {
    void (*frame)(struct fconn *fc, const struct usp_stomp_frame *f);
    void (*eof)(struct fconn *fc);
};

static uv_tcp_t fake_lis;
static int fake_port, fake_conns;
static const struct fake_script *fscript;
static struct fconn *fake_cur;
static int forbidden_seen;

static void fake_handle_closed(uv_handle_t *h)
{
    struct fconn *fc = h->data;
    if (--fc->handles == 0) {
        usp_stomp_parser_cleanup(&fc->parser);
        while (fc->head) {
            struct fstep *s = fc->head;
            fc->head = s->next;
            free(s);
        }
        free(fc);
    }
}

static void fake_close(struct fconn *fc)
{
    if (fc->closing)
        return;
    fc->closing = true;
    if (fake_cur == fc)
        fake_cur = NULL;
    uv_close((uv_handle_t *)&fc->tcp, fake_handle_closed);
    uv_close((uv_handle_t *)&fc->timer, fake_handle_closed);
}

struct fwrite {
    uv_write_t req;
    uint8_t data[];
};

static void fake_written(uv_write_t *req, int status)
{
    free(req);
}

static void fake_write_now(struct fconn *fc, const uint8_t *d, size_t len)
{
    if (fc->closing || !len)
        return;
    struct fwrite *w = malloc(sizeof *w + len);
    memcpy(w->data, d, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&fc->tcp, &b, 1, fake_written) != 0)
        free(w);
    fc->t_last_tx = uv_now(loop);
}

static void fake_pump(uv_timer_t *t)
{
    struct fconn *fc = t->data;
    struct fstep *s = fc->head;
    if (!s || fc->closing)
        return;
    fc->head = s->next;
    if (!fc->head)
        fc->tail = NULL;
    bool close = s->close;
    fake_write_now(fc, s->data, s->len);
    free(s);
    if (close) {
        fake_close(fc);
        return;
    }
    if (fc->head)
        uv_timer_start(&fc->timer, fake_pump, fc->head->delay_ms, 0);
}

/* Queues a write `delay_ms` after the previous one. */
static void fake_send(struct fconn *fc, uint32_t delay_ms, const void *d, size_t len)
{
    struct fstep *s = malloc(sizeof *s + len);
    s->next = NULL;
    s->delay_ms = delay_ms;
    s->close = d == NULL;
    s->len = len;
    if (len)
        memcpy(s->data, d, len);
    bool idle = fc->head == NULL;
    if (fc->tail)
        fc->tail->next = s;
    else
        fc->head = s;
    fc->tail = s;
    if (idle)
        uv_timer_start(&fc->timer, fake_pump, delay_ms, 0);
}

/* Queues `d` one byte per write, `gap_ms` apart. */
static void fake_trickle(struct fconn *fc, uint32_t gap_ms, const void *d, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fake_send(fc, gap_ms, (const uint8_t *)d + i, 1);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fconn *fc = s->data;
    if (n < 0) {
        fc->eof = true;
        if (fscript->eof)
            fscript->eof(fc);
        fake_close(fc);
    } else if (n > 0 && !fc->closing) {
        uint64_t now = uv_now(loop);
        if (fc->t_last_rx && now - fc->t_last_rx > fc->max_gap)
            fc->max_gap = now - fc->t_last_rx;
        fc->t_last_rx = now;
        size_t k =
            (size_t)n < sizeof fc->raw - fc->raw_len ? (size_t)n : sizeof fc->raw - fc->raw_len;
        memcpy(fc->raw + fc->raw_len, buf->base, k);
        fc->raw_len += k;
        const uint8_t *d = (const uint8_t *)buf->base;
        size_t len = (size_t)n, used;
        struct usp_stomp_frame f;
        int rc;
        while (len && !fc->closing && (rc = usp_stomp_parse(&fc->parser, d, len, &used, &f)) == 1) {
            d += used;
            len -= used;
            switch (f.cmd) {
            case USP_STOMP_BEGIN:
            case USP_STOMP_COMMIT:
            case USP_STOMP_ABORT:
            case USP_STOMP_ACK:
            case USP_STOMP_NACK:
                forbidden_seen++;
                CHECK(false, "fake: the client sent %s [R-STOMP.26/27]", usp_stomp_cmd_name(f.cmd));
                break;
            case USP_STOMP_HEARTBEAT:
                if (!fc->eols)
                    fc->t_first_eol = now;
                fc->eols += (int)f.eols;
                break;
            default:
                fc->frames++;
                break;
            }
            fscript->frame(fc, &f);
        }
        if (rc < 0) {
            char why[200];
            usp_stomp_parser_why(&fc->parser, why, sizeof why);
            CHECK(false, "fake: the client's stream parses (%s)", why);
            fake_close(fc);
        }
    }
    free(buf->base);
}

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init(malloc(65536), 65536);
}

static void fake_accept(uv_stream_t *lis, int status)
{
    if (status < 0)
        return;
    struct fconn *fc = calloc(1, sizeof *fc);
    uv_tcp_init(loop, &fc->tcp);
    uv_timer_init(loop, &fc->timer);
    fc->tcp.data = fc->timer.data = fc;
    fc->handles = 2;
    usp_stomp_parser_init(&fc->parser, NULL);
    if (uv_accept(lis, (uv_stream_t *)&fc->tcp) != 0) {
        fake_close(fc);
        return;
    }
    uv_tcp_nodelay(&fc->tcp, 1);
    fc->n = ++fake_conns;
    fake_cur = fc;
    uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc, fake_read);
}

static void fake_listen(const struct fake_script *s)
{
    fscript = s;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &fake_lis);
    if (uv_tcp_bind(&fake_lis, (const struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&fake_lis, 16, fake_accept) != 0) {
        CHECK(false, "fake: listening on 127.0.0.1");
        exit(1);
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&fake_lis, (struct sockaddr *)&ss, &len);
    fake_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    note("scripted fake STOMP server on 127.0.0.1:%d", fake_port);
}

static void fake_stop(void)
{
    if (fake_cur)
        fake_close(fake_cur);
    if (!uv_is_closing((uv_handle_t *)&fake_lis))
        uv_close((uv_handle_t *)&fake_lis, NULL);
}

/* Whether header `name` of f equals `want`. */
static bool hdr_is(const struct usp_stomp_frame *f, const char *name, const char *want)
{
    return usp_stomp_str_eq(usp_stomp_header(f, name), want);
}

static void hdr_copy(const struct usp_stomp_frame *f, const char *name, char *out, size_t n)
{
    struct usp_stomp_str v = usp_stomp_header(f, name);
    size_t k = v.p ? (v.len < n - 1 ? v.len : n - 1) : 0;
    if (k)
        memcpy(out, v.p, k);
    out[k] = '\0';
}

/* Encodes a frame into a malloc'd buffer. */
static uint8_t *frame_new(enum usp_stomp_cmd cmd, const struct usp_stomp_header *h, size_t nh,
                          const uint8_t *body, size_t blen, size_t *len)
{
    size_t need = 0;
    usp_stomp_encode(cmd, h, nh, body, blen, NULL, 0, &need);
    uint8_t *b = malloc(need ? need : 1);
    if (usp_stomp_encode(cmd, h, nh, body, blen, b, need, len) != 0) {
        CHECK(false, "fake: a %s frame encodes", usp_stomp_cmd_name(cmd));
        exit(1);
    }
    return b;
}

static struct usp_stomp_header H(const char *name, const char *value) {
    struct usp_stomp_header h = {{name, strlen(name)}, {value, strlen(value)}};
    return h;
}

static void
fake_reply(struct fconn *fc, uint32_t delay, enum usp_stomp_cmd cmd,
           const struct usp_stomp_header *h, size_t nh, bool trickle)
{
    size_t len;
    uint8_t *b = frame_new(cmd, h, nh, NULL, 0, &len);
    if (trickle)
        fake_trickle(fc, 1, b, len);
    else
        fake_send(fc, delay, b, len);
    free(b);
}

/* ---- fake-wire ---- */

static struct ep fw;
#define FW_DEST_SERVER "/queue/from-server"
#define FW_PEER_EID    "proto::fake-ctl"
#define FW_PEER_DEST   "/queue/usp.controller.proto::fake-ctl"
#define FW_MAX_RECORD  4096
#define MAXSEQ         1024
static int fw_seq[MAXSEQ], fw_nseq; /* ids of the deliveries, in order */
static int fw_got, fw_echo_want, fw_echoes, fw_sends;
static bool fw_last_seen, fw_disc_record, fw_closing;

/* The body of message j: binary with NULs (j < 5000), or text ("plain-J"). */
static size_t fw_body(int j, uint8_t *b, size_t cap)
{
    if (j >= 5000)
        return (size_t)snprintf((char *)b, cap, "plain-%d", j);
    size_t n = 24 + (size_t)(j % 40);
    b[0] = 0;
    b[1] = (uint8_t)(j & 0xff);
    b[2] = (uint8_t)(j >> 8);
    for (size_t i = 3; i < n; i++)
        b[i] = (uint8_t)((i * 7 + (size_t)j) % 5 == 0 ? 0 : i * 13 + (size_t)j);
    return n;
}

/* Each message gets its own reply-to-dest, with a ':' and a '\' that must
 * survive the escapes both ways. */
static void fw_reply_dest(int j, char *out, size_t n)
{
    snprintf(out, n, "/queue/ctl:%d\\x", j);
}

/* A MESSAGE for id j: content-length unless plain. */
static uint8_t *fw_message(int j, const char *ctype, bool reply, size_t *len)
{
    uint8_t body[128];
    size_t blen = fw_body(j, body, sizeof body);
    char mid[32], rd[64], cl[24];
    snprintf(mid, sizeof mid, "m-%d", j);
    fw_reply_dest(j, rd, sizeof rd);
    snprintf(cl, sizeof cl, "%zu", blen);
    struct usp_stomp_header h[6];
    size_t nh = 0;
    h[nh++] = H("subscription", "0");
    h[nh++] = H("destination", FW_DEST_SERVER);
    h[nh++] = H("message-id", mid);
    if (ctype)
        h[nh++] = H("content-type", ctype);
    if (reply)
        h[nh++] = H("reply-to-dest", rd);
    if (j < 5000)
        h[nh++] = H("content-length", cl);
    return frame_new(USP_STOMP_MESSAGE, h, nh, body, blen, len);
}

static void fw_expect(int j, bool echo)
{
    if (fw_nseq < MAXSEQ)
        fw_seq[fw_nseq++] = j;
    if (echo)
        fw_echo_want++;
}

static void fw_maybe_close(void)
{
    if (fw_last_seen && fw_echoes == fw_echo_want && !fw_closing) {
        fw_closing = true;
        note("fake-wire: %d records delivered, %d echoes checked: closing", fw_got, fw_echoes);
        CHECK(usp_mtp_close(fw.c, USP_ERR_SESS_CONTEXT_TERMINATED, "fake done") == 0,
              "fake-wire: graceful close");
    }
}

static void fw_stream(struct fconn *fc)
{
    size_t len;
    uint8_t *b;
    const char *ct = USP_STOMP_CONTENT_TYPE;
    /* 1. Every split position of a frame: frame j cut after byte j. */
    int j;
    for (j = 1;; j++) {
        b = fw_message(j, ct, true, &len);
        if ((size_t)j >= len) {
            free(b);
            break;
        }
        fake_send(fc, 1, b, (size_t)j);
        fake_send(fc, 1, b + j, len - (size_t)j);
        fw_expect(j, true);
        free(b);
    }
    note("fake-wire: frames cut at every byte position 1..%d queued", j - 1);
    /* 2. One byte per write, heart-beat EOLs (LF and CRLF) before it. */
    fake_trickle(fc, 1, "\n\r\n", 3);
    b = fw_message(1000, ct, true, &len);
    fake_trickle(fc, 1, b, len);
    fw_expect(1000, true);
    free(b);
    /* 3. Merged: 40 frames, EOLs, an unsolicited RECEIPT and a frame
     * without content-length, in one write. */
    uint8_t *all = NULL;
    size_t alen = 0;
    for (j = 2000; j <= 2041; j++) {
        if (j == 2040) {
            size_t rl;
            struct usp_stomp_header rh = H("receipt-id", "not-ours");
            b = frame_new(USP_STOMP_RECEIPT, &rh, 1, NULL, 0, &rl);
            len = rl;
        } else {
            b = fw_message(j == 2041 ? 5041 : j, ct, true, &len);
            fw_expect(j == 2041 ? 5041 : j, true);
        }
        all = realloc(all, alen + len + 2);
        memcpy(all + alen, b, len);
        alen += len;
        if (j % 7 == 0) {
            memcpy(all + alen, "\r\n", 2);
            alen += 2;
        }
        free(b);
    }
    fake_send(fc, 5, all, alen);
    free(all);
    /* 4. Dropped and odd ones, merged: a wrong content-type (dropped), a
     * body over max_record (dropped, counted), no content-type (taken), no
     * reply-to-dest (delivered without one), then the last. */
    all = NULL;
    alen = 0;
    for (int k = 0; k < 5; k++) {
        if (k == 1) {
            uint8_t *big = calloc(1, FW_MAX_RECORD + 1);
            char cl[24];
            snprintf(cl, sizeof cl, "%u", FW_MAX_RECORD + 1);
            struct usp_stomp_header h[] = {
                H("subscription", "0"), H("destination", FW_DEST_SERVER), H("message-id", "big"),
                H("content-type", ct),  H("reply-to-dest", "/queue/x"),   H("content-length", cl)};
            b = frame_new(USP_STOMP_MESSAGE, h, 6, big, FW_MAX_RECORD + 1, &len);
            free(big);
        } else if (k == 0) {
            b = fw_message(3000, "text/plain", true, &len);
        } else if (k == 2) {
            b = fw_message(3002, NULL, true, &len);
            fw_expect(3002, true);
        } else if (k == 3) {
            b = fw_message(3003, ct, false, &len);
            fw_expect(3003, false);
        } else {
            b = fw_message(3004, ct, true, &len);
            fw_expect(3004, true);
        }
        all = realloc(all, alen + len);
        memcpy(all + alen, b, len);
        alen += len;
        free(b);
    }
    fake_send(fc, 5, all, alen);
    free(all);
}

static void fw_frame(struct fconn *fc, const struct usp_stomp_frame *f)
{
    char v[256];
    switch (f->cmd) {
    case USP_STOMP_HEARTBEAT:
        break;
    case USP_STOMP_STOMP: {
        CHECK(fc->frames == 1, "fake-wire: STOMP is the first frame [R-STOMP.2]");
        CHECK(hdr_is(f, "accept-version", "1.2"), "fake-wire: accept-version:1.2");
        CHECK(hdr_is(f, "host", "vh-test"), "fake-wire: host is the VirtualHost [R-STOMP.5]");
        CHECK(hdr_is(f, "login", "u:1") && hdr_is(f, "passcode", "p\\w"),
              "fake-wire: login and passcode, escapes decoded [R-STOMP.3]");
        CHECK(!usp_stomp_header(f, "heart-beat").p,
              "fake-wire: no heart-beat header with EnableHeartbeats false [R-STOMP.8]");
        CHECK(hdr_is(f, "endpoint-id", fw.eid),
              "fake-wire: endpoint-id is the Endpoint ID [R-STOMP.4]");
        const char *esc = "endpoint-id:proto\\c\\cstomp-fake-wire\n";
        CHECK(memmem(fc->raw, fc->raw_len, esc, strlen(esc)) != NULL,
              "fake-wire: the colons of the endpoint-id travel as \\c");
        CHECK(memmem(fc->raw, fc->raw_len, "login:u\\c1\n", 11) != NULL,
              "fake-wire: a ':' in the login travels as \\c");
        /* CONNECTED, one byte per write: the destination is the server's. */
        struct usp_stomp_header h[] = {H("version", "1.2"), H("heart-beat", "0,0"),
                                       H("subscribe-dest", FW_DEST_SERVER),
                                       H("server", "scripted-fake/1")};
        fake_reply(fc, 0, USP_STOMP_CONNECTED, h, 4, true);
        break;
    }
    case USP_STOMP_SUBSCRIBE: {
        CHECK(hdr_is(f, "destination", FW_DEST_SERVER),
              "fake-wire: SUBSCRIBE to the server's subscribe-dest, not the configured one "
              "[R-STOMP.14]");
        CHECK(hdr_is(f, "ack", "auto"), "fake-wire: SUBSCRIBE with ack:auto [R-STOMP.17]");
        hdr_copy(f, "id", v, sizeof v);
        CHECK(v[0] != 0, "fake-wire: SUBSCRIBE has an id");
        hdr_copy(f, "receipt", v, sizeof v);
        CHECK(v[0] != 0, "fake-wire: SUBSCRIBE asks for a receipt");
        struct usp_stomp_header h = H("receipt-id", v);
        fake_reply(fc, 0, USP_STOMP_RECEIPT, &h, 1, true);
        break;
    }
    case USP_STOMP_SEND: {
        fw_sends++;
        char cl[24];
        hdr_copy(f, "content-length", cl, sizeof cl);
        bool head_ok = hdr_is(f, "content-type", USP_STOMP_CONTENT_TYPE) && f->has_content_length &&
                       (size_t)strtoul(cl, NULL, 10) == f->body_len &&
                       hdr_is(f, "reply-to-dest", FW_DEST_SERVER);
        if (fw_sends == 1)
            CHECK(head_ok,
                  "fake-wire: SEND has content-type %s, content-length and reply-to-dest "
                  "[R-STOMP.19-21]",
                  USP_STOMP_CONTENT_TYPE);
        else if (!head_ok)
            CHECK(false, "fake-wire: SEND %d has the USP headers", fw_sends);
        if (hdr_is(f, "destination", FW_PEER_DEST)) {
            struct usp_arena *a = usp_arena_new(1024);
            UspRecord__Record *rec = NULL;
            struct usp_decode_err err;
            int rc = usp_record_decode(a, f->body, f->body_len, &rec, &err);
            CHECK(rc == 0 && rec, "fake-wire: a Record to the peer decodes");
            if (rec && rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT) {
                CHECK(fw_sends == 1, "fake-wire: the STOMPConnectRecord is the first SEND");
                CHECK(rec->stomp_connect->version ==
                              USP_RECORD__STOMPCONNECT_RECORD__STOMPVERSION__V1_2 &&
                          strcmp(rec->stomp_connect->subscribed_destination, FW_DEST_SERVER) == 0 &&
                          strcmp(rec->to_id, FW_PEER_EID) == 0,
                      "fake-wire: STOMPConnectRecord{V1_2, %s} to %s",
                      rec->stomp_connect->subscribed_destination, rec->to_id);
                fw_stream(fc);
            } else if (rec && rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
                CHECK(fw_closing &&
                          rec->disconnect->reason_code == USP_ERR_SESS_CONTEXT_TERMINATED &&
                          strcmp(rec->disconnect->reason, "fake done") == 0,
                      "fake-wire: DisconnectRecord{%u, %s} before DISCONNECT [R-MTP.7]",
                      rec->disconnect->reason_code, rec->disconnect->reason);
                fw_disc_record = true;
            } else {
                CHECK(false, "fake-wire: unexpected Record to the peer");
            }
            usp_arena_free(a);
            break;
        }
        /* An echo: to the reply-to-dest of the message it answers. */
        uint8_t body[128];
        int j = -1;
        if (f->body_len >= 3 && f->body[0] == 0)
            j = f->body[1] | f->body[2] << 8;
        else if (f->body_len > 6 && memcmp(f->body, "plain-", 6) == 0)
            j = atoi((const char *)f->body + 6); /* digits then the NUL after the frame */
        char rd[64];
        fw_reply_dest(j, rd, sizeof rd);
        size_t blen = j >= 0 ? fw_body(j, body, sizeof body) : 0;
        if (j < 0 || !hdr_is(f, "destination", rd) || blen != f->body_len ||
            memcmp(body, f->body, blen) != 0)
            CHECK(false, "fake-wire: echo %d goes to its message's reply-to-dest %s, body intact",
                  j, rd);
        fw_echoes++;
        fw_maybe_close();
        break;
    }
    case USP_STOMP_DISCONNECT: {
        CHECK(fw_disc_record, "fake-wire: DISCONNECT after the DisconnectRecord");
        hdr_copy(f, "receipt", v, sizeof v);
        CHECK(v[0] != 0, "fake-wire: DISCONNECT asks for a receipt");
        /* The receipt merged with a heart-beat EOL in front. */
        size_t len;
        struct usp_stomp_header h = H("receipt-id", v);
        uint8_t *b = frame_new(USP_STOMP_RECEIPT, &h, 1, NULL, 0, &len);
        uint8_t *m = malloc(len + 1);
        m[0] = '\n';
        memcpy(m + 1, b, len);
        fake_send(fc, 0, m, len + 1);
        free(m);
        free(b);
        break;
    }
    default:
        CHECK(false, "fake-wire: unexpected %s from the client", usp_stomp_cmd_name(f->cmd));
    }
}

static void fw_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    int want = fw_got < fw_nseq ? fw_seq[fw_got] : -1;
    fw_got++;
    uint8_t body[128];
    size_t blen = want >= 0 ? fw_body(want, body, sizeof body) : 0;
    char rd[64];
    fw_reply_dest(want, rd, sizeof rd);
    bool reply_ok = want == 3003 ? rx->reply_to.to == NULL
                                 : (rx->reply_to.to && strcmp(rx->reply_to.to, rd) == 0);
    if (want < 0 || len != blen || memcmp(buf, body, blen) != 0 || !reply_ok ||
        strcmp(rx->arrived_on, FW_DEST_SERVER) != 0)
        CHECK(false, "fake-wire: delivery %d is message %d, intact, reply-to %s, on %s", fw_got,
              want, rx->reply_to.to ? rx->reply_to.to : "none", rx->arrived_on);
    if (want == 1 || want == 1000 || want == 2000 || want == 5041)
        CHECK(true, "fake-wire: message %d (%zu-byte body%s) intact", want, len,
              memchr(buf, 0, len) ? " with NUL bytes" : "");
    if (rx->reply_to.to) {
        int rc = usp_mtp_send(e->c, &rx->reply_to, buf, len);
        if (rc)
            CHECK(false, "fake-wire: echo %d sent (%d)", want, rc);
    }
    if (want == 3004) {
        fw_last_seen = true;
        CHECK(fw_got == fw_nseq, "fake-wire: all %d messages delivered in order (got %d)", fw_nseq,
              fw_got);
        const struct usp_mtp_stats *s = usp_mtp_get_stats(e->c);
        CHECK(s->rx_dropped == 1 && s->rx_oversize == 1 && s->rx_no_reply_to == 1,
              "fake-wire: wrong content-type dropped, body over max_record dropped, no "
              "reply-to-dest delivered without one (dropped %llu, oversize %llu, no reply %llu)",
              (unsigned long long)s->rx_dropped, (unsigned long long)s->rx_oversize,
              (unsigned long long)s->rx_no_reply_to);
        fw_maybe_close();
    }
}

static void fw_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP) {
        const char *ld = usp_mtp_local_dest(e->c);
        CHECK(ld && strcmp(ld, FW_DEST_SERVER) == 0,
              "fake-wire: the server's subscribe-dest is the local destination");
        CHECK(strstr(ev->detail, "no heart-beats") != NULL, "fake-wire: no heart-beats");
    }
    if (ev->state == USP_MTP_DOWN)
        CHECK(false, "fake-wire: no DOWN (%s)", ev->detail);
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(ev->reason == USP_MTP_R_CLOSED && ev->code == 0,
              "fake-wire: CLOSED after the DISCONNECT receipt (code %d)", ev->code);
        watchdog_stop();
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        fake_stop();
        usp_mtp_ctx_free(ctx);
    }
}

static void on_fake_watchdog(uv_timer_t *t)
{
    CHECK(false, "fake: the scenario finished in time (%s)", fw.states);
    watchdog_stop();
    usp_mtp_conn_free(fw.c);
    fw.c = NULL;
    fake_stop();
    usp_mtp_ctx_free(ctx);
}

static const struct fake_script fw_script = {.frame = fw_frame};

static char fake_url[64];

static void fake_client(struct usp_mtp_config *cfg, const char *name)
{
    snprintf(fake_url, sizeof fake_url, "stomp://127.0.0.1:%d", fake_port);
    ep_config(cfg, &fw, name, USP_MTP_AGENT, fake_url);
    cfg->stomp.username = NULL;
    cfg->stomp.password = NULL;
    cfg->retry_multiplier = 1000;
}

static int run_fake_wire(void)
{
    fake_listen(&fw_script);
    struct usp_mtp_config cfg;
    fake_client(&cfg, "fake-wire");
    cfg.stomp.username = "u:1";
    cfg.stomp.password = "p\\w";
    cfg.stomp.virtual_host = "vh-test";
    cfg.stomp.destination = "/queue/configured";
    cfg.peer_eid = FW_PEER_EID;
    cfg.peer_dest = FW_PEER_DEST;
    cfg.max_record = FW_MAX_RECORD;
    ep_create(&fw, &cfg);
    fw.on_record = fw_record;
    fw.on_state = fw_state;
    watchdog_start(20000, on_fake_watchdog);
    CHECK(usp_mtp_open(fw.c) == 0, "fake-wire: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(strcmp(fw.states, "CONNECTING UP CLOSED") == 0, "fake-wire: states %s", fw.states);
    CHECK(fw_last_seen && fw_echoes == fw_echo_want && fw_echo_want > 200,
          "fake-wire: %d echoes of %d expected", fw_echoes, fw_echo_want);
    CHECK(forbidden_seen == 0, "fake-wire: never BEGIN, COMMIT, ABORT, ACK or NACK");
    return 0;
}

/* ---- fake-errors: one client, one misbehaviour per connection ---- */

struct fe_case {
    const char *what;
    enum usp_mtp_reason reason;
    int code;         /* expected event code, or 99: any */
    const char *text; /* in the detail */
};

static const struct fe_case fe_cases[] = {
    {"an oversized frame (content-length past max_record + 64 KiB)", USP_MTP_R_LOST, USP_ERANGE,
     "content-length"},
    {"an ERROR frame instead of CONNECTED", USP_MTP_R_REFUSED, 0,
     "bad credentials: login refused for u"},
    {"a frame with an unknown command", USP_MTP_R_LOST, USP_EPROTO, "STOMP frame"},
    {"a body that never ends (no content-length, no NUL)", USP_MTP_R_LOST, USP_ERANGE,
     "STOMP frame"},
    {"an ERROR frame for the SUBSCRIBE", USP_MTP_R_SUBSCRIBE, 0, "no such queue"},
    {"half a frame, then the server closes", USP_MTP_R_LOST, 99, "inside a frame"},
    {"CONNECTED with version 1.1", USP_MTP_R_REFUSED, USP_EPROTO, "version"},
};
#define NFE (int)(sizeof fe_cases / sizeof fe_cases[0])
static uint64_t fe_t_cut;

static void fe_frame(struct fconn *fc, const struct usp_stomp_frame *f)
{
    int n = fc->n; /* 1-based: case n-1, then the last connection */
    static const char conn_ok[] = "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n";
    if (f->cmd == USP_STOMP_STOMP) {
        if (n == 2) {
            struct usp_stomp_header h[] = {H("message", "bad credentials"),
                                           H("content-type", "text/plain")};
            size_t len;
            const char *body = "login refused for u\n";
            uint8_t *b =
                frame_new(USP_STOMP_ERROR, h, 2, (const uint8_t *)body, strlen(body), &len);
            fake_send(fc, 0, b, len);
            free(b);
        } else if (n == 7) {
            const char c11[] = "CONNECTED\nversion:1.1\n\n";
            fake_send(fc, 0, c11, sizeof c11); /* with its NUL */
        } else {
            fake_send(fc, 0, conn_ok, sizeof conn_ok);
        }
        return;
    }
    if (f->cmd == USP_STOMP_SUBSCRIBE) {
        char r[64];
        hdr_copy(f, "receipt", r, sizeof r);
        if (n == 5) {
            struct usp_stomp_header h = H("message", "no such queue");
            fake_reply(fc, 0, USP_STOMP_ERROR, &h, 1, false);
            return;
        }
        struct usp_stomp_header h = H("receipt-id", r);
        fake_reply(fc, 0, USP_STOMP_RECEIPT, &h, 1, false);
        if (n == 1) {
            const char big[] = "MESSAGE\ndestination:/queue/e\nmessage-id:1\nsubscription:0\n"
                               "content-length:99999999\n\nabc";
            fake_send(fc, 20, big, sizeof big - 1);
        } else if (n == 3) {
            fake_send(fc, 20, "HELLO\n\n", 8); /* with its NUL */
        } else if (n == 4) {
            const char head[] = "MESSAGE\ndestination:/queue/e\nmessage-id:1\nsubscription:0\n\n";
            fake_send(fc, 20, head, sizeof head - 1);
            char *junk = malloc(8192);
            memset(junk, 'x', 8192);
            for (int i = 0; i < 12; i++) /* 96 KiB > 4096 + 64 KiB */
                fake_send(fc, 1, junk, 8192);
            free(junk);
        } else if (n == 6) {
            const char half[] = "MESSAGE\ndestination:/queue/e\nmessage-id:1\nsubscription:0\n"
                                "content-length:10\n\nabc";
            fake_send(fc, 20, half, sizeof half - 1);
            fake_send(fc, 100, NULL, 0); /* then close */
        }
        return;
    }
    if (f->cmd == USP_STOMP_DISCONNECT) {
        CHECK(n == NFE + 1, "fake-errors: DISCONNECT only on the last connection");
        note("fake-errors: DISCONNECT not answered");
        fe_t_cut = uv_now(loop);
    }
}

static void fe_eof(struct fconn *fc)
{
}

static const struct fake_script fe_script = {.frame = fe_frame, .eof = fe_eof};

static void fe_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_DOWN) {
        int i = fake_conns - 1;
        if (i < 0 || i >= NFE) {
            CHECK(false, "fake-errors: unexpected DOWN on connection %d: %s", fake_conns,
                  ev->detail);
            return;
        }
        const struct fe_case *k = &fe_cases[i];
        CHECK(ev->reason == k->reason && (k->code == 99 || ev->code == k->code) &&
                  strstr(ev->detail, k->text),
              "fake-errors: %s: DOWN %s (%d), \"%s\"", k->what, usp_mtp_reason_name(ev->reason),
              ev->code, ev->detail);
    }
    if (ev->state == USP_MTP_UP && fake_conns == NFE + 1) {
        CHECK(usp_mtp_close(e->c, 0, NULL) == 0, "fake-errors: close on the last connection");
    }
    if (ev->state == USP_MTP_CLOSED) {
        uint64_t took = uv_now(loop) - fe_t_cut;
        CHECK(ev->reason == USP_MTP_R_CLOSED && ev->code == 1,
              "fake-errors: an unanswered DISCONNECT is cut after close_timeout_ms (code %d)",
              ev->code);
        CHECK(took >= 550 && took <= 1500, "fake-errors: cut %llu ms after DISCONNECT (600 ms)",
              (unsigned long long)took);
        watchdog_stop();
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        fake_stop();
        usp_mtp_ctx_free(ctx);
    }
}

static int run_fake_errors(void)
{
    fake_listen(&fe_script);
    struct usp_mtp_config cfg;
    fake_client(&cfg, "fake-errors");
    cfg.stomp.destination = "/queue/e";
    cfg.max_record = 4096;
    cfg.close_timeout_ms = 600;
    ep_create(&fw, &cfg);
    fw.on_state = fe_state;
    watchdog_start(25000, on_fake_watchdog);
    CHECK(usp_mtp_open(fw.c) == 0, "fake-errors: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(fw.downs == NFE && fw.ups == 5,
          "fake-errors: %d DOWNs and 5 UPs, each misbehaviour one connection (%s)", fw.downs,
          fw.states);
    CHECK(fw.retry_rule_ok, "fake-errors: every retry within 0-1 s");
    return 0;
}

/* ---- fake-notopic: neither subscribe-dest nor a destination [R-STOMP.16] ---- */

static int nt_disconnects;

static void nt_frame(struct fconn *fc, const struct usp_stomp_frame *f)
{
    if (f->cmd == USP_STOMP_STOMP) {
        static const char c[] = "CONNECTED\nversion:1.2\n\n";
        fake_send(fc, 0, c, sizeof c);
    } else if (f->cmd == USP_STOMP_DISCONNECT) {
        nt_disconnects++;
    } else if (f->cmd != USP_STOMP_HEARTBEAT) {
        CHECK(false, "fake-notopic: only STOMP and DISCONNECT expected (got %s)",
              usp_stomp_cmd_name(f->cmd));
    }
}

/* The client's second connection has ended: the fake can go. */
static void nt_eof(struct fconn *fc)
{
    if (fc->n == 2)
        fake_stop();
}

static const struct fake_script nt_script = {.frame = nt_frame, .eof = nt_eof};

static void nt_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_DOWN) {
        CHECK(ev->reason == USP_MTP_R_NO_TOPIC && ev->attempt == (uint32_t)e->downs,
              "fake-notopic: DOWN %d with reason no-topic, retry %u scheduled (%s)", e->downs,
              ev->attempt, ev->detail);
        if (e->downs == 2)
            CHECK(usp_mtp_close(e->c, 0, NULL) == 0, "fake-notopic: close");
    }
    if (ev->state == USP_MTP_CLOSED) {
        watchdog_stop();
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        usp_mtp_ctx_free(ctx);
    }
}

static int run_fake_notopic(void)
{
    fake_listen(&nt_script);
    struct usp_mtp_config cfg;
    fake_client(&cfg, "fake-notopic");
    cfg.stomp.destination = NULL;
    ep_create(&fw, &cfg);
    fw.on_state = nt_state;
    watchdog_start(10000, on_fake_watchdog);
    CHECK(usp_mtp_open(fw.c) == 0, "fake-notopic: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(nt_disconnects == 2, "fake-notopic: DISCONNECT sent on both connections (%d)",
          nt_disconnects);
    CHECK(strcmp(fw.states, "CONNECTING DOWN CONNECTING DOWN CLOSED") == 0,
          "fake-notopic: never UP, retried (%s)", fw.states);
    return 0;
}

/* ---- fake-heartbeat ---- */

static void hb_frame(struct fconn *fc, const struct usp_stomp_frame *f)
{
    if (f->cmd == USP_STOMP_STOMP) {
        CHECK(hdr_is(f, "heart-beat", "500,500"),
              "fake-heartbeat: heart-beat:<OutgoingHeartbeat>,<IncomingHeartbeat> [R-STOMP.9/10]");
        static const char c[] = "CONNECTED\nversion:1.2\nheart-beat:500,500\n\n";
        fake_send(fc, 0, c, sizeof c);
    } else if (f->cmd == USP_STOMP_SUBSCRIBE) {
        char r[64];
        hdr_copy(f, "receipt", r, sizeof r);
        struct usp_stomp_header h = H("receipt-id", r);
        fake_reply(fc, 0, USP_STOMP_RECEIPT, &h, 1, false);
        fc->max_gap = 0;
        /* Our own heart-beats for 2.4 s, then nothing. */
        for (int i = 0; i < 6; i++)
            fake_send(fc, 400, "\n", 1);
    }
}

static void hb_eof(struct fconn *fc)
{
    note("fake-heartbeat: the client closed the connection");
}

static const struct fake_script hb_script = {.frame = hb_frame, .eof = hb_eof};

static void hb_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP)
        CHECK(strstr(ev->detail, "send every 500 ms, expect every 500 ms") != NULL,
              "fake-heartbeat: negotiated (%s)", ev->detail);
    if (ev->state == USP_MTP_DOWN) {
        struct fconn *fc = fake_cur;
        CHECK(ev->reason == USP_MTP_R_KEEPALIVE, "fake-heartbeat: DOWN with reason keepalive (%s)",
              ev->detail);
        CHECK(fc != NULL, "fake-heartbeat: the fake still holds the connection");
        if (fc) {
            uint64_t after = uv_now(loop) - fc->t_last_tx;
            CHECK(after >= 900 && after <= 1700,
                  "fake-heartbeat: the silent server is dropped %llu ms after its last byte (2 x "
                  "500 ms, give or take wheel and loop jitter)",
                  (unsigned long long)after);
            CHECK(fc->eols >= 10, "fake-heartbeat: the client sent %d EOLs (one per 250 ms idle)",
                  fc->eols);
            CHECK(fc->max_gap <= 500,
                  "fake-heartbeat: never more than 500 ms between the client's bytes (%llu ms)",
                  (unsigned long long)fc->max_gap);
        }
        CHECK(usp_mtp_close(e->c, 0, NULL) == 0, "fake-heartbeat: close");
    }
    if (ev->state == USP_MTP_CLOSED) {
        watchdog_stop();
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        fake_stop();
        usp_mtp_ctx_free(ctx);
    }
}

static int run_fake_heartbeat(void)
{
    fake_listen(&hb_script);
    struct usp_mtp_config cfg;
    fake_client(&cfg, "fake-heartbeat");
    cfg.stomp.destination = "/queue/hb";
    cfg.stomp.enable_heartbeats = true;
    cfg.stomp.outgoing_heartbeat_ms = 500;
    cfg.stomp.incoming_heartbeat_ms = 500;
    ep_create(&fw, &cfg);
    fw.on_state = hb_state;
    watchdog_start(10000, on_fake_watchdog);
    CHECK(usp_mtp_open(fw.c) == 0, "fake-heartbeat: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(strcmp(fw.states, "CONNECTING UP DOWN CLOSED") == 0, "fake-heartbeat: states %s",
          fw.states);
    return 0;
}

/* ---- destination names and configuration ---- */

static void check_config(void)
{
    char b[300];
    CHECK(usp_mtp_stomp_dest(USP_MTP_AGENT, "os::00256D-01:02", b, sizeof b) == 0 &&
              strcmp(b, "/queue/usp.agent.os::00256D-01:02") == 0,
          "usp_mtp_stomp_dest: %s", b);
    CHECK(usp_mtp_stomp_dest(USP_MTP_CONTROLLER, "proto::a/b%c", b, sizeof b) == 0 &&
              strcmp(b, "/queue/usp.controller.proto::a%2Fb%25c") == 0,
          "usp_mtp_stomp_dest: '/' and '%%' escaped: %s", b);
    CHECK(usp_mtp_stomp_dest(USP_MTP_AGENT, "", b, sizeof b) == USP_EINVAL &&
              usp_mtp_stomp_dest(USP_MTP_AGENT, "a\nb", b, sizeof b) == USP_EINVAL,
          "usp_mtp_stomp_dest: empty and control characters refused");
    CHECK(usp_mtp_stomp_dest(USP_MTP_AGENT, "proto::x", b, 10) == USP_ERANGE && b[9] == '\0',
          "usp_mtp_stomp_dest: a small buffer gives USP_ERANGE");
    char eid[256];
    memset(eid, 'e', 250);
    eid[250] = '\0';
    CHECK(usp_mtp_stomp_dest(USP_MTP_AGENT, eid, b, sizeof b) == USP_ERANGE,
          "usp_mtp_stomp_dest: a queue name over 255 bytes is refused");

    /* What usp_mtp_conn_new refuses before anything reaches the network. */
    struct usp_mtp_config cfg;
    struct usp_mtp_conn *c = NULL;
    char why[200];
    usp_mtp_config_init(&cfg);
    cfg.eid = "proto::cfg";
    cfg.url = "stomps://127.0.0.1:61614";
    int rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
    CHECK(rc == USP_EINVAL && !c && strstr(why, "CA file"),
          "stomps:// without a CA, certificate and key is refused: %s", why);
    cfg.url = "stomp://127.0.0.1:61613";
    cfg.stomp.destination = "/queue/\xff\xfe";
    rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
    CHECK(rc == USP_EINVAL && !c, "a destination that is not UTF-8 is refused: %s", why);
    cfg.stomp.destination = NULL;
    cfg.stomp.virtual_host = "\xc3";
    rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
    CHECK(rc == USP_EINVAL && !c, "a virtual host that is not UTF-8 is refused: %s", why);
    cfg.stomp.virtual_host = NULL;
    rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, NULL, &c, why, sizeof why);
    CHECK(rc == 0 && c && !usp_mtp_local_dest(c),
          "all STOMP settings zero is a valid configuration, no local destination before UP");
    CHECK(c && usp_mtp_close(c, 0, NULL) == 0, "close before open is accepted");
    usp_mtp_conn_free(c);
}

/* ---- stomps:// ------------------------------------------------------------------ */

static struct ep t_ctl, t_agent, t_bad[2];
static bool t_got_connect, t_got_answer;
static uint8_t t_rec[300];

static void tls_stop(uv_timer_t *t)
{
    uv_stop(loop);
}

static void tls_ctl_record(struct ep *e, const uint8_t *rec, size_t len,
                           const struct usp_mtp_rx *rx)
{
    struct usp_arena *a = usp_arena_new(4096);
    UspRecord__Record *r = NULL;
    struct usp_decode_err err;
    (void)usp_record_decode(a, rec, len, &r, &err);
    if (r && r->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT) {
        t_got_connect = true;
        CHECK(rx->reply_to.to && strcmp(rx->reply_to.to, t_agent.dest) == 0,
              "tls: the STOMPConnectRecord came over stomps:// with the agent's reply-to-dest");
        /* Answer at the reply-to-dest. */
        CHECK(usp_mtp_send(e->c, &rx->reply_to, t_rec, sizeof t_rec) == 0,
              "tls: the controller answers over stomps://");
    }
    usp_arena_free(a);
}

static void tls_agent_record(struct ep *e, const uint8_t *rec, size_t len,
                             const struct usp_mtp_rx *rx)
{
    t_got_answer = len == sizeof t_rec && memcmp(rec, t_rec, len) == 0;
    CHECK(t_got_answer, "tls: the agent got the controller's %zu bytes intact", len);
    uv_stop(loop);
}

static void tls_cfg(struct usp_mtp_config *cfg, const char *cadir, const char *dir,
                    const char *name, char bufs[3][300])
{
    snprintf(bufs[0], 300, "%s/ca.pem", cadir);
    snprintf(bufs[1], 300, "%s/%s.pem", dir, name);
    snprintf(bufs[2], 300, "%s/%s.key", dir, name);
    cfg->tls.ca_file = bufs[0];
    cfg->tls.cert_file = bufs[1];
    cfg->tls.key_file = bufs[2];
}

static void tls_run(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, tls_stop, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static int run_tls(const char *certs, const char *other)
{
    char url[80], files[4][3][300];
    snprintf(url, sizeof url, "stomps://127.0.0.1:%d", port);
    for (size_t i = 0; i < sizeof t_rec; i++)
        t_rec[i] = (uint8_t)(i * 13);
    struct usp_mtp_config cc, ac;
    ep_config(&cc, &t_ctl, "tls-ctl", USP_MTP_CONTROLLER, url);
    tls_cfg(&cc, certs, certs, "controller", files[0]);
    ep_create(&t_ctl, &cc);
    ep_config(&ac, &t_agent, "tls-agent", USP_MTP_AGENT, url);
    ac.peer_eid = t_ctl.eid;
    ac.peer_dest = t_ctl.dest;
    tls_cfg(&ac, certs, certs, "agents/1", files[1]);
    ep_create(&t_agent, &ac);
    t_ctl.on_record = tls_ctl_record;
    t_agent.on_record = tls_agent_record;
    CHECK(usp_mtp_open(t_ctl.c) == 0 && usp_mtp_open(t_agent.c) == 0, "tls: open both");
    tls_run(15000);
    CHECK(t_ctl.ups == 1 && t_agent.ups == 1, "tls: both UP over stomps:// (%s / %s)",
          t_ctl.states, t_agent.states);
    CHECK(t_got_connect, "tls: the controller got the agent's STOMPConnectRecord");
    CHECK(t_got_answer, "tls: records went both ways");
    CHECK(t_ctl.downs == 0 && t_agent.downs == 0, "tls: nobody went DOWN");

    /* Refusals: each client alone, until its first DOWN. */
    const char *what[2] = {"a client certificate from a CA the broker does not trust",
                           "a broker certificate from a CA the client does not trust"};
    const char *want[2] = {"alert: tlsv1 alert unknown ca",
                           "certificate did not verify: self-signed certificate in certificate chain"};
    struct usp_mtp_config bc;
    for (int i = 0; i < 2; i++) {
        static const char *const names[2] = {"tls-bad-client", "tls-bad-broker"};
        ep_config(&bc, &t_bad[i], names[i], USP_MTP_AGENT, url);
        tls_cfg(&bc, i == 1 ? other : certs, i == 0 ? other : certs, "agents/1", files[2 + i]);
        ep_create(&t_bad[i], &bc);
        CHECK(usp_mtp_open(t_bad[i].c) == 0, "tls: open %s", what[i]);
        for (int k = 0; k < 50 && t_bad[i].downs == 0 && t_bad[i].ups == 0; k++)
            tls_run(100);
        CHECK(t_bad[i].ups == 0 && t_bad[i].downs >= 1 && t_bad[i].reason == USP_MTP_R_REFUSED,
              "tls: %s: refused (%s)", what[i], usp_mtp_reason_name(t_bad[i].reason));
        CHECK(strstr(t_bad[i].down_detail, want[i]) != NULL, "tls: %s: the detail says \"%s\": %s",
              what[i], want[i], t_bad[i].down_detail);
        usp_mtp_conn_free(t_bad[i].c);
    }
    CHECK(usp_mtp_close(t_agent.c, 0, NULL) == 0 && usp_mtp_close(t_ctl.c, 0, NULL) == 0,
          "tls: graceful closes");
    for (int k = 0; k < 50 && (t_agent.closed == 0 || t_ctl.closed == 0); k++)
        tls_run(100);
    CHECK(t_agent.closed == 1 && t_ctl.closed == 1 && t_agent.reason == USP_MTP_R_CLOSED,
          "tls: both CLOSED (%s / %s)", t_agent.states, t_ctl.states);
    usp_mtp_conn_free(t_agent.c);
    usp_mtp_conn_free(t_ctl.c);
    usp_mtp_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s exchange|reconnect PORT | errors PORT UNUSED-PORT | scale PORT N |\n"
                "       %s fake-wire|fake-errors|"
                "fake-notopic|fake-heartbeat\n",
                argv[0], argv[0]);
        return 2;
    }
    const char *what = argv[1];
    port = argc > 2 ? atoi(argv[2]) : 0;
    snprintf(rabbit_url, sizeof rabbit_url, "stomp://127.0.0.1:%d", port);
    loop = uv_default_loop();
    uv_update_time(loop);
    t_start = uv_now(loop);
    CHECK(usp_mtp_register(&usp_mtp_stomp_ops) == 0, "STOMP binding registered");
    struct usp_mtp_ctx_opts o = {.max_connecting = 50};
    ctx = usp_mtp_ctx_new(loop, &o);
    if (!ctx)
        return 1;
    if (strcmp(what, "exchange") == 0) {
        check_config();
        run_pair(false);
    } else if (strcmp(what, "reconnect") == 0) {
        run_pair(true);
    } else if (strcmp(what, "errors") == 0) {
        run_errors(argc > 3 ? atoi(argv[3]) : 1);
    } else if (strcmp(what, "scale") == 0) {
        run_scale(argc > 3 ? atoi(argv[3]) : 1000);
    } else if (strcmp(what, "tls") == 0 && argc > 4) {
        run_tls(argv[3], argv[4]);
    } else if (strcmp(what, "fake-wire") == 0) {
        run_fake_wire();
    } else if (strcmp(what, "fake-errors") == 0) {
        run_fake_errors();
    } else if (strcmp(what, "fake-notopic") == 0) {
        run_fake_notopic();
    } else if (strcmp(what, "fake-heartbeat") == 0) {
        run_fake_heartbeat();
    } else {
        fprintf(stderr, "unknown scenario %s\n", what);
        return 2;
    }
    uv_run(loop, UV_RUN_DEFAULT); /* let closing handles finish */
    int rc = uv_loop_close(loop);
    CHECK(rc == 0, "every handle closed (uv_loop_close: %s)", rc ? uv_err_name(rc) : "ok");
    printf("%s: %d failure(s)\n", what, failures);
    return failures ? 1 : 0;
}
