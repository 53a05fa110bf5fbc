/*
 * The gRPC call on a request stream: its headers checked as grpc-go
 * checks them, its messages taken out of DATA, the service told, its
 * deadline, and its end (a status from the service or the transport).
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>
#include <bl_percent.h>
#include <bl_h2.h>


static void bl_h2_deadline_handler(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_h2_stream_reject(bl_h2_stream_t *st, const char *http_status,
    int status, const char *text);
static void bl_h2_stream_finalize(bl_h2_stream_t *st,
    const char *http_status, int status, const u_char *msg, size_t len);
static void bl_h2_stream_observe(bl_h2_stream_t *st, int status);


bl_h2_stream_t *
bl_h2_stream_create(bl_h2_conn_t *c, int32_t id)
{
    bl_pool_t       *pool;
    bl_h2_stream_t  *st;

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (pool == NULL) {
        return NULL;
    }

    st = bl_pcalloc(pool, sizeof(bl_h2_stream_t));
    if (st == NULL) {
        bl_pool_destroy(pool);
        return NULL;
    }

    st->call.pool = pool;
    st->call.peer = &c->peer;
    st->conn = c;
    st->id = id;

    ev_init(&st->deadline_ev, bl_h2_deadline_handler);
    st->deadline_ev.data = st;

    bl_grpc_frame_parser_init(&st->parser, bl_grpc_max_recv_message);

    bl_h2_nstreams++;

    return st;
}


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

void
bl_h2_stream_start(bl_h2_stream_t *st)
{
    char                     err[128], text[256];
    int64_t                  ms;
    const bl_grpc_method_t  *m;

    if (st->refused) {
        /* nghttp2 is resetting it */
        return;
    }

    if ((st->pseudo & 0x7) != 0x7) {
        /* :method, :scheme and :path are required (RFC 9113 8.3.1) */
        bl_log_error(BL_LOG_INFO, 0, "client sent a request without "
                     ":method, :scheme or :path on stream %d, client: %.*s",
                     (int) st->id, BL_STR_ARGS(&st->conn->peer));
        st->refused = 1;
        (void) nghttp2_submit_rst_stream(st->conn->session,
                                         NGHTTP2_FLAG_NONE, st->id,
                                         NGHTTP2_PROTOCOL_ERROR);
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

    if (bl_h2_observer != NULL) {
        st->start_usec = bl_h2_usec();
        bl_h2_observer->started(m);
    }

    if (st->timeout.data != NULL) {
        st->call.deadline = bl_msec_now() + ms;
        ev_timer_set(&st->deadline_ev, (ev_tstamp) ms / 1000.0, 0.0);
        ev_timer_start(bl_loop, &st->deadline_ev);
    }
}


void
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

        if (bl_h2_observer != NULL) {
            bl_h2_observer->msg_received(m);
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


void
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

void
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

void
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

    bl_h2_stream_observe(st, status);

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


/* a started call's end, counted once: its status, or CANCELLED */

static void
bl_h2_stream_observe(bl_h2_stream_t *st, int status)
{
    if (bl_h2_observer == NULL || !st->started || st->observed
        || st->start_usec == 0)
    {
        return;
    }

    st->observed = 1;
    bl_h2_observer->handled(st->call.method, status,
                            bl_h2_usec() - st->start_usec);
}


void
bl_h2_stream_free(bl_h2_stream_t *st)
{
    /* the client reset it, or the connection went, before a status */
    bl_h2_stream_observe(st, BL_GRPC_CANCELLED);

    if (ev_is_active(&st->deadline_ev)) {
        ev_timer_stop(bl_loop, &st->deadline_ev);
    }

    bl_grpc_frame_parser_free(&st->parser);
    bl_buf_release(&st->out);
    bl_pool_destroy(st->call.pool);

    bl_h2_nstreams--;
}
