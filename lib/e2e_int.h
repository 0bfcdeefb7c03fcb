/* E2E sessions, private: the state of a session and what e2e.c (the state
 * machine) and e2e_sar.c (Record building, segmentation, reassembly)
 * share. */
#ifndef USP_E2E_INT_H
#define USP_E2E_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/e2e.h"

#define E2E_SAR_NONE      USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__NONE
#define E2E_SAR_BEGIN     USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__BEGIN
#define E2E_SAR_INPROCESS USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__INPROCESS
#define E2E_SAR_COMPLETE  USP_RECORD__SESSION_CONTEXT_RECORD__PAYLOAD_SARSTATE__COMPLETE

/* One Message we sent (or one retransmit request, len 0), kept until the
 * peer's expected_id passes its last Record. Its Records are rebuilt on
 * demand: the same bytes every time, since everything that goes into them
 * is stored here. */
struct tx_msg {
    struct tx_msg *next;
    uint64_t first_seq;     /* sequence_id of its first Record */
    uint64_t expected_id;   /* as sent */
    uint64_t retransmit_id; /* for a request Record; 0 otherwise */
    uint8_t resends;        /* sessions it was carried into after the first */
    uint32_t nrec;          /* Records it took */
    uint32_t len;           /* payload bytes */
    uint32_t chunk;         /* payload bytes per Record (the last may hold fewer) */
    uint8_t data[];         /* tries[nrec] (retransmissions per Record), then the payload */
};

static inline uint8_t *tx_payload(struct tx_msg *m)
{
    return m->data + m->nrec;
}

/* A Record received ahead of expected_id, waiting for its turn. */
struct rx_rec {
    struct rx_rec *next;
    uint64_t seq;
    uint64_t expected_id;
    uint32_t len;
    uint8_t sar, recsar;
    uint8_t data[];
};

/* An open session; allocated only while one is. */
struct e2e_act {
    uint64_t sid;
    uint64_t tx_next;     /* sequence_id of our next Record */
    uint64_t rx_expected; /* the peer's next sequence_id */
    uint64_t acked;       /* the highest expected_id the peer sent */
    uint64_t last_activity;
    uint64_t opened_at;
    uint64_t gap_at;    /* when to ask for rx_expected again; 0: no gap */
    uint32_t gap_tries; /* requests sent for rx_expected */
    bool ours;          /* we opened it */
    bool heard;         /* a Record of it came from the peer */
    struct tx_msg *tx_head, *tx_tail;
    size_t tx_bytes;
    struct rx_rec *rx_head; /* by sequence_id */
    uint32_t rx_count;
    size_t rx_bytes;
    bool asm_on; /* a segmented payload is being reassembled */
    uint8_t *asm_buf;
    size_t asm_len, asm_cap;
};

struct usp_e2e_session {
    const struct usp_e2e_cfg *cfg;
    struct usp_e2e_stats *stats; /* NULL: not counted */
    const char *own, *peer;
    struct e2e_act *act;    /* NULL: no session open */
    struct tx_msg *pending; /* unacknowledged Messages for the next session */
    size_t pending_bytes;
    uint64_t rng;
    uint64_t key;         /* tags our session ids (e2e.c, is_ours) */
    uint64_t retry_at;    /* back-off: no session of ours before this; 0: none */
    uint64_t dead[2];     /* the peer's session ids we left or refused, newest first */
    uint64_t expired_sid; /* the session SessionExpiration ended (R-E2E.7) */
    uint32_t retry_count; /* CurrentRetryCount */
    uint32_t gen;         /* changes with `act`, so code after a callback can tell */
    uint8_t role;
    bool reopen;       /* SessionMode Allow: a session existed, keep one going */
    bool peer_refused; /* the peer answered 7101/7106 */
    bool peer_no_sar;  /* the peer answered 7103 */
};

#define E2E_STAT(s, f)                                                                             \
    do {                                                                                           \
        if ((s)->stats)                                                                            \
            (s)->stats->f++;                                                                       \
    } while (0)

/* Limits from the cfg with their defaults. */
uint32_t e2e__rtx_timeout(const struct usp_e2e_cfg *c);
uint32_t e2e__rx_window(const struct usp_e2e_cfg *c);
uint32_t e2e__rx_buffer_max(const struct usp_e2e_cfg *c);
uint32_t e2e__tx_buffer_max(const struct usp_e2e_cfg *c);
uint32_t e2e__max_msg(const struct usp_e2e_cfg *c);

/* --- e2e_sar.c ---------------------------------------------------------- */

/* How a payload of `len` bytes whose first Record gets sequence_id
 * `first_seq` is cut so that every Record is at most MaxUSPRecordSize
 * encoded: *nrec Records of *chunk bytes (the last may hold fewer). 0,
 * USP_ERANGE (not even one byte fits beside the header, or the payload is
 * too large). */
int e2e__plan(const struct usp_e2e_session *s, uint64_t sid, uint64_t first_seq,
              uint64_t expected_id, size_t len, uint32_t *chunk, uint32_t *nrec);
/* The encoded size of one session Record with these fields and `plen`
 * payload bytes (no payload field at all when !with_payload). */
size_t e2e__record_size(const struct usp_e2e_session *s, uint64_t sid, uint64_t seq,
                        uint64_t expected_id, uint64_t retransmit_id, int sar, size_t plen,
                        bool with_payload);
/* Builds Record `i` of `m` in the open session and hands it to io->send.
 * 0 or USP_ENOMEM; a send failure is counted, not returned. */
int e2e__emit(struct usp_e2e_session *s, struct tx_msg *m, uint32_t i, const struct usp_e2e_io *io);
/* A no_session_context Record carrying `msg`. */
int e2e__emit_plain(struct usp_e2e_session *s, const uint8_t *msg, size_t len,
                    const struct usp_e2e_io *io);
/* A DisconnectRecord, in `version` when we support it. */
int e2e__emit_disconnect(struct usp_e2e_session *s, uint32_t code, const char *version,
                         const struct usp_e2e_io *io);
/* Appends to the reassembly buffer, bounded by max_msg_size. 0,
 * USP_ERANGE (too large) or USP_ENOMEM. */
int e2e__asm_append(struct usp_e2e_session *s, struct e2e_act *a, const uint8_t *p, size_t n);
/* Frees the reassembly buffer. */
void e2e__asm_clear(struct e2e_act *a);

/* --- e2e.c, for tests --------------------------------------------------- */

/* Moves the open session's counters, to reach the end of the sequence_id
 * space without sending 2^64 Records. */
void e2e__force_seq(struct usp_e2e_session *s, uint64_t tx_next, uint64_t rx_expected);

#endif
