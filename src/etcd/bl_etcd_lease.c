/*
 * etcdserverpb.Lease: Grant, Revoke, KeepAlive (a bidi stream),
 * TimeToLive and Leases, on the store's leases; and the expiry job that
 * the watcher process of every node runs (the store makes sure that one
 * node only takes each expired lease).  The Lease rows of CONFORMANCE.md
 * (section 6, C73-C79) are the reference.
 *
 * A KeepAlive stream may live for days and carry millions of renewals, so
 * nothing per renewal is allocated from the call's pool: each renewal
 * has an entry with its own small pool, reset after its answer is sent
 * and kept on a free list for the next one.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_etcd_kv.h>

/*
 * etcd's lessor: minTTL = ceil(((3 * electionTicks) / 2) * heartbeat),
 * 2 s with the default 100 ms heartbeat and 1000 ms election timeout
 * (etcdserver/server.go).  A requested TTL below it (also 0 or negative)
 * is raised to it; one above MaxLeaseTTL is refused.
 */
#define BL_ETCD_LEASE_MIN_TTL      2
#define BL_ETCD_LEASE_MAX_TTL      9000000000LL

/* a KeepAlive stream: renewals in flight at once (the store batches
 * them), renewals waiting for their answer, answers not yet written */
#define BL_ETCD_KA_MAX_RUNNING     128
#define BL_ETCD_KA_MAX_QUEUED      65536
#define BL_ETCD_KA_MAX_PENDING     (4 * 1024 * 1024)
/* the store's queue was full and nothing of ours runs: try again */
#define BL_ETCD_KA_RETRY_MSEC      10
#define BL_ETCD_KA_POOL_SIZE       1024

/* the watcher's expiry job: every tick, at most this many leases */
#define BL_ETCD_EXPIRE_MSEC        250
#define BL_ETCD_EXPIRE_BATCH       100
/* and how often it counts the leases for metrics: a scan of the lease
 * table's index, so seldom (a gauge scraped every 15 s or more) */
#define BL_ETCD_LEASE_COUNT_MSEC   5000

typedef Etcdserverpb__LeaseKeepAliveResponse  bl_ka_resp_pb_t;

static const bl_etcd_error_t  bl_etcd_err_lease_ttl_too_large = {
    BL_GRPC_OUT_OF_RANGE, "etcdserver: too large lease TTL" };
static const bl_etcd_error_t  bl_etcd_err_too_many_requests = {
    BL_GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests" };

/*
 * Answers that read nothing (an unknown lease for TimeToLive and
 * KeepAlive) still carry the store's current revision, as etcd's do; a
 * count of one key is the cheapest read that tells it.
 */
static u_char  bl_etcd_lease_probe_key[1] = { 0 };

static bl_storage_status_e
bl_etcd_lease_current(bl_pool_t *pool, bl_storage_handler_pt handler,
    void *data, bl_storage_op_t **op)
{
    bl_range_req_t  req;

    memset(&req, 0, sizeof(req));
    req.key.data = bl_etcd_lease_probe_key;
    req.key.len = sizeof(bl_etcd_lease_probe_key);
    req.count_only = 1;
    return bl_storage_range(pool, &req, handler, data, op);
}

static void
bl_etcd_lease_oom(bl_grpc_call_t *call)
{
    bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* LeaseGrant */

static void
bl_etcd_lease_grant_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                 *ctx = data;
    bl_grpc_call_t                   *call = ctx->call;
    bl_lease_res_t                   *res = result;
    Etcdserverpb__LeaseGrantResponse  resp =
        ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    if (resp.header == NULL) {
        bl_etcd_lease_oom(call);
        return;
    }
    resp.id = res->id;
    resp.ttl = res->ttl;
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_lease_grant(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                 *ctx;
    Etcdserverpb__LeaseGrantRequest  *r;
    bl_storage_status_e               st;
    int64_t                           ttl;

    r = etcdserverpb__lease_grant_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "LeaseGrantRequest");
        return;
    }
    /* etcd's capped applier refuses a grant before the lessor looks */
    if (bl_etcd_nospace(call)) {
        return;
    }
    /* etcd's lessor checks the maximum first: also for an id in use */
    if (r->ttl > BL_ETCD_LEASE_MAX_TTL) {
        bl_etcd_fail(call, &bl_etcd_err_lease_ttl_too_large);
        return;
    }
    ttl = bl_max(r->ttl, BL_ETCD_LEASE_MIN_TTL);

    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_lease_grant(call->pool, r->id, ttl,
                                bl_etcd_lease_grant_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

/* LeaseRevoke */

static void
bl_etcd_lease_revoke_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                  *ctx = data;
    bl_grpc_call_t                    *call = ctx->call;
    bl_lease_res_t                    *res = result;
    Etcdserverpb__LeaseRevokeResponse  resp =
        ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    if (resp.header == NULL) {
        bl_etcd_lease_oom(call);
        return;
    }
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_lease_revoke(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                  *ctx;
    Etcdserverpb__LeaseRevokeRequest  *r;
    bl_storage_status_e                st;

    r = etcdserverpb__lease_revoke_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "LeaseRevokeRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_lease_revoke(call->pool, r->id,
                                 bl_etcd_lease_revoke_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

/* LeaseTimeToLive */

static void
bl_etcd_lease_ttl_reply(bl_grpc_call_t *call, int64_t id, int64_t revision,
    const bl_lease_res_t *res)
{
    Etcdserverpb__LeaseTimeToLiveResponse  resp =
        ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    size_t                                 i;

    resp.header = bl_etcd_header(call->pool, revision);
    if (resp.header == NULL) {
        bl_etcd_lease_oom(call);
        return;
    }
    resp.id = id;
    if (res == NULL) {
        /* etcd: an unknown lease is TTL -1, grantedTTL 0, no error */
        resp.ttl = -1;
        bl_etcd_reply(call, &resp.base);
        return;
    }
    resp.ttl = res->remaining;
    resp.grantedttl = res->ttl;
    if (res->nkeys) {
        resp.keys = bl_palloc(call->pool,
                              res->nkeys * sizeof(ProtobufCBinaryData));
        if (resp.keys == NULL) {
            bl_etcd_lease_oom(call);
            return;
        }
        for (i = 0; i < res->nkeys; i++) {
            resp.keys[i].data = res->keys[i].data;
            resp.keys[i].len = res->keys[i].len;
        }
        resp.n_keys = res->nkeys;
    }
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_lease_ttl_unknown(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                      *ctx = data;
    bl_range_res_t                        *res = result;
    Etcdserverpb__LeaseTimeToLiveRequest  *r = ctx->request;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    bl_etcd_lease_ttl_reply(ctx->call, r->id, res->header_revision, NULL);
}

static void
bl_etcd_lease_ttl_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                      *ctx = data;
    bl_lease_res_t                        *res = result;
    Etcdserverpb__LeaseTimeToLiveRequest  *r = ctx->request;

    ctx->op = NULL;
    if (st == BL_ST_LEASE_NOT_FOUND) {
        st = bl_etcd_lease_current(ctx->call->pool,
                                   bl_etcd_lease_ttl_unknown, ctx, &ctx->op);
        bl_etcd_kv_started(ctx, st);
        return;
    }
    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    bl_etcd_lease_ttl_reply(ctx->call, r->id, res->header_revision, res);
}

static void
bl_etcd_lease_ttl(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                      *ctx;
    Etcdserverpb__LeaseTimeToLiveRequest  *r;
    bl_storage_status_e                    st;

    r = etcdserverpb__lease_time_to_live_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "LeaseTimeToLiveRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_lease_ttl(call->pool, r->id, r->keys,
                              bl_etcd_lease_ttl_done, ctx, &ctx->op);
    if (st != BL_ST_OK) {
        ctx->op = NULL;
        bl_etcd_lease_ttl_done(ctx, st, NULL);
    }
}

/* LeaseLeases */

static void
bl_etcd_lease_list_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                  *ctx = data;
    bl_grpc_call_t                    *call = ctx->call;
    bl_lease_list_res_t               *res = result;
    Etcdserverpb__LeaseStatus         *status;
    Etcdserverpb__LeaseLeasesResponse  resp =
        ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    size_t                             i;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    resp.leases = bl_palloc(call->pool,
                            (res->nids + 1) * sizeof(*resp.leases));
    status = bl_palloc(call->pool, (res->nids + 1) * sizeof(*status));
    if (resp.header == NULL || resp.leases == NULL || status == NULL) {
        bl_etcd_lease_oom(call);
        return;
    }
    for (i = 0; i < res->nids; i++) {
        etcdserverpb__lease_status__init(&status[i]);
        status[i].id = res->ids[i];
        resp.leases[i] = &status[i];
    }
    resp.n_leases = res->nids;
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_lease_list(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                 *ctx;
    Etcdserverpb__LeaseLeasesRequest  *r;
    bl_storage_status_e               st;

    r = etcdserverpb__lease_leases_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "LeaseLeasesRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_lease_list(call->pool, bl_etcd_lease_list_done, ctx,
                               &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

/*
 * LeaseKeepAlive.  etcd answers a stream's renewals one at a time, in
 * order: each {ID} gets {header, ID, TTL = the granted TTL}, or TTL 0
 * when the lease is unknown or expired (not an error: the stream goes
 * on); any other failure ends the stream with its error, after the
 * answers to the renewals before it.  When the client half-closes, the
 * stream ends with OK once every renewal was answered.
 *
 * Here renewals are pipelined (the store shares round trips between
 * them) and answered strictly in the order they came.
 */

typedef struct bl_etcd_ka_s   bl_etcd_ka_t;
typedef struct bl_etcd_kas_s  bl_etcd_kas_t;

enum {
    BL_ETCD_KA_QUEUED = 0,       /* waits for room to start */
    BL_ETCD_KA_RUNNING,          /* a store operation is in flight */
    BL_ETCD_KA_DONE              /* answer (or st) known */
};

/* one renewal */
struct bl_etcd_ka_s {
    bl_etcd_kas_t        *kas;
    bl_etcd_ka_t         *next;       /* the stream's queue, or free list */
    bl_pool_t            *pool;       /* the store's result, the header */
    bl_storage_op_t      *op;
    int64_t               id;
    int64_t               ttl;
    int64_t               revision;
    bl_storage_status_e   st;
    int                   state;
};

/* one KeepAlive stream */
struct bl_etcd_kas_s {
    bl_grpc_call_t       *call;
    bl_etcd_ka_t         *head;       /* answer order */
    bl_etcd_ka_t         *tail;
    bl_etcd_ka_t         *waiting;    /* first QUEUED one; all after it too */
    bl_etcd_ka_t         *free;
    size_t                queued;     /* in head..tail */
    size_t                running;
    ev_timer              retry_ev;
    ev_timer              end_ev;     /* end the stream outside callbacks */
    int                   end_status;
    const char           *end_message;
    bl_storage_status_e   end_storage;
    /* a malformed renewal: the error, once the ones before are answered */
    int                   bad_status;
    char                  bad_text[192];
    unsigned              half_closed:1;
    unsigned              bad:1;          /* nothing more is read */
    unsigned              ending:1;
};

static void bl_etcd_ka_retry(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_etcd_ka_end(struct ev_loop *loop, ev_timer *w, int revents);
static void bl_etcd_ka_start(bl_etcd_kas_t *kas);
static void bl_etcd_ka_drain(bl_grpc_call_t *call);

static bl_etcd_kas_t *
bl_etcd_ka_stream(bl_grpc_call_t *call)
{
    bl_etcd_kas_t  *kas;

    kas = bl_pcalloc(call->pool, sizeof(bl_etcd_kas_t));
    if (kas == NULL) {
        return NULL;
    }
    kas->call = call;
    ev_init(&kas->retry_ev, bl_etcd_ka_retry);
    kas->retry_ev.data = kas;
    ev_init(&kas->end_ev, bl_etcd_ka_end);
    kas->end_ev.data = kas;
    call->data = kas;
    call->on_drain = bl_etcd_ka_drain;
    return kas;
}

/* every operation cancelled, every renewal's pool freed */
static void
bl_etcd_ka_close(bl_etcd_kas_t *kas)
{
    bl_etcd_ka_t  *ka;
    int            i;

    ev_timer_stop(bl_loop, &kas->retry_ev);
    ev_timer_stop(bl_loop, &kas->end_ev);

    for (i = 0; i < 2; i++) {
        for (ka = i ? kas->free : kas->head; ka; ka = ka->next) {
            if (ka->op) {
                bl_storage_cancel(ka->op);
                ka->op = NULL;
            }
            if (ka->pool) {
                bl_pool_destroy(ka->pool);
                ka->pool = NULL;
            }
        }
    }
    kas->head = kas->tail = kas->waiting = kas->free = NULL;
    kas->queued = kas->running = 0;
    kas->call->data = NULL;
}

/*
 * End the stream with a status.  From a store callback the other
 * renewals' operations may not be cancelled, so it is done from the
 * loop, at once; meanwhile nothing more is sent or started.
 */
static void
bl_etcd_ka_abort(bl_etcd_kas_t *kas, int status, const char *message,
    bl_storage_status_e st)
{
    if (kas->ending) {
        return;
    }
    kas->ending = 1;
    kas->end_status = status;
    kas->end_message = message;
    kas->end_storage = st;
    bl_timer_set(&kas->end_ev, 0);
}

static void
bl_etcd_ka_end(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_etcd_kas_t        *kas = w->data;
    bl_grpc_call_t       *call = kas->call;
    int                   status;
    const char           *message;
    bl_storage_status_e   st;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    status = kas->end_status;
    message = kas->end_message;
    st = kas->end_storage;
    bl_etcd_ka_close(kas);
    if (st != BL_ST_OK) {
        bl_etcd_fail_storage(call, st);
    } else {
        bl_grpc_finish(call, status, message);
    }
}

/*
 * Send the answers that are known, in order; end the stream when it is
 * over.  BL_DONE: the stream ended or is ending, leave it alone.
 */
static bl_int_t
bl_etcd_ka_flush(bl_etcd_kas_t *kas)
{
    bl_etcd_ka_t     *ka;
    bl_grpc_call_t   *call = kas->call;
    bl_ka_resp_pb_t   resp;

    while (kas->head && kas->head->state == BL_ETCD_KA_DONE) {
        ka = kas->head;
        if (ka->st != BL_ST_OK) {
            bl_etcd_ka_abort(kas, 0, NULL, ka->st);
            return BL_DONE;
        }

        etcdserverpb__lease_keep_alive_response__init(&resp);
        resp.header = bl_etcd_header(ka->pool, ka->revision);
        if (resp.header == NULL) {
            bl_etcd_ka_abort(kas, BL_GRPC_RESOURCE_EXHAUSTED,
                             "out of memory", BL_ST_OK);
            return BL_DONE;
        }
        resp.id = ka->id;
        resp.ttl = ka->ttl;
        if (bl_grpc_send(call, &resp.base) != BL_OK) {
            kas->ending = 1;             /* on_cancel follows */
            return BL_DONE;
        }

        kas->head = ka->next;
        if (kas->head == NULL) {
            kas->tail = NULL;
        }
        kas->queued--;
        bl_pool_reset(ka->pool);
        ka->next = kas->free;
        kas->free = ka;
    }

    if (kas->head == NULL && kas->bad) {
        bl_etcd_ka_abort(kas, kas->bad_status, kas->bad_text, BL_ST_OK);
        return BL_DONE;
    }
    if (kas->head == NULL && kas->half_closed) {
        bl_etcd_ka_close(kas);
        bl_grpc_finish(call, BL_GRPC_OK, NULL);
        return BL_DONE;
    }
    return BL_OK;
}

static void
bl_etcd_ka_settle(bl_etcd_kas_t *kas)
{
    if (bl_etcd_ka_flush(kas) == BL_OK) {
        bl_etcd_ka_start(kas);
    }
}

/*
 * The worker drains: the renewals already read are answered, then the
 * stream ends UNAVAILABLE, as a stopping etcd's would; clientv3 opens a
 * new stream (on a new connection, to another worker) half a second
 * later, well within any TTL.  Read nothing more meanwhile.
 */
static void
bl_etcd_ka_drain(bl_grpc_call_t *call)
{
    bl_etcd_kas_t  *kas = call->data;

    if (kas == NULL || kas->ending || kas->bad) {
        return;
    }
    kas->bad = 1;
    kas->bad_status = BL_GRPC_UNAVAILABLE;
    snprintf(kas->bad_text, sizeof(kas->bad_text), "%s",
             "etcdserver: server stopped");
    (void) bl_etcd_ka_flush(kas);
}

static void
bl_etcd_ka_unknown_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_ka_t    *ka = data;
    bl_range_res_t  *res = result;

    ka->op = NULL;
    ka->kas->running--;
    ka->state = BL_ETCD_KA_DONE;
    ka->st = st;
    if (st == BL_ST_OK) {
        ka->ttl = 0;
        ka->revision = res->header_revision;
    }
    bl_etcd_ka_settle(ka->kas);
}

static void
bl_etcd_ka_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_ka_t    *ka = data;
    bl_etcd_kas_t   *kas = ka->kas;
    bl_lease_res_t  *res = result;

    ka->op = NULL;
    kas->running--;

    if (st == BL_ST_LEASE_NOT_FOUND) {
        /* etcd: TTL 0, with the header of the moment */
        st = bl_etcd_lease_current(ka->pool, bl_etcd_ka_unknown_done, ka,
                                   &ka->op);
        if (st == BL_ST_OK) {
            kas->running++;
            return;
        }
        ka->op = NULL;
    }

    ka->state = BL_ETCD_KA_DONE;
    ka->st = st;
    if (st == BL_ST_OK) {
        ka->ttl = res->ttl;
        ka->revision = res->header_revision;
        bl_etcd_stats.lease_renewals++;
    }
    bl_etcd_ka_settle(kas);
}

/* start the waiting renewals while there is room */
static void
bl_etcd_ka_start(bl_etcd_kas_t *kas)
{
    bl_etcd_ka_t         *ka;
    bl_storage_status_e   st;

    while (kas->waiting && kas->running < BL_ETCD_KA_MAX_RUNNING
           && !kas->ending)
    {
        ka = kas->waiting;
        st = bl_storage_lease_keepalive(ka->pool, ka->id, bl_etcd_ka_done,
                                        ka, &ka->op);
        if (st == BL_ST_TOO_MANY_REQUESTS) {
            /* the worker's queue is full: a completion, or the timer if
             * none of ours is in flight, tries again */
            ka->op = NULL;
            if (kas->running == 0) {
                bl_timer_set(&kas->retry_ev, BL_ETCD_KA_RETRY_MSEC);
            }
            return;
        }
        kas->waiting = ka->next;
        if (st == BL_ST_OK) {
            ka->state = BL_ETCD_KA_RUNNING;
            kas->running++;
            continue;
        }
        /* not queued: the status is final (the handler is not called) */
        ka->op = NULL;
        kas->running++;
        bl_etcd_ka_done(ka, st, NULL);
        return;                     /* it settled the stream itself */
    }
}

static void
bl_etcd_ka_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);
    bl_etcd_ka_start(w->data);
}

/*
 * A LeaseKeepAliveRequest is one varint field; decoded here rather than
 * by protobuf-c (no allocation per renewal), with the errors of etcd's
 * gogoproto Unmarshal and skipRpc, which grpc-go ends the stream with.
 */

#define BL_ETCD_PB_OVERFLOW  "proto: integer overflow"
#define BL_ETCD_PB_EOF       "unexpected EOF"

static const char *
bl_etcd_pb_varint(const u_char **pp, const u_char *end, uint64_t *v)
{
    const u_char  *p = *pp;
    int            shift;

    *v = 0;
    for (shift = 0; ; shift += 7) {
        if (shift >= 64) {
            return BL_ETCD_PB_OVERFLOW;
        }
        if (p == end) {
            return BL_ETCD_PB_EOF;
        }
        *v |= (uint64_t) (*p & 0x7f) << shift;
        if (*p++ < 0x80) {
            break;
        }
    }
    *pp = p;
    return NULL;
}

/* skip the field at *pp (its key included), as gogoproto's skipRpc */
static const char *
bl_etcd_pb_skip(const u_char **pp, const u_char *end, char *buf, size_t size,
    int depth)
{
    const u_char  *p = *pp;
    const char    *err;
    uint64_t       key, v;

    if ((err = bl_etcd_pb_varint(&p, end, &key)) != NULL) {
        return err;
    }
    switch (key & 7) {
    case 0:
        err = bl_etcd_pb_varint(&p, end, &v);
        break;
    case 1:
    case 5:
        v = (key & 7) == 1 ? 8 : 4;
        err = (uint64_t) (end - p) < v ? BL_ETCD_PB_EOF : NULL;
        p += err ? 0 : v;
        break;
    case 2:
        if ((err = bl_etcd_pb_varint(&p, end, &v)) != NULL) {
            break;
        }
        if ((int64_t) v < 0) {
            return "proto: negative length found during unmarshaling";
        }
        err = v > (uint64_t) (end - p) ? BL_ETCD_PB_EOF : NULL;
        p += err ? 0 : v;
        break;
    case 3:
        /* a group: fields up to its end-group key */
        for ( ;; ) {
            const u_char  *q = p;

            if (depth > 64) {
                return BL_ETCD_PB_EOF;
            }
            if ((err = bl_etcd_pb_varint(&q, end, &v)) != NULL) {
                return err;
            }
            if ((v & 7) == 4) {
                p = q;
                break;
            }
            if ((err = bl_etcd_pb_skip(&p, end, buf, size, depth + 1))
                != NULL)
            {
                return err;
            }
        }
        break;
    case 4:
        break;
    default:
        snprintf(buf, size, "proto: illegal wireType %d", (int) (key & 7));
        return buf;
    }
    *pp = p;
    return err;
}

static const char *
bl_etcd_ka_decode(const u_char *p, size_t len, int64_t *id, char *buf,
    size_t size)
{
    const u_char  *end = p + len, *field;
    const char    *err;
    uint64_t       key, v;
    int32_t        num;
    int            wire;

    *id = 0;
    while (p < end) {
        field = p;
        if ((err = bl_etcd_pb_varint(&p, end, &key)) != NULL) {
            return err;
        }
        num = (int32_t) (key >> 3);
        wire = (int) (key & 7);
        if (wire == 4) {
            return "proto: LeaseKeepAliveRequest: wiretype end group for "
                   "non-group";
        }
        if (num <= 0) {
            /* sic: etcd prints the whole key as the wire type */
            snprintf(buf, size, "proto: LeaseKeepAliveRequest: illegal tag "
                     "%d (wire type %" PRIu64 ")", (int) num, key);
            return buf;
        }
        if (num == 1) {
            if (wire != 0) {
                snprintf(buf, size, "proto: wrong wireType = %d for field "
                         "ID", wire);
                return buf;
            }
            if ((err = bl_etcd_pb_varint(&p, end, &v)) != NULL) {
                return err;
            }
            *id = (int64_t) v;
            continue;
        }
        p = field;
        if ((err = bl_etcd_pb_skip(&p, end, buf, size, 0)) != NULL) {
            return err;
        }
    }
    return NULL;
}

static bl_etcd_ka_t *
bl_etcd_ka_entry(bl_etcd_kas_t *kas)
{
    bl_etcd_ka_t  *ka;

    ka = kas->free;
    if (ka) {
        kas->free = ka->next;
    } else {
        ka = bl_pcalloc(kas->call->pool, sizeof(bl_etcd_ka_t));
        if (ka == NULL) {
            return NULL;
        }
        ka->kas = kas;
        ka->pool = bl_pool_create(BL_ETCD_KA_POOL_SIZE);
        if (ka->pool == NULL) {
            return NULL;
        }
    }
    ka->next = NULL;
    ka->op = NULL;
    ka->ttl = 0;
    ka->revision = 0;
    ka->st = BL_ST_OK;
    ka->state = BL_ETCD_KA_QUEUED;
    return ka;
}

static void
bl_etcd_ka_message(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kas_t  *kas = call->data;
    bl_etcd_ka_t   *ka;
    const char     *err;
    int64_t         id;
    char            buf[128];

    if (kas == NULL) {
        kas = bl_etcd_ka_stream(call);
        if (kas == NULL) {
            bl_etcd_lease_oom(call);
            return;
        }
    }
    if (kas->ending || kas->bad) {
        return;
    }

    err = bl_etcd_ka_decode(msg, len, &id, buf, sizeof(buf));
    if (err) {
        /* etcd's Recv fails there: the renewals before it are answered */
        bl_log_error(BL_LOG_INFO, 0, "malformed LeaseKeepAliveRequest "
                     "from %.*s: %s", BL_STR_ARGS(call->peer), err);
        kas->bad = 1;
        kas->bad_status = BL_GRPC_INTERNAL;
        snprintf(kas->bad_text, sizeof(kas->bad_text), "grpc: failed to "
                 "unmarshal the received message %s", err);
        (void) bl_etcd_ka_flush(kas);
        return;
    }

    /*
     * etcd reads the next renewal only after it answered the last one;
     * a client that keeps sending without reading its answers is cut off
     * here instead of growing the stream without bound.
     */
    if (kas->queued >= BL_ETCD_KA_MAX_QUEUED
        || bl_grpc_pending(call) > BL_ETCD_KA_MAX_PENDING)
    {
        bl_log_error(BL_LOG_WARN, 0, "a LeaseKeepAlive stream has %zu "
                     "renewals and %zu bytes of answers waiting, ending "
                     "it, client: %.*s", kas->queued, bl_grpc_pending(call),
                     BL_STR_ARGS(call->peer));
        bl_etcd_ka_abort(kas, bl_etcd_err_too_many_requests.code,
                         bl_etcd_err_too_many_requests.message, BL_ST_OK);
        return;
    }

    ka = bl_etcd_ka_entry(kas);
    if (ka == NULL) {
        bl_etcd_ka_abort(kas, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory",
                         BL_ST_OK);
        return;
    }
    ka->id = id;
    if (kas->tail) {
        kas->tail->next = ka;
    } else {
        kas->head = ka;
    }
    kas->tail = ka;
    kas->queued++;
    if (kas->waiting == NULL) {
        kas->waiting = ka;
    }
    bl_etcd_ka_start(kas);
}

static void
bl_etcd_ka_half_close(bl_grpc_call_t *call)
{
    bl_etcd_kas_t  *kas = call->data;

    if (kas == NULL) {
        bl_grpc_finish(call, BL_GRPC_OK, NULL);
        return;
    }
    if (kas->ending) {
        return;
    }
    kas->half_closed = 1;
    (void) bl_etcd_ka_flush(kas);
}

static void
bl_etcd_ka_cancel(bl_grpc_call_t *call)
{
    if (call->data) {
        bl_etcd_ka_close(call->data);
    }
}

const bl_grpc_method_t  bl_etcd_lease_methods[] = {
    { "/etcdserverpb.Lease/LeaseGrant", BL_GRPC_UNARY, bl_etcd_lease_grant,
      NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Lease/LeaseRevoke", BL_GRPC_UNARY,
      bl_etcd_lease_revoke, NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Lease/LeaseKeepAlive", BL_GRPC_BIDI,
      bl_etcd_ka_message, bl_etcd_ka_half_close, bl_etcd_ka_cancel },
    { "/etcdserverpb.Lease/LeaseTimeToLive", BL_GRPC_UNARY,
      bl_etcd_lease_ttl, NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Lease/LeaseLeases", BL_GRPC_UNARY,
      bl_etcd_lease_list, NULL, bl_etcd_kv_cancel },
};

const size_t  bl_etcd_lease_nmethods = bl_nelems(bl_etcd_lease_methods);

/*
 * The expiry job, in the watcher process of every node: every tick, the
 * store revokes up to a batch of leases whose deadline (on the database's
 * clock) passed, each in its own revision, as LeaseRevoke would; row
 * locks let one node only take each lease.  A full batch means more are
 * due: the next one goes at once.  One batch in flight at a time.
 */

static struct {
    ev_timer           tick;
    bl_pool_t         *pool;
    bl_storage_op_t   *op;
    unsigned           failing:1;
    ev_timer           count_tick;
    bl_pool_t         *count_pool;
    bl_storage_op_t   *count_op;
} bl_etcd_expiry;

static void bl_etcd_expiry_run(void);

static void
bl_etcd_expiry_done(void *data, bl_storage_status_e st, void *result)
{
    bl_lease_expire_res_t  *res = result;
    int                     more;

    BL_UNUSED(data);
    bl_etcd_expiry.op = NULL;
    more = 0;

    if (st == BL_ST_OK) {
        if (bl_etcd_expiry.failing) {
            bl_etcd_expiry.failing = 0;
            bl_log_error(BL_LOG_NOTICE, 0, "lease expiry works again");
        }
        if (res->revoked) {
            bl_log_debug("expired %" PRId64 " leases%s", res->revoked,
                         res->more ? ", more are due" : "");
            bl_etcd_stats.leases_expired += (uint64_t) res->revoked;
        }
        more = res->more != 0;

    } else if (!bl_etcd_expiry.failing) {
        /* said once per outage; the tick keeps trying */
        bl_etcd_expiry.failing = 1;
        bl_log_error(BL_LOG_WARN, 0, "lease expiry failed: %s",
                     bl_storage_status_text(st));
    }

    bl_pool_destroy(bl_etcd_expiry.pool);
    bl_etcd_expiry.pool = NULL;

    if (more) {
        bl_etcd_expiry_run();
    }
}

static void
bl_etcd_expiry_run(void)
{
    bl_storage_status_e  st;

    if (bl_etcd_expiry.op) {
        return;
    }
    bl_etcd_expiry.pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (bl_etcd_expiry.pool == NULL) {
        return;                      /* logged; the next tick tries again */
    }
    st = bl_storage_lease_expire(bl_etcd_expiry.pool, BL_ETCD_EXPIRE_BATCH,
                                 bl_etcd_expiry_done, NULL,
                                 &bl_etcd_expiry.op);
    if (st != BL_ST_OK) {
        bl_etcd_expiry.op = NULL;
        bl_etcd_expiry_done(NULL, st, NULL);
    }
}

static void
bl_etcd_expiry_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);
    bl_etcd_expiry_run();
}

/*
 * The lease count for metrics rides on the same job: a failure only
 * leaves the last count in place (the expiry says when the store is out).
 */

static void
bl_etcd_lease_count_done(void *data, bl_storage_status_e st, void *result)
{
    bl_lease_count_res_t  *res = result;

    BL_UNUSED(data);
    bl_etcd_expiry.count_op = NULL;

    if (st == BL_ST_OK) {
        bl_etcd_stats.leases = res->count;
    }

    bl_pool_destroy(bl_etcd_expiry.count_pool);
    bl_etcd_expiry.count_pool = NULL;
}

static void
bl_etcd_lease_count_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_storage_status_e  st;

    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    if (bl_etcd_expiry.count_op) {
        return;
    }
    bl_etcd_expiry.count_pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (bl_etcd_expiry.count_pool == NULL) {
        return;
    }
    st = bl_storage_lease_count(bl_etcd_expiry.count_pool,
                                bl_etcd_lease_count_done, NULL,
                                &bl_etcd_expiry.count_op);
    if (st != BL_ST_OK) {
        bl_etcd_expiry.count_op = NULL;
        bl_etcd_lease_count_done(NULL, st, NULL);
    }
}

bl_int_t
bl_etcd_lease_expiry_start(void)
{
    ev_tstamp  every;

    memset(&bl_etcd_expiry, 0, sizeof(bl_etcd_expiry));
    every = (ev_tstamp) BL_ETCD_EXPIRE_MSEC / 1000.0;
    ev_timer_init(&bl_etcd_expiry.tick, bl_etcd_expiry_tick, every, every);
    ev_timer_start(bl_loop, &bl_etcd_expiry.tick);

    /* the first count soon after start, then every few seconds */
    every = (ev_tstamp) BL_ETCD_LEASE_COUNT_MSEC / 1000.0;
    ev_timer_init(&bl_etcd_expiry.count_tick, bl_etcd_lease_count_tick,
                  0.5, every);
    ev_timer_start(bl_loop, &bl_etcd_expiry.count_tick);
    return BL_OK;
}
