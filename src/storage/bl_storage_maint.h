/*
 * The store's side of etcd's Maintenance and Cluster services, for a
 * server whose members share one database: its size, hashes of the key
 * space, the cluster-wide alarms, the nodes' heartbeats (the member list)
 * and VACUUM.  Calls and their results follow bl_storage.h: asynchronous,
 * one statement (one round trip) each, results in the caller's pool.
 */
#ifndef BL_STORAGE_MAINT_H
#define BL_STORAGE_MAINT_H

#include <bl_storage.h>

/* etcd's AlarmType values, and the action of an Alarm request */
#define BL_ALARM_NONE        0
#define BL_ALARM_NOSPACE     1
#define BL_ALARM_CORRUPT     2

#define BL_ALARM_GET         0
#define BL_ALARM_ACTIVATE    1
#define BL_ALARM_DEACTIVATE  2

typedef struct {
    uint64_t   member_id;
    int32_t    alarm;
} bl_alarm_t;

typedef struct {
    int64_t      header_revision;
    int64_t      compact_revision;
    int64_t      db_size;          /* bytes of ballast's tables; -1: not */
    int64_t      db_size_in_use;   /* measured now (a table was locked) */
    bl_alarm_t  *alarms;           /* every alarm raised */
    size_t       nalarms;
} bl_status_res_t;

/* HashKV and Hash (which sets hash and header_revision only) */
typedef struct {
    int64_t      header_revision;
    int64_t      compact_revision;
    int64_t      hash_revision;    /* the revision hashed */
    uint32_t     hash;
} bl_hash_res_t;

typedef struct {
    bl_alarm_t  *alarms;           /* GET: the matches; ACTIVATE: the one;
                                    * DEACTIVATE: the one removed, if any */
    size_t       nalarms;
    uint32_t     active;           /* afterwards: 1 << type of each alarm
                                    * raised in the cluster */
} bl_alarm_res_t;

typedef struct {
    uint64_t     id;
    bl_str_t     name;
    bl_str_t    *client_urls;
    size_t       nclient_urls;
} bl_member_t;

typedef struct {
    bl_member_t *members;          /* by id as the database orders it */
    size_t       nmembers;
} bl_members_res_t;

/* a node's heartbeat: the bytes pointed to must outlive the call */
typedef struct {
    uint64_t         id;           /* the member id */
    bl_str_t         name;
    const bl_str_t  *client_urls;
    size_t           nclient_urls;
    uint64_t         instance;     /* this run of the node's watcher */
    int64_t          quota;        /* bytes; 0: no quota */
} bl_node_req_t;

typedef struct {
    int64_t      db_size;          /* -1: not measured this time */
    int64_t      db_size_in_use;
    unsigned     raised:1;         /* this call raised NOSPACE */
    bl_alarm_t  *alarms;
    size_t       nalarms;
    uint32_t     active;           /* as in bl_alarm_res_t */
} bl_node_tick_res_t;

/* result: bl_status_res_t * */
bl_storage_status_e bl_storage_status(bl_pool_t *pool,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/*
 * result: bl_hash_res_t *.  revision <= 0: the current one; at or below
 * the compact revision -> BL_ST_COMPACTED, above the current one ->
 * BL_ST_FUTURE_REV.  Equal on every node for the same revision and
 * history; unchanged by later writes or by the progress of a compaction.
 */
bl_storage_status_e bl_storage_hash_kv(bl_pool_t *pool, int64_t revision,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/* result: bl_hash_res_t *, a hash of the current key-values */
bl_storage_status_e bl_storage_hash(bl_pool_t *pool,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/* result: bl_alarm_res_t *; etcd's semantics (alarm NONE in a GET: all) */
bl_storage_status_e bl_storage_alarm(bl_pool_t *pool, int action,
    uint64_t member_id, int32_t alarm, bl_storage_handler_pt handler,
    void *data, bl_storage_op_t **op);
/* result: bl_members_res_t *: the nodes heard from within live_sec */
bl_storage_status_e bl_storage_members(bl_pool_t *pool, int64_t live_sec,
    bl_storage_handler_pt handler, void *data, bl_storage_op_t **op);
/*
 * result: bl_node_tick_res_t *.  The heartbeat (the node's row, written
 * with its instance), the size of the database and, when it is over a
 * non-zero quota, the node's NOSPACE alarm; the alarms then raised.
 */
bl_storage_status_e bl_storage_node_tick(bl_pool_t *pool,
    const bl_node_req_t *req, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);
/* result: NULL: the node's row is gone, unless another instance wrote it */
bl_storage_status_e bl_storage_node_leave(bl_pool_t *pool, uint64_t id,
    uint64_t instance, bl_storage_handler_pt handler, void *data,
    bl_storage_op_t **op);

/*
 * VACUUM (ANALYZE) of ballast's tables, FULL when asked: on a connection
 * of its own (VACUUM runs neither in a transaction nor in a pipeline),
 * with no time limit.  The handler gets no result.  Cancelled, the
 * handler is not called; the VACUUM runs to its end, then its connection
 * closes.
 */
typedef struct bl_storage_vacuum_s  bl_storage_vacuum_t;

bl_storage_status_e bl_storage_vacuum(int full,
    bl_storage_handler_pt handler, void *data, bl_storage_vacuum_t **op);
void bl_storage_vacuum_cancel(bl_storage_vacuum_t *op);

#endif /* BL_STORAGE_MAINT_H */
