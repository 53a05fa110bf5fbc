/*
 * The gRPC transport's configuration:
 *
 *   listen ADDR[:PORT] [ssl] [backlog=N];  main, may repeat; default
 *                                          127.0.0.1:2379
 *   limits { max_concurrent_streams N; }   default 1000 per connection
 *
 * and TLS for the `ssl` listeners (main context):
 *
 *   ssl_certificate FILE;            the server's chain, PEM
 *   ssl_certificate_key FILE;        its key, PEM (not encrypted)
 *   ssl_client_certificate FILE;     CAs that client certificates must
 *                                    chain to
 *   ssl_verify_client on|off|optional;  default on with a client CA,
 *                                    else off
 *   ssl_protocols TLSv1.2 TLSv1.3;   default both
 *   ssl_ciphers STRING;              TLS 1.2 suites; default ECDHE+AEAD
 *
 * The TLS context is built here, in the master, for every configuration
 * read: file errors are configuration errors, and a reload re-reads the
 * certificates.  Then starting the server in each worker.
 */
#include <bl_core.h>
#include <bl_conf_file.h>
#include <bl_cycle.h>
#include <bl_grpc_server.h>
#include <bl_tls.h>
#include <bl_h2.h>


#define BL_GRPC_DEFAULT_PORT     2379
#define BL_GRPC_DEFAULT_LISTEN   "127.0.0.1:2379"
/* nginx's: a backlog larger than net.core.somaxconn is cut to it anyway */
#define BL_GRPC_DEFAULT_BACKLOG  511


typedef struct {
    int64_t         max_concurrent_streams;
    bl_uint_t       nlisten;         /* listen directives seen */
    const char     *ssl_listen;      /* where the first `ssl` one is */
    bl_tls_conf_t   tls;
    SSL_CTX        *tls_ctx;         /* built in init_conf, or NULL */
} bl_grpc_conf_t;


static void *bl_grpc_create_conf(bl_cycle_t *cycle);
static char *bl_grpc_init_conf(bl_cycle_t *cycle, void *conf);
static bl_int_t bl_grpc_init_process(bl_cycle_t *cycle, bl_uint_t process);
static void bl_grpc_exit_process(bl_cycle_t *cycle, bl_uint_t process);
static char *bl_grpc_listen(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static bl_int_t bl_grpc_add_listening(bl_cycle_t *cycle, bl_conf_t *cf,
    const bl_str_t *addr, int backlog, int ssl);
static char *bl_grpc_set_tls_file(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_grpc_set_verify(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_grpc_set_protocols(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_grpc_set_ciphers(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);
static char *bl_grpc_init_tls(bl_cycle_t *cycle, bl_grpc_conf_t *gcf);


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

    { "ssl_certificate",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_grpc_set_tls_file,
      offsetof(bl_grpc_conf_t, tls.certificate),
      NULL },

    { "ssl_certificate_key",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_grpc_set_tls_file,
      offsetof(bl_grpc_conf_t, tls.certificate_key),
      NULL },

    { "ssl_client_certificate",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_grpc_set_tls_file,
      offsetof(bl_grpc_conf_t, tls.client_certificate),
      NULL },

    { "ssl_verify_client",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_grpc_set_verify,
      0,
      NULL },

    { "ssl_protocols",
      BL_MAIN_CONF | BL_CONF_1MORE,
      bl_grpc_set_protocols,
      0,
      NULL },

    { "ssl_ciphers",
      BL_MAIN_CONF | BL_CONF_TAKE1,
      bl_grpc_set_ciphers,
      0,
      NULL },

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
    gcf->tls.verify_client = BL_CONF_UNSET_UINT;
    gcf->tls.protocols = BL_CONF_UNSET_UINT;

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
                                  BL_GRPC_DEFAULT_BACKLOG, 0)
            != BL_OK)
        {
            return BL_CONF_ERROR;
        }
    }

    return bl_grpc_init_tls(cycle, gcf);
}


static char *
bl_grpc_init_tls(bl_cycle_t *cycle, bl_grpc_conf_t *gcf)
{
    bl_tls_conf_t  *tls;

    tls = &gcf->tls;

    if (tls->protocols == BL_CONF_UNSET_UINT) {
        tls->protocols = BL_TLS_PROTO_DEFAULT;
    }

    if (tls->ciphers.data == NULL) {
        bl_str_set(&tls->ciphers, BL_TLS_DEFAULT_CIPHERS);
    }

    if (tls->verify_client == BL_CONF_UNSET_UINT) {
        /* a CA for client certificates is there to be checked */
        tls->verify_client = tls->client_certificate.path.data
                             ? BL_TLS_VERIFY_ON : BL_TLS_VERIFY_OFF;

    } else if (tls->verify_client != BL_TLS_VERIFY_OFF
               && tls->client_certificate.path.data == NULL)
    {
        bl_log_error(BL_LOG_EMERG, 0, "no \"ssl_client_certificate\" for "
                     "\"ssl_verify_client\" in %s", tls->verify_where);
        return BL_CONF_ERROR;
    }

    if (tls->certificate.path.data == NULL) {
        if (gcf->ssl_listen != NULL) {
            bl_log_error(BL_LOG_EMERG, 0, "no \"ssl_certificate\" is "
                         "defined for the \"listen ... ssl\" directive in "
                         "%s", gcf->ssl_listen);
            return BL_CONF_ERROR;
        }

        if (tls->certificate_key.path.data != NULL) {
            bl_log_error(BL_LOG_EMERG, 0, "\"ssl_certificate_key\" "
                         "without \"ssl_certificate\" in %s",
                         tls->certificate_key.where);
            return BL_CONF_ERROR;
        }

        return BL_CONF_OK;
    }

    if (tls->certificate_key.path.data == NULL) {
        bl_log_error(BL_LOG_EMERG, 0, "no \"ssl_certificate_key\" is "
                     "defined for the \"ssl_certificate\" in %s",
                     tls->certificate.where);
        return BL_CONF_ERROR;
    }

    /* built even without an ssl listener: -t checks the files */

    gcf->tls_ctx = bl_tls_create_ctx(cycle->pool, tls);
    if (gcf->tls_ctx == NULL) {
        return BL_CONF_ERROR;
    }

    return BL_CONF_OK;
}


/* a file name and where it was given: errors about its content say it */

static char *
bl_grpc_set_tls_file(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    char           *rv;
    bl_tls_file_t  *f;

    f = (bl_tls_file_t *) ((u_char *) conf + cmd->offset);

    rv = bl_conf_set_path(cf, cmd, conf);     /* f->path comes first */
    if (rv != BL_CONF_OK) {
        return rv;
    }

    f->where = bl_conf_where(cf);

    return BL_CONF_OK;
}


static char *
bl_grpc_set_verify(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    static const bl_conf_enum_t  values[] = {
        { "off", BL_TLS_VERIFY_OFF },
        { "on", BL_TLS_VERIFY_ON },
        { "optional", BL_TLS_VERIFY_OPTIONAL },
        { NULL, 0 }
    };

    bl_str_t        *value;
    bl_uint_t        i;
    bl_grpc_conf_t  *gcf;

    BL_UNUSED(cmd);

    gcf = conf;
    value = cf->args->elts;

    if (gcf->tls.verify_client != BL_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    for (i = 0; values[i].name != NULL; i++) {
        if (bl_str_eq_cstr(&value[1], values[i].name)) {
            gcf->tls.verify_client = values[i].value;
            gcf->tls.verify_where = bl_conf_where(cf);
            return BL_CONF_OK;
        }
    }

    bl_conf_error(cf, 0, "invalid value \"%.*s\" in \"ssl_verify_client\" "
                  "directive, it must be \"on\", \"off\" or \"optional\"",
                  BL_STR_ARGS(&value[1]));
    return BL_CONF_ERROR;
}


static char *
bl_grpc_set_protocols(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_str_t        *value;
    bl_uint_t        i, p;
    bl_grpc_conf_t  *gcf;

    BL_UNUSED(cmd);

    gcf = conf;
    value = cf->args->elts;

    if (gcf->tls.protocols != BL_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    p = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (bl_str_eq_cstr(&value[i], "TLSv1.2")) {
            p |= BL_TLS_PROTO_TLSv1_2;

        } else if (bl_str_eq_cstr(&value[i], "TLSv1.3")) {
            p |= BL_TLS_PROTO_TLSv1_3;

        } else {
            bl_conf_error(cf, 0, "unsupported protocol \"%.*s\" in "
                          "\"ssl_protocols\": only TLSv1.2 and TLSv1.3",
                          BL_STR_ARGS(&value[i]));
            return BL_CONF_ERROR;
        }
    }

    gcf->tls.protocols = p;

    return BL_CONF_OK;
}


static char *
bl_grpc_set_ciphers(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_str_t        *value;
    bl_grpc_conf_t  *gcf;

    BL_UNUSED(cmd);

    gcf = conf;
    value = cf->args->elts;

    if (gcf->tls.ciphers.data != NULL) {
        return "is duplicate";
    }

    if (value[1].len == 0) {
        return "is empty";
    }

    /* the parser's strings are NUL-terminated */
    gcf->tls.ciphers = value[1];
    gcf->tls.ciphers_where = bl_conf_where(cf);

    return BL_CONF_OK;
}


static char *
bl_grpc_listen(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    int              backlog, ssl;
    int64_t          n;
    bl_str_t        *value;
    bl_uint_t        i;
    bl_grpc_conf_t  *gcf;

    BL_UNUSED(cmd);

    gcf = conf;
    value = cf->args->elts;
    backlog = BL_GRPC_DEFAULT_BACKLOG;
    ssl = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len == 3 && memcmp(value[i].data, "ssl", 3) == 0) {
            ssl = 1;
            continue;
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

    if (bl_grpc_add_listening(cf->cycle, cf, &value[1], backlog, ssl)
        != BL_OK)
    {
        return BL_CONF_ERROR;
    }

    if (ssl && gcf->ssl_listen == NULL) {
        gcf->ssl_listen = bl_conf_where(cf);
    }

    gcf->nlisten++;

    return BL_CONF_OK;
}


/* cf is NULL for the default listener */

static bl_int_t
bl_grpc_add_listening(bl_cycle_t *cycle, bl_conf_t *cf, const bl_str_t *addr,
    int backlog, int ssl)
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
    ls.ssl = ssl ? 1 : 0;
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

    return bl_grpc_server_start(cycle, gcf->tls_ctx);
}


static void
bl_grpc_exit_process(bl_cycle_t *cycle, bl_uint_t process)
{
    BL_UNUSED(cycle);

    if (process == BL_PROCESS_WORKER) {
        bl_grpc_server_shutdown(0);
    }
}
