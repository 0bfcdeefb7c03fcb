/* The data-model store's scaling numbers: bytes per agent (untouched, and
 * after 20 Sets/Adds each) for 10,000 and 100,000 agents of one profile,
 * and get/set/resolve operations per second. Run by bench/dm-store.
 *
 *   bench_dm_store SRC_DIR
 *
 * SRC_DIR is the source tree (for datamodels/ and the test profiles); the
 * official model is read from SRC_DIR/../shared/reference when present.
 * Marginal bytes are malloc's in-use bytes (mallinfo2) before and after,
 * divided by the number of agents: the agents' own array included. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "usp/dm.h"
#include "usp/errors.h"

enum op_kind { SET, ADD };

/* "%u" in a path is replaced by the row the last ADD created; "%a" in a
 * value by the agent index. */
struct op {
    enum op_kind kind;
    const char *path;
    const char *value;
};

/* 20 operations an agent might see from a controller: 14 Sets of existing
 * parameters, then a Subscription added with its usual parameters (1 Add
 * + 4 Sets), then a user added (1 Add). */
static const struct op ops[] = {
    {SET, "Device.DeviceInfo.ProvisioningCode", "prov-%a"},
    {SET, "Device.LocalAgent.Controller.1.PeriodicNotifInterval", "3600"},
    {SET, "Device.LocalAgent.Controller.1.ProvisioningCode", "ctl-%a"},
    {SET, "Device.Time.LocalTimeZone", "EST5EDT,M3.2.0,M11.1.0"},
    {SET, "Device.IP.Interface.1.Enable", "false"},
    {SET, "Device.IP.Interface.2.MaxMTUSize", "1400"},
    {SET, "Device.IP.Interface.1.IPv4Address.1.IPAddress", "10.1.2.3"},
    {SET, "Device.Ethernet.Interface.2.MaxBitRate", "100"},
    {SET, "Device.Ethernet.Interface.3.Enable", "false"},
    {SET, "Device.WiFi.AccessPoint.1.Enable", "false"},
    {SET, "Device.WiFi.AccessPoint.2.MaxAllowedAssociations", "32"},
    {SET, "Device.Users.User.1.Password", "secret-%a"},
    {SET, "Device.Users.User.2.Language", "fr"},
    {SET, "Device.DNS.Client.Enable", "false"},
    {ADD, "Device.LocalAgent.Subscription.", NULL},
    {SET, "Device.LocalAgent.Subscription.%u.Alias", "cpe-%u"},
    {SET, "Device.LocalAgent.Subscription.%u.ID", "vc-%a"},
    {SET, "Device.LocalAgent.Subscription.%u.NotifType", "ValueChange"},
    {SET, "Device.LocalAgent.Subscription.%u.ReferenceList", "Device.DeviceInfo.SoftwareVersion"},
    {ADD, "Device.Users.User.", NULL},
};
#define NOPS (sizeof ops / sizeof ops[0])

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void subst(char *out, size_t len, const char *fmt, uint64_t agent, uint32_t row)
{
    size_t at = 0;
    for (const char *s = fmt; *s && at + 24 < len; s++) {
        if (s[0] == '%' && s[1] == 'u') {
            at += (size_t)snprintf(out + at, len - at, "%u", row);
            s++;
        } else if (s[0] == '%' && s[1] == 'a') {
            at += (size_t)snprintf(out + at, len - at, "%llu", (unsigned long long)agent);
            s++;
        } else {
            out[at++] = *s;
        }
    }
    out[at] = '\0';
}

/* Runs ops on one agent; returns how many succeeded, with the first failure
 * described in `why` (when not NULL). */
static unsigned run_ops(struct usp_dm_agent *a, char *why, size_t whylen)
{
    const struct usp_dm_model *m = a->model;
    unsigned ok = 0;
    uint32_t row = 0;
    for (size_t i = 0; i < NOPS; i++) {
        char path[256], value[256], w[256] = "";
        subst(path, sizeof path, ops[i].path, a->index, row);
        int rc;
        if (ops[i].kind == ADD) {
            struct usp_dm_item it;
            rc = usp_dm_lookup(usp_dm_model_schema(m), path, &it);
            if (!rc) {
                struct usp_dm_inst parent = {.obj = it.object->parent, .n = 0};
                rc = usp_dm_add(a, it.object, &parent, &row);
            }
            if (rc)
                snprintf(w, sizeof w, "%s", usp_strerror(rc));
        } else {
            char obj[256];
            const char *dot = strrchr(path, '.');
            snprintf(obj, sizeof obj, "%.*s", (int)(dot - path + 1), path);
            subst(value, sizeof value, ops[i].value, a->index, row);
            struct usp_dm_inst o;
            const struct usp_dm_param *p = NULL;
            rc = usp_dm_inst_parse(m, obj, &o);
            if (!rc && !(p = usp_dm_object_param(o.obj, dot + 1, strlen(dot + 1))))
                rc = USP_ENOENT;
            if (!rc)
                rc = usp_dm_set(a, &o, p, value, NULL, w, sizeof w);
            else
                snprintf(w, sizeof w, "not in the model");
        }
        if (!rc)
            ok++;
        else if (why && !*why)
            snprintf(why, whylen, "%s: %s", path, w);
    }
    return ok;
}

struct target {
    struct usp_dm_inst o;
    const struct usp_dm_param *p;
};

static int collect_params(void *ctx, const struct usp_dm_match *mt)
{
    struct target *t = ctx;
    size_t n = 0;
    while (t[n].p)
        n++;
    if (n < 255 && mt->param) {
        t[n].o = mt->obj;
        t[n].p = mt->param;
    }
    return 0;
}

static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static int count_cb(void *ctx, const struct usp_dm_match *mt)
{
    (*(unsigned *)ctx)++;
    return 0;
}

static void speed(const struct usp_dm_model *m, struct usp_dm_agent *agents, size_t n)
{
    /* Every parameter of some rows the profile fills: profile values. */
    static struct target t[256];
    memset(t, 0, sizeof t);
    struct usp_path *p = NULL;
    usp_path_parse("Device.IP.Interface.*.", &p, NULL);
    struct usp_dm_path_err err;
    struct usp_path *q = NULL;
    if (usp_path_parse("Device.IP.Interface.*.Name", &q, NULL) == 0)
        usp_dm_resolve(&agents[0], q, collect_params, t, &err);
    usp_path_free(q);
    q = NULL;
    if (usp_path_parse("Device.Ethernet.Interface.*.MaxBitRate", &q, NULL) == 0)
        usp_dm_resolve(&agents[0], q, collect_params, t, &err);
    usp_path_free(q);
    q = NULL;
    if (usp_path_parse("Device.DeviceInfo.UpTime", &q, NULL) == 0)
        usp_dm_resolve(&agents[0], q, collect_params, t, &err);
    usp_path_free(q);
    size_t nt = 0;
    while (t[nt].p)
        nt++;
    if (!nt) {
        printf("  speed: no parameters to read\n");
        usp_path_free(p);
        return;
    }
    char buf[USP_DM_VALUE_MAX];
    uint64_t s = 1;
    const unsigned N = 2000000;
    double t0 = now_s();
    unsigned bad = 0;
    for (unsigned i = 0; i < N; i++) {
        const struct target *x = &t[rnd(&s) % nt];
        bad += usp_dm_get(&agents[rnd(&s) % n], &x->o, x->p, buf, sizeof buf) != 0;
    }
    double dt = now_s() - t0;
    printf("  get (profile or overlay value, random agent): %.2f M/s (%u failed)\n", N / dt / 1e6,
           bad);
    /* One agent at a time, as a Get of a subtree reads it. */
    bad = 0;
    unsigned ng = 0;
    t0 = now_s();
    for (unsigned round = 0; ng < N; round++)
        for (size_t i = 0; i < n && ng < N; i++)
            for (size_t k = 0; k < nt; k++, ng++)
                bad += usp_dm_get(&agents[i], &t[k].o, t[k].p, buf, sizeof buf) != 0;
    dt = now_s() - t0;
    printf("  get (%zu parameters of one agent, agent after agent): %.2f M/s (%u failed)\n", nt,
           ng / dt / 1e6, bad);

    /* Sets: a non-key parameter, alternating values. */
    struct usp_dm_inst o;
    const struct usp_dm_param *prm = NULL;
    if (usp_dm_inst_parse(m, "Device.DeviceInfo.", &o) == 0)
        prm = usp_dm_object_param(o.obj, "ProvisioningCode", 16);
    if (prm) {
        const unsigned NS = 1000000;
        char why[128];
        bad = 0;
        t0 = now_s();
        for (unsigned i = 0; i < NS; i++)
            bad += usp_dm_set(&agents[rnd(&s) % n], &o, prm, (i & 1) ? "alpha" : "beta-value", NULL,
                              why, sizeof why) != 0;
        dt = now_s() - t0;
        printf("  set (DeviceInfo.ProvisioningCode, random agent): %.2f M/s (%u failed)\n",
               NS / dt / 1e6, bad);
    }
    /* A key parameter: each set compares with the siblings. */
    if (usp_dm_inst_parse(m, "Device.IP.Interface.2.", &o) == 0 &&
        (prm = usp_dm_object_param(o.obj, "Name", 4)) != NULL) {
        const unsigned NS = 500000;
        char why[128];
        bad = 0;
        t0 = now_s();
        for (unsigned i = 0; i < NS; i++)
            bad += usp_dm_set(&agents[rnd(&s) % n], &o, prm, (i & 1) ? "lan-a" : "lan-b", NULL, why,
                              sizeof why) != 0;
        dt = now_s() - t0;
        printf("  set (IP.Interface.2.Name, a unique key, random agent): %.2f M/s "
               "(%u failed)\n",
               NS / dt / 1e6, bad);
    }
    /* Resolution. */
    if (p) {
        const unsigned NR = 500000;
        unsigned matches = 0;
        t0 = now_s();
        for (unsigned i = 0; i < NR; i++)
            usp_dm_resolve(&agents[rnd(&s) % n], p, count_cb, &matches, &err);
        dt = now_s() - t0;
        printf("  resolve Device.IP.Interface.*. : %.2f M/s (%.1f matches each)\n", NR / dt / 1e6,
               (double)matches / NR);
        usp_path_free(p);
    }
    if (usp_path_parse("Device.IP.Interface.[Enable==true&&Type==\"Normal\"].Name", &p, NULL) ==
        0) {
        const unsigned NR = 200000;
        unsigned matches = 0;
        t0 = now_s();
        for (unsigned i = 0; i < NR; i++)
            usp_dm_resolve(&agents[rnd(&s) % n], p, count_cb, &matches, &err);
        dt = now_s() - t0;
        printf("  resolve Device.IP.Interface.[Enable==true&&Type==\"Normal\"].Name : %.2f M/s "
               "(%.1f matches each)\n",
               NR / dt / 1e6, (double)matches / NR);
        usp_path_free(p);
    }
}

static int run(const char *label, const struct usp_dm_schema *s, const char *prof_path,
               const size_t *counts, size_t ncounts)
{
    struct usp_profile *prof = NULL;
    struct usp_profile_err pe;
    if (usp_profile_load(prof_path, &prof, &pe) != 0) {
        printf("%s: profile does not load: %s\n\n", label, pe.text);
        return 1;
    }
    struct usp_dm_model *m = NULL;
    struct usp_dm_model_err me;
    if (usp_dm_model_new(s, prof, &m, &me) != 0) {
        printf("%s: does not bind: %s\n\n", label, me.msg);
        usp_profile_free(prof);
        return 1;
    }
    printf("%s\n", label);
    printf("  shared: binding %zu bytes, profile %zu bytes, schema %zu bytes\n",
           usp_dm_model_mem(m), usp_profile_mem(prof), usp_dm_schema_counts(s)->bytes);
    printf("  sizeof(struct usp_dm_agent) = %zu bytes\n", sizeof(struct usp_dm_agent));
    for (size_t c = 0; c < ncounts; c++) {
        size_t n = counts[c];
        size_t before = in_use();
        struct usp_dm_agent *agents = calloc(n, sizeof *agents);
        if (!agents) {
            printf("  out of memory\n");
            break;
        }
        for (size_t i = 0; i < n; i++)
            usp_dm_agent_init(&agents[i], m, i, "proto::bench", 1700000000);
        size_t untouched = in_use() - before;
        char why[300] = "";
        double t0 = now_s();
        unsigned done = 0;
        for (size_t i = 0; i < n; i++)
            done += run_ops(&agents[i], i ? NULL : why, sizeof why);
        double dt = now_s() - t0;
        size_t touched = in_use() - before;
        size_t held = 0, recs = 0;
        for (size_t i = 0; i < n; i++) {
            held += usp_dm_agent_mem(&agents[i]);
            recs += usp_dm_agent_records(&agents[i]);
        }
        printf("  %zu agents: untouched %.1f bytes/agent; after %zu ops each (%.1f succeeded) "
               "%.1f bytes/agent (overlay blocks %.1f bytes, %.1f records); %.0f ops/s\n",
               n, (double)untouched / n, NOPS, (double)done / n, (double)touched / n,
               (double)held / n, (double)recs / n, (double)done / dt);
        if (*why)
            printf("    first failure: %s\n", why);
        if (c + 1 == ncounts)
            speed(m, agents, n);
        for (size_t i = 0; i < n; i++)
            usp_dm_agent_cleanup(&agents[i]);
        free(agents);
    }
    printf("\n");
    usp_dm_model_free(m);
    usp_profile_free(prof);
    return 0;
}

int main(int argc, char **argv)
{
    const char *src = argc > 1 ? argv[1] : ".";
    char def[1024], full[1024], gw[1024], small[1024];
    snprintf(def, sizeof def, "%s/datamodels/device-2-uspsim.xml", src);
    snprintf(full, sizeof full, "%s/../shared/reference/tr-181/tr-181-2-19-1-usp-full.xml", src);
    snprintf(gw, sizeof gw, "%s/datamodels/profiles/gateway.prof", src);
    snprintf(small, sizeof small, "%s/tests/unit/data/dm_store/small.prof", src);
    static const size_t counts[] = {10000, 100000};
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error e;
    if (usp_dm_load_file(def, 0, &s, &e) != 0) {
        fprintf(stderr, "%s: %s\n", def, e.msg);
        return 1;
    }
    int gw_default = run("default model (device-2-uspsim.xml) + gateway.prof", s, gw, counts, 2);
    if (gw_default)
        run("default model (device-2-uspsim.xml) + tests/unit/data/dm_store/small.prof", s, small,
            counts, 2);
    usp_dm_schema_free(s);
    s = NULL;
    FILE *f = fopen(full, "r");
    if (f) {
        fclose(f);
        if (usp_dm_load_file(full, 0, &s, &e) != 0) {
            fprintf(stderr, "%s: %s\n", full, e.msg);
            return 1;
        }
        run("official full model (tr-181-2-19-1-usp-full.xml) + gateway.prof", s, gw, counts, 2);
        usp_dm_schema_free(s);
    } else {
        printf("official full model not found (%s): skipped\n", full);
    }
    return 0;
}
