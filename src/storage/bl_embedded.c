/*
 * The embedded PostgreSQL: initdb on first start, the postgres command
 * line, and its readiness as postmaster.pid reports it.  The process
 * layer forks, supervises and stops it.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_process.h>
#include <bl_storage_conf.h>
#include <bl_embedded.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* the unix socket's port number: only part of the socket file's name */
#define BL_EMBEDDED_PORT  "5432"

static bl_storage_conf_t *
bl_embedded_conf(bl_cycle_t *cycle)
{
    return bl_storage_get_conf(cycle);
}

int
bl_embedded_enabled(bl_cycle_t *cycle)
{
    return bl_embedded_conf(cycle)->kind == BL_STORAGE_EMBEDDED;
}

int
bl_embedded_changed(bl_cycle_t *a, bl_cycle_t *b)
{
    bl_storage_conf_t  *x, *y;

    x = bl_embedded_conf(a);
    y = bl_embedded_conf(b);
    if (x->kind != y->kind) {
        return x->kind == BL_STORAGE_EMBEDDED || y->kind
               == BL_STORAGE_EMBEDDED;
    }
    if (x->kind != BL_STORAGE_EMBEDDED) {
        return 0;
    }
    return !bl_str_eq(&x->data_dir, &y->data_dir)
           || !bl_str_eq(&x->postgres_bin, &y->postgres_bin);
}

/* run argv as the user, its output into the error log when it fails */
static bl_int_t
bl_embedded_run(char *const argv[], uid_t uid, gid_t gid, const char *user)
{
    int      out[2], status;
    pid_t    pid;
    char     buf[8192];
    size_t   got;
    ssize_t  n;

    if (pipe2(out, O_CLOEXEC) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "pipe() failed");
        return BL_ERROR;
    }
    pid = fork();
    if (pid == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "fork() failed for %s", argv[0]);
        close(out[0]);
        close(out[1]);
        return BL_ERROR;
    }
    if (pid == 0) {
        if (dup2(out[1], STDOUT_FILENO) == -1
            || dup2(out[1], STDERR_FILENO) == -1)
        {
            _exit(127);
        }
        if (user && bl_switch_user(uid, gid, user) != BL_OK) {
            _exit(127);
        }
        execv(argv[0], argv);
        fprintf(stderr, "execv(%s) failed: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);

    got = 0;
    for (;;) {
        n = read(out[0], buf + got, sizeof(buf) - 1 - got);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += n;
        if (got == sizeof(buf) - 1) {
            /* keep the tail: that is where the reason is */
            memmove(buf, buf + got / 2, got - got / 2);
            got -= got / 2;
        }
    }
    close(out[0]);
    buf[got] = '\0';

    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR) {
            bl_log_error(BL_LOG_EMERG, errno, "waitpid() failed");
            return BL_ERROR;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bl_log_error(BL_LOG_EMERG, 0, "%s failed (status %d): %s", argv[0],
                     status, buf);
        return BL_ERROR;
    }
    return BL_OK;
}

bl_int_t
bl_embedded_prepare(bl_cycle_t *cycle, uid_t uid, gid_t gid,
    const char *user)
{
    bl_storage_conf_t  *scf;
    struct stat         st;
    char                path[PATH_MAX], initdb[PATH_MAX];
    char               *dir;
    int                 as_user;

    scf = bl_embedded_conf(cycle);
    dir = (char *) scf->data_dir.data;
    as_user = user != NULL && geteuid() == 0;

    if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
        bl_log_error(BL_LOG_EMERG, errno, "mkdir(\"%s\") failed", dir);
        return BL_ERROR;
    }
    if (as_user && chown(dir, uid, gid) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "chown(\"%s\") failed", dir);
        return BL_ERROR;
    }
    /* PostgreSQL insists on 0700 (or 0750) for its data directory */
    if (chmod(dir, 0700) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "chmod(\"%s\") failed", dir);
        return BL_ERROR;
    }

    snprintf(path, sizeof(path), "%s/PG_VERSION", dir);
    if (stat(path, &st) == 0) {
        return BL_OK;                      /* a cluster is there already */
    }

    snprintf(initdb, sizeof(initdb), "%s/initdb", scf->postgres_bin.data);
    bl_log_error(BL_LOG_NOTICE, 0, "creating the embedded database in "
                 "\"%s\"%s%s", dir, as_user ? " as user " : "",
                 as_user ? user : "");
    {
        char *const argv[] = {
            initdb, "-D", dir, "-U", "ballast", "-A", "trust",
            "-E", "UTF8", "--locale=C", NULL
        };
        return bl_embedded_run(argv, uid, gid, as_user ? user : NULL);
    }
}

void
bl_embedded_exec(bl_cycle_t *cycle)
{
    bl_storage_conf_t  *scf;
    bl_core_conf_t     *ccf;
    char                bin[PATH_MAX], log[PATH_MAX], conns[64];
    char               *dir;
    int                 fd;

    scf = bl_embedded_conf(cycle);
    ccf = bl_core_conf(cycle);
    dir = (char *) scf->data_dir.data;

    snprintf(bin, sizeof(bin), "%s/postgres", scf->postgres_bin.data);
    snprintf(log, sizeof(log), "%s/postgresql.log", dir);

    /* every worker's pool, the watcher's, and room for a reload's overlap */
    snprintf(conns, sizeof(conns), "max_connections=%d",
             (int) (2 * (ccf->worker_processes + 1) * scf->connections + 10));

    fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd == -1 || dup2(fd, STDOUT_FILENO) == -1
        || dup2(fd, STDERR_FILENO) == -1)
    {
        bl_log_error(BL_LOG_EMERG, errno, "cannot open \"%s\"", log);
        _exit(BL_EXIT_FATAL);
    }

    /* if the master is killed outright, shut down ("fast") rather than
     * linger without a supervisor */
    (void) prctl(PR_SET_PDEATHSIG, SIGINT);

    {
        char *const argv[] = {
            bin, "-D", dir, "-k", dir, "-p", BL_EMBEDDED_PORT,
            "-c", "listen_addresses=", "-c", conns,
            "-c", "unix_socket_permissions=0700", NULL
        };
        execv(bin, argv);
    }
    bl_log_error(BL_LOG_EMERG, errno, "execv(\"%s\") failed", bin);
    _exit(BL_EXIT_FATAL);
}

bl_int_t
bl_embedded_ready(bl_cycle_t *cycle, pid_t pid)
{
    bl_storage_conf_t  *scf;
    char                path[PATH_MAX], buf[1024], *line;
    ssize_t             n;
    int                 fd, i;
    long                filepid;

    scf = bl_embedded_conf(cycle);
    snprintf(path, sizeof(path), "%s/postmaster.pid", scf->data_dir.data);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return BL_AGAIN;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return BL_AGAIN;
    }
    buf[n] = '\0';

    /*
     * line 1: the postmaster's pid (a stale file names another one);
     * line 8: its status, "ready" once it accepts connections.  Lines may
     * be empty (no TCP listen address), so count every newline.
     */
    filepid = strtol(buf, NULL, 10);
    line = buf;
    for (i = 1; i < 8; i++) {
        line = strchr(line, '\n');
        if (line == NULL) {
            return BL_AGAIN;
        }
        line++;
    }
    while (*line == ' ') {
        line++;
    }
    return filepid == pid && strncmp(line, "ready", 5) == 0 ? BL_OK
                                                             : BL_AGAIN;
}
