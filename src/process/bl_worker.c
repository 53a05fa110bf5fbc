/*
 * A worker: accepts gRPC connections and serves every RPC on one event
 * loop; the services and storage come up through the modules'
 * init_process hooks.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_process.h>
#include <bl_master.h>
#include <bl_child.h>
#include <bl_grpc.h>
#include <bl_grpc_server.h>

static ev_timer  bl_worker_drain;

/* draining: leave once the last connection has closed */
static void
bl_worker_drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
    if (bl_grpc_server_connections() == 0) {
        bl_child_exit();
    }
}

static void
bl_worker_graceful(void)
{
    bl_grpc_server_shutdown(1);
    ev_timer_init(&bl_worker_drain, bl_worker_drain_cb, 0.0, 0.02);
    ev_timer_start(bl_loop, &bl_worker_drain);
}

static void
bl_worker_fast(void)
{
    bl_grpc_server_shutdown(0);
}

void
bl_worker_process_cycle(bl_cycle_t *cycle)
{
    bl_child_t  child = {
        "worker process", BL_PROCESS_WORKER, bl_worker_graceful,
        bl_worker_fast, NULL
    };

    bl_child_init(cycle, &child);
    bl_child_run(cycle, &child);
}
