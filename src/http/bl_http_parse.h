/*
 * HTTP/1.x request heads (request line and header fields), for the few
 * GET endpoints we serve: enough of RFC 9112 to answer any client
 * correctly, and to refuse what we do not take, without being a general
 * web server.  Bodies are not read: a request that has one is answered
 * and the connection closed after it.
 *
 * Pure code (no I/O) so that it can be unit tested byte by byte: feed
 * the bytes received so far (the same buffer, growing) until it returns
 * BL_OK or BL_ERROR; a request's bytes are then `head_len`, and the next
 * pipelined request starts after them with a fresh parser.
 */
#ifndef BL_HTTP_PARSE_H
#define BL_HTTP_PARSE_H

#include <bl_core.h>

/* header fields beyond this many: 431 */
#define BL_HTTP_MAX_HEADERS  100

typedef struct {
    size_t     scanned;      /* bytes searched for the end of the head */
    size_t     start;        /* where the request line starts */
    size_t     line_len;     /* non-CR bytes on the current line */
    unsigned   started:1;    /* past the empty lines that may lead */
    unsigned   line_done:1;  /* the request line has ended */
} bl_http_parser_t;

typedef struct {
    bl_str_t   method;
    bl_str_t   target;       /* as sent */
    bl_str_t   path;         /* target without query (and without the
                              * scheme and authority of absolute-form) */
    bl_str_t   query;        /* after '?', without it; len 0 if none */
    int        minor;        /* HTTP/1.minor: 0 or 1 */
    int64_t    content_length;   /* -1: none */
    size_t     head_len;     /* bytes of the head, leading CRLFs too */
    int        status;       /* on BL_ERROR: 400, 414, 431 or 505 */
    unsigned   chunked:1;    /* a Transfer-Encoding was sent */
    unsigned   expect:1;     /* an Expect (100-continue) was sent */
    unsigned   keep_alive:1; /* the connection may carry another */
    unsigned   has_host:1;
} bl_http_request_t;

void bl_http_parser_init(bl_http_parser_t *p);

/*
 * Parse the head at buf[0..len) (len never shrinks between calls with
 * the same parser); max bounds the head's size:
 *   BL_OK     r is filled; its strings point into buf;
 *   BL_AGAIN  the head is not complete (and shorter than max);
 *   BL_ERROR  r->status says why (answer it and close).
 */
bl_int_t bl_http_parse_request(bl_http_parser_t *p, const u_char *buf,
    size_t len, size_t max, bl_http_request_t *r);

/*
 * Query parameters: the next "name[=value]" of r->query after *pos
 * (start with 0); BL_OK, or BL_DONE when there is none.  Neither is
 * percent-decoded.
 */
bl_int_t bl_http_next_arg(const bl_str_t *query, size_t *pos,
    bl_str_t *name, bl_str_t *value);

#endif /* BL_HTTP_PARSE_H */
