/* Test driver for tests/integration/test-mqtt-mtp.sh: runs the MQTT binding
 * of libusp against the broker the script started and checks what the
 * specification asks of it. One scenario per run:
 *
 *   exchange  PORT VERSION QOS  controller and agent exchange records both
 *             ways (reply-to, MQTTConnectRecord, QoS, oversize records,
 *             send before UP), then a graceful close delivers a
 *             DisconnectRecord.
 *   reconnect PORT VERSION      as exchange, then prints "KILL-BROKER-NOW";
 *             the script kills and restarts the broker on the same port;
 *             both connections must come back within their back-off and
 *             exchange again (a new MQTTConnectRecord first).
 *   fake      PORT VERSION      one agent against the script's scripted fake
 *             broker (CONNECT properties, CONNACK properties, reconnect with
 *             the Assigned Client Identifier): the fake broker checks the
 *             bytes, this side checks the states.
 *   scale     PORT N            N agents (half of them bound to 127.0.0.2):
 *             time to come up, file descriptors and heap per connection.
 *   keepalive PORT VERSION      one agent (keepalive 5 s) against a fake broker
 *             that stops answering after the handshake: PINGREQ on time, then
 *             DOWN with reason keepalive.
 *   resolve   PORT              "localhost" resolves (uv_getaddrinfo) and comes
 *             UP; "no-such-host.invalid" goes DOWN with reason resolve.
 *   notopic   PORT              MQTT 5 agent without a topic, against a fake
 *             broker that gives none either: DISCONNECT, CLOSED [R-MQTT.16].
 *   unused-port PORT            nothing listens: DOWN with a reason, retries.
 *   tls-bulk  PORT              over mqtts: a 3 MB record each way (TLS
 *             writes that block), then 2 s idle with the CPU time measured
 *             (no poll spinning on libmosquitto's want_write).
 *   tls-refused PORT TEXT       one agent whose TLS handshake must fail: DOWN
 *             (reason connect) with TEXT in the detail, never UP.
 *   tls-stall PORT              a fake server that accepts and never answers
 *             the ClientHello: DOWN with reason timeout, CPU time ~0.
 *
 * mqtts: with MQTT_TLS_DIR set (a folder from `uspsim certs`), endpoints use
 * mqtts://HOST:PORT (HOST from MQTT_TLS_HOST, default 127.0.0.1), trust
 * MQTT_TLS_CA (default DIR/ca.pem) and present DIR/controller.pem or
 * DIR/agents/1.pem (MQTT_TLS_CERT overrides the agent's: DIR/NAME.pem and
 * .key).
 *
 * Prints "ok ..." for each check that passed, "FAIL ..." otherwise, and
 * exits non-zero on any failure. */
#include <dirent.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/mtp.h"

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

/* ---- endpoints ---- */

struct ep {
    const char *name;
    struct usp_mtp_conn *c;
    char eid[64], topic[128];
    enum usp_mtp_state state;
    enum usp_mtp_reason reason;
    char states[256]; /* e.g. "CONNECTING UP DOWN CONNECTING UP CLOSED" */
    int ups, downs, closed;
    uint64_t t_first_down, t_up;
    uint32_t max_attempt;
    uint64_t retry_sum_hi_ms; /* the most the back-off may have waited */
    void (*on_record)(struct ep *e, const uint8_t *rec, size_t len, const struct usp_mtp_rx *rx);
    void (*on_state)(struct ep *e, const struct usp_mtp_event *ev);
};

static void ep_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct ep *e = user;
    CHECK(c == e->c, "%s: the state callback names its connection", e->name);
    CHECK(ev->detail != NULL, "%s: a state detail is given", e->name);
    note("%s: %s %s (%d) attempt %u retry %u ms: %s", e->name, usp_mtp_state_name(ev->state),
         usp_mtp_reason_name(ev->reason), ev->code, ev->attempt, ev->retry_ms, ev->detail);
    e->state = ev->state;
    e->reason = ev->reason;
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
    if (e->on_record)
        e->on_record(e, rec, len, rx);
}

static const struct usp_mtp_callbacks callbacks = {.state = ep_state, .record = ep_record};

static bool no_topic; /* configure no own topic */
static int version;   /* 5 or 4 */
static int qos = 1;
static int port;
static uint32_t connect_timeout_ms = 5000;
static const char *expect_text; /* tls-refused */

/* mqtts (see the top of the file); NULL: mqtt. */
static const char *tls_dir, *tls_ca, *tls_host = "127.0.0.1", *tls_agent_cert;
static char tls_ca_buf[512], ctl_cert[512], ctl_key[512], agent_cert[512], agent_key[512];

static void tls_setup(void)
{
    tls_dir = getenv("MQTT_TLS_DIR");
    if (!tls_dir || !*tls_dir) {
        tls_dir = NULL;
        return;
    }
    const char *e = getenv("MQTT_TLS_CA");
    snprintf(tls_ca_buf, sizeof tls_ca_buf, "%s/ca.pem", tls_dir);
    tls_ca = e && *e ? e : tls_ca_buf;
    if ((e = getenv("MQTT_TLS_HOST")) && *e)
        tls_host = e;
    tls_agent_cert = getenv("MQTT_TLS_CERT");
    snprintf(ctl_cert, sizeof ctl_cert, "%s/controller.pem", tls_dir);
    snprintf(ctl_key, sizeof ctl_key, "%s/controller.key", tls_dir);
    if (tls_agent_cert && *tls_agent_cert) {
        snprintf(agent_cert, sizeof agent_cert, "%s.pem", tls_agent_cert);
        snprintf(agent_key, sizeof agent_key, "%s.key", tls_agent_cert);
    } else {
        snprintf(agent_cert, sizeof agent_cert, "%s/agents/1.pem", tls_dir);
        snprintf(agent_key, sizeof agent_key, "%s/agents/1.key", tls_dir);
    }
}

/* The URL and TLS files of an endpoint of `role`. */
static void ep_transport(struct usp_mtp_config *cfg, enum usp_mtp_role role, char *url, size_t n)
{
    if (!tls_dir) {
        snprintf(url, n, "mqtt://127.0.0.1:%d", port);
        return;
    }
    snprintf(url, n, "mqtts://%s:%d", tls_host, port);
    cfg->tls.ca_file = tls_ca;
    cfg->tls.cert_file = role == USP_MTP_AGENT ? agent_cert : ctl_cert;
    cfg->tls.key_file = role == USP_MTP_AGENT ? agent_key : ctl_key;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void ep_init(struct ep *e, const char *name, enum usp_mtp_role role, const char *peer_eid,
                    const char *peer_dest, uint32_t max_record, uint32_t retry_s,
                    uint32_t multiplier)
{
    char url[128];
    snprintf(e->eid, sizeof e->eid, "proto::%s-v%d", name, version);
    snprintf(e->topic, sizeof e->topic, "usp/%s/%s", role == USP_MTP_AGENT ? "agent" : "controller",
             e->eid);
    e->name = name;
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    ep_transport(&cfg, role, url, sizeof url);
    cfg.role = role;
    cfg.eid = e->eid;
    cfg.url = url;
    cfg.peer_eid = peer_eid;
    cfg.peer_dest = peer_dest;
    cfg.keepalive_s = 5;
    cfg.retry_time_s = retry_s;
    cfg.retry_multiplier = multiplier;
    cfg.retry_max_s = 8;
    cfg.connect_timeout_ms = connect_timeout_ms;
    cfg.max_record = max_record;
    cfg.mqtt.version = version == 5 ? USP_MQTT_V5 : USP_MQTT_V311;
    cfg.mqtt.qos = qos;
    cfg.mqtt.topic = no_topic ? NULL : e->topic;
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

/* What arrived: a decoded Record (and Msg), or a decode failure. */
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

/* ---- the exchange scenario ---- */

static struct ep ctl, agent;
static int rounds_wanted = 20, rounds_done, phase_no;
static bool big_dropped_checked, notify_done, reconnect_mode, killed, second_connect;
static uv_timer_t watchdog;
static uint32_t agent_max_record = 65536;

static struct usp_mtp_stats totals; /* the context's, kept when it goes */

static void finish(void)
{
    totals = *usp_mtp_ctx_stats(ctx);
    uv_timer_stop(&watchdog);
    uv_close((uv_handle_t *)&watchdog, NULL);
    usp_mtp_conn_free(agent.c);
    usp_mtp_conn_free(ctl.c);
    agent.c = ctl.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static void on_watchdog(uv_timer_t *t)
{
    CHECK(false, "the scenario finished in time (stuck in phase %d; ctl: %s; agent: %s)", phase_no,
          ctl.states, agent.states);
    finish();
}

static void start_rounds(void);

static void ctl_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    struct got g;
    got_decode(&g, buf, len, e->eid);
    CHECK(g.rec != NULL, "controller: a valid Record arrived (%zu bytes)", len);
    if (!g.rec)
        goto out;
    CHECK(rx->reply_to.to && strcmp(rx->reply_to.to, agent.topic) == 0,
          "controller: reply-to is the agent's topic (%s)",
          rx->reply_to.to ? rx->reply_to.to : "none");
    CHECK(strcmp(rx->arrived_on, ctl.topic) == 0, "controller: arrived on its own topic (%s)",
          rx->arrived_on);
    CHECK(rx->qos == qos, "controller: QoS %d as sent", rx->qos);
    switch (g.rec->record_type_case) {
    case USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT: {
        const UspRecord__MQTTConnectRecord *mc = g.rec->mqtt_connect;
        CHECK(phase_no == 1 || (reconnect_mode && phase_no == 11),
              "controller: MQTTConnectRecord comes first on a new channel (phase %d)", phase_no);
        CHECK(strcmp(g.rec->from_id, agent.eid) == 0 && strcmp(g.rec->to_id, ctl.eid) == 0,
              "MQTTConnectRecord: from %s to %s", g.rec->from_id, g.rec->to_id);
        CHECK(strcmp(g.rec->version, USP_VERSION_DEFAULT) == 0, "MQTTConnectRecord: version %s",
              g.rec->version);
        CHECK(mc->version == (version == 5 ? USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V5
                                           : USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V3_1_1),
              "MQTTConnectRecord: MQTT version %d matches", (int)mc->version);
        CHECK(strcmp(mc->subscribed_topic, agent.topic) == 0,
              "MQTTConnectRecord: subscribed_topic %s", mc->subscribed_topic);
        if (phase_no == 11)
            second_connect = true;
        phase_no++;
        start_rounds();
        break;
    }
    case USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT: {
        const UspRecord__DisconnectRecord *d = g.rec->disconnect;
        CHECK(phase_no == 5, "controller: DisconnectRecord after the close (phase %d)", phase_no);
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
            CHECK(strcmp(g.msg->header->msg_id, want) == 0, "controller: GetResp %s", want);
            rounds_done++;
            if (rounds_done < rounds_wanted) {
                snprintf(want, sizeof want, "get-%d", rounds_done + 1);
                send_msg(&ctl, agent.eid, rx->reply_to.to, want, USP__HEADER__MSG_TYPE__GET);
            } else if (phase_no == 2 || phase_no == 12) {
                phase_no++;
                note("%d round trips controller -> agent done", rounds_done);
                /* now the agent asks */
                int rc =
                    send_msg(&agent, ctl.eid, ctl.topic, "notify-1", USP__HEADER__MSG_TYPE__NOTIFY);
                CHECK(rc == 0, "agent: Notify sent to the controller's topic");
            }
        } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY) {
            CHECK(strcmp(g.msg->header->msg_id, "notify-1") == 0, "controller: Notify arrived");
            int rc = send_msg(&ctl, agent.eid, rx->reply_to.to, "notify-1",
                              USP__HEADER__MSG_TYPE__NOTIFY_RESP);
            CHECK(rc == 0, "controller: NotifyResp sent to the reply-to");
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

static void start_rounds(void)
{
    rounds_done = 0;
    int rc = send_msg(&ctl, agent.eid, agent.topic, "get-1", USP__HEADER__MSG_TYPE__GET);
    CHECK(rc == 0, "controller: first Get sent");
}

static void big_test(void)
{
    /* An oversized record each way. */
    size_t n = agent_max_record + 1;
    uint8_t *big = calloc(1, n);
    struct usp_mtp_dest d = {.to = agent.topic};
    int rc = usp_mtp_send(agent.c, &(struct usp_mtp_dest){.to = ctl.topic}, big, n);
    CHECK(rc == USP_ERANGE && agent.c->stats.tx_oversize == 1,
          "agent: a %zu-byte record over max_record is refused (rc %d)", n, rc);
    rc = usp_mtp_send(ctl.c, &d, big, n);
    CHECK(rc == 0, "controller: a %zu-byte record goes out (its limit is larger)", n);
    free(big);
    rc = send_msg(&ctl, agent.eid, agent.topic, "after-big", USP__HEADER__MSG_TYPE__GET);
    CHECK(rc == 0, "controller: a Get follows the big record");
}

static void agent_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    CHECK(len <= agent_max_record, "agent: nothing over max_record is delivered (%zu)", len);
    struct got g;
    got_decode(&g, buf, len, e->eid);
    CHECK(g.rec && g.msg, "agent: a valid Record with a Msg arrived");
    if (!g.msg)
        goto out;
    CHECK(rx->reply_to.to && strcmp(rx->reply_to.to, ctl.topic) == 0,
          "agent: reply-to is the controller's topic (%s)",
          rx->reply_to.to ? rx->reply_to.to : "none");
    CHECK(strcmp(rx->arrived_on, agent.topic) == 0, "agent: arrived on %s", rx->arrived_on);
    int kind = usp_msg_kind(g.msg);
    if (kind == USP__HEADER__MSG_TYPE__GET) {
        const char *id = g.msg->header->msg_id;
        if (strcmp(id, "after-big") == 0) {
            CHECK(agent.c->stats.rx_oversize == 1,
                  "agent: the oversized record was dropped and counted (rx_oversize %llu)",
                  (unsigned long long)agent.c->stats.rx_oversize);
            big_dropped_checked = true;
            phase_no = 5;
            int rc = usp_mtp_close(agent.c, USP_ERR_SESS_CONTEXT_TERMINATED, "test over");
            CHECK(rc == 0, "agent: graceful close started");
            CHECK(usp_mtp_close(agent.c, 0, NULL) == USP_EPERM, "agent: a second close is refused");
            CHECK(usp_mtp_send(agent.c, &rx->reply_to, buf, len) == USP_EPERM,
                  "agent: nothing is sent after close");
        } else {
            int rc =
                send_msg(&agent, ctl.eid, rx->reply_to.to, id, USP__HEADER__MSG_TYPE__GET_RESP);
            if (rc)
                CHECK(false, "agent: GetResp sent (rc %d)", rc);
        }
    } else if (kind == USP__HEADER__MSG_TYPE__NOTIFY_RESP) {
        CHECK(strcmp(g.msg->header->msg_id, "notify-1") == 0, "agent: NotifyResp arrived");
        notify_done = true;
        if (reconnect_mode && !killed) {
            killed = true;
            phase_no = 10;
            printf("KILL-BROKER-NOW\n");
            fflush(stdout);
        } else {
            phase_no = 4;
            big_test();
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
        CHECK(usp_mtp_local_dest(ctl.c) && strcmp(usp_mtp_local_dest(ctl.c), ctl.topic) == 0,
              "controller: its reply-to is its own topic");
        CHECK(usp_mtp_open(agent.c) == 0, "agent: open");
        CHECK(usp_mtp_open(agent.c) == USP_EPERM, "agent: a second open is refused");
        struct usp_mtp_dest d = {.to = ctl.topic};
        CHECK(usp_mtp_send(agent.c, &d, (const uint8_t *)"x", 1) == USP_EPERM &&
                  agent.c->stats.tx_refused == 1,
              "agent: send before UP is refused [R-MQTT.17]");
        phase_no = 1;
    }
    if (ev->state == USP_MTP_CLOSED && e == &ctl) {
        CHECK(ev->reason == USP_MTP_R_CLOSED, "controller: CLOSED after its close");
        finish();
    }
    if (ev->state == USP_MTP_UP && phase_no == 10 && killed)
        phase_no = 10; /* waiting for the agent's connect record */
}

static void agent_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP)
        CHECK(usp_mtp_local_dest(agent.c) && strcmp(usp_mtp_local_dest(agent.c), agent.topic) == 0,
              "agent: its reply-to is its own topic");
    if (ev->state == USP_MTP_UP && reconnect_mode && killed && phase_no == 10) {
        uint64_t took = agent.t_up - agent.t_first_down;
        note("agent back %.3f s after the broker died (retry counter reached %u)", took / 1000.0,
             agent.max_attempt);
        /* The back-off is respected both ways: not before the first wait's
         * minimum (ConnectRetryTime = 1 s), not after all the waits it
         * announced plus connect time. */
        CHECK(took >= 3000,
              "agent: waited at least ConnectRetryTime (3 s) before reconnecting "
              "(%llu ms)",
              (unsigned long long)took);
        CHECK(took <= agent.retry_sum_hi_ms + 3000,
              "agent: reconnected within its back-off window (%llu ms <= %llu + 3000 ms)",
              (unsigned long long)took, (unsigned long long)agent.retry_sum_hi_ms);
        phase_no = 11;
    }
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(phase_no == 5 || phase_no == 6, "agent: CLOSED after its close (phase %d)", phase_no);
        CHECK(ev->reason == USP_MTP_R_CLOSED, "agent: CLOSED with reason closed");
        /* The controller closes once the DisconnectRecord is in. */
        if (phase_no == 6)
            CHECK(usp_mtp_close(ctl.c, 0, NULL) == 0, "controller: graceful close");
    }
}

static int run_exchange(bool reconnect)
{
    reconnect_mode = reconnect;
    /* The controller retries every second exactly, the agent after 3 to
     * 4.5 s: after a broker restart the controller is subscribed again
     * before the agent sends its new MQTTConnectRecord (clean sessions keep
     * nothing for a client that is away). */
    ep_init(&ctl, "ctl", USP_MTP_CONTROLLER, NULL, NULL, USP_MTP_MAX_RECORD_DEFAULT, 1, 1000);
    char ctl_eid[64], ctl_topic[128];
    strcpy(ctl_eid, ctl.eid);
    strcpy(ctl_topic, ctl.topic);
    ep_init(&agent, "agent", USP_MTP_AGENT, ctl_eid, ctl_topic, agent_max_record, 3, 1500);
    ctl.on_record = ctl_record;
    agent.on_record = agent_record;
    ctl.on_state = ctl_state;
    agent.on_state = agent_state;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_watchdog, reconnect ? 40000 : 20000, 0);
    CHECK(usp_mtp_open(ctl.c) == 0, "controller: open");
    CHECK(ctl.state == USP_MTP_IDLE, "controller: no callback from inside open");
    uv_run(loop, UV_RUN_DEFAULT);

    CHECK(phase_no == 6, "the scenario reached its end (phase %d)", phase_no);
    CHECK(big_dropped_checked, "oversized records checked");
    CHECK(notify_done, "agent -> controller request answered");
    const char *want_agent =
        reconnect ? "CONNECTING UP DOWN CONNECTING UP CLOSED" : "CONNECTING UP CLOSED";
    if (reconnect) {
        CHECK(second_connect, "controller: a second MQTTConnectRecord after the reconnect");
        CHECK(strncmp(agent.states, "CONNECTING UP DOWN", 18) == 0 && agent.ups == 2 &&
                  agent.closed == 1,
              "agent states: %s", agent.states);
        CHECK(strncmp(ctl.states, "CONNECTING UP DOWN", 18) == 0 && ctl.ups == 2,
              "controller states: %s", ctl.states);
        CHECK(agent.c == NULL && agent.downs >= 1, "agent went DOWN %d times", agent.downs);
    } else {
        CHECK(strcmp(agent.states, want_agent) == 0, "agent states: %s", agent.states);
        CHECK(strcmp(ctl.states, "CONNECTING UP CLOSED") == 0, "controller states: %s", ctl.states);
    }
    const struct usp_mtp_stats *s = &totals;
    printf("#    totals: tx %llu records %llu bytes, rx %llu records %llu bytes, rx_oversize "
           "%llu, tx_oversize %llu, tx_refused %llu, ups %llu, drops %llu, failed attempts %llu\n",
           (unsigned long long)s->tx_records, (unsigned long long)s->tx_bytes,
           (unsigned long long)s->rx_records, (unsigned long long)s->rx_bytes,
           (unsigned long long)s->rx_oversize, (unsigned long long)s->tx_oversize,
           (unsigned long long)s->tx_refused, (unsigned long long)s->ups,
           (unsigned long long)s->drops, (unsigned long long)s->attempts_failed);
    CHECK(s->rx_no_reply_to == 0, "every received record had a reply-to");
    CHECK(s->rx_oversize == 1 && s->tx_oversize == 1, "oversize counted once each way");
    return 0;
}

/* ---- fake broker: the script's scripted server checks the bytes ---- */

static struct ep fa;
static int fake_ups;

static void fake_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP) {
        fake_ups++;
        const char *ld = usp_mtp_local_dest(e->c);
        if (version == 5)
            CHECK(ld && strcmp(ld, "usp/resp/fake") == 0,
                  "fake: the Response Information is the reply-to [R-MQTT.21] (%s)", ld);
        else
            CHECK(ld && strcmp(ld, e->topic) == 0, "fake: the own topic is the reply-to (%s)", ld);
        /* Close (not free) so that the MQTTConnectRecord still goes out. */
        if (fake_ups == 2)
            CHECK(usp_mtp_close(e->c, 0, NULL) == 0, "fake: graceful close");
    }
    if (ev->state == USP_MTP_CLOSED) {
        uv_timer_stop(&watchdog);
        uv_close((uv_handle_t *)&watchdog, NULL);
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        usp_mtp_ctx_free(ctx);
    }
}

static void on_fake_watchdog(uv_timer_t *t)
{
    CHECK(false, "fake: came up twice in time (states: %s)", fa.states);
    uv_close((uv_handle_t *)t, NULL);
    usp_mtp_conn_free(fa.c);
    fa.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static int run_fake(void)
{
    ep_init(&fa, "fake", USP_MTP_AGENT, "proto::ctl-fake", "usp/controller/fake", 65536, 1, 2000);
    fa.on_state = fake_state;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_fake_watchdog, 15000, 0);
    CHECK(usp_mtp_open(fa.c) == 0, "fake: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(fake_ups == 2, "fake: UP, lost, UP again (%s)", fa.states);
    CHECK(strcmp(fa.states, "CONNECTING UP DOWN CONNECTING UP CLOSED") == 0, "fake: states %s",
          fa.states);
    return 0;
}

/* ---- keepalive: a fake broker that never answers PINGREQ ---- */

static void keepalive_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP)
        e->t_up = uv_now(loop);
    if (ev->state == USP_MTP_DOWN) {
        uint64_t after = uv_now(loop) - e->t_up;
        CHECK(ev->reason == USP_MTP_R_KEEPALIVE, "keepalive: DOWN with reason keepalive (%s)",
              usp_mtp_reason_name(ev->reason));
        /* PINGREQ after 4-6.25 s, then no answer for another keepalive. */
        CHECK(after >= 8000 && after <= 14000,
              "keepalive: the silent broker is noticed %.3f s after UP (8-14 s)", after / 1000.0);
        printf("#    silent broker noticed %.3f s after UP (keepalive 5 s)\n", after / 1000.0);
        CHECK(usp_mtp_close(e->c, 0, NULL) == 0, "keepalive: close");
    }
    if (ev->state == USP_MTP_CLOSED) {
        uv_timer_stop(&watchdog);
        uv_close((uv_handle_t *)&watchdog, NULL);
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        usp_mtp_ctx_free(ctx);
    }
}

static int run_keepalive(void)
{
    ep_init(&fa, "keepalive", USP_MTP_AGENT, "proto::ctl-fake", "usp/controller/fake", 65536, 1,
            2000);
    fa.on_state = keepalive_state;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_fake_watchdog, 25000, 0);
    CHECK(usp_mtp_open(fa.c) == 0, "keepalive: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(strcmp(fa.states, "CONNECTING UP DOWN CLOSED") == 0, "keepalive: states %s", fa.states);
    return 0;
}

/* ---- host names: resolved off the loop ---- */

static struct ep named, nowhere;

static void resolve_done(void)
{
    uv_timer_stop(&watchdog);
    uv_close((uv_handle_t *)&watchdog, NULL);
    usp_mtp_conn_free(named.c);
    usp_mtp_conn_free(nowhere.c);
    named.c = nowhere.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static void resolve_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (e == &nowhere && ev->state == USP_MTP_DOWN && e->downs == 1)
        /* A slow DNS server may make it a timeout instead. */
        CHECK(ev->reason == USP_MTP_R_RESOLVE || ev->reason == USP_MTP_R_TIMEOUT,
              "nowhere: DOWN with reason resolve (%s: %s)", usp_mtp_reason_name(ev->reason),
              ev->detail);
    if (named.ups == 1 && nowhere.downs >= 1)
        resolve_done();
}

static void on_resolve_watchdog(uv_timer_t *t)
{
    CHECK(false, "resolve: finished in time (localhost: %s; nowhere: %s)", named.states,
          nowhere.states);
    resolve_done();
}

static void ep_url(struct ep *e, const char *name, const char *url)
{
    snprintf(e->eid, sizeof e->eid, "proto::%s", name);
    snprintf(e->topic, sizeof e->topic, "usp/agent/%s", e->eid);
    e->name = name;
    e->on_state = resolve_state;
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.eid = e->eid;
    cfg.url = url;
    cfg.retry_time_s = 1;
    cfg.connect_timeout_ms = 4000;
    cfg.mqtt.topic = e->topic;
    char why[200];
    int rc = usp_mtp_conn_new(ctx, &cfg, &callbacks, e, &e->c, why, sizeof why);
    CHECK(rc == 0, "%s: connection created (%s)", name, rc ? why : "no error");
    if (rc)
        exit(1);
}

static int run_resolve(void)
{
    char url[96];
    snprintf(url, sizeof url, "mqtt://localhost:%d", port);
    ep_url(&named, "named", url);
    snprintf(url, sizeof url, "mqtt://no-such-host.invalid:%d", port);
    ep_url(&nowhere, "nowhere", url);
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_resolve_watchdog, 15000, 0);
    CHECK(usp_mtp_open(named.c) == 0 && usp_mtp_open(nowhere.c) == 0, "resolve: open both");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(named.ups == 1, "localhost: resolved and UP (%s)", named.states);
    CHECK(nowhere.ups == 0 && nowhere.downs >= 1, "nowhere: never UP (%s)", nowhere.states);
    return 0;
}

/* ---- nothing to subscribe to [R-MQTT.16] ---- */

static void notopic_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_CLOSED) {
        CHECK(ev->reason == USP_MTP_R_NO_TOPIC, "notopic: CLOSED with reason no-topic (%s)",
              usp_mtp_reason_name(ev->reason));
        uv_timer_stop(&watchdog);
        uv_close((uv_handle_t *)&watchdog, NULL);
        usp_mtp_conn_free(e->c);
        e->c = NULL;
        usp_mtp_ctx_free(ctx);
    }
}

static int run_notopic(void)
{
    no_topic = true;
    ep_init(&fa, "notopic", USP_MTP_AGENT, NULL, NULL, 65536, 1, 2000);
    fa.on_state = notopic_state;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_fake_watchdog, 10000, 0);
    CHECK(usp_mtp_open(fa.c) == 0, "notopic: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(strcmp(fa.states, "CONNECTING CLOSED") == 0,
          "notopic: disabled without ever being UP, no retry (%s)", fa.states);
    return 0;
}

/* ---- nothing listening ---- */

static void on_lonely_done(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    usp_mtp_conn_free(fa.c);
    fa.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static int run_unused_port(void)
{
    ep_init(&fa, "lonely", USP_MTP_AGENT, NULL, NULL, 65536, 1, 2000);
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_lonely_done, 3500, 0);
    CHECK(usp_mtp_open(fa.c) == 0, "lonely: open");
    uv_run(loop, UV_RUN_DEFAULT);
    /* attempt 1 at once, then 1-2 s, then 2-4 s: 2 or 3 attempts in 3.5 s */
    CHECK(fa.downs >= 2 && fa.downs <= 3, "lonely: %d failed attempts in 3.5 s (back-off)",
          fa.downs);
    CHECK(fa.reason == USP_MTP_R_CONNECT, "lonely: DOWN with reason connect (%s)",
          usp_mtp_reason_name(fa.reason));
    CHECK(fa.ups == 0, "lonely: never UP");
    return 0;
}

/* ---- scale: fds and memory per connection ---- */

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

static int scale_n, scale_up, scale_closed;
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
    if (ev->state == USP_MTP_DOWN)
        printf("#    DOWN: %s\n", ev->detail);
}

static const struct usp_mtp_callbacks scale_cb = {.state = scale_state};

static int run_scale(int n)
{
    scale_n = n;
    scale_conns = calloc((size_t)n, sizeof *scale_conns);
    char(*eids)[48] = calloc((size_t)n, sizeof *eids);
    char(*topics)[64] = calloc((size_t)n, sizeof *topics);
    char url[128];
    int fd0 = count_fds();
    struct mallinfo2 m0 = mallinfo2();
    for (int i = 0; i < n; i++) {
        snprintf(eids[i], sizeof eids[i], "proto::scale-%d", i);
        snprintf(topics[i], sizeof topics[i], "usp/agent/%s", eids[i]);
        struct usp_mtp_config cfg;
        usp_mtp_config_init(&cfg);
        ep_transport(&cfg, USP_MTP_AGENT, url, sizeof url);
        cfg.eid = eids[i];
        cfg.url = url;
        cfg.mqtt.topic = topics[i];
        cfg.bind_address = (i % 2) ? "127.0.0.2" : NULL;
        char why[200];
        if (usp_mtp_conn_new(ctx, &cfg, &scale_cb, NULL, &scale_conns[i], why, sizeof why)) {
            CHECK(false, "scale: connection %d: %s", i, why);
            return 1;
        }
    }
    struct mallinfo2 m1 = mallinfo2();
    scale_t0 = uv_hrtime();
    for (int i = 0; i < n; i++)
        usp_mtp_open(scale_conns[i]);
    uv_run(loop, UV_RUN_DEFAULT);
    double secs = (double)(scale_t_up - scale_t0) / 1e9;
    struct mallinfo2 m2 = mallinfo2();
    int fd1 = count_fds();
    int bound = count_bound();
    CHECK(scale_up == n, "scale: %d of %d agents UP", scale_up, n);
    printf("#    %d agents UP (CONNECT, CONNACK, SUBSCRIBE, SUBACK) in %.3f s: %.0f sessions/s "
           "with at most %u connecting\n",
           n, secs, n / secs, ctx->max_connecting);
    double fds = (double)(fd1 - fd0) / n;
    CHECK(fds <= 1.01,
          "scale: %.2f file descriptors per connection (libmosquitto's socketpair "
          "suppressed)",
          fds);
    CHECK(bound == n / 2, "scale: %d connections come from the bound source 127.0.0.2", bound);
    printf("#    sizeof(struct mqtt_conn) %zu bytes, uv_poll_t %zu, struct usp_mtp_conn %zu\n",
           mtp__mqtt_conn_size(), sizeof(uv_poll_t), sizeof(struct usp_mtp_conn));
    if (m2.uordblks > m0.uordblks) { /* not under ASan, which has its own allocator */
        printf("#    heap per idle connection (created, not open): %.0f bytes\n",
               (double)(m1.uordblks - m0.uordblks) / n);
        printf("#    heap per connected agent (incl. libmosquitto): %.0f bytes\n",
               (double)(m2.uordblks - m0.uordblks) / n);
    }
    for (int i = 0; i < n; i++)
        usp_mtp_close(scale_conns[i], 0, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(scale_closed == n, "scale: %d of %d closed gracefully", scale_closed, n);
    for (int i = 0; i < n; i++)
        usp_mtp_conn_free(scale_conns[i]);
    usp_mtp_ctx_free(ctx);
    free(scale_conns);
    free(eids);
    free(topics);
    return 0;
}

/* ---- mqtts: bulk records and an idle loop ---- */

static struct ep bctl, bagent;
static uint8_t *bulk;
static const size_t bulk_len = 3u << 20;
static int bulk_got_agent, bulk_got_ctl, bulk_closed;
static double bulk_cpu0, bulk_idle_cpu = -1;
static uv_timer_t idle_timer;

static void bulk_finish(void)
{
    uv_timer_stop(&watchdog);
    uv_close((uv_handle_t *)&watchdog, NULL);
    if (!uv_is_closing((uv_handle_t *)&idle_timer))
        uv_close((uv_handle_t *)&idle_timer, NULL);
    usp_mtp_conn_free(bctl.c);
    usp_mtp_conn_free(bagent.c);
    bctl.c = bagent.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static void on_idle_done(uv_timer_t *t)
{
    bulk_idle_cpu = cpu_seconds() - bulk_cpu0;
    note("2 s idle with two mqtts sessions: %.3f s of CPU", bulk_idle_cpu);
    CHECK(usp_mtp_close(bagent.c, 0, NULL) == 0 && usp_mtp_close(bctl.c, 0, NULL) == 0,
          "tls-bulk: both close");
}

static void bulk_record(struct ep *e, const uint8_t *buf, size_t len, const struct usp_mtp_rx *rx)
{
    bool same = len == bulk_len && memcmp(buf, bulk, len) == 0;
    CHECK(same, "%s: the %zu-byte record arrived intact over TLS (%zu bytes)", e->name, bulk_len,
          len);
    if (e == &bagent) {
        bulk_got_agent++;
        struct usp_mtp_dest d = {.to = bctl.topic};
        CHECK(usp_mtp_send(bagent.c, &d, bulk, bulk_len) == 0, "agent: sends it back");
    } else {
        bulk_got_ctl++;
        bulk_cpu0 = cpu_seconds();
        uv_timer_start(&idle_timer, on_idle_done, 2000, 0);
    }
}

static void bulk_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_UP && e == &bctl)
        CHECK(usp_mtp_open(bagent.c) == 0, "agent: open");
    if (ev->state == USP_MTP_UP && e == &bagent) {
        struct usp_mtp_dest d = {.to = bagent.topic};
        CHECK(usp_mtp_send(bctl.c, &d, bulk, bulk_len) == 0,
              "controller: a %zu-byte record handed to libmosquitto", bulk_len);
    }
    if (ev->state == USP_MTP_DOWN)
        CHECK(false, "%s: no DOWN (%s)", e->name, ev->detail);
    if (ev->state == USP_MTP_CLOSED && ++bulk_closed == 2)
        bulk_finish();
}

static void on_bulk_watchdog(uv_timer_t *t)
{
    CHECK(false, "tls-bulk: finished in time (ctl: %s; agent: %s)", bctl.states, bagent.states);
    bulk_finish();
}

static int run_tls_bulk(void)
{
    bulk = malloc(bulk_len);
    for (size_t i = 0; i < bulk_len; i++)
        bulk[i] = (uint8_t)((i * 2654435761u) >> 13);
    ep_init(&bctl, "bulkctl", USP_MTP_CONTROLLER, NULL, NULL, USP_MTP_MAX_RECORD_DEFAULT, 1, 1000);
    ep_init(&bagent, "bulkagent", USP_MTP_AGENT, NULL, NULL, USP_MTP_MAX_RECORD_DEFAULT, 1, 1000);
    bctl.on_state = bagent.on_state = bulk_state;
    bctl.on_record = bagent.on_record = bulk_record;
    uv_timer_init(loop, &watchdog);
    uv_timer_init(loop, &idle_timer);
    uv_timer_start(&watchdog, on_bulk_watchdog, 30000, 0);
    CHECK(usp_mtp_open(bctl.c) == 0, "controller: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(bulk_got_agent == 1 && bulk_got_ctl == 1, "tls-bulk: one record each way (%d, %d)",
          bulk_got_agent, bulk_got_ctl);
    printf("#    idle: %.3f s of CPU in 2 s with two mqtts sessions up\n", bulk_idle_cpu);
    CHECK(bulk_idle_cpu >= 0 && bulk_idle_cpu < 0.25,
          "tls-bulk: idle TLS sessions do not spin (%.3f s CPU in 2 s)", bulk_idle_cpu);
    CHECK(strcmp(bctl.states, "CONNECTING UP CLOSED") == 0 &&
              strcmp(bagent.states, "CONNECTING UP CLOSED") == 0,
          "tls-bulk states: %s / %s", bctl.states, bagent.states);
    free(bulk);
    return 0;
}

/* ---- mqtts: refused handshakes ---- */

static char refused_detail[256];
static double stall_cpu0;

static void refused_done(void)
{
    uv_timer_stop(&watchdog);
    uv_close((uv_handle_t *)&watchdog, NULL);
    usp_mtp_conn_free(fa.c);
    fa.c = NULL;
    usp_mtp_ctx_free(ctx);
}

static void refused_state(struct ep *e, const struct usp_mtp_event *ev)
{
    if (ev->state != USP_MTP_DOWN)
        return;
    snprintf(refused_detail, sizeof refused_detail, "%s", ev->detail);
    printf("#    DOWN (%s): %s\n", usp_mtp_reason_name(ev->reason), ev->detail);
    if (expect_text) {
        CHECK(ev->reason == USP_MTP_R_CONNECT, "refused: DOWN with reason connect (%s)",
              usp_mtp_reason_name(ev->reason));
        CHECK(strstr(ev->detail, expect_text) != NULL, "refused: the detail says \"%s\": %s",
              expect_text, ev->detail);
    } else {
        double cpu = cpu_seconds() - stall_cpu0;
        CHECK(ev->reason == USP_MTP_R_TIMEOUT, "stall: DOWN with reason timeout (%s: %s)",
              usp_mtp_reason_name(ev->reason), ev->detail);
        CHECK(cpu < 0.3, "stall: no spinning while the handshake waits (%.3f s CPU in %u ms)", cpu,
              connect_timeout_ms);
    }
    refused_done();
}

static void on_refused_watchdog(uv_timer_t *t)
{
    CHECK(false, "refused: DOWN in time (%s)", fa.states);
    refused_done();
}

static int run_tls_refused(void)
{
    ep_init(&fa, "refused", USP_MTP_AGENT, NULL, NULL, 65536, 1, 2000);
    fa.on_state = refused_state;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, on_refused_watchdog, connect_timeout_ms + 5000, 0);
    stall_cpu0 = cpu_seconds();
    CHECK(usp_mtp_open(fa.c) == 0, "refused: open");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(fa.ups == 0 && fa.downs == 1, "refused: never UP (%s)", fa.states);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s exchange|reconnect|fake|keepalive|resolve|notopic|scale|unused-port "
                "PORT "
                "[VERSION|N] [QOS]\n",
                argv[0]);
        return 2;
    }
    port = atoi(argv[2]);
    tls_setup();
    version = argc > 3 && strcmp(argv[1], "tls-refused") != 0 ? atoi(argv[3]) : 5;
    qos = argc > 4 ? atoi(argv[4]) : 1;
    loop = uv_default_loop();
    uv_update_time(loop);
    t_start = uv_now(loop);
    CHECK(usp_mtp_register(&usp_mtp_mqtt_ops) == 0, "MQTT binding registered");
    struct usp_mtp_ctx_opts o = {.max_connecting = 100};
    ctx = usp_mtp_ctx_new(loop, &o);
    if (!ctx)
        return 1;
    const char *what = argv[1];
    if (strcmp(what, "exchange") == 0)
        run_exchange(false);
    else if (strcmp(what, "reconnect") == 0)
        run_exchange(true);
    else if (strcmp(what, "fake") == 0)
        run_fake();
    else if (strcmp(what, "scale") == 0)
        run_scale(version);
    else if (strcmp(what, "unused-port") == 0)
        run_unused_port();
    else if (strcmp(what, "notopic") == 0)
        run_notopic();
    else if (strcmp(what, "keepalive") == 0)
        run_keepalive();
    else if (strcmp(what, "resolve") == 0)
        run_resolve();
    else if (strcmp(what, "tls-bulk") == 0)
        run_tls_bulk();
    else if (strcmp(what, "tls-refused") == 0 && argc > 3) {
        expect_text = argv[3];
        run_tls_refused();
    } else if (strcmp(what, "tls-stall") == 0) {
        connect_timeout_ms = 3000;
        run_tls_refused();
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
