/* GetSupportedProtocol: the versions this agent speaks. (NotifyResp and
 * Error bookkeeping is in handle.c: they reach env->reply.) */
#include "handle_int.h"

int handle__get_supported_protocol(struct hctx *c, const Usp__GetSupportedProtocol *req,
                                   Usp__Msg **resp)
{
    (void)req; /* the controller's list does not change what we support */
    Usp__GetSupportedProtocolResp *r = usp_arena_alloc(c->a, sizeof *r);
    if (!r)
        return USP_ENOMEM;
    usp__get_supported_protocol_resp__init(r);
    const char *v = c->env && c->env->versions ? c->env->versions : USP_VERSIONS_SUPPORTED;
    r->agent_supported_protocol_versions = usp_arena_strdup(c->a, v);
    if (!r->agent_supported_protocol_versions)
        return USP_ENOMEM;
    *resp = handle__new_response(c, USP__HEADER__MSG_TYPE__GET_SUPPORTED_PROTO_RESP,
                                 USP__RESPONSE__RESP_TYPE_GET_SUPPORTED_PROTOCOL_RESP, r);
    return *resp ? 0 : USP_ENOMEM;
}
