/*
 * The watcher process: one per node.  It will tail the revision log and
 * fan events out to the workers over shared memory (the Watch issue); for
 * now it holds its place in the process table so that supervision,
 * reload and shutdown already treat it as they will.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_process.h>
#include <bl_master.h>
#include <bl_child.h>

void
bl_watcher_process_cycle(bl_cycle_t *cycle)
{
    bl_child_t  child = {
        "watcher process", BL_PROCESS_WATCHER, NULL, NULL
    };

    bl_child_init(cycle, &child);
    bl_child_run(cycle, &child);
}
