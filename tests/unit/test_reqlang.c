/* Tests of the request language (lib/reqlang.c). */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/codec.h"
#include "usp/reqlang.h"

static struct usp_arena *arena;
static struct usp_req_err err;

#define ARGS(...)  ((char *[]){__VA_ARGS__, NULL})
#define NARGS(...) ((int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)))
/* Parses the words given, expecting success. */
#define PARSE_OK(...) parse_ok(NARGS(__VA_ARGS__), ARGS(__VA_ARGS__))
/* Parses the words given, expecting USP_EINVAL. */
#define PARSE_BAD(...) parse_bad(NARGS(__VA_ARGS__), ARGS(__VA_ARGS__))

static void setup(void)
{
    usp_arena_free(arena);
    arena = usp_arena_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(arena);
    memset(&err, 0x5a, sizeof err);
}

static Usp__Msg *parse_ok(int argc, char **argv)
{
    Usp__Msg *msg = (Usp__Msg *)1;
    setup();
    int rc = usp_req_parse(arena, argc, argv, "id-1", &msg, &err);
    if (rc)
        fprintf(stderr, "\n  unexpected failure for '%s': %s\n", argv[0], err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg->header);
    CU_ASSERT_STRING_EQUAL(msg->header->msg_id, "id-1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg->body);
    /* Every request we build must be one the codec accepts, and the
     * header must agree with the body. */
    uint8_t *buf;
    size_t len;
    Usp__Msg *back;
    struct usp_decode_err derr;
    CU_ASSERT_EQUAL_FATAL(usp_msg_encode(arena, msg, &buf, &len), 0);
    CU_ASSERT_EQUAL(usp_msg_decode(arena, buf, len, &back, &derr), 0);
    CU_ASSERT_EQUAL(usp_msg_kind(msg), (int)msg->header->msg_type);
    return msg;
}

static void parse_bad(int argc, char **argv)
{
    Usp__Msg *msg = (Usp__Msg *)1;
    setup();
    CU_ASSERT_EQUAL(usp_req_parse(arena, argc, argv, "id-1", &msg, &err), USP_EINVAL);
    CU_ASSERT_PTR_NULL(msg);
    CU_ASSERT(err.msg[0] != '\0');
}

#define ASSERT_ERR(word_, text_)                                                                   \
    do {                                                                                           \
        CU_ASSERT_EQUAL(err.word, word_);                                                          \
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, text_));                                            \
        if (!strstr(err.msg, text_))                                                               \
            fprintf(stderr, "\n  error text: %s\n", err.msg);                                      \
    } while (0)

static Usp__Request *req_of(Usp__Msg *m, Usp__Request__ReqTypeCase c)
{
    CU_ASSERT_EQUAL_FATAL(m->body->msg_body_case, USP__BODY__MSG_BODY_REQUEST);
    CU_ASSERT_EQUAL_FATAL(m->body->request->req_type_case, c);
    return m->body->request;
}

/* ---- get ---- */

static void test_get(void)
{
    Usp__Msg *m = PARSE_OK("get", "Device.DeviceInfo.", "Device.Time.Enable");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__GET);
    Usp__Get *g = req_of(m, USP__REQUEST__REQ_TYPE_GET)->get;
    CU_ASSERT_EQUAL_FATAL(g->n_param_paths, 2);
    CU_ASSERT_STRING_EQUAL(g->param_paths[0], "Device.DeviceInfo.");
    CU_ASSERT_STRING_EQUAL(g->param_paths[1], "Device.Time.Enable");
    CU_ASSERT_EQUAL(g->max_depth, 0);
    CU_ASSERT_STRING_EQUAL(err.cmd, "get");
}

static void test_get_max_depth(void)
{
    Usp__Msg *m = PARSE_OK("get", "--max-depth", "3", "Device.");
    CU_ASSERT_EQUAL(m->body->request->get->max_depth, 3);
    m = PARSE_OK("get", "Device.", "--max-depth=4294967295");
    CU_ASSERT_EQUAL(m->body->request->get->max_depth, 4294967295u);
    CU_ASSERT_EQUAL(m->body->request->get->n_param_paths, 1);

    PARSE_BAD("get", "--max-depth", "x", "Device.");
    ASSERT_ERR(2, "option --max-depth: 'x' is not a whole number from 0 to 4294967295");
    CU_ASSERT_STRING_EQUAL(err.cmd, "get");
    PARSE_BAD("get", "--max-depth=4294967296", "Device.");
    ASSERT_ERR(1, "'4294967296' is not a whole number");
    PARSE_BAD("get", "--max-depth=-1", "Device.");
    ASSERT_ERR(1, "'-1' is not a whole number");
    PARSE_BAD("get", "--max-depth=", "Device.");
    ASSERT_ERR(1, "'' is not a whole number");
    PARSE_BAD("get", "Device.", "--max-depth");
    ASSERT_ERR(2, "option --max-depth needs a value N");
}

static void test_get_bad(void)
{
    PARSE_BAD("get");
    ASSERT_ERR(-1, "missing arguments: expected PATH...");
    CU_ASSERT_STRING_EQUAL(err.cmd, "get");
    PARSE_BAD("get", "");
    ASSERT_ERR(1, "PATH must not be empty");
    PARSE_BAD("get", "--allow-partial", "Device.");
    ASSERT_ERR(1, "unknown option '--allow-partial'");
    PARSE_BAD("get", "Device.", "-x");
    ASSERT_ERR(2, "unknown option '-x'");
}

/* ---- set ---- */

static void check_setting(Usp__Set__UpdateParamSetting *p, const char *param, const char *value,
                          bool required)
{
    CU_ASSERT_STRING_EQUAL(p->param, param);
    CU_ASSERT_STRING_EQUAL(p->value, value);
    CU_ASSERT_EQUAL(p->required, required);
}

static void test_set(void)
{
    Usp__Msg *m =
        PARSE_OK("set", "Device.WiFi.SSID.1.", "Enable:=true", "SSID=home",
                 "Device.Time.NTPServer1=a=b", "Device.WiFi.SSID.1.Alias=", "Device.Time.Enable=1");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__SET);
    Usp__Set *s = req_of(m, USP__REQUEST__REQ_TYPE_SET)->set;
    CU_ASSERT_FALSE(s->allow_partial);
    CU_ASSERT_EQUAL_FATAL(s->n_update_objs, 2);
    CU_ASSERT_STRING_EQUAL(s->update_objs[0]->obj_path, "Device.WiFi.SSID.1.");
    CU_ASSERT_EQUAL_FATAL(s->update_objs[0]->n_param_settings, 3);
    check_setting(s->update_objs[0]->param_settings[0], "Enable", "true", true);
    check_setting(s->update_objs[0]->param_settings[1], "SSID", "home", false);
    check_setting(s->update_objs[0]->param_settings[2], "Alias", "", false);
    CU_ASSERT_STRING_EQUAL(s->update_objs[1]->obj_path, "Device.Time.");
    CU_ASSERT_EQUAL_FATAL(s->update_objs[1]->n_param_settings, 2);
    check_setting(s->update_objs[1]->param_settings[0], "NTPServer1", "a=b", false);
    check_setting(s->update_objs[1]->param_settings[1], "Enable", "1", false);
}

static void test_set_options(void)
{
    Usp__Msg *m =
        PARSE_OK("set", "--allow-partial", "Device.A.", "X=1", "--required", "Device.A.Y:=2");
    Usp__Set *s = m->body->request->set;
    CU_ASSERT_TRUE(s->allow_partial);
    CU_ASSERT_EQUAL_FATAL(s->n_update_objs, 1);
    CU_ASSERT_EQUAL_FATAL(s->update_objs[0]->n_param_settings, 2);
    check_setting(s->update_objs[0]->param_settings[0], "X", "1", true);
    check_setting(s->update_objs[0]->param_settings[1], "Y", "2", true);
}

static void test_set_search_path(void)
{
    /* The '=' and '.' inside [...] belong to the path. */
    Usp__Msg *m = PARSE_OK("set", "Device.WiFi.SSID.[Name==\"a.b=c]\"].Enable=true",
                           "Device.IP.Interface.[Type==\"Normal\"&&Stats.X>0].", "Alias:=x");
    Usp__Set *s = m->body->request->set;
    CU_ASSERT_EQUAL_FATAL(s->n_update_objs, 2);
    CU_ASSERT_STRING_EQUAL(s->update_objs[0]->obj_path, "Device.WiFi.SSID.[Name==\"a.b=c]\"].");
    check_setting(s->update_objs[0]->param_settings[0], "Enable", "true", false);
    CU_ASSERT_STRING_EQUAL(s->update_objs[1]->obj_path,
                           "Device.IP.Interface.[Type==\"Normal\"&&Stats.X>0].");
    check_setting(s->update_objs[1]->param_settings[0], "Alias", "x", true);
}

static void test_set_bad(void)
{
    PARSE_BAD("set");
    ASSERT_ERR(-1, "missing arguments");
    PARSE_BAD("set", "Enable=1");
    ASSERT_ERR(1, "'Enable=1': no OBJPATH before it");
    PARSE_BAD("set", "Device.A.", "X=1", "Device.B.");
    ASSERT_ERR(3, "OBJPATH 'Device.B.' has no PARAM=VALUE after it");
    PARSE_BAD("set", "Device.A.Enable", "true");
    ASSERT_ERR(1, "'Device.A.Enable' is neither an object path ending in '.' nor PARAM=VALUE");
    PARSE_BAD("set", "Device.A.", "=1");
    ASSERT_ERR(2, "'=1': no parameter name before '='");
    PARSE_BAD("set", "Device.A.", ":=1");
    ASSERT_ERR(2, "no parameter name before '='");
    PARSE_BAD("set", "Device.A.=1");
    ASSERT_ERR(1, "'Device.A.=1': no parameter name after the last '.'");
    PARSE_BAD("set", "Device.A.:=1");
    ASSERT_ERR(1, "no parameter name after the last '.'");
    PARSE_BAD("set", "Device.A.", "X=1", "--max-depth=1");
    ASSERT_ERR(3, "unknown option '--max-depth'");
    PARSE_BAD("set", "--allow-partial=yes", "Device.A.X=1");
    ASSERT_ERR(1, "option --allow-partial takes no value");
    CU_ASSERT_STRING_EQUAL(err.cmd, "set");
}

/* ---- add ---- */

static void test_add(void)
{
    Usp__Msg *m = PARSE_OK("add", "Device.NAT.PortMapping.", "Alias:=web", "ExternalPort=8080",
                           "Device.NAT.PortMapping.", "Device.IP.Interface.Name=x");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__ADD);
    Usp__Add *a = req_of(m, USP__REQUEST__REQ_TYPE_ADD)->add;
    CU_ASSERT_FALSE(a->allow_partial);
    CU_ASSERT_EQUAL_FATAL(a->n_create_objs, 3);
    CU_ASSERT_STRING_EQUAL(a->create_objs[0]->obj_path, "Device.NAT.PortMapping.");
    CU_ASSERT_EQUAL_FATAL(a->create_objs[0]->n_param_settings, 2);
    CU_ASSERT_STRING_EQUAL(a->create_objs[0]->param_settings[0]->param, "Alias");
    CU_ASSERT_STRING_EQUAL(a->create_objs[0]->param_settings[0]->value, "web");
    CU_ASSERT_TRUE(a->create_objs[0]->param_settings[0]->required);
    CU_ASSERT_STRING_EQUAL(a->create_objs[0]->param_settings[1]->param, "ExternalPort");
    CU_ASSERT_FALSE(a->create_objs[0]->param_settings[1]->required);
    /* A second OBJPATH is a second object, even for the same table. */
    CU_ASSERT_STRING_EQUAL(a->create_objs[1]->obj_path, "Device.NAT.PortMapping.");
    CU_ASSERT_EQUAL(a->create_objs[1]->n_param_settings, 0);
    CU_ASSERT_STRING_EQUAL(a->create_objs[2]->obj_path, "Device.IP.Interface.");
    CU_ASSERT_EQUAL_FATAL(a->create_objs[2]->n_param_settings, 1);
    CU_ASSERT_STRING_EQUAL(a->create_objs[2]->param_settings[0]->param, "Name");
}

static void test_add_options(void)
{
    Usp__Msg *m = PARSE_OK("add", "--allow-partial", "--required", "Device.X.", "A=1");
    Usp__Add *a = m->body->request->add;
    CU_ASSERT_TRUE(a->allow_partial);
    CU_ASSERT_TRUE(a->create_objs[0]->param_settings[0]->required);
    m = PARSE_OK("add", "Device.X.");
    CU_ASSERT_EQUAL(m->body->request->add->n_create_objs, 1);
    PARSE_BAD("add");
    ASSERT_ERR(-1, "missing arguments: expected OBJPATH");
    PARSE_BAD("add", "Device.X");
    ASSERT_ERR(1, "'Device.X' is neither an object path");
    PARSE_BAD("add", "A=1", "Device.X.");
    ASSERT_ERR(1, "no OBJPATH before it");
    CU_ASSERT_STRING_EQUAL(err.cmd, "add");
}

/* ---- delete ---- */

static void test_delete(void)
{
    Usp__Msg *m = PARSE_OK("delete", "Device.NAT.PortMapping.1.", "Device.X.[Alias==\"a\"].");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__DELETE);
    Usp__Delete *d = req_of(m, USP__REQUEST__REQ_TYPE_DELETE)->delete_;
    CU_ASSERT_FALSE(d->allow_partial);
    CU_ASSERT_EQUAL_FATAL(d->n_obj_paths, 2);
    CU_ASSERT_STRING_EQUAL(d->obj_paths[1], "Device.X.[Alias==\"a\"].");
    m = PARSE_OK("delete", "Device.A.1.", "--allow-partial");
    CU_ASSERT_TRUE(m->body->request->delete_->allow_partial);
    PARSE_BAD("delete", "Device.A.1");
    ASSERT_ERR(1, "OBJPATH 'Device.A.1' must end in '.'");
    PARSE_BAD("delete");
    ASSERT_ERR(-1, "expected OBJPATH...");
}

/* ---- operate ---- */

static void test_operate(void)
{
    Usp__Msg *m = PARSE_OK("operate", "Device.IP.Diagnostics.IPPing()", "Host=192.0.2.1", "Count=3",
                           "Note=a=b");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__OPERATE);
    Usp__Operate *op = req_of(m, USP__REQUEST__REQ_TYPE_OPERATE)->operate;
    CU_ASSERT_STRING_EQUAL(op->command, "Device.IP.Diagnostics.IPPing()");
    CU_ASSERT_STRING_EQUAL(op->command_key, "");
    CU_ASSERT_TRUE(op->send_resp);
    CU_ASSERT_EQUAL_FATAL(op->n_input_args, 3);
    CU_ASSERT_STRING_EQUAL(op->input_args[0]->key, "Host");
    CU_ASSERT_STRING_EQUAL(op->input_args[0]->value, "192.0.2.1");
    CU_ASSERT_STRING_EQUAL(op->input_args[2]->key, "Note");
    CU_ASSERT_STRING_EQUAL(op->input_args[2]->value, "a=b");

    m = PARSE_OK("operate", "--no-resp", "--key", "k1", "Device.Reboot()");
    op = m->body->request->operate;
    CU_ASSERT_FALSE(op->send_resp);
    CU_ASSERT_STRING_EQUAL(op->command_key, "k1");
    CU_ASSERT_EQUAL(op->n_input_args, 0);
    m = PARSE_OK("operate", "Device.X.[Name==\"a\"].Reset()", "--key=");
    CU_ASSERT_STRING_EQUAL(m->body->request->operate->command_key, "");
}

static void test_operate_bad(void)
{
    PARSE_BAD("operate", "Device.Reboot");
    ASSERT_ERR(1, "CMDPATH 'Device.Reboot' must end in '()'");
    PARSE_BAD("operate", "()");
    ASSERT_ERR(1, "must end in '()'");
    PARSE_BAD("operate", "Device.Reboot()", "Host");
    ASSERT_ERR(2, "'Host' is not ARG=VALUE");
    PARSE_BAD("operate", "Device.Reboot()", "=x");
    ASSERT_ERR(2, "'=x': no argument name before '='");
    PARSE_BAD("operate", "Device.Reboot()", "A=1", "B=2", "A=3");
    ASSERT_ERR(4, "input argument 'A' is given twice");
    PARSE_BAD("operate", "Device.Reboot()", "--key");
    ASSERT_ERR(2, "option --key needs a value K");
    PARSE_BAD("operate");
    ASSERT_ERR(-1, "expected CMDPATH [ARG=VALUE...]");
}

/* ---- instances, gsdm ---- */

static void test_instances(void)
{
    Usp__Msg *m = PARSE_OK("instances", "Device.WiFi.SSID.");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__GET_INSTANCES);
    Usp__GetInstances *g = req_of(m, USP__REQUEST__REQ_TYPE_GET_INSTANCES)->get_instances;
    CU_ASSERT_EQUAL_FATAL(g->n_obj_paths, 1);
    CU_ASSERT_STRING_EQUAL(g->obj_paths[0], "Device.WiFi.SSID.");
    CU_ASSERT_FALSE(g->first_level_only);
    m = PARSE_OK("get-instances", "--first-level", "Device.A.", "Device.B.");
    CU_ASSERT_TRUE(m->body->request->get_instances->first_level_only);
    CU_ASSERT_EQUAL(m->body->request->get_instances->n_obj_paths, 2);
    PARSE_BAD("instances", "Device.A");
    ASSERT_ERR(1, "must end in '.'");
    CU_ASSERT_STRING_EQUAL(err.cmd, "instances");
}

static void test_gsdm(void)
{
    Usp__Msg *m = PARSE_OK("gsdm", "Device.WiFi.SSID.{i}.");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM);
    Usp__GetSupportedDM *g = req_of(m, USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM)->get_supported_dm;
    CU_ASSERT_STRING_EQUAL(g->obj_paths[0], "Device.WiFi.SSID.{i}.");
    CU_ASSERT_FALSE(g->first_level_only);
    CU_ASSERT_TRUE(g->return_params);
    CU_ASSERT_TRUE(g->return_commands);
    CU_ASSERT_TRUE(g->return_events);
    CU_ASSERT_FALSE(g->return_unique_key_sets);

    m = PARSE_OK("get-supported-dm", "--first-level", "--no-params", "--no-commands", "--no-events",
                 "--unique-keys", "Device.");
    g = m->body->request->get_supported_dm;
    CU_ASSERT_TRUE(g->first_level_only);
    CU_ASSERT_FALSE(g->return_params);
    CU_ASSERT_FALSE(g->return_commands);
    CU_ASSERT_FALSE(g->return_events);
    CU_ASSERT_TRUE(g->return_unique_key_sets);

    m = PARSE_OK("gsdm", "--no-events", "Device.");
    g = m->body->request->get_supported_dm;
    CU_ASSERT_TRUE(g->return_params);
    CU_ASSERT_TRUE(g->return_commands);
    CU_ASSERT_FALSE(g->return_events);

    PARSE_BAD("gsdm", "--no-param", "Device.");
    ASSERT_ERR(1, "unknown option '--no-param'");
    PARSE_BAD("gsdm");
    ASSERT_ERR(-1, "missing arguments");
}

/* ---- gsp, notify-resp ---- */

static void test_gsp(void)
{
    Usp__Msg *m = PARSE_OK("gsp");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO);
    Usp__GetSupportedProtocol *g =
        req_of(m, USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL)->get_supported_protocol;
    CU_ASSERT_STRING_EQUAL(g->controller_supported_protocol_versions, USP_VERSIONS_SUPPORTED);
    m = PARSE_OK("get-supported-protocol", "1.3,1.4");
    CU_ASSERT_STRING_EQUAL(
        m->body->request->get_supported_protocol->controller_supported_protocol_versions,
        "1.3,1.4");
    PARSE_BAD("gsp", "1.x");
    ASSERT_ERR(1, "VERSIONS: '1.x' is not a version Major.Minor");
    PARSE_BAD("gsp", "1.3,,1.4");
    ASSERT_ERR(1, "VERSIONS '1.3,,1.4' has an empty item");
    PARSE_BAD("gsp", "1.3,");
    ASSERT_ERR(1, "has an empty item");
    PARSE_BAD("gsp", "1.3", "1.4");
    ASSERT_ERR(2, "unexpected argument '1.4'");
}

static void test_notify_resp(void)
{
    Usp__Msg *m = PARSE_OK("notify-resp", "sub-1");
    CU_ASSERT_EQUAL(m->header->msg_type, USP__HEADER__MSG_TYPE__NOTIFY_RESP);
    CU_ASSERT_EQUAL_FATAL(m->body->msg_body_case, USP__BODY__MSG_BODY_RESPONSE);
    CU_ASSERT_EQUAL_FATAL(m->body->response->resp_type_case, USP__RESPONSE__RESP_TYPE_NOTIFY_RESP);
    CU_ASSERT_STRING_EQUAL(m->body->response->notify_resp->subscription_id, "sub-1");
    /* An OnBoardRequest is acknowledged with an empty subscription_id. */
    m = PARSE_OK("notify-resp", "");
    CU_ASSERT_STRING_EQUAL(m->body->response->notify_resp->subscription_id, "");
    m = PARSE_OK("notify-resp", "--", "-7");
    CU_ASSERT_STRING_EQUAL(m->body->response->notify_resp->subscription_id, "-7");
    PARSE_BAD("notify-resp");
    ASSERT_ERR(-1, "expected SUBID");
    PARSE_BAD("notify-resp", "a", "b");
    ASSERT_ERR(2, "unexpected argument 'b'");
    PARSE_BAD("notify-resp", "-7");
    ASSERT_ERR(1, "unknown option '-7' (use -- before a word that starts with '-')");
}

/* ---- general ---- */

static void test_general(void)
{
    Usp__Msg *msg = (Usp__Msg *)1;
    char *argv[] = {"get", "Device.", NULL};
    setup();
    CU_ASSERT_EQUAL(usp_req_parse(arena, 2, argv, "", &msg, &err), USP_EINVAL);
    CU_ASSERT_PTR_NULL(msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "msg_id must not be empty"));
    CU_ASSERT_EQUAL(usp_req_parse(arena, 2, argv, NULL, &msg, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_req_parse(arena, 0, argv, "x", &msg, &err), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no request given"));
    CU_ASSERT_PTR_NULL(err.cmd);
    /* err may be NULL. */
    CU_ASSERT_EQUAL(usp_req_parse(arena, 1, argv, "x", &msg, NULL), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_req_parse(arena, 2, argv, "x", &msg, NULL), 0);

    PARSE_BAD("fetch", "Device.");
    ASSERT_ERR(0, "unknown request 'fetch' (requests: get, set, add, delete, operate, instances, "
                  "gsdm, gsp, notify-resp)");
    CU_ASSERT_PTR_NULL(err.cmd);
    PARSE_BAD("GET", "Device.");
    ASSERT_ERR(0, "unknown request 'GET'");
    /* Control bytes in words are shown escaped. */
    PARSE_BAD("g\x1b[2J", "Device.");
    ASSERT_ERR(0, "unknown request 'g\\x1b[2J'");
    /* Long words are shortened. */
    PARSE_BAD("get", "--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CU_ASSERT(strlen(err.msg) < 80);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "..."));
}

static void test_words_copied(void)
{
    char p[] = "Device.A.";
    char *argv[] = {"get", p, NULL};
    Usp__Msg *msg;
    setup();
    CU_ASSERT_EQUAL_FATAL(usp_req_parse(arena, 2, argv, "x", &msg, &err), 0);
    p[0] = 'X';
    CU_ASSERT_STRING_EQUAL(msg->body->request->get->param_paths[0], "Device.A.");
    CU_ASSERT_STRING_EQUAL(msg->header->msg_id, "x");
}

static void test_options_anywhere(void)
{
    /* Options may follow positional words; "--" ends them. */
    Usp__Msg *m = PARSE_OK("delete", "Device.A.1.", "--allow-partial", "--", "Device.B.1.");
    CU_ASSERT_TRUE(m->body->request->delete_->allow_partial);
    CU_ASSERT_EQUAL(m->body->request->delete_->n_obj_paths, 2);
    PARSE_BAD("delete", "--", "--allow-partial");
    ASSERT_ERR(2, "OBJPATH '--allow-partial' must end in '.'");
    /* A lone "-" is a word, not an option. */
    Usp__Msg *m2 = PARSE_OK("get", "-", "--");
    CU_ASSERT_EQUAL_FATAL(m2->body->request->get->n_param_paths, 1);
    CU_ASSERT_STRING_EQUAL(m2->body->request->get->param_paths[0], "-");
}

/* ---- lines ---- */

static int split(const char *line, int *argc, char ***argv)
{
    setup();
    return usp_req_split(arena, line, argc, argv, &err);
}

static void test_split(void)
{
    int argc;
    char **argv;
    CU_ASSERT_EQUAL_FATAL(
        split("  get\tDevice.A.  'x y' \"a \\\"b\\\" \\\\ \\n\" c\\ d \"\" '' ", &argc, &argv), 0);
    CU_ASSERT_EQUAL_FATAL(argc, 7);
    CU_ASSERT_STRING_EQUAL(argv[0], "get");
    CU_ASSERT_STRING_EQUAL(argv[1], "Device.A.");
    CU_ASSERT_STRING_EQUAL(argv[2], "x y");
    CU_ASSERT_STRING_EQUAL(argv[3], "a \"b\" \\ \\n");
    CU_ASSERT_STRING_EQUAL(argv[4], "c d");
    CU_ASSERT_STRING_EQUAL(argv[5], "");
    CU_ASSERT_STRING_EQUAL(argv[6], "");
    CU_ASSERT_PTR_NULL(argv[7]);

    CU_ASSERT_EQUAL_FATAL(split("set X.'a b'\"c\"d # a comment 'unclosed", &argc, &argv), 0);
    CU_ASSERT_EQUAL_FATAL(argc, 2);
    CU_ASSERT_STRING_EQUAL(argv[1], "X.a bcd");

    CU_ASSERT_EQUAL_FATAL(split("get Dev\\\nice. \\\n Device.B. a#b", &argc, &argv), 0);
    CU_ASSERT_EQUAL_FATAL(argc, 4);
    CU_ASSERT_STRING_EQUAL(argv[1], "Device.");
    CU_ASSERT_STRING_EQUAL(argv[2], "Device.B.");
    CU_ASSERT_STRING_EQUAL(argv[3], "a#b");

    CU_ASSERT_EQUAL(split("", &argc, &argv), 0);
    CU_ASSERT_EQUAL(argc, 0);
    CU_ASSERT_EQUAL(split("   # only a comment", &argc, &argv), 0);
    CU_ASSERT_EQUAL(argc, 0);
    CU_ASSERT_PTR_NULL(argv[0]);
}

static void test_split_bad(void)
{
    int argc;
    char **argv;
    CU_ASSERT_EQUAL(split("get 'Device.", &argc, &argv), USP_EINVAL);
    CU_ASSERT_EQUAL(err.column, 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unterminated single quote at column 5"));
    CU_ASSERT_EQUAL(split("get a\"b", &argc, &argv), USP_EINVAL);
    CU_ASSERT_EQUAL(err.column, 5);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unterminated double quote"));
    CU_ASSERT_EQUAL(split("get \"a\\\"", &argc, &argv), USP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unterminated double quote"));
    CU_ASSERT_EQUAL(split("get a\\", &argc, &argv), USP_EINVAL);
    CU_ASSERT_EQUAL(err.column, 5);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unfinished escape"));
    CU_ASSERT_EQUAL(usp_req_split(arena, "'", &argc, &argv, NULL), USP_EINVAL);
}

static void test_parse_line(void)
{
    Usp__Msg *msg;
    setup();
    CU_ASSERT_EQUAL_FATAL(usp_req_parse_line(arena,
                                             "set 'Device.X.[Name==\"a b\"].' \"Alias:=my "
                                             "alias\"",
                                             "m1", &msg, &err),
                          0);
    Usp__Set *s = msg->body->request->set;
    CU_ASSERT_STRING_EQUAL(s->update_objs[0]->obj_path, "Device.X.[Name==\"a b\"].");
    CU_ASSERT_STRING_EQUAL(s->update_objs[0]->param_settings[0]->value, "my alias");
    CU_ASSERT_TRUE(s->update_objs[0]->param_settings[0]->required);
    CU_ASSERT_STRING_EQUAL(msg->header->msg_id, "m1");

    /* Errors point at the word at fault. */
    CU_ASSERT_EQUAL(usp_req_parse_line(arena, "get  --max-depth  x Device.", "m1", &msg, &err),
                    USP_EINVAL);
    CU_ASSERT_PTR_NULL(msg);
    CU_ASSERT_EQUAL(err.word, 2); /* the value at fault */
    CU_ASSERT_EQUAL(err.column, 18);
    CU_ASSERT_STRING_EQUAL(err.cmd, "get");
    CU_ASSERT_EQUAL(usp_req_parse_line(arena, "  operate Device.Reboot() x", "m1", &msg, &err),
                    USP_EINVAL);
    CU_ASSERT_EQUAL(err.column, 26);
    CU_ASSERT_EQUAL(usp_req_parse_line(arena, "get", "m1", &msg, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.column, -1);
    CU_ASSERT_EQUAL(usp_req_parse_line(arena, "get 'x", "m1", &msg, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.column, 4);
    /* Nothing to do. */
    CU_ASSERT_EQUAL(usp_req_parse_line(arena, " \t", "m1", &msg, &err), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_req_parse_line(arena, "# get Device.", "m1", &msg, NULL), USP_ENOENT);
    CU_ASSERT_PTR_NULL(msg);
}

/* ---- usage ---- */

static char *usage_of(const char *cmd, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    *rc = usp_req_usage(f, cmd);
    fclose(f);
    return text;
}

static void test_usage(void)
{
    static const struct {
        const char *cmd, *synopsis;
    } want[] = {
        {"get", "get [--max-depth N] PATH..."},
        {"set", "set [--allow-partial] [--required] [OBJPATH] SETTING..."},
        {"add", "add [--allow-partial] [--required] OBJPATH [SETTING...]"},
        {"delete", "delete [--allow-partial] OBJPATH..."},
        {"operate", "operate [--no-resp] [--key K] CMDPATH [ARG=VALUE...]"},
        {"instances", "instances [--first-level] OBJPATH..."},
        {"gsdm", "gsdm [--first-level] [--no-params] [--no-commands] [--no-events] "
                 "[--unique-keys] OBJPATH..."},
        {"get-supported-dm", "gsdm [--first-level]"},
        {"gsp", "gsp [VERSIONS]"},
        {"notify-resp", "notify-resp SUBID"},
    };
    int rc;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *t = usage_of(want[i].cmd, &rc);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(t, want[i].synopsis));
        if (!strstr(t, want[i].synopsis))
            fprintf(stderr, "\n  usage of %s:\n%s", want[i].cmd, t);
        free(t);
    }
    char *t = usage_of("set", &rc);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "PARAM:=VALUE to mark a setting required"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "--allow-partial"));
    free(t);
    t = usage_of("get", &rc);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "(default 0)"));
    free(t);

    t = usage_of("nope", &rc);
    CU_ASSERT_EQUAL(rc, USP_ENOENT);
    CU_ASSERT_STRING_EQUAL(t, "");
    free(t);

    t = usage_of(NULL, &rc);
    CU_ASSERT_EQUAL(rc, 0);
    size_t n = 0;
    for (const char *name; (name = usp_req_command_name(n)); n++)
        CU_ASSERT_PTR_NOT_NULL(strstr(t, name));
    CU_ASSERT_EQUAL(n, 9);
    CU_ASSERT_STRING_EQUAL(usp_req_command_name(0), "get");
    CU_ASSERT_PTR_NULL(usp_req_command_name(1000));
    free(t);
}

void suite_reqlang(void)
{
    USP_SUITE("reqlang", USP_TEST(test_get), USP_TEST(test_get_max_depth), USP_TEST(test_get_bad),
              USP_TEST(test_set), USP_TEST(test_set_options), USP_TEST(test_set_search_path),
              USP_TEST(test_set_bad), USP_TEST(test_add), USP_TEST(test_add_options),
              USP_TEST(test_delete), USP_TEST(test_operate), USP_TEST(test_operate_bad),
              USP_TEST(test_instances), USP_TEST(test_gsdm), USP_TEST(test_gsp),
              USP_TEST(test_notify_resp), USP_TEST(test_general), USP_TEST(test_words_copied),
              USP_TEST(test_options_anywhere), USP_TEST(test_split), USP_TEST(test_split_bad),
              USP_TEST(test_parse_line), USP_TEST(test_usage));
}
