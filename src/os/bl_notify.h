/*
 * The service manager's notification protocol (systemd's sd_notify),
 * written here rather than linked from libsystemd: a datagram of
 * newline-separated VAR=value assignments sent to the AF_UNIX socket named
 * by $NOTIFY_SOCKET (a path, or an abstract name when it starts with '@').
 *
 * Only the master talks to the service manager.  bl_notify_init() reads
 * NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once and removes them from
 * the environment, so that no child inherits them: the embedded
 * PostgreSQL is built with systemd support and would otherwise send a
 * READY=1 of its own.  Without NOTIFY_SOCKET every call is a no-op.  A
 * failure to send is logged once and never stops ballast.
 */
#ifndef BL_NOTIFY_H
#define BL_NOTIFY_H

#include <sys/socket.h>
#include <sys/un.h>

/* a datagram: far more than any message sent here needs */
#define BL_NOTIFY_MAX  1024

typedef struct {
    size_t    len;
    unsigned  truncated:1;       /* an assignment did not fit whole */
    char      data[BL_NOTIFY_MAX];
} bl_notify_msg_t;

/* started: the pid the service manager started (before daemonizing) */
void bl_notify_init(pid_t started);
/* 1 when NOTIFY_SOCKET was usable */
int bl_notify_enabled(void);

/* READY=1, STATUS=the formatted text; MAINPID= when the master is not the
 * process the service manager started (it daemonized) */
void bl_notify_ready(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC= (systemd 253's Type=notify-reload
 * requires it; older ones ignore it), STATUS=reloading */
void bl_notify_reloading(void);
void bl_notify_stopping(const char *status);
/* STATUS= alone: what `systemctl status` shows */
void bl_notify_status(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* WATCHDOG=1 when half the interval passed since the last one; called
 * from the master's loop so that a master whose loop hangs stops pinging */
void bl_notify_watchdog(int64_t now_msec);

/* the pure parts, exposed for the unit tests */

void bl_notify_msg_init(bl_notify_msg_t *m);
/* append NAME=value\n; newlines in the value become spaces (one would end
 * the assignment), a value too long is cut */
void bl_notify_msg_add(bl_notify_msg_t *m, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void bl_notify_msg_vadd(bl_notify_msg_t *m, const char *name,
    const char *fmt, va_list args);
/* NOTIFY_SOCKET -> address: "/path" or "@abstract"; BL_ERROR otherwise
 * (empty, relative, too long) */
bl_int_t bl_notify_sockaddr(const char *name, struct sockaddr_un *sa,
    socklen_t *len);
/* WATCHDOG_USEC and WATCHDOG_PID (either may be NULL) -> the interval in
 * ms at which to ping (half the timeout, at least 1), or 0: no watchdog,
 * or one meant for another process */
int64_t bl_notify_watchdog_interval(const char *usec, const char *pid,
    pid_t self);

#endif /* BL_NOTIFY_H */
