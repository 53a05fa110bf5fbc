#!/usr/bin/python3
# Revisions (CONFORMANCE.md checklist C05-C16), differentially: every
# operation goes to a real etcd 3.4 and to the server under test (ballast;
# a second etcd with BLDIFF_TARGET=etcd) through Go clientv3, etcdctl or
# python etcd3, and the answers must be identical but for cluster_id,
# member_id and raft_term.  The extra checks on values (revision == 2, ...)
# are made on the target's answers.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, delete, txn, cmp, compact, lease_grant, lease_revoke, hrev, kvs

t = bltest.Tap()
d = bldiff.Diff(t)

# ---------------------------------------------------------------- C05-C08
r = d.go(get("foo"), "C05 empty store: get")
t.is_(hrev(r), 1, "C05 empty store is at revision 1")
d.ctl("get", "foo", name="C05 empty store: get")
d.py(lambda c: c.get_response("foo"), "C05 empty store: get_response")

r = d.go(put("foo", "bar"), "C05 first put")
t.is_(hrev(r), 2, "C05 first put gets revision 2")

r = d.go(put("foo", "bar"), "C06 identical re-put")
t.is_(hrev(r), 3, "C06 identical re-put bumps the revision")
d.ctl("put", "foo", "bar", name="C06 identical re-put")
d.py(lambda c: c.put("foo", "bar"), "C06 identical re-put")
r = d.go(get("foo"), "C06/C07 get after three re-puts")
t.is_(kvs(r) and (kvs(r)[0]["version"], kvs(r)[0]["create_revision"], kvs(r)[0]["mod_revision"]),
      (4, 2, 5), "C06/C07 version 4, create_revision 2 kept, mod_revision = last write")
d.go(put("foo", "baz", prev_kv=True), "C07 update with prev_kv")
d.ctl("get", "foo", name="C07 get")
d.py(lambda c: c.get("foo"), "C07 get")

d.go(delete("foo"), "C08 delete")
d.go(get("foo"), "C08 deleted key is absent")
r = d.go(put("foo", "again", prev_kv=True), "C08 re-put after delete (no prev_kv)")
r = d.go(get("foo"), "C08 re-created key")
t.is_(kvs(r) and (kvs(r)[0]["version"], kvs(r)[0]["create_revision"]),
      (1, 8), "C08 re-created: version 1, new create_revision")
d.py(lambda c: c.delete("foo"), "C08 delete() of a key")
d.py(lambda c: c.put("foo", "third"), "C08 put() re-creates")
d.ctl("get", "foo", name="C08 get re-created")

# ---------------------------------------------------------------- C09
d.reset("C09")
d.go_seq([put("foo", "v"), put("a", "1")], "C09 setup")
before = hrev(d.go(get("x"), "C09 current revision"))
r = d.go(delete("nothere"), "C09 delete of a missing key")
t.is_((hrev(r), bldiff.ok(r) and bldiff.ok(r).get("deleted")), (before, 0),
      "C09 deleted=0, header.revision unchanged")
d.go(delete("nothere", prefix=True, prev_kv=True), "C09 delete of an empty prefix, prev_kv")
d.go(delete("a", range_end="a"), "C09 delete with range_end == key")
d.go(delete("b", range_end="a"), "C09 delete with range_end < key")
d.ctl("del", "nothere", name="C09 del of a missing key")
d.ctl("del", "--prefix", "nothere", name="C09 del --prefix of nothing")
d.py(lambda c: c.delete("nothere"), "C09 delete() of a missing key")
d.py(lambda c: c.delete_prefix("nothere"), "C09 delete_prefix() of nothing")
r = d.go(get("x"), "C09 no revision was taken")
t.is_(hrev(r), before, "C09 revision unchanged after deleting nothing")

# ---------------------------------------------------------------- C10
d.reset("C10")
d.go_seq([put(f"dir/{i}", f"v{i}") for i in range(5)] + [put("dir0", "outside")],
         "C10 setup dir/0..4")
r = d.go(delete("dir/", prefix=True, prev_kv=True), "C10 delete prefix, prev_kv")
t.is_(bldiff.ok(r) and (bldiff.ok(r)["deleted"], len(bldiff.ok(r)["prev_kvs"])), (5, 5),
      "C10 deleted=5 with 5 prev_kvs")
after = hrev(r)
r = d.go(get("dir", prefix=True), "C10 only dir0 left")
t.is_(hrev(r), after, "C10 the delete took one revision")
d.go_seq([put(f"dir/{i}", f"w{i}") for i in range(3)], "C10 setup again")
d.go(delete("dir/1", range_end="dir/3"), "C10 delete [dir/1, dir/3) without prev_kv")
d.go(delete("dir/", from_key=True, prev_kv=True), "C10 delete from key dir/ (incl. dir0)")
d.go_seq([put(f"e/{i}", f"w{i}") for i in range(4)], "C10 setup e/")
d.ctl("del", "--prefix", "--prev-kv", "e/", name="C10 etcdctl del --prefix --prev-kv")
d.go_seq([put(f"e/{i}", f"x{i}") for i in range(4)], "C10 setup e/ again")
d.ctl("del", "e/1", "e/3", name="C10 etcdctl del range")
d.py(lambda c: c.delete_prefix("e/"), "C10 delete_prefix()")
d.go_seq([put(f"e/{i}", f"x{i}") for i in range(2)], "C10 setup e/ once more")
d.py(lambda c: c.delete("e/0", prev_kv=True, return_response=True),
     "C10 delete(prev_kv, return_response)")
d.go(get("e", prefix=True), "C10 what is left")

# ---------------------------------------------------------------- C11
d.reset("C11")
d.go_seq([put("e/1", "x"), put("t/a", "0")], "C11 setup")
base = hrev(d.go(get("t"), "C11 revision before"))
r = d.go(txn([], [put("t/a", "1"), put("t/b", "2"), put("t/c", "3"), delete("e/1")]),
         "C11 txn with four writes")
t.is_(hrev(r), base + 1, "C11 txn takes exactly one revision")
r = d.go(get("t/", prefix=True), "C11 all kvs share mod_revision")
t.is_(sorted({kv["mod_revision"] for kv in kvs(r)}), [base + 1], "C11 one mod_revision")
r = d.go(txn([], [put("t/a", "x"), delete("t/b"), put("t/d", "4"), get("t/", prefix=True)]),
         "C11 put, delete, put, get in one txn")
d.go(get("t/", prefix=True), "C11 after the mixed txn")
d.ctl_txn([], ["put t/e 5", "put t/f 6", "del t/a"], [], name="C11 etcdctl txn, three writes")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.put("t/g", "7"),
                                                  c.transactions.put("t/h", "8")], failure=[]),
     "C11 transaction() with two puts")
d.go(get("t/", prefix=True), "C11 state")

# ---------------------------------------------------------------- C12
d.reset("C12")
d.go_seq([put("t/a", "a"), put("t/b", "b"), put("t/c", "c"), put("t/d", "d")], "C12 setup")
cur = hrev(d.go(get("t/a"), "C12 current revision"))
r = d.go(txn([cmp("VERSION", "t/c", "=", 1)], [get("t/", prefix=True), get("t/c")],
             [get("nothing")]), "C12 read-only txn (success)")
t.is_(hrev(r), cur, "C12 read-only txn: header.revision = current")
d.go(txn([cmp("VERSION", "t/c", "=", 9)], [get("t/c")], [get("t/", prefix=True, limit=2)]),
     "C12 read-only txn (failure)")
d.go(txn([], [get("t/c", serializable=True)], []), "C12 read-only serializable txn")
d.go(txn(), "C12 empty txn")
d.ctl_txn(['ver("t/c") = "1"'], ["get t/c"], ["get t/d"], name="C12 etcdctl read-only txn")
d.py(lambda c: c.transaction(compare=[c.transactions.version("t/c") > 0],
                             success=[c.transactions.get("t/c")], failure=[]),
     "C12 read-only transaction()")
r = d.go(put("t/c", "bump"), "C12 next write")
t.is_(hrev(r), cur + 1, "C12 no revision was taken by the read-only txns")

# ---------------------------------------------------------------- C13
d.reset("C13")
d.go_seq([put("t/b", "b"), put("t/c", "bump")], "C13 setup")
r = d.go(get("t/c"), "C13 current revision")
cur = hrev(r)
r = d.go(txn([cmp("VALUE", "t/c", "=", "nope")], [put("t/c", "x")], []),
         "C13 write txn, compare false, empty failure")
t.is_((hrev(r), bldiff.ok(r) and bldiff.ok(r)["succeeded"]), (cur, False),
      "C13 no change: no bump, succeeded=false")
d.go(txn([cmp("VALUE", "t/c", "=", "nope")], [put("t/c", "x")], [delete("nothere")]),
     "C13 taken branch deletes nothing")
d.go(txn([cmp("VALUE", "t/c", "=", "nope")], [put("t/c", "x")], [get("t/c")]),
     "C13 taken branch only reads (Else-Get)")
d.go(txn([], [delete("nothere"), get("t/c"), delete("nothere2", prefix=True)], [put("q", "q")]),
     "C13 success of deletes that delete nothing")
d.go(txn([], [txn([cmp("MOD", "t/c", "=", 0)], [put("t/c", "y")], [])], []),
     "C13 nested txn whose branch is empty")
d.ctl_txn(['val("t/c") = "nope"'], ["put t/c x"], ["get t/c"], name="C13 etcdctl Else-Get")
d.py(lambda c: c.replace("t/c", "not-the-value", "new"), "C13 replace() that fails")
r = d.go(get("t/c"), "C13 state")
t.is_(hrev(r), cur, "C13 none of these took a revision")
d.py(lambda c: c.replace("t/c", "bump", "replaced"), "C13 replace() that succeeds")

# ---------------------------------------------------------------- C14
d.reset("C14")
d.go_seq([put("t/c", "c")], "C14 setup")
cur = hrev(d.go(get("t/c"), "C14 current revision"))
r = d.go(txn([cmp("MOD", "s/1", "=", 0)], [put("s/1", "v")], [get("s/1")]),
         "C14 k8s create")
o = bldiff.ok(r) or {}
sub = [x.get("response_put", {}).get("header", {}).get("revision") for x in o.get("responses", [])]
t.is_((hrev(r), sub), (cur + 1, [cur + 1]), "C14 sub-response Put header.revision == txn's")
r = d.go(txn([], [get("s/1"), put("s/2", "a"), get("s/", prefix=True), delete("none"),
                  delete("s/1", prev_kv=True), get("s/1")]),
         "C14 sub-response headers before/after the first change")
d.go(txn([], [get("s/2"), delete("none"), get("s/2")], [put("x", "y")]),
     "C14 sub-response headers of a write txn that changes nothing")
d.go(txn([], [txn([], [get("s/2"), put("s/3", "c"), get("s/3")])]),
     "C14 nested sub-response headers")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.put("s/4", "d")], failure=[]),
     "C14 transaction() put response")

# ---------------------------------------------------------------- C15
d.reset("C15")
d.go_seq([put("g", "1")], "C15 setup")
r0 = hrev(d.go(put("h", "v1"), "C15 h v1"))
d.go(put("h", "v2"), "C15 h v2")
d.go(put("h", "v3"), "C15 h v3")
r3 = hrev(d.go(put("other", "o"), "C15 unrelated write"))
for rev in range(r0 - 1, r3 + 1):
    r = d.go(get("h", revision=rev), f"C15 get h at revision {rev}")
r = d.go(get("h", revision=r0), "C15 get h at its first revision")
t.is_((hrev(r), [kv["value"] for kv in kvs(r)]), (r3, ["v1"]),
      "C15 state at R, header.revision = current")
d.go(get("", from_key=True, revision=r0), "C15 all keys at an old revision")
d.go(get("h", revision=-1), "C15 negative revision = latest")
d.ctl("get", "h", f"--rev={r0 + 1}", name="C15 etcdctl get --rev")
d.go(delete("h"), "C15 h deleted")
r5 = hrev(d.go(put("h", "v4"), "C15 h re-created"))
for rev in range(r3, r5 + 1):
    r = d.go(get("h", revision=rev), f"C15 get h at revision {rev}")
d.go(get("", from_key=True, revision=r5 - 1), "C15 all keys while h was deleted")

# ---------------------------------------------------------------- C16
d.reset("C16")
d.go_seq([put("h", "1")], "C16 setup")
cur = hrev(d.go(get("h"), "C16 current revision"))
r = d.go(lease_grant(7001, 60), "C16 LeaseGrant with an ID")
t.is_(hrev(r), cur, "C16 LeaseGrant takes no revision")
d.py(lambda c: [(x.ID, x.TTL, x.header.revision) for x in c.refresh_lease(7001)], "C16 LeaseKeepAlive (once)")
d.go(lease_revoke(7001), "C16 LeaseRevoke of a lease without keys")
r = d.go(compact(cur), "C16 Compact to the current revision")
t.is_(hrev(r), cur, "C16 Compact takes no revision")
r = d.go(put("h", "after"), "C16 next write")
t.is_(hrev(r), cur + 1, "C16 lease grant/keepalive/revoke and compact took no revision")

d.close()
t.done()
