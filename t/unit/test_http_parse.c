/*
 * HTTP/1.x request heads: the fields taken out, every split of a request
 * into reads, pipelined requests, the size limits, bad request lines and
 * fields, keep-alive rules, query arguments; and random inputs parsed
 * whole and byte by byte must agree (and, under ASan, stay in bounds).
 */
#include <bl_core.h>
#include <bl_http_parse.h>

#include "tap.h"


#define MAX  1024


/* parse all of s at once: the return code, r filled */
static bl_int_t
parse(const char *s, size_t len, size_t max, bl_http_request_t *r)
{
    bl_http_parser_t  p;

    bl_http_parser_init(&p);
    return bl_http_parse_request(&p, (const u_char *) s, len, max, r);
}


static int
status_of(const char *s)
{
    bl_http_request_t  r;

    if (parse(s, strlen(s), MAX, &r) != BL_ERROR) {
        return 0;
    }

    return r.status;
}


/* feeding s one byte more at a time gives AGAIN until the last byte */
static int
split_agrees(const char *s, size_t len, bl_int_t *rc, bl_http_request_t *r)
{
    size_t            i;
    bl_int_t          x;
    bl_http_parser_t  p;

    bl_http_parser_init(&p);

    for (i = 1; i <= len; i++) {
        x = bl_http_parse_request(&p, (const u_char *) s, i, MAX, r);

        if (x != BL_AGAIN) {
            *rc = x;
            return i == len || x == BL_ERROR;
        }
    }

    *rc = BL_AGAIN;
    return 1;
}


static int
streq(const bl_str_t *s, const char *want)
{
    return s->len == strlen(want) && memcmp(s->data, want, s->len) == 0;
}


static void
test_simple(void)
{
    bl_int_t           rc;
    bl_http_request_t  r;
    const char        *s;

    s = "GET /health HTTP/1.1\r\nHost: localhost:2379\r\n"
        "User-Agent: curl/7.88\r\nAccept: */*\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    is_int(rc, BL_OK, "a simple GET");
    ok(streq(&r.method, "GET"), "  method");
    ok(streq(&r.target, "/health"), "  target");
    ok(streq(&r.path, "/health"), "  path");
    is_int(r.query.len, 0, "  no query");
    is_int(r.minor, 1, "  HTTP/1.1");
    is_int(r.head_len, strlen(s), "  head length is the whole request");
    ok(r.keep_alive, "  keep-alive by default in 1.1");
    ok(r.has_host, "  has Host");
    is_int(r.content_length, -1, "  no Content-Length");

    s = "GET /readyz?verbose&exclude=data_corruption HTTP/1.0\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    is_int(rc, BL_OK, "HTTP/1.0 without Host");
    ok(streq(&r.path, "/readyz"), "  path before '?'");
    ok(streq(&r.query, "verbose&exclude=data_corruption"), "  query");
    ok(!r.keep_alive, "  1.0 closes by default");

    s = "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && r.keep_alive, "1.0 with Connection: Keep-Alive");

    s = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: TE, close\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && !r.keep_alive, "1.1 with Connection: TE, close");

    s = "GET /x HTTP/1.1\nHost: a\n\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && streq(&r.path, "/x") && r.head_len == strlen(s),
       "bare LF line ends");

    s = "\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && streq(&r.method, "GET") && r.head_len == strlen(s),
       "empty lines before the request line are skipped");

    s = "GET http://example.com:2379/version?a=1 HTTP/1.1\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && streq(&r.path, "/version") && streq(&r.query, "a=1"),
       "absolute-form: path and query, the authority is the Host");

    s = "POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"
        "hello world!";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && r.content_length == 12 && streq(&r.method, "POST")
       && r.head_len == strlen(s) - 12,
       "a POST with a body: Content-Length, the head ends before it");

    s = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && r.chunked, "Transfer-Encoding noted");

    s = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
        "Expect: 100-continue\r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && r.expect && r.content_length == 5000,
       "Expect: 100-continue noted");

    s = "GET / HTTP/1.1\r\nHost: a\r\nX-Long:   spaced value \t \r\n\r\n";
    rc = parse(s, strlen(s), MAX, &r);
    is_int(rc, BL_OK, "blanks around a value");
}


static void
test_splits(void)
{
    int                i, good;
    bl_int_t           rc;
    bl_http_request_t  r, whole;
    static const char *reqs[] = {
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\nGET /metrics HTTP/1.0\r\nA: b\r\nC: d\r\n\r\n",
        "GET /a HTTP/1.1\nHost: x\n\n",
        "GET /a HTTP/1.1\r\nHost: x\n\r\n",
        "BAD REQUEST\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
    };

    for (i = 0; i < (int) bl_nelems(reqs); i++) {
        (void) parse(reqs[i], strlen(reqs[i]), MAX, &whole);
        good = split_agrees(reqs[i], strlen(reqs[i]), &rc, &r);
        ok(good && r.status == whole.status && r.head_len == whole.head_len
           && r.path.len == whole.path.len,
           "byte by byte = at once: request %d", i);
    }

    rc = parse("GET / HTTP/1.1\r\nHost: x\r\n", 25, MAX, &r);
    is_int(rc, BL_AGAIN, "no empty line yet: AGAIN");
    rc = parse("GET / HTTP/1.1\r\nHost: x\r\n\r", 26, MAX, &r);
    is_int(rc, BL_AGAIN, "a CR of the empty line: AGAIN");
    rc = parse("", 0, MAX, &r);
    is_int(rc, BL_AGAIN, "nothing: AGAIN");
    rc = parse("\r\n\r\n", 4, MAX, &r);
    is_int(rc, BL_AGAIN, "only empty lines: AGAIN");
}


static void
test_pipelining(void)
{
    size_t             off;
    bl_int_t           rc;
    bl_http_request_t  r;
    const char        *s;

    s = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /metr";

    rc = parse(s, strlen(s), MAX, &r);
    ok(rc == BL_OK && streq(&r.path, "/health"), "pipelined: the first");
    off = r.head_len;

    rc = parse(s + off, strlen(s) - off, MAX, &r);
    ok(rc == BL_OK && streq(&r.path, "/version"), "pipelined: the second");
    off += r.head_len;

    rc = parse(s + off, strlen(s) - off, MAX, &r);
    is_int(rc, BL_AGAIN, "pipelined: the third is partial");
    is_int(strlen(s) - off, 9, "  and starts right after the second");
}


static void
test_limits(void)
{
    int                i;
    char               buf[4 * MAX];
    size_t             n;
    bl_int_t           rc;
    bl_http_request_t  r;

    /* a request line longer than the limit: 414 */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    rc = parse(buf, MAX, MAX, &r);
    ok(rc == BL_ERROR && r.status == 414, "a long request line: 414");

    /* long headers: 431 */
    n = (size_t) snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\n");
    while (n < MAX) {
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "X-Pad: %s\r\n",
                               "0123456789012345678901234567890123456789");
    }
    rc = parse(buf, MAX, MAX, &r);
    ok(rc == BL_ERROR && r.status == 431, "long headers: 431");

    /* exactly the limit is fine */
    n = (size_t) snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\n"
                          "X-Pad: ");
    memset(buf + n, 'p', MAX - n - 4);
    memcpy(buf + MAX - 4, "\r\n\r\n", 4);
    rc = parse(buf, MAX, MAX, &r);
    ok(rc == BL_OK && r.head_len == MAX, "a head of exactly the limit");

    /* too many fields: 431 */
    n = (size_t) snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; i < BL_HTTP_MAX_HEADERS + 1; i++) {
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "A:\r\n");
    }
    n += (size_t) snprintf(buf + n, sizeof(buf) - n, "\r\n");
    rc = parse(buf, n, sizeof(buf), &r);
    ok(rc == BL_ERROR && r.status == 431, "%d fields: 431",
       BL_HTTP_MAX_HEADERS + 2);
}


static void
test_bad(void)
{
    is_int(status_of("GET /x\r\n\r\n"), 400, "no version: 400");
    is_int(status_of("GET  /x HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
           "two spaces: 400");
    is_int(status_of("GET /x HTTP/1.1 \r\nHost: a\r\n\r\n"), 400,
           "a space after the version: 400");
    is_int(status_of("G(T /x HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
           "a method that is not a token: 400");
    is_int(status_of(" GET /x HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
           "a space before the method: 400");
    is_int(status_of("GET /x\x01y HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
           "a control byte in the target: 400");
    is_int(status_of("GET /x HTTP/1.1\r\n\r\n"), 400,
           "HTTP/1.1 without Host: 400");
    is_int(status_of("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400,
           "two Hosts: 400");
    is_int(status_of("GET /x HTTP/2.0\r\n\r\n"), 505, "HTTP/2.0: 505");
    is_int(status_of("GET /x HTTP/1.2\r\n\r\n"), 505, "HTTP/1.2: 505");
    is_int(status_of("GET /x HTTP/1.x\r\n\r\n"), 400, "HTTP/1.x: 400");
    is_int(status_of("GET /x FTP/1.1\r\n\r\n"), 400, "not HTTP: 400");
    is_int(status_of("GET /x HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400,
           "a field without a colon: 400");
    is_int(status_of("GET /x HTTP/1.1\r\nHost : a\r\n\r\n"), 400,
           "a space before the colon: 400");
    is_int(status_of("GET /x HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"),
           400, "a folded line: 400");
    is_int(status_of("GET /x HTTP/1.1\r\nHost: a\x01\r\n\r\n"), 400,
           "a control byte in a value: 400");
    is_int(status_of("GET /x HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), 400,
           "a lone CR in a value: 400");
    is_int(status_of("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: x1\r\n"
                     "\r\n"), 400, "Content-Length not a number: 400");
    is_int(status_of("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                     "Content-Length: 2\r\n\r\n"), 400,
           "two different Content-Lengths: 400");
    is_int(status_of("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"), 400,
           "Content-Length and Transfer-Encoding: 400");
    is_int(status_of("\x16\x03\x01\x02\x05\x01\x07\x01\xfc\x03\x03\r\n\r\n"),
           400, "a TLS ClientHello: 400");
    is_int(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505,
           "the HTTP/2 preface: 505");
}


static void
test_args(void)
{
    size_t    pos;
    bl_str_t  q, name, value;
    int       n;

    bl_str_set(&q, "verbose&exclude=a&&exclude=b;serializable=true&x=");
    pos = 0;
    n = 0;

    ok(bl_http_next_arg(&q, &pos, &name, &value) == BL_OK
       && streq(&name, "verbose") && value.len == 0, "arg without value");
    ok(bl_http_next_arg(&q, &pos, &name, &value) == BL_OK
       && streq(&name, "exclude") && streq(&value, "a"), "arg with value");
    ok(bl_http_next_arg(&q, &pos, &name, &value) == BL_OK
       && streq(&name, "exclude") && streq(&value, "b"), "after '&&'");
    ok(bl_http_next_arg(&q, &pos, &name, &value) == BL_OK
       && streq(&name, "serializable") && streq(&value, "true"),
       "after ';'");
    ok(bl_http_next_arg(&q, &pos, &name, &value) == BL_OK
       && streq(&name, "x") && value.len == 0, "empty value");
    is_int(bl_http_next_arg(&q, &pos, &name, &value), BL_DONE, "the end");

    bl_str_set(&q, "");
    pos = 0;
    while (bl_http_next_arg(&q, &pos, &name, &value) == BL_OK) {
        n++;
    }
    is_int(n, 0, "an empty query has no args");

    bl_str_null(&q);
    pos = 0;
    is_int(bl_http_next_arg(&q, &pos, &name, &value), BL_DONE,
           "no query at all (NULL) has no args");

    bl_str_set(&q, "&&;");
    pos = 0;
    is_int(bl_http_next_arg(&q, &pos, &name, &value), BL_DONE,
           "only separators: no args");
}


/* random heads made of request-ish pieces: whole = byte by byte */
static void
test_random(void)
{
    static const char *pieces[] = {
        "GET", "POST", " ", "/", "/health", "?", "verbose", "&", "=",
        "HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "\r\n", "\n", "\r", "Host",
        ":", " x", "Content-Length", "7", "Connection", "close", "\t",
        "\x00", "\xff", "Transfer-Encoding", "keep-alive", ",", "\r\n\r\n",
    };

    char               buf[512];
    size_t             n, len;
    bl_int_t           rc, rc2;
    unsigned           seed;
    int                i, bad;
    bl_http_request_t  r, r2;

    seed = 12345;
    bad = 0;

    for (i = 0; i < 20000; i++) {
        len = 0;

        if (i % 2 == 0) {
            len = (size_t) snprintf(buf, sizeof(buf), "GET /x HTTP/1.1\r\n");
        }

        while (len < sizeof(buf) - 32) {
            seed = seed * 1103515245 + 12345;
            if ((seed >> 16) % 16 == 0) {
                break;
            }
            n = strlen(pieces[(seed >> 8) % bl_nelems(pieces)]);
            if (n == 0) {
                n = 1;       /* "\x00" */
            }
            memcpy(buf + len, pieces[(seed >> 8) % bl_nelems(pieces)], n);
            len += n;
        }

        rc = parse(buf, len, 256, &r);

        {
            size_t            k;
            bl_http_parser_t  p;

            bl_http_parser_init(&p);
            rc2 = BL_AGAIN;

            for (k = 1; k <= len && rc2 == BL_AGAIN; k++) {
                rc2 = bl_http_parse_request(&p, (u_char *) buf, k, 256, &r2);
            }
        }

        if (rc != rc2 || (rc == BL_OK && r.head_len != r2.head_len)
            || (rc == BL_ERROR && r.status != r2.status
                && !(r.status == 431 || r.status == 414)))
        {
            bad++;
        }

        if (rc == BL_OK
            && (r.head_len > len || r.path.data < (u_char *) buf
                || r.path.data + r.path.len > (u_char *) buf + len))
        {
            bad++;
        }
    }

    is_int(bad, 0, "20000 random heads: at once = byte by byte, in bounds");
}


int
main(void)
{
    test_simple();
    test_splits();
    test_pipelining();
    test_limits();
    test_bad();
    test_args();
    test_random();

    return tap_done();
}
