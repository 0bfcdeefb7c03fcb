/* A sans-IO TLS session for bindings that own their socket (STOMP on a
 * uv_tcp_t, UNIX domain sockets on a uv_pipe_t): the binding feeds it the
 * ciphertext it read, takes plaintext out, and writes the ciphertext the
 * stream produces. No I/O happens here.
 *
 * How it is driven:
 *   tls_stream__new             from a borrowed SSL_CTX (mtp__tls_ctx)
 *   tls_stream__start           a client's ClientHello (then write out)
 *   loop on every read:
 *     tls_stream__feed(bytes)   borrowed until the next read returns 0
 *     tls_stream__read(buf)     > 0 plaintext; 0 all input taken; < 0 failed
 *     tls_stream__out           ciphertext to write (handshake, alerts,
 *                               records), then tls_stream__out_clear
 *   tls_stream__write           plaintext once tls_stream__up
 *   tls_stream__shutdown        close_notify before a graceful close
 *
 * Memory: the stream is one small allocation beside OpenSSL's SSL object.
 * Both ends of the SSL's I/O are a BIO of our own that reads straight from
 * the caller's bytes (no copy, nothing kept) and writes into one heap buffer
 * that exists only until the caller has taken it; SSL_MODE_RELEASE_BUFFERS
 * lets OpenSSL drop its own record buffers (about 34 KB) between records,
 * and a server issues no TLS 1.3 session tickets (nothing is cached per
 * session). An idle session holds the SSL object, the peer's certificate
 * and the Endpoint IDs it authenticates: see tests/unit/test_tls_stream.c,
 * which prints the figure. */
#ifndef USP_TLS_STREAM_INT_H
#define USP_TLS_STREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usp/errors.h"
#include "usp/tls.h"

struct tls_stream;

/* A session on `sc` (borrowed: the SSL takes its own reference) for
 * `role`. `expect_host` (client; NULL: no name check, for unix: sockets)
 * is the name or address the server certificate must match (R-MTP.4).
 * `cert_file`/`key_file` (both or neither) give this session its own
 * certificate when `sc` has none. 0, or USP_EINVAL / USP_ENOENT / USP_EIO /
 * USP_ENOMEM with `why`. */
int tls_stream__new(SSL_CTX *sc, enum usp_tls_role role, const char *expect_host,
                    const char *cert_file, const char *key_file, struct tls_stream **out, char *why,
                    size_t whylen);
void tls_stream__free(struct tls_stream *t);

/* Starts the handshake: a client writes its ClientHello into the output.
 * 0 or an error as tls_stream__read. A server needs no start. */
int tls_stream__start(struct tls_stream *t);

/* Ciphertext read from the socket. The bytes are borrowed, not copied:
 * call tls_stream__read until it returns 0 or an error before they go
 * away (OpenSSL then holds any partial record in its own buffer). */
void tls_stream__feed(struct tls_stream *t, const uint8_t *in, size_t len);

/* Moves the session on with what was fed: the handshake, then plaintext
 * into buf (at most cap bytes, cap <= INT_MAX). Returns
 *   > 0  bytes of plaintext in buf; call again
 *   0    nothing more until more is fed (all input taken)
 *   USP_EPERM   the peer's certificate failed verification (or, for a
 *               server, none was sent); tls_stream__why says why
 *   USP_EPROTO  the TLS session failed (alert, bad bytes); why says so
 *   USP_EIO     the peer closed the session (close_notify)
 *   USP_ENOMEM
 * Check tls_stream__out after each call: a handshake step or an alert may
 * be waiting to go out. After an error the stream keeps returning it. */
int tls_stream__read(struct tls_stream *t, uint8_t *buf, size_t cap);

/* Encrypts `len` bytes (once up) into the output. 0; USP_EPERM before the
 * handshake is done or after an error or shutdown; USP_EPROTO, USP_ENOMEM. */
int tls_stream__write(struct tls_stream *t, const uint8_t *p, size_t len);

/* Sends close_notify (once). 0 or USP_EPERM when not up. */
int tls_stream__shutdown(struct tls_stream *t);

/* The ciphertext waiting to be written: its length, *p set to it (NULL
 * when none). It stays until tls_stream__out_clear, which frees it. */
size_t tls_stream__out(const struct tls_stream *t, const uint8_t **p);
void tls_stream__out_clear(struct tls_stream *t);

/* The handshake is done (and the peer verified). */
bool tls_stream__up(const struct tls_stream *t);
/* Why the session failed, e.g. "the peer's certificate did not verify:
 * unable to get local issuer certificate"; "" when it did not. */
const char *tls_stream__why(const struct tls_stream *t);
/* The Endpoint IDs in the peer's verified certificate (usp/tls.h); NULL
 * before the handshake is done or when it holds none (then
 * tls_stream__ids_why says what it held). Owned by the stream. */
const struct usp_tls_ids *tls_stream__ids(const struct tls_stream *t);
const char *tls_stream__ids_why(const struct tls_stream *t);
/* The SSL object, for logs and tests. */
SSL *tls_stream__ssl(const struct tls_stream *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once up; "" before. */
void tls_stream__describe(const struct tls_stream *t, char *buf, size_t n);

#endif
