/*
 * The metrics area's layout, shared by bl_http_metrics.c (the area, the
 * slots and their writers) and bl_http_metrics_text.c (the exposition,
 * which reads them).  Internal to src/http.
 *
 * The area holds offsets, never pointers: a header (magic, version,
 * sizes, and the master's own counters), then the slots.  A slot has one
 * writer, its owner (a worker or the watcher); readers (scrapes in any
 * worker) load each value atomically.  A method's entry is written whole
 * before the owner publishes the count of entries with a release store,
 * so a reader that acquires the count reads complete entries.
 */
#ifndef BL_HTTP_METRICS_SHM_H
#define BL_HTTP_METRICS_SHM_H

#include <bl_core.h>
#include <bl_module.h>

#include <stdatomic.h>


#define BL_METRICS_MAGIC     0x626c6d6574726963ULL    /* "blmetric" */
#define BL_METRICS_VERSION   2
#define BL_METRICS_METHODS   96       /* per slot: every service's methods */
#define BL_METRICS_PATH      64       /* "/etcdserverpb.KV/Range" and NUL */
#define BL_METRICS_CODES     17       /* gRPC status codes 0..16 */
#define BL_METRICS_BUCKETS   12       /* 11 bounds and +Inf */
#define BL_METRICS_MIN_SLOTS 64

/*
 * The slots' counters: the owner publishes its base (what the slot held
 * when it claimed it) plus its own count, so totals never go back.  The
 * table in bl_http_metrics.c says which kind of process counts each.
 */
enum {
    BL_METRICS_ROUND_TRIPS = 0,
    BL_METRICS_STATEMENTS,
    BL_METRICS_WRITE_BATCHES,
    BL_METRICS_WRITES,
    BL_METRICS_ERRORS,
    BL_METRICS_RECONNECTS,
    BL_METRICS_CATCHUP_READS,
    BL_METRICS_EVENTS_SENT,
    BL_METRICS_LEASE_RENEWALS,
    BL_METRICS_LEASES_EXPIRED,
    BL_METRICS_COUNTERS
};

/* the storage counters, in the order above, come first */
#define BL_METRICS_STORAGE   6

/* pool connection states (bl_storage_pool_stats_t) */
enum {
    BL_METRICS_POOL_BUSY = 0,
    BL_METRICS_POOL_IDLE,
    BL_METRICS_POOL_CONNECTING,
    BL_METRICS_POOL_BROKEN,
    BL_METRICS_POOL_STATES
};

typedef _Atomic uint64_t  bl_metrics_u64_t;
typedef _Atomic int64_t   bl_metrics_i64_t;

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
    bl_metrics_u64_t   active;        /* gauge: the owner's calls open */
} bl_metrics_method_t;

typedef struct {
    _Atomic int32_t    pid;           /* owner; 0: free */
    _Atomic uint32_t   nmethods;      /* entries published */
    _Atomic uint32_t   kind;          /* BL_PROCESS_WORKER or _WATCHER */
    uint32_t           reserved;
    bl_metrics_u64_t   used;          /* ever claimed */
    bl_metrics_u64_t   claim;         /* order of the claim: newest wins */
    bl_metrics_u64_t   grpc_connections;     /* gauges: the owner's */
    bl_metrics_u64_t   grpc_streams;
    bl_metrics_u64_t   http_connections;
    bl_metrics_u64_t   watchers;
    bl_metrics_u64_t   pool[BL_METRICS_POOL_STATES];
    bl_metrics_i64_t   database_rev;  /* watcher: the store's, as seen */
    bl_metrics_i64_t   leases;        /* watcher: at its last count; -1 */
    bl_metrics_u64_t   counters[BL_METRICS_COUNTERS];
    bl_metrics_method_t  methods[BL_METRICS_METHODS];
} bl_metrics_slot_t;

typedef struct {
    uint64_t           magic;
    uint32_t           version;
    uint32_t           header_size;   /* slots start here */
    uint64_t           size;          /* of the whole mapping */
    uint32_t           nslots;
    uint32_t           slot_size;
    bl_metrics_u64_t   claims;        /* slot claims so far */
    /* the master's, counted for the life of the area */
    bl_metrics_u64_t   reloads_ok;
    bl_metrics_u64_t   reloads_failed;
    bl_metrics_u64_t   respawns[3];   /* BL_METRICS_RESPAWN_... */
} bl_metrics_shm_t;


#define bl_metrics_slot_at(shm, i)                                            \
    ((bl_metrics_slot_t *) ((u_char *) (shm) + (shm)->header_size             \
                            + (size_t) (i) * (shm)->slot_size))

#define bl_metrics_get(p)     atomic_load_explicit(p, memory_order_relaxed)
#define bl_metrics_set(p, v)  atomic_store_explicit(p, v, memory_order_relaxed)
/* one writer per slot: a load and a store, no locked instruction */
#define bl_metrics_add(p, n)  bl_metrics_set(p, bl_metrics_get(p) + (n))


/* bl_http_metrics.c: the area, and this process's slot (NULL: none) */
extern bl_metrics_shm_t   *bl_metrics_shm;
extern bl_metrics_slot_t  *bl_metrics_slot;

/* the owner's values into its slot (a scrape does it first, so that the
 * answering worker's own are current) */
void bl_metrics_publish(void);
/* 1 if a slot's owner (its pid) lives */
int bl_metrics_alive(int32_t owner);

#endif /* BL_HTTP_METRICS_SHM_H */
