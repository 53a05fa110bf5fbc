#include <bl_core.h>

bl_int_t
bl_buf_reserve(bl_buf_t *b, size_t n)
{
    size_t   used, size;
    u_char  *p;

    if (bl_buf_free(b) >= n) {
        return BL_OK;
    }

    used = bl_buf_size(b);

    /* slide pending bytes to the front when that makes enough room */
    if (b->data && (size_t) (b->end - b->data) >= used + n
        && b->pos != b->data)
    {
        memmove(b->data, b->pos, used);
        b->pos = b->data;
        b->last = b->data + used;
        return BL_OK;
    }

    size = b->data ? (size_t) (b->end - b->data) : 0;
    if (size < 1024) {
        size = 1024;
    }
    while (size < used + n) {
        if (size > SIZE_MAX / 2) {
            bl_log_error(BL_LOG_ERR, 0, "buffer of %zu bytes too large",
                         used + n);
            return BL_ERROR;
        }
        size *= 2;
    }

    p = bl_alloc(size);
    if (p == NULL) {
        return BL_ERROR;
    }
    if (used) {
        memcpy(p, b->pos, used);
    }
    free(b->data);
    b->data = p;
    b->pos = p;
    b->last = p + used;
    b->end = p + size;
    return BL_OK;
}

bl_int_t
bl_buf_append(bl_buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        return BL_OK;
    }
    if (bl_buf_reserve(b, n) != BL_OK) {
        return BL_ERROR;
    }
    memcpy(b->last, p, n);
    b->last += n;
    return BL_OK;
}

void
bl_buf_consume(bl_buf_t *b, size_t n)
{
    b->pos += n;
    if (b->pos >= b->last) {
        b->pos = b->data;
        b->last = b->data;
    }
}

void
bl_buf_release(bl_buf_t *b)
{
    free(b->data);
    b->data = b->pos = b->last = b->end = NULL;
}
