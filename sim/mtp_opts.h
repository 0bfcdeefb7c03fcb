/* The MTP options `uspsim agents` and `uspsim controller` share: which
 * binding (--mtp, or the scheme of --broker / --controller / --agent /
 * --listen), the TLS files (--certs DIR, --ca, --cert, --key, --uds-tls) and
 * the largest record (--max-record). */
#ifndef SIM_MTP_OPTS_H
#define SIM_MTP_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "usp/mtp.h"

struct sim_mtp_opts {
    const char *mtp;    /* --mtp mqtt|stomp|ws|uds|coap, NULL: from the URLs */
    const char *listen; /* --listen URL */
    const char *ca, *cert, *key, *certs;
    bool uds_tls;
    unsigned long max_record;
};

/* What the options come to. */
struct sim_mtp_choice {
    const char *binding; /* "mqtt", "stomp", "ws", "uds", "coap" */
    bool brokered;       /* mqtt, stomp */
    bool tls;            /* some URL uses TLS (or --uds-tls with unix:) */
    struct usp_mtp_tls_config tls_cfg;
};

/* The binding of URL `url` ("mqtt", ...), or NULL with `why`. */
const char *sim_mtp_url_binding(const char *url, bool *tls, char *why, size_t whylen);

/* Checks the options: `urls` (n of them: --broker, --controller or --agent
 * values, and --listen) must all name one binding, which must match --mtp;
 * brokered bindings take --broker only, the others --listen or the peer's
 * URL. `role_word` names the peer option ("--controller" or "--agent").
 * `agent_files`: the agent's default certificate files in --certs DIR
 * (agents/{n}.pem), else the controller's. 0, or -1 with a sentence in
 * `why`. Strings in `out` point into `o` or static storage made here
 * (freed at exit). */
int sim_mtp_choose(const struct sim_mtp_opts *o, const char *const *brokers, unsigned nbrokers,
                   const char *const *peers, unsigned npeers, const char *peer_word,
                   bool agent_files, struct sim_mtp_choice *out, char *why, size_t whylen);

/* --e2e MODE[,Param=Value...] (TR-181 E2ESession parameters, e.g.
 * "Require,MaxRetransmitTries=3") and --e2e-max-record BYTES (0, or 64 and
 * more: values under TR-181's 512 are accepted for tests) into `out`. 0,
 * or -1 with a sentence in `why`. */
struct usp_e2e_cfg;
int sim_e2e_parse(const char *spec, unsigned long max_record, struct usp_e2e_cfg *out, char *why,
                  size_t whylen);

/* Registers every binding the binary has (once per process, before any
 * thread or fork). 0, or -1 with a sentence in `why`. */
int sim_mtp_register_all(char *why, size_t whylen);

#endif
