/*
 * Accepting gRPC connections in a worker.
 */
#include <bl_core.h>
#include <bl_conf_file.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_h2.h>
#include <bl_grpc_server.h>


/* after EMFILE and the like: how long accepting pauses */
#define BL_GRPC_ACCEPT_PAUSE  0.5
/* connections taken per readiness of a listener, for fairness */
#define BL_GRPC_ACCEPT_BATCH  64


typedef struct {
    ev_io        ev;
    bl_str_t     addr_text;
    SSL_CTX     *tls;           /* NULL: h2c */
} bl_grpc_listener_t;


static void bl_grpc_accept_handler(struct ev_loop *loop, ev_io *w,
    int revents);
static void bl_grpc_accept_resume(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_grpc_accept_enable(int on);


size_t     bl_grpc_max_recv_message = BL_GRPC_DEFAULT_MAX_RECV;
uint32_t   bl_grpc_max_concurrent_streams = BL_GRPC_DEFAULT_MAX_STREAMS;

static bl_grpc_listener_t  *bl_grpc_listeners;
static bl_uint_t            bl_grpc_nlisteners;
static ev_timer             bl_grpc_accept_ev;
static unsigned             bl_grpc_accepting;


void
bl_grpc_set_limits(size_t max_recv_message, uint32_t max_concurrent_streams)
{
    if (max_recv_message != 0) {
        bl_grpc_max_recv_message = max_recv_message;
    }

    if (max_concurrent_streams != 0) {
        bl_grpc_max_concurrent_streams = max_concurrent_streams;
    }
}


bl_int_t
bl_grpc_server_start(bl_cycle_t *cycle, SSL_CTX *tls)
{
    bl_uint_t            i, n;
    bl_listening_t      *ls;
    bl_grpc_listener_t  *l;

    if (bl_h2_init() != BL_OK) {
        return BL_ERROR;
    }

    ls = cycle->listening.elts;
    n = 0;

    for (i = 0; i < cycle->listening.nelts; i++) {
        if (!ls[i].http) {
            n++;
        }
    }

    if (n == 0) {
        bl_log_error(BL_LOG_WARN, 0, "no gRPC listening sockets");
        return BL_OK;
    }

    bl_grpc_listeners = bl_calloc(n * sizeof(bl_grpc_listener_t));
    if (bl_grpc_listeners == NULL) {
        return BL_ERROR;
    }

    ev_init(&bl_grpc_accept_ev, bl_grpc_accept_resume);

    for (i = 0; i < cycle->listening.nelts; i++) {

        if (ls[i].http) {
            continue;
        }

        if (ls[i].ssl && tls == NULL) {
            bl_log_error(BL_LOG_EMERG, 0, "listening socket %.*s (%s) "
                         "wants TLS but has no certificate",
                         BL_STR_ARGS(&ls[i].addr_text),
                         ls[i].where ? ls[i].where : "default");
            return BL_ERROR;
        }

        if (ls[i].fd == -1) {
            bl_log_error(BL_LOG_EMERG, 0,
                         "listening socket %.*s (%s) is not open",
                         BL_STR_ARGS(&ls[i].addr_text),
                         ls[i].where ? ls[i].where : "default");
            return BL_ERROR;
        }

        /* workers race for each connection: the losers get EAGAIN */

        if (bl_nonblocking(ls[i].fd) != BL_OK) {
            return BL_ERROR;
        }

        l = &bl_grpc_listeners[bl_grpc_nlisteners++];
        l->addr_text = ls[i].addr_text;
        l->tls = ls[i].ssl ? tls : NULL;

        ev_io_init(&l->ev, bl_grpc_accept_handler, ls[i].fd, EV_READ);
        l->ev.data = l;
    }

    bl_grpc_accepting = 1;
    bl_grpc_accept_enable(1);

    return BL_OK;
}


static void
bl_grpc_accept_enable(int on)
{
    bl_uint_t  i;

    for (i = 0; i < bl_grpc_nlisteners; i++) {
        if (on) {
            ev_io_start(bl_loop, &bl_grpc_listeners[i].ev);

        } else {
            ev_io_stop(bl_loop, &bl_grpc_listeners[i].ev);
        }
    }
}


static void
bl_grpc_accept_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    int                      fd;
    bl_uint_t                i;
    socklen_t                socklen;
    bl_grpc_listener_t      *l;
    struct sockaddr_storage  sa;

    BL_UNUSED(revents);

    l = w->data;

    for (i = 0; i < BL_GRPC_ACCEPT_BATCH; i++) {
        fd = bl_accept(w->fd, &sa, &socklen, &l->addr_text,
                       BL_GRPC_ACCEPT_PAUSE);
        if (fd == BL_DECLINED) {
            bl_grpc_accept_enable(0);
            ev_timer_set(&bl_grpc_accept_ev, BL_GRPC_ACCEPT_PAUSE, 0.0);
            ev_timer_start(loop, &bl_grpc_accept_ev);
            return;
        }
        if (fd < 0) {
            return;               /* none waiting, or an error (logged) */
        }

        (void) bl_h2_conn_open(fd, (struct sockaddr *) &sa, socklen,
                               l->tls);
    }
}


static void
bl_grpc_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    if (bl_grpc_accepting) {
        bl_grpc_accept_enable(1);
    }
}


void
bl_grpc_server_stop_accepting(void)
{
    if (!bl_grpc_accepting) {
        return;
    }

    bl_grpc_accepting = 0;
    bl_grpc_accept_enable(0);
    ev_timer_stop(bl_loop, &bl_grpc_accept_ev);
}


void
bl_grpc_server_resume_accepting(void)
{
    if (bl_grpc_accepting) {
        return;
    }

    bl_grpc_accepting = 1;
    bl_grpc_accept_enable(1);
}


void
bl_grpc_server_shutdown(int graceful)
{
    bl_grpc_server_stop_accepting();
    bl_h2_shutdown(graceful);
}


bl_uint_t
bl_grpc_server_connections(void)
{
    return bl_h2_nconns;
}


bl_uint_t
bl_grpc_server_streams(void)
{
    return bl_h2_nstreams;
}


void
bl_grpc_set_http1_handler(bl_grpc_http1_pt handler)
{
    bl_h2_http1_handler = handler;
}


void
bl_grpc_set_observer(const bl_grpc_observer_t *observer)
{
    bl_h2_observer = observer;
}
