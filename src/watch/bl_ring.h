/*
 * The event ring: a byte ring in shared memory with one writer (the
 * watcher process) and many readers (the workers), no locks.
 *
 * Positions are absolute byte offsets that only grow (uint64: they never
 * wrap in practice); the byte at position p lives at data[p % capacity].
 * A record never straddles the end of the data area: the writer pads to
 * the end first.  The writer publishes with a release store of `head`;
 * before it overwrites bytes it raises `tail` (the oldest position still
 * readable) with a release store.  A reader copies a record out, then
 * re-reads `tail` (acquire): if tail passed the record's start, the copy
 * may be torn and is discarded -- the reader fell behind and must catch up
 * from the revision log.  Records carry whole revisions: the writer
 * publishes only at revision boundaries, so a reader never sees half of a
 * revision's events.
 *
 * The ring holds offsets, never pointers, and starts with a header that
 * says its version and size (it is mapped before fork by the master).
 */
#ifndef BL_RING_H
#define BL_RING_H

#include <stdatomic.h>

#define BL_RING_MAGIC    0x626c72696e673031ULL    /* "blring01" */
#define BL_RING_VERSION  1

typedef struct {
    uint64_t             magic;
    uint32_t             version;
    uint32_t             header_size;
    uint64_t             capacity;       /* bytes of the data area */
    _Atomic uint64_t     head;           /* end of the published records */
    _Atomic uint64_t     tail;           /* oldest readable position */
    _Atomic int64_t      head_rev;       /* revision of the last record */
    _Atomic int64_t      tail_rev;       /* first revision still whole */
    _Atomic int64_t      compact_rev;    /* the store's, as last seen */
    _Atomic uint64_t     generation;     /* +1 each time the writer resets */
    /* the data area follows, 64-byte aligned */
} bl_ring_t;

/* record header; the payload follows, then padding to 8 bytes */
typedef struct {
    uint32_t   len;          /* payload bytes; 0 = padding to the end */
    uint32_t   nevents;      /* events in the payload */
    int64_t    rev;          /* the revision all its events belong to */
} bl_ring_rec_t;

#define bl_ring_data(r)  ((u_char *) (r) + (r)->header_size)

/* size to map for a data area of `capacity` bytes */
size_t bl_ring_size(size_t capacity);
/* format a freshly mapped area (master, before fork) */
void bl_ring_init(bl_ring_t *ring, size_t mapped);
/* 1 if the mapped area holds a ring this code understands */
int bl_ring_valid(const bl_ring_t *ring, size_t mapped);

/*
 * Writer: append one revision's payload (already encoded events) and
 * publish it.  BL_ERROR if a single revision is larger than half the
 * ring (the caller then publishes a gap marker: readers catch up from the
 * log for it).
 */
bl_int_t bl_ring_append(bl_ring_t *ring, int64_t rev, uint32_t nevents,
    const u_char *payload, size_t len);
/* forget everything (the writer restarted from a revision that does not
 * follow head_rev); readers see the generation change and resync */
void bl_ring_reset(bl_ring_t *ring, int64_t next_rev);

/* Reader: a cursor into the ring */
typedef struct {
    uint64_t   pos;
    uint64_t   generation;
    int64_t    rev;          /* last revision consumed */
} bl_ring_cursor_t;

/* start reading after revision `after` if the ring still holds what
 * follows it: BL_OK, or BL_DECLINED (catch up from the log first) */
bl_int_t bl_ring_seek(bl_ring_t *ring, bl_ring_cursor_t *c, int64_t after);

/*
 * Copy the next record's payload into buf (grown as needed).  BL_OK with
 * *rec filled; BL_AGAIN when nothing new is published; BL_DECLINED when
 * the reader fell behind (its records were overwritten) or the writer
 * reset: resynchronise from the log after c->rev.
 */
bl_int_t bl_ring_read(bl_ring_t *ring, bl_ring_cursor_t *c,
    bl_ring_rec_t *rec, bl_buf_t *buf);

#endif /* BL_RING_H */
