/*
 * etcdserverpb.Watch/Watch: the bidi stream of create, cancel and
 * progress requests, and of the responses, on top of the watch layer's
 * subscriptions (bl_watch.h).  Each stream is its own namespace of watch
 * ids.  What etcd 3.4 does, and where we differ on purpose, is said where
 * it is done; the Watch rows of CONFORMANCE.md are the reference.
 *
 * Memory: a stream's state lives in its call's pool; each watch is
 * malloc()ed and freed when it is cancelled, because one stream may see
 * any number of watches come and go (clientv3 multiplexes them all onto
 * one stream for hours).  Responses are built in a scratch pool that is
 * reset once the outermost handler returns: bl_grpc_send() copies each
 * message into the stream's output at once.
 */
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
    unsigned         ending:1;
};

static void bl_etcd_watch_message(bl_grpc_call_t *call, const u_char *msg,
    size_t len);
static void bl_etcd_watch_half_close(bl_grpc_call_t *call);
static void bl_etcd_watch_cancel_call(bl_grpc_call_t *call);

const bl_grpc_method_t  bl_etcd_watch_methods[] = {
    { "/etcdserverpb.Watch/Watch", BL_GRPC_BIDI, bl_etcd_watch_message,
      bl_etcd_watch_half_close, bl_etcd_watch_cancel_call },
};

const size_t  bl_etcd_watch_nmethods = bl_nelems(bl_etcd_watch_methods);

static const u_char  bl_etcd_watch_zero[1] = { 0 };

/* the stream's watches by id */

static size_t
bl_etcd_watch_slot(const bl_etcd_ws_t *ws, int64_t id)
{
    uint64_t  h;

    h = (uint64_t) id * 0x9e3779b97f4a7c15ULL;
    return (size_t) (h >> 32) & (ws->nhash - 1);
}

static bl_etcd_wt_t *
bl_etcd_watch_find(const bl_etcd_ws_t *ws, int64_t id)
{
    bl_etcd_wt_t  *wt;

    if (ws->nhash == 0) {
        return NULL;
    }
    for (wt = ws->hash[bl_etcd_watch_slot(ws, id)]; wt; wt = wt->hnext) {
        if (wt->id == id) {
            return wt;
        }
    }
    return NULL;
}

static bl_int_t
bl_etcd_watch_insert(bl_etcd_ws_t *ws, bl_etcd_wt_t *wt)
{
    size_t          i, n, slot;
    bl_etcd_wt_t  **old, *w, *next;

    if (ws->nwatches >= ws->nhash) {
        n = ws->nhash ? 2 * ws->nhash : 8;
        old = ws->hash;
        ws->hash = bl_calloc(n * sizeof(bl_etcd_wt_t *));
        if (ws->hash == NULL) {
            ws->hash = old;
            return BL_ERROR;
        }
        i = ws->nhash;
        ws->nhash = n;
        while (i-- > 0) {
            for (w = old[i]; w; w = next) {
                next = w->hnext;
                slot = bl_etcd_watch_slot(ws, w->id);
                w->hnext = ws->hash[slot];
                ws->hash[slot] = w;
            }
        }
        free(old);
    }

    slot = bl_etcd_watch_slot(ws, wt->id);
    wt->hnext = ws->hash[slot];
    ws->hash[slot] = wt;

    wt->prev = ws->last;
    wt->next = NULL;
    if (ws->last) {
        ws->last->next = wt;
    } else {
        ws->first = wt;
    }
    ws->last = wt;
    ws->nwatches++;
    return BL_OK;
}

/* unlink, end its subscription, free it */
static void
bl_etcd_watch_delete(bl_etcd_ws_t *ws, bl_etcd_wt_t *wt)
{
    bl_etcd_wt_t  **pp;

    for (pp = &ws->hash[bl_etcd_watch_slot(ws, wt->id)]; *pp;
         pp = &(*pp)->hnext)
    {
        if (*pp == wt) {
            *pp = wt->hnext;
            break;
        }
    }
    if (wt->prev) {
        wt->prev->next = wt->next;
    } else {
        ws->first = wt->next;
    }
    if (wt->next) {
        wt->next->prev = wt->prev;
    } else {
        ws->last = wt->prev;
    }
    ws->nwatches--;

    if (wt->sub) {
        bl_watch_remove(wt->sub);
    }
    free(wt);
}

/* the stream's life */

static void bl_etcd_watch_progress_tick(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_etcd_watch_flow(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_etcd_watch_end_handler(struct ev_loop *loop, ev_timer *w,
    int revents);

static bl_etcd_ws_t *
bl_etcd_watch_stream(bl_grpc_call_t *call)
{
    bl_etcd_ws_t  *ws;
    double         interval;

    ws = bl_pcalloc(call->pool, sizeof(bl_etcd_ws_t));
    if (ws == NULL) {
        return NULL;
    }
    ws->tmp = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (ws->tmp == NULL) {
        return NULL;
    }
    ws->call = call;

    /*
     * etcd ticks once per stream, every interval plus up to 10% jitter
     * (so that streams opened together do not tick together), from the
     * stream's start.
     */
    interval = (double) bl_etcd_conf()->progress_interval / 1000.0;
    interval += interval / 10.0 * ((double) random() / RAND_MAX);
    ev_timer_init(&ws->progress_ev, bl_etcd_watch_progress_tick, interval,
                  interval);
    ws->progress_ev.data = ws;
    ev_timer_start(bl_loop, &ws->progress_ev);

    ev_init(&ws->flow_ev, bl_etcd_watch_flow);
    ws->flow_ev.data = ws;
    ev_init(&ws->end_ev, bl_etcd_watch_end_handler);
    ws->end_ev.data = ws;

    call->data = ws;
    return ws;
}

/* every watch ended, everything freed but the call's pool */
static void
bl_etcd_watch_close(bl_etcd_ws_t *ws)
{
    ev_timer_stop(bl_loop, &ws->progress_ev);
    ev_timer_stop(bl_loop, &ws->flow_ev);
    ev_timer_stop(bl_loop, &ws->end_ev);

    while (ws->first) {
        bl_etcd_watch_delete(ws, ws->first);
    }
    free(ws->hash);
    ws->hash = NULL;
    ws->nhash = 0;

    if (ws->tmp) {
        bl_pool_destroy(ws->tmp);
        ws->tmp = NULL;
    }
    ws->call->data = NULL;
}

/*
 * End the stream with a status.  From the layer's callbacks the other
 * subscriptions may not be removed, so it is done from the loop, at once;
 * until then the stream sends nothing more.
 */
static void
bl_etcd_watch_abort(bl_etcd_ws_t *ws, int status, const char *message)
{
    if (ws->ending) {
        return;
    }
    ws->ending = 1;
    ws->end_status = status;
    ws->end_message = message;
    bl_timer_set(&ws->end_ev, 0);
}

static void
bl_etcd_watch_end_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_etcd_ws_t         *ws = w->data;
    bl_grpc_call_t       *call = ws->call;
    int                   status;
    const char           *message;
    bl_storage_status_e   st;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    status = ws->end_status;
    message = ws->end_message;
    st = ws->end_storage;
    bl_etcd_watch_close(ws);
    if (st != BL_ST_OK) {
        bl_etcd_fail_storage(call, st);
    } else {
        bl_grpc_finish(call, status, message);
    }
}

static void
bl_etcd_watch_oom(bl_etcd_ws_t *ws)
{
    bl_log_error(BL_LOG_ERR, 0, "out of memory on a Watch stream, "
                 "client: %.*s", BL_STR_ARGS(ws->call->peer));
    bl_etcd_watch_abort(ws, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* the scratch pool is reset when the outermost user returns */

static void
bl_etcd_watch_enter(bl_etcd_ws_t *ws)
{
    ws->depth++;
}

static void
bl_etcd_watch_leave(bl_etcd_ws_t *ws)
{
    if (--ws->depth == 0 && ws->tmp) {
        bl_pool_reset(ws->tmp);
    }
}

/* responses */

static bl_wresp_pb_t *
bl_etcd_watch_response(bl_etcd_ws_t *ws, int64_t revision, int64_t id)
{
    bl_wresp_pb_t  *r;

    r = bl_palloc(ws->tmp, sizeof(bl_wresp_pb_t));
    if (r == NULL) {
        return NULL;
    }
    etcdserverpb__watch_response__init(r);
    r->header = bl_etcd_header(ws->tmp, revision);
    if (r->header == NULL) {
        return NULL;
    }
    r->watch_id = id;
    return r;
}

static void
bl_etcd_watch_send(bl_etcd_ws_t *ws, const bl_wresp_pb_t *r)
{
    if (ws->ending) {
        return;
    }
    /* BL_ERROR: the call is being cancelled, on_cancel follows */
    (void) bl_grpc_send(ws->call, &r->base);

    if (bl_grpc_pending(ws->call) > bl_etcd_conf()->watch_send_buffer
        && !ws->paused && !ev_is_active(&ws->flow_ev))
    {
        /* pausing the others is not allowed from the layer's callbacks */
        bl_timer_set(&ws->flow_ev, 0);
    }
}

/* a response with no events: created, canceled, progress */
static void
bl_etcd_watch_control(bl_etcd_ws_t *ws, int64_t revision, int64_t id,
    int created, int canceled, int64_t compact_rev, const char *reason)
{
    bl_wresp_pb_t  *r;

    r = bl_etcd_watch_response(ws, revision, id);
    if (r == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }
    r->created = created;
    r->canceled = canceled;
    r->compact_revision = compact_rev;
    if (reason) {
        r->cancel_reason = (char *) reason;
    }
    bl_etcd_watch_send(ws, r);
}

static Mvccpb__KeyValue *
bl_etcd_watch_kv(bl_pool_t *pool, const bl_kv_t *kv, int deleted)
{
    Mvccpb__KeyValue  *pb;

    pb = bl_palloc(pool, sizeof(Mvccpb__KeyValue));
    if (pb == NULL) {
        return NULL;
    }
    mvccpb__key_value__init(pb);
    pb->key.data = kv->key.data;
    pb->key.len = kv->key.len;
    pb->mod_revision = kv->mod_revision;
    if (!deleted) {
        /* a DELETE event's kv is the key and the deleting revision only */
        pb->create_revision = kv->create_revision;
        pb->version = kv->version;
        pb->lease = kv->lease;
        pb->value.data = kv->value.data;
        pb->value.len = kv->value.len;
    }
    return pb;
}

static size_t
bl_etcd_varint_len(uint64_t n)
{
    size_t  len;

    for (len = 1; n >= 0x80; n >>= 7) {
        len++;
    }
    return len;
}

/*
 * etcd's sendFragments: a response of max_request_bytes + 512 KiB or
 * more, with two events or more, goes out in parts cut at event
 * boundaries, each part under the limit (or a single event), every part
 * but the last marked fragment.  A part's size is what etcd measures: the
 * response with fragment set and that part's events.
 */
static void
bl_etcd_watch_send_fragments(bl_etcd_ws_t *ws, bl_wresp_pb_t *r)
{
    size_t          limit, base, size, i, start, n;
    size_t         *evsize;
    Mvccpb__Event **events;

    limit = bl_etcd_conf()->max_request_bytes + BL_ETCD_WATCH_OVERHEAD;

    if (r->n_events < 2
        || etcdserverpb__watch_response__get_packed_size(r) < limit)
    {
        bl_etcd_watch_send(ws, r);
        return;
    }

    events = r->events;
    n = r->n_events;
    evsize = bl_palloc(ws->tmp, n * sizeof(size_t));
    if (evsize == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }
    for (i = 0; i < n; i++) {
        size = mvccpb__event__get_packed_size(events[i]);
        evsize[i] = 1 + bl_etcd_varint_len(size) + size;
    }

    r->n_events = 0;
    r->fragment = 1;
    base = etcdserverpb__watch_response__get_packed_size(r);

    for (i = 0; i < n; ) {
        start = i;
        size = base;
        while (i < n) {
            size += evsize[i];
            if (i > start && size >= limit) {
                break;
            }
            i++;
        }
        r->events = &events[start];
        r->n_events = i - start;
        r->fragment = (i < n);
        bl_etcd_watch_send(ws, r);
    }
}

/* the events of whole revisions, filtered, as one response (or parts) */
static void
bl_etcd_watch_send_events(bl_etcd_wt_t *wt, const bl_watch_event_t *evs,
    size_t n, int64_t through)
{
    size_t            i, k;
    bl_etcd_ws_t     *ws = wt->ws;
    bl_wresp_pb_t    *r;
    Mvccpb__Event    *ev, **events;
    int               deleted;

    events = bl_palloc(ws->tmp, n * sizeof(Mvccpb__Event *));
    if (events == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }

    for (i = 0, k = 0; i < n; i++) {
        deleted = (evs[i].type == BL_WATCH_DELETE);
        if (deleted ? wt->no_delete : wt->no_put) {
            continue;
        }
        ev = bl_palloc(ws->tmp, sizeof(Mvccpb__Event));
        if (ev == NULL) {
            bl_etcd_watch_oom(ws);
            return;
        }
        mvccpb__event__init(ev);
        ev->type = deleted ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                           : MVCCPB__EVENT__EVENT_TYPE__PUT;
        ev->kv = bl_etcd_watch_kv(ws->tmp, &evs[i].kv, deleted);
        if (ev->kv == NULL) {
            bl_etcd_watch_oom(ws);
            return;
        }
        /* etcd: none for a creation, none once compacted */
        if (wt->prev_kv && evs[i].has_prev) {
            ev->prev_kv = bl_etcd_watch_kv(ws->tmp, &evs[i].prev, 0);
            if (ev->prev_kv == NULL) {
                bl_etcd_watch_oom(ws);
                return;
            }
        }
        events[k++] = ev;
    }

    if (k == 0) {
        /* etcd sends nothing when the filters dropped every event */
        return;
    }

    /*
     * The header is the revision the store is known to have reached, as
     * etcd's: the event's own for a live one (the worker has not yet
     * counted it reached when it delivers it), the store's for a catch-up
     * batch (even one cut at 1000 revisions); so it never goes below a
     * header sent before on the stream.
     */
    r = bl_etcd_watch_response(ws, bl_max(through, bl_watch_revision()),
                               wt->id);
    if (r == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }
    r->events = events;
    r->n_events = k;
    bl_etcd_stats.watch_events += k;

    if (wt->fragment) {
        bl_etcd_watch_send_fragments(ws, r);
    } else {
        bl_etcd_watch_send(ws, r);
    }

    /* etcd: a response with events elides the next progress notification */
    wt->idle = 0;
}

/* the layer's callbacks */

static void
bl_etcd_watch_deliver(void *data, const bl_watch_event_t *events, size_t n,
    int64_t through)
{
    bl_etcd_wt_t  *wt = data;
    bl_etcd_ws_t  *ws = wt->ws;
    size_t         i, j, revs;
    int64_t        rev;

    if (ws->ending) {
        return;
    }
    bl_etcd_watch_enter(ws);

    /* at most etcd's 1000 revisions per response, counted unfiltered */
    for (i = 0; i < n && !ws->ending; i = j) {
        revs = 0;
        rev = 0;
        for (j = i; j < n; j++) {
            if (j == i || events[j].kv.mod_revision != rev) {
                if (revs == BL_ETCD_WATCH_MAX_REVS) {
                    break;
                }
                revs++;
                rev = events[j].kv.mod_revision;
            }
        }
        bl_etcd_watch_send_events(wt, &events[i], j - i, through);
    }

    bl_etcd_watch_leave(ws);
}

static void
bl_etcd_watch_fail(void *data, bl_storage_status_e st, int64_t compact_rev)
{
    bl_etcd_wt_t  *wt = data;
    bl_etcd_ws_t  *ws = wt->ws;

    wt->sub = NULL;             /* the layer removed it */

    if (st != BL_ST_COMPACTED) {
        /*
         * The log cannot be read: end the stream, rather than have this
         * watch hang in silence, with the storage error; clientv3 takes
         * Unavailable (and Internal) as "reconnect and resume from the
         * last revision", so a full queue is told as Unavailable too.
         */
        if (st == BL_ST_TOO_MANY_REQUESTS) {
            st = BL_ST_UNAVAILABLE;
        }
        if (!ws->ending) {
            bl_etcd_watch_abort(ws, 0, NULL);
            ws->end_storage = st;
        }
        return;
    }

    /* etcd: no header revision, the compact revision, canceled */
    bl_etcd_watch_enter(ws);
    bl_etcd_watch_control(ws, 0, wt->id, 0, 1, compact_rev, NULL);
    bl_etcd_watch_leave(ws);
}

/* requests */

static void
bl_etcd_watch_create(bl_etcd_ws_t *ws, const bl_wcreate_pb_t *c)
{
    bl_str_t       key, end;
    bl_etcd_wt_t  *wt;
    int64_t        id, rev, start, compact;
    size_t         i;

    key.data = c->key.data;
    key.len = c->key.len;
    if (key.len == 0) {
        /* etcd: "\0" is the smallest key */
        key.data = (u_char *) bl_etcd_watch_zero;
        key.len = 1;
    }
    end.data = c->range_end.data;
    end.len = c->range_end.len;

    rev = bl_watch_revision();

    /* etcd checks the range first, then the id; "\0" means from key on */
    if (end.len > 0 && !(end.len == 1 && end.data[0] == 0)
        && bl_str_cmp(&key, &end) >= 0)
    {
        bl_etcd_watch_control(ws, rev, BL_ETCD_WATCH_INVALID_ID, 1, 1, 0,
                              "mvcc: watcher range is empty");
        return;
    }

    if (c->watch_id == 0) {
        while (bl_etcd_watch_find(ws, ws->next_id)) {
            ws->next_id++;
        }
        id = ws->next_id++;

    } else if (bl_etcd_watch_find(ws, c->watch_id)) {
        bl_etcd_watch_control(ws, rev, BL_ETCD_WATCH_INVALID_ID, 1, 1, 0,
                       "mvcc: duplicate watch ID provided on the WatchStream");
        return;

    } else {
        id = c->watch_id;
    }

    wt = bl_alloc(sizeof(bl_etcd_wt_t) + key.len + end.len);
    if (wt == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }
    memset(wt, 0, sizeof(bl_etcd_wt_t));
    wt->ws = ws;
    wt->id = id;
    wt->key.data = (u_char *) (wt + 1);
    wt->key.len = key.len;
    memcpy(wt->key.data, key.data, key.len);
    wt->range_end.data = wt->key.data + key.len;
    wt->range_end.len = end.len;
    if (end.len) {
        memcpy(wt->range_end.data, end.data, end.len);
    }
    wt->prev_kv = c->prev_kv;
    wt->fragment = c->fragment;
    wt->progress_notify = c->progress_notify;
    wt->idle = 1;
    for (i = 0; i < c->n_filters; i++) {
        if (c->filters[i]
            == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
        {
            wt->no_put = 1;
        } else if (c->filters[i]
                   == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
        {
            wt->no_delete = 1;
        }
    }

    if (bl_etcd_watch_insert(ws, wt) != BL_OK) {
        free(wt);
        bl_etcd_watch_oom(ws);
        return;
    }

    /* announced before anything else of it is sent */
    bl_etcd_watch_control(ws, rev, id, 1, 0, 0, NULL);

    /* 0 is "after bl_watch_revision()" for the layer too, which also
     * knows what that means before it has learnt the store's revision */
    start = c->start_revision;
    if (start < 0) {
        /*
         * etcd 3.4 compares a negative start with its compact revision,
         * -1 when the store was never compacted: below it the watch is
         * compacted at once; -1 itself reads no history and goes on from
         * now.  (3.5.24+ refuses negative starts.)
         */
        compact = bl_watch_compact_revision();
        if (compact <= 0) {
            compact = -1;
        }
        if (start < compact) {
            bl_etcd_watch_control(ws, 0, id, 0, 1, compact, NULL);
            return;
        }
        start = 0;
    }
    wt->start_rev = start ? start : rev + 1;

    wt->sub = bl_watch_add(&wt->key, &wt->range_end, start,
                           bl_etcd_watch_deliver, bl_etcd_watch_fail, wt);
    if (wt->sub == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }
    if (ws->paused) {
        bl_watch_pause(wt->sub);
    }
}

static void
bl_etcd_watch_cancel(bl_etcd_ws_t *ws, int64_t id)
{
    bl_etcd_wt_t  *wt;

    wt = bl_etcd_watch_find(ws, id);
    if (wt == NULL) {
        /* etcd: an unknown id gets no answer */
        return;
    }
    bl_etcd_watch_delete(ws, wt);
    bl_etcd_watch_control(ws, bl_watch_revision(), id, 0, 1, 0, NULL);
}

/*
 * May progress at `rev` be reported for this watch?  Only once it was
 * sent every event up to rev (then the report is in order on the
 * stream), and not while its start is still ahead of rev (etcd 3.4.38+,
 * 3.5.22+: a client would take it for the watch's progress).
 */
static int
bl_etcd_watch_progressed(const bl_etcd_wt_t *wt, int64_t rev)
{
    return bl_watch_synced(wt->sub) && wt->start_rev - 1 <= rev;
}

/*
 * RequestProgress.  etcd 3.4.23 answers at once from its control path, in
 * no order with the events; etcd 3.4.31+ and 3.5.13+ answer only when
 * every watch of the stream is synced, and drop the request otherwise
 * (clients ask again): so do we, for that ordering is what kube-apiserver
 * relies on.  A stream without watches is answered, as 3.4.23 does
 * (3.5.13+ answers nothing there).
 */
static void
bl_etcd_watch_progress(bl_etcd_ws_t *ws)
{
    bl_etcd_wt_t  *wt;
    int64_t        rev;

    rev = bl_watch_revision();
    for (wt = ws->first; wt; wt = wt->next) {
        if (wt->sub && !bl_etcd_watch_progressed(wt, rev)) {
            return;
        }
    }
    bl_etcd_watch_control(ws, rev, BL_ETCD_WATCH_INVALID_ID, 0, 0, 0, NULL);
}

/*
 * The periodic progress notification: to each progress_notify watch that
 * was sent no events since the last tick and has seen everything (etcd
 * asks the store, which answers for synced watchers only).
 */
static void
bl_etcd_watch_progress_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_etcd_ws_t  *ws = w->data;
    bl_etcd_wt_t  *wt;
    int64_t        rev;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    if (ws->ending) {
        return;
    }
    bl_etcd_watch_enter(ws);
    rev = bl_watch_revision();
    for (wt = ws->first; wt && !ws->ending; wt = wt->next) {
        if (!wt->progress_notify) {
            continue;
        }
        /* a paused stream is not reading: it is told when it is again */
        if (wt->idle && wt->sub && !ws->paused
            && bl_etcd_watch_progressed(wt, rev))
        {
            bl_etcd_watch_control(ws, rev, wt->id, 0, 0, 0, NULL);
        }
        wt->idle = 1;
    }
    bl_etcd_watch_leave(ws);
}

/*
 * A slow reader: once more than send_buffer waits in the stream's output,
 * every watch of the stream is paused, so the worker's memory stays
 * bounded; when half of it went out they resume and catch up from the
 * log, losing nothing.
 */
static void
bl_etcd_watch_flow(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_etcd_ws_t  *ws = w->data;
    bl_etcd_wt_t  *wt;
    size_t         pending, bound;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    if (ws->ending) {
        return;
    }
    pending = bl_grpc_pending(ws->call);
    bound = bl_etcd_conf()->watch_send_buffer;

    if (!ws->paused) {
        if (pending <= bound) {
            return;
        }
        bl_log_debug("Watch stream paused with %zu bytes queued, "
                     "client: %.*s", pending, BL_STR_ARGS(ws->call->peer));
        ws->paused = 1;
        for (wt = ws->first; wt; wt = wt->next) {
            if (wt->sub) {
                bl_watch_pause(wt->sub);
            }
        }
        bl_timer_set(&ws->flow_ev, BL_ETCD_WATCH_DRAIN_MSEC);
        return;
    }

    if (pending > bound / 2) {
        bl_timer_set(&ws->flow_ev, BL_ETCD_WATCH_DRAIN_MSEC);
        return;
    }

    bl_log_debug("Watch stream resumed, client: %.*s",
                 BL_STR_ARGS(ws->call->peer));
    ws->paused = 0;
    bl_etcd_watch_enter(ws);
    for (wt = ws->first; wt && !ws->paused && !ws->ending; wt = wt->next) {
        if (wt->sub) {
            bl_watch_resume(wt->sub);
        }
    }
    bl_etcd_watch_leave(ws);
}

/*
 * What grpc-go says of a message it cannot unmarshal on a stream:
 * "grpc: failed to unmarshal the received message " and gogoproto's
 * error.  A top-level look tells the commonest ones apart.
 */
static const char *
bl_etcd_watch_unpack_error(const u_char *p, size_t len, char *buf,
    size_t size)
{
    const u_char  *end = p + len;
    uint64_t       v, key;
    int            wire, shift, field;

    while (p < end) {
        for (key = 0, shift = 0; ; shift += 7) {
            if (shift >= 64) {
                return "proto: integer overflow";
            }
            if (p == end) {
                return "unexpected EOF";
            }
            key |= (uint64_t) (*p & 0x7f) << shift;
            if (!(*p++ & 0x80)) {
                break;
            }
        }
        field = (int) (int32_t) (key >> 3);
        wire = (int) (key & 7);
        if (wire == 4) {
            return "proto: WatchRequest: wiretype end group for non-group";
        }
        if (field <= 0) {
            snprintf(buf, size, "proto: WatchRequest: illegal tag %d "
                     "(wire type %d)", field, wire);
            return buf;
        }
        if (field <= 3 && wire != 2) {
            snprintf(buf, size, "proto: wrong wireType = %d for field %s",
                     wire, field == 1 ? "CreateRequest"
                           : field == 2 ? "CancelRequest" : "ProgressRequest");
            return buf;
        }
        switch (wire) {
        case 0:
        case 2:
            for (v = 0, shift = 0; ; shift += 7) {
                if (shift >= 64) {
                    return "proto: integer overflow";
                }
                if (p == end) {
                    return "unexpected EOF";
                }
                v |= (uint64_t) (*p & 0x7f) << shift;
                if (!(*p++ & 0x80)) {
                    break;
                }
            }
            if (wire == 2) {
                if ((int64_t) v < 0) {
                    return "proto: negative length found during "
                           "unmarshaling";
                }
                if (v > (uint64_t) (end - p)) {
                    return "unexpected EOF";
                }
                p += v;
            }
            break;
        case 1:
        case 5:
            if ((size_t) (end - p) < (wire == 1 ? 8u : 4u)) {
                return "unexpected EOF";
            }
            p += wire == 1 ? 8 : 4;
            break;
        default:
            snprintf(buf, size, "proto: illegal wireType %d", wire);
            return buf;
        }
    }
    /* the fault is inside a field: mostly a length running past its end */
    return "unexpected EOF";
}

static void
bl_etcd_watch_fail_unpack(bl_grpc_call_t *call, const u_char *msg,
    size_t len)
{
    char  msgbuf[256], buf[128];

    bl_log_error(BL_LOG_INFO, 0, "malformed WatchRequest from %.*s",
                 BL_STR_ARGS(call->peer));
    snprintf(msgbuf, sizeof(msgbuf),
             "grpc: failed to unmarshal the received message %s",
             bl_etcd_watch_unpack_error(msg, len, buf, sizeof(buf)));
    bl_grpc_finish(call, BL_GRPC_INTERNAL, msgbuf);
}

/* the transport's calls */

static void
bl_etcd_watch_message(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_ws_t  *ws = call->data;
    bl_wreq_pb_t  *req;

    if (ws == NULL) {
        ws = bl_etcd_watch_stream(call);
        if (ws == NULL) {
            bl_grpc_finish(call, BL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
    }
    if (ws->ending) {
        return;
    }

    bl_etcd_watch_enter(ws);

    req = etcdserverpb__watch_request__unpack(bl_pool_pb_allocator(ws->tmp),
                                              len, msg);
    if (req == NULL) {
        bl_etcd_watch_close(ws);
        bl_etcd_watch_fail_unpack(call, msg, len);
        return;
    }

    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        bl_etcd_watch_create(ws, req->create_request);
        break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
        bl_etcd_watch_cancel(ws, req->cancel_request->watch_id);
        break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
        bl_etcd_watch_progress(ws);
        break;
    default:
        /* etcd ignores a request it does not know */
        break;
    }

    bl_etcd_watch_leave(ws);
}

/*
 * etcd 3.4 keeps a stream whose client half-closed: its watches go on
 * and events keep coming until the client cancels the call (or the
 * connection closes), so there is nothing to do here.
 */
static void
bl_etcd_watch_half_close(bl_grpc_call_t *call)
{
    BL_UNUSED(call);
}

static void
bl_etcd_watch_cancel_call(bl_grpc_call_t *call)
{
    if (call->data) {
        bl_etcd_watch_close(call->data);
    }
}
