/*
 * The service manager notification protocol (bl_notify.c): message
 * building, NOTIFY_SOCKET addresses (paths and the abstract namespace),
 * the watchdog interval, and what actually arrives on a datagram socket
 * bound where NOTIFY_SOCKET points.
 */
#include <bl_core.h>
#include <bl_notify.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include "tap.h"


static void
msg_tests(void)
{
    bl_notify_msg_t  m;
    char             big[2 * BL_NOTIFY_MAX];
    size_t           i;

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "READY", "1");
    bl_notify_msg_add(&m, "STATUS", "serving, generation %d", 3);
    is_str(m.data, "READY=1\nSTATUS=serving, generation 3\n",
           "assignments, one a line");
    is_int(m.len, strlen(m.data), "length agrees");
    is_int(m.truncated, 0, "not truncated");

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "STATUS", "reload failed: %s",
                      "line one\nREADY=1\nline three");
    is_str(m.data, "STATUS=reload failed: line one READY=1 line three\n",
           "a newline in a value cannot start an assignment");

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "STATUS", "%s", "");
    is_str(m.data, "STATUS=\n", "an empty value");

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    bl_notify_msg_init(&m);
    bl_notify_msg_add(&m, "READY", "1");
    bl_notify_msg_add(&m, "STATUS", "%s", big);
    ok(m.len < sizeof(m.data), "a value too long is cut to fit (%zu)",
       m.len);
    is_int(m.truncated, 1, "and the message says so");
    is_int(m.data[m.len - 1], '\n', "the cut assignment still ends in a "
           "newline");
    is_int(strncmp(m.data, "READY=1\nSTATUS=xxx", 18), 0,
           "what came before is intact");
    for (i = 0; i < m.len && m.data[i] != '\0'; i++) { /* void */ }
    is_int(i, m.len, "no NUL inside");

    bl_notify_msg_add(&m, "MAINPID", "%d", 42);
    ok(strstr(m.data, "MAINPID") == NULL, "a full message takes no more");
}


static void
addr_tests(void)
{
    struct sockaddr_un  sa;
    socklen_t           len;
    char                name[200];
    size_t              off;

    off = offsetof(struct sockaddr_un, sun_path);

    is_int(bl_notify_sockaddr("/run/systemd/notify", &sa, &len), BL_OK,
           "a path");
    is_str(sa.sun_path, "/run/systemd/notify", "  is the address");
    is_int(len, off + sizeof("/run/systemd/notify"), "  with its NUL");
    is_int(sa.sun_family, AF_UNIX, "  AF_UNIX");

    is_int(bl_notify_sockaddr("@sd-notify/1", &sa, &len), BL_OK,
           "an abstract name");
    is_int(sa.sun_path[0], '\0', "  starts with a NUL");
    is_mem(sa.sun_path + 1, 11, "sd-notify/1", 11, "  then the name");
    is_int(len, off + 12, "  and the length ends it (no NUL)");

    is_int(bl_notify_sockaddr(NULL, &sa, &len), BL_ERROR, "unset");
    is_int(bl_notify_sockaddr("", &sa, &len), BL_ERROR, "empty");
    is_int(bl_notify_sockaddr("@", &sa, &len), BL_ERROR, "'@' alone");
    is_int(bl_notify_sockaddr("run/notify", &sa, &len), BL_ERROR,
           "a relative path");

    /* sun_path holds 108 bytes: a path needs its NUL, a name does not */
    memset(name, 'a', sizeof(name));
    name[0] = '/';
    name[sizeof(sa.sun_path) - 1] = '\0';
    is_int(bl_notify_sockaddr(name, &sa, &len), BL_OK,
           "a path of 107 bytes fits");
    name[sizeof(sa.sun_path) - 1] = 'a';
    name[sizeof(sa.sun_path)] = '\0';
    is_int(bl_notify_sockaddr(name, &sa, &len), BL_ERROR,
           "a path of 108 does not");
    name[0] = '@';
    is_int(bl_notify_sockaddr(name, &sa, &len), BL_OK,
           "an abstract name of 107 (+'@') fits");
    is_int(len, sizeof(sa), "  using all of sun_path");
    name[sizeof(sa.sun_path)] = 'a';
    name[sizeof(sa.sun_path) + 1] = '\0';
    is_int(bl_notify_sockaddr(name, &sa, &len), BL_ERROR,
           "one of 108 does not");
}


static void
watchdog_tests(void)
{
    is_int(bl_notify_watchdog_interval("30000000", NULL, 7), 15000,
           "30 s: ping every 15 s");
    is_int(bl_notify_watchdog_interval("30000000", "", 7), 15000,
           "an empty WATCHDOG_PID is no pid");
    is_int(bl_notify_watchdog_interval("30000000", "7", 7), 15000,
           "WATCHDOG_PID is us");
    is_int(bl_notify_watchdog_interval("30000000", "8", 7), 0,
           "WATCHDOG_PID is another process: not for us");
    is_int(bl_notify_watchdog_interval("30000000", "x", 7), 0,
           "WATCHDOG_PID garbage: no watchdog");
    is_int(bl_notify_watchdog_interval(NULL, "7", 7), 0, "no WATCHDOG_USEC");
    is_int(bl_notify_watchdog_interval("0", NULL, 7), 0, "0: none");
    is_int(bl_notify_watchdog_interval("-5", NULL, 7), 0, "negative: none");
    is_int(bl_notify_watchdog_interval("1s", NULL, 7), 0, "not a number");
    is_int(bl_notify_watchdog_interval("1500", NULL, 7), 1,
           "a tiny interval is at least 1 ms");
}


/* a datagram socket bound at `name` (a path or "@abstract") */
static int
listener(const char *name)
{
    int                 fd;
    struct sockaddr_un  sa;
    socklen_t           len;

    if (bl_notify_sockaddr(name, &sa, &len) != BL_OK) {
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1 || bind(fd, (struct sockaddr *) &sa, len) == -1) {
        perror("listener");
        return -1;
    }
    return fd;
}


/* the next datagram within 1 s, NUL-terminated; "" if none */
static const char *
receive(int fd)
{
    static char    buf[BL_NOTIFY_MAX + 1];
    struct pollfd  p;
    ssize_t        n;

    p.fd = fd;
    p.events = POLLIN;
    buf[0] = '\0';
    if (poll(&p, 1, 1000) == 1) {
        n = recv(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
    }
    return buf;
}


static int
pending(int fd)
{
    struct pollfd  p;

    p.fd = fd;
    p.events = POLLIN;
    return poll(&p, 1, 50) == 1;
}


static char  log_path[64];


/* lines of the log that hold `what` */
static int
count(const char *path, const char *what)
{
    int    n;
    char   line[1024];
    FILE  *f;

    n = 0;
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, what) != NULL;
    }
    fclose(f);
    return n;
}


static void
send_tests(void)
{
    char         dir[] = "/tmp/bl-notify-XXXXXX", path[64], want[64];
    char         abstract[64];
    const char  *got;
    int          fd, afd;

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return;
    }
    snprintf(path, sizeof(path), "%s/notify", dir);

    /* the error log goes to a file the tests read */
    snprintf(log_path, sizeof(log_path), "%s/error.log", dir);
    bl_log->fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                      0600);
    ok(bl_log->fd != -1, "an error log at %s", log_path);
    fd = listener(path);
    ok(fd != -1, "a listener at %s", path);

    /* no NOTIFY_SOCKET: nothing is sent, nothing breaks */
    unsetenv("NOTIFY_SOCKET");
    bl_notify_init(getpid());
    is_int(bl_notify_enabled(), 0, "without NOTIFY_SOCKET: disabled");
    bl_notify_ready("x");
    ok(!pending(fd), "  and nothing sent");

    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "1000000", 1);
    unsetenv("WATCHDOG_PID");
    bl_notify_init(getpid());
    is_int(bl_notify_enabled(), 1, "NOTIFY_SOCKET=%s: enabled", path);
    ok(getenv("NOTIFY_SOCKET") == NULL && getenv("WATCHDOG_USEC") == NULL,
       "  and removed from the environment (no child inherits it)");

    bl_notify_ready("serving, configuration generation %d", 1);
    is_str(receive(fd), "READY=1\nSTATUS=serving, configuration generation "
           "1\n", "READY=1 with a STATUS, no MAINPID (we are the main pid)");

    bl_notify_reloading();
    got = receive(fd);
    ok(strncmp(got, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0
       && strtoull(got + 27, NULL, 10) > 0
       && strstr(got, "\nSTATUS=reloading the configuration\n") != NULL,
       "RELOADING=1, MONOTONIC_USEC, STATUS");

    bl_notify_stopping("graceful shutdown");
    is_str(receive(fd), "STOPPING=1\nSTATUS=graceful shutdown\n",
           "STOPPING=1");

    bl_notify_status("reload failed: %s", "bad");
    is_str(receive(fd), "STATUS=reload failed: bad\n", "STATUS alone");

    bl_notify_watchdog(1000);
    is_str(receive(fd), "WATCHDOG=1\n", "the first watchdog ping");
    bl_notify_watchdog(1499);
    ok(!pending(fd), "none before half the timeout");
    bl_notify_watchdog(1500);
    is_str(receive(fd), "WATCHDOG=1\n", "the next at half the timeout");

    /* started as another process: we daemonized, say who we are now */
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "1000000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    bl_notify_init(1);
    bl_notify_ready("serving");
    snprintf(want, sizeof(want), "READY=1\nSTATUS=serving\nMAINPID=%d\n",
             (int) getpid());
    is_str(receive(fd), want, "READY=1 with MAINPID after a fork");
    bl_notify_watchdog(1000000);
    is_str(receive(fd), "WATCHDOG=1\n", "the watchdog of the process "
           "started is pinged by the one it forked");

    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "1000000", 1);
    setenv("WATCHDOG_PID", "2", 1);
    bl_notify_init(1);
    bl_notify_watchdog(2000000);
    ok(!pending(fd), "a watchdog meant for another process is not pinged");

    /* the abstract namespace */
    snprintf(abstract, sizeof(abstract), "@bl-notify-test-%d",
             (int) getpid());
    afd = listener(abstract);
    ok(afd != -1, "a listener at %s", abstract);
    setenv("NOTIFY_SOCKET", abstract, 1);
    bl_notify_init(getpid());
    bl_notify_stopping("fast shutdown");
    is_str(receive(afd), "STOPPING=1\nSTATUS=fast shutdown\n",
           "sent to an abstract socket");

    /* nobody listening: logged once, never fatal */
    close(fd);
    unlink(path);
    setenv("NOTIFY_SOCKET", path, 1);
    bl_notify_init(getpid());
    bl_notify_ready("a");
    bl_notify_ready("b");
    bl_notify_stopping("c");
    ok(1, "sending to a socket nobody listens on returns");
    is_int(count(log_path, "sendto() to NOTIFY_SOCKET"), 1,
           "  and the failure is logged once, not per message");
    ok(count(log_path, "failed while telling the service manager "
             "\"READY=1\"") == 1, "  naming the message and the socket");

    setenv("NOTIFY_SOCKET", "relative", 1);
    bl_notify_init(getpid());
    is_int(bl_notify_enabled(), 0, "a relative NOTIFY_SOCKET is refused");
    is_int(count(log_path, "NOTIFY_SOCKET \"relative\" is neither"), 1,
           "  and says why");

    close(afd);
    close(bl_log->fd);
    bl_log->fd = STDERR_FILENO;
    unlink(log_path);
    rmdir(dir);
}


int
main(void)
{
    msg_tests();
    addr_tests();
    watchdog_tests();
    send_tests();
    return tap_done();
}
