/*
 * Leases (bl_storage.h): one statement each, over the functions of
 * bl_pg_sql_lease.c and the statements of bl_pg_schema.c.
 *
 * Revoke and expire take revisions: they are writes and ride in the group
 * commit (and its NOTIFY).  Grant, keepalive, TimeToLive and Leases take
 * none and go with the reads, so that they never wait for the write batch
 * in flight; a grant or a keepalive still commits before it is answered
 * (the batch is a transaction, answered after its Sync).
 *
 * Keepalives are the hot path (every client of every lease, every few
 * seconds): those queued in the worker when a batch is made share one
 * UPDATE ... WHERE id = ANY(...), whatever their number.
 */
#include <bl_core.h>
#include <bl_pg.h>


/* leases expired per call at most (the statement fetches one more) */
#define BL_LEASE_EXPIRE_MAX  1000000


static bl_int_t bl_storage_lease_grant_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_lease_grant_result(bl_storage_op_t *op,
    PGresult *res);
static bl_int_t bl_storage_lease_revoke_send(PGconn *pc,
    bl_storage_op_t *op);
static void bl_storage_lease_revoke_result(bl_storage_op_t *op,
    PGresult *res);
static bl_int_t bl_storage_lease_keepalive_send(PGconn *pc,
    bl_storage_op_t *op);
static void bl_storage_lease_keepalive_result(bl_storage_op_t *op,
    PGresult *res);
static bl_int_t bl_storage_lease_ttl_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_lease_ttl_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_lease_list_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_lease_list_result(bl_storage_op_t *op,
    PGresult *res);
static bl_int_t bl_storage_lease_expire_send(PGconn *pc,
    bl_storage_op_t *op);
static void bl_storage_lease_expire_result(bl_storage_op_t *op,
    PGresult *res);
static bl_int_t bl_storage_lease_count_send(PGconn *pc,
    bl_storage_op_t *op);
static void bl_storage_lease_count_result(bl_storage_op_t *op,
    PGresult *res);


static const bl_pg_op_type_t  bl_storage_lease_grant_type = {
    "lease grant", 0, 0, 0, bl_storage_lease_grant_send,
    bl_storage_lease_grant_result, NULL
};

static const bl_pg_op_type_t  bl_storage_lease_revoke_type = {
    "lease revoke", 1, 0, 0, bl_storage_lease_revoke_send,
    bl_storage_lease_revoke_result, NULL
};

static const bl_pg_op_type_t  bl_storage_lease_keepalive_type = {
    "lease keepalive", 0, 0, 1, bl_storage_lease_keepalive_send,
    bl_storage_lease_keepalive_result, NULL
};

static const bl_pg_op_type_t  bl_storage_lease_ttl_type = {
    "lease time-to-live", 0, 0, 0, bl_storage_lease_ttl_send,
    bl_storage_lease_ttl_result, NULL
};

static const bl_pg_op_type_t  bl_storage_lease_list_type = {
    "lease list", 0, 0, 0, bl_storage_lease_list_send,
    bl_storage_lease_list_result, NULL
};

static const bl_pg_op_type_t  bl_storage_lease_expire_type = {
    "lease expiry", 1, 0, 0, bl_storage_lease_expire_send,
    bl_storage_lease_expire_result, NULL
};

static const bl_pg_op_type_t  bl_storage_lease_count_type = {
    "lease count", 0, 0, 0, bl_storage_lease_count_send,
    bl_storage_lease_count_result, NULL
};


static bl_storage_status_e
bl_storage_lease_post(const bl_pg_op_type_t *type, bl_pool_t *pool,
    int64_t id, int64_t ttl, int64_t max, int keys,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    bl_pg_lease_req_t  req;

    memset(&req, 0, sizeof(req));
    req.id = id;
    req.ttl = ttl;
    req.max = max;
    req.keys = keys ? 1 : 0;

    return bl_pg_post(type, pool, handler, data, &req, sizeof(req), 64, op);
}


/* statements of int8 parameters (and a bool) */
static bl_int_t
bl_storage_lease_send_params(PGconn *pc, const char *stmt, int n,
    const int64_t *v, int boolean)
{
    int          i, lengths[3], formats[3];
    u_char       buf[3][8];
    const char  *values[3];

    for (i = 0; i < n; i++) {
        bl_pg_put_int64(buf[i], v[i]);
        values[i] = (const char *) buf[i];
        lengths[i] = 8;
        formats[i] = 1;
    }

    if (boolean >= 0) {
        buf[n][0] = boolean ? 1 : 0;
        values[n] = (const char *) buf[n];
        lengths[n] = 1;
        formats[n] = 1;
        n++;
    }

    if (PQsendQueryPrepared(pc, stmt, n, values, lengths, formats, 1) != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


static bl_lease_res_t *
bl_storage_lease_res(bl_storage_op_t *op, int64_t rev, int64_t id,
    int64_t ttl)
{
    bl_lease_res_t  *lr;

    lr = bl_pcalloc(op->pool, sizeof(bl_lease_res_t));
    if (lr == NULL) {
        op->status = BL_ST_INTERNAL;
        return NULL;
    }

    lr->header_revision = rev;
    lr->id = id;
    lr->ttl = ttl;
    lr->remaining = ttl;

    op->status = BL_ST_OK;
    op->result = lr;

    return lr;
}


/* grant */

bl_storage_status_e
bl_storage_lease_grant(bl_pool_t *pool, int64_t id, int64_t ttl,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_lease_post(&bl_storage_lease_grant_type, pool, id, ttl,
                                 0, 0, handler, data, op);
}


static bl_int_t
bl_storage_lease_grant_send(PGconn *pc, bl_storage_op_t *op)
{
    int64_t  v[2];

    v[0] = op->req.lease.id;
    v[1] = op->req.lease.ttl;

    return bl_storage_lease_send_params(pc, BL_PG_STMT_LEASE_GRANT, 2, v, -1);
}


/* err, rev, id */
static void
bl_storage_lease_grant_result(bl_storage_op_t *op, PGresult *res)
{
    int32_t  err;
    int64_t  rev, id;

    if (PQntuples(res) != 1 || PQnfields(res) != 3
        || bl_pg_int32(res, 0, 0, &err) != BL_OK
        || bl_pg_int64(res, 0, 1, &rev) != BL_OK
        || bl_pg_int64(res, 0, 2, &id) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(rev);

    switch (err) {

    case 0:
        (void) bl_storage_lease_res(op, rev, id, op->req.lease.ttl);
        return;

    case 5:
        op->status = BL_ST_LEASE_EXISTS;
        return;

    default:
        bl_pg_op_invalid(op);
    }
}


/* revoke */

bl_storage_status_e
bl_storage_lease_revoke(bl_pool_t *pool, int64_t id,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_lease_post(&bl_storage_lease_revoke_type, pool, id, 0,
                                 0, 0, handler, data, op);
}


static bl_int_t
bl_storage_lease_revoke_send(PGconn *pc, bl_storage_op_t *op)
{
    return bl_storage_lease_send_params(pc, BL_PG_STMT_LEASE_REVOKE, 1,
                                        &op->req.lease.id, -1);
}


/* err, rev */
static void
bl_storage_lease_revoke_result(bl_storage_op_t *op, PGresult *res)
{
    int32_t  err;
    int64_t  rev;

    if (PQntuples(res) != 1 || PQnfields(res) != 2
        || bl_pg_int32(res, 0, 0, &err) != BL_OK
        || bl_pg_int64(res, 0, 1, &rev) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(rev);

    switch (err) {

    case 0:
        (void) bl_storage_lease_res(op, rev, op->req.lease.id, 0);
        return;

    case 2:
        op->status = BL_ST_LEASE_NOT_FOUND;
        return;

    default:
        bl_pg_op_invalid(op);
    }
}


/* keepalive: ops merged, one statement for the group (see bl_pg.h) */

bl_storage_status_e
bl_storage_lease_keepalive(bl_pool_t *pool, int64_t id,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_lease_post(&bl_storage_lease_keepalive_type, pool, id,
                                 0, 0, 0, handler, data, op);
}


static bl_int_t
bl_storage_lease_keepalive_send(PGconn *pc, bl_storage_op_t *op)
{
    int               dims[1], length, format, rc;
    u_char           *buf, *p;
    size_t            n, size;
    const char       *value;
    bl_storage_op_t  *o;

    n = 0;

    for (o = op; bl_pg_in_group(o, op); o = o->next) {
        n++;
    }

    size = bl_pg_array_size(1, n, n * 8);

    buf = bl_alloc(size);
    if (buf == NULL) {
        return BL_ERROR;
    }

    /* cancelled ones too: their place in the array is harmless */

    dims[0] = (int) n;
    p = bl_pg_array_start(buf, BL_PG_INT8OID, 1, dims, 0);

    for (o = op; bl_pg_in_group(o, op); o = o->next) {
        p = bl_pg_array_int64(p, o->req.lease.id);
    }

    value = (const char *) buf;
    length = (int) size;
    format = 1;

    /* libpq copies the parameters into its output buffer */
    rc = PQsendQueryPrepared(pc, BL_PG_STMT_LEASE_KEEPALIVE, 1, &value,
                             &length, &format, 1);
    free(buf);

    return rc == 1 ? BL_OK : BL_ERROR;
}


/* the row of lease id among the renewed ones, sorted by id; -1: none */
static int
bl_storage_lease_find(const int64_t *ids, int n, int64_t id)
{
    int  lo, hi, mid;

    lo = 0;
    hi = n - 1;

    while (lo <= hi) {
        mid = lo + (hi - lo) / 2;

        if (ids[mid] == id) {
            return mid;
        }

        if (ids[mid] < id) {
            lo = mid + 1;

        } else {
            hi = mid - 1;
        }
    }

    return -1;
}


/* the revision, then each renewed lease (id, ttl) in id order; one row
 * with a NULL id if none was */
static void
bl_storage_lease_keepalive_result(bl_storage_op_t *op, PGresult *res)
{
    int               i, n, nrows, row;
    int64_t           rev, *ids, *ttls;
    bl_storage_op_t  *o;

    nrows = PQntuples(res);
    ids = NULL;

    if (nrows < 1 || PQnfields(res) != 3
        || bl_pg_int64(res, 0, 0, &rev) != BL_OK)
    {
        goto invalid;
    }

    bl_pg_seen_revision(rev);

    n = PQgetisnull(res, 0, 1) ? 0 : nrows;

    if (n > 0) {
        ids = bl_alloc((size_t) n * 2 * sizeof(int64_t));
        if (ids == NULL) {
            goto nomem;
        }

        ttls = ids + n;

        for (i = 0; i < n; i++) {
            if (bl_pg_int64(res, i, 1, &ids[i]) != BL_OK
                || bl_pg_int64(res, i, 2, &ttls[i]) != BL_OK
                || (i > 0 && ids[i] <= ids[i - 1]))
            {
                goto invalid;
            }
        }

    } else {
        ttls = NULL;
    }

    for (o = op; bl_pg_in_group(o, op); o = o->next) {
        if (o->cancelled || o->done) {
            continue;
        }

        row = bl_storage_lease_find(ids, n, o->req.lease.id);

        if (row == -1) {
            o->status = BL_ST_LEASE_NOT_FOUND;
            continue;
        }

        (void) bl_storage_lease_res(o, rev, ids[row], ttls[row]);
    }

    free(ids);
    return;

invalid:

    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to %s",
                 op->type->name);

nomem:

    free(ids);

    for (o = op; bl_pg_in_group(o, op); o = o->next) {
        o->status = BL_ST_INTERNAL;
        o->result = NULL;
    }
}


/* time-to-live */

bl_storage_status_e
bl_storage_lease_ttl(bl_pool_t *pool, int64_t id, int keys,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_lease_post(&bl_storage_lease_ttl_type, pool, id, 0, 0,
                                 keys, handler, data, op);
}


static bl_int_t
bl_storage_lease_ttl_send(PGconn *pc, bl_storage_op_t *op)
{
    return bl_storage_lease_send_params(pc, BL_PG_STMT_LEASE_TTL, 1,
                                        &op->req.lease.id,
                                        op->req.lease.keys);
}


/* revision, id (NULL: none), ttl, remaining, key (NULL: none); a row per
 * key in key order */
static void
bl_storage_lease_ttl_result(bl_storage_op_t *op, PGresult *res)
{
    int              i, nrows;
    int64_t          rev, id, ttl;
    bl_lease_res_t  *lr;

    nrows = PQntuples(res);

    if (nrows < 1 || PQnfields(res) != 5
        || bl_pg_int64(res, 0, 0, &rev) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(rev);

    if (PQgetisnull(res, 0, 1)) {
        op->status = BL_ST_LEASE_NOT_FOUND;
        return;
    }

    if (bl_pg_int64(res, 0, 1, &id) != BL_OK
        || bl_pg_int64(res, 0, 2, &ttl) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    lr = bl_storage_lease_res(op, rev, id, ttl);
    if (lr == NULL) {
        return;
    }

    if (bl_pg_int64(res, 0, 3, &lr->remaining) != BL_OK) {
        bl_pg_op_invalid(op);
        return;
    }

    if (PQgetisnull(res, 0, 4)) {
        return;
    }

    lr->keys = bl_palloc(op->pool, (size_t) nrows * sizeof(bl_str_t));
    if (lr->keys == NULL) {
        goto nomem;
    }

    for (i = 0; i < nrows; i++) {
        if (bl_pg_bytes(op->pool, res, i, 4, &lr->keys[i]) != BL_OK) {
            goto nomem;
        }

        if (lr->keys[i].data == NULL
            || (i > 0 && bl_str_cmp(&lr->keys[i - 1], &lr->keys[i]) >= 0))
        {
            bl_pg_op_invalid(op);
            return;
        }
    }

    lr->nkeys = (size_t) nrows;
    return;

nomem:

    op->status = BL_ST_INTERNAL;
    op->result = NULL;
}


/* list */

bl_storage_status_e
bl_storage_lease_list(bl_pool_t *pool, bl_storage_handler_pt handler,
    void *data, bl_storage_op_t **op)
{
    return bl_storage_lease_post(&bl_storage_lease_list_type, pool, 0, 0, 0,
                                 0, handler, data, op);
}


static bl_int_t
bl_storage_lease_list_send(PGconn *pc, bl_storage_op_t *op)
{
    BL_UNUSED(op);

    if (PQsendQueryPrepared(pc, BL_PG_STMT_LEASE_LIST, 0, NULL, NULL, NULL,
                            1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/* revision, id (NULL: none), in id order */
static void
bl_storage_lease_list_result(bl_storage_op_t *op, PGresult *res)
{
    int                   i, nrows;
    bl_lease_list_res_t  *lr;

    nrows = PQntuples(res);

    lr = bl_pcalloc(op->pool, sizeof(bl_lease_list_res_t));
    if (lr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (nrows < 1 || PQnfields(res) != 2
        || bl_pg_int64(res, 0, 0, &lr->header_revision) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(lr->header_revision);

    if (PQgetisnull(res, 0, 1)) {
        nrows = 0;

    } else {
        lr->ids = bl_palloc(op->pool, (size_t) nrows * sizeof(int64_t));
        if (lr->ids == NULL) {
            op->status = BL_ST_INTERNAL;
            return;
        }
    }

    for (i = 0; i < nrows; i++) {
        if (bl_pg_int64(res, i, 1, &lr->ids[i]) != BL_OK) {
            bl_pg_op_invalid(op);
            return;
        }
    }

    lr->nids = (size_t) nrows;

    op->status = BL_ST_OK;
    op->result = lr;
}


/* expire */

bl_storage_status_e
bl_storage_lease_expire(bl_pool_t *pool, int64_t max,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    max = bl_max(0, bl_min(max, BL_LEASE_EXPIRE_MAX));

    return bl_storage_lease_post(&bl_storage_lease_expire_type, pool, 0, 0,
                                 max, 0, handler, data, op);
}


static bl_int_t
bl_storage_lease_expire_send(PGconn *pc, bl_storage_op_t *op)
{
    int          length, format;
    u_char       max[4];
    const char  *value;

    bl_pg_put_int32(max, (int32_t) op->req.lease.max);
    value = (const char *) max;
    length = 4;
    format = 1;

    if (PQsendQueryPrepared(pc, BL_PG_STMT_LEASE_EXPIRE, 1, &value, &length,
                            &format, 1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/* revoked, more, rev */
static void
bl_storage_lease_expire_result(bl_storage_op_t *op, PGresult *res)
{
    int64_t                 rev;
    bl_lease_expire_res_t  *er;

    er = bl_pcalloc(op->pool, sizeof(bl_lease_expire_res_t));
    if (er == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 3
        || bl_pg_int64(res, 0, 0, &er->revoked) != BL_OK
        || PQgetisnull(res, 0, 1) || PQgetlength(res, 0, 1) != 1
        || bl_pg_int64(res, 0, 2, &rev) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(rev);

    er->more = (PQgetvalue(res, 0, 1)[0] != 0);

    op->status = BL_ST_OK;
    op->result = er;
}


/* count */

bl_storage_status_e
bl_storage_lease_count(bl_pool_t *pool, bl_storage_handler_pt handler,
    void *data, bl_storage_op_t **op)
{
    return bl_storage_lease_post(&bl_storage_lease_count_type, pool, 0, 0,
                                 0, 0, handler, data, op);
}


static bl_int_t
bl_storage_lease_count_send(PGconn *pc, bl_storage_op_t *op)
{
    BL_UNUSED(op);

    if (PQsendQueryPrepared(pc, BL_PG_STMT_LEASE_COUNT, 0, NULL, NULL, NULL,
                            1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/* revision, count */
static void
bl_storage_lease_count_result(bl_storage_op_t *op, PGresult *res)
{
    bl_lease_count_res_t  *cr;

    cr = bl_pcalloc(op->pool, sizeof(bl_lease_count_res_t));
    if (cr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 2
        || bl_pg_int64(res, 0, 0, &cr->header_revision) != BL_OK
        || bl_pg_int64(res, 0, 1, &cr->count) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(cr->header_revision);

    op->status = BL_ST_OK;
    op->result = cr;
}
