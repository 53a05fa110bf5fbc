#!/bin/sh
# the client URLs a node advertises when advertise_client_urls is not set
exec "${BALLAST_BUILDDIR:-objs}/t/test_etcd_cluster"
