#include <bl_core.h>

bl_int_t
bl_array_init(bl_array_t *a, bl_pool_t *pool, size_t n, size_t size)
{
    a->nelts = 0;
    a->size = size;
    a->nalloc = n ? n : 1;
    a->pool = pool;
    a->elts = bl_palloc(pool, a->nalloc * size);
    return a->elts ? BL_OK : BL_ERROR;
}

bl_array_t *
bl_array_create(bl_pool_t *pool, size_t n, size_t size)
{
    bl_array_t  *a;

    a = bl_palloc(pool, sizeof(bl_array_t));
    if (a == NULL || bl_array_init(a, pool, n, size) != BL_OK) {
        return NULL;
    }
    return a;
}

void *
bl_array_push_n(bl_array_t *a, size_t n)
{
    void    *elts;
    size_t   nalloc;

    if (a->nelts + n > a->nalloc) {
        nalloc = 2 * bl_max(a->nalloc, n);
        elts = bl_palloc(a->pool, nalloc * a->size);
        if (elts == NULL) {
            return NULL;
        }
        memcpy(elts, a->elts, a->nelts * a->size);
        bl_pfree(a->pool, a->elts);
        a->elts = elts;
        a->nalloc = nalloc;
    }
    elts = (u_char *) a->elts + a->size * a->nelts;
    a->nelts += n;
    return elts;
}

void *
bl_array_push(bl_array_t *a)
{
    return bl_array_push_n(a, 1);
}
