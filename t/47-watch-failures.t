#!/usr/bin/python3
# Watch under failure, on two ballast nodes sharing one PostgreSQL:
# a write through node B reaches a watch on node A within milliseconds;
# node A's worker stopped (SIGSTOP) while a tiny ring is overrun catches
# up from the log; its watcher killed with SIGKILL is respawned and
# resumes from the ring; its worker killed with SIGKILL loses the stream,
# and a client resuming at last+1 gets no gap and no duplicate; a reload
# ends the stream and the same resume works.  Every watch must see every
# revision exactly once, in order.
import os, signal, statistics, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
a = bltest.Ballast(dsn=pg.dsn(), workers=1,
                   extra="worker_shutdown_timeout 20s;\n"
                         "watch { ring_size 64k; }")
bb = bltest.Ballast(dsn=pg.dsn(), workers=1)
with open(bb.conf_path) as f:
    bb.rewrite_conf(f.read().replace("name node1;", "name node2;"))
a.start()
bb.start()
kv = blwatch.KV(bb.endpoint)            # writes go through node B


def watcher_pid(node):
    return [p for p in bltest.child_pids(node.master_pid)
            if "watcher process" in bltest._cmdline(p)]


class Follower:
    """A watch on node A that resumes at last+1 whenever its stream ends,
    as clientv3 does, and records every event revision it got."""

    def __init__(self):
        self.revs = []
        self.stream = None
        self.open(1)

    def open(self, start):
        self.stream = blwatch.Stream(a.endpoint)
        self.stream.create(b"w/", prefix=True, start_revision=start)
        r = self.stream.recv(10)
        assert r and r["created"], r

    def pump(self, until_rev, timeout):
        deadline = time.monotonic() + timeout
        while (not self.revs or self.revs[-1] < until_rev) \
                and time.monotonic() < deadline:
            r = self.stream.recv(0.5)
            if r is None:
                if self.stream.done.is_set():
                    self.stream.close()
                    ok = False
                    while not ok and time.monotonic() < deadline:
                        try:
                            self.open(self.revs[-1] + 1 if self.revs else 1)
                            ok = True
                        except Exception:
                            time.sleep(0.2)
                continue
            for e in r["events"]:
                self.revs.append(e["kv"]["mod_revision"])
        return self.revs


def exactly_once(revs, written, name):
    t.is_(revs, sorted(set(revs)), name + ": in order, no duplicate")
    t.ok(set(written) <= set(revs), name + ": nothing missing (%d of %d)"
         % (len(set(written) & set(revs)), len(written)))


f = Follower()
written = []

# 1. cross-node latency: watch on A, puts on B
lat = []
probe = blwatch.Stream(a.endpoint)
probe.create(b"lat/", prefix=True)
probe.recv(10)
for i in range(100):
    t0 = time.monotonic()
    kv.put(b"lat/k", b"%d" % i)
    r = probe.recv(5)
    if r and r["events"]:
        lat.append((r["t"] - t0) * 1000)
probe.close()
lat.sort()
t.is_(len(lat), 100, "cross-node: every put on B reached the watch on A")
p50 = statistics.median(lat) if lat else 1e9
p99 = lat[int(len(lat) * 0.99) - 1] if lat else 1e9
t.diag("cross-node put-acknowledged to event: p50 %.1f ms, p99 %.1f ms"
       % (p50, p99))
t.ok(p99 < 50, "cross-node p99 under 50 ms (%.1f ms)" % p99)

# 2. node A's worker stopped while 600 revisions of 1 KiB overrun its
# 64 KiB ring: it catches up from the log
for i in range(20):
    written.append(kv.put(b"w/%d" % (i % 7), b"x" * 1024))
f.pump(written[-1], 10)
worker = a.worker_pids()[0]
os.kill(worker, signal.SIGSTOP)
for i in range(600):
    written.append(kv.put(b"w/%d" % (i % 7), b"y" * 1024))
os.kill(worker, signal.SIGCONT)
f.pump(written[-1], 30)
exactly_once(f.revs, written, "worker stopped behind a tiny ring")

# 3. node A's watcher killed during writes
victim = watcher_pid(a)
for i in range(100):
    written.append(kv.put(b"w/%d" % (i % 7), b"z%d" % i))
    if i == 30 and victim:
        os.kill(victim[0], signal.SIGKILL)
t.ok(bltest.wait_until(lambda: watcher_pid(a) and watcher_pid(a) != victim,
                       10), "a killed watcher is respawned")
f.pump(written[-1], 30)
exactly_once(f.revs, written, "watcher killed with SIGKILL")

# 4. node A's worker killed: the stream dies, the client resumes
worker = a.worker_pids()[0]
for i in range(100):
    written.append(kv.put(b"w/%d" % (i % 7), b"k%d" % i))
    if i == 50:
        os.kill(worker, signal.SIGKILL)
f.pump(written[-1], 40)
exactly_once(f.revs, written, "worker killed with SIGKILL, client resumed")

# 5. reload: the old worker ends its streams at once (not at
# worker_shutdown_timeout, 20 s here) with etcd's UNAVAILABLE "server
# stopped", which clientv3 takes as "resume"; the client resumes
f.pump(written[-1], 10)
old_stream = f.stream
reloaded = None
for i in range(100):
    written.append(kv.put(b"w/%d" % (i % 7), b"r%d" % i))
    if i == 20:
        reloaded = time.monotonic()
        a.reload()
old_stream.done.wait(10)
ended = time.monotonic() - reloaded
t.ok(old_stream.done.is_set() and ended < 5,
     "reload: the draining worker ended the Watch stream %.2f s after HUP "
     "(worker_shutdown_timeout 20 s)" % ended)
t.is_(old_stream.error, ("UNAVAILABLE", "etcdserver: server stopped"),
      "reload: the stream ended UNAVAILABLE, etcd's 'server stopped'")
f.pump(written[-1], 40)
exactly_once(f.revs, written, "reload, client resumed")
t.ok(bltest.wait_until(lambda: len(a.worker_pids()) == 1, 10),
     "reload: the old worker is gone well before worker_shutdown_timeout "
     "(its watch stream no longer holds it)")

a.allow_alerts()          # the kills above are alerts by design
f.stream.close()
kv.close()
a.stop()
bb.stop()
t.done()
