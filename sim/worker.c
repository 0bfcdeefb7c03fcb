/* One fleet worker: a libuv loop running a share of the agents. Everything
 * an agent does happens here: connecting over its MTP, Boot!, answering
 * requests through the handlers, notifications and their retries, async
 * commands, restarts after Reboot()/FactoryReset(), the graceful stop.
 *
 * Per-agent state is struct sim_agent (kept small: 100,000 of them) plus its
 * MTP connection; everything else (schema, profile, model, notifier, timer
 * wheel, arena) is per worker or shared. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "fleet.h"
#include "usp/codec.h"
#include "usp/handler.h"
#include "usp/mtp_coap.h"
#include "usp/notify.h"
#include "usp/timerwheel.h"

#define RAMP_TICK_MS 10
#define STOP_TIMEOUT_MS 5000
#define RESTART_DELAY_MS 200 /* lets the OperateResp leave before the agent restarts */
#define MAX_STARTS_PER_TICK 2000
#define FAILURES_SHOWN 3 /* connection failures per worker written to stderr */

struct sim_worker;

/* Work scheduled by a handler (async commands), on the worker's wheel. */
struct sim_job {
    struct usp_tw_entry e;
    struct sim_job *next;
    struct sim_agent *agent;
    usp_timer_fn fn;
    void *arg;
};

/* A pending restart (Reboot() or FactoryReset()), only while it lasts. */
struct sim_restart {
    struct usp_tw_entry e;
    struct sim_agent *agent;
    bool factory;
    bool reconnect_only; /* the MTP settings changed: reconnect, no reboot, no Boot! */
    char cause[24];
    char command_key[64];
};

enum {
    AG_STARTED = 1u << 0,
    AG_EVER_UP = 1u << 1,
    AG_UP = 1u << 2,
    AG_DOWN = 1u << 3,
    AG_CLOSED = 1u << 4,
    AG_BOOT_DUE = 1u << 5, /* send Boot! when the connection is next UP */
};

/* An agent's E2E session with its controller, only once one is used. */
struct sim_e2e {
    struct usp_tw_entry tick;
    struct sim_agent *ag;
    struct usp_e2e_session *s;
    char *dest; /* where the controller's Records said to answer */
    char peer[]; /* the controller's Endpoint ID */
};

struct sim_agent {
    struct usp_dm_agent dm; /* first: handlers and the notifier give us &dm */
    struct usp_notify_agent na;
    struct usp_mtp_conn *conn;
    struct sim_e2e *e2e;
    struct sim_worker *w;
    struct sim_job *jobs;
    struct sim_restart *restart;
    char *eid;
    uint32_t flags;
};

struct sim_worker {
    const struct sim_fleet *f;
    unsigned id;
    uv_loop_t loop;
    struct usp_mtp_ctx *mtp;
    struct usp_tw_uv tw;
    struct usp_notifier *notifier;
    struct usp_arena *arena;
    struct sim_agent *agents;
    /* Agents that accept their controller (f->listen): one listener each,
     * in an array of its own so other runs pay nothing for it. */
    struct usp_mtp_listener **listeners;
    uint64_t first, n, next_start;
    uint64_t t0;
    double rate; /* agents per second for this worker, 0: all at once */
    uv_timer_t ramp_timer, stats_timer, stop_timer;
    uv_poll_t ctl_poll;
    int stats_fd, ctl_fd;
    bool stopping, finished;
    uint64_t closing, closed; /* graceful closes asked for / reported while stopping */
    unsigned failures_shown;  /* connection failures written to stderr */
    struct sim_stats st;
    struct usp_e2e_stats e2e_stats;
    struct usp_arena *e2e_arena; /* Messages delivered out of sessions */
    uint64_t e2e_sent;           /* session Records sent (for the test faults) */
    uint8_t *e2e_held;           /* a Record held back to be swapped */
    size_t e2e_held_len;
    struct usp_agent_env env;
    char boot_cause[24];
};

static struct sim_agent *agent_of(struct usp_dm_agent *dm)
{
    return (struct sim_agent *)dm; /* dm is the first member */
}

/* ---- Templates and small helpers ---------------------------------------- */

int sim_template_expand(const char *tpl, uint64_t n, const char *eid, char *buf, size_t len)
{
    size_t o = 0;
    for (const char *p = tpl; *p;) {
        if (*p != '{') {
            if (o + 1 >= len)
                return -1;
            buf[o++] = *p++;
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end)
            return -1;
        size_t fl = (size_t)(end - p - 1);
        char tmp[64];
        int w = 0;
        if (fl == 1 && p[1] == 'n') {
            w = snprintf(tmp, sizeof tmp, "%" PRIu64, n);
        } else if (fl >= 3 && p[1] == 'n' && p[2] == ':') {
            char *e;
            unsigned long width = strtoul(p + 3, &e, 10);
            if (e != end || width > 20)
                return -1;
            w = snprintf(tmp, sizeof tmp, "%0*" PRIu64, (int)width, n);
        } else if (fl == 3 && !strncmp(p + 1, "eid", 3) && eid) {
            size_t el = strlen(eid);
            if (o + el >= len)
                return -1;
            memcpy(buf + o, eid, el);
            o += el;
            p = end + 1;
            continue;
        } else {
            return -1;
        }
        if (w < 0 || o + (size_t)w >= len)
            return -1;
        memcpy(buf + o, tmp, (size_t)w);
        o += (size_t)w;
        p = end + 1;
    }
    if (o >= len)
        return -1;
    buf[o] = 0;
    return 0;
}

uint64_t sim_pss_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Pss: %" SCNu64 " kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* A parameter of the agent's data model as a string ("" when absent). */
static void dm_read(const struct usp_dm_agent *a, const char *obj_path, const char *param,
                    char *buf, size_t len)
{
    buf[0] = 0;
    struct usp_dm_inst o;
    if (usp_dm_inst_parse(a->model, obj_path, &o) != 0 || !usp_dm_exists(a, &o))
        return;
    const struct usp_dm_param *p = usp_dm_object_param(o.obj, param, strlen(param));
    if (p && usp_dm_get(a, &o, p, buf, len) != 0)
        buf[0] = 0;
}

static uint32_t dm_read_u32(const struct usp_dm_agent *a, const char *obj, const char *param,
                            uint32_t def)
{
    char v[32];
    dm_read(a, obj, param, v, sizeof v);
    char *e;
    unsigned long x = strtoul(v, &e, 10);
    return (v[0] && !*e && x <= UINT32_MAX) ? (uint32_t)x : def;
}

/* Where a controller with `eid` is reached: the configured controller, or
 * any Controller.{i} of the agent's data model with that EndpointID. */
static const char *controller_dest(struct sim_agent *ag, const char *eid, char *buf, size_t len)
{
    const struct sim_fleet *f = ag->w->f;
    if (!strcmp(eid, f->controller_id))
        return f->controller_topic;
    for (unsigned i = 1; i <= 16; i++) {
        char obj[64], v[256];
        snprintf(obj, sizeof obj, "Device.LocalAgent.Controller.%u.", i);
        dm_read(&ag->dm, obj, "EndpointID", v, sizeof v);
        if (strcmp(v, eid))
            continue;
        snprintf(obj, sizeof obj, "Device.LocalAgent.Controller.%u.MTP.1.MQTT.", i);
        dm_read(&ag->dm, obj, "Topic", buf, len);
        return buf[0] ? buf : NULL;
    }
    return NULL;
}

/* ---- Sending ------------------------------------------------------------- */

static int send_record(struct sim_agent *ag, const char *dest, const uint8_t *rec, size_t len)
{
    if (!ag->conn || !dest)
        return USP_EPERM;
    struct usp_mtp_dest d = {.to = dest};
    int rc = usp_mtp_send(ag->conn, &d, rec, len);
    if (rc == 0)
        ag->w->st.msgs_out++;
    return rc;
}

static int send_msg(struct sim_agent *ag, const char *to_eid, const char *version,
                    const char *dest, const Usp__Msg *msg)
{
    struct usp_record_hdr h = {.version = version, .to_id = to_eid, .from_id = ag->eid};
    uint8_t *buf;
    size_t len;
    int rc = usp_record_wrap_msg(ag->w->arena, &h, msg, &buf, &len);
    return rc ? rc : send_record(ag, dest, buf, len);
}

/* ---- E2E sessions (R-E2E.*) ------------------------------------------------ */

static void e2e_fire(struct usp_tw_entry *t, uint64_t now_ms);

/* Whether an encoded Record is one segment of a larger Message (only the
 * test faults look). */
static bool is_segment(const uint8_t *rec, size_t len)
{
    UspRecord__Record *r = usp_record__record__unpack(NULL, len, rec);
    bool seg = r && r->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT &&
               r->session_context &&
               r->session_context->payload_sar_state !=
                   USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__NONE;
    if (r)
        usp_record__record__free_unpacked(r, NULL);
    return seg;
}

static int e2e_send(void *ctx, const uint8_t *rec, size_t len)
{
    struct sim_e2e *e = ctx;
    struct sim_worker *w = e->ag->w;
    const struct sim_fleet *f = w->f;
    if (!(f->e2e_drop_nth || f->e2e_swap_nth) || !is_segment(rec, len))
        return send_record(e->ag, e->dest, rec, len);
    uint64_t n = ++w->e2e_sent;
    if (f->e2e_drop_nth && n == f->e2e_drop_nth)
        return 0; /* the test fault: lost on the way */
    if (f->e2e_swap_nth && n == f->e2e_swap_nth && !w->e2e_held) {
        w->e2e_held = malloc(len);
        if (w->e2e_held) {
            memcpy(w->e2e_held, rec, len);
            w->e2e_held_len = len;
            return 0; /* goes after the next one */
        }
    }
    int rc = send_record(e->ag, e->dest, rec, len);
    if (w->e2e_held) {
        send_record(e->ag, e->dest, w->e2e_held, w->e2e_held_len);
        free(w->e2e_held);
        w->e2e_held = NULL;
    }
    return rc;
}

static int e2e_deliver(void *ctx, const uint8_t *msg, size_t len, bool in_session);

static struct usp_e2e_io e2e_io(struct sim_e2e *e)
{
    return (struct usp_e2e_io){.send = e2e_send, .deliver = e2e_deliver, .ctx = e};
}

static void e2e_rearm(struct sim_e2e *e)
{
    struct usp_tw *tw = e->ag->w->tw.tw;
    uint64_t d = usp_e2e_next_deadline(e->s);
    if (d == UINT64_MAX)
        usp_tw_cancel(tw, &e->tick);
    else
        usp_tw_add(tw, &e->tick, d);
}

static void e2e_fire(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct sim_e2e *e = (struct sim_e2e *)t;
    struct usp_e2e_io io = e2e_io(e);
    usp_e2e_tick(e->s, now_ms, &io);
    e2e_rearm(e);
}

/* A Message out of a session: handled like any other, answered in the
 * same kind of Record it came in (R-MSG.0a). */
static int e2e_deliver(void *ctx, const uint8_t *msg, size_t len, bool in_session)
{
    struct sim_e2e *e = ctx;
    struct sim_agent *ag = e->ag;
    struct sim_worker *w = ag->w;
    usp_arena_reset(w->e2e_arena);
    Usp__Msg *m;
    struct usp_decode_err err;
    if (usp_msg_decode(w->e2e_arena, msg, len, &m, &err) != 0) {
        w->st.dropped++;
        return USP_EPROTO; /* fails the session (R-E2E.21) */
    }
    Usp__Msg *resp = NULL;
    if (usp_agent_handle(&ag->dm, &w->env, e->peer, m, w->e2e_arena, &resp) != 0) {
        w->st.dropped++;
        return 0;
    }
    w->st.requests++;
    if (!resp)
        return 0;
    if (resp->body && resp->body->msg_body_case == USP__BODY__MSG_BODY_ERROR)
        w->st.errors_sent++;
    uint8_t *out;
    size_t olen;
    if (usp_msg_encode(w->e2e_arena, resp, &out, &olen) != 0)
        return USP_ENOMEM;
    struct usp_e2e_io io = e2e_io(e);
    return in_session ? usp_e2e_send_msg(e->s, out, olen, usp_tw_now(w->tw.tw), &io)
                      : usp_e2e_send_plain(e->s, out, olen, &io);
}

/* The agent's session with controller `peer` (made on first use; one per
 * agent: the controller it reports to). NULL for another controller or
 * when out of memory. `dest` (may be NULL) is where to answer. */
static struct sim_e2e *agent_e2e(struct sim_agent *ag, const char *peer, const char *dest)
{
    struct sim_worker *w = ag->w;
    struct sim_e2e *e = ag->e2e;
    if (e && strcmp(e->peer, peer) != 0)
        return NULL;
    if (!e) {
        size_t n = strlen(peer) + 1;
        e = calloc(1, sizeof *e + n);
        if (!e)
            return NULL;
        memcpy(e->peer, peer, n);
        e->ag = ag;
        usp_tw_entry_init(&e->tick, e2e_fire);
        uint64_t seed = ag->dm.index * 0x9e3779b97f4a7c15ull ^ uv_hrtime();
        if (usp_e2e_new(&w->f->e2e, USP_E2E_AGENT, ag->eid, e->peer, seed, &w->e2e_stats,
                        &e->s) != 0) {
            free(e);
            return NULL;
        }
        ag->e2e = e;
    }
    if (dest && (!e->dest || strcmp(e->dest, dest) != 0)) {
        char *d = strdup(dest);
        if (d) {
            free(e->dest);
            e->dest = d;
        }
    }
    return e->dest ? e : NULL;
}

static void agent_e2e_free(struct sim_agent *ag)
{
    struct sim_e2e *e = ag->e2e;
    if (!e)
        return;
    usp_tw_cancel(ag->w->tw.tw, &e->tick);
    usp_e2e_free(e->s);
    free(e->dest);
    free(e);
    ag->e2e = NULL;
}

/* Whether a received Record belongs to the E2E layer. */
static bool e2e_record(const struct sim_agent *ag, const UspRecord__Record *rec)
{
    if (ag->w->f->e2e.mode == USP_E2E_FORBID)
        return false;
    if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT)
        return true;
    return ag->e2e && !strcmp(ag->e2e->peer, rec->from_id) &&
           (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT ||
            rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT);
}

/* The notifier hands over a packed Notify: wrap it and send it. */
/* A Notify in a no_session_context Record. */
static int notify_send_plain(struct sim_agent *ag, const char *dest,
                             const struct usp_notify_out *out, struct usp_arena *arena)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__NoSessionContextRecord nsc = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    rec.version = (char *)(ag->w->f->usp_version ? ag->w->f->usp_version : USP_VERSION_DEFAULT);
    rec.to_id = (char *)out->to_eid;
    rec.from_id = ag->eid;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    rec.no_session_context = &nsc;
    nsc.payload.data = (uint8_t *)out->payload;
    nsc.payload.len = out->len;
    uint8_t *buf;
    size_t len;
    int rc = usp_record_encode(arena, &rec, &buf, &len);
    return rc ? rc : send_record(ag, dest, buf, len);
}

static int notify_send(void *ctx, struct usp_dm_agent *dm, const struct usp_notify_out *out,
                       struct usp_arena *arena)
{
    struct sim_agent *ag = agent_of(dm);
    char topic[256];
    const char *dest = controller_dest(ag, out->to_eid, topic, sizeof topic);
    if (!dest)
        return USP_ENOENT;
    int rc;
    struct sim_e2e *e = ag->w->f->e2e.mode != USP_E2E_FORBID
                            ? agent_e2e(ag, out->to_eid, ag->e2e ? NULL : dest)
                            : NULL;
    if (e) {
        /* In the session when there is one (or one is required). */
        struct usp_e2e_io io = e2e_io(e);
        rc = usp_e2e_send_msg(e->s, out->payload, out->len, usp_tw_now(ag->w->tw.tw), &io);
        e2e_rearm(e);
    } else {
        rc = notify_send_plain(ag, dest, out, arena);
    }
    if (rc == 0) {
        ag->w->st.notifs_sent++;
        if (out->attempt)
            ag->w->st.notifs_retry++;
        if (out->msg && out->msg->body && out->msg->body->request &&
            out->msg->body->request->notify &&
            out->msg->body->request->notify->notification_case ==
                USP__NOTIFY__NOTIFICATION_EVENT &&
            !strcmp(out->msg->body->request->notify->event->event_name, "Boot!") &&
            !out->attempt && ++ag->w->st.boots_sent == ag->w->n)
            ag->w->st.boot_done_ms = (uv_hrtime() - ag->w->f->t0_ns) / 1000000 + 1;
    }
    return rc;
}

/* ---- The handlers' environment --------------------------------------------- */

static int64_t env_now(void *ctx, const struct usp_dm_agent *a)
{
    return usp_dm_agent_now(a);
}

static void job_fire(struct usp_tw_entry *e, uint64_t now_ms)
{
    struct sim_job *j = (struct sim_job *)e;
    struct sim_agent *ag = j->agent;
    for (struct sim_job **pp = &ag->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    j->fn(&ag->dm, &ag->w->env, j->arg);
    free(j);
}

static int env_schedule(void *ctx, struct usp_dm_agent *dm, uint32_t delay_ms, usp_timer_fn fn,
                        void *arg)
{
    struct sim_worker *w = ctx;
    struct sim_agent *ag = agent_of(dm);
    struct sim_job *j = malloc(sizeof *j);
    if (!j)
        return USP_ENOMEM;
    usp_tw_entry_init(&j->e, job_fire);
    j->agent = ag;
    j->fn = fn;
    j->arg = arg;
    j->next = ag->jobs;
    ag->jobs = j;
    usp_tw_add_in(w->tw.tw, &j->e, delay_ms);
    return 0;
}

/* Cancels the agent's pending async work: each job frees its argument. */
static void jobs_cancel(struct sim_agent *ag)
{
    while (ag->jobs) {
        struct sim_job *j = ag->jobs;
        ag->jobs = j->next;
        usp_tw_cancel(ag->w->tw.tw, &j->e);
        j->fn(NULL, &ag->w->env, j->arg);
        free(j);
    }
}

static void restart_fire(struct usp_tw_entry *e, uint64_t now_ms);

/* Parameters whose change makes the agent reconnect with the new values. */
static bool mtp_setting(const char *path)
{
    static const char *const watched[] = {
        "Device.MQTT.Client.1.BrokerAddress",
        "Device.MQTT.Client.1.BrokerPort",
        "Device.MQTT.Client.1.KeepAliveTime",
        "Device.MQTT.Client.1.ClientID",
        "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured",
        "Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic",
        NULL,
    };
    for (int i = 0; path && watched[i]; i++)
        if (!strcmp(path, watched[i]))
            return true;
    return false;
}

static void env_emit(void *ctx, struct usp_dm_agent *dm, const struct usp_dm_event_info *ev)
{
    struct sim_worker *w = ctx;
    struct sim_agent *ag = agent_of(dm);
    if (ev->kind == USP_EV_REBOOT || ev->kind == USP_EV_FACTORY_RESET) {
        if (ag->restart)
            return; /* one restart at a time */
        struct sim_restart *r = calloc(1, sizeof *r);
        if (!r)
            return;
        r->agent = ag;
        r->factory = ev->kind == USP_EV_FACTORY_RESET;
        snprintf(r->cause, sizeof r->cause, "%s",
                 r->factory ? "RemoteFactoryReset" : "RemoteReboot");
        snprintf(r->command_key, sizeof r->command_key, "%s",
                 ev->command_key ? ev->command_key : "");
        usp_tw_entry_init(&r->e, restart_fire);
        ag->restart = r;
        usp_tw_add_in(w->tw.tw, &r->e, RESTART_DELAY_MS);
        return;
    }
    usp_notify_event(w->notifier, dm, &ag->na, ev);
    if (ev->kind == USP_EV_VALUE_CHANGE && mtp_setting(ev->path) && !ag->restart) {
        struct sim_restart *r = calloc(1, sizeof *r);
        if (!r)
            return;
        r->agent = ag;
        r->reconnect_only = true;
        usp_tw_entry_init(&r->e, restart_fire);
        ag->restart = r;
        usp_tw_add_in(w->tw.tw, &r->e, RESTART_DELAY_MS);
    }
}

static void env_reply(void *ctx, struct usp_dm_agent *dm, const struct usp_agent_reply *r)
{
    struct sim_worker *w = ctx;
    uint64_t before = usp_notify_stats(w->notifier)->acked;
    usp_notify_reply(w->notifier, &agent_of(dm)->na, r);
    w->st.notifs_acked += usp_notify_stats(w->notifier)->acked - before;
}

/* ---- Receiving ------------------------------------------------------------- */

static void send_disconnect(struct sim_agent *ag, const UspRecord__Record *in, uint32_t code,
                            const char *reason, const char *dest)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__DisconnectRecord d = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = usp_version_supported(in->version) ? in->version : (char *)USP_VERSION_DEFAULT;
    rec.to_id = in->from_id;
    rec.from_id = ag->eid;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT;
    rec.disconnect = &d;
    d.reason = (char *)reason;
    d.reason_code = code;
    uint8_t *buf;
    size_t len;
    if (usp_record_encode(ag->w->arena, &rec, &buf, &len) == 0)
        send_record(ag, dest, buf, len);
}

static void on_record(struct usp_mtp_conn *c, const uint8_t *bytes, size_t len,
                      const struct usp_mtp_rx *mrx, void *user)
{
    struct sim_agent *ag = user;
    struct sim_worker *w = ag->w;
    w->st.msgs_in++;
    usp_arena_reset(w->arena);
    struct usp_rx rx;
    if (usp_rx_record(w->arena, bytes, len, ag->eid, &rx) != 0) {
        w->st.dropped++;
        return;
    }
    /* Point-to-point bindings answer on the connection itself. */
    const char *dest = mrx->reply_to.to ? mrx->reply_to.to : (w->f->p2p ? "" : NULL);
    if (rx.action == USP_RX_DROP) {
        w->st.dropped++;
        return;
    }
    if (rx.action == USP_RX_REPLY_ERROR) {
        uint8_t *out;
        size_t olen;
        if (dest && usp_rx_error_reply(w->arena, &rx, ag->eid, &out, &olen) == 0 &&
            send_record(ag, dest, out, olen) == 0)
            w->st.errors_sent++;
        else
            w->st.dropped++;
        return;
    }
    if (dest && e2e_record(ag, rx.rec)) {
        struct sim_e2e *e = agent_e2e(ag, rx.rec->from_id, dest);
        if (e) {
            struct usp_e2e_io io = e2e_io(e);
            usp_e2e_receive(e->s, rx.rec, usp_tw_now(w->tw.tw), &io);
            e2e_rearm(e);
            return;
        }
    }
    if (!rx.msg) {
        /* SessionMode Forbid (the default): R-E2E.6a answers a session
         * context with a Disconnect 7106; other record types need nothing. */
        if (rx.rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT && dest)
            send_disconnect(ag, rx.rec, USP_ERR_SESS_CONTEXT_NOT_ALLOWED,
                            "Session Context not allowed", dest);
        return;
    }
    Usp__Msg *resp = NULL;
    if (usp_agent_handle(&ag->dm, &w->env, rx.rec->from_id, rx.msg, w->arena, &resp) != 0) {
        w->st.dropped++;
        return;
    }
    w->st.requests++;
    if (!resp)
        return;
    if (!dest) {
        w->st.dropped++; /* no reply-to: nowhere to answer [R-MQTT.26a] */
        return;
    }
    if (resp->body && resp->body->msg_body_case == USP__BODY__MSG_BODY_ERROR)
        w->st.errors_sent++;
    const char *version = usp_version_supported(rx.rec->version) ? rx.rec->version
                          : w->f->usp_version                      ? w->f->usp_version
                                                                   : USP_VERSION_DEFAULT;
    send_msg(ag, rx.rec->from_id, version, dest, resp);
}

/* ---- Connection life ------------------------------------------------------- */

static int agent_connect(struct sim_agent *ag, bool boot);
static void reconnect_now(struct sim_agent *ag);
static bool broker_changed(const struct usp_dm_agent *dm, const char *host);
static void finish(struct sim_worker *w);

static void send_boot(struct sim_agent *ag, const char *cause, const char *command_key)
{
    struct usp_notify_boot b = {.cause = cause, .command_key = command_key};
    usp_notify_boot(ag->w->notifier, &ag->dm, &ag->na, &b);
}

static void on_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct sim_agent *ag = user;
    struct sim_worker *w = ag->w;
    bool was_up = ag->flags & AG_UP, was_down = ag->flags & AG_DOWN;
    ag->flags &= ~(AG_UP | AG_DOWN);
    if (was_up)
        w->st.connected--;
    if (was_down)
        w->st.reconnecting--;
    switch (ev->state) {
    case USP_MTP_UP:
        ag->flags |= AG_UP;
        w->st.connected++;
        if (!(ag->flags & AG_EVER_UP)) {
            ag->flags |= AG_EVER_UP;
            if (++w->st.ever_up == w->n)
                w->st.up_done_ms = (uv_hrtime() - w->f->t0_ns) / 1000000 + 1;
        }
        if (ag->flags & AG_BOOT_DUE) {
            ag->flags &= ~AG_BOOT_DUE;
            if (ag->restart) {
                struct sim_restart *r = ag->restart;
                ag->restart = NULL;
                send_boot(ag, r->cause, r->command_key);
                free(r);
            } else {
                send_boot(ag, w->boot_cause, "");
            }
        }
        break;
    case USP_MTP_DOWN:
        ag->flags |= AG_DOWN;
        w->st.reconnecting++;
        if (was_up)
            w->st.drops++;
        /* Why agents cannot connect, a few times per worker: the
         * counters alone do not say. */
        if (!(ag->flags & AG_EVER_UP) && ev->attempt == 1 && w->failures_shown <= FAILURES_SHOWN) {
            if (w->failures_shown++ < FAILURES_SHOWN)
                fprintf(stderr, "uspsim agents: %s: %s (%s); retrying in %.1f s\n", ag->eid,
                        ev->detail, usp_mtp_reason_name(ev->reason), ev->retry_ms / 1000.0);
            else
                fprintf(stderr, "uspsim agents: worker %u: more agents cannot connect; not "
                                "shown\n",
                        w->id);
        }
        break;
    case USP_MTP_CLOSED:
        if (w->stopping) {
            ag->flags |= AG_CLOSED;
            if (++w->closed >= w->closing)
                finish(w);
        } else if (ag->restart) {
            /* A restart closed it: come back as a freshly booted agent, or
             * just reconnect with the new MTP settings. */
            usp_mtp_conn_free(ag->conn);
            ag->conn = NULL;
            reconnect_now(ag);
        }
        break;
    default:
        break;
    }
}

static const struct usp_mtp_callbacks agent_cbs = {.state = on_state, .record = on_record};

/* The agent's MTP settings come from its data model (the command line
 * filled the profile with them; a controller may change them at run time):
 * Device.MQTT.Client.1 for the broker, keep alive and client ID,
 * Device.LocalAgent.MTP.1.MQTT for its own topic and Controller.1 for the
 * controller it reports to. Unset values fall back to the command line. */
static int agent_connect_other(struct sim_agent *ag, bool boot);

/* The agent's TLS files: the fleet's templates expanded for it. */
static int agent_tls(struct sim_agent *ag, struct usp_mtp_config *cfg, char *cert, char *key,
                     size_t len)
{
    const struct sim_fleet *f = ag->w->f;
    cfg->tls = f->tls;
    if (!f->tls.cert_file)
        return 0;
    uint64_t idx = ag->dm.index;
    if (sim_template_expand(f->tls.cert_file, idx, ag->eid, cert, len) != 0 ||
        sim_template_expand(f->tls.key_file, idx, ag->eid, key, len) != 0) {
        fprintf(stderr, "uspsim agents: %s: certificate file name too long\n", ag->eid);
        return -1;
    }
    cfg->tls.cert_file = cert;
    cfg->tls.key_file = key;
    return 0;
}

/* Settings of every binding but MQTT come from the command line: the
 * broker (STOMP) or the controller's URL (point to point), the agent's own
 * destination, keep-alive as heart-beats or pings. */
static void other_cfg(struct sim_agent *ag, struct usp_mtp_config *cfg, char *dest, size_t dlen,
                      char *ctl_eid, size_t clen)
{
    const struct sim_fleet *f = ag->w->f;
    uint64_t idx = ag->dm.index;
    usp_mtp_config_init(cfg);
    cfg->role = USP_MTP_AGENT;
    cfg->eid = ag->eid;
    cfg->usp_version = f->usp_version;
    cfg->keepalive_s = f->keepalive;
    if (f->max_record)
        cfg->max_record = f->max_record;
    dm_read(&ag->dm, "Device.LocalAgent.Controller.1.", "EndpointID", ctl_eid, clen);
    cfg->peer_eid = ctl_eid[0] ? ctl_eid : f->controller_id;
    if (!strcmp(f->binding, "stomp")) {
        if (f->agent_topic ? sim_template_expand(f->agent_topic, idx, ag->eid, dest, dlen) != 0
                           : usp_mtp_stomp_dest(USP_MTP_AGENT, ag->eid, dest, dlen) != 0)
            dest[0] = 0;
        cfg->stomp.destination = dest;
        cfg->stomp.enable_heartbeats = f->keepalive > 0;
        cfg->stomp.outgoing_heartbeat_ms = cfg->stomp.incoming_heartbeat_ms = f->keepalive * 1000;
        cfg->keepalive_s = 0;
        cfg->peer_dest = f->controller_topic;
    }
}

/* CoAP: the agent's own resource on its worker's server (the --listen
 * port plus the worker's number), and the controller's resource when the
 * URL names none. */
static int coap_urls(struct sim_agent *ag, const char *ctl_url, const char *ctl_eid, char *local,
                     char *peer, size_t len)
{
    struct sim_worker *w = ag->w;
    struct usp_mtp_url u;
    char res[600];
    if (usp_mtp_url_parse(w->f->listen, &u, NULL, 0) != 0)
        return USP_EINVAL;
    usp_mtp_coap_resource_path(ag->eid, res, sizeof res);
    int n = snprintf(local, len, u.host_kind == USP_MTP_HOST_IPV6 ? "%s://[%s]:%u%s" : "%s://%s:%u%s",
                     u.scheme, u.host, (unsigned)(u.port + w->id), res);
    if (n < 0 || (size_t)n >= len || usp_mtp_url_parse(ctl_url, &u, NULL, 0) != 0)
        return USP_EINVAL;
    if (u.path[0] && strcmp(u.path, "/")) {
        snprintf(peer, len, "%s", ctl_url);
        return 0;
    }
    usp_mtp_coap_resource_path(ctl_eid, res, sizeof res);
    n = snprintf(peer, len, u.host_kind == USP_MTP_HOST_IPV6 ? "%s://[%s]:%u%s" : "%s://%s:%u%s",
                 u.scheme, u.host, (unsigned)u.port, res);
    return n < 0 || (size_t)n >= len ? USP_EINVAL : 0;
}

static int agent_connect_other(struct sim_agent *ag, bool boot)
{
    struct sim_worker *w = ag->w;
    const struct sim_fleet *f = w->f;
    struct usp_mtp_config cfg;
    char dest[256], ctl_eid[256], cert[512], key[512], local[700], peer[700];
    other_cfg(ag, &cfg, dest, sizeof dest, ctl_eid, sizeof ctl_eid);
    cfg.url = f->brokers[ag->dm.index % f->nbrokers];
    if (!strcmp(f->binding, "coap")) {
        if (coap_urls(ag, cfg.url, cfg.peer_eid, local, peer, sizeof local) != 0) {
            fprintf(stderr, "uspsim agents: %s: cannot make its CoAP URLs\n", ag->eid);
            return USP_EINVAL;
        }
        cfg.url = peer;
        cfg.coap.local_url = local;
    }
    if (f->p2p)
        cfg.peer_dest = cfg.url;
    if (strcmp(f->binding, "uds") != 0)
        cfg.bind_address = f->nbind ? f->bind_addrs[ag->dm.index % f->nbind] : NULL;
    if (agent_tls(ag, &cfg, cert, key, sizeof cert) != 0)
        return USP_EINVAL;
    char why[256];
    int rc = usp_mtp_conn_new(w->mtp, &cfg, &agent_cbs, ag, &ag->conn, why, sizeof why);
    if (rc) {
        fprintf(stderr, "uspsim agents: %s: %s\n", ag->eid, why);
        return rc;
    }
    if (boot)
        ag->flags |= AG_BOOT_DUE;
    return usp_mtp_open(ag->conn);
}

/* ---- Agents that accept their controller (--listen) ------------------------- */

static void on_accepted_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct sim_agent *ag = user;
    if (ag->conn != c) {
        /* replaced by a newer session: it only has to go */
        if (ev->state == USP_MTP_CLOSED)
            usp_mtp_conn_free(c);
        return;
    }
    on_state(c, ev, user);
    /* on_state let a restart's close go already (ag->conn NULL then) */
    if (ev->state == USP_MTP_CLOSED && !ag->w->stopping && ag->conn == c) {
        usp_mtp_conn_free(c);
        ag->conn = NULL;
    }
}

static const struct usp_mtp_callbacks accepted_cbs = {.state = on_accepted_state,
                                                      .record = on_record};

static void on_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                      const struct usp_mtp_peer *peer, void *user)
{
    struct sim_agent *ag = user;
    if (ag->conn) {
        usp_mtp_close(ag->conn, 0, "a newer session from the controller");
    }
    ag->conn = c;
    usp_mtp_conn_set_callbacks(c, &accepted_cbs, ag);
}

static const struct usp_mtp_listener_callbacks agent_listener_cbs = {.accept = on_accept};

static int agent_listen(struct sim_agent *ag, uint64_t slot)
{
    struct sim_worker *w = ag->w;
    const struct sim_fleet *f = w->f;
    struct usp_mtp_config cfg;
    char dest[256], ctl_eid[256], url[512], cert[512], key[512];
    other_cfg(ag, &cfg, dest, sizeof dest, ctl_eid, sizeof ctl_eid);
    if (sim_template_expand(f->listen, ag->dm.index, ag->eid, url, sizeof url) != 0)
        return USP_EINVAL;
    cfg.url = url;
    /* The controller names itself when it connects. */
    cfg.peer_eid = cfg.peer_dest = NULL;
    if (agent_tls(ag, &cfg, cert, key, sizeof cert) != 0)
        return USP_EINVAL;
    char why[256];
    int rc = usp_mtp_listen(w->mtp, &cfg, &agent_listener_cbs, ag, &w->listeners[slot], why,
                            sizeof why);
    if (rc) {
        fprintf(stderr, "uspsim agents: %s: --listen %s: %s\n", ag->eid, url, why);
        return rc;
    }
    /* Boot! goes to the controller once it has connected. */
    ag->flags |= AG_BOOT_DUE;
    return 0;
}

static int agent_connect(struct sim_agent *ag, bool boot)
{
    struct sim_worker *w = ag->w;
    const struct sim_fleet *f = w->f;
    if (strcmp(f->binding, "mqtt") != 0)
        return agent_connect_other(ag, boot);
    const struct usp_dm_agent *dm = &ag->dm;
    uint64_t idx = dm->index;
    const char *cl = "Device.MQTT.Client.1.";
    char topic[256], ctl_eid[256], ctl_topic[256], client_id[256], host[256], url[300];
    dm_read(dm, "Device.LocalAgent.MTP.1.MQTT.", "ResponseTopicConfigured", topic, sizeof topic);
    if (!topic[0] && sim_template_expand(f->agent_topic, idx, ag->eid, topic, sizeof topic) != 0)
        return USP_EINVAL;
    dm_read(dm, "Device.LocalAgent.Controller.1.", "EndpointID", ctl_eid, sizeof ctl_eid);
    dm_read(dm, "Device.LocalAgent.Controller.1.MTP.1.MQTT.", "Topic", ctl_topic, sizeof ctl_topic);
    dm_read(dm, cl, "ClientID", client_id, sizeof client_id);
    dm_read(dm, cl, "BrokerAddress", host, sizeof host);
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.role = USP_MTP_AGENT;
    cfg.eid = ag->eid;
    cfg.url = f->brokers[idx % f->nbrokers];
    if (broker_changed(dm, host)) { /* a controller moved the agent to another broker */
        uint32_t port = dm_read_u32(dm, cl, "BrokerPort", 1883);
        snprintf(url, sizeof url, strchr(host, ':') ? "mqtt://[%s]:%u" : "mqtt://%s:%u", host,
                 (unsigned)port);
        cfg.url = url;
    }
    cfg.bind_address = f->nbind ? f->bind_addrs[idx % f->nbind] : NULL;
    cfg.peer_eid = ctl_eid[0] ? ctl_eid : f->controller_id;
    cfg.peer_dest = ctl_topic[0] ? ctl_topic : f->controller_topic;
    cfg.keepalive_s = dm_read_u32(dm, cl, "KeepAliveTime", f->keepalive);
    /* The reconnect back-off comes from the agent's MQTT client [R-MQTT.10]. */
    cfg.retry_time_s = dm_read_u32(dm, cl, "ConnectRetryTime", cfg.retry_time_s);
    cfg.retry_multiplier =
        dm_read_u32(dm, cl, "ConnectRetryIntervalMultiplier", cfg.retry_multiplier);
    cfg.retry_max_s = dm_read_u32(dm, cl, "ConnectRetryMaxInterval", cfg.retry_max_s);
    if (cfg.retry_time_s < 1)
        cfg.retry_time_s = 1;
    if (cfg.retry_multiplier < 1000)
        cfg.retry_multiplier = 1000;
    if (cfg.retry_max_s < 1)
        cfg.retry_max_s = 1;
    cfg.mqtt.version = f->mqtt_version;
    cfg.mqtt.topic = topic;
    cfg.mqtt.client_id = client_id[0] ? client_id : NULL;
    cfg.mqtt.qos = f->qos;
    char cert[512], key[512];
    if (agent_tls(ag, &cfg, cert, key, sizeof cert) != 0)
        return USP_EINVAL;
    char why[256];
    int rc = usp_mtp_conn_new(w->mtp, &cfg, &agent_cbs, ag, &ag->conn, why, sizeof why);
    if (rc) {
        fprintf(stderr, "uspsim agents: %s: %s\n", ag->eid, why);
        return rc;
    }
    if (boot)
        ag->flags |= AG_BOOT_DUE;
    return usp_mtp_open(ag->conn);
}

/* Whether the broker in the agent's data model differs from its profile's,
 * i.e. a controller changed it: the command line's brokers (spread over the
 * agents by index) apply otherwise. */
static bool broker_changed(const struct usp_dm_agent *dm, const char *host)
{
    const struct usp_profile *p = usp_dm_model_profile(dm->model);
    struct usp_gen_ctx gc;
    usp_dm_agent_gen_ctx(dm, &gc);
    char pv[256], port[32], pport[32];
    if (!host[0])
        return false;
    if (!p || usp_profile_get(p, "Device.MQTT.Client.1.BrokerAddress", &gc, pv, sizeof pv) != 0)
        pv[0] = 0;
    if (strcmp(pv, host))
        return true;
    dm_read(dm, "Device.MQTT.Client.1.", "BrokerPort", port, sizeof port);
    if (!p || usp_profile_get(p, "Device.MQTT.Client.1.BrokerPort", &gc, pport, sizeof pport) != 0)
        pport[0] = 0;
    return strcmp(port, pport) != 0;
}

/* After a restart's close: a reboot comes back with Boot!, a change of MTP
 * settings only reconnects. */
static void reconnect_now(struct sim_agent *ag)
{
    struct sim_restart *r = ag->restart;
    if (ag->w->f->listen && strcmp(ag->w->f->binding, "coap") != 0) {
        /* It accepts its controller: Boot! goes once the controller is back. */
        if (!(r && r->reconnect_only))
            ag->flags |= AG_BOOT_DUE;
        ag->restart = NULL;
        free(r);
        return;
    }
    if (r && r->reconnect_only) {
        ag->restart = NULL;
        free(r);
        agent_connect(ag, false);
    } else {
        agent_connect(ag, true);
    }
}

static int agent_start(struct sim_worker *w, struct sim_agent *ag, uint64_t index)
{
    char eid[256];
    if (sim_template_expand(w->f->eid_template, index, NULL, eid, sizeof eid) != 0)
        return USP_EINVAL;
    ag->eid = strdup(eid);
    if (!ag->eid)
        return USP_ENOMEM;
    ag->w = w;
    usp_dm_agent_init(&ag->dm, w->f->model, index, ag->eid, (int64_t)time(NULL));
    ag->flags |= AG_STARTED;
    w->st.started++;
    if (w->f->listen && strcmp(w->f->binding, "coap") != 0)
        return agent_listen(ag, (uint64_t)(ag - w->agents));
    return agent_connect(ag, true);
}

static void restart_fire(struct usp_tw_entry *e, uint64_t now_ms)
{
    struct sim_restart *r = (struct sim_restart *)e;
    struct sim_agent *ag = r->agent;
    if (r->reconnect_only) {
        if (!ag->conn || usp_mtp_close(ag->conn, 0, "MTP settings changed") != 0) {
            usp_mtp_conn_free(ag->conn);
            ag->conn = NULL;
            reconnect_now(ag);
        }
        return;
    }
    /* What goes away with a restart: pending work, pending notifications,
     * the E2E session. */
    jobs_cancel(ag);
    usp_notify_agent_cleanup(ag->w->notifier, &ag->na);
    agent_e2e_free(ag);
    int64_t now = usp_dm_agent_now(&ag->dm);
    if (r->factory)
        usp_dm_agent_factory_reset(&ag->dm, now);
    else
        usp_dm_agent_reboot(&ag->dm, now);
    if (!ag->conn || usp_mtp_close(ag->conn, 0, r->factory ? "factory reset" : "reboot") != 0) {
        usp_mtp_conn_free(ag->conn);
        ag->conn = NULL;
        reconnect_now(ag);
    }
}

/* ---- Timers: ramp, stats, stop --------------------------------------------- */

static void write_stats(struct sim_worker *w, bool final)
{
    w->st.worker = w->id;
    w->st.final = final;
    w->st.agents = w->n;
    if (!final) /* the final report keeps what was pending before the cleanup */
        w->st.notifs_pending = usp_notify_stats(w->notifier)->pending;
    w->st.mem_kb = sim_pss_kb();
    w->st.e2e_sessions = w->e2e_stats.opened + w->e2e_stats.accepted;
    w->st.e2e_retransmitted = w->e2e_stats.retransmitted;
    w->st.e2e_reassembled = w->e2e_stats.reassembled;
    w->st.e2e_segmented = w->e2e_stats.segmented;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        w->st.cpu_ms = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    struct sim_stats copy = w->st;
    ssize_t r;
    do
        r = write(w->stats_fd, &copy, sizeof copy);
    while (r < 0 && errno == EINTR);
}

static void on_ramp(uv_timer_t *t)
{
    struct sim_worker *w = t->data;
    if (w->stopping)
        return;
    uint64_t target = w->n;
    if (w->rate > 0) {
        double secs = (double)(uv_now(&w->loop) - w->t0) / 1000.0;
        double want = w->rate * secs + 1;
        target = want < (double)w->n ? (uint64_t)want : w->n;
    }
    for (unsigned k = 0; w->next_start < target && k < MAX_STARTS_PER_TICK; k++, w->next_start++) {
        struct sim_agent *ag = &w->agents[w->next_start];
        agent_start(w, ag, w->first + w->next_start);
    }
    if (w->next_start >= w->n)
        uv_timer_stop(t);
}

static void on_stats(uv_timer_t *t)
{
    write_stats(t->data, false);
}

static void finish(struct sim_worker *w)
{
    if (w->finished)
        return;
    w->finished = true;
    uv_timer_stop(&w->ramp_timer);
    uv_timer_stop(&w->stats_timer);
    uv_timer_stop(&w->stop_timer);
    uv_poll_stop(&w->ctl_poll);
    w->st.notifs_pending = usp_notify_stats(w->notifier)->pending;
    for (uint64_t i = 0; i < w->n; i++) {
        struct sim_agent *ag = &w->agents[i];
        if (!(ag->flags & AG_STARTED))
            continue;
        jobs_cancel(ag);
        if (ag->restart) {
            usp_tw_cancel(w->tw.tw, &ag->restart->e);
            free(ag->restart);
            ag->restart = NULL;
        }
        usp_notify_agent_cleanup(w->notifier, &ag->na);
        agent_e2e_free(ag);
        usp_mtp_conn_free(ag->conn);
        ag->conn = NULL;
        if (w->listeners) {
            usp_mtp_listener_close(w->listeners[i]);
            w->listeners[i] = NULL;
        }
    }
    write_stats(w, true);
    uv_stop(&w->loop);
}

static void on_stop_timeout(uv_timer_t *t)
{
    finish(t->data);
}

static void begin_stop(struct sim_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    uv_timer_stop(&w->ramp_timer);
    uint64_t closing = 0;
    for (uint64_t i = 0; i < w->n; i++) {
        struct sim_agent *ag = &w->agents[i];
        if (ag->conn && usp_mtp_close(ag->conn, 0, "agent shutting down") == 0)
            closing++;
        else if (ag->flags & AG_STARTED)
            ag->flags |= AG_CLOSED;
    }
    w->closed = 0;
    w->closing = closing;
    if (closing == 0)
        finish(w);
    else
        uv_timer_start(&w->stop_timer, on_stop_timeout, STOP_TIMEOUT_MS, 0);
}

static void on_ctl(uv_poll_t *p, int status, int events)
{
    struct sim_worker *w = p->data;
    char c;
    (void)!read(w->ctl_fd, &c, 1);
    uv_poll_stop(p);
    begin_stop(w);
}

/* ---- Entry ------------------------------------------------------------------ */

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int sim_worker_main(const struct sim_fleet *f, unsigned worker, uint64_t first, uint64_t n,
                    int stats_fd, int ctl_fd)
{
    struct sim_worker *w = calloc(1, sizeof *w);
    if (!w)
        return 1;
    signal(SIGINT, SIG_IGN); /* the parent decides when we stop */
    signal(SIGPIPE, SIG_IGN);
    w->f = f;
    w->id = worker;
    w->first = first;
    w->n = n;
    w->stats_fd = stats_fd;
    w->ctl_fd = ctl_fd;
    w->rate = f->ramp > 0 ? f->ramp / f->workers : 0;
    snprintf(w->boot_cause, sizeof w->boot_cause, "LocalReboot");
    int status = 1;
    if (uv_loop_init(&w->loop) != 0)
        goto out_free;
    /* One timer wheel for everything on this loop: MTP keepalives and
     * retries, notifications, async commands, restarts. */
    if (usp_tw_uv_init(&w->tw, &w->loop) != 0)
        goto out_loop;
    struct usp_mtp_ctx_opts mo = {.max_connecting = f->max_connecting, .wheel = w->tw.tw};
    w->mtp = usp_mtp_ctx_new(&w->loop, &mo);
    w->arena = usp_arena_new(64 * 1024);
    if (f->e2e.mode != USP_E2E_FORBID && !(w->e2e_arena = usp_arena_new(64 * 1024)))
        goto out_loop;
    w->agents = calloc(n ? n : 1, sizeof *w->agents);
    if (!w->mtp || !w->arena || !w->agents)
        goto out_loop;
    if (f->listen && strcmp(f->binding, "coap") != 0 &&
        !(w->listeners = calloc(n ? n : 1, sizeof *w->listeners)))
        goto out_loop;
    w->env = (struct usp_agent_env){
        .ctx = w,
        .now = env_now,
        .emit = env_emit,
        .schedule = env_schedule,
        .reply = env_reply,
        .versions = f->versions,
    };
    struct usp_notify_cfg nc = {
        .tw = w->tw.tw,
        .send = notify_send,
        .ctx = w,
        .seed = first * 2654435761u + worker,
        .versions = f->versions,
    };
    if (usp_notifier_new(&nc, &w->notifier) != 0)
        goto out_loop;

    uv_timer_init(&w->loop, &w->ramp_timer);
    uv_timer_init(&w->loop, &w->stats_timer);
    uv_timer_init(&w->loop, &w->stop_timer);
    w->ramp_timer.data = w->stats_timer.data = w->stop_timer.data = w;
    uv_poll_init(&w->loop, &w->ctl_poll, ctl_fd);
    w->ctl_poll.data = w;
    uv_poll_start(&w->ctl_poll, UV_READABLE, on_ctl);

    w->t0 = uv_now(&w->loop);
    uv_timer_start(&w->ramp_timer, on_ramp, 0, RAMP_TICK_MS);
    uv_timer_start(&w->stats_timer, on_stats, 1000, 1000);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    status = 0;

    for (uint64_t i = 0; i < n; i++) {
        usp_dm_agent_cleanup(&w->agents[i].dm);
        free(w->agents[i].eid);
    }
    usp_notifier_free(w->notifier);
    w->notifier = NULL;
out_loop:
    /* The MTP context uses the wheel: free it first, then the wheel. */
    if (w->mtp)
        usp_mtp_ctx_free(w->mtp);
    w->mtp = NULL;
    if (w->notifier)
        usp_notifier_free(w->notifier);
    if (w->tw.tw)
        usp_tw_uv_close(&w->tw, NULL);
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    usp_arena_free(w->arena);
    usp_arena_free(w->e2e_arena);
    free(w->e2e_held);
    free(w->agents);
    free(w->listeners);
    uv_loop_close(&w->loop);
out_free:
    free(w);
    return status;
}
