#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_core_module.h>

bl_cycle_t  *bl_cycle;

static bl_uint_t  bl_modules_count;

void
bl_modules_init(void)
{
    bl_uint_t  i;

    for (i = 0; bl_modules[i]; i++) {
        bl_modules[i]->index = i;
    }
    bl_modules_count = i;
}

bl_cycle_t *
bl_cycle_init(const bl_cycle_opts_t *opts, bl_cycle_t *old)
{
    bl_cycle_t      *cycle;
    bl_pool_t       *pool;
    bl_conf_t        cf;
    bl_core_conf_t  *ccf;
    bl_uint_t        i;
    bl_module_t     *m;
    char            *rv;

    pool = bl_pool_create(16384);
    if (pool == NULL) {
        return NULL;
    }
    cycle = bl_pcalloc(pool, sizeof(bl_cycle_t));
    if (cycle == NULL) {
        goto failed;
    }
    cycle->pool = pool;
    cycle->old_cycle = old;
    cycle->generation = old ? old->generation + 1 : 0;
    cycle->log.fd = -1;

    if (bl_str_dup(pool, &cycle->prefix, opts->prefix.data, opts->prefix.len)
        != BL_OK
        || bl_str_dup(pool, &cycle->conf_file, opts->conf_file.data,
                      opts->conf_file.len) != BL_OK
        || bl_array_init(&cycle->listening, pool, 4, sizeof(bl_listening_t))
           != BL_OK)
    {
        goto failed;
    }

    cycle->conf_ctx = bl_pcalloc(pool, bl_modules_count * sizeof(void *));
    if (cycle->conf_ctx == NULL) {
        goto failed;
    }
    for (i = 0; i < bl_modules_count; i++) {
        m = bl_modules[i];
        if (m->create_conf) {
            cycle->conf_ctx[i] = m->create_conf(cycle);
            if (cycle->conf_ctx[i] == NULL) {
                goto failed;
            }
        }
    }

    memset(&cf, 0, sizeof(cf));
    cf.cycle = cycle;
    cf.pool = pool;
    cf.ctx = BL_MAIN_CONF;

    if (opts->directives) {
        rv = bl_conf_parse_string(&cf, opts->directives, "command line");
        if (rv != BL_CONF_OK) {
            goto failed;
        }
    }
    if (bl_conf_parse(&cf, &cycle->conf_file) != BL_CONF_OK) {
        goto failed;
    }

    for (i = 0; i < bl_modules_count; i++) {
        m = bl_modules[i];
        if (m->init_conf
            && m->init_conf(cycle, cycle->conf_ctx[i]) != BL_CONF_OK)
        {
            goto failed;
        }
    }

    if (opts->signal) {
        return cycle;
    }

    ccf = bl_core_conf(cycle);
    if (opts->test_only) {
        /* check the log can be opened without keeping it */
        if (bl_log_open(&cycle->log, bl_str_eq_cstr(&ccf->error_log, "stderr")
                        ? NULL : (char *) ccf->error_log.data,
                        (int) ccf->error_log_level) != BL_OK)
        {
            goto failed;
        }
        if (cycle->log.fd != STDERR_FILENO) {
            close(cycle->log.fd);
        }
        cycle->log.fd = -1;
    } else if (bl_log_open(&cycle->log,
                           bl_str_eq_cstr(&ccf->error_log, "stderr")
                           ? NULL : (char *) ccf->error_log.data,
                           (int) ccf->error_log_level) != BL_OK)
    {
        goto failed;
    }

    if (opts->test_only) {
        if (bl_test_listening(&cycle->listening) != BL_OK) {
            goto failed;
        }
    } else if (bl_open_listening(&cycle->listening,
                                 old ? &old->listening : NULL) != BL_OK)
    {
        goto failed;
    }

    return cycle;

failed:
    if (cycle) {
        bl_cycle_free(cycle);
    } else {
        bl_pool_destroy(pool);
    }
    return NULL;
}

void
bl_cycle_free(bl_cycle_t *cycle)
{
    /* sockets handed to a newer cycle were marked -1 when taken */
    bl_close_listening(&cycle->listening);
    if (cycle->log.fd > STDERR_FILENO) {
        close(cycle->log.fd);
    }
    bl_pool_destroy(cycle->pool);
}
