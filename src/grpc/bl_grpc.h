/*
 * The gRPC transport as the services see it.  The transport (HTTP/2 via
 * nghttp2, gRPC message framing, status trailers, deadlines) knows nothing
 * of etcd: services register a table of methods by path and the transport
 * dispatches to it.
 *
 * A call's life:
 *   - the transport creates the call (own pool) when a stream's request
 *     headers name a registered method; an unknown path is answered
 *     UNIMPLEMENTED by the transport itself;
 *   - on_message() is called for each complete request message (for unary
 *     methods exactly once, after the client half-closed); the bytes stay
 *     valid until on_message returns (copy what you keep, into call->pool);
 *   - on_half_close() when the client ended its side (streaming methods);
 *   - the service answers with bl_grpc_send() (any number of times for
 *     server-streaming methods) and ends with bl_grpc_finish();
 *   - on_cancel() if the stream is reset, the connection closes, the
 *     deadline (grpc-timeout) expires or the worker shuts down before the
 *     service finished: the service abandons pending work (e.g. cancels
 *     its storage operations).  Only for a call the service has seen (an
 *     on_message or on_half_close was called): a call that ends while
 *     its request is still arriving is the transport's alone.  A
 *     streaming call with no on_half_close that the client ends without
 *     sending anything is answered OK by the transport.  After on_cancel
 *     returns, or after bl_grpc_finish(), the call and its pool belong to
 *     the transport and may be freed at once: never touch the call again;
 *   - on_drain(), if the service set it on the call, once, when the worker
 *     starts a graceful shutdown (reload, QUIT): the client has been sent
 *     GOAWAY and its new calls go to another worker, so a long-lived call
 *     (a Watch or KeepAlive stream) should end soon, e.g. UNAVAILABLE,
 *     which etcd clients take as "reconnect and resume".  Unary calls
 *     finish by themselves and need none.
 */
#ifndef BL_GRPC_H
#define BL_GRPC_H

#include <protobuf-c/protobuf-c.h>

/* gRPC status codes */
#define BL_GRPC_OK                   0
#define BL_GRPC_CANCELLED            1
#define BL_GRPC_UNKNOWN              2
#define BL_GRPC_INVALID_ARGUMENT     3
#define BL_GRPC_DEADLINE_EXCEEDED    4
#define BL_GRPC_NOT_FOUND            5
#define BL_GRPC_ALREADY_EXISTS       6
#define BL_GRPC_PERMISSION_DENIED    7
#define BL_GRPC_RESOURCE_EXHAUSTED   8
#define BL_GRPC_FAILED_PRECONDITION  9
#define BL_GRPC_ABORTED             10
#define BL_GRPC_OUT_OF_RANGE        11
#define BL_GRPC_UNIMPLEMENTED       12
#define BL_GRPC_INTERNAL            13
#define BL_GRPC_UNAVAILABLE         14
#define BL_GRPC_DATA_LOSS           15
#define BL_GRPC_UNAUTHENTICATED     16

#define BL_GRPC_UNARY          0x00
#define BL_GRPC_CLIENT_STREAM  0x01
#define BL_GRPC_SERVER_STREAM  0x02
#define BL_GRPC_BIDI           (BL_GRPC_CLIENT_STREAM | BL_GRPC_SERVER_STREAM)

typedef struct bl_grpc_call_s   bl_grpc_call_t;
typedef struct bl_grpc_method_s bl_grpc_method_t;

struct bl_grpc_method_s {
    const char   *path;       /* "/etcdserverpb.KV/Range" */
    bl_uint_t     flags;      /* BL_GRPC_UNARY, ... */
    void        (*on_message)(bl_grpc_call_t *call, const u_char *msg,
                              size_t len);
    void        (*on_half_close)(bl_grpc_call_t *call);   /* may be NULL */
    void        (*on_cancel)(bl_grpc_call_t *call);       /* may be NULL */
};

/* the part of a call the services may read and use */
struct bl_grpc_call_s {
    bl_pool_t               *pool;      /* lives as long as the call */
    void                    *data;      /* the service's own state */
    const bl_grpc_method_t  *method;
    const bl_str_t          *peer;      /* "127.0.0.1:53422" for logs */
    int64_t                  deadline;  /* ms of bl_msec_now(); 0 = none */
    void                   (*on_drain)(bl_grpc_call_t *call);  /* or NULL */
};

/* register methods (pointers kept); the last registration of a path wins */
bl_int_t bl_grpc_register(const bl_grpc_method_t *methods, size_t n);

/*
 * Queue one response message: packed with protobuf-c into the stream's
 * output (framed with the 5-byte gRPC prefix) and written as the peer's
 * flow control allows.  BL_ERROR if the call can no longer send (it is
 * being cancelled: on_cancel follows).
 */
bl_int_t bl_grpc_send(bl_grpc_call_t *call, const ProtobufCMessage *msg);

/*
 * Queue one response message that the service packed itself, as the
 * concatenation of these parts (a service that sends the same submessage
 * to many calls packs it once).  Returns as bl_grpc_send().
 */
bl_int_t bl_grpc_send_parts(bl_grpc_call_t *call, const bl_str_t *parts,
    size_t nparts);

/* bytes queued on this call and not yet written: for slow-reader bounds */
size_t bl_grpc_pending(bl_grpc_call_t *call);

/*
 * End the call with a status (and a message for errors, sent
 * percent-encoded in grpc-message).  Queued messages are sent first.
 */
void bl_grpc_finish(bl_grpc_call_t *call, int status, const char *message);

#endif /* BL_GRPC_H */
