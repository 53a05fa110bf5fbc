#!/usr/bin/python3
# Watch: start revisions, history, compaction, what one response holds,
# filters (CONFORMANCE.md checklist C54, C55, C56, C60, C61, C62),
# differentially against a real etcd 3.4 over raw Watch streams
# (t/lib/blwatch.py).  BLDIFF_TARGET=etcd: against a second etcd.
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch
from blwatch import FILTER_NOPUT, FILTER_NODELETE

t = bltest.Tap()
p = blwatch.Pair(t)


both = p.both


def revs(responses):
    """[[mod_revision of each event] per response]"""
    return [[e["kv"]["mod_revision"] for e in r["events"]] for r in responses]


# history: puts, a txn of several writes, a multi-key delete
p.put("h/a", "1")                                   # 2
p.put("h/b", "1")                                   # 3
p.put("other", "1")                                 # 4
p.txn(("put", "h/c", "1"), ("put", "h/a", "2"), ("del", "h/b"))   # 5
p.put("h/b", "2")                                   # 6
p.delete("h/", prefix=True)                         # 7: h/a h/b h/c
cur = p.put("h/a", "3")                             # 8
t.is_(cur, 8, "history written: revision 8")

# ---------------------------------------------------------------- C54
st = p.streams()
p.create(st, b"h/", prefix=True, start_revision=2, prev_kv=True)
o = p.check("C54 replay from 2: created, then every event >= 2 in one response", st, 2)
t.is_(revs(o), [[], [2, 3, 5, 5, 5, 6, 7, 7, 7, 8]], "C54 all revisions, sub-revision order")
t.is_(o[1]["header"]["revision"] if len(o) > 1 else None, 8,
      "C54 catch-up header = the store's revision")
p.put("h/z", "1")
p.check("C54 then live, no gap, no duplicate", st, 1)
p.create(st, b"h/a", start_revision=5)
p.check("C54 replay from 5 on one key", st, 2)
p.create(st, b"h/", prefix=True, start_revision=8)
p.check("C54 replay from the current revision", st, 2)
p.create(st, b"", from_key=True, start_revision=1)
p.check("C54 every key from revision 1", st, 2)
p.create(st, b"nothing", start_revision=2)
p.check("C54 replay with no matching events: created only", st, 1)
p.quiet("C54", st)

# more than 1000 revisions: etcd's catch-up batches hold 1000 at most
base = p.kv[1].rev()
for i in range(1500):
    p.put("many/%04d" % i, "v")
st2 = p.streams()
p.create(st2, b"many/", prefix=True, start_revision=base + 1)
o = p.check("C54 1500 revisions: created, then 1000 and 500", st2, 3, timeout=20)
t.is_([len(r["events"]) for r in o], [0, 1000, 500], "C54 batches of at most 1000 revisions")
p.put("many/x", "live")
p.check("C54 then live", st2, 1)
p.quiet("C54 1500", st2)

# ---------------------------------------------------------------- C55
cur = p.kv[1].rev()
st3 = p.streams()
p.create(st3, b"f", start_revision=cur + 3)
p.create(st3, b"f", start_revision=cur + 3, prev_kv=True)
o = p.check("C55 future start: created, header = current revision", st3, 2)
t.is_([r["header"]["revision"] for r in o], [cur, cur], "C55 created at the current revision")
p.put("f", "1")                     # cur+1
p.put("f", "2")                     # cur+2
p.put("f", "3")                     # cur+3
p.check("C55 events from the start revision on only", st3, 2, by_id=True)
p.put("f", "4")
p.check("C55 and on", st3, 2, by_id=True)
p.quiet("C55", st3)

# ---------------------------------------------------------------- C60, C61
st4 = p.streams()
p.create(st4, b"t/", prefix=True, prev_kv=True)
p.check("C60 created", st4, 1)
p.txn(("put", "t/b", "1"), ("put", "t/a", "1"), ("put", "t/c", "1"))
o = p.check("C60 a txn's writes: one response, op order", st4, 1)
t.is_([e["kv"]["key"] for e in o[0]["events"]] if o else None, ["t/b", "t/a", "t/c"],
      "C60 events in op order")
p.txn(("put", "t/d", "1"), ("del", "t/a"), ("put", "t/b", "2"))
p.check("C60 puts and a delete in one txn", st4, 1)
p.put("t/a", "2")
p.check("C60 re-created", st4, 1)
p.delete("t/", prefix=True)
o = p.check("C61 multi-key delete: one response, key order, one revision", st4, 1)
t.is_([(e["type"], e["kv"]["key"]) for e in o[0]["events"]] if o else None,
      [("DELETE", "t/a"), ("DELETE", "t/b"), ("DELETE", "t/c"), ("DELETE", "t/d")],
      "C61 deletes in key order")
t.is_(len({e["kv"]["mod_revision"] for e in o[0]["events"]}) if o else None, 1,
      "C61 one shared mod_revision")
p.delete("t/", prefix=True)
p.quiet("C61 a delete of nothing takes no revision and sends nothing", st4)

# ---------------------------------------------------------------- C62
st5 = p.streams()
p.create(st5, b"fl/", prefix=True, filters=(FILTER_NOPUT,))
p.create(st5, b"fl/", prefix=True, filters=(FILTER_NODELETE,))
p.create(st5, b"fl/", prefix=True, filters=(FILTER_NOPUT, FILTER_NODELETE))
p.create(st5, b"fl/", prefix=True, filters=(FILTER_NOPUT,), prev_kv=True)
p.check("C62 filtered watches created", st5, 4)
p.put("fl/a", "1")
o = p.check("C62 a put: only NODELETE watches see it", st5, 1)
t.is_([r["watch_id"] for r in o], [1], "C62 NOPUT drops puts, all-filtered sends nothing")
p.delete("fl/a")
p.check("C62 a delete: only NOPUT watches see it", st5, 2, by_id=True)
p.put("fl/b", "1")
p.put("fl/c", "1")
p.txn(("put", "fl/b", "2"), ("del", "fl/c"), ("put", "fl/d", "x"))
p.txn(("del", "fl/b"), ("put", "fl/c", "y"))
p.check("C62 mixed revisions: each watch gets what is left", st5, 8, by_id=True)
p.quiet("C62", st5)
# filtered history: the revision batches count the unfiltered events
p.create(st5, b"fl/", prefix=True, start_revision=2, filters=(FILTER_NOPUT,))
p.check("C62 replay with a filter", st5, 2)
p.quiet("C62 replay", st5)

# ---------------------------------------------------------------- C56
p.put("c/k", "1")
r1 = p.put("c/k", "2")
p.put("c/j", "1")
r2 = p.put("c/k", "3")
p.compact(r1)
st6 = p.streams()
p.create(st6, b"c/", prefix=True, start_revision=r1 - 1)
o = p.check("C56 start below the compact revision: created, then canceled", st6, 2)
t.is_(o[1:] and (o[1]["canceled"], o[1]["compact_revision"], o[1]["header"]["revision"],
                 o[1]["events"]), (True, r1, 0, []),
      "C56 canceled, compact_revision, header revision 0")
p.create(st6, b"c/", prefix=True, start_revision=r1, prev_kv=True)
o = p.check("C56 start at the compact revision works (prev_kv compacted away)", st6, 2)
p.put("c/k", "4")
p.check("C56 the compacted watch is quiet, the other goes on", st6, 1)
p.create(st6, b"c/", prefix=True, start_revision=r2, prev_kv=True)
p.check("C56 prev_kv kept by compaction (latest version <= it)", st6, 2)
p.create(st6, b"c/k", start_revision=1)
p.check("C56 start 1", st6, 2)
p.create(st6, b"c/k", start_revision=-3)
p.check("C56 negative start after a compaction: canceled at the compact revision", st6, 2)
both(st6, lambda s: s.cancel_watch(0))
p.check("C56 cancel of the compacted watch is answered", st6, 1)
p.quiet("C56", st6)
# a watch open across a compaction is not disturbed
st7 = p.streams()
p.create(st7, b"c/", prefix=True, prev_kv=True)
p.check("C56 live watch", st7, 1)
cur = p.put("c/k", "5")
p.check("C56 live event", st7, 1)
p.compact(cur)
p.put("c/k", "6")
p.check("C56 live watch goes on after a compaction at its revision", st7, 1)
p.quiet("C56 live", st7)

# ---------------------------------------------------------------- C61 lease revoke
# needs the Lease service: last, so that a missing one fails only here
import etcd3.etcdrpc as R
import grpc
ok = True
for ep in p.endpoints:
    try:
        ls = R.LeaseStub(grpc.insecure_channel(ep))
        ls.LeaseGrant(R.LeaseGrantRequest(TTL=300, ID=777), timeout=5)
    except grpc.RpcError as e:
        t.diag(f"LeaseGrant on {ep}: {e.code().name} {e.details()}")
        ok = False
st8 = p.streams()
p.create(st8, b"l/", prefix=True, prev_kv=True)
p.check("C61 lease: created", st8, 1)
if ok:
    p.put("l/b", "1", lease=777)
    p.put("l/a", "1", lease=777)
    p.put("l/c", "1", lease=777)
    p.check("C61 lease: puts", st8, 3)
    for ep in p.endpoints:
        R.LeaseStub(grpc.insecure_channel(ep)).LeaseRevoke(R.LeaseRevokeRequest(ID=777),
                                                            timeout=5)
    o = p.check("C61 lease revoke: one response, one revision, key order", st8, 1)
    t.is_([e["kv"]["key"] for e in o[0]["events"]] if o else None, ["l/a", "l/b", "l/c"],
          "C61 revoke deletes in key order")
else:
    t.ok(False, "C61 lease revoke (no Lease service)")

for group in (st, st2, st3, st4, st5, st6, st7, st8):
    for s in group:
        s.close()
t.done()
