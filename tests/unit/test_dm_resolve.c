/* Path resolution against an agent (usp_dm_resolve and the instantiated-path
 * helpers of usp/dm.h): every path form, search operators by type,
 * unique-key addresses, wildcards at several levels, reference following and
 * the errors, on our default model and on the official full model. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/dm.h"
#include "usp/errors.h"

#define DEFAULT_XML USP_SRC("datamodels/device-2-uspsim.xml")
#define FULL_XML    USP_REF("tr-181/tr-181-2-19-1-usp-full.xml")
#define SMALL_PROF  USP_SRC("tests/unit/data/dm_store/small.prof")

static struct usp_dm_schema *g_schema[2];
static struct usp_profile *g_prof;
static struct usp_dm_model *g_model[2];

static struct usp_dm_model *model(int full)
{
    if (!g_prof) {
        struct usp_profile_err pe;
        if (usp_profile_load(SMALL_PROF, &g_prof, &pe) != 0) {
            fprintf(stderr, "%s\n", pe.text);
            return NULL;
        }
    }
    if (!g_schema[full]) {
        struct usp_dm_error e;
        if (usp_dm_load_file(full ? FULL_XML : DEFAULT_XML, 0, &g_schema[full], &e) != 0) {
            fprintf(stderr, "%s\n", e.msg);
            g_schema[full] = NULL;
            return NULL;
        }
    }
    if (!g_model[full]) {
        struct usp_dm_model_err me;
        if (usp_dm_model_new(g_schema[full], g_prof, &g_model[full], &me) != 0) {
            fprintf(stderr, "%s\n", me.msg);
            return NULL;
        }
    }
    return g_model[full];
}

struct out {
    char s[4096];
    unsigned n;
    int stop_at; /* return 99 from this match (1-based); 0: never */
};

static int collect(void *ctx, const struct usp_dm_match *m)
{
    struct out *o = ctx;
    char path[512];
    CU_ASSERT_EQUAL(usp_dm_inst_path(&m->obj, path, sizeof path), 0);
    const char *leaf = m->param     ? m->param->name
                       : m->command ? m->command->name
                       : m->event   ? m->event->name
                                    : "";
    size_t n = strlen(o->s);
    snprintf(o->s + n, sizeof o->s - n, "%s%s%s", o->n ? "|" : "", path, leaf);
    o->n++;
    return o->stop_at && (int)o->n == o->stop_at ? 99 : 0;
}

static struct usp_dm_path_err g_err;

/* The matches of `path` joined by '|', or "E7026" etc. on error. */
static const char *resolve(const struct usp_dm_agent *a, const char *path)
{
    static struct out o;
    memset(&o, 0, sizeof o);
    struct usp_path *p = NULL;
    struct usp_path_err pe;
    if (usp_path_parse(path, &p, &pe) != 0) {
        snprintf(o.s, sizeof o.s, "syntax: %s", pe.msg);
        return o.s;
    }
    int rc = usp_dm_resolve(a, p, collect, &o, &g_err);
    usp_path_free(p);
    if (rc) {
        CU_ASSERT_EQUAL(g_err.usp_code, (uint32_t)rc);
        CU_ASSERT(strlen(g_err.msg) > 0);
        snprintf(o.s, sizeof o.s, "E%d", rc);
    }
    return o.s;
}

#define EXPECT(a, path, want)                                                                      \
    do {                                                                                           \
        const char *got_ = resolve((a), (path));                                                   \
        if (strcmp(got_, (want)) != 0)                                                             \
            fprintf(stderr, "\n%s:\n  got  %s\n  want %s\n  (%s)\n", (path), got_, (want),         \
                    g_err.msg);                                                                    \
        CU_ASSERT_STRING_EQUAL(got_, (want));                                                      \
    } while (0)

static const struct usp_dm_param *split(const struct usp_dm_model *m, const char *ppath,
                                        struct usp_dm_inst *o)
{
    char obj[512];
    const char *dot = strrchr(ppath, '.');
    snprintf(obj, sizeof obj, "%.*s", (int)(dot - ppath + 1), ppath);
    CU_ASSERT_EQUAL_FATAL(usp_dm_inst_parse(m, obj, o), 0);
    const struct usp_dm_param *p = usp_dm_object_param(o->obj, dot + 1, strlen(dot + 1));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

static int set(struct usp_dm_agent *a, const char *ppath, const char *value)
{
    struct usp_dm_inst o;
    const struct usp_dm_param *p = split(a->model, ppath, &o);
    char why[256];
    int rc = usp_dm_set(a, &o, p, value, NULL, why, sizeof why);
    if (rc)
        fprintf(stderr, "\nset %s=%s: %d %s\n", ppath, value, rc, why);
    return rc;
}

/* --- Names and instance numbers ----------------------------------------- */

static void test_names_and_numbers(void)
{
    for (int full = 0; full < 2; full++) {
        struct usp_dm_model *m = model(full);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        struct usp_dm_agent a;
        usp_dm_agent_init(&a, m, 0, "proto::a", 0);
        EXPECT(&a, "Device.", "Device.");
        EXPECT(&a, "Device.DeviceInfo.", "Device.DeviceInfo.");
        EXPECT(&a, "Device.DeviceInfo.Manufacturer", "Device.DeviceInfo.Manufacturer");
        EXPECT(&a, "Device.IP.Interface.2.Name", "Device.IP.Interface.2.Name");
        EXPECT(&a, "Device.IP.Interface.2.", "Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.2.Stats.ErrorsSent",
               "Device.IP.Interface.2.Stats."
               "ErrorsSent");
        EXPECT(&a, "Device.IP.Interface.3.IPv4Address.2.IPAddress",
               "Device.IP.Interface.3.IPv4Address.2.IPAddress");
        /* A table path names the table. */
        EXPECT(&a, "Device.IP.Interface.", "Device.IP.Interface.");
        EXPECT(&a, "Device.IP.Interface.1.IPv4Address.", "Device.IP.Interface.1.IPv4Address.");
        /* Commands and events. */
        EXPECT(&a, "Device.Reboot()", "Device.Reboot()");
        EXPECT(&a, "Device.Boot!", "Device.Boot!");
        EXPECT(&a, "Device.WiFi.AccessPoint.2.Security.Reset()",
               "Device.WiFi.AccessPoint.2.Security.Reset()");
        /* Nothing at that address: 7016. */
        EXPECT(&a, "Device.IP.Interface.9.Name", "E7016");
        EXPECT(&a, "Device.IP.Interface.9.", "E7016");
        EXPECT(&a, "Device.IP.Interface.1.IPv4Address.3.", "E7016");
        EXPECT(&a, "Device.WiFi.AccessPoint.3.Security.Reset()", "E7016");
        /* Not in the schema: 7026. */
        EXPECT(&a, "Device.IP.Nope", "E7026");
        EXPECT(&a, "Device.IP.Nope.", "E7026");
        EXPECT(&a, "Device.IP.Interface.Name", "E7026");
        EXPECT(&a, "Device.IP.Interface.Reset()", "E7026");
        EXPECT(&a, "Device.DeviceInfo.1.Manufacturer", "E7026");
        EXPECT(&a, "Device.DeviceInfo.Manufacturer.X", "E7026");
        EXPECT(&a, "Device.Nope()", "E7026");
        EXPECT(&a, "Device.Nope!", "E7026");
        EXPECT(&a, "Foo.Bar", "E7026");
        EXPECT(&a, "Device.IP.Interface.{i}.Name", "E7026");
        /* Even under a wildcard over an empty table. */
        EXPECT(&a, "Device.Hosts.Host.*.Nope", "E7026");
        EXPECT(&a, "Device.Hosts.Host.*.", "");
        usp_dm_agent_cleanup(&a);
    }
}

static void test_wildcards(void)
{
    for (int full = 0; full < 2; full++) {
        struct usp_dm_model *m = model(full);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        struct usp_dm_agent a;
        usp_dm_agent_init(&a, m, 4, "proto::a", 0);
        EXPECT(&a, "Device.IP.Interface.*.Name",
               "Device.IP.Interface.1.Name|Device.IP.Interface.2.Name|Device.IP.Interface.3.Name");
        EXPECT(&a, "Device.IP.Interface.*.",
               "Device.IP.Interface.1.|Device.IP.Interface.2.|Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.*.IPAddress",
               "Device.IP.Interface.1.IPv4Address.1.IPAddress|"
               "Device.IP.Interface.1.IPv4Address.2.IPAddress|"
               "Device.IP.Interface.2.IPv4Address.1.IPAddress|"
               "Device.IP.Interface.2.IPv4Address.2.IPAddress|"
               "Device.IP.Interface.3.IPv4Address.1.IPAddress|"
               "Device.IP.Interface.3.IPv4Address.2.IPAddress");
        EXPECT(&a, "Device.IP.Interface.2.IPv4Address.*.Alias",
               "Device.IP.Interface.2.IPv4Address.1.Alias|"
               "Device.IP.Interface.2.IPv4Address.2.Alias");
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.2.",
               "Device.IP.Interface.1.IPv4Address.2.|Device.IP.Interface.2.IPv4Address.2.|"
               "Device.IP.Interface.3.IPv4Address.2.");
        /* Under a wildcard, a missing number is no error. */
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.9.", "");
        EXPECT(&a, "Device.WiFi.AccessPoint.*.Security.Reset()",
               "Device.WiFi.AccessPoint.1.Security.Reset()|"
               "Device.WiFi.AccessPoint.2.Security.Reset()");
        /* Rows drawn per agent: the count follows the profile's draw. */
        unsigned want = 0;
        char expect[2048] = "";
        for (unsigned ap = 1; ap <= 2; ap++) {
            unsigned n = usp_profile_instances(usp_dm_model_profile(m),
                                               "Device.WiFi.AccessPoint.{i}.AssociatedDevice.",
                                               a.index, &ap, 1);
            for (unsigned k = 1; k <= n; k++)
                snprintf(expect + strlen(expect), sizeof expect - strlen(expect),
                         "%sDevice.WiFi.AccessPoint.%u.AssociatedDevice.%u.", want++ ? "|" : "", ap,
                         k);
        }
        EXPECT(&a, "Device.WiFi.AccessPoint.*.AssociatedDevice.*.", expect);
        /* After a delete and an add. */
        struct usp_dm_inst r2;
        CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.2", &r2), 0);
        CU_ASSERT_EQUAL(usp_dm_delete(&a, &r2), 0);
        uint32_t n;
        CU_ASSERT_EQUAL(usp_dm_add(&a, r2.obj, NULL, &n), 0);
        CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.4.Name", "new"), 0);
        EXPECT(&a, "Device.IP.Interface.*.Name",
               "Device.IP.Interface.1.Name|Device.IP.Interface.3.Name|Device.IP.Interface.4.Name");
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.*.",
               "Device.IP.Interface.1.IPv4Address.1.|Device.IP.Interface.1.IPv4Address.2.|"
               "Device.IP.Interface.3.IPv4Address.1.|Device.IP.Interface.3.IPv4Address.2.");
        EXPECT(&a, "Device.IP.Interface.2.Name", "E7016");
        usp_dm_agent_cleanup(&a);
    }
}

/* --- Search expressions -------------------------------------------------- */

static void test_search_operators(void)
{
    for (int full = 0; full < 2; full++) {
        struct usp_dm_model *m = model(full);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        struct usp_dm_agent a;
        usp_dm_agent_init(&a, m, 0, "proto::a", 0);
        /* Strings. */
        EXPECT(&a, "Device.IP.Interface.[Name==\"wan\"].Name", "Device.IP.Interface.1.Name");
        EXPECT(&a, "Device.IP.Interface.[Name!=\"wan\"].",
               "Device.IP.Interface.2.|Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Type==\"Loopback\"].", "Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Name<\"x\"].", "E7008");
        EXPECT(&a, "Device.IP.Interface.[Name>=\"x\"].", "E7008");
        /* Booleans: true/false and 1/0, == and != only. */
        EXPECT(&a, "Device.IP.Interface.[Enable==true].",
               "Device.IP.Interface.1.|Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.[Enable==1].",
               "Device.IP.Interface.1.|Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.[Enable!=true].", "Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Enable==0].", "Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Enable>false].", "E7008");
        EXPECT(&a, "Device.IP.Interface.[Enable==maybe].", "E7008");
        /* Numbers, numerically (12 > 5 although "12" < "5"). */
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent>0].",
               "Device.IP.Interface.2.|Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent>5].", "Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent>=5].",
               "Device.IP.Interface.2.|Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent<5].", "Device.IP.Interface.1.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent<=5].",
               "Device.IP.Interface.1.|Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent==12].", "Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent!=12].",
               "Device.IP.Interface.1.|Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent>abc].", "E7008");
        EXPECT(&a, "Device.IP.Interface.[Stats.ErrorsSent>-1].", "E7008");
        EXPECT(&a, "Device.Ethernet.Interface.[MaxBitRate<1000].", "Device.Ethernet.Interface.3.");
        EXPECT(&a, "Device.Ethernet.Interface.[MaxBitRate>-2].",
               "Device.Ethernet.Interface.1.|Device.Ethernet.Interface.2.|"
               "Device.Ethernet.Interface.3.");
        /* Several conditions, and whitespace. */
        EXPECT(&a, "Device.IP.Interface.[Type==\"Normal\"&&Stats.ErrorsSent>0].",
               "Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.[ Type == \"Normal\" && Stats.ErrorsSent > 0 ].Name",
               "Device.IP.Interface.2.Name");
        EXPECT(&a, "Device.IP.Interface.[Type==\"Normal\"&&Enable==false].", "");
        /* Search then more levels (the spec's own example form). */
        EXPECT(&a,
               "Device.IP.Interface.[Type==\"Normal\"&&Stats.ErrorsSent>0].IPv4Address."
               "[AddressingType==\"Static\"].IPAddress",
               "Device.IP.Interface.2.IPv4Address.1.IPAddress|"
               "Device.IP.Interface.2.IPv4Address.2.IPAddress");
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.[AddressingType==\"DHCP\"].",
               "Device.IP.Interface.1.IPv4Address.1.");
        /* dateTime compares as time. */
        char want[4096];
        snprintf(want, sizeof want, "%s",
                 resolve(&a, "Device.WiFi.AccessPoint.1.AssociatedDevice.*.AssociationTime"));
        EXPECT(&a,
               "Device.WiFi.AccessPoint.*.AssociatedDevice.[AssociationTime>2024-05-15T00:00:00Z]"
               ".AssociationTime",
               want);
        snprintf(want, sizeof want, "%s",
                 resolve(&a, "Device.WiFi.AccessPoint.2.AssociatedDevice.*.AssociationTime"));
        EXPECT(&a,
               "Device.WiFi.AccessPoint.2.AssociatedDevice.[AssociationTime=="
               "2024-05-01T12:00:00+02:00].AssociationTime",
               want);
        EXPECT(&a,
               "Device.WiFi.AccessPoint.2.AssociatedDevice.[AssociationTime=="
               "2024-05-01T10:00:00.000Z].AssociationTime",
               want);
        EXPECT(&a,
               "Device.WiFi.AccessPoint.*.AssociatedDevice.[AssociationTime<2024-01-01T00:00:00Z].",
               "");
        EXPECT(&a,
               "Device.WiFi.AccessPoint.*.AssociatedDevice.[AssociationTime<0001-01-01T00:00:00Z].",
               "E7008");
        EXPECT(&a, "Device.WiFi.AccessPoint.*.AssociatedDevice.[AssociationTime>yesterday].",
               "E7008");
        /* ~= is "list contains", on lists only. */
        EXPECT(&a, "Device.IP.Interface.[LowerLayers~=\"Device.Ethernet.Interface.3\"].",
               "Device.IP.Interface.2.|Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[LowerLayers~=\"Device.Ethernet.Interface.2\"].",
               "Device.IP.Interface.2.");
        EXPECT(&a, "Device.IP.Interface.[LowerLayers~=\"Device.Ethernet.Interface.1\"].",
               "Device.IP.Interface.1.");
        EXPECT(&a, "Device.IP.Interface.[LowerLayers==\"Device.Ethernet.Interface.1\"].",
               "Device.IP.Interface.1.");
        EXPECT(&a, "Device.IP.Interface.[Name~=\"wan\"].", "E7008");
        EXPECT(&a, "Device.IP.Interface.[LowerLayers<\"x\"].", "E7008");
        /* Unknown names and tables in expressions. */
        EXPECT(&a, "Device.IP.Interface.[Nope==1].", "E7026");
        EXPECT(&a, "Device.IP.Interface.[Stats.Nope==1].", "E7026");
        EXPECT(&a, "Device.IP.Interface.[IPv4Address.Enable==true].", "E7026");
        EXPECT(&a, "Device.IP.Interface.[Name==\"wan\"].Nope", "E7026");
        /* Searches on what is not a table. */
        EXPECT(&a, "Device.DeviceInfo.[Manufacturer==\"uspsim\"].", "E7026");
        EXPECT(&a, "Device.DeviceInfo.*.", "E7026");
        usp_dm_agent_cleanup(&a);
    }
}

static void test_unique_key_address(void)
{
    for (int full = 0; full < 2; full++) {
        struct usp_dm_model *m = model(full);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        struct usp_dm_agent a;
        usp_dm_agent_init(&a, m, 0, "proto::a", 0);
        EXPECT(&a, "Device.IP.Interface.[Alias==\"cpe-ip2\"].Name", "Device.IP.Interface.2.Name");
        EXPECT(&a, "Device.IP.Interface.[Name==\"if3\"].", "Device.IP.Interface.3.");
        /* An address that matches nothing: 7016 ... */
        EXPECT(&a, "Device.IP.Interface.[Alias==\"nope\"].Name", "E7016");
        EXPECT(&a, "Device.IP.Interface.[Name==\"nope\"].", "E7016");
        /* ... a two-parameter key, complete ... */
        EXPECT(&a,
               "Device.IP.Interface.2.IPv4Address.[IPAddress==\"192.168.2.2\"&&SubnetMask=="
               "\"255.255.255.0\"].",
               "Device.IP.Interface.2.IPv4Address.2.");
        EXPECT(&a,
               "Device.IP.Interface.2.IPv4Address.[IPAddress==\"10.0.0.1\"&&SubnetMask=="
               "\"255.255.255.0\"].",
               "E7016");
        /* ... and incomplete, which is a search. */
        EXPECT(&a, "Device.IP.Interface.2.IPv4Address.[IPAddress==\"10.0.0.1\"].", "");
        /* Not all "==" or not a key: a search. */
        EXPECT(&a, "Device.IP.Interface.[Enable==false&&Type==\"Normal\"].", "");
        EXPECT(&a, "Device.IP.Interface.[Alias!=\"nope\"].",
               "Device.IP.Interface.1.|Device.IP.Interface.2.|Device.IP.Interface.3.");
        /* Under a wildcard: no error. */
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.[Alias==\"nope\"].", "");
        EXPECT(&a, "Device.IP.Interface.*.IPv4Address.[Alias==\"cpe-a2\"].",
               "Device.IP.Interface.1.IPv4Address.2.|Device.IP.Interface.2.IPv4Address.2.|"
               "Device.IP.Interface.3.IPv4Address.2.");
        /* A changed key value addresses the row. */
        CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.3.Name", "loop"), 0);
        EXPECT(&a, "Device.IP.Interface.[Name==\"loop\"].Name", "Device.IP.Interface.3.Name");
        EXPECT(&a, "Device.IP.Interface.[Name==\"if3\"].", "E7016");
        usp_dm_agent_cleanup(&a);
    }
}

/* --- Reference following ------------------------------------------------- */

static void test_references(void)
{
    for (int full = 0; full < 2; full++) {
        struct usp_dm_model *m = model(full);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        struct usp_dm_agent a;
        usp_dm_agent_init(&a, m, 0, "proto::a", 0);
        EXPECT(&a, "Device.IP.Interface.1.LowerLayers+.Name", "Device.Ethernet.Interface.1.Name");
        EXPECT(&a, "Device.IP.Interface.1.LowerLayers#1+.Name", "Device.Ethernet.Interface.1.Name");
        EXPECT(&a, "Device.IP.Interface.2.LowerLayers#*+.Name",
               "Device.Ethernet.Interface.2.Name|Device.Ethernet.Interface.3.Name");
        EXPECT(&a, "Device.IP.Interface.2.LowerLayers#2+.Name", "Device.Ethernet.Interface.3.Name");
        EXPECT(&a, "Device.IP.Interface.*.LowerLayers#*+.MaxBitRate",
               "Device.Ethernet.Interface.1.MaxBitRate|Device.Ethernet.Interface.2.MaxBitRate|"
               "Device.Ethernet.Interface.3.MaxBitRate|Device.Ethernet.Interface.3.MaxBitRate");
        EXPECT(&a, "Device.LocalAgent.Subscription.*.Recipient+.EndpointID",
               "Device.LocalAgent.Controller.1.EndpointID|"
               "Device.LocalAgent.Controller.1.EndpointID");
        /* A search, then a reference. */
        EXPECT(&a, "Device.IP.Interface.[Name==\"wan\"].LowerLayers+.MACAddress",
               "Device.Ethernet.Interface.1.MACAddress");
        /* References inside search expressions. */
        EXPECT(&a, "Device.IP.Interface.[LowerLayers#*+.MaxBitRate==100].",
               "Device.IP.Interface.2.|Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[LowerLayers#1+.MaxBitRate==100].",
               "Device.IP.Interface.3.");
        EXPECT(&a, "Device.IP.Interface.[LowerLayers+.Name==\"eth1\"].", "Device.IP.Interface.1.");
        EXPECT(&a, "Device.LocalAgent.Subscription.[Recipient+.EndpointID==\"self::ctl\"].ID",
               "Device.LocalAgent.Subscription.1.ID|Device.LocalAgent.Subscription.2.ID");
        /* Nothing referenced: 7016 outside searches, nothing inside. */
        EXPECT(&a, "Device.IP.Interface.2.LowerLayers#3+.Name", "E7016");
        EXPECT(&a, "Device.IP.Interface.2.LowerLayers+.Name", "E7016"); /* two references */
        CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.3.LowerLayers", ""), 0);
        EXPECT(&a, "Device.IP.Interface.3.LowerLayers+.Name", "E7016");
        EXPECT(&a, "Device.IP.Interface.*.LowerLayers+.Name", "Device.Ethernet.Interface.1.Name");
        /* A referenced row deleted (weakly held by the value). */
        struct usp_dm_inst e1;
        CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.Ethernet.Interface.1.", &e1), 0);
        CU_ASSERT_EQUAL(usp_dm_delete(&a, &e1), 0);
        EXPECT(&a, "Device.IP.Interface.1.LowerLayers+.Name", "E7016");
        EXPECT(&a, "Device.IP.Interface.*.LowerLayers#*+.Name",
               "Device.Ethernet.Interface.2.Name|Device.Ethernet.Interface.3.Name");
        /* A name the referenced row lacks. */
        EXPECT(&a, "Device.IP.Interface.2.LowerLayers#1+.Nope", "E7026");
        EXPECT(&a, "Device.IP.Interface.*.LowerLayers#1+.Nope", "");
        /* Reference chains are bounded. */
        char longp[2048] = "Device.IP.Interface.1";
        for (int k = 0; k < 33; k++)
            strcat(longp, ".LowerLayers+");
        strcat(longp, ".Name");
        EXPECT(&a, longp, "E7005");
        /* Not a reference. */
        EXPECT(&a, "Device.IP.Interface.2.Name+.Name", "E7016");
        usp_dm_agent_cleanup(&a);
    }
}

/* --- Helpers ------------------------------------------------------------- */

static int kv_cb(void *ctx, const char *name, const char *value)
{
    char *s = ctx;
    size_t n = strlen(s);
    snprintf(s + n, 256 - n, "%s%s=%s", n ? "," : "", name, value);
    return 0;
}

static void test_paths_and_keys(void)
{
    struct usp_dm_model *m = model(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, m, 0, "proto::a", 0);
    struct usp_dm_inst o;
    char buf[256];
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.2.IPv4Address.1.", &o), 0);
    CU_ASSERT_EQUAL(o.n, 2);
    CU_ASSERT_EQUAL(o.inst[0], 2);
    CU_ASSERT_EQUAL(o.inst[1], 1);
    CU_ASSERT_STRING_EQUAL(o.obj->path, "Device.IP.Interface.{i}.IPv4Address.{i}.");
    CU_ASSERT_EQUAL(usp_dm_inst_path(&o, buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "Device.IP.Interface.2.IPv4Address.1.");
    CU_ASSERT_EQUAL(usp_dm_inst_path(&o, buf, 10), USP_ERANGE);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.4294967295", &o), 0);
    CU_ASSERT_EQUAL(o.inst[0], 4294967295u);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.3.Stats", &o), 0);
    CU_ASSERT_STRING_EQUAL(o.obj->path, "Device.IP.Interface.{i}.Stats.");
    /* A table path. */
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.", &o), 0);
    CU_ASSERT_EQUAL(o.n, 0);
    CU_ASSERT_EQUAL(usp_dm_inst_path(&o, buf, sizeof buf), 0);
    CU_ASSERT_STRING_EQUAL(buf, "Device.IP.Interface.");
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.", &o), 0);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device", &o), 0);
    /* Bad ones. */
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.0.", &o), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.01.", &o), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.4294967296.", &o), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.1x.", &o), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device..IP.", &o), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "", &o), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.Nope.", &o), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.DeviceInfo.1.", &o), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.Stats.", &o), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.1.Name", &o), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Other.", &o), USP_ENOENT);
    /* Unique keys of a row, each parameter once. */
    char kv[256] = "";
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.IP.Interface.2.", &o), 0);
    CU_ASSERT_EQUAL(usp_dm_unique_keys(&a, &o, kv_cb, kv), 0);
    CU_ASSERT_STRING_EQUAL(kv, "Alias=cpe-ip2,Name=if2");
    kv[0] = '\0';
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.LocalAgent.Subscription.2.", &o), 0);
    CU_ASSERT_EQUAL(usp_dm_unique_keys(&a, &o, kv_cb, kv), 0);
    CU_ASSERT_STRING_EQUAL(kv, "Alias=cpe-2,Recipient=Device.LocalAgent.Controller.1,ID=sub-2");
    kv[0] = '\0';
    CU_ASSERT_EQUAL(usp_dm_inst_parse(m, "Device.DeviceInfo.", &o), 0);
    CU_ASSERT_EQUAL(usp_dm_unique_keys(&a, &o, kv_cb, kv), 0);
    CU_ASSERT_STRING_EQUAL(kv, "");
    usp_dm_agent_cleanup(&a);
}

static void test_callback_stops(void)
{
    struct usp_dm_model *m = model(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, m, 0, "proto::a", 0);
    struct usp_path *p = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_path_parse("Device.IP.Interface.*.IPv4Address.*.", &p, NULL), 0);
    struct out o;
    memset(&o, 0, sizeof o);
    o.stop_at = 3;
    struct usp_dm_path_err err;
    CU_ASSERT_EQUAL(usp_dm_resolve(&a, p, collect, &o, &err), 99);
    CU_ASSERT_EQUAL(o.n, 3);
    usp_path_free(p);
    /* A supported path is refused. */
    CU_ASSERT_EQUAL_FATAL(usp_path_parse("Device.IP.Interface.{i}.", &p, NULL), 0);
    CU_ASSERT_EQUAL(usp_dm_resolve(&a, p, collect, &o, &err), USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(err.usp_code, USP_ERR_INVALID_PATH);
    usp_path_free(p);
    usp_dm_agent_cleanup(&a);
}

/* Deleting rows from the callback is safe: the walk re-checks them. */
struct deleter {
    struct usp_dm_agent *a;
    unsigned n;
};

static int delete_cb(void *ctx, const struct usp_dm_match *m)
{
    struct deleter *d = ctx;
    d->n++;
    struct usp_dm_inst next = m->obj;
    next.inst[0]++;
    usp_dm_delete(d->a, &next);
    usp_dm_delete(d->a, &m->obj);
    return 0;
}

static void test_modify_during_walk(void)
{
    struct usp_dm_model *m = model(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, m, 0, "proto::a", 0);
    struct usp_path *p = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_path_parse("Device.IP.Interface.[Enable==true].", &p, NULL), 0);
    struct deleter d = {&a, 0};
    struct usp_dm_path_err err;
    CU_ASSERT_EQUAL(usp_dm_resolve(&a, p, delete_cb, &d, &err), 0);
    CU_ASSERT_EQUAL(d.n, 1); /* row 2 went with row 1 */
    EXPECT(&a, "Device.IP.Interface.*.", "Device.IP.Interface.3.");
    usp_path_free(p);
    usp_dm_agent_cleanup(&a);
}

static void test_zz_cleanup(void)
{
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_PTR_NOT_NULL(g_model[i]);
        usp_dm_model_free(g_model[i]);
        usp_dm_schema_free(g_schema[i]);
        g_model[i] = NULL;
        g_schema[i] = NULL;
    }
    usp_profile_free(g_prof);
    g_prof = NULL;
}

void suite_dm_resolve(void)
{
    USP_SUITE("dm_resolve", USP_TEST(test_names_and_numbers), USP_TEST(test_wildcards),
              USP_TEST(test_search_operators), USP_TEST(test_unique_key_address),
              USP_TEST(test_references), USP_TEST(test_paths_and_keys),
              USP_TEST(test_callback_stops), USP_TEST(test_modify_during_walk),
              USP_TEST(test_zz_cleanup));
}
