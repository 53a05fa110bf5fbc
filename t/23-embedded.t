#!/usr/bin/python3
# The embedded default: ballast runs initdb on first start, supervises a
# private PostgreSQL on a unix socket in data_dir, restarts it if it dies,
# and keeps the data across its own restarts.
import os, signal, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()
b = bltest.Ballast(embedded=True, workers=2)
b.start(wait=False)
b.wait_ready(timeout=90)
r = bltest.etcdctl(b.endpoint, "put", "foo", "bar")
t.is_(r.rc, 0, "put on the embedded store")
r = bltest.etcdctl(b.endpoint, "get", "--prefix", "f", "-w", "json")
t.is_([kv["value"] for kv in r.json().get("kvs", [])], ["YmFy"],
      "get --prefix reads it back")
t.ok(os.path.exists(os.path.join(b.tmp, "data", "PG_VERSION")),
     "initdb made a cluster in data_dir")
t.ok(os.path.exists(os.path.join(b.tmp, "data", ".s.PGSQL.5432")),
     "PostgreSQL listens on a unix socket in data_dir")


def postmaster():
    with open(os.path.join(b.tmp, "data", "postmaster.pid")) as f:
        return int(f.readline())


pid = postmaster()
t.ok(pid in bltest.child_pids(b.master_pid), "the master supervises it")
b.allow_alerts()                       # its death is worth an alert
os.kill(pid, signal.SIGKILL)
t.ok(bltest.wait_until(
    lambda: bltest.etcdctl(b.endpoint, "put", "foo", "again").rc == 0, 60),
    "a killed PostgreSQL is restarted and ballast serves again")

pid = postmaster()
b.stop()
t.ok(not bltest.pid_alive(pid), "PostgreSQL is stopped with ballast")
b.start(wait=False)
b.wait_ready(timeout=60)
r = bltest.etcdctl(b.endpoint, "get", "foo", "--print-value-only")
t.is_(r.out.strip(), "again", "the data survives a restart")
b.stop()
t.done()
