/*
 * etcdserverpb.KV: Range, Put, DeleteRange, Compact (Txn is in
 * bl_etcd_txn.c), and the conversions Txn shares with them.
 */
#include <bl_core.h>
#include <bl_etcd_kv.h>

bl_etcd_kv_ctx_t *
bl_etcd_kv_ctx(bl_grpc_call_t *call, void *request)
{
    bl_etcd_kv_ctx_t  *ctx;

    ctx = bl_pcalloc(call->pool, sizeof(bl_etcd_kv_ctx_t));
    if (ctx == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    ctx->call = call;
    ctx->request = request;
    call->data = ctx;
    return ctx;
}

void
bl_etcd_kv_cancel(bl_grpc_call_t *call)
{
    bl_etcd_kv_ctx_t  *ctx = call->data;

    if (ctx && ctx->op) {
        bl_storage_cancel(ctx->op);
        ctx->op = NULL;
    }
}

void
bl_etcd_kv_started(bl_etcd_kv_ctx_t *ctx, bl_storage_status_e st)
{
    if (st != BL_ST_OK) {
        ctx->op = NULL;
        bl_etcd_fail_storage(ctx->call, st);
    }
}

int
bl_etcd_kv_failed(bl_etcd_kv_ctx_t *ctx, bl_storage_status_e st)
{
    ctx->op = NULL;
    if (st != BL_ST_OK) {
        bl_etcd_fail_storage(ctx->call, st);
        return 1;
    }
    return 0;
}

void
bl_etcd_reply_built(bl_grpc_call_t *call, const ProtobufCMessage *msg)
{
    if (msg == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    bl_etcd_reply(call, msg);
}

Etcdserverpb__ResponseHeader *
bl_etcd_sub_header(bl_pool_t *pool, int64_t revision)
{
    Etcdserverpb__ResponseHeader  *h;

    h = bl_palloc(pool, sizeof(*h));
    if (h) {
        etcdserverpb__response_header__init(h);
        h->revision = revision;
    }
    return h;
}

static Mvccpb__KeyValue *
bl_etcd_kv_to_pb(bl_pool_t *pool, const bl_kv_t *kv, int keys_only)
{
    Mvccpb__KeyValue  *pb;

    pb = bl_palloc(pool, sizeof(*pb));
    if (pb == NULL) {
        return NULL;
    }
    mvccpb__key_value__init(pb);
    pb->key.data = kv->key.data;
    pb->key.len = kv->key.len;
    pb->create_revision = kv->create_revision;
    pb->mod_revision = kv->mod_revision;
    pb->version = kv->version;
    pb->lease = kv->lease;
    if (!keys_only) {
        pb->value.data = kv->value.data;
        pb->value.len = kv->value.len;
    }
    return pb;
}

static Mvccpb__KeyValue **
bl_etcd_kvs_to_pb(bl_pool_t *pool, const bl_kv_t *const *kvs,
    const bl_kv_t *array, size_t n, int keys_only)
{
    Mvccpb__KeyValue  **v;
    size_t              i;

    v = bl_palloc(pool, (n + 1) * sizeof(Mvccpb__KeyValue *));
    if (v == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        v[i] = bl_etcd_kv_to_pb(pool, kvs ? kvs[i] : &array[i], keys_only);
        if (v[i] == NULL) {
            return NULL;
        }
    }
    return v;
}

/* Range: checks, sorting and revision filters */

const bl_etcd_error_t *
bl_etcd_range_check(const bl_range_pb_t *r)
{
    return r->key.len == 0 ? &bl_etcd_err_empty_key : NULL;
}

static int  bl_etcd_sort_target;
static int  bl_etcd_sort_sign;      /* 1 ascending, -1 descending */

static int
bl_etcd_kv_cmp(const bl_kv_t *x, const bl_kv_t *y)
{
    int64_t  d;

    switch (bl_etcd_sort_target) {
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY:
        return bl_etcd_sort_sign * bl_str_cmp(&x->key, &y->key);
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
        d = x->version - y->version;
        break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
        d = x->create_revision - y->create_revision;
        break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
        d = x->mod_revision - y->mod_revision;
        break;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
        return bl_etcd_sort_sign * bl_str_cmp(&x->value, &y->value);
    default:
        d = 0;
    }
    return bl_etcd_sort_sign * ((d > 0) - (d < 0));
}

/*
 * A stable merge sort in the requested direction: ties keep key order in
 * both directions, as etcd's results show (its sort of a small result is
 * an insertion sort, which is stable).
 */
static void
bl_etcd_sort(const bl_kv_t **v, const bl_kv_t **tmp, size_t n)
{
    size_t  m, i, j, k;

    if (n < 2) {
        return;
    }
    m = n / 2;
    bl_etcd_sort(v, tmp, m);
    bl_etcd_sort(v + m, tmp, n - m);
    for (i = 0, j = m, k = 0; i < m && j < n; ) {
        tmp[k++] = bl_etcd_kv_cmp(v[j], v[i]) < 0 ? v[j++] : v[i++];
    }
    while (i < m) {
        tmp[k++] = v[i++];
    }
    while (j < n) {
        tmp[k++] = v[j++];
    }
    memcpy(v, tmp, n * sizeof(*v));
}

static int
bl_etcd_range_filtered(const bl_range_pb_t *r)
{
    return r->min_mod_revision || r->max_mod_revision
           || r->min_create_revision || r->max_create_revision;
}

static int
bl_etcd_range_keep(const bl_range_pb_t *r, const bl_kv_t *kv)
{
    return !(r->min_mod_revision && kv->mod_revision < r->min_mod_revision)
        && !(r->max_mod_revision && kv->mod_revision > r->max_mod_revision)
        && !(r->min_create_revision
             && kv->create_revision < r->min_create_revision)
        && !(r->max_create_revision
             && kv->create_revision > r->max_create_revision);
}

void
bl_etcd_range_prepare(const bl_range_pb_t *r, bl_range_req_t *req)
{
    memset(req, 0, sizeof(*req));
    req->key.data = r->key.data;
    req->key.len = r->key.len;
    req->range_end.data = r->range_end.data;
    req->range_end.len = r->range_end.len;
    req->revision = r->revision;
    req->count_only = r->count_only;
    /* sorting by value needs the values; the response drops them */
    req->keys_only = r->keys_only
        && r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;

    /*
     * Sorting or filtering needs every match, the limit is applied after.
     * etcd 3.4's quirk for a non-KEY target with order NONE: it fetches
     * limit + 1 in key order, sorts those, then cuts to the limit.
     */
    if (r->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE
        || bl_etcd_range_filtered(r))
    {
        req->limit = 0;
    } else if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY
               && r->limit > 0)
    {
        req->limit = r->limit + 1;
    } else {
        req->limit = r->limit;
    }
}

bl_range_resp_pb_t *
bl_etcd_range_build(bl_pool_t *pool, const bl_range_pb_t *r,
    const bl_range_res_t *res, Etcdserverpb__ResponseHeader *h)
{
    bl_range_resp_pb_t  *resp;
    const bl_kv_t      **v, **tmp;
    size_t               i, n;
    int                  order;

    resp = bl_palloc(pool, sizeof(*resp));
    if (resp == NULL || h == NULL) {
        return NULL;
    }
    etcdserverpb__range_response__init(resp);
    resp->header = h;
    resp->count = res->count;
    resp->more = res->more;

    if (r->count_only) {
        return resp;
    }

    v = bl_palloc(pool, (res->nkvs + 1) * sizeof(*v));
    tmp = bl_palloc(pool, (res->nkvs + 1) * sizeof(*tmp));
    if (v == NULL || tmp == NULL) {
        return NULL;
    }
    for (i = 0, n = 0; i < res->nkvs; i++) {
        if (bl_etcd_range_keep(r, &res->kvs[i])) {
            v[n++] = &res->kvs[i];
        }
    }

    /* as etcd 3.4: a target other than KEY with order NONE means ASCEND */
    order = r->sort_order;
    if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY
        && order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
    {
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    }
    if (order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE) {
        bl_etcd_sort_target = r->sort_target;
        bl_etcd_sort_sign =
            order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND ? -1 : 1;
        bl_etcd_sort(v, tmp, n);
    }

    /* the store's "more" holds unless we fetched more than the limit */
    if (r->limit > 0 && n > (size_t) r->limit) {
        n = (size_t) r->limit;
        resp->more = 1;
    }

    resp->kvs = bl_etcd_kvs_to_pb(pool, v, NULL, n, r->keys_only);
    if (resp->kvs == NULL) {
        return NULL;
    }
    resp->n_kvs = n;
    return resp;
}

static void
bl_etcd_range_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t    *ctx = data;
    bl_grpc_call_t      *call = ctx->call;
    bl_range_res_t      *res = result;
    bl_range_resp_pb_t  *resp;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp = bl_etcd_range_build(call->pool, ctx->request, res,
                               bl_etcd_header(call->pool,
                                              res->header_revision));
    bl_etcd_reply_built(call, resp ? &resp->base : NULL);
}

static void
bl_etcd_range(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t       *ctx;
    bl_range_pb_t          *r;
    bl_range_req_t          req;
    bl_storage_status_e     st;
    const bl_etcd_error_t  *err;

    r = etcdserverpb__range_request__unpack(bl_pool_pb_allocator(call->pool),
                                            len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "RangeRequest");
        return;
    }
    err = bl_etcd_range_check(r);
    if (err) {
        bl_etcd_fail(call, err);
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    bl_etcd_range_prepare(r, &req);
    st = bl_storage_range(call->pool, &req, bl_etcd_range_done, ctx,
                          &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

/* Put */

const bl_etcd_error_t *
bl_etcd_put_check(const bl_put_pb_t *p)
{
    if (p->key.len == 0) {
        return &bl_etcd_err_empty_key;
    }
    if (p->ignore_value && p->value.len != 0) {
        return &bl_etcd_err_value_provided;
    }
    if (p->ignore_lease && p->lease != 0) {
        return &bl_etcd_err_lease_provided;
    }
    return NULL;
}

void
bl_etcd_put_prepare(const bl_put_pb_t *p, bl_put_req_t *req)
{
    memset(req, 0, sizeof(*req));
    req->key.data = p->key.data;
    req->key.len = p->key.len;
    req->value.data = p->value.data;
    req->value.len = p->value.len;
    req->lease = p->lease;
    req->prev_kv = p->prev_kv;
    req->ignore_value = p->ignore_value;
    req->ignore_lease = p->ignore_lease;
}

bl_put_resp_pb_t *
bl_etcd_put_build(bl_pool_t *pool, const bl_put_res_t *res,
    Etcdserverpb__ResponseHeader *h)
{
    bl_put_resp_pb_t  *resp;

    resp = bl_palloc(pool, sizeof(*resp));
    if (resp == NULL || h == NULL) {
        return NULL;
    }
    etcdserverpb__put_response__init(resp);
    resp->header = h;
    if (res->prev_kv) {
        resp->prev_kv = bl_etcd_kv_to_pb(pool, res->prev_kv, 0);
        if (resp->prev_kv == NULL) {
            return NULL;
        }
    }
    return resp;
}

static void
bl_etcd_put_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t  *ctx = data;
    bl_grpc_call_t    *call = ctx->call;
    bl_put_res_t      *res = result;
    bl_put_resp_pb_t  *resp;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp = bl_etcd_put_build(call->pool, res,
                             bl_etcd_header(call->pool,
                                            res->header_revision));
    bl_etcd_reply_built(call, resp ? &resp->base : NULL);
}

/* etcd measures the raft request; the message is a close bound */
static int
bl_etcd_too_large(bl_grpc_call_t *call, size_t len)
{
    if (len > bl_etcd_conf()->max_request_bytes) {
        bl_etcd_fail(call, &bl_etcd_err_request_too_large);
        return 1;
    }
    return 0;
}

static void
bl_etcd_put(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t       *ctx;
    bl_put_pb_t            *p;
    bl_put_req_t            req;
    bl_storage_status_e     st;
    const bl_etcd_error_t  *err;

    if (bl_etcd_too_large(call, len)) {
        return;
    }
    p = etcdserverpb__put_request__unpack(bl_pool_pb_allocator(call->pool),
                                          len, msg);
    if (p == NULL) {
        bl_etcd_fail_unpack(call, "PutRequest");
        return;
    }
    err = bl_etcd_put_check(p);
    if (err) {
        bl_etcd_fail(call, err);
        return;
    }
    if (bl_etcd_nospace(call)) {
        return;
    }
    ctx = bl_etcd_kv_ctx(call, p);
    if (ctx == NULL) {
        return;
    }
    bl_etcd_put_prepare(p, &req);
    st = bl_storage_put(call->pool, &req, bl_etcd_put_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

/* DeleteRange */

const bl_etcd_error_t *
bl_etcd_delete_check(const bl_delete_pb_t *d)
{
    return d->key.len == 0 ? &bl_etcd_err_empty_key : NULL;
}

void
bl_etcd_delete_prepare(const bl_delete_pb_t *d, bl_delete_req_t *req)
{
    memset(req, 0, sizeof(*req));
    req->key.data = d->key.data;
    req->key.len = d->key.len;
    req->range_end.data = d->range_end.data;
    req->range_end.len = d->range_end.len;
    req->prev_kv = d->prev_kv;
}

bl_delete_resp_pb_t *
bl_etcd_delete_build(bl_pool_t *pool, const bl_delete_res_t *res,
    Etcdserverpb__ResponseHeader *h)
{
    bl_delete_resp_pb_t  *resp;

    resp = bl_palloc(pool, sizeof(*resp));
    if (resp == NULL || h == NULL) {
        return NULL;
    }
    etcdserverpb__delete_range_response__init(resp);
    resp->header = h;
    resp->deleted = res->deleted;
    if (res->nprev_kvs) {
        resp->prev_kvs = bl_etcd_kvs_to_pb(pool, NULL, res->prev_kvs,
                                           res->nprev_kvs, 0);
        if (resp->prev_kvs == NULL) {
            return NULL;
        }
        resp->n_prev_kvs = res->nprev_kvs;
    }
    return resp;
}

static void
bl_etcd_delete_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t     *ctx = data;
    bl_grpc_call_t       *call = ctx->call;
    bl_delete_res_t      *res = result;
    bl_delete_resp_pb_t  *resp;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp = bl_etcd_delete_build(call->pool, res,
                                bl_etcd_header(call->pool,
                                               res->header_revision));
    bl_etcd_reply_built(call, resp ? &resp->base : NULL);
}

static void
bl_etcd_delete(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t       *ctx;
    bl_delete_pb_t         *d;
    bl_delete_req_t         req;
    bl_storage_status_e     st;
    const bl_etcd_error_t  *err;

    if (bl_etcd_too_large(call, len)) {
        return;
    }
    d = etcdserverpb__delete_range_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (d == NULL) {
        bl_etcd_fail_unpack(call, "DeleteRangeRequest");
        return;
    }
    err = bl_etcd_delete_check(d);
    if (err) {
        bl_etcd_fail(call, err);
        return;
    }
    ctx = bl_etcd_kv_ctx(call, d);
    if (ctx == NULL) {
        return;
    }
    bl_etcd_delete_prepare(d, &req);
    st = bl_storage_delete(call->pool, &req, bl_etcd_delete_done, ctx,
                           &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

/* Compact */

static void
bl_etcd_compact_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                 *ctx = data;
    bl_grpc_call_t                   *call = ctx->call;
    bl_compact_res_t                 *res = result;
    Etcdserverpb__CompactionResponse  resp =
        ETCDSERVERPB__COMPACTION_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    bl_etcd_reply_built(call, resp.header ? &resp.base : NULL);
}

static void
bl_etcd_compact(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                 *ctx;
    Etcdserverpb__CompactionRequest  *c;
    bl_storage_status_e               st;

    c = etcdserverpb__compaction_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (c == NULL) {
        bl_etcd_fail_unpack(call, "CompactionRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, c);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_compact(call->pool, c->revision, c->physical,
                            bl_etcd_compact_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

const bl_grpc_method_t  bl_etcd_kv_methods[] = {
    { "/etcdserverpb.KV/Range", BL_GRPC_UNARY, bl_etcd_range, NULL,
      bl_etcd_kv_cancel },
    { "/etcdserverpb.KV/Put", BL_GRPC_UNARY, bl_etcd_put, NULL,
      bl_etcd_kv_cancel },
    { "/etcdserverpb.KV/DeleteRange", BL_GRPC_UNARY, bl_etcd_delete, NULL,
      bl_etcd_kv_cancel },
    { "/etcdserverpb.KV/Txn", BL_GRPC_UNARY, bl_etcd_txn, NULL,
      bl_etcd_kv_cancel },
    { "/etcdserverpb.KV/Compact", BL_GRPC_UNARY, bl_etcd_compact, NULL,
      bl_etcd_kv_cancel },
};

const size_t  bl_etcd_kv_nmethods = bl_nelems(bl_etcd_kv_methods);
