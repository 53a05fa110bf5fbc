/*
 * Ending HTTP/2 connections as a worker stops: gracefully (GOAWAY, the
 * calls in flight finish) or at once (every call answered UNAVAILABLE).
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_h2.h>


static void bl_h2_conn_drain(bl_h2_conn_t *c);
static void bl_h2_conn_drain_calls(bl_h2_conn_t *c);


void
bl_h2_shutdown(int graceful)
{
    bl_h2_link_t  *l, *next;
    bl_h2_conn_t  *c;

    if (bl_h2_conns.next == NULL) {
        /* bl_h2_init() did not run: no connection ever */
        return;
    }

    for (l = bl_h2_conns.next; l != &bl_h2_conns; l = next) {
        next = l->next;
        c = bl_h2_list_data(l, bl_h2_conn_t, link);

        if (c->session == NULL) {
            /* still in the TLS handshake or silent: no call to finish */
            bl_h2_conn_close(c);
            continue;
        }

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
        bl_h2_conn_drain_calls(c);
        return;
    }

    bl_h2_conn_drain_calls(c);

    ev_timer_set(&c->goaway_ev, BL_H2_GOAWAY_DELAY, 0.0);
    ev_timer_start(bl_loop, &c->goaway_ev);

    bl_h2_conn_post(c);
}


/*
 * Long-lived calls are told after the GOAWAY was queued, so the client
 * reads that first and opens the call it retries on a new connection.
 */
static void
bl_h2_conn_drain_calls(bl_h2_conn_t *c)
{
    bl_h2_link_t    *l, *next;
    bl_h2_stream_t  *st;
    void           (*drain)(bl_grpc_call_t *call);

    for (l = c->streams.next; l != &c->streams; l = next) {
        next = l->next;
        st = bl_h2_list_data(l, bl_h2_stream_t, link);
        drain = st->call.on_drain;
        if (st->active && st->delivered && drain) {
            st->call.on_drain = NULL;
            drain(&st->call);
        }
    }
}


void
bl_h2_goaway_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);

    bl_h2_conn_goaway(w->data);
}


void
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

void
bl_h2_conn_abort(bl_h2_conn_t *c, int answer)
{
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
        rv = bl_h2_mem_send(c->session, &data);

        if (rv <= 0 || bl_buf_append(&c->out, data, (size_t) rv) != BL_OK) {
            break;
        }

        if (bl_buf_size(&c->out) >= BL_H2_OUT_BOUND) {
            break;
        }
    }

    bl_h2_conn_send_now(c);
    bl_h2_conn_close(c);
}

