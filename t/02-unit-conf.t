#!/bin/sh
# the configuration reader: grammar, setters, every error path
exec "${BALLAST_BUILDDIR:-objs}/t/test_conf"
