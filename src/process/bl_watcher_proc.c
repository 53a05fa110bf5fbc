/*
 * The watcher process: one per node.  It tails the revision log and fans
 * events out to the workers over shared memory, and runs the node's
 * periodic jobs (lease expiry, auto-compaction, the heartbeat and the
 * quota); all of them start through the modules' init_process hooks.
 * Leaving, it takes the node off the member list first.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_process.h>
#include <bl_master.h>
#include <bl_child.h>
#include <bl_etcd.h>

static void
bl_watcher_leave(void)
{
    bl_etcd_node_leave(bl_child_exit);
}

void
bl_watcher_process_cycle(bl_cycle_t *cycle)
{
    bl_child_t  child = {
        "watcher process", BL_PROCESS_WATCHER, NULL, NULL, bl_watcher_leave
    };

    bl_child_init(cycle, &child);
    bl_child_run(cycle, &child);
}
