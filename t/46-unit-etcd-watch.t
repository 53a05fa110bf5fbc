#!/bin/sh
# the etcd Watch service between a fake transport and a fake watch layer
exec "${BALLAST_BUILDDIR:-objs}/t/test_etcd_watch"
