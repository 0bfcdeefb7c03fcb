/* End-to-End Session Context and Segmentation And Reassembly (TR-369 "End
 * to End Message Exchange", R-E2E.*): one struct usp_e2e_session per pair
 * of endpoints (our Endpoint ID, the peer's), the same for Agents and
 * Controllers, between message handling and the MTP.
 *
 * Sans I/O: the session owns no socket and no timer. Every call gets the
 * current time (`now_ms`, any monotonic millisecond clock) and a struct
 * usp_e2e_io whose callbacks carry Record bytes to the MTP and Message
 * bytes up to the handlers; usp_e2e_next_deadline() says when the session
 * wants usp_e2e_tick(). A fleet drives it from its timer wheel, tests from
 * a virtual clock.
 *
 * What it does:
 *   - sending (usp_e2e_send_msg): a Message goes out in the session when
 *     the SessionMode and the state call for one (opening it when needed),
 *     otherwise in a no_session_context Record. In a session, sequence_id
 *     starts at 1 and grows by one per Record, expected_id is always set,
 *     and a Message that does not fit MaxUSPRecordSize together with the
 *     Record header is split over several Records (payload_sar_state and
 *     payloadrec_sar_state BEGIN, INPROCESS..., COMPLETE; NONE for one
 *     Record). Every Record emitted is at most MaxUSPRecordSize bytes
 *     encoded. Sent Messages are kept until the peer's expected_id passes
 *     their last Record (R-E2E.14-17).
 *   - receiving (usp_e2e_receive): Records are processed in sequence_id
 *     order (R-E2E.20): later ones are buffered (bounded), earlier ones and
 *     duplicates ignored (R-E2E.25); payloads are reassembled and passed
 *     up; retransmit_id makes us send that Record again; a gap that stays
 *     open for retransmit_timeout_ms makes us ask for the missing Record
 *     (retransmit_id), again up to the MaxRetransmitTries limit.
 *   - failures (R-E2E.21, .23, .24: a Record that cannot be buffered,
 *     reassembled or processed, a retransmit request for a Record we do not
 *     have or have resent MaxRetransmitTries times, a gap the peer never
 *     fills) end the session; a new one is opened after the R-E2E.10-13
 *     back-off (SessionRetryMinimumWaitInterval m and
 *     SessionRetryIntervalMultiplier k, usp_notify_retry_window), and
 *     Messages the peer had not acknowledged are sent again in it unless
 *     cfg.drop_on_restart.
 *   - lifecycle: a new session_id from the peer restarts the session
 *     (R-E2E.4-6); SessionExpiration of idleness ends it and the next
 *     interaction opens a new one (R-E2E.7); a sequence_id within 10,000
 *     of the uint64 maximum opens a new one (R-E2E.8/9).
 *   - refusals, as DisconnectRecords: 7106 to a session Record when
 *     SessionMode is Forbid (R-E2E.6a), 7102 to payload_security TLS12
 *     (only PLAINTEXT is implemented), 7101 to a PLAINTEXT session when we
 *     are configured for TLS, 7103 to a segmented Record when cfg.no_sar
 *     (an endpoint without SAR, for fault scenarios); usp_e2e_end() sends
 *     7105 (R-E2E.6b). Received Disconnects end the session (R-MTP.7).
 *
 * Not implemented: TLS12 payload security (R-E2E.40-43) and the integrity
 * protection of non-payload fields (mac_signature, sender_cert; R-E2E.28-
 * 39): Records are sent without them and received ones are not checked,
 * which suits MTPs that protect the Record (R-E2E.28).
 *
 * Session ids: those we generate (random, > 1, R-E2E.3) carry a keyed tag
 * in their low 20 bits, so a session recognises any of its own past
 * session ids and never takes a late Record of one for a new session of
 * the peer; the peer's recent ones are remembered. This keeps a burst of
 * restarts over a reordering path from turning into both ends adopting
 * each other's stale sessions.
 *
 * Simultaneous starts: when both ends open a session at once, each would
 * adopt the other's session_id by R-E2E.6 and they would never meet. The
 * tie is broken by role: a Controller whose own new session is younger
 * than retransmit_timeout_ms and has not heard from the Agent ignores the
 * Agent's new session_id (sequence_id 1) and sends its first Record
 * again; an Agent always adopts the Controller's.
 *
 * Unacknowledged Messages are sent again in the next session after a
 * restart (not after expiry, an end or a Disconnect), into at most
 * USP_E2E_MAX_RESENDS successive sessions: the peer may have processed
 * some of them already, so duplicates are possible (the receiver sees the
 * same msg_id again, cf. R-MSG.4); cfg.drop_on_restart discards them
 * instead. The bound keeps a Message the peer can never process (each
 * delivery fails its session) from circulating between sessions for ever.
 *
 * Memory: a session without traffic is one small struct (usp_e2e_mem);
 * the state of an open session, buffers for unacknowledged, out-of-order
 * and partly reassembled data are allocated only while used and bounded by
 * the cfg limits. The cfg, the stats and the Endpoint ID strings are
 * borrowed, so a fleet shares them between sessions.
 *
 * Nothing here is thread-safe: a session lives on one loop. */
#ifndef USP_E2E_H
#define USP_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp-record-1-4.pb-c.h"
#include "usp/errors.h"

enum usp_e2e_role {
    USP_E2E_AGENT,
    USP_E2E_CONTROLLER,
};

/* Device.LocalAgent.Controller.{i}.E2ESession.SessionMode. */
enum usp_e2e_mode {
    USP_E2E_ALLOW,   /* use a session the peer starts, keep it going (restart,
                      * R-E2E.7); never start the first one ourselves */
    USP_E2E_REQUIRE, /* always a session; no Message outside one */
    USP_E2E_FORBID,  /* never a session (R-E2E.6a: refuse with 7106) */
};

/* E2ESession.Status. */
enum usp_e2e_status {
    USP_E2E_DOWN,
    USP_E2E_NEGOTIATING, /* we sent sequence_id 1 of a new session, nothing received yet */
    USP_E2E_UP,
};

/* Defaults of the knobs that are not in the data model. */
#define USP_E2E_RETRANSMIT_TIMEOUT_MS 2000
#define USP_E2E_RX_WINDOW             64
#define USP_E2E_RX_BUFFER_MAX         (256u * 1024)
#define USP_E2E_TX_BUFFER_MAX         (1024u * 1024)
#define USP_E2E_MAX_MSG               (16u * 1024 * 1024)
/* R-E2E.8/9: a new session before sequence_id comes this close to the max. */
#define USP_E2E_SEQ_MARGIN 10000u
/* New sessions an unacknowledged Message is sent again in, at most. */
#define USP_E2E_MAX_RESENDS 3

/* One per configuration, shared by every session that uses it; it must
 * stay valid and unchanged while sessions point to it (swap it with
 * usp_e2e_set_cfg). Fill with usp_e2e_cfg_init, then usp_e2e_cfg_set or
 * directly. */
struct usp_e2e_cfg {
    /* E2ESession parameters. */
    enum usp_e2e_mode mode;       /* SessionMode (Enable, deleted in 2.18,
                                   * maps true/false to Require/Forbid) */
    bool payload_tls;             /* PayloadSecurity "TLS": not implemented, so
                                   * no session can be used (7101/7102) */
    uint32_t expiration_s;        /* SessionExpiration; 0: never */
    uint32_t retry_min_wait_s;    /* SessionRetryMinimumWaitInterval (m), 1..65535 */
    uint32_t retry_multiplier;    /* SessionRetryIntervalMultiplier (k), 1000..65535 */
    int32_t max_retransmit_tries; /* MaxRetransmitTries, -1 (no limit) .. 10 */
    uint32_t max_record_size;     /* MaxUSPRecordSize; 0: no segmentation. The
                                   * data model allows 0 or >= 512; smaller
                                   * values work too (tests) while a Record
                                   * header and one payload byte fit. */
    /* Implementation knobs; 0 picks the USP_E2E_* default. */
    uint32_t retransmit_timeout_ms; /* a gap open this long gets a retransmit_id */
    uint32_t rx_window;             /* Records buffered ahead of expected_id */
    uint32_t rx_buffer_max;         /* bytes of payload buffered ahead */
    uint32_t tx_buffer_max;         /* bytes of sent Messages kept for retransmission;
                                     * the oldest go first (the newest stays) */
    uint32_t max_msg_size;          /* largest reassembled Message */
    bool drop_on_restart;           /* discard unacknowledged Messages when a session
                                     * restarts instead of sending them again */
    bool no_sar;                    /* act as an endpoint without SAR: answer a
                                     * segmented Record with Disconnect 7103 */
    const char *version;            /* Record.version; NULL: USP_VERSION_DEFAULT */
};

/* TR-181 defaults (SessionExpiration 0, m 5, k 2000, MaxRetransmitTries 0,
 * MaxUSPRecordSize 0), SessionMode Allow, PayloadSecurity Plaintext (the
 * data model's default is TLS, which is not implemented). */
void usp_e2e_cfg_init(struct usp_e2e_cfg *c);

/* Sets one E2ESession parameter from its TR-181 name (the last path
 * component, or a full path ending in it, e.g.
 * "Device.LocalAgent.Controller.1.E2ESession.SessionMode") and its string
 * value, checked against the data model's syntax and ranges. 0; USP_EINVAL
 * for a bad value, USP_ENOENT for an unknown name, USP_EPERM for a
 * read-only one (Status, CurrentRetryCount), with a sentence in `why`
 * (may be NULL). `c` is unchanged on error. */
int usp_e2e_cfg_set(struct usp_e2e_cfg *c, const char *param, const char *value, char *why,
                    size_t whylen);

/* Counters, shared by any number of sessions (one per worker, say). */
struct usp_e2e_stats {
    uint64_t opened;          /* sessions we started (sequence_id 1 of a new session_id) */
    uint64_t accepted;        /* sessions the peer started (R-E2E.4/6) */
    uint64_t restarts;        /* sessions ended by a failure (R-E2E.21/23/24) */
    uint64_t expired;         /* sessions ended by SessionExpiration (R-E2E.7) */
    uint64_t seq_exhausted;   /* new sessions for sequence_id exhaustion (R-E2E.8/9) */
    uint64_t ended;           /* usp_e2e_end (Disconnect 7105 sent) */
    uint64_t refusals_sent;   /* Disconnects 7101/7102/7103/7106 sent */
    uint64_t disconnects_rx;  /* DisconnectRecords received */
    uint64_t records_tx;      /* Records handed to the send callback */
    uint64_t bytes_tx;        /* their bytes */
    uint64_t records_rx;      /* session Records received from the peer */
    uint64_t msgs_tx;         /* Messages sent in a session */
    uint64_t msgs_rx;         /* Messages delivered from a session */
    uint64_t plain_tx;        /* Messages sent in no_session_context Records */
    uint64_t plain_rx;        /* no_session_context payloads delivered */
    uint64_t plain_refused;   /* no_session_context Records dropped (SessionMode Require) */
    uint64_t segmented;       /* Messages split over several Records */
    uint64_t reassembled;     /* Messages delivered from several Records */
    uint64_t retransmitted;   /* Records sent again for a retransmit_id */
    uint64_t retransmit_reqs; /* Records we sent with a retransmit_id */
    uint64_t buffered;        /* Records received ahead of expected_id */
    uint64_t duplicates;      /* ignored: sequence_id already processed or buffered */
    uint64_t stale;           /* ignored: Records of a session we left or refused */
    uint64_t invalid;         /* ignored: not for us, not from the peer, bad ids */
    uint64_t resent_msgs;     /* unacknowledged Messages sent again in a new session */
    uint64_t dropped_msgs;    /* unacknowledged Messages discarded */
    uint64_t send_failed;     /* the send callback returned an error */
    uint64_t deliver_failed;  /* the deliver callback returned an error */
};

/* Hands one encoded Record to the MTP. The bytes are valid during the call
 * only. Must not call into the same session. 0 or a negative USP_E*
 * (counted; a lost Record is recovered by retransmission). */
typedef int (*usp_e2e_send_fn)(void *ctx, const uint8_t *rec, size_t len);
/* Passes one whole Message up. `in_session` says which Record type carried
 * it, so the answer can use the same (R-MSG.0a: usp_e2e_send_msg for true,
 * usp_e2e_send_plain for false). The bytes are valid during the call only.
 * It may call usp_e2e_send_msg, usp_e2e_send_plain and usp_e2e_end on the
 * same session, never usp_e2e_free or usp_e2e_receive. A negative USP_E*
 * (the Message could not be processed) fails the session (R-E2E.21). */
typedef int (*usp_e2e_deliver_fn)(void *ctx, const uint8_t *msg, size_t len, bool in_session);
/* One sentence about a Record that was ignored or a session that changed
 * state, naming the field at fault. Optional. */
typedef void (*usp_e2e_log_fn)(void *ctx, const char *line);

/* The caller's side of one call; nothing in it is kept. */
struct usp_e2e_io {
    usp_e2e_send_fn send;       /* required */
    usp_e2e_deliver_fn deliver; /* required by usp_e2e_receive */
    usp_e2e_log_fn log;         /* may be NULL */
    void *ctx;
};

struct usp_e2e_session;

/* A session between `own_eid` and `peer_eid` (both kept, not copied: they
 * must outlive the session), initially DOWN. `cfg` is kept too; `stats`
 * (may be NULL) is updated. `seed` feeds session ids and back-off jitter
 * (mixed with the ids, so one seed serves a fleet). 0, USP_EINVAL or
 * USP_ENOMEM. */
int usp_e2e_new(const struct usp_e2e_cfg *cfg, enum usp_e2e_role role, const char *own_eid,
                const char *peer_eid, uint64_t seed, struct usp_e2e_stats *stats,
                struct usp_e2e_session **out);
/* Frees everything, sending nothing. NULL is a no-op. */
void usp_e2e_free(struct usp_e2e_session *s);

/* Uses `cfg` from now on. SessionMode Forbid ends an open session with
 * Disconnect 7105 ("MUST result in the immediate termination"); Require
 * does not open one by itself (call usp_e2e_open). 0 or USP_EINVAL. */
int usp_e2e_set_cfg(struct usp_e2e_session *s, const struct usp_e2e_cfg *cfg, uint64_t now_ms,
                    const struct usp_e2e_io *io);

/* Sends one Message (`msg` is its protobuf bytes, copied): in the session,
 * opening one first when none is open and SessionMode is Require (or Allow
 * and the session we had expired or failed), segmented as needed; in a
 * no_session_context Record otherwise. 0 once the Message is sent (a send
 * callback failure is counted, the Records stay available for
 * retransmission); USP_EINVAL (no Message, no send callback), USP_EPERM (a
 * session is required but cannot be opened now: PayloadSecurity TLS, or
 * the back-off after a failure is still running, see
 * usp_e2e_next_deadline), USP_ERANGE (it needs segmentation and the peer
 * answered 7103, or MaxUSPRecordSize cannot hold a Record header and one
 * byte), USP_ENOMEM. */
int usp_e2e_send_msg(struct usp_e2e_session *s, const uint8_t *msg, size_t len, uint64_t now_ms,
                     const struct usp_e2e_io *io);
/* Sends one Message in a no_session_context Record whatever the state
 * (answers to no_session_context requests, R-MSG.0a). 0, USP_EINVAL or
 * USP_ENOMEM. */
int usp_e2e_send_plain(struct usp_e2e_session *s, const uint8_t *msg, size_t len,
                       const struct usp_e2e_io *io);

/* Takes one received Record (decoded and validated, e.g. by usp_rx_record;
 * only read, never kept). session_context Records go through the session;
 * no_session_context payloads are delivered (dropped under SessionMode
 * Require); DisconnectRecords end the session; other Record types are
 * ignored. A Record whose to_id is not our Endpoint ID is ignored
 * (R-E2E.1), one whose from_id is not the peer's too. 0 however the Record
 * was judged (see the stats and the log); USP_EINVAL for missing
 * arguments, USP_ENOMEM. */
int usp_e2e_receive(struct usp_e2e_session *s, const UspRecord__Record *rec, uint64_t now_ms,
                    const struct usp_e2e_io *io);

/* When usp_e2e_tick wants to run (ms, same clock): expiry, a retransmit
 * request, a failure of a gap, a session re-opened after its back-off.
 * UINT64_MAX when nothing is pending. */
uint64_t usp_e2e_next_deadline(const struct usp_e2e_session *s);
/* Does whatever is due at `now_ms`. 0, USP_EINVAL or USP_ENOMEM. */
int usp_e2e_tick(struct usp_e2e_session *s, uint64_t now_ms, const struct usp_e2e_io *io);

/* Opens a new session now, with an empty first Record, replacing any open
 * one (E2ESession.Reset(), or SessionMode Require at start). 0; USP_EPERM
 * under SessionMode Forbid or PayloadSecurity TLS; USP_EINVAL; USP_ENOMEM.
 * It ignores a running back-off. */
int usp_e2e_open(struct usp_e2e_session *s, uint64_t now_ms, const struct usp_e2e_io *io);
/* Ends the open session without closing the MTP: sends a DisconnectRecord
 * with `reason_code` (0 means 7105 "Session Context terminated",
 * R-E2E.6b) and drops the session's state. 0 (also when no session was
 * open: nothing is sent), USP_EINVAL or USP_ENOMEM. */
int usp_e2e_end(struct usp_e2e_session *s, uint32_t reason_code, uint64_t now_ms,
                const struct usp_e2e_io *io);

enum usp_e2e_status usp_e2e_status(const struct usp_e2e_session *s);
/* The open session's id, 0 when none is open. */
uint64_t usp_e2e_session_id(const struct usp_e2e_session *s);
/* E2ESession.CurrentRetryCount: failed establishments since the last
 * Record received in a session (R-E2E.12). */
uint32_t usp_e2e_retry_count(const struct usp_e2e_session *s);
/* Bytes this session holds, the struct included. */
size_t usp_e2e_mem(const struct usp_e2e_session *s);

#endif
