/*
 * Watch events packed once per worker, not once per watcher.  When ten
 * thousand watchers of one prefix get the same event, each response
 * differs only in its header and watch_id; the event itself, as the
 * `events` field of a WatchResponse, is the same bytes every time.  A
 * small direct-mapped cache keeps those bytes, keyed by what makes the
 * event what it is: its revision and key (one event per key and
 * revision), its type, and whether it carries prev_kv.
 *
 * The entries used by the response being built are pinned: an event
 * whose slot a pinned entry holds is packed into the scratch pool
 * instead, so every part of one response stays valid until it is sent.
 * Events over BL_ETCD_WEV_MAX are not kept.
 */
#include <bl_etcd_watch.h>

#define BL_ETCD_WEV_SLOTS   512        /* a power of two */
/* bigger events are packed per response: the cache stays under 1 MiB,
 * and for them the copy costs as much as the packing anyway */
#define BL_ETCD_WEV_MAX     (2 * 1024)
/* WatchResponse.events: field 11, length-delimited */
#define BL_ETCD_WEV_TAG     ((11 << 3) | 2)

typedef struct {
    int64_t    rev;
    uint64_t   pinned;         /* the response that uses it, or 0 */
    u_char    *key;            /* a copy, in data, before the field */
    size_t     key_len;
    bl_str_t   field;          /* tag, length, packed Event: in data */
    u_char    *data;
    size_t     alloc;
    unsigned   used:1;
    unsigned   deleted:1;
    unsigned   with_prev:1;
} bl_etcd_wev_t;

static bl_etcd_wev_t  bl_etcd_wev[BL_ETCD_WEV_SLOTS];
static uint64_t       bl_etcd_wev_seq;


uint64_t
bl_etcd_watch_pack_begin(void)
{
    return ++bl_etcd_wev_seq;
}


static uint32_t
bl_etcd_wev_hash(const bl_watch_event_t *ev, int with_prev)
{
    uint32_t       h;
    size_t         i;
    uint64_t       rev;
    const u_char  *p;

    h = 2166136261u;
    rev = (uint64_t) ev->kv.mod_revision;
    for (i = 0; i < 8; i++) {
        h = (h ^ (u_char) (rev >> (8 * i))) * 16777619u;
    }
    p = ev->kv.key.data;
    for (i = 0; i < ev->kv.key.len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    h = (h ^ (u_char) ((ev->type << 1) | with_prev)) * 16777619u;
    return h;
}


static size_t
bl_etcd_wev_varint(u_char *p, uint64_t n)
{
    size_t  len;

    for (len = 0; n >= 0x80; n >>= 7) {
        p[len++] = (u_char) (n | 0x80);
    }
    p[len++] = (u_char) n;
    return len;
}


void
bl_etcd_watch_kv_init(Mvccpb__KeyValue *pb, const bl_kv_t *kv, int deleted)
{
    mvccpb__key_value__init(pb);
    pb->key.data = kv->key.data;
    pb->key.len = kv->key.len;
    pb->mod_revision = kv->mod_revision;
    if (!deleted) {
        /* a DELETE event's kv is the key and the deleting revision only */
        pb->create_revision = kv->create_revision;
        pb->version = kv->version;
        pb->lease = kv->lease;
        pb->value.data = kv->value.data;
        pb->value.len = kv->value.len;
    }
}


/* an event's Event message, pointing into its bytes, and its size */
typedef struct {
    Mvccpb__Event     pb;
    Mvccpb__KeyValue  kv;
    Mvccpb__KeyValue  prev;
    size_t            size;
} bl_etcd_wev_msg_t;


static void
bl_etcd_wev_msg(bl_etcd_wev_msg_t *m, const bl_watch_event_t *ev,
    int with_prev)
{
    int  deleted;

    deleted = (ev->type == BL_WATCH_DELETE);
    mvccpb__event__init(&m->pb);
    m->pb.type = deleted ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                         : MVCCPB__EVENT__EVENT_TYPE__PUT;
    bl_etcd_watch_kv_init(&m->kv, &ev->kv, deleted);
    m->pb.kv = &m->kv;
    if (with_prev) {
        bl_etcd_watch_kv_init(&m->prev, &ev->prev, 0);
        m->pb.prev_kv = &m->prev;
    }
    m->size = mvccpb__event__get_packed_size(&m->pb);
}


/* the message as the `events` field into out (room for
 * BL_ETCD_WEV_ROOM(m)); returns its length */
#define BL_ETCD_WEV_ROOM(m)  (1 + 10 + (m)->size)

static size_t
bl_etcd_wev_pack(const bl_etcd_wev_msg_t *m, u_char *out)
{
    size_t  n;

    out[0] = BL_ETCD_WEV_TAG;
    n = 1 + bl_etcd_wev_varint(out + 1, m->size);
    return n + mvccpb__event__pack(&m->pb, out + n);
}


/*
 * The packed `events` field of this event, for the response `seq`; NULL
 * if out of memory.  Valid until the next bl_etcd_watch_pack_begin().
 */
const bl_str_t *
bl_etcd_watch_pack_event(const bl_watch_event_t *ev, int with_prev,
    uint64_t seq, bl_pool_t *tmp)
{
    bl_etcd_wev_t      *e;
    bl_str_t           *s;
    size_t              need;
    u_char             *p;
    bl_etcd_wev_msg_t   m;

    with_prev = with_prev && ev->has_prev;
    e = &bl_etcd_wev[bl_etcd_wev_hash(ev, with_prev)
                     & (BL_ETCD_WEV_SLOTS - 1)];

    if (e->used && e->rev == ev->kv.mod_revision
        && e->deleted == (ev->type == BL_WATCH_DELETE)
        && e->with_prev == (unsigned) with_prev
        && e->key_len == ev->kv.key.len
        && memcmp(e->key, ev->kv.key.data, e->key_len) == 0)
    {
        e->pinned = seq;
        return &e->field;
    }

    bl_etcd_wev_msg(&m, ev, with_prev);
    need = BL_ETCD_WEV_ROOM(&m);

    if (e->pinned == seq || need > BL_ETCD_WEV_MAX) {
        /* the slot serves another event of this response, or too big */
        s = bl_palloc(tmp, sizeof(bl_str_t) + need);
        if (s == NULL) {
            return NULL;
        }
        s->data = (u_char *) (s + 1);
        s->len = bl_etcd_wev_pack(&m, s->data);
        return s;
    }

    if (e->alloc < ev->kv.key.len + need) {
        p = bl_alloc(ev->kv.key.len + need);
        if (p == NULL) {
            return NULL;
        }
        free(e->data);
        e->data = p;
        e->alloc = ev->kv.key.len + need;
    }
    e->used = 1;
    e->rev = ev->kv.mod_revision;
    e->deleted = (ev->type == BL_WATCH_DELETE);
    e->with_prev = with_prev;
    e->key = e->data;
    e->key_len = ev->kv.key.len;
    memcpy(e->key, ev->kv.key.data, e->key_len);
    e->field.data = e->data + e->key_len;
    e->field.len = bl_etcd_wev_pack(&m, e->field.data);
    e->pinned = seq;
    return &e->field;
}


/*
 * The response's own fields before its events: header (1) and watch_id
 * (2; proto3 leaves a zero out), into buf; returns the length.
 */
size_t
bl_etcd_watch_pack_head(bl_pool_t *tmp, int64_t revision, int64_t id,
    u_char *buf, size_t size)
{
    Etcdserverpb__ResponseHeader  *h;
    size_t                         n, len;

    h = bl_etcd_header(tmp, revision);
    if (h == NULL) {
        return 0;
    }
    len = etcdserverpb__response_header__get_packed_size(h);
    if (len + 2 * 11 + 2 > size) {
        return 0;
    }
    buf[0] = (1 << 3) | 2;
    n = 1 + bl_etcd_wev_varint(buf + 1, len);
    n += etcdserverpb__response_header__pack(h, buf + n);
    if (id != 0) {
        buf[n++] = (2 << 3) | 0;
        n += bl_etcd_wev_varint(buf + n, (uint64_t) id);
    }
    return n;
}
