/*
 * Listening sockets.  The master opens them (binding needs no root after
 * that), children inherit them; on reload a socket whose address did not
 * change is kept open and handed to the new generation.
 */
#ifndef BL_SOCKET_H
#define BL_SOCKET_H

#include <sys/socket.h>
#include <netinet/in.h>

typedef struct {
    struct sockaddr_storage  sockaddr;
    socklen_t                socklen;
    bl_str_t                 addr_text;  /* "127.0.0.1:2379" */
    int                      fd;         /* -1 until opened */
    int                      backlog;
    unsigned                 ssl:1;      /* `listen ... ssl` */
    unsigned                 http:1;     /* http_listen: health/metrics */
    unsigned                 inherited:1;/* taken over from the old cycle */
    const char              *where;      /* conf file:line, for messages */
} bl_listening_t;

/* parse "ADDR:PORT", "[v6]:PORT", "PORT", "*:PORT" (addr_text is put in
 * the pool); BL_ERROR if bad.  Names are not resolved. */
bl_int_t bl_parse_addr_port(bl_pool_t *pool, const bl_str_t *text,
    bl_listening_t *ls, int default_port);
/* bind+listen every socket in the array not yet open; fds keep CLOEXEC
 * off so that children inherit them */
bl_int_t bl_open_listening(bl_array_t *listening, bl_array_t *old);
void bl_close_listening(bl_array_t *listening);
/* a reload failed after opening: hand borrowed sockets back to old */
void bl_return_listening(bl_array_t *listening, bl_array_t *old);
/* -t: check each address can be bound (in use by us is only a notice) */
bl_int_t bl_test_listening(bl_array_t *listening);
bl_int_t bl_nonblocking(int fd);

/*
 * Accept one connection, non-blocking and close-on-exec: the new fd, or
 * BL_AGAIN (none waiting), BL_DECLINED (descriptors or memory ran out:
 * logged, the caller pauses accepting for `pause` seconds), BL_ERROR
 * (logged).  Interrupted and aborted connections are skipped.
 */
int bl_accept(int lfd, struct sockaddr_storage *sa, socklen_t *socklen,
    const bl_str_t *addr_text, double pause);

/*
 * One recv()/send() on a non-blocking socket, retried on EINTR: bytes
 * (recv: 0 at the end), BL_AGAIN, or BL_ERROR (logged with the peer).
 */
ssize_t bl_recv(int fd, u_char *buf, size_t size, const bl_str_t *peer);
ssize_t bl_send(int fd, const u_char *buf, size_t size,
    const bl_str_t *peer);

#endif /* BL_SOCKET_H */
