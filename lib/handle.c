/* Agent-side dispatch of USP messages and the helpers the handlers share.
 *
 * Every answer echoes the request's msg_id (R-MSG.9) and is built in the
 * caller's arena. The body decides what a message is, not the header's
 * msg_type (R-MSG.10). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handle_int.h"

int handle__push(struct usp_arena *a, struct hvec *v, void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        void **nv = usp_arena_realloc(a, v->v, v->cap * sizeof *nv, cap * sizeof *nv);
        if (!nv)
            return USP_ENOMEM;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = item;
    return 0;
}

bool handle__allowed(const struct hctx *c, const char *path, unsigned perm)
{
    if (!c->env || !c->env->allowed)
        return true;
    return c->env->allowed(c->env->ctx, c->agent, c->controller, path, perm);
}

int64_t handle__now(const struct hctx *c)
{
    if (c->env && c->env->now)
        return c->env->now(c->env->ctx, c->agent);
    return usp_dm_agent_now(c->agent);
}

static const char *adup(struct usp_arena *a, const char *s)
{
    return s ? usp_arena_strdup(a, s) : NULL;
}

int handle__queue_event(struct hctx *c, const struct usp_dm_event_info *ev)
{
    if (!c->env || !c->env->emit)
        return 0;
    struct usp_dm_event_info *e = usp_arena_zalloc(c->a, sizeof *e);
    if (!e)
        return USP_ENOMEM;
    *e = *ev;
    e->path = adup(c->a, ev->path);
    e->name = adup(c->a, ev->name);
    e->value = adup(c->a, ev->value);
    e->command_key = adup(c->a, ev->command_key);
    e->err_msg = adup(c->a, ev->err_msg);
    if ((ev->path && !e->path) || (ev->name && !e->name) || (ev->value && !e->value) ||
        (ev->command_key && !e->command_key) || (ev->err_msg && !e->err_msg))
        return USP_ENOMEM;
    if (ev->nkv) {
        struct usp_kv *kv = usp_arena_alloc(c->a, ev->nkv * sizeof *kv);
        if (!kv)
            return USP_ENOMEM;
        for (uint32_t i = 0; i < ev->nkv; i++) {
            kv[i].key = adup(c->a, ev->kv[i].key);
            kv[i].value = adup(c->a, ev->kv[i].value);
            if (!kv[i].key || !kv[i].value)
                return USP_ENOMEM;
        }
        e->kv = kv;
    }
    return handle__push(c->a, &c->events, e);
}

void handle__flush_events(struct hctx *c)
{
    for (size_t i = 0; i < c->events.n; i++)
        handle__emit_now(c->agent, c->env, c->events.v[i]);
    c->events.n = 0;
}

void handle__emit_now(struct usp_dm_agent *agent, const struct usp_agent_env *env,
                      const struct usp_dm_event_info *ev)
{
    if (env && env->emit)
        env->emit(env->ctx, agent, ev);
}

int handle__parse(struct hctx *c, const char *s, struct usp_path **out, char *msg, size_t msglen)
{
    size_t len = strlen(s), need = 0;
    struct usp_path_err err = {0};
    *out = NULL;
    int rc = usp_path_parse_buf(s, len, 0, NULL, 0, &need, out, &err);
    if (rc == USP_EINVAL) {
        snprintf(msg, msglen, "Invalid path syntax: %s", err.msg);
        return err.usp_code ? (int)err.usp_code : USP_ERR_INVALID_PATH_SYNTAX;
    }
    if (rc != USP_ERANGE && rc != 0)
        return USP_ENOMEM;
    void *buf = usp_arena_alloc(c->a, need);
    if (!buf)
        return USP_ENOMEM;
    rc = usp_path_parse_buf(s, len, 0, buf, need, NULL, out, &err);
    if (rc == USP_EINVAL) {
        snprintf(msg, msglen, "Invalid path syntax: %s", err.msg);
        return USP_ERR_INVALID_PATH_SYNTAX;
    }
    return rc ? USP_ENOMEM : 0;
}

struct resolve_ctx {
    struct hctx *c;
    struct hmatches *out;
};

static int collect_match(void *ctx, const struct usp_dm_match *m)
{
    struct resolve_ctx *r = ctx;
    struct hmatches *o = r->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        struct usp_dm_match *nm =
            usp_arena_realloc(r->c->a, o->m, o->cap * sizeof *nm, cap * sizeof *nm);
        if (!nm)
            return USP_ENOMEM;
        o->m = nm;
        o->cap = cap;
    }
    o->m[o->n++] = *m;
    return 0;
}

int handle__resolve(struct hctx *c, const struct usp_path *p, struct hmatches *out,
                    struct usp_dm_path_err *err)
{
    struct resolve_ctx r = {c, out};
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    int rc = usp_dm_resolve(c->agent, p, collect_match, &r, err);
    if (rc < 0)
        return USP_ENOMEM;
    if (rc > 0 && !err->usp_code) {
        err->usp_code = (uint32_t)rc;
        snprintf(err->msg, sizeof err->msg, "%s", usp_err_name((uint32_t)rc));
    }
    return rc > 0 ? (int)err->usp_code : 0;
}

bool handle__names_param(struct hctx *c, const struct usp_path *p)
{
    if (p->flags & USP_PATH_HAS_REF)
        return true;
    const char *names[64];
    size_t lens[64], n = 0;
    for (uint32_t i = 0; i < p->nseg; i++) {
        if (p->seg[i].kind != USP_PATH_SEG_NAME)
            continue;
        if (n == 64)
            return false;
        names[n] = p->seg[i].name;
        lens[n++] = p->seg[i].len;
    }
    struct usp_dm_item it;
    return usp_dm_lookup_names(c->schema, names, lens, n, &it) == 0 && it.kind == USP_DM_KIND_PARAM;
}

bool handle__search_readable(struct hctx *c, const struct usp_path *p, const struct usp_dm_inst *o)
{
    /* Past a reference the rows compared are elsewhere: left to the ACL of
     * what is finally read. */
    if (!(p->flags & USP_PATH_HAS_SEARCH) || (p->flags & USP_PATH_HAS_REF) || !c->env ||
        !c->env->allowed)
        return true;
    const struct usp_dm_object *cur = usp_dm_schema_root(c->schema);
    uint32_t level = 0;
    for (uint32_t i = 1; cur && i < p->nseg; i++) {
        const struct usp_path_seg *s = &p->seg[i];
        if (s->kind == USP_PATH_SEG_NAME) {
            cur = usp_dm_object_child(cur, s->name, s->len);
            if (cur && (cur->flags & USP_DM_OBJ_MULTI))
                level++;
            continue;
        }
        if (s->kind != USP_PATH_SEG_SEARCH || level == 0 || level > o->n)
            continue;
        struct usp_dm_inst row = {.obj = cur, .n = level};
        memcpy(row.inst, o->inst, level * sizeof row.inst[0]);
        char *rp = handle__obj_path(c, &row);
        if (!rp)
            return false;
        for (uint32_t k = 0; k < s->search.ncmp; k++) {
            const struct usp_path_cmp *cmp = &s->search.cmp[k];
            char rel[512];
            size_t len = 0;
            bool plain = true;
            for (uint32_t j = 0; j < cmp->nrel && plain; j++) {
                if (cmp->rel[j].kind != USP_PATH_SEG_NAME) {
                    plain = false;
                    break;
                }
                int w =
                    snprintf(rel + len, sizeof rel - len, "%s%s", j ? "." : "", cmp->rel[j].name);
                if (w < 0 || (size_t)w >= sizeof rel - len)
                    return false;
                len += (size_t)w;
            }
            if (!plain)
                continue;
            char *pp = handle__join(c, rp, rel);
            if (!pp || !handle__allowed(c, pp, USP_PERM_READ))
                return false;
        }
    }
    return true;
}

unsigned handle__levels(const struct usp_dm_object *o)
{
    unsigned n = 0;
    for (; o; o = o->parent)
        if (o->flags & USP_DM_OBJ_MULTI)
            n++;
    return n;
}

struct inst_list {
    struct usp_arena *a;
    uint32_t *v;
    size_t n, cap;
};

static int collect_inst(void *ctx, uint32_t inst)
{
    struct inst_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        uint32_t *nv = usp_arena_realloc(l->a, l->v, l->cap * sizeof *nv, cap * sizeof *nv);
        if (!nv)
            return USP_ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = inst;
    return 0;
}

int handle__instances(struct hctx *c, const struct usp_dm_object *table,
                      const struct usp_dm_inst *parent, uint32_t **out, size_t *n)
{
    struct inst_list l = {c->a, NULL, 0, 0};
    int rc = usp_dm_instances(c->agent, table, parent, collect_inst, &l);
    *out = l.v;
    *n = l.n;
    return rc < 0 ? USP_ENOMEM : 0;
}

void handle__child(const struct usp_dm_inst *o, const struct usp_dm_object *child, uint32_t inst,
                   struct usp_dm_inst *out)
{
    *out = *o;
    out->obj = child;
    if ((child->flags & USP_DM_OBJ_MULTI) && out->n < USP_DM_MAX_LEVELS)
        out->inst[out->n++] = inst;
}

char *handle__obj_path(struct hctx *c, const struct usp_dm_inst *o)
{
    char buf[1024];
    if (usp_dm_inst_path(o, buf, sizeof buf) != 0)
        return NULL;
    return usp_arena_strdup(c->a, buf);
}

char *handle__table_path(struct hctx *c, const struct usp_dm_inst *t)
{
    struct usp_dm_inst parent = *t;
    parent.obj = t->obj->parent;
    char *pp = parent.obj ? handle__obj_path(c, &parent) : NULL;
    return pp ? usp_arena_printf(c->a, "%s%s.", pp, t->obj->name) : NULL;
}

char *handle__join(struct hctx *c, const char *obj_path, const char *name)
{
    return usp_arena_printf(c->a, "%s%s", obj_path, name);
}

int handle__rel_param(const struct usp_dm_inst *o, const char *rel, struct usp_dm_inst *owner,
                      const struct usp_dm_param **p)
{
    *owner = *o;
    const char *s = rel;
    for (;;) {
        const char *dot = strchr(s, '.');
        if (!dot) {
            size_t len = strlen(s);
            *p = len ? usp_dm_object_param(owner->obj, s, len) : NULL;
            return *p ? 0 : USP_ERR_UNSUPPORTED_PARAM;
        }
        const struct usp_dm_object *ch = usp_dm_object_child(owner->obj, s, (size_t)(dot - s));
        /* Only single-instance sub-objects: a parameter of a row below
         * would need an instance number, which a relative name cannot
         * carry. */
        if (!ch || (ch->flags & USP_DM_OBJ_MULTI))
            return USP_ERR_UNSUPPORTED_PARAM;
        owner->obj = ch;
        s = dot + 1;
    }
}

char *handle__read(struct hctx *c, const struct usp_dm_inst *o, const struct usp_dm_param *p)
{
    if (p->flags & USP_DM_PARAM_SECURED)
        return usp_arena_strdup(c->a, "");
    /* Read on the stack, keep only the value: a Get of a whole tree reads
     * thousands of parameters into one arena. */
    char buf[USP_DM_VALUE_MAX + 1];
    int rc = usp_dm_get(c->agent, o, p, buf, sizeof buf);
    if (rc != 0 && rc != USP_ERANGE)
        return NULL;
    return usp_arena_strdup(c->a, buf);
}

char *handle__read_raw(struct hctx *c, const struct usp_dm_inst *o, const struct usp_dm_param *p)
{
    char buf[USP_DM_VALUE_MAX + 1];
    int rc = usp_dm_get(c->agent, o, p, buf, sizeof buf);
    if (rc != 0 && rc != USP_ERANGE)
        return NULL;
    return usp_arena_strdup(c->a, buf);
}

struct keys_ctx {
    struct hctx *c;
    struct hkeys *out;
};

static int collect_key(void *ctx, const char *name, const char *value)
{
    struct keys_ctx *k = ctx;
    struct hkeys *o = k->out;
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 4;
        struct usp_kv *nv =
            usp_arena_realloc(k->c->a, o->kv, o->cap * sizeof *nv, cap * sizeof *nv);
        if (!nv)
            return USP_ENOMEM;
        o->kv = nv;
        o->cap = cap;
    }
    o->kv[o->n].key = usp_arena_strdup(k->c->a, name);
    o->kv[o->n].value = usp_arena_strdup(k->c->a, value ? value : "");
    if (!o->kv[o->n].key || !o->kv[o->n].value)
        return USP_ENOMEM;
    o->n++;
    return 0;
}

int handle__keys(struct hctx *c, const struct usp_dm_inst *row, struct hkeys *out)
{
    struct keys_ctx k = {c, out};
    memset(out, 0, sizeof *out);
    int rc = usp_dm_unique_keys(c->agent, row, collect_key, &k);
    return rc < 0 ? USP_ENOMEM : 0;
}

int handle__queue_count_change(struct hctx *c, const struct usp_dm_inst *row)
{
    const struct usp_dm_object *table = row->obj;
    const struct usp_dm_param *np = table->num_entries_param;
    if (!np || !table->parent || row->n == 0)
        return 0;
    struct usp_dm_inst parent = *row;
    parent.obj = np->parent;
    parent.n = row->n - 1;
    char *path = handle__obj_path(c, &parent);
    char *value = path ? handle__read(c, &parent, np) : NULL;
    char *ppath = value ? handle__join(c, path, np->name) : NULL;
    if (!ppath)
        return value || !path ? 0 : USP_ENOMEM;
    struct usp_dm_event_info ev = {.kind = USP_EV_VALUE_CHANGE, .path = ppath, .value = value};
    return handle__queue_event(c, &ev);
}

Usp__Msg *handle__new_response(struct hctx *c, Usp__Header__MsgType type,
                               Usp__Response__RespTypeCase rcase, void *body)
{
    Usp__Msg *m = usp_arena_alloc(c->a, sizeof *m);
    Usp__Header *h = usp_arena_alloc(c->a, sizeof *h);
    Usp__Body *b = usp_arena_alloc(c->a, sizeof *b);
    Usp__Response *r = usp_arena_alloc(c->a, sizeof *r);
    if (!m || !h || !b || !r)
        return NULL;
    usp__msg__init(m);
    usp__header__init(h);
    usp__body__init(b);
    usp__response__init(r);
    h->msg_id = usp_arena_strdup(c->a, c->msg_id);
    if (!h->msg_id)
        return NULL;
    h->msg_type = type;
    r->resp_type_case = rcase;
    /* Every member of the union is a pointer to a message. */
    r->get_resp = body;
    b->msg_body_case = USP__BODY__MSG_BODY_RESPONSE;
    b->response = r;
    m->header = h;
    m->body = b;
    return m;
}

char *handle__printf(struct hctx *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return usp_arena_strdup(c->a, buf);
}

Usp__Msg *handle__new_error(struct hctx *c, uint32_t code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return usp_msg_new_error(c->a, c->msg_id, code, buf);
}

bool handle__code_allowed(int req, uint32_t code)
{
    if (code >= 7800 && code <= 7999)
        return true;
    switch (req) {
    case USP__HEADER__MSG_TYPE__GET:
        return (code >= 7000 && code <= 7006) || code == 7008 || code == 7010 || code == 7016 ||
               code == 7026;
    case USP__HEADER__MSG_TYPE__GET_INSTANCES:
        return (code >= 7000 && code <= 7006) || code == 7008 || code == 7016 || code == 7018 ||
               code == 7026;
    case USP__HEADER__MSG_TYPE__GET_SUPPORTED_DM:
        return (code >= 7000 && code <= 7006) || code == 7008 || code == 7016 || code == 7026;
    case USP__HEADER__MSG_TYPE__SET:
        /* 7025's applicability in the code table names Set. */
        return (code >= 7000 && code <= 7016) || code == 7020 || code == 7021 || code == 7025 ||
               code == 7026;
    case USP__HEADER__MSG_TYPE__ADD:
        /* 7021 and 7025's applicability in the code table names Add. */
        return (code >= 7000 && code <= 7019) || code == 7021 || code == 7025 || code == 7026;
    case USP__HEADER__MSG_TYPE__DELETE:
        return (code >= 7000 && code <= 7008) || code == 7015 || code == 7016 || code == 7018 ||
               code == 7024 || code == 7026;
    case USP__HEADER__MSG_TYPE__OPERATE:
        /* 7023 (Cancel()) travels in OperationComplete, whose list has it. */
        return (code >= 7000 && code <= 7008) || code == 7016 || code == 7022 || code == 7023 ||
               code == 7026 || code == 7027;
    case USP__HEADER__MSG_TYPE__NOTIFY:
        return code >= 7000 && code <= 7006;
    case USP__HEADER__MSG_TYPE__REGISTER:
        return (code >= 7000 && code <= 7008) || code == 7016 || code == 7028 || code == 7029;
    case USP__HEADER__MSG_TYPE__DEREGISTER:
        return (code >= 7000 && code <= 7008) || code == 7016 || code == 7030;
    default:
        return code >= 7000 && code <= 7006;
    }
}

int handle__reply_received(struct hctx *c, const Usp__Msg *msg)
{
    if (!c->env || !c->env->reply)
        return 0;
    struct usp_agent_reply r = {.controller = c->controller, .msg_id = c->msg_id};
    if (msg->body->msg_body_case == USP__BODY__MSG_BODY_ERROR) {
        r.err_code = msg->body->error->err_code;
        r.err_msg = msg->body->error->err_msg;
    } else {
        r.subscription_id = msg->body->response->notify_resp->subscription_id;
    }
    c->env->reply(c->env->ctx, c->agent, &r);
    return 0;
}

static Usp__Msg *not_supported(struct hctx *c, const char *what)
{
    return handle__new_error(c, USP_ERR_MESSAGE_NOT_SUPPORTED,
                             "Message not supported: an Agent does not take %s", what);
}

static int dispatch_request(struct hctx *c, const Usp__Request *r, Usp__Msg **resp)
{
    switch (r->req_type_case) {
    case USP__REQUEST__REQ_TYPE_GET:
        return handle__get(c, r->get, resp);
    case USP__REQUEST__REQ_TYPE_GET_SUPPORTED_DM:
        return handle__get_supported_dm(c, r->get_supported_dm, resp);
    case USP__REQUEST__REQ_TYPE_GET_INSTANCES:
        return handle__get_instances(c, r->get_instances, resp);
    case USP__REQUEST__REQ_TYPE_SET:
        return handle__set(c, r->set, resp);
    case USP__REQUEST__REQ_TYPE_ADD:
        return handle__add(c, r->add, resp);
    case USP__REQUEST__REQ_TYPE_DELETE:
        return handle__delete(c, r->delete_, resp);
    case USP__REQUEST__REQ_TYPE_OPERATE:
        return handle__operate(c, r->operate, resp);
    case USP__REQUEST__REQ_TYPE_GET_SUPPORTED_PROTOCOL:
        return handle__get_supported_protocol(c, r->get_supported_protocol, resp);
    case USP__REQUEST__REQ_TYPE_NOTIFY:
        /* Notify goes from an Agent to a Controller. */
        *resp = not_supported(c, "Notify");
        break;
    case USP__REQUEST__REQ_TYPE_REGISTER:
        /* Register and Deregister go from a USP Service (an Agent) to a
         * Controller; 7001 is in both messages' error lists (7000-7008). */
        *resp = not_supported(c, "Register");
        break;
    case USP__REQUEST__REQ_TYPE_DEREGISTER:
        *resp = not_supported(c, "Deregister");
        break;
    default:
        *resp = not_supported(c, "an empty Request");
        break;
    }
    return *resp ? 0 : USP_ENOMEM;
}

static const char *response_name(Usp__Response__RespTypeCase rc)
{
    static const char *const names[] = {
        [USP__RESPONSE__RESP_TYPE_GET_RESP] = "GetResp",
        [USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_DM_RESP] = "GetSupportedDMResp",
        [USP__RESPONSE__RESP_TYPE_GET_INSTANCES_RESP] = "GetInstancesResp",
        [USP__RESPONSE__RESP_TYPE_SET_RESP] = "SetResp",
        [USP__RESPONSE__RESP_TYPE_ADD_RESP] = "AddResp",
        [USP__RESPONSE__RESP_TYPE_DELETE_RESP] = "DeleteResp",
        [USP__RESPONSE__RESP_TYPE_OPERATE_RESP] = "OperateResp",
        [USP__RESPONSE__RESP_TYPE_NOTIFY_RESP] = "NotifyResp",
        [USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP] = "GetSupportedProtocolResp",
        [USP__RESPONSE__RESP_TYPE_REGISTER_RESP] = "RegisterResp",
        [USP__RESPONSE__RESP_TYPE_DEREGISTER_RESP] = "DeregisterResp",
    };
    if ((unsigned)rc < sizeof names / sizeof names[0] && names[rc])
        return names[rc];
    return "an empty Response";
}

int usp_agent_handle(struct usp_dm_agent *agent, const struct usp_agent_env *env,
                     const char *controller, const Usp__Msg *req, struct usp_arena *a,
                     Usp__Msg **resp)
{
    *resp = NULL;
    struct hctx c = {
        .agent = agent,
        .env = env,
        .controller = controller ? controller : "",
        .a = a,
        .msg_id = req->header && req->header->msg_id ? req->header->msg_id : "",
        .schema = usp_dm_model_schema(agent->model),
    };
    int rc = 0;
    if (!req->body) {
        *resp = handle__new_error(&c, USP_ERR_INVALID_ARGUMENTS, "Message has no body");
        return *resp ? 0 : USP_ENOMEM;
    }
    switch (req->body->msg_body_case) {
    case USP__BODY__MSG_BODY_REQUEST:
        rc = dispatch_request(&c, req->body->request, resp);
        break;
    case USP__BODY__MSG_BODY_RESPONSE: {
        Usp__Response__RespTypeCase rt = req->body->response->resp_type_case;
        if (rt == USP__RESPONSE__RESP_TYPE_NOTIFY_RESP) {
            /* R-NOT.9: the Agent ignores subscription_id; the fleet only
             * needs to know the Notify was delivered. */
            rc = handle__reply_received(&c, req);
            break;
        }
        /* Nothing an Agent sends is answered by this Response. */
        *resp = not_supported(&c, response_name(rt));
        rc = *resp ? 0 : USP_ENOMEM;
        break;
    }
    case USP__BODY__MSG_BODY_ERROR:
        /* An Error is never answered. */
        rc = handle__reply_received(&c, req);
        break;
    default:
        *resp = handle__new_error(&c, USP_ERR_INVALID_ARGUMENTS, "Message body is empty");
        rc = *resp ? 0 : USP_ENOMEM;
        break;
    }
    if (rc == 0)
        handle__flush_events(&c);
    else
        *resp = NULL;
    return rc;
}
