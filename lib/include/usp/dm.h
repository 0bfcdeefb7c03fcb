/* The instantiated data model of a virtual agent.
 *
 * A model (struct usp_dm_model) binds one schema (usp/dm_schema.h) to one
 * device profile (usp/profile.h): it is built once, immutable afterwards, and
 * shared read-only by every agent of that profile and every thread.
 *
 * An agent (struct usp_dm_agent) is copy-on-write over its model: until it is
 * written, its instances and values are the profile's (computed from the
 * agent index and clock on every read); it stores only what it changed
 * (values set, instances added or deleted), in an overlay allocated on the
 * first write. An untouched agent costs sizeof(struct usp_dm_agent).
 *
 * Values are read in this order: the overlay, the profile's generator, the
 * schema default, the type's zero value ("" for strings, "0", "false", the
 * unknown time "0001-01-01T00:00:00Z"). NumberOfEntries parameters are
 * computed from their tables. Nothing here is thread-safe on one agent; an
 * agent lives on one worker loop. */
#ifndef USP_DM_H
#define USP_DM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/dm_schema.h"
#include "usp/path.h"
#include "usp/profile.h"

/* Most multi-instance levels on one path (TR-181 has at most 5). */
#define USP_DM_MAX_LEVELS 8
/* Longest parameter value the engine stores or returns, in bytes. */
#define USP_DM_VALUE_MAX 4096

struct usp_dm_model;
struct usp_dm_overlay;

/* An instantiated object: a schema object and the instance numbers of every
 * multi-instance object on its path, outermost first ("Device.WiFi.
 * AccessPoint.2.AssociatedDevice.5." is {obj, 2, {2, 5}}). */
struct usp_dm_inst {
    const struct usp_dm_object *obj;
    uint32_t n;
    uint32_t inst[USP_DM_MAX_LEVELS];
};

/* One virtual agent's data model. Kept small: 100,000 of them live in one
 * process. */
struct usp_dm_agent {
    const struct usp_dm_model *model;
    struct usp_dm_overlay *ov; /* NULL until the first write */
    const char *eid;           /* owned by the caller; {eid} in templates */
    uint64_t index;            /* {n} */
    int64_t boot_sec;          /* on the agent's clock */
    int64_t skew_sec;          /* the agent's clock minus the host's */
};

/* A binding problem: "profile.prof:12: Device.X.Y: no such parameter in
 * Device:2.19" and the like. */
struct usp_dm_model_err {
    char msg[640];
};

/* Binds `profile` (may be NULL: no instances, schema defaults) to `schema`.
 * Every profile path must exist in the schema (instances on multi-instance
 * objects, values on parameters, commands on commands) and every constant
 * value must pass the parameter's type check; the first problem fails the
 * bind with the profile's file and line in `err`. Both inputs must outlive
 * the model. 0, USP_EINVAL or USP_ENOMEM. */
int usp_dm_model_new(const struct usp_dm_schema *schema, const struct usp_profile *profile,
                     struct usp_dm_model **out, struct usp_dm_model_err *err);
void usp_dm_model_free(struct usp_dm_model *m);
const struct usp_dm_schema *usp_dm_model_schema(const struct usp_dm_model *m);
const struct usp_profile *usp_dm_model_profile(const struct usp_dm_model *m);
/* Bytes of shared memory the binding holds (not counting schema/profile). */
size_t usp_dm_model_mem(const struct usp_dm_model *m);

/* Agent life cycle. `eid` must outlive the agent. */
void usp_dm_agent_init(struct usp_dm_agent *a, const struct usp_dm_model *m, uint64_t index,
                       const char *eid, int64_t boot_sec);
/* Frees the overlay. */
void usp_dm_agent_cleanup(struct usp_dm_agent *a);
/* A reboot: values and instances persist (USP data is persistent unless the
 * data model says otherwise), but LocalAgent.Request rows are removed and
 * Subscription rows with Persistent=false are deleted; boot_sec becomes
 * `now_sec`. */
void usp_dm_agent_reboot(struct usp_dm_agent *a, int64_t now_sec);
/* A factory reset: back to the profile (the overlay is freed). */
void usp_dm_agent_factory_reset(struct usp_dm_agent *a, int64_t now_sec);
/* Bytes the agent holds beyond sizeof(struct usp_dm_agent). */
size_t usp_dm_agent_mem(const struct usp_dm_agent *a);
/* The agent's clock: the host's time plus the agent's skew. */
int64_t usp_dm_agent_now(const struct usp_dm_agent *a);

/* --- Instances ----------------------------------------------------------- */

/* Whether an instantiated object exists (every instance on its path does). */
bool usp_dm_exists(const struct usp_dm_agent *a, const struct usp_dm_inst *o);

/* Calls `cb` for every instance number of table `table` (a USP_DM_OBJ_MULTI
 * object) under the parent instances `parent` (its n is the table's level
 * count minus one), in increasing order. A non-zero return from `cb` stops
 * the walk and is returned. */
typedef int (*usp_dm_inst_cb)(void *ctx, uint32_t inst);
int usp_dm_instances(const struct usp_dm_agent *a, const struct usp_dm_object *table,
                     const struct usp_dm_inst *parent, usp_dm_inst_cb cb, void *ctx);
uint32_t usp_dm_count(const struct usp_dm_agent *a, const struct usp_dm_object *table,
                      const struct usp_dm_inst *parent);

/* Adds a row to `table` under `parent`: the new number (never reused while
 * the agent lives: above every number the table ever had) goes to *inst.
 * Parameters take their object-creation defaults; the caller then sets the
 * ones given (usp_dm_set) and the unique keys it must assign. 0, USP_ERANGE
 * (maxEntries reached: USP code 7017 creation failure), USP_ENOENT (parent
 * missing), USP_ENOMEM. */
int usp_dm_add(struct usp_dm_agent *a, const struct usp_dm_object *table,
               const struct usp_dm_inst *parent, uint32_t *inst);
/* Deletes a row and everything below it. 0 or USP_ENOENT. */
int usp_dm_delete(struct usp_dm_agent *a, const struct usp_dm_inst *row);

/* --- Values -------------------------------------------------------------- */

/* Writes parameter `p` of object `o` into buf (NUL-terminated). 0,
 * USP_ENOENT (object missing), USP_ERANGE (buf too small: holds a prefix). */
int usp_dm_get(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
               const struct usp_dm_param *p, char *buf, size_t len);

/* Sets a parameter after checking it: the object exists (7016), the value
 * passes the type (7011/7012, usp_dm_type_check), a writeOnceReadOnly
 * parameter that already has a value is refused (7013 — the caller checks
 * plain read-only access, which a controller may not write but the agent
 * itself may), and a unique key stays unique among its siblings (7025).
 * Returns 0 or the USP error code (positive, 70xx) with `why` filled;
 * USP_ENOMEM (negative) when out of memory. `changed` (may be NULL) tells
 * whether the stored value differs from the old one. */
int usp_dm_set(struct usp_dm_agent *a, const struct usp_dm_inst *o,
               const struct usp_dm_param *p, const char *value, bool *changed, char *why,
               size_t whylen);

/* Whether a parameter's value changes with time on its own (a dynamic
 * generator in the profile, not overridden by a Set). */
bool usp_dm_is_dynamic(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                       const struct usp_dm_param *p);

/* --- Paths --------------------------------------------------------------- */

/* Formats an instantiated object path ("Device.WiFi.SSID.2.") into buf. */
int usp_dm_inst_path(const struct usp_dm_inst *o, char *buf, size_t len);
/* Parses an instantiated object path with instance numbers only (e.g. a
 * reference value, or a Subscription's Recipient); the trailing '.' is
 * optional. 0, USP_ENOENT (not in the schema) or USP_EINVAL. */
int usp_dm_inst_parse(const struct usp_dm_model *m, const char *path, struct usp_dm_inst *out);

/* What a path resolved to, one match at a time. */
struct usp_dm_match {
    struct usp_dm_inst obj;              /* the object (or the owner of the item) */
    const struct usp_dm_param *param;     /* parameter paths */
    const struct usp_dm_command *command; /* command paths */
    const struct usp_dm_event *event;     /* event paths */
};
typedef int (*usp_dm_match_cb)(void *ctx, const struct usp_dm_match *m);

/* Why a path did not resolve: a USP code and a sentence naming the path
 * element at fault. */
struct usp_dm_path_err {
    uint32_t usp_code; /* 7026 invalid path (not in the schema), 7016 object
                        * does not exist (instance number, unique-key address
                        * or reference with no match), 7008 (a search value
                        * that cannot be compared), 7003 */
    char msg[256];
};

/* Resolves a parsed path against the agent: names against the schema,
 * instance numbers, '*', search expressions (== != ~= < > <= >= compared by
 * the parameter's type: numbers numerically, dateTime by time, strings and
 * booleans only with == and !=; `~=` on lists), unique-key addressing, and
 * reference following ('+', '#n+', '#*+', through strong or weak pathRef
 * parameters). Calls `cb` once per match in path order (instance numbers
 * increasing). A search that matches nothing is not an error (no call, 0);
 * a path that names nothing in the schema is 7026; an instance number or
 * unique-key address that matches nothing is 7016. Returns 0, the non-zero
 * value of `cb`, or a positive USP code with `err` filled. `{i}` segments are
 * refused (7026): supported paths are for usp_dm_lookup_names. */
int usp_dm_resolve(const struct usp_dm_agent *a, const struct usp_path *p, usp_dm_match_cb cb,
                   void *ctx, struct usp_dm_path_err *err);

/* The unique keys of a row, as "Name=Value" pairs for GetInstances, AddResp
 * and ObjectCreation: calls cb for each parameter of every unique key of the
 * row's object (each parameter once). */
typedef int (*usp_dm_kv_cb)(void *ctx, const char *name, const char *value);
int usp_dm_unique_keys(const struct usp_dm_agent *a, const struct usp_dm_inst *row,
                       usp_dm_kv_cb cb, void *ctx);

/* --- Engine additions ---------------------------------------------------- */

/* How matches look (usp_dm_resolve): a parameter, command or event path
 * gives its owner object in `obj`; an object path gives the object, and a
 * table path without an instance selector ("Device.IP.Interface.") gives
 * the table itself: obj.obj is the multi-instance object and obj.n is one
 * less than its table levels (usp_dm_inst_path then writes the table path).
 * 7016 is returned only for an address (instance number, unique-key address,
 * reference) that matches nothing outside any wildcard or search: Get maps
 * it to 7026 for a non-search path (R-GET.0). usp_dm_exists takes such a
 * table form too (true when its parent rows exist). */

/* usp_dm_set without the unique-key check, for a caller that writes several
 * parameters of one row and then checks its keys once with
 * usp_dm_check_unique (Add: the parameters given and the keys the agent
 * assigns; a Set of several key parameters of one object). */
int usp_dm_set_nokeys(struct usp_dm_agent *a, const struct usp_dm_inst *o,
                      const struct usp_dm_param *p, const char *value, bool *changed, char *why,
                      size_t whylen);
/* 0, or 7025 (with `why`) when a unique key of `row` equals a sibling's;
 * 7016 when the row does not exist; USP_ENOMEM. */
int usp_dm_check_unique(const struct usp_dm_agent *a, const struct usp_dm_inst *row, char *why,
                        size_t whylen);

/* The generator context of the agent now (for command outputs). */
void usp_dm_agent_gen_ctx(const struct usp_dm_agent *a, struct usp_gen_ctx *ctx);

/* The profile's "command" line for `cmd` on object instance `o` (most
 * specific first, as for values), or NULL when the profile gives none. */
const struct usp_profile_cmd *usp_dm_command_entry(const struct usp_dm_model *m,
                                                   const struct usp_dm_inst *o,
                                                   const struct usp_dm_command *cmd);

/* Records in the agent's overlay (values set, tables changed): 0 when
 * untouched. For tests and statistics. */
size_t usp_dm_agent_records(const struct usp_dm_agent *a);

#endif
