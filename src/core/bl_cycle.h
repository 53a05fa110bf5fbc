/*
 * A cycle is one generation of configuration: its pool, every module's
 * conf, the listening sockets.  Reload builds a new cycle completely and
 * only then replaces the old one; on any error the old one stays.
 */
#ifndef BL_CYCLE_H
#define BL_CYCLE_H

#include <bl_module.h>
#include <bl_socket.h>

struct bl_cycle_s {
    bl_pool_t       *pool;
    void           **conf_ctx;     /* one slot per module */
    bl_log_t         log;          /* error_log of this cycle */
    bl_str_t         conf_file;    /* absolute */
    bl_str_t         prefix;       /* absolute, ends with '/' */
    bl_array_t       listening;    /* bl_listening_t */
    bl_cycle_t      *old_cycle;    /* during a reload only */
    bl_uint_t        generation;   /* 0 at start, +1 per reload */
};

extern bl_cycle_t *bl_cycle;        /* the current cycle of this process */

/* options given on the command line, kept across reloads */
typedef struct {
    bl_str_t     conf_file;
    bl_str_t     prefix;
    const char  *directives;        /* -g */
    unsigned     test_only:1;       /* -t */
    unsigned     quiet:1;           /* -q */
    unsigned     signal:1;          /* -s: parse only, to find the pid */
} bl_cycle_opts_t;

/* read and check a configuration; NULL (already logged) on failure */
bl_cycle_t *bl_cycle_init(const bl_cycle_opts_t *opts, bl_cycle_t *old);
void bl_cycle_free(bl_cycle_t *cycle);

#endif /* BL_CYCLE_H */
