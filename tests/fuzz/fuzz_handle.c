/* libFuzzer target for usp_agent_handle: the first byte picks the request
 * kind, the second its flags, the rest are newline-separated paths and
 * PARAM=VALUE settings ("!" marks a required one). Async work is run, then
 * dropped with agent NULL, as the fleet does. Run from the source root. */
#include "usp/dm.h"
#include "usp/dm_schema.h"
#include "usp/handler.h"
#include "usp/profile.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct usp_dm_schema *S;
static struct usp_profile *P;
static struct usp_dm_model *M;
struct tm_ {
    usp_timer_fn fn;
    void *arg;
};
static struct tm_ timers[64];
static int nt;
static int sched(void *ctx, struct usp_dm_agent *a, uint32_t d, usp_timer_fn fn, void *arg)
{
    if (nt == 64)
        return USP_ENOMEM;
    timers[nt].fn = fn;
    timers[nt].arg = arg;
    nt++;
    return 0;
}
static void emit(void *ctx, struct usp_dm_agent *a, const struct usp_dm_event_info *ev)
{
    if (ev->path)
        (void)strlen(ev->path);
    for (uint32_t i = 0; i < ev->nkv; i++)
        (void)strlen(ev->kv[i].value);
}
static bool allowed(void *ctx, const struct usp_dm_agent *a, const char *c, const char *p,
                    unsigned perm)
{
    return strstr(p, "Radio") == NULL || perm == USP_PERM_READ;
}

static char **split(struct usp_arena *a, const char *s, size_t n, size_t *cnt)
{
    char **v = usp_arena_zalloc(a, (n + 2) * sizeof *v);
    size_t k = 0, st = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || s[i] == '\n') {
            v[k++] = usp_arena_strndup(a, s + st, i - st);
            st = i + 1;
        }
    *cnt = k;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S) {
        if (usp_dm_load_file("datamodels/device-2-uspsim.xml", 0, &S, NULL))
            abort();
        if (usp_profile_load("tests/unit/data/handle/test.prof", &P, NULL))
            abort();
        if (usp_dm_model_new(S, P, &M, NULL))
            abort();
    }
    if (size < 2)
        return 0;
    struct usp_dm_agent ag;
    usp_dm_agent_init(&ag, M, 3, "os::x", 1700000000);
    struct usp_agent_env env = {.emit = emit, .schedule = sched, .allowed = allowed};
    struct usp_arena *a = usp_arena_new(0);
    for (int round = 0; round < 2; round++) {
        unsigned kind = data[0] % 8, fl = data[1];
        size_t cnt;
        char **l = split(a, (const char *)data + 2, size - 2, &cnt);
        Usp__Msg m = USP__MSG__INIT;
        Usp__Header h = USP__HEADER__INIT;
        Usp__Body b = USP__BODY__INIT;
        Usp__Request r = USP__REQUEST__INIT;
        h.msg_id = "f";
        m.header = &h;
        m.body = &b;
        b.msg_body_case = USP__BODY__MSG_BODY_REQUEST;
        b.request = &r;
        Usp__Get g = USP__GET__INIT;
        Usp__GetInstances gi = USP__GET_INSTANCES__INIT;
        Usp__GetSupportedDM gs = USP__GET_SUPPORTED_DM__INIT;
        Usp__Delete d = USP__DELETE__INIT;
        Usp__Set s = USP__SET__INIT;
        Usp__Add ad = USP__ADD__INIT;
        Usp__Operate op = USP__OPERATE__INIT;
        Usp__Set__UpdateObject uo = USP__SET__UPDATE_OBJECT__INIT, *uop = &uo;
        Usp__Add__CreateObject co = USP__ADD__CREATE_OBJECT__INIT, *cop = &co;
        switch (kind) {
        case 0:
            g.param_paths = l;
            g.n_param_paths = cnt;
            g.max_depth = fl % 4;
            r.req_type_case = USP__REQUEST__REQ_TYPE_GET;
            r.get = &g;
            break;
        case 1:
            gi.obj_paths = l;
            gi.n_obj_paths = cnt;
            gi.first_level_only = fl & 1;
            r.req_type_case = USP__REQUEST__REQ_TYPE_GET_INSTANCES;
            r.get_instances = &gi;
            break;
        case 2:
            gs.obj_paths = l;
            gs.n_obj_paths = cnt;
            gs.first_level_only = fl & 1;
            gs.return_params = fl & 2;
            gs.return_commands = fl & 4;
            gs.return_events = fl & 8;
            gs.return_unique_key_sets = fl & 16;
            r.req_type_case = USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM;
            r.get_supported_dm = &gs;
            break;
        case 3:
            d.obj_paths = l;
            d.n_obj_paths = cnt;
            d.allow_partial = fl & 1;
            r.req_type_case = USP__REQUEST__REQ_TYPE_DELETE;
            r.delete_ = &d;
            break;
        case 4:
        case 5:
        case 6: {
            size_t np = cnt ? cnt - 1 : 0;
            Usp__Set__UpdateParamSetting **sp = usp_arena_zalloc(a, (np + 1) * sizeof *sp);
            Usp__Add__CreateParamSetting **cp = usp_arena_zalloc(a, (np + 1) * sizeof *cp);
            Usp__Operate__InputArgsEntry **ia = usp_arena_zalloc(a, (np + 1) * sizeof *ia);
            for (size_t i = 0; i < np; i++) {
                char *t = l[i + 1];
                bool req = t[0] == '!';
                if (req)
                    t++;
                char *eq = strchr(t, '=');
                char *v = eq ? eq + 1 : "";
                if (eq)
                    *eq = 0;
                sp[i] = usp_arena_zalloc(a, sizeof **sp);
                usp__set__update_param_setting__init(sp[i]);
                sp[i]->param = t;
                sp[i]->value = v;
                sp[i]->required = req;
                cp[i] = usp_arena_zalloc(a, sizeof **cp);
                usp__add__create_param_setting__init(cp[i]);
                cp[i]->param = t;
                cp[i]->value = v;
                cp[i]->required = req;
                ia[i] = usp_arena_zalloc(a, sizeof **ia);
                usp__operate__input_args_entry__init(ia[i]);
                ia[i]->key = t;
                ia[i]->value = v;
            }
            const char *p0 = cnt ? l[0] : "";
            if (kind == 4) {
                uo.obj_path = (char *)p0;
                uo.param_settings = sp;
                uo.n_param_settings = np;
                s.update_objs = &uop;
                s.n_update_objs = 1;
                s.allow_partial = fl & 1;
                r.req_type_case = USP__REQUEST__REQ_TYPE_SET;
                r.set = &s;
            } else if (kind == 5) {
                co.obj_path = (char *)p0;
                co.param_settings = cp;
                co.n_param_settings = np;
                ad.create_objs = &cop;
                ad.n_create_objs = 1;
                ad.allow_partial = fl & 1;
                r.req_type_case = USP__REQUEST__REQ_TYPE_ADD;
                r.add = &ad;
            } else {
                op.command = (char *)p0;
                op.command_key = "k";
                op.send_resp = fl & 1;
                op.input_args = ia;
                op.n_input_args = np;
                r.req_type_case = USP__REQUEST__REQ_TYPE_OPERATE;
                r.operate = &op;
            }
            break;
        }
        default:
            g.param_paths = l;
            g.n_param_paths = cnt;
            r.req_type_case = USP__REQUEST__REQ_TYPE_GET;
            r.get = &g;
            break;
        }
        Usp__Msg *resp;
        if (usp_agent_handle(&ag, &env, "ctrl-1", &m, a, &resp))
            abort();
        if (resp) {
            uint8_t *buf;
            size_t len;
            if (usp_msg_encode(a, resp, &buf, &len))
                abort();
        }
        for (int i = 0; i < nt; i++)
            timers[i].fn(round ? NULL : &ag, &env, timers[i].arg);
        nt = 0;
    }
    usp_arena_free(a);
    usp_dm_agent_cleanup(&ag);
    return 0;
}
