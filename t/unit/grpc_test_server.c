/*
 * A gRPC server with test methods, for t/05-grpc-transport.t: the
 * transport alone (no etcd, no database), with the minimum of process
 * set-up that the worker normally does.
 *
 *   grpc_test_server PORT [MAX_RECV_MESSAGE [MAX_CONCURRENT_STREAMS]]
 *
 * With BL_TEST_TLS_CERT and BL_TEST_TLS_KEY (PEM files) in the
 * environment it speaks TLS (ALPN h2) instead of h2c, and with
 * BL_TEST_TLS_CA too it asks clients for a certificate from that CA.
 *
 * Methods (messages are test.Echo below, a descriptor written by hand):
 *   /test.Echo/Unary    echo data (or `size` bytes of 'x'), after
 *                       `delay_ms` from a timer if set; `status` and
 *                       `message` end the call with that status instead
 *   /test.Echo/Delayed  the same (a name for the deadline tests)
 *   /test.Echo/Stream   bidi: echoes each message; ends OK at half-close
 *   /test.Echo/Serve    server streaming: `count` messages of `size`
 *   /test.Echo/Stats    "started=N finished=N cancelled=N active=N bad=N"
 *
 * SIGTERM drains (graceful), SIGINT closes at once; the exit status is 1
 * if a call was cancelled twice or after it finished, or is left over.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_server.h>
#include <bl_tls.h>

#include <arpa/inet.h>
#include <signal.h>


typedef struct {
    ProtobufCMessage     base;
    ProtobufCBinaryData  data;
    uint32_t             delay_ms;
    uint32_t             size;
    uint32_t             status;
    char                *message;
    uint32_t             count;
} test_echo_t;

static void test_echo_init(ProtobufCMessage *m);

static const ProtobufCFieldDescriptor  test_echo_fields[] = {
    { "data", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BYTES, 0,
      offsetof(test_echo_t, data), NULL, NULL, 0, 0, NULL, NULL },
    { "delay_ms", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0,
      offsetof(test_echo_t, delay_ms), NULL, NULL, 0, 0, NULL, NULL },
    { "size", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0,
      offsetof(test_echo_t, size), NULL, NULL, 0, 0, NULL, NULL },
    { "status", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0,
      offsetof(test_echo_t, status), NULL, NULL, 0, 0, NULL, NULL },
    { "message", 5, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0,
      offsetof(test_echo_t, message), NULL, &protobuf_c_empty_string, 0, 0,
      NULL, NULL },
    { "count", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0,
      offsetof(test_echo_t, count), NULL, NULL, 0, 0, NULL, NULL },
};

/* count, data, delay_ms, message, size, status */
static const unsigned           test_echo_by_name[] = { 5, 0, 1, 4, 2, 3 };
static const ProtobufCIntRange  test_echo_ranges[] = { { 1, 0 }, { 0, 6 } };

static const ProtobufCMessageDescriptor  test_echo_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.Echo", "Echo", "TestEcho",
    "test", sizeof(test_echo_t), 6, test_echo_fields, test_echo_by_name, 1,
    test_echo_ranges, test_echo_init, NULL, NULL, NULL
};


static void
test_echo_init(ProtobufCMessage *m)
{
    test_echo_t  *e;

    e = (test_echo_t *) m;
    memset(e, 0, sizeof(test_echo_t));
    e->base.descriptor = &test_echo_descriptor;
    e->message = (char *) protobuf_c_empty_string;
}


/* one per call, in the call's pool */
typedef struct {
    ev_timer        timer;
    bl_grpc_call_t *call;
    test_echo_t    *req;
    unsigned        done:1;
} test_call_t;


static bl_uint_t  test_started, test_finished, test_cancelled, test_bad;
static u_char    *test_big;
static size_t     test_big_size;


static test_call_t *
test_call(bl_grpc_call_t *call)
{
    test_call_t  *tc;

    if (call->data != NULL) {
        return call->data;
    }

    tc = bl_pcalloc(call->pool, sizeof(test_call_t));
    if (tc == NULL) {
        return NULL;
    }

    tc->call = call;
    call->data = tc;
    test_started++;

    return tc;
}


static void
test_finish(test_call_t *tc, int status, const char *message)
{
    if (tc->done) {
        test_bad++;
        bl_log_error(BL_LOG_ALERT, 0, "test: call finished twice");
        return;
    }

    tc->done = 1;
    test_finished++;
    bl_grpc_finish(tc->call, status, message);
}


static void
test_on_cancel(bl_grpc_call_t *call)
{
    test_call_t  *tc;

    tc = call->data;

    if (tc == NULL || tc->done) {
        test_bad++;
        bl_log_error(BL_LOG_ALERT, 0, "test: on_cancel of a call %s",
                     tc ? "that was done" : "never seen");
        return;
    }

    tc->done = 1;
    test_cancelled++;

    if (ev_is_active(&tc->timer)) {
        ev_timer_stop(bl_loop, &tc->timer);
    }
}


static bl_int_t
test_reply(test_call_t *tc, const test_echo_t *req)
{
    test_echo_t  resp;

    test_echo_init(&resp.base);

    if (req->size > 0) {
        if (req->size > test_big_size) {
            free(test_big);
            test_big = malloc(req->size);
            if (test_big == NULL) {
                return BL_ERROR;
            }
            memset(test_big, 'x', req->size);
            test_big_size = req->size;
        }

        resp.data.data = test_big;
        resp.data.len = req->size;

    } else {
        resp.data = req->data;
    }

    return bl_grpc_send(tc->call, &resp.base);
}


static void
test_answer(test_call_t *tc)
{
    test_echo_t  *req;

    req = tc->req;

    if (req->status != 0) {
        test_finish(tc, (int) req->status, req->message);
        return;
    }

    if (test_reply(tc, req) != BL_OK) {
        /* on_cancel follows */
        return;
    }

    test_finish(tc, BL_GRPC_OK, NULL);
}


static void
test_timer_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);

    test_answer(w->data);
}


static test_echo_t *
test_unpack(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    ProtobufCMessage  *m;

    m = protobuf_c_message_unpack(&test_echo_descriptor,
                                  bl_pool_pb_allocator(call->pool), len, msg);

    return (test_echo_t *) m;
}


static void
test_unary(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    test_call_t  *tc;

    tc = test_call(call);
    if (tc == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }

    tc->req = test_unpack(call, msg, len);

    if (tc->req == NULL) {
        test_finish(tc, BL_GRPC_INTERNAL,
                    "grpc: error unmarshalling request");
        return;
    }

    if (tc->req->delay_ms == 0) {
        test_answer(tc);
        return;
    }

    ev_timer_init(&tc->timer, test_timer_handler,
                  tc->req->delay_ms / 1000.0, 0.0);
    tc->timer.data = tc;
    ev_timer_start(bl_loop, &tc->timer);
}


static void
test_stream_message(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    test_echo_t  *req;
    test_call_t  *tc;

    tc = test_call(call);
    if (tc == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }

    req = test_unpack(call, msg, len);

    if (req == NULL) {
        test_finish(tc, BL_GRPC_INTERNAL,
                    "grpc: error unmarshalling request");
        return;
    }

    if (req->status != 0) {
        test_finish(tc, (int) req->status, req->message);
        return;
    }

    (void) test_reply(tc, req);
}


static void
test_stream_half_close(bl_grpc_call_t *call)
{
    test_call_t  *tc;

    tc = test_call(call);
    if (tc == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }

    test_finish(tc, BL_GRPC_OK, NULL);
}


static void
test_serve(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    uint32_t      i;
    test_call_t  *tc;

    tc = test_call(call);
    if (tc == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }

    tc->req = test_unpack(call, msg, len);

    if (tc->req == NULL) {
        test_finish(tc, BL_GRPC_INTERNAL,
                    "grpc: error unmarshalling request");
        return;
    }

    for (i = 0; i < tc->req->count; i++) {
        if (test_reply(tc, tc->req) != BL_OK) {
            return;
        }
    }

    bl_log_error(BL_LOG_INFO, 0, "test: %zu bytes pending after %u sends",
                 bl_grpc_pending(call), (unsigned) tc->req->count);

    test_finish(tc, BL_GRPC_OK, NULL);
}


static void
test_stats(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    char         text[160];
    test_echo_t  resp;

    BL_UNUSED(msg);
    BL_UNUSED(len);

    snprintf(text, sizeof(text),
             "started=%lu finished=%lu cancelled=%lu active=%lu bad=%lu "
             "connections=%lu",
             (unsigned long) test_started, (unsigned long) test_finished,
             (unsigned long) test_cancelled,
             (unsigned long) (test_started - test_finished - test_cancelled),
             (unsigned long) test_bad,
             (unsigned long) bl_grpc_server_connections());

    test_echo_init(&resp.base);
    resp.data.data = (uint8_t *) text;
    resp.data.len = strlen(text);

    if (bl_grpc_send(call, &resp.base) == BL_OK) {
        bl_grpc_finish(call, BL_GRPC_OK, NULL);
    }
}


static const bl_grpc_method_t  test_methods[] = {
    { "/test.Echo/Unary", BL_GRPC_UNARY, test_unary, NULL, test_on_cancel },
    { "/test.Echo/Delayed", BL_GRPC_UNARY, test_unary, NULL,
      test_on_cancel },
    { "/test.Echo/Stream", BL_GRPC_BIDI, test_stream_message,
      test_stream_half_close, test_on_cancel },
    { "/test.Echo/Serve", BL_GRPC_SERVER_STREAM, test_serve, NULL,
      test_on_cancel },
    { "/test.Echo/Stats", BL_GRPC_UNARY, test_stats, NULL, NULL },
};


static ev_signal  test_term_ev, test_int_ev;
static ev_timer   test_drain_ev;


static void
test_drain_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(w);
    BL_UNUSED(revents);

    if (bl_grpc_server_connections() == 0) {
        ev_break(loop, EVBREAK_ALL);
    }
}


static void
test_signal_handler(struct ev_loop *loop, ev_signal *w, int revents)
{
    BL_UNUSED(revents);

    if (w->signum == SIGTERM) {
        bl_log_error(BL_LOG_NOTICE, 0, "test: graceful shutdown");
        bl_grpc_server_shutdown(1);
        ev_timer_init(&test_drain_ev, test_drain_handler, 0.0, 0.01);
        ev_timer_start(loop, &test_drain_ev);
        return;
    }

    bl_log_error(BL_LOG_NOTICE, 0, "test: fast shutdown");
    bl_grpc_server_shutdown(0);
    ev_break(loop, EVBREAK_ALL);
}


int
main(int argc, char **argv)
{
    int                  fd, one;
    long                 port;
    bl_pool_t           *pool;
    bl_cycle_t           cycle;
    SSL_CTX             *tls;
    bl_listening_t      *ls;
    bl_tls_conf_t        tls_conf;
    struct sockaddr_in  *sin;

    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [MAX_RECV [MAX_STREAMS]]\n",
                argv[0]);
        return 2;
    }

    port = strtol(argv[1], NULL, 10);

    bl_log->level = BL_LOG_INFO;

    if (getenv("BL_TEST_DEBUG") != NULL) {
        bl_log->level = BL_LOG_DEBUG;
    }

    signal(SIGPIPE, SIG_IGN);

    bl_loop = ev_default_loop(0);

    bl_grpc_set_limits(argc > 2 ? (size_t) strtoul(argv[2], NULL, 10) : 0,
                       argc > 3 ? (uint32_t) strtoul(argv[3], NULL, 10) : 0);

    if (bl_grpc_register(test_methods, bl_nelems(test_methods)) != BL_OK) {
        return 1;
    }

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (pool == NULL) {
        return 1;
    }

    memset(&cycle, 0, sizeof(bl_cycle_t));
    cycle.pool = pool;

    if (bl_array_init(&cycle.listening, pool, 1, sizeof(bl_listening_t))
        != BL_OK)
    {
        return 1;
    }

    ls = bl_array_push(&cycle.listening);
    memset(ls, 0, sizeof(bl_listening_t));

    sin = (struct sockaddr_in *) &ls->sockaddr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t) port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ls->socklen = sizeof(struct sockaddr_in);
    bl_str_set(&ls->addr_text, "127.0.0.1");
    ls->where = "grpc_test_server";

    fd = socket(AF_INET, SOCK_STREAM, 0);
    one = 1;

    if (fd == -1
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(int)) == -1
        || bind(fd, (struct sockaddr *) sin, ls->socklen) == -1
        || listen(fd, 511) == -1)
    {
        bl_log_error(BL_LOG_EMERG, errno, "listening on port %ld failed",
                     port);
        return 1;
    }

    ls->fd = fd;

    tls = NULL;

    if (getenv("BL_TEST_TLS_CERT") != NULL
        && getenv("BL_TEST_TLS_KEY") != NULL)
    {
        memset(&tls_conf, 0, sizeof(bl_tls_conf_t));
        tls_conf.certificate.path.data =
                                        (u_char *) getenv("BL_TEST_TLS_CERT");
        tls_conf.certificate.where = "BL_TEST_TLS_CERT";
        tls_conf.certificate_key.path.data =
                                        (u_char *) getenv("BL_TEST_TLS_KEY");
        tls_conf.certificate_key.where = "BL_TEST_TLS_KEY";

        if (getenv("BL_TEST_TLS_CA") != NULL) {
            tls_conf.client_certificate.path.data =
                                        (u_char *) getenv("BL_TEST_TLS_CA");
            tls_conf.client_certificate.where = "BL_TEST_TLS_CA";
            tls_conf.verify_client = BL_TLS_VERIFY_ON;
        }

        tls_conf.protocols = BL_TLS_PROTO_DEFAULT;
        bl_str_set(&tls_conf.ciphers, BL_TLS_DEFAULT_CIPHERS);

        tls = bl_tls_create_ctx(pool, &tls_conf);
        if (tls == NULL) {
            return 1;
        }

        ls->ssl = 1;
    }

    if (bl_grpc_server_start(&cycle, tls) != BL_OK) {
        return 1;
    }

    ev_signal_init(&test_term_ev, test_signal_handler, SIGTERM);
    ev_signal_start(bl_loop, &test_term_ev);
    ev_signal_init(&test_int_ev, test_signal_handler, SIGINT);
    ev_signal_start(bl_loop, &test_int_ev);

    bl_log_error(BL_LOG_NOTICE, 0, "test: serving %s on 127.0.0.1:%ld",
                 tls ? "TLS" : "h2c", port);

    ev_run(bl_loop, 0);

    bl_log_error(BL_LOG_NOTICE, 0,
                 "test: exit started=%lu finished=%lu cancelled=%lu bad=%lu "
                 "connections=%lu",
                 (unsigned long) test_started, (unsigned long) test_finished,
                 (unsigned long) test_cancelled, (unsigned long) test_bad,
                 (unsigned long) bl_grpc_server_connections());

    close(fd);
    free(test_big);
    bl_pool_destroy(pool);

    return (test_bad == 0
            && test_started == test_finished + test_cancelled
            && bl_grpc_server_connections() == 0) ? 0 : 1;
}
