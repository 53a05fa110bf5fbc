/*
 * The embedded PostgreSQL (`storage embedded { data_dir ...; }`): what to
 * run, as data and functions for the process layer, which spawns and
 * supervises it.  It listens only on a unix socket inside data_dir and
 * runs as the unprivileged `user` (PostgreSQL refuses to run as root).
 */
#ifndef BL_EMBEDDED_H
#define BL_EMBEDDED_H

#include <sys/types.h>

/* 1 when the cycle's storage is the embedded server */
int bl_embedded_enabled(bl_cycle_t *cycle);

/*
 * In the master, before the server is started (blocking is fine there):
 * create data_dir owned by uid/gid with mode 0700 and run initdb in it if
 * it holds no cluster yet.  BL_ERROR logged.
 */
bl_int_t bl_embedded_prepare(bl_cycle_t *cycle, uid_t uid, gid_t gid,
    const char *user);

/* in the forked child (already running as the user): exec postgres */
void bl_embedded_exec(bl_cycle_t *cycle);

/* BL_OK once postmaster.pid of the server `pid` says "ready" */
bl_int_t bl_embedded_ready(bl_cycle_t *cycle, pid_t pid);

/* 1 if two cycles' embedded settings differ (needs a restart) */
int bl_embedded_changed(bl_cycle_t *a, bl_cycle_t *b);

#endif /* BL_EMBEDDED_H */
