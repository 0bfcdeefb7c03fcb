/* The request language (see usp/reqlang.h): words to a USP request Msg.
 *
 * Each command is one row of `cmds`: its options (one table per command
 * that drives parsing, validation and the usage text), how many positional
 * words it takes, and the builder that turns the words into the body. */
#include "usp/reqlang.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "usp/codec.h"

struct pstate;

enum opt_type {
    OPT_FLAG,   /* --name */
    OPT_UINT32, /* --name N or --name=N, decimal 0..4294967295 */
    OPT_STRING, /* --name S or --name=S, any string (empty too) */
};

struct opt {
    const char *name; /* without the leading "--" */
    enum opt_type type;
    const char *metavar; /* what the value is, for the usage text */
    const char *def;     /* default shown in the usage text; NULL: none */
    const char *help;
    size_t off; /* the field of struct pstate the setter writes */
    int (*set)(struct pstate *st, const struct opt *o, const char *val);
};

struct cmd {
    const char *name;
    const char *alias; /* the USP message name spelled out, or NULL */
    const char *args;  /* the positional words, for the usage text */
    const char *summary;
    const char *details; /* further usage lines, each ending in '\n' */
    const struct opt *opts;
    int min_pos;
    int max_pos; /* -1: no limit */
    int (*build)(struct pstate *st, Usp__Msg *msg);
    Usp__Header__MsgType type;
};

/* One parse: option values, positional words and where errors go. */
struct pstate {
    struct usp_arena *a;
    struct usp_req_err *err;
    const struct cmd *cmd;
    /* Written by the option setters through struct opt.off. */
    uint32_t max_depth;
    bool allow_partial;
    bool required;
    bool no_resp;
    bool first_level;
    bool no_params;
    bool no_commands;
    bool no_events;
    bool unique_keys;
    const char *key;
    /* Positional words (arena copies) and their indexes in argv. */
    int npos;
    char **pos;
    int *pos_word;
};

/* ---- errors ----------------------------------------------------------- */

/* A word as error messages quote it: at most ~40 bytes, bytes that do not
 * print as \xHH, so hostile input cannot garble a terminal. */
struct shown {
    char s[64];
};

static struct shown show(const char *w)
{
    static const char hex[] = "0123456789abcdef";
    struct shown r;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)w; *p; p++) {
        if (o >= 40) {
            memcpy(r.s + o, "...", 4);
            return r;
        }
        if (*p >= 0x20 && *p < 0x7f) {
            r.s[o++] = (char)*p;
        } else {
            r.s[o++] = '\\';
            r.s[o++] = 'x';
            r.s[o++] = hex[*p >> 4];
            r.s[o++] = hex[*p & 15];
        }
    }
    r.s[o] = '\0';
    return r;
}

static int fail(struct pstate *st, int word, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct pstate *st, int word, const char *fmt, ...)
{
    va_list ap;
    st->err->word = word;
    va_start(ap, fmt);
    vsnprintf(st->err->msg, sizeof st->err->msg, fmt, ap);
    va_end(ap);
    return USP_EINVAL;
}

static int nomem(struct usp_req_err *err)
{
    err->word = -1;
    snprintf(err->msg, sizeof err->msg, "out of memory");
    return USP_ENOMEM;
}

static void err_reset(struct usp_req_err *err)
{
    err->cmd = NULL;
    err->word = -1;
    err->column = -1;
    err->msg[0] = '\0';
}

/* ---- option setters --------------------------------------------------- */

static void *field(struct pstate *st, const struct opt *o)
{
    return (char *)st + o->off;
}

static int set_flag(struct pstate *st, const struct opt *o, const char *val)
{
    *(bool *)field(st, o) = true;
    return 0;
}

static int set_uint32(struct pstate *st, const struct opt *o, const char *val)
{
    uint64_t v = 0;
    const char *p = val;
    if (!*p)
        return USP_EINVAL;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return USP_EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return USP_EINVAL;
    }
    *(uint32_t *)field(st, o) = (uint32_t)v;
    return 0;
}

static int set_string(struct pstate *st, const struct opt *o, const char *val)
{
    *(const char **)field(st, o) = val;
    return 0;
}

#define FLAG(n, member, h)                                                                         \
    {                                                                                              \
        .name = n, .type = OPT_FLAG, .help = h, .off = offsetof(struct pstate, member),            \
        .set = set_flag                                                                            \
    }
#define OPT_END                                                                                    \
    {                                                                                              \
        .name = NULL                                                                               \
    }

static const struct opt get_opts[] = {
    {.name = "max-depth",
     .type = OPT_UINT32,
     .metavar = "N",
     .def = "0",
     .help = "levels of sub-objects to return; 0 returns the whole subtree (max_depth)",
     .off = offsetof(struct pstate, max_depth),
     .set = set_uint32},
    OPT_END,
};

static const struct opt set_opts[] = {
    FLAG("allow-partial", allow_partial, "let the other objects succeed when one fails"),
    FLAG("required", required, "mark every setting required, as if written PARAM:=VALUE"),
    OPT_END,
};

static const struct opt delete_opts[] = {
    FLAG("allow-partial", allow_partial, "let the other objects be deleted when one fails"),
    OPT_END,
};

static const struct opt operate_opts[] = {
    FLAG("no-resp", no_resp, "ask for no OperateResp (send_resp false)"),
    {.name = "key",
     .type = OPT_STRING,
     .metavar = "K",
     .def = "\"\"",
     .help = "command key, echoed in the OperationComplete notification",
     .off = offsetof(struct pstate, key),
     .set = set_string},
    OPT_END,
};

static const struct opt instances_opts[] = {
    FLAG("first-level", first_level, "only the instances of the given tables, not nested ones"),
    OPT_END,
};

static const struct opt gsdm_opts[] = {
    FLAG("first-level", first_level, "only the object and its direct child objects"),
    FLAG("no-params", no_params, "leave out parameters (return_params false)"),
    FLAG("no-commands", no_commands, "leave out commands (return_commands false)"),
    FLAG("no-events", no_events, "leave out events (return_events false)"),
    FLAG("unique-keys", unique_keys, "return unique key sets (return_unique_key_sets, USP 1.4)"),
    OPT_END,
};

static const struct opt no_opts[] = {
    OPT_END,
};

/* ---- building the Msg ------------------------------------------------- */

static void *alloc(struct pstate *st, size_t n)
{
    return usp_arena_alloc(st->a, n ? n : 1);
}

static Usp__Request *request(struct pstate *st, Usp__Msg *msg)
{
    Usp__Request *req = alloc(st, sizeof *req);
    if (!req)
        return NULL;
    usp__request__init(req);
    msg->body->msg_body_case = USP__BODY__MSG_BODY_REQUEST;
    msg->body->request = req;
    return req;
}

/* The positional words as a string array; `what` names them in errors and
 * `obj` demands object paths (ending in '.'). */
static int path_list(struct pstate *st, const char *what, bool obj, char ***out, size_t *n)
{
    char **v = alloc(st, (size_t)st->npos * sizeof *v);
    if (!v)
        return nomem(st->err);
    for (int i = 0; i < st->npos; i++) {
        const char *p = st->pos[i];
        size_t len = strlen(p);
        if (len == 0)
            return fail(st, st->pos_word[i], "%s must not be empty", what);
        if (obj && p[len - 1] != '.')
            return fail(st, st->pos_word[i], "%s '%s' must end in '.'", what, show(p).s);
        v[i] = st->pos[i];
    }
    *out = v;
    *n = (size_t)st->npos;
    return 0;
}

static int build_get(struct pstate *st, Usp__Msg *msg)
{
    Usp__Request *req = request(st, msg);
    Usp__Get *get = alloc(st, sizeof *get);
    if (!req || !get)
        return nomem(st->err);
    usp__get__init(get);
    int rc = path_list(st, "PATH", false, &get->param_paths, &get->n_param_paths);
    if (rc)
        return rc;
    get->max_depth = st->max_depth;
    req->req_type_case = USP__REQUEST__REQ_TYPE_GET;
    req->get = get;
    return 0;
}

/* Set and Add share their grammar: settings grouped by object path. */
struct setting {
    const char *param;
    const char *value;
    bool required;
    size_t group;
};

struct group {
    const char *obj;
    int word; /* where the group was named first */
    size_t n; /* settings in it */
};

struct groups {
    struct group *g;
    size_t ng;
    struct setting *s;
    size_t ns;
};

/* Where the name of a NAME=VALUE word ends: the first '=' outside a search
 * expression "[...]" (and outside "..." inside one); NULL if none. Sets
 * *last_dot to the last '.' before it outside expressions (or NULL). */
static const char *name_end(const char *w, const char **last_dot)
{
    bool in_expr = false, in_str = false;
    *last_dot = NULL;
    for (const char *p = w; *p; p++) {
        if (in_str) {
            if (*p == '"')
                in_str = false;
        } else if (in_expr) {
            if (*p == '"')
                in_str = true;
            else if (*p == ']')
                in_expr = false;
        } else if (*p == '[') {
            in_expr = true;
        } else if (*p == '.') {
            *last_dot = p;
        } else if (*p == '=') {
            return p;
        }
    }
    return NULL;
}

static size_t add_group(struct groups *gs, const char *obj, int word)
{
    gs->g[gs->ng] = (struct group){.obj = obj, .word = word, .n = 0};
    return gs->ng++;
}

/* Reads the positional words of set/add into groups and settings. */
static int read_settings(struct pstate *st, struct groups *gs)
{
    size_t cur = SIZE_MAX;
    gs->g = alloc(st, (size_t)st->npos * sizeof *gs->g);
    gs->s = alloc(st, (size_t)st->npos * sizeof *gs->s);
    gs->ng = gs->ns = 0;
    if (!gs->g || !gs->s)
        return nomem(st->err);
    for (int i = 0; i < st->npos; i++) {
        const char *w = st->pos[i], *dot;
        int wi = st->pos_word[i];
        const char *eq = name_end(w, &dot);
        if (!eq) {
            size_t len = strlen(w);
            if (len == 0 || w[len - 1] != '.')
                return fail(st, wi, "'%s' is neither an object path ending in '.' nor PARAM=VALUE",
                            show(w).s);
            cur = add_group(gs, w, wi);
            continue;
        }
        struct setting *s = &gs->s[gs->ns];
        const char *name_stop = eq;
        s->required = st->required;
        s->value = eq + 1;
        if (name_stop > w && name_stop[-1] == ':') {
            s->required = true;
            name_stop--;
        }
        if (name_stop == w)
            return fail(st, wi, "'%s': no parameter name before '='", show(w).s);
        if (dot) {
            /* A full parameter path: group it under its object path. */
            if (dot + 1 >= name_stop)
                return fail(st, wi, "'%s': no parameter name after the last '.'", show(w).s);
            size_t objlen = (size_t)(dot + 1 - w);
            size_t gi = SIZE_MAX;
            for (size_t k = gs->ng; k-- > 0;) {
                if (strlen(gs->g[k].obj) == objlen && !memcmp(gs->g[k].obj, w, objlen)) {
                    gi = k;
                    break;
                }
            }
            if (gi == SIZE_MAX) {
                char *obj = usp_arena_strndup(st->a, w, objlen);
                if (!obj)
                    return nomem(st->err);
                gi = add_group(gs, obj, wi);
            }
            s->group = gi;
            s->param = usp_arena_strndup(st->a, dot + 1, (size_t)(name_stop - dot - 1));
        } else {
            if (cur == SIZE_MAX)
                return fail(st, wi,
                            "'%s': no OBJPATH before it (give the object path first, or the "
                            "full parameter path)",
                            show(w).s);
            s->group = cur;
            s->param = usp_arena_strndup(st->a, w, (size_t)(name_stop - w));
        }
        if (!s->param)
            return nomem(st->err);
        gs->g[s->group].n++;
        gs->ns++;
    }
    return 0;
}

static int build_set(struct pstate *st, Usp__Msg *msg)
{
    struct groups gs;
    int rc = read_settings(st, &gs);
    if (rc)
        return rc;
    for (size_t k = 0; k < gs.ng; k++)
        if (gs.g[k].n == 0)
            return fail(st, gs.g[k].word, "OBJPATH '%s' has no PARAM=VALUE after it",
                        show(gs.g[k].obj).s);
    Usp__Request *req = request(st, msg);
    Usp__Set *set = alloc(st, sizeof *set);
    Usp__Set__UpdateObject **objs = alloc(st, gs.ng * sizeof *objs);
    if (!req || !set || !objs)
        return nomem(st->err);
    usp__set__init(set);
    set->allow_partial = st->allow_partial;
    for (size_t k = 0; k < gs.ng; k++) {
        Usp__Set__UpdateObject *o = alloc(st, sizeof *o);
        if (!o)
            return nomem(st->err);
        usp__set__update_object__init(o);
        o->param_settings = alloc(st, gs.g[k].n * sizeof *o->param_settings);
        if (!o->param_settings)
            return nomem(st->err);
        o->obj_path = (char *)gs.g[k].obj;
        objs[k] = o;
    }
    for (size_t i = 0; i < gs.ns; i++) {
        Usp__Set__UpdateObject *o = objs[gs.s[i].group];
        Usp__Set__UpdateParamSetting *p = alloc(st, sizeof *p);
        if (!p)
            return nomem(st->err);
        usp__set__update_param_setting__init(p);
        p->param = (char *)gs.s[i].param;
        p->value = (char *)gs.s[i].value;
        p->required = gs.s[i].required;
        o->param_settings[o->n_param_settings++] = p;
    }
    set->update_objs = objs;
    set->n_update_objs = gs.ng;
    req->req_type_case = USP__REQUEST__REQ_TYPE_SET;
    req->set = set;
    return 0;
}

static int build_add(struct pstate *st, Usp__Msg *msg)
{
    struct groups gs;
    int rc = read_settings(st, &gs);
    if (rc)
        return rc;
    Usp__Request *req = request(st, msg);
    Usp__Add *add = alloc(st, sizeof *add);
    Usp__Add__CreateObject **objs = alloc(st, gs.ng * sizeof *objs);
    if (!req || !add || !objs)
        return nomem(st->err);
    usp__add__init(add);
    add->allow_partial = st->allow_partial;
    for (size_t k = 0; k < gs.ng; k++) {
        Usp__Add__CreateObject *o = alloc(st, sizeof *o);
        if (!o)
            return nomem(st->err);
        usp__add__create_object__init(o);
        if (gs.g[k].n && !(o->param_settings = alloc(st, gs.g[k].n * sizeof *o->param_settings)))
            return nomem(st->err);
        o->obj_path = (char *)gs.g[k].obj;
        objs[k] = o;
    }
    for (size_t i = 0; i < gs.ns; i++) {
        Usp__Add__CreateObject *o = objs[gs.s[i].group];
        Usp__Add__CreateParamSetting *p = alloc(st, sizeof *p);
        if (!p)
            return nomem(st->err);
        usp__add__create_param_setting__init(p);
        p->param = (char *)gs.s[i].param;
        p->value = (char *)gs.s[i].value;
        p->required = gs.s[i].required;
        o->param_settings[o->n_param_settings++] = p;
    }
    add->create_objs = objs;
    add->n_create_objs = gs.ng;
    req->req_type_case = USP__REQUEST__REQ_TYPE_ADD;
    req->add = add;
    return 0;
}

static int build_delete(struct pstate *st, Usp__Msg *msg)
{
    Usp__Request *req = request(st, msg);
    Usp__Delete *del = alloc(st, sizeof *del);
    if (!req || !del)
        return nomem(st->err);
    usp__delete__init(del);
    int rc = path_list(st, "OBJPATH", true, &del->obj_paths, &del->n_obj_paths);
    if (rc)
        return rc;
    del->allow_partial = st->allow_partial;
    req->req_type_case = USP__REQUEST__REQ_TYPE_DELETE;
    req->delete_ = del;
    return 0;
}

static int build_operate(struct pstate *st, Usp__Msg *msg)
{
    const char *cmdpath = st->pos[0];
    size_t len = strlen(cmdpath);
    if (len < 3 || strcmp(cmdpath + len - 2, "()") != 0)
        return fail(st, st->pos_word[0], "CMDPATH '%s' must end in '()'", show(cmdpath).s);
    Usp__Request *req = request(st, msg);
    Usp__Operate *op = alloc(st, sizeof *op);
    size_t nargs = (size_t)st->npos - 1;
    Usp__Operate__InputArgsEntry **args = alloc(st, nargs * sizeof *args);
    if (!req || !op || !args)
        return nomem(st->err);
    usp__operate__init(op);
    for (size_t i = 0; i < nargs; i++) {
        const char *w = st->pos[i + 1];
        int wi = st->pos_word[i + 1];
        const char *eq = strchr(w, '=');
        if (!eq)
            return fail(st, wi, "'%s' is not ARG=VALUE", show(w).s);
        if (eq == w)
            return fail(st, wi, "'%s': no argument name before '='", show(w).s);
        size_t klen = (size_t)(eq - w);
        for (size_t k = 0; k < i; k++)
            if (strlen(args[k]->key) == klen && !memcmp(args[k]->key, w, klen))
                return fail(st, wi, "input argument '%s' is given twice", show(args[k]->key).s);
        Usp__Operate__InputArgsEntry *e = alloc(st, sizeof *e);
        if (!e)
            return nomem(st->err);
        usp__operate__input_args_entry__init(e);
        if (!(e->key = usp_arena_strndup(st->a, w, klen)))
            return nomem(st->err);
        e->value = (char *)eq + 1;
        args[i] = e;
    }
    op->command = (char *)cmdpath;
    if (st->key)
        op->command_key = (char *)st->key; /* an arena copy, like all words */
    op->send_resp = !st->no_resp;
    op->input_args = args;
    op->n_input_args = nargs;
    req->req_type_case = USP__REQUEST__REQ_TYPE_OPERATE;
    req->operate = op;
    return 0;
}

static int build_instances(struct pstate *st, Usp__Msg *msg)
{
    Usp__Request *req = request(st, msg);
    Usp__GetInstances *gi = alloc(st, sizeof *gi);
    if (!req || !gi)
        return nomem(st->err);
    usp__get_instances__init(gi);
    int rc = path_list(st, "OBJPATH", true, &gi->obj_paths, &gi->n_obj_paths);
    if (rc)
        return rc;
    gi->first_level_only = st->first_level;
    req->req_type_case = USP__REQUEST__REQ_TYPE_GET_INSTANCES;
    req->get_instances = gi;
    return 0;
}

static int build_gsdm(struct pstate *st, Usp__Msg *msg)
{
    Usp__Request *req = request(st, msg);
    Usp__GetSupportedDM *g = alloc(st, sizeof *g);
    if (!req || !g)
        return nomem(st->err);
    usp__get_supported_dm__init(g);
    int rc = path_list(st, "OBJPATH", true, &g->obj_paths, &g->n_obj_paths);
    if (rc)
        return rc;
    g->first_level_only = st->first_level;
    g->return_params = !st->no_params;
    g->return_commands = !st->no_commands;
    g->return_events = !st->no_events;
    g->return_unique_key_sets = st->unique_keys;
    req->req_type_case = USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM;
    req->get_supported_dm = g;
    return 0;
}

static int build_gsp(struct pstate *st, Usp__Msg *msg)
{
    const char *versions = USP_VERSIONS_SUPPORTED;
    int wi = -1;
    if (st->npos == 1) {
        versions = st->pos[0];
        wi = st->pos_word[0];
    }
    /* Check each comma-separated item is Major.Minor. */
    for (const char *p = versions;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char *item = usp_arena_strndup(st->a, p, len);
        unsigned major, minor;
        if (!item)
            return nomem(st->err);
        if (len == 0)
            return fail(st, wi, "VERSIONS '%s' has an empty item", show(versions).s);
        if (usp_version_parse(item, &major, &minor) != 0)
            return fail(st, wi, "VERSIONS: '%s' is not a version Major.Minor such as 1.4",
                        show(item).s);
        if (!c)
            break;
        p = c + 1;
    }
    Usp__Request *req = request(st, msg);
    Usp__GetSupportedProtocol *g = alloc(st, sizeof *g);
    if (!req || !g)
        return nomem(st->err);
    usp__get_supported_protocol__init(g);
    if (!(g->controller_supported_protocol_versions = usp_arena_strdup(st->a, versions)))
        return nomem(st->err);
    req->req_type_case = USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL;
    req->get_supported_protocol = g;
    return 0;
}

static int build_notify_resp(struct pstate *st, Usp__Msg *msg)
{
    Usp__Response *resp = alloc(st, sizeof *resp);
    Usp__NotifyResp *nr = alloc(st, sizeof *nr);
    if (!resp || !nr)
        return nomem(st->err);
    usp__response__init(resp);
    usp__notify_resp__init(nr);
    nr->subscription_id = st->pos[0];
    resp->resp_type_case = USP__RESPONSE__RESP_TYPE_NOTIFY_RESP;
    resp->notify_resp = nr;
    msg->body->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
    msg->body->response = resp;
    return 0;
}

static const struct cmd cmds[] = {
    {.name = "get",
     .args = "PATH...",
     .summary = "read parameter values (Get)",
     .details = "Each PATH is a parameter, object or search path, e.g. Device.DeviceInfo.\n",
     .opts = get_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_get,
     .type = USP__HEADER__MSG_TYPE__GET},
    {.name = "set",
     .args = "[OBJPATH] SETTING...",
     .summary = "change parameter values (Set)",
     .details = "A SETTING is PARAM=VALUE, for the last OBJPATH before it, or PATH=VALUE with\n"
                "a full parameter path; settings of the same object path go into one\n"
                "update_objs entry. Write PARAM:=VALUE to mark a setting required.\n"
                "The name ends at the first '=' outside a search expression [...].\n"
                "Example: set Device.WiFi.SSID.1. Enable:=true SSID=home Device.Time.Enable=1\n",
     .opts = set_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_set,
     .type = USP__HEADER__MSG_TYPE__SET},
    {.name = "add",
     .args = "OBJPATH [SETTING...] [OBJPATH [SETTING...]]...",
     .summary = "create objects (Add)",
     .details = "Each OBJPATH (a table path ending in '.') creates one object with the\n"
                "PARAM=VALUE settings after it; PATH=VALUE settings join the object of\n"
                "their table path. Write PARAM:=VALUE to mark a setting required.\n"
                "Example: add Device.NAT.PortMapping. Alias:=web ExternalPort=8080\n",
     .opts = set_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_add,
     .type = USP__HEADER__MSG_TYPE__ADD},
    {.name = "delete",
     .args = "OBJPATH...",
     .summary = "delete objects (Delete)",
     .details = "Each OBJPATH is an instance path or a search path ending in '.'.\n",
     .opts = delete_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_delete,
     .type = USP__HEADER__MSG_TYPE__DELETE},
    {.name = "operate",
     .args = "CMDPATH [ARG=VALUE...]",
     .summary = "run a command (Operate)",
     .details = "CMDPATH ends in '()'; each ARG=VALUE is one input argument.\n"
                "Example: operate --key k1 Device.IP.Diagnostics.IPPing() Host=192.0.2.1\n",
     .opts = operate_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_operate,
     .type = USP__HEADER__MSG_TYPE__OPERATE},
    {.name = "instances",
     .alias = "get-instances",
     .args = "OBJPATH...",
     .summary = "list object instances (GetInstances)",
     .details = "Each OBJPATH is a table path or search path ending in '.'.\n",
     .opts = instances_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_instances,
     .type = USP__HEADER__MSG_TYPE__GET_INSTANCES},
    {.name = "gsdm",
     .alias = "get-supported-dm",
     .args = "OBJPATH...",
     .summary = "describe the supported data model (GetSupportedDM)",
     .details = "Each OBJPATH is an object path ending in '.', e.g. Device.WiFi.SSID.{i}.\n"
                "Parameters, commands and events are returned unless left out.\n",
     .opts = gsdm_opts,
     .min_pos = 1,
     .max_pos = -1,
     .build = build_gsdm,
     .type = USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM},
    {.name = "gsp",
     .alias = "get-supported-protocol",
     .args = "[VERSIONS]",
     .summary = "ask for the supported USP versions (GetSupportedProtocol)",
     .details =
         "VERSIONS is a comma-separated list of Major.Minor, by default " USP_VERSIONS_SUPPORTED
         ".\n",
     .opts = no_opts,
     .min_pos = 0,
     .max_pos = 1,
     .build = build_gsp,
     .type = USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO},
    {.name = "notify-resp",
     .args = "SUBID",
     .summary = "acknowledge a notification (NotifyResp)",
     .details = "SUBID is the subscription_id of the Notify; \"\" for an OnBoardRequest.\n",
     .opts = no_opts,
     .min_pos = 1,
     .max_pos = 1,
     .build = build_notify_resp,
     .type = USP__HEADER__MSG_TYPE__NOTIFY_RESP},
};

#define NCMDS (sizeof cmds / sizeof cmds[0])

static const struct cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (!strcmp(cmds[i].name, name) || (cmds[i].alias && !strcmp(cmds[i].alias, name)))
            return &cmds[i];
    return NULL;
}

static const struct opt *find_opt(const struct cmd *c, const char *name, size_t len)
{
    for (const struct opt *o = c->opts; o->name; o++)
        if (strlen(o->name) == len && !memcmp(o->name, name, len))
            return o;
    return NULL;
}

/* ---- parsing ---------------------------------------------------------- */

/* Applies the options and collects the positional words (from `words`,
 * arena copies of argv). */
static int read_words(struct pstate *st, int argc, char **words)
{
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        char *w = words[i];
        if (opts_done || w[0] != '-' || w[1] == '\0') {
            st->pos[st->npos] = w;
            st->pos_word[st->npos++] = i;
            continue;
        }
        if (!strcmp(w, "--")) {
            opts_done = true;
            continue;
        }
        if (w[1] != '-')
            return fail(st, i, "unknown option '%s' (use -- before a word that starts with '-')",
                        show(w).s);
        const char *name = w + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = find_opt(st->cmd, name, len);
        if (!o) {
            char n[48];
            snprintf(n, sizeof n, "%.*s", len > 44 ? 44 : (int)len, name);
            return fail(st, i, "unknown option '--%s'", show(n).s);
        }
        const char *val = NULL;
        if (o->type == OPT_FLAG) {
            if (eq)
                return fail(st, i, "option --%s takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = words[++i];
        } else {
            return fail(st, i, "option --%s needs a value %s", o->name, o->metavar);
        }
        if (o->set(st, o, val) != 0)
            return fail(st, i, "option --%s: '%s' is not %s", o->name, show(val).s,
                        o->type == OPT_UINT32 ? "a whole number from 0 to 4294967295"
                                              : "a valid value");
    }
    const struct cmd *c = st->cmd;
    if (st->npos < c->min_pos)
        return fail(st, -1, "missing arguments: expected %s", c->args);
    if (c->max_pos >= 0 && st->npos > c->max_pos)
        return fail(st, st->pos_word[c->max_pos], "unexpected argument '%s'",
                    show(st->pos[c->max_pos]).s);
    return 0;
}

int usp_req_parse(struct usp_arena *a, int argc, char **argv, const char *msg_id, Usp__Msg **out,
                  struct usp_req_err *err)
{
    struct usp_req_err scratch;
    struct pstate st = {.a = a, .err = err ? err : &scratch};
    err_reset(st.err);
    *out = NULL;
    if (!msg_id || !*msg_id)
        return fail(&st, -1, "the msg_id must not be empty");
    if (argc < 1 || !argv || !argv[0])
        return fail(&st, -1, "no request given");
    if (!(st.cmd = find_cmd(argv[0]))) {
        char list[160];
        size_t o = 0;
        for (size_t i = 0; i < NCMDS && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", cmds[i].name);
        return fail(&st, 0, "unknown request '%s' (requests: %s)", show(argv[0]).s, list);
    }
    st.err->cmd = st.cmd->name;

    /* Copy the words so the Msg does not depend on argv. */
    char **words = alloc(&st, (size_t)argc * sizeof *words);
    st.pos = alloc(&st, (size_t)argc * sizeof *st.pos);
    st.pos_word = alloc(&st, (size_t)argc * sizeof *st.pos_word);
    if (!words || !st.pos || !st.pos_word)
        return nomem(st.err);
    for (int i = 0; i < argc; i++) {
        if (!argv[i])
            return fail(&st, i, "word %d is missing (NULL)", i);
        if (!(words[i] = usp_arena_strdup(a, argv[i])))
            return nomem(st.err);
    }
    int rc = read_words(&st, argc, words);
    if (rc)
        return rc;

    Usp__Msg *msg = alloc(&st, sizeof *msg);
    Usp__Header *hdr = alloc(&st, sizeof *hdr);
    Usp__Body *body = alloc(&st, sizeof *body);
    if (!msg || !hdr || !body)
        return nomem(st.err);
    usp__msg__init(msg);
    usp__header__init(hdr);
    usp__body__init(body);
    if (!(hdr->msg_id = usp_arena_strdup(a, msg_id)))
        return nomem(st.err);
    hdr->msg_type = st.cmd->type;
    msg->header = hdr;
    msg->body = body;
    if ((rc = st.cmd->build(&st, msg)))
        return rc;
    *out = msg;
    return 0;
}

/* ---- lines ------------------------------------------------------------ */

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int split_err(struct usp_req_err *err, size_t col, const char *what)
{
    err->word = -1;
    err->column = (int)col;
    snprintf(err->msg, sizeof err->msg, "%s at column %zu", what, col + 1);
    return USP_EINVAL;
}

/* usp_req_split, also giving the byte offset where each word starts. */
static int split(struct usp_arena *a, const char *line, int *argc, char ***argv, int **cols,
                 struct usp_req_err *err)
{
    size_t len = strlen(line);
    *argc = 0;
    if (len > INT_MAX / 2) {
        err->word = -1;
        snprintf(err->msg, sizeof err->msg, "the line is too long (%zu bytes)", len);
        return USP_EINVAL;
    }
    /* n words take at least 2n-1 bytes, and their text with one NUL each
     * takes at most len + 1 bytes. */
    size_t maxw = len / 2 + 2;
    char **v = usp_arena_alloc(a, maxw * sizeof *v);
    int *c = usp_arena_alloc(a, maxw * sizeof *c);
    char *out = usp_arena_alloc(a, len + 2);
    if (!v || !c || !out)
        return nomem(err);
    int n = 0;
    size_t i = 0;
    for (;;) {
        while (blank(line[i]) || (line[i] == '\\' && line[i + 1] == '\n'))
            i += line[i] == '\\' ? 2 : 1;
        if (!line[i] || line[i] == '#')
            break;
        c[n] = (int)i;
        v[n] = out;
        while (line[i] && !blank(line[i])) {
            size_t q = i;
            if (line[i] == '\'') {
                for (i++; line[i] && line[i] != '\''; i++)
                    *out++ = line[i];
                if (!line[i])
                    return split_err(err, q, "unterminated single quote");
                i++;
            } else if (line[i] == '"') {
                for (i++; line[i] && line[i] != '"'; i++) {
                    if (line[i] == '\\' && (line[i + 1] == '"' || line[i + 1] == '\\'))
                        i++;
                    *out++ = line[i];
                }
                if (!line[i])
                    return split_err(err, q, "unterminated double quote");
                i++;
            } else if (line[i] == '\\') {
                if (!line[i + 1])
                    return split_err(err, q, "unfinished escape: the line ends after '\\'");
                if (line[i + 1] != '\n')
                    *out++ = line[i + 1];
                i += 2;
            } else {
                *out++ = line[i++];
            }
        }
        *out++ = '\0';
        n++;
    }
    v[n] = NULL;
    *argc = n;
    *argv = v;
    if (cols)
        *cols = c;
    return 0;
}

int usp_req_split(struct usp_arena *a, const char *line, int *argc, char ***argv,
                  struct usp_req_err *err)
{
    struct usp_req_err scratch;
    if (!err)
        err = &scratch;
    err_reset(err);
    return split(a, line, argc, argv, NULL, err);
}

int usp_req_parse_line(struct usp_arena *a, const char *line, const char *msg_id, Usp__Msg **out,
                       struct usp_req_err *err)
{
    struct usp_req_err scratch;
    int argc, *cols;
    char **argv;
    if (!err)
        err = &scratch;
    err_reset(err);
    *out = NULL;
    int rc = split(a, line, &argc, &argv, &cols, err);
    if (rc)
        return rc;
    if (argc == 0) {
        snprintf(err->msg, sizeof err->msg, "empty request");
        return USP_ENOENT;
    }
    rc = usp_req_parse(a, argc, argv, msg_id, out, err);
    if (rc && err->word >= 0 && err->word < argc)
        err->column = cols[err->word];
    return rc;
}

/* ---- usage ------------------------------------------------------------ */

static void synopsis(FILE *f, const struct cmd *c)
{
    fprintf(f, "%s", c->name);
    for (const struct opt *o = c->opts; o->name; o++)
        fprintf(f, " [--%s%s%s]", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
    fprintf(f, " %s\n", c->args);
}

int usp_req_usage(FILE *f, const char *name)
{
    if (!name) {
        fprintf(f, "requests:\n");
        for (size_t i = 0; i < NCMDS; i++)
            fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].summary);
        return 0;
    }
    const struct cmd *c = find_cmd(name);
    if (!c)
        return USP_ENOENT;
    fprintf(f, "request: ");
    synopsis(f, c);
    fprintf(f, "%c%s", toupper((unsigned char)c->summary[0]), c->summary + 1);
    if (c->alias)
        fprintf(f, "; also spelt %s", c->alias);
    fprintf(f, ".\n\n%s", c->details);
    if (c->opts->name)
        fprintf(f, "\noptions:\n");
    for (const struct opt *o = c->opts; o->name; o++) {
        char head[40];
        snprintf(head, sizeof head, "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(f, "  %-18s %s", head, o->help);
        if (o->def)
            fprintf(f, " (default %s)", o->def);
        fprintf(f, "\n");
    }
    return 0;
}

const char *usp_req_command_name(size_t i)
{
    return i < NCMDS ? cmds[i].name : NULL;
}
