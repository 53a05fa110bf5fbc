/*
 * Child processes of the master: a table of slots with a respawn policy,
 * spawning (fork, or fork+exec for an external program such as the
 * embedded PostgreSQL), privilege dropping, process titles, pid files.
 *
 * A child learns that the master died when the read end of its channel
 * (a pipe whose write end only the master holds) reports EOF.
 */
#ifndef BL_PROCESS_H
#define BL_PROCESS_H

#include <signal.h>
#include <sys/types.h>

/* a child exits with this when it cannot start: do not respawn it */
#define BL_EXIT_FATAL  2

#define BL_MAX_PROCESSES  1100

typedef void (*bl_spawn_proc_pt)(void *data);

typedef enum {
    BL_PROC_FREE = 0,
    BL_PROC_RUNNING,
    BL_PROC_EXITED
} bl_proc_state_e;

typedef struct {
    pid_t              pid;
    bl_proc_state_e    state;
    int                kind;         /* BL_PROCESS_WORKER, ... or custom */
    bl_uint_t          generation;   /* cycle generation it serves */
    int                slot;         /* worker number within generation */
    int                status;       /* wait status once exited */
    int                channel;      /* master end: readiness reports */
    unsigned           respawn:1;    /* restart when it dies */
    unsigned           ready:1;      /* reported ready */
    unsigned           retiring:1;   /* told to finish and exit */
    int64_t            started;      /* ms, monotonic */
    int                crashes;      /* quick deaths in a row: backoff */
    const char        *name;
} bl_process_t;

extern bl_process_t  bl_processes[BL_MAX_PROCESSES];
extern int           bl_process_channel;   /* in a child: its read end */
extern int           bl_process_ready_fd;  /* in a child: report ready */
extern int           bl_process_slot;      /* in a child: its table slot */

/*
 * Fork a child that runs proc(data) and never returns (exits).  The
 * parent gets the slot index or BL_ERROR.  The child gets a channel:
 * it writes one byte to bl_process_ready_fd when it is ready to serve.
 */
bl_int_t bl_spawn_process(bl_spawn_proc_pt proc, void *data,
    const char *name, int kind, bl_uint_t generation, int slot);
/* mark a reaped child exited and log how; NULL if it is not ours */
bl_process_t *bl_process_exited(pid_t pid, int status);
/* runs first in every forked child: the master drops its own state */
extern void (*bl_process_child_hook)(void);
void bl_signal_processes(int kind, bl_uint_t generation, int all_but,
    int signo);
int64_t bl_monotonic_msec(void);

/* in a child: called first, sets the process title and channel watch */
void bl_process_child_init(const char *title);
void bl_process_report_ready(void);

/* drop root to uid/gid (no-op when not root); BL_ERROR logged */
bl_int_t bl_switch_user(uid_t uid, gid_t gid, const char *user);

/* process title shown by ps: "ballast: worker process" */
void bl_init_setproctitle(int argc, char **argv);
void bl_setproctitle(const char *title);

bl_int_t bl_create_pidfile(const char *path);
void bl_delete_pidfile(const char *path);
pid_t bl_read_pidfile(const char *path);

bl_int_t bl_daemonize(void);

#endif /* BL_PROCESS_H */
