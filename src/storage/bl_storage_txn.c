/*
 * Txn (bl_storage.h): the request tree goes to ballast_txn or
 * ballast_txn_ro (bl_pg_sql_txn.c) flattened into arrays, as one
 * statement whatever the number of ops, compares and nested
 * transactions; its rows come back as the result tree.
 *
 * Flattening is breadth first and iterative (no recursion on a tree a
 * client sent): node 0 is the top transaction, each node's compares are
 * consecutive, and so are the ops of each branch (success then failure);
 * a nested Txn op names its node.  The request tree is not copied (only
 * its top struct): like keys and values it must stay valid until the
 * handler is called or the op is cancelled.
 */
#include <bl_core.h>
#include <bl_pg.h>


/* op flags, as ballast_txn reads them */
#define BL_TXN_PREV_KV       1
#define BL_TXN_IGNORE_VALUE  2
#define BL_TXN_IGNORE_LEASE  4
#define BL_TXN_KEYS_ONLY     8
#define BL_TXN_COUNT_ONLY    16

/* row types */
#define BL_TXN_ROW_NODE      0
#define BL_TXN_ROW_OP        1
#define BL_TXN_ROW_KV        2
#define BL_TXN_ROW_END       3

#define BL_TXN_NPARAMS       11
#define BL_TXN_NCOLS         11


typedef struct {
    const bl_txn_req_t    *txn;
    uint32_t               cmp_first;
    uint32_t               success_first;
    uint32_t               failure_first;
} bl_txn_node_t;

typedef struct {
    const bl_op_t         *op;
    uint32_t               node;
    uint32_t               pos;       /* in its branch */
    uint32_t               child;     /* BL_OP_TXN: its node */
    unsigned               success:1; /* in the success branch */
} bl_txn_op_t;

typedef struct {
    bl_txn_req_t           top;       /* the copy of the request */
    bl_array_t             nodes;     /* bl_txn_node_t */
    bl_array_t             ops;       /* bl_txn_op_t */
    bl_array_t             cmps;      /* const bl_compare_t * */
    unsigned               read_only:1;
    const char            *values[BL_TXN_NPARAMS];
    int                    lengths[BL_TXN_NPARAMS];
} bl_txn_t;


static bl_int_t bl_storage_txn_flatten(bl_txn_t *t);
static bl_int_t bl_storage_txn_encode(bl_pool_t *pool, bl_txn_t *t,
    size_t *size);
static bl_int_t bl_storage_txn_send(PGconn *pc, bl_storage_op_t *op);
static void bl_storage_txn_result(bl_storage_op_t *op, PGresult *res);


static const bl_pg_op_type_t  bl_storage_txn_type = {
    "txn", 1, 0, 0, bl_storage_txn_send, bl_storage_txn_result, NULL
};

static const bl_pg_op_type_t  bl_storage_txn_ro_type = {
    "read-only txn", 0, 0, 0, bl_storage_txn_send, bl_storage_txn_result, NULL
};


/*
 * read_only is the caller's view; the tree says for itself whether any op
 * writes, and that is what decides (a write must never reach the STABLE
 * function, and a tree of ranges needs no revision lock).
 */
bl_storage_status_e
bl_storage_txn(bl_pool_t *pool, const bl_txn_req_t *req, int read_only,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op)
{
    size_t     size;
    bl_txn_t  *t;

    BL_UNUSED(read_only);

    t = bl_pcalloc(pool, sizeof(bl_txn_t));
    if (t == NULL) {
        return BL_ST_INTERNAL;
    }

    t->top = *req;

    if (bl_array_init(&t->nodes, pool, 4, sizeof(bl_txn_node_t)) != BL_OK
        || bl_array_init(&t->ops, pool, 8, sizeof(bl_txn_op_t)) != BL_OK
        || bl_array_init(&t->cmps, pool, 4, sizeof(bl_compare_t *))
           != BL_OK)
    {
        return BL_ST_INTERNAL;
    }

    if (bl_storage_txn_flatten(t) != BL_OK
        || bl_storage_txn_encode(pool, t, &size) != BL_OK)
    {
        return BL_ST_INTERNAL;
    }

    return bl_pg_post(t->read_only ? &bl_storage_txn_ro_type
                                   : &bl_storage_txn_type,
                      pool, handler, data, &t, sizeof(bl_txn_t *), size,
                      op);
}


static bl_int_t
bl_storage_txn_flatten(bl_txn_t *t)
{
    size_t                i, j, b, n;
    bl_op_t              *ops;
    bl_txn_op_t          *fo;
    bl_txn_node_t        *node;
    const bl_txn_req_t   *txn;
    const bl_compare_t  **cmp;

    t->read_only = 1;

    node = bl_array_push(&t->nodes);
    if (node == NULL) {
        return BL_ERROR;
    }

    node->txn = &t->top;

    /* the array grows (and moves) while we walk it: indexes only */

    for (i = 0; i < t->nodes.nelts; i++) {
        txn = ((bl_txn_node_t *) t->nodes.elts)[i].txn;

        ((bl_txn_node_t *) t->nodes.elts)[i].cmp_first =
            (uint32_t) t->cmps.nelts;

        for (j = 0; j < txn->ncompares; j++) {
            cmp = bl_array_push(&t->cmps);
            if (cmp == NULL) {
                return BL_ERROR;
            }

            *cmp = &txn->compares[j];
        }

        for (b = 0; b < 2; b++) {
            ops = b ? txn->failure : txn->success;
            n = b ? txn->nfailure : txn->nsuccess;

            node = &((bl_txn_node_t *) t->nodes.elts)[i];

            if (b) {
                node->failure_first = (uint32_t) t->ops.nelts;
            } else {
                node->success_first = (uint32_t) t->ops.nelts;
            }

            for (j = 0; j < n; j++) {
                fo = bl_array_push(&t->ops);
                if (fo == NULL) {
                    return BL_ERROR;
                }

                fo->op = &ops[j];
                fo->node = (uint32_t) i;
                fo->pos = (uint32_t) j;
                fo->child = 0;
                fo->success = !b;

                switch (ops[j].kind) {

                case BL_OP_RANGE:
                    break;

                case BL_OP_PUT:
                case BL_OP_DELETE:
                    t->read_only = 0;
                    break;

                case BL_OP_TXN:
                    if (ops[j].u.txn == NULL) {
                        bl_log_error(BL_LOG_ERR, 0, "storage: a txn op "
                                     "without its transaction");
                        return BL_ERROR;
                    }

                    fo->child = (uint32_t) t->nodes.nelts;

                    node = bl_array_push(&t->nodes);
                    if (node == NULL) {
                        return BL_ERROR;
                    }

                    node->txn = ops[j].u.txn;
                    break;

                default:
                    bl_log_error(BL_LOG_ERR, 0, "storage: txn op of "
                                 "unknown kind %d", (int) ops[j].kind);
                    return BL_ERROR;
                }
            }
        }
    }

    return BL_OK;
}


/* the bytes of a key-range end as the SQL wants it: only for a range */
static const bl_str_t *
bl_storage_txn_end(const bl_str_t *end)
{
    return bl_storage_range_form(end) == BL_PG_FORM_RANGE ? end : NULL;
}


static u_char *
bl_storage_txn_bytes(u_char *p, const bl_str_t *s)
{
    if (s == NULL) {
        return bl_pg_array_null(p);
    }

    return bl_pg_array_bytes(p, s->data, s->len);
}


static bl_int_t
bl_storage_txn_encode(bl_pool_t *pool, bl_txn_t *t, size_t *size)
{
    int                   i, dims[2], nn, nc, no;
    size_t                len[BL_TXN_NPARAMS];
    u_char               *buf[BL_TXN_NPARAMS], *p[BL_TXN_NPARAMS];
    int32_t               flags;
    const bl_op_t        *op;
    bl_txn_op_t          *ops;
    bl_txn_node_t        *nodes;
    const bl_str_t       *key, *end, *value;
    const bl_txn_req_t   *txn;
    const bl_compare_t  **cmps, *c;

    nodes = t->nodes.elts;
    ops = t->ops.elts;
    cmps = t->cmps.elts;
    nn = (int) t->nodes.nelts;
    nc = (int) t->cmps.nelts;
    no = (int) t->ops.nelts;

    if (t->nodes.nelts > INT32_MAX / 8 || t->ops.nelts > INT32_MAX / 8
        || t->cmps.nelts > INT32_MAX / 8)
    {
        return BL_ERROR;
    }

    /* sizes: the fixed-width arrays, then the bytes */

    len[0] = bl_pg_array_size(2, (size_t) nn * 6, (size_t) nn * 6 * 4);
    len[1] = bl_pg_array_size(2, (size_t) nc * 3, (size_t) nc * 3 * 4);
    len[2] = bl_pg_array_size(1, (size_t) nc, (size_t) nc * 8);
    len[3] = len[4] = len[5] = 0;
    len[6] = bl_pg_array_size(2, (size_t) no * 4, (size_t) no * 4 * 4);
    len[7] = bl_pg_array_size(2, (size_t) no * 3, (size_t) no * 3 * 8);
    len[8] = len[9] = len[10] = 0;

    for (i = 0; i < nc; i++) {
        c = cmps[i];
        end = bl_storage_txn_end(&c->range_end);
        len[3] += c->key.len;
        len[4] += end ? end->len : 0;
        len[5] += c->value.len;
    }

    for (i = 0; i < no; i++) {
        op = ops[i].op;

        switch (op->kind) {
        case BL_OP_RANGE:
            key = &op->u.range.key;
            end = bl_storage_txn_end(&op->u.range.range_end);
            break;
        case BL_OP_PUT:
            key = &op->u.put.key;
            end = NULL;
            len[10] += op->u.put.value.len;
            break;
        case BL_OP_DELETE:
            key = &op->u.del.key;
            end = bl_storage_txn_end(&op->u.del.range_end);
            break;
        default:
            key = NULL;
            end = NULL;
        }

        len[8] += key ? key->len : 0;
        len[9] += end ? end->len : 0;
    }

    len[3] = bl_pg_array_size(1, (size_t) nc, len[3]);
    len[4] = bl_pg_array_size(1, (size_t) nc, len[4]);
    len[5] = bl_pg_array_size(1, (size_t) nc, len[5]);
    len[8] = bl_pg_array_size(1, (size_t) no, len[8]);
    len[9] = bl_pg_array_size(1, (size_t) no, len[9]);
    len[10] = bl_pg_array_size(1, (size_t) no, len[10]);

    *size = 0;

    for (i = 0; i < BL_TXN_NPARAMS; i++) {
        buf[i] = bl_pnalloc(pool, len[i]);
        if (buf[i] == NULL) {
            return BL_ERROR;
        }

        *size += len[i];
    }

    /* headers */

    dims[0] = nn;
    dims[1] = 6;
    p[0] = bl_pg_array_start(buf[0], BL_PG_INT4OID, 2, dims, 0);
    dims[0] = nc;
    dims[1] = 3;
    p[1] = bl_pg_array_start(buf[1], BL_PG_INT4OID, 2, dims, 0);
    p[2] = bl_pg_array_start(buf[2], BL_PG_INT8OID, 1, dims, 0);
    p[3] = bl_pg_array_start(buf[3], BL_PG_BYTEAOID, 1, dims, 0);
    p[4] = bl_pg_array_start(buf[4], BL_PG_BYTEAOID, 1, dims, 1);
    p[5] = bl_pg_array_start(buf[5], BL_PG_BYTEAOID, 1, dims, 0);
    dims[0] = no;
    dims[1] = 4;
    p[6] = bl_pg_array_start(buf[6], BL_PG_INT4OID, 2, dims, 0);
    dims[1] = 3;
    p[7] = bl_pg_array_start(buf[7], BL_PG_INT8OID, 2, dims, 0);
    p[8] = bl_pg_array_start(buf[8], BL_PG_BYTEAOID, 1, dims, 1);
    p[9] = bl_pg_array_start(buf[9], BL_PG_BYTEAOID, 1, dims, 1);
    p[10] = bl_pg_array_start(buf[10], BL_PG_BYTEAOID, 1, dims, 1);

    /* nodes, 1-based indexes */

    for (i = 0; i < nn; i++) {
        txn = nodes[i].txn;
        p[0] = bl_pg_array_int32(p[0], (int32_t) nodes[i].cmp_first + 1);
        p[0] = bl_pg_array_int32(p[0], (int32_t) txn->ncompares);
        p[0] = bl_pg_array_int32(p[0],
                                 (int32_t) nodes[i].success_first + 1);
        p[0] = bl_pg_array_int32(p[0], (int32_t) txn->nsuccess);
        p[0] = bl_pg_array_int32(p[0],
                                 (int32_t) nodes[i].failure_first + 1);
        p[0] = bl_pg_array_int32(p[0], (int32_t) txn->nfailure);
    }

    for (i = 0; i < nc; i++) {
        c = cmps[i];
        p[1] = bl_pg_array_int32(p[1], c->target);
        p[1] = bl_pg_array_int32(p[1], c->result);
        p[1] = bl_pg_array_int32(p[1], bl_storage_range_form(&c->range_end));
        p[2] = bl_pg_array_int64(p[2], c->number);
        p[3] = bl_storage_txn_bytes(p[3], &c->key);
        p[4] = bl_storage_txn_bytes(p[4], bl_storage_txn_end(&c->range_end));
        p[5] = bl_storage_txn_bytes(p[5], &c->value);
    }

    for (i = 0; i < no; i++) {
        op = ops[i].op;
        flags = 0;
        key = NULL;
        end = NULL;
        value = NULL;

        p[6] = bl_pg_array_int32(p[6], (int32_t) op->kind);

        switch (op->kind) {

        case BL_OP_RANGE:
            key = &op->u.range.key;
            end = bl_storage_txn_end(&op->u.range.range_end);
            flags = (op->u.range.keys_only ? BL_TXN_KEYS_ONLY : 0)
                    | (op->u.range.count_only ? BL_TXN_COUNT_ONLY : 0);
            p[6] = bl_pg_array_int32(p[6],
                       bl_storage_range_form(&op->u.range.range_end));
            p[7] = bl_pg_array_int64(p[7], 0);
            p[7] = bl_pg_array_int64(p[7], op->u.range.limit);
            p[7] = bl_pg_array_int64(p[7], op->u.range.revision);
            break;

        case BL_OP_PUT:
            key = &op->u.put.key;
            value = &op->u.put.value;
            flags = (op->u.put.prev_kv ? BL_TXN_PREV_KV : 0)
                    | (op->u.put.ignore_value ? BL_TXN_IGNORE_VALUE : 0)
                    | (op->u.put.ignore_lease ? BL_TXN_IGNORE_LEASE : 0);
            p[6] = bl_pg_array_int32(p[6], BL_PG_FORM_KEY);
            p[7] = bl_pg_array_int64(p[7], op->u.put.lease);
            p[7] = bl_pg_array_int64(p[7], 0);
            p[7] = bl_pg_array_int64(p[7], 0);
            break;

        case BL_OP_DELETE:
            key = &op->u.del.key;
            end = bl_storage_txn_end(&op->u.del.range_end);
            flags = op->u.del.prev_kv ? BL_TXN_PREV_KV : 0;
            p[6] = bl_pg_array_int32(p[6],
                       bl_storage_range_form(&op->u.del.range_end));
            p[7] = bl_pg_array_int64(p[7], 0);
            p[7] = bl_pg_array_int64(p[7], 0);
            p[7] = bl_pg_array_int64(p[7], 0);
            break;

        case BL_OP_TXN:
            p[6] = bl_pg_array_int32(p[6], BL_PG_FORM_KEY);
            p[7] = bl_pg_array_int64(p[7], 0);
            p[7] = bl_pg_array_int64(p[7], 0);
            p[7] = bl_pg_array_int64(p[7], 0);
            break;
        }

        p[6] = bl_pg_array_int32(p[6], flags);
        p[6] = bl_pg_array_int32(p[6], op->kind == BL_OP_TXN
                                       ? (int32_t) ops[i].child + 1 : 0);
        p[8] = bl_storage_txn_bytes(p[8], key);
        p[9] = bl_storage_txn_bytes(p[9], end);
        p[10] = bl_storage_txn_bytes(p[10], value);
    }

    for (i = 0; i < BL_TXN_NPARAMS; i++) {
        if ((size_t) (p[i] - buf[i]) != len[i]) {
            bl_log_error(BL_LOG_ALERT, 0, "storage: txn parameter %d is "
                         "%zu bytes, not %zu", i,
                         (size_t) (p[i] - buf[i]), len[i]);
            return BL_ERROR;
        }

        t->values[i] = (const char *) buf[i];
        t->lengths[i] = (int) len[i];
    }

    return BL_OK;
}


static bl_int_t
bl_storage_txn_send(PGconn *pc, bl_storage_op_t *op)
{
    int        i, formats[BL_TXN_NPARAMS];
    bl_txn_t  *t;

    t = op->req.ptr;

    for (i = 0; i < BL_TXN_NPARAMS; i++) {
        formats[i] = 1;
    }

    if (PQsendQueryPrepared(pc, t->read_only ? BL_PG_STMT_TXN_RO
                                             : BL_PG_STMT_TXN,
                            BL_TXN_NPARAMS, t->values, t->lengths, formats,
                            1)
        != 1)
    {
        return BL_ERROR;
    }

    return BL_OK;
}


/*
 * The rows back into the tree.  Each executed node gets its result (its
 * responses one per op of the branch taken); then each op row fills its
 * response, and the key-value rows fill their op's arrays.
 */
static void
bl_storage_txn_result(bl_storage_op_t *op, PGresult *res)
{
    int            row, nrows, *oprow;
    int32_t        type, idx, flag, err;
    int64_t        rev, n, end_rev;
    size_t         i, no, nn, nb, *nkv;
    bl_kv_t       *kv;
    bl_txn_t      *t;
    bl_op_res_t  **slot, *r;
    bl_txn_op_t   *ops, *fo;
    bl_txn_res_t **node_res, *nr;

    t = op->req.ptr;
    ops = t->ops.elts;
    no = t->ops.nelts;
    nn = t->nodes.nelts;
    nrows = PQntuples(res);

    if (nrows < 1 || PQnfields(res) != BL_TXN_NCOLS
        || bl_pg_int32(res, nrows - 1, 0, &type) != BL_OK
        || type != BL_TXN_ROW_END
        || bl_pg_int32(res, nrows - 1, 2, &err) != BL_OK
        || bl_pg_int64(res, nrows - 1, 3, &end_rev) != BL_OK)
    {
        goto invalid;
    }

    bl_pg_seen_revision(end_rev);

    switch (err) {
    case 0:
        break;
    case 1:
        op->status = BL_ST_KEY_NOT_FOUND;
        return;
    case 2:
        op->status = BL_ST_LEASE_NOT_FOUND;
        return;
    case 3:
        op->status = BL_ST_COMPACTED;
        return;
    case 4:
        op->status = BL_ST_FUTURE_REV;
        return;
    default:
        goto invalid;
    }

    node_res = bl_pcalloc(op->pool, nn * sizeof(bl_txn_res_t *));
    slot = bl_pcalloc(op->pool, (no + 1) * sizeof(bl_op_res_t *));
    oprow = bl_palloc(op->pool, (no + 1) * sizeof(int));
    nkv = bl_pcalloc(op->pool, (no + 1) * sizeof(size_t));

    if (node_res == NULL || slot == NULL || oprow == NULL || nkv == NULL) {
        goto nomem;
    }

    for (i = 0; i < no; i++) {
        oprow[i] = -1;
    }

    /* the nodes, where each op's rows are */

    for (row = 0; row < nrows - 1; row++) {
        if (bl_pg_int32(res, row, 0, &type) != BL_OK
            || bl_pg_int32(res, row, 1, &idx) != BL_OK
            || idx < 1)
        {
            goto invalid;
        }

        switch (type) {

        case BL_TXN_ROW_NODE:
            if ((size_t) idx > nn || node_res[idx - 1] != NULL
                || bl_pg_int32(res, row, 2, &flag) != BL_OK)
            {
                goto invalid;
            }

            nr = bl_pcalloc(op->pool, sizeof(bl_txn_res_t));
            if (nr == NULL) {
                goto nomem;
            }

            nr->succeeded = (flag != 0);
            nb = nr->succeeded
                 ? ((bl_txn_node_t *) t->nodes.elts)[idx - 1].txn->nsuccess
                 : ((bl_txn_node_t *) t->nodes.elts)[idx - 1].txn->nfailure;

            if (nb > 0) {
                nr->responses = bl_pcalloc(op->pool,
                                           nb * sizeof(bl_op_res_t));
                if (nr->responses == NULL) {
                    goto nomem;
                }
            }

            nr->nresponses = nb;
            node_res[idx - 1] = nr;
            break;

        case BL_TXN_ROW_OP:
            if ((size_t) idx > no || oprow[idx - 1] != -1) {
                goto invalid;
            }

            oprow[idx - 1] = row;
            break;

        case BL_TXN_ROW_KV:
            if ((size_t) idx > no) {
                goto invalid;
            }

            nkv[idx - 1]++;
            break;

        default:
            goto invalid;
        }
    }

    if (node_res[0] == NULL) {
        goto invalid;
    }

    node_res[0]->header_revision = end_rev;

    /* each op of a branch taken: its response (nested transactions keep
     * header revision 0, as etcd leaves their header empty) */

    for (i = 0; i < no; i++) {
        fo = &ops[i];
        nr = node_res[fo->node];

        if (nr == NULL || nr->succeeded != fo->success) {
            if (oprow[i] != -1 || nkv[i] != 0) {
                goto invalid;
            }

            continue;
        }

        r = &nr->responses[fo->pos];
        r->kind = fo->op->kind;
        slot[i] = r;

        if (r->kind == BL_OP_TXN) {
            r->u.txn = node_res[fo->child];

            if (r->u.txn == NULL || oprow[i] != -1 || nkv[i] != 0) {
                goto invalid;
            }

            continue;
        }

        row = oprow[i];

        if (row == -1
            || bl_pg_int32(res, row, 2, &flag) != BL_OK
            || bl_pg_int64(res, row, 3, &rev) != BL_OK
            || bl_pg_int64(res, row, 4, &n) != BL_OK)
        {
            goto invalid;
        }

        if (nkv[i] > 0) {
            kv = bl_palloc(op->pool, nkv[i] * sizeof(bl_kv_t));
            if (kv == NULL) {
                goto nomem;
            }

        } else {
            kv = NULL;
        }

        switch (r->kind) {

        case BL_OP_RANGE:
            r->u.range.header_revision = rev;
            r->u.range.count = n;
            r->u.range.more = (flag != 0);
            r->u.range.kvs = kv;
            break;

        case BL_OP_PUT:
            if (nkv[i] > 1) {
                goto invalid;
            }

            r->u.put.header_revision = rev;
            r->u.put.prev_kv = kv;
            break;

        case BL_OP_DELETE:
            r->u.del.header_revision = rev;
            r->u.del.deleted = n;
            r->u.del.prev_kvs = kv;
            break;

        default:
            goto invalid;
        }
    }

    /* the key-values, in their order */

    for (row = 0; row < nrows - 1; row++) {
        if (bl_pg_int32(res, row, 0, &type) != BL_OK
            || type != BL_TXN_ROW_KV)
        {
            continue;
        }

        (void) bl_pg_int32(res, row, 1, &idx);
        r = slot[idx - 1];

        if (r == NULL) {
            goto invalid;
        }

        switch (r->kind) {
        case BL_OP_RANGE:
            kv = &r->u.range.kvs[r->u.range.nkvs++];
            break;
        case BL_OP_PUT:
            kv = r->u.put.prev_kv;
            break;
        default:
            kv = &r->u.del.prev_kvs[r->u.del.nprev_kvs++];
        }

        if (bl_pg_kv(op->pool, res, row, 5, kv) != BL_OK) {
            goto invalid;
        }
    }

    op->status = BL_ST_OK;
    op->result = node_res[0];
    return;

invalid:

    bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer to txn");

nomem:

    op->status = BL_ST_INTERNAL;
}
