#!/usr/bin/python3
# Cluster membership of ballast nodes on one PostgreSQL (issue 6): each
# node's watcher writes a heartbeat, so MemberList on any node lists every
# live node with its name, member id and advertised client URLs; HashKV is
# the same on every node at the same revision; a node stopped (TERM, QUIT)
# leaves the list at once, a node killed -9 when its heartbeat is older
# than 5 s; a reload keeps the node listed; advertise_client_urls is
# honoured and checked.
import os, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff

t = bltest.Tap()
if bldiff.target_kind() != "ballast":
    t.skip_all("ballast nodes on one database: ballast only")

pg = bltest.Postgres(fast=True)
pg.start()


def conf(name, extra=""):
    lines = ["daemon off;", "worker_processes 2;", "error_log {tmp}/error.log info;",
             "pid {tmp}/ballast.pid;", f"name {name};", "listen 127.0.0.1:{port};",
             "storage postgres {", '    dsn "{dsn}";', "    connections 2;", "}", extra]
    if bltest._is_root():
        lines.append(f"user nobody {bltest._nobody()[2]};")
    return "\n".join(lines) + "\n"


n1 = bltest.Ballast(dsn=pg.dsn(), conf=conf("node1"))
n2 = bltest.Ballast(dsn=pg.dsn(), conf=conf("node2"))
extra_url = "https://node2.example.com:2379"
n2.rewrite_conf(conf("node2", "advertise_client_urls http://127.0.0.1:%d %s;"
                     % (n2.port, extra_url)))
n1.start()
n2.start()


def members(node):
    """{name: (ID, clientURLs)} from `member list -w json` on node."""
    r = bltest.etcdctl(node.endpoint, "-w", "json", "member", "list")
    if r.rc != 0:
        return {"error": r.err}
    return {m.get("name"): (m["ID"], m.get("clientURLs", []))
            for m in r.json()["members"]}


def header_id(node):
    return bltest.etcdctl(node.endpoint, "-w", "json", "get", "x").json()["header"]["member_id"]


want = {"node1": (header_id(n1), ["http://" + n1.endpoint]),
        "node2": (header_id(n2), ["http://" + n2.endpoint, extra_url])}
t.ok(want["node1"][0] != want["node2"][0], "the two nodes have distinct member ids")
for node in (n1, n2):
    got = bltest.wait_until(lambda: members(node) == want and members(node), 10)
    t.is_(got, want, "member list on %s: both nodes, ids, client URLs" % node.endpoint)
r = bltest.etcdctl(n1.endpoint, "member", "list")
t.is_(sorted(l.split(", ")[2] for l in r.out.splitlines()), ["node1", "node2"],
      "etcdctl member list names both nodes, started")
t.ok(all(", started, " in l for l in r.out.splitlines()), "both started")
c2 = bltest.etcd3_client(n2.endpoint)
t.is_(sorted((m.name, m.id) for m in c2.members),
      sorted((k, v[0]) for k, v in want.items()), "python etcd3 members on node2")
t.is_(c2.status().leader.name, "node2", "python etcd3 status() on node2: leader node2")

# the same history through both nodes, then the same hashes
for i in range(20):
    node = (n1, n2)[i % 2]
    bltest.etcdctl(node.endpoint, "put", "k%d" % (i % 7), "v%d" % i)
bltest.etcdctl(n1.endpoint, "del", "k3")
rev = bltest.etcdctl(n2.endpoint, "-w", "json", "get", "x").json()["header"]["revision"]


def hashkv(node, r):
    out = bltest.etcdctl(node.endpoint, "-w", "json", "endpoint", "hashkv",
                         "--rev=%d" % r)
    return out.json()[0]["HashKV"]["hash"] if out.rc == 0 else out.err


for r in (rev, rev - 5, 2):
    h1, h2 = hashkv(n1, r), hashkv(n2, r)
    t.ok(isinstance(h1, int) and h1 == h2, "HashKV(%d) equal on both nodes (%s)" % (r, h1))
bltest.etcdctl(n1.endpoint, "compaction", "--physical", str(rev - 5))
t.is_(hashkv(n1, rev), hashkv(n2, rev), "HashKV(%d) equal on both after a compaction" % rev)
h = [c.hash() for c in (bltest.etcd3_client(n1.endpoint), c2)]
t.is_(h[0], h[1], "Hash equal on both nodes")
for node, name in ((n1, "node1"), (n2, "node2")):
    st = bltest.etcdctl(node.endpoint, "-w", "json", "endpoint", "status").json()[0]["Status"]
    t.is_(st["leader"], want[name][0], "Status on %s: the leader is %s itself" % (name, name))

# a reload keeps the node listed (the old watcher leaves, the new one beats)
n1.reload()
time.sleep(1.5)
seen = []
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    seen.append("node1" in members(n2))
    time.sleep(0.1)
t.ok(all(seen), "node1 stays listed on node2 after its reload (%d looks)" % len(seen))

# stopped: gone at once
start = time.monotonic()
n2.stop()
t.is_(n2.exit_status, 0, "node2 stopped (TERM)")
gone = bltest.wait_until(lambda: "node2" not in members(n1), 2)
t.ok(gone, "node2 left the member list at once (%.2f s after TERM)"
     % (time.monotonic() - start))

n2.start()
t.ok(bltest.wait_until(lambda: "node2" in members(n1), 5), "node2 back after a restart")
n2.signal(signal.SIGQUIT)
gone = bltest.wait_until(lambda: "node2" not in members(n1), 5)
t.ok(gone, "QUIT: node2 left the member list")
n2.stop()

# killed: gone once its heartbeat is too old
n2.start()
t.ok(bltest.wait_until(lambda: "node2" in members(n1), 5), "node2 back again")
# the whole node at once: stopped first, so that no child sees its master
# die and leaves the node table gracefully before its own SIGKILL lands
pids = [n2.master_pid] + bltest.child_pids(n2.master_pid)
n2.signal(signal.SIGSTOP)
for pid in pids[1:]:
    os.kill(pid, signal.SIGSTOP)
n2.signal(signal.SIGKILL)
for pid in pids[1:]:
    os.kill(pid, signal.SIGKILL)
killed = time.monotonic()
t.ok("node2" in members(n1), "right after kill -9, node2 is still listed")
gone = bltest.wait_until(lambda: "node2" not in members(n1), 15, interval=0.2)
took = time.monotonic() - killed
t.ok(gone and 3 <= took <= 9, "kill -9: node2 dropped out after its heartbeat "
     "timeout (%.1f s)" % took)
n2.stop()
t.is_(members(n1), {"node1": want["node1"]}, "node1 alone")

# advertise_client_urls is checked
bad = bltest.Ballast(dsn=pg.dsn(), conf=conf("node3", "advertise_client_urls "
                                               "http://127.0.0.1:1 ftp://x:2;"))
r = subprocess.run([bad.bin, "-t", "-c", bad.conf_path], capture_output=True,
                   text=True, timeout=30)
t.ok(r.returncode == 1 and 'invalid URL "ftp://x:2"' in r.stderr
     and "ballast.conf:" in r.stderr, "-t refuses a URL that is not http(s)")
bad.rewrite_conf(conf("node3", "advertise_client_urls http://h:1/path;"))
r = subprocess.run([bad.bin, "-t", "-c", bad.conf_path], capture_output=True,
                   text=True, timeout=30)
t.ok(r.returncode == 1 and "invalid URL" in r.stderr, "-t refuses a URL with a path")
bad.rewrite_conf(conf("node3").replace("name node3;", 'name "";'))
r = subprocess.run([bad.bin, "-t", "-c", bad.conf_path], capture_output=True,
                   text=True, timeout=30)
t.ok(r.returncode == 1 and '"name" must not be empty' in r.stderr,
     "-t refuses an empty name (etcdctl would show the member unstarted)")

n1.stop()
t.done()
