/*
 * libev glue.  Each child process runs one loop (bl_loop); signal
 * handlers only set flags or feed ev_signal watchers, the loop acts.
 */
#ifndef BL_EVENT_H
#define BL_EVENT_H

#include <ev.h>

extern struct ev_loop  *bl_loop;

/* milliseconds of the loop's clock (ev_now), cheap */
#define bl_msec_now()  ((int64_t) (ev_now(bl_loop) * 1000.0))

/* start/stop a one-shot timer in milliseconds */
void bl_timer_set(ev_timer *t, int64_t msec);

#endif /* BL_EVENT_H */
