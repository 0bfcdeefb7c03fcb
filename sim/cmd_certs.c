/* `uspsim certs`: the test PKI for uspsim's TLS bindings. A CA, a broker
 * (server) certificate, a controller certificate and agent certificates
 * whose subjectAltName carries each agent's Endpoint ID, plus index.txt
 * listing them. Files that are still what this run would make are kept;
 * --force makes everything anew. --variant makes defective leaf
 * certificates into DIR/VARIANT/ for the certificate edge-case tests. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "fleet.h"
#include "opts.h"
#include "usp/certs.h"
#include "usp/eid.h"
#include "usp/errors.h"
#include "usp/tls.h"

#define MAX_HOSTS      32
#define MAX_AGENTS     10000000ul
#define MAX_DAYS       36500ul
#define MAX_JOBS       64
#define DEFAULT_AGENTS 10
#define CA_DAYS        3650 /* at least; longer when the leaves live longer */
#define BACKDATE       3600 /* notBefore an hour back: hosts' clocks differ */
#define NOTES_SHOWN    5    /* "not valid, making a new one" lines before a count */
#define CA_NAME        "uspsim test CA"
#define OTHER_CA_NAME  "uspsim unknown CA"
#define WRONG_CTL_EID  "self::uspsim-wrong-san"
#define WRONG_HOST     "wrong-host.invalid"
#define MANIFEST       "index.txt"

enum variant {
    V_NONE,
    V_EXPIRED,
    V_NOT_YET_VALID,
    V_WRONG_SAN,
    V_UNKNOWN_CA,
    V_SELF_SIGNED,
};

/* clang-format off */
static const char *const variant_names[] = {
    [V_NONE] = "none",
    [V_EXPIRED] = "expired",
    [V_NOT_YET_VALID] = "not-yet-valid",
    [V_WRONG_SAN] = "wrong-san",
    [V_UNKNOWN_CA] = "unknown-ca",
    [V_SELF_SIGNED] = "self-signed",
};
/* clang-format on */

struct certs_opts {
    const char *out, *agents, *eid_template, *controller_id, *key, *variant, *jobs;
    unsigned long first_index, days;
    const char *hosts[MAX_HOSTS];
    unsigned nhosts;
    char *copies[MAX_HOSTS]; /* of the --broker-host values, freed at the end */
    unsigned ncopies;
    bool shared, force;
};

static int set_host(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen)
{
    struct certs_opts *c = ctx;
    if (!val)
        return 0;
    char *copy = c->ncopies < MAX_HOSTS ? strdup(val) : NULL;
    if (!copy) {
        snprintf(why, whylen, c->ncopies < MAX_HOSTS ? "out of memory" : "too many hosts");
        return -1;
    }
    c->copies[c->ncopies++] = copy;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (c->nhosts >= MAX_HOSTS) {
            snprintf(why, whylen, "more than %d hosts", MAX_HOSTS);
            return -1;
        }
        c->hosts[c->nhosts++] = tok;
    }
    return 0;
}

static const struct sim_opt certs_opts[] = {
    {.name = "out",
     .type = SIM_OPT_STRING,
     .metavar = "DIR",
     .flags = SIM_OPT_REQUIRED,
     .help = "folder to write to (made when missing)",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, out)},
    {.name = "agents",
     .type = SIM_OPT_STRING,
     .metavar = "N",
     .help = "agent certificates, one per agent (default 10)",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, agents)},
    {.name = "shared-agent",
     .type = SIM_OPT_FLAG,
     .help = "one agent certificate for all, wildcard Endpoint ID (R-SEC.11)",
     .set = sim_opt_set_flag,
     .off = offsetof(struct certs_opts, shared)},
    {.name = "endpoint-id",
     .type = SIM_OPT_STRING,
     .def = "os::012345-SIM{n:06}",
     .metavar = "TEMPLATE",
     .help = "Endpoint ID of agent {n} ({n:06} pads with zeros)",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, eid_template)},
    {.name = "first-index",
     .type = SIM_OPT_UINT,
     .def = "1",
     .metavar = "I",
     .help = "index {n} of the first agent",
     .set = sim_opt_set_uint,
     .off = offsetof(struct certs_opts, first_index)},
    {.name = "controller-id",
     .type = SIM_OPT_STRING,
     .def = "self::uspsim-controller",
     .metavar = "EID",
     .help = "the controller's Endpoint ID",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, controller_id)},
    {.name = "broker-host",
     .type = SIM_OPT_STRING,
     .metavar = "HOST[,HOST...]",
     .help = "more names/IPs for broker and controller (repeatable)",
     .set = set_host},
    {.name = "days",
     .type = SIM_OPT_UINT,
     .def = "365",
     .metavar = "D",
     .help = "validity of the broker, controller and agent certificates",
     .set = sim_opt_set_uint,
     .off = offsetof(struct certs_opts, days)},
    {.name = "key",
     .type = SIM_OPT_STRING,
     .def = "ec",
     .metavar = "ec|rsa",
     .help = "key type: EC P-256 or RSA 2048",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, key)},
    {.name = "variant",
     .type = SIM_OPT_STRING,
     .metavar = "V",
     .help = "defective leaf certificates into DIR/V/ (see below)",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, variant)},
    {.name = "jobs",
     .type = SIM_OPT_STRING,
     .def = "auto",
     .metavar = "N|auto",
     .help = "threads making agent certificates (auto: one per CPU)",
     .set = sim_opt_set_str,
     .off = offsetof(struct certs_opts, jobs)},
    {.name = "force",
     .type = SIM_OPT_FLAG,
     .help = "make every file anew (with --variant: not DIR/ca.pem)",
     .set = sim_opt_set_flag,
     .off = offsetof(struct certs_opts, force)},
    {.name = NULL},
};

static const struct sim_cmd_spec certs_spec = {
    .name = "certs",
    .args = "",
    .summary = "Make the test CA and the TLS certificates of broker, controller and agents.",
    .details = "Writes into DIR: ca.pem/ca.key (the CA everyone trusts), broker.pem/.key\n"
               "(SAN localhost, 127.0.0.1, ::1 and --broker-host), controller.pem/.key (SAN\n"
               "urn:bbf:usp:id:<controller-id> and the same hosts), agents/<n>.pem/.key (SAN\n"
               "urn:bbf:usp:id:<Endpoint ID of agent n>) or, with --shared-agent,\n"
               "agents/shared.pem/.key (SAN urn:bbf:usp:id:<template, each {..} as *>), and\n"
               "index.txt listing them. A file that is still what this run would make (same\n"
               "CA, SAN, key type, still valid) is kept; a key is never rewritten without its\n"
               "certificate. Keys are unencrypted: test credentials only.\n"
               "--variant makes the broker, controller and agent certificates into DIR/V/ with\n"
               "one defect, signed by DIR/ca.pem unless said otherwise:\n"
               "  expired        validity ended yesterday\n"
               "  not-yet-valid  validity starts tomorrow\n"
               "  wrong-san      agent n carries the Endpoint ID of agent n+1 (shared: an\n"
               "                 instance-id prefix no agent has), the controller\n"
               "                 " WRONG_CTL_EID ", the broker only " WRONG_HOST "\n"
               "  unknown-ca     signed by a second CA, DIR/unknown-ca/ca.pem, nobody trusts\n"
               "  self-signed    each certificate signs itself\n"
               "Exit status: 0 done, 1 failure, 2 bad usage.\n",
    .opts = certs_opts,
};

/* ---- One run -------------------------------------------------------------- */

struct run {
    const struct certs_opts *o;
    enum variant variant;
    enum usp_cert_key_type key_type;
    time_t now;
    int64_t not_before, not_after; /* of the leaves */
    const char *base;              /* where the leaves go: DIR or DIR/VARIANT */
    const struct usp_cert *issuer; /* of the leaves; NULL: self-signed */
    const char *dns[MAX_HOSTS + 1];
    size_t ndns;
    const char *ips[MAX_HOSTS + 2];
    size_t nips;
    uint64_t count, first;
    char pattern[USP_EID_MAX_LEN + 1]; /* --shared-agent */
    atomic_uint notes;                 /* "making a new one" lines so far */
    atomic_ulong made, kept;           /* agent certificates */
};

static int join(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "uspsim certs: path too long: %s/%s\n", dir, name);
        return -1;
    }
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        fprintf(stderr, "uspsim certs: path too long: %s\n", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p)
            continue;
        char c = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "uspsim certs: %s: cannot make the folder: %s\n", buf, strerror(errno));
            return -1;
        }
        if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "uspsim certs: %s: not a folder\n", buf);
            return -1;
        }
        *p = c;
        if (!c)
            return 0;
    }
}

/* A file that is there but not good: say so for the first few. `path` is
 * NULL when `why` names the file already. */
static void note(struct run *r, const char *path, const char *why)
{
    unsigned k = atomic_fetch_add(&r->notes, 1);
    if (k < NOTES_SHOWN)
        fprintf(stderr, "uspsim certs: %s%s%s; making a new one\n", path ? path : "",
                path ? ": " : "", why);
}

/* Whether `c` is what `spec` describes; with `any_key`, of either key type. */
static bool good(const struct usp_cert *c, const struct usp_cert_spec *spec, bool any_key,
                 char *why, size_t whylen)
{
    if (usp_cert_matches(c, spec, why, whylen) == 0)
        return true;
    if (!any_key)
        return false;
    struct usp_cert_spec other = *spec;
    other.key_type = spec->key_type == USP_CERT_KEY_EC ? USP_CERT_KEY_RSA : USP_CERT_KEY_EC;
    char ignored[256];
    return usp_cert_matches(c, &other, ignored, sizeof ignored) == 0;
}

/* Keeps the certificate at cert_path/key_path when it is what `spec`
 * describes (unless `force`), otherwise makes and writes a new one. The
 * certificate is returned in *out (the caller frees it). -1 on failure,
 * reported. */
static int ensure(struct run *r, const char *cert_path, const char *key_path,
                  const struct usp_cert_spec *spec, bool force, bool any_key, struct usp_cert **out,
                  bool *made)
{
    char why[512];
    struct usp_cert *c = NULL;
    *out = NULL;
    *made = false;
    if (!force) {
        int rc = usp_cert_load(cert_path, key_path, &c, why, sizeof why);
        if (!rc && good(c, spec, any_key, why, sizeof why)) {
            *out = c;
            return 0;
        }
        usp_cert_free(c);
        c = NULL;
        if (rc != USP_ENOENT)
            note(r, rc ? NULL : cert_path, why);
    }
    if (usp_cert_new(spec, &c, why, sizeof why) != 0) {
        fprintf(stderr, "uspsim certs: %s: %s\n", cert_path, why);
        return -1;
    }
    if (usp_cert_write(c, cert_path, key_path, why, sizeof why) != 0) {
        fprintf(stderr, "uspsim certs: %s\n", why);
        usp_cert_free(c);
        return -1;
    }
    *out = c;
    *made = true;
    return 0;
}

/* One line of index.txt: role, certificate and key (relative to the
 * folder of index.txt), subjectAltName, notAfter, fingerprint. */
static void manifest_line(FILE *f, const char *role, const char *cert, const char *key,
                          const struct usp_cert *c)
{
    struct usp_cert_info i;
    usp_cert_info(c, &i);
    fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", role, cert, key, i.san, i.not_after, i.fingerprint);
}

static void leaf_spec(const struct run *r, struct usp_cert_spec *s, enum usp_cert_use use,
                      const char *cn)
{
    *s = (struct usp_cert_spec){
        .use = use,
        .key_type = r->key_type,
        .common_name = cn,
        .now = r->now,
        .not_before = r->not_before,
        .not_after = r->not_after,
        .issuer = r->issuer,
    };
}

/* ---- Agents, possibly on several threads ---------------------------------- */

struct job {
    struct run *r;
    uint64_t first, n;
    char *lines; /* index.txt lines for these agents */
    size_t len;
    int status;
    pthread_t tid;
};

static int agent_eid(const struct run *r, uint64_t n, char *eid, size_t len)
{
    if (sim_template_expand(r->o->eid_template, n, NULL, eid, len) != 0) {
        fprintf(stderr, "uspsim certs: --endpoint-id '%s' does not expand for agent %" PRIu64 "\n",
                r->o->eid_template, n);
        return -1;
    }
    return 0;
}

static void *agents_job(void *arg)
{
    struct job *j = arg;
    struct run *r = j->r;
    FILE *f = open_memstream(&j->lines, &j->len);
    j->status = -1;
    if (!f) {
        fprintf(stderr, "uspsim certs: out of memory\n");
        return NULL;
    }
    for (uint64_t n = j->first; n < j->first + j->n; n++) {
        char eid[USP_EID_MAX_LEN + 64], san_eid[USP_EID_MAX_LEN + 64], name[48];
        char cert[PATH_MAX], key[PATH_MAX], rel_cert[64], rel_key[64];
        if (agent_eid(r, n, eid, sizeof eid) ||
            agent_eid(r, r->variant == V_WRONG_SAN ? n + 1 : n, san_eid, sizeof san_eid))
            goto out;
        snprintf(rel_cert, sizeof rel_cert, "agents/%" PRIu64 ".pem", n);
        snprintf(rel_key, sizeof rel_key, "agents/%" PRIu64 ".key", n);
        if (join(cert, sizeof cert, r->base, rel_cert) || join(key, sizeof key, r->base, rel_key))
            goto out;
        const char *eids[] = {san_eid};
        struct usp_cert_spec s;
        leaf_spec(r, &s, USP_CERT_USE_PEER, eid);
        s.eids = eids;
        s.neids = 1;
        struct usp_cert *c;
        bool made;
        if (ensure(r, cert, key, &s, r->o->force, false, &c, &made))
            goto out;
        snprintf(name, sizeof name, "agent:%" PRIu64, n);
        manifest_line(f, name, rel_cert, rel_key, c);
        usp_cert_free(c);
        atomic_fetch_add(made ? &r->made : &r->kept, 1);
    }
    j->status = 0;
out:
    if (fclose(f) != 0 && !j->status) {
        fprintf(stderr, "uspsim certs: out of memory\n");
        j->status = -1;
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The per-agent certificates, split in contiguous ranges over `jobs`
 * threads; their index.txt lines go to `f` in agent order. */
static int make_agents(struct run *r, unsigned jobs, FILE *f)
{
    if (!r->count)
        return 0;
    if (jobs > r->count)
        jobs = (unsigned)r->count;
    struct job *j = calloc(jobs, sizeof *j);
    if (!j) {
        fprintf(stderr, "uspsim certs: out of memory\n");
        return -1;
    }
    uint64_t per = r->count / jobs, extra = r->count % jobs, next = r->first;
    unsigned started = 0;
    int status = 0;
    for (unsigned i = 0; i < jobs; i++) {
        j[i] = (struct job){.r = r, .first = next, .n = per + (i < extra ? 1 : 0)};
        next += j[i].n;
        if (jobs == 1) {
            agents_job(&j[i]);
            started = 1;
        } else if (pthread_create(&j[i].tid, NULL, agents_job, &j[i]) != 0) {
            fprintf(stderr, "uspsim certs: cannot start a thread\n");
            status = -1;
            break;
        } else {
            started++;
        }
    }
    for (unsigned i = 0; i < started; i++) {
        if (jobs > 1)
            pthread_join(j[i].tid, NULL);
        if (j[i].status)
            status = -1;
        else if (j[i].len && fwrite(j[i].lines, 1, j[i].len, f) != j[i].len)
            status = -1;
    }
    for (unsigned i = 0; i < jobs; i++)
        free(j[i].lines);
    free(j);
    return status;
}

/* ---- Checking the options ------------------------------------------------- */

/* The --shared-agent pattern: the template with each {...} field as one "*". */
static int template_pattern(const char *tpl, char *buf, size_t len)
{
    size_t o = 0;
    for (const char *p = tpl; *p;) {
        char c = *p;
        if (c == '{') {
            const char *end = strchr(p, '}');
            if (!end)
                return -1;
            p = end + 1;
            if (o && buf[o - 1] == '*')
                continue;
            c = '*';
        } else {
            p++;
        }
        if (o + 1 >= len)
            return -1;
        buf[o++] = c;
    }
    buf[o] = '\0';
    return 0;
}

/* A wrong-san pattern that matches none of the fleet: "X" inserted where the
 * wildcardable part of the instance-id starts. */
static int wrong_pattern(const char *pat, char *buf, size_t len)
{
    const char *c2 = strchr(strchr(pat, ':') + 1, ':');
    size_t head = (size_t)(c2 + 1 - pat);
    if (!strncmp(pat, "os:", 3) || !strncmp(pat, "ops:", 4))
        head += 7; /* "<OUI>-" */
    if (strlen(pat) + 2 > len)
        return -1;
    snprintf(buf, len, "%.*sX%s", (int)head, pat, pat + head);
    return 0;
}

static bool host_name_ok(const char *h)
{
    if (!*h || strlen(h) > 253)
        return false;
    for (const char *p = h; *p; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
            *p != '-' && *p != '.' && *p != '*')
            return false;
    return true;
}

static bool listed(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(v[i], s))
            return true;
    return false;
}

static int check_opts(struct certs_opts *o, struct run *r, unsigned *jobs)
{
    r->variant = V_NONE;
    if (o->variant) {
        bool found = false;
        for (size_t i = 1; i < sizeof variant_names / sizeof variant_names[0]; i++)
            if (!strcmp(o->variant, variant_names[i])) {
                r->variant = (enum variant)i;
                found = true;
            }
        if (!found)
            return sim_opts_usage_error(&certs_spec,
                                        "--variant '%s': expected expired, not-yet-valid, "
                                        "wrong-san, unknown-ca or self-signed",
                                        o->variant);
    }
    if (!strcmp(o->key, "ec"))
        r->key_type = USP_CERT_KEY_EC;
    else if (!strcmp(o->key, "rsa"))
        r->key_type = USP_CERT_KEY_RSA;
    else
        return sim_opts_usage_error(&certs_spec, "--key '%s': expected ec or rsa", o->key);
    if (o->days < 1 || o->days > MAX_DAYS)
        return sim_opts_usage_error(&certs_spec, "--days must be 1..%lu", MAX_DAYS);
    if (!*o->out)
        return sim_opts_usage_error(&certs_spec, "--out: the folder name is empty");

    if (!strcmp(o->jobs, "auto")) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        *jobs = ncpu < 1 ? 1 : ncpu > MAX_JOBS ? MAX_JOBS : (unsigned)ncpu;
    } else {
        char *e;
        unsigned long v = strtoul(o->jobs, &e, 10);
        if (e == o->jobs || *e || v < 1 || v > MAX_JOBS)
            return sim_opts_usage_error(&certs_spec, "--jobs must be auto or 1..%d", MAX_JOBS);
        *jobs = (unsigned)v;
    }

    unsigned long count = DEFAULT_AGENTS;
    if (o->agents) {
        char *e;
        if (o->shared)
            return sim_opts_usage_error(&certs_spec,
                                        "--agents and --shared-agent exclude each other");
        count = strtoul(o->agents, &e, 10);
        if (e == o->agents || *e || o->agents[0] == '-' || count > MAX_AGENTS)
            return sim_opts_usage_error(&certs_spec, "--agents must be 0..%lu", MAX_AGENTS);
    }
    r->count = o->shared ? 0 : count;
    r->first = o->first_index;
    if (r->first > UINT64_MAX - r->count - 1)
        return sim_opts_usage_error(&certs_spec, "--first-index is too large");

    char why[200];
    if (usp_eid_parse(o->controller_id, NULL, why, sizeof why) != 0)
        return sim_opts_usage_error(&certs_spec, "--controller-id '%s': %s", o->controller_id, why);
    /* Every Endpoint ID the template makes must be valid: check both ends
     * (and the one past the end that wrong-san borrows). */
    uint64_t ends[3] = {r->first, r->first + (r->count ? r->count - 1 : 0), r->first + r->count};
    for (int i = 0; i < (r->variant == V_WRONG_SAN ? 3 : 2); i++) {
        char eid[256];
        if (sim_template_expand(o->eid_template, ends[i], NULL, eid, sizeof eid))
            return sim_opts_usage_error(&certs_spec,
                                        "--endpoint-id '%s': unknown field or too long "
                                        "(fields: {n}, {n:0W})",
                                        o->eid_template);
        if (usp_eid_parse(eid, NULL, why, sizeof why))
            return sim_opts_usage_error(&certs_spec,
                                        "--endpoint-id gives '%s' for agent %" PRIu64 ": %s", eid,
                                        ends[i], why);
    }
    if (o->shared) {
        if (template_pattern(o->eid_template, r->pattern, sizeof r->pattern) ||
            !strchr(r->pattern, '*'))
            return sim_opts_usage_error(&certs_spec,
                                        "--shared-agent: the --endpoint-id template '%s' has no "
                                        "{n} field to turn into a wildcard",
                                        o->eid_template);
        if (usp_tls_eid_pattern_check(r->pattern, why, sizeof why))
            return sim_opts_usage_error(&certs_spec, "--shared-agent: %s", why);
        if (r->variant == V_WRONG_SAN) {
            char wrong[sizeof r->pattern];
            if (wrong_pattern(r->pattern, wrong, sizeof wrong) ||
                usp_tls_eid_pattern_check(wrong, why, sizeof why))
                return sim_opts_usage_error(
                    &certs_spec, "--variant wrong-san: no wrong pattern for '%s'", r->pattern);
            memcpy(r->pattern, wrong, sizeof wrong);
        }
    }

    r->dns[r->ndns++] = "localhost";
    r->ips[r->nips++] = "127.0.0.1";
    r->ips[r->nips++] = "::1";
    for (unsigned i = 0; i < o->nhosts; i++) {
        const char *h = o->hosts[i];
        unsigned char addr[16];
        if (inet_pton(AF_INET, h, addr) == 1 || inet_pton(AF_INET6, h, addr) == 1) {
            if (!listed(r->ips, r->nips, h))
                r->ips[r->nips++] = h;
        } else if (host_name_ok(h)) {
            if (!listed(r->dns, r->ndns, h))
                r->dns[r->ndns++] = h;
        } else {
            return sim_opts_usage_error(&certs_spec,
                                        "--broker-host '%s' is neither an IP address nor a "
                                        "host name (letters, digits, '-', '.', '*')",
                                        h);
        }
    }
    return 0;
}

/* ---- The command ---------------------------------------------------------- */

static void say(const char *what, bool made, const struct usp_cert *c)
{
    struct usp_cert_info i;
    usp_cert_info(c, &i);
    printf("  %-18s %s, until %s, %s\n", what, made ? "made" : "kept", i.not_after, i.san);
}

/* The CA at DIR/ca.pem (or the untrusted one of unknown-ca), kept when it
 * is good and outlives the leaves it signs. Its key type need not be
 * --key's: an EC CA signs RSA leaves as well, and keeping it keeps every
 * trust store that holds it. */
static int ensure_ca(struct run *r, const char *dir, const char *cn, bool force,
                     struct usp_cert **out, bool *made)
{
    char cert[PATH_MAX], key[PATH_MAX];
    if (join(cert, sizeof cert, dir, "ca.pem") || join(key, sizeof key, dir, "ca.key"))
        return -1;
    int64_t leaf_end = r->not_after > 0 ? r->not_after : 0;
    int64_t days = (int64_t)r->o->days + 1 > CA_DAYS ? (int64_t)r->o->days + 1 : CA_DAYS;
    struct usp_cert_spec s = {
        .use = USP_CERT_USE_CA,
        .key_type = r->key_type,
        .common_name = cn,
        .now = r->now,
        .not_before = -BACKDATE,
        .not_after = days * USP_CERT_DAY,
    };
    if (ensure(r, cert, key, &s, force, true, out, made))
        return -1;
    /* A kept CA that ends before its leaves would break them later. */
    time_t limit = r->now + (time_t)leaf_end;
    if (!*made && X509_cmp_time(X509_get0_notAfter(usp_cert_x509(*out)), &limit) < 0) {
        usp_cert_free(*out);
        *out = NULL;
        note(r, cert, "it expires before the certificates it signs");
        return ensure(r, cert, key, &s, true, true, out, made);
    }
    return 0;
}

static int certs_main(struct certs_opts *o, int argc, char **argv)
{
    int n = sim_opts_parse(&certs_spec, o, argc, argv, 0);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n > 0)
        return sim_opts_usage_error(&certs_spec, "unexpected argument '%s'", argv[1]);

    struct run r = {.o = o, .now = time(NULL)};
    unsigned jobs = 1;
    int rc = check_opts(o, &r, &jobs);
    if (rc)
        return rc;
    int64_t day = USP_CERT_DAY, days = (int64_t)o->days;
    switch (r.variant) {
    case V_EXPIRED:
        r.not_before = -(days + 1) * day;
        r.not_after = -day;
        break;
    case V_NOT_YET_VALID:
        r.not_before = day;
        r.not_after = (days + 1) * day;
        break;
    default:
        r.not_before = -BACKDATE;
        r.not_after = days * day;
        break;
    }

    char base[PATH_MAX], path[PATH_MAX], key[PATH_MAX], manifest[PATH_MAX], tmp[PATH_MAX + 32];
    struct usp_cert *ca = NULL, *other_ca = NULL, *c = NULL;
    FILE *mf = NULL;
    int status = 1;
    bool made;
    snprintf(base, sizeof base, "%s", o->out);
    if (r.variant != V_NONE && join(base, sizeof base, o->out, variant_names[r.variant]))
        goto out;
    r.base = base;
    if (make_dirs(o->out) || make_dirs(base) || join(path, sizeof path, base, "agents") ||
        make_dirs(path) || join(manifest, sizeof manifest, base, MANIFEST))
        goto out;
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", manifest, (long)getpid());
    mf = fopen(tmp, "w");
    if (!mf) {
        fprintf(stderr, "uspsim certs: %s: cannot create: %s\n", tmp, strerror(errno));
        goto out;
    }
    fprintf(mf, "# uspsim certs: the certificates in this folder. Tab-separated columns:\n"
                "# role, certificate, key, subjectAltName, notAfter (UTC), SHA-256 fingerprint\n");
    printf("uspsim certs: %s%s%s\n", base, r.variant ? ", variant " : "",
           r.variant ? variant_names[r.variant] : "");

    const char *ca_rel = r.variant ? "../ca.pem" : "ca.pem";
    const char *ca_key_rel = r.variant ? "../ca.key" : "ca.key";
    /* --force with --variant remakes the variant's files, never the CA
     * that DIR's other certificates and their users depend on. */
    if (ensure_ca(&r, o->out, CA_NAME, o->force && !r.variant, &ca, &made))
        goto out;
    say("ca.pem", made, ca);
    manifest_line(mf, "ca", ca_rel, ca_key_rel, ca);
    r.issuer = ca;
    if (r.variant == V_UNKNOWN_CA) {
        if (ensure_ca(&r, base, OTHER_CA_NAME, o->force, &other_ca, &made))
            goto out;
        say("unknown-ca/ca.pem", made, other_ca);
        manifest_line(mf, "unknown-ca", "ca.pem", "ca.key", other_ca);
        r.issuer = other_ca;
    } else if (r.variant == V_SELF_SIGNED) {
        r.issuer = NULL;
    }

    /* The broker: a TLS server for everyone. */
    struct usp_cert_spec s;
    const char *wrong_host[] = {WRONG_HOST};
    leaf_spec(&r, &s, USP_CERT_USE_SERVER, r.variant == V_WRONG_SAN ? WRONG_HOST : "localhost");
    s.dns = r.variant == V_WRONG_SAN ? wrong_host : r.dns;
    s.ndns = r.variant == V_WRONG_SAN ? 1 : r.ndns;
    s.ips = r.variant == V_WRONG_SAN ? NULL : r.ips;
    s.nips = r.variant == V_WRONG_SAN ? 0 : r.nips;
    if (join(path, sizeof path, base, "broker.pem") || join(key, sizeof key, base, "broker.key") ||
        ensure(&r, path, key, &s, o->force, false, &c, &made))
        goto out;
    say("broker.pem", made, c);
    manifest_line(mf, "broker", "broker.pem", "broker.key", c);
    usp_cert_free(c);
    c = NULL;

    /* The controller: its Endpoint ID, and the hosts for when it serves. */
    const char *ctl_eid[] = {r.variant == V_WRONG_SAN ? WRONG_CTL_EID : o->controller_id};
    leaf_spec(&r, &s, USP_CERT_USE_PEER, o->controller_id);
    s.eids = ctl_eid;
    s.neids = 1;
    s.dns = r.dns;
    s.ndns = r.ndns;
    s.ips = r.ips;
    s.nips = r.nips;
    if (join(path, sizeof path, base, "controller.pem") ||
        join(key, sizeof key, base, "controller.key") ||
        ensure(&r, path, key, &s, o->force, false, &c, &made))
        goto out;
    say("controller.pem", made, c);
    manifest_line(mf, "controller", "controller.pem", "controller.key", c);
    usp_cert_free(c);
    c = NULL;

    if (o->shared) {
        const char *pat[] = {r.pattern};
        leaf_spec(&r, &s, USP_CERT_USE_PEER, r.pattern);
        s.eids = pat;
        s.neids = 1;
        if (join(path, sizeof path, base, "agents/shared.pem") ||
            join(key, sizeof key, base, "agents/shared.key") ||
            ensure(&r, path, key, &s, o->force, false, &c, &made))
            goto out;
        say("agents/shared.pem", made, c);
        manifest_line(mf, "agent:shared", "agents/shared.pem", "agents/shared.key", c);
        usp_cert_free(c);
        c = NULL;
    } else if (r.count) {
        double t0 = now_s();
        if (make_agents(&r, jobs, mf))
            goto out;
        double dt = now_s() - t0;
        unsigned long nm = atomic_load(&r.made), nk = atomic_load(&r.kept);
        char first[USP_EID_MAX_LEN + 64], last[USP_EID_MAX_LEN + 64];
        agent_eid(&r, r.first, first, sizeof first);
        agent_eid(&r, r.first + r.count - 1, last, sizeof last);
        printf("  %-18s %lu made, %lu kept: %s .. %s\n", "agents/N.pem", nm, nk, first, last);
        if (nm)
            printf("  %-18s %.2f s, %.0f certificates/s (%s keys, %u thread%s)\n", "", dt,
                   dt > 0 ? (double)nm / dt : 0.0, r.key_type == USP_CERT_KEY_EC ? "EC" : "RSA",
                   jobs, jobs == 1 ? "" : "s");
    }
    unsigned nnotes = atomic_load(&r.notes);
    if (nnotes > NOTES_SHOWN)
        fprintf(stderr, "uspsim certs: ... and %u more made anew\n", nnotes - NOTES_SHOWN);

    if (fflush(mf) != 0 || ferror(mf)) {
        fprintf(stderr, "uspsim certs: %s: cannot write: %s\n", tmp, strerror(errno));
        goto out;
    }
    int cr = fclose(mf);
    mf = NULL;
    if (cr != 0 || rename(tmp, manifest) != 0) {
        fprintf(stderr, "uspsim certs: %s: cannot write: %s\n", manifest, strerror(errno));
        goto out;
    }
    printf("  %-18s lists them\n", MANIFEST);
    status = 0;
out:
    if (mf) {
        fclose(mf);
        unlink(tmp);
    }
    usp_cert_free(c);
    usp_cert_free(ca);
    usp_cert_free(other_ca);
    return status;
}

int sim_cmd_certs(int argc, char **argv)
{
    struct certs_opts o = {0};
    int status = certs_main(&o, argc, argv);
    for (unsigned i = 0; i < o.ncopies; i++)
        free(o.copies[i]);
    return status;
}
