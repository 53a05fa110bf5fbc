/*
 * The etcd API level ballast implements, as etcd reports its own version
 * (GET /version, and Maintenance.Status's `version` once the etcd layer
 * answers it).  Clients gate features on it: kube-apiserver asks for
 * >= 3.5.13 before it sends RequestWatchProgress, Patroni picks the v3
 * API for >= 3.4.  Defined once, here; the etcd layer may include it.
 */
#ifndef BL_VERSION_H
#define BL_VERSION_H

/* the etcd server version we answer as */
#define BL_ETCD_VERSION          "3.5.17"
/* the cluster version: etcd reports major.minor.0 */
#define BL_ETCD_CLUSTER_VERSION  "3.5.0"

#endif /* BL_VERSION_H */
