/*
 * Maintenance, alarms and nodes (bl_storage_maint.h): one statement each,
 * over the functions and statements of bl_pg_sql_maint.c.  None takes a
 * revision, so they go with the reads; those that write (an alarm, a
 * heartbeat) or may take long (the hashes) go in a batch of their own, so
 * that they neither share a transaction nor hold a batch of other reads.
 * VACUUM is in bl_pg_vacuum.c.
 */
#include <bl_core.h>
#include <bl_pg.h>
#include <bl_storage_maint.h>


/* what an op of this file needs (copied into op->req) */
typedef struct {
    int64_t               a;
    int64_t               b;
    int64_t               c;
    const bl_node_req_t  *node;     /* tick: the caller's, kept */
} bl_pg_maint_req_t;

/* copied out, op->req being a union that does not know this type */
static bl_pg_maint_req_t
bl_pg_maint_req(const bl_storage_op_t *op)
{
    bl_pg_maint_req_t  r;

    memcpy(&r, &op->req, sizeof(r));
    return r;
}


static bl_int_t bl_storage_status_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_status_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_hash_kv_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_hash_kv_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_hash_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_hash_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_alarm_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_alarm_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_members_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_members_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_tick_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_tick_result(bl_storage_op_t *op, PGresult *res);
static bl_int_t bl_storage_leave_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_leave_result(bl_storage_op_t *op, PGresult *res);


static const bl_pg_op_type_t  bl_storage_status_type = {
    "status", 0, 0, 0, bl_storage_status_send, bl_storage_status_result,
    NULL
};

static const bl_pg_op_type_t  bl_storage_hash_kv_type = {
    "hash of the key space", 0, 1, 0, bl_storage_hash_kv_send,
    bl_storage_hash_kv_result, NULL
};

static const bl_pg_op_type_t  bl_storage_hash_type = {
    "hash", 0, 1, 0, bl_storage_hash_send, bl_storage_hash_result, NULL
};

static const bl_pg_op_type_t  bl_storage_alarm_type = {
    "alarm", 0, 1, 0, bl_storage_alarm_send, bl_storage_alarm_result, NULL
};

static const bl_pg_op_type_t  bl_storage_members_type = {
    "member list", 0, 0, 0, bl_storage_members_send,
    bl_storage_members_result, NULL
};

static const bl_pg_op_type_t  bl_storage_tick_type = {
    "node heartbeat", 0, 1, 0, bl_storage_tick_send, bl_storage_tick_result,
    NULL
};

static const bl_pg_op_type_t  bl_storage_leave_type = {
    "node leave", 0, 1, 0, bl_storage_leave_send, bl_storage_leave_result,
    NULL
};


static bl_storage_status_e
bl_storage_maint_post(const bl_pg_op_type_t *type, bl_pool_t *pool,
    int64_t a, int64_t b, int64_t c, const bl_node_req_t *node,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    bl_pg_maint_req_t  req;

    req.a = a;
    req.b = b;
    req.c = c;
    req.node = node;

    return bl_pg_post(type, pool, handler, data, &req, sizeof(req), 64, op);
}


/* parameters: int8 values, binary */
static bl_int_t
bl_storage_maint_send_int8(PGconn *pc, const char *sql, int n,
    const int64_t *v)
{
    int          i, lengths[3], formats[3];
    Oid          types[3];
    u_char       buf[3][8];
    const char  *values[3];

    for (i = 0; i < n; i++) {
        bl_pg_put_int64(buf[i], v[i]);
        values[i] = (const char *) buf[i];
        lengths[i] = 8;
        formats[i] = 1;
        types[i] = BL_PG_INT8OID;
    }

    return PQsendQueryParams(pc, sql, n, types, values, lengths, formats, 1)
           == 1 ? BL_OK : BL_ERROR;
}


/* a nullable int8 column: -1 for NULL */
static bl_int_t
bl_storage_maint_size(PGresult *res, int row, int col, int64_t *v)
{
    if (PQgetisnull(res, row, col)) {
        *v = -1;
        return BL_OK;
    }

    return bl_pg_int64(res, row, col, v);
}


/*
 * The alarms of rows from..nrows-1, columns col (member) and col + 1
 * (alarm); a row of NULLs is none.  BL_ERROR: malformed (nothing set) or
 * out of memory (op->status set).
 */
static bl_int_t
bl_storage_maint_alarms(bl_storage_op_t *op, PGresult *res, int from,
    int col, bl_alarm_t **alarms, size_t *nalarms)
{
    int          i, nrows;
    int64_t      member;
    bl_alarm_t  *a;

    *alarms = NULL;
    *nalarms = 0;
    nrows = PQntuples(res);

    if (nrows <= from || PQgetisnull(res, from, col)) {
        return BL_OK;
    }

    a = bl_palloc(op->pool, (size_t) (nrows - from) * sizeof(bl_alarm_t));
    if (a == NULL) {
        op->status = BL_ST_INTERNAL;
        return BL_ERROR;
    }

    for (i = from; i < nrows; i++) {
        if (bl_pg_int64(res, i, col, &member) != BL_OK
            || bl_pg_int32(res, i, col + 1, &a[i - from].alarm) != BL_OK)
        {
            bl_pg_op_invalid(op);
            return BL_ERROR;
        }

        a[i - from].member_id = (uint64_t) member;
    }

    *alarms = a;
    *nalarms = (size_t) (nrows - from);

    return BL_OK;
}


/* the first four bytes of a SHA-256, as etcd's uint32 hash */
static bl_int_t
bl_storage_maint_digest(PGresult *res, int row, int col, uint32_t *hash)
{
    const u_char  *p;

    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 32) {
        return BL_ERROR;
    }

    p = (const u_char *) PQgetvalue(res, row, col);
    *hash = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
            | ((uint32_t) p[2] << 8) | p[3];

    return BL_OK;
}


/* status */

bl_storage_status_e
bl_storage_status(bl_pool_t *pool, bl_storage_handler_pt handler,
    void *data, bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_status_type, pool, 0, 0, 0,
                                 NULL, handler, data, op);
}


static bl_int_t
bl_storage_status_send(PGconn *pc, bl_storage_op_t *op)
{
    BL_UNUSED(op);

    return PQsendQueryParams(pc, bl_pg_status_sql, 0, NULL, NULL, NULL,
                             NULL, 1)
           == 1 ? BL_OK : BL_ERROR;
}


/* revision, compact_revision, total, in_use, member, alarm */
static void
bl_storage_status_result(bl_storage_op_t *op, PGresult *res)
{
    bl_status_res_t  *sr;

    sr = bl_pcalloc(op->pool, sizeof(bl_status_res_t));
    if (sr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) < 1 || PQnfields(res) != 6
        || bl_pg_int64(res, 0, 0, &sr->header_revision) != BL_OK
        || bl_pg_int64(res, 0, 1, &sr->compact_revision) != BL_OK
        || bl_storage_maint_size(res, 0, 2, &sr->db_size) != BL_OK
        || bl_storage_maint_size(res, 0, 3, &sr->db_size_in_use) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(sr->header_revision);

    if (bl_storage_maint_alarms(op, res, 0, 4, &sr->alarms, &sr->nalarms)
        != BL_OK)
    {
        return;
    }

    op->status = BL_ST_OK;
    op->result = sr;
}


/* HashKV */

bl_storage_status_e
bl_storage_hash_kv(bl_pool_t *pool, int64_t revision,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_hash_kv_type, pool, revision,
                                 0, 0, NULL, handler, data, op);
}


static bl_int_t
bl_storage_hash_kv_send(PGconn *pc, bl_storage_op_t *op)
{
    int64_t  v;

    v = bl_pg_maint_req(op).a;

    return bl_storage_maint_send_int8(pc, bl_pg_hash_kv_sql, 1, &v);
}


/* revision, compact_revision, at, digest (NULL: not a valid revision) */
static void
bl_storage_hash_kv_result(bl_storage_op_t *op, PGresult *res)
{
    int64_t         rev, want;
    bl_hash_res_t  *hr;

    hr = bl_pcalloc(op->pool, sizeof(bl_hash_res_t));
    if (hr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 4
        || bl_pg_int64(res, 0, 0, &rev) != BL_OK
        || bl_pg_int64(res, 0, 1, &hr->compact_revision) != BL_OK
        || bl_pg_int64(res, 0, 2, &hr->hash_revision) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(rev);
    hr->header_revision = rev;
    want = bl_pg_maint_req(op).a;

    /* etcd's order of the checks (mvcc/kvstore.go hashByRev) */
    if (want > 0 && want <= hr->compact_revision) {
        op->status = BL_ST_COMPACTED;
        return;
    }

    if (want > rev) {
        op->status = BL_ST_FUTURE_REV;
        return;
    }

    if (bl_storage_maint_digest(res, 0, 3, &hr->hash) != BL_OK) {
        bl_pg_op_invalid(op);
        return;
    }

    op->status = BL_ST_OK;
    op->result = hr;
}


/* Hash */

bl_storage_status_e
bl_storage_hash(bl_pool_t *pool, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_hash_type, pool, 0, 0, 0, NULL,
                                 handler, data, op);
}


static bl_int_t
bl_storage_hash_send(PGconn *pc, bl_storage_op_t *op)
{
    BL_UNUSED(op);

    return PQsendQueryParams(pc, bl_pg_hash_sql, 0, NULL, NULL, NULL, NULL,
                             1)
           == 1 ? BL_OK : BL_ERROR;
}


/* revision, digest */
static void
bl_storage_hash_result(bl_storage_op_t *op, PGresult *res)
{
    bl_hash_res_t  *hr;

    hr = bl_pcalloc(op->pool, sizeof(bl_hash_res_t));
    if (hr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) != 1 || PQnfields(res) != 2
        || bl_pg_int64(res, 0, 0, &hr->header_revision) != BL_OK
        || bl_storage_maint_digest(res, 0, 1, &hr->hash) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    bl_pg_seen_revision(hr->header_revision);
    hr->hash_revision = hr->header_revision;

    op->status = BL_ST_OK;
    op->result = hr;
}


/* Alarm */

bl_storage_status_e
bl_storage_alarm(bl_pool_t *pool, int action, uint64_t member_id,
    int32_t alarm, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_alarm_type, pool, action,
                                 (int64_t) member_id, alarm, NULL, handler,
                                 data, op);
}


static bl_int_t
bl_storage_alarm_send(PGconn *pc, bl_storage_op_t *op)
{
    int                 lengths[3], formats[3];
    Oid                 types[3];
    u_char              action[4], member[8], alarm[4];
    const char         *values[3];
    bl_pg_maint_req_t   r;

    r = bl_pg_maint_req(op);

    bl_pg_put_int32(action, (int32_t) r.a);
    bl_pg_put_int64(member, r.b);
    bl_pg_put_int32(alarm, (int32_t) r.c);

    values[0] = (const char *) action;
    values[1] = (const char *) member;
    values[2] = (const char *) alarm;
    lengths[0] = 4;
    lengths[1] = 8;
    lengths[2] = 4;
    formats[0] = formats[1] = formats[2] = 1;
    types[0] = BL_PG_INT4OID;
    types[1] = BL_PG_INT8OID;
    types[2] = BL_PG_INT4OID;

    return PQsendQueryParams(pc, bl_pg_alarm_sql, 3, types, values, lengths,
                             formats, 1)
           == 1 ? BL_OK : BL_ERROR;
}


/* member, alarm (NULLs: none), active */
static void
bl_storage_alarm_result(bl_storage_op_t *op, PGresult *res)
{
    int32_t          active;
    bl_alarm_res_t  *ar;

    ar = bl_pcalloc(op->pool, sizeof(bl_alarm_res_t));
    if (ar == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) < 1 || PQnfields(res) != 3
        || bl_pg_int32(res, 0, 2, &active) != BL_OK)
    {
        bl_pg_op_invalid(op);
        return;
    }

    ar->active = (uint32_t) active;

    if (bl_storage_maint_alarms(op, res, 0, 0, &ar->alarms, &ar->nalarms)
        != BL_OK)
    {
        return;
    }

    op->status = BL_ST_OK;
    op->result = ar;
}


/* MemberList */

bl_storage_status_e
bl_storage_members(bl_pool_t *pool, int64_t live_sec,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_members_type, pool, live_sec,
                                 0, 0, NULL, handler, data, op);
}


static bl_int_t
bl_storage_members_send(PGconn *pc, bl_storage_op_t *op)
{
    int64_t  v;

    v = bl_pg_maint_req(op).a;

    return bl_storage_maint_send_int8(pc, bl_pg_members_sql, 1, &v);
}


/* id, name, url (NULL: none): a row per URL, grouped by id */
static void
bl_storage_members_result(bl_storage_op_t *op, PGresult *res)
{
    int                i, nrows;
    int64_t            id;
    bl_str_t          *urls;
    bl_member_t       *m;
    bl_members_res_t  *mr;

    nrows = PQntuples(res);

    mr = bl_pcalloc(op->pool, sizeof(bl_members_res_t));
    if (mr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    urls = bl_palloc(op->pool, (size_t) (nrows + 1) * sizeof(bl_str_t));
    mr->members = bl_palloc(op->pool,
                            (size_t) (nrows + 1) * sizeof(bl_member_t));
    if (urls == NULL || mr->members == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQnfields(res) != 3) {
        bl_pg_op_invalid(op);
        return;
    }

    m = NULL;

    for (i = 0; i < nrows; i++) {
        if (bl_pg_int64(res, i, 0, &id) != BL_OK) {
            bl_pg_op_invalid(op);
            return;
        }

        if (m == NULL || m->id != (uint64_t) id) {
            m = &mr->members[mr->nmembers++];
            m->id = (uint64_t) id;
            m->client_urls = urls;
            m->nclient_urls = 0;

            if (bl_pg_bytes(op->pool, res, i, 1, &m->name) != BL_OK) {
                op->status = BL_ST_INTERNAL;
                return;
            }
        }

        if (PQgetisnull(res, i, 2)) {
            continue;
        }

        if (bl_pg_bytes(op->pool, res, i, 2, urls) != BL_OK) {
            op->status = BL_ST_INTERNAL;
            return;
        }

        urls++;
        m->nclient_urls++;
    }

    op->status = BL_ST_OK;
    op->result = mr;
}


/* node heartbeat */

bl_storage_status_e
bl_storage_node_tick(bl_pool_t *pool, const bl_node_req_t *req,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_tick_type, pool, 0, 0, 0, req,
                                 handler, data, op);
}


static bl_int_t
bl_storage_tick_send(PGconn *pc, bl_storage_op_t *op)
{
    int                   dims[1], lengths[5], formats[5], rc;
    Oid                   types[5];
    size_t                i, data, size;
    u_char                id[8], instance[8], quota[8], *urls, *p;
    const char           *values[5];
    const bl_node_req_t  *n;

    n = bl_pg_maint_req(op).node;

    data = 0;

    for (i = 0; i < n->nclient_urls; i++) {
        data += n->client_urls[i].len;
    }

    size = bl_pg_array_size(1, n->nclient_urls, data);

    urls = bl_alloc(size);
    if (urls == NULL) {
        return BL_ERROR;
    }

    dims[0] = (int) n->nclient_urls;
    p = bl_pg_array_start(urls, BL_PG_TEXTOID, 1, dims, 0);

    for (i = 0; i < n->nclient_urls; i++) {
        p = bl_pg_array_bytes(p, n->client_urls[i].data,
                              n->client_urls[i].len);
    }

    bl_pg_put_int64(id, (int64_t) n->id);
    bl_pg_put_int64(instance, (int64_t) n->instance);
    bl_pg_put_int64(quota, n->quota);

    values[0] = (const char *) id;
    values[1] = (const char *) n->name.data;
    values[2] = (const char *) urls;
    values[3] = (const char *) instance;
    values[4] = (const char *) quota;
    lengths[0] = lengths[3] = lengths[4] = 8;
    lengths[1] = (int) n->name.len;
    lengths[2] = (int) size;
    formats[0] = formats[1] = formats[2] = formats[3] = formats[4] = 1;
    types[0] = types[3] = types[4] = BL_PG_INT8OID;
    types[1] = BL_PG_TEXTOID;
    types[2] = BL_PG_TEXTARRAYOID;

    /* libpq copies the parameters into its output buffer */
    rc = PQsendQueryParams(pc, bl_pg_node_tick_sql, 5, types, values,
                           lengths, formats, 1);
    free(urls);

    return rc == 1 ? BL_OK : BL_ERROR;
}


/* total, in_use (NULL: not measured), raised, member, alarm */
static void
bl_storage_tick_result(bl_storage_op_t *op, PGresult *res)
{
    size_t               i;
    bl_node_tick_res_t  *tr;

    tr = bl_pcalloc(op->pool, sizeof(bl_node_tick_res_t));
    if (tr == NULL) {
        op->status = BL_ST_INTERNAL;
        return;
    }

    if (PQntuples(res) < 1 || PQnfields(res) != 5
        || bl_storage_maint_size(res, 0, 0, &tr->db_size) != BL_OK
        || bl_storage_maint_size(res, 0, 1, &tr->db_size_in_use) != BL_OK
        || PQgetisnull(res, 0, 2) || PQgetlength(res, 0, 2) != 1)
    {
        bl_pg_op_invalid(op);
        return;
    }

    tr->raised = PQgetvalue(res, 0, 2)[0] != 0;

    if (bl_storage_maint_alarms(op, res, 0, 3, &tr->alarms, &tr->nalarms)
        != BL_OK)
    {
        return;
    }

    for (i = 0; i < tr->nalarms; i++) {
        if (tr->alarms[i].alarm >= 0 && tr->alarms[i].alarm <= 30) {
            tr->active |= 1u << tr->alarms[i].alarm;
        }
    }

    op->status = BL_ST_OK;
    op->result = tr;
}


/* node leave */

bl_storage_status_e
bl_storage_node_leave(bl_pool_t *pool, uint64_t id, uint64_t instance,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    return bl_storage_maint_post(&bl_storage_leave_type, pool, (int64_t) id,
                                 (int64_t) instance, 0, NULL, handler, data,
                                 op);
}


static bl_int_t
bl_storage_leave_send(PGconn *pc, bl_storage_op_t *op)
{
    int64_t             v[2];
    bl_pg_maint_req_t   r;

    r = bl_pg_maint_req(op);
    v[0] = r.a;
    v[1] = r.b;

    return bl_storage_maint_send_int8(pc, bl_pg_node_leave_sql, 2, v);
}


static void
bl_storage_leave_result(bl_storage_op_t *op, PGresult *res)
{
    BL_UNUSED(res);

    op->status = BL_ST_OK;
    op->result = NULL;
}
