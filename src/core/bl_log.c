#include <bl_core.h>
#include <fcntl.h>
#include <sys/time.h>
#include <time.h>

static bl_log_t  bl_log_stderr = { STDERR_FILENO, BL_LOG_NOTICE, NULL };

bl_log_t  *bl_log = &bl_log_stderr;
int        bl_log_process = 0;
static int bl_log_stderr_too;

/* the text of the last error logged: what a failed reload reports to the
 * service manager (STATUS=reload failed: ...) */
static char bl_log_last[256];

static const char *bl_log_levels[] = {
    "", "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"
};

void
bl_log_set_stderr_too(int on)
{
    bl_log_stderr_too = on;
}

void
bl_log_verror(int level, bl_err_t err, const char *fmt, va_list args)
{
    char            line[2048], *p, *last;
    struct timeval  tv;
    struct tm       tm;
    int             n, saved;
    ssize_t         w;
    char           *msg;

    if (level > bl_log->level) {
        return;
    }

    saved = errno;
    p = line;
    last = line + sizeof(line) - 1;   /* room for '\n' */

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    p += strftime(p, last - p, "%Y/%m/%d %H:%M:%S ", &tm);

    n = snprintf(p, last - p, "[%s] %d#%d: ",
                 bl_log_levels[level < 0 || level > BL_LOG_DEBUG ? 0 : level],
                 (int) getpid(), bl_log_process);
    p += bl_min(n, last - p);
    msg = p;

    n = vsnprintf(p, last - p, fmt, args);
    if (n >= 0) {
        p += bl_min(n, last - p);
    }

    if (err) {
        char  ebuf[128];
        /* GNU strerror_r: returns a pointer that may not be ebuf */
        const char *es = strerror_r(err, ebuf, sizeof(ebuf));
        n = snprintf(p, last - p, " (%d: %s)", err, es);
        p += bl_min(n, last - p);
    }

    if (level >= BL_LOG_EMERG && level <= BL_LOG_ERR) {
        n = (int) bl_min(p - msg, (ptrdiff_t) sizeof(bl_log_last) - 1);
        memcpy(bl_log_last, msg, n);
        bl_log_last[n] = '\0';
    }

    *p++ = '\n';

    w = write(bl_log->fd, line, p - line);
    (void) w;

    if (((bl_log_stderr_too && level <= BL_LOG_ERR)
         || level == BL_LOG_STDERR)
        && bl_log->fd != STDERR_FILENO)
    {
        w = write(STDERR_FILENO, line, p - line);
        (void) w;
    }

    errno = saved;
}

void
bl_log_error(int level, bl_err_t err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    bl_log_verror(level, err, fmt, args);
    va_end(args);
}

const char *
bl_log_last_error(void)
{
    return bl_log_last;
}

void
bl_log_forget_error(void)
{
    bl_log_last[0] = '\0';
}

int
bl_log_level_parse(const bl_str_t *name)
{
    int  i;

    for (i = 1; i <= BL_LOG_DEBUG; i++) {
        if (bl_str_eq_cstr(name, bl_log_levels[i])) {
            return i;
        }
    }
    return -1;
}

const char *
bl_log_level_name(int level)
{
    return level >= 1 && level <= BL_LOG_DEBUG ? bl_log_levels[level] : "?";
}

bl_int_t
bl_log_open(bl_log_t *log, const char *file, int level)
{
    int  fd;

    log->level = level;

    if (file == NULL || strcmp(file, "stderr") == 0) {
        log->fd = STDERR_FILENO;
        log->file = NULL;
        return BL_OK;
    }

    fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "open() \"%s\" failed", file);
        return BL_ERROR;
    }
    log->fd = fd;
    log->file = (char *) file;
    return BL_OK;
}

void
bl_log_redirect_stderr(bl_log_t *log)
{
    if (log->file && log->fd != STDERR_FILENO
        && dup2(log->fd, STDERR_FILENO) == -1)
    {
        bl_log_error(BL_LOG_ALERT, errno, "dup2(STDERR) failed");
    }
}

bl_int_t
bl_log_reopen(bl_log_t *log)
{
    int  fd;

    if (log->file == NULL) {
        return BL_OK;
    }
    fd = open(log->file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        bl_log_error(BL_LOG_ALERT, errno, "reopen \"%s\" failed", log->file);
        return BL_ERROR;
    }
    /* dup3 keeps the descriptor number, so copies of the log stay valid */
    if (dup3(fd, log->fd, O_CLOEXEC) == -1) {
        bl_log_error(BL_LOG_ALERT, errno, "dup3() for \"%s\" failed",
                     log->file);
        close(fd);
        return BL_ERROR;
    }
    close(fd);
    return BL_OK;
}
