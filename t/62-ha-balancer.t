#!/usr/bin/python3
# Two ballast nodes on one PostgreSQL behind haproxy (TCP mode, each node
# health-checked with GET /readyz on its http_listen port): etcdctl put,
# get, txn and watch through the balancer; a watch on node A sees a write
# made through node B; then node A is killed whole (master, workers,
# watcher: SIGKILL by pid) under a Go clientv3 load through the balancer
# - six writers, readers, k8s-style txns, four watches spread over both
# nodes, two leases kept alive.
#
# Asserted: haproxy marks A down; the clients go on through B, failing
# only in the failover window; every acknowledged write is in the log at
# its acknowledged revision, the log has no gap and no duplicate; every
# watch - those on A resumed on B by clientv3 itself - got every event of
# its prefix exactly once, in order; the leases did not lapse.  Figures:
# requests sent and failed, failover time, events lost and duplicated.
import os, select, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blload

LEASE_TTL = 10
WINDOW = 10.0               # s after the kill in which failures may happen

t = bltest.Tap()
path, secs = blload.binary()
t.diag(f"built blload in {secs:.1f} s" if secs else "blload (cached)")

pg = bltest.Postgres(fast=True)
pg.start()
nodes = []
for name in ("nodeA", "nodeB"):
    http_port = bltest.free_port()
    n = bltest.Ballast(dsn=pg.dsn(), workers=2,
                       extra=f"http_listen 127.0.0.1:{http_port};\n"
                             "worker_shutdown_timeout 2s;")
    n.rewrite_conf(open(n.conf_path).read().replace("name node1;", f"name {name};"))
    n.name, n.http_port = name, http_port
    n.start()
    nodes.append(n)
a, bnode = nodes


def member_id(node):
    """The node's member id as hex, from a response header."""
    r = bltest.etcdctl(node.endpoint, "get", "x", "-w", "json")
    return "%x" % r.json()["header"]["member_id"]


members = {member_id(n): n.name for n in nodes}
t.is_(len(members), 2, "the two nodes have distinct member ids")
A = [m for m, name in members.items() if name == "nodeA"][0]

lb = blload.HAProxy([(n.name, n.port, n.http_port) for n in nodes], inter=200)
rc, out = lb.check_config()
t.is_(rc, 0, "haproxy -c accepts the configuration" + ("" if rc == 0 else f": {out}"))
lb.start()
t.ok(all(s["status"] == "UP" for s in lb.servers().values()),
     "haproxy's health checks (GET /readyz) find both nodes up")

# the shipped examples of this set-up are valid
examples = os.path.join(bltest.repo_root(), "conf", "examples")
r = subprocess.run([blload.HAPROXY, "-c", "-f", os.path.join(examples, "haproxy.cfg")],
                   capture_output=True, text=True, timeout=30)
t.is_(r.returncode, 0, "haproxy -c accepts conf/examples/haproxy.cfg" + (r.stdout + r.stderr
                                                                          if r.returncode else ""))
ex = bltest._tempdir("example-")
os.mkdir(os.path.join(ex, "logs"))
with open(os.path.join(ex, "db.password"), "w") as f:
    f.write("secret\n")
os.chmod(os.path.join(ex, "db.password"), 0o600)
with open(os.path.join(examples, "ha.conf")) as f:
    text = f.read()
text = text.replace("0.0.0.0:2379", f"127.0.0.1:{bltest.free_port()}") \
           .replace("0.0.0.0:2381", f"127.0.0.1:{bltest.free_port()}") \
           .replace("password_file db.password;", "password_file %s;" % os.path.join(ex, "db.password"))
with open(os.path.join(ex, "ha.conf"), "w") as f:
    f.write(text)
r = subprocess.run([a.bin, "-t", "-p", ex + "/", "-c", os.path.join(ex, "ha.conf")],
                   capture_output=True, text=True, timeout=30)
t.is_(r.returncode, 0, "ballast -t accepts conf/examples/ha.conf (its addresses and password "
      "file replaced)" + ("" if r.returncode == 0 else ": " + r.stderr))

# ------------------------------------------------- etcdctl, through haproxy
ep = lb.endpoint
t.is_(bltest.etcdctl(ep, "put", "/lb/k", "v1").rc, 0, "etcdctl put through haproxy")
r = bltest.etcdctl(ep, "get", "/lb/k", "--print-value-only")
t.is_((r.rc, r.out.strip()), (0, "v1"), "etcdctl get through haproxy")
r = bltest.etcdctl(ep, "txn", input='value("/lb/k") = "v1"\n\nput /lb/k v2\n\nget /lb/k\n\n')
t.is_((r.rc, r.out.split()[:2]), (0, ["SUCCESS", "OK"]), "etcdctl txn through haproxy")
r = bltest.etcdctl(ep, "get", "/lb/k", "--print-value-only")
t.is_(r.out.strip(), "v2", "the txn's put took")


def watch_sees(watch_ep, put_ep, key, value, timeout=10):
    """etcdctl watch on watch_ep sees a put made through put_ep; returns
    the seconds from the put to the event, or None."""
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", bltest.ETCDCTL,
                          f"--endpoints={watch_ep}", "watch", key],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        time.sleep(0.5)                  # the watch is created meanwhile
        start = time.monotonic()
        if bltest.etcdctl(put_ep, "put", key, value).rc != 0:
            return None
        buf = b""
        deadline = start + timeout
        while value.encode() not in buf and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 0.1)[0]:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        return time.monotonic() - start if value.encode() in buf else None
    finally:
        p.kill()
        p.wait(5)


took = watch_sees(ep, ep, "/lb/watched", "seen")
t.ok(took is not None, "etcdctl watch through haproxy sees a put through haproxy")
took = watch_sees(a.endpoint, bnode.endpoint, "/cross/k", "from-b")
t.ok(took is not None, "a watch on node A sees a write made through node B"
     + (f" ({took * 1000:.0f} ms from the put)" if took is not None else ""))

# ----------------------------------------------- the Go load, node A killed
ld = blload.Load(path, ep, writers=6, readers=2, txns=2, watch="/,/w0/,/w1/,/txn/",
                 lease_clients=1, leases=2, lease_ttl=LEASE_TTL, pace="5ms", settle="30s")
ld.wait_ready()
p = ld.wait_progress(lambda p: p["acked"] > 300 and all(p["watch_member"]), 20)
t.ok(p, "the Go clients write through haproxy and the watches receive events")
on_a = [i for i, m in enumerate(p["watch_member"]) if "%x" % m == A] if p else []
t.ok(on_a and len(on_a) < len(p["watch_member"]),
     f"haproxy spread the watches over both nodes ({len(on_a)} of "
     f"{len(p['watch_member']) if p else 0} on node A)")
sessions = {n: int(s["scur"]) for n, s in lb.servers().items()}
t.ok(all(sessions.values()), f"both nodes have client sessions {sessions}")

time.sleep(1.5)                         # a while of steady load first

# the whole node at once: everything stopped first, so that nothing of it
# reacts to the others dying, then killed
victims = bltest.child_pids(a.master_pid)
for pid in victims:
    os.kill(pid, signal.SIGSTOP)
a.signal(signal.SIGSTOP)
before = ld.progress()
kill_time = time.time()
a.signal(signal.SIGKILL)
for pid in victims:
    os.kill(pid, signal.SIGKILL)
t.ok(bltest.wait_until(lambda: not any(bltest.pid_alive(q) for q in victims + [a.master_pid]), 5),
     f"node A is gone (master and {len(victims)} children killed)")
down = bltest.wait_until(lambda: lb.servers().get("nodeA", {}).get("status", "").startswith("DOWN"),
                         10, 0.02)
down_after = time.time() - kill_time
t.ok(down, f"haproxy marks node A down ({down_after:.2f} s after the kill)")
t.is_(lb.servers()["nodeB"]["status"], "UP", "and node B up")

# the load goes on through B
after = ld.wait_progress(lambda q: q["acked"] > before["acked"] + 300, 20)
t.ok(after, "the clients go on writing through node B")
time.sleep(2)
moved = ld.wait_progress(lambda q: all("%x" % q["watch_member"][i] != A
                                       and q["watch_last"][i] > before["last_rev"]
                                       for i in on_a), 20)
t.ok(moved, f"the {len(on_a)} watches that were on node A resumed on node B")

# --------------------------------------------------------------- results
res = ld.stop()
rows = blload.log_rows(pg)
last = blload.check_log(t, pg, rows)
acked = ld.acked()
blload.check_acked(t, rows, acked)
tot = blload.check_watches(t, rows, ld)
for n in on_a:
    w = ld.watch(n)
    seq = [members.get(m, m) for m, _ in w["members"]]
    t.is_(seq, ["nodeA", "nodeB"], f"watch {w['prefix']} got its events from node A, "
          f"then from node B (switched at revision {w['members'][-1][1]})")

sent = sum(o["sent"] for o in res["ops"].values())
early = ld.failures_between(0, kill_time)
late = ld.failures_between(kill_time + WINDOW)
t.is_(early, [], "no request failed before the kill")
t.is_(late[:5], [], f"no request failed later than {WINDOW:.0f} s after the kill")
failed_clients = {f["client"] for f in res["failures"]}
recovered = {r["client"] for r in res["recoveries"]}
t.is_(sorted(failed_clients - recovered), [], "every client that saw a failure succeeded again")
t.is_(res["stale_reads"], 0, "no linearizable read missed a write acknowledged before it "
      f"was sent {res['stale_ex'][:2]}")
for l in res["leases"]:
    t.ok(not l["lost"] and not l["lapsed"] and l["max_gap_ms"] < LEASE_TTL * 1000
         and l["remaining_ttl"] > 0 and l["keys_held"] == l["keys"] and not l.get("error"),
         f"lease {l['id']} (TTL {l['ttl']} s) kept alive across the failover: longest "
         f"gap {l['max_gap_ms']} ms, {l['keys_held']}/{l['keys']} keys held")
    if l["lost"] or l.get("error"):
        t.diag(f"  {l}")

r = bltest.etcdctl(ep, "get", "/lb/k", "--print-value-only")
t.is_(r.out.strip(), "v2", "etcdctl through haproxy still answers")

outage = max((r["t_ms"] / 1000 - kill_time for r in res["recoveries"]
              if r["first_failure_ms"] / 1000 >= kill_time), default=0.0)
t.diag(f"requests sent {sent}, failed {res['failed']} (all within "
       f"{max((f['t_ms'] / 1000 - kill_time for f in res['failures']), default=0):.2f} s "
       f"of the kill, by {len(failed_clients)} of {len(res['dials'])} clients); "
       f"acknowledged writes {len(acked)}")
t.diag(f"failover: haproxy marked node A down after {down_after:.2f} s; the last client "
       f"succeeded again {outage:.2f} s after the kill")
t.diag(f"watch events expected {tot['expected']}, received {tot['received']}, "
       f"lost {tot['lost']}, duplicated {tot['duplicated']}")
t.diag("ops: " + ", ".join(f"{k} {v['ok']}/{v['sent']}" for k, v in sorted(res["ops"].items())))
for f in res["failures"][:8]:
    t.diag(f"  +{f['t_ms'] / 1000 - kill_time:.3f} s {f['client']} {f['op']}: {f['err']}")
lb.stop()
bnode.stop()
a.stop()
t.done()
