/* E2E sessions: the Records themselves. Building and sending session,
 * no_session_context and Disconnect Records, cutting a payload so that
 * every Record fits MaxUSPRecordSize (R-E2E SAR, "Originating USP
 * Endpoint"), and the reassembly buffer of the receiving side.
 *
 * Record sizes are measured, not estimated: protobuf-c computes the packed
 * size of the very Record we would send (ids, SAR states, a payload of the
 * candidate length), and the largest payload that fits is found by
 * bisection. Varint lengths grow with the ids, so the plan is made for the
 * highest sequence_id the Message will use. */
#include <stdlib.h>
#include <string.h>

#include "e2e_int.h"
#include "usp/codec.h"

static const char *version_of(const struct usp_e2e_session *s)
{
    return s->cfg->version ? s->cfg->version : USP_VERSION_DEFAULT;
}

static void fill_session(const struct usp_e2e_session *s, UspRecord__Record *rec,
                         UspRecord__SessionContextRecord *sc, ProtobufCBinaryData *pl)
{
    rec->version = (char *)version_of(s);
    rec->to_id = (char *)s->peer;
    rec->from_id = (char *)s->own;
    rec->payload_security = USP_RECORD__RECORD__PAYLOAD_SECURITY__PLAINTEXT;
    rec->record_type_case = USP_RECORD__RECORD__RECORD_TYPE_SESSION_CONTEXT;
    rec->session_context = sc;
    sc->payload = pl;
}

size_t e2e__record_size(const struct usp_e2e_session *s, uint64_t sid, uint64_t seq,
                        uint64_t expected_id, uint64_t retransmit_id, int sar, size_t plen,
                        bool with_payload)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    ProtobufCBinaryData pl = {.len = plen, .data = NULL};
    fill_session(s, &rec, &sc, &pl);
    sc.session_id = sid;
    sc.sequence_id = seq;
    sc.expected_id = expected_id;
    sc.retransmit_id = retransmit_id;
    sc.payload_sar_state = sar;
    sc.payloadrec_sar_state = sar;
    sc.n_payload = with_payload ? 1 : 0;
    return protobuf_c_message_get_packed_size(&rec.base);
}

/* The largest payload (at most `len`) of one segment Record with
 * sequence_id `seq` that fits `max`; 0 when not even one byte does. */
static size_t fit(const struct usp_e2e_session *s, uint64_t sid, uint64_t seq, uint64_t expected,
                  size_t len, size_t max)
{
    size_t lo = 0, hi = len < max ? len : max;
    if (e2e__record_size(s, sid, seq, expected, 0, E2E_SAR_INPROCESS, 1, true) > max)
        return 0;
    /* Invariant: lo fits (0 trivially), everything above hi does not. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (e2e__record_size(s, sid, seq, expected, 0, E2E_SAR_INPROCESS, mid, true) <= max)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int e2e__plan(const struct usp_e2e_session *s, uint64_t sid, uint64_t first_seq,
              uint64_t expected_id, size_t len, uint32_t *chunk, uint32_t *nrec)
{
    size_t max = s->cfg->max_record_size;
    if (len > UINT32_MAX)
        return USP_ERANGE;
    if (max == 0 ||
        e2e__record_size(s, sid, first_seq, expected_id, 0, E2E_SAR_NONE, len, len > 0) <= max) {
        *chunk = (uint32_t)len;
        *nrec = 1;
        return 0;
    }
    if (s->peer_no_sar || s->cfg->no_sar)
        return USP_ERANGE;
    /* First for a bound on the last sequence_id (never more Records than
     * bytes), then again for the last sequence_id that plan needs: the
     * second chunk is at least the first, so it needs no more Records. */
    size_t c = fit(s, sid, add_sat(first_seq, len), expected_id, len, max);
    if (c == 0)
        return USP_ERANGE;
    size_t n = (len + c - 1) / c;
    size_t c2 = fit(s, sid, first_seq + n - 1, expected_id, len, max);
    if (c2 < c)
        c2 = c;
    *chunk = (uint32_t)c2;
    *nrec = (uint32_t)((len + c2 - 1) / c2);
    return 0;
}

/* Packs `rec` and hands it to the MTP. */
static int send_record(struct usp_e2e_session *s, const UspRecord__Record *rec,
                       const struct usp_e2e_io *io)
{
    uint8_t stack[1024];
    size_t n = protobuf_c_message_get_packed_size(&rec->base);
    uint8_t *buf = n <= sizeof stack ? stack : malloc(n);
    if (!buf)
        return USP_ENOMEM;
    protobuf_c_message_pack(&rec->base, buf);
    int rc = io->send(io->ctx, buf, n);
    if (buf != stack)
        free(buf);
    E2E_STAT(s, records_tx);
    if (s->stats)
        s->stats->bytes_tx += n;
    if (rc < 0)
        E2E_STAT(s, send_failed);
    return 0;
}

int e2e__emit(struct usp_e2e_session *s, struct tx_msg *m, uint32_t i, const struct usp_e2e_io *io)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__SessionContextRecord sc = USP_RECORD__SESSION_CONTEXT_RECORD__INIT;
    ProtobufCBinaryData pl = {0};
    fill_session(s, &rec, &sc, &pl);
    sc.session_id = s->act->sid;
    sc.sequence_id = m->first_seq + i;
    sc.expected_id = m->expected_id;
    sc.retransmit_id = m->retransmit_id;
    int sar = E2E_SAR_NONE;
    if (m->nrec > 1)
        sar = i == 0 ? E2E_SAR_BEGIN : i + 1 == m->nrec ? E2E_SAR_COMPLETE : E2E_SAR_INPROCESS;
    sc.payload_sar_state = sar;
    sc.payloadrec_sar_state = sar; /* PLAINTEXT: the two are the same */
    if (m->len > 0) {
        size_t off = (size_t)i * m->chunk;
        pl.data = tx_payload(m) + off;
        pl.len = m->len - off < m->chunk ? m->len - off : m->chunk;
        sc.n_payload = 1;
    }
    return send_record(s, &rec, io);
}

int e2e__emit_plain(struct usp_e2e_session *s, const uint8_t *msg, size_t len,
                    const struct usp_e2e_io *io)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__NoSessionContextRecord nsc = USP_RECORD__NO_SESSION_CONTEXT_RECORD__INIT;
    rec.version = (char *)version_of(s);
    rec.to_id = (char *)s->peer;
    rec.from_id = (char *)s->own;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_NO_SESSION_CONTEXT;
    rec.no_session_context = &nsc;
    nsc.payload.data = (uint8_t *)msg;
    nsc.payload.len = len;
    return send_record(s, &rec, io);
}

int e2e__emit_disconnect(struct usp_e2e_session *s, uint32_t code, const char *version,
                         const struct usp_e2e_io *io)
{
    UspRecord__Record rec = USP_RECORD__RECORD__INIT;
    UspRecord__DisconnectRecord d = USP_RECORD__DISCONNECT_RECORD__INIT;
    rec.version = (char *)(version && usp_version_supported(version) ? version : version_of(s));
    rec.to_id = (char *)s->peer;
    rec.from_id = (char *)s->own;
    rec.record_type_case = USP_RECORD__RECORD__RECORD_TYPE_DISCONNECT;
    rec.disconnect = &d;
    const char *name = usp_err_name(code);
    d.reason = (char *)(name ? name : "");
    d.reason_code = code;
    return send_record(s, &rec, io);
}

int e2e__asm_append(struct usp_e2e_session *s, struct e2e_act *a, const uint8_t *p, size_t n)
{
    size_t max = e2e__max_msg(s->cfg);
    if (n > max || a->asm_len > max - n)
        return USP_ERANGE;
    if (a->asm_len + n > a->asm_cap) {
        size_t cap = a->asm_cap ? a->asm_cap : 256;
        while (cap < a->asm_len + n)
            cap = cap > max / 2 ? max : cap * 2;
        uint8_t *b = realloc(a->asm_buf, cap);
        if (!b)
            return USP_ENOMEM;
        a->asm_buf = b;
        a->asm_cap = cap;
    }
    if (n)
        memcpy(a->asm_buf + a->asm_len, p, n);
    a->asm_len += n;
    return 0;
}

void e2e__asm_clear(struct e2e_act *a)
{
    free(a->asm_buf);
    a->asm_buf = NULL;
    a->asm_len = a->asm_cap = 0;
    a->asm_on = false;
}
