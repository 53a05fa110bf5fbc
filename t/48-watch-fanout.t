#!/usr/bin/python3
# Watch fan-out, the benchmark's run at a small size (make bench runs it
# at 10,000 watchers): many clientv3 watchers on one prefix spread over
# several streams, a stream of puts, and every watcher must receive every
# put exactly once -- on ballast (with a small send_buffer, so streams
# pause and catch up from the log) and on a real etcd 3.4 with the same
# load.  Then catch-up reads are shared: a thousand watches created from
# an old revision, all needing the same history, cost the database a
# handful of log reads, not one each.
import importlib.util, json, os, re, subprocess, sys, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
import blwatch

ROOT = bltest.repo_root()
t = bltest.Tap()

spec = importlib.util.spec_from_file_location(
    "blbenchrun", os.path.join(ROOT, "t", "bench", "run.py"))
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)
gen = run.build_generator(os.path.join(bldiff.build_dir(), "bench"))


def fanout(endpoint, label):
    """The generator's watch mode; its result (a dict)."""
    argv = [gen, "-endpoints", endpoint, "-mode", "watch", "-label", label,
            "-watchers", "1000", "-streams", "20", "-conns", "4",
            "-total", "300", "-put-rate", "150", "-put-clients", "4",
            "-drain", "30s", "-timeout", "120s"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        t.diag(f"generator failed ({r.returncode}): {r.stderr[-2000:]}")
        return {}
    return json.loads(lines[-1])


def check(res, name):
    t.ok(res.get("exactly_once") is True and res.get("puts_ok") == 300,
         f"{name}: 1,000 watchers x 300 puts, every event exactly once "
         f"(missing {res.get('events_missing')}, duplicated "
         f"{res.get('events_duplicated')}, puts ok {res.get('puts_ok')})")
    t.diag(f"{name}: put acknowledged -> event p50 {res.get('p50_ms')} ms, "
           f"p99 {res.get('p99_ms')} ms")


etcd = bltest.Etcd()
etcd.start()
check(fanout(etcd.endpoint, "etcd"), "etcd 3.4")
etcd.stop()

pg = bltest.Postgres(fast=True)
pg.start()
hport = bltest.free_port()
b = bltest.Ballast(dsn=pg.dsn(), workers=2,
                   extra="watch { send_buffer 64k; }\n"
                         "http_listen 127.0.0.1:%d;" % hport)
b.start()
check(fanout(b.endpoint, "ballast"), "ballast (send_buffer 64k)")


def statements():
    with urllib.request.urlopen(f"http://127.0.0.1:{hport}/metrics",
                                timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^ballast_storage_statements_total (\d+)", text, re.M)
    return int(m.group(1))


# shared catch-up: history first, then 1,000 watches from revision 1 on
# 4 streams; each must get all of it, and the log is read far fewer times
kv = blwatch.KV(b.endpoint)
first = kv.put(b"hist/0", b"0")
for i in range(1, 200):
    last = kv.put(b"hist/%d" % (i % 13), b"%d" % i)
before = statements()
streams = [blwatch.Stream(b.endpoint) for _ in range(4)]
for i in range(1000):
    streams[i % 4].create(b"hist/", prefix=True, start_revision=first)
want = list(range(first, last + 1))
got = {}
deadline = time.monotonic() + 60
for s in streams:
    while time.monotonic() < deadline:
        r = s.recv(1)
        if r is None:
            if all(len(got.get((id(x), w), [])) >= len(want)
                   for x in streams for w in range(250)):
                break
            continue
        for ev in r["events"]:
            got.setdefault((id(s), r["watch_id"]), []).append(
                ev["kv"]["mod_revision"])
        if sum(len(v) for k, v in got.items() if k[0] == id(s)) >= 250 * len(want):
            break
ok = len(got) == 1000 and all(v == want for v in got.values())
t.ok(ok, "1,000 watches from an old revision: each got revisions "
     f"{first}..{last} exactly once, in order ({len(got)} watches heard)")
used = statements() - before
# one read per watch would be 1,000 or more; shared, it is a few dozen
# (a few hundred when a loaded machine spreads the creates out, and the
# 64k send_buffer makes streams pause and re-read)
t.ok(used < 500, f"their catch-up cost {used} statements, not one read "
     "per watch (1,000 or more)")
for s in streams:
    s.close()
kv.close()
b.stop()
t.done()
