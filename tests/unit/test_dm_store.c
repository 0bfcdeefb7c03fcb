/* The data-model engine's binding and per-agent copy-on-write store
 * (usp/dm.h): profile values and rows, writes, adds and deletes, the checks
 * on every write, reboot and factory reset, on our default model and on the
 * official full TR-181 model. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "usp/dm.h"
#include "usp/errors.h"

#define DEFAULT_XML USP_SRC("datamodels/device-2-uspsim.xml")
#define FULL_XML    USP_REF("tr-181/tr-181-2-19-1-usp-full.xml")
#define DATA(f)     USP_SRC("tests/unit/data/dm_store/" f)

static struct usp_dm_schema *g_schema[2];

static struct usp_dm_schema *schema(int full)
{
    if (!g_schema[full]) {
        struct usp_dm_error e;
        if (usp_dm_load_file(full ? FULL_XML : DEFAULT_XML, 0, &g_schema[full], &e) != 0) {
            fprintf(stderr, "cannot load %s: %s\n", full ? FULL_XML : DEFAULT_XML, e.msg);
            g_schema[full] = NULL;
        }
    }
    return g_schema[full];
}

struct fx {
    struct usp_profile *prof;
    struct usp_dm_model *m;
};

static bool fx_open(struct fx *f, int full, const char *prof)
{
    memset(f, 0, sizeof *f);
    struct usp_dm_schema *s = schema(full);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    if (prof) {
        struct usp_profile_err pe;
        int rc = usp_profile_load(prof, &f->prof, &pe);
        if (rc)
            fprintf(stderr, "%s\n", pe.text);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
    }
    struct usp_dm_model_err me;
    int rc = usp_dm_model_new(s, f->prof, &f->m, &me);
    if (rc)
        fprintf(stderr, "%s\n", me.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return true;
}

static void fx_close(struct fx *f)
{
    usp_dm_model_free(f->m);
    usp_profile_free(f->prof);
}

/* "Device.IP.Interface.2." -> instance; asserts it parses. */
static struct usp_dm_inst at(const struct usp_dm_model *m, const char *path)
{
    struct usp_dm_inst o;
    int rc = usp_dm_inst_parse(m, path, &o);
    if (rc)
        fprintf(stderr, "cannot parse %s\n", path);
    CU_ASSERT_EQUAL(rc, 0);
    return o;
}

/* Splits "Device.X.2.Name" into its object instance and parameter. */
static const struct usp_dm_param *split(const struct usp_dm_model *m, const char *ppath,
                                        struct usp_dm_inst *o)
{
    char obj[512];
    const char *dot = strrchr(ppath, '.');
    CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
    snprintf(obj, sizeof obj, "%.*s", (int)(dot - ppath + 1), ppath);
    *o = at(m, obj);
    const struct usp_dm_param *p =
        o->obj ? usp_dm_object_param(o->obj, dot + 1, strlen(dot + 1)) : NULL;
    if (!p)
        fprintf(stderr, "no parameter %s\n", ppath);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

/* The value, or "<ENOENT>" and the like (one of 8 rotating buffers). */
static const char *get(const struct usp_dm_agent *a, const char *ppath)
{
    static char bufs[8][USP_DM_VALUE_MAX];
    static unsigned k;
    char *b = bufs[k++ % 8];
    struct usp_dm_inst o;
    const struct usp_dm_param *p = split(a->model, ppath, &o);
    int rc = usp_dm_get(a, &o, p, b, USP_DM_VALUE_MAX);
    if (rc)
        snprintf(b, USP_DM_VALUE_MAX, "<%s>", usp_strerror(rc));
    return b;
}

static int set(struct usp_dm_agent *a, const char *ppath, const char *value, bool *changed)
{
    struct usp_dm_inst o;
    const struct usp_dm_param *p = split(a->model, ppath, &o);
    char why[256];
    return usp_dm_set(a, &o, p, value, changed, why, sizeof why);
}

static const struct usp_dm_object *table(const struct usp_dm_model *m, const char *path)
{
    struct usp_dm_item it;
    int rc = usp_dm_lookup(usp_dm_model_schema(m), path, &it);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_FATAL(it.object->flags & USP_DM_OBJ_MULTI);
    return it.object;
}

static int list_cb(void *ctx, uint32_t inst)
{
    char *s = ctx;
    size_t n = strlen(s);
    snprintf(s + n, 256 - n, "%s%u", n ? "," : "", inst);
    return 0;
}

/* "1,3,4": the rows of `tpath` ("Device.IP.Interface.{i}.") under `parent`. */
static const char *rows(const struct usp_dm_agent *a, const char *tpath,
                        const struct usp_dm_inst *parent)
{
    static char s[256];
    s[0] = '\0';
    int rc = usp_dm_instances(a, table(a->model, tpath), parent, list_cb, s);
    CU_ASSERT_EQUAL(rc, 0);
    return s;
}

/* --- Binding ------------------------------------------------------------- */

static void test_bind_no_profile(void)
{
    struct fx f;
    fx_open(&f, 0, NULL);
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    /* No profile: no rows, type zero values and schema defaults. */
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.Manufacturer"), "");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.InterfaceNumberOfEntries"), "0");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.IP.Interface.{i}.", NULL), "");
    struct usp_dm_inst one = {.obj = table(f.m, "Device.IP.Interface.{i}."), .n = 1, .inst = {1}};
    CU_ASSERT_FALSE(usp_dm_exists(&a, &one));
    CU_ASSERT_PTR_NULL(usp_dm_model_profile(f.m));
    CU_ASSERT_PTR_EQUAL(usp_dm_model_schema(f.m), schema(0));
    CU_ASSERT(usp_dm_model_mem(f.m) > 0);
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_bind_small(void)
{
    for (int full = 0; full < 2; full++) {
        struct fx f;
        fx_open(&f, full, DATA("small.prof"));
        struct usp_dm_agent a;
        usp_dm_agent_init(&a, f.m, 7, "proto::a7", 0);
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.Manufacturer"), "uspsim");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.ProvisioningCode"), "prov-7");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.Name"), "wan");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.Name"), "if2");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.3.Enable"), "false");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.IPv4Address.1.IPAddress"),
                               "192.168.2.1");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.IPv4Address.1.AddressingType"),
                               "DHCP");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.IPv4Address.2.AddressingType"),
                               "Static");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.InterfaceNumberOfEntries"), "3");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.IPv4AddressNumberOfEntries"), "2");
        CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.4.Name"), "<not found>");
        CU_ASSERT_STRING_EQUAL(rows(&a, "Device.IP.Interface.{i}.", NULL), "1,2,3");
        /* Untouched: the agent owns nothing. */
        CU_ASSERT_PTR_NULL(a.ov);
        CU_ASSERT_EQUAL(usp_dm_agent_mem(&a), 0);
        CU_ASSERT_EQUAL(usp_dm_agent_records(&a), 0);
        CU_ASSERT(sizeof(struct usp_dm_agent) <= 48);
        usp_dm_agent_cleanup(&a);
        fx_close(&f);
    }
}

/* A profile given as text, bound to schema `full`; returns the bind code
 * and the message. */
static int bind_text(int full, const char *text, char *msg, size_t len)
{
    struct usp_profile *p = NULL;
    struct usp_profile_err pe;
    int rc = usp_profile_parse_mem("bad.prof", text, strlen(text), NULL, &p, &pe);
    if (rc) {
        snprintf(msg, len, "profile: %s", pe.text);
        return 1;
    }
    struct usp_dm_model *m = NULL;
    struct usp_dm_model_err me;
    rc = usp_dm_model_new(schema(full), p, &m, &me);
    snprintf(msg, len, "%s", rc ? me.msg : "");
    if (rc)
        CU_ASSERT_PTR_NULL(m);
    usp_dm_model_free(m);
    usp_profile_free(p);
    return rc;
}

static void expect_bind_error(int full, const char *text, const char *where, const char *what)
{
    char msg[700];
    int rc = bind_text(full, text, msg, sizeof msg);
    CU_ASSERT_EQUAL(rc, USP_EINVAL);
    if (!strstr(msg, where) || !strstr(msg, what))
        fprintf(stderr, "\nunexpected binding message: %s\n", msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, where));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, what));
}

static void test_bind_errors(void)
{
    for (int full = 0; full < 2; full++) {
        expect_bind_error(full,
                          "instances Device.IP.Interface. 2\n"
                          "Device.IP.Interface.{i}.Name = \"x{i1}\"\n"
                          "Device.IP.Interface.{i}.Nope = 1\n",
                          "bad.prof:3: Device.IP.Interface.{i}.Nope", "no such parameter");
        expect_bind_error(full, "# comment\nDevice.DeviceInfo.Nope = 1\n",
                          "bad.prof:2: Device.DeviceInfo.Nope", "no such parameter");
        expect_bind_error(full, "Device.IP.Interface = 1\n", "bad.prof:1: Device.IP.Interface",
                          "no such parameter");
        /* Constants are type-checked. */
        expect_bind_error(full,
                          "instances Device.IP.Interface. 1\n"
                          "Device.IP.Interface.1.Enable = maybe\n",
                          "bad.prof:2: Device.IP.Interface.1.Enable", "not a valid boolean");
        expect_bind_error(full,
                          "instances Device.IP.Interface. 1\n"
                          "Device.IP.Interface.{i}.MaxMTUSize = 10\n",
                          "bad.prof:2:", "not a valid unsignedInt");
        expect_bind_error(full, "Device.DeviceInfo.ManufacturerOUI = \"0123456789\"\n",
                          "bad.prof:1: Device.DeviceInfo.ManufacturerOUI", "not a valid string");
        /* Generators are checked on a sample. */
        expect_bind_error(full, "Device.DeviceInfo.UpTime = now()\n",
                          "bad.prof:1: Device.DeviceInfo.UpTime", "now()");
        expect_bind_error(full,
                          "instances Device.IP.Interface. 1\n"
                          "Device.IP.Interface.{i}.Enable = uptime()\n",
                          "bad.prof:2:", "gives numbers");
        expect_bind_error(full,
                          "Device.DeviceInfo.Manufacturer = \"{n}{n}{n}{n}{n}{n}{n}{n}"
                          "{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}"
                          "{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}"
                          "{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}\"\n",
                          "bad.prof:1:", "(agent 0)");
        /* Tables, objects, commands. */
        expect_bind_error(full, "instances Device.IP.Nope. 2\n", "bad.prof:1: Device.IP.Nope",
                          "no such object");
        expect_bind_error(full, "instances Device.DeviceInfo. 2\n",
                          "bad.prof:1:", "not a multi-instance object");
        expect_bind_error(full,
                          "instances Device.IP.Interface. 2\n"
                          "instances Device.IP.Interface.{i}.Stats. 1\n",
                          "bad.prof:2:", "not a multi-instance object");
        expect_bind_error(full, "command Device.Nope() delay=1 result=ok\n",
                          "bad.prof:1: Device.Nope()", "no such command");
        expect_bind_error(full,
                          "command Device.SelfTestDiagnostics() delay=1 result=ok out.Nope=1\n",
                          "bad.prof:1: Device.SelfTestDiagnostics()", "no output argument Nope");
        /* NumberOfEntries follow their tables. */
        expect_bind_error(full, "Device.IP.InterfaceNumberOfEntries = 3\n",
                          "bad.prof:1:", "instances");
        /* A good one for contrast. */
        char msg[700];
        CU_ASSERT_EQUAL(bind_text(full,
                                  "instances Device.IP.Interface. 1\n"
                                  "Device.IP.Interface.{i}.MaxMTUSize = 1500\n",
                                  msg, sizeof msg),
                        0);
    }
    /* maxEntries: AccessPoint.{i}.AC. allows 4 (official model only). */
    expect_bind_error(1,
                      "instances Device.WiFi.AccessPoint. 1\n"
                      "instances Device.WiFi.AccessPoint.{i}.AC. 2..5\n",
                      "bad.prof:2:", "at most 4");
}

static void test_bind_error_in_include(void)
{
    for (int full = 0; full < 2; full++) {
        struct usp_profile *p = NULL;
        struct usp_profile_err pe;
        CU_ASSERT_EQUAL_FATAL(usp_profile_load(DATA("bad_outer.prof"), &p, &pe), 0);
        struct usp_dm_model *m = NULL;
        struct usp_dm_model_err me;
        CU_ASSERT_EQUAL(usp_dm_model_new(schema(full), p, &m, &me), USP_EINVAL);
        CU_ASSERT_PTR_NULL(m);
        CU_ASSERT_PTR_NOT_NULL(strstr(me.msg, "bad_inner.prof:4: "
                                              "Device.IP.Interface.{i}.NoSuchParameter"));
        usp_profile_free(p);
    }
    /* full.prof needs the official model: AC is not in ours. */
    struct usp_profile *p = NULL;
    struct usp_profile_err pe;
    CU_ASSERT_EQUAL_FATAL(usp_profile_load(DATA("full.prof"), &p, &pe), 0);
    struct usp_dm_model *m = NULL;
    struct usp_dm_model_err me;
    CU_ASSERT_EQUAL(usp_dm_model_new(schema(0), p, &m, &me), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(me.msg, "full.prof:5: Device.WiFi.AccessPoint.{i}.AC.{i}."));
    CU_ASSERT_EQUAL(usp_dm_model_new(schema(1), p, &m, &me), 0);
    usp_dm_model_free(m);
    usp_profile_free(p);
}

/* The profiles we ship bind to the official model. */
static void test_bind_shipped_profiles(void)
{
    static const char *const names[] = {"gateway.prof", "extender.prof", "iot.prof"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", USP_SRC("datamodels/profiles"), names[i]);
        struct usp_profile *p = NULL;
        struct usp_profile_err pe;
        int rc = usp_profile_load(path, &p, &pe);
        if (rc)
            fprintf(stderr, "\n%s\n", pe.text);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        struct usp_dm_model *m = NULL;
        struct usp_dm_model_err me;
        rc = usp_dm_model_new(schema(1), p, &m, &me);
        if (rc)
            fprintf(stderr, "\n%s\n", me.msg);
        CU_ASSERT_EQUAL(rc, 0);
        usp_dm_model_free(m);
        usp_profile_free(p);
    }
}

/* --- Copy-on-write ------------------------------------------------------- */

static void test_cow_two_agents(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a, b;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    usp_dm_agent_init(&b, f.m, 1, "proto::b", 0);
    bool changed = false;
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.Name", "lan", &changed), 0);
    CU_ASSERT_TRUE(changed);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.Name"), "lan");
    CU_ASSERT_STRING_EQUAL(get(&b, "Device.IP.Interface.2.Name"), "if2");
    CU_ASSERT_PTR_NOT_NULL(a.ov);
    CU_ASSERT_PTR_NULL(b.ov);
    CU_ASSERT_EQUAL(usp_dm_agent_records(&a), 1);
    CU_ASSERT(usp_dm_agent_mem(&a) > 0 && usp_dm_agent_mem(&a) <= 64);
    /* Writing the same value again changes nothing. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.Name", "lan", &changed), 0);
    CU_ASSERT_FALSE(changed);
    /* Writing the profile's value to an untouched agent stores nothing. */
    CU_ASSERT_EQUAL(set(&b, "Device.IP.Interface.2.Name", "if2", &changed), 0);
    CU_ASSERT_FALSE(changed);
    CU_ASSERT_PTR_NULL(b.ov);
    /* A longer value replaces the record. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.Name", "a-much-longer-name", &changed), 0);
    CU_ASSERT_TRUE(changed);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.Name"), "a-much-longer-name");
    CU_ASSERT_EQUAL(usp_dm_agent_records(&a), 1);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.Name"), "wan");
    usp_dm_agent_cleanup(&a);
    usp_dm_agent_cleanup(&b);
    CU_ASSERT_PTR_NULL(a.ov);
    fx_close(&f);
}

static void test_delete_profile_rows(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a, b;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    usp_dm_agent_init(&b, f.m, 0, "proto::b", 0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.IPv4Address.1.Enable", "false", NULL), 0);
    struct usp_dm_inst row = at(f.m, "Device.IP.Interface.2.");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &row), 0);
    CU_ASSERT_FALSE(usp_dm_exists(&a, &row));
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &row), USP_ENOENT);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.IP.Interface.{i}.", NULL), "1,3");
    /* Table forms exist while their parent rows do. */
    struct usp_dm_inst tab2 = row;
    tab2.obj = table(f.m, "Device.IP.Interface.{i}.IPv4Address.{i}.");
    CU_ASSERT_FALSE(usp_dm_exists(&a, &tab2));
    CU_ASSERT_TRUE(usp_dm_exists(&b, &tab2));
    struct usp_dm_inst tab = {.obj = row.obj, .n = 0};
    CU_ASSERT_TRUE(usp_dm_exists(&a, &tab));
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.InterfaceNumberOfEntries"), "2");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.Name"), "<not found>");
    /* Everything below went with it (the value set there too). */
    struct usp_dm_inst addr = at(f.m, "Device.IP.Interface.2.IPv4Address.1.");
    CU_ASSERT_FALSE(usp_dm_exists(&a, &addr));
    CU_ASSERT_EQUAL(usp_dm_count(&a, table(f.m, "Device.IP.Interface.{i}.IPv4Address.{i}."), &row),
                    0);
    CU_ASSERT_EQUAL(usp_dm_agent_records(&a), 1); /* only the table record */
    /* The other agent still has it all. */
    CU_ASSERT_TRUE(usp_dm_exists(&b, &row));
    CU_ASSERT_STRING_EQUAL(rows(&b, "Device.IP.Interface.{i}.", NULL), "1,2,3");
    CU_ASSERT_STRING_EQUAL(get(&b, "Device.IP.Interface.2.IPv4Address.1.Enable"), "true");
    /* A row of a nested table. */
    struct usp_dm_inst r1 = at(f.m, "Device.IP.Interface.1.");
    struct usp_dm_inst a12 = at(f.m, "Device.IP.Interface.1.IPv4Address.2.");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &a12), 0);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.IP.Interface.{i}.IPv4Address.{i}.", &r1), "1");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.IPv4AddressNumberOfEntries"), "1");
    /* Delete of what is not a row. */
    struct usp_dm_inst di = at(f.m, "Device.DeviceInfo.");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &di), USP_ENOENT);
    usp_dm_agent_cleanup(&a);
    usp_dm_agent_cleanup(&b);
    fx_close(&f);
}

static void test_add_never_reuses(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    const struct usp_dm_object *ipif = table(f.m, "Device.IP.Interface.{i}.");
    uint32_t n = 0;
    CU_ASSERT_EQUAL(usp_dm_add(&a, ipif, NULL, &n), 0);
    CU_ASSERT_EQUAL(n, 4);
    /* Added rows take defaults, not the profile's {i} values. */
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.4.Name"), "");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.4.Enable"), "false");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.4.Type"), "Normal");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.4.IPv4AddressNumberOfEntries"), "0");
    struct usp_dm_inst r4 = at(f.m, "Device.IP.Interface.4.");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.IP.Interface.{i}.IPv4Address.{i}.", &r4), "");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &r4), 0);
    CU_ASSERT_EQUAL(usp_dm_add(&a, ipif, NULL, &n), 0);
    CU_ASSERT_EQUAL(n, 5);
    struct usp_dm_inst r5 = at(f.m, "Device.IP.Interface.5.");
    struct usp_dm_inst r3 = at(f.m, "Device.IP.Interface.3.");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &r5), 0);
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &r3), 0);
    CU_ASSERT_EQUAL(usp_dm_add(&a, ipif, NULL, &n), 0);
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.IP.Interface.{i}.", NULL), "1,2,6");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.InterfaceNumberOfEntries"), "3");
    /* Rows below an added row. */
    struct usp_dm_inst r6 = at(f.m, "Device.IP.Interface.6.");
    const struct usp_dm_object *v4 = table(f.m, "Device.IP.Interface.{i}.IPv4Address.{i}.");
    CU_ASSERT_EQUAL(usp_dm_add(&a, v4, &r6, &n), 0);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(usp_dm_add(&a, v4, &r6, &n), 0);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.6.IPv4AddressNumberOfEntries"), "2");
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.6.IPv4Address.2.IPAddress", "10.0.0.2", NULL), 0);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.6.IPv4Address.2.IPAddress"), "10.0.0.2");
    /* A parent that does not exist. */
    CU_ASSERT_EQUAL(usp_dm_add(&a, v4, &r5, &n), USP_ENOENT);
    /* Deleting the parent takes its rows; the parent's number stays used. */
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &r6), 0);
    CU_ASSERT_EQUAL(usp_dm_add(&a, ipif, NULL, &n), 0);
    CU_ASSERT_EQUAL(n, 7);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.7.IPv4AddressNumberOfEntries"), "0");
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_num_entries(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    const struct usp_dm_object *users = table(f.m, "Device.Users.User.{i}.");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.Users.UserNumberOfEntries"), "2");
    uint32_t n;
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(usp_dm_add(&a, users, NULL, &n), 0);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.Users.UserNumberOfEntries"), "7");
    CU_ASSERT_EQUAL(usp_dm_count(&a, users, NULL), 7);
    struct usp_dm_inst u1 = at(f.m, "Device.Users.User.1.");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &u1), 0);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.Users.UserNumberOfEntries"), "6");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.Users.User.{i}.", NULL), "2,3,4,5,6,7");
    /* Computed, not stored: writing one is refused. */
    CU_ASSERT_EQUAL(set(&a, "Device.Users.UserNumberOfEntries", "9", NULL),
                    USP_ERR_PARAM_READ_ONLY);
    CU_ASSERT_FALSE(usp_dm_is_dynamic(&a, &(struct usp_dm_inst){.obj = users->parent, .n = 0},
                                      users->num_entries_param));
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_write_once(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    /* No value yet: one write. */
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.Users.User.1.Alias"), "");
    CU_ASSERT_EQUAL(set(&a, "Device.Users.User.1.Alias", "cpe-u1", NULL), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.Users.User.1.Alias", "cpe-u2", NULL), USP_ERR_PARAM_READ_ONLY);
    CU_ASSERT_EQUAL(set(&a, "Device.Users.User.1.Alias", "cpe-u1", NULL), USP_ERR_PARAM_READ_ONLY);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.Users.User.1.Alias"), "cpe-u1");
    /* The profile gave one: none. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.Alias", "cpe-x", NULL), USP_ERR_PARAM_READ_ONLY);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.Alias"), "cpe-ip1");
    /* An added row: one. */
    uint32_t n;
    CU_ASSERT_EQUAL(usp_dm_add(&a, table(f.m, "Device.IP.Interface.{i}."), NULL, &n), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.4.Alias", "cpe-new", NULL), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.4.Alias", "cpe-newer", NULL),
                    USP_ERR_PARAM_READ_ONLY);
    /* A factory reset forgets it. */
    usp_dm_agent_factory_reset(&a, 100);
    CU_ASSERT_EQUAL(set(&a, "Device.Users.User.1.Alias", "cpe-again", NULL), 0);
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_type_checks(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    struct usp_dm_inst o;
    const struct usp_dm_param *p = split(f.m, "Device.IP.Interface.1.Enable", &o);
    char why[256] = "";
    CU_ASSERT_EQUAL(usp_dm_set(&a, &o, p, "yes", NULL, why, sizeof why), USP_ERR_INVALID_TYPE);
    CU_ASSERT(strlen(why) > 0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.Enable", "1", NULL), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.Ethernet.Interface.1.MaxBitRate", "abc", NULL),
                    USP_ERR_INVALID_TYPE);
    CU_ASSERT_EQUAL(set(&a, "Device.Ethernet.Interface.1.MaxBitRate", "-5", NULL),
                    USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(set(&a, "Device.Ethernet.Interface.1.MaxBitRate", "-1", NULL), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.MaxMTUSize", "63", NULL), USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.MaxMTUSize", "-1", NULL), USP_ERR_INVALID_TYPE);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.Type", "Bogus", NULL), USP_ERR_INVALID_VALUE);
    char longname[80];
    memset(longname, 'x', 65);
    longname[65] = '\0';
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.Name", longname, NULL), USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.IPv4Address.1.IPAddress", "1.2.3", NULL),
                    USP_ERR_INVALID_VALUE);
    /* Nothing of the refused values was stored. */
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.Name"), "wan");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.Ethernet.Interface.1.MaxBitRate"), "-1");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.Type"), "Normal");
    CU_ASSERT_EQUAL(usp_dm_agent_records(&a), 2);
    /* A missing object, a parameter of another object. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.9.Name", "x", NULL),
                    USP_ERR_OBJECT_DOES_NOT_EXIST);
    struct usp_dm_inst di = at(f.m, "Device.DeviceInfo.");
    CU_ASSERT_EQUAL(usp_dm_set(&a, &di, p, "true", NULL, why, sizeof why), USP_ERR_INVALID_PATH);
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_strong_references(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    CU_ASSERT_EQUAL(
        set(&a, "Device.IP.Interface.1.LowerLayers", "Device.Ethernet.Interface.9", NULL),
        USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.LowerLayers",
                        "Device.Ethernet.Interface.1,Device.Nope.1", NULL),
                    USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.LowerLayers",
                        "Device.Ethernet.Interface.2,Device.Ethernet.Interface.3.", NULL),
                    0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.LowerLayers", "", NULL), 0);
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_unique_keys(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 0);
    struct usp_dm_inst o;
    const struct usp_dm_param *p = split(f.m, "Device.IP.Interface.2.Name", &o);
    char why[256] = "";
    CU_ASSERT_EQUAL(usp_dm_set(&a, &o, p, "wan", NULL, why, sizeof why),
                    USP_ERR_UNIQUE_KEY_CONFLICT);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "Name"));
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.2.Name"), "if2");
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.Name", "lan", NULL), 0);
    /* The old value is free again. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.3.Name", "if2", NULL), 0);
    /* Alias keys. */
    CU_ASSERT_EQUAL(set(&a, "Device.Users.User.1.Alias", "cpe-x", NULL), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.Users.User.2.Alias", "cpe-x", NULL),
                    USP_ERR_UNIQUE_KEY_CONFLICT);
    /* A key of two parameters: IPAddress + SubnetMask. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.IPv4Address.2.IPAddress", "192.168.1.1", NULL),
                    USP_ERR_UNIQUE_KEY_CONFLICT);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.IPv4Address.2.SubnetMask", "255.255.0.0", NULL),
                    0);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.IPv4Address.2.IPAddress", "192.168.1.1", NULL),
                    0);
    /* Same address under another interface: not a sibling. */
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.IPv4Address.1.IPAddress", "192.168.1.2", NULL),
                    0);
    /* Several writes, one check. */
    struct usp_dm_inst row = at(f.m, "Device.IP.Interface.3.");
    const struct usp_dm_param *name = usp_dm_object_param(row.obj, "Name", 4);
    CU_ASSERT_EQUAL(usp_dm_set_nokeys(&a, &row, name, "wan", NULL, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_dm_check_unique(&a, &row, why, sizeof why), USP_ERR_UNIQUE_KEY_CONFLICT);
    CU_ASSERT_EQUAL(usp_dm_set_nokeys(&a, &row, name, "lo", NULL, why, sizeof why), 0);
    CU_ASSERT_EQUAL(usp_dm_check_unique(&a, &row, why, sizeof why), 0);
    struct usp_dm_inst gone = at(f.m, "Device.IP.Interface.9.");
    CU_ASSERT_EQUAL(usp_dm_check_unique(&a, &gone, why, sizeof why), USP_ERR_OBJECT_DOES_NOT_EXIST);
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_max_entries(void)
{
    struct fx f;
    fx_open(&f, 1, DATA("full.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 3, "proto::a", 0);
    const struct usp_dm_object *ac = table(f.m, "Device.WiFi.AccessPoint.{i}.AC.{i}.");
    CU_ASSERT_EQUAL(ac->max_entries, 4);
    struct usp_dm_inst ap = at(f.m, "Device.WiFi.AccessPoint.1.");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.WiFi.AccessPoint.{i}.AC.{i}.", &ap), "1,2,3");
    uint32_t n = 0;
    CU_ASSERT_EQUAL(usp_dm_add(&a, ac, &ap, &n), 0);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(usp_dm_add(&a, ac, &ap, &n), USP_ERANGE);
    struct usp_dm_inst r2 = at(f.m, "Device.WiFi.AccessPoint.1.AC.2.");
    CU_ASSERT_EQUAL(usp_dm_delete(&a, &r2), 0);
    CU_ASSERT_EQUAL(usp_dm_add(&a, ac, &ap, &n), 0);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.WiFi.AccessPoint.{i}.AC.{i}.", &ap), "1,3,4,5");
    /* The other AP is untouched. */
    struct usp_dm_inst ap2 = at(f.m, "Device.WiFi.AccessPoint.2.");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.WiFi.AccessPoint.{i}.AC.{i}.", &ap2), "1,2,3");
    /* The rest of the small profile works on the official model too. */
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.Name"), "wan");
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.Name", "wan", NULL),
                    USP_ERR_UNIQUE_KEY_CONFLICT);
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.2.Enable", "maybe", NULL), USP_ERR_INVALID_TYPE);
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_value_sources(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    int64_t now = (int64_t)time(NULL);
    usp_dm_agent_init(&a, f.m, 5, "proto::a", now - 100);
    CU_ASSERT_EQUAL(usp_dm_agent_now(&a) - now <= 1, 1);
    /* Generator: uptime follows the agent's clock. */
    long up = atol(get(&a, "Device.DeviceInfo.UpTime"));
    CU_ASSERT(up >= 100 && up <= 102);
    a.skew_sec = 50;
    up = atol(get(&a, "Device.DeviceInfo.UpTime"));
    CU_ASSERT(up >= 150 && up <= 152);
    struct usp_dm_inst di = at(f.m, "Device.DeviceInfo.");
    const struct usp_dm_param *uptime = usp_dm_object_param(di.obj, "UpTime", 6);
    CU_ASSERT_TRUE(usp_dm_is_dynamic(&a, &di, uptime));
    CU_ASSERT_FALSE(usp_dm_is_dynamic(&a, &di, usp_dm_object_param(di.obj, "Manufacturer", 12)));
    /* A written value wins and is no longer dynamic. */
    CU_ASSERT_EQUAL(set(&a, "Device.DeviceInfo.UpTime", "7", NULL), 0);
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.UpTime"), "7");
    CU_ASSERT_FALSE(usp_dm_is_dynamic(&a, &di, uptime));
    /* Schema defaults, then zero values of the type. */
    CU_ASSERT_STRING_EQUAL(
        get(&a, "Device.LocalAgent.Controller.1.USPNotifRetryMinimumWaitInterval"), "5");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.ModelName"), "");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.IPv4Enable"), "false");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.IP.Interface.1.LastChange"), "0");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.LocalAgent.Controller.1.PeriodicNotifTime"),
                           "0001-01-01T00:00:00Z");
    /* {n}, {serial} and {eid} come from the agent. */
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.ProvisioningCode"), "prov-5");
    /* A short buffer gets a prefix. */
    struct usp_dm_inst ip1 = at(f.m, "Device.IP.Interface.1.IPv4Address.1.");
    char small[6];
    CU_ASSERT_EQUAL(
        usp_dm_get(&a, &ip1, usp_dm_object_param(ip1.obj, "IPAddress", 9), small, sizeof small),
        USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(small, "192.1");
    CU_ASSERT_EQUAL(set(&a, "Device.IP.Interface.1.Name", "wan-long-name", NULL), 0);
    struct usp_dm_inst r1 = at(f.m, "Device.IP.Interface.1.");
    CU_ASSERT_EQUAL(
        usp_dm_get(&a, &r1, usp_dm_object_param(r1.obj, "Name", 4), small, sizeof small),
        USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(small, "wan-l");
    /* The command entries. */
    struct usp_dm_inst sec1 = at(f.m, "Device.WiFi.AccessPoint.1.Security.");
    struct usp_dm_inst sec2 = at(f.m, "Device.WiFi.AccessPoint.2.Security.");
    const struct usp_dm_command *reset = usp_dm_object_command(sec1.obj, "Reset()", 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reset);
    const struct usp_profile_cmd *c1 = usp_dm_command_entry(f.m, &sec1, reset);
    const struct usp_profile_cmd *c2 = usp_dm_command_entry(f.m, &sec2, reset);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c2);
    CU_ASSERT_FALSE(c1->fail);
    CU_ASSERT_TRUE(c2->fail);
    struct usp_dm_inst dev = at(f.m, "Device.");
    CU_ASSERT_PTR_NULL(
        usp_dm_command_entry(f.m, &dev, usp_dm_object_command(dev.obj, "Reboot()", 8)));
    const struct usp_profile_cmd *st = usp_dm_command_entry(
        f.m, &dev, usp_dm_object_command(dev.obj, "SelfTestDiagnostics()", 21));
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT_EQUAL(st->nout, 2);
    struct usp_gen_ctx ctx;
    usp_dm_agent_gen_ctx(&a, &ctx);
    CU_ASSERT_EQUAL(ctx.agent, 5);
    CU_ASSERT_EQUAL(ctx.boot_sec, a.boot_sec);
    char out[64];
    for (unsigned k = 0; k < st->nout; k++)
        if (!strcmp(st->out[k].name, "Results")) {
            CU_ASSERT_EQUAL(usp_gen_eval(st->out[k].gen, &ctx, NULL, 0, out, sizeof out), 0);
            CU_ASSERT_STRING_EQUAL(out, "ok 5");
        }
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

static void test_reboot_and_factory_reset(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    struct usp_dm_agent a;
    usp_dm_agent_init(&a, f.m, 0, "proto::a", 1000);
    const struct usp_dm_object *req = table(f.m, "Device.LocalAgent.Request.{i}.");
    const struct usp_dm_object *sub = table(f.m, "Device.LocalAgent.Subscription.{i}.");
    uint32_t n;
    CU_ASSERT_EQUAL(usp_dm_add(&a, req, NULL, &n), 0);
    CU_ASSERT_EQUAL(usp_dm_add(&a, req, NULL, &n), 0);
    CU_ASSERT_EQUAL(usp_dm_add(&a, sub, NULL, &n), 0); /* 3: Persistent defaults to false */
    CU_ASSERT_EQUAL(usp_dm_add(&a, sub, NULL, &n), 0); /* 4 */
    CU_ASSERT_EQUAL(set(&a, "Device.LocalAgent.Subscription.4.Persistent", "true", NULL), 0);
    CU_ASSERT_EQUAL(set(&a, "Device.DeviceInfo.ProvisioningCode", "kept", NULL), 0);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.LocalAgent.Request.{i}.", NULL), "1,2");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.LocalAgent.Subscription.{i}.", NULL), "1,2,3,4");
    usp_dm_agent_reboot(&a, 2000);
    CU_ASSERT_EQUAL(a.boot_sec, 2000);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.LocalAgent.Request.{i}.", NULL), "");
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.LocalAgent.Subscription.{i}.", NULL), "1,4");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.ProvisioningCode"), "kept");
    /* Numbers go on after a reboot. */
    CU_ASSERT_EQUAL(usp_dm_add(&a, req, NULL, &n), 0);
    CU_ASSERT_EQUAL(n, 3);
    usp_dm_agent_factory_reset(&a, 3000);
    CU_ASSERT_EQUAL(a.boot_sec, 3000);
    CU_ASSERT_PTR_NULL(a.ov);
    CU_ASSERT_EQUAL(usp_dm_agent_mem(&a), 0);
    CU_ASSERT_STRING_EQUAL(rows(&a, "Device.LocalAgent.Subscription.{i}.", NULL), "1,2");
    CU_ASSERT_STRING_EQUAL(get(&a, "Device.DeviceInfo.ProvisioningCode"), "prov-0");
    usp_dm_agent_cleanup(&a);
    fx_close(&f);
}

/* Random writes, adds and deletes checked against a plain model of what
 * the store should hold: exercises growth, rewrites and garbage collection
 * of the overlay block. */
static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static int big_list_cb(void *ctx, uint32_t inst)
{
    char *s = ctx;
    size_t n = strlen(s);
    snprintf(s + n, 2048 - n, "%s%u", n ? "," : "", inst);
    return 0;
}

static uint32_t count_commas(const char *s)
{
    uint32_t n = 0;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

static void test_random_against_reference(void)
{
    struct fx f;
    fx_open(&f, 0, DATA("small.prof"));
    static const char *const paths[] = {
        "Device.DeviceInfo.ProvisioningCode",
        "Device.LocalAgent.Controller.1.ProvisioningCode",
        "Device.Ethernet.Interface.1.MaxBitRate",
        "Device.Ethernet.Interface.2.MaxBitRate",
        "Device.Ethernet.Interface.3.MaxBitRate",
        "Device.IP.Interface.1.MaxMTUSize",
        "Device.IP.Interface.2.MaxMTUSize",
        "Device.IP.Interface.3.MaxMTUSize",
        "Device.IP.Interface.1.IPv4Address.1.Enable",
        "Device.IP.Interface.3.IPv4Address.2.Enable",
    };
    enum { NP = sizeof paths / sizeof paths[0] };
    char expect[NP][80];
    struct usp_dm_agent a, b;
    usp_dm_agent_init(&a, f.m, 11, "proto::a", 0);
    usp_dm_agent_init(&b, f.m, 11, "proto::b", 0);
    for (int i = 0; i < NP; i++)
        snprintf(expect[i], sizeof expect[i], "%s", get(&a, paths[i]));
    const struct usp_dm_object *users = table(f.m, "Device.Users.User.{i}.");
    bool present[400] = {false, true, true};
    uint32_t next = 3;
    uint64_t s = 12345;
    int bad = 0;
    for (int step = 0; step < 3000; step++) {
        unsigned r = (unsigned)rnd(&s) % 10;
        if (r < 7) {
            unsigned k = (unsigned)rnd(&s) % NP;
            char v[80];
            if (k < 2) {
                unsigned len = (unsigned)rnd(&s) % 60;
                for (unsigned j = 0; j < len; j++)
                    v[j] = (char)('a' + rnd(&s) % 26);
                v[len] = '\0';
            } else if (k < 5) {
                snprintf(v, sizeof v, "%u", (unsigned)(rnd(&s) % 100000));
            } else if (k < 8) {
                snprintf(v, sizeof v, "%u", 64 + (unsigned)(rnd(&s) % 9000));
            } else {
                snprintf(v, sizeof v, "%s", rnd(&s) % 2 ? "true" : "false");
            }
            bad += set(&a, paths[k], v, NULL) != 0;
            snprintf(expect[k], sizeof expect[k], "%s", v);
        } else if (r < 9 && next < 390) {
            uint32_t n;
            bad += usp_dm_add(&a, users, NULL, &n) != 0;
            bad += n != next;
            present[next++] = true;
        } else {
            uint32_t k = 1 + (uint32_t)(rnd(&s) % next);
            struct usp_dm_inst row = {.obj = users, .n = 1, .inst = {k}};
            int rc = usp_dm_delete(&a, &row);
            bad += rc != (present[k] ? 0 : USP_ENOENT);
            present[k] = false;
        }
        for (int i = 0; i < NP; i++)
            bad += strcmp(get(&a, paths[i]), expect[i]) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    char want[2048] = "";
    for (uint32_t k = 1; k < next; k++)
        if (present[k])
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%u", *want ? "," : "", k);
    char got[2048] = "";
    CU_ASSERT_EQUAL(usp_dm_instances(&a, users, NULL, big_list_cb, got), 0);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_EQUAL(usp_dm_count(&a, users, NULL), strlen(want) ? 1 + count_commas(want) : 0);
    /* b never changed. */
    CU_ASSERT_PTR_NULL(b.ov);
    CU_ASSERT_STRING_EQUAL(get(&b, "Device.DeviceInfo.ProvisioningCode"), "prov-11");
    /* The block stays proportionate to what it holds. */
    CU_ASSERT(usp_dm_agent_mem(&a) < 8192);
    usp_dm_agent_cleanup(&a);
    usp_dm_agent_cleanup(&b);
    fx_close(&f);
}

static void test_zz_cleanup(void)
{
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_PTR_NOT_NULL(g_schema[i]);
        usp_dm_schema_free(g_schema[i]);
        g_schema[i] = NULL;
    }
}

void suite_dm_store(void)
{
    USP_SUITE("dm_store", USP_TEST(test_bind_no_profile), USP_TEST(test_bind_small),
              USP_TEST(test_bind_errors), USP_TEST(test_bind_error_in_include),
              USP_TEST(test_bind_shipped_profiles), USP_TEST(test_cow_two_agents),
              USP_TEST(test_delete_profile_rows), USP_TEST(test_add_never_reuses),
              USP_TEST(test_num_entries), USP_TEST(test_write_once), USP_TEST(test_type_checks),
              USP_TEST(test_strong_references), USP_TEST(test_unique_keys),
              USP_TEST(test_max_entries), USP_TEST(test_value_sources),
              USP_TEST(test_reboot_and_factory_reset), USP_TEST(test_random_against_reference),
              USP_TEST(test_zz_cleanup));
}
