/*
 * The worker's pool of asynchronous PostgreSQL connections: connecting and
 * reconnecting, the schema check, prepared statements, pipelined batches,
 * group commit, per-request deadlines and cancellation.  See bl_pg.h.
 */
#include <bl_core.h>
#include <bl_pg.h>


#define BL_PG_BACKOFF_MIN    100       /* msec, doubling ... */
#define BL_PG_BACKOFF_MAX    2000      /* ... up to this */
#define BL_PG_SETUP_TIMEOUT  60000     /* schema check + prepare */


typedef struct {
    bl_pg_conf_t       conf;
    bl_pg_conn_t      *conns;
    bl_uint_t          nconns;
    bl_uint_t          nready;
    bl_pg_queue_t      reads;
    bl_pg_queue_t      writes;
    ev_prepare         dispatch;
    unsigned           writing:1;       /* a write batch is in flight */
    unsigned           started:1;
} bl_pg_t;


static void bl_pg_connect(bl_pg_conn_t *c);
static void bl_pg_connect_poll(bl_pg_conn_t *c);
static void bl_pg_conn_fail(bl_pg_conn_t *c, int level, const char *why);
static void bl_pg_conn_close(bl_pg_conn_t *c);
static void bl_pg_conn_events(bl_pg_conn_t *c, int events);
static void bl_pg_io_handler(struct ev_loop *loop, ev_io *w, int revents);
static void bl_pg_timer_handler(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_pg_schema_send(bl_pg_conn_t *c);
static void bl_pg_schema_read(bl_pg_conn_t *c);
static void bl_pg_prepare(bl_pg_conn_t *c);
static void bl_pg_ready(bl_pg_conn_t *c);
static void bl_pg_read(bl_pg_conn_t *c);
static bl_int_t bl_pg_flush(bl_pg_conn_t *c);
static void bl_pg_batch_done(bl_pg_batch_t *b);
static void bl_pg_batch_fail(bl_pg_batch_t *b);
static void bl_pg_dispatch_handler(struct ev_loop *loop, ev_prepare *w,
    int revents);
static void bl_pg_dispatch_start(void);
static bl_pg_conn_t *bl_pg_pick(unsigned write);
static bl_int_t bl_pg_send_batch(bl_pg_conn_t *c, bl_pg_queue_t *q,
    unsigned write, bl_uint_t max);
static void bl_pg_fail_queued(void);
static void bl_pg_op_timeout(struct ev_loop *loop, ev_timer *w, int revents);
static void bl_pg_notice(void *arg, const char *message);
static const char *bl_pg_where(PGconn *pc);


static bl_pg_t  bl_pg;

bl_storage_stats_t  bl_storage_stats;

static int64_t   bl_pg_last_revision;
static uint64_t  bl_pg_cluster_id;


/* queues */

static void
bl_pg_queue_add(bl_pg_queue_t *q, bl_storage_op_t *op)
{
    op->next = NULL;
    op->prev = q->tail;

    if (q->tail != NULL) {
        q->tail->next = op;

    } else {
        q->head = op;
    }

    q->tail = op;
    q->n++;
}


static void
bl_pg_queue_remove(bl_pg_queue_t *q, bl_storage_op_t *op)
{
    if (op->prev != NULL) {
        op->prev->next = op->next;

    } else {
        q->head = op->next;
    }

    if (op->next != NULL) {
        op->next->prev = op->prev;

    } else {
        q->tail = op->prev;
    }

    op->next = NULL;
    op->prev = NULL;
    q->n--;
}


/* the pool */

bl_int_t
bl_pg_init(const bl_pg_conf_t *conf)
{
    bl_uint_t      i;
    bl_pg_conn_t  *c;

    if (bl_pg.started) {
        bl_pg_done();
    }

    if (conf->connections == 0
        || conf->connections > BL_PG_MAX_CONNECTIONS)
    {
        bl_log_error(BL_LOG_ERR, 0, "postgres: %u connections is out of "
                     "range 1..%d", (unsigned) conf->connections,
                     BL_PG_MAX_CONNECTIONS);
        return BL_ERROR;
    }

    memset(&bl_pg, 0, sizeof(bl_pg));

    bl_pg.conf = *conf;
    bl_pg.nconns = conf->connections;

    bl_pg.conns = bl_calloc(bl_pg.nconns * sizeof(bl_pg_conn_t));
    if (bl_pg.conns == NULL) {
        return BL_ERROR;
    }

    ev_prepare_init(&bl_pg.dispatch, bl_pg_dispatch_handler);
    bl_pg.started = 1;

    for (i = 0; i < bl_pg.nconns; i++) {
        c = &bl_pg.conns[i];
        c->index = i;
        c->fd = -1;
        c->backoff = BL_PG_BACKOFF_MIN;
        ev_init(&c->io, bl_pg_io_handler);
        c->io.data = c;
        ev_init(&c->timer, bl_pg_timer_handler);
        c->timer.data = c;

        bl_pg_connect(c);
    }

    return BL_OK;
}


static void
bl_pg_free_queue(bl_pg_queue_t *q)
{
    bl_storage_op_t  *op;

    while (q->head != NULL) {
        op = q->head;
        bl_pg_queue_remove(q, op);
        ev_timer_stop(bl_loop, &op->timer);
        free(op);
    }
}


void
bl_pg_done(void)
{
    bl_uint_t         i;
    bl_pg_conn_t     *c;
    bl_pg_batch_t    *b;

    if (!bl_pg.started) {
        return;
    }

    for (i = 0; i < bl_pg.nconns; i++) {
        c = &bl_pg.conns[i];

        while (c->head != NULL) {
            b = c->head;
            c->head = b->next;
            bl_pg_free_queue(&b->ops);
            free(b);
        }

        c->tail = NULL;
        bl_pg_conn_close(c);
        ev_timer_stop(bl_loop, &c->timer);
    }

    bl_pg_free_queue(&bl_pg.reads);
    bl_pg_free_queue(&bl_pg.writes);
    ev_prepare_stop(bl_loop, &bl_pg.dispatch);

    free(bl_pg.conns);
    memset(&bl_pg, 0, sizeof(bl_pg));
    bl_pg_schema_free();
}


bl_int_t
bl_pg_available(void)
{
    return bl_pg.nready > 0 ? BL_OK : BL_ERROR;
}


/* connecting */

static void
bl_pg_connect(bl_pg_conn_t *c)
{
    int          n;
    const char  *keywords[4];
    const char  *values[4];

    n = 0;
    keywords[n] = "fallback_application_name";
    values[n++] = "ballast";
    keywords[n] = "dbname";
    values[n++] = bl_pg.conf.conninfo ? bl_pg.conf.conninfo : "";

    if (bl_pg.conf.password != NULL) {
        /* after dbname: wins over a password in the conninfo */
        keywords[n] = "password";
        values[n++] = bl_pg.conf.password;
    }

    keywords[n] = NULL;
    values[n] = NULL;

    c->pc = PQconnectStartParams(keywords, values, 1);
    if (c->pc == NULL) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: out of memory while "
                     "connecting");
        bl_pg_conn_fail(c, BL_LOG_ERR, NULL);
        return;
    }

    c->state = BL_PG_CONNECTING;

    if (PQstatus(c->pc) == CONNECTION_BAD) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not start connecting");
        return;
    }

    PQsetNoticeProcessor(c->pc, bl_pg_notice, NULL);

    bl_timer_set(&c->timer, bl_pg.conf.connect_timeout);

    /* as PQconnectStart asks: wait for the socket to be writable first */
    bl_pg_conn_events(c, EV_WRITE);
}


static void
bl_pg_connect_poll(bl_pg_conn_t *c)
{
    PostgresPollingStatusType  st;

    st = PQconnectPoll(c->pc);

    /*
     * libpq may have closed the socket and opened another one with the
     * same number (next host or address): always re-register it
     */
    c->fd = -1;

    switch (st) {

    case PGRES_POLLING_READING:
        bl_pg_conn_events(c, EV_READ);
        return;

    case PGRES_POLLING_WRITING:
        bl_pg_conn_events(c, EV_WRITE);
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not connect");
        return;
    }

    if (PQsetnonblocking(c->pc, 1) != 0) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not set non-blocking mode");
        return;
    }

    bl_log_debug("postgres: connection #%u up, %s", (unsigned) c->index,
                 bl_pg_where(c->pc));

    c->state = BL_PG_SCHEMA;
    c->schema_step = 0;
    bl_timer_set(&c->timer, bl_max(bl_pg.conf.connect_timeout,
                                  BL_PG_SETUP_TIMEOUT));
    bl_pg_schema_send(c);
}


/*
 * The connection failed: log why (unless why is NULL), fail what was in
 * flight on it, and try again after a backoff.
 */
static void
bl_pg_conn_fail(bl_pg_conn_t *c, int level, const char *why)
{
    bl_pg_batch_t  *b, *next;
    unsigned        was_ready;

    bl_storage_stats.errors++;

    if (why != NULL) {
        if (c->failures > 0 && level > BL_LOG_CRIT) {
            /* the same outage again and again: keep the log readable */
            level = BL_LOG_INFO;
        }

        bl_log_error(level, 0, "postgres: %s, connection #%u, %s: %s", why,
                     (unsigned) c->index,
                     c->pc ? bl_pg_where(c->pc) : "(none)",
                     c->pc ? bl_pg_conn_error(c->pc) : "out of memory");
    }

    was_ready = (c->state == BL_PG_READY);

    b = c->head;
    c->head = NULL;
    c->tail = NULL;
    c->inflight = 0;

    if (c->writing) {
        c->writing = 0;
        bl_pg.writing = 0;
    }

    bl_pg_conn_close(c);

    c->failures++;
    bl_storage_stats.reconnects++;
    bl_timer_set(&c->timer, c->backoff);
    c->backoff = bl_min(c->backoff * 2, BL_PG_BACKOFF_MAX);

    if (was_ready) {
        bl_pg.nready--;
    }

    /* the state is consistent now: handlers may call us */

    for ( /* void */ ; b != NULL; b = next) {
        next = b->next;
        bl_pg_batch_fail(b);
    }

    if (bl_pg.nready == 0) {
        bl_pg_fail_queued();

    } else {
        bl_pg_dispatch_start();
    }
}


static void
bl_pg_conn_close(bl_pg_conn_t *c)
{
    if (c->events != 0) {
        ev_io_stop(bl_loop, &c->io);
        c->events = 0;
    }

    if (c->schema_res != NULL) {
        PQclear(c->schema_res);
        c->schema_res = NULL;
    }

    if (c->pc != NULL) {
        PQfinish(c->pc);
        c->pc = NULL;
    }

    c->fd = -1;
    c->state = BL_PG_CLOSED;
}


static void
bl_pg_conn_events(bl_pg_conn_t *c, int events)
{
    int  fd;

    fd = (c->pc != NULL) ? PQsocket(c->pc) : -1;

    if (events == c->events && fd == c->fd) {
        return;
    }

    if (c->events != 0 || ev_is_active(&c->io)) {
        ev_io_stop(bl_loop, &c->io);
    }

    c->fd = fd;
    c->events = (fd >= 0) ? events : 0;

    if (c->events != 0) {
        ev_io_set(&c->io, fd, events);
        ev_io_start(bl_loop, &c->io);
    }
}


static void
bl_pg_timer_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_pg_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    switch (c->state) {

    case BL_PG_CLOSED:
        bl_pg_connect(c);
        return;

    case BL_PG_CONNECTING:
        bl_pg_conn_fail(c, BL_LOG_ERR, "timed out while connecting");
        return;

    case BL_PG_SCHEMA:
    case BL_PG_PREPARING:
        bl_pg_conn_fail(c, BL_LOG_ERR, "timed out while setting up");
        return;

    case BL_PG_READY:
        return;
    }
}


static void
bl_pg_io_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_pg_conn_t  *c;

    BL_UNUSED(loop);

    c = w->data;

    switch (c->state) {

    case BL_PG_CONNECTING:
        bl_pg_connect_poll(c);
        return;

    case BL_PG_SCHEMA:
        if (revents & EV_WRITE) {
            if (bl_pg_flush(c) != BL_OK) {
                return;
            }
        }

        if (revents & EV_READ) {
            bl_pg_schema_read(c);
        }

        return;

    case BL_PG_PREPARING:
    case BL_PG_READY:
        if (revents & EV_READ) {
            bl_pg_read(c);

            if (c->state == BL_PG_CLOSED) {
                return;
            }
        }

        /* after reading: PQconsumeInput may have flushed for us */
        if (c->events & EV_WRITE) {
            (void) bl_pg_flush(c);
        }

        return;

    case BL_PG_CLOSED:
        return;
    }
}


/* PQflush: BL_OK (all sent or waiting for writability), BL_ERROR (failed,
 * the connection is gone) */
static bl_int_t
bl_pg_flush(bl_pg_conn_t *c)
{
    switch (PQflush(c->pc)) {

    case 0:
        bl_pg_conn_events(c, EV_READ);
        return BL_OK;

    case 1:
        bl_pg_conn_events(c, EV_READ | EV_WRITE);
        return BL_OK;

    default:
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not send");
        return BL_ERROR;
    }
}


/* setup: the schema, then the prepared statements */

static void
bl_pg_schema_send(bl_pg_conn_t *c)
{
    PGresult    *res;
    int64_t      cluster_id;
    bl_int_t     rc;
    const char  *sql;

    res = c->schema_res;
    c->schema_res = NULL;

    sql = NULL;
    cluster_id = 0;

    rc = bl_pg_schema_step(&c->schema_step, res, &sql, &cluster_id);

    if (res != NULL) {
        PQclear(res);
    }

    if (rc == BL_AGAIN) {
        if (PQsendQuery(c->pc, sql) != 1) {
            bl_pg_conn_fail(c, BL_LOG_ERR, "could not send the schema "
                            "check");
            return;
        }

        (void) bl_pg_flush(c);
        return;
    }

    if (rc == BL_DECLINED) {
        /* a newer schema: logged (once) by the check; retried on the
         * reconnect, fails every op meanwhile as no connection is ready */
        bl_pg_conn_fail(c, BL_LOG_CRIT, NULL);
        return;
    }

    if (rc != BL_OK) {
        bl_pg_conn_fail(c, BL_LOG_ERR, NULL);
        return;
    }

    bl_pg_set_cluster_id(cluster_id);
    bl_pg_prepare(c);
}


static void
bl_pg_schema_read(bl_pg_conn_t *c)
{
    PGresult        *res;
    ExecStatusType   st;

    if (PQconsumeInput(c->pc) != 1) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not read the schema check");
        return;
    }

    for ( ;; ) {
        if (PQisBusy(c->pc)) {
            return;
        }

        res = PQgetResult(c->pc);

        if (res == NULL) {
            break;
        }

        /*
         * keep the first error or else the last result with rows: a
         * step is several statements in one simple query
         */

        st = PQresultStatus(res);

        if (c->schema_res != NULL
            && PQresultStatus(c->schema_res) == PGRES_FATAL_ERROR)
        {
            PQclear(res);
            continue;
        }

        if (st == PGRES_FATAL_ERROR || st == PGRES_TUPLES_OK
            || c->schema_res == NULL)
        {
            if (c->schema_res != NULL) {
                PQclear(c->schema_res);
            }

            c->schema_res = res;
            continue;
        }

        PQclear(res);
    }

    bl_storage_stats.round_trips++;
    bl_pg_schema_send(c);
}


static void
bl_pg_prepare(bl_pg_conn_t *c)
{
    size_t          i;
    bl_pg_batch_t  *b;

    c->state = BL_PG_PREPARING;

    if (PQenterPipelineMode(c->pc) != 1) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not enter pipeline mode");
        return;
    }

    b = bl_calloc(sizeof(bl_pg_batch_t));
    if (b == NULL) {
        bl_pg_conn_fail(c, BL_LOG_ERR, NULL);
        return;
    }

    b->conn = c;
    b->prepare = 1;
    c->head = b;
    c->tail = b;
    c->inflight = 1;

    for (i = 0; i < bl_pg_nstmts; i++) {
        if (PQsendPrepare(c->pc, bl_pg_stmts[i].name, bl_pg_stmts[i].sql,
                          bl_pg_stmts[i].nparams, bl_pg_stmts[i].types)
            != 1)
        {
            bl_pg_conn_fail(c, BL_LOG_ERR, "could not send PREPARE");
            return;
        }

        b->nstmts++;
    }

    if (PQpipelineSync(c->pc) != 1) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not send PREPARE");
        return;
    }

    (void) bl_pg_flush(c);
}


static void
bl_pg_ready(bl_pg_conn_t *c)
{
    ev_timer_stop(bl_loop, &c->timer);

    if (c->failures > 0) {
        bl_log_error(BL_LOG_NOTICE, 0, "postgres: connection #%u is back, "
                     "%s", (unsigned) c->index, bl_pg_where(c->pc));
    }

    c->state = BL_PG_READY;
    c->failures = 0;
    c->backoff = BL_PG_BACKOFF_MIN;
    bl_pg.nready++;

    bl_pg_dispatch_start();
}


/* results */

static void
bl_pg_read(bl_pg_conn_t *c)
{
    PGresult         *res;
    bl_pg_batch_t    *b;
    ExecStatusType    st;
    bl_storage_op_t  *op;

    if (PQconsumeInput(c->pc) != 1) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "connection lost");
        return;
    }

    while (c->head != NULL) {

        if (PQisBusy(c->pc)) {
            break;
        }

        res = PQgetResult(c->pc);
        b = c->head;

        if (res == NULL) {
            if (!b->got) {
                /* nothing pending: wait for more input */
                break;
            }

            /* the end of one statement's results */
            b->got = 0;

            if (b->cur != NULL) {
                b->cur = b->cur->next;
            }

            continue;
        }

        st = PQresultStatus(res);

        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);

            c->head = b->next;
            if (c->head == NULL) {
                c->tail = NULL;
            }

            c->inflight--;

            bl_pg_batch_done(b);

            if (c->state == BL_PG_CLOSED) {
                return;
            }

            continue;
        }

        b->got = 1;
        op = b->cur;

        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (op != NULL && !b->failed && !op->cancelled && !op->done) {
                op->type->result(op, res);
            }

        } else if (!b->failed) {
            b->failed = 1;

            if (st != PGRES_PIPELINE_ABORTED) {
                bl_storage_stats.errors++;
                bl_log_error(BL_LOG_ERR, 0, "postgres: %s while running %s, "
                             "connection #%u", bl_pg_result_error(res),
                             op ? op->type->name
                                : (b->prepare ? "PREPARE" : "a batch"),
                             (unsigned) c->index);
            }
        }

        PQclear(res);
    }

    if (PQstatus(c->pc) == CONNECTION_BAD) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "connection lost");
    }
}


static void
bl_pg_batch_done(bl_pg_batch_t *b)
{
    unsigned          failed;
    bl_pg_conn_t     *c;
    bl_storage_op_t  *op, *next;

    c = b->conn;

    bl_storage_stats.round_trips++;
    bl_storage_stats.statements += b->nstmts;

    if (b->prepare) {
        failed = b->failed;
        free(b);

        if (failed) {
            /* logged with the result */
            bl_pg_conn_fail(c, BL_LOG_ERR, NULL);
            return;
        }

        bl_pg_ready(c);
        return;
    }

    if (b->write) {
        c->writing = 0;
        bl_pg.writing = 0;

        if (!b->failed) {
            bl_storage_stats.write_batches++;
        }

        /* TODO(watch): NOTIFY the watcher here, or rather as the last
         * statement of the batch (pg_notify in the same transaction), so
         * that it reads the new log rows at once */
    }

    for (op = b->ops.head; op != NULL; op = next) {
        next = op->next;

        ev_timer_stop(bl_loop, &op->timer);

        if (!op->cancelled && !op->done) {
            if (b->failed) {
                op->status = BL_ST_UNAVAILABLE;
                op->result = NULL;

            } else if (b->write && op->status == BL_ST_OK) {
                bl_storage_stats.writes++;
            }

            if (op->status != BL_ST_OK) {
                op->result = NULL;
            }

            op->done = 1;
            op->handler(op->data, op->status, op->result);
        }

        free(op);
    }

    free(b);

    bl_pg_dispatch_start();
}


/* the connection failed under the batch: every op gets UNAVAILABLE */
static void
bl_pg_batch_fail(bl_pg_batch_t *b)
{
    bl_storage_op_t  *op, *next;

    for (op = b->ops.head; op != NULL; op = next) {
        next = op->next;

        ev_timer_stop(bl_loop, &op->timer);

        if (!op->cancelled && !op->done) {
            op->done = 1;
            op->handler(op->data, BL_ST_UNAVAILABLE, NULL);
        }

        free(op);
    }

    free(b);
}


static void
bl_pg_fail_queued(void)
{
    bl_storage_op_t  *op;
    bl_pg_queue_t    *q;
    int               i;

    for (i = 0; i < 2; i++) {
        q = (i == 0) ? &bl_pg.writes : &bl_pg.reads;

        while (q->head != NULL) {
            op = q->head;
            bl_pg_queue_remove(q, op);
            ev_timer_stop(bl_loop, &op->timer);
            op->done = 1;
            op->handler(op->data, BL_ST_UNAVAILABLE, NULL);
            free(op);
        }
    }
}


/* operations */

bl_storage_status_e
bl_pg_post(const bl_pg_op_type_t *type, bl_pool_t *pool,
    bl_storage_handler_pt handler, void *data, const void *req,
    size_t req_size, size_t size, bl_storage_op_t **opp)
{
    bl_storage_op_t  *op;

    if (bl_pg.nready == 0) {
        return BL_ST_UNAVAILABLE;
    }

    if (bl_pg.reads.n + bl_pg.writes.n >= BL_PG_MAX_QUEUED) {
        return BL_ST_TOO_MANY_REQUESTS;
    }

    if (req_size > sizeof(op->req)) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: request of %s too large",
                     type->name);
        return BL_ST_INTERNAL;
    }

    op = bl_calloc(sizeof(bl_storage_op_t));
    if (op == NULL) {
        return BL_ST_INTERNAL;
    }

    op->type = type;
    op->pool = pool;
    op->handler = handler;
    op->data = data;
    op->size = size;
    memcpy(&op->req, req, req_size);

    ev_init(&op->timer, bl_pg_op_timeout);
    op->timer.data = op;
    bl_timer_set(&op->timer, bl_pg.conf.request_timeout);

    bl_pg_queue_add(type->write ? &bl_pg.writes : &bl_pg.reads, op);
    bl_pg_dispatch_start();

    if (opp != NULL) {
        *opp = op;
    }

    return BL_ST_OK;
}


void
bl_pg_cancel(bl_storage_op_t *op)
{
    if (op == NULL || op->done || op->cancelled) {
        return;
    }

    ev_timer_stop(bl_loop, &op->timer);

    if (op->batch == NULL) {
        bl_pg_queue_remove(op->type->write ? &bl_pg.writes : &bl_pg.reads,
                           op);
        free(op);
        return;
    }

    /* in flight: its result is read into nothing; freed with the batch */
    op->cancelled = 1;
}


static void
bl_pg_op_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_storage_op_t  *op;
    bl_pg_conn_t     *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    op = w->data;

    if (op->batch == NULL) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: %s waited %" PRId64 " ms "
                     "for a connection, failing it", op->type->name,
                     bl_pg.conf.request_timeout);

        bl_pg_queue_remove(op->type->write ? &bl_pg.writes : &bl_pg.reads,
                           op);
        op->done = 1;
        op->handler(op->data, BL_ST_UNAVAILABLE, NULL);
        free(op);
        return;
    }

    /*
     * No answer in time: the server or the network is stuck (or a
     * statement is far too slow).  The op fails now; the connection is
     * closed so that nothing else waits behind it, which also frees the op.
     */

    c = op->batch->conn;

    op->done = 1;
    op->handler(op->data, BL_ST_UNAVAILABLE, NULL);

    bl_log_error(BL_LOG_ERR, 0, "postgres: no answer to %s in %" PRId64
                 " ms, closing connection #%u, %s", op->type->name,
                 bl_pg.conf.request_timeout, (unsigned) c->index,
                 bl_pg_where(c->pc));

    bl_pg_conn_fail(c, BL_LOG_ERR, NULL);
}


/* dispatch: once per loop iteration, so that ops posted together go out
 * together */

static void
bl_pg_dispatch_start(void)
{
    if ((bl_pg.reads.head != NULL || bl_pg.writes.head != NULL)
        && !ev_is_active(&bl_pg.dispatch))
    {
        ev_prepare_start(bl_loop, &bl_pg.dispatch);
    }
}


static void
bl_pg_dispatch_handler(struct ev_loop *loop, ev_prepare *w, int revents)
{
    bl_uint_t      per;
    bl_pg_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    ev_prepare_stop(bl_loop, w);

    if (!bl_pg.writing && bl_pg.writes.head != NULL) {
        c = bl_pg_pick(1);

        if (c != NULL) {
            (void) bl_pg_send_batch(c, &bl_pg.writes, 1, BL_PG_BATCH_OPS);
        }
    }

    /*
     * Reads posted in the same iteration share round trips too, spread
     * over the ready connections so that their backends work in parallel.
     * (A database error in one fails the others of its batch.)
     */

    if (bl_pg.nready == 0) {
        return;
    }

    per = (bl_pg.reads.n + bl_pg.nready - 1) / bl_pg.nready;
    per = bl_max(1, bl_min(per, BL_PG_READ_BATCH_OPS));

    while (bl_pg.reads.head != NULL) {
        c = bl_pg_pick(0);

        if (c == NULL
            || bl_pg_send_batch(c, &bl_pg.reads, 0, per) != BL_OK)
        {
            break;
        }
    }

    /* whatever is left goes when a batch completes or a connection comes
     * up: both restart the dispatch */
}


/*
 * The ready connection with the least in flight; reads avoid the one that
 * carries the write batch (it may wait on the revision lock).
 */
static bl_pg_conn_t *
bl_pg_pick(unsigned write)
{
    bl_uint_t      i, best_load, load;
    bl_pg_conn_t  *c, *best;

    best = NULL;
    best_load = 0;

    for (i = 0; i < bl_pg.nconns; i++) {
        c = &bl_pg.conns[i];

        if (c->state != BL_PG_READY
            || c->inflight >= BL_PG_PIPELINE_DEPTH)
        {
            continue;
        }

        load = c->inflight;

        if (!write && c->writing) {
            load += BL_PG_PIPELINE_DEPTH;
        }

        if (best == NULL || load < best_load) {
            best = c;
            best_load = load;
        }
    }

    return best;
}


static bl_int_t
bl_pg_send_batch(bl_pg_conn_t *c, bl_pg_queue_t *q, unsigned write,
    bl_uint_t max)
{
    bl_pg_batch_t    *b;
    bl_storage_op_t  *op;

    b = bl_calloc(sizeof(bl_pg_batch_t));
    if (b == NULL) {
        return BL_ERROR;
    }

    b->conn = c;
    b->write = write;

    if (c->tail != NULL) {
        c->tail->next = b;

    } else {
        c->head = b;
    }

    c->tail = b;
    c->inflight++;

    if (write) {
        c->writing = 1;
        bl_pg.writing = 1;
    }

    while (q->head != NULL) {
        op = q->head;

        if (b->ops.n > 0
            && (b->ops.n >= max || b->size + op->size > BL_PG_BATCH_BYTES))
        {
            break;
        }

        bl_pg_queue_remove(q, op);
        bl_pg_queue_add(&b->ops, op);
        op->batch = b;
        b->size += op->size;

        if (op->type->send(c->pc, op) != BL_OK) {
            bl_pg_conn_fail(c, BL_LOG_ERR, "could not send a statement");
            return BL_OK;
        }

        b->nstmts++;
    }

    b->cur = b->ops.head;

    if (PQpipelineSync(c->pc) != 1) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not send a batch");
        return BL_OK;
    }

    (void) bl_pg_flush(c);

    return BL_OK;
}


/* state shared with the storage API */

void
bl_pg_seen_revision(int64_t rev)
{
    if (rev > bl_pg_last_revision) {
        bl_pg_last_revision = rev;
    }
}


void
bl_pg_set_cluster_id(int64_t id)
{
    if (id > 0) {
        bl_pg_cluster_id = (uint64_t) id;
    }
}


uint64_t
bl_storage_cluster_id(void)
{
    return bl_pg_cluster_id;
}


int64_t
bl_storage_last_revision(void)
{
    return bl_pg_last_revision;
}


bl_int_t
bl_storage_available(void)
{
    return bl_pg_available();
}


/* binary fields */

bl_int_t
bl_pg_int64(PGresult *res, int row, int col, int64_t *v)
{
    int            i;
    uint64_t       u;
    const u_char  *p;

    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8) {
        return BL_ERROR;
    }

    p = (const u_char *) PQgetvalue(res, row, col);
    u = 0;

    for (i = 0; i < 8; i++) {
        u = (u << 8) | p[i];
    }

    *v = (int64_t) u;
    return BL_OK;
}


bl_int_t
bl_pg_int32(PGresult *res, int row, int col, int32_t *v)
{
    uint32_t       u;
    const u_char  *p;

    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 4) {
        return BL_ERROR;
    }

    p = (const u_char *) PQgetvalue(res, row, col);
    u = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
        | ((uint32_t) p[2] << 8) | p[3];

    *v = (int32_t) u;
    return BL_OK;
}


/* a copy in the pool (NUL-terminated for convenience) */
bl_int_t
bl_pg_bytes(bl_pool_t *pool, PGresult *res, int row, int col, bl_str_t *s)
{
    int  len;

    if (PQgetisnull(res, row, col)) {
        bl_str_null(s);
        return BL_OK;
    }

    len = PQgetlength(res, row, col);

    s->data = bl_pnalloc(pool, (size_t) len + 1);
    if (s->data == NULL) {
        return BL_ERROR;
    }

    memcpy(s->data, PQgetvalue(res, row, col), (size_t) len);
    s->data[len] = '\0';
    s->len = (size_t) len;

    return BL_OK;
}


void
bl_pg_put_int64(u_char *p, int64_t v)
{
    int       i;
    uint64_t  u;

    u = (uint64_t) v;

    for (i = 7; i >= 0; i--) {
        p[i] = (u_char) (u & 0xff);
        u >>= 8;
    }
}


void
bl_pg_put_int32(u_char *p, int32_t v)
{
    uint32_t  u;

    u = (uint32_t) v;
    p[0] = (u_char) (u >> 24);
    p[1] = (u_char) (u >> 16);
    p[2] = (u_char) (u >> 8);
    p[3] = (u_char) u;
}


/* messages */

static const char *
bl_pg_oneline(const char *msg)
{
    size_t       n;
    char        *p;
    static char  buf[512];

    if (msg == NULL || msg[0] == '\0') {
        return "(no message)";
    }

    n = strlen(msg);
    n = bl_min(n, sizeof(buf) - 1);
    memcpy(buf, msg, n);
    buf[n] = '\0';

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }

    for (p = buf; *p; p++) {
        if (*p == '\n' || *p == '\t') {
            *p = ' ';
        }
    }

    return buf;
}


const char *
bl_pg_conn_error(PGconn *pc)
{
    return bl_pg_oneline(PQerrorMessage(pc));
}


const char *
bl_pg_result_error(PGresult *res)
{
    return bl_pg_oneline(PQresultErrorMessage(res));
}


/* host, port and database only: never the conninfo (it may hold a
 * password) */
static const char *
bl_pg_where(PGconn *pc)
{
    const char   *host, *port, *db;
    static char   buf[512];

    host = PQhost(pc);
    port = PQport(pc);
    db = PQdb(pc);

    snprintf(buf, sizeof(buf), "host \"%s\" port %s dbname \"%s\"",
             host ? host : "", port && port[0] ? port : "5432",
             db ? db : "");

    return buf;
}


static void
bl_pg_notice(void *arg, const char *message)
{
    BL_UNUSED(arg);

    bl_log_debug("postgres: %s", bl_pg_oneline(message));
}
