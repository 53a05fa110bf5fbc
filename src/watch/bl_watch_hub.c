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

struct bl_watch_s {
    bl_watch_entry_t      entry;       /* first: index entries cast back */
    bl_str_t              key;         /* owned */
    bl_str_t              end;         /* owned */
    int64_t               through;
    bl_sub_state_e        state;
    bl_watch_deliver_pt   deliver;
    bl_watch_fail_pt      fail;
    void                 *data;
    bl_pool_t            *pool;        /* of the log read in flight */
    bl_storage_op_t      *op;
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

static void
bl_hub_log_done(void *data, bl_storage_status_e st, void *result)
{
    bl_watch_t    *w = data;
    bl_log_res_t  *res = result;
    bl_pool_t     *pool;
    size_t         i, n;

    w->op = NULL;
    pool = w->pool;
    w->pool = NULL;

    if (st == BL_ST_COMPACTED) {
        int64_t compact = res ? res->compact : bl_watch_compact_revision();
        bl_pool_destroy(pool);
        bl_sub_fail(w, BL_ST_COMPACTED, compact);
        return;
    }
    if (st != BL_ST_OK) {
        bl_pool_destroy(pool);
        bl_sub_fail(w, st, 0);
        return;
    }

    /* events of revisions already delivered are skipped */
    for (i = 0; i < res->nevents && res->events[i].rev <= w->through; i++) {
        /* void */
    }
    n = res->nevents - i;
    if (n && w->state != BL_SUB_PAUSED) {
        bl_watch_event_t  *ev;
        size_t             j;

        ev = bl_palloc(pool, n * sizeof(bl_watch_event_t));
        if (ev == NULL) {
            bl_pool_destroy(pool);
            bl_sub_fail(w, BL_ST_INTERNAL, 0);
            return;
        }
        for (j = 0; j < n; j++) {
            const bl_log_event_t *le = &res->events[i + j];
            ev[j].type = le->deleted ? BL_WATCH_DELETE : BL_WATCH_PUT;
            ev[j].kv = le->kv;
            ev[j].prev = le->prev;
            ev[j].has_prev = le->has_prev;
        }
        w->through = res->through;
        bl_hub_enter();
        w->deliver(w->data, ev, n, res->through);
        bl_pool_destroy(pool);
        bl_sub_advance(w);
        bl_hub_leave();
        return;
    }
    if (w->state != BL_SUB_PAUSED) {
        w->through = bl_max(w->through, res->through);
    }
    bl_pool_destroy(pool);
    bl_sub_advance(w);
}

static void
bl_hub_catchup(bl_watch_t *w)
{
    bl_log_req_t          req;
    bl_storage_status_e   st;

    if (w->op || w->removed) {
        return;
    }
    w->pool = bl_pool_create(16384);
    if (w->pool == NULL) {
        bl_timer_set(&w->timer, BL_HUB_RETRY_MS);
        return;
    }
    memset(&req, 0, sizeof(req));
    req.after = w->through;
    req.max_revs = BL_HUB_CATCHUP_REVS;
    req.key = w->key;
    req.range_end = w->end;

    bl_watch_stats.catchup_reads++;
    st = bl_storage_log_read(w->pool, &req, bl_hub_log_done, w, &w->op);
    if (st != BL_ST_OK) {
        w->op = NULL;
        bl_pool_destroy(w->pool);
        w->pool = NULL;
        bl_sub_fail(w, st, 0);
    }
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
    if (w->op) {
        bl_storage_cancel(w->op);
        w->op = NULL;
    }
    if (w->pool) {
        bl_pool_destroy(w->pool);
        w->pool = NULL;
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
    if (w->op == NULL) {
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
            w->through = rec->rev;
            w->deliver(w->data, w->batch, w->nbatch, rec->rev);
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
        if (w->state == BL_SUB_CATCHUP && w->op == NULL
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
