/*
 * grpc-message percent-encoding.
 */
#include <bl_core.h>
#include <bl_percent.h>


#define bl_percent_plain(c)  ((c) >= 0x20 && (c) <= 0x7e && (c) != '%')


size_t
bl_percent_encoded_len(const u_char *src, size_t len)
{
    size_t  i, n;

    n = len;

    for (i = 0; i < len; i++) {
        if (!bl_percent_plain(src[i])) {
            n += 2;
        }
    }

    return n;
}


u_char *
bl_percent_encode(u_char *dst, const u_char *src, size_t len)
{
    size_t                i;
    static const u_char   hex[] = "0123456789ABCDEF";

    for (i = 0; i < len; i++) {
        if (bl_percent_plain(src[i])) {
            *dst++ = src[i];
            continue;
        }

        *dst++ = '%';
        *dst++ = hex[src[i] >> 4];
        *dst++ = hex[src[i] & 0x0f];
    }

    return dst;
}


static int
bl_percent_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


size_t
bl_percent_decode(u_char *dst, const u_char *src, size_t len)
{
    int      hi, lo;
    size_t   i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (src[i] == '%' && i + 2 < len
            && (hi = bl_percent_hex(src[i + 1])) >= 0
            && (lo = bl_percent_hex(src[i + 2])) >= 0)
        {
            dst[n++] = (u_char) ((hi << 4) | lo);
            i += 2;
            continue;
        }

        dst[n++] = src[i];
    }

    return n;
}


bl_int_t
bl_percent_encode_pool(bl_pool_t *pool, bl_str_t *dst, const u_char *src,
    size_t len)
{
    size_t   n;
    u_char  *p;

    n = bl_percent_encoded_len(src, len);

    p = bl_pnalloc(pool, n + 1);
    if (p == NULL) {
        return BL_ERROR;
    }

    dst->data = p;
    dst->len = (size_t) (bl_percent_encode(p, src, len) - p);
    p[dst->len] = '\0';

    return BL_OK;
}
