/*
 * The etcd services' counters (bl_etcd_stats.h): a file of their own so
 * that whatever links one service (a unit test) does not pull the rest.
 */
#include <bl_core.h>
#include <bl_etcd_stats.h>

bl_etcd_stats_t  bl_etcd_stats = { 0, 0, 0, -1 };
