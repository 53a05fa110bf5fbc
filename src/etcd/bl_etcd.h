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

/* stable and never decreasing: Patroni switches nodes if it drops */
#define BL_ETCD_RAFT_TERM      1

/* defragment: what Maintenance.Defragment runs */
#define BL_ETCD_DEFRAG_VACUUM  0
#define BL_ETCD_DEFRAG_FULL    1

/* a node whose watcher was heard from within this is a live member */
#define BL_ETCD_MEMBER_LIVE_SEC  5

typedef struct {
    size_t     max_request_bytes;    /* etcd --max-request-bytes */
    int64_t    max_txn_ops;          /* etcd --max-txn-ops */
    int64_t    progress_interval;    /* watch { progress_notify_interval } */
    size_t     watch_send_buffer;    /* watch { send_buffer } */
    size_t     quota;                /* limits { quota }: bytes, 0 off */
    bl_uint_t  defragment;           /* BL_ETCD_DEFRAG_* */
    bl_str_t  *client_urls;          /* advertise_client_urls, or made */
    size_t     nclient_urls;         /* from the listen addresses */
    bl_str_t   name;                 /* the node's name (core's) */
    uint64_t   member_id;            /* made from the name */
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
extern const bl_etcd_error_t  bl_etcd_err_nospace;

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

/* the Maintenance, Cluster and grpc.health.v1.Health services
 * (bl_etcd_maintenance.c, bl_etcd_cluster.c, bl_etcd_health.c) */
extern const bl_grpc_method_t  bl_etcd_maintenance_methods[];
extern const size_t            bl_etcd_maintenance_nmethods;
extern const bl_grpc_method_t  bl_etcd_cluster_methods[];
extern const size_t            bl_etcd_cluster_nmethods;
extern const bl_grpc_method_t  bl_etcd_health_methods[];
extern const size_t            bl_etcd_health_nmethods;

/* the client URLs of advertise_client_urls, or made from the listen
 * addresses (bl_etcd_cluster.c); BL_ERROR logged */
bl_int_t bl_etcd_cluster_init_conf(bl_cycle_t *cycle, bl_etcd_conf_t *ecf);

/*
 * This node in the cluster (bl_etcd_node.c).  The master maps a small
 * shared area; the watcher process of the node writes its heartbeat and
 * measures the database every second, raising NOSPACE over the quota,
 * and keeps in that area the alarms raised in the cluster and the size,
 * which the workers read there (no round trip per write).  leave: the
 * watcher takes the node off the member list, then calls done.
 */
bl_int_t bl_etcd_node_init_master(void);
bl_int_t bl_etcd_node_start(bl_etcd_conf_t *ecf);
void bl_etcd_node_leave(void (*done)(void));
/* 1 << type of each alarm raised in the cluster, as last seen */
uint32_t bl_etcd_alarms(void);
/* a worker changed the alarms: what they are now */
void bl_etcd_alarms_set(uint32_t active);
/* 1 if NOSPACE is raised: the caller answered the call with its error */
int bl_etcd_nospace(bl_grpc_call_t *call);
/* the database's size as last measured; -1: not yet */
void bl_etcd_db_size(int64_t *total, int64_t *in_use);

#endif /* BL_ETCD_H */
