/*
 * What the etcd services count, per process, for metrics.  The services
 * only increment; whoever exports them (the HTTP module's /metrics)
 * reads this struct, so the services never call up to it.
 */
#ifndef BL_ETCD_STATS_H
#define BL_ETCD_STATS_H

typedef struct {
    uint64_t   watch_events;      /* events sent in Watch responses */
    uint64_t   lease_renewals;    /* keepalives that renewed a lease */
    uint64_t   leases_expired;    /* revoked by this process's expiry */
    int64_t    leases;            /* in the store at the last count (the
                                     watcher's periodic job); -1: not yet */
} bl_etcd_stats_t;

extern bl_etcd_stats_t  bl_etcd_stats;

#endif /* BL_ETCD_STATS_H */
