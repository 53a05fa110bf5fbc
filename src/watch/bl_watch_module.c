/*
 * The watch module: the event ring in shared memory and the eventfds that
 * wake the workers, both made by the master before it forks, so every
 * child inherits them; then, per process, the feed (in the watcher) or
 * the hub (in each worker).
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_process.h>
#include <bl_ring.h>
#include <bl_watch.h>
#include <bl_watch_module.h>

#include <sys/eventfd.h>
#include <sys/mman.h>

typedef struct {
    size_t  ring_size;
} bl_watch_conf_t;

static void *bl_watch_create_conf(bl_cycle_t *cycle);
static char *bl_watch_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_watch_init_master(bl_cycle_t *cycle);
static bl_int_t bl_watch_init_process(bl_cycle_t *cycle, bl_uint_t process);
static void bl_watch_exit_process(bl_cycle_t *cycle, bl_uint_t process);

static const bl_command_t  bl_watch_commands[] = {
    { "ring_size", BL_WATCH_CONF | BL_CONF_TAKE1, bl_conf_set_size,
      offsetof(bl_watch_conf_t, ring_size), NULL },
    bl_null_command
};

bl_module_t  bl_watch_module = {
    "watch", 0, bl_watch_commands, bl_watch_create_conf, bl_watch_init_conf,
    bl_watch_init_master, bl_watch_init_process, bl_watch_exit_process
};

/* what the master made, inherited by every child */
bl_ring_t  *bl_watch_ring;
int         bl_watch_wake[BL_WATCH_WAKE_SLOTS];
static size_t  bl_watch_ring_mapped;
bl_watch_stats_t  bl_watch_stats;

static void *
bl_watch_create_conf(bl_cycle_t *cycle)
{
    bl_watch_conf_t  *wcf;

    wcf = bl_pcalloc(cycle->pool, sizeof(bl_watch_conf_t));
    if (wcf) {
        wcf->ring_size = BL_CONF_UNSET_SIZE;
    }
    return wcf;
}

static char *
bl_watch_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_watch_conf_t  *wcf = conf;

    (void) cycle;
    bl_conf_init_size_value(wcf->ring_size, 64 * 1024 * 1024);
    if (wcf->ring_size < 64 * 1024) {
        bl_log_error(BL_LOG_EMERG, 0, "\"ring_size\" must be at least 64k");
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

static bl_int_t
bl_watch_init_master(bl_cycle_t *cycle)
{
    bl_watch_conf_t  *wcf;
    size_t            size;
    void             *p;
    int               i;

    wcf = bl_get_conf(cycle, bl_watch_module);
    size = bl_ring_size(wcf->ring_size);

    if (bl_watch_ring) {
        /* the ring lives as long as the master: events in flight stay */
        if (size != bl_watch_ring_mapped) {
            bl_log_error(BL_LOG_WARN, 0, "a new \"ring_size\" takes effect "
                         "at the next restart");
        }
        return BL_OK;
    }

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        bl_log_error(BL_LOG_EMERG, errno, "mmap(%zu) for the event ring "
                     "failed", size);
        return BL_ERROR;
    }
    bl_ring_init(p, size);
    bl_watch_ring = p;
    bl_watch_ring_mapped = size;

    for (i = 0; i < BL_WATCH_WAKE_SLOTS; i++) {
        bl_watch_wake[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (bl_watch_wake[i] == -1) {
            bl_log_error(BL_LOG_EMERG, errno, "eventfd() failed");
            return BL_ERROR;
        }
    }
    return BL_OK;
}

static bl_int_t
bl_watch_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    (void) cycle;
    if (bl_watch_ring == NULL) {
        return BL_OK;               /* a unit test without a master */
    }
    if (process == BL_PROCESS_WATCHER) {
        return bl_watch_feed_start();
    }
    if (process == BL_PROCESS_WORKER) {
        return bl_watch_hub_start(
            bl_watch_wake[bl_process_slot % BL_WATCH_WAKE_SLOTS]);
    }
    return BL_OK;
}

static void
bl_watch_exit_process(bl_cycle_t *cycle, bl_uint_t process)
{
    (void) cycle;
    if (process == BL_PROCESS_WORKER && bl_watch_ring) {
        bl_watch_hub_stop();
    }
}
