/*
 * The storage layer against a real PostgreSQL (BALLAST_TEST_DSN, a fresh
 * database): put, range, delete, txn and compact semantics, round trips
 * per operation, group commit, compare-and-swap under concurrency, the
 * revision log for watches, commit notifications (LISTEN, reconnect),
 * leases (grant, revoke, keepalive, time-to-live, list, expiry, several
 * nodes expiring at once), cancellation, the queue bound, a stuck
 * request, and a database outage; it prints figures (keepalives and puts
 * per second, expiry cost).
 * Run by t/30-storage-pg.t, which starts PostgreSQL and, when this
 * program prints "# ctl: stop" or "# ctl: start", does so and answers a
 * line on stdin.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_pg.h>

#include "tap.h"


typedef struct {
    int                   called;
    bl_storage_status_e   st;
    void                 *result;
    bl_storage_stats_t    before;   /* when posted */
    bl_storage_stats_t    at;       /* when answered */
} res_t;

/* round trips and statements an op took, from posting to its answer */
#define RT(r)     ((r).at.round_trips - (r).before.round_trips)
#define STMTS(r)  ((r).at.statements - (r).before.statements)


static bl_pool_t  *pool;
static char       *dsn;
static PGconn     *admin;          /* blocking, for the test's own SQL */


static void
done_handler(void *data, bl_storage_status_e st, void *result)
{
    res_t  *r = data;

    r->called++;
    r->st = st;
    r->result = result;
    r->at = bl_storage_stats;
}


static void
never_handler(void *data, bl_storage_status_e st, void *result)
{
    int  *n = data;

    BL_UNUSED(st);
    BL_UNUSED(result);
    (*n)++;
}


static void
tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(w);
    BL_UNUSED(revents);
    ev_break(loop, EVBREAK_ONE);
}


/* run the loop for about msec */
static void
run_for(int64_t msec)
{
    ev_timer  t;

    ev_timer_init(&t, tick, (double) msec / 1000.0, 0.0);
    ev_timer_start(bl_loop, &t);
    ev_run(bl_loop, 0);
    ev_timer_stop(bl_loop, &t);
}


/* run until *flag (polled every 5 ms) or msec passed; 1 if flag set */
static int
run_until(int *flag, int want, int64_t msec)
{
    int64_t  waited;

    for (waited = 0; waited < msec; waited += 5) {
        if (*flag >= want) {
            return 1;
        }
        run_for(5);
    }

    return *flag >= want;
}


static int
wait_available(int64_t msec)
{
    int64_t  waited;

    for (waited = 0; waited < msec; waited += 10) {
        if (bl_storage_available() == BL_OK) {
            return 1;
        }
        run_for(10);
    }

    return bl_storage_available() == BL_OK;
}


static bl_str_t
S(const char *s)
{
    bl_str_t  r;

    r.len = strlen(s);
    r.data = (u_char *) s;
    return r;
}


static bl_str_t
B(const char *s, size_t n)
{
    bl_str_t  r;

    r.len = n;
    r.data = (u_char *) s;
    return r;
}


static res_t
put_full(bl_str_t key, bl_str_t value, int64_t lease, int prev_kv,
    int ignore_value, int ignore_lease)
{
    res_t                r;
    bl_put_req_t         req;
    bl_storage_status_e  st;

    memset(&r, 0, sizeof(r));
    memset(&req, 0, sizeof(req));
    req.key = key;
    req.value = value;
    req.lease = lease;
    req.prev_kv = prev_kv;
    req.ignore_value = ignore_value;
    req.ignore_lease = ignore_lease;

    r.before = bl_storage_stats;
    st = bl_storage_put(pool, &req, done_handler, &r, NULL);
    if (st != BL_ST_OK) {
        r.st = st;
        r.called = -1;
        return r;
    }

    run_until(&r.called, 1, 10000);
    return r;
}


static res_t
put(const char *key, const char *value)
{
    return put_full(S(key), S(value), 0, 0, 0, 0);
}


static res_t
range_full(bl_str_t key, bl_str_t end, int64_t limit, int64_t rev,
    int keys_only, int count_only)
{
    res_t                r;
    bl_range_req_t       req;
    bl_storage_status_e  st;

    memset(&r, 0, sizeof(r));
    memset(&req, 0, sizeof(req));
    req.key = key;
    req.range_end = end;
    req.limit = limit;
    req.revision = rev;
    req.keys_only = keys_only;
    req.count_only = count_only;

    r.before = bl_storage_stats;
    st = bl_storage_range(pool, &req, done_handler, &r, NULL);
    if (st != BL_ST_OK) {
        r.st = st;
        r.called = -1;
        return r;
    }

    run_until(&r.called, 1, 10000);
    return r;
}


static bl_range_res_t *
range_ok(res_t r, const char *what)
{
    if (!ok(r.called == 1 && r.st == BL_ST_OK && r.result != NULL,
            "%s: range answered", what))
    {
        printf("#   called %d status %s\n", r.called,
               bl_storage_status_text(r.st));
        return NULL;
    }

    return r.result;
}


static int64_t
put_rev(res_t r)
{
    if (r.called != 1 || r.st != BL_ST_OK || r.result == NULL) {
        return -1;
    }

    return ((bl_put_res_t *) r.result)->header_revision;
}


static void
admin_sql(const char *sql)
{
    PGresult  *res;

    res = PQexec(admin, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK
        && PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        printf("# admin sql failed: %s", PQerrorMessage(admin));
    }
    PQclear(res);
}


static int64_t
admin_int(const char *sql)
{
    int64_t    v;
    PGresult  *res;

    v = -1;
    res = PQexec(admin, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else {
        printf("# admin sql failed: %s", PQerrorMessage(admin));
    }
    PQclear(res);
    return v;
}


static int
cmp_i64(const void *a, const void *b)
{
    int64_t  x = *(const int64_t *) a, y = *(const int64_t *) b;

    return (x > y) - (x < y);
}


static void
ctl(const char *what)
{
    char  line[64];

    printf("# ctl: %s\n", what);
    fflush(stdout);

    if (fgets(line, sizeof(line), stdin) == NULL) {
        printf("# no answer to ctl %s\n", what);
    }
}


static void
start_pool(int64_t request_timeout)
{
    bl_pg_conf_t  pc;

    memset(&pc, 0, sizeof(pc));
    pc.conninfo = dsn;
    pc.connections = 2;
    pc.connect_timeout = 2000;
    pc.request_timeout = request_timeout;

    if (bl_pg_init(&pc) != BL_OK) {
        printf("Bail out! bl_pg_init failed\n");
        exit(1);
    }
}


static void
test_basics(void)
{
    res_t            r;
    bl_kv_t         *kv;
    bl_put_res_t    *pr;
    bl_range_res_t  *rr;

    ok(bl_storage_cluster_id() != 0, "cluster id %" PRIu64,
       bl_storage_cluster_id());

    rr = range_ok(range_full(S("a"), S(""), 0, 0, 0, 0), "empty store");
    if (rr) {
        is_int(rr->header_revision, 1, "a fresh store is at revision 1");
        is_int(rr->count, 0, "no key");
        is_int(rr->nkvs, 0, "no kv");
    }

    is_int(put_rev(put("a", "v1")), 2, "the first put gets revision 2");

    r = put_full(S("a"), S("v1"), 0, 1, 0, 0);
    is_int(put_rev(r), 3, "the same value again: revision 3");
    pr = r.result;
    if (ok(pr && pr->prev_kv, "prev_kv returned")) {
        kv = pr->prev_kv;
        is_mem(kv->key.data, kv->key.len, "a", 1, "prev_kv key");
        is_mem(kv->value.data, kv->value.len, "v1", 2, "prev_kv value");
        is_int(kv->version, 1, "prev_kv version");
        is_int(kv->create_revision, 2, "prev_kv create_revision");
        is_int(kv->mod_revision, 2, "prev_kv mod_revision");
    }

    r = put_full(S("new"), S("x"), 0, 1, 0, 0);
    pr = r.result;
    ok(put_rev(r) == 4 && pr->prev_kv == NULL, "no prev_kv for a new key");

    rr = range_ok(range_full(S("a"), S(""), 0, 0, 0, 0), "one key");
    if (rr && ok(rr->nkvs == 1, "a found")) {
        kv = &rr->kvs[0];
        is_int(rr->header_revision, 4, "header revision is current");
        is_int(kv->version, 2, "version 2");
        is_int(kv->create_revision, 2, "create_revision kept");
        is_int(kv->mod_revision, 3, "mod_revision = write revision");
        is_int(kv->lease, 0, "no lease");
    }

    r = put_full(S("absent"), S(""), 0, 0, 1, 0);
    ok(r.called == 1 && r.st == BL_ST_KEY_NOT_FOUND,
       "ignore_value on an absent key: key not found");
    r = put_full(S("absent"), S("v"), 0, 0, 0, 1);
    ok(r.called == 1 && r.st == BL_ST_KEY_NOT_FOUND,
       "ignore_lease on an absent key: key not found");
    r = put_full(S("a"), S("v"), 777, 0, 0, 0);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "unknown lease: lease not found");
    r = put_full(S("absent"), S(""), 777, 0, 1, 0);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "unknown lease and ignore_value on an absent key: the lease first "
       "(etcd's Put)");

    rr = range_ok(range_full(S("absent"), S(""), 0, 0, 0, 0), "absent");
    if (rr) {
        is_int(rr->header_revision, 4, "failed puts used no revision");
        is_int(rr->nkvs, 0, "and wrote nothing");
    }

    admin_sql("INSERT INTO ballast_lease VALUES (777, 60, now())");
    is_int(put_rev(put_full(S("a"), S("v2"), 777, 0, 0, 0)), 5,
           "put with a lease");
    is_int(put_rev(put_full(S("a"), S(""), 0, 0, 1, 1)), 6,
           "ignore_value + ignore_lease");
    rr = range_ok(range_full(S("a"), S(""), 0, 0, 0, 0), "after ignore");
    if (rr && rr->nkvs == 1) {
        is_mem(rr->kvs[0].value.data, rr->kvs[0].value.len, "v2", 2,
               "value kept");
        is_int(rr->kvs[0].lease, 777, "lease kept");
    }
    is_int(put_rev(put("a", "v3")), 7, "put without lease");
    rr = range_ok(range_full(S("a"), S(""), 0, 0, 0, 0), "detached");
    if (rr && rr->nkvs == 1) {
        is_int(rr->kvs[0].lease, 0, "a put without lease detaches it");
        is_int(rr->kvs[0].version, 5, "version 5");
    }

    is_int(put_rev(put_full(S("empty"), S(""), 0, 0, 0, 0)), 8,
           "an empty value");
    rr = range_ok(range_full(S("empty"), S(""), 0, 0, 0, 0), "empty value");
    if (rr && ok(rr->nkvs == 1, "empty value found")) {
        is_int(rr->kvs[0].value.len, 0, "value is empty");
    }
}


static void
test_ranges(void)
{
    int              i;
    int64_t          rev;
    bl_range_res_t  *rr;

    static const char  bin1[] = { 'k', 0x00 };
    static const char  bin2[] = { 'k', (char) 0xff };
    static const char  bin3[] = { 'k', (char) 0xff, 0x00 };

    /* keys k, k\0, k1..k5, k\xff, k\xff\0, l */
    put_full(S("k"), S("v"), 0, 0, 0, 0);
    put_full(B(bin1, 2), S("v"), 0, 0, 0, 0);
    put("k1", "1");
    put("k2", "2");
    put("k3", "3");
    put("k4", "4");
    put("k5", "5");
    put_full(B(bin2, 2), S("ff"), 0, 0, 0, 0);
    put_full(B(bin3, 3), S("ff0"), 0, 0, 0, 0);
    rev = put_rev(put("l", "l"));

    rr = range_ok(range_full(S("k"), S("l"), 0, 0, 0, 0), "prefix k");
    if (rr) {
        is_int(rr->count, 9, "prefix count");
        is_int(rr->nkvs, 9, "prefix kvs");
        ok(!rr->more, "no more");
        if (rr->nkvs == 9) {
            is_mem(rr->kvs[1].key.data, rr->kvs[1].key.len, bin1, 2,
                   "k\\0 sorts right after k");
            is_mem(rr->kvs[7].key.data, rr->kvs[7].key.len, bin2, 2,
                   "k\\xff after k5");
            is_mem(rr->kvs[8].key.data, rr->kvs[8].key.len, bin3, 3,
                   "k\\xff\\0 last");
        }
        is_int(rr->header_revision, rev, "header revision");
    }

    rr = range_ok(range_full(S("k"), S("l"), 3, 0, 0, 0), "limit 3");
    if (rr) {
        is_int(rr->nkvs, 3, "3 kvs");
        is_int(rr->count, 9, "count ignores the limit");
        ok(rr->more, "more");
    }

    rr = range_ok(range_full(S("k"), S("l"), 9, 0, 0, 0), "limit 9");
    if (rr) {
        ok(rr->nkvs == 9 && !rr->more, "limit = matches: no more");
    }

    rr = range_ok(range_full(S("k1"), B("\0", 1), 0, 0, 0, 0), "from k1");
    if (rr) {
        is_int(rr->count, 9, "from k1: k1..k5, k\\xff, k\\xff\\0, l, new");
    }

    rr = range_ok(range_full(B("\0", 1), B("\0", 1), 0, 0, 0, 0), "all");
    if (rr) {
        is_int(rr->count, 13, "all keys");
        is_mem(rr->kvs[0].key.data, rr->kvs[0].key.len, "a", 1,
               "all: first key");
    }

    rr = range_ok(range_full(S("k3"), S("k1"), 0, 0, 0, 0), "end < key");
    if (rr) {
        ok(rr->nkvs == 0 && rr->count == 0 && rr->header_revision == rev,
           "range_end < key: empty, header revision set");
    }

    rr = range_ok(range_full(S("k1"), S("k3"), 0, 0, 1, 0), "keys_only");
    if (rr && ok(rr->nkvs == 2, "keys_only: 2 kvs")) {
        ok(rr->kvs[0].value.len == 0 && rr->kvs[0].version == 1
           && rr->kvs[0].mod_revision > 0, "keys_only: no value, fields");
    }

    rr = range_ok(range_full(S("k"), S("l"), 2, 0, 0, 1), "count_only");
    if (rr) {
        ok(rr->nkvs == 0 && rr->count == 9 && !rr->more,
           "count_only: no kvs, count 9");
    }

    rr = range_ok(range_full(S("zzz"), S(""), 0, 0, 0, 0), "missing");
    if (rr) {
        ok(rr->nkvs == 0 && rr->count == 0, "missing key: nothing");
    }

    /* the past */

    rr = range_ok(range_full(S("a"), S(""), 0, 2, 0, 0), "a at 2");
    if (rr && ok(rr->nkvs == 1, "a existed at 2")) {
        is_int(rr->kvs[0].version, 1, "a at 2: version 1");
        is_int(rr->kvs[0].mod_revision, 2, "a at 2: mod 2");
        is_mem(rr->kvs[0].value.data, rr->kvs[0].value.len, "v1", 2,
               "a at 2: value");
        is_int(rr->header_revision, rev, "header is the current rev");
    }

    rr = range_ok(range_full(S("a"), S(""), 0, 1, 0, 0), "a at 1");
    if (rr) {
        ok(rr->nkvs == 0 && rr->count == 0, "a did not exist at 1");
    }

    rr = range_ok(range_full(S("k"), S("l"), 2, rev - 5, 0, 0), "past");
    if (rr) {
        /* at rev-5: k, k\0, k1, k2, k3 were written (rev-9 .. rev-5) */
        is_int(rr->count, 5, "past prefix count");
        ok(rr->nkvs == 2 && rr->more, "past: limit and more");
    }

    rr = range_ok(range_full(B("\0", 1), B("\0", 1), 0, 3, 1, 0), "all@3");
    if (rr) {
        ok(rr->count == 1 && rr->nkvs == 1 && rr->kvs[0].version == 2,
           "all keys at 3: a, version 2");
    }

    {
        res_t  r = range_full(S("a"), S(""), 0, rev + 1, 0, 0);
        ok(r.called == 1 && r.st == BL_ST_FUTURE_REV, "future revision");
    }

    admin_sql("UPDATE ballast_meta SET compact_revision = 5");
    {
        res_t  r = range_full(S("a"), S(""), 0, 4, 0, 0);
        ok(r.called == 1 && r.st == BL_ST_COMPACTED, "below compact rev");
        r = range_full(S("k"), S("l"), 0, 4, 0, 0);
        ok(r.called == 1 && r.st == BL_ST_COMPACTED, "range below it too");
    }
    rr = range_ok(range_full(S("a"), S(""), 0, 5, 0, 0), "at compact rev");
    if (rr) {
        ok(rr->nkvs == 1 && rr->kvs[0].mod_revision == 5,
           "at the compact revision: fine");
    }
    admin_sql("UPDATE ballast_meta SET compact_revision = -1");

    /* reads posted together share round trips, each its own answer */
    {
        int                  n, good;
        res_t                rs[40];
        bl_range_req_t       req;
        bl_storage_stats_t   before = bl_storage_stats;

        memset(rs, 0, sizeof(rs));
        for (i = 0; i < 40; i++) {
            memset(&req, 0, sizeof(req));
            req.key = S(i % 2 ? "k" : "a");
            req.range_end = S(i % 2 ? "l" : "");
            (void) bl_storage_range(pool, &req, done_handler, &rs[i], NULL);
        }
        for (n = 0; n < 500; n++) {
            good = 0;
            for (i = 0; i < 40; i++) {
                good += rs[i].called;
            }
            if (good == 40) {
                break;
            }
            run_for(10);
        }
        good = 0;
        for (i = 0; i < 40; i++) {
            rr = rs[i].result;
            good += (rs[i].called == 1 && rs[i].st == BL_ST_OK
                     && rr->count == (i % 2 ? 9 : 1));
        }
        is_int(good, 40, "40 ranges at once, each its own answer");
        printf("# 40 ranges: %" PRIu64 " round trips\n",
               bl_storage_stats.round_trips - before.round_trips);
        ok(bl_storage_stats.round_trips - before.round_trips <= 4,
           "in a few round trips");
    }
}


#define NPUTS  100

static void
test_group_commit(void)
{
    int                   i, calls, consecutive, distinct;
    res_t                 r[NPUTS];
    char                  keys[NPUTS][16];
    int64_t               revs[NPUTS];
    bl_put_req_t          req;
    bl_storage_stats_t    before;
    bl_storage_status_e   st;

    before = bl_storage_stats;

    memset(r, 0, sizeof(r));

    for (i = 0; i < NPUTS; i++) {
        memset(&req, 0, sizeof(req));
        snprintf(keys[i], sizeof(keys[i]), "g%03d", i);
        req.key = S(keys[i]);
        req.value = S("group");
        req.prev_kv = (i % 2);

        st = bl_storage_put(pool, &req, done_handler, &r[i], NULL);
        if (st != BL_ST_OK) {
            r[i].called = -1;
        }
    }

    /* all answered? */
    for (i = 0; i < 1000; i++) {
        int  j, n = 0;

        for (j = 0; j < NPUTS; j++) {
            n += (r[j].called != 0);
        }
        if (n == NPUTS) {
            break;
        }
        run_for(10);
    }

    calls = 0;
    for (i = 0; i < NPUTS; i++) {
        calls += (r[i].called == 1 && r[i].st == BL_ST_OK);
        revs[i] = put_rev(r[i]);
    }
    is_int(calls, NPUTS, "%d puts fired at once all succeed", NPUTS);

    qsort(revs, NPUTS, sizeof(int64_t), cmp_i64);
    distinct = 1;
    consecutive = 1;
    for (i = 1; i < NPUTS; i++) {
        distinct &= (revs[i] != revs[i - 1]);
        consecutive &= (revs[i] == revs[i - 1] + 1);
    }
    ok(distinct, "each got its own revision");
    ok(consecutive, "revisions are consecutive (%" PRId64 "..%" PRId64 ")",
       revs[0], revs[NPUTS - 1]);

    /* fired in order, so revisions follow the order of the calls */
    ok(put_rev(r[0]) == revs[0] && put_rev(r[NPUTS - 1]) == revs[NPUTS - 1],
       "in submission order");

    printf("# %d puts: %" PRIu64 " round trips, %" PRIu64 " write batches, "
           "%" PRIu64 " statements\n", NPUTS,
           bl_storage_stats.round_trips - before.round_trips,
           bl_storage_stats.write_batches - before.write_batches,
           bl_storage_stats.statements - before.statements);

    ok(bl_storage_stats.round_trips - before.round_trips <= 2,
       "group commit: at most 2 round trips for %d puts", NPUTS);
    is_int(bl_storage_stats.writes - before.writes, NPUTS, "writes counted");
    is_int(admin_int("SELECT count(DISTINCT xmin::text) FROM ballast_log"
                     " WHERE key >= 'g' AND key < 'h'"), 1,
           "all in one transaction");

    /* and a put in the middle of a stream of them still gets its result */
    {
        res_t  x = put("g050", "again");
        ok(put_rev(x) == revs[NPUTS - 1] + 1, "next put: next revision");
    }
}


/* a database error inside a group commit: every op of the batch fails,
 * nothing of it is written, and the connection goes on */
static void
test_batch_failure(void)
{
    int                   i, n;
    res_t                 r[3];
    int64_t               rev;
    bl_put_req_t          req;
    bl_range_res_t       *rr;

    static const char    *keys[3] = { "bf-ok1", "bf-bad", "bf-ok2" };

    rev = put_rev(put("bf-before", "x"));

    admin_sql("ALTER TABLE ballast_kv ADD CONSTRAINT bl_test_bad"
              " CHECK (key <> 'bf-bad')");

    memset(r, 0, sizeof(r));
    for (i = 0; i < 3; i++) {
        memset(&req, 0, sizeof(req));
        req.key = S(keys[i]);
        req.value = S("x");
        if (bl_storage_put(pool, &req, done_handler, &r[i], NULL)
            != BL_ST_OK)
        {
            r[i].called = -1;
        }
    }

    for (i = 0; i < 500; i++) {
        if (r[0].called && r[1].called && r[2].called) {
            break;
        }
        run_for(10);
    }

    n = 0;
    for (i = 0; i < 3; i++) {
        n += (r[i].called == 1 && r[i].st == BL_ST_UNAVAILABLE);
    }
    is_int(n, 3, "a failed batch: every put in it is unavailable");

    admin_sql("ALTER TABLE ballast_kv DROP CONSTRAINT bl_test_bad");

    rr = range_ok(range_full(S("bf-"), S("bf."), 0, 0, 0, 0), "bf-*");
    if (rr) {
        ok(rr->count == 1 && rr->header_revision == rev,
           "nothing of it was written, no revision used");
    }

    is_int(put_rev(put("bf-after", "x")), rev + 1,
           "the connection goes on, next revision");
}


static void
test_cancel(void)
{
    int                   never, i;
    res_t                 r;
    bl_pool_t            *p;
    bl_put_req_t          req;
    bl_range_req_t        rreq;
    bl_storage_op_t      *op, *ops[3];
    bl_range_res_t       *rr;
    bl_storage_status_e   st;

    never = 0;

    /* cancelled while queued: never sent */
    memset(&req, 0, sizeof(req));
    req.key = S("cancelled-queued");
    req.value = S("x");
    st = bl_storage_put(pool, &req, never_handler, &never, &op);
    ok(st == BL_ST_OK && op != NULL, "put queued");
    bl_storage_cancel(op);

    /*
     * cancelled in flight (held there by a table lock, so that no answer
     * can come first): its pool is gone at once, the answers come later
     */
    admin_sql("BEGIN");
    admin_sql("LOCK TABLE ballast_kv IN ACCESS EXCLUSIVE MODE");

    p = bl_pool_create(1024);
    req.key = S("cancelled-inflight");
    st = bl_storage_put(p, &req, never_handler, &never, &op);

    memset(&rreq, 0, sizeof(rreq));
    rreq.key = B("\0", 1);
    rreq.range_end = B("\0", 1);
    for (i = 0; i < 3; i++) {
        (void) bl_storage_range(p, &rreq, never_handler, &never, &ops[i]);
    }

    run_for(100);
    ok(st == BL_ST_OK && op->batch != NULL && ops[2]->batch != NULL,
       "put and ranges in flight");
    bl_storage_cancel(op);
    for (i = 0; i < 3; i++) {
        bl_storage_cancel(ops[i]);
    }
    bl_pool_destroy(p);

    admin_sql("COMMIT");

    run_for(300);
    is_int(never, 0, "no handler of a cancelled op is called");

    r = range_full(S("cancelled-queued"), S(""), 0, 0, 0, 0);
    rr = r.result;
    ok(rr && rr->nkvs == 0, "the queued put was not written");
    r = range_full(S("cancelled-inflight"), S(""), 0, 0, 0, 0);
    rr = r.result;
    ok(rr && rr->nkvs == 1, "the in-flight put was (its answer dropped)");
}


static void
test_queue_bound(void)
{
    int                   i, never, queued;
    bl_put_req_t          req;
    bl_storage_op_t     **ops;
    bl_storage_status_e   st;

    never = 0;
    queued = 0;
    ops = calloc(BL_PG_MAX_QUEUED + 1, sizeof(bl_storage_op_t *));

    memset(&req, 0, sizeof(req));
    req.key = S("bound");
    req.value = S("x");

    st = BL_ST_OK;
    for (i = 0; i <= BL_PG_MAX_QUEUED; i++) {
        st = bl_storage_put(pool, &req, never_handler, &never, &ops[i]);
        if (st != BL_ST_OK) {
            break;
        }
        queued++;
    }

    is_int(queued, BL_PG_MAX_QUEUED, "%d ops queue", BL_PG_MAX_QUEUED);
    ok(st == BL_ST_TOO_MANY_REQUESTS, "then: too many requests");

    for (i = 0; i < queued; i++) {
        bl_storage_cancel(ops[i]);
    }
    free(ops);

    run_for(50);
    is_int(never, 0, "all cancelled");
}


/* a request stuck behind a lock times out; the pool recovers */
static void
test_timeout(void)
{
    res_t    r;
    int64_t  t0;

    bl_pg_done();
    start_pool(300);
    ok(wait_available(5000), "pool restarted with request_timeout 300ms");

    admin_sql("BEGIN");
    admin_sql("SELECT revision FROM ballast_meta WHERE id = 1 FOR UPDATE");

    ev_now_update(bl_loop);
    t0 = bl_msec_now();
    r = put("stuck", "x");
    ev_now_update(bl_loop);
    ok(r.called == 1 && r.st == BL_ST_UNAVAILABLE,
       "a put stuck on the revision lock: unavailable (%s)",
       bl_storage_status_text(r.st));
    ok(bl_msec_now() - t0 < 2000, "after about the timeout (%" PRId64
       " ms)", bl_msec_now() - t0);

    admin_sql("ROLLBACK");

    ok(wait_available(5000), "available again");
    r = range_full(S("a"), S(""), 0, 0, 0, 0);
    ok(r.called == 1 && r.st == BL_ST_OK, "and serving");

    bl_pg_done();
    start_pool(5000);
    wait_available(5000);
}


/* a schema newer than ours is refused, and used again once it is not */
static void
test_newer_schema(void)
{
    res_t                 r;
    bl_put_req_t          req;
    bl_storage_status_e   st;

    bl_pg_done();
    admin_sql("UPDATE ballast_meta SET schema_version = 99");
    start_pool(5000);
    run_for(500);
    ok(bl_storage_available() != BL_OK, "schema version 99: refused");

    memset(&req, 0, sizeof(req));
    req.key = S("refused");
    st = bl_storage_put(pool, &req, done_handler, &r, NULL);
    ok(st == BL_ST_UNAVAILABLE, "ops fail: %s", bl_storage_status_text(st));

    admin_sql("UPDATE ballast_meta SET schema_version = 1");
    ok(wait_available(5000), "accepted again after a reconnect");
}


static void
test_outage(void)
{
    res_t                 r, inflight;
    int64_t               rev, t0;
    bl_put_req_t          req;
    bl_storage_status_e   st;

    rev = put_rev(put("before-outage", "x"));
    ok(rev > 0, "put before the outage");

    memset(&inflight, 0, sizeof(inflight));
    memset(&req, 0, sizeof(req));
    req.key = S("during-outage");
    req.value = S("x");

    PQfinish(admin);
    admin = NULL;

    ctl("stop");

    ev_now_update(bl_loop);
    t0 = bl_msec_now();
    while (bl_storage_available() == BL_OK && bl_msec_now() - t0 < 5000) {
        run_for(10);
    }
    ok(bl_storage_available() != BL_OK, "the pool noticed");

    ev_now_update(bl_loop);
    t0 = bl_msec_now();
    st = bl_storage_put(pool, &req, done_handler, &inflight, NULL);
    ok(st == BL_ST_UNAVAILABLE, "put fails at once: %s",
       bl_storage_status_text(st));
    r = range_full(S("a"), S(""), 0, 0, 0, 0);
    ok(r.called == -1 && r.st == BL_ST_UNAVAILABLE, "range too");
    ev_now_update(bl_loop);
    ok(bl_msec_now() - t0 < 100, "fast (%" PRId64 " ms)",
       bl_msec_now() - t0);

    run_for(500);

    ctl("start");

    ok(wait_available(10000), "back without a restart");
    rev = put_rev(put("after-outage", "x"));
    ok(rev > 0, "put after the outage: revision %" PRId64, rev);
    ok(bl_storage_stats.reconnects > 0, "reconnects counted (%" PRIu64 ")",
       bl_storage_stats.reconnects);
}


/* delete, txn and compact */

static char *
admin_str(const char *sql)
{
    PGresult     *res;
    static char   buf[4096];

    buf[0] = '\0';
    res = PQexec(admin, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        printf("# admin sql failed: %s", PQerrorMessage(admin));

    } else if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return buf;
}


static int64_t
current_rev(void)
{
    return admin_int("SELECT revision FROM ballast_meta");
}


/* the events of revision rev: "sub:key:kind,..." */
static char *
log_at(int64_t rev)
{
    char  sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT string_agg(sub || ':' || encode(key, 'escape') || ':'"
             " || CASE kind WHEN 0 THEN 'put' ELSE 'del' END, ','"
             " ORDER BY sub) FROM ballast_log WHERE rev = %" PRId64, rev);
    return admin_str(sql);
}


static void
wait_answers(res_t *r, int n, int64_t msec)
{
    int      i, done;
    int64_t  waited;

    for (waited = 0; waited < msec; waited += 5) {
        done = 0;
        for (i = 0; i < n; i++) {
            done += (r[i].called != 0);
        }
        if (done == n) {
            return;
        }
        run_for(5);
    }
}


static res_t
del_full(bl_str_t key, bl_str_t end, int prev_kv)
{
    res_t                r;
    bl_delete_req_t      req;
    bl_storage_status_e  st;

    memset(&r, 0, sizeof(r));
    memset(&req, 0, sizeof(req));
    req.key = key;
    req.range_end = end;
    req.prev_kv = prev_kv;

    r.before = bl_storage_stats;
    st = bl_storage_delete(pool, &req, done_handler, &r, NULL);
    if (st != BL_ST_OK) {
        r.st = st;
        r.called = -1;
        return r;
    }

    run_until(&r.called, 1, 10000);
    return r;
}


static bl_delete_res_t *
del_ok(res_t r, const char *what)
{
    if (!ok(r.called == 1 && r.st == BL_ST_OK && r.result != NULL,
            "%s: delete answered", what))
    {
        printf("#   called %d status %s\n", r.called,
               bl_storage_status_text(r.st));
        return NULL;
    }

    return r.result;
}


static res_t
compact_run(int64_t rev, int physical)
{
    res_t                r;
    bl_storage_status_e  st;

    memset(&r, 0, sizeof(r));
    r.before = bl_storage_stats;
    st = bl_storage_compact(pool, rev, physical, done_handler, &r, NULL);
    if (st != BL_ST_OK) {
        r.st = st;
        r.called = -1;
        return r;
    }

    run_until(&r.called, 1, 30000);
    return r;
}


#define TXN_MAX  64

static bl_txn_req_t *
txn_new(void)
{
    bl_txn_req_t  *t;

    t = bl_pcalloc(pool, sizeof(bl_txn_req_t));
    t->compares = bl_pcalloc(pool, TXN_MAX * sizeof(bl_compare_t));
    t->success = bl_pcalloc(pool, TXN_MAX * sizeof(bl_op_t));
    t->failure = bl_pcalloc(pool, TXN_MAX * sizeof(bl_op_t));
    return t;
}


static void
cmp_add(bl_txn_req_t *t, int target, int result, bl_str_t key,
    bl_str_t end, int64_t number, bl_str_t value)
{
    bl_compare_t  *c;

    c = &t->compares[t->ncompares++];
    c->target = target;
    c->result = result;
    c->key = key;
    c->range_end = end;
    c->number = number;
    c->value = value;
}


/* br: 0 success, 1 failure */
static bl_op_t *
op_add(bl_txn_req_t *t, int br, bl_op_kind_e kind)
{
    bl_op_t  *op;

    op = br ? &t->failure[t->nfailure++] : &t->success[t->nsuccess++];
    memset(op, 0, sizeof(bl_op_t));
    op->kind = kind;
    return op;
}


static bl_put_req_t *
op_put(bl_txn_req_t *t, int br, const char *key, const char *value)
{
    bl_op_t  *op;

    op = op_add(t, br, BL_OP_PUT);
    op->u.put.key = S(key);
    op->u.put.value = S(value);
    return &op->u.put;
}


static bl_range_req_t *
op_range(bl_txn_req_t *t, int br, bl_str_t key, bl_str_t end)
{
    bl_op_t  *op;

    op = op_add(t, br, BL_OP_RANGE);
    op->u.range.key = key;
    op->u.range.range_end = end;
    return &op->u.range;
}


static void
op_del(bl_txn_req_t *t, int br, bl_str_t key, bl_str_t end, int prev_kv)
{
    bl_op_t  *op;

    op = op_add(t, br, BL_OP_DELETE);
    op->u.del.key = key;
    op->u.del.range_end = end;
    op->u.del.prev_kv = prev_kv;
}


static void
op_txn(bl_txn_req_t *t, int br, bl_txn_req_t *child)
{
    op_add(t, br, BL_OP_TXN)->u.txn = child;
}


static int
txn_post(bl_txn_req_t *t, res_t *r)
{
    memset(r, 0, sizeof(res_t));
    r->before = bl_storage_stats;

    if (bl_storage_txn(pool, t, 0, done_handler, r, NULL) != BL_ST_OK) {
        r->called = -1;
        return 0;
    }

    return 1;
}


static res_t
txn_run(bl_txn_req_t *t)
{
    res_t  r;

    if (txn_post(t, &r)) {
        run_until(&r.called, 1, 10000);
    }

    return r;
}


static bl_txn_res_t *
txn_ok(res_t r, const char *what)
{
    if (!ok(r.called == 1 && r.st == BL_ST_OK && r.result != NULL,
            "%s: txn answered", what))
    {
        printf("#   called %d status %s\n", r.called,
               bl_storage_status_text(r.st));
        return NULL;
    }

    return r.result;
}


static void
test_delete(void)
{
    int               i, good;
    res_t             r;
    int64_t           rev, all;
    bl_kv_t          *kv;
    bl_put_res_t     *pr;
    bl_range_res_t   *rr;
    bl_delete_res_t  *dr;

    static const char  *keys[] = { "d/a", "d/b", "d/c", "d/d", "d/e" };

    for (i = 0; i < 5; i++) {
        rev = put_rev(put(keys[i], keys[i]));
    }
    rev = put_rev(put("d/a", "again"));

    /* one key, with prev_kv */
    r = del_full(S("d/a"), S(""), 1);
    dr = del_ok(r, "one key");
    if (dr) {
        is_int(dr->header_revision, rev + 1, "delete takes a revision");
        is_int(dr->deleted, 1, "deleted 1");
        if (ok(dr->nprev_kvs == 1, "one prev_kv")) {
            kv = &dr->prev_kvs[0];
            is_mem(kv->key.data, kv->key.len, "d/a", 3, "prev_kv key");
            is_mem(kv->value.data, kv->value.len, "again", 5,
                   "prev_kv value");
            ok(kv->version == 2 && kv->mod_revision == rev
               && kv->create_revision == rev - 5,
               "prev_kv version, mod and create revisions");
        }
        is_int(RT(r), 1, "delete: 1 round trip");
        is_int(STMTS(r), 2, "delete: 1 statement + the batch's NOTIFY");
    }
    is_str(log_at(rev + 1), "0:d/a:del", "a tombstone in the log");
    is_int(admin_int("SELECT prev_rev FROM ballast_log WHERE key = 'd/a'"
                     " AND kind = 1"), rev,
           "its prev_rev names the deleted version");
    rr = range_ok(range_full(S("d/a"), S(""), 0, 0, 0, 0), "d/a gone");
    if (rr) {
        ok(rr->count == 0 && rr->header_revision == rev + 1, "d/a is gone");
    }
    rr = range_ok(range_full(S("d/a"), S(""), 0, rev, 0, 0), "d/a before");
    if (rr) {
        ok(rr->count == 1 && rr->kvs[0].version == 2,
           "and still there in the past");
    }

    /* nothing to delete: no revision */
    rev = current_rev();
    r = del_full(S("d/a"), S(""), 1);
    dr = del_ok(r, "absent key");
    if (dr) {
        ok(dr->deleted == 0 && dr->nprev_kvs == 0, "deleted 0");
        is_int(dr->header_revision, rev, "header is the current revision");
    }
    r = del_full(S("d/x"), S("d/z"), 0);
    dr = del_ok(r, "empty range");
    if (dr) {
        ok(dr->deleted == 0 && dr->header_revision == rev,
           "an empty range: deleted 0, no revision");
    }
    r = del_full(S("d/e"), S("d/a"), 0);
    dr = del_ok(r, "end < key");
    if (dr) {
        ok(dr->deleted == 0 && dr->header_revision == rev,
           "range_end <= key: nothing");
    }
    is_int(current_rev(), rev, "no revision was used");
    is_int(put_rev(put("d/f", "f")), rev + 1, "the next put: the next one");
    rev++;

    /* a range: one revision, subs in key order, prev_kvs in key order */
    r = del_full(S("d/b"), S("d/e"), 1);
    dr = del_ok(r, "range");
    if (dr) {
        is_int(dr->header_revision, rev + 1, "one revision for three");
        is_int(dr->deleted, 3, "deleted 3");
        good = (dr->nprev_kvs == 3);
        for (i = 0; good && i < 3; i++) {
            good = (dr->prev_kvs[i].key.len == 3
                    && memcmp(dr->prev_kvs[i].key.data, keys[i + 1], 3) == 0
                    && dr->prev_kvs[i].value.len == 3);
        }
        ok(good, "prev_kvs d/b, d/c, d/d in key order");
        is_int(RT(r), 1, "range delete: 1 round trip");
    }
    is_str(log_at(rev + 1), "0:d/b:del,1:d/c:del,2:d/d:del",
           "consecutive sub-revisions in key order");
    rev++;

    /* without prev_kv */
    put("d/g", "g");
    rev++;
    r = del_full(S("d/f"), S("d/h"), 0);
    dr = del_ok(r, "no prev_kv");
    if (dr) {
        ok(dr->deleted == 2 && dr->nprev_kvs == 0 && dr->prev_kvs == NULL,
           "deleted 2, no prev_kvs unless asked");
    }
    rev++;

    /* from a key: d/e and everything after it */
    put("d/e2", "x");
    rev++;
    rr = range_ok(range_full(S("d/e"), B("\0", 1), 0, 0, 1, 0), "from d/e");
    all = rr ? rr->count : -1;
    r = del_full(S("d/e"), B("\0", 1), 0);
    dr = del_ok(r, "from key");
    if (dr) {
        ok(all >= 2 && dr->deleted == all && dr->header_revision == rev + 1,
           "from key: deleted the %" PRId64 " keys >= d/e", all);
    }
    rr = range_ok(range_full(S("d/"), B("\0", 1), 0, 0, 0, 0), "after");
    if (rr) {
        is_int(rr->count, 0, "nothing left from d/ on");
    }
    rev++;

    /* recreated: version 1, new create revision */
    r = put_full(S("d/a"), S("new"), 0, 1, 0, 0);
    pr = r.result;
    ok(put_rev(r) == rev + 1 && pr->prev_kv == NULL,
       "put after delete: no prev_kv");
    rr = range_ok(range_full(S("d/a"), S(""), 0, 0, 0, 0), "recreated");
    if (rr && rr->nkvs == 1) {
        ok(rr->kvs[0].version == 1 && rr->kvs[0].create_revision == rev + 1,
           "recreated: version 1, create_revision = its revision");
    }
    is_int(admin_int("SELECT prev_rev FROM ballast_log WHERE key = 'd/a'"
                     " ORDER BY rev DESC LIMIT 1"), 0,
           "a recreation has no prev_rev");
}


/* every key (kept for last: it empties the store) */
static void
test_delete_all(void)
{
    int               i, good;
    res_t             r;
    int64_t           n, rev;
    bl_range_res_t   *rr;
    bl_delete_res_t  *dr;

    rr = range_ok(range_full(B("\0", 1), B("\0", 1), 0, 0, 0, 0), "all");
    n = rr ? rr->count : -1;
    rev = current_rev();

    r = del_full(B("\0", 1), B("\0", 1), 1);
    dr = del_ok(r, "all keys");
    if (dr) {
        ok(n > 10 && dr->deleted == n && dr->nprev_kvs == (size_t) n,
           "\"\\0\"/\"\\0\": all %" PRId64 " keys deleted", n);
        is_int(dr->header_revision, rev + 1, "in one revision");
        good = 1;
        for (i = 1; i < (int) dr->nprev_kvs; i++) {
            good &= (bl_str_cmp(&dr->prev_kvs[i - 1].key,
                                &dr->prev_kvs[i].key) < 0);
        }
        ok(good, "prev_kvs in key order");
        ok(rr && rr->nkvs == dr->nprev_kvs
           && memcmp(rr->kvs[n - 1].value.data, dr->prev_kvs[n - 1].value.data,
                     rr->kvs[n - 1].value.len) == 0,
           "the same as a range of all keys said");
    }
    is_int(admin_int("SELECT count(*) FROM ballast_kv"), 0, "kv is empty");
    is_int(admin_int("SELECT count(DISTINCT sub) FROM ballast_log"
                     " WHERE rev = (SELECT revision FROM ballast_meta)"), n,
           "one tombstone each");
}


/* what etcd's compareKV says: d = sign(actual - wanted) */
static int
cmp_expect(int result, int d)
{
    switch (result) {
    case BL_CMP_EQUAL:
        return d == 0;
    case BL_CMP_GREATER:
        return d > 0;
    case BL_CMP_LESS:
        return d < 0;
    case BL_CMP_NOT_EQUAL:
        return d != 0;
    }
    return 1;
}


#define NCMP  200

/* each compare target x result, on a key, on an absent key, on ranges;
 * fired at once, half read-only, half through the write path */
static void
test_txn_compares(void)
{
    int            i, n, good, target, result, delta, want[NCMP];
    res_t          r[NCMP];
    int64_t        actual[5];
    const char    *what[NCMP];
    bl_txn_req_t  *t[NCMP];
    bl_txn_res_t  *tr;
    bl_range_res_t *rr;

    static const char  *vals[] = { "", "l", "m", "m\1", "n" };
    static const int    vsign[] = { 1, 1, 0, -1, -1 };

    admin_sql("INSERT INTO ballast_lease VALUES (555, 60, now())");
    put("t/cmp", "a");
    put("t/cmp", "b");
    put_full(S("t/cmp"), S("m"), 555, 0, 0, 0);
    rr = range_ok(range_full(S("t/cmp"), S(""), 0, 0, 0, 0), "t/cmp");
    if (rr == NULL || rr->nkvs != 1) {
        return;
    }
    actual[BL_CMP_VERSION] = rr->kvs[0].version;
    actual[BL_CMP_CREATE] = rr->kvs[0].create_revision;
    actual[BL_CMP_MOD] = rr->kvs[0].mod_revision;
    actual[BL_CMP_LEASE] = rr->kvs[0].lease;

    n = 0;

    /* numbers: below, equal, above */
    for (target = 0; target <= BL_CMP_LEASE; target++) {
        if (target == BL_CMP_VALUE) {
            continue;
        }
        for (result = 0; result <= BL_CMP_NOT_EQUAL; result++) {
            for (delta = -1; delta <= 1; delta++) {
                t[n] = txn_new();
                cmp_add(t[n], target, result, S("t/cmp"), S(""),
                        actual[target] + delta, S(""));
                want[n] = cmp_expect(result, -delta);
                what[n] = "number";
                n++;
            }
        }
    }

    /* values: shorter, less, equal, longer, greater */
    for (result = 0; result <= BL_CMP_NOT_EQUAL; result++) {
        for (i = 0; i < 5; i++) {
            t[n] = txn_new();
            cmp_add(t[n], BL_CMP_VALUE, result, S("t/cmp"), S(""), 0,
                    S(vals[i]));
            want[n] = cmp_expect(result, vsign[i]);
            what[n] = "value";
            n++;
        }
    }

    /* an absent key is the zero key-value, but a value compare fails */
    for (target = 0; target <= BL_CMP_LEASE; target++) {
        for (result = 0; result <= BL_CMP_NOT_EQUAL; result++) {
            for (delta = -1; delta <= 1; delta++) {
                t[n] = txn_new();
                cmp_add(t[n], target, result, S("t/absent"), S(""), delta,
                        S(delta < 0 ? "" : delta == 0 ? "x" : "\xff"));
                want[n] = (target == BL_CMP_VALUE)
                          ? 0 : cmp_expect(result, -delta);
                what[n] = "absent key";
                n++;
            }
        }
    }

    /* ranges: t/r/1..3 with versions 1..3, values "v" */
    put("t/r/1", "v");
    put("t/r/2", "v");
    put("t/r/2", "v");
    put("t/r/3", "v");
    put("t/r/3", "v");
    put("t/r/3", "v");

#define RANGE_CMP(k, e, tg, res, num, val, w, wh)                             \
    do {                                                                      \
        t[n] = txn_new();                                                     \
        cmp_add(t[n], tg, res, k, e, num, val);                               \
        want[n] = w;                                                          \
        what[n] = wh;                                                         \
        n++;                                                                  \
    } while (0)

    RANGE_CMP(S("t/r/"), S("t/r0"), BL_CMP_VERSION, BL_CMP_GREATER, 0, S(""),
              1, "range: all versions > 0");
    RANGE_CMP(S("t/r/"), S("t/r0"), BL_CMP_VERSION, BL_CMP_GREATER, 1, S(""),
              0, "range: not all versions > 1");
    RANGE_CMP(S("t/r/"), S("t/r0"), BL_CMP_VERSION, BL_CMP_LESS, 4, S(""),
              1, "range: all versions < 4");
    RANGE_CMP(S("t/r/"), S("t/r0"), BL_CMP_VERSION, BL_CMP_LESS, 3, S(""),
              0, "range: not all versions < 3");
    RANGE_CMP(S("t/r/"), S("t/r0"), BL_CMP_VALUE, BL_CMP_EQUAL, 0, S("v"),
              1, "range: all values v");
    RANGE_CMP(S("t/r/"), S("t/r0"), BL_CMP_VALUE, BL_CMP_NOT_EQUAL, 0,
              S("v"), 0, "range: value != v fails");
    RANGE_CMP(S("t/q/"), S("t/q0"), BL_CMP_VERSION, BL_CMP_EQUAL, 0, S(""),
              1, "empty range: version == 0");
    RANGE_CMP(S("t/q/"), S("t/q0"), BL_CMP_MOD, BL_CMP_EQUAL, 0, S(""),
              1, "empty range: mod == 0");
    RANGE_CMP(S("t/q/"), S("t/q0"), BL_CMP_CREATE, BL_CMP_GREATER, 0, S(""),
              0, "empty range: create > 0 fails");
    RANGE_CMP(S("t/q/"), S("t/q0"), BL_CMP_VALUE, BL_CMP_EQUAL, 0, S(""),
              0, "empty range: value == \"\" fails");
    RANGE_CMP(S("t/q/"), S("t/q0"), BL_CMP_VALUE, BL_CMP_NOT_EQUAL, 0,
              S("x"), 0, "empty range: value != x fails");
    RANGE_CMP(S("t/r/3"), S("t/r/1"), BL_CMP_VERSION, BL_CMP_EQUAL, 0, S(""),
              1, "range_end <= key: an empty range");
    RANGE_CMP(S("t/r/2"), B("\0", 1), BL_CMP_MOD, BL_CMP_GREATER, 0, S(""),
              1, "from key: all mods > 0");
    RANGE_CMP(S("t/r/2"), B("\0", 1), BL_CMP_VERSION, BL_CMP_EQUAL, 2,
              S(""), 0, "from key: not all versions 2");
    RANGE_CMP(S("t/r/2"), S("t/r/3"), BL_CMP_VERSION, BL_CMP_EQUAL, 2,
              S(""), 1, "one-key range: version 2");

    /* several compares: all must hold; none holds trivially */
    t[n] = txn_new();
    cmp_add(t[n], BL_CMP_VALUE, BL_CMP_EQUAL, S("t/cmp"), S(""), 0, S("m"));
    cmp_add(t[n], BL_CMP_LEASE, BL_CMP_EQUAL, S("t/cmp"), S(""), 555, S(""));
    cmp_add(t[n], BL_CMP_MOD, BL_CMP_EQUAL, S("t/absent"), S(""), 0, S(""));
    want[n] = 1;
    what[n] = "three compares hold";
    n++;
    t[n] = txn_new();
    cmp_add(t[n], BL_CMP_VALUE, BL_CMP_EQUAL, S("t/cmp"), S(""), 0, S("m"));
    cmp_add(t[n], BL_CMP_LEASE, BL_CMP_EQUAL, S("t/cmp"), S(""), 554, S(""));
    want[n] = 0;
    what[n] = "one of two fails";
    n++;
    t[n] = txn_new();
    want[n] = 1;
    what[n] = "no compare";
    n++;

    /* half of them through the write path (a delete of nothing in the
     * failure branch makes them writes, and changes nothing) */
    for (i = 0; i < n; i += 2) {
        op_del(t[i], 1, S("t/nothing"), S(""), 0);
    }

    for (i = 0; i < n; i++) {
        (void) txn_post(t[i], &r[i]);
    }
    wait_answers(r, n, 10000);

    good = 0;
    for (i = 0; i < n; i++) {
        tr = r[i].result;
        if (r[i].called == 1 && r[i].st == BL_ST_OK && tr != NULL
            && tr->succeeded == (unsigned) want[i])
        {
            good++;
        } else {
            printf("# compare %d (%s, target %d result %d): called %d "
                   "status %s succeeded %d, want %d\n", i, what[i],
                   t[i]->ncompares ? t[i]->compares[0].target : -1,
                   t[i]->ncompares ? t[i]->compares[0].result : -1,
                   r[i].called, bl_storage_status_text(r[i].st),
                   tr ? (int) tr->succeeded : -1, want[i]);
        }
    }
    is_int(good, n, "%d compares: targets x results x below/equal/above, "
           "absent keys, ranges", n);
    ok(n < NCMP, "(room for them)");
}


static void
test_txn_ops(void)
{
    int             good;
    res_t           r;
    int64_t         rev, first;
    bl_kv_t        *kv;
    bl_op_res_t    *o;
    bl_txn_req_t   *t, *n1, *n2, *n3;
    bl_txn_res_t   *tr, *nr;
    bl_put_req_t   *pq;
    bl_range_req_t *rq;
    bl_range_res_t *rr;

    /* branch selection and a nested txn, whose compares saw the state
     * before the transaction; later ops see earlier writes */
    rev = put_rev(put("t/n/a", "a"));
    t = txn_new();
    cmp_add(t, BL_CMP_MOD, BL_CMP_EQUAL, S("t/n/a"), S(""), rev, S(""));
    op_put(t, 0, "t/n/x", "1");
    n1 = txn_new();
    cmp_add(n1, BL_CMP_VERSION, BL_CMP_EQUAL, S("t/n/x"), S(""), 0, S(""));
    op_range(n1, 0, S("t/n/x"), S(""));
    op_put(n1, 1, "t/n/bad", "x");
    op_txn(t, 0, n1);
    op_range(t, 0, S("t/n/"), S("t/n0"));
    op_put(t, 1, "t/n/else", "x");

    r = txn_run(t);
    tr = txn_ok(r, "nested");
    if (tr && ok(tr->succeeded && tr->nresponses == 3, "success branch, "
                 "3 responses"))
    {
        is_int(tr->header_revision, rev + 1, "txn header: the new revision");
        o = &tr->responses[0];
        ok(o->kind == BL_OP_PUT && o->u.put.header_revision == rev + 1,
           "put response");
        o = &tr->responses[1];
        nr = o->u.txn;
        if (ok(o->kind == BL_OP_TXN && nr != NULL, "a nested response")) {
            ok(nr->succeeded, "nested compare saw t/n/x absent (before)");
            ok(nr->header_revision == 0, "nested header left empty");
            if (ok(nr->nresponses == 1
                   && nr->responses[0].kind == BL_OP_RANGE,
                   "nested range ran"))
            {
                rr = &nr->responses[0].u.range;
                ok(rr->count == 1 && rr->nkvs == 1
                   && rr->kvs[0].mod_revision == rev + 1
                   && rr->kvs[0].value.len == 1
                   && rr->kvs[0].value.data[0] == '1',
                   "the nested range sees the put before it");
                is_int(rr->header_revision, rev + 1,
                       "its header: begin + 1 after a change");
            }
        }
        o = &tr->responses[2];
        ok(o->kind == BL_OP_RANGE && o->u.range.count == 2,
           "outer range sees t/n/a and t/n/x");
    }

    /* again: the nested compare fails now; its failure branch runs */
    r = txn_run(t);
    tr = txn_ok(r, "nested again");
    if (tr && tr->succeeded && tr->nresponses == 3) {
        nr = tr->responses[1].u.txn;
        ok(nr && !nr->succeeded && nr->nresponses == 1
           && nr->responses[0].kind == BL_OP_PUT,
           "nested failure branch");
        ok(tr->responses[2].u.range.count == 3, "t/n/bad written");
    }

    /* the outer failure branch, three levels deep */
    t = txn_new();
    cmp_add(t, BL_CMP_MOD, BL_CMP_EQUAL, S("t/n/a"), S(""), 0, S(""));
    op_put(t, 0, "t/n/never", "x");
    op_put(t, 1, "t/n/else", "e");
    n1 = txn_new();
    n2 = txn_new();
    n3 = txn_new();
    cmp_add(n1, BL_CMP_VERSION, BL_CMP_EQUAL, S("t/n/else"), S(""), 0,
            S(""));
    op_txn(n1, 0, n2);
    op_range(n1, 1, S("t/n/never"), S(""));
    op_range(n2, 0, S("t/n/else"), S(""));
    op_txn(n2, 0, n3);
    cmp_add(n3, BL_CMP_CREATE, BL_CMP_GREATER, S("t/n/a"), S(""), 0, S(""));
    op_del(n3, 0, S("t/n/x"), S(""), 1);
    op_put(n3, 1, "t/n/never", "x");
    op_txn(t, 1, n1);
    op_range(t, 1, S("t/n/"), S("t/n0"));
    rev = current_rev();
    r = txn_run(t);
    tr = txn_ok(r, "three levels");
    if (tr && ok(!tr->succeeded && tr->nresponses == 3,
                 "failure branch: 3 responses"))
    {
        nr = tr->responses[1].u.txn;
        good = nr && nr->succeeded && nr->nresponses == 1;
        nr = good ? nr->responses[0].u.txn : NULL;
        good = good && nr && nr->succeeded && nr->nresponses == 2
               && nr->responses[0].u.range.count == 1;
        nr = good ? nr->responses[1].u.txn : NULL;
        good = good && nr && nr->succeeded && nr->nresponses == 1
               && nr->responses[0].kind == BL_OP_DELETE
               && nr->responses[0].u.del.deleted == 1
               && nr->responses[0].u.del.nprev_kvs == 1;
        ok(good, "three levels: each branch as its compares said");
        ok(tr->responses[2].u.range.count == 3, "t/n/: a, bad, else");
        is_int(tr->header_revision, rev + 1, "one revision");
        is_str(log_at(rev + 1), "0:t/n/else:put,1:t/n/x:del",
               "put and delete at subs 0 and 1, in op order");
    }

    /* one revision, consecutive subs in op order (a range delete's keys
     * in key order), everything shares the mod revision */
    put("t/s/c", "c");
    rev = current_rev();
    t = txn_new();
    op_put(t, 0, "t/s/a", "a");
    op_put(t, 0, "t/s/b", "b");
    op_del(t, 0, S("t/s/c"), S(""), 1);
    op_put(t, 0, "t/s/d", "d");
    op_range(t, 0, S("t/s/"), S("t/s0"));
    r = txn_run(t);
    tr = txn_ok(r, "one revision");
    if (tr && tr->nresponses == 5) {
        is_int(tr->header_revision, rev + 1, "header: rev + 1");
        rr = &tr->responses[4].u.range;
        ok(rr->count == 3 && rr->nkvs == 3
           && rr->kvs[0].mod_revision == rev + 1
           && rr->kvs[1].mod_revision == rev + 1
           && rr->kvs[2].mod_revision == rev + 1,
           "a, b, d share the mod revision");
        ok(tr->responses[2].u.del.deleted == 1
           && tr->responses[2].u.del.nprev_kvs == 1
           && tr->responses[2].u.del.prev_kvs[0].value.data[0] == 'c',
           "delete with its prev_kv");
        is_str(log_at(rev + 1),
               "0:t/s/a:put,1:t/s/b:put,2:t/s/c:del,3:t/s/d:put",
               "subs 0..3 in op order");
    }
    is_int(current_rev(), rev + 1, "one revision taken");

    t = txn_new();
    op_put(t, 0, "t/s/e", "e");
    op_del(t, 0, S("t/s/a"), S("t/s/c"), 0);
    op_put(t, 0, "t/s/f", "f");
    r = txn_run(t);
    tr = txn_ok(r, "range delete in a txn");
    if (tr) {
        is_str(log_at(rev + 2),
               "0:t/s/e:put,1:t/s/a:del,2:t/s/b:del,3:t/s/f:put",
               "a range delete's subs in key order, between the puts");
    }

    /* sub-response header revisions (etcd's storeTxnWrite) */
    rev = current_rev();
    t = txn_new();
    op_range(t, 0, S("t/s/d"), S(""));
    op_del(t, 0, S("t/h/absent"), S(""), 0);
    op_put(t, 0, "t/h/x", "x");
    op_range(t, 0, S("t/h/x"), S(""));
    op_del(t, 0, S("t/h/absent"), S(""), 0);
    op_put(t, 0, "t/h/y", "y");
    r = txn_run(t);
    tr = txn_ok(r, "headers");
    if (tr && tr->nresponses == 6) {
        ok(tr->responses[0].u.range.header_revision == rev
           && tr->responses[1].u.del.header_revision == rev
           && tr->responses[2].u.put.header_revision == rev + 1
           && tr->responses[3].u.range.header_revision == rev + 1
           && tr->responses[4].u.del.header_revision == rev + 1
           && tr->responses[5].u.put.header_revision == rev + 1
           && tr->header_revision == rev + 1,
           "range/delete before a change: begin; put: begin + 1; "
           "range/delete after one: begin + 1");
        ok(tr->responses[3].u.range.nkvs == 1, "range sees the put");
    }

    /* a write txn that changes nothing takes no revision */
    rev = current_rev();
    t = txn_new();
    cmp_add(t, BL_CMP_VERSION, BL_CMP_EQUAL, S("t/h/x"), S(""), 99, S(""));
    op_put(t, 0, "t/h/never", "x");
    op_del(t, 1, S("t/h/absent"), S(""), 1);
    op_range(t, 1, S("t/h/x"), S(""));
    r = txn_run(t);
    tr = txn_ok(r, "no change");
    if (tr && ok(!tr->succeeded && tr->nresponses == 2, "failure branch")) {
        ok(tr->header_revision == rev
           && tr->responses[0].u.del.header_revision == rev
           && tr->responses[0].u.del.deleted == 0
           && tr->responses[1].u.range.header_revision == rev,
           "headers: the current revision");
    }
    t = txn_new();
    cmp_add(t, BL_CMP_VERSION, BL_CMP_EQUAL, S("t/h/x"), S(""), 99, S(""));
    op_put(t, 0, "t/h/never", "x");
    r = txn_run(t);
    tr = txn_ok(r, "empty branch");
    if (tr) {
        ok(!tr->succeeded && tr->nresponses == 0 && tr->header_revision == rev,
           "compare false, empty failure branch: no responses, no revision");
    }
    is_int(current_rev(), rev, "no revision taken");

    /* read-only: no revision, no write batch */
    {
        uint64_t  wb = bl_storage_stats.write_batches;

        t = txn_new();
        cmp_add(t, BL_CMP_VERSION, BL_CMP_GREATER, S("t/h/x"), S(""), 0,
                S(""));
        op_range(t, 0, S("t/h/"), S("t/h0"));
        op_range(t, 1, S("t/h/x"), S(""));
        r = txn_run(t);
        tr = txn_ok(r, "read-only");
        if (tr) {
            ok(tr->succeeded && tr->header_revision == rev
               && tr->responses[0].u.range.header_revision == rev
               && tr->responses[0].u.range.count == 2,
               "read-only: current revision everywhere");
            is_int(bl_storage_stats.write_batches, wb,
                   "read-only: not a write batch");
            is_int(RT(r), 1, "read-only txn: 1 round trip");
        }
        is_int(current_rev(), rev, "read-only: no revision");
    }

    /* ranges inside: limit, more, count, keys_only, count_only, past */
    first = put_rev(put("t/g/1", "old"));
    put("t/g/2", "2");
    put("t/g/3", "3");
    put("t/g/4", "4");
    put("t/g/5", "5");
    put("t/g/1", "new");
    t = txn_new();
    rq = op_range(t, 0, S("t/g/"), S("t/g0"));
    rq->limit = 2;
    rq = op_range(t, 0, S("t/g/"), S("t/g0"));
    rq->keys_only = 1;
    rq = op_range(t, 0, S("t/g/"), S("t/g0"));
    rq->count_only = 1;
    rq->limit = 1;
    rq = op_range(t, 0, S("t/g/1"), S(""));
    rq->revision = first;
    rq = op_range(t, 0, S("t/g/"), S("t/g0"));
    rq->revision = first + 2;
    rq->limit = 2;
    rq = op_range(t, 0, S("t/g/4"), B("\0", 1));
    rq->limit = 5;
    rq = op_range(t, 0, S("t/g/"), S("t/g0"));
    rq->limit = 5;
    r = txn_run(t);
    tr = txn_ok(r, "ranges");
    if (tr && tr->nresponses == 7) {
        rr = &tr->responses[0].u.range;
        ok(rr->count == 5 && rr->nkvs == 2 && rr->more
           && rr->kvs[0].key.data[4] == '1' && rr->kvs[1].key.data[4] == '2',
           "limit 2: count 5, 2 kvs in key order, more");
        rr = &tr->responses[1].u.range;
        ok(rr->count == 5 && rr->nkvs == 5 && rr->kvs[0].value.len == 0
           && rr->kvs[0].version == 2 && !rr->more,
           "keys_only: no values, the rest there");
        rr = &tr->responses[2].u.range;
        ok(rr->count == 5 && rr->nkvs == 0 && !rr->more,
           "count_only: count, no kvs, no more");
        rr = &tr->responses[3].u.range;
        ok(rr->count == 1 && rr->nkvs == 1 && rr->kvs[0].value.len == 3
           && memcmp(rr->kvs[0].value.data, "old", 3) == 0
           && rr->kvs[0].mod_revision == first,
           "at a revision: the old value");
        rr = &tr->responses[4].u.range;
        ok(rr->count == 3 && rr->nkvs == 2 && rr->more,
           "at a revision: count 3, limit 2, more");
        rr = &tr->responses[5].u.range;
        ok(rr->count >= 2 && rr->nkvs >= 2 && rr->kvs[0].key.data[4] == '4',
           "from key");
        rr = &tr->responses[6].u.range;
        ok(rr->count == 5 && rr->nkvs == 5 && !rr->more,
           "limit = count: no more");
    }

    /* prev_kv of a put in a txn; a delete then a range of it */
    t = txn_new();
    pq = op_put(t, 0, "t/g/2", "two");
    pq->prev_kv = 1;
    op_put(t, 0, "t/g/6", "6")->prev_kv = 1;
    op_del(t, 0, S("t/g/3"), S("t/g/5"), 1);
    op_range(t, 0, S("t/g/"), S("t/g0"));
    r = txn_run(t);
    tr = txn_ok(r, "prev_kv");
    if (tr && tr->nresponses == 4) {
        kv = tr->responses[0].u.put.prev_kv;
        ok(kv && kv->value.len == 1 && kv->value.data[0] == '2'
           && kv->key.len == 5, "put prev_kv");
        ok(tr->responses[1].u.put.prev_kv == NULL, "none for a new key");
        ok(tr->responses[2].u.del.deleted == 2
           && tr->responses[2].u.del.nprev_kvs == 2
           && tr->responses[2].u.del.prev_kvs[0].key.data[4] == '3'
           && tr->responses[2].u.del.prev_kvs[1].key.data[4] == '4',
           "delete prev_kvs in key order");
        ok(tr->responses[3].u.range.count == 4, "range after: 1, 2, 5, 6");
    }
}


/* failures on the path taken: nothing written, no revision */
static void
test_txn_failures(void)
{
    res_t           r;
    int64_t         rev;
    bl_txn_req_t   *t, *n1;
    bl_put_req_t   *pq;
    bl_range_req_t *rq;
    bl_range_res_t *rr;

    put("t/f/e", "exists");
    rev = current_rev();

#define FAILS(want, what)                                                     \
    do {                                                                      \
        r = txn_run(t);                                                       \
        ok(r.called == 1 && r.st == want, "%s: %s", what,                     \
           bl_storage_status_text(r.st));                                     \
        is_int(current_rev(), rev, "%s: no revision", what);                  \
    } while (0)

    t = txn_new();
    op_put(t, 0, "t/f/1", "x");
    op_put(t, 0, "t/f/2", "x")->lease = 999;
    FAILS(BL_ST_LEASE_NOT_FOUND, "unknown lease");

    t = txn_new();
    op_put(t, 0, "t/f/1", "x");
    op_put(t, 0, "t/f/absent", "")->ignore_value = 1;
    FAILS(BL_ST_KEY_NOT_FOUND, "ignore_value on an absent key");

    t = txn_new();
    op_put(t, 0, "t/f/1", "x");
    op_put(t, 0, "t/f/absent", "x")->ignore_lease = 1;
    FAILS(BL_ST_KEY_NOT_FOUND, "ignore_lease on an absent key");

    t = txn_new();
    pq = op_put(t, 0, "t/f/absent", "");
    pq->ignore_value = 1;
    pq->lease = 999;
    FAILS(BL_ST_KEY_NOT_FOUND, "unknown lease and ignore_value on an "
          "absent key: ignore_* first (etcd's checkRequestPut)");

    t = txn_new();
    op_put(t, 0, "t/f/new", "x");
    op_put(t, 0, "t/f/new", "")->ignore_value = 1;
    FAILS(BL_ST_KEY_NOT_FOUND, "ignore_value on a key absent before the "
          "txn (etcd checks the state before it)");

    t = txn_new();
    op_del(t, 0, S("t/f/e"), S(""), 0);
    op_put(t, 0, "t/f/e", "")->ignore_value = 1;
    FAILS(BL_ST_KEY_NOT_FOUND, "ignore_value on a key an earlier op "
          "deleted");

    t = txn_new();
    op_put(t, 0, "t/f/1", "x");
    rq = op_range(t, 0, S("t/f/e"), S(""));
    rq->revision = rev + 1;
    FAILS(BL_ST_FUTURE_REV, "range at a future revision");

    t = txn_new();
    rq = op_range(t, 0, S("t/f/e"), S(""));
    rq->revision = rev + 1;
    op_put(t, 0, "t/f/2", "x")->lease = 999;
    FAILS(BL_ST_LEASE_NOT_FOUND, "puts are checked before ranges");

    t = txn_new();
    rq = op_range(t, 0, S("t/f/e"), S(""));
    rq->revision = rev + 5;
    FAILS(BL_ST_FUTURE_REV, "read-only txn at a future revision");

    t = txn_new();
    n1 = txn_new();
    op_put(t, 0, "t/f/1", "x");
    cmp_add(n1, BL_CMP_VERSION, BL_CMP_GREATER, S("t/f/e"), S(""), 0, S(""));
    op_put(n1, 0, "t/f/3", "x")->lease = 999;
    op_txn(t, 0, n1);
    FAILS(BL_ST_LEASE_NOT_FOUND, "in a nested branch taken");

    rr = range_ok(range_full(S("t/f/"), S("t/f0"), 0, 0, 0, 0), "t/f/");
    if (rr) {
        ok(rr->count == 1 && rr->kvs[0].value.len == 6,
           "nothing of them written, t/f/e still there");
    }

    /* what is in the branch not taken is not checked */
    t = txn_new();
    cmp_add(t, BL_CMP_VERSION, BL_CMP_GREATER, S("t/f/e"), S(""), 0, S(""));
    op_put(t, 0, "t/f/ok", "x");
    op_put(t, 1, "t/f/2", "x")->lease = 999;
    rq = op_range(t, 1, S("t/f/e"), S(""));
    rq->revision = rev + 100;
    r = txn_run(t);
    ok(r.called == 1 && r.st == BL_ST_OK
       && ((bl_txn_res_t *) r.result)->succeeded,
       "invalid ops in the branch not taken are ignored");

    /* ignore_value/ignore_lease on a key that exists keep them */
    admin_sql("INSERT INTO ballast_lease VALUES (556, 60, now())");
    t = txn_new();
    op_put(t, 0, "t/f/e", "x")->lease = 556;
    (void) txn_ok(txn_run(t), "put with a lease");
    t = txn_new();
    pq = op_put(t, 0, "t/f/e", "");
    pq->ignore_value = 1;
    pq->ignore_lease = 1;
    r = txn_run(t);
    rr = range_ok(range_full(S("t/f/e"), S(""), 0, 0, 0, 0), "ignore_*");
    if (txn_ok(r, "ignore_*") && rr && rr->nkvs == 1) {
        ok(rr->kvs[0].value.len == 1 && rr->kvs[0].value.data[0] == 'x'
           && rr->kvs[0].lease == 556,
           "ignore_value + ignore_lease in a txn keep both");
    }
}


/* a txn of 10 compares and 20 ops, one of them a nested txn: one
 * statement, one round trip; and each simple kind */
static void
test_round_trips(void)
{
    int             i;
    char           *k;
    res_t           r;
    bl_txn_req_t   *t, *n1;
    bl_txn_res_t   *tr;

    t = txn_new();
    n1 = txn_new();

    for (i = 0; i < 10; i++) {
        k = bl_pnalloc(pool, 16);
        snprintf(k, 16, "t/rt/%02d", i);
        cmp_add(t, i % 2 ? BL_CMP_MOD : BL_CMP_VERSION, BL_CMP_EQUAL, S(k),
                S(""), 0, S(""));
    }

    for (i = 0; i < 19; i++) {
        k = bl_pnalloc(pool, 16);
        snprintf(k, 16, "t/rt/%02d", i);

        switch (i % 3) {
        case 0:
            op_put(t, 0, k, "v");
            break;
        case 1:
            op_range(t, 0, S("t/rt/"), S("t/rt0"));
            break;
        default:
            op_del(t, 0, S(k), S(""), 1);
        }
    }

    cmp_add(n1, BL_CMP_VERSION, BL_CMP_EQUAL, S("t/rt/00"), S(""), 0, S(""));
    op_put(n1, 0, "t/rt/nested", "v");
    op_range(n1, 1, S("t/rt/"), S("t/rt0"));
    op_txn(t, 0, n1);

    r = txn_run(t);
    tr = txn_ok(r, "10 compares, 20 ops");
    if (tr) {
        ok(tr->succeeded && tr->nresponses == 20
           && tr->responses[19].u.txn->succeeded,
           "all compares held, 20 responses");
        is_int(RT(r), 1, "txn of 10 compares and 20 ops (one nested): "
               "1 round trip");
        is_int(STMTS(r), 2, "and 1 statement + the batch's NOTIFY");
    }

    r = range_full(S("t/rt/"), S("t/rt0"), 0, 0, 0, 0);
    is_int(RT(r), 1, "range: 1 round trip");
    is_int(STMTS(r), 1, "range: 1 statement");
    r = put("t/rt/x", "x");
    is_int(RT(r), 1, "put: 1 round trip");
    is_int(STMTS(r), 2, "put: 1 statement + the batch's NOTIFY");
    r = del_full(S("t/rt/"), S("t/rt0"), 1);
    is_int(RT(r), 1, "delete: 1 round trip");
    is_int(STMTS(r), 2, "delete: 1 statement + the batch's NOTIFY");
}


#define NCAS  50

/* If(mod(k) == r) Then Put: exactly one winner among 50 at once (one
 * group commit), and none against a writer on another connection that
 * got there first */
static void
test_cas(void)
{
    int             i, wins, losses, good;
    char            vals[NCAS][16], sql[1024];
    res_t           r[NCAS];
    int64_t         rev, winner;
    bl_txn_req_t   *t[NCAS];
    bl_txn_res_t   *tr;
    bl_range_res_t *rr;

    rev = put_rev(put("t/cas", "start"));

    for (i = 0; i < NCAS; i++) {
        snprintf(vals[i], sizeof(vals[i]), "w%02d", i);
        t[i] = txn_new();
        cmp_add(t[i], BL_CMP_MOD, BL_CMP_EQUAL, S("t/cas"), S(""), rev,
                S(""));
        op_put(t[i], 0, "t/cas", vals[i]);
        op_range(t[i], 1, S("t/cas"), S(""));
        (void) txn_post(t[i], &r[i]);
    }
    wait_answers(r, NCAS, 10000);

    wins = 0;
    losses = 0;
    winner = -1;
    for (i = 0; i < NCAS; i++) {
        tr = r[i].result;
        if (r[i].called != 1 || r[i].st != BL_ST_OK || tr == NULL) {
            continue;
        }
        if (tr->succeeded) {
            wins++;
            winner = i;
        } else if (tr->nresponses == 1
                   && tr->responses[0].u.range.nkvs == 1
                   && tr->responses[0].u.range.kvs[0].mod_revision
                      == rev + 1)
        {
            losses++;
        }
    }
    is_int(wins, 1, "%d CAS txns at once: exactly one winner", NCAS);
    is_int(losses, NCAS - 1, "the others see the winner's write");
    is_int(current_rev(), rev + 1, "one revision taken");
    rr = range_ok(range_full(S("t/cas"), S(""), 0, 0, 0, 0), "cas");
    if (rr && winner >= 0) {
        is_mem(rr->kvs[0].value.data, rr->kvs[0].value.len, vals[winner], 3,
               "the winner's value");
    }

    /*
     * Another writer holds the revision lock and wins: ours wait for the
     * lock, then must see its write (READ COMMITTED, compares after the
     * lock) and all fail.
     */
    rev = current_rev();
    admin_sql("BEGIN");
    admin_sql("SELECT revision FROM ballast_meta WHERE id = 1 FOR UPDATE");

    for (i = 0; i < 10; i++) {
        t[i] = txn_new();
        cmp_add(t[i], BL_CMP_MOD, BL_CMP_EQUAL, S("t/cas"), S(""), rev,
                S(""));
        op_put(t[i], 0, "t/cas", vals[i]);
        (void) txn_post(t[i], &r[i]);
    }
    run_for(200);

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ballast_txn('{{1,1,1,1,2,0}}',"
             " '{{2,0,0}}', '{%" PRId64 "}', '{t/cas}', '{NULL}', '{\"\"}',"
             " '{{1,0,0,0}}', '{{0,0,0}}', '{t/cas}', '{NULL}', '{other}')",
             rev);
    is_int(admin_int(sql), 3, "the other connection's CAS ran (3 rows)");
    admin_sql("COMMIT");

    wait_answers(r, 10, 10000);
    good = 0;
    for (i = 0; i < 10; i++) {
        tr = r[i].result;
        good += (r[i].called == 1 && r[i].st == BL_ST_OK && tr != NULL
                 && !tr->succeeded && tr->header_revision == rev + 1);
    }
    is_int(good, 10, "all 10 waiting CAS txns lose to it");
    rr = range_ok(range_full(S("t/cas"), S(""), 0, 0, 0, 0), "cas 2");
    if (rr) {
        is_mem(rr->kvs[0].value.data, rr->kvs[0].value.len, "other", 5,
               "its value stands");
    }
}


/* a range's answer as text, to compare answers before and after */
static char *
describe(res_t r)
{
    size_t           i, n;
    char            *s;
    FILE            *f;
    bl_kv_t         *kv;
    bl_range_res_t  *rr;

    s = NULL;
    n = 0;
    f = open_memstream(&s, &n);
    rr = r.result;

    if (r.called != 1 || r.st != BL_ST_OK || rr == NULL) {
        fprintf(f, "error %d %s", r.called, bl_storage_status_text(r.st));

    } else {
        fprintf(f, "count %" PRId64 " more %d:", rr->count, (int) rr->more);
        for (i = 0; i < rr->nkvs; i++) {
            kv = &rr->kvs[i];
            fprintf(f, " [%.*s c%" PRId64 " m%" PRId64 " v%" PRId64 " l%"
                    PRId64 " %.*s]", (int) kv->key.len, kv->key.data,
                    kv->create_revision, kv->mod_revision, kv->version,
                    kv->lease, (int) kv->value.len, kv->value.data);
        }
    }

    fclose(f);
    return s;
}


#define NFORMS  4

static char *
snapshot(int64_t rev, int form)
{
    switch (form) {
    case 0:
        return describe(range_full(S("c/"), S("c0"), 0, rev, 0, 0));
    case 1:
        return describe(range_full(S("c/2"), S(""), 0, rev, 0, 0));
    case 2:
        return describe(range_full(S("c/3"), B("\0", 1), 3, rev, 0, 0));
    default:
        return describe(range_full(S("c/"), S("c0"), 2, rev, 1, 0));
    }
}


/* compaction's promise, checked in SQL: nothing superseded at or below
 * c is left, no tombstone at or below c, and every prev_rev above c still
 * finds its row (prev_kv for watchers) */
static void
check_compacted(int64_t c, const char *what)
{
    char  sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ballast_log l WHERE l.rev < %" PRId64
             " AND EXISTS (SELECT 1 FROM ballast_log n WHERE n.key = l.key"
             " AND n.rev > l.rev AND n.rev <= %" PRId64 ")", c, c);
    is_int(admin_int(sql), 0, "%s: no superseded version left", what);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ballast_log WHERE kind = 1"
             " AND rev <= %" PRId64, c);
    is_int(admin_int(sql), 0, "%s: no tombstone left at or below it", what);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ballast_log l WHERE l.rev > %" PRId64
             " AND l.prev_rev > 0 AND NOT EXISTS (SELECT 1 FROM ballast_log p"
             " WHERE p.key = l.key AND p.rev = l.prev_rev)", c);
    is_int(admin_int(sql), 0, "%s: every prev_rev above it is there", what);
}


/* rows that compaction to c must keep: the latest live one at or below c
 * of each key, and everything above c */
static int64_t
kept_rows(int64_t c)
{
    char  sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM (SELECT DISTINCT ON (key) kind"
             " FROM ballast_log WHERE rev <= %" PRId64
             " ORDER BY key, rev DESC, sub DESC) h WHERE kind = 0)"
             " + (SELECT count(*) FROM ballast_log WHERE rev > %" PRId64 ")",
             c, c);
    return admin_int(sql);
}


static int
wait_finished(int64_t c, int64_t msec)
{
    int64_t  waited;

    for (waited = 0; waited < msec; waited += 20) {
        if (admin_int("SELECT finished FROM ballast_compaction") >= c) {
            return 1;
        }
        run_for(20);
    }

    return 0;
}


#define NHIST  60

static void
test_compact(void)
{
    int               i, form, same, checked;
    char             *before[NHIST + 8][NFORMS], *now, keys[8], val[16];
    res_t             r;
    int64_t           start, end, rev, c1, c2, kept;
    bl_txn_req_t     *t;
    bl_compact_res_t *cr;

    /* a history: puts, deletes, range deletes and txns over c/0..c/4 */
    start = current_rev();
    for (i = 1; i <= NHIST; i++) {
        snprintf(keys, sizeof(keys), "c/%d", i % 5);
        snprintf(val, sizeof(val), "v%d", i);

        if (i % 7 == 0) {
            snprintf(keys, sizeof(keys), "c/%d", (i + 2) % 5);
            del_full(S(keys), S(""), 0);

        } else if (i % 11 == 0) {
            del_full(S("c/1"), S("c/3"), 0);

        } else if (i % 13 == 0) {
            t = txn_new();
            op_put(t, 0, "c/x", val);
            op_del(t, 0, S("c/0"), S(""), 0);
            op_put(t, 0, "c/0", val);
            (void) txn_run(t);

        } else {
            put_full(S(keys), S(val), 0, 0, 0, 0);
        }
    }
    end = current_rev();
    ok(end - start > NHIST / 2, "a history of %" PRId64 " revisions",
       end - start);

    for (rev = start; rev <= end; rev++) {
        for (form = 0; form < NFORMS; form++) {
            before[rev - start][form] = snapshot(rev, form);
        }
    }

    /* errors */
    r = compact_run(end + 1, 0);
    ok(r.called == 1 && r.st == BL_ST_FUTURE_REV, "compact above the "
       "current revision: %s", bl_storage_status_text(r.st));

    c1 = start + (end - start) / 3;
    kept = kept_rows(c1);
    r = compact_run(c1, 0);
    cr = r.result;
    ok(r.called == 1 && r.st == BL_ST_OK && cr != NULL
       && cr->header_revision == end,
       "compact to %" PRId64 ": ok, header is the current revision", c1);
    is_int(RT(r), 1, "compact: 1 round trip");
    is_int(STMTS(r), 2, "compact: 1 statement + the batch's NOTIFY");
    is_int(current_rev(), end, "compact takes no revision");

    r = compact_run(c1, 0);
    ok(r.called == 1 && r.st == BL_ST_COMPACTED, "the same again: %s",
       bl_storage_status_text(r.st));
    r = compact_run(c1 - 1, 0);
    ok(r.called == 1 && r.st == BL_ST_COMPACTED, "below it: %s",
       bl_storage_status_text(r.st));

    r = range_full(S("c/"), S("c0"), 0, c1 - 1, 0, 0);
    ok(r.called == 1 && r.st == BL_ST_COMPACTED, "range below it: %s",
       bl_storage_status_text(r.st));
    t = txn_new();
    op_range(t, 0, S("c/"), S("c0"))->revision = c1 - 1;
    r = txn_run(t);
    ok(r.called == 1 && r.st == BL_ST_COMPACTED, "txn range below it: %s",
       bl_storage_status_text(r.st));
    t = txn_new();
    op_range(t, 0, S("c/"), S("c0"))->revision = -1;
    r = txn_run(t);
    ok(r.called == 1 && r.st == BL_ST_COMPACTED, "txn range at a negative "
       "revision: %s (etcd 3.4's checkRequestRange)",
       bl_storage_status_text(r.st));

    ok(wait_finished(c1, 10000), "the deletion finished");
    is_int(kept_rows(c1), kept, "what it keeps is all that is left (%"
           PRId64 " rows)", kept);
    check_compacted(c1, "compact to c1");

    same = 0;
    checked = 0;
    for (rev = c1; rev <= end; rev++) {
        for (form = 0; form < NFORMS; form++) {
            now = snapshot(rev, form);
            checked++;
            if (strcmp(now, before[rev - start][form]) == 0) {
                same++;
            } else {
                printf("# at %" PRId64 " form %d:\n#  before %s\n#  after  "
                       "%s\n", rev, form, before[rev - start][form], now);
            }
            free(now);
        }
    }
    is_int(same, checked, "%d ranges at every revision from %" PRId64
           " to %" PRId64 ": the same answers as before", checked, c1, end);

    /* physical: answered once the deletion is done */
    c2 = end - 5;
    r = compact_run(c2, 1);
    ok(r.called == 1 && r.st == BL_ST_OK, "physical compact to %" PRId64,
       c2);
    is_int(admin_int("SELECT finished FROM ballast_compaction"), c2,
           "physical: answered after the deletion finished");
    check_compacted(c2, "physical compact");

    same = 0;
    checked = 0;
    for (rev = c2; rev <= end; rev++) {
        for (form = 0; form < NFORMS; form++) {
            now = snapshot(rev, form);
            checked++;
            same += (strcmp(now, before[rev - start][form]) == 0);
            free(now);
        }
    }
    is_int(same, checked, "%d ranges from %" PRId64 " on: the same",
           checked, c2);

    r = compact_run(end, 0);
    ok(r.called == 1 && r.st == BL_ST_OK, "compact to the current "
       "revision is allowed");
    ok(wait_finished(end, 10000), "and done");

    for (rev = start; rev <= end; rev++) {
        for (form = 0; form < NFORMS; form++) {
            free(before[rev - start][form]);
        }
    }
}


/* a long history: bounded steps, writers keep going meanwhile */
static void
test_compact_big(void)
{
    int                    n;
    res_t                  r, p;
    double                 t0, lat, max_lat;
    int64_t                rev;
    bl_pg_compact_stats_t  before;
    bl_storage_status_e    st;

    t0 = ev_time();
    admin_sql("SELECT count(ballast_put(('c/big/' || (i % 10))::bytea,"
              " repeat('x', 100)::bytea, 0, 0))"
              " FROM generate_series(1, 20000) i");
    ev_now_update(bl_loop);
    printf("# 20000 puts through ballast_put in %.0f ms\n",
           (ev_time() - t0) * 1000.0);

    rev = current_rev();
    before = bl_pg_compact_stats;

    memset(&r, 0, sizeof(r));
    st = bl_storage_compact(pool, rev, 1, done_handler, &r, NULL);
    ok(st == BL_ST_OK, "physical compaction of 20000 revisions started");

    /* puts meanwhile, one after the other */
    n = 0;
    max_lat = 0;
    while (r.called == 0 && n < 100000) {
        t0 = ev_time();
        p = put("c/during", "x");
        lat = ev_time() - t0;
        max_lat = bl_max(max_lat, lat);
        n += (put_rev(p) > 0);
    }

    ok(r.called == 1 && r.st == BL_ST_OK, "compaction answered");
    printf("# compaction: %" PRIu64 " rows deleted in %" PRIu64 " steps "
           "(at most %d log rows read each), %.1f ms a step on average, "
           "%" PRId64 " ms at most\n",
           bl_pg_compact_stats.deleted - before.deleted,
           bl_pg_compact_stats.steps - before.steps,
           BL_PG_COMPACT_STEP_ROWS,
           (double) (bl_pg_compact_stats.msec - before.msec)
               / (double) bl_max(1, bl_pg_compact_stats.steps - before.steps),
           bl_pg_compact_stats.max_msec);
    printf("# %d puts meanwhile, the slowest took %.1f ms\n", n,
           max_lat * 1000.0);
    ok(bl_pg_compact_stats.steps - before.steps >= 19,
       "in bounded steps (%" PRIu64 ")",
       bl_pg_compact_stats.steps - before.steps);
    ok(bl_pg_compact_stats.max_rows <= 2 * BL_PG_COMPACT_STEP_ROWS,
       "none deleted more than %d rows (%" PRIu64 ")",
       2 * BL_PG_COMPACT_STEP_ROWS, bl_pg_compact_stats.max_rows);
    ok(n > 0, "writers were served meanwhile");
    is_int(admin_int("SELECT count(*) FROM ballast_log"
                     " WHERE key >= 'c/big/' AND key < 'c/big0'"), 10,
           "one version of each of the 10 keys left");
    check_compacted(rev, "20000 revisions");
}


/* another process holds the compaction; a crash left one half done */
static void
test_compact_resume(void)
{
    res_t                r;
    int64_t              rev, cursor;
    bl_storage_status_e  st;

    /* someone else is at it: a physical compaction waits for them */
    admin_sql("SELECT count(ballast_put(('c/lock/' || (i % 3))::bytea,"
              " 'x', 0, 0)) FROM generate_series(1, 3000) i");
    rev = current_rev();
    admin_sql("SELECT pg_advisory_lock(7089066501205095425)");

    memset(&r, 0, sizeof(r));
    st = bl_storage_compact(pool, rev, 1, done_handler, &r, NULL);
    run_for(1500);
    ok(st == BL_ST_OK && r.called == 0,
       "physical compaction waits while another process holds the lock");
    ok(admin_int("SELECT finished FROM ballast_compaction") < rev,
       "nothing done meanwhile");
    admin_sql("SELECT pg_advisory_unlock(7089066501205095425)");
    run_until(&r.called, 1, 10000);
    ok(r.called == 1 && r.st == BL_ST_OK,
       "answered once it is free and the deletion done");
    check_compacted(rev, "after waiting");

    /* a waiting physical compaction cancelled: never answered */
    {
        int               never;
        bl_pool_t        *p;
        bl_storage_op_t  *op;

        never = 0;
        put("c/lock/0", "y");
        rev = current_rev();
        admin_sql("SELECT pg_advisory_lock(7089066501205095425)");
        p = bl_pool_create(1024);
        st = bl_storage_compact(p, rev, 1, never_handler, &never, &op);
        run_for(300);
        ok(st == BL_ST_OK && op->held, "a physical compaction held");
        bl_storage_cancel(op);
        bl_pool_destroy(p);
        admin_sql("SELECT pg_advisory_unlock(7089066501205095425)");
        ok(wait_finished(rev, 5000), "its deletion still finishes");
        run_for(50);
        is_int(never, 0, "and the cancelled one is never answered");
    }

    /*
     * A crash halfway: the compact revision recorded, one step of the
     * deletion done (by SQL, as the dead process left it), then a pool
     * comes up and finishes it.
     */
    bl_pg_done();

    admin_sql("SELECT count(ballast_put(('c/crash/' || (i % 7))::bytea,"
              " 'x', 0, 0)) FROM generate_series(1, 5000) i");
    rev = current_rev();
    admin_sql("UPDATE ballast_meta SET compact_revision = revision");
    admin_sql("SELECT ballast_compact_step(1000)");
    cursor = admin_int("SELECT cursor_rev FROM ballast_compaction");
    ok(admin_int("SELECT finished FROM ballast_compaction") < rev
       && cursor > 0, "left halfway (cursor at %" PRId64 ", scheduled %"
       PRId64 ")", cursor, rev);

    start_pool(5000);
    ok(wait_available(5000), "pool up again");
    ok(wait_finished(rev, 20000), "it finished the compaction");
    check_compacted(rev, "resumed");
    r = range_full(S("c/crash/"), S("c/crash0"), 0, rev, 0, 0);
    ok(r.called == 1 && r.st == BL_ST_OK
       && ((bl_range_res_t *) r.result)->count == 7,
       "reads at the compact revision work");
}


/* the revision log for watch */

static res_t
log_run(int64_t after, int64_t max_revs, bl_str_t key, bl_str_t end)
{
    res_t                r;
    bl_log_req_t         req;
    bl_storage_status_e  st;

    memset(&r, 0, sizeof(r));
    memset(&req, 0, sizeof(req));
    req.after = after;
    req.max_revs = max_revs;
    req.key = key;
    req.range_end = end;

    r.before = bl_storage_stats;
    st = bl_storage_log_read(pool, &req, done_handler, &r, NULL);
    if (st != BL_ST_OK) {
        r.st = st;
        r.called = -1;
        return r;
    }

    run_until(&r.called, 1, 10000);
    return r;
}


static bl_log_res_t *
log_ok(res_t r, const char *what)
{
    if (!ok(r.called == 1 && r.st == BL_ST_OK && r.result != NULL,
            "%s: log read answered", what))
    {
        printf("#   called %d status %s\n", r.called,
               bl_storage_status_text(r.st));
        return NULL;
    }

    return r.result;
}


/*
 * Events as "R.S put key=value c=C v=V l=L [prev value@M c=C v=V]" or
 * "R.S del key m=M [prev ...]", revisions relative to base, joined by
 * "; ".  Checks on the way what every event must hold.
 */
static char *
events(bl_log_res_t *lr, int64_t base)
{
    size_t           i;
    char            *p, *end;
    bl_kv_t         *kv;
    bl_log_event_t  *ev;
    static char      buf[16384];

    p = buf;
    end = buf + sizeof(buf);
    buf[0] = '\0';

    for (i = 0; i < lr->nevents && p < end - 256; i++) {
        ev = &lr->events[i];
        kv = &ev->kv;

        if (kv->mod_revision != ev->rev) {
            p += snprintf(p, end - p, "(BAD mod_revision) ");
        }

        p += snprintf(p, end - p, "%s%" PRId64 ".%d ", i ? "; " : "",
                      ev->rev - base, (int) ev->sub);

        if (ev->deleted) {
            if (kv->create_revision != 0 || kv->version != 0
                || kv->lease != 0 || kv->value.len != 0)
            {
                p += snprintf(p, end - p, "(BAD tombstone) ");
            }

            p += snprintf(p, end - p, "del %.*s", (int) kv->key.len,
                          kv->key.data);

        } else {
            p += snprintf(p, end - p, "put %.*s=%.*s c%" PRId64 " v%"
                          PRId64 " l%" PRId64, (int) kv->key.len,
                          kv->key.data, (int) kv->value.len, kv->value.data,
                          kv->create_revision - base, kv->version,
                          kv->lease);
        }

        if (ev->has_prev) {
            p += snprintf(p, end - p, " [%.*s@%" PRId64 " c%" PRId64
                          " v%" PRId64 "]", (int) ev->prev.value.len,
                          ev->prev.value.data,
                          ev->prev.mod_revision - base,
                          ev->prev.create_revision - base,
                          ev->prev.version);

            if (bl_str_cmp(&ev->prev.key, &kv->key) != 0) {
                p += snprintf(p, end - p, "(BAD prev key)");
            }
        }
    }

    return buf;
}


/* the revisions of events, "R,R,..." relative to base (distinct ones) */
static char *
event_revs(bl_log_res_t *lr, int64_t base)
{
    size_t        i;
    char         *p, *end;
    static char   buf[4096];

    p = buf;
    end = buf + sizeof(buf);
    buf[0] = '\0';

    for (i = 0; i < lr->nevents && p < end - 32; i++) {
        if (i > 0 && lr->events[i].rev == lr->events[i - 1].rev) {
            continue;
        }

        p += snprintf(p, end - p, "%s%" PRId64, p == buf ? "" : ",",
                      lr->events[i].rev - base);
    }

    return buf;
}


static void
test_log_read(void)
{
    int               pages, whole;
    char              all[16384], paged[16384];
    res_t             r;
    int64_t           b, after, cur;
    bl_txn_req_t     *t;
    bl_log_res_t     *lr;

    b = current_rev();

    put("w/a", "a1");                                     /* b+1 */
    put("w/b", "b1");                                     /* b+2 */
    put("w/a", "a2");                                     /* b+3 */
    del_full(S("w/b"), S(""), 0);                         /* b+4 */
    t = txn_new();
    op_put(t, 0, "w/c", "c1");
    op_put(t, 0, "w/a", "a3");
    txn_run(t);                                           /* b+5 */
    del_full(S("w/a"), S("w/d"), 0);                      /* b+6 */
    put("w/a", "a4");                                     /* b+7 */
    put("x/other", "o");                                  /* b+8 */

    cur = current_rev();
    is_int(cur, b + 8, "log: 8 writes, 8 revisions");

    r = log_run(b, 1000, S(""), S(""));
    lr = log_ok(r, "every key");
    if (lr) {
        is_int(lr->current, cur, "current is the store's revision");
        is_int(lr->through, cur, "through: up to the current revision");
        is_int(lr->compact, admin_int("SELECT compact_revision"
                                      " FROM ballast_meta"),
               "compact is the store's compact revision");
        is_str(events(lr, b),
               "1.0 put w/a=a1 c1 v1 l0; "
               "2.0 put w/b=b1 c2 v1 l0; "
               "3.0 put w/a=a2 c1 v2 l0 [a1@1 c1 v1]; "
               "4.0 del w/b [b1@2 c2 v1]; "
               "5.0 put w/c=c1 c5 v1 l0; "
               "5.1 put w/a=a3 c1 v3 l0 [a2@3 c1 v2]; "
               "6.0 del w/a [a3@5 c1 v3]; "
               "6.1 del w/c [c1@5 c5 v1]; "
               "7.0 put w/a=a4 c7 v1 l0; "
               "8.0 put x/other=o c8 v1 l0",
               "every key: puts, deletes (tombstones: key and mod_revision"
               " only), a txn's and a range delete's events in sub order, "
               "prev of updates and deletes, none of creations");
        is_int(RT(r), 1, "one round trip");
        is_int(STMTS(r), 1, "one statement");
        snprintf(all, sizeof(all), "%s", events(lr, b));
    }

    lr = log_ok(log_run(b, 1000, S("w/a"), S("")), "one key");
    if (lr) {
        is_str(events(lr, b),
               "1.0 put w/a=a1 c1 v1 l0; "
               "3.0 put w/a=a2 c1 v2 l0 [a1@1 c1 v1]; "
               "5.1 put w/a=a3 c1 v3 l0 [a2@3 c1 v2]; "
               "6.0 del w/a [a3@5 c1 v3]; "
               "7.0 put w/a=a4 c7 v1 l0",
               "one key: its events only");
        is_int(lr->through, cur, "one key: through the current revision");
    }

    lr = log_ok(log_run(b, 1000, S("w/"), S("w0")), "prefix");
    if (lr) {
        is_str(event_revs(lr, b), "1,2,3,4,5,6,7", "prefix w/: its events");
        is_int(lr->nevents, 9, "prefix w/: 9 events");
    }

    lr = log_ok(log_run(b, 1000, S("w/b"), S("w/d")), "range");
    if (lr) {
        is_str(events(lr, b),
               "2.0 put w/b=b1 c2 v1 l0; "
               "4.0 del w/b [b1@2 c2 v1]; "
               "5.0 put w/c=c1 c5 v1 l0; "
               "6.1 del w/c [c1@5 c5 v1]",
               "range [w/b, w/d)");
    }

    lr = log_ok(log_run(b, 1000, S("w/c"), B("\0", 1)), "from a key");
    if (lr) {
        is_str(event_revs(lr, b), "5,6,8", "from w/c: w/c and x/other");
    }

    lr = log_ok(log_run(b, 1000, B("\0", 1), B("\0", 1)), "from \\0");
    if (lr) {
        is_int(lr->nevents, 10, "key \\0 from \\0: every key");
    }

    lr = log_ok(log_run(b + 2, 3, S(""), S("")), "a page");
    if (lr) {
        is_int(lr->through, b + 5, "max_revs 3 after b+2: through b+5");
        is_str(event_revs(lr, b), "3,4,5", "revisions b+3..b+5");
        is_int(lr->nevents, 4, "both events of b+5");
    }

    lr = log_ok(log_run(b + 2, 3, S("x/other"), S("")), "an empty page");
    if (lr) {
        ok(lr->through == b + 5 && lr->nevents == 0,
           "a page without matches still goes through its revisions");
    }

    /* paging, whatever the page size, gives the same events, never part
     * of a revision */
    for (pages = 1; pages <= 3; pages++) {
        after = b;
        paged[0] = '\0';
        whole = 1;

        while (after < cur) {
            lr = log_run(after, pages, S(""), S("")).result;
            if (lr == NULL || lr->through <= after) {
                whole = 0;
                break;
            }

            whole &= (lr->through == bl_min(after + pages, cur));

            if (lr->nevents > 0) {
                whole &= (lr->events[lr->nevents - 1].rev == lr->through);
                snprintf(paged + strlen(paged), sizeof(paged)
                         - strlen(paged), "%s%s", paged[0] ? "; " : "",
                         events(lr, b));
            }

            after = lr->through;
        }

        ok(whole && strcmp(paged, all) == 0,
           "pages of %d revisions: whole revisions, the same events", pages);
    }

    lr = log_ok(log_run(INT64_MAX / 2, 1000, S(""), S("")), "after > current");
    if (lr) {
        ok(lr->nevents == 0 && lr->through == cur && lr->current == cur,
           "after beyond the current revision: no events, through = "
           "current");
    }

    lr = log_ok(log_run(INT64_MAX - 5, 1000, S("w/a"), S("")),
                "after near INT64_MAX");
    if (lr) {
        ok(lr->nevents == 0 && lr->through == cur,
           "no overflow: no events, through = current");
    }

    lr = log_ok(log_run(cur, 1000, S(""), S("")), "after = current");
    if (lr) {
        ok(lr->nevents == 0 && lr->through == cur, "nothing new");
    }
}


/* after a compaction: COMPACTED below it, prev gone where compacted */
static void
test_log_compacted(void)
{
    res_t          r;
    int64_t        b, c;
    bl_log_res_t  *lr;

    b = current_rev();

    put("wc/k", "k1");                                    /* b+1 */
    put("wc/k", "k2");                                    /* b+2 */
    put("wc/k", "k3");                                    /* b+3 */
    put("wc/j", "j1");                                    /* b+4 */
    c = b + 2;

    r = compact_run(c, 1);
    ok(r.called == 1 && r.st == BL_ST_OK, "compacted to b+2 (physical)");

    r = log_run(c - 2, 1000, S(""), S(""));
    lr = r.result;
    ok(r.called == 1 && r.st == BL_ST_COMPACTED && lr != NULL
       && lr->compact == c && lr->nevents == 0 && lr->current == b + 4,
       "after < compact - 1: COMPACTED, with the compact revision");

    lr = log_ok(log_run(c - 1, 1000, S("wc/"), S("wc0")),
                "from the compact revision");
    if (lr) {
        /* as etcd: a watch from the compact revision is fine; what
         * compaction removed of it (k1) is no prev any more */
        is_str(events(lr, b),
               "2.0 put wc/k=k2 c1 v2 l0; "
               "3.0 put wc/k=k3 c1 v3 l0 [k2@2 c1 v2]; "
               "4.0 put wc/j=j1 c4 v1 l0",
               "the compacted prev is gone (has_prev 0), the kept one is "
               "there");
    }

    r = log_run(c - 2, 1000, S("wc/k"), S(""));
    ok(r.called == 1 && r.st == BL_ST_COMPACTED && r.result != NULL
       && ((bl_log_res_t *) r.result)->compact == c,
       "one key below the compact revision: COMPACTED too");
}


/* EXPLAIN of sql with text parameters, its lines joined by " | " */
static char *
explain(const char *sql, int n, const char *const *values)
{
    int          i;
    char        *q, *p, *end;
    PGresult    *res;
    static char  buf[8192];

    q = malloc(strlen(sql) + 16);
    sprintf(q, "EXPLAIN %s", sql);
    res = PQexecParams(admin, q, n, NULL, values, NULL, NULL, 0);
    free(q);

    buf[0] = '\0';
    p = buf;
    end = buf + sizeof(buf);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        printf("# explain failed: %s", PQerrorMessage(admin));
    }

    for (i = 0; i < PQntuples(res) && p < end - 512; i++) {
        p += snprintf(p, end - p, "%s%s", i ? " | " : "",
                      PQgetvalue(res, i, 0));
    }

    PQclear(res);
    return buf;
}


static const char *
stmt_sql(const char *name)
{
    size_t  i;

    for (i = 0; i < bl_pg_nstmts; i++) {
        if (strcmp(bl_pg_stmts[i].name, name) == 0) {
            return bl_pg_stmts[i].sql;
        }
    }

    return "";
}


/*
 * The plans: every key walks the primary key in order, one key its
 * index, neither sorts; a range is planned for its parameters (printed:
 * which way depends on the data)
 */
static void
test_log_plans(void)
{
    char        *plan, after[32], upto[32];
    int64_t      cur;
    const char  *v[4];

    admin_sql("ANALYZE ballast_log");

    /* a catch-up page: the last 1000 revisions */
    cur = current_rev();
    snprintf(after, sizeof(after), "%" PRId64, cur - 1000);
    snprintf(upto, sizeof(upto), "%" PRId64, cur);
    v[0] = after;
    v[1] = upto;
    v[2] = "w/a";
    v[3] = "w0";

    plan = explain(stmt_sql(BL_PG_STMT_LOG_ALL), 2, v);
    ok(strstr(plan, "on ballast_log_pkey") != NULL
       && strstr(plan, "ballast_log_key_rev on ballast_log e") == NULL,
       "every key: by the primary key");
    printf("# %s\n", plan);

    /* the planner's choice with this test's small log: printed */
    plan = explain(stmt_sql(BL_PG_STMT_LOG_KEY), 3, v);
    ok(strstr(plan, "ballast_log e") != NULL, "one key planned");
    printf("# one key, %s\n", plan);

    v[2] = "c/";
    v[3] = "c0";
    plan = explain(bl_pg_log_range_sql, 4, v);
    ok(strstr(plan, "ballast_log e") != NULL, "a prefix planned");
    printf("# prefix c/, %s\n", plan);

    v[2] = "w/a";
    v[3] = "w/b";
    plan = explain(bl_pg_log_range_sql, 4, v);
    ok(strstr(plan, "ballast_log e") != NULL, "a narrow range planned");
    printf("# range [w/a, w/b), %s\n", plan);
}


/* commit notifications */

typedef struct {
    int       n;
    int       zeros;
    int64_t   revs[256];
    int       nrevs;
} heard_t;

static heard_t  heard;

static void
on_commit(void *data, int64_t rev)
{
    heard_t  *h = data;

    h->n++;

    if (rev == 0) {
        h->zeros++;
        return;
    }

    if (h->nrevs < (int) bl_nelems(h->revs)) {
        h->revs[h->nrevs++] = rev;
    }
}


static int
heard_until(int64_t rev, int64_t msec)
{
    int64_t  waited;

    for (waited = 0; waited < msec; waited += 5) {
        if (heard.nrevs > 0 && heard.revs[heard.nrevs - 1] >= rev) {
            return 1;
        }
        run_for(5);
    }

    return 0;
}


static void
test_listen(void)
{
    int                   i, inorder;
    res_t                 r[20];
    char                  keys[20][16];
    int64_t               rev;
    bl_put_req_t          req;

    memset(&heard, 0, sizeof(heard));

    ok(bl_storage_listen(on_commit, &heard) == BL_OK, "listening");
    ok(run_until(&heard.zeros, 1, 5000),
       "called with 0 once connected (look for yourself)");

    rev = put_rev(put("n/a", "1"));
    ok(heard_until(rev, 2000), "a put's revision heard");

    /* a group commit: one notification, its last revision */
    heard.nrevs = 0;
    for (i = 0; i < 20; i++) {
        memset(&req, 0, sizeof(req));
        snprintf(keys[i], sizeof(keys[i]), "n/g%02d", i);
        req.key = S(keys[i]);
        req.value = S("g");
        memset(&r[i], 0, sizeof(res_t));
        bl_storage_put(pool, &req, done_handler, &r[i], NULL);
    }
    wait_answers(r, 20, 5000);
    rev = 0;
    for (i = 0; i < 20; i++) {
        rev = bl_max(rev, put_rev(r[i]));
    }
    ok(heard_until(rev, 2000), "20 puts at once: the last revision heard");
    ok(heard.nrevs <= 2, "in %d notification(s), one per batch",
       heard.nrevs);

    /* writes of another connection (another node), in commit order */
    heard.nrevs = 0;
    for (i = 0; i < 10; i++) {
        admin_sql("SELECT ballast_put('n/other', 'x', 0, 0);"
                  " SELECT pg_notify('ballast', revision::text)"
                  " FROM ballast_meta");
    }
    rev = current_rev();
    ok(heard_until(rev, 2000), "another connection's commits heard");
    inorder = (heard.nrevs == 10);
    for (i = 1; i < heard.nrevs; i++) {
        inorder &= (heard.revs[i] == heard.revs[i - 1] + 1);
    }
    ok(inorder, "each of them, in commit order (%d)", heard.nrevs);

    /* a write batch that takes no revision notifies nothing new */
    heard.nrevs = 0;
    rev = current_rev();
    del_full(S("n/absent"), S(""), 0);
    run_for(100);
    is_int(heard.nrevs, 0, "a delete of nothing: silent");
    put_full(S("n/a"), S("v"), 424242, 0, 0, 0);
    run_for(100);
    ok(heard.nrevs == 0 || (heard.nrevs == 1 && heard.revs[0] == rev),
       "a failed put: at most the unchanged revision");

    /* the listening connection dies: reconnected, told 0 */
    i = heard.zeros;
    is_int(admin_int("SELECT count(pg_terminate_backend(pid))"
                     " FROM pg_stat_activity"
                     " WHERE application_name = 'ballast listen'"), 1,
           "the listening backend terminated");
    ok(run_until(&heard.zeros, i + 1, 5000),
       "reconnected and called with 0");
    rev = put_rev(put("n/a", "after"));
    ok(heard_until(rev, 2000), "and hears commits again");
}


/* leases */

static res_t
lease_call(int what, int64_t id, int64_t arg)
{
    res_t                r;
    bl_storage_status_e  st;

    memset(&r, 0, sizeof(r));
    r.before = bl_storage_stats;

    switch (what) {
    case 'g':
        st = bl_storage_lease_grant(pool, id, arg, done_handler, &r, NULL);
        break;
    case 'r':
        st = bl_storage_lease_revoke(pool, id, done_handler, &r, NULL);
        break;
    case 'k':
        st = bl_storage_lease_keepalive(pool, id, done_handler, &r, NULL);
        break;
    case 't':
        st = bl_storage_lease_ttl(pool, id, (int) arg, done_handler, &r,
                                  NULL);
        break;
    case 'l':
        st = bl_storage_lease_list(pool, done_handler, &r, NULL);
        break;
    default:
        st = bl_storage_lease_expire(pool, arg, done_handler, &r, NULL);
    }

    if (st != BL_ST_OK) {
        r.st = st;
        r.called = -1;
        return r;
    }

    run_until(&r.called, 1, 30000);
    return r;
}


static bl_lease_res_t *
lease_ok(res_t r, const char *what)
{
    if (!ok(r.called == 1 && r.st == BL_ST_OK && r.result != NULL,
            "%s: answered", what))
    {
        printf("#   called %d status %s\n", r.called,
               bl_storage_status_text(r.st));
        return NULL;
    }

    return r.result;
}


static double
expires_in(int64_t id)
{
    char  sql[256];

    snprintf(sql, sizeof(sql), "SELECT extract(epoch FROM expires_at"
             " - now()) FROM ballast_lease WHERE id = %" PRId64, id);
    return strtod(admin_str(sql), NULL);
}


static void
lease_expire_now(int64_t id)
{
    char  sql[256];

    snprintf(sql, sizeof(sql), "UPDATE ballast_lease SET expires_at ="
             " now() - interval '1 second' WHERE id = %" PRId64, id);
    admin_sql(sql);
}


/*
 * Leases first .. first + n - 1 of ttl seconds, all posted at once, and
 * nkeys keys "<prefix>NNN/a", "<prefix>NNN/b", ... on each; 1 if all
 * went well
 */
static int
grant_many(int64_t first, int n, int64_t ttl, const char *prefix,
    int nkeys)
{
    int            i, j, good;
    char          *keys;
    res_t         *r;
    bl_put_req_t   req;

    r = calloc((size_t) n * (nkeys + 1), sizeof(res_t));
    keys = calloc((size_t) n * nkeys, 32);
    good = 1;

    for (i = 0; i < n; i++) {
        bl_storage_lease_grant(pool, first + i, ttl, done_handler, &r[i],
                               NULL);
    }
    wait_answers(r, n, 30000);

    for (i = 0; i < n; i++) {
        good &= (r[i].st == BL_ST_OK);

        for (j = 0; j < nkeys; j++) {
            memset(&req, 0, sizeof(req));
            snprintf(keys + (i * nkeys + j) * 32, 32, "%s%03d/%c", prefix,
                     i, 'a' + j);
            req.key = S(keys + (i * nkeys + j) * 32);
            req.value = S("x");
            req.lease = first + i;
            bl_storage_put(pool, &req, done_handler, &r[n + i * nkeys + j],
                           NULL);
        }
    }
    wait_answers(r + n, n * nkeys, 30000);

    for (i = 0; i < n * nkeys; i++) {
        good &= (put_rev(r[n + i]) > 0);
    }

    free(r);
    free(keys);
    return good;
}


static void
test_lease_basics(void)
{
    res_t                 r;
    int64_t               rev, id;
    bl_txn_req_t         *t;
    bl_lease_res_t       *lr;
    bl_lease_list_res_t  *ll;

    /* what earlier tests left due (lease 777) */
    lease_call('e', 0, 1000);

    rev = current_rev();

    r = lease_call('g', 0, 10);
    lr = lease_ok(r, "grant, id 0");
    if (lr) {
        ok(lr->id > 0, "the store chose a positive id (%" PRId64 ")",
           lr->id);
        ok(lr->ttl == 10 && lr->header_revision == rev,
           "ttl 10, header the current revision");
        is_int(RT(r), 1, "grant: 1 round trip");
    }
    id = lr ? lr->id : 0;
    is_int(current_rev(), rev, "a grant takes no revision");

    lr = lease_ok(lease_call('g', 7001, 5), "grant, id 7001");
    ok(lr && lr->id == 7001 && lr->ttl == 5, "the id asked for");
    r = lease_call('g', 7001, 30);
    ok(r.called == 1 && r.st == BL_ST_LEASE_EXISTS && r.result == NULL,
       "the same id again: lease exists");
    is_str(bl_storage_status_text(BL_ST_LEASE_EXISTS), "lease already exists",
           "its text");

    r = lease_call('l', 0, 0);
    ll = r.result;
    if (ok(r.called == 1 && r.st == BL_ST_OK && ll != NULL, "list")) {
        size_t  i, found = 0, sorted = 1;

        for (i = 0; i < ll->nids; i++) {
            found += (ll->ids[i] == id || ll->ids[i] == 7001);
            sorted &= (i == 0 || ll->ids[i] > ll->ids[i - 1]);
        }
        ok(found == 2 && sorted && ll->header_revision == rev,
           "both ids among %zu, in order", ll->nids);
    }

    /* TimeToLive truncates as etcd: 4 right after a grant of 5 */
    lr = lease_ok(lease_call('t', 7001, 0), "ttl");
    if (lr) {
        ok(lr->id == 7001 && lr->ttl == 5 && lr->remaining == 4,
           "granted 5, remaining 4 (truncated): %" PRId64, lr->remaining);
        ok(lr->nkeys == 0 && lr->keys == NULL, "no keys");
    }
    r = lease_call('t', 123456789, 1);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "ttl of an unknown lease: not found");

    put_full(S("l/c"), S("3"), 7001, 0, 0, 0);
    put_full(S("l/a"), S("1"), 7001, 0, 0, 0);
    put_full(S("l/b"), S("2"), 7001, 0, 0, 0);
    r = lease_call('t', 7001, 1);
    lr = lease_ok(r, "ttl with keys");
    if (lr && ok(lr->nkeys == 3, "3 keys attached")) {
        ok(lr->keys[0].len == 3 && memcmp(lr->keys[0].data, "l/a", 3) == 0
           && memcmp(lr->keys[1].data, "l/b", 3) == 0
           && memcmp(lr->keys[2].data, "l/c", 3) == 0, "in key order");
        is_int(RT(r), 1, "ttl with keys: 1 round trip");
    }

    /* keepalive */
    admin_sql("UPDATE ballast_lease SET expires_at = now()"
              " + interval '1 second' WHERE id = 7001");
    ok(expires_in(7001) < 1.5, "lease 7001 about to expire");
    r = lease_call('k', 7001, 0);
    lr = lease_ok(r, "keepalive");
    if (lr) {
        ok(lr->id == 7001 && lr->ttl == 5 && lr->header_revision
           == current_rev(), "answers the granted ttl and the revision");
        ok(expires_in(7001) > 4.5, "the deadline moved to now + 5 s");
        is_int(RT(r), 1, "keepalive: 1 round trip");
    }
    r = lease_call('k', 123456789, 0);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "keepalive of an unknown lease: not found");

    /* an expired lease not revoked yet: as etcd, not renewable, but it
     * still holds (and takes) keys until the expiry revokes it */
    lease_expire_now(id);
    r = lease_call('k', id, 0);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "keepalive of an expired lease: not found");
    ok(expires_in(id) < 0, "and not renewed");
    lr = lease_ok(lease_call('t', id, 0), "ttl of an expired lease");
    if (lr) {
        ok(lr->remaining <= 0 && lr->remaining >= -1,
           "remaining %" PRId64 " (etcd's truncation of a negative time)",
           lr->remaining);
    }
    r = put_full(S("l/late"), S("x"), id, 0, 0, 0);
    ok(put_rev(r) > 0, "put with an expired, unrevoked lease: attached");
    t = txn_new();
    op_put(t, 0, "l/late2", "y")->lease = id;
    ok(txn_ok(txn_run(t), "txn put with it") != NULL,
       "a txn put with it too");

    /* revoke */
    rev = current_rev();
    r = lease_call('r', 7001, 0);
    lr = lease_ok(r, "revoke");
    if (lr) {
        is_int(lr->header_revision, rev + 1, "header: the new revision");
        is_str(log_at(rev + 1), "0:l/a:del,1:l/b:del,2:l/c:del",
               "its keys deleted in one revision, in key order");
        is_int(RT(r), 1, "revoke: 1 round trip");
    }
    r = lease_call('r', 7001, 0);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "revoke it again: not found");
    r = put_full(S("l/a"), S("1"), 7001, 0, 0, 0);
    ok(r.called == 1 && r.st == BL_ST_LEASE_NOT_FOUND,
       "put with the revoked lease: not found");

    lr = lease_ok(lease_call('g', 7002, 60), "grant 7002");
    rev = current_rev();
    lr = lease_ok(lease_call('r', 7002, 0), "revoke a lease without keys");
    ok(lr && lr->header_revision == rev && current_rev() == rev,
       "no key: no revision, header the current one");

    /* the expired lease goes with its expiry, and its late key */
    rev = current_rev();
    lr = lease_ok(lease_call('e', 0, 100), "expire");
    if (lr) {
        bl_lease_expire_res_t  *er = (bl_lease_expire_res_t *) lr;
        ok(er->revoked >= 1 && !er->more, "the expired lease revoked");
    }
    is_str(log_at(rev + 1), "0:l/late:del,1:l/late2:del", "with its keys");
    r = lease_call('t', id, 0);
    ok(r.st == BL_ST_LEASE_NOT_FOUND, "and it is gone");
}


/* keepalives posted together share one statement; one of them cancelled
 * in flight takes the others with it no more */
#define NKA_GROUP  50

static void
test_keepalive_group(void)
{
    int                   i, n, good, never;
    res_t                 r[NKA_GROUP];
    bl_storage_op_t      *ops[NKA_GROUP];
    bl_storage_stats_t    before;

    ok(grant_many(7100000, 10, 30, "", 0), "10 leases");

    memset(r, 0, sizeof(r));
    before = bl_storage_stats;

    for (i = 0; i < NKA_GROUP; i++) {
        /* every fifth one unknown */
        bl_storage_lease_keepalive(pool, (i % 5 == 4) ? 7199999
                                                      : 7100000 + i % 10,
                                   done_handler, &r[i], &ops[i]);
    }

    /* sent now (the dispatch the loop would run), not answered before
     * the loop runs: cancel the first, whose statement carries the group,
     * and another one, both in flight */
    bl_pg_dispatch_handler(bl_loop, &bl_pg.dispatch, 0);
    ok(ops[0]->batch != NULL && ops[7]->batch != NULL && ops[7]->merged,
       "in flight, merged into the first one's statement");
    bl_storage_cancel(ops[0]);
    bl_storage_cancel(ops[7]);

    never = 0;
    for (n = 0; n < 400; n++) {
        good = 0;
        for (i = 0; i < NKA_GROUP; i++) {
            good += (r[i].called != 0);
        }
        if (good == NKA_GROUP - 2) {
            break;
        }
        run_for(5);
    }
    run_for(20);
    never = (r[0].called == 0 && r[7].called == 0);

    good = 0;
    for (i = 1; i < NKA_GROUP; i++) {
        if (i == 7) {
            continue;
        }
        if (i % 5 == 4) {
            good += (r[i].called == 1 && r[i].st == BL_ST_LEASE_NOT_FOUND);
        } else {
            good += (r[i].called == 1 && r[i].st == BL_ST_OK
                     && ((bl_lease_res_t *) r[i].result)->id
                        == 7100000 + i % 10
                     && ((bl_lease_res_t *) r[i].result)->ttl == 30);
        }
    }
    is_int(good, NKA_GROUP - 2, "%d keepalives answered, the unknown ones "
           "not found", NKA_GROUP - 2);
    ok(never, "the cancelled ones never");
    is_int(bl_storage_stats.round_trips - before.round_trips, 1,
           "%d keepalives: 1 round trip", NKA_GROUP);
    is_int(bl_storage_stats.statements - before.statements, 1,
           "and 1 statement");
}


#define NBIG  1000

static void
test_lease_revoke_big(void)
{
    int             i, n;
    res_t          *r, rv;
    char           *keys, sql[256];
    int64_t         rev, id;
    bl_put_req_t    req;
    bl_log_res_t   *lr;
    bl_lease_res_t *gr;

    gr = lease_ok(lease_call('g', 0, 60), "grant for 1000 keys");
    id = gr ? gr->id : 0;

    r = calloc(NBIG, sizeof(res_t));
    keys = calloc(NBIG, 16);

    for (i = 0; i < NBIG; i++) {
        memset(&req, 0, sizeof(req));
        /* posted out of key order */
        snprintf(keys + i * 16, 16, "lb/%04d", (i * 7919) % NBIG);
        req.key = S(keys + i * 16);
        req.value = S("v");
        req.lease = id;
        bl_storage_put(pool, &req, done_handler, &r[i], NULL);
    }
    wait_answers(r, NBIG, 30000);
    n = 0;
    for (i = 0; i < NBIG; i++) {
        n += (put_rev(r[i]) > 0);
    }
    is_int(n, NBIG, "1000 keys attached");

    rev = current_rev();
    rv = lease_call('r', id, 0);
    ok(rv.called == 1 && rv.st == BL_ST_OK
       && ((bl_lease_res_t *) rv.result)->header_revision == rev + 1,
       "revoked in one revision");
    is_int(RT(rv), 1, "in 1 round trip");
    is_int(admin_int("SELECT count(*) FROM ballast_kv WHERE key >= 'lb/'"
                     " AND key < 'lb0'"), 0, "the 1000 keys are gone");
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM ballast_log"
             " WHERE rev = %" PRId64 " AND kind = 1", rev + 1);
    is_int(admin_int(sql), NBIG, "1000 tombstones");

    lr = log_ok(log_run(rev, 1000, S("lb/"), S("lb0")), "log of the revoke");
    if (lr && ok(lr->nevents == NBIG, "1000 DELETE events")) {
        n = 0;
        for (i = 0; i < NBIG; i++) {
            snprintf(sql, sizeof(sql), "lb/%04d", i);
            n += (lr->events[i].rev == rev + 1 && lr->events[i].sub == i
                  && lr->events[i].deleted && lr->events[i].has_prev
                  && lr->events[i].kv.key.len == 7
                  && memcmp(lr->events[i].kv.key.data, sql, 7) == 0);
        }
        is_int(n, NBIG, "one revision, subs 0..999 in key order, each with "
               "its prev");
    }

    free(r);
    free(keys);
}


/* expiry: only due leases, each in its own revision, at most max */
static void
test_lease_expire(void)
{
    int                     i;
    res_t                   r;
    char                    key[32];
    int64_t                 rev, ids[3];
    bl_lease_expire_res_t  *er;

    for (i = 0; i < 3; i++) {
        ids[i] = ((bl_lease_res_t *) lease_call('g', 0, 100).result)->id;
        snprintf(key, sizeof(key), "le/%d", i);
        put_full(S(key), S("x"), ids[i], 0, 0, 0);
    }

    r = lease_call('e', 0, 10);
    er = r.result;
    ok(r.called == 1 && r.st == BL_ST_OK && er && er->revoked == 0
       && !er->more, "nothing due: nothing revoked");

    lease_expire_now(ids[0]);
    lease_expire_now(ids[1]);
    rev = current_rev();

    r = lease_call('e', 0, 1);
    er = r.result;
    ok(er && er->revoked == 1 && er->more, "max 1: one revoked, more due");
    is_int(RT(r), 1, "expire: 1 round trip");
    r = lease_call('e', 0, 10);
    er = r.result;
    ok(er && er->revoked == 1 && !er->more, "then the other, no more");
    is_int(current_rev(), rev + 2, "two leases with keys: two revisions");
    ok(strstr(log_at(rev + 1), ":del") && strstr(log_at(rev + 2), ":del"),
       "each its own revision");
    is_int(admin_int("SELECT count(*) FROM ballast_kv WHERE key >= 'le/'"
                     " AND key < 'le0'"), 1, "the key of the live lease "
                     "stays");
    ok(lease_call('t', ids[2], 0).st == BL_ST_OK, "the live lease stays");
    lease_call('r', ids[2], 0);
}


/* several nodes expire at once: each lease revoked once */
#define NRACE    200
#define NRACERS  3

static void
test_lease_expire_race(void)
{
    int          i, j, busy[NRACERS], left, revoked, calls;
    char         sql[256];
    res_t        r;
    int64_t      rev;
    PGconn      *pc[NRACERS];
    PGresult    *res;

    ok(grant_many(8000000, NRACE, 100, "lr/", 2),
       "%d leases with 2 keys each", NRACE);
    admin_sql("UPDATE ballast_lease SET expires_at = now()"
              " - interval '1 second' WHERE id >= 8000000 AND id < 8001000");
    rev = current_rev();

    /* NRACERS other "nodes" and this one, 20 leases a call each */
    for (i = 0; i < NRACERS; i++) {
        pc[i] = PQconnectdb(dsn);
        busy[i] = 0;
    }

    revoked = 0;
    calls = 0;
    left = NRACERS;
    memset(&r, 0, sizeof(r));
    r.called = 1;
    r.st = BL_ST_OK;
    r.result = NULL;
    j = 1;   /* this node still expiring */

    while (left > 0 || j) {
        for (i = 0; i < NRACERS; i++) {
            if (pc[i] == NULL) {
                continue;
            }
            if (!busy[i]) {
                PQsendQuery(pc[i], "SELECT revoked FROM"
                                   " ballast_lease_expire(20)");
                busy[i] = 1;
                continue;
            }
            PQconsumeInput(pc[i]);
            if (PQisBusy(pc[i])) {
                continue;
            }
            while ((res = PQgetResult(pc[i])) != NULL) {
                if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                    int n = atoi(PQgetvalue(res, 0, 0));
                    revoked += n;
                    calls++;
                    if (n == 0) {
                        PQfinish(pc[i]);
                        pc[i] = NULL;
                        left--;
                    }
                } else {
                    printf("# racer: %s", PQerrorMessage(pc[i]));
                }
                PQclear(res);
            }
            busy[i] = 0;
        }

        if (j && r.called) {
            if (r.result != NULL) {
                int64_t n = ((bl_lease_expire_res_t *) r.result)->revoked;
                revoked += (int) n;
                calls++;
                j = (n > 0);
            }
            if (j) {
                memset(&r, 0, sizeof(r));
                if (bl_storage_lease_expire(pool, 20, done_handler, &r,
                                            NULL)
                    != BL_ST_OK)
                {
                    j = 0;
                }
            }
        }

        run_for(1);
    }

    is_int(revoked, NRACE, "%d leases expired by %d nodes at once, in %d "
           "calls: each once", NRACE, NRACERS + 1, calls);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM ballast_log WHERE rev"
             " > %" PRId64 " AND kind = 1 AND key >= 'lr/' AND key < 'lr0'",
             rev);
    is_int(admin_int(sql), 2 * NRACE, "each key deleted once");
    snprintf(sql, sizeof(sql), "SELECT count(DISTINCT rev) FROM ballast_log"
             " WHERE rev > %" PRId64 " AND key >= 'lr/' AND key < 'lr0'",
             rev);
    is_int(admin_int(sql), NRACE, "each lease in a revision of its own");
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT rev FROM"
             " ballast_log WHERE rev > %" PRId64 " GROUP BY rev"
             " HAVING count(*) = 2"
             " AND count(DISTINCT substr(key, 1, 7)) = 1) x", rev);
    is_int(admin_int(sql), NRACE, "both keys of a lease in its revision");
    is_int(current_rev(), rev + NRACE, "revisions still gap-free");
}


/* an op's answer, without run_for's 5 ms steps: for timings */
static void
wait_called(res_t *r)
{
    while (r->called == 0) {
        ev_run(bl_loop, EVRUN_ONCE);
    }
}


/* figures: keepalives per second with many outstanding, and the cost of
 * expiry */
#define NKA_LEASES   1000
#define NKA_TOTAL    100000
#define NKA_OUT      5000

static int  ka_done, ka_ok;

static void
ka_handler(void *data, bl_storage_status_e st, void *result)
{
    BL_UNUSED(data);
    BL_UNUSED(result);

    ka_done++;
    ka_ok += (st == BL_ST_OK);
}


static void
test_lease_figures(void)
{
    int                 i, sent, n, out;
    res_t               r;
    double              t0, ms;
    bl_storage_stats_t  before;

    ok(grant_many(9000000, NKA_LEASES, 60, "", 0), "%d leases granted",
       NKA_LEASES);

    /* outstanding: as a node with some clients, and with many */
    for (out = 100; out <= NKA_OUT; out *= 50) {
        ka_done = 0;
        ka_ok = 0;
        sent = 0;
        before = bl_storage_stats;
        ev_now_update(bl_loop);
        t0 = ev_time();

        while (ka_done < NKA_TOTAL) {
            while (sent < NKA_TOTAL && sent - ka_done < out) {
                if (bl_storage_lease_keepalive(pool,
                                               9000000 + sent % NKA_LEASES,
                                               ka_handler, NULL, NULL)
                    != BL_ST_OK)
                {
                    break;
                }
                sent++;
            }
            ev_run(bl_loop, EVRUN_ONCE);
        }

        ev_now_update(bl_loop);
        ms = (ev_time() - t0) * 1000.0;
        is_int(ka_ok, NKA_TOTAL, "%d keepalives answered", NKA_TOTAL);
        printf("# keepalives: %d in %.0f ms = %.0f/s, %d outstanding, "
               "%" PRIu64 " round trips, %" PRIu64 " statements\n",
               NKA_TOTAL, ms, NKA_TOTAL / ms * 1000.0, out,
               bl_storage_stats.round_trips - before.round_trips,
               bl_storage_stats.statements - before.statements);
        ok(bl_storage_stats.statements - before.statements
           < NKA_TOTAL / 10, "keepalives share statements");
    }

    /* expiry: nothing due (the usual call), then 1000 due, 100 of them
     * with a key */
    n = 100;
    ev_now_update(bl_loop);
    t0 = ev_time();
    for (i = 0; i < n; i++) {
        memset(&r, 0, sizeof(r));
        bl_storage_lease_expire(pool, 1000, done_handler, &r, NULL);
        wait_called(&r);
    }
    ev_now_update(bl_loop);
    printf("# expire with nothing due: %.3f ms a call (round trip "
           "included)\n", (ev_time() - t0) * 1000.0 / n);

    {
        res_t         pr[NKA_LEASES / 10];
        char          keys[NKA_LEASES / 10][16];
        bl_put_req_t  req;

        memset(pr, 0, sizeof(pr));

        for (i = 0; i < NKA_LEASES / 10; i++) {
            memset(&req, 0, sizeof(req));
            snprintf(keys[i], sizeof(keys[i]), "lf/%04d", i);
            req.key = S(keys[i]);
            req.value = S("x");
            req.lease = 9000000 + i * 10;
            bl_storage_put(pool, &req, done_handler, &pr[i], NULL);
        }
        wait_answers(pr, NKA_LEASES / 10, 30000);
    }
    admin_sql("UPDATE ballast_lease SET expires_at = now()"
              " - interval '1 second' WHERE id >= 9000000"
              " AND id < 9001000");
    ev_now_update(bl_loop);
    t0 = ev_time();
    memset(&r, 0, sizeof(r));
    bl_storage_lease_expire(pool, 1000, done_handler, &r, NULL);
    wait_called(&r);
    ev_now_update(bl_loop);
    ms = (ev_time() - t0) * 1000.0;
    ok(r.st == BL_ST_OK
       && ((bl_lease_expire_res_t *) r.result)->revoked == NKA_LEASES,
       "1000 due leases expired in one call");
    printf("# expire of %d due leases (%d with a key): %.1f ms, %.3f ms a "
           "lease\n", NKA_LEASES, NKA_LEASES / 10, ms, ms / NKA_LEASES);
}


/* figures: puts per second with many outstanding (the NOTIFY's cost is
 * the difference with and without it) */
#define NRATE      20000
#define NRATE_OUT  1000

static int  rate_done, rate_ok;

static void
rate_handler(void *data, bl_storage_status_e st, void *result)
{
    BL_UNUSED(data);
    BL_UNUSED(result);

    rate_done++;
    rate_ok += (st == BL_ST_OK);
}


static void
test_put_rate(void)
{
    int                 sent;
    char                key[NRATE_OUT][16];
    double              t0, ms;
    bl_put_req_t        req;
    bl_storage_stats_t  before;

    rate_done = 0;
    rate_ok = 0;
    sent = 0;
    before = bl_storage_stats;
    ev_now_update(bl_loop);
    t0 = ev_time();

    while (rate_done < NRATE) {
        while (sent < NRATE && sent - rate_done < NRATE_OUT) {
            memset(&req, 0, sizeof(req));
            snprintf(key[sent % NRATE_OUT], 16, "pr/%04d",
                     sent % NRATE_OUT);
            req.key = S(key[sent % NRATE_OUT]);
            req.value = S("0123456789abcdef0123456789abcdef");
            if (bl_storage_put(pool, &req, rate_handler, NULL, NULL)
                != BL_ST_OK)
            {
                break;
            }
            sent++;
        }
        ev_run(bl_loop, EVRUN_ONCE);
    }

    ev_now_update(bl_loop);
    ms = (ev_time() - t0) * 1000.0;
    is_int(rate_ok, NRATE, "%d puts", NRATE);
    printf("# puts: %d in %.0f ms = %.0f/s, %d outstanding, %" PRIu64
           " write batches\n", NRATE, ms, NRATE / ms * 1000.0, NRATE_OUT,
           bl_storage_stats.write_batches - before.write_batches);
}


int
main(void)
{
    dsn = getenv("BALLAST_TEST_DSN");
    if (dsn == NULL) {
        printf("1..0 # SKIP BALLAST_TEST_DSN not set\n");
        return 0;
    }

    bl_loop = ev_default_loop(EVFLAG_AUTO);
    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);

    admin = PQconnectdb(dsn);
    if (PQstatus(admin) != CONNECTION_OK) {
        printf("Bail out! %s", PQerrorMessage(admin));
        return 1;
    }

    start_pool(5000);
    if (!ok(wait_available(10000), "pool up, schema created")) {
        return tap_done();
    }

    test_basics();
    test_ranges();
    test_delete();
    test_txn_compares();
    test_txn_ops();
    test_txn_failures();
    test_round_trips();
    test_cas();
    test_compact();
    test_compact_big();
    test_compact_resume();
    test_log_read();
    test_log_compacted();
    test_log_plans();
    test_listen();
    test_lease_basics();
    test_keepalive_group();
    test_lease_revoke_big();
    test_lease_expire();
    test_lease_expire_race();
    test_lease_figures();
    test_put_rate();
    test_delete_all();
    test_group_commit();
    test_batch_failure();
    test_cancel();
    test_queue_bound();
    test_timeout();
    test_newer_schema();
    test_outage();

    bl_pg_done();
    bl_pool_destroy(pool);

    return tap_done();
}
