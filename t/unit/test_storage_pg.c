/*
 * The storage layer against a real PostgreSQL (BALLAST_TEST_DSN, a fresh
 * database): put and range semantics, group commit, cancellation, the
 * queue bound, a stuck request, and a database outage.  Run by
 * t/31-storage-pg.t, which starts PostgreSQL and, when this program prints
 * "# ctl: stop" or "# ctl: start", does so and answers a line on stdin.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_pg.h>

#include "tap.h"


typedef struct {
    int                   called;
    bl_storage_status_e   st;
    void                 *result;
} res_t;


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
    admin_sql("UPDATE ballast_meta SET compact_revision = 0");

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
