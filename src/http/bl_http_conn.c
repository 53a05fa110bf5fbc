/*
 * HTTP/1.x connections: accepting on `http_listen` sockets, taking over
 * connections from the gRPC port, reading request heads, answering them
 * in order (keep-alive and pipelining), and closing.
 *
 * A connection holds at most BL_HTTP_MAX_HEAD bytes of requests; the
 * parser refuses a longer head.  Timeouts: a request must arrive whole
 * within http_request_timeout of its first byte (a client sending a byte
 * at a time gains nothing), an answer must be taken by the client with
 * no pause longer than that, and an idle connection is closed after
 * http_keepalive_timeout.  A body is skipped (up to a bound) so that the
 * connection can go on; a connection that closes after an answer first
 * drops what the client still sends for a moment (lingering close), or
 * the client could lose the answer to a reset.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_event.h>
#include <bl_http.h>
#include <bl_http_metrics.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>


/* connections per worker beyond which new ones are closed at once */
#define BL_HTTP_MAX_CONNS     1024
#define BL_HTTP_ACCEPT_BATCH  16
#define BL_HTTP_ACCEPT_PAUSE  0.5


typedef struct bl_http_conn_s  bl_http_conn_t;

struct bl_http_conn_s {
    int                  fd;
    ev_io                rev;
    ev_io                wev;
    ev_timer             timer;
    bl_pool_t           *pool;
    bl_str_t             peer;
    bl_http_conn_t      *prev;
    bl_http_conn_t      *next;

    u_char              *buf;          /* BL_HTTP_MAX_HEAD bytes */
    size_t               len;          /* received, not yet taken */
    bl_http_parser_t     parser;
    bl_buf_t             out;          /* answers not yet sent */
    int64_t              discard;      /* body bytes still to skip */

    unsigned             in_request:1; /* the request timer runs */
    unsigned             close_after:1;/* close once out is sent */
    unsigned             eof:1;        /* the client ended its side */
    unsigned             read_paused:1;
    unsigned             lingering:1;
};

typedef struct {
    ev_io                ev;
    bl_str_t             addr_text;
} bl_http_listener_t;


static bl_http_conn_t *bl_http_conn_create(int fd, const bl_str_t *peer);
static void bl_http_accept_handler(struct ev_loop *loop, ev_io *w,
    int revents);
static void bl_http_accept_resume(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_http_accept_enable(int on);
static void bl_http_read_handler(struct ev_loop *loop, ev_io *w,
    int revents);
static void bl_http_write_handler(struct ev_loop *loop, ev_io *w,
    int revents);
static void bl_http_timeout_handler(struct ev_loop *loop, ev_timer *w,
    int revents);
static void bl_http_conn_run(bl_http_conn_t *c);
static int bl_http_conn_requests(bl_http_conn_t *c);
static void bl_http_conn_answer(bl_http_conn_t *c, const bl_http_request_t *r,
    bl_http_response_t *resp, int keep_alive);
static bl_int_t bl_http_conn_send(bl_http_conn_t *c);
static void bl_http_conn_linger(bl_http_conn_t *c);
static void bl_http_conn_timer(bl_http_conn_t *c, int64_t msec);
static void bl_http_conn_close(bl_http_conn_t *c);
static void bl_http_conn_consume(bl_http_conn_t *c, size_t n);
static const char *bl_http_date(void);
static void bl_http_peer_text(const struct sockaddr *sa, u_char *buf,
    bl_str_t *text);


int64_t                     bl_http_request_timeout =
                                BL_HTTP_DEFAULT_REQUEST_TIMEOUT;
int64_t                     bl_http_keepalive_timeout =
                                BL_HTTP_DEFAULT_KEEPALIVE_TIMEOUT;

static bl_http_conn_t      *bl_http_conns;
static bl_uint_t            bl_http_nconns;
static bl_http_listener_t  *bl_http_listeners;
static bl_uint_t            bl_http_nlisteners;
static ev_timer             bl_http_accept_ev;
static unsigned             bl_http_accepting;


bl_int_t
bl_http_server_start(bl_cycle_t *cycle)
{
    bl_uint_t            i, n;
    bl_listening_t      *ls;
    bl_http_listener_t  *l;

    ls = cycle->listening.elts;
    n = 0;

    for (i = 0; i < cycle->listening.nelts; i++) {
        if (ls[i].http) {
            n++;
        }
    }

    ev_init(&bl_http_accept_ev, bl_http_accept_resume);

    if (n == 0) {
        return BL_OK;
    }

    bl_http_listeners = bl_calloc(n * sizeof(bl_http_listener_t));
    if (bl_http_listeners == NULL) {
        return BL_ERROR;
    }

    for (i = 0; i < cycle->listening.nelts; i++) {

        if (!ls[i].http) {
            continue;
        }

        if (ls[i].fd == -1) {
            bl_log_error(BL_LOG_EMERG, 0,
                         "listening socket %.*s (%s) is not open",
                         BL_STR_ARGS(&ls[i].addr_text),
                         ls[i].where ? ls[i].where : "?");
            return BL_ERROR;
        }

        if (bl_nonblocking(ls[i].fd) != BL_OK) {
            return BL_ERROR;
        }

        l = &bl_http_listeners[bl_http_nlisteners++];
        l->addr_text = ls[i].addr_text;

        ev_io_init(&l->ev, bl_http_accept_handler, ls[i].fd, EV_READ);
        l->ev.data = l;
    }

    bl_http_accepting = 1;
    bl_http_accept_enable(1);

    return BL_OK;
}


void
bl_http_server_stop(void)
{
    if (bl_http_accepting) {
        bl_http_accepting = 0;
        bl_http_accept_enable(0);
    }

    if (bl_loop != NULL) {
        ev_timer_stop(bl_loop, &bl_http_accept_ev);
    }

    while (bl_http_conns != NULL) {
        bl_http_conn_close(bl_http_conns);
    }

    free(bl_http_listeners);
    bl_http_listeners = NULL;
    bl_http_nlisteners = 0;
}


static void
bl_http_accept_enable(int on)
{
    bl_uint_t  i;

    for (i = 0; i < bl_http_nlisteners; i++) {
        if (on) {
            ev_io_start(bl_loop, &bl_http_listeners[i].ev);

        } else {
            ev_io_stop(bl_loop, &bl_http_listeners[i].ev);
        }
    }
}


static void
bl_http_accept_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    int                      fd;
    bl_uint_t                i;
    bl_str_t                 peer;
    socklen_t                socklen;
    bl_http_listener_t      *l;
    struct sockaddr_storage  sa;
    u_char                   text[INET6_ADDRSTRLEN + sizeof("[]:65535")];

    BL_UNUSED(revents);

    l = w->data;

    for (i = 0; i < BL_HTTP_ACCEPT_BATCH; i++) {
        fd = bl_accept(w->fd, &sa, &socklen, &l->addr_text,
                       BL_HTTP_ACCEPT_PAUSE);
        if (fd == BL_DECLINED) {
            bl_http_accept_enable(0);
            ev_timer_set(&bl_http_accept_ev, BL_HTTP_ACCEPT_PAUSE, 0.0);
            ev_timer_start(loop, &bl_http_accept_ev);
            return;
        }
        if (fd < 0) {
            return;               /* none waiting, or an error (logged) */
        }

        bl_http_peer_text((struct sockaddr *) &sa, text, &peer);

        if (bl_http_conn_create(fd, &peer) == NULL) {
            if (close(fd) == -1) {
                bl_log_error(BL_LOG_ERR, errno, "close() of socket %d "
                             "failed", fd);
            }
        }
    }
}


static void
bl_http_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(w);
    BL_UNUSED(revents);

    if (bl_http_accepting) {
        bl_http_accept_enable(1);
    }
}


bl_int_t
bl_http_conn_take(int fd, const bl_str_t *peer, const u_char *data,
    size_t len)
{
    bl_http_conn_t  *c;

    c = bl_http_conn_create(fd, peer);

    if (c == NULL) {
        if (close(fd) == -1) {
            bl_log_error(BL_LOG_ERR, errno, "close() of socket %d failed",
                         fd);
        }

        return BL_ERROR;
    }

    len = bl_min(len, BL_HTTP_MAX_HEAD);
    memcpy(c->buf, data, len);
    c->len = len;

    bl_http_conn_run(c);

    return BL_OK;
}


/* a new connection, reading; NULL (logged) if not: the caller closes fd */

static bl_http_conn_t *
bl_http_conn_create(int fd, const bl_str_t *peer)
{
    bl_pool_t       *pool;
    bl_http_conn_t  *c;

    if (bl_http_nconns >= BL_HTTP_MAX_CONNS) {
        bl_log_error(BL_LOG_WARN, 0, "%d HTTP connections already, "
                     "closing the new one, client: %.*s", BL_HTTP_MAX_CONNS,
                     BL_STR_ARGS(peer));
        return NULL;
    }

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (pool == NULL) {
        return NULL;
    }

    c = bl_pcalloc(pool, sizeof(bl_http_conn_t));
    if (c == NULL) {
        bl_pool_destroy(pool);
        return NULL;
    }

    c->buf = bl_pnalloc(pool, BL_HTTP_MAX_HEAD);

    if (c->buf == NULL
        || bl_str_dup(pool, &c->peer, peer->data, peer->len) != BL_OK)
    {
        bl_pool_destroy(pool);
        return NULL;
    }

    c->pool = pool;
    c->fd = fd;
    bl_http_parser_init(&c->parser);

    ev_io_init(&c->rev, bl_http_read_handler, fd, EV_READ);
    c->rev.data = c;
    ev_io_init(&c->wev, bl_http_write_handler, fd, EV_WRITE);
    c->wev.data = c;
    ev_init(&c->timer, bl_http_timeout_handler);
    c->timer.data = c;

    c->next = bl_http_conns;
    if (c->next != NULL) {
        c->next->prev = c;
    }
    bl_http_conns = c;
    bl_http_nconns++;
    bl_metrics_http_connections(bl_http_nconns);

    bl_log_debug("HTTP/1.x connection %d, client: %.*s", fd,
                 BL_STR_ARGS(&c->peer));

    /* the first request must come in time too */
    c->in_request = 1;
    bl_http_conn_timer(c, bl_http_request_timeout);

    ev_io_start(bl_loop, &c->rev);

    return c;
}


static void
bl_http_read_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    u_char           drop[4096];
    ssize_t          n;
    bl_http_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    if (c->lingering) {
        do {
            n = recv(c->fd, drop, sizeof(drop), 0);
        } while (n > 0);

        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK
                       && errno != EINTR))
        {
            bl_http_conn_close(c);
        }

        return;
    }

    if (c->len == BL_HTTP_MAX_HEAD) {
        /* full of requests waiting for their answers to be sent */
        ev_io_stop(bl_loop, &c->rev);
        c->read_paused = 1;
        return;
    }

    n = bl_recv(c->fd, c->buf + c->len, BL_HTTP_MAX_HEAD - c->len, &c->peer);

    if (n == BL_AGAIN) {
        return;
    }

    if (n == BL_ERROR) {
        bl_http_conn_close(c);
        return;
    }

    if (n == 0) {
        /* answer what is complete, then close */
        c->eof = 1;
        c->close_after = 1;
        ev_io_stop(bl_loop, &c->rev);

        if (c->len == 0 && bl_buf_size(&c->out) == 0) {
            bl_http_conn_close(c);
            return;
        }

    } else {
        if (!c->in_request && c->len == 0 && c->discard == 0) {
            /* a new request's first bytes: its time starts now */
            c->in_request = 1;
            bl_http_conn_timer(c, bl_http_request_timeout);
        }

        c->len += (size_t) n;
    }

    bl_http_conn_run(c);
}


static void
bl_http_write_handler(struct ev_loop *loop, ev_io *w, int revents)
{
    BL_UNUSED(loop);
    BL_UNUSED(revents);

    bl_http_conn_run(w->data);
}


static void
bl_http_timeout_handler(struct ev_loop *loop, ev_timer *w, int revents)
{
    bl_http_conn_t  *c;

    BL_UNUSED(loop);
    BL_UNUSED(revents);

    c = w->data;

    if (c->lingering) {
        bl_http_conn_close(c);
        return;
    }

    if (bl_buf_size(&c->out) > 0) {
        bl_log_error(BL_LOG_INFO, 0, "client timed out taking the answer, "
                     "client: %.*s", BL_STR_ARGS(&c->peer));

    } else if (c->in_request || c->discard > 0) {
        bl_log_error(BL_LOG_INFO, 0, "client timed out sending a request "
                     "(%zu bytes in %.3f s), client: %.*s",
                     c->len, (double) bl_http_request_timeout / 1000.0,
                     BL_STR_ARGS(&c->peer));

    } else {
        bl_log_debug("keep-alive connection %d idle, closing, client: %.*s",
                     c->fd, BL_STR_ARGS(&c->peer));
    }

    bl_http_conn_close(c);
}


/* answer what has arrived, send, and set what we wait for next */

static void
bl_http_conn_run(bl_http_conn_t *c)
{
    int       more;
    bl_int_t  rc;

    for ( ;; ) {
        more = bl_http_conn_requests(c);

        rc = bl_http_conn_send(c);

        if (rc == BL_ERROR) {
            bl_http_conn_close(c);
            return;
        }

        if (rc == BL_AGAIN) {
            /* the client must take its answers in time */
            bl_http_conn_timer(c, bl_http_request_timeout);

            if (!ev_is_active(&c->wev)) {
                ev_io_start(bl_loop, &c->wev);
            }

            if (bl_buf_size(&c->out) >= BL_HTTP_OUT_BOUND
                && ev_is_active(&c->rev))
            {
                ev_io_stop(bl_loop, &c->rev);
                c->read_paused = 1;
            }

            return;
        }

        if (ev_is_active(&c->wev)) {
            ev_io_stop(bl_loop, &c->wev);
        }

        if (c->close_after) {
            bl_http_conn_linger(c);
            return;
        }

        if (c->read_paused) {
            c->read_paused = 0;
            ev_io_start(bl_loop, &c->rev);
        }

        if (!more) {
            break;
        }
    }

    if (c->in_request || c->discard > 0) {
        /* a request or body under way: its timer keeps running */
        if (!ev_is_active(&c->timer)) {
            bl_http_conn_timer(c, bl_http_request_timeout);
        }

    } else {
        bl_http_conn_timer(c, bl_http_keepalive_timeout);
    }
}


/*
 * Take the complete requests out of the buffer and queue their answers,
 * until the output is over its bound: 1 if requests may be left for
 * later, 0 if the buffer holds no complete one.
 */

static int
bl_http_conn_requests(bl_http_conn_t *c)
{
    size_t              n;
    bl_int_t            rc;
    bl_http_request_t   r;
    bl_http_response_t  resp;

    while (!c->close_after) {

        if (bl_buf_size(&c->out) >= BL_HTTP_OUT_BOUND) {
            return 1;
        }

        if (c->discard > 0) {
            n = (size_t) bl_min((int64_t) c->len, c->discard);
            bl_http_conn_consume(c, n);
            c->discard -= (int64_t) n;

            if (c->discard > 0) {
                return 0;
            }

            if (c->len > 0) {
                c->in_request = 1;
                bl_http_conn_timer(c, bl_http_request_timeout);
            }
        }

        if (c->len == 0) {
            c->in_request = 0;
            return 0;
        }

        rc = bl_http_parse_request(&c->parser, c->buf, c->len,
                                   BL_HTTP_MAX_HEAD, &r);

        if (rc == BL_AGAIN) {
            c->in_request = 1;
            return 0;
        }

        memset(&resp, 0, sizeof(bl_http_response_t));

        if (rc == BL_ERROR) {
            bl_log_error(BL_LOG_INFO, 0, "client sent a bad request (%d), "
                         "client: %.*s", r.status, BL_STR_ARGS(&c->peer));

            resp.status = r.status;
            resp.content_type = "text/plain; charset=utf-8";

            if (bl_buf_append(&resp.body, bl_http_status_text(r.status),
                              strlen(bl_http_status_text(r.status))) != BL_OK
                || bl_buf_append(&resp.body, "\n", 1) != BL_OK)
            {
                bl_buf_release(&resp.body);
            }

            bl_http_conn_answer(c, NULL, &resp, 0);
            c->len = 0;
            c->close_after = 1;
            return 0;
        }

        bl_http_handle(&r, &resp);

        /*
         * A body is not ours to read: skip it, or close after.  A client
         * that waits for "100 Continue" sends no body after our final
         * answer: what comes next could not be told from a body.
         */

        if (r.chunked || r.content_length > BL_HTTP_MAX_DISCARD
            || (r.expect && r.content_length > 0))
        {
            r.keep_alive = 0;
        }

        bl_http_conn_answer(c, &r, &resp, r.keep_alive);

        bl_http_conn_consume(c, r.head_len);
        bl_http_parser_init(&c->parser);
        c->in_request = 0;

        if (!r.keep_alive) {
            c->close_after = 1;
            return 0;
        }

        if (r.content_length > 0) {
            c->discard = r.content_length;
        }

        if (c->len > 0 && c->discard == 0) {
            /* the next request's bytes are here: its time starts now */
            c->in_request = 1;
            bl_http_conn_timer(c, bl_http_request_timeout);
        }
    }

    return 0;
}


/*
 * Status line, fields and body into the output (a HEAD request gets the
 * fields alone); resp's body is released.
 */

static void
bl_http_conn_answer(bl_http_conn_t *c, const bl_http_request_t *r,
    bl_http_response_t *resp, int keep_alive)
{
    int     n, head_only;
    char    head[512];
    size_t  len;

    len = bl_buf_size(&resp->body);
    head_only = r != NULL && r->method.len == 4
                && memcmp(r->method.data, "HEAD", 4) == 0;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\n"
                 "%s%s%s"
                 "Content-Length: %zu\r\n"
                 "Date: %s\r\n"
                 "%s"
                 "%s"
                 "\r\n",
                 resp->status, bl_http_status_text(resp->status),
                 resp->content_type ? "Content-Type: " : "",
                 resp->content_type ? resp->content_type : "",
                 resp->content_type ? "\r\n" : "",
                 len, bl_http_date(),
                 resp->headers ? resp->headers : "",
                 !keep_alive ? "Connection: close\r\n"
                 : (r != NULL && r->minor == 0) ? "Connection: keep-alive\r\n"
                 : "");

    if (n < 0 || (size_t) n >= sizeof(head)
        || bl_buf_append(&c->out, head, (size_t) n) != BL_OK
        || (len > 0 && !head_only
            && bl_buf_append(&c->out, resp->body.pos, len) != BL_OK))
    {
        /* out of memory: what was queued goes, then the connection */
        c->close_after = 1;
    }

    bl_buf_release(&resp->body);
}


/* BL_OK when everything queued is sent, BL_AGAIN, or BL_ERROR (logged) */

static bl_int_t
bl_http_conn_send(bl_http_conn_t *c)
{
    ssize_t  n;

    while (bl_buf_size(&c->out) > 0) {
        n = bl_send(c->fd, c->out.pos, bl_buf_size(&c->out), &c->peer);

        if (n < 0) {
            return n;                    /* BL_AGAIN or BL_ERROR */
        }

        bl_buf_consume(&c->out, (size_t) n);
    }

    bl_buf_release(&c->out);

    return BL_OK;
}


static void
bl_http_conn_linger(bl_http_conn_t *c)
{
    if (c->eof) {
        bl_http_conn_close(c);
        return;
    }

    if (shutdown(c->fd, SHUT_WR) == -1) {
        bl_http_conn_close(c);
        return;
    }

    c->lingering = 1;
    c->read_paused = 0;

    if (!ev_is_active(&c->rev)) {
        ev_io_start(bl_loop, &c->rev);
    }

    bl_http_conn_timer(c, (int64_t) (BL_HTTP_LINGER * 1000));
}


static void
bl_http_conn_timer(bl_http_conn_t *c, int64_t msec)
{
    ev_timer_stop(bl_loop, &c->timer);
    ev_timer_set(&c->timer, (ev_tstamp) msec / 1000.0, 0.0);
    ev_timer_start(bl_loop, &c->timer);
}


static void
bl_http_conn_consume(bl_http_conn_t *c, size_t n)
{
    if (n >= c->len) {
        c->len = 0;
        return;
    }

    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}


static void
bl_http_conn_close(bl_http_conn_t *c)
{
    ev_io_stop(bl_loop, &c->rev);
    ev_io_stop(bl_loop, &c->wev);
    ev_timer_stop(bl_loop, &c->timer);

    if (close(c->fd) == -1) {
        bl_log_error(BL_LOG_ERR, errno, "close() of socket %d failed, "
                     "client: %.*s", c->fd, BL_STR_ARGS(&c->peer));
    }

    if (c->prev != NULL) {
        c->prev->next = c->next;

    } else {
        bl_http_conns = c->next;
    }

    if (c->next != NULL) {
        c->next->prev = c->prev;
    }

    bl_http_nconns--;
    bl_metrics_http_connections(bl_http_nconns);

    bl_buf_release(&c->out);
    bl_pool_destroy(c->pool);
}


/* "Sun, 06 Nov 1994 08:49:37 GMT", made once a second */

static const char *
bl_http_date(void)
{
    time_t         now;
    struct tm      tm;
    static time_t  cached;
    static char    text[64];

    now = time(NULL);

    if (now != cached) {
        static const char  *days[] = {
            "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
        };
        static const char  *months[] = {
            "Jan", "Feb", "Mar", "Apr", "May", "Jun",
            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
        };

        gmtime_r(&now, &tm);
        snprintf(text, sizeof(text), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached = now;
    }

    return text;
}


/* "127.0.0.1:5678" into buf (room for any address) */

static void
bl_http_peer_text(const struct sockaddr *sa, u_char *buf, bl_str_t *text)
{
    int                         n;
    char                        addr[INET6_ADDRSTRLEN];
    const struct sockaddr_in   *sin;
    const struct sockaddr_in6  *sin6;

    switch (sa->sa_family) {

    case AF_INET:
        sin = (const struct sockaddr_in *) (const void *) sa;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        n = sprintf((char *) buf, "%s:%u", addr,
                    (unsigned) ntohs(sin->sin_port));
        break;

    case AF_INET6:
        sin6 = (const struct sockaddr_in6 *) (const void *) sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        n = sprintf((char *) buf, "[%s]:%u", addr,
                    (unsigned) ntohs(sin6->sin6_port));
        break;

    default:
        n = sprintf((char *) buf, "unix:");
        break;
    }

    text->data = buf;
    text->len = (size_t) n;
}
