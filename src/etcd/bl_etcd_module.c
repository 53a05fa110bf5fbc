/*
 * The etcd service module: its directives (in `limits { }` and
 * `watch { }`, advertise_client_urls, defragment), the response header,
 * the error table, the registration of every service's methods with the
 * gRPC transport when a worker starts, and the node's jobs when the
 * watcher starts.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_grpc_server.h>
#include <bl_etcd.h>
#include <bl_http.h>
#include <bl_storage_maint.h>

/* etcd: raft overhead allowance between the request and gRPC limits */
#define BL_ETCD_GRPC_OVERHEAD  (512 * 1024)
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
/* etcd's --quota-backend-bytes default (DefaultQuotaBytes) */
#define BL_ETCD_QUOTA_DEFAULT     ((size_t) 2 * 1024 * 1024 * 1024)

static void *bl_etcd_create_conf(bl_cycle_t *cycle);
static char *bl_etcd_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_etcd_init_master(bl_cycle_t *cycle);
static bl_int_t bl_etcd_init_process(bl_cycle_t *cycle, bl_uint_t process);

/* etcd's AlarmType names, by value */
static const char *const  bl_etcd_alarm_names[] = {
    [BL_ALARM_NONE] = NULL,
    [BL_ALARM_NOSPACE] = "NOSPACE",
    [BL_ALARM_CORRUPT] = "CORRUPT",
};
static char *bl_etcd_set_watch(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_etcd_set_urls(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);

static const bl_conf_num_bounds_t  bl_etcd_txn_ops_bounds = { 1, 100000 };

static const bl_conf_enum_t  bl_etcd_defragment_modes[] = {
    { "vacuum", BL_ETCD_DEFRAG_VACUUM },
    { "vacuum_full", BL_ETCD_DEFRAG_FULL },
    { NULL, 0 }
};

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
    { "quota", BL_LIMITS_CONF | BL_CONF_TAKE1, bl_conf_set_size,
      offsetof(bl_etcd_conf_t, quota), NULL },
    { "advertise_client_urls", BL_MAIN_CONF | BL_CONF_1MORE,
      bl_etcd_set_urls, 0, NULL },
    { "defragment", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_enum,
      offsetof(bl_etcd_conf_t, defragment), bl_etcd_defragment_modes },
    bl_null_command
};

bl_module_t  bl_etcd_module = {
    "etcd", 0, bl_etcd_commands, bl_etcd_create_conf, bl_etcd_init_conf,
    bl_etcd_init_master, bl_etcd_init_process, NULL
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
const bl_etcd_error_t  bl_etcd_err_nospace = {
    BL_GRPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded" };

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
    ecf->quota = BL_CONF_UNSET_SIZE;
    ecf->defragment = BL_CONF_UNSET_UINT;
    return ecf;
}

static uint64_t bl_etcd_hash_name(const bl_str_t *name);

static char *
bl_etcd_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_etcd_conf_t  *ecf = conf;

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

    bl_conf_init_size_value(ecf->quota, BL_ETCD_QUOTA_DEFAULT);
    if (ecf->quota > (size_t) INT64_MAX) {
        bl_log_error(BL_LOG_EMERG, 0, "\"quota\" is too large");
        return BL_CONF_ERROR;
    }
    bl_conf_init_uint_value(ecf->defragment, BL_ETCD_DEFRAG_VACUUM);

    /* the core module (first) has set the name: the member's identity;
     * etcdctl shows a member with no name as "unstarted" */
    ecf->name = bl_core_conf(cycle)->name;
    if (ecf->name.len == 0) {
        bl_log_error(BL_LOG_EMERG, 0, "\"name\" must not be empty");
        return BL_CONF_ERROR;
    }
    ecf->member_id = bl_etcd_hash_name(&ecf->name);
    if (bl_etcd_cluster_init_conf(cycle, ecf) != BL_OK) {
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
bl_etcd_init_master(bl_cycle_t *cycle)
{
    BL_UNUSED(cycle);
    return bl_etcd_node_init_master();
}

static bl_int_t
bl_etcd_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    bl_etcd_conf_t  *ecf;

    if (process != BL_PROCESS_WORKER && process != BL_PROCESS_WATCHER) {
        return BL_OK;
    }
    ecf = bl_get_conf(cycle, bl_etcd_module);
    bl_etcd_current_conf = ecf;

    if (process == BL_PROCESS_WATCHER) {
        /* node-wide jobs: lease expiry (the store lets one node take
         * each), the heartbeat and the quota */
        if (bl_etcd_lease_expiry_start() != BL_OK) {
            return BL_ERROR;
        }
        return bl_etcd_node_start(ecf);
    }

    bl_grpc_set_limits(ecf->max_request_bytes + BL_ETCD_GRPC_OVERHEAD, 0);

    if (bl_grpc_register(bl_etcd_kv_methods, bl_etcd_kv_nmethods) != BL_OK
        || bl_grpc_register(bl_etcd_lease_methods, bl_etcd_lease_nmethods)
           != BL_OK
        || bl_grpc_register(bl_etcd_maintenance_methods,
                            bl_etcd_maintenance_nmethods) != BL_OK
        || bl_grpc_register(bl_etcd_cluster_methods,
                            bl_etcd_cluster_nmethods) != BL_OK
        || bl_grpc_register(bl_etcd_health_methods,
                            bl_etcd_health_nmethods) != BL_OK)
    {
        return BL_ERROR;
    }

    /* /health answers 503 while an alarm is raised, as etcd's does */
    bl_http_set_alarms(bl_etcd_alarms, bl_etcd_alarm_names,
                       bl_nelems(bl_etcd_alarm_names));

    return bl_grpc_register(bl_etcd_watch_methods, bl_etcd_watch_nmethods);
}

/*
 * advertise_client_urls URL ...: each http:// or https:// with a host,
 * as etcd's --advertise-client-urls (a path is refused: clients dial
 * host:port)
 */
static char *
bl_etcd_set_urls(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_etcd_conf_t  *ecf = conf;
    bl_str_t        *value, *u;
    size_t           i, skip;
    u_char          *host, *end;

    (void) cmd;
    if (ecf->client_urls != NULL) {
        return "is duplicate";
    }
    value = cf->args->elts;
    ecf->nclient_urls = cf->args->nelts - 1;
    ecf->client_urls = bl_palloc(cf->pool,
                                 ecf->nclient_urls * sizeof(bl_str_t));
    if (ecf->client_urls == NULL) {
        return BL_CONF_ERROR;
    }
    for (i = 0; i < ecf->nclient_urls; i++) {
        u = &value[i + 1];
        skip = u->len > 7 && strncmp((char *) u->data, "http://", 7) == 0
               ? 7
               : u->len > 8 && strncmp((char *) u->data, "https://", 8) == 0
                 ? 8 : 0;
        host = u->data + skip;
        end = u->data + u->len;
        if (skip == 0 || host == end || *host == ':' || *host == '/'
            || memchr(host, '/', (size_t) (end - host)) != NULL
            || memchr(u->data, ' ', u->len) != NULL)
        {
            bl_conf_error(cf, 0, "invalid URL \"%.*s\" in "
                          "\"advertise_client_urls\": it must be "
                          "http://HOST[:PORT] or https://HOST[:PORT]",
                          BL_STR_ARGS(u));
            return BL_CONF_ERROR;
        }
        ecf->client_urls[i] = *u;
    }
    return BL_CONF_OK;
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
    h->member_id = bl_etcd_current_conf ? bl_etcd_current_conf->member_id
                                        : 0;
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
