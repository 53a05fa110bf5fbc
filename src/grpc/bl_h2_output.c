/*
 * A call's response on its stream: the HEADERS, its messages as DATA
 * when the peer's flow control lets nghttp2 take them (a deferred data
 * source, resumed as the service queues more), the status in trailers
 * (or Trailers-Only), and RST_STREAM.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_h2.h>


static bl_h2_ssize_t bl_h2_read_data(nghttp2_session *session,
    int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
    nghttp2_data_source *source, void *user_data);


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

    /*
     * Drained: a buffer that grew for a burst (a watch stream's catch-up
     * may queue megabytes) is given back, so that thousands of long-lived
     * streams hold memory only while they have something to send.
     */
    if ((size_t) (st->out.end - st->out.data) > BL_H2_OUT_KEEP) {
        bl_buf_release(&st->out);
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

bl_int_t
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
