/*
 * etcdserverpb.Maintenance for nodes that share one PostgreSQL database
 * rather than a raft log (CONFORMANCE.md section 8, C80-C85):
 *
 *   Status      the emulated etcd version, the size of ballast's tables,
 *               this node as the leader (every node serves writes), the
 *               current revision as the raft indexes (it only grows), the
 *               constant raft term, the alarms as etcd words them
 *   Alarm       GET, ACTIVATE, DEACTIVATE of the cluster-wide alarms;
 *               NOSPACE refuses what etcd's capped applier refuses
 *               (bl_etcd_nospace), CORRUPT is kept and listed only: no
 *               check of ballast raises it
 *   Defragment  a VACUUM of ballast's tables (`defragment`)
 *   Hash        a hash of the current key-values
 *   HashKV      a hash of the key space at a revision, the same on every
 *               node, with etcd's compacted / future revision errors
 *   MoveLeader  to itself: done; to another member: refused (there is
 *               no leader to move); to no member: etcd's error
 *   Snapshot, Downgrade: refused with a message that names what to do
 *               instead
 *
 * Each costs one statement (Defragment: a connection of its own).
 */
#include <bl_core.h>
#include <bl_etcd_kv.h>
#include <bl_storage_maint.h>
#include <bl_version.h>

/*
 * What ballast does not do answers UNIMPLEMENTED: no state of the server
 * would make it work (FAILED_PRECONDITION says the caller could change
 * that state and retry), and clientv3 never retries it.
 */
static const bl_etcd_error_t  bl_etcd_err_snapshot = {
    BL_GRPC_UNIMPLEMENTED,
    "etcdserver: snapshot is not supported by ballast: back up the "
    "PostgreSQL database (pg_dump, pg_basebackup)" };
static const bl_etcd_error_t  bl_etcd_err_move_leader = {
    BL_GRPC_UNIMPLEMENTED,
    "etcdserver: move-leader is not supported by ballast: every node "
    "serves reads and writes, there is no leader to move" };
/* etcd's ErrGRPCBadLeaderTransferee: the target is no member */
static const bl_etcd_error_t  bl_etcd_err_bad_transferee = {
    BL_GRPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee" };
static const bl_etcd_error_t  bl_etcd_err_downgrade = {
    BL_GRPC_UNIMPLEMENTED,
    "etcdserver: downgrade is not supported by ballast: run the ballast "
    "release you want on every node" };

static const char  *bl_etcd_alarm_names[] = { "NONE", "NOSPACE", "CORRUPT" };


/* Status */

/* etcd's AlarmMember.String(): "memberID:N alarm:NAME " */
static char *
bl_etcd_alarm_text(bl_pool_t *pool, const bl_alarm_t *a)
{
    char  *s, num[16];
    size_t  n;

    n = 64;
    s = bl_pnalloc(pool, n);
    if (s == NULL) {
        return NULL;
    }
    if (a->alarm >= 0 && (size_t) a->alarm < bl_nelems(bl_etcd_alarm_names))
    {
        snprintf(s, n, "memberID:%" PRIu64 " alarm:%s ", a->member_id,
                 bl_etcd_alarm_names[a->alarm]);
    } else {
        snprintf(num, sizeof(num), "%d", (int) a->alarm);
        snprintf(s, n, "memberID:%" PRIu64 " alarm:%s ", a->member_id, num);
    }
    return s;
}

static void
bl_etcd_status_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t              *ctx = data;
    bl_grpc_call_t                *call = ctx->call;
    bl_status_res_t               *res = result;
    bl_etcd_conf_t                *ecf = bl_etcd_conf();
    int64_t                        total, in_use;
    size_t                         i;
    Etcdserverpb__StatusResponse   resp =
        ETCDSERVERPB__STATUS_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    resp.errors = bl_palloc(call->pool, (res->nalarms + 1) * sizeof(char *));
    if (resp.header == NULL || resp.errors == NULL) {
        bl_etcd_reply_built(call, NULL);
        return;
    }
    resp.version = (char *) BL_ETCD_VERSION;

    /* a table being rewritten (VACUUM FULL) is not measured: the last
     * figures the watcher got */
    total = res->db_size;
    in_use = res->db_size_in_use;
    if (total < 0) {
        bl_etcd_db_size(&total, &in_use);
    }
    resp.dbsize = bl_max(total, 0);
    resp.dbsizeinuse = bl_min(bl_max(in_use, 0), resp.dbsize);

    /* etcdctl shows IS LEADER as leader == header.member_id */
    resp.leader = ecf->member_id;
    resp.raftindex = (uint64_t) res->header_revision;
    resp.raftappliedindex = (uint64_t) res->header_revision;
    resp.raftterm = BL_ETCD_RAFT_TERM;
    resp.dbsizequota = (int64_t) ecf->quota;

    for (i = 0; i < res->nalarms; i++) {
        resp.errors[i] = bl_etcd_alarm_text(call->pool, &res->alarms[i]);
        if (resp.errors[i] == NULL) {
            bl_etcd_reply_built(call, NULL);
            return;
        }
    }
    resp.n_errors = res->nalarms;
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_status(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t             *ctx;
    Etcdserverpb__StatusRequest  *r;
    bl_storage_status_e           st;

    r = etcdserverpb__status_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "StatusRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_status(call->pool, bl_etcd_status_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}


/* Alarm */

static void
bl_etcd_alarm_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t              *ctx = data;
    bl_grpc_call_t                *call = ctx->call;
    Etcdserverpb__AlarmRequest    *r = ctx->request;
    bl_alarm_res_t                *res = result;
    Etcdserverpb__AlarmMember     *m;
    size_t                         i;
    Etcdserverpb__AlarmResponse    resp =
        ETCDSERVERPB__ALARM_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }

    /* this node's writes see the change at once, the others' with their
     * watcher's next heartbeat */
    if (r->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        bl_etcd_alarms_set(res->active);
    }

    /* etcd 3.4's answer has no header (the applier makes none) */
    resp.alarms = bl_palloc(call->pool, (res->nalarms + 1) * sizeof(m));
    if (resp.alarms == NULL) {
        bl_etcd_reply_built(call, NULL);
        return;
    }
    for (i = 0; i < res->nalarms; i++) {
        m = bl_palloc(call->pool, sizeof(*m));
        if (m == NULL) {
            bl_etcd_reply_built(call, NULL);
            return;
        }
        etcdserverpb__alarm_member__init(m);
        m->memberid = res->alarms[i].member_id;
        m->alarm = (Etcdserverpb__AlarmType) res->alarms[i].alarm;
        resp.alarms[i] = m;
    }
    resp.n_alarms = res->nalarms;
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_alarm(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t             *ctx;
    Etcdserverpb__AlarmRequest   *r;
    bl_storage_status_e           st;
    Etcdserverpb__AlarmResponse   empty =
        ETCDSERVERPB__ALARM_RESPONSE__INIT;

    r = etcdserverpb__alarm_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "AlarmRequest");
        return;
    }
    if ((unsigned) r->action > BL_ALARM_DEACTIVATE) {
        /* etcd's applier does nothing with an action it does not know */
        bl_etcd_reply(call, &empty.base);
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_alarm(call->pool, (int) r->action, r->memberid,
                          (int32_t) r->alarm, bl_etcd_alarm_done, ctx,
                          &ctx->op);
    bl_etcd_kv_started(ctx, st);
}


/* Defragment */

typedef struct {
    bl_grpc_call_t        *call;
    bl_storage_vacuum_t   *op;
} bl_etcd_defrag_ctx_t;

static void
bl_etcd_defrag_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_defrag_ctx_t             *ctx = data;
    Etcdserverpb__DefragmentResponse  resp =
        ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;

    BL_UNUSED(result);
    ctx->op = NULL;
    if (st != BL_ST_OK) {
        bl_etcd_fail_storage(ctx->call, st);
        return;
    }
    /* etcd answers an empty message, no header */
    bl_etcd_reply(ctx->call, &resp.base);
}

static void
bl_etcd_defrag_cancel(bl_grpc_call_t *call)
{
    bl_etcd_defrag_ctx_t  *ctx = call->data;

    if (ctx != NULL && ctx->op != NULL) {
        bl_storage_vacuum_cancel(ctx->op);
        ctx->op = NULL;
    }
}

static void
bl_etcd_defrag(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_defrag_ctx_t             *ctx;
    Etcdserverpb__DefragmentRequest  *r;
    bl_storage_status_e               st;

    r = etcdserverpb__defragment_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "DefragmentRequest");
        return;
    }
    ctx = bl_pcalloc(call->pool, sizeof(bl_etcd_defrag_ctx_t));
    if (ctx == NULL) {
        bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ctx->call = call;
    call->data = ctx;
    st = bl_storage_vacuum(bl_etcd_conf()->defragment == BL_ETCD_DEFRAG_FULL,
                           bl_etcd_defrag_done, ctx, &ctx->op);
    if (st != BL_ST_OK) {
        ctx->op = NULL;
        bl_etcd_fail_storage(call, st);
    }
}


/* Hash and HashKV */

static void
bl_etcd_hash_kv_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t               *ctx = data;
    bl_grpc_call_t                 *call = ctx->call;
    bl_hash_res_t                  *res = result;
    Etcdserverpb__HashKVResponse    resp =
        ETCDSERVERPB__HASH_KVRESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    resp.hash = res->hash;
    resp.compact_revision = res->compact_revision;
    resp.hash_revision = res->hash_revision;
    bl_etcd_reply_built(call, resp.header ? &resp.base : NULL);
}

static void
bl_etcd_hash_kv(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t             *ctx;
    Etcdserverpb__HashKVRequest  *r;
    bl_storage_status_e           st;

    r = etcdserverpb__hash_kvrequest__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "HashKVRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_hash_kv(call->pool, r->revision, bl_etcd_hash_kv_done,
                            ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

static void
bl_etcd_hash_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t             *ctx = data;
    bl_grpc_call_t               *call = ctx->call;
    bl_hash_res_t                *res = result;
    Etcdserverpb__HashResponse    resp = ETCDSERVERPB__HASH_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    resp.header = bl_etcd_header(call->pool, res->header_revision);
    resp.hash = res->hash;
    bl_etcd_reply_built(call, resp.header ? &resp.base : NULL);
}

static void
bl_etcd_hash(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t           *ctx;
    Etcdserverpb__HashRequest  *r;
    bl_storage_status_e         st;

    r = etcdserverpb__hash_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "HashRequest");
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_hash(call->pool, bl_etcd_hash_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}


/* Snapshot, MoveLeader, Downgrade */

static void
bl_etcd_snapshot(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    BL_UNUSED(msg);
    BL_UNUSED(len);
    bl_etcd_fail(call, &bl_etcd_err_snapshot);
}

/* another member: nothing to move; not a member: etcd's answer */
static void
bl_etcd_move_leader_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                 *ctx = data;
    Etcdserverpb__MoveLeaderRequest  *r = ctx->request;
    bl_members_res_t                 *res = result;
    size_t                            i;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }
    for (i = 0; i < res->nmembers; i++) {
        if (res->members[i].id == r->targetid) {
            bl_etcd_fail(ctx->call, &bl_etcd_err_move_leader);
            return;
        }
    }
    bl_etcd_fail(ctx->call, &bl_etcd_err_bad_transferee);
}

static void
bl_etcd_move_leader(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                  *ctx;
    Etcdserverpb__MoveLeaderRequest   *r;
    bl_storage_status_e                st;
    Etcdserverpb__MoveLeaderResponse   resp =
        ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;

    r = etcdserverpb__move_leader_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "MoveLeaderRequest");
        return;
    }
    /* to the leader it already is: etcd has nothing to do either */
    if (r->targetid == bl_etcd_conf()->member_id) {
        bl_etcd_reply(call, &resp.base);
        return;
    }
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_members(call->pool, BL_ETCD_MEMBER_LIVE_SEC,
                            bl_etcd_move_leader_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

static void
bl_etcd_downgrade(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    BL_UNUSED(msg);
    BL_UNUSED(len);
    bl_etcd_fail(call, &bl_etcd_err_downgrade);
}

const bl_grpc_method_t  bl_etcd_maintenance_methods[] = {
    { "/etcdserverpb.Maintenance/Alarm", BL_GRPC_UNARY, bl_etcd_alarm, NULL,
      bl_etcd_kv_cancel },
    { "/etcdserverpb.Maintenance/Status", BL_GRPC_UNARY, bl_etcd_status,
      NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Maintenance/Defragment", BL_GRPC_UNARY, bl_etcd_defrag,
      NULL, bl_etcd_defrag_cancel },
    { "/etcdserverpb.Maintenance/Hash", BL_GRPC_UNARY, bl_etcd_hash, NULL,
      bl_etcd_kv_cancel },
    { "/etcdserverpb.Maintenance/HashKV", BL_GRPC_UNARY, bl_etcd_hash_kv,
      NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Maintenance/Snapshot", BL_GRPC_SERVER_STREAM,
      bl_etcd_snapshot, NULL, NULL },
    { "/etcdserverpb.Maintenance/MoveLeader", BL_GRPC_UNARY,
      bl_etcd_move_leader, NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Maintenance/Downgrade", BL_GRPC_UNARY,
      bl_etcd_downgrade, NULL, NULL },
};

const size_t  bl_etcd_maintenance_nmethods =
    bl_nelems(bl_etcd_maintenance_methods);
