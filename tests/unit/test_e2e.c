/* E2E sessions and SAR on a virtual clock: a Controller and an Agent
 * session wired back to back through an in-memory channel the tests
 * control (loss, duplication, reordering, inspection of every Record).
 *
 * Covered: a 100 KB payload over MaxUSPRecordSize 200 arrives intact with
 * every Record at most 200 bytes and the SAR states in order; Record sizes
 * over a sweep of limits and lengths; loss and reordering recovered by
 * retransmission, also of a session's first Record; stale retransmit
 * requests; duplicates ignored; MaxRetransmitTries exhaustion (and the
 * default 0) restarting the session with the R-E2E.10 back-off and the
 * Message sent again; a buffer overflow restarting; expiry and R-E2E.7;
 * Disconnects 7106 (with the retry windows and R-E2E.12), 7105, 7103,
 * 7102 and 7101; sequence_id exhaustion on both sides (R-E2E.8/9);
 * simultaneous starts; a burst of restarts over a reordering channel
 * and a Message that can never be processed (both found by fuzzing);
 * invalid Records; SAR violations; deliver callbacks
 * that answer, fail, or end the session; the memory a session holds; and
 * the TR-181 parameter parser. Every Record the sessions emit is decoded
 * and validated by the codec on its way through the channel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_int.h"
#include "testutil.h"
#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/e2e.h"
#include "usp/errors.h"

#define T0    1000000ull
#define AGENT "proto::e2e-agent-1"
#define CTRL  "proto::e2e-controller"
#define MAXQ  200000

struct net;

/* One endpoint: a session, its config, counters, what it received. */
struct end {
    struct net *net;
    int side; /* 0 the Controller, 1 the Agent */
    struct usp_e2e_session *s;
    struct usp_e2e_cfg cfg;
    struct usp_e2e_stats st;
    struct usp_e2e_io io;
    int ngot;
    uint8_t *got[64];
    size_t got_len[64];
    bool got_in_session[64];
    /* What deliver does besides recording. */
    int (*hook)(struct end *e, const uint8_t *m, size_t n, bool in_session);
    int hook_calls;
};

struct pkt {
    struct pkt *next;
    size_t n;
    uint8_t b[];
};

/* What the channel saw of one Record. */
struct seen {
    int side;
    uint64_t sid, seq, expected, rtx;
    int sar, recsar;
    size_t plen, bytes;
    int type;
};

struct net {
    struct end e[2];
    uint64_t now;
    struct usp_arena *arena;
    struct pkt *q[2]; /* Records sent by side i, on their way to the other */
    bool (*drop)(struct net *n, const struct seen *r);
    void *drop_ctx;
    bool dup;
    bool shuffle;
    uint64_t rng;
    size_t oversize; /* session Records above the sender's MaxUSPRecordSize */
    uint32_t disc_code[2];
    int ndisc[2];
    int nplain[2];
    struct seen *log;
    size_t nlog, caplog;
    size_t dropped;
};

static uint64_t rnd(struct net *n)
{
    uint64_t z = (n->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void log_add(struct net *n, const struct seen *r)
{
    if (n->nlog == n->caplog) {
        n->caplog = n->caplog ? n->caplog * 2 : 1024;
        n->log = realloc(n->log, n->caplog * sizeof *n->log);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n->log);
    }
    n->log[n->nlog++] = *r;
}

static void enqueue(struct net *n, int side, const uint8_t *b, size_t len)
{
    struct pkt *p = malloc(sizeof *p + len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    p->next = NULL;
    p->n = len;
    memcpy(p->b, b, len);
    struct pkt **pp = &n->q[side];
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
}

static int net_send(void *ctx, const uint8_t *b, size_t len)
{
    struct end *e = ctx;
    struct net *n = e->net;
    UspRecord__Record *rec = usp_record__record__unpack(NULL, len, b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
    struct seen r = {.side = e->side, .bytes = len, .type = rec->record_type_case};
    CU_ASSERT_STRING_EQUAL(rec->from_id, e->side ? AGENT : CTRL);
    CU_ASSERT_STRING_EQUAL(rec->to_id, e->side ? CTRL : AGENT);
    if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT) {
        const UspRecord__SessionContextRecord *sc = rec->session_context;
        r.sid = sc->session_id;
        r.seq = sc->sequence_id;
        r.expected = sc->expected_id;
        r.rtx = sc->retransmit_id;
        r.sar = sc->payload_sar_state;
        r.recsar = sc->payloadrec_sar_state;
        for (size_t i = 0; i < sc->n_payload; i++)
            r.plen += sc->payload[i].len;
        CU_ASSERT(sc->n_payload <= 1);
        if (e->cfg.max_record_size && len > e->cfg.max_record_size && r.plen)
            n->oversize++;
    } else if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT) {
        n->disc_code[e->side] = rec->disconnect->reason_code;
        n->ndisc[e->side]++;
    } else if (rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT) {
        n->nplain[e->side]++;
    }
    usp_record__record__free_unpacked(rec, NULL);
    log_add(n, &r);
    if (n->drop && n->drop(n, &r)) {
        n->dropped++;
        return 0;
    }
    enqueue(n, e->side, b, len);
    if (n->dup)
        enqueue(n, e->side, b, len);
    return 0;
}

static int net_deliver(void *ctx, const uint8_t *m, size_t len, bool in_session)
{
    struct end *e = ctx;
    if (e->ngot < 64) {
        e->got[e->ngot] = malloc(len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e->got[e->ngot]);
        memcpy(e->got[e->ngot], m, len);
        e->got_len[e->ngot] = len;
        e->got_in_session[e->ngot] = in_session;
    }
    e->ngot++;
    if (e->hook) {
        e->hook_calls++;
        return e->hook(e, m, len, in_session);
    }
    return 0;
}

/* E2E_LOG=1 in the environment prints what the sessions log. */
static void net_log(void *ctx, const char *line)
{
    const struct end *e = ctx;
    fprintf(stderr, "  [%llu] %s\n", (unsigned long long)(e->net->now - T0), line);
}

static void net_init(struct net *n)
{
    memset(n, 0, sizeof *n);
    n->now = T0;
    n->rng = 42;
    if (getenv("E2E_LOG") && CU_get_current_test())
        fprintf(stderr, "== %s\n", CU_get_current_test()->pName);
    n->arena = usp_arena_new(4096);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n->arena);
    for (int i = 0; i < 2; i++) {
        struct end *e = &n->e[i];
        e->net = n;
        e->side = i;
        usp_e2e_cfg_init(&e->cfg);
        e->cfg.retransmit_timeout_ms = 1000;
        e->io = (struct usp_e2e_io){.send = net_send, .deliver = net_deliver, .ctx = e};
        if (getenv("E2E_LOG"))
            e->io.log = net_log;
    }
    n->e[0].cfg.mode = USP_E2E_REQUIRE; /* the Controller starts sessions */
}

/* After the cfgs are set. */
static void net_start(struct net *n)
{
    CU_ASSERT_EQUAL_FATAL(
        usp_e2e_new(&n->e[0].cfg, USP_E2E_CONTROLLER, CTRL, AGENT, 7, &n->e[0].st, &n->e[0].s), 0);
    CU_ASSERT_EQUAL_FATAL(
        usp_e2e_new(&n->e[1].cfg, USP_E2E_AGENT, AGENT, CTRL, 7, &n->e[1].st, &n->e[1].s), 0);
}

static void net_free(struct net *n)
{
    CU_ASSERT_EQUAL(n->oversize, 0);
    for (int i = 0; i < 2; i++) {
        usp_e2e_free(n->e[i].s);
        for (int k = 0; k < n->e[i].ngot && k < 64; k++)
            free(n->e[i].got[k]);
        while (n->q[i]) {
            struct pkt *p = n->q[i];
            n->q[i] = p->next;
            free(p);
        }
    }
    free(n->log);
    usp_arena_free(n->arena);
}

/* Every Record the sessions send must pass the codec's own checks. */
static void rx(struct net *n, int to, const struct pkt *p)
{
    usp_arena_reset(n->arena);
    UspRecord__Record *rec;
    struct usp_decode_err err;
    int rc = usp_record_decode(n->arena, p->b, p->n, &rec, &err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        return;
    struct end *e = &n->e[to];
    CU_ASSERT_EQUAL(usp_e2e_receive(e->s, rec, n->now, &e->io), 0);
}

/* Delivers everything in flight (and what that provokes), optionally in a
 * shuffled order within each batch. */
static void flush(struct net *n)
{
    for (int guard = 0; guard < MAXQ && (n->q[0] || n->q[1]); guard++) {
        for (int side = 0; side < 2; side++) {
            struct pkt *list = n->q[side];
            n->q[side] = NULL;
            size_t cnt = 0;
            for (struct pkt *p = list; p; p = p->next)
                cnt++;
            if (!cnt)
                continue;
            struct pkt **arr = malloc(cnt * sizeof *arr);
            CU_ASSERT_PTR_NOT_NULL_FATAL(arr);
            size_t i = 0;
            for (struct pkt *p = list; p; p = p->next)
                arr[i++] = p;
            if (n->shuffle)
                for (size_t k = cnt - 1; k > 0; k--) {
                    size_t j = rnd(n) % (k + 1);
                    struct pkt *t = arr[k];
                    arr[k] = arr[j];
                    arr[j] = t;
                }
            for (i = 0; i < cnt; i++) {
                rx(n, 1 - side, arr[i]);
                free(arr[i]);
            }
            free(arr);
        }
    }
    CU_ASSERT(!n->q[0] && !n->q[1]);
}

static uint64_t next_deadline(struct net *n)
{
    uint64_t a = usp_e2e_next_deadline(n->e[0].s), b = usp_e2e_next_deadline(n->e[1].s);
    return a < b ? a : b;
}

static void tick(struct net *n)
{
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL(usp_e2e_tick(n->e[i].s, n->now, &n->e[i].io), 0);
}

/* Runs the channel and the timers until nothing is due before `until`. */
static void run_until(struct net *n, uint64_t until)
{
    int guard;
    for (guard = 0; guard < MAXQ; guard++) {
        flush(n);
        uint64_t d = next_deadline(n);
        if (d > until)
            break;
        if (d > n->now)
            n->now = d;
        tick(n);
    }
    CU_ASSERT(guard < MAXQ);
}

static void run(struct net *n)
{
    run_until(n, n->now + 60000);
}

/* Moves the clock without running timers in between, then ticks. */
static void advance(struct net *n, uint64_t ms)
{
    n->now += ms;
    tick(n);
    flush(n);
}

static uint8_t *blob(size_t len, uint32_t seed)
{
    uint8_t *b = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    uint64_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (uint8_t)(x >> 56);
    }
    return b;
}

static bool got_equal(const struct end *e, int k, const uint8_t *b, size_t len)
{
    return k < e->ngot && e->got_len[k] == len && memcmp(e->got[k], b, len) == 0;
}

static int send_msg(struct net *n, int side, const uint8_t *b, size_t len)
{
    struct end *e = &n->e[side];
    return usp_e2e_send_msg(e->s, b, len, n->now, &e->io);
}

/* A Record with the given ids from the Controller, straight into the Agent. */
static void inject(struct net *n, uint64_t sid, uint64_t seq, uint64_t expected, uint64_t rtx,
                   int sar, int recsar, const uint8_t *p, size_t len, int security)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    ProtobufCBinaryData pl = {.len = len, .data = (uint8_t *)p};
    rec.version = "1.4";
    rec.to_id = AGENT;
    rec.from_id = CTRL;
    rec.payload_security = security;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT;
    rec.session_context = &sc;
    sc.session_id = sid;
    sc.sequence_id = seq;
    sc.expected_id = expected;
    sc.retransmit_id = rtx;
    sc.payload_sar_state = sar;
    sc.payloadrec_sar_state = recsar;
    sc.n_payload = len ? 1 : 0;
    sc.payload = &pl;
    CU_ASSERT_EQUAL(usp_e2e_receive(n->e[1].s, &rec, n->now, &n->e[1].io), 0);
}

/* --- SAR ------------------------------------------------------------------ */

static void test_large_sar(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 200;
    n.e[1].cfg.max_record_size = 200;
    net_start(&n);
    const size_t len = 100 * 1024;
    uint8_t *b = blob(len, 1);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, len), 0);
    run(&n);
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    CU_ASSERT(got_equal(&n.e[1], 0, b, len));
    CU_ASSERT(n.e[1].got_in_session[0]);
    CU_ASSERT_EQUAL(n.e[0].st.segmented, 1);
    CU_ASSERT_EQUAL(n.e[1].st.reassembled, 1);
    CU_ASSERT_EQUAL(n.e[0].st.retransmitted, 0);

    /* Every Record at most 200 bytes, packed close to the limit, states
     * BEGIN, INPROCESS..., COMPLETE, both fields equal, consecutive ids. */
    size_t recs = 0, total = 0;
    uint64_t sid = usp_e2e_session_id(n.e[0].s);
    for (size_t i = 0; i < n.nlog; i++) {
        const struct seen *r = &n.log[i];
        if (r->side != 0)
            continue;
        CU_ASSERT(r->bytes <= 200);
        CU_ASSERT_EQUAL(r->sid, sid);
        CU_ASSERT_EQUAL(r->seq, recs + 1);
        CU_ASSERT_EQUAL(r->sar, r->recsar);
        CU_ASSERT_EQUAL(r->expected, 1);
        int want = recs == 0 ? E2E_SAR_BEGIN : E2E_SAR_INPROCESS;
        total += r->plen;
        if (total == len)
            want = E2E_SAR_COMPLETE;
        else
            CU_ASSERT(r->bytes >= 198);
        CU_ASSERT_EQUAL(r->sar, want);
        recs++;
    }
    CU_ASSERT_EQUAL(total, len);
    CU_ASSERT(recs > 500);
    CU_ASSERT_EQUAL(n.e[0].st.records_tx, recs);
    free(b);
    net_free(&n);
}

/* Many limits and lengths, with the session ids the seeds give: every
 * Record fits, every payload arrives. */
static void test_record_size_sweep(void)
{
    static const size_t lens[] = {1, 2, 50, 127, 128, 129, 300, 1000, 4097, 20000};
    for (uint32_t max = 90; max <= 700; max += 41) {
        struct net n;
        net_init(&n);
        n.e[0].cfg.max_record_size = max;
        net_start(&n);
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            uint8_t *b = blob(lens[k], (uint32_t)(max + k));
            CU_ASSERT_EQUAL(send_msg(&n, 0, b, lens[k]), 0);
            run(&n);
            CU_ASSERT(got_equal(&n.e[1], (int)k, b, lens[k]));
            free(b);
        }
        for (size_t i = 0; i < n.nlog; i++)
            if (n.log[i].side == 0)
                CU_ASSERT(n.log[i].bytes <= max);
        net_free(&n);
    }
}

/* A header alone bigger than the limit cannot carry anything. */
static void test_record_size_too_small(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 30;
    net_start(&n);
    uint8_t b[100] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, sizeof b), USP_ERANGE);
    net_free(&n);
}

/* --- Loss, reordering, duplicates ------------------------------------------ */

/* Random loss of segments and of retransmit requests (the last Record of an
 * unsegmented Message cannot be recovered by anyone: no gap shows). */
static bool drop_random(struct net *n, const struct seen *r)
{
    if (r->type != USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT)
        return false;
    if (r->sar == E2E_SAR_NONE && !r->rtx)
        return false;
    return rnd(n) % 100 < 15;
}

static int answer(struct end *e, const uint8_t *m, size_t n, bool in_session)
{
    uint8_t reply[40];
    memset(reply, 0xA0 + (e->hook_calls & 0x0f), sizeof reply);
    memcpy(reply, m, n < 8 ? n : 8);
    if (in_session)
        return usp_e2e_send_msg(e->s, reply, sizeof reply, e->net->now, &e->io);
    return usp_e2e_send_plain(e->s, reply, sizeof reply, &e->io);
}

static void test_loss_and_reorder(void)
{
    struct net n;
    net_init(&n);
    for (int i = 0; i < 2; i++) {
        n.e[i].cfg.max_record_size = 300;
        n.e[i].cfg.max_retransmit_tries = -1;
        n.e[i].cfg.rx_window = 256;
    }
    n.e[1].hook = answer;
    n.drop = drop_random;
    n.shuffle = true;
    net_start(&n);
    uint8_t *b[3];
    for (int k = 0; k < 3; k++) {
        b[k] = blob(20000 + (size_t)k * 777, (uint32_t)k + 10);
        CU_ASSERT_EQUAL(send_msg(&n, 0, b[k], 20000 + (size_t)k * 777), 0);
        run_until(&n, n.now + 600000);
    }
    CU_ASSERT_EQUAL(n.e[1].ngot, 3);
    for (int k = 0; k < 3; k++) {
        CU_ASSERT(got_equal(&n.e[1], k, b[k], 20000 + (size_t)k * 777));
        free(b[k]);
    }
    CU_ASSERT_EQUAL(n.e[0].ngot, 3); /* the answers */
    CU_ASSERT(n.dropped > 0);
    CU_ASSERT(n.e[0].st.retransmitted > 0);
    CU_ASSERT(n.e[1].st.retransmit_reqs > 0);
    CU_ASSERT(n.e[1].st.buffered > 0);
    CU_ASSERT_EQUAL(n.e[0].st.restarts + n.e[1].st.restarts, 0);
    CU_ASSERT_EQUAL(n.e[0].st.opened, 1);
    CU_ASSERT_EQUAL(n.e[1].st.accepted, 1);
    /* The answers acknowledged everything but the last Message's tail. */
    CU_ASSERT(usp_e2e_mem(n.e[0].s) < 25000);
    net_free(&n);
}

/* Reordering alone: buffered, no retransmission needed. */
static void test_reorder_only(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 120;
    n.e[1].cfg.rx_window = 256; /* the whole Message may arrive backwards */
    n.shuffle = true;
    net_start(&n);
    uint8_t *b = blob(5000, 3);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 5000), 0);
    run(&n);
    CU_ASSERT(got_equal(&n.e[1], 0, b, 5000));
    CU_ASSERT(n.e[1].st.buffered > 0);
    CU_ASSERT_EQUAL(n.e[1].st.retransmit_reqs, 0);
    free(b);
    net_free(&n);
}

static void test_duplicates(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 150;
    n.e[1].hook = answer;
    n.dup = true;
    n.shuffle = true;
    net_start(&n);
    uint8_t *b = blob(3000, 4);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 3000), 0);
    run(&n);
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    CU_ASSERT(got_equal(&n.e[1], 0, b, 3000));
    CU_ASSERT_EQUAL(n.e[0].ngot, 1);
    CU_ASSERT(n.e[1].st.duplicates > 0);
    CU_ASSERT(n.e[0].st.duplicates > 0);
    CU_ASSERT_EQUAL(n.e[0].st.restarts + n.e[1].st.restarts, 0);
    free(b);
    net_free(&n);
}

struct drop_one {
    uint64_t sid, seq;
};

/* The first transmission of one Record of the Controller is lost. */
static bool drop_first_copy(struct net *n, const struct seen *r)
{
    struct drop_one *d = n->drop_ctx;
    if (r->side != 0 || r->seq != d->seq || d->sid)
        return false;
    d->sid = r->sid; /* only once */
    return true;
}

/* A session whose first Record is lost: the Agent takes the session from
 * its second Record and asks for the first. */
static void test_first_record_lost(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 200;
    n.e[0].cfg.max_retransmit_tries = 1;
    net_start(&n);
    struct drop_one d = {0, 1};
    n.drop = drop_first_copy;
    n.drop_ctx = &d;
    uint8_t *b = blob(600, 11);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 600), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.e[1].st.accepted, 1);
    CU_ASSERT(n.e[1].st.buffered >= 3);
    CU_ASSERT_EQUAL(n.e[1].ngot, 0);
    CU_ASSERT_EQUAL(usp_e2e_next_deadline(n.e[1].s), n.now + 1000);
    run(&n);
    CU_ASSERT_EQUAL(n.e[1].st.retransmit_reqs, 1);
    CU_ASSERT_EQUAL(n.e[0].st.retransmitted, 1);
    CU_ASSERT(got_equal(&n.e[1], 0, b, 600));
    CU_ASSERT_EQUAL(n.e[0].st.restarts + n.e[1].st.restarts, 0);
    /* The request acknowledged nothing of ours... but nothing of the
     * Agent's waits: no gap left, no timer. */
    CU_ASSERT_EQUAL(usp_e2e_next_deadline(n.e[1].s), UINT64_MAX);
    free(b);
    net_free(&n);
}

/* A request for a Record the peer has acknowledged since is stale: it is
 * neither answered nor a failure. */
static void test_stale_request(void)
{
    struct net n;
    net_init(&n);
    n.e[1].hook = answer;
    n.e[1].cfg.max_retransmit_tries = 1;
    net_start(&n);
    uint8_t m[30] = {1};
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        flush(&n);
    }
    CU_ASSERT_EQUAL(n.e[1].ngot, 2);
    CU_ASSERT_EQUAL(n.e[0].ngot, 2);
    /* The Controller's second Record acknowledged the Agent's first
     * (expected_id 2); a request for it now is late. */
    uint64_t sid = usp_e2e_session_id(n.e[1].s);
    size_t before = n.nlog;
    inject(&n, sid, 3, 2, 1, 0, 0, NULL, 0, 0);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 0);
    CU_ASSERT_EQUAL(n.e[1].st.retransmitted, 0);
    CU_ASSERT_EQUAL(n.nlog, before);
    /* The Agent's second Record is still held and can be asked for. */
    inject(&n, sid, 4, 2, 2, 0, 0, NULL, 0, 0);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 0);
    CU_ASSERT_EQUAL(n.e[1].st.retransmitted, 1);
    CU_ASSERT_EQUAL(n.nlog, before + 1);
    CU_ASSERT_EQUAL(n.log[before].seq, 2);
    net_free(&n);
}

/* --- Failures and restarts -------------------------------------------------- */

/* Every copy of one Record of one session from the Controller is lost. */
static bool drop_seq(struct net *n, const struct seen *r)
{
    const struct drop_one *d = n->drop_ctx;
    return r->side == 0 && r->sid == d->sid && r->seq == d->seq;
}

static void test_retransmit_exhaustion(void)
{
    struct net n;
    net_init(&n);
    for (int i = 0; i < 2; i++) {
        n.e[i].cfg.max_record_size = 200;
        n.e[i].cfg.max_retransmit_tries = 2;
    }
    net_start(&n);
    /* Open the session with a first Message, then lose a later one's Record. */
    uint8_t first[20] = {9};
    CU_ASSERT_EQUAL(send_msg(&n, 0, first, sizeof first), 0);
    run(&n);
    uint64_t sid = usp_e2e_session_id(n.e[0].s);
    CU_ASSERT(sid > 1);
    struct drop_one d = {sid, 5};
    n.drop = drop_seq;
    n.drop_ctx = &d;
    uint8_t *b = blob(5000, 5);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 5000), 0);
    flush(&n);
    size_t after5 = 0;
    for (size_t i = 0; i < n.nlog; i++)
        if (n.log[i].side == 0 && n.log[i].sid == sid && n.log[i].seq > 5)
            after5++;
    CU_ASSERT(after5 > 20);
    CU_ASSERT_EQUAL(n.e[1].st.buffered, after5);

    /* Two retransmissions are lost as well; the third request fails the
     * Controller's session. */
    uint64_t failed_at = 0;
    for (int i = 0; i < 10 && !failed_at; i++) {
        n.now = next_deadline(&n);
        tick(&n);
        flush(&n);
        if (n.e[0].st.restarts)
            failed_at = n.now;
    }
    CU_ASSERT(failed_at != 0);
    CU_ASSERT_EQUAL(n.e[0].st.retransmitted, 2);
    CU_ASSERT_EQUAL(n.e[1].st.retransmit_reqs, 3);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[0].s), 1);
    /* R-E2E.10: retry #1 within m .. m*k/1000 = 5 .. 10 s. */
    uint64_t at = usp_e2e_next_deadline(n.e[0].s);
    CU_ASSERT(at >= failed_at + 5000 && at <= failed_at + 10000);
    /* Meanwhile a Message waits: the back-off forbids a session. */
    uint8_t small[10] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, small, sizeof small), USP_EPERM);

    run(&n);
    CU_ASSERT_NOT_EQUAL(usp_e2e_session_id(n.e[0].s), sid);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), usp_e2e_session_id(n.e[1].s));
    /* Both ends failed (the Agent gave up on the gap); whichever back-off
     * ran out first opened the new session, the other joined it. */
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 1);
    CU_ASSERT_EQUAL(n.e[0].st.opened + n.e[0].st.accepted, 2);
    CU_ASSERT_EQUAL(n.e[0].st.resent_msgs, 1);
    CU_ASSERT_EQUAL(n.e[1].ngot, 2);
    CU_ASSERT(got_equal(&n.e[1], 1, b, 5000));
    free(b);
    net_free(&n);
}

/* MaxRetransmitTries 0 (the default): a request fails at once. */
static void test_retransmit_zero(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 200;
    n.e[0].cfg.drop_on_restart = true;
    net_start(&n);
    uint8_t first[20] = {9};
    CU_ASSERT_EQUAL(send_msg(&n, 0, first, sizeof first), 0);
    run(&n);
    struct drop_one d = {usp_e2e_session_id(n.e[0].s), 3};
    n.drop = drop_seq;
    n.drop_ctx = &d;
    uint8_t *b = blob(2000, 6);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 2000), 0);
    run(&n);
    CU_ASSERT_EQUAL(n.e[1].st.retransmit_reqs, 1);
    CU_ASSERT_EQUAL(n.e[0].st.retransmitted, 0);
    CU_ASSERT_EQUAL(n.e[0].st.restarts, 1);
    CU_ASSERT_EQUAL(n.e[0].st.dropped_msgs, 1); /* drop_on_restart */
    CU_ASSERT_EQUAL(n.e[0].st.resent_msgs, 0);
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    /* The re-opened session works. */
    CU_ASSERT_NOT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), usp_e2e_session_id(n.e[1].s));
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 2000), 0);
    run(&n);
    CU_ASSERT(got_equal(&n.e[1], 1, b, 2000));
    free(b);
    net_free(&n);
}

/* More Records ahead of a gap than the window holds: the receiver fails,
 * re-opens after its back-off, and the Controller sends the Message again. */
static void test_rx_window_overflow(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 200;
    n.e[1].cfg.rx_window = 4;
    net_start(&n);
    uint8_t first[20] = {9};
    CU_ASSERT_EQUAL(send_msg(&n, 0, first, sizeof first), 0);
    run(&n);
    struct drop_one d = {usp_e2e_session_id(n.e[0].s), 3};
    n.drop = drop_seq;
    n.drop_ctx = &d;
    uint8_t *b = blob(2000, 7);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 2000), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 1);
    CU_ASSERT_EQUAL(n.e[1].st.buffered, 4);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT(usp_e2e_mem(n.e[1].s) < 200);
    run(&n);
    CU_ASSERT_EQUAL(n.e[1].st.opened, 1); /* the Agent re-opened */
    CU_ASSERT_EQUAL(n.e[0].st.accepted, 1);
    /* Nothing was ever acknowledged: both Messages are sent again. */
    CU_ASSERT_EQUAL(n.e[0].st.resent_msgs, 2);
    CU_ASSERT(got_equal(&n.e[1], n.e[1].ngot - 1, b, 2000));
    free(b);
    net_free(&n);
}

static int fail_second(struct end *e, const uint8_t *m, size_t n, bool in_session)
{
    return e->hook_calls == 2 ? USP_EINVAL : 0;
}

/* R-E2E.21: a Message that cannot be processed fails the session. */
static void test_deliver_failure(void)
{
    struct net n;
    net_init(&n);
    n.e[1].hook = fail_second;
    n.e[0].cfg.drop_on_restart = true;
    net_start(&n);
    uint8_t m[30] = {1};
    for (int i = 0; i < 3; i++) {
        m[1] = (uint8_t)i;
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        flush(&n);
    }
    CU_ASSERT_EQUAL(n.e[1].st.deliver_failed, 1);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 1);
    CU_ASSERT_EQUAL(n.e[1].ngot, 2); /* the third went to a dead session */
    CU_ASSERT_EQUAL(n.e[1].st.stale, 1);
    net_free(&n);
}

static int refuse_poison(struct end *e, const uint8_t *m, size_t n, bool in_session)
{
    return n && m[0] == 0xEE ? USP_EINVAL : 0;
}

/* A Message whose every delivery fails its session is carried into at most
 * USP_E2E_MAX_RESENDS new sessions, then dropped (found by fuzzing: it
 * kept two sessions restarting each other). */
static void test_poison_message(void)
{
    struct net n;
    net_init(&n);
    n.e[1].hook = refuse_poison;
    net_start(&n);
    uint8_t poison[20] = {0xEE};
    CU_ASSERT_EQUAL(send_msg(&n, 0, poison, sizeof poison), 0);
    run_until(&n, n.now + 600000);
    CU_ASSERT_EQUAL(n.e[1].st.deliver_failed, 1 + USP_E2E_MAX_RESENDS);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 1 + USP_E2E_MAX_RESENDS);
    CU_ASSERT_EQUAL(n.e[0].st.resent_msgs, USP_E2E_MAX_RESENDS);
    CU_ASSERT_EQUAL(n.e[0].st.dropped_msgs, 1);
    CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[1].s), 1 + USP_E2E_MAX_RESENDS);
    /* Then things go on normally. */
    uint8_t m[20] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    run_until(&n, n.now + 600000);
    CU_ASSERT(got_equal(&n.e[1], n.e[1].ngot - 1, m, sizeof m));
    CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[1].s), 0);
    net_free(&n);
}

/* --- Lifecycle ------------------------------------------------------------- */

static void test_expiry(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.expiration_s = 10;
    n.e[1].cfg.expiration_s = 10;
    n.e[1].hook = answer;
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    uint64_t sid = usp_e2e_session_id(n.e[0].s);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_UP);
    CU_ASSERT_EQUAL(usp_e2e_next_deadline(n.e[0].s), n.now + 10000);
    advance(&n, 9999);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_UP);
    advance(&n, 1);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(n.e[0].st.expired, 1);
    CU_ASSERT_EQUAL(n.e[1].st.expired, 1);
    CU_ASSERT_EQUAL(usp_e2e_next_deadline(n.e[0].s), UINT64_MAX);
    CU_ASSERT_EQUAL(usp_e2e_mem(n.e[0].s), usp_e2e_mem(n.e[1].s));
    /* The next interaction opens a new session. */
    m[1] = 2;
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_NOT_EQUAL(usp_e2e_session_id(n.e[0].s), sid);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), usp_e2e_session_id(n.e[1].s));
    CU_ASSERT(got_equal(&n.e[1], 1, m, sizeof m));
    CU_ASSERT_EQUAL(n.e[0].ngot, 2);
    CU_ASSERT_EQUAL(n.e[1].st.accepted, 2);
    net_free(&n);
}

/* R-E2E.7: the Agent's session expired, the Controller still sends in it:
 * the Agent opens a new one at once and the Controller, which had nothing
 * back for its Message, sends it again there. An Agent in SessionMode Allow
 * that had a session keeps one going. */
static void test_expiry_peer_still_active(void)
{
    struct net n;
    net_init(&n);
    n.e[1].cfg.expiration_s = 10;
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    uint64_t sid = usp_e2e_session_id(n.e[1].s);
    advance(&n, 10000);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), sid);
    m[1] = 2;
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.e[1].st.stale, 1);
    CU_ASSERT_EQUAL(n.e[1].st.opened, 1);
    CU_ASSERT_EQUAL(n.e[0].st.accepted, 1);
    CU_ASSERT_NOT_EQUAL(usp_e2e_session_id(n.e[1].s), sid);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), usp_e2e_session_id(n.e[1].s));
    CU_ASSERT(n.e[0].st.resent_msgs >= 1);
    CU_ASSERT(got_equal(&n.e[1], n.e[1].ngot - 1, m, sizeof m));
    /* The Agent's own next Message goes in the session too. */
    CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.e[0].ngot, 1);
    CU_ASSERT(n.e[0].got_in_session[0]);
    net_free(&n);
}

/* R-E2E.9: we never send a sequence_id within 10,000 of the maximum. */
static void test_seq_exhaustion_send(void)
{
    struct net n;
    net_init(&n);
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    uint64_t sid = usp_e2e_session_id(n.e[0].s);
    const uint64_t edge = UINT64_MAX - USP_E2E_SEQ_MARGIN - 1;
    e2e__force_seq(n.e[0].s, edge, 1);
    e2e__force_seq(n.e[1].s, 1, edge);
    m[1] = 2;
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.log[n.nlog - 1].seq, edge); /* still allowed */
    CU_ASSERT(got_equal(&n.e[1], 1, m, sizeof m));
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), sid);
    m[1] = 3;
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.e[0].st.seq_exhausted, 1);
    CU_ASSERT_NOT_EQUAL(usp_e2e_session_id(n.e[0].s), sid);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[1].s), usp_e2e_session_id(n.e[0].s));
    /* Unacknowledged Messages went along: the last one delivered is m3. */
    CU_ASSERT(got_equal(&n.e[1], n.e[1].ngot - 1, m, sizeof m));
    for (size_t i = 0; i < n.nlog; i++)
        CU_ASSERT(n.log[i].seq <= edge);
    net_free(&n);
}

/* R-E2E.8: a received sequence_id near the maximum opens a new session,
 * also at the very maximum (no wrap of expected_id). */
static void test_seq_exhaustion_receive(void)
{
    static const uint64_t seqs[] = {UINT64_MAX - 5000, UINT64_MAX};
    for (int k = 0; k < 2; k++) {
        struct net n;
        net_init(&n);
        net_start(&n);
        uint8_t m[30] = {1};
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        flush(&n);
        uint64_t sid = usp_e2e_session_id(n.e[1].s);
        n.now += 5000; /* not a simultaneous start */
        e2e__force_seq(n.e[1].s, 1, seqs[k]);
        uint8_t p[5] = {5, 4, 3, 2, 1};
        inject(&n, sid, seqs[k], 1, 0, 0, 0, p, sizeof p, 0);
        CU_ASSERT(got_equal(&n.e[1], 1, p, sizeof p));
        CU_ASSERT_EQUAL(n.e[1].st.seq_exhausted, 1);
        CU_ASSERT_NOT_EQUAL(usp_e2e_session_id(n.e[1].s), sid);
        CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_NEGOTIATING);
        /* The Controller follows the Agent into the new session. */
        flush(&n);
        CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), usp_e2e_session_id(n.e[1].s));
        CU_ASSERT_EQUAL(n.e[0].st.accepted, 1);
        net_free(&n);
    }
}

/* Both ends open a session at once: the Controller's wins, each Message
 * arrives once. */
static void test_simultaneous_open(void)
{
    struct net n;
    net_init(&n);
    n.e[1].cfg.mode = USP_E2E_REQUIRE;
    net_start(&n);
    uint8_t a[10] = {0xA}, b[12] = {0xB};
    CU_ASSERT_EQUAL(send_msg(&n, 0, a, sizeof a), 0);
    CU_ASSERT_EQUAL(send_msg(&n, 1, b, sizeof b), 0);
    uint64_t csid = usp_e2e_session_id(n.e[0].s);
    CU_ASSERT_NOT_EQUAL(csid, usp_e2e_session_id(n.e[1].s));
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_NEGOTIATING);
    run(&n);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), csid);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[1].s), csid);
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    CU_ASSERT(got_equal(&n.e[1], 0, a, sizeof a));
    CU_ASSERT_EQUAL(n.e[0].ngot, 1);
    CU_ASSERT(got_equal(&n.e[0], 0, b, sizeof b));
    CU_ASSERT_EQUAL(n.e[0].st.stale, 1);
    CU_ASSERT_EQUAL(n.e[1].st.resent_msgs, 1);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_UP);
    CU_ASSERT_EQUAL(n.e[0].st.restarts + n.e[1].st.restarts, 0);
    net_free(&n);
}

/* A burst of restarts with Messages pending (found by fuzzing): late
 * Records of the Agent's old sessions reach the Controller, which adopts
 * them and sends its Messages in each; the Agent knows its own past
 * session ids however many there were, so nothing echoes back and the
 * traffic stays proportional. In order or reversed, both ends end up in
 * one session and every Message arrives. */
static void test_restart_burst(void)
{
    for (int reverse = 0; reverse < 2; reverse++) {
        struct net n;
        net_init(&n);
        n.e[1].cfg.mode = USP_E2E_REQUIRE;
        net_start(&n);
        uint8_t m[30] = {1};
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        flush(&n);
        CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
        flush(&n);
        CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_UP);
        n.now += 5000;
        /* Unacknowledged on both sides, then twelve restarts in a row. */
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
        size_t base = n.nlog;
        for (int i = 0; i < 12; i++)
            CU_ASSERT_EQUAL(usp_e2e_open(n.e[1].s, n.now, &n.e[1].io), 0);
        CU_ASSERT_EQUAL(n.e[1].st.opened, 12);
        if (reverse) {
            struct pkt *rev = NULL;
            while (n.q[1]) {
                struct pkt *p = n.q[1];
                n.q[1] = p->next;
                p->next = rev;
                rev = p;
            }
            n.q[1] = rev;
        }
        flush(&n);
        CU_ASSERT(n.nlog - base < 150);
        CU_ASSERT(n.e[0].st.accepted >= 2);
        n.now += 5000;
        /* Reversed, the Controller ends up in the Agent's oldest session;
         * the Agent's next Message brings it back to the current one (and
         * a request for a Record it had taken already fails it once). */
        m[1] = 2;
        CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
        run(&n);
        CU_ASSERT(n.nlog - base < 200);
        CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[0].s), usp_e2e_session_id(n.e[1].s));
        CU_ASSERT(got_equal(&n.e[0], n.e[0].ngot - 1, m, sizeof m));
        CU_ASSERT_EQUAL(n.e[0].st.restarts, (uint64_t)reverse);
        m[1] = 3;
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        run(&n);
        CU_ASSERT(got_equal(&n.e[1], n.e[1].ngot - 1, m, sizeof m));
        net_free(&n);
    }
}

/* --- Refusals ------------------------------------------------------------- */

/* R-E2E.6a: SessionMode Forbid answers 7106; a Controller that requires a
 * session retries establishment with the back-off, one that allows goes
 * on without. */
static void test_disconnect_7106(void)
{
    struct net n;
    net_init(&n);
    n.e[1].cfg.mode = USP_E2E_FORBID;
    n.e[0].cfg.retry_min_wait_s = 5;
    n.e[0].cfg.retry_multiplier = 2000;
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.ndisc[1], 1);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SESS_CONTEXT_NOT_ALLOWED);
    CU_ASSERT_EQUAL(n.e[1].st.refusals_sent, 1);
    CU_ASSERT_EQUAL(n.e[1].ngot, 0);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[0].s), 1);
    uint64_t at = usp_e2e_next_deadline(n.e[0].s);
    CU_ASSERT(at >= n.now + 5000 && at <= n.now + 10000);
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), USP_EPERM);
    /* Retry #2 within 10-20 s, #3 within 20-40 s. */
    for (uint32_t r = 2; r <= 3; r++) {
        n.now = at;
        tick(&n);
        CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_NEGOTIATING);
        flush(&n);
        CU_ASSERT_EQUAL(n.ndisc[1], (int)r);
        CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[0].s), r);
        at = usp_e2e_next_deadline(n.e[0].s);
        uint64_t lo = 5000ull << (r - 1), hi = 5000ull << r;
        CU_ASSERT(at >= n.now + lo && at <= n.now + hi);
    }
    /* The Agent now allows sessions: the next retry succeeds, and a Record
     * received resets the retry count (R-E2E.12). */
    n.e[1].cfg.mode = USP_E2E_ALLOW;
    n.now = at;
    tick(&n);
    flush(&n);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_UP);
    CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[0].s), 3);
    CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(usp_e2e_retry_count(n.e[0].s), 0);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_UP);
    net_free(&n);
}

static void test_disconnect_7106_allow(void)
{
    struct net n;
    net_init(&n);
    n.e[1].cfg.mode = USP_E2E_FORBID;
    n.e[0].cfg.mode = USP_E2E_ALLOW;
    net_start(&n);
    uint8_t m[30] = {1};
    /* Allow: the Controller does not start a session itself. */
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.nplain[0], 1);
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    CU_ASSERT(!n.e[1].got_in_session[0]);
    /* Explicitly opened (Reset()), refused with 7106: back to plain. */
    CU_ASSERT_EQUAL(usp_e2e_open(n.e[0].s, n.now, &n.e[0].io), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SESS_CONTEXT_NOT_ALLOWED);
    CU_ASSERT_EQUAL(usp_e2e_next_deadline(n.e[0].s), UINT64_MAX);
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.nplain[0], 2);
    CU_ASSERT_EQUAL(n.e[1].ngot, 2);
    /* Forbid on our side: open is refused. */
    CU_ASSERT_EQUAL(usp_e2e_open(n.e[1].s, n.now, &n.e[1].io), USP_EPERM);
    net_free(&n);
}

/* R-E2E.6b: ending a session sends 7105; both ends drop their state. */
static void test_disconnect_7105(void)
{
    struct net n;
    net_init(&n);
    n.e[1].hook = answer;
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    uint64_t sid = usp_e2e_session_id(n.e[0].s);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_UP);
    size_t idle = usp_e2e_mem(n.e[1].s);
    CU_ASSERT_EQUAL(usp_e2e_end(n.e[0].s, 0, n.now, &n.e[0].io), 0);
    CU_ASSERT_EQUAL(n.ndisc[0], 1);
    CU_ASSERT_EQUAL(n.disc_code[0], USP_ERR_SESS_CONTEXT_TERMINATED);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    flush(&n);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(n.e[1].st.disconnects_rx, 1);
    CU_ASSERT(usp_e2e_mem(n.e[1].s) < idle);
    /* Ending again sends nothing. */
    CU_ASSERT_EQUAL(usp_e2e_end(n.e[0].s, 0, n.now, &n.e[0].io), 0);
    CU_ASSERT_EQUAL(n.ndisc[0], 1);
    /* The Agent (Allow) now sends without a session; the Controller
     * (Require) does not take that. */
    CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.nplain[1], 1);
    CU_ASSERT_EQUAL(n.e[0].st.plain_refused, 1);
    /* The Controller's next Message opens a new session. */
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_NOT_EQUAL(usp_e2e_session_id(n.e[0].s), sid);
    CU_ASSERT_EQUAL(usp_e2e_session_id(n.e[1].s), usp_e2e_session_id(n.e[0].s));
    CU_ASSERT_EQUAL(n.e[1].ngot, 2);
    net_free(&n);
}

/* A peer without SAR answers a segmented Record with 7103; we stop
 * segmenting towards it. */
static void test_disconnect_7103(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 200;
    n.e[1].cfg.no_sar = true;
    net_start(&n);
    uint8_t *b = blob(1000, 8);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 1000), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.ndisc[1], 1);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SEG_NOT_SUPPORTED);
    CU_ASSERT_EQUAL(n.e[1].ngot, 0);
    CU_ASSERT(n.e[1].st.stale > 0); /* the other segments of the dead session */
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 1000), USP_ERANGE);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 100), 0);
    flush(&n);
    CU_ASSERT(got_equal(&n.e[1], 0, b, 100));
    /* The Agent without SAR does not segment either. */
    CU_ASSERT_EQUAL(usp_e2e_send_msg(n.e[1].s, b, 1000, n.now, &n.e[1].io), 0);
    n.e[1].cfg.max_record_size = 200;
    CU_ASSERT_EQUAL(usp_e2e_send_msg(n.e[1].s, b, 1000, n.now, &n.e[1].io), USP_ERANGE);
    free(b);
    net_free(&n);
}

/* TLS12 payload security is not implemented: 7102; configured for TLS we
 * refuse PLAINTEXT sessions with 7101 and cannot start one. */
static void test_disconnect_7102_7101(void)
{
    struct net n;
    net_init(&n);
    net_start(&n);
    uint8_t p[4] = {1, 2, 3, 4};
    inject(&n, 77, 1, 1, 0, 0, 0, p, sizeof p, USP_RECORD__RECORD__PAYLOAD_SECURITY__TLS12);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SECURE_SESS_NOT_SUPPORTED);
    CU_ASSERT_EQUAL(n.e[1].ngot, 0);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);

    n.e[1].cfg.payload_tls = true;
    inject(&n, 78, 1, 1, 0, 0, 0, p, sizeof p, 0);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SECURE_SESS_REQUIRED);
    CU_ASSERT_EQUAL(n.ndisc[1], 2);
    CU_ASSERT_EQUAL(n.e[1].ngot, 0);

    n.e[0].cfg.payload_tls = true;
    CU_ASSERT_EQUAL(send_msg(&n, 0, p, sizeof p), USP_EPERM);
    CU_ASSERT_EQUAL(usp_e2e_open(n.e[0].s, n.now, &n.e[0].io), USP_EPERM);
    n.e[0].cfg.mode = USP_E2E_ALLOW;
    CU_ASSERT_EQUAL(send_msg(&n, 0, p, sizeof p), 0);
    CU_ASSERT_EQUAL(n.nplain[0], 1);
    net_free(&n);
}

/* SessionMode Forbid set while a session is open ends it with 7105. */
static void test_set_cfg_forbid(void)
{
    struct net n;
    net_init(&n);
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    struct usp_e2e_cfg forbid = n.e[1].cfg;
    forbid.mode = USP_E2E_FORBID;
    CU_ASSERT_EQUAL(usp_e2e_set_cfg(n.e[1].s, &forbid, n.now, &n.e[1].io), 0);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SESS_CONTEXT_TERMINATED);
    flush(&n);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(send_msg(&n, 1, m, sizeof m), 0);
    CU_ASSERT_EQUAL(n.nplain[1], 1);
    /* The Controller tries again; the Agent refuses now. */
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.disc_code[1], USP_ERR_SESS_CONTEXT_NOT_ALLOWED);
    CU_ASSERT_EQUAL(usp_e2e_set_cfg(n.e[1].s, NULL, n.now, &n.e[1].io), USP_EINVAL);
    net_free(&n);
}

/* --- Bad input ------------------------------------------------------------- */

static void test_invalid_records(void)
{
    struct net n;
    net_init(&n);
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    uint64_t sid = usp_e2e_session_id(n.e[1].s);
    uint8_t p[3] = {7, 7, 7};

    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    ProtobufCBinaryData pl = {.len = sizeof p, .data = p};
    rec.version = "1.4";
    rec.to_id = "proto::someone-else";
    rec.from_id = CTRL;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT;
    rec.session_context = &sc;
    sc.session_id = sid;
    sc.sequence_id = 2;
    sc.expected_id = 1;
    sc.n_payload = 1;
    sc.payload = &pl;
    struct end *a = &n.e[1];
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, &rec, n.now, &a->io), 0); /* R-E2E.1 */
    rec.to_id = AGENT;
    rec.from_id = "proto::stranger";
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, &rec, n.now, &a->io), 0);
    rec.from_id = NULL;
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, &rec, n.now, &a->io), 0);
    rec.from_id = CTRL;
    CU_ASSERT_EQUAL(a->st.invalid, 3);
    sc.expected_id = 99; /* we never sent that much */
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, &rec, n.now, &a->io), 0);
    CU_ASSERT_EQUAL(a->st.invalid, 4);
    sc.expected_id = 1;
    sc.sequence_id = 0;
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, &rec, n.now, &a->io), 0);
    CU_ASSERT_EQUAL(a->st.invalid, 5);
    rec.session_context = NULL;
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, &rec, n.now, &a->io), 0);
    CU_ASSERT_EQUAL(a->st.invalid, 6);
    rec.session_context = &sc;
    CU_ASSERT_EQUAL(a->ngot, 1);
    CU_ASSERT_EQUAL(usp_e2e_session_id(a->s), sid);
    /* A Record far into an unknown session is not taken for its start. */
    inject(&n, 555, 1000, 1, 0, 0, 0, p, sizeof p, 0);
    CU_ASSERT_EQUAL(usp_e2e_session_id(a->s), sid);
    /* session_id 1 is invalid (R-E2E.3): ignored, the session restarts. */
    inject(&n, 1, 2, 1, 0, 0, 0, p, sizeof p, 0);
    CU_ASSERT_EQUAL(a->st.restarts, 1);
    CU_ASSERT_EQUAL(usp_e2e_status(a->s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(a->ngot, 1);
    /* Arguments. */
    CU_ASSERT_EQUAL(usp_e2e_receive(NULL, &rec, n.now, &a->io), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_receive(a->s, NULL, n.now, &a->io), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_send_msg(a->s, p, 0, n.now, &a->io), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_send_msg(a->s, NULL, 3, n.now, &a->io), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_tick(a->s, n.now, NULL), USP_EINVAL);
    struct usp_e2e_session *s;
    CU_ASSERT_EQUAL(usp_e2e_new(&a->cfg, USP_E2E_AGENT, "", CTRL, 1, NULL, &s), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_new(NULL, USP_E2E_AGENT, AGENT, CTRL, 1, NULL, &s), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_new(&a->cfg, 5, AGENT, CTRL, 1, NULL, &s), USP_EINVAL);
    CU_ASSERT_PTR_NULL(s);
    usp_e2e_free(NULL);
    CU_ASSERT_EQUAL(usp_e2e_mem(NULL), 0);
    CU_ASSERT_EQUAL(usp_e2e_next_deadline(NULL), UINT64_MAX);
    net_free(&n);
}

/* Segmentation that does not hold together fails the session. */
static void test_sar_violations(void)
{
    struct {
        int sar[3], recsar[3];
        int n;
    } cases[] = {
        {{E2E_SAR_INPROCESS}, {E2E_SAR_INPROCESS}, 1},                       /* never began */
        {{E2E_SAR_COMPLETE}, {E2E_SAR_COMPLETE}, 1},                         /* never began */
        {{E2E_SAR_BEGIN}, {E2E_SAR_NONE}, 1},                                /* fields differ */
        {{E2E_SAR_BEGIN, E2E_SAR_NONE}, {E2E_SAR_BEGIN, E2E_SAR_NONE}, 2},   /* interrupted */
        {{E2E_SAR_BEGIN, E2E_SAR_BEGIN}, {E2E_SAR_BEGIN, E2E_SAR_BEGIN}, 2}, /* began twice */
        {{7}, {7}, 1},                                                       /* no such state */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct net n;
        net_init(&n);
        net_start(&n);
        uint8_t p[3] = {7, 7, 7};
        uint64_t sid = 1000 + c;
        for (int k = 0; k < cases[c].n; k++)
            inject(&n, sid, (uint64_t)k + 1, 1, 0, cases[c].sar[k], cases[c].recsar[k], p, sizeof p,
                   0);
        CU_ASSERT_EQUAL(n.e[1].st.restarts, 1);
        CU_ASSERT_EQUAL(n.e[1].ngot, 0);
        CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
        net_free(&n);
    }
    /* A reassembly larger than max_msg_size fails too. */
    struct net n;
    net_init(&n);
    n.e[1].cfg.max_msg_size = 5;
    net_start(&n);
    uint8_t p[3] = {7, 7, 7};
    inject(&n, 999, 1, 1, 0, E2E_SAR_BEGIN, E2E_SAR_BEGIN, p, sizeof p, 0);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 0);
    inject(&n, 999, 2, 1, 0, E2E_SAR_COMPLETE, E2E_SAR_COMPLETE, p, sizeof p, 0);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 1);
    CU_ASSERT_EQUAL(n.e[1].ngot, 0);
    net_free(&n);
}

/* A retransmit_id for a Record we never sent fails the session. */
static void test_retransmit_unknown(void)
{
    struct net n;
    net_init(&n);
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    uint64_t sid = usp_e2e_session_id(n.e[1].s);
    inject(&n, sid, 2, 1, 5, 0, 0, NULL, 0, 0);
    CU_ASSERT_EQUAL(n.e[1].st.restarts, 1);
    CU_ASSERT_EQUAL(n.e[1].st.retransmitted, 0);
    net_free(&n);
}

/* --- Plain Records and callbacks ---------------------------------------- */

static void test_plain(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.mode = USP_E2E_FORBID;
    n.e[1].hook = answer;
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(n.nplain[0], 1);
    CU_ASSERT_EQUAL(n.nplain[1], 1); /* answered in kind */
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    CU_ASSERT(!n.e[1].got_in_session[0]);
    CU_ASSERT_EQUAL(n.e[0].ngot, 1);
    CU_ASSERT_EQUAL(n.e[0].st.plain_tx, 1);
    CU_ASSERT_EQUAL(n.e[1].st.plain_rx, 1);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[0].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    /* Other Record types pass by. */
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__WebSocketConnectRecord ws = USP_RECORD__WEB_SOCKET_CONNECT_RECORD__INIT;
    rec.version = "1.4";
    rec.to_id = AGENT;
    rec.from_id = CTRL;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_WEBSOCKET_CONNECT;
    rec.websocket_connect = &ws;
    CU_ASSERT_EQUAL(usp_e2e_receive(n.e[1].s, &rec, n.now, &n.e[1].io), 0);
    CU_ASSERT_EQUAL(n.e[1].ngot, 1);
    net_free(&n);
}

static int end_in_deliver(struct end *e, const uint8_t *m, size_t n, bool in_session)
{
    return usp_e2e_end(e->s, 0, e->net->now, &e->io);
}

/* The deliver callback ends the session while Records are buffered behind
 * the one it got. */
static void test_end_inside_deliver(void)
{
    struct net n;
    net_init(&n);
    n.e[1].hook = end_in_deliver;
    net_start(&n);
    uint8_t m[30] = {1};
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    n.e[1].hook = NULL;
    CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
    flush(&n);
    n.e[1].hook = end_in_deliver;
    /* Three Messages, the first held back: two buffered. */
    struct pkt *held = NULL;
    for (int i = 0; i < 3; i++) {
        m[1] = (uint8_t)i;
        CU_ASSERT_EQUAL(send_msg(&n, 0, m, sizeof m), 0);
        if (i == 0) {
            held = n.q[0];
            n.q[0] = NULL;
        }
    }
    flush(&n);
    CU_ASSERT_EQUAL(n.e[1].st.buffered, 2);
    int before = n.e[1].ngot;
    n.q[0] = held;
    flush(&n);
    CU_ASSERT_EQUAL(n.e[1].ngot, before + 1); /* the others died with the session */
    CU_ASSERT_EQUAL(usp_e2e_status(n.e[1].s), USP_E2E_DOWN);
    CU_ASSERT_EQUAL(n.e[1].st.ended, 2);
    net_free(&n);
}

/* --- Memory -------------------------------------------------------------- */

static void test_memory(void)
{
    struct net n;
    net_init(&n);
    n.e[0].cfg.max_record_size = 500;
    n.e[1].hook = answer;
    net_start(&n);
    size_t idle = usp_e2e_mem(n.e[0].s);
    CU_ASSERT(idle > 0 && idle <= 160);
    CU_ASSERT_EQUAL(usp_e2e_mem(n.e[1].s), idle);
    uint8_t *b = blob(100000, 9);
    CU_ASSERT_EQUAL(send_msg(&n, 0, b, 100000), 0);
    CU_ASSERT(usp_e2e_mem(n.e[0].s) > 100000);
    run(&n);
    /* The answer acknowledged the Message: only the open session's state
     * is left on both sides. */
    CU_ASSERT(usp_e2e_mem(n.e[0].s) < idle + 256);
    CU_ASSERT(usp_e2e_mem(n.e[1].s) < idle + 256);
    /* A tx buffer limit keeps the newest Message only. */
    struct usp_e2e_cfg small = n.e[0].cfg;
    small.tx_buffer_max = 1000;
    CU_ASSERT_EQUAL(usp_e2e_set_cfg(n.e[0].s, &small, n.now, &n.e[0].io), 0);
    n.e[1].hook = NULL;
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(send_msg(&n, 0, b, 800), 0);
    CU_ASSERT(usp_e2e_mem(n.e[0].s) < idle + 256 + 900);
    CU_ASSERT_EQUAL(n.e[0].st.dropped_msgs, 4);
    run(&n);
    CU_ASSERT_EQUAL(n.e[1].ngot, 6);
    CU_ASSERT_EQUAL(usp_e2e_end(n.e[0].s, 0, n.now, &n.e[0].io), 0);
    CU_ASSERT_EQUAL(usp_e2e_mem(n.e[0].s), idle);
    free(b);
    net_free(&n);
}

/* --- Configuration -------------------------------------------------------- */

static void test_cfg(void)
{
    struct usp_e2e_cfg c;
    usp_e2e_cfg_init(&c);
    CU_ASSERT_EQUAL(c.mode, USP_E2E_ALLOW);
    CU_ASSERT_EQUAL(c.retry_min_wait_s, 5);
    CU_ASSERT_EQUAL(c.retry_multiplier, 2000);
    CU_ASSERT_EQUAL(c.max_retransmit_tries, 0);
    CU_ASSERT_EQUAL(c.max_record_size, 0);
    CU_ASSERT_EQUAL(c.expiration_s, 0);
    char why[200];
    const char *base = "Device.LocalAgent.Controller.1.E2ESession.";
    char p[120];
#define SET(name, v)                                                                               \
    (snprintf(p, sizeof p, "%s%s", base, name), usp_e2e_cfg_set(&c, p, v, why, sizeof why))
    CU_ASSERT_EQUAL(SET("SessionMode", "Require"), 0);
    CU_ASSERT_EQUAL(c.mode, USP_E2E_REQUIRE);
    CU_ASSERT_EQUAL(SET("SessionMode", "Forbid"), 0);
    CU_ASSERT_EQUAL(c.mode, USP_E2E_FORBID);
    CU_ASSERT_EQUAL(SET("SessionMode", "require"), USP_EINVAL);
    CU_ASSERT(strstr(why, "SessionMode") != NULL);
    CU_ASSERT_EQUAL(c.mode, USP_E2E_FORBID);
    CU_ASSERT_EQUAL(usp_e2e_cfg_set(&c, "Enable", "true", why, sizeof why), 0);
    CU_ASSERT_EQUAL(c.mode, USP_E2E_REQUIRE);
    CU_ASSERT_EQUAL(usp_e2e_cfg_set(&c, "Enable", "0", why, sizeof why), 0);
    CU_ASSERT_EQUAL(c.mode, USP_E2E_FORBID);
    CU_ASSERT_EQUAL(usp_e2e_cfg_set(&c, "Enable", "yes", why, sizeof why), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionExpiration", "3600"), 0);
    CU_ASSERT_EQUAL(c.expiration_s, 3600);
    CU_ASSERT_EQUAL(SET("SessionExpiration", "-1"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionExpiration", "4294967296"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionExpiration", ""), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionExpiration", "12a"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionRetryMinimumWaitInterval", "0"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionRetryMinimumWaitInterval", "65535"), 0);
    CU_ASSERT_EQUAL(c.retry_min_wait_s, 65535);
    CU_ASSERT_EQUAL(SET("SessionRetryMinimumWaitInterval", "65536"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionRetryIntervalMultiplier", "999"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("SessionRetryIntervalMultiplier", "1000"), 0);
    CU_ASSERT_EQUAL(c.retry_multiplier, 1000);
    CU_ASSERT_EQUAL(SET("MaxUSPRecordSize", "511"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("MaxUSPRecordSize", "512"), 0);
    CU_ASSERT_EQUAL(c.max_record_size, 512);
    CU_ASSERT_EQUAL(SET("MaxUSPRecordSize", "0"), 0);
    CU_ASSERT_EQUAL(c.max_record_size, 0);
    CU_ASSERT_EQUAL(SET("SegmentedPayloadChunkSize", "1024"), 0);
    CU_ASSERT_EQUAL(c.max_record_size, 1024);
    CU_ASSERT_EQUAL(SET("MaxRetransmitTries", "-1"), 0);
    CU_ASSERT_EQUAL(c.max_retransmit_tries, -1);
    CU_ASSERT_EQUAL(SET("MaxRetransmitTries", "10"), 0);
    CU_ASSERT_EQUAL(SET("MaxRetransmitTries", "11"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("MaxRetransmitTries", "-2"), USP_EINVAL);
    CU_ASSERT_EQUAL(c.max_retransmit_tries, 10);
    CU_ASSERT_EQUAL(SET("PayloadSecurity", "TLS"), 0);
    CU_ASSERT(c.payload_tls);
    CU_ASSERT_EQUAL(SET("PayloadSecurity", "Plaintext"), 0);
    CU_ASSERT(!c.payload_tls);
    CU_ASSERT_EQUAL(SET("PayloadSecurity", "TLS12"), USP_EINVAL);
    CU_ASSERT_EQUAL(SET("Status", "Up"), USP_EPERM);
    CU_ASSERT_EQUAL(SET("CurrentRetryCount", "1"), USP_EPERM);
    CU_ASSERT_EQUAL(SET("Reset()", ""), USP_ENOENT);
    CU_ASSERT(strstr(why, "Reset()") != NULL);
    CU_ASSERT_EQUAL(usp_e2e_cfg_set(&c, NULL, "1", why, sizeof why), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_e2e_cfg_set(&c, "SessionMode", NULL, NULL, 0), USP_EINVAL);
#undef SET
}

void suite_e2e(void)
{
    USP_SUITE(
        "e2e", USP_TEST(test_large_sar), USP_TEST(test_record_size_sweep),
        USP_TEST(test_record_size_too_small), USP_TEST(test_loss_and_reorder),
        USP_TEST(test_reorder_only), USP_TEST(test_duplicates), USP_TEST(test_first_record_lost),
        USP_TEST(test_stale_request), USP_TEST(test_retransmit_exhaustion),
        USP_TEST(test_retransmit_zero), USP_TEST(test_rx_window_overflow),
        USP_TEST(test_deliver_failure), USP_TEST(test_poison_message), USP_TEST(test_expiry),
        USP_TEST(test_expiry_peer_still_active), USP_TEST(test_seq_exhaustion_send),
        USP_TEST(test_seq_exhaustion_receive), USP_TEST(test_simultaneous_open),
        USP_TEST(test_restart_burst), USP_TEST(test_disconnect_7106),
        USP_TEST(test_disconnect_7106_allow), USP_TEST(test_disconnect_7105),
        USP_TEST(test_disconnect_7103), USP_TEST(test_disconnect_7102_7101),
        USP_TEST(test_set_cfg_forbid), USP_TEST(test_invalid_records),
        USP_TEST(test_sar_violations), USP_TEST(test_retransmit_unknown), USP_TEST(test_plain),
        USP_TEST(test_end_inside_deliver), USP_TEST(test_memory), USP_TEST(test_cfg));
}
