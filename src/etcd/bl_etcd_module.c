/*
 * The etcd service module: its `limits { }` and `watch { }` directives,
 * the response header, the error table, and the registration of every
 * service's methods with the gRPC transport when a worker starts.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_grpc_server.h>
#include <bl_etcd.h>

/* etcd: raft overhead allowance between the request and gRPC limits */
#define BL_ETCD_GRPC_OVERHEAD  (512 * 1024)
/* stable and never decreasing: Patroni switches nodes if it drops */
#define BL_ETCD_RAFT_TERM      1
/* etcd's --experimental-watch-progress-notify-interval: default, minimum */
#define BL_ETCD_PROGRESS_DEFAULT  (10 * 60 * 1000)
#define BL_ETCD_PROGRESS_MIN      100
/*
 * What a Watch stream may have queued for a slow reader before its
 * watches are paused (they catch up from the log once it drained): room
 * for one event of the largest value with its prev_kv (2 x 1.5 MiB by
 * default) and then some, so that a healthy stream never pauses.
 */
#define BL_ETCD_WATCH_SEND_BUFFER (4 * 1024 * 1024)

static void *bl_etcd_create_conf(bl_cycle_t *cycle);
static char *bl_etcd_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_etcd_init_process(bl_cycle_t *cycle, bl_uint_t process);
static char *bl_etcd_set_watch(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);

static const bl_conf_num_bounds_t  bl_etcd_txn_ops_bounds = { 1, 100000 };

static const bl_command_t  bl_etcd_commands[] = {
    { "max_request_bytes", BL_LIMITS_CONF | BL_CONF_TAKE1, bl_conf_set_size,
      offsetof(bl_etcd_conf_t, max_request_bytes), NULL },
    { "max_txn_ops", BL_LIMITS_CONF | BL_CONF_TAKE1, bl_conf_set_num,
      offsetof(bl_etcd_conf_t, max_txn_ops), &bl_etcd_txn_ops_bounds },
    { "watch", BL_MAIN_CONF | BL_CONF_BLOCK | BL_CONF_NOARGS,
      bl_etcd_set_watch, 0, NULL },
    { "progress_notify_interval", BL_WATCH_CONF | BL_CONF_TAKE1,
      bl_conf_set_msec, offsetof(bl_etcd_conf_t, progress_interval), NULL },
    { "send_buffer", BL_WATCH_CONF | BL_CONF_TAKE1, bl_conf_set_size,
      offsetof(bl_etcd_conf_t, watch_send_buffer), NULL },
    bl_null_command
};

bl_module_t  bl_etcd_module = {
    "etcd", 0, bl_etcd_commands, bl_etcd_create_conf, bl_etcd_init_conf,
    NULL, bl_etcd_init_process, NULL
};

const bl_etcd_error_t  bl_etcd_err_empty_key = {
    BL_GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided" };
const bl_etcd_error_t  bl_etcd_err_key_not_found = {
    BL_GRPC_INVALID_ARGUMENT, "etcdserver: key not found" };
const bl_etcd_error_t  bl_etcd_err_value_provided = {
    BL_GRPC_INVALID_ARGUMENT, "etcdserver: value is provided" };
const bl_etcd_error_t  bl_etcd_err_lease_provided = {
    BL_GRPC_INVALID_ARGUMENT, "etcdserver: lease is provided" };
const bl_etcd_error_t  bl_etcd_err_request_too_large = {
    BL_GRPC_INVALID_ARGUMENT, "etcdserver: request is too large" };

static const bl_etcd_error_t  bl_etcd_storage_errors[] = {
    [BL_ST_OK] = { BL_GRPC_OK, NULL },
    /* Unavailable: clients retry it (immutable RPCs) or fail over */
    [BL_ST_UNAVAILABLE] = { BL_GRPC_UNAVAILABLE,
                            "etcdserver: storage unavailable" },
    [BL_ST_COMPACTED] = { BL_GRPC_OUT_OF_RANGE,
                "etcdserver: mvcc: required revision has been compacted" },
    [BL_ST_FUTURE_REV] = { BL_GRPC_OUT_OF_RANGE,
                "etcdserver: mvcc: required revision is a future revision" },
    [BL_ST_KEY_NOT_FOUND] = { BL_GRPC_INVALID_ARGUMENT,
                              "etcdserver: key not found" },
    [BL_ST_LEASE_NOT_FOUND] = { BL_GRPC_NOT_FOUND,
                                "etcdserver: requested lease not found" },
    [BL_ST_LEASE_EXISTS] = { BL_GRPC_FAILED_PRECONDITION,
                             "etcdserver: lease already exists" },
    [BL_ST_TOO_MANY_REQUESTS] = { BL_GRPC_RESOURCE_EXHAUSTED,
                                  "etcdserver: too many requests" },
    [BL_ST_INTERNAL] = { BL_GRPC_INTERNAL, "etcdserver: internal error" },
};

static bl_etcd_conf_t  *bl_etcd_current_conf;
static uint64_t         bl_etcd_member_id;

bl_etcd_conf_t *
bl_etcd_conf(void)
{
    return bl_etcd_current_conf;
}

static void *
bl_etcd_create_conf(bl_cycle_t *cycle)
{
    bl_etcd_conf_t  *ecf;

    ecf = bl_pcalloc(cycle->pool, sizeof(bl_etcd_conf_t));
    if (ecf == NULL) {
        return NULL;
    }
    ecf->max_request_bytes = BL_CONF_UNSET_SIZE;
    ecf->max_txn_ops = BL_CONF_UNSET;
    ecf->progress_interval = BL_CONF_UNSET_MSEC;
    ecf->watch_send_buffer = BL_CONF_UNSET_SIZE;
    return ecf;
}

static char *
bl_etcd_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_etcd_conf_t  *ecf = conf;

    (void) cycle;
    /* etcd's defaults: 1.5 MiB requests, 128 ops per txn */
    bl_conf_init_size_value(ecf->max_request_bytes, 1536 * 1024);
    bl_conf_init_value(ecf->max_txn_ops, 128);
    if (ecf->max_request_bytes > 64 * 1024 * 1024) {
        bl_log_error(BL_LOG_EMERG, 0, "\"max_request_bytes\" must be at "
                     "most 64m");
        return BL_CONF_ERROR;
    }

    bl_conf_init_msec_value(ecf->progress_interval,
                            BL_ETCD_PROGRESS_DEFAULT);
    if (ecf->progress_interval <= 0) {
        bl_log_error(BL_LOG_EMERG, 0, "\"progress_notify_interval\" must "
                     "be at least %dms", BL_ETCD_PROGRESS_MIN);
        return BL_CONF_ERROR;
    }
    if (ecf->progress_interval < BL_ETCD_PROGRESS_MIN) {
        /* etcd raises it too, with a warning */
        bl_log_error(BL_LOG_WARN, 0, "\"progress_notify_interval\" raised "
                     "to the minimum of %dms", BL_ETCD_PROGRESS_MIN);
        ecf->progress_interval = BL_ETCD_PROGRESS_MIN;
    }
    bl_conf_init_size_value(ecf->watch_send_buffer,
                            BL_ETCD_WATCH_SEND_BUFFER);
    if (ecf->watch_send_buffer == 0) {
        bl_log_error(BL_LOG_EMERG, 0, "\"send_buffer\" must not be 0");
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

static char *
bl_etcd_set_watch(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    (void) cmd;
    (void) conf;
    return bl_conf_parse_block(cf, BL_WATCH_CONF, NULL);
}

/* FNV-1a of the node name: stable across restarts, non-zero */
static uint64_t
bl_etcd_hash_name(const bl_str_t *name)
{
    uint64_t  h;
    size_t    i;

    h = 14695981039346656037ULL;
    for (i = 0; i < name->len; i++) {
        h ^= name->data[i];
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

static bl_int_t
bl_etcd_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    bl_etcd_conf_t  *ecf;

    if (process == BL_PROCESS_WATCHER) {
        /* node-wide jobs: lease expiry (the store lets one node take each) */
        return bl_etcd_lease_expiry_start();
    }
    if (process != BL_PROCESS_WORKER) {
        return BL_OK;
    }
    ecf = bl_get_conf(cycle, bl_etcd_module);
    bl_etcd_current_conf = ecf;
    bl_etcd_member_id = bl_etcd_hash_name(&bl_core_conf(cycle)->name);

    bl_grpc_set_limits(ecf->max_request_bytes + BL_ETCD_GRPC_OVERHEAD, 0);

    if (bl_grpc_register(bl_etcd_kv_methods, bl_etcd_kv_nmethods) != BL_OK) {
        return BL_ERROR;
    }
    if (bl_grpc_register(bl_etcd_lease_methods, bl_etcd_lease_nmethods)
        != BL_OK)
    {
        return BL_ERROR;
    }
    return bl_grpc_register(bl_etcd_watch_methods, bl_etcd_watch_nmethods);
}

Etcdserverpb__ResponseHeader *
bl_etcd_header(bl_pool_t *pool, int64_t revision)
{
    Etcdserverpb__ResponseHeader  *h;

    h = bl_palloc(pool, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    etcdserverpb__response_header__init(h);
    h->cluster_id = bl_storage_cluster_id();
    h->member_id = bl_etcd_member_id;
    h->revision = revision;
    h->raft_term = BL_ETCD_RAFT_TERM;
    return h;
}

void
bl_etcd_fail(bl_grpc_call_t *call, const bl_etcd_error_t *err)
{
    bl_grpc_finish(call, err->code, err->message);
}

void
bl_etcd_fail_storage(bl_grpc_call_t *call, bl_storage_status_e st)
{
    if ((size_t) st >= bl_nelems(bl_etcd_storage_errors) || st == BL_ST_OK) {
        st = BL_ST_INTERNAL;
    }
    bl_etcd_fail(call, &bl_etcd_storage_errors[st]);
}

void
bl_etcd_fail_unpack(bl_grpc_call_t *call, const char *what)
{
    char  msg[128];

    bl_log_error(BL_LOG_INFO, 0, "malformed %s from %.*s", what,
                 BL_STR_ARGS(call->peer));
    snprintf(msg, sizeof(msg), "grpc: error unmarshalling request: "
             "malformed %s", what);
    bl_grpc_finish(call, BL_GRPC_INTERNAL, msg);
}

void
bl_etcd_reply(bl_grpc_call_t *call, const ProtobufCMessage *msg)
{
    if (bl_grpc_send(call, msg) != BL_OK) {
        return;                 /* being cancelled: on_cancel follows */
    }
    bl_grpc_finish(call, BL_GRPC_OK, NULL);
}
