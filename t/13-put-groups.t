#!/usr/bin/python3
# Puts that wait together in a worker go to PostgreSQL as one statement
# (ballast_put_many).  Each must still be answered as if it had run alone,
# in order: concurrent puts on a few keys (so that a group holds the same
# key twice), puts that fail (ignore_value on a missing key, an unknown
# lease) among them, checked afterwards against the log: every success
# has its own revision, with no gap, the failures none; each put's
# prev_kv is the put of that key just before it; the value at each
# revision is the one put then.
import os, sys, threading, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=1)
b.start()
c = bltest.etcd3_client(b.endpoint)
import etcd3.etcdrpc as rpc


def metric(name):
    body = urllib.request.urlopen(f"http://{b.endpoint}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def put_raw(**kw):
    return c.kvstub.Put(rpc.PutRequest(**kw), 10)


THREADS, PER, KEYS = 16, 40, 6
lock = threading.Lock()
done, failed = [], []          # (key, value, rev, prev (rev, value) or None)
errors = {"key": 0, "lease": 0}


def writer(tid):
    for i in range(PER):
        key = f"g/k{(tid + i) % KEYS}".encode()
        try:
            if i % 10 == 3:
                put_raw(key=f"g/missing-{tid}-{i}".encode(), ignore_value=True)
                failed.append("no error for ignore_value on a missing key")
                continue
            if i % 10 == 7:
                put_raw(key=key, value=b"x", lease=0x7fff0000 + tid)
                failed.append("no error for an unknown lease")
                continue
            value = f"{tid}-{i}".encode()
            r = put_raw(key=key, value=value, prev_kv=True)
            prev = (r.prev_kv.mod_revision, r.prev_kv.value) if r.HasField("prev_kv") else None
            with lock:
                done.append((key, value, r.header.revision, prev))
        except grpc.RpcError as e:
            with lock:
                if e.details() == "etcdserver: key not found":
                    errors["key"] += 1
                elif e.details() == "etcdserver: requested lease not found":
                    errors["lease"] += 1
                else:
                    failed.append(f"{e.code()}: {e.details()}")


start = c.put("g/start", "s")
rev0 = start.header.revision
stmts0 = metric("ballast_storage_statements_total")
threads = [threading.Thread(target=writer, args=(i,)) for i in range(THREADS)]
for th in threads:
    th.start()
for th in threads:
    th.join(120)
stmts = metric("ballast_storage_statements_total") - stmts0

t.is_(failed, [], "no unexpected answer")
n_ok = THREADS * PER * 8 // 10
t.is_(len(done), n_ok, f"{n_ok} puts succeeded")
t.is_(errors, {"key": THREADS * PER // 10, "lease": THREADS * PER // 10},
      "each failing put failed with etcd's error")
revs = sorted(r for _, _, r, _ in done)
t.is_(revs, list(range(rev0 + 1, rev0 + 1 + n_ok)),
      "the successes took one revision each, gap-free; the failures none")
t.ok(stmts < THREADS * PER,
     f"puts were grouped: {THREADS * PER} puts, {int(stmts)} statements")
t.diag(f"{THREADS * PER} puts (with the failing ones) in {int(stmts)} statements")

bad = []
by_key = {}
for key, value, rev, prev in sorted(done, key=lambda x: x[2]):
    last = by_key.get(key)
    want = (last[0], last[1]) if last else None
    if prev != want:
        bad.append(f"{key} at {rev}: prev_kv {prev}, want {want}")
    by_key[key] = (rev, value)
t.is_(bad[:3], [], "every prev_kv is the put of its key just before")

bad = []
for key, value, rev, _ in done:
    r = c.kvstub.Range(rpc.RangeRequest(key=key, revision=rev), 10)
    kv = r.kvs[0] if r.kvs else None
    if kv is None or kv.value != value or kv.mod_revision != rev:
        bad.append(f"{key} at {rev}: {kv and (kv.value, kv.mod_revision)}")
t.is_(bad[:3], [], "the value at each revision is the one put then")

bad = []
for i in range(KEYS):
    key = f"g/k{i}".encode()
    mine = [x for x in done if x[0] == key]
    r = c.kvstub.Range(rpc.RangeRequest(key=key), 10).kvs[0]
    last = max(mine, key=lambda x: x[2])
    if (r.version, r.mod_revision, r.value) != (len(mine), last[2], last[1]):
        bad.append(f"{key}: version {r.version} mod {r.mod_revision}, "
                   f"want {len(mine)} {last[2]}")
t.is_(bad, [], "each key's version counts its puts, its value is the last")

b.stop()
pg.stop()
t.done()
