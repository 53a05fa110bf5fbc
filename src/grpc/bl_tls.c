/*
 * TLS server contexts and non-blocking TLS connections (bl_tls.h).
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_tls.h>

#include <openssl/err.h>
#include <openssl/x509.h>


#define BL_TLS_ERR_LEN  512

static const u_char  bl_tls_alpn_id[] = "h2";


static void bl_tls_ctx_free(void *data);
static int bl_tls_no_password(char *buf, int size, int rwflag,
    void *userdata);
static int bl_tls_alpn_select(SSL *ssl, const unsigned char **out,
    unsigned char *outlen, const unsigned char *in, unsigned int inlen,
    void *arg);
static bl_int_t bl_tls_failed(SSL *ssl, int rc, const char *what,
    const bl_str_t *peer, int *want);


void
bl_tls_error_text(char *buf, size_t size)
{
    size_t         n;
    unsigned long  e;

    n = 0;
    buf[0] = '\0';

    while ((e = ERR_get_error()) != 0) {
        if (n + 2 >= size) {
            continue;      /* drain the rest */
        }

        if (n > 0) {
            buf[n++] = ' ';
        }

        ERR_error_string_n(e, buf + n, size - n);
        n += strlen(buf + n);
    }

    if (n == 0) {
        snprintf(buf, size, "no OpenSSL error");
    }
}


/*
 * Messages name the directive's file:line.  Key files are named by
 * their path only: nothing read from them ever reaches a log line.
 */

SSL_CTX *
bl_tls_create_ctx(bl_pool_t *pool, const bl_tls_conf_t *conf)
{
    int                  mode, min, max;
    char                 err[BL_TLS_ERR_LEN];
    SSL_CTX             *ctx;
    bl_pool_cleanup_t   *cln;
    STACK_OF(X509_NAME) *names;

    ERR_clear_error();

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_EMERG, 0, "SSL_CTX_new() failed (SSL: %s)",
                     err);
        return NULL;
    }

    cln = bl_pool_cleanup_add(pool, bl_tls_ctx_free, ctx);
    if (cln == NULL) {
        SSL_CTX_free(ctx);
        return NULL;
    }

    min = (conf->protocols & BL_TLS_PROTO_TLSv1_2) ? TLS1_2_VERSION
                                                   : TLS1_3_VERSION;
    max = (conf->protocols & BL_TLS_PROTO_TLSv1_3) ? TLS1_3_VERSION
                                                   : TLS1_2_VERSION;

    if (SSL_CTX_set_min_proto_version(ctx, min) != 1
        || SSL_CTX_set_max_proto_version(ctx, max) != 1)
    {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_EMERG, 0, "setting the TLS protocol versions "
                     "failed (SSL: %s)", err);
        return NULL;
    }

    /*
     * No compression (CRIME), no renegotiation (a client could make us
     * do handshakes forever); our cipher order; a peer that closes
     * without close_notify has just closed (gRPC clients do that).
     */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION
                             | SSL_OP_NO_RENEGOTIATION
                             | SSL_OP_CIPHER_SERVER_PREFERENCE
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
                             | SSL_OP_IGNORE_UNEXPECTED_EOF
#endif
                             );

    /* the output buffer grows (moves) between a short write and its
     * retry; idle connections give their buffers back */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);

    /* an encrypted key must not make the master ask on a terminal */
    SSL_CTX_set_default_passwd_cb(ctx, bl_tls_no_password);

    /* workers do not share a session cache; tickets work across them,
     * their keys were made here, before fork */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    (void) SSL_CTX_set_session_id_context(ctx, (const u_char *) "ballast",
                                          sizeof("ballast") - 1);

    if (SSL_CTX_set_cipher_list(ctx, (const char *) conf->ciphers.data)
        != 1)
    {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_EMERG, 0, "invalid \"ssl_ciphers\" \"%s\" "
                     "(SSL: %s) in %s", (const char *) conf->ciphers.data,
                     err, conf->ciphers_where ? conf->ciphers_where
                                              : "the default");
        return NULL;
    }

    if (SSL_CTX_use_certificate_chain_file(ctx,
                                (const char *) conf->certificate.path.data)
        != 1)
    {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_EMERG, 0, "cannot load certificate \"%s\" "
                     "(SSL: %s) in %s",
                     (const char *) conf->certificate.path.data, err,
                     conf->certificate.where);
        return NULL;
    }

    if (SSL_CTX_use_PrivateKey_file(ctx,
                            (const char *) conf->certificate_key.path.data,
                            SSL_FILETYPE_PEM)
        != 1)
    {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_EMERG, 0, "cannot load certificate key \"%s\" "
                     "(SSL: %s) in %s",
                     (const char *) conf->certificate_key.path.data, err,
                     conf->certificate_key.where);
        return NULL;
    }

    if (SSL_CTX_check_private_key(ctx) != 1) {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_EMERG, 0, "certificate key \"%s\" does not "
                     "match certificate \"%s\" (SSL: %s) in %s",
                     (const char *) conf->certificate_key.path.data,
                     (const char *) conf->certificate.path.data, err,
                     conf->certificate_key.where);
        return NULL;
    }

    if (conf->verify_client != BL_TLS_VERIFY_OFF) {

        if (SSL_CTX_load_verify_locations(ctx,
                        (const char *) conf->client_certificate.path.data,
                        NULL)
            != 1)
        {
            bl_tls_error_text(err, sizeof(err));
            bl_log_error(BL_LOG_EMERG, 0, "cannot load client CA "
                         "certificates \"%s\" (SSL: %s) in %s",
                         (const char *) conf->client_certificate.path.data,
                         err, conf->client_certificate.where);
            return NULL;
        }

        /* the CA names the server asks for, so that clients with
         * several certificates pick the right one */
        names = SSL_load_client_CA_file(
                        (const char *) conf->client_certificate.path.data);
        if (names == NULL) {
            bl_tls_error_text(err, sizeof(err));
            bl_log_error(BL_LOG_EMERG, 0, "no CA certificate in \"%s\" "
                         "(SSL: %s) in %s",
                         (const char *) conf->client_certificate.path.data,
                         err, conf->client_certificate.where);
            return NULL;
        }

        SSL_CTX_set_client_CA_list(ctx, names);

        mode = SSL_VERIFY_PEER;

        if (conf->verify_client == BL_TLS_VERIFY_ON) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        }

        SSL_CTX_set_verify(ctx, mode, NULL);
    }

    SSL_CTX_set_alpn_select_cb(ctx, bl_tls_alpn_select, NULL);

    ERR_clear_error();

    return ctx;
}


static void
bl_tls_ctx_free(void *data)
{
    SSL_CTX_free(data);
}


static int
bl_tls_no_password(char *buf, int size, int rwflag, void *userdata)
{
    BL_UNUSED(buf);
    BL_UNUSED(size);
    BL_UNUSED(rwflag);
    BL_UNUSED(userdata);

    return 0;
}


/*
 * Only "h2": gRPC needs HTTP/2, and a client that offers something else
 * would not understand our answer (grpc-go refuses it the same way).  A
 * client that sends no ALPN at all is refused after the handshake.
 */

static int
bl_tls_alpn_select(SSL *ssl, const unsigned char **out,
    unsigned char *outlen, const unsigned char *in, unsigned int inlen,
    void *arg)
{
    unsigned int  i, n;

    BL_UNUSED(ssl);
    BL_UNUSED(arg);

    for (i = 0; i < inlen; i += n + 1) {
        n = in[i];

        if (i + 1 + n > inlen) {
            break;
        }

        if (n == sizeof(bl_tls_alpn_id) - 1
            && memcmp(&in[i + 1], bl_tls_alpn_id, n) == 0)
        {
            *out = &in[i + 1];
            *outlen = (unsigned char) n;
            return SSL_TLSEXT_ERR_OK;
        }
    }

    return SSL_TLSEXT_ERR_ALERT_FATAL;
}


int
bl_tls_alpn_h2(SSL *ssl)
{
    unsigned int          len;
    const unsigned char  *p;

    SSL_get0_alpn_selected(ssl, &p, &len);

    return len == sizeof(bl_tls_alpn_id) - 1
           && memcmp(p, bl_tls_alpn_id, len) == 0;
}


SSL *
bl_tls_conn_create(SSL_CTX *ctx, int fd, const bl_str_t *peer)
{
    SSL   *ssl;
    char   err[BL_TLS_ERR_LEN];

    ERR_clear_error();

    ssl = SSL_new(ctx);
    if (ssl == NULL) {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_ERR, 0, "SSL_new() failed (SSL: %s), "
                     "client: %.*s", err, BL_STR_ARGS(peer));
        return NULL;
    }

    if (SSL_set_fd(ssl, fd) != 1) {
        bl_tls_error_text(err, sizeof(err));
        bl_log_error(BL_LOG_ERR, 0, "SSL_set_fd() failed (SSL: %s), "
                     "client: %.*s", err, BL_STR_ARGS(peer));
        SSL_free(ssl);
        return NULL;
    }

    SSL_set_accept_state(ssl);

    return ssl;
}


bl_int_t
bl_tls_handshake(SSL *ssl, const bl_str_t *peer, int *want)
{
    int  rc;

    ERR_clear_error();

    rc = SSL_do_handshake(ssl);

    if (rc == 1) {
        return BL_OK;
    }

    return bl_tls_failed(ssl, rc, "TLS handshake", peer, want);
}


ssize_t
bl_tls_recv(SSL *ssl, u_char *buf, size_t size, const bl_str_t *peer,
    int *want)
{
    int  rc;

    ERR_clear_error();

    rc = SSL_read(ssl, buf, (int) bl_min(size, INT_MAX));

    if (rc > 0) {
        return rc;
    }

    if (SSL_get_error(ssl, rc) == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }

    return bl_tls_failed(ssl, rc, "SSL_read()", peer, want);
}


ssize_t
bl_tls_send(SSL *ssl, const u_char *buf, size_t size, const bl_str_t *peer,
    int *want)
{
    int  rc;

    ERR_clear_error();

    rc = SSL_write(ssl, buf, (int) bl_min(size, INT_MAX));

    if (rc > 0) {
        return rc;
    }

    return bl_tls_failed(ssl, rc, "SSL_write()", peer, want);
}


/* a call returned rc <= 0: BL_AGAIN and the direction, or BL_ERROR */

static bl_int_t
bl_tls_failed(SSL *ssl, int rc, const char *what, const bl_str_t *peer,
    int *want)
{
    int       e;
    char      err[BL_TLS_ERR_LEN];
    bl_err_t  errnum;

    errnum = errno;
    e = SSL_get_error(ssl, rc);

    switch (e) {

    case SSL_ERROR_WANT_READ:
        *want = EV_READ;
        return BL_AGAIN;

    case SSL_ERROR_WANT_WRITE:
        *want = EV_WRITE;
        return BL_AGAIN;

    case SSL_ERROR_ZERO_RETURN:
        bl_log_error(BL_LOG_INFO, 0, "client closed the connection in %s, "
                     "client: %.*s", what, BL_STR_ARGS(peer));
        return BL_ERROR;

    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() != 0) {
            break;      /* the queue says more */
        }

        if (errnum == 0 || rc == 0) {
            bl_log_error(BL_LOG_INFO, 0, "client closed the connection in "
                         "%s, client: %.*s", what, BL_STR_ARGS(peer));

        } else {
            bl_log_error(BL_LOG_INFO, errnum, "%s failed, client: %.*s",
                         what, BL_STR_ARGS(peer));
        }

        return BL_ERROR;

    default:
        break;
    }

    bl_tls_error_text(err, sizeof(err));
    bl_log_error(BL_LOG_INFO, 0, "%s failed (SSL: %s), client: %.*s",
                 what, err, BL_STR_ARGS(peer));

    return BL_ERROR;
}


void
bl_tls_shutdown(SSL *ssl, int clean)
{
    if (clean) {
        /* close_notify if the socket takes it now; the peer's is not
         * awaited, the socket is closed next */
        ERR_clear_error();
        SSL_set_quiet_shutdown(ssl, 0);
        (void) SSL_shutdown(ssl);
    }

    ERR_clear_error();
    SSL_free(ssl);
}
