#!/bin/sh
# the watch index against a brute-force oracle
exec "${BALLAST_BUILDDIR:-objs}/t/test_watch_index"
