#!/usr/bin/python3
# The process model as an operator sees it: -t, reload on HUP under load
# with zero failed requests, a bad configuration on HUP, a killed worker,
# -s reload, graceful QUIT.
import os, signal, subprocess, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=2)

# -t on a good and on a bad file
r = subprocess.run([b.bin, "-t", "-c", b.conf_path], capture_output=True,
                   text=True, timeout=30)
t.is_(r.returncode, 0, "-t accepts the generated configuration")
t.like(r.stderr, r"test is successful", "-t says so")
good = open(b.conf_path).read()
bad_path = os.path.join(b.tmp, "bad.conf")
with open(bad_path, "w") as f:
    f.write("daemon off;\nworker_processes 2;\nlisten 127.0.0.1:1;\n"
            "bogus_directive 1;\n")
r = subprocess.run([b.bin, "-t", "-c", bad_path], capture_output=True,
                   text=True, timeout=30)
t.is_(r.returncode, 1, "-t rejects a bad file")
t.like(r.stderr, r'unknown directive "bogus_directive" in .*bad\.conf:4',
       "-t names the directive and file:line")

b.start()
client = bltest.etcd3_client(b.endpoint)
first = sorted(b.worker_pids())
t.is_(len(first), 2, "two workers run")

# a client that keeps working through everything below
stats = {"ok": 0, "failed": 0, "errors": []}
stop = threading.Event()


def load():
    c = bltest.etcd3_client(b.endpoint)
    i = 0
    while not stop.is_set():
        try:
            c.put("load/%d" % (i % 50), "v%d" % i)
            v, _ = c.get("load/%d" % (i % 50))
            if v != ("v%d" % i).encode():
                raise RuntimeError("read %r after writing v%d" % (v, i))
            stats["ok"] += 1
        except Exception as e:          # counted, reported below
            stats["failed"] += 1
            stats["errors"].append(repr(e)[:200])
        i += 1


def _put_ok(c):
    try:
        c.put("after-kill", "1")
        return True
    except Exception:
        return False


th = threading.Thread(target=load, daemon=True)
th.start()
bltest.wait_until(lambda: stats["ok"] > 20, 10)

# HUP: a new generation of workers replaces the old one
b.reload()
t.ok(bltest.wait_until(lambda: (set(b.worker_pids()).isdisjoint(first)
                                and len(b.worker_pids()) == 2), 20),
     "HUP: new worker processes replace the old ones")
second = sorted(b.worker_pids())
before = stats["ok"]
bltest.wait_until(lambda: stats["ok"] > before + 20, 10)
t.ok(stats["ok"] > before, "requests go on after the reload")

# HUP with a bad configuration: the old one keeps serving
b.rewrite_conf(good.replace("worker_processes 2;",
                            "worker_processes 2;\nworker_processes 3;"))
b.allow_alerts()
b.reload()
t.ok(bltest.wait_until(lambda: "is duplicate" in b.error_log(), 10),
     "a bad configuration on HUP is reported")
t.like(b.error_log(), r'"worker_processes" directive is duplicate in '
       r'.*ballast\.conf:3', "with file:line")
time.sleep(0.5)
t.is_(sorted(b.worker_pids()), second, "the old workers keep serving")
t.is_(client.get("load/1")[0] is not None, True, "and answer")
b.rewrite_conf(good)

# -s reload signals the master through the pid file
r = subprocess.run([b.bin, "-s", "reload", "-c", b.conf_path],
                   capture_output=True, text=True, timeout=30)
t.is_(r.returncode, 0, "-s reload")
t.ok(bltest.wait_until(lambda: set(b.worker_pids()).isdisjoint(second)
                       and len(b.worker_pids()) == 2, 20),
     "-s reload started new workers")
third = sorted(b.worker_pids())

time.sleep(0.5)
stop.set()
th.join(10)
t.is_(stats["failed"], 0, "no request failed through two reloads "
      "(%d succeeded)" % stats["ok"])
for e in stats["errors"][:5]:
    t.diag(e)
t.ok(stats["ok"] > 100, "the load made progress (%d)" % stats["ok"])

# a worker killed with SIGKILL comes back, and the node serves again
victim = third[0]
os.kill(victim, signal.SIGKILL)
t.ok(bltest.wait_until(lambda: victim not in b.worker_pids()
                       and len(b.worker_pids()) == 2, 10),
     "a killed worker is respawned")
fresh = bltest.etcd3_client(b.endpoint)
t.ok(bltest.wait_until(lambda: _put_ok(fresh), 10),
     "and the node serves again")

# QUIT: graceful stop, everything exits, the pid file goes
master = b.master_pid
kids = bltest.child_pids(master)
b.signal(signal.SIGQUIT)
t.ok(bltest.wait_until(lambda: not bltest.pid_alive(master), 20),
     "QUIT stops the master")
t.ok(not any(bltest.pid_alive(p) for p in kids), "and all its children")
t.ok(not os.path.exists(os.path.join(b.tmp, "ballast.pid")),
     "the pid file is removed")
b.stop()
t.done()
