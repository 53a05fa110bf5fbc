/*
 * The feed, in the watcher process: the one reader of the revision log in
 * order.  Woken by the store's commit notifications (every node's writes
 * notify) and by a safety poll, it reads the revisions after the ring's
 * head, appends each revision's events as one record, and wakes the
 * workers.  It resumes from the ring's head after a restart, so no
 * revision is lost or doubled.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_storage.h>
#include <bl_watch_codec.h>
#include <bl_watch_module.h>

#define BL_FEED_POLL       0.5         /* s: safety net for lost notifies */
#define BL_FEED_RETRY      0.2         /* s: after a failed read */
#define BL_FEED_MAX_REVS   1000        /* revisions per log read */

typedef struct {
    bl_pool_t         *pool;          /* of the read in flight */
    bl_storage_op_t   *op;
    unsigned           again:1;       /* notified while reading */
    ev_timer           poll;
    bl_buf_t           rec;
} bl_feed_t;

static bl_feed_t  bl_feed;

static void bl_feed_read(void);

static void
bl_feed_wake_workers(void)
{
    uint64_t  one = 1;
    int       i;
    ssize_t   n;

    for (i = 0; i < BL_WATCH_WAKE_SLOTS; i++) {
        n = write(bl_watch_wake[i], &one, sizeof(one));
        (void) n;                      /* EAGAIN: already pending */
    }
}

/* append each revision of the result as one record */
static void
bl_feed_append(const bl_log_res_t *res)
{
    bl_ring_t  *ring = bl_watch_ring;
    size_t      i, first;
    int64_t     rev;

    for (i = 0; i < res->nevents; ) {
        rev = res->events[i].rev;
        first = i;
        bl_feed.rec.pos = bl_feed.rec.last = bl_feed.rec.data;
        while (i < res->nevents && res->events[i].rev == rev) {
            if (bl_watch_encode(&bl_feed.rec, &res->events[i]) != BL_OK) {
                return;              /* logged; the poll retries */
            }
            i++;
        }
        if (rev <= atomic_load(&ring->head_rev)) {
            continue;                /* already there (a retried read) */
        }
        if (bl_ring_append(ring, rev, (uint32_t) (i - first),
                           bl_feed.rec.pos, bl_buf_size(&bl_feed.rec))
            != BL_OK)
        {
            /* too large for the ring: readers take it from the log */
            bl_log_error(BL_LOG_WARN, 0, "revision %" PRId64 " (%zu bytes "
                         "of events) does not fit the event ring, watchers "
                         "read it from the log", rev,
                         bl_buf_size(&bl_feed.rec));
            bl_ring_reset(ring, rev + 1);
        }
    }
}

static void
bl_feed_done(void *data, bl_storage_status_e st, void *result)
{
    bl_log_res_t  *res = result;
    bl_ring_t     *ring = bl_watch_ring;
    int            more;

    (void) data;
    bl_feed.op = NULL;
    more = 0;

    if (st == BL_ST_COMPACTED && res) {
        /* the history we missed is gone: start the ring after it; the
         * workers' subscriptions find out from the log */
        bl_log_error(BL_LOG_WARN, 0, "the log was compacted to %" PRId64
                     " past the event ring's head %" PRId64, res->compact,
                     (int64_t) atomic_load(&ring->head_rev));
        bl_ring_reset(ring, res->compact + 1);
        atomic_store(&ring->compact_rev, res->compact);
        more = 1;

    } else if (st == BL_ST_OK) {
        atomic_store(&ring->compact_rev, res->compact);
        if (atomic_load(&ring->head_rev) == 0 && res->nevents == 0) {
            /* a new ring: it starts at the store's current revision */
            bl_ring_reset(ring, res->current + 1);
        } else {
            bl_feed_append(res);
            if (res->through > atomic_load(&ring->head_rev)) {
                /* revisions without events do not exist; never skip one
                 * silently: readers resynchronise from the log */
                bl_log_error(BL_LOG_ALERT, 0, "the log has no events for "
                             "revisions up to %" PRId64, res->through);
                bl_ring_reset(ring, res->through + 1);
            }
        }
        more = res->through < res->current;
        bl_feed_wake_workers();
    }

    bl_pool_destroy(bl_feed.pool);
    bl_feed.pool = NULL;

    if (st != BL_ST_OK && st != BL_ST_COMPACTED) {
        bl_timer_set(&bl_feed.poll, (int64_t) (BL_FEED_RETRY * 1000));
        return;
    }
    if (more || bl_feed.again) {
        bl_feed.again = 0;
        bl_feed_read();
    }
}

static void
bl_feed_read(void)
{
    bl_log_req_t          req;
    bl_storage_status_e   st;
    int64_t               head;

    if (bl_feed.op) {
        bl_feed.again = 1;
        return;
    }
    bl_feed.pool = bl_pool_create(16384);
    if (bl_feed.pool == NULL) {
        return;
    }
    memset(&req, 0, sizeof(req));
    head = atomic_load(&bl_watch_ring->head_rev);
    /* a new ring asks where the store is: nothing after "infinity" */
    req.after = head ? head : INT64_MAX / 2;
    req.max_revs = BL_FEED_MAX_REVS;

    st = bl_storage_log_read(bl_feed.pool, &req, bl_feed_done, NULL,
                             &bl_feed.op);
    if (st != BL_ST_OK) {
        bl_feed.op = NULL;
        bl_pool_destroy(bl_feed.pool);
        bl_feed.pool = NULL;
        bl_timer_set(&bl_feed.poll, (int64_t) (BL_FEED_RETRY * 1000));
    }
}

static void
bl_feed_commit_cb(void *data, int64_t revision)
{
    (void) data;
    if (revision == 0 || revision > atomic_load(&bl_watch_ring->head_rev)) {
        bl_feed_read();
    }
}

static void
bl_feed_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    bl_feed_read();
    ev_timer_set(w, BL_FEED_POLL, 0.0);
    ev_timer_start(bl_loop, w);
}

bl_int_t
bl_watch_feed_start(void)
{
    memset(&bl_feed, 0, sizeof(bl_feed));
    ev_timer_init(&bl_feed.poll, bl_feed_poll_cb, 0.0, 0.0);
    ev_timer_start(bl_loop, &bl_feed.poll);
    return bl_storage_listen(bl_feed_commit_cb, NULL);
}
