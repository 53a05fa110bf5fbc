#!/usr/bin/python3
# LeaseRevoke of a lease with 1,000 attached keys (CONFORMANCE.md C76):
# one revision, every key gone, 1,000 DELETE events sharing that revision
# in key order; the other keys untouched.  BLDIFF_TARGET=etcd runs it
# against a real etcd 3.4.
import os, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff

KEYS = 1000
t = bltest.Tap()
srv = bldiff.Target(t, fsync=False)
rpc = bldiff.rpc()
c = bltest.etcd3_client(srv.endpoint)

lid = c.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=600), timeout=5).ID
names = [f"many/{i:04d}" for i in range(KEYS)]
for i in range(0, KEYS, 100):
    ok, _ = c.transaction(compare=[], success=[c.transactions.put(k, "v" * 10, lease=lid)
                                               for k in names[i:i + 100]], failure=[])
c.put("many-not", "v")
c.put("many/zz-own", "v")
info = c.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=10)
t.is_(sorted(k.decode() for k in info.keys), names, f"TimeToLive lists the {KEYS} keys")
before = c.kvstub.Range(rpc.RangeRequest(key=b"x"), timeout=5).header.revision

events = []
created = threading.Event()
done = threading.Event()


def reqs():
    yield rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
        key=b"many/", range_end=bldiff.prefix_end(b"many/"), start_revision=before + 1))
    done.wait(60)


call = rpc.WatchStub(c.channel).Watch(reqs(), 60)


def run():
    try:
        for resp in call:
            if resp.created:
                created.set()
            events.extend((["PUT", "DELETE"][e.type], e.kv.key.decode(), e.kv.mod_revision)
                          for e in resp.events)
    except Exception:
        pass


threading.Thread(target=run, daemon=True).start()
created.wait(5)

start = time.monotonic()
r = c.leasestub.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lid), timeout=30)
took = time.monotonic() - start
t.diag(f"revoke of a lease with {KEYS} keys took {took * 1000:.0f} ms")
t.is_(r.header.revision, before + 1, "the revoke's header: one revision later")
t.is_(c.kvstub.Range(rpc.RangeRequest(key=b"x"), timeout=5).header.revision, before + 1,
      "the store is one revision later")
left = [m.key.decode() for _, m in c.get_prefix("many")]
t.is_(left, ["many-not", "many/zz-own"], "every key of the lease is gone, the others stay")
bltest.wait_until(lambda: len(events) >= KEYS, 10, 0.05)
done.set()
call.cancel()
t.is_(len(events), KEYS, f"the watcher got {KEYS} events")
t.ok(all(e[0] == "DELETE" and e[2] == before + 1 for e in events),
     "all DELETEs, all in the revoke's revision")
t.is_([e[1] for e in events], names, "in key order")
r = c.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lid), timeout=5)
t.is_(r.TTL, -1, "the lease is gone")

c.close()
t.done()
