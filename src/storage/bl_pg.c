/*
 * The worker's pool of asynchronous PostgreSQL connections: connecting and
 * reconnecting, the schema check, prepared statements, and what fails
 * with a connection.  The work that goes over them is bl_pg_batch.c's.
 * See bl_pg.h.
 */
#include <bl_core.h>
#include <bl_pg.h>


#define BL_PG_BACKOFF_MIN    100       /* msec, doubling ... */
#define BL_PG_BACKOFF_MAX    2000      /* ... up to this */
#define BL_PG_SETUP_TIMEOUT  60000     /* schema check + prepare */


static void bl_pg_connect(bl_pg_conn_t *c);
static void bl_pg_connect_poll(bl_pg_conn_t *c);
static void bl_pg_conn_close(bl_pg_conn_t *c);
static void bl_pg_conn_events(bl_pg_conn_t *c, int events);
static void bl_pg_io_handler(struct ev_loop *loop, ev_io *w, int revents);
static void bl_pg_timer_handler(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_pg_schema_send(bl_pg_conn_t *c);
static void bl_pg_schema_read(bl_pg_conn_t *c);
static void bl_pg_prepare(bl_pg_conn_t *c);
static void bl_pg_notice(void *arg, const char *message);


bl_pg_t  bl_pg;

bl_storage_stats_t  bl_storage_stats;

static int64_t   bl_pg_last_revision;
static uint64_t  bl_pg_cluster_id;


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


void
bl_pg_done(void)
{
    bl_uint_t         i;
    bl_pg_conn_t     *c;
    bl_pg_batch_t    *b;

    if (!bl_pg.started) {
        return;
    }

    bl_pg_listen_stop();

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
    bl_pg_free_queue(&bl_pg.held);
    ev_prepare_stop(bl_loop, &bl_pg.dispatch);
    bl_pg_compact_stop();

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

PGconn *
bl_pg_connect_start(const char *application_name)
{
    int          n;
    PGconn      *pc;
    const char  *keywords[4];
    const char  *values[4];

    n = 0;
    keywords[n] = "fallback_application_name";
    values[n++] = application_name;
    keywords[n] = "dbname";
    values[n++] = bl_pg.conf.conninfo ? bl_pg.conf.conninfo : "";

    if (bl_pg.conf.password != NULL) {
        /* after dbname: wins over a password in the conninfo */
        keywords[n] = "password";
        values[n++] = bl_pg.conf.password;
    }

    keywords[n] = NULL;
    values[n] = NULL;

    pc = PQconnectStartParams(keywords, values, 1);

    if (pc != NULL) {
        /* notices (and a FATAL before the end) to the log, not stderr */
        PQsetNoticeProcessor(pc, bl_pg_notice, NULL);
    }

    return pc;
}


static void
bl_pg_connect(bl_pg_conn_t *c)
{
    c->pc = bl_pg_connect_start("ballast");
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
void
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
bl_int_t
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


void
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

    if (bl_pg.nready == 1) {
        /* the first way in (at start or after an outage): resume a
         * compaction that a crash or the outage interrupted, and let a
         * listener look for what it could not read meanwhile */
        bl_pg_compact_kick();
        bl_pg_listen_pool_up();
    }
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
bl_pg_op_invalid(bl_storage_op_t *op)
{
    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to %s",
                 op->type->name);
    op->status = BL_ST_INTERNAL;
    op->result = NULL;
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


void
bl_storage_pool_stats(bl_storage_pool_stats_t *ps)
{
    bl_uint_t      i;
    bl_pg_conn_t  *c;

    memset(ps, 0, sizeof(bl_storage_pool_stats_t));

    for (i = 0; i < bl_pg.nconns; i++) {
        c = &bl_pg.conns[i];

        switch (c->state) {

        case BL_PG_READY:
            if (c->inflight > 0) {
                ps->busy++;
            } else {
                ps->idle++;
            }
            break;

        case BL_PG_CLOSED:
            ps->broken++;
            break;

        default:
            ps->connecting++;
            break;
        }
    }
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
const char *
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
