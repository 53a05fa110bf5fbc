#!/usr/bin/python3
# The storage layer against a private PostgreSQL: put/range/delete/txn/
# compact semantics, round trips per operation, group commit, CAS under
# concurrency, compaction resumed after a crash, the revision log for
# watches, commit notifications, leases and their expiry by several nodes
# at once, cancellation, timeouts and an outage (t/unit/test_storage_pg.c).
# The C program prints TAP; "# ctl: stop|start" lines ask us to stop or
# start the database, and we answer a line on its stdin when done.
import os, subprocess, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

binary = os.path.join(os.environ.get("BALLAST_BUILDDIR", "objs"), "t", "test_storage_pg")

pg = bltest.Postgres(fast=True)
pg.start()
pg.psql("CREATE DATABASE storage_test")

env = dict(os.environ, BALLAST_TEST_DSN=pg.dsn("storage_test"))
p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     env=env, text=True, bufsize=1)
for line in p.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    if line.startswith("# ctl: "):
        what = line[len("# ctl: "):].strip()
        if what == "stop":
            pg.stop("fast")
        elif what == "start":
            pg.start()
        p.stdin.write("done\n")
        p.stdin.flush()
rc = p.wait(timeout=60)
pg.stop("fast")
sys.exit(rc)
