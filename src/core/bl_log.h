/*
 * Error log.  One process-wide log (the cycle's), as nginx's error_log:
 *   2026/11/23 23:17:00 [error] 1234#0: message, client: ...
 * Errors are logged once, where they are detected, with errno (when
 * non-zero) and context.  Secrets never go into a log line.
 */
#ifndef BL_LOG_H
#define BL_LOG_H

#define BL_LOG_STDERR  0
#define BL_LOG_EMERG   1
#define BL_LOG_ALERT   2
#define BL_LOG_CRIT    3
#define BL_LOG_ERR     4
#define BL_LOG_WARN    5
#define BL_LOG_NOTICE  6
#define BL_LOG_INFO    7
#define BL_LOG_DEBUG   8

struct bl_log_s {
    int          fd;
    int          level;
    char        *file;      /* NULL: stderr */
};

extern bl_log_t  *bl_log;          /* the log of the running process */
extern int        bl_log_process;  /* worker slot shown after the pid */

void bl_log_error(int level, bl_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bl_log_verror(int level, bl_err_t err, const char *fmt, va_list args);

#define bl_log_debug(...)                                                     \
    do {                                                                      \
        if (bl_log->level >= BL_LOG_DEBUG) {                                  \
            bl_log_error(BL_LOG_DEBUG, 0, __VA_ARGS__);                       \
        }                                                                     \
    } while (0)

/* the message of the last emerg..error line logged ("" if none since
 * bl_log_forget_error()), without the time and level prefix */
const char *bl_log_last_error(void);
void bl_log_forget_error(void);

/* "info" -> BL_LOG_INFO, -1 when unknown */
int bl_log_level_parse(const bl_str_t *name);
const char *bl_log_level_name(int level);

/* open (append, create 0644); BL_ERROR logged to the current log */
bl_int_t bl_log_open(bl_log_t *log, const char *file, int level);
/* reopen after rotation (SIGUSR1); keeps the old fd on failure */
bl_int_t bl_log_reopen(bl_log_t *log);
/* a daemon's stderr goes to the log file (stray writes, and no held
 * pipe of whoever started it); no-op when the log is stderr itself */
void bl_log_redirect_stderr(bl_log_t *log);
/* write into log fd and, for levels <= EMERG at start-up, stderr too */
void bl_log_set_stderr_too(int on);

#endif /* BL_LOG_H */
