/*
 * ballast: an etcd v3 server on PostgreSQL.
 *
 * main() reads the command line, then either tests the configuration
 * (-t), signals a running master (-s), or becomes the master.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_process.h>
#include <bl_master.h>

#include <signal.h>

static void
bl_usage(void)
{
    fprintf(stderr,
        "Usage: ballast [-?hvVtq] [-s signal] [-p prefix] [-c filename] "
        "[-g directives]\n\n"
        "Options:\n"
        "  -?,-h         : this help\n"
        "  -v            : show version and exit\n"
        "  -V            : show version and configure options then exit\n"
        "  -t            : test configuration and exit\n"
        "  -q            : suppress non-error messages during testing\n"
        "  -s signal     : send signal to the master process: "
        "stop, quit, reopen, reload\n"
        "  -p prefix     : set prefix path (default: " BL_PREFIX ")\n"
        "  -c filename   : set configuration file (default: "
        BL_CONF_PATH ")\n"
        "  -g directives : set global directives out of configuration "
        "file\n");
}

static int
bl_signal_master(bl_cycle_t *cycle, const char *name)
{
    static const struct { const char *name; int signo; } sigs[] = {
        { "stop", SIGTERM }, { "quit", SIGQUIT }, { "reopen", SIGUSR1 },
        { "reload", SIGHUP }
    };
    bl_core_conf_t  *ccf;
    pid_t            pid;
    size_t           i;

    for (i = 0; i < bl_nelems(sigs); i++) {
        if (strcmp(name, sigs[i].name) == 0) {
            break;
        }
    }
    if (i == bl_nelems(sigs)) {
        fprintf(stderr, "ballast: invalid option: \"-s %s\"\n", name);
        return 1;
    }

    ccf = bl_core_conf(cycle);
    pid = bl_read_pidfile((char *) ccf->pid.data);
    if (pid == -1) {
        return 1;
    }
    if (kill(pid, sigs[i].signo) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "kill(%d, %d) failed", (int) pid,
                     sigs[i].signo);
        return 1;
    }
    return 0;
}

static int
bl_set_path(bl_str_t *dst, const char *src, int dir)
{
    char    cwd[PATH_MAX], buf[PATH_MAX * 2];
    size_t  n;

    if (src[0] == '/') {
        n = snprintf(buf, sizeof(buf), "%s", src);
    } else {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            fprintf(stderr, "ballast: getcwd() failed: %s\n",
                    strerror(errno));
            return -1;
        }
        n = snprintf(buf, sizeof(buf), "%s/%s", cwd, src);
    }
    if (n >= sizeof(buf) - 2) {
        fprintf(stderr, "ballast: path too long: %s\n", src);
        return -1;
    }
    if (dir && buf[n - 1] != '/') {
        buf[n++] = '/';
        buf[n] = '\0';
    }
    dst->data = (u_char *) strdup(buf);
    dst->len = n;
    return dst->data ? 0 : -1;
}

int
main(int argc, char **argv)
{
    /* static: the options outlive main's frame (and stay reachable) */
    static bl_cycle_opts_t  opts;
    bl_cycle_t             *cycle;
    const char             *conf, *prefix, *signal_name;
    char                   *p;
    int                     i, rc;

    conf = NULL;
    prefix = BL_PREFIX;
    signal_name = NULL;

    for (i = 1; i < argc; i++) {
        p = argv[i];
        if (p[0] != '-' || p[1] == '\0' || p[2] != '\0') {
            fprintf(stderr, "ballast: invalid option: \"%s\"\n", p);
            return 1;
        }
        switch (p[1]) {
        case '?':
        case 'h':
            bl_usage();
            return 0;
        case 'v':
            fprintf(stderr, "ballast version: ballast/" BL_VERSION "\n");
            return 0;
        case 'V':
            fprintf(stderr, "ballast version: ballast/" BL_VERSION "\n"
                    "built by " BL_COMPILER "\n"
                    "configure arguments:" BL_CONFIGURE_ARGS "\n");
            return 0;
        case 't':
            opts.test_only = 1;
            break;
        case 'q':
            opts.quiet = 1;
            break;
        case 's':
        case 'p':
        case 'c':
        case 'g':
            if (i + 1 >= argc) {
                fprintf(stderr, "ballast: option \"-%c\" requires %s\n",
                        p[1], p[1] == 's' ? "signal name"
                        : p[1] == 'g' ? "parameter" : "file name");
                return 1;
            }
            if (p[1] == 's') {
                signal_name = argv[++i];
            } else if (p[1] == 'p') {
                prefix = argv[++i];
            } else if (p[1] == 'c') {
                conf = argv[++i];
            } else {
                opts.directives = argv[++i];
            }
            break;
        default:
            fprintf(stderr, "ballast: invalid option: \"%s\"\n", p);
            return 1;
        }
    }

    if (bl_set_path(&opts.prefix, prefix, 1) != 0) {
        return 1;
    }
    if (conf == NULL) {
        conf = BL_CONF_PATH;
    }
    if (strcmp(conf, BL_CONF_PATH) == 0
        && strncmp(conf, BL_PREFIX, strlen(BL_PREFIX)) == 0)
    {
        /* the built-in default moves with -p, as nginx's does */
        char buf[PATH_MAX * 2];
        snprintf(buf, sizeof(buf), "%s%s", opts.prefix.data,
                 conf + strlen(BL_PREFIX));
        rc = bl_set_path(&opts.conf_file, buf, 0);
    } else {
        rc = bl_set_path(&opts.conf_file, conf, 0); /* absolute or cwd */
    }
    if (rc != 0) {
        return 1;
    }

    opts.signal = signal_name != NULL;

    bl_init_setproctitle(argc, argv);
    bl_modules_init();

    cycle = bl_cycle_init(&opts, NULL);

    if (opts.test_only) {
        if (cycle == NULL) {
            fprintf(stderr, "ballast: configuration file %s test failed\n",
                    opts.conf_file.data);
            return 1;
        }
        if (!opts.quiet) {
            fprintf(stderr, "ballast: the configuration file %s syntax is "
                    "ok\nballast: configuration file %s test is "
                    "successful\n", opts.conf_file.data, opts.conf_file.data);
        }
        bl_cycle_free(cycle);
        return 0;
    }

    if (cycle == NULL) {
        return 1;
    }

    if (signal_name) {
        rc = bl_signal_master(cycle, signal_name);
        bl_cycle_free(cycle);
        return rc;
    }

    return bl_master_run(cycle, &opts);
}
