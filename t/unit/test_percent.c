/*
 * grpc-message percent-encoding: what is encoded, round trips of every
 * byte, and the lenient decoder.
 */
#include <bl_core.h>
#include <bl_percent.h>

#include "tap.h"


static void
enc(const char *in, size_t len, const char *want)
{
    u_char  out[1024];
    size_t  n;

    n = (size_t) (bl_percent_encode(out, (const u_char *) in, len) - out);

    is_mem(out, n, want, strlen(want), "encode \"%s\"", want);
    is_int(bl_percent_encoded_len((const u_char *) in, len), n,
           "  encoded length agrees");
}


static void
dec(const char *in, const char *want, size_t wlen)
{
    u_char  out[1024];
    size_t  n;

    n = bl_percent_decode(out, (const u_char *) in, strlen(in));
    is_mem(out, n, want, wlen, "decode \"%s\"", in);
}


int
main(void)
{
    int         good;
    u_char      all[256], e[768], d[768];
    size_t      i, n, m;
    bl_str_t    s;
    bl_pool_t  *pool;

    enc("hello, world", 12, "hello, world");
    enc("", 0, "");
    enc("100%", 4, "100%25");
    enc("%%", 2, "%25%25");
    enc("a\nb", 3, "a%0Ab");
    enc("tab\there", 8, "tab%09here");
    enc(" ~", 2, " ~");
    enc("\x1f\x7f", 2, "%1F%7F");
    enc("h\xc3\xa9llo", 6, "h%C3%A9llo");
    enc("\xe2\x82\xac 5", 5, "%E2%82%AC 5");
    enc("a\0b", 3, "a%00b");

    /* every byte */

    for (i = 0; i < 256; i++) {
        all[i] = (u_char) i;
    }

    n = (size_t) (bl_percent_encode(e, all, 256) - e);
    is_int(n, 95 - 1 + (256 - 95 + 1) * 3,
           "256 bytes: 94 plain, 162 encoded");

    good = 1;
    for (i = 0; i < n; i++) {
        good = good && e[i] >= 0x20 && e[i] <= 0x7e;
    }
    ok(good, "the encoded form is printable ASCII only");

    m = bl_percent_decode(d, e, n);
    is_mem(d, m, all, 256, "every byte round-trips");

    /* in place */

    memcpy(d, e, n);
    m = bl_percent_decode(d, d, n);
    is_mem(d, m, all, 256, "decoding in place");

    /* lenient decoding, as gRPC's own */

    dec("%41%42c", "ABc", 3);
    dec("%4a%4A", "JJ", 2);
    dec("%", "%", 1);
    dec("%4", "%4", 2);
    dec("a%", "a%", 2);
    dec("%zz", "%zz", 3);
    dec("%%41", "%A", 2);
    dec("%C3%A9t%C3%A9", "\xc3\xa9t\xc3\xa9", 5);
    dec("100%25", "100%", 4);
    dec("plain", "plain", 5);

    /* into a pool, NUL-terminated */

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    ok(pool != NULL, "pool");
    ok(bl_percent_encode_pool(pool, &s, (const u_char *) "50% off\r\n", 9)
       == BL_OK, "encode into a pool");
    is_str((char *) s.data, "50%25 off%0D%0A", "  its text");
    is_int(s.len, 15, "  its length");
    bl_pool_destroy(pool);

    return tap_done();
}
