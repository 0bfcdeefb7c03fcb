/* uspsim: the command-line front end. Dispatches to one command per
 * subcommand; each prints its own --help. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "opts.h"

#ifndef USPSIM_VERSION
#define USPSIM_VERSION "unknown"
#endif

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"decode", sim_cmd_decode, "print a USP Record (binary, hex or base64) as JSON"},
    {"encode", sim_cmd_encode, "write a USP Record holding a request"},
    {"agents", sim_cmd_agents, "run a fleet of virtual USP agents over MQTT"},
    {"controller", sim_cmd_controller, "a USP controller: shell, -e requests, load generator"},
    {"dm", sim_cmd_dm, "data-model tools: dm info FILE.xml, dm show FILE.xml PATH"},
    {"certs", sim_cmd_certs, "make the test CA and the TLS certificates"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

struct main_opts {
    bool version;
};

static const struct sim_opt main_opts[] = {
    {.name = "version",
     .type = SIM_OPT_FLAG,
     .help = "print the version and exit",
     .set = sim_opt_set_flag,
     .off = offsetof(struct main_opts, version)},
    {.name = NULL},
};

static void main_more_help(FILE *f)
{
    fprintf(f, "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "help", "help COMMAND is COMMAND --help");
    fprintf(f, "\nExit status: 0 success, 1 failure, 2 bad usage.\n");
}

static const struct sim_cmd_spec main_spec = {
    .name = NULL,
    .args = "COMMAND [ARGS...]",
    .summary = "A USP (TR-369) agent and controller simulator.",
    .opts = main_opts,
    .more_help = main_more_help,
};

static int find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return (int)i;
    return -1;
}

int main(int argc, char **argv)
{
    struct main_opts o = {false};
    int n = sim_opts_parse(&main_spec, &o, argc, argv, SIM_OPTS_STOP);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (o.version) {
        printf("uspsim %s\n", USPSIM_VERSION);
        return 0;
    }
    if (n == 0)
        return sim_opts_usage_error(&main_spec, "missing COMMAND");
    /* The command and its arguments are argv[1..n]. */
    char **cargv = argv + 1;
    if (!strcmp(cargv[0], "help")) {
        if (n == 1) {
            sim_opts_help(stdout, &main_spec);
            return 0;
        }
        int k = find(cargv[1]);
        if (k < 0)
            return sim_opts_usage_error(&main_spec, "unknown command '%s'", cargv[1]);
        char help[] = "--help";
        char *hargv[] = {cargv[1], help, NULL};
        return commands[k].run(2, hargv);
    }
    int k = find(cargv[0]);
    if (k < 0)
        return sim_opts_usage_error(&main_spec, "unknown command '%s'", cargv[0]);
    return commands[k].run(n, cargv);
}
