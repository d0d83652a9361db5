/*
 * LD_PRELOAD for wrk: a new TLS session on every connection.
 *
 * wrk reuses a connection's SSL object when it reconnects: SSL_shutdown,
 * SSL_clear, then SSL_connect on the new socket. SSL_clear keeps the last
 * session, so every reconnection resumes it (in TLS 1.3, with the ticket
 * the server sent), and a benchmark of full handshakes measures resumed
 * ones. This replaces SSL_clear with the real one followed by dropping the
 * session: the next SSL_connect makes a full handshake. Built by xtask
 * (`cc -shared -fPIC`); libssl's symbols come from wrk's own libssl.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

int SSL_set_session(SSL *s, SSL_SESSION *session);

int SSL_clear(SSL *s)
{
    static int (*real)(SSL *);
    if (real == NULL)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    int r = real(s);
    /* No session: the next handshake is a full one. */
    SSL_set_session(s, NULL);
    return r;
}
