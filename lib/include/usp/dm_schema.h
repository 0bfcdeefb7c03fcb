/* The supported data model (TR-181 style schema) loaded from Broadband Forum
 * data-model XML (TR-106 DM schema), flattened "-full" or modular (imports and
 * components).
 *
 * One schema per process, shared read-only by every agent and every thread:
 * after usp_dm_load_*() returns, nothing in it changes, so every function
 * below is thread-safe on a loaded schema. All structures are owned by the
 * schema and live until usp_dm_schema_free().
 *
 * Items whose status is "deleted" (or that sit in a deleted object) are not
 * part of the supported model: they are left out and only counted. Deprecated
 * and obsoleted items are kept and carry their status.
 *
 * Command and event arguments are parameters and objects of their own
 * argument trees; attributes that mean nothing there are normalised as the
 * flattened BBF files do: arguments are readOnly with normal notification,
 * their defaults are of type "parameter", and argument objects have no
 * access, enable or numEntries parameter. */
#ifndef USP_DM_SCHEMA_H
#define USP_DM_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct usp_dm_schema;
struct usp_dm_object;

/* Built-in base types (TR-106). A list's base is the base of its items. */
enum usp_dm_base {
    USP_DM_STRING,
    USP_DM_BOOLEAN,
    USP_DM_INT,
    USP_DM_UNSIGNED_INT,
    USP_DM_LONG,
    USP_DM_UNSIGNED_LONG,
    USP_DM_DATETIME,
    USP_DM_BASE64,
    USP_DM_HEXBINARY,
    USP_DM_DECIMAL,
};

enum usp_dm_access {
    USP_DM_READ_ONLY, /* also what a missing access attribute means */
    USP_DM_READ_WRITE,
    USP_DM_WRITE_ONCE_READ_ONLY, /* parameters only */
};

enum usp_dm_status {
    USP_DM_CURRENT,
    USP_DM_DEPRECATED,
    USP_DM_OBSOLETED,
    USP_DM_DELETED, /* never in a loaded schema: deleted items are left out */
};

/* activeNotify (CWMP semantics; canDeny maps to USP's VALUE_CHANGE_WILL_IGNORE). */
enum usp_dm_notify {
    USP_DM_NOTIFY_NORMAL,
    USP_DM_NOTIFY_CAN_DENY,
    USP_DM_NOTIFY_FORCE_ENABLED,
    USP_DM_NOTIFY_FORCE_DEFAULT_ENABLED,
};

enum usp_dm_default_type {
    USP_DM_DEFAULT_NONE,
    USP_DM_DEFAULT_OBJECT,         /* value on creation of the object */
    USP_DM_DEFAULT_FACTORY,        /* value after a factory reset */
    USP_DM_DEFAULT_IMPLEMENTATION, /* informative only */
    USP_DM_DEFAULT_PARAMETER,      /* for command/event arguments */
};

enum usp_dm_nesting {
    USP_DM_NESTING_LEGACY,
    USP_DM_NESTING_PERMITTED,
    USP_DM_NESTING_REQUIRED,
};

enum usp_dm_ref_type {
    USP_DM_REF_NONE,
    USP_DM_REF_WEAK,
    USP_DM_REF_STRONG,
};

/* pathRef targetType */
enum usp_dm_target_type {
    USP_DM_TARGET_ANY,
    USP_DM_TARGET_PARAMETER,
    USP_DM_TARGET_OBJECT,
    USP_DM_TARGET_SINGLE,
    USP_DM_TARGET_TABLE,
    USP_DM_TARGET_ROW,
};

/* Integer bound of a range: signed for int, long and decimal, unsigned for
 * unsignedInt and unsignedLong (the type's base says which member). */
union usp_dm_int {
    int64_t i;
    uint64_t u;
};

#define USP_DM_UNBOUNDED UINT32_MAX

/* Allowed lengths: characters, or octets for base64 and hexBinary. */
struct usp_dm_size {
    uint32_t min, max; /* max USP_DM_UNBOUNDED when not given */
};

struct usp_dm_range {
    union usp_dm_int min, max;
    uint64_t step; /* 1 when not given */
    bool has_min, has_max;
};

enum {
    USP_DM_ENUM_OPTIONAL = 1 << 0,  /* the agent need not support it */
    USP_DM_ENUM_READ_ONLY = 1 << 1, /* reported by the agent, never set by a controller */
};

struct usp_dm_enum {
    const char *value;
    uint8_t status; /* enum usp_dm_status; deleted values are left out */
    uint8_t flags;  /* USP_DM_ENUM_* */
};

/* An XML Schema regular expression (whole-value match). An empty value means
 * "the empty string is allowed". */
struct usp_dm_pattern {
    const char *value;
    const void *compiled; /* private */
};

struct usp_dm_pathref {
    const char *target_parent; /* "" when not given */
    uint8_t ref_type;          /* enum usp_dm_ref_type */
    uint8_t target_type;       /* enum usp_dm_target_type */
};

struct usp_dm_enumref {
    const char *target_param;
    const char *null_value; /* NULL when not given */
};

/* A value type: a built-in base with facets, a named dataType, or a list.
 * Types are shared: identical syntaxes point at one record. Repeated facets
 * of one kind (sizes, ranges, patterns) are alternatives: a value must match
 * one of them.
 *
 * A list (item != NULL) is a comma-separated string: sizes and
 * min_items/max_items apply to the whole string, everything else to each item
 * (`item`, which may itself be a list for nested lists). */
struct usp_dm_type {
    const char *name;                 /* dataType name, or NULL */
    const struct usp_dm_type *parent; /* the named dataType this refines, or NULL */
    const struct usp_dm_type *item;   /* lists only */
    const struct usp_dm_size *sizes;
    const struct usp_dm_range *ranges;
    const struct usp_dm_enum *enums;
    const struct usp_dm_pattern *patterns;
    const char *units; /* NULL when none */
    const struct usp_dm_pathref *pathref;
    const struct usp_dm_enumref *enumref;
    uint32_t min_items, max_items; /* lists; max USP_DM_UNBOUNDED when not given */
    uint16_t nsizes, nranges, nenums, npatterns;
    uint8_t base;   /* enum usp_dm_base */
    uint8_t nested; /* enum usp_dm_nesting, lists only */
};

enum {
    USP_DM_PARAM_SECURED = 1 << 0,   /* syntax secured="true": read back as empty
                                      * unless the controller has a secured role */
    USP_DM_PARAM_MANDATORY = 1 << 1, /* command/event argument mandatory="true" */
    USP_DM_PARAM_HIDDEN = 1 << 2,    /* syntax hidden="true" (CWMP) */
};

struct usp_dm_param {
    const char *name;
    const struct usp_dm_object *parent; /* owning object (or argument tree) */
    const struct usp_dm_type *type;
    const char *default_value; /* NULL when none */
    const char *description;   /* NULL unless loaded with USP_DM_LOAD_DESCRIPTIONS */
    uint8_t access;            /* enum usp_dm_access */
    uint8_t status;            /* enum usp_dm_status */
    uint8_t notify;            /* enum usp_dm_notify */
    uint8_t default_type;      /* enum usp_dm_default_type */
    uint16_t flags;            /* USP_DM_PARAM_* */
};

struct usp_dm_command {
    const char *name; /* with the parentheses: "Reboot()" */
    const struct usp_dm_object *parent;
    const struct usp_dm_object *input;  /* argument tree, never NULL (may be empty) */
    const struct usp_dm_object *output; /* argument tree, never NULL (may be empty) */
    const char *description;
    uint8_t status;
    bool async;
};

struct usp_dm_event {
    const char *name; /* with the bang: "Boot!" */
    const struct usp_dm_object *parent;
    const struct usp_dm_object *args; /* argument tree, never NULL (may be empty) */
    const char *description;
    uint8_t status;
};

struct usp_dm_unique_key {
    const uint32_t *params; /* indexes into the object's params[] */
    uint32_t nparams;
    bool functional;
};

enum {
    USP_DM_OBJ_MULTI = 1 << 0,       /* "{i}" table row object */
    USP_DM_OBJ_ARGS = 1 << 1,        /* root of a command/event argument tree */
    USP_DM_OBJ_ARG_OBJECT = 1 << 2,  /* an object inside an argument tree */
    USP_DM_OBJ_MOUNT_POINT = 1 << 3, /* mountType="mountPoint" */
};

/* An object of the supported model. Children, params, commands and events
 * are sorted by name (strcmp order) for binary search.
 *
 * path: the full supported path, "Device.WiFi.AccessPoint.{i}."; inside an
 * argument tree the path relative to it ("Result.{i}."), and "" for the
 * tree's root. name: the last name segment ("AccessPoint"), "" for roots of
 * argument trees. */
struct usp_dm_object {
    const char *path;
    const char *name;
    const struct usp_dm_object *parent;
    const struct usp_dm_object *const *children;
    const struct usp_dm_param *params;
    const struct usp_dm_command *commands;
    const struct usp_dm_event *events;
    const struct usp_dm_unique_key *keys;
    const struct usp_dm_param *num_entries_param; /* in parent, or NULL */
    const struct usp_dm_param *enable_param;      /* in this object, or NULL */
    const char *description;
    uint32_t nchildren, nparams, ncommands, nevents, nkeys;
    uint32_t min_entries, max_entries; /* max USP_DM_UNBOUNDED for "unbounded" */
    uint32_t index;                    /* position in the schema's object list */
    uint8_t access;                    /* readWrite on a table: Add/Delete allowed */
    uint8_t status;
    uint8_t flags; /* USP_DM_OBJ_* */
};

/* What a model holds. The supported counts exclude deleted items; the
 * deleted_* and params_in_deleted counts are what was left out. Arguments
 * are counted apart from the model's own parameters and objects. */
struct usp_dm_counts {
    uint32_t objects, multi_objects, params, commands, async_commands, events;
    uint32_t writable_objects, writable_params;
    uint32_t arg_params, arg_objects; /* in commands and events */
    uint32_t unique_keys;
    uint32_t deprecated_objects, obsoleted_objects;
    uint32_t deprecated_params, obsoleted_params;
    uint32_t deprecated_commands, obsoleted_commands;
    uint32_t deprecated_events, obsoleted_events;
    uint32_t deleted_objects;                  /* with status="deleted", or inside one */
    uint32_t deleted_params;                   /* with status="deleted" */
    uint32_t params_in_deleted;                /* other parameters of deleted objects */
    uint32_t deleted_commands, deleted_events; /* their own or their object's status */
    uint32_t datatypes;                        /* named dataTypes defined */
    uint32_t types;                            /* distinct type records (shared) */
    uint32_t patterns;                         /* compiled patterns */
    size_t bytes;                              /* memory held by the schema (approximate
                                                * for the regex engine's own allocations) */
};

enum {
    USP_DM_LOAD_DESCRIPTIONS = 1 << 0, /* keep description texts (for `dm show`) */
};

/* A load error: "file:line: <element name="X">: what went wrong". */
struct usp_dm_error {
    char msg[640];
    int line; /* 0 when not tied to a line */
};

/* Loading keeps no global state of its own, but uses libxml2: with libxml2
 * 2.9 make the first load (which runs xmlInitParser) from one thread before
 * loading from several at once. */

/* Loads a data-model XML file. Imports are resolved in the file's folder
 * (file="tr-181-2-X.xml" with spec "...tr-181-2-19-X" picks the highest
 * corrigendum tr-181-2-19-<c>-X.xml present). The model loaded is the last
 * <model> of the file. On failure returns a negative USP_E* and fills `err`
 * (which may be NULL). */
int usp_dm_load_file(const char *path, unsigned flags, struct usp_dm_schema **out,
                     struct usp_dm_error *err);

/* The same from memory; `name` names the buffer in errors. Imports are
 * resolved in `import_dir`, or fail when it is NULL. */
int usp_dm_load_memory(const void *buf, size_t len, const char *name, const char *import_dir,
                       unsigned flags, struct usp_dm_schema **out, struct usp_dm_error *err);

void usp_dm_schema_free(struct usp_dm_schema *s);

/* Model name, e.g. "Device:2.19". */
const char *usp_dm_schema_model(const struct usp_dm_schema *s);
const struct usp_dm_counts *usp_dm_schema_counts(const struct usp_dm_schema *s);

/* The root object ("Device."). */
const struct usp_dm_object *usp_dm_schema_root(const struct usp_dm_schema *s);

/* Every object in depth-first order (parents before children, siblings by
 * name); object->index is its position. NULL when i is out of range. */
size_t usp_dm_schema_nobjects(const struct usp_dm_schema *s);
const struct usp_dm_object *usp_dm_schema_object(const struct usp_dm_schema *s, size_t i);

/* A named dataType, or NULL. */
const struct usp_dm_type *usp_dm_schema_datatype(const struct usp_dm_schema *s, const char *name);

/* Direct lookups in an object by name (not NUL-terminated: name, len). */
const struct usp_dm_object *usp_dm_object_child(const struct usp_dm_object *o, const char *name,
                                                size_t len);
const struct usp_dm_param *usp_dm_object_param(const struct usp_dm_object *o, const char *name,
                                               size_t len);
/* `name` with its "()" / "!". */
const struct usp_dm_command *usp_dm_object_command(const struct usp_dm_object *o, const char *name,
                                                   size_t len);
const struct usp_dm_event *usp_dm_object_event(const struct usp_dm_object *o, const char *name,
                                               size_t len);

static inline uint32_t usp_dm_param_index(const struct usp_dm_param *p)
{
    return (uint32_t)(p - p->parent->params);
}

enum usp_dm_kind {
    USP_DM_KIND_NONE,
    USP_DM_KIND_OBJECT,
    USP_DM_KIND_PARAM,
    USP_DM_KIND_COMMAND,
    USP_DM_KIND_EVENT,
};

/* The result of a lookup: `object` is the object itself or the owner of the
 * parameter, command or event. */
struct usp_dm_item {
    enum usp_dm_kind kind;
    const struct usp_dm_object *object;
    const struct usp_dm_param *param;
    const struct usp_dm_command *command;
    const struct usp_dm_event *event;
};

/* Looks up a supported path: "Device.WiFi.AccessPoint.{i}." (object, the
 * trailing dot optional), "Device.WiFi.AccessPoint.{i}.Enable" (parameter),
 * "Device.Reboot()" (command), "Device.Boot!" (event). Instance segments
 * ("{i}", "*", a number) are accepted only after a multi-instance object and
 * may be left out ("Device.WiFi.AccessPoint." is the table). Returns 0,
 * USP_ENOENT when nothing matches or USP_EINVAL for an empty path. */
int usp_dm_lookup(const struct usp_dm_schema *s, const char *path, struct usp_dm_item *out);

/* The same from a parsed path's segments (names[i] has lens[i] bytes, no
 * NUL needed). Instance segments (those not starting with a letter or '_':
 * "{i}", "*", "3", "[Alias==x]", "#1") are skipped wherever they are. The
 * last name may be a parameter, command or event; the others name objects.
 * Returns 0, USP_ENOENT, or USP_EINVAL when there is no name at all. */
int usp_dm_lookup_names(const struct usp_dm_schema *s, const char *const *names, const size_t *lens,
                        size_t n, struct usp_dm_item *out);

/* Checks a value against a parameter's type: base type lexical form,
 * size, ranges (with step), enumerations, patterns and list items (comma
 * separated, whitespace around items ignored, nested lists in brackets).
 * Returns 0 when valid, USP_ERR_INVALID_TYPE (7011) when the value is not of
 * the base type (e.g. "yes" for a boolean, "-1" for an unsignedInt, an odd
 * number of hex digits), USP_ERR_INVALID_VALUE (7012) when it is but breaks
 * a facet. Enumeration values flagged USP_DM_ENUM_READ_ONLY are accepted
 * (whether a controller may set them is the caller's rule). `why` (may be
 * NULL) gets a short explanation. Thread-safe. */
int usp_dm_type_check(const struct usp_dm_param *p, const char *value, char *why, size_t whylen);
int usp_dm_type_check_value(const struct usp_dm_type *t, const char *value, size_t len, char *why,
                            size_t whylen);

/* Names as they appear in the XML ("unsignedInt", "readWrite", "deprecated",
 * "canDeny", "factory", "strong", "row"). */
const char *usp_dm_base_name(unsigned base);
const char *usp_dm_access_name(unsigned access);
const char *usp_dm_status_name(unsigned status);
const char *usp_dm_notify_name(unsigned notify);
const char *usp_dm_default_type_name(unsigned type);
const char *usp_dm_ref_type_name(unsigned ref_type);
const char *usp_dm_target_type_name(unsigned target_type);

#endif
