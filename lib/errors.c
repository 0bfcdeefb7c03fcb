/* Texts for libusp's C return codes and names of the USP error codes. The
 * names are the specification's (TR-369 Messages "Error Codes" and MTP "USP
 * Record Errors"). */
#include <stddef.h>

#include "usp/errors.h"

const char *usp_strerror(int err)
{
    switch (err) {
    case USP_OK:
        return "success";
    case USP_ENOMEM:
        return "out of memory";
    case USP_EINVAL:
        return "invalid argument or input";
    case USP_EDECODE:
        return "cannot decode protobuf";
    case USP_EPROTO:
        return "USP protocol violation";
    case USP_ERANGE:
        return "value out of range";
    case USP_ENOENT:
        return "not found";
    case USP_EIO:
        return "I/O error";
    case USP_EEXIST:
        return "already exists";
    case USP_EPERM:
        return "not permitted";
    }
    return "unknown error";
}

static const char *const msg_names[] = {
    [0] = "Message failed",
    [1] = "Message not supported",
    [2] = "Request denied (no reason specified)",
    [3] = "Internal error",
    [4] = "Invalid arguments",
    [5] = "Resources exceeded",
    [6] = "Permission denied",
    [7] = "Invalid configuration",
    [8] = "Invalid path syntax",
    [9] = "Parameter action failed",
    [10] = "Unsupported parameter",
    [11] = "Invalid type",
    [12] = "Invalid value",
    [13] = "Attempt to update non-writeable parameter",
    [14] = "Value conflict",
    [15] = "Operation error",
    [16] = "Object does not exist",
    [17] = "Object could not be created",
    [18] = "Object is not a table",
    [19] = "Attempt to create non-creatable object",
    [20] = "Object could not be updated",
    [21] = "Required parameter failed",
    [22] = "Command failure",
    [23] = "Command canceled",
    [24] = "Delete failure",
    [25] = "Object exists with duplicate key",
    [26] = "Invalid path",
    [27] = "Invalid command arguments",
    [28] = "Register failure",
    [29] = "Already in use",
    [30] = "Deregister failure",
    [31] = "Path already registered",
};

/* clang-format off */
static const char *const record_names[] = {
    [0] = "Record could not be parsed",
    [1] = "Secure session required",
    [2] = "Secure session not supported",
    [3] = "Segmentation and reassembly not supported",
    [4] = "Invalid Record value",
    [5] = "Session Context terminated",
    [6] = "Session Context not allowed",
};
/* clang-format on */

#define COUNT(t) (sizeof(t) / sizeof((t)[0]))

const char *usp_err_name(uint32_t code)
{
    if (code >= 7000 && code - 7000 < COUNT(msg_names))
        return msg_names[code - 7000];
    if (code >= 7100 && code - 7100 < COUNT(record_names))
        return record_names[code - 7100];
    if (code >= 7200 && code <= 7299)
        return "Data model defined error";
    if (code >= 7800 && code <= 7999)
        return "Vendor defined error";
    return NULL;
}

bool usp_err_known(uint32_t code)
{
    return usp_err_name(code) != NULL;
}
