/* Growable arrays in a pool (elements move when the array grows). */
#ifndef BL_ARRAY_H
#define BL_ARRAY_H

typedef struct {
    void       *elts;
    size_t      nelts;
    size_t      size;      /* element size */
    size_t      nalloc;
    bl_pool_t  *pool;
} bl_array_t;

bl_array_t *bl_array_create(bl_pool_t *pool, size_t n, size_t size);
bl_int_t bl_array_init(bl_array_t *a, bl_pool_t *pool, size_t n,
    size_t size);
void *bl_array_push(bl_array_t *a);            /* NULL on out-of-memory */
void *bl_array_push_n(bl_array_t *a, size_t n);

#endif /* BL_ARRAY_H */
