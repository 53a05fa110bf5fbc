/*
 * The PostgreSQL side of the storage layer (internal to src/storage).
 *
 * Each worker owns a small pool of asynchronous libpq connections driven by
 * its libev loop.  A connection, once up, checks or migrates the schema
 * (bl_pg_schema.c), prepares every statement of bl_pg_stmts[] and then runs
 * in pipeline mode, with binary parameters and results.
 *
 * Work goes out in batches.  A batch is one round trip: some statements and
 * a Sync, which makes them one implicit transaction.  Reads posted in the
 * same loop iteration share batches (each statement still reads its own
 * snapshot); writes queued while the worker's write batch is in flight go
 * out together as the next one (group commit): each write is its own
 * statement (a server-side function call) with its own revision and its
 * own result, and handlers are called only once the Sync confirmed the
 * commit.
 *
 * Every write batch ends with one more statement that NOTIFYs channel
 * "ballast" with the revision reached, if the batch took one (bl_pg_batch.c):
 * delivered at its commit, in commit order, once per batch.
 *
 * An operation kind (range, put, delete, txn, compact, log read, the lease
 * calls) is a bl_pg_op_type_t: how to send its one statement and how to
 * read its result.  Ops of a "merge" kind that wait in the same queue share
 * one statement (keepalives: one UPDATE for all of them).
 *
 * Files: bl_pg.c the connections (connect, schema check, prepare, failure),
 * bl_pg_batch.c the queues, batches and their results, bl_pg_binary.c the
 * binary wire format, bl_pg_schema.c the schema, its migrations and the
 * prepared statements, bl_pg_sql_kv.c + bl_pg_sql_txn.c +
 * bl_pg_sql_lease.c + bl_pg_sql_maint.c the server-side functions,
 * bl_pg_compact.c compaction, bl_pg_listen.c the connection that LISTENs
 * for commits, bl_pg_vacuum.c the connections that VACUUM; bl_storage*.c
 * the public API on top (bl_storage_log.c the log read for watches,
 * bl_storage_lease.c leases, bl_storage_maint.c maintenance, alarms and
 * nodes).
 */
#ifndef BL_PG_H
#define BL_PG_H

#include <libpq-fe.h>
#include <bl_event.h>
#include <bl_storage.h>

/* type oids used for binary parameters (fixed in the catalog) */
#define BL_PG_BOOLOID        16
#define BL_PG_BYTEAOID       17
#define BL_PG_INT8OID        20
#define BL_PG_INT4OID        23
#define BL_PG_BYTEAARRAYOID  1001
#define BL_PG_INT4ARRAYOID   1007
#define BL_PG_INT8ARRAYOID   1016
#define BL_PG_TEXTOID        25
#define BL_PG_TEXTARRAYOID   1009

#define BL_PG_MAX_CONNECTIONS  64
#define BL_PG_PIPELINE_DEPTH   16      /* batches in flight per connection */
#define BL_PG_MAX_QUEUED       10000   /* ops waiting in the worker */
#define BL_PG_BATCH_OPS        128     /* writes per group commit */
#define BL_PG_READ_BATCH_OPS   32      /* reads per round trip */
#define BL_PG_BATCH_BYTES      (1024 * 1024)
#define BL_PG_MERGE_OPS        8192    /* ops sharing one statement */

typedef struct bl_pg_conn_s   bl_pg_conn_t;
typedef struct bl_pg_batch_s  bl_pg_batch_t;

typedef struct {
    const char  *name;           /* for log messages */
    unsigned     write:1;        /* goes through group commit */
    unsigned     solo:1;         /* a batch (transaction) of its own */
    /*
     * merge: the ops of this kind queued when a batch is made go into it
     * together, right after the first, marked `merged`, and share its one
     * statement: send and result get the first and handle the group (the
     * ops from it on while `merged`); result is then called even when the
     * first was cancelled, and sets each live op's status and result.
     */
    unsigned     merge:1;
    /* send the op's one statement (PQsendQueryPrepared); BL_OK/BL_ERROR */
    bl_int_t   (*send)(PGconn *pc, bl_storage_op_t *op);
    /* its result (TUPLES_OK or COMMAND_OK): set op->status, op->result;
     * never called for a cancelled op (but see merge) */
    void       (*result)(bl_storage_op_t *op, PGresult *res);
    /*
     * optional: the batch committed (also called for a cancelled op, which
     * then has no result).  BL_AGAIN holds the op: its handler is called
     * later, by bl_pg_release(); anything else answers it now.
     */
    bl_int_t   (*committed)(bl_storage_op_t *op);
} bl_pg_op_type_t;

typedef struct {
    int64_t                  revision;
    unsigned                 physical:1;
} bl_pg_compact_req_t;

/* the lease calls: what each needs of it */
typedef struct {
    int64_t                  id;
    int64_t                  ttl;       /* grant */
    int64_t                  max;       /* expire */
    unsigned                 keys:1;    /* ttl */
} bl_pg_lease_req_t;

struct bl_storage_op_s {
    bl_storage_op_t         *next;      /* in a queue or a batch */
    bl_storage_op_t         *prev;
    const bl_pg_op_type_t   *type;
    bl_pool_t               *pool;      /* the caller's: results go here */
    bl_storage_handler_pt    handler;
    void                    *data;
    bl_pg_batch_t           *batch;     /* non-NULL while in flight */
    ev_timer                 timer;     /* request_timeout */
    bl_storage_status_e      status;
    void                    *result;
    size_t                   size;      /* about the bytes it sends */
    unsigned                 cancelled:1;
    unsigned                 done:1;    /* handler called (timed out) */
    unsigned                 held:1;    /* committed, answered later */
    unsigned                 merged:1;  /* shares the statement of the op
                                           before it in its batch */

    union {
        bl_range_req_t       range;
        bl_put_req_t         put;
        bl_delete_req_t      del;
        bl_pg_compact_req_t  compact;
        bl_log_req_t         log;
        bl_pg_lease_req_t    lease;
        void                *ptr;       /* kinds with bigger requests */
    } req;
};

/* o is in the group that shares first's statement (a merge kind's send
 * and result walk it: for (o = first; bl_pg_in_group(o, first); ...)) */
#define bl_pg_in_group(o, first)                                              \
    ((o) != NULL && ((o) == (first) || (o)->merged))

typedef struct {
    bl_storage_op_t         *head;
    bl_storage_op_t         *tail;
    bl_uint_t                n;
} bl_pg_queue_t;

struct bl_pg_batch_s {
    bl_pg_batch_t           *next;      /* the connection's FIFO */
    bl_pg_conn_t            *conn;
    bl_pg_queue_t            ops;       /* in statement order */
    bl_storage_op_t         *cur;       /* op whose result comes next */
    bl_uint_t                nstmts;
    size_t                   size;
    unsigned                 write:1;
    unsigned                 prepare:1; /* the statements of a new conn */
    unsigned                 notify:1;  /* a write batch's NOTIFY */
    unsigned                 got:1;     /* cur has had its result */
    unsigned                 failed:1;
};

typedef enum {
    BL_PG_CLOSED = 0,       /* waiting to reconnect */
    BL_PG_CONNECTING,
    BL_PG_SCHEMA,           /* checking or migrating the schema */
    BL_PG_PREPARING,
    BL_PG_READY
} bl_pg_state_e;

struct bl_pg_conn_s {
    PGconn                  *pc;
    bl_pg_state_e            state;
    bl_uint_t                index;
    int                      fd;
    int                      events;    /* of io, as started */
    ev_io                    io;
    ev_timer                 timer;     /* connect/setup deadline, backoff */
    int64_t                  backoff;   /* msec */
    bl_uint_t                failures;  /* in a row, for log levels */

    bl_pg_batch_t           *head;      /* in flight, oldest first */
    bl_pg_batch_t           *tail;
    bl_uint_t                inflight;
    unsigned                 writing:1; /* the worker's write batch */

    int                      schema_step;
    PGresult                *schema_res;
};

typedef struct {
    const char              *conninfo;  /* expanded as libpq's dbname */
    const char              *password;  /* NULL: none (or in conninfo) */
    bl_uint_t                connections;
    int64_t                  connect_timeout;  /* msec */
    int64_t                  request_timeout;  /* msec */
} bl_pg_conf_t;

/* the worker's pool (bl_pg.c, bl_pg_batch.c) */
typedef struct {
    bl_pg_conf_t             conf;
    bl_pg_conn_t            *conns;
    bl_uint_t                nconns;
    bl_uint_t                nready;
    bl_pg_queue_t            reads;
    bl_pg_queue_t            writes;
    bl_pg_queue_t            held;      /* committed, answered later */
    ev_prepare               dispatch;
    unsigned                 writing:1; /* a write batch is in flight */
    unsigned                 started:1;
} bl_pg_t;

extern bl_pg_t  bl_pg;

/* key range forms (bl_storage_range_form), as the SQL takes them */
#define BL_PG_FORM_KEY     0        /* range_end empty: one key */
#define BL_PG_FORM_FROM    1        /* range_end "\0": every key >= key */
#define BL_PG_FORM_RANGE   2        /* key <= k < range_end */

int bl_storage_range_form(const bl_str_t *range_end);

/* statement names */
#define BL_PG_STMT_RANGE_ONE         "bl_range_one"
#define BL_PG_STMT_RANGE_FROM        "bl_range_from"
#define BL_PG_STMT_RANGE_BETWEEN     "bl_range_between"
#define BL_PG_STMT_RANGE_ONE_AT      "bl_range_one_at"
#define BL_PG_STMT_RANGE_FROM_AT     "bl_range_from_at"
#define BL_PG_STMT_RANGE_BETWEEN_AT  "bl_range_between_at"
#define BL_PG_STMT_PUT               "bl_put"
#define BL_PG_STMT_DELETE            "bl_delete"
#define BL_PG_STMT_TXN               "bl_txn"
#define BL_PG_STMT_TXN_RO            "bl_txn_ro"
#define BL_PG_STMT_COMPACT           "bl_compact"
#define BL_PG_STMT_COMPACT_STEP      "bl_compact_step"
#define BL_PG_STMT_NOTIFY_MARK       "bl_notify_mark"
#define BL_PG_STMT_NOTIFY            "bl_notify"
#define BL_PG_STMT_LOG_ALL           "bl_log_all"
#define BL_PG_STMT_LOG_KEY           "bl_log_key"
#define BL_PG_STMT_LEASE_GRANT       "bl_lease_grant"
#define BL_PG_STMT_LEASE_REVOKE      "bl_lease_revoke"
#define BL_PG_STMT_LEASE_KEEPALIVE   "bl_lease_keepalive"
#define BL_PG_STMT_LEASE_TTL         "bl_lease_ttl"
#define BL_PG_STMT_LEASE_LIST        "bl_lease_list"
#define BL_PG_STMT_LEASE_EXPIRE      "bl_lease_expire"
#define BL_PG_STMT_LEASE_COUNT       "bl_lease_count"

/* the channel every write batch notifies (with its revision) */
#define BL_PG_CHANNEL                "ballast"

/*
 * The log reads of a key range (forms 1 and 2): not prepared but planned
 * for their parameters each time, since whether to walk the log in
 * revision order or the range's history by key depends on how much of
 * each there is (bl_storage_log.c)
 */
extern const char  bl_pg_log_from_sql[];
extern const char  bl_pg_log_range_sql[];

/* log rows a compaction step reads (each deletes at most two rows) */
#define BL_PG_COMPACT_STEP_ROWS      1000

/* prepared on every connection; later issues add rows */
typedef struct {
    const char              *name;
    const char              *sql;
    int                      nparams;
    const Oid               *types;
} bl_pg_stmt_t;

extern const bl_pg_stmt_t  bl_pg_stmts[];
extern const size_t        bl_pg_nstmts;

/* beyond this many log rows after a revision, a range at it walks the
 * log key by key instead of correcting the current rows (SQL text) */
#define BL_PG_DELTA_MAX  "10000"

/* server-side functions of migration 1: bl_pg_sql_kv.c (put, delete,
 * compares, ranges, compaction) and bl_pg_sql_txn.c (ballast_txn is
 * head + body + "$f$;", ballast_txn_ro ro_head + body + "$f$;") */
extern const char  bl_pg_sql_kv[];
extern const char  bl_pg_sql_compact[];
extern const char  bl_pg_sql_txn_head[];
extern const char  bl_pg_sql_txn_ro_head[];
extern const char  bl_pg_sql_txn_body[];
extern const char  bl_pg_sql_lease[];
/* maintenance, nodes and alarms (bl_pg_sql_maint.c): the functions, and
 * the statements, which are not prepared */
extern const char  bl_pg_sql_maint[];
extern const char  bl_pg_status_sql[];
extern const char  bl_pg_hash_kv_sql[];
extern const char  bl_pg_hash_sql[];
extern const char  bl_pg_alarm_sql[];
extern const char  bl_pg_members_sql[];
extern const char  bl_pg_node_tick_sql[];
extern const char  bl_pg_node_leave_sql[];

/* the worker's pool: start connecting / close everything (no handler is
 * called after bl_pg_done) */
bl_int_t bl_pg_init(const bl_pg_conf_t *conf);
void bl_pg_done(void);

/* BL_OK when a connection is ready */
bl_int_t bl_pg_available(void);

/* make an op (malloc), queue it; a status other than BL_ST_OK means it was
 * not queued (and not made) */
bl_storage_status_e bl_pg_post(const bl_pg_op_type_t *type, bl_pool_t *pool,
    bl_storage_handler_pt handler, void *data, const void *req,
    size_t req_size, size_t size, bl_storage_op_t **op);
void bl_pg_cancel(bl_storage_op_t *op);
/* answer a held op (see committed) and free it */
void bl_pg_release(bl_storage_op_t *op, bl_storage_status_e st,
    void *result);

/* between the files of the pool */
void bl_pg_queue_add(bl_pg_queue_t *q, bl_storage_op_t *op);
void bl_pg_queue_remove(bl_pg_queue_t *q, bl_storage_op_t *op);
void bl_pg_free_queue(bl_pg_queue_t *q);
void bl_pg_read(bl_pg_conn_t *c);
void bl_pg_batch_done(bl_pg_batch_t *b);
void bl_pg_batch_fail(bl_pg_batch_t *b);
void bl_pg_fail_queued(void);
void bl_pg_dispatch_handler(struct ev_loop *loop, ev_prepare *w,
    int revents);
void bl_pg_dispatch_start(void);
void bl_pg_conn_fail(bl_pg_conn_t *c, int level, const char *why);
void bl_pg_ready(bl_pg_conn_t *c);
bl_int_t bl_pg_flush(bl_pg_conn_t *c);
const char *bl_pg_where(PGconn *pc);

/* start connecting (PQconnectStartParams) with the pool's conninfo and
 * password; NULL when out of memory */
PGconn *bl_pg_connect_start(const char *application_name);

/* the LISTEN connection (bl_pg_listen.c) goes with the pool, and is told
 * when the pool's first connection comes up */
void bl_pg_listen_stop(void);
void bl_pg_listen_pool_up(void);

void bl_pg_seen_revision(int64_t rev);
/* an answer of the wrong shape: logged, the operation fails INTERNAL */
void bl_pg_op_invalid(bl_storage_op_t *op);
void bl_pg_set_cluster_id(int64_t id);

/*
 * Compaction's deletion of superseded history (bl_pg_compact.c), driven by
 * this worker's loop: kick starts it (or makes it look again) when a
 * compaction was recorded or a connection came up; stop forgets it (the
 * pool is going away).
 */
void bl_pg_compact_kick(void);
void bl_pg_compact_stop(void);

typedef struct {
    uint64_t                 steps;     /* transactions that deleted */
    uint64_t                 deleted;   /* log rows */
    uint64_t                 max_rows;  /* deleted by one step */
    uint64_t                 busy;      /* another process was at it */
    int64_t                  msec;      /* in steps, summed */
    int64_t                  max_msec;  /* the longest step */
    int64_t                  finished;  /* last seen finished revision */
} bl_pg_compact_stats_t;

extern bl_pg_compact_stats_t  bl_pg_compact_stats;

/* schema check/migration steps (bl_pg_schema.c): given the last result of
 * the previous step (NULL at first), set *sql to the next step's query and
 * return BL_AGAIN, or return BL_OK (schema current, *cluster_id set),
 * BL_ERROR (logged) or BL_DECLINED (schema newer than ours, logged) */
bl_int_t bl_pg_schema_step(int *step, PGresult *res, const char **sql,
    int64_t *cluster_id);
void bl_pg_schema_free(void);

/* binary field helpers; BL_ERROR on a NULL or malformed value */
bl_int_t bl_pg_int64(PGresult *res, int row, int col, int64_t *v);
bl_int_t bl_pg_int32(PGresult *res, int row, int col, int32_t *v);
bl_int_t bl_pg_bytes(bl_pool_t *pool, PGresult *res, int row, int col,
    bl_str_t *s);
void bl_pg_put_int64(u_char *p, int64_t v);
void bl_pg_put_int32(u_char *p, int32_t v);
/* a key-value from 6 columns from col on: key, create_rev, mod_rev,
 * version, lease, value (NULL value: empty); BL_ERROR on a bad field (the
 * caller logs) or out of memory */
bl_int_t bl_pg_kv(bl_pool_t *pool, PGresult *res, int row, int col,
    bl_kv_t *kv);

/*
 * Binary arrays (array_send's format) for parameters: the size of one of
 * ndim dimensions, n elements, data bytes of them in all; then the header
 * and each element, every call returning where the next write goes.
 */
size_t bl_pg_array_size(int ndim, size_t n, size_t data);
u_char *bl_pg_array_start(u_char *p, uint32_t elem_oid, int ndim,
    const int *dims, int has_null);
u_char *bl_pg_array_int32(u_char *p, int32_t v);
u_char *bl_pg_array_int64(u_char *p, int64_t v);
u_char *bl_pg_array_bytes(u_char *p, const u_char *data, size_t len);
u_char *bl_pg_array_null(u_char *p);

/* the message of a connection or result, on one line, for logs */
const char *bl_pg_conn_error(PGconn *pc);
const char *bl_pg_result_error(PGresult *res);

#endif /* BL_PG_H */
