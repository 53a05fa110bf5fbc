/*
 * Metrics in shared memory (bl_http_metrics.h): the area, the slots, what
 * each process publishes into its own, and the transport's observer.
 * The layout is bl_http_metrics_shm.h; the text is bl_http_metrics_text.c.
 *
 * The lower layers only count, in their own structs or through getters
 * (bl_storage_stats, bl_watch_stats, bl_etcd_stats, the pool's and the
 * ring's state); this module reads them into the slot before the loop
 * sleeps, so they never call up to it.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_server.h>
#include <bl_storage.h>
#include <bl_watch.h>
#include <bl_etcd_stats.h>
#include <bl_http_metrics.h>
#include <bl_http_metrics_shm.h>

#include <signal.h>
#include <sys/mman.h>


/* a method's entry in this worker's slot, found by the method pointer */
typedef struct {
    const bl_grpc_method_t  *method;
    bl_metrics_method_t     *entry;       /* NULL: not counted */
} bl_metrics_cache_t;


static void bl_metrics_started(const bl_grpc_method_t *m);
static void bl_metrics_handled(const bl_grpc_method_t *m, int status,
    int64_t usec);
static void bl_metrics_msg_received(const bl_grpc_method_t *m);
static void bl_metrics_msg_sent(const bl_grpc_method_t *m);
static bl_metrics_method_t *bl_metrics_entry(const bl_grpc_method_t *m);
static void bl_metrics_prepare(struct ev_loop *loop, ev_prepare *w,
    int revents);
static void bl_metrics_local(uint64_t *v);


static const int64_t  bl_metrics_bounds[BL_METRICS_BUCKETS - 1] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};

/* which kind of process counts each counter (the others leave it be) */
static const bl_uint_t  bl_metrics_counter_kind[BL_METRICS_COUNTERS] = {
    BL_PROCESS_WORKER,          /* round trips: the workers' pools ... */
    BL_PROCESS_WORKER,
    BL_PROCESS_WORKER,
    BL_PROCESS_WORKER,
    BL_PROCESS_WORKER,
    BL_PROCESS_WORKER,          /* ... (the watcher's are its own jobs) */
    BL_PROCESS_WORKER,          /* watch catch-up reads */
    BL_PROCESS_WORKER,          /* watch events sent */
    BL_PROCESS_WORKER,          /* lease renewals */
    BL_PROCESS_WATCHER          /* leases expired */
};

static const bl_grpc_observer_t  bl_metrics_observer = {
    bl_metrics_started,
    bl_metrics_handled,
    bl_metrics_msg_received,
    bl_metrics_msg_sent
};


bl_metrics_shm_t           *bl_metrics_shm;
bl_metrics_slot_t          *bl_metrics_slot;       /* this process's */

static bl_uint_t            bl_metrics_kind;
static uint64_t             bl_metrics_base[BL_METRICS_COUNTERS];
static bl_uint_t            bl_metrics_http_conns;
static ev_prepare           bl_metrics_prepare_ev;
static bl_metrics_cache_t   bl_metrics_cache[2 * BL_METRICS_METHODS];
static unsigned             bl_metrics_full_warned;


bl_int_t
bl_metrics_init(bl_uint_t worker_processes)
{
    size_t             size, header;
    bl_uint_t          nslots;
    bl_metrics_shm_t  *shm;

    /* a reload's new generation runs next to the old one for a while;
     * each generation has a watcher too */
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


int
bl_metrics_alive(int32_t owner)
{
    /* kill(0) sees zombies alive: the master reaps them at once */
    return owner != 0 && (kill(owner, 0) == 0 || errno != ESRCH);
}


bl_int_t
bl_metrics_start(bl_uint_t process)
{
    int32_t             pid, owner;
    uint32_t            n;
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

        /* free, or its process is gone */
        if (bl_metrics_alive(owner)) {
            continue;
        }

        if (!atomic_compare_exchange_strong(&slot->pid, &owner, pid)) {
            continue;       /* another new process took it */
        }

        bl_metrics_slot = slot;
        bl_metrics_kind = process;

        /* counters go on from the previous owner's totals */
        for (k = 0; k < BL_METRICS_COUNTERS; k++) {
            bl_metrics_base[k] = bl_metrics_get(&slot->counters[k]);
        }

        /* the previous owner's gauges are not ours */
        bl_metrics_set(&slot->grpc_connections, 0);
        bl_metrics_set(&slot->grpc_streams, 0);
        bl_metrics_set(&slot->http_connections, 0);
        bl_metrics_set(&slot->watchers, 0);
        bl_metrics_set(&slot->database_rev, 0);
        bl_metrics_set(&slot->leases, -1);

        for (k = 0; k < BL_METRICS_POOL_STATES; k++) {
            bl_metrics_set(&slot->pool[k], 0);
        }

        n = atomic_load_explicit(&slot->nmethods, memory_order_acquire);

        for (k = 0; k < n && k < BL_METRICS_METHODS; k++) {
            bl_metrics_set(&slot->methods[k].active, 0);
        }

        atomic_store(&slot->kind, (uint32_t) process);
        bl_metrics_set(&slot->claim,
                       atomic_fetch_add(&bl_metrics_shm->claims, 1) + 1);
        bl_metrics_set(&slot->used, 1);

        break;
    }

    if (bl_metrics_slot == NULL) {
        bl_log_error(BL_LOG_WARN, 0, "no free slot in the metrics area "
                     "(%u): this process is not counted",
                     (unsigned) bl_metrics_shm->nslots);
        return BL_OK;
    }

    if (process == BL_PROCESS_WORKER) {
        bl_grpc_set_observer(&bl_metrics_observer);
    }

    ev_prepare_init(&bl_metrics_prepare_ev, bl_metrics_prepare);
    ev_prepare_start(bl_loop, &bl_metrics_prepare_ev);

    return BL_OK;
}


void
bl_metrics_stop(void)
{
    bl_uint_t           k;
    bl_metrics_slot_t  *slot;

    slot = bl_metrics_slot;

    if (slot == NULL) {
        return;
    }

    if (bl_metrics_kind == BL_PROCESS_WORKER) {
        bl_grpc_set_observer(NULL);
    }

    if (bl_loop != NULL) {
        ev_prepare_stop(bl_loop, &bl_metrics_prepare_ev);
    }

    bl_metrics_publish();

    bl_metrics_set(&slot->grpc_connections, 0);
    bl_metrics_set(&slot->grpc_streams, 0);
    bl_metrics_set(&slot->http_connections, 0);
    bl_metrics_set(&slot->watchers, 0);

    for (k = 0; k < BL_METRICS_POOL_STATES; k++) {
        bl_metrics_set(&slot->pool[k], 0);
    }

    bl_metrics_slot = NULL;
    atomic_store(&slot->pid, 0);
}


void
bl_metrics_http_connections(bl_uint_t n)
{
    bl_metrics_http_conns = n;
}


/* the master's counters: it is their only writer */

void
bl_metrics_reloaded(int ok)
{
    if (bl_metrics_shm == NULL) {
        return;
    }

    if (ok) {
        bl_metrics_add(&bl_metrics_shm->reloads_ok, 1);
    } else {
        bl_metrics_add(&bl_metrics_shm->reloads_failed, 1);
    }
}


void
bl_metrics_respawned(bl_uint_t which)
{
    if (bl_metrics_shm != NULL
        && which < bl_nelems(bl_metrics_shm->respawns))
    {
        bl_metrics_add(&bl_metrics_shm->respawns[which], 1);
    }
}


/* before the loop sleeps: this process's gauges and counters */

static void
bl_metrics_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    bl_metrics_publish();
}


void
bl_metrics_publish(void)
{
    bl_uint_t                 k;
    uint64_t                  local[BL_METRICS_COUNTERS];
    bl_metrics_slot_t        *slot;
    bl_storage_pool_stats_t   ps;

    slot = bl_metrics_slot;

    if (slot == NULL) {
        return;
    }

    bl_metrics_local(local);

    for (k = 0; k < BL_METRICS_COUNTERS; k++) {
        if (bl_metrics_counter_kind[k] == bl_metrics_kind) {
            bl_metrics_set(&slot->counters[k], bl_metrics_base[k] + local[k]);
        }
    }

    bl_storage_pool_stats(&ps);

    bl_metrics_set(&slot->pool[BL_METRICS_POOL_BUSY], ps.busy);
    bl_metrics_set(&slot->pool[BL_METRICS_POOL_IDLE], ps.idle);
    bl_metrics_set(&slot->pool[BL_METRICS_POOL_CONNECTING], ps.connecting);
    bl_metrics_set(&slot->pool[BL_METRICS_POOL_BROKEN], ps.broken);

    if (bl_metrics_kind == BL_PROCESS_WATCHER) {
        bl_metrics_set(&slot->database_rev, bl_storage_last_revision());
        bl_metrics_set(&slot->leases, bl_etcd_stats.leases);
        return;
    }

    bl_metrics_set(&slot->grpc_connections, bl_grpc_server_connections());
    bl_metrics_set(&slot->grpc_streams, bl_grpc_server_streams());
    bl_metrics_set(&slot->http_connections, bl_metrics_http_conns);
    bl_metrics_set(&slot->watchers, bl_watch_count());
}


/* what this process counted since it started, by counter */

static void
bl_metrics_local(uint64_t *v)
{
    v[BL_METRICS_ROUND_TRIPS] = bl_storage_stats.round_trips;
    v[BL_METRICS_STATEMENTS] = bl_storage_stats.statements;
    v[BL_METRICS_WRITE_BATCHES] = bl_storage_stats.write_batches;
    v[BL_METRICS_WRITES] = bl_storage_stats.writes;
    v[BL_METRICS_ERRORS] = bl_storage_stats.errors;
    v[BL_METRICS_RECONNECTS] = bl_storage_stats.reconnects;
    v[BL_METRICS_CATCHUP_READS] = bl_watch_stats.catchup_reads;
    v[BL_METRICS_EVENTS_SENT] = bl_etcd_stats.watch_events;
    v[BL_METRICS_LEASE_RENEWALS] = bl_etcd_stats.lease_renewals;
    v[BL_METRICS_LEASES_EXPIRED] = bl_etcd_stats.leases_expired;
}


/* the transport's observer */

static void
bl_metrics_started(const bl_grpc_method_t *m)
{
    bl_metrics_method_t  *e;

    e = bl_metrics_entry(m);

    if (e != NULL) {
        bl_metrics_add(&e->started, 1);
        bl_metrics_add(&e->active, 1);
    }
}


static void
bl_metrics_handled(const bl_grpc_method_t *m, int status, int64_t usec)
{
    size_t                i;
    uint64_t              active;
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

    /* the transport reports each started call's end once */
    active = bl_metrics_get(&e->active);

    if (active > 0) {
        bl_metrics_set(&e->active, active - 1);
    }
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
