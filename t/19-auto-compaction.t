#!/usr/bin/python3
# compaction { mode revision|periodic; retention ...; }: the watcher
# compacts by itself, as etcd's --auto-compaction-mode/-retention.
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()

b = bltest.Ballast(dsn=pg.dsn(), workers=1, extra="compaction { mode revision; "
                   "retention 10; check_interval 300ms; }")
b.start()
for i in range(40):
    bltest.etcdctl(b.endpoint, "put", "k", "v%d" % i)
# revision is now 41: the compactor keeps the last 10 revisions
t.ok(bltest.wait_until(
    lambda: "compacted" in bltest.etcdctl(b.endpoint, "get", "k",
                                          "--rev", "5").err, 10),
    "revision mode: old revisions are compacted by themselves")
r = bltest.etcdctl(b.endpoint, "get", "k", "--rev", "35",
                   "--print-value-only")
t.is_(r.out.strip(), "v33", "the last `retention` revisions stay readable")
b.stop()

b2 = bltest.Ballast(dsn=pg.dsn(), workers=1, extra="compaction { mode "
                    "periodic; retention 2s; }")
b2.start()
first = bltest.etcdctl(b2.endpoint, "put", "p", "1", "-w", "json").json()
rev = first["header"]["revision"]
for i in range(5):
    bltest.etcdctl(b2.endpoint, "put", "p", str(i))
start = time.time()
t.ok(bltest.wait_until(
    lambda: "compacted" in bltest.etcdctl(b2.endpoint, "get", "p", "--rev",
                                          str(rev - 1)).err, 15),
    "periodic mode: history older than the retention is compacted "
    "(after %.1f s)" % (time.time() - start))
r = bltest.etcdctl(b2.endpoint, "get", "p", "--print-value-only")
t.is_(r.out.strip(), "4", "the current value is untouched")

r = bltest.Ballast(dsn=pg.dsn(), extra="compaction { mode revision; }")
import subprocess
out = subprocess.run([r.bin, "-t", "-c", r.conf_path], capture_output=True,
                     text=True, timeout=30)
t.is_(out.returncode, 1, "a mode without retention is refused by -t")
t.like(out.stderr, r'needs "retention"', "with a clear message")
b2.stop()
t.done()
