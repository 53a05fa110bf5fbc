/*
 * The watch layer as the etcd Watch service sees it, in a worker: a
 * subscription to the events of a key range from a start revision on.
 * The layer reads the shared-memory ring that the watcher process fills,
 * matches each event against the subscriptions through an index (a hash
 * for single keys, an interval structure for ranges), and catches a
 * subscription up from the revision log (through storage) while it is
 * behind what the ring holds.  It knows nothing of gRPC or protobuf.
 *
 * Guarantees: each subscription gets every event of its range with
 * revision >= its start revision exactly once, in revision order and in
 * sub-revision order within a revision, the events of one revision never
 * split across two deliveries; no gaps, no duplicates, across the switch
 * between catch-up and the ring.
 */
#ifndef BL_WATCH_H
#define BL_WATCH_H

#include <bl_storage.h>

#define BL_WATCH_PUT     0
#define BL_WATCH_DELETE  1

typedef struct {
    int        type;           /* BL_WATCH_PUT or BL_WATCH_DELETE */
    bl_kv_t    kv;             /* DELETE: key and mod_revision only */
    bl_kv_t    prev;           /* the key's previous version */
    unsigned   has_prev:1;     /* 0 for a creation, or when compacted */
} bl_watch_event_t;

typedef struct bl_watch_s bl_watch_t;

/*
 * Events of one or more whole revisions, oldest first; `through` is the
 * revision the subscription has now seen everything up to (>= the last
 * event's).  The events and their bytes are valid only during the call.
 * The callback may call bl_watch_remove() on its own subscription.
 *
 * BL_OK: taken.  BL_AGAIN: not now (the consumer's output is full): the
 * layer pauses the subscription where it stood before this delivery, as
 * bl_watch_pause() would, and bl_watch_resume() later offers the same
 * events again (from the log); so memory stays bounded by what the
 * consumer accepts, not by what a page or a record holds.
 */
typedef bl_int_t (*bl_watch_deliver_pt)(void *data,
    const bl_watch_event_t *events, size_t n, int64_t through);

/*
 * The subscription cannot go on: BL_ST_COMPACTED (its next revision was
 * compacted; compact_rev says to which revision) or BL_ST_UNAVAILABLE.
 * It is removed by the layer before the call.
 */
typedef void (*bl_watch_fail_pt)(void *data, bl_storage_status_e st,
    int64_t compact_rev);

/*
 * Subscribe to [key, range_end) (the forms of bl_range_req_t: empty end =
 * the key alone, "\0" = every key >= key) from start_rev on (inclusive);
 * start_rev <= 0 means "after bl_watch_revision()".  A start below the
 * compact revision fails at once through `fail` (called after this
 * returns, from the loop).  NULL if out of memory.
 */
bl_watch_t *bl_watch_add(const bl_str_t *key, const bl_str_t *range_end,
    int64_t start_rev, bl_watch_deliver_pt deliver, bl_watch_fail_pt fail,
    void *data);
void bl_watch_remove(bl_watch_t *w);

/*
 * Flow control: a paused subscription receives nothing; resumed, it goes
 * on from where it stopped (catching up from the log if the ring moved
 * past it meanwhile).
 */
void bl_watch_pause(bl_watch_t *w);
void bl_watch_resume(bl_watch_t *w);

/* the revision this worker has seen the store reach (through the ring):
 * for headers of created and progress responses */
int64_t bl_watch_revision(void);
/* the store's compact revision as last seen */
int64_t bl_watch_compact_revision(void);
/* the store's revision as the ring last saw it, in any process (0 before
 * the watcher first read the store) */
int64_t bl_watch_store_revision(void);

/* 1 when the subscription has been delivered everything up to
 * bl_watch_revision() (progress may then be reported) */
int bl_watch_synced(bl_watch_t *w);
/* the revision the subscription has seen everything up to */
int64_t bl_watch_through(bl_watch_t *w);

/* subscriptions of this worker, for metrics */
size_t bl_watch_count(void);

/* counters for metrics, per worker */
typedef struct {
    uint64_t   catchup_reads;   /* log pages read for subscriptions that
                                   started before, or fell behind, what
                                   the worker has read of the ring */
} bl_watch_stats_t;

extern bl_watch_stats_t  bl_watch_stats;

#endif /* BL_WATCH_H */
