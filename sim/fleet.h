/* The agent fleet: `uspsim agents`. The parent process loads the schema and
 * profile once, then forks worker processes that share them read-only; each
 * worker runs one libuv loop with its share of the agents and reports its
 * counters to the parent through a pipe every second. */
#ifndef SIM_FLEET_H
#define SIM_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/dm.h"
#include "usp/e2e.h"
#include "usp/mtp.h"

#define SIM_MAX_BROKERS 64
#define SIM_MAX_BIND 256

/* Everything a worker needs, set up by the parent before fork. */
struct sim_fleet {
    uint64_t count;
    uint64_t first_index;
    const char *eid_template;   /* "os::012345-SIM{n:06}" */
    const char *agent_topic;    /* "usp/agent/{eid}" */
    const char *controller_id;  /* "self::uspsim-controller" */
    const char *controller_topic;
    const char *brokers[SIM_MAX_BROKERS];
    unsigned nbrokers;
    char bind_addrs[SIM_MAX_BIND][48];
    unsigned nbind;
    enum usp_mqtt_version mqtt_version;
    int qos;
    uint32_t keepalive;
    double ramp;          /* agents per second over the whole fleet, 0: as fast as possible */
    unsigned workers;
    uint32_t max_connecting; /* per worker */
    uint64_t t0_ns;          /* uv_hrtime() when the fleet started (monotonic, shared) */
    const struct usp_dm_model *model;
    /* The MTP: "mqtt" and "stomp" reach brokers[]; "ws", "uds" and "coap"
     * are point to point (p2p): brokers[] then holds the controller's
     * URL(s), or, with `listen`, every agent accepts the controller itself
     * at that URL template ({n}, {n:0W}, {eid}). */
    const char *binding;
    bool p2p;
    const char *listen;
    /* TLS files; cert_file and key_file are templates ({n}, {n:0W}, {eid}). */
    struct usp_mtp_tls_config tls;
    uint32_t max_record; /* 0: the binding's default */
    /* CoAP (legacy): Records declare 1.2, agents offer 1.0-1.2; `listen`
     * is then each worker's CoAP server (its port plus the worker's number),
     * with a resource /e/<eid> per agent. NULL/NULL otherwise. */
    const char *usp_version, *versions;
    /* E2E sessions with the controller: SessionMode Forbid (the default)
     * answers session Records with Disconnect 7106 (R-E2E.6a). */
    struct usp_e2e_cfg e2e;
    /* Test faults on the segment Records (payload_sar_state not NONE) a
     * worker sends: drop the Nth, swap the Mth with the next (0: none). */
    uint32_t e2e_drop_nth, e2e_swap_nth;
};

/* Counters a worker reports (summed by the parent). Written to a pipe as one
 * struct: keep it under PIPE_BUF. */
struct sim_stats {
    uint32_t worker;
    uint32_t final; /* the worker's last report before it exits */
    uint64_t agents;       /* agents this worker runs */
    uint64_t started;      /* agents whose connection was opened */
    uint64_t connected;    /* agents UP now */
    uint64_t ever_up;      /* agents that came UP at least once */
    uint64_t reconnecting; /* agents DOWN now, waiting for a retry */
    uint64_t msgs_in;      /* records received */
    uint64_t msgs_out;     /* records sent */
    uint64_t requests;     /* requests handled */
    uint64_t notifs_sent;  /* Notify messages sent (first tries and retries) */
    uint64_t notifs_retry; /* of which retries */
    uint64_t notifs_pending; /* awaiting a NotifyResp */
    uint64_t notifs_acked;   /* NotifyResp received */
    uint64_t boots_sent;     /* Boot! notifications sent (first tries) */
    uint64_t errors_sent;    /* Error replies sent */
    uint64_t dropped;        /* records dropped (bad, not ours, oversize) */
    uint64_t drops;          /* connections lost */
    uint64_t mem_kb;         /* the worker's proportional set size (PSS) */
    uint64_t up_done_ms;     /* since t0_ns: every agent of the worker was UP (0: not yet) */
    uint64_t boot_done_ms;   /* since t0_ns: every agent had sent its first Boot! (0: not yet) */
    uint64_t cpu_ms;         /* the worker's CPU time, user + system */
    uint64_t e2e_sessions;   /* E2E sessions opened or accepted */
    uint64_t e2e_retransmitted; /* session Records sent again on request */
    uint64_t e2e_reassembled;   /* Messages put together from segments */
    uint64_t e2e_segmented;     /* Messages sent in segments */
};

/* Expands a template with {n}, {n:0W} (zero padded to W digits) and {eid}.
 * 0, or -1 when `buf` is too small or the template has an unknown field. */
int sim_template_expand(const char *tpl, uint64_t n, const char *eid, char *buf, size_t len);

/* Runs one worker: agents [first, first + n) of the fleet. Writes
 * struct sim_stats to `stats_fd` every second and a final one; stops
 * gracefully (DisconnectRecords, then exit) when `ctl_fd` becomes readable.
 * Returns the process exit status. */
int sim_worker_main(const struct sim_fleet *f, unsigned worker, uint64_t first, uint64_t n,
                    int stats_fd, int ctl_fd);

/* The worker's proportional set size in KiB (from /proc/self/smaps_rollup), 0
 * when unknown. */
uint64_t sim_pss_kb(void);

#endif
