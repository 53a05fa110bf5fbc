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
#include <bl_storage.h>

/*
 * A new worker takes clients only once it has a database connection:
 * before that every request it took would fail with UNAVAILABLE, while
 * the old workers (on a reload) or the backlog could wait for it.  A
 * database that stays away does not keep it out for good: after the wait
 * it serves anyway and fails requests fast, as the other workers do.
 * Reporting ready to the master is bl_child_run()'s gate, which waits
 * for the database without a deadline (the master's reload has its own).
 */
#define BL_WORKER_ACCEPT_WAIT  5.0     /* s */
#define BL_WORKER_ACCEPT_POLL  0.005   /* s */

static ev_timer   bl_worker_drain;
static ev_timer   bl_worker_accept_ev;
static ev_tstamp  bl_worker_accept_by;

static void
bl_worker_accept_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) revents;
    if (bl_storage_available() != BL_OK && ev_now(loop) < bl_worker_accept_by
        && !bl_child_exiting())
    {
        return;
    }
    ev_timer_stop(loop, w);
    if (!bl_child_exiting()) {
        bl_grpc_server_resume_accepting();
    }
}

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

    bl_grpc_server_stop_accepting();
    bl_worker_accept_by = ev_now(bl_loop) + BL_WORKER_ACCEPT_WAIT;
    ev_timer_init(&bl_worker_accept_ev, bl_worker_accept_cb, 0.0,
                  BL_WORKER_ACCEPT_POLL);
    ev_timer_start(bl_loop, &bl_worker_accept_ev);

    bl_child_run(cycle, &child);
}
