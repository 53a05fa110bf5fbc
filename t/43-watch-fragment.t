#!/usr/bin/python3
# Watch: fragment=true (CONFORMANCE.md checklist C70): responses of
# max_request_bytes + 512 KiB (2 MiB by default) or more, with two events
# or more, are split at event boundaries, every part but the last marked
# fragment; without fragment the response goes out whole.  Differentially
# against a real etcd 3.4 (BLDIFF_TARGET=etcd: against a second etcd).
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch

LIMIT = 1536 * 1024 + 512 * 1024

t = bltest.Tap()
p = blwatch.Pair(t)


both = p.both


def shape(responses):
    return [(len(r["events"]), r["fragment"]) for r in responses]


# ------------------------------------------------ a big catch-up batch
base = p.kv[1].rev()
for i in range(300):
    p.put("cu/%03d" % i, bytes([65 + i % 26]) * 10240)      # ~3 MiB in all
st = p.streams()
p.create(st, b"cu/", prefix=True, start_revision=base + 1, fragment=True)
o = p.check("C70 catch-up of ~3 MiB with fragment: created, then parts", st, 3, timeout=20)
t.is_(sum(len(r["events"]) for r in o), 300, "C70 every event, once")
t.ok(o and all(r["fragment"] for r in o[1:-1]) and not o[-1]["fragment"],
     f"C70 fragment on all parts but the last: {shape(o)}")
t.ok(o and all(r["size"] < LIMIT for r in o[1:]), "C70 each part under the limit: "
     f"{[r['size'] for r in o]}")
t.is_(len({r["header"]["revision"] for r in o[1:]}), 1, "C70 the parts share the header")
p.create(st, b"cu/", prefix=True, start_revision=base + 1)
o = p.check("C70 the same without fragment: one response", st, 2, timeout=20)
t.is_(shape(o), [(0, False), (300, False)], "C70 one response of 300 events")
t.ok(o and o[-1]["size"] > LIMIT, "C70 larger than the limit")
p.create(st, b"cu/", prefix=True, start_revision=base + 251, fragment=True)
o = p.check("C70 a small catch-up with fragment: not split", st, 2)
t.is_(shape(o), [(0, False), (50, False)], "C70 small: one response, no fragment flag")
p.quiet("C70 catch-up", st)

# ------------------------------------------------ one big live revision
keys = ["lv/%02d" % i for i in range(14)]
for k in keys:
    p.put(k, b"a" * 102400)
st2 = p.streams()
p.create(st2, b"lv/", prefix=True, prev_kv=True, fragment=True)
p.create(st2, b"lv/", prefix=True, prev_kv=True)
p.create(st2, b"lv/", prefix=True, fragment=True)
p.check("C70 live watches created", st2, 3)
p.txn(*[("put", k, b"b" * 102400) for k in keys])       # 1.4 MiB: one revision
o = p.check("C70 a 2.8 MiB revision (prev_kv): parts, and a whole one", st2, 4,
            by_id=True, timeout=20)
by = {i: [r for r in o if r["watch_id"] == i] for i in (0, 1, 2)}
t.is_(sum(len(r["events"]) for r in by[0]), 14, "C70 live fragments carry all 14 events")
t.is_([r["fragment"] for r in by[0]], [True, False], "C70 live: two parts")
t.is_(shape(by[1]), [(14, False)], "C70 live without fragment: whole")
t.is_(shape(by[2]), [(14, False)], "C70 live 1.4 MiB with fragment: under the limit, whole")
p.quiet("C70 live", st2)

for s in st + st2:
    s.close()
t.done()
