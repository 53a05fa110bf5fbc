/*
 * HTTP/2 connections and the gRPC calls on their streams: the transport's
 * inside, shared by bl_h2.c (connections, nghttp2), bl_grpc.c (the calls'
 * API) and bl_grpc_server.c (listeners).  Nothing outside src/grpc/
 * includes this.
 */
#ifndef BL_H2_H
#define BL_H2_H

#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>

#include <sys/socket.h>
#include <nghttp2/nghttp2.h>


/* SETTINGS_INITIAL_WINDOW_SIZE: a 2 MiB request arrives in two windows */
#define BL_H2_STREAM_WINDOW      (1024 * 1024)
/* the connection's receive window: several such streams at full speed */
#define BL_H2_CONN_WINDOW        (4 * 1024 * 1024)
/* SETTINGS_MAX_HEADER_LIST_SIZE, enforced per request header block */
#define BL_H2_MAX_HEADER_LIST    (64 * 1024)
/* stop taking frames from nghttp2 while this much waits for the socket */
#define BL_H2_OUT_BOUND          (64 * 1024)
/* RST_STREAM frames a client may send: a burst, then per second */
#define BL_H2_RESET_BURST        10000
#define BL_H2_RESET_RATE         1000
/* the graceful shutdown's final GOAWAY, if the PING is not answered */
#define BL_H2_GOAWAY_DELAY       1.0

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

    unsigned                refused:1;     /* reset by us, logged */
    unsigned                started:1;     /* a call of a known method */
    unsigned                active:1;      /* the service owns the call */
    unsigned                delivered:1;   /* the service has seen it */
    unsigned                ended:1;       /* the final status is set */
    unsigned                headers_sent:1;
    unsigned                trailers_sent:1;
    unsigned                deferred:1;    /* the data source waits */
    unsigned                remote_closed:1;
    unsigned                closed:1;      /* nghttp2 closed the stream */
};

struct bl_h2_conn_s {
    int                     fd;
    ev_io                   rev;
    ev_io                   wev;
    ev_timer                goaway_ev;
    nghttp2_session        *session;
    bl_pool_t              *pool;
    bl_str_t                peer;          /* "127.0.0.1:53422" */
    bl_buf_t                out;           /* from nghttp2, not yet sent */

    bl_h2_link_t            link;          /* all connections */
    bl_h2_link_t            flush_link;    /* connections to flush */
    bl_h2_link_t            streams;       /* streams nghttp2 knows */
    bl_h2_link_t            closed;        /* streams to free */

    unsigned                draining:1;    /* shutdown notice sent */
    unsigned                goaway_sent:1; /* final GOAWAY submitted */
    unsigned                closing:1;     /* being torn down */
    unsigned                read_paused:1; /* output is over the bound */
};


/* the transport's limits (bl_grpc_set_limits) */
extern size_t     bl_grpc_max_recv_message;
extern uint32_t   bl_grpc_max_concurrent_streams;


/* bl_h2.c */
bl_int_t bl_h2_init(void);
/* take an accepted socket (non-blocking); closes it on failure */
bl_int_t bl_h2_conn_open(int fd, const struct sockaddr *sa,
    socklen_t socklen);
void bl_h2_shutdown(int graceful);
bl_uint_t bl_h2_connections(void);

/* queued output or a final status for the stream: tell nghttp2 */
bl_int_t bl_h2_stream_output(bl_h2_stream_t *st);
/* set the final status (service's or transport's) and send it */
void bl_h2_stream_end(bl_h2_stream_t *st, int status, const u_char *msg,
    size_t len);
/* RST_STREAM: nghttp2 closes the stream, a running call is cancelled */
void bl_h2_stream_reset(bl_h2_stream_t *st, uint32_t code);

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
