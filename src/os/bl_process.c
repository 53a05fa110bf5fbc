#include <bl_core.h>
#include <bl_process.h>

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

bl_process_t  bl_processes[BL_MAX_PROCESSES];
int           bl_process_channel = -1;
int           bl_process_ready_fd = -1;
int           bl_process_slot = -1;

/*
 * One pipe for all children: only the master holds the write end, every
 * child the read end, so EOF tells a child that the master is gone.
 */
static int    bl_alive[2] = { -1, -1 };

void        (*bl_process_child_hook)(void);

int64_t
bl_monotonic_msec(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bl_int_t
bl_spawn_process(bl_spawn_proc_pt proc, void *data, const char *name,
    int kind, bl_uint_t generation, int slot)
{
    int            s, i, ready[2];
    pid_t          pid;
    bl_process_t  *p;

    for (s = 0; s < BL_MAX_PROCESSES; s++) {
        if (bl_processes[s].state == BL_PROC_FREE) {
            break;
        }
    }
    if (s == BL_MAX_PROCESSES) {
        bl_log_error(BL_LOG_ALERT, 0, "no more than %d processes can be "
                     "spawned", BL_MAX_PROCESSES);
        return BL_ERROR;
    }

    if (bl_alive[0] == -1 && pipe2(bl_alive, O_CLOEXEC) == -1) {
        bl_log_error(BL_LOG_ALERT, errno, "pipe() failed");
        return BL_ERROR;
    }
    /* ready: the child writes one byte when it serves */
    if (pipe2(ready, O_CLOEXEC | O_NONBLOCK) == -1) {
        bl_log_error(BL_LOG_ALERT, errno, "pipe() failed for %s", name);
        return BL_ERROR;
    }

    pid = fork();
    if (pid == -1) {
        bl_log_error(BL_LOG_ALERT, errno, "fork() failed while spawning "
                     "\"%s\"", name);
        close(ready[0]);
        close(ready[1]);
        return BL_ERROR;
    }

    if (pid == 0) {
        /* the other children's master-side ends are not ours to hold */
        for (i = 0; i < BL_MAX_PROCESSES; i++) {
            if (bl_processes[i].state != BL_PROC_FREE
                && bl_processes[i].channel != -1)
            {
                close(bl_processes[i].channel);
            }
        }
        close(bl_alive[1]);
        close(ready[0]);
        bl_process_channel = bl_alive[0];
        bl_process_ready_fd = ready[1];
        bl_log_process = slot;
        bl_process_slot = s;
        if (bl_process_child_hook) {
            bl_process_child_hook();
        }
#ifdef HAVE_PR_SET_PDEATHSIG
        /* belt and braces with the pipe: a SIGKILLed master still ends us */
        (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
        proc(data);
        _exit(0);   /* proc does not return */
    }

    close(ready[1]);

    p = &bl_processes[s];
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->state = BL_PROC_RUNNING;
    p->kind = kind;
    p->generation = generation;
    p->slot = slot;
    p->channel = ready[0];
    p->respawn = 1;
    p->started = bl_monotonic_msec();
    p->name = name;

    bl_log_error(BL_LOG_NOTICE, 0, "start %s %d", name, (int) pid);
    return s;
}

bl_process_t *
bl_process_exited(pid_t pid, int status)
{
    int            i;
    bl_process_t  *p;

    p = NULL;
    for (i = 0; i < BL_MAX_PROCESSES; i++) {
        if (bl_processes[i].state == BL_PROC_RUNNING
            && bl_processes[i].pid == pid)
        {
            p = &bl_processes[i];
            break;
        }
    }
    if (p == NULL) {
        return NULL;       /* e.g. an initdb run that was waited for */
    }

    p->state = BL_PROC_EXITED;
    p->status = status;

    if (WIFSIGNALED(status)) {
        bl_log_error(p->retiring ? BL_LOG_NOTICE : BL_LOG_ALERT, 0,
                     "%s %d exited on signal %d%s", p->name, (int) pid,
                     WTERMSIG(status),
                     WCOREDUMP(status) ? " (core dumped)" : "");
    } else if (WEXITSTATUS(status) != 0) {
        bl_log_error(p->retiring ? BL_LOG_NOTICE : BL_LOG_ALERT, 0,
                     "%s %d exited with code %d", p->name, (int) pid,
                     WEXITSTATUS(status));
    } else {
        bl_log_error(BL_LOG_NOTICE, 0, "%s %d exited with code 0", p->name,
                     (int) pid);
    }

    if (p->channel != -1) {
        close(p->channel);
        p->channel = -1;
    }
    return p;
}

void
bl_signal_processes(int kind, bl_uint_t generation, int all_but, int signo)
{
    int            i;
    bl_process_t  *p;

    for (i = 0; i < BL_MAX_PROCESSES; i++) {
        p = &bl_processes[i];
        if (p->state != BL_PROC_RUNNING || !(p->kind & kind)) {
            continue;
        }
        if (all_but ? p->generation == generation
                    : p->generation != generation)
        {
            continue;
        }
        if (signo == SIGQUIT || signo == SIGTERM) {
            p->retiring = 1;
            p->respawn = 0;
        }
        if (kill(p->pid, signo) == -1 && errno != ESRCH) {
            bl_log_error(BL_LOG_ALERT, errno, "kill(%d, %d) failed",
                         (int) p->pid, signo);
        }
    }
}

void
bl_process_report_ready(void)
{
    ssize_t  n;

    if (bl_process_ready_fd != -1) {
        n = write(bl_process_ready_fd, "R", 1);
        (void) n;
        close(bl_process_ready_fd);
        bl_process_ready_fd = -1;
    }
}

bl_int_t
bl_switch_user(uid_t uid, gid_t gid, const char *user)
{
    struct passwd  *pw;

    if (geteuid() != 0) {
        return BL_OK;
    }
    if (setgid(gid) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "setgid(%d) failed", (int) gid);
        return BL_ERROR;
    }
    if (initgroups(user, gid) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "initgroups(%s, %d) failed", user,
                     (int) gid);
        return BL_ERROR;
    }
    if (setuid(uid) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "setuid(%d) failed", (int) uid);
        return BL_ERROR;
    }
    /*
     * HOME still names root's: libpq looks there for ~/.postgresql/
     * (client certificate, root.crt) and ~/.pgpass, and a file it may not
     * even stat is an error ("could not open certificate file
     * /root/.postgresql/postgresql.crt: Permission denied") that fails
     * every TLS connection.  The user's own home, as login(1) would set.
     */
    pw = getpwuid(uid);
    if (pw != NULL && pw->pw_dir != NULL && pw->pw_dir[0] != '\0') {
        (void) setenv("HOME", pw->pw_dir, 1);
    } else {
        (void) unsetenv("HOME");
    }
#ifdef PR_SET_DUMPABLE
    /* core dumps stay possible after dropping privileges */
    (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
    return BL_OK;
}

/* process titles: reuse the argv (and environ) area, as nginx does */

extern char **environ;

static char   *bl_title_start;
static size_t  bl_title_size;
static char  **bl_env_copies;

void
bl_init_setproctitle(int argc, char **argv)
{
    char    *end, **env;
    size_t   n;
    int      i;

    if (argc == 0 || argv[0] == NULL) {
        return;
    }
    end = argv[0];
    for (i = 0; i < argc; i++) {
        if (argv[i] == end) {
            end = argv[i] + strlen(argv[i]) + 1;
        }
    }
    for (i = 0; environ[i]; i++) {
        if (environ[i] == end) {
            end = environ[i] + strlen(environ[i]) + 1;
        }
    }

    /* move the environment away so that the area can be overwritten */
    for (n = 0; environ[n]; n++) { /* void */ }
    env = malloc((n + 1) * sizeof(char *));
    if (env == NULL) {
        return;
    }
    for (i = 0; environ[i]; i++) {
        env[i] = strdup(environ[i]);
        if (env[i] == NULL) {
            return;
        }
    }
    env[i] = NULL;

    /*
     * A second list of the same strings: unsetenv() and setenv() take
     * them out of environ (NOTIFY_SOCKET, HOME, ...), and they must stay
     * reachable, for LeakSanitizer as for anyone reading the memory.
     */
    bl_env_copies = malloc((n + 1) * sizeof(char *));
    if (bl_env_copies != NULL) {
        memcpy(bl_env_copies, env, (n + 1) * sizeof(char *));
    }
    environ = env;

    bl_title_start = argv[0];
    bl_title_size = end - argv[0];
    argv[1] = NULL;
}

void
bl_setproctitle(const char *title)
{
    size_t  n;

    (void) prctl(PR_SET_NAME, title, 0, 0, 0);
    if (bl_title_start == NULL) {
        return;
    }
    n = snprintf(bl_title_start, bl_title_size, "ballast: %s", title);
    if (n < bl_title_size) {
        memset(bl_title_start + n, '\0', bl_title_size - n);
    }
}

/*
 * Written to a temporary name and renamed into place, so that a reader
 * (`-s`, systemd's PIDFile=, a script polling for the file) never sees
 * the file existing but still empty.
 */
bl_int_t
bl_create_pidfile(const char *path)
{
    char  buf[32], tmp[PATH_MAX];
    int   fd, n;

    n = snprintf(tmp, sizeof(tmp), "%s.new", path);
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        bl_log_error(BL_LOG_EMERG, 0, "pid file name \"%s\" is too long",
                     path);
        return BL_ERROR;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "open() \"%s\" failed", tmp);
        return BL_ERROR;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
    if (write(fd, buf, n) != n) {
        bl_log_error(BL_LOG_EMERG, errno, "write() to \"%s\" failed", tmp);
        close(fd);
        (void) unlink(tmp);
        return BL_ERROR;
    }
    close(fd);
    if (rename(tmp, path) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "rename() \"%s\" to \"%s\" "
                     "failed", tmp, path);
        (void) unlink(tmp);
        return BL_ERROR;
    }
    return BL_OK;
}

void
bl_delete_pidfile(const char *path)
{
    if (unlink(path) == -1 && errno != ENOENT) {
        bl_log_error(BL_LOG_ALERT, errno, "unlink() \"%s\" failed", path);
    }
}

pid_t
bl_read_pidfile(const char *path)
{
    char     buf[32];
    ssize_t  n;
    int64_t  pid;
    int      fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "open() \"%s\" failed", path);
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        bl_log_error(BL_LOG_EMERG, n == 0 ? 0 : errno, "read() \"%s\" "
                     "failed", path);
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        n--;
    }
    if (bl_atoi((u_char *) buf, n, &pid) != BL_OK || pid <= 1) {
        bl_log_error(BL_LOG_EMERG, 0, "invalid PID number \"%.*s\" in "
                     "\"%s\"", (int) n, buf, path);
        return -1;
    }
    return (pid_t) pid;
}

bl_int_t
bl_daemonize(void)
{
    int  fd;

    switch (fork()) {
    case -1:
        bl_log_error(BL_LOG_EMERG, errno, "fork() failed");
        return BL_ERROR;
    case 0:
        break;
    default:
        _exit(0);
    }
    if (setsid() == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "setsid() failed");
        return BL_ERROR;
    }
    umask(0);
    fd = open("/dev/null", O_RDWR);
    if (fd == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "open(\"/dev/null\") failed");
        return BL_ERROR;
    }
    if (dup2(fd, STDIN_FILENO) == -1 || dup2(fd, STDOUT_FILENO) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "dup2() failed");
        return BL_ERROR;
    }
    if (fd > STDERR_FILENO) {
        close(fd);
    }
    return BL_OK;
}
