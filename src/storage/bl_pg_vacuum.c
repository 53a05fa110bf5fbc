/*
 * bl_storage_vacuum: VACUUM may run neither inside a transaction block
 * nor in a pipeline, which is how the pool's connections run everything.
 * So each VACUUM gets a connection of its own, driven by the loop like
 * the others (never a blocking call), opened for it and closed after.
 * One statement names every table: run outside any transaction, each
 * table is vacuumed (and analyzed) in a transaction of its own.
 *
 * A VACUUM has no time limit: it takes as long as the tables need.  A
 * cancelled one (the client went away) is left to finish -- stopping it
 * would waste the work done -- and its connection closes then.
 */
#include <bl_core.h>
#include <bl_pg.h>
#include <bl_storage_maint.h>


/* VACUUMs running at once in one process, at most */
#define BL_PG_VACUUM_MAX  4

#define BL_PG_VACUUM_TABLES                                                   \
    " ballast_meta, ballast_kv, ballast_log, ballast_lease, ballast_node,"    \
    " ballast_alarm, ballast_compaction"


typedef enum {
    BL_PG_VACUUM_CONNECTING = 0,
    BL_PG_VACUUM_RUNNING
} bl_pg_vacuum_state_e;

struct bl_storage_vacuum_s {
    PGconn                  *pc;
    bl_pg_vacuum_state_e     state;
    int                      fd;
    int                      events;
    ev_io                    io;
    ev_timer                 timer;      /* connecting only */
    const char              *sql;
    bl_storage_handler_pt    handler;
    void                    *data;
    bl_storage_status_e      status;     /* of the results so far */
    unsigned                 cancelled:1;
};


static void bl_pg_vacuum_poll(bl_storage_vacuum_t *v);
static void bl_pg_vacuum_read(bl_storage_vacuum_t *v);
static void bl_pg_vacuum_flush(bl_storage_vacuum_t *v);
static void bl_pg_vacuum_events(bl_storage_vacuum_t *v, int events);
static void bl_pg_vacuum_finish(bl_storage_vacuum_t *v,
    bl_storage_status_e st, const char *why);
static void bl_pg_vacuum_io(struct ev_loop *loop, ev_io *w, int revents);
static void bl_pg_vacuum_timer(struct ev_loop *loop, ev_timer *w,
    int revents);


static bl_uint_t  bl_pg_vacuums;


bl_storage_status_e
bl_storage_vacuum(int full, bl_storage_handler_pt handler, void *data,
    bl_storage_vacuum_t **op)
{
    bl_storage_vacuum_t  *v;

    if (bl_pg_available() != BL_OK) {
        return BL_ST_UNAVAILABLE;
    }

    if (bl_pg_vacuums >= BL_PG_VACUUM_MAX) {
        return BL_ST_TOO_MANY_REQUESTS;
    }

    v = bl_calloc(sizeof(bl_storage_vacuum_t));
    if (v == NULL) {
        return BL_ST_INTERNAL;
    }

    v->fd = -1;
    v->handler = handler;
    v->data = data;
    v->sql = full ? "VACUUM (FULL, ANALYZE)" BL_PG_VACUUM_TABLES
                  : "VACUUM (ANALYZE)" BL_PG_VACUUM_TABLES;
    ev_init(&v->io, bl_pg_vacuum_io);
    v->io.data = v;
    ev_init(&v->timer, bl_pg_vacuum_timer);
    v->timer.data = v;

    v->pc = bl_pg_connect_start("ballast vacuum");
    if (v->pc == NULL) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: out of memory while "
                     "connecting to vacuum");
        free(v);
        return BL_ST_INTERNAL;
    }

    if (PQstatus(v->pc) == CONNECTION_BAD) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: could not start connecting "
                     "to vacuum: %s", bl_pg_conn_error(v->pc));
        PQfinish(v->pc);
        free(v);
        return BL_ST_UNAVAILABLE;
    }

    bl_pg_vacuums++;
    bl_log_error(BL_LOG_NOTICE, 0, "postgres: starting %.*s",
                 (int) (strchr(v->sql, ')') - v->sql + 1), v->sql);

    bl_timer_set(&v->timer, bl_pg.conf.connect_timeout);
    bl_pg_vacuum_events(v, EV_WRITE);

    *op = v;

    return BL_ST_OK;
}


void
bl_storage_vacuum_cancel(bl_storage_vacuum_t *v)
{
    if (v == NULL) {
        return;
    }

    v->cancelled = 1;

    if (v->state == BL_PG_VACUUM_CONNECTING) {
        /* nothing was started: nothing to wait for */
        bl_pg_vacuum_finish(v, BL_ST_UNAVAILABLE, NULL);
    }
}


static void
bl_pg_vacuum_poll(bl_storage_vacuum_t *v)
{
    PostgresPollingStatusType  st;

    st = PQconnectPoll(v->pc);

    /* the socket may have changed (next host or address) */
    v->fd = -1;

    switch (st) {

    case PGRES_POLLING_READING:
        bl_pg_vacuum_events(v, EV_READ);
        return;

    case PGRES_POLLING_WRITING:
        bl_pg_vacuum_events(v, EV_WRITE);
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        bl_pg_vacuum_finish(v, BL_ST_UNAVAILABLE, "could not connect");
        return;
    }

    ev_timer_stop(bl_loop, &v->timer);

    if (PQsetnonblocking(v->pc, 1) != 0
        || PQsendQuery(v->pc, v->sql) != 1)
    {
        bl_pg_vacuum_finish(v, BL_ST_UNAVAILABLE, "could not send VACUUM");
        return;
    }

    v->state = BL_PG_VACUUM_RUNNING;
    v->status = BL_ST_OK;
    bl_pg_vacuum_flush(v);
}


static void
bl_pg_vacuum_flush(bl_storage_vacuum_t *v)
{
    switch (PQflush(v->pc)) {

    case 0:
        bl_pg_vacuum_events(v, EV_READ);
        return;

    case 1:
        bl_pg_vacuum_events(v, EV_READ | EV_WRITE);
        return;

    default:
        bl_pg_vacuum_finish(v, BL_ST_UNAVAILABLE, "could not send VACUUM");
    }
}


static void
bl_pg_vacuum_read(bl_storage_vacuum_t *v)
{
    PGresult        *res;
    ExecStatusType   st;

    if (PQconsumeInput(v->pc) != 1) {
        bl_pg_vacuum_finish(v, BL_ST_UNAVAILABLE, "connection lost");
        return;
    }

    while (!PQisBusy(v->pc)) {
        res = PQgetResult(v->pc);

        if (res == NULL) {
            bl_pg_vacuum_finish(v, v->status, NULL);
            return;
        }

        st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK) {
            bl_log_error(BL_LOG_ERR, 0, "postgres: %s while vacuuming",
                         bl_pg_result_error(res));
            v->status = BL_ST_INTERNAL;
        }

        PQclear(res);
    }
}


static void
bl_pg_vacuum_events(bl_storage_vacuum_t *v, int events)
{
    int  fd;

    fd = PQsocket(v->pc);

    if (events == v->events && fd == v->fd) {
        return;
    }

    if (v->events != 0) {
        ev_io_stop(bl_loop, &v->io);
    }

    v->fd = fd;
    v->events = (fd >= 0) ? events : 0;

    if (v->events != 0) {
        ev_io_set(&v->io, fd, events);
        ev_io_start(bl_loop, &v->io);
    }
}


static void
bl_pg_vacuum_finish(bl_storage_vacuum_t *v, bl_storage_status_e st,
    const char *why)
{
    if (why != NULL) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: %s, vacuum connection, %s: %s",
                     why, bl_pg_where(v->pc), bl_pg_conn_error(v->pc));
        bl_storage_stats.errors++;

    } else if (st == BL_ST_OK) {
        bl_log_error(BL_LOG_NOTICE, 0, "postgres: VACUUM done");
    }

    if (v->events != 0) {
        ev_io_stop(bl_loop, &v->io);
    }

    ev_timer_stop(bl_loop, &v->timer);
    PQfinish(v->pc);
    bl_pg_vacuums--;

    if (!v->cancelled) {
        v->handler(v->data, st, NULL);
    }

    free(v);
}


static void
bl_pg_vacuum_io(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_storage_vacuum_t  *v;

    BL_UNUSED(loop);

    v = w->data;

    if (v->state == BL_PG_VACUUM_CONNECTING) {
        bl_pg_vacuum_poll(v);
        return;
    }

    if (revents & EV_WRITE) {
        bl_pg_vacuum_flush(v);
        return;                         /* flush answers EV_READ next */
    }

    bl_pg_vacuum_read(v);
}


static void
bl_pg_vacuum_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);

    bl_pg_vacuum_finish(w->data, BL_ST_UNAVAILABLE,
                        "timed out while connecting");
}
