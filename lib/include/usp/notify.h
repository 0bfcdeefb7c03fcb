/* The agent side of USP notifications (TR-369 "Notifications and
 * Subscriptions", TR-181 Device.LocalAgent.Subscription.{i}.): which
 * subscriptions an event matches, the Notify messages they produce, and the
 * retries of those that ask for a NotifyResp.
 *
 * One struct usp_notifier per worker loop holds what all its agents share:
 * the worker's timer wheel (usp/timerwheel.h), the send callback, a seeded
 * random source, a cache of parsed ReferenceLists (keyed by their text, so
 * agents with the same subscriptions share one parse) and the counters.
 *
 * Per agent the fleet keeps one struct usp_notify_agent (one pointer, NULL
 * while the agent has nothing pending). State is allocated only while the
 * agent needs it: a notification waiting for its NotifyResp, a TimeToLive
 * to enforce, a Periodic! event to send, dynamic values to poll. The data
 * model stays the only record of the subscriptions: nothing is copied.
 *
 * What the fleet does:
 *   - at agent start: usp_notify_boot() (Boot! to the subscribed
 *     controllers, then the agent's timers are set up);
 *   - from env->emit: usp_notify_event() for every change event;
 *   - from env->reply: usp_notify_reply() for NotifyResp (and Error);
 *   - on restart (REBOOT / FACTORY_RESET events) and when the agent goes
 *     away: usp_notify_agent_cleanup(), before the data model changes;
 *   - sends what the send callback gets, wrapped in a Record, to `to_eid`.
 *
 * Retry timing follows R-NOT.1-4 with the recipient controller's
 * USPNotifRetryMinimumWaitInterval (m) and USPNotifRetryIntervalMultiplier
 * (k), read again at every retry. Every retransmission carries the same
 * msg_id, so a NotifyResp to any of them ends the retries. Each Notify
 * counts its own retries from zero (so the count is zero again after a
 * delivery, R-NOT.3, and after a restart, R-NOT.4). While the recipient
 * controller is disabled its retransmissions are skipped, not sent; when
 * its row is deleted they end.
 *
 * Timers hold the agent's address: a struct usp_dm_agent with notification
 * state must not move until usp_notify_agent_cleanup().
 *
 * Nothing here is thread-safe: a notifier and its agents live on one loop. */
#ifndef USP_NOTIFY_H
#define USP_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/arena.h"
#include "usp/codec.h"
#include "usp/dm.h"
#include "usp/handler.h"
#include "usp/timerwheel.h"

struct usp_notifier;
struct notify_state;

/* Kept by the fleet for every agent, zero-initialised. */
struct usp_notify_agent {
    struct notify_state *st; /* private; NULL when nothing is pending */
};

/* One Notify to transmit. Everything is valid during the send call only. */
struct usp_notify_out {
    const char *to_eid;     /* the recipient controller's EndpointID */
    const char *msg_id;     /* the same on every retransmission */
    const Usp__Msg *msg;    /* the Notify, in the arena given to the callback */
    const uint8_t *payload; /* `msg` packed (what the Record carries) */
    size_t len;
    uint32_t attempt; /* 0 for the first transmission, n for retry n */
    bool send_resp;   /* a NotifyResp is expected */
};

/* Sends one Notify from `agent`; `arena` may be used for the Record and is
 * reset after the call. A failure (negative USP_E*) is counted; a Notify
 * that expects a response is retried on schedule anyway. */
typedef int (*usp_notify_send_fn)(void *ctx, struct usp_dm_agent *agent,
                                  const struct usp_notify_out *out, struct usp_arena *arena);

#define USP_NOTIFY_POLL_MS_DEFAULT 5000 /* R-NOT.0a wants notifications within 10 s */
#define USP_NOTIFY_WATCH_MAX       256  /* dynamic values polled per agent at most */

struct usp_notify_cfg {
    struct usp_tw *tw; /* the worker's wheel (ms); not owned: it must outlive
                        * the notifier (free the notifier first) */
    usp_notify_send_fn send;
    void *ctx; /* for send and now */
    /* The agent's clock in seconds since the epoch (CreationDate,
     * TimeToLive, PeriodicNotifTime); NULL means usp_dm_agent_now. */
    int64_t (*now)(void *ctx, const struct usp_dm_agent *agent);
    uint64_t seed;        /* random source for retry waits */
    uint32_t poll_ms;     /* dynamic ValueChange polling; 0: the default */
    uint32_t watch_max;   /* 0: USP_NOTIFY_WATCH_MAX */
    const char *versions; /* OnBoardRequest's agent_supported_protocol_versions
                           * (kept, not copied); NULL: USP_VERSIONS_SUPPORTED */
};

/* Counters for live progress; `pending`, `agents` and `mem` are current
 * values, the others totals. */
struct usp_notify_stats {
    uint64_t sent;        /* first transmissions handed to the send callback */
    uint64_t retried;     /* retransmissions */
    uint64_t acked;       /* NotifyResp (or Error) that ended a retry */
    uint64_t expired;     /* retries given up: NotifExpiration, or the
                           * recipient controller is gone */
    uint64_t send_failed; /* the send callback returned an error */
    uint64_t onboard;     /* OnBoardRequests started */
    uint64_t periodic;    /* Periodic! events produced */
    uint64_t ttl_removed; /* subscriptions deleted by TimeToLive */
    uint64_t polled;      /* dynamic values read by the poller */
    uint64_t bad_refs;    /* ReferenceList entries that do not parse (skipped) */
    uint64_t pending;     /* notifications waiting for a NotifyResp */
    uint64_t agents;      /* agents holding state */
    uint64_t mem;         /* bytes of that state (cache not included) */
};

/* 0, USP_EINVAL (no wheel or no send callback) or USP_ENOMEM. */
int usp_notifier_new(const struct usp_notify_cfg *cfg, struct usp_notifier **out);
/* Frees the notifier and the state of every agent it still holds (their
 * struct usp_notify_agent become empty). NULL is a no-op. */
void usp_notifier_free(struct usp_notifier *n);
const struct usp_notify_stats *usp_notify_stats(const struct usp_notifier *n);

/* A change event from the handlers (env->emit): sends a Notify for every
 * enabled subscription with TriggerAction Notify or NotifyAndConfig whose
 * NotifType and ReferenceList match it, to its Recipient controller when
 * that controller is enabled. A change to the agent's subscriptions or
 * controllers updates its timers. USP_EV_ONBOARD_REQUEST starts an
 * OnBoardRequest (usp_notify_onboard); USP_EV_REBOOT and
 * USP_EV_FACTORY_RESET are the fleet's (see above) and ignored here. The
 * data model is only read: nothing changes under the handler's feet. */
void usp_notify_event(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                      const struct usp_dm_event_info *ev);

/* Device.Boot! arguments. NULL strings are sent empty. */
struct usp_notify_boot {
    const char *cause;       /* LocalReboot, RemoteReboot, FactoryReset,
                              * LocalFactoryReset, RemoteFactoryReset */
    const char *command_key; /* of the Reboot()/FactoryReset() that caused it */
    const char *reason;      /* sent when the schema's Boot! has Reason */
    bool firmware_updated;
};
/* The agent (re)started: sends Boot! to every controller with a matching
 * Event subscription, its ParameterMap built from that controller's enabled
 * BootParameter rows (a JSON object of parameter path to value; search
 * paths expand), then sets up the agent's timers (usp_notify_refresh). Call
 * after usp_notify_agent_cleanup and the data model's reboot. 0 or
 * USP_ENOMEM. */
int usp_notify_boot(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                    const struct usp_notify_boot *b);

/* Sends an OnBoardRequest (R-NOT.5/6a) to Device.LocalAgent.Controller.
 * `controller` (its instance number): subscription_id "", send_resp true,
 * oui/product_class/serial_number from Device.DeviceInfo, retried with the
 * same back-off until a NotifyResp arrives, never expiring. 0, USP_ENOENT
 * (no such controller, or it has no EndpointID) or USP_ENOMEM. */
int usp_notify_onboard(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na,
                       uint32_t controller);

/* A NotifyResp with `msg_id` arrived from `from` (an EndpointID, or NULL
 * not to check it): the retries of that Notify stop. 0, or USP_ENOENT when
 * no Notify of this agent waits for that msg_id (a late or foreign answer,
 * which is ignored). */
int usp_notify_resp_received(struct usp_notifier *n, struct usp_notify_agent *na, const char *from,
                             const char *msg_id);
/* env->reply: a NotifyResp or an Error answering one of our Notify
 * messages. Either shows the controller got it, so retries stop. */
void usp_notify_reply(struct usp_notifier *n, struct usp_notify_agent *na,
                      const struct usp_agent_reply *r);

/* Reads the agent's subscriptions and controllers again and sets its timers
 * (TimeToLive, Periodic!, dynamic value polling). usp_notify_event does
 * this by itself for changes made through the handlers; call it after
 * changing the data model some other way. 0 or USP_ENOMEM. */
int usp_notify_refresh(struct usp_notifier *n, struct usp_dm_agent *a, struct usp_notify_agent *na);

/* Drops everything the agent has pending (retries end: R-NOT.4 and
 * NotifExpiration end at a restart) and frees its state. */
void usp_notify_agent_cleanup(struct usp_notifier *n, struct usp_notify_agent *na);

/* Notifications of this agent waiting for a NotifyResp. */
size_t usp_notify_agent_pending(const struct usp_notify_agent *na);
/* Bytes the agent's notification state holds (0 when it has none). */
size_t usp_notify_agent_mem(const struct usp_notify_agent *na);

/* The wait before retry `n` (1-based) in ms, R-NOT.1-2: between
 * m*(k/1000)^(n-1) and m*(k/1000)^n seconds, the range fixed from n = 10
 * on. `m` is USPNotifRetryMinimumWaitInterval (seconds, >= 1), `k`
 * USPNotifRetryIntervalMultiplier (>= 1000). The bounds are rounded inwards
 * to whole ms and capped at about 34 years. The same table serves the
 * WebSocket and E2E session retries. */
void usp_notify_retry_window(uint32_t m, uint32_t k, uint32_t n, uint64_t *lo_ms, uint64_t *hi_ms);

#endif
