/*
 * bl_storage_listen: a connection of its own, never used for queries,
 * that LISTENs on the channel every write batch NOTIFYs (bl_pg_batch.c)
 * and calls back with each revision, in commit order, from any node.
 *
 * Notifications sent while it is down are lost, so after each (re)connect
 * it calls back with revision 0: "look for yourself" -- once the pool can
 * look, that is: when the pool's first connection comes up (at start,
 * and after an outage of the whole pool) it is called with 0 as well.
 * It reconnects with
 * a doubling backoff, and pings when idle, so that a connection that died
 * without a word (a network partition) is noticed and replaced rather than
 * silently leaving the listener on its safety poll.
 */
#include <bl_core.h>
#include <bl_pg.h>


#define BL_PG_LISTEN_BACKOFF_MIN  100      /* msec, doubling ... */
#define BL_PG_LISTEN_BACKOFF_MAX  2000     /* ... up to this */
#define BL_PG_LISTEN_PING         10000    /* msec of silence */


typedef enum {
    BL_PG_LISTEN_CLOSED = 0,     /* waiting to reconnect */
    BL_PG_LISTEN_CONNECTING,
    BL_PG_LISTEN_SUBSCRIBING,    /* LISTEN sent */
    BL_PG_LISTEN_READY
} bl_pg_listen_state_e;

typedef struct {
    PGconn                  *pc;
    bl_pg_listen_state_e     state;
    int                      fd;
    int                      events;
    ev_io                    io;
    ev_timer                 timer;     /* deadline, backoff or ping */
    int64_t                  backoff;
    bl_uint_t                failures;
    bl_uint_t                generation;  /* bumped at each close */
    unsigned                 started:1;
    unsigned                 pinging:1;
    void                   (*on_commit)(void *data, int64_t revision);
    void                    *data;
} bl_pg_listen_t;


static void bl_pg_listen_connect(void);
static void bl_pg_listen_poll(void);
static void bl_pg_listen_fail(const char *why);
static void bl_pg_listen_close(void);
static void bl_pg_listen_events(int events);
static void bl_pg_listen_flush(void);
static void bl_pg_listen_read(void);
static void bl_pg_listen_io(struct ev_loop *loop, ev_io *w, int revents);
static void bl_pg_listen_timer(struct ev_loop *loop, ev_timer *w,
    int revents);


static bl_pg_listen_t  bl_pg_listen;


bl_int_t
bl_storage_listen(void (*on_commit)(void *data, int64_t revision),
    void *data)
{
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;

    if (!bl_pg.started) {
        bl_log_error(BL_LOG_ALERT, 0, "postgres: listening for commits "
                     "without a connection pool");
        return BL_ERROR;
    }

    if (l->started) {
        bl_log_error(BL_LOG_ALERT, 0, "postgres: already listening for "
                     "commits");
        return BL_ERROR;
    }

    memset(l, 0, sizeof(bl_pg_listen_t));

    l->fd = -1;
    l->backoff = BL_PG_LISTEN_BACKOFF_MIN;
    l->on_commit = on_commit;
    l->data = data;
    l->started = 1;
    ev_init(&l->io, bl_pg_listen_io);
    ev_init(&l->timer, bl_pg_listen_timer);

    bl_pg_listen_connect();

    return BL_OK;
}


void
bl_pg_listen_stop(void)
{
    if (!bl_pg_listen.started) {
        return;
    }

    bl_pg_listen_close();
    ev_timer_stop(bl_loop, &bl_pg_listen.timer);
    bl_pg_listen.started = 0;
}


/* the pool's first connection is up: the listener may look now */
void
bl_pg_listen_pool_up(void)
{
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;

    if (l->started && l->state == BL_PG_LISTEN_READY) {
        l->on_commit(l->data, 0);
    }
}


static void
bl_pg_listen_connect(void)
{
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;

    l->pc = bl_pg_connect_start("ballast listen");
    if (l->pc == NULL) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: out of memory while "
                     "connecting to listen");
        bl_pg_listen_fail(NULL);
        return;
    }

    l->state = BL_PG_LISTEN_CONNECTING;

    if (PQstatus(l->pc) == CONNECTION_BAD) {
        bl_pg_listen_fail("could not start connecting");
        return;
    }

    bl_timer_set(&l->timer, bl_pg.conf.connect_timeout);
    bl_pg_listen_events(EV_WRITE);
}


static void
bl_pg_listen_poll(void)
{
    bl_pg_listen_t             *l;
    PostgresPollingStatusType   st;

    l = &bl_pg_listen;

    st = PQconnectPoll(l->pc);

    /* the socket may have changed (next host or address) */
    l->fd = -1;

    switch (st) {

    case PGRES_POLLING_READING:
        bl_pg_listen_events(EV_READ);
        return;

    case PGRES_POLLING_WRITING:
        bl_pg_listen_events(EV_WRITE);
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        bl_pg_listen_fail("could not connect");
        return;
    }

    if (PQsetnonblocking(l->pc, 1) != 0) {
        bl_pg_listen_fail("could not set non-blocking mode");
        return;
    }

    if (PQsendQuery(l->pc, "LISTEN " BL_PG_CHANNEL) != 1) {
        bl_pg_listen_fail("could not send LISTEN");
        return;
    }

    l->state = BL_PG_LISTEN_SUBSCRIBING;
    bl_timer_set(&l->timer, bl_pg.conf.request_timeout);
    bl_pg_listen_flush();
}


static void
bl_pg_listen_fail(const char *why)
{
    int              level;
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;

    bl_storage_stats.errors++;

    if (why != NULL) {
        /* the same outage again and again: keep the log readable */
        level = (l->failures > 0) ? BL_LOG_INFO : BL_LOG_ERR;

        bl_log_error(level, 0, "postgres: %s, listening connection, %s: %s",
                     why, l->pc ? bl_pg_where(l->pc) : "(none)",
                     l->pc ? bl_pg_conn_error(l->pc) : "out of memory");
    }

    bl_pg_listen_close();

    l->failures++;
    bl_storage_stats.reconnects++;
    bl_timer_set(&l->timer, l->backoff);
    l->backoff = bl_min(l->backoff * 2, BL_PG_LISTEN_BACKOFF_MAX);
}


static void
bl_pg_listen_close(void)
{
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;

    if (l->events != 0) {
        ev_io_stop(bl_loop, &l->io);
        l->events = 0;
    }

    if (l->pc != NULL) {
        PQfinish(l->pc);
        l->pc = NULL;
    }

    l->fd = -1;
    l->state = BL_PG_LISTEN_CLOSED;
    l->pinging = 0;
    l->generation++;
}


static void
bl_pg_listen_events(int events)
{
    int              fd;
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;

    fd = (l->pc != NULL) ? PQsocket(l->pc) : -1;

    if (events == l->events && fd == l->fd) {
        return;
    }

    if (l->events != 0 || ev_is_active(&l->io)) {
        ev_io_stop(bl_loop, &l->io);
    }

    l->fd = fd;
    l->events = (fd >= 0) ? events : 0;

    if (l->events != 0) {
        ev_io_set(&l->io, fd, events);
        ev_io_start(bl_loop, &l->io);
    }
}


static void
bl_pg_listen_flush(void)
{
    switch (PQflush(bl_pg_listen.pc)) {

    case 0:
        bl_pg_listen_events(EV_READ);
        return;

    case 1:
        bl_pg_listen_events(EV_READ | EV_WRITE);
        return;

    default:
        bl_pg_listen_fail("could not send");
    }
}


/* results (of LISTEN, or of a ping), then the notifications */
static void
bl_pg_listen_read(void)
{
    char            *end;
    int64_t          rev;
    PGresult        *res;
    bl_uint_t        gen;
    PGnotify        *n;
    ExecStatusType   st;
    bl_pg_listen_t  *l;

    l = &bl_pg_listen;
    gen = l->generation;

    if (PQconsumeInput(l->pc) != 1) {
        bl_pg_listen_fail("connection lost");
        return;
    }

    while (!PQisBusy(l->pc)) {
        res = PQgetResult(l->pc);

        if (res == NULL) {
            break;
        }

        st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            bl_log_error(BL_LOG_ERR, 0, "postgres: %s on the listening "
                         "connection", bl_pg_result_error(res));
            PQclear(res);
            bl_pg_listen_fail(NULL);
            return;
        }

        PQclear(res);

        if (l->state == BL_PG_LISTEN_SUBSCRIBING) {
            if (l->failures > 0) {
                bl_log_error(BL_LOG_NOTICE, 0, "postgres: listening "
                             "connection is back, %s", bl_pg_where(l->pc));
            }

            l->state = BL_PG_LISTEN_READY;
            l->failures = 0;
            l->backoff = BL_PG_LISTEN_BACKOFF_MIN;
            bl_timer_set(&l->timer, BL_PG_LISTEN_PING);

            /* whatever was committed meanwhile went unheard; if the pool
             * is not up yet, bl_pg_listen_pool_up() says it */
            if (bl_pg.nready > 0) {
                l->on_commit(l->data, 0);

                if (l->generation != gen) {
                    return;
                }
            }

        } else {
            l->pinging = 0;
            bl_timer_set(&l->timer, BL_PG_LISTEN_PING);
        }
    }

    while ((n = PQnotifies(l->pc)) != NULL) {
        rev = 0;

        if (n->extra != NULL) {
            errno = 0;
            rev = strtoll(n->extra, &end, 10);

            if (errno != 0 || end == n->extra || *end != '\0' || rev < 0) {
                rev = 0;
            }
        }

        PQfreemem(n);

        /* the store got there: what this process knows of it (metrics
         * report the watcher's, against the ring) */
        bl_pg_seen_revision(rev);

        if (l->state == BL_PG_LISTEN_READY && !l->pinging) {
            bl_timer_set(&l->timer, BL_PG_LISTEN_PING);
        }

        l->on_commit(l->data, rev);

        if (l->generation != gen) {
            return;
        }
    }

    if (PQstatus(l->pc) == CONNECTION_BAD) {
        bl_pg_listen_fail("connection lost");
    }
}


static void
bl_pg_listen_io(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_uint_t        gen;
    bl_pg_listen_t  *l;

    BL_UNUSED(loop);
    BL_UNUSED(w);

    l = &bl_pg_listen;

    switch (l->state) {

    case BL_PG_LISTEN_CONNECTING:
        bl_pg_listen_poll();
        return;

    case BL_PG_LISTEN_SUBSCRIBING:
    case BL_PG_LISTEN_READY:
        gen = l->generation;

        if (revents & EV_READ) {
            bl_pg_listen_read();

            if (l->generation != gen || l->pc == NULL) {
                return;
            }
        }

        if (l->events & EV_WRITE) {
            bl_pg_listen_flush();
        }

        return;

    case BL_PG_LISTEN_CLOSED:
        return;
    }
}


static void
bl_pg_listen_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_pg_listen_t  *l;

    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    l = &bl_pg_listen;

    switch (l->state) {

    case BL_PG_LISTEN_CLOSED:
        bl_pg_listen_connect();
        return;

    case BL_PG_LISTEN_CONNECTING:
        bl_pg_listen_fail("timed out while connecting");
        return;

    case BL_PG_LISTEN_SUBSCRIBING:
        bl_pg_listen_fail("no answer to LISTEN");
        return;

    case BL_PG_LISTEN_READY:
        if (l->pinging) {
            bl_pg_listen_fail("no answer to a ping");
            return;
        }

        if (PQsendQuery(l->pc, "SELECT 1") != 1) {
            bl_pg_listen_fail("could not send a ping");
            return;
        }

        l->pinging = 1;
        bl_timer_set(&l->timer, bl_pg.conf.request_timeout);
        bl_pg_listen_flush();
        return;
    }
}
