/*
 * HTTP/1.x request heads (bl_http_parse.h).
 *
 * Finding the end of the head is incremental (a byte-at-a-time client
 * costs no rescans); the head is then parsed in one pass.  Lines may end
 * in CRLF or a bare LF, as RFC 9112 allows a server to accept.  What is
 * refused, and how:
 *   - a request line that is not `token SP target SP HTTP/1.x`: 400;
 *     another HTTP version: 505;
 *   - a head longer than max: 414 while the request line has not ended,
 *     else 431; more than BL_HTTP_MAX_HEADERS fields: 431;
 *   - a field without a colon, whitespace before the colon, a folded
 *     line, control bytes: 400;
 *   - Content-Length that is not a number, or two that differ, or with a
 *     Transfer-Encoding (request smuggling): 400;
 *   - HTTP/1.1 without Host: 400.
 */
#include <bl_core.h>
#include <bl_http_parse.h>


static bl_int_t bl_http_parse_head(const u_char *p, const u_char *end,
    bl_http_request_t *r);
static bl_int_t bl_http_parse_request_line(const u_char *p,
    const u_char *end, bl_http_request_t *r);
static bl_int_t bl_http_parse_field(const u_char *p, const u_char *end,
    bl_http_request_t *r, int *closing, int *keeping);
static void bl_http_connection_tokens(const u_char *p, const u_char *end,
    int *closing, int *keeping);
static int bl_http_is_tchar(u_char c);
static int bl_http_name_is(const u_char *p, size_t n, const char *name);


void
bl_http_parser_init(bl_http_parser_t *p)
{
    memset(p, 0, sizeof(bl_http_parser_t));
}


bl_int_t
bl_http_parse_request(bl_http_parser_t *p, const u_char *buf, size_t len,
    size_t max, bl_http_request_t *r)
{
    u_char  c;
    size_t  i, end;

    end = 0;

    for (i = p->scanned; i < len; i++) {
        c = buf[i];

        if (!p->started) {
            /* empty lines before a request (after a body we skipped) */
            if (c == '\r' || c == '\n') {
                continue;
            }

            p->started = 1;
            p->start = i;
        }

        if (c == '\n') {
            if (p->line_len == 0 && p->line_done) {
                end = i + 1;
                break;
            }

            p->line_done = 1;
            p->line_len = 0;
            continue;
        }

        if (c != '\r') {
            p->line_len++;
        }
    }

    p->scanned = i;

    memset(r, 0, sizeof(bl_http_request_t));
    r->content_length = -1;

    if (end == 0) {
        if (len >= max) {
            r->status = p->line_done ? 431 : 414;
            return BL_ERROR;
        }

        return BL_AGAIN;
    }

    if (end > max) {
        r->status = 431;
        return BL_ERROR;
    }

    r->head_len = end;

    return bl_http_parse_head(buf + p->start, buf + end, r);
}


/* the lines from the request line to the empty one (included) */

static bl_int_t
bl_http_parse_head(const u_char *p, const u_char *end, bl_http_request_t *r)
{
    int            closing, keeping;
    bl_uint_t      n;
    const u_char  *eol, *last;

    eol = memchr(p, '\n', (size_t) (end - p));
    last = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;

    if (bl_http_parse_request_line(p, last, r) != BL_OK) {
        return BL_ERROR;
    }

    closing = 0;
    keeping = 0;
    n = 0;

    for (p = eol + 1; p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t) (end - p));
        last = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;

        if (last == p) {
            break;          /* the empty line */
        }

        if (++n > BL_HTTP_MAX_HEADERS) {
            r->status = 431;
            return BL_ERROR;
        }

        if (bl_http_parse_field(p, last, r, &closing, &keeping) != BL_OK) {
            return BL_ERROR;
        }
    }

    if (r->minor == 1 && !r->has_host) {
        r->status = 400;
        return BL_ERROR;
    }

    if (r->chunked && r->content_length >= 0) {
        r->status = 400;
        return BL_ERROR;
    }

    r->keep_alive = r->minor == 1 ? !closing : (keeping && !closing);

    return BL_OK;
}


static bl_int_t
bl_http_parse_request_line(const u_char *p, const u_char *end,
    bl_http_request_t *r)
{
    const u_char  *s, *q;

    r->status = 400;

    /* method */

    for (s = p; p < end && bl_http_is_tchar(*p); p++) { /* void */ }

    if (p == s || p == end || *p != ' ') {
        return BL_ERROR;
    }

    r->method.data = (u_char *) s;
    r->method.len = (size_t) (p - s);

    /* request target: visible ASCII up to the next space */

    for (s = ++p; p < end && *p > 0x20 && *p < 0x7f; p++) { /* void */ }

    if (p == s || p == end || *p != ' ') {
        return BL_ERROR;
    }

    r->target.data = (u_char *) s;
    r->target.len = (size_t) (p - s);

    /* version: the rest of the line */

    s = ++p;

    if (end - s != 8 || memcmp(s, "HTTP/", 5) != 0
        || s[5] < '0' || s[5] > '9' || s[6] != '.'
        || s[7] < '0' || s[7] > '9')
    {
        return BL_ERROR;
    }

    if (s[5] != '1' || (s[7] != '0' && s[7] != '1')) {
        r->status = 505;
        return BL_ERROR;
    }

    r->minor = s[7] - '0';

    /* path and query; absolute-form loses its scheme and authority */

    s = r->target.data;
    q = s + r->target.len;

    if (q - s > 7 && (memcmp(s, "http://", 7) == 0
                      || (q - s > 8 && memcmp(s, "https://", 8) == 0)))
    {
        s += (s[4] == 's') ? 8 : 7;

        while (s < q && *s != '/' && *s != '?') {
            s++;
        }

        r->has_host = 1;    /* the authority counts as one */
    }

    r->path.data = (u_char *) s;

    while (s < q && *s != '?') {
        s++;
    }

    r->path.len = (size_t) (s - r->path.data);

    if (s < q) {
        r->query.data = (u_char *) s + 1;
        r->query.len = (size_t) (q - s - 1);
    }

    r->status = 0;

    return BL_OK;
}


/* one "name: value" line (its end without the line break) */

static bl_int_t
bl_http_parse_field(const u_char *p, const u_char *end, bl_http_request_t *r,
    int *closing, int *keeping)
{
    size_t         nlen;
    int64_t        n;
    const u_char  *name, *v, *vend;

    r->status = 400;

    name = p;

    while (p < end && bl_http_is_tchar(*p)) {
        p++;
    }

    /* no name (a folded line starts with a blank), or a blank before
     * the colon: both refused by RFC 9112 */
    if (p == name || p == end || *p != ':') {
        return BL_ERROR;
    }

    nlen = (size_t) (p - name);
    v = p + 1;

    for (p = v; p < end; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            return BL_ERROR;
        }
    }

    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }

    vend = end;

    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) {
        vend--;
    }

    if (bl_http_name_is(name, nlen, "host")) {
        if (r->has_host && r->minor == 1) {
            /* two Host fields: RFC 9112 says 400 */
            return BL_ERROR;
        }

        r->has_host = 1;

    } else if (bl_http_name_is(name, nlen, "content-length")) {
        if (bl_atoi(v, (size_t) (vend - v), &n) != BL_OK
            || (r->content_length >= 0 && r->content_length != n))
        {
            return BL_ERROR;
        }

        r->content_length = n;

    } else if (bl_http_name_is(name, nlen, "transfer-encoding")) {
        r->chunked = 1;

    } else if (bl_http_name_is(name, nlen, "expect")) {
        r->expect = 1;

    } else if (bl_http_name_is(name, nlen, "connection")) {
        bl_http_connection_tokens(v, vend, closing, keeping);
    }

    r->status = 0;

    return BL_OK;
}


/* "close" and "keep-alive" among a Connection field's tokens */

static void
bl_http_connection_tokens(const u_char *p, const u_char *end, int *closing,
    int *keeping)
{
    const u_char  *s;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        for (s = p; p < end && *p != ',' && *p != ' ' && *p != '\t'; p++) {
            /* void */
        }

        if (bl_http_name_is(s, (size_t) (p - s), "close")) {
            *closing = 1;

        } else if (bl_http_name_is(s, (size_t) (p - s), "keep-alive")) {
            *keeping = 1;
        }
    }
}


bl_int_t
bl_http_next_arg(const bl_str_t *query, size_t *pos, bl_str_t *name,
    bl_str_t *value)
{
    size_t         i;
    const u_char  *p, *end, *eq;

    if (*pos >= query->len) {
        /* also when there is no query at all (data NULL) */
        return BL_DONE;
    }

    p = query->data + *pos;
    end = query->data + query->len;

    for ( ;; ) {
        if (p >= end) {
            *pos = query->len;
            return BL_DONE;
        }

        if (*p != '&' && *p != ';') {
            break;
        }

        p++;
    }

    for (i = 0; p + i < end && p[i] != '&' && p[i] != ';'; i++) {
        /* void */
    }

    eq = memchr(p, '=', i);

    name->data = (u_char *) p;
    name->len = eq ? (size_t) (eq - p) : i;

    if (eq != NULL) {
        value->data = (u_char *) eq + 1;
        value->len = (size_t) (p + i - eq - 1);

    } else {
        value->data = (u_char *) p + i;
        value->len = 0;
    }

    *pos = (size_t) (p + i - query->data);

    return BL_OK;
}


static int
bl_http_is_tchar(u_char c)
{
    /* RFC 9110 token characters */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}


/* a token equals a lower-case name, ignoring case */

static int
bl_http_name_is(const u_char *p, size_t n, const char *name)
{
    size_t  i;
    u_char  c;

    if (n != strlen(name)) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        c = p[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (u_char) name[i]) {
            return 0;
        }
    }

    return 1;
}
