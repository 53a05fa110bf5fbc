/*
 * HTTP/2 connections (h2c with prior knowledge) carrying gRPC calls.
 *
 * One nghttp2 server session per connection, fed from the socket by
 * nghttp2_session_mem_recv() and drained into it through
 * nghttp2_session_mem_send().  Output is bounded: we stop pulling frames
 * out of nghttp2 (and reading requests) while BL_H2_OUT_BOUND bytes wait
 * for the socket.  A call's responses wait in its own buffer until the
 * peer's flow control lets nghttp2 take them (a deferred data source).
 *
 * Re-entrancy: services answer from inside our nghttp2 callbacks (a
 * synchronous on_message) or from the loop (a storage callback, a
 * timer).  Inside callbacks we only submit to nghttp2; a connection that
 * has something to send is queued and flushed from an ev_prepare watcher
 * before the loop sleeps, so one write carries many answers.  Streams
 * that nghttp2 closes are freed only after mem_recv()/mem_send()
 * returned; a connection is only torn down from our own I/O handlers.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>
#include <bl_percent.h>
#include <bl_h2.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>


#if (HAVE_NGHTTP2_SUBMIT_RESPONSE2)
typedef nghttp2_ssize  bl_h2_ssize_t;
#else
typedef ssize_t        bl_h2_ssize_t;
#endif

#define BL_H2_READ_SIZE  (64 * 1024)

#define bl_h2_is(p, n, lit)                                                   \
    ((n) == sizeof(lit) - 1 && memcmp(p, lit, sizeof(lit) - 1) == 0)

#define bl_h2_nv(nv, n, v, vlen)                                              \
    do {                                                                      \
        (nv)->name = (uint8_t *) (n);                                         \
        (nv)->namelen = sizeof(n) - 1;                                        \
        (nv)->value = (uint8_t *) (v);                                        \
        (nv)->valuelen = (vlen);                                              \
        (nv)->flags = NGHTTP2_NV_FLAG_NONE;                                   \
    } while (0)


static void bl_h2_read_handler(struct ev_loop *loop, ev_io *w, int revents);
static void bl_h2_write_handler(struct ev_loop *loop, ev_io *w, int revents);
static void bl_h2_flush_handler(struct ev_loop *loop, ev_prepare *w,
    int revents);
static void bl_h2_goaway_handler(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_h2_deadline_handler(struct ev_loop *loop, ev_timer *w,
    int revents);

static void bl_h2_conn_flush(bl_h2_conn_t *c);
static void bl_h2_conn_post(bl_h2_conn_t *c);
static void bl_h2_conn_close(bl_h2_conn_t *c);
static void bl_h2_conn_drain(bl_h2_conn_t *c);
static void bl_h2_conn_goaway(bl_h2_conn_t *c);
static void bl_h2_conn_abort(bl_h2_conn_t *c, int answer);
static void bl_h2_free_closed(bl_h2_conn_t *c);
static bl_int_t bl_h2_peer_text(bl_pool_t *pool, const struct sockaddr *sa,
    bl_str_t *text);

static void bl_h2_stream_start(bl_h2_stream_t *st);
static void bl_h2_stream_data(bl_h2_stream_t *st, const u_char *data,
    size_t len);
static void bl_h2_stream_half_close(bl_h2_stream_t *st);
static void bl_h2_stream_cancel(bl_h2_stream_t *st);
static void bl_h2_stream_fail(bl_h2_stream_t *st, int status,
    const char *text);
static void bl_h2_stream_reject(bl_h2_stream_t *st, const char *http_status,
    int status, const char *text);
static void bl_h2_stream_finalize(bl_h2_stream_t *st,
    const char *http_status, int status, const u_char *msg, size_t len);
static bl_int_t bl_h2_submit_trailers(bl_h2_stream_t *st,
    const char *http_status);
static void bl_h2_stream_free(bl_h2_stream_t *st);

static int bl_h2_on_begin_headers(nghttp2_session *session,
    const nghttp2_frame *frame, void *user_data);
static int bl_h2_on_header(nghttp2_session *session,
    const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data);
static int bl_h2_on_frame_recv(nghttp2_session *session,
    const nghttp2_frame *frame, void *user_data);
static int bl_h2_on_data_chunk_recv(nghttp2_session *session,
    uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
    void *user_data);
static int bl_h2_on_stream_close(nghttp2_session *session,
    int32_t stream_id, uint32_t error_code, void *user_data);
static int bl_h2_on_frame_send(nghttp2_session *session,
    const nghttp2_frame *frame, void *user_data);
static int bl_h2_on_error(nghttp2_session *session, int lib_error_code,
    const char *msg, size_t len, void *user_data);
static bl_h2_ssize_t bl_h2_read_data(nghttp2_session *session,
    int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
    nghttp2_data_source *source, void *user_data);


static nghttp2_session_callbacks  *bl_h2_callbacks;
static nghttp2_option             *bl_h2_option;
static bl_h2_link_t                bl_h2_conns;
static bl_uint_t                   bl_h2_nconns;
static bl_h2_link_t                bl_h2_flush_queue;
static ev_prepare                  bl_h2_flush_ev;
static u_char                      bl_h2_read_buf[BL_H2_READ_SIZE];


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

    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                    bl_h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, bl_h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                    bl_h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                bl_h2_on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                    bl_h2_on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
                                                    bl_h2_on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cbs, bl_h2_on_error);

    bl_h2_callbacks = cbs;

    if (nghttp2_option_new(&bl_h2_option) != 0) {
        bl_log_error(BL_LOG_EMERG, 0, "nghttp2_option_new() failed");
        return BL_ERROR;
    }

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
    bl_h2_list_init(&bl_h2_flush_queue);
    ev_prepare_init(&bl_h2_flush_ev, bl_h2_flush_handler);

    return BL_OK;
}


bl_uint_t
bl_h2_connections(void)
{
    return bl_h2_nconns;
}


bl_int_t
bl_h2_conn_open(int fd, const struct sockaddr *sa, socklen_t socklen)
{
    int                      one, rv;
    bl_pool_t               *pool;
    bl_h2_conn_t            *c;
    nghttp2_settings_entry   iv[3];

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

    rv = nghttp2_session_server_new2(&c->session, bl_h2_callbacks, c,
                                     bl_h2_option);
    if (rv != 0) {
        bl_log_error(BL_LOG_ERR, 0,
                     "nghttp2_session_server_new() failed: %s, client: %.*s",
                     nghttp2_strerror(rv), BL_STR_ARGS(&c->peer));
        goto failed;
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
        nghttp2_session_del(c->session);
        goto failed;
    }

    bl_h2_list_init(&c->streams);
    bl_h2_list_init(&c->closed);

    ev_io_init(&c->rev, bl_h2_read_handler, fd, EV_READ);
    c->rev.data = c;
    ev_io_init(&c->wev, bl_h2_write_handler, fd, EV_WRITE);
    c->wev.data = c;
    ev_init(&c->goaway_ev, bl_h2_goaway_handler);
    c->goaway_ev.data = c;

    bl_h2_list_add(&bl_h2_conns, &c->link);
    bl_h2_nconns++;

    bl_log_debug("HTTP/2 connection %d accepted, client: %.*s", fd,
                 BL_STR_ARGS(&c->peer));

    ev_io_start(bl_loop, &c->rev);

    /* our SETTINGS go out at once, as the connection preface */
    bl_h2_conn_flush(c);

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


static void
bl_h2_read_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    ssize_t        n;
    bl_err_t       err;
    bl_h2_conn_t  *c;
    bl_h2_ssize_t  rv;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    for ( ;; ) {
        n = recv(c->fd, bl_h2_read_buf, BL_H2_READ_SIZE, 0);

        if (n == -1) {
            err = errno;

            if (err == EAGAIN || err == EWOULDBLOCK) {
                break;
            }

            if (err == EINTR) {
                continue;
            }

            bl_log_error(BL_LOG_INFO, err, "recv() failed, client: %.*s",
                         BL_STR_ARGS(&c->peer));
            bl_h2_conn_close(c);
            return;
        }

        if (n == 0) {
            bl_log_debug("client closed HTTP/2 connection %d, client: %.*s",
                         c->fd, BL_STR_ARGS(&c->peer));
            bl_h2_conn_close(c);
            return;
        }

#if (HAVE_NGHTTP2_SESSION_MEM_RECV2)
        rv = nghttp2_session_mem_recv2(c->session, bl_h2_read_buf,
                                       (size_t) n);
#else
        rv = nghttp2_session_mem_recv(c->session, bl_h2_read_buf,
                                      (size_t) n);
#endif

        bl_h2_free_closed(c);

        if (rv < 0) {
            if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
                bl_log_error(BL_LOG_INFO, 0,
                             "client sent no HTTP/2 connection preface, "
                             "client: %.*s", BL_STR_ARGS(&c->peer));
                bl_h2_conn_close(c);
                return;
            }

            bl_log_error(BL_LOG_INFO, 0,
                         "HTTP/2 error: %s, client: %.*s",
                         nghttp2_strerror((int) rv), BL_STR_ARGS(&c->peer));

            /* say GOAWAY if we still can, then close */

            (void) nghttp2_session_terminate_session(c->session,
                              rv == NGHTTP2_ERR_FLOODED
                              ? NGHTTP2_ENHANCE_YOUR_CALM
                              : NGHTTP2_INTERNAL_ERROR);
            bl_h2_conn_abort(c, 0);
            return;
        }

        if ((size_t) n < BL_H2_READ_SIZE
            || bl_buf_size(&c->out) >= BL_H2_OUT_BOUND)
        {
            break;
        }
    }

    bl_h2_conn_flush(c);
}


static void
bl_h2_write_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);

    bl_h2_conn_flush(w->data);
}


static void
bl_h2_flush_handler(struct ev_loop *loop, ev_prepare *w, int revents)
{
    bl_h2_link_t  *l;
    bl_h2_conn_t  *c;

    BL_UNUSED(revents);

    while (!bl_h2_list_empty(&bl_h2_flush_queue)) {
        l = bl_h2_flush_queue.next;
        c = bl_h2_list_data(l, bl_h2_conn_t, flush_link);
        bl_h2_conn_flush(c);
    }

    ev_prepare_stop(loop, w);
}


/* flush the connection before the loop sleeps again */

static void
bl_h2_conn_post(bl_h2_conn_t *c)
{
    if (c->closing || bl_h2_linked(&c->flush_link)) {
        return;
    }

    bl_h2_list_add(&bl_h2_flush_queue, &c->flush_link);

    if (!ev_is_active(&bl_h2_flush_ev)) {
        ev_prepare_start(bl_loop, &bl_h2_flush_ev);
    }
}


/*
 * Move frames from nghttp2 to the socket until either has no more room
 * or nothing is left; the connection may be closed (and freed) on return.
 */

static void
bl_h2_conn_flush(bl_h2_conn_t *c)
{
    ssize_t         n;
    bl_err_t        err;
    const uint8_t  *data;
    bl_h2_ssize_t   rv;

    if (bl_h2_linked(&c->flush_link)) {
        bl_h2_list_remove(&c->flush_link);
    }

    for ( ;; ) {

        while (bl_buf_size(&c->out) < BL_H2_OUT_BOUND) {

#if (HAVE_NGHTTP2_SESSION_MEM_RECV2)
            rv = nghttp2_session_mem_send2(c->session, &data);
#else
            rv = nghttp2_session_mem_send(c->session, &data);
#endif

            if (rv < 0) {
                bl_log_error(BL_LOG_ERR, 0,
                             "nghttp2_session_mem_send() failed: %s, "
                             "client: %.*s", nghttp2_strerror((int) rv),
                             BL_STR_ARGS(&c->peer));
                bl_h2_conn_close(c);
                return;
            }

            if (rv == 0) {
                break;
            }

            if (bl_buf_append(&c->out, data, (size_t) rv) != BL_OK) {
                bl_h2_conn_close(c);
                return;
            }
        }

        bl_h2_free_closed(c);

        if (bl_buf_size(&c->out) == 0) {
            break;
        }

        n = send(c->fd, c->out.pos, bl_buf_size(&c->out), MSG_NOSIGNAL);

        if (n == -1) {
            err = errno;

            if (err == EINTR) {
                continue;
            }

            if (err == EAGAIN || err == EWOULDBLOCK) {
                if (!ev_is_active(&c->wev)) {
                    ev_io_start(bl_loop, &c->wev);
                }

                /* a peer that does not read stops being read */

                if (bl_buf_size(&c->out) >= BL_H2_OUT_BOUND
                    && ev_is_active(&c->rev))
                {
                    ev_io_stop(bl_loop, &c->rev);
                    c->read_paused = 1;
                }

                return;
            }

            bl_log_error(BL_LOG_INFO, err, "send() failed, client: %.*s",
                         BL_STR_ARGS(&c->peer));
            bl_h2_conn_close(c);
            return;
        }

        bl_buf_consume(&c->out, (size_t) n);
    }

    if (ev_is_active(&c->wev)) {
        ev_io_stop(bl_loop, &c->wev);
    }

    if (c->read_paused) {
        c->read_paused = 0;
        ev_io_start(bl_loop, &c->rev);
    }

    if (!nghttp2_session_want_read(c->session)
        && !nghttp2_session_want_write(c->session))
    {
        bl_log_debug("HTTP/2 connection %d done, client: %.*s", c->fd,
                     BL_STR_ARGS(&c->peer));
        bl_h2_conn_close(c);
    }
}


static void
bl_h2_conn_close(bl_h2_conn_t *c)
{
    bl_h2_link_t    *l, *next;
    bl_h2_stream_t  *st;

    if (c->closing) {
        return;
    }

    c->closing = 1;

    ev_io_stop(bl_loop, &c->rev);
    ev_io_stop(bl_loop, &c->wev);
    ev_timer_stop(bl_loop, &c->goaway_ev);

    if (bl_h2_linked(&c->flush_link)) {
        bl_h2_list_remove(&c->flush_link);
    }

    /*
     * Services let their calls go first; an on_cancel may finish or
     * send on other calls of this connection: with c->closing set that
     * only changes their flags.
     */

    for (l = c->streams.next; l != &c->streams; l = next) {
        next = l->next;
        st = bl_h2_list_data(l, bl_h2_stream_t, link);
        bl_h2_stream_cancel(st);
    }

    while (!bl_h2_list_empty(&c->streams)) {
        st = bl_h2_list_data(c->streams.next, bl_h2_stream_t, link);
        bl_h2_list_remove(&st->link);
        bl_h2_stream_free(st);
    }

    bl_h2_free_closed(c);

    nghttp2_session_del(c->session);

    if (close(c->fd) == -1) {
        bl_log_error(BL_LOG_ERR, errno, "close() of socket %d failed, "
                     "client: %.*s", c->fd, BL_STR_ARGS(&c->peer));
    }

    bl_buf_release(&c->out);

    bl_h2_list_remove(&c->link);
    bl_h2_nconns--;

    bl_pool_destroy(c->pool);
}


static void
bl_h2_free_closed(bl_h2_conn_t *c)
{
    bl_h2_stream_t  *st;

    while (!bl_h2_list_empty(&c->closed)) {
        st = bl_h2_list_data(c->closed.next, bl_h2_stream_t, link);
        bl_h2_list_remove(&st->link);
        bl_h2_stream_free(st);
    }
}


void
bl_h2_shutdown(int graceful)
{
    bl_h2_link_t  *l, *next;
    bl_h2_conn_t  *c;

    if (bl_h2_callbacks == NULL) {
        return;
    }

    for (l = bl_h2_conns.next; l != &bl_h2_conns; l = next) {
        next = l->next;
        c = bl_h2_list_data(l, bl_h2_conn_t, link);

        if (graceful) {
            bl_h2_conn_drain(c);

        } else {
            (void) nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                       nghttp2_session_get_last_proc_stream_id(c->session),
                       NGHTTP2_NO_ERROR, NULL, 0);
            bl_h2_conn_abort(c, 1);
        }
    }
}


/*
 * Graceful: a GOAWAY with the last stream id 2^31-1 tells the client to
 * open no more streams here; a PING measures that it got it; then the
 * real GOAWAY names the last stream we take.  In-flight calls finish and
 * the connection closes when nghttp2 has nothing more to do.
 */

static void
bl_h2_conn_drain(bl_h2_conn_t *c)
{
    if (c->draining || c->closing) {
        return;
    }

    c->draining = 1;

    if (nghttp2_submit_shutdown_notice(c->session) != 0
        || nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) != 0)
    {
        bl_h2_conn_goaway(c);
        return;
    }

    ev_timer_set(&c->goaway_ev, BL_H2_GOAWAY_DELAY, 0.0);
    ev_timer_start(bl_loop, &c->goaway_ev);

    bl_h2_conn_post(c);
}


static void
bl_h2_goaway_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);

    bl_h2_conn_goaway(w->data);
}


static void
bl_h2_conn_goaway(bl_h2_conn_t *c)
{
    int      rv;
    int32_t  last;

    if (c->goaway_sent || c->closing) {
        return;
    }

    c->goaway_sent = 1;
    ev_timer_stop(bl_loop, &c->goaway_ev);

    last = nghttp2_session_get_last_proc_stream_id(c->session);

    rv = nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, last,
                               NGHTTP2_NO_ERROR, NULL, 0);
    if (rv != 0) {
        /* we may be inside nghttp2 (a PING ACK): the fast shutdown that
         * follows a drain's deadline closes the connection */
        bl_log_error(BL_LOG_ERR, 0,
                     "nghttp2_submit_goaway() failed: %s, client: %.*s",
                     nghttp2_strerror(rv), BL_STR_ARGS(&c->peer));
        return;
    }

    bl_h2_conn_post(c);
}


/*
 * Close now: every running call is cancelled (with answer, answered
 * UNAVAILABLE so that clients retry elsewhere), and what fits into the
 * socket at once (the GOAWAY and those answers) is written before it is
 * closed.
 */

static void
bl_h2_conn_abort(bl_h2_conn_t *c, int answer)
{
    ssize_t          n;
    bl_h2_link_t    *l, *next;
    const uint8_t   *data;
    bl_h2_ssize_t    rv;
    bl_h2_stream_t  *st;

    for (l = c->streams.next; l != &c->streams; l = next) {
        next = l->next;
        st = bl_h2_list_data(l, bl_h2_stream_t, link);

        if (answer && st->active) {
            bl_h2_stream_fail(st, BL_GRPC_UNAVAILABLE,
                              "server is shutting down");
        }
    }

    for ( ;; ) {
#if (HAVE_NGHTTP2_SESSION_MEM_RECV2)
        rv = nghttp2_session_mem_send2(c->session, &data);
#else
        rv = nghttp2_session_mem_send(c->session, &data);
#endif

        if (rv <= 0 || bl_buf_append(&c->out, data, (size_t) rv) != BL_OK) {
            break;
        }

        if (bl_buf_size(&c->out) >= BL_H2_OUT_BOUND) {
            break;
        }
    }

    if (bl_buf_size(&c->out) > 0) {
        /* best effort: the connection is closed either way */
        n = send(c->fd, c->out.pos, bl_buf_size(&c->out), MSG_NOSIGNAL);
        BL_UNUSED(n);
    }

    bl_h2_conn_close(c);
}


/* nghttp2 callbacks */

static int
bl_h2_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
    void *user_data)
{
    bl_pool_t       *pool;
    bl_h2_conn_t    *c;
    bl_h2_stream_t  *st;

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    {
        return 0;
    }

    c = user_data;

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (pool == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    st = bl_pcalloc(pool, sizeof(bl_h2_stream_t));
    if (st == NULL) {
        bl_pool_destroy(pool);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    st->call.pool = pool;
    st->call.peer = &c->peer;
    st->conn = c;
    st->id = frame->hd.stream_id;

    ev_init(&st->deadline_ev, bl_h2_deadline_handler);
    st->deadline_ev.data = st;

    bl_grpc_frame_parser_init(&st->parser, bl_grpc_max_recv_message);

    if (nghttp2_session_set_stream_user_data(session, st->id, st) != 0) {
        bl_pool_destroy(pool);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    bl_h2_list_add(&c->streams, &st->link);

    return 0;
}


static int
bl_h2_on_header(nghttp2_session *session, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags, void *user_data)
{
    bl_str_t        *dst;
    bl_h2_conn_t    *c;
    bl_h2_stream_t  *st;

    BL_UNUSED(flags);

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    {
        return 0;
    }

    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st == NULL) {
        return 0;
    }

    c = user_data;

    /* the size as SETTINGS_MAX_HEADER_LIST_SIZE defines it */

    st->header_bytes += namelen + valuelen + 32;

    if (st->header_bytes > BL_H2_MAX_HEADER_LIST) {
        bl_log_error(BL_LOG_INFO, 0,
                     "client sent request headers larger than %d bytes "
                     "on stream %d, client: %.*s", BL_H2_MAX_HEADER_LIST,
                     (int) st->id, BL_STR_ARGS(&c->peer));

        /* nghttp2 resets the stream */
        st->refused = 1;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    /* nghttp2 checked the names: lower case, pseudo-headers once, first */

    if (bl_h2_is(name, namelen, ":method")) {
        dst = &st->method;

    } else if (bl_h2_is(name, namelen, ":path")) {
        dst = &st->path;

    } else if (bl_h2_is(name, namelen, "content-type")) {
        dst = &st->content_type;

    } else if (bl_h2_is(name, namelen, "te")) {
        dst = &st->te;

    } else if (bl_h2_is(name, namelen, "grpc-timeout")) {
        dst = &st->timeout;

    } else if (bl_h2_is(name, namelen, "grpc-encoding")) {
        dst = &st->encoding;

    } else {
        return 0;
    }

    if (dst->data != NULL) {
        /* a repeated header: the first one counts */
        return 0;
    }

    if (bl_str_dup(st->call.pool, dst, value, valuelen) != BL_OK) {
        st->refused = 1;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    return 0;
}


static int
bl_h2_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
    void *user_data)
{
    bl_h2_conn_t    *c;
    bl_h2_stream_t  *st;

    c = user_data;

    switch (frame->hd.type) {

    case NGHTTP2_HEADERS:
        st = nghttp2_session_get_stream_user_data(session,
                                                  frame->hd.stream_id);
        if (st == NULL) {
            return 0;
        }

        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            st->remote_closed = 1;
        }

        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            bl_h2_stream_start(st);
        }

        if (st->remote_closed) {
            bl_h2_stream_half_close(st);
        }

        break;

    case NGHTTP2_DATA:
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            return 0;
        }

        st = nghttp2_session_get_stream_user_data(session,
                                                  frame->hd.stream_id);
        if (st == NULL) {
            return 0;
        }

        st->remote_closed = 1;
        bl_h2_stream_half_close(st);

        break;

    case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && c->draining) {
            /* the client has seen the shutdown notice */
            bl_h2_conn_goaway(c);
        }

        break;

    default:
        break;
    }

    return 0;
}


static int
bl_h2_on_data_chunk_recv(nghttp2_session *session, uint8_t flags,
    int32_t stream_id, const uint8_t *data, size_t len, void *user_data)
{
    bl_h2_stream_t  *st;

    BL_UNUSED(flags);
    BL_UNUSED(user_data);

    st = nghttp2_session_get_stream_user_data(session, stream_id);

    if (st != NULL) {
        bl_h2_stream_data(st, data, len);
    }

    return 0;
}


static int
bl_h2_on_stream_close(nghttp2_session *session, int32_t stream_id,
    uint32_t error_code, void *user_data)
{
    bl_h2_conn_t    *c;
    bl_h2_stream_t  *st;

    st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (st == NULL) {
        return 0;
    }

    c = user_data;

    if (st->active) {
        bl_log_debug("stream %d closed (%s) before the call ended, "
                     "client: %.*s", (int) stream_id,
                     nghttp2_http2_strerror(error_code),
                     BL_STR_ARGS(&c->peer));
    }

    st->closed = 1;
    bl_h2_stream_cancel(st);

    /* freed after nghttp2 returns: it may still be iterating */

    bl_h2_list_remove(&st->link);
    bl_h2_list_add(&c->closed, &st->link);

    return 0;
}


/*
 * A client's protocol errors are logged once, at info, when nghttp2 tells
 * the client: a GOAWAY or a RST_STREAM with an error code.  (nghttp2
 * detects some without calling any callback; the GOAWAY carries its
 * reason.)  Resets of our own were logged where we decided them.
 */

static int
bl_h2_on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
    void *user_data)
{
    bl_h2_conn_t    *c;
    bl_h2_stream_t  *st;

    c = user_data;

    switch (frame->hd.type) {

    case NGHTTP2_GOAWAY:
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR) {
            bl_log_error(BL_LOG_INFO, 0,
                         "HTTP/2 connection error %s: \"%.*s\", "
                         "client: %.*s",
                         nghttp2_http2_strerror(frame->goaway.error_code),
                         (int) frame->goaway.opaque_data_len,
                         frame->goaway.opaque_data
                         ? (char *) frame->goaway.opaque_data : "",
                         BL_STR_ARGS(&c->peer));
        }

        break;

    case NGHTTP2_RST_STREAM:
        if (frame->rst_stream.error_code == NGHTTP2_NO_ERROR) {
            break;
        }

        st = nghttp2_session_get_stream_user_data(session,
                                                  frame->hd.stream_id);

        if (st == NULL || !st->refused) {
            bl_log_error(BL_LOG_INFO, 0,
                         "HTTP/2 stream %d reset: %s, client: %.*s",
                         (int) frame->hd.stream_id,
                         nghttp2_http2_strerror(frame->rst_stream.error_code),
                         BL_STR_ARGS(&c->peer));
        }

        break;

    default:
        break;
    }

    return 0;
}


static int
bl_h2_on_error(nghttp2_session *session, int lib_error_code,
    const char *msg, size_t len, void *user_data)
{
    bl_h2_conn_t  *c;

    BL_UNUSED(session);
    BL_UNUSED(lib_error_code);

    c = user_data;

    /* the details of what on_frame_send() logs */

    bl_log_debug("nghttp2: %.*s, client: %.*s", (int) len, msg,
                 BL_STR_ARGS(&c->peer));

    return 0;
}


/* a call's responses, as the peer's flow control lets nghttp2 take them */

static bl_h2_ssize_t
bl_h2_read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
    void *user_data)
{
    size_t           n;
    bl_h2_stream_t  *st;

    BL_UNUSED(session);
    BL_UNUSED(stream_id);
    BL_UNUSED(user_data);

    st = source->ptr;

    n = bl_min(length, bl_buf_size(&st->out));

    if (n > 0) {
        memcpy(buf, st->out.pos, n);
        bl_buf_consume(&st->out, n);
    }

    if (bl_buf_size(&st->out) > 0) {
        return (bl_h2_ssize_t) n;
    }

    if (st->ended) {
        /* the status goes in trailers after the last DATA */
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;

        if (bl_h2_submit_trailers(st, NULL) != BL_OK) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }

        return (bl_h2_ssize_t) n;
    }

    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }

    return (bl_h2_ssize_t) n;
}


/* calls */

static bl_int_t
bl_h2_grpc_content_type(const bl_str_t *ct)
{
    static const char  base[] = "application/grpc";

    /* grpc-go's test: "application/grpc", or it followed by '+' or ';' */

    if (ct->len < sizeof(base) - 1
        || memcmp(ct->data, base, sizeof(base) - 1) != 0)
    {
        return 0;
    }

    return ct->len == sizeof(base) - 1
           || ct->data[sizeof(base) - 1] == '+'
           || ct->data[sizeof(base) - 1] == ';';
}


/* the request headers are complete: check them as grpc-go does */

static void
bl_h2_stream_start(bl_h2_stream_t *st)
{
    char                     err[128], text[256];
    int64_t                  ms;
    const bl_grpc_method_t  *m;

    if (st->refused) {
        /* nghttp2 is resetting it */
        return;
    }

    if (!bl_h2_grpc_content_type(&st->content_type)) {
        snprintf(text, sizeof(text),
                 "invalid gRPC request content-type \"%.*s\"",
                 (int) st->content_type.len,
                 st->content_type.data ? (char *) st->content_type.data : "");
        bl_h2_stream_reject(st, "415", BL_GRPC_INVALID_ARGUMENT, text);
        return;
    }

    ms = 0;

    if (st->timeout.data != NULL
        && bl_grpc_timeout_parse(st->timeout.data, st->timeout.len, &ms,
                                 err, sizeof(err))
           != BL_OK)
    {
        snprintf(text, sizeof(text), "malformed grpc-timeout: %s", err);
        bl_h2_stream_reject(st, "400", BL_GRPC_INTERNAL, text);
        return;
    }

    if (!bl_h2_is(st->method.data, st->method.len, "POST")) {
        snprintf(text, sizeof(text),
                 "Received a HEADERS frame with :method \"%.*s\" which "
                 "should be POST", (int) st->method.len,
                 st->method.data ? (char *) st->method.data : "");
        bl_h2_stream_reject(st, "405", BL_GRPC_INTERNAL, text);
        return;
    }

    m = bl_grpc_find_method(&st->path);

    if (m == NULL) {
        bl_grpc_unknown_method_text(&st->path, text, sizeof(text));
        bl_log_debug("%s, client: %.*s", text, BL_STR_ARGS(&st->conn->peer));
        bl_h2_stream_reject(st, "200", BL_GRPC_UNIMPLEMENTED, text);
        return;
    }

    if (st->encoding.data != NULL
        && !bl_h2_is(st->encoding.data, st->encoding.len, "identity"))
    {
        snprintf(text, sizeof(text),
                 "grpc: Decompressor is not installed for grpc-encoding "
                 "\"%.*s\"", BL_STR_ARGS(&st->encoding));
        bl_h2_stream_reject(st, "200", BL_GRPC_UNIMPLEMENTED, text);
        return;
    }

    st->call.method = m;
    st->started = 1;
    st->active = 1;

    if (st->timeout.data != NULL) {
        st->call.deadline = bl_msec_now() + ms;
        ev_timer_set(&st->deadline_ev, (ev_tstamp) ms / 1000.0, 0.0);
        ev_timer_start(bl_loop, &st->deadline_ev);
    }
}


static void
bl_h2_stream_data(bl_h2_stream_t *st, const u_char *data, size_t len)
{
    bl_int_t                 rc;
    bl_str_t                 msg;
    const u_char            *pos, *last;
    const bl_grpc_method_t  *m;

    if (!st->active) {
        /* answered already (or rejected): the rest is dropped */
        return;
    }

    m = st->call.method;
    pos = data;
    last = data + len;

    while (pos < last && st->active) {

        rc = bl_grpc_frame_parse(&st->parser, &pos, last, &msg);

        if (rc == BL_AGAIN) {
            return;
        }

        if (rc == BL_ERROR) {
            bl_log_error(BL_LOG_INFO, 0, "%s, stream %d, client: %.*s",
                         st->parser.err, (int) st->id,
                         BL_STR_ARGS(&st->conn->peer));
            bl_h2_stream_fail(st, st->parser.status, st->parser.err);
            return;
        }

        if (m->flags & BL_GRPC_CLIENT_STREAM) {
            st->delivered = 1;
            m->on_message(&st->call, msg.data, msg.len);
            continue;
        }

        /* unary and server-streaming: one message, given at half-close */

        if (st->nrequests++ > 0) {
            bl_log_error(BL_LOG_INFO, 0,
                         "client sent a second request message for "
                         "non-client-streaming %s, client: %.*s", m->path,
                         BL_STR_ARGS(&st->conn->peer));
            bl_h2_stream_fail(st, BL_GRPC_INTERNAL,
                              "grpc: received more than one request "
                              "message for a non-client-streaming RPC");
            return;
        }

        if (msg.len == 0) {
            st->request.data = (u_char *) "";
            st->request.len = 0;
            continue;
        }

        st->request.data = bl_pnalloc(st->call.pool, msg.len);
        if (st->request.data == NULL) {
            bl_h2_stream_fail(st, BL_GRPC_RESOURCE_EXHAUSTED,
                              "grpc: out of memory for the request");
            return;
        }

        memcpy(st->request.data, msg.data, msg.len);
        st->request.len = msg.len;
    }
}


static void
bl_h2_stream_half_close(bl_h2_stream_t *st)
{
    const bl_grpc_method_t  *m;

    if (!st->active) {
        return;
    }

    if (!bl_grpc_frame_idle(&st->parser)) {
        bl_log_error(BL_LOG_INFO, 0,
                     "client ended stream %d inside a gRPC message, "
                     "client: %.*s", (int) st->id,
                     BL_STR_ARGS(&st->conn->peer));
        bl_h2_stream_fail(st, BL_GRPC_INTERNAL, "unexpected EOF");
        return;
    }

    m = st->call.method;

    if (!(m->flags & BL_GRPC_CLIENT_STREAM)) {

        if (st->nrequests == 0) {
            bl_log_error(BL_LOG_INFO, 0,
                         "client sent no request message for %s, "
                         "client: %.*s", m->path,
                         BL_STR_ARGS(&st->conn->peer));
            bl_h2_stream_fail(st, BL_GRPC_INTERNAL,
                              "grpc: no request message received for a "
                              "non-client-streaming RPC");
            return;
        }

        st->delivered = 1;
        m->on_message(&st->call, st->request.data, st->request.len);
        return;
    }

    if (m->on_half_close != NULL) {
        st->delivered = 1;
        m->on_half_close(&st->call);
        return;
    }

    if (!st->delivered) {
        /* a stream the service never heard of and has nothing to do */
        st->active = 0;
        bl_h2_stream_end(st, BL_GRPC_OK, NULL, 0);
    }
}


static void
bl_h2_deadline_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_h2_stream_t  *st;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    st = w->data;

    bl_log_debug("deadline exceeded on stream %d, client: %.*s",
                 (int) st->id, BL_STR_ARGS(&st->conn->peer));

    bl_h2_stream_fail(st, BL_GRPC_DEADLINE_EXCEEDED,
                      "context deadline exceeded");
}


/* the service lets the call go: exactly once, if it knew of it */

static void
bl_h2_stream_cancel(bl_h2_stream_t *st)
{
    if (ev_is_active(&st->deadline_ev)) {
        ev_timer_stop(bl_loop, &st->deadline_ev);
    }

    if (!st->active) {
        return;
    }

    st->active = 0;

    if (st->delivered && st->call.method->on_cancel != NULL) {
        st->call.method->on_cancel(&st->call);
    }
}


/* the transport ends a running call with an error status */

static void
bl_h2_stream_fail(bl_h2_stream_t *st, int status, const char *text)
{
    bl_h2_stream_cancel(st);
    bl_h2_stream_finalize(st, "200", status, (const u_char *) text,
                          strlen(text));
}


/* headers we do not take: grpc-go's early abort, before any call */

static void
bl_h2_stream_reject(bl_h2_stream_t *st, const char *http_status, int status,
    const char *text)
{
    bl_h2_stream_finalize(st, http_status, status, (const u_char *) text,
                          strlen(text));
}


void
bl_h2_stream_end(bl_h2_stream_t *st, int status, const u_char *msg,
    size_t len)
{
    bl_h2_stream_finalize(st, "200", status, msg, len);
}


static void
bl_h2_stream_finalize(bl_h2_stream_t *st, const char *http_status,
    int status, const u_char *msg, size_t len)
{
    if (st->ended || st->closed || st->conn->closing) {
        return;
    }

    if (ev_is_active(&st->deadline_ev)) {
        ev_timer_stop(bl_loop, &st->deadline_ev);
    }

    st->ended = 1;
    st->status = status;

    if (len > 0
        && bl_percent_encode_pool(st->call.pool, &st->message, msg, len)
           != BL_OK)
    {
        st->message.len = 0;
    }

    if (!st->headers_sent && bl_buf_size(&st->out) == 0) {
        /* Trailers-Only: one HEADERS frame with END_STREAM */
        if (bl_h2_submit_trailers(st, http_status) != BL_OK) {
            bl_h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            return;
        }

        bl_h2_conn_post(st->conn);
        return;
    }

    (void) bl_h2_stream_output(st);
}


bl_int_t
bl_h2_stream_output(bl_h2_stream_t *st)
{
    int                     rv;
    nghttp2_nv              nv[2];
    bl_h2_conn_t           *c;
#if (HAVE_NGHTTP2_SUBMIT_RESPONSE2)
    nghttp2_data_provider2  prd;
#else
    nghttp2_data_provider   prd;
#endif

    c = st->conn;

    if (st->closed || st->trailers_sent || c->closing) {
        return BL_ERROR;
    }

    if (!st->headers_sent) {
        bl_h2_nv(&nv[0], ":status", "200", 3);
        bl_h2_nv(&nv[1], "content-type", "application/grpc",
                 sizeof("application/grpc") - 1);

        prd.source.ptr = st;
        prd.read_callback = bl_h2_read_data;

#if (HAVE_NGHTTP2_SUBMIT_RESPONSE2)
        rv = nghttp2_submit_response2(c->session, st->id, nv, 2, &prd);
#else
        rv = nghttp2_submit_response(c->session, st->id, nv, 2, &prd);
#endif

        if (rv != 0) {
            bl_log_error(BL_LOG_ERR, 0,
                         "nghttp2_submit_response() failed: %s, "
                         "client: %.*s", nghttp2_strerror(rv),
                         BL_STR_ARGS(&c->peer));
            bl_h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            return BL_ERROR;
        }

        st->headers_sent = 1;

    } else if (st->deferred) {
        rv = nghttp2_session_resume_data(c->session, st->id);

        if (rv != 0) {
            bl_log_error(BL_LOG_ERR, 0,
                         "nghttp2_session_resume_data() failed: %s, "
                         "client: %.*s", nghttp2_strerror(rv),
                         BL_STR_ARGS(&c->peer));
            bl_h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            return BL_ERROR;
        }

        st->deferred = 0;
    }

    bl_h2_conn_post(c);

    return BL_OK;
}


/*
 * The status: trailers after DATA (http_status NULL), or a Trailers-Only
 * response.  A client still sending is not reset: grpc-go's RST_STREAM
 * NO_ERROR makes grpc-core clients whose request is still on its way
 * report "Received RST_STREAM with error code 0" instead of the status.
 * Clients end or reset the stream themselves on seeing the status; its
 * rest is dropped meanwhile, and it counts against the client's own
 * concurrent streams.
 */

static bl_int_t
bl_h2_submit_trailers(bl_h2_stream_t *st, const char *http_status)
{
    int            rv;
    char           code[16];
    size_t         n;
    nghttp2_nv     nv[4];
    bl_h2_conn_t  *c;

    c = st->conn;
    n = 0;

    if (http_status != NULL) {
        bl_h2_nv(&nv[n], ":status", http_status, strlen(http_status));
        n++;
        bl_h2_nv(&nv[n], "content-type", "application/grpc",
                 sizeof("application/grpc") - 1);
        n++;
    }

    bl_h2_nv(&nv[n], "grpc-status", code,
             (size_t) snprintf(code, sizeof(code), "%d", st->status));
    n++;

    if (st->message.len > 0) {
        bl_h2_nv(&nv[n], "grpc-message", st->message.data, st->message.len);
        n++;
    }

    if (http_status != NULL) {
#if (HAVE_NGHTTP2_SUBMIT_RESPONSE2)
        rv = nghttp2_submit_response2(c->session, st->id, nv, n, NULL);
#else
        rv = nghttp2_submit_response(c->session, st->id, nv, n, NULL);
#endif

    } else {
        rv = nghttp2_submit_trailer(c->session, st->id, nv, n);
    }

    if (rv != 0) {
        bl_log_error(BL_LOG_ERR, 0,
                     "submitting the status of stream %d failed: %s, "
                     "client: %.*s", (int) st->id, nghttp2_strerror(rv),
                     BL_STR_ARGS(&c->peer));
        return BL_ERROR;
    }

    st->headers_sent = 1;
    st->trailers_sent = 1;

    return BL_OK;
}


void
bl_h2_stream_reset(bl_h2_stream_t *st, uint32_t code)
{
    int  rv;

    st->refused = 1;

    rv = nghttp2_submit_rst_stream(st->conn->session, NGHTTP2_FLAG_NONE,
                                   st->id, code);
    if (rv != 0) {
        bl_log_error(BL_LOG_ERR, 0,
                     "nghttp2_submit_rst_stream() failed: %s, client: %.*s",
                     nghttp2_strerror(rv), BL_STR_ARGS(&st->conn->peer));
    }

    bl_h2_conn_post(st->conn);
}


static void
bl_h2_stream_free(bl_h2_stream_t *st)
{
    if (ev_is_active(&st->deadline_ev)) {
        ev_timer_stop(bl_loop, &st->deadline_ev);
    }

    bl_grpc_frame_parser_free(&st->parser);
    bl_buf_release(&st->out);
    bl_pool_destroy(st->call.pool);
}
