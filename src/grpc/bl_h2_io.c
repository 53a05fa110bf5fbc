/*
 * A connection's I/O: bytes from the socket (through TLS if it has it)
 * into nghttp2, frames from nghttp2 to the socket, and closing.
 *
 * Output is bounded: we stop pulling frames out of nghttp2 (and reading
 * requests) while BL_H2_OUT_BOUND bytes wait for the socket.
 *
 * TLS turns "readable" and "writable" around at times: SSL_read() may
 * need the socket writable (a key update to answer) and SSL_write()
 * readable; the tls_*_wants_* flags say which handler must do the
 * other's work.  OpenSSL may also hold decrypted bytes the socket no
 * longer signals: whoever stops reading early feeds the read event
 * again.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_socket.h>
#include <bl_grpc.h>
#include <bl_tls.h>
#include <bl_h2.h>


#define BL_H2_READ_SIZE    (64 * 1024)
/* reads per readiness: a fast client does not keep the loop to itself */
#define BL_H2_READ_ROUNDS  16


static ssize_t bl_h2_recv(bl_h2_conn_t *c, u_char *buf, size_t size);
static ssize_t bl_h2_send(bl_h2_conn_t *c, const u_char *buf, size_t size);
static void bl_h2_read_more_later(bl_h2_conn_t *c);


static bl_h2_link_t   bl_h2_flush_queue;
static ev_prepare     bl_h2_flush_ev;
static u_char         bl_h2_read_buf[BL_H2_READ_SIZE];


void
bl_h2_io_init(void)
{
    bl_h2_list_init(&bl_h2_flush_queue);
    ev_prepare_init(&bl_h2_flush_ev, bl_h2_flush_handler);
}


void
bl_h2_read_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_h2_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    if (c->handshaking) {
        bl_h2_conn_handshake(c);
        return;
    }

    if (c->tls_write_wants_read) {
        /* the write that waited for this goes first; then read on even
         * if paused: the record it waits for is in what we read */
        c->tls_write_wants_read = 0;

        if (bl_h2_conn_flush(c) == BL_DONE) {
            return;
        }

    } else if (c->read_paused) {
        /* an event fed while the output is over the bound */
        return;
    }

    bl_h2_conn_read(c);
}


void
bl_h2_write_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_h2_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    if (c->handshaking) {
        bl_h2_conn_handshake(c);
        return;
    }

    if (c->tls_read_wants_write) {
        c->tls_read_wants_write = 0;
        bl_h2_conn_read(c);          /* it flushes too */
        return;
    }

    (void) bl_h2_conn_flush(c);
}


void
bl_h2_conn_read(bl_h2_conn_t *c)
{
    size_t         kept;
    ssize_t        n;
    bl_int_t       rc;
    bl_uint_t      rounds;
    bl_h2_ssize_t  rv;

    for (rounds = 0; /* void */; rounds++) {

        if (rounds == BL_H2_READ_ROUNDS) {
            /* the socket, or OpenSSL, says when there is more */
            bl_h2_read_more_later(c);
            break;
        }

        /* bytes kept while sniffing come first */
        kept = c->sniff_len;

        if (kept > 0) {
            memcpy(bl_h2_read_buf, c->sniff, kept);
            c->sniff_len = 0;
        }

        n = bl_h2_recv(c, bl_h2_read_buf + kept, BL_H2_READ_SIZE - kept);

        if (n == BL_AGAIN) {
            c->sniff_len = (u_char) kept;
            break;
        }

        if (n == BL_ERROR) {
            bl_h2_conn_close(c);
            return;
        }

        if (n == 0) {
            bl_log_debug("client closed HTTP/2 connection %d, client: %.*s",
                         c->fd, BL_STR_ARGS(&c->peer));
            bl_h2_conn_close(c);
            return;
        }

        if (c->sniffing) {
            rc = bl_h2_conn_sniff(c, bl_h2_read_buf, kept + (size_t) n);

            if (rc == BL_DONE) {
                return;
            }

            if (rc == BL_AGAIN) {
                continue;
            }
        }

#if (HAVE_NGHTTP2_SESSION_MEM_RECV2)
        rv = nghttp2_session_mem_recv2(c->session, bl_h2_read_buf,
                                       kept + (size_t) n);
#else
        rv = nghttp2_session_mem_recv(c->session, bl_h2_read_buf,
                                      kept + (size_t) n);
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

        if (bl_buf_size(&c->out) >= BL_H2_OUT_BOUND) {
            bl_h2_read_more_later(c);
            break;
        }

        /* a short read emptied the socket; OpenSSL returns a record at
         * a time, so TLS reads until it says so */

        if (c->ssl == NULL && (size_t) n < BL_H2_READ_SIZE - kept) {
            break;
        }
    }

    if (c->session != NULL) {
        (void) bl_h2_conn_flush(c);
    }
}


/* reading stopped early: what OpenSSL holds would not wake us again */

static void
bl_h2_read_more_later(bl_h2_conn_t *c)
{
    if (c->ssl != NULL && SSL_has_pending(c->ssl)) {
        ev_feed_event(bl_loop, &c->rev, EV_READ);
    }
}


void
bl_h2_flush_handler(struct ev_loop *loop, ev_prepare *w, int revents)
{
    bl_h2_link_t  *l;
    bl_h2_conn_t  *c;

    BL_UNUSED(revents);

    while (!bl_h2_list_empty(&bl_h2_flush_queue)) {
        l = bl_h2_flush_queue.next;
        c = bl_h2_list_data(l, bl_h2_conn_t, flush_link);
        (void) bl_h2_conn_flush(c);
    }

    ev_prepare_stop(loop, w);
}


void
bl_h2_conn_post(bl_h2_conn_t *c)
{
    if (c->closing || c->session == NULL || bl_h2_linked(&c->flush_link)) {
        return;
    }

    bl_h2_list_add(&bl_h2_flush_queue, &c->flush_link);

    if (!ev_is_active(&bl_h2_flush_ev)) {
        ev_prepare_start(bl_loop, &bl_h2_flush_ev);
    }
}


/*
 * Move frames from nghttp2 to the socket until either has no more room
 * or nothing is left.
 */

bl_int_t
bl_h2_conn_flush(bl_h2_conn_t *c)
{
    ssize_t         n;
    const uint8_t  *data;
    bl_h2_ssize_t   rv;

    if (bl_h2_linked(&c->flush_link)) {
        bl_h2_list_remove(&c->flush_link);
    }

    for ( ;; ) {

        while (bl_buf_size(&c->out) < BL_H2_OUT_BOUND) {

            rv = bl_h2_mem_send(c->session, &data);

            if (rv < 0) {
                bl_log_error(BL_LOG_ERR, 0,
                             "nghttp2_session_mem_send() failed: %s, "
                             "client: %.*s", nghttp2_strerror((int) rv),
                             BL_STR_ARGS(&c->peer));
                bl_h2_conn_close(c);
                return BL_DONE;
            }

            if (rv == 0) {
                break;
            }

            if (bl_buf_append(&c->out, data, (size_t) rv) != BL_OK) {
                bl_h2_conn_close(c);
                return BL_DONE;
            }
        }

        bl_h2_free_closed(c);

        if (bl_buf_size(&c->out) == 0) {
            break;
        }

        n = bl_h2_send(c, c->out.pos, bl_buf_size(&c->out));

        if (n == BL_ERROR) {
            bl_h2_conn_close(c);
            return BL_DONE;
        }

        if (n == BL_AGAIN) {
            if (c->tls_write_wants_read) {
                /* the read handler flushes when the socket is readable */
                return BL_OK;
            }

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

            return BL_OK;
        }

        bl_buf_consume(&c->out, (size_t) n);
    }

    if (ev_is_active(&c->wev) && !c->tls_read_wants_write) {
        ev_io_stop(bl_loop, &c->wev);
    }

    if (c->read_paused) {
        c->read_paused = 0;
        ev_io_start(bl_loop, &c->rev);
        bl_h2_read_more_later(c);
    }

    if (!nghttp2_session_want_read(c->session)
        && !nghttp2_session_want_write(c->session))
    {
        bl_log_debug("HTTP/2 connection %d done, client: %.*s", c->fd,
                     BL_STR_ARGS(&c->peer));
        bl_h2_conn_close(c);
        return BL_DONE;
    }

    return BL_OK;
}


void
bl_h2_conn_send_now(bl_h2_conn_t *c)
{
    ssize_t  n;

    if (bl_buf_size(&c->out) > 0) {
        /* best effort: the connection is closed either way */
        n = bl_h2_send(c, c->out.pos, bl_buf_size(&c->out));
        BL_UNUSED(n);
    }
}


/* bytes read, 0 at the end, BL_AGAIN or BL_ERROR (logged) */

static ssize_t
bl_h2_recv(bl_h2_conn_t *c, u_char *buf, size_t size)
{
    int       want;
    ssize_t   n;

    if (c->ssl != NULL) {
        n = bl_tls_recv(c->ssl, buf, size, &c->peer, &want);

        if (n == BL_AGAIN && want == EV_WRITE) {
            c->tls_read_wants_write = 1;

            if (!ev_is_active(&c->wev)) {
                ev_io_start(bl_loop, &c->wev);
            }

        } else if (n == BL_ERROR) {
            c->tls_failed = 1;
        }

        return n;
    }

    return bl_recv(c->fd, buf, size, &c->peer);
}


/* bytes written (> 0), BL_AGAIN or BL_ERROR (logged) */

static ssize_t
bl_h2_send(bl_h2_conn_t *c, const u_char *buf, size_t size)
{
    int       want;
    ssize_t   n;

    if (c->ssl != NULL) {
        n = bl_tls_send(c->ssl, buf, size, &c->peer, &want);

        if (n == BL_AGAIN && want == EV_READ) {
            c->tls_write_wants_read = 1;

            if (!ev_is_active(&c->rev)) {
                ev_io_start(bl_loop, &c->rev);
            }

        } else if (n == BL_ERROR) {
            c->tls_failed = 1;
        }

        return n;
    }

    return bl_send(c->fd, buf, size, &c->peer);
}


void
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
    ev_timer_stop(bl_loop, &c->timeout_ev);

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

    if (c->session != NULL) {
        nghttp2_session_del(c->session);
    }

    if (c->ssl != NULL) {
        bl_tls_shutdown(c->ssl, !c->tls_failed && !c->handshaking);
    }

    if (c->fd != -1 && close(c->fd) == -1) {
        bl_log_error(BL_LOG_ERR, errno, "close() of socket %d failed, "
                     "client: %.*s", c->fd, BL_STR_ARGS(&c->peer));
    }

    bl_buf_release(&c->out);

    bl_h2_list_remove(&c->link);
    bl_h2_nconns--;

    bl_pool_destroy(c->pool);
}


void
bl_h2_free_closed(bl_h2_conn_t *c)
{
    bl_h2_stream_t  *st;

    while (!bl_h2_list_empty(&c->closed)) {
        st = bl_h2_list_data(c->closed.next, bl_h2_stream_t, link);
        bl_h2_list_remove(&st->link);
        bl_h2_stream_free(st);
    }
}
