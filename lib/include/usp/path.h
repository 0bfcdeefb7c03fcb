/* USP Path Names (TR-369 "Path Names" and "Data Model Path Grammar";
 * names per TR-106): one parser for every kind of path a message can carry,
 * giving a parsed form that the data-model engine evaluates without parsing
 * again.
 *
 * What parses (a path always starts with a name and a '.'):
 *   Device.                                  object path (ends in '.')
 *   Device.IP.Interface.1.Name               parameter path
 *   Device.IP.Interface.*.Stats.             wildcard
 *   Device.IP.Interface.[Type=="Normal"&&Stats.ErrorsSent>0].Name
 *   Device.NAT.PortMapping.[RemoteHost==""&&ExternalPort==0&&Protocol=="TCP"].
 *   Device.NAT.PortMapping.1.Interface+.Name reference following
 *   Device.X.Refs#2+.Name  Device.X.Refs#*+.Name
 *   Device.IP.Interface.[Name=="eth0"].Reset()   command (last element only)
 *   Device.Boot!                             event (last element only)
 *   Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.   supported path
 *
 * Decisions where the specification leaves room (reasons in lib/path_parse.c):
 * - Names follow TR-106: a letter or '_' first, then letters, digits, '_'
 *   and '-', at most 256 characters; ASCII only.
 * - An instance number is 1..4294967295 written without leading zeros; the
 *   same holds for the n of "Param#n+".
 * - An instance selector ('1', '*', '[...]', '{i}') may only follow a
 *   name that is not the first one, and must be followed by '.' (unless
 *   USP_PATH_OPT_REFERENCE is given).
 * - After reference following ("+", "#n+", "#*+") come '.' and a name:
 *   "Ref+." alone is not a path (the grammar's reffollow '.' name).
 * - '{i}' may be mixed with instance numbers (the supported-path grammar
 *   allows it) but not with '*', '[...]' or reference following.
 * - Search expressions: comparisons joined by "&&", operators
 *   == != ~= < > <= >=; the left side is a relative parameter path of names
 *   (no instance selectors: an expression may not descend into a child
 *   table), which may follow references ("Ref+.Name"). Spaces and tabs are
 *   allowed after '[', before ']', around operators and around "&&", and
 *   nowhere else in a path. The right side is a string in double quotes,
 *   where %22 is '"' and %25 is '%' (any other '%', a control character or
 *   bad UTF-8 is an error), or an unquoted literal of letters, digits and "_-+.:"
 *   (numbers, true/false, dateTime, hex...): what it means is for the
 *   evaluator, which knows the parameter's type. Unique-key addressing is
 *   the same syntax; the evaluator decides whether it addresses or searches.
 * - A path is at most USP_PATH_MAX_LEN bytes.
 *
 * The parsed form is immutable and self-contained: the struct, its segments,
 * comparisons and strings sit in ONE block (malloc'd by usp_path_parse, or
 * the caller's buffer with usp_path_parse_buf, e.g. from an arena), so it
 * can be shared between threads and evaluated against many agents' stores.
 * Nothing else is allocated. The block holds pointers into itself: it cannot
 * be copied with memcpy. */
#ifndef USP_PATH_H
#define USP_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USP_PATH_MAX_LEN  65535 /* bytes of path text */
#define USP_PATH_NAME_MAX 256   /* characters of one name (TR-106) */

enum usp_path_seg_kind {
    USP_PATH_SEG_NAME,      /* object or parameter name: name, len */
    USP_PATH_SEG_INSTANCE,  /* instance number: inst */
    USP_PATH_SEG_WILDCARD,  /* '*' */
    USP_PATH_SEG_SEARCH,    /* '[expr]': cmp, ncmp */
    USP_PATH_SEG_SUPPORTED, /* '{i}' */
    USP_PATH_SEG_REF,       /* reference following of the NAME before it: ref */
    USP_PATH_SEG_COMMAND,   /* last only: name "Reboot()" (with the parentheses) */
    USP_PATH_SEG_EVENT,     /* last only: name "Boot!" (with the '!') */
};

/* How a REF segment follows the reference. */
enum usp_path_ref_mode {
    USP_PATH_REF_ONE,   /* "Param+" */
    USP_PATH_REF_INDEX, /* "Param#n+": item n (from 1) of a list of references */
    USP_PATH_REF_ALL,   /* "Param#*+": every item of a list of references */
};

enum usp_path_op {
    USP_PATH_OP_EQ,       /* == */
    USP_PATH_OP_NE,       /* != */
    USP_PATH_OP_CONTAINS, /* ~= (list contains) */
    USP_PATH_OP_LT,       /* < */
    USP_PATH_OP_GT,       /* > */
    USP_PATH_OP_LE,       /* <= */
    USP_PATH_OP_GE,       /* >= */
};

struct usp_path_cmp;

/* One element of a path. Between two segments there is a '.', except
 * before a REF segment, which sticks to the name it follows. */
struct usp_path_seg {
    enum usp_path_seg_kind kind;
    uint32_t len; /* NAME, COMMAND, EVENT: bytes of name; 0 otherwise */
    union {
        const char *name; /* NAME, COMMAND, EVENT: NUL-terminated */
        uint32_t inst;    /* INSTANCE: >= 1 */
        struct {
            enum usp_path_ref_mode mode;
            uint32_t index; /* USP_PATH_REF_INDEX: >= 1; 0 otherwise */
        } ref;
        struct {
            const struct usp_path_cmp *cmp; /* joined by "&&" */
            uint32_t ncmp;                  /* >= 1 */
        } search;
    };
};

/* One comparison of a search expression: `rel op value`. */
struct usp_path_cmp {
    const struct usp_path_seg *rel; /* relative path: NAME and REF segments */
    uint32_t nrel;                  /* >= 1, first and last are NAME */
    enum usp_path_op op;
    bool quoted;        /* the value was a "string" */
    uint32_t value_len; /* bytes of value */
    const char *value;  /* decoded (%22 and %25 replaced), NUL-terminated */
};

/* Flags: exactly one of the first four, then what the path contains. */
enum {
    USP_PATH_OBJECT = 1u << 0,        /* ends in '.' (or, see NO_DOT, an instance) */
    USP_PATH_PARAM = 1u << 1,         /* ends in a name */
    USP_PATH_COMMAND = 1u << 2,       /* ends in "Name()" */
    USP_PATH_EVENT = 1u << 3,         /* ends in "Name!" */
    USP_PATH_HAS_INSTANCE = 1u << 4,  /* an instance number */
    USP_PATH_HAS_WILDCARD = 1u << 5,  /* '*' */
    USP_PATH_HAS_SEARCH = 1u << 6,    /* '[expr]' */
    USP_PATH_HAS_SUPPORTED = 1u << 7, /* '{i}' */
    USP_PATH_HAS_REF = 1u << 8,       /* reference following, outside search expressions */
    USP_PATH_NO_DOT = 1u << 9,        /* object path without its final '.' (OPT_REFERENCE) */
};

struct usp_path {
    uint32_t flags;
    uint32_t nseg; /* >= 1; seg[0] is a NAME */
    size_t size;   /* bytes of the whole block (memory accounting) */
    struct usp_path_seg seg[];
};

/* Why a path was rejected: usp_code is USP_ERR_INVALID_PATH_SYNTAX (7008)
 * for bad syntax, pos the 0-based byte offset of the fault, msg a sentence
 * that says what was expected and ends with "at position <pos>". Out of
 * memory gives USP_ERR_INTERNAL_ERROR (7003). */
struct usp_path_err {
    uint32_t usp_code;
    size_t pos;
    char msg[160];
};

/* Parse options. */
enum {
    /* The value of a reference parameter (TR-369 "Reference Following"): an
     * object path may end in an instance selector without the final '.'
     * ("Device.IP.Interface.1"); it then has USP_PATH_OBJECT|USP_PATH_NO_DOT. */
    USP_PATH_OPT_REFERENCE = 1u << 0,
};

/* Parses the NUL-terminated `s` into one malloc'd block for usp_path_free.
 * 0; USP_EINVAL for bad syntax (7008 in `err`); USP_ENOMEM. `err` may be
 * NULL; `*out` is NULL on failure. */
int usp_path_parse(const char *s, struct usp_path **out, struct usp_path_err *err);
/* The same for `len` bytes that need not be NUL-terminated (an embedded NUL
 * is a syntax error), with USP_PATH_OPT_* `opts`. */
int usp_path_parse_n(const char *s, size_t len, unsigned opts, struct usp_path **out,
                     struct usp_path_err *err);
/* Parses into the caller's `buf` of `cap` bytes, aligned for any type (e.g.
 * from an arena); nothing is allocated and nothing needs freeing beyond
 * `buf`. `*need` (may be NULL) gets the bytes required when the syntax is
 * valid. 0; USP_EINVAL (syntax, `err`); USP_ERANGE when `cap` < `*need`
 * (`buf` may then be NULL: call with 0 to measure). */
int usp_path_parse_buf(const char *s, size_t len, unsigned opts, void *buf, size_t cap,
                       size_t *need, struct usp_path **out, struct usp_path_err *err);
/* Frees a block from usp_path_parse or usp_path_parse_n; NULL is a no-op. */
void usp_path_free(struct usp_path *p);

/* Writes the canonical text of `p` (the input without the tolerated
 * whitespace, string values escaped again with %22/%25) into `buf` of `cap`
 * bytes, NUL-terminated. `*len` (may be NULL) gets the length without the
 * NUL. 0, or USP_ERANGE when it did not fit (`buf` then holds as much as
 * fitted, NUL-terminated when `cap` > 0). Parsing the text gives the same
 * structure back. */
int usp_path_format(const struct usp_path *p, char *buf, size_t cap, size_t *len);
/* The supported-data-model form of `p`: every instance number, '*' and
 * '[...]' becomes "{i}" ("Device.IP.Interface.1.Name" and
 * "Device.IP.Interface.[Type==\"Normal\"].Name" give
 * "Device.IP.Interface.{i}.Name"); a final '.' is kept, even under NO_DOT
 * (a supported object path always ends in '.'). Same buffer rules as
 * usp_path_format; USP_EINVAL for a path with reference following, whose
 * supported form depends on the referenced data. */
int usp_path_supported_form(const struct usp_path *p, char *buf, size_t cap, size_t *len);

/* Whether `s` (`len` bytes) is a valid TR-106 name: a letter or '_', then
 * letters, digits, '_' or '-', at most USP_PATH_NAME_MAX characters. */
bool usp_path_name_valid(const char *s, size_t len);
/* "==", "!=", "~=", "<", ">", "<=", ">="; NULL for a value out of range. */
const char *usp_path_op_str(enum usp_path_op op);

/* May match many instances: has '*' or '[...]' (a unique-key address is
 * syntactically a search; the evaluator tells them apart). */
static inline bool usp_path_is_search(const struct usp_path *p)
{
    return p->flags & (USP_PATH_HAS_WILDCARD | USP_PATH_HAS_SEARCH);
}

/* Names the instantiated data model: no '{i}'. */
static inline bool usp_path_is_instantiated(const struct usp_path *p)
{
    return !(p->flags & USP_PATH_HAS_SUPPORTED);
}

/* Addresses one element by names and instance numbers alone: no '*',
 * '[...]', '{i}' or reference following (e.g. what Delete with
 * allow_partial=false requires). */
static inline bool usp_path_is_exact(const struct usp_path *p)
{
    return !(p->flags & (USP_PATH_HAS_WILDCARD | USP_PATH_HAS_SEARCH | USP_PATH_HAS_SUPPORTED |
                         USP_PATH_HAS_REF));
}

/* Fits the supported-data-model grammar: names, instance numbers and '{i}'
 * only (GetSupportedDM paths; Register also wants no instances). */
static inline bool usp_path_is_supported(const struct usp_path *p)
{
    return !(p->flags & (USP_PATH_HAS_WILDCARD | USP_PATH_HAS_SEARCH | USP_PATH_HAS_REF));
}

#endif
