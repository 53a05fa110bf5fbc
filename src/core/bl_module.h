/*
 * Modules declare themselves: a name, a directive table, and hooks.  The
 * core loops over bl_modules[] (listed in process/bl_modules.c, the
 * composition root) and never knows a module by name.
 *
 * Lifetimes: create_conf/init_conf run for every configuration that is
 * read (start-up, -t, each SIGHUP) in the new cycle's pool; init_master
 * runs in the master once the new configuration is accepted;
 * init_process/exit_process run in each child that the module cares about.
 */
#ifndef BL_MODULE_H
#define BL_MODULE_H

#include <bl_conf_file.h>

#define BL_PROCESS_MASTER   0x01
#define BL_PROCESS_WORKER   0x02
#define BL_PROCESS_WATCHER  0x04

typedef struct bl_module_s bl_module_t;

struct bl_module_s {
    const char          *name;
    bl_uint_t            index;        /* set by bl_modules_init() */
    const bl_command_t  *commands;     /* bl_null_command terminated */

    void       *(*create_conf)(bl_cycle_t *cycle);
    /* defaults and cross-checks after parsing: BL_CONF_OK or an error
     * already logged (return BL_CONF_ERROR) */
    char       *(*init_conf)(bl_cycle_t *cycle, void *conf);

    bl_int_t    (*init_master)(bl_cycle_t *cycle);
    bl_int_t    (*init_process)(bl_cycle_t *cycle, bl_uint_t process);
    void        (*exit_process)(bl_cycle_t *cycle, bl_uint_t process);
};

extern bl_module_t  *bl_modules[];   /* NULL terminated */

void bl_modules_init(void);

#define bl_get_conf(cycle, module)  ((cycle)->conf_ctx[(module).index])

#endif /* BL_MODULE_H */
