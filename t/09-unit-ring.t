#!/bin/sh
# the shared-memory event ring
exec "${BALLAST_BUILDDIR:-objs}/t/test_ring"
