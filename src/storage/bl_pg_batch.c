/*
 * Work for the pool: the queues, batches (one round trip each: statements
 * and a Sync), group commit of writes and its NOTIFY, ops that share a
 * statement, reading the results into the ops, per-request deadlines,
 * cancellation, and ops held after their commit.  See bl_pg.h.
 */
#include <bl_core.h>
#include <bl_pg.h>


static bl_pg_conn_t *bl_pg_pick(unsigned write);
static bl_int_t bl_pg_send_batch(bl_pg_conn_t *c, bl_pg_queue_t *q,
    unsigned write, bl_uint_t max);
static bl_int_t bl_pg_send_notify(bl_pg_conn_t *c);
static void bl_pg_op_timeout(struct ev_loop *loop, ev_timer *w, int revents);


/* queues */

void
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


void
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


void
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


/* results */

void
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

            /* the end of one statement's results: the next op that has
             * a statement of its own */
            b->got = 0;

            if (b->cur != NULL) {
                do {
                    b->cur = b->cur->next;
                } while (b->cur != NULL && b->cur->merged);
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
            /* (no op: the batch's NOTIFY) */
            if (op != NULL && !b->failed
                && (op->type->merge || (!op->cancelled && !op->done)))
            {
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


void
bl_pg_batch_done(bl_pg_batch_t *b)
{
    unsigned          failed;
    bl_pg_conn_t     *c;
    bl_storage_op_t  *op, *next;

    c = b->conn;

    if (!b->notify) {
        bl_storage_stats.round_trips++;
        bl_storage_stats.statements += b->nstmts;
    }

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
    }

    for (op = b->ops.head; op != NULL; op = next) {
        next = op->next;

        ev_timer_stop(bl_loop, &op->timer);

        if (!op->cancelled && !op->done) {
            if (b->failed) {
                op->status = BL_ST_UNAVAILABLE;

            } else if (b->write && op->status == BL_ST_OK) {
                bl_storage_stats.writes++;
            }

            /* a log read says where the compaction is */
            if (op->status != BL_ST_OK && op->status != BL_ST_COMPACTED) {
                op->result = NULL;
            }
        }

        if (!b->failed && op->type->committed != NULL
            && op->type->committed(op) == BL_AGAIN
            && !op->cancelled && !op->done && op->status == BL_ST_OK)
        {
            /* answered later by bl_pg_release(); no deadline meanwhile,
             * the caller cancels when it has one */
            op->batch = NULL;
            op->held = 1;
            bl_pg_queue_add(&bl_pg.held, op);
            continue;
        }

        if (!op->cancelled && !op->done) {
            op->done = 1;
            op->handler(op->data, op->status, op->result);
        }

        free(op);
    }

    free(b);

    bl_pg_dispatch_start();
}


/* the connection failed under the batch: every op gets UNAVAILABLE */
void
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


void
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

    if (op->held) {
        bl_pg_queue_remove(&bl_pg.held, op);
        free(op);
        return;
    }

    if (op->batch == NULL) {
        bl_pg_queue_remove(op->type->write ? &bl_pg.writes : &bl_pg.reads,
                           op);
        free(op);
        return;
    }

    /* in flight: its result is read into nothing; freed with the batch */
    op->cancelled = 1;
}


void
bl_pg_release(bl_storage_op_t *op, bl_storage_status_e st, void *result)
{
    bl_pg_queue_remove(&bl_pg.held, op);

    op->held = 0;
    op->done = 1;
    op->handler(op->data, st, st == BL_ST_OK ? result : NULL);

    free(op);
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

void
bl_pg_dispatch_start(void)
{
    if ((bl_pg.reads.head != NULL || bl_pg.writes.head != NULL)
        && !ev_is_active(&bl_pg.dispatch))
    {
        ev_prepare_start(bl_loop, &bl_pg.dispatch);
    }
}


void
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


/*
 * The other ops of op's kind waiting in q join it, right after it.  A
 * group of writes is one group commit's worth (BL_PG_BATCH_OPS, and
 * BL_PG_BATCH_BYTES, which a write may carry a megabyte of).
 */
static void
bl_pg_merge(bl_pg_queue_t *q, bl_pg_batch_t *b, bl_storage_op_t *op)
{
    bl_uint_t         n, max;
    bl_storage_op_t  *o, *next;

    n = 1;
    max = op->type->write ? BL_PG_BATCH_OPS : BL_PG_MERGE_OPS;

    for (o = q->head; o != NULL && n < max; o = next) {
        next = o->next;

        if (o->type != op->type) {
            continue;
        }

        if (op->type->write && b->size + o->size > BL_PG_BATCH_BYTES) {
            break;
        }

        bl_pg_queue_remove(q, o);
        bl_pg_queue_add(&b->ops, o);
        o->batch = b;
        o->merged = 1;
        b->size += o->size;
        n++;
    }
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

        if (b->nstmts > 0
            && (b->nstmts >= max || b->size + op->size > BL_PG_BATCH_BYTES
                || op->type->solo || b->ops.head->type->solo))
        {
            break;
        }

        bl_pg_queue_remove(q, op);
        bl_pg_queue_add(&b->ops, op);
        op->batch = b;
        b->size += op->size;

        if (op->type->merge) {
            bl_pg_merge(q, b, op);
        }

        if (op->type->send(c->pc, op) != BL_OK) {
            bl_pg_conn_fail(c, BL_LOG_ERR, "could not send a statement");
            return BL_OK;
        }

        b->nstmts++;
    }

    /* the first part of the batch's NOTIFY (see bl_pg_send_notify) */

    if (write) {
        if (PQsendQueryPrepared(c->pc, BL_PG_STMT_NOTIFY_MARK, 0, NULL, NULL,
                                NULL, 1)
            != 1)
        {
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

    if (write && bl_pg_send_notify(c) != BL_OK) {
        return BL_OK;
    }

    (void) bl_pg_flush(c);

    return BL_OK;
}


/*
 * The watchers of every node learn of a commit from a NOTIFY with the
 * revision it reached: the batch's last statement marks the session with
 * it (and only if the batch took a revision; bl_pg_schema.c), and this
 * transaction of its own, queued right behind the batch, sends it.
 * Inside the write transaction, NOTIFY's work at commit (the
 * notification queue and its lock) lengthened the time the revision lock
 * is held, which bounds the write rate; after it, it costs the writer
 * nothing.  It counts with its batch (one statement, no round trip of
 * its own: nobody waits for it).  A listener reads the log up to the
 * revision it is told; should a NOTIFY be lost with its connection, the
 * watcher's poll finds the rows.
 */
static bl_int_t
bl_pg_send_notify(bl_pg_conn_t *c)
{
    bl_pg_batch_t  *b;

    b = bl_calloc(sizeof(bl_pg_batch_t));
    if (b == NULL) {
        bl_pg_conn_fail(c, BL_LOG_ERR, "no memory for a NOTIFY");
        return BL_ERROR;
    }

    b->conn = c;
    b->notify = 1;
    c->tail->next = b;
    c->tail = b;
    c->inflight++;

    if (PQsendQueryPrepared(c->pc, BL_PG_STMT_NOTIFY, 0, NULL, NULL, NULL, 1)
        != 1
        || PQpipelineSync(c->pc) != 1)
    {
        bl_pg_conn_fail(c, BL_LOG_ERR, "could not send a NOTIFY");
        return BL_ERROR;
    }

    return BL_OK;
}
