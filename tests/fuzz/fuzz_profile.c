/* libFuzzer target for device profiles: any bytes must parse to a profile
 * or to an error message, never crash; a parsed profile must evaluate and
 * answer lookups for every line it holds. No folder is given, so include
 * lines are refused and nothing is read from disk. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usp/profile.h"

static void exercise(const struct usp_profile *p)
{
    char buf[128];
    unsigned inst[USP_PROFILE_MAX_LEVELS] = {1, 2, 3, 1, 2, 3, 1, 2};
    struct usp_gen_ctx ctx[] = {
        {0, "os::012345-SIM000000", 0, 0, 0, 0},
        {77, NULL, 1700000000, 5, 1700086400, 999999},
        {UINT64_MAX, "", INT64_MAX, 999999, INT64_MIN, 0},
        {4242, "x", -5, 0, 3, 1},
    };
    for (size_t i = 0; i < usp_profile_nvalues(p); i++) {
        const struct usp_profile_value *v = usp_profile_value_at(p, i);
        for (size_t k = 0; k < sizeof ctx / sizeof ctx[0]; k++) {
            int rc = usp_gen_eval(v->gen, &ctx[k], inst, v->e.nlevels, buf, sizeof buf);
            if (rc != 0 && rc != USP_ERANGE)
                abort(); /* every line's own levels must be enough */
            if (strlen(buf) >= sizeof buf)
                abort();
        }
        usp_gen_eval(v->gen, &ctx[0], inst, v->e.nlevels, buf, 1);
        if (usp_gen_const(v->gen) && usp_gen_flags(v->gen))
            abort();
        if (!usp_profile_find_value(p, v->e.spath, v->e.inst, v->e.nlevels))
            abort();
    }
    for (size_t i = 0; i < usp_profile_ninsts(p); i++) {
        const struct usp_profile_inst *d = usp_profile_inst_at(p, i);
        unsigned n = usp_profile_inst_count(d, 9, inst, d->e.nlevels);
        if (n < d->min || n > d->max)
            abort();
        if (!usp_profile_find_inst(p, d->e.spath, d->e.inst, d->e.nlevels))
            abort();
    }
    for (size_t i = 0; i < usp_profile_ncmds(p); i++) {
        const struct usp_profile_cmd *c = usp_profile_cmd_at(p, i);
        for (unsigned o = 0; o < c->nout; o++)
            usp_gen_eval(c->out[o].gen, &ctx[1], inst, c->e.nlevels, buf, sizeof buf);
        if (!usp_profile_find_cmd(p, c->e.spath, c->e.inst, c->e.nlevels))
            abort();
    }
    usp_profile_serial(p, 12345, buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct usp_profile *p = NULL;
    struct usp_profile_err err;
    int rc = usp_profile_parse_mem("fuzz.prof", (const char *)data, size, NULL, &p, &err);
    if (rc == 0) {
        exercise(p);
        usp_profile_free(p);
    } else if (p || !err.text[0]) {
        abort(); /* a failure always explains itself and returns nothing */
    }

    /* The same bytes as one path. */
    char path[USP_PROFILE_MAX_PATH + 16], spath[USP_PROFILE_MAX_PATH + 16];
    size_t n = size < sizeof path - 1 ? size : sizeof path - 1;
    memcpy(path, data, n);
    path[n] = '\0';
    unsigned inst[USP_PROFILE_MAX_LEVELS], ninst;
    usp_profile_split_path(path, spath, sizeof spath, inst, &ninst);
    return 0;
}
