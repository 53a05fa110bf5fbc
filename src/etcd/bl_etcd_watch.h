/*
 * The Watch service's own declarations, shared by its two files:
 * bl_etcd_watch.c (the stream, its requests, flow control) and
 * bl_etcd_watch_send.c (responses: events, fragments, control messages).
 */
#ifndef BL_ETCD_WATCH_H
#define BL_ETCD_WATCH_H

#include <bl_core.h>
#include <bl_event.h>
#include <bl_etcd.h>
#include <bl_watch.h>

/* etcd's watchBatchMaxRevs: revisions in one catch-up response */
#define BL_ETCD_WATCH_MAX_REVS     1000
/* etcd's grpcOverheadBytes: fragments stay under max_request_bytes + it */
#define BL_ETCD_WATCH_OVERHEAD     (512 * 1024)
/* while paused, how often the stream's output is looked at */
#define BL_ETCD_WATCH_DRAIN_MSEC   20
/* etcd's clientv3.InvalidWatchID: the id of failed creates and progress */
#define BL_ETCD_WATCH_INVALID_ID   -1

typedef Etcdserverpb__WatchRequest        bl_wreq_pb_t;
typedef Etcdserverpb__WatchCreateRequest  bl_wcreate_pb_t;
typedef Etcdserverpb__WatchResponse       bl_wresp_pb_t;

typedef struct bl_etcd_ws_s  bl_etcd_ws_t;
typedef struct bl_etcd_wt_s  bl_etcd_wt_t;

/* one watch of a stream */
struct bl_etcd_wt_s {
    bl_etcd_ws_t   *ws;
    /*
     * NULL once the layer ended it (compaction): as in etcd the id stays
     * taken, and a cancel_request for it is answered, until the client
     * cancels it or the stream ends.
     */
    bl_watch_t     *sub;
    int64_t         id;
    int64_t         start_rev;
    bl_etcd_wt_t   *hnext;        /* the stream's id hash */
    bl_etcd_wt_t   *prev;         /* the stream's watches */
    bl_etcd_wt_t   *next;
    bl_str_t        key;          /* copies, after this struct */
    bl_str_t        range_end;
    unsigned        prev_kv:1;
    unsigned        fragment:1;
    unsigned        progress_notify:1;
    unsigned        no_put:1;
    unsigned        no_delete:1;
    /* no events sent since the last progress tick (etcd's progress[id]) */
    unsigned        idle:1;
};

/* one Watch stream */
struct bl_etcd_ws_s {
    bl_grpc_call_t  *call;
    bl_pool_t       *tmp;          /* requests and responses being built */
    bl_uint_t        depth;        /* handlers on the stack using tmp */

    bl_etcd_wt_t   **hash;
    size_t           nhash;        /* a power of two, or 0 */
    size_t           nwatches;
    bl_etcd_wt_t    *first;
    bl_etcd_wt_t    *last;
    int64_t          next_id;      /* etcd's nextID: auto ids from 0 */

    ev_timer         progress_ev;  /* progress_notify ticks */
    ev_timer         flow_ev;      /* pause, and resume once drained */
    ev_timer         end_ev;       /* end the stream outside callbacks */

    int                  end_status;   /* gRPC status for end_ev */
    const char          *end_message;
    bl_storage_status_e  end_storage;  /* or this storage failure */

    unsigned         paused:1;
    unsigned         declined:1;   /* the layer paused a watch of ours */
    unsigned         ending:1;
};

/* bl_etcd_watch.c */
void bl_etcd_watch_abort(bl_etcd_ws_t *ws, int status, const char *message);
void bl_etcd_watch_oom(bl_etcd_ws_t *ws);
void bl_etcd_watch_enter(bl_etcd_ws_t *ws);
void bl_etcd_watch_leave(bl_etcd_ws_t *ws);

/* bl_etcd_watch_send.c */
/* a response with no events: created, canceled, progress */
void bl_etcd_watch_control(bl_etcd_ws_t *ws, int64_t revision, int64_t id,
    int created, int canceled, int64_t compact_rev, const char *reason);
/* the watch layer's callbacks (bl_watch_deliver_pt, bl_watch_fail_pt) */
bl_int_t bl_etcd_watch_deliver(void *data, const bl_watch_event_t *events,
    size_t n, int64_t through);
void bl_etcd_watch_fail(void *data, bl_storage_status_e st,
    int64_t compact_rev);

/* bl_etcd_watch_pack.c: events packed once per worker */
#define BL_ETCD_WATCH_HEAD_MAX  96
uint64_t bl_etcd_watch_pack_begin(void);
/* an event's kv (or prev_kv) as etcd sends it; points into kv's bytes */
void bl_etcd_watch_kv_init(Mvccpb__KeyValue *pb, const bl_kv_t *kv,
    int deleted);
const bl_str_t *bl_etcd_watch_pack_event(const bl_watch_event_t *ev,
    int with_prev, uint64_t seq, bl_pool_t *tmp);
size_t bl_etcd_watch_pack_head(bl_pool_t *tmp, int64_t revision, int64_t id,
    u_char *buf, size_t size);

#endif /* BL_ETCD_WATCH_H */
