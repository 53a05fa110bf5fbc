#!/bin/sh
# HTTP/1.x request heads: splits, pipelining, limits, bad input, random
exec "${BALLAST_BUILDDIR:-objs}/t/test_http_parse"
