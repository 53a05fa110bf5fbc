/*
 * The Prometheus text (format 0.0.4) of the metrics area: every slot
 * summed, the gauges of the processes that live, the master's counters
 * (bl_http_metrics_shm.h has the layout).
 *
 * The gRPC metrics are the ones grpc-go's Prometheus middleware exports
 * (what etcd exports), with the same names, labels and buckets.  A few
 * of etcd's own names are exported where their meaning carries over:
 * etcd_server_has_leader and etcd_server_is_leader (every ballast node
 * commits its own writes, so either is 1 exactly while this worker
 * reaches the database), etcd_debugging_mvcc_current_revision and
 * _compact_revision (the store's, as the watcher last saw them).  The
 * rest is ours, under ballast_.
 */
#include <bl_core.h>
#include <bl_grpc.h>
#include <bl_storage.h>
#include <bl_watch.h>
#include <bl_http_metrics.h>
#include <bl_http_metrics_shm.h>


#define BL_METRICS_WATCH_PATH  "/etcdserverpb.Watch/Watch"


/* a method summed over every slot, for a scrape */
typedef struct {
    const char         *path;
    uint32_t            flags;
    uint64_t            started;
    uint64_t            msg_received;
    uint64_t            msg_sent;
    uint64_t            handled[BL_METRICS_CODES];
    uint64_t            buckets[BL_METRICS_BUCKETS];
    uint64_t            sum_usec;
    uint64_t            active;         /* of live slots */
    char                labels[2 * BL_METRICS_PATH + 64];
} bl_metrics_sum_t;

/* the rest of the node, summed */
typedef struct {
    uint64_t            counters[BL_METRICS_COUNTERS];
    uint64_t            conns;
    uint64_t            streams;
    uint64_t            http_conns;
    uint64_t            workers;
    uint64_t            watchers;
    uint64_t            pool[2][BL_METRICS_POOL_STATES];  /* worker, watcher */
    uint64_t            watcher_claim;  /* the newest live watcher's */
    int64_t             database_rev;   /* its values; 0: no watcher */
    int64_t             leases;         /* -1: not counted yet */
} bl_metrics_node_t;


static void bl_metrics_collect_slot(bl_metrics_slot_t *slot,
    bl_metrics_node_t *node, bl_metrics_sum_t *sums, size_t *nsum);
static bl_int_t bl_metrics_grpc(bl_buf_t *out, bl_metrics_sum_t *sums,
    size_t nsum);
static bl_int_t bl_metrics_node(bl_buf_t *out, bl_metrics_shm_t *shm,
    bl_metrics_node_t *node, bl_metrics_sum_t *sums, size_t nsum);
static bl_int_t bl_metrics_gauge(bl_buf_t *out, const char *name,
    const char *help, int64_t value);
static bl_int_t bl_metrics_printf(bl_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bl_metrics_labels(bl_metrics_sum_t *s);
static int bl_metrics_cmp(const void *a, const void *b);


static const char  *bl_metrics_le[BL_METRICS_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1", "2.5", "5", "10", "+Inf"
};

/* grpc-go's codes.Code strings */
static const char  *bl_metrics_codes[BL_METRICS_CODES] = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
    "Internal", "Unavailable", "DataLoss", "Unauthenticated"
};

static const struct {
    const char  *name;
    const char  *help;
} bl_metrics_counters[BL_METRICS_COUNTERS] = {
    { "ballast_storage_round_trips_total",
      "Round trips to the database made by the workers: queries and "
      "pipelines answered." },
    { "ballast_storage_statements_total",
      "Statements the workers sent to the database inside those round "
      "trips." },
    { "ballast_storage_write_batches_total",
      "Database transactions that carried writes (group commits)." },
    { "ballast_storage_writes_total",
      "Write requests committed." },
    { "ballast_storage_errors_total",
      "Failed database connections or queries of the workers." },
    { "ballast_storage_reconnects_total",
      "Connections of the workers to the database made again after a "
      "failure." },
    { "ballast_watch_catchup_reads_total",
      "Reads of the revision log (pages of up to 1000 revisions) for "
      "watchers that started before what the event ring holds, or fell "
      "behind it." },
    { "ballast_watch_events_sent_total",
      "Events sent in Watch responses." },
    { "ballast_lease_renewals_total",
      "LeaseKeepAlive requests that renewed a lease." },
    { "ballast_leases_expired_total",
      "Leases this node's watcher revoked because their TTL ran out." },
};

static const char  *bl_metrics_pool_states[BL_METRICS_POOL_STATES] = {
    "busy", "idle", "connecting", "broken"
};

static const char  *bl_metrics_respawn_names[3] = {
    "worker", "watcher", "postgres"
};


bl_int_t
bl_metrics_render(bl_buf_t *out)
{
    size_t              nsum, i;
    bl_int_t            rc;
    bl_metrics_shm_t   *shm;
    bl_metrics_sum_t   *sums;
    bl_metrics_node_t   node;

    shm = bl_metrics_shm;

    if (shm == NULL) {
        return bl_metrics_printf(out, "# no metrics area\n");
    }

    /* this worker's own values are current, whatever its last loop */
    bl_metrics_publish();

    sums = bl_calloc(2 * BL_METRICS_METHODS * sizeof(bl_metrics_sum_t));
    if (sums == NULL) {
        return BL_ERROR;
    }

    nsum = 0;
    memset(&node, 0, sizeof(bl_metrics_node_t));
    node.leases = -1;

    for (i = 0; i < shm->nslots; i++) {
        bl_metrics_collect_slot(bl_metrics_slot_at(shm, i), &node, sums,
                                &nsum);
    }

    qsort(sums, nsum, sizeof(bl_metrics_sum_t), bl_metrics_cmp);

    for (i = 0; i < nsum; i++) {
        bl_metrics_labels(&sums[i]);
    }

    rc = bl_metrics_grpc(out, sums, nsum);

    if (rc == BL_OK) {
        rc = bl_metrics_node(out, shm, &node, sums, nsum);
    }

    free(sums);

    return rc;
}


static void
bl_metrics_collect_slot(bl_metrics_slot_t *slot, bl_metrics_node_t *node,
    bl_metrics_sum_t *sums, size_t *nsum)
{
    int                   alive, found;
    size_t                j, k;
    uint32_t              n, kind;
    uint64_t              claim;
    bl_metrics_sum_t     *s;
    bl_metrics_method_t  *e;

    if (!bl_metrics_get(&slot->used)) {
        return;
    }

    alive = bl_metrics_alive(atomic_load(&slot->pid));
    kind = atomic_load(&slot->kind);

    if (alive && kind == BL_PROCESS_WORKER) {
        node->workers++;
        node->conns += bl_metrics_get(&slot->grpc_connections);
        node->streams += bl_metrics_get(&slot->grpc_streams);
        node->http_conns += bl_metrics_get(&slot->http_connections);
        node->watchers += bl_metrics_get(&slot->watchers);
    }

    if (alive && (kind == BL_PROCESS_WORKER || kind == BL_PROCESS_WATCHER)) {
        for (k = 0; k < BL_METRICS_POOL_STATES; k++) {
            node->pool[kind == BL_PROCESS_WATCHER][k]
                += bl_metrics_get(&slot->pool[k]);
        }
    }

    /* two watchers live together during a reload: the new one speaks */
    claim = bl_metrics_get(&slot->claim);

    if (alive && kind == BL_PROCESS_WATCHER && claim > node->watcher_claim) {
        node->watcher_claim = claim;
        node->database_rev = bl_metrics_get(&slot->database_rev);
        node->leases = bl_metrics_get(&slot->leases);
    }

    for (k = 0; k < BL_METRICS_COUNTERS; k++) {
        node->counters[k] += bl_metrics_get(&slot->counters[k]);
    }

    n = atomic_load_explicit(&slot->nmethods, memory_order_acquire);

    for (j = 0; j < n && j < BL_METRICS_METHODS; j++) {
        e = &slot->methods[j];
        found = 0;

        for (k = 0; k < *nsum; k++) {
            if (strcmp(sums[k].path, e->path) == 0) {
                found = 1;
                break;
            }
        }

        if (!found) {
            if (*nsum == 2 * BL_METRICS_METHODS) {
                continue;
            }

            k = (*nsum)++;
            sums[k].path = e->path;
            sums[k].flags = e->flags;
        }

        s = &sums[k];
        s->started += bl_metrics_get(&e->started);
        s->msg_received += bl_metrics_get(&e->msg_received);
        s->msg_sent += bl_metrics_get(&e->msg_sent);
        s->sum_usec += bl_metrics_get(&e->sum_usec);

        if (alive) {
            s->active += bl_metrics_get(&e->active);
        }

        for (k = 0; k < BL_METRICS_CODES; k++) {
            s->handled[k] += bl_metrics_get(&e->handled[k]);
        }

        for (k = 0; k < BL_METRICS_BUCKETS; k++) {
            s->buckets[k] += bl_metrics_get(&e->buckets[k]);
        }
    }
}


/* grpc-go's families; each family's samples together, as the format
 * wants */

static bl_int_t
bl_metrics_grpc(bl_buf_t *out, bl_metrics_sum_t *sums, size_t nsum)
{
    size_t    i, k;
    bl_int_t  rc;
    uint64_t  total, cum;

    rc = bl_metrics_printf(out,
             "# HELP grpc_server_started_total Total number of RPCs started "
             "on the server.\n"
             "# TYPE grpc_server_started_total counter\n");

    for (i = 0; i < nsum && rc == BL_OK; i++) {
        rc = bl_metrics_printf(out, "grpc_server_started_total{%s} %" PRIu64
                               "\n", sums[i].labels, sums[i].started);
    }

    if (rc == BL_OK) {
        rc = bl_metrics_printf(out,
             "# HELP grpc_server_handled_total Total number of RPCs "
             "completed on the server, regardless of success or failure.\n"
             "# TYPE grpc_server_handled_total counter\n");
    }

    for (i = 0; i < nsum && rc == BL_OK; i++) {
        for (k = 0; k < BL_METRICS_CODES && rc == BL_OK; k++) {
            if (sums[i].handled[k] != 0) {
                rc = bl_metrics_printf(out, "grpc_server_handled_total{"
                                       "grpc_code=\"%s\",%s} %" PRIu64 "\n",
                                       bl_metrics_codes[k], sums[i].labels,
                                       sums[i].handled[k]);
            }
        }
    }

    if (rc == BL_OK) {
        rc = bl_metrics_printf(out,
             "# HELP grpc_server_handling_seconds Histogram of response "
             "latency (seconds) of gRPC that had been application-level "
             "handled by the server.\n"
             "# TYPE grpc_server_handling_seconds histogram\n");
    }

    for (i = 0; i < nsum && rc == BL_OK; i++) {
        total = 0;

        for (k = 0; k < BL_METRICS_BUCKETS; k++) {
            total += sums[i].buckets[k];
        }

        if (total == 0) {
            continue;
        }

        cum = 0;

        /* +Inf is the count: the same sum, so they always agree */
        for (k = 0; k < BL_METRICS_BUCKETS && rc == BL_OK; k++) {
            cum += sums[i].buckets[k];
            rc = bl_metrics_printf(out, "grpc_server_handling_seconds_bucket{"
                                   "%s,le=\"%s\"} %" PRIu64 "\n",
                                   sums[i].labels, bl_metrics_le[k], cum);
        }

        if (rc == BL_OK) {
            rc = bl_metrics_printf(out, "grpc_server_handling_seconds_sum{%s}"
                                   " %.6f\n"
                                   "grpc_server_handling_seconds_count{%s} %"
                                   PRIu64 "\n", sums[i].labels,
                                   (double) sums[i].sum_usec / 1e6,
                                   sums[i].labels, total);
        }
    }

    if (rc == BL_OK) {
        rc = bl_metrics_printf(out,
             "# HELP grpc_server_msg_received_total Total number of RPC "
             "stream messages received on the server.\n"
             "# TYPE grpc_server_msg_received_total counter\n");
    }

    for (i = 0; i < nsum && rc == BL_OK; i++) {
        rc = bl_metrics_printf(out, "grpc_server_msg_received_total{%s} %"
                               PRIu64 "\n", sums[i].labels,
                               sums[i].msg_received);
    }

    if (rc == BL_OK) {
        rc = bl_metrics_printf(out,
             "# HELP grpc_server_msg_sent_total Total number of gRPC stream "
             "messages sent by the server.\n"
             "# TYPE grpc_server_msg_sent_total counter\n");
    }

    for (i = 0; i < nsum && rc == BL_OK; i++) {
        rc = bl_metrics_printf(out, "grpc_server_msg_sent_total{%s} %" PRIu64
                               "\n", sums[i].labels, sums[i].msg_sent);
    }

    return rc;
}


/* the node's own families */

static bl_int_t
bl_metrics_node(bl_buf_t *out, bl_metrics_shm_t *shm,
    bl_metrics_node_t *node, bl_metrics_sum_t *sums, size_t nsum)
{
    size_t    i, k, p;
    int64_t   ring_rev, compact_rev, lag, up;
    bl_int_t  rc;
    uint64_t  watch_streams;

    watch_streams = 0;

    for (i = 0; i < nsum; i++) {
        if (strcmp(sums[i].path, BL_METRICS_WATCH_PATH) == 0) {
            watch_streams = sums[i].active;
        }
    }

    rc = bl_metrics_printf(out,
             "# HELP ballast_grpc_connections Open gRPC client connections "
             "of this node.\n"
             "# TYPE ballast_grpc_connections gauge\n"
             "ballast_grpc_connections %" PRIu64 "\n"
             "# HELP ballast_grpc_streams Open HTTP/2 streams (calls) of "
             "this node.\n"
             "# TYPE ballast_grpc_streams gauge\n"
             "ballast_grpc_streams %" PRIu64 "\n"
             "# HELP ballast_http_connections Open HTTP/1.x connections "
             "(health, metrics) of this node.\n"
             "# TYPE ballast_http_connections gauge\n"
             "ballast_http_connections %" PRIu64 "\n"
             "# HELP ballast_workers Worker processes counted in these "
             "metrics.\n"
             "# TYPE ballast_workers gauge\n"
             "ballast_workers %" PRIu64 "\n"
             "# HELP ballast_watch_streams Open Watch streams of this "
             "node.\n"
             "# TYPE ballast_watch_streams gauge\n"
             "ballast_watch_streams %" PRIu64 "\n"
             "# HELP ballast_watchers Watchers of this node's Watch "
             "streams.\n"
             "# TYPE ballast_watchers gauge\n"
             "ballast_watchers %" PRIu64 "\n",
             node->conns, node->streams, node->http_conns, node->workers,
             watch_streams, node->watchers);

    for (k = 0; k < BL_METRICS_COUNTERS && rc == BL_OK; k++) {
        rc = bl_metrics_printf(out, "# HELP %s %s\n# TYPE %s counter\n"
                               "%s %" PRIu64 "\n",
                               bl_metrics_counters[k].name,
                               bl_metrics_counters[k].help,
                               bl_metrics_counters[k].name,
                               bl_metrics_counters[k].name,
                               node->counters[k]);
    }

    if (rc == BL_OK) {
        rc = bl_metrics_printf(out,
             "# HELP ballast_storage_pool_connections Database connections "
             "of the workers' and the watcher's pools, by state.\n"
             "# TYPE ballast_storage_pool_connections gauge\n");
    }

    for (p = 0; p < 2 && rc == BL_OK; p++) {
        for (k = 0; k < BL_METRICS_POOL_STATES && rc == BL_OK; k++) {
            rc = bl_metrics_printf(out, "ballast_storage_pool_connections{"
                                   "process=\"%s\",state=\"%s\"} %" PRIu64
                                   "\n", p ? "watcher" : "worker",
                                   bl_metrics_pool_states[k],
                                   node->pool[p][k]);
        }
    }

    /* the store's revisions: once the watcher has read the store */
    ring_rev = bl_watch_store_revision();
    compact_rev = bl_watch_compact_revision();

    if (rc == BL_OK && ring_rev > 0) {
        rc = bl_metrics_gauge(out, "ballast_ring_revision",
                              "The last revision the watcher put in the "
                              "event ring.", ring_rev);
    }

    if (rc == BL_OK && node->database_rev > 0) {
        lag = bl_max(node->database_rev - ring_rev, 0);

        rc = bl_metrics_gauge(out, "ballast_database_revision",
                              "The latest revision the watcher knows the "
                              "database has (commit notifications, its "
                              "reads).", node->database_rev);

        if (rc == BL_OK) {
            rc = bl_metrics_gauge(out, "ballast_ring_lag_revisions",
                                  "Revisions the database has that the "
                                  "event ring does not have yet.", lag);
        }

        if (rc == BL_OK) {
            rc = bl_metrics_gauge(out, "etcd_debugging_mvcc_current_revision",
                                  "The current revision of store.",
                                  node->database_rev);
        }
    }

    if (rc == BL_OK && ring_rev > 0) {
        rc = bl_metrics_gauge(out, "ballast_compact_revision",
                              "The database's compact revision as the "
                              "watcher last read it (-1: never compacted).",
                              compact_rev);

        if (rc == BL_OK) {
            rc = bl_metrics_gauge(out, "etcd_debugging_mvcc_compact_revision",
                                  "The revision of the last compaction in "
                                  "store.", compact_rev);
        }
    }

    if (rc == BL_OK && node->leases >= 0) {
        rc = bl_metrics_gauge(out, "ballast_leases",
                              "Leases in the database, counted by the "
                              "watcher every 5 seconds.", node->leases);
    }

    up = (bl_storage_available() == BL_OK);

    if (rc == BL_OK) {
        rc = bl_metrics_gauge(out, "etcd_server_has_leader",
                              "Whether or not a leader exists. 1 is "
                              "existence, 0 is not. (1 while this worker "
                              "reaches the database.)", up);
    }

    if (rc == BL_OK) {
        rc = bl_metrics_gauge(out, "etcd_server_is_leader",
                              "Whether or not this member is a leader. 1 if "
                              "is, 0 otherwise. (Every node commits its own "
                              "writes: 1 while it reaches the database.)",
                              up);
    }

    if (rc == BL_OK) {
        rc = bl_metrics_printf(out,
             "# HELP ballast_reloads_total Reloads (HUP) of the "
             "configuration: ok when the new generation serves, failed when "
             "the old configuration stays.\n"
             "# TYPE ballast_reloads_total counter\n"
             "ballast_reloads_total{result=\"ok\"} %" PRIu64 "\n"
             "ballast_reloads_total{result=\"failed\"} %" PRIu64 "\n"
             "# HELP ballast_respawns_total Child processes the master "
             "started again after they died.\n"
             "# TYPE ballast_respawns_total counter\n",
             bl_metrics_get(&shm->reloads_ok),
             bl_metrics_get(&shm->reloads_failed));
    }

    for (k = 0; k < bl_nelems(bl_metrics_respawn_names) && rc == BL_OK; k++) {
        rc = bl_metrics_printf(out, "ballast_respawns_total{process=\"%s\"} %"
                               PRIu64 "\n", bl_metrics_respawn_names[k],
                               bl_metrics_get(&shm->respawns[k]));
    }

    return rc;
}


static bl_int_t
bl_metrics_gauge(bl_buf_t *out, const char *name, const char *help,
    int64_t value)
{
    return bl_metrics_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %" PRId64
                             "\n", name, help, name, name, value);
}


/*
 * A method's grpc_method, grpc_service and grpc_type labels.  Registered
 * paths are "/service/method" (bl_grpc_register checks the leading '/')
 * of at most BL_METRICS_PATH bytes; nothing in them needs escaping.
 */

static void
bl_metrics_labels(bl_metrics_sum_t *s)
{
    const char  *type, *service, *slash;

    switch (s->flags & BL_GRPC_BIDI) {
    case BL_GRPC_CLIENT_STREAM:
        type = "client_stream";
        break;
    case BL_GRPC_SERVER_STREAM:
        type = "server_stream";
        break;
    case BL_GRPC_BIDI:
        type = "bidi_stream";
        break;
    default:
        type = "unary";
        break;
    }

    service = s->path + 1;
    slash = strrchr(service, '/');

    if (slash == NULL) {
        slash = service + strlen(service);
    }

    snprintf(s->labels, sizeof(s->labels),
             "grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"",
             *slash ? slash + 1 : "", (int) (slash - service), service, type);
}


static bl_int_t
bl_metrics_printf(bl_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  args;

    for ( ;; ) {
        va_start(args, fmt);
        n = vsnprintf((char *) b->last, bl_buf_free(b), fmt, args);
        va_end(args);

        if (n < 0) {
            return BL_ERROR;
        }

        if ((size_t) n < bl_buf_free(b)) {
            b->last += n;
            return BL_OK;
        }

        if (bl_buf_reserve(b, (size_t) n + 1 + 4096) != BL_OK) {
            return BL_ERROR;
        }
    }
}


static int
bl_metrics_cmp(const void *a, const void *b)
{
    return strcmp(((const bl_metrics_sum_t *) a)->path,
                  ((const bl_metrics_sum_t *) b)->path);
}
