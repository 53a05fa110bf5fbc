#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_event.h>
#include <bl_process.h>
#include <bl_child.h>
#include <bl_storage.h>

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

static ev_signal   bl_child_sig[5];
static ev_io       bl_child_channel;
static ev_timer    bl_child_deadline;
static ev_timer    bl_child_ready_ev;
static bl_child_t *bl_child_current;
static int         bl_child_state;         /* 0 run, 1 draining, 2 fast */
static int         bl_child_leaving;       /* the leave hook was called */

int
bl_child_exiting(void)
{
    return bl_child_state != 0;
}

void
bl_child_exit(void)
{
    if (bl_child_current != NULL && bl_child_current->leave != NULL
        && !bl_child_leaving)
    {
        /* it calls back here when it is done */
        bl_child_leaving = 1;
        bl_child_current->leave();
        return;
    }
    ev_break(bl_loop, EVBREAK_ALL);
}

static void
bl_child_go_fast(void)
{
    if (bl_child_state == 2) {
        return;
    }
    bl_child_state = 2;
    if (bl_child_current->fast) {
        bl_child_current->fast();
    }
    bl_child_exit();
}

static void
bl_child_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
    bl_log_error(BL_LOG_WARN, 0, "graceful shutdown timed out, closing the "
                 "remaining connections");
    bl_child_go_fast();
}

static void
bl_child_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    bl_core_conf_t  *ccf;

    (void) loop;
    (void) revents;

    switch (w->signum) {
    case SIGQUIT:
        if (bl_child_state != 0) {
            return;
        }
        bl_log_error(BL_LOG_NOTICE, 0, "gracefully shutting down");
        bl_child_state = 1;
        bl_setproctitle(bl_child_current->kind == BL_PROCESS_WORKER
                        ? "worker process is shutting down"
                        : "watcher process is shutting down");
        ccf = bl_core_conf(bl_cycle);
        ev_timer_init(&bl_child_deadline, bl_child_deadline_cb,
                      (ev_tstamp) ccf->shutdown_timeout / 1000.0, 0.0);
        ev_timer_start(bl_loop, &bl_child_deadline);
        if (bl_child_current->graceful) {
            bl_child_current->graceful();
        } else {
            bl_child_exit();
        }
        break;
    case SIGTERM:
    case SIGINT:
        bl_child_go_fast();
        break;
    case SIGUSR1:
        (void) bl_log_reopen(bl_log);
        break;
    }
}

static void
bl_child_channel_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char     buf[16];
    ssize_t  n;

    (void) revents;
    n = read(w->fd, buf, sizeof(buf));
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    /* the master is gone: nobody would respawn or reload us */
    ev_io_stop(loop, w);
    bl_log_error(BL_LOG_ALERT, 0, "the master process exited, exiting");
    bl_child_go_fast();
}

void
bl_child_init(bl_cycle_t *cycle, bl_child_t *child)
{
    static const int  signals[] = { SIGQUIT, SIGTERM, SIGINT, SIGUSR1 };
    bl_core_conf_t   *ccf;
    bl_module_t     **m;
    struct rlimit     rl;
    size_t            i;

    bl_cycle = cycle;
    bl_log = &cycle->log;
    bl_log_set_stderr_too(0);
    bl_child_current = child;
    bl_setproctitle(child->title);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);        /* reloads are the master's business */

#ifdef M_MMAP_THRESHOLD
    /*
     * A fixed threshold: glibc's own rises to the largest block freed so
     * far, after which the megabyte buffers of a burst (watch streams
     * catching up) come from the heap and are never given back; mapped,
     * they return to the system as soon as they are freed.
     */
    (void) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif

    ccf = bl_core_conf(cycle);
    if (ccf->rlimit_nofile != BL_CONF_UNSET) {
        rl.rlim_cur = rl.rlim_max = (rlim_t) ccf->rlimit_nofile;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
            bl_log_error(BL_LOG_ALERT, errno, "setrlimit(RLIMIT_NOFILE, %"
                         PRId64 ") failed", ccf->rlimit_nofile);
        }
    }
    if (ccf->user.data
        && bl_switch_user(ccf->uid, ccf->gid, (char *) ccf->user.data)
           != BL_OK)
    {
        exit(BL_EXIT_FATAL);
    }

    bl_loop = ev_default_loop(EVFLAG_AUTO);
    if (bl_loop == NULL) {
        bl_log_error(BL_LOG_EMERG, 0, "could not initialise libev");
        exit(BL_EXIT_FATAL);
    }

    for (i = 0; i < bl_nelems(signals); i++) {
        ev_signal_init(&bl_child_sig[i], bl_child_signal_cb, signals[i]);
        ev_signal_start(bl_loop, &bl_child_sig[i]);
    }
    if (bl_process_channel != -1) {
        (void) bl_nonblocking(bl_process_channel);
        ev_io_init(&bl_child_channel, bl_child_channel_cb,
                   bl_process_channel, EV_READ);
        ev_io_start(bl_loop, &bl_child_channel);
    }

    for (m = bl_modules; *m; m++) {
        if ((*m)->init_process
            && (*m)->init_process(cycle, child->kind) != BL_OK)
        {
            bl_log_error(BL_LOG_EMERG, 0, "module \"%s\" failed to start in "
                         "the %s", (*m)->name, child->title);
            exit(BL_EXIT_FATAL);
        }
    }
}

/*
 * Ready means able to serve.  A child whose pool has not reached the
 * database yet (connected, schema checked, statements prepared) would
 * only answer UNAVAILABLE, so it reports ready once it has: the master's
 * reload transaction then drains the old generation only when the new one
 * can take over, and READY=1 tells systemd that the database is there
 * without the master ever talking to it.  Polled, because storage knows
 * nothing of processes; the timer stops at the first success.
 */
static void
bl_child_ready_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) revents;
    if (bl_storage_available() == BL_OK) {
        ev_timer_stop(loop, w);
        bl_process_report_ready();
    }
}

void
bl_child_run(bl_cycle_t *cycle, bl_child_t *child)
{
    bl_module_t  **m;

    ev_timer_init(&bl_child_ready_ev, bl_child_ready_cb, 0.0, 0.01);
    ev_timer_start(bl_loop, &bl_child_ready_ev);
    ev_run(bl_loop, 0);

    for (m = bl_modules; *m; m++) {
        if ((*m)->exit_process) {
            (*m)->exit_process(cycle, child->kind);
        }
    }
    bl_log_error(BL_LOG_NOTICE, 0, "exit");
    exit(0);
}
