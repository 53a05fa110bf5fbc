#include <bl_core.h>
#include <bl_event.h>

struct ev_loop  *bl_loop;

void
bl_timer_set(ev_timer *t, int64_t msec)
{
    ev_timer_stop(bl_loop, t);
    ev_timer_set(t, (ev_tstamp) msec / 1000.0, 0.0);
    ev_timer_start(bl_loop, t);
}
