/* The watch layer's process-side pieces and what they share. */
#ifndef BL_WATCH_MODULE_H
#define BL_WATCH_MODULE_H

#include <bl_ring.h>

/*
 * Workers are woken through an eventfd each, chosen by process table
 * slot.  Two processes may share one only if more than this many
 * processes run at once; then one of them learns of new events from its
 * safety timer a little later.
 */
#define BL_WATCH_WAKE_SLOTS  64

extern bl_ring_t  *bl_watch_ring;
extern int         bl_watch_wake[BL_WATCH_WAKE_SLOTS];

/* the watcher process: tail the log into the ring */
bl_int_t bl_watch_feed_start(void);
/* a worker: read the ring, serve subscriptions */
bl_int_t bl_watch_hub_start(int wake_fd);
void bl_watch_hub_stop(void);

#endif /* BL_WATCH_MODULE_H */
