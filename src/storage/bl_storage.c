/*
 * The storage API (bl_storage.h) on the PostgreSQL pool: each operation
 * kind is a bl_pg_op_type_t, how to send its statement and how to read
 * its answer into the caller's pool.
 */
#include <bl_core.h>
#include <bl_pg.h>


static bl_int_t bl_storage_range_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_range_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_put_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_put_result(bl_storage_op_t *op, PGresult *res);
static void bl_storage_put_row(bl_storage_op_t *op, PGresult *res, int row);
static bl_int_t bl_storage_delete_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_delete_result(bl_storage_op_t *op, PGresult *res);


static const bl_pg_op_type_t  bl_storage_range_type = {
    "range", 0, 0, 0, bl_storage_range_send, bl_storage_range_result, NULL
};

static const bl_pg_op_type_t  bl_storage_put_type = {
    "put", 1, 0, 1, bl_storage_put_send, bl_storage_put_result, NULL
};

static const bl_pg_op_type_t  bl_storage_delete_type = {
    "delete", 1, 0, 0, bl_storage_delete_send, bl_storage_delete_result, NULL
};


/* a non-NULL pointer for an empty bytea: NULL would send SQL NULL */
static const char  bl_storage_empty[1];


#define bl_storage_bytes(s)                                                   \
    ((s)->len ? (const char *) (s)->data : bl_storage_empty)


const char *
bl_storage_status_text(bl_storage_status_e st)
{
    switch (st) {
    case BL_ST_OK:
        return "ok";
    case BL_ST_UNAVAILABLE:
        return "database unavailable";
    case BL_ST_COMPACTED:
        return "required revision has been compacted";
    case BL_ST_FUTURE_REV:
        return "required revision is a future revision";
    case BL_ST_KEY_NOT_FOUND:
        return "key not found";
    case BL_ST_LEASE_NOT_FOUND:
        return "requested lease not found";
    case BL_ST_LEASE_EXISTS:
        return "lease already exists";
    case BL_ST_TOO_MANY_REQUESTS:
        return "too many requests";
    case BL_ST_INTERNAL:
        return "internal error";
    }

    return "unknown status";
}


void
bl_storage_cancel(bl_storage_op_t *op)
{
    bl_pg_cancel(op);
}


int
bl_storage_range_form(const bl_str_t *range_end)
{
    if (range_end->len == 0) {
        return BL_PG_FORM_KEY;
    }

    if (range_end->len == 1 && range_end->data[0] == '\0') {
        return BL_PG_FORM_FROM;
    }

    return BL_PG_FORM_RANGE;
}


/* range */

bl_storage_status_e
bl_storage_range(bl_pool_t *pool, const bl_range_req_t *req,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_pg_post(&bl_storage_range_type, pool, handler, data, req,
                      sizeof(bl_range_req_t),
                      req->key.len + req->range_end.len + 64, op);
}


static bl_int_t
bl_storage_range_send(PGconn *pc, bl_storage_op_t *op)
{
    int                    lengths[5], formats[5];
    u_char                 limit[8], keys_only[1], rev[8];
    int64_t                n;
    const char            *values[5], *stmt;
    const bl_range_req_t  *r;

    r = &op->req.range;

    /* the form decides the statement, so that each plan is an index
     * range scan; range_end <= key simply finds nothing */

    switch (bl_storage_range_form(&r->range_end)) {

    case BL_PG_FORM_KEY:
        stmt = (r->revision > 0) ? BL_PG_STMT_RANGE_ONE_AT
                                 : BL_PG_STMT_RANGE_ONE;
        break;

    case BL_PG_FORM_FROM:
        stmt = (r->revision > 0) ? BL_PG_STMT_RANGE_FROM_AT
                                 : BL_PG_STMT_RANGE_FROM;
        break;

    default:
        stmt = (r->revision > 0) ? BL_PG_STMT_RANGE_BETWEEN_AT
                                 : BL_PG_STMT_RANGE_BETWEEN;
    }

    values[0] = bl_storage_bytes(&r->key);
    lengths[0] = (int) r->key.len;
    values[1] = bl_storage_bytes(&r->range_end);
    lengths[1] = (int) r->range_end.len;

    /* limit + 1 rows tell "more" */

    if (r->count_only) {
        bl_pg_put_int64(limit, 0);
        values[2] = (const char *) limit;

    } else if (r->limit > 0) {
        n = (r->limit < INT64_MAX) ? r->limit + 1 : r->limit;
        bl_pg_put_int64(limit, n);
        values[2] = (const char *) limit;

    } else {
        values[2] = NULL;
    }

    lengths[2] = 8;

    keys_only[0] = (r->keys_only || r->count_only) ? 1 : 0;
    values[3] = (const char *) keys_only;
    lengths[3] = 1;

    bl_pg_put_int64(rev, r->revision > 0 ? r->revision : 0);
    values[4] = (const char *) rev;
    lengths[4] = 8;

    formats[0] = formats[1] = formats[2] = formats[3] = formats[4] = 1;

    if (PQsendQueryPrepared(pc, stmt, 5, values, lengths, formats, 1) != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


static void
bl_storage_range_result(bl_storage_op_t *op, PGresult *res)
{
    int                    i, nrows;
    int64_t                rev, compact;
    bl_kv_t               *kv;
    bl_range_res_t        *rr;
    const bl_range_req_t  *r;

    r = &op->req.range;
    nrows = PQntuples(res);

    if (nrows < 1 || PQnfields(res) != 9
        || bl_pg_int64(res, 0, 0, &rev) != BL_OK
        || bl_pg_int64(res, 0, 1, &compact) != BL_OK)
    {
        goto invalid;
    }

    bl_pg_seen_revision(rev);

    if (r->revision > 0) {
        if (r->revision > rev) {
            op->status = BL_ST_FUTURE_REV;
            return;
        }

        if (r->revision < compact) {
            op->status = BL_ST_COMPACTED;
            return;
        }
    }

    rr = bl_pcalloc(op->pool, sizeof(bl_range_res_t));
    if (rr == NULL) {
        goto nomem;
    }

    rr->header_revision = rev;

    if (bl_pg_int64(res, 0, 2, &rr->count) != BL_OK) {
        goto invalid;
    }

    if (PQgetisnull(res, 0, 3)) {
        nrows = 0;
    }

    if (r->count_only) {
        nrows = 0;
    }

    if (r->limit > 0 && !r->count_only && nrows > r->limit) {
        rr->more = 1;
        nrows = (int) r->limit;
    }

    if (nrows > 0) {
        rr->kvs = bl_palloc(op->pool, (size_t) nrows * sizeof(bl_kv_t));
        if (rr->kvs == NULL) {
            goto nomem;
        }
    }

    for (i = 0; i < nrows; i++) {
        kv = &rr->kvs[i];

        if (bl_pg_kv(op->pool, res, i, 3, kv) != BL_OK) {
            goto invalid;
        }

        /* rows come in key order from the index; say so if ever not */
        if (i > 0 && bl_str_cmp(&rr->kvs[i - 1].key, &kv->key) >= 0) {
            bl_log_error(BL_LOG_ERR, 0, "postgres: range rows out of key "
                         "order");
            goto invalid;
        }
    }

    rr->nkvs = (size_t) nrows;

    op->status = BL_ST_OK;
    op->result = rr;
    return;

invalid:

    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to range");

nomem:

    op->status = BL_ST_INTERNAL;
}


/* put */

bl_storage_status_e
bl_storage_put(bl_pool_t *pool, const bl_put_req_t *req,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_pg_post(&bl_storage_put_type, pool, handler, data, req,
                      sizeof(bl_put_req_t),
                      req->key.len + req->value.len + 64, op);
}


/*
 * Puts are merged (bl_pg.h): the group waiting when a batch is made goes
 * to PostgreSQL as one statement of four arrays (ballast_put_many), and
 * its rows answer the puts in the group's order.
 */

static bl_int_t
bl_storage_put_send(PGconn *pc, bl_storage_op_t *op)
{
    int                  dims[1], lengths[4], formats[4], rc, i;
    u_char              *buf, *p[4];
    size_t               n, keys, vals, size[4];
    int32_t              f;
    const char          *values[4];
    bl_storage_op_t     *o;
    const bl_put_req_t  *r;

    n = 0;
    keys = 0;
    vals = 0;

    for (o = op; bl_pg_in_group(o, op); o = o->next) {
        n++;
        keys += o->req.put.key.len;
        vals += o->req.put.value.len;
    }

    size[0] = bl_pg_array_size(1, n, keys);
    size[1] = bl_pg_array_size(1, n, vals);
    size[2] = bl_pg_array_size(1, n, n * 8);
    size[3] = bl_pg_array_size(1, n, n * 4);

    buf = bl_alloc(size[0] + size[1] + size[2] + size[3]);
    if (buf == NULL) {
        return BL_ERROR;
    }

    dims[0] = (int) n;
    p[0] = bl_pg_array_start(buf, BL_PG_BYTEAOID, 1, dims, 0);
    p[1] = bl_pg_array_start(buf + size[0], BL_PG_BYTEAOID, 1, dims, 0);
    p[2] = bl_pg_array_start(buf + size[0] + size[1], BL_PG_INT8OID, 1,
                             dims, 0);
    p[3] = bl_pg_array_start(buf + size[0] + size[1] + size[2],
                             BL_PG_INT4OID, 1, dims, 0);

    /* cancelled ones too: they were sent, so they are written */

    for (o = op; bl_pg_in_group(o, op); o = o->next) {
        r = &o->req.put;

        f = (r->prev_kv ? 1 : 0) | (r->ignore_value ? 2 : 0)
            | (r->ignore_lease ? 4 : 0);

        p[0] = bl_pg_array_bytes(p[0], r->key.data, r->key.len);
        p[1] = bl_pg_array_bytes(p[1], r->value.data, r->value.len);
        p[2] = bl_pg_array_int64(p[2], r->lease);
        p[3] = bl_pg_array_int32(p[3], f);
    }

    values[0] = (const char *) buf;

    for (i = 0; i < 4; i++) {
        if (i > 0) {
            values[i] = values[i - 1] + size[i - 1];
        }

        lengths[i] = (int) size[i];
        formats[i] = 1;
    }

    /* libpq copies the parameters into its output buffer */
    rc = PQsendQueryPrepared(pc, BL_PG_STMT_PUT, 4, values, lengths, formats,
                             1);
    free(buf);

    return rc == 1 ? BL_OK : BL_ERROR;
}


/* the group's rows, in its order: row i answers its i-th put */
static void
bl_storage_put_result(bl_storage_op_t *op, PGresult *res)
{
    int               row, nrows;
    int32_t           n;
    bl_storage_op_t  *o;

    nrows = PQntuples(res);
    row = 0;

    for (o = op; bl_pg_in_group(o, op); o = o->next, row++) {
        if (row >= nrows || PQnfields(res) != 8
            || bl_pg_int32(res, row, 0, &n) != BL_OK || n != row + 1)
        {
            bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to "
                         "put");

            for ( /* void */ ; bl_pg_in_group(o, op); o = o->next) {
                o->status = BL_ST_INTERNAL;
            }

            return;
        }

        if (!o->cancelled && !o->done) {
            bl_storage_put_row(o, res, row);
        }
    }
}


static void
bl_storage_put_row(bl_storage_op_t *op, PGresult *res, int row)
{
    int32_t        err;
    int64_t        rev;
    bl_kv_t       *kv;
    bl_put_res_t  *pr;

    if (bl_pg_int32(res, row, 1, &err) != BL_OK
        || bl_pg_int64(res, row, 2, &rev) != BL_OK)
    {
        goto invalid;
    }

    bl_pg_seen_revision(rev);

    switch (err) {

    case 0:
        break;

    case 1:
        op->status = BL_ST_KEY_NOT_FOUND;
        return;

    case 2:
        op->status = BL_ST_LEASE_NOT_FOUND;
        return;

    default:
        goto invalid;
    }

    pr = bl_pcalloc(op->pool, sizeof(bl_put_res_t));
    if (pr == NULL) {
        goto nomem;
    }

    pr->header_revision = rev;

    if (op->req.put.prev_kv && !PQgetisnull(res, row, 4)) {
        kv = bl_pcalloc(op->pool, sizeof(bl_kv_t));
        if (kv == NULL) {
            goto nomem;
        }

        if (bl_pg_int64(res, row, 3, &kv->create_revision) != BL_OK
            || bl_pg_int64(res, row, 4, &kv->mod_revision) != BL_OK
            || bl_pg_int64(res, row, 5, &kv->version) != BL_OK
            || bl_pg_int64(res, row, 6, &kv->lease) != BL_OK)
        {
            goto invalid;
        }

        if (bl_pg_bytes(op->pool, res, row, 7, &kv->value) != BL_OK
            || bl_str_dup(op->pool, &kv->key, op->req.put.key.data,
                          op->req.put.key.len)
               != BL_OK)
        {
            goto nomem;
        }

        if (kv->value.data == NULL) {
            bl_str_set(&kv->value, "");
        }

        pr->prev_kv = kv;
    }

    op->status = BL_ST_OK;
    op->result = pr;
    return;

invalid:

    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to put");
    op->status = BL_ST_INTERNAL;
    return;

nomem:

    op->status = BL_ST_INTERNAL;
}


/* delete */

bl_storage_status_e
bl_storage_delete(bl_pool_t *pool, const bl_delete_req_t *req,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_pg_post(&bl_storage_delete_type, pool, handler, data, req,
                      sizeof(bl_delete_req_t),
                      req->key.len + req->range_end.len + 64, op);
}


static bl_int_t
bl_storage_delete_send(PGconn *pc, bl_storage_op_t *op)
{
    int                     lengths[4], formats[4];
    u_char                  form[4], prev[1];
    const char             *values[4];
    const bl_delete_req_t  *r;

    r = &op->req.del;

    bl_pg_put_int32(form, bl_storage_range_form(&r->range_end));
    values[0] = (const char *) form;
    lengths[0] = 4;
    values[1] = bl_storage_bytes(&r->key);
    lengths[1] = (int) r->key.len;
    values[2] = bl_storage_bytes(&r->range_end);
    lengths[2] = (int) r->range_end.len;
    prev[0] = r->prev_kv ? 1 : 0;
    values[3] = (const char *) prev;
    lengths[3] = 1;

    formats[0] = formats[1] = formats[2] = formats[3] = 1;

    if (PQsendQueryPrepared(pc, BL_PG_STMT_DELETE, 4, values, lengths,
                            formats, 1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/* the deleted key-values (when asked), then the row with the revision */
static void
bl_storage_delete_result(bl_storage_op_t *op, PGresult *res)
{
    int               i, nrows;
    bl_delete_res_t  *dr;

    nrows = PQntuples(res);

    if (nrows < 1 || PQnfields(res) != 8) {
        goto invalid;
    }

    dr = bl_pcalloc(op->pool, sizeof(bl_delete_res_t));
    if (dr == NULL) {
        goto nomem;
    }

    if (bl_pg_int64(res, nrows - 1, 0, &dr->header_revision) != BL_OK
        || bl_pg_int64(res, nrows - 1, 1, &dr->deleted) != BL_OK
        || (op->req.del.prev_kv ? dr->deleted != nrows - 1 : nrows != 1))
    {
        goto invalid;
    }

    bl_pg_seen_revision(dr->header_revision);

    if (nrows > 1) {
        dr->prev_kvs = bl_palloc(op->pool,
                                 (size_t) (nrows - 1) * sizeof(bl_kv_t));
        if (dr->prev_kvs == NULL) {
            goto nomem;
        }
    }

    for (i = 0; i < nrows - 1; i++) {
        if (bl_pg_kv(op->pool, res, i, 2, &dr->prev_kvs[i]) != BL_OK) {
            goto invalid;
        }
    }

    dr->nprev_kvs = (size_t) (nrows - 1);

    op->status = BL_ST_OK;
    op->result = dr;
    return;

invalid:

    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to delete");

nomem:

    op->status = BL_ST_INTERNAL;
}
