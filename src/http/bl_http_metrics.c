/*
 * Metrics in shared memory, and their Prometheus text (bl_http_metrics.h).
 *
 * The area holds offsets, never pointers: a header (magic, version,
 * sizes), then the slots.  A slot has one writer, its owner; readers
 * (scrapes in any worker) load each value atomically.  A method's entry
 * is written whole before the owner publishes the count of entries with
 * a release store, so a reader that acquires the count reads complete
 * entries.  The gRPC metrics are the ones grpc-go's Prometheus
 * middleware exports (what etcd exports), with the same names, labels
 * and buckets.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_server.h>
#include <bl_storage.h>
#include <bl_http_metrics.h>

#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>


#define BL_METRICS_MAGIC     0x626c6d6574726963ULL    /* "blmetric" */
#define BL_METRICS_VERSION   1
#define BL_METRICS_METHODS   96       /* per slot: every service's methods */
#define BL_METRICS_PATH      64       /* "/etcdserverpb.KV/Range" and NUL */
#define BL_METRICS_CODES     17       /* gRPC status codes 0..16 */
#define BL_METRICS_BUCKETS   12       /* 11 bounds and +Inf */
#define BL_METRICS_STORAGE   6
#define BL_METRICS_MIN_SLOTS 64

typedef _Atomic uint64_t  bl_metrics_u64_t;

typedef struct {
    char               path[BL_METRICS_PATH];    /* NUL-terminated */
    uint32_t           flags;                    /* BL_GRPC_UNARY, ... */
    uint32_t           reserved;
    bl_metrics_u64_t   started;
    bl_metrics_u64_t   msg_received;
    bl_metrics_u64_t   msg_sent;
    bl_metrics_u64_t   handled[BL_METRICS_CODES];
    bl_metrics_u64_t   buckets[BL_METRICS_BUCKETS];   /* not cumulative */
    bl_metrics_u64_t   sum_usec;
} bl_metrics_method_t;

typedef struct {
    _Atomic int32_t    pid;           /* owner; 0: free */
    _Atomic uint32_t   nmethods;      /* entries published */
    bl_metrics_u64_t   used;          /* ever claimed */
    bl_metrics_u64_t   grpc_connections;     /* gauges: the owner's */
    bl_metrics_u64_t   grpc_streams;
    bl_metrics_u64_t   http_connections;
    bl_metrics_u64_t   storage[BL_METRICS_STORAGE];
    bl_metrics_method_t  methods[BL_METRICS_METHODS];
} bl_metrics_slot_t;

typedef struct {
    uint64_t           magic;
    uint32_t           version;
    uint32_t           header_size;   /* slots start here */
    uint64_t           size;          /* of the whole mapping */
    uint32_t           nslots;
    uint32_t           slot_size;
} bl_metrics_shm_t;

/* a method's entry in this worker's slot, found by the method pointer */
typedef struct {
    const bl_grpc_method_t  *method;
    bl_metrics_method_t     *entry;       /* NULL: not counted */
} bl_metrics_cache_t;

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
    char                labels[2 * BL_METRICS_PATH + 64];
} bl_metrics_sum_t;


static void bl_metrics_started(const bl_grpc_method_t *m);
static void bl_metrics_handled(const bl_grpc_method_t *m, int status,
    int64_t usec);
static void bl_metrics_msg_received(const bl_grpc_method_t *m);
static void bl_metrics_msg_sent(const bl_grpc_method_t *m);
static bl_metrics_method_t *bl_metrics_entry(const bl_grpc_method_t *m);
static void bl_metrics_publish(void);
static void bl_metrics_prepare(struct ev_loop *loop, ev_prepare *w,
    int revents);
static bl_int_t bl_metrics_printf(bl_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bl_metrics_labels(bl_metrics_sum_t *s);
static int bl_metrics_cmp(const void *a, const void *b);


static const int64_t  bl_metrics_bounds[BL_METRICS_BUCKETS - 1] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};

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
} bl_metrics_storage_names[BL_METRICS_STORAGE] = {
    { "ballast_storage_round_trips_total",
      "Round trips to the database: queries and pipelines answered." },
    { "ballast_storage_statements_total",
      "Statements sent to the database inside those round trips." },
    { "ballast_storage_write_batches_total",
      "Database transactions that carried writes (group commits)." },
    { "ballast_storage_writes_total",
      "Write requests committed." },
    { "ballast_storage_errors_total",
      "Failed database connections or queries." },
    { "ballast_storage_reconnects_total",
      "Connections to the database made again after a failure." },
};

static const bl_grpc_observer_t  bl_metrics_observer = {
    bl_metrics_started,
    bl_metrics_handled,
    bl_metrics_msg_received,
    bl_metrics_msg_sent
};


static bl_metrics_shm_t    *bl_metrics_shm;
static bl_metrics_slot_t   *bl_metrics_slot;       /* this worker's */
static uint64_t             bl_metrics_base[BL_METRICS_STORAGE];
static bl_uint_t            bl_metrics_http_conns;
static ev_prepare           bl_metrics_prepare_ev;
static bl_metrics_cache_t   bl_metrics_cache[2 * BL_METRICS_METHODS];
static unsigned             bl_metrics_full_warned;


#define bl_metrics_slot_at(shm, i)                                            \
    ((bl_metrics_slot_t *) ((u_char *) (shm) + (shm)->header_size             \
                            + (size_t) (i) * (shm)->slot_size))

#define bl_metrics_get(p)     atomic_load_explicit(p, memory_order_relaxed)
#define bl_metrics_set(p, v)  atomic_store_explicit(p, v, memory_order_relaxed)
/* one writer per slot: a load and a store, no locked instruction */
#define bl_metrics_add(p, n)  bl_metrics_set(p, bl_metrics_get(p) + (n))


bl_int_t
bl_metrics_init(bl_uint_t worker_processes)
{
    size_t             size, header;
    bl_uint_t          nslots;
    bl_metrics_shm_t  *shm;

    /* a reload's new generation runs next to the old one for a while */
    nslots = bl_max(BL_METRICS_MIN_SLOTS, 2 * worker_processes + 16);

    if (bl_metrics_shm != NULL) {
        if (nslots > bl_metrics_shm->nslots) {
            bl_log_error(BL_LOG_WARN, 0, "the metrics area has %u worker "
                         "slots, %lu worker processes may need %lu: "
                         "workers beyond it are not counted until a restart",
                         (unsigned) bl_metrics_shm->nslots,
                         (unsigned long) worker_processes,
                         (unsigned long) nslots);
        }

        return BL_OK;
    }

    header = bl_align(sizeof(bl_metrics_shm_t), 64);
    size = header + nslots * bl_align(sizeof(bl_metrics_slot_t), 64);

    /* anonymous and shared: pages cost memory only once touched */
    shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    if (shm == MAP_FAILED) {
        bl_log_error(BL_LOG_EMERG, errno, "mmap(%zu) of the metrics area "
                     "failed", size);
        return BL_ERROR;
    }

    shm->magic = BL_METRICS_MAGIC;
    shm->version = BL_METRICS_VERSION;
    shm->header_size = (uint32_t) header;
    shm->size = size;
    shm->nslots = (uint32_t) nslots;
    shm->slot_size = (uint32_t) bl_align(sizeof(bl_metrics_slot_t), 64);

    bl_metrics_shm = shm;

    return BL_OK;
}


bl_int_t
bl_metrics_start(void)
{
    int32_t             pid, owner;
    bl_uint_t           i, k;
    bl_metrics_slot_t  *slot;

    if (bl_metrics_shm == NULL
        || bl_metrics_shm->magic != BL_METRICS_MAGIC
        || bl_metrics_shm->version != BL_METRICS_VERSION)
    {
        bl_log_error(BL_LOG_ALERT, 0, "the metrics area is not mapped");
        return BL_ERROR;
    }

    pid = (int32_t) getpid();

    for (i = 0; i < bl_metrics_shm->nslots; i++) {
        slot = bl_metrics_slot_at(bl_metrics_shm, i);
        owner = atomic_load(&slot->pid);

        /* free, or its worker is gone (kill(0) sees zombies alive: the
         * master reaps them at once) */
        if (owner != 0 && (kill(owner, 0) == 0 || errno != ESRCH)) {
            continue;
        }

        if (!atomic_compare_exchange_strong(&slot->pid, &owner, pid)) {
            continue;       /* another new worker took it */
        }

        bl_metrics_slot = slot;
        bl_metrics_set(&slot->used, 1);

        /* counters go on from the previous owner's totals */
        for (k = 0; k < BL_METRICS_STORAGE; k++) {
            bl_metrics_base[k] = bl_metrics_get(&slot->storage[k]);
        }

        bl_metrics_set(&slot->grpc_connections, 0);
        bl_metrics_set(&slot->grpc_streams, 0);
        bl_metrics_set(&slot->http_connections, 0);

        break;
    }

    if (bl_metrics_slot == NULL) {
        bl_log_error(BL_LOG_WARN, 0, "no free slot in the metrics area "
                     "(%u): this worker's calls are not counted",
                     (unsigned) bl_metrics_shm->nslots);
        return BL_OK;
    }

    bl_grpc_set_observer(&bl_metrics_observer);

    ev_prepare_init(&bl_metrics_prepare_ev, bl_metrics_prepare);
    ev_prepare_start(bl_loop, &bl_metrics_prepare_ev);

    return BL_OK;
}


void
bl_metrics_stop(void)
{
    bl_metrics_slot_t  *slot;

    slot = bl_metrics_slot;

    if (slot == NULL) {
        return;
    }

    bl_grpc_set_observer(NULL);

    if (bl_loop != NULL) {
        ev_prepare_stop(bl_loop, &bl_metrics_prepare_ev);
    }

    bl_metrics_publish();

    bl_metrics_set(&slot->grpc_connections, 0);
    bl_metrics_set(&slot->grpc_streams, 0);
    bl_metrics_set(&slot->http_connections, 0);

    bl_metrics_slot = NULL;
    atomic_store(&slot->pid, 0);
}


void
bl_metrics_http_connections(bl_uint_t n)
{
    bl_metrics_http_conns = n;
}


/* before the loop sleeps: this worker's gauges and storage counters */

static void
bl_metrics_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    bl_metrics_publish();
}


static void
bl_metrics_publish(void)
{
    bl_metrics_slot_t  *slot;

    slot = bl_metrics_slot;

    if (slot == NULL) {
        return;
    }

    bl_metrics_set(&slot->grpc_connections, bl_grpc_server_connections());
    bl_metrics_set(&slot->grpc_streams, bl_grpc_server_streams());
    bl_metrics_set(&slot->http_connections, bl_metrics_http_conns);

    bl_metrics_set(&slot->storage[0],
                   bl_metrics_base[0] + bl_storage_stats.round_trips);
    bl_metrics_set(&slot->storage[1],
                   bl_metrics_base[1] + bl_storage_stats.statements);
    bl_metrics_set(&slot->storage[2],
                   bl_metrics_base[2] + bl_storage_stats.write_batches);
    bl_metrics_set(&slot->storage[3],
                   bl_metrics_base[3] + bl_storage_stats.writes);
    bl_metrics_set(&slot->storage[4],
                   bl_metrics_base[4] + bl_storage_stats.errors);
    bl_metrics_set(&slot->storage[5],
                   bl_metrics_base[5] + bl_storage_stats.reconnects);
}


/* the transport's observer */

static void
bl_metrics_started(const bl_grpc_method_t *m)
{
    bl_metrics_method_t  *e;

    e = bl_metrics_entry(m);

    if (e != NULL) {
        bl_metrics_add(&e->started, 1);
    }
}


static void
bl_metrics_handled(const bl_grpc_method_t *m, int status, int64_t usec)
{
    size_t                i;
    bl_metrics_method_t  *e;

    e = bl_metrics_entry(m);

    if (e == NULL) {
        return;
    }

    if (status < 0 || status >= BL_METRICS_CODES) {
        status = BL_GRPC_UNKNOWN;
    }

    if (usec < 0) {
        usec = 0;
    }

    for (i = 0; i < BL_METRICS_BUCKETS - 1; i++) {
        if (usec <= bl_metrics_bounds[i]) {
            break;
        }
    }

    bl_metrics_add(&e->handled[status], 1);
    bl_metrics_add(&e->buckets[i], 1);
    bl_metrics_add(&e->sum_usec, (uint64_t) usec);
}


static void
bl_metrics_msg_received(const bl_grpc_method_t *m)
{
    bl_metrics_method_t  *e;

    e = bl_metrics_entry(m);

    if (e != NULL) {
        bl_metrics_add(&e->msg_received, 1);
    }
}


static void
bl_metrics_msg_sent(const bl_grpc_method_t *m)
{
    bl_metrics_method_t  *e;

    e = bl_metrics_entry(m);

    if (e != NULL) {
        bl_metrics_add(&e->msg_sent, 1);
    }
}


/*
 * The method's entry in this worker's slot: from the cache, else the
 * previous owner's entry of that path, else a new one.
 */

static bl_metrics_method_t *
bl_metrics_entry(const bl_grpc_method_t *m)
{
    size_t                i, h, len;
    uint32_t              n;
    bl_metrics_slot_t    *slot;
    bl_metrics_cache_t   *c;
    bl_metrics_method_t  *e;

    slot = bl_metrics_slot;

    if (slot == NULL) {
        return NULL;
    }

    h = ((uintptr_t) m >> 4) % bl_nelems(bl_metrics_cache);

    for (i = 0; i < bl_nelems(bl_metrics_cache); i++) {
        c = &bl_metrics_cache[(h + i) % bl_nelems(bl_metrics_cache)];

        if (c->method == m) {
            return c->entry;
        }

        if (c->method == NULL) {
            break;
        }
    }

    if (i == bl_nelems(bl_metrics_cache)) {
        return NULL;                /* more methods than ever registered */
    }

    c->method = m;
    c->entry = NULL;

    len = strlen(m->path);

    if (len >= BL_METRICS_PATH) {
        bl_log_error(BL_LOG_WARN, 0, "gRPC method \"%s\" has too long a "
                     "name to be counted in metrics", m->path);
        return NULL;
    }

    n = atomic_load_explicit(&slot->nmethods, memory_order_relaxed);

    for (i = 0; i < n; i++) {
        if (strcmp(slot->methods[i].path, m->path) == 0) {
            c->entry = &slot->methods[i];
            return c->entry;
        }
    }

    if (n == BL_METRICS_METHODS) {
        if (!bl_metrics_full_warned) {
            bl_metrics_full_warned = 1;
            bl_log_error(BL_LOG_WARN, 0, "more than %d gRPC methods: "
                         "\"%s\" and later ones are not counted",
                         BL_METRICS_METHODS, m->path);
        }

        return NULL;
    }

    e = &slot->methods[n];
    memcpy(e->path, m->path, len + 1);
    e->flags = (uint32_t) m->flags;

    /* the entry is whole before readers can see it */
    atomic_store_explicit(&slot->nmethods, n + 1, memory_order_release);

    c->entry = e;

    return e;
}


/* the exposition */

bl_int_t
bl_metrics_render(bl_buf_t *out)
{
    int                  found;
    size_t               nsum, i, j, k;
    bl_int_t             rc;
    uint32_t             n;
    uint64_t             total, cum, storage[BL_METRICS_STORAGE];
    uint64_t             conns, streams, http_conns, workers;
    int32_t              owner;
    bl_metrics_shm_t    *shm;
    bl_metrics_sum_t    *sums, *s;
    bl_metrics_slot_t   *slot;
    bl_metrics_method_t *e;

    shm = bl_metrics_shm;

    if (shm == NULL) {
        return bl_metrics_printf(out, "# no metrics area\n");
    }

    bl_metrics_publish();

    sums = bl_calloc(2 * BL_METRICS_METHODS * sizeof(bl_metrics_sum_t));
    if (sums == NULL) {
        return BL_ERROR;
    }

    nsum = 0;
    conns = streams = http_conns = workers = 0;
    memset(storage, 0, sizeof(storage));

    for (i = 0; i < shm->nslots; i++) {
        slot = bl_metrics_slot_at(shm, i);

        if (!bl_metrics_get(&slot->used)) {
            continue;
        }

        owner = atomic_load(&slot->pid);

        if (owner != 0 && (kill(owner, 0) == 0 || errno != ESRCH)) {
            workers++;
            conns += bl_metrics_get(&slot->grpc_connections);
            streams += bl_metrics_get(&slot->grpc_streams);
            http_conns += bl_metrics_get(&slot->http_connections);
        }

        for (k = 0; k < BL_METRICS_STORAGE; k++) {
            storage[k] += bl_metrics_get(&slot->storage[k]);
        }

        n = atomic_load_explicit(&slot->nmethods, memory_order_acquire);

        for (j = 0; j < n && j < BL_METRICS_METHODS; j++) {
            e = &slot->methods[j];
            found = 0;

            for (k = 0; k < nsum; k++) {
                if (strcmp(sums[k].path, e->path) == 0) {
                    found = 1;
                    break;
                }
            }

            if (!found) {
                if (nsum == 2 * BL_METRICS_METHODS) {
                    continue;
                }

                k = nsum++;
                sums[k].path = e->path;
                sums[k].flags = e->flags;
            }

            s = &sums[k];
            s->started += bl_metrics_get(&e->started);
            s->msg_received += bl_metrics_get(&e->msg_received);
            s->msg_sent += bl_metrics_get(&e->msg_sent);
            s->sum_usec += bl_metrics_get(&e->sum_usec);

            for (k = 0; k < BL_METRICS_CODES; k++) {
                s->handled[k] += bl_metrics_get(&e->handled[k]);
            }

            for (k = 0; k < BL_METRICS_BUCKETS; k++) {
                s->buckets[k] += bl_metrics_get(&e->buckets[k]);
            }
        }
    }

    qsort(sums, nsum, sizeof(bl_metrics_sum_t), bl_metrics_cmp);

    for (i = 0; i < nsum; i++) {
        bl_metrics_labels(&sums[i]);
    }

    /* each family's samples together, as the format wants */

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

    if (rc == BL_OK) {
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
             "ballast_workers %" PRIu64 "\n",
             conns, streams, http_conns, workers);
    }

    for (k = 0; k < BL_METRICS_STORAGE && rc == BL_OK; k++) {
        rc = bl_metrics_printf(out, "# HELP %s %s\n# TYPE %s counter\n"
                               "%s %" PRIu64 "\n",
                               bl_metrics_storage_names[k].name,
                               bl_metrics_storage_names[k].help,
                               bl_metrics_storage_names[k].name,
                               bl_metrics_storage_names[k].name, storage[k]);
    }

    free(sums);

    return rc;
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
