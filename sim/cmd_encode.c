/* `uspsim encode`: a request written in the request language (see
 * usp/reqlang.h) to one no_session_context Record on stdout. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "opts.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/eid.h"
#include "usp/errors.h"
#include "usp/reqlang.h"

struct encode_opts {
    const char *from;
    const char *to;
    const char *version;
    const char *msg_id;
    bool hex;
};

static const struct sim_opt encode_opts[] = {
    {.name = "from",
     .type = SIM_OPT_STRING,
     .metavar = "EID",
     .help = "Endpoint ID of the sender (from_id), e.g. proto::controller",
     .flags = SIM_OPT_REQUIRED,
     .set = sim_opt_set_str,
     .off = offsetof(struct encode_opts, from)},
    {.name = "to",
     .type = SIM_OPT_STRING,
     .metavar = "EID",
     .help = "Endpoint ID of the recipient (to_id), e.g. proto::agent",
     .flags = SIM_OPT_REQUIRED,
     .set = sim_opt_set_str,
     .off = offsetof(struct encode_opts, to)},
    {.name = "version",
     .type = SIM_OPT_STRING,
     .metavar = "V",
     .def = USP_VERSION_DEFAULT,
     .help = "USP version of the Record, Major.Minor",
     .set = sim_opt_set_str,
     .off = offsetof(struct encode_opts, version)},
    {.name = "msg-id",
     .type = SIM_OPT_STRING,
     .metavar = "ID",
     .help = "msg_id of the message (default: a new uspsim-PID-RANDOM)",
     .set = sim_opt_set_str,
     .off = offsetof(struct encode_opts, msg_id)},
    {.name = "hex",
     .type = SIM_OPT_FLAG,
     .help = "write the Record as hex digits and a newline instead of binary",
     .set = sim_opt_set_flag,
     .off = offsetof(struct encode_opts, hex)},
    {.name = NULL},
};

static void encode_more_help(FILE *f)
{
    usp_req_usage(f, NULL);
    fprintf(f, "\nSee `uspsim encode REQUEST --help` for the arguments and options of one.\n");
}

static const struct sim_cmd_spec encode_spec = {
    .name = "encode",
    .args = "REQUEST...",
    .summary = "Writes one binary USP Record (no_session_context) holding the request.",
    .details = "Options end at REQUEST, which is written in the request language, e.g.\n"
               "  uspsim encode --from proto::ctl --to proto::agent get Device.DeviceInfo.\n"
               "  uspsim encode --from proto::ctl --to proto::agent set \\\n"
               "      Device.WiFi.SSID.1. Enable:=true SSID=home\n"
               "PARAM:=VALUE marks a setting required. Binary output goes to a file or a\n"
               "pipe, never to a terminal (use --hex there).\n"
               "Exit status: 0 written, 1 failure, 2 bad usage.\n",
    .opts = encode_opts,
    .more_help = encode_more_help,
};

/* "uspsim-PID-RANDOM": unique enough that two runs never share one. */
static void new_msg_id(char *buf, size_t len)
{
    uint32_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u;
    }
    snprintf(buf, len, "uspsim-%ld-%08x", (long)getpid(), (unsigned)r);
}

static int check_eid(const char *opt, const char *eid)
{
    char why[160];
    if (!*eid)
        return sim_opts_usage_error(&encode_spec, "--%s: the Endpoint ID is empty", opt);
    if (usp_eid_parse(eid, NULL, why, sizeof why) != 0)
        return sim_opts_usage_error(&encode_spec, "--%s: '%s' is not a valid Endpoint ID: %s", opt,
                                    eid, why);
    return 0;
}

/* `encode ... REQUEST ... --help` shows the help of that request. */
static bool wants_request_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    return false;
}

static int write_all(const uint8_t *buf, size_t len, bool hex)
{
    static const char digits[] = "0123456789abcdef";
    if (!hex)
        return fwrite(buf, 1, len, stdout) == len ? 0 : -1;
    for (size_t i = 0; i < len; i++) {
        if (putchar(digits[buf[i] >> 4]) == EOF || putchar(digits[buf[i] & 15]) == EOF)
            return -1;
    }
    return putchar('\n') == EOF ? -1 : 0;
}

int sim_cmd_encode(int argc, char **argv)
{
    struct encode_opts o = {0};
    int first = sim_opts_first_arg(&encode_spec, argc, argv);
    if (first < argc && wants_request_help(argc - first, argv + first)) {
        if (usp_req_usage(stdout, argv[first]) != 0) {
            fprintf(stderr, "uspsim encode: unknown request '%s'\n\n", argv[first]);
            usp_req_usage(stderr, NULL);
            return 2;
        }
        return 0;
    }
    int n = sim_opts_parse(&encode_spec, &o, argc, argv, SIM_OPTS_STOP);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n == 0)
        return sim_opts_usage_error(&encode_spec, "missing REQUEST");
    /* The request is argv[1..n]. */
    char **req = argv + 1;
    int rc = check_eid("from", o.from);
    if (!rc)
        rc = check_eid("to", o.to);
    if (rc)
        return rc;
    if (usp_version_parse(o.version, NULL, NULL) != 0)
        return sim_opts_usage_error(&encode_spec, "--version: '%s' is not Major.Minor, e.g. %s",
                                    o.version, USP_VERSION_DEFAULT);
    if (o.msg_id && !*o.msg_id)
        return sim_opts_usage_error(&encode_spec, "--msg-id: the msg_id must not be empty");
    if (!usp_version_supported(o.version))
        fprintf(stderr, "uspsim encode: warning: USP version %s is not one of %s\n", o.version,
                USP_VERSIONS_SUPPORTED);

    char idbuf[48];
    if (!o.msg_id) {
        new_msg_id(idbuf, sizeof idbuf);
        o.msg_id = idbuf;
    }

    int status = 1;
    struct usp_arena *a = usp_arena_new(0);
    Usp__Msg *msg;
    struct usp_req_err err;
    uint8_t *out;
    size_t len;
    if (!a) {
        fprintf(stderr, "uspsim encode: out of memory\n");
        goto out;
    }
    rc = usp_req_parse(a, n, req, o.msg_id, &msg, &err);
    if (rc == USP_EINVAL) {
        fprintf(stderr, "uspsim encode: %s%s%s\n\n", err.cmd ? err.cmd : "", err.cmd ? ": " : "",
                err.msg);
        usp_req_usage(stderr, err.cmd);
        status = 2;
        goto out;
    }
    if (rc) {
        fprintf(stderr, "uspsim encode: %s\n", usp_strerror(rc));
        goto out;
    }
    struct usp_record_hdr hdr = {.version = o.version, .to_id = o.to, .from_id = o.from};
    rc = usp_record_wrap_msg(a, &hdr, msg, &out, &len);
    if (rc) {
        fprintf(stderr, "uspsim encode: cannot encode the Record: %s\n", usp_strerror(rc));
        goto out;
    }
    if (!o.hex && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "uspsim encode: refusing to write a binary Record to a terminal; "
                        "redirect the output or use --hex\n");
        goto out;
    }
    if (write_all(out, len, o.hex) != 0 || fflush(stdout) != 0) {
        fprintf(stderr, "uspsim encode: cannot write the Record: %s\n", strerror(errno));
        goto out;
    }
    status = 0;
out:
    usp_arena_free(a);
    return status;
}
