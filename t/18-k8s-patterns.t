#!/usr/bin/python3
# Kubernetes' request shapes (CONFORMANCE.md checklist C96, C97; K31
# apiserver pkg/storage/etcd3 store.go, compact.go), differentially against
# a real etcd 3.4 through Go clientv3 (see t/lib/bldiff.py):
#   create = Txn{MOD(k)==0 -> Put}
#   update = Txn{MOD(k)==rv -> Put, else Get}   (GuaranteedUpdate)
#   delete = Txn{MOD(k)==rv -> Delete, else Get} (conditionalDelete)
#   list   = Range(prefix, limit, revision) pages, count_only for the metric
#   compactor = Txn{VERSION(compact_rev_key)==t -> Put(rev), else Get} then
#               Compact(previous rev)
# Each step uses the values the target answered (the same as etcd's, or the
# comparison line fails).
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, delete, txn, cmp, compact, lease_grant, hrev, kvs, ok, err, prefix_end

t = bltest.Tap()
d = bldiff.Diff(t)
PODS = "/registry/pods/default/"
KEY = "compact_rev_key"


def obj(name, gen):
    """Something shaped like a k8s protobuf object: magic, binary, varying."""
    return b"k8s\x00\n\x02v1\x12\x03Pod\x1a" + name.encode() + b"\x00" + bytes([gen % 256]) * 3


def create(key, value, lease=0):
    return txn([cmp("MOD", key, "=", 0)], [put(key, value, lease=lease)])


def update(key, rv, value):
    return txn([cmp("MOD", key, "=", rv)], [put(key, value)], [get(key)])


def remove(key, rv):
    return txn([cmp("MOD", key, "=", rv)], [delete(key)], [get(key)])


def put_rev(r):
    """k8s' rv of a create/update: Responses[0].ResponsePut.Header.Revision."""
    o = ok(r) or {}
    resp = (o.get("responses") or [{}])[0]
    return resp.get("response_put", {}).get("header", {}).get("revision") or 0


# ---------------------------------------------------------------- C96 create
rv = {}
for i in range(5):
    name = f"p{i}"
    r = d.go(create(PODS + name, obj(name, 0)), f"C96 create {name}")
    rv[name] = put_rev(r)
    t.is_((ok(r) or {}).get("succeeded") and rv[name] == hrev(r), True,
          f"C96 create {name}: succeeded, ResponsePut rev == txn rev")
r = d.go(create(PODS + "p0", obj("p0", 9)), "C96 create of an existing key")
t.is_(((ok(r) or {}).get("succeeded"), (ok(r) or {}).get("responses")), (False, []),
      "C96 create conflict: succeeded=false, no responses (k8s: KeyExists)")
d.go(get(PODS + "p0"), "C96 get")
d.go(get("/registry/health"), "C96 health probe key (absent)")

# ---------------------------------------------------------------- C96 update
name = "p1"
r = d.go(update(PODS + name, rv[name], obj(name, 1)), "C96 GuaranteedUpdate with the right rv")
t.is_((ok(r) or {}).get("succeeded"), True, "C96 update succeeded")
stale, rv[name] = rv[name], put_rev(r)
r = d.go(update(PODS + name, stale, obj(name, 2)), "C96 GuaranteedUpdate with a stale rv")
got = [kv for x in (ok(r) or {}).get("responses", []) for kv in x.get("response_range", {}).get("kvs", [])]
t.is_(((ok(r) or {}).get("succeeded"), [kv["mod_revision"] for kv in got]), (False, [rv[name]]),
      "C96 stale update: Else-Get returns the current object and its mod_revision")
r = d.go(update(PODS + name, got[0]["mod_revision"] if got else 0, obj(name, 3)),
         "C96 retry with the rv from Else-Get")
rv[name] = put_rev(r)
d.go(update(PODS + "nothere", 5, obj("x", 1)), "C96 update of a missing key: Else-Get empty")
r = d.go(update(PODS + "p2", rv["p2"], obj("p2", 1)), "C96 update with an identical-size object")
rv["p2"] = put_rev(r)

# ---------------------------------------------------------------- C96 delete
r = d.go(remove(PODS + "p3", rv["p3"] - 1), "C96 conditionalDelete with a wrong rv")
t.is_((ok(r) or {}).get("succeeded"), False, "C96 delete with a wrong rv fails")
r = d.go(remove(PODS + "p3", rv["p3"]), "C96 conditionalDelete with the right rv")
o = ok(r) or {}
dr = (o.get("responses") or [{}])[0].get("response_delete_range", {})
t.is_((o.get("succeeded"), dr.get("deleted"), dr.get("header", {}).get("revision")),
      (True, 1, hrev(r)), "C96 delete: deleted 1, ResponseDeleteRange header = txn rev")
d.go(remove(PODS + "p3", rv["p3"]), "C96 delete again: Else-Get of nothing")
d.go(create(PODS + "p3", obj("p3", 5)), "C96 re-create after delete")

# ---------------------------------------------------------------- C96 list
d.go(get(PODS, range_end=prefix_end(PODS), count_only=True), "C96 object count (count_only)")
d.go(get(PODS, range_end=prefix_end(PODS), limit=1, count_only=True), "C96 count_only limit 1")
first = d.go(get(PODS, range_end=prefix_end(PODS), limit=2), "C96 list page 1")
lrev = hrev(first)
d.go(update(PODS + "p0", rv["p0"], obj("p0", 7)), "C96 update during the list")
r, n = first, 1
while ok(r) and ok(r).get("more") and n < 10:
    n += 1
    start = kvs(r)[-1]["key"].encode("latin-1") + b"\x00"
    r = d.go(get(start, range_end=prefix_end(PODS), limit=2, revision=lrev), f"C96 list page {n}")
d.go(get(PODS, range_end=prefix_end(PODS), revision=lrev), "C96 list at the first page's revision")
d.go(get(PODS, range_end=prefix_end(PODS), keys_only=True), "C96 keys_only list")
d.go(get("/registry/", range_end=prefix_end("/registry/"), limit=1), "C96 consistent-read probe (limit 1)")

# ---------------------------------------------------------------- C97 compactor
# two apiservers' compactors share compact_rev_key; the loser reads the
# winner's time from Else-Get and compacts nothing
tm, crev = 0, 0
for step in range(4):
    for i in range(3):
        d.go(put(PODS + f"p{i}", obj(f"p{i}", 10 * step + i)), f"C97 traffic step {step}.{i}")
    r = d.go(txn([cmp("VERSION", KEY, "=", tm)], [put(KEY, str(crev))], [get(KEY)]),
             f"C97 compactor step {step}: Version({KEY})=={tm}")
    t.is_((ok(r) or {}).get("succeeded"), True, f"C97 compactor step {step} wins")
    cur = hrev(r)
    r2 = d.go(txn([cmp("VERSION", KEY, "=", tm)], [put(KEY, str(crev))], [get(KEY)]),
              f"C97 second compactor step {step} with the same stale time")
    o = ok(r2) or {}
    got = [kv["version"] for x in o.get("responses", [])
           for kv in x.get("response_range", {}).get("kvs", [])]
    t.is_((o.get("succeeded"), got, hrev(r2)), (False, [tm + 1], cur),
          f"C97 loser: Else-Get version {tm + 1}, no revision taken")
    if crev:
        r = d.go(compact(crev), f"C97 compact the previous revision {crev}")
        t.is_(err(r), None, f"C97 compact {crev} accepted")
        d.go(get(PODS, range_end=prefix_end(PODS), revision=crev), f"C97 list at {crev} still works")
        d.go(get(PODS, range_end=prefix_end(PODS), revision=crev - 1), f"C97 list at {crev - 1}: compacted")
    tm, crev = tm + 1, cur
d.go(get(KEY), "C97 compact_rev_key")

# ---------------------------------------------------------------- C96 with leases
# events and masterleases carry a lease; needs LeaseGrant, so fresh servers
d.reset("C96 with leases")
d.go(lease_grant(0x7e57, 3600), "C96 grant a lease (events TTL)")
d.go(create("/registry/events/default/e1", obj("e1", 0), lease=0x7e57), "C96 create an event with a lease")
r = d.go(get("/registry/events/default/e1"), "C96 event has the lease")
rv_e = kvs(r)[0]["mod_revision"] if kvs(r) else 0
d.go(update("/registry/events/default/e1", rv_e, obj("e1", 1)), "C96 update without the lease detaches it")
d.go(create("/registry/events/default/e2", obj("e2", 0), lease=0x7e58), "C96 create with an unknown lease")
d.go(get("/registry/events/", prefix=True), "C96 events")

d.close()
t.done()
