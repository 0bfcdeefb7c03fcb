/* `uspsim controller load`: an open-loop load generator over many agents.
 *
 * The schedule is fixed before the run: request k is due at t0 + k/R, and
 * goes out then whatever happened to the requests before it (responses
 * that slow down do not slow the sender). Latency is measured from the time
 * a request was due, not from when it left, so a sender that falls behind
 * shows up in the figures instead of hiding (no coordinated omission).
 *
 * Agents come from a template with {n} (--count, --first-index) or from a
 * glob over the agents the controller has seen (their MQTTConnectRecords,
 * Boot! and OnBoardRequest notifications). Every agent first gets a
 * GetSupportedProtocol (the version agreement), then the load: kinds drawn
 * at random by the --mix weights, agents in turn.
 *
 * Each request is one slot of the core's pool; latencies go into
 * log-bucketed histograms (HDR style: exact below 128 us, then 64 buckets
 * per power of two, so within 1.6 %) kept per kind, over the whole run and
 * over the last second. Nothing is allocated per request. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "fleet.h"
#include "usp/eid.h"
#include "usp/errors.h"
#include "usp/reqlang.h"

#define TICK_MS          1
#define MAX_PER_TICK     20000 /* bounds one tick's work when far behind */
#define MAX_TEMPLATES    64    /* requests per kind from --paths */
#define MAX_CODES        64    /* distinct error codes counted */
#define POOL_MAX         (4u << 20)
#define WARM_RATE_MIN    2000.0 /* GetSupportedProtocol per second at least */
#define DISCOVER_POLL_MS 100

/* ---- Histogram ---------------------------------------------------------------- */

#define H_EXACT   128 /* values below are counted exactly */
#define H_SUB     64  /* buckets per power of two above */
#define H_TOP_BIT 40  /* values up to 2^40 us (12 days) */
#define H_BUCKETS (H_EXACT + (H_TOP_BIT - 7) * H_SUB)

struct hist {
    uint64_t counts[H_BUCKETS];
    uint64_t n, max, sum;
};

static unsigned h_index(uint64_t v)
{
    if (v < H_EXACT)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    if (msb >= H_TOP_BIT)
        return H_BUCKETS - 1;
    unsigned shift = msb - 6; /* v >> shift is in [64, 127] */
    return H_EXACT + (msb - 7) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

/* The highest value a bucket holds. */
static uint64_t h_value(unsigned i)
{
    if (i < H_EXACT)
        return i;
    unsigned k = i - H_EXACT;
    unsigned msb = k / H_SUB + 7, shift = msb - 6;
    uint64_t low = ((uint64_t)(k % H_SUB) + H_SUB) << shift;
    return low + ((uint64_t)1 << shift) - 1;
}

static void h_add(struct hist *h, uint64_t us)
{
    h->counts[h_index(us)]++;
    h->n++;
    h->sum += us;
    if (us > h->max)
        h->max = us;
}

/* The value at quantile q (0..1), in us: the bucket's top, capped by max. */
static uint64_t h_quantile(const struct hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)ceil(q * (double)h->n);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = h_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---- Kinds and their requests ------------------------------------------------- */

static const char *const kind_names[LK_COUNT] = {"get",  "set",       "operate",
                                                 "gsdm", "instances", "gsp"};
/* Defaults that every shipped profile (gateway, extender, iot) answers
 * without an error: an object every agent has, the controller's own
 * periodic interval set to the profiles' value, the self test (an
 * asynchronous command of datamodels/device-2-uspsim.xml with a `command`
 * line in each profile), and the controller table. */
static const char *const kind_defaults[LK_COUNT] = {
    "get Device.DeviceInfo.",
    "set Device.LocalAgent.Controller.1.PeriodicNotifInterval=86400",
    "operate Device.SelfTestDiagnostics()",
    "gsdm Device.DeviceInfo.",
    "instances Device.LocalAgent.Controller.",
    "gsp",
};

int ctl_load_kind(const char *name)
{
    for (int i = 0; i < LK_COUNT; i++)
        if (!strcmp(name, kind_names[i]))
            return i;
    /* The request language's long names. */
    if (!strcmp(name, "get-instances"))
        return LK_INSTANCES;
    if (!strcmp(name, "get-supported-dm"))
        return LK_GSDM;
    if (!strcmp(name, "get-supported-protocol"))
        return LK_GSP;
    return -1;
}

int ctl_load_parse_mix(const char *s, unsigned mix[LK_COUNT], char *why, size_t whylen)
{
    memset(mix, 0, LK_COUNT * sizeof *mix);
    unsigned total = 0;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char item[64];
        if (n == 0 || n >= sizeof item) {
            snprintf(why, whylen, "'%s': expected KIND=WEIGHT[,KIND=WEIGHT...]", s);
            return -1;
        }
        memcpy(item, p, n);
        item[n] = 0;
        char *eq = strchr(item, '=');
        if (!eq) {
            snprintf(why, whylen, "'%s' has no '=WEIGHT'", item);
            return -1;
        }
        *eq = 0;
        int k = ctl_load_kind(item);
        if (k < 0) {
            snprintf(why, whylen,
                     "unknown kind '%s' (kinds: get, set, operate, gsdm, instances, gsp)", item);
            return -1;
        }
        char *end;
        errno = 0;
        unsigned long w = strtoul(eq + 1, &end, 10);
        if (end == eq + 1 || *end || errno || w > 1000000) {
            snprintf(why, whylen, "weight of %s: '%s' is not a whole number up to 1000000", item,
                     eq + 1);
            return -1;
        }
        mix[k] += (unsigned)w;
        total += (unsigned)w;
        if (!e)
            break;
        p = e + 1;
    }
    if (total == 0) {
        snprintf(why, whylen, "'%s': the weights add up to 0", s);
        return -1;
    }
    return 0;
}

/* ---- The run ------------------------------------------------------------------------ */

struct kind_stats {
    uint64_t sent, responses, errors, timeouts, failed, path_errors;
    uint64_t tx_bytes, rx_bytes; /* Records sent, and answers received */
    struct hist h;
};

struct code_count {
    uint32_t code;
    uint64_t n;
};

enum phase { PH_DISCOVER, PH_WARM, PH_LOAD, PH_DRAIN, PH_DONE };

#define KIND_WARM 100 /* our own GetSupportedProtocol before the load */

struct load {
    struct sim_ctl ctl;
    uv_loop_t loop;
    const struct ctl_conf *conf;
    const struct ctl_load_conf *lc;
    struct usp_arena *arena; /* templates */
    Usp__Msg *tpl[LK_COUNT][MAX_TEMPLATES];
    unsigned ntpl[LK_COUNT];
    uint64_t cum[LK_COUNT]; /* cumulative weights */
    uint64_t wsum;
    struct ctl_agent **agents;
    size_t nagents, cap_agents;
    enum phase phase;
    uv_timer_t tick, report, phase_timer;
    uv_signal_t sigint, sigterm;
    bool tty, interrupted;
    uint64_t rng;
    /* warm-up */
    size_t warm_next, warm_done, warm_ok;
    uint64_t warm_t0;
    /* load */
    uint64_t t0_ns, t_end_ns, total, sent, outstanding;
    double interval_ns;
    uint64_t answered_in_window, not_sent;
    struct kind_stats k[LK_COUNT];
    struct hist all, last;
    uint64_t last_sent, last_answered, answered;
    uint64_t last_report_ns;
    struct code_count err_codes[MAX_CODES], path_codes[MAX_CODES];
    uint64_t t_drain_start;
    double elapsed_s;
};

static void count_code(struct code_count *t, uint32_t code)
{
    for (int i = 0; i < MAX_CODES; i++) {
        if (t[i].n && t[i].code == code) {
            t[i].n++;
            return;
        }
        if (!t[i].n) {
            t[i].code = code;
            t[i].n = 1;
            return;
        }
    }
}

static uint64_t rnd(struct load *L)
{
    /* xorshift64* */
    L->rng ^= L->rng >> 12;
    L->rng ^= L->rng << 25;
    L->rng ^= L->rng >> 27;
    return L->rng * 2685821657736338717ull;
}

/* Failures a response carries per path (it is not an Error message). */
static void path_errors(struct load *L, struct kind_stats *ks, const Usp__Msg *m)
{
    const Usp__Response *r = m->body ? m->body->response : NULL;
    if (!r)
        return;
#define PATH_ERR(code)                                                                             \
    do {                                                                                           \
        ks->path_errors++;                                                                         \
        count_code(L->path_codes, (code));                                                         \
    } while (0)
    switch (r->resp_type_case) {
    case USP__RESPONSE__RESP_TYPE_GET_RESP:
        for (size_t i = 0; i < r->get_resp->n_req_path_results; i++)
            if (r->get_resp->req_path_results[i]->err_code)
                PATH_ERR(r->get_resp->req_path_results[i]->err_code);
        break;
    case USP__RESPONSE__RESP_TYPE_SET_RESP:
        for (size_t i = 0; i < r->set_resp->n_updated_obj_results; i++) {
            const Usp__SetResp__UpdatedObjectResult__OperationStatus *st =
                r->set_resp->updated_obj_results[i]->oper_status;
            if (st &&
                st->oper_status_case ==
                    USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE &&
                st->oper_failure)
                PATH_ERR(st->oper_failure->err_code);
        }
        break;
    case USP__RESPONSE__RESP_TYPE_OPERATE_RESP:
        for (size_t i = 0; i < r->operate_resp->n_operation_results; i++) {
            const Usp__OperateResp__OperationResult *o = r->operate_resp->operation_results[i];
            if (o->operation_resp_case ==
                    USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE &&
                o->cmd_failure)
                PATH_ERR(o->cmd_failure->err_code);
        }
        break;
    case USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP:
        for (size_t i = 0; i < r->get_supported_dm_resp->n_req_obj_results; i++)
            if (r->get_supported_dm_resp->req_obj_results[i]->err_code)
                PATH_ERR(r->get_supported_dm_resp->req_obj_results[i]->err_code);
        break;
    case USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP:
        for (size_t i = 0; i < r->get_instances_resp->n_req_path_results; i++)
            if (r->get_instances_resp->req_path_results[i]->err_code)
                PATH_ERR(r->get_instances_resp->req_path_results[i]->err_code);
        break;
    default:
        break;
    }
#undef PATH_ERR
}

static void warm_send(struct load *L);
static void finish_run(struct load *L);

static void on_done(struct sim_ctl *c, struct ctl_req *r, const struct ctl_result *res)
{
    struct load *L = c->user;
    if (r->kind == KIND_WARM) {
        L->warm_done++;
        if (res->outcome == CTL_RESPONSE)
            L->warm_ok++;
        return;
    }
    if (r->kind >= LK_COUNT)
        return;
    struct kind_stats *ks = &L->k[r->kind];
    L->outstanding--;
    ks->tx_bytes += r->tx_bytes;
    switch (res->outcome) {
    case CTL_RESPONSE:
    case CTL_ERROR: {
        uint64_t us = res->now_ns > r->t0_ns ? (res->now_ns - r->t0_ns) / 1000 : 0;
        h_add(&ks->h, us);
        h_add(&L->all, us);
        ks->rx_bytes += res->rx_bytes;
        h_add(&L->last, us);
        L->answered++;
        if (res->now_ns <= L->t_end_ns)
            L->answered_in_window++;
        if (res->outcome == CTL_ERROR) {
            ks->errors++;
            count_code(L->err_codes, res->err_code);
        } else {
            ks->responses++;
            path_errors(L, ks, res->msg);
        }
        break;
    }
    case CTL_TIMEOUT:
        ks->timeouts++;
        break;
    case CTL_FAILED:
        ks->failed++;
        break;
    case CTL_SENT:
        /* operate --no-resp from --paths: nothing comes back */
        ks->responses++;
        break;
    }
    if (L->phase == PH_DRAIN && L->outstanding == 0)
        finish_run(L);
}

/* ---- Phases -------------------------------------------------------------------------- */

static void start_load(struct load *L);

static void send_one(struct load *L, uint64_t due_ns)
{
    struct ctl_req *r = ctl_req_alloc(&L->ctl);
    if (!r) {
        L->not_sent++;
        return;
    }
    uint64_t x = rnd(L) % L->wsum;
    int k = 0;
    while (x >= L->cum[k])
        k++;
    Usp__Msg *m = L->tpl[k][L->ntpl[k] > 1 ? rnd(L) % L->ntpl[k] : 0];
    r->agent = L->agents[L->sent % L->nagents];
    r->msg = m;
    r->kind = (uint8_t)k;
    r->t0_ns = due_ns;
    L->k[k].sent++;
    L->outstanding++;
    /* An agent refuses a second run of a command with the same key while
     * the first runs (the Request table's unique key): give each its own.
     * The template is encoded inside the submit (no gate in load runs). */
    Usp__Operate *op = m->body->request->req_type_case == USP__REQUEST__REQ_TYPE_OPERATE
                           ? m->body->request->operate
                           : NULL;
    char *saved = op ? op->command_key : NULL;
    bool keyed = op && (!saved || !saved[0]);
    char key[32];
    if (keyed) {
        snprintf(key, sizeof key, "load-%" PRIu64, L->sent);
        op->command_key = key;
    }
    ctl_req_submit(&L->ctl, r, L->conf->timeout_ms);
    if (keyed)
        op->command_key = saved;
}

/* Request k is due at the first tick at or after t0 + k/R: the schedule
 * has the timer's granularity, so a sender on time adds no latency, and a
 * late one is charged from the tick it missed. */
static uint64_t due_of(const struct load *L, uint64_t k)
{
    double t = (double)k * L->interval_ns;
    double ticks = ceil(t / (TICK_MS * 1e6));
    return L->t0_ns + (uint64_t)(ticks * TICK_MS * 1e6);
}

static void on_tick(uv_timer_t *t)
{
    struct load *L = t->data;
    if (L->phase == PH_WARM) {
        warm_send(L);
        return;
    }
    if (L->phase != PH_LOAD)
        return;
    uint64_t now = uv_hrtime();
    /* Requests due by the last whole tick: k * interval <= that tick. */
    double tick_ns = TICK_MS * 1e6;
    double done_ticks = floor((double)(now - L->t0_ns) / tick_ns) * tick_ns;
    uint64_t due = (uint64_t)floor(done_ticks / L->interval_ns) + 1;
    if (due > L->total || now >= L->t_end_ns)
        due = L->total;
    for (unsigned n = 0; L->sent < due && n < MAX_PER_TICK; n++) {
        send_one(L, due_of(L, L->sent));
        L->sent++;
    }
    if (L->sent >= L->total && now >= L->t_end_ns) {
        L->phase = PH_DRAIN;
        L->t_drain_start = now;
        uv_timer_stop(&L->tick);
        if (L->outstanding == 0)
            finish_run(L);
    }
}

static void live_line(struct load *L, uint64_t now)
{
    double dt = (double)(now - L->last_report_ns) / 1e9;
    if (dt <= 0)
        return;
    double off = (double)(L->sent - L->last_sent) / dt;
    double done = (double)(L->answered - L->last_answered) / dt;
    uint64_t to = 0, err = 0;
    for (int k = 0; k < LK_COUNT; k++) {
        to += L->k[k].timeouts;
        err += L->k[k].errors + L->k[k].failed;
    }
    fprintf(stderr,
            "\r\033[K%6.1fs  offered %7.0f/s  completed %7.0f/s  in flight %6" PRIu64
            "  p50 %7.2f ms  p99 %7.2f ms  max %7.1f ms  timeouts %" PRIu64 "  errors %" PRIu64,
            (double)(now - L->t0_ns) / 1e9, off, done, L->outstanding,
            (double)h_quantile(&L->last, 0.5) / 1000.0, (double)h_quantile(&L->last, 0.99) / 1000.0,
            (double)L->last.max / 1000.0, to, err);
    fflush(stderr);
    memset(&L->last, 0, sizeof L->last);
    L->last_sent = L->sent;
    L->last_answered = L->answered;
    L->last_report_ns = now;
}

static void on_report(uv_timer_t *t)
{
    struct load *L = t->data;
    uint64_t now = uv_hrtime();
    if ((L->phase == PH_LOAD || L->phase == PH_DRAIN) && L->tty && !L->conf->quiet)
        live_line(L, now);
    if (L->phase == PH_DRAIN && L->outstanding == 0)
        finish_run(L);
}

static void on_phase_timer(uv_timer_t *t)
{
    struct load *L = t->data;
    if (L->phase == PH_WARM) {
        start_load(L); /* whoever has not answered yet gets the newest version */
    } else if (L->phase == PH_DRAIN || L->phase == PH_LOAD) {
        finish_run(L);
    }
}

static void warm_send(struct load *L)
{
    uint64_t now = uv_hrtime();
    double rate = L->lc->rate > WARM_RATE_MIN ? L->lc->rate : WARM_RATE_MIN;
    size_t due = (size_t)((double)(now - L->warm_t0) / 1e9 * rate) + 1;
    if (due > L->nagents)
        due = L->nagents;
    while (L->warm_next < due) {
        struct ctl_agent *a = L->agents[L->warm_next++];
        if (a->flags & CA_GSP_DONE) {
            L->warm_done++;
            L->warm_ok++;
            continue;
        }
        struct ctl_req *r = ctl_req_alloc(&L->ctl);
        if (!r) {
            L->warm_done++;
            continue;
        }
        r->agent = a;
        r->msg = L->ctl.gsp_msg;
        r->kind = KIND_WARM;
        ctl_req_submit(&L->ctl, r, L->conf->timeout_ms);
    }
    if (L->warm_done >= L->nagents)
        start_load(L);
}

static void start_load(struct load *L)
{
    if (L->phase != PH_WARM)
        return;
    uv_timer_stop(&L->phase_timer);
    if (!L->conf->quiet)
        fprintf(stderr,
                "uspsim controller load: %zu of %zu agents answered GetSupportedProtocol; "
                "%.0f requests/s for %.1f s\n",
                L->warm_ok, L->nagents, L->lc->rate, L->lc->duration);
    L->phase = PH_LOAD;
    L->t0_ns = uv_hrtime();
    L->interval_ns = 1e9 / L->lc->rate;
    L->total = (uint64_t)llround(L->lc->rate * L->lc->duration);
    if (L->total == 0)
        L->total = 1;
    L->t_end_ns = L->t0_ns + (uint64_t)(L->lc->duration * 1e9);
    L->last_report_ns = L->t0_ns;
    /* After the last request is due, wait one timeout for the stragglers. */
    uv_timer_start(&L->phase_timer, on_phase_timer,
                   (uint64_t)(L->lc->duration * 1000) + L->conf->timeout_ms + 1000, 0);
    uv_timer_start(&L->tick, on_tick, 0, TICK_MS);
}

static void finish_run(struct load *L)
{
    if (L->phase == PH_DONE)
        return;
    uint64_t now = uv_hrtime();
    L->elapsed_s =
        L->t0_ns ? (double)((now < L->t_end_ns ? now : L->t_end_ns) - L->t0_ns) / 1e9 : 0;
    L->phase = PH_DONE;
    uv_timer_stop(&L->tick);
    uv_timer_stop(&L->report);
    uv_timer_stop(&L->phase_timer);
    uv_stop(&L->loop);
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct load *L = h->data;
    if (L->interrupted || L->phase != PH_LOAD) {
        L->interrupted = true;
        finish_run(L);
        return;
    }
    L->interrupted = true;
    /* Stop sending now; wait a moment for what is in flight. */
    L->total = L->sent;
    L->t_end_ns = uv_hrtime();
    L->phase = PH_DRAIN;
    uv_timer_stop(&L->tick);
    uv_timer_start(&L->phase_timer, on_phase_timer, L->conf->timeout_ms, 0);
    if (!L->conf->quiet)
        fprintf(stderr, "\nuspsim controller load: interrupted; waiting for the answers in "
                        "flight (Ctrl-C again to stop now)\n");
}

/* ---- Set-up ----------------------------------------------------------------------------- */

static int add_template(struct load *L, const char *line, const char *where, bool *seen)
{
    Usp__Msg *m;
    struct usp_req_err err;
    int rc = usp_req_parse_line(L->arena, line, "-", &m, &err);
    if (rc == USP_ENOENT)
        return 0;
    if (rc) {
        fprintf(stderr, "uspsim controller load: %s: %s%s%s\n", where, err.cmd ? err.cmd : "",
                err.cmd ? ": " : "", err.msg);
        return -1;
    }
    int k = err.cmd ? ctl_load_kind(err.cmd) : -1;
    if (k < 0) {
        /* The parser tells its command only on errors: look at the word. */
        int argc;
        char **argv;
        struct usp_req_err e2;
        if (usp_req_split(L->arena, line, &argc, &argv, &e2) == 0 && argc > 0)
            k = ctl_load_kind(argv[0]);
    }
    if (k < 0) {
        fprintf(stderr,
                "uspsim controller load: %s: only get, set, operate, gsdm, instances and gsp "
                "requests can be mixed\n",
                where);
        return -1;
    }
    if (seen && !seen[k]) {
        /* The file replaces the defaults of each kind it names. */
        seen[k] = true;
        L->ntpl[k] = 0;
    }
    if (L->ntpl[k] >= MAX_TEMPLATES) {
        fprintf(stderr, "uspsim controller load: %s: more than %d %s requests\n", where,
                MAX_TEMPLATES, kind_names[k]);
        return -1;
    }
    m->header->msg_id = NULL;
    L->tpl[k][L->ntpl[k]++] = m;
    return 0;
}

static int load_templates(struct load *L)
{
    for (int k = 0; k < LK_COUNT; k++)
        if (add_template(L, kind_defaults[k], "default", NULL) != 0)
            return -1;
    if (!L->lc->paths_file)
        return 0;
    FILE *f = fopen(L->lc->paths_file, "r");
    if (!f) {
        fprintf(stderr, "uspsim controller load: --paths %s: %s\n", L->lc->paths_file,
                strerror(errno));
        return -1;
    }
    bool seen[LK_COUNT] = {false};
    char *line = NULL;
    size_t cap = 0;
    unsigned no = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        no++;
        line[strcspn(line, "\r\n")] = 0;
        char where[300];
        snprintf(where, sizeof where, "%s line %u", L->lc->paths_file, no);
        rc = add_template(L, line, where, seen);
    }
    free(line);
    fclose(f);
    return rc;
}

static int add_agent(struct load *L, struct ctl_agent *a)
{
    if (L->nagents == L->cap_agents) {
        size_t nc = L->cap_agents ? L->cap_agents * 2 : 1024;
        struct ctl_agent **v = realloc(L->agents, nc * sizeof *v);
        if (!v)
            return -1;
        L->agents = v;
        L->cap_agents = nc;
    }
    L->agents[L->nagents++] = a;
    return 0;
}

static int from_template(struct load *L)
{
    const struct ctl_load_conf *lc = L->lc;
    for (uint64_t i = 0; i < lc->count; i++) {
        char eid[256];
        if (sim_template_expand(lc->agents, lc->first_index + i, NULL, eid, sizeof eid) != 0)
            return -1;
        struct ctl_agent *a = ctl_agent_get(&L->ctl, eid, true, lc->first_index + i);
        if (!a || add_agent(L, a) != 0)
            return -1;
    }
    return 0;
}

struct match {
    struct load *L;
    size_t n;
    bool collect;
};

static void match_one(struct ctl_agent *a, void *arg)
{
    struct match *m = arg;
    if (!a->last_seen_ms || !ctl_glob(m->L->lc->agents, a->eid))
        return;
    m->n++;
    if (m->collect)
        add_agent(m->L, a);
}

static void on_discover_poll(uv_timer_t *t)
{
    struct load *L = t->data;
    struct match m = {.L = L};
    ctl_agents_each(&L->ctl, match_one, &m);
    if (L->lc->count_given && m.n >= L->lc->count)
        uv_stop(&L->loop);
}

static void on_discover_end(uv_timer_t *t)
{
    uv_stop(&((struct load *)t->data)->loop);
}

/* Agents by glob: those that show up within --discover seconds (or until
 * --count of them did). */
static int discover(struct load *L)
{
    const struct ctl_load_conf *lc = L->lc;
    if (!strpbrk(lc->agents, "*?[")) {
        struct ctl_agent *a = ctl_agent_get(&L->ctl, lc->agents, true, CTL_NO_INDEX);
        return a ? add_agent(L, a) : -1;
    }
    if (!L->conf->quiet)
        fprintf(stderr, "uspsim controller load: waiting up to %.1f s for agents matching %s\n",
                lc->discover_s, lc->agents);
    uv_timer_t poll, end;
    uv_timer_init(&L->loop, &poll);
    uv_timer_init(&L->loop, &end);
    poll.data = end.data = L;
    uv_timer_start(&poll, on_discover_poll, DISCOVER_POLL_MS, DISCOVER_POLL_MS);
    uv_timer_start(&end, on_discover_end, (uint64_t)(lc->discover_s * 1000), 0);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&poll, NULL);
    uv_close((uv_handle_t *)&end, NULL);
    uv_run(&L->loop, UV_RUN_NOWAIT);
    struct match m = {.L = L, .collect = true};
    ctl_agents_each(&L->ctl, match_one, &m);
    if (lc->count_given && L->nagents > lc->count)
        L->nagents = (size_t)lc->count;
    return 0;
}

/* ---- The summary --------------------------------------------------------------------------- */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void print_codes(FILE *f, const struct code_count *t, bool json)
{
    char eb[96];
    for (int i = 0; i < MAX_CODES && t[i].n; i++) {
        if (json)
            fprintf(f, "%s\"%" PRIu32 "\":%" PRIu64, i ? "," : "", t[i].code, t[i].n);
        else
            fprintf(f, "    %-40s %" PRIu64 "\n", ctl_err_str(t[i].code, eb, sizeof eb), t[i].n);
    }
}

static int summary(struct load *L)
{
    uint64_t sent = 0, resp = 0, errs = 0, tos = 0, failed = 0, perr = 0;
    for (int k = 0; k < LK_COUNT; k++) {
        sent += L->k[k].sent;
        resp += L->k[k].responses;
        errs += L->k[k].errors;
        tos += L->k[k].timeouts;
        failed += L->k[k].failed;
        perr += L->k[k].path_errors;
    }
    double secs = L->elapsed_s > 0 ? L->elapsed_s : 1e-9;
    const struct usp_mtp_stats *ms_ = usp_mtp_ctx_stats(L->ctl.mtp);
    double tx_avg = ms_->tx_records ? (double)ms_->tx_bytes / (double)ms_->tx_records : 0;
    double rx_avg = ms_->rx_records ? (double)ms_->rx_bytes / (double)ms_->rx_records : 0;
    uint64_t lost_in_flight = L->outstanding; /* neither answered nor timed out at the end */
    FILE *f = stdout;
    if (L->tty && !L->conf->quiet)
        fprintf(stderr, "\r\033[K");
    if (L->conf->json) {
        fprintf(f,
                "{\"agents\":%zu,\"agents_gsp_ok\":%zu,\"rate\":%.3f,\"duration_s\":%.3f,"
                "\"offered\":%" PRIu64 ",\"offered_per_s\":%.1f,\"completed\":%" PRIu64
                ",\"completed_per_s\":%.1f,\"completed_in_window\":%" PRIu64
                ",\"responses\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
                ",\"not_sent\":%" PRIu64 ",\"unfinished\":%" PRIu64 ",\"late\":%" PRIu64
                ",\"path_errors\":%" PRIu64 ",",
                L->nagents, L->warm_ok, L->lc->rate, L->elapsed_s, sent, (double)sent / secs,
                L->answered, (double)L->answered_in_window / secs, L->answered_in_window, resp,
                errs, tos, failed + L->not_sent, lost_in_flight, L->ctl.st.late, perr);
        fprintf(f,
                "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
                "\"mean\":%.3f},",
                ms(h_quantile(&L->all, 0.5)), ms(h_quantile(&L->all, 0.9)),
                ms(h_quantile(&L->all, 0.99)), ms(h_quantile(&L->all, 0.999)), ms(L->all.max),
                L->all.n ? (double)L->all.sum / (double)L->all.n / 1000.0 : 0.0);
        fprintf(f, "\"by_kind\":{");
        bool first = true;
        for (int k = 0; k < LK_COUNT; k++) {
            const struct kind_stats *ks = &L->k[k];
            if (!ks->sent)
                continue;
            fprintf(f,
                    "%s\"%s\":{\"sent\":%" PRIu64 ",\"responses\":%" PRIu64 ",\"errors\":%" PRIu64
                    ",\"timeouts\":%" PRIu64 ",\"not_sent\":%" PRIu64 ",\"path_errors\":%" PRIu64
                    ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"req_bytes_avg\":%.1f,"
                    "\"resp_bytes_avg\":%.1f}",
                    first ? "" : ",", kind_names[k], ks->sent, ks->responses, ks->errors,
                    ks->timeouts, ks->failed, ks->path_errors, ms(h_quantile(&ks->h, 0.5)),
                    ms(h_quantile(&ks->h, 0.99)), ms(ks->h.max),
                    ks->sent ? (double)ks->tx_bytes / (double)ks->sent : 0.0,
                    ks->h.n ? (double)ks->rx_bytes / (double)ks->h.n : 0.0);
            first = false;
        }
        fprintf(f, "},\"errors_by_code\":{");
        print_codes(f, L->err_codes, true);
        fprintf(f, "},\"path_errors_by_code\":{");
        print_codes(f, L->path_codes, true);
        fprintf(f,
                "},\"record_bytes\":{\"tx_avg\":%.1f,\"rx_avg\":%.1f},\"records\":{\"tx\":%" PRIu64
                ",\"rx\":%" PRIu64 "},\"interrupted\":%s}\n",
                tx_avg, rx_avg, ms_->tx_records, ms_->rx_records,
                L->interrupted ? "true" : "false");
    } else {
        fprintf(f,
                "uspsim controller load: %.1f s against %zu agents (%zu answered "
                "GetSupportedProtocol)%s\n",
                L->elapsed_s, L->nagents, L->warm_ok, L->interrupted ? ", interrupted" : "");
        fprintf(f, "  %-12s %" PRIu64 " (%.1f/s, target %.1f/s)\n", "offered", sent,
                (double)sent / secs, L->lc->rate);
        fprintf(f, "  %-12s %" PRIu64 " (%.1f/s within the run)\n", "completed", L->answered,
                (double)L->answered_in_window / secs);
        fprintf(f,
                "  %-12s %" PRIu64 " responses, %" PRIu64 " errors, %" PRIu64 " timeouts, %" PRIu64
                " not sent, %" PRIu64 " unfinished, %" PRIu64 " late\n",
                "outcome", resp, errs, tos, failed + L->not_sent, lost_in_flight, L->ctl.st.late);
        fprintf(f,
                "  %-12s p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms "
                "(from when each was due)\n",
                "latency", ms(h_quantile(&L->all, 0.5)), ms(h_quantile(&L->all, 0.9)),
                ms(h_quantile(&L->all, 0.99)), ms(h_quantile(&L->all, 0.999)), ms(L->all.max));
        for (int k = 0; k < LK_COUNT; k++) {
            const struct kind_stats *ks = &L->k[k];
            if (!ks->sent)
                continue;
            fprintf(f,
                    "  %-12s %" PRIu64 " sent, %" PRIu64 " ok, %" PRIu64 " errors, %" PRIu64
                    " timeouts; p50 %.2f ms, p99 %.2f ms; %.0f / %.0f bytes\n",
                    kind_names[k], ks->sent, ks->responses, ks->errors, ks->timeouts,
                    ms(h_quantile(&ks->h, 0.5)), ms(h_quantile(&ks->h, 0.99)),
                    ks->sent ? (double)ks->tx_bytes / (double)ks->sent : 0.0,
                    ks->h.n ? (double)ks->rx_bytes / (double)ks->h.n : 0.0);
        }
        if (L->err_codes[0].n) {
            fprintf(f, "  Error messages by code:\n");
            print_codes(f, L->err_codes, false);
        }
        if (L->path_codes[0].n) {
            fprintf(f, "  failures inside responses by code:\n");
            print_codes(f, L->path_codes, false);
        }
        fprintf(f, "  %-12s %.0f bytes sent, %.0f received on average per Record (all kinds)\n",
                "records", tx_avg, rx_avg);
    }
    fflush(f);
    bool ok =
        errs == 0 && tos == 0 && failed == 0 && L->not_sent == 0 && lost_in_flight == 0 && sent > 0;
    if (!ok && !L->conf->quiet)
        fprintf(stderr, "uspsim controller load: %s\n",
                sent == 0 ? "nothing was sent"
                          : "some requests failed (errors, timeouts or not sent)");
    return ok ? 0 : 1;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int ctl_load_run(const struct ctl_conf *conf, const char *url, const struct ctl_load_conf *lc)
{
    struct load *L = calloc(1, sizeof *L);
    if (!L) {
        fprintf(stderr, "uspsim controller load: out of memory\n");
        return 1;
    }
    int status = 1;
    char why[256];
    L->conf = conf;
    L->lc = lc;
    L->rng = 0x9e3779b97f4a7c15ull;
    L->tty = isatty(STDERR_FILENO);
    L->arena = usp_arena_new(0);
    if (!L->arena || uv_loop_init(&L->loop) != 0) {
        fprintf(stderr, "uspsim controller load: out of memory\n");
        usp_arena_free(L->arena);
        free(L);
        return 1;
    }
    if (load_templates(L) != 0) {
        status = 2;
        goto out_loop;
    }
    L->wsum = 0;
    for (int k = 0; k < LK_COUNT; k++) {
        L->wsum += lc->mix[k];
        L->cum[k] = L->wsum;
    }
    double pool = lc->rate * ((double)conf->timeout_ms / 1000.0 + 2.0) * 1.25 + 4096;
    uint64_t nag = strstr(lc->agents, "{n") ? lc->count : 0;
    pool += (double)nag;
    uint32_t npool = pool > POOL_MAX ? POOL_MAX : (uint32_t)pool;
    if (ctl_init(&L->ctl, &L->loop, conf, url, npool, why, sizeof why) != 0) {
        fprintf(stderr, "uspsim controller load: %s\n", why);
        goto out_ctl;
    }
    L->ctl.user = L;
    L->ctl.on_done = on_done;
    L->ctl.gsp_auto = true; /* agents that show up during the run */
    L->ctl.gsp_gate = false;
    L->ctl.lean_rx = true;
    if (ctl_wait_up(&L->ctl) != 0)
        goto out_ctl;
    int rc = strstr(lc->agents, "{n") ? from_template(L) : discover(L);
    if (rc != 0) {
        fprintf(stderr, "uspsim controller load: out of memory\n");
        goto out_ctl;
    }
    if (L->nagents == 0) {
        fprintf(stderr, "uspsim controller load: no agent matches %s%s\n", lc->agents,
                strstr(lc->agents, "{n") ? ""
                                         : " (agents are known from their MQTTConnectRecord or "
                                           "Boot!; give a template with {n} for others)");
        goto out_ctl;
    }
    uv_timer_init(&L->loop, &L->tick);
    uv_timer_init(&L->loop, &L->report);
    uv_timer_init(&L->loop, &L->phase_timer);
    L->tick.data = L->report.data = L->phase_timer.data = L;
    uv_signal_init(&L->loop, &L->sigint);
    uv_signal_init(&L->loop, &L->sigterm);
    L->sigint.data = L->sigterm.data = L;
    uv_signal_start(&L->sigint, on_signal, SIGINT);
    uv_signal_start(&L->sigterm, on_signal, SIGTERM);
    if (!conf->quiet)
        fprintf(stderr, "uspsim controller load: asking %zu agents for their USP versions\n",
                L->nagents);
    L->phase = PH_WARM;
    L->warm_t0 = uv_hrtime();
    /* The agreement gets the time all GSPs take to go out, plus a timeout. */
    double warm_rate = lc->rate > WARM_RATE_MIN ? lc->rate : WARM_RATE_MIN;
    uv_timer_start(&L->phase_timer, on_phase_timer,
                   (uint64_t)((double)L->nagents / warm_rate * 1000) + conf->timeout_ms, 0);
    uv_timer_start(&L->tick, on_tick, 0, TICK_MS);
    uv_timer_start(&L->report, on_report, 1000, 1000);
    while (L->phase != PH_DONE)
        uv_run(&L->loop, UV_RUN_DEFAULT);
    status = summary(L);
out_ctl:
    ctl_close(&L->ctl);
    ctl_cleanup(&L->ctl);
out_loop:
    uv_walk(&L->loop, close_walk, NULL);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    uv_loop_close(&L->loop);
    usp_arena_free(L->arena);
    free(L->agents);
    free(L);
    return status;
}
