/* Benchmark of the data-model loader: time to load a data-model XML file
 * with usp_dm_load_memory(), next to libxml2's bare parse of the same bytes
 * (xmlReadMemory building its tree: the floor) in the same run, repeated and
 * interleaved; and the memory the schema keeps once loaded.
 *
 *   bench_dm_load FILE.xml [RUNS] [MODULAR_ROOT.xml]
 *
 * The optional modular root is timed too (usp_dm_load_file, imports read
 * from its folder). Figures go to stdout. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>

#include "usp/dm_schema.h"

/* libxml2's fastest tree parse: no blank text nodes, compact text. */
#define FLOOR_OPTS                                                                                 \
    (XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_COMPACT | XML_PARSE_NOERROR |                \
     XML_PARSE_NOWARNING)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double minimum(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] < m)
            m = v[i];
    return m;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (!r)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_dm_load FILE.xml [RUNS] [MODULAR_ROOT.xml]\n");
        return 2;
    }
    const char *file = argv[1];
    int runs = argc > 2 ? atoi(argv[2]) : 20;
    const char *modular = argc > 3 ? argv[3] : NULL;
    if (runs < 1 || runs > 10000) {
        fprintf(stderr, "bench_dm_load: RUNS must be 1..10000\n");
        return 2;
    }
    size_t len = 0;
    char *buf = read_all(file, &len);
    if (!buf) {
        fprintf(stderr, "bench_dm_load: cannot read %s\n", file);
        return 1;
    }
    xmlInitParser();
    struct usp_dm_error err;
    struct usp_dm_schema *s = NULL;
    /* warm-up: libxml2's globals, the page cache, malloc's arenas */
    if (usp_dm_load_memory(buf, len, file, NULL, 0, &s, &err) != 0) {
        fprintf(stderr, "bench_dm_load: %s\n", err.msg);
        free(buf);
        return 1;
    }
    usp_dm_schema_free(s);
    xmlFreeDoc(xmlReadMemory(buf, (int)len, file, NULL, FLOOR_OPTS));

    double *floor_ms = calloc((size_t)runs, sizeof *floor_ms);
    double *load_ms = calloc((size_t)runs, sizeof *load_ms);
    if (!floor_ms || !load_ms)
        return 1;
    for (int i = 0; i < runs; i++) {
        /* interleaved, the order alternating, so both see the same machine */
        for (int k = 0; k < 2; k++) {
            if ((k == 0) == (i % 2 == 0)) {
                double t0 = now_ms();
                xmlDocPtr doc = xmlReadMemory(buf, (int)len, file, NULL, FLOOR_OPTS);
                floor_ms[i] = now_ms() - t0;
                if (!doc) {
                    fprintf(stderr, "bench_dm_load: libxml2 cannot parse %s\n", file);
                    return 1;
                }
                xmlFreeDoc(doc);
            } else {
                double t0 = now_ms();
                int rc = usp_dm_load_memory(buf, len, file, NULL, 0, &s, &err);
                load_ms[i] = now_ms() - t0;
                if (rc != 0) {
                    fprintf(stderr, "bench_dm_load: %s\n", err.msg);
                    return 1;
                }
                usp_dm_schema_free(s);
            }
        }
    }
    double fmin = minimum(floor_ms, runs), lmin = minimum(load_ms, runs);
    double fmed = median(floor_ms, runs), lmed = median(load_ms, runs);

    /* What the schema keeps: heap in use with the schema alive, nothing
     * else of the load left (the XML is freed inside the load). */
    size_t before = heap_in_use();
    if (usp_dm_load_memory(buf, len, file, NULL, 0, &s, &err) != 0)
        return 1;
    size_t after = heap_in_use();
    const struct usp_dm_counts *c = usp_dm_schema_counts(s);
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    printf("dm-load: %s (%zu bytes), %d runs each, interleaved\n", base, len, runs);
    printf("  libxml2 xmlReadMemory, tree (floor)  median %7.2f ms   min %7.2f ms\n", fmed, fmin);
    printf("  usp_dm_load_memory -> schema         median %7.2f ms   min %7.2f ms\n", lmed, lmin);
    printf("  ratio loader / floor                 median %7.2f      min %7.2f\n", lmed / fmed,
           lmin / fmin);
    printf("  schema memory: %zu bytes (heap delta, mallinfo2), %zu bytes (its own count)\n",
           after - before, c->bytes);
    printf("  model %s: %u objects (%u multi-instance), %u parameters, %u commands, "
           "%u events, %u shared types\n",
           usp_dm_schema_model(s), c->objects, c->multi_objects, c->params, c->commands, c->events,
           c->types);
    usp_dm_schema_free(s);

    if (modular) {
        double *mod_ms = calloc((size_t)runs, sizeof *mod_ms);
        int mruns = runs < 10 ? runs : 10;
        for (int i = 0; mod_ms && i < mruns; i++) {
            double t0 = now_ms();
            int rc = usp_dm_load_file(modular, 0, &s, &err);
            mod_ms[i] = now_ms() - t0;
            if (rc != 0) {
                fprintf(stderr, "bench_dm_load: %s\n", err.msg);
                return 1;
            }
            usp_dm_schema_free(s);
        }
        if (mod_ms) {
            const char *mb = strrchr(modular, '/') ? strrchr(modular, '/') + 1 : modular;
            printf("  modular %s + imports (usp_dm_load_file, %d runs)  median %.2f ms   min "
                   "%.2f ms\n",
                   mb, mruns, median(mod_ms, mruns), minimum(mod_ms, mruns));
        }
        free(mod_ms);
    }
    free(floor_ms);
    free(load_ms);
    free(buf);
    return 0;
}
