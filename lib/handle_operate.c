/* Operate (TR-369 "The Operate Message" and "Defined Operations
 * Mechanism"): runs commands, synchronous or asynchronous, on every object
 * the command path matches.
 *
 * - Path problems (7008, 7026, 7016 on a path that is not a search) fail
 *   the whole message with an Error; a search matching nothing gives an
 *   empty OperateResp (R-MSG.4a). Every failure of one object's command is
 *   a cmd_failure in its OperationResult, never an Error (R-OPR.1).
 * - Input arguments: a missing mandatory one, or a known one whose value
 *   fails its type, is cmd_failure 7027 (R-OPR.5); unknown ones are ignored
 *   (R-OPR.6); missing optional ones take their default (R-OPR.7).
 *   A mandatory argument inside an argument object ("AutoRestart.Enable",
 *   "ApplicationData.{i}.Name") is required for each instance of that
 *   object the controller gives; an object left out is not asked for.
 * - An asynchronous command gets one Device.LocalAgent.Request.{i} row per
 *   matched object (R-OPR.2) with Originator, Command, CommandKey, Status
 *   "Active" and an agent-assigned Alias; the result carries req_obj_path.
 *   When it completes (env->schedule), OperationComplete goes out
 *   (USP_EV_OPER_COMPLETE) and the row is deleted with its ObjectDeletion
 *   (R-OPR.0). OperationComplete is for asynchronous commands only, as the
 *   specification defines it.
 * - send_resp=false: no OperateResp unless something failed, in which case
 *   the OperateResp holds just the failures (R-OPR.4 allows it); Errors are
 *   still sent.
 * - Behaviours: Device.Reboot() and Device.FactoryReset() ask the fleet to
 *   restart the agent (USP_EV_REBOOT / USP_EV_FACTORY_RESET with Cause
 *   RemoteReboot / RemoteFactoryReset unless the input gives one);
 *   Device.SelfTestDiagnostics() completes with Status "Complete" and
 *   Results ""; Device.ScheduleTimer() completes after DelaySeconds;
 *   Device.LocalAgent.Request.{i}.Cancel() completes that request with
 *   7023 and removes it; Device.LocalAgent.Controller.{i}.
 *   SendOnBoardRequest() (Enable=true controllers only, else 7022) sets
 *   OnBoardingComplete to false and raises USP_EV_ONBOARD_REQUEST (R-NOT.5).
 *   Every command also follows the profile's `command` line when there is
 *   one: result=fail fails it with the code and message given (codes the
 *   message does not allow become 7022), out.NAME values are its outputs,
 *   delay= is how long an asynchronous one runs. Without a line a command
 *   succeeds at once with no outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handle_int.h"

typedef Usp__OperateResp__OperationResult OpRes;
typedef Usp__OperateResp__OperationResult__OutputArgs OutArgs;
typedef Usp__OperateResp__OperationResult__OutputArgs__OutputArgsEntry OutEntry;
typedef Usp__OperateResp__OperationResult__CommandFailure CmdFailure;

#define REQUEST_TABLE "Device.LocalAgent.Request.{i}."

enum behaviour {
    B_PROFILE,
    B_REBOOT,
    B_FACTORY_RESET,
    B_SELF_TEST,
    B_TIMER,
    B_CANCEL,
    B_ONBOARD,
};

static enum behaviour behaviour_of(const struct usp_dm_command *cmd)
{
    static const struct {
        const char *obj, *name;
        enum behaviour b;
    } table[] = {
        {"Device.", "Reboot()", B_REBOOT},
        {"Device.", "FactoryReset()", B_FACTORY_RESET},
        {"Device.", "SelfTestDiagnostics()", B_SELF_TEST},
        {"Device.", "ScheduleTimer()", B_TIMER},
        {REQUEST_TABLE, "Cancel()", B_CANCEL},
        {"Device.LocalAgent.Controller.{i}.", "SendOnBoardRequest()", B_ONBOARD},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(cmd->parent->path, table[i].obj) && !strcmp(cmd->name, table[i].name))
            return table[i].b;
    return B_PROFILE;
}

/* The outcome of one command run. */
struct outcome {
    uint32_t code; /* 0: success */
    char msg[1024];
    struct hkeys out;
};

static int out_add(struct usp_arena *a, struct hkeys *o, const char *name, const char *value)
{
    for (uint32_t i = 0; i < o->n; i++) {
        if (!strcmp(o->kv[i].key, name)) {
            o->kv[i].value = usp_arena_strdup(a, value);
            return o->kv[i].value ? 0 : USP_ENOMEM;
        }
    }
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 4;
        struct usp_kv *nv = usp_arena_realloc(a, o->kv, o->cap * sizeof *nv, cap * sizeof *nv);
        if (!nv)
            return USP_ENOMEM;
        o->kv = nv;
        o->cap = cap;
    }
    o->kv[o->n].key = usp_arena_strdup(a, name);
    o->kv[o->n].value = usp_arena_strdup(a, value);
    if (!o->kv[o->n].key || !o->kv[o->n].value)
        return USP_ENOMEM;
    o->n++;
    return 0;
}

static const struct usp_profile_cmd *profile_cmd(const struct usp_dm_agent *agent,
                                                 const struct usp_dm_inst *o,
                                                 const struct usp_dm_command *cmd)
{
    const struct usp_profile *prof = usp_dm_model_profile(agent->model);
    if (!prof)
        return NULL;
    char spath[1024];
    unsigned inst[USP_DM_MAX_LEVELS];
    snprintf(spath, sizeof spath, "%s%s", cmd->parent->path, cmd->name);
    for (uint32_t i = 0; i < o->n; i++)
        inst[i] = o->inst[i];
    return usp_profile_find_cmd(prof, spath, inst, o->n);
}

/* OperationComplete's CommandFailure allows 7002-7008, 7016, 7022, 7023
 * and the vendor range; OperateResp's the Operate list. */
static uint32_t failure_code(uint32_t code, bool async)
{
    bool ok;
    if (async)
        ok = (code >= 7002 && code <= 7008) || code == 7016 || code == 7022 || code == 7023 ||
             (code >= 7800 && code <= 7999);
    else
        ok = code != 7023 && handle__code_allowed(USP__HEADER__MSG_TYPE__OPERATE, code);
    return ok ? code : USP_ERR_COMMAND_FAILURE;
}

/* Applies the profile's line: failure, or outputs added to `oc`. */
static int apply_profile(struct usp_arena *a, const struct usp_dm_agent *agent, int64_t now,
                         const struct usp_dm_inst *o, const struct usp_profile_cmd *pc, bool async,
                         struct outcome *oc)
{
    if (!pc)
        return 0;
    if (pc->fail) {
        oc->code = failure_code(pc->err_code, async);
        snprintf(oc->msg, sizeof oc->msg, "%s", pc->err_msg ? pc->err_msg : "Command failure");
        return 0;
    }
    struct usp_gen_ctx g = {
        .agent = agent->index,
        .eid = agent->eid,
        .boot_sec = agent->boot_sec,
        .now_sec = now,
    };
    unsigned inst[USP_DM_MAX_LEVELS];
    for (uint32_t i = 0; i < o->n; i++)
        inst[i] = o->inst[i];
    char *buf = usp_arena_alloc(a, USP_DM_VALUE_MAX + 1);
    if (!buf)
        return USP_ENOMEM;
    for (unsigned i = 0; i < pc->nout; i++) {
        int rc = usp_gen_eval(pc->out[i].gen, &g, inst, o->n, buf, USP_DM_VALUE_MAX + 1);
        if (rc == USP_EINVAL)
            buf[0] = 0;
        if (out_add(a, &oc->out, pc->out[i].name, buf))
            return USP_ENOMEM;
    }
    return 0;
}

/* ---- asynchronous completion ------------------------------------------- */

struct job {
    enum behaviour b;
    struct usp_dm_inst obj;           /* the command's object */
    const struct usp_dm_command *cmd; /* shared schema: outlives the agent */
    const struct usp_dm_object *req_table;
    uint32_t req_inst;
    int64_t boot_sec;
    char *command_key;
    char *command_path;
};

static void job_free(struct job *j)
{
    free(j->command_key);
    free(j->command_path);
    free(j);
}

static int delete_request(struct hctx *c, const struct usp_dm_inst *row)
{
    char *path = handle__obj_path(c, row);
    if (!path)
        return USP_ENOMEM;
    if (usp_dm_delete(c->agent, row) != 0)
        return 0;
    struct usp_dm_event_info ev = {.kind = USP_EV_OBJ_DELETION, .path = path};
    if (handle__queue_event(c, &ev))
        return USP_ENOMEM;
    return handle__queue_count_change(c, row);
}

static char *request_value(struct hctx *c, const struct usp_dm_inst *row, const char *name)
{
    const struct usp_dm_param *p = usp_dm_object_param(row->obj, name, strlen(name));
    return p ? handle__read_raw(c, row, p) : NULL;
}

static void async_done(struct usp_dm_agent *agent, const struct usp_agent_env *env, void *arg)
{
    struct job *j = arg;
    if (!agent) {
        job_free(j);
        return;
    }
    struct usp_arena *a = usp_arena_new(8192);
    if (!a) {
        job_free(j);
        return;
    }
    struct hctx c = {
        .agent = agent,
        .env = env,
        .controller = "",
        .a = a,
        .msg_id = "",
        .schema = usp_dm_model_schema(agent->model),
    };
    struct usp_dm_inst row = {.obj = j->req_table, .n = 1, .inst = {j->req_inst}};
    /* Gone with a reboot or a Cancel(): nothing left to complete. */
    char *status = agent->boot_sec == j->boot_sec && usp_dm_exists(agent, &row)
                       ? request_value(&c, &row, "Status")
                       : NULL;
    char *command = status ? request_value(&c, &row, "Command") : NULL;
    if (!status || strcmp(status, "Active") != 0 || !command ||
        strcmp(command, j->command_path) != 0)
        goto out;
    struct outcome oc = {0};
    if (j->b == B_SELF_TEST &&
        (out_add(a, &oc.out, "Status", "Complete") || out_add(a, &oc.out, "Results", "")))
        goto out;
    if (apply_profile(a, agent, handle__now(&c), &j->obj, profile_cmd(agent, &j->obj, j->cmd), true,
                      &oc))
        goto out;
    char *obj_path = handle__obj_path(&c, &j->obj);
    if (!obj_path)
        goto out;
    struct usp_dm_event_info ev = {
        .kind = USP_EV_OPER_COMPLETE,
        .path = obj_path,
        .name = j->cmd->name,
        .command_key = j->command_key,
        .kv = oc.code ? NULL : oc.out.kv,
        .nkv = oc.code ? 0 : oc.out.n,
        .err_code = oc.code,
        .err_msg = oc.code ? oc.msg : NULL,
    };
    if (handle__queue_event(&c, &ev) || delete_request(&c, &row))
        goto out;
    handle__flush_events(&c);
out:
    usp_arena_free(a);
    job_free(j);
}

/* ---- one command on one object ----------------------------------------- */

struct op_state {
    struct hctx *c;
    const Usp__Operate *req;
};

static const char *input(const Usp__Operate *req, const char *name)
{
    for (size_t i = 0; i < req->n_input_args; i++)
        if (req->input_args[i]->key && !strcmp(req->input_args[i]->key, name))
            return req->input_args[i]->value ? req->input_args[i]->value : "";
    return NULL;
}

/* The value of an input argument: given, else its default, else NULL. */
static const char *arg_value(const Usp__Operate *req, const struct usp_dm_command *cmd,
                             const char *name)
{
    const char *v = input(req, name);
    if (v)
        return v;
    const struct usp_dm_param *p = usp_dm_object_param(cmd->input, name, strlen(name));
    return p ? p->default_value : NULL;
}

static bool any_input_under(const Usp__Operate *req, const char *prefix, size_t len)
{
    for (size_t i = 0; i < req->n_input_args; i++)
        if (req->input_args[i]->key && !strncmp(req->input_args[i]->key, prefix, len))
            return true;
    return false;
}

/* R-OPR.5 and the types of the known arguments of argument object `o`,
 * whose arguments are named `prefix` + name ("" at the top, then
 * "AutoRestart." or "ApplicationData.2."). A mandatory argument inside an
 * argument object is required once the controller gives that object (any
 * argument under it): an object left out entirely is not asked for. */
static uint32_t check_args(const Usp__Operate *req, const struct usp_dm_object *o,
                           const char *prefix, char *msg, size_t msglen)
{
    size_t plen = strlen(prefix);
    if (plen && !any_input_under(req, prefix, plen))
        return 0;
    char name[512];
    for (uint32_t i = 0; i < o->nparams; i++) {
        const struct usp_dm_param *p = &o->params[i];
        snprintf(name, sizeof name, "%.250s%.250s", prefix, p->name);
        const char *v = input(req, name);
        if (!v) {
            if (p->flags & USP_DM_PARAM_MANDATORY) {
                snprintf(msg, msglen,
                         "Invalid command arguments: mandatory input argument %s "
                         "is missing",
                         name);
                return USP_ERR_INVALID_CMD_ARGS;
            }
            continue;
        }
        char why[256] = "";
        if (usp_dm_type_check(p, v, why, sizeof why) != 0) {
            snprintf(msg, msglen, "Invalid command arguments: %s: %s", name, why);
            return USP_ERR_INVALID_CMD_ARGS;
        }
    }
    for (uint32_t i = 0; i < o->nchildren; i++) {
        const struct usp_dm_object *ch = o->children[i];
        snprintf(name, sizeof name, "%.250s%.250s.", prefix, ch->name);
        uint32_t code;
        if (!(ch->flags & USP_DM_OBJ_MULTI)) {
            if ((code = check_args(req, ch, name, msg, msglen)))
                return code;
            continue;
        }
        /* Each instance given ("ApplicationData.2.Name") is checked. */
        size_t nlen = strlen(name);
        for (size_t k = 0; k < req->n_input_args; k++) {
            const char *key = req->input_args[k]->key;
            if (!key || strncmp(key, name, nlen) != 0)
                continue;
            const char *num = key + nlen, *end = num;
            while (*end >= '0' && *end <= '9')
                end++;
            if (end == num || *end != '.')
                continue;
            char sub[600];
            snprintf(sub, sizeof sub, "%s%.*s.", name, (int)(end - num), num);
            if ((code = check_args(req, ch, sub, msg, msglen)))
                return code;
        }
    }
    return 0;
}

static bool is_true(const char *v)
{
    return v && (!strcmp(v, "true") || !strcmp(v, "1"));
}

static int run_cancel(struct hctx *c, const struct usp_dm_inst *row, struct outcome *oc)
{
    char *status = request_value(c, row, "Status");
    char *command = request_value(c, row, "Command");
    char *key = request_value(c, row, "CommandKey");
    if (!status || !command || !key)
        return USP_ENOMEM;
    if (strcmp(status, "Active") != 0 && strcmp(status, "Requested") != 0) {
        oc->code = USP_ERR_COMMAND_FAILURE;
        snprintf(oc->msg, sizeof oc->msg, "Command failure: the request is %s, not running",
                 status[0] ? status : "in no state");
        return 0;
    }
    /* "Device.X.2.Cmd()" -> object "Device.X.2." and name "Cmd()". */
    char *paren = strrchr(command, '(');
    char *name = command;
    for (char *p = command; paren && p < paren; p++)
        if (*p == '.')
            name = p + 1;
    char *obj_path = usp_arena_strndup(c->a, command, (size_t)(name - command));
    if (!obj_path)
        return USP_ENOMEM;
    struct usp_dm_event_info ev = {
        .kind = USP_EV_OPER_COMPLETE,
        .path = obj_path,
        .name = name,
        .command_key = key,
        .err_code = USP_ERR_COMMAND_CANCELLED,
        .err_msg = "Command canceled",
    };
    if (handle__queue_event(c, &ev))
        return USP_ENOMEM;
    return delete_request(c, row);
}

static int run_onboard(struct hctx *c, const struct usp_dm_inst *row, const char *path,
                       struct outcome *oc)
{
    char *enable = request_value(c, row, "Enable");
    char *eid = request_value(c, row, "EndpointID");
    if (!enable || !eid)
        return USP_ENOMEM;
    if (!is_true(enable)) {
        /* R-NOT.5 applies to enabled controllers only. */
        oc->code = USP_ERR_COMMAND_FAILURE;
        snprintf(oc->msg, sizeof oc->msg, "Command failure: controller %s is disabled", path);
        return 0;
    }
    const struct usp_dm_param *p =
        usp_dm_object_param(row->obj, "OnBoardingComplete", strlen("OnBoardingComplete"));
    if (p) {
        bool changed = false;
        char why[128];
        if (usp_dm_set(c->agent, row, p, "false", &changed, why, sizeof why) < 0)
            return USP_ENOMEM;
        if (changed) {
            char *ppath = handle__join(c, path, p->name);
            struct usp_dm_event_info vc = {
                .kind = USP_EV_VALUE_CHANGE, .path = ppath, .value = "false"};
            if (!ppath || handle__queue_event(c, &vc))
                return USP_ENOMEM;
        }
    }
    struct usp_dm_event_info ev = {.kind = USP_EV_ONBOARD_REQUEST, .path = path, .value = eid};
    return handle__queue_event(c, &ev);
}

/* Runs a synchronous command now. */
static int run_sync(struct op_state *s, const struct usp_dm_match *m, const char *obj_path,
                    enum behaviour b, struct outcome *oc)
{
    struct hctx *c = s->c;
    const struct usp_dm_command *cmd = m->command;
    int rc = apply_profile(c->a, c->agent, handle__now(c), &m->obj,
                           profile_cmd(c->agent, &m->obj, cmd), false, oc);
    if (rc || oc->code)
        return rc;
    switch (b) {
    case B_REBOOT:
    case B_FACTORY_RESET: {
        bool reboot = b == B_REBOOT;
        const char *cause = arg_value(s->req, cmd, "Cause");
        const char *reason = arg_value(s->req, cmd, "Reason");
        struct usp_kv kv[] = {
            {"Cause", cause && cause[0] ? cause
                      : reboot          ? "RemoteReboot"
                                        : "RemoteFactoryReset"},
            {"Reason", reason ? reason : ""},
        };
        struct usp_dm_event_info ev = {
            .kind = reboot ? USP_EV_REBOOT : USP_EV_FACTORY_RESET,
            .path = obj_path,
            .name = cmd->name,
            .command_key = s->req->command_key,
            .kv = kv,
            .nkv = 2,
        };
        return handle__queue_event(c, &ev);
    }
    case B_CANCEL:
        return run_cancel(c, &m->obj, oc);
    case B_ONBOARD:
        return run_onboard(c, &m->obj, obj_path, oc);
    default:
        return 0;
    }
}

/* Starts an asynchronous command: its Request row and its timer. On
 * success *req_path is the row's path. */
static int start_async(struct op_state *s, const struct usp_dm_match *m, const char *cmd_path,
                       enum behaviour b, char **req_path, struct outcome *oc)
{
    struct hctx *c = s->c;
    uint32_t delay_ms = 0;
    const struct usp_profile_cmd *pc = profile_cmd(c->agent, &m->obj, m->command);
    if (pc)
        delay_ms = pc->delay_ms;
    if (b == B_TIMER) {
        const char *v = arg_value(s->req, m->command, "DelaySeconds");
        unsigned long long sec = v ? strtoull(v, NULL, 10) : 0;
        delay_ms = sec > UINT32_MAX / 1000 ? UINT32_MAX : (uint32_t)(sec * 1000);
    }
    if (!c->env || !c->env->schedule) {
        oc->code = USP_ERR_INTERNAL_ERROR;
        snprintf(oc->msg, sizeof oc->msg,
                 "Internal error: no scheduler for asynchronous "
                 "commands");
        return 0;
    }
    struct usp_dm_item it;
    if (usp_dm_lookup(c->schema, REQUEST_TABLE, &it) != 0 || it.kind != USP_DM_KIND_OBJECT) {
        oc->code = USP_ERR_COMMAND_FAILURE;
        snprintf(oc->msg, sizeof oc->msg,
                 "Command failure: the data model has no " REQUEST_TABLE " table");
        return 0;
    }
    struct usp_dm_inst parent = {.obj = it.object->parent, .n = 0};
    uint32_t inst;
    int rc = usp_dm_add(c->agent, it.object, &parent, &inst);
    if (rc == USP_ERANGE) {
        oc->code = USP_ERR_RESOURCES_EXCEEDED;
        snprintf(oc->msg, sizeof oc->msg, "Resources exceeded: too many running requests");
        return 0;
    }
    if (rc)
        return USP_ENOMEM;
    struct usp_dm_inst row;
    handle__child(&parent, it.object, inst, &row);
    size_t emark = handle__events_mark(c);
    static const char *const names[] = {"Originator", "Command", "CommandKey", "Status"};
    const char *values[] = {c->controller, cmd_path, s->req->command_key, "Active"};
    bool *given = usp_arena_zalloc(c->a, (row.obj->nparams + 1) * sizeof *given);
    if (!given)
        return USP_ENOMEM;
    for (size_t i = 0; i < 4; i++) {
        const struct usp_dm_param *p = usp_dm_object_param(row.obj, names[i], strlen(names[i]));
        if (!p)
            continue;
        char why[256] = "";
        rc = usp_dm_set(c->agent, &row, p, values[i], NULL, why, sizeof why);
        if (rc < 0)
            return USP_ENOMEM;
        if (rc > 0) {
            (void)usp_dm_delete(c->agent, &row);
            oc->code = USP_ERR_REQUEST_DENIED;
            snprintf(oc->msg, sizeof oc->msg, "Request denied: %s%s%s",
                     rc == USP_ERR_UNIQUE_KEY_CONFLICT
                         ? "the same command with the same command key is already running"
                         : "cannot record the request",
                     why[0] ? ": " : "", why);
            return 0;
        }
        given[usp_dm_param_index(p)] = true;
    }
    if (handle__assign_keys(c, &row, given))
        return USP_ENOMEM;
    *req_path = handle__obj_path(c, &row);
    struct hkeys keys;
    if (!*req_path || handle__keys(c, &row, &keys))
        return USP_ENOMEM;
    struct usp_dm_event_info ev = {
        .kind = USP_EV_OBJ_CREATION, .path = *req_path, .kv = keys.kv, .nkv = keys.n};
    if (handle__queue_event(c, &ev) || handle__queue_count_change(c, &row))
        return USP_ENOMEM;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return USP_ENOMEM;
    j->b = b;
    j->obj = m->obj;
    j->cmd = m->command;
    j->req_table = it.object;
    j->req_inst = inst;
    j->boot_sec = c->agent->boot_sec;
    j->command_key = strdup(s->req->command_key ? s->req->command_key : "");
    j->command_path = strdup(cmd_path);
    if (!j->command_key || !j->command_path) {
        job_free(j);
        return USP_ENOMEM;
    }
    rc = c->env->schedule(c->env->ctx, c->agent, delay_ms, async_done, j);
    if (rc) {
        job_free(j);
        (void)usp_dm_delete(c->agent, &row);
        handle__events_drop(c, emark);
        *req_path = NULL;
        oc->code = rc == USP_ENOMEM ? USP_ERR_RESOURCES_EXCEEDED : USP_ERR_INTERNAL_ERROR;
        snprintf(oc->msg, sizeof oc->msg, "%s: cannot schedule the command",
                 usp_err_name(oc->code));
    }
    return 0;
}

static int operate_one(struct op_state *s, const struct usp_dm_match *m, OpRes *r)
{
    struct hctx *c = s->c;
    char *obj_path = handle__obj_path(c, &m->obj);
    char *cmd_path = obj_path ? handle__join(c, obj_path, m->command->name) : NULL;
    if (!cmd_path)
        return USP_ENOMEM;
    r->executed_command = cmd_path;
    struct outcome oc = {0};
    char *req_path = NULL;
    enum behaviour b = behaviour_of(m->command);
    int rc = 0;
    if (!handle__allowed(c, cmd_path, USP_PERM_OPERATE)) {
        oc.code = USP_ERR_PERMISSION_DENIED;
        snprintf(oc.msg, sizeof oc.msg, "Permission denied: no Operate permission on %s", cmd_path);
    } else if ((oc.code = check_args(s->req, m->command->input, "", oc.msg, sizeof oc.msg))) {
        /* reported below */
    } else if (m->command->async) {
        rc = start_async(s, m, cmd_path, b, &req_path, &oc);
    } else {
        rc = run_sync(s, m, obj_path, b, &oc);
    }
    if (rc)
        return rc;
    if (oc.code) {
        CmdFailure *f = usp_arena_alloc(c->a, sizeof *f);
        if (!f)
            return USP_ENOMEM;
        usp__operate_resp__operation_result__command_failure__init(f);
        f->err_code = oc.code;
        f->err_msg = usp_arena_strdup(c->a, oc.msg);
        if (!f->err_msg)
            return USP_ENOMEM;
        r->operation_resp_case = USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE;
        r->cmd_failure = f;
        return 0;
    }
    if (req_path) {
        r->operation_resp_case = USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OBJ_PATH;
        r->req_obj_path = req_path;
        return 0;
    }
    OutArgs *oa = usp_arena_alloc(c->a, sizeof *oa);
    if (!oa)
        return USP_ENOMEM;
    usp__operate_resp__operation_result__output_args__init(oa);
    struct hvec entries = {0};
    for (uint32_t i = 0; i < oc.out.n; i++) {
        OutEntry *e = usp_arena_alloc(c->a, sizeof *e);
        if (!e)
            return USP_ENOMEM;
        usp__operate_resp__operation_result__output_args__output_args_entry__init(e);
        e->key = (char *)oc.out.kv[i].key;
        e->value = (char *)oc.out.kv[i].value;
        if (handle__push(c->a, &entries, e))
            return USP_ENOMEM;
    }
    oa->n_output_args = entries.n;
    oa->output_args = (OutEntry **)handle__items(&entries);
    r->operation_resp_case = USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_REQ_OUTPUT_ARGS;
    r->req_output_args = oa;
    return 0;
}

int handle__operate(struct hctx *c, const Usp__Operate *req, Usp__Msg **resp)
{
    struct op_state s = {.c = c, .req = req};
    char msg[512] = "";
    struct usp_path *p;
    int rc = handle__parse(c, req->command, &p, msg, sizeof msg);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        *resp = handle__new_error(c, (uint32_t)rc, "%s", msg);
        return *resp ? 0 : USP_ENOMEM;
    }
    if (!(p->flags & USP_PATH_COMMAND) || !usp_path_is_instantiated(p)) {
        *resp = handle__new_error(c, USP_ERR_INVALID_PATH,
                                  "Invalid path: Operate takes a command path (ending in "
                                  "\"()\"): %s",
                                  req->command);
        return *resp ? 0 : USP_ENOMEM;
    }
    struct hmatches ms;
    struct usp_dm_path_err perr;
    rc = handle__resolve(c, p, &ms, &perr);
    if (rc < 0)
        return rc;
    if (rc == USP_ERR_OBJECT_DOES_NOT_EXIST && usp_path_is_search(p)) {
        ms.n = 0;
    } else if (rc > 0) {
        *resp = handle__new_error(c, (uint32_t)rc, "%s", perr.msg);
        return *resp ? 0 : USP_ENOMEM;
    }
    struct hvec results = {0};
    bool failed = false;
    for (size_t i = 0; i < ms.n; i++) {
        if (!ms.m[i].command)
            continue;
        OpRes *r = usp_arena_alloc(c->a, sizeof *r);
        if (!r)
            return USP_ENOMEM;
        usp__operate_resp__operation_result__init(r);
        if (operate_one(&s, &ms.m[i], r))
            return USP_ENOMEM;
        bool fail = r->operation_resp_case ==
                    USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE;
        failed |= fail;
        if ((req->send_resp || fail) && handle__push(c->a, &results, r))
            return USP_ENOMEM;
    }
    if (!req->send_resp && !failed)
        return 0; /* R-OPR.4 */
    Usp__OperateResp * or = usp_arena_alloc(c->a, sizeof * or);
    if (! or)
        return USP_ENOMEM;
    usp__operate_resp__init(or);
    or->n_operation_results = results.n;
    or->operation_results = (OpRes **)handle__items(&results);
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__OPERATE_RESP,
                                 USP__RESPONSE__RESP_TYPE_OPERATE_RESP, or);
    return *resp ? 0 : USP_ENOMEM;
}
