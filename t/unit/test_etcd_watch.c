/*
 * The etcd Watch service (src/etcd/bl_etcd_watch.c, included) between a
 * fake transport and a fake watch layer: what it answers to each request,
 * how it turns deliveries into responses (revision batches, filters,
 * prev_kv, fragments, headers), progress, pausing a slow stream and
 * resuming it, and the ways a stream ends.  The real thing against etcd
 * is t/40-45.
 */
#include <bl_etcd_watch.c>

#include "tap.h"

/* ---------------------------------------------------------- fakes */

static bl_etcd_conf_t  conf = {
    .max_request_bytes = 1536 * 1024,
    .max_txn_ops = 128,
    .progress_interval = 1000,
    .watch_send_buffer = 64 * 1024,
};

bl_etcd_conf_t *
bl_etcd_conf(void)
{
    return &conf;
}

Etcdserverpb__ResponseHeader *
bl_etcd_header(bl_pool_t *pool, int64_t revision)
{
    Etcdserverpb__ResponseHeader  *h;

    h = bl_palloc(pool, sizeof(*h));
    if (h) {
        etcdserverpb__response_header__init(h);
        h->cluster_id = 11;
        h->member_id = 22;
        h->raft_term = 1;
        h->revision = revision;
    }
    return h;
}

#define MAX_SENT  4096

static bl_wresp_pb_t  *sent[MAX_SENT];
static size_t          nsent;
static size_t          sent_bytes[MAX_SENT];
static size_t          pending;
static int             finished = -1;
static char            finish_msg[256];

bl_int_t
bl_grpc_send(bl_grpc_call_t *call, const ProtobufCMessage *msg)
{
    size_t   n;
    uint8_t *buf;

    (void) call;
    n = protobuf_c_message_get_packed_size(msg);
    buf = malloc(n + 1);
    protobuf_c_message_pack(msg, buf);
    if (nsent < MAX_SENT) {
        sent_bytes[nsent] = n;
        sent[nsent++] = etcdserverpb__watch_response__unpack(NULL, n, buf);
    }
    free(buf);
    return BL_OK;
}

/* a response the service packed itself must decode as protobuf-c's */
bl_int_t
bl_grpc_send_parts(bl_grpc_call_t *call, const bl_str_t *parts,
    size_t nparts)
{
    size_t   n, i;
    uint8_t *buf, *p;

    (void) call;
    for (n = 0, i = 0; i < nparts; i++) {
        n += parts[i].len;
    }
    buf = malloc(n + 1);
    for (p = buf, i = 0; i < nparts; i++) {
        memcpy(p, parts[i].data, parts[i].len);
        p += parts[i].len;
    }
    if (nsent < MAX_SENT) {
        sent_bytes[nsent] = n;
        sent[nsent] = etcdserverpb__watch_response__unpack(NULL, n, buf);
        if (sent[nsent] != NULL) {
            /* and byte for byte what protobuf-c packs */
            size_t   m = etcdserverpb__watch_response__get_packed_size(
                             sent[nsent]);
            uint8_t *re = malloc(m + 1);
            etcdserverpb__watch_response__pack(sent[nsent], re);
            if (m != n || memcmp(re, buf, n) != 0) {
                etcdserverpb__watch_response__free_unpacked(sent[nsent],
                                                            NULL);
                sent[nsent] = NULL;
            }
            free(re);
        }
        nsent++;
    }
    free(buf);
    return BL_OK;
}

size_t
bl_grpc_pending(bl_grpc_call_t *call)
{
    (void) call;
    return pending;
}

void
bl_grpc_finish(bl_grpc_call_t *call, int status, const char *message)
{
    (void) call;
    finished = status;
    snprintf(finish_msg, sizeof(finish_msg), "%s", message ? message : "");
}

void
bl_etcd_fail_storage(bl_grpc_call_t *call, bl_storage_status_e st)
{
    bl_grpc_finish(call, st == BL_ST_UNAVAILABLE ? BL_GRPC_UNAVAILABLE
                                                 : BL_GRPC_INTERNAL, "storage");
}

struct bl_watch_s {
    bl_str_t              key;
    bl_str_t              end;
    int64_t               start;
    bl_watch_deliver_pt   deliver;
    bl_watch_fail_pt      fail;
    void                 *data;
    int                   paused;
    int                   removed;
    int                   synced;
};

#define MAX_SUBS  64

static struct bl_watch_s  subs[MAX_SUBS];
static size_t             nsubs;
static int64_t            store_rev = 1;
static int64_t            compact_rev;

bl_watch_t *
bl_watch_add(const bl_str_t *key, const bl_str_t *range_end,
    int64_t start_rev, bl_watch_deliver_pt deliver, bl_watch_fail_pt fail,
    void *data)
{
    bl_watch_t  *w = &subs[nsubs++];

    w->key = *key;
    w->end = *range_end;
    w->start = start_rev;
    w->deliver = deliver;
    w->fail = fail;
    w->data = data;
    w->synced = 1;
    return w;
}

void
bl_watch_remove(bl_watch_t *w)
{
    w->removed = 1;
}

void
bl_watch_pause(bl_watch_t *w)
{
    w->paused = 1;
}

void
bl_watch_resume(bl_watch_t *w)
{
    w->paused = 0;
}

int64_t
bl_watch_revision(void)
{
    return store_rev;
}

int64_t
bl_watch_compact_revision(void)
{
    return compact_rev;
}

int
bl_watch_synced(bl_watch_t *w)
{
    return w->synced;
}

int64_t
bl_watch_through(bl_watch_t *w)
{
    (void) w;
    return store_rev;
}

/* ---------------------------------------------------------- helpers */

static bl_grpc_call_t  *call;
/* every call stays reachable: the service may keep timers in its pool */
static bl_grpc_call_t  *calls[64];
static size_t           ncalls;

static void
free_sent(void)
{
    size_t  i;

    for (i = 0; i < nsent; i++) {
        etcdserverpb__watch_response__free_unpacked(sent[i], NULL);
    }
    nsent = 0;
}

static void
new_call(void)
{
    free_sent();
    call = calloc(1, sizeof(bl_grpc_call_t));
    if (ncalls < sizeof(calls) / sizeof(calls[0])) {
        calls[ncalls++] = call;
    }
    call->pool = bl_pool_create(4096);
    call->peer = &(bl_str_t) bl_string("test");
    nsubs = 0;
    memset(subs, 0, sizeof(subs));
    free_sent();
    finished = -1;
    pending = 0;
}

static void
request(const Etcdserverpb__WatchRequest *req)
{
    size_t   n;
    uint8_t  buf[65536];

    n = etcdserverpb__watch_request__pack(req, buf);
    bl_etcd_watch_message(call, buf, n);
}

static void
create(const char *key, const char *end, int64_t start, int64_t id,
    int prev_kv, int fragment, int filter)
{
    Etcdserverpb__WatchRequest        r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest  c =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    Etcdserverpb__WatchCreateRequest__FilterType  f = filter;

    c.key.data = (uint8_t *) key;
    c.key.len = strlen(key);
    c.range_end.data = (uint8_t *) end;
    c.range_end.len = end ? (end[0] ? strlen(end) : 1) : 0;
    c.start_revision = start;
    c.watch_id = id;
    c.prev_kv = prev_kv;
    c.fragment = fragment;
    if (filter >= 0) {
        c.filters = &f;
        c.n_filters = 1;
    }
    r.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    r.create_request = &c;
    request(&r);
}

static void
cancel(int64_t id)
{
    Etcdserverpb__WatchRequest        r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchCancelRequest  c =
        ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;

    c.watch_id = id;
    r.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
    r.cancel_request = &c;
    request(&r);
}

static void
progress(void)
{
    Etcdserverpb__WatchRequest          r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    Etcdserverpb__WatchProgressRequest  p =
        ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;

    r.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    r.progress_request = &p;
    request(&r);
}

static bl_watch_event_t  evbuf[3000];
static u_char            big[700 * 1024];

static bl_watch_event_t *
ev(size_t i, int type, const char *key, int64_t rev, int has_prev)
{
    bl_watch_event_t  *e = &evbuf[i];

    memset(e, 0, sizeof(*e));
    e->type = type;
    e->kv.key.data = (u_char *) key;
    e->kv.key.len = strlen(key);
    e->kv.mod_revision = rev;
    if (type == BL_WATCH_PUT) {
        e->kv.create_revision = has_prev ? 2 : rev;
        e->kv.version = has_prev ? 2 : 1;
        e->kv.value.data = (u_char *) "new";
        e->kv.value.len = 3;
        e->kv.lease = 5;
    } else {
        /* the layer may hand more than the key: only that is sent */
        e->kv.version = 9;
        e->kv.value.data = (u_char *) "junk";
        e->kv.value.len = 4;
    }
    if (has_prev) {
        e->has_prev = 1;
        e->prev.key = e->kv.key;
        e->prev.value.data = (u_char *) "old";
        e->prev.value.len = 3;
        e->prev.create_revision = 2;
        e->prev.mod_revision = 2;
        e->prev.version = 1;
    }
    return e;
}

static void
run_loop(void)
{
    ev_run(bl_loop, EVRUN_NOWAIT);
}

static bl_wresp_pb_t *
last(void)
{
    return nsent ? sent[nsent - 1] : NULL;
}

/* ---------------------------------------------------------- tests */

static void
test_create(void)
{
    bl_wresp_pb_t  *r;

    new_call();
    store_rev = 10;

    create("a", NULL, 0, 0, 0, 0, -1);
    r = last();
    ok(nsent == 1 && r->created && !r->canceled && r->watch_id == 0
       && r->header->revision == 10 && r->header->member_id == 22,
       "create: created, id 0, header = bl_watch_revision()");
    ok(nsubs == 1 && subs[0].start == 0 && subs[0].key.len == 1
       && subs[0].end.len == 0, "create: start 0 (from now) to the layer");

    create("", "", 0, 0, 0, 0, -1);
    ok(nsubs == 2 && subs[1].key.len == 1 && subs[1].key.data[0] == 0
       && subs[1].end.len == 1 && subs[1].end.data[0] == 0,
       "empty key becomes \\0, range_end \\0 kept (from key)");
    is_int(last()->watch_id, 1, "next auto id 1");

    create("a", NULL, 0, 7, 0, 0, -1);
    is_int(last()->watch_id, 7, "client id 7");
    create("a", NULL, 0, 7, 0, 0, -1);
    r = last();
    ok(r->created && r->canceled && r->watch_id == -1
       && strcmp(r->cancel_reason,
                 "mvcc: duplicate watch ID provided on the WatchStream") == 0,
       "duplicate id: created+canceled -1");
    is_int(nsubs, 3, "duplicate id: no subscription");

    create("z", "a", 0, 0, 0, 0, -1);
    r = last();
    ok(r->created && r->canceled && r->watch_id == -1
       && strcmp(r->cancel_reason, "mvcc: watcher range is empty") == 0,
       "range_end < key: range is empty");
    create("z", "z", 0, 0, 0, 0, -1);
    ok(last()->canceled, "range_end == key: range is empty");
    create("a", "b", 0, 3, 0, 0, -1);
    create("a", NULL, 0, 0, 0, 0, -1);
    is_int(last()->watch_id, 2, "auto id: 2");
    create("a", NULL, 0, 0, 0, 0, -1);
    is_int(last()->watch_id, 4, "auto id skips 3 (taken)");

    create("a", NULL, 15, 0, 0, 0, -1);
    ok(subs[nsubs - 1].start == 15, "future start passed on");

    /* negative starts, never compacted: below -1 compacted, -1 now */
    compact_rev = 0;
    free_sent();
    create("n", NULL, -5, 0, 0, 0, -1);
    ok(nsent == 2 && sent[0]->created && sent[1]->canceled
       && sent[1]->compact_revision == -1 && sent[1]->header->revision == 0,
       "start -5: created, canceled with compact_revision -1, header 0");
    create("n", NULL, -1, 0, 0, 0, -1);
    ok(subs[nsubs - 1].start == 0, "start -1: from now");
    compact_rev = 8;
    create("n", NULL, -1, 0, 0, 0, -1);
    is_int(last()->compact_revision, 8, "start -1 after a compaction: "
           "compacted at it");
    compact_rev = 0;

    bl_etcd_watch_cancel_call(call);
    ok(call->data == NULL && subs[0].removed && subs[nsubs - 1].removed,
       "on_cancel removes every subscription");
}

static void
test_cancel(void)
{
    bl_wresp_pb_t  *r;

    new_call();
    store_rev = 20;
    create("a", NULL, 0, 0, 0, 0, -1);
    create("b", NULL, 0, 0, 0, 0, -1);
    free_sent();
    cancel(0);
    r = last();
    ok(nsent == 1 && r->canceled && !r->created && r->watch_id == 0
       && r->header->revision == 20, "cancel: canceled, header current");
    ok(subs[0].removed && !subs[1].removed, "cancel: that subscription only");
    cancel(0);
    cancel(99);
    is_int(nsent, 1, "cancel of an unknown id: no answer");
    create("c", NULL, 0, 0, 0, 0, -1);
    is_int(last()->watch_id, 2, "auto ids go on counting (etcd's nextID)");
    create("c", NULL, 0, 5, 0, 0, -1);
    cancel(5);
    create("c", NULL, 0, 5, 0, 0, -1);
    is_int(last()->watch_id, 5, "a cancelled id is free again");

    /* compaction: the id stays taken until cancelled */
    subs[1].fail(subs[1].data, BL_ST_COMPACTED, 17);
    r = last();
    ok(r->canceled && r->watch_id == 1 && r->compact_revision == 17
       && r->header->revision == 0 && r->n_events == 0,
       "compacted: canceled, compact_revision, header revision 0");
    create("c", NULL, 0, 1, 0, 0, -1);
    ok(last()->watch_id == -1, "a compacted watch's id is still taken");
    free_sent();
    cancel(1);
    ok(nsent == 1 && last()->canceled && last()->watch_id == 1,
       "and its cancel is answered");
    bl_etcd_watch_cancel_call(call);
}

static void
test_events(void)
{
    bl_wresp_pb_t  *r;
    size_t          i;
    int64_t         rev;
    Mvccpb__Event  *e;

    new_call();
    store_rev = 30;
    create("k", NULL, 0, 0, 1, 0, -1);          /* 0: prev_kv */
    create("k", NULL, 0, 0, 0, 0, 0);           /* 1: NOPUT */
    create("k", NULL, 0, 0, 0, 0, 1);           /* 2: NODELETE */
    free_sent();

    ev(0, BL_WATCH_PUT, "k", 31, 1);
    ev(1, BL_WATCH_DELETE, "k", 32, 1);
    ev(2, BL_WATCH_PUT, "k", 32, 0);
    subs[0].deliver(subs[0].data, evbuf, 3, 32);
    r = last();
    ok(nsent == 1 && r->n_events == 3 && r->watch_id == 0
       && r->header->revision == 32, "two revisions, one response, "
       "header = through");
    e = r->events[0];
    ok(e->type == MVCCPB__EVENT__EVENT_TYPE__PUT && e->kv->version == 2
       && e->kv->lease == 5 && e->kv->value.len == 3 && e->prev_kv
       && e->prev_kv->version == 1, "PUT: full kv and prev_kv");
    e = r->events[1];
    ok(e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE && e->kv->key.len == 1
       && e->kv->mod_revision == 32 && e->kv->version == 0
       && e->kv->value.len == 0 && e->kv->create_revision == 0
       && e->prev_kv, "DELETE: key and mod_revision only, prev_kv");
    ok(r->events[2]->prev_kv == NULL, "creation: no prev_kv");

    subs[1].deliver(subs[1].data, evbuf, 3, 32);
    r = last();
    ok(nsent == 2 && r->n_events == 1 && r->watch_id == 1
       && r->events[0]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE
       && r->events[0]->prev_kv == NULL, "NOPUT keeps the delete, "
       "no prev_kv unasked");
    subs[2].deliver(subs[2].data, evbuf, 2, 32);
    r = last();
    ok(nsent == 3 && r->n_events == 1 && r->watch_id == 2, "NODELETE");
    subs[1].deliver(subs[1].data, evbuf, 1, 31);
    is_int(nsent, 3, "every event filtered: nothing sent");

    /* the header never goes below what the worker has seen */
    store_rev = 40;
    subs[0].deliver(subs[0].data, evbuf, 1, 35);
    is_int(last()->header->revision, 40, "catch-up header: the store's "
           "revision");

    /* 2500 revisions in one delivery: 1000, 1000, 500 */
    free_sent();
    for (i = 0, rev = 100; i < 3000; i++) {
        ev(i, BL_WATCH_PUT, "k", rev, 0);
        if (i % 6 != 5) {       /* some revisions have two events */
            rev++;
        }
    }
    subs[0].deliver(subs[0].data, evbuf, 3000, rev);
    ok(nsent == 3 && sent[0]->events[0]->kv->mod_revision == 100
       && sent[0]->events[sent[0]->n_events - 1]->kv->mod_revision == 1099
       && sent[1]->events[0]->kv->mod_revision == 1100
       && sent[2]->events[sent[2]->n_events - 1]->kv->mod_revision
          == evbuf[2999].kv.mod_revision,
       "at most 1000 revisions per response, revisions whole");
    is_int(sent[0]->n_events + sent[1]->n_events + sent[2]->n_events, 3000,
           "every event once");
    bl_etcd_watch_cancel_call(call);
}

static void
test_fragment(void)
{
    size_t   i, total;
    int      good;

    new_call();
    create("f", NULL, 0, 0, 0, 1, -1);
    create("f", NULL, 0, 0, 0, 0, -1);
    free_sent();
    for (i = 0; i < 5; i++) {
        ev(i, BL_WATCH_PUT, "f", 50, 0);
        evbuf[i].kv.value.data = big;
        evbuf[i].kv.value.len = sizeof(big);
    }
    subs[0].deliver(subs[0].data, evbuf, 5, 50);
    good = nsent >= 2;
    for (i = 0, total = 0; i < nsent; i++) {
        total += sent[i]->n_events;
        good = good && sent[i]->fragment == (i + 1 < nsent)
               && sent_bytes[i] < 2 * 1024 * 1024 && sent[i]->watch_id == 0;
    }
    ok(good && total == 5, "3.4 MiB with fragment: parts under 2 MiB, "
       "fragment on all but the last (%zu parts)", nsent);
    free_sent();
    subs[0].deliver(subs[0].data, evbuf, 1, 50);
    ok(nsent == 1 && !sent[0]->fragment, "one event is never split");
    free_sent();
    subs[1].deliver(subs[1].data, evbuf, 5, 50);
    ok(nsent == 1 && sent[0]->n_events == 5 && !sent[0]->fragment,
       "without fragment: one response");
    bl_etcd_watch_cancel_call(call);
}

static void
test_progress(void)
{
    bl_etcd_ws_t  *ws;

    new_call();
    store_rev = 60;
    progress();
    ok(nsent == 1 && last()->watch_id == -1 && last()->header->revision == 60
       && !last()->created && !last()->canceled,
       "progress, no watches: answered");
    create("p", NULL, 0, 0, 0, 0, -1);
    create("q", NULL, 0, 0, 0, 0, -1);
    free_sent();
    progress();
    ok(nsent == 1 && last()->watch_id == -1, "progress, all synced: answered");
    subs[1].synced = 0;
    progress();
    is_int(nsent, 1, "progress, one unsynced: dropped");
    subs[1].synced = 1;
    create("r", NULL, 65, 0, 0, 0, -1);
    free_sent();
    progress();
    is_int(nsent, 0, "progress, a start ahead of the revision: dropped");
    store_rev = 64;
    progress();
    is_int(nsent, 1, "answered once the store reached start - 1");

    /* progress_notify ticks */
    new_call();
    store_rev = 70;
    {
        Etcdserverpb__WatchRequest        r = ETCDSERVERPB__WATCH_REQUEST__INIT;
        Etcdserverpb__WatchCreateRequest  c =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;

        c.key.data = (uint8_t *) "t";
        c.key.len = 1;
        c.progress_notify = 1;
        r.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
        r.create_request = &c;
        request(&r);                    /* 0 */
        request(&r);                    /* 1 */
        c.progress_notify = 0;
        request(&r);                    /* 2 */
    }
    ws = call->data;
    free_sent();
    bl_etcd_watch_progress_tick(bl_loop, &ws->progress_ev, 0);
    ok(nsent == 2 && sent[0]->watch_id == 0 && sent[1]->watch_id == 1
       && sent[0]->header->revision == 70 && sent[0]->n_events == 0,
       "tick: each idle progress_notify watch is notified");
    ev(0, BL_WATCH_PUT, "t", 71, 0);
    subs[0].deliver(subs[0].data, evbuf, 1, 71);
    store_rev = 71;
    subs[1].synced = 0;
    free_sent();
    bl_etcd_watch_progress_tick(bl_loop, &ws->progress_ev, 0);
    is_int(nsent, 0, "tick: not after events, not when unsynced");
    subs[1].synced = 1;
    bl_etcd_watch_progress_tick(bl_loop, &ws->progress_ev, 0);
    ok(nsent == 2 && sent[0]->header->revision == 71,
       "next tick: notified again");
    bl_etcd_watch_cancel_call(call);
}

static void
test_flow(void)
{
    bl_etcd_ws_t  *ws;

    new_call();
    create("s", NULL, 0, 0, 0, 0, -1);
    create("t", NULL, 0, 0, 0, 0, -1);
    ws = call->data;
    ev(0, BL_WATCH_PUT, "s", 80, 0);

    pending = 100;
    subs[0].deliver(subs[0].data, evbuf, 1, 80);
    run_loop();
    ok(!subs[0].paused && !ws->paused, "under the bound: not paused");

    pending = 100 * 1024;
    subs[0].deliver(subs[0].data, evbuf, 1, 80);
    ok(!subs[0].paused, "over the bound: not paused inside the callback");
    run_loop();
    ok(ws->paused && subs[0].paused && subs[1].paused,
       "over the bound: every watch of the stream paused");
    create("u", NULL, 0, 0, 0, 0, -1);
    ok(subs[2].paused, "a watch created meanwhile starts paused");

    pending = 40 * 1024;
    usleep(30000);
    ev_run(bl_loop, EVRUN_ONCE);
    ok(ws->paused && subs[0].paused, "over half the bound: still paused");
    pending = 10 * 1024;
    usleep(30000);
    ev_run(bl_loop, EVRUN_ONCE);
    ok(!ws->paused && !subs[0].paused && !subs[1].paused && !subs[2].paused,
       "drained to half: resumed");
    bl_etcd_watch_cancel_call(call);
    ok(!ev_is_active(&ws->flow_ev) && !ev_is_active(&ws->progress_ev),
       "timers stopped on cancel");
}

static void
test_end(void)
{
    static const struct {
        const char  *raw;
        size_t       len;
        const char  *msg;
    } bad[] = {
        { "\x0a\x40" "abc", 5, "grpc: failed to unmarshal the received "
          "message unexpected EOF" },
        { "\x08\x01", 2, "grpc: failed to unmarshal the received message "
          "proto: wrong wireType = 0 for field CreateRequest" },
        { "\x00\x01", 2, "grpc: failed to unmarshal the received message "
          "proto: WatchRequest: illegal tag 0 (wire type 0)" },
        { "\x0c", 1, "grpc: failed to unmarshal the received message "
          "proto: WatchRequest: wiretype end group for non-group" },
        { "\x0a\x03\x0a\x05" "a", 5, "grpc: failed to unmarshal the received "
          "message unexpected EOF" },
    };
    size_t  i;

    /* a storage failure ends the stream, from the loop */
    new_call();
    create("a", NULL, 0, 0, 0, 0, -1);
    create("b", NULL, 0, 0, 0, 0, -1);
    subs[0].fail(subs[0].data, BL_ST_UNAVAILABLE, 0);
    ok(finished == -1 && !subs[1].removed, "storage failure: not at once");
    run_loop();
    ok(finished == BL_GRPC_UNAVAILABLE && subs[1].removed
       && call->data == NULL, "storage failure: the stream ends UNAVAILABLE");

    for (i = 0; i < bl_nelems(bad); i++) {
        new_call();
        create("a", NULL, 0, 0, 0, 0, -1);
        bl_etcd_watch_message(call, (const u_char *) bad[i].raw, bad[i].len);
        ok(finished == BL_GRPC_INTERNAL && strcmp(finish_msg, bad[i].msg) == 0
           && subs[0].removed && call->data == NULL,
           "garbage %zu: INTERNAL \"%s\"", i, finish_msg);
    }

    /* half-close changes nothing (etcd keeps the stream) */
    new_call();
    create("a", NULL, 0, 0, 0, 0, -1);
    bl_etcd_watch_half_close(call);
    ok(finished == -1 && !subs[0].removed, "half-close: the stream goes on");
    bl_etcd_watch_cancel_call(call);
}

int
main(void)
{
    static bl_log_t  log = { 2, BL_LOG_ERR, NULL };

    bl_log = &log;
    bl_loop = ev_default_loop(0);
    memset(big, 'x', sizeof(big));

    test_create();
    test_cancel();
    test_events();
    test_fragment();
    test_progress();
    test_flow();
    test_end();
    free_sent();
    return tap_done();
}
