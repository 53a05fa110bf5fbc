/*
 * The gRPC server as the worker process sees it: start accepting on the
 * cycle's gRPC listeners, stop, drain, count what is left.
 */
#ifndef BL_GRPC_SERVER_H
#define BL_GRPC_SERVER_H

#include <bl_core.h>
#include <bl_grpc.h>

#include <openssl/ssl.h>

/*
 * In the worker: accept on every gRPC listener (not http); those with
 * `ssl` speak TLS with tls (which must then be set).
 */
bl_int_t bl_grpc_server_start(bl_cycle_t *cycle, SSL_CTX *tls);

/* stop accepting; the listening sockets stay open (the master owns them) */
void bl_grpc_server_stop_accepting(void);
/* accept again after bl_grpc_server_stop_accepting() */
void bl_grpc_server_resume_accepting(void);

/*
 * graceful: stop accepting, GOAWAY (a shutdown notice, then the final
 * one) so that clients move to new connections, let in-flight calls
 * finish; connections close as their last stream ends.
 * fast: cancel every call (answered UNAVAILABLE) and close now.
 * A graceful shutdown may be followed by a fast one (a hard deadline).
 */
void bl_grpc_server_shutdown(int graceful);

/* open client connections: the worker exits when 0 during shutdown */
bl_uint_t bl_grpc_server_connections(void);
/* open HTTP/2 streams (calls, and requests being refused) */
bl_uint_t bl_grpc_server_streams(void);

/*
 * HTTP/1.x on the gRPC port (etcd serves /health, /metrics, /version
 * there): a plaintext connection whose first bytes are a request line
 * and not the HTTP/2 preface is given to handler, which takes the socket
 * (closing it when done or on failure) and the bytes already read
 * (valid during the call only: copy them).  Without a handler such a
 * connection is refused as HTTP/2 would refuse it.  TLS connections
 * must negotiate "h2" and never get here.
 */
typedef bl_int_t (*bl_grpc_http1_pt)(int fd, const bl_str_t *peer,
    const u_char *data, size_t len);

void bl_grpc_set_http1_handler(bl_grpc_http1_pt handler);

/*
 * Whoever counts calls (metrics) is told, by method: a call of a known
 * method started; it ended with a status after usec microseconds (a
 * call the client or the connection abandoned ends CANCELLED); a request
 * message arrived; a response message was queued.  Called inside the
 * transport: count, nothing more.  NULL: nobody counts.
 */
typedef struct {
    void  (*started)(const bl_grpc_method_t *m);
    void  (*handled)(const bl_grpc_method_t *m, int status, int64_t usec);
    void  (*msg_received)(const bl_grpc_method_t *m);
    void  (*msg_sent)(const bl_grpc_method_t *m);
} bl_grpc_observer_t;

void bl_grpc_set_observer(const bl_grpc_observer_t *observer);

/*
 * Limits for new streams/connections; 0 leaves a limit as it is, so that
 * the service (receive size) and the config (streams) set theirs apart.
 * Defaults: 4 MiB (grpc-go's) and 1000 streams per connection.
 */
void bl_grpc_set_limits(size_t max_recv_message,
    uint32_t max_concurrent_streams);

#endif /* BL_GRPC_SERVER_H */
