/*
 * PostgreSQL's binary format: result fields and parameters, arrays
 * included (network byte order throughout).
 */
#include <bl_core.h>
#include <bl_pg.h>


/* binary fields */

bl_int_t
bl_pg_int64(PGresult *res, int row, int col, int64_t *v)
{
    int            i;
    uint64_t       u;
    const u_char  *p;

    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8) {
        return BL_ERROR;
    }

    p = (const u_char *) PQgetvalue(res, row, col);
    u = 0;

    for (i = 0; i < 8; i++) {
        u = (u << 8) | p[i];
    }

    *v = (int64_t) u;
    return BL_OK;
}


bl_int_t
bl_pg_int32(PGresult *res, int row, int col, int32_t *v)
{
    uint32_t       u;
    const u_char  *p;

    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 4) {
        return BL_ERROR;
    }

    p = (const u_char *) PQgetvalue(res, row, col);
    u = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
        | ((uint32_t) p[2] << 8) | p[3];

    *v = (int32_t) u;
    return BL_OK;
}


/* a copy in the pool (NUL-terminated for convenience) */
bl_int_t
bl_pg_bytes(bl_pool_t *pool, PGresult *res, int row, int col, bl_str_t *s)
{
    int  len;

    if (PQgetisnull(res, row, col)) {
        bl_str_null(s);
        return BL_OK;
    }

    len = PQgetlength(res, row, col);

    s->data = bl_pnalloc(pool, (size_t) len + 1);
    if (s->data == NULL) {
        return BL_ERROR;
    }

    memcpy(s->data, PQgetvalue(res, row, col), (size_t) len);
    s->data[len] = '\0';
    s->len = (size_t) len;

    return BL_OK;
}


void
bl_pg_put_int64(u_char *p, int64_t v)
{
    int       i;
    uint64_t  u;

    u = (uint64_t) v;

    for (i = 7; i >= 0; i--) {
        p[i] = (u_char) (u & 0xff);
        u >>= 8;
    }
}


void
bl_pg_put_int32(u_char *p, int32_t v)
{
    uint32_t  u;

    u = (uint32_t) v;
    p[0] = (u_char) (u >> 24);
    p[1] = (u_char) (u >> 16);
    p[2] = (u_char) (u >> 8);
    p[3] = (u_char) u;
}


bl_int_t
bl_pg_kv(bl_pool_t *pool, PGresult *res, int row, int col, bl_kv_t *kv)
{
    if (bl_pg_bytes(pool, res, row, col, &kv->key) != BL_OK
        || kv->key.data == NULL
        || bl_pg_int64(res, row, col + 1, &kv->create_revision) != BL_OK
        || bl_pg_int64(res, row, col + 2, &kv->mod_revision) != BL_OK
        || bl_pg_int64(res, row, col + 3, &kv->version) != BL_OK
        || bl_pg_int64(res, row, col + 4, &kv->lease) != BL_OK
        || bl_pg_bytes(pool, res, row, col + 5, &kv->value) != BL_OK)
    {
        return BL_ERROR;
    }

    if (kv->value.data == NULL) {
        /* keys_only */
        bl_str_set(&kv->value, "");
        kv->value.len = 0;
    }

    return BL_OK;
}


/* arrays: ndim, has-null flag, element type, (size, lower bound) per
 * dimension, then each element as length (-1: NULL) and bytes; an empty
 * array has no dimension */

size_t
bl_pg_array_size(int ndim, size_t n, size_t data)
{
    if (n == 0) {
        return 12;
    }

    return 12 + 8 * (size_t) ndim + 4 * n + data;
}


u_char *
bl_pg_array_start(u_char *p, uint32_t elem_oid, int ndim, const int *dims,
    int has_null)
{
    int  i, n;

    n = 1;

    for (i = 0; i < ndim; i++) {
        n *= dims[i];
    }

    if (n == 0) {
        ndim = 0;
    }

    bl_pg_put_int32(p, ndim);
    bl_pg_put_int32(p + 4, has_null ? 1 : 0);
    bl_pg_put_int32(p + 8, (int32_t) elem_oid);
    p += 12;

    for (i = 0; i < ndim; i++) {
        bl_pg_put_int32(p, dims[i]);
        bl_pg_put_int32(p + 4, 1);
        p += 8;
    }

    return p;
}


u_char *
bl_pg_array_int32(u_char *p, int32_t v)
{
    bl_pg_put_int32(p, 4);
    bl_pg_put_int32(p + 4, v);

    return p + 8;
}


u_char *
bl_pg_array_int64(u_char *p, int64_t v)
{
    bl_pg_put_int32(p, 8);
    bl_pg_put_int64(p + 4, v);

    return p + 12;
}


u_char *
bl_pg_array_bytes(u_char *p, const u_char *data, size_t len)
{
    bl_pg_put_int32(p, (int32_t) len);

    if (len > 0) {
        memcpy(p + 4, data, len);
    }

    return p + 4 + len;
}


u_char *
bl_pg_array_null(u_char *p)
{
    bl_pg_put_int32(p, -1);

    return p + 4;
}
