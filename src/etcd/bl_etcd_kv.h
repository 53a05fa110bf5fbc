/*
 * Pieces of the KV service shared by its RPCs and by Txn, whose ops are
 * the same requests: checks, conversion to storage requests, and building
 * responses from storage results.
 */
#ifndef BL_ETCD_KV_H
#define BL_ETCD_KV_H

#include <bl_etcd.h>

typedef Etcdserverpb__RangeRequest        bl_range_pb_t;
typedef Etcdserverpb__RangeResponse       bl_range_resp_pb_t;
typedef Etcdserverpb__PutRequest          bl_put_pb_t;
typedef Etcdserverpb__PutResponse         bl_put_resp_pb_t;
typedef Etcdserverpb__DeleteRangeRequest  bl_delete_pb_t;
typedef Etcdserverpb__DeleteRangeResponse bl_delete_resp_pb_t;
typedef Etcdserverpb__TxnRequest          bl_txn_pb_t;
typedef Etcdserverpb__TxnResponse         bl_txn_resp_pb_t;

/* NULL when the request is valid, else etcd's error for it */
const bl_etcd_error_t *bl_etcd_range_check(const bl_range_pb_t *r);
const bl_etcd_error_t *bl_etcd_put_check(const bl_put_pb_t *p);
const bl_etcd_error_t *bl_etcd_delete_check(const bl_delete_pb_t *d);

void bl_etcd_range_prepare(const bl_range_pb_t *r, bl_range_req_t *req);
void bl_etcd_put_prepare(const bl_put_pb_t *p, bl_put_req_t *req);
void bl_etcd_delete_prepare(const bl_delete_pb_t *d, bl_delete_req_t *req);

/* responses; h is the header to use (full, or revision-only inside Txn);
 * NULL on out-of-memory */
bl_range_resp_pb_t *bl_etcd_range_build(bl_pool_t *pool,
    const bl_range_pb_t *r, const bl_range_res_t *res,
    Etcdserverpb__ResponseHeader *h);
bl_put_resp_pb_t *bl_etcd_put_build(bl_pool_t *pool, const bl_put_res_t *res,
    Etcdserverpb__ResponseHeader *h);
bl_delete_resp_pb_t *bl_etcd_delete_build(bl_pool_t *pool,
    const bl_delete_res_t *res, Etcdserverpb__ResponseHeader *h);

/* a header with only the revision: what etcd puts in Txn sub-responses */
Etcdserverpb__ResponseHeader *bl_etcd_sub_header(bl_pool_t *pool,
    int64_t revision);

/* one KV RPC waiting for the store */
typedef struct {
    bl_grpc_call_t    *call;
    bl_storage_op_t   *op;
    void              *request;    /* the unpacked request */
} bl_etcd_kv_ctx_t;

bl_etcd_kv_ctx_t *bl_etcd_kv_ctx(bl_grpc_call_t *call, void *request);
void bl_etcd_kv_cancel(bl_grpc_call_t *call);
/* after a storage call: a status other than BL_ST_OK ends the RPC */
void bl_etcd_kv_started(bl_etcd_kv_ctx_t *ctx, bl_storage_status_e st);
/* in a storage handler: 1 if the status ended the RPC with its error */
int bl_etcd_kv_failed(bl_etcd_kv_ctx_t *ctx, bl_storage_status_e st);
/* reply with a built message; NULL (out of memory while building) ends
 * the RPC with RESOURCE_EXHAUSTED */
void bl_etcd_reply_built(bl_grpc_call_t *call, const ProtobufCMessage *msg);

void bl_etcd_txn(bl_grpc_call_t *call, const u_char *msg, size_t len);

#endif /* BL_ETCD_KV_H */
