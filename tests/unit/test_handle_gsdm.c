/* GetSupportedDM on the agent: supported and instantiated paths, the
 * return_* flags, first_level_only, value types, access mapping, argument
 * names, unique key sets, the data model URI, errors (7008, 7016, 7026)
 * and permissions. */
#include <string.h>

#include "test_handle.h"

typedef Usp__GetSupportedDMResp__RequestedObjectResult ReqRes;
typedef Usp__GetSupportedDMResp__SupportedObjectResult SupObj;
typedef Usp__GetSupportedDMResp__SupportedParamResult SupParam;
typedef Usp__GetSupportedDMResp__SupportedCommandResult SupCmd;

enum { P = 1, C = 2, E = 4, K = 8, FIRST = 16 };

static ReqRes *gsdm(const char *path, unsigned flags)
{
    Usp__GetSupportedDM *g = usp_arena_zalloc(H.a, sizeof *g);
    usp__get_supported_dm__init(g);
    g->n_obj_paths = 1;
    g->obj_paths = usp_arena_alloc(H.a, sizeof(char *));
    g->obj_paths[0] = usp_arena_strdup(H.a, path);
    g->return_params = flags & P;
    g->return_commands = (flags & C) != 0;
    g->return_events = (flags & E) != 0;
    g->return_unique_key_sets = (flags & K) != 0;
    g->first_level_only = (flags & FIRST) != 0;
    Usp__Msg *m = hfix_handle(hfix_request(USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM, g));
    Usp__Response *r = hfix_response(m, USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM_RESP);
    CU_ASSERT_EQUAL_FATAL(r->get_supported_dm_resp->n_req_obj_results, 1);
    ReqRes *rr = r->get_supported_dm_resp->req_obj_results[0];
    CU_ASSERT_STRING_EQUAL(rr->req_obj_path, path);
    return rr;
}

static SupObj *obj(ReqRes *r, const char *path)
{
    for (size_t i = 0; i < r->n_supported_objs; i++)
        if (!strcmp(r->supported_objs[i]->supported_obj_path, path))
            return r->supported_objs[i];
    return NULL;
}

static SupParam *sparam(SupObj *o, const char *name)
{
    for (size_t i = 0; o && i < o->n_supported_params; i++)
        if (!strcmp(o->supported_params[i]->param_name, name))
            return o->supported_params[i];
    return NULL;
}

static SupCmd *scmd(SupObj *o, const char *name)
{
    for (size_t i = 0; o && i < o->n_supported_commands; i++)
        if (!strcmp(o->supported_commands[i]->command_name, name))
            return o->supported_commands[i];
    return NULL;
}

static bool has(char **list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

static void test_gsdm_table_full(void)
{
    hfix_setup(false);
    /* The final "{i}." may be left out. */
    ReqRes *r = gsdm("Device.LocalAgent.Request.", P | C | E | K);
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_STRING_EQUAL(r->data_model_inst_uri, "urn:broadband-forum-org:tr-181-2-19-1");
    CU_ASSERT_EQUAL_FATAL(r->n_supported_objs, 1);
    SupObj *o = r->supported_objs[0];
    CU_ASSERT_STRING_EQUAL(o->supported_obj_path, "Device.LocalAgent.Request.{i}.");
    CU_ASSERT_TRUE(o->is_multi_instance);
    CU_ASSERT_EQUAL(o->access, USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_READ_ONLY);
    SupParam *alias = sparam(o, "Alias");
    CU_ASSERT_FATAL(alias != NULL);
    /* writeOnceReadOnly is reported as PARAM_READ_WRITE. */
    CU_ASSERT_EQUAL(alias->access, USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_WRITE);
    CU_ASSERT_EQUAL(alias->value_type, USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_STRING);
    CU_ASSERT_EQUAL(sparam(o, "Status")->access,
                    USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_ONLY);
    CU_ASSERT_EQUAL(o->n_supported_params, 5);
    SupCmd *cancel = scmd(o, "Cancel()");
    CU_ASSERT_FATAL(cancel != NULL);
    CU_ASSERT_EQUAL(cancel->command_type, USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_SYNC);
    CU_ASSERT_EQUAL(cancel->n_input_arg_names, 0);
    CU_ASSERT_EQUAL(o->n_supported_events, 0);
    CU_ASSERT_EQUAL_FATAL(o->n_unique_key_sets, 2);
    bool three = false, alias_only = false;
    for (size_t i = 0; i < 2; i++) {
        Usp__GetSupportedDMResp__SupportedUniqueKeySet *k = o->unique_key_sets[i];
        if (k->n_key_names == 3)
            three = has(k->key_names, 3, "Originator") && has(k->key_names, 3, "Command") &&
                    has(k->key_names, 3, "CommandKey");
        if (k->n_key_names == 1)
            alias_only = !strcmp(k->key_names[0], "Alias");
    }
    CU_ASSERT_TRUE(three && alias_only);
    /* Without the flags, only the object facts. */
    r = gsdm("Device.LocalAgent.Request.{i}.", 0);
    o = r->supported_objs[0];
    CU_ASSERT_EQUAL(o->n_supported_params + o->n_supported_commands + o->n_unique_key_sets, 0);
    hfix_teardown();
}

static void test_gsdm_first_level_commands_events(void)
{
    hfix_setup(false);
    ReqRes *r = gsdm("Device.", P | C | E | K | FIRST);
    CU_ASSERT_EQUAL(r->err_code, 0);
    SupObj *dev = obj(r, "Device.");
    CU_ASSERT_FATAL(dev != NULL);
    CU_ASSERT_PTR_NOT_NULL(sparam(dev, "RootDataModelVersion"));
    SupCmd *reboot = scmd(dev, "Reboot()"), *st = scmd(dev, "SelfTestDiagnostics()");
    SupCmd *timer = scmd(dev, "ScheduleTimer()");
    CU_ASSERT_FATAL(reboot && st && timer);
    CU_ASSERT_EQUAL(reboot->command_type, USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_SYNC);
    CU_ASSERT_TRUE(has(reboot->input_arg_names, reboot->n_input_arg_names, "Cause"));
    CU_ASSERT_TRUE(has(reboot->input_arg_names, reboot->n_input_arg_names, "Reason"));
    CU_ASSERT_EQUAL(st->command_type, USP__GET_SUPPORTED_DMRESP__CMD_TYPE__CMD_ASYNC);
    CU_ASSERT_TRUE(has(st->output_arg_names, st->n_output_arg_names, "Status"));
    CU_ASSERT_TRUE(has(st->output_arg_names, st->n_output_arg_names, "Results"));
    CU_ASSERT_TRUE(has(timer->input_arg_names, timer->n_input_arg_names, "DelaySeconds"));
    CU_ASSERT_EQUAL_FATAL(dev->n_supported_events, 1);
    Usp__GetSupportedDMResp__SupportedEventResult *boot = dev->supported_events[0];
    CU_ASSERT_STRING_EQUAL(boot->event_name, "Boot!");
    CU_ASSERT_EQUAL(boot->n_arg_names, 5);
    CU_ASSERT_TRUE(has(boot->arg_names, boot->n_arg_names, "ParameterMap"));
    /* The children: listed, without parameters, commands or events; unique
     * key sets only for tables. */
    SupObj *la = obj(r, "Device.LocalAgent.");
    CU_ASSERT_FATAL(la != NULL);
    CU_ASSERT_EQUAL(la->n_supported_params + la->n_supported_commands + la->n_supported_events, 0);
    CU_ASSERT_PTR_NOT_NULL(obj(r, "Device.IP."));
    CU_ASSERT_PTR_NULL(obj(r, "Device.IP.Interface.{i}."));
    CU_ASSERT_PTR_NULL(obj(r, "Device.LocalAgent.Request.{i}."));

    /* Nested argument objects flatten to relative names in {i} notation. */
    r = gsdm("Device.SoftwareModules.", C | FIRST);
    SupCmd *du = scmd(obj(r, "Device.SoftwareModules."), "InstallDU()");
    CU_ASSERT_FATAL(du != NULL);
    CU_ASSERT_TRUE(has(du->input_arg_names, du->n_input_arg_names, "URL"));
    CU_ASSERT_TRUE(has(du->input_arg_names, du->n_input_arg_names, "AutoRestart.Enable"));
    CU_ASSERT_TRUE(has(du->input_arg_names, du->n_input_arg_names, "ApplicationData.{i}.Name"));
    hfix_teardown();
}

static void test_gsdm_value_types_and_access(void)
{
    hfix_setup(false);
    SupObj *di = obj(gsdm("Device.DeviceInfo.", P | FIRST), "Device.DeviceInfo.");
    CU_ASSERT_FATAL(di != NULL);
    SupParam *up = sparam(di, "UpTime"), *fn = sparam(di, "FriendlyName");
    CU_ASSERT_FATAL(up && fn);
    CU_ASSERT_EQUAL(up->value_type,
                    USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_UNSIGNED_INT);
    CU_ASSERT_EQUAL(up->value_change,
                    USP__GET_SUPPORTED_DMRESP__VALUE_CHANGE_TYPE__VALUE_CHANGE_WILL_IGNORE);
    CU_ASSERT_EQUAL(up->access, USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_ONLY);
    CU_ASSERT_EQUAL(fn->value_change,
                    USP__GET_SUPPORTED_DMRESP__VALUE_CHANGE_TYPE__VALUE_CHANGE_ALLOWED);
    CU_ASSERT_EQUAL(fn->access, USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_WRITE);
    SupObj *sub = gsdm("Device.LocalAgent.Subscription.{i}.", P)->supported_objs[0];
    CU_ASSERT_EQUAL(sparam(sub, "Enable")->value_type,
                    USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_BOOLEAN);
    CU_ASSERT_EQUAL(sparam(sub, "CreationDate")->value_type,
                    USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_DATE_TIME);
    CU_ASSERT_EQUAL(sparam(sub, "ReferenceList")->value_type,
                    USP__GET_SUPPORTED_DMRESP__PARAM_VALUE_TYPE__PARAM_STRING);
    CU_ASSERT_EQUAL(sub->access, USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_DELETE);

    /* The whole subtree, without details. */
    ReqRes *r = gsdm("Device.WiFi.", 0);
    CU_ASSERT_PTR_NOT_NULL(obj(r, "Device.WiFi."));
    CU_ASSERT_PTR_NOT_NULL(obj(r, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.Stats."));
    SupObj *ap = obj(r, "Device.WiFi.AccessPoint.{i}.");
    CU_ASSERT_FATAL(ap != NULL);
    CU_ASSERT_EQUAL(ap->access, USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_DELETE);
    CU_ASSERT_EQUAL(obj(r, "Device.WiFi.Radio.{i}.")->access,
                    USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_READ_ONLY);
    for (size_t i = 0; i < r->n_supported_objs; i++) {
        CU_ASSERT_EQUAL(r->supported_objs[i]->n_supported_params, 0);
        CU_ASSERT_EQUAL(r->supported_objs[i]->n_divergent_paths, 0);
    }
    hfix_teardown();
}

static void test_gsdm_paths_and_errors(void)
{
    hfix_setup(false);
    ReqRes *r = gsdm("Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.", 0);
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_PTR_NOT_NULL(obj(r, "Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}."));
    /* An instantiated path of an existing object. */
    r = gsdm("Device.IP.Interface.1.IPv4Address.", 0);
    CU_ASSERT_EQUAL(r->err_code, 0);
    CU_ASSERT_EQUAL(r->n_supported_objs, 1);
    CU_ASSERT_PTR_NOT_NULL(obj(r, "Device.IP.Interface.{i}.IPv4Address.{i}."));
    CU_ASSERT_EQUAL(gsdm("Device.IP.Interface.9.", 0)->err_code, USP_ERR_OBJECT_DOES_NOT_EXIST);
    CU_ASSERT_EQUAL(gsdm("Device.WiFi.AccessPoint.{i}.AssociatedDevice.3.", 0)->err_code,
                    USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(gsdm("Device.WiFi.AccessPoint.AssociatedDevice.", 0)->err_code,
                    USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(gsdm("Device.Nope.", 0)->err_code, USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(gsdm("Device.IP.Interface.*.", 0)->err_code, USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(gsdm("Device.DeviceInfo.Nope", 0)->err_code, USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(gsdm("Device.DeviceInfo", 0)->err_code, USP_ERR_INVALID_PATH);
    r = gsdm("Device..", 0);
    CU_ASSERT_EQUAL(r->err_code, USP_ERR_INVALID_PATH_SYNTAX);
    CU_ASSERT(r->err_msg[0] != '\0');
    CU_ASSERT_EQUAL(r->n_supported_objs, 0);

    /* A parameter, command or event path: its object with just that item. */
    r = gsdm("Device.DeviceInfo.UpTime", 0);
    CU_ASSERT_EQUAL_FATAL(r->n_supported_objs, 1);
    CU_ASSERT_STRING_EQUAL(r->supported_objs[0]->supported_obj_path, "Device.DeviceInfo.");
    CU_ASSERT_EQUAL_FATAL(r->supported_objs[0]->n_supported_params, 1);
    CU_ASSERT_STRING_EQUAL(r->supported_objs[0]->supported_params[0]->param_name, "UpTime");
    r = gsdm("Device.Reboot()", 0);
    CU_ASSERT_EQUAL_FATAL(r->supported_objs[0]->n_supported_commands, 1);
    CU_ASSERT_EQUAL(r->supported_objs[0]->n_supported_events, 0);
    r = gsdm("Device.Boot!", 0);
    CU_ASSERT_EQUAL_FATAL(r->supported_objs[0]->n_supported_events, 1);
    CU_ASSERT_EQUAL(r->supported_objs[0]->n_supported_commands, 0);
    hfix_teardown();
}

static void test_gsdm_permissions(void)
{
    hfix_setup(false);
    hfix_deny("Device.DeviceInfo.UpTime", USP_PERM_READ);
    hfix_deny("Device.DeviceInfo.FriendlyName", USP_PERM_WRITE);
    hfix_deny("Device.WiFi.", USP_PERM_READ);
    hfix_deny("Device.IP.Interface.{i}.", USP_PERM_ADD);
    hfix_deny("Device.Users.User.{i}.", USP_PERM_ADD | USP_PERM_DELETE);
    hfix_deny("Device.DNS.Client.Server.{i}.", USP_PERM_DELETE);
    SupObj *di = gsdm("Device.DeviceInfo.", P)->supported_objs[0];
    CU_ASSERT_PTR_NULL(sparam(di, "UpTime"));
    CU_ASSERT_EQUAL(sparam(di, "FriendlyName")->access,
                    USP__GET_SUPPORTED_DMRESP__PARAM_ACCESS_TYPE__PARAM_READ_ONLY);
    CU_ASSERT_EQUAL(gsdm("Device.WiFi.", 0)->err_code, USP_ERR_INVALID_PATH);
    CU_ASSERT_EQUAL(gsdm("Device.DeviceInfo.UpTime", 0)->err_code, USP_ERR_INVALID_PATH);
    CU_ASSERT_PTR_NULL(obj(gsdm("Device.", 0), "Device.WiFi.Radio.{i}."));
    CU_ASSERT_EQUAL(gsdm("Device.IP.Interface.", 0)->supported_objs[0]->access,
                    USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_DELETE_ONLY);
    CU_ASSERT_EQUAL(gsdm("Device.Users.User.", 0)->supported_objs[0]->access,
                    USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_READ_ONLY);
    CU_ASSERT_EQUAL(gsdm("Device.DNS.Client.Server.", 0)->supported_objs[0]->access,
                    USP__GET_SUPPORTED_DMRESP__OBJ_ACCESS_TYPE__OBJ_ADD_ONLY);
    hfix_teardown();
}

void suite_handle_gsdm(void)
{
    USP_SUITE("handle_gsdm", USP_TEST(test_gsdm_table_full),
              USP_TEST(test_gsdm_first_level_commands_events),
              USP_TEST(test_gsdm_value_types_and_access), USP_TEST(test_gsdm_paths_and_errors),
              USP_TEST(test_gsdm_permissions));
}
