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
 * An operation kind (put, range; delete, txn, lease revoke later) is a
 * bl_pg_op_type_t: how to send its one statement and how to read its result.
 */
#ifndef BL_PG_H
#define BL_PG_H

#include <libpq-fe.h>
#include <bl_event.h>
#include <bl_storage.h>

/* type oids used for binary parameters (fixed in the catalog) */
#define BL_PG_BOOLOID    16
#define BL_PG_BYTEAOID   17
#define BL_PG_INT8OID    20
#define BL_PG_INT4OID    23

#define BL_PG_MAX_CONNECTIONS  64
#define BL_PG_PIPELINE_DEPTH   16      /* batches in flight per connection */
#define BL_PG_MAX_QUEUED       10000   /* ops waiting in the worker */
#define BL_PG_BATCH_OPS        128     /* writes per group commit */
#define BL_PG_READ_BATCH_OPS   32      /* reads per round trip */
#define BL_PG_BATCH_BYTES      (1024 * 1024)

typedef struct bl_pg_conn_s   bl_pg_conn_t;
typedef struct bl_pg_batch_s  bl_pg_batch_t;

typedef struct {
    const char  *name;           /* for log messages */
    unsigned     write:1;        /* goes through group commit */
    /* send the op's one statement (PQsendQueryPrepared); BL_OK/BL_ERROR */
    bl_int_t   (*send)(PGconn *pc, bl_storage_op_t *op);
    /* its result (TUPLES_OK or COMMAND_OK): set op->status, op->result;
     * never called for a cancelled op */
    void       (*result)(bl_storage_op_t *op, PGresult *res);
} bl_pg_op_type_t;

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

    union {
        bl_range_req_t       range;
        bl_put_req_t         put;
        void                *ptr;       /* kinds with bigger requests */
    } req;
};

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

/* statement names */
#define BL_PG_STMT_RANGE_ONE         "bl_range_one"
#define BL_PG_STMT_RANGE_FROM        "bl_range_from"
#define BL_PG_STMT_RANGE_BETWEEN     "bl_range_between"
#define BL_PG_STMT_RANGE_ONE_AT      "bl_range_one_at"
#define BL_PG_STMT_RANGE_FROM_AT     "bl_range_from_at"
#define BL_PG_STMT_RANGE_BETWEEN_AT  "bl_range_between_at"
#define BL_PG_STMT_PUT               "bl_put"

/* prepared on every connection; later issues add rows */
typedef struct {
    const char              *name;
    const char              *sql;
    int                      nparams;
    const Oid               *types;
} bl_pg_stmt_t;

extern const bl_pg_stmt_t  bl_pg_stmts[];
extern const size_t        bl_pg_nstmts;

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

void bl_pg_seen_revision(int64_t rev);
void bl_pg_set_cluster_id(int64_t id);

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

/* the message of a connection or result, on one line, for logs */
const char *bl_pg_conn_error(PGconn *pc);
const char *bl_pg_result_error(PGresult *res);

#endif /* BL_PG_H */
