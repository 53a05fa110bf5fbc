#!/usr/bin/python3
# etcd's own recipes on leases: the Go clientv3 concurrency package
# (Session with a TTL kept alive and revoked, an orphaned session expiring,
# a Mutex held by 8 goroutines with their own sessions - mutual exclusion
# checked with a counter read and written under the lock - and an Election:
# Campaign, Observe, Proclaim, Leader, Resign, and a leader whose lease
# expires replaced by the next).  t/lib/go/blconc runs the checks; each
# becomes one TAP line per server: a real etcd 3.4 first, then the server
# under test (BLDIFF_TARGET=etcd: a second etcd).
import json, os, subprocess, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
import bllease

WORKERS, ITERS = 8, 20
TIMED = ("orphaned session expires", "mutex counter", "expired leader replaced")
t = bltest.Tap()
path, secs = bllease.blconc_binary()
t.diag(f"built blconc in {secs:.1f} s: {path}" if secs else f"blconc (cached): {path}")

ref = bltest.Etcd()
ref.start()
srv = bldiff.Target(t)


def run(name, endpoint):
    log = os.path.join(bltest._tempdir("blconc-"), "stderr.log")
    with open(log, "wb") as err:
        r = subprocess.run(["setpriv", "--pdeathsig", "KILL", "--", path,
                            "-endpoint", endpoint, "-workers", str(WORKERS),
                            "-iters", str(ITERS)],
                           stdout=subprocess.PIPE, stderr=err, timeout=300)
    done = False
    for line in r.stdout.decode(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            t.diag(f"{name}: {line}")
            continue
        if "done" in doc:
            done = doc["done"]
            continue
        if not t.ok(doc["ok"], f"{doc['check']} [{name}]") or doc["check"] in TIMED:
            t.diag(f"  {name}: {doc['check']}: {doc['detail']}")
    t.ok(done and r.returncode == 0, f"blconc ran to the end [{name}]")
    if not done or r.returncode:
        t.diag(f"{name}: exit {r.returncode}\n{bltest._tail(log)}")


run("etcd", ref.endpoint)
run(srv.name if srv.kind == "ballast" else "etcd#2", srv.endpoint)
t.done()
