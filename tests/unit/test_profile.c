/* Device profiles: the parser (good files, every error message), the value
 * generators (determinism, clocks, templates) and the shipped profiles
 * (they load, give the gateway 1,000+ parameters, use only TR-181 2.19
 * paths with values that fit the parameters' syntax, and only paths the
 * default model datamodels/device-2-uspsim.xml has). The XML is read here
 * with libxml2, independently of the library's schema loader. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <limits.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/profile.h"

#define DATA     USP_SRC("tests/unit/data/profiles")
#define SHIPPED  USP_SRC("datamodels/profiles")
#define TR181    USP_REF("tr-181/tr-181-2-19-1-usp-full.xml")
#define DEFMODEL USP_SRC("datamodels/device-2-uspsim.xml")
#define T0       1700000000 /* 2023-11-14T22:13:20Z */

static struct usp_profile *parse(const char *text, struct usp_profile_err *err)
{
    struct usp_profile *p = NULL;
    int rc = usp_profile_parse_mem("t.prof", text, strlen(text), NULL, &p, err);
    if (rc != 0)
        return NULL;
    return p;
}

static struct usp_gen_ctx ctx_at(uint64_t agent, int64_t boot, int64_t now)
{
    struct usp_gen_ctx c = {agent, "os::012345-SIM000001", boot, 0, now, 0};
    return c;
}

/* The value of `path` for `agent` at T0 + `up` seconds after booting at T0. */
static const char *get(const struct usp_profile *p, const char *path, uint64_t agent, int64_t up)
{
    static char buf[512];
    struct usp_gen_ctx c = ctx_at(agent, T0, T0 + up);
    if (usp_profile_get(p, path, &c, buf, sizeof buf) != 0)
        return "<none>";
    return buf;
}

/* The one value of a one-line profile "Device.X.Y = EXPR" (inside tables
 * declared by `pre` when given). */
static struct usp_profile *one(const char *pre, const char *line)
{
    char text[2048];
    struct usp_profile_err err;
    snprintf(text, sizeof text, "%s\n%s\n", pre ? pre : "", line);
    struct usp_profile *p = parse(text, &err);
    if (!p)
        fprintf(stderr, "\nunexpected error: %s\n", err.text);
    return p;
}

/* --- The parser --------------------------------------------------------- */

static void test_good_file(void)
{
    struct usp_profile *p = NULL;
    struct usp_profile_err err;
    int rc = usp_profile_load(DATA "/good_main.prof", &p, &err);
    if (rc)
        fprintf(stderr, "\n%s\n", err.text);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(usp_profile_name(p), "test-main");
    CU_ASSERT_STRING_EQUAL(usp_profile_description(p),
                           "Test profile: \"quoted\", tab\tand {braces}");
    CU_ASSERT_EQUAL(usp_profile_seed(p), 1234);

    /* good_inc.prof's two values come first; Manufacturer and the {i} Name
     * were overridden in place by good_main.prof. */
    CU_ASSERT_EQUAL(usp_profile_nvalues(p), 17);
    const struct usp_profile_value *v0 = usp_profile_value_at(p, 0);
    CU_ASSERT_STRING_EQUAL(v0->e.path, "Device.DeviceInfo.Manufacturer");
    CU_ASSERT_PTR_NOT_NULL(strstr(v0->e.file, "good_main.prof"));
    CU_ASSERT_EQUAL(v0->e.line, 15);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(v0->gen), "main");
    const struct usp_profile_value *v1 = usp_profile_value_at(p, 1);
    CU_ASSERT_STRING_EQUAL(v1->e.path, "Device.DeviceInfo.ModelName");
    CU_ASSERT_PTR_NOT_NULL(strstr(v1->e.file, "good_inc.prof"));
    CU_ASSERT_EQUAL(v1->e.line, 5);
    CU_ASSERT_PTR_NULL(usp_profile_value_at(p, 17));

    const struct usp_profile_value *name = usp_profile_value_at(p, 2);
    CU_ASSERT_STRING_EQUAL(name->e.spath, "Device.Ethernet.Interface.{i}.Name");
    CU_ASSERT_EQUAL(name->e.nlevels, 1);
    CU_ASSERT_EQUAL(name->e.inst[0], 0);
    CU_ASSERT_STRING_EQUAL(usp_gen_source(name->gen), "\"eth{i1-1}\"");

    /* Instances: the later "Interface. 3" replaced "Interface. 1". */
    CU_ASSERT_EQUAL_FATAL(usp_profile_ninsts(p), 5);
    const struct usp_profile_inst *eth = usp_profile_inst_at(p, 0);
    CU_ASSERT_STRING_EQUAL(eth->e.path, "Device.Ethernet.Interface.");
    CU_ASSERT_STRING_EQUAL(eth->e.spath, "Device.Ethernet.Interface.{i}.");
    CU_ASSERT_EQUAL(eth->min, 3);
    CU_ASSERT_EQUAL(eth->max, 3);
    const struct usp_profile_inst *ad = usp_profile_inst_at(p, 2);
    CU_ASSERT_STRING_EQUAL(ad->e.spath, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.");
    CU_ASSERT_EQUAL(ad->e.nlevels, 1);
    CU_ASSERT_EQUAL(ad->min, 2);
    CU_ASSERT_EQUAL(ad->max, 5);
    const struct usp_profile_inst *ad2 = usp_profile_inst_at(p, 3);
    CU_ASSERT_STRING_EQUAL(ad2->e.path, "Device.WiFi.AccessPoint.2.AssociatedDevice.");
    CU_ASSERT_STRING_EQUAL(ad2->e.spath, ad->e.spath);
    CU_ASSERT_EQUAL(ad2->e.inst[0], 2);
    const struct usp_profile_inst *hosts = usp_profile_inst_at(p, 4);
    CU_ASSERT_STRING_EQUAL(hosts->e.path, "Device.Hosts.Host.");
    CU_ASSERT_EQUAL(hosts->min, 4);

    /* Values through the concrete-path helper. */
    CU_ASSERT_STRING_EQUAL(get(p, "Device.DeviceInfo.SerialNumber", 42, 0), "T00042");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.DeviceInfo.ModelName", 42, 0), "from-inc");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.Ethernet.Interface.1.Name", 1, 0), "eth0");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.Ethernet.Interface.2.Name", 1, 0), "wan");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.Ethernet.Interface.3.Name", 1, 0), "eth2");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.Ethernet.Interface.3.MaxBitRate", 1, 0), "-1");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.Hosts.Host.4.IPAddress", 1, 0), "192.168.1.103");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.Time.CurrentLocalTime", 1, 0), "2023-11-14T22:13:20Z");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.DeviceInfo.UpTime", 1, 3600), "3600");
    CU_ASSERT_STRING_EQUAL(get(p, "Device.DeviceInfo.ProductClass", 1, 0), "<none>");

    /* Commands. */
    CU_ASSERT_EQUAL_FATAL(usp_profile_ncmds(p), 4);
    const struct usp_profile_cmd *c0 = usp_profile_cmd_at(p, 0);
    CU_ASSERT_STRING_EQUAL(c0->e.spath, "Device.Ethernet.Interface.{i}.Stats.Reset()");
    CU_ASSERT_EQUAL(c0->delay_ms, 250);
    CU_ASSERT_FALSE(c0->fail);
    CU_ASSERT_EQUAL(c0->nout, 0);
    const struct usp_profile_cmd *c1 = usp_profile_cmd_at(p, 1);
    CU_ASSERT_TRUE(c1->fail);
    CU_ASSERT_EQUAL(c1->delay_ms, 0);
    CU_ASSERT_EQUAL(c1->err_code, 7005);
    CU_ASSERT_STRING_EQUAL(c1->err_msg, "no resources");
    unsigned three = 3, two = 2;
    CU_ASSERT_PTR_EQUAL(usp_profile_find_cmd(p, c0->e.spath, &three, 1), c1);
    CU_ASSERT_PTR_EQUAL(usp_profile_find_cmd(p, c0->e.spath, &two, 1), c0);
    const struct usp_profile_cmd *ping =
        usp_profile_find_cmd(p, "Device.IP.Diagnostics.IPPing()", NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ping);
    CU_ASSERT_EQUAL(ping->delay_ms, 3000);
    CU_ASSERT_EQUAL_FATAL(ping->nout, 3);
    CU_ASSERT_STRING_EQUAL(ping->out[0].name, "SuccessCount");
    CU_ASSERT_STRING_EQUAL(usp_gen_const(ping->out[0].gen), "3");
    CU_ASSERT_STRING_EQUAL(ping->out[1].name, "AverageResponseTime");
    CU_ASSERT_EQUAL(usp_gen_kind(ping->out[1].gen), USP_GEN_RANDOM);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(ping->out[2].gen), "Complete");
    const struct usp_profile_cmd *wreset = usp_profile_cmd_at(p, 3);
    CU_ASSERT_TRUE(wreset->fail);
    CU_ASSERT_EQUAL(wreset->err_code, 7022);
    CU_ASSERT_STRING_EQUAL(wreset->err_msg, "Simulated failure");
    CU_ASSERT_PTR_NULL(usp_profile_find_cmd(p, "Device.Reboot()", NULL, 0));
    usp_profile_free(p);
}

static void test_precedence(void)
{
    struct usp_profile *p = NULL;
    struct usp_profile_err err;
    CU_ASSERT_EQUAL_FATAL(usp_profile_load(DATA "/good_main.prof", &p, &err), 0);
    const char *sp = "Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.SignalStrength";
    const struct usp_profile_slot *s = usp_profile_slot(p, sp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    unsigned i11[] = {1, 1}, i12[] = {1, 2}, i21[] = {2, 1}, i22[] = {2, 2};
    /* Two numbers beat one; at one number, the deeper one wins. */
    const struct usp_profile_value *v = usp_profile_slot_value(s, i12, 2);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(v->gen), "-30");
    v = usp_profile_slot_value(s, i22, 2);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(v->gen), "-50");
    v = usp_profile_slot_value(s, i11, 2);
    CU_ASSERT_STRING_EQUAL(usp_gen_source(v->gen), "gauge(mean=-40, amplitude=2)");
    v = usp_profile_slot_value(s, i21, 2);
    CU_ASSERT_STRING_EQUAL(usp_gen_source(v->gen), "gauge(-60, 5, 300, 1)");
    /* Without instance numbers only the {i}.{i} line matches. */
    v = usp_profile_find_value(p, sp, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(v->e.inst[0] + v->e.inst[1], 0);
    CU_ASSERT_PTR_NULL(usp_profile_slot(p, "Device.WiFi.AccessPoint.{i}.Enable"));
    CU_ASSERT_PTR_NULL(usp_profile_find_value(p, "Device.Nothing", NULL, 0));
    /* The same through concrete paths. */
    CU_ASSERT_STRING_EQUAL(
        get(p, "Device.WiFi.AccessPoint.1.AssociatedDevice.2.SignalStrength", 5, 0), "-30");
    CU_ASSERT_STRING_EQUAL(
        get(p, "Device.WiFi.AccessPoint.2.AssociatedDevice.2.SignalStrength", 5, 0), "-50");

    /* Instances: AccessPoint 2 has exactly one client, the others 2..5. */
    unsigned one_ = 1, two_ = 2;
    const char *ad = "Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.";
    const struct usp_profile_inst *d2 = usp_profile_find_inst(p, ad, &two_, 1);
    const struct usp_profile_inst *d1 = usp_profile_find_inst(p, ad, &one_, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d2);
    CU_ASSERT_EQUAL(d2->min, 1);
    CU_ASSERT_EQUAL(d1->min, 2);
    CU_ASSERT_PTR_EQUAL(
        usp_profile_find_inst(p, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.", &one_, 1), d1);
    CU_ASSERT_EQUAL(usp_profile_instances(p, ad, 9, &two_, 1), 1);
    CU_ASSERT_EQUAL(usp_profile_instances(p, "Device.Ethernet.Interface.", 9, NULL, 0), 3);
    CU_ASSERT_EQUAL(usp_profile_instances(p, "Device.Bridging.Bridge.", 9, NULL, 0), 0);
    usp_profile_free(p);
}

static void test_instance_counts(void)
{
    struct usp_profile *p = one("instances Device.Hosts.Host. 2..8\n"
                                "instances Device.WiFi.AccessPoint. 3\n"
                                "instances Device.WiFi.AccessPoint.{i}.AssociatedDevice. 0..3",
                                "seed 5");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    unsigned seen[9] = {0};
    for (uint64_t a = 0; a < 400; a++) {
        unsigned n = usp_profile_instances(p, "Device.Hosts.Host.", a, NULL, 0);
        CU_ASSERT(n >= 2 && n <= 8);
        if (n <= 8)
            seen[n]++;
        /* The same agent always gets the same count. */
        CU_ASSERT_EQUAL(usp_profile_instances(p, "Device.Hosts.Host.", a, NULL, 0), n);
    }
    for (unsigned n = 2; n <= 8; n++)
        CU_ASSERT(seen[n] > 20); /* ~57 expected each */
    /* Counts under different parents are drawn apart. */
    unsigned differ = 0;
    for (uint64_t a = 0; a < 50; a++) {
        unsigned ap1 = 1, ap2 = 2;
        differ +=
            usp_profile_instances(p, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.", a, &ap1, 1) !=
            usp_profile_instances(p, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.", a, &ap2, 1);
    }
    CU_ASSERT(differ > 20);
    usp_profile_free(p);
}

/* Every tests/unit/data/profiles/bad_*.prof names its expected message on
 * its first line ("# expect: FILE:LINE[:COL]: MESSAGE", file names relative
 * to that folder). */
static void test_bad_files(void)
{
    DIR *d = opendir(DATA);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    unsigned checked = 0;
    size_t dirlen = strlen(DATA "/");
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (strncmp(de->d_name, "bad_", 4) != 0 || n < 5 || strcmp(de->d_name + n - 5, ".prof"))
            continue;
        char path[1024], want[700] = "", got[700];
        snprintf(path, sizeof path, "%s/%s", DATA, de->d_name);
        FILE *f = fopen(path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        if (fgets(want, sizeof want, f))
            want[strcspn(want, "\n")] = '\0';
        fclose(f);
        CU_ASSERT_EQUAL_FATAL(strncmp(want, "# expect: ", 10), 0);
        struct usp_profile *p = NULL;
        struct usp_profile_err err;
        int rc = usp_profile_load(path, &p, &err);
        CU_ASSERT(rc == USP_EINVAL);
        CU_ASSERT_PTR_NULL(p);
        usp_profile_free(p);
        /* Drop the folder wherever it appears. */
        size_t o = 0;
        for (const char *s = err.text; *s && o + 1 < sizeof got;) {
            if (!strncmp(s, DATA "/", dirlen))
                s += dirlen;
            else
                got[o++] = *s++;
        }
        got[o] = '\0';
        if (strcmp(got, want + 10) != 0)
            fprintf(stderr, "\n%s\n  want: %s\n  got:  %s\n", de->d_name, want + 10, got);
        CU_ASSERT_STRING_EQUAL(got, want + 10);
        checked++;
    }
    closedir(d);
    CU_ASSERT(checked >= 50);
}

static void test_errors_in_memory(void)
{
    struct usp_profile *p = NULL;
    struct usp_profile_err err;
    /* No folder: include is refused. */
    const char *inc = "include base.prof\n";
    CU_ASSERT_EQUAL(usp_profile_parse_mem("m.prof", inc, strlen(inc), NULL, &p, &err), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.text,
                           "m.prof:1:9: include is not available here (no folder to read from)");
    CU_ASSERT_STRING_EQUAL(err.file, "m.prof");
    CU_ASSERT_EQUAL(err.line, 1);
    CU_ASSERT_EQUAL(err.col, 9);
    /* An empty folder is the current one (and must not be indexed before
     * its start). */
    const char *inc2 = "include no-such-profile-7f3a.prof\n";
    CU_ASSERT_EQUAL(usp_profile_parse_mem("m.prof", inc2, strlen(inc2), "", &p, &err), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.text, "m.prof:1:9: cannot include 'no-such-profile-7f3a.prof': "
                                     "no such file (no-such-profile-7f3a.prof)");
    /* With one, it works. */
    CU_ASSERT_EQUAL(usp_profile_parse_mem("m.prof", inc, strlen(inc), SHIPPED, &p, &err), 0);
    CU_ASSERT_STRING_EQUAL(usp_profile_name(p), "m");
    CU_ASSERT(usp_profile_nvalues(p) > 20);
    usp_profile_free(p);
    p = NULL;
    /* Not NUL-terminated: only `len` bytes are read. */
    const char buf[] = {'s', 'e', 'e', 'd', ' ', '7', 'x'};
    CU_ASSERT_EQUAL(usp_profile_parse_mem(NULL, buf, 6, NULL, &p, &err), 0);
    CU_ASSERT_EQUAL(usp_profile_seed(p), 7);
    usp_profile_free(p);
    p = NULL;
    CU_ASSERT_EQUAL(usp_profile_parse_mem(NULL, buf, 7, NULL, &p, &err), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.text, "(memory):1:7: unexpected 'x' at the end of the line");
    /* Empty input and CRLF lines are fine. */
    CU_ASSERT_EQUAL(usp_profile_parse_mem("e.prof", "", 0, NULL, &p, &err), 0);
    CU_ASSERT_EQUAL(usp_profile_nvalues(p), 0);
    CU_ASSERT_STRING_EQUAL(usp_profile_name(p), "e");
    usp_profile_free(p);
    const char *crlf = "# x\r\nDevice.DeviceInfo.Manufacturer = \"a\"\r\n";
    CU_ASSERT_EQUAL(usp_profile_parse_mem("c.prof", crlf, strlen(crlf), NULL, &p, &err), 0);
    CU_ASSERT_STRING_EQUAL(get(p, "Device.DeviceInfo.Manufacturer", 0, 0), "a");
    usp_profile_free(p);
    /* Missing file. */
    CU_ASSERT_EQUAL(usp_profile_load(DATA "/no-such.prof", &p, &err), USP_EIO);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "no-such.prof: cannot read: "));
    /* More errors whose text is built from the input. */
    struct {
        const char *text, *want;
    } cases[] = {
        {"Device.A.B = gauge(mean=1, mean=2)", "t.prof:1:28: gauge(): argument 'mean' given twice"},
        {"Device.A.B = gauge(1, 2, 3, 4, 5)",
         "t.prof:1:32: gauge(): too many arguments (expected mean, amplitude, period, noise)"},
        {"Device.A.B = gauge(mean=1, 2)",
         "t.prof:1:28: gauge(): a positional argument after a named one"},
        {"Device.A.B = gauge(mean=1, period=0)", "t.prof:1:35: gauge(): 'period' must be positive"},
        {"Device.A.B = counter(rate=1.2345)", "t.prof:1:27: at most 3 decimals in a number"},
        {"Device.A.B = random(1..2.25)", "t.prof:1:24: integer expected, not '2.25'"},
        {"Device.A.B = counter(rate=1.)", "t.prof:1:27: bad number"},
        {"Device.A.B = counter(start=1.5)", "t.prof:1:28: integer expected, not '1.5'"},
        {"Device.A.B = counter(bits=32..64)", "t.prof:1:27: counter(): 'bits' cannot be a range"},
        {"Device.A.B = counter(start=99999999999999999999)",
         "t.prof:1:28: number out of range (at most 18446744073709551615)"},
        {"Device.A.B = uptime(3)", "t.prof:1:21: uptime() takes no arguments"},
        {"Device.A.B = random()",
         "t.prof:1:21: random(): needs a range A..B or at least one value"},
        {"Device.A.B = random(a b)", "t.prof:1:23: random(): ',' or ')' expected"},
        {"Device.A.B = \"{eid+1}\"", "t.prof:1:19: {eid} takes no arithmetic"},
        {"Device.A.B = \"{mac:2}\"",
         "t.prof:1:19: bad width in placeholder {mac:2} (only {n} and {iK} take a width)"},
        {"Device.A.B = \"{n*2}\"", "t.prof:1:17: unexpected '*' in placeholder {n*2}"},
        {"Device.A.1.B = 1", "t.prof:1: value of Device.A.1.B: no 'instances Device.A.' line "
                             "creates this table"},
        {"Device.A.01.B = 1", "t.prof:1:10: instance number with a leading zero"},
        {"Device.A.B.1 = 1",
         "t.prof:1:12: a path cannot end with an instance (add '.' for the object)"},
        {"Device.A..B = 1", "t.prof:1:10: empty name ('..')"},
        {"Device.1.B = 1", "t.prof:1:8: '{i}' or an instance number must follow a table name"},
        {"Device.A().B = 1", "t.prof:1:9: '()' must end a command path"},
        {"instances Device. 1", "t.prof:1:11: instances needs a table path, e.g. "
                                "Device.Ethernet.Interface."},
        {"instances Device.A.", "t.prof:1:20: instances needs a count, e.g. 4 or 2..8"},
        {"command Device.A() out.=1", "t.prof:1:24: bad output name ''"},
        {"command Device.A() out.X=1 out.X=2", "t.prof:1:28: out.X given twice"},
        {"command Device.A() delay=90000", "t.prof:1:26: delay out of range (0 to 86400 seconds)"},
        {"command Device.A() result=maybe", "t.prof:1:27: result must be ok or fail"},
        {"command Device.A() delay=1result=ok", "t.prof:1:26: bad number"},
        {"command Device.A() message=\"x\"result=fail",
         "t.prof:1:31: blank expected after a setting"},
        {"profile", "t.prof:1:8: profile needs a name"},
        {"description none", "t.prof:1:13: quoted string expected"},
        {"seed 18446744073709551616", "t.prof:1:6: seed too large (at most 18446744073709551615)"},
        {"Device.A.B = \"\\", "t.prof:1:14: unterminated string"},
        {"Device.A.B = \"a\x01\"", "t.prof:1:16: control character 0x01 in a string"},
        {"Device.A.B = now", "t.prof:1:14: 'now' is a generator: write now()"},
        {"Device.A.B = a,b", "t.prof:1:15: unexpected ',b' at the end of the line"},
        {"Device.A.B = (", "t.prof:1:14: unexpected '(' (quote text with spaces or punctuation)"},
        {"Devices.A = 1", "t.prof:1:1: a path must start with 'Device.'"},
        {"\xc3\xa9t\xc3\xa9 = 1",
         "t.prof:1:1: unknown statement '' (expected profile, description, "
         "seed, serial, include, instances, command or a Device. path)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        p = parse(cases[k].text, &err);
        CU_ASSERT_PTR_NULL(p);
        usp_profile_free(p);
        if (strcmp(err.text, cases[k].want) != 0)
            fprintf(stderr, "\n%s\n  want: %s\n  got:  %s\n", cases[k].text, cases[k].want,
                    err.text);
        CU_ASSERT_STRING_EQUAL(err.text, cases[k].want);
    }
}

static void test_split_path(void)
{
    char sp[128];
    unsigned inst[USP_PROFILE_MAX_LEVELS], n = 99;
    CU_ASSERT_EQUAL(usp_profile_split_path("Device.WiFi.AccessPoint.3.AssociatedDevice.12.Noise",
                                           sp, sizeof sp, inst, &n),
                    0);
    CU_ASSERT_STRING_EQUAL(sp, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.Noise");
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(inst[0], 3);
    CU_ASSERT_EQUAL(inst[1], 12);
    CU_ASSERT_EQUAL(
        usp_profile_split_path("Device.IP.Interface.{i}.Reset()", sp, sizeof sp, inst, &n), 0);
    CU_ASSERT_STRING_EQUAL(sp, "Device.IP.Interface.{i}.Reset()");
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(inst[0], 0);
    CU_ASSERT_EQUAL(
        usp_profile_split_path("Device.Hosts.Host.4294967295.", sp, sizeof sp, inst, &n), 0);
    CU_ASSERT_EQUAL(inst[0], 4294967295u);
    CU_ASSERT_EQUAL(
        usp_profile_split_path("Device.Hosts.Host.4294967296.", sp, sizeof sp, inst, &n),
        USP_EINVAL);
    CU_ASSERT_EQUAL(usp_profile_split_path("Device.A.1.B", sp, 8, inst, &n), USP_ERANGE);
    CU_ASSERT_EQUAL(usp_profile_split_path("Device", sp, sizeof sp, inst, &n), USP_EINVAL);
    CU_ASSERT_EQUAL(
        usp_profile_split_path("Device.A.1.B.2.C.3.D.4.E.5.F.6.G.7.H.8.I", sp, sizeof sp, inst, &n),
        0);
    CU_ASSERT_EQUAL(n, 8);
    CU_ASSERT_EQUAL(usp_profile_split_path("Device.A.1.B.2.C.3.D.4.E.5.F.6.G.7.H.8.I.9.J", sp,
                                           sizeof sp, inst, &n),
                    USP_EINVAL);
}

/* --- Generators ---------------------------------------------------------- */

static const char *eval1(const struct usp_profile *p, const struct usp_gen_ctx *c,
                         const unsigned *inst, unsigned ninst)
{
    static char buf[256];
    const struct usp_profile_value *v = usp_profile_value_at(p, 0);
    if (!v || usp_gen_eval(v->gen, c, inst, ninst, buf, sizeof buf) != 0)
        return "<error>";
    return buf;
}

static void test_templates(void)
{
    struct usp_profile *p = one("instances Device.A. 9\ninstances Device.A.{i}.B. 9",
                                "Device.A.{i}.B.{i}.C = \"n={n} n6={n:06} i1={i1} i2={i2:3} "
                                "i1-1={i1-1} x={i1*2+i2+100} mac={mac} mac1={mac+1} "
                                "mac2={mac+i1*8+i2} ip={ip} ip3={ip+2} eid={eid} sn={serial} "
                                "{{lit}} }} } \\\"q\\\" \\\\ tab\\t.\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    struct usp_gen_ctx c = ctx_at(42, T0, T0);
    unsigned inst[] = {3, 4};
    CU_ASSERT_STRING_EQUAL(eval1(p, &c, inst, 2),
                           "n=42 n6=000042 i1=3 i2=004 i1-1=2 x=110 mac=02:00:00:00:2A:00 "
                           "mac1=02:00:00:00:2A:01 mac2=02:00:00:00:2A:1C ip=10.0.0.43 "
                           "ip3=10.0.0.45 eid=os::012345-SIM000001 sn=SIM000042 "
                           "{lit} } } \"q\" \\ tab\t.");
    const struct usp_profile_value *v = usp_profile_value_at(p, 0);
    CU_ASSERT_EQUAL(usp_gen_kind(v->gen), USP_GEN_TEXT);
    CU_ASSERT_EQUAL(usp_gen_flags(v->gen), USP_GEN_F_AGENT | USP_GEN_F_INST);
    CU_ASSERT_EQUAL(usp_gen_levels(v->gen), 2);
    CU_ASSERT_PTR_NULL(usp_gen_const(v->gen));
    CU_ASSERT_FALSE(usp_gen_is_dynamic(v->gen));
    /* Large agent indexes: {mac} keeps 32 bits, {ip} 24, {n} all. */
    c.agent = 0x1234567890ull;
    CU_ASSERT_PTR_NOT_NULL(strstr(eval1(p, &c, inst, 2), "n=78187493520 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(eval1(p, &c, inst, 2), "mac=02:34:56:78:90:00 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(eval1(p, &c, inst, 2), "ip=10.86.120.145 "));
    /* A NULL EID reads as empty. */
    c.eid = NULL;
    CU_ASSERT_PTR_NOT_NULL(strstr(eval1(p, &c, inst, 2), " eid= "));
    usp_profile_free(p);

    /* Custom serial; {mac+K} wraps in the agent's 256 addresses. */
    p = one("serial \"GW-{n:08}\"", "Device.X.Y = \"{serial}/{mac+255}/{mac+256}/{mac-1}\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    c = ctx_at(1, T0, T0);
    CU_ASSERT_STRING_EQUAL(eval1(p, &c, NULL, 0),
                           "GW-00000001/02:00:00:00:01:FF/02:00:00:00:01:00/02:00:00:00:01:FF");
    char sn[32];
    CU_ASSERT_EQUAL(usp_profile_serial(p, 123, sn, sizeof sn), 0);
    CU_ASSERT_STRING_EQUAL(sn, "GW-00000123");
    usp_profile_free(p);

    /* Literals: constant, shared, no flags. */
    p = one(NULL, "Device.X.Y = 2024-01-01T00:00:00Z");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    v = usp_profile_value_at(p, 0);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(v->gen), "2024-01-01T00:00:00Z");
    CU_ASSERT_EQUAL(usp_gen_flags(v->gen), 0);
    usp_profile_free(p);
    p = one(NULL, "Device.X.Y = \"\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(usp_profile_value_at(p, 0)->gen), "");
    usp_profile_free(p);
    p = one(NULL, "Device.X.Y = \"caf\xc3\xa9 \xe2\x82\xac\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_STRING_EQUAL(usp_gen_const(usp_profile_value_at(p, 0)->gen),
                           "caf\xc3\xa9 \xe2\x82\xac");
    usp_profile_free(p);
}

static void test_random(void)
{
    struct usp_profile *p =
        one("seed 99\ninstances Device.A. 3", "Device.A.{i}.N = random(1..1000000)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    char first[256];
    unsigned i1 = 1, i2 = 2;
    struct usp_gen_ctx c = ctx_at(7, T0, T0);
    snprintf(first, sizeof first, "%s", eval1(p, &c, &i1, 1));
    /* Same agent, same instance: same value, whatever the clock says. */
    c = ctx_at(7, T0 + 500, T0 + 9999);
    CU_ASSERT_STRING_EQUAL(eval1(p, &c, &i1, 1), first);
    CU_ASSERT_STRING_NOT_EQUAL(eval1(p, &c, &i2, 1), first);
    /* Different agents: different values, all in range. */
    unsigned distinct = 0;
    char prev[256] = "";
    for (uint64_t a = 0; a < 100; a++) {
        c.agent = a;
        const char *s = eval1(p, &c, &i1, 1);
        long v = atol(s);
        CU_ASSERT(v >= 1 && v <= 1000000);
        distinct += strcmp(s, prev) != 0;
        snprintf(prev, sizeof prev, "%s", s);
    }
    CU_ASSERT(distinct >= 95);
    CU_ASSERT_EQUAL(usp_gen_flags(usp_profile_value_at(p, 0)->gen),
                    USP_GEN_F_AGENT | USP_GEN_F_INST);
    usp_profile_free(p);

    /* Another seed gives other values. */
    struct usp_profile *q =
        one("seed 100\ninstances Device.A. 3", "Device.A.{i}.N = random(1..1000000)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    c.agent = 7;
    CU_ASSERT_STRING_NOT_EQUAL(eval1(q, &c, &i1, 1), first);
    usp_profile_free(q);

    /* Lists: every item comes up, templates inside are expanded. */
    p = one(NULL, "Device.X.Y = random(\"home-{n}\", office, 5, -7)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    unsigned hits[4] = {0};
    for (uint64_t a = 0; a < 200; a++) {
        c.agent = a;
        const char *s = eval1(p, &c, NULL, 0);
        char home[32];
        snprintf(home, sizeof home, "home-%" PRIu64, a);
        hits[0] += !strcmp(s, home);
        hits[1] += !strcmp(s, "office");
        hits[2] += !strcmp(s, "5");
        hits[3] += !strcmp(s, "-7");
    }
    CU_ASSERT_EQUAL(hits[0] + hits[1] + hits[2] + hits[3], 200);
    for (int k = 0; k < 4; k++)
        CU_ASSERT(hits[k] > 20);
    usp_profile_free(p);

    /* Full 64-bit range and negative ranges. */
    p = one(NULL, "Device.X.Y = random(-9223372036854775808..9223372036854775807)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    usp_profile_free(p);
    p = one(NULL, "Device.X.Y = random(-5..-3)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    for (uint64_t a = 0; a < 50; a++) {
        c.agent = a;
        long v = atol(eval1(p, &c, NULL, 0));
        CU_ASSERT(v >= -5 && v <= -3);
    }
    usp_profile_free(p);
}

static void test_clock(void)
{
    struct usp_profile *p = one(NULL, "Device.X.Up = uptime()\nDevice.X.Now = now()");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    const struct usp_gen *up = usp_profile_value_at(p, 0)->gen;
    const struct usp_gen *now = usp_profile_value_at(p, 1)->gen;
    CU_ASSERT_TRUE(usp_gen_is_dynamic(up));
    CU_ASSERT_TRUE(usp_gen_is_dynamic(now));
    CU_ASSERT_EQUAL(usp_gen_kind(up), USP_GEN_UPTIME);
    CU_ASSERT_EQUAL(usp_gen_kind(now), USP_GEN_NOW);
    char buf[64];
    struct usp_gen_ctx c = {1, NULL, 1000, 900000, 1100, 899999};
    CU_ASSERT_EQUAL(usp_gen_eval(up, &c, NULL, 0, buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "99"); /* 99.999999 s */
    c.now_usec = 900000;
    usp_gen_eval(up, &c, NULL, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "100");
    c.now_sec = 500; /* a clock set back before boot */
    usp_gen_eval(up, &c, NULL, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "0");
    struct {
        int64_t t;
        const char *want;
    } dates[] = {
        {0, "1970-01-01T00:00:00Z"},
        {T0, "2023-11-14T22:13:20Z"},
        {951782400, "2000-02-29T00:00:00Z"},
        {4107542399LL, "2100-02-28T23:59:59Z"},
        {-86400, "1969-12-31T00:00:00Z"},
        {253402300799LL, "9999-12-31T23:59:59Z"},
        {253402300800LL, "0001-01-01T00:00:00Z"},
        {INT64_MIN, "0001-01-01T00:00:00Z"},
    };
    for (size_t k = 0; k < sizeof dates / sizeof dates[0]; k++) {
        c.now_sec = dates[k].t;
        CU_ASSERT_EQUAL(usp_gen_eval(now, &c, NULL, 0, buf, sizeof buf), 0);
        CU_ASSERT_STRING_EQUAL(buf, dates[k].want);
    }
    /* Skewed clocks: two agents booted together, one 90 s ahead. */
    struct usp_gen_ctx a = ctx_at(1, T0, T0 + 10), b = ctx_at(2, T0 + 90, T0 + 100);
    char ba[32];
    usp_gen_eval(now, &a, NULL, 0, buf, sizeof buf);
    usp_gen_eval(now, &b, NULL, 0, ba, sizeof ba);
    CU_ASSERT_STRING_EQUAL(buf, "2023-11-14T22:13:30Z");
    CU_ASSERT_STRING_EQUAL(ba, "2023-11-14T22:15:00Z");
    usp_gen_eval(up, &a, NULL, 0, buf, sizeof buf);
    usp_gen_eval(up, &b, NULL, 0, ba, sizeof ba);
    CU_ASSERT_STRING_EQUAL(buf, ba);
    usp_profile_free(p);
}

static uint64_t eval_u64(const struct usp_gen *g, uint64_t agent, int64_t up_us)
{
    char buf[64];
    struct usp_gen_ctx c = {agent, NULL, T0, 0, T0 + up_us / 1000000, (uint32_t)(up_us % 1000000)};
    if (usp_gen_eval(g, &c, NULL, 0, buf, sizeof buf) != 0)
        return UINT64_MAX;
    return strtoull(buf, NULL, 10);
}

static void test_counter(void)
{
    struct usp_profile *p = one(NULL, "Device.X.A = counter(start=500, rate=1000)\n"
                                      "Device.X.B = counter(rate=0.5)\n"
                                      "Device.X.C = counter(start=4294967290, rate=10, bits=32)\n"
                                      "Device.X.D = counter(start=0..1000000, rate=1000..50000)\n"
                                      "Device.X.E = counter()\n"
                                      "Device.X.F = counter(100, 2)\n"
                                      "Device.X.G = counter(start=18446744073709551615, rate=1)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    const struct usp_gen *a = usp_profile_value_at(p, 0)->gen;
    CU_ASSERT_EQUAL(usp_gen_kind(a), USP_GEN_COUNTER);
    CU_ASSERT_TRUE(usp_gen_is_dynamic(a));
    CU_ASSERT_EQUAL(eval_u64(a, 1, 0), 500);
    CU_ASSERT_EQUAL(eval_u64(a, 1, 10000000), 10500);
    CU_ASSERT_EQUAL(eval_u64(a, 1, 10000999), 10500);
    CU_ASSERT_EQUAL(eval_u64(a, 1, 10001000), 10501);
    const struct usp_gen *b = usp_profile_value_at(p, 1)->gen;
    CU_ASSERT_EQUAL(eval_u64(b, 1, 9000000), 4);
    CU_ASSERT_EQUAL(eval_u64(b, 1, 10000000), 5);
    const struct usp_gen *cw = usp_profile_value_at(p, 2)->gen;
    CU_ASSERT_EQUAL(eval_u64(cw, 1, 0), 4294967290u);
    CU_ASSERT_EQUAL(eval_u64(cw, 1, 1000000), 4); /* wrapped at 2^32 */
    /* Ranges: drawn per agent, fixed for the agent, never going down. */
    const struct usp_gen *d = usp_profile_value_at(p, 3)->gen;
    unsigned distinct = 0;
    for (uint64_t ag = 0; ag < 50; ag++) {
        uint64_t s = eval_u64(d, ag, 0);
        CU_ASSERT(s <= 1000000);
        uint64_t later = eval_u64(d, ag, 100000000);
        CU_ASSERT(later >= s + 100 * 1000 && later <= s + 100 * 50000);
        uint64_t prev = s;
        for (int64_t t = 0; t < 3000000; t += 123457) {
            uint64_t v = eval_u64(d, ag, t);
            CU_ASSERT(v >= prev);
            prev = v;
        }
        CU_ASSERT_EQUAL(eval_u64(d, ag, 100000000), later);
        distinct += eval_u64(d, ag, 0) != eval_u64(d, ag + 1, 0);
    }
    CU_ASSERT(distinct >= 45);
    CU_ASSERT_EQUAL(eval_u64(usp_profile_value_at(p, 4)->gen, 1, 60000000), 60);
    CU_ASSERT_EQUAL(eval_u64(usp_profile_value_at(p, 5)->gen, 1, 60000000), 220);
    CU_ASSERT_EQUAL(eval_u64(usp_profile_value_at(p, 6)->gen, 1, 1000000), 0); /* 2^64 wraps */
    /* Years of uptime at a high rate stay exact. */
    CU_ASSERT_EQUAL(eval_u64(a, 1, 3153600000000000LL), 500 + 3153600000000ull);
    usp_profile_free(p);
}

static void test_gauge(void)
{
    struct usp_profile *p = one(
        "instances Device.WiFi.Radio. 2",
        "Device.WiFi.Radio.{i}.Stats.Noise = gauge(mean=-92, amplitude=3, period=600, noise=2)\n"
        "Device.WiFi.Radio.{i}.Stats.X = gauge(mean=10..20)\n"
        "Device.WiFi.Radio.{i}.Stats.Y = gauge(mean=0, amplitude=100, period=100)");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    const struct usp_gen *g = usp_profile_value_at(p, 0)->gen;
    CU_ASSERT_EQUAL(usp_gen_kind(g), USP_GEN_GAUGE);
    CU_ASSERT_TRUE(usp_gen_is_dynamic(g));
    char buf[32], again[32];
    unsigned i1 = 1, i2 = 2;
    int lo = 0, hi = -200, changes = 0, prev = 1;
    for (int64_t t = 0; t < 1200; t += 7) {
        struct usp_gen_ctx c = ctx_at(3, T0, T0 + t);
        CU_ASSERT_EQUAL(usp_gen_eval(g, &c, &i1, 1, buf, sizeof buf), 0);
        usp_gen_eval(g, &c, &i1, 1, again, sizeof again);
        CU_ASSERT_STRING_EQUAL(buf, again);
        int v = atoi(buf);
        CU_ASSERT(v >= -97 && v <= -87);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        changes += v != prev;
        prev = v;
    }
    CU_ASSERT(hi - lo >= 4); /* it moves over a period */
    CU_ASSERT(changes > 20);
    /* Radios of one agent are out of phase. */
    unsigned differ = 0;
    for (int64_t t = 0; t < 600; t += 60) {
        struct usp_gen_ctx c = ctx_at(3, T0, T0 + t);
        usp_gen_eval(g, &c, &i1, 1, buf, sizeof buf);
        usp_gen_eval(g, &c, &i2, 1, again, sizeof again);
        differ += strcmp(buf, again) != 0;
    }
    CU_ASSERT(differ >= 3);
    /* Mean drawn per agent, constant without amplitude and noise. */
    const struct usp_gen *x = usp_profile_value_at(p, 1)->gen;
    unsigned seen[21] = {0};
    for (uint64_t a = 0; a < 300; a++) {
        struct usp_gen_ctx c = ctx_at(a, T0, T0);
        usp_gen_eval(x, &c, &i1, 1, buf, sizeof buf);
        int v = atoi(buf);
        CU_ASSERT(v >= 10 && v <= 20);
        if (v >= 10 && v <= 20)
            seen[v]++;
        c.now_sec += 12345;
        usp_gen_eval(x, &c, &i1, 1, again, sizeof again);
        CU_ASSERT_STRING_EQUAL(buf, again);
    }
    for (int v = 11; v <= 19; v++)
        CU_ASSERT(seen[v] > 5);
    /* A pure sine repeats with its period and spans its amplitude. */
    const struct usp_gen *y = usp_profile_value_at(p, 2)->gen;
    int ymin = 1000, ymax = -1000;
    for (int64_t t = 0; t < 100; t++) {
        struct usp_gen_ctx c = ctx_at(4, T0, T0 + t), d = ctx_at(4, T0, T0 + t + 100 * 1000);
        usp_gen_eval(y, &c, &i1, 1, buf, sizeof buf);
        usp_gen_eval(y, &d, &i1, 1, again, sizeof again);
        CU_ASSERT_STRING_EQUAL(buf, again);
        int v = atoi(buf);
        ymin = v < ymin ? v : ymin;
        ymax = v > ymax ? v : ymax;
    }
    CU_ASSERT(ymin >= -100 && ymin <= -95);
    CU_ASSERT(ymax <= 100 && ymax >= 95);
    usp_profile_free(p);
}

static void test_eval_errors(void)
{
    struct usp_profile *p = one("instances Device.A. 2\ninstances Device.A.{i}.B. 2",
                                "Device.A.{i}.B.{i}.C = \"x{i2}yyyyyyyyyy\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    const struct usp_gen *g = usp_profile_value_at(p, 0)->gen;
    struct usp_gen_ctx c = ctx_at(1, T0, T0);
    unsigned inst[] = {1, 2};
    char buf[8];
    CU_ASSERT_EQUAL(usp_gen_eval(g, &c, inst, 2, buf, sizeof buf), USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(buf, "x2yyyyy");
    CU_ASSERT_EQUAL(usp_gen_eval(g, &c, inst, 1, buf, sizeof buf), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_gen_eval(g, &c, NULL, 2, buf, sizeof buf), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_gen_eval(g, &c, inst, 2, buf, 0), USP_EINVAL);
    char big[32];
    CU_ASSERT_EQUAL(usp_gen_eval(g, &c, inst, 2, big, sizeof big), 0);
    CU_ASSERT_STRING_EQUAL(big, "x2yyyyyyyyyy");
    CU_ASSERT_EQUAL(usp_profile_get(p, "Device.A.{i}.B.1.C", &c, big, sizeof big), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_profile_get(p, "Device..C", &c, big, sizeof big), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_profile_get(p, "Device.A.1.B.1.D", &c, big, sizeof big), USP_ENOENT);
    usp_profile_free(p);
}

/* --- Shipped profiles ------------------------------------------------------ */

static struct usp_profile *load_shipped(const char *name)
{
    char path[512];
    struct usp_profile *p = NULL;
    struct usp_profile_err err;
    snprintf(path, sizeof path, "%s/%s", SHIPPED, name);
    if (usp_profile_load(path, &p, &err) != 0)
        fprintf(stderr, "\n%s\n", err.text);
    return p;
}

/* What TR-181 says about one parameter's values. */
struct xsyn {
    char base[16];
    bool list;
    unsigned nenum;
    char *enums[64];
    unsigned nrange;
    long long rmin[8], rmax[8];
    long minlen, maxlen;
    unsigned npat;
    char *pats[4];
};

struct xent {
    char *path; /* "Device.A.{i}.", "Device.A.{i}.P", "Device.A.C()", "Device.A.C()#Out" */
    char *status;
    bool table;
    struct xsyn *syn;
};

struct xmodel {
    struct xent *e;
    size_t n, cap;
    xmlDocPtr doc;
    xmlNodePtr root;
};

static char *prop(xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    char *s = v ? strdup((const char *)v) : NULL;
    xmlFree(v);
    return s;
}

static bool is_el(xmlNodePtr n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

static void facets(xmlNodePtr el, struct xsyn *s)
{
    for (xmlNodePtr f = el->children; f; f = f->next) {
        if (f->type != XML_ELEMENT_NODE)
            continue;
        char *v;
        if (is_el(f, "enumeration") && (v = prop(f, "value")) && s->nenum < 64) {
            s->enums[s->nenum++] = v;
        } else if (is_el(f, "range") && s->nrange < 8) {
            char *mn = prop(f, "minInclusive"), *mx = prop(f, "maxInclusive");
            s->rmin[s->nrange] = mn ? atoll(mn) : LLONG_MIN;
            s->rmax[s->nrange] = mx ? atoll(mx) : LLONG_MAX;
            s->nrange++;
            free(mn);
            free(mx);
        } else if (is_el(f, "size")) {
            char *mn = prop(f, "minLength"), *mx = prop(f, "maxLength");
            if (mn)
                s->minlen = atol(mn);
            if (mx)
                s->maxlen = atol(mx);
            free(mn);
            free(mx);
        } else if (is_el(f, "pattern") && (v = prop(f, "value"))) {
            if (s->npat < 4)
                s->pats[s->npat++] = v;
            else
                free(v);
        }
    }
}

static const char *base_types[] = {"string", "boolean",  "unsignedInt", "unsignedLong", "int",
                                   "long",   "dateTime", "hexBinary",   "base64",       "decimal"};

static void type_el(xmlNodePtr el, struct xsyn *s)
{
    for (size_t k = 0; k < sizeof base_types / sizeof base_types[0]; k++)
        if (is_el(el, base_types[k])) {
            snprintf(s->base, sizeof s->base, "%s", base_types[k]);
            facets(el, s);
        }
}

/* A named data type, its base first. */
static void named_type(struct xmodel *m, const char *name, struct xsyn *s, int depth)
{
    for (xmlNodePtr d = m->root->children; d && depth < 8; d = d->next) {
        if (!is_el(d, "dataType"))
            continue;
        char *n = prop(d, "name");
        bool hit = n && !strcmp(n, name);
        free(n);
        if (!hit)
            continue;
        char *base = prop(d, "base");
        if (base)
            named_type(m, base, s, depth + 1);
        free(base);
        for (xmlNodePtr c = d->children; c; c = c->next)
            type_el(c, s);
        facets(d, s);
        return;
    }
}

static struct xsyn *syntax_of(struct xmodel *m, xmlNodePtr param)
{
    struct xsyn *s = calloc(1, sizeof *s);
    s->minlen = -1;
    s->maxlen = -1;
    for (xmlNodePtr syn = param->children; syn; syn = syn->next) {
        if (!is_el(syn, "syntax"))
            continue;
        for (xmlNodePtr c = syn->children; c; c = c->next) {
            if (is_el(c, "list")) {
                s->list = true;
            } else if (is_el(c, "dataType")) {
                char *ref = prop(c, "ref");
                if (ref)
                    named_type(m, ref, s, 0);
                free(ref);
                facets(c, s);
            } else {
                type_el(c, s);
            }
        }
    }
    return s;
}

static void add_ent(struct xmodel *m, const char *path, char *status, bool table, struct xsyn *syn)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 4096;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
    }
    m->e[m->n].path = strdup(path);
    m->e[m->n].status = status;
    m->e[m->n].table = table;
    m->e[m->n].syn = syn;
    m->n++;
}

static int cmp_ent(const void *a, const void *b)
{
    return strcmp(((const struct xent *)a)->path, ((const struct xent *)b)->path);
}

static struct xmodel *model_load(const char *file)
{
    struct xmodel *m = calloc(1, sizeof *m);
    m->doc = xmlReadFile(file, NULL, XML_PARSE_NONET);
    if (!m->doc) {
        free(m);
        return NULL;
    }
    m->root = xmlDocGetRootElement(m->doc);
    for (xmlNodePtr model = m->root->children; model; model = model->next) {
        if (!is_el(model, "model"))
            continue;
        for (xmlNodePtr o = model->children; o; o = o->next) {
            if (!is_el(o, "object"))
                continue;
            char *oname = prop(o, "name");
            if (!oname)
                continue;
            size_t on = strlen(oname);
            add_ent(m, oname, prop(o, "status"), on > 4 && !strcmp(oname + on - 4, "{i}."), NULL);
            for (xmlNodePtr p = o->children; p; p = p->next) {
                char full[1024];
                if (is_el(p, "parameter") || is_el(p, "command")) {
                    char *pname = prop(p, "name");
                    snprintf(full, sizeof full, "%s%s", oname, pname ? pname : "");
                    add_ent(m, full, prop(p, "status"), false,
                            is_el(p, "parameter") ? syntax_of(m, p) : NULL);
                    if (is_el(p, "command"))
                        for (xmlNodePtr io = p->children; io; io = io->next) {
                            if (!is_el(io, "output"))
                                continue;
                            for (xmlNodePtr a = io->children; a; a = a->next) {
                                if (!is_el(a, "parameter"))
                                    continue;
                                char *an = prop(a, "name"), arg[1100];
                                snprintf(arg, sizeof arg, "%s#%s", full, an ? an : "");
                                add_ent(m, arg, NULL, false, syntax_of(m, a));
                                free(an);
                            }
                        }
                    free(pname);
                }
            }
            free(oname);
        }
    }
    qsort(m->e, m->n, sizeof *m->e, cmp_ent);
    return m;
}

static void model_free(struct xmodel *m)
{
    if (!m)
        return;
    for (size_t k = 0; k < m->n; k++) {
        free(m->e[k].path);
        free(m->e[k].status);
        struct xsyn *s = m->e[k].syn;
        if (s) {
            for (unsigned j = 0; j < s->nenum; j++)
                free(s->enums[j]);
            for (unsigned j = 0; j < s->npat; j++)
                free(s->pats[j]);
            free(s);
        }
    }
    free(m->e);
    xmlFreeDoc(m->doc);
    free(m);
}

static const struct xent *model_find(const struct xmodel *m, const char *path)
{
    struct xent key = {.path = (char *)path};
    return bsearch(&key, m->e, m->n, sizeof *m->e, cmp_ent);
}

static bool re_full(const char *pat, const char *v)
{
    char full[600];
    regex_t re;
    snprintf(full, sizeof full, "^(%s)$", pat);
    if (regcomp(&re, full, REG_EXTENDED | REG_NOSUB) != 0)
        return true; /* an XSD pattern POSIX cannot read: not checked */
    bool ok = regexec(&re, v, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* Whether one value (or list item) fits the syntax; NULL or the reason. */
static const char *fits_item(const struct xsyn *s, const char *v)
{
    static const char *ints[] = {"unsignedInt", "unsignedLong", "int", "long"};
    bool isint = false;
    for (size_t k = 0; k < 4; k++)
        isint |= !strcmp(s->base, ints[k]);
    if (!strcmp(s->base, "boolean")) {
        if (strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "0") && strcmp(v, "1"))
            return "not a boolean";
    } else if (isint) {
        const char *q = v;
        bool neg = *q == '-';
        if (neg)
            q++;
        if (!*q || strspn(q, "0123456789") != strlen(q))
            return "not an integer";
        if (neg && s->base[0] == 'u')
            return "negative";
        errno = 0;
        long long x = neg ? strtoll(v, NULL, 10) : 0;
        unsigned long long ux = neg ? 0 : strtoull(v, NULL, 10);
        if (errno)
            return "out of range";
        if (!strcmp(s->base, "unsignedInt") && ux > 4294967295ull)
            return "over unsignedInt";
        if (!strcmp(s->base, "int") && (x < INT32_MIN || (!neg && ux > INT32_MAX)))
            return "over int";
        if (s->nrange) {
            bool in = false;
            for (unsigned k = 0; k < s->nrange; k++) {
                bool above = neg ? x >= s->rmin[k]
                                 : (s->rmin[k] <= 0 || ux >= (unsigned long long)s->rmin[k]);
                bool below = neg ? x <= s->rmax[k]
                                 : (s->rmax[k] >= 0 && ux <= (unsigned long long)s->rmax[k]);
                in |= above && below;
            }
            if (!in)
                return "outside the ranges";
        }
    } else if (!strcmp(s->base, "dateTime")) {
        if (!re_full("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?"
                     "(Z|[+-][0-9]{2}:[0-9]{2})?",
                     v))
            return "not a dateTime";
    } else if (!strcmp(s->base, "string")) {
        long len = (long)strlen(v);
        if (s->maxlen >= 0 && len > s->maxlen)
            return "too long";
        if (s->minlen >= 0 && len < s->minlen)
            return "too short";
        if (s->nenum) {
            bool in = false;
            for (unsigned k = 0; k < s->nenum; k++)
                in |= !strcmp(s->enums[k], v);
            if (!in)
                return "not in the enumeration";
        }
        if (s->npat) {
            bool in = false;
            for (unsigned k = 0; k < s->npat; k++)
                in |= s->pats[k][0] ? re_full(s->pats[k], v) : !*v;
            if (!in)
                return "does not match the pattern";
        }
    } else if (!s->base[0]) {
        return "no syntax";
    }
    return NULL;
}

static const char *fits(const struct xsyn *s, const char *v)
{
    if (!s->list)
        return fits_item(s, v);
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", v);
    if (!*copy)
        return NULL;
    char *save = NULL;
    for (char *it = strtok_r(copy, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        const char *why = fits_item(s, it);
        if (why)
            return why;
    }
    return NULL;
}

static bool current(const struct xent *e)
{
    return !e->status || !strcmp(e->status, "current");
}

struct expand {
    const struct usp_profile *p;
    const struct xmodel *m;
    const struct usp_profile_value *v;
    const char *tables[USP_PROFILE_MAX_LEVELS];
    unsigned ntables;
    uint64_t agent;
    size_t count, bad;
};

/* Visits every instance of v's tables for one agent and checks the value
 * found there against the TR-181 syntax. */
static void expand_level(struct expand *x, unsigned *inst, unsigned level)
{
    if (level == x->ntables) {
        const struct usp_profile_value *hit =
            usp_profile_find_value(x->p, x->v->e.spath, inst, level);
        if (hit != x->v)
            return; /* counted with the line that wins there */
        x->count++;
        const struct xent *e = x->m ? model_find(x->m, x->v->e.spath) : NULL;
        for (int64_t up = 0; e && e->syn && up <= 86400 * 400; up += 86400 * 100) {
            char buf[1024];
            struct usp_gen_ctx c = ctx_at(x->agent, T0, T0 + up);
            int rc = usp_gen_eval(hit->gen, &c, inst, level, buf, sizeof buf);
            const char *why = rc ? "cannot be evaluated" : fits(e->syn, buf);
            if (why) {
                fprintf(stderr, "\n%s:%u: %s = '%s': %s (%s)\n", hit->e.file, hit->e.line,
                        hit->e.path, buf, why, e->syn->base);
                x->bad++;
            }
        }
        return;
    }
    unsigned n = usp_profile_instances(x->p, x->tables[level], x->agent, inst, level);
    for (unsigned i = 1; i <= n; i++) {
        inst[level] = i;
        expand_level(x, inst, level + 1);
    }
}

/* Instantiated parameters with a profile value, for one agent; `hits` (when
 * not NULL) adds up, per line, the instances where that line applies. */
static size_t expand_all(const struct usp_profile *p, const struct xmodel *m, uint64_t agent,
                         size_t *bad, size_t *hits)
{
    size_t total = 0;
    *bad = 0;
    for (size_t k = 0; k < usp_profile_nvalues(p); k++) {
        struct expand x = {p, m, usp_profile_value_at(p, k), {0}, 0, agent, 0, 0};
        static char tabs[USP_PROFILE_MAX_LEVELS][USP_PROFILE_MAX_PATH];
        const char *sp = x.v->e.spath;
        for (const char *q = strstr(sp, ".{i}."); q; q = strstr(q + 4, ".{i}.")) {
            snprintf(tabs[x.ntables], sizeof tabs[0], "%.*s", (int)(q - sp + 5), sp);
            x.tables[x.ntables] = tabs[x.ntables];
            x.ntables++;
        }
        unsigned inst[USP_PROFILE_MAX_LEVELS];
        expand_level(&x, inst, 0);
        total += x.count;
        if (hits)
            hits[k] += x.count;
        *bad += x.bad;
    }
    return total;
}

static void test_shipped_load(void)
{
    const char *names[] = {"gateway.prof", "extender.prof", "iot.prof", "base.prof"};
    size_t counts[4];
    for (size_t k = 0; k < 4; k++) {
        struct usp_profile *p = load_shipped(names[k]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        size_t bad, min = SIZE_MAX;
        size_t *hits = calloc(usp_profile_nvalues(p) + 1, sizeof *hits);
        CU_ASSERT_PTR_NOT_NULL_FATAL(hits);
        for (uint64_t agent = 0; agent < 40; agent++) {
            size_t n = expand_all(p, NULL, agent, &bad, hits);
            min = n < min ? n : min;
        }
        counts[k] = min;
        /* No line of a shipped profile is hidden by others everywhere. */
        for (size_t j = 0; j < usp_profile_nvalues(p); j++) {
            const struct usp_profile_value *v = usp_profile_value_at(p, j);
            if (!hits[j])
                fprintf(stderr, "\n%s:%u: %s never applies\n", v->e.file, v->e.line, v->e.path);
            CU_ASSERT(hits[j] > 0);
        }
        free(hits);
        usp_profile_free(p);
    }
    fprintf(stderr,
            "\n  instantiated parameters with a value (fewest over 40 agents): "
            "gateway %zu, extender %zu, iot %zu, base %zu\n",
            counts[0], counts[1], counts[2], counts[3]);
    CU_ASSERT(counts[0] >= 1000);
    CU_ASSERT(counts[1] >= 200 && counts[1] < counts[0]);
    CU_ASSERT(counts[2] < counts[1]);
    CU_ASSERT(counts[3] < counts[2]);

    /* What base.prof promises to every profile. */
    struct usp_profile *p = load_shipped("gateway.prof");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    struct usp_gen_ctx c = ctx_at(17, T0, T0 + 3600);
    c.eid = "os::012345-GW00000017";
    char buf[128];
    struct {
        const char *path, *want;
    } want[] = {
        {"Device.LocalAgent.EndpointID", "os::012345-GW00000017"},
        {"Device.LocalAgent.Controller.1.EndpointID", "self::uspsim-controller"},
        {"Device.LocalAgent.Controller.1.MTP.1.MQTT.Topic", "usp/controller/uspsim-controller"},
        {"Device.LocalAgent.MTP.1.MQTT.ResponseTopicConfigured", "usp/agent/os::012345-GW00000017"},
        {"Device.LocalAgent.Subscription.1.NotifType", "Event"},
        {"Device.LocalAgent.Subscription.1.ReferenceList", "Device.Boot!"},
        {"Device.LocalAgent.Subscription.1.NotifRetry", "true"},
        {"Device.LocalAgent.Subscription.1.Enable", "true"},
        {"Device.LocalAgent.Subscription.1.ID", "boot-1"},
        {"Device.LocalAgent.Subscription.1.Recipient", "Device.LocalAgent.Controller.1"},
        {"Device.MQTT.Client.1.ClientID", "os::012345-GW00000017"},
        {"Device.DeviceInfo.SerialNumber", "GW00000017"},
        {"Device.DeviceInfo.UpTime", "3600"},
        {"Device.Ethernet.Interface.1.Upstream", "true"},
        {"Device.Ethernet.Interface.2.Upstream", "false"},
        {"Device.Ethernet.Interface.3.Name", "eth2"},
        /* Host 9 is the first client of access point 2, seen from both. */
        {"Device.Hosts.Host.9.PhysAddress", "02:00:00:00:11:49"},
        {"Device.WiFi.AccessPoint.2.AssociatedDevice.1.MACAddress", "02:00:00:00:11:49"},
        {"Device.Hosts.Host.9.AssociatedDevice", "Device.WiFi.AccessPoint.2.AssociatedDevice.1"},
        {"Device.Hosts.Host.9.Layer1Interface", "Device.WiFi.SSID.2"},
        {"Device.Hosts.Host.3.AssociatedDevice", "Device.WiFi.AccessPoint.1.AssociatedDevice.3"},
        {"Device.Hosts.Host.18.Layer1Interface", "Device.Ethernet.Interface.3"},
        {"Device.DHCPv4.Server.Pool.1.Client.9.Chaddr", "02:00:00:00:11:49"},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        CU_ASSERT_EQUAL(usp_profile_get(p, want[k].path, &c, buf, sizeof buf), 0);
        if (strcmp(buf, want[k].want))
            fprintf(stderr, "\n%s: want '%s', got '%s'\n", want[k].path, want[k].want, buf);
        CU_ASSERT_STRING_EQUAL(buf, want[k].want);
    }
    CU_ASSERT_EQUAL(usp_profile_serial(p, 17, buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "GW00000017");
    /* Shared, not per agent: a gateway profile stays small. */
    CU_ASSERT(usp_profile_mem(p) < 1024 * 1024);
    usp_profile_free(p);
}

static void test_shipped_tr181(void)
{
    struct xmodel *m = model_load(TR181);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(m->n > 7000);
    const char *names[] = {"gateway.prof", "extender.prof", "iot.prof"};
    for (size_t k = 0; k < 3; k++) {
        struct usp_profile *p = load_shipped(names[k]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        for (size_t j = 0; j < usp_profile_nvalues(p); j++) {
            const struct usp_profile_value *v = usp_profile_value_at(p, j);
            const struct xent *e = model_find(m, v->e.spath);
            if (!e || !e->syn || !current(e))
                fprintf(stderr, "\n%s:%u: %s is not a current TR-181 2.19 parameter\n", v->e.file,
                        v->e.line, v->e.spath);
            CU_ASSERT(e && e->syn && current(e));
        }
        for (size_t j = 0; j < usp_profile_ninsts(p); j++) {
            const struct usp_profile_inst *d = usp_profile_inst_at(p, j);
            const struct xent *e = model_find(m, d->e.spath);
            if (!e || !e->table || !current(e))
                fprintf(stderr, "\n%s:%u: %s is not a current TR-181 2.19 table\n", d->e.file,
                        d->e.line, d->e.spath);
            CU_ASSERT(e && e->table && current(e));
        }
        for (size_t j = 0; j < usp_profile_ncmds(p); j++) {
            const struct usp_profile_cmd *d = usp_profile_cmd_at(p, j);
            const struct xent *e = model_find(m, d->e.spath);
            if (!e || !current(e))
                fprintf(stderr, "\n%s:%u: %s is not a current TR-181 2.19 command\n", d->e.file,
                        d->e.line, d->e.spath);
            CU_ASSERT(e && current(e));
            for (unsigned o = 0; o < d->nout; o++) {
                char arg[1100], buf[256];
                snprintf(arg, sizeof arg, "%s#%s", d->e.spath, d->out[o].name);
                const struct xent *a = model_find(m, arg);
                unsigned inst[USP_PROFILE_MAX_LEVELS] = {1, 1, 1, 1, 1, 1, 1, 1};
                struct usp_gen_ctx c = ctx_at(5, T0, T0);
                CU_ASSERT_EQUAL(
                    usp_gen_eval(d->out[o].gen, &c, inst, d->e.nlevels, buf, sizeof buf), 0);
                const char *why = a ? fits(a->syn, buf) : "no such output argument";
                if (why)
                    fprintf(stderr, "\n%s:%u: %s out.%s = '%s': %s\n", d->e.file, d->e.line,
                            d->e.spath, d->out[o].name, buf, why);
                CU_ASSERT_PTR_NULL(why);
            }
        }
        /* Every instantiated value of several agents fits its syntax. */
        size_t bad = 0;
        uint64_t agents[] = {0, 1, 77, 4242, 99999};
        for (size_t a = 0; a < 5; a++) {
            size_t b;
            expand_all(p, m, agents[a], &b, NULL);
            bad += b;
        }
        CU_ASSERT_EQUAL(bad, 0);
        usp_profile_free(p);
    }
    model_free(m);
}

/* The shipped profiles are made for the default model: every line must
 * bind to it. */
static void test_shipped_default_model(void)
{
    struct xmodel *m = model_load(DEFMODEL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(m->n > 100);
    const char *names[] = {"gateway.prof", "extender.prof", "iot.prof"};
    for (size_t k = 0; k < 3; k++) {
        struct usp_profile *p = load_shipped(names[k]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        size_t cap = usp_profile_nvalues(p) + usp_profile_ninsts(p) + usp_profile_ncmds(p);
        const struct usp_profile_entry **all = calloc(cap + 1, sizeof *all);
        CU_ASSERT_PTR_NOT_NULL_FATAL(all);
        size_t n = 0;
        for (size_t j = 0; j < usp_profile_nvalues(p); j++)
            all[n++] = &usp_profile_value_at(p, j)->e;
        for (size_t j = 0; j < usp_profile_ninsts(p); j++)
            all[n++] = &usp_profile_inst_at(p, j)->e;
        for (size_t j = 0; j < usp_profile_ncmds(p); j++)
            all[n++] = &usp_profile_cmd_at(p, j)->e;
        for (size_t j = 0; j < n; j++) {
            const struct xent *e = model_find(m, all[j]->spath);
            if (!e)
                fprintf(stderr, "\n%s:%u: %s is not in the default model\n", all[j]->file,
                        all[j]->line, all[j]->spath);
            CU_ASSERT_PTR_NOT_NULL(e);
        }
        free(all);
        usp_profile_free(p);
    }
    model_free(m);
}

void suite_profile(void)
{
    USP_SUITE("profile", USP_TEST(test_good_file), USP_TEST(test_precedence),
              USP_TEST(test_instance_counts), USP_TEST(test_bad_files),
              USP_TEST(test_errors_in_memory), USP_TEST(test_split_path), USP_TEST(test_templates),
              USP_TEST(test_random), USP_TEST(test_clock), USP_TEST(test_counter),
              USP_TEST(test_gauge), USP_TEST(test_eval_errors), USP_TEST(test_shipped_load),
              USP_TEST(test_shipped_tr181), USP_TEST(test_shipped_default_model));
}
