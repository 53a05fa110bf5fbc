/*
 * The gRPC server as the worker process sees it: start accepting on the
 * cycle's gRPC listeners, stop, drain, count what is left.
 */
#ifndef BL_GRPC_SERVER_H
#define BL_GRPC_SERVER_H

#include <bl_core.h>

/* in the worker: accept on every gRPC listener (not http, not ssl) */
bl_int_t bl_grpc_server_start(bl_cycle_t *cycle);

/* stop accepting; the listening sockets stay open (the master owns them) */
void bl_grpc_server_stop_accepting(void);

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

/*
 * Limits for new streams/connections; 0 leaves a limit as it is, so that
 * the service (receive size) and the config (streams) set theirs apart.
 * Defaults: 4 MiB (grpc-go's) and 1000 streams per connection.
 */
void bl_grpc_set_limits(size_t max_recv_message,
    uint32_t max_concurrent_streams);

#endif /* BL_GRPC_SERVER_H */
