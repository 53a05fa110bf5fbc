#!/usr/bin/python3
"""Self-test of t/lib/bltest.py against the real programs it drives.

PostgreSQL 15 (start, psql, stop, restart with data kept, crash and
recover), etcd 3.4 (etcdctl JSON output, the python etcd3 client), the
harness's failure paths (uncaught exception, SIGTERM of a test, is_()
diagnostics, BALLAST_TEST_KEEP), and finally that cleanup() leaves no process
and no temp dir behind.  Needs no ballast binary.
"""

import base64
import os
import pwd
import shutil
import signal
import subprocess
import sys

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
sys.path.insert(0, LIB)
import bltest  # noqa: E402

t = bltest.Tap()
started = []   # pids of every server process this test saw, checked at the end


def b64(s):
    return base64.b64encode(s.encode()).decode()


def status_uid(pid):
    """Real uid of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def run_child(code, env=None, timeout=60):
    """Run a small test script (Python source) that imports bltest; capture it."""
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = LIB
    return subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------- helpers
t.ok(os.path.isfile(os.path.join(bltest.repo_root(), "t", "lib", "bltest.py")),
     "repo_root() is the repository root")
p1, p2 = bltest.free_port(), bltest.free_port()
t.ok(p1 != p2 and p1 > 0 and p2 > 0, "free_port() gives distinct ports")
t.is_(bltest.wait_until(lambda: 42, 1), 42, "wait_until returns the true value")
t.is_(bltest.wait_until(lambda: 0, 0.2), 0, "wait_until returns the false value on timeout")

# ----------------------------------------------------------- PostgreSQL
pg = bltest.Postgres()
pg.start()
started.append(pg.pid)
t.is_(pg.psql("select 1"), "1\n", "psql: select 1")
t.like(pg.dsn(), r"^host=/\S+ port=\d+ dbname=postgres user=postgres$", "dsn() is a conninfo")
t.ok(os.path.exists(os.path.join(pg.sockdir, f".s.PGSQL.{pg.port}")), "socket is in sockdir")
t.is_(pg.psql("show listen_addresses"), "\n", "no TCP listener")
t.is_(pg.psql("show fsync; show synchronous_commit"), "on\non\n", "fsync and synchronous_commit on")
if os.geteuid() == 0:
    t.is_(status_uid(pg.pid), pwd.getpwnam("nobody").pw_uid, "as root, the postmaster runs as nobody")
try:
    pg.psql("select * from no_such_table")
    t.ok(False, "psql error raises")
except RuntimeError as e:
    t.like(str(e), r"no_such_table", "psql error raises, with psql's message")

pg.psql("create table kv (k text primary key, v text); insert into kv values ('a', '1');")
old_pid = pg.pid
started += bltest.child_pids(old_pid)
pg.stop()
t.ok(not bltest.pid_alive(old_pid) and pg.pid is None, "stop() ends the postmaster")
pg.start()
started.append(pg.pid)
t.is_(pg.psql("select v from kv where k = 'a'"), "1\n", "data survives stop/start")

pg.psql("insert into kv values ('b', '2')")
old_pid = pg.pid
backends = bltest.child_pids(old_pid)
started += backends
pg.kill()
t.ok(not bltest.pid_alive(old_pid), "kill() ends the postmaster")
t.is_([p for p in backends if bltest.pid_alive(p)], [], "kill(): no orphaned backend left")
pg.start()
started.append(pg.pid)
t.is_(pg.psql("select count(*) from kv"), "2\n", "committed data survives kill -9")
started += bltest.child_pids(pg.pid)

# ----------------------------------------------------------------- etcd
etcd = bltest.Etcd()
etcd.start()
started.append(etcd.pid)
t.like(etcd.endpoint, r"^127\.0\.0\.1:\d+$", "etcd endpoint on loopback")
r = bltest.etcdctl(etcd.endpoint, "put", "foo", "bar", "-w", "json")
t.is_(r.rc, 0, "etcdctl put")
t.is_(r.json()["header"]["revision"], 2, "first put on a fresh etcd is revision 2")
r = bltest.etcdctl(etcd.endpoint, "get", "foo", "-w", "json")
kvs = r.json().get("kvs", [{}])
t.is_((kvs[0].get("key"), kvs[0].get("value")), (b64("foo"), b64("bar")),
      "get -w json: key and value base64-encoded")
r = bltest.etcdctl(etcd.endpoint, "put", "from-stdin", input="piped")
t.is_((r.rc, r.out), (0, "OK\n"), "etcdctl put with the value on stdin")
r = bltest.etcdctl(etcd.endpoint, "get", "from-stdin", "--print-value-only")
t.is_(r.out, "piped\n", "value from stdin was stored")
r = bltest.etcdctl(etcd.endpoint, "no-such-command")
t.ok(r.rc != 0 and r.err != "", "etcdctl failure gives rc and stderr")

client = bltest.etcd3_client(etcd.endpoint)
client.put("py", "val")
t.is_(client.get("py")[0], b"val", "etcd3 client put/get")
t.is_(client.get("foo")[0], b"bar", "etcd3 client reads etcdctl's key")
client.close()

# ------------------------------------------------ harness failure paths
child = run_child("""
import bltest
t = bltest.Tap()
e = bltest.Etcd()
e.start()
print("# etcd pid", e.pid, flush=True)
t.is_(1, 2, "mismatch")
raise ValueError("boom")
""")
pid = int(child.stdout.split("# etcd pid ")[1].split()[0]) if "# etcd pid " in child.stdout else 0
started.append(pid)
t.ok(child.returncode != 0, "child: uncaught exception exits non-zero")
t.like(child.stdout, r"(?m)^not ok 1 - mismatch$", "child: is_() failure")
t.like(child.stderr, r"(?m)^#\s+got: 1\n#\s+expected: 2$", "child: is_() prints got/expected")
t.like(child.stdout, r"(?m)^not ok 2 - exception: ValueError: boom$", "child: exception reported")
t.like(child.stderr, r"(?m)^# Traceback", "child: traceback as diag lines")
t.like(child.stdout, r"(?m)^1\.\.2$", "child: plan printed after the exception")
t.ok(pid and not bltest.pid_alive(pid), "child: etcd ended after the exception")

pid_file = os.path.join(pg.tmp, "child.pid")
proc = subprocess.Popen(["/usr/bin/python3", "-c", f"""
import time, bltest
t = bltest.Tap()
e = bltest.Etcd()
e.start()
open({pid_file!r}, "w").write(str(e.pid))
time.sleep(60)
"""], env=dict(os.environ, PYTHONPATH=LIB), stdin=subprocess.DEVNULL,
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
try:
    if bltest.wait_until(lambda: os.path.exists(pid_file) and open(pid_file).read(), 30):
        pid = int(open(pid_file).read())
        started.append(pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        t.ok(proc.returncode != 0, "child: SIGTERM exits non-zero")
        t.like(out, r"(?m)^not ok 1 - exception: Interrupted: signal SIGTERM$",
               "child: SIGTERM reported")
        t.ok(not bltest.pid_alive(pid), "child: etcd ended after SIGTERM")
    else:
        t.ok(False, "child: etcd started")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)

child = run_child("""
import bltest
t = bltest.Tap()
bltest.Etcd()
t.ok(True, "fine")
t.done()
""", env={"BALLAST_TEST_KEEP": "1"})
kept = child.stderr.split("# kept temp dir: ")[1].split("\n")[0] if "kept temp dir" in child.stderr else ""
t.ok(child.returncode == 0 and kept and os.path.isdir(kept), "BALLAST_TEST_KEEP=1 keeps the temp dir")
if os.path.basename(kept).startswith("bltest-"):
    shutil.rmtree(kept, ignore_errors=True)

# --------------------------------------------------------------- cleanup
base = os.path.dirname(pg.tmp)
bltest.cleanup()
t.is_([p for p in started if bltest.pid_alive(p)], [], "no started process left after cleanup")
if os.environ.get("BALLAST_TEST_KEEP") != "1":
    t.ok(not os.path.exists(base), "base temp dir removed")
t.done()
