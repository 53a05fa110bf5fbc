/*
 * grpc.health.v1.Health, as grpc-go's health server that etcd registers,
 * with the state that GET /health uses: SERVING while this worker's
 * database pool has a connection up, NOT_SERVING while it has none.
 *
 *   Check   the status of "" (the server) or of one of the etcd services
 *           this server serves; any other name fails with NOT_FOUND
 *           "unknown service", as grpc-go answers
 *   Watch   the status at once, then again each time it changes (polled
 *           every BL_ETCD_HEALTH_POLL_MSEC while anyone watches); an
 *           unknown name gets SERVICE_UNKNOWN and the stream stays open,
 *           as grpc-go does
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_etcd.h>
#include <health.pb-c.h>

#define BL_ETCD_HEALTH_POLL_MSEC  100

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus
    bl_health_status_e;

#define BL_HEALTH_SERVING                                                     \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define BL_HEALTH_NOT_SERVING                                                 \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define BL_HEALTH_SERVICE_UNKNOWN                                             \
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

typedef struct bl_etcd_health_watch_s  bl_etcd_health_watch_t;

struct bl_etcd_health_watch_s {
    bl_etcd_health_watch_t  *next;
    bl_etcd_health_watch_t  *prev;
    bl_grpc_call_t          *call;
    bl_health_status_e       sent;
};

static const char  *bl_etcd_health_services[] = {
    "",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
};

static bl_etcd_health_watch_t  *bl_etcd_health_watches;
static ev_timer                  bl_etcd_health_timer;


static int
bl_etcd_health_known(const char *service)
{
    size_t  i;

    for (i = 0; i < bl_nelems(bl_etcd_health_services); i++) {
        if (strcmp(service, bl_etcd_health_services[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static bl_health_status_e
bl_etcd_health_now(void)
{
    return bl_storage_available() == BL_OK ? BL_HEALTH_SERVING
                                           : BL_HEALTH_NOT_SERVING;
}

static Grpc__Health__V1__HealthCheckRequest *
bl_etcd_health_request(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest  *r;

    r = grpc__health__v1__health_check_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "HealthCheckRequest");
    }
    return r;
}

static void
bl_etcd_health_check(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest   *r;
    Grpc__Health__V1__HealthCheckResponse   resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    r = bl_etcd_health_request(call, msg, len);
    if (r == NULL) {
        return;
    }
    if (!bl_etcd_health_known(r->service)) {
        bl_grpc_finish(call, BL_GRPC_NOT_FOUND, "unknown service");
        return;
    }
    resp.status = bl_etcd_health_now();
    bl_etcd_reply(call, &resp.base);
}


/* Watch */

static void
bl_etcd_health_send(bl_etcd_health_watch_t *w, bl_health_status_e status)
{
    Grpc__Health__V1__HealthCheckResponse  resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    resp.status = status;
    w->sent = status;
    /* BL_ERROR: being cancelled, on_cancel follows */
    (void) bl_grpc_send(w->call, &resp.base);
}

static void
bl_etcd_health_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
    bl_etcd_health_watch_t  *w, *next;
    bl_health_status_e       now;

    BL_UNUSED(loop);
    BL_UNUSED(t);
    BL_UNUSED(revents);

    now = bl_etcd_health_now();
    for (w = bl_etcd_health_watches; w != NULL; w = next) {
        next = w->next;
        if (w->sent != now && w->sent != BL_HEALTH_SERVICE_UNKNOWN) {
            bl_etcd_health_send(w, now);
        }
    }
}

static void
bl_etcd_health_watch(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_health_watch_t                *w;
    Grpc__Health__V1__HealthCheckRequest  *r;

    r = bl_etcd_health_request(call, msg, len);
    if (r == NULL) {
        return;
    }
    w = bl_pcalloc(call->pool, sizeof(bl_etcd_health_watch_t));
    if (w == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = call;
    call->data = w;

    w->next = bl_etcd_health_watches;
    if (w->next != NULL) {
        w->next->prev = w;
    }
    bl_etcd_health_watches = w;

    if (!ev_is_active(&bl_etcd_health_timer)) {
        ev_timer_init(&bl_etcd_health_timer, bl_etcd_health_poll,
                      BL_ETCD_HEALTH_POLL_MSEC / 1000.0,
                      BL_ETCD_HEALTH_POLL_MSEC / 1000.0);
        ev_timer_start(bl_loop, &bl_etcd_health_timer);
    }

    bl_etcd_health_send(w, bl_etcd_health_known(r->service)
                           ? bl_etcd_health_now()
                           : BL_HEALTH_SERVICE_UNKNOWN);
}

static void
bl_etcd_health_unwatch(bl_grpc_call_t *call)
{
    bl_etcd_health_watch_t  *w = call->data;

    if (w == NULL) {
        return;
    }
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        bl_etcd_health_watches = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    call->data = NULL;
    if (bl_etcd_health_watches == NULL) {
        ev_timer_stop(bl_loop, &bl_etcd_health_timer);
    }
}

const bl_grpc_method_t  bl_etcd_health_methods[] = {
    { "/grpc.health.v1.Health/Check", BL_GRPC_UNARY, bl_etcd_health_check,
      NULL, NULL },
    { "/grpc.health.v1.Health/Watch", BL_GRPC_SERVER_STREAM,
      bl_etcd_health_watch, NULL, bl_etcd_health_unwatch },
};

const size_t  bl_etcd_health_nmethods = bl_nelems(bl_etcd_health_methods);
