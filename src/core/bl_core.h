/*
 * ballast core: the one header every module includes first.
 *
 * Return vocabulary (compare explicitly, as nginx does):
 *   BL_OK        success
 *   BL_ERROR     failure; the callee already logged it with context
 *   BL_AGAIN     not ready: come back when the fd/event is ready
 *   BL_DONE      finished, nothing more to do
 *   BL_DECLINED  "not mine": let the next handler try
 */
#ifndef BL_CORE_H
#define BL_CORE_H

#include <bl_auto_config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef intptr_t  bl_int_t;
typedef uintptr_t bl_uint_t;
typedef int       bl_err_t;     /* an errno value */

#define BL_OK        0
#define BL_ERROR    -1
#define BL_AGAIN    -2
#define BL_DONE     -4
#define BL_DECLINED -5

#define bl_min(a, b)  ((a) < (b) ? (a) : (b))
#define bl_max(a, b)  ((a) > (b) ? (a) : (b))
#define bl_nelems(a)  (sizeof(a) / sizeof((a)[0]))
#define bl_align(d, a) (((d) + ((a) - 1)) & ~((a) - 1))

#define BL_UNUSED(x) ((void) (x))

typedef struct bl_pool_s   bl_pool_t;
typedef struct bl_log_s    bl_log_t;
typedef struct bl_cycle_s  bl_cycle_t;
typedef struct bl_conf_s   bl_conf_t;

#include <bl_string.h>
#include <bl_palloc.h>
#include <bl_array.h>
#include <bl_buf.h>
#include <bl_log.h>

#endif /* BL_CORE_H */
