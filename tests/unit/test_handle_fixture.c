/* Fixture of the agent-side handler tests: see test_handle.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_handle.h"
#include "usp/dm.h"
#include "usp/dm_schema.h"
#include "usp/profile.h"

#define DEFAULT_MODEL USP_SRC("datamodels/device-2-uspsim.xml")
#define MINI_MODEL    USP_SRC("tests/unit/data/handle/mini.xml")
#define TEST_PROFILE  USP_SRC("tests/unit/data/handle/test.prof")

struct hfix hfix_state;

/* The schemas are loaded once: they are immutable and shared. */
static struct usp_dm_schema *default_schema, *mini_schema;

static int64_t fix_now(void *ctx, const struct usp_dm_agent *agent)
{
    return HFIX_T0 + (int64_t)(H.now_ms / 1000);
}

static bool fix_allowed(void *ctx, const struct usp_dm_agent *agent, const char *controller,
                        const char *path, unsigned perm)
{
    for (size_t i = 0; i < H.ndeny; i++)
        if ((H.deny[i].perm & perm) && !strncmp(path, H.deny[i].prefix, strlen(H.deny[i].prefix)))
            return false;
    return true;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void fix_emit(void *ctx, struct usp_dm_agent *agent, const struct usp_dm_event_info *ev)
{
    CU_ASSERT_FATAL(H.nev < HFIX_MAX_EVENTS);
    struct hfix_event *e = &H.ev[H.nev++];
    memset(e, 0, sizeof *e);
    e->kind = ev->kind;
    e->path = dup_or_null(ev->path);
    e->name = dup_or_null(ev->name);
    e->value = dup_or_null(ev->value);
    e->command_key = dup_or_null(ev->command_key);
    e->err_msg = dup_or_null(ev->err_msg);
    e->err_code = ev->err_code;
    for (uint32_t i = 0; i < ev->nkv && i < HFIX_MAX_KV; i++) {
        e->key[i] = strdup(ev->kv[i].key);
        e->val[i] = strdup(ev->kv[i].value);
    }
    e->nkv = ev->nkv < HFIX_MAX_KV ? ev->nkv : HFIX_MAX_KV;
}

static int fix_schedule(void *ctx, struct usp_dm_agent *agent, uint32_t delay_ms, usp_timer_fn fn,
                        void *arg)
{
    if (H.schedule_rc)
        return H.schedule_rc;
    CU_ASSERT_FATAL(H.ntimers < HFIX_MAX_TIMERS);
    H.timers[H.ntimers].at_ms = H.now_ms + delay_ms;
    H.timers[H.ntimers].fn = fn;
    H.timers[H.ntimers].arg = arg;
    H.ntimers++;
    return 0;
}

static void fix_reply(void *ctx, struct usp_dm_agent *agent, const struct usp_agent_reply *r)
{
    CU_ASSERT_FATAL(H.nreplies < 8);
    struct usp_agent_reply *c = &H.replies[H.nreplies++];
    c->controller = dup_or_null(r->controller);
    c->msg_id = dup_or_null(r->msg_id);
    c->subscription_id = dup_or_null(r->subscription_id);
    c->err_code = r->err_code;
    c->err_msg = dup_or_null(r->err_msg);
}

void hfix_setup(bool mini)
{
    struct usp_dm_error derr = {0};
    struct usp_dm_schema **sp = mini ? &mini_schema : &default_schema;
    if (!*sp) {
        int rc = usp_dm_load_file(mini ? MINI_MODEL : DEFAULT_MODEL, 0, sp, &derr);
        if (rc)
            fprintf(stderr, "hfix: %s\n", derr.msg);
        CU_ASSERT_FATAL(rc == 0);
    }
    memset(&H.ev, 0, sizeof H.ev);
    H.nev = H.ntimers = H.ndeny = H.nreplies = 0;
    H.now_ms = 0;
    H.schedule_rc = 0;
    H.schema = *sp;
    H.prof = NULL;
    if (!mini) {
        struct usp_profile_err perr = {0};
        int rc = usp_profile_load(TEST_PROFILE, &H.prof, &perr);
        if (rc)
            fprintf(stderr, "hfix: %s\n", perr.text);
        CU_ASSERT_FATAL(rc == 0);
    }
    struct usp_dm_model_err merr = {0};
    int rc = usp_dm_model_new(H.schema, H.prof, &H.model, &merr);
    if (rc)
        fprintf(stderr, "hfix: %s\n", merr.msg);
    CU_ASSERT_FATAL(rc == 0);
    usp_dm_agent_init(&H.agent, H.model, 7, "os::012345-SIM000007", HFIX_T0);
    H.agent.skew_sec = 0;
    H.a = usp_arena_new(0);
    CU_ASSERT_FATAL(H.a != NULL);
    H.env = (struct usp_agent_env){
        .ctx = &H,
        .now = fix_now,
        .allowed = fix_allowed,
        .emit = fix_emit,
        .schedule = fix_schedule,
        .versions = NULL,
        .reply = fix_reply,
    };
}

static void free_events(void)
{
    for (size_t i = 0; i < H.nev; i++) {
        struct hfix_event *e = &H.ev[i];
        free(e->path);
        free(e->name);
        free(e->value);
        free(e->command_key);
        free(e->err_msg);
        for (uint32_t k = 0; k < e->nkv; k++) {
            free(e->key[k]);
            free(e->val[k]);
        }
    }
    H.nev = 0;
}

void hfix_teardown(void)
{
    /* Pending timers are dropped the way the fleet does: fn(NULL, ...). */
    for (size_t i = 0; i < H.ntimers; i++)
        H.timers[i].fn(NULL, &H.env, H.timers[i].arg);
    H.ntimers = 0;
    free_events();
    for (size_t i = 0; i < H.nreplies; i++) {
        free((char *)H.replies[i].controller);
        free((char *)H.replies[i].msg_id);
        free((char *)H.replies[i].subscription_id);
        free((char *)H.replies[i].err_msg);
    }
    H.nreplies = 0;
    usp_dm_agent_cleanup(&H.agent);
    usp_dm_model_free(H.model);
    usp_profile_free(H.prof);
    usp_arena_free(H.a);
    H.model = NULL;
    H.prof = NULL;
    H.a = NULL;
}

void hfix_deny(const char *prefix, unsigned perm)
{
    CU_ASSERT_FATAL(H.ndeny < 8);
    H.deny[H.ndeny].prefix = prefix;
    H.deny[H.ndeny].perm = perm;
    H.ndeny++;
}

void hfix_advance(uint64_t ms)
{
    uint64_t until = H.now_ms + ms;
    for (;;) {
        size_t best = H.ntimers;
        for (size_t i = 0; i < H.ntimers; i++)
            if (H.timers[i].at_ms <= until &&
                (best == H.ntimers || H.timers[i].at_ms < H.timers[best].at_ms))
                best = i;
        if (best == H.ntimers)
            break;
        usp_timer_fn fn = H.timers[best].fn;
        void *arg = H.timers[best].arg;
        if (H.timers[best].at_ms > H.now_ms)
            H.now_ms = H.timers[best].at_ms;
        H.timers[best] = H.timers[--H.ntimers];
        fn(&H.agent, &H.env, arg);
    }
    H.now_ms = until;
}

static unsigned msg_counter;

Usp__Msg *hfix_request(Usp__Request__ReqTypeCase kind, void *body)
{
    Usp__Msg *m = usp_arena_zalloc(H.a, sizeof *m);
    Usp__Header *h = usp_arena_zalloc(H.a, sizeof *h);
    Usp__Body *b = usp_arena_zalloc(H.a, sizeof *b);
    Usp__Request *r = usp_arena_zalloc(H.a, sizeof *r);
    CU_ASSERT_FATAL(m && h && b && r);
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__request__init(r);
    h->msg_id = usp_arena_printf(H.a, "m-%u", ++msg_counter);
    static const Usp__Header__MsgType types[] = {
        [USP__REQUEST__REQ_TYPE_GET] = USP__HEADER__MSG_TYPE__GET,
        [USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM] = USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM,
        [USP__REQUEST__REQ_TYPE_GET_INSTANCES] = USP__HEADER__MSG_TYPE__GET_INSTANCES,
        [USP__REQUEST__REQ_TYPE_SET] = USP__HEADER__MSG_TYPE__SET,
        [USP__REQUEST__REQ_TYPE_ADD] = USP__HEADER__MSG_TYPE__ADD,
        [USP__REQUEST__REQ_TYPE_DELETE] = USP__HEADER__MSG_TYPE__DELETE,
        [USP__REQUEST__REQ_TYPE_OPERATE] = USP__HEADER__MSG_TYPE__OPERATE,
        [USP__REQUEST__REQ_TYPE_NOTIFY] = USP__HEADER__MSG_TYPE__NOTIFY,
        [USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL] =
            USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO,
        [USP__REQUEST__REQ_TYPE_REGISTER] = USP__HEADER__MSG_TYPE__REGISTER,
        [USP__REQUEST__REQ_TYPE_DEREGISTER] = USP__HEADER__MSG_TYPE__DEREGISTER,
    };
    h->msg_type = types[kind];
    r->req_type_case = kind;
    r->get = body;
    b->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
    b->request = r;
    m->header = h;
    m->body = b;
    return m;
}

/* ---- allowed error codes (from the specification, written out again
 * here so the library's own table is checked rather than trusted) ---- */

static bool in(uint32_t code, const uint32_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == code)
            return true;
    return false;
}

bool hfix_code_allowed(int req_type, uint32_t code)
{
    if (code >= 7800 && code <= 7999)
        return true;
    /* Per-message lists, plus codes whose applicability in the code table
     * names the message (7021 and 7025 for Add and Set). */
    static const uint32_t get[] = {7000, 7001, 7002, 7003, 7004, 7005,
                                   7006, 7008, 7010, 7016, 7026};
    static const uint32_t gi[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006, 7008, 7016, 7018, 7026};
    static const uint32_t gsdm[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006, 7008, 7016, 7026};
    static const uint32_t set[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007, 7008, 7009, 7010,
                                   7011, 7012, 7013, 7014, 7015, 7016, 7020, 7021, 7025, 7026};
    static const uint32_t add[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007,
                                   7008, 7009, 7010, 7011, 7012, 7013, 7014, 7015,
                                   7016, 7017, 7018, 7019, 7021, 7025, 7026};
    static const uint32_t del[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006,
                                   7007, 7008, 7015, 7016, 7018, 7024, 7026};
    static const uint32_t op[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006,
                                  7007, 7008, 7016, 7022, 7026, 7027};
    static const uint32_t seven[] = {7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007, 7008};
#define IN(l) in(code, l, sizeof l / sizeof l[0])
    switch (req_type) {
    case USP__HEADER__MSG_TYPE__GET:
        return IN(get);
    case USP__HEADER__MSG_TYPE__GET_INSTANCES:
        return IN(gi);
    case USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM:
        return IN(gsdm);
    case USP__HEADER__MSG_TYPE__SET:
        return IN(set);
    case USP__HEADER__MSG_TYPE__ADD:
        return IN(add);
    case USP__HEADER__MSG_TYPE__DELETE:
        return IN(del);
    case USP__HEADER__MSG_TYPE__OPERATE:
        return IN(op);
    default: /* Notify 7000-7006; Register/Deregister 7000-7008 */
        return IN(seven);
    }
#undef IN
}

static void check_codes(int t, const Usp__Msg *m)
{
#define CHK(code)                                                                                  \
    do {                                                                                           \
        uint32_t c_ = (code);                                                                      \
        if (c_ && !hfix_code_allowed(t, c_))                                                       \
            fprintf(stderr, "code %u not allowed for message type %d\n", c_, t);                   \
        CU_ASSERT(c_ == 0 || hfix_code_allowed(t, c_));                                            \
    } while (0)
    if (m->body->msg_body_case == USP__BODY__MSG_BODY_ERROR) {
        const Usp__Error *e = m->body->error;
        CU_ASSERT(e->err_code != 0);
        CHK(e->err_code);
        for (size_t i = 0; i < e->n_param_errs; i++)
            CHK(e->param_errs[i]->err_code);
        return;
    }
    const Usp__Response *r = m->body->response;
    switch (r->resp_type_case) {
    case USP__RESPONSE__RESP_TYPE_GET_RESP:
        for (size_t i = 0; i < r->get_resp->n_req_path_results; i++)
            CHK(r->get_resp->req_path_results[i]->err_code);
        break;
    case USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP:
        for (size_t i = 0; i < r->get_instances_resp->n_req_path_results; i++)
            CHK(r->get_instances_resp->req_path_results[i]->err_code);
        break;
    case USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP:
        for (size_t i = 0; i < r->get_supported_dm_resp->n_req_obj_results; i++)
            CHK(r->get_supported_dm_resp->req_obj_results[i]->err_code);
        break;
    case USP__RESPONSE__RESP_TYPE_SET_RESP:
        for (size_t i = 0; i < r->set_resp->n_updated_obj_results; i++) {
            const Usp__SetResp__UpdatedObjectResult__OperationStatus *st =
                r->set_resp->updated_obj_results[i]->oper_status;
            CU_ASSERT_FATAL(st != NULL);
            if (st->oper_status_case ==
                USP__SET_RESP__UPDATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE) {
                CHK(st->oper_failure->err_code);
                for (size_t k = 0; k < st->oper_failure->n_updated_inst_failures; k++)
                    for (size_t j = 0; j < st->oper_failure->updated_inst_failures[k]->n_param_errs;
                         j++)
                        CHK(st->oper_failure->updated_inst_failures[k]->param_errs[j]->err_code);
            } else {
                for (size_t k = 0; k < st->oper_success->n_updated_inst_results; k++)
                    for (size_t j = 0; j < st->oper_success->updated_inst_results[k]->n_param_errs;
                         j++)
                        CHK(st->oper_success->updated_inst_results[k]->param_errs[j]->err_code);
            }
        }
        break;
    case USP__RESPONSE__RESP_TYPE_ADD_RESP:
        for (size_t i = 0; i < r->add_resp->n_created_obj_results; i++) {
            const Usp__AddResp__CreatedObjectResult__OperationStatus *st =
                r->add_resp->created_obj_results[i]->oper_status;
            CU_ASSERT_FATAL(st != NULL);
            if (st->oper_status_case ==
                USP__ADD_RESP__CREATED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE)
                CHK(st->oper_failure->err_code);
            else
                for (size_t j = 0; j < st->oper_success->n_param_errs; j++)
                    CHK(st->oper_success->param_errs[j]->err_code);
        }
        break;
    case USP__RESPONSE__RESP_TYPE_DELETE_RESP:
        for (size_t i = 0; i < r->delete_resp->n_deleted_obj_results; i++) {
            const Usp__DeleteResp__DeletedObjectResult__OperationStatus *st =
                r->delete_resp->deleted_obj_results[i]->oper_status;
            CU_ASSERT_FATAL(st != NULL);
            if (st->oper_status_case ==
                USP__DELETE_RESP__DELETED_OBJECT_RESULT__OPERATION_STATUS__OPER_STATUS_OPER_FAILURE)
                CHK(st->oper_failure->err_code);
            else
                for (size_t j = 0; j < st->oper_success->n_unaffected_path_errs; j++)
                    CHK(st->oper_success->unaffected_path_errs[j]->err_code);
        }
        break;
    case USP__RESPONSE__RESP_TYPE_OPERATE_RESP:
        for (size_t i = 0; i < r->operate_resp->n_operation_results; i++) {
            const Usp__OperateResp__OperationResult *o = r->operate_resp->operation_results[i];
            if (o->operation_resp_case ==
                USP__OPERATE_RESP__OPERATION_RESULT__OPERATION_RESP_CMD_FAILURE)
                CHK(o->cmd_failure->err_code);
        }
        break;
    default:
        break;
    }
#undef CHK
}

Usp__Msg *hfix_handle_as(const char *controller, Usp__Msg *req)
{
    Usp__Msg *resp = (Usp__Msg *)1;
    int rc = usp_agent_handle(&H.agent, &H.env, controller, req, H.a, &resp);
    CU_ASSERT_FATAL(rc == 0);
    if (!resp)
        return NULL;
    CU_ASSERT_FATAL(resp->header != NULL && resp->body != NULL);
    CU_ASSERT_STRING_EQUAL(resp->header->msg_id, req->header->msg_id);
    /* The answer packs and unpacks (well-formed), and passes validation. */
    uint8_t *buf;
    size_t len;
    CU_ASSERT_FATAL(usp_msg_encode(H.a, resp, &buf, &len) == 0);
    Usp__Msg *back = NULL;
    struct usp_decode_err derr;
    CU_ASSERT_FATAL(usp_msg_decode(H.a, buf, len, &back, &derr) == 0);
    int t = req->header->msg_type;
    check_codes(t, resp);
    return resp;
}

Usp__Msg *hfix_handle(Usp__Msg *req)
{
    return hfix_handle_as("ctrl-1", req);
}

/* ---- builders ---- */

Usp__Msg *hfix_get(const char *const *paths, size_t n, uint32_t max_depth)
{
    Usp__Get *g = usp_arena_zalloc(H.a, sizeof *g);
    usp__get__init(g);
    g->n_param_paths = n;
    g->param_paths = usp_arena_zalloc(H.a, (n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++)
        g->param_paths[i] = usp_arena_strdup(H.a, paths[i]);
    g->max_depth = max_depth;
    return hfix_request(USP__REQUEST__REQ_TYPE_GET, g);
}

Usp__Msg *hfix_get1(const char *path)
{
    return hfix_get(&path, 1, 0);
}

/* Splits "[!]name=value". */
static void split_setting(const char *s, char **name, char **value, bool *required)
{
    *required = s[0] == '!';
    if (*required)
        s++;
    const char *eq = strchr(s, '=');
    CU_ASSERT_FATAL(eq != NULL);
    *name = usp_arena_strndup(H.a, s, (size_t)(eq - s));
    *value = usp_arena_strdup(H.a, eq + 1);
}

Usp__Msg *hfix_set(bool allow_partial, const char *obj_path, const char *const *settings, size_t n)
{
    Usp__Set *s = usp_arena_zalloc(H.a, sizeof *s);
    usp__set__init(s);
    s->allow_partial = allow_partial;
    Usp__Set__UpdateObject *uo = usp_arena_zalloc(H.a, sizeof *uo);
    usp__set__update_object__init(uo);
    uo->obj_path = usp_arena_strdup(H.a, obj_path);
    uo->n_param_settings = n;
    uo->param_settings = usp_arena_zalloc(H.a, (n + 1) * sizeof *uo->param_settings);
    for (size_t i = 0; i < n; i++) {
        Usp__Set__UpdateParamSetting *ps = usp_arena_zalloc(H.a, sizeof *ps);
        usp__set__update_param_setting__init(ps);
        bool req;
        split_setting(settings[i], &ps->param, &ps->value, &req);
        ps->required = req;
        uo->param_settings[i] = ps;
    }
    s->n_update_objs = 1;
    s->update_objs = usp_arena_zalloc(H.a, sizeof *s->update_objs);
    s->update_objs[0] = uo;
    return hfix_request(USP__REQUEST__REQ_TYPE_SET, s);
}

Usp__Msg *hfix_add(bool allow_partial, const char *obj_path, const char *const *settings, size_t n)
{
    Usp__Add *s = usp_arena_zalloc(H.a, sizeof *s);
    usp__add__init(s);
    s->allow_partial = allow_partial;
    Usp__Add__CreateObject *co = usp_arena_zalloc(H.a, sizeof *co);
    usp__add__create_object__init(co);
    co->obj_path = usp_arena_strdup(H.a, obj_path);
    co->n_param_settings = n;
    co->param_settings = usp_arena_zalloc(H.a, (n + 1) * sizeof *co->param_settings);
    for (size_t i = 0; i < n; i++) {
        Usp__Add__CreateParamSetting *ps = usp_arena_zalloc(H.a, sizeof *ps);
        usp__add__create_param_setting__init(ps);
        bool req;
        split_setting(settings[i], &ps->param, &ps->value, &req);
        ps->required = req;
        co->param_settings[i] = ps;
    }
    s->n_create_objs = 1;
    s->create_objs = usp_arena_zalloc(H.a, sizeof *s->create_objs);
    s->create_objs[0] = co;
    return hfix_request(USP__REQUEST__REQ_TYPE_ADD, s);
}

Usp__Msg *hfix_delete(bool allow_partial, const char *const *paths, size_t n)
{
    Usp__Delete *d = usp_arena_zalloc(H.a, sizeof *d);
    usp__delete__init(d);
    d->allow_partial = allow_partial;
    d->n_obj_paths = n;
    d->obj_paths = usp_arena_zalloc(H.a, (n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++)
        d->obj_paths[i] = usp_arena_strdup(H.a, paths[i]);
    return hfix_request(USP__REQUEST__REQ_TYPE_DELETE, d);
}

Usp__Msg *hfix_operate(const char *command, const char *key, bool send_resp,
                       const char *const *args, size_t n)
{
    Usp__Operate *o = usp_arena_zalloc(H.a, sizeof *o);
    usp__operate__init(o);
    o->command = usp_arena_strdup(H.a, command);
    o->command_key = usp_arena_strdup(H.a, key ? key : "");
    o->send_resp = send_resp;
    o->n_input_args = n;
    o->input_args = usp_arena_zalloc(H.a, (n + 1) * sizeof *o->input_args);
    for (size_t i = 0; i < n; i++) {
        Usp__Operate__InputArgsEntry *e = usp_arena_zalloc(H.a, sizeof *e);
        usp__operate__input_args_entry__init(e);
        bool req;
        split_setting(args[i], &e->key, &e->value, &req);
        o->input_args[i] = e;
    }
    return hfix_request(USP__REQUEST__REQ_TYPE_OPERATE, o);
}

/* ---- reading back ---- */

const char *hfix_value(const char *param_path)
{
    const char *dot = strrchr(param_path, '.');
    CU_ASSERT_FATAL(dot != NULL);
    char *obj = usp_arena_strndup(H.a, param_path, (size_t)(dot - param_path + 1));
    struct usp_dm_inst o;
    if (usp_dm_inst_parse(H.model, obj, &o) != 0)
        return "";
    const struct usp_dm_param *p = usp_dm_object_param(o.obj, dot + 1, strlen(dot + 1));
    if (!p)
        return "";
    char *buf = usp_arena_alloc(H.a, USP_DM_VALUE_MAX + 1);
    if (usp_dm_get(&H.agent, &o, p, buf, USP_DM_VALUE_MAX + 1) != 0)
        return "";
    return buf;
}

bool hfix_exists(const char *obj_path)
{
    struct usp_dm_inst o;
    if (usp_dm_inst_parse(H.model, obj_path, &o) != 0)
        return false;
    return usp_dm_exists(&H.agent, &o);
}

size_t hfix_count(enum usp_dm_event_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < H.nev; i++)
        n += H.ev[i].kind == kind;
    return n;
}

const struct hfix_event *hfix_find(enum usp_dm_event_kind kind, const char *path)
{
    for (size_t i = 0; i < H.nev; i++)
        if (H.ev[i].kind == kind && H.ev[i].path && !strcmp(H.ev[i].path, path))
            return &H.ev[i];
    return NULL;
}

const char *hfix_ev_kv(const struct hfix_event *e, const char *key)
{
    for (uint32_t i = 0; e && i < e->nkv; i++)
        if (!strcmp(e->key[i], key))
            return e->val[i];
    return NULL;
}

Usp__Error *hfix_error(const Usp__Msg *m)
{
    if (!m || m->body->msg_body_case != USP__BODY__MSG_BODY_ERROR)
        return NULL;
    CU_ASSERT(m->header->msg_type == USP__HEADER__MSG_TYPE__ERROR);
    return m->body->error;
}

Usp__Response *hfix_response(const Usp__Msg *m, Usp__Response__RespTypeCase kind)
{
    if (!m || m->body->msg_body_case != USP__BODY__MSG_BODY_RESPONSE ||
        m->body->response->resp_type_case != kind)
        return NULL;
    return m->body->response;
}

struct any_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};

const char *hfix_map_get(void *const *entries, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const struct any_entry *e = entries[i];
        if (!strcmp(e->key, key))
            return e->value;
    }
    return NULL;
}
