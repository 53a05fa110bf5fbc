/*
 * nghttp2's callbacks for a server session: request streams open, their
 * headers and DATA arrive, streams close, and what we send is logged
 * when it reports a client's error.  The calls themselves are
 * bl_h2_stream.c's.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_h2.h>


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


void
bl_h2_session_callbacks(nghttp2_session_callbacks *cbs)
{
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
}


static int
bl_h2_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
    void *user_data)
{
    bl_h2_conn_t    *c;
    bl_h2_stream_t  *st;

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    {
        return 0;
    }

    c = user_data;

    st = bl_h2_stream_create(c, frame->hd.stream_id);
    if (st == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    if (nghttp2_session_set_stream_user_data(session, st->id, st) != 0) {
        bl_h2_stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    bl_h2_list_add(&c->streams, &st->link);

    return 0;
}


/*
 * A request header as HTTP/2 allows it (nghttp2's own HTTP checks are off,
 * see bl_h2_init()): names in lower case, the four request pseudo-headers
 * once each and before the others, no connection-specific fields, TE only
 * "trailers", no CR, LF or NUL in values.  :authority may be any value,
 * as grpc-go takes it.  BL_ERROR: the stream is reset.
 */
static bl_int_t
bl_h2_check_header(bl_h2_stream_t *st, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen)
{
    static const bl_str_t  pseudo[] = {
        bl_string(":method"), bl_string(":scheme"), bl_string(":path"),
        bl_string(":authority")
    };
    static const bl_str_t  hop[] = {
        bl_string("connection"), bl_string("keep-alive"),
        bl_string("proxy-connection"), bl_string("transfer-encoding"),
        bl_string("upgrade")
    };
    const char            *why;
    size_t                 i;

    why = NULL;

    if (!nghttp2_check_header_name(name, namelen)) {
        why = "an invalid header name";

    } else if (!nghttp2_check_header_value(value, valuelen)) {
        why = "an invalid header value";

    } else if (namelen > 0 && name[0] == ':') {
        for (i = 0; i < bl_nelems(pseudo); i++) {
            if (namelen == pseudo[i].len
                && memcmp(name, pseudo[i].data, namelen) == 0)
            {
                break;
            }
        }
        if (i == bl_nelems(pseudo)) {
            why = "an unknown pseudo-header";
        } else if (st->regular) {
            why = "a pseudo-header after a regular header";
        } else if (st->pseudo & (1u << i)) {
            why = "a repeated pseudo-header";
        } else {
            st->pseudo |= 1u << i;
        }

    } else {
        st->regular = 1;
        for (i = 0; i < bl_nelems(hop); i++) {
            if (namelen == hop[i].len
                && memcmp(name, hop[i].data, namelen) == 0)
            {
                why = "a connection-specific header";
            }
        }
        if (bl_h2_is(name, namelen, "te")
            && !bl_h2_is(value, valuelen, "trailers"))
        {
            why = "TE other than \"trailers\"";
        }
    }

    if (why == NULL) {
        return BL_OK;
    }

    bl_log_error(BL_LOG_INFO, 0, "client sent %s (\"%*s\") on stream %d, "
                 "client: %.*s", why, (int) bl_min(namelen, 64),
                 (const char *) name, (int) st->id,
                 BL_STR_ARGS(&st->conn->peer));
    return BL_ERROR;
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

    if (bl_h2_check_header(st, name, namelen, value, valuelen) != BL_OK) {
        st->refused = 1;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

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

    case NGHTTP2_HEADERS:
        /*
         * The answer is complete (trailers, or Trailers-Only) while the
         * client is still sending its request: ask it to stop, without
         * error, as RFC 9113 8.1 allows and grpc-go does; a client that
         * stops its upload on an early error would otherwise wait for a
         * stream that nobody closes.
         */
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            && nghttp2_session_get_stream_remote_close(session,
                                                       frame->hd.stream_id)
               == 0)
        {
            (void) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
                                             frame->hd.stream_id,
                                             NGHTTP2_NO_ERROR);
        }

        break;

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
