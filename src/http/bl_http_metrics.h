/*
 * Metrics for GET /metrics, kept in shared memory so that a scrape that
 * lands on any worker reports the whole node.
 *
 * The master maps one area (at the first configuration it reads) before
 * it forks; the area outlives reloads.  It holds a header and an array
 * of slots; each worker claims a slot at start (compare-and-swap of its
 * pid) and is the only writer of it.  A scrape sums every slot.
 *
 * Counters keep their totals for the life of the master: a worker that
 * starts (a respawn, or a new generation after HUP) claims a slot whose
 * owner is gone and adds to what is there, so totals never go back and
 * Prometheus sees no reset.  Gauges (open connections and streams) are
 * the owner's current values and count only while the owner lives.
 */
#ifndef BL_HTTP_METRICS_H
#define BL_HTTP_METRICS_H

#include <bl_core.h>

/* master, when a configuration is read: map the area once; a later call
 * only warns when worker_processes outgrew it */
bl_int_t bl_metrics_init(bl_uint_t worker_processes);

/* worker: claim a slot, count the transport's calls, publish gauges */
bl_int_t bl_metrics_start(void);
/* worker, exiting: gauges to 0, slot free for the next worker */
void bl_metrics_stop(void);

/* HTTP connections of this worker, for its gauge */
void bl_metrics_http_connections(bl_uint_t n);

/* the Prometheus text exposition (format 0.0.4) of the whole node */
bl_int_t bl_metrics_render(bl_buf_t *out);

#endif /* BL_HTTP_METRICS_H */
