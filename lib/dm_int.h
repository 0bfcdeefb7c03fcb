/* Private to the data-model schema: memory pool, string interning, type
 * records under construction, the mutable builder the XML loader fills and
 * the freeze step that turns it into the immutable struct usp_dm_schema. */
#ifndef USP_DM_INT_H
#define USP_DM_INT_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/dm_schema.h"

/* ---- bump allocator: everything of a schema lives in one pool ---- */

struct dm_chunk;

struct dm_pool {
    struct dm_chunk *head;
    size_t bytes; /* total held, chunk headers included */
};

/* Zeroed memory aligned for any type, or NULL when out of memory. */
void *dm_schema__alloc(struct dm_pool *p, size_t n);
void *dm_schema__memdup(struct dm_pool *p, const void *src, size_t n);
void dm_schema__pool_release(struct dm_pool *p);

/* ---- string interning: equal strings share one copy ---- */

struct dm_strtab {
    struct dm_pool *pool; /* where the strings live */
    struct dm_str_slot *slots;
    size_t cap, n;
};

void dm_schema__strtab_init(struct dm_strtab *t, struct dm_pool *pool);
void dm_schema__strtab_cleanup(struct dm_strtab *t);
/* The interned copy of s[0..len), or NULL when out of memory. Interned
 * strings compare equal by pointer. */
const char *dm_schema__intern(struct dm_strtab *t, const char *s, size_t len);

/* ---- growable array in malloc'd memory (builder only) ---- */

struct dm_vec {
    void *v;
    uint32_t n, cap;
};

/* Room for one more element of `size` bytes, zeroed; NULL when out of memory. */
void *dm_schema__vec_push(struct dm_vec *a, size_t size);
void dm_schema__vec_free(struct dm_vec *a);
#define DM_VEC_AT(vec, type, i) (((type *)(vec).v)[i])

/* ---- types ---- */

/* A type being built: the same fields as struct usp_dm_type with growable
 * facet lists. */
struct dm_tbuild {
    const char *name;
    const struct usp_dm_type *parent;
    const struct usp_dm_type *item; /* list: item type */
    struct dm_vec sizes;            /* struct usp_dm_size */
    struct dm_vec ranges;           /* struct usp_dm_range */
    struct dm_vec enums;            /* struct usp_dm_enum */
    struct dm_vec patterns;         /* struct usp_dm_pattern (value only) */
    const char *units;
    struct usp_dm_pathref pathref;
    struct usp_dm_enumref enumref;
    bool has_pathref, has_enumref;
    uint32_t min_items, max_items;
    uint8_t base, nested;
};

/* Shared, deduplicated type records and compiled patterns. */
struct dm_types {
    struct dm_pool *pool;
    struct dm_strtab *strs;
    const struct usp_dm_type **slots; /* hash set of interned types */
    size_t cap, n;
    struct dm_vec regexes; /* regex_t * to free with the schema */
    struct dm_pattab *pats;
};

void dm_types__init(struct dm_types *t, struct dm_pool *pool, struct dm_strtab *strs);
/* Frees the lookup tables but not the compiled patterns in `regexes`:
 * the schema takes those when frozen (dm_schema__freeze), otherwise
 * dm_types__regexes_free() frees them. */
void dm_types__cleanup(struct dm_types *t);
void dm_types__regexes_free(struct dm_vec *regexes);

void dm_types__tbuild_init(struct dm_tbuild *b, unsigned base);
/* Starts from an existing type's contents (name and parent not copied). */
int dm_types__tbuild_from(struct dm_tbuild *b, const struct usp_dm_type *t);
void dm_types__tbuild_cleanup(struct dm_tbuild *b);
/* The shared record for b's contents; NULL when out of memory. Compiles
 * patterns (once per distinct value); a bad one sets *bad to its value and
 * `why` to the reason, and returns NULL. */
const struct usp_dm_type *dm_types__intern(struct dm_types *t, const struct dm_tbuild *b,
                                           const char **bad, char *why, size_t whylen);

/* Lexical parsers shared by the loader and the checker. */
int dm_types__parse_i64(const char *s, size_t len, int64_t *out);
int dm_types__parse_u64(const char *s, size_t len, uint64_t *out);
bool dm_types__base_signed(unsigned base);
/* Whether v fits the base type's own range (int, unsignedInt are 32-bit). */
bool dm_types__fits_base(unsigned base, const union usp_dm_int *v);

/* Translates an XML Schema regex to a POSIX ERE anchored on both ends and
 * compiles it; 0, or -1 with a reason in why. */
int dm_types__regex_compile(regex_t *re, const char *xsd, char *why, size_t whylen);

/* ---- builder: the mutable model the loader fills ---- */

struct dm_bobj;

struct dm_bparam {
    const char *name;
    const struct usp_dm_type *type;
    const char *default_value;
    const char *description;
    uint8_t access, status, notify, default_type;
    uint16_t flags;
};

struct dm_bscope; /* a set of objects: the model, or one argument tree */

struct dm_bcmd {
    const char *name;
    const char *description;
    struct dm_bscope *input, *output, *args; /* args: events */
    uint8_t status;
    bool async, is_event;
};

struct dm_bkey {
    const char **params; /* interned names */
    uint32_t n;
    bool functional;
};

struct dm_bobj {
    const char *path; /* interned; relative inside argument trees */
    const char *file; /* where it was defined, for errors */
    int line;
    const char *description;
    const char *num_entries; /* interned parameter names, or NULL */
    const char *enable;
    struct dm_vec params; /* struct dm_bparam */
    struct dm_vec cmds;   /* struct dm_bcmd (commands and events) */
    struct dm_vec keys;   /* struct dm_bkey */
    uint32_t min_entries, max_entries;
    uint32_t order;
    uint8_t access, status, flags;
};

struct dm_bscope {
    struct dm_bobj root;  /* path "": holds the top-level arguments */
    struct dm_vec objs;   /* struct dm_bobj * in definition order */
    struct dm_bobj **map; /* hash by interned path pointer */
    size_t cap;
};

struct dm_builder {
    struct dm_pool *pool; /* the schema's pool: final data */
    struct dm_pool tmp;   /* builder-only data */
    struct dm_strtab strs;
    struct dm_types types;
    struct dm_bscope model;
    struct dm_vec datatypes; /* const struct usp_dm_type *, named */
    const char *model_name;
    const char *file; /* the root document, for messages */
    unsigned flags;
    struct usp_dm_counts counts; /* deleted items seen while loading */
};

int dm_schema__builder_init(struct dm_builder *b, struct dm_pool *pool, unsigned flags);
void dm_schema__builder_cleanup(struct dm_builder *b);

struct dm_bscope *dm_schema__scope_new(struct dm_builder *b);
struct dm_bobj *dm_schema__scope_find(const struct dm_bscope *s, const char *path);
/* Adds an object with an interned path not yet in the scope. */
struct dm_bobj *dm_schema__scope_add(struct dm_builder *b, struct dm_bscope *s, const char *path);

struct dm_bparam *dm_schema__bobj_param(struct dm_bobj *o, const char *name);
struct dm_bcmd *dm_schema__bobj_cmd(struct dm_bobj *o, const char *name);

/* Turns the builder into the schema (allocated in b->pool). On failure
 * returns a negative USP_E* and writes a message to err. */
struct usp_dm_schema;
int dm_schema__freeze(struct dm_builder *b, struct usp_dm_schema **out, struct usp_dm_error *err);

void dm_schema__errorf(struct usp_dm_error *err, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- XML loader (dm_xml.c: documents; dm_model.c: the model) ---- */

/* The XML is read with SAX callbacks into this minimal element tree: only
 * elements the loader uses (no bibliography, templates, profiles, and no
 * text except descriptions when they are kept), in a bump pool. */
struct dm_xattr {
    const char *name; /* local name */
    const char *value;
};

/* Element names the loader looks at; the built-in types are in the order
 * of enum usp_dm_base. */
enum dm_tag {
    DM_T_OTHER,
    DM_T_DOCUMENT,
    DM_T_IMPORT,
    DM_T_DATATYPE,
    DM_T_COMPONENT,
    DM_T_MODEL,
    DM_T_OBJECT,
    DM_T_PARAMETER,
    DM_T_COMMAND,
    DM_T_EVENT,
    DM_T_INPUT,
    DM_T_OUTPUT,
    DM_T_UNIQUEKEY,
    DM_T_SYNTAX,
    DM_T_LIST,
    DM_T_DEFAULT,
    DM_T_SIZE,
    DM_T_RANGE,
    DM_T_ENUMERATION,
    DM_T_PATTERN,
    DM_T_UNITS,
    DM_T_PATHREF,
    DM_T_INSTANCEREF,
    DM_T_ENUMERATIONREF,
    DM_T_DESCRIPTION,
    DM_T_STRING, /* first built-in type: DM_T_STRING + USP_DM_STRING */
    DM_T_BOOLEAN,
    DM_T_INT,
    DM_T_UNSIGNEDINT,
    DM_T_LONG,
    DM_T_UNSIGNEDLONG,
    DM_T_DATETIME,
    DM_T_BASE64,
    DM_T_HEXBINARY,
    DM_T_DECIMAL,
};

struct dm_xnode {
    const char *name; /* local name */
    const struct dm_xattr *attrs;
    struct dm_xnode *children, *next;
    const char *text; /* <description> text, when kept */
    uint32_t nattrs, line;
    uint8_t tag; /* enum dm_tag */
};

enum dm_def_kind { DM_DEF_TYPE, DM_DEF_COMPONENT, DM_DEF_MODEL };

struct dm_xdoc;

/* A top-level definition of a document (dataType, component, model). */
struct dm_xdef {
    const char *name; /* interned */
    const struct dm_xnode *node;
    struct dm_xdoc *doc;
    const struct usp_dm_type *type; /* dataTypes, once built */
    int state;                      /* dataTypes: 0 new, 1 building, 2 built */
    bool virtual_;                  /* components */
};

struct dm_loader {
    struct dm_builder *b;
    struct usp_dm_error *err;
    unsigned flags;
    const char *dir;      /* import folder, or NULL */
    struct dm_pool xpool; /* element trees */
    struct dm_xdoc *docs;
    struct dm_xdoc *root;
    const struct dm_xnode *ctx; /* the parameter whose syntax is being read */
    int type_depth;             /* dataType derivations being built */
    unsigned visit;
    int import_depth;
    char **dirents;
    size_t ndirents;
    bool listed;
    bool failed;
};

#define DM_MAX_DEPTH 32 /* imports, model bases, component nesting, dataType chains */

/* The document's name for messages. */
const char *dm_xml__doc_name(const struct dm_xdoc *d);
/* An attribute's value, or NULL. */
const char *dm_xml__attr(const struct dm_xnode *n, const char *name);
const struct dm_xnode *dm_xml__child(const struct dm_xnode *n, enum dm_tag tag);
/* Records "file:line: <elem name="X">: what" (the first error wins) and
 * returns USP_EINVAL. Inside a parameter's syntax the element named is the
 * parameter (L->ctx), the line that of n. */
int dm_xml__fail(struct dm_loader *L, const struct dm_xdoc *d, const struct dm_xnode *n,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int dm_xml__oom(struct dm_loader *L);
const char *dm_xml__intern(struct dm_loader *L, const char *s);
/* What `name` means in document d: its own definition, an import's
 * binding, or (tolerated) a definition of a document it imports. */
struct dm_xdef *dm_xml__resolve(struct dm_loader *L, struct dm_xdoc *d, enum dm_def_kind k,
                                const char *name);
/* Fills the builder from a <model> of document d (its base model first). */
int dm_model__expand(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *model,
                     int depth);

#endif
