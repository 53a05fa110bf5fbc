/*
 * Watch responses: the events of whole revisions for one watch, filtered
 * and cut as etcd does (at most 1000 revisions a response; fragments
 * above the size limit), and the control messages (created, canceled,
 * progress).  Everything is built in the stream's scratch pool.
 */
#include <bl_etcd_watch.h>


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

/* after a response was queued: over the bound, the stream pauses */
static void
bl_etcd_watch_sent(bl_etcd_ws_t *ws)
{
    if (bl_grpc_pending(ws->call) > bl_etcd_conf()->watch_send_buffer
        && !ws->paused && !ev_is_active(&ws->flow_ev))
    {
        /* pausing the others is not allowed from the layer's callbacks */
        bl_timer_set(&ws->flow_ev, 0);
    }
}

static void
bl_etcd_watch_send(bl_etcd_ws_t *ws, const bl_wresp_pb_t *r)
{
    if (ws->ending) {
        return;
    }
    /* BL_ERROR: the call is being cancelled, on_cancel follows */
    (void) bl_grpc_send(ws->call, &r->base);
    bl_etcd_watch_sent(ws);
}

void
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
    bl_etcd_watch_kv_init(pb, kv, deleted);
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

/*
 * The common case, a watch without `fragment`: the response assembled
 * from its header and the events as each worker packs them once (see
 * bl_etcd_watch_pack.c); the bytes are those protobuf-c would write.
 */
static void
bl_etcd_watch_send_packed(bl_etcd_wt_t *wt, const bl_watch_event_t *evs,
    size_t n, int64_t through)
{
    size_t           i, k;
    uint64_t         seq;
    bl_etcd_ws_t    *ws = wt->ws;
    bl_str_t        *parts;
    const bl_str_t  *f;
    u_char           head[BL_ETCD_WATCH_HEAD_MAX];

    parts = bl_palloc(ws->tmp, (n + 1) * sizeof(bl_str_t));
    if (parts == NULL) {
        bl_etcd_watch_oom(ws);
        return;
    }

    seq = bl_etcd_watch_pack_begin();
    for (i = 0, k = 1; i < n; i++) {
        if (evs[i].type == BL_WATCH_DELETE ? wt->no_delete : wt->no_put) {
            continue;
        }
        f = bl_etcd_watch_pack_event(&evs[i], wt->prev_kv, seq, ws->tmp);
        if (f == NULL) {
            bl_etcd_watch_oom(ws);
            return;
        }
        parts[k++] = *f;
    }

    if (k == 1) {
        /* etcd sends nothing when the filters dropped every event */
        return;
    }

    /* the header's revision: see bl_etcd_watch_send_events() */
    parts[0].data = head;
    parts[0].len = bl_etcd_watch_pack_head(ws->tmp,
                                           bl_max(through,
                                                  bl_watch_revision()),
                                           wt->id, head, sizeof(head));
    if (parts[0].len == 0) {
        bl_etcd_watch_oom(ws);
        return;
    }
    bl_etcd_stats.watch_events += k - 1;

    if (!ws->ending) {
        /* BL_ERROR: the call is being cancelled, on_cancel follows */
        (void) bl_grpc_send_parts(ws->call, parts, k);
        bl_etcd_watch_sent(ws);
    }

    /* etcd: a response with events elides the next progress notification */
    wt->idle = 0;
}

/* the events of whole revisions, filtered, as one response, or in
 * fragments for a watch that asked for them */
static void
bl_etcd_watch_send_events(bl_etcd_wt_t *wt, const bl_watch_event_t *evs,
    size_t n, int64_t through)
{
    size_t            i, k;
    bl_etcd_ws_t     *ws = wt->ws;
    bl_wresp_pb_t    *r;
    Mvccpb__Event    *ev, **events;
    int               deleted;

    if (!wt->fragment) {
        bl_etcd_watch_send_packed(wt, evs, n, through);
        return;
    }

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

    bl_etcd_watch_send_fragments(ws, r);

    /* etcd: a response with events elides the next progress notification */
    wt->idle = 0;
}

/* the layer's callbacks */

bl_int_t
bl_etcd_watch_deliver(void *data, const bl_watch_event_t *events, size_t n,
    int64_t through)
{
    bl_etcd_wt_t  *wt = data;
    bl_etcd_ws_t  *ws = wt->ws;
    size_t         i, j, revs;
    int64_t        rev;

    if (ws->ending) {
        /* nothing more goes out: taking it costs nothing */
        return BL_OK;
    }

    /*
     * The stream's output is over its bound: decline, so this watch
     * pauses where it stood and reads these events from the log once the
     * client has read; the whole stream pauses from the loop (flow_ev).
     */
    if (ws->paused
        || bl_grpc_pending(ws->call) > bl_etcd_conf()->watch_send_buffer)
    {
        ws->declined = 1;
        if (!ws->paused && !ev_is_active(&ws->flow_ev)) {
            bl_timer_set(&ws->flow_ev, 0);
        }
        return BL_AGAIN;
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
    return BL_OK;
}

void
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
