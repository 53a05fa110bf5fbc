/*
 * HTTP/2 connections (h2c with prior knowledge, or TLS with ALPN "h2")
 * carrying gRPC calls: accepting them, the TLS handshake, telling h2c
 * from HTTP/1.x by the first bytes, and starting the nghttp2 session.
 *
 * One nghttp2 server session per connection, fed from the socket by
 * nghttp2_session_mem_recv() and drained into it through
 * nghttp2_session_mem_send() (bl_h2_io.c).  A call's responses wait in
 * its own buffer until the peer's flow control lets nghttp2 take them (a
 * deferred data source, bl_h2_output.c).
 *
 * Re-entrancy: services answer from inside our nghttp2 callbacks (a
 * synchronous on_message) or from the loop (a storage callback, a
 * timer).  Inside callbacks we only submit to nghttp2; a connection that
 * has something to send is queued and flushed from an ev_prepare watcher
 * before the loop sleeps, so one write carries many answers.  Streams
 * that nghttp2 closes are freed only after mem_recv()/mem_send()
 * returned; a connection is only torn down from our own I/O handlers.
 *
 * The other files: bl_h2_io.c (reading, writing, closing),
 * bl_h2_session.c (nghttp2's callbacks), bl_h2_stream.c (the calls),
 * bl_h2_output.c (responses), bl_h2_shutdown.c (draining).
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_tls.h>
#include <bl_h2.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>


static const u_char  bl_h2_preface[] = NGHTTP2_CLIENT_MAGIC;


static bl_int_t bl_h2_conn_start(bl_h2_conn_t *c);
static void bl_h2_timeout_handler(struct ev_loop *loop, ev_timer *w,
    int revents);
static bl_int_t bl_h2_peer_text(bl_pool_t *pool, const struct sockaddr *sa,
    bl_str_t *text);


bl_h2_link_t                       bl_h2_conns;
bl_uint_t                          bl_h2_nconns;
bl_uint_t                          bl_h2_nstreams;
bl_grpc_http1_pt                   bl_h2_http1_handler;
const bl_grpc_observer_t          *bl_h2_observer;

static nghttp2_session_callbacks  *bl_h2_callbacks;
static nghttp2_option             *bl_h2_option;


bl_int_t
bl_h2_init(void)
{
    nghttp2_session_callbacks  *cbs;

    if (bl_h2_callbacks != NULL) {
        return BL_OK;
    }

    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        bl_log_error(BL_LOG_EMERG, 0,
                     "nghttp2_session_callbacks_new() failed");
        return BL_ERROR;
    }

    bl_h2_session_callbacks(cbs);

    bl_h2_callbacks = cbs;

    if (nghttp2_option_new(&bl_h2_option) != 0) {
        bl_log_error(BL_LOG_EMERG, 0, "nghttp2_option_new() failed");
        return BL_ERROR;
    }

    /*
     * nghttp2's HTTP checks refuse an :authority that is not host[:port],
     * and etcdctl 3.4 sends its endpoint URL there ("http://host:port")
     * for endpoint status, hashkv, defrag and move-leader; grpc-go, and
     * so etcd, accepts it.  The request's headers are checked in
     * bl_h2_on_header() instead, as strictly as grpc-go does.
     */
    nghttp2_option_set_no_http_messaging(bl_h2_option, 1);

#if (HAVE_NGHTTP2_STREAM_RESET_RATE_LIMIT                                     \
     || NGHTTP2_VERSION_NUM >= 0x013900)
    /*
     * The rapid reset defence (CVE-2023-44487) answers more than 33
     * RST_STREAM a second (after a burst of 1000) with GOAWAY, which
     * fails every call on the connection: a kube-apiserver cancelling
     * requests and watches on one connection gets there.  Our bound is
     * max_concurrent_streams and a cancel is cheap here, so allow real
     * clients more, still far below an attack's rate.
     */
    nghttp2_option_set_stream_reset_rate_limit(bl_h2_option,
                                               BL_H2_RESET_BURST,
                                               BL_H2_RESET_RATE);
#endif

    bl_h2_list_init(&bl_h2_conns);
    bl_h2_io_init();

    return BL_OK;
}


int64_t
bl_h2_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


bl_int_t
bl_h2_conn_open(int fd, const struct sockaddr *sa, socklen_t socklen,
    SSL_CTX *ctx)
{
    int            one;
    bl_pool_t     *pool;
    bl_h2_conn_t  *c;

    BL_UNUSED(socklen);

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (pool == NULL) {
        goto failed;
    }

    c = bl_pcalloc(pool, sizeof(bl_h2_conn_t));
    if (c == NULL) {
        goto failed;
    }

    c->pool = pool;
    c->fd = fd;

    if (bl_h2_peer_text(pool, sa, &c->peer) != BL_OK) {
        goto failed;
    }

    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        one = 1;

        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
            == -1)
        {
            /* the peer may be gone already: not worth more than info */
            bl_log_error(BL_LOG_INFO, errno,
                         "setsockopt(TCP_NODELAY) failed, client: %.*s",
                         BL_STR_ARGS(&c->peer));
        }
    }

    if (ctx != NULL) {
        c->ssl = bl_tls_conn_create(ctx, fd, &c->peer);
        if (c->ssl == NULL) {
            goto failed;
        }

        c->handshaking = 1;

    } else {
        c->sniffing = 1;
    }

    bl_h2_list_init(&c->streams);
    bl_h2_list_init(&c->closed);

    ev_io_init(&c->rev, bl_h2_read_handler, fd, EV_READ);
    c->rev.data = c;
    ev_io_init(&c->wev, bl_h2_write_handler, fd, EV_WRITE);
    c->wev.data = c;
    ev_init(&c->goaway_ev, bl_h2_goaway_handler);
    c->goaway_ev.data = c;
    ev_timer_init(&c->timeout_ev, bl_h2_timeout_handler,
                  BL_H2_HANDSHAKE_TIMEOUT, 0.0);
    c->timeout_ev.data = c;

    bl_h2_list_add(&bl_h2_conns, &c->link);
    bl_h2_nconns++;

    bl_log_debug("%s connection %d accepted, client: %.*s",
                 c->ssl ? "TLS" : "plaintext", fd, BL_STR_ARGS(&c->peer));

    ev_timer_start(bl_loop, &c->timeout_ev);

    /*
     * Our SETTINGS wait for the client's first bytes (or the end of the
     * handshake): an HTTP/1.x client on this port must not see them.  A
     * client speaking HTTP/2 sends its preface without waiting for ours.
     */
    ev_io_start(bl_loop, &c->rev);

    return BL_OK;

failed:

    if (close(fd) == -1) {
        bl_log_error(BL_LOG_ERR, errno, "close() of socket %d failed", fd);
    }

    if (pool != NULL) {
        bl_pool_destroy(pool);
    }

    return BL_ERROR;
}


/* HTTP/2 begins: the session, and our SETTINGS as the server preface */

static bl_int_t
bl_h2_conn_start(bl_h2_conn_t *c)
{
    int                     rv;
    nghttp2_settings_entry  iv[3];

    ev_timer_stop(bl_loop, &c->timeout_ev);

    rv = nghttp2_session_server_new2(&c->session, bl_h2_callbacks, c,
                                     bl_h2_option);
    if (rv != 0) {
        c->session = NULL;
        bl_log_error(BL_LOG_ERR, 0,
                     "nghttp2_session_server_new() failed: %s, client: %.*s",
                     nghttp2_strerror(rv), BL_STR_ARGS(&c->peer));
        return BL_ERROR;
    }

    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = bl_grpc_max_concurrent_streams;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = BL_H2_STREAM_WINDOW;
    iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[2].value = BL_H2_MAX_HEADER_LIST;

    rv = nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3);

    if (rv == 0) {
        rv = nghttp2_session_set_local_window_size(c->session,
                                                   NGHTTP2_FLAG_NONE, 0,
                                                   BL_H2_CONN_WINDOW);
    }

    if (rv != 0) {
        bl_log_error(BL_LOG_ERR, 0,
                     "nghttp2_submit_settings() failed: %s, client: %.*s",
                     nghttp2_strerror(rv), BL_STR_ARGS(&c->peer));
        return BL_ERROR;
    }

    return BL_OK;
}


void
bl_h2_conn_handshake(bl_h2_conn_t *c)
{
    int       want;
    bl_int_t  rc;

    rc = bl_tls_handshake(c->ssl, &c->peer, &want);

    if (rc == BL_AGAIN) {
        if (want == EV_WRITE) {
            if (!ev_is_active(&c->wev)) {
                ev_io_start(bl_loop, &c->wev);
            }

        } else if (ev_is_active(&c->wev)) {
            ev_io_stop(bl_loop, &c->wev);
        }

        return;
    }

    if (rc == BL_ERROR) {
        c->tls_failed = 1;
        bl_h2_conn_close(c);
        return;
    }

    c->handshaking = 0;

    if (ev_is_active(&c->wev)) {
        ev_io_stop(bl_loop, &c->wev);
    }

    if (!bl_tls_alpn_h2(c->ssl)) {
        /* a client that offered other protocols got an alert already */
        bl_log_error(BL_LOG_INFO, 0, "client did not negotiate \"h2\" "
                     "with ALPN, closing, client: %.*s",
                     BL_STR_ARGS(&c->peer));
        bl_h2_conn_close(c);
        return;
    }

    bl_log_debug("TLS handshake done (%s, %s), client: %.*s",
                 SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
                 BL_STR_ARGS(&c->peer));

    if (bl_h2_conn_start(c) != BL_OK) {
        bl_h2_conn_close(c);
        return;
    }

    /* the client's preface may have come with its last handshake record */
    bl_h2_conn_read(c);
}


bl_int_t
bl_h2_conn_sniff(bl_h2_conn_t *c, const u_char *data, size_t len)
{
    int       fd;
    size_t    n;
    bl_int_t  rc;

    n = bl_min(len, sizeof(bl_h2_preface) - 1);

    if (memcmp(data, bl_h2_preface, n) == 0) {
        if (n < 3 && bl_h2_http1_handler != NULL) {
            /* "P" and "PR" may still be "PUT" or "POST" */
            memcpy(c->sniff, data, len);
            c->sniff_len = (u_char) len;
            return BL_AGAIN;
        }

    } else if (bl_h2_http1_handler != NULL
               && data[0] >= 'A' && data[0] <= 'Z')
    {
        /* a request line: the HTTP/1.x server takes the socket */

        bl_log_debug("HTTP/1.x request on the gRPC port, client: %.*s",
                     BL_STR_ARGS(&c->peer));

        ev_io_stop(bl_loop, &c->rev);
        ev_io_stop(bl_loop, &c->wev);

        fd = c->fd;
        c->fd = -1;

        rc = bl_h2_http1_handler(fd, &c->peer, data, len);
        BL_UNUSED(rc);

        bl_h2_conn_close(c);
        return BL_DONE;
    }

    /* HTTP/2, or nghttp2 will say what is wrong with it */

    c->sniffing = 0;

    if (bl_h2_conn_start(c) != BL_OK) {
        bl_h2_conn_close(c);
        return BL_DONE;
    }

    return BL_OK;
}


static void
bl_h2_timeout_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_h2_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    bl_log_error(BL_LOG_INFO, 0, "client timed out %s, client: %.*s",
                 c->handshaking ? "in the TLS handshake"
                                : "before sending anything",
                 BL_STR_ARGS(&c->peer));

    bl_h2_conn_close(c);
}


static bl_int_t
bl_h2_peer_text(bl_pool_t *pool, const struct sockaddr *sa, bl_str_t *text)
{
    int                         n;
    char                        addr[INET6_ADDRSTRLEN];
    u_char                     *p;
    const struct sockaddr_in   *sin;
    const struct sockaddr_in6  *sin6;

    p = bl_pnalloc(pool, INET6_ADDRSTRLEN + sizeof("[]:65535"));
    if (p == NULL) {
        return BL_ERROR;
    }

    switch (sa->sa_family) {

    case AF_INET:
        sin = (const struct sockaddr_in *) (const void *) sa;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        n = sprintf((char *) p, "%s:%u", addr,
                    (unsigned) ntohs(sin->sin_port));
        break;

    case AF_INET6:
        sin6 = (const struct sockaddr_in6 *) (const void *) sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        n = sprintf((char *) p, "[%s]:%u", addr,
                    (unsigned) ntohs(sin6->sin6_port));
        break;

    case AF_UNIX:
        n = sprintf((char *) p, "unix:");
        break;

    default:
        n = sprintf((char *) p, "(family %d)", (int) sa->sa_family);
        break;
    }

    text->data = p;
    text->len = (size_t) n;

    return BL_OK;
}
