/* Test driver for tests/integration/test-uds-mtp.sh: runs the UNIX domain
 * socket binding of libusp against itself on real sockets, and against
 * the script's deliberately broken fake peers. One scenario per run:
 *
 *   exchange DIR     agent client <-> controller listener, then agent
 *          listener <-> controller client: the UDSConnectRecord first,
 *          the peers' Endpoint IDs from the handshake, records both ways,
 *          a 3 MB record intact, oversize refused, send before UP refused,
 *          graceful closes with DisconnectRecords.
 *   restart DIR      the listener goes away and comes back: the client is
 *          DOWN, retries after 1-5 s [R-UDS.5] and exchanges again; a stale
 *          socket file is replaced, a live one and a plain file are not;
 *          the listener removes its file when it closes; nothing listening
 *          is DOWN with reason connect.
 *   listen PATH N    a controller listener for the fake clients: echoes
 *          every record, usp_mtp_reject for one that does not decode;
 *          prints the sessions' ends; stops after N sessions ended.
 *   client PATH MODE an agent client against a fake server: "hs-first"
 *          (the server's Handshake comes before it read ours: UP and an
 *          exchange), "error" (the server answers with an Error TLV: DOWN,
 *          refused, the text in the detail), "silent" (no Handshake:
 *          gives up after connect_timeout_ms [R-UDS.18]).
 *   tls DIR CERTS OTHER  TLS (cfg->tls.uds) with certificates from `uspsim
 *          certs`: an exchange with peer Endpoint IDs from the
 *          certificates on both sides; a client certificate from another
 *          CA refused, a server certificate from another CA refused, an
 *          Endpoint ID that is not the certificate's refused, each with a
 *          clear detail.
 *   scale DIR N      N agent clients to one controller listener in this
 *          process: time, file descriptors and heap per session.
 *
 * Prints "ok ..." per check passed, "FAIL ..." otherwise, "#" notes; exits
 * non-zero on any failure. */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "mtp_int.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/mtp.h"
#include "usp/mtp_uds.h"
#include "usp/tls.h"

static int failures;
static uv_loop_t *loop;
static struct usp_mtp_ctx *ctx;
static uint64_t t_start;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok   ");                                                                       \
        } else {                                                                                   \
            failures++;                                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("#    [%6.3f] ", (double)(uv_now(loop) - t_start) / 1000);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static bool quiet_log;

static void on_log(void *user, enum usp_mtp_log_level level, const char *eid, const char *msg)
{
    if (!quiet_log)
        note("log %d %s: %s", (int)level, eid ? eid : "-", msg);
}

/* ---- running the loop ---- */

static void tick(uv_timer_t *t)
{
}

static uv_timer_t ticker;

/* Runs the loop until cond() or `ms` passed; cond() at the end. */
static bool run_until(bool (*cond)(void), uint64_t ms)
{
    uint64_t end = uv_now(loop) + ms;
    while (!cond() && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    return cond();
}

static bool never(void)
{
    return false;
}

static void run_for(uint64_t ms)
{
    (void)run_until(never, ms);
}

/* ---- endpoints ---- */

struct ep {
    const char *name;
    struct usp_mtp_conn *c;
    enum usp_mtp_state state;
    enum usp_mtp_reason reason;
    int code;
    char detail[600];
    char states[512];
    int ups, downs, closed, records;
    uint64_t t_up, t_down;
    uint32_t last_retry_ms;
    int first_type, last_type; /* record types received; -1 none */
    uint8_t *last;             /* last record received */
    size_t last_len;
    bool echo, free_on_close;
};

static void ep_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    struct ep *e = user;
    note("%s: %s %s (%d) attempt %u retry %u ms: %s", e->name, usp_mtp_state_name(ev->state),
         usp_mtp_reason_name(ev->reason), ev->code, ev->attempt, ev->retry_ms, ev->detail);
    e->state = ev->state;
    e->reason = ev->reason;
    e->code = ev->code;
    snprintf(e->detail, sizeof e->detail, "%s", ev->detail);
    size_t n = strlen(e->states);
    snprintf(e->states + n, sizeof e->states - n, "%s%s", n ? " " : "",
             usp_mtp_state_name(ev->state));
    if (ev->state == USP_MTP_UP) {
        e->ups++;
        e->t_up = uv_now(loop);
    } else if (ev->state == USP_MTP_DOWN) {
        e->downs++;
        e->t_down = uv_now(loop);
        e->last_retry_ms = ev->retry_ms;
    } else if (ev->state == USP_MTP_CLOSED) {
        e->closed++;
        if (e->free_on_close) {
            usp_mtp_conn_free(c);
            e->c = NULL;
        }
    }
}

static int record_type(const uint8_t *rec, size_t len)
{
    struct usp_arena *a = usp_arena_new(4096);
    UspRecord__Record *r = NULL;
    struct usp_decode_err err;
    int t = -1;
    if (usp_record_decode(a, rec, len, &r, &err) == 0 || r)
        t = r ? (int)r->record_type_case : -1;
    usp_arena_free(a);
    return t;
}

static void ep_record(struct usp_mtp_conn *c, const uint8_t *rec, size_t len,
                      const struct usp_mtp_rx *rx, void *user)
{
    struct ep *e = user;
    int t = record_type(rec, len);
    if (e->records++ == 0)
        e->first_type = t;
    e->last_type = t;
    free(e->last);
    e->last = malloc(len);
    if (e->last)
        memcpy(e->last, rec, len);
    e->last_len = len;
    CHECK(rx->reply_to.to == NULL, "%s: a point-to-point record has no reply-to", e->name);
    if (e->echo && t == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT)
        (void)usp_mtp_send(c, NULL, rec, len);
}

static const struct usp_mtp_callbacks ep_cb = {.state = ep_state, .record = ep_record};

static void ep_init(struct ep *e, const char *name)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    e->first_type = e->last_type = -1;
}

static void ep_cleanup(struct ep *e)
{
    usp_mtp_conn_free(e->c);
    e->c = NULL;
    free(e->last);
    e->last = NULL;
}

static void cfg_init(struct usp_mtp_config *cfg, enum usp_mtp_role role, const char *eid,
                     const char *url)
{
    usp_mtp_config_init(cfg);
    cfg->role = role;
    cfg->eid = eid;
    cfg->url = url;
    cfg->connect_timeout_ms = 5000;
    cfg->close_timeout_ms = 2000;
}

/* A no_session_context Record of `n` payload bytes. */
static uint8_t *make_record(struct usp_arena *a, const char *from, const char *to, size_t n,
                            size_t *len)
{
    uint8_t *payload = malloc(n);
    for (size_t i = 0; i < n; i++)
        payload[i] = (uint8_t)(i * 31 + (i >> 10));
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__NoSessionContextRecord ns = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    rec.version = "1.4";
    rec.to_id = (char *)to;
    rec.from_id = (char *)from;
    ns.payload.data = payload;
    ns.payload.len = n;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    rec.no_session_context = &ns;
    uint8_t *out = NULL;
    if (usp_record_encode(a, &rec, &out, len) != 0)
        out = NULL;
    free(payload);
    return out;
}

/* ---- a listener that keeps what it accepted ---- */

#define MAX_ACC 8
static struct ep acc[MAX_ACC];
static int n_acc, n_checked;
static char acc_peer_eid[MAX_ACC][128];
static bool acc_had_ids[MAX_ACC];
static char acc_ids0[MAX_ACC][128];
static bool acc_echo;

static int l_check(struct usp_mtp_listener *l, const struct usp_mtp_peer *p, void *user)
{
    n_checked++;
    note("listener: check eid %s path %s ids %s", p->eid ? p->eid : "-", p->path,
         p->ids ? usp_tls_ids_get(p->ids, 0, NULL) : "-");
    return 0;
}

static void l_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                     const struct usp_mtp_peer *p, void *user)
{
    if (n_acc >= MAX_ACC) {
        usp_mtp_conn_free(c);
        return;
    }
    struct ep *e = &acc[n_acc];
    ep_init(e, "accepted");
    e->c = c;
    e->echo = acc_echo;
    snprintf(acc_peer_eid[n_acc], sizeof acc_peer_eid[0], "%s", p->eid ? p->eid : "");
    acc_had_ids[n_acc] = p->ids != NULL;
    snprintf(acc_ids0[n_acc], sizeof acc_ids0[0], "%s",
             p->ids ? usp_tls_ids_get(p->ids, 0, NULL) : "");
    usp_mtp_conn_set_callbacks(c, &ep_cb, e);
    n_acc++;
}

static const struct usp_mtp_listener_callbacks lcb = {.check = l_check, .accept = l_accept};

static void acc_reset(void)
{
    for (int i = 0; i < n_acc; i++)
        ep_cleanup(&acc[i]);
    n_acc = n_checked = 0;
}

/* ---- exchange ---- */

#define CTL_EID   "proto::uds-controller"
#define AGENT_EID "proto::uds-agent"

static struct ep *cur_a;
static int want_records;

static bool both_up(void)
{
    return cur_a->state == USP_MTP_UP && n_acc > 0 && acc[0].state == USP_MTP_UP;
}

static bool a_has_records(void)
{
    return cur_a->records >= want_records;
}

static bool a_closed_and_acc_closed(void)
{
    return cur_a->closed > 0 && n_acc > 0 && acc[0].closed > 0;
}

/* One pair: `client_role` connects to a listener of the other role. */
static void exchange_pair(const char *dir, enum usp_mtp_role client_role)
{
    bool agent_client = client_role == USP_MTP_AGENT;
    const char *leid = agent_client ? CTL_EID : AGENT_EID,
               *ceid = agent_client ? AGENT_EID : CTL_EID;
    const char *tag =
        agent_client ? "agent client/controller listener" : "controller client/agent listener";
    char url[200], why[300];
    snprintf(url, sizeof url, "unix:%s/%s.sock", dir, agent_client ? "ctl" : "agent");
    struct usp_mtp_config cfg;
    cfg_init(&cfg, agent_client ? USP_MTP_CONTROLLER : USP_MTP_AGENT, leid, url);
    struct usp_mtp_listener *l = NULL;
    acc_echo = false;
    int rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why);
    CHECK(rc == 0, "%s: listening on %s (%s)", tag, url, rc ? why : "bound");
    if (rc)
        return;
    struct stat st;
    CHECK(stat(url + 5, &st) == 0 && S_ISSOCK(st.st_mode), "%s: the socket file exists", tag);

    struct ep a;
    ep_init(&a, agent_client ? "agent" : "controller");
    cur_a = &a;
    cfg_init(&cfg, client_role, ceid, url);
    if (agent_client) {
        cfg.peer_eid = CTL_EID;
        cfg.peer_dest = url;
    }
    rc = usp_mtp_conn_new(ctx, &cfg, &ep_cb, &a, &a.c, why, sizeof why);
    CHECK(rc == 0, "%s: client made (%s)", tag, rc ? why : "ok");
    if (rc)
        return;
    uint8_t one = 1;
    CHECK(usp_mtp_send(a.c, NULL, &one, 1) == USP_EPERM, "%s: send before UP refused", tag);
    CHECK(usp_mtp_open(a.c) == 0, "%s: open", tag);
    CHECK(run_until(both_up, 5000), "%s: both ends UP (client: %s)", tag, a.states);
    if (!both_up())
        goto out;
    CHECK(n_checked == 1 && l->stats.accepted == 1, "%s: the check ran, one session accepted", tag);
    CHECK(strcmp(acc_peer_eid[0], ceid) == 0, "%s: the listener got the client's Endpoint ID %s",
          tag, acc_peer_eid[0]);
    const char *pe = usp_mtp_peer_eid(a.c), *pe2 = usp_mtp_peer_eid(acc[0].c);
    CHECK(pe && strcmp(pe, leid) == 0, "%s: the client's peer is %s (the server's Handshake)", tag,
          pe ? pe : "NULL");
    CHECK(pe2 && strcmp(pe2, ceid) == 0, "%s: the accepted session's peer is %s", tag,
          pe2 ? pe2 : "NULL");
    CHECK(usp_mtp_peer_ids(a.c) == NULL && usp_mtp_peer_ids(acc[0].c) == NULL,
          "%s: no peer certificate without TLS", tag);

    /* The agent's UDSConnectRecord first [R-MTP.6]. */
    struct ep *agent_side = agent_client ? &a : &acc[0];
    struct ep *ctl_side = agent_client ? &acc[0] : &a;
    cur_a = ctl_side;
    want_records = 1;
    CHECK(run_until(a_has_records, 3000), "%s: the controller got a record", tag);
    CHECK(ctl_side->first_type == USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT,
          "%s: the first record is a UDSConnectRecord (type %d)", tag, ctl_side->first_type);
    cur_a = &a;

    /* Records both ways. */
    struct usp_arena *ar = usp_arena_new(4096);
    size_t len;
    uint8_t *r1 = make_record(ar, CTL_EID, AGENT_EID, 300, &len);
    CHECK(usp_mtp_send(ctl_side->c, NULL, r1, len) == 0, "%s: controller sends a record", tag);
    int before = agent_side->records;
    cur_a = agent_side;
    want_records = before + 1;
    CHECK(run_until(a_has_records, 3000) && agent_side->last_len == len &&
              memcmp(agent_side->last, r1, len) == 0,
          "%s: the agent got it intact", tag);
    uint8_t *r2 = make_record(ar, AGENT_EID, CTL_EID, 200, &len);
    CHECK(usp_mtp_send(agent_side->c, NULL, r2, len) == 0, "%s: agent answers", tag);
    before = ctl_side->records;
    cur_a = ctl_side;
    want_records = before + 1;
    CHECK(run_until(a_has_records, 3000) && ctl_side->last_len == len &&
              memcmp(ctl_side->last, r2, len) == 0,
          "%s: the controller got the answer intact", tag);

    /* A large record (many reads, collected by the parser). */
    size_t big_len;
    uint8_t *big = make_record(ar, AGENT_EID, CTL_EID, 3 * 1000 * 1000, &big_len);
    CHECK(big && usp_mtp_send(agent_side->c, NULL, big, big_len) == 0, "%s: a %zu-byte record sent",
          tag, big_len);
    want_records = ctl_side->records + 1;
    CHECK(run_until(a_has_records, 10000) && ctl_side->last_len == big_len &&
              memcmp(ctl_side->last, big, big_len) == 0,
          "%s: the %zu-byte record arrived intact", tag, big_len);
    static uint8_t over[USP_MTP_MAX_RECORD_DEFAULT + 1];
    CHECK(usp_mtp_send(agent_side->c, NULL, over, sizeof over) == USP_ERANGE &&
              usp_mtp_get_stats(agent_side->c)->tx_oversize == 1,
          "%s: a record over max_record is refused", tag);
    usp_arena_free(ar);

    /* Graceful close by the client: DisconnectRecord, then CLOSED. */
    cur_a = &a;
    int ctl_before = acc[0].records;
    CHECK(usp_mtp_close(a.c, 7, "test done") == 0, "%s: client closes", tag);
    CHECK(run_until(a_closed_and_acc_closed, 5000), "%s: both ends CLOSED (client %s)", tag,
          a.states);
    CHECK(acc[0].records == ctl_before + 1 &&
              acc[0].last_type == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT,
          "%s: the listener's side got a DisconnectRecord before the close", tag);
    CHECK(a.reason == USP_MTP_R_CLOSED && acc[0].reason == USP_MTP_R_PEER_CLOSED,
          "%s: reasons closed / peer-closed (%s / %s)", tag, usp_mtp_reason_name(a.reason),
          usp_mtp_reason_name(acc[0].reason));
out:
    ep_cleanup(&a);
    acc_reset();
    usp_mtp_listener_close(l);
    run_for(50);
    CHECK(stat(url + 5, &st) != 0 && errno == ENOENT, "%s: the listener removed its socket file",
          tag);
}

static int run_exchange(const char *dir)
{
    exchange_pair(dir, USP_MTP_AGENT);
    exchange_pair(dir, USP_MTP_CONTROLLER);
    return 0;
}

/* ---- restart ---- */

static bool a_up(void)
{
    return cur_a->state == USP_MTP_UP;
}

static bool a_down(void)
{
    return cur_a->state == USP_MTP_DOWN;
}

static bool a_up_again(void)
{
    return cur_a->ups >= 2 && n_acc > 0 && acc[n_acc - 1].state == USP_MTP_UP;
}

static bool acc_closed(void)
{
    return n_acc > 0 && acc[0].closed > 0;
}

static int run_restart(const char *dir)
{
    char url[200], why[300], path[200];
    snprintf(url, sizeof url, "unix:%s/restart.sock", dir);
    snprintf(path, sizeof path, "%s/restart.sock", dir);

    /* Nothing listens: DOWN with reason connect. */
    struct usp_mtp_config cfg;
    struct ep a;
    ep_init(&a, "agent");
    cur_a = &a;
    cfg_init(&cfg, USP_MTP_AGENT, AGENT_EID, url);
    cfg.peer_eid = CTL_EID;
    cfg.peer_dest = url;
    CHECK(usp_mtp_conn_new(ctx, &cfg, &ep_cb, &a, &a.c, why, sizeof why) == 0, "client made");
    usp_mtp_open(a.c);
    CHECK(run_until(a_down, 2000) && a.reason == USP_MTP_R_CONNECT && a.code == ENOENT,
          "nothing there: DOWN, reason connect, ENOENT (%s: %s)", usp_mtp_reason_name(a.reason),
          a.detail);
    CHECK(a.last_retry_ms >= 1000 && a.last_retry_ms <= 5000,
          "the retry is in 1-5 s [R-UDS.5] (%u ms)", a.last_retry_ms);

    /* A stale socket file (nobody accepts on it) is replaced. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) < sizeof sa.sun_path)
        memcpy(sa.sun_path, path, strlen(path) + 1);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "a stale socket file made");
    close(fd);
    cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url);
    struct usp_mtp_listener *l = NULL, *l2 = NULL;
    int rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why);
    CHECK(rc == 0, "listening over a stale socket file (%s)", rc ? why : "replaced");
    if (rc)
        return 1;
    rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l2, why, sizeof why);
    CHECK(rc == USP_EIO && strstr(why, "in use"), "a second listener on a live socket: EIO (%s)",
          why);
    char plain[200], purl[220];
    snprintf(plain, sizeof plain, "%s/plain-file", dir);
    snprintf(purl, sizeof purl, "unix:%s", plain);
    FILE *f = fopen(plain, "w");
    if (f)
        fclose(f);
    cfg.url = purl;
    rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l2, why, sizeof why);
    struct stat st;
    CHECK(rc == USP_EIO && strstr(why, "not a socket") && stat(plain, &st) == 0,
          "a plain file is not replaced (%s)", why);
    cfg.url = url;

    /* The client comes up within its retry. */
    CHECK(run_until(a_up, 6000), "the client is UP after its retry (%s)", a.states);

    /* The listener goes away... */
    uint64_t t0 = uv_now(loop);
    usp_mtp_listener_close(l);
    CHECK(stat(path, &st) != 0, "the closed listener removed its socket file");
    CHECK(run_until(acc_closed, 2000) && acc[0].reason == USP_MTP_R_CLOSED && acc[0].code == 1001,
          "the accepted session is CLOSED, code 1001 (%s %d)", usp_mtp_reason_name(acc[0].reason),
          acc[0].code);
    CHECK(run_until(a_down, 2000), "the client is DOWN (%s: %s)", usp_mtp_reason_name(a.reason),
          a.detail);
    uint32_t retry = a.last_retry_ms;
    CHECK(retry >= 1000 && retry <= 5000, "its retry is in 1-5 s (%u ms)", retry);
    /* ... and comes back. */
    run_for(300);
    l = NULL;
    rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why);
    CHECK(rc == 0, "listening again (%s)", rc ? why : "ok");
    CHECK(run_until(a_up_again, 12000), "the client came back (%s)", a.states);
    uint64_t back = a.t_up - a.t_down;
    CHECK(back >= 1000 && back <= 5500 + 100,
          "back %.3f s after it went down (retries every 1-5 s)", (double)back / 1000);
    note("client back %.3f s after the listener closed", (double)(a.t_up - t0) / 1000);
    struct ep *s = &acc[n_acc - 1];
    want_records = s->records + 1;
    cur_a = s;
    CHECK(run_until(a_has_records, 2000) &&
              s->first_type == USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT,
          "the new session starts with a UDSConnectRecord");
    ep_cleanup(&a);
    acc_reset();
    usp_mtp_listener_close(l);
    run_for(50);
    return 0;
}

/* ---- listen for fake clients ---- */

static int listen_left;

static void fk_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    printf("SESSION-%s %s %d %s\n", usp_mtp_state_name(ev->state), usp_mtp_reason_name(ev->reason),
           ev->code, ev->detail);
    fflush(stdout);
    if (ev->state == USP_MTP_CLOSED) {
        usp_mtp_conn_free(c);
        listen_left--;
    }
}

static void fk_record(struct usp_mtp_conn *c, const uint8_t *rec, size_t len,
                      const struct usp_mtp_rx *rx, void *user)
{
    struct usp_arena *a = usp_arena_new(4096);
    UspRecord__Record *r = NULL;
    struct usp_decode_err err;
    int rc = usp_record_decode(a, rec, len, &r, &err);
    usp_arena_free(a);
    printf("RECORD %zu %s\n", len, rc == 0 ? "ok" : "unparseable");
    fflush(stdout);
    if (rc == USP_EDECODE)
        usp_mtp_reject(c, NULL); /* [R-UDS.24] */
    else
        usp_mtp_send(c, NULL, rec, len);
}

static const struct usp_mtp_callbacks fk_cb = {.state = fk_state, .record = fk_record};

static void fk_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                      const struct usp_mtp_peer *p, void *user)
{
    printf("ACCEPTED %s\n", p->eid);
    fflush(stdout);
    usp_mtp_conn_set_callbacks(c, &fk_cb, NULL);
}

static const struct usp_mtp_listener_callbacks fk_lcb = {.accept = fk_accept};

static bool listen_done(void)
{
    return listen_left <= 0;
}

static int run_listen(const char *path, int n)
{
    char url[200], why[300];
    snprintf(url, sizeof url, "unix:%s", path);
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url);
    cfg.max_record = 65536;
    cfg.connect_timeout_ms = 3000;
    struct usp_mtp_listener *l = NULL;
    int rc = usp_mtp_listen(ctx, &cfg, &fk_lcb, NULL, &l, why, sizeof why);
    CHECK(rc == 0, "listening on %s (%s)", url, rc ? why : "ok");
    if (rc)
        return 1;
    printf("LISTENING\n");
    fflush(stdout);
    listen_left = n;
    CHECK(run_until(listen_done, 40000), "%d sessions ended", n);
    printf("# refused %llu accepted %llu\n", (unsigned long long)l->stats.refused,
           (unsigned long long)l->stats.accepted);
    usp_mtp_listener_close(l);
    run_for(50);
    return 0;
}

/* ---- an agent against a fake server ---- */

static bool a_closed(void)
{
    return cur_a->closed > 0;
}

static int run_client(const char *path, const char *mode)
{
    char url[200], why[300];
    snprintf(url, sizeof url, "unix:%s", path);
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_AGENT, AGENT_EID, url);
    cfg.peer_eid = "proto::fake-server";
    cfg.peer_dest = url;
    cfg.connect_timeout_ms = 2000;
    struct ep a;
    ep_init(&a, "agent");
    cur_a = &a;
    CHECK(usp_mtp_conn_new(ctx, &cfg, &ep_cb, &a, &a.c, why, sizeof why) == 0, "client made");
    usp_mtp_open(a.c);
    if (strcmp(mode, "hs-first") == 0) {
        CHECK(run_until(a_up, 4000), "UP with a server whose Handshake came first (%s)", a.states);
        const char *pe = usp_mtp_peer_eid(a.c);
        CHECK(pe && strcmp(pe, "proto::fake-server") == 0, "the peer is %s", pe ? pe : "NULL");
        want_records = 1;
        CHECK(run_until(a_has_records, 4000) && a.last_len == 5 && memcmp(a.last, "hello", 5) == 0,
              "the fake server's record arrived");
        CHECK(usp_mtp_close(a.c, 0, NULL) == 0, "closing");
        CHECK(run_until(a_closed, 3000) && a.reason == USP_MTP_R_CLOSED, "CLOSED (%s)", a.states);
    } else if (strcmp(mode, "error") == 0) {
        CHECK(run_until(a_down, 4000), "DOWN after the server's Error TLV (%s)", a.states);
        CHECK(a.reason == USP_MTP_R_REFUSED && a.code == USP_MTP_UDS_CODE_ERROR_TLV &&
                  strstr(a.detail, "go away, fake"),
              "reason refused, code 2, the Error text in the detail: %s", a.detail);
    } else if (strcmp(mode, "silent") == 0) {
        uint64_t t0 = uv_now(loop);
        CHECK(run_until(a_down, 4000), "DOWN when no Handshake comes (%s)", a.states);
        CHECK(a.reason == USP_MTP_R_TIMEOUT, "reason timeout after %.1f s: %s",
              (double)(uv_now(loop) - t0) / 1000, a.detail);
    } else {
        CHECK(false, "unknown mode %s", mode);
    }
    ep_cleanup(&a);
    run_for(50);
    return 0;
}

/* ---- TLS ---- */

static void tls_files(struct usp_mtp_config *cfg, const char *dir, const char *name, char *ca,
                      char *cert, char *key)
{
    sprintf(ca, "%s/ca.pem", dir);
    sprintf(cert, "%s/%s.pem", dir, name);
    sprintf(key, "%s/%s.key", dir, name);
    cfg->tls.uds = true;
    cfg->tls.ca_file = ca;
    cfg->tls.cert_file = cert;
    cfg->tls.key_file = key;
}

static bool a_down_or_up(void)
{
    return cur_a->state == USP_MTP_DOWN || cur_a->state == USP_MTP_UP;
}

/* One client against the TLS listener; returns its state. */
static void tls_refused(const char *url, const char *what, const char *eid, const char *cadir,
                        const char *certs, const char *name, const char *expect)
{
    char ca[300], cert[300], key[300], why[300], ca2[300];
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_AGENT, eid, url);
    tls_files(&cfg, certs, name, ca, cert, key);
    sprintf(ca2, "%s/ca.pem", cadir);
    cfg.tls.ca_file = ca2;
    struct ep a;
    ep_init(&a, "agent");
    cur_a = &a;
    int acc0 = n_acc;
    CHECK(usp_mtp_conn_new(ctx, &cfg, &ep_cb, &a, &a.c, why, sizeof why) == 0, "%s: client made",
          what);
    usp_mtp_open(a.c);
    CHECK(run_until(a_down_or_up, 5000) && a.state == USP_MTP_DOWN && a.ups == 0,
          "%s: refused, DOWN (%s)", what, a.states);
    CHECK(strstr(a.detail, expect) != NULL, "%s: the detail says \"%s\": %s", what, expect,
          a.detail);
    CHECK(n_acc == acc0, "%s: the listener handed nothing over", what);
    ep_cleanup(&a);
}

static int run_tls(const char *dir, const char *certs, const char *other)
{
    char url[200], why[300], ca[300], cert[300], key[300];
    char agent_eid[64] = "os::012345-SIM000001";
    snprintf(url, sizeof url, "unix:%s/tls.sock", dir);
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url);
    tls_files(&cfg, certs, "controller", ca, cert, key);
    struct usp_mtp_listener *l = NULL;
    int rc = usp_mtp_listen(ctx, &cfg, &lcb, NULL, &l, why, sizeof why);
    CHECK(rc == 0, "TLS listener on %s (%s)", url, rc ? why : "ok");
    if (rc)
        return 1;

    struct ep a;
    ep_init(&a, "agent");
    cur_a = &a;
    char aca[300], acert[300], akey[300];
    cfg_init(&cfg, USP_MTP_AGENT, agent_eid, url);
    cfg.peer_eid = CTL_EID;
    cfg.peer_dest = url;
    tls_files(&cfg, certs, "agents/1", aca, acert, akey);
    rc = usp_mtp_conn_new(ctx, &cfg, &ep_cb, &a, &a.c, why, sizeof why);
    CHECK(rc == 0, "TLS client made (%s)", rc ? why : "ok");
    if (rc)
        return 1;
    usp_mtp_open(a.c);
    CHECK(run_until(both_up, 5000), "both ends UP over TLS (%s): %s", a.states, a.detail);
    if (!both_up())
        return 1;
    CHECK(strstr(a.detail, "over TLSv1."), "the session says its TLS version: %s", a.detail);
    CHECK(acc_had_ids[0] && strcmp(acc_ids0[0], agent_eid) == 0,
          "the check/accept callbacks got the client certificate's Endpoint ID (%s)", acc_ids0[0]);
    const struct usp_tls_ids *ids = usp_mtp_peer_ids(acc[0].c);
    CHECK(ids && usp_tls_ids_match(ids, agent_eid, NULL, 0) == 0,
          "usp_mtp_peer_ids of the accepted session authenticates %s", agent_eid);
    ids = usp_mtp_peer_ids(a.c);
    CHECK(ids && usp_tls_ids_match(ids, CTL_EID, NULL, 0) == 0,
          "usp_mtp_peer_ids of the client authenticates %s", CTL_EID);
    cur_a = &acc[0];
    want_records = 1;
    CHECK(run_until(a_has_records, 3000) &&
              acc[0].first_type == USP_RECORD__RECORD__RECORD_TYPE_UDS_CONNECT,
          "a UDSConnectRecord first over TLS");
    struct usp_arena *ar = usp_arena_new(4096);
    size_t len;
    uint8_t *big = make_record(ar, agent_eid, CTL_EID, 200000, &len);
    CHECK(usp_mtp_send(a.c, NULL, big, len) == 0, "a %zu-byte record over TLS", len);
    want_records = 2;
    CHECK(run_until(a_has_records, 5000) && acc[0].last_len == len &&
              memcmp(acc[0].last, big, len) == 0,
          "it arrived intact");
    uint8_t *r = make_record(ar, CTL_EID, agent_eid, 100, &len);
    CHECK(usp_mtp_send(acc[0].c, NULL, r, len) == 0, "the controller answers over TLS");
    cur_a = &a;
    want_records = 1;
    CHECK(run_until(a_has_records, 3000) && a.last_len == len && memcmp(a.last, r, len) == 0,
          "the answer arrived intact");
    usp_arena_free(ar);
    int before = acc[0].records;
    usp_mtp_close(a.c, 0, "bye");
    CHECK(run_until(a_closed_and_acc_closed, 5000), "closed over TLS (%s)", a.states);
    CHECK(acc[0].records == before + 1 &&
              acc[0].last_type == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT,
          "the DisconnectRecord arrived before the close");
    ep_cleanup(&a);
    acc_reset();

    /* Refusals, each with a reason a person can act on. */
    tls_refused(url, "client certificate from an untrusted CA", "os::012345-SIM000001", certs,
                other, "agents/1", "alert");
    /* The client trusts only the other CA: the server's certificate fails. */
    {
        char oca[300];
        sprintf(oca, "%s/ca.pem", other);
        cfg_init(&cfg, USP_MTP_AGENT, agent_eid, url);
        tls_files(&cfg, certs, "agents/1", aca, acert, akey);
        cfg.tls.ca_file = oca;
        ep_init(&a, "agent");
        cur_a = &a;
        CHECK(usp_mtp_conn_new(ctx, &cfg, &ep_cb, &a, &a.c, why, sizeof why) == 0,
              "server certificate untrusted: client made");
        usp_mtp_open(a.c);
        CHECK(run_until(a_down_or_up, 5000) && a.state == USP_MTP_DOWN,
              "server certificate untrusted: DOWN (%s)", a.states);
        CHECK(a.reason == USP_MTP_R_REFUSED && a.code == USP_EPERM &&
                  strstr(a.detail, "certificate did not verify"),
              "server certificate untrusted: refused, -9, %s", a.detail);
        ep_cleanup(&a);
    }
    tls_refused(url, "an Endpoint ID that is not the certificate's", "os::012345-SIM000002", certs,
                certs, "agents/1", "not one the peer's certificate authenticates");
    CHECK(l->stats.accepted == 1, "the listener accepted 1 session in all (%llu)",
          (unsigned long long)l->stats.accepted);
    usp_mtp_listener_close(l);
    run_for(50);
    return 0;
}

/* ---- scale ---- */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3;
}

static size_t heap_used(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static int scale_n, scale_up, scale_closed, scale_acc_closed, scale_accepted;

static void scale_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    if (ev->state == USP_MTP_UP)
        scale_up++;
    if (ev->state == USP_MTP_CLOSED)
        scale_closed++;
    if (ev->state == USP_MTP_DOWN)
        printf("#    DOWN: %s\n", ev->detail);
}

static const struct usp_mtp_callbacks scale_cb = {.state = scale_state};

static void scale_acc_state(struct usp_mtp_conn *c, const struct usp_mtp_event *ev, void *user)
{
    if (ev->state == USP_MTP_CLOSED) {
        usp_mtp_conn_free(c);
        scale_acc_closed++;
    }
}

static const struct usp_mtp_callbacks scale_acc_cb = {.state = scale_acc_state};

static void scale_accept(struct usp_mtp_listener *l, struct usp_mtp_conn *c,
                         const struct usp_mtp_peer *p, void *user)
{
    usp_mtp_conn_set_callbacks(c, &scale_acc_cb, NULL);
    scale_accepted++;
}

static const struct usp_mtp_listener_callbacks scale_lcb = {.accept = scale_accept};

static bool scale_all_up(void)
{
    return scale_up == scale_n && (int)usp_mtp_ctx_stats(ctx)->rx_records >= scale_n;
}

static bool scale_all_closed(void)
{
    return scale_closed == scale_n && scale_acc_closed == scale_n;
}

static int run_scale(const char *dir, int n)
{
    scale_n = n;
    quiet_log = true;
    struct usp_mtp_conn **conns = calloc((size_t)n, sizeof *conns);
    char(*eids)[48] = calloc((size_t)n, sizeof *eids);
    char url[200], why[300];
    snprintf(url, sizeof url, "unix:%s/scale.sock", dir);
    int fd0 = count_fds();
    size_t m0 = heap_used();
    struct usp_mtp_config cfg;
    cfg_init(&cfg, USP_MTP_CONTROLLER, CTL_EID, url);
    struct usp_mtp_listener *l = NULL;
    CHECK(usp_mtp_listen(ctx, &cfg, &scale_lcb, NULL, &l, why, sizeof why) == 0,
          "scale: listening");
    int fd1 = count_fds();
    size_t m1 = heap_used();
    for (int i = 0; i < n; i++) {
        snprintf(eids[i], sizeof eids[i], "proto::scale-%d", i);
        cfg_init(&cfg, USP_MTP_AGENT, eids[i], url);
        cfg.peer_eid = CTL_EID;
        cfg.peer_dest = url;
        cfg.connect_timeout_ms = 30000;
        if (usp_mtp_conn_new(ctx, &cfg, &scale_cb, NULL, &conns[i], why, sizeof why)) {
            CHECK(false, "scale: connection %d: %s", i, why);
            return 1;
        }
    }
    size_t m2 = heap_used();
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < n; i++)
        usp_mtp_open(conns[i]);
    CHECK(run_until(scale_all_up, 30000), "scale: %d of %d agents UP, %llu records at the listener",
          scale_up, n, (unsigned long long)usp_mtp_ctx_stats(ctx)->rx_records);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    size_t m3 = heap_used();
    int fd2 = count_fds();
    CHECK(scale_accepted == n && l->stats.accepted == (uint64_t)n, "scale: %d sessions accepted",
          scale_accepted);
    printf("#    %d UDS sessions UP (connect, handshake both ways, UDSConnectRecord) in %.3f s: "
           "%.0f sessions/s\n",
           n, secs, n / secs);
    double fds = (double)(fd2 - fd1) / n;
    printf(
        "#    file descriptors: %d for the listener, %.2f per session pair (client + accepted)\n",
        fd1 - fd0, fds);
    CHECK(fds <= 2.01, "scale: %.2f file descriptors per client/server pair", fds);
    printf("#    sizeof(struct uds_conn) %zu bytes (+ its strings), uv_pipe_t %zu of it\n",
           usp_mtp_uds_conn_size(), sizeof(uv_pipe_t));
    if (m3 > m0) { /* not under ASan */
        double per_pair = (double)(m3 - m2) / n, per_client = (double)(m2 - m1) / n;
        printf("#    heap: listener %.0f bytes; per client connection before open %.0f bytes; "
               "per session pair once up and idle (client + accepted) %.0f bytes, i.e. about "
               "%.0f bytes per session end\n",
               (double)(m1 - m0), per_client, per_pair, (per_pair + per_client) / 2);
        CHECK((per_pair + per_client) / 2 < 1024,
              "scale: under 1 KB of heap per idle session end (%.0f bytes)",
              (per_pair + per_client) / 2);
    }
    for (int i = 0; i < n; i++)
        usp_mtp_close(conns[i], 0, NULL);
    CHECK(run_until(scale_all_closed, 20000), "scale: %d of %d closed, %d accepted saw it",
          scale_closed, n, scale_acc_closed);
    for (int i = 0; i < n; i++)
        usp_mtp_conn_free(conns[i]);
    usp_mtp_listener_close(l);
    run_for(50);
    free(conns);
    free(eids);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s exchange|restart|listen|client|tls|scale ARGS\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    loop = uv_default_loop();
    struct usp_mtp_ctx_opts o = {.log = on_log, .log_level = USP_MTP_LOG_INFO};
    ctx = usp_mtp_ctx_new(loop, &o);
    if (!ctx || usp_mtp_register_ext(&usp_mtp_uds_ext_ops) != 0) {
        fprintf(stderr, "cannot set up\n");
        return 2;
    }
    uv_timer_init(loop, &ticker);
    uv_timer_start(&ticker, tick, 10, 10);
    t_start = uv_now(loop);
    const char *mode = argv[1];
    int rc = 2;
    if (strcmp(mode, "exchange") == 0)
        rc = run_exchange(argv[2]);
    else if (strcmp(mode, "restart") == 0)
        rc = run_restart(argv[2]);
    else if (strcmp(mode, "listen") == 0 && argc > 3)
        rc = run_listen(argv[2], atoi(argv[3]));
    else if (strcmp(mode, "client") == 0 && argc > 3)
        rc = run_client(argv[2], argv[3]);
    else if (strcmp(mode, "tls") == 0 && argc > 4)
        rc = run_tls(argv[2], argv[3], argv[4]);
    else if (strcmp(mode, "scale") == 0 && argc > 3)
        rc = run_scale(argv[2], atoi(argv[3]));
    else
        fprintf(stderr, "bad arguments for %s\n", mode);
    uv_timer_stop(&ticker);
    uv_close((uv_handle_t *)&ticker, NULL);
    usp_mtp_ctx_free(ctx);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    if (rc == 2)
        return 2;
    return failures || rc ? 1 : 0;
}
