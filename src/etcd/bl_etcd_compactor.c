/*
 * Auto-compaction, as etcd's --auto-compaction-mode/-retention, run by the
 * watcher process of every node:
 *
 *   compaction { mode periodic; retention 1h; }
 *       keep `retention` of history: the revision is sampled every
 *       retention/10 and compacted to the newest sample that is at least
 *       `retention` old (etcd's periodic compactor);
 *   compaction { mode revision; retention 10000; check_interval 5m; }
 *       keep the last `retention` revisions, checked every check_interval
 *       (etcd checks every 5 minutes).
 *
 * Running it on every node at once is harmless: a second compaction to
 * the same revision is refused by the store as already compacted.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_storage.h>
#include <bl_watch.h>

#define BL_COMPACT_OFF       0
#define BL_COMPACT_PERIODIC  1
#define BL_COMPACT_REVISION  2
#define BL_COMPACT_SAMPLES   11

typedef struct {
    bl_uint_t   mode;
    bl_str_t    retention;          /* a time or a count, by mode */
    int64_t     check_interval;     /* ms, revision mode */
    int64_t     retention_ms;       /* parsed, periodic mode */
    int64_t     retention_revs;     /* parsed, revision mode */
} bl_compactor_conf_t;

typedef struct {
    int64_t     rev;
    int64_t     at;                 /* ms */
} bl_compactor_sample_t;

typedef struct {
    bl_compactor_conf_t    *conf;
    ev_timer                timer;
    bl_pool_t              *pool;
    bl_storage_op_t        *op;
    int64_t                 done;          /* last revision compacted to */
    bl_compactor_sample_t   samples[BL_COMPACT_SAMPLES];
    size_t                  nsamples;
} bl_compactor_t;

static bl_compactor_t  bl_compactor;

static void *bl_compactor_create_conf(bl_cycle_t *cycle);
static char *bl_compactor_init_conf(bl_cycle_t *cycle, void *conf);
static char *bl_compactor_block(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static bl_int_t bl_compactor_init_process(bl_cycle_t *cycle,
    bl_uint_t process);

static const bl_conf_enum_t  bl_compactor_modes[] = {
    { "off", BL_COMPACT_OFF },
    { "periodic", BL_COMPACT_PERIODIC },
    { "revision", BL_COMPACT_REVISION },
    { NULL, 0 }
};

static const bl_command_t  bl_compactor_commands[] = {
    { "compaction", BL_MAIN_CONF | BL_CONF_BLOCK | BL_CONF_NOARGS,
      bl_compactor_block, 0, NULL },
    { "mode", BL_COMPACT_CONF | BL_CONF_TAKE1, bl_conf_set_enum,
      offsetof(bl_compactor_conf_t, mode), bl_compactor_modes },
    { "retention", BL_COMPACT_CONF | BL_CONF_TAKE1, bl_conf_set_str,
      offsetof(bl_compactor_conf_t, retention), NULL },
    { "check_interval", BL_COMPACT_CONF | BL_CONF_TAKE1, bl_conf_set_msec,
      offsetof(bl_compactor_conf_t, check_interval), NULL },
    bl_null_command
};

bl_module_t  bl_etcd_compactor_module = {
    "compactor", 0, bl_compactor_commands, bl_compactor_create_conf,
    bl_compactor_init_conf, NULL, bl_compactor_init_process, NULL
};

static char *
bl_compactor_block(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    (void) cmd;
    (void) conf;
    return bl_conf_parse_block(cf, BL_COMPACT_CONF, NULL);
}

static void *
bl_compactor_create_conf(bl_cycle_t *cycle)
{
    bl_compactor_conf_t  *ccf;

    ccf = bl_pcalloc(cycle->pool, sizeof(bl_compactor_conf_t));
    if (ccf) {
        ccf->mode = BL_CONF_UNSET_UINT;
        ccf->check_interval = BL_CONF_UNSET_MSEC;
    }
    return ccf;
}

static char *
bl_compactor_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_compactor_conf_t  *ccf = conf;

    (void) cycle;
    bl_conf_init_uint_value(ccf->mode, BL_COMPACT_OFF);
    bl_conf_init_msec_value(ccf->check_interval, 5 * 60 * 1000);

    if (ccf->mode == BL_COMPACT_OFF) {
        return BL_CONF_OK;
    }
    if (ccf->retention.data == NULL) {
        bl_log_error(BL_LOG_EMERG, 0, "\"compaction\" with a mode needs "
                     "\"retention\"");
        return BL_CONF_ERROR;
    }
    if (ccf->mode == BL_COMPACT_PERIODIC) {
        if (bl_conf_parse_msec(&ccf->retention, &ccf->retention_ms)
            != BL_OK || ccf->retention_ms < 1000)
        {
            bl_log_error(BL_LOG_EMERG, 0, "\"retention\" \"%.*s\" must be a "
                         "time of at least 1s in periodic mode",
                         BL_STR_ARGS(&ccf->retention));
            return BL_CONF_ERROR;
        }
    } else if (bl_atoi(ccf->retention.data, ccf->retention.len,
                       &ccf->retention_revs) != BL_OK
               || ccf->retention_revs < 1)
    {
        bl_log_error(BL_LOG_EMERG, 0, "\"retention\" \"%.*s\" must be a "
                     "number of revisions in revision mode",
                     BL_STR_ARGS(&ccf->retention));
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

static void
bl_compactor_done(void *data, bl_storage_status_e st, void *result)
{
    int64_t  rev = (int64_t) (intptr_t) data;

    (void) result;
    bl_compactor.op = NULL;
    bl_pool_destroy(bl_compactor.pool);
    bl_compactor.pool = NULL;

    if (st == BL_ST_OK) {
        bl_log_error(BL_LOG_INFO, 0, "auto-compacted to revision %" PRId64,
                     rev);
        bl_compactor.done = rev;
    } else if (st == BL_ST_COMPACTED) {
        bl_compactor.done = rev;       /* another node was first */
    } else {
        bl_log_error(BL_LOG_WARN, 0, "auto-compaction to %" PRId64
                     " failed: %s", rev, bl_storage_status_text(st));
    }
}

static void
bl_compactor_compact(int64_t rev)
{
    bl_storage_status_e  st;

    if (rev <= bl_compactor.done || rev <= bl_watch_compact_revision()
        || bl_compactor.op)
    {
        return;
    }
    bl_compactor.pool = bl_pool_create(4096);
    if (bl_compactor.pool == NULL) {
        return;
    }
    st = bl_storage_compact(bl_compactor.pool, rev, 0, bl_compactor_done,
                            (void *) (intptr_t) rev, &bl_compactor.op);
    if (st != BL_ST_OK) {
        bl_compactor.op = NULL;
        bl_compactor_done((void *) (intptr_t) rev, st, NULL);
    }
}

static void
bl_compactor_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_compactor_conf_t  *ccf = bl_compactor.conf;
    int64_t               now, rev, target;
    size_t                i;

    (void) loop;
    (void) w;
    (void) revents;
    now = bl_msec_now();
    rev = bl_watch_store_revision();
    if (rev <= 0) {
        return;                  /* the store's revision is not known yet */
    }

    if (ccf->mode == BL_COMPACT_REVISION) {
        bl_compactor_compact(rev - ccf->retention_revs);
        return;
    }

    /* periodic: sample, then compact to the newest sample old enough */
    if (bl_compactor.nsamples == BL_COMPACT_SAMPLES) {
        memmove(&bl_compactor.samples[0], &bl_compactor.samples[1],
                (BL_COMPACT_SAMPLES - 1) * sizeof(bl_compactor_sample_t));
        bl_compactor.nsamples--;
    }
    bl_compactor.samples[bl_compactor.nsamples].rev = rev;
    bl_compactor.samples[bl_compactor.nsamples].at = now;
    bl_compactor.nsamples++;

    target = 0;
    for (i = 0; i < bl_compactor.nsamples; i++) {
        if (now - bl_compactor.samples[i].at >= ccf->retention_ms) {
            target = bl_compactor.samples[i].rev;
        }
    }
    if (target > 0) {
        bl_compactor_compact(target);
    }
}

static bl_int_t
bl_compactor_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    bl_compactor_conf_t  *ccf;
    double                every;

    ccf = bl_get_conf(cycle, bl_etcd_compactor_module);
    if (process != BL_PROCESS_WATCHER || ccf->mode == BL_COMPACT_OFF) {
        return BL_OK;
    }
    memset(&bl_compactor, 0, sizeof(bl_compactor));
    bl_compactor.conf = ccf;

    every = ccf->mode == BL_COMPACT_PERIODIC
            ? (double) ccf->retention_ms / 10000.0
            : (double) ccf->check_interval / 1000.0;
    ev_timer_init(&bl_compactor.timer, bl_compactor_tick, every, every);
    ev_timer_start(bl_loop, &bl_compactor.timer);
    return BL_OK;
}
