#!/usr/bin/python3
# Watch: creating and cancelling watches (CONFORMANCE.md checklist C52,
# C53, C57, C58, C59, C63, C64, C65, C66), differentially against a real
# etcd 3.4 over raw Watch streams (t/lib/blwatch.py): the same requests
# and writes on both, the response sequences compared field by field.
# With BLDIFF_TARGET=etcd the target is a second etcd (how this test is
# verified).
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch
from blwatch import FILTER_NOPUT

t = bltest.Tap()
p = blwatch.Pair(t)


both = p.both


st = p.streams()
# an empty store is at revision 1
p.create(st, b"a")
o = p.check("C52 empty store: created at revision 1", st, 1)
t.is_(o and o[0]["header"]["revision"], 1, "C52 empty store: header revision 1")
both(st, lambda s: s.cancel_watch(0))
p.check("C52 empty store: cancel", st, 1)
st = p.streams()
rev = p.put("a", "1")
t.is_(rev, 2, "first put is revision 2 on both")

# ---------------------------------------------------------------- C52
p.create(st, b"a")
o = p.check("C52 create: created, watch_id 0, header = current revision", st, 1)
t.is_([(r["watch_id"], r["created"], r["header"]["revision"]) for r in o],
      [(0, True, 2)], "C52 watch_id 0 from the per-stream counter, revision 2")
p.create(st, b"b")
p.check("C52 the next auto id is 1", st, 1)
st2 = p.streams()
p.create(st2, b"a")
o = p.check("C52 a new stream counts from 0 again", st2, 1)
t.is_(o and o[0]["watch_id"], 0, "C52 ids are per stream")

# ---------------------------------------------------------------- C53
p.put("a", "2")
o = p.check("C53 start_revision 0: the next write on the key", st, 1)
t.is_([(e["kv"]["key"], e["kv"]["mod_revision"]) for e in o[0]["events"]] if o else None,
      [("a", 3)], "C53 only the event after the created revision")
p.check("C53 the other stream's watch too", st2, 1)
p.put("b", "1")
p.check("C53 watch 1 on b", st, 1)
p.quiet("C53", st)
p.quiet("C53 second stream", st2)

# ---------------------------------------------------------------- C63
p.create(st, b"c", watch_id=7)
o = p.check("C63 client-chosen watch_id is used", st, 1)
t.is_(o and o[0]["watch_id"], 7, "C63 watch_id 7")
p.create(st, b"c", watch_id=7)
o = p.check("C63 duplicate id: created+canceled, id -1, reason", st, 1)
t.is_(o and (o[0]["watch_id"], o[0]["created"], o[0]["canceled"], o[0]["cancel_reason"]),
      (-1, True, True, "mvcc: duplicate watch ID provided on the WatchStream"),
      "C63 duplicate watch id error")
p.create(st, b"c", watch_id=2)
p.check("C63 id 2 given", st, 1)
p.create(st, b"c")
o = p.check("C63 auto ids skip the ones taken (3)", st, 1)
t.is_(o and o[0]["watch_id"], 3, "C63 next free auto id")
p.create(st, b"c", watch_id=-7)
p.check("C63 a negative id is used as given", st, 1)
p.create(st, b"c", watch_id=1)
p.check("C63 an auto-assigned id is a duplicate too", st, 1)
p.put("c", "x")
p.check("C63 one event for each of the four watches on c", st, 4, by_id=True)

# ---------------------------------------------------------------- C64
for name, key, end in (("end before key", b"x", b"a"), ("end == key", b"x", b"x"),
                       ("empty key, end \\x01 (key is \\x00: fine)", b"", b"\x01"),
                       ("empty key, end \\x00\\x00", b"", b"\x00\x00"),
                       ("key \\x01, end \\x00\\x00", b"\x01", b"\x00\x00")):
    p.create(st, key, end)
    p.check(f"C64 {name}", st, 1)
p.create(st, b"z", b"a")
o = p.check("C64 range_end <= key", st, 1)
t.is_(o and (o[0]["watch_id"], o[0]["created"], o[0]["canceled"], o[0]["cancel_reason"]),
      (-1, True, True, "mvcc: watcher range is empty"), "C64 watcher range is empty")

# ---------------------------------------------------------------- C65
cur = p.kv[1].rev()
both(st, lambda s: s.cancel_watch(7))
o = p.check("C65 cancel: canceled, that id", st, 1)
t.is_(o and (o[0]["watch_id"], o[0]["canceled"], o[0]["created"], o[0]["header"]["revision"]),
      (7, True, False, cur), "C65 canceled response, header = current revision")
both(st, lambda s: s.cancel_watch(7))
both(st, lambda s: s.cancel_watch(12345))
p.quiet("C65 cancelling an unknown (or already cancelled) id: no answer", st)
p.put("c", "y")
p.check("C65 no more events for the cancelled watch", st, 3, by_id=True)
p.create(st, b"c", watch_id=7)
p.check("C65 a cancelled id may be used again", st, 1)
p.create(st, b"q")
p.check("C65 auto id after that", st, 1)
p.quiet("C65", st)

# ---------------------------------------------------------------- C57, C58
st3 = p.streams()
p.create(st3, b"p/", prefix=True)            # 0
p.create(st3, b"p/b", b"p/d")                # 1
p.create(st3, b"p/c", from_key=True)         # 2
p.create(st3, b"p/a")                        # 3
p.create(st3, b"", from_key=True)            # 4 every key
p.create(st3, b"p/\xff", prefix=True)        # 5 binary prefix
p.check("C57 six watches created", st3, 6)
for k in (b"p/a", b"p/b", b"p/c", b"p/d", b"p/\xff\x00", b"q", b"p", b"o"):
    p.put(k, b"v" + k)
    # each put is one revision: its responses, one per matching watch
    n = sum([k.startswith(b"p/"), b"p/b" <= k < b"p/d", k >= b"p/c", k == b"p/a", True,
             k.startswith(b"p/\xff")])
    p.check(f"C57 put {k!r}: the {n} matching watches", st3, n, by_id=True)
p.quiet("C57", st3)
p.put("p/a", "second")
p.check("C58 PUT event: full kv (version 2, create_revision kept)", st3, 3, by_id=True)
p.delete("p/a")
o = p.check("C58 DELETE event: kv = key and mod_revision only", st3, 3, by_id=True)
ev = o[0]["events"][0] if o and o[0]["events"] else {}
t.is_(ev.get("type") and (ev["type"], ev["kv"]["key"], ev["kv"]["version"],
                          ev["kv"]["create_revision"], ev["kv"]["value"]),
      ("DELETE", "p/a", 0, 0, ""), "C58 DELETE kv has no version, create_revision, value")
p.put("p/a", "again")
p.check("C58 re-created key: version 1, new create_revision", st3, 3, by_id=True)
p.put("p/b", b"\x00\xff" * 1000, lease=0)
p.check("C58 binary value", st3, 3, by_id=True)
p.quiet("C58", st3)

# ---------------------------------------------------------------- C59
st4 = p.streams()
p.create(st4, b"pk/", prefix=True, prev_kv=True)
p.create(st4, b"pk/", prefix=True)
p.check("C59 watches with and without prev_kv", st4, 2)
p.put("pk/1", "v1")
p.check("C59 creation: no prev_kv", st4, 2, by_id=True)
p.put("pk/1", "v2")
o = p.check("C59 update: prev_kv is the old kv", st4, 2, by_id=True)
t.is_(o and [bool(r["events"][0]["prev_kv"]) for r in sorted(o, key=lambda r: r["watch_id"])],
      [True, False], "C59 prev_kv only for the watch that asked")
p.delete("pk/1")
p.check("C59 delete: prev_kv is the deleted kv", st4, 2, by_id=True)
p.put("pk/1", "v3")
p.check("C59 creation after a delete: no prev_kv", st4, 2, by_id=True)
p.quiet("C59", st4)

# ---------------------------------------------------------------- C66
st5 = p.streams()
for i in range(20):
    p.create(st5, b"m/%02d" % (i % 5), prev_kv=bool(i % 2),
             filters=(FILTER_NOPUT,) if i == 19 else ())
p.check("C66 twenty watches on one stream", st5, 20)
for i in range(10):
    p.put(b"m/%02d" % (i % 5), "v%d" % i)
p.check("C66 each watch its own events in order", st5, 10 * 4 - 2, by_id=True, timeout=10)
both(st5, lambda s: s.cancel_watch(3))
p.check("C66 cancel one", st5, 1)
p.put("m/03", "after")
p.check("C66 the others go on", st5, 3, by_id=True)
p.quiet("C66", st5)

# ---------------------------------------------------------------- protocol odds
st6 = p.streams()
p.create(st6, b"")
o = p.check("empty key is \\x00", st6, 1)
p.put(b"\x00", "zero")
p.check("an event on key \\x00", st6, 1)
both(st6, lambda s: s.send(b""))
both(st6, lambda s: s.send(b"\x0a\x00"))
o = p.check("an empty request is ignored; an empty create_request creates", st6, 1)
both(st6, lambda s: s.send(b"\x12\x00"))
p.check("an empty cancel_request cancels watch 0", st6, 1)
p.create(st6, b"neg", start_revision=-5)
p.check("negative start_revision (never compacted): created, then canceled with "
        "compact_revision -1 (etcd 3.4)", st6, 2)
p.create(st6, b"neg", start_revision=-1)
p.check("start_revision -1: created", st6, 1)
# etcd reads no history for it and joins the live events at its next sync
# pass (<= 100 ms later): writes before that are lost there, so wait
time.sleep(0.5)
p.put("neg", "1")
p.check("start_revision -1 watches from now", st6, 1)
p.create(st6, b"neg", watch_id=2)
p.check("a compacted watch's id stays taken", st6, 1)
both(st6, lambda s: s.cancel_watch(2))
p.check("and is answered on cancel", st6, 1)
p.create(st6, b"neg", watch_id=2)
p.check("then it is free", st6, 1)
p.quiet("odds", st6)

# half-close: etcd 3.4 keeps the stream and its watches
st7 = p.streams()
p.create(st7, b"hc")
p.check("half-close: created", st7, 1)
both(st7, lambda s: s.half_close())
time.sleep(0.3)
p.put("hc", "1")
p.check("half-close: events still come", st7, 1)
t.is_([s.error for s in st7], [None, None], "half-close: the stream stays open")

# garbage: the stream ends with INTERNAL, as grpc-go's unmarshal errors
for name, raw in (("a length past the end", b"\x0a\x40abc"),
                  ("a truncated varint", b"\x08\xff\xff"),
                  ("field 0", b"\x00\x01"),
                  ("end group", b"\x0c"),
                  ("wrong wire type for create_request", b"\x08\x01")):
    sg = p.streams()
    both(sg, lambda s: s.send(raw))
    for s in sg:
        s.done.wait(5)
    t.is_(sg[1].error, sg[0].error, f"garbage ({name}): {sg[0].error}")
    for s in sg:
        s.close()

for group in (st, st2, st3, st4, st5, st6, st7):
    for s in group:
        s.close()

# the servers are fine after all of that
p.put("end", "1")
t.is_(bltest.etcdctl(p.target.endpoint, "get", "end", "--print-value-only").out.strip(), "1",
      "the target still serves")
t.done()
