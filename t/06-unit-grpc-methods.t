#!/bin/sh
# the gRPC method table and grpc-go's words for unknown methods
exec "${BALLAST_BUILDDIR:-objs}/t/test_grpc_methods"
