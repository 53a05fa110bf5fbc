/*
 * Pools: allocate by lifetime.  A pool per config cycle, per connection,
 * per RPC; destroying the pool frees everything allocated from it and runs
 * its cleanup handlers (in reverse order of registration).
 *
 * Small allocations are carved from blocks; large ones are malloc()ed and
 * chained so that bl_pool_destroy() frees them too.  bl_pfree() returns a
 * large allocation early (buffers that grow); small ones live until the end.
 */
#ifndef BL_PALLOC_H
#define BL_PALLOC_H

#include <protobuf-c/protobuf-c.h>

#define BL_POOL_DEFAULT_SIZE  4096

typedef void (*bl_pool_cleanup_pt)(void *data);

typedef struct bl_pool_cleanup_s bl_pool_cleanup_t;
struct bl_pool_cleanup_s {
    bl_pool_cleanup_pt   handler;
    void                *data;
    bl_pool_cleanup_t   *next;
};

typedef struct bl_pool_large_s bl_pool_large_t;
struct bl_pool_large_s {
    bl_pool_large_t     *next;
    bl_pool_large_t     *prev;
    /* the allocation follows, max_align_t aligned */
};

typedef struct bl_pool_block_s bl_pool_block_t;
struct bl_pool_block_s {
    bl_pool_block_t     *next;
    u_char              *last;
    u_char              *end;
};

struct bl_pool_s {
    bl_pool_block_t     *current;   /* block small allocations come from */
    bl_pool_block_t     *blocks;    /* all blocks, first is the pool's own */
    bl_pool_large_t     *large;
    bl_pool_cleanup_t   *cleanup;
    size_t               block_size;
    size_t               max_small;
    ProtobufCAllocator   pb;        /* protobuf-c unpacking into this pool */
};

/* NULL (and logged) on out-of-memory */
bl_pool_t *bl_pool_create(size_t size);
void bl_pool_destroy(bl_pool_t *pool);
/* free everything but keep the first block: for reuse by the next request */
void bl_pool_reset(bl_pool_t *pool);

void *bl_palloc(bl_pool_t *pool, size_t size);    /* aligned */
void *bl_pnalloc(bl_pool_t *pool, size_t size);   /* unaligned (strings) */
void *bl_pcalloc(bl_pool_t *pool, size_t size);   /* aligned, zeroed */
void  bl_pfree(bl_pool_t *pool, void *p);         /* only large blocks */

bl_pool_cleanup_t *bl_pool_cleanup_add(bl_pool_t *pool,
    bl_pool_cleanup_pt handler, void *data);

/* protobuf-c allocator that allocates from the pool; free is a no-op */
#define bl_pool_pb_allocator(pool)  (&(pool)->pb)

void *bl_alloc(size_t size);       /* malloc + log on failure */
void *bl_calloc(size_t size);

#endif /* BL_PALLOC_H */
