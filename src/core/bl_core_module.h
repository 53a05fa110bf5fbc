/*
 * The core module: process-level directives of the main context
 * (daemon, worker_processes, user, pid, error_log, name, ...) and the
 * `limits { }` block that other modules fill with their own directives.
 */
#ifndef BL_CORE_MODULE_H
#define BL_CORE_MODULE_H

#include <bl_conf_file.h>
#include <bl_module.h>
#include <sys/types.h>

typedef struct {
    int          daemon;              /* flag */
    int64_t      worker_processes;    /* "auto" = online cores */
    bl_str_t     user;                /* workers + embedded db run as it */
    bl_str_t     group;
    uid_t        uid;                 /* valid when user.data != NULL */
    gid_t        gid;
    bl_str_t     pid;                 /* absolute path */
    bl_str_t     error_log;           /* absolute path or "stderr" */
    int64_t      error_log_level;
    bl_str_t     name;                /* this node's name (member name) */
    int64_t      shutdown_timeout;    /* ms: graceful drain deadline */
    int64_t      rlimit_nofile;
} bl_core_conf_t;

extern bl_module_t  bl_core_module;

#define bl_core_conf(cycle)                                                   \
    ((bl_core_conf_t *) bl_get_conf(cycle, bl_core_module))

#endif /* BL_CORE_MODULE_H */
