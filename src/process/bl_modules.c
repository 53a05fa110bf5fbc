/*
 * The modules of this build, in the order their hooks run: the core
 * first, then storage (workers need their pool before services accept
 * calls), the transport, the watch layer, and the etcd services on top.
 */
#include <bl_core.h>
#include <bl_conf_file.h>
#include <bl_module.h>

extern bl_module_t  bl_core_module;
extern bl_module_t  bl_storage_module;
extern bl_module_t  bl_grpc_module;
extern bl_module_t  bl_etcd_module;
extern bl_module_t  bl_watch_module;
extern bl_module_t  bl_etcd_compactor_module;
extern bl_module_t  bl_http_module;

bl_module_t  *bl_modules[] = {
    &bl_core_module,
    &bl_storage_module,
    &bl_grpc_module,
    &bl_watch_module,
    &bl_etcd_module,
    &bl_etcd_compactor_module,
    &bl_http_module,             /* hooks into the transport: after it */
    NULL
};
