/* The process cycles: the composition root of ballast. */
#ifndef BL_MASTER_H
#define BL_MASTER_H

int bl_master_run(bl_cycle_t *cycle, bl_cycle_opts_t *opts);

/* run in forked children; they never return */
void bl_worker_process_cycle(bl_cycle_t *cycle);
void bl_watcher_process_cycle(bl_cycle_t *cycle);

#endif /* BL_MASTER_H */
