#!/usr/bin/python3
# The Lease service (CONFORMANCE.md section 6, checklist C73-C79) and Put's
# lease rules (C35, C36), differentially against a real etcd 3.4 through
# the Go clientv3, etcdctl and python etcd3.  Normalised as bldiff does,
# plus: ids the server chose are replaced by whether they are positive;
# TimeToLive's keys and LeaseLeases' list are compared as sets (etcd gives
# them in map / expiry order); a remaining TTL may differ by exactly one
# second (bllease.ttl_close), nothing else may.
import os, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
import bllease
from bldiff import put, get, delete, txn, cmp, lease_grant, lease_revoke, hrev, kvs, ok, err

t = bltest.Tap()
d = bldiff.Diff(t)
rpc = bldiff.rpc()
adjusted = 0


def hexid(i):
    return format(i, "x")


def both(name, run, fix=None, what=None):
    """run(endpoint or client side) -> result on etcd and on the target,
    each passed through fix, then compared (remaining TTLs within 1 s)."""
    global adjusted
    e, o = run(0), run(1)
    if fix:
        e, o = fix(e), fix(o)
    o, n = bllease.ttl_close(e, o)
    adjusted += n
    return d.same(name, e, o, what or name), o


def ctl(*args, name=None, fix=bllease.sort_lists, write="json"):
    eps = (d.ref.endpoint, d.target.endpoint)
    label = (name or "etcdctl " + " ".join(args)) + " [etcdctl]"
    return both(label, lambda i: bldiff.ctl_run(eps[i], args, write=write), fix,
                "etcdctl -w " + write + " " + " ".join(args))[1]


def py(fn, name, fix=bllease.sort_lists):
    clients = d.py_clients()
    return both(name + " [etcd3]", lambda i: bldiff.py_run(clients[i], fn), fix)[1]


def chosen_id(doc):
    """A server-chosen lease id: only whether it is a positive int63 counts."""
    if isinstance(doc, dict):
        return {k: (("positive" if 0 < v < 1 << 63 else v) if k in ("ID", "id", "lease_id")
                    and isinstance(v, int) else chosen_id(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [chosen_id(v) for v in doc]
    return doc


def raw(stub_call):
    """A raw Lease RPC through python etcd3's stub (the whole response)."""
    return lambda c: stub_call(c.leasestub)


# ---------------------------------------------------------------- C73
d.go(lease_grant(1001, 60), "C73 grant with an id")
r = d.go(lease_grant(1001, 60), "C73 grant an id in use")
t.is_(err(r), ("FailedPrecondition", "etcdserver: lease already exists"),
      "C73 id in use: FailedPrecondition, etcd's message")
d.go(lease_grant(1001, 9000000001), "C73 id in use and TTL too large: the TTL is checked first")
d.go(lease_grant(-7, 60), "C73 a negative id is taken as given")
py(raw(lambda s: s.LeaseGrant(rpc.LeaseGrantRequest(TTL=60, ID=0))),
   "C73 grant ID 0: the server chooses", fix=chosen_id)
py(lambda c: c.lease(60), "C73 etcd3 lease(60)", fix=chosen_id)
ctl("lease", "grant", "60", name="C73 etcdctl lease grant", fix=chosen_id)
ctl("lease", "grant", "60", name="C73 etcdctl lease grant (simple)", write="simple",
    fix=lambda r: {**r, "ok": r.get("ok", "").split(" ")[0::2]} if "ok" in r else r)
r = d.go(lease_grant(1002, 60), "C73 another id")
t.is_(ok(r) and ok(r)["ID"], 1002, "C73 the id given is the id granted")

# ---------------------------------------------------------------- C74
for ttl in (-5, 0, 1, 2, 3):
    d.go(lease_grant(1100 + ttl, ttl), f"C74 grant TTL {ttl}")
r = d.go(lease_grant(1200, 1), "C74 TTL 1")
t.is_(ok(r) and ok(r)["TTL"], 2, "C74 TTL below the minimum is raised to 2 s")
d.go(lease_grant(1201, 9000000000), "C74 TTL 9,000,000,000 is the maximum")
r = d.go(lease_grant(1202, 9000000001), "C74 TTL 9,000,000,001")
t.is_(err(r), ("OutOfRange", "etcdserver: too large lease TTL"),
      "C74 too large: OutOfRange, etcd's message")
ctl("lease", "grant", "9000000001", name="C74 etcdctl lease grant too large")
py(lambda c: c.lease(9000000001), "C74 etcd3 lease(9000000001)")
d.go(lease_revoke(1201), "C74 revoke the long one")
d.go(lease_revoke(1002), "C74 revoke 1002")
d.go(lease_revoke(1001), "C74 revoke 1001")
d.go(lease_revoke(-7), "C74 revoke -7")

# ---------------------------------------------------------------- C75
# a 2 s lease with keys, not renewed: both servers delete its keys in one
# revision once it expires (the timing itself is t/51's)
d.reset("C75")
d.go(lease_grant(2001, 2), "C75 grant a 2 s lease")
r = None
for k in ("e/a", "e/c", "e/b"):
    r = d.go(put(k, "v", lease=2001), f"C75 put {k} with the lease")
d.go(put("e/other", "v"), "C75 a key without a lease")
before = hrev(r) + 1


def gone(ep):
    c = bltest.etcd3_client(ep)
    try:
        return len(list(c.get_prefix("e/"))) == 1
    finally:
        c.close()


t.ok(bltest.wait_until(lambda: gone(d.ref.endpoint) and gone(d.target.endpoint), 8, 0.1),
     "C75 both expired the lease's keys")
r = d.go(get("e/", prefix=True), "C75 after expiry")
t.is_(hrev(r), before + 1, "C75 expiry took exactly one revision")
d.go(get("e/", prefix=True, revision=before), "C75 the revision before the expiry")
d.py(lambda c: c.get_lease_info(2001), "C75 TimeToLive of the expired lease")
d.go(put("e/x", "v", lease=2001), "C75 put with the expired lease")


def deletes(prefix):
    """fn(client): the first three events under prefix from revision
    `before`+1 on, by a raw Watch (python etcd3's watcher thread outlives
    its client)."""
    return lambda c: watch3(c, prefix.encode())


def watch3(c, prefix):
    done = threading.Event()

    def reqs():
        yield rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=prefix, range_end=bldiff.prefix_end(prefix), start_revision=before + 1))
        done.wait(10)

    call = rpc.WatchStub(c.channel).Watch(reqs(), 5)
    out = []
    try:
        for resp in call:
            for ev in resp.events:
                out.append([["PUT", "DELETE"][ev.type], bldiff.show_bytes(ev.kv.key),
                            ev.kv.mod_revision])
            if len(out) >= 3:
                break
    finally:
        done.set()
        call.cancel()
    return out


r = d.py(deletes("e/"), "C75 the expiry's DELETE events (watch)")
t.is_(ok(r), [["DELETE", k, before + 1] for k in ("e/a", "e/b", "e/c")],
      "C75 three DELETE events in key order, one mod_revision")

# ---------------------------------------------------------------- C76
d.reset("C76")
d.go(lease_grant(3001, 60), "C76 grant")
for k in ("r/3", "r/1", "r/2"):
    r = d.go(put(k, "v", lease=3001), f"C76 put {k} with the lease")
d.go(put("r/0", "v"), "C76 a key without a lease")
cur = hrev(r) + 1
r = d.go(lease_revoke(3001), "C76 revoke")
t.is_(hrev(r), cur + 1, "C76 revoke took one revision, the header says it")
r = d.go(get("r/", prefix=True), "C76 the lease's keys are gone")
t.is_([kv["key"] for kv in kvs(r)], ["r/0"], "C76 only the key without the lease is left")
before = cur
r = d.py(deletes("r/"), "C76 the revoke's DELETE events (watch)")
t.is_(ok(r), [["DELETE", k, before + 1] for k in ("r/1", "r/2", "r/3")],
      "C76 three DELETE events in key order, one mod_revision")
d.go(lease_revoke(3001), "C76 revoke again")
r = d.go(lease_revoke(424242), "C76 revoke an unknown lease")
t.is_(err(r), ("NotFound", "etcdserver: requested lease not found"),
      "C76 unknown: NotFound, etcd's message")
d.go(lease_revoke(0), "C76 revoke lease 0")
ctl("lease", "revoke", hexid(424242), name="C76 etcdctl lease revoke unknown")
d.go(lease_grant(3002, 60), "C76 grant 3002")
d.go(put("r/a", "v", lease=3002), "C76 put with 3002")
ctl("lease", "revoke", hexid(3002), name="C76 etcdctl lease revoke", write="simple")
d.py(lambda c: c.revoke_lease(3002), "C76 etcd3 revoke_lease of a revoked lease")
d.go(lease_grant(3003, 60), "C76 grant 3003")
d.py(lambda c: c.revoke_lease(3003), "C76 etcd3 revoke_lease")
d.go(get("r/", prefix=True), "C76 after the revokes")

# ---------------------------------------------------------------- C77
d.reset("C77")
d.go(lease_grant(4001, 60), "C77 grant 4001")
d.go(put("a", "v"), "C77 a write: headers carry a later revision")
ctl("lease", "keep-alive", "--once", hexid(4001), name="C77 etcdctl keep-alive --once")
ctl("lease", "keep-alive", "--once", hexid(4001), name="C77 etcdctl keep-alive --once (simple)",
    write="simple")
ctl("lease", "keep-alive", "--once", hexid(777), name="C77 etcdctl keep-alive --once unknown")
py(lambda c: c.refresh_lease(4001), "C77 etcd3 refresh_lease")
py(lambda c: c.refresh_lease(777), "C77 etcd3 refresh_lease of an unknown lease")
d.go(lease_grant(4002, 1), "C77 grant 4002 with TTL 1 (2 s, renewed below)")
r = py(lambda c: bllease.ka_stream(c, [777, 4001, 0, 4002, 4001, 777, 4001]),
       "C77 one stream: unknown, known, 0, known ... in order")
t.is_([a.get("TTL", 0) for a in (r.get("ok") or {}).get("ok", [])], [0, 60, 0, 2, 60, 0, 60],
      "C77 granted TTL for live leases, 0 for unknown ones, the stream goes on")
r = py(lambda c: bllease.ka_stream(c, [4001] * 200 + [777] + [4002] * 50),
       "C77 250 renewals pipelined on one stream")
t.is_(len((r.get("ok") or {}).get("ok", [])), 251, "C77 every renewal answered, in order")
py(lambda c: bllease.ka_stream(c, []), "C77 a stream half-closed at once")
d.go(lease_revoke(4001), "C77 revoke 4001")
py(lambda c: bllease.ka_stream(c, [4001]), "C77 keepalive of a revoked lease: TTL 0")

# ---------------------------------------------------------------- C78
d.reset("C78")
d.go(lease_grant(5001, 60), "C78 grant 5001")
d.go(lease_grant(5002, 60), "C78 grant 5002 (no keys)")
for k in ("t/2", "t/1", "t/3"):
    d.go(put(k, "v", lease=5001), f"C78 put {k} with 5001")
ctl("lease", "timetolive", hexid(5001), name="C78 etcdctl timetolive")
ctl("lease", "timetolive", "--keys", hexid(5001), name="C78 etcdctl timetolive --keys")
ctl("lease", "timetolive", "--keys", hexid(5002), name="C78 etcdctl timetolive --keys, no keys")
ctl("lease", "timetolive", hexid(5001), name="C78 etcdctl timetolive (simple)", write="simple")
ctl("lease", "timetolive", hexid(99), name="C78 etcdctl timetolive unknown")
ctl("lease", "timetolive", hexid(99), name="C78 etcdctl timetolive unknown (simple)",
    write="simple")
r = py(raw(lambda s: s.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=99, keys=True))),
       "C78 TimeToLive of an unknown lease")
t.is_(((r.get("ok") or {}).get("TTL"), (r.get("ok") or {}).get("ID")), (-1, 99),
      "C78 unknown: TTL -1 and the ID asked, no error")
py(raw(lambda s: s.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=5001, keys=True))),
   "C78 TimeToLive with keys")
py(raw(lambda s: s.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=5001))),
   "C78 TimeToLive without keys")
py(lambda c: [c.get_lease_info(5001).grantedTTL, sorted(c.get_lease_info(5001).keys)],
   "C78 etcd3 get_lease_info")


def lease_attrs(c):
    lease = c.lease(30, lease_id=5003)
    return [lease.granted_ttl, lease.remaining_ttl, lease.keys]


py(lease_attrs, "C78 etcd3 Lease.granted_ttl, remaining_ttl, keys")
time.sleep(1.2)
py(raw(lambda s: s.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=5003))),
   "C78 remaining TTL a second later")

# ---------------------------------------------------------------- C79
d.reset("C79")
py(raw(lambda s: s.LeaseLeases(rpc.LeaseLeasesRequest())), "C79 no leases")
ctl("lease", "list", name="C79 etcdctl lease list, empty")
for i, ttl in ((6001, 100), (6002, 50), (6003, 200), (6004, 70)):
    d.go(lease_grant(i, ttl), f"C79 grant {i}")
d.go(lease_revoke(6004), "C79 revoke 6004")
r = py(raw(lambda s: s.LeaseLeases(rpc.LeaseLeasesRequest())), "C79 LeaseLeases")
t.is_(sorted(x["ID"] for x in (r.get("ok") or {}).get("leases", [])), [6001, 6002, 6003],
      "C79 every live lease, no revoked one")
ctl("lease", "list", name="C79 etcdctl lease list")
# etcd lists by expiry (lessor.Leases sorts leasesByExpiry); say what we see
e = bldiff.py_run(d.py_clients()[0], raw(lambda s: s.LeaseLeases(rpc.LeaseLeasesRequest())))
o = bldiff.py_run(d.py_clients()[1], raw(lambda s: s.LeaseLeases(rpc.LeaseLeasesRequest())))
t.diag("C79 order: etcd %s, %s %s" % (
    [x["ID"] for x in ok(e)["leases"]], d.target_name, [x["ID"] for x in ok(o)["leases"]]))

# ---------------------------------------------------------------- C35
d.reset("C35")
d.go(lease_grant(7001, 60), "C35 grant 7001")
d.go(put("k", "v"), "C35 put k")
cur = hrev(d.go(get("k"), "C35 current revision"))
r = d.go(put("k", "v2", lease=7777), "C35 put with an unknown lease")
t.is_(err(r), ("NotFound", "etcdserver: requested lease not found"), "C35 NotFound")
d.go(put("new", "v", lease=7777, prev_kv=True), "C35 unknown lease, new key, prev_kv")
ctl("put", "k", "v3", "--lease=" + hexid(7777), name="C35 etcdctl put --lease unknown")
py(lambda c: c.put("k", "v4", lease=7777), "C35 etcd3 put(lease=unknown)")
d.go(txn([cmp("VERSION", "k", ">", 0)], [put("k", "t", lease=7777)], []),
     "C35 Txn put with an unknown lease")
d.go(lease_revoke(7001), "C35 revoke 7001")
d.go(put("k", "v5", lease=7001), "C35 put with a revoked lease")
r = d.go(get("", from_key=True), "C35 nothing was written")
t.is_(hrev(r), cur, "C35 no revision taken")

# ---------------------------------------------------------------- C36
d.reset("C36")
d.go(lease_grant(8001, 60), "C36 grant 8001")
d.go(lease_grant(8002, 60), "C36 grant 8002")
d.go(put("p", "v", lease=8001), "C36 put p with 8001")
d.go(put("q", "v", lease=8001), "C36 put q with 8001")
d.go(put("s", "v", lease=8001), "C36 put s with 8001")
ctl("put", "p", "v2", name="C36 etcdctl put p without a lease", write="simple")
r = d.go(get("p"), "C36 p has no lease now")
t.is_(kvs(r) and kvs(r)[0].get("lease", 0), 0, "C36 a put without a lease detaches")
d.go(put("q", "v2", lease=8002), "C36 put q with 8002: moves it")
d.go(put("q", "v3", ignore_lease=True), "C36 put q with ignore_lease keeps 8002")
d.go(delete("s"), "C36 delete s detaches it")
d.go(put("s", "v"), "C36 put s again, no lease")
py(raw(lambda s: s.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=8001, keys=True))),
   "C36 8001 holds no key now")
py(raw(lambda s: s.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=8002, keys=True))),
   "C36 8002 holds q")
r = d.go(lease_revoke(8001), "C36 revoke 8001: deletes nothing")
d.go(get("", from_key=True), "C36 every key still there")
d.go(lease_revoke(8002), "C36 revoke 8002: deletes q")
d.go(get("", from_key=True), "C36 q gone")

t.diag(f"remaining TTLs one second apart (allowed): {adjusted}")
d.close()
t.done()
