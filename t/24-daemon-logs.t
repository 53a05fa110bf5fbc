#!/usr/bin/python3
# As an nginx operator runs it: `daemon on` (the command returns, the
# master lives on with its pid file), USR1 reopens the log after a
# rotation, `-s quit` stops it through the pid file.
import os, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=1)
conf = open(b.conf_path).read().replace("daemon off;", "daemon on;")
path = os.path.join(b.tmp, "daemon.conf")
with open(path, "w") as f:
    f.write(conf)

r = subprocess.run([b.bin, "-c", path], capture_output=True, text=True,
                   timeout=30)
t.is_(r.returncode, 0, "daemon on: the command returns at once, status 0")
pidfile = os.path.join(b.tmp, "ballast.pid")
t.ok(bltest.wait_until(lambda: os.path.exists(pidfile), 10),
     "the pid file appears")
# the master renames a written file into place: it is never seen empty
master = int(open(pidfile).read())
t.ok(bltest.pid_alive(master), "the daemonised master runs")
t.ok(os.getsid(master) == master, "in a session of its own")
t.ok(bltest.wait_until(
    lambda: bltest.etcdctl(b.endpoint, "put", "k", "v").rc == 0, 20),
    "and serves")

# rotation: move the log away, USR1, new lines go to a new file
log = os.path.join(b.tmp, "error.log")
os.rename(log, log + ".1")
os.kill(master, signal.SIGUSR1)
t.ok(bltest.wait_until(lambda: os.path.exists(log), 10),
     "USR1: the master reopens the log under its name")
time.sleep(0.5)
# a worker writes to the new file too: ask the workers to log something
subprocess.run([b.bin, "-s", "reopen", "-c", path], timeout=30)
t.ok(bltest.wait_until(
    lambda: "reopening logs" in open(log).read(), 10),
    "the master's lines go to the new file")
t.ok("start worker process" in open(log + ".1").read()
     and "start worker process" not in open(log).read(),
     "the old file keeps what was written before the rotation")

# a worker line (a malformed request is logged at info) lands in the new
# file: the workers reopened it too
import grpc
ch = grpc.insecure_channel(b.endpoint)
call = ch.unary_unary("/etcdserverpb.KV/Range", request_serializer=None,
                      response_deserializer=None)
try:
    call(b"\x0a\x40abc", timeout=5)
except grpc.RpcError:
    pass
t.ok(bltest.wait_until(
    lambda: "malformed RangeRequest" in open(log).read(), 10),
    "a worker writes to the new file after USR1")

kids = bltest.child_pids(master)
r = subprocess.run([b.bin, "-s", "quit", "-c", path], capture_output=True,
                   text=True, timeout=30)
t.is_(r.returncode, 0, "-s quit")
t.ok(bltest.wait_until(lambda: not bltest.pid_alive(master), 20),
     "the master exits")
t.ok(not any(bltest.pid_alive(p) for p in kids), "with all its children")
t.ok(not os.path.exists(pidfile), "and removes its pid file")
bad = [l for l in (open(log).read() + open(log + ".1").read()).splitlines()
       if "[alert]" in l or "[emerg]" in l]
t.is_(bad, [], "no alerts in either log")
t.done()
