#!/usr/bin/python3
# KV.Compact (CONFORMANCE.md checklist C49-C51), differentially against a
# real etcd 3.4 (see t/lib/bldiff.py): the accepted and refused revisions,
# reads at and above the compact revision answering exactly as before it,
# reads below it refused, physical=true; on ballast also that the
# superseded history below the compact revision is gone from ballast_log
# when a physical compaction returns.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, delete, txn, cmp, compact, hrev, kvs, err

t = bltest.Tap()
d = bldiff.Diff(t)
COMPACTED = ("OutOfRange", "etcdserver: mvcc: required revision has been compacted")
FUTURE = ("OutOfRange", "etcdserver: mvcc: required revision is a future revision")

# ---------------------------------------------------------------- C49 (fresh store)
# etcd starts with compact revision -1: Compact(0) and Compact(1) are accepted
r = d.go(compact(-1), "C49 fresh store: compact -1")
t.is_(err(r), COMPACTED, "C49 compact -1 <= compact revision -1: compacted")
r = d.go(compact(0), "C49 fresh store: compact 0")
t.is_(hrev(r), 1, "C49 compact 0 accepted on a fresh store, header.revision 1")
r = d.go(compact(0), "C49 compact 0 again")
t.is_(err(r), COMPACTED, "C49 compact 0 again: compacted")
d.go(get("a", revision=0), "C49 range revision 0 after compact 0")
r = d.go(compact(2), "C49 compact 2 on a store at revision 1")
t.is_(err(r), FUTURE, "C49 compact above the current revision: future")
d.go(compact(1), "C49 compact 1 (the current revision)")
d.go(compact(1), "C49 compact 1 again")
d.go(get("a", revision=1), "C49 range at the compact revision 1")
d.go(put("a", "1"), "C49 write after compactions")
d.go(compact(2, physical=True), "C49 compact 2, physical")
d.ctl("compaction", "2", write="simple", name="C49 etcdctl compaction of the compact revision")
d.ctl("compaction", "3", write="simple", name="C49 etcdctl compaction of a future revision")
d.py(lambda c: c.compact(1), "C49 compact() of an old revision")

# ---------------------------------------------------------------- C49, C50
d.reset("C50")
history = [put("a", "a1"), put("b", "b1"), put("a", "a2"), put("c", "c1"), delete("b"),
           put("a", "a3"), put("d", "d1"), delete("c"), put("b", "b2"), put("e", "e1"),
           put("a", "a4"), delete("e"), put("f", "f1"), put("a", "a5"), put("b", "b3")]
outs = d.go_seq(history, "C50 setup: 15 writes (puts, deletes, re-creations) at 2..16")
cur = 16
C = 9


def reads(lo):
    ops = []
    for rev in range(lo, cur + 1):
        ops += [get("", from_key=True, revision=rev),
                get("", from_key=True, revision=rev, keys_only=True, limit=2),
                get("", from_key=True, revision=rev, count_only=True),
                get("a", revision=rev),
                get("b", revision=rev),
                get("", from_key=True, revision=rev, sort_target="MOD", sort_order="DESCEND"),
                get("", from_key=True, revision=rev, min_mod_revision=C - 1, max_create_revision=C + 2)]
    ops += [get("", from_key=True), get("a"), get("c"),
            txn([cmp("MOD", "a", "=", 15)], [get("a")], [get("b")]),
            txn([cmp("VERSION", "b", "=", 2), cmp("CREATE", "c", "=", 0)], [get("", from_key=True)])]
    return ops


ops = reads(C)
before = [d.go_pair(op)[1] for op in ops]
r = d.go(compact(C), f"C49 compact {C}")
t.is_(hrev(r), cur, "C49 compact response header.revision = current revision")
after = d.go_seq(ops, f"C50 every read at revision >= {C} (and the latest) after the compaction")
same = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
t.is_(same and [(bldiff.show_op(ops[i]), before[i], after[i]) for i in same[:1]], [],
      f"C50 the target answers those {len(ops)} reads as before the compaction")
for rev in range(1, C):
    r = d.go(get("", from_key=True, revision=rev), f"C50 read at {rev} < {C}: compacted")
    t.is_(err(r), COMPACTED, f"C50 read at {rev}: compacted error")
d.go(get("a", revision=C - 1, count_only=True), "C50 count_only below the compact revision")
d.go(txn([], [get("a", revision=C - 1)]), "C50 txn Range below the compact revision")
r = d.go(get("", from_key=True, revision=C), "C50 state at the compact revision")
t.is_([(kv["key"], kv["value"]) for kv in kvs(r)], [("a", "a3"), ("d", "d1")],
      "C50 at C: the live keys' latest versions <= C (b, c deleted then are gone)")
for label, rev in [("same", C), ("lower", C - 3), ("0", 0), ("negative", -5)]:
    r = d.go(compact(rev), f"C49 compact again, {label} revision ({rev})")
    t.is_(err(r), COMPACTED, f"C49 compact {label}: compacted")
r = d.go(compact(cur + 1), "C49 compact above the current revision")
t.is_(err(r), FUTURE, "C49 compact future: future revision error")
d.go(compact(1 << 40), "C49 compact far in the future")
d.ctl("compaction", str(C), write="simple", name="C49 etcdctl compaction, same revision")
d.ctl("compaction", str(cur + 3), write="simple", name="C49 etcdctl compaction, future")
d.py(lambda c: c.compact(C - 1), "C49 compact(), lower revision")
d.py(lambda c: c.compact(cur + 9), "C49 compact(), future revision")
d.go(compact(12), "C49 compact 12 (between)")
d.go_seq(reads(12), "C50 reads >= 12 after compact 12")
d.go(compact(cur), "C49 compact to the current revision")
d.go(get("", from_key=True, revision=cur), "C50 read at the current (= compact) revision")
d.go(get("", from_key=True, revision=cur - 1), "C50 read just below: compacted")
r = d.go(put("g", "g1", prev_kv=True), "C50 write after compacting everything")
t.is_(hrev(r), cur + 1, "C50 revisions go on after a compaction")
d.go(put("a", "a6", prev_kv=True), "C50 prev_kv of a key whose version predates the compaction")
d.go(get("", from_key=True), "C50 final state")

# ---------------------------------------------------------------- C51
d.reset("C51")
d.go_seq([put("k", f"v{i}") for i in range(20)] + [put("x", "1"), delete("x"), put("y", "1")] +
         [put("k2", f"w{i}") for i in range(5)] + [delete("k2"), put("z", "1")],
         "C51 setup: 30 writes at 2..31")
cur = 31
for rev, physical in ((10, True), (25, True), (31, True)):
    r = d.go(compact(rev, physical=physical), f"C51 compact {rev}, physical")
    t.is_(hrev(r), cur, f"C51 physical compact {rev} answers header.revision = current")
    if d.kind == "ballast":
        left = d.psql(
            "SELECT count(*) FROM ballast_log l WHERE l.rev < %d AND (l.kind = 1 OR EXISTS "
            "(SELECT 1 FROM ballast_log n WHERE n.key = l.key AND n.rev > l.rev AND n.rev <= %d))"
            % (rev, rev)).strip()
        t.is_(left, "0", f"C51 no superseded or deleted history below {rev} left in ballast_log "
                         "when the physical compaction returned")
    else:
        t.skip("history left in storage: checked on ballast's tables only")
    d.go_seq([get("", from_key=True, revision=x) for x in range(rev, cur + 1)],
             f"C51 reads >= {rev} after the physical compaction")
d.ctl("compaction", "--physical", "31", write="simple", name="C51 etcdctl compaction --physical (again)")
d.go(put("k", "after"), "C51 write after")
d.ctl("compaction", "--physical", "32", write="simple", name="C51 etcdctl compaction --physical")
d.go(put("k", "after2"), "C51 write after")
d.py(lambda c: c.compact(33, physical=True), "C51 compact(physical=True)")
d.go(get("", from_key=True), "C51 final state")

d.close()
t.done()
