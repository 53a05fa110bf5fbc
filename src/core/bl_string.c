#include <bl_core.h>

int
bl_str_eq_cstr(const bl_str_t *s, const char *c)
{
    size_t  n;

    n = strlen(c);
    return s->len == n && (n == 0 || memcmp(s->data, c, n) == 0);
}

int
bl_str_cmp(const bl_str_t *a, const bl_str_t *b)
{
    size_t  n;
    int     rc;

    n = bl_min(a->len, b->len);
    rc = n ? memcmp(a->data, b->data, n) : 0;
    if (rc != 0) {
        return rc;
    }
    return (a->len > b->len) - (a->len < b->len);
}

bl_int_t
bl_str_dup(bl_pool_t *pool, bl_str_t *dst, const void *src, size_t len)
{
    u_char  *p;

    p = bl_pnalloc(pool, len + 1);
    if (p == NULL) {
        return BL_ERROR;
    }
    if (len) {
        memcpy(p, src, len);
    }
    p[len] = '\0';
    dst->data = p;
    dst->len = len;
    return BL_OK;
}

char *
bl_pstrdup(bl_pool_t *pool, const bl_str_t *s)
{
    bl_str_t  d;

    if (bl_str_dup(pool, &d, s->data, s->len) != BL_OK) {
        return NULL;
    }
    return (char *) d.data;
}

bl_int_t
bl_atoi(const u_char *p, size_t n, int64_t *out)
{
    int64_t  v;
    size_t   i;

    if (n == 0) {
        return BL_ERROR;
    }
    v = 0;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return BL_ERROR;
        }
        if (v > (INT64_MAX - (p[i] - '0')) / 10) {
            return BL_ERROR;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return BL_OK;
}
