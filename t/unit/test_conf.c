/*
 * The configuration reader: grammar, every setter, every error path, and
 * that each error names file:line.  A test module declares one directive
 * of each setter type; the core module is the real one.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "tap.h"

typedef struct {
    int        flag;
    bl_str_t   str;
    bl_str_t   path;
    int64_t    num;
    size_t     size;
    int64_t    msec;
    bl_uint_t  mode;
    bl_str_t   inner;
    int        blocks;
} test_conf_t;

static const bl_conf_num_bounds_t  test_bounds = { 1, 100 };
static const bl_conf_enum_t        test_modes[] = {
    { "fast", 1 }, { "safe", 2 }, { NULL, 0 }
};

static char *
test_set_block(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    test_conf_t  *tc = conf;

    (void) cmd;
    tc->blocks++;
    return bl_conf_parse_block(cf, BL_STORAGE_CONF, NULL);
}

static const bl_command_t  test_commands[] = {
    { "t_flag", BL_MAIN_CONF | BL_CONF_FLAG, bl_conf_set_flag,
      offsetof(test_conf_t, flag), NULL },
    { "t_str", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_str,
      offsetof(test_conf_t, str), NULL },
    { "t_path", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_path,
      offsetof(test_conf_t, path), NULL },
    { "t_num", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_num,
      offsetof(test_conf_t, num), &test_bounds },
    { "t_size", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_size,
      offsetof(test_conf_t, size), NULL },
    { "t_msec", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_msec,
      offsetof(test_conf_t, msec), NULL },
    { "t_mode", BL_MAIN_CONF | BL_CONF_TAKE1, bl_conf_set_enum,
      offsetof(test_conf_t, mode), test_modes },
    { "t_block", BL_MAIN_CONF | BL_CONF_BLOCK | BL_CONF_NOARGS,
      test_set_block, 0, NULL },
    { "t_inner", BL_STORAGE_CONF | BL_CONF_TAKE1, bl_conf_set_str,
      offsetof(test_conf_t, inner), NULL },
    bl_null_command
};

static void *
test_create_conf(bl_cycle_t *cycle)
{
    test_conf_t  *tc;

    tc = bl_pcalloc(cycle->pool, sizeof(test_conf_t));
    if (tc) {
        tc->flag = BL_CONF_UNSET;
        tc->num = BL_CONF_UNSET;
        tc->size = BL_CONF_UNSET_SIZE;
        tc->msec = BL_CONF_UNSET_MSEC;
        tc->mode = BL_CONF_UNSET_UINT;
    }
    return tc;
}

static bl_module_t  test_module = {
    "test", 0, test_commands, test_create_conf, NULL, NULL, NULL, NULL
};

bl_module_t  *bl_modules[] = { &bl_core_module, &test_module, NULL };

static char  tmpdir[] = "/tmp/bl_test_conf.XXXXXX";
static char  logpath[PATH_MAX];
static bl_log_t  test_log;

static void
write_file(const char *name, const char *text)
{
    char  path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* the log written since the last call */
static char  logbuf[8192];

static const char *
read_log(void)
{
    static off_t  seen;
    int           fd;
    ssize_t       n;

    fd = open(logpath, O_RDONLY);
    n = fd >= 0 ? pread(fd, logbuf, sizeof(logbuf) - 1, seen) : 0;
    if (fd >= 0) {
        close(fd);
    }
    if (n < 0) {
        n = 0;
    }
    logbuf[n] = '\0';
    seen += n;
    return logbuf;
}

static bl_cycle_t *
load(const char *text)
{
    bl_cycle_opts_t  opts;
    char             conf[PATH_MAX], prefix[PATH_MAX];

    write_file("main.conf", text);
    snprintf(conf, sizeof(conf), "%s/main.conf", tmpdir);
    snprintf(prefix, sizeof(prefix), "%s/", tmpdir);
    memset(&opts, 0, sizeof(opts));
    opts.conf_file.data = (u_char *) conf;
    opts.conf_file.len = strlen(conf);
    opts.prefix.data = (u_char *) prefix;
    opts.prefix.len = strlen(prefix);
    opts.test_only = 1;
    (void) read_log();
    return bl_cycle_init(&opts, NULL);
}

/* the configuration must fail, and the log must say msg at line */
static void
fails(const char *text, const char *msg, int line, const char *name)
{
    bl_cycle_t  *c;
    const char  *log;
    char         where[64];

    c = load(text);
    log = read_log();
    snprintf(where, sizeof(where), "main.conf:%d", line);
    ok(c == NULL && strstr(log, msg) != NULL
       && (line == 0 || strstr(log, where) != NULL), "%s", name);
    if (c) {
        bl_cycle_free(c);
    } else if (strstr(log, msg) == NULL
               || (line && strstr(log, where) == NULL))
    {
        printf("#   wanted \"%s\" at line %d, log:\n# %s\n", msg, line, log);
    }
}

static void
test_values(void)
{
    bl_str_t  s;
    size_t    sz;
    int64_t   ms;

    bl_str_set(&s, "64m");
    ok(bl_conf_parse_size(&s, &sz) == BL_OK && sz == 64 * 1024 * 1024,
       "size 64m");
    bl_str_set(&s, "10k");
    ok(bl_conf_parse_size(&s, &sz) == BL_OK && sz == 10240, "size 10k");
    bl_str_set(&s, "2G");
    ok(bl_conf_parse_size(&s, &sz) == BL_OK && sz == 2147483648ULL,
       "size 2G");
    bl_str_set(&s, "12");
    ok(bl_conf_parse_size(&s, &sz) == BL_OK && sz == 12, "size bare");
    bl_str_set(&s, "1x");
    ok(bl_conf_parse_size(&s, &sz) == BL_ERROR, "size bad unit");
    bl_str_set(&s, "m");
    ok(bl_conf_parse_size(&s, &sz) == BL_ERROR, "size without number");
    bl_str_set(&s, "99999999999999999999");
    ok(bl_conf_parse_size(&s, &sz) == BL_ERROR, "size overflow");

    bl_str_set(&s, "500ms");
    ok(bl_conf_parse_msec(&s, &ms) == BL_OK && ms == 500, "time 500ms");
    bl_str_set(&s, "10s");
    ok(bl_conf_parse_msec(&s, &ms) == BL_OK && ms == 10000, "time 10s");
    bl_str_set(&s, "1h30m");
    ok(bl_conf_parse_msec(&s, &ms) == BL_OK && ms == 5400000, "time 1h30m");
    bl_str_set(&s, "1d");
    ok(bl_conf_parse_msec(&s, &ms) == BL_OK && ms == 86400000, "time 1d");
    bl_str_set(&s, "2w");
    ok(bl_conf_parse_msec(&s, &ms) == BL_OK && ms == 1209600000,
       "time 2w");
    bl_str_set(&s, "7");
    ok(bl_conf_parse_msec(&s, &ms) == BL_OK && ms == 7000,
       "time bare number is seconds");
    bl_str_set(&s, "5x");
    ok(bl_conf_parse_msec(&s, &ms) == BL_ERROR, "time bad unit");
    bl_str_set(&s, "s");
    ok(bl_conf_parse_msec(&s, &ms) == BL_ERROR, "time without number");
}

static void
test_good(void)
{
    bl_cycle_t      *c;
    test_conf_t     *tc;
    bl_core_conf_t  *ccf;
    char             expect[PATH_MAX];

    write_file("inc1.part", "t_num 42;\n");
    write_file("inc2.part", "t_mode safe; # trailing comment\n");

    c = load("# a comment line\n"
             "daemon off;  worker_processes 3;\n"
             "error_log stderr warn;\n"
             "pid run/x.pid;\n"
             "name \"node \\\"one\\\"\";\n"
             "t_flag on;\n"
             "t_str 'it\\'s\\ta\\nline';\n"
             "t_path data/dir;\n"
             "t_size 64m;\n"
             "t_msec 1h30m;\n"
             "include *.part;\n"
             "t_block {\n"
             "    t_inner \"x y\";   # comment inside a block\n"
             "}\n"
             "limits { }\n");
    ok(c != NULL, "a good configuration loads");
    if (c == NULL) {
        printf("# %s\n", read_log());
        return;
    }
    tc = bl_get_conf(c, test_module);
    ccf = bl_core_conf(c);
    is_int(ccf->daemon, 0, "daemon off");
    is_int(ccf->worker_processes, 3, "worker_processes 3");
    is_int(ccf->error_log_level, BL_LOG_WARN, "error_log level");
    snprintf(expect, sizeof(expect), "%s/run/x.pid", tmpdir);
    is_str((char *) ccf->pid.data, expect, "pid relative to prefix");
    is_str((char *) ccf->name.data, "node \"one\"", "double-quoted escapes");
    is_int(tc->flag, 1, "flag on");
    is_str((char *) tc->str.data, "it's\ta\nline", "single-quoted escapes");
    snprintf(expect, sizeof(expect), "%s/data/dir", tmpdir);
    is_str((char *) tc->path.data, expect, "path relative to prefix");
    is_int(tc->size, 64 * 1024 * 1024, "size");
    is_int(tc->msec, 5400000, "time");
    is_int(tc->num, 42, "number from an included file");
    is_int(tc->mode, 2, "enum from an included file");
    is_int(tc->blocks, 1, "block directive ran");
    is_str((char *) tc->inner.data, "x y", "directive inside the block");
    bl_cycle_free(c);

    c = load("worker_processes auto; error_log stderr;\n");
    ok(c != NULL && bl_core_conf(c)->worker_processes
                    == sysconf(_SC_NPROCESSORS_ONLN),
       "worker_processes auto = online cores");
    if (c) {
        bl_cycle_free(c);
    }

    c = load("error_log stderr;\n");
    ok(c != NULL && bl_core_conf(c)->worker_processes >= 1
       && bl_core_conf(c)->daemon == 1 && bl_core_conf(c)->shutdown_timeout
          == 30000, "defaults");
    if (c) {
        bl_cycle_free(c);
    }
}

static void
test_errors(void)
{
    fails("error_log stderr;\n\nfoo bar;\n", "unknown directive \"foo\"",
          3, "unknown directive");
    fails("error_log stderr;\nt_inner x;\n", "\"t_inner\" directive is not "
          "allowed here", 2, "directive in the wrong context");
    fails("error_log stderr;\nt_block { daemon on; }\n", "\"daemon\" "
          "directive is not allowed here", 2, "main directive in a block");
    fails("error_log stderr;\nt_num 1 2;\n", "invalid number of arguments "
          "in \"t_num\" directive", 2, "too many arguments");
    fails("error_log stderr;\nt_num;\n", "invalid number of arguments in "
          "\"t_num\" directive", 2, "too few arguments");
    fails("error_log stderr;\nt_flag on off;\n", "invalid number of "
          "arguments", 2, "flag takes one argument");
    fails("error_log stderr;\nt_num 5", "unexpected end of file, expecting "
          "\";\" or \"}\"", 2, "missing semicolon at end of file");
    fails("error_log stderr;\nt_block;\n", "directive \"t_block\" has no "
          "opening \"{\"", 2, "block directive without a block");
    fails("error_log stderr;\nt_num 5 {\n}\n", "directive \"t_num\" is not "
          "terminated by \";\"", 2, "plain directive with a block");
    fails("error_log stderr;\n}\n", "unexpected \"}\"", 2, "stray }");
    fails("error_log stderr;\nt_block {\nt_inner x;\n", "unexpected end of "
          "file, expecting \"}\"", 4, "unclosed block");
    fails("error_log stderr;\nt_str \"abc;\n\n", "unterminated quoted "
          "string", 2, "unterminated string");
    fails("error_log stderr;\nt_str \"a\"b;\n", "unexpected \"b\" after "
          "quoted string", 2, "junk after a quoted string");
    fails("error_log stderr;\n;\n", "unexpected \";\"", 2,
          "empty directive");
    fails("error_log stderr;\nt_flag yes;\n", "it must be \"on\" or "
          "\"off\"", 2, "bad flag");
    fails("error_log stderr;\nt_num x1;\n", "invalid number \"x1\"", 2,
          "bad number");
    fails("error_log stderr;\nt_num 101;\n", "\"t_num\" must be between 1 "
          "and 100", 2, "number out of bounds");
    fails("error_log stderr;\nt_size 10q;\n", "invalid size \"10q\"", 2,
          "bad size");
    fails("error_log stderr;\nt_msec 10y;\n", "invalid time \"10y\"", 2,
          "bad time");
    fails("error_log stderr;\nt_mode turbo;\n", "invalid value \"turbo\" in "
          "\"t_mode\"", 2, "bad enum");
    fails("error_log stderr;\nt_num 1;\nt_num 2;\n", "\"t_num\" directive "
          "is duplicate", 3, "duplicate");
    fails("error_log stderr;\ninclude missing.conf;\n", "include", 2,
          "include of a missing file");
    fails("error_log stderr bogus;\n", "unknown log level \"bogus\"", 1,
          "bad log level");
    fails("error_log stderr;\nworker_processes 0;\n", "invalid value \"0\" "
          "in \"worker_processes\"", 2, "worker_processes 0");
    fails("error_log stderr;\nworker_processes many;\n", "invalid value "
          "\"many\"", 2, "worker_processes junk");
    fails("error_log stderr;\nuser no_such_user_here;\n", "getpwnam(\""
          "no_such_user_here\") failed", 2, "unknown user");
    fails("error_log stderr;\nworker_shutdown_timeout 5q;\n",
          "invalid time", 2, "bad worker_shutdown_timeout");

    write_file("bad.part", "t_num 1;\n\nbroken\n");
    fails("error_log stderr;\ninclude bad.part;\n", "bad.part:3", 0,
          "an error in an included file names that file and line");
}

int
main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(logpath, sizeof(logpath), "%s/test.log", tmpdir);
    if (bl_log_open(&test_log, logpath, BL_LOG_DEBUG) != BL_OK) {
        return 2;
    }
    bl_log = &test_log;
    bl_modules_init();

    test_values();
    test_good();
    test_errors();

    {
        char  cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0) {
            diag("could not remove the temp dir");
        }
    }
    return tap_done();
}
