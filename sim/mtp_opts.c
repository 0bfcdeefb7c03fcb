/* Shared MTP options of `uspsim agents` and `uspsim controller`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fleet.h"
#include "mtp_opts.h"
#include "usp/e2e.h"
#include "usp/mtp_coap.h"
#include "usp/mtp_uds.h"

static const char *const bindings[] = {"mqtt", "stomp", "ws", "uds", "coap"};

const char *sim_mtp_url_binding(const char *url, bool *tls, char *why, size_t whylen)
{
    struct usp_mtp_url u;
    char err[200];
    if (usp_mtp_url_parse(url, &u, err, sizeof err) != 0) {
        snprintf(why, whylen, "'%s': %s", url, err);
        return NULL;
    }
    for (size_t i = 0; i < sizeof bindings / sizeof bindings[0]; i++)
        if (!strcmp(u.binding, bindings[i])) {
            if (tls)
                *tls = u.tls;
            return bindings[i];
        }
    snprintf(why, whylen, "'%s': no binding serves %s:", url, u.scheme);
    return NULL;
}

/* DIR/name in one of three buffers that live as long as the process (the
 * TLS file names are used until exit). NULL when too long. */
static char *join_path(const char *dir, const char *name)
{
    static char paths[3][4096];
    static unsigned next;
    char *p = paths[next++ % 3];
    int n = snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return n < 0 || (size_t)n >= sizeof paths[0] ? NULL : p;
}

static bool readable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sim_mtp_choose(const struct sim_mtp_opts *o, const char *const *brokers, unsigned nbrokers,
                   const char *const *peers, unsigned npeers, const char *peer_word,
                   bool agent_files, struct sim_mtp_choice *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    const char *b = NULL;
    if (o->mtp) {
        for (size_t i = 0; i < sizeof bindings / sizeof bindings[0]; i++)
            if (!strcmp(o->mtp, bindings[i]))
                b = bindings[i];
        if (!b) {
            snprintf(why, whylen, "--mtp '%s': one of mqtt, stomp, ws, uds, coap", o->mtp);
            return -1;
        }
    }
    /* Every URL given must name the same binding. */
    struct {
        const char *opt;
        const char *const *v;
        unsigned n;
    } lists[3] = {{"--broker", brokers, nbrokers},
                  {peer_word, peers, npeers},
                  {"--listen", o->listen ? &o->listen : NULL, o->listen ? 1u : 0u}};
    /* An agents' --listen is a template: check what it makes for {n} = 1. */
    char sample[600];
    const char *listen_url = o->listen;
    if (o->listen && strchr(o->listen, '{')) {
        if (sim_template_expand(o->listen, 1, "proto::x", sample, sizeof sample) != 0) {
            snprintf(why, whylen,
                     "--listen '%s': unknown field or too long (fields: {n}, {n:0W}, {eid})",
                     o->listen);
            return -1;
        }
        listen_url = sample;
    }
    lists[2].v = o->listen ? &listen_url : NULL;
    bool any_tls = false;
    for (int l = 0; l < 3; l++)
        for (unsigned i = 0; i < lists[l].n; i++) {
            bool tls = false;
            char err[300];
            const char *ub = sim_mtp_url_binding(lists[l].v[i], &tls, err, sizeof err);
            if (!ub) {
                snprintf(why, whylen, "%s %s", lists[l].opt, err);
                return -1;
            }
            if (b && strcmp(b, ub)) {
                snprintf(why, whylen, "%s '%s' is a %s URL, but %s %s", lists[l].opt,
                         lists[l].v[i], ub, o->mtp ? "--mtp is" : "the other URLs are", b);
                return -1;
            }
            b = ub;
            any_tls |= tls;
        }
    if (!b)
        b = "mqtt";
    out->binding = b;
    out->brokered = !strcmp(b, "mqtt") || !strcmp(b, "stomp");
    if (out->brokered && (npeers || o->listen)) {
        snprintf(why, whylen, "%s reaches its peers through a broker: use --broker, not %s", b,
                 o->listen ? "--listen" : peer_word);
        return -1;
    }
    if (!strcmp(b, "stomp") && nbrokers == 0) {
        snprintf(why, whylen, "stomp needs --broker stomp://HOST:PORT (no STOMP broker is "
                              "embedded)");
        return -1;
    }
    if (!out->brokered) {
        if (nbrokers) {
            snprintf(why, whylen, "%s is point to point: use --listen URL or %s URL, not --broker",
                     b, peer_word);
            return -1;
        }
        if (!strcmp(b, "coap")) {
            /* Every CoAP endpoint is a server as well: peers answer to it. */
            if (!o->listen) {
                snprintf(why, whylen,
                         "coap needs --listen coap(s)://ADDR:PORT, the endpoint's own CoAP server "
                         "(peers POST their Records there)%s",
                         agent_files ? ", and --controller URL" : "");
                return -1;
            }
            if (agent_files && !npeers) {
                snprintf(why, whylen, "coap agents need --controller coap(s)://HOST:PORT/e/EID "
                                      "besides --listen");
                return -1;
            }
        } else if (!!o->listen == !!npeers) {
            snprintf(why, whylen, "%s needs either --listen URL (accept) or %s URL (connect)", b,
                     peer_word);
            return -1;
        }
    }
    if (o->uds_tls && strcmp(b, "uds")) {
        snprintf(why, whylen, "--uds-tls applies to unix: URLs only (the binding here is %s)", b);
        return -1;
    }
    out->tls = any_tls || o->uds_tls;
    if (o->max_record && (o->max_record < 64 || o->max_record > 64ul * 1024 * 1024)) {
        snprintf(why, whylen, "--max-record must be 64..67108864 bytes");
        return -1;
    }
    /* TLS files: --certs DIR gives defaults, --ca/--cert/--key override. */
    struct usp_mtp_tls_config *t = &out->tls_cfg;
    t->uds = o->uds_tls;
    /* CoAP agents of a worker share one DTLS server, which has one
     * certificate (libcoap): they use the shared agent certificate. */
    bool shared = agent_files && !strcmp(b, "coap");
    if (o->certs) {
        t->ca_file = join_path(o->certs, "ca.pem");
        t->cert_file = join_path(o->certs, !agent_files ? "controller.pem"
                                           : shared     ? "agents/shared.pem"
                                                        : "agents/{n}.pem");
        t->key_file = join_path(o->certs, !agent_files ? "controller.key"
                                          : shared     ? "agents/shared.key"
                                                       : "agents/{n}.key");
        if (!t->ca_file || !t->cert_file || !t->key_file) {
            snprintf(why, whylen, "--certs %s: the folder name is too long", o->certs);
            return -1;
        }
    }
    if (o->ca)
        t->ca_file = o->ca;
    if (o->cert)
        t->cert_file = o->cert;
    if (o->key)
        t->key_file = o->key;
    if (!out->tls && (o->ca || o->cert || o->key || o->certs)) {
        snprintf(why, whylen, "TLS files were given but no URL uses TLS (mqtts://, stomps://, "
                              "wss://, coaps://, or unix: with --uds-tls)");
        return -1;
    }
    if (out->tls) {
        if (!t->ca_file || !t->cert_file || !t->key_file) {
            snprintf(why, whylen, "TLS needs the CA, a certificate and its key: --certs DIR "
                                  "(from `uspsim certs`), or --ca, --cert and --key");
            return -1;
        }
        if (shared && (strchr(t->cert_file, '{') || strchr(t->key_file, '{'))) {
            snprintf(why, whylen, "coaps agents of a worker share one DTLS server and so one "
                                  "certificate: give --cert/--key without {n}, or --certs DIR "
                                  "with DIR/agents/shared.pem (uspsim certs --shared-agent)");
            return -1;
        }
        if (!readable(t->ca_file)) {
            snprintf(why, whylen, "--ca %s: no such file", t->ca_file);
            return -1;
        }
        if (!strchr(t->cert_file, '{') && !readable(t->cert_file)) {
            snprintf(why, whylen, "%s %s: no such file%s", o->cert ? "--cert" : "--certs gives",
                     t->cert_file,
                     shared && !o->cert ? " (make it with uspsim certs --shared-agent)" : "");
            return -1;
        }
        if (!strchr(t->key_file, '{') && !readable(t->key_file)) {
            snprintf(why, whylen, "--key %s: no such file", t->key_file);
            return -1;
        }
    }
    return 0;
}

int sim_mtp_register_all(char *why, size_t whylen)
{
    const struct {
        const char *name;
        int rc;
    } r[] = {
        {"MQTT", usp_mtp_register(&usp_mtp_mqtt_ops)},
        {"STOMP", usp_mtp_register(&usp_mtp_stomp_ops)},
        {"WebSocket", usp_mtp_register_ext(&usp_mtp_ws_ext_ops)},
        {"UNIX domain socket", usp_mtp_register_ext(&usp_mtp_uds_ext_ops)},
        {"CoAP", usp_mtp_register_ext(&usp_mtp_coap_ext_ops)},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].rc != 0) {
            snprintf(why, whylen, "cannot initialise the %s binding", r[i].name);
            return -1;
        }
    return 0;
}

int sim_e2e_parse(const char *spec, unsigned long max_record, struct usp_e2e_cfg *out, char *why,
                  size_t whylen)
{
    usp_e2e_cfg_init(out);
    out->mode = USP_E2E_FORBID;
    char *copy = strdup(spec);
    if (!copy) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    int rc = 0;
    char ewhy[200];
    bool first = true;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && !rc;
         tok = strtok_r(NULL, ",", &save), first = false) {
        char *eq = strchr(tok, '=');
        if (first && !eq) {
            if (usp_e2e_cfg_set(out, "SessionMode", tok, ewhy, sizeof ewhy) != 0) {
                snprintf(why, whylen, "--e2e '%s': %s", spec, ewhy);
                rc = -1;
            }
            continue;
        }
        if (!eq) {
            snprintf(why, whylen, "--e2e '%s': '%s' is not Param=Value", spec, tok);
            rc = -1;
            break;
        }
        *eq = 0;
        if (usp_e2e_cfg_set(out, tok, eq + 1, ewhy, sizeof ewhy) != 0) {
            snprintf(why, whylen, "--e2e '%s': %s", spec, ewhy);
            rc = -1;
        }
    }
    free(copy);
    if (rc)
        return rc;
    if (max_record > UINT32_MAX || (max_record && max_record < 64)) {
        snprintf(why, whylen, "--e2e-max-record must be 0 or 64..4294967295");
        return -1;
    }
    if (max_record)
        out->max_record_size = (uint32_t)max_record;
    return 0;
}
