/* `uspsim dm`: data-model tools. `dm info FILE.xml` loads a Broadband Forum
 * data-model file and prints what the model holds; `dm show FILE.xml PATH`
 * prints the definition of one object, parameter, command or event. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "opts.h"
#include "usp/dm_schema.h"
#include "usp/errors.h"

struct dm_opts {
    bool unused;
};

static const struct sim_opt dm_opts[] = {
    {.name = NULL},
};

static const struct sim_cmd_spec dm_spec = {
    .name = "dm",
    .args = "info FILE.xml | show FILE.xml PATH",
    .summary = "Loads a Broadband Forum data-model XML file (TR-106) and shows it.",
    .details = "Subcommands:\n"
               "  info FILE.xml        the model's name and counts of what it supports\n"
               "  show FILE.xml PATH   the definition of one object, parameter, command\n"
               "                       or event, e.g. Device.WiFi.AccessPoint.{i}.\n"
               "FILE.xml is a flattened (\"-full\") file or the root of a modular set whose\n"
               "imports sit in the same folder. See `uspsim dm SUBCOMMAND --help`.\n"
               "Exit status: 0 success, 1 failure (the file does not load, PATH is not in\n"
               "the model), 2 bad usage.\n",
    .opts = dm_opts,
};

struct info_opts {
    bool unused;
};

static const struct sim_opt info_opts[] = {
    {.name = NULL},
};

static const struct sim_cmd_spec info_spec = {
    .name = "dm info",
    .args = "FILE.xml",
    .summary = "Prints the model's name and counts of what it holds.",
    .details = "Objects (multi-instance), parameters, commands, events, arguments and\n"
               "unique keys of the supported model; deprecated and obsoleted items (kept)\n"
               "and deleted ones (left out); the shared types and the schema's memory.\n"
               "Exit status: 0 loaded, 1 the file does not load, 2 bad usage.\n",
    .opts = info_opts,
};

struct show_opts {
    bool brief;
};

static const struct sim_opt show_opts[] = {
    {.name = "brief",
     .type = SIM_OPT_FLAG,
     .help = "leave the descriptions out",
     .set = sim_opt_set_flag,
     .off = offsetof(struct show_opts, brief)},
    {.name = NULL},
};

static const struct sim_cmd_spec show_spec = {
    .name = "dm show",
    .args = "FILE.xml PATH",
    .summary = "Prints the definition of one object, parameter, command or event.",
    .details = "Type and facets, access, status, default, unique keys, arguments.\n"
               "PATH is a supported path (\"Device.WiFi.AccessPoint.{i}.\",\n"
               "\"Device.Reboot()\", \"Device.Boot!\"); instance numbers are accepted in\n"
               "place of {i}.\n"
               "Exit status: 0 shown, 1 the file does not load or PATH is not in it,\n"
               "2 bad usage.\n",
    .opts = show_opts,
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static struct usp_dm_schema *load(const char *cmd, const char *file, unsigned flags, double *ms)
{
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error err;
    double t0 = now_ms();
    if (usp_dm_load_file(file, flags, &s, &err) != 0) {
        fprintf(stderr, "uspsim %s: %s\n", cmd, err.msg[0] ? err.msg : "cannot load the model");
        return NULL;
    }
    if (ms)
        *ms = now_ms() - t0;
    return s;
}

/* ---- info ---- */

static int cmd_info(int argc, char **argv)
{
    struct info_opts o = {false};
    int n = sim_opts_parse(&info_spec, &o, argc, argv, 0);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n != 1)
        return sim_opts_usage_error(&info_spec, n ? "too many arguments" : "missing FILE.xml");
    double ms = 0;
    struct usp_dm_schema *s = load("dm info", argv[1], 0, &ms);
    if (!s)
        return 1;
    const struct usp_dm_counts *c = usp_dm_schema_counts(s);
    printf("file:         %s\n", argv[1]);
    printf("model:        %s\n", usp_dm_schema_model(s));
    printf("objects:      %u (%u multi-instance, %u of them writable tables)\n", c->objects,
           c->multi_objects, c->writable_objects);
    printf("parameters:   %u (%u writable)\n", c->params, c->writable_params);
    printf("commands:     %u (%u async)\n", c->commands, c->async_commands);
    printf("events:       %u\n", c->events);
    printf("arguments:    %u parameters, %u objects (of commands and events)\n", c->arg_params,
           c->arg_objects);
    printf("unique keys:  %u\n", c->unique_keys);
    printf("deprecated:   %u objects, %u parameters, %u commands, %u events (supported)\n",
           c->deprecated_objects, c->deprecated_params, c->deprecated_commands,
           c->deprecated_events);
    printf("obsoleted:    %u objects, %u parameters, %u commands, %u events (supported)\n",
           c->obsoleted_objects, c->obsoleted_params, c->obsoleted_commands, c->obsoleted_events);
    printf("deleted:      %u objects, %u parameters (%u deleted, %u in deleted objects), "
           "%u commands, %u events (left out)\n",
           c->deleted_objects, c->deleted_params + c->params_in_deleted, c->deleted_params,
           c->params_in_deleted, c->deleted_commands, c->deleted_events);
    printf("types:        %u distinct, %u named dataTypes, %u patterns\n", c->types, c->datatypes,
           c->patterns);
    printf("memory:       %zu bytes (%.2f MiB)\n", c->bytes, (double)c->bytes / 1048576.0);
    printf("load time:    %.1f ms\n", ms);
    usp_dm_schema_free(s);
    return 0;
}

/* ---- show ---- */

static void print_u32(FILE *f, uint32_t v)
{
    if (v == USP_DM_UNBOUNDED)
        fputs("unbounded", f);
    else
        fprintf(f, "%u", v);
}

static void print_bound(FILE *f, unsigned base, bool has, const union usp_dm_int *v)
{
    if (!has)
        return;
    if (base == USP_DM_UNSIGNED_INT || base == USP_DM_UNSIGNED_LONG)
        fprintf(f, "%llu", (unsigned long long)v->u);
    else
        fprintf(f, "%lld", (long long)v->i);
}

static void print_text(FILE *f, const char *ind, const char *text)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "%s%.*s\n", len ? ind : "", (int)len, p);
        p += len + (nl ? 1 : 0);
    }
}

static void print_type(FILE *f, const char *ind, const struct usp_dm_type *t)
{
    if (t->item) {
        fprintf(f, "%slist of %s: ", ind, usp_dm_base_name(t->base));
        fprintf(f, "%u..", t->min_items);
        print_u32(f, t->max_items);
        fprintf(f, " items");
        if (t->nested == USP_DM_NESTING_REQUIRED)
            fprintf(f, ", nested lists in brackets");
        else if (t->nested == USP_DM_NESTING_PERMITTED)
            fprintf(f, ", nested lists may use brackets");
        if (t->name)
            fprintf(f, " (dataType %s)", t->name);
        fputc('\n', f);
        for (uint16_t i = 0; i < t->nsizes; i++) {
            fprintf(f, "%slist length: %u..", ind, t->sizes[i].min);
            print_u32(f, t->sizes[i].max);
            fputc('\n', f);
        }
        char sub[64];
        snprintf(sub, sizeof sub, "%s  ", ind);
        fprintf(f, "%seach item:\n", ind);
        print_type(f, sub, t->item);
        return;
    }
    fprintf(f, "%stype:        %s", ind, usp_dm_base_name(t->base));
    if (t->name)
        fprintf(f, " (dataType %s)", t->name);
    else if (t->parent && t->parent->name)
        fprintf(f, " (refines dataType %s)", t->parent->name);
    fputc('\n', f);
    bool octets = t->base == USP_DM_HEXBINARY || t->base == USP_DM_BASE64;
    for (uint16_t i = 0; i < t->nsizes; i++) {
        fprintf(f, "%s%s %u..", ind, octets ? "octets:     " : "length:     ", t->sizes[i].min);
        print_u32(f, t->sizes[i].max);
        fputc('\n', f);
    }
    for (uint16_t i = 0; i < t->nranges; i++) {
        const struct usp_dm_range *r = &t->ranges[i];
        fprintf(f, "%srange:       [", ind);
        print_bound(f, t->base, r->has_min, &r->min);
        fputc(':', f);
        print_bound(f, t->base, r->has_max, &r->max);
        fputc(']', f);
        if (r->step > 1)
            fprintf(f, " step %llu", (unsigned long long)r->step);
        fputc('\n', f);
    }
    for (uint16_t i = 0; i < t->nenums; i++) {
        const struct usp_dm_enum *e = &t->enums[i];
        fprintf(f, "%s%s \"%s\"", ind, i ? "             " : "values:     ", e->value);
        if (e->status != USP_DM_CURRENT)
            fprintf(f, " (%s)", usp_dm_status_name(e->status));
        if (e->flags & USP_DM_ENUM_OPTIONAL)
            fprintf(f, " (optional)");
        if (e->flags & USP_DM_ENUM_READ_ONLY)
            fprintf(f, " (read-only: set by the agent only)");
        fputc('\n', f);
    }
    for (uint16_t i = 0; i < t->npatterns; i++) {
        const char *v = t->patterns[i].value;
        fprintf(f, "%s%s %s\n", ind,
                i ? "             " : "pattern:    ", *v ? v : "(empty string allowed)");
    }
    if (t->units)
        fprintf(f, "%sunits:       %s\n", ind, t->units);
    if (t->pathref) {
        fprintf(f, "%sreference:   %s, to %s", ind, usp_dm_ref_type_name(t->pathref->ref_type),
                usp_dm_target_type_name(t->pathref->target_type));
        if (*t->pathref->target_parent)
            fprintf(f, ", under %s", t->pathref->target_parent);
        fputc('\n', f);
    }
    if (t->enumref) {
        fprintf(f, "%svalues of:   %s", ind, t->enumref->target_param);
        if (t->enumref->null_value)
            fprintf(f, " (or \"%s\")", t->enumref->null_value);
        fputc('\n', f);
    }
}

static void print_param(FILE *f, const char *ind, const struct usp_dm_param *p, bool arg,
                        bool brief)
{
    if (!arg)
        fprintf(f, "%saccess:      %s\n", ind, usp_dm_access_name(p->access));
    if (p->status != USP_DM_CURRENT)
        fprintf(f, "%sstatus:      %s\n", ind, usp_dm_status_name(p->status));
    if (p->flags & USP_DM_PARAM_MANDATORY)
        fprintf(f, "%smandatory:   yes\n", ind);
    print_type(f, ind, p->type);
    if (p->default_value)
        fprintf(f, "%sdefault:     \"%s\" (%s)\n", ind, p->default_value,
                usp_dm_default_type_name(p->default_type));
    if (p->notify != USP_DM_NOTIFY_NORMAL)
        fprintf(f, "%snotify:      %s\n", ind, usp_dm_notify_name(p->notify));
    if (p->flags & USP_DM_PARAM_SECURED)
        fprintf(f, "%ssecured:     yes (read back empty without a secured role)\n", ind);
    if (p->flags & USP_DM_PARAM_HIDDEN)
        fprintf(f, "%shidden:      yes\n", ind);
    if (!brief && p->description) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s  ", ind);
        fprintf(f, "%sdescription:\n", ind);
        print_text(f, sub, p->description);
    }
}

static void print_args(FILE *f, const char *ind, const struct usp_dm_object *o, bool brief)
{
    char sub[64], sub2[64];
    snprintf(sub, sizeof sub, "%s  ", ind);
    snprintf(sub2, sizeof sub2, "%s    ", ind);
    for (uint32_t i = 0; i < o->nparams; i++) {
        fprintf(f, "%s%s%s\n", ind, o->params[i].name,
                o->params[i].flags & USP_DM_PARAM_MANDATORY ? " (mandatory)" : "");
        print_param(f, sub2, &o->params[i], true, true);
    }
    for (uint32_t i = 0; i < o->nchildren; i++) {
        const struct usp_dm_object *c = o->children[i];
        fprintf(f, "%s%s (object", ind, c->path);
        if (c->flags & USP_DM_OBJ_MULTI) {
            fprintf(f, ", %u..", c->min_entries);
            print_u32(f, c->max_entries);
            fprintf(f, " entries");
        }
        fprintf(f, ")\n");
        print_args(f, sub, c, brief);
    }
}

static void print_keys(FILE *f, const struct usp_dm_object *o)
{
    for (uint32_t k = 0; k < o->nkeys; k++) {
        fprintf(f, "%s", k ? "             " : "unique keys: ");
        for (uint32_t j = 0; j < o->keys[k].nparams; j++)
            fprintf(f, "%s%s", j ? " + " : "", o->params[o->keys[k].params[j]].name);
        fprintf(f, "%s\n", o->keys[k].functional ? "" : " (non-functional)");
    }
}

static void show_object(const struct usp_dm_object *o, bool brief)
{
    printf("object %s\n", o->path);
    if (o->status != USP_DM_CURRENT)
        printf("status:      %s\n", usp_dm_status_name(o->status));
    if (o->flags & USP_DM_OBJ_MULTI) {
        printf("table:       %u..", o->min_entries);
        print_u32(stdout, o->max_entries);
        printf(" entries%s\n", o->access == USP_DM_READ_WRITE
                                   ? ", the controller may add and delete"
                                   : ", read-only (the agent adds and deletes)");
    } else {
        printf("access:      %s\n", usp_dm_access_name(o->access));
    }
    if (o->num_entries_param)
        printf("count in:    %s%s\n", o->parent ? o->parent->path : "", o->num_entries_param->name);
    if (o->enable_param)
        printf("enabled by:  %s\n", o->enable_param->name);
    print_keys(stdout, o);
    if (o->flags & USP_DM_OBJ_MOUNT_POINT)
        printf("mount point: yes\n");
    printf("parameters:  %u\n", o->nparams);
    for (uint32_t i = 0; i < o->nparams; i++) {
        const struct usp_dm_param *p = &o->params[i];
        const struct usp_dm_type *t = p->type->item ? p->type->item : p->type;
        char ty[96];
        snprintf(ty, sizeof ty, "%s%s%s%s%s", p->type->item ? "list of " : "",
                 usp_dm_base_name(t->base), t->name ? " (" : "", t->name ? t->name : "",
                 t->name ? ")" : "");
        printf("  %-34s %-30s %s%s%s\n", p->name, ty, usp_dm_access_name(p->access),
               p->status != USP_DM_CURRENT ? " " : "",
               p->status != USP_DM_CURRENT ? usp_dm_status_name(p->status) : "");
    }
    if (o->nchildren) {
        printf("objects:     %u\n", o->nchildren);
        for (uint32_t i = 0; i < o->nchildren; i++)
            printf("  %s\n", o->children[i]->path);
    }
    if (o->ncommands) {
        printf("commands:    %u\n", o->ncommands);
        for (uint32_t i = 0; i < o->ncommands; i++)
            printf("  %s%s\n", o->commands[i].name, o->commands[i].async ? " (async)" : "");
    }
    if (o->nevents) {
        printf("events:      %u\n", o->nevents);
        for (uint32_t i = 0; i < o->nevents; i++)
            printf("  %s\n", o->events[i].name);
    }
    if (!brief && o->description) {
        printf("description:\n");
        print_text(stdout, "  ", o->description);
    }
}

static int cmd_show(int argc, char **argv)
{
    struct show_opts o = {false};
    int n = sim_opts_parse(&show_spec, &o, argc, argv, 0);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n != 2)
        return sim_opts_usage_error(&show_spec, n < 2 ? "missing %s" : "too many arguments",
                                    n == 0 ? "FILE.xml and PATH" : "PATH");
    struct usp_dm_schema *s =
        load("dm show", argv[1], o.brief ? 0 : USP_DM_LOAD_DESCRIPTIONS, NULL);
    if (!s)
        return 1;
    struct usp_dm_item it;
    int rc = usp_dm_lookup(s, argv[2], &it);
    if (rc != 0) {
        fprintf(stderr, "uspsim dm show: %s: not in the model %s\n", argv[2],
                usp_dm_schema_model(s));
        usp_dm_schema_free(s);
        return 1;
    }
    switch (it.kind) {
    case USP_DM_KIND_OBJECT:
        show_object(it.object, o.brief);
        break;
    case USP_DM_KIND_PARAM:
        printf("parameter %s%s\n", it.object->path, it.param->name);
        print_param(stdout, "", it.param, false, o.brief);
        break;
    case USP_DM_KIND_COMMAND: {
        const struct usp_dm_command *c = it.command;
        printf("command %s%s (%s)\n", it.object->path, c->name, c->async ? "async" : "sync");
        if (c->status != USP_DM_CURRENT)
            printf("status:      %s\n", usp_dm_status_name(c->status));
        printf("input:%s\n", c->input->nparams || c->input->nchildren ? "" : " none");
        print_args(stdout, "  ", c->input, o.brief);
        printf("output:%s\n", c->output->nparams || c->output->nchildren ? "" : " none");
        print_args(stdout, "  ", c->output, o.brief);
        if (!o.brief && c->description) {
            printf("description:\n");
            print_text(stdout, "  ", c->description);
        }
        break;
    }
    case USP_DM_KIND_EVENT: {
        const struct usp_dm_event *e = it.event;
        printf("event %s%s\n", it.object->path, e->name);
        if (e->status != USP_DM_CURRENT)
            printf("status:      %s\n", usp_dm_status_name(e->status));
        printf("arguments:%s\n", e->args->nparams || e->args->nchildren ? "" : " none");
        print_args(stdout, "  ", e->args, o.brief);
        if (!o.brief && e->description) {
            printf("description:\n");
            print_text(stdout, "  ", e->description);
        }
        break;
    }
    default:
        break;
    }
    usp_dm_schema_free(s);
    return 0;
}

int sim_cmd_dm(int argc, char **argv)
{
    struct dm_opts o = {false};
    int n = sim_opts_parse(&dm_spec, &o, argc, argv, SIM_OPTS_STOP);
    if (n == SIM_OPTS_HELP)
        return 0;
    if (n < 0)
        return 2;
    if (n == 0)
        return sim_opts_usage_error(&dm_spec, "missing subcommand (info or show)");
    /* The subcommand and its arguments are argv[1..n]. */
    if (!strcmp(argv[1], "info"))
        return cmd_info(n, argv + 1);
    if (!strcmp(argv[1], "show"))
        return cmd_show(n, argv + 1);
    return sim_opts_usage_error(&dm_spec, "unknown subcommand '%s'", argv[1]);
}
