/*
 * The HTTP endpoints' configuration (main context):
 *
 *   http_listen ADDR[:PORT] [backlog=N];   may repeat; none by default
 *                                          (port 2381 if only an address)
 *   http_request_timeout TIME;             default 10s: a request must
 *                                          arrive whole in it
 *   http_keepalive_timeout TIME;           default 75s: an idle
 *                                          connection is closed then
 *
 * The same endpoints answer HTTP/1.x on the gRPC client port too, as
 * etcd's do.  The master maps the metrics area here when it reads a
 * configuration (the first time; it is kept across reloads); each worker
 * claims its slot, accepts on the http_listen sockets and takes HTTP/1.x
 * connections from the gRPC port; the watcher claims a slot too, for
 * what only it knows (the store's revision, the lease count).
 */
#include <bl_core.h>
#include <bl_conf_file.h>
#include <bl_cycle.h>
#include <bl_core_module.h>
#include <bl_grpc_server.h>
#include <bl_http.h>
#include <bl_http_metrics.h>


#define BL_HTTP_DEFAULT_PORT     2381
#define BL_HTTP_DEFAULT_BACKLOG  511


typedef struct {
    int64_t  request_timeout;     /* ms */
    int64_t  keepalive_timeout;   /* ms */
} bl_http_conf_t;


static void *bl_http_create_conf(bl_cycle_t *cycle);
static char *bl_http_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_http_init_process(bl_cycle_t *cycle, bl_uint_t process);
static void bl_http_exit_process(bl_cycle_t *cycle, bl_uint_t process);
static char *bl_http_listen(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);


static const bl_command_t  bl_http_commands[] = {

    { "http_listen",
      BL_MAIN_CONF | BL_CONF_TAKE12,
      bl_http_listen,
      0,
      NULL },

    { "http_request_timeout",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_conf_set_msec,
      offsetof(bl_http_conf_t, request_timeout),
      NULL },

    { "http_keepalive_timeout",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_conf_set_msec,
      offsetof(bl_http_conf_t, keepalive_timeout),
      NULL },

    bl_null_command
};


bl_module_t  bl_http_module = {
    .name = "http",
    .commands = bl_http_commands,
    .create_conf = bl_http_create_conf,
    .init_conf = bl_http_init_conf,
    .init_master = NULL,
    .init_process = bl_http_init_process,
    .exit_process = bl_http_exit_process,
};


static void *
bl_http_create_conf(bl_cycle_t *cycle)
{
    bl_http_conf_t  *hcf;

    hcf = bl_pcalloc(cycle->pool, sizeof(bl_http_conf_t));
    if (hcf == NULL) {
        return NULL;
    }

    hcf->request_timeout = BL_CONF_UNSET_MSEC;
    hcf->keepalive_timeout = BL_CONF_UNSET_MSEC;

    return hcf;
}


static char *
bl_http_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_http_conf_t  *hcf;
    bl_core_conf_t  *ccf;

    hcf = conf;

    bl_conf_init_msec_value(hcf->request_timeout,
                            BL_HTTP_DEFAULT_REQUEST_TIMEOUT);
    bl_conf_init_msec_value(hcf->keepalive_timeout,
                            BL_HTTP_DEFAULT_KEEPALIVE_TIMEOUT);

    if (hcf->request_timeout <= 0 || hcf->keepalive_timeout <= 0) {
        bl_log_error(BL_LOG_EMERG, 0, "\"http_request_timeout\" and "
                     "\"http_keepalive_timeout\" must be more than 0");
        return BL_CONF_ERROR;
    }

    /* in the master, before any fork; the core's conf is complete */
    ccf = bl_core_conf(cycle);

    if (bl_metrics_init((bl_uint_t) ccf->worker_processes) != BL_OK) {
        return BL_CONF_ERROR;
    }

    return BL_CONF_OK;
}


static char *
bl_http_listen(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    int64_t          n;
    bl_str_t        *value;
    bl_uint_t        i;
    bl_listening_t   ls, *p;

    BL_UNUSED(cmd);
    BL_UNUSED(conf);

    value = cf->args->elts;

    memset(&ls, 0, sizeof(bl_listening_t));
    ls.fd = -1;
    ls.http = 1;
    ls.backlog = BL_HTTP_DEFAULT_BACKLOG;

    if (bl_parse_addr_port(cf->pool, &value[1], &ls, BL_HTTP_DEFAULT_PORT)
        != BL_OK)
    {
        bl_conf_error(cf, 0, "invalid address \"%.*s\" in \"http_listen\"",
                      BL_STR_ARGS(&value[1]));
        return BL_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (value[2].len <= 8 || memcmp(value[2].data, "backlog=", 8) != 0
            || bl_atoi(value[2].data + 8, value[2].len - 8, &n) != BL_OK
            || n < 1 || n > INT_MAX)
        {
            bl_conf_error(cf, 0, "invalid parameter \"%.*s\"",
                          BL_STR_ARGS(&value[2]));
            return BL_CONF_ERROR;
        }

        ls.backlog = (int) n;
    }

    ls.where = bl_conf_where(cf);

    p = cf->cycle->listening.elts;

    for (i = 0; i < cf->cycle->listening.nelts; i++) {
        if (p[i].socklen == ls.socklen
            && memcmp(&p[i].sockaddr, &ls.sockaddr, ls.socklen) == 0)
        {
            bl_conf_error(cf, 0, "duplicate listen %.*s, first at %s",
                          BL_STR_ARGS(&value[1]),
                          p[i].where ? p[i].where : "?");
            return BL_CONF_ERROR;
        }
    }

    p = bl_array_push(&cf->cycle->listening);
    if (p == NULL) {
        return BL_CONF_ERROR;
    }

    *p = ls;

    return BL_CONF_OK;
}


static bl_int_t
bl_http_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    bl_http_conf_t  *hcf;

    if (process == BL_PROCESS_WATCHER) {
        /* the ring, the store's revisions, the lease jobs: its slot */
        return bl_metrics_start(process);
    }

    if (process != BL_PROCESS_WORKER) {
        return BL_OK;
    }

    hcf = bl_get_conf(cycle, bl_http_module);

    bl_http_request_timeout = hcf->request_timeout;
    bl_http_keepalive_timeout = hcf->keepalive_timeout;

    if (bl_metrics_start(process) != BL_OK) {
        return BL_ERROR;
    }

    bl_grpc_set_http1_handler(bl_http_conn_take);

    return bl_http_server_start(cycle);
}


static void
bl_http_exit_process(bl_cycle_t *cycle, bl_uint_t process)
{
    BL_UNUSED(cycle);

    if (process == BL_PROCESS_WORKER) {
        bl_grpc_set_http1_handler(NULL);
        bl_http_server_stop();
        bl_metrics_stop();

    } else if (process == BL_PROCESS_WATCHER) {
        bl_metrics_stop();
    }
}
