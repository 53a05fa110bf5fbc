/*
 * Reading the revision log for watches (bl_storage_log_read): one
 * statement, one snapshot, that says where the store is (its revision and
 * compact revision) and returns the events of whole revisions after
 * `after`, each with the key's previous version for prev_kv.
 *
 * The plan depends on the key range, so the statement does too:
 *
 *   every key    walks the log's primary key (rev, sub) from `after`:
 *                what the watcher's feed reads, all events of the
 *                revisions wanted and nothing else
 *   one key      walks that key's history in the (key, rev) index
 *   a range      either, whichever reads less: a prefix of most keys is
 *                best read in revision order and filtered, a narrow one
 *                by key then sorted.  Sent unprepared, so that it is
 *                planned for its parameters every time (a generic plan
 *                picks one way for all ranges)
 *
 * Revisions are gap-free and each has at least one event above the
 * compact revision, so "the revisions after `after` up to `through`" is
 * exactly the page, whatever the key range; through = min(after +
 * max_revs, current).
 */
#include <bl_core.h>
#include <bl_pg.h>


#define BL_LOG_NCOLS  16


static bl_int_t bl_storage_log_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_log_result(bl_storage_op_t *op, PGresult *res);


static const bl_pg_op_type_t  bl_storage_log_type = {
    "log read", 0, 0, 0, bl_storage_log_send, bl_storage_log_result, NULL
};


static const char  bl_storage_log_empty[1];


bl_storage_status_e
bl_storage_log_read(bl_pool_t *pool, const bl_log_req_t *req,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_pg_post(&bl_storage_log_type, pool, handler, data, req,
                      sizeof(bl_log_req_t),
                      req->key.len + req->range_end.len + 64, op);
}


/* every key: no key, or every key from "" or "\0" on */
static int
bl_storage_log_all(const bl_log_req_t *r)
{
    if (r->key.len == 0) {
        return 1;
    }

    return bl_storage_range_form(&r->range_end) == BL_PG_FORM_FROM
           && r->key.len == 1 && r->key.data[0] == '\0';
}


static bl_int_t
bl_storage_log_send(PGconn *pc, bl_storage_op_t *op)
{
    int                  n, rc, lengths[4], formats[4];
    u_char               after[8], last[8];
    int64_t              upto;
    const char          *values[4];
    const bl_log_req_t  *r;

    static const Oid  types[4] = {
        BL_PG_INT8OID, BL_PG_INT8OID, BL_PG_BYTEAOID, BL_PG_BYTEAOID
    };

    r = &op->req.log;

    /* the last revision wanted, without overflow; max_revs <= 0: all */
    if (r->max_revs <= 0 || r->after > INT64_MAX - r->max_revs) {
        upto = INT64_MAX;

    } else {
        upto = r->after + r->max_revs;
    }

    bl_pg_put_int64(after, r->after);
    bl_pg_put_int64(last, upto);

    values[0] = (const char *) after;
    values[1] = (const char *) last;
    values[2] = r->key.len ? (const char *) r->key.data
                           : bl_storage_log_empty;
    values[3] = r->range_end.len ? (const char *) r->range_end.data
                                 : bl_storage_log_empty;
    lengths[0] = 8;
    lengths[1] = 8;
    lengths[2] = (int) r->key.len;
    lengths[3] = (int) r->range_end.len;
    formats[0] = formats[1] = formats[2] = formats[3] = 1;

    if (bl_storage_log_all(r)) {
        rc = PQsendQueryPrepared(pc, BL_PG_STMT_LOG_ALL, 2, values, lengths,
                                 formats, 1);

    } else {
        switch (bl_storage_range_form(&r->range_end)) {

        case BL_PG_FORM_KEY:
            rc = PQsendQueryPrepared(pc, BL_PG_STMT_LOG_KEY, 3, values,
                                     lengths, formats, 1);
            break;

        case BL_PG_FORM_FROM:
            n = 3;
            rc = PQsendQueryParams(pc, bl_pg_log_from_sql, n, types, values,
                                   lengths, formats, 1);
            break;

        default:
            n = 4;
            rc = PQsendQueryParams(pc, bl_pg_log_range_sql, n, types,
                                   values, lengths, formats, 1);
        }
    }

    return rc == 1 ? BL_OK : BL_ERROR;
}


static void
bl_storage_log_result(bl_storage_op_t *op, PGresult *res)
{
    int              i, nrows;
    int32_t          kind, sub;
    int64_t          prev_rev;
    bl_kv_t         *kv;
    bl_log_res_t    *lr;
    bl_log_event_t  *ev, *last;

    nrows = PQntuples(res);

    if (nrows < 1 || PQnfields(res) != BL_LOG_NCOLS) {
        goto invalid;
    }

    lr = bl_pcalloc(op->pool, sizeof(bl_log_res_t));
    if (lr == NULL) {
        goto nomem;
    }

    if (bl_pg_int64(res, 0, 0, &lr->current) != BL_OK
        || bl_pg_int64(res, 0, 1, &lr->compact) != BL_OK
        || bl_pg_int64(res, 0, 2, &lr->through) != BL_OK
        || !PQgetisnull(res, 0, 3))
    {
        goto invalid;
    }

    bl_pg_seen_revision(lr->current);

    op->result = lr;

    if (op->req.log.after < lr->compact - 1) {
        /* nothing read; the caller needs the compact revision */
        lr->through = op->req.log.after;
        op->status = BL_ST_COMPACTED;
        return;
    }

    if (nrows > 1) {
        lr->events = bl_pcalloc(op->pool,
                                (size_t) (nrows - 1) * sizeof(bl_log_event_t));
        if (lr->events == NULL) {
            goto nomem;
        }
    }

    last = NULL;

    for (i = 1; i < nrows; i++) {
        ev = &lr->events[i - 1];
        kv = &ev->kv;

        if (bl_pg_int64(res, i, 3, &ev->rev) != BL_OK
            || bl_pg_int32(res, i, 4, &sub) != BL_OK
            || bl_pg_int32(res, i, 5, &kind) != BL_OK
            || bl_pg_int64(res, i, 11, &prev_rev) != BL_OK
            || (kind != 0 && kind != 1)
            || ev->rev <= op->req.log.after || ev->rev > lr->through)
        {
            goto invalid;
        }

        /* the order is the statement's promise: say so if ever not */
        if (last != NULL
            && (ev->rev < last->rev
                || (ev->rev == last->rev && sub <= last->sub)))
        {
            bl_log_error(BL_LOG_ERR, 0, "postgres: log rows out of "
                         "revision order");
            goto invalid;
        }

        ev->sub = sub;
        ev->deleted = kind;

        if (bl_pg_bytes(op->pool, res, i, 6, &kv->key) != BL_OK) {
            goto nomem;
        }

        if (kv->key.data == NULL) {
            goto invalid;
        }

        kv->mod_revision = ev->rev;
        bl_str_set(&kv->value, "");
        kv->value.len = 0;

        if (!ev->deleted) {
            /* etcd's tombstone has the key and mod_revision only */
            if (bl_pg_int64(res, i, 7, &kv->create_revision) != BL_OK
                || bl_pg_int64(res, i, 8, &kv->version) != BL_OK
                || bl_pg_int64(res, i, 9, &kv->lease) != BL_OK)
            {
                goto invalid;
            }

            if (bl_pg_bytes(op->pool, res, i, 10, &kv->value) != BL_OK) {
                goto nomem;
            }
        }

        if (!PQgetisnull(res, i, 12)) {
            ev->has_prev = 1;
            ev->prev.key = kv->key;
            ev->prev.mod_revision = prev_rev;

            if (bl_pg_int64(res, i, 12, &ev->prev.create_revision) != BL_OK
                || bl_pg_int64(res, i, 13, &ev->prev.version) != BL_OK
                || bl_pg_int64(res, i, 14, &ev->prev.lease) != BL_OK)
            {
                goto invalid;
            }

            if (bl_pg_bytes(op->pool, res, i, 15, &ev->prev.value)
                != BL_OK)
            {
                goto nomem;
            }
        }

        last = ev;
    }

    lr->nevents = (size_t) (nrows - 1);

    op->status = BL_ST_OK;
    return;

invalid:

    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to a log read");

nomem:

    op->result = NULL;
    op->status = BL_ST_INTERNAL;
}
