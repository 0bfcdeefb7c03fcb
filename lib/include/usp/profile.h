/* Device profiles: which object instances a virtual agent has and what every
 * parameter's value is. A profile is parsed once and then shared, read-only,
 * by every agent (and thread) that uses it; an agent keeps only what differs.
 * The file format is documented in datamodels/profiles/FORMAT.md.
 *
 * The parser knows nothing of the TR-181 schema: it checks path syntax and
 * keeps, for every line, the path as written and its supported form (numbers
 * replaced by "{i}") so that the instance store can bind it to the schema.
 *
 * Values are generators (struct usp_gen): a template, a seeded random choice,
 * or a function of the agent's clock. usp_gen_eval() is a pure function of
 * the generator, the agent (struct usp_gen_ctx) and the instance numbers of
 * the path: nothing is stored per agent and no timer runs. */
#ifndef USP_PROFILE_H
#define USP_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/errors.h"

struct usp_profile;
struct usp_gen;

/* Table levels ({i} or instance numbers) in one path. */
#define USP_PROFILE_MAX_LEVELS 8
/* Longest path accepted, in bytes. */
#define USP_PROFILE_MAX_PATH 1024
/* Most instances one "instances" line may create under one parent. */
#define USP_PROFILE_MAX_COUNT 10000

/* The first problem found: "FILE:LINE:COL: MSG" in `text` (":COL" is left
 * out when the problem is a whole line, "LINE:COL:" when it is the file). */
struct usp_profile_err {
    char file[256]; /* as opened: the name given, or the include folder + name */
    unsigned line;  /* 1-based; 0 when the problem is not on a line */
    unsigned col;   /* 1-based byte column; 0 when not useful */
    char msg[320];
    char text[640];
};

/* What every line naming a path has. It is the first member of the entry
 * structs below, so a pointer to it is also a pointer to its entry. */
struct usp_profile_entry {
    const char *path;  /* as written, e.g. "Device.Ethernet.Interface.1.Upstream" */
    const char *spath; /* supported path, e.g. "Device.Ethernet.Interface.{i}.Upstream" */
    const char *file;  /* where it was defined */
    unsigned line;
    unsigned nlevels;     /* table levels in the path (for tables: of the parents) */
    const unsigned *inst; /* nlevels numbers: the instance written, 0 for {i} */
};

/* "PATH = EXPR" */
struct usp_profile_value {
    struct usp_profile_entry e;
    const struct usp_gen *gen;
};

/* "instances TABLE. COUNT": e.path is the table as written, without the
 * trailing "{i}." ("Device.WiFi.AccessPoint.{i}.AssociatedDevice."); e.spath
 * is the table's object path as the schema names it
 * ("Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}."). e.inst holds the
 * parent instance numbers. */
struct usp_profile_inst {
    struct usp_profile_entry e;
    unsigned min, max; /* instances 1..count, count drawn per agent in [min, max] */
    uint64_t key;      /* seeds the draw */
};

/* One "out.NAME=EXPR" of a command. */
struct usp_profile_out {
    const char *name;
    const struct usp_gen *gen;
};

/* "command PATH() delay=S result=ok|fail ..." */
struct usp_profile_cmd {
    struct usp_profile_entry e;
    uint32_t delay_ms;
    bool fail;
    uint32_t err_code;   /* USP error code when `fail` (default 7022) */
    const char *err_msg; /* when `fail` */
    unsigned nout;
    const struct usp_profile_out *out;
};

/* All the entries of one supported parameter path, most specific first. */
struct usp_profile_slot;

/* Loading. Both return 0, USP_EINVAL (bad content), USP_EIO (a file cannot
 * be read) or USP_ENOMEM, with `err` (may be NULL) filled on failure.
 * parse_mem reads `len` bytes of `buf` (no NUL needed) and names them `name`
 * in messages; `include` lines are resolved in `dir`, and refused when `dir`
 * is NULL. */
int usp_profile_load(const char *path, struct usp_profile **out, struct usp_profile_err *err);
int usp_profile_parse_mem(const char *name, const char *buf, size_t len, const char *dir,
                          struct usp_profile **out, struct usp_profile_err *err);
void usp_profile_free(struct usp_profile *p);

const char *usp_profile_name(const struct usp_profile *p);
const char *usp_profile_description(const struct usp_profile *p); /* "" when none */
uint64_t usp_profile_seed(const struct usp_profile *p);
/* Bytes of shared memory the parsed profile holds. */
size_t usp_profile_mem(const struct usp_profile *p);

/* Iteration in file order (an include's lines where the include is; a line
 * that overrides an earlier one takes that one's place). */
size_t usp_profile_nvalues(const struct usp_profile *p);
const struct usp_profile_value *usp_profile_value_at(const struct usp_profile *p, size_t i);
size_t usp_profile_ninsts(const struct usp_profile *p);
const struct usp_profile_inst *usp_profile_inst_at(const struct usp_profile *p, size_t i);
size_t usp_profile_ncmds(const struct usp_profile *p);
const struct usp_profile_cmd *usp_profile_cmd_at(const struct usp_profile *p, size_t i);

/* Lookups by supported path plus the instance numbers of the concrete path.
 * Among the entries of that supported path whose written numbers match
 * `inst` ({i} matches anything), the one with the most written numbers wins,
 * then the one whose numbers are deeper (two lines never tie). Levels beyond
 * `ninst` match only {i}. NULL when none. */
const struct usp_profile_slot *usp_profile_slot(const struct usp_profile *p, const char *spath);
const struct usp_profile_value *usp_profile_slot_value(const struct usp_profile_slot *s,
                                                       const unsigned *inst, unsigned ninst);
const struct usp_profile_value *usp_profile_find_value(const struct usp_profile *p,
                                                       const char *spath, const unsigned *inst,
                                                       unsigned ninst);
const struct usp_profile_cmd *usp_profile_find_cmd(const struct usp_profile *p, const char *spath,
                                                   const unsigned *inst, unsigned ninst);
/* `table` is the schema's object path ("...AssociatedDevice.{i}.") or the
 * form without the trailing "{i}."; `parent_inst` the parents' numbers. */
const struct usp_profile_inst *usp_profile_find_inst(const struct usp_profile *p, const char *table,
                                                     const unsigned *parent_inst, unsigned nparent);
/* How many instances (numbered 1..N) agent `agent` has for declaration `d`
 * under the given parents: the same answer every time for the same input. */
unsigned usp_profile_inst_count(const struct usp_profile_inst *d, uint64_t agent,
                                const unsigned *parent_inst, unsigned nparent);
/* find_inst + inst_count; 0 when the table is not declared. */
unsigned usp_profile_instances(const struct usp_profile *p, const char *table, uint64_t agent,
                               const unsigned *parent_inst, unsigned nparent);

/* "Device.WiFi.SSID.2.SSID" -> "Device.WiFi.SSID.{i}.SSID" and {2}. {i} in
 * the input is kept (its number is 0). 0, USP_EINVAL (bad syntax) or
 * USP_ERANGE (`spath` too small or too many levels). `inst` holds
 * USP_PROFILE_MAX_LEVELS numbers. */
int usp_profile_split_path(const char *path, char *spath, size_t len, unsigned *inst,
                           unsigned *ninst);

/* --- Generators --------------------------------------------------------- */

/* The agent a value is computed for. Times are on the agent's own virtual
 * clock (which may be skewed), in seconds and microseconds since the Unix
 * epoch. */
struct usp_gen_ctx {
    uint64_t agent;     /* the agent's index in the fleet: {n} */
    const char *eid;    /* its Endpoint ID: {eid} (NULL reads as "") */
    int64_t boot_sec;   /* when it booted */
    uint32_t boot_usec; /* 0..999999 */
    int64_t now_sec;    /* its clock now */
    uint32_t now_usec;
};

enum usp_gen_kind {
    USP_GEN_TEXT,    /* a literal or a "template" */
    USP_GEN_RANDOM,  /* random(A..B) or random(x, y, ...) */
    USP_GEN_UPTIME,  /* uptime() */
    USP_GEN_NOW,     /* now() */
    USP_GEN_COUNTER, /* counter(start, rate, bits) */
    USP_GEN_GAUGE,   /* gauge(mean, amplitude, period, noise) */
};

/* What a value depends on. */
enum {
    USP_GEN_F_AGENT = 1u << 0,   /* differs between agents */
    USP_GEN_F_INST = 1u << 1,    /* differs between instances of its table */
    USP_GEN_F_DYNAMIC = 1u << 2, /* changes with the agent's clock */
};

enum usp_gen_kind usp_gen_kind(const struct usp_gen *g);
unsigned usp_gen_flags(const struct usp_gen *g);
/* Changes with time (uptime, now, counter, gauge): ValueChange needs it. */
bool usp_gen_is_dynamic(const struct usp_gen *g);
/* The value when it is the same for every agent and instance, else NULL. */
const char *usp_gen_const(const struct usp_gen *g);
/* The expression as written in the profile. */
const char *usp_gen_source(const struct usp_gen *g);
/* How many instance numbers usp_gen_eval() reads (the highest {iK}). */
unsigned usp_gen_levels(const struct usp_gen *g);

/* Writes the value for agent `ctx` and the instance numbers `inst` of the
 * parameter's path (pass all nlevels of them: seeded draws use them all).
 * 0; USP_ERANGE when `buf` is too small (it holds a NUL-terminated prefix);
 * USP_EINVAL when `ninst` < usp_gen_levels(g) or `len` is 0. */
int usp_gen_eval(const struct usp_gen *g, const struct usp_gen_ctx *ctx, const unsigned *inst,
                 unsigned ninst, char *buf, size_t len);

/* The value of a concrete parameter path ("Device.WiFi.SSID.2.SSID").
 * 0, USP_ENOENT (the profile gives it no value), USP_EINVAL (bad path),
 * or as usp_gen_eval. */
int usp_profile_get(const struct usp_profile *p, const char *path, const struct usp_gen_ctx *ctx,
                    char *buf, size_t len);
/* The agent's serial number ({serial}: the profile's `serial` template,
 * "SIM{n:06}" by default). */
int usp_profile_serial(const struct usp_profile *p, uint64_t agent, char *buf, size_t len);

#endif
