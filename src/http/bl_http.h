/*
 * The HTTP/1.x server for etcd's plain HTTP endpoints (/health, /livez,
 * /readyz, /version, /metrics): on `http_listen` sockets, and on the gRPC
 * client port for connections that do not speak HTTP/2 (etcd serves
 * both on 2379).  Shared by bl_http_conn.c (connections), bl_http_
 * endpoints.c (the answers) and bl_http_module.c (configuration).
 */
#ifndef BL_HTTP_H
#define BL_HTTP_H

#include <bl_core.h>
#include <bl_event.h>
#include <bl_http_parse.h>

#include <sys/socket.h>

/* a request head larger than this: 414 or 431 */
#define BL_HTTP_MAX_HEAD        8192
/* stop taking pipelined requests while this much waits for the socket */
#define BL_HTTP_OUT_BOUND       (256 * 1024)
/* a body we skip to keep the connection; longer ones close it */
#define BL_HTTP_MAX_DISCARD     (1024 * 1024)
/* after the last answer on a closing connection: read and drop what the
 * client still sends, so that our close does not reset the answer */
#define BL_HTTP_LINGER          2.0

#define BL_HTTP_DEFAULT_REQUEST_TIMEOUT    10000    /* ms */
#define BL_HTTP_DEFAULT_KEEPALIVE_TIMEOUT  75000    /* ms */

typedef struct {
    int          status;          /* 200, 404, ... */
    const char  *content_type;    /* NULL: none */
    const char  *headers;         /* more "Name: value\r\n" lines, or NULL */
    bl_buf_t     body;            /* owned: released after sending */
} bl_http_response_t;

/* the timeouts of this worker's connections, in ms */
extern int64_t  bl_http_request_timeout;
extern int64_t  bl_http_keepalive_timeout;

/* bl_http_conn.c */
/* accept on every `http_listen` socket of the cycle */
bl_int_t bl_http_server_start(bl_cycle_t *cycle);
/* stop accepting and close every connection */
void bl_http_server_stop(void);
/* a connection from the gRPC port, with its first bytes (copied) */
bl_int_t bl_http_conn_take(int fd, const bl_str_t *peer, const u_char *data,
    size_t len);

/* bl_http_endpoints.c: the answer to a request */
void bl_http_handle(const bl_http_request_t *r, bl_http_response_t *resp);

/*
 * The alarms a service layer has raised (etcd's NOSPACE, CORRUPT), for
 * /health: bit i set = alarm i raised, names[i] its name; registered by
 * that layer, since this one may not call up into it.
 */
typedef uint32_t (*bl_http_alarms_pt)(void);
void bl_http_set_alarms(bl_http_alarms_pt alarms, const char *const *names,
    size_t n);
/* "404 Not Found", ... */
const char *bl_http_status_text(int status);

#endif /* BL_HTTP_H */
