#!/usr/bin/python3
# KV.Put (CONFORMANCE.md checklist C32-C36), differentially against a real
# etcd 3.4 (see t/lib/bldiff.py): prev_kv, ignore_value/ignore_lease and
# their errors, unknown leases, lease detach on a Put without lease.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, txn, lease_grant, lease_revoke, hrev, kvs, ok, err

t = bltest.Tap()
d = bldiff.Diff(t)

# ---------------------------------------------------------------- C32
r = d.go(put("k", "v1", prev_kv=True), "C32 prev_kv on a new key")
t.is_(ok(r), {"header": {"revision": 2}, "prev_kv": None}, "C32 no prev_kv for a new key")
r = d.go(put("k", "v2", prev_kv=True), "C32 prev_kv on an existing key")
t.is_(ok(r) and ok(r)["prev_kv"],
      {"key": "k", "value": "v1", "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 0},
      "C32 prev_kv is the old KV, every field")
d.go(put("k", "", prev_kv=True), "C32 put an empty value, prev_kv")
d.go(put("k", b"\x00\xff", prev_kv=True), "C32 prev_kv with an empty old value")
d.go(put(b"\xff\x00", "bin", prev_kv=True), "C32 binary key")
d.ctl("put", "k", "v3", "--prev-kv", name="C32 etcdctl put --prev-kv")
d.ctl("put", "new", "v", "--prev-kv", name="C32 etcdctl put --prev-kv, new key")
d.py(lambda c: c.put("k", "v4", prev_kv=True), "C32 put(prev_kv)")
d.py(lambda c: c.put("new2", "v", prev_kv=True), "C32 put(prev_kv), new key")
d.go(get("", from_key=True), "C32 state")

# ---------------------------------------------------------------- C33, C34
r = d.go(put("k", ignore_value=True), "C33 ignore_value keeps the value")
d.go(get("k"), "C33 value kept, version+1, mod_revision new")
d.go(put("k", ignore_value=True, prev_kv=True), "C33 ignore_value with prev_kv")
d.go(put("k", ignore_lease=True), "C33 ignore_lease (no lease) keeps lease 0")
d.go(put("k", "v5", ignore_lease=True, prev_kv=True), "C33 ignore_lease with a new value")
d.go(put("k", ignore_value=True, ignore_lease=True), "C33 both ignore flags")
cur = hrev(d.go(get("k"), "C33 state"))
r = d.go(put("missing", ignore_value=True), "C33 ignore_value on a missing key")
t.is_(err(r), ("InvalidArgument", "etcdserver: key not found"), "C33 key not found")
d.go(put("missing", "v", ignore_lease=True), "C33 ignore_lease on a missing key")
d.go(put("missing", ignore_value=True, ignore_lease=True, prev_kv=True),
     "C33 both ignore flags on a missing key")
r = d.go(put("k", "x", ignore_value=True), "C34 ignore_value with a value")
t.is_(err(r), ("InvalidArgument", "etcdserver: value is provided"), "C34 value is provided")
d.go(put("k", "v", lease=123, ignore_lease=True), "C34 ignore_lease with a lease")
d.go(put("missing", "x", ignore_value=True), "C34 value provided beats key not found")
d.go(put("", "x", ignore_value=True), "C34 empty key beats value provided")
d.go(put("k", "x", lease=5, ignore_value=True, ignore_lease=True), "C34 both provided")
d.ctl("put", "k", "--ignore-value", name="C33 etcdctl put --ignore-value")
d.ctl("put", "k", "v6", "--ignore-lease", name="C33 etcdctl put --ignore-lease")
d.ctl("put", "missing", "--ignore-value", name="C33 etcdctl --ignore-value on a missing key")
d.ctl("put", "k", "x", "--ignore-value", name="C34 etcdctl --ignore-value with a value")
R = bldiff.rpc()
d.py(lambda c: c.kvstub.Put(R.PutRequest(key=b"k", ignore_value=True, prev_kv=True), 5),
     "C33 raw ignore_value")
d.py(lambda c: c.kvstub.Put(R.PutRequest(key=b"k", value=b"x", ignore_value=True), 5),
     "C34 raw ignore_value with a value")
r = d.go(get("missing"), "C33 nothing written by the refused puts")
t.is_(hrev(r), cur + 3, "C33/C34 only the three good puts took revisions")

# ---------------------------------------------------------------- C35
cur = hrev(d.go(get("k"), "C35 current revision"))
r = d.go(put("k", "leased", lease=0x1234), "C35 unknown lease on an existing key")
t.is_(err(r), ("NotFound", "etcdserver: requested lease not found"), "C35 lease not found")
d.go(put("fresh", "v", lease=1), "C35 unknown lease on a new key")
d.go(put("k", "v", lease=-1), "C35 negative lease")
d.go(put("fresh", "v", lease=77, prev_kv=True), "C35 unknown lease with prev_kv")
d.go(put("fresh", lease=77, ignore_value=True), "C35 unknown lease + ignore_value on a missing key")
d.ctl("put", "k", "v", "--lease=1234", name="C35 etcdctl put --lease unknown")
d.py(lambda c: c.put("k", "v", lease=4660), "C35 put(lease=unknown)")
r = d.go(get("", from_key=True), "C35 nothing written")
t.is_(hrev(r), cur, "C35 no revision taken")
t.is_([kv["key"] for kv in kvs(r)].count("fresh"), 0, "C35 no key created")

# ---------------------------------------------------------------- C36
# needs LeaseGrant: fresh servers, so that a missing one fails only here
d.reset("C36")
d.go(lease_grant(1001, 300), "C36 grant lease 1001")
d.go(lease_grant(1002, 300), "C36 grant lease 1002")
d.go(put("l", "v1", lease=1001), "C36 put with lease 1001")
d.go(get("l"), "C36 key has lease 1001")
d.go(put("l", "v2", prev_kv=True), "C36 put without lease (prev_kv shows the lease)")
r = d.go(get("l"), "C36 lease detached")
t.is_([kv["lease"] for kv in kvs(r)], [0], "C36 lease is 0 after a put without lease")
d.go(put("l", "v3", lease=1001), "C36 attach again")
d.go(put("l", "v4", lease=1002, prev_kv=True), "C36 put with another lease moves it")
d.go(put("l", ignore_value=True), "C36 ignore_value without lease detaches too")
d.go(put("l", "v5", lease=1002), "C36 attach 1002")
d.go(put("l", "v6", ignore_lease=True, prev_kv=True), "C36 ignore_lease keeps lease 1002")
d.go(put("l", ignore_value=True, ignore_lease=True), "C36 both ignores keep value and lease")
d.go(get("l"), "C36 state")
d.ctl("put", "l", "v7", name="C36 etcdctl put without lease detaches")
d.ctl("get", "l", name="C36 etcdctl get")
d.ctl("put", "l", "v8", "--lease=3ea", name="C36 etcdctl put --lease (hex 0x3ea = 1002)")
d.py(lambda c: c.put("l", "v9"), "C36 put() without lease")
d.py(lambda c: c.put("m", "v", lease=1001), "C36 put(lease=1001)")
d.go(lease_revoke(1001), "C36 revoke 1001 (deletes m)")
d.go(get("", from_key=True), "C36 final state")
d.go(txn([], [put("n", "v", lease=1002), put("o", "v", lease=1001)]),
     "C36 txn put with a revoked lease fails whole")
d.go(get("", from_key=True), "C36 nothing written by the failed txn")

d.close()
t.done()
