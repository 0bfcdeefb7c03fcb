/* `uspsim controller` and `uspsim controller load`: options, checks, the
 * embedded broker, then the shell (ctl_shell.c) or the load (ctl_load.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "commands.h"
#include "ctl.h"
#include "fleet.h"
#include "mtp_opts.h"
#include "opts.h"
#include "usp/eid.h"
#include "usp/reqlang.h"

#define MAX_EXECS 256

#define MAX_AGENT_URLS 1024

struct ctl_cli {
    const char *broker, *eid, *topic, *agent_topic, *mqtt_version, *timeout, *connect_timeout;
    struct sim_mtp_opts mtp;
    const char *e2e_mode;
    unsigned long e2e_max_record;
    const char *agent_urls[MAX_AGENT_URLS];
    unsigned nagent_urls;
    unsigned long qos;
    bool json, quiet, watch;
    /* controller */
    const char *to;
    const char *execs[MAX_EXECS];
    int nexecs;
    /* load */
    const char *rate, *duration, *mix, *agents, *paths, *discover;
    unsigned long count, first_index;
    bool count_given;
};

static int set_agent_url(const struct sim_opt *o, void *ctx, const char *val, char *why,
                         size_t whylen)
{
    struct ctl_cli *c = ctx;
    if (!val)
        return 0;
    if (c->nagent_urls >= MAX_AGENT_URLS) {
        snprintf(why, whylen, "more than %d agent URLs", MAX_AGENT_URLS);
        return -1;
    }
    if (!sim_mtp_url_binding(val, NULL, why, whylen))
        return -1;
    c->agent_urls[c->nagent_urls++] = val;
    return 0;
}

static int set_exec(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen)
{
    struct ctl_cli *c = ctx;
    if (c->nexecs >= MAX_EXECS) {
        snprintf(why, whylen, "more than %d requests", MAX_EXECS);
        return -1;
    }
    c->execs[c->nexecs++] = val;
    return 0;
}

static int set_count(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen)
{
    struct ctl_cli *c = ctx;
    if (sim_opt_set_uint(o, ctx, val, why, whylen) != 0)
        return -1;
    if (val != o->def)
        c->count_given = true;
    return 0;
}

/* The options both commands take (each command's table is joined to it). */
static const struct sim_opt common_opts[] = {
    {.name = "broker",
     .type = SIM_OPT_STRING,
     .metavar = "URL",
     .help = "mqtt(s):// or stomp(s):// broker (default: start an embedded mosquitto)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, broker)},
    {.name = "listen",
     .type = SIM_OPT_STRING,
     .metavar = "URL",
     .help = "accept agents at ws(s)://ADDR:PORT/PATH, unix:PATH or coap(s)://",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mtp.listen)},
    {.name = "agent",
     .type = SIM_OPT_STRING,
     .metavar = "URL",
     .help = "connect to an agent that listens (ws(s)://, unix:, coap(s)://; repeatable)",
     .set = set_agent_url},
    {.name = "mtp",
     .type = SIM_OPT_STRING,
     .metavar = "mqtt|stomp|ws|uds|coap",
     .help = "the binding (default: from the URL's scheme, else mqtt)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mtp.mtp)},
    {.name = "certs",
     .type = SIM_OPT_STRING,
     .metavar = "DIR",
     .help = "TLS files made by `uspsim certs`: DIR/ca.pem, DIR/controller.pem and .key",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mtp.certs)},
    {.name = "ca",
     .type = SIM_OPT_STRING,
     .metavar = "FILE",
     .help = "CA certificate(s) trusted for brokers and agents",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mtp.ca)},
    {.name = "cert",
     .type = SIM_OPT_STRING,
     .metavar = "FILE",
     .help = "the controller's certificate",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mtp.cert)},
    {.name = "key",
     .type = SIM_OPT_STRING,
     .metavar = "FILE",
     .help = "the controller's private key",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mtp.key)},
    {.name = "uds-tls",
     .type = SIM_OPT_FLAG,
     .help = "TLS on unix: sessions (USP 1.4)",
     .set = sim_opt_set_flag,
     .off = offsetof(struct ctl_cli, mtp.uds_tls)},
    {.name = "max-record",
     .type = SIM_OPT_UINT,
     .def = "0",
     .metavar = "BYTES",
     .help = "largest USP Record sent or accepted (0: 4 MiB)",
     .set = sim_opt_set_uint,
     .off = offsetof(struct ctl_cli, mtp.max_record)},
    {.name = "endpoint-id",
     .type = SIM_OPT_STRING,
     .def = CTL_DEFAULT_EID,
     .metavar = "EID",
     .help = "the controller's Endpoint ID",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, eid)},
    {.name = "topic",
     .type = SIM_OPT_STRING,
     .def = CTL_DEFAULT_TOPIC,
     .metavar = "TOPIC",
     .help = "the controller's own topic (agents answer there)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, topic)},
    {.name = "agent-topic",
     .type = SIM_OPT_STRING,
     .def = CTL_DEFAULT_AGENT_TOPIC,
     .metavar = "TEMPLATE",
     .help = "an agent's topic until it says ({eid}; {n}, {n:0W} with load templates)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, agent_topic)},
    {.name = "mqtt-version",
     .type = SIM_OPT_STRING,
     .def = "5",
     .metavar = "5|3.1.1",
     .help = "MQTT protocol version",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mqtt_version)},
    {.name = "qos",
     .type = SIM_OPT_UINT,
     .def = "1",
     .metavar = "0|1",
     .help = "MQTT QoS of what the controller publishes",
     .set = sim_opt_set_uint,
     .off = offsetof(struct ctl_cli, qos)},
    {.name = "timeout",
     .type = SIM_OPT_STRING,
     .def = "10",
     .metavar = "S",
     .help = "how long to wait for each response (10, 2.5, 500ms)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, timeout)},
    {.name = "connect-timeout",
     .type = SIM_OPT_STRING,
     .def = "10",
     .metavar = "S",
     .help = "how long to wait for the broker at start",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, connect_timeout)},
    {.name = "e2e",
     .type = SIM_OPT_STRING,
     .def = "Forbid",
     .metavar = "MODE[,Param=Value...]",
     .help = "E2E SessionMode (Require opens a session with each agent) and E2ESession "
             "parameters, e.g. Require,MaxRetransmitTries=3",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, e2e_mode)},
    {.name = "e2e-max-record",
     .type = SIM_OPT_UINT,
     .def = "0",
     .metavar = "BYTES",
     .help = "E2E MaxUSPRecordSize: segment larger Messages (0: never)",
     .set = sim_opt_set_uint,
     .off = offsetof(struct ctl_cli, e2e_max_record)},
    {.name = "json",
     .type = SIM_OPT_FLAG,
     .help = "print JSON (as `uspsim decode` does)",
     .set = sim_opt_set_flag,
     .off = offsetof(struct ctl_cli, json)},
    {.name = "quiet",
     .type = SIM_OPT_FLAG,
     .help = "no progress or connection messages",
     .set = sim_opt_set_flag,
     .off = offsetof(struct ctl_cli, quiet)},
    {.name = NULL},
};

static const struct sim_opt controller_only[] = {
    {.name = "to",
     .type = SIM_OPT_STRING,
     .metavar = "EID",
     .help = "the agent requests go to (the shell's `use EID`)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, to)},
    {.name = "exec",
     .type = SIM_OPT_STRING,
     .metavar = "REQUEST",
     .help = "-e REQUEST: send it, print the response, exit (repeatable)",
     .set = set_exec},
    {.name = "watch",
     .type = SIM_OPT_FLAG,
     .help = "print notifications as they arrive",
     .set = sim_opt_set_flag,
     .off = offsetof(struct ctl_cli, watch)},
    {.name = NULL},
};

static void controller_more_help(FILE *f)
{
    usp_req_usage(f, NULL);
}

static struct sim_cmd_spec controller_spec = {
    .name = "controller",
    .args = "[load ...]",
    .summary = "A USP Controller over MQTT: send requests to agents and read their answers.",
    .details =
        "With -e REQUEST (repeatable) and --to EID: sends each request in turn, prints each\n"
        "response (--json: as `uspsim decode` does), and exits 0 when every response came\n"
        "and none was an Error. Without -e: an interactive shell on a terminal (line\n"
        "editing, history), or one request per line from standard input; shell commands:\n"
        "agents [GLOB], use EID, watch [on|off], help, quit. --json prints responses as JSON.\n"
        "\n"
        "All along, the controller answers the agents' notifications that ask for it\n"
        "(NotifyResp to the topic they came from), acknowledges OnBoardRequests, keeps\n"
        "the list of agents seen (`agents`), and asks each new agent GetSupportedProtocol:\n"
        "records then carry the highest USP version both speak. An agent is reached at\n"
        "the topic of its MQTTConnectRecord, else the reply-to of its messages, else\n"
        "--agent-topic.\n"
        "\n"
        "`uspsim controller load --help` describes the load generator.\n"
        "Exit status: 0 success, 1 a failure (Error response, timeout, no broker),\n"
        "2 bad usage.\n",
    .more_help = controller_more_help,
};

static const struct sim_opt load_only[] = {
    {.name = "rate",
     .type = SIM_OPT_STRING,
     .metavar = "R",
     .flags = SIM_OPT_REQUIRED,
     .help = "requests per second, over all agents",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, rate)},
    {.name = "duration",
     .type = SIM_OPT_STRING,
     .def = "10",
     .metavar = "D",
     .help = "how long to send (90, 90s, 5m)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, duration)},
    {.name = "mix",
     .type = SIM_OPT_STRING,
     .def = "get=70,set=20,operate=5,gsdm=5",
     .metavar = "KIND=W,...",
     .help = "kinds and weights: get set operate gsdm instances gsp",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, mix)},
    {.name = "agents",
     .type = SIM_OPT_STRING,
     .def = "os::012345-SIM{n:06}",
     .metavar = "PATTERN",
     .help = "a template with {n} (with --count, --first-index) or a glob on seen EIDs",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, agents)},
    {.name = "count",
     .type = SIM_OPT_UINT,
     .def = "1000",
     .metavar = "N",
     .help = "agents of the template; with a glob: at most N, stop waiting at N",
     .set = set_count,
     .off = offsetof(struct ctl_cli, count)},
    {.name = "first-index",
     .type = SIM_OPT_UINT,
     .def = "1",
     .metavar = "I",
     .help = "{n} of the template's first agent",
     .set = sim_opt_set_uint,
     .off = offsetof(struct ctl_cli, first_index)},
    {.name = "paths",
     .type = SIM_OPT_STRING,
     .metavar = "FILE",
     .help = "requests to use, one per line (replace the defaults of their kind)",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, paths)},
    {.name = "discover",
     .type = SIM_OPT_STRING,
     .def = "5",
     .metavar = "S",
     .help = "with a glob: how long to wait for matching agents to show up",
     .set = sim_opt_set_str,
     .off = offsetof(struct ctl_cli, discover)},
    {.name = NULL},
};

static struct sim_cmd_spec load_spec = {
    .name = "controller load",
    .args = "",
    .summary = "Open-loop load over many agents: a steady rate of requests, every one tracked\n"
               "to its response or timeout, latency percentiles and errors by code.",
    .details =
        "Requests are due at fixed times (1/R apart) and go out then, however slowly the\n"
        "answers come; latency counts from when each was due. Each agent is first asked\n"
        "GetSupportedProtocol. On a terminal a line per second shows the rates and the\n"
        "last second's latencies; the summary goes to standard output (--json: one object).\n"
        "\n"
        "Agents (--agents): a template with {n} or {n:0W} names agents --first-index ..\n"
        "--first-index + --count - 1 (they need not have been seen); anything else is a\n"
        "glob (*, ?, [...]) over the Endpoint IDs of agents seen within --discover seconds\n"
        "(their MQTTConnectRecord, Boot! or OnBoardRequest), or one Endpoint ID.\n"
        "\n"
        "Default requests per kind (every shipped profile answers them):\n"
        "  get        get Device.DeviceInfo.\n"
        "  set        set Device.LocalAgent.Controller.1.PeriodicNotifInterval=86400\n"
        "  operate    operate Device.SelfTestDiagnostics()   (asynchronous)\n"
        "  gsdm       gsdm Device.DeviceInfo.\n"
        "  instances  instances Device.LocalAgent.Controller.\n"
        "  gsp        gsp\n"
        "--paths FILE holds requests in the request language, one per line (# comments);\n"
        "the kinds it names use its lines instead of the defaults, picked at random.\n"
        "\n"
        "Exit status: 0 every request answered without an Error, 1 otherwise (or no\n"
        "broker), 2 bad usage.\n",
};

#define MAX_OPTS 40

/* `spec` gets the common options followed by `own` (kept in `buf`). */
static void join_opts(struct sim_cmd_spec *spec, struct sim_opt *buf, const struct sim_opt *own)
{
    size_t n = 0;
    for (const struct sim_opt *o = common_opts; o->name && n < MAX_OPTS - 1; o++)
        buf[n++] = *o;
    for (const struct sim_opt *o = own; o->name && n < MAX_OPTS - 1; o++)
        buf[n++] = *o;
    buf[n] = (struct sim_opt){.name = NULL};
    spec->opts = buf;
}

static int parse_duration(const char *s, double *secs)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || errno || v < 0 || !isfinite(v))
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

/* The shared options into `conf`: 0 or the exit status of a usage error. */
static int common_conf(const struct sim_cmd_spec *spec, const struct ctl_cli *o,
                       struct ctl_conf *conf)
{
    char why[200];
    memset(conf, 0, sizeof *conf);
    if (usp_eid_parse(o->eid, NULL, why, sizeof why) != 0)
        return sim_opts_usage_error(spec, "--endpoint-id '%s': %s", o->eid, why);
    if (!o->topic[0] || strpbrk(o->topic, "+#"))
        return sim_opts_usage_error(spec, "--topic '%s': a topic without wildcards is needed",
                                    o->topic);
    char buf[512];
    if (sim_template_expand(o->agent_topic, 1, "proto::x", buf, sizeof buf) != 0)
        return sim_opts_usage_error(spec,
                                    "--agent-topic '%s': unknown field or too long (fields: "
                                    "{eid}, {n}, {n:0W})",
                                    o->agent_topic);
    if (strcmp(o->mqtt_version, "5") && strcmp(o->mqtt_version, "3.1.1"))
        return sim_opts_usage_error(spec, "--mqtt-version must be 5 or 3.1.1");
    if (o->qos > 1)
        return sim_opts_usage_error(spec, "--qos must be 0 or 1");
    double t, ct;
    if (parse_duration(o->timeout, &t) != 0 || t <= 0 || t > 86400)
        return sim_opts_usage_error(spec, "--timeout: '%s' is not a time up to a day", o->timeout);
    if (parse_duration(o->connect_timeout, &ct) != 0 || ct <= 0 || ct > 3600)
        return sim_opts_usage_error(spec, "--connect-timeout: '%s' is not a time up to an hour",
                                    o->connect_timeout);
    struct sim_mtp_choice mc;
    char mwhy[400];
    if (sim_mtp_choose(&o->mtp, o->broker ? &o->broker : NULL, o->broker ? 1u : 0u,
                       o->agent_urls, o->nagent_urls, "--agent", false, &mc, mwhy,
                       sizeof mwhy) != 0)
        return sim_opts_usage_error(spec, "%s", mwhy);
    conf->broker = o->broker;
    conf->binding = mc.binding;
    conf->p2p = !mc.brokered;
    conf->listen = o->mtp.listen;
    conf->agent_urls = o->agent_urls;
    conf->nagent_urls = o->nagent_urls;
    conf->tls = mc.tls_cfg;
    conf->max_record = (uint32_t)o->mtp.max_record;
    if (sim_e2e_parse(o->e2e_mode, o->e2e_max_record, &conf->e2e, mwhy, sizeof mwhy) != 0)
        return sim_opts_usage_error(spec, "%s", mwhy);
    conf->eid = o->eid;
    conf->topic = o->topic;
    conf->agent_topic = o->agent_topic;
    if (!strcmp(mc.binding, "stomp")) {
        /* Destinations a broker such as RabbitMQ accepts, unless given. */
        static char dest[300];
        if (!strcmp(o->topic, CTL_DEFAULT_TOPIC)) {
            if (usp_mtp_stomp_dest(USP_MTP_CONTROLLER, o->eid, dest, sizeof dest) != 0)
                return sim_opts_usage_error(spec, "--endpoint-id '%s': no STOMP destination "
                                            "can be made from it", o->eid);
            conf->topic = dest;
        }
        if (!strcmp(o->agent_topic, CTL_DEFAULT_AGENT_TOPIC))
            conf->agent_topic = NULL; /* /queue/usp.agent.<eid> */
    }
    conf->mqtt_version = !strcmp(o->mqtt_version, "5") ? USP_MQTT_V5 : USP_MQTT_V311;
    conf->qos = (int)o->qos;
    conf->timeout_ms = (uint32_t)ceil(t * 1000);
    conf->connect_timeout_ms = (uint32_t)ceil(ct * 1000);
    conf->json = o->json;
    conf->quiet = o->quiet;
    return 0;
}

/* The broker: the one given, or an embedded mosquitto for this run. */
static int broker_url(const struct ctl_conf *conf, struct sim_broker *b, const char **url)
{
    if (conf->broker) {
        *url = conf->broker;
        return 0;
    }
    if (conf->p2p) {
        *url = conf->listen ? conf->listen : conf->agent_urls[0];
        return 0;
    }
    char err[512];
    if (sim_broker_start(b, 5000, err, sizeof err) != 0) {
        fprintf(stderr, "uspsim controller: %s\n", err);
        return -1;
    }
    if (!conf->quiet)
        fprintf(stderr, "uspsim controller: embedded broker at %s (agents: --broker %s)\n", b->url,
                b->url);
    *url = b->url;
    return 0;
}

static int run_load(int argc, char **argv)
{
    static struct sim_opt table[MAX_OPTS];
    join_opts(&load_spec, table, load_only);
    struct ctl_cli o;
    memset(&o, 0, sizeof o);
    int n = sim_opts_parse(&load_spec, &o, argc, argv, 0);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n > 0)
        return sim_opts_usage_error(&load_spec, "unexpected argument '%s'", argv[1]);
    struct ctl_conf conf;
    int rc = common_conf(&load_spec, &o, &conf);
    if (rc)
        return rc;
    struct ctl_load_conf lc;
    memset(&lc, 0, sizeof lc);
    char why[200], *e;
    errno = 0;
    lc.rate = strtod(o.rate, &e);
    if (e == o.rate || *e || errno || !isfinite(lc.rate) || lc.rate <= 0 || lc.rate > 1e6)
        return sim_opts_usage_error(&load_spec, "--rate: '%s' is not a rate in (0, 1000000]",
                                    o.rate);
    if (parse_duration(o.duration, &lc.duration) != 0 || lc.duration <= 0 ||
        lc.duration > 7 * 86400)
        return sim_opts_usage_error(&load_spec, "--duration: '%s' is not a duration", o.duration);
    if (lc.rate * lc.duration > 4e9)
        return sim_opts_usage_error(&load_spec, "--rate x --duration is over 4e9 requests");
    if (ctl_load_parse_mix(o.mix, lc.mix, why, sizeof why) != 0)
        return sim_opts_usage_error(&load_spec, "--mix: %s", why);
    if (parse_duration(o.discover, &lc.discover_s) != 0 || lc.discover_s > 3600)
        return sim_opts_usage_error(&load_spec, "--discover: '%s' is not a time up to an hour",
                                    o.discover);
    lc.agents = o.agents;
    lc.count = o.count;
    lc.count_given = o.count_given;
    lc.first_index = o.first_index;
    lc.paths_file = o.paths;
    if (!o.agents[0])
        return sim_opts_usage_error(&load_spec, "--agents: empty pattern");
    if (strstr(o.agents, "{n")) {
        if (o.count == 0 || o.count > 10000000)
            return sim_opts_usage_error(&load_spec, "--count must be 1..10000000");
        uint64_t ends[2] = {o.first_index, o.first_index + o.count - 1};
        for (int i = 0; i < 2; i++) {
            char eid[256], topic[512];
            if (sim_template_expand(o.agents, ends[i], NULL, eid, sizeof eid) != 0)
                return sim_opts_usage_error(&load_spec,
                                            "--agents '%s': unknown field or too long (fields: "
                                            "{n}, {n:0W})",
                                            o.agents);
            if (usp_eid_parse(eid, NULL, why, sizeof why) != 0)
                return sim_opts_usage_error(&load_spec, "--agents gives '%s' for {n} = %lu: %s",
                                            eid, (unsigned long)ends[i], why);
            if (sim_template_expand(conf.agent_topic, ends[i], eid, topic, sizeof topic) != 0)
                return sim_opts_usage_error(&load_spec, "--agent-topic: too long for '%s'", eid);
        }
    } else if (!strpbrk(o.agents, "*?[") && usp_eid_parse(o.agents, NULL, why, sizeof why) != 0) {
        return sim_opts_usage_error(&load_spec,
                                    "--agents '%s' is neither a template with {n}, a glob, nor "
                                    "an Endpoint ID: %s",
                                    o.agents, why);
    }
    struct sim_broker b;
    memset(&b, 0, sizeof b);
    const char *url;
    if (broker_url(&conf, &b, &url) != 0)
        return 1;
    rc = ctl_load_run(&conf, url, &lc);
    if (b.pid)
        sim_broker_stop(&b);
    return rc;
}

int sim_cmd_controller(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "load"))
        return run_load(argc - 1, argv + 1);
    static struct sim_opt table[MAX_OPTS];
    join_opts(&controller_spec, table, controller_only);
    /* -e is the one short option: spell it long for the option table. */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) {
        fprintf(stderr, "uspsim controller: out of memory\n");
        return 1;
    }
    static char exec_opt[] = "--exec";
    for (int i = 0; i < argc; i++)
        args[i] = strcmp(argv[i], "-e") ? argv[i] : exec_opt;
    struct ctl_cli o;
    memset(&o, 0, sizeof o);
    int status;
    int n = sim_opts_parse(&controller_spec, &o, argc, args, 0);
    if (n == SIM_OPTS_HELP) {
        status = 0;
        goto out;
    }
    if (n < 0) {
        status = 2;
        goto out;
    }
    if (n > 0) {
        status = sim_opts_usage_error(
            &controller_spec, "unexpected argument '%s' (requests go in -e 'REQUEST')", args[1]);
        goto out;
    }
    struct ctl_conf conf;
    status = common_conf(&controller_spec, &o, &conf);
    if (status)
        goto out;
    char why[200];
    if (o.to && usp_eid_parse(o.to, NULL, why, sizeof why) != 0) {
        status = sim_opts_usage_error(&controller_spec, "--to '%s': %s", o.to, why);
        goto out;
    }
    conf.watch = o.watch;
    struct sim_broker b;
    memset(&b, 0, sizeof b);
    const char *url;
    if (broker_url(&conf, &b, &url) != 0) {
        status = 1;
        goto out;
    }
    status = ctl_shell_run(&conf, url, o.to, o.execs, o.nexecs);
    if (b.pid)
        sim_broker_stop(&b);
out:
    free(args);
    return status;
}
