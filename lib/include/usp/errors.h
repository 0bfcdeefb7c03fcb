/* Error codes: C return codes of libusp (negative USP_E*) and the USP error
 * codes (7000-7999) that travel inside messages as data. */
#ifndef USP_ERRORS_H
#define USP_ERRORS_H

#include <stdbool.h>
#include <stdint.h>

/* C-level results of fallible libusp functions: 0 or one of these. */
enum {
    USP_OK = 0,
    USP_ENOMEM = -1,   /* allocation failed */
    USP_EINVAL = -2,   /* bad argument or bad input; details in the error object */
    USP_EDECODE = -3,  /* bytes are not a valid protobuf of the expected type */
    USP_EPROTO = -4,   /* decoded, but breaks a USP rule (see the error object) */
    USP_ERANGE = -5,   /* a value or size is out of range */
    USP_ENOENT = -6,   /* not found */
    USP_EIO = -7,      /* I/O failed; errno-style detail in the object */
    USP_EEXIST = -8,   /* already exists */
    USP_EPERM = -9,    /* not allowed */
};

/* Text for a negative USP_E* code. */
const char *usp_strerror(int err);

/* USP error codes from the specification (Message and Record errors). */
enum usp_err_code {
    USP_ERR_MESSAGE_FAILED = 7000,
    USP_ERR_MESSAGE_NOT_SUPPORTED = 7001,
    USP_ERR_REQUEST_DENIED = 7002,
    USP_ERR_INTERNAL_ERROR = 7003,
    USP_ERR_INVALID_ARGUMENTS = 7004,
    USP_ERR_RESOURCES_EXCEEDED = 7005,
    USP_ERR_PERMISSION_DENIED = 7006,
    USP_ERR_INVALID_CONFIGURATION = 7007,
    USP_ERR_INVALID_PATH_SYNTAX = 7008,
    USP_ERR_PARAM_ACTION_FAILED = 7009,
    USP_ERR_UNSUPPORTED_PARAM = 7010,
    USP_ERR_INVALID_TYPE = 7011,
    USP_ERR_INVALID_VALUE = 7012,
    USP_ERR_PARAM_READ_ONLY = 7013,
    USP_ERR_VALUE_CONFLICT = 7014,
    USP_ERR_OPERATION_ERROR = 7015,
    USP_ERR_OBJECT_DOES_NOT_EXIST = 7016,
    USP_ERR_CREATION_FAILURE = 7017,
    USP_ERR_NOT_A_TABLE = 7018,
    USP_ERR_OBJECT_NOT_CREATABLE = 7019,
    USP_ERR_SET_FAILURE = 7020,
    USP_ERR_REQUIRED_PARAM_FAILED = 7021,
    USP_ERR_COMMAND_FAILURE = 7022,
    USP_ERR_COMMAND_CANCELLED = 7023,
    USP_ERR_OBJECT_NOT_DELETABLE = 7024,
    USP_ERR_UNIQUE_KEY_CONFLICT = 7025,
    USP_ERR_INVALID_PATH = 7026,
    USP_ERR_INVALID_CMD_ARGS = 7027,
    USP_ERR_REGISTER_FAILURE = 7028,
    USP_ERR_PATH_ALREADY_REGISTERED = 7029,
    USP_ERR_DEREGISTER_FAILURE = 7030,
    USP_ERR_PATH_ALREADY_DEREGISTERED = 7031,

    USP_ERR_RECORD_NOT_PARSED = 7100,
    USP_ERR_SECURE_SESS_REQUIRED = 7101,
    USP_ERR_SECURE_SESS_NOT_SUPPORTED = 7102,
    USP_ERR_SEG_NOT_SUPPORTED = 7103,
    USP_ERR_RECORD_FIELD_INVALID = 7104,
    USP_ERR_SESS_CONTEXT_TERMINATED = 7105,
    USP_ERR_SESS_CONTEXT_NOT_ALLOWED = 7106,
};

/* The specification's name for a USP error code, e.g. 7008 -> "Invalid path
 * syntax"; ranges give "Data model defined error" (7200-7299) and "Vendor
 * defined error" (7800-7999); anything else gives NULL. */
const char *usp_err_name(uint32_t code);

/* Whether `code` is a known USP error code (a table entry or one of the
 * data-model/vendor ranges). */
bool usp_err_known(uint32_t code);

#endif
