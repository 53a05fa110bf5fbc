/*
 * The store as the etcd services see it: etcd's data model (a totally
 * ordered, gap-free log of revisions; keys and values are arbitrary
 * bytes) on PostgreSQL through asynchronous libpq.  Knows nothing of gRPC.
 *
 * Every operation is asynchronous.  A call returns BL_ST_OK when the
 * operation was queued: the handler is then called exactly once, from the
 * event loop, with a status and (for BL_ST_OK) a result allocated in the
 * pool given — unless the caller cancels it first with
 * bl_storage_cancel(), after which the handler is never called and the
 * pool is never touched again.  Any other return value is the final status
 * of an operation that was not queued (the handler is not called), e.g.
 * BL_ST_UNAVAILABLE at once while the database is unreachable.
 *
 * The request struct is copied; the bytes it points to (key, value,
 * range_end) are not, and must stay valid until the handler is called or
 * the operation is cancelled (they normally live in the same pool).
 */
#ifndef BL_STORAGE_H
#define BL_STORAGE_H

typedef enum {
    BL_ST_OK = 0,
    BL_ST_UNAVAILABLE,        /* database unreachable or failed */
    BL_ST_COMPACTED,          /* revision below the compact revision */
    BL_ST_FUTURE_REV,         /* revision above the current one */
    BL_ST_KEY_NOT_FOUND,      /* ignore_value/ignore_lease on absent key */
    BL_ST_LEASE_NOT_FOUND,
    BL_ST_LEASE_EXISTS,       /* grant with an id already in use */
    BL_ST_TOO_MANY_REQUESTS,  /* the worker's queue is full */
    BL_ST_INTERNAL            /* a bug or an unexpected answer (logged) */
} bl_storage_status_e;

typedef struct {
    bl_str_t   key;
    bl_str_t   value;
    int64_t    create_revision;
    int64_t    mod_revision;
    int64_t    version;
    int64_t    lease;
} bl_kv_t;

typedef struct {
    bl_str_t   key;
    bl_str_t   range_end;     /* empty: key only; "\0": every key >= key */
    int64_t    limit;         /* <= 0: no limit */
    int64_t    revision;      /* <= 0: current */
    unsigned   keys_only:1;
    unsigned   count_only:1;
} bl_range_req_t;

typedef struct {
    int64_t    header_revision;   /* the store's current revision */
    int64_t    count;             /* all matches, regardless of limit */
    unsigned   more:1;            /* matches beyond the limit exist */
    bl_kv_t   *kvs;
    size_t     nkvs;
} bl_range_res_t;

typedef struct {
    bl_str_t   key;
    bl_str_t   value;
    int64_t    lease;
    unsigned   prev_kv:1;
    unsigned   ignore_value:1;
    unsigned   ignore_lease:1;
} bl_put_req_t;

typedef struct {
    int64_t    header_revision;   /* the revision this put created */
    bl_kv_t   *prev_kv;           /* NULL: not asked, or key was absent */
} bl_put_res_t;

typedef struct {
    bl_str_t   key;
    bl_str_t   range_end;     /* as in bl_range_req_t */
    unsigned   prev_kv:1;
} bl_delete_req_t;

typedef struct {
    int64_t    header_revision;   /* the new revision, or the current one
                                   * when nothing was deleted */
    int64_t    deleted;
    bl_kv_t   *prev_kvs;          /* in key order, when asked */
    size_t     nprev_kvs;
} bl_delete_res_t;

/* compare targets and results: etcd's enum values */
#define BL_CMP_VERSION    0
#define BL_CMP_CREATE     1
#define BL_CMP_MOD        2
#define BL_CMP_VALUE      3
#define BL_CMP_LEASE      4

#define BL_CMP_EQUAL      0
#define BL_CMP_GREATER    1
#define BL_CMP_LESS       2
#define BL_CMP_NOT_EQUAL  3

typedef struct {
    int        target;        /* BL_CMP_VERSION, ... */
    int        result;        /* BL_CMP_EQUAL, ... */
    bl_str_t   key;
    bl_str_t   range_end;     /* every key in the range must satisfy it */
    int64_t    number;        /* version, create/mod revision or lease */
    bl_str_t   value;         /* for BL_CMP_VALUE */
} bl_compare_t;

typedef enum {
    BL_OP_RANGE = 0,
    BL_OP_PUT,
    BL_OP_DELETE,
    BL_OP_TXN
} bl_op_kind_e;

typedef struct bl_txn_req_s bl_txn_req_t;
typedef struct bl_txn_res_s bl_txn_res_t;

typedef struct {
    bl_op_kind_e       kind;
    union {
        bl_range_req_t   range;
        bl_put_req_t     put;
        bl_delete_req_t  del;
        bl_txn_req_t    *txn;
    } u;
} bl_op_t;

/*
 * A transaction, etcd's semantics (CONFORMANCE.md section 4): the
 * compares of the whole tree are evaluated against the state before the
 * transaction, which decides the path; the ops on that path are checked
 * (unknown lease, ignore_* on an absent key, compacted or future range
 * revision) before anything changes, then run in order, later ops seeing
 * earlier writes.  Every write of the transaction shares one revision
 * with consecutive sub-revisions; a transaction that changes nothing
 * takes none.  Static checks (too many ops, duplicate keys, empty keys)
 * are the caller's, before this is called.
 */
struct bl_txn_req_s {
    bl_compare_t  *compares;
    size_t         ncompares;
    bl_op_t       *success;
    size_t         nsuccess;
    bl_op_t       *failure;
    size_t         nfailure;
};

typedef struct {
    bl_op_kind_e       kind;
    union {
        bl_range_res_t   range;    /* header_revision as etcd puts it in */
        bl_put_res_t     put;      /* sub-responses (see CONFORMANCE 2) */
        bl_delete_res_t  del;
        bl_txn_res_t    *txn;
    } u;
} bl_op_res_t;

struct bl_txn_res_s {
    int64_t        header_revision;
    unsigned       succeeded:1;
    bl_op_res_t   *responses;      /* one per op of the branch taken */
    size_t         nresponses;
};

typedef struct {
    int64_t    header_revision;   /* the current revision */
} bl_compact_res_t;

/* one event of the revision log: what a watch delivers */
typedef struct {
    int64_t    rev;
    int32_t    sub;
    int        deleted;           /* 0 put, 1 delete */
    bl_kv_t    kv;                /* delete: key, mod_revision = rev */
    bl_kv_t    prev;              /* the key's previous version */
    unsigned   has_prev:1;        /* 0: created, or prev compacted away */
} bl_log_event_t;

typedef struct {
    int64_t          through;     /* every revision <= this was read */
    int64_t          current;     /* the store's revision at the read */
    int64_t          compact;     /* the store's compact revision */
    bl_log_event_t  *events;      /* in (rev, sub) order */
    size_t           nevents;
} bl_log_res_t;

typedef struct {
    int64_t    after;             /* events with rev > after */
    int64_t    max_revs;          /* at most this many revisions, whole */
    bl_str_t   key;               /* empty: every key */
    bl_str_t   range_end;         /* as in bl_range_req_t */
} bl_log_req_t;

/* leases: deadlines live in the database and run on its clock */
typedef struct {
    int64_t    header_revision;   /* the current revision */
    int64_t    id;
    int64_t    ttl;               /* granted TTL, seconds */
    int64_t    remaining;         /* seconds left, truncated (TimeToLive) */
    bl_str_t  *keys;              /* attached keys, when asked */
    size_t     nkeys;
} bl_lease_res_t;

typedef struct {
    int64_t    header_revision;
    int64_t   *ids;
    size_t     nids;
} bl_lease_list_res_t;

typedef struct {
    int64_t    revoked;           /* leases expired by this call */
    int64_t    more;              /* 1 if more were due than handled */
} bl_lease_expire_res_t;

typedef struct {
    int64_t    header_revision;
    int64_t    count;             /* live leases (expired ones included
                                   * until the expiry revokes them) */
} bl_lease_count_res_t;

typedef struct bl_storage_op_s bl_storage_op_t;

/* result: bl_range_res_t *, bl_put_res_t *, bl_delete_res_t *,
 * bl_txn_res_t *, bl_compact_res_t *, bl_log_res_t *, bl_lease_res_t *,
 * bl_lease_list_res_t *, bl_lease_expire_res_t * or
 * bl_lease_count_res_t *;
 * NULL unless BL_ST_OK (bl_log_res_t also with BL_ST_COMPACTED) */
typedef void (*bl_storage_handler_pt)(void *data, bl_storage_status_e st,
    void *result);

bl_storage_status_e bl_storage_range(bl_pool_t *pool,
    const bl_range_req_t *req, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
bl_storage_status_e bl_storage_put(bl_pool_t *pool, const bl_put_req_t *req,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
bl_storage_status_e bl_storage_delete(bl_pool_t *pool,
    const bl_delete_req_t *req, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
/* read_only: every op on both branches (recursively) is a Range; such a
 * transaction takes no revision and may run as a read */
bl_storage_status_e bl_storage_txn(bl_pool_t *pool, const bl_txn_req_t *req,
    int read_only, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
/*
 * Compact: revision <= the compact revision -> BL_ST_COMPACTED, above the
 * current one -> BL_ST_FUTURE_REV.  Reads below it fail from the moment
 * it is recorded; the superseded history is deleted in bounded batches
 * afterwards (resumed after a crash).  physical: the handler is called
 * only once that deletion is done.
 */
bl_storage_status_e bl_storage_compact(bl_pool_t *pool, int64_t revision,
    int physical, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);

/*
 * Read the revision log: the events of revisions after req->after, up to
 * max_revs revisions (never part of one; <= 0: no limit), filtered by key
 * range (empty key: every key), with each event's previous version for
 * prev_kv.  The first revision wanted (after + 1) below the compact
 * revision -> BL_ST_COMPACTED (result->compact says where it is); from
 * the compact revision itself is fine, as etcd's watch from it: what
 * compaction left of that revision, and no prev that it removed.
 */
bl_storage_status_e bl_storage_log_read(bl_pool_t *pool,
    const bl_log_req_t *req, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
/*
 * Be told when any node commits a write: LISTEN on the channel that every
 * write transaction NOTIFYs with its revision.  The callback also runs
 * after a reconnect (notifications may have been missed meanwhile), with
 * revision 0.  Only the watcher process listens.
 */
bl_int_t bl_storage_listen(void (*on_commit)(void *data, int64_t revision),
    void *data);

/*
 * Grant: id 0 lets the store choose a positive id; an id in use ->
 * BL_ST_LEASE_EXISTS.  ttl is already etcd's effective TTL (the caller
 * applies the minimum and maximum).  Takes no revision.
 */
bl_storage_status_e bl_storage_lease_grant(bl_pool_t *pool, int64_t id,
    int64_t ttl, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
/* Revoke: every attached key deleted in one revision (key order), then
 * the lease; unknown -> BL_ST_LEASE_NOT_FOUND.  header_revision: after */
bl_storage_status_e bl_storage_lease_revoke(bl_pool_t *pool, int64_t id,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/* KeepAlive: the deadline moves to now + TTL; unknown or expired ->
 * BL_ST_LEASE_NOT_FOUND.  Keepalives of one worker share round trips. */
bl_storage_status_e bl_storage_lease_keepalive(bl_pool_t *pool, int64_t id,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/* TimeToLive: remaining and granted TTL, the keys if asked; unknown ->
 * BL_ST_LEASE_NOT_FOUND */
bl_storage_status_e bl_storage_lease_ttl(bl_pool_t *pool, int64_t id,
    int keys, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
/* Leases: every live lease id */
bl_storage_status_e bl_storage_lease_list(bl_pool_t *pool,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/*
 * Expire up to `max` leases whose deadline passed, each revoked as by
 * bl_storage_lease_revoke (its own revision).  Safe to run on every node
 * at once: a lease is taken by one of them only (row locks, SKIP LOCKED).
 */
bl_storage_status_e bl_storage_lease_expire(bl_pool_t *pool, int64_t max,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/* how many leases the store holds (for metrics: a scan of the lease
 * table, so call it seldom, never per request) */
bl_storage_status_e bl_storage_lease_count(bl_pool_t *pool,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);

void bl_storage_cancel(bl_storage_op_t *op);

/* identity of the store: a random non-zero id made when the schema was
 * created; 0 until the worker has talked to the database once */
uint64_t bl_storage_cluster_id(void);
/* the last revision this worker saw committed (for headers of answers that
 * do not read the store); 0 until known */
int64_t bl_storage_last_revision(void);
/* BL_OK when at least one connection to the database is up */
bl_int_t bl_storage_available(void);

/* counters for tests and metrics, per worker */
typedef struct {
    uint64_t   round_trips;      /* pipelines/queries sent and answered */
    uint64_t   statements;       /* statements inside them */
    uint64_t   write_batches;    /* transactions that carried writes */
    uint64_t   writes;           /* write requests committed */
    uint64_t   errors;           /* failed connections or queries */
    uint64_t   reconnects;
} bl_storage_stats_t;

extern bl_storage_stats_t  bl_storage_stats;

/* this process's pool connections by state, for metrics */
typedef struct {
    bl_uint_t  busy;             /* up, a round trip in flight */
    bl_uint_t  idle;             /* up, nothing in flight */
    bl_uint_t  connecting;       /* connecting, checking the schema or
                                    preparing statements */
    bl_uint_t  broken;           /* failed, waiting to connect again */
} bl_storage_pool_stats_t;

void bl_storage_pool_stats(bl_storage_pool_stats_t *ps);

const char *bl_storage_status_text(bl_storage_status_e st);

#endif /* BL_STORAGE_H */
