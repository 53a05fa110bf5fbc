/*
 * gRPC framing: the incremental parser fed every possible split, the
 * limits and flags, the writer, and grpc-timeout.
 */
#include <bl_core.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>

#include "tap.h"


#define MAXMSG  16

typedef struct {
    size_t   n;
    size_t   len[MAXMSG];
    u_char  *data[MAXMSG];      /* copies */
    int      in_input[MAXMSG];  /* pointed into the chunk (no copy) */
    int      rc;                /* BL_OK, or BL_ERROR when it failed */
} result_t;


static void
result_free(result_t *r)
{
    size_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->data[i]);
    }

    memset(r, 0, sizeof(result_t));
}


/* feed chunk: take every message out of it */

static int
feed(bl_grpc_frame_parser_t *p, const u_char *chunk, size_t len,
    result_t *r)
{
    bl_int_t       rc;
    bl_str_t       msg;
    const u_char  *pos, *last;

    pos = chunk;
    last = chunk + len;

    while (pos < last) {
        rc = bl_grpc_frame_parse(p, &pos, last, &msg);

        if (rc == BL_AGAIN) {
            if (pos != last) {
                return -1;
            }
            break;
        }

        if (rc == BL_ERROR) {
            r->rc = BL_ERROR;
            return 0;
        }

        if (r->n == MAXMSG) {
            return -1;
        }

        r->len[r->n] = msg.len;
        r->data[r->n] = malloc(msg.len + 1);
        memcpy(r->data[r->n], msg.data, msg.len);
        r->in_input[r->n] = msg.data >= chunk && msg.data + msg.len <= last;
        r->n++;
    }

    return 0;
}


static size_t
build(u_char *out, const size_t *sizes, size_t n)
{
    size_t  i, j, len;

    len = 0;

    for (i = 0; i < n; i++) {
        bl_grpc_frame_prefix(out + len, (uint32_t) sizes[i]);
        len += BL_GRPC_PREFIX_LEN;

        for (j = 0; j < sizes[i]; j++) {
            out[len++] = (u_char) (i * 31 + j * 7);
        }
    }

    return len;
}


static int
check(const result_t *r, const size_t *sizes, size_t n)
{
    size_t  i, j;

    if (r->rc != BL_OK || r->n != n) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (r->len[i] != sizes[i]) {
            return 0;
        }

        for (j = 0; j < sizes[i]; j++) {
            if (r->data[i][j] != (u_char) (i * 31 + j * 7)) {
                return 0;
            }
        }
    }

    return 1;
}


static void
test_splits(void)
{
    int                     good;
    size_t                  len, k, m, i;
    u_char                 *buf;
    result_t                r;
    bl_grpc_frame_parser_t  p;
    static const size_t     sizes[] = { 0, 1, 5, 100, 0, 300, 0 };
    static const size_t     big[] = { 3, 70000, 0, 200000, 2 };

    buf = malloc(400000);
    len = build(buf, sizes, bl_nelems(sizes));

    /* all at once: several messages in one chunk, no copies */

    memset(&r, 0, sizeof(r));
    bl_grpc_frame_parser_init(&p, 1000);
    ok(feed(&p, buf, len, &r) == 0 && check(&r, sizes, bl_nelems(sizes)),
       "%zu messages in one chunk", bl_nelems(sizes));

    good = 1;
    for (i = 0; i < r.n; i++) {
        good = good && r.in_input[i];
    }
    ok(good, "messages whole in a chunk are not copied");
    ok(bl_grpc_frame_idle(&p), "idle after the last message");
    result_free(&r);
    bl_grpc_frame_parser_free(&p);

    /* two chunks, split at every byte boundary */

    good = 1;

    for (k = 0; k <= len; k++) {
        memset(&r, 0, sizeof(r));
        bl_grpc_frame_parser_init(&p, 1000);

        if (feed(&p, buf, k, &r) != 0
            || feed(&p, buf + k, len - k, &r) != 0
            || !check(&r, sizes, bl_nelems(sizes))
            || !bl_grpc_frame_idle(&p))
        {
            good = 0;
            diag("split failed");
            printf("# at %zu\n", k);
        }

        result_free(&r);
        bl_grpc_frame_parser_free(&p);
    }

    ok(good, "split in two at each of %zu boundaries", len + 1);

    /* three chunks, every pair of boundaries */

    good = 1;

    for (k = 0; k <= len && good; k++) {
        for (m = k; m <= len && good; m++) {
            memset(&r, 0, sizeof(r));
            bl_grpc_frame_parser_init(&p, 1000);

            if (feed(&p, buf, k, &r) != 0
                || feed(&p, buf + k, m - k, &r) != 0
                || feed(&p, buf + m, len - m, &r) != 0
                || !check(&r, sizes, bl_nelems(sizes)))
            {
                good = 0;
                printf("# split at %zu and %zu failed\n", k, m);
            }

            result_free(&r);
            bl_grpc_frame_parser_free(&p);
        }
    }

    ok(good, "split in three at every pair of boundaries");

    /* a byte at a time, with messages larger than the kept buffer */

    len = build(buf, big, bl_nelems(big));
    memset(&r, 0, sizeof(r));
    bl_grpc_frame_parser_init(&p, 200000);
    good = 1;

    for (k = 0; k < len; k++) {
        if (feed(&p, buf + k, 1, &r) != 0) {
            good = 0;
        }
    }

    ok(good && check(&r, big, bl_nelems(big)),
       "a byte at a time, with messages of 70000 and 200000 bytes");
    result_free(&r);
    bl_grpc_frame_parser_free(&p);

    /* odd chunk sizes */

    memset(&r, 0, sizeof(r));
    bl_grpc_frame_parser_init(&p, 200000);
    good = 1;

    for (k = 0; k < len; k += m) {
        m = bl_min(len - k, 1 + (k * 7919) % 16411);
        if (feed(&p, buf + k, m, &r) != 0) {
            good = 0;
        }
    }

    ok(good && check(&r, big, bl_nelems(big)), "chunks of odd sizes");
    result_free(&r);
    bl_grpc_frame_parser_free(&p);

    free(buf);
}


static void
test_limits(void)
{
    u_char                  buf[64];
    size_t                  len;
    bl_int_t                rc;
    bl_str_t                msg;
    result_t                r;
    const u_char           *pos;
    bl_grpc_frame_parser_t  p;
    size_t                  sizes[1];

    /* exactly the limit */

    sizes[0] = 10;
    len = build(buf, sizes, 1);
    memset(&r, 0, sizeof(r));
    bl_grpc_frame_parser_init(&p, 10);
    ok(feed(&p, buf, len, &r) == 0 && check(&r, sizes, 1),
       "a message of exactly the limit");
    result_free(&r);
    bl_grpc_frame_parser_free(&p);

    /* one over: refused as soon as the prefix is in */

    sizes[0] = 11;
    len = build(buf, sizes, 1);
    bl_grpc_frame_parser_init(&p, 10);
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf + 4, &msg);
    is_int(rc, BL_AGAIN, "4 bytes of a prefix: again");
    rc = bl_grpc_frame_parse(&p, &pos, buf + 5, &msg);
    is_int(rc, BL_ERROR, "limit + 1: error on the prefix alone");
    is_int(p.status, BL_GRPC_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED");
    is_str(p.err, "grpc: received message larger than max (11 vs. 10)",
           "grpc-go's text");
    rc = bl_grpc_frame_parse(&p, &pos, buf + len, &msg);
    is_int(rc, BL_ERROR, "an error sticks");
    bl_grpc_frame_parser_free(&p);

    /* 4 GiB - 1 declared */

    memcpy(buf, "\0\xff\xff\xff\xff", 5);
    bl_grpc_frame_parser_init(&p, 2 * 1024 * 1024);
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf + 5, &msg);
    is_int(rc, BL_ERROR, "a 4 GiB message");
    is_str(p.err,
           "grpc: received message larger than max (4294967295 vs. 2097152)",
           "its text");
    bl_grpc_frame_parser_free(&p);

    /* the compressed flag: we negotiate no encoding */

    memcpy(buf, "\1\0\0\0\1x", 6);
    bl_grpc_frame_parser_init(&p, 10);
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf + 6, &msg);
    is_int(rc, BL_ERROR, "compressed flag: error");
    is_int(p.status, BL_GRPC_INTERNAL, "compressed flag: INTERNAL");
    is_str(p.err, "grpc: compressed flag set with identity or empty encoding",
           "compressed flag: grpc-go's text");
    bl_grpc_frame_parser_free(&p);

    memcpy(buf, "\2\0\0\0\1x", 6);
    bl_grpc_frame_parser_init(&p, 10);
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf + 6, &msg);
    is_int(rc, BL_ERROR, "flag 2: error");
    is_str(p.err, "grpc: received unexpected payload format 2",
           "flag 2: grpc-go's text");
    bl_grpc_frame_parser_free(&p);

    /* oversized and compressed: the size is reported, as grpc-go does */

    memcpy(buf, "\1\0\0\0\x20", 5);
    bl_grpc_frame_parser_init(&p, 10);
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf + 5, &msg);
    is_int(p.status, BL_GRPC_RESOURCE_EXHAUSTED,
           "oversized and compressed: RESOURCE_EXHAUSTED");
    bl_grpc_frame_parser_free(&p);

    /* empty input */

    bl_grpc_frame_parser_init(&p, 10);
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf, &msg);
    is_int(rc, BL_AGAIN, "no input: again");
    ok(bl_grpc_frame_idle(&p), "no input: idle");
    pos = buf;
    rc = bl_grpc_frame_parse(&p, &pos, buf + 1, &msg);
    ok(rc == BL_AGAIN && !bl_grpc_frame_idle(&p),
       "one byte of a prefix: not idle");
    bl_grpc_frame_parser_free(&p);
}


static void
test_writer(void)
{
    u_char    pfx[5];
    bl_buf_t  b;

    bl_grpc_frame_prefix(pfx, 0x01020304);
    is_mem(pfx, 5, "\0\1\2\3\4", 5, "prefix is flag 0, big-endian length");

    memset(&b, 0, sizeof(b));
    ok(bl_grpc_frame_write(&b, (const u_char *) "hello", 5) == BL_OK
       && bl_grpc_frame_write(&b, NULL, 0) == BL_OK, "write two messages");
    is_mem(b.pos, bl_buf_size(&b), "\0\0\0\0\5hello\0\0\0\0\0", 15,
           "framed bytes");
    bl_buf_release(&b);
}


static void
timeout_ok(const char *s, int64_t want)
{
    char     err[128];
    int64_t  ms;

    ms = -1;
    err[0] = '\0';

    if (!ok(bl_grpc_timeout_parse((const u_char *) s, strlen(s), &ms, err,
                                  sizeof(err)) == BL_OK && ms == want,
            "grpc-timeout %s is %" PRId64 " ms", s, want))
    {
        printf("#   got %" PRId64 " (%s)\n", ms, err);
    }
}


static void
timeout_bad(const char *s, size_t len, const char *want)
{
    char     err[128];
    int64_t  ms;

    err[0] = '\0';

    ok(bl_grpc_timeout_parse((const u_char *) s, len, &ms, err,
                             sizeof(err)) == BL_ERROR,
       "grpc-timeout \"%.*s\" is malformed", (int) len, s);
    is_str(err, want, "  with grpc-go's reason");
}


static void
test_timeout(void)
{
    timeout_ok("1S", 1000);
    timeout_ok("100m", 100);
    timeout_ok("20u", 1);
    timeout_ok("5n", 1);
    timeout_ok("2M", 120000);
    timeout_ok("1H", 3600000);
    timeout_ok("0m", 0);
    timeout_ok("0n", 0);
    timeout_ok("1000u", 1);
    timeout_ok("1001u", 2);
    timeout_ok("1000000n", 1);
    timeout_ok("1000001n", 2);
    timeout_ok("00000005S", 5000);
    timeout_ok("12345678m", 12345678);
    timeout_ok("99999999H", INT64_C(99999999) * 3600000);

    timeout_bad("", 0, "transport: timeout string is too short: \"\"");
    timeout_bad("S", 1, "transport: timeout string is too short: \"S\"");
    timeout_bad("123456789S", 10,
                "transport: timeout string is too long: \"123456789S\"");
    timeout_bad("1x", 2,
                "transport: timeout unit is not recognized: \"1x\"");
    timeout_bad("1s", 2,
                "transport: timeout unit is not recognized: \"1s\"");
    timeout_bad("10", 2,
                "transport: timeout unit is not recognized: \"10\"");
    timeout_bad("-1S", 3,
                "strconv.ParseInt: parsing \"-1\": invalid syntax");
    timeout_bad("1.5S", 4,
                "strconv.ParseInt: parsing \"1.5\": invalid syntax");
    timeout_bad(" 1S", 3,
                "strconv.ParseInt: parsing \" 1\": invalid syntax");
}


int
main(void)
{
    test_splits();
    test_limits();
    test_writer();
    test_timeout();

    return tap_done();
}
