/* libFuzzer target: arbitrary bytes loaded as a data-model XML document
 * from memory (usp_dm_load_memory). A document that loads is then walked:
 * every object must be found again by its path, and every parameter's
 * checker is run on its default and on a few values. Nothing may crash,
 * leak or trip a sanitizer; a broken invariant aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usp/dm_schema.h"

static void check_params(const struct usp_dm_object *o, const char *probe)
{
    static const char *const values[] = {"",
                                         "0",
                                         "-1",
                                         "true",
                                         "18446744073709551615",
                                         "a,b,c",
                                         "[1,2],[3]",
                                         "00:11:22:33:44:55",
                                         "2024-02-29T12:00:00Z"};
    for (uint32_t i = 0; i < o->nparams; i++) {
        const struct usp_dm_param *p = &o->params[i];
        char why[64];
        if (p->parent != o || usp_dm_object_param(o, p->name, strlen(p->name)) != p)
            abort();
        if (p->default_value)
            usp_dm_type_check(p, p->default_value, why, sizeof why);
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            int rc = usp_dm_type_check(p, values[v], why, sizeof why);
            if (rc != 0 && rc != 7011 && rc != 7012)
                abort();
        }
        usp_dm_type_check(p, probe, NULL, 0);
    }
    for (uint32_t i = 0; i < o->nchildren; i++)
        check_params(o->children[i], probe);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error err;
    unsigned flags = size && (data[size - 1] & 1) ? USP_DM_LOAD_DESCRIPTIONS : 0;
    if (usp_dm_load_memory(data, size, "fuzz.xml", NULL, flags, &s, &err) != 0) {
        if (s || !err.msg[0])
            abort(); /* a failure leaves no schema and says why */
        return 0;
    }
    /* the tail of the input doubles as a value to check */
    char probe[48];
    size_t n = size < sizeof probe - 1 ? size : sizeof probe - 1;
    memcpy(probe, data + size - n, n);
    probe[n] = 0;
    const struct usp_dm_counts *c = usp_dm_schema_counts(s);
    if (usp_dm_schema_nobjects(s) != c->objects || !usp_dm_schema_root(s))
        abort();
    for (size_t i = 0; i < usp_dm_schema_nobjects(s); i++) {
        const struct usp_dm_object *o = usp_dm_schema_object(s, i);
        struct usp_dm_item it;
        if (usp_dm_lookup(s, o->path, &it) != 0 || it.object != o)
            abort();
        check_params(o, probe);
        for (uint32_t j = 0; j < o->ncommands; j++) {
            check_params(o->commands[j].input, probe);
            check_params(o->commands[j].output, probe);
        }
        for (uint32_t j = 0; j < o->nevents; j++)
            check_params(o->events[j].args, probe);
    }
    usp_dm_lookup(s, probe, &(struct usp_dm_item){0});
    usp_dm_schema_free(s);
    return 0;
}
