/*
 * The hub, in each worker: reads the event ring that the watcher fills,
 * and serves the subscriptions of this worker's Watch streams.
 *
 * A subscription is in one of three states:
 *   SYNCED   indexed; fed from the ring as records arrive;
 *   CATCHUP  reading the log (through storage) from where it stands up to
 *            what the hub has reached, a page of revisions at a time;
 *   PAUSED   its stream does not drain: receives nothing meanwhile.
 * `through` is the revision a subscription has seen everything up to; a
 * record at or below it is skipped, which is what makes the switch from
 * the log to the ring free of gaps and duplicates.
 *
 * If the hub itself falls behind the ring (its records were overwritten)
 * or the watcher resets the ring, every synced subscription moves to
 * CATCHUP and the hub rejoins the ring at its head.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_storage.h>
#include <bl_watch.h>
#include <bl_watch_codec.h>
#include <bl_watch_index.h>
#include <bl_watch_module.h>

#define BL_HUB_POLL          0.1      /* s: safety net for lost wakeups */
#define BL_HUB_RETRY_MS      200      /* after a failed log read */
#define BL_HUB_CATCHUP_REVS  1000     /* revisions per log page, as etcd's
                                         watchBatchMaxRevs */

typedef enum {
    BL_SUB_SYNCED = 0,
    BL_SUB_CATCHUP,
    BL_SUB_PAUSED
} bl_sub_state_e;

typedef struct bl_hub_read_s  bl_hub_read_t;

/*
 * One log read in flight, shared by every subscription that needs the
 * same page: same range, same `through`.  Watchers of one prefix that
 * fall behind together (a stream that stopped reading, a resync) then
 * cost one read, not one each, as etcd's unsynced watcher groups do.
 */
struct bl_hub_read_s {
    bl_hub_read_t        *hnext;       /* bl_hub.reads[] chain */
    uint32_t              hash;
    int64_t               after;
    bl_str_t              key;         /* copies, after the struct */
    bl_str_t              end;
    bl_pool_t            *pool;        /* the result */
    bl_storage_op_t      *op;
    bl_watch_t           *members;     /* linked by read_next */
};

#define BL_HUB_READS  256              /* hash buckets, a power of two */

struct bl_watch_s {
    bl_watch_entry_t      entry;       /* first: index entries cast back */
    bl_str_t              key;         /* owned */
    bl_str_t              end;         /* owned */
    int64_t               through;
    bl_sub_state_e        state;
    bl_watch_deliver_pt   deliver;
    bl_watch_fail_pt      fail;
    void                 *data;
    bl_hub_read_t        *read;        /* the log read it waits for */
    bl_watch_t           *read_next;   /* that read's other members */
    ev_timer              timer;       /* retry, or deferred failure */
    bl_storage_status_e   fail_st;
    unsigned              removed:1;
    unsigned              queued:1;    /* in the current record's batch */
    unsigned              now_unknown:1; /* "from now" before the ring
                                          knew the store's revision */
    bl_watch_event_t     *batch;       /* this record's matching events */
    size_t                nbatch;
    size_t                batch_alloc;
    bl_watch_t           *next_queued;
};

typedef struct {
    ev_io                 wake;
    ev_timer              poll;
    ev_timer              probe;       /* until the ring knows the store */
    bl_pool_t            *probe_pool;
    bl_storage_op_t      *probe_op;
    bl_ring_cursor_t      cursor;
    int64_t               rev;         /* the ring revision reached */
    unsigned              started:1;
    bl_watch_index_t      index;
    bl_buf_t              rec;
    bl_watch_event_t     *events;      /* the current record, decoded */
    size_t                events_alloc;
    bl_watch_t           *queued;      /* subscriptions with a batch */
    bl_watch_t          **all;         /* every subscription */
    size_t                nall;
    size_t                all_alloc;
    int                   dispatching;
    bl_hub_read_t        *reads[BL_HUB_READS];  /* log reads in flight */
    bl_watch_t          **dead;        /* removed while dispatching */
    size_t                ndead;
    size_t                dead_alloc;
} bl_hub_t;

static bl_hub_t  bl_hub;

static void bl_hub_catchup(bl_watch_t *w);
static void bl_hub_resync(void);

/*
 * Callbacks may remove subscriptions, their own included: while one runs,
 * removed subscriptions are only marked, and freed when it returns.
 */
static void
bl_hub_enter(void)
{
    bl_hub.dispatching++;
}

static void bl_sub_free(bl_watch_t *w);

static void
bl_hub_leave(void)
{
    size_t  i;

    if (--bl_hub.dispatching == 0) {
        for (i = 0; i < bl_hub.ndead; i++) {
            bl_sub_free(bl_hub.dead[i]);
        }
        bl_hub.ndead = 0;
    }
}

int64_t
bl_watch_revision(void)
{
    return bl_hub.rev;
}

int64_t
bl_watch_compact_revision(void)
{
    return bl_watch_ring ? atomic_load(&bl_watch_ring->compact_rev) : 0;
}

int64_t
bl_watch_store_revision(void)
{
    return bl_watch_ring ? atomic_load(&bl_watch_ring->head_rev) : 0;
}

int
bl_watch_synced(bl_watch_t *w)
{
    /* a synced subscription has been offered every dispatched record,
     * matching or not; `through` moves only for the matching ones */
    return w->state == BL_SUB_SYNCED;
}

int64_t
bl_watch_through(bl_watch_t *w)
{
    return w->state == BL_SUB_SYNCED ? bl_max(w->through, bl_hub.rev)
                                     : w->through;
}

static bl_int_t
bl_ptr_push(void ***v, size_t *n, size_t *alloc, void *p)
{
    void   **nv;
    size_t   na;

    if (*n == *alloc) {
        na = *alloc ? *alloc * 2 : 64;
        nv = realloc(*v, na * sizeof(void *));
        if (nv == NULL) {
            bl_log_error(BL_LOG_ALERT, errno, "realloc() failed");
            return BL_ERROR;
        }
        *v = nv;
        *alloc = na;
    }
    (*v)[(*n)++] = p;
    return BL_OK;
}

static void
bl_sub_free(bl_watch_t *w)
{
    free(w->key.data);
    free(w->end.data);
    free(w->batch);
    free(w);
}

static void
bl_sub_index(bl_watch_t *w)
{
    if (bl_watch_index_add(&bl_hub.index, &w->entry, &w->key, &w->end)
        != BL_OK)
    {
        /* cannot index it: serve it from the log instead */
        w->state = BL_SUB_CATCHUP;
        bl_timer_set(&w->timer, BL_HUB_RETRY_MS);
        return;
    }
    w->state = BL_SUB_SYNCED;
}

static void
bl_sub_unindex(bl_watch_t *w)
{
    if (w->entry.group) {
        bl_watch_index_remove(&bl_hub.index, &w->entry);
    }
}

/* after a log page or a resume: synced if the log reached the hub */
static void
bl_sub_advance(bl_watch_t *w)
{
    if (w->removed || w->state == BL_SUB_PAUSED) {
        return;
    }
    if (w->through >= bl_hub.rev) {
        bl_sub_index(w);
    } else {
        w->state = BL_SUB_CATCHUP;
        bl_hub_catchup(w);
    }
}

static void
bl_sub_fail(bl_watch_t *w, bl_storage_status_e st, int64_t compact)
{
    bl_watch_fail_pt   fail;
    void              *data;

    fail = w->fail;
    data = w->data;
    bl_watch_remove(w);
    fail(data, st, compact);
}

/* log catch-up */

static uint32_t
bl_hub_read_hash(int64_t after, const bl_str_t *key, const bl_str_t *end)
{
    uint32_t  h;
    size_t    i;

    /* FNV-1a over the revision and both keys, a separator between */
    h = 2166136261u;
    for (i = 0; i < sizeof(after); i++) {
        h = (h ^ (u_char) (after >> (8 * i))) * 16777619u;
    }
    for (i = 0; i < key->len; i++) {
        h = (h ^ key->data[i]) * 16777619u;
    }
    h = (h ^ 0xff) * 16777619u;
    for (i = 0; i < end->len; i++) {
        h = (h ^ end->data[i]) * 16777619u;
    }
    return h;
}

static void
bl_hub_read_unlink(bl_hub_read_t *r)
{
    bl_hub_read_t  **pp;

    for (pp = &bl_hub.reads[r->hash & (BL_HUB_READS - 1)]; *pp;
         pp = &(*pp)->hnext)
    {
        if (*pp == r) {
            *pp = r->hnext;
            return;
        }
    }
}

static void
bl_hub_read_free(bl_hub_read_t *r)
{
    if (r->pool) {
        bl_pool_destroy(r->pool);
    }
    free(r);
}

/* a member leaves a read (it was removed): the last one cancels it */
static void
bl_hub_read_leave(bl_watch_t *w)
{
    bl_hub_read_t  *r = w->read;
    bl_watch_t    **pp;

    for (pp = &r->members; *pp; pp = &(*pp)->read_next) {
        if (*pp == w) {
            *pp = w->read_next;
            break;
        }
    }
    w->read = NULL;
    w->read_next = NULL;
    if (r->members == NULL) {
        bl_storage_cancel(r->op);
        bl_hub_read_unlink(r);
        bl_hub_read_free(r);
    }
}

/* the page as subscriptions take it; NULL if out of memory */
static bl_watch_event_t *
bl_hub_read_events(bl_pool_t *pool, const bl_log_event_t *le, size_t n)
{
    bl_watch_event_t  *ev;
    size_t             j;

    ev = bl_palloc(pool, n * sizeof(bl_watch_event_t));
    if (ev == NULL) {
        return NULL;
    }
    for (j = 0; j < n; j++) {
        ev[j].type = le[j].deleted ? BL_WATCH_DELETE : BL_WATCH_PUT;
        ev[j].kv = le[j].kv;
        ev[j].prev = le[j].prev;
        ev[j].has_prev = le[j].has_prev;
    }
    return ev;
}

static void
bl_hub_log_done(void *data, bl_storage_status_e st, void *result)
{
    bl_hub_read_t     *r = data;
    bl_log_res_t      *res = result;
    bl_watch_t        *w, *next;
    bl_watch_event_t  *ev;
    int64_t            compact;
    size_t             i, n;

    r->op = NULL;
    bl_hub_read_unlink(r);
    for (w = r->members; w; w = w->read_next) {
        w->read = NULL;
    }

    /* members removed by a callback are freed only after the loop */
    bl_hub_enter();

    if (st != BL_ST_OK) {
        compact = (st == BL_ST_COMPACTED && res) ? res->compact
                                                 : bl_watch_compact_revision();
        for (w = r->members; w; w = next) {
            next = w->read_next;
            if (!w->removed) {
                bl_sub_fail(w, st, st == BL_ST_COMPACTED ? compact : 0);
            }
        }
        goto done;
    }

    /* every member stood at r->after: the same events are new to each */
    for (i = 0; i < res->nevents && res->events[i].rev <= r->after; i++) {
        /* void */
    }
    n = res->nevents - i;
    ev = NULL;
    if (n) {
        ev = bl_hub_read_events(r->pool, &res->events[i], n);
        if (ev == NULL) {
            for (w = r->members; w; w = next) {
                next = w->read_next;
                if (!w->removed) {
                    bl_sub_fail(w, BL_ST_INTERNAL, 0);
                }
            }
            goto done;
        }
    }

    for (w = r->members; w; w = next) {
        next = w->read_next;
        w->read_next = NULL;
        if (w->removed) {
            continue;
        }
        if (w->state == BL_SUB_PAUSED) {
            /* it re-reads this page when it is resumed */
            continue;
        }
        if (n && w->deliver(w->data, ev, n, res->through) != BL_OK) {
            if (!w->removed) {
                /* declined: it re-reads this page once resumed */
                w->state = BL_SUB_PAUSED;
            }
            continue;
        }
        w->through = bl_max(w->through, res->through);
        bl_sub_advance(w);
    }

done:
    bl_hub_leave();
    bl_hub_read_free(r);
}

static void
bl_hub_catchup(bl_watch_t *w)
{
    bl_log_req_t          req;
    bl_storage_status_e   st;
    bl_hub_read_t        *r;
    uint32_t              h;

    if (w->read || w->removed) {
        return;
    }

    h = bl_hub_read_hash(w->through, &w->key, &w->end);
    for (r = bl_hub.reads[h & (BL_HUB_READS - 1)]; r; r = r->hnext) {
        if (r->hash == h && r->after == w->through
            && bl_str_eq(&r->key, &w->key) && bl_str_eq(&r->end, &w->end))
        {
            w->read = r;
            w->read_next = r->members;
            r->members = w;
            return;
        }
    }

    r = calloc(1, sizeof(bl_hub_read_t) + w->key.len + w->end.len);
    if (r == NULL) {
        bl_timer_set(&w->timer, BL_HUB_RETRY_MS);
        return;
    }
    r->pool = bl_pool_create(16384);
    if (r->pool == NULL) {
        free(r);
        bl_timer_set(&w->timer, BL_HUB_RETRY_MS);
        return;
    }
    r->hash = h;
    r->after = w->through;
    r->key.data = (u_char *) (r + 1);
    r->key.len = w->key.len;
    memcpy(r->key.data, w->key.data, w->key.len);
    r->end.data = r->key.data + w->key.len;
    r->end.len = w->end.len;
    if (w->end.len) {
        memcpy(r->end.data, w->end.data, w->end.len);
    }

    memset(&req, 0, sizeof(req));
    req.after = r->after;
    req.max_revs = BL_HUB_CATCHUP_REVS;
    req.key = r->key;
    req.range_end = r->end;

    bl_watch_stats.catchup_reads++;
    st = bl_storage_log_read(r->pool, &req, bl_hub_log_done, r, &r->op);
    if (st != BL_ST_OK) {
        bl_hub_read_free(r);
        bl_sub_fail(w, st, 0);
        return;
    }

    r->hnext = bl_hub.reads[h & (BL_HUB_READS - 1)];
    bl_hub.reads[h & (BL_HUB_READS - 1)] = r;
    r->members = w;
    w->read = r;
    w->read_next = NULL;
}

static void
bl_sub_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    bl_watch_t  *w = t->data;

    (void) loop;
    (void) revents;
    if (w->fail_st != BL_ST_OK) {
        bl_sub_fail(w, w->fail_st, bl_watch_compact_revision());
        return;
    }
    bl_sub_advance(w);
}

/* subscriptions */

bl_watch_t *
bl_watch_add(const bl_str_t *key, const bl_str_t *range_end,
    int64_t start_rev, bl_watch_deliver_pt deliver, bl_watch_fail_pt fail,
    void *data)
{
    bl_watch_t  *w;
    int64_t      compact;

    w = calloc(1, sizeof(bl_watch_t));
    if (w == NULL) {
        bl_log_error(BL_LOG_ALERT, errno, "calloc() failed");
        return NULL;
    }
    w->key.data = malloc(key->len + 1);
    w->end.data = malloc(range_end->len + 1);
    if (w->key.data == NULL || w->end.data == NULL
        || bl_ptr_push((void ***) &bl_hub.all, &bl_hub.nall,
                       &bl_hub.all_alloc, w) != BL_OK)
    {
        bl_sub_free(w);
        return NULL;
    }
    memcpy(w->key.data, key->data, key->len);
    w->key.len = key->len;
    if (range_end->len) {
        memcpy(w->end.data, range_end->data, range_end->len);
    }
    w->end.len = range_end->len;
    w->deliver = deliver;
    w->fail = fail;
    w->data = data;
    ev_timer_init(&w->timer, bl_sub_timer_cb, 0.0, 0.0);
    w->timer.data = w;

    compact = bl_watch_compact_revision();
    if (start_rev > 0 && compact > 0 && start_rev < compact) {
        /* etcd: created first, then canceled with compact_revision */
        w->fail_st = BL_ST_COMPACTED;
        w->state = BL_SUB_CATCHUP;
        bl_timer_set(&w->timer, 0);
        return w;
    }

    w->through = start_rev > 0 ? start_rev - 1 : bl_hub.rev;
    w->now_unknown = start_rev <= 0 && bl_hub.rev == 0;
    if (w->through >= bl_hub.rev) {
        bl_sub_index(w);                     /* now, or in the future */
    } else {
        w->state = BL_SUB_CATCHUP;
        bl_timer_set(&w->timer, 0);          /* read after we return */
    }
    return w;
}

void
bl_watch_remove(bl_watch_t *w)
{
    size_t  i;

    if (w->removed) {
        return;
    }
    w->removed = 1;
    bl_sub_unindex(w);
    ev_timer_stop(bl_loop, &w->timer);
    if (w->read) {
        bl_hub_read_leave(w);
    }
    for (i = 0; i < bl_hub.nall; i++) {
        if (bl_hub.all[i] == w) {
            bl_hub.all[i] = bl_hub.all[--bl_hub.nall];
            break;
        }
    }
    if (bl_hub.dispatching) {
        /* the record being dispatched may still point at it */
        if (bl_ptr_push((void ***) &bl_hub.dead, &bl_hub.ndead,
                        &bl_hub.dead_alloc, w) == BL_OK)
        {
            return;
        }
    }
    bl_sub_free(w);
}

void
bl_watch_pause(bl_watch_t *w)
{
    if (w->removed || w->state == BL_SUB_PAUSED) {
        return;
    }
    if (w->state == BL_SUB_SYNCED) {
        /* it has seen everything the hub dispatched so far */
        w->through = bl_max(w->through, bl_hub.rev);
    }
    bl_sub_unindex(w);
    w->state = BL_SUB_PAUSED;
}

void
bl_watch_resume(bl_watch_t *w)
{
    if (w->removed || w->state != BL_SUB_PAUSED) {
        return;
    }
    w->state = BL_SUB_CATCHUP;
    if (w->read == NULL) {
        bl_sub_advance(w);
    }
    /* else: the read in flight calls bl_sub_advance() when it is done */
}

/* the ring */

static void
bl_hub_match(bl_watch_entry_t *e, void *arg)
{
    bl_watch_t        *w = (bl_watch_t *) e;
    bl_watch_event_t  *ev = arg, *nb;
    size_t             na;

    if (w->nbatch == w->batch_alloc) {
        na = w->batch_alloc ? w->batch_alloc * 2 : 4;
        nb = realloc(w->batch, na * sizeof(bl_watch_event_t));
        if (nb == NULL) {
            return;        /* ENOMEM: the subscription will resync below */
        }
        w->batch = nb;
        w->batch_alloc = na;
    }
    w->batch[w->nbatch++] = *ev;
    if (!w->queued) {
        w->queued = 1;
        w->next_queued = bl_hub.queued;
        bl_hub.queued = w;
    }
}

static void
bl_hub_dispatch(const bl_ring_rec_t *rec)
{
    bl_watch_t  *w, *next;
    size_t       i;

    if (rec->nevents > bl_hub.events_alloc) {
        bl_watch_event_t *ev = realloc(bl_hub.events,
                                       rec->nevents * sizeof(*ev));
        if (ev == NULL) {
            bl_log_error(BL_LOG_ALERT, errno, "realloc() failed");
            return;
        }
        bl_hub.events = ev;
        bl_hub.events_alloc = rec->nevents;
    }
    if (bl_watch_decode(bl_hub.rec.pos, bl_buf_size(&bl_hub.rec),
                        rec->nevents, bl_hub.events) != BL_OK)
    {
        bl_log_error(BL_LOG_ALERT, 0, "malformed event ring record of "
                     "revision %" PRId64, rec->rev);
        bl_hub_resync();             /* the log has it right */
        return;
    }

    bl_hub.queued = NULL;
    for (i = 0; i < rec->nevents; i++) {
        bl_watch_index_match(&bl_hub.index, &bl_hub.events[i].kv.key,
                             bl_hub_match, &bl_hub.events[i]);
    }

    bl_hub_enter();
    for (w = bl_hub.queued; w; w = next) {
        next = w->next_queued;
        w->queued = 0;
        if (!w->removed && w->state == BL_SUB_SYNCED
            && rec->rev > w->through)
        {
            if (w->deliver(w->data, w->batch, w->nbatch, rec->rev) == BL_OK)
            {
                w->through = rec->rev;

            } else if (!w->removed && w->state == BL_SUB_SYNCED) {
                /* declined: paused having seen all before this record */
                w->through = bl_max(w->through, bl_hub.rev);
                bl_sub_unindex(w);
                w->state = BL_SUB_PAUSED;
            }
        }
        w->nbatch = 0;
    }
    bl_hub.queued = NULL;
    /* only now is the revision fully dispatched (see bl_watch_pause) */
    bl_hub.rev = rec->rev;
    bl_hub_leave();
}

/* the hub lost its place in the ring: everyone catches up from the log */
static void
bl_hub_resync(void)
{
    bl_ring_t   *ring = bl_watch_ring;
    bl_watch_t  *w;
    size_t       i;
    int64_t      head;

    for (i = 0; i < bl_hub.nall; i++) {
        w = bl_hub.all[i];
        if (w->state == BL_SUB_SYNCED) {
            w->through = bl_max(w->through, bl_hub.rev);
            bl_sub_unindex(w);
            w->state = BL_SUB_CATCHUP;
        }
    }

    head = atomic_load(&ring->head_rev);
    while (bl_ring_seek(ring, &bl_hub.cursor, head) != BL_OK) {
        head = atomic_load(&ring->head_rev);
    }
    bl_hub.rev = bl_max(bl_hub.rev, head);

    /* "from now" watches made before the ring knew the store's revision
     * start where it first says the store is */
    for (i = 0; i < bl_hub.nall; i++) {
        w = bl_hub.all[i];
        if (w->now_unknown && head > 0) {
            w->now_unknown = 0;
            w->through = bl_max(w->through, head);
        }
    }

    for (i = 0; i < bl_hub.nall; i++) {
        w = bl_hub.all[i];
        if (w->state == BL_SUB_CATCHUP && w->read == NULL
            && w->fail_st == BL_ST_OK)
        {
            bl_sub_advance(w);
        }
    }
}

static void
bl_hub_pump(void)
{
    bl_ring_rec_t  rec;
    bl_int_t       rc;

    for ( ;; ) {
        rc = bl_ring_read(bl_watch_ring, &bl_hub.cursor, &rec, &bl_hub.rec);
        if (rc == BL_AGAIN) {
            /* an empty ring after a reset still tells where the store is */
            bl_hub.rev = bl_max(bl_hub.rev,
                                atomic_load(&bl_watch_ring->head_rev));
            return;
        }
        if (rc == BL_DECLINED) {
            bl_hub_resync();
            continue;
        }
        if (rc != BL_OK) {
            return;
        }
        bl_hub_dispatch(&rec);
    }
}

static void
bl_hub_wake_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    uint64_t  n;
    ssize_t   r;

    (void) loop;
    (void) revents;
    r = read(w->fd, &n, sizeof(n));
    (void) r;
    bl_hub_pump();
}

static void
bl_hub_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
    bl_hub_pump();
}

/*
 * A ring that the watcher has not filled yet does not know the store's
 * revision; "now" for a new watch must not be 0 meanwhile, so the worker
 * asks the store itself until the ring says.
 */
static void
bl_hub_probe_done(void *data, bl_storage_status_e st, void *result)
{
    bl_log_res_t  *res = result;

    (void) data;
    bl_hub.probe_op = NULL;
    if (st == BL_ST_OK && res) {
        bl_hub.rev = bl_max(bl_hub.rev, res->current);
    }
    bl_pool_destroy(bl_hub.probe_pool);
    bl_hub.probe_pool = NULL;
    if (bl_hub.rev == 0) {
        bl_timer_set(&bl_hub.probe, 50);
    }
}

static void
bl_hub_probe_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    bl_log_req_t          req;
    bl_storage_status_e   st;

    (void) loop;
    (void) t;
    (void) revents;
    if (bl_hub.rev != 0 || bl_hub.probe_op) {
        return;
    }
    bl_hub.probe_pool = bl_pool_create(4096);
    if (bl_hub.probe_pool == NULL) {
        bl_timer_set(&bl_hub.probe, 50);
        return;
    }
    memset(&req, 0, sizeof(req));
    req.after = INT64_MAX / 2;          /* nothing: only where it is */
    req.max_revs = 1;
    st = bl_storage_log_read(bl_hub.probe_pool, &req, bl_hub_probe_done,
                             NULL, &bl_hub.probe_op);
    if (st != BL_ST_OK) {
        bl_hub.probe_op = NULL;
        bl_hub_probe_done(NULL, st, NULL);
    }
}

bl_int_t
bl_watch_hub_start(int wake_fd)
{
    bl_ring_t  *ring = bl_watch_ring;

    memset(&bl_hub, 0, sizeof(bl_hub));
    if (bl_watch_index_init(&bl_hub.index) != BL_OK) {
        return BL_ERROR;
    }

    /* join at the head: older history is for the log */
    bl_hub.rev = atomic_load(&ring->head_rev);
    while (bl_ring_seek(ring, &bl_hub.cursor, bl_hub.rev) != BL_OK) {
        bl_hub.rev = atomic_load(&ring->head_rev);
    }

    ev_io_init(&bl_hub.wake, bl_hub_wake_cb, wake_fd, EV_READ);
    ev_io_start(bl_loop, &bl_hub.wake);
    ev_timer_init(&bl_hub.poll, bl_hub_poll_cb, BL_HUB_POLL, BL_HUB_POLL);
    ev_timer_start(bl_loop, &bl_hub.poll);
    ev_timer_init(&bl_hub.probe, bl_hub_probe_cb, 0.0, 0.0);
    if (bl_hub.rev == 0) {
        ev_timer_start(bl_loop, &bl_hub.probe);
    }
    bl_hub.started = 1;
    return BL_OK;
}

void
bl_watch_hub_stop(void)
{
    while (bl_hub.nall) {
        bl_watch_remove(bl_hub.all[0]);
    }
    if (bl_hub.started) {
        ev_io_stop(bl_loop, &bl_hub.wake);
        ev_timer_stop(bl_loop, &bl_hub.poll);
        ev_timer_stop(bl_loop, &bl_hub.probe);
    }
    if (bl_hub.probe_op) {
        bl_storage_cancel(bl_hub.probe_op);
    }
    bl_pool_destroy(bl_hub.probe_pool);
    bl_watch_index_free(&bl_hub.index);
    bl_buf_release(&bl_hub.rec);
    free(bl_hub.events);
    free(bl_hub.all);
    free(bl_hub.dead);
    memset(&bl_hub, 0, sizeof(bl_hub));
}

size_t
bl_watch_count(void)
{
    return bl_hub.nall;
}
