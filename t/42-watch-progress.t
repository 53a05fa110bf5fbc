#!/usr/bin/python3
# Watch: progress (CONFORMANCE.md checklist C67, C68, C69):
# RequestProgress and progress_notify, differentially against a real
# etcd 3.4 with a 1 s notify interval on both (etcd's
# --experimental-watch-progress-notify-interval, ballast's
# watch { progress_notify_interval 1s; }); the ordering guarantee of C68
# (newer than 3.4.23) on ballast alone.  BLDIFF_TARGET=etcd: against a
# second etcd (the ballast-only checks are skipped there).
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch
from blwatch import FILTER_NOPUT

t = bltest.Tap()
p = blwatch.Pair(t, progress=1)
on_ballast = p.kind == "ballast"


both = p.both


def is_progress(r):
    """clientv3's IsProgressNotify, plus the id"""
    return (not r["events"] and not r["created"] and not r["canceled"]
            and r["compact_revision"] == 0 and r["header"]["revision"] != 0)


p.put("a", "1")
cur = p.put("b", "1")

# ---------------------------------------------------------------- C67
st = p.streams()
both(st, lambda s: s.progress())
o = p.check("C67 a stream with no watches is answered (as etcd 3.4.23)", st, 1)
t.is_(o and (o[0]["watch_id"], o[0]["header"]["revision"], o[0]["events"]), (-1, cur, []),
      "C67 watch_id -1, current revision, no events")
p.create(st, b"a")
p.create(st, b"b", prev_kv=True)
p.check("C67 two watches", st, 2)
both(st, lambda s: s.progress())
o = p.check("C67 every watch synced: answered at the current revision", st, 1)
t.ok(o and is_progress(o[0]) and o[0]["watch_id"] == -1, "C67 a progress notification")
cur = p.put("c", "1")
both(st, lambda s: s.progress())
o = p.check("C67 after a write elsewhere: the new revision", st, 1)
t.is_(o and o[0]["header"]["revision"], cur, "C67 header.revision = current")
p.put("a", "2")
both(st, lambda s: s.progress())
p.check("C67 event, then progress at its revision", st, 2)
p.quiet("C67", st)

# ---------------------------------------------------------------- C69
st2 = p.streams()
cur = p.kv[1].rev()
p.create(st2, b"pn", progress_notify=True)                        # 0
p.create(st2, b"quiet")                                            # 1
p.create(st2, b"pf", progress_notify=True, filters=(FILTER_NOPUT,))  # 2
p.check("C69 watches created", st2, 3)
e = st2[0].recv_for(3.5)
o = st2[1].recv_all(0.1) + st2[1].recv_for(0.1)
for name, got in (("etcd", e), (p.target_name, o)):
    ids = sorted({r["watch_id"] for r in got})
    t.is_(ids, [0, 2], f"C69 {name}: only the progress_notify watches are notified")
    t.ok(all(is_progress(r) and r["header"]["revision"] == cur for r in got),
         f"C69 {name}: no events, the current revision")
    n0 = sum(r["watch_id"] == 0 for r in got)
    t.ok(2 <= n0 <= 4, f"C69 {name}: about one per second ({n0} in 3.5 s)")
first = lambda got: next((blwatch.norm(r) for r in got if r["watch_id"] == 0), None)
p.same("C69 the same notification", first(e), first(o))

# a watch that gets events is not notified (its events say it all)
ends = time.monotonic() + 2.6
while time.monotonic() < ends:
    p.put("pn", "x")
    p.put("pf", "x")          # filtered out: sends nothing, so pf is idle
    time.sleep(0.25)
e = st2[0].recv_for(1.2)
o = st2[1].recv_for(0.1)
for name, got in (("etcd", e), (p.target_name, o)):
    # a tick just before the first write may still notify
    # ... and once the writes stopped, it is idle again
    got = [r for r in got if r["t"] <= ends]
    first = next((i for i, r in enumerate(got) if r["watch_id"] == 0 and r["events"]), 0)
    if not t.ok(not any(r["watch_id"] == 0 and not r["events"] for r in got[first:]),
                f"C69 {name}: no notification for a watch that got events"):
        t.diag(" ".join("%.2f:%s" % (r["t"], blwatch.brief(r)) for r in got))
    t.ok(any(r["watch_id"] == 2 and is_progress(r) for r in got if r["t"] <= ends),
         f"C69 {name}: the watch whose events were all filtered is notified")
for s in st + st2:
    s.close()

if on_ballast:
    s = blwatch.Stream(p.target.endpoint)
    cur = p.kv[1].rev()
    s.create(b"fut2", start_revision=cur + 3, progress_notify=True)
    s.recv(2)
    t.is_(s.recv_for(2.5), [], "C69 no notification while the start "
                               "revision is ahead (etcd 3.4.38+)")
    s.close()
else:
    t.skip("C69 future start: etcd 3.4.23 notifies", 1)

# ---------------------------------------------------------------- C68
# ballast answers only when every watch of the stream has been sent all
# events <= R (etcd 3.4.31+/3.5.13+); 3.4.23 answers at once, unordered.
# Last: it writes to the target alone
if on_ballast:
    base = p.kv[1].rev()
    kv = p.kv[1]
    for i in range(2000):
        kv.put("big/%04d" % i, "v" * 100)
    s = blwatch.Stream(p.target.endpoint)
    s.create(b"big/", prefix=True, start_revision=base + 1)
    seen, answered, bad, asked = 0, None, None, 0
    deadline = time.monotonic() + 20
    while answered is None and time.monotonic() < deadline:
        s.progress()
        asked += 1
        r = s.recv(0.1)
        while r is not None:
            if r["events"]:
                seen = max(seen, r["events"][-1]["kv"]["mod_revision"])
            elif r["watch_id"] == -1:
                answered = r["header"]["revision"]
                if seen < answered:
                    bad = (seen, answered)
                break
            r = s.recv(0.05)
    t.ok(answered is not None, f"C68 a progress request is answered once synced "
                               f"(asked {asked} times)")
    t.is_(bad, None, "C68 not before every event <= its revision was sent")
    t.is_(seen, base + 2000, "C68 all 2000 events came")
    s.close()
    # a watch starting in the future holds progress back (etcd 3.4.38+)
    s = blwatch.Stream(p.target.endpoint)
    cur = p.kv[1].rev()
    s.create(b"fut", start_revision=cur + 2)
    s.recv(2)
    s.progress()
    t.is_(s.recv(0.5), None, "C68 start ahead of the revision: no progress yet")
    kv.put("x", "1")
    time.sleep(0.2)            # the ring's few milliseconds
    s.progress()
    r = s.recv(2)
    t.is_(r and (r["watch_id"], r["header"]["revision"]), (-1, cur + 1),
          "C68 answered once the store reached start - 1")
    s.close()
else:
    t.skip("C68 ordering: etcd 3.4.23 answers progress requests unordered", 5)

t.done()
