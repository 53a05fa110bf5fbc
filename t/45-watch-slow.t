#!/usr/bin/python3
# Watch: a slow reader.  A stream whose client stops reading is held to
# `watch { send_buffer }` (here 256k): its watches pause, the worker's
# memory stays bounded, other streams go on, and once the client reads
# again the stream catches up from the log with no event lost or doubled.
# The events it finally gets are compared with a real etcd 3.4's for the
# same slow reader (BLDIFF_TARGET=etcd: a second etcd; the memory check
# is ballast's alone).  Also: the watch { } directives in `ballast -t`.
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch

N = 2000
VALUE = b"v" * 4096

t = bltest.Tap()
p = blwatch.Pair(t, ballast_extra="watch { send_buffer 256k; }", workers=1)
on_ballast = p.kind == "ballast"


def rss_anon(pids):
    """private memory (kB) of the processes: the event ring is shared"""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
    return total


def flat(responses):
    return [(e["type"], e["kv"]["key"], e["kv"]["mod_revision"], e["kv"]["version"],
             bool(e["prev_kv"])) for r in responses for e in r["events"]]


p.put("s/first", "1")
p.settle()
slow = [blwatch.Stream(ep, lazy=True) for ep in p.endpoints]
fast = [blwatch.Stream(ep) for ep in p.endpoints]
for s in slow:
    s.create(b"s/", prefix=True, prev_kv=True)
for s in fast:
    s.create(b"s/", prefix=True)
p.check("fast streams: created", fast, 1)
time.sleep(0.5)
workers = p.target.worker_pids() if on_ballast else []
before = rss_anon(workers)

base = p.kv[1].rev()
for i in range(N):
    p.put("s/%02d" % (i % 50), VALUE + b"%d" % i)
e = fast[0].recv_events(N, timeout=30)
o = fast[1].recv_events(N, timeout=30)
t.is_(len(flat(o)), N, f"a fast stream gets all {N} events while the slow one is stuck")
p.same("fast stream: the same events", flat(e), flat(o))

def sanitized():
    """ASan keeps freed memory in quarantine: no memory bound holds then"""
    conf = os.path.join(os.environ.get("BALLAST_BUILDDIR", "objs"),
                        "bl_auto_config.h")
    try:
        with open(conf) as f:
            return "define BL_SANITIZERS" in f.read()
    except OSError:
        return False


if on_ballast and sanitized():
    t.skip("memory bound: not meaningful under AddressSanitizer (checked "
           "in the plain build)")
elif on_ballast:
    grown = rss_anon(workers) - before
    # (about 12 MiB when nothing bounds it)
    t.ok(grown < 4 * 1024, f"worker private memory grew by {grown} kB for "
                            f"{N * 2 * 4 // 1024} MiB of unread events (< 4 MiB)")
else:
    t.skip("memory bound: ballast only")

for s in slow:
    s.start_reading()
e = slow[0].recv_events(N, timeout=60)
o = slow[1].recv_events(N, timeout=60)
fo = flat(o)
t.is_(len(fo), N, "the slow stream gets every event once it reads")
t.is_([x[2] for x in fo], list(range(base + 1, base + N + 1)),
      "in revision order, no gap, no duplicate")
t.ok(all(x[4] for x in fo[50:]), "with prev_kv")
p.same("slow stream: the same events as etcd's", flat(e), fo)
t.ok(o and o[0]["created"] and o[0]["watch_id"] == 0, "created came first")
p.put("s/after", "1")
p.check("then live again", slow, 1)
for s in slow + fast:
    s.close()
r = bltest.etcdctl(p.target.endpoint, "get", "s/after", "--print-value-only")
t.is_(r.out.strip(), "1", "the target still serves")

# ------------------------------------------------ the directives
if on_ballast:
    def conf_test(extra):
        b = bltest.Ballast(dsn=p.pg.dsn(), extra=extra)
        r = subprocess.run([b.bin, "-t", "-c", b.conf_path], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    for extra, good in (("watch { progress_notify_interval 5s; send_buffer 1m; }", True),
                        ("watch { progress_notify_interval 50ms; }", True),
                        ("watch { progress_notify_interval 0; }", False),
                        ("watch { send_buffer 0; }", False),
                        ("watch { send_buffer 1m; send_buffer 2m; }", False),
                        ("watch { progress_notify_interval soon; }", False),
                        ("progress_notify_interval 1s;", False)):
        rc, out = conf_test(extra)
        t.is_(rc == 0, good, f"ballast -t with `{extra}`: {'ok' if good else 'refused'}"
                             + ("" if (rc == 0) == good else f" ({out.strip()[-200:]})"))
        if not good:
            t.like(out, r"watch|progress_notify_interval|send_buffer",
                   "  the error names the directive")
else:
    t.skip("ballast -t: ballast only", 12)
t.done()
