#include <bl_core.h>
#include <bl_socket.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>

bl_int_t
bl_nonblocking(int fd)
{
    int  flags;

    flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        bl_log_error(BL_LOG_ALERT, errno, "fcntl(O_NONBLOCK) failed");
        return BL_ERROR;
    }
    return BL_OK;
}

int
bl_accept(int lfd, struct sockaddr_storage *sa, socklen_t *socklen,
    const bl_str_t *addr_text, double pause)
{
    int       fd;
    bl_err_t  err;

    for ( ;; ) {
        *socklen = sizeof(*sa);
        fd = accept4(lfd, (struct sockaddr *) sa, socklen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd != -1) {
            return fd;
        }
        err = errno;

        if (err == EAGAIN || err == EWOULDBLOCK) {
            return BL_AGAIN;
        }
        if (err == EINTR || err == ECONNABORTED) {
            continue;
        }
        if (err == EMFILE || err == ENFILE || err == ENOBUFS
            || err == ENOMEM)
        {
            /* out of descriptors: give the loop time to free some */
            bl_log_error(BL_LOG_CRIT, err, "accept4() on %.*s failed, "
                         "accepting paused for %.0f ms",
                         BL_STR_ARGS(addr_text), pause * 1000);
            return BL_DECLINED;
        }
        bl_log_error(BL_LOG_ERR, err, "accept4() on %.*s failed",
                     BL_STR_ARGS(addr_text));
        return BL_ERROR;
    }
}

ssize_t
bl_recv(int fd, u_char *buf, size_t size, const bl_str_t *peer)
{
    ssize_t   n;
    bl_err_t  err;

    for ( ;; ) {
        n = recv(fd, buf, size, 0);
        if (n >= 0) {
            return n;
        }
        err = errno;
        if (err == EINTR) {
            continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK) {
            return BL_AGAIN;
        }
        bl_log_error(BL_LOG_INFO, err, "recv() failed, client: %.*s",
                     BL_STR_ARGS(peer));
        return BL_ERROR;
    }
}

ssize_t
bl_send(int fd, const u_char *buf, size_t size, const bl_str_t *peer)
{
    ssize_t   n;
    bl_err_t  err;

    for ( ;; ) {
        n = send(fd, buf, size, MSG_NOSIGNAL);
        if (n >= 0) {
            return n;
        }
        err = errno;
        if (err == EINTR) {
            continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK) {
            return BL_AGAIN;
        }
        bl_log_error(BL_LOG_INFO, err, "send() failed, client: %.*s",
                     BL_STR_ARGS(peer));
        return BL_ERROR;
    }
}

bl_int_t
bl_parse_addr_port(bl_pool_t *pool, const bl_str_t *text, bl_listening_t *ls,
    int default_port)
{
    char                  host[128], buf[160];
    const u_char         *p, *colon, *end;
    int64_t               port;
    struct sockaddr_in   *sin;
    struct sockaddr_in6  *sin6;
    size_t                hlen;

    memset(&ls->sockaddr, 0, sizeof(ls->sockaddr));
    p = text->data;
    end = p + text->len;
    port = default_port;

    if (text->len == 0) {
        return BL_ERROR;
    }

    if (*p == '[') {
        colon = memchr(p, ']', text->len);
        if (colon == NULL) {
            return BL_ERROR;
        }
        hlen = colon - p - 1;
        if (hlen == 0 || hlen >= sizeof(host)) {
            return BL_ERROR;
        }
        memcpy(host, p + 1, hlen);
        host[hlen] = '\0';
        p = colon + 1;
        if (p < end) {
            if (*p != ':' || bl_atoi(p + 1, end - p - 1, &port) != BL_OK) {
                return BL_ERROR;
            }
        }
        sin6 = (struct sockaddr_in6 *) &ls->sockaddr;
        sin6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return BL_ERROR;
        }
        if (port < 1 || port > 65535) {
            return BL_ERROR;
        }
        sin6->sin6_port = htons((uint16_t) port);
        ls->socklen = sizeof(struct sockaddr_in6);
        snprintf(buf, sizeof(buf), "[%s]:%d", host, (int) port);

    } else {
        colon = NULL;
        for (const u_char *q = p; q < end; q++) {
            if (*q == ':') {
                colon = q;
            }
        }
        if (colon == NULL && bl_atoi(p, end - p, &port) == BL_OK) {
            strcpy(host, "0.0.0.0");               /* "listen 2379;" */
        } else {
            hlen = colon ? (size_t) (colon - p) : text->len;
            if (hlen == 0 || hlen >= sizeof(host)) {
                return BL_ERROR;
            }
            memcpy(host, p, hlen);
            host[hlen] = '\0';
            if (strcmp(host, "*") == 0) {
                strcpy(host, "0.0.0.0");
            } else if (strcmp(host, "localhost") == 0) {
                strcpy(host, "127.0.0.1");
            }
            if (colon
                && bl_atoi(colon + 1, end - colon - 1, &port) != BL_OK)
            {
                return BL_ERROR;
            }
        }
        if (port < 1 || port > 65535) {
            return BL_ERROR;
        }
        sin = (struct sockaddr_in *) &ls->sockaddr;
        sin->sin_family = AF_INET;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            return BL_ERROR;        /* names are not resolved: be explicit */
        }
        sin->sin_port = htons((uint16_t) port);
        ls->socklen = sizeof(struct sockaddr_in);
        snprintf(buf, sizeof(buf), "%s:%d", host, (int) port);
    }

    if (bl_str_dup(pool, &ls->addr_text, buf, strlen(buf)) != BL_OK) {
        return BL_ERROR;
    }
    ls->fd = -1;
    ls->backlog = ls->backlog ? ls->backlog : 511;
    return BL_OK;
}

static int
bl_same_addr(const bl_listening_t *a, const bl_listening_t *b)
{
    return a->socklen == b->socklen
           && memcmp(&a->sockaddr, &b->sockaddr, a->socklen) == 0;
}

static int
bl_bind_socket(bl_listening_t *ls, int do_listen)
{
    int  fd, one;

    fd = socket(ls->sockaddr.ss_family, SOCK_STREAM, 0);
    if (fd == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "socket() %.*s failed",
                     BL_STR_ARGS(&ls->addr_text));
        return -1;
    }
    one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "setsockopt(SO_REUSEADDR) %.*s "
                     "failed", BL_STR_ARGS(&ls->addr_text));
        close(fd);
        return -1;
    }
    if (ls->sockaddr.ss_family == AF_INET6) {
        (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *) &ls->sockaddr, ls->socklen) == -1) {
        one = errno;
        close(fd);
        errno = one;
        return -2;                   /* the caller decides how bad it is */
    }
    if (do_listen) {
        if (listen(fd, ls->backlog) == -1) {
            bl_log_error(BL_LOG_EMERG, errno, "listen() to %.*s failed",
                         BL_STR_ARGS(&ls->addr_text));
            close(fd);
            return -1;
        }
        if (bl_nonblocking(fd) != BL_OK) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

bl_int_t
bl_open_listening(bl_array_t *listening, bl_array_t *old)
{
    bl_listening_t  *ls, *ols;
    bl_uint_t        i, j, tries;
    int              fd, err;

    ls = listening->elts;
    for (i = 0; i < listening->nelts; i++) {
        if (ls[i].fd != -1) {
            continue;
        }
        if (old) {
            ols = old->elts;
            for (j = 0; j < old->nelts; j++) {
                if (ols[j].fd != -1 && bl_same_addr(&ls[i], &ols[j])) {
                    ls[i].fd = ols[j].fd;
                    ls[i].inherited = 1;
                    ols[j].fd = -1;        /* now owned by the new cycle */
                    break;
                }
            }
            if (ls[i].fd != -1) {
                continue;
            }
        }

        /* a restarting predecessor may still hold the port for a moment */
        for (tries = 0; ; tries++) {
            fd = bl_bind_socket(&ls[i], 1);
            if (fd >= 0 || fd == -1) {
                break;
            }
            err = errno;
            if (err != EADDRINUSE || tries == 5) {
                bl_log_error(BL_LOG_EMERG, err, "bind() to %.*s failed",
                             BL_STR_ARGS(&ls[i].addr_text));
                goto failed;
            }
            usleep(200 * 1000);
        }
        if (fd == -1) {
            goto failed;
        }
        ls[i].fd = fd;
        bl_log_error(BL_LOG_INFO, 0, "listening on %.*s",
                     BL_STR_ARGS(&ls[i].addr_text));
    }
    return BL_OK;

failed:
    bl_return_listening(listening, old);
    return BL_ERROR;
}

void
bl_return_listening(bl_array_t *listening, bl_array_t *old)
{
    bl_listening_t  *ls, *ols;
    bl_uint_t        i, j;

    /* give borrowed sockets back, close our own */
    ls = listening->elts;
    for (i = 0; i < listening->nelts; i++) {
        if (ls[i].fd == -1) {
            continue;
        }
        if (ls[i].inherited && old) {
            ols = old->elts;
            for (j = 0; j < old->nelts; j++) {
                if (ols[j].fd == -1 && bl_same_addr(&ls[i], &ols[j])) {
                    ols[j].fd = ls[i].fd;
                    break;
                }
            }
        } else {
            close(ls[i].fd);
        }
        ls[i].fd = -1;
        ls[i].inherited = 0;
    }
}

bl_int_t
bl_test_listening(bl_array_t *listening)
{
    bl_listening_t  *ls;
    bl_uint_t        i;
    int              fd;

    ls = listening->elts;
    for (i = 0; i < listening->nelts; i++) {
        fd = bl_bind_socket(&ls[i], 0);
        if (fd >= 0) {
            close(fd);
            continue;
        }
        if (fd == -1) {
            return BL_ERROR;
        }
        if (errno == EADDRINUSE) {
            bl_log_error(BL_LOG_NOTICE, 0, "%.*s is in use (by the running "
                         "server?)", BL_STR_ARGS(&ls[i].addr_text));
            continue;
        }
        bl_log_error(BL_LOG_EMERG, errno, "bind() to %.*s failed",
                     BL_STR_ARGS(&ls[i].addr_text));
        return BL_ERROR;
    }
    return BL_OK;
}

void
bl_close_listening(bl_array_t *listening)
{
    bl_listening_t  *ls;
    bl_uint_t        i;

    ls = listening->elts;
    for (i = 0; i < listening->nelts; i++) {
        if (ls[i].fd != -1) {
            close(ls[i].fd);
            ls[i].fd = -1;
        }
    }
}
