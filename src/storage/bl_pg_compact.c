/*
 * Compaction (bl_storage_compact).  Recording the compact revision is one
 * write statement that rides in the group commit (ballast_compact): from
 * its commit on, reads below it fail.  Deleting the history it made
 * unreachable comes after, as a sequence of short bounded transactions
 * (ballast_compact_step, BL_PG_COMPACT_STEP_ROWS log rows each, in a
 * batch of its own) that this worker's loop sends one after the other:
 * never blocking the loop, and never holding the revision lock, so that
 * writers do not wait for it.
 *
 * Any process can drive the deletion: the progress is in the database
 * (ballast_compaction), and an advisory lock taken by each step keeps two
 * drivers off the same rows.  A worker drives it after it recorded a
 * compaction, and when its first connection comes up (so a compaction
 * that a crash interrupted resumes).  While another process holds the
 * lock, it asks again every BL_PG_COMPACT_RETRY ms until the deletion is
 * done: the holder may die.
 *
 * A physical compaction is answered only once the deletion reached its
 * revision: its op is held by the pool (bl_pg_release) meanwhile.
 */
#include <bl_core.h>
#include <bl_pg.h>


#define BL_PG_COMPACT_RETRY  1000      /* msec */


typedef struct {
    unsigned           busy:1;
    int64_t            deleted;
    int64_t            scheduled;
    int64_t            finished;
} bl_pg_step_res_t;

typedef struct {
    unsigned           running:1;  /* a step in flight or due */
    unsigned           again:1;    /* kicked meanwhile: look once more */
    ev_timer           timer;
    double             sent;       /* when the step in flight went */
    bl_pg_step_res_t   res;
} bl_pg_compact_t;


static bl_int_t bl_pg_compact_send(PGconn *pc, bl_storage_op_t *op);
static void bl_pg_compact_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_pg_compact_committed(bl_storage_op_t *op);
static bl_int_t bl_pg_step_send(PGconn *pc, bl_storage_op_t *op);
static void bl_pg_step_result(bl_storage_op_t *op, PGresult *res);
static void bl_pg_step(void);
static void bl_pg_step_done(void *data, bl_storage_status_e st,
    void *result);
static void bl_pg_step_timer(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_pg_compact_answer(int64_t finished, bl_storage_status_e st);


static const bl_pg_op_type_t  bl_pg_compact_type = {
    "compact", 1, 0, 0, bl_pg_compact_send, bl_pg_compact_result,
    bl_pg_compact_committed
};

static const bl_pg_op_type_t  bl_pg_step_type = {
    "compaction step", 0, 1, 0, bl_pg_step_send, bl_pg_step_result, NULL
};


static bl_pg_compact_t  bl_pg_compact;

bl_pg_compact_stats_t  bl_pg_compact_stats;


bl_storage_status_e
bl_storage_compact(bl_pool_t *pool, int64_t revision, int physical,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    bl_pg_compact_req_t  req;

    req.revision = revision;
    req.physical = physical ? 1 : 0;

    return bl_pg_post(&bl_pg_compact_type, pool, handler, data, &req,
                      sizeof(req), 64, op);
}


static bl_int_t
bl_pg_compact_send(PGconn *pc, bl_storage_op_t *op)
{
    int          length, format;
    u_char       rev[8];
    const char  *value;

    bl_pg_put_int64(rev, op->req.compact.revision);
    value = (const char *) rev;
    length = 8;
    format = 1;

    if (PQsendQueryPrepared(pc, BL_PG_STMT_COMPACT, 1, &value, &length,
                            &format, 1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/* err, rev (the current revision), compact_rev */
static void
bl_pg_compact_result(bl_storage_op_t *op, PGresult *res)
{
    int32_t            err;
    int64_t            rev;
    bl_compact_res_t  *cr;

    if (PQntuples(res) != 1 || PQnfields(res) != 3
        || bl_pg_int32(res, 0, 0, &err) != BL_OK
        || bl_pg_int64(res, 0, 1, &rev) != BL_OK)
    {
        bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to "
                     "compact");
        op->status = BL_ST_INTERNAL;
        return;
    }

    bl_pg_seen_revision(rev);

    switch (err) {

    case 0:
        cr = bl_pcalloc(op->pool, sizeof(bl_compact_res_t));
        if (cr == NULL) {
            op->status = BL_ST_INTERNAL;
            return;
        }

        cr->header_revision = rev;
        op->status = BL_ST_OK;
        op->result = cr;
        return;

    case 3:
        op->status = BL_ST_COMPACTED;
        return;

    case 4:
        op->status = BL_ST_FUTURE_REV;
        return;

    default:
        bl_log_error(BL_LOG_ERR, 0, "postgres: compact answered error %d",
                     (int) err);
        op->status = BL_ST_INTERNAL;
    }
}


/* recorded (or maybe, if cancelled): start deleting; a physical one
 * waits for that */
static bl_int_t
bl_pg_compact_committed(bl_storage_op_t *op)
{
    if (!op->cancelled && op->status != BL_ST_OK) {
        return BL_OK;
    }

    bl_pg_compact_kick();

    return (op->cancelled || !op->req.compact.physical) ? BL_OK : BL_AGAIN;
}


void
bl_pg_compact_kick(void)
{
    bl_pg_compact_t  *d;

    d = &bl_pg_compact;

    if (!bl_pg.started) {
        return;
    }

    if (d->running) {
        d->again = 1;
        return;
    }

    ev_init(&d->timer, bl_pg_step_timer);
    d->running = 1;
    d->again = 0;

    bl_pg_step();
}


void
bl_pg_compact_stop(void)
{
    /* the pool freed the step in flight and the held ops */
    ev_timer_stop(bl_loop, &bl_pg_compact.timer);
    bl_pg_compact.running = 0;
    bl_pg_compact.again = 0;
}


static void
bl_pg_step(void)
{
    bl_pg_compact_req_t   req;
    bl_storage_status_e   st;

    req.revision = 0;
    req.physical = 0;

    bl_pg_compact.sent = ev_time();

    st = bl_pg_post(&bl_pg_step_type, NULL, bl_pg_step_done,
                    &bl_pg_compact, &req, sizeof(req), 64, NULL);

    switch (st) {

    case BL_ST_OK:
        return;

    case BL_ST_UNAVAILABLE:
        /* the first connection to come up starts it again */
        bl_pg_compact.running = 0;
        bl_pg_compact_answer(INT64_MAX, BL_ST_UNAVAILABLE);
        return;

    default:
        bl_timer_set(&bl_pg_compact.timer, BL_PG_COMPACT_RETRY);
    }
}


static bl_int_t
bl_pg_step_send(PGconn *pc, bl_storage_op_t *op)
{
    int          length, format;
    u_char       limit[4];
    const char  *value;

    BL_UNUSED(op);

    bl_pg_put_int32(limit, BL_PG_COMPACT_STEP_ROWS);
    value = (const char *) limit;
    length = 4;
    format = 1;

    if (PQsendQueryPrepared(pc, BL_PG_STMT_COMPACT_STEP, 1, &value, &length,
                            &format, 1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/* busy, deleted, scheduled, finished */
static void
bl_pg_step_result(bl_storage_op_t *op, PGresult *res)
{
    bl_pg_step_res_t  *r;

    r = &bl_pg_compact.res;

    if (PQntuples(res) != 1 || PQnfields(res) != 4
        || PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) != 1
        || bl_pg_int64(res, 0, 1, &r->deleted) != BL_OK
        || bl_pg_int64(res, 0, 2, &r->scheduled) != BL_OK
        || bl_pg_int64(res, 0, 3, &r->finished) != BL_OK)
    {
        bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to a "
                     "compaction step");
        op->status = BL_ST_INTERNAL;
        return;
    }

    r->busy = (PQgetvalue(res, 0, 0)[0] != 0);
    op->status = BL_ST_OK;
    op->result = r;
}


static void
bl_pg_step_done(void *data, bl_storage_status_e st, void *result)
{
    int64_t            ms;
    bl_pg_compact_t   *d;
    bl_pg_step_res_t  *r;

    d = data;
    r = result;

    if (st != BL_ST_OK) {
        /* logged by the pool; a connection coming up starts it again */
        d->running = 0;
        bl_pg_compact_answer(INT64_MAX, st);
        return;
    }

    ms = (int64_t) ((ev_time() - d->sent) * 1000.0);

    if (r->busy) {
        bl_pg_compact_stats.busy++;

    } else if (r->deleted > 0 || r->finished < r->scheduled) {
        bl_pg_compact_stats.steps++;
        bl_pg_compact_stats.deleted += (uint64_t) r->deleted;
        bl_pg_compact_stats.max_rows = bl_max(bl_pg_compact_stats.max_rows,
                                              (uint64_t) r->deleted);
        bl_pg_compact_stats.msec += ms;
        bl_pg_compact_stats.max_msec = bl_max(bl_pg_compact_stats.max_msec,
                                              ms);
        bl_log_debug("postgres: compaction step deleted %" PRId64 " rows "
                     "in %" PRId64 " ms", r->deleted, ms);
    }

    if (r->finished > bl_pg_compact_stats.finished) {
        bl_pg_compact_stats.finished = r->finished;

        if (r->finished >= r->scheduled && !r->busy) {
            bl_log_error(BL_LOG_INFO, 0, "postgres: compaction to revision "
                         "%" PRId64 " is done", r->finished);
        }
    }

    bl_pg_compact_answer(r->finished, BL_ST_OK);

    if (r->busy) {
        /* another process is at it: see later whether it finished */
        bl_timer_set(&d->timer, BL_PG_COMPACT_RETRY);
        return;
    }

    if (r->finished < r->scheduled || d->again) {
        d->again = 0;
        bl_pg_step();
        return;
    }

    d->running = 0;
}


static void
bl_pg_step_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    if (bl_pg_compact.running) {
        bl_pg_compact.again = 0;
        bl_pg_step();
    }
}


/*
 * Answer the physical compactions done (revision <= finished) with st.
 * One at a time from the head: a handler may cancel other held ops.
 */
static void
bl_pg_compact_answer(int64_t finished, bl_storage_status_e st)
{
    bl_storage_op_t  *op;

    for ( ;; ) {
        for (op = bl_pg.held.head; op != NULL; op = op->next) {
            if (op->type == &bl_pg_compact_type
                && op->req.compact.revision <= finished)
            {
                break;
            }
        }

        if (op == NULL) {
            return;
        }

        bl_pg_release(op, st, op->result);
    }
}
