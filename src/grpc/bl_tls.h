/*
 * TLS for the gRPC listeners (`listen ... ssl`), on OpenSSL.
 *
 * The server context is built in the master while the configuration is
 * read, so that a bad certificate, key or CA bundle is a configuration
 * error naming file:line (and `ballast -t` finds it), and so that a
 * reload reads the files again: each generation of workers inherits the
 * context of its own cycle.  It is freed with the cycle's pool.
 *
 * Connections do the handshake and their I/O without blocking: every
 * call returns BL_AGAIN with the direction the socket must become ready
 * in, as SSL_get_error() says.
 */
#ifndef BL_TLS_H
#define BL_TLS_H

#include <bl_core.h>

#include <openssl/ssl.h>

/* ssl_verify_client */
#define BL_TLS_VERIFY_OFF       0
#define BL_TLS_VERIFY_ON        1
#define BL_TLS_VERIFY_OPTIONAL  2

/* ssl_protocols */
#define BL_TLS_PROTO_TLSv1_2    0x01
#define BL_TLS_PROTO_TLSv1_3    0x02
#define BL_TLS_PROTO_DEFAULT    (BL_TLS_PROTO_TLSv1_2 | BL_TLS_PROTO_TLSv1_3)

/* TLS 1.2 suites: ECDHE key exchange and AEAD ciphers only (TLS 1.3's own
 * suites are all of that kind and are left at OpenSSL's default) */
#define BL_TLS_DEFAULT_CIPHERS                                                \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"              \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* a file directive's value and where it was given, for messages */
typedef struct {
    bl_str_t     path;          /* absolute, NUL-terminated; NULL unset */
    const char  *where;         /* "file:line" */
} bl_tls_file_t;

typedef struct {
    bl_tls_file_t  certificate;         /* chain, PEM */
    bl_tls_file_t  certificate_key;     /* PEM, not encrypted */
    bl_tls_file_t  client_certificate;  /* CA bundle for client certs */
    bl_uint_t      verify_client;       /* BL_TLS_VERIFY_* */
    const char    *verify_where;
    bl_uint_t      protocols;           /* BL_TLS_PROTO_* */
    bl_str_t       ciphers;             /* OpenSSL cipher list */
    const char    *ciphers_where;
} bl_tls_conf_t;

/*
 * The server context for conf, freed when pool is destroyed; NULL when a
 * file or a setting is refused (logged at emerg with file:line).
 */
SSL_CTX *bl_tls_create_ctx(bl_pool_t *pool, const bl_tls_conf_t *conf);

/* a server connection on fd, in accept state; NULL logged */
SSL *bl_tls_conn_create(SSL_CTX *ctx, int fd, const bl_str_t *peer);

/*
 * Handshake, recv and send: BL_OK / a byte count as documented below;
 * BL_AGAIN with *want = EV_READ or EV_WRITE: come back when the socket
 * is ready so; BL_ERROR: the connection is unusable, already logged at
 * info with the peer and OpenSSL's reason, and no close_notify may be
 * sent (bl_tls_shutdown(ssl, 0)).
 */
bl_int_t bl_tls_handshake(SSL *ssl, const bl_str_t *peer, int *want);
/* bytes read (> 0), 0 when the peer closed, BL_AGAIN or BL_ERROR */
ssize_t bl_tls_recv(SSL *ssl, u_char *buf, size_t size,
    const bl_str_t *peer, int *want);
/* bytes written (> 0), BL_AGAIN or BL_ERROR */
ssize_t bl_tls_send(SSL *ssl, const u_char *buf, size_t size,
    const bl_str_t *peer, int *want);

/* 1 if the handshake settled on ALPN "h2" */
int bl_tls_alpn_h2(SSL *ssl);

/* send close_notify if clean (without waiting for the peer's), free */
void bl_tls_shutdown(SSL *ssl, int clean);

/* OpenSSL's error queue as text ("error:...:reason ..."), emptied */
void bl_tls_error_text(char *buf, size_t size);

#endif /* BL_TLS_H */
