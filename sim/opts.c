/* Table-driven option parsing for the uspsim commands (see opts.h). */
#include "opts.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define MAX_OPTS 64 /* options per command; more is a programming error */

int sim_opt_set_flag(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen)
{
    *(bool *)((char *)ctx + o->off) = true;
    return 0;
}

int sim_opt_set_str(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen)
{
    *(const char **)((char *)ctx + o->off) = val;
    return 0;
}

int sim_opt_set_uint(const struct sim_opt *o, void *ctx, const char *val, char *why, size_t whylen)
{
    unsigned long v = 0;
    if (!*val) {
        snprintf(why, whylen, "an empty value is not a number");
        return -1;
    }
    for (const char *p = val; *p; p++) {
        if (*p < '0' || *p > '9') {
            snprintf(why, whylen, "'%s' is not a whole number", val);
            return -1;
        }
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULONG_MAX - d) / 10) {
            snprintf(why, whylen, "'%s' is too large", val);
            return -1;
        }
        v = v * 10 + d;
    }
    *(unsigned long *)((char *)ctx + o->off) = v;
    return 0;
}

static const char *prog(const struct sim_cmd_spec *spec, char *buf, size_t len)
{
    snprintf(buf, len, "uspsim%s%s", spec->name ? " " : "", spec->name ? spec->name : "");
    return buf;
}

static const char *metavar(const struct sim_opt *o)
{
    return o->type == SIM_OPT_FLAG ? "" : o->metavar ? o->metavar : "VALUE";
}

void sim_opts_help(FILE *f, const struct sim_cmd_spec *spec)
{
    char p[64];
    fprintf(f, "usage: %s [OPTIONS]%s%s\n", prog(spec, p, sizeof p), spec->args ? " " : "",
            spec->args ? spec->args : "");
    if (spec->summary)
        fprintf(f, "%s\n", spec->summary);
    fprintf(f, "\noptions:\n");
    for (const struct sim_opt *o = spec->opts; o && o->name; o++) {
        char head[48];
        const char *mv = metavar(o);
        snprintf(head, sizeof head, "--%s%s%s", o->name, *mv ? " " : "", mv);
        fprintf(f, "  %-20s %s", head, o->help ? o->help : "");
        if (o->flags & SIM_OPT_REQUIRED)
            fprintf(f, " (required)");
        else if (o->def)
            fprintf(f, " (default %s)", o->def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-20s %s\n", "-h, --help", "show this help and exit");
    if (spec->details)
        fprintf(f, "\n%s", spec->details);
    if (spec->more_help) {
        fprintf(f, "\n");
        spec->more_help(f);
    }
}

static int vusage_error(const struct sim_cmd_spec *spec, const char *fmt, va_list ap)
{
    char p[64];
    fprintf(stderr, "%s: ", prog(spec, p, sizeof p));
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n");
    sim_opts_help(stderr, spec);
    return 2;
}

int sim_opts_usage_error(const struct sim_cmd_spec *spec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vusage_error(spec, fmt, ap);
    va_end(ap);
    return rc;
}

static int bad(const struct sim_cmd_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad(const struct sim_cmd_spec *spec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vusage_error(spec, fmt, ap);
    va_end(ap);
    return SIM_OPTS_BAD;
}

static const struct sim_opt *find(const struct sim_cmd_spec *spec, const char *name, size_t len,
                                  size_t *index)
{
    size_t k = 0;
    for (const struct sim_opt *o = spec->opts; o && o->name; o++, k++) {
        if (strlen(o->name) == len && !memcmp(o->name, name, len)) {
            if (index)
                *index = k;
            return o;
        }
    }
    return NULL;
}

int sim_opts_first_arg(const struct sim_cmd_spec *spec, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        if (w[0] != '-' || w[1] == '\0')
            return i;
        if (!strcmp(w, "--"))
            return i + 1 < argc ? i + 1 : argc;
        if (w[1] != '-')
            continue;
        const char *eq = strchr(w + 2, '=');
        const struct sim_opt *o =
            find(spec, w + 2, eq ? (size_t)(eq - w - 2) : strlen(w + 2), NULL);
        if (o && o->type != SIM_OPT_FLAG && !eq)
            i++;
    }
    return argc;
}

int sim_opts_parse(const struct sim_cmd_spec *spec, void *ctx, int argc, char **argv,
                   unsigned flags)
{
    bool seen[MAX_OPTS] = {false};
    char why[160];
    size_t nopts = 0;
    for (const struct sim_opt *o = spec->opts; o && o->name; o++, nopts++) {
        if (nopts == MAX_OPTS)
            return bad(spec, "internal error: more than %d options", MAX_OPTS);
        why[0] = '\0';
        if (o->def && o->set(o, ctx, o->def, why, sizeof why) != 0)
            return bad(spec, "internal error: default of --%s: %s", o->name, why);
    }

    int n = 0; /* arguments moved to argv[1..n]; never ahead of i */
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        char *w = argv[i];
        if (opts_done || w[0] != '-' || w[1] == '\0') {
            argv[++n] = w;
            if (flags & SIM_OPTS_STOP)
                opts_done = true;
            continue;
        }
        if (!strcmp(w, "--")) {
            opts_done = true;
            continue;
        }
        if (!strcmp(w, "-h") || !strcmp(w, "--help")) {
            sim_opts_help(stdout, spec);
            return SIM_OPTS_HELP;
        }
        if (w[1] != '-')
            return bad(spec, "unknown option '%s'", w);
        const char *name = w + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        size_t k = 0;
        const struct sim_opt *o = find(spec, name, len, &k);
        if (!o)
            return bad(spec, "unknown option '--%.*s'", (int)len, name);
        const char *val = NULL;
        if (o->type == SIM_OPT_FLAG) {
            if (eq)
                return bad(spec, "option --%s takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return bad(spec, "option --%s needs a value (%s)", o->name, metavar(o));
        }
        why[0] = '\0';
        if (o->set(o, ctx, val, why, sizeof why) != 0)
            return bad(spec, "option --%s: %s", o->name, why[0] ? why : "bad value");
        seen[k] = true;
    }
    size_t k = 0;
    for (const struct sim_opt *o = spec->opts; o && o->name; o++, k++)
        if ((o->flags & SIM_OPT_REQUIRED) && !seen[k])
            return bad(spec, "option --%s is required", o->name);
    return n;
}
