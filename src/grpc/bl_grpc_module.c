/*
 * The gRPC transport's configuration:
 *
 *   listen ADDR[:PORT] [backlog=N];     main, may repeat; default
 *                                       127.0.0.1:2379
 *   limits { max_concurrent_streams N; }  default 1000 per connection
 *
 * and starting the server in each worker.
 */
#include <bl_core.h>
#include <bl_conf_file.h>
#include <bl_cycle.h>
#include <bl_grpc_server.h>
#include <bl_h2.h>


#define BL_GRPC_DEFAULT_PORT     2379
#define BL_GRPC_DEFAULT_LISTEN   "127.0.0.1:2379"
/* nginx's: a backlog larger than net.core.somaxconn is cut to it anyway */
#define BL_GRPC_DEFAULT_BACKLOG  511


typedef struct {
    int64_t    max_concurrent_streams;
    bl_uint_t  nlisten;              /* listen directives seen */
} bl_grpc_conf_t;


static void *bl_grpc_create_conf(bl_cycle_t *cycle);
static char *bl_grpc_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_grpc_init_process(bl_cycle_t *cycle, bl_uint_t process);
static void bl_grpc_exit_process(bl_cycle_t *cycle, bl_uint_t process);
static char *bl_grpc_listen(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static bl_int_t bl_grpc_add_listening(bl_cycle_t *cycle, bl_conf_t *cf,
    const bl_str_t *addr, int backlog);


static const bl_conf_num_bounds_t  bl_grpc_streams_bounds = {
    1, UINT32_MAX
};


static const bl_command_t  bl_grpc_commands[] = {

    { "listen",
      BL_MAIN_CONF | BL_CONF_TAKE123,
      bl_grpc_listen,
      0,
      NULL },

    { "max_concurrent_streams",
      BL_LIMITS_CONF | BL_CONF_TAKE1,
      bl_conf_set_num,
      offsetof(bl_grpc_conf_t, max_concurrent_streams),
      &bl_grpc_streams_bounds },

    bl_null_command
};


bl_module_t  bl_grpc_module = {
    .name = "grpc",
    .commands = bl_grpc_commands,
    .create_conf = bl_grpc_create_conf,
    .init_conf = bl_grpc_init_conf,
    .init_master = NULL,
    .init_process = bl_grpc_init_process,
    .exit_process = bl_grpc_exit_process,
};


static void *
bl_grpc_create_conf(bl_cycle_t *cycle)
{
    bl_grpc_conf_t  *gcf;

    gcf = bl_pcalloc(cycle->pool, sizeof(bl_grpc_conf_t));
    if (gcf == NULL) {
        return NULL;
    }

    gcf->max_concurrent_streams = BL_CONF_UNSET;

    return gcf;
}


static char *
bl_grpc_init_conf(bl_cycle_t *cycle, void *conf)
{
    bl_str_t         addr = bl_string(BL_GRPC_DEFAULT_LISTEN);
    bl_grpc_conf_t  *gcf;

    gcf = conf;

    bl_conf_init_value(gcf->max_concurrent_streams,
                       BL_GRPC_DEFAULT_MAX_STREAMS);

    if (gcf->nlisten == 0) {
        if (bl_grpc_add_listening(cycle, NULL, &addr,
                                  BL_GRPC_DEFAULT_BACKLOG)
            != BL_OK)
        {
            return BL_CONF_ERROR;
        }
    }

    return BL_CONF_OK;
}


static char *
bl_grpc_listen(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    int              backlog;
    int64_t          n;
    bl_str_t        *value;
    bl_uint_t        i;
    bl_grpc_conf_t  *gcf;

    BL_UNUSED(cmd);

    gcf = conf;
    value = cf->args->elts;
    backlog = BL_GRPC_DEFAULT_BACKLOG;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len == 3 && memcmp(value[i].data, "ssl", 3) == 0) {
            bl_conf_error(cf, 0, "TLS listeners are not supported yet "
                          "(no ssl_certificate support in this build)");
            return BL_CONF_ERROR;
        }

        if (value[i].len > 8 && memcmp(value[i].data, "backlog=", 8) == 0) {
            if (bl_atoi(value[i].data + 8, value[i].len - 8, &n) != BL_OK
                || n < 1 || n > INT_MAX)
            {
                bl_conf_error(cf, 0, "invalid backlog \"%.*s\"",
                              (int) (value[i].len - 8),
                              (char *) value[i].data + 8);
                return BL_CONF_ERROR;
            }

            backlog = (int) n;
            continue;
        }

        bl_conf_error(cf, 0, "invalid parameter \"%.*s\"",
                      BL_STR_ARGS(&value[i]));
        return BL_CONF_ERROR;
    }

    if (bl_grpc_add_listening(cf->cycle, cf, &value[1], backlog) != BL_OK) {
        return BL_CONF_ERROR;
    }

    gcf->nlisten++;

    return BL_CONF_OK;
}


/* cf is NULL for the default listener */

static bl_int_t
bl_grpc_add_listening(bl_cycle_t *cycle, bl_conf_t *cf, const bl_str_t *addr,
    int backlog)
{
    bl_uint_t        i;
    bl_listening_t   ls, *p;

    memset(&ls, 0, sizeof(bl_listening_t));
    ls.fd = -1;

    if (bl_parse_addr_port(cycle->pool, addr, &ls, BL_GRPC_DEFAULT_PORT)
        != BL_OK)
    {
        if (cf != NULL) {
            bl_conf_error(cf, 0, "invalid address \"%.*s\" in \"listen\"",
                          BL_STR_ARGS(addr));

        } else {
            bl_log_error(BL_LOG_EMERG, 0, "invalid default address \"%.*s\"",
                         BL_STR_ARGS(addr));
        }

        return BL_ERROR;
    }

    ls.backlog = backlog;
    ls.where = cf ? bl_conf_where(cf) : "the default \"listen\"";

    if (cycle->listening.elts == NULL
        && bl_array_init(&cycle->listening, cycle->pool, 4,
                         sizeof(bl_listening_t))
           != BL_OK)
    {
        return BL_ERROR;
    }

    p = cycle->listening.elts;

    for (i = 0; i < cycle->listening.nelts; i++) {
        if (p[i].socklen == ls.socklen
            && memcmp(&p[i].sockaddr, &ls.sockaddr, ls.socklen) == 0)
        {
            if (cf != NULL) {
                bl_conf_error(cf, 0, "duplicate listen %.*s, first at %s",
                              BL_STR_ARGS(addr),
                              p[i].where ? p[i].where : "?");

            } else {
                bl_log_error(BL_LOG_EMERG, 0, "duplicate listen %.*s",
                             BL_STR_ARGS(addr));
            }

            return BL_ERROR;
        }
    }

    p = bl_array_push(&cycle->listening);
    if (p == NULL) {
        return BL_ERROR;
    }

    *p = ls;

    return BL_OK;
}


static bl_int_t
bl_grpc_init_process(bl_cycle_t *cycle, bl_uint_t process)
{
    bl_grpc_conf_t  *gcf;

    if (process != BL_PROCESS_WORKER) {
        return BL_OK;
    }

    gcf = bl_get_conf(cycle, bl_grpc_module);

    bl_grpc_set_limits(0, (uint32_t) gcf->max_concurrent_streams);

    return bl_grpc_server_start(cycle);
}


static void
bl_grpc_exit_process(bl_cycle_t *cycle, bl_uint_t process)
{
    BL_UNUSED(cycle);

    if (process == BL_PROCESS_WORKER) {
        bl_grpc_server_shutdown(0);
    }
}
