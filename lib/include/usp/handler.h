/* The agent side of every USP message: a request in, a response (or Error)
 * out, exactly as the specification says, against one agent's data model
 * (usp/dm.h). The handlers know nothing of MTPs, sockets or timers: what
 * they need from the outside comes through struct usp_agent_env. */
#ifndef USP_HANDLER_H
#define USP_HANDLER_H

#include <stdbool.h>
#include <stdint.h>

#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/dm.h"

/* What a controller may do to a path (ControllerTrust roles). */
enum usp_perm {
    USP_PERM_READ = 1u << 0,    /* Get, GetInstances, GetSupportedDM: read */
    USP_PERM_WRITE = 1u << 1,   /* Set */
    USP_PERM_ADD = 1u << 2,     /* Add */
    USP_PERM_DELETE = 1u << 3,  /* Delete */
    USP_PERM_OPERATE = 1u << 4, /* Operate */
    USP_PERM_SUBSCRIBE = 1u << 5,
};

/* Change events the handlers produce, for the notification machinery
 * (subscriptions, ValueChange, ObjectCreation, ObjectDeletion,
 * OperationComplete, Event). Paths are instantiated paths, valid only during
 * the call. The events of a request are emitted once it has been handled
 * (before usp_agent_handle returns), only for changes that were kept. */
enum usp_dm_event_kind {
    USP_EV_VALUE_CHANGE,    /* path = parameter path, value = new value */
    USP_EV_OBJ_CREATION,    /* path = new row path ("...Interface.3."), keys */
    USP_EV_OBJ_DELETION,    /* path = deleted row path */
    USP_EV_OPER_COMPLETE,   /* an asynchronous command ended: path = object path,
                             * name = "Cmd()", command_key, kv = output args, or
                             * err_code/err_msg (7023 after Cancel()) */
    USP_EV_EVENT,           /* path = object path, name = "Boot!", args */
    USP_EV_REBOOT,          /* Device.Reboot(): the agent must restart; command_key,
                             * kv Cause (RemoteReboot unless the input said) and
                             * Reason, for the Boot! event that follows */
    USP_EV_FACTORY_RESET,   /* Device.FactoryReset(): restart from factory state;
                             * kv Cause (RemoteFactoryReset) and Reason */
    USP_EV_ONBOARD_REQUEST, /* Controller.{i}.SendOnBoardRequest(): send an
                             * OnBoardRequest Notify to that controller;
                             * path = its row ("...Controller.2."), value =
                             * its EndpointID */
};

struct usp_kv {
    const char *key;
    const char *value;
};

struct usp_dm_event_info {
    enum usp_dm_event_kind kind;
    const char *path;
    const char *name;        /* command or event name */
    const char *value;       /* VALUE_CHANGE */
    const char *command_key; /* OPER_COMPLETE, REBOOT, FACTORY_RESET */
    const struct usp_kv *kv; /* keys (CREATION), output args or event args */
    uint32_t nkv;
    uint32_t err_code; /* OPER_COMPLETE failure, 0 on success */
    const char *err_msg;
};

struct usp_agent_env;

/* The work an asynchronous command does when its time comes. Called with
 * agent NULL when the agent goes away before the timer fires: it then only
 * frees `arg`. */
typedef void (*usp_timer_fn)(struct usp_dm_agent *agent, const struct usp_agent_env *env,
                             void *arg);

/* A Response or Error that reached the agent: NotifyResp answering a Notify
 * sent with send_resp=true (err_code 0, subscription_id set), or an Error
 * (err_code, err_msg; subscription_id NULL). The notification retry
 * machinery matches msg_id with the Notify it sent. */
struct usp_agent_reply {
    const char *controller;
    const char *msg_id;
    const char *subscription_id;
    uint32_t err_code;
    const char *err_msg;
};

struct usp_agent_env {
    void *ctx;
    /* Time on the agent's clock (seconds since the epoch). */
    int64_t (*now)(void *ctx, const struct usp_dm_agent *agent);
    /* The access control hook: may `controller` do `perm` on `path`? NULL
     * means full access (the default until ControllerTrust roles land). */
    bool (*allowed)(void *ctx, const struct usp_dm_agent *agent, const char *controller,
                    const char *path, unsigned perm);
    /* Receives every change event; may be NULL. */
    void (*emit)(void *ctx, struct usp_dm_agent *agent, const struct usp_dm_event_info *ev);
    /* Runs fn(agent, env, arg) after delay_ms on the agent's loop; `arg` is
     * malloc'd by the handler and freed by fn. 0 or a negative USP_E*. */
    int (*schedule)(void *ctx, struct usp_dm_agent *agent, uint32_t delay_ms, usp_timer_fn fn,
                    void *arg);
    /* Versions the agent supports, for GetSupportedProtocol ("1.0,...,1.4"
     * when NULL). */
    const char *versions;
    /* Told of every NotifyResp or Error received (they get no answer); may
     * be NULL. */
    void (*reply)(void *ctx, struct usp_dm_agent *agent, const struct usp_agent_reply *r);
};

/* Handles one request from `controller` (its Endpoint ID) and builds the
 * response in `a`: a Response, an Error, or nothing (*resp NULL: Notify
 * responses and Operate with send_resp=false). `req` has passed
 * usp_msg_validate. Returns 0 or USP_ENOMEM.
 *
 * Paths given to env->allowed are instantiated paths ("Device.IP.
 * Interface.2.Name"), except for GetSupportedDM, which asks about supported
 * paths ("Device.IP.Interface.{i}.Name"). Messages an agent does not take
 * (Notify, Register, Deregister, and Responses other than NotifyResp) get an
 * Error 7001; NotifyResp and Error get no answer and go to env->reply. */
int usp_agent_handle(struct usp_dm_agent *agent, const struct usp_agent_env *env,
                     const char *controller, const Usp__Msg *req, struct usp_arena *a,
                     Usp__Msg **resp);

#endif
