#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>

#include <grp.h>
#include <pwd.h>

static void *bl_core_create_conf(bl_cycle_t *cycle);
static char *bl_core_init_conf(bl_cycle_t *cycle, void *conf);
static char *bl_core_set_workers(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_core_set_user(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_core_set_error_log(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_core_set_limits(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);

static const bl_conf_num_bounds_t  bl_core_nofile_bounds = { 64, 1 << 24 };

static const bl_command_t  bl_core_commands[] = {
    { "daemon", BL_MAIN_CONF | BL_CONF_FLAG, bl_conf_set_flag,
      offsetof(bl_core_conf_t, daemon), NULL },
    { "worker_processes", BL_MAIN_CONF | BL_CONF_TAKE1, bl_core_set_workers,
      offsetof(bl_core_conf_t, worker_processes), NULL },
    { "user", BL_MAIN_CONF | BL_CONF_TAKE12, bl_core_set_user, 0, NULL },
    { "pid", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_path,
      offsetof(bl_core_conf_t, pid), NULL },
    { "error_log", BL_MAIN_CONF | BL_CONF_TAKE12, bl_core_set_error_log, 0,
      NULL },
    { "name", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_str,
      offsetof(bl_core_conf_t, name), NULL },
    { "worker_shutdown_timeout", BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_conf_set_msec, offsetof(bl_core_conf_t, shutdown_timeout), NULL },
    { "worker_rlimit_nofile", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_num,
      offsetof(bl_core_conf_t, rlimit_nofile), &bl_core_nofile_bounds },
    { "limits", BL_MAIN_CONF | BL_CONF_BLOCK | BL_CONF_NOARGS,
      bl_core_set_limits, 0, NULL },
    bl_null_command
};

bl_module_t  bl_core_module = {
    "core", 0, bl_core_commands, bl_core_create_conf, bl_core_init_conf,
    NULL, NULL, NULL
};

static void *
bl_core_create_conf(bl_cycle_t *cycle)
{
    bl_core_conf_t  *ccf;

    ccf = bl_pcalloc(cycle->pool, sizeof(bl_core_conf_t));
    if (ccf == NULL) {
        return NULL;
    }
    ccf->daemon = BL_CONF_UNSET;
    ccf->worker_processes = BL_CONF_UNSET;
    ccf->error_log_level = BL_CONF_UNSET;
    ccf->shutdown_timeout = BL_CONF_UNSET_MSEC;
    ccf->rlimit_nofile = BL_CONF_UNSET;
    return ccf;
}

static char *
bl_core_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_core_conf_t  *ccf = conf;
    char             host[256];
    long             n;

    bl_conf_init_value(ccf->daemon, 1);
    /* default "auto": one worker per core, the nginx operator's habit */
    if (ccf->worker_processes == BL_CONF_UNSET
        || ccf->worker_processes == 0)
    {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        ccf->worker_processes = n > 0 ? n : 1;
    }
    bl_conf_init_msec_value(ccf->shutdown_timeout, 30000);

    if (ccf->pid.data == NULL) {
        if (bl_conf_default_path(cycle, BL_PID_PATH, &ccf->pid) != BL_OK) {
            return BL_CONF_ERROR;
        }
    }
    if (ccf->error_log.data == NULL) {
        if (bl_conf_default_path(cycle, BL_ERROR_LOG_PATH, &ccf->error_log)
            != BL_OK)
        {
            return BL_CONF_ERROR;
        }
    }
    bl_conf_init_value(ccf->error_log_level, BL_LOG_ERR);

    if (ccf->name.data == NULL) {
        if (gethostname(host, sizeof(host)) != 0) {
            strcpy(host, "default");
        }
        host[sizeof(host) - 1] = '\0';
        if (bl_str_dup(cycle->pool, &ccf->name, host, strlen(host))
            != BL_OK)
        {
            return BL_CONF_ERROR;
        }
    }

    /* root must not serve clients: default to nobody, as nginx does */
    if (ccf->user.data == NULL && geteuid() == 0) {
        struct passwd  *pw = getpwnam("nobody");
        if (pw == NULL) {
            bl_log_error(BL_LOG_EMERG, 0, "running as root, no \"user\" "
                         "directive and no user \"nobody\" to fall back to");
            return BL_CONF_ERROR;
        }
        bl_str_set(&ccf->user, "nobody");
        ccf->uid = pw->pw_uid;
        ccf->gid = pw->pw_gid;
    }
    return BL_CONF_OK;
}

static char *
bl_core_set_workers(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_core_conf_t  *ccf = conf;
    bl_str_t        *value;

    (void) cmd;
    if (ccf->worker_processes != BL_CONF_UNSET) {
        return "is duplicate";
    }
    value = cf->args->elts;
    if (bl_str_eq_cstr(&value[1], "auto")) {
        ccf->worker_processes = 0;
        return BL_CONF_OK;
    }
    if (bl_atoi(value[1].data, value[1].len, &ccf->worker_processes)
        != BL_OK || ccf->worker_processes < 1
        || ccf->worker_processes > 1024)
    {
        bl_conf_error(cf, 0, "invalid value \"%.*s\" in \"worker_processes\""
                      " directive, it must be \"auto\" or 1..1024",
                      BL_STR_ARGS(&value[1]));
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

static char *
bl_core_set_user(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_core_conf_t  *ccf = conf;
    bl_str_t        *value;
    struct passwd   *pw;
    struct group    *gr;

    (void) cmd;
    if (ccf->user.data) {
        return "is duplicate";
    }
    value = cf->args->elts;
    ccf->user = value[1];

    errno = 0;
    pw = getpwnam((char *) value[1].data);
    if (pw == NULL) {
        bl_conf_error(cf, errno, "getpwnam(\"%s\") failed",
                      (char *) value[1].data);
        return BL_CONF_ERROR;
    }
    ccf->uid = pw->pw_uid;
    ccf->gid = pw->pw_gid;

    if (cf->args->nelts == 3) {
        ccf->group = value[2];
        errno = 0;
        gr = getgrnam((char *) value[2].data);
        if (gr == NULL) {
            bl_conf_error(cf, errno, "getgrnam(\"%s\") failed",
                          (char *) value[2].data);
            return BL_CONF_ERROR;
        }
        ccf->gid = gr->gr_gid;
    }
    return BL_CONF_OK;
}

static char *
bl_core_set_error_log(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_core_conf_t  *ccf = conf;
    bl_str_t        *value;
    int              level;

    (void) cmd;
    if (ccf->error_log.data) {
        return "is duplicate";
    }
    value = cf->args->elts;
    ccf->error_log = value[1];
    if (!bl_str_eq_cstr(&value[1], "stderr")
        && bl_conf_full_name(cf->cycle, &ccf->error_log) != BL_OK)
    {
        return BL_CONF_ERROR;
    }
    if (cf->args->nelts == 3) {
        level = bl_log_level_parse(&value[2]);
        if (level < 0) {
            bl_conf_error(cf, 0, "unknown log level \"%.*s\"",
                          BL_STR_ARGS(&value[2]));
            return BL_CONF_ERROR;
        }
        ccf->error_log_level = level;
    }
    return BL_CONF_OK;
}

static char *
bl_core_set_limits(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    (void) cmd;
    (void) conf;
    return bl_conf_parse_block(cf, BL_LIMITS_CONF, NULL);
}
