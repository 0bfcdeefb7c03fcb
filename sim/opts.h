/* Command-line options of the uspsim commands. Each command describes its
 * options in one table (name, type, default, help, setter) that drives
 * parsing, validation and --help:
 *
 *   struct my_opts { bool hex; const char *from; };
 *   static const struct sim_opt opts[] = {
 *       {.name = "hex", .type = SIM_OPT_FLAG, .help = "write hex",
 *        .set = sim_opt_set_flag, .off = offsetof(struct my_opts, hex)},
 *       {.name = "from", .type = SIM_OPT_STRING, .metavar = "EID", .help = "sender",
 *        .flags = SIM_OPT_REQUIRED, .set = sim_opt_set_str,
 *        .off = offsetof(struct my_opts, from)},
 *       {.name = NULL},
 *   };
 *
 * Options are long ones only ("--name", "--name VALUE", "--name=VALUE");
 * "-h" and "--help" are always there; "--" ends the options; a lone "-" is
 * an argument. */
#ifndef SIM_OPTS_H
#define SIM_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum sim_opt_type {
    SIM_OPT_FLAG,   /* no value; the setter gets NULL */
    SIM_OPT_STRING, /* one value, any string */
    SIM_OPT_UINT,   /* one value, a decimal number (checked by sim_opt_set_uint) */
};

enum {
    SIM_OPT_REQUIRED = 1u << 0, /* parsing fails when the option is not given */
};

struct sim_opt;
/* Stores `val` (NULL for a flag) into `ctx`. 0, or -1 with a reason in
 * `why` (a phrase such as "not a number"). */
typedef int (*sim_opt_setter)(const struct sim_opt *o, void *ctx, const char *val, char *why,
                              size_t whylen);

struct sim_opt {
    const char *name; /* without the leading "--"; NULL ends the table */
    enum sim_opt_type type;
    const char *def;     /* default, passed to the setter before parsing and shown by --help */
    const char *help;    /* one line */
    sim_opt_setter set;  /* a sim_opt_set_* helper or the command's own */
    size_t off;          /* for the helpers: offsetof the field in ctx */
    const char *metavar; /* name of the value in --help ("EID"); NULL: "VALUE" */
    unsigned flags;      /* SIM_OPT_* */
};

/* A command: its options and the lines of its --help. */
struct sim_cmd_spec {
    const char *name;    /* "decode"; NULL for uspsim itself */
    const char *args;    /* the arguments after the options, e.g. "[FILE|-]" */
    const char *summary; /* one sentence */
    const char *details; /* printed after the options, lines ending in '\n'; may be NULL */
    const struct sim_opt *opts;
    void (*more_help)(FILE *f); /* printed last, may be NULL */
};

/* Setters for the common cases: a bool set to true, a const char * that
 * points at the argument, an unsigned long parsed strictly from decimal. */
int sim_opt_set_flag(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen);
int sim_opt_set_str(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen);
int sim_opt_set_uint(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen);

enum {
    SIM_OPTS_HELP = -1, /* --help was given and printed: exit 0 */
    SIM_OPTS_BAD = -2,  /* bad arguments, reported with the usage: exit 2 */
};
enum {
    /* The first argument ends the options: it and all words after it are
     * arguments (for commands whose arguments take options of their own). */
    SIM_OPTS_STOP = 1u << 0,
};

/* Applies the defaults, then the options in argv[1..argc-1]. The arguments
 * that are not options are moved, in order, to argv[1..n] and n is
 * returned. With --help, prints the help to stdout and returns
 * SIM_OPTS_HELP. On a bad option or missing required one, prints the
 * reason and the help to stderr and returns SIM_OPTS_BAD. */
int sim_opts_parse(const struct sim_cmd_spec *spec, void *ctx, int argc, char **argv,
                   unsigned flags);

/* Index in argv of the first argument that is not an option (argc if
 * none), skipping options and their values as sim_opts_parse would but
 * applying and checking nothing. For a command that must
 * look at its arguments first (`encode get --help` needs no --from). */
int sim_opts_first_arg(const struct sim_cmd_spec *spec, int argc, char **argv);

/* The help text: usage line, summary, options, details. */
void sim_opts_help(FILE *f, const struct sim_cmd_spec *spec);

/* Prints "uspsim NAME: <reason>" and the help to stderr; returns 2, the
 * exit status for bad usage. */
int sim_opts_usage_error(const struct sim_cmd_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
