/* The CoAP binding (lib/mtp_coap.c, libcoap 4.3 with its OpenSSL backend,
 * driven by the context's libuv loop).
 *
 * LEGACY: CoAP was deprecated in USP 1.2 and OBSOLETED in USP 1.3, which
 * says it must not be implemented. This binding exists only to reproduce
 * older deployments (TR-369 1.0-1.2, R-COAP.0-16): its Records declare
 * version 1.0, 1.1 or 1.2 (cfg->usp_version; NULL means "1.2"; 1.3 and
 * later are refused with USP_EINVAL). Register it explicitly with
 * usp_mtp_register_ext(&usp_mtp_coap_ext_ops).
 *
 * What the old binding describes (requirement numbers are not cited one
 * by one: the TR-369 1.0-1.2 text is not in the project's reference set),
 * and how it maps onto usp/mtp.h:
 * - Every endpoint, Agent or Controller, is a CoAP server with one USP
 *   endpoint resource "/e/<own Endpoint ID>" (usp_mtp_coap_resource_path)
 *   carrying rt="bbf.usp.endpoint" and if="bbf.usp.a" (Agent) or
 *   "bbf.usp.c" (Controller), listed by GET /.well-known/core, and a CoAP
 *   client.
 * - A Record goes out as a confirmable POST to the peer's resource with
 *   Content-Format 42 (application/octet-stream) and a Uri-Query
 *   "reply-to=<own coap(s) URI, percent-encoded>" (usp_mtp_coap_reply_to_
 *   build); larger Records use block-wise transfer (RFC 7959,
 *   Block1). The receiver answers 2.04 Changed when it took the
 *   Record, 4.00 Bad Request when the payload does not decode as a USP
 *   Record (usp/codec.h) or the reply-to is missing or unusable, 4.03
 *   Forbidden when nobody accepts the peer (no listener, the check callback
 *   refused, or with DTLS the reply-to's Endpoint ID is not in the peer's
 *   certificate), 4.05 Method Not Allowed for other methods, 4.13 Request
 *   Entity Too Large over max_record and 4.15 Unsupported Content-Format
 *   for a Content-Format other than 42 (or none).
 * - usp_mtp_listen(coap://ADDR:PORT/e/<eid>) makes the endpoint's CoAP
 *   server: the URL's path must be "/e/<cfg->eid>" as written by
 *   usp_mtp_coap_resource_path, or empty (then it is). ADDR is numeric.
 *   A POST from a peer with no connection of its own yet (matched by the
 *   pair own Endpoint ID / the Endpoint ID in the reply-to's "/e/" path)
 *   becomes an accepted connection, handed to the accept callback with
 *   peer.eid from the reply-to, peer.path the resource, peer.addr the
 *   source address and, with DTLS, peer.ids from its certificate; it is
 *   UP once the callback returns, and the Record that made it follows.
 *   Its sends go to the reply-to URI. The check callback refusing gives
 *   4.03 and counts as refused.
 * - usp_mtp_conn_new(url = the peer's coap(s)://HOST:PORT/e/<peer eid>,
 *   cfg->coap.local_url = own server URI) is an outgoing association: it
 *   POSTs to the peer with reply-to = local_url, and Records the peer sends
 *   to local_url are delivered on it. The local server is bound at the
 *   first attempt (shared with a listener or other connections on the same
 *   address, port and scheme); local_url NULL takes the URL of a listener
 *   of the same context for cfg->eid and the same scheme. Both URLs use
 *   the same scheme. The peer's Endpoint ID is the one in the URL's path
 *   (or cfg->peer_eid).
 * - State: CoAP has no session. A connection is UP as soon as its local
 *   server is bound and its client session made; CLOSED after
 *   usp_mtp_close. A Record that fails:
 *     * answered with 4.xx/5.xx: tx_failed, a WARN log line, the
 *       connection stays UP (the peer is there; it refused that Record);
 *     * no ACK after the retransmissions (reason timeout), an ICMP error
 *       or a reset (reason connect), a failed DTLS handshake or a peer
 *       certificate without the URL's Endpoint ID (reason
 *       refused): tx_failed, a WARN line, and the connection goes DOWN
 *       (sends are refused, USP_EPERM) and is UP again after the ConnectRetry
 *       back-off with a new client session; an accepted connection goes
 *       CLOSED instead (a new POST from the peer makes a new one).
 *   The event's detail names the failure; its code is libcoap's
 *   coap_nack_reason_t for timeout and connect, 0 for refused, 1001 for
 *   CLOSED by the listener's close, 1 for a close whose answers were
 *   still missing after close_timeout_ms. Records the peer sends while
 *   the connection is DOWN are still delivered on it.
 * - Retransmission: cfg->coap.ack_timeout_ms (0: RFC 7252's 2000; held
 *   within 1000-60000, libcoap 4.3 ignores less than a second) and
 *   cfg->coap.max_retransmit (0: 4); with the random factor 1.5 a Record
 *   to a silent peer fails after at most 1.5 * ack * (2^(n+1) - 1).
 * - Certificate mode (coaps://, DTLS 1.2 or newer) with mutual
 *   authentication [R-MTP.1]: cfg->tls gives the CA, the
 *   own certificate and key; the peer's certificate must verify against
 *   the CA file. usp_mtp_peer_ids() gives the Endpoint IDs of the peer's
 *   certificate once the handshake is done (outgoing) or from the DTLS
 *   session its first Record came on (accepted). All coaps servers on one
 *   address and port must use the same certificate files (one DTLS server
 *   context each). NoSec mode is coap://.
 * - No Connect Record exists for CoAP; a graceful close of an UP
 *   connection that knows its peer's Endpoint ID POSTs a DisconnectRecord
 *   [R-MTP.7] and ends CLOSED when every Record in flight is answered, or
 *   after close_timeout_ms.
 * - usp_mtp_send ignores `to` (the connection is the destination); a
 *   received record's reply_to.to is the peer's reply-to URI and
 *   arrived_on the own resource path. usp_mtp_local_dest gives the own
 *   server URI while UP.
 * - Costs: per local server (address, port, scheme) one libcoap context,
 *   i.e. an epoll descriptor, a timerfd and the UDP socket, polled with one
 *   uv_poll_t; per connection one libcoap client session (a connected UDP
 *   socket, for coaps an SSL object) and 408 bytes of its own (x86-64)
 *   plus its strings (configuration, peer URL). Peers and resources are
 *   found by linear search per server: many Endpoint IDs on one server
 *   cost O(n) per Record. */
#ifndef USP_MTP_COAP_H
#define USP_MTP_COAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/mtp.h"

/* Resource attributes. */
#define USP_MTP_COAP_RT            "bbf.usp.endpoint"
#define USP_MTP_COAP_IF_AGENT      "bbf.usp.a"
#define USP_MTP_COAP_IF_CONTROLLER "bbf.usp.c"
/* Content-Format of a Record: application/octet-stream. */
#define USP_MTP_COAP_FORMAT 42
/* What starts the reply-to Uri-Query option. */
#define USP_MTP_COAP_REPLY_TO "reply-to="
/* Record.version when cfg->usp_version is NULL. */
#define USP_MTP_COAP_VERSION_DEFAULT "1.2"

extern const struct usp_mtp_ops usp_mtp_coap_ops;
extern const struct usp_mtp_ext_ops usp_mtp_coap_ext_ops;

/* "/e/<eid>" with every byte of the Endpoint ID that is not an RFC 3986
 * path character (pchar), and '%', written "%HH". Writes it to `buf` and
 * returns its length, or the length it needs when that is >= n (like
 * snprintf). */
size_t usp_mtp_coap_resource_path(const char *eid, char *buf, size_t n);

/* The Uri-Query option value "reply-to=<uri>" with every byte of `uri`
 * other than an unreserved character written "%HH". Same return as
 * usp_mtp_coap_resource_path. */
size_t usp_mtp_coap_reply_to_build(const char *uri, char *buf, size_t n);

/* One received Uri-Query option value (not terminated): when it starts
 * with "reply-to=", the rest percent-decoded into `uri` (n bytes, always
 * terminated, empty on failure): 0; USP_ENOENT when it is another option;
 * USP_EINVAL for an empty value, a bad escape or a control character;
 * USP_ERANGE when it does not fit. */
int usp_mtp_coap_reply_to_parse(const uint8_t *val, size_t len, char *uri, size_t n);

/* The Endpoint ID in the path "/e/<eid>" of a parsed coap(s) URL (one
 * non-empty segment, percent-decoded): 0; USP_EINVAL when the URL is not
 * coap(s), the path has another form, or the segment has a bad escape or
 * a control character; USP_ERANGE when it needs more than n - 1 bytes. */
int usp_mtp_coap_url_eid(const struct usp_mtp_url *u, char *eid, size_t n);

/* Whether Records of version `v` (NULL: USP_MTP_COAP_VERSION_DEFAULT) may
 * go over CoAP: 0 for 1.0-1.2, USP_EINVAL with `why` otherwise. */
int usp_mtp_coap_version_check(const char *v, char *why, size_t whylen);

#endif
