/*
 * etcdserverpb.KV/Txn: the static checks etcd makes before a transaction
 * reaches the store (operation count, empty keys, empty ops, duplicate
 * keys), the conversion of the request tree to the store's, and of the
 * store's result back to etcd's response tree.
 */
#include <bl_core.h>
#include <bl_etcd_kv.h>

typedef Etcdserverpb__RequestOp   bl_reqop_pb_t;
typedef Etcdserverpb__ResponseOp  bl_respop_pb_t;
typedef Etcdserverpb__Compare     bl_compare_pb_t;

static const bl_etcd_error_t  bl_etcd_err_too_many_ops = {
    BL_GRPC_INVALID_ARGUMENT,
    "etcdserver: too many operations in txn request" };
static const bl_etcd_error_t  bl_etcd_err_duplicate_key = {
    BL_GRPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request" };

/* etcd's checkTxnRequest: counts, empty keys, and each op in turn */
static const bl_etcd_error_t *
bl_etcd_txn_check(const bl_txn_pb_t *t, int64_t max_ops)
{
    const bl_etcd_error_t  *err;
    const bl_reqop_pb_t    *op;
    size_t                  i, n, opc;

    opc = bl_max(t->n_compare, bl_max(t->n_success, t->n_failure));
    if ((int64_t) opc > max_ops) {
        return &bl_etcd_err_too_many_ops;
    }
    for (i = 0; i < t->n_compare; i++) {
        if (t->compare[i]->key.len == 0) {
            return &bl_etcd_err_empty_key;
        }
    }
    for (n = 0; n < 2; n++) {
        for (i = 0; i < (n ? t->n_failure : t->n_success); i++) {
            op = n ? t->failure[i] : t->success[i];
            switch (op->request_case) {
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                err = bl_etcd_range_check(op->request_range);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
                err = bl_etcd_put_check(op->request_put);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
                err = bl_etcd_delete_check(op->request_delete_range);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
                err = bl_etcd_txn_check(op->request_txn,
                                        max_ops - (int64_t) opc);
                break;
            default:
                err = &bl_etcd_err_key_not_found;      /* an empty op */
            }
            if (err) {
                return err;
            }
        }
    }
    return NULL;
}

/*
 * Duplicate keys, as etcd's checkIntervals: within one level, a key may be
 * put once and not inside a range the level deletes; nested transactions
 * contribute their puts and deletes, with a key put in both branches of
 * the same nested transaction allowed.  Intervals compare as etcd's
 * "string affine" intervals: an empty end is +infinity, and a single key
 * k is the interval [k, k "\0").
 */

typedef struct {
    bl_str_t   begin;
    bl_str_t   end;
    unsigned   point:1;      /* end is begin + "\0" */
} bl_ival_t;

typedef struct {
    bl_str_t   *puts;
    size_t      nputs;
    bl_ival_t  *dels;
    size_t      ndels;
} bl_txn_keys_t;

/* compare a (+ "\0" if az) with b (+ "\0" if bz); empty = +infinity */
static int
bl_affine_cmp(const bl_str_t *a, int az, const bl_str_t *b, int bz)
{
    size_t  alen, blen, i;
    int     x, y;

    alen = a->len + (az ? 1 : 0);
    blen = b->len + (bz ? 1 : 0);
    if (alen == 0 || blen == 0) {
        return alen == blen ? 0 : (alen == 0 ? 1 : -1);
    }
    for (i = 0; i < alen && i < blen; i++) {
        x = i < a->len ? a->data[i] : 0;
        y = i < b->len ? b->data[i] : 0;
        if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    return (alen > blen) - (alen < blen);
}

/* etcd's Interval.Compare(a, b) == 0: the intervals overlap */
static int
bl_ival_overlaps(const bl_ival_t *a, const bl_ival_t *b)
{
    const bl_str_t  *bend;

    bend = b->point ? &b->begin : &b->end;
    if (bl_affine_cmp(&a->begin, 0, &b->begin, 0) < 0
        && bl_affine_cmp(a->point ? &a->begin : &a->end, a->point,
                         &b->begin, 0) <= 0)
    {
        return 0;                               /* a is left of b */
    }
    if (bl_affine_cmp(&a->begin, 0, bend, b->point) >= 0) {
        return 0;                               /* a is right of b */
    }
    return 1;
}

static int
bl_keys_deleted(const bl_txn_keys_t *k, const bl_str_t *key)
{
    bl_ival_t  p;
    size_t     i;

    p.begin = *key;
    p.point = 1;
    bl_str_null(&p.end);
    for (i = 0; i < k->ndels; i++) {
        if (bl_ival_overlaps(&p, &k->dels[i])) {
            return 1;
        }
    }
    return 0;
}

static int
bl_keys_has_put(const bl_txn_keys_t *k, const bl_str_t *key)
{
    size_t  i;

    for (i = 0; i < k->nputs; i++) {
        if (bl_str_eq(&k->puts[i], key)) {
            return 1;
        }
    }
    return 0;
}

static bl_int_t
bl_keys_init(bl_pool_t *pool, bl_txn_keys_t *k, size_t n)
{
    k->nputs = 0;
    k->ndels = 0;
    k->puts = bl_palloc(pool, (n + 1) * sizeof(bl_str_t));
    k->dels = bl_palloc(pool, (n + 1) * sizeof(bl_ival_t));
    return k->puts && k->dels ? BL_OK : BL_ERROR;
}

static size_t
bl_txn_count_ops(bl_reqop_pb_t **ops, size_t n)
{
    size_t  i, total;

    total = n;
    for (i = 0; i < n; i++) {
        if (ops[i]->request_case
            == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
        {
            total += bl_txn_count_ops(ops[i]->request_txn->success,
                                      ops[i]->request_txn->n_success)
                     + bl_txn_count_ops(ops[i]->request_txn->failure,
                                        ops[i]->request_txn->n_failure);
        }
    }
    return total;
}

/* BL_OK, BL_DECLINED for a duplicate, BL_ERROR out of memory */
static bl_int_t
bl_txn_check_intervals(bl_pool_t *pool, bl_reqop_pb_t **ops, size_t n,
    bl_txn_keys_t *out)
{
    bl_txn_keys_t          then, els;
    bl_ival_t              all, *iv;
    bl_delete_pb_t        *d;
    bl_txn_pb_t           *t;
    bl_str_t               key;
    size_t                 i, j, total;
    bl_int_t               rc;

    total = bl_txn_count_ops(ops, n);
    if (bl_keys_init(pool, out, total) != BL_OK) {
        return BL_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (ops[i]->request_case
            != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
        {
            continue;
        }
        d = ops[i]->request_delete_range;
        iv = &out->dels[out->ndels++];
        iv->begin.data = d->key.data;
        iv->begin.len = d->key.len;
        iv->end.data = d->range_end.data;
        iv->end.len = d->range_end.len;
        iv->point = d->range_end.len == 0;
    }

    bl_str_set(&all.begin, "\0");
    bl_str_null(&all.end);
    all.point = 0;

    for (i = 0; i < n; i++) {
        if (ops[i]->request_case
            != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
        {
            continue;
        }
        t = ops[i]->request_txn;
        rc = bl_txn_check_intervals(pool, t->success, t->n_success, &then);
        if (rc != BL_OK) {
            return rc;
        }
        rc = bl_txn_check_intervals(pool, t->failure, t->n_failure, &els);
        if (rc != BL_OK) {
            return rc;
        }
        for (j = 0; j < then.nputs; j++) {
            if (bl_keys_has_put(out, &then.puts[j])
                || bl_keys_deleted(out, &then.puts[j]))
            {
                return BL_DECLINED;
            }
            out->puts[out->nputs++] = then.puts[j];
        }
        for (j = 0; j < els.nputs; j++) {
            /* both branches may put a key: only one of them runs */
            if (bl_keys_has_put(out, &els.puts[j])) {
                if (!bl_keys_has_put(&then, &els.puts[j])) {
                    return BL_DECLINED;
                }
            } else {
                out->puts[out->nputs++] = els.puts[j];   /* a set */
            }
            if (bl_keys_deleted(out, &els.puts[j])) {
                return BL_DECLINED;
            }
        }
        for (j = 0; j < then.ndels; j++) {
            if (bl_ival_overlaps(&all, &then.dels[j])) {
                out->dels[out->ndels++] = then.dels[j];
            }
        }
        for (j = 0; j < els.ndels; j++) {
            if (bl_ival_overlaps(&all, &els.dels[j])) {
                out->dels[out->ndels++] = els.dels[j];
            }
        }
    }

    for (i = 0; i < n; i++) {
        if (ops[i]->request_case
            != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
        {
            continue;
        }
        key.data = ops[i]->request_put->key.data;
        key.len = ops[i]->request_put->key.len;
        if (bl_keys_has_put(out, &key) || bl_keys_deleted(out, &key)) {
            return BL_DECLINED;
        }
        out->puts[out->nputs++] = key;
    }
    return BL_OK;
}

/* request tree -> store's tree */

static bl_int_t bl_txn_convert(bl_pool_t *pool, const bl_txn_pb_t *t,
    bl_txn_req_t *req);

static bl_int_t
bl_txn_convert_ops(bl_pool_t *pool, bl_reqop_pb_t **ops, size_t n,
    bl_op_t **out)
{
    bl_op_t  *o;
    size_t    i;

    o = bl_pcalloc(pool, (n + 1) * sizeof(bl_op_t));
    if (o == NULL) {
        return BL_ERROR;
    }
    for (i = 0; i < n; i++) {
        switch (ops[i]->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            o[i].kind = BL_OP_RANGE;
            bl_etcd_range_prepare(ops[i]->request_range, &o[i].u.range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            o[i].kind = BL_OP_PUT;
            bl_etcd_put_prepare(ops[i]->request_put, &o[i].u.put);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            o[i].kind = BL_OP_DELETE;
            bl_etcd_delete_prepare(ops[i]->request_delete_range,
                                   &o[i].u.del);
            break;
        default:                 /* checked: only a nested txn is left */
            o[i].kind = BL_OP_TXN;
            o[i].u.txn = bl_palloc(pool, sizeof(bl_txn_req_t));
            if (o[i].u.txn == NULL
                || bl_txn_convert(pool, ops[i]->request_txn, o[i].u.txn)
                   != BL_OK)
            {
                return BL_ERROR;
            }
        }
    }
    *out = o;
    return BL_OK;
}

static bl_int_t
bl_txn_convert(bl_pool_t *pool, const bl_txn_pb_t *t, bl_txn_req_t *req)
{
    bl_compare_pb_t  *c;
    bl_compare_t     *rc;
    size_t            i;

    req->ncompares = t->n_compare;
    req->compares = bl_pcalloc(pool, (t->n_compare + 1)
                                     * sizeof(bl_compare_t));
    if (req->compares == NULL) {
        return BL_ERROR;
    }
    for (i = 0; i < t->n_compare; i++) {
        c = t->compare[i];
        rc = &req->compares[i];
        rc->target = c->target;
        rc->result = c->result;
        rc->key.data = c->key.data;
        rc->key.len = c->key.len;
        rc->range_end.data = c->range_end.data;
        rc->range_end.len = c->range_end.len;
        /*
         * As etcd's compareKV: the union field counts only if it is the
         * target's own; otherwise the compare is against 0 or empty bytes.
         */
        switch (c->target) {
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
            if (c->target_union_case
                == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION)
            {
                rc->number = c->version;
            }
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
            if (c->target_union_case
                == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
            {
                rc->number = c->create_revision;
            }
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
            if (c->target_union_case
                == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION)
            {
                rc->number = c->mod_revision;
            }
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
            if (c->target_union_case
                == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE)
            {
                rc->number = c->lease;
            }
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE:
            if (c->target_union_case
                == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE)
            {
                rc->value.data = c->value.data;
                rc->value.len = c->value.len;
            }
            break;
        default:
            break;
        }
    }

    req->nsuccess = t->n_success;
    req->nfailure = t->n_failure;
    if (bl_txn_convert_ops(pool, t->success, t->n_success, &req->success)
        != BL_OK
        || bl_txn_convert_ops(pool, t->failure, t->n_failure, &req->failure)
           != BL_OK)
    {
        return BL_ERROR;
    }
    return BL_OK;
}

/* store's result tree -> response tree */

static bl_txn_resp_pb_t *
bl_txn_build(bl_pool_t *pool, const bl_txn_pb_t *t, const bl_txn_res_t *res,
    Etcdserverpb__ResponseHeader *h)
{
    bl_txn_resp_pb_t    *resp;
    bl_respop_pb_t     **v;
    bl_reqop_pb_t      **ops;
    const bl_op_res_t   *r;
    size_t               i, n;

    resp = bl_palloc(pool, sizeof(*resp));
    if (resp == NULL || h == NULL) {
        return NULL;
    }
    etcdserverpb__txn_response__init(resp);
    resp->header = h;
    resp->succeeded = res->succeeded;

    ops = res->succeeded ? t->success : t->failure;
    n = res->succeeded ? t->n_success : t->n_failure;
    if (res->nresponses != n) {
        bl_log_error(BL_LOG_ALERT, 0, "store answered %zu ops of a txn "
                     "branch of %zu", res->nresponses, n);
        return NULL;
    }

    v = bl_palloc(pool, (n + 1) * sizeof(bl_respop_pb_t *));
    if (v == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        r = &res->responses[i];
        v[i] = bl_palloc(pool, sizeof(bl_respop_pb_t));
        if (v[i] == NULL) {
            return NULL;
        }
        etcdserverpb__response_op__init(v[i]);

        switch (r->kind) {
        case BL_OP_RANGE:
            v[i]->response_case =
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
            v[i]->response_range = bl_etcd_range_build(pool,
                ops[i]->request_range, &r->u.range,
                bl_etcd_sub_header(pool, r->u.range.header_revision));
            if (v[i]->response_range == NULL) {
                return NULL;
            }
            break;
        case BL_OP_PUT:
            v[i]->response_case =
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
            v[i]->response_put = bl_etcd_put_build(pool, &r->u.put,
                bl_etcd_sub_header(pool, r->u.put.header_revision));
            if (v[i]->response_put == NULL) {
                return NULL;
            }
            break;
        case BL_OP_DELETE:
            v[i]->response_case =
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
            v[i]->response_delete_range = bl_etcd_delete_build(pool,
                &r->u.del, bl_etcd_sub_header(pool,
                                              r->u.del.header_revision));
            if (v[i]->response_delete_range == NULL) {
                return NULL;
            }
            break;
        case BL_OP_TXN:
            /* etcd leaves a nested transaction's header empty */
            v[i]->response_case =
                ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
            v[i]->response_txn = bl_txn_build(pool, ops[i]->request_txn,
                                              r->u.txn,
                                              bl_etcd_sub_header(pool, 0));
            if (v[i]->response_txn == NULL) {
                return NULL;
            }
            break;
        }
    }
    resp->responses = v;
    resp->n_responses = n;
    return resp;
}

static void
bl_etcd_txn_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t  *ctx = data;
    bl_grpc_call_t    *call = ctx->call;
    bl_txn_res_t      *res = result;
    bl_txn_resp_pb_t  *resp;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp = bl_txn_build(call->pool, ctx->request, res,
                        bl_etcd_header(call->pool, res->header_revision));
    if (resp == NULL) {
        bl_grpc_finish(call, BL_GRPC_INTERNAL, "etcdserver: internal error");
        return;
    }
    bl_etcd_reply(call, &resp->base);
}

/* etcd's isTxnReadonly: only Range ops, on both branches (one level) */
static int
bl_txn_read_only(const bl_txn_pb_t *t)
{
    size_t  i;

    for (i = 0; i < t->n_success; i++) {
        if (t->success[i]->request_case
            != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
        {
            return 0;
        }
    }
    for (i = 0; i < t->n_failure; i++) {
        if (t->failure[i]->request_case
            != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE)
        {
            return 0;
        }
    }
    return 1;
}

/*
 * etcd's quota counts the puts of the top level only (costTxn looks at
 * RequestPut, not into nested transactions): a transaction with one, in
 * either branch, is refused while NOSPACE is raised, whatever the compares
 */
static int
bl_txn_has_put(const bl_txn_pb_t *t)
{
    size_t  i;

    for (i = 0; i < t->n_success; i++) {
        if (t->success[i]->request_case
            == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
        {
            return 1;
        }
    }
    for (i = 0; i < t->n_failure; i++) {
        if (t->failure[i]->request_case
            == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
        {
            return 1;
        }
    }
    return 0;
}

void
bl_etcd_txn(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t       *ctx;
    bl_txn_pb_t            *t;
    bl_txn_req_t            req;
    bl_txn_keys_t           keys;
    bl_storage_status_e     st;
    const bl_etcd_error_t  *err;
    bl_int_t                rc;

    if (len > bl_etcd_conf()->max_request_bytes) {
        bl_etcd_fail(call, &bl_etcd_err_request_too_large);
        return;
    }
    t = etcdserverpb__txn_request__unpack(bl_pool_pb_allocator(call->pool),
                                          len, msg);
    if (t == NULL) {
        bl_etcd_fail_unpack(call, "TxnRequest");
        return;
    }

    err = bl_etcd_txn_check(t, bl_etcd_conf()->max_txn_ops);
    if (err) {
        bl_etcd_fail(call, err);
        return;
    }
    rc = bl_txn_check_intervals(call->pool, t->success, t->n_success, &keys);
    if (rc == BL_OK) {
        rc = bl_txn_check_intervals(call->pool, t->failure, t->n_failure,
                                    &keys);
    }
    if (rc == BL_DECLINED) {
        bl_etcd_fail(call, &bl_etcd_err_duplicate_key);
        return;
    }
    if (bl_txn_has_put(t) && bl_etcd_nospace(call)) {
        return;
    }

    ctx = rc == BL_OK ? bl_etcd_kv_ctx(call, t) : NULL;
    if (ctx == NULL || bl_txn_convert(call->pool, t, &req) != BL_OK) {
        if (ctx == NULL && rc == BL_OK) {
            return;                       /* kv_ctx answered already */
        }
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }

    st = bl_storage_txn(call->pool, &req, bl_txn_read_only(t),
                        bl_etcd_txn_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}
