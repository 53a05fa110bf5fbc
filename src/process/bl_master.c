/*
 * The master: owns the configuration, the listening sockets and the
 * children; never touches a client connection or the database.
 *
 * Signals (as nginx): HUP reload, QUIT graceful stop, TERM/INT fast stop,
 * USR1 reopen logs.  A reload is a transaction: the new configuration is
 * read completely; on error the old one stays.  On success a new
 * generation of workers starts, and only when every one of them reported
 * ready is the old generation told to drain (SIGQUIT).
 *
 * Under systemd (Type=notify) the master tells the service manager
 * READY=1 once the first generation is ready: the listening sockets are
 * open (before any fork), and every worker and the watcher reported
 * ready, which a child does only once its database pool is connected
 * (bl_child.c).  A reload is RELOADING=1 then READY=1, with a STATUS=
 * that says whether it failed; a stop is STOPPING=1.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_event.h>
#include <bl_process.h>
#include <bl_notify.h>
#include <bl_embedded.h>
#include <bl_http_metrics.h>
#include <bl_master.h>
#include <bl_child.h>

#include <signal.h>
#include <sys/wait.h>

#define BL_KIND_POSTGRES      0x100
#define BL_RELOAD_TIMEOUT     15000   /* ms for new workers to get ready */
#define BL_PG_START_TIMEOUT   120000  /* ms for the embedded db to start */
#define BL_FAST_KILL_TIMEOUT  5000    /* ms after TERM before KILL */
#define BL_QUICK_DEATH        1000    /* ms: dying sooner counts a crash */

typedef struct {
    bl_cycle_t         *cycle;
    bl_cycle_t         *old_cycle;      /* during a reload */
    bl_cycle_opts_t    *opts;
    int                 exiting;        /* 0, 1 graceful, 2 fast */
    unsigned            reloading:1;    /* new generation not yet ready */
    unsigned            reload_again:1; /* HUP while reloading */
    unsigned            started:1;      /* first generation launched */
    unsigned            notified:1;     /* READY=1 told, serving */
    int                 pg;             /* slot of the embedded db or -1 */
    int                 pg_crashes;
    int64_t             pg_deadline;    /* ms: give up waiting for ready */
    ev_signal           sig[6];
    ev_child            child;
    ev_timer            tick;           /* respawns, readiness, deadlines */
    ev_io               ready_io[BL_MAX_PROCESSES];
    int64_t             respawn_at[BL_MAX_PROCESSES];
    int64_t             reload_deadline;
    int64_t             kill_at;        /* ms: SIGKILL what is left */
} bl_master_t;

static bl_master_t  bl_master;

static void bl_master_start_generation(bl_master_t *m);
static void bl_master_check_exit(bl_master_t *m);

/* in each child: forget the master's loop and watchers */
static void
bl_master_child_hook(void)
{
    sigset_t  set;
    size_t    i;

    for (i = 0; i < bl_nelems(bl_master.sig); i++) {
        ev_signal_stop(bl_loop, &bl_master.sig[i]);
    }
    ev_child_stop(bl_loop, &bl_master.child);
    ev_timer_stop(bl_loop, &bl_master.tick);
    for (i = 0; i < BL_MAX_PROCESSES; i++) {
        if (ev_is_active(&bl_master.ready_io[i])) {
            ev_io_stop(bl_loop, &bl_master.ready_io[i]);
        }
    }
    ev_loop_destroy(bl_loop);
    bl_loop = NULL;

    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
}

static int
bl_master_count(int kind, int any_generation, bl_uint_t generation)
{
    int  i, n;

    n = 0;
    for (i = 0; i < BL_MAX_PROCESSES; i++) {
        if (bl_processes[i].state == BL_PROC_RUNNING
            && (bl_processes[i].kind & kind)
            && (any_generation || bl_processes[i].generation == generation))
        {
            n++;
        }
    }
    return n;
}

static void
bl_master_ready_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bl_process_t  *p;
    char           c;
    ssize_t        n;

    (void) revents;
    p = w->data;
    n = read(w->fd, &c, 1);
    if (n == 1) {
        p->ready = 1;
        bl_log_error(BL_LOG_INFO, 0, "%s %d is ready", p->name, (int) p->pid);
    }
    /* one byte or EOF: either way this channel has said all it will */
    ev_io_stop(loop, w);
}

static bl_int_t
bl_master_spawn(bl_master_t *m, bl_spawn_proc_pt proc, void *data,
    const char *name, int kind, bl_uint_t generation, int slot, int crashes)
{
    bl_int_t       s;
    bl_process_t  *p;

    s = bl_spawn_process(proc, data, name, kind, generation, slot);
    if (s == BL_ERROR) {
        return BL_ERROR;
    }
    p = &bl_processes[s];
    p->crashes = crashes;
    m->respawn_at[s] = 0;
    ev_io_init(&m->ready_io[s], bl_master_ready_cb, p->channel, EV_READ);
    m->ready_io[s].data = p;
    ev_io_start(bl_loop, &m->ready_io[s]);
    return s;
}

static void
bl_master_worker_proc(void *data)
{
    bl_worker_process_cycle(data);
}

static void
bl_master_watcher_proc(void *data)
{
    bl_watcher_process_cycle(data);
}

static void
bl_master_postgres_proc(void *data)
{
    bl_cycle_t      *cycle = data;
    bl_core_conf_t  *ccf;

    bl_setproctitle("embedded postgres (starting)");
    ccf = bl_core_conf(cycle);
    if (ccf->user.data
        && bl_switch_user(ccf->uid, ccf->gid, (char *) ccf->user.data)
           != BL_OK)
    {
        _exit(BL_EXIT_FATAL);
    }
    bl_embedded_exec(cycle);
    _exit(BL_EXIT_FATAL);
}

static void
bl_master_start_postgres(bl_master_t *m)
{
    bl_int_t  s;

    s = bl_master_spawn(m, bl_master_postgres_proc, m->cycle,
                        "embedded postgres", BL_KIND_POSTGRES, 0, 0,
                        m->pg_crashes);
    m->pg = (int) s;
    m->pg_deadline = bl_monotonic_msec() + BL_PG_START_TIMEOUT;
}

static void
bl_master_start_generation(bl_master_t *m)
{
    bl_core_conf_t  *ccf;
    bl_uint_t        g;
    int              i;

    ccf = bl_core_conf(m->cycle);
    g = m->cycle->generation;

    for (i = 0; i < ccf->worker_processes; i++) {
        (void) bl_master_spawn(m, bl_master_worker_proc, m->cycle,
                               "worker process", BL_PROCESS_WORKER, g, i, 0);
    }
    (void) bl_master_spawn(m, bl_master_watcher_proc, m->cycle,
                           "watcher process", BL_PROCESS_WATCHER, g,
                           (int) ccf->worker_processes, 0);
    m->started = 1;
}

/* every running child of the current generation reported ready */
static int
bl_master_generation_ready(bl_master_t *m)
{
    int            i, n;
    bl_process_t  *p;

    n = 0;
    for (i = 0; i < BL_MAX_PROCESSES; i++) {
        p = &bl_processes[i];
        if (p->state != BL_PROC_RUNNING || p->generation
            != m->cycle->generation
            || !(p->kind & (BL_PROCESS_WORKER | BL_PROCESS_WATCHER)))
        {
            continue;
        }
        if (!p->ready) {
            return 0;
        }
        n++;
    }
    return n > 0;
}

/* the modules' master-side set-up for a configuration (shared memory...) */
static bl_int_t
bl_master_init_modules(bl_cycle_t *cycle)
{
    bl_module_t  **mod;

    for (mod = bl_modules; *mod; mod++) {
        if ((*mod)->init_master && (*mod)->init_master(cycle) != BL_OK) {
            bl_log_error(BL_LOG_EMERG, 0, "module \"%s\" could not set up "
                         "the configuration", (*mod)->name);
            return BL_ERROR;
        }
    }
    return BL_OK;
}

/*
 * A failed reload leaves the service as it was: READY=1 again (it still
 * serves) with the reason; before the first READY=1 only the reason.
 */
static void
bl_master_notify_failed(bl_master_t *m, const char *why)
{
    if (m->notified) {
        bl_notify_ready("reload failed: %s; the old configuration keeps "
                        "serving", why);
    } else {
        bl_notify_status("reload failed: %s", why);
    }
}

static void
bl_master_finish_reload(bl_master_t *m)
{
    bl_signal_processes(BL_PROCESS_WORKER | BL_PROCESS_WATCHER,
                        m->cycle->generation, 1, SIGQUIT);
    if (m->old_cycle) {
        bl_cycle_free(m->old_cycle);
        m->old_cycle = NULL;
    }
    m->reloading = 0;
    bl_metrics_reloaded(1);
    bl_log_error(BL_LOG_NOTICE, 0, "reconfigured: generation %lu serving",
                 (unsigned long) m->cycle->generation);
    m->notified = 1;
    bl_notify_ready("serving, configuration generation %lu",
                    (unsigned long) m->cycle->generation);
}

static void
bl_master_abort_reload(bl_master_t *m)
{
    bl_cycle_t  *failed;

    bl_log_error(BL_LOG_ALERT, 0, "the workers of generation %lu did not "
                 "report ready in %d ms, keeping the old configuration",
                 (unsigned long) m->cycle->generation, BL_RELOAD_TIMEOUT);
    bl_master_notify_failed(m, "the new workers did not report ready in "
                            "time (is the database reachable?)");
    bl_signal_processes(BL_PROCESS_WORKER | BL_PROCESS_WATCHER,
                        m->cycle->generation, 0, SIGTERM);
    failed = m->cycle;
    bl_return_listening(&failed->listening, &m->old_cycle->listening);
    m->cycle = m->old_cycle;
    m->old_cycle = NULL;
    bl_cycle = m->cycle;
    bl_log = &m->cycle->log;
    bl_cycle_free(failed);
    m->reloading = 0;
    bl_metrics_reloaded(0);
}

static void
bl_master_reload(bl_master_t *m)
{
    bl_cycle_t  *cycle;
    const char  *why;

    if (m->reloading || !m->started) {
        m->reload_again = 1;     /* after the one in progress */
        return;
    }
    bl_log_error(BL_LOG_NOTICE, 0, "signal HUP: reconfiguring");
    if (m->notified) {
        bl_notify_reloading();
    }
    bl_log_forget_error();

    cycle = bl_cycle_init(m->opts, m->cycle);
    if (cycle == NULL) {
        bl_master_notify_failed(m, bl_log_last_error()[0]
                                   ? bl_log_last_error()
                                   : "see the error log");
        bl_log_error(BL_LOG_ALERT, 0, "reconfiguration failed, the old "
                     "configuration keeps serving");
        bl_metrics_reloaded(0);
        return;
    }
    if (bl_embedded_changed(m->cycle, cycle)) {
        why = "the embedded storage settings changed: that needs a restart";
        bl_log_error(BL_LOG_ALERT, 0, "%s", why);
        goto keep_old;
    }
    if (bl_master_init_modules(cycle) != BL_OK) {
        why = "a module could not set up the new configuration";
        goto keep_old;
    }

    m->old_cycle = m->cycle;
    m->cycle = cycle;
    bl_cycle = cycle;
    bl_log = &cycle->log;
    m->reloading = 1;
    m->reload_deadline = bl_monotonic_msec() + BL_RELOAD_TIMEOUT;
    bl_master_start_generation(m);
    return;

keep_old:
    bl_log_error(BL_LOG_ALERT, 0, "the old configuration keeps serving");
    bl_metrics_reloaded(0);
    bl_master_notify_failed(m, why);
    bl_return_listening(&cycle->listening, &m->cycle->listening);
    bl_cycle_free(cycle);
}

static void
bl_master_reopen(bl_master_t *m)
{
    bl_core_conf_t  *ccf;

    bl_log_error(BL_LOG_NOTICE, 0, "signal USR1: reopening logs");
    if (bl_log_reopen(&m->cycle->log) == BL_OK && m->cycle->log.file) {
        ccf = bl_core_conf(m->cycle);
        if (ccf->daemon) {
            bl_log_redirect_stderr(&m->cycle->log);
        }
        /* workers reopen the file themselves without root */
        if (ccf->user.data && geteuid() == 0
            && chown(m->cycle->log.file, ccf->uid, (gid_t) -1) == -1)
        {
            bl_log_error(BL_LOG_ALERT, errno, "chown(\"%s\") failed",
                         m->cycle->log.file);
        }
    }
    bl_signal_processes(BL_PROCESS_WORKER | BL_PROCESS_WATCHER, 0, 1,
                        SIGUSR1);
    bl_signal_processes(BL_PROCESS_WORKER | BL_PROCESS_WATCHER, 0, 0,
                        SIGUSR1);
}

static void
bl_master_stop(bl_master_t *m, int how)
{
    bl_core_conf_t  *ccf;
    int              signo;

    if (m->exiting >= how) {
        return;
    }
    if (!m->exiting) {
        bl_notify_stopping(how == 1 ? "graceful shutdown" : "fast shutdown");
    }
    m->exiting = how;
    signo = how == 1 ? SIGQUIT : SIGTERM;
    bl_log_error(BL_LOG_NOTICE, 0, "%s shutdown",
                 how == 1 ? "graceful" : "fast");

    bl_signal_processes(BL_PROCESS_WORKER | BL_PROCESS_WATCHER, 0, 1, signo);
    bl_signal_processes(BL_PROCESS_WORKER | BL_PROCESS_WATCHER, 0, 0, signo);

    ccf = bl_core_conf(m->cycle);
    m->kill_at = bl_monotonic_msec()
                 + (how == 1 ? ccf->shutdown_timeout + BL_FAST_KILL_TIMEOUT
                             : BL_FAST_KILL_TIMEOUT);
    bl_master_check_exit(m);
}

static void
bl_master_check_exit(bl_master_t *m)
{
    bl_process_t  *pg;

    if (!m->exiting) {
        return;
    }
    if (bl_master_count(BL_PROCESS_WORKER | BL_PROCESS_WATCHER, 1, 0)) {
        return;
    }
    /* the database goes last: workers may still have been committing */
    if (m->pg >= 0 && bl_processes[m->pg].state == BL_PROC_RUNNING) {
        pg = &bl_processes[m->pg];
        if (!pg->retiring) {
            pg->retiring = 1;
            pg->respawn = 0;
            bl_log_error(BL_LOG_NOTICE, 0, "stopping embedded postgres %d",
                         (int) pg->pid);
            (void) kill(pg->pid, SIGINT);            /* "fast" mode */
            m->kill_at = bl_monotonic_msec() + 30000;
        }
        return;
    }
    ev_break(bl_loop, EVBREAK_ALL);
}

static void
bl_master_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    bl_master_t  *m = w->data;

    (void) loop;
    (void) revents;
    switch (w->signum) {
    case SIGHUP:
        if (!m->exiting) {
            bl_master_reload(m);
        }
        break;
    case SIGQUIT:
        bl_master_stop(m, 1);
        break;
    case SIGTERM:
    case SIGINT:
        bl_master_stop(m, 2);
        break;
    case SIGUSR1:
        bl_master_reopen(m);
        break;
    }
}

static void
bl_master_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    bl_master_t   *m = w->data;
    bl_process_t  *p;
    int64_t        now, delay;
    int            s;

    (void) loop;
    (void) revents;
    p = bl_process_exited(w->rpid, w->rstatus);
    if (p == NULL) {
        return;
    }
    s = (int) (p - bl_processes);
    if (ev_is_active(&m->ready_io[s])) {
        ev_io_stop(bl_loop, &m->ready_io[s]);
    }

    now = bl_monotonic_msec();
    if (!m->exiting && p->respawn
        && !(WIFEXITED(p->status) && WEXITSTATUS(p->status) == BL_EXIT_FATAL))
    {
        /* back off a crash loop: 100 ms doubling up to 10 s */
        if (now - p->started < BL_QUICK_DEATH) {
            p->crashes++;
            delay = 100LL << bl_min(p->crashes, 7);
            delay = bl_min(delay, 10000);
        } else {
            p->crashes = 0;
            delay = 0;
        }
        m->respawn_at[s] = now + delay;
        if (s == m->pg) {
            m->pg_crashes = p->crashes;
        }
        return;                 /* slot stays EXITED until respawned */
    }

    if (WIFEXITED(p->status) && WEXITSTATUS(p->status) == BL_EXIT_FATAL
        && !m->exiting)
    {
        bl_log_error(BL_LOG_ALERT, 0, "%s %d could not start, not "
                     "respawning it", p->name, (int) p->pid);
    }
    p->state = BL_PROC_FREE;
    if (s == m->pg) {
        m->pg = -1;
    }
    bl_master_check_exit(m);
}

static void
bl_master_respawn(bl_master_t *m, int s)
{
    bl_process_t  p;
    bl_int_t      ns;

    p = bl_processes[s];
    bl_processes[s].state = BL_PROC_FREE;
    m->respawn_at[s] = 0;

    if (p.kind == BL_KIND_POSTGRES) {
        bl_metrics_respawned(BL_METRICS_RESPAWN_POSTGRES);
        bl_master_start_postgres(m);
        return;
    }
    /* a child of a generation that was retired meanwhile is not back */
    if (p.generation != m->cycle->generation) {
        return;
    }
    bl_metrics_respawned(p.kind == BL_PROCESS_WORKER
                         ? BL_METRICS_RESPAWN_WORKER
                         : BL_METRICS_RESPAWN_WATCHER);
    ns = bl_master_spawn(m, p.kind == BL_PROCESS_WORKER
                            ? bl_master_worker_proc : bl_master_watcher_proc,
                         m->cycle, p.name, p.kind, p.generation, p.slot,
                         p.crashes);
    (void) ns;
}

static void
bl_master_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_master_t  *m = w->data;
    int64_t       now;
    int           i;

    (void) loop;
    (void) revents;
    now = bl_monotonic_msec();
    bl_notify_watchdog(now);

    for (i = 0; i < BL_MAX_PROCESSES; i++) {
        if (bl_processes[i].state == BL_PROC_EXITED && m->respawn_at[i]
            && m->respawn_at[i] <= now && !m->exiting)
        {
            bl_master_respawn(m, i);
        }
    }

    if (!m->started && !m->exiting) {
        if (m->pg >= 0 && bl_processes[m->pg].state == BL_PROC_RUNNING
            && bl_embedded_ready(m->cycle, bl_processes[m->pg].pid)
               == BL_OK)
        {
            bl_log_error(BL_LOG_NOTICE, 0, "embedded postgres is ready");
            bl_master_start_generation(m);
        } else if (now > m->pg_deadline) {
            bl_log_error(BL_LOG_EMERG, 0, "embedded postgres did not start "
                         "in %d s, see its log in the data directory",
                         BL_PG_START_TIMEOUT / 1000);
            bl_master_stop(m, 2);
        }
    }

    if (m->started && !m->notified && !m->reloading && !m->exiting
        && bl_master_generation_ready(m))
    {
        m->notified = 1;
        bl_log_error(BL_LOG_NOTICE, 0, "every process is ready, serving");
        bl_notify_ready("serving, configuration generation %lu",
                        (unsigned long) m->cycle->generation);
    }

    if (m->reloading) {
        if (bl_master_generation_ready(m)) {
            bl_master_finish_reload(m);
        } else if (now > m->reload_deadline) {
            bl_master_abort_reload(m);
        }
    }
    if (!m->reloading && m->reload_again && !m->exiting) {
        m->reload_again = 0;
        bl_master_reload(m);
    }

    if (m->exiting && m->kill_at && now > m->kill_at) {
        m->kill_at = 0;
        bl_log_error(BL_LOG_ALERT, 0, "shutdown deadline passed, killing "
                     "the remaining processes");
        for (i = 0; i < BL_MAX_PROCESSES; i++) {
            if (bl_processes[i].state == BL_PROC_RUNNING) {
                (void) kill(bl_processes[i].pid, SIGKILL);
            }
        }
    }
}

int
bl_master_run(bl_cycle_t *cycle, bl_cycle_opts_t *opts)
{
    static const int  signals[] = {
        SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGPIPE
    };
    bl_master_t      *m = &bl_master;
    bl_core_conf_t   *ccf;
    size_t            i;
    pid_t             started;

    m->cycle = cycle;
    m->opts = opts;
    m->pg = -1;
    bl_cycle = cycle;
    ccf = bl_core_conf(cycle);

    started = getpid();     /* the process the service manager knows */

    if (ccf->daemon && bl_daemonize() != BL_OK) {
        return 1;
    }

    /* from here the configured log; serious start-up errors on stderr too */
    bl_log = &cycle->log;
    bl_log_set_stderr_too(!ccf->daemon);
    if (ccf->daemon) {
        bl_log_redirect_stderr(&cycle->log);
    }
    bl_notify_init(started);

    if (ccf->user.data && geteuid() == 0 && cycle->log.file
        && chown(cycle->log.file, ccf->uid, (gid_t) -1) == -1)
    {
        bl_log_error(BL_LOG_ALERT, errno, "chown(\"%s\") failed",
                     cycle->log.file);
    }

    if (bl_create_pidfile((char *) ccf->pid.data) != BL_OK) {
        return 1;
    }

    bl_loop = ev_default_loop(EVFLAG_AUTO);
    if (bl_loop == NULL) {
        bl_log_error(BL_LOG_EMERG, 0, "could not initialise libev");
        bl_delete_pidfile((char *) ccf->pid.data);
        return 1;
    }
    bl_process_child_hook = bl_master_child_hook;
    bl_setproctitle("master process");

    for (i = 0; i < bl_nelems(signals); i++) {
        ev_signal_init(&m->sig[i], bl_master_signal_cb, signals[i]);
        m->sig[i].data = m;
        ev_signal_start(bl_loop, &m->sig[i]);
    }
    ev_child_init(&m->child, bl_master_child_cb, 0, 0);
    m->child.data = m;
    ev_child_start(bl_loop, &m->child);
    ev_timer_init(&m->tick, bl_master_tick_cb, 0.05, 0.05);
    m->tick.data = m;
    ev_timer_start(bl_loop, &m->tick);

    bl_log_error(BL_LOG_NOTICE, 0, "ballast/" BL_VERSION " starting, "
                 "%d worker processes", (int) ccf->worker_processes);

    if (bl_master_init_modules(cycle) != BL_OK) {
        bl_delete_pidfile((char *) ccf->pid.data);
        return 1;
    }

    if (bl_embedded_enabled(cycle)) {
        if (bl_embedded_prepare(cycle, ccf->uid, ccf->gid,
                                (char *) ccf->user.data) != BL_OK)
        {
            bl_delete_pidfile((char *) ccf->pid.data);
            return 1;
        }
        bl_master_start_postgres(m);
    } else {
        bl_master_start_generation(m);
    }

    ev_run(bl_loop, 0);

    bl_log_error(BL_LOG_NOTICE, 0, "exit");
    ccf = bl_core_conf(m->cycle);
    bl_delete_pidfile((char *) ccf->pid.data);
    return 0;
}
