/* `uspsim agents`: a fleet of virtual USP agents. The parent loads the
 * schema and profile, checks the machine's limits, starts the embedded
 * broker(s) when no --broker is given, forks the workers (which share the
 * loaded model read-only), shows live progress from their counters and
 * stops them cleanly at the end. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "broker.h"
#include "commands.h"
#include "fleet.h"
#include "opts.h"
#include "usp/dm_schema.h"
#include "mtp_opts.h"
#include "usp/eid.h"
#include "usp/profile.h"

#define MAX_WORKERS 64
#define FD_RESERVE 64            /* per worker: loop, pipes, logs, stdio */
#define BROKER_FD_RESERVE 50     /* per embedded mosquitto */
#define AGENTS_PER_BIND_ADDR 25000 /* below the ~28,000 ephemeral ports per source address */
#define AGENTS_PER_AUTO_ADDR 2000  /* loopback source addresses picked by uspsim itself */
#ifndef USPSIM_CONNECTING_PER_BROKER
#define USPSIM_CONNECTING_PER_BROKER 80
#endif

struct agents_opts {
    unsigned long count, first_index, qos, keepalive;
    const char *eid_template, *datamodel, *profile, *mqtt_version, *agent_topic;
    const char *controller_id, *controller_topic, *ramp, *duration, *workers, *bind;
    const char *stats_json;
    const char *brokers[SIM_MAX_BROKERS];
    unsigned nbrokers;
    const char *controllers[SIM_MAX_BROKERS];
    unsigned ncontrollers;
    struct sim_mtp_opts mtp;
    const char *e2e_mode, *e2e_fault;
    unsigned long e2e_max_record;
    bool quiet;
};

/* --broker and --controller: comma-separated URLs, repeatable. */
static int add_urls(const char **list, unsigned *n, const char *what, const char *val, char *why,
                    size_t whylen)
{
    /* The copies live until exit (kept here so that they stay reachable). */
    static char *copies[2 * SIM_MAX_BROKERS];
    static unsigned ncopies;
    if (ncopies >= sizeof copies / sizeof copies[0]) {
        snprintf(why, whylen, "too many %s options", what);
        return -1;
    }
    char *copy = strdup(val);
    if (!copy) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    copies[ncopies++] = copy;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n >= SIM_MAX_BROKERS) {
            snprintf(why, whylen, "more than %d %s", SIM_MAX_BROKERS, what);
            return -1;
        }
        if (!sim_mtp_url_binding(tok, NULL, why, whylen))
            return -1;
        list[(*n)++] = tok; /* `copy` lives until exit */
    }
    return 0;
}

static int set_broker(const struct sim_opt *o, void *ctx, const char *val, char *why,
                      size_t whylen)
{
    struct agents_opts *a = ctx;
    return val ? add_urls(a->brokers, &a->nbrokers, "brokers", val, why, whylen) : 0;
}

static int set_controller(const struct sim_opt *o, void *ctx, const char *val, char *why,
                          size_t whylen)
{
    struct agents_opts *a = ctx;
    return val ? add_urls(a->controllers, &a->ncontrollers, "controllers", val, why, whylen) : 0;
}

static const struct sim_opt agent_opts[] = {
    {.name = "count", .type = SIM_OPT_UINT, .def = "1000", .metavar = "N",
     .help = "number of agents", .set = sim_opt_set_uint,
     .off = offsetof(struct agents_opts, count)},
    {.name = "first-index", .type = SIM_OPT_UINT, .def = "1", .metavar = "I",
     .help = "index {n} of the first agent", .set = sim_opt_set_uint,
     .off = offsetof(struct agents_opts, first_index)},
    {.name = "endpoint-id", .type = SIM_OPT_STRING, .def = "os::012345-SIM{n:06}",
     .metavar = "TEMPLATE", .help = "Endpoint ID of agent {n} ({n:06} pads with zeros)",
     .set = sim_opt_set_str, .off = offsetof(struct agents_opts, eid_template)},
    {.name = "datamodel", .type = SIM_OPT_STRING, .metavar = "FILE.xml",
     .help = "TR-181 XML (default: datamodels/device-2-uspsim.xml)", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, datamodel)},
    {.name = "profile", .type = SIM_OPT_STRING, .def = "gateway", .metavar = "FILE|NAME",
     .help = "device profile: a file, or gateway, extender, iot", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, profile)},
    {.name = "broker", .type = SIM_OPT_STRING, .metavar = "URL[,URL...]",
     .help = "mqtt(s):// or stomp(s):// broker (repeatable; agents spread by index); default: "
             "an embedded mosquitto",
     .set = set_broker},
    {.name = "controller", .type = SIM_OPT_STRING, .metavar = "URL[,URL...]",
     .help = "ws(s)://, unix:PATH or coap(s):// of a controller that listens (agents connect)",
     .set = set_controller},
    {.name = "listen", .type = SIM_OPT_STRING, .metavar = "URL-TEMPLATE",
     .help = "each agent accepts its controller here, e.g. ws://127.0.0.1:91{n:02}/usp",
     .set = sim_opt_set_str, .off = offsetof(struct agents_opts, mtp.listen)},
    {.name = "mtp", .type = SIM_OPT_STRING, .metavar = "mqtt|stomp|ws|uds|coap",
     .help = "the binding (default: from the URLs' scheme, else mqtt)", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, mtp.mtp)},
    {.name = "certs", .type = SIM_OPT_STRING, .metavar = "DIR",
     .help = "TLS files made by `uspsim certs`: DIR/ca.pem, DIR/agents/{n}.pem and .key",
     .set = sim_opt_set_str, .off = offsetof(struct agents_opts, mtp.certs)},
    {.name = "ca", .type = SIM_OPT_STRING, .metavar = "FILE",
     .help = "CA certificate(s) trusted for the broker or controller", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, mtp.ca)},
    {.name = "cert", .type = SIM_OPT_STRING, .metavar = "TEMPLATE",
     .help = "each agent's certificate ({n}, {n:0W}, {eid})", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, mtp.cert)},
    {.name = "key", .type = SIM_OPT_STRING, .metavar = "TEMPLATE",
     .help = "each agent's private key ({n}, {n:0W}, {eid})", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, mtp.key)},
    {.name = "uds-tls", .type = SIM_OPT_FLAG, .help = "TLS on unix: connections (USP 1.4)",
     .set = sim_opt_set_flag, .off = offsetof(struct agents_opts, mtp.uds_tls)},
    {.name = "max-record", .type = SIM_OPT_UINT, .def = "0", .metavar = "BYTES",
     .help = "largest USP Record sent or accepted (0: 4 MiB)", .set = sim_opt_set_uint,
     .off = offsetof(struct agents_opts, mtp.max_record)},
    {.name = "mqtt-version", .type = SIM_OPT_STRING, .def = "5", .metavar = "5|3.1.1",
     .help = "MQTT protocol version", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, mqtt_version)},
    {.name = "agent-topic", .type = SIM_OPT_STRING, .def = "usp/agent/{eid}",
     .metavar = "TEMPLATE", .help = "topic each agent subscribes to", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, agent_topic)},
    {.name = "controller-id", .type = SIM_OPT_STRING, .def = "self::uspsim-controller",
     .metavar = "EID", .help = "the controller's Endpoint ID", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, controller_id)},
    {.name = "controller-topic", .type = SIM_OPT_STRING,
     .def = "usp/controller/uspsim-controller", .metavar = "TOPIC",
     .help = "the controller's topic", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, controller_topic)},
    {.name = "qos", .type = SIM_OPT_UINT, .def = "1", .metavar = "0|1",
     .help = "MQTT QoS of what the agents publish", .set = sim_opt_set_uint,
     .off = offsetof(struct agents_opts, qos)},
    {.name = "keepalive", .type = SIM_OPT_UINT, .def = "60", .metavar = "S",
     .help = "MQTT keep alive, seconds", .set = sim_opt_set_uint,
     .off = offsetof(struct agents_opts, keepalive)},
    {.name = "ramp", .type = SIM_OPT_STRING, .def = "0", .metavar = "RATE",
     .help = "agents started per second (0: as fast as possible)", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, ramp)},
    {.name = "duration", .type = SIM_OPT_STRING, .def = "0", .metavar = "D",
     .help = "run time (90, 90s, 5m, 1h; 0: until interrupted), then a clean shutdown",
     .set = sim_opt_set_str, .off = offsetof(struct agents_opts, duration)},
    {.name = "workers", .type = SIM_OPT_STRING, .def = "auto", .metavar = "N|auto",
     .help = "worker processes", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, workers)},
    {.name = "bind", .type = SIM_OPT_STRING, .metavar = "ADDR-RANGE",
     .help = "source addresses, e.g. 127.0.0.2-127.0.0.9", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, bind)},
    {.name = "stats-json", .type = SIM_OPT_STRING, .metavar = "FILE",
     .help = "write the counters as JSON lines every second", .set = sim_opt_set_str,
     .off = offsetof(struct agents_opts, stats_json)},
    {.name = "e2e", .type = SIM_OPT_STRING, .def = "Forbid", .metavar = "MODE[,Param=Value...]",
     .help = "E2E SessionMode (Require, Allow, Forbid: answers 7106) and E2ESession parameters",
     .set = sim_opt_set_str, .off = offsetof(struct agents_opts, e2e_mode)},
    {.name = "e2e-max-record", .type = SIM_OPT_UINT, .def = "0", .metavar = "BYTES",
     .help = "E2E MaxUSPRecordSize: segment larger Messages (0: never)",
     .set = sim_opt_set_uint, .off = offsetof(struct agents_opts, e2e_max_record)},
    {.name = "e2e-fault", .type = SIM_OPT_STRING, .metavar = "drop=N,swap=M",
     .help = "test fault: a worker drops its Nth segment Record, sends its Mth after the next",
     .set = sim_opt_set_str, .off = offsetof(struct agents_opts, e2e_fault)},
    {.name = "quiet", .type = SIM_OPT_FLAG, .help = "no live progress",
     .set = sim_opt_set_flag, .off = offsetof(struct agents_opts, quiet)},
    {.name = NULL},
};

static const struct sim_cmd_spec agents_spec = {
    .name = "agents",
    .args = "",
    .summary = "Run a fleet of virtual USP agents over MQTT.",
    .details = "Each agent has its own Device:2 data model (schema + profile), Endpoint ID,\n"
               "connection, subscriptions and notifications. Without --broker a mosquitto is\n"
               "started on a free loopback port for the run. Ctrl-C stops the fleet cleanly.\n",
    .opts = agent_opts,
};

/* ---- Small parsers -------------------------------------------------------- */

static int parse_duration(const char *s, double *secs)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || v < 0 || !isfinite(v))
        return -1;
    if (!*e || !strcmp(e, "s"))
        *secs = v;
    else if (!strcmp(e, "ms"))
        *secs = v / 1000;
    else if (!strcmp(e, "m"))
        *secs = v * 60;
    else if (!strcmp(e, "h"))
        *secs = v * 3600;
    else
        return -1;
    return 0;
}

static int parse_ipv4(const char *s, uint32_t *out)
{
    unsigned a, b, c, d;
    char tail;
    if (sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 || c > 255 ||
        d > 255)
        return -1;
    *out = a << 24 | b << 16 | c << 8 | d;
    return 0;
}

static int parse_bind(const char *s, struct sim_fleet *f, char *why, size_t whylen)
{
    char lo[48], hi[48];
    const char *dash = strchr(s, '-');
    size_t l = dash ? (size_t)(dash - s) : strlen(s);
    if (l >= sizeof lo || (dash && strlen(dash + 1) >= sizeof hi)) {
        snprintf(why, whylen, "address too long");
        return -1;
    }
    memcpy(lo, s, l);
    lo[l] = 0;
    snprintf(hi, sizeof hi, "%s", dash ? dash + 1 : lo);
    uint32_t a, b;
    if (parse_ipv4(lo, &a) || parse_ipv4(hi, &b) || b < a) {
        snprintf(why, whylen, "expected IPv4 addresses A or A-B with A <= B");
        return -1;
    }
    if (b - a + 1 > SIM_MAX_BIND) {
        snprintf(why, whylen, "at most %d addresses", SIM_MAX_BIND);
        return -1;
    }
    f->nbind = 0;
    for (uint64_t x = a; x <= b; x++)
        snprintf(f->bind_addrs[f->nbind++], sizeof f->bind_addrs[0], "%u.%u.%u.%u",
                 (unsigned)(x >> 24), (unsigned)(x >> 16) & 255, (unsigned)(x >> 8) & 255,
                 (unsigned)x & 255);
    return 0;
}

/* Where the shipped data models are: $USPSIM_DATADIR, or datamodels/ beside
 * the folder of the binary (build/uspsim -> datamodels/). */
static void data_dir(char *buf, size_t len)
{
    const char *env = getenv("USPSIM_DATADIR");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *dir = dirname(exe);
        snprintf(buf, len, "%s/../datamodels", dir);
        if (access(buf, R_OK) == 0)
            return;
        snprintf(buf, len, "%s/../../datamodels", dir);
        if (access(buf, R_OK) == 0)
            return;
    }
    snprintf(buf, len, "datamodels");
}

/* ---- Limits ------------------------------------------------------------- */

/* File descriptors one agent costs in a worker (its TCP socket; the MQTT
 * binding avoids libmosquitto's per-client socketpair). */
#define FDS_PER_AGENT 1

static unsigned long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (unsigned long)rl.rlim_cur;
}

static unsigned long ephemeral_ports(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    unsigned long lo = 32768, hi = 60999;
    if (f) {
        if (fscanf(f, "%lu %lu", &lo, &hi) != 2 || hi < lo) {
            lo = 32768;
            hi = 60999;
        }
        fclose(f);
    }
    return hi - lo + 1;
}

/* ---- The parent's view of the run --------------------------------------- */

struct run {
    struct sim_fleet f;
    struct sim_broker brokers[SIM_MAX_BROKERS];
    unsigned nembedded;
    pid_t pids[MAX_WORKERS];
    int stats_fd[MAX_WORKERS], ctl_fd[MAX_WORKERS];
    uv_poll_t polls[MAX_WORKERS];
    struct sim_stats last[MAX_WORKERS];
    bool got_final[MAX_WORKERS], exited[MAX_WORKERS];
    uint64_t per_worker[MAX_WORKERS], first_of[MAX_WORKERS];
    uv_loop_t loop;
    uv_timer_t tick, duration_timer, stop_timer;
    uv_signal_t sigint, sigterm;
    bool tty, quiet, stopping;
    FILE *json;
    uint64_t t0_ms;
    double ramp_done_s;     /* when every agent had sent its Boot!, or < 0 */
    double connected_all_s; /* when every agent was connected, or < 0 */
    struct sim_stats prev_sum;
    uint64_t prev_ms, json_ms;
    double rate_in, rate_out;
    unsigned finals;
};

static void sum_stats(const struct run *r, struct sim_stats *s)
{
    memset(s, 0, sizeof *s);
    for (unsigned i = 0; i < r->f.workers; i++) {
        const struct sim_stats *w = &r->last[i];
        s->agents += w->agents;
        s->started += w->started;
        s->connected += w->connected;
        s->ever_up += w->ever_up;
        s->reconnecting += w->reconnecting;
        s->msgs_in += w->msgs_in;
        s->msgs_out += w->msgs_out;
        s->requests += w->requests;
        s->notifs_sent += w->notifs_sent;
        s->notifs_retry += w->notifs_retry;
        s->notifs_pending += w->notifs_pending;
        s->notifs_acked += w->notifs_acked;
        s->boots_sent += w->boots_sent;
        s->errors_sent += w->errors_sent;
        s->dropped += w->dropped;
        s->drops += w->drops;
        s->mem_kb += w->mem_kb;
        s->cpu_ms += w->cpu_ms;
        s->e2e_sessions += w->e2e_sessions;
        s->e2e_retransmitted += w->e2e_retransmitted;
        s->e2e_reassembled += w->e2e_reassembled;
        s->e2e_segmented += w->e2e_segmented;
    }
}

static double elapsed_s(const struct run *r)
{
    return (double)(uv_now((uv_loop_t *)&r->loop) - r->t0_ms) / 1000.0;
}

static void progress(struct run *r)
{
    struct sim_stats s;
    sum_stats(r, &s);
    uint64_t now = uv_now(&r->loop);
    double dt = (double)(now - r->prev_ms) / 1000.0;
    if (dt > 0.2) {
        r->rate_in = (double)(s.msgs_in - r->prev_sum.msgs_in) / dt;
        r->rate_out = (double)(s.msgs_out - r->prev_sum.msgs_out) / dt;
        r->prev_sum = s;
        r->prev_ms = now;
    }
    double t = elapsed_s(r);
    /* Exact times come from the workers: the slowest one decides. */
    uint64_t up_ms = 0, boot_ms = 0;
    bool up_all = true, boot_all = true;
    for (unsigned i = 0; i < r->f.workers; i++) {
        const struct sim_stats *w = &r->last[i];
        up_all = up_all && w->up_done_ms;
        boot_all = boot_all && w->boot_done_ms;
        if (w->up_done_ms > up_ms)
            up_ms = w->up_done_ms;
        if (w->boot_done_ms > boot_ms)
            boot_ms = w->boot_done_ms;
    }
    if (r->connected_all_s < 0 && up_all)
        r->connected_all_s = (double)up_ms / 1000.0;
    if (r->ramp_done_s < 0 && boot_all)
        r->ramp_done_s = (double)boot_ms / 1000.0;
    if (r->json && (now - r->json_ms >= 1000 || r->stopping)) {
        r->json_ms = now;
        fprintf(r->json,
                "{\"t\":%.1f,\"agents\":%" PRIu64 ",\"started\":%" PRIu64
                ",\"connected\":%" PRIu64 ",\"reconnecting\":%" PRIu64 ",\"msgs_in\":%" PRIu64
                ",\"msgs_out\":%" PRIu64 ",\"msgs_in_per_s\":%.0f,\"msgs_out_per_s\":%.0f"
                ",\"requests\":%" PRIu64 ",\"notifs_sent\":%" PRIu64 ",\"notifs_retried\":%" PRIu64
                ",\"notifs_pending\":%" PRIu64 ",\"notifs_acked\":%" PRIu64
                ",\"boots_sent\":%" PRIu64 ",\"errors_sent\":%" PRIu64 ",\"dropped\":%" PRIu64
                ",\"connection_drops\":%" PRIu64 ",\"pss_kb\":%" PRIu64 ",\"cpu_ms\":%" PRIu64
                ",\"up_done_ms\":%" PRIu64 ",\"boot_done_ms\":%" PRIu64
                ",\"e2e_sessions\":%" PRIu64 ",\"e2e_retransmitted\":%" PRIu64
                ",\"e2e_reassembled\":%" PRIu64 ",\"e2e_segmented\":%" PRIu64 "}\n",
                t, s.agents, s.started, s.connected, s.reconnecting, s.msgs_in, s.msgs_out,
                r->rate_in, r->rate_out, s.requests, s.notifs_sent, s.notifs_retry,
                s.notifs_pending, s.notifs_acked, s.boots_sent, s.errors_sent, s.dropped, s.drops,
                s.mem_kb, s.cpu_ms, r->connected_all_s >= 0 ? (uint64_t)(r->connected_all_s * 1000) : 0,
                r->ramp_done_s >= 0 ? (uint64_t)(r->ramp_done_s * 1000) : 0, s.e2e_sessions,
                s.e2e_retransmitted, s.e2e_reassembled, s.e2e_segmented);
        fflush(r->json);
    }
    if (!r->tty || r->quiet)
        return;
    if (r->ramp_done_s < 0 && !r->stopping) {
        unsigned width = 24, fill = (unsigned)(width * (double)s.connected / (double)r->f.count);
        char bar[32];
        for (unsigned i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr,
                "\r\033[K[%s] ramp %7.1fs  connected %" PRIu64 "/%" PRIu64 "  Boot! sent %" PRIu64
                "  %.0f agents/s",
                bar, t, s.connected, r->f.count, s.boots_sent, t > 0 ? (double)s.ever_up / t : 0.0);
    } else {
        fprintf(stderr,
                "\r\033[K%7.1fs  connected %" PRIu64 "  reconnecting %" PRIu64
                "  in %.0f/s  out %.0f/s  requests %" PRIu64 "  notif pending %" PRIu64
                "  errors %" PRIu64,
                t, s.connected, s.reconnecting, r->rate_in, r->rate_out, s.requests,
                s.notifs_pending, s.errors_sent + s.dropped);
    }
    fflush(stderr);
}

static void on_tick(uv_timer_t *t)
{
    progress(t->data);
}

static void all_done_check(struct run *r)
{
    for (unsigned i = 0; i < r->f.workers; i++)
        if (!r->got_final[i] && !r->exited[i])
            return;
    uv_stop(&r->loop);
}

static void on_worker_stats(uv_poll_t *p, int status, int events)
{
    struct run *r = p->data;
    unsigned i = (unsigned)(p - r->polls);
    struct sim_stats s;
    ssize_t n = read(r->stats_fd[i], &s, sizeof s);
    if (n == (ssize_t)sizeof s) {
        r->last[i] = s;
        if (s.final) {
            r->got_final[i] = true;
            all_done_check(r);
        }
    } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        uv_poll_stop(p);
        r->exited[i] = true;
        all_done_check(r);
    }
}

static void on_stop_timeout(uv_timer_t *t)
{
    struct run *r = t->data;
    for (unsigned i = 0; i < r->f.workers; i++)
        if (!r->got_final[i] && r->pids[i] > 0)
            kill(r->pids[i], SIGKILL);
    uv_stop(&r->loop);
}

static void begin_stop(struct run *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    for (unsigned i = 0; i < r->f.workers; i++)
        (void)!write(r->ctl_fd[i], "q", 1);
    uv_timer_start(&r->stop_timer, on_stop_timeout, 15000, 0);
}

static void on_duration(uv_timer_t *t)
{
    begin_stop(t->data);
}

static void on_signal(uv_signal_t *s, int sig)
{
    struct run *r = s->data;
    if (r->stopping) { /* a second Ctrl-C: stop now */
        on_stop_timeout(&r->stop_timer);
        return;
    }
    begin_stop(r);
}

static void print_summary(struct run *r, double secs)
{
    struct sim_stats s;
    sum_stats(r, &s);
    FILE *o = stdout;
    if (r->tty && !r->quiet)
        fprintf(stderr, "\r\033[K");
    fprintf(o, "\nuspsim agents: summary after %.1f s\n", secs);
    fprintf(o, "  %-34s %" PRIu64 " in %u worker%s, %u broker%s%s\n", "agents", r->f.count,
            r->f.workers, r->f.workers == 1 ? "" : "s", r->f.nbrokers,
            r->f.nbrokers == 1 ? "" : "s", r->nembedded ? " (embedded)" : "");
    fprintf(o, "  %-34s %" PRIu64 "\n", "connected at least once", s.ever_up);
    if (r->connected_all_s >= 0)
        fprintf(o, "  %-34s %.2f s (%.0f agents/s)\n", "all connected after",
                r->connected_all_s, (double)r->f.count / r->connected_all_s);
    if (r->ramp_done_s >= 0)
        fprintf(o, "  %-34s %.2f s (%.0f agents/s)\n", "all Boot! sent after", r->ramp_done_s,
                (double)r->f.count / r->ramp_done_s);
    fprintf(o, "  %-34s %" PRIu64 "\n", "connections lost", s.drops);
    fprintf(o, "  %-34s %" PRIu64 " in, %" PRIu64 " out\n", "records", s.msgs_in, s.msgs_out);
    fprintf(o, "  %-34s %" PRIu64 "\n", "requests handled", s.requests);
    fprintf(o, "  %-34s %" PRIu64 " (%" PRIu64 " Boot!), %" PRIu64 " retries, %" PRIu64
            " acknowledged\n", "notifications sent", s.notifs_sent, s.boots_sent, s.notifs_retry,
            s.notifs_acked);
    fprintf(o, "  %-34s %" PRIu64 "\n", "notifications unacknowledged", s.notifs_pending);
    fprintf(o, "  %-34s %" PRIu64 " Error replies, %" PRIu64 " records dropped\n", "errors",
            s.errors_sent, s.dropped);
    if (s.mem_kb)
        fprintf(o, "  %-34s %.1f MiB (%.1f KiB per agent, workers' PSS)\n", "memory",
                (double)s.mem_kb / 1024, (double)s.mem_kb / (double)(r->f.count ? r->f.count : 1));
    fflush(o);
}

/* The profile as the command line fills it: the chosen profile, then the
 * values the options set (later lines win). */
static int build_profile(const struct agents_opts *o, const char *path, const struct sim_fleet *fl,
                         struct usp_profile **out)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        fprintf(stderr, "uspsim agents: profile %s: %s (shipped profiles: gateway, extender, iot)\n", path, strerror(errno));
        return -1;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", real);
    char *d = dirname(dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -1;
    fprintf(f, "include \"%s\"\n", real);
    fprintf(f, "Device.LocalAgent.Controller.1.EndpointID = \"%s\"\n", o->controller_id);
    fprintf(f, "Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic = \"%s\"\n",
            o->controller_topic);
    if (o->agent_topic)
        fprintf(f, "Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured = \"%s\"\n",
                o->agent_topic);
    fprintf(f, "Device.LocalAgent.Controller.1.E2ESession.SessionMode = \"%s\"\n",
            fl->e2e.mode == USP_E2E_REQUIRE ? "Require"
            : fl->e2e.mode == USP_E2E_ALLOW ? "Allow"
                                            : "Forbid");
    /* TR-181 allows 0 or 512 and more; smaller test values stay out of
     * the data model (the sessions use them all the same). */
    if (fl->e2e.max_record_size == 0 || fl->e2e.max_record_size >= 512)
        fprintf(f, "Device.LocalAgent.Controller.1.E2ESession.MaxUSPRecordSize = %lu\n",
                (unsigned long)fl->e2e.max_record_size);
    fprintf(f, "Device.MQTT.Client.1.KeepAliveTime = %lu\n", o->keepalive);
    fprintf(f, "Device.MQTT.Client.1.ProtocolVersion = \"%s\"\n",
            !strcmp(o->mqtt_version, "5") ? "5.0" : "3.1.1");
    struct usp_mtp_url u;
    if (!strcmp(fl->binding, "mqtt") && fl->nbrokers == 1 &&
        usp_mtp_url_parse(fl->brokers[0], &u, NULL, 0) == 0) {
        fprintf(f, "Device.MQTT.Client.1.BrokerAddress = \"%s\"\n", u.host);
        fprintf(f, "Device.MQTT.Client.1.BrokerPort = %u\n", (unsigned)u.port);
    }
    fclose(f);
    struct usp_profile_err err;
    int rc = usp_profile_parse_mem("command line", text, len, d, out, &err);
    if (rc)
        fprintf(stderr, "uspsim agents: %s\n", err.text);
    free(text);
    return rc ? -1 : 0;
}

/* --e2e, --e2e-max-record and --e2e-fault into the fleet's E2E settings. */
static int parse_e2e(const struct agents_opts *o, struct sim_fleet *f, char *why, size_t whylen)
{
    if (sim_e2e_parse(o->e2e_mode, o->e2e_max_record, &f->e2e, why, whylen) != 0)
        return -1;
    f->e2e_drop_nth = f->e2e_swap_nth = 0;
    if (!o->e2e_fault)
        return 0;
    char *copy = strdup(o->e2e_fault);
    if (!copy) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && !rc;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *e;
        unsigned long n = eq ? strtoul(eq + 1, &e, 10) : 0;
        if (!eq || e == eq + 1 || *e || n == 0 || n > UINT32_MAX)
            rc = -1;
        else if (!strncmp(tok, "drop=", 5))
            f->e2e_drop_nth = (uint32_t)n;
        else if (!strncmp(tok, "swap=", 5))
            f->e2e_swap_nth = (uint32_t)n;
        else
            rc = -1;
        if (rc)
            snprintf(why, whylen, "--e2e-fault '%s': expected drop=N and/or swap=M (N, M >= 1)",
                     o->e2e_fault);
    }
    free(copy);
    if (!rc && f->e2e.mode == USP_E2E_FORBID) {
        snprintf(why, whylen, "--e2e-fault needs --e2e Allow or Require");
        rc = -1;
    }
    return rc;
}

int sim_cmd_agents(int argc, char **argv)
{
    struct agents_opts o;
    memset(&o, 0, sizeof o);
    int n = sim_opts_parse(&agents_spec, &o, argc, argv, 0);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n > 0)
        return sim_opts_usage_error(&agents_spec, "unexpected argument '%s'", argv[1]);

    static struct run run;
    struct run *r = &run;
    memset(r, 0, sizeof *r);
    r->ramp_done_s = r->connected_all_s = -1;
    struct sim_fleet *f = &r->f;
    char why[256];

    if (o.count == 0 || o.count > 10000000)
        return sim_opts_usage_error(&agents_spec, "--count must be 1..10000000");
    if (o.qos > 1)
        return sim_opts_usage_error(&agents_spec, "--qos must be 0 or 1");
    if (o.keepalive != 0 && (o.keepalive < 5 || o.keepalive > 65535))
        return sim_opts_usage_error(&agents_spec, "--keepalive must be 0 or 5..65535");
    if (strcmp(o.mqtt_version, "5") && strcmp(o.mqtt_version, "3.1.1"))
        return sim_opts_usage_error(&agents_spec, "--mqtt-version must be 5 or 3.1.1");
    double ramp, duration;
    if (parse_duration(o.duration, &duration))
        return sim_opts_usage_error(&agents_spec, "--duration: '%s' is not a duration",
                                    o.duration);
    char *e;
    ramp = strtod(o.ramp, &e);
    if (e == o.ramp || *e || ramp < 0 || !isfinite(ramp))
        return sim_opts_usage_error(&agents_spec, "--ramp: '%s' is not a rate", o.ramp);
    if (o.bind && parse_bind(o.bind, f, why, sizeof why))
        return sim_opts_usage_error(&agents_spec, "--bind %s: %s", o.bind, why);
    if (!usp_eid_valid(o.controller_id))
        return sim_opts_usage_error(&agents_spec, "--controller-id '%s' is not an Endpoint ID",
                                    o.controller_id);
    struct sim_mtp_choice mc;
    if (sim_mtp_choose(&o.mtp, o.brokers, o.nbrokers, o.controllers, o.ncontrollers,
                       "--controller", true, &mc, why, sizeof why) != 0)
        return sim_opts_usage_error(&agents_spec, "%s", why);
    if (parse_e2e(&o, f, why, sizeof why) != 0)
        return sim_opts_usage_error(&agents_spec, "%s", why);
    f->binding = mc.binding;
    f->p2p = !mc.brokered;
    f->listen = o.mtp.listen;
    if (!strcmp(mc.binding, "coap")) {
        f->usp_version = "1.2";
        f->versions = "1.0,1.1,1.2";
    }
    f->tls = mc.tls_cfg;
    f->max_record = (uint32_t)o.mtp.max_record;
    if (f->listen && strcmp(mc.binding, "coap") != 0) {
        char u1[512], u2[512];
        if (sim_template_expand(f->listen, o.first_index, "x", u1, sizeof u1) != 0 ||
            sim_template_expand(f->listen, o.first_index + o.count - 1, "x", u2, sizeof u2) != 0)
            return sim_opts_usage_error(&agents_spec,
                                        "--listen '%s': unknown field or too long (fields: {n}, "
                                        "{n:0W}, {eid})",
                                        f->listen);
        if (o.count > 1 && !strcmp(u1, u2))
            return sim_opts_usage_error(&agents_spec,
                                        "--listen '%s' gives every agent the same URL: use {n} "
                                        "(e.g. ws://127.0.0.1:91{n:02}/usp)",
                                        f->listen);
    }
    /* STOMP: destinations a broker such as RabbitMQ accepts, unless given. */
    static char ctl_dest[300];
    bool stomp = !strcmp(mc.binding, "stomp");
    if (stomp && !strcmp(o.agent_topic, "usp/agent/{eid}"))
        o.agent_topic = NULL; /* the worker makes /queue/usp.agent.<eid> */
    if (stomp && !strcmp(o.controller_topic, "usp/controller/uspsim-controller")) {
        if (usp_mtp_stomp_dest(USP_MTP_CONTROLLER, o.controller_id, ctl_dest, sizeof ctl_dest))
            return sim_opts_usage_error(&agents_spec, "--controller-id '%s': no STOMP "
                                        "destination can be made from it", o.controller_id);
        o.controller_topic = ctl_dest;
    }

    f->count = o.count;
    f->first_index = o.first_index;
    f->eid_template = o.eid_template;
    f->agent_topic = o.agent_topic;
    f->controller_id = o.controller_id;
    f->controller_topic = o.controller_topic;
    f->mqtt_version = !strcmp(o.mqtt_version, "5") ? USP_MQTT_V5 : USP_MQTT_V311;
    f->qos = (int)o.qos;
    f->keepalive = (uint32_t)o.keepalive;
    f->ramp = ramp;

    /* Every Endpoint ID the template makes must be valid: check both ends. */
    uint64_t ends[2] = {o.first_index, o.first_index + o.count - 1};
    for (int i = 0; i < 2; i++) {
        char eid[256], topic[256], ewhy[200];
        struct usp_eid pe;
        if (sim_template_expand(o.eid_template, ends[i], NULL, eid, sizeof eid))
            return sim_opts_usage_error(&agents_spec,
                                        "--endpoint-id '%s': unknown field or too long "
                                        "(fields: {n}, {n:0W})",
                                        o.eid_template);
        if (usp_eid_parse(eid, &pe, ewhy, sizeof ewhy))
            return sim_opts_usage_error(&agents_spec, "--endpoint-id gives '%s' for agent %" PRIu64
                                        ": %s", eid, ends[i], ewhy);
        if (o.agent_topic && sim_template_expand(o.agent_topic, ends[i], eid, topic, sizeof topic))
            return sim_opts_usage_error(&agents_spec,
                                        "--agent-topic '%s': unknown field or too long "
                                        "(fields: {n}, {n:0W}, {eid})",
                                        o.agent_topic);
    }

    struct usp_dm_schema *schema = NULL;
    struct usp_profile *profile = NULL;
    struct usp_dm_model *model = NULL;
    int status = 1;

    /* Limits, before anything starts: open files per worker and per broker,
     * ephemeral ports per source address. */
    unsigned long nofile = raise_nofile();
    unsigned long per_worker_max =
        nofile > FD_RESERVE + FDS_PER_AGENT ? (nofile - FD_RESERVE) / FDS_PER_AGENT : 1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    if (!strcmp(o.workers, "auto")) {
        uint64_t w = (o.count + per_worker_max - 1) / per_worker_max;
        if (o.count >= 2000 && w < (uint64_t)ncpu)
            w = (uint64_t)ncpu;
        if (w > MAX_WORKERS) {
            fprintf(stderr,
                    "uspsim agents: %lu agents need %" PRIu64 " workers at %lu agents per worker "
                    "(open-files limit RLIMIT_NOFILE = %lu), more than the %d uspsim runs; run "
                    "several uspsim processes with --first-index\n",
                    o.count, w, per_worker_max, nofile, MAX_WORKERS);
            goto out;
        }
        f->workers = (unsigned)(w ? w : 1);
    } else {
        unsigned long w = strtoul(o.workers, &e, 10);
        if (e == o.workers || *e || w < 1 || w > MAX_WORKERS) {
            status = sim_opts_usage_error(&agents_spec, "--workers must be auto or 1..%d",
                                          MAX_WORKERS);
            goto out;
        }
        if ((o.count + w - 1) / w > per_worker_max) {
            fprintf(stderr,
                    "uspsim agents: %lu agents over %lu worker%s is %lu per worker, but the "
                    "open-files limit (RLIMIT_NOFILE) is %lu, enough for %lu agents per worker: "
                    "use --workers %lu or more, or --workers auto\n",
                    o.count, w, w == 1 ? "" : "s", (o.count + w - 1) / w, nofile,
                    per_worker_max, (o.count + per_worker_max - 1) / per_worker_max);
            goto out;
        }
        f->workers = (unsigned)w;
    }
    if (f->workers > o.count)
        f->workers = (unsigned)o.count;

    if (f->p2p) {
        for (unsigned i = 0; i < o.ncontrollers; i++)
            f->brokers[f->nbrokers++] = o.controllers[i];
        if (f->listen && f->nbrokers == 0)
            f->brokers[f->nbrokers++] = f->listen; /* for the summary lines only */
    } else if (o.nbrokers == 0) {
        /* Each mosquitto has the same open-files limit as we do. */
        unsigned long per_broker = nofile > BROKER_FD_RESERVE ? nofile - BROKER_FD_RESERVE : 1;
        unsigned long nb = (o.count + per_broker - 1) / per_broker;
        if (nb > SIM_MAX_BROKERS) {
            fprintf(stderr, "uspsim agents: %lu agents need %lu embedded brokers (%lu clients "
                            "each, open-files limit %lu), more than %d\n",
                    o.count, nb, per_broker, nofile, SIM_MAX_BROKERS);
            goto out;
        }
        for (unsigned long i = 0; i < nb; i++) {
            char err[512];
            if (sim_broker_start(&r->brokers[i], 5000, err, sizeof err) != 0) {
                fprintf(stderr, "uspsim agents: %s\n", err);
                goto out;
            }
            r->nembedded++;
            f->brokers[f->nbrokers++] = r->brokers[i].url;
        }
    } else {
        for (unsigned i = 0; i < o.nbrokers; i++)
            f->brokers[f->nbrokers++] = o.brokers[i];
    }
    /* The data model: schema once, profile once, bound once, shared by all. */
    char ddir[PATH_MAX], model_path[PATH_MAX + 64], prof_path[PATH_MAX + 64];
    data_dir(ddir, sizeof ddir);
    if (o.datamodel)
        snprintf(model_path, sizeof model_path, "%s", o.datamodel);
    else
        snprintf(model_path, sizeof model_path, "%s/device-2-uspsim.xml", ddir);
    if (strchr(o.profile, '/') || strstr(o.profile, ".prof"))
        snprintf(prof_path, sizeof prof_path, "%s", o.profile);
    else
        snprintf(prof_path, sizeof prof_path, "%s/profiles/%s.prof", ddir, o.profile);
    struct usp_dm_error derr;
    if (usp_dm_load_file(model_path, 0, &schema, &derr) != 0) {
        fprintf(stderr, "uspsim agents: %s\n", derr.msg);
        goto out;
    }
    if (build_profile(&o, prof_path, f, &profile) != 0)
        goto out;
    struct usp_dm_model_err merr;
    if (usp_dm_model_new(schema, profile, &model, &merr) != 0) {
        fprintf(stderr, "uspsim agents: %s\n", merr.msg);
        goto out;
    }
    f->model = model;

    /* Against loopback brokers, spread the agents over 127.0.x.y source
     * addresses: with thousands of connections from one address the kernel
     * spends its time searching for a free ephemeral port (measured: 1,300
     * connects/s at 19,000 agents from one address). */
    if (f->nbind == 0 && o.count > AGENTS_PER_AUTO_ADDR) {
        bool loopback = true;
        for (unsigned i = 0; i < f->nbrokers; i++) {
            struct usp_mtp_url u;
            if (usp_mtp_url_parse(f->brokers[i], &u, NULL, 0) != 0 ||
                u.host_kind != USP_MTP_HOST_IPV4 || strncmp(u.host, "127.", 4) != 0)
                loopback = false;
        }
        if (loopback) {
            uint64_t na = (o.count + AGENTS_PER_AUTO_ADDR - 1) / AGENTS_PER_AUTO_ADDR;
            if (na > SIM_MAX_BIND)
                na = SIM_MAX_BIND;
            for (uint64_t i = 0; i < na; i++)
                snprintf(f->bind_addrs[f->nbind++], sizeof f->bind_addrs[0], "127.0.%u.%u",
                         (unsigned)(1 + i / 250), (unsigned)(1 + i % 250));
        }
    }
    uint64_t per_broker_agents = (o.count + f->nbrokers - 1) / f->nbrokers;
    unsigned long ports = ephemeral_ports();
    uint64_t per_addr = (per_broker_agents + (f->nbind ? f->nbind : 1) - 1) / (f->nbind ? f->nbind : 1);
    if (per_addr > ports) {
        fprintf(stderr,
                "uspsim agents: %" PRIu64 " connections from one source address to one broker, "
                "but only %lu ephemeral ports exist (net.ipv4.ip_local_port_range): add brokers "
                "or source addresses with --bind, e.g. --bind 127.0.0.2-127.0.0.%" PRIu64 "\n",
                per_addr, ports, 1 + (per_broker_agents + AGENTS_PER_BIND_ADDR - 1) /
                                         AGENTS_PER_BIND_ADDR);
        goto out;
    }
    /* Connects in flight per broker (until CONNACK), over all workers: the
     * broker's listen backlog is 100 (mosquitto) and SYNs beyond it wait 1 s
     * for a retransmission (measured: 2 workers x 100 took 1.0 s for 1,000
     * agents, 2 x 40 took 0.1 s). */
    f->max_connecting = (uint32_t)(USPSIM_CONNECTING_PER_BROKER * f->nbrokers / f->workers);
    if (f->max_connecting < 8)
        f->max_connecting = 8;

    if (sim_mtp_register_all(why, sizeof why) != 0) {
        fprintf(stderr, "uspsim agents: %s\n", why);
        goto out;
    }
    r->tty = isatty(STDERR_FILENO);
    r->quiet = o.quiet;
    if (o.stats_json) {
        r->json = fopen(o.stats_json, "w");
        if (!r->json) {
            fprintf(stderr, "uspsim agents: --stats-json %s: %s\n", o.stats_json,
                    strerror(errno));
            goto out;
        }
    }
    if (!r->quiet)
        fprintf(stderr,
                "uspsim agents: %lu agents (%s profile, %s), %u worker%s, broker%s %s%s, "
                "%u source address%s\n",
                o.count, usp_profile_name(profile), usp_dm_schema_model(schema), f->workers,
                f->workers == 1 ? "" : "s", f->nbrokers == 1 ? "" : "s", f->brokers[0],
                f->nbrokers > 1 ? " ..." : "", f->nbind ? f->nbind : 1,
                f->nbind > 1 ? "es" : "");

    /* Fork the workers: they inherit the loaded model copy-on-write. */
    fflush(NULL);
    f->t0_ns = uv_hrtime();
    uint64_t next = o.first_index;
    for (unsigned i = 0; i < f->workers; i++) {
        r->per_worker[i] = o.count / f->workers + (i < o.count % f->workers);
        r->first_of[i] = next;
        next += r->per_worker[i];
        int sp[2], cp[2];
        if (pipe(sp) != 0 || pipe(cp) != 0) {
            fprintf(stderr, "uspsim agents: pipe: %s\n", strerror(errno));
            goto out_workers;
        }
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "uspsim agents: fork: %s\n", strerror(errno));
            goto out_workers;
        }
        if (pid == 0) {
            close(sp[0]);
            close(cp[1]);
            for (unsigned j = 0; j < i; j++) {
                close(r->stats_fd[j]);
                close(r->ctl_fd[j]);
            }
            int rc = sim_worker_main(f, i, r->first_of[i], r->per_worker[i], sp[1], cp[0]);
            fflush(NULL);
            _exit(rc);
        }
        close(sp[1]);
        close(cp[0]);
        r->pids[i] = pid;
        r->stats_fd[i] = sp[0];
        r->ctl_fd[i] = cp[1];
    }

    uv_loop_init(&r->loop);
    for (unsigned i = 0; i < f->workers; i++) {
        uv_poll_init(&r->loop, &r->polls[i], r->stats_fd[i]);
        r->polls[i].data = r;
        uv_poll_start(&r->polls[i], UV_READABLE, on_worker_stats);
    }
    uv_timer_init(&r->loop, &r->tick);
    uv_timer_init(&r->loop, &r->duration_timer);
    uv_timer_init(&r->loop, &r->stop_timer);
    r->tick.data = r->duration_timer.data = r->stop_timer.data = r;
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigint.data = r->sigterm.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    r->t0_ms = r->prev_ms = uv_now(&r->loop);
    uv_timer_start(&r->tick, on_tick, 250, 250);
    if (duration > 0)
        uv_timer_start(&r->duration_timer, on_duration, (uint64_t)(duration * 1000), 0);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    double secs = elapsed_s(r);
    progress(r);
    print_summary(r, secs);
    status = 0;
    for (unsigned i = 0; i < f->workers; i++)
        if (!r->got_final[i])
            status = 1;

out_workers:
    for (unsigned i = 0; i < f->workers; i++) {
        if (r->pids[i] <= 0)
            continue;
        int ws;
        if (!r->stopping && !r->got_final[i])
            kill(r->pids[i], SIGTERM);
        waitpid(r->pids[i], &ws, 0);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
            fprintf(stderr, "uspsim agents: worker %u ended with status %d\n", i,
                    WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws));
            status = 1;
        }
        close(r->stats_fd[i]);
        close(r->ctl_fd[i]);
    }
    if (r->json)
        fclose(r->json);
out:
    for (unsigned i = 0; i < r->nembedded; i++)
        sim_broker_stop(&r->brokers[i]);
    usp_dm_model_free(model);
    usp_profile_free(profile);
    usp_dm_schema_free(schema);
    return status;
}
