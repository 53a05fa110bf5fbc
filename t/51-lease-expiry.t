#!/usr/bin/python3
# Lease expiry on one server (CONFORMANCE.md C75, issue 5 "Expiry"): a key
# with a 2 s lease disappears within TTL + 1 s of the grant and its DELETE
# event reaches a watcher; keepalives keep it; many leases expiring at once
# each take their own revision; a lease with many keys takes one.  The
# observed delays are printed.  BLDIFF_TARGET=etcd runs it against a real
# etcd 3.4 (which is how the expectations were checked).
import os, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff

TTL = 2
t = bltest.Tap()
srv = bldiff.Target(t, fsync=False)
rpc = bldiff.rpc()
c = bltest.etcd3_client(srv.endpoint)


def rev():
    return c.kvstub.Range(rpc.RangeRequest(key=b"x"), timeout=5).header.revision


class Watch:
    """A raw Watch of a prefix from a revision, collecting its events."""

    def __init__(self, prefix, start):
        self.events = []
        self.created = threading.Event()
        self._done = threading.Event()
        prefix = prefix.encode()

        def reqs():
            yield rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                key=prefix, range_end=bldiff.prefix_end(prefix), start_revision=start))
            self._done.wait(60)

        self.call = rpc.WatchStub(c.channel).Watch(reqs(), 60)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for resp in self.call:
                if resp.created:
                    self.created.set()
                for ev in resp.events:
                    self.events.append((time.monotonic(), ["PUT", "DELETE"][ev.type],
                                        ev.kv.key.decode(), ev.kv.mod_revision))
        except Exception:
            pass

    def close(self):
        self._done.set()
        self.call.cancel()


def grant(ttl, lease_id=0):
    r = c.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl, ID=lease_id), timeout=5)
    return r.ID, time.monotonic()


def exists(key):
    return c.get(key)[0] is not None


# ---------------------------------------- a 2 s lease: within TTL + 1 s
delays = []
for round_ in range(3):
    key = f"exp/{round_}"
    lid, granted = grant(TTL)
    c.put(key, "v", lease=lid)
    w = Watch(key, rev() + 1)
    w.created.wait(5)
    t.ok(exists(key), f"round {round_}: the key is there after the put")
    bltest.wait_until(lambda: not exists(key), TTL + 3, 0.02)
    gone = time.monotonic()
    delay = gone - granted
    delays.append(delay)
    t.ok(not exists(key), f"round {round_}: the key expired")
    t.ok(TTL - 0.1 <= delay <= TTL + 1.0,
         f"round {round_}: gone {delay:.2f} s after the grant (TTL {TTL} s, within TTL + 1 s)")
    bltest.wait_until(lambda: w.events, 3, 0.02)
    w.close()
    dels = [e for e in w.events if e[1] == "DELETE" and e[2] == key]
    t.is_(len(dels), 1, f"round {round_}: the watcher got the DELETE event")
    if dels:
        t.diag(f"round {round_}: DELETE event {dels[0][0] - granted:.2f} s after the grant")
t.diag("observed expiry delays (grant -> key gone): " +
       ", ".join(f"{x:.2f} s" for x in delays))

# ---------------------------------------- remaining TTL, truncated
lid, _ = grant(10)
r = c.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lid), timeout=5)
t.is_((r.TTL, r.grantedTTL), (9, 10), "TimeToLive right after a grant of 10: 9 left, 10 granted")
time.sleep(1.2)
r = c.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lid), timeout=5)
t.is_(r.TTL, 8, "1.2 s later: 8 left")
c.revoke_lease(lid)

# ---------------------------------------- keepalive keeps the key
lid, _ = grant(TTL)
c.put("ka/k", "v", lease=lid)
end = time.monotonic() + 3 * TTL
answers = []
while time.monotonic() < end:
    answers += [a.TTL for a in c.refresh_lease(lid)]
    time.sleep(0.5)
t.ok(exists("ka/k"), f"renewed every 0.5 s for {3 * TTL} s: the key is still there")
t.ok(answers and all(a == TTL for a in answers), f"every renewal answered TTL {TTL}")
stopped = time.monotonic()
bltest.wait_until(lambda: not exists("ka/k"), TTL + 3, 0.02)
delay = time.monotonic() - stopped
t.ok(not exists("ka/k") and delay <= TTL + 1.0,
     f"renewals stopped: gone {delay:.2f} s after the last one")
t.is_([a.TTL for a in c.refresh_lease(lid)], [0], "a renewal of the expired lease: TTL 0")
r = c.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=lid), timeout=5)
t.is_(r.TTL, -1, "TimeToLive of the expired lease: -1")

# ---------------------------------------- many leases at once
N = 20
ids = []
for i in range(N):
    lid, _ = grant(TTL)
    ids.append(lid)
    c.put(f"many/{i:02d}/a", "v", lease=lid)
    c.put(f"many/{i:02d}/b", "v", lease=lid)
before = rev()
w = Watch("many/", before + 1)
w.created.wait(5)
ok = bltest.wait_until(lambda: not list(c.get_prefix("many/")), TTL + 4, 0.05)
t.ok(ok, f"{N} leases with 2 keys each: every key expired")
t.is_(rev(), before + N, f"{N} expiries took {N} revisions, one each")
bltest.wait_until(lambda: len(w.events) >= 2 * N, 3, 0.05)
w.close()
by_rev = {}
for _, kind, key, mod in w.events:
    by_rev.setdefault(mod, []).append((kind, key))
t.ok(len(w.events) == 2 * N and all(len(v) == 2 and v[0][1].split("/")[1] == v[1][1].split("/")[1]
                                    for v in by_rev.values()),
     "the watcher got both DELETEs of each lease in that lease's revision")
leases = c.leasestub.LeaseLeases(rpc.LeaseLeasesRequest(), timeout=5).leases
t.ok(not set(ids) & {x.ID for x in leases}, "LeaseLeases lists none of them")

# ---------------------------------------- one lease, many keys
lid, _ = grant(TTL)
for i in range(150):
    c.put(f"wide/{i:03d}", "v", lease=lid)
before = rev()
ok = bltest.wait_until(lambda: not list(c.get_prefix("wide/")), TTL + 4, 0.05)
t.ok(ok, "a lease with 150 keys expired")
t.is_(rev(), before + 1, "... in one revision")

c.close()
t.done()
