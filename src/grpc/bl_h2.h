/*
 * HTTP/2 connections and the gRPC calls on their streams: the transport's
 * inside, shared by bl_h2*.c (connections, nghttp2, calls, output,
 * shutdown), bl_grpc.c (the calls' API) and bl_grpc_server.c
 * (listeners).  Nothing outside src/grpc/ includes this.
 */
#ifndef BL_H2_H
#define BL_H2_H

#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>
#include <bl_grpc_server.h>

#include <sys/socket.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>


/* SETTINGS_INITIAL_WINDOW_SIZE: a 2 MiB request arrives in two windows */
#define BL_H2_STREAM_WINDOW      (1024 * 1024)
/* the connection's receive window: several such streams at full speed */
#define BL_H2_CONN_WINDOW        (4 * 1024 * 1024)
/* SETTINGS_MAX_HEADER_LIST_SIZE, enforced per request header block */
#define BL_H2_MAX_HEADER_LIST    (64 * 1024)
/* stop taking frames from nghttp2 while this much waits for the socket */
#define BL_H2_OUT_BOUND          (64 * 1024)
/* RST_STREAM frames a client may send: a burst, then per second */
/* a drained call's output buffer larger than this is freed */
#define BL_H2_OUT_KEEP           (64 * 1024)
#define BL_H2_RESET_BURST        10000
#define BL_H2_RESET_RATE         1000
/* the graceful shutdown's final GOAWAY, if the PING is not answered */
#define BL_H2_GOAWAY_DELAY       1.0
/* from accept to the end of the TLS handshake or the first bytes */
#define BL_H2_HANDSHAKE_TIMEOUT  60.0

/* grpc-go's default receive limit, until a service sets its own */
#define BL_GRPC_DEFAULT_MAX_RECV     (4 * 1024 * 1024)
/*
 * etcd 3.4 advertises 2^32-1 (no limit); grpc-go clients queue streams
 * beyond the advertised number rather than fail them, so a limit costs
 * nothing but bounds what one connection may hold (every stream has a
 * pool, a reassembly buffer and an output queue).
 */
#define BL_GRPC_DEFAULT_MAX_STREAMS  1000


/* intrusive doubly linked lists, circular with a sentinel */

typedef struct bl_h2_link_s  bl_h2_link_t;

struct bl_h2_link_s {
    bl_h2_link_t  *prev;
    bl_h2_link_t  *next;
};

#define bl_h2_list_init(h)   do { (h)->prev = (h); (h)->next = (h); } while (0)
#define bl_h2_list_empty(h)  ((h)->next == (h))
#define bl_h2_linked(l)      ((l)->next != NULL)

#define bl_h2_list_data(l, type, field)                                       \
    ((type *) (void *) ((u_char *) (l) - offsetof(type, field)))

static inline void
bl_h2_list_add(bl_h2_link_t *h, bl_h2_link_t *l)
{
    l->prev = h->prev;
    l->next = h;
    h->prev->next = l;
    h->prev = l;
}

static inline void
bl_h2_list_remove(bl_h2_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = NULL;
    l->next = NULL;
}


typedef struct bl_h2_conn_s    bl_h2_conn_t;
typedef struct bl_h2_stream_s  bl_h2_stream_t;

/*
 * A request stream, and the gRPC call on it.  It lives from the request
 * HEADERS until nghttp2 closes the stream (a call still running is
 * cancelled then) or the connection closes; it is freed after nghttp2
 * returns.  The service owns the call while `active`: from the request
 * until bl_grpc_finish() or on_cancel.  The public bl_grpc_call_t comes
 * first so that a call pointer is a stream pointer.
 */
struct bl_h2_stream_s {
    bl_grpc_call_t          call;
    bl_h2_conn_t           *conn;
    bl_h2_link_t            link;          /* conn->streams or ->closed */
    int32_t                 id;

    /* request headers we look at (copies in call.pool) */
    bl_str_t                method;        /* :method */
    bl_str_t                path;          /* :path */
    bl_str_t                content_type;
    bl_str_t                te;
    bl_str_t                timeout;       /* grpc-timeout */
    bl_str_t                encoding;      /* grpc-encoding */
    size_t                  header_bytes;  /* as SETTINGS counts them */

    bl_grpc_frame_parser_t  parser;
    bl_str_t                request;       /* the unary request */
    bl_uint_t               nrequests;

    bl_buf_t                out;           /* framed, not yet in nghttp2 */
    ev_timer                deadline_ev;

    int                     status;        /* the final status */
    bl_str_t                message;       /* percent-encoded */
    int64_t                 start_usec;    /* for the observer */

    unsigned                refused:1;     /* reset by us, logged */
    unsigned                pseudo:4;      /* :method :scheme :path :authority seen */
    unsigned                regular:1;     /* a regular header seen */
    unsigned                started:1;     /* a call of a known method */
    unsigned                active:1;      /* the service owns the call */
    unsigned                delivered:1;   /* the service has seen it */
    unsigned                ended:1;       /* the final status is set */
    unsigned                headers_sent:1;
    unsigned                trailers_sent:1;
    unsigned                deferred:1;    /* the data source waits */
    unsigned                remote_closed:1;
    unsigned                closed:1;      /* nghttp2 closed the stream */
    unsigned                observed:1;    /* its end was counted */
};

struct bl_h2_conn_s {
    int                     fd;            /* -1 once handed over */
    ev_io                   rev;
    ev_io                   wev;
    ev_timer                goaway_ev;
    ev_timer                timeout_ev;    /* handshake, first bytes */
    nghttp2_session        *session;       /* NULL until HTTP/2 starts */
    SSL                    *ssl;           /* NULL: plaintext (h2c) */
    bl_pool_t              *pool;
    bl_str_t                peer;          /* "127.0.0.1:53422" */
    bl_buf_t                out;           /* from nghttp2, not yet sent */

    bl_h2_link_t            link;          /* all connections */
    bl_h2_link_t            flush_link;    /* connections to flush */
    bl_h2_link_t            streams;       /* streams nghttp2 knows */
    bl_h2_link_t            closed;        /* streams to free */

    u_char                  sniff[4];      /* first bytes, undecided */
    u_char                  sniff_len;

    unsigned                handshaking:1; /* TLS handshake not done */
    unsigned                sniffing:1;    /* h2c or HTTP/1.x: not known */
    unsigned                draining:1;    /* shutdown notice sent */
    unsigned                goaway_sent:1; /* final GOAWAY submitted */
    unsigned                closing:1;     /* being torn down */
    unsigned                read_paused:1; /* output is over the bound */
    unsigned                tls_read_wants_write:1;
    unsigned                tls_write_wants_read:1;
    unsigned                tls_failed:1;  /* no close_notify may follow */
};


/* the transport's limits (bl_grpc_set_limits) */
extern size_t     bl_grpc_max_recv_message;
extern uint32_t   bl_grpc_max_concurrent_streams;


#if (HAVE_NGHTTP2_SUBMIT_RESPONSE2)
typedef nghttp2_ssize  bl_h2_ssize_t;
#else
typedef ssize_t        bl_h2_ssize_t;
#endif

/* the next frames nghttp2 has to send (0: none, < 0: an error) */
static inline bl_h2_ssize_t
bl_h2_mem_send(nghttp2_session *session, const uint8_t **data)
{
#if (HAVE_NGHTTP2_SESSION_MEM_RECV2)
    return nghttp2_session_mem_send2(session, data);
#else
    return nghttp2_session_mem_send(session, data);
#endif
}

/* a length-carrying string equals a literal */
#define bl_h2_is(p, n, lit)                                                   \
    ((n) == sizeof(lit) - 1 && memcmp(p, lit, sizeof(lit) - 1) == 0)

#define bl_h2_nv(nv, n, v, vlen)                                              \
    do {                                                                      \
        (nv)->name = (uint8_t *) (n);                                         \
        (nv)->namelen = sizeof(n) - 1;                                        \
        (nv)->value = (uint8_t *) (v);                                        \
        (nv)->valuelen = (vlen);                                              \
        (nv)->flags = NGHTTP2_NV_FLAG_NONE;                                   \
    } while (0)


/* bl_h2.c: accepting connections, TLS handshake, sniffing h2c */
extern bl_h2_link_t     bl_h2_conns;
extern bl_uint_t        bl_h2_nconns;
extern bl_uint_t        bl_h2_nstreams;
extern bl_grpc_http1_pt bl_h2_http1_handler;
extern const bl_grpc_observer_t  *bl_h2_observer;

bl_int_t bl_h2_init(void);
/*
 * Take an accepted socket (non-blocking); with ctx, TLS is spoken on it.
 * Closes it on failure.
 */
bl_int_t bl_h2_conn_open(int fd, const struct sockaddr *sa,
    socklen_t socklen, SSL_CTX *ctx);
/* the TLS handshake goes on; HTTP/2 starts when it is done */
void bl_h2_conn_handshake(bl_h2_conn_t *c);
/*
 * The first bytes of a plaintext connection (data may start with bytes
 * kept from before): BL_OK HTTP/2 started, feed them all to it; BL_AGAIN
 * undecided, they are kept; BL_DONE the connection was handed over or
 * closed (c is gone).
 */
bl_int_t bl_h2_conn_sniff(bl_h2_conn_t *c, const u_char *data, size_t len);

/* bl_h2_io.c: a connection's I/O */
void bl_h2_io_init(void);
void bl_h2_read_handler(struct ev_loop *loop, ev_io *w, int revents);
void bl_h2_write_handler(struct ev_loop *loop, ev_io *w, int revents);
void bl_h2_flush_handler(struct ev_loop *loop, ev_prepare *w, int revents);
/* read what the socket has and give it to nghttp2, then flush */
void bl_h2_conn_read(bl_h2_conn_t *c);
/* flush the connection before the loop sleeps again */
void bl_h2_conn_post(bl_h2_conn_t *c);
/* write what nghttp2 has: BL_OK, or BL_DONE when c was closed (freed) */
bl_int_t bl_h2_conn_flush(bl_h2_conn_t *c);
/* one best-effort write of what is queued, before an abort */
void bl_h2_conn_send_now(bl_h2_conn_t *c);
/* cancel its calls, free everything; only from our own handlers */
void bl_h2_conn_close(bl_h2_conn_t *c);
/* free the streams nghttp2 closed, once it returned */
void bl_h2_free_closed(bl_h2_conn_t *c);

/* bl_h2_session.c: the nghttp2 callbacks */
void bl_h2_session_callbacks(nghttp2_session_callbacks *cbs);

/* bl_h2_stream.c: the calls on request streams */
bl_h2_stream_t *bl_h2_stream_create(bl_h2_conn_t *c, int32_t id);
/* the request headers are complete */
void bl_h2_stream_start(bl_h2_stream_t *st);
void bl_h2_stream_data(bl_h2_stream_t *st, const u_char *data, size_t len);
/* the client ended its side */
void bl_h2_stream_half_close(bl_h2_stream_t *st);
/* the service lets the call go: exactly once, if it knew of it */
void bl_h2_stream_cancel(bl_h2_stream_t *st);
/* the transport ends a running call with an error status */
void bl_h2_stream_fail(bl_h2_stream_t *st, int status, const char *text);
/* set the final status (service's or transport's) and send it */
void bl_h2_stream_end(bl_h2_stream_t *st, int status, const u_char *msg,
    size_t len);
void bl_h2_stream_free(bl_h2_stream_t *st);

/* microseconds of a monotonic clock, for call durations */
int64_t bl_h2_usec(void);

/* bl_h2_output.c: responses, trailers and resets */
/* queued output or a final status for the stream: tell nghttp2 */
bl_int_t bl_h2_stream_output(bl_h2_stream_t *st);
/* the status in trailers (http_status NULL) or as Trailers-Only */
bl_int_t bl_h2_submit_trailers(bl_h2_stream_t *st, const char *http_status);
/* RST_STREAM: nghttp2 closes the stream, a running call is cancelled */
void bl_h2_stream_reset(bl_h2_stream_t *st, uint32_t code);

/* bl_h2_shutdown.c: graceful drain and fast close */
void bl_h2_shutdown(int graceful);
/* the drain's timer (c->goaway_ev): the PING was not answered in time */
void bl_h2_goaway_handler(struct ev_loop *loop, ev_timer *w, int revents);
/* the final GOAWAY of a graceful drain */
void bl_h2_conn_goaway(bl_h2_conn_t *c);
/* close now, cancelling (and with answer, failing) the running calls */
void bl_h2_conn_abort(bl_h2_conn_t *c, int answer);

/* bl_grpc.c */
const bl_grpc_method_t *bl_grpc_find_method(const bl_str_t *path);
/*
 * the UNIMPLEMENTED text for a path no method has: grpc-go's "unknown
 * service S", "unknown method M for service S" or "malformed method
 * name: P"
 */
void bl_grpc_unknown_method_text(const bl_str_t *path, char *buf,
    size_t size);

#endif /* BL_H2_H */
