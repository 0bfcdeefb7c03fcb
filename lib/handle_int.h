/* Private to the agent-side message handlers (lib/handle*.c): the state of
 * one request being answered and the helpers every handler shares. */
#ifndef USP_HANDLE_INT_H
#define USP_HANDLE_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/dm.h"
#include "usp/handler.h"
#include "usp/path.h"

/* A growable array of pointers in the arena (doubling, so the arena wastes
 * at most as much as the final array). */
struct hvec {
    void **v;
    size_t n, cap;
};

/* One request being handled. Everything allocated lives in `a`. */
struct hctx {
    struct usp_dm_agent *agent;
    const struct usp_agent_env *env;
    const char *controller;
    struct usp_arena *a;
    const char *msg_id;
    const struct usp_dm_schema *schema;
    /* Change events wait here until the request's outcome is known, so a
     * rolled-back change is never announced. */
    struct hvec events; /* struct usp_dm_event_info * */
};

int handle__push(struct usp_arena *a, struct hvec *v, void *item);
/* The collected array (NULL when empty) for a protobuf-c repeated field. */
static inline void **handle__items(const struct hvec *v)
{
    return v->n ? v->v : NULL;
}

/* Access control: true when env->allowed is NULL or says yes. */
bool handle__allowed(const struct hctx *c, const char *path, unsigned perm);
/* The agent's clock. */
int64_t handle__now(const struct hctx *c);

/* Events: queued (strings and key/value pairs copied into the arena),
 * dropped back to a mark on rollback, emitted in order at the end. */
int handle__queue_event(struct hctx *c, const struct usp_dm_event_info *ev);
static inline size_t handle__events_mark(const struct hctx *c)
{
    return c->events.n;
}
static inline void handle__events_drop(struct hctx *c, size_t mark)
{
    c->events.n = mark;
}
void handle__flush_events(struct hctx *c);
/* Emits at once (for work done outside a request: async completion). */
void handle__emit_now(struct usp_dm_agent *agent, const struct usp_agent_env *env,
                      const struct usp_dm_event_info *ev);

/* Parses a path from a request into the arena. 0; a positive USP code
 * (7008) with `msg` filled; USP_ENOMEM. */
int handle__parse(struct hctx *c, const char *s, struct usp_path **out, char *msg, size_t msglen);

/* Every match of a path, copied into the arena. */
struct hmatches {
    struct usp_dm_match *m;
    size_t n, cap;
};
/* Resolves `p` against the agent. 0; a positive USP code with `err`
 * filled; USP_ENOMEM. */
int handle__resolve(struct hctx *c, const struct usp_path *p, struct hmatches *out,
                    struct usp_dm_path_err *err);

/* Whether a path flagged USP_PATH_PARAM names a parameter in the schema
 * ("Device.DeviceInfo" names an object without its final '.'). Paths
 * with reference following are left to the resolver. */
bool handle__names_param(struct hctx *c, const struct usp_path *p);

/* R-GET.1 / R-GIN.0: whether the controller may read every parameter the
 * search expressions of `p` compared to select match `o`; a match selected
 * through an unreadable parameter is treated as absent. */
bool handle__search_readable(struct hctx *c, const struct usp_path *p, const struct usp_dm_inst *o);

/* Multi-instance levels of an object's path (its own included). */
unsigned handle__levels(const struct usp_dm_object *o);
/* Whether a matched object is a table named without its instance number
 * ("Device.IP.Interface."), as opposed to a row or a single object. */
static inline bool handle__is_table(const struct usp_dm_inst *o)
{
    return o->obj && (o->obj->flags & USP_DM_OBJ_MULTI) && o->n < handle__levels(o->obj);
}
/* The instance numbers of a table under `parent`, increasing, in the arena. */
int handle__instances(struct hctx *c, const struct usp_dm_object *table,
                      const struct usp_dm_inst *parent, uint32_t **out, size_t *n);
/* The instantiated child of `o`: a single-instance child, or row `inst` of
 * a child table. */
void handle__child(const struct usp_dm_inst *o, const struct usp_dm_object *child, uint32_t inst,
                   struct usp_dm_inst *out);

/* "Device.IP.Interface.2." in the arena (NULL when out of memory). */
char *handle__obj_path(struct hctx *c, const struct usp_dm_inst *o);
/* "Device.IP.Interface." for a table match (handle__is_table). */
char *handle__table_path(struct hctx *c, const struct usp_dm_inst *t);
/* "Device.IP.Interface.2.Name": an object path joined to a relative name. */
char *handle__join(struct hctx *c, const char *obj_path, const char *name);

/* A parameter named relative to an object ("Name", or "Stats.BytesSent"
 * through single-instance sub-objects): 0 with *owner and *p set, or 7010
 * (unsupported parameter) when the schema has no such parameter. */
int handle__rel_param(const struct usp_dm_inst *o, const char *rel, struct usp_dm_inst *owner,
                      const struct usp_dm_param **p);

/* A parameter's value as a controller reads it: "" for secured parameters,
 * NULL when the object is gone (or out of memory). In the arena. */
char *handle__read(struct hctx *c, const struct usp_dm_inst *o, const struct usp_dm_param *p);
/* The stored value, secured or not (NULL when the object is gone or out of
 * memory). */
char *handle__read_raw(struct hctx *c, const struct usp_dm_inst *o, const struct usp_dm_param *p);

/* Unique keys of a row as an arena array (for events and responses). */
struct hkeys {
    struct usp_kv *kv;
    uint32_t n, cap;
};
int handle__keys(struct hctx *c, const struct usp_dm_inst *row, struct hkeys *out);

/* Queues VALUE_CHANGE for the NumberOfEntries parameter of a table after
 * a row was added or deleted under `parent_of_row` (the row itself). */
int handle__queue_count_change(struct hctx *c, const struct usp_dm_inst *row);

/* Messages. */
Usp__Msg *handle__new_response(struct hctx *c, Usp__Header__MsgType type,
                               Usp__Response__RespTypeCase rcase, void *body);
Usp__Msg *handle__new_error(struct hctx *c, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
char *handle__printf(struct hctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether a USP error code may appear in answers to a message of type
 * `req` (USP__HEADER__MSG_TYPE__GET ...): the message's list in the
 * specification plus the codes whose applicability names the message,
 * and the vendor range 7800-7999. */
bool handle__code_allowed(int req, uint32_t code);

/* The handlers. Each sets *resp (NULL: no answer) and returns 0 or
 * USP_ENOMEM. */
int handle__get(struct hctx *c, const Usp__Get *req, Usp__Msg **resp);
int handle__get_instances(struct hctx *c, const Usp__GetInstances *req, Usp__Msg **resp);
int handle__get_supported_dm(struct hctx *c, const Usp__GetSupportedDM *req, Usp__Msg **resp);
int handle__set(struct hctx *c, const Usp__Set *req, Usp__Msg **resp);
int handle__add(struct hctx *c, const Usp__Add *req, Usp__Msg **resp);
int handle__delete(struct hctx *c, const Usp__Delete *req, Usp__Msg **resp);
int handle__operate(struct hctx *c, const Usp__Operate *req, Usp__Msg **resp);
int handle__get_supported_protocol(struct hctx *c, const Usp__GetSupportedProtocol *req,
                                   Usp__Msg **resp);
/* A Response or Error that reaches the agent (no answer is ever sent). */
int handle__reply_received(struct hctx *c, const Usp__Msg *msg);

/* Fills the parameters the agent maintains itself in a new row, before
 * the creator's values (Subscription: Recipient, the requesting
 * controller's row, and CreationDate). 0 or USP_ENOMEM. */
int handle__init_row(struct hctx *c, const struct usp_dm_inst *row);
/* Assigns values to the unique keys of a new row that the creator left
 * wholly unset ("cpe-N" for Alias and other empty string key parameters,
 * R-ADD.5). `given` says, per parameter index of the row's object, whether
 * the creator set it (NULL: none). 0 or USP_ENOMEM. */
int handle__assign_keys(struct hctx *c, const struct usp_dm_inst *row, const bool *given);

#endif
