/*
 * The storage module: the `storage postgres|embedded { ... }` block, and
 * the connection pool started in init_process: in each worker, and in the
 * watcher, which reads the log in order, listens for commits and runs the
 * lease expiry.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_storage_conf.h>
#include <bl_pg.h>

#include <fcntl.h>
#include <glob.h>
#include <pwd.h>
#include <sys/stat.h>


#define BL_STORAGE_PASSWORD_MAX  1024

/*
 * The watcher's pool: two query connections, whatever `connections` says
 * for the workers (plus the one that listens, bl_storage_listen).  One
 * would do, but a read pipelined behind a write waits for it, and the
 * lease expiry is a write that may wait for the revision lock behind
 * other nodes' writes: the log reads that feed every watch must not.
 */
#define BL_STORAGE_WATCHER_CONNECTIONS  2


/* a directive valid in one kind of storage block only */
typedef struct {
    bl_uint_t        kind;
    bl_conf_set_pt   set;
} bl_storage_only_t;


static void *bl_storage_create_conf(bl_cycle_t *cycle);
static char *bl_storage_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_storage_init_process(bl_cycle_t *cycle,
    bl_uint_t process);
static void bl_storage_exit_process(bl_cycle_t *cycle, bl_uint_t process);
static char *bl_storage_block(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_storage_set_only(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);


static const bl_conf_num_bounds_t  bl_storage_connections_bounds = {
    1, BL_PG_MAX_CONNECTIONS
};

static const bl_storage_only_t  bl_storage_pg_str = {
    BL_STORAGE_POSTGRES, bl_conf_set_str
};

static const bl_storage_only_t  bl_storage_pg_path = {
    BL_STORAGE_POSTGRES, bl_conf_set_path
};

static const bl_storage_only_t  bl_storage_embedded_path = {
    BL_STORAGE_EMBEDDED, bl_conf_set_path
};


static const bl_command_t  bl_storage_commands[] = {
    { "storage", BL_MAIN_CONF | BL_CONF_BLOCK | BL_CONF_TAKE1,
      bl_storage_block, 0, NULL },
    { "dsn", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_storage_set_only,
      offsetof(bl_storage_conf_t, dsn), &bl_storage_pg_str },
    { "password_file", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_storage_set_only,
      offsetof(bl_storage_conf_t, password_file), &bl_storage_pg_path },
    { "data_dir", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_storage_set_only,
      offsetof(bl_storage_conf_t, data_dir), &bl_storage_embedded_path },
    { "postgres_bin", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_storage_set_only,
      offsetof(bl_storage_conf_t, postgres_bin), &bl_storage_embedded_path },
    { "connections", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_conf_set_num,
      offsetof(bl_storage_conf_t, connections),
      &bl_storage_connections_bounds },
    { "connect_timeout", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_conf_set_msec,
      offsetof(bl_storage_conf_t, connect_timeout), NULL },
    { "request_timeout", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_conf_set_msec,
      offsetof(bl_storage_conf_t, request_timeout), NULL },
    bl_null_command
};


bl_module_t  bl_storage_module = {
    "storage", 0, bl_storage_commands, bl_storage_create_conf,
    bl_storage_init_conf, NULL, bl_storage_init_process,
    bl_storage_exit_process
};


bl_storage_conf_t *
bl_storage_get_conf(bl_cycle_t *cycle)
{
    return bl_get_conf(cycle, bl_storage_module);
}


static void *
bl_storage_create_conf(bl_cycle_t *cycle)
{
    bl_storage_conf_t  *scf;

    scf = bl_pcalloc(cycle->pool, sizeof(bl_storage_conf_t));
    if (scf == NULL) {
        return NULL;
    }

    scf->kind = BL_CONF_UNSET_UINT;
    scf->connections = BL_CONF_UNSET;
    scf->connect_timeout = BL_CONF_UNSET_MSEC;
    scf->request_timeout = BL_CONF_UNSET_MSEC;

    return scf;
}


static char *
bl_storage_block(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_str_t           *value;
    bl_storage_conf_t  *scf;

    BL_UNUSED(cmd);

    scf = conf;
    value = cf->args->elts;

    if (scf->kind != BL_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    if (bl_str_eq_cstr(&value[1], "postgres")) {
        scf->kind = BL_STORAGE_POSTGRES;

    } else if (bl_str_eq_cstr(&value[1], "embedded")) {
        scf->kind = BL_STORAGE_EMBEDDED;

    } else {
        bl_conf_error(cf, 0, "unknown storage \"%.*s\", it must be "
                      "\"postgres\" or \"embedded\"", BL_STR_ARGS(&value[1]));
        return BL_CONF_ERROR;
    }

    scf->where = bl_conf_where(cf);

    return bl_conf_parse_block(cf, BL_STORAGE_CONF, NULL);
}


static char *
bl_storage_set_only(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_storage_conf_t        *scf;
    const bl_storage_only_t  *only;

    scf = conf;
    only = cmd->post;

    if (scf->kind != only->kind) {
        return (only->kind == BL_STORAGE_POSTGRES)
               ? "is only allowed in \"storage postgres\""
               : "is only allowed in \"storage embedded\"";
    }

    return only->set(cf, cmd, conf);
}


/* init_conf */

static void
bl_storage_password_cleanup(void *data)
{
    char  *p;

    p = data;
    explicit_bzero(p, strlen(p));
}


static bl_int_t
bl_storage_read_password(bl_cycle_t *cycle, bl_storage_conf_t *scf)
{
    int           fd;
    char         *p, *buf;
    ssize_t       n;
    struct stat   st;
    const char   *name;

    name = (const char *) scf->password_file.data;

    fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "could not open password_file "
                     "\"%s\" in %s", name, scf->where);
        return BL_ERROR;
    }

    if (fstat(fd, &st) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "fstat(\"%s\") failed", name);
        close(fd);
        return BL_ERROR;
    }

    if (!S_ISREG(st.st_mode)) {
        bl_log_error(BL_LOG_EMERG, 0, "password_file \"%s\" is not a "
                     "regular file in %s", name, scf->where);
        close(fd);
        return BL_ERROR;
    }

    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        /* as libpq says of ~/.pgpass */
        bl_log_error(BL_LOG_WARN, 0, "password_file \"%s\" has group or "
                     "world access; permissions should be u=rw (0600) or "
                     "less", name);
    }

    buf = bl_pnalloc(cycle->pool, BL_STORAGE_PASSWORD_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return BL_ERROR;
    }

    n = read(fd, buf, BL_STORAGE_PASSWORD_MAX + 1);
    close(fd);

    if (n == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "could not read password_file "
                     "\"%s\"", name);
        return BL_ERROR;
    }

    if (n > BL_STORAGE_PASSWORD_MAX) {
        explicit_bzero(buf, BL_STORAGE_PASSWORD_MAX + 1);
        bl_log_error(BL_LOG_EMERG, 0, "password_file \"%s\" is longer than "
                     "%d bytes", name, BL_STORAGE_PASSWORD_MAX);
        return BL_ERROR;
    }

    buf[n] = '\0';

    /* the first line is the password */
    p = memchr(buf, '\n', (size_t) n);
    if (p != NULL) {
        explicit_bzero(p, (size_t) (buf + n - p));
        n = p - buf;
    }

    if (n > 0 && buf[n - 1] == '\r') {
        buf[--n] = '\0';
    }

    if (n == 0) {
        bl_log_error(BL_LOG_EMERG, 0, "password_file \"%s\" is empty in %s",
                     name, scf->where);
        return BL_ERROR;
    }

    if (bl_pool_cleanup_add(cycle->pool, bl_storage_password_cleanup, buf)
        == NULL)
    {
        explicit_bzero(buf, (size_t) n);
        return BL_ERROR;
    }

    scf->password = buf;

    return BL_OK;
}


static bl_int_t
bl_storage_check_dsn(bl_storage_conf_t *scf)
{
    char              *err;
    PQconninfoOption  *opts, *o;

    err = NULL;

    opts = PQconninfoParse(scf->conninfo, &err);

    if (opts == NULL) {
        /* libpq's message may quote a piece of the string, which may be a
         * password: not logged */
        if (err != NULL) {
            PQfreemem(err);
        }

        bl_log_error(BL_LOG_EMERG, 0, "\"dsn\" is not a valid libpq "
                     "connection string (keyword=value ... or a "
                     "postgresql:// URI) in %s", scf->where);
        return BL_ERROR;
    }

    for (o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL
            && o->val[0] != '\0')
        {
            bl_log_error(BL_LOG_WARN, 0, "\"dsn\" holds a password in %s; "
                         "\"password_file\" keeps it out of the "
                         "configuration", scf->where);
        }
    }

    PQconninfoFree(opts);

    return BL_OK;
}


/* the directory of the newest /usr/lib/postgresql/N/bin/postgres, else
 * `pg_config --bindir` if it holds a postgres */
static bl_int_t
bl_storage_find_postgres(bl_cycle_t *cycle, bl_str_t *dir)
{
    int      best_version, v;
    char     line[PATH_MAX], path[PATH_MAX + 16];
    FILE    *fp;
    size_t   i, n;
    glob_t   g;
    const char  *best, *p;

    static const char  base[] = "/usr/lib/postgresql/";

    best = NULL;
    best_version = -1;

    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) == 0) {
        for (i = 0; i < g.gl_pathc; i++) {
            p = g.gl_pathv[i] + sizeof(base) - 1;
            v = atoi(p);

            if (v > best_version && access(g.gl_pathv[i], X_OK) == 0) {
                best_version = v;
                best = g.gl_pathv[i];
            }
        }

        if (best != NULL) {
            n = strlen(best) - sizeof("/postgres") + 1;
            if (bl_str_dup(cycle->pool, dir, best, n) != BL_OK) {
                globfree(&g);
                return BL_ERROR;
            }

            globfree(&g);
            return BL_OK;
        }

        globfree(&g);
    }

    fp = popen("pg_config --bindir 2>/dev/null", "r");
    if (fp == NULL) {
        return BL_DECLINED;
    }

    if (fgets(line, sizeof(line), fp) == NULL) {
        line[0] = '\0';
    }

    (void) pclose(fp);

    n = strcspn(line, "\r\n");
    line[n] = '\0';

    if (n == 0) {
        return BL_DECLINED;
    }

    snprintf(path, sizeof(path), "%s/postgres", line);

    if (access(path, X_OK) != 0) {
        return BL_DECLINED;
    }

    return bl_str_dup(cycle->pool, dir, line, n);
}


char *
bl_storage_embedded_conninfo(bl_pool_t *pool, const bl_str_t *data_dir)
{
    char    *s, *p;
    size_t   i, n;

    static const char  tail[] = "' port=%d dbname=" BL_STORAGE_EMBEDDED_DB
                                " user=" BL_STORAGE_EMBEDDED_USER;

    n = sizeof("host='") + 2 * data_dir->len + sizeof(tail) + 16;

    s = bl_pnalloc(pool, n);
    if (s == NULL) {
        return NULL;
    }

    p = s;
    p += sprintf(p, "host='");

    for (i = 0; i < data_dir->len; i++) {
        if (data_dir->data[i] == '\'' || data_dir->data[i] == '\\') {
            *p++ = '\\';
        }

        *p++ = (char) data_dir->data[i];
    }

    sprintf(p, tail, BL_STORAGE_EMBEDDED_PORT);

    return s;
}


static char *
bl_storage_init_conf(bl_cycle_t *cycle, void *conf)
{
    char               *path;
    bl_int_t            rc;
    bl_storage_conf_t  *scf;

    scf = conf;

    if (scf->kind == BL_CONF_UNSET_UINT) {
        scf->kind = BL_STORAGE_EMBEDDED;
    }

    if (scf->where == NULL) {
        scf->where = (const char *) cycle->conf_file.data;
    }

    bl_conf_init_value(scf->connections, 2);
    bl_conf_init_msec_value(scf->connect_timeout, 5000);
    bl_conf_init_msec_value(scf->request_timeout, 5000);

    if (scf->connect_timeout <= 0 || scf->request_timeout <= 0) {
        bl_log_error(BL_LOG_EMERG, 0, "\"connect_timeout\" and "
                     "\"request_timeout\" must be positive in %s",
                     scf->where);
        return BL_CONF_ERROR;
    }

    if (scf->kind == BL_STORAGE_POSTGRES) {
        scf->conninfo = scf->dsn.data ? (const char *) scf->dsn.data : "";

        if (bl_storage_check_dsn(scf) != BL_OK) {
            return BL_CONF_ERROR;
        }

        if (scf->password_file.data != NULL
            && bl_storage_read_password(cycle, scf) != BL_OK)
        {
            return BL_CONF_ERROR;
        }

        return BL_CONF_OK;
    }

    /* embedded */

    if (scf->data_dir.data == NULL) {
        bl_str_set(&scf->data_dir, "data");

        if (bl_conf_full_name(cycle, &scf->data_dir) != BL_OK) {
            return BL_CONF_ERROR;
        }
    }

    if (scf->postgres_bin.data == NULL) {
        rc = bl_storage_find_postgres(cycle, &scf->postgres_bin);

        if (rc == BL_ERROR) {
            return BL_CONF_ERROR;
        }

        if (rc != BL_OK) {
            bl_log_error(BL_LOG_EMERG, 0, "embedded storage: no PostgreSQL "
                         "server found in /usr/lib/postgresql/*/bin nor by "
                         "\"pg_config --bindir\"; install it or set "
                         "\"postgres_bin\" (%s)", scf->where);
            return BL_CONF_ERROR;
        }

    } else {
        path = bl_pnalloc(cycle->pool, scf->postgres_bin.len + 16);
        if (path == NULL) {
            return BL_CONF_ERROR;
        }

        sprintf(path, "%s/postgres", (const char *) scf->postgres_bin.data);

        if (access(path, X_OK) != 0) {
            bl_log_error(BL_LOG_EMERG, errno, "\"postgres_bin\": \"%s\" is "
                         "not executable in %s", path, scf->where);
            return BL_CONF_ERROR;
        }
    }

    scf->conninfo = bl_storage_embedded_conninfo(cycle->pool,
                                                 &scf->data_dir);
    if (scf->conninfo == NULL) {
        return BL_CONF_ERROR;
    }

    return BL_CONF_OK;
}


/* processes */

/*
 * The files a dsn names for libpq (TLS certificates and key) are read by
 * libpq in this process, as `user`, at every connection attempt.  One it
 * cannot read is a configuration error that no retry fixes, and libpq 15
 * with OpenSSL 3 reports an unreadable key with a garbled message (its
 * SSL error text is read from an unfilled buffer): say it here, clearly,
 * once, and do not start.
 */
static bl_int_t
bl_storage_check_files(bl_storage_conf_t *scf)
{
    int                e;
    char              *err;
    bl_int_t           rc;
    struct passwd     *pw;
    PQconninfoOption  *opts, *o;

    static const char  *files[] = {
        "sslcert", "sslkey", "sslrootcert", "sslcrl", NULL
    };
    const char        **f;

    err = NULL;
    opts = PQconninfoParse(scf->conninfo, &err);
    if (opts == NULL) {
        if (err != NULL) {
            PQfreemem(err);
        }
        return BL_OK;           /* checked in init_conf */
    }

    rc = BL_OK;

    for (o = opts; o->keyword != NULL; o++) {
        for (f = files; *f != NULL; f++) {
            if (strcmp(o->keyword, *f) != 0 || o->val == NULL
                || o->val[0] == '\0' || access(o->val, R_OK) == 0)
            {
                continue;
            }

            e = errno;
            pw = getpwuid(geteuid());
            bl_log_error(BL_LOG_EMERG, e, "the \"%s\" file \"%s\" of "
                         "\"dsn\" in %s cannot be read by user \"%s\", "
                         "which connects to the database (give it the "
                         "file; a key must be its own, mode 0600)", *f,
                         o->val, scf->where,
                         pw != NULL ? pw->pw_name : "?");
            rc = BL_ERROR;
        }
    }

    PQconninfoFree(opts);

    return rc;
}


static bl_int_t
bl_storage_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    bl_pg_conf_t        pc;
    bl_storage_conf_t  *scf;

    if (process != BL_PROCESS_WORKER && process != BL_PROCESS_WATCHER) {
        return BL_OK;
    }

    scf = bl_get_conf(cycle, bl_storage_module);

    if (scf->kind == BL_STORAGE_POSTGRES
        && bl_storage_check_files(scf) != BL_OK)
    {
        return BL_ERROR;
    }

    pc.conninfo = scf->conninfo;
    pc.password = scf->password;
    pc.connections = (process == BL_PROCESS_WATCHER)
                     ? BL_STORAGE_WATCHER_CONNECTIONS
                     : (bl_uint_t) scf->connections;
    pc.connect_timeout = scf->connect_timeout;
    pc.request_timeout = scf->request_timeout;

    return bl_pg_init(&pc);
}


static void
bl_storage_exit_process(bl_cycle_t *cycle, bl_uint_t process)
{
    BL_UNUSED(cycle);

    if (process == BL_PROCESS_WORKER || process == BL_PROCESS_WATCHER) {
        bl_pg_done();
    }
}
