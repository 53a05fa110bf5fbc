#!/bin/sh
# the systemd notification protocol: messages, addresses, watchdog, sends
exec "${BALLAST_BUILDDIR:-objs}/t/test_notify"
