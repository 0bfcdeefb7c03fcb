/* Shared by lib/certs.c and lib/tls_verify.c. */
#ifndef USP_CERTS_INT_H
#define USP_CERTS_INT_H

#include <stddef.h>

/* Writes the formatted message, ": ", and the reason of the oldest error on
 * OpenSSL's queue (when there is one) into `why`, then empties the queue. */
void certs__ossl_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the formatted message into `why` (which may be NULL) and returns
 * `rc`. */
int certs__fail(int rc, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* OpenSSL's password callback that refuses: an encrypted key is an error,
 * never a prompt on the terminal. */
int certs__no_password(char *buf, int size, int rwflag, void *u);

#endif
