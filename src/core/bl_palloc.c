#include <bl_core.h>

/*
 * Block layout: bl_pool_block_t header, then the bytes handed out.  The
 * pool itself lives in its first block so that a pool costs one malloc.
 */

#define BL_POOL_ALIGN  (sizeof(max_align_t))
#define BL_LARGE_HDR   bl_align(sizeof(bl_pool_large_t), BL_POOL_ALIGN)

static void *bl_pool_pb_alloc(void *data, size_t size);
static void bl_pool_pb_free(void *data, void *p);

void *
bl_alloc(size_t size)
{
    void  *p;

    p = malloc(size);
    if (p == NULL) {
        bl_log_error(BL_LOG_EMERG, errno, "malloc(%zu) failed", size);
    }
    return p;
}

void *
bl_calloc(size_t size)
{
    void  *p;

    p = calloc(1, size);
    if (p == NULL) {
        bl_log_error(BL_LOG_EMERG, errno, "calloc(%zu) failed", size);
    }
    return p;
}

bl_pool_t *
bl_pool_create(size_t size)
{
    bl_pool_block_t  *b;
    bl_pool_t        *pool;
    size_t            hdr;

    hdr = bl_align(sizeof(bl_pool_block_t), BL_POOL_ALIGN)
          + bl_align(sizeof(bl_pool_t), BL_POOL_ALIGN);
    if (size < hdr + 256) {
        size = hdr + 256;
    }

    b = bl_alloc(size);
    if (b == NULL) {
        return NULL;
    }

    pool = (bl_pool_t *) ((u_char *) b
                          + bl_align(sizeof(bl_pool_block_t), BL_POOL_ALIGN));
    b->next = NULL;
    b->last = (u_char *) b + hdr;
    b->end = (u_char *) b + size;

    pool->current = b;
    pool->blocks = b;
    pool->large = NULL;
    pool->cleanup = NULL;
    pool->block_size = size;
    pool->max_small = (size - hdr) / 2;
    pool->pb.alloc = bl_pool_pb_alloc;
    pool->pb.free = bl_pool_pb_free;
    pool->pb.allocator_data = pool;
    return pool;
}

static void
bl_pool_free_all(bl_pool_t *pool, int keep_first)
{
    bl_pool_cleanup_t  *c;
    bl_pool_large_t    *l, *ln;
    bl_pool_block_t    *b, *bn, *first;

    for (c = pool->cleanup; c; c = c->next) {
        c->handler(c->data);
    }
    pool->cleanup = NULL;

    for (l = pool->large; l; l = ln) {
        ln = l->next;
        free(l);
    }
    pool->large = NULL;

    first = pool->blocks;
    for (b = first->next; b; b = bn) {
        bn = b->next;
        free(b);
    }

    if (keep_first) {
        first->next = NULL;
        first->last = (u_char *) first
                      + bl_align(sizeof(bl_pool_block_t), BL_POOL_ALIGN)
                      + bl_align(sizeof(bl_pool_t), BL_POOL_ALIGN);
        pool->current = first;
    } else {
        free(first);
    }
}

void
bl_pool_destroy(bl_pool_t *pool)
{
    if (pool) {
        bl_pool_free_all(pool, 0);
    }
}

void
bl_pool_reset(bl_pool_t *pool)
{
    bl_pool_free_all(pool, 1);
}

static void *
bl_palloc_large(bl_pool_t *pool, size_t size)
{
    bl_pool_large_t  *l;

    if (size > SIZE_MAX - BL_LARGE_HDR) {
        bl_log_error(BL_LOG_EMERG, 0, "allocation of %zu bytes", size);
        return NULL;
    }
    l = bl_alloc(BL_LARGE_HDR + size);
    if (l == NULL) {
        return NULL;
    }
    l->prev = NULL;
    l->next = pool->large;
    if (pool->large) {
        pool->large->prev = l;
    }
    pool->large = l;
    return (u_char *) l + BL_LARGE_HDR;
}

static void *
bl_palloc_small(bl_pool_t *pool, size_t size, int align)
{
    bl_pool_block_t  *b, *nb;
    u_char           *p;
    size_t            hdr;

    for (b = pool->current; b; b = b->next) {
        p = b->last;
        if (align) {
            p = (u_char *) bl_align((uintptr_t) p, BL_POOL_ALIGN);
        }
        if (p <= b->end && (size_t) (b->end - p) >= size) {
            b->last = p + size;
            return p;
        }
    }

    nb = bl_alloc(pool->block_size);
    if (nb == NULL) {
        return NULL;
    }
    hdr = bl_align(sizeof(bl_pool_block_t), BL_POOL_ALIGN);
    nb->next = NULL;
    nb->end = (u_char *) nb + pool->block_size;
    p = (u_char *) nb + hdr;
    nb->last = p + size;

    for (b = pool->current; b->next; b = b->next) { /* void */ }
    b->next = nb;
    /* a block that keeps failing small requests is nearly full: skip it */
    if ((size_t) (pool->current->end - pool->current->last) < 64) {
        pool->current = pool->current->next;
    }
    return p;
}

void *
bl_palloc(bl_pool_t *pool, size_t size)
{
    if (size == 0) {
        size = 1;
    }
    if (size <= pool->max_small) {
        return bl_palloc_small(pool, size, 1);
    }
    return bl_palloc_large(pool, size);
}

void *
bl_pnalloc(bl_pool_t *pool, size_t size)
{
    if (size == 0) {
        size = 1;
    }
    if (size <= pool->max_small) {
        return bl_palloc_small(pool, size, 0);
    }
    return bl_palloc_large(pool, size);
}

void *
bl_pcalloc(bl_pool_t *pool, size_t size)
{
    void  *p;

    p = bl_palloc(pool, size);
    if (p) {
        memset(p, 0, size ? size : 1);
    }
    return p;
}

void
bl_pfree(bl_pool_t *pool, void *p)
{
    bl_pool_large_t  *l;

    for (l = pool->large; l; l = l->next) {
        if ((u_char *) l + BL_LARGE_HDR == p) {
            if (l->prev) {
                l->prev->next = l->next;
            } else {
                pool->large = l->next;
            }
            if (l->next) {
                l->next->prev = l->prev;
            }
            free(l);
            return;
        }
    }
}

bl_pool_cleanup_t *
bl_pool_cleanup_add(bl_pool_t *pool, bl_pool_cleanup_pt handler, void *data)
{
    bl_pool_cleanup_t  *c;

    c = bl_palloc(pool, sizeof(bl_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }
    c->handler = handler;
    c->data = data;
    c->next = pool->cleanup;
    pool->cleanup = c;
    return c;
}

static void *
bl_pool_pb_alloc(void *data, size_t size)
{
    return bl_palloc(data, size);
}

static void
bl_pool_pb_free(void *data, void *p)
{
    /* large blocks go back early (unpacked bytes fields); small stay */
    if (p) {
        bl_pfree(data, p);
    }
}
