/*
 * The etcd services: turn etcd's protobuf requests into storage calls and
 * storage results into etcd's responses, with etcd's exact error codes
 * and messages (clients match errors by their text).
 */
#ifndef BL_ETCD_H
#define BL_ETCD_H

#include <bl_grpc.h>
#include <bl_storage.h>
#include <rpc.pb-c.h>
#include <kv.pb-c.h>
#include <bl_etcd_stats.h>

typedef struct {
    size_t     max_request_bytes;    /* etcd --max-request-bytes */
    int64_t    max_txn_ops;          /* etcd --max-txn-ops */
    int64_t    progress_interval;    /* watch { progress_notify_interval } */
    size_t     watch_send_buffer;    /* watch { send_buffer } */
} bl_etcd_conf_t;

/* an etcd error: gRPC code + the exact message etcd sends */
typedef struct {
    int          code;
    const char  *message;
} bl_etcd_error_t;

extern const bl_etcd_error_t  bl_etcd_err_empty_key;
extern const bl_etcd_error_t  bl_etcd_err_key_not_found;
extern const bl_etcd_error_t  bl_etcd_err_value_provided;
extern const bl_etcd_error_t  bl_etcd_err_lease_provided;
extern const bl_etcd_error_t  bl_etcd_err_request_too_large;

bl_etcd_conf_t *bl_etcd_conf(void);

/* a response header with the store's identity and this revision */
Etcdserverpb__ResponseHeader *bl_etcd_header(bl_pool_t *pool,
    int64_t revision);

/* finish a call with an etcd error */
void bl_etcd_fail(bl_grpc_call_t *call, const bl_etcd_error_t *err);
/* finish a call with the etcd error for a storage status */
void bl_etcd_fail_storage(bl_grpc_call_t *call, bl_storage_status_e st);
/* a protobuf message that does not unpack: grpc-go's own answer */
void bl_etcd_fail_unpack(bl_grpc_call_t *call, const char *what);

/* send one message and finish the call with OK */
void bl_etcd_reply(bl_grpc_call_t *call, const ProtobufCMessage *msg);

/* the KV service's methods */
extern const bl_grpc_method_t  bl_etcd_kv_methods[];
extern const size_t            bl_etcd_kv_nmethods;

/* the Watch service's method (bl_etcd_watch.c) */
extern const bl_grpc_method_t  bl_etcd_watch_methods[];
extern const size_t            bl_etcd_watch_nmethods;

/* the Lease service's methods, and the expiry job the watcher process
 * runs (bl_etcd_lease.c) */
extern const bl_grpc_method_t  bl_etcd_lease_methods[];
extern const size_t            bl_etcd_lease_nmethods;
bl_int_t bl_etcd_lease_expiry_start(void);

#endif /* BL_ETCD_H */
