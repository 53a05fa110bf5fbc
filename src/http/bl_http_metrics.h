/*
 * Metrics for GET /metrics, kept in shared memory so that a scrape that
 * lands on any worker reports the whole node.
 *
 * The master maps one area (at the first configuration it reads) before
 * it forks; the area outlives reloads.  It holds a header and an array
 * of slots; each worker, and the watcher, claims a slot at start
 * (compare-and-swap of its pid) and is the only writer of it.  A scrape
 * sums every slot.  The master counts its own events (reloads, respawns)
 * in the header.
 *
 * Counters keep their totals for the life of the master: a process that
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

/* a worker or the watcher (process: BL_PROCESS_WORKER or _WATCHER):
 * claim a slot, count (a worker: the transport's calls), publish */
bl_int_t bl_metrics_start(bl_uint_t process);
/* exiting: gauges to 0, slot free for the next process */
void bl_metrics_stop(void);

/* HTTP connections of this worker, for its gauge */
void bl_metrics_http_connections(bl_uint_t n);

/* master: a reload's outcome (ok: the new generation serves; not ok: the
 * old configuration stays), and a child started again after it died */
#define BL_METRICS_RESPAWN_WORKER    0
#define BL_METRICS_RESPAWN_WATCHER   1
#define BL_METRICS_RESPAWN_POSTGRES  2

void bl_metrics_reloaded(int ok);
void bl_metrics_respawned(bl_uint_t which);

/* the Prometheus text exposition (format 0.0.4) of the whole node */
bl_int_t bl_metrics_render(bl_buf_t *out);

#endif /* BL_HTTP_METRICS_H */
