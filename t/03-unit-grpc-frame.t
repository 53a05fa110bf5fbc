#!/bin/sh
# gRPC framing: every split of the message stream, limits, flags, timeouts
exec "${BALLAST_BUILDDIR:-objs}/t/test_grpc_frame"
