/*
 * What every child of the master (worker, watcher) does the same way:
 * its own event loop, privileges dropped, signals as loop events, and
 * leaving when the master is gone.
 */
#ifndef BL_CHILD_H
#define BL_CHILD_H

typedef struct {
    const char   *title;          /* "worker process" */
    bl_uint_t     kind;           /* BL_PROCESS_WORKER, ... */
    /* QUIT: finish what is in flight, then call bl_child_exit() */
    void        (*graceful)(void);
    /* TERM/INT or master gone: drop everything now */
    void        (*fast)(void);
    /*
     * May be NULL.  The process is about to leave, whatever the signal
     * (QUIT once graceful is done, TERM, the master gone): a last job
     * that tells others, then bl_child_exit() again, within a second or
     * so (the master kills what is left after a few).
     */
    void        (*leave)(void);
} bl_child_t;

/* set up the process; exits with BL_EXIT_FATAL on failure */
void bl_child_init(bl_cycle_t *cycle, bl_child_t *child);
/* run the loop until bl_child_exit(); never returns */
void bl_child_run(bl_cycle_t *cycle, bl_child_t *child);
/* leave the loop (after the leave hook, if any, called back); exit hooks
 * run, then the process exits with code 0 */
void bl_child_exit(void);
/* 1 once QUIT or TERM arrived */
int bl_child_exiting(void);

#endif /* BL_CHILD_H */
