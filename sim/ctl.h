/* `uspsim controller`: a USP Controller over MQTT, driven by hand (an
 * interactive shell), by script (-e, or requests on standard input) or as a
 * load generator. This header is shared by its parts:
 *
 *   ctl_core.c    the connection, request tracking (a fixed pool of slots,
 *                 one timer-wheel entry each, no allocation per request),
 *                 the registry of agents, version agreement (GSP), and the
 *                 answers a Controller owes: NotifyResp, OnBoardRequest.
 *   ctl_print.c   readable forms of responses and notifications.
 *   ctl_shell.c   -e, the interactive shell (libedit) and scripted input.
 *   ctl_load.c    `controller load`: open-loop load over many agents.
 *   cmd_controller.c  options and the entry point.
 *
 * Everything runs on one libuv loop; nothing here is thread-safe except the
 * hand-over of lines from the scripted-input reader thread (ctl_shell.c). */
#ifndef SIM_CTL_H
#define SIM_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "usp-msg-1-4.pb-c.h"
#include "usp-record-1-4.pb-c.h"
#include "usp/arena.h"
#include "usp/e2e.h"
#include "usp/mtp.h"
#include "usp/timerwheel.h"

#define CTL_DEFAULT_EID         "self::uspsim-controller"
#define CTL_DEFAULT_TOPIC       "usp/controller/uspsim-controller"
#define CTL_DEFAULT_AGENT_TOPIC "usp/agent/{eid}"
#define CTL_NO_INDEX            UINT64_MAX
#define CTL_NO_VERSION          0xff /* no version agreed with an agent yet */
/* GetSupportedProtocol goes out in a 1.0 Record: every agent reads 1.0,
 * and the answer tells which later version both sides speak. */
#define CTL_GSP_MINOR 0

/* The options every controller mode shares (cmd_controller.c fills them). */
struct ctl_conf {
    const char *broker;      /* NULL: start the embedded mosquitto */
    /* The binding ("mqtt", "stomp", "ws", "uds", "coap"). Point-to-point
     * ones either accept agents at `listen` or connect to `agent_urls`. */
    const char *binding;
    bool p2p;
    const char *listen;
    const char *const *agent_urls;
    unsigned nagent_urls;
    struct usp_mtp_tls_config tls;
    uint32_t max_record; /* 0: the binding's default */
    struct usp_e2e_cfg e2e; /* SessionMode Forbid (the default): no E2E sessions */
    const char *eid;         /* own Endpoint ID */
    const char *topic;       /* own topic */
    const char *agent_topic; /* where an agent is reached before it says (NULL: STOMP's) */
    enum usp_mqtt_version mqtt_version;
    int qos;
    uint32_t timeout_ms;         /* per request */
    uint32_t connect_timeout_ms; /* to reach the broker at start */
    bool json;
    bool quiet;
    bool watch; /* the shell starts with `watch on` */
};

/* ---- Agents ------------------------------------------------------------- */

enum {
    CA_CONNECTED = 1u << 0,  /* MQTTConnectRecord seen, no DisconnectRecord since */
    CA_GSP_SENT = 1u << 1,   /* a GetSupportedProtocol is on its way */
    CA_GSP_DONE = 1u << 2,   /* answered: `minor` holds the agreed version */
    CA_NO_COMMON = 1u << 3,  /* answered, but no version in common */
    CA_TOPIC_SAID = 1u << 4, /* `dest` is the topic of its MQTTConnectRecord */
    CA_MQTT311 = 1u << 5,    /* its MQTTConnectRecord said 3.1.1 */
    CA_MQTT_SAID = 1u << 6,  /* an MQTTConnectRecord told its MQTT version */
};

/* What the controller knows of the agent sent it an OnBoardRequest. */
struct ctl_onboard {
    char *oui, *product_class, *serial_number, *versions;
};

/* One agent the controller has heard of or talked to. Kept small: a load
 * run may know 100,000 of them. */
struct ctl_agent {
    char *eid;
    char *dest;                  /* topic it is reached at */
    struct usp_mtp_conn *conn;   /* point to point: its session, NULL: none now */
    struct ctl_e2e *e2e;         /* its E2E session, once used */
    const char *versions;        /* its GSP answer (shared, see ctl_core.c); NULL: none */
    struct ctl_onboard *onboard; /* NULL: no OnBoardRequest */
    struct ctl_req *waiting;     /* requests held until the version is agreed */
    uint64_t index;              /* {n} of the template, or CTL_NO_INDEX */
    uint64_t last_seen_ms;       /* uv_now of its last record; 0: never */
    uint32_t boots;              /* Boot! events received */
    uint32_t notifs;             /* Notify messages received */
    char boot_cause[20];         /* Cause of the last Boot! */
    uint8_t minor;               /* agreed version 1.minor, or CTL_NO_VERSION */
    uint8_t flags;               /* CA_* */
};

/* ---- Requests ------------------------------------------------------------ */

enum ctl_req_state { CR_FREE, CR_WAITING, CR_SENT };

enum ctl_outcome {
    CTL_RESPONSE, /* a Response arrived */
    CTL_ERROR,    /* an Error message arrived */
    CTL_TIMEOUT,  /* nothing in time */
    CTL_FAILED,   /* not sent: `why` says why */
    CTL_SENT,     /* sent; no response was asked for */
};

/* Kinds at or above this one are the core's own requests. */
#define CTL_KIND_INTERNAL 200
enum { CTL_KIND_AUTO_GSP = CTL_KIND_INTERNAL, CTL_KIND_ONBOARD_SET };

/* One request in flight: a slot of the pool. `msg` is what to send; its
 * msg_id is set from the slot at each send, so one template Msg may serve
 * many requests. */
struct ctl_req {
    struct usp_tw_entry tmo;
    struct sim_ctl *ctl;
    struct ctl_req *next; /* free list, or the agent's waiting list */
    struct ctl_agent *agent;
    Usp__Msg *msg;
    uint64_t t0_ns;    /* when it was due to go (the latency counts from here) */
    uint32_t gen;      /* bumped at every reuse of the slot */
    uint32_t tx_bytes; /* size of the Record sent */
    uint8_t state;     /* enum ctl_req_state */
    uint8_t kind;      /* the mode's kind, or CTL_KIND_* */
    bool no_resp;      /* done once sent */
};

struct ctl_result {
    enum ctl_outcome outcome;
    uint32_t err_code;            /* CTL_ERROR: the Error's err_code */
    const UspRecord__Record *rec; /* CTL_RESPONSE, CTL_ERROR */
    const Usp__Msg *msg;          /* CTL_RESPONSE, CTL_ERROR */
    uint64_t now_ns;              /* uv_hrtime() at completion */
    size_t rx_bytes;              /* size of the Record that answered (0: none) */
    const char *why;              /* CTL_FAILED, CTL_TIMEOUT: a sentence */
};

/* ---- Events the modes may show ---------------------------------------------- */

enum ctl_event_kind {
    CTL_EV_NOTIFY,     /* a Notify arrived (acknowledged already if it asked) */
    CTL_EV_CONNECT,    /* an MQTTConnectRecord */
    CTL_EV_DISCONNECT, /* a DisconnectRecord */
    CTL_EV_NEW_AGENT,  /* first record from an agent */
    CTL_EV_VERSION,    /* the version with an agent was agreed (or not) */
};

struct ctl_event {
    enum ctl_event_kind kind;
    struct ctl_agent *agent;
    const UspRecord__Record *rec;
    const Usp__Msg *msg; /* CTL_EV_NOTIFY */
};

/* ---- The controller ------------------------------------------------------- */

struct ctl_stats {
    uint64_t records_in, records_out;
    uint64_t notifs_in, notify_resps_out;
    uint64_t responses, errors, timeouts, failed;
    uint64_t late;    /* responses to requests already timed out (or unknown msg_id) */
    uint64_t dropped; /* records dropped: bad, not for us, not understood */
    uint64_t gsp_sent, gsp_ok;
    uint64_t pool_full; /* requests refused: every slot in use */
};

/* A string kept once for many agents. */
struct ctl_str {
    struct ctl_str *next;
    char s[];
};

struct sim_ctl;
typedef void (*ctl_done_fn)(struct sim_ctl *c, struct ctl_req *r, const struct ctl_result *res);
typedef void (*ctl_event_fn)(struct sim_ctl *c, const struct ctl_event *ev);
typedef void (*ctl_state_fn)(struct sim_ctl *c, const struct usp_mtp_event *ev);

struct sim_ctl {
    const struct ctl_conf *conf;
    uv_loop_t *loop;
    struct usp_tw_uv tw;
    struct usp_mtp_ctx *mtp;
    struct usp_mtp_conn *conn; /* the broker, or the first --agent URL */
    struct usp_mtp_listener *listener;
    struct usp_mtp_conn **xconns; /* further --agent URLs */
    unsigned nxconns;
    uint64_t tls_mismatch; /* records whose from_id the peer's certificate does not carry */
    struct usp_e2e_stats e2e_stats;
    struct usp_arena *e2e_arena; /* Messages delivered out of E2E sessions */
    struct usp_arena *rx_arena, *tx_arena;
    const char *url;
    char id_prefix[12]; /* msg_id = "<prefix>-<slot>-<gen>" */
    size_t id_prefix_len;
    /* requests */
    struct ctl_req *reqs;
    uint32_t nreqs, in_flight;
    uint32_t next_unused; /* slots from here on were never handed out */
    struct ctl_req *free_reqs;
    /* agents: open addressing on the Endpoint ID */
    struct ctl_agent **tab;
    size_t cap, nagents;
    struct ctl_str *version_lists; /* distinct GSP answers */
    /* the mode */
    ctl_done_fn on_done;
    ctl_event_fn on_event;
    ctl_state_fn on_state;
    void *user;
    /* Hold requests to an agent until its version is agreed (else they go
     * at once in 1.4 when nothing is agreed). */
    bool gsp_gate;
    /* Send GetSupportedProtocol as soon as an agent shows up. */
    bool gsp_auto;
    /* Responses take the fast path (ctl_core.c lean_response). */
    bool lean_rx;
    bool up, ever_up, closing, closed, down_before_up, tw_ok;
    char down_why[160]; /* why the first attempt failed */
    struct ctl_stats st;
    /* Request templates of the core's own requests, in `own_arena`. */
    struct usp_arena *own_arena;
    Usp__Msg *gsp_msg, *onboard_msg;
};

/* Creates the controller on `loop` with a pool of `pool` request slots and
 * opens the connection to `url`. 0, or -1 with a sentence in `why`. */
int ctl_init(struct sim_ctl *c, uv_loop_t *loop, const struct ctl_conf *conf, const char *url,
             uint32_t pool, char *why, size_t whylen);
/* Starts a graceful close of the connection; the loop ends once it is
 * closed (or after a short grace time). */
void ctl_close(struct sim_ctl *c);
/* Frees everything; the loop must be run until it is empty afterwards. */
void ctl_cleanup(struct sim_ctl *c);

/* The agent with `eid`, created when `create` (index may be CTL_NO_INDEX);
 * NULL when unknown (or out of memory). */
struct ctl_agent *ctl_agent_get(struct sim_ctl *c, const char *eid, bool create, uint64_t index);
/* Calls `fn` for every agent (in no particular order). */
void ctl_agents_each(struct sim_ctl *c, void (*fn)(struct ctl_agent *a, void *arg), void *arg);

/* A free request slot, or NULL when all are in use (counted). */
struct ctl_req *ctl_req_alloc(struct sim_ctl *c);
/* Sends `r` (r->agent, r->msg, r->kind, r->t0_ns set by the caller) and
 * arms its timeout of `timeout_ms`. The result comes through on_done, from
 * this call when it cannot be sent (CTL_FAILED) or needs no answer
 * (CTL_SENT), otherwise later from the loop. */
void ctl_req_submit(struct sim_ctl *c, struct ctl_req *r, uint32_t timeout_ms);

/* "1.N" for a minor version (CTL_NO_VERSION: "-"). */
const char *ctl_version_str(uint8_t minor);
/* The highest version in a comma-separated list that we speak too, as a
 * minor number, or CTL_NO_VERSION. */
uint8_t ctl_version_pick(const char *list);

/* Whether `s` matches the shell-style glob `pat` (*, ?, [...]). */
bool ctl_glob(const char *pat, const char *s);

/* ---- Printing (ctl_print.c) ----------------------------------------------- */

/* A response, Error or notification in readable form: for Get, one
 * "path = value" line per parameter; for an Error its code, name, message
 * and the per-path errors. Returns how many per-path failures the message
 * carries (0 for a clean response). */
int ctl_print_msg(FILE *f, const Usp__Msg *msg);
/* One notification from `eid` as one or more lines. */
void ctl_print_notify(FILE *f, const char *eid, const Usp__Notify *n);
/* "7016 (Object does not exist)" */
const char *ctl_err_str(uint32_t code, char *buf, size_t len);
/* How long ago, for the agents list: "now", "12s", "3m04s", "2h10m". */
const char *ctl_ago(uint64_t ms, char *buf, size_t len);

/* ---- The modes ------------------------------------------------------------ */

/* -e requests (nexecs > 0) or the shell; `to` may be NULL. Returns the
 * exit status. */
int ctl_shell_run(const struct ctl_conf *conf, const char *url, const char *to,
                  const char *const *execs, int nexecs);

/* Kinds of request the load generator mixes. */
enum ctl_load_kind { LK_GET, LK_SET, LK_OPERATE, LK_GSDM, LK_INSTANCES, LK_GSP, LK_COUNT };

struct ctl_load_conf {
    double rate;            /* requests per second */
    double duration;        /* seconds */
    unsigned mix[LK_COUNT]; /* weights */
    const char *agents;     /* a template with {n} or a glob */
    uint64_t count, first_index;
    bool count_given;
    const char *paths_file; /* NULL: the defaults */
    double discover_s;      /* glob: how long to wait for agents to show up */
};

/* The kind called `name` ("get", ...), or -1. */
int ctl_load_kind(const char *name);
/* "get=70,set=20,operate=5,gsdm=5" into weights. 0, or -1 with `why`. */
int ctl_load_parse_mix(const char *s, unsigned mix[LK_COUNT], char *why, size_t whylen);
/* Runs the load; returns the exit status. */
int ctl_load_run(const struct ctl_conf *conf, const char *url, const struct ctl_load_conf *lc);

/* Waits (running `loop`) until the connection is UP: 0, or -1 after
 * reporting why not (the broker refused or did not answer in time). */
int ctl_wait_up(struct sim_ctl *c);
/* Point to point: waits up to the connect timeout for agent `eid` to have a
 * session (returns at once otherwise). 0, or -1 with a message printed. */
int ctl_wait_agent(struct sim_ctl *c, const char *eid);

#endif
