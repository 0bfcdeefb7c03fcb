/* Agent-side notifications on a virtual clock: which subscriptions match
 * each NotifType (and which do not), Boot! to subscribed controllers only
 * with its ParameterMap, the R-NOT.1-4 retry windows for retries 1..12 and
 * their end on NotifyResp or NotifExpiration, OnBoardRequest retried until
 * acknowledged, TimeToLive, Periodic!, polling of dynamic values, disabled
 * subscriptions and controllers, per-agent memory, and re-entry from the
 * send callback. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notify_int.h"
#include "testutil.h"
#include "usp/dm.h"
#include "usp/errors.h"
#include "usp/handler.h"
#include "usp/notify.h"
#include "usp/timerwheel.h"

#define SCHEMA_XML USP_SRC("datamodels/device-2-uspsim.xml")
#define T0_MS      1700000000000ull /* the virtual clock starts here */
#define CTRL1      "proto::ctrl-one"
#define CTRL2      "proto::ctrl-two"

static const char profile_text[] = "profile notify-test\n"
                                   "Device.DeviceInfo.Manufacturer = \"uspsim\"\n"
                                   "Device.DeviceInfo.ManufacturerOUI = \"00D09E\"\n"
                                   "Device.DeviceInfo.ProductClass = \"Gateway\"\n"
                                   "Device.DeviceInfo.SerialNumber = \"{serial}\"\n"
                                   "Device.DeviceInfo.SoftwareVersion = \"1.2.3\"\n"
                                   "Device.DeviceInfo.HardwareVersion = \"hw \\\"A\\\"\"\n"
                                   "Device.DeviceInfo.UpTime = uptime()\n"
                                   "instances Device.LocalAgent.Controller. 2\n"
                                   "instances Device.LocalAgent.Controller.{i}.BootParameter. 0\n"
                                   "instances Device.LocalAgent.Subscription. 0\n"
                                   "Device.LocalAgent.Controller.1.Alias = \"cpe-1\"\n"
                                   "Device.LocalAgent.Controller.1.EndpointID = \"" CTRL1 "\"\n"
                                   "Device.LocalAgent.Controller.1.Enable = true\n"
                                   "Device.LocalAgent.Controller.2.Alias = \"cpe-2\"\n"
                                   "Device.LocalAgent.Controller.2.EndpointID = \"" CTRL2 "\"\n"
                                   "Device.LocalAgent.Controller.2.Enable = true\n"
                                   "instances Device.WiFi.SSID. 3\n"
                                   "Device.WiFi.SSID.{i}.Alias = \"cpe-{i1}\"\n"
                                   "Device.WiFi.SSID.{i}.Name = \"wlan{i1}\"\n"
                                   "Device.WiFi.SSID.{i}.SSID = \"net-{i1}\"\n"
                                   "Device.WiFi.SSID.{i}.Enable = true\n"
                                   "Device.WiFi.SSID.3.Enable = false\n";

static struct usp_dm_schema *g_schema;
static struct usp_profile *g_prof;
static struct usp_dm_model *g_model;

/* One Notify the send callback saw. */
struct sent {
    char to[64];
    char msg_id[32];
    uint32_t attempt;
    bool send_resp;
    uint64_t at; /* wheel ms */
    Usp__Notify *nt;
};

#define MAX_SENT 512

static struct {
    struct usp_tw *tw;
    struct usp_notifier *n;
    struct usp_dm_agent a;
    struct usp_notify_agent na;
    struct usp_arena *ar; /* decoded copies of what was sent */
    struct sent sent[MAX_SENT];
    size_t nsent;
    int ack_inline;     /* the send callback answers at once */
    int cleanup_inline; /* the send callback cleans the agent up */
    int bad_out;        /* msg and payload disagreed */
} F;

static int64_t vnow(void *ctx, const struct usp_dm_agent *a)
{
    return (int64_t)(usp_tw_now(F.tw) / 1000);
}

static int on_send(void *ctx, struct usp_dm_agent *a, const struct usp_notify_out *out,
                   struct usp_arena *arena)
{
    if (F.nsent >= MAX_SENT)
        return USP_ERANGE;
    struct sent *s = &F.sent[F.nsent++];
    snprintf(s->to, sizeof s->to, "%s", out->to_eid);
    snprintf(s->msg_id, sizeof s->msg_id, "%s", out->msg_id);
    s->attempt = out->attempt;
    s->send_resp = out->send_resp;
    s->at = usp_tw_now(F.tw);
    /* msg and payload must be the same message */
    uint8_t *buf;
    size_t len;
    if (usp_msg_encode(arena, out->msg, &buf, &len) != 0 || len != out->len ||
        memcmp(buf, out->payload, len) != 0)
        F.bad_out++;
    Usp__Msg *m = NULL;
    struct usp_decode_err err;
    if (usp_msg_decode(F.ar, out->payload, out->len, &m, &err) != 0 ||
        m->body->msg_body_case != USP__BODY__MSG_BODY_REQUEST ||
        m->body->request->req_type_case != USP__REQUEST__REQ_TYPE_NOTIFY ||
        strcmp(m->header->msg_id, out->msg_id) != 0 ||
        m->header->msg_type != USP__HEADER__MSG_TYPE__NOTIFY)
        F.bad_out++;
    else
        s->nt = m->body->request->notify;
    if (F.ack_inline && out->send_resp)
        usp_notify_resp_received(F.n, &F.na, out->to_eid, out->msg_id);
    if (F.cleanup_inline)
        usp_notify_agent_cleanup(F.n, &F.na);
    return 0;
}

static bool load_model(void)
{
    if (g_model)
        return true;
    struct usp_dm_error e;
    if (usp_dm_load_file(SCHEMA_XML, 0, &g_schema, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return false;
    }
    struct usp_profile_err pe;
    if (usp_profile_parse_mem("notify-test.prof", profile_text, strlen(profile_text), NULL, &g_prof,
                              &pe) != 0) {
        fprintf(stderr, "%s\n", pe.text);
        return false;
    }
    struct usp_dm_model_err me;
    if (usp_dm_model_new(g_schema, g_prof, &g_model, &me) != 0) {
        fprintf(stderr, "%s\n", me.msg);
        return false;
    }
    return true;
}

static void setup_cfg(uint32_t poll_ms)
{
    CU_ASSERT_FATAL(load_model());
    memset(&F, 0, sizeof F);
    CU_ASSERT_EQUAL_FATAL(usp_tw_new(T0_MS, &F.tw), 0);
    struct usp_notify_cfg cfg = {
        .tw = F.tw, .send = on_send, .now = vnow, .seed = 42, .poll_ms = poll_ms};
    CU_ASSERT_EQUAL_FATAL(usp_notifier_new(&cfg, &F.n), 0);
    F.ar = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(F.ar);
    usp_dm_agent_init(&F.a, g_model, 7, "proto::agent-7", (int64_t)(T0_MS / 1000));
}

static void setup(void)
{
    setup_cfg(1000);
}

static void teardown(void)
{
    CU_ASSERT_EQUAL(F.bad_out, 0);
    usp_notify_agent_cleanup(F.n, &F.na);
    CU_ASSERT_PTR_NULL(F.na.st);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->agents, 0);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->pending, 0);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->mem, 0);
    usp_notifier_free(F.n);
    usp_tw_free(F.tw);
    usp_dm_agent_cleanup(&F.a);
    usp_arena_free(F.ar);
}

/* Sets an instantiated parameter ("Device.WiFi.SSID.1.SSID") as the agent. */
static void set_v(const char *path, const char *value)
{
    char obj[256];
    const char *dot = strrchr(path, '.');
    CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
    snprintf(obj, sizeof obj, "%.*s", (int)(dot - path + 1), path);
    struct usp_dm_inst o;
    CU_ASSERT_EQUAL_FATAL(usp_dm_inst_parse(g_model, obj, &o), 0);
    const struct usp_dm_param *p = usp_dm_object_param(o.obj, dot + 1, strlen(dot + 1));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    char why[160];
    int rc = usp_dm_set(&F.a, &o, p, value, NULL, why, sizeof why);
    if (rc)
        fprintf(stderr, "set %s=%s: %d %s\n", path, value, rc, why);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static bool row_exists(const char *path)
{
    struct usp_dm_inst o;
    return usp_dm_inst_parse(g_model, path, &o) == 0 && usp_dm_exists(&F.a, &o);
}

static uint32_t add_row(const char *table_supported, uint32_t parent_inst)
{
    struct usp_dm_item it;
    CU_ASSERT_EQUAL_FATAL(usp_dm_lookup(g_schema, table_supported, &it), 0);
    struct usp_dm_inst parent = {.obj = it.object->parent};
    if (parent_inst) {
        parent.n = 1;
        parent.inst[0] = parent_inst;
    }
    uint32_t inst = 0;
    CU_ASSERT_EQUAL_FATAL(usp_dm_add(&F.a, it.object, &parent, &inst), 0);
    return inst;
}

static void format_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

struct sub_opts {
    bool disabled;
    bool retry;
    unsigned expiration, ttl;
    int64_t created; /* 0: now */
    const char *trigger;
};

/* Adds a Subscription row as the handlers would, without telling the
 * notifier (tests call usp_notify_refresh or emit the creation). */
static uint32_t add_sub(const char *id, const char *type, const char *refs, uint32_t ctrl,
                        const struct sub_opts *o)
{
    static const struct sub_opts none = {0};
    if (!o)
        o = &none;
    uint32_t i = add_row("Device.LocalAgent.Subscription.{i}.", 0);
    char p[128], v[128];
#define SUBSET(name, val)                                                                          \
    do {                                                                                           \
        snprintf(p, sizeof p, "Device.LocalAgent.Subscription.%u.%s", i, name);                    \
        set_v(p, val);                                                                             \
    } while (0)
    snprintf(v, sizeof v, "Device.LocalAgent.Controller.%u", ctrl);
    SUBSET("Recipient", v);
    SUBSET("ID", id);
    SUBSET("NotifType", type);
    SUBSET("ReferenceList", refs);
    SUBSET("Enable", o->disabled ? "false" : "true");
    SUBSET("NotifRetry", o->retry ? "true" : "false");
    snprintf(v, sizeof v, "%u", o->expiration);
    SUBSET("NotifExpiration", v);
    snprintf(v, sizeof v, "%u", o->ttl);
    SUBSET("TimeToLive", v);
    format_time(o->created ? o->created : vnow(NULL, NULL), v, sizeof v);
    SUBSET("CreationDate", v);
    if (o->trigger)
        SUBSET("TriggerAction", o->trigger);
#undef SUBSET
    return i;
}

static void emit(enum usp_dm_event_kind kind, const char *path, const char *name, const char *value)
{
    struct usp_dm_event_info ev = {.kind = kind, .path = path, .name = name, .value = value};
    usp_notify_event(F.n, &F.a, &F.na, &ev);
}

/* How many Notify messages went out for subscription `id` since `from`. */
static size_t count_for(const char *id, size_t from)
{
    size_t c = 0;
    for (size_t i = from; i < F.nsent; i++)
        if (F.sent[i].nt && !strcmp(F.sent[i].nt->subscription_id, id))
            c++;
    return c;
}

static const struct sent *last_for(const char *id)
{
    for (size_t i = F.nsent; i-- > 0;)
        if (F.sent[i].nt && !strcmp(F.sent[i].nt->subscription_id, id))
            return &F.sent[i];
    return NULL;
}

/* Moves the wheel to `to`, one due time at a time. */
static void run_until(uint64_t to)
{
    uint64_t t;
    while (usp_tw_next(F.tw, &t) && t <= to)
        usp_tw_advance(F.tw, t);
    usp_tw_advance(F.tw, to);
}

/* Advances the wheel until something is sent; false when nothing is
 * pending any more. */
static bool step_to_send(void)
{
    size_t before = F.nsent;
    uint64_t t;
    while (F.nsent == before) {
        if (!usp_tw_next(F.tw, &t))
            return false;
        usp_tw_advance(F.tw, t);
    }
    return true;
}

/* --- The back-off table ------------------------------------------------ */

static void test_retry_window(void)
{
    /* R-NOT.1 default table: 5-10, 10-20, ... 1280-2560, then 2560-5120. */
    static const uint64_t lo5[] = {5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 2560, 2560};
    for (uint32_t n = 1; n <= 12; n++) {
        uint64_t lo, hi;
        usp_notify_retry_window(5, 2000, n, &lo, &hi);
        CU_ASSERT_EQUAL(lo, lo5[n - 1] * 1000);
        CU_ASSERT_EQUAL(hi, lo5[n - 1] * 2000);
    }
    /* Other m and k: m*(k/1000)^(n-1) .. m*(k/1000)^n, rounded inwards. */
    static const uint32_t mk[][2] = {{3, 1500}, {1, 1000}, {7, 1234}, {65535, 65535}, {10, 3000}};
    for (size_t c = 0; c < sizeof mk / sizeof mk[0]; c++) {
        for (uint32_t n = 1; n <= 12; n++) {
            uint64_t lo, hi;
            usp_notify_retry_window(mk[c][0], mk[c][1], n, &lo, &hi);
            unsigned e = n > 10 ? 10 : n;
            double r = mk[c][1] / 1000.0;
            double wlo = mk[c][0] * 1000.0 * pow(r, e - 1), whi = wlo * r;
            if (wlo > 1099511627776.0) /* capped at 2^40 ms */
                continue;
            CU_ASSERT_TRUE(lo >= wlo - 1e-6 * wlo && lo < wlo + 1.0);
            if (whi <= 1099511627776.0)
                CU_ASSERT_TRUE(hi <= whi + 1e-6 * whi && hi > whi - 1.0);
            CU_ASSERT_TRUE(lo <= hi);
        }
    }
}

/* --- Matching per NotifType -------------------------------------------- */

static void test_value_change_match(void)
{
    setup();
    add_sub("param", "ValueChange", "Device.WiFi.SSID.1.SSID", 1, NULL);
    add_sub("object", "ValueChange", "Device.WiFi.SSID.2.", 1, NULL);
    add_sub("wild", "ValueChange", "Device.WiFi.SSID.*.Enable", 1, NULL);
    add_sub("search", "ValueChange", "Device.WiFi.SSID.[Enable==true].SSID", 2, NULL);
    add_sub("list", "ValueChange", "Device.DeviceInfo.SoftwareVersion, Device.WiFi.SSID.3.Name", 1,
            NULL);
    add_sub("ref", "ValueChange", "Device.LocalAgent.Subscription.1.Recipient+.EndpointID", 2,
            NULL);
    add_sub("wrongtype", "ObjectCreation", "Device.WiFi.SSID.", 1, NULL);
    add_sub("cmd", "ValueChange", "Device.Reboot()", 1, NULL);

    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "new-1");
    CU_ASSERT_EQUAL(count_for("param", 0), 1);
    CU_ASSERT_EQUAL(count_for("object", 0), 0);
    CU_ASSERT_EQUAL(count_for("wild", 0), 0);
    CU_ASSERT_EQUAL(count_for("search", 0), 1); /* SSID.1 is enabled */
    CU_ASSERT_EQUAL(count_for("wrongtype", 0), 0);
    CU_ASSERT_EQUAL(F.nsent, 2);
    const struct sent *s = last_for("param");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s->to, CTRL1);
    CU_ASSERT_FALSE(s->send_resp);
    CU_ASSERT_FALSE(s->nt->send_resp);
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_VALUE_CHANGE);
    CU_ASSERT_STRING_EQUAL(s->nt->value_change->param_path, "Device.WiFi.SSID.1.SSID");
    CU_ASSERT_STRING_EQUAL(s->nt->value_change->param_value, "new-1");
    CU_ASSERT_STRING_EQUAL(last_for("search")->to, CTRL2);

    size_t mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.2.SSID", NULL, "x");
    CU_ASSERT_EQUAL(count_for("object", mark), 1); /* an object path covers its params */
    CU_ASSERT_EQUAL(count_for("param", mark), 0);
    CU_ASSERT_EQUAL(count_for("search", mark), 1);

    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.3.SSID", NULL, "x"); /* SSID.3 disabled */
    CU_ASSERT_EQUAL(F.nsent, mark);

    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.3.Enable", NULL, "true");
    CU_ASSERT_EQUAL(count_for("wild", mark), 1);
    CU_ASSERT_EQUAL(F.nsent, mark + 1);

    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.3.Name", NULL, "n");
    emit(USP_EV_VALUE_CHANGE, "Device.DeviceInfo.SoftwareVersion", NULL, "2");
    CU_ASSERT_EQUAL(count_for("list", mark), 2);
    CU_ASSERT_EQUAL(F.nsent, mark + 2);

    /* Reference following: subscription 1's Recipient is controller 1. */
    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.LocalAgent.Controller.1.EndpointID", NULL, CTRL1);
    CU_ASSERT_EQUAL(count_for("ref", mark), 1);
    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.LocalAgent.Controller.2.EndpointID", NULL, CTRL2);
    CU_ASSERT_EQUAL(count_for("ref", mark), 0);

    /* A prefix that is not a whole name does not match. */
    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSIDAdvertisementEnabled", NULL, "true");
    CU_ASSERT_EQUAL(count_for("param", mark), 0);
    teardown();
}

static void test_object_creation_match(void)
{
    setup();
    add_sub("table", "ObjectCreation", "Device.WiFi.SSID.", 1, NULL);
    add_sub("rows", "ObjectCreation", "Device.WiFi.SSID.*.", 2, NULL);
    add_sub("enabled", "ObjectCreation", "Device.WiFi.SSID.[Enable==true].", 1, NULL);
    add_sub("notable", "ObjectCreation", "Device.WiFi.", 1, NULL);
    add_sub("other", "ObjectCreation", "Device.Hosts.Host.", 1, NULL);

    struct usp_kv keys[] = {{"Alias", "cpe-1"}, {"Name", "wlan1"}};
    struct usp_dm_event_info ev = {
        .kind = USP_EV_OBJ_CREATION, .path = "Device.WiFi.SSID.1.", .kv = keys, .nkv = 2};
    usp_notify_event(F.n, &F.a, &F.na, &ev);
    CU_ASSERT_EQUAL(count_for("table", 0), 1);
    CU_ASSERT_EQUAL(count_for("rows", 0), 1);
    CU_ASSERT_EQUAL(count_for("enabled", 0), 1);
    CU_ASSERT_EQUAL(count_for("notable", 0), 0);
    CU_ASSERT_EQUAL(count_for("other", 0), 0);
    const struct sent *s = last_for("table");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_OBJ_CREATION);
    CU_ASSERT_STRING_EQUAL(s->nt->obj_creation->obj_path, "Device.WiFi.SSID.1.");
    CU_ASSERT_EQUAL_FATAL(s->nt->obj_creation->n_unique_keys, 2);
    CU_ASSERT_STRING_EQUAL(s->nt->obj_creation->unique_keys[1]->key, "Name");
    CU_ASSERT_STRING_EQUAL(s->nt->obj_creation->unique_keys[1]->value, "wlan1");

    size_t mark = F.nsent;
    ev.path = "Device.WiFi.SSID.3."; /* a disabled row: the search does not take it */
    usp_notify_event(F.n, &F.a, &F.na, &ev);
    CU_ASSERT_EQUAL(count_for("enabled", mark), 0);
    CU_ASSERT_EQUAL(count_for("table", mark), 1);

    /* A value change is not a creation. */
    mark = F.nsent;
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.Name", NULL, "x");
    CU_ASSERT_EQUAL(F.nsent, mark);
    teardown();
}

static void test_object_deletion_match(void)
{
    setup();
    add_sub("one", "ObjectDeletion", "Device.WiFi.SSID.2.", 1, NULL);
    add_sub("all", "ObjectDeletion", "Device.WiFi.SSID.*.", 1, NULL);
    add_sub("table", "ObjectDeletion", "Device.WiFi.SSID.", 2, NULL);
    add_sub("search", "ObjectDeletion", "Device.WiFi.SSID.[Enable==true].", 2, NULL);
    add_sub("params", "ObjectDeletion", "Device.WiFi.SSID.2.Name", 2, NULL);
    add_sub("creation", "ObjectCreation", "Device.WiFi.SSID.", 2, NULL);

    emit(USP_EV_OBJ_DELETION, "Device.WiFi.SSID.3.", NULL, NULL);
    CU_ASSERT_EQUAL(count_for("one", 0), 0);
    CU_ASSERT_EQUAL(count_for("all", 0), 1);
    CU_ASSERT_EQUAL(count_for("table", 0), 1);
    CU_ASSERT_EQUAL(count_for("search", 0), 1); /* the row is gone: acts as a wildcard */
    CU_ASSERT_EQUAL(count_for("params", 0), 0);
    CU_ASSERT_EQUAL(count_for("creation", 0), 0);
    size_t mark = F.nsent;
    emit(USP_EV_OBJ_DELETION, "Device.WiFi.SSID.2.", NULL, NULL);
    CU_ASSERT_EQUAL(count_for("one", mark), 1);
    const struct sent *s = last_for("one");
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_OBJ_DELETION);
    CU_ASSERT_STRING_EQUAL(s->nt->obj_deletion->obj_path, "Device.WiFi.SSID.2.");
    mark = F.nsent;
    emit(USP_EV_OBJ_DELETION, "Device.Hosts.Host.2.", NULL, NULL);
    CU_ASSERT_EQUAL(F.nsent, mark);
    teardown();
}

static void test_oper_complete_match(void)
{
    setup();
    add_sub("cmd", "OperationComplete", "Device.SelfTestDiagnostics()", 1, NULL);
    add_sub("obj", "OperationComplete", "Device.", 2, NULL);
    add_sub("other", "OperationComplete", "Device.ScheduleTimer()", 1, NULL);
    add_sub("event", "Event", "Device.", 1, NULL);

    struct usp_kv out[] = {{"Status", "Complete"}, {"Results", ""}};
    struct usp_dm_event_info ev = {.kind = USP_EV_OPER_COMPLETE,
                                   .path = "Device.",
                                   .name = "SelfTestDiagnostics()",
                                   .command_key = "ck-1",
                                   .kv = out,
                                   .nkv = 2};
    usp_notify_event(F.n, &F.a, &F.na, &ev);
    CU_ASSERT_EQUAL(count_for("cmd", 0), 1);
    CU_ASSERT_EQUAL(count_for("obj", 0), 1);
    CU_ASSERT_EQUAL(count_for("other", 0), 0);
    CU_ASSERT_EQUAL(count_for("event", 0), 0);
    const struct sent *s = last_for("cmd");
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_OPER_COMPLETE);
    Usp__Notify__OperationComplete *op = s->nt->oper_complete;
    CU_ASSERT_STRING_EQUAL(op->obj_path, "Device.");
    CU_ASSERT_STRING_EQUAL(op->command_name, "SelfTestDiagnostics()");
    CU_ASSERT_STRING_EQUAL(op->command_key, "ck-1");
    CU_ASSERT_EQUAL_FATAL(op->operation_resp_case,
                          USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP_REQ_OUTPUT_ARGS);
    CU_ASSERT_EQUAL_FATAL(op->req_output_args->n_output_args, 2);
    CU_ASSERT_STRING_EQUAL(op->req_output_args->output_args[0]->key, "Status");
    CU_ASSERT_STRING_EQUAL(op->req_output_args->output_args[0]->value, "Complete");

    size_t mark = F.nsent;
    struct usp_dm_event_info fail = {.kind = USP_EV_OPER_COMPLETE,
                                     .path = "Device.LocalAgent.Request.1.",
                                     .name = "Cancel()",
                                     .err_code = 7023};
    usp_notify_event(F.n, &F.a, &F.na, &fail);
    CU_ASSERT_EQUAL(count_for("obj", mark), 1);
    CU_ASSERT_EQUAL(count_for("cmd", mark), 0);
    op = last_for("obj")->nt->oper_complete;
    CU_ASSERT_EQUAL_FATAL(op->operation_resp_case,
                          USP__NOTIFY__OPERATION_COMPLETE__OPERATION_RESP_CMD_FAILURE);
    CU_ASSERT_EQUAL(op->cmd_failure->err_code, 7023);
    CU_ASSERT_STRING_EQUAL(op->cmd_failure->err_msg, "Command canceled");
    teardown();
}

static void test_event_match(void)
{
    setup();
    add_sub("boot", "Event", "Device.Boot!", 1, NULL);
    add_sub("all", "Event", "Device.", 2, NULL);
    add_sub("du", "Event", "Device.SoftwareModules.DeploymentUnit.*.DUStateChange!", 1, NULL);
    add_sub("vc", "ValueChange", "Device.", 1, NULL);

    struct usp_kv args[] = {{"Status", "Installed"}};
    struct usp_dm_event_info ev = {.kind = USP_EV_EVENT,
                                   .path = "Device.SoftwareModules.DeploymentUnit.4.",
                                   .name = "DUStateChange!",
                                   .kv = args,
                                   .nkv = 1};
    usp_notify_event(F.n, &F.a, &F.na, &ev);
    CU_ASSERT_EQUAL(count_for("du", 0), 1);
    CU_ASSERT_EQUAL(count_for("all", 0), 1);
    CU_ASSERT_EQUAL(count_for("boot", 0), 0);
    CU_ASSERT_EQUAL(count_for("vc", 0), 0);
    const struct sent *s = last_for("du");
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_EVENT);
    CU_ASSERT_STRING_EQUAL(s->nt->event->obj_path, "Device.SoftwareModules.DeploymentUnit.4.");
    CU_ASSERT_STRING_EQUAL(s->nt->event->event_name, "DUStateChange!");
    CU_ASSERT_EQUAL_FATAL(s->nt->event->n_params, 1);
    CU_ASSERT_STRING_EQUAL(s->nt->event->params[0]->value, "Installed");
    teardown();
}

/* --- Boot! --------------------------------------------------------------- */

static const char *event_param(const Usp__Notify *nt, const char *key)
{
    for (size_t i = 0; i < nt->event->n_params; i++)
        if (!strcmp(nt->event->params[i]->key, key))
            return nt->event->params[i]->value;
    return NULL;
}

static void test_boot_subscribed_only(void)
{
    setup();
    add_sub("boot-1", "Event", "Device.Boot!", 1, NULL);
    add_sub("periodic-2", "Event", "Device.LocalAgent.Periodic!", 2, NULL);
    add_sub("vc-2", "ValueChange", "Device.", 2, NULL);
    /* Controller 1 wants two parameters in ParameterMap, one entry disabled. */
    uint32_t b1 = add_row("Device.LocalAgent.Controller.{i}.BootParameter.{i}.", 1);
    uint32_t b2 = add_row("Device.LocalAgent.Controller.{i}.BootParameter.{i}.", 1);
    uint32_t b3 = add_row("Device.LocalAgent.Controller.{i}.BootParameter.{i}.", 1);
    char p[128];
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.ParameterName", b1);
    set_v(p, "Device.DeviceInfo.SoftwareVersion");
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.Enable", b1);
    set_v(p, "true");
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.ParameterName", b2);
    set_v(p, "Device.WiFi.SSID.[Enable==true].SSID");
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.Enable", b2);
    set_v(p, "true");
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.ParameterName", b3);
    set_v(p, "Device.DeviceInfo.HardwareVersion"); /* left disabled */

    struct usp_notify_boot b = {.cause = "RemoteReboot",
                                .command_key = "reboot-42",
                                .reason = "test",
                                .firmware_updated = true};
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, &b), 0);
    CU_ASSERT_EQUAL(F.nsent, 1);
    const struct sent *s = last_for("boot-1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s->to, CTRL1);
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_EVENT);
    CU_ASSERT_STRING_EQUAL(s->nt->event->obj_path, "Device.");
    CU_ASSERT_STRING_EQUAL(s->nt->event->event_name, "Boot!");
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "CommandKey"), "reboot-42");
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "Cause"), "RemoteReboot");
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "Reason"), "test");
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "FirmwareUpdated"), "true");
    const char *map = event_param(s->nt, "ParameterMap");
    CU_ASSERT_PTR_NOT_NULL_FATAL(map);
    CU_ASSERT_STRING_EQUAL(map, "{\"Device.DeviceInfo.SoftwareVersion\":\"1.2.3\","
                                "\"Device.WiFi.SSID.1.SSID\":\"net-1\","
                                "\"Device.WiFi.SSID.2.SSID\":\"net-2\"}");

    /* A disabled controller gets no Boot!, nor does a disabled subscription. */
    set_v("Device.LocalAgent.Controller.1.Enable", "false");
    add_sub("boot-2-off", "Event", "Device.Boot!", 2, &(struct sub_opts){.disabled = true});
    size_t mark = F.nsent;
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_EQUAL(F.nsent, mark);
    /* JSON escaping in the map, and the default cause. */
    set_v("Device.LocalAgent.Controller.1.Enable", "true");
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.Enable", b3);
    set_v(p, "true");
    snprintf(p, sizeof p, "Device.LocalAgent.Controller.1.BootParameter.%u.Enable", b2);
    set_v(p, "false");
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    s = last_for("boot-1");
    CU_ASSERT_EQUAL(F.nsent, mark + 1);
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "Cause"), "LocalReboot");
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "FirmwareUpdated"), "false");
    CU_ASSERT_STRING_EQUAL(event_param(s->nt, "ParameterMap"),
                           "{\"Device.DeviceInfo.SoftwareVersion\":\"1.2.3\","
                           "\"Device.DeviceInfo.HardwareVersion\":\"hw \\\"A\\\"\"}");
    teardown();
}

static void test_disabled_ignored(void)
{
    setup();
    add_sub("off", "ValueChange", "Device.WiFi.", 1, &(struct sub_opts){.disabled = true});
    add_sub("config", "ValueChange", "Device.WiFi.", 1, &(struct sub_opts){.trigger = "Config"});
    add_sub("both", "ValueChange", "Device.WiFi.", 1,
            &(struct sub_opts){.trigger = "NotifyAndConfig"});
    add_sub("ctrl2", "ValueChange", "Device.WiFi.", 2, NULL);
    set_v("Device.LocalAgent.Controller.2.Enable", "false");
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "v");
    CU_ASSERT_EQUAL(count_for("off", 0), 0);
    CU_ASSERT_EQUAL(count_for("config", 0), 0);
    CU_ASSERT_EQUAL(count_for("both", 0), 1);
    CU_ASSERT_EQUAL(count_for("ctrl2", 0), 0); /* its controller is disabled */
    /* Enabling the subscription makes it count. */
    set_v("Device.LocalAgent.Subscription.1.Enable", "true");
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "w");
    CU_ASSERT_EQUAL(count_for("off", 0), 1);
    /* A subscription whose Recipient names no controller sends nothing. */
    uint32_t i = add_sub("nobody", "ValueChange", "Device.WiFi.", 1, NULL);
    char p[96];
    snprintf(p, sizeof p, "Device.LocalAgent.Subscription.%u.Recipient", i);
    set_v(p, "");
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "x");
    CU_ASSERT_EQUAL(count_for("nobody", 0), 0);
    teardown();
}

/* --- Retries ------------------------------------------------------------- */

/* Boot! with NotifRetry: the waits between transmissions lie in the R-NOT.1
 * windows of the controller's m and k; NotifyResp ends them. */
static void check_schedule(uint32_t m, uint32_t k)
{
    setup();
    char v[16];
    snprintf(v, sizeof v, "%u", m);
    set_v("Device.LocalAgent.Controller.1.USPNotifRetryMinimumWaitInterval", v);
    snprintf(v, sizeof v, "%u", k);
    set_v("Device.LocalAgent.Controller.1.USPNotifRetryIntervalMultiplier", v);
    add_sub("boot", "Event", "Device.Boot!", 1, &(struct sub_opts){.retry = true});
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(F.nsent, 1);
    CU_ASSERT_TRUE(F.sent[0].send_resp);
    CU_ASSERT_TRUE(F.sent[0].nt->send_resp);
    CU_ASSERT_EQUAL(F.sent[0].attempt, 0);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->pending, 1);
    const char *id = F.sent[0].msg_id;
    unsigned at_lo = 0, at_hi = 0;
    for (uint32_t n = 1; n <= 12; n++) {
        CU_ASSERT_TRUE_FATAL(step_to_send());
        CU_ASSERT_EQUAL_FATAL(F.nsent, n + 1);
        const struct sent *s = &F.sent[n];
        CU_ASSERT_EQUAL(s->attempt, n);
        CU_ASSERT_STRING_EQUAL(s->msg_id, id); /* the same message each time */
        CU_ASSERT_STRING_EQUAL(s->to, CTRL1);
        CU_ASSERT_STRING_EQUAL(s->nt->subscription_id, "boot");
        uint64_t wait = s->at - F.sent[n - 1].at;
        /* [m*(k/1000)^(n-1), m*(k/1000)^n] s, fixed from n = 10 on */
        unsigned e = n > 10 ? 10 : n;
        double r = k / 1000.0, lo = m * 1000.0 * pow(r, e - 1), hi = lo * r;
        if (!(wait >= lo - 1e-6 && wait <= hi + 1e-6))
            fprintf(stderr, "retry %u: wait %llu ms not in [%.3f, %.3f]\n", n,
                    (unsigned long long)wait, lo, hi);
        CU_ASSERT_TRUE(wait >= lo - 1e-6 && wait <= hi + 1e-6);
        at_lo += wait <= lo + 1;
        at_hi += wait >= hi - 1;
    }
    CU_ASSERT_TRUE(at_lo < 12 && at_hi < 12); /* random within the window */
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->retried, 12);

    /* Answers that are not for this Notify change nothing. */
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, CTRL1, "notify-999"), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, CTRL2, id), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    /* The NotifyResp ends the retries (env->reply form). */
    struct usp_agent_reply rep = {.controller = CTRL1, .msg_id = id, .subscription_id = "boot"};
    usp_notify_reply(F.n, &F.na, &rep);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->acked, 1);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
    CU_ASSERT_PTR_NULL(F.na.st); /* nothing left: the state is freed */
    size_t mark = F.nsent;
    run_until(F.sent[F.nsent - 1].at + 100000000ull);
    CU_ASSERT_EQUAL(F.nsent, mark);
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, CTRL1, id), USP_ENOENT);
    teardown();
}

static void test_retry_schedule_default(void)
{
    check_schedule(5, 2000);
}

static void test_retry_schedule_custom(void)
{
    check_schedule(3, 1500);
}

static void test_retry_each_own_count(void)
{
    /* Two value changes with NotifRetry: each has its own msg_id and count,
     * an answer to one leaves the other retrying. */
    setup();
    add_sub("vc", "ValueChange", "Device.WiFi.SSID.1.SSID", 1, &(struct sub_opts){.retry = true});
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "a");
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "b");
    CU_ASSERT_EQUAL_FATAL(F.nsent, 2);
    CU_ASSERT_STRING_NOT_EQUAL(F.sent[0].msg_id, F.sent[1].msg_id);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 2);
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, NULL, F.sent[0].msg_id), 0);
    run_until(T0_MS + 11000);
    CU_ASSERT_EQUAL(F.nsent, 3); /* only "b" is retried, within 5-10 s */
    CU_ASSERT_STRING_EQUAL(F.sent[2].msg_id, F.sent[1].msg_id);
    CU_ASSERT_STRING_EQUAL(F.sent[2].nt->value_change->param_value, "b");
    teardown();
}

static void test_notif_expiration(void)
{
    setup();
    add_sub("exp", "ValueChange", "Device.WiFi.", 1,
            &(struct sub_opts){.retry = true, .expiration = 100});
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.2.SSID", NULL, "e");
    CU_ASSERT_EQUAL_FATAL(F.nsent, 1);
    run_until(T0_MS + 99999);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    CU_ASSERT_TRUE(F.nsent >= 4); /* 5-10, 10-20, 20-40: at most 70 s */
    for (size_t i = 0; i < F.nsent; i++)
        CU_ASSERT_TRUE(F.sent[i].at < T0_MS + 100000);
    size_t mark = F.nsent;
    run_until(T0_MS + 100000);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->expired, 1);
    CU_ASSERT_PTR_NULL(F.na.st);
    run_until(T0_MS + 100000000);
    CU_ASSERT_EQUAL(F.nsent, mark);
    teardown();
}

/* Many notifications with a short NotifExpiration: none is sent at or after
 * its deadline, and each is given up exactly at the deadline. */
static void test_notif_expiration_many(void)
{
    setup();
    add_sub("exp", "ValueChange", "Device.WiFi.", 1,
            &(struct sub_opts){.retry = true, .expiration = 7});
    uint64_t t0 = T0_MS;
    for (int i = 0; i < 40; i++) {
        size_t first = F.nsent;
        emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.2.SSID", NULL, "e");
        CU_ASSERT_EQUAL_FATAL(F.nsent, first + 1);
        run_until(t0 + 6999);
        CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
        run_until(t0 + 7000);
        CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
        run_until(t0 + 60000);
        for (size_t k = first; k < F.nsent; k++)
            CU_ASSERT_TRUE(F.sent[k].at < t0 + 7000);
        t0 += 60000 + (uint64_t)i * 37; /* a new start each time */
        run_until(t0);
    }
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->expired, 40);
    CU_ASSERT_TRUE(usp_notify_stats(F.n)->retried > 10); /* some got a retry in 5-7 s */
    teardown();
}

/* --- Through the real handlers ------------------------------------------- */

static void env_emit(void *ctx, struct usp_dm_agent *a, const struct usp_dm_event_info *ev)
{
    usp_notify_event(F.n, a, &F.na, ev);
}

static void env_reply(void *ctx, struct usp_dm_agent *a, const struct usp_agent_reply *r)
{
    usp_notify_reply(F.n, &F.na, r);
}

static Usp__Msg *request(struct usp_arena *ar, const char *id, Usp__Request__ReqTypeCase kind,
                         void *body)
{
    Usp__Msg *m = usp_arena_zalloc(ar, sizeof *m);
    Usp__Header *h = usp_arena_zalloc(ar, sizeof *h);
    Usp__Body *b = usp_arena_zalloc(ar, sizeof *b);
    Usp__Request *r = usp_arena_zalloc(ar, sizeof *r);
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__request__init(r);
    h->msg_id = (char *)id;
    h->msg_type = kind == USP__REQUEST__REQ_TYPE_ADD ? USP__HEADER__MSG_TYPE__ADD
                                                     : USP__HEADER__MSG_TYPE__SET;
    r->req_type_case = kind;
    if (kind == USP__REQUEST__REQ_TYPE_ADD)
        r->add = body;
    else
        r->set = body;
    b->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
    b->request = r;
    m->header = h;
    m->body = b;
    return m;
}

static void test_through_handlers(void)
{
    setup();
    struct usp_agent_env env = {.now = vnow, .emit = env_emit, .reply = env_reply};
    struct usp_arena *ar = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ar);
    /* Controller 1 adds a ValueChange subscription with retries and a
     * TimeToLive; the agent fills in Recipient and CreationDate. */
    static const char *const kv[][2] = {
        {"Enable", "true"},           {"ID", "from-add"},
        {"NotifType", "ValueChange"}, {"ReferenceList", "Device.WiFi.SSID.1.SSID"},
        {"NotifRetry", "true"},       {"TimeToLive", "600"}};
    enum { NKV = sizeof kv / sizeof kv[0] };
    Usp__Add__CreateParamSetting ps[NKV], *psp[NKV];
    for (int i = 0; i < NKV; i++) {
        usp__add__create_param_setting__init(&ps[i]);
        ps[i].param = (char *)kv[i][0];
        ps[i].value = (char *)kv[i][1];
        psp[i] = &ps[i];
    }
    Usp__Add__CreateObject co, *cop = &co;
    usp__add__create_object__init(&co);
    co.obj_path = "Device.LocalAgent.Subscription.";
    co.n_param_settings = NKV;
    co.param_settings = psp;
    Usp__Add add;
    usp__add__init(&add);
    add.n_create_objs = 1;
    add.create_objs = &cop;
    Usp__Msg *resp = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_agent_handle(&F.a, &env, CTRL1,
                                           request(ar, "add-1", USP__REQUEST__REQ_TYPE_ADD, &add),
                                           ar, &resp),
                          0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    CU_ASSERT_EQUAL_FATAL(resp->body->msg_body_case, USP__BODY__MSG_BODY_RESPONSE);
    CU_ASSERT_TRUE(row_exists("Device.LocalAgent.Subscription.1."));
    CU_ASSERT_PTR_NOT_NULL(F.na.st); /* the TimeToLive is being watched */

    /* A Set of the referenced parameter: the Notify goes to controller 1. */
    Usp__Set__UpdateParamSetting sp, *spp = &sp;
    usp__set__update_param_setting__init(&sp);
    sp.param = "SSID";
    sp.value = "renamed";
    Usp__Set__UpdateObject uo, *uop = &uo;
    usp__set__update_object__init(&uo);
    uo.obj_path = "Device.WiFi.SSID.1.";
    uo.n_param_settings = 1;
    uo.param_settings = &spp;
    Usp__Set set;
    usp__set__init(&set);
    set.n_update_objs = 1;
    set.update_objs = &uop;
    size_t mark = F.nsent;
    CU_ASSERT_EQUAL_FATAL(usp_agent_handle(&F.a, &env, CTRL2,
                                           request(ar, "set-1", USP__REQUEST__REQ_TYPE_SET, &set),
                                           ar, &resp),
                          0);
    CU_ASSERT_EQUAL_FATAL(count_for("from-add", mark), 1);
    const struct sent *s = last_for("from-add");
    CU_ASSERT_STRING_EQUAL(s->to, CTRL1);
    CU_ASSERT_TRUE(s->send_resp);
    CU_ASSERT_STRING_EQUAL(s->nt->value_change->param_path, "Device.WiFi.SSID.1.SSID");
    CU_ASSERT_STRING_EQUAL(s->nt->value_change->param_value, "renamed");
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);

    /* The controller's NotifyResp comes back through the handlers. */
    Usp__NotifyResp nr;
    usp__notify_resp__init(&nr);
    nr.subscription_id = "from-add";
    Usp__Response rs;
    usp__response__init(&rs);
    rs.resp_type_case = USP__RESPONSE__RESP_TYPE_NOTIFY_RESP;
    rs.notify_resp = &nr;
    Usp__Msg *rm = request(ar, s->msg_id, USP__REQUEST__REQ_TYPE_SET, &set);
    rm->header->msg_type = USP__HEADER__MSG_TYPE__NOTIFY_RESP;
    rm->body->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
    rm->body->response = &rs;
    CU_ASSERT_EQUAL(usp_agent_handle(&F.a, &env, CTRL1, rm, ar, &resp), 0);
    CU_ASSERT_PTR_NULL(resp);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->acked, 1);

    /* TimeToLive counts from the CreationDate the agent set. */
    run_until(T0_MS + 599999);
    CU_ASSERT_TRUE(row_exists("Device.LocalAgent.Subscription.1."));
    run_until(T0_MS + 600000);
    CU_ASSERT_FALSE(row_exists("Device.LocalAgent.Subscription.1."));
    CU_ASSERT_PTR_NULL(F.na.st);
    usp_arena_free(ar);
    teardown();
}

static void test_retry_controller_gone(void)
{
    /* The recipient controller's row is deleted: retries to it stop. */
    setup();
    add_sub("vc", "ValueChange", "Device.WiFi.", 2, &(struct sub_opts){.retry = true});
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.2.SSID", NULL, "e");
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    /* Disabled: retransmissions are skipped but the schedule goes on. */
    set_v("Device.LocalAgent.Controller.2.Enable", "false");
    run_until(T0_MS + 30000); /* retries 1 and 2 fall due by 30 s */
    CU_ASSERT_EQUAL(F.nsent, 1);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    set_v("Device.LocalAgent.Controller.2.Enable", "true");
    CU_ASSERT_TRUE(step_to_send());
    CU_ASSERT_EQUAL_FATAL(F.nsent, 2);
    CU_ASSERT_TRUE(F.sent[1].attempt >= 3); /* counted while skipped */
    /* Restart events are the fleet's: nothing is sent for them. */
    emit(USP_EV_REBOOT, "Device.", "Reboot()", NULL);
    emit(USP_EV_FACTORY_RESET, "Device.", "FactoryReset()", NULL);
    CU_ASSERT_EQUAL(F.nsent, 2);
    struct usp_dm_inst c;
    CU_ASSERT_EQUAL_FATAL(usp_dm_inst_parse(g_model, "Device.LocalAgent.Controller.2.", &c), 0);
    CU_ASSERT_EQUAL_FATAL(usp_dm_delete(&F.a, &c), 0);
    run_until(F.sent[1].at + 100000000ull);
    CU_ASSERT_EQUAL(F.nsent, 2);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->expired, 1);
    teardown();
}

static void test_onboard_until_ack(void)
{
    setup();
    /* Through the handlers' event, as SendOnBoardRequest() raises it. */
    emit(USP_EV_ONBOARD_REQUEST, "Device.LocalAgent.Controller.2.", NULL, CTRL2);
    CU_ASSERT_EQUAL_FATAL(F.nsent, 1);
    const struct sent *s = &F.sent[0];
    CU_ASSERT_STRING_EQUAL(s->to, CTRL2);
    CU_ASSERT_TRUE(s->send_resp);
    CU_ASSERT_STRING_EQUAL(s->nt->subscription_id, "");
    CU_ASSERT_TRUE(s->nt->send_resp);
    CU_ASSERT_EQUAL_FATAL(s->nt->notification_case, USP__NOTIFY__NOTIFICATION_ON_BOARD_REQ);
    Usp__Notify__OnBoardRequest *ob = s->nt->on_board_req;
    CU_ASSERT_STRING_EQUAL(ob->oui, "00D09E");
    CU_ASSERT_STRING_EQUAL(ob->product_class, "Gateway");
    CU_ASSERT_STRING_EQUAL(ob->serial_number, "SIM000007");
    CU_ASSERT_STRING_EQUAL(ob->agent_supported_protocol_versions, USP_VERSIONS_SUPPORTED);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->onboard, 1);
    /* Never expires: 15 retries over ~11 hours, all the same message. */
    for (int n = 1; n <= 15; n++)
        CU_ASSERT_TRUE_FATAL(step_to_send());
    CU_ASSERT_EQUAL(F.nsent, 16);
    CU_ASSERT_STRING_EQUAL(F.sent[15].msg_id, F.sent[0].msg_id);
    CU_ASSERT_EQUAL(F.sent[15].nt->notification_case, USP__NOTIFY__NOTIFICATION_ON_BOARD_REQ);
    CU_ASSERT_TRUE(F.sent[15].at - F.sent[14].at >= 2560000);
    /* Only the controller it went to can acknowledge it. */
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, CTRL1, F.sent[0].msg_id), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, CTRL2, F.sent[0].msg_id), 0);
    run_until(F.sent[15].at + 100000000ull);
    CU_ASSERT_EQUAL(F.nsent, 16);
    /* A new request replaces one still waiting; an unknown controller is refused. */
    CU_ASSERT_EQUAL(usp_notify_onboard(F.n, &F.a, &F.na, 1), 0);
    CU_ASSERT_EQUAL(usp_notify_onboard(F.n, &F.a, &F.na, 1), 0);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    CU_ASSERT_EQUAL(usp_notify_onboard(F.n, &F.a, &F.na, 9), USP_ENOENT);
    teardown();
}

/* --- TimeToLive, Periodic!, dynamic values --------------------------------- */

static void test_time_to_live(void)
{
    setup();
    int64_t now = vnow(NULL, NULL);
    add_sub("watch-del", "ObjectDeletion", "Device.LocalAgent.Subscription.*.", 2, NULL);
    uint32_t s2 = add_sub("short", "ValueChange", "Device.WiFi.", 1,
                          &(struct sub_opts){.ttl = 30, .created = now - 10});
    /* The row's creation event is how the notifier hears of it. */
    char path[64];
    snprintf(path, sizeof path, "Device.LocalAgent.Subscription.%u.", s2);
    emit(USP_EV_OBJ_CREATION, path, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(F.na.st);
    run_until(T0_MS + 19999);
    CU_ASSERT_TRUE(row_exists(path));
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "still");
    CU_ASSERT_EQUAL(count_for("short", 0), 1);
    run_until(T0_MS + 20000); /* CreationDate + TimeToLive */
    CU_ASSERT_FALSE(row_exists(path));
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->ttl_removed, 1);
    const struct sent *s = last_for("watch-del");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->at, T0_MS + 20000);
    CU_ASSERT_STRING_EQUAL(s->nt->obj_deletion->obj_path, path);
    CU_ASSERT_PTR_NULL(F.na.st); /* no TimeToLive left to watch */
    emit(USP_EV_VALUE_CHANGE, "Device.WiFi.SSID.1.SSID", NULL, "gone");
    CU_ASSERT_EQUAL(count_for("short", 0), 1);
    /* Already expired when seen: removed at the next advance. */
    uint32_t s3 = add_sub("old", "ValueChange", "Device.WiFi.", 1,
                          &(struct sub_opts){.ttl = 5, .created = now - 3600});
    CU_ASSERT_EQUAL(usp_notify_refresh(F.n, &F.a, &F.na), 0);
    usp_tw_advance(F.tw, usp_tw_now(F.tw));
    snprintf(path, sizeof path, "Device.LocalAgent.Subscription.%u.", s3);
    CU_ASSERT_FALSE(row_exists(path));
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->ttl_removed, 2);
    teardown();
}

static void test_periodic(void)
{
    setup();
    int64_t now = vnow(NULL, NULL);
    char v[40];
    format_time(now - 7, v, sizeof v); /* phase: 53 s from now, then every 60 s */
    set_v("Device.LocalAgent.Controller.1.PeriodicNotifTime", v);
    set_v("Device.LocalAgent.Controller.1.PeriodicNotifInterval", "60");
    set_v("Device.LocalAgent.Controller.2.PeriodicNotifInterval", "10");
    add_sub("per", "Event", "Device.LocalAgent.Periodic!", 1, NULL);
    add_sub("boot2", "Event", "Device.Boot!", 2, NULL); /* controller 2 wants no Periodic! */
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_EQUAL(count_for("boot2", 0), 1);
    size_t mark = F.nsent;
    run_until(T0_MS + 52999);
    CU_ASSERT_EQUAL(F.nsent, mark);
    run_until(T0_MS + 53000 + 120000);
    CU_ASSERT_EQUAL_FATAL(count_for("per", mark), 3);
    static const uint64_t when[] = {53000, 113000, 173000};
    for (int i = 0; i < 3; i++) {
        const struct sent *s = &F.sent[mark + (size_t)i];
        CU_ASSERT_EQUAL(s->at, T0_MS + when[i]);
        CU_ASSERT_STRING_EQUAL(s->to, CTRL1);
        CU_ASSERT_STRING_EQUAL(s->nt->event->obj_path, "Device.LocalAgent.");
        CU_ASSERT_STRING_EQUAL(s->nt->event->event_name, "Periodic!");
    }
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->periodic, 3);
    /* A change of the subscription (through its event) keeps the phase. */
    emit(USP_EV_VALUE_CHANGE, "Device.LocalAgent.Subscription.1.NotifRetry", NULL, "false");
    run_until(T0_MS + 233000);
    CU_ASSERT_EQUAL(count_for("per", mark), 4);
    CU_ASSERT_EQUAL(last_for("per")->at, T0_MS + 233000);
    /* Disabling it stops Periodic! and frees the state. */
    set_v("Device.LocalAgent.Subscription.1.Enable", "false");
    emit(USP_EV_VALUE_CHANGE, "Device.LocalAgent.Subscription.1.Enable", NULL, "false");
    CU_ASSERT_PTR_NULL(F.na.st);
    run_until(T0_MS + 1000000);
    CU_ASSERT_EQUAL(count_for("per", mark), 4);
    teardown();
}

static void test_dynamic_poll(void)
{
    setup();
    add_sub("up", "ValueChange", "Device.DeviceInfo.UpTime", 1, NULL);
    add_sub("static", "ValueChange", "Device.DeviceInfo.SoftwareVersion", 2, NULL);
    CU_ASSERT_EQUAL(usp_notify_refresh(F.n, &F.a, &F.na), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(F.na.st);
    CU_ASSERT_EQUAL(F.na.st->nwatch, 1); /* only the dynamic value is polled */
    struct usp_dm_inst di;
    CU_ASSERT_EQUAL_FATAL(usp_dm_inst_parse(g_model, "Device.DeviceInfo.", &di), 0);
    const struct usp_dm_param *up = usp_dm_object_param(di.obj, "UpTime", 6);
    char before[32], after[32];
    CU_ASSERT_EQUAL(usp_dm_get(&F.a, &di, up, before, sizeof before), 0);
    run_until(T0_MS + 1000); /* one poll */
    CU_ASSERT_EQUAL(usp_dm_get(&F.a, &di, up, after, sizeof after), 0);
    if (!strcmp(before, after)) /* the agent's real clock may tick meanwhile */
        CU_ASSERT_EQUAL(count_for("up", 0), 0);
    size_t mark = F.nsent;
    F.a.skew_sec += 100; /* the agent's clock jumps: UpTime changes */
    run_until(T0_MS + 2000);
    CU_ASSERT_EQUAL(count_for("up", mark), 1);
    CU_ASSERT_EQUAL(count_for("static", mark), 0);
    const struct sent *s = last_for("up");
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s->nt->value_change->param_path, "Device.DeviceInfo.UpTime");
    CU_ASSERT_EQUAL(usp_dm_get(&F.a, &di, up, after, sizeof after), 0);
    long got = atol(s->nt->value_change->param_value), cur = atol(after);
    CU_ASSERT_TRUE(got >= 100 && got <= cur && cur - got <= 1);
    CU_ASSERT_TRUE(usp_notify_stats(F.n)->polled >= 2);
    /* Without a subscription nothing is polled and no state is kept. */
    set_v("Device.LocalAgent.Subscription.1.Enable", "false");
    CU_ASSERT_EQUAL(usp_notify_refresh(F.n, &F.a, &F.na), 0);
    CU_ASSERT_PTR_NULL(F.na.st);
    mark = F.nsent;
    F.a.skew_sec += 100;
    run_until(T0_MS + 10000);
    CU_ASSERT_EQUAL(F.nsent, mark);
    teardown();
}

/* --- Memory, re-entry, the cache ------------------------------------------ */

static void test_state_only_when_needed(void)
{
    setup();
    add_sub("boot", "Event", "Device.Boot!", 1, NULL); /* no retry */
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_EQUAL(F.nsent, 1);
    CU_ASSERT_PTR_NULL(F.na.st);
    CU_ASSERT_EQUAL(usp_notify_agent_mem(&F.na), 0);
    set_v("Device.LocalAgent.Subscription.1.NotifRetry", "true");
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    size_t mem = usp_notify_agent_mem(&F.na);
    CU_ASSERT_TRUE(mem > 0 && mem < 512); /* struct + one pending Boot! */
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->agents, 1);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->mem, mem);
    CU_ASSERT_EQUAL(usp_notify_resp_received(F.n, &F.na, CTRL1, F.sent[1].msg_id), 0);
    CU_ASSERT_PTR_NULL(F.na.st);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->mem, 0);
    /* A restart drops what is pending (R-NOT.4). */
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 1);
    usp_notify_agent_cleanup(F.n, &F.na);
    CU_ASSERT_PTR_NULL(F.na.st);
    size_t mark = F.nsent;
    run_until(T0_MS + 100000);
    CU_ASSERT_EQUAL(F.nsent, mark);
    teardown();
}

static void test_reentry(void)
{
    setup();
    add_sub("boot", "Event", "Device.Boot!", 1, &(struct sub_opts){.retry = true});
    F.ack_inline = 1; /* the answer arrives inside the send */
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
    CU_ASSERT_PTR_NULL(F.na.st);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->acked, 1);
    /* Acknowledged during a retransmission. */
    F.ack_inline = 0;
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    F.ack_inline = 1;
    run_until(T0_MS + 20000);
    CU_ASSERT_EQUAL(usp_notify_agent_pending(&F.na), 0);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->acked, 2);
    /* The agent cleaned up from inside a retransmission. */
    F.ack_inline = 0;
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    F.cleanup_inline = 1;
    size_t mark = F.nsent;
    run_until(T0_MS + 40000);
    CU_ASSERT_EQUAL(F.nsent, mark + 1);
    CU_ASSERT_PTR_NULL(F.na.st);
    F.cleanup_inline = 0;
    run_until(T0_MS + 1000000);
    CU_ASSERT_EQUAL(F.nsent, mark + 1);
    teardown();
}

static void test_free_with_pending(void)
{
    /* Freeing the notifier releases every agent's state and empties their
     * handles; the wheel no longer holds its entries. */
    setup();
    add_sub("boot", "Event", "Device.Boot!", 1, &(struct sub_opts){.retry = true});
    add_sub("per", "Event", "Device.LocalAgent.Periodic!", 1, NULL);
    set_v("Device.LocalAgent.Controller.1.PeriodicNotifInterval", "30");
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &F.a, &F.na, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(F.na.st);
    CU_ASSERT_EQUAL(usp_tw_count(F.tw), 2); /* one retry, one Periodic! */
    usp_notifier_free(F.n);
    CU_ASSERT_PTR_NULL(F.na.st);
    CU_ASSERT_EQUAL(usp_tw_count(F.tw), 0);
    usp_tw_free(F.tw);
    usp_dm_agent_cleanup(&F.a);
    usp_arena_free(F.ar);
}

static void test_reflist_cache(void)
{
    setup();
    const struct notify_reflist *a =
        notify__reflist(F.n, "Device.WiFi.SSID.[Name==\"a,b\"].SSID, Device.Boot!,,bad..path");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(a->nrefs, 2); /* the comma inside quotes stays; bad entries skipped */
    CU_ASSERT_TRUE(a->refs[0].resolve);
    CU_ASSERT_FALSE(a->refs[1].resolve);
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->bad_refs, 1);
    const struct notify_reflist *b =
        notify__reflist(F.n, "Device.WiFi.SSID.[Name==\"a,b\"].SSID, Device.Boot!,,bad..path");
    CU_ASSERT_PTR_EQUAL(a, b); /* parsed once, shared */
    CU_ASSERT_EQUAL(usp_notify_stats(F.n)->bad_refs, 1);
    /* Another agent with the same subscription uses the same entry. */
    struct usp_dm_agent a2;
    struct usp_notify_agent na2 = {0};
    usp_dm_agent_init(&a2, g_model, 8, "proto::agent-8", (int64_t)(T0_MS / 1000));
    CU_ASSERT_EQUAL(usp_notify_boot(F.n, &a2, &na2, NULL), 0);
    CU_ASSERT_PTR_NULL(na2.st);
    usp_notify_agent_cleanup(F.n, &na2);
    usp_dm_agent_cleanup(&a2);
    teardown();
}

static void test_time_parse(void)
{
    int64_t t;
    CU_ASSERT_TRUE(notify__parse_time("1970-01-01T00:00:00Z", &t) && t == 0);
    CU_ASSERT_TRUE(notify__parse_time("2023-11-14T22:13:20Z", &t) && t == 1700000000);
    CU_ASSERT_TRUE(notify__parse_time("2023-11-14T22:13:20.123456Z", &t) && t == 1700000000);
    CU_ASSERT_TRUE(notify__parse_time("2023-11-15T00:13:20+02:00", &t) && t == 1700000000);
    CU_ASSERT_TRUE(notify__parse_time("2000-02-29T12:00:00Z", &t) && t == 951825600);
    CU_ASSERT_FALSE(notify__parse_time("0001-01-01T00:00:00Z", &t)); /* unknown time */
    CU_ASSERT_FALSE(notify__parse_time("2023-13-01T00:00:00Z", &t));
    CU_ASSERT_FALSE(notify__parse_time("2023-11-14 22:13:20Z", &t));
    CU_ASSERT_FALSE(notify__parse_time("2023-11-14T22:13:20Zjunk", &t));
    CU_ASSERT_FALSE(notify__parse_time("", &t));
}

void suite_notify(void)
{
    USP_SUITE("notify", USP_TEST(test_retry_window), USP_TEST(test_value_change_match),
              USP_TEST(test_object_creation_match), USP_TEST(test_object_deletion_match),
              USP_TEST(test_oper_complete_match), USP_TEST(test_event_match),
              USP_TEST(test_boot_subscribed_only), USP_TEST(test_disabled_ignored),
              USP_TEST(test_retry_schedule_default), USP_TEST(test_retry_schedule_custom),
              USP_TEST(test_retry_each_own_count), USP_TEST(test_notif_expiration),
              USP_TEST(test_notif_expiration_many), USP_TEST(test_through_handlers),
              USP_TEST(test_retry_controller_gone), USP_TEST(test_onboard_until_ack),
              USP_TEST(test_time_to_live), USP_TEST(test_periodic), USP_TEST(test_dynamic_poll),
              USP_TEST(test_state_only_when_needed), USP_TEST(test_reentry),
              USP_TEST(test_free_with_pending), USP_TEST(test_reflist_cache),
              USP_TEST(test_time_parse));
}
