/* The UNIX domain socket binding (lib/mtp_uds.c; TR-369 "UNIX Domain
 * Socket Binding", R-UDS.*, USP 1.3+; TLS over it from USP 1.4), on a
 * uv_pipe_t of the context's loop, with the frame codec of usp/uds.h.
 * Register it with usp_mtp_register_ext(&usp_mtp_uds_ext_ops).
 *
 * - URL unix:PATH (SOCK_STREAM [R-UDS.4]). Either role connects
 *   (usp_mtp_conn_new) or listens (usp_mtp_listen); a process is client or
 *   server on one socket, never both [R-UDS.4].
 * - A listener binds PATH: an existing socket file is removed only when
 *   nothing accepts on it (a connect is tried first: a live listener is
 *   USP_EIO "in use"; a file that is not a socket is never removed). The
 *   file is removed when the listener closes.
 * - Handshake [R-UDS.16-19]: the client sends a Handshake TLV with its
 *   Endpoint ID as soon as the socket (and TLS) is up; the server checks
 *   it (a well-formed Endpoint ID; with TLS one its peer's certificate
 *   authenticates, R-SEC.0a), asks the listener's check callback
 *   (struct usp_mtp_peer: eid, path = PATH, addr "", ids with TLS),
 *   answers with its own Handshake TLV and hands the session to the
 *   accept callback. A server Handshake that arrives before ours was
 *   read is fine. A client with no answer within connect_timeout_ms
 *   (default 30 s, R-UDS.18) gives up (DOWN, reason timeout); a server
 *   drops a client that sends none in that time. Records that arrive
 *   before the handshake are ignored (rx_dropped) [R-UDS.20]; TLVs of
 *   unknown types are ignored [R-UDS.15].
 * - One Record per Record TLV [R-UDS.22]. A frame the parser refuses
 *   (wrong sync, bad length, TLVs that do not fill it, bad UTF-8...) is
 *   answered with an Error TLV naming what is wrong and the connection is
 *   closed [R-UDS.21, 23]; so does usp_mtp_reject for a Record that does
 *   not parse [R-UDS.24] (`reason`, or a default text, in the Error). An
 *   Error TLV received closes the connection [R-UDS.25]. Records over
 *   max_record are refused (tx_oversize) and dropped (rx_oversize; the
 *   parser's frame limit is max_record + 4 KiB, beyond which it is a bad
 *   frame).
 * - A client reconnects after a random 1 to 5 s [R-UDS.5] (the
 *   ConnectRetry settings do not apply). An accepted session ends in
 *   CLOSED and is never re-established by this side.
 * - An Agent sends a UDSConnectRecord (empty) first once UP [R-MTP.6]:
 *   as a client when cfg->peer_eid is set (peer_dest must go with it, e.g.
 *   the URL), as a server always (the peer's Endpoint ID is known from the
 *   handshake). Either role sends a DisconnectRecord before a graceful
 *   close [R-MTP.7], then TLS close_notify, and closes once the bytes are
 *   written (or after close_timeout_ms). Records go to the Endpoint ID of
 *   the peer's Handshake, which usp_mtp_peer_eid returns once UP.
 * - TLS with cfg->tls.uds (USP 1.4): TLS 1.2+ with mutual authentication
 *   over the socket (lib/tls_stream.c: OpenSSL on our own BIO, no memory
 *   BIOs kept): both sides verify the other's certificate against ca_file
 *   (no host name check: there is none); the peer's certificate must hold
 *   an Endpoint ID (urn:bbf:usp:id:) and the Handshake's Endpoint ID must
 *   be one it authenticates; usp_mtp_peer_ids returns them while UP.
 * - Event codes: REFUSED: 2 (the server answered with an Error TLV before
 *   the handshake finished), -9 (USP_EPERM: a certificate did not verify,
 *   or the Endpoint ID is not the certificate's); PEER_CLOSED: 0 (end of
 *   stream), 2 (an Error TLV arrived); LOST: 2 (we sent an Error TLV: bad
 *   frame or usp_mtp_reject), -4 (USP_EPROTO: a TLS failure), an errno
 *   otherwise; CONNECT: the errno of connect (ENOENT: no socket file,
 *   ECONNREFUSED: nothing listens); CLOSED: 1001 (the listener closed),
 *   1 (the close took longer than close_timeout_ms), 0. The detail says
 *   what happened, e.g. the Error TLV text or the verification failure.
 * - Costs per connection: one file descriptor; the connection object
 *   (688 bytes on x86-64, 264 of them libuv's uv_pipe_t, its strings in
 *   the same block): about 800 bytes of heap per idle session end,
 *   measured over 1,000 sessions (tests/integration/test-uds-mtp.sh).
 *   Nothing else while idle: each read gets a 64 KiB buffer freed after
 *   it, a frame cut across reads is copied only until complete, and only
 *   bytes the socket did not take wait in write requests. With TLS,
 *   OpenSSL's session on top: about 25 KB per end once up, its record
 *   buffers released between records (tests/unit/test_tls_stream.c). */
#ifndef USP_MTP_UDS_H
#define USP_MTP_UDS_H

#include "usp/mtp.h"

extern const struct usp_mtp_ops usp_mtp_uds_ops;
extern const struct usp_mtp_ext_ops usp_mtp_uds_ext_ops;

/* The event code of a loss around an Error TLV (the TLV's type). */
#define USP_MTP_UDS_CODE_ERROR_TLV 2

/* Bytes of a UDS connection object (its strings follow it in the same
 * allocation), for reports. */
size_t usp_mtp_uds_conn_size(void);

#endif
