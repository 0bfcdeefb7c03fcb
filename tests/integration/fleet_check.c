/* fleet_check: a minimal USP Controller on libusp, the test driver of the
 * fleet's integration tests (tests/integration/test-fleet*.sh). It speaks
 * to `uspsim agents` through a real broker over the MQTT binding of libusp,
 * as Controller "self::uspsim-controller" on topic
 * "usp/controller/uspsim-controller", and runs the steps given on its
 * command line in order:
 *
 *   boot[:noack]      every agent sends its MQTTConnectRecord and a Boot!
 *                     Notify (distinct from_ids = --count); each Boot! is
 *                     checked and acknowledged with a NotifyResp (not with
 *                     :noack).
 *   get-all           a Get to every agent; every GetResp is checked
 *                     (serial number and Endpoint ID of that agent).
 *   notify-all        per agent: Add four subscriptions (ValueChange,
 *                     ObjectCreation, ObjectDeletion, OperationComplete,
 *                     NotifRetry=true), check the agent made the requesting
 *                     controller their Recipient, then Set -> ValueChange,
 *                     Add -> ObjectCreation, Delete -> ObjectDeletion,
 *                     Operate Device.ScheduleTimer() -> OperationComplete;
 *                     every Notify is acknowledged.
 *   arm:SECONDS       per agent: read the back-off parameters, Add an
 *                     OperationComplete subscription with NotifRetry=true and
 *                     start Device.ScheduleTimer(DelaySeconds=SECONDS).
 *   outage            prints "KILL-BROKER-NOW"; the script kills the broker
 *                     and starts it again on the same port; waits until this
 *                     controller's own connection went down and came back.
 *   reconnect         every agent is connected again (stats file) within
 *                     its MQTT back-off window (ConnectRetryTime x
 *                     ConnectRetryIntervalMultiplier, read by arm).
 *   collect           after the outage every agent delivers the Boot! it
 *                     still retries (same msg_id) and the OperationComplete
 *                     generated while the broker was down; both are
 *                     acknowledged now.
 *   badinput          bad Records to the first agent, each followed by a
 *                     probe Get: answered with the right Error, or dropped,
 *                     as the specification says; the agent still answers.
 *   stats:EXPR        waits until the last line of the --stats file (the
 *                     fleet's --stats-json) satisfies EXPR, e.g.
 *                     "connected=1000,notifs_pending=0" (also >= and <=).
 *
 * Prints "ok ..." per check passed, "FAIL ..." otherwise, "# ..." notes;
 * exits 1 on any failure. */
#include <inttypes.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/mtp.h"
#include "usp/reqlang.h"

#define CTL_EID     "self::uspsim-controller"
#define CTL_TOPIC   "usp/controller/uspsim-controller"
#define EID_PREFIX  "os::012345-SIM"
#define MAX_DETAILS 20 /* failure lines printed per step; the rest are counted */
#define TICK_MS     50

/* ---- Options and global state ---------------------------------------------- */

static unsigned opt_port;
static int opt_version = 5; /* 5 or 4 (3.1.1) */
static unsigned opt_count = 1, opt_first = 1, opt_window = 100;
static double opt_timeout = 30;
static const char *opt_stats;

static uv_loop_t *loop;
static struct usp_mtp_ctx *mctx;
static struct usp_mtp_conn *conn;
static uint64_t t_start;
static int failures;
static unsigned details; /* failure lines printed in this step */
static uint64_t msg_seq;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("#    [%7.3f] ", (double)(uv_now(loop) - t_start) / 1000);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf(ok ? "ok   " : "FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    if (!ok)
        failures++;
}

static double secs_since(uint64_t t)
{
    return (double)(uv_now(loop) - t) / 1000;
}

/* ---- Agents ------------------------------------------------------------------ */

enum {
    N_VC = 1u << 0, /* notifications a phase waits for */
    N_OC = 1u << 1,
    N_OD = 1u << 2,
    N_OPC = 1u << 3,
};

struct agent {
    unsigned idx; /* {n} of the fleet */
    char eid[40];
    char topic[64];
    /* Boot! and connect records, whatever the step */
    unsigned connect_records, boots, boots_after_outage;
    unsigned connects_after_outage; /* MQTTConnectRecords on the new connection */
    char boot_msg_id[48];
    /* the step's state */
    char want[48]; /* msg_id of the request in flight; "" when none */
    int want_type; /* the response it expects */
    int phase;
    unsigned need;  /* notifications the phase still waits for */
    bool resp_seen; /* the phase's response arrived */
    bool done, failed;
    char path[96];  /* instantiated path kept across phases */
    char npath[96]; /* obj_path of a notification that came before its response */
    uint64_t op_ms; /* when the Operate was sent */
    char opc_msg_id[48];
    unsigned opc_seen, opc_before_outage;
};

static struct agent *agents;

static struct agent *agent_by_eid(const char *eid)
{
    unsigned n;
    int used = 0;
    if (!eid || strncmp(eid, EID_PREFIX, strlen(EID_PREFIX)) != 0 ||
        sscanf(eid + strlen(EID_PREFIX), "%u%n", &n, &used) != 1 ||
        eid[strlen(EID_PREFIX) + (size_t)used] != '\0' || n < opt_first ||
        n - opt_first >= opt_count)
        return NULL;
    struct agent *a = &agents[n - opt_first];
    return strcmp(a->eid, eid) == 0 ? a : NULL;
}

/* ---- Steps --------------------------------------------------------------- */

struct step {
    const char *name;
    void (*start)(const char *arg);
    /* a Response or Error answering the agent's request in flight */
    void (*on_resp)(struct agent *a, const Usp__Msg *m);
    void (*on_notify)(struct agent *a, const Usp__Msg *m, const Usp__Notify *n);
    /* Records that are not no_session_context (MQTTConnect, Disconnect) */
    void (*on_record)(struct agent *a, const UspRecord__Record *r);
    void (*on_tick)(void);
    void (*on_state)(const struct usp_mtp_event *ev);
    /* time is up: say what is missing */
    void (*on_timeout)(void);
    void (*agent_begin)(struct agent *a); /* per-agent steps */
};

static const struct step *cur;
static const char *cur_arg;
static char **steps;
static int nsteps, step_i = -1;
static uint64_t step_t0, step_deadline;
static uv_timer_t tick_timer;
static bool step_over;
static bool acking = true; /* acknowledge Notify messages that ask for it */
static bool outage_seen;   /* the controller's connection went down and came back */
static uint64_t outage_down_ms, outage_up_ms;
static unsigned retry_time_s, retry_mult; /* the agents' MQTT back-off, read by arm */
static unsigned unexpected;               /* records nobody waited for */

static void next_step(void);
static void finish(void);
static bool bad_unawaited(struct agent *a, const Usp__Msg *m);

/* Per-agent failure: the first MAX_DETAILS are printed. */
static void agent_fail(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Per-agent steps run `opt_window` agents at a time. */
static unsigned next_agent, active, finished, agents_failed;
static bool pumping;

static void agent_done(struct agent *a);

static void pump(void)
{
    if (pumping)
        return;
    pumping = true;
    while (!step_over && active < opt_window && next_agent < opt_count) {
        struct agent *a = &agents[next_agent++];
        active++;
        if (a->failed) /* it misbehaved before its turn */
            agent_done(a);
        else
            cur->agent_begin(a);
    }
    pumping = false;
    if (!step_over && finished == opt_count) {
        check(agents_failed == 0, "%s: %u of %u agents passed (%.2f s)", cur->name,
              opt_count - agents_failed, opt_count, secs_since(step_t0));
        step_over = true;
    }
}

static void agent_done(struct agent *a)
{
    if (a->done || (unsigned)(a - agents) >= next_agent)
        return; /* not started yet: pump finishes it when its turn comes */
    a->done = true;
    a->want[0] = 0;
    active--;
    finished++;
    if (a->failed)
        agents_failed++;
    pump();
}

static unsigned agent_fail_total; /* over every step; checked at the end */

static void agent_fail(struct agent *a, const char *fmt, ...)
{
    if (a->failed)
        return;
    a->failed = true;
    agent_fail_total++;
    if (details++ < MAX_DETAILS) {
        va_list ap;
        va_start(ap, fmt);
        printf("#    %s: %s: ", cur ? cur->name : "-", a->eid);
        vprintf(fmt, ap);
        printf("\n");
        fflush(stdout);
        va_end(ap);
    }
    if (cur && cur->agent_begin)
        agent_done(a);
}

static void agents_reset(void)
{
    next_agent = active = finished = agents_failed = 0;
    for (unsigned i = 0; i < opt_count; i++) {
        struct agent *a = &agents[i];
        a->want[0] = 0;
        a->phase = 0;
        a->need = 0;
        a->resp_seen = false;
        a->done = a->failed = false;
    }
}

/* ---- Sending ----------------------------------------------------------------- */

static int resp_type_of(int req)
{
    switch (req) {
    case USP__HEADER__MSG_TYPE__GET:
        return USP__HEADER__MSG_TYPE__GET_RESP;
    case USP__HEADER__MSG_TYPE__SET:
        return USP__HEADER__MSG_TYPE__SET_RESP;
    case USP__HEADER__MSG_TYPE__ADD:
        return USP__HEADER__MSG_TYPE__ADD_RESP;
    case USP__HEADER__MSG_TYPE__DELETE:
        return USP__HEADER__MSG_TYPE__DELETE_RESP;
    case USP__HEADER__MSG_TYPE__OPERATE:
        return USP__HEADER__MSG_TYPE__OPERATE_RESP;
    default:
        return -1;
    }
}

static int send_bytes(const char *topic, const uint8_t *buf, size_t len)
{
    struct usp_mtp_dest d = {.to = topic};
    return usp_mtp_send(conn, &d, buf, len);
}

/* Builds a Record to `a` holding the request written in `line` (the request
 * language) with `msg_id`; `edit` may change the Record before it is packed
 * (bad input). The bytes live in `ar`. */
static int build_req(struct usp_arena *ar, struct agent *a, const char *line, const char *msg_id,
                     void (*edit_msg)(Usp__Msg *m), uint8_t **out, size_t *len, int *type)
{
    Usp__Msg *m;
    struct usp_req_err err;
    int rc = usp_req_parse_line(ar, line, msg_id, &m, &err);
    if (rc) {
        check(false, "request \"%.80s\" does not parse: %s", line, err.msg);
        return rc;
    }
    if (type)
        *type = m->header->msg_type;
    if (edit_msg)
        edit_msg(m);
    struct usp_record_hdr h = {.to_id = a->eid, .from_id = CTL_EID};
    return usp_record_wrap_msg(ar, &h, m, out, len);
}

/* Sends the request in `fmt` (the request language) to agent `a` and
 * remembers what answer it waits for. */
static void send_req(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_req(struct agent *a, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    snprintf(a->want, sizeof a->want, "fc-%u-%" PRIu64, a->idx, ++msg_seq);
    struct usp_arena *ar = usp_arena_new(4096);
    uint8_t *buf;
    size_t len;
    int type = 0;
    int rc = ar ? build_req(ar, a, line, a->want, NULL, &buf, &len, &type) : USP_ENOMEM;
    if (rc == 0)
        rc = send_bytes(a->topic, buf, len);
    usp_arena_free(ar);
    a->want_type = resp_type_of(type);
    a->resp_seen = false;
    if (rc) {
        a->want[0] = 0;
        agent_fail(a, "cannot send \"%.60s\": %s", line, usp_strerror(rc));
    }
}

static void send_notify_resp(struct agent *a, const char *reply_to, const char *msg_id,
                             const char *sub_id)
{
    char line[256];
    snprintf(line, sizeof line, "notify-resp '%s'", sub_id);
    struct usp_arena *ar = usp_arena_new(1024);
    uint8_t *buf;
    size_t len;
    int rc = ar ? build_req(ar, a, line, msg_id, NULL, &buf, &len, NULL) : USP_ENOMEM;
    if (rc == 0)
        rc = send_bytes(reply_to ? reply_to : a->topic, buf, len);
    usp_arena_free(ar);
    if (rc && details++ < MAX_DETAILS)
        note("%s: NotifyResp not sent: %s", a->eid, usp_strerror(rc));
}

/* ---- Reading messages -------------------------------------------------------- */

static const char *error_text(const Usp__Msg *m)
{
    static char buf[256];
    if (m->body && m->body->msg_body_case == USP__BODY__MSG_BODY_ERROR)
        snprintf(buf, sizeof buf, "Error %u \"%.180s\"", m->body->error->err_code,
                 m->body->error->err_msg);
    else
        snprintf(buf, sizeof buf, "%s",
                 usp_msg_type_name(usp_msg_kind(m)) ? usp_msg_type_name(usp_msg_kind(m)) : "?");
    return buf;
}

static const Usp__Response *response_of(const Usp__Msg *m)
{
    return m->body && m->body->msg_body_case == USP__BODY__MSG_BODY_RESPONSE ? m->body->response
                                                                             : NULL;
}

/* The value of `key` in resolved path result `r`, or NULL. */
static const char *result_param(const Usp__GetResp__ResolvedPathResult *r, const char *key)
{
    for (size_t i = 0; i < r->n_result_params; i++)
        if (strcmp(r->result_params[i]->key, key) == 0)
            return r->result_params[i]->value;
    return NULL;
}

/* The single value a Get of one full parameter path returned:
 * "resolved_path + key" must be `path`. NULL when it is not exactly that. */
static const char *get_value(const Usp__GetResp *g, size_t i, const char *path)
{
    if (i >= g->n_req_path_results)
        return NULL;
    const Usp__GetResp__RequestedPathResult *rp = g->req_path_results[i];
    if (rp->err_code != 0 || rp->n_resolved_path_results != 1)
        return NULL;
    const Usp__GetResp__ResolvedPathResult *r = rp->resolved_path_results[0];
    size_t n = strlen(r->resolved_path);
    if (strncmp(path, r->resolved_path, n) != 0 || r->n_result_params != 1)
        return NULL;
    return result_param(r, path + n);
}

static const char *event_param(const Usp__Notify__Event *e, const char *key)
{
    for (size_t i = 0; i < e->n_params; i++)
        if (strcmp(e->params[i]->key, key) == 0)
            return e->params[i]->value;
    return NULL;
}

/* ---- Receiving ------------------------------------------------------------------- */

static bool boot_ok(struct agent *a, const Usp__Notify *n, char *why, size_t whylen)
{
    const Usp__Notify__Event *e = n->event;
    const char *cause = event_param(e, "Cause"), *pm = event_param(e, "ParameterMap");
    if (strcmp(e->obj_path, "Device.") != 0 || strcmp(e->event_name, "Boot!") != 0)
        snprintf(why, whylen, "event %s%s", e->obj_path, e->event_name);
    else if (strcmp(n->subscription_id, "boot-1") != 0)
        snprintf(why, whylen, "subscription_id \"%s\", not boot-1", n->subscription_id);
    else if (!n->send_resp)
        snprintf(why, whylen, "send_resp false although NotifRetry is true");
    else if (!cause || strcmp(cause, "LocalReboot") != 0)
        snprintf(why, whylen, "Cause \"%s\", not LocalReboot", cause ? cause : "(none)");
    else if (!event_param(e, "CommandKey") || !pm || pm[0] != '{')
        snprintf(why, whylen, "CommandKey or ParameterMap missing");
    else
        return true;
    return false;
}

static void on_boot(struct agent *a, const Usp__Msg *m, const Usp__Notify *n)
{
    char why[160];
    if (!boot_ok(a, n, why, sizeof why)) {
        agent_fail(a, "bad Boot!: %s", why);
        return;
    }
    if (a->boots++ == 0) {
        snprintf(a->boot_msg_id, sizeof a->boot_msg_id, "%s", m->header->msg_id);
    } else if (strcmp(a->boot_msg_id, m->header->msg_id) != 0) {
        agent_fail(a, "Boot! retransmitted with msg_id %s, first was %s (R-NOT.1)",
                   m->header->msg_id, a->boot_msg_id);
        return;
    }
    if (outage_seen)
        a->boots_after_outage++;
}

static void on_notify(struct agent *a, const Usp__Msg *m, const struct usp_mtp_rx *rx)
{
    const Usp__Notify *n = m->body->request->notify;
    /* On a new connection the MQTTConnectRecord comes first [R-MTP.8]. */
    if (!a->connect_records)
        agent_fail(a, "a Notify (%s) before the MQTTConnectRecord (R-MTP.8)", m->header->msg_id);
    else if (outage_seen && !a->connects_after_outage)
        agent_fail(a,
                   "a Notify (%s) before the MQTTConnectRecord of the new connection "
                   "(R-MTP.8)",
                   m->header->msg_id);
    bool is_boot = n->notification_case == USP__NOTIFY__NOTIFICATION_EVENT &&
                   strcmp(n->event->event_name, "Boot!") == 0;
    if (is_boot)
        on_boot(a, m, n);
    if (n->send_resp && acking)
        send_notify_resp(a, rx->reply_to.to, m->header->msg_id, n->subscription_id);
    if (cur && cur->on_notify)
        cur->on_notify(a, m, n);
    else if (!is_boot && details++ < MAX_DETAILS)
        note("%s: a Notify nobody waited for (%s)", a->eid, m->header->msg_id);
}

static void on_record(struct usp_mtp_conn *c, const uint8_t *bytes, size_t len,
                      const struct usp_mtp_rx *rx, void *user)
{
    struct usp_arena *ar = usp_arena_new(len + 4096);
    if (!ar)
        return;
    struct usp_rx r;
    if (usp_rx_record(ar, bytes, len, CTL_EID, &r) != 0 || r.action != USP_RX_DELIVER) {
        check(false, "a %zu-byte Record from the fleet is valid (%s: %s)", len, r.err.field,
              r.err.msg);
        goto out;
    }
    struct agent *a = agent_by_eid(r.rec->from_id);
    if (!a) {
        unexpected++;
        if (details++ < MAX_DETAILS)
            note("a Record from an unknown endpoint \"%.60s\"", r.rec->from_id);
        goto out;
    }
    /* Every Record says where to answer: the agent's own topic [R-MQTT.22]. */
    if (!rx->reply_to.to || strcmp(rx->reply_to.to, a->topic) != 0) {
        agent_fail(a, "reply-to \"%s\", expected \"%s\"",
                   rx->reply_to.to ? rx->reply_to.to : "(none)", a->topic);
        goto out;
    }
    if (strcmp(r.rec->version, USP_VERSION_DEFAULT) != 0)
        agent_fail(a, "Record version %s, expected %s", r.rec->version, USP_VERSION_DEFAULT);
    if (r.rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT) {
        const UspRecord__MQTTConnectRecord *mc = r.rec->mqtt_connect;
        int want = opt_version == 5 ? USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V5
                                    : USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V3_1_1;
        if ((int)mc->version != want || strcmp(mc->subscribed_topic, a->topic) != 0)
            agent_fail(a, "MQTTConnectRecord version %d topic %s", (int)mc->version,
                       mc->subscribed_topic);
        a->connect_records++;
        if (outage_seen)
            a->connects_after_outage++;
    }
    if (!r.msg) {
        if (cur && cur->on_record)
            cur->on_record(a, r.rec);
        goto out;
    }
    int kind = usp_msg_kind(r.msg);
    if (kind == USP__HEADER__MSG_TYPE__NOTIFY) {
        on_notify(a, r.msg, rx);
        goto out;
    }
    if (!a->want[0] || strcmp(r.msg->header->msg_id, a->want) != 0) {
        if (bad_unawaited(a, r.msg))
            goto out;
        unexpected++;
        agent_fail(a, "an answer nobody waited for: %s msg_id %s (waiting for %s)",
                   error_text(r.msg), r.msg->header->msg_id, a->want[0] ? a->want : "nothing");
        goto out;
    }
    if (kind != a->want_type && kind != USP__HEADER__MSG_TYPE__ERROR) {
        agent_fail(a, "answer is %s, expected %s", error_text(r.msg),
                   usp_msg_type_name(a->want_type) ? usp_msg_type_name(a->want_type) : "?");
        goto out;
    }
    a->want[0] = 0;
    a->resp_seen = true;
    if (cur && cur->on_resp)
        cur->on_resp(a, r.msg);
out:
    usp_arena_free(ar);
}

/* ---- The connection ------------------------------------------------------------- */

static bool ready_printed;

static void on_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    if (ev->state != USP_MTP_CONNECTING)
        note("controller connection %s (%s): %s", usp_mtp_state_name(ev->state),
             usp_mtp_reason_name(ev->reason), ev->detail);
    if (ev->state == USP_MTP_UP && !ready_printed) {
        ready_printed = true;
        printf("READY\n");
        fflush(stdout);
        next_step();
    }
    if (cur && cur->on_state)
        cur->on_state(ev);
}

static const struct usp_mtp_callbacks callbacks = {.state = on_state, .record = on_record};

static void mtp_log(void *user, enum usp_mtp_log_level level, const char *eid, const char *msg)
{
    if (level <= USP_MTP_LOG_WARN)
        note("mtp: %s", msg);
}

/* ---- The stats file of the fleet ------------------------------------------------- */

/* The last complete line of the file, or "" (the buffer is static). */
static const char *stats_last_line(void)
{
    static char line[4096];
    line[0] = 0;
    FILE *f = opt_stats ? fopen(opt_stats, "r") : NULL;
    if (!f)
        return line;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        long from = size > (long)sizeof line - 1 ? size - (long)sizeof line + 1 : 0;
        fseek(f, from, SEEK_SET);
        char buf[sizeof line];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        /* the last line that ends with a newline */
        while (n > 0 && buf[n - 1] != '\n')
            buf[--n] = 0;
        if (n > 0)
            buf[--n] = 0;
        char *start = strrchr(buf, '\n');
        snprintf(line, sizeof line, "%s", start ? start + 1 : buf);
    }
    fclose(f);
    return line;
}

static bool stats_value(const char *line, const char *key, double *v)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p)
        return false;
    char *end;
    *v = strtod(p + strlen(pat), &end);
    return end != p + strlen(pat);
}

/* Whether `line` satisfies "key=v,key>=v,key<=v"; `why` names the first
 * term that does not hold. */
static bool stats_match(const char *line, const char *expr, char *why, size_t whylen)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", expr);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *op = strpbrk(t, "<>=");
        if (!op) {
            snprintf(why, whylen, "bad term \"%s\"", t);
            return false;
        }
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(op - t), t);
        int kind = op[0] == '=' ? 0 : op[0] == '>' ? 1 : -1;
        const char *num = op + (kind ? 2 : 1);
        double want = strtod(num, NULL), have;
        if (!stats_value(line, key, &have)) {
            snprintf(why, whylen, "%s missing", key);
            return false;
        }
        bool ok = kind == 0 ? have == want : kind > 0 ? have >= want : have <= want;
        if (!ok) {
            snprintf(why, whylen, "%s is %.0f", key, have);
            return false;
        }
    }
    return true;
}

/* ---- Step: boot ---------------------------------------------------------------------- */

static unsigned count_if(bool (*pred)(const struct agent *a))
{
    unsigned n = 0;
    for (unsigned i = 0; i < opt_count; i++)
        n += pred(&agents[i]);
    return n;
}

static bool has_boot(const struct agent *a)
{
    return a->boots > 0 && a->connect_records > 0;
}

static bool is_failed(const struct agent *a)
{
    return a->failed;
}

static void boot_start(const char *arg)
{
    acking = !(arg && strcmp(arg, "noack") == 0);
}

static void boot_tick(void)
{
    if (count_if(has_boot) + count_if(is_failed) < opt_count)
        return;
    unsigned boots = 0, retries = 0, connects = 0;
    for (unsigned i = 0; i < opt_count; i++) {
        boots += agents[i].boots > 0;
        retries += agents[i].boots > 1 ? agents[i].boots - 1 : 0;
        connects += agents[i].connect_records > 0;
    }
    check(connects == opt_count,
          "boot: MQTTConnectRecord (MQTT %s, own topic) from %u of %u "
          "agents",
          opt_version == 5 ? "5" : "3.1.1", connects, opt_count);
    check(boots == opt_count && count_if(is_failed) == 0,
          "boot: Boot! from %u distinct agents of %u, all well-formed (%.2f s after the "
          "controller was ready; %u retransmissions)%s",
          boots, opt_count, secs_since(step_t0), retries, acking ? ", acknowledged" : "");
    step_over = true;
}

static void boot_timeout(void)
{
    unsigned shown = 0;
    for (unsigned i = 0; i < opt_count && shown < 10; i++)
        if (!has_boot(&agents[i])) {
            note("boot: %s: %u MQTTConnectRecord, %u Boot!", agents[i].eid,
                 agents[i].connect_records, agents[i].boots);
            shown++;
        }
    check(false, "boot: Boot! from %u of %u agents within %.0f s", count_if(has_boot), opt_count,
          opt_timeout);
}

/* ---- Step: get-all -------------------------------------------------------------------- */

static void get_begin(struct agent *a)
{
    send_req(a, "get Device.DeviceInfo.SerialNumber Device.LocalAgent.EndpointID");
}

static void get_resp(struct agent *a, const Usp__Msg *m)
{
    const Usp__Response *r = response_of(m);
    if (!r || r->resp_type_case != USP__RESPONSE__RESP_TYPE_GET_RESP) {
        agent_fail(a, "Get answered with %s", error_text(m));
        return;
    }
    char serial[32];
    snprintf(serial, sizeof serial, "GW%08u", a->idx);
    const char *s = get_value(r->get_resp, 0, "Device.DeviceInfo.SerialNumber");
    const char *e = get_value(r->get_resp, 1, "Device.LocalAgent.EndpointID");
    if (r->get_resp->n_req_path_results != 2 || !s || !e)
        agent_fail(a, "GetResp does not hold the two parameters asked for");
    else if (strcmp(s, serial) != 0 || strcmp(e, a->eid) != 0)
        agent_fail(a, "GetResp: SerialNumber %s EndpointID %s, expected %s and %s", s, e, serial,
                   a->eid);
    agent_done(a);
}

/* ---- Step: notify-all -------------------------------------------------------------------- */

enum {
    P_ADD_SUBS,
    P_RECIPIENT,
    P_SET,
    P_ADD_ROW,
    P_DELETE_ROW,
    P_OPERATE,
};

static void na_advance(struct agent *a);

static void na_begin(struct agent *a)
{
    a->phase = P_ADD_SUBS;
    send_req(a, "add Device.LocalAgent.Subscription. ID=fc-vc Enable=true NotifType=ValueChange "
                "ReferenceList=Device.DeviceInfo.FriendlyName NotifRetry=true "
                "Device.LocalAgent.Subscription. ID=fc-oc Enable=true NotifType=ObjectCreation "
                "ReferenceList=Device.DHCPv4.Server.Pool.1.StaticAddress. NotifRetry=true "
                "Device.LocalAgent.Subscription. ID=fc-od Enable=true NotifType=ObjectDeletion "
                "ReferenceList=Device.DHCPv4.Server.Pool.1.StaticAddress. NotifRetry=true "
                "Device.LocalAgent.Subscription. ID=fc-op Enable=true NotifType=OperationComplete "
                "ReferenceList=Device.ScheduleTimer() NotifRetry=true");
}

static const char *add_success(const Usp__Msg *m, size_t i, const char *key, const char *value)
{
    const Usp__Response *r = response_of(m);
    if (!r || r->resp_type_case != USP__RESPONSE__RESP_TYPE_ADD_RESP ||
        i >= r->add_resp->n_created_obj_results)
        return NULL;
    const Usp__AddResp__CreatedObjectResult *c = r->add_resp->created_obj_results[i];
    if (!c->oper_status ||
        c->oper_status->oper_status_case !=
            USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS)
        return NULL;
    const Usp__AddResp__CreatedObjectResult__OperationStatus__OperationSuccess *s =
        c->oper_status->oper_success;
    if (s->n_param_errs)
        return NULL;
    if (key) {
        bool found = false;
        for (size_t k = 0; k < s->n_unique_keys; k++)
            found |= strcmp(s->unique_keys[k]->key, key) == 0 &&
                     strcmp(s->unique_keys[k]->value, value) == 0;
        if (!found)
            return NULL;
    }
    return s->instantiated_path;
}

static void na_resp(struct agent *a, const Usp__Msg *m)
{
    const Usp__Response *r = response_of(m);
    switch (a->phase) {
    case P_ADD_SUBS: {
        static const char *const ids[] = {"fc-vc", "fc-oc", "fc-od", "fc-op"};
        for (size_t i = 0; i < 4; i++) {
            const char *p = add_success(m, i, "ID", ids[i]);
            unsigned inst;
            if (!p || sscanf(p, "Device.LocalAgent.Subscription.%u.", &inst) != 1) {
                agent_fail(a, "Add of subscription %s: %s", ids[i], error_text(m));
                return;
            }
        }
        break;
    }
    case P_RECIPIENT: {
        /* The agent fills Recipient with the requesting controller's row. */
        const char *v =
            r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_GET_RESP &&
                    r->get_resp->n_req_path_results == 1 &&
                    r->get_resp->req_path_results[0]->n_resolved_path_results == 1
                ? result_param(r->get_resp->req_path_results[0]->resolved_path_results[0],
                               "Recipient")
                : NULL;
        if (!v || strcmp(v, "Device.LocalAgent.Controller.1") != 0) {
            agent_fail(a,
                       "Recipient of the new subscription is \"%s\" (%s), expected "
                       "Device.LocalAgent.Controller.1",
                       v ? v : "?", error_text(m));
            return;
        }
        break;
    }
    case P_SET: {
        const Usp__SetResp__UpdatedObjectResult *u =
            r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_SET_RESP &&
                    r->set_resp->n_updated_obj_results == 1
                ? r->set_resp->updated_obj_results[0]
                : NULL;
        if (!u || !u->oper_status ||
            u->oper_status->oper_status_case !=
                USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS) {
            agent_fail(a, "Set FriendlyName: %s", error_text(m));
            return;
        }
        break;
    }
    case P_ADD_ROW: {
        char mac[32];
        snprintf(mac, sizeof mac, "02:fc:00:%02x:%02x:%02x", (a->idx >> 16) & 255,
                 (a->idx >> 8) & 255, a->idx & 255);
        const char *p = add_success(m, 0, "Chaddr", mac);
        unsigned inst;
        if (!p || sscanf(p, "Device.DHCPv4.Server.Pool.1.StaticAddress.%u.", &inst) != 1) {
            agent_fail(a, "Add StaticAddress: %s", error_text(m));
            return;
        }
        snprintf(a->path, sizeof a->path, "%s", p);
        if (a->npath[0] && strcmp(a->npath, a->path) != 0) {
            agent_fail(a, "ObjectCreation for %s, but the Add created %s", a->npath, a->path);
            return;
        }
        break;
    }
    case P_DELETE_ROW: {
        const Usp__DeleteResp__DeletedObjectResult *d =
            r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_DELETE_RESP &&
                    r->delete_resp->n_deleted_obj_results == 1
                ? r->delete_resp->deleted_obj_results[0]
                : NULL;
        if (!d || !d->oper_status ||
            d->oper_status->oper_status_case !=
                USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_SUCCESS ||
            d->oper_status->oper_success->n_affected_paths != 1 ||
            strcmp(d->oper_status->oper_success->affected_paths[0], a->path) != 0) {
            agent_fail(a, "Delete %s: %s", a->path, error_text(m));
            return;
        }
        break;
    }
    case P_OPERATE: {
        const Usp__OperateResp__OperationResult *o =
            r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_OPERATE_RESP &&
                    r->operate_resp->n_operation_results == 1
                ? r->operate_resp->operation_results[0]
                : NULL;
        unsigned inst;
        if (!o || strcmp(o->executed_command, "Device.ScheduleTimer()") != 0 ||
            o->operation_resp_case !=
                USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH ||
            sscanf(o->req_obj_path, "Device.LocalAgent.Request.%u.", &inst) != 1) {
            agent_fail(a, "Operate Device.ScheduleTimer(): %s", error_text(m));
            return;
        }
        break;
    }
    }
    na_advance(a);
}

static void na_notify(struct agent *a, const Usp__Msg *m, const Usp__Notify *n)
{
    if (n->notification_case == USP__NOTIFY__NOTIFICATION_EVENT &&
        strcmp(n->event->event_name, "Boot!") == 0)
        return; /* a late Boot! retry is not this step's business */
    if (!n->send_resp) {
        agent_fail(a, "Notify %s without send_resp although NotifRetry is true", m->header->msg_id);
        return;
    }
    char want_value[64];
    snprintf(want_value, sizeof want_value, "fleet-check-%u", a->idx);
    switch (n->notification_case) {
    case USP__NOTIFY__NOTIFICATION_VALUE_CHANGE:
        if (a->phase != P_SET || !(a->need & N_VC) || strcmp(n->subscription_id, "fc-vc") != 0 ||
            strcmp(n->value_change->param_path, "Device.DeviceInfo.FriendlyName") != 0 ||
            strcmp(n->value_change->param_value, want_value) != 0) {
            agent_fail(a, "unexpected ValueChange %s=%s (subscription %s, phase %d)",
                       n->value_change->param_path, n->value_change->param_value,
                       n->subscription_id, a->phase);
            return;
        }
        a->need &= ~N_VC;
        break;
    case USP__NOTIFY__NOTIFICATION_OBJ_CREATION:
        if (a->phase != P_ADD_ROW || !(a->need & N_OC) ||
            strcmp(n->subscription_id, "fc-oc") != 0 ||
            (a->path[0] && strcmp(n->obj_creation->obj_path, a->path) != 0)) {
            agent_fail(a, "unexpected ObjectCreation %s (subscription %s, phase %d)",
                       n->obj_creation->obj_path, n->subscription_id, a->phase);
            return;
        }
        bool chaddr = false;
        for (size_t k = 0; k < n->obj_creation->n_unique_keys; k++)
            chaddr |= strcmp(n->obj_creation->unique_keys[k]->key, "Chaddr") == 0;
        if (!chaddr) {
            agent_fail(a, "ObjectCreation without the Chaddr unique key");
            return;
        }
        snprintf(a->npath, sizeof a->npath, "%s", n->obj_creation->obj_path);
        a->need &= ~N_OC;
        break;
    case USP__NOTIFY__NOTIFICATION_OBJ_DELETION:
        if (a->phase != P_DELETE_ROW || !(a->need & N_OD) ||
            strcmp(n->subscription_id, "fc-od") != 0 ||
            strcmp(n->obj_deletion->obj_path, a->path) != 0) {
            agent_fail(a, "unexpected ObjectDeletion %s (subscription %s, phase %d)",
                       n->obj_deletion->obj_path, n->subscription_id, a->phase);
            return;
        }
        a->need &= ~N_OD;
        break;
    case USP__NOTIFY__NOTIFICATION_OPER_COMPLETE: {
        const Usp__Notify__OperationComplete *oc = n->oper_complete;
        char key[32];
        snprintf(key, sizeof key, "fc-%u", a->idx);
        if (a->phase != P_OPERATE || !(a->need & N_OPC) ||
            strcmp(n->subscription_id, "fc-op") != 0 || strcmp(oc->obj_path, "Device.") != 0 ||
            strcmp(oc->command_name, "ScheduleTimer()") != 0 || strcmp(oc->command_key, key) != 0 ||
            oc->operation_resp_case !=
                USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP_REQ_OUTPUT_ARGS) {
            agent_fail(a, "unexpected OperationComplete %s%s key %s (subscription %s, phase %d)",
                       oc->obj_path, oc->command_name, oc->command_key, n->subscription_id,
                       a->phase);
            return;
        }
        /* DelaySeconds=1: not before a second has passed. */
        if (uv_now(loop) - a->op_ms < 950) {
            agent_fail(a, "OperationComplete after %" PRIu64 " ms, DelaySeconds was 1",
                       uv_now(loop) - a->op_ms);
            return;
        }
        a->need &= ~N_OPC;
        break;
    }
    default:
        agent_fail(a, "unexpected Notify type %d", (int)n->notification_case);
        return;
    }
    na_advance(a);
}

/* Moves on when the phase's response and notifications are all in. */
static void na_advance(struct agent *a)
{
    if (a->failed || a->want[0] || !a->resp_seen || a->need)
        return;
    a->phase++;
    a->resp_seen = false;
    switch (a->phase) {
    case P_RECIPIENT:
        send_req(a, "get 'Device.LocalAgent.Subscription.[ID==\"fc-vc\"].Recipient'");
        break;
    case P_SET:
        a->need = N_VC;
        send_req(a, "set Device.DeviceInfo. FriendlyName=fleet-check-%u", a->idx);
        break;
    case P_ADD_ROW:
        a->need = N_OC;
        a->path[0] = a->npath[0] = 0;
        send_req(a,
                 "add Device.DHCPv4.Server.Pool.1.StaticAddress. Enable=true "
                 "Chaddr=02:fc:00:%02x:%02x:%02x Yiaddr=192.168.1.%u",
                 (a->idx >> 16) & 255, (a->idx >> 8) & 255, a->idx & 255, 160 + a->idx % 30);
        break;
    case P_DELETE_ROW:
        a->need = N_OD;
        send_req(a, "delete %s", a->path);
        break;
    case P_OPERATE:
        a->need = N_OPC;
        a->op_ms = uv_now(loop);
        send_req(a, "operate --key fc-%u Device.ScheduleTimer() DelaySeconds=1", a->idx);
        break;
    default:
        agent_done(a);
        break;
    }
}

/* Says where the agents still in flight are stuck. */
static void agents_timeout(void)
{
    unsigned shown = 0, stuck = 0;
    for (unsigned i = 0; i < opt_count; i++) {
        struct agent *a = &agents[i];
        if (a->done || i >= next_agent)
            continue;
        stuck++;
        if (shown++ < 10)
            note("%s: %s: stuck in phase %d (waiting for %s, notifications 0x%x)", cur->name,
                 a->eid, a->phase, a->want[0] ? a->want : "no answer", a->need);
    }
    check(false, "%s: %u of %u agents done within %.0f s (%u stuck, %u not started)", cur->name,
          finished, opt_count, opt_timeout, stuck, opt_count - next_agent);
}

/* ---- Steps: arm, outage, reconnect, collect ------------------------------------------- */

static unsigned arm_delay = 3;
static uint64_t arm_first_op_ms; /* the first Operate: its timer fires first */
static uint64_t arm_last_op_ms;

static void arm_start(const char *arg)
{
    arm_delay = arg ? (unsigned)strtoul(arg, NULL, 10) : 3;
    acking = false; /* from now on nothing is acknowledged until collect */
}

static void arm_begin(struct agent *a)
{
    a->phase = 0;
    if (a == &agents[0])
        send_req(a, "get Device.MQTT.Client.1.ConnectRetryTime "
                    "Device.MQTT.Client.1.ConnectRetryIntervalMultiplier "
                    "Device.LocalAgent.Controller.1.USPNotifRetryMinimumWaitInterval "
                    "Device.LocalAgent.Controller.1.USPNotifRetryIntervalMultiplier");
    else
        send_req(a, "add Device.LocalAgent.Subscription. ID=fc-opc Enable=true "
                    "NotifType=OperationComplete ReferenceList=Device.ScheduleTimer() "
                    "NotifRetry=true");
}

static void arm_resp(struct agent *a, const Usp__Msg *m)
{
    const Usp__Response *r = response_of(m);
    if (a->phase == 0 && a == &agents[0]) {
        static const char *const names[] = {
            "Device.MQTT.Client.1.ConnectRetryTime",
            "Device.MQTT.Client.1.ConnectRetryIntervalMultiplier",
            "Device.LocalAgent.Controller.1.USPNotifRetryMinimumWaitInterval",
            "Device.LocalAgent.Controller.1.USPNotifRetryIntervalMultiplier"};
        unsigned v[4];
        for (size_t i = 0; i < 4; i++) {
            const char *s = r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_GET_RESP
                                ? get_value(r->get_resp, i, names[i])
                                : NULL;
            if (!s) {
                agent_fail(a, "Get %s: %s", names[i], error_text(m));
                return;
            }
            v[i] = (unsigned)strtoul(s, NULL, 10);
        }
        retry_time_s = v[0];
        retry_mult = v[1];
        note("agents' MQTT back-off: ConnectRetryTime %u s, multiplier %u; notification "
             "retries: USPNotifRetryMinimumWaitInterval %u s, multiplier %u",
             v[0], v[1], v[2], v[3]);
        a->phase = -1; /* then the same as the others */
        send_req(a, "add Device.LocalAgent.Subscription. ID=fc-opc Enable=true "
                    "NotifType=OperationComplete ReferenceList=Device.ScheduleTimer() "
                    "NotifRetry=true");
        return;
    }
    if (a->phase <= 0) {
        if (!add_success(m, 0, "ID", "fc-opc")) {
            agent_fail(a, "Add OperationComplete subscription: %s", error_text(m));
            return;
        }
        a->phase = 1;
        a->op_ms = uv_now(loop);
        if (!arm_first_op_ms)
            arm_first_op_ms = a->op_ms;
        arm_last_op_ms = a->op_ms;
        send_req(a, "operate --key fc-out-%u Device.ScheduleTimer() DelaySeconds=%u", a->idx,
                 arm_delay);
        return;
    }
    if (!r || r->resp_type_case != USP__RESPONSE__RESP_TYPE_OPERATE_RESP ||
        r->operate_resp->n_operation_results != 1 ||
        r->operate_resp->operation_results[0]->operation_resp_case !=
            USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH) {
        agent_fail(a, "Operate Device.ScheduleTimer(): %s", error_text(m));
        return;
    }
    agent_done(a);
}

/* OperationComplete of the armed timer, before or after the outage. */
static void opc_notify(struct agent *a, const Usp__Msg *m, const Usp__Notify *n)
{
    if (n->notification_case == USP__NOTIFY__NOTIFICATION_EVENT &&
        strcmp(n->event->event_name, "Boot!") == 0)
        return;
    char key[32];
    snprintf(key, sizeof key, "fc-out-%u", a->idx);
    if (n->notification_case != USP__NOTIFY__NOTIFICATION_OPER_COMPLETE ||
        strcmp(n->subscription_id, "fc-opc") != 0 || !n->send_resp ||
        strcmp(n->oper_complete->command_key, key) != 0) {
        agent_fail(a, "unexpected Notify (type %d, subscription %s)", (int)n->notification_case,
                   n->subscription_id);
        return;
    }
    if (a->opc_seen++ == 0) {
        snprintf(a->opc_msg_id, sizeof a->opc_msg_id, "%s", m->header->msg_id);
    } else if (strcmp(a->opc_msg_id, m->header->msg_id) != 0) {
        agent_fail(a, "OperationComplete retransmitted with msg_id %s, first was %s",
                   m->header->msg_id, a->opc_msg_id);
        return;
    }
    if (!outage_seen)
        a->opc_before_outage++;
}

static void outage_start(const char *arg)
{
    printf("KILL-BROKER-NOW\n");
    fflush(stdout);
}

static void outage_state(const struct usp_mtp_event *ev)
{
    if (ev->state == USP_MTP_DOWN && !outage_down_ms)
        outage_down_ms = uv_now(loop);
    if (ev->state == USP_MTP_UP && outage_down_ms && !outage_seen) {
        outage_seen = true;
        outage_up_ms = uv_now(loop);
        unsigned early = 0;
        for (unsigned i = 0; i < opt_count; i++)
            early += agents[i].opc_before_outage > 0;
        check(arm_first_op_ms && outage_down_ms < arm_first_op_ms + (uint64_t)arm_delay * 1000,
              "outage: the broker went down %.2f s after the first timer was started, before "
              "it could complete (DelaySeconds %u)",
              (double)(outage_down_ms - arm_first_op_ms) / 1000, arm_delay);
        /* The agents stay away at least ConnectRetryTime after the drop: the
         * last timer fires while they cannot send. */
        check(arm_last_op_ms + (uint64_t)arm_delay * 1000 <
                  outage_down_ms + (uint64_t)retry_time_s * 1000,
              "outage: the last timer completes %.2f s after the drop, while the agents are "
              "still away (ConnectRetryTime %u s)",
              ((double)arm_last_op_ms + arm_delay * 1000.0 - (double)outage_down_ms) / 1000,
              retry_time_s);
        /* From now on every notification is acknowledged as it arrives. */
        acking = true;
        check(early == 0,
              "outage: no OperationComplete arrived before the broker went down "
              "(%u did)",
              early);
        note("outage: the controller was disconnected for %.2f s",
             (double)(outage_up_ms - outage_down_ms) / 1000);
        step_over = true;
    }
}

static void outage_timeout(void)
{
    check(false, "outage: the controller's connection %s within %.0f s",
          outage_down_ms ? "did not come back" : "did not go down", opt_timeout);
}

/* reconnect: the stats file shows every agent connected again, within the
 * back-off window counted from the moment the broker went away. */
static uint64_t reconnect_deadline;
static bool reconnect_seen_zero;
static uint64_t reconnect_first_ms;

static void reconnect_start(const char *arg)
{
    if (!retry_time_s || !retry_mult || !outage_down_ms) {
        check(false, "reconnect: needs the arm and outage steps before it");
        step_over = true;
        return;
    }
    /* The first retry comes between ConnectRetryTime and ConnectRetryTime x
     * multiplier after the drop [R-MQTT.10]; the broker was back before
     * ConnectRetryTime, so that first retry must succeed. The stats file is
     * refreshed every second: two seconds and a half of slack. */
    uint64_t window = (uint64_t)retry_time_s * retry_mult; /* ms */
    reconnect_deadline = outage_down_ms + window + 2500;
    note("reconnect: every agent must be connected again %.1f s after the drop at the latest "
         "(back-off window %u..%.1f s)",
         (double)(reconnect_deadline - outage_down_ms) / 1000, retry_time_s, (double)window / 1000);
    check(outage_up_ms - outage_down_ms < (uint64_t)retry_time_s * 1000,
          "reconnect: the broker was back %.2f s after the drop, before ConnectRetryTime (%u s)",
          (double)(outage_up_ms - outage_down_ms) / 1000, retry_time_s);
}

static void reconnect_tick(void)
{
    char want[64], why[128];
    snprintf(want, sizeof want, "connected=%u,reconnecting=0", opt_count);
    const char *line = stats_last_line();
    double connected = -1;
    stats_value(line, "connected", &connected);
    /* Stats lag behind by up to a second: a count above zero seen after a
     * zero is an agent that is back, and it cannot be back before its first
     * retry, ConnectRetryTime after the drop. */
    if (connected == 0)
        reconnect_seen_zero = true;
    if (reconnect_seen_zero && connected > 0 && !reconnect_first_ms) {
        reconnect_first_ms = uv_now(loop);
        check(reconnect_first_ms + 250 >= outage_down_ms + (uint64_t)retry_time_s * 1000,
              "reconnect: the first agent came back %.2f s after the drop, not before "
              "ConnectRetryTime (%u s)",
              (double)(reconnect_first_ms - outage_down_ms) / 1000, retry_time_s);
    }
    if (stats_match(line, want, why, sizeof why)) {
        check(reconnect_seen_zero, "reconnect: the stats showed every agent disconnected "
                                   "during the outage");
        double drops = 0;
        stats_value(line, "connection_drops", &drops);
        check(uv_now(loop) <= reconnect_deadline,
              "reconnect: all %u agents connected again %.2f s after the drop", opt_count,
              (double)(uv_now(loop) - outage_down_ms) / 1000);
        check(drops == opt_count, "reconnect: each agent lost its connection once (%.0f drops)",
              drops);
        step_over = true;
        return;
    }
    if (uv_now(loop) > reconnect_deadline + 20000) {
        check(false, "reconnect: agents not all back 20 s after the deadline (%s)", why);
        step_over = true;
    }
}

static void collect_start(const char *arg)
{
    note("collect: waiting for every agent's Boot! and OperationComplete retries");
}

static bool collected(const struct agent *a)
{
    return a->failed || (a->boots_after_outage > 0 && a->opc_seen > 0);
}

static void collect_tick(void)
{
    if (count_if(collected) < opt_count)
        return;
    unsigned boot_ok_n = 0, opc_ok_n = 0;
    for (unsigned i = 0; i < opt_count; i++) {
        boot_ok_n += agents[i].boots_after_outage > 0 && !agents[i].failed;
        opc_ok_n += agents[i].opc_seen > 0 && !agents[i].failed;
    }
    check(boot_ok_n == opt_count,
          "collect: %u of %u agents retransmitted their unacknowledged Boot! (same msg_id) "
          "after the outage",
          boot_ok_n, opt_count);
    unsigned rec_n = 0;
    for (unsigned i = 0; i < opt_count; i++)
        rec_n += agents[i].connects_after_outage > 0;
    check(rec_n == opt_count,
          "collect: %u of %u agents sent a new MQTTConnectRecord after reconnecting (R-MTP.6), "
          "before any other Record (R-MTP.8)",
          rec_n, opt_count);
    check(opc_ok_n == opt_count,
          "collect: %u of %u OperationComplete notifications generated while the broker was "
          "down arrived, retried (%.1f s after the controller reconnected)",
          opc_ok_n, opt_count, (double)(uv_now(loop) - outage_up_ms) / 1000);
    step_over = true;
}

static void collect_timeout(void)
{
    unsigned shown = 0;
    for (unsigned i = 0; i < opt_count && shown < 10; i++)
        if (!collected(&agents[i])) {
            note("collect: %s: %u Boot! after the outage, %u OperationComplete", agents[i].eid,
                 agents[i].boots_after_outage, agents[i].opc_seen);
            shown++;
        }
    check(false, "collect: %u of %u agents delivered both within %.0f s", count_if(collected),
          opt_count, opt_timeout);
}

/* ---- Step: stats ------------------------------------------------------------------ */

static void stats_tick(void)
{
    char why[128];
    const char *line = stats_last_line();
    if (stats_match(line, cur_arg, why, sizeof why)) {
        check(true, "stats: %s (%.1f s)", cur_arg, secs_since(step_t0));
        step_over = true;
    }
}

static void stats_timeout(void)
{
    char why[128];
    const char *line = stats_last_line();
    stats_match(line, cur_arg, why, sizeof why);
    check(false, "stats: %s within %.0f s (%s; last line: %.300s)", cur_arg, opt_timeout, why,
          line);
}

/* ---- Step: badinput ----------------------------------------------------------------- */

enum expect {
    X_DROP,       /* nothing comes back */
    X_ERROR,      /* an Error with `code` and the request's msg_id */
    X_DISCONNECT, /* a DisconnectRecord with `code` */
    X_GETRESP,    /* a good GetResp with `paths` results */
};

enum how {
    H_MTP,          /* published through our connection (with reply-to) */
    H_RAW_CT,       /* MQTT 5: Content Type "text/plain" */
    H_RAW_NO_REPLY, /* no Response Topic (5) or no /reply-to= suffix (3.1.1) */
    H_RAW_EMPTY,    /* an empty PUBLISH */
};

struct bad_case {
    const char *name;
    const char *why; /* the rule */
    enum expect expect;
    uint32_t code;
    enum how how;
    bool v5_only;
    /* how the worker counts it: 'd' dropped, 'e' errors_sent, 0 neither */
    char counted;
};

static const struct bad_case bad_cases[] = {
    {"random-bytes", "not a Record: dropped (7100, discard)", X_DROP, 0, H_MTP, false, 'd'},
    {"truncated", "a Record cut short: dropped (7100, discard)", X_DROP, 0, H_MTP, false, 'd'},
    {"wrong-to_id", "to_id of another agent: ignored (R-E2E.1)", X_DROP, 0, H_MTP, false, 'd'},
    {"empty-from_id", "from_id empty: discarded (7104)", X_DROP, 0, H_MTP, false, 'd'},
    {"no-record-type", "record_type not set: discarded (R-ENC.4)", X_DROP, 0, H_MTP, false, 'd'},
    {"bad-from_id", "version 9.9 from an invalid from_id: no Error (R-MTP.5)", X_DROP, 0, H_MTP,
     false, 'd'},
    {"bad-version", "version 9.9: Error 7104 (R-MTP.5)", X_ERROR, 7104, H_MTP, false, 'e'},
    {"unknown-record-enum", "payload_security 7: Error 7104 (R-ENC.2)", X_ERROR, 7104, H_MTP, false,
     'e'},
    {"unknown-msg-enum", "header.msg_type 99: Error 7004 (R-ENC.2)", X_ERROR, 7004, H_MTP, false,
     'e'},
    {"empty-request-oneof", "Request without req_type: Error 7004 (R-ENC.5)", X_ERROR, 7004, H_MTP,
     false, 'e'},
    {"no-msg_id", "Msg without msg_id: discarded (7004)", X_DROP, 0, H_MTP, false, 'd'},
    {"payload-not-msg", "no_session_context payload that is no Msg: dropped (7000)", X_DROP, 0,
     H_MTP, false, 'd'},
    {"session-context",
     "session_context while E2E sessions are off: Disconnect 7106 "
     "(R-E2E.6a)",
     X_DISCONNECT, 7106, H_MTP, false, 0},
    {"notify-to-agent", "a Notify request to an Agent: Error 7001", X_ERROR, 7001, H_MTP, false,
     'e'},
    {"stray-notify-resp", "NotifyResp for no Notify: ignored (R-NOT.9)", X_DROP, 0, H_MTP, false,
     0},
    {"content-type", "Content Type text/plain: dropped by the MTP (R-MQTT.27a)", X_DROP, 0,
     H_RAW_CT, true, 0},
    {"no-reply-to", "no reply-to: nowhere to answer, dropped (R-MQTT.22/26a)", X_DROP, 0,
     H_RAW_NO_REPLY, false, 'd'},
    {"empty-publish", "an empty PUBLISH: dropped by the MTP", X_DROP, 0, H_RAW_EMPTY, false, 0},
    {"1MB-get", "a 1 MiB Get (32,769 paths), within max_record: answered in full", X_GETRESP, 0,
     H_MTP, false, 0},
    {"5MB-record", "a 5 MiB Record, over the MTP's max_record (4 MiB): dropped", X_DROP, 0, H_MTP,
     false, 0},
};
#define NBAD (sizeof bad_cases / sizeof bad_cases[0])

static size_t bad_i;
static const struct bad_case *bad_cur;
static char bad_msg_id[48], probe_msg_id[48];
static bool bad_answered, bad_answer_ok;
static char bad_answer[200];
static unsigned bad_expect_dropped, bad_expect_errors;
static size_t big_paths;
static uint64_t bad_sent_ms;
static char bad_stats_expr[128];

static void bad_next(void);

/* Edits for build_req. */
static void edit_msg_type(Usp__Msg *m)
{
    m->header->msg_type = 99;
}

static void edit_no_msg_id(Usp__Msg *m)
{
    m->header->msg_id = "";
}

static void edit_empty_oneof(Usp__Msg *m)
{
    m->body->request->req_type_case = USP__REQUEST__REQ_TYPE__NOT_SET;
}

static void edit_notify(Usp__Msg *m)
{
    static Usp__Notify n = USP__NOTIFY__INIT;
    static Usp__Notify__Event e = USP__NOTIFY__EVENT__INIT;
    e.obj_path = "Device.";
    e.event_name = "Boot!";
    n.subscription_id = "x";
    n.notification_case = USP__NOTIFY__NOTIFICATION_EVENT;
    n.event = &e;
    m->header->msg_type = USP__HEADER__MSG_TYPE__NOTIFY;
    m->body->request->req_type_case = USP__REQUEST__REQ_TYPE_NOTIFY;
    m->body->request->notify = &n;
}

/* A Record holding `msg` packed, with the Record fields changed as asked. */
static int pack_record(struct usp_arena *ar, const char *version, const char *to, const char *from,
                       int security, const uint8_t *payload, size_t plen, bool session,
                       bool no_type, uint8_t **out, size_t *len)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__NoSessionContextRecord nsc = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    ProtobufCBinaryData pl = {.data = (uint8_t *)payload, .len = plen};
    rec.version = (char *)version;
    rec.to_id = (char *)to;
    rec.from_id = (char *)from;
    rec.payload_security = security;
    if (no_type) {
        /* nothing */
    } else if (session) {
        sc.session_id = 1;
        sc.sequence_id = 1;
        sc.expected_id = 1;
        sc.n_payload = 1;
        sc.payload = &pl;
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT;
        rec.session_context = &sc;
    } else {
        nsc.payload = pl;
        rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
        rec.no_session_context = &nsc;
    }
    return usp_record_encode(ar, &rec, out, len);
}

/* Packed Msg of a request line. */
static int pack_msg(struct usp_arena *ar, const char *line, const char *msg_id,
                    void (*edit)(Usp__Msg *m), uint8_t **out, size_t *len)
{
    Usp__Msg *m;
    struct usp_req_err err;
    int rc = usp_req_parse_line(ar, line, msg_id, &m, &err);
    if (rc)
        return rc;
    if (edit)
        edit(m);
    return usp_msg_encode(ar, m, out, len);
}

/* Deterministic bytes that are not a Record. */
static void fill_random(uint8_t *b, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
}

static bool raw_published;

static void raw_on_publish(struct mosquitto *m, void *obj, int mid)
{
    raw_published = true;
}

/* Publishes with a plain libmosquitto client of our own, for what the
 * binding never sends; waits (a few ms on loopback) until the broker has it.
 * MQTT 5 carries `ctype` and `response_topic` as properties; 3.1.1 appends
 * "/reply-to=" and the response topic with "/" as %2F [R-MQTT.24/25]. 0 or
 * -1. */
static int raw_publish(const char *topic, const void *buf, int len, const char *ctype,
                       const char *response_topic)
{
    int rc = -1;
    struct mosquitto *m = mosquitto_new("fleet-check-raw", true, NULL);
    mosquitto_property *props = NULL;
    if (!m)
        return -1;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
                         opt_version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_publish_callback_set(m, raw_on_publish);
    if (mosquitto_connect(m, "127.0.0.1", (int)opt_port, 10) != MOSQ_ERR_SUCCESS)
        goto out;
    char full[512];
    snprintf(full, sizeof full, "%s", topic);
    if (opt_version == 5) {
        if (ctype)
            mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, ctype);
        if (response_topic)
            mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, response_topic);
    } else if (response_topic) {
        size_t o = strlen(full);
        o += (size_t)snprintf(full + o, sizeof full - o, "/reply-to=");
        for (const char *p = response_topic; *p && o + 4 < sizeof full; p++)
            o += (size_t)(*p == '/' ? snprintf(full + o, sizeof full - o, "%%2F")
                                    : snprintf(full + o, sizeof full - o, "%c", *p));
    }
    raw_published = false;
    if (mosquitto_publish_v5(m, NULL, full, len, buf, 1, false, props) != MOSQ_ERR_SUCCESS)
        goto out;
    for (int i = 0; i < 100 && !raw_published; i++)
        mosquitto_loop(m, 50, 1);
    if (raw_published)
        rc = 0;
    mosquitto_disconnect(m);
    mosquitto_loop(m, 50, 1);
out:
    mosquitto_property_free_all(&props);
    mosquitto_destroy(m);
    return rc;
}

/* Sends case `c` to agent 0 (agent 1 is the "other" agent). 0 or an error. */
static int bad_send(const struct bad_case *c)
{
    struct agent *a = &agents[0], *other = &agents[1];
    struct usp_arena *ar = usp_arena_new(64 * 1024);
    if (!ar)
        return USP_ENOMEM;
    uint8_t *msg = NULL, *rec = NULL;
    size_t mlen = 0, rlen = 0;
    int rc = 0;
    snprintf(bad_msg_id, sizeof bad_msg_id, "bad-%s", c->name);
    const char *get = "get Device.DeviceInfo.SerialNumber";
    const char *name = c->name;
    big_paths = 0;
    if (!strcmp(name, "random-bytes")) {
        /* bytes that do not decode as a Record, checked here */
        rlen = 1024;
        rec = usp_arena_alloc(ar, rlen);
        UspRecord__Record *r;
        struct usp_decode_err e;
        uint32_t seed = 1;
        do
            fill_random(rec, rlen, seed++);
        while (usp_record_decode(ar, rec, rlen, &r, &e) != USP_EDECODE);
    } else if (!strcmp(name, "truncated")) {
        rc = build_req(ar, a, get, bad_msg_id, NULL, &rec, &rlen, NULL);
        /* cut inside the payload's length-delimited field, where the bytes
         * can no longer decode (checked here) */
        UspRecord__Record *r;
        struct usp_decode_err e;
        for (rlen = rlen * 2 / 3;
             rc == 0 && rlen > 1 && usp_record_decode(ar, rec, rlen, &r, &e) != USP_EDECODE; rlen--)
            ;
    } else if (!strcmp(name, "wrong-to_id")) {
        if ((rc = pack_msg(ar, get, bad_msg_id, NULL, &msg, &mlen)) == 0)
            rc = pack_record(ar, "1.4", other->eid, CTL_EID, 0, msg, mlen, false, false, &rec,
                             &rlen);
    } else if (!strcmp(name, "empty-from_id")) {
        if ((rc = pack_msg(ar, get, bad_msg_id, NULL, &msg, &mlen)) == 0)
            rc = pack_record(ar, "1.4", a->eid, "", 0, msg, mlen, false, false, &rec, &rlen);
    } else if (!strcmp(name, "no-record-type")) {
        rc = pack_record(ar, "1.4", a->eid, CTL_EID, 0, NULL, 0, false, true, &rec, &rlen);
    } else if (!strcmp(name, "bad-from_id")) {
        if ((rc = pack_msg(ar, get, bad_msg_id, NULL, &msg, &mlen)) == 0)
            rc = pack_record(ar, "9.9", a->eid, "not an endpoint id", 0, msg, mlen, false, false,
                             &rec, &rlen);
    } else if (!strcmp(name, "bad-version")) {
        if ((rc = pack_msg(ar, get, bad_msg_id, NULL, &msg, &mlen)) == 0)
            rc = pack_record(ar, "9.9", a->eid, CTL_EID, 0, msg, mlen, false, false, &rec, &rlen);
    } else if (!strcmp(name, "unknown-record-enum")) {
        if ((rc = pack_msg(ar, get, bad_msg_id, NULL, &msg, &mlen)) == 0)
            rc = pack_record(ar, "1.4", a->eid, CTL_EID, 7, msg, mlen, false, false, &rec, &rlen);
    } else if (!strcmp(name, "unknown-msg-enum")) {
        rc = build_req(ar, a, get, bad_msg_id, edit_msg_type, &rec, &rlen, NULL);
    } else if (!strcmp(name, "empty-request-oneof")) {
        rc = build_req(ar, a, get, bad_msg_id, edit_empty_oneof, &rec, &rlen, NULL);
    } else if (!strcmp(name, "no-msg_id")) {
        rc = build_req(ar, a, get, bad_msg_id, edit_no_msg_id, &rec, &rlen, NULL);
    } else if (!strcmp(name, "payload-not-msg")) {
        uint8_t junk[300];
        Usp__Msg *mm;
        struct usp_decode_err e;
        uint32_t seed = 7;
        do
            fill_random(junk, sizeof junk, seed++);
        while (usp_msg_decode(ar, junk, sizeof junk, &mm, &e) != USP_EDECODE);
        rc = pack_record(ar, "1.4", a->eid, CTL_EID, 0, junk, sizeof junk, false, false, &rec,
                         &rlen);
    } else if (!strcmp(name, "session-context")) {
        if ((rc = pack_msg(ar, get, bad_msg_id, NULL, &msg, &mlen)) == 0)
            rc = pack_record(ar, "1.4", a->eid, CTL_EID, 0, msg, mlen, true, false, &rec, &rlen);
    } else if (!strcmp(name, "notify-to-agent")) {
        rc = build_req(ar, a, get, bad_msg_id, edit_notify, &rec, &rlen, NULL);
    } else if (!strcmp(name, "stray-notify-resp")) {
        rc = build_req(ar, a, "notify-resp boot-1", bad_msg_id, NULL, &rec, &rlen, NULL);
    } else if (!strcmp(name, "content-type") || !strcmp(name, "no-reply-to")) {
        rc = build_req(ar, a, get, bad_msg_id, NULL, &rec, &rlen, NULL);
    } else if (!strcmp(name, "1MB-get") || !strcmp(name, "5MB-record")) {
        size_t target = !strcmp(name, "1MB-get") ? (1u << 20) : (5u << 20);
        const char *p = " Device.DeviceInfo.SerialNumber";
        size_t n = target / (strlen(p) + 1) + 1; /* a path costs its length + 2 bytes */
        char *line = malloc(4 + n * strlen(p) + 1);
        if (!line) {
            rc = USP_ENOMEM;
        } else {
            char *w = line + sprintf(line, "get");
            for (size_t i = 0; i < n; i++)
                w += sprintf(w, "%s", p);
            rc = build_req(ar, a, line, bad_msg_id, NULL, &rec, &rlen, NULL);
            free(line);
            big_paths = n;
            if (rc == 0)
                note("badinput: %s is %zu bytes (%zu paths)", name, rlen, n);
            if (rc == 0 && rlen < target)
                rc = USP_ERANGE;
        }
    }
    if (rc == 0) {
        switch (c->how) {
        case H_MTP:
            rc = send_bytes(a->topic, rec, rlen);
            break;
        case H_RAW_CT:
            rc = raw_publish(a->topic, rec, (int)rlen, "text/plain", CTL_TOPIC) ? USP_EIO : 0;
            break;
        case H_RAW_NO_REPLY:
            rc = raw_publish(a->topic, rec, (int)rlen, opt_version == 5 ? "usp.msg" : NULL, NULL)
                     ? USP_EIO
                     : 0;
            break;
        case H_RAW_EMPTY:
            rc = raw_publish(a->topic, "", 0, opt_version == 5 ? "usp.msg" : NULL, CTL_TOPIC)
                     ? USP_EIO
                     : 0;
            break;
        }
    }
    usp_arena_free(ar);
    return rc;
}

static void bad_probe(void)
{
    struct agent *a = &agents[0];
    send_req(a, "get Device.DeviceInfo.SerialNumber");
    snprintf(probe_msg_id, sizeof probe_msg_id, "%s", a->want);
}

static void badinput_start(const char *arg)
{
    if (opt_count < 2) {
        check(false, "badinput: needs --count 2 or more");
        step_over = true;
        return;
    }
    bad_i = 0;
    bad_expect_dropped = bad_expect_errors = 0;
    bad_next();
}

static void bad_next(void)
{
    while (bad_i < NBAD && bad_cases[bad_i].v5_only && opt_version != 5)
        bad_i++;
    if (bad_i >= NBAD) {
        /* The fleet's counters must show exactly what the cases predict. */
        snprintf(bad_stats_expr, sizeof bad_stats_expr, "dropped=%u,errors_sent=%u",
                 bad_expect_dropped, bad_expect_errors);
        note("badinput: every case done; the fleet's counters should read %s", bad_stats_expr);
        cur_arg = bad_stats_expr;
        bad_cur = NULL;
        return; /* bad_tick waits for the stats */
    }
    bad_cur = &bad_cases[bad_i++];
    bad_answered = false;
    bad_answer_ok = false;
    bad_answer[0] = 0;
    bad_sent_ms = uv_now(loop);
    int rc = bad_send(bad_cur);
    if (rc) {
        check(false, "badinput %s: sent (%s)", bad_cur->name, usp_strerror(rc));
        bad_next();
        return;
    }
    if (bad_cur->counted == 'd')
        bad_expect_dropped++;
    else if (bad_cur->counted == 'e')
        bad_expect_errors++;
    /* The answer to the bad Record, if any, comes before the probe's. */
    bad_probe();
}

static void bad_case_end(void)
{
    const struct bad_case *c = bad_cur;
    bool ok = c->expect == X_DROP ? !bad_answered : bad_answered && bad_answer_ok;
    check(ok, "badinput %s: %s -> %s; the agent then answered a Get (%.0f ms)", c->name, c->why,
          bad_answered ? bad_answer : "no answer", secs_since(bad_sent_ms) * 1000);
    bad_next();
}

static void bad_resp(struct agent *a, const Usp__Msg *m)
{
    /* Only the probe is awaited through a->want; the probe's GetResp ends
     * the case. */
    const Usp__Response *r = response_of(m);
    if (a != &agents[0] || !bad_cur)
        return;
    if (!r || r->resp_type_case != USP__RESPONSE__RESP_TYPE_GET_RESP ||
        !get_value(r->get_resp, 0, "Device.DeviceInfo.SerialNumber")) {
        check(false, "badinput %s: probe Get answered with %s", bad_cur->name, error_text(m));
    }
    bad_case_end();
}

/* Anything from agent 0 that is not the probe's answer: the bad Record's. */
static void bad_other(struct agent *a, const Usp__Msg *m, const UspRecord__Record *rec)
{
    if (!bad_cur)
        return;
    if (bad_answered) {
        snprintf(bad_answer + strlen(bad_answer), sizeof bad_answer - strlen(bad_answer),
                 " + another");
        bad_answer_ok = false;
        return;
    }
    bad_answered = true;
    const struct bad_case *c = bad_cur;
    if (rec) {
        if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
            snprintf(bad_answer, sizeof bad_answer, "DisconnectRecord %u \"%.100s\"",
                     rec->disconnect->reason_code, rec->disconnect->reason);
            bad_answer_ok = c->expect == X_DISCONNECT && rec->disconnect->reason_code == c->code;
        } else {
            snprintf(bad_answer, sizeof bad_answer, "record type %d", (int)rec->record_type_case);
        }
        return;
    }
    snprintf(bad_answer, sizeof bad_answer, "%s msg_id %s", error_text(m), m->header->msg_id);
    bool id_ok = strcmp(m->header->msg_id, bad_msg_id) == 0;
    if (c->expect == X_ERROR) {
        bad_answer_ok = id_ok && m->body->msg_body_case == USP__BODY__MSG_BODY_ERROR &&
                        m->body->error->err_code == c->code;
    } else if (c->expect == X_GETRESP) {
        const Usp__Response *r = response_of(m);
        bool all = r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_GET_RESP &&
                   r->get_resp->n_req_path_results == big_paths;
        char serial[32];
        snprintf(serial, sizeof serial, "GW%08u", a->idx);
        for (size_t i = 0; all && i < big_paths; i++) {
            const char *v = get_value(r->get_resp, i, "Device.DeviceInfo.SerialNumber");
            all = v && strcmp(v, serial) == 0;
        }
        bad_answer_ok = id_ok && all;
        snprintf(bad_answer, sizeof bad_answer, "GetResp with %zu results%s",
                 r && r->resp_type_case == USP__RESPONSE__RESP_TYPE_GET_RESP
                     ? r->get_resp->n_req_path_results
                     : 0,
                 all ? ", each the agent's serial number" : ", NOT all correct");
    }
}

static void bad_record(struct agent *a, const UspRecord__Record *r)
{
    if (a == &agents[0])
        bad_other(a, NULL, r);
}

static void bad_tick(void)
{
    if (bad_cur || !cur_arg)
        return;
    stats_tick();
}

static void bad_timeout(void)
{
    if (bad_cur)
        check(false, "badinput %s: the agent answered the probe within %.0f s (%s)", bad_cur->name,
              opt_timeout, bad_answered ? bad_answer : "nothing came back");
    else
        stats_timeout();
}

/* ---- The step table and the runner ---------------------------------------------- */

static const struct step step_table[] = {
    {.name = "boot", .start = boot_start, .on_tick = boot_tick, .on_timeout = boot_timeout},
    {.name = "get-all",
     .on_resp = get_resp,
     .on_timeout = agents_timeout,
     .agent_begin = get_begin},
    {.name = "notify-all",
     .on_resp = na_resp,
     .on_notify = na_notify,
     .on_timeout = agents_timeout,
     .agent_begin = na_begin},
    {.name = "arm",
     .start = arm_start,
     .on_resp = arm_resp,
     .on_notify = opc_notify,
     .on_timeout = agents_timeout,
     .agent_begin = arm_begin},
    {.name = "outage",
     .start = outage_start,
     .on_notify = opc_notify,
     .on_state = outage_state,
     .on_timeout = outage_timeout},
    {.name = "reconnect",
     .start = reconnect_start,
     .on_notify = opc_notify,
     .on_tick = reconnect_tick},
    {.name = "collect",
     .start = collect_start,
     .on_notify = opc_notify,
     .on_tick = collect_tick,
     .on_timeout = collect_timeout},
    {.name = "badinput",
     .start = badinput_start,
     .on_resp = bad_resp,
     .on_record = bad_record,
     .on_tick = bad_tick,
     .on_timeout = bad_timeout},
    {.name = "stats", .on_tick = stats_tick, .on_timeout = stats_timeout},
};

/* In badinput, answers arrive for the bad Record (msg_id bad-...) and for
 * the probe; on_record routes the awaited one (the probe's) to bad_resp and
 * the others here. */
static bool bad_unawaited(struct agent *a, const Usp__Msg *m)
{
    if (!cur || strcmp(cur->name, "badinput") != 0 || a != &agents[0])
        return false;
    bad_other(a, m, NULL);
    return true;
}

static void on_tick(uv_timer_t *t)
{
    if (cur && !step_over) {
        if (cur->on_tick)
            cur->on_tick();
        if (!step_over && uv_now(loop) > step_deadline) {
            if (cur->on_timeout)
                cur->on_timeout();
            step_over = true;
            step_i = nsteps; /* a step that timed out ends the run */
        }
    }
    if (step_over)
        next_step();
}

static void next_step(void)
{
    step_over = false;
    details = 0;
    if (++step_i >= nsteps) {
        finish();
        return;
    }
    char *spec = steps[step_i];
    char *colon = strchr(spec, ':');
    size_t nl = colon ? (size_t)(colon - spec) : strlen(spec);
    cur = NULL;
    for (size_t i = 0; i < sizeof step_table / sizeof step_table[0]; i++)
        if (strlen(step_table[i].name) == nl && strncmp(step_table[i].name, spec, nl) == 0)
            cur = &step_table[i];
    if (!cur) {
        check(false, "unknown step \"%s\"", spec);
        finish();
        return;
    }
    cur_arg = colon ? colon + 1 : NULL;
    step_t0 = uv_now(loop);
    step_deadline = step_t0 + (uint64_t)(opt_timeout * 1000);
    note("step %s%s%s", cur->name, cur_arg ? " " : "", cur_arg ? cur_arg : "");
    if (cur->agent_begin)
        agents_reset();
    if (cur->start)
        cur->start(cur_arg);
    if (cur->agent_begin && !step_over)
        pump();
}

static bool finishing;

static void finish(void)
{
    if (finishing)
        return;
    finishing = true;
    cur = NULL;
    uv_timer_stop(&tick_timer);
    uv_close((uv_handle_t *)&tick_timer, NULL);
    usp_mtp_conn_free(conn);
    conn = NULL;
    usp_mtp_ctx_free(mctx);
    mctx = NULL;
}

/* ---- Entry ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: fleet_check --port P [--mqtt 5|3.1.1] [--count N] [--first I] "
               "[--window W] [--timeout S] [--stats FILE] STEP...\n"
               "steps: boot[:noack] get-all notify-all arm:SECONDS outage reconnect collect "
               "badinput stats:EXPR\n");
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(o, "--port"))
            opt_port = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(o, "--mqtt"))
            opt_version = !strcmp(v, "3.1.1") ? 4 : 5;
        else if (!strcmp(o, "--count"))
            opt_count = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(o, "--first"))
            opt_first = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(o, "--window"))
            opt_window = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(o, "--timeout"))
            opt_timeout = strtod(v, NULL);
        else if (!strcmp(o, "--stats"))
            opt_stats = v;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!opt_port || !opt_count || !opt_window || i >= argc) {
        usage(stderr);
        return 2;
    }
    steps = argv + i;
    nsteps = argc - i;
    setvbuf(stdout, NULL, _IOLBF, 0);

    agents = calloc(opt_count, sizeof *agents);
    if (!agents)
        return 1;
    for (unsigned k = 0; k < opt_count; k++) {
        struct agent *a = &agents[k];
        a->idx = opt_first + k;
        snprintf(a->eid, sizeof a->eid, EID_PREFIX "%06u", a->idx);
        snprintf(a->topic, sizeof a->topic, "usp/agent/%s", a->eid);
    }

    loop = uv_default_loop();
    t_start = uv_now(loop);
    if (usp_mtp_register(&usp_mtp_mqtt_ops) != 0) {
        fprintf(stderr, "fleet_check: cannot register the MQTT binding\n");
        return 1;
    }
    struct usp_mtp_ctx_opts mo = {.log = mtp_log, .log_level = USP_MTP_LOG_WARN};
    mctx = usp_mtp_ctx_new(loop, &mo);
    char url[64], why[256];
    snprintf(url, sizeof url, "mqtt://127.0.0.1:%u", opt_port);
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.role = USP_MTP_CONTROLLER;
    cfg.eid = CTL_EID;
    cfg.url = url;
    cfg.keepalive_s = 30;
    cfg.retry_time_s = 1; /* back quickly after the outage, before the agents */
    cfg.retry_multiplier = 1000;
    cfg.retry_max_s = 1;
    cfg.connect_timeout_ms = 5000;
    cfg.max_record = 16u << 20; /* the 5 MiB bad Record goes out through us */
    cfg.mqtt.version = opt_version == 5 ? USP_MQTT_V5 : USP_MQTT_V311;
    cfg.mqtt.topic = CTL_TOPIC;
    cfg.mqtt.qos = 1;
    if (!mctx || usp_mtp_conn_new(mctx, &cfg, &callbacks, NULL, &conn, why, sizeof why) != 0) {
        fprintf(stderr, "fleet_check: cannot create the connection: %s\n", why);
        return 1;
    }
    uv_timer_init(loop, &tick_timer);
    uv_timer_start(&tick_timer, on_tick, TICK_MS, TICK_MS);
    usp_mtp_open(conn);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    check(agent_fail_total == 0, "no agent misbehaved in any step (%u times one did)",
          agent_fail_total);
    free(agents);
    if (unexpected)
        note("%u records nobody waited for", unexpected);
    printf("fleet_check: %s\n", failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
