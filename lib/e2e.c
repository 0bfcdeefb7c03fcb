/* E2E Session Context (TR-369 "Exchange of USP Records within an E2E
 * Session Context"): the per-peer state machine. See usp/e2e.h for the
 * behaviour; e2e_sar.c builds the Records and owns segmentation.
 *
 * Structure: a struct usp_e2e_session always exists per pair; `act` (the
 * open session) exists only between opening and leaving a session.
 * Leaving (failure, restart by the peer, expiry, end, Disconnect) frees
 * it; late Records of that session are then ignored instead of being taken
 * for a new session (R-E2E.4) and ping-ponging: our own session ids are
 * recognised by their tag (is_ours), the peer's last few are remembered
 * (dead). Every change of `act` bumps `gen`: code that called out
 * (deliver) checks it before touching the session again, and Records or
 * payloads it still works on were detached from the session beforehand. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_int.h"
#include "usp/codec.h"
#include "usp/notify.h"

/* --- Configuration -------------------------------------------------------- */

uint32_t e2e__rtx_timeout(const struct usp_e2e_cfg *c)
{
    return c->retransmit_timeout_ms ? c->retransmit_timeout_ms : USP_E2E_RETRANSMIT_TIMEOUT_MS;
}

uint32_t e2e__rx_window(const struct usp_e2e_cfg *c)
{
    return c->rx_window ? c->rx_window : USP_E2E_RX_WINDOW;
}

uint32_t e2e__rx_buffer_max(const struct usp_e2e_cfg *c)
{
    return c->rx_buffer_max ? c->rx_buffer_max : USP_E2E_RX_BUFFER_MAX;
}

uint32_t e2e__tx_buffer_max(const struct usp_e2e_cfg *c)
{
    return c->tx_buffer_max ? c->tx_buffer_max : USP_E2E_TX_BUFFER_MAX;
}

uint32_t e2e__max_msg(const struct usp_e2e_cfg *c)
{
    return c->max_msg_size ? c->max_msg_size : USP_E2E_MAX_MSG;
}

void usp_e2e_cfg_init(struct usp_e2e_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->mode = USP_E2E_ALLOW;
    c->retry_min_wait_s = 5;
    c->retry_multiplier = 2000;
}

static void say(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t n, const char *fmt, ...)
{
    if (!why || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

/* xs:unsignedInt / xs:int lexical forms (optional sign, digits only). */
static bool parse_int(const char *v, bool allow_minus, int64_t lo, int64_t hi, int64_t *out)
{
    bool neg = false;
    if (*v == '+' || (allow_minus && *v == '-'))
        neg = *v++ == '-';
    if (!*v)
        return false;
    int64_t x = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return false;
        x = x * 10 + (*v - '0');
        if (x > (int64_t)1 << 40)
            return false;
    }
    if (neg)
        x = -x;
    if (x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

int usp_e2e_cfg_set(struct usp_e2e_cfg *c, const char *param, const char *value, char *why,
                    size_t whylen)
{
    if (!c || !param || !value) {
        say(why, whylen, "no parameter or no value");
        return USP_EINVAL;
    }
    const char *name = strrchr(param, '.');
    name = name ? name + 1 : param;
    int64_t x;
    if (strcmp(name, "SessionMode") == 0) {
        if (strcmp(value, "Require") == 0)
            c->mode = USP_E2E_REQUIRE;
        else if (strcmp(value, "Allow") == 0)
            c->mode = USP_E2E_ALLOW;
        else if (strcmp(value, "Forbid") == 0)
            c->mode = USP_E2E_FORBID;
        else
            goto bad;
        return 0;
    }
    if (strcmp(name, "Enable") == 0) {
        /* Deleted in 2.18; older models: true = sessions used. */
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
            c->mode = USP_E2E_REQUIRE;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
            c->mode = USP_E2E_FORBID;
        else
            goto bad;
        return 0;
    }
    if (strcmp(name, "PayloadSecurity") == 0) {
        if (strcmp(value, "Plaintext") == 0)
            c->payload_tls = false;
        else if (strcmp(value, "TLS") == 0)
            c->payload_tls = true;
        else
            goto bad;
        return 0;
    }
    if (strcmp(name, "SessionExpiration") == 0) {
        if (!parse_int(value, false, 0, UINT32_MAX, &x))
            goto bad;
        c->expiration_s = (uint32_t)x;
        return 0;
    }
    if (strcmp(name, "SessionRetryMinimumWaitInterval") == 0) {
        if (!parse_int(value, false, 1, 65535, &x))
            goto bad;
        c->retry_min_wait_s = (uint32_t)x;
        return 0;
    }
    if (strcmp(name, "SessionRetryIntervalMultiplier") == 0) {
        if (!parse_int(value, false, 1000, 65535, &x))
            goto bad;
        c->retry_multiplier = (uint32_t)x;
        return 0;
    }
    if (strcmp(name, "MaxUSPRecordSize") == 0 || strcmp(name, "SegmentedPayloadChunkSize") == 0) {
        /* SegmentedPayloadChunkSize: its predecessor, deleted in 2.19. */
        if (!parse_int(value, false, 0, UINT32_MAX, &x) || (x != 0 && x < 512))
            goto bad;
        c->max_record_size = (uint32_t)x;
        return 0;
    }
    if (strcmp(name, "MaxRetransmitTries") == 0) {
        if (!parse_int(value, true, -1, 10, &x))
            goto bad;
        c->max_retransmit_tries = (int32_t)x;
        return 0;
    }
    if (strcmp(name, "Status") == 0 || strcmp(name, "CurrentRetryCount") == 0) {
        say(why, whylen, "E2ESession.%s is read-only", name);
        return USP_EPERM;
    }
    say(why, whylen, "E2ESession has no parameter \"%.60s\"", name);
    return USP_ENOENT;
bad:
    say(why, whylen,
        "E2ESession.%s: \"%.60s\" is not a valid value (see TR-181 Device.LocalAgent."
        "Controller.{i}.E2ESession.)",
        name, value);
    return USP_EINVAL;
}

/* --- Small helpers -------------------------------------------------------- */

static void note(const struct usp_e2e_session *s, const struct usp_e2e_io *io, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(const struct usp_e2e_session *s, const struct usp_e2e_io *io, const char *fmt, ...)
{
    if (!io || !io->log)
        return;
    char line[320];
    int n = snprintf(line, sizeof line, "e2e %.80s->%.80s: ", s->own, s->peer);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    io->log(io->ctx, line);
}

static uint64_t splitmix(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *p)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    return h;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static bool is_dead(const struct usp_e2e_session *s, uint64_t sid)
{
    return sid == s->dead[0] || sid == s->dead[1];
}

static void push_dead(struct usp_e2e_session *s, uint64_t sid)
{
    if (s->dead[0] == sid)
        return;
    s->dead[1] = s->dead[0];
    s->dead[0] = sid;
}

/* The session ids we generate carry a keyed tag in their low bits, so
 * that any of our own past sessions is recognised without remembering it:
 * Records of those are never taken for a new session of the peer. Only a
 * few dead ids fit in memory, and a burst of restarts with their late
 * Records echoing back would otherwise have both ends adopting each
 * other's stale sessions (and re-sending their Messages into each) for as
 * long as Records keep coming. A foreign id matches by chance with
 * probability 2^-20; that session is then ignored until the peer restarts
 * it. */
#define SID_TAG_BITS 20
#define SID_TAG_MASK ((1ull << SID_TAG_BITS) - 1)

static uint64_t sid_tag(const struct usp_e2e_session *s, uint64_t hi)
{
    uint64_t st = hi ^ s->key;
    return splitmix(&st) & SID_TAG_MASK;
}

static bool is_ours(const struct usp_e2e_session *s, uint64_t sid)
{
    return (sid & SID_TAG_MASK) == sid_tag(s, sid >> SID_TAG_BITS);
}

/* --- Sent Messages ----------------------------------------------------------- */

static size_t tx_size(const struct tx_msg *m)
{
    return sizeof *m + m->nrec + m->len;
}

static void tx_free_all(struct usp_e2e_session *s, struct tx_msg *m, bool count)
{
    while (m) {
        struct tx_msg *next = m->next;
        if (count && m->len)
            E2E_STAT(s, dropped_msgs);
        free(m);
        m = next;
    }
}

static void drop_pending(struct usp_e2e_session *s)
{
    tx_free_all(s, s->pending, true);
    s->pending = NULL;
    s->pending_bytes = 0;
}

/* The peer has everything before `e` (R-E2E.16). */
static void ack(struct e2e_act *a, uint64_t e)
{
    if (e > a->acked)
        a->acked = e;
    while (a->tx_head && a->tx_head->first_seq + a->tx_head->nrec <= e) {
        struct tx_msg *m = a->tx_head;
        a->tx_head = m->next;
        a->tx_bytes -= tx_size(m);
        free(m);
    }
    if (!a->tx_head)
        a->tx_tail = NULL;
}

/* Keeps the retransmission buffer within tx_buffer_max, oldest first; the
 * newest Message always stays. A request for an evicted Record fails the
 * session, which is the specification's answer to a Record we cannot
 * produce. */
static void tx_trim(struct usp_e2e_session *s, struct e2e_act *a)
{
    size_t max = e2e__tx_buffer_max(s->cfg);
    while (a->tx_bytes > max && a->tx_head != a->tx_tail) {
        struct tx_msg *m = a->tx_head;
        a->tx_head = m->next;
        a->tx_bytes -= tx_size(m);
        if (m->len)
            E2E_STAT(s, dropped_msgs);
        free(m);
    }
}

/* --- Opening and leaving sessions ------------------------------------------ */

static void act_free(struct e2e_act *a)
{
    if (!a)
        return;
    struct tx_msg *m = a->tx_head;
    while (m) {
        struct tx_msg *next = m->next;
        free(m);
        m = next;
    }
    struct rx_rec *r = a->rx_head;
    while (r) {
        struct rx_rec *next = r->next;
        free(r);
        r = next;
    }
    e2e__asm_clear(a);
    free(a);
}

/* Closes the open session. With `keep`, its unacknowledged Messages wait
 * in `pending` for the next session (unless cfg.drop_on_restart);
 * otherwise they are dropped. Retransmit requests are never kept: they
 * name Records of the old session. */
static void leave(struct usp_e2e_session *s, bool keep)
{
    struct e2e_act *a = s->act;
    if (!a)
        return;
    if (!is_ours(s, a->sid))
        push_dead(s, a->sid); /* ours are known by their tag */
    keep = keep && !s->cfg->drop_on_restart;
    struct tx_msg **tail = &s->pending;
    while (*tail)
        tail = &(*tail)->next;
    for (struct tx_msg *m = a->tx_head, *next; m; m = next) {
        next = m->next;
        m->next = NULL;
        if (keep && m->len && m->resends < USP_E2E_MAX_RESENDS) {
            *tail = m;
            tail = &m->next;
            s->pending_bytes += tx_size(m);
        } else {
            if (m->len)
                E2E_STAT(s, dropped_msgs);
            free(m);
        }
    }
    a->tx_head = a->tx_tail = NULL;
    /* The same bound as the retransmission buffer, oldest first. */
    size_t max = e2e__tx_buffer_max(s->cfg);
    while (s->pending && s->pending->next && s->pending_bytes > max) {
        struct tx_msg *m = s->pending;
        s->pending = m->next;
        s->pending_bytes -= tx_size(m);
        E2E_STAT(s, dropped_msgs);
        free(m);
    }
    s->act = NULL;
    s->gen++;
    act_free(a);
}

static uint64_t new_sid(struct usp_e2e_session *s)
{
    for (;;) {
        uint64_t hi = splitmix(&s->rng) >> SID_TAG_BITS;
        uint64_t x = hi << SID_TAG_BITS | sid_tag(s, hi);
        /* R-E2E.3: greater than 1, and not one the peer could confuse. */
        if (x > 1 && !is_dead(s, x) && x != s->expired_sid && (!s->act || x != s->act->sid))
            return x;
    }
}

static int act_new(struct usp_e2e_session *s, uint64_t sid, bool ours, uint64_t now)
{
    struct e2e_act *a = calloc(1, sizeof *a);
    if (!a)
        return USP_ENOMEM;
    a->sid = sid;
    a->tx_next = 1; /* R-E2E.14 */
    a->rx_expected = 1;
    a->ours = ours;
    a->last_activity = now;
    a->opened_at = now;
    s->act = a;
    s->gen++;
    s->retry_at = 0;
    return 0;
}

/* R-E2E.10-11: the next establishment waits a random time from the
 * retry window of the failure count. */
static void backoff(struct usp_e2e_session *s, uint64_t now)
{
    if (s->retry_count < UINT32_MAX)
        s->retry_count++;
    uint64_t lo, hi;
    usp_notify_retry_window(s->cfg->retry_min_wait_s, s->cfg->retry_multiplier, s->retry_count, &lo,
                            &hi);
    uint64_t span = hi - lo + 1;
    uint64_t wait = lo + (span ? splitmix(&s->rng) % span : 0);
    s->retry_at = add_sat(now, wait);
    if (s->retry_at == 0)
        s->retry_at = 1;
}

/* Failure handling (R-E2E.21, .23, .24): the session ends and another is
 * opened after the back-off; unacknowledged Messages go into it. */
static void fail(struct usp_e2e_session *s, uint64_t now, const struct usp_e2e_io *io,
                 const char *why)
{
    E2E_STAT(s, restarts);
    note(s, io, "session %llu failed: %s; a new one after the back-off",
         s->act ? (unsigned long long)s->act->sid : 0ull, why);
    leave(s, true);
    if (s->cfg->mode == USP_E2E_FORBID) {
        drop_pending(s);
        return;
    }
    s->reopen = true;
    backoff(s, now);
}

static int emit_msg(struct usp_e2e_session *s, const uint8_t *msg, size_t len, uint64_t rtx_id,
                    uint8_t resends, uint64_t now, const struct usp_e2e_io *io);

/* Sends the Messages kept from the previous session in the open one. */
static int flush_pending(struct usp_e2e_session *s, uint64_t now, const struct usp_e2e_io *io)
{
    struct tx_msg *m = s->pending;
    s->pending = NULL;
    s->pending_bytes = 0;
    int rc = 0;
    while (m) {
        struct tx_msg *next = m->next;
        if (rc == 0 && s->act) {
            int r = emit_msg(s, tx_payload(m), m->len, 0, (uint8_t)(m->resends + 1), now, io);
            if (r == 0)
                E2E_STAT(s, resent_msgs);
            else
                E2E_STAT(s, dropped_msgs);
            if (r == USP_ENOMEM)
                rc = r;
        } else {
            E2E_STAT(s, dropped_msgs);
        }
        free(m);
        m = next;
    }
    return rc;
}

/* Opens a session of ours: a new session_id, sequence_id 1. The first
 * Record carries the kept Messages, or nothing when `empty_first` (the
 * peer learns of the session at once), or the caller's Message. */
static int open_ours(struct usp_e2e_session *s, uint64_t now, const struct usp_e2e_io *io,
                     bool empty_first)
{
    leave(s, true);
    int rc = act_new(s, new_sid(s), true, now);
    if (rc)
        return rc;
    E2E_STAT(s, opened);
    note(s, io, "opening session %llu", (unsigned long long)s->act->sid);
    if (s->pending)
        return flush_pending(s, now, io);
    if (empty_first)
        return emit_msg(s, NULL, 0, 0, 0, now, io);
    return 0;
}

/* Puts one Message (or a request, len 0 with rtx_id) into the open
 * session and sends its Records. */
static int emit_msg(struct usp_e2e_session *s, const uint8_t *msg, size_t len, uint64_t rtx_id,
                    uint8_t resends, uint64_t now, const struct usp_e2e_io *io)
{
    struct e2e_act *a = s->act;
    uint32_t chunk = 0, nrec = 1;
    if (len) {
        int rc = e2e__plan(s, a->sid, a->tx_next, a->rx_expected, len, &chunk, &nrec);
        if (rc)
            return rc;
    }
    if (a->tx_next > UINT64_MAX - USP_E2E_SEQ_MARGIN - nrec) {
        /* R-E2E.9: never send a sequence_id this close to the end. */
        E2E_STAT(s, seq_exhausted);
        int rc = open_ours(s, now, io, !len);
        if (rc || !len)
            return rc; /* a request names a Record of the old session */
        return emit_msg(s, msg, len, rtx_id, resends, now, io);
    }
    struct tx_msg *m = malloc(sizeof *m + nrec + len);
    if (!m)
        return USP_ENOMEM;
    m->next = NULL;
    m->first_seq = a->tx_next;
    m->expected_id = a->rx_expected; /* R-E2E.17 */
    m->retransmit_id = rtx_id;
    m->resends = resends;
    m->nrec = nrec;
    m->len = (uint32_t)len;
    m->chunk = chunk;
    memset(m->data, 0, nrec);
    if (len)
        memcpy(tx_payload(m), msg, len);
    a->tx_next += nrec; /* R-E2E.15 */
    if (a->tx_tail)
        a->tx_tail->next = m;
    else
        a->tx_head = m;
    a->tx_tail = m;
    a->tx_bytes += tx_size(m);
    a->last_activity = now;
    for (uint32_t i = 0; i < nrec; i++) {
        int rc = e2e__emit(s, m, i, io);
        if (rc)
            return rc;
    }
    if (len) {
        E2E_STAT(s, msgs_tx);
        if (nrec > 1)
            E2E_STAT(s, segmented);
    }
    tx_trim(s, a);
    return 0;
}

/* Records we send back in answer to a session Record we will not take. */
static void refuse(struct usp_e2e_session *s, const char *version, uint32_t code,
                   const struct usp_e2e_io *io, const char *why)
{
    E2E_STAT(s, refusals_sent);
    note(s, io, "session Record refused with Disconnect %u: %s", code, why);
    e2e__emit_disconnect(s, code, version, io);
}

/* --- Lifecycle ------------------------------------------------------------- */

static uint64_t expiry_of(const struct usp_e2e_session *s)
{
    if (!s->act || !s->cfg->expiration_s)
        return UINT64_MAX;
    return add_sat(s->act->last_activity, (uint64_t)s->cfg->expiration_s * 1000);
}

/* R-E2E.7: an idle session ends; the next interaction opens a new one. */
static void maybe_expire(struct usp_e2e_session *s, uint64_t now, const struct usp_e2e_io *io)
{
    if (!s->act || now < expiry_of(s))
        return;
    E2E_STAT(s, expired);
    note(s, io, "session %llu expired (SessionExpiration %us)", (unsigned long long)s->act->sid,
         s->cfg->expiration_s);
    s->expired_sid = s->act->sid;
    leave(s, false);
    drop_pending(s);
}

/* --- Receiving ----------------------------------------------------------- */

/* A retransmit_id from the peer. 0, or 1 when it failed the session. */
static int retransmit(struct usp_e2e_session *s, uint64_t id, uint64_t now,
                      const struct usp_e2e_io *io)
{
    struct e2e_act *a = s->act;
    if (id < a->acked)
        return 0; /* a stale request: the peer has acknowledged that Record since */
    struct tx_msg *m = a->tx_head;
    while (m && !(id >= m->first_seq && id - m->first_seq < m->nrec))
        m = m->next;
    char why[128];
    if (!m) {
        snprintf(why, sizeof why,
                 "retransmit_id %llu names a Record we do not have (next sequence_id %llu)",
                 (unsigned long long)id, (unsigned long long)a->tx_next);
        fail(s, now, io, why);
        return 1;
    }
    uint32_t i = (uint32_t)(id - m->first_seq);
    int32_t max = s->cfg->max_retransmit_tries;
    if (max >= 0 && m->data[i] >= (uint32_t)max) {
        snprintf(why, sizeof why,
                 "Record %llu was requested again after %u retransmissions "
                 "(MaxRetransmitTries %d)",
                 (unsigned long long)id, m->data[i], max);
        fail(s, now, io, why);
        return 1;
    }
    if (m->data[i] < UINT8_MAX)
        m->data[i]++;
    E2E_STAT(s, retransmitted);
    return e2e__emit(s, m, i, io) == USP_ENOMEM ? USP_ENOMEM : 0;
}

/* Hands a whole Message up. 0, 1 when the session changed under it. */
static int deliver(struct usp_e2e_session *s, const uint8_t *p, size_t n, uint64_t now,
                   const struct usp_e2e_io *io)
{
    uint32_t gen = s->gen;
    E2E_STAT(s, msgs_rx);
    int rc = io->deliver(io->ctx, p, n, true);
    if (rc < 0) {
        E2E_STAT(s, deliver_failed);
        if (s->gen == gen)
            fail(s, now, io, "the Message could not be processed");
        return 1;
    }
    return s->gen == gen ? 0 : 1;
}

/* One payload, split in `np` pieces (PLAINTEXT sends one; more are joined). */
struct pieces {
    const ProtobufCBinaryData *v;
    size_t n;
};

static size_t pieces_len(const struct pieces *pc)
{
    size_t t = 0;
    for (size_t i = 0; i < pc->n; i++)
        t += pc->v[i].len;
    return t;
}

static int asm_add(struct usp_e2e_session *s, struct e2e_act *a, const struct pieces *pc)
{
    for (size_t i = 0; i < pc->n; i++) {
        int rc = e2e__asm_append(s, a, pc->v[i].data, pc->v[i].len);
        if (rc)
            return rc;
    }
    return 0;
}

/* Delivers the reassembly buffer, detached from the session first. */
static int asm_deliver(struct usp_e2e_session *s, struct e2e_act *a, uint64_t now,
                       const struct usp_e2e_io *io)
{
    uint8_t *buf = a->asm_buf;
    size_t len = a->asm_len;
    a->asm_buf = NULL;
    a->asm_len = a->asm_cap = 0;
    a->asm_on = false;
    int rc = deliver(s, buf, len, now, io);
    free(buf);
    return rc;
}

static const char *sar_name(int v)
{
    static const char *const n[] = {"NONE", "BEGIN", "INPROCESS", "COMPLETE"};
    return v >= 0 && v <= 3 ? n[v] : "unknown";
}

/* R-E2E.20 3: the Record the session expected. 0 to go on with the next
 * buffered one, 1 when the session ended or changed, or USP_ENOMEM. */
static int process_one(struct usp_e2e_session *s, uint64_t seq, uint64_t expected, uint64_t rtx_id,
                       int sar, int recsar, const struct pieces *pc, uint64_t now,
                       const struct usp_e2e_io *io)
{
    struct e2e_act *a = s->act;
    a->rx_expected = seq < UINT64_MAX ? seq + 1 : seq;
    a->heard = true;
    ack(a, expected);
    if (rtx_id) {
        int rc = retransmit(s, rtx_id, now, io);
        if (rc)
            return rc;
    }
    char why[160];
    if (sar != recsar || sar < 0 || sar > E2E_SAR_COMPLETE) {
        snprintf(why, sizeof why,
                 "Record %llu: payload_sar_state %s and payloadrec_sar_state %s (PLAINTEXT "
                 "needs the same valid state in both)",
                 (unsigned long long)seq, sar_name(sar), sar_name(recsar));
        fail(s, now, io, why);
        return 1;
    }
    if (sar != E2E_SAR_NONE && s->cfg->no_sar) {
        refuse(s, NULL, USP_ERR_SEG_NOT_SUPPORTED, io, "segmented Record, SAR not supported");
        leave(s, false);
        drop_pending(s);
        return 1;
    }
    size_t total = pieces_len(pc);
    if (sar == E2E_SAR_NONE && total == 0)
        return 0; /* an opening Record or a bare retransmit request */
    bool in_asm = a->asm_on;
    if ((sar == E2E_SAR_NONE || sar == E2E_SAR_BEGIN) && in_asm) {
        snprintf(why, sizeof why,
                 "Record %llu (%s) arrived while a segmented payload was "
                 "incomplete",
                 (unsigned long long)seq, sar_name(sar));
        fail(s, now, io, why);
        return 1;
    }
    if ((sar == E2E_SAR_INPROCESS || sar == E2E_SAR_COMPLETE) && !in_asm) {
        snprintf(why, sizeof why,
                 "Record %llu (%s) continues a segmented payload that never "
                 "began",
                 (unsigned long long)seq, sar_name(sar));
        fail(s, now, io, why);
        return 1;
    }
    if (sar == E2E_SAR_NONE) {
        for (size_t i = 0; i < pc->n; i++)
            if (pc->v[i].len == total) /* the usual case: one piece, no copy */
                return deliver(s, pc->v[i].data, total, now, io);
    }
    int rc = asm_add(s, a, pc);
    if (rc) {
        /* R-E2E.21: a Record we cannot buffer fails the session. */
        if (rc == USP_ERANGE)
            snprintf(why, sizeof why, "reassembled payload would exceed %u bytes",
                     e2e__max_msg(s->cfg));
        else
            snprintf(why, sizeof why, "no memory to reassemble Record %llu",
                     (unsigned long long)seq);
        fail(s, now, io, why);
        return rc == USP_ERANGE ? 1 : rc;
    }
    a->asm_on = true;
    if (sar == E2E_SAR_NONE || sar == E2E_SAR_COMPLETE) {
        if (sar == E2E_SAR_COMPLETE)
            E2E_STAT(s, reassembled);
        return asm_deliver(s, a, now, io);
    }
    return 0;
}

static int process(struct usp_e2e_session *s, uint64_t seq, uint64_t expected, uint64_t rtx_id,
                   int sar, int recsar, const struct pieces *pc, uint64_t now,
                   const struct usp_e2e_io *io)
{
    int rc = process_one(s, seq, expected, rtx_id, sar, recsar, pc, now, io);
    if (rc == 0)
        s->retry_count = 0; /* R-E2E.12: a Record received (and processed) */
    return rc;
}

static bool rx_has(const struct e2e_act *a, uint64_t seq)
{
    for (const struct rx_rec *r = a->rx_head; r && r->seq <= seq; r = r->next)
        if (r->seq == seq)
            return true;
    return false;
}

/* R-E2E.20 1: a Record ahead of expected_id waits in the buffer. */
static int buffer_ahead(struct usp_e2e_session *s, const UspRecord__SessionContextRecord *sc,
                        const struct pieces *pc, uint64_t now, const struct usp_e2e_io *io)
{
    struct e2e_act *a = s->act;
    size_t len = pieces_len(pc);
    char why[128];
    if (a->rx_count >= e2e__rx_window(s->cfg) ||
        a->rx_bytes + len + sizeof(struct rx_rec) > e2e__rx_buffer_max(s->cfg)) {
        snprintf(why, sizeof why,
                 "Record %llu cannot be buffered (%u Records, %zu bytes "
                 "waiting for %llu)",
                 (unsigned long long)sc->sequence_id, a->rx_count, a->rx_bytes,
                 (unsigned long long)a->rx_expected);
        fail(s, now, io, why);
        return 0;
    }
    struct rx_rec *r = malloc(sizeof *r + len);
    if (!r) {
        fail(s, now, io, "no memory to buffer a Record");
        return USP_ENOMEM;
    }
    r->seq = sc->sequence_id;
    r->expected_id = sc->expected_id;
    r->len = (uint32_t)len;
    r->sar = (uint8_t)(sc->payload_sar_state & 0xff);
    r->recsar = (uint8_t)(sc->payloadrec_sar_state & 0xff);
    if ((unsigned)sc->payload_sar_state > 3)
        r->sar = 0xff; /* keeps it invalid */
    if ((unsigned)sc->payloadrec_sar_state > 3)
        r->recsar = 0xfe;
    size_t off = 0;
    for (size_t i = 0; i < pc->n; i++) {
        if (pc->v[i].len)
            memcpy(r->data + off, pc->v[i].data, pc->v[i].len);
        off += pc->v[i].len;
    }
    struct rx_rec **pp = &a->rx_head;
    while (*pp && (*pp)->seq < r->seq)
        pp = &(*pp)->next;
    r->next = *pp;
    *pp = r;
    a->rx_count++;
    a->rx_bytes += sizeof *r + len;
    E2E_STAT(s, buffered);
    if (!a->gap_at)
        a->gap_at = add_sat(now, e2e__rtx_timeout(s->cfg));
    return 0;
}

/* A Record of the open session. */
static int in_session(struct usp_e2e_session *s, const UspRecord__SessionContextRecord *sc,
                      uint64_t now, const struct usp_e2e_io *io)
{
    struct e2e_act *a = s->act;
    uint64_t seq = sc->sequence_id;
    struct pieces pc = {sc->payload, sc->payload ? sc->n_payload : 0};
    E2E_STAT(s, records_rx);
    if (sc->expected_id > a->tx_next) {
        E2E_STAT(s, invalid);
        note(s, io, "Record %llu ignored: expected_id %llu is beyond our next sequence_id %llu",
             (unsigned long long)seq, (unsigned long long)sc->expected_id,
             (unsigned long long)a->tx_next);
        return 0;
    }
    if (pieces_len(&pc) > e2e__max_msg(s->cfg)) {
        E2E_STAT(s, invalid);
        note(s, io, "Record %llu ignored: payload larger than %u bytes", (unsigned long long)seq,
             e2e__max_msg(s->cfg));
        return 0;
    }
    if (seq < a->rx_expected || rx_has(a, seq)) {
        E2E_STAT(s, duplicates); /* R-E2E.20 2, R-E2E.25 */
        return 0;
    }
    a->last_activity = now;
    if (seq > a->rx_expected) {
        /* retransmit_id is honoured at once, not in turn: a request stuck
         * behind a gap of its own would wait for a Record that only the
         * request can bring when both directions lose Records at once. */
        ack(a, sc->expected_id);
        if (sc->retransmit_id) {
            int rc = retransmit(s, sc->retransmit_id, now, io);
            if (rc)
                return rc < 0 ? rc : 0;
        }
        return buffer_ahead(s, sc, &pc, now, io);
    }

    uint32_t gen = s->gen;
    uint64_t before = a->rx_expected;
    int rc = process(s, seq, sc->expected_id, sc->retransmit_id, (int)sc->payload_sar_state,
                     (int)sc->payloadrec_sar_state, &pc, now, io);
    uint64_t last = seq;
    while (rc == 0 && s->gen == gen && a->rx_head && a->rx_head->seq == a->rx_expected) {
        struct rx_rec *r = a->rx_head;
        a->rx_head = r->next;
        a->rx_count--;
        a->rx_bytes -= sizeof *r + r->len;
        ProtobufCBinaryData one = {.len = r->len, .data = r->data};
        struct pieces rpc = {&one, r->len ? 1 : 0};
        last = r->seq;
        rc = process(s, r->seq, r->expected_id, 0, r->sar, r->recsar, &rpc, now, io);
        free(r);
    }
    if (rc != 0 || s->gen != gen)
        return rc < 0 ? rc : 0; /* `a` may be gone */
    if (a->rx_head || a->asm_on) {
        if (a->rx_expected != before || !a->gap_at) {
            a->gap_at = add_sat(now, e2e__rtx_timeout(s->cfg));
            a->gap_tries = 0;
        }
    } else {
        a->gap_at = 0;
        a->gap_tries = 0;
    }
    if (last > UINT64_MAX - USP_E2E_SEQ_MARGIN) {
        /* R-E2E.8 */
        E2E_STAT(s, seq_exhausted);
        note(s, io, "sequence_id %llu is near the end: new session", (unsigned long long)last);
        return open_ours(s, now, io, true);
    }
    return 0;
}

static int rx_session(struct usp_e2e_session *s, const UspRecord__Record *rec, uint64_t now,
                      const struct usp_e2e_io *io)
{
    const UspRecord__SessionContextRecord *sc = rec->session_context;
    if (!sc) {
        E2E_STAT(s, invalid);
        return 0;
    }
    maybe_expire(s, now, io);
    if (s->cfg->mode == USP_E2E_FORBID) {
        refuse(s, rec->version, USP_ERR_SESS_CONTEXT_NOT_ALLOWED, io,
               "SessionMode is Forbid (R-E2E.6a)");
        return 0;
    }
    if (rec->payload_security != USP_RECORD__RECORD__PAYLOAD_SECURITY__PLAINTEXT) {
        refuse(s, rec->version, USP_ERR_SECURE_SESS_NOT_SUPPORTED, io,
               "payload_security TLS12 is not supported");
        if (s->act && s->act->sid == sc->session_id) {
            leave(s, false); /* R-E2E.19: the session is over */
            drop_pending(s);
        }
        return 0;
    }
    if (s->cfg->payload_tls) {
        refuse(s, rec->version, USP_ERR_SECURE_SESS_REQUIRED, io, "PayloadSecurity is TLS");
        return 0;
    }
    uint64_t sid = sc->session_id, seq = sc->sequence_id;
    if (sid <= 1 || seq == 0) {
        E2E_STAT(s, invalid);
        note(s, io, "Record ignored: %s %llu (R-E2E.3/14)", sid <= 1 ? "session_id" : "sequence_id",
             (unsigned long long)(sid <= 1 ? sid : seq));
        if (sid <= 1 && s->act)
            fail(s, now, io, "invalid session_id (R-E2E.24)");
        return 0;
    }
    struct e2e_act *a = s->act;
    if (a && sid == a->sid)
        return in_session(s, sc, now, io);
    if (!a && sid == s->expired_sid) {
        /* R-E2E.7: the peer still uses the session that expired here. */
        E2E_STAT(s, stale);
        s->expired_sid = 0;
        return open_ours(s, now, io, true);
    }
    if (is_ours(s, sid)) {
        /* One of our past sessions: the peer missed the start of the
         * current one, which it gets again (one Record per stale one). */
        E2E_STAT(s, stale);
        if (a && a->ours && !a->heard && a->tx_head && a->tx_head->first_seq == 1)
            return e2e__emit(s, a->tx_head, 0, io);
        return 0;
    }
    if (is_dead(s, sid)) {
        E2E_STAT(s, stale);
        return 0;
    }
    if (seq > (uint64_t)e2e__rx_window(s->cfg) + 1) {
        /* Too far in to be the start of a session we could follow. */
        E2E_STAT(s, stale);
        note(s, io, "Record %llu of unknown session %llu ignored", (unsigned long long)seq,
             (unsigned long long)sid);
        return 0;
    }
    if (sc->expected_id > 1) {
        /* The peer has had Records from us in a session we do not know
         * (one we left and forgot): we cannot follow it. R-E2E.24: ignore
         * the Record and restart, once per back-off. */
        E2E_STAT(s, stale);
        if (a || !s->retry_at) {
            char why[96];
            snprintf(why, sizeof why, "the peer's session %llu has a history we do not know",
                     (unsigned long long)sid);
            fail(s, now, io, why);
        }
        return 0;
    }
    if (a && a->ours && !a->heard && s->role == USP_E2E_CONTROLLER && seq == 1 &&
        now >= a->opened_at && now - a->opened_at < e2e__rtx_timeout(s->cfg)) {
        /* Both ends opened a session at once (ours is younger than a round
         * trip should take): the Controller's wins. Send our first Record
         * again in case it was lost on the way. An older session of ours
         * that never heard back yields, like any other (R-E2E.6). */
        push_dead(s, sid);
        E2E_STAT(s, stale);
        note(s, io, "session %llu of the Agent ignored: ours (%llu) is being opened",
             (unsigned long long)sid, (unsigned long long)a->sid);
        if (a->tx_head && a->tx_head->first_seq == 1)
            return e2e__emit(s, a->tx_head, 0, io);
        return 0;
    }
    /* R-E2E.4/6: the peer starts a (new) session. */
    leave(s, true);
    int rc = act_new(s, sid, false, now);
    if (rc)
        return rc;
    E2E_STAT(s, accepted);
    note(s, io, "peer opened session %llu", (unsigned long long)sid);
    s->peer_refused = false;
    s->reopen = true;
    rc = flush_pending(s, now, io);
    if (rc || !s->act || s->act->sid != sid)
        return rc;
    return in_session(s, sc, now, io);
}

static int rx_plain(struct usp_e2e_session *s, const UspRecord__Record *rec,
                    const struct usp_e2e_io *io)
{
    const UspRecord__NoSessionContextRecord *nsc = rec->no_session_context;
    if (!nsc || !nsc->payload.len || !nsc->payload.data) {
        E2E_STAT(s, invalid);
        note(s, io, "no_session_context Record without payload ignored (R-E2E.26)");
        return 0;
    }
    if (s->cfg->mode == USP_E2E_REQUIRE) {
        E2E_STAT(s, plain_refused);
        note(s, io, "no_session_context Record dropped: SessionMode is Require");
        return 0;
    }
    E2E_STAT(s, plain_rx);
    if (io->deliver(io->ctx, nsc->payload.data, nsc->payload.len, false) < 0)
        E2E_STAT(s, deliver_failed);
    return 0;
}

/* R-MTP.7: the peer is going; its E2E state goes too. */
static int rx_disconnect(struct usp_e2e_session *s, const UspRecord__Record *rec, uint64_t now,
                         const struct usp_e2e_io *io)
{
    uint32_t code = rec->disconnect ? rec->disconnect->reason_code : 0;
    E2E_STAT(s, disconnects_rx);
    note(s, io, "peer sent Disconnect %u (%.80s)", code,
         rec->disconnect && rec->disconnect->reason ? rec->disconnect->reason : "");
    leave(s, false);
    drop_pending(s);
    s->reopen = false;
    switch (code) {
    case USP_ERR_SESS_CONTEXT_NOT_ALLOWED:
    case USP_ERR_SECURE_SESS_REQUIRED:
    case USP_ERR_SECURE_SESS_NOT_SUPPORTED:
        /* The peer will not take our sessions: SessionMode Allow goes on
         * without; Require retries establishment after the back-off. */
        s->peer_refused = true;
        if (s->cfg->mode == USP_E2E_REQUIRE)
            backoff(s, now);
        break;
    case USP_ERR_SEG_NOT_SUPPORTED:
        s->peer_no_sar = true;
        break;
    default:
        break;
    }
    return 0;
}

/* --- Public API ---------------------------------------------------------- */

int usp_e2e_new(const struct usp_e2e_cfg *cfg, enum usp_e2e_role role, const char *own_eid,
                const char *peer_eid, uint64_t seed, struct usp_e2e_stats *stats,
                struct usp_e2e_session **out)
{
    if (!out)
        return USP_EINVAL;
    *out = NULL;
    if (!cfg || !own_eid || !own_eid[0] || !peer_eid || !peer_eid[0] ||
        (role != USP_E2E_AGENT && role != USP_E2E_CONTROLLER))
        return USP_EINVAL;
    struct usp_e2e_session *s = calloc(1, sizeof *s);
    if (!s)
        return USP_ENOMEM;
    s->cfg = cfg;
    s->stats = stats;
    s->own = own_eid;
    s->peer = peer_eid;
    s->role = (uint8_t)role;
    s->rng = seed ^ fnv1a(own_eid) ^ (fnv1a(peer_eid) * 31);
    s->key = splitmix(&s->rng);
    *out = s;
    return 0;
}

void usp_e2e_free(struct usp_e2e_session *s)
{
    if (!s)
        return;
    act_free(s->act);
    tx_free_all(s, s->pending, false);
    free(s);
}

int usp_e2e_set_cfg(struct usp_e2e_session *s, const struct usp_e2e_cfg *cfg, uint64_t now_ms,
                    const struct usp_e2e_io *io)
{
    if (!s || !cfg || !io || !io->send)
        return USP_EINVAL;
    s->cfg = cfg;
    if (cfg->mode == USP_E2E_FORBID) {
        int rc = usp_e2e_end(s, 0, now_ms, io);
        drop_pending(s);
        s->retry_at = 0;
        return rc;
    }
    return 0;
}

int usp_e2e_send_plain(struct usp_e2e_session *s, const uint8_t *msg, size_t len,
                       const struct usp_e2e_io *io)
{
    if (!s || !msg || !len || !io || !io->send)
        return USP_EINVAL;
    E2E_STAT(s, plain_tx);
    return e2e__emit_plain(s, msg, len, io);
}

int usp_e2e_send_msg(struct usp_e2e_session *s, const uint8_t *msg, size_t len, uint64_t now_ms,
                     const struct usp_e2e_io *io)
{
    if (!s || !msg || !len || !io || !io->send)
        return USP_EINVAL;
    if (len > UINT32_MAX)
        return USP_ERANGE;
    maybe_expire(s, now_ms, io);
    if (!s->act) {
        const struct usp_e2e_cfg *c = s->cfg;
        bool backing_off = s->retry_at && now_ms < s->retry_at;
        switch (c->mode) {
        case USP_E2E_FORBID:
            return usp_e2e_send_plain(s, msg, len, io);
        case USP_E2E_ALLOW:
            /* Never first; but a session we had goes on (R-E2E.7). */
            if (!s->reopen || s->peer_refused || c->payload_tls || backing_off)
                return usp_e2e_send_plain(s, msg, len, io);
            break;
        case USP_E2E_REQUIRE:
            if (c->payload_tls || backing_off) {
                note(s, io, "Message not sent: %s",
                     c->payload_tls ? "PayloadSecurity TLS is not supported"
                                    : "session establishment is backing off");
                return USP_EPERM;
            }
            break;
        }
        int rc = open_ours(s, now_ms, io, false);
        if (rc)
            return rc;
        if (!s->act)
            return USP_ENOMEM;
    }
    return emit_msg(s, msg, len, 0, 0, now_ms, io);
}

int usp_e2e_receive(struct usp_e2e_session *s, const UspRecord__Record *rec, uint64_t now_ms,
                    const struct usp_e2e_io *io)
{
    if (!s || !rec || !io || !io->send || !io->deliver)
        return USP_EINVAL;
    if (!rec->to_id || strcmp(rec->to_id, s->own) != 0) {
        E2E_STAT(s, invalid);
        note(s, io, "Record ignored: to_id \"%.80s\" is not ours (R-E2E.1)",
             rec->to_id ? rec->to_id : "");
        return 0;
    }
    if (!rec->from_id || strcmp(rec->from_id, s->peer) != 0) {
        E2E_STAT(s, invalid);
        note(s, io, "Record ignored: from_id \"%.80s\" is not this session's peer",
             rec->from_id ? rec->from_id : "");
        return 0;
    }
    switch (rec->record_type_case) {
    case USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT:
        return rx_session(s, rec, now_ms, io);
    case USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT:
        return rx_plain(s, rec, io);
    case USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT:
        return rx_disconnect(s, rec, now_ms, io);
    default:
        return 0; /* Connect Records belong to the MTP */
    }
}

uint64_t usp_e2e_next_deadline(const struct usp_e2e_session *s)
{
    if (!s)
        return UINT64_MAX;
    if (!s->act)
        return s->retry_at ? s->retry_at : UINT64_MAX;
    uint64_t t = expiry_of(s);
    if (s->act->gap_at && s->act->gap_at < t)
        t = s->act->gap_at;
    return t;
}

/* A gap that stayed open: ask for the missing Record, or give up. */
static int gap_due(struct usp_e2e_session *s, uint64_t now, const struct usp_e2e_io *io)
{
    struct e2e_act *a = s->act;
    if (!a->rx_head && !a->asm_on) {
        a->gap_at = 0;
        return 0;
    }
    int32_t max = s->cfg->max_retransmit_tries;
    /* One request more than the peer may answer, so that its own limit
     * decides when both ends use the same value. */
    if (max >= 0 && a->gap_tries > (uint32_t)max) {
        char why[128];
        snprintf(why, sizeof why, "sequence_id %llu still missing after %u retransmit requests",
                 (unsigned long long)a->rx_expected, a->gap_tries);
        fail(s, now, io, why);
        return 0;
    }
    a->gap_tries++;
    a->gap_at = add_sat(now, e2e__rtx_timeout(s->cfg));
    E2E_STAT(s, retransmit_reqs);
    return emit_msg(s, NULL, 0, a->rx_expected, 0, now, io);
}

int usp_e2e_tick(struct usp_e2e_session *s, uint64_t now_ms, const struct usp_e2e_io *io)
{
    if (!s || !io || !io->send)
        return USP_EINVAL;
    maybe_expire(s, now_ms, io);
    if (s->act && s->act->gap_at && now_ms >= s->act->gap_at) {
        int rc = gap_due(s, now_ms, io);
        if (rc)
            return rc;
    }
    if (!s->act && s->retry_at && now_ms >= s->retry_at) {
        s->retry_at = 0;
        const struct usp_e2e_cfg *c = s->cfg;
        if (c->payload_tls || c->mode == USP_E2E_FORBID)
            return 0;
        /* After a failure the peer may still think the old session is up:
         * a new one tells it otherwise (and carries the kept Messages). */
        if (c->mode == USP_E2E_REQUIRE || s->reopen)
            return open_ours(s, now_ms, io, true);
    }
    return 0;
}

int usp_e2e_open(struct usp_e2e_session *s, uint64_t now_ms, const struct usp_e2e_io *io)
{
    if (!s || !io || !io->send)
        return USP_EINVAL;
    if (s->cfg->mode == USP_E2E_FORBID || s->cfg->payload_tls)
        return USP_EPERM;
    s->reopen = true;
    return open_ours(s, now_ms, io, true);
}

int usp_e2e_end(struct usp_e2e_session *s, uint32_t reason_code, uint64_t now_ms,
                const struct usp_e2e_io *io)
{
    if (!s || !io || !io->send)
        return USP_EINVAL;
    s->reopen = false;
    s->retry_at = 0;
    drop_pending(s);
    if (!s->act)
        return 0;
    E2E_STAT(s, ended);
    note(s, io, "ending session %llu", (unsigned long long)s->act->sid);
    leave(s, false);
    return e2e__emit_disconnect(
        s, reason_code ? reason_code : (uint32_t)USP_ERR_SESS_CONTEXT_TERMINATED, NULL, io);
}

enum usp_e2e_status usp_e2e_status(const struct usp_e2e_session *s)
{
    if (!s || !s->act)
        return USP_E2E_DOWN;
    return s->act->ours && !s->act->heard ? USP_E2E_NEGOTIATING : USP_E2E_UP;
}

uint64_t usp_e2e_session_id(const struct usp_e2e_session *s)
{
    return s && s->act ? s->act->sid : 0;
}

uint32_t usp_e2e_retry_count(const struct usp_e2e_session *s)
{
    return s ? s->retry_count : 0;
}

size_t usp_e2e_mem(const struct usp_e2e_session *s)
{
    if (!s)
        return 0;
    size_t n = sizeof *s + s->pending_bytes;
    if (s->act)
        n += sizeof *s->act + s->act->tx_bytes + s->act->rx_bytes + s->act->asm_cap;
    return n;
}

void e2e__force_seq(struct usp_e2e_session *s, uint64_t tx_next, uint64_t rx_expected)
{
    if (!s || !s->act)
        return;
    s->act->tx_next = tx_next;
    s->act->rx_expected = rx_expected;
    if (s->act->acked > tx_next)
        s->act->acked = tx_next;
}
