/*
 * This node in the cluster, kept by its watcher process:
 *
 *   - every second, one statement: the node's heartbeat (its row in
 *     ballast_node: member id, name, client URLs, this watcher's
 *     instance), the size of ballast's tables, and the NOSPACE alarm when
 *     that is over `limits { quota }` (etcd's --quota-backend-bytes);
 *     the answer is the alarms raised in the cluster, by any node;
 *   - the alarms and the size go into a small shared area that the
 *     master mapped before fork, where every worker reads them: a write
 *     is refused with NOSPACE without a round trip of its own;
 *   - leaving (the watcher stops, whatever the signal), it removes the
 *     node's row, so that the other nodes list it no more at once; a
 *     node that was killed drops out when its heartbeat is older than
 *     BL_ETCD_MEMBER_LIVE_SEC.
 *
 * The alarms word holds a generation above the alarm bits.  A worker that
 * changed the alarms (Alarm ACTIVATE or DEACTIVATE) writes what they are
 * now with the next generation; the watcher writes what its heartbeat
 * read only if the generation is still the one it saw when it sent it,
 * so an answer read before a worker's change never undoes it.
 *
 * Over the quota, etcd raises the alarm on the write that finds no room;
 * here the measure is a second old at most, so writes may go on that
 * long.  A disarmed alarm is raised again by the next heartbeat if the
 * database is still over the quota.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_etcd.h>
#include <bl_storage_maint.h>

#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#define BL_ETCD_NODE_TICK_MSEC    1000
/* failed heartbeats in a row that are not worth a word */
#define BL_ETCD_NODE_QUIET_FAILURES  3
/* a leaving watcher waits this long at most for its row to go */
#define BL_ETCD_NODE_LEAVE_MSEC   1000

#define BL_ETCD_SHM_MAGIC         0x626c6e6f  /* "blno" */
#define BL_ETCD_SHM_VERSION       1

typedef struct {
    uint32_t    magic;
    uint32_t    version;
    uint64_t    size;
    uint64_t    alarms;           /* generation << 32 | 1 << alarm type */
    int64_t     db_size;          /* -1 until measured */
    int64_t     db_size_in_use;
} bl_etcd_shm_t;

static bl_etcd_shm_t  *bl_etcd_shm;

static struct {
    bl_node_req_t      req;
    ev_timer           tick;
    ev_timer           leave_timer;
    bl_pool_t         *pool;
    bl_storage_op_t   *op;
    uint64_t           seen;        /* the alarms word when it was sent */
    void             (*done)(void);
    bl_uint_t          failures;    /* in a row */
    unsigned           started:1;
    unsigned           nospace:1;   /* as last logged */
} bl_etcd_node;

static void bl_etcd_node_tick(struct ev_loop *loop, ev_timer *w,
    int revents);


/* the shared area: made once, kept across reloads (as the event ring) */
bl_int_t
bl_etcd_node_init_master(void)
{
    void  *p;

    if (bl_etcd_shm != NULL) {
        return BL_OK;
    }
    p = mmap(NULL, sizeof(bl_etcd_shm_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        bl_log_error(BL_LOG_EMERG, errno, "mmap(%zu) of the node state "
                     "failed", sizeof(bl_etcd_shm_t));
        return BL_ERROR;
    }
    bl_etcd_shm = p;
    bl_etcd_shm->magic = BL_ETCD_SHM_MAGIC;
    bl_etcd_shm->version = BL_ETCD_SHM_VERSION;
    bl_etcd_shm->size = sizeof(bl_etcd_shm_t);
    bl_etcd_shm->db_size = -1;
    bl_etcd_shm->db_size_in_use = -1;
    return BL_OK;
}

uint32_t
bl_etcd_alarms(void)
{
    if (bl_etcd_shm == NULL) {
        return 0;                 /* a unit test without a master */
    }
    return (uint32_t) __atomic_load_n(&bl_etcd_shm->alarms,
                                      __ATOMIC_ACQUIRE);
}

void
bl_etcd_alarms_set(uint32_t active)
{
    uint64_t  old, word;

    if (bl_etcd_shm == NULL) {
        return;
    }
    old = __atomic_load_n(&bl_etcd_shm->alarms, __ATOMIC_ACQUIRE);
    do {
        word = (((old >> 32) + 1) << 32) | active;
    } while (!__atomic_compare_exchange_n(&bl_etcd_shm->alarms, &old, word,
                                          0, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
}

int
bl_etcd_nospace(bl_grpc_call_t *call)
{
    if (!(bl_etcd_alarms() & (1u << BL_ALARM_NOSPACE))) {
        return 0;
    }
    bl_etcd_fail(call, &bl_etcd_err_nospace);
    return 1;
}

void
bl_etcd_db_size(int64_t *total, int64_t *in_use)
{
    if (bl_etcd_shm == NULL) {
        *total = *in_use = -1;
        return;
    }
    *total = __atomic_load_n(&bl_etcd_shm->db_size, __ATOMIC_RELAXED);
    *in_use = __atomic_load_n(&bl_etcd_shm->db_size_in_use,
                              __ATOMIC_RELAXED);
}


/* the watcher's side */

static void
bl_etcd_node_log_alarms(uint32_t active)
{
    unsigned  nospace;

    nospace = (active & (1u << BL_ALARM_NOSPACE)) != 0;
    if (nospace == bl_etcd_node.nospace) {
        return;
    }
    bl_etcd_node.nospace = nospace;
    if (nospace) {
        bl_log_error(BL_LOG_WARN, 0, "alarm NOSPACE is raised: puts, "
                     "transactions that put and lease grants are refused "
                     "until it is disarmed");
    } else {
        bl_log_error(BL_LOG_NOTICE, 0, "alarm NOSPACE is disarmed");
    }
}

static void
bl_etcd_node_tick_done(void *data, bl_storage_status_e st, void *result)
{
    bl_node_tick_res_t  *res = result;
    uint64_t             expected;

    BL_UNUSED(data);
    bl_etcd_node.op = NULL;

    if (st != BL_ST_OK) {
        /* said once per outage, not for the first ticks of a start,
         * which may come before the pool is up; the next tick tries */
        if (++bl_etcd_node.failures == BL_ETCD_NODE_QUIET_FAILURES) {
            bl_log_error(BL_LOG_WARN, 0, "node heartbeat failed: %s",
                         bl_storage_status_text(st));
        }
        goto done;
    }
    if (bl_etcd_node.failures >= BL_ETCD_NODE_QUIET_FAILURES) {
        bl_log_error(BL_LOG_NOTICE, 0, "node heartbeat works again");
    }
    bl_etcd_node.failures = 0;

    if (res->raised) {
        bl_log_error(BL_LOG_WARN, 0, "the database holds %" PRId64 " bytes, "
                     "over the quota of %" PRId64 ": alarm NOSPACE raised "
                     "by member %016" PRIx64, res->db_size,
                     bl_etcd_node.req.quota, bl_etcd_node.req.id);
    }
    if (bl_etcd_shm != NULL) {
        if (res->db_size >= 0) {
            __atomic_store_n(&bl_etcd_shm->db_size, res->db_size,
                             __ATOMIC_RELAXED);
            __atomic_store_n(&bl_etcd_shm->db_size_in_use,
                             res->db_size_in_use, __ATOMIC_RELAXED);
        }
        expected = bl_etcd_node.seen;
        (void) __atomic_compare_exchange_n(&bl_etcd_shm->alarms, &expected,
                   (bl_etcd_node.seen & ~(uint64_t) 0xffffffff)
                   | res->active, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    bl_etcd_node_log_alarms(bl_etcd_alarms());

done:
    bl_pool_destroy(bl_etcd_node.pool);
    bl_etcd_node.pool = NULL;
}

static void
bl_etcd_node_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_storage_status_e  st;

    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    if (bl_etcd_node.op != NULL) {
        return;                      /* the last one is still out */
    }
    bl_etcd_node.pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (bl_etcd_node.pool == NULL) {
        return;                      /* logged; the next tick tries again */
    }
    bl_etcd_node.seen = bl_etcd_shm == NULL ? 0
        : __atomic_load_n(&bl_etcd_shm->alarms, __ATOMIC_ACQUIRE);
    st = bl_storage_node_tick(bl_etcd_node.pool, &bl_etcd_node.req,
                              bl_etcd_node_tick_done, NULL,
                              &bl_etcd_node.op);
    if (st != BL_ST_OK) {
        bl_etcd_node.op = NULL;
        bl_etcd_node_tick_done(NULL, st, NULL);
    }
}

bl_int_t
bl_etcd_node_start(bl_etcd_conf_t *ecf)
{
    ev_tstamp  every;
    uint64_t   instance;

    memset(&bl_etcd_node, 0, sizeof(bl_etcd_node));

    /* any value unlikely to be another run's will do */
    if (getrandom(&instance, sizeof(instance), GRND_NONBLOCK)
        != (ssize_t) sizeof(instance))
    {
        instance = ((uint64_t) getpid() << 32) ^ (uint64_t) time(NULL);
    }

    bl_etcd_node.req.id = ecf->member_id;
    bl_etcd_node.req.name = ecf->name;
    bl_etcd_node.req.client_urls = ecf->client_urls;
    bl_etcd_node.req.nclient_urls = ecf->nclient_urls;
    bl_etcd_node.req.instance = instance;
    bl_etcd_node.req.quota = (int64_t) ecf->quota;
    bl_etcd_node.nospace = (bl_etcd_alarms() >> BL_ALARM_NOSPACE) & 1;
    bl_etcd_node.started = 1;

    /* at once: the pool may not be up yet, then the next tick goes */
    every = (ev_tstamp) BL_ETCD_NODE_TICK_MSEC / 1000.0;
    ev_timer_init(&bl_etcd_node.tick, bl_etcd_node_tick, 0.0, every);
    ev_timer_start(bl_loop, &bl_etcd_node.tick);
    return BL_OK;
}


/* leaving */

static void
bl_etcd_node_left(void)
{
    void  (*done)(void);

    ev_timer_stop(bl_loop, &bl_etcd_node.leave_timer);
    if (bl_etcd_node.op != NULL) {
        bl_storage_cancel(bl_etcd_node.op);
        bl_etcd_node.op = NULL;
    }
    if (bl_etcd_node.pool != NULL) {
        bl_pool_destroy(bl_etcd_node.pool);
        bl_etcd_node.pool = NULL;
    }
    done = bl_etcd_node.done;
    bl_etcd_node.done = NULL;
    if (done != NULL) {
        done();
    }
}

static void
bl_etcd_node_leave_done(void *data, bl_storage_status_e st, void *result)
{
    BL_UNUSED(data);
    BL_UNUSED(result);
    bl_etcd_node.op = NULL;
    if (st != BL_ST_OK) {
        bl_log_error(BL_LOG_WARN, 0, "could not take this node off the "
                     "member list: %s (it drops out in %d s)",
                     bl_storage_status_text(st), BL_ETCD_MEMBER_LIVE_SEC);
    }
    bl_etcd_node_left();
}

static void
bl_etcd_node_leave_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);
    bl_log_error(BL_LOG_WARN, 0, "no answer while taking this node off the "
                 "member list (it drops out in %d s)",
                 BL_ETCD_MEMBER_LIVE_SEC);
    bl_etcd_node_left();
}

void
bl_etcd_node_leave(void (*done)(void))
{
    bl_storage_status_e  st;

    if (!bl_etcd_node.started || bl_etcd_node.done != NULL) {
        done();
        return;
    }
    bl_etcd_node.started = 0;
    bl_etcd_node.done = done;
    ev_timer_stop(bl_loop, &bl_etcd_node.tick);
    if (bl_etcd_node.op != NULL) {
        bl_storage_cancel(bl_etcd_node.op);
        bl_etcd_node.op = NULL;
    }
    if (bl_etcd_node.pool == NULL) {
        bl_etcd_node.pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
        if (bl_etcd_node.pool == NULL) {
            bl_etcd_node_left();
            return;
        }
    }
    st = bl_storage_node_leave(bl_etcd_node.pool, bl_etcd_node.req.id,
                               bl_etcd_node.req.instance,
                               bl_etcd_node_leave_done, NULL,
                               &bl_etcd_node.op);
    if (st != BL_ST_OK) {
        bl_etcd_node.op = NULL;
        bl_etcd_node_leave_done(NULL, st, NULL);
        return;
    }
    ev_timer_init(&bl_etcd_node.leave_timer, bl_etcd_node_leave_timeout,
                  (ev_tstamp) BL_ETCD_NODE_LEAVE_MSEC / 1000.0, 0.0);
    ev_timer_start(bl_loop, &bl_etcd_node.leave_timer);
}
