/*
 * sd_notify without libsystemd: see bl_notify.h.  The protocol is small
 * and stable (systemd's sd_notify(3)): one datagram per state change,
 * sent to the socket in $NOTIFY_SOCKET; the kernel attaches our
 * credentials, which is how the service manager knows who spoke.
 */
#include <bl_core.h>
#include <bl_notify.h>

#include <time.h>


static int                 bl_notify_fd = -1;
static struct sockaddr_un  bl_notify_addr;
static socklen_t           bl_notify_addrlen;
static char                bl_notify_name[sizeof(bl_notify_addr.sun_path)
                                          + 1];
static pid_t               bl_notify_pid;       /* the process started */
static int64_t             bl_notify_interval;  /* ms; 0: no watchdog */
static int64_t             bl_notify_next;      /* ms: next WATCHDOG=1 */
static unsigned            bl_notify_failing;   /* the last send failed */


void
bl_notify_msg_init(bl_notify_msg_t *m)
{
    m->len = 0;
    m->truncated = 0;
    m->data[0] = '\0';
}


void
bl_notify_msg_vadd(bl_notify_msg_t *m, const char *name, const char *fmt,
    va_list args)
{
    char    value[BL_NOTIFY_MAX];
    size_t  room, nlen, vlen, i;
    int     n;

    nlen = strlen(name);
    room = sizeof(m->data) - m->len;

    /* NAME=\n and the NUL kept for logging */
    if (nlen + 3 > room) {
        m->truncated = 1;
        return;
    }

    n = vsnprintf(value, sizeof(value), fmt, args);
    if (n < 0) {
        n = 0;
        value[0] = '\0';
    }

    vlen = bl_min((size_t) n, sizeof(value) - 1);
    if (vlen > room - nlen - 3) {
        vlen = room - nlen - 3;
        m->truncated = 1;
    }

    memcpy(m->data + m->len, name, nlen);
    m->len += nlen;
    m->data[m->len++] = '=';

    for (i = 0; i < vlen; i++) {
        /* a newline would end the assignment and start a bogus one */
        m->data[m->len++] = (value[i] == '\n') ? ' ' : value[i];
    }

    m->data[m->len++] = '\n';
    m->data[m->len] = '\0';
}


void
bl_notify_msg_add(bl_notify_msg_t *m, const char *name, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    bl_notify_msg_vadd(m, name, fmt, args);
    va_end(args);
}


bl_int_t
bl_notify_sockaddr(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    size_t  n;

    if (name == NULL) {
        return BL_ERROR;
    }

    n = strlen(name);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;

    if (name[0] == '@') {
        /* Linux's abstract namespace: a leading NUL, no trailing one; the
         * address length says where the name ends */
        if (n < 2 || n > sizeof(sa->sun_path)) {
            return BL_ERROR;
        }

        memcpy(sa->sun_path + 1, name + 1, n - 1);
        *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
        return BL_OK;
    }

    if (name[0] != '/' || n >= sizeof(sa->sun_path)) {
        return BL_ERROR;
    }

    memcpy(sa->sun_path, name, n);
    *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);

    return BL_OK;
}


int64_t
bl_notify_watchdog_interval(const char *usec, const char *pid, pid_t self)
{
    int64_t  us, p;

    if (usec == NULL
        || bl_atoi((const u_char *) usec, strlen(usec), &us) != BL_OK
        || us <= 0)
    {
        return 0;
    }

    /* WATCHDOG_PID, when set, names the process the watchdog is for */
    if (pid != NULL && pid[0] != '\0'
        && (bl_atoi((const u_char *) pid, strlen(pid), &p) != BL_OK
            || p != (int64_t) self))
    {
        return 0;
    }

    /* sd_watchdog_enabled(3) advises pinging at half the timeout */
    return bl_max(us / 2000, 1);
}


void
bl_notify_init(pid_t started)
{
    const char  *name;

    if (bl_notify_fd != -1) {
        (void) close(bl_notify_fd);
        bl_notify_fd = -1;
    }

    bl_notify_interval = 0;
    bl_notify_next = 0;
    bl_notify_failing = 0;
    bl_notify_pid = started;

    name = getenv("NOTIFY_SOCKET");

    if (name != NULL) {
        snprintf(bl_notify_name, sizeof(bl_notify_name), "%s", name);

        if (bl_notify_sockaddr(name, &bl_notify_addr, &bl_notify_addrlen)
            != BL_OK)
        {
            bl_log_error(BL_LOG_WARN, 0, "NOTIFY_SOCKET \"%s\" is neither an "
                         "absolute path nor an \"@abstract\" name that fits "
                         "a unix socket address: not notifying the service "
                         "manager", bl_notify_name);

        } else {
            bl_notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (bl_notify_fd == -1) {
                bl_log_error(BL_LOG_WARN, errno, "socket(AF_UNIX, "
                             "SOCK_DGRAM) failed for NOTIFY_SOCKET: not "
                             "notifying the service manager");
            }
        }

        if (bl_notify_fd != -1) {
            bl_notify_interval = bl_notify_watchdog_interval(
                                     getenv("WATCHDOG_USEC"),
                                     getenv("WATCHDOG_PID"), bl_notify_pid);
        }
    }

    /* for us alone: not for the workers, nor the embedded PostgreSQL */
    (void) unsetenv("NOTIFY_SOCKET");
    (void) unsetenv("WATCHDOG_USEC");
    (void) unsetenv("WATCHDOG_PID");

    if (bl_notify_interval > 0) {
        bl_log_error(BL_LOG_NOTICE, 0, "service manager watchdog: WATCHDOG=1 "
                     "every %" PRId64 " ms", bl_notify_interval);
    }
}


int
bl_notify_enabled(void)
{
    return bl_notify_fd != -1;
}


static void
bl_notify_send(bl_notify_msg_t *m, int level)
{
    ssize_t  n;
    size_t   first;

    if (bl_notify_fd == -1) {
        return;
    }

    /* the first assignment names the message in the log */
    first = strcspn(m->data, "\n");

    n = sendto(bl_notify_fd, m->data, m->len, MSG_NOSIGNAL | MSG_DONTWAIT,
               (struct sockaddr *) &bl_notify_addr, bl_notify_addrlen);

    if (n == -1) {
        if (!bl_notify_failing) {
            bl_notify_failing = 1;
            bl_log_error(BL_LOG_WARN, errno, "sendto() to NOTIFY_SOCKET "
                         "\"%s\" failed while telling the service manager "
                         "\"%.*s\" (logged once until a send succeeds)",
                         bl_notify_name, (int) first, m->data);
        }
        return;
    }

    if (bl_notify_failing) {
        bl_notify_failing = 0;
        bl_log_error(BL_LOG_NOTICE, 0, "NOTIFY_SOCKET \"%s\" takes messages "
                     "again", bl_notify_name);
    }

    if (level != 0) {
        bl_log_error(level, 0, "told the service manager: %.*s",
                     (int) first, m->data);
    }
}


void
bl_notify_ready(const char *fmt, ...)
{
    va_list          args;
    bl_notify_msg_t  m;

    if (bl_notify_fd == -1) {
        return;
    }

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "READY", "1");

    va_start(args, fmt);
    bl_notify_msg_vadd(&m, "STATUS", fmt, args);
    va_end(args);

    if (getpid() != bl_notify_pid) {
        /* we daemonized: the process the manager started is gone */
        bl_notify_msg_add(&m, "MAINPID", "%d", (int) getpid());
    }

    bl_notify_send(&m, BL_LOG_INFO);
}


void
bl_notify_reloading(void)
{
    struct timespec  ts;
    bl_notify_msg_t  m;

    if (bl_notify_fd == -1) {
        return;
    }

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "RELOADING", "1");
    bl_notify_msg_add(&m, "MONOTONIC_USEC", "%" PRIu64,
                      (uint64_t) ts.tv_sec * 1000000
                      + (uint64_t) ts.tv_nsec / 1000);
    bl_notify_msg_add(&m, "STATUS", "reloading the configuration");

    bl_notify_send(&m, BL_LOG_INFO);
}


void
bl_notify_stopping(const char *status)
{
    bl_notify_msg_t  m;

    if (bl_notify_fd == -1) {
        return;
    }

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "STOPPING", "1");
    bl_notify_msg_add(&m, "STATUS", "%s", status);

    bl_notify_send(&m, BL_LOG_INFO);
}


void
bl_notify_status(const char *fmt, ...)
{
    va_list          args;
    bl_notify_msg_t  m;

    if (bl_notify_fd == -1) {
        return;
    }

    bl_notify_msg_init(&m);

    va_start(args, fmt);
    bl_notify_msg_vadd(&m, "STATUS", fmt, args);
    va_end(args);

    bl_notify_send(&m, BL_LOG_INFO);
}


void
bl_notify_watchdog(int64_t now_msec)
{
    bl_notify_msg_t  m;

    if (bl_notify_interval == 0 || now_msec < bl_notify_next) {
        return;
    }

    bl_notify_next = now_msec + bl_notify_interval;

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "WATCHDOG", "1");

    bl_notify_send(&m, 0);
}
