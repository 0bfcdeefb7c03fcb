/* libFuzzer target: a Controller and an Agent E2E session back to back,
 * driven by the input. The first bytes choose the configuration (modes,
 * MaxUSPRecordSize, MaxRetransmitTries, expiry, buffer limits, SAR off);
 * the rest is a program: send Messages of chosen sizes from either side,
 * deliver, drop, duplicate, corrupt or reorder Records in flight, feed
 * arbitrary bytes decoded as Records (optionally addressed correctly so
 * they get past R-E2E.1), move the clock (also backwards), tick, end,
 * open, switch configurations.
 *
 * Checked, beyond "no crash, no leak, no UB":
 * - every session Record with a payload is at most the sender's
 *   MaxUSPRecordSize;
 * - a session's memory stays within what its limits allow;
 * - after a tick at `now`, the next deadline is later than `now` (no busy
 *   loop);
 * - while only genuine Records travel (dropped, duplicated, reordered but
 *   never corrupted or forged), every Message delivered is one that was
 *   sent, byte for byte;
 * - delivering what is in flight without the clock moving comes to rest:
 *   no two sessions keep each other busy (answers to Messages are not
 *   answered again, so all traffic that remains would be the sessions'). */
#include <stdlib.h>
#include <string.h>

#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/e2e.h"

#define AGENT   "proto::fz-agent"
#define CTRL    "proto::fz-ctrl"
#define QMAX    512
#define MSG_MAX 3000
#define REPLY   0x80000000u /* in the id of an answer: not answered again */
#define ROUNDS  200         /* delivery rounds at one instant before it is a storm */

struct pkt {
    size_t n;
    uint8_t *b;
};

struct side {
    struct usp_e2e_session *s;
    struct usp_e2e_cfg cfg[2]; /* the second for usp_e2e_set_cfg */
    int cur;
    struct usp_e2e_io io;
    struct pkt q[QMAX]; /* sent by this side: a ring from `head` */
    size_t head, nq;
};

static struct {
    struct side side[2];
    struct usp_arena *arena;   /* Records being fed */
    struct usp_arena *scratch; /* Records being sent (fz_send runs inside a feed) */
    uint64_t now;
    uint32_t next_id;
    bool forged; /* something not sent by a session travelled */
    bool end_in_deliver;
    struct usp_e2e_stats st;
    const uint8_t *in;
    size_t len, pos;
} F;

static unsigned take(size_t nbytes)
{
    unsigned v = 0;
    for (size_t i = 0; i < nbytes; i++)
        v = (v << 8) | (F.pos < F.len ? F.in[F.pos++] : 0);
    return v;
}

static void gen_msg(uint8_t *b, size_t len, uint32_t id)
{
    memcpy(b, &id, 4);
    for (size_t i = 4; i < len; i++)
        b[i] = (uint8_t)(id * 31 + i);
}

static bool msg_ok(const uint8_t *b, size_t len)
{
    if (len < 5 || len > MSG_MAX)
        return false;
    uint32_t id;
    memcpy(&id, b, 4);
    if ((id & ~REPLY) >= F.next_id)
        return false;
    for (size_t i = 4; i < len; i++)
        if (b[i] != (uint8_t)(id * 31 + i))
            return false;
    return true;
}

static int fz_send(void *ctx, const uint8_t *b, size_t n)
{
    struct side *sd = ctx;
    const struct usp_e2e_cfg *c = &sd->cfg[sd->cur];
    if (c->max_record_size && n > c->max_record_size) {
        /* Only a session Record with a payload must fit. */
        usp_arena_reset(F.scratch);
        UspRecord__Record *rec;
        struct usp_decode_err err;
        if (usp_record_decode(F.scratch, b, n, &rec, &err) == 0 &&
            rec->record_type_case == USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT &&
            rec->session_context->n_payload)
            abort();
    }
    if (sd->nq == QMAX)
        return 0; /* the channel is full: lost */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        return USP_ENOMEM;
    if (n)
        memcpy(copy, b, n);
    sd->q[(sd->head + sd->nq++) % QMAX] = (struct pkt){n, copy};
    return 0;
}

static int fz_deliver(void *ctx, const uint8_t *m, size_t n, bool in_session)
{
    struct side *sd = ctx;
    if (!F.forged && !msg_ok(m, n))
        abort();
    /* Answer some Messages from inside the callback, end on others. */
    uint32_t id = 0;
    if (n >= 4)
        memcpy(&id, m, 4);
    if (F.end_in_deliver && id % 5 == 0)
        return usp_e2e_end(sd->s, 0, F.now, &sd->io);
    if (id % 3 == 0 && !(id & REPLY) && F.next_id < REPLY) {
        uint8_t reply[40];
        gen_msg(reply, sizeof reply, F.next_id++ | REPLY);
        if (in_session)
            usp_e2e_send_msg(sd->s, reply, sizeof reply, F.now, &sd->io);
        else
            usp_e2e_send_plain(sd->s, reply, sizeof reply, &sd->io);
    }
    return id % 11 == 10 ? USP_EINVAL : 0;
}

static size_t mem_bound(const struct usp_e2e_cfg *c)
{
    size_t tx = c->tx_buffer_max ? c->tx_buffer_max : USP_E2E_TX_BUFFER_MAX;
    size_t rx = c->rx_buffer_max ? c->rx_buffer_max : USP_E2E_RX_BUFFER_MAX;
    size_t win = c->rx_window ? c->rx_window : USP_E2E_RX_WINDOW;
    size_t msg = c->max_msg_size ? c->max_msg_size : USP_E2E_MAX_MSG;
    /* structs; retransmission and pending buffers (each may exceed its
     * limit by the newest Message); out-of-order Records; reassembly. */
    return 1024 + 2 * (tx + 2 * (MSG_MAX + 128 + MSG_MAX)) + rx + win * 64 + 2 * msg;
}

static void check(struct side *sd)
{
    const struct usp_e2e_cfg *a = &sd->cfg[0], *b = &sd->cfg[1];
    size_t lim = mem_bound(a) > mem_bound(b) ? mem_bound(a) : mem_bound(b);
    if (usp_e2e_mem(sd->s) > lim)
        abort();
}

static void feed(int to, const uint8_t *b, size_t n)
{
    struct side *sd = &F.side[to];
    usp_arena_reset(F.arena);
    UspRecord__Record *rec;
    struct usp_decode_err err;
    usp_record_decode(F.arena, b, n, &rec, &err);
    if (rec)
        usp_e2e_receive(sd->s, rec, F.now, &sd->io);
    check(sd);
}

static void tick_all(void)
{
    for (int i = 0; i < 2; i++) {
        struct side *sd = &F.side[i];
        if (usp_e2e_tick(sd->s, F.now, &sd->io) == 0 && usp_e2e_next_deadline(sd->s) <= F.now)
            abort();
        check(sd);
    }
}

static void pop(int side, size_t k, struct pkt *out)
{
    struct side *sd = &F.side[side];
    *out = sd->q[(sd->head + k) % QMAX];
    if (k == 0) {
        sd->head = (sd->head + 1) % QMAX;
    } else {
        for (size_t i = k; i + 1 < sd->nq; i++)
            sd->q[(sd->head + i) % QMAX] = sd->q[(sd->head + i + 1) % QMAX];
    }
    sd->nq--;
}

static void cfg_from(struct usp_e2e_cfg *c, unsigned bits, unsigned rsize, unsigned exp,
                     enum usp_e2e_mode mode)
{
    static const int32_t tries[] = {-1, 0, 1, 3};
    usp_e2e_cfg_init(c);
    c->mode = mode;
    c->max_retransmit_tries = tries[(bits >> 5) & 3];
    c->drop_on_restart = bits & 0x10;
    c->max_record_size = rsize ? 60 + rsize * 4 : 0;
    c->expiration_s = exp % 8;
    c->retry_min_wait_s = 1 + exp % 3;
    c->retry_multiplier = 1000 + (exp * 37) % 3000;
    c->retransmit_timeout_ms = 100 + (exp % 5) * 300;
    if (bits & 0x80) {
        c->rx_window = 4;
        c->rx_buffer_max = 2048;
        c->tx_buffer_max = 4096;
        c->max_msg_size = 2048; /* below MSG_MAX: reassembly overflows */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&F, 0, sizeof F);
    F.in = data;
    F.len = size;
    F.now = 1000000;
    F.arena = usp_arena_new(4096);
    F.scratch = usp_arena_new(4096);
    if (!F.arena || !F.scratch)
        goto out;
    unsigned bits = take(1), rsize = take(1), exp = take(1);
    static const enum usp_e2e_mode modes[] = {USP_E2E_ALLOW, USP_E2E_REQUIRE, USP_E2E_FORBID,
                                              USP_E2E_ALLOW};
    struct side *c = &F.side[0], *a = &F.side[1];
    cfg_from(&c->cfg[0], bits, rsize, exp, (bits & 4) ? USP_E2E_ALLOW : USP_E2E_REQUIRE);
    cfg_from(&a->cfg[0], bits, rsize, exp >> 3, modes[bits & 3]);
    a->cfg[0].no_sar = bits & 8;
    for (int i = 0; i < 2; i++) {
        F.side[i].cfg[1] = F.side[i].cfg[0];
        F.side[i].cfg[1].mode = (F.side[i].cfg[0].mode + 1) % 3;
        F.side[i].io =
            (struct usp_e2e_io){.send = fz_send, .deliver = fz_deliver, .ctx = &F.side[i]};
    }
    F.end_in_deliver = exp & 0x80;
    if (usp_e2e_new(&c->cfg[0], USP_E2E_CONTROLLER, CTRL, AGENT, bits, &F.st, &c->s) ||
        usp_e2e_new(&a->cfg[0], USP_E2E_AGENT, AGENT, CTRL, exp, &F.st, &a->s))
        goto out;

    uint8_t msg[MSG_MAX];
    for (int steps = 0; F.pos < F.len && steps < 4000; steps++) {
        unsigned op = take(1);
        int who = (op >> 3) & 1;
        struct side *sd = &F.side[who];
        switch (op & 7) {
        case 0: { /* send a Message */
            size_t n = 5 + take(2) % (MSG_MAX - 5);
            gen_msg(msg, n, F.next_id++);
            usp_e2e_send_msg(sd->s, msg, n, F.now, &sd->io);
            check(sd);
            break;
        }
        case 1: { /* the oldest Record in flight: deliver, drop or duplicate */
            if (!sd->nq)
                break;
            struct pkt p;
            size_t k = (op >> 6) == 3 && sd->nq > 1 ? take(1) % sd->nq : 0;
            pop(who, k, &p);
            if ((op >> 4) & 1)
                feed(1 - who, p.b, p.n);
            if ((op >> 5) & 1)
                feed(1 - who, p.b, p.n);
            free(p.b);
            break;
        }
        case 2: { /* everything in flight, both ways, oldest or newest first */
            int rounds = 0;
            for (; rounds < ROUNDS && (F.side[0].nq || F.side[1].nq); rounds++)
                for (int s2 = 0; s2 < 2; s2++)
                    for (size_t k = F.side[s2].nq; k > 0 && F.side[s2].nq; k--) {
                        struct pkt p;
                        pop(s2, (op & 0x10) ? F.side[s2].nq - 1 : 0, &p);
                        feed(1 - s2, p.b, p.n);
                        free(p.b);
                    }
            if (rounds == ROUNDS)
                abort(); /* a storm: the sessions never stop answering each other */
            break;
        }
        case 3: { /* move the clock */
            unsigned d = take(2);
            if ((op & 0x30) == 0x30 && F.now > d)
                F.now -= d % 2000;
            else
                F.now += (uint64_t)d * 10;
            tick_all();
            break;
        }
        case 4: { /* arbitrary bytes as a Record */
            size_t n = take(1);
            if (n > F.len - F.pos)
                n = F.len - F.pos;
            usp_arena_reset(F.arena);
            UspRecord__Record *rec;
            struct usp_decode_err err;
            usp_record_decode(F.arena, F.in + F.pos, n, &rec, &err);
            F.pos += n;
            if (!rec)
                break;
            F.forged = true;
            if (op & 0x10) {
                rec->to_id = (char *)(who ? AGENT : CTRL);
                rec->from_id = (char *)(who ? CTRL : AGENT);
            }
            usp_e2e_receive(sd->s, rec, F.now, &sd->io);
            check(sd);
            break;
        }
        case 5: { /* corrupt a Record in flight */
            if (!sd->nq)
                break;
            struct pkt p;
            pop(who, 0, &p);
            if (p.n) {
                p.b[take(2) % p.n] ^= (uint8_t)take(1);
                F.forged = true;
            }
            feed(1 - who, p.b, p.n);
            free(p.b);
            break;
        }
        case 6: /* session control */
            switch ((op >> 4) & 3) {
            case 0:
                usp_e2e_end(sd->s, 0, F.now, &sd->io);
                break;
            case 1:
                usp_e2e_open(sd->s, F.now, &sd->io);
                break;
            default:
                sd->cur ^= 1;
                usp_e2e_set_cfg(sd->s, &sd->cfg[sd->cur], F.now, &sd->io);
                break;
            }
            check(sd);
            break;
        case 7: { /* run to the next deadline */
            uint64_t d0 = usp_e2e_next_deadline(F.side[0].s);
            uint64_t d1 = usp_e2e_next_deadline(F.side[1].s);
            uint64_t d = d0 < d1 ? d0 : d1;
            if (d != UINT64_MAX && d > F.now && d - F.now < 100000000)
                F.now = d;
            tick_all();
            break;
        }
        }
    }
out:
    for (int i = 0; i < 2; i++) {
        usp_e2e_free(F.side[i].s);
        for (size_t k = 0; k < F.side[i].nq; k++)
            free(F.side[i].q[(F.side[i].head + k) % QMAX].b);
    }
    usp_arena_free(F.arena);
    usp_arena_free(F.scratch);
    return 0;
}
