/* The controller's core (see ctl.h): one MQTT connection, a fixed pool of
 * request slots tracked by msg_id, the registry of agents, version
 * agreement, and the answers a Controller owes its agents.
 *
 * Requests: a slot's msg_id is "<prefix>-<slot>-<gen>" (hex), so a response
 * finds its slot without a search and a late or foreign one is told apart
 * by the prefix and the generation. Each slot embeds its timer-wheel entry:
 * sending, matching and timing out allocate nothing.
 *
 * Agents: known from their MQTTConnectRecord (which also says the topic to
 * reach them at), from any record they send (its reply-to), or by name when
 * a request goes to them (the --agent-topic template). On first contact the
 * controller asks GetSupportedProtocol in a 1.0 Record; later records carry
 * the highest version both speak. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "fleet.h"
#include "usp/codec.h"
#include "usp/errors.h"
#include "usp/reqlang.h"
#include "usp/tls.h"
#include "mtp_opts.h"

#define CLOSE_GRACE_MS 3000
#define AGENTS_CAP0    1024

static const char *const versions[] = {"1.0", "1.1", "1.2", "1.3", "1.4"};

const char *ctl_version_str(uint8_t minor)
{
    return minor <= USP_VERSION_MAX_MINOR ? versions[minor] : "-";
}

uint8_t ctl_version_pick(const char *list)
{
    uint8_t best = CTL_NO_VERSION;
    if (!list)
        return best;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char item[16];
        /* Tolerate blanks around the items. */
        while (n && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0 && n < sizeof item) {
            memcpy(item, p, n);
            item[n] = 0;
            unsigned major, minor;
            if (usp_version_parse(item, &major, &minor) == 0 && major == 1 &&
                minor <= USP_VERSION_MAX_MINOR && (best == CTL_NO_VERSION || minor > best))
                best = (uint8_t)minor;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return best;
}

bool ctl_glob(const char *pat, const char *s)
{
    return fnmatch(pat, s, 0) == 0;
}

/* ---- Agents ---------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int tab_grow(struct sim_ctl *c)
{
    size_t ncap = c->cap ? c->cap * 2 : AGENTS_CAP0;
    struct ctl_agent **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return USP_ENOMEM;
    for (size_t i = 0; i < c->cap; i++) {
        struct ctl_agent *a = c->tab[i];
        if (!a)
            continue;
        size_t k = hash_str(a->eid) & (ncap - 1);
        while (nt[k])
            k = (k + 1) & (ncap - 1);
        nt[k] = a;
    }
    free(c->tab);
    c->tab = nt;
    c->cap = ncap;
    return 0;
}

static int set_dest(struct ctl_agent *a, const char *dest)
{
    if (a->dest && !strcmp(a->dest, dest))
        return 0;
    char *d = strdup(dest);
    if (!d)
        return USP_ENOMEM;
    free(a->dest);
    a->dest = d;
    return 0;
}

struct ctl_agent *ctl_agent_get(struct sim_ctl *c, const char *eid, bool create, uint64_t index)
{
    size_t k = 0;
    if (c->cap) {
        k = hash_str(eid) & (c->cap - 1);
        for (; c->tab[k]; k = (k + 1) & (c->cap - 1))
            if (!strcmp(c->tab[k]->eid, eid)) {
                struct ctl_agent *a = c->tab[k];
                if (a->index == CTL_NO_INDEX)
                    a->index = index;
                return a;
            }
    }
    if (!create)
        return NULL;
    if ((c->nagents + 1) * 10 > c->cap * 7) {
        if (tab_grow(c) != 0)
            return NULL;
        k = hash_str(eid) & (c->cap - 1);
        while (c->tab[k])
            k = (k + 1) & (c->cap - 1);
    }
    size_t n = strlen(eid);
    struct ctl_agent *a = calloc(1, sizeof *a + n + 1);
    if (!a)
        return NULL;
    a->eid = (char *)(a + 1);
    memcpy(a->eid, eid, n + 1);
    a->index = index;
    a->minor = CTL_NO_VERSION;
    char topic[512];
    /* Where it is reached until it says otherwise. A template with {n}
     * needs the index: without one the agent has no topic yet. */
    const char *tpl = c->conf->agent_topic;
    if (!tpl) {
        if (usp_mtp_stomp_dest(USP_MTP_AGENT, eid, topic, sizeof topic) == 0)
            set_dest(a, topic);
    } else if (sim_template_expand(tpl, index == CTL_NO_INDEX ? 0 : index, eid, topic,
                                   sizeof topic) == 0 &&
               (index != CTL_NO_INDEX || !strstr(tpl, "{n"))) {
        set_dest(a, topic);
    }
    c->tab[k] = a;
    c->nagents++;
    return a;
}

void ctl_agents_each(struct sim_ctl *c, void (*fn)(struct ctl_agent *a, void *arg), void *arg)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab[i])
            fn(c->tab[i], arg);
}

static void agent_free(struct ctl_agent *a)
{
    if (a->onboard) {
        free(a->onboard->oui);
        free(a->onboard->product_class);
        free(a->onboard->serial_number);
        free(a->onboard->versions);
        free(a->onboard);
    }
    free(a->dest);
    free(a);
}

/* ---- Request slots ----------------------------------------------------------- */

/* Slots are handed out in order the first time, so a small run touches
 * only the memory it uses. */
struct ctl_req *ctl_req_alloc(struct sim_ctl *c)
{
    struct ctl_req *r = c->free_reqs;
    if (r) {
        c->free_reqs = r->next;
    } else if (c->next_unused < c->nreqs) {
        r = &c->reqs[c->next_unused++];
        r->ctl = c;
    } else {
        c->st.pool_full++;
        return NULL;
    }
    r->gen++;
    r->next = NULL;
    r->agent = NULL;
    r->msg = NULL;
    r->tx_bytes = 0;
    r->kind = 0;
    r->no_resp = false;
    r->t0_ns = uv_hrtime();
    c->in_flight++;
    return r;
}

static void req_release(struct sim_ctl *c, struct ctl_req *r)
{
    r->state = CR_FREE;
    r->next = c->free_reqs;
    c->free_reqs = r;
    c->in_flight--;
}

static void waiting_remove(struct ctl_req *r)
{
    for (struct ctl_req **pp = &r->agent->waiting; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            r->next = NULL;
            return;
        }
}

static void own_done(struct sim_ctl *c, struct ctl_req *r, const struct ctl_result *res);

/* Ends a request: the mode hears of it, then the slot is free again. */
static void finish(struct sim_ctl *c, struct ctl_req *r, const struct ctl_result *res)
{
    usp_tw_cancel(c->tw.tw, &r->tmo);
    if (r->state == CR_WAITING)
        waiting_remove(r);
    r->state = CR_FREE; /* not findable while the callback runs */
    switch (res->outcome) {
    case CTL_RESPONSE:
        c->st.responses++;
        break;
    case CTL_ERROR:
        c->st.errors++;
        break;
    case CTL_TIMEOUT:
        c->st.timeouts++;
        break;
    case CTL_FAILED:
        c->st.failed++;
        break;
    case CTL_SENT:
        break;
    }
    if (r->kind >= CTL_KIND_INTERNAL)
        own_done(c, r, res);
    else if (c->on_done)
        c->on_done(c, r, res);
    req_release(c, r);
}

static void fail_req(struct sim_ctl *c, struct ctl_req *r, enum ctl_outcome o, const char *why)
{
    struct ctl_result res = {.outcome = o, .now_ns = uv_hrtime(), .why = why};
    finish(c, r, &res);
}

static void on_timeout(struct usp_tw_entry *e, uint64_t now_ms)
{
    struct ctl_req *r = (struct ctl_req *)e; /* tmo is the first member */
    const char *why;
    if (!r->agent->last_seen_ms)
        why = "nothing ever came from this agent: is it connected to this broker, with this "
              "MQTT version, at the topic --agent-topic gives?";
    else if (r->state == CR_WAITING)
        why = "no answer to GetSupportedProtocol either";
    else
        why = "no response";
    fail_req(r->ctl, r, CTL_TIMEOUT, why);
}

static bool is_gsp(const Usp__Msg *m)
{
    return m && m->body && m->body->msg_body_case == USP__BODY__MSG_BODY_REQUEST &&
           m->body->request &&
           m->body->request->req_type_case == USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL;
}

/* Whether the agent answers `m`: every request, except an Operate with
 * send_resp false [R-OPR.4]; never a response (a NotifyResp we send). */
static bool wants_response(const Usp__Msg *m)
{
    if (!m->body || m->body->msg_body_case != USP__BODY__MSG_BODY_REQUEST || !m->body->request)
        return false;
    const Usp__Request *q = m->body->request;
    if (q->req_type_case == USP__REQUEST__REQ_TYPE_OPERATE && q->operate && !q->operate->send_resp)
        return false;
    return true;
}

static char *put_hex(char *p, uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[8];
    int n = 0;
    do {
        tmp[n++] = hex[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static void make_msg_id(const struct sim_ctl *c, const struct ctl_req *r, char *buf)
{
    char *p = buf;
    memcpy(p, c->id_prefix, c->id_prefix_len);
    p += c->id_prefix_len;
    *p++ = '-';
    p = put_hex(p, (uint32_t)(r - c->reqs));
    *p++ = '-';
    p = put_hex(p, r->gen);
    *p = 0;
}

static bool get_hex(const char **pp, uint32_t *out)
{
    const char *p = *pp;
    uint32_t v = 0;
    int n = 0;
    for (; n < 8; n++, p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else
            break;
        v = v << 4 | (uint32_t)d;
    }
    if (n == 0)
        return false;
    *pp = p;
    *out = v;
    return true;
}

/* The request a msg_id names, or NULL (someone else's, or late). */
static struct ctl_req *req_by_id(struct sim_ctl *c, const char *id)
{
    if (strncmp(id, c->id_prefix, c->id_prefix_len) || id[c->id_prefix_len] != '-')
        return NULL;
    const char *p = id + c->id_prefix_len + 1;
    uint32_t slot, gen;
    if (!get_hex(&p, &slot) || *p++ != '-' || !get_hex(&p, &gen) || *p)
        return NULL;
    if (slot >= c->nreqs)
        return NULL;
    struct ctl_req *r = &c->reqs[slot];
    return r->gen == gen && (r->state == CR_SENT || r->state == CR_WAITING) ? r : NULL;
}

/* ---- Sending ---------------------------------------------------------------- */

/* Hands Record bytes to the agent's connection. */
static int send_bytes(struct sim_ctl *c, const char *dest, const char *to_eid, const uint8_t *buf,
                      size_t len)
{
    int rc;
    struct usp_mtp_conn *conn = c->conn;
    if (c->conf->p2p) {
        /* Point to point: the agent's own session, else the only one. */
        struct ctl_agent *a = ctl_agent_get(c, to_eid, false, CTL_NO_INDEX);
        if (a && a->conn)
            conn = a->conn;
        else if (c->listener || c->nxconns)
            conn = NULL;
    }
    if (!conn)
        return USP_ENOENT;
    struct usp_mtp_dest d = {.to = dest};
    rc = usp_mtp_send(conn, &d, buf, len);
    if (rc == 0)
        c->st.records_out++;
    return rc;
}

/* ---- E2E sessions (R-E2E.*) ---------------------------------------------------- */

struct ctl_e2e {
    struct usp_tw_entry tick;
    struct sim_ctl *c;
    struct ctl_agent *a;
    struct usp_e2e_session *s;
};

static void dispatch_msg(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__Record *rec,
                         const Usp__Msg *msg, const char *reply_to, size_t len);

static int e2e_send(void *ctx, const uint8_t *rec, size_t len)
{
    struct ctl_e2e *e = ctx;
    return send_bytes(e->c, e->a->dest, e->a->eid, rec, len);
}

/* The Record that carried what is being delivered (valid during receive). */
static const UspRecord__Record *e2e_rx_rec;

static int e2e_deliver(void *ctx, const uint8_t *bytes, size_t len, bool in_session)
{
    struct ctl_e2e *e = ctx;
    struct sim_ctl *c = e->c;
    usp_arena_reset(c->e2e_arena);
    Usp__Msg *m;
    struct usp_decode_err err;
    if (usp_msg_decode(c->e2e_arena, bytes, len, &m, &err) != 0) {
        c->st.dropped++;
        return USP_EPROTO;
    }
    dispatch_msg(c, e->a, e2e_rx_rec, m, NULL, len);
    return 0;
}

static struct usp_e2e_io e2e_io(struct ctl_e2e *e)
{
    return (struct usp_e2e_io){.send = e2e_send, .deliver = e2e_deliver, .ctx = e};
}

static void e2e_rearm(struct ctl_e2e *e)
{
    uint64_t d = usp_e2e_next_deadline(e->s);
    if (d == UINT64_MAX)
        usp_tw_cancel(e->c->tw.tw, &e->tick);
    else
        usp_tw_add(e->c->tw.tw, &e->tick, d);
}

static void e2e_fire(struct usp_tw_entry *t, uint64_t now_ms)
{
    struct ctl_e2e *e = (struct ctl_e2e *)t;
    struct usp_e2e_io io = e2e_io(e);
    usp_e2e_tick(e->s, now_ms, &io);
    e2e_rearm(e);
}

static struct ctl_e2e *agent_e2e(struct sim_ctl *c, struct ctl_agent *a)
{
    if (a->e2e)
        return a->e2e;
    struct ctl_e2e *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->c = c;
    e->a = a;
    usp_tw_entry_init(&e->tick, e2e_fire);
    if (usp_e2e_new(&c->conf->e2e, USP_E2E_CONTROLLER, c->conf->eid, a->eid, uv_hrtime(),
                    &c->e2e_stats, &e->s) != 0) {
        free(e);
        return NULL;
    }
    a->e2e = e;
    return e;
}

static void agent_e2e_free(struct sim_ctl *c, struct ctl_agent *a)
{
    if (!a->e2e)
        return;
    usp_tw_cancel(c->tw.tw, &a->e2e->tick);
    usp_e2e_free(a->e2e->s);
    free(a->e2e);
    a->e2e = NULL;
}

/* The agent refused the session we require (R-E2E.6a, 7101-7103): its
 * requests cannot be answered, say so rather than time out. */
static void e2e_refused(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__DisconnectRecord *d)
{
    uint32_t code = d->reason_code;
    if (code != USP_ERR_SESS_CONTEXT_NOT_ALLOWED && code != 7101 && code != 7102 && code != 7103)
        return;
    static char why[300];
    snprintf(why, sizeof why, "the agent refused the E2E session: Disconnect %u%s%.200s",
             (unsigned)code, d->reason && d->reason[0] ? ", " : "", d->reason ? d->reason : "");
    for (uint32_t i = 0; i < c->next_unused; i++) {
        struct ctl_req *r = &c->reqs[i];
        if (r->agent != a || (r->state != CR_SENT && r->state != CR_WAITING))
            continue;
        fail_req(c, r, CTL_FAILED, why);
    }
}

static int send_record(struct sim_ctl *c, const char *dest, const char *to_eid, uint8_t minor,
                       const Usp__Msg *m, uint32_t *sent_len)
{
    if (!c->up)
        return USP_EPERM;
    usp_arena_reset(c->tx_arena);
    uint8_t *buf;
    size_t len;
    int rc;
    if (c->conf->e2e.mode != USP_E2E_FORBID) {
        /* Through the agent's E2E session (in it, or plain when none is
         * open and SessionMode allows). */
        struct ctl_agent *a = ctl_agent_get(c, to_eid, false, CTL_NO_INDEX);
        struct ctl_e2e *e = a && a->dest ? agent_e2e(c, a) : NULL;
        if (!e)
            return USP_ENOMEM;
        rc = usp_msg_encode(c->tx_arena, m, &buf, &len);
        if (rc)
            return rc;
        struct usp_e2e_io io = e2e_io(e);
        rc = usp_e2e_send_msg(e->s, buf, len, usp_tw_now(c->tw.tw), &io);
        e2e_rearm(e);
        if (sent_len)
            *sent_len = (uint32_t)len;
        return rc;
    }
    struct usp_record_hdr h = {
        .version = ctl_version_str(minor > USP_VERSION_MAX_MINOR ? USP_VERSION_MAX_MINOR : minor),
        .to_id = to_eid,
        .from_id = c->conf->eid,
    };
    rc = usp_record_wrap_msg(c->tx_arena, &h, m, &buf, &len);
    if (rc)
        return rc;
    if (sent_len)
        *sent_len = (uint32_t)len;
    return send_bytes(c, dest, to_eid, buf, len);
}

static const char *send_why(int rc)
{
    switch (rc) {
    case USP_EPERM:
        return "not connected to the broker";
    case USP_ENOENT:
        return "the agent has no session with the controller (it has not connected)";
    case USP_ERANGE:
        return "the Record is larger than the broker connection allows";
    case USP_EINVAL:
        return "the agent's topic is not a valid MQTT topic";
    default:
        return usp_strerror(rc);
    }
}

static void gsp_start(struct sim_ctl *c, struct ctl_agent *a);

static void transmit(struct sim_ctl *c, struct ctl_req *r)
{
    struct ctl_agent *a = r->agent;
    uint8_t minor;
    if (is_gsp(r->msg) && a->minor == CTL_NO_VERSION)
        minor = CTL_GSP_MINOR;
    else
        minor = a->minor != CTL_NO_VERSION ? a->minor : USP_VERSION_MAX_MINOR;
    char id[48];
    make_msg_id(c, r, id);
    r->msg->header->msg_id = id;
    r->state = CR_SENT;
    int rc = send_record(c, a->dest, a->eid, minor, r->msg, &r->tx_bytes);
    r->msg->header->msg_id = NULL;
    if (rc) {
        fail_req(c, r, CTL_FAILED, send_why(rc));
        return;
    }
    if (r->no_resp) {
        struct ctl_result res = {.outcome = CTL_SENT, .now_ns = uv_hrtime()};
        finish(c, r, &res);
    }
}

void ctl_req_submit(struct sim_ctl *c, struct ctl_req *r, uint32_t timeout_ms)
{
    struct ctl_agent *a = r->agent;
    r->no_resp = !wants_response(r->msg);
    r->state = CR_SENT;
    usp_tw_entry_init(&r->tmo, on_timeout);
    if (!r->no_resp)
        usp_tw_add_in(c->tw.tw, &r->tmo, timeout_ms);
    if (!a->dest) {
        fail_req(c, r, CTL_FAILED,
                 "no topic known for the agent: it has not connected, and --agent-topic needs "
                 "{n}, which only a load template gives");
        return;
    }
    /* Versions of MQTT that differ cannot talk [R-MQTT.26a]: say so now
     * rather than time out. */
    if ((a->flags & CA_MQTT_SAID) &&
        !(a->flags & CA_MQTT311) != (c->conf->mqtt_version == USP_MQTT_V5)) {
        fail_req(c, r, CTL_FAILED,
                 a->flags & CA_MQTT311
                     ? "the agent connected with MQTT 3.1.1 (its MQTTConnectRecord): use "
                       "--mqtt-version 3.1.1"
                     : "the agent connected with MQTT 5 (its MQTTConnectRecord): use "
                       "--mqtt-version 5");
        return;
    }
    bool gsp = is_gsp(r->msg);
    if (!gsp && (a->flags & CA_NO_COMMON)) {
        fail_req(c, r, CTL_FAILED, "the agent and uspsim have no USP version in common");
        return;
    }
    if (!gsp && c->gsp_gate && !(a->flags & CA_GSP_DONE)) {
        gsp_start(c, a);
        /* Held until GetSupportedProtocol is answered, in order; when it
         * could not even go, the request goes now. */
        if (a->flags & CA_GSP_SENT) {
            r->state = CR_WAITING;
            struct ctl_req **pp = &a->waiting;
            while (*pp)
                pp = &(*pp)->next;
            *pp = r;
            r->next = NULL;
            return;
        }
    }
    transmit(c, r);
}

/* Sends what waited for the version agreement (or for its failure). */
static void flush_waiting(struct sim_ctl *c, struct ctl_agent *a)
{
    while (a->waiting) {
        struct ctl_req *r = a->waiting;
        a->waiting = r->next;
        r->next = NULL;
        r->state = CR_SENT;
        if (a->flags & CA_NO_COMMON)
            fail_req(c, r, CTL_FAILED, "the agent and uspsim have no USP version in common");
        else
            transmit(c, r);
    }
}

/* Sends a GetSupportedProtocol to `a` unless one is on its way. */
static void gsp_start(struct sim_ctl *c, struct ctl_agent *a)
{
    if ((a->flags & CA_GSP_SENT) || !a->dest || !c->up)
        return;
    struct ctl_req *r = ctl_req_alloc(c);
    if (!r)
        return;
    r->agent = a;
    r->msg = c->gsp_msg;
    r->kind = CTL_KIND_AUTO_GSP;
    a->flags |= CA_GSP_SENT;
    c->st.gsp_sent++;
    ctl_req_submit(c, r, c->conf->timeout_ms);
}

/* Agents mostly answer GSP alike: each distinct answer is kept once, for
 * the life of the controller (a few dozen at most; more are not kept). */
#define MAX_VERSION_LISTS 64

static const char *intern_versions(struct sim_ctl *c, const char *list)
{
    size_t i = 0;
    for (struct ctl_str *x = c->version_lists; x; x = x->next, i++)
        if (!strcmp(x->s, list))
            return x->s;
    if (i >= MAX_VERSION_LISTS)
        return NULL;
    size_t n = strlen(list);
    struct ctl_str *x = malloc(sizeof *x + n + 1);
    if (!x)
        return NULL;
    memcpy(x->s, list, n + 1);
    x->next = c->version_lists;
    c->version_lists = x;
    return x->s;
}

static void apply_versions(struct sim_ctl *c, struct ctl_agent *a, const char *list)
{
    a->versions = intern_versions(c, list ? list : "");
    uint8_t m = ctl_version_pick(list);
    a->flags &= (uint8_t) ~(CA_GSP_SENT | CA_NO_COMMON);
    a->flags |= CA_GSP_DONE;
    if (m == CTL_NO_VERSION)
        a->flags |= CA_NO_COMMON;
    a->minor = m;
    c->st.gsp_ok++;
    if (c->on_event) {
        struct ctl_event ev = {.kind = CTL_EV_VERSION, .agent = a};
        c->on_event(c, &ev);
    }
    flush_waiting(c, a);
}

static void own_done(struct sim_ctl *c, struct ctl_req *r, const struct ctl_result *res)
{
    struct ctl_agent *a = r->agent;
    if (r->kind == CTL_KIND_AUTO_GSP) {
        a->flags &= (uint8_t)~CA_GSP_SENT;
        if (res->outcome == CTL_RESPONSE)
            return; /* applied on arrival */
        /* An agent that does not answer GSP still gets what waits for it,
         * in our newest version: its own timeouts decide. */
        if (res->outcome == CTL_ERROR) {
            a->flags |= CA_GSP_DONE;
        }
        flush_waiting(c, a);
        return;
    }
    if (r->kind == CTL_KIND_ONBOARD_SET && res->outcome != CTL_RESPONSE && !c->conf->quiet) {
        char eb[96];
        fprintf(stderr, "uspsim controller: %s: setting OnBoardingComplete failed: %s\n", a->eid,
                res->outcome == CTL_ERROR ? ctl_err_str(res->err_code, eb, sizeof eb)
                                          : (res->why ? res->why : "no response"));
    }
}

/* ---- Receiving ---------------------------------------------------------------- */

static void send_notify_resp(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__Record *rec,
                             const Usp__Msg *in, const char *dest)
{
    Usp__Msg m = USP__MSG__INIT;
    Usp__Header h = USP__HEADER__INIT;
    Usp__Body b = USP__BODY__INIT;
    Usp__Response resp = USP__RESPONSE__INIT;
    Usp__NotifyResp nr = USP__NOTIFY_RESP__INIT;
    h.msg_id = in->header->msg_id; /* the Notify's own [R-MSG.9] */
    h.msg_type = USP__HEADER__MSG_TYPE__NOTIFY_RESP;
    nr.subscription_id = in->body->request->notify->subscription_id; /* [R-NOT.10] */
    resp.resp_type_case = USP__RESPONSE__RESP_TYPE_NOTIFY_RESP;
    resp.notify_resp = &nr;
    b.msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
    b.response = &resp;
    m.header = &h;
    m.body = &b;
    /* Answer in the version the Notify came in, when we speak it. */
    unsigned major, minor;
    uint8_t v = a->minor;
    if (usp_version_parse(rec->version, &major, &minor) == 0 && major == 1 &&
        minor <= USP_VERSION_MAX_MINOR)
        v = (uint8_t)minor;
    if (send_record(c, dest, a->eid, v, &m, NULL) == 0)
        c->st.notify_resps_out++;
}

static char *dup_or_null(const char *s)
{
    return strdup(s ? s : "");
}

static void on_onboard(struct sim_ctl *c, struct ctl_agent *a, const Usp__Notify__OnBoardRequest *o,
                       bool acked)
{
    struct ctl_onboard *ob = a->onboard ? a->onboard : calloc(1, sizeof *ob);
    if (!ob)
        return;
    a->onboard = ob;
    free(ob->oui);
    free(ob->product_class);
    free(ob->serial_number);
    free(ob->versions);
    ob->oui = dup_or_null(o->oui);
    ob->product_class = dup_or_null(o->product_class);
    ob->serial_number = dup_or_null(o->serial_number);
    ob->versions = dup_or_null(o->agent_supported_protocol_versions);
    /* The OnBoardRequest says which versions the agent speaks. */
    if (!(a->flags & CA_GSP_DONE) && o->agent_supported_protocol_versions &&
        o->agent_supported_protocol_versions[0])
        apply_versions(c, a, o->agent_supported_protocol_versions);
    /* Onboarding done on our side: tell the agent, so that it stops
     * offering (TR-181 Controller.{i}.OnBoardingComplete). */
    if (acked && c->onboard_msg) {
        struct ctl_req *r = ctl_req_alloc(c);
        if (r) {
            r->agent = a;
            r->msg = c->onboard_msg;
            r->kind = CTL_KIND_ONBOARD_SET;
            ctl_req_submit(c, r, c->conf->timeout_ms);
        }
    }
}

static const char *map_get(Usp__Notify__Event__ParamsEntry **e, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (e[i]->key && !strcmp(e[i]->key, key))
            return e[i]->value;
    return NULL;
}

static void on_notify(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__Record *rec,
                      const Usp__Msg *msg, const char *reply_to)
{
    const Usp__Notify *n = msg->body->request->notify;
    a->notifs++;
    c->st.notifs_in++;
    if (n->notification_case == USP__NOTIFY__NOTIFICATION_EVENT && n->event &&
        n->event->event_name && !strcmp(n->event->event_name, "Boot!")) {
        a->boots++;
        const char *cause = map_get(n->event->params, n->event->n_params, "Cause");
        snprintf(a->boot_cause, sizeof a->boot_cause, "%s", cause ? cause : "");
    }
    /* NotifyResp only when asked [R-NOT.8], to where the Notify came from. */
    bool acked = false;
    if (n->send_resp) {
        const char *dest = reply_to ? reply_to : a->dest;
        if (dest) {
            send_notify_resp(c, a, rec, msg, dest);
            acked = true;
        }
    }
    if (n->notification_case == USP__NOTIFY__NOTIFICATION_ON_BOARD_REQ && n->on_board_req)
        on_onboard(c, a, n->on_board_req, acked);
    if (c->on_event) {
        struct ctl_event ev = {.kind = CTL_EV_NOTIFY, .agent = a, .rec = rec, .msg = msg};
        c->on_event(c, &ev);
    }
}

/* A request from an agent that a Controller does not serve. */
static void refuse_request(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__Record *rec,
                           const Usp__Msg *msg, const char *dest)
{
    if (!dest)
        return;
    const char *name = usp_msg_type_name(usp_msg_kind(msg));
    char text[96];
    snprintf(text, sizeof text, "uspsim controller does not handle %s", name ? name : "this");
    Usp__Msg *err =
        usp_msg_new_error(c->rx_arena, msg->header->msg_id, USP_ERR_MESSAGE_NOT_SUPPORTED, text);
    unsigned major, minor;
    uint8_t v = a->minor;
    if (usp_version_parse(rec->version, &major, &minor) == 0 && major == 1 &&
        minor <= USP_VERSION_MAX_MINOR)
        v = (uint8_t)minor;
    if (err)
        send_record(c, dest, a->eid, v, err, NULL);
}

static void on_response(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__Record *rec,
                        const Usp__Msg *msg, size_t len)
{
    struct ctl_req *r = req_by_id(c, msg->header->msg_id);
    if (!r) {
        c->st.late++;
        return;
    }
    if (r->agent != a) {
        /* Our msg_id from another endpoint: not the answer [R-MSG.9]. */
        c->st.dropped++;
        return;
    }
    struct ctl_result res = {.rec = rec, .msg = msg, .now_ns = uv_hrtime(), .rx_bytes = len};
    if (msg->body->msg_body_case == USP__BODY__MSG_BODY_ERROR) {
        res.outcome = CTL_ERROR;
        res.err_code = msg->body->error ? msg->body->error->err_code : 0;
    } else {
        res.outcome = CTL_RESPONSE;
        const Usp__Response *rp = msg->body->response;
        if (rp && rp->resp_type_case == USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP &&
            rp->get_supported_protocol_resp)
            apply_versions(c, a,
                           rp->get_supported_protocol_resp->agent_supported_protocol_versions);
    }
    if (r->state == CR_SENT || r->state == CR_WAITING)
        finish(c, r, &res);
}

/* The load generator's fast path for the bulk of what arrives: a Response
 * or Error to one of our requests. The Record is decoded and checked as
 * always; the Msg is unpacked and checked only as far as matching and
 * counting need (header, msg_id, a body with its oneof set), skipping the
 * full walk of usp_msg_validate, whose cost is in naming the field at
 * fault. Anything else, or anything odd, takes the full path. */
static bool lean_response(struct sim_ctl *c, struct usp_mtp_conn *conn, const uint8_t *bytes,
                          size_t len, const struct usp_mtp_rx *mrx)
{
    UspRecord__Record *rec;
    struct usp_decode_err err;
    if (usp_record_decode(c->rx_arena, bytes, len, &rec, &err) != 0 ||
        rec->record_type_case != USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT ||
        strcmp(rec->to_id, c->conf->eid) != 0)
        return false;
    const ProtobufCBinaryData *p = &rec->no_session_context->payload;
    Usp__Msg *m = usp__msg__unpack(usp_arena_allocator(c->rx_arena), p->len, p->data);
    if (!m || !m->header || !m->header->msg_id || !m->header->msg_id[0] || !m->body)
        return false;
    bool resp = m->body->msg_body_case == USP__BODY__MSG_BODY_RESPONSE && m->body->response &&
                m->body->response->resp_type_case != USP__RESPONSE__RESP_TYPE__NOT_SET;
    bool error = m->body->msg_body_case == USP__BODY__MSG_BODY_ERROR && m->body->error;
    if (!resp && !error)
        return false;
    struct ctl_agent *a = ctl_agent_get(c, rec->from_id, false, CTL_NO_INDEX);
    if (!a || (c->conf->p2p && a->conn != conn))
        return false; /* a new session or a certificate to check: the full path */
    a->last_seen_ms = uv_now(c->loop);
    const char *reply_to = mrx->reply_to.to;
    if (reply_to && reply_to[0] && !(a->flags & CA_TOPIC_SAID))
        set_dest(a, reply_to);
    on_response(c, a, rec, m, len);
    return true;
}

static void on_record(struct usp_mtp_conn *conn, const uint8_t *bytes, size_t len,
                      const struct usp_mtp_rx *mrx, void *user)
{
    struct sim_ctl *c = user;
    c->st.records_in++;
    usp_arena_reset(c->rx_arena);
    if (c->lean_rx && c->conf->e2e.mode == USP_E2E_FORBID) {
        if (lean_response(c, conn, bytes, len, mrx))
            return;
        usp_arena_reset(c->rx_arena);
    }
    struct usp_rx rx;
    if (usp_rx_record(c->rx_arena, bytes, len, c->conf->eid, &rx) != 0 ||
        rx.action == USP_RX_DROP) {
        c->st.dropped++;
        return;
    }
    const char *reply_to = mrx->reply_to.to;
    if (rx.action == USP_RX_REPLY_ERROR) {
        uint8_t *out;
        size_t olen;
        struct usp_mtp_dest d = {.to = reply_to};
        if (reply_to && usp_rx_error_reply(c->rx_arena, &rx, c->conf->eid, &out, &olen) == 0 &&
            usp_mtp_send(c->conn, &d, out, olen) == 0)
            c->st.records_out++;
        c->st.dropped++;
        return;
    }
    const UspRecord__Record *rec = rx.rec;
    /* Over TLS point to point, the sender must be who its certificate
     * says [R-SEC.0a]. */
    const struct usp_tls_ids *ids = c->conf->p2p ? usp_mtp_peer_ids(conn) : NULL;
    if (ids) {
        char twhy[200];
        if (usp_tls_ids_match(ids, rec->from_id, twhy, sizeof twhy) != 0) {
            if (c->tls_mismatch++ == 0 && !c->conf->quiet)
                fprintf(stderr, "uspsim controller: dropped a record from %s: %s\n",
                        rec->from_id, twhy);
            c->st.dropped++;
            return;
        }
    }
    struct ctl_agent *known = ctl_agent_get(c, rec->from_id, false, CTL_NO_INDEX);
    /* Point to point, accepting the session already made the entry. */
    bool fresh = !known || (c->conf->p2p && !known->last_seen_ms);
    struct ctl_agent *a = known ? known : ctl_agent_get(c, rec->from_id, true, CTL_NO_INDEX);
    if (!a) {
        c->st.dropped++;
        return;
    }
    a->last_seen_ms = uv_now(c->loop);
    if (c->conf->p2p)
        a->conn = conn; /* its session: answers and requests go there */
    if (reply_to && reply_to[0] &&
        !(rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT)) {
        /* Its messages say where it listens; a topic it announced wins. */
        if (!(a->flags & CA_TOPIC_SAID) || !a->dest)
            set_dest(a, reply_to);
    }
    if (fresh && c->on_event) {
        struct ctl_event ev = {.kind = CTL_EV_NEW_AGENT, .agent = a, .rec = rec};
        c->on_event(c, &ev);
    }
    if (c->conf->e2e.mode != USP_E2E_FORBID &&
        (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT ||
         (a->e2e && (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT ||
                     rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT)))) {
        struct ctl_e2e *e = a->dest ? agent_e2e(c, a) : NULL;
        if (e) {
            struct usp_e2e_io io = e2e_io(e);
            e2e_rx_rec = rec;
            usp_e2e_receive(e->s, rec, usp_tw_now(c->tw.tw), &io);
            e2e_rx_rec = NULL;
            e2e_rearm(e);
            if (rec->record_type_case != USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
                if (fresh && c->gsp_auto && !(a->flags & CA_GSP_DONE))
                    gsp_start(c, a);
                return;
            }
        }
    }
    switch (rec->record_type_case) {
    case USP_RECORD__RECORD__RECORD_TYPE_MQTT_CONNECT: {
        const UspRecord__MQTTConnectRecord *m = rec->mqtt_connect;
        a->flags |= CA_CONNECTED | CA_MQTT_SAID;
        if (m && m->version == USP_RECORD__MQTTCONNECT_RECORD__MQTTVERSION__V3_1_1)
            a->flags |= CA_MQTT311;
        else
            a->flags &= (uint8_t)~CA_MQTT311;
        if (m && m->subscribed_topic && m->subscribed_topic[0]) {
            set_dest(a, m->subscribed_topic);
            a->flags |= CA_TOPIC_SAID;
        } else if (reply_to && reply_to[0]) {
            set_dest(a, reply_to);
        }
        if (c->on_event) {
            struct ctl_event ev = {.kind = CTL_EV_CONNECT, .agent = a, .rec = rec};
            c->on_event(c, &ev);
        }
        /* A new connection may be a new firmware: agree again. */
        if (c->gsp_auto)
            gsp_start(c, a);
        return;
    }
    case USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT:
    case USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT:
    case USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT: {
        a->flags |= CA_CONNECTED;
        const UspRecord__STOMPConnectRecord *st = rec->record_type_case ==
                                                          USP_RECORD__RECORD__RECORD_TYPE_STOMP_CONNECT
                                                      ? rec->stomp_connect
                                                      : NULL;
        if (st && st->subscribed_destination && st->subscribed_destination[0]) {
            set_dest(a, st->subscribed_destination);
            a->flags |= CA_TOPIC_SAID;
        }
        if (c->on_event) {
            struct ctl_event ev = {.kind = CTL_EV_CONNECT, .agent = a, .rec = rec};
            c->on_event(c, &ev);
        }
        if (c->gsp_auto)
            gsp_start(c, a);
        return;
    }
    case USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT:
        if (c->conf->e2e.mode == USP_E2E_REQUIRE && rec->disconnect)
            e2e_refused(c, a, rec->disconnect);
        a->flags &= (uint8_t)~CA_CONNECTED;
        if (c->on_event) {
            struct ctl_event ev = {.kind = CTL_EV_DISCONNECT, .agent = a, .rec = rec};
            c->on_event(c, &ev);
        }
        return;
    case USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT:
        break;
    default:
        /* Session context (E2E) and other MTPs' records: not ours to serve. */
        c->st.dropped++;
        return;
    }
    dispatch_msg(c, a, rec, rx.msg, reply_to, len);
    if (fresh && c->gsp_auto && !(a->flags & CA_GSP_DONE))
        gsp_start(c, a);
}

/* A Message from agent `a`, out of a no_session_context Record or an E2E
 * session (`rec` is the Record that carried it). */
static void dispatch_msg(struct sim_ctl *c, struct ctl_agent *a, const UspRecord__Record *rec,
                         const Usp__Msg *msg, const char *reply_to, size_t len)
{
    if (!msg || !msg->body) {
        c->st.dropped++;
        return;
    }
    switch (msg->body->msg_body_case) {
    case USP__BODY__MSG_BODY_REQUEST:
        if (msg->body->request->req_type_case == USP__REQUEST__REQ_TYPE_NOTIFY &&
            msg->body->request->notify)
            on_notify(c, a, rec, msg, reply_to);
        else
            refuse_request(c, a, rec, msg, reply_to ? reply_to : a->dest);
        break;
    case USP__BODY__MSG_BODY_RESPONSE:
    case USP__BODY__MSG_BODY_ERROR:
        on_response(c, a, rec, msg, len);
        break;
    default:
        c->st.dropped++;
        return;
    }
}

/* ---- Connection --------------------------------------------------------------- */

static void on_state(struct usp_mtp_conn *conn, const struct usp_mtp_event *ev, void *user)
{
    struct sim_ctl *c = user;
    c->up = ev->state == USP_MTP_UP;
    if (c->up)
        c->ever_up = true;
    if (ev->state == USP_MTP_DOWN && !c->ever_up) {
        snprintf(c->down_why, sizeof c->down_why, "%s", ev->detail);
        c->down_before_up = true;
    }
    if (ev->state == USP_MTP_CLOSED)
        c->closed = true;
    if (c->on_state)
        c->on_state(c, ev);
}

static const struct usp_mtp_callbacks ctl_cbs = {.state = on_state, .record = on_record};

/* ---- Accepted sessions (--listen) --------------------------------------------- */

static void forget_conn(struct sim_ctl *c, struct usp_mtp_conn *conn)
{
    const char *peer = usp_mtp_peer_eid(conn);
    struct ctl_agent *a = peer ? ctl_agent_get(c, peer, false, CTL_NO_INDEX) : NULL;
    if (a && a->conn == conn) {
        a->conn = NULL;
        return;
    }
    for (size_t i = 0; i < c->cap; i++) /* it spoke under another name */
        if (c->tab[i] && c->tab[i]->conn == conn)
            c->tab[i]->conn = NULL;
}

static void on_accepted_state(struct usp_mtp_conn *conn, const struct usp_mtp_event *ev,
                              void *user)
{
    struct sim_ctl *c = user;
    if (ev->state != USP_MTP_CLOSED)
        return;
    forget_conn(c, conn);
    usp_mtp_conn_free(conn);
}

static const struct usp_mtp_callbacks accepted_cbs = {.state = on_accepted_state,
                                                      .record = on_record};

/* With TLS, an agent that names itself must be who its certificate says. */
static int on_check(struct usp_mtp_listener *l, const struct usp_mtp_peer *peer, void *user)
{
    if (!peer->ids || !peer->eid)
        return 0;
    return usp_tls_ids_match(peer->ids, peer->eid, NULL, 0) == 0 ? 0 : -1;
}

static void on_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *conn,
                      const struct usp_mtp_peer *peer, void *user)
{
    struct sim_ctl *c = user;
    usp_mtp_conn_set_callbacks(conn, &accepted_cbs, c);
    if (!peer->eid)
        return; /* known from its first record */
    struct ctl_agent *a = ctl_agent_get(c, peer->eid, true, CTL_NO_INDEX);
    if (a)
        a->conn = conn;
}

static const struct usp_mtp_listener_callbacks listener_cbs = {.check = on_check,
                                                               .accept = on_accept};

static void mtp_log(void *user, enum usp_mtp_log_level level, const char *eid, const char *msg)
{
    const struct sim_ctl *c = user;
    if (!c->conf->quiet)
        fprintf(stderr, "uspsim controller: %s\n", msg);
}

/* A request template in `own_arena`, from words. */
static Usp__Msg *own_msg(struct sim_ctl *c, int argc, char **argv)
{
    Usp__Msg *m = NULL;
    struct usp_req_err err;
    if (usp_req_parse(c->own_arena, argc, argv, "x", &m, &err) != 0)
        return NULL;
    m->header->msg_id = NULL;
    return m;
}

int ctl_init(struct sim_ctl *c, uv_loop_t *loop, const struct ctl_conf *conf, const char *url,
             uint32_t pool, char *why, size_t whylen)
{
    memset(c, 0, sizeof *c);
    c->conf = conf;
    c->loop = loop;
    c->url = url;
    uint32_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)time(NULL) ^ (uint32_t)getpid() * 2654435761u;
    snprintf(c->id_prefix, sizeof c->id_prefix, "%08x", (unsigned)rnd);
    c->id_prefix_len = strlen(c->id_prefix);
    c->nreqs = pool;
    c->reqs = calloc(pool, sizeof *c->reqs);
    c->rx_arena = usp_arena_new(64 * 1024);
    c->tx_arena = usp_arena_new(16 * 1024);
    c->own_arena = usp_arena_new(4096);
    c->e2e_arena = usp_arena_new(64 * 1024);
    if (!c->reqs || !c->rx_arena || !c->tx_arena || !c->own_arena || !c->e2e_arena ||
        tab_grow(c) != 0) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    char gsp[] = "gsp", set[] = "set";
    char *gargv[] = {gsp, NULL};
    c->gsp_msg = own_msg(c, 1, gargv);
    char *setting = usp_arena_printf(
        c->own_arena, "Device.LocalAgent.Controller.[EndpointID==\"%s\"].OnBoardingComplete=true",
        conf->eid);
    char *sargv[] = {set, setting, NULL};
    c->onboard_msg = setting ? own_msg(c, 2, sargv) : NULL;
    if (!c->gsp_msg) {
        snprintf(why, whylen, "cannot build GetSupportedProtocol");
        return -1;
    }
    if (usp_tw_uv_init(&c->tw, loop) != 0) {
        snprintf(why, whylen, "cannot start the timer wheel");
        return -1;
    }
    c->tw_ok = true;
    struct usp_mtp_ctx_opts mo = {
        .log = mtp_log, .log_user = c, .log_level = USP_MTP_LOG_WARN, .wheel = c->tw.tw};
    c->mtp = usp_mtp_ctx_new(loop, &mo);
    if (!c->mtp) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (sim_mtp_register_all(why, whylen) != 0)
        return -1;
    struct usp_mtp_config cfg;
    usp_mtp_config_init(&cfg);
    cfg.role = USP_MTP_CONTROLLER;
    cfg.eid = conf->eid;
    cfg.url = url;
    cfg.tls = conf->tls;
    bool coap = !strcmp(conf->binding, "coap");
    if (coap)
        cfg.usp_version = "1.2"; /* legacy: Records declare 1.0-1.2 */
    if (conf->max_record)
        cfg.max_record = conf->max_record;
    cfg.mqtt.version = conf->mqtt_version;
    cfg.mqtt.topic = conf->topic;
    cfg.mqtt.qos = conf->qos;
    cfg.stomp.destination = conf->topic;
    cfg.connect_timeout_ms = conf->connect_timeout_ms;
    /* A controller that lost its broker comes back quickly. */
    cfg.retry_time_s = 1;
    cfg.retry_max_s = 10;
    char cwhy[256];
    if (conf->listen) {
        cfg.url = conf->listen;
        if (usp_mtp_listen(c->mtp, &cfg, &listener_cbs, c, &c->listener, cwhy, sizeof cwhy) != 0) {
            snprintf(why, whylen, "--listen %s: %s", conf->listen, cwhy);
            return -1;
        }
        c->up = c->ever_up = true;
        if (!conf->quiet)
            fprintf(stderr, "uspsim controller: listening at %s (agents: --controller %s)\n",
                    conf->listen, conf->listen);
        if (!coap || !conf->nagent_urls)
            return 0;
        /* CoAP: connections to agents answer to our own server. */
        cfg.coap.local_url = NULL; /* the listener's */
    }
    if (conf->nagent_urls > 1) {
        c->xconns = calloc(conf->nagent_urls - 1, sizeof *c->xconns);
        if (!c->xconns) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
    }
    for (unsigned i = 0; i < (conf->nagent_urls ? conf->nagent_urls : 1); i++) {
        struct usp_mtp_conn **slot = i == 0 ? &c->conn : &c->xconns[i - 1];
        if (conf->nagent_urls)
            cfg.url = conf->agent_urls[i];
        if (usp_mtp_conn_new(c->mtp, &cfg, &ctl_cbs, c, slot, cwhy, sizeof cwhy) != 0) {
            snprintf(why, whylen, "%s: %s", cfg.url, cwhy);
            return -1;
        }
        if (i > 0)
            c->nxconns = i;
        if (usp_mtp_open(*slot) != 0) {
            snprintf(why, whylen, "cannot open the connection to %s", cfg.url);
            return -1;
        }
    }
    return 0;
}

static void on_wait_timer(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void close_cb_noop(uv_handle_t *h)
{
}

/* Runs the loop until `done()` or `ms` passed. */
static void run_until(struct sim_ctl *c, bool (*done)(const struct sim_ctl *c), uint64_t ms)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(c->loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_wait_timer, ms, 0);
    while (!done(c) && !expired)
        uv_run(c->loop, UV_RUN_ONCE);
    uv_timer_stop(&t);
    uv_close((uv_handle_t *)&t, close_cb_noop);
    uv_run(c->loop, UV_RUN_NOWAIT);
}

static bool up_or_failed(const struct sim_ctl *c)
{
    return c->up || c->down_before_up;
}

int ctl_wait_up(struct sim_ctl *c)
{
    run_until(c, up_or_failed, (uint64_t)c->conf->connect_timeout_ms + 500);
    if (c->up)
        return 0;
    if (c->down_before_up)
        fprintf(stderr, "uspsim controller: cannot connect to %s: %s\n", c->url, c->down_why);
    else
        fprintf(stderr, "uspsim controller: cannot connect to %s: no answer within %.1f s\n",
                c->url, (double)c->conf->connect_timeout_ms / 1000.0);
    return -1;
}

static const char *waited_eid;

static bool agent_has_session(const struct sim_ctl *c)
{
    struct ctl_agent *a = ctl_agent_get((struct sim_ctl *)c, waited_eid, false, CTL_NO_INDEX);
    return a && a->conn;
}

int ctl_wait_agent(struct sim_ctl *c, const char *eid)
{
    if (!c->listener && c->nxconns == 0)
        return 0;
    waited_eid = eid;
    run_until(c, agent_has_session, c->conf->connect_timeout_ms);
    if (agent_has_session(c))
        return 0;
    fprintf(stderr, "uspsim controller: agent %s did not connect within %.1f s\n", eid,
            (double)c->conf->connect_timeout_ms / 1000.0);
    return -1;
}

static bool is_closed(const struct sim_ctl *c)
{
    return c->closed;
}

static bool sessions_closed(const struct sim_ctl *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab[i] && c->tab[i]->conn)
            return false;
    return true;
}

void ctl_close(struct sim_ctl *c)
{
    if (c->closing)
        return;
    if (c->listener) {
        /* Accepted sessions close with a DisconnectRecord each. */
        c->closing = true;
        bool any = false;
        for (size_t i = 0; i < c->cap; i++)
            if (c->tab[i] && c->tab[i]->conn &&
                usp_mtp_close(c->tab[i]->conn, 0, "controller shutting down") == 0)
                any = true;
        if (any)
            run_until(c, sessions_closed, CLOSE_GRACE_MS);
        return;
    }
    if (!c->conn)
        return;
    c->closing = true;
    for (unsigned i = 0; i < c->nxconns; i++)
        if (c->xconns[i])
            usp_mtp_close(c->xconns[i], 0, NULL);
    if (usp_mtp_close(c->conn, 0, NULL) == 0)
        run_until(c, is_closed, CLOSE_GRACE_MS);
}

void ctl_cleanup(struct sim_ctl *c)
{
    for (size_t i = 0; c->tab && i < c->cap; i++)
        if (c->tab[i])
            agent_e2e_free(c, c->tab[i]); /* before the timer wheel goes */
    usp_mtp_conn_free(c->conn);
    c->conn = NULL;
    for (unsigned i = 0; i < c->nxconns; i++)
        usp_mtp_conn_free(c->xconns[i]);
    free(c->xconns);
    c->xconns = NULL;
    c->nxconns = 0;
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab && c->tab[i] && c->tab[i]->conn && c->listener) {
            usp_mtp_conn_free(c->tab[i]->conn);
            c->tab[i]->conn = NULL;
        }
    usp_mtp_listener_close(c->listener);
    c->listener = NULL;
    if (c->mtp)
        usp_mtp_ctx_free(c->mtp);
    c->mtp = NULL;
    if (c->tw_ok)
        usp_tw_uv_close(&c->tw, NULL);
    c->tw_ok = false;
    for (size_t i = 0; i < c->cap; i++)
        if (c->tab[i])
            agent_free(c->tab[i]);
    free(c->tab);
    c->tab = NULL;
    while (c->version_lists) {
        struct ctl_str *x = c->version_lists;
        c->version_lists = x->next;
        free(x);
    }
    free(c->reqs);
    c->reqs = NULL;
    usp_arena_free(c->rx_arena);
    usp_arena_free(c->tx_arena);
    usp_arena_free(c->own_arena);
    usp_arena_free(c->e2e_arena);
    c->rx_arena = c->tx_arena = c->own_arena = c->e2e_arena = NULL;
}
