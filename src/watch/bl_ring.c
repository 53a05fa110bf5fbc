#include <bl_core.h>
#include <bl_ring.h>

#define BL_RING_ALIGN   8
#define BL_RING_HDR     bl_align(sizeof(bl_ring_t), 64)
#define BL_RING_REC     sizeof(bl_ring_rec_t)

size_t
bl_ring_size(size_t capacity)
{
    return BL_RING_HDR + bl_align(capacity, 64);
}

void
bl_ring_init(bl_ring_t *ring, size_t mapped)
{
    memset(ring, 0, BL_RING_HDR);
    ring->magic = BL_RING_MAGIC;
    ring->version = BL_RING_VERSION;
    ring->header_size = BL_RING_HDR;
    ring->capacity = mapped - BL_RING_HDR;
    atomic_store(&ring->head, 0);
    atomic_store(&ring->tail, 0);
    atomic_store(&ring->head_rev, 0);
    atomic_store(&ring->tail_rev, 0);
    atomic_store(&ring->compact_rev, 0);
    atomic_store(&ring->generation, 1);
}

int
bl_ring_valid(const bl_ring_t *ring, size_t mapped)
{
    return ring->magic == BL_RING_MAGIC && ring->version == BL_RING_VERSION
           && ring->header_size == BL_RING_HDR
           && ring->capacity == mapped - BL_RING_HDR;
}

void
bl_ring_reset(bl_ring_t *ring, int64_t next_rev)
{
    uint64_t  head;

    /* readers must not trust anything they hold: move tail past head */
    head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    atomic_store_explicit(&ring->tail, head, memory_order_release);
    atomic_store_explicit(&ring->tail_rev, next_rev, memory_order_release);
    atomic_store_explicit(&ring->head_rev, next_rev - 1,
                          memory_order_release);
    atomic_fetch_add_explicit(&ring->generation, 1, memory_order_release);
}

/* raise tail so that [tail, tail + capacity) contains [.., upto) */
static void
bl_ring_make_room(bl_ring_t *ring, uint64_t upto)
{
    u_char         *data;
    uint64_t        tail;
    bl_ring_rec_t   rec;

    data = bl_ring_data(ring);
    tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);

    while (upto - tail > ring->capacity) {
        if (ring->capacity - tail % ring->capacity < BL_RING_REC) {
            /* too little room for a header: implicit padding */
            tail += ring->capacity - tail % ring->capacity;
            atomic_store_explicit(&ring->tail, tail, memory_order_release);
            continue;
        }
        memcpy(&rec, data + tail % ring->capacity, BL_RING_REC);
        if (rec.len == 0) {
            /* padding: the rest of the data area */
            tail += ring->capacity - tail % ring->capacity;
        } else {
            tail += BL_RING_REC + bl_align(rec.len, BL_RING_ALIGN);
        }
        /* the revision after the dropped record is the oldest whole one */
        if (rec.len != 0) {
            atomic_store_explicit(&ring->tail_rev, rec.rev + 1,
                                  memory_order_relaxed);
        }
        atomic_store_explicit(&ring->tail, tail, memory_order_release);
    }
    /* readers must see the new tail before any byte we overwrite next */
    atomic_thread_fence(memory_order_seq_cst);
}

bl_int_t
bl_ring_append(bl_ring_t *ring, int64_t rev, uint32_t nevents,
    const u_char *payload, size_t len)
{
    u_char         *data;
    uint64_t        head, off, need, pad;
    bl_ring_rec_t   rec;

    need = BL_RING_REC + bl_align(len, BL_RING_ALIGN);
    if (need > ring->capacity / 2) {
        return BL_ERROR;
    }

    data = bl_ring_data(ring);
    head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    off = head % ring->capacity;

    /* a record never straddles the end: pad to the end first */
    if (ring->capacity - off < need) {
        pad = ring->capacity - off;
        bl_ring_make_room(ring, head + pad);
        if (pad >= BL_RING_REC) {
            memset(&rec, 0, sizeof(rec));
            memcpy(data + off, &rec, BL_RING_REC);
        }
        head += pad;
        off = 0;
    }

    bl_ring_make_room(ring, head + need);

    rec.len = (uint32_t) len;
    rec.nevents = nevents;
    rec.rev = rev;
    memcpy(data + off, &rec, BL_RING_REC);
    memcpy(data + off + BL_RING_REC, payload, len);

    if (atomic_load_explicit(&ring->head, memory_order_relaxed)
        == atomic_load_explicit(&ring->tail, memory_order_relaxed)
        && atomic_load_explicit(&ring->head_rev, memory_order_relaxed)
           < rev)
    {
        /* empty ring: this record is the oldest */
        atomic_store_explicit(&ring->tail_rev, rev, memory_order_relaxed);
    }

    atomic_store_explicit(&ring->head_rev, rev, memory_order_relaxed);
    atomic_store_explicit(&ring->head, head + need, memory_order_release);
    return BL_OK;
}

bl_int_t
bl_ring_seek(bl_ring_t *ring, bl_ring_cursor_t *c, int64_t after)
{
    u_char         *data;
    uint64_t        pos, head, tail, gen;
    bl_ring_rec_t   rec;

    gen = atomic_load_explicit(&ring->generation, memory_order_acquire);
    head = atomic_load_explicit(&ring->head, memory_order_acquire);
    tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    data = bl_ring_data(ring);

    c->generation = gen;
    c->rev = after;

    /* everything up to `after` was published: start at head */
    if (atomic_load_explicit(&ring->head_rev, memory_order_acquire) <= after
        && head == atomic_load_explicit(&ring->head, memory_order_acquire))
    {
        c->pos = head;
        return BL_OK;
    }

    /* walk from tail to the first record past `after` */
    for (pos = tail; pos < head; ) {
        if (ring->capacity - pos % ring->capacity < BL_RING_REC) {
            pos += ring->capacity - pos % ring->capacity;
            continue;
        }
        memcpy(&rec, data + pos % ring->capacity, BL_RING_REC);
        if (atomic_load_explicit(&ring->tail, memory_order_acquire) > pos
            || atomic_load_explicit(&ring->generation, memory_order_acquire)
               != gen)
        {
            return BL_DECLINED;          /* overwritten while we looked */
        }
        if (rec.len == 0) {
            pos += ring->capacity - pos % ring->capacity;
            continue;
        }
        if (rec.rev > after) {
            /* the ring must hold every revision after `after` */
            if (pos == tail
                && atomic_load_explicit(&ring->tail_rev,
                                        memory_order_acquire) > after + 1)
            {
                return BL_DECLINED;
            }
            c->pos = pos;
            return BL_OK;
        }
        pos += BL_RING_REC + bl_align(rec.len, BL_RING_ALIGN);
    }
    return BL_DECLINED;
}

bl_int_t
bl_ring_read(bl_ring_t *ring, bl_ring_cursor_t *c, bl_ring_rec_t *rec,
    bl_buf_t *buf)
{
    u_char    *data;
    uint64_t   head, off;

    for ( ;; ) {
        if (atomic_load_explicit(&ring->generation, memory_order_acquire)
            != c->generation)
        {
            return BL_DECLINED;
        }
        head = atomic_load_explicit(&ring->head, memory_order_acquire);
        if (c->pos >= head) {
            return BL_AGAIN;
        }
        if (atomic_load_explicit(&ring->tail, memory_order_acquire)
            > c->pos)
        {
            return BL_DECLINED;                  /* fell behind */
        }

        data = bl_ring_data(ring);
        off = c->pos % ring->capacity;
        if (ring->capacity - off < BL_RING_REC) {
            c->pos += ring->capacity - off;      /* implicit padding */
            continue;
        }
        memcpy(rec, data + off, BL_RING_REC);

        if (rec->len == 0) {
            c->pos += ring->capacity - off;      /* padding */
            continue;
        }
        if (rec->len > ring->capacity / 2) {
            /* a torn header: check below decides */
            goto check;
        }

        buf->pos = buf->last = buf->data;
        if (bl_buf_reserve(buf, rec->len) != BL_OK) {
            return BL_ERROR;
        }
        memcpy(buf->last, data + off + BL_RING_REC, rec->len);
        buf->last += rec->len;

    check:
        /* anything the writer overwrote meanwhile is torn: discard */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&ring->tail, memory_order_acquire)
            > c->pos
            || atomic_load_explicit(&ring->generation, memory_order_acquire)
               != c->generation)
        {
            return BL_DECLINED;
        }
        if (rec->len > ring->capacity / 2) {
            bl_log_error(BL_LOG_ALERT, 0, "event ring record of %u bytes "
                         "at %" PRIu64, rec->len, c->pos);
            return BL_DECLINED;
        }
        c->pos += BL_RING_REC + bl_align(rec->len, BL_RING_ALIGN);
        c->rev = rec->rev;
        return BL_OK;
    }
}
