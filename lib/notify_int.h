/* Private to the notification machinery: lib/notify.c (matching, message
 * building, entry points) and lib/notify_retry.c (per-agent state, retries,
 * TimeToLive, Periodic!, dynamic value polling). */
#ifndef USP_NOTIFY_INT_H
#define USP_NOTIFY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/notify.h"
#include "usp/path.h"

/* Tokens of an event path kept for matching ("Device.WiFi.SSID.2.SSID"
 * has 5); deeper paths never match a ReferenceList entry. */
#define NOTIFY_MAX_TOKENS 48
/* Parsed ReferenceLists kept per notifier before the cache starts over. */
#define NOTIFY_CACHE_MAX 4096
/* Subscriptions looked at per agent (rows beyond are ignored). */
#define NOTIFY_MAX_SUBS 1024

/* What an event is, as a NotifType. */
enum notify_type {
    NT_VALUE_CHANGE,
    NT_OBJ_CREATION,
    NT_OBJ_DELETION,
    NT_OPER_COMPLETE,
    NT_EVENT,
    NT_COUNT,
};

/* The objects and parameters the notifier reads, looked up once per schema.
 * Any of them may be NULL when a schema lacks it. */
struct notify_schema {
    const struct usp_dm_schema *schema;
    const struct usp_dm_object *sub; /* Device.LocalAgent.Subscription.{i}. */
    const struct usp_dm_param *s_enable, *s_recipient, *s_id, *s_creation, *s_type, *s_refs, *s_ttl,
        *s_retry, *s_expiration, *s_trigger;
    const struct usp_dm_param *sub_count; /* SubscriptionNumberOfEntries */
    const struct usp_dm_object *ctrl;     /* Device.LocalAgent.Controller.{i}. */
    const struct usp_dm_param *c_enable, *c_eid, *c_min_wait, *c_mult, *c_per_interval, *c_per_time;
    const struct usp_dm_object *bootp; /* Controller.{i}.BootParameter.{i}. */
    const struct usp_dm_param *b_enable, *b_name;
    const struct usp_dm_object *devinfo; /* Device.DeviceInfo. */
    const struct usp_dm_param *d_oui, *d_class, *d_serial;
    bool boot_has_reason, boot_has_map; /* arguments of Device.Boot! */
    bool has_periodic;                  /* Device.LocalAgent.Periodic! exists */
};

/* One parsed ReferenceList entry. */
struct notify_ref {
    struct usp_path *p;
    bool resolve; /* a search or reference following: check against the data */
};

/* A parsed ReferenceList, shared by every agent with the same text. */
struct notify_reflist {
    struct notify_reflist *next; /* hash chain */
    uint64_t hash;
    char *text;
    uint32_t nrefs;
    struct notify_ref refs[];
};

/* An event path split into its dot-separated tokens. */
struct notify_epath {
    const char *text;
    size_t len;
    unsigned ntok;
    bool is_obj; /* ends in '.' */
    struct {
        const char *s;
        uint32_t len;
    } tok[NOTIFY_MAX_TOKENS];
};

/* A notification waiting for its NotifyResp. One malloc holds the struct,
 * the packed Notify, its msg_id and the recipient's EndpointID. */
enum { PK_NOTIFY, PK_ONBOARD };
struct notify_pending {
    struct usp_tw_entry tw;
    struct notify_pending *next;
    struct notify_state *st;
    uint64_t deadline;    /* wheel ms; UINT64_MAX: no NotifExpiration */
    uint32_t ctrl;        /* Controller row: m and k are read from it */
    uint32_t attempt;     /* retransmissions so far */
    uint32_t len;         /* bytes of packed Notify */
    uint8_t kind;         /* PK_* */
    bool expiring;        /* the timer is the deadline, not a retry */
    unsigned char data[]; /* payload, then "msg_id\0to_eid\0" */
};

/* A controller that gets Periodic! events. */
struct notify_periodic {
    struct usp_tw_entry tw;
    struct notify_state *st;
    int64_t ref;       /* PeriodicNotifTime (or boot time), agent seconds */
    int64_t due;       /* the period the timer is set for, agent seconds */
    uint32_t interval; /* PeriodicNotifInterval, seconds */
    uint32_t ctrl;
};

/* A dynamic parameter some ValueChange subscription references. */
struct notify_watch {
    struct usp_dm_inst o;
    const struct usp_dm_param *p;
    uint64_t hash; /* of the last value seen */
};

/* The timers of an agent with a TimeToLive to enforce or dynamic values to
 * poll (most agents have neither). */
struct notify_timers {
    struct usp_tw_entry ttl;  /* the next TimeToLive expiry */
    struct usp_tw_entry poll; /* the next poll of the watched values */
    struct notify_state *st;
};

/* One agent's state, allocated only while it needs one. */
struct notify_state {
    struct usp_notifier *n;
    struct usp_dm_agent *dm;
    struct usp_notify_agent *owner;
    struct notify_state *prev, *next; /* every state of the notifier */
    struct notify_pending *pending;
    struct notify_periodic *per;
    struct notify_watch *watch;
    struct notify_timers *tm; /* NULL unless a TimeToLive or a poll is due */
    uint32_t nper, nwatch, npending;
    uint32_t mem;  /* bytes counted in stats.mem */
    uint16_t busy; /* inside a notifier call: do not free */
    bool dead;     /* cleaned up while busy: freed on the last release */
};

struct usp_notifier {
    struct usp_notify_cfg cfg;
    uint64_t rng;
    uint64_t next_id;
    struct usp_arena *arena;
    unsigned arena_depth; /* nested sends get an arena of their own */
    struct notify_schema **schemas;
    unsigned nschemas;
    struct notify_reflist **buckets; /* power-of-two hash table */
    size_t nbuckets, ncached;
    struct notify_state *states;
    struct usp_notify_stats stats;
};

/* --- lib/notify.c -------------------------------------------------------- */

/* The bindings for the agent's schema (added on first use); NULL when out
 * of memory. */
const struct notify_schema *notify__schema(struct usp_notifier *n, const struct usp_dm_agent *a);
/* The parsed form of a ReferenceList value; NULL when out of memory. */
const struct notify_reflist *notify__reflist(struct usp_notifier *n, const char *text);
/* Splits `path` (object path, parameter path, or object path + command or
 * event name when `name` is not NULL: joined into `buf`). false when it
 * does not fit. */
bool notify__epath(struct notify_epath *e, const char *path, const char *name, char *buf,
                   size_t len);
/* Whether a ReferenceList matches an event path for a NotifType. */
bool notify__match(const struct usp_dm_agent *a, const struct notify_reflist *rl,
                   enum notify_type type, const struct notify_epath *e);
/* The notifier's arena for one message, or a fresh one when a send is
 * nested in another; NULL when out of memory. */
struct usp_arena *notify__arena_get(struct usp_notifier *n);
void notify__arena_put(struct usp_notifier *n, struct usp_arena *ar);
/* The agent's Subscription rows (at most `cap`), increasing. */
size_t notify__sub_rows(const struct notify_schema *sc, const struct usp_dm_agent *a,
                        uint32_t *rows, size_t cap);
/* The Controller row a subscription row's Recipient names, or 0; `buf`
 * is scratch. */
uint32_t notify__recipient(const struct notify_schema *sc, const struct usp_dm_agent *a,
                           const struct usp_dm_inst *row, char *buf, size_t len);
/* Reads a parameter of a row into buf; "" when it cannot be read. */
const char *notify__get(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                        const struct usp_dm_param *p, char *buf, size_t len);
bool notify__get_bool(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                      const struct usp_dm_param *p);
/* An unsignedInt parameter, or `def` when unset or not a number. */
uint64_t notify__get_uint(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                          const struct usp_dm_param *p, uint64_t def);
/* A row of a top-level table of Device.LocalAgent. */
void notify__row(const struct usp_dm_object *table, uint32_t inst, struct usp_dm_inst *out);
/* Parses a TR-106 dateTime; false for the unknown time or bad syntax. */
bool notify__parse_time(const char *s, int64_t *out);
/* The agent's clock (seconds). */
int64_t notify__now(const struct usp_notifier *n, const struct usp_dm_agent *a);
/* Runs the matching for an event (see usp_notify_event). `only_ctrl`, when
 * not 0, restricts it to subscriptions of that controller row; `boot`, when
 * not NULL, makes the Event's arguments Boot!'s for each recipient. */
int notify__process(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                    const struct usp_dm_event_info *ev, uint32_t only_ctrl,
                    const struct usp_notify_boot *boot);
/* Calls cb for every parameter at or below object instance `o` (rows of
 * tables included) until it returns non-zero; at most `budget` objects are
 * visited. */
typedef int (*notify_param_cb)(void *ctx, const struct usp_dm_inst *o,
                               const struct usp_dm_param *p);
int notify__walk_params(const struct usp_dm_agent *a, const struct usp_dm_inst *o,
                        notify_param_cb cb, void *ctx, unsigned *budget);

/* Transmits a Notify built in `ar`: packs it, calls send, and when `retry`
 * keeps it for retries to controller row `ctrl` with `expiration_s` (0:
 * none). 0 or USP_ENOMEM. */
int notify__transmit(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                     Usp__Msg *msg, const char *to_eid, bool retry, uint32_t ctrl,
                     uint32_t expiration_s, int kind, struct usp_arena *ar);

/* --- lib/notify_retry.c -------------------------------------------------- */

/* The agent's state, allocated when missing; NULL when out of memory. */
struct notify_state *notify__state(struct usp_notifier *n, struct usp_dm_agent *a,
                                   struct usp_notify_agent *na);
/* Frees every agent's state (the notifier goes away). */
void notify__free_states(struct usp_notifier *n);
/* Frees the state when it holds nothing any more (and nobody is inside). */
void notify__state_release(struct notify_state *st);
/* Keeps a transmitted Notify for retries. 0 or USP_ENOMEM. */
int notify__pending_add(struct notify_state *st, const uint8_t *payload, size_t len,
                        const char *msg_id, const char *to_eid, uint32_t ctrl,
                        uint32_t expiration_s, int kind);
/* Drops pending OnBoardRequests to controller row `ctrl`. */
void notify__drop_onboard(struct notify_state *st, uint32_t ctrl);
/* A message id unique in this notifier ("notify-<n>") in buf. */
void notify__msg_id(struct usp_notifier *n, char *buf, size_t len);
/* Updates the poller's memory of a dynamic parameter the handlers changed,
 * so the change is not announced twice. */
void notify__watch_seen(struct notify_state *st, const char *path, const char *value);
/* A uniformly random integer in [lo, hi]. */
uint64_t notify__random(struct usp_notifier *n, uint64_t lo, uint64_t hi);
/* 64-bit FNV-1a. */
uint64_t notify__hash(const char *s, size_t len);

#endif
