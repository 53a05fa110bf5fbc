#!/bin/sh
# grpc-message percent-encoding and decoding
exec "${BALLAST_BUILDDIR:-objs}/t/test_percent"
