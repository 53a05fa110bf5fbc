/*
 * The `storage` block, as the process layer needs it (to run the embedded
 * PostgreSQL) and as the storage module keeps it:
 *
 *   storage postgres { dsn "..."; password_file PATH; connections N;
 *                      connect_timeout TIME; request_timeout TIME; }
 *   storage embedded { data_dir PATH; postgres_bin DIR; connections N;
 *                      connect_timeout TIME; request_timeout TIME; }
 *
 * No storage block: embedded, data_dir "data" under the prefix.
 */
#ifndef BL_STORAGE_CONF_H
#define BL_STORAGE_CONF_H

#include <bl_conf_file.h>
#include <bl_module.h>

#define BL_STORAGE_EMBEDDED  1
#define BL_STORAGE_POSTGRES  2

/* the embedded server: unix socket in data_dir, this port number, role */
#define BL_STORAGE_EMBEDDED_PORT  5432
#define BL_STORAGE_EMBEDDED_USER  "ballast"
#define BL_STORAGE_EMBEDDED_DB    "postgres"

typedef struct {
    bl_uint_t    kind;              /* BL_STORAGE_EMBEDDED or _POSTGRES */
    bl_str_t     dsn;               /* postgres: libpq conninfo or URI */
    bl_str_t     password_file;     /* postgres: absolute, or null */
    int64_t      connections;       /* per worker */
    int64_t      connect_timeout;   /* msec */
    int64_t      request_timeout;   /* msec, each operation */
    bl_str_t     data_dir;          /* embedded: absolute */
    bl_str_t     postgres_bin;      /* embedded: directory of `postgres` */
    const char  *where;             /* "file:line" of the block, or NULL */

    /* made by init_conf */
    const char  *conninfo;          /* what workers connect with */
    const char  *password;          /* read from password_file, or NULL;
                                       zeroed when the cycle is freed */
} bl_storage_conf_t;

extern bl_module_t  bl_storage_module;

/* the cycle's storage configuration (after init_conf: defaults applied) */
bl_storage_conf_t *bl_storage_get_conf(bl_cycle_t *cycle);

/* "host='<data_dir>' port=5432 dbname=postgres user=ballast", quoted for
 * libpq, in the pool; NULL on out-of-memory */
char *bl_storage_embedded_conninfo(bl_pool_t *pool,
    const bl_str_t *data_dir);

#endif /* BL_STORAGE_CONF_H */
